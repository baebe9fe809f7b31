/*-------------------------------------------------------------------------
 *
 * copy.c
 *	  COPY into a distributed or reference table, rows routed by shard;
 *	  COPY out of a distributed table through the query router.
 *
 * COPY ... FROM parses its input with PostgreSQL's own COPY code on the
 * shell table (BeginCopyFrom/NextCopyFrom, so every option, column list,
 * default and WHERE clause works as on a local table), finds each row's
 * shard from its distribution column, and appends the row in COPY text
 * format to that shard's buffer (a reference table's row goes to the
 * table on every node).  A buffer is flushed when it reaches
 * COPY_FLUSH_BYTES, all buffers when together they reach COPY_MAX_BYTES,
 * so memory stays bounded whatever the input's size:
 *
 *	 - a remote shard's batch goes over its node's transaction connection as
 *	   one "COPY shard FROM STDIN" (libpq COPY protocol, binary format when
 *	   every column's type allows).  A connection runs one COPY at a time,
 *	   so a full buffer waits (growing up to COPY_MAX_BATCH) while its node
 *	   is busy; nodes are polled without blocking every few hundred rows and
 *	   an idle node gets its fullest buffer, so the nodes insert while we
 *	   read on;
 *	 - a local shard's batch is fed to PostgreSQL's CopyFrom on the shard,
 *	   which inserts in multi-row batches with indexes and constraints.
 *
 * All of it runs inside the user's transaction: the 2PC core commits the
 * nodes written on with the local transaction, and any error (a NULL
 * distribution value, a value no range shard covers, a remote failure)
 * aborts everything.
 *
 * IDENTIFICATION
 *	  src/commands/copy.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "access/transam.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "executor/executor.h"
#include "libpq/pqformat.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_relation.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "cluster/cluster.h"
#include "commands/commands.h"

#define COPY_FLUSH_BYTES	(512 * 1024)
#define COPY_MAX_BATCH		(4 * COPY_FLUSH_BYTES)
#define COPY_MAX_BYTES		(32 * 1024 * 1024)
#define BINARY_HEADER_LEN	19	/* signature 11, flags 4, extension length 4 */

/* one destination of rows: a shard, or a reference table's copy */
typedef struct CopyTarget
{
	char	   *relname;		/* qualified, quoted */
	int			node;			/* index in RoutedCopy.nodes; -1 = local */
	Relation	rel;			/* local target, open */
	StringInfoData buf;			/* rows waiting, COPY text format */
} CopyTarget;

/* a remote node's connection and the COPY it may have in flight */
typedef struct CopyNode
{
	MyceliumConnection *conn;
	bool		in_flight;		/* a COPY's data or completion is pending */
	bool		ended;			/* ... and all its data is queued in libpq */
	bool		prepared;		/* propagation turned off there */
	char	   *sql;			/* of the COPY in flight */
	PGresult   *error;			/* its first failed result, once read */
} CopyNode;

typedef struct RoutedCopy
{
	MyceliumDistTable *table;
	Relation	rel;			/* the shell or reference table */
	int			natts;			/* attributes sent: ... */
	AttrNumber *attnums;		/* ... these */
	FmgrInfo   *out_funcs;		/* indexed like attnums: output or send */
	bool		binary;			/* rows in COPY binary format */
	char	   *collist;		/* "(a, b)" */
	List	   *colnames;		/* String nodes, for local CopyFrom */
	int			ntargets;
	CopyTarget *targets;
	int			nnodes;
	CopyNode   *nodes;
	int64		buffered;		/* bytes in all buffers */
	StringInfoData row;
	MemoryContext cxt;			/* of the COPY */
	MemoryContext flush_cxt;	/* reset after every flush */
} RoutedCopy;

/* the buffer a local CopyFrom is reading (its callback has no argument) */
static StringInfo local_source = NULL;
static int	local_source_pos = 0;

/*
 * local_source_cb feeds a local CopyFrom from local_source.
 */
static int
local_source_cb(void *outbuf, int minread, int maxread)
{
	int			n = Min(maxread, local_source->len - local_source_pos);

	memcpy(outbuf, local_source->data + local_source_pos, n);
	local_source_pos += n;
	return n;
}

/*
 * flush_local inserts a local target's rows with PostgreSQL's CopyFrom.
 */
static void
flush_local(RoutedCopy *cs, CopyTarget *t)
{
	ParseState *pstate = make_parsestate(NULL);
	CopyFromState cstate;
	List	   *options;

	addRangeTableEntryForRelation(pstate, t->rel, RowExclusiveLock, NULL, false, false);
	options = list_make2(makeDefElem("format", (Node *) makeString(cs->binary ? "binary" : "text"), -1),
						 makeDefElem("encoding", (Node *) makeString((char *) GetDatabaseEncodingName()), -1));
	local_source = &t->buf;
	local_source_pos = 0;
	cstate = BeginCopyFrom(pstate, t->rel, NULL, NULL, false, local_source_cb,
						   cs->colnames, options);
	CopyFrom(cstate);
	EndCopyFrom(cstate);
	free_parsestate(pstate);
	local_source = NULL;
}

/*
 * wait_socket waits (interruptibly) for a connection's socket.
 */
static void
wait_socket(MyceliumConnection *conn, int events)
{
	int			rc = WaitLatchOrSocket(MyLatch, WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | events,
									   PQsocket(conn->conn), -1, PG_WAIT_EXTENSION);

	if (rc & WL_LATCH_SET)
	{
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * next_result waits for the next result of the command in flight; NULL
 * means the command is complete.
 */
static PGresult *
next_result(MyceliumConnection *conn)
{
	for (;;)
	{
		if (!PQconsumeInput(conn->conn))
			MyceliumReportConnError(ERROR, conn, "copy rows");
		if (!PQisBusy(conn->conn))
			return PQgetResult(conn->conn);
		wait_socket(conn, WL_SOCKET_READABLE);
	}
}

/*
 * poll_node advances the COPY in flight on a node without waiting: pushes
 * out what libpq still holds of its data and reads its completion if it
 * arrived.  Returns true once the node is idle; a failed COPY is then an
 * ERROR relayed from the node.
 */
static bool
poll_node(CopyNode *node)
{
	MyceliumConnection *conn = node->conn;
	int			rc;

	if (!node->in_flight)
		return true;
	rc = PQflush(conn->conn);
	if (rc < 0)
		MyceliumReportConnError(ERROR, conn, "copy rows");
	if (!PQconsumeInput(conn->conn))
		MyceliumReportConnError(ERROR, conn, "copy rows");
	if (rc > 0)
		return false;
	while (!PQisBusy(conn->conn))
	{
		PGresult   *res = PQgetResult(conn->conn);

		if (res == NULL)
		{
			node->in_flight = false;
			if (node->error)
			{
				PGresult   *error = node->error;

				node->error = NULL;
				MyceliumReportResultError(ERROR, error, conn, node->sql);
			}
			return true;
		}
		if (PQresultStatus(res) != PGRES_COMMAND_OK && node->error == NULL)
			node->error = res;
		else
			PQclear(res);
	}
	return false;
}

/*
 * finish_in_flight waits until the COPY in flight on a node is complete
 * (see poll_node).
 */
static void
finish_in_flight(CopyNode *node)
{
	while (!poll_node(node))
		wait_socket(node->conn, WL_SOCKET_READABLE |
					(PQflush(node->conn->conn) > 0 ? WL_SOCKET_WRITEABLE : 0));
}

/*
 * flush_remote sends a remote target's rows as one COPY on its node's
 * connection (waiting for the previous one to complete), without waiting
 * for this one: libpq keeps what the socket does not take yet, and
 * poll_node pushes it out later, so the node inserts while we read on.
 */
static void
flush_remote(RoutedCopy *cs, CopyTarget *t)
{
	CopyNode   *node = &cs->nodes[t->node];
	MyceliumConnection *conn = node->conn;
	PGresult   *res;

	finish_in_flight(node);
	if (!node->prepared)
	{
		/* a reference table's copy there must not be routed again */
		MyceliumExecCommand(conn, "SET LOCAL mycelium.enable_ddl_propagation = off");
		node->prepared = true;
	}
	conn->wrote = true;
	if (node->sql)
		pfree(node->sql);
	node->sql = MemoryContextStrdup(cs->cxt, psprintf("COPY %s %s FROM STDIN%s", t->relname,
													   cs->collist, cs->binary ? " (FORMAT binary)" : ""));
	if (!MyceliumSendQuery(conn, node->sql, 0, NULL))
		MyceliumReportConnError(ERROR, conn, "send a command");
	node->in_flight = true;
	node->ended = false;
	res = next_result(conn);
	if (res == NULL || PQresultStatus(res) != PGRES_COPY_IN)
	{
		node->in_flight = false;
		MyceliumReportResultError(ERROR, res, conn, node->sql);
	}
	PQclear(res);
	/* non-blocking libpq queues all of it (its buffer grows) */
	if (PQputCopyData(conn->conn, t->buf.data, t->buf.len) != 1 ||
		PQputCopyEnd(conn->conn, NULL) != 1)
		MyceliumReportConnError(ERROR, conn, "copy rows");
	node->ended = true;
}

/*
 * start_buffer empties a target's buffer; in binary format a batch starts
 * with the file header (signature, flags, no extension).
 */
static void
start_buffer(RoutedCopy *cs, CopyTarget *t)
{
	static const char header[] = "PGCOPY\n\377\r\n\0\0\0\0\0\0\0\0\0";

	resetStringInfo(&t->buf);
	if (cs->binary)
		appendBinaryStringInfo(&t->buf, header, BINARY_HEADER_LEN);
}

/*
 * flush_target sends or inserts a target's waiting rows.
 */
static void
flush_target(RoutedCopy *cs, CopyTarget *t)
{
	int			empty = cs->binary ? BINARY_HEADER_LEN : 0;
	MemoryContext old;

	if (t->buf.len == empty)
		return;
	cs->buffered -= t->buf.len - empty;
	if (cs->binary)
		pq_sendint16(&t->buf, -1);	/* trailer */
	old = MemoryContextSwitchTo(cs->flush_cxt);
	if (t->node < 0)
		flush_local(cs, t);
	else
		flush_remote(cs, t);
	MemoryContextSwitchTo(old);
	MemoryContextReset(cs->flush_cxt);
	start_buffer(cs, t);
}

/*
 * append_escaped appends a value in COPY text format.
 */
static void
append_escaped(StringInfo buf, const char *s)
{
	const char *start = s;

	for (; *s; s++)
	{
		char		c = *s;
		const char *esc;

		switch (c)
		{
			case '\\':
				esc = "\\\\";
				break;
			case '\n':
				esc = "\\n";
				break;
			case '\r':
				esc = "\\r";
				break;
			case '\t':
				esc = "\\t";
				break;
			default:
				continue;
		}
		appendBinaryStringInfo(buf, start, s - start);
		appendStringInfoString(buf, esc);
		start = s + 1;
	}
	appendBinaryStringInfo(buf, start, s - start);
}

/*
 * format_row puts one row in COPY binary or text format into cs->row.
 */
static void
format_row(RoutedCopy *cs, Datum *values, bool *nulls)
{
	int			i;

	resetStringInfo(&cs->row);
	if (cs->binary)
	{
		pq_sendint16(&cs->row, cs->natts);
		for (i = 0; i < cs->natts; i++)
		{
			int			att = cs->attnums[i] - 1;
			bytea	   *data;

			if (nulls[att])
			{
				pq_sendint32(&cs->row, -1);
				continue;
			}
			data = SendFunctionCall(&cs->out_funcs[i], values[att]);
			pq_sendint32(&cs->row, VARSIZE(data) - VARHDRSZ);
			appendBinaryStringInfo(&cs->row, VARDATA(data), VARSIZE(data) - VARHDRSZ);
		}
		return;
	}
	for (i = 0; i < cs->natts; i++)
	{
		int			att = cs->attnums[i] - 1;

		if (i > 0)
			appendStringInfoChar(&cs->row, '\t');
		if (nulls[att])
			appendStringInfoString(&cs->row, "\\N");
		else
			append_escaped(&cs->row, OutputFunctionCall(&cs->out_funcs[i], values[att]));
	}
	appendStringInfoChar(&cs->row, '\n');
}

/*
 * flush_ready flushes, for every remote node that is idle, its largest
 * buffer that is full enough.
 */
static void
flush_ready(RoutedCopy *cs)
{
	int			n;
	int			i;

	for (n = 0; n < cs->nnodes; n++)
	{
		CopyTarget *best = NULL;

		if (cs->nodes[n].conn == NULL || !poll_node(&cs->nodes[n]))
			continue;
		for (i = 0; i < cs->ntargets; i++)
			if (cs->targets[i].node == n && cs->targets[i].buf.len >= COPY_FLUSH_BYTES &&
				(best == NULL || cs->targets[i].buf.len > best->buf.len))
				best = &cs->targets[i];
		if (best)
			flush_target(cs, best);
	}
}

/*
 * add_to_target buffers the formatted row for a target.  A local target
 * is flushed when full; a remote one when full and its node is idle, or,
 * when the node stays busy, once it holds COPY_MAX_BATCH bytes.  All
 * buffers are flushed when together they reach COPY_MAX_BYTES.
 */
static void
add_to_target(RoutedCopy *cs, CopyTarget *t)
{
	int			i;

	appendBinaryStringInfo(&t->buf, cs->row.data, cs->row.len);
	cs->buffered += cs->row.len;
	if (t->buf.len >= COPY_FLUSH_BYTES &&
		(t->node < 0 || t->buf.len >= COPY_MAX_BATCH || poll_node(&cs->nodes[t->node])))
		flush_target(cs, t);
	if (cs->buffered >= COPY_MAX_BYTES)
		for (i = 0; i < cs->ntargets; i++)
			flush_target(cs, &cs->targets[i]);
}

/*
 * route_row returns the index of the shard that gets a row of a hash or
 * range table, or raises 23502 / 23514.
 */
static int
route_row(RoutedCopy *cs, Datum *values, bool *nulls)
{
	MyceliumDistTable *table = cs->table;
	int			att = table->dist_attno - 1;
	int			idx;

	if (nulls[att])
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("null value in distribution column \"%s\" of relation \"%s\"",
						table->dist_column, table->rel_name),
				 errdetail("Every row of a distributed table needs a distribution value to choose its shard.")));
	idx = MyceliumShardIndexForValue(table, values[att], false);
	if (idx < 0)
	{
		Oid			typoutput;
		bool		isvarlena;

		getTypeOutputInfo(TupleDescAttr(RelationGetDescr(cs->rel), att)->atttypid,
						  &typoutput, &isvarlena);
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("no shard of relation \"%s\" covers the row", table->rel_name),
				 errdetail("No range shard covers value %s of column \"%s\".",
						   OidOutputFunctionCall(typoutput, values[att]), table->dist_column),
				 errhint("Add a shard for it with mycelium.add_range_shard().")));
	}
	return idx;
}

/*
 * node_index returns the index of a node in the list.
 */
static int
node_index(List *nodes, const char *node_name)
{
	ListCell   *lc;

	foreach(lc, nodes)
		if (strcmp(((MyceliumNode *) lfirst(lc))->node_name, node_name) == 0)
			return foreach_current_index(lc);
	elog(ERROR, "node \"%s\" of a shard is not in the mesh", node_name);
	return -1;					/* keep compiler quiet */
}

/*
 * setup_targets makes the targets (one per shard, or one per node for a
 * reference table), opening the local ones and the connections to the
 * nodes holding the others.
 */
static void
setup_targets(RoutedCopy *cs)
{
	MyceliumDistTable *table = cs->table;
	List	   *nodes;
	MyceliumConnection **conns = MyceliumConnectOtherNodes(&nodes);
	ListCell   *lc;
	int			i;

	cs->nnodes = list_length(nodes);
	cs->nodes = palloc0(sizeof(CopyNode) * Max(cs->nnodes, 1));
	for (i = 0; i < cs->nnodes; i++)
		cs->nodes[i].conn = conns[i];
	if (table->method == MYCELIUM_DIST_REFERENCE)
	{
		cs->ntargets = cs->nnodes;
		cs->targets = palloc0(sizeof(CopyTarget) * Max(cs->ntargets, 1));
		foreach(lc, nodes)
		{
			CopyTarget *t = &cs->targets[foreach_current_index(lc)];

			t->relname = quote_qualified_identifier(table->schema_name, table->rel_name);
			t->node = ((MyceliumNode *) lfirst(lc))->is_local ? -1 : foreach_current_index(lc);
			if (t->node < 0)
				t->rel = cs->rel;
		}
	}
	else
	{
		cs->ntargets = table->nshards;
		cs->targets = palloc0(sizeof(CopyTarget) * Max(cs->ntargets, 1));
		for (i = 0; i < table->nshards; i++)
		{
			CopyTarget *t = &cs->targets[i];

			t->relname = MyceliumShardQualifiedName(table, &table->shards[i]);
			t->node = table->shards[i].is_local ? -1 :
				node_index(nodes, table->shards[i].node_name);
			if (t->node < 0)
				t->rel = table_openrv(makeRangeVar(table->schema_name, table->shards[i].shard_name, -1),
									  RowExclusiveLock);
		}
	}
	for (i = 0; i < cs->ntargets; i++)
	{
		initStringInfo(&cs->targets[i].buf);
		start_buffer(cs, &cs->targets[i]);
	}
}

/*
 * binary_safe says whether values of a type can travel in COPY binary
 * format to another node: a built-in type with a send function, and for
 * arrays a built-in element type (array_recv checks the element type's
 * OID, which differs between nodes for user-defined types; so do
 * composites, which are left to the text format).
 */
static bool
binary_safe(Oid type)
{
	HeapTuple	tup;
	Form_pg_type typ;
	bool		safe;

	if (type >= FirstGenbkiObjectId)
		return false;
	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(type));
	if (!HeapTupleIsValid(tup))
		return false;
	typ = (Form_pg_type) GETSTRUCT(tup);
	safe = OidIsValid(typ->typsend) && OidIsValid(typ->typreceive) &&
		typ->typtype == TYPTYPE_BASE &&
		(!OidIsValid(typ->typelem) || typ->typelem < FirstGenbkiObjectId);
	ReleaseSysCache(tup);
	return safe;
}

/*
 * setup_columns picks the columns sent to shards (every column but dropped
 * and generated ones: shards compute those), the format (binary when every
 * column's type allows it: cheaper to make and to read than text), and
 * the functions that print values in it.
 */
static void
setup_columns(RoutedCopy *cs)
{
	TupleDesc	desc = RelationGetDescr(cs->rel);
	StringInfoData cols;
	int			i;

	cs->attnums = palloc(sizeof(AttrNumber) * Max(desc->natts, 1));
	cs->out_funcs = palloc(sizeof(FmgrInfo) * Max(desc->natts, 1));
	/* binary text values are converted from the client encoding when read */
	cs->binary = pg_get_client_encoding() == GetDatabaseEncoding();
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (!att->attisdropped && !att->attgenerated && !binary_safe(att->atttypid))
			cs->binary = false;
	}
	initStringInfo(&cols);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Oid			func;
		bool		isvarlena;

		if (att->attisdropped || att->attgenerated)
			continue;
		if (cs->binary)
			getTypeBinaryOutputInfo(att->atttypid, &func, &isvarlena);
		else
			getTypeOutputInfo(att->atttypid, &func, &isvarlena);
		fmgr_info(func, &cs->out_funcs[cs->natts]);
		cs->attnums[cs->natts++] = att->attnum;
		appendStringInfo(&cols, "%s%s", cols.len ? ", " : "(",
						 quote_identifier(NameStr(att->attname)));
		cs->colnames = lappend(cs->colnames, makeString(pstrdup(NameStr(att->attname))));
	}
	appendStringInfoChar(&cols, ')');
	cs->collist = cols.data;
}

/*
 * copy_rows reads every input row and routes it; returns the row count.
 */
static uint64
copy_rows(RoutedCopy *cs, CopyFromState cstate, ExprState *qual)
{
	TupleDesc	desc = RelationGetDescr(cs->rel);
	Datum	   *values = palloc(sizeof(Datum) * Max(desc->natts, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(desc->natts, 1));
	EState	   *estate = CreateExecutorState();
	ExprContext *econtext = GetPerTupleExprContext(estate);
	TupleTableSlot *slot = qual ? MakeSingleTupleTableSlot(desc, &TTSOpsVirtual) : NULL;
	bool		reference = cs->table->method == MYCELIUM_DIST_REFERENCE;
	uint64		processed = 0;
	int			i;

	for (;;)
	{
		MemoryContext old;

		CHECK_FOR_INTERRUPTS();
		ResetPerTupleExprContext(estate);
		old = MemoryContextSwitchTo(GetPerTupleMemoryContext(estate));
		if (!NextCopyFrom(cstate, econtext, values, nulls))
		{
			MemoryContextSwitchTo(old);
			break;
		}
		if (qual)
		{
			ExecClearTuple(slot);
			memcpy(slot->tts_values, values, sizeof(Datum) * desc->natts);
			memcpy(slot->tts_isnull, nulls, sizeof(bool) * desc->natts);
			ExecStoreVirtualTuple(slot);
			econtext->ecxt_scantuple = slot;
			if (!ExecQual(qual, econtext))
			{
				MemoryContextSwitchTo(old);
				continue;
			}
		}
		if (reference)
		{
			format_row(cs, values, nulls);
			MemoryContextSwitchTo(old);
			for (i = 0; i < cs->ntargets; i++)
				add_to_target(cs, &cs->targets[i]);
		}
		else
		{
			int			idx = route_row(cs, values, nulls);

			format_row(cs, values, nulls);
			MemoryContextSwitchTo(old);
			add_to_target(cs, &cs->targets[idx]);
		}
		processed++;
		if (processed % 256 == 0 && cs->nnodes > 0)
			flush_ready(cs);
	}
	for (i = 0; i < cs->ntargets; i++)
		flush_target(cs, &cs->targets[i]);
	for (i = 0; i < cs->nnodes; i++)
		finish_in_flight(&cs->nodes[i]);
	if (slot)
		ExecDropSingleTupleTableSlot(slot);
	FreeExecutorState(estate);
	return processed;
}

/*
 * copy_from runs COPY ... FROM into a distributed or reference table.
 */
static uint64
copy_from(MyceliumUtilityArgs *args, CopyStmt *stmt, MyceliumDistTable *table)
{
	RoutedCopy  *cs = palloc0(sizeof(RoutedCopy));
	ParseState *pstate;
	CopyFromState cstate;
	ExprState  *qual;
	uint64		processed = 0;
	int			i;

	cs->table = table;
	cs->cxt = CurrentMemoryContext;
	cs->flush_cxt = AllocSetContextCreate(CurrentMemoryContext, "mycelium COPY flush",
										  ALLOCSET_DEFAULT_SIZES);
	cs->rel = table_openrv(stmt->relation, RowExclusiveLock);
	pstate = MyceliumCopyCheckPrivileges(args, stmt, cs->rel);
	qual = MyceliumCopyWhereQual(pstate, stmt->whereClause);
	setup_columns(cs);
	setup_targets(cs);
	initStringInfo(&cs->row);

	cstate = BeginCopyFrom(pstate, cs->rel, NULL, stmt->filename, stmt->is_program,
						   NULL, stmt->attlist, stmt->options);
	PG_TRY();
	{
		processed = copy_rows(cs, cstate, qual);
	}
	PG_CATCH();
	{
		/*
		 * A COPY whose data is all sent is cancelled and drained by the
		 * abort of the (sub)transaction; one left mid-stream can only be
		 * ended by closing the connection, which aborts it there.
		 */
		for (i = 0; i < cs->nnodes; i++)
		{
			CopyNode   *node = &cs->nodes[i];

			if (node->in_flight && node->conn &&
				(!node->ended || node->conn->conn == NULL || PQflush(node->conn->conn) != 0))
				node->conn->broken = true;
			PQclear(node->error);
		}
		local_source = NULL;
		PG_RE_THROW();
	}
	PG_END_TRY();
	EndCopyFrom(cstate);
	for (i = 0; i < cs->ntargets; i++)
		if (cs->targets[i].rel && cs->targets[i].rel != cs->rel)
			table_close(cs->targets[i].rel, NoLock);
	table_close(cs->rel, NoLock);
	return processed;
}

/*
 * MyceliumProcessCopy handles COPY on a distributed or reference table;
 * returns false for any other COPY, which runs unchanged.
 */
bool
MyceliumProcessCopy(MyceliumUtilityArgs *args)
{
	CopyStmt   *stmt = castNode(CopyStmt, args->pstmt->utilityStmt);
	MyceliumDistTable *table;
	Oid			relid;
	uint64		processed;

	if (stmt->relation == NULL)
		return false;
	relid = RangeVarGetRelid(stmt->relation, NoLock, true);
	if (!OidIsValid(relid) || MyceliumGetDistTable(relid) == NULL)
		return false;
	table = MyceliumCopyDistTable(MyceliumGetDistTable(relid));
	if (!stmt->is_from)
	{
		if (table->method == MYCELIUM_DIST_REFERENCE)
			return false;		/* the local copy is complete */
		MyceliumCopyToViaQuery(args, stmt);
		return true;
	}
	processed = copy_from(args, stmt, table);
	if (args->qc)
		SetQueryCompletion(args->qc, CMDTAG_COPY, processed);
	return true;
}
