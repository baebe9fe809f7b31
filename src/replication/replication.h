/*-------------------------------------------------------------------------
 *
 * replication.h
 *	  Peer replication: the change-capture wire protocol and its parser.
 *
 * The logical decoding output plugin "mycelium" (replication/capture.c)
 * turns the WAL of replicated tables into the messages described here; the
 * apply side reads them back with MyceliumReplParseMessage.  The format is
 * documented byte by byte in docs/replication.md.
 *
 * Every message is a 1-byte type, a 4-byte body length (network byte order)
 * and the body.  Integers are unsigned and big-endian unless said otherwise;
 * a "string" is a 2-byte length followed by that many bytes (no NUL).
 *
 * IDENTIFICATION
 *	  src/replication/replication.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_REPLICATION_H
#define MYCELIUM_REPLICATION_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"

/* the only protocol version this build speaks */
#define MYCELIUM_REPL_PROTO_VERSION		1

/* type byte + body length */
#define MYCELIUM_REPL_HEADER_SIZE		5

/* message types (the first byte of every message) */
typedef enum MyceliumReplMsgType
{
	MYCELIUM_REPL_MSG_BEGIN = 'B',
	MYCELIUM_REPL_MSG_COMMIT = 'C',
	MYCELIUM_REPL_MSG_RELATION = 'R',
	MYCELIUM_REPL_MSG_INSERT = 'I',
	MYCELIUM_REPL_MSG_UPDATE = 'U',
	MYCELIUM_REPL_MSG_DELETE = 'D',
	MYCELIUM_REPL_MSG_TRUNCATE = 'T',
	MYCELIUM_REPL_MSG_CONTEXT = 'V'	/* the writer's version vector */
} MyceliumReplMsgType;

/* at most this many entries in a CONTEXT message (one per node) */
#define MYCELIUM_REPL_MAX_CONTEXT		1024

/* tuple markers inside INSERT, UPDATE and DELETE */
#define MYCELIUM_REPL_TUPLE_NEW			'N' /* the new row */
#define MYCELIUM_REPL_TUPLE_KEY			'K' /* old primary key only */
#define MYCELIUM_REPL_TUPLE_OLD			'O' /* whole old row (REPLICA
											 * IDENTITY FULL) */

/* per-column value kinds inside a tuple */
#define MYCELIUM_REPL_VALUE_NULL		'n'
#define MYCELIUM_REPL_VALUE_UNCHANGED	'u' /* unchanged TOASTed value, not
											 * sent */
#define MYCELIUM_REPL_VALUE_TEXT		't' /* text output of the value */

/* RELATION column flags */
#define MYCELIUM_REPL_COLUMN_KEY		0x01	/* part of the primary key */

/* TRUNCATE flags */
#define MYCELIUM_REPL_TRUNCATE_CASCADE	0x01
#define MYCELIUM_REPL_TRUNCATE_RESTART	0x02	/* RESTART IDENTITY */

/* one column value of a tuple */
typedef struct MyceliumReplValue
{
	char		kind;			/* MYCELIUM_REPL_VALUE_* */
	int			len;			/* bytes in data (kind 't' only) */
	char	   *data;			/* NUL-terminated copy (kind 't'), else NULL */
} MyceliumReplValue;

typedef struct MyceliumReplTuple
{
	int			natts;
	MyceliumReplValue *values;
} MyceliumReplTuple;

/* one column of a RELATION message */
typedef struct MyceliumReplColumn
{
	uint8		flags;			/* MYCELIUM_REPL_COLUMN_* */
	char	   *name;
	char	   *type_name;		/* format_type_with_typemod() text */
} MyceliumReplColumn;

/*
 * A parsed message.  Strings and arrays are palloc'd copies in the memory
 * context current at parse time; nothing points into the input buffer.
 */
typedef struct MyceliumReplMessage
{
	MyceliumReplMsgType type;
	union
	{
		struct
		{
			uint8		proto_version;
			XLogRecPtr	final_lsn;
			TimestampTz commit_time;
			uint32		xid;
		}			begin;
		struct
		{
			uint8		flags;	/* always 0 in version 1 */
			XLogRecPtr	commit_lsn;
			XLogRecPtr	end_lsn;
			TimestampTz commit_time;
			char	   *origin; /* name of the node the transaction ran on */
		}			commit;
		struct
		{
			uint32		relid;	/* sender's OID: a key, not a local OID */
			char	   *nspname;
			char	   *relname;
			int			natts;
			MyceliumReplColumn *columns;
		}			relation;
		struct
		{
			uint32		relid;
			char		old_kind;	/* 'K', 'O', or '\0' when no old tuple */
			MyceliumReplTuple old_tuple;
			bool		has_new;
			MyceliumReplTuple new_tuple;
		}			change;		/* INSERT, UPDATE and DELETE */
		struct
		{
			int			nentries;
			char	  **nodes;	/* origin node names */
			TimestampTz *times; /* latest commit of each seen by the writer */
		}			context;	/* CONTEXT: applies to the changes after it */
		struct
		{
			uint8		flags;	/* MYCELIUM_REPL_TRUNCATE_* */
			int			nrelids;
			uint32	   *relids;
		}			truncate;
	}			u;
} MyceliumReplMessage;

/* in replication/proto_read.c */
extern void MyceliumReplParseMessage(const char *buf, int len,
									 MyceliumReplMessage *out);
extern const char *MyceliumReplMsgTypeName(MyceliumReplMsgType type);

/* in replication/proto_write.c: a CONTEXT message (also used outside capture) */
struct StringInfoData;
extern void MyceliumReplWriteContext(struct StringInfoData *out, int nentries,
									 const char *const *nodes, const TimestampTz *times);

/* in replication/api.c: give a joining node the replicated tables */
struct MyceliumConnection;
extern void MyceliumReplCopyTablesTo(struct MyceliumConnection *conn);

#endif							/* MYCELIUM_REPLICATION_H */
