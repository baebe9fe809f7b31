/*-------------------------------------------------------------------------
 *
 * move_copy.c
 *	  Streaming the rows of a shard table from one node to another for a
 *	  shard move.
 *
 * The coordinator of a move relays COPY ... TO STDOUT on the source into
 * COPY ... FROM STDIN on the target, one row at a time, with libpq's
 * asynchronous copy calls on the two node connections.  When the
 * coordinator is itself the source it reads its table through an SPI
 * cursor and writes COPY text rows; when it is the target it feeds the
 * remote rows to the server's own COPY FROM through a data source
 * callback.  Nothing is held in memory beyond a batch of rows.  Every
 * wait checks for interrupts, and a node that sends nothing for
 * mycelium.peer_timeout fails the copy.
 *
 * IDENTIFICATION
 *	  src/shard/move_copy.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "commands/copy.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "config/config.h"
#include "shard/shard_move.h"

#define COPY_FETCH_ROWS 1000

/* state of the data source callback of a local COPY FROM (see below) */
static MyceliumConnection *copy_src_conn = NULL;
static char *copy_src_buf = NULL;	/* owned by libpq */
static int	copy_src_len = 0;
static int	copy_src_off = 0;
static bool copy_src_eof = false;

/*
 * column_list returns "(a, b, ...)": the columns COPY moves (all but
 * dropped and generated ones), in attribute order, from the shell table.
 */
static char *
column_list(Oid relid, List **names)
{
	Relation	rel = table_open(relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '(');
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->attgenerated)
			continue;
		if (*names != NIL)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, quote_identifier(NameStr(att->attname)));
		*names = lappend(*names, makeString(pstrdup(NameStr(att->attname))));
	}
	appendStringInfoChar(&buf, ')');
	table_close(rel, AccessShareLock);
	return buf.data;
}

/*
 * ShardMoveColumnList returns "a, b, ..." (see column_list).
 */
char *
ShardMoveColumnList(Oid relid)
{
	List	   *names = NIL;
	char	   *cols = column_list(relid, &names);

	return pnstrdup(cols + 1, strlen(cols) - 2);
}

/*
 * copy_wait waits until the connection's socket is ready for `events` or
 * the latch is set; a node that stays silent for mycelium.peer_timeout
 * fails the move.
 */
static void
copy_wait(MyceliumConnection *conn, int events)
{
	int			rc;

	rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | WL_TIMEOUT | events,
						   PQsocket(conn->conn), mycelium_peer_timeout_ms, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
	if (rc & WL_TIMEOUT)
	{
		conn->broken = true;
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("node \"%s\" stopped responding while a shard was being copied", conn->node_name),
				 errdetail("It sent nothing for %d ms (mycelium.peer_timeout).", mycelium_peer_timeout_ms),
				 errhint("Nothing was changed; run the move again once the node is healthy.")));
	}
}

/*
 * copy_start sends a COPY command and waits until the node enters the
 * expected copy state (PGRES_COPY_OUT or PGRES_COPY_IN).
 */
static void
copy_start(MyceliumConnection *conn, const char *sql, ExecStatusType expected)
{
	PGresult   *res;

	if (!MyceliumSendQuery(conn, sql, 0, NULL))
		MyceliumReportConnError(ERROR, conn, "start a copy");
	while (PQisBusy(conn->conn))
	{
		copy_wait(conn, WL_SOCKET_READABLE);
		if (!PQconsumeInput(conn->conn))
			MyceliumReportConnError(ERROR, conn, "start a copy");
	}
	res = PQgetResult(conn->conn);
	if (res == NULL || PQresultStatus(res) != expected)
	{
		conn->broken = true;
		MyceliumReportResultError(ERROR, res, conn, sql);
	}
	PQclear(res);
}

/*
 * copy_out_next returns the next row of a COPY TO STDOUT in *buf (libpq's
 * memory: PQfreemem it) and its length, or -1 once the copy has finished
 * successfully.
 */
static int
copy_out_next(MyceliumConnection *conn, char **buf)
{
	for (;;)
	{
		int			len = PQgetCopyData(conn->conn, buf, 1);
		PGresult   *res;

		if (len > 0)
			return len;
		if (len == -2)
			MyceliumReportConnError(ERROR, conn, "read rows of a shard");
		if (len == -1)
		{
			res = MyceliumGetResult(conn, 0, true);
			if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
				MyceliumReportResultError(ERROR, res, conn, "COPY ... TO STDOUT");
			PQclear(res);
			return -1;
		}
		copy_wait(conn, WL_SOCKET_READABLE);
		if (!PQconsumeInput(conn->conn))
			MyceliumReportConnError(ERROR, conn, "read rows of a shard");
	}
}

/*
 * copy_in_put queues data for a COPY FROM STDIN, waiting while libpq's
 * buffer is full.
 */
static void
copy_in_put(MyceliumConnection *conn, const char *buf, int len)
{
	for (;;)
	{
		int			rc = PQputCopyData(conn->conn, buf, len);

		if (rc == 1)
			break;
		if (rc < 0)
			MyceliumReportConnError(ERROR, conn, "write rows of a shard");
		copy_wait(conn, WL_SOCKET_WRITEABLE | WL_SOCKET_READABLE);
		if (PQflush(conn->conn) < 0 || !PQconsumeInput(conn->conn))
			MyceliumReportConnError(ERROR, conn, "write rows of a shard");
	}
}

/*
 * copy_in_end ends a COPY FROM STDIN and checks its result.
 */
static void
copy_in_end(MyceliumConnection *conn, const char *sql)
{
	PGresult   *res;
	int			rc;

	while ((rc = PQputCopyEnd(conn->conn, NULL)) == 0)
		copy_wait(conn, WL_SOCKET_WRITEABLE);
	if (rc < 0)
		MyceliumReportConnError(ERROR, conn, "write rows of a shard");
	while ((rc = PQflush(conn->conn)) == 1)
		copy_wait(conn, WL_SOCKET_WRITEABLE | WL_SOCKET_READABLE);
	if (rc < 0)
		MyceliumReportConnError(ERROR, conn, "write rows of a shard");
	res = MyceliumGetResult(conn, 0, true);
	if (res == NULL || PQresultStatus(res) != PGRES_COMMAND_OK)
		MyceliumReportResultError(ERROR, res, conn, sql);
	PQclear(res);
}

/*
 * append_copy_text appends a value in COPY text format.
 */
static void
append_copy_text(StringInfo buf, const char *s)
{
	for (; *s; s++)
	{
		switch (*s)
		{
			case '\\':
				appendStringInfoString(buf, "\\\\");
				break;
			case '\n':
				appendStringInfoString(buf, "\\n");
				break;
			case '\r':
				appendStringInfoString(buf, "\\r");
				break;
			case '\t':
				appendStringInfoString(buf, "\\t");
				break;
			default:
				appendStringInfoChar(buf, *s);
		}
	}
}

/*
 * copy_local_to_remote streams a local shard table into a COPY FROM STDIN
 * already started on conn, reading it through an SPI cursor in batches.
 */
static void
copy_local_to_remote(const char *select_sql, MyceliumConnection *conn)
{
	MemoryContext batch = AllocSetContextCreate(CurrentMemoryContext, "shard copy batch",
												ALLOCSET_DEFAULT_SIZES);
	Portal		portal;

	SPI_connect();
	/* not read-only: in READ COMMITTED that takes a snapshot after our lock */
	portal = SPI_cursor_open_with_args(NULL, select_sql, 0, NULL, NULL, NULL, false, 0);
	for (;;)
	{
		uint64		r;
		MemoryContext old;

		SPI_cursor_fetch(portal, true, COPY_FETCH_ROWS);
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(batch);
		for (r = 0; r < SPI_processed; r++)
		{
			StringInfoData line;
			int			a;

			initStringInfo(&line);
			for (a = 1; a <= SPI_tuptable->tupdesc->natts; a++)
			{
				char	   *v = SPI_getvalue(SPI_tuptable->vals[r], SPI_tuptable->tupdesc, a);

				if (a > 1)
					appendStringInfoChar(&line, '\t');
				if (v == NULL)
					appendStringInfoString(&line, "\\N");
				else
					append_copy_text(&line, v);
			}
			appendStringInfoChar(&line, '\n');
			copy_in_put(conn, line.data, line.len);
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(batch);
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
	SPI_finish();
	MemoryContextDelete(batch);
}

/*
 * copy_from_remote_cb is the data source of a local COPY FROM: it hands
 * CopyFrom the rows of the remote COPY TO STDOUT on copy_src_conn.
 */
static int
copy_from_remote_cb(void *outbuf, int minread, int maxread)
{
	int			got = 0;

	while (got < minread)
	{
		int			n;

		if (copy_src_off >= copy_src_len)
		{
			if (copy_src_buf)
				PQfreemem(copy_src_buf);
			copy_src_buf = NULL;
			copy_src_len = copy_src_off = 0;
			if (copy_src_eof)
				break;
			n = copy_out_next(copy_src_conn, &copy_src_buf);
			if (n < 0)
			{
				copy_src_eof = true;
				break;
			}
			copy_src_len = n;
		}
		n = Min(maxread - got, copy_src_len - copy_src_off);
		memcpy((char *) outbuf + got, copy_src_buf + copy_src_off, n);
		got += n;
		copy_src_off += n;
	}
	return got;
}

/*
 * copy_remote_to_local streams a COPY TO STDOUT already started on conn
 * into a local shard table with the server's own COPY FROM machinery.
 */
static void
copy_remote_to_local(MyceliumConnection *conn, const char *schema, const char *relname,
					 List *attnames)
{
	Relation	rel;
	CopyFromState cstate;
	ParseState *pstate = make_parsestate(NULL);

	rel = table_openrv(makeRangeVar(pstrdup(schema), pstrdup(relname), -1), RowExclusiveLock);
	/* CopyFrom finds its target as range table entry 1 */
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);
	copy_src_conn = conn;
	copy_src_buf = NULL;
	copy_src_len = copy_src_off = 0;
	copy_src_eof = false;
	PG_TRY();
	{
		cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_from_remote_cb,
							   attnames, NIL);
		CopyFrom(cstate);
		EndCopyFrom(cstate);
	}
	PG_FINALLY();
	{
		if (copy_src_buf)
			PQfreemem(copy_src_buf);
		copy_src_buf = NULL;
		copy_src_conn = NULL;
	}
	PG_END_TRY();
	/* CopyFrom stops at the end-of-data marker: drain to the final result */
	while (!copy_src_eof && copy_out_next(conn, &copy_src_buf) >= 0)
	{
		PQfreemem(copy_src_buf);
		copy_src_buf = NULL;
	}
	table_close(rel, NoLock);
	CommandCounterIncrement();
}

/*
 * copy_remote_to_remote relays a COPY TO STDOUT on src into a COPY FROM
 * STDIN on dst, row by row (nothing is buffered beyond libpq's buffers).
 */
static void
copy_remote_to_remote(MyceliumConnection *src, MyceliumConnection *dst)
{
	char	   *volatile buf = NULL;

	PG_TRY();
	{
		for (;;)
		{
			char	   *row;
			int			len = copy_out_next(src, &row);

			if (len < 0)
				break;
			buf = row;
			copy_in_put(dst, row, len);
			buf = NULL;
			PQfreemem(row);
		}
	}
	PG_CATCH();
	{
		if (buf)
			PQfreemem(buf);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * abandon_copy closes a connection left in the middle of a COPY by an
 * error: closing it rolls back its remote transaction, which the abort
 * path could not do while the node is still sending or expecting rows.
 * Safe in an error handler (no ERROR).
 */
static void
abandon_copy(MyceliumConnection *conn)
{
	if (conn == NULL)
		return;
	conn->broken = true;
	if (conn->conn && PQtransactionStatus(conn->conn) == PQTRANS_ACTIVE)
		MyceliumCloseConnection(conn);
}

/*
 * ShardMoveCopyRows copies the rows of one shard table from the source node to
 * the (already created, empty) table of the same name on the target.  A
 * connection left in the middle of a COPY by an error is closed at once
 * (see abandon_copy).
 */
void
ShardMoveCopyRows(ShardMoveMember *m, MyceliumConnection *src, MyceliumConnection *dst)
{
	List	   *attnames = NIL;
	char	   *cols = column_list(m->relid, &attnames);
	char	   *qname = quote_qualified_identifier(m->schema_name, m->shard_name);
	char	   *out_sql = psprintf("COPY %s %s TO STDOUT", qname, cols);
	char	   *in_sql = psprintf("COPY %s %s FROM STDIN", qname, cols);

	ShardRemoteAsCaller(dst, true);
	PG_TRY();
	{
		if (src)
			copy_start(src, out_sql, PGRES_COPY_OUT);
		if (dst)
			copy_start(dst, in_sql, PGRES_COPY_IN);
		if (src == NULL)
			copy_local_to_remote(psprintf("SELECT %s FROM %s", ShardMoveColumnList(m->relid), qname),
								 dst);
		else if (dst == NULL)
			copy_remote_to_local(src, m->schema_name, m->shard_name, attnames);
		else
			copy_remote_to_remote(src, dst);
		if (dst)
			copy_in_end(dst, in_sql);
	}
	PG_CATCH();
	{
		abandon_copy(src);
		abandon_copy(dst);
		PG_RE_THROW();
	}
	PG_END_TRY();
	ShardRemoteAsCaller(dst, false);
	if (dst)
		dst->wrote = true;
}
