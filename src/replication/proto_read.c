/*-------------------------------------------------------------------------
 *
 * proto_read.c
 *	  Parse and validate messages of Mycelium's replication protocol.
 *
 * MyceliumReplParseMessage is the only way the apply side reads the stream.
 * A message comes from the network, so nothing in it is trusted: every read
 * is bounds-checked against the buffer before it happens, every count is
 * checked against the bytes that could hold it before anything is
 * allocated, and every type byte, flag and marker must be one this version
 * defines.  Anything else is an ERROR with SQLSTATE 08P01 and a detail that
 * says what is wrong and where; the parser never reads past buf + len.
 *
 * IDENTIFICATION
 *	  src/replication/proto_read.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/transam.h"
#include "access/xlogdefs.h"
#include "mb/pg_wchar.h"
#include "port/pg_bswap.h"
#include "utils/memutils.h"

#include "replication/replication.h"

/* a cursor over one message */
typedef struct ReplReader
{
	const char *buf;
	int			len;			/* whole message, header included */
	int			pos;			/* next byte to read */
	const char *msgname;		/* for error details */
} ReplReader;

#define malformed(...) \
	ereport(ERROR, \
			(errcode(ERRCODE_PROTOCOL_VIOLATION), \
			 errmsg("malformed replication message"), \
			 errdetail(__VA_ARGS__)))

/*
 * need fails unless n more bytes can be read; what names the field, so the
 * detail says where the message ends too early.
 */
static void
need(ReplReader *r, int64 n, const char *what)
{
	if (n > (int64) (r->len - r->pos))
		malformed("%s message ends at byte %d, inside %s.",
				  r->msgname, r->len, what);
}

/*
 * get_u8, get_u16, get_u32 and get_u64 read big-endian unsigned integers.
 */
static uint8
get_u8(ReplReader *r, const char *what)
{
	need(r, 1, what);
	return (uint8) r->buf[r->pos++];
}

static uint16
get_u16(ReplReader *r, const char *what)
{
	uint16		v;

	need(r, 2, what);
	memcpy(&v, r->buf + r->pos, 2);
	r->pos += 2;
	return pg_ntoh16(v);
}

static uint32
get_u32(ReplReader *r, const char *what)
{
	uint32		v;

	need(r, 4, what);
	memcpy(&v, r->buf + r->pos, 4);
	r->pos += 4;
	return pg_ntoh32(v);
}

static uint64
get_u64(ReplReader *r, const char *what)
{
	uint64		v;

	need(r, 8, what);
	memcpy(&v, r->buf + r->pos, 8);
	r->pos += 8;
	return pg_ntoh64(v);
}

/*
 * get_bytes returns a NUL-terminated palloc'd copy of the next len bytes,
 * refusing embedded zero bytes (no name or value text can contain one, and
 * the receiver handles them as C strings) and bytes that are not valid in
 * the database encoding (type input functions trust their input to be).
 */
static char *
get_bytes(ReplReader *r, int64 len, const char *what)
{
	char	   *s;

	need(r, len, what);
	if (memchr(r->buf + r->pos, '\0', len) != NULL)
		malformed("%s message has a zero byte inside %s.", r->msgname, what);
	if (!pg_verifymbstr(r->buf + r->pos, len, true))
		malformed("%s message has %s that is not valid in encoding \"%s\".",
				  r->msgname, what, GetDatabaseEncodingName());
	s = palloc(len + 1);
	memcpy(s, r->buf + r->pos, len);
	s[len] = '\0';
	r->pos += len;
	return s;
}

/*
 * get_name reads a string that names something (schema, table, column,
 * node): 1 to NAMEDATALEN - 1 bytes.
 */
static char *
get_name(ReplReader *r, const char *what)
{
	uint16		len = get_u16(r, what);

	if (len == 0 || len >= NAMEDATALEN)
		malformed("%s message has %s of %u bytes; a name has 1 to %d bytes.",
				  r->msgname, what, len, NAMEDATALEN - 1);
	return get_bytes(r, len, what);
}

/*
 * get_count reads a column or relation count and checks it against the
 * maximum and against the bytes left (each item takes at least min_size),
 * so a forged count can neither allocate much nor loop long.
 */
static int
get_count(ReplReader *r, bool wide, int64 max, int min_size, const char *what)
{
	int64		n = wide ? (int64) get_u32(r, what) : (int64) get_u16(r, what);

	if (n > max)
		malformed("%s message declares %lld %s, more than the maximum of %lld.",
				  r->msgname, (long long) n, what, (long long) max);
	if (n * min_size > (int64) (r->len - r->pos))
		malformed("%s message declares %lld %s, but only %d bytes remain.",
				  r->msgname, (long long) n, what, r->len - r->pos);
	return (int) n;
}

/*
 * get_time reads a commit time and insists it is a timestamp PostgreSQL
 * can represent, so no consumer trips over it later.
 */
static TimestampTz
get_time(ReplReader *r, const char *what)
{
	TimestampTz t = (TimestampTz) get_u64(r, what);

	if (!IS_VALID_TIMESTAMP(t))
		malformed("%s message has %s out of range.", r->msgname, what);
	return t;
}

/*
 * get_lsn reads an LSN, which cannot be InvalidXLogRecPtr.
 */
static XLogRecPtr
get_lsn(ReplReader *r, const char *what)
{
	XLogRecPtr	lsn = (XLogRecPtr) get_u64(r, what);

	if (XLogRecPtrIsInvalid(lsn))
		malformed("%s message has 0 as %s.", r->msgname, what);
	return lsn;
}

/*
 * get_relid reads a relation OID, which cannot be InvalidOid.
 */
static uint32
get_relid(ReplReader *r, const char *what)
{
	uint32		relid = get_u32(r, what);

	if (relid == InvalidOid)
		malformed("%s message has 0 as %s.", r->msgname, what);
	return relid;
}

/*
 * get_tuple reads a tuple: a column count, then per column a kind byte and
 * for kind 't' a 4-byte length and the text.
 */
static void
get_tuple(ReplReader *r, MyceliumReplTuple *tuple)
{
	int			i;

	tuple->natts = get_count(r, false, MaxHeapAttributeNumber, 1, "columns");
	tuple->values = palloc0(Max(tuple->natts, 1) * sizeof(MyceliumReplValue));

	for (i = 0; i < tuple->natts; i++)
	{
		MyceliumReplValue *v = &tuple->values[i];
		uint32		len;

		v->kind = (char) get_u8(r, "a column kind");
		switch (v->kind)
		{
			case MYCELIUM_REPL_VALUE_NULL:
			case MYCELIUM_REPL_VALUE_UNCHANGED:
				break;
			case MYCELIUM_REPL_VALUE_TEXT:
				len = get_u32(r, "a value length");
				if (len > MaxAllocSize - 1)
					malformed("%s message has a value of %u bytes, more than the maximum of %d.",
							  r->msgname, len, (int) (MaxAllocSize - 1));
				v->len = (int) len;
				v->data = get_bytes(r, len, "a value");
				break;
			default:
				malformed("%s message has unknown column kind 0x%02x in column %d.",
						  r->msgname, (unsigned char) v->kind, i + 1);
		}
	}
}

/*
 * parse_begin reads BEGIN and insists on the protocol version this build
 * speaks: a peer speaking another one must not be half-understood.
 */
static void
parse_begin(ReplReader *r, MyceliumReplMessage *out)
{
	out->u.begin.proto_version = get_u8(r, "the protocol version");
	if (out->u.begin.proto_version != MYCELIUM_REPL_PROTO_VERSION)
		malformed("BEGIN message has protocol version %u; this server speaks version %d.",
				  out->u.begin.proto_version, MYCELIUM_REPL_PROTO_VERSION);
	out->u.begin.final_lsn = get_lsn(r, "the final LSN");
	out->u.begin.commit_time = get_time(r, "the commit time");
	out->u.begin.xid = get_u32(r, "the transaction ID");
	if (out->u.begin.xid == InvalidTransactionId)
		malformed("BEGIN message has 0 as the transaction ID.");
}

/*
 * parse_commit reads COMMIT; version 1 defines no flags.
 */
static void
parse_commit(ReplReader *r, MyceliumReplMessage *out)
{
	out->u.commit.flags = get_u8(r, "the flags");
	if (out->u.commit.flags != 0)
		malformed("COMMIT message has unknown flags 0x%02x.", out->u.commit.flags);
	out->u.commit.commit_lsn = get_lsn(r, "the commit LSN");
	out->u.commit.end_lsn = get_lsn(r, "the end LSN");
	if (out->u.commit.end_lsn < out->u.commit.commit_lsn)
		malformed("COMMIT message has an end LSN before its commit LSN.");
	out->u.commit.commit_time = get_time(r, "the commit time");
	out->u.commit.origin = get_bytes(r, get_u16(r, "the origin name"),
									 "the origin name");
	if (strlen(out->u.commit.origin) >= NAMEDATALEN)
		malformed("COMMIT message has an origin name of more than %d bytes.",
				  NAMEDATALEN - 1);
}

/*
 * parse_relation reads RELATION: OID, schema, name and the columns.  Each
 * column takes at least 5 bytes (flags and two string lengths).
 */
static void
parse_relation(ReplReader *r, MyceliumReplMessage *out)
{
	int			i;

	out->u.relation.relid = get_relid(r, "the relation OID");
	out->u.relation.nspname = get_name(r, "the schema name");
	out->u.relation.relname = get_name(r, "the table name");
	out->u.relation.natts = get_count(r, false, MaxHeapAttributeNumber, 5,
									  "columns");
	out->u.relation.columns =
		palloc0(Max(out->u.relation.natts, 1) * sizeof(MyceliumReplColumn));

	for (i = 0; i < out->u.relation.natts; i++)
	{
		MyceliumReplColumn *col = &out->u.relation.columns[i];

		col->flags = get_u8(r, "column flags");
		if (col->flags & ~MYCELIUM_REPL_COLUMN_KEY)
			malformed("RELATION message has unknown flags 0x%02x in column %d.",
					  col->flags, i + 1);
		col->name = get_name(r, "a column name");
		col->type_name = get_bytes(r, get_u16(r, "a type name"), "a type name");
		if (col->type_name[0] == '\0')
			malformed("RELATION message has an empty type name in column %d.",
					  i + 1);
	}
}

/*
 * parse_change reads INSERT, UPDATE or DELETE: the relation OID, then the
 * tuples each kind allows, each introduced by its marker byte.
 */
static void
parse_change(ReplReader *r, MyceliumReplMessage *out)
{
	char		marker;

	out->u.change.relid = get_relid(r, "the relation OID");
	marker = (char) get_u8(r, "a tuple marker");

	if (out->type != MYCELIUM_REPL_MSG_INSERT &&
		(marker == MYCELIUM_REPL_TUPLE_KEY || marker == MYCELIUM_REPL_TUPLE_OLD))
	{
		out->u.change.old_kind = marker;
		get_tuple(r, &out->u.change.old_tuple);
		if (out->type == MYCELIUM_REPL_MSG_DELETE)
			return;
		marker = (char) get_u8(r, "a tuple marker");
	}
	else if (out->type == MYCELIUM_REPL_MSG_DELETE)
		malformed("DELETE message has tuple marker 0x%02x where 'K' or 'O' belongs.",
				  (unsigned char) marker);

	if (marker != MYCELIUM_REPL_TUPLE_NEW)
		malformed("%s message has tuple marker 0x%02x where 'N' belongs.",
				  r->msgname, (unsigned char) marker);
	out->u.change.has_new = true;
	get_tuple(r, &out->u.change.new_tuple);
}

/*
 * parse_truncate reads TRUNCATE: flags, a 4-byte count (at least one) and
 * that many relation OIDs.
 */
static void
parse_truncate(ReplReader *r, MyceliumReplMessage *out)
{
	int			i;

	out->u.truncate.flags = get_u8(r, "the flags");
	if (out->u.truncate.flags & ~(MYCELIUM_REPL_TRUNCATE_CASCADE |
								  MYCELIUM_REPL_TRUNCATE_RESTART))
		malformed("TRUNCATE message has unknown flags 0x%02x.",
				  out->u.truncate.flags);
	out->u.truncate.nrelids = get_count(r, true, MaxAllocSize / sizeof(uint32), 4,
										"relations");
	if (out->u.truncate.nrelids == 0)
		malformed("TRUNCATE message names no relations.");
	out->u.truncate.relids = palloc(out->u.truncate.nrelids * sizeof(uint32));
	for (i = 0; i < out->u.truncate.nrelids; i++)
		out->u.truncate.relids[i] = get_relid(r, "the relation OID");
}

/*
 * parse_context reads CONTEXT: a 2-byte count, then per entry a node name
 * and a commit time.  Each entry takes at least 11 bytes.
 */
static void
parse_context(ReplReader *r, MyceliumReplMessage *out)
{
	int			n = get_count(r, false, MYCELIUM_REPL_MAX_CONTEXT, 11, "entries");
	int			i;

	out->u.context.nentries = n;
	out->u.context.nodes = palloc(Max(n, 1) * sizeof(char *));
	out->u.context.times = palloc(Max(n, 1) * sizeof(TimestampTz));
	for (i = 0; i < n; i++)
	{
		out->u.context.nodes[i] = get_name(r, "a node name");
		out->u.context.times[i] = get_time(r, "a commit time");
	}
}

/*
 * MyceliumReplMsgTypeName returns the name of a message type for messages
 * and rendering, or NULL for a byte that is no message type.
 */
const char *
MyceliumReplMsgTypeName(MyceliumReplMsgType type)
{
	switch (type)
	{
		case MYCELIUM_REPL_MSG_BEGIN:
			return "BEGIN";
		case MYCELIUM_REPL_MSG_COMMIT:
			return "COMMIT";
		case MYCELIUM_REPL_MSG_RELATION:
			return "RELATION";
		case MYCELIUM_REPL_MSG_INSERT:
			return "INSERT";
		case MYCELIUM_REPL_MSG_UPDATE:
			return "UPDATE";
		case MYCELIUM_REPL_MSG_DELETE:
			return "DELETE";
		case MYCELIUM_REPL_MSG_TRUNCATE:
			return "TRUNCATE";
		case MYCELIUM_REPL_MSG_CONTEXT:
			return "CONTEXT";
	}
	return NULL;
}

/*
 * MyceliumReplParseMessage parses the one message in buf[0 .. len) into
 * *out.  The buffer must hold exactly one message: the header's body length
 * must equal len - 5, and the body must be consumed exactly.  Malformed
 * input raises ERROR (SQLSTATE 08P01, "malformed replication message") with
 * a detail; out's contents are then undefined.
 */
void
MyceliumReplParseMessage(const char *buf, int len, MyceliumReplMessage *out)
{
	ReplReader	r;
	uint8		type;
	uint32		body_len;

	memset(out, 0, sizeof(*out));
	if (buf == NULL || len < MYCELIUM_REPL_HEADER_SIZE)
		malformed("The message is %d bytes long, shorter than the %d-byte header.",
				  buf == NULL ? 0 : Max(len, 0), MYCELIUM_REPL_HEADER_SIZE);

	r.buf = buf;
	r.len = len;
	r.pos = 0;
	r.msgname = "The";
	type = get_u8(&r, "the type");
	body_len = get_u32(&r, "the length");

	r.msgname = MyceliumReplMsgTypeName((MyceliumReplMsgType) type);
	if (r.msgname == NULL)
		malformed("Message type 0x%02x is unknown.", type);
	if (body_len != (uint32) (len - MYCELIUM_REPL_HEADER_SIZE))
		malformed("%s message header announces a body of %u bytes, but %d bytes follow.",
				  r.msgname, body_len, len - MYCELIUM_REPL_HEADER_SIZE);

	out->type = (MyceliumReplMsgType) type;
	switch (out->type)
	{
		case MYCELIUM_REPL_MSG_BEGIN:
			parse_begin(&r, out);
			break;
		case MYCELIUM_REPL_MSG_COMMIT:
			parse_commit(&r, out);
			break;
		case MYCELIUM_REPL_MSG_RELATION:
			parse_relation(&r, out);
			break;
		case MYCELIUM_REPL_MSG_INSERT:
		case MYCELIUM_REPL_MSG_UPDATE:
		case MYCELIUM_REPL_MSG_DELETE:
			parse_change(&r, out);
			break;
		case MYCELIUM_REPL_MSG_TRUNCATE:
			parse_truncate(&r, out);
			break;
		case MYCELIUM_REPL_MSG_CONTEXT:
			parse_context(&r, out);
			break;
	}

	if (r.pos != r.len)
		malformed("%s message has %d bytes after its last field.",
				  r.msgname, r.len - r.pos);
}
