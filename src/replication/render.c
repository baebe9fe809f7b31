/*-------------------------------------------------------------------------
 *
 * render.c
 *	  mycelium.decode_replication_message: one protocol message as jsonb.
 *
 * The function runs a message through MyceliumReplParseMessage, the parser
 * the apply side uses, and renders what it understood.  Tests use it to
 * show the stream of the output plugin readably and to prove that malformed
 * input is refused with an error rather than misread; operators can use it
 * to look at what a slot would send.
 *
 * IDENTIFICATION
 *	  src/replication/render.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "replication/replication.h"

PG_FUNCTION_INFO_V1(mycelium_decode_replication_message);

/*
 * render_key appends the JSON key of the next object member, with the
 * separating comma unless it is the first member.
 */
static void
render_key(StringInfo buf, const char *key)
{
	if (buf->data[buf->len - 1] != '{')
		appendStringInfoChar(buf, ',');
	escape_json(buf, key);
	appendStringInfoChar(buf, ':');
}

/*
 * render_lsn appends an LSN member in PostgreSQL's X/X notation.
 */
static void
render_lsn(StringInfo buf, const char *key, XLogRecPtr lsn)
{
	render_key(buf, key);
	appendStringInfo(buf, "\"%X/%X\"", LSN_FORMAT_ARGS(lsn));
}

/*
 * render_time appends a timestamptz member in ISO 8601, as to_json would.
 */
static void
render_time(StringInfo buf, const char *key, TimestampTz t)
{
	char		tbuf[MAXDATELEN + 1];

	render_key(buf, key);
	appendStringInfo(buf, "\"%s\"",
					 JsonEncodeDateTime(tbuf, TimestampTzGetDatum(t),
										TIMESTAMPTZOID, NULL));
}

/*
 * render_tuple appends a tuple member as an array of values: text as a
 * string, NULL as null, an unchanged TOASTed value as {"unchanged": true}.
 */
static void
render_tuple(StringInfo buf, const char *key, const MyceliumReplTuple *tuple)
{
	int			i;

	render_key(buf, key);
	appendStringInfoChar(buf, '[');
	for (i = 0; i < tuple->natts; i++)
	{
		const MyceliumReplValue *v = &tuple->values[i];

		if (i > 0)
			appendStringInfoChar(buf, ',');
		if (v->kind == MYCELIUM_REPL_VALUE_TEXT)
			escape_json(buf, v->data);
		else if (v->kind == MYCELIUM_REPL_VALUE_UNCHANGED)
			appendStringInfoString(buf, "{\"unchanged\":true}");
		else
			appendStringInfoString(buf, "null");
	}
	appendStringInfoChar(buf, ']');
}

/*
 * render_relation appends the members of a RELATION message.
 */
static void
render_relation(StringInfo buf, const MyceliumReplMessage *msg)
{
	int			i;

	render_key(buf, "relid");
	appendStringInfo(buf, "%u", msg->u.relation.relid);
	render_key(buf, "schema");
	escape_json(buf, msg->u.relation.nspname);
	render_key(buf, "table");
	escape_json(buf, msg->u.relation.relname);
	render_key(buf, "columns");
	appendStringInfoChar(buf, '[');
	for (i = 0; i < msg->u.relation.natts; i++)
	{
		const MyceliumReplColumn *col = &msg->u.relation.columns[i];

		appendStringInfoString(buf, i > 0 ? ",{" : "{");
		render_key(buf, "name");
		escape_json(buf, col->name);
		render_key(buf, "type");
		escape_json(buf, col->type_name);
		render_key(buf, "key");
		appendStringInfoString(buf, (col->flags & MYCELIUM_REPL_COLUMN_KEY) ?
							   "true" : "false");
		appendStringInfoChar(buf, '}');
	}
	appendStringInfoChar(buf, ']');
}

/*
 * render_body appends the members that follow "type" for msg.
 */
static void
render_body(StringInfo buf, const MyceliumReplMessage *msg)
{
	int			i;

	switch (msg->type)
	{
		case MYCELIUM_REPL_MSG_BEGIN:
			render_key(buf, "proto_version");
			appendStringInfo(buf, "%u", msg->u.begin.proto_version);
			render_lsn(buf, "final_lsn", msg->u.begin.final_lsn);
			render_time(buf, "commit_time", msg->u.begin.commit_time);
			render_key(buf, "xid");
			appendStringInfo(buf, "%u", msg->u.begin.xid);
			break;
		case MYCELIUM_REPL_MSG_COMMIT:
			render_lsn(buf, "commit_lsn", msg->u.commit.commit_lsn);
			render_lsn(buf, "end_lsn", msg->u.commit.end_lsn);
			render_time(buf, "commit_time", msg->u.commit.commit_time);
			render_key(buf, "origin");
			escape_json(buf, msg->u.commit.origin);
			break;
		case MYCELIUM_REPL_MSG_RELATION:
			render_relation(buf, msg);
			break;
		case MYCELIUM_REPL_MSG_INSERT:
		case MYCELIUM_REPL_MSG_UPDATE:
		case MYCELIUM_REPL_MSG_DELETE:
			render_key(buf, "relid");
			appendStringInfo(buf, "%u", msg->u.change.relid);
			if (msg->u.change.old_kind != '\0')
				render_tuple(buf, msg->u.change.old_kind == MYCELIUM_REPL_TUPLE_KEY ?
							 "key" : "old", &msg->u.change.old_tuple);
			if (msg->u.change.has_new)
				render_tuple(buf, "new", &msg->u.change.new_tuple);
			break;
		case MYCELIUM_REPL_MSG_TRUNCATE:
			render_key(buf, "cascade");
			appendStringInfoString(buf, (msg->u.truncate.flags & MYCELIUM_REPL_TRUNCATE_CASCADE) ?
								   "true" : "false");
			render_key(buf, "restart_identity");
			appendStringInfoString(buf, (msg->u.truncate.flags & MYCELIUM_REPL_TRUNCATE_RESTART) ?
								   "true" : "false");
			render_key(buf, "relids");
			appendStringInfoChar(buf, '[');
			for (i = 0; i < msg->u.truncate.nrelids; i++)
				appendStringInfo(buf, "%s%u", i > 0 ? "," : "",
								 msg->u.truncate.relids[i]);
			appendStringInfoChar(buf, ']');
			break;
		case MYCELIUM_REPL_MSG_CONTEXT:
			render_key(buf, "vector");
			appendStringInfoChar(buf, '{');
			for (i = 0; i < msg->u.context.nentries; i++)
			{
				char		tbuf[MAXDATELEN + 1];

				if (i > 0)
					appendStringInfoChar(buf, ',');
				escape_json(buf, msg->u.context.nodes[i]);
				appendStringInfo(buf, ":\"%s\"",
								 JsonEncodeDateTime(tbuf, TimestampTzGetDatum(msg->u.context.times[i]),
													TIMESTAMPTZOID, NULL));
			}
			appendStringInfoChar(buf, '}');
			break;
	}
}

/*
 * mycelium_decode_replication_message(bytea) RETURNS jsonb parses one
 * message and renders it; malformed input raises the parser's ERROR.
 */
Datum
mycelium_decode_replication_message(PG_FUNCTION_ARGS)
{
	bytea	   *raw = PG_GETARG_BYTEA_PP(0);
	MyceliumReplMessage msg;
	StringInfoData buf;

	MyceliumReplParseMessage(VARDATA_ANY(raw), VARSIZE_ANY_EXHDR(raw), &msg);

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	render_key(&buf, "type");
	escape_json(&buf, MyceliumReplMsgTypeName(msg.type));
	render_body(&buf, &msg);
	appendStringInfoChar(&buf, '}');

	PG_RETURN_DATUM(DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data)));
}
