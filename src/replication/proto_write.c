/*-------------------------------------------------------------------------
 *
 * proto_write.c
 *	  Serialise decoded changes into Mycelium's replication protocol.
 *
 * Each writer appends one complete message (type byte, body length, body)
 * to a StringInfo; the output plugin sends every message as one write.
 * The layout is the one replication.h and docs/replication.md describe, and
 * proto_read.c must accept exactly what is written here.
 *
 * Only live, non-generated columns are sent, in attribute order, in both
 * RELATION messages and tuples, so the receiver can pair them by position.
 * Values travel as the text of their type's output function.
 *
 * IDENTIFICATION
 *	  src/replication/proto_write.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "access/sysattr.h"
#include "access/tupdesc.h"
#include "libpq/pqformat.h"
#include "nodes/bitmapset.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "replication/capture.h"

/*
 * column_is_sent says whether attribute i of desc goes on the wire: dropped
 * columns do not exist for the receiver, and generated columns are computed
 * again wherever the row is stored.
 */
static bool
column_is_sent(TupleDesc desc, int i)
{
	Form_pg_attribute att = TupleDescAttr(desc, i);

	return !att->attisdropped && !att->attgenerated;
}

/*
 * count_sent_columns returns how many attributes of desc column_is_sent.
 */
static int
count_sent_columns(TupleDesc desc)
{
	int			n = 0;
	int			i;

	for (i = 0; i < desc->natts; i++)
		if (column_is_sent(desc, i))
			n++;
	return n;
}

/*
 * begin_message appends the header of a message of the given type with a
 * placeholder length, and returns the offset end_message patches.
 */
static int
begin_message(StringInfo out, char type)
{
	int			start = out->len;

	pq_sendbyte(out, type);
	pq_sendint32(out, 0);
	return start;
}

/*
 * end_message stores the body length of the message that begin_message
 * started at offset start, now that the body is complete.
 */
static void
end_message(StringInfo out, int start)
{
	uint32		body = pg_hton32((uint32) (out->len - start - MYCELIUM_REPL_HEADER_SIZE));

	memcpy(out->data + start + 1, &body, sizeof(body));
}

/*
 * send_string appends a length-prefixed string.  Names and type names are
 * far below the 2-byte limit, so exceeding it is a bug, not user input.
 */
static void
send_string(StringInfo out, const char *s)
{
	size_t		len = strlen(s);

	if (len > PG_UINT16_MAX)
		elog(ERROR, "replication string of %zu bytes is too long", len);
	pq_sendint16(out, (uint16) len);
	pq_sendbytes(out, s, (int) len);
}

/*
 * send_tuple appends the sent columns of tuple: a column count, then per
 * column a kind byte and, for kind 't', the length and text of the value.
 * A TOASTed value stored on disk that the tuple still points to was not
 * changed by the statement and is sent as 'u' (its text is not in WAL).
 */
static void
send_tuple(StringInfo out, Relation rel, HeapTuple tuple)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *values = palloc(desc->natts * sizeof(Datum));
	bool	   *nulls = palloc(desc->natts * sizeof(bool));
	int			i;

	heap_deform_tuple(tuple, desc, values, nulls);
	pq_sendint16(out, (uint16) count_sent_columns(desc));

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Oid			typoutput;
		bool		typisvarlena;
		Datum		value;
		char	   *text;
		int			len;

		if (!column_is_sent(desc, i))
			continue;
		if (nulls[i])
		{
			pq_sendbyte(out, MYCELIUM_REPL_VALUE_NULL);
			continue;
		}
		value = values[i];
		if (att->attlen == -1 && VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(value)))
		{
			pq_sendbyte(out, MYCELIUM_REPL_VALUE_UNCHANGED);
			continue;
		}

		getTypeOutputInfo(att->atttypid, &typoutput, &typisvarlena);
		if (typisvarlena)
			value = PointerGetDatum(PG_DETOAST_DATUM(value));
		text = OidOutputFunctionCall(typoutput, value);
		len = strlen(text);

		pq_sendbyte(out, MYCELIUM_REPL_VALUE_TEXT);
		pq_sendint32(out, (uint32) len);
		pq_sendbytes(out, text, len);
		pfree(text);
	}

	pfree(values);
	pfree(nulls);
}

/*
 * MyceliumReplWriteBegin appends BEGIN: protocol version, the LSN of the
 * transaction's commit record, its commit time and its xid.
 */
void
MyceliumReplWriteBegin(StringInfo out, XLogRecPtr final_lsn,
					   TimestampTz commit_time, TransactionId xid)
{
	int			start = begin_message(out, MYCELIUM_REPL_MSG_BEGIN);

	pq_sendbyte(out, MYCELIUM_REPL_PROTO_VERSION);
	pq_sendint64(out, final_lsn);
	pq_sendint64(out, commit_time);
	pq_sendint32(out, xid);
	end_message(out, start);
}

/*
 * MyceliumReplWriteCommit appends COMMIT: flags (0), commit LSN, end LSN
 * (where the receiver resumes), commit time and the origin node's name.
 */
void
MyceliumReplWriteCommit(StringInfo out, XLogRecPtr commit_lsn,
						XLogRecPtr end_lsn, TimestampTz commit_time,
						const char *origin)
{
	int			start = begin_message(out, MYCELIUM_REPL_MSG_COMMIT);

	pq_sendbyte(out, 0);
	pq_sendint64(out, commit_lsn);
	pq_sendint64(out, end_lsn);
	pq_sendint64(out, commit_time);
	send_string(out, origin);
	end_message(out, start);
}

/*
 * MyceliumReplWriteRelation appends RELATION for rel: its OID (the key later
 * changes refer to), schema, name, and per sent column a flags byte (primary
 * key membership), the name and the type with its modifier.
 */
void
MyceliumReplWriteRelation(StringInfo out, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Bitmapset  *pkey;
	int			start;
	int			i;

	pkey = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
	start = begin_message(out, MYCELIUM_REPL_MSG_RELATION);
	pq_sendint32(out, RelationGetRelid(rel));
	send_string(out, get_namespace_name(RelationGetNamespace(rel)));
	send_string(out, RelationGetRelationName(rel));
	pq_sendint16(out, (uint16) count_sent_columns(desc));

	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		uint8		flags = 0;

		if (!column_is_sent(desc, i))
			continue;
		if (bms_is_member(att->attnum - FirstLowInvalidHeapAttributeNumber, pkey))
			flags |= MYCELIUM_REPL_COLUMN_KEY;
		pq_sendbyte(out, flags);
		send_string(out, NameStr(att->attname));
		send_string(out, format_type_with_typemod(att->atttypid, att->atttypmod));
	}
	end_message(out, start);
	bms_free(pkey);
}

/*
 * MyceliumReplWriteInsert appends INSERT: relation OID, 'N', new tuple.
 */
void
MyceliumReplWriteInsert(StringInfo out, Relation rel, HeapTuple newtuple)
{
	int			start = begin_message(out, MYCELIUM_REPL_MSG_INSERT);

	pq_sendint32(out, RelationGetRelid(rel));
	pq_sendbyte(out, MYCELIUM_REPL_TUPLE_NEW);
	send_tuple(out, rel, newtuple);
	end_message(out, start);
}

/*
 * MyceliumReplWriteUpdate appends UPDATE: relation OID, then the old key
 * ('K') or old row ('O') when WAL has one — only when the key changed, or
 * always under REPLICA IDENTITY FULL — then 'N' and the new tuple.
 * old_kind is '\0' when there is no old tuple.
 */
void
MyceliumReplWriteUpdate(StringInfo out, Relation rel, char old_kind,
						HeapTuple oldtuple, HeapTuple newtuple)
{
	int			start = begin_message(out, MYCELIUM_REPL_MSG_UPDATE);

	pq_sendint32(out, RelationGetRelid(rel));
	if (old_kind != '\0')
	{
		pq_sendbyte(out, old_kind);
		send_tuple(out, rel, oldtuple);
	}
	pq_sendbyte(out, MYCELIUM_REPL_TUPLE_NEW);
	send_tuple(out, rel, newtuple);
	end_message(out, start);
}

/*
 * MyceliumReplWriteDelete appends DELETE: relation OID, 'K' or 'O', and the
 * old key (non-key columns null) or old row.
 */
void
MyceliumReplWriteDelete(StringInfo out, Relation rel, char old_kind,
						HeapTuple oldtuple)
{
	int			start = begin_message(out, MYCELIUM_REPL_MSG_DELETE);

	pq_sendint32(out, RelationGetRelid(rel));
	pq_sendbyte(out, old_kind);
	send_tuple(out, rel, oldtuple);
	end_message(out, start);
}

/*
 * MyceliumReplWriteTruncate appends TRUNCATE: flags, a 4-byte count and the
 * OIDs of the truncated relations (each announced by RELATION before).
 */
void
MyceliumReplWriteTruncate(StringInfo out, int nrelids, const Oid *relids,
						  uint8 flags)
{
	int			start = begin_message(out, MYCELIUM_REPL_MSG_TRUNCATE);
	int			i;

	pq_sendbyte(out, flags);
	pq_sendint32(out, (uint32) nrelids);
	for (i = 0; i < nrelids; i++)
		pq_sendint32(out, relids[i]);
	end_message(out, start);
}

/*
 * MyceliumReplWriteContext appends CONTEXT: the writer's version vector,
 * as (node name, latest commit time of that node seen) pairs.
 */
void
MyceliumReplWriteContext(StringInfo out, int nentries, const char *const *nodes,
						 const TimestampTz *times)
{
	int			start = begin_message(out, MYCELIUM_REPL_MSG_CONTEXT);
	int			i;

	pq_sendint16(out, (uint16) nentries);
	for (i = 0; i < nentries; i++)
	{
		send_string(out, nodes[i]);
		pq_sendint64(out, (uint64) times[i]);
	}
	end_message(out, start);
}
