/*-------------------------------------------------------------------------
 *
 * scan.c
 *	  MyceliumScan: the custom scan that fetches a distributed table's rows
 *	  (or partial aggregates of them) from its shards.
 *
 * At executor start the scan binds the statement's parameter values into
 * its pushed-down quals, prunes shards with them and builds one task per
 * node -- one statement over all of that node's chosen shards (UNION ALL).
 * The tasks run on the first fetch: remote ones in parallel, the local one
 * meanwhile through SPI; all rows go into a tuplestore that the scan then
 * returns (and rewinds on rescan: shard queries never depend on values of
 * the outer plan).  EXPLAIN shows the tasks: node, shards and the SQL.
 *
 * IDENTIFICATION
 *	  src/router/scan.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "router/router.h"
#include "router/router_internal.h"
#include "transport/transport.h"

PG_FUNCTION_INFO_V1(mycelium_shard_rows);

typedef struct RouterScanState
{
	CustomScanState css;
	RouterScanSpec *spec;
	MyceliumDistTable *table;
	List	   *tasks;			/* RouterTask */
	bool		xact;
	Bitmapset  *shards;			/* the shard indexes this execution reads */
	Tuplestorestate *store;
	TupleTableSlot *readslot;	/* minimal-tuple slot reading the store */
	bool		fetched;
} RouterScanState;

static Node *create_scan_state(CustomScan *cscan);
static void begin_scan(CustomScanState *node, EState *estate, int eflags);
static TupleTableSlot *exec_scan(CustomScanState *node);
static void end_scan(CustomScanState *node);
static void rescan_scan(CustomScanState *node);
static void explain_scan(CustomScanState *node, List *ancestors, ExplainState *es);

static CustomScanMethods scan_methods = {
	"MyceliumScan",
	create_scan_state
};

static CustomExecMethods scan_exec_methods = {
	.CustomName = "MyceliumScan",
	.BeginCustomScan = begin_scan,
	.ExecCustomScan = exec_scan,
	.EndCustomScan = end_scan,
	.ReScanCustomScan = rescan_scan,
	.ExplainCustomScan = explain_scan
};

/*
 * MyceliumRegisterCustomScans makes the custom scans known, so plans that
 * contain them can be copied, read and written.
 */
void
MyceliumRegisterCustomScans(void)
{
	RegisterCustomScanMethods(&scan_methods);
	RouterRegisterModifyScan();
	RouterRegisterPushdownScan();
	RouterRegisterJoinScan();
}

/*
 * mycelium_shard_rows is the placeholder planned in place of a distributed
 * table; the router always replaces its scans, so a call reaching here
 * means it was called by hand.
 */
Datum
mycelium_shard_rows(PG_FUNCTION_ARGS)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("mycelium.shard_rows() cannot be called directly"),
			 errhint("Query the distributed table instead.")));
	PG_RETURN_NULL();
}

/*
 * RouterMakeScan builds a MyceliumScan plan node for a spec; scan_tlist
 * describes the scan tuple (one entry per spec target).
 */
CustomScan *
RouterMakeScan(RouterScanSpec *spec, List *scan_tlist)
{
	CustomScan *cscan = makeNode(CustomScan);
	StringInfoData rest;
	List	   *param_ids = NIL;
	List	   *flags;
	int			id;

	cscan->scan.scanrelid = 0;
	cscan->flags = CUSTOMPATH_SUPPORT_BACKWARD_SCAN;	/* scroll cursors */
	cscan->methods = &scan_methods;
	cscan->custom_scan_tlist = scan_tlist;

	/* the shard statement's text, once: parameters stay $n */
	initStringInfo(&rest);
	if (spec->quals != NIL)
		appendStringInfo(&rest, " WHERE %s", RouterDeparseExprList(spec->quals, spec->relid, " AND "));
	if (spec->group != NIL)
		appendStringInfo(&rest, " GROUP BY %s", RouterDeparseExprList(spec->group, spec->relid, ", "));
	if (spec->sort != NIL)
		appendStringInfo(&rest, " ORDER BY %s", RouterSortText(spec));
	if (spec->limit >= 0)
		appendStringInfo(&rest, " LIMIT " INT64_FORMAT, spec->limit);
	id = -1;
	{
		Bitmapset  *ids = RouterParamIds((Node *) list_make3(spec->target, spec->quals, spec->group));

		while ((id = bms_next_member(ids, id)) >= 0)
			param_ids = lappend_int(param_ids, id);
	}
	flags = list_make5(makeString(psprintf(INT64_FORMAT, spec->limit)),
					   makeBoolean(spec->xact),
					   makeString(RouterDeparseExprList(spec->target, spec->relid, ", ")),
					   makeString(rest.data),
					   param_ids);
	flags = lappend(flags, makeInteger(spec->refno));
	cscan->custom_private = list_make5(makeString(psprintf("%u", spec->relid)),
									   spec->target, spec->quals, spec->group, flags);
	return cscan;
}

/*
 * RouterScanSpecFrom reads the spec back from a plan node.
 */
RouterScanSpec *
RouterScanSpecFrom(CustomScan *cscan)
{
	RouterScanSpec *spec = palloc0(sizeof(RouterScanSpec));
	List	   *flags = list_nth(cscan->custom_private, 4);

	spec->relid = (Oid) strtoul(strVal(linitial(cscan->custom_private)), NULL, 10);
	spec->target = list_nth(cscan->custom_private, 1);
	spec->quals = list_nth(cscan->custom_private, 2);
	spec->group = list_nth(cscan->custom_private, 3);
	spec->limit = strtoi64(strVal(linitial(flags)), NULL, 10);
	spec->xact = boolVal(lsecond(flags));
	spec->target_sql = strVal(lthird(flags));
	spec->rest_sql = strVal(lfourth(flags));
	spec->param_ids = list_nth(flags, 4);
	spec->refno = intVal(list_nth(flags, 5));
	return spec;
}

static Node *
create_scan_state(CustomScan *cscan)
{
	RouterScanState *state = palloc0(sizeof(RouterScanState));

	NodeSetTag(state, T_CustomScanState);
	state->css.methods = &scan_exec_methods;
	state->spec = RouterScanSpecFrom(cscan);
	return (Node *) state;
}

/*
 * RouterLookupTable returns the distributed table a plan was made for, or
 * an error when it is no longer distributed.
 */
static MyceliumDistTable *
lookup_table(Oid relid)
{
	MyceliumDistTable *table = MyceliumGetDistTable(relid);

	if (table == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is no longer distributed", get_rel_name(relid)),
				 errhint("Run the statement again.")));
	return table;
}

/*
 * select_sql prints the statement for one node: its shards, unioned.
 */
static char *
select_sql(MyceliumDistTable *table, List *shard_indexes, const char *target,
		   const char *rest)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	appendStringInfo(&buf, "SELECT %s FROM ", target);
	if (list_length(shard_indexes) == 1)
		appendStringInfoString(&buf, MyceliumShardQualifiedName(table,
																&table->shards[linitial_int(shard_indexes)]));
	else
	{
		appendStringInfoChar(&buf, '(');
		foreach(lc, shard_indexes)
		{
			if (lc != list_head(shard_indexes))
				appendStringInfoString(&buf, " UNION ALL ");
			appendStringInfo(&buf, "SELECT * FROM %s",
							 MyceliumShardQualifiedName(table, &table->shards[lfirst_int(lc)]));
		}
		appendStringInfoChar(&buf, ')');
	}
	appendStringInfo(&buf, " t%s", rest);
	return buf.data;
}

/*
 * build_tasks prunes shards with this execution's parameter values and
 * makes one task per node, with the parameters the statement uses.
 */
static List *
build_tasks(RouterScanState *state, ParamListInfo params)
{
	RouterScanSpec *spec = state->spec;
	MyceliumDistTable *table = state->table;
	List	   *quals = spec->param_ids ?
		(List *) RouterBindParams((Node *) spec->quals, params) : spec->quals;
	RouterParams *rp = RouterFetchParams(spec->param_ids, params);
	Bitmapset  *shards;
	bool		all;
	List	   *tasks = NIL;
	ListCell   *lc;

	shards = RouterPruneShards(table, quals, 1, &all);
	if (all)
		state->shards = bms_add_range(NULL, 0, table->nshards - 1);
	else
		state->shards = shards;
	foreach(lc, RouterTaskNodes(table, shards, all))
	{
		List	   *indexes = lfirst(lc);
		RouterTask *task = palloc0(sizeof(RouterTask));
		StringInfoData ids;
		ListCell   *li;

		task->node_name = table->shards[linitial_int(indexes)].node_name;
		task->is_local = table->shards[linitial_int(indexes)].is_local;
		task->sql = select_sql(table, indexes, spec->target_sql, spec->rest_sql);
		task->prepare = true;
		RouterTaskSetParams(task, rp);
		initStringInfo(&ids);
		foreach(li, indexes)
			appendStringInfo(&ids, "%s" INT64_FORMAT, li == list_head(indexes) ? "" : ", ",
							 table->shards[lfirst_int(li)].shard_id);
		task->shards = ids.data;
		tasks = lappend(tasks, task);
	}
	return tasks;
}

static void
begin_scan(CustomScanState *node, EState *estate, int eflags)
{
	RouterScanState *state = (RouterScanState *) node;

	state->table = lookup_table(state->spec->relid);
	state->readslot = ExecInitExtraTupleSlot(estate,
											 node->ss.ss_ScanTupleSlot->tts_tupleDescriptor,
											 &TTSOpsMinimalTuple);
	state->tasks = build_tasks(state, estate->es_param_list_info);
	state->xact = state->spec->xact || IsTransactionBlock() ||
		MyceliumXactConnections() != NIL;
}

/*
 * fetch runs the tasks and fills the tuplestore.
 */
static void
fetch(RouterScanState *state)
{
	TupleDesc	desc = state->css.ss.ss_ScanTupleSlot->tts_tupleDescriptor;
	MemoryContext old = MemoryContextSwitchTo(state->css.ss.ps.state->es_query_cxt);

	state->store = tuplestore_begin_heap(true, false, work_mem);
	MemoryContextSwitchTo(old);
	RouterRunSelectTasks(state->tasks, state->store, desc, state->xact);
	state->fetched = true;
}

static TupleTableSlot *
scan_next(ScanState *ss)
{
	RouterScanState *state = (RouterScanState *) ss;
	TupleTableSlot *slot = ss->ss_ScanTupleSlot;

	if (!state->fetched)
		fetch(state);
	if (!tuplestore_gettupleslot(state->store,
								 ScanDirectionIsForward(ss->ps.state->es_direction),
								 false, state->readslot))
		return ExecClearTuple(slot);
	return ExecCopySlot(slot, state->readslot);
}

static bool
scan_recheck(ScanState *ss, TupleTableSlot *slot)
{
	return true;
}

static TupleTableSlot *
exec_scan(CustomScanState *node)
{
	return ExecScan(&node->ss, scan_next, scan_recheck);
}

static void
end_scan(CustomScanState *node)
{
	RouterScanState *state = (RouterScanState *) node;

	if (state->store)
		tuplestore_end(state->store);
	state->store = NULL;
}

static void
rescan_scan(CustomScanState *node)
{
	RouterScanState *state = (RouterScanState *) node;

	if (state->store)
		tuplestore_rescan(state->store);
	ExecScanReScan(&node->ss);
}

/*
 * RouterExplainTasks shows the tasks of a routed node: where each runs,
 * which shards it reads and, for VERBOSE or always in text, the SQL.
 */
void
RouterExplainTasks(List *tasks, int shards_total, ExplainState *es)
{
	ListCell   *lc;
	int			nshards = 0;

	foreach(lc, tasks)
	{
		RouterTask *task = lfirst(lc);
		const char *p;

		if (task->shards == NULL)
			continue;
		nshards++;
		for (p = task->shards; *p; p++)
			if (*p == ',')
				nshards++;
	}
	if (shards_total > 0)
		ExplainPropertyText("Shards", psprintf("%d of %d", nshards, shards_total), es);
	ExplainOpenGroup("Tasks", "Tasks", false, es);
	foreach(lc, tasks)
	{
		RouterTask *task = lfirst(lc);

		ExplainOpenGroup("Task", NULL, true, es);
		ExplainPropertyText("Node", psprintf("%s%s", task->node_name,
											 task->is_local ? " (local)" : ""), es);
		if (task->shards)
			ExplainPropertyText("Shard IDs", task->shards, es);
		ExplainPropertyText("SQL", task->sql, es);
		ExplainCloseGroup("Task", NULL, true, es);
	}
	ExplainCloseGroup("Tasks", "Tasks", false, es);
}

/*
 * RouterScanStatePruned says, for a MyceliumScan's state, which reference
 * of the query it reads and the shards this execution chose; false for any
 * other node.
 */
bool
RouterScanStatePruned(PlanState *ps, int *refno, MyceliumDistTable **table,
					  Bitmapset **shards)
{
	RouterScanState *state = (RouterScanState *) ps;

	if (!IsA(ps, CustomScanState) ||
		((CustomScanState *) ps)->methods != &scan_exec_methods)
		return false;
	*refno = state->spec->refno;
	*table = state->table;
	*shards = state->shards;
	return true;
}

static void
explain_scan(CustomScanState *node, List *ancestors, ExplainState *es)
{
	RouterScanState *state = (RouterScanState *) node;
	MyceliumDistTable *table = state->table;

	ExplainPropertyText("Distributed Table",
						quote_qualified_identifier(table->schema_name, table->rel_name), es);
	RouterExplainTasks(state->tasks, table->nshards, es);
}
