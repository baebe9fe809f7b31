/*-------------------------------------------------------------------------
 *
 * move.c
 *	  mycelium.move_shard: moving a shard, with every shard colocated with
 *	  it, to another node; and the helpers split.c and rebalance.c share.
 *
 * A move is one distributed transaction, run by whichever node the caller
 * is connected to (the coordinator), which need hold none of the shards:
 *
 *	 1. lock the mesh metadata (MyceliumLockMesh: every member's node
 *		catalog, in node_id order), re-read the shard group under the lock;
 *	 2. on the source, LOCK the group's shard tables IN EXCLUSIVE MODE:
 *		reads go on, writes wait;
 *	 3. on the target, create the shard tables and stream each one's rows
 *		into it with COPY: the coordinator relays COPY TO STDOUT on the
 *		source into COPY FROM STDIN on the target, or reads/writes locally
 *		when it is one of the two nodes;
 *	 4. drop the old shard tables on the source;
 *	 5. point the group's placements at the target on every member.
 *
 * Everything commits together with two-phase commit at the end of the
 * caller's transaction, so a failure anywhere (a node dying mid-copy, a
 * cancel, a timeout) rolls all of it back: the target's half-made tables
 * vanish with its remote transaction, the source keeps its rows, metadata
 * is unchanged, and the move can simply be run again.
 *
 * This first version blocks writes to the moving shards for the whole copy
 * (reads are never blocked until the final drop); docs/shard-moves.md
 * says so.  Streaming the bulk of the rows by logical replication before
 * taking the lock is the planned improvement.
 *
 * IDENTIFICATION
 *	  src/shard/move.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "config/config.h"
#include "shard/shard_move.h"

PG_FUNCTION_INFO_V1(mycelium_move_shard);

#define COPY_FETCH_ROWS 1000

/* state of the data source callback of a local COPY FROM (see below) */
static MyceliumConnection *copy_src_conn = NULL;
static char *copy_src_buf = NULL;	/* owned by libpq */
static int	copy_src_len = 0;
static int	copy_src_off = 0;
static bool copy_src_eof = false;

/*
 * copy_member fills a ShardGroupMember from a cache entry.
 */
static ShardGroupMember *
copy_member(MyceliumDistTable *table, int index)
{
	ShardGroupMember *m = palloc0(sizeof(ShardGroupMember));
	MyceliumShard *s = &table->shards[index];

	m->relid = table->relid;
	m->method = table->method;
	m->schema_name = pstrdup(table->schema_name);
	m->rel_name = pstrdup(table->rel_name);
	m->dist_column = table->dist_column ? pstrdup(table->dist_column) : NULL;
	m->shard_id = s->shard_id;
	m->shard_name = pstrdup(s->shard_name);
	strlcpy(m->node_name, s->node_name, sizeof(m->node_name));
	m->index = index;
	m->min_hash = s->min_hash;
	m->max_hash = s->max_hash;
	m->min_text = s->min_text ? pstrdup(s->min_text) : NULL;
	m->max_text = s->max_text ? pstrdup(s->max_text) : NULL;
	return m;
}

/*
 * ShardColocatedTables returns the distributed tables colocated with
 * `table` (itself first): same colocation group and the same number of
 * shards, so that shard i of each covers the same range.
 */
List *
ShardColocatedTables(MyceliumDistTable *table)
{
	List	   *result = list_make1(table);
	ListCell   *lc;

	if (table->colocation_id == 0)
		return result;
	foreach(lc, MyceliumAllDistTables())
	{
		MyceliumDistTable *other = lfirst(lc);

		if (other->relid != table->relid &&
			other->colocation_id == table->colocation_id &&
			other->method == table->method &&
			other->nshards == table->nshards)
			result = lappend(result, other);
	}
	return result;
}

/*
 * ShardGroupAt returns the shard group of shard `index` of `table`: a
 * list of ShardGroupMember, the table's own shard first.
 */
List *
ShardGroupAt(MyceliumDistTable *table, int index)
{
	List	   *group = NIL;
	ListCell   *lc;

	foreach(lc, ShardColocatedTables(table))
		group = lappend(group, copy_member(lfirst(lc), index));
	return group;
}

/*
 * ShardGroupOf finds a shard by id in the shard cache and returns its
 * group (see ShardGroupAt); an unknown id is an error unless missing_ok
 * (then NIL).
 */
List *
ShardGroupOf(int64 shard_id, bool missing_ok)
{
	ListCell   *lc;

	foreach(lc, MyceliumAllDistTables())
	{
		MyceliumDistTable *table = lfirst(lc);
		int			i;

		if (table->method == MYCELIUM_DIST_REFERENCE)
			continue;
		for (i = 0; i < table->nshards; i++)
			if (table->shards[i].shard_id == shard_id)
				return ShardGroupAt(table, i);
	}
	if (!missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("shard " INT64_FORMAT " does not exist", shard_id),
				 errhint("SELECT * FROM mycelium.shards lists the shards.")));
	return NIL;
}

/*
 * ShardCheckOwner allows only the owner of a distributed table, or a
 * superuser, to move or split its shards.
 */
void
ShardCheckOwner(MyceliumDistTable *table, const char *action)
{
	if (!pg_class_ownercheck(table->relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s to %s its shards",
						quote_qualified_identifier(table->schema_name, table->rel_name),
						action)));
}

/*
 * ShardNodeConnection returns the connection to a node of a
 * MyceliumLockMesh result: NULL for the local node.
 */
MyceliumConnection *
ShardNodeConnection(List *nodes, MyceliumConnection **conns, const char *node_name)
{
	ListCell   *lc;
	int			i = 0;

	foreach(lc, nodes)
	{
		MyceliumNode *node = lfirst(lc);

		if (strcmp(node->node_name, node_name) == 0)
		{
			if (node->is_local)
				return NULL;
			if (!MyceliumConnectionUsable(conns[i]))
				MyceliumReportConnError(ERROR, conns[i], "reach node");
			return conns[i];
		}
		i++;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("node \"%s\" is not a member of the mesh", node_name),
			 errdetail("A shard placement names a node the mesh no longer has.")));
	return NULL;				/* keep compiler quiet */
}

/*
 * ShardRunOn runs one utility or DML statement on a node (locally through
 * SPI), as part of the current distributed transaction.
 */
void
ShardRunOn(List *nodes, MyceliumConnection **conns, const char *node_name,
		   const char *sql)
{
	MyceliumConnection *conn = ShardNodeConnection(nodes, conns, node_name);

	if (conn == NULL)
	{
		SPI_connect();
		MyceliumSpiExecLatest(sql, 0, NULL, NULL, false);
		SPI_finish();
		CommandCounterIncrement();
		return;
	}
	MyceliumExecCommand(conn, sql);
	conn->wrote = true;
}

/*
 * ShardWriteMetadata runs one catalog write (text parameters) locally and
 * on every member, joining the distributed commit.
 */
void
ShardWriteMetadata(List *nodes, MyceliumConnection **conns, const char *sql,
				   int nparams, const char *const *params)
{
	Oid		   *types = palloc(sizeof(Oid) * Max(nparams, 1));
	Datum	   *values = palloc(sizeof(Datum) * Max(nparams, 1));
	MyceliumConnection **remote;
	int			nremote;
	int			i;

	for (i = 0; i < nparams; i++)
	{
		types[i] = TEXTOID;
		values[i] = CStringGetTextDatum(params[i]);
	}
	SPI_connect();
	MyceliumSpiExecLatest(sql, nparams, types, values, false);
	SPI_finish();
	CommandCounterIncrement();

	remote = MyceliumUsableMembers(nodes, conns, &nremote);
	MyceliumWriteOnMembers(remote, nremote, sql, nparams, params);
}

/*
 * ShardLockMeshFor connects to the target node first, so that a target
 * that is down gets an error naming it, then locks the mesh metadata (see
 * MyceliumLockMesh) and returns the membership under the lock.
 */
List *
ShardLockMeshFor(const char *target_node, MyceliumConnection ***conns_out)
{
	List	   *nodes = MyceliumLoadNodes();
	MyceliumNode *target = target_node ? MyceliumFindNode(nodes, target_node) : NULL;

	if (target && !target->is_local)
	{
		MyceliumConnection *conn;
		const char *name = target->node_name;
		const char *host = target->host;
		int			port = target->port;

		MyceliumGetConnections(&conn, 1, &name, &host, &port, MYCELIUM_CONN_XACT, true);
		if (!MyceliumConnectionUsable(conn))
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not connect to node \"%s\"", target_node),
					 errdetail_internal("%s", conn->connect_error ? conn->connect_error : "connection failed"),
					 errhint("A shard can only move to a node that is up; nothing was changed.")));
	}
	return MyceliumLockMesh(NULL, conns_out);
}

/*
 * ShardTableDDL returns the statements (one string) that create an empty
 * shard table for a group member on any node: the table's columns,
 * constraints and indexes, as the table policies make them.
 */
char *
ShardTableDDL(ShardGroupMember *m)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, MyceliumShardCreateCommands(m->relid, m->schema_name, m->shard_name))
		appendStringInfo(&buf, "%s;\n", (char *) lfirst(lc));
	return buf.data;
}

/*
 * ShardHashExpr returns the SQL condition "hash(col) >= point" with the
 * table's hash function, which computes on any node the same hash as
 * MyceliumHashValue (the column's collation applies implicitly).
 */
char *
ShardHashExpr(MyceliumDistTable *table, const char *quoted_col, const char *point)
{
	Oid			fn = table->hash_fn.fn_oid;

	return psprintf("%s(%s) >= %s",
					quote_qualified_identifier(get_namespace_name(get_func_namespace(fn)),
											   get_func_name(fn)),
					quoted_col, quote_literal_cstr(point));
}

/*
 * ShardNextId returns the next free shard id: max(shard_id) + 1, which is
 * safe because every catalog change holds the mesh lock.
 */
int64
ShardNextId(void)
{
	int64		id = MYCELIUM_FIRST_SHARD_ID;
	bool		isnull;
	Datum		d;

	SPI_connect();
	MyceliumSpiExecLatest("SELECT max(shard_id) + 1 FROM mycelium.shard", 0, NULL, NULL, true);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (!isnull)
		id = Max(id, DatumGetInt64(d));
	SPI_finish();
	return id;
}

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
 * ShardColumnList returns "a, b, ..." (see column_list).
 */
char *
ShardColumnList(Oid relid)
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
	portal = SPI_cursor_open_with_args(NULL, select_sql, 0, NULL, NULL, NULL, true, 0);
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
 * copy_shard copies the rows of one shard table from the source node to
 * the (already created, empty) table of the same name on the target.  A
 * connection left in the middle of a COPY by an error is marked broken,
 * so it is closed (its remote transaction rolled back) at abort.
 */
static void
copy_shard(ShardGroupMember *m, MyceliumConnection *src, MyceliumConnection *dst)
{
	List	   *attnames = NIL;
	char	   *cols = column_list(m->relid, &attnames);
	char	   *qname = quote_qualified_identifier(m->schema_name, m->shard_name);
	char	   *out_sql = psprintf("COPY %s %s TO STDOUT", qname, cols);
	char	   *in_sql = psprintf("COPY %s %s FROM STDIN", qname, cols);

	PG_TRY();
	{
		if (src)
			copy_start(src, out_sql, PGRES_COPY_OUT);
		if (dst)
			copy_start(dst, in_sql, PGRES_COPY_IN);
		if (src == NULL)
			copy_local_to_remote(psprintf("SELECT %s FROM %s", ShardColumnList(m->relid), qname),
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
		if (src)
			src->broken = true;
		if (dst)
			dst->broken = true;
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (dst)
		dst->wrote = true;
}

/*
 * shard_table_list returns "s.t_1, s.t_2, ..." for the group's shard tables.
 */
static char *
shard_table_list(List *group)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, group)
	{
		ShardGroupMember *m = lfirst(lc);

		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, quote_qualified_identifier(m->schema_name, m->shard_name));
	}
	return buf.data;
}

/*
 * ShardMoveGroupLocked moves a shard group to target_node; the caller
 * holds the mesh lock (nodes and conns are MyceliumLockMesh's result) and
 * has checked the target.  See the file header for the steps.
 */
void
ShardMoveGroupLocked(List *group, List *nodes, MyceliumConnection **conns,
					 const char *target_node)
{
	ShardGroupMember *first = linitial(group);
	char		source_node[64];
	MyceliumConnection *src;
	MyceliumConnection *dst;
	char	   *tables = shard_table_list(group);
	StringInfoData ids;
	const char *params[2];
	ListCell   *lc;

	strlcpy(source_node, first->node_name, sizeof(source_node));
	src = ShardNodeConnection(nodes, conns, source_node);
	dst = ShardNodeConnection(nodes, conns, target_node);

	/* writes to the group wait from here until the commit; reads go on */
	ShardRunOn(nodes, conns, source_node, psprintf("LOCK TABLE %s IN EXCLUSIVE MODE", tables));

	initStringInfo(&ids);
	appendStringInfoChar(&ids, '{');
	foreach(lc, group)
	{
		ShardGroupMember *m = lfirst(lc);

		ShardRunOn(nodes, conns, target_node, ShardTableDDL(m));
		copy_shard(m, src, dst);
		appendStringInfo(&ids, "%s" INT64_FORMAT, ids.len > 1 ? "," : "", m->shard_id);
	}
	appendStringInfoChar(&ids, '}');

	ShardRunOn(nodes, conns, source_node, psprintf("DROP TABLE %s", tables));
	params[0] = ids.data;
	params[1] = target_node;
	ShardWriteMetadata(nodes, conns, SHARD_MOVE_SQL, 2, params);
}

/*
 * check_move_target refuses a target that is not an active member.
 */
static void
check_move_target(List *nodes, const char *target_node)
{
	MyceliumNode *target = MyceliumFindNode(nodes, target_node);

	if (target == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("node \"%s\" is not a member of the mesh", target_node),
				 errhint("SELECT * FROM mycelium.nodes lists the members.")));
	if (strcmp(target->status, "active") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot move shards to node \"%s\" because it is %s",
						target_node, target->status)));
}

/*
 * mycelium.move_shard(shard_id bigint, target_node text) returns void
 *
 * Moves a shard, with every shard colocated with it, to target_node (see
 * the file header).  Moving a shard to the node that already holds it
 * does nothing (a NOTICE says so).
 */
Datum
mycelium_move_shard(PG_FUNCTION_ARGS)
{
	int64		shard_id;
	char	   *target_node;
	List	   *group;
	List	   *nodes;
	MyceliumConnection **conns;
	ListCell   *lc;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("shard id and target node must not be null")));
	shard_id = PG_GETARG_INT64(0);
	target_node = text_to_cstring(PG_GETARG_TEXT_PP(1));
	MyceliumEnsureLocalNode();

	/* fail fast on bad input, before connecting anywhere */
	group = ShardGroupOf(shard_id, false);
	foreach(lc, group)
		ShardCheckOwner(MyceliumGetDistTable(((ShardGroupMember *) lfirst(lc))->relid), "move");
	check_move_target(MyceliumLoadNodes(), target_node);

	/* then again under the mesh lock: another move may have committed */
	nodes = ShardLockMeshFor(target_node, &conns);
	check_move_target(nodes, target_node);
	group = ShardGroupOf(shard_id, false);
	if (strcmp(((ShardGroupMember *) linitial(group))->node_name, target_node) == 0)
	{
		ereport(NOTICE,
				(errmsg("shard " INT64_FORMAT " is already on node \"%s\"", shard_id, target_node)));
		PG_RETURN_VOID();
	}
	ShardMoveGroupLocked(group, nodes, conns, target_node);
	PG_RETURN_VOID();
}
