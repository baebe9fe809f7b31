/*-------------------------------------------------------------------------
 *
 * joinscan.c
 *	  MyceliumJoinScan: runs a co-located join (joinpush.c) on the shards,
 *	  one statement per node with a UNION ALL of that node's shard groups.
 *
 * At executor start the scan binds the statement's parameters into the
 * join's WHERE clause, keeps the shard groups that = / IN on a
 * distribution column allow, and prints, for each node, the join once per
 * group with every table reference replaced by that group's shard.  The
 * statements run on the first fetch (remote ones in parallel, the local
 * one through SPI) into a tuplestore the scan then returns.
 *
 * IDENTIFICATION
 *	  src/router/joinscan.c
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
#include "optimizer/optimizer.h"
#include "utils/lsyscache.h"

#include "router/router.h"
#include "router/router_internal.h"
#include "transport/transport.h"

typedef struct JoinScanState
{
	CustomScanState css;
	List	   *pieces;			/* the join's text and references */
	List	   *relids;			/* the table of each reference */
	List	   *param_ids;
	List	   *quals;			/* WHERE, AND-ed, for pruning */
	List	   *rtis;			/* range table index of each reference */
	bool		xact;
	int			nrefs;
	MyceliumDistTable **tables;
	Bitmapset  *groups;			/* shard indexes this execution reads */
	List	   *tasks;
	Tuplestorestate *store;
	TupleTableSlot *readslot;
	bool		fetched;
} JoinScanState;

static Node *js_create_state(CustomScan *cscan);
static void js_begin(CustomScanState *node, EState *estate, int eflags);
static TupleTableSlot *js_exec(CustomScanState *node);
static void js_end(CustomScanState *node);
static void js_rescan(CustomScanState *node);
static void js_explain(CustomScanState *node, List *ancestors, ExplainState *es);

static CustomScanMethods js_methods = {
	"MyceliumJoinScan",
	js_create_state
};

static CustomExecMethods js_exec_methods = {
	.CustomName = "MyceliumJoinScan",
	.BeginCustomScan = js_begin,
	.ExecCustomScan = js_exec,
	.EndCustomScan = js_end,
	.ReScanCustomScan = js_rescan,
	.ExplainCustomScan = js_explain
};

void
RouterRegisterJoinScan(void)
{
	RegisterCustomScanMethods(&js_methods);
}

/*
 * RouterMakeJoinScan builds the MyceliumJoinScan for the shard_rows() scan
 * of a join spec.
 */
Plan *
RouterMakeJoinScan(FunctionScan *fs, RangeTblFunction *rtf, List *spec, bool xact)
{
	CustomScan *cscan = makeNode(CustomScan);
	Index		scanrelid = fs->scan.scanrelid;
	List	   *scan_tlist = NIL;
	ListCell   *ln,
			   *lt,
			   *lm,
			   *lcoll;
	AttrNumber	attno = 0;

	forfour(ln, rtf->funccolnames, lt, rtf->funccoltypes, lm, rtf->funccoltypmods,
			lcoll, rtf->funccolcollations)
	{
		attno++;
		scan_tlist = lappend(scan_tlist,
							 makeTargetEntry((Expr *) makeVar(scanrelid, attno, lfirst_oid(lt),
															  lfirst_int(lm), lfirst_oid(lcoll), 0),
											 attno, pstrdup(strVal(lfirst(ln))), false));
	}
	cscan->scan.scanrelid = 0;
	cscan->flags = CUSTOMPATH_SUPPORT_BACKWARD_SCAN;
	cscan->methods = &js_methods;
	cscan->custom_scan_tlist = scan_tlist;
	cscan->custom_private = list_make2(spec, makeBoolean(xact));
	RouterTakeScanPlace(cscan, fs);
	return (Plan *) cscan;
}

static Node *
js_create_state(CustomScan *cscan)
{
	JoinScanState *st = palloc0(sizeof(JoinScanState));
	List	   *spec = linitial(cscan->custom_private);

	NodeSetTag(st, T_CustomScanState);
	st->css.methods = &js_exec_methods;
	st->pieces = list_nth(spec, 0);
	st->relids = list_nth(spec, 1);
	st->param_ids = list_nth(spec, 2);
	st->quals = list_nth(spec, 3);
	st->rtis = list_nth(spec, 4);
	st->xact = boolVal(lsecond(cscan->custom_private));
	return (Node *) st;
}

/*
 * choose_groups keeps the shard groups the WHERE clause allows.
 */
static Bitmapset *
choose_groups(JoinScanState *st, ParamListInfo params)
{
	List	   *quals = st->param_ids ?
		(List *) RouterBindParams((Node *) st->quals, params) : st->quals;
	Bitmapset  *groups = NULL;
	bool		any = false;
	int			r;

	/* IN (1, 2) is an ARRAY[...] expression until folded into a constant */
	quals = (List *) eval_const_expressions(NULL, (Node *) quals);

	/* the first references are the tables of the join's own level */
	for (r = 0; r < list_length(st->rtis); r++)
	{
		bool		all;
		Bitmapset  *these = RouterPruneShards(st->tables[r], quals, list_nth_int(st->rtis, r), &all);

		if (all)
			continue;
		groups = any ? bms_intersect(groups, these) : these;
		any = true;
	}
	if (!any)
		groups = bms_add_range(NULL, 0, st->tables[0]->nshards - 1);
	return groups;
}

/*
 * group_sql prints the join for one shard group.
 */
static void
group_sql(JoinScanState *st, int index, StringInfo sql, StringInfo ids)
{
	ListCell   *lc;

	foreach(lc, st->pieces)
	{
		Node	   *piece = lfirst(lc);
		MyceliumDistTable *t;

		if (IsA(piece, String))
		{
			appendStringInfoString(sql, strVal(piece));
			continue;
		}
		t = st->tables[intVal(piece) - 1];
		appendStringInfoString(sql, MyceliumShardQualifiedName(t, &t->shards[index]));
		appendStringInfo(ids, "%s" INT64_FORMAT, ids->len ? ", " : "", t->shards[index].shard_id);
	}
}

/*
 * build_tasks makes one task per node: its shard groups' joins unioned.
 */
static List *
build_tasks(JoinScanState *st, ParamListInfo params)
{
	MyceliumDistTable *first = st->tables[0];
	RouterParams *rp = RouterFetchParams(st->param_ids, params);
	List	   *tasks = NIL;
	ListCell   *lc;

	foreach(lc, RouterTaskNodes(first, st->groups, false))
	{
		List	   *indexes = lfirst(lc);
		RouterTask *task = palloc0(sizeof(RouterTask));
		StringInfoData sql;
		StringInfoData ids;
		ListCell   *li;

		initStringInfo(&sql);
		initStringInfo(&ids);
		foreach(li, indexes)
		{
			if (li != list_head(indexes))
				appendStringInfoString(&sql, " UNION ALL ");
			group_sql(st, lfirst_int(li), &sql, &ids);
		}
		task->node_name = first->shards[linitial_int(indexes)].node_name;
		task->is_local = first->shards[linitial_int(indexes)].is_local;
		task->sql = sql.data;
		task->shards = ids.data;
		task->prepare = true;
		RouterTaskSetParams(task, rp);
		tasks = lappend(tasks, task);
	}
	return tasks;
}

static void
js_begin(CustomScanState *node, EState *estate, int eflags)
{
	JoinScanState *st = (JoinScanState *) node;
	ListCell   *lc;

	st->nrefs = list_length(st->relids);
	st->tables = palloc0(sizeof(MyceliumDistTable *) * st->nrefs);
	foreach(lc, st->relids)
	{
		MyceliumDistTable *t = MyceliumGetDistTable(lfirst_oid(lc));

		if (t == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("table \"%s\" is no longer distributed", get_rel_name(lfirst_oid(lc))),
					 errhint("Run the statement again.")));
		st->tables[foreach_current_index(lc)] = t;
	}
	st->readslot = ExecInitExtraTupleSlot(estate, node->ss.ss_ScanTupleSlot->tts_tupleDescriptor,
										  &TTSOpsMinimalTuple);
	st->groups = choose_groups(st, estate->es_param_list_info);
	st->tasks = build_tasks(st, estate->es_param_list_info);
	st->xact = st->xact || IsTransactionBlock() || MyceliumXactConnections() != NIL;
}

static TupleTableSlot *
js_next(ScanState *ss)
{
	JoinScanState *st = (JoinScanState *) ss;
	TupleTableSlot *slot = ss->ss_ScanTupleSlot;

	if (!st->fetched)
	{
		MemoryContext old = MemoryContextSwitchTo(ss->ps.state->es_query_cxt);

		st->store = tuplestore_begin_heap(true, false, work_mem);
		MemoryContextSwitchTo(old);
		RouterRunSelectTasks(st->tasks, st->store, slot->tts_tupleDescriptor, st->xact);
		st->fetched = true;
	}
	if (!tuplestore_gettupleslot(st->store, ScanDirectionIsForward(ss->ps.state->es_direction),
								 false, st->readslot))
		return ExecClearTuple(slot);
	return ExecCopySlot(slot, st->readslot);
}

static bool
js_recheck(ScanState *ss, TupleTableSlot *slot)
{
	return true;
}

static TupleTableSlot *
js_exec(CustomScanState *node)
{
	return ExecScan(&node->ss, js_next, js_recheck);
}

static void
js_end(CustomScanState *node)
{
	JoinScanState *st = (JoinScanState *) node;

	if (st->store)
		tuplestore_end(st->store);
	st->store = NULL;
}

static void
js_rescan(CustomScanState *node)
{
	JoinScanState *st = (JoinScanState *) node;

	if (st->store)
		tuplestore_rescan(st->store);
	ExecScanReScan(&node->ss);
}

static void
js_explain(CustomScanState *node, List *ancestors, ExplainState *es)
{
	JoinScanState *st = (JoinScanState *) node;

	ExplainPropertyText("Co-located Join",
						psprintf("%d tables, %d of %d shard groups", st->nrefs,
								 bms_num_members(st->groups), st->tables[0]->nshards), es);
	RouterExplainTasks(st->tasks, 0, es);
}

/*
 * RouterJoinScanPruned reports, for a MyceliumJoinScan's state, the shard
 * groups it reads as the chosen shards of each of its references (they are
 * the query's first nrefs references); false for any other node.
 */
bool
RouterJoinScanPruned(PlanState *ps, int nrefs, MyceliumDistTable **tables, Bitmapset **shards)
{
	JoinScanState *st = (JoinScanState *) ps;
	int			r;

	if (!IsA(ps, CustomScanState) || ((CustomScanState *) ps)->methods != &js_exec_methods)
		return false;
	if (st->nrefs != nrefs)
	{
		/* not the numbering the caller expects: report nothing usable */
		for (r = 0; r < nrefs; r++)
			tables[r] = NULL;
		return true;
	}
	for (r = 0; r < nrefs; r++)
	{
		tables[r] = st->tables[r];
		shards[r] = bms_union(shards[r], st->groups);
	}
	return true;
}
