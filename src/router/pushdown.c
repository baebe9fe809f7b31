/*-------------------------------------------------------------------------
 *
 * pushdown.c
 *	  Whole-query pushdown: a SELECT whose distributed tables all resolve,
 *	  for this execution, to shards on one node runs there entire -- joins,
 *	  subqueries, CTEs, aggregates, sorting and all.
 *
 * The usual plan of a query over distributed tables (pull.c) scans each
 * table's shards and computes everything else on the routing node.  That
 * plan is always right.  When the query may be sent whole (it reads only
 * distributed and reference tables, calls only built-in immutable
 * functions, uses no row locks and no system columns), the plan is wrapped
 * in a MyceliumRouterQuery node that, at executor start, looks at the
 * shards each scan of the plan chose with this execution's parameter
 * values.  If all of them are on one node, the query's own text -- printed
 * once at plan time with every distributed table reference aliased
 * "mycelium_ref_<n>" -- is sent to that node with each reference replaced
 * by its chosen shard (or a UNION ALL of its chosen shards), and the rows
 * come back; the wrapped plan is not run.  Otherwise the wrapped plan runs.
 *
 * Why this is right: each scan of the wrapped plan already applies, to its
 * table's rows, only restrictions that PostgreSQL's planner proved may be
 * applied to that table alone (it knows outer joins and equivalences), and
 * shards are chosen from those restrictions.  So the rows of the other
 * shards cannot change the answer, and the query over just the chosen
 * shards gives the answer the wrapped plan would.  Co-located joins on the
 * distribution column with the key fixed (a tenant's rows), joins with
 * reference tables, and any query on a table whose shards share a node go
 * to that node in one round trip.
 *
 * IDENTIFICATION
 *	  src/router/pushdown.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_collation.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "executor/tuptable.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "router/router.h"
#include "router/router_internal.h"
#include "transport/transport.h"

/* what RouterPushdownPrepare found, for RouterPushdownWrap */
struct RouterPushdown
{
	List	   *pieces;			/* String (query text) or Integer (reference) */
	List	   *relids;			/* the table of each reference, 1-based */
	List	   *param_ids;		/* external parameters the query uses */
};

typedef struct ShipCheck
{
	bool		failed;
	Bitmapset  *param_ids;
} ShipCheck;

/*
 * ship_walker rejects what a node could not evaluate exactly as this node
 * would, or what names objects only this node has.
 */
static bool
ship_walker(Node *node, ShipCheck *cxt)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *q = (Query *) node;

		if (q->rowMarks != NIL || q->utilityStmt != NULL)
			return true;
		return query_tree_walker(q, ship_walker, cxt, QTW_EXAMINE_RTES_BEFORE);
	}
	switch (nodeTag(node))
	{
		case T_RangeTblEntry:
			{
				RangeTblEntry *rte = (RangeTblEntry *) node;

				if (rte->rtekind == RTE_RELATION)
					return rte->securityQuals != NIL || rte->tablesample != NULL ||
						MyceliumGetDistTable(rte->relid) == NULL;
				return rte->rtekind == RTE_TABLEFUNC || rte->rtekind == RTE_NAMEDTUPLESTORE;
			}
		case T_Var:
			if (((Var *) node)->varattno <= 0)
				return true;	/* whole rows and system columns differ */
			break;
		case T_Param:
			/* the parser's own: a sublink's output, printed as the sublink */
			if (((Param *) node)->paramkind == PARAM_SUBLINK)
				break;
			if (((Param *) node)->paramkind != PARAM_EXTERN)
				return true;
			cxt->param_ids = bms_add_member(cxt->param_ids, ((Param *) node)->paramid);
			break;
		case T_CollateExpr:
			if (((CollateExpr *) node)->collOid >= FirstNormalObjectId)
				return true;
			break;
		case T_CurrentOfExpr:
		case T_NextValueExpr:
		case T_GroupingFunc:
			return true;
		default:
			if (RouterNotBuiltin(node) != NULL)
				return true;
			break;
	}
	return expression_tree_walker(node, ship_walker, cxt);
}

/*
 * RouterShipCheck says whether a query or expression may be sent as text to
 * any node and give the answer it gives here; adds the external parameters
 * it uses to *param_ids.
 */
bool
RouterShipCheck(Node *node, Bitmapset **param_ids)
{
	ShipCheck	check = {false, NULL};

	if (ship_walker(node, &check) || contain_mutable_functions(node))
		return false;
	*param_ids = bms_join(*param_ids, check.param_ids);
	return true;
}

/*
 * single_table_scan says whether the query is one distributed table read
 * with nothing on top that a shard scan does not already push down: the
 * usual plan sends the same statement, so wrapping it would only cost.
 */
static bool
single_table_scan(Query *q)
{
	return list_length(q->rtable) == 1 && q->cteList == NIL && !q->hasSubLinks &&
		!q->hasAggs && !q->hasWindowFuncs && !q->hasTargetSRFs &&
		q->setOperations == NULL && q->distinctClause == NIL &&
		q->sortClause == NIL && q->limitCount == NULL && q->limitOffset == NULL &&
		q->groupClause == NIL && q->havingQual == NULL;
}

/*
 * find_reference finds " <qualified name> mycelium_ref_<n>" in text, with
 * a preceding "ONLY ": its start and end; false unless it occurs exactly
 * once (a string constant could contain it).
 */
static bool
find_reference(const char *text, Oid relid, int n, int *start, int *end)
{
	char	   *name = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												  get_rel_name(relid));
	char	   *needle = psprintf("%s mycelium_ref_%d", name, n);
	const char *p = text;
	int			found = 0;

	while ((p = strstr(p, needle)) != NULL)
	{
		const char *after = p + strlen(needle);

		if (!(isalnum((unsigned char) *after) || *after == '_' || *after == '$'))
		{
			found++;
			*start = p - text;
			*end = *start + strlen(name);
		}
		p = after;
	}
	if (found != 1)
		return false;
	if (*start >= 5 && strncmp(text + *start - 5, "ONLY ", 5) == 0)
		*start -= 5;
	return true;
}

/*
 * RouterSplitText cuts a query printed with its distributed table
 * references aliased by RouterMarkDistRtes into text pieces (String) and
 * references (Integer, from 1); NIL when a reference is not found exactly
 * once.
 */
List *
RouterSplitText(const char *text, List *relids)
{
	int			n = list_length(relids);
	int		   *starts = palloc(sizeof(int) * n);
	int		   *ends = palloc(sizeof(int) * n);
	List	   *pieces = NIL;
	int			pos = 0;
	int			i;

	for (i = 0; i < n; i++)
		if (!find_reference(text, list_nth_oid(relids, i), i + 1, &starts[i], &ends[i]))
			return NIL;
	for (;;)
	{
		int			next = -1;

		for (i = 0; i < n; i++)
			if (starts[i] >= pos && (next < 0 || starts[i] < starts[next]))
				next = i;
		if (next < 0)
			break;
		pieces = lappend(pieces, makeString(pnstrdup(text + pos, starts[next] - pos)));
		pieces = lappend(pieces, makeInteger(next + 1));
		pos = ends[next];
	}
	pieces = lappend(pieces, makeString(pstrdup(text + pos)));
	return pieces;
}

/*
 * one_node says whether every shard of the tables is on one node.
 */
static bool
one_node(List *relids)
{
	const char *first = NULL;
	ListCell   *lc;
	int			i;

	foreach(lc, relids)
	{
		MyceliumDistTable *t = MyceliumGetDistTable(lfirst_oid(lc));

		if (t == NULL)
			return false;
		for (i = 0; i < t->nshards; i++)
		{
			if (first == NULL)
				first = t->shards[i].node_name;
			else if (strcmp(first, t->shards[i].node_name) != 0)
				return false;
		}
	}
	return true;
}

/*
 * RouterPushdownPrepare decides whether a SELECT may be sent whole to a
 * node and prints it; NULL when it may not (or need not).
 */
RouterPushdown *
RouterPushdownPrepare(Query *parse)
{
	Query	   *q;
	Bitmapset  *param_ids = NULL;
	RouterPushdown *pd;
	List	   *relids;
	int			id = -1;

	if (parse->commandType != CMD_SELECT || single_table_scan(parse))
		return NULL;
	if (!RouterShipCheck((Node *) parse, &param_ids))
		return NULL;
	q = copyObject(parse);
	if (!RouterMarkDistRtes(q, &relids) || relids == NIL)
		return NULL;
	/*
	 * Without a condition fixing a distribution column nothing prunes, so
	 * the query can only go whole if the tables' shards share a node (a
	 * shard move invalidates the plan).
	 */
	if (!RouterHasKeyFilter(parse) && !one_node(relids))
		return NULL;
	pd = palloc0(sizeof(RouterPushdown));
	pd->relids = relids;
	pd->pieces = RouterSplitText(RouterDeparseQuery(q), relids);
	if (pd->pieces == NIL)
		return NULL;
	while ((id = bms_next_member(param_ids, id)) >= 0)
		pd->param_ids = lappend_int(pd->param_ids, id);
	return pd;
}

/* ---- the MyceliumRouterQuery node ---- */

typedef struct PushdownState
{
	CustomScanState css;
	List	   *pieces;
	List	   *relids;
	List	   *param_ids;
	bool		pushed;			/* this execution sends the query whole */
	const char *why;			/* for EXPLAIN when it does not */
	RouterTask *task;
	TupleDesc	clean_desc;		/* the query's visible columns */
	int		   *visible;		/* output column -> visible column, or -1 */
	Tuplestorestate *store;
	TupleTableSlot *readslot;
	bool		fetched;
} PushdownState;

static Node *pd_create_state(CustomScan *cscan);
static void pd_begin(CustomScanState *node, EState *estate, int eflags);
static TupleTableSlot *pd_exec(CustomScanState *node);
static void pd_end(CustomScanState *node);
static void pd_rescan(CustomScanState *node);
static void pd_explain(CustomScanState *node, List *ancestors, ExplainState *es);

static CustomScanMethods pd_methods = {
	"MyceliumRouterQuery",
	pd_create_state
};

static CustomExecMethods pd_exec_methods = {
	.CustomName = "MyceliumRouterQuery",
	.BeginCustomScan = pd_begin,
	.ExecCustomScan = pd_exec,
	.EndCustomScan = pd_end,
	.ReScanCustomScan = pd_rescan,
	.ExplainCustomScan = pd_explain
};

void
RouterRegisterPushdownScan(void)
{
	RegisterCustomScanMethods(&pd_methods);
}

/*
 * RouterPushdownWrap puts the MyceliumRouterQuery node on top of a planned
 * SELECT: it returns the plan's rows, or the rows of the query sent whole.
 * The wrapped plan stays its outer plan (EXPLAIN prints names through it).
 */
void
RouterPushdownWrap(PlannedStmt *stmt, RouterPushdown *pd)
{
	Plan	   *child = stmt->planTree;
	CustomScan *cscan = makeNode(CustomScan);
	List	   *scan_tlist = NIL;
	List	   *tlist = NIL;
	ListCell   *lc;

	foreach(lc, child->targetlist)
	{
		TargetEntry *tle = lfirst(lc);
		Node	   *expr = (Node *) tle->expr;
		TargetEntry *out;

		scan_tlist = lappend(scan_tlist,
							 makeTargetEntry((Expr *) makeVar(OUTER_VAR, tle->resno, exprType(expr),
															  exprTypmod(expr), exprCollation(expr), 0),
											 tle->resno, tle->resname, tle->resjunk));
		out = makeTargetEntry((Expr *) makeVar(INDEX_VAR, tle->resno, exprType(expr),
											   exprTypmod(expr), exprCollation(expr), 0),
							  tle->resno, tle->resname, tle->resjunk);
		out->ressortgroupref = tle->ressortgroupref;
		out->resorigtbl = tle->resorigtbl;
		out->resorigcol = tle->resorigcol;
		tlist = lappend(tlist, out);
	}
	cscan->scan.plan.startup_cost = child->startup_cost;
	cscan->scan.plan.total_cost = child->total_cost;
	cscan->scan.plan.plan_rows = child->plan_rows;
	cscan->scan.plan.plan_width = child->plan_width;
	cscan->scan.plan.targetlist = tlist;
	cscan->scan.plan.lefttree = child;
	cscan->scan.scanrelid = 0;
	cscan->flags = CUSTOMPATH_SUPPORT_BACKWARD_SCAN;
	cscan->methods = &pd_methods;
	cscan->custom_scan_tlist = scan_tlist;
	cscan->custom_private = list_make3(pd->pieces, pd->relids, pd->param_ids);
	stmt->planTree = (Plan *) cscan;
}

static Node *
pd_create_state(CustomScan *cscan)
{
	PushdownState *st = palloc0(sizeof(PushdownState));

	NodeSetTag(st, T_CustomScanState);
	st->css.methods = &pd_exec_methods;
	st->pieces = linitial(cscan->custom_private);
	st->relids = lsecond(cscan->custom_private);
	st->param_ids = lthird(cscan->custom_private);
	return (Node *) st;
}

typedef struct ChosenShards
{
	int			nrefs;
	MyceliumDistTable **tables;
	Bitmapset **shards;
	bool		failed;
} ChosenShards;

/*
 * collect_walker gathers the shards each MyceliumScan of the wrapped plan
 * chose, per reference.
 */
static bool
collect_walker(PlanState *ps, ChosenShards *cs)
{
	int			refno;
	MyceliumDistTable *table;
	Bitmapset  *shards;

	if (ps == NULL)
		return false;
	if (RouterJoinScanPruned(ps, cs->nrefs, cs->tables, cs->shards))
		return planstate_tree_walker(ps, collect_walker, cs);
	if (RouterScanStatePruned(ps, &refno, &table, &shards))
	{
		/* an aggregate or LIMIT scan reads the query's only table */
		if (refno == 0 && cs->nrefs == 1)
			refno = 1;
		if (refno < 1 || refno > cs->nrefs || table == NULL)
		{
			cs->failed = true;
			return true;
		}
		cs->tables[refno - 1] = table;
		cs->shards[refno - 1] = bms_union(cs->shards[refno - 1], shards);
	}
	return planstate_tree_walker(ps, collect_walker, cs);
}

/*
 * chosen_node returns the one node holding every chosen shard, or NULL.
 */
static MyceliumShard *
chosen_node(PushdownState *st, ChosenShards *cs)
{
	MyceliumShard *first = NULL;
	int			r;

	for (r = 0; r < cs->nrefs; r++)
	{
		int			i = -1;

		if (cs->tables[r] == NULL || cs->shards[r] == NULL ||
			cs->tables[r]->relid != list_nth_oid(st->relids, r))
			return NULL;
		while ((i = bms_next_member(cs->shards[r], i)) >= 0)
		{
			MyceliumShard *shard = &cs->tables[r]->shards[i];

			if (first == NULL)
				first = shard;
			else if (strcmp(first->node_name, shard->node_name) != 0)
				return NULL;
		}
	}
	return first;
}

/*
 * shard_source prints what replaces one reference: its shard, or its
 * shards unioned.
 */
static void
shard_source(StringInfo sql, StringInfo ids, MyceliumDistTable *table, Bitmapset *shards)
{
	int			i = -1;
	bool		many = bms_num_members(shards) > 1;

	if (many)
		appendStringInfoChar(sql, '(');
	while ((i = bms_next_member(shards, i)) >= 0)
	{
		MyceliumShard *shard = &table->shards[i];

		if (many)
			appendStringInfoString(sql, sql->data[sql->len - 1] == '(' ?
								   "SELECT * FROM " : " UNION ALL SELECT * FROM ");
		appendStringInfoString(sql, MyceliumShardQualifiedName(table, shard));
		appendStringInfo(ids, "%s" INT64_FORMAT, ids->len ? ", " : "", shard->shard_id);
	}
	if (many)
		appendStringInfoChar(sql, ')');
}

/*
 * decide chooses, for this execution, between sending the query whole and
 * running the wrapped plan, and builds the task for the former.
 */
static void
decide(PushdownState *st, ParamListInfo params)
{
	ChosenShards cs;
	MyceliumShard *node;
	StringInfoData sql;
	StringInfoData ids;
	ListCell   *lc;

	cs.nrefs = list_length(st->relids);
	cs.tables = palloc0(sizeof(MyceliumDistTable *) * cs.nrefs);
	cs.shards = palloc0(sizeof(Bitmapset *) * cs.nrefs);
	cs.failed = false;
	(void) collect_walker(outerPlanState(st), &cs);
	node = cs.failed ? NULL : chosen_node(st, &cs);
	if (node == NULL)
	{
		st->why = "the chosen shards are on several nodes";
		return;
	}
	initStringInfo(&sql);
	initStringInfo(&ids);
	foreach(lc, st->pieces)
	{
		Node	   *piece = lfirst(lc);

		if (IsA(piece, String))
			appendStringInfoString(&sql, strVal(piece));
		else
			shard_source(&sql, &ids, cs.tables[intVal(piece) - 1], cs.shards[intVal(piece) - 1]);
	}
	st->task = palloc0(sizeof(RouterTask));
	st->task->node_name = pstrdup(node->node_name);
	st->task->is_local = node->is_local;
	st->task->shards = ids.data;
	st->task->sql = sql.data;
	st->task->prepare = true;
	RouterTaskSetParams(st->task, RouterFetchParams(st->param_ids, params));
	st->pushed = true;
}

static void
pd_begin(CustomScanState *node, EState *estate, int eflags)
{
	PushdownState *st = (PushdownState *) node;
	CustomScan *cscan = (CustomScan *) node->ss.ps.plan;
	List	   *tlist = cscan->custom_scan_tlist;
	ListCell   *lc;
	int			k = 0;

	outerPlanState(st) = ExecInitNode(outerPlan(cscan), estate, eflags);
	decide(st, estate->es_param_list_info);
	if (!st->pushed)
		return;

	/* the wrapped plan will not run */
	ExecEndNode(outerPlanState(st));
	outerPlanState(st) = NULL;
	st->clean_desc = ExecCleanTypeFromTL(tlist);
	st->visible = palloc(sizeof(int) * list_length(tlist));
	foreach(lc, tlist)
	{
		TargetEntry *tle = lfirst(lc);

		st->visible[foreach_current_index(lc)] = tle->resjunk ? -1 : k++;
	}
	st->readslot = ExecInitExtraTupleSlot(estate, st->clean_desc, &TTSOpsMinimalTuple);
}

/*
 * fetch runs the query on its node and keeps the rows.
 */
static void
fetch(PushdownState *st)
{
	MemoryContext old = MemoryContextSwitchTo(st->css.ss.ps.state->es_query_cxt);

	st->store = tuplestore_begin_heap(true, false, work_mem);
	MemoryContextSwitchTo(old);
	RouterRunSelectTasks(list_make1(st->task), st->store, st->clean_desc,
						 IsTransactionBlock() || MyceliumXactConnections() != NIL);
	st->fetched = true;
}

static TupleTableSlot *
pd_exec(CustomScanState *node)
{
	PushdownState *st = (PushdownState *) node;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	int			natts = slot->tts_tupleDescriptor->natts;
	int			i;

	if (!st->pushed)
		return ExecProcNode(outerPlanState(st));
	CHECK_FOR_INTERRUPTS();
	if (!st->fetched)
		fetch(st);
	ExecClearTuple(slot);
	if (!tuplestore_gettupleslot(st->store,
								 ScanDirectionIsForward(node->ss.ps.state->es_direction),
								 false, st->readslot))
		return slot;
	slot_getallattrs(st->readslot);
	for (i = 0; i < natts; i++)
	{
		int			v = st->visible[i];

		slot->tts_isnull[i] = v < 0 || st->readslot->tts_isnull[v];
		slot->tts_values[i] = v < 0 ? (Datum) 0 : st->readslot->tts_values[v];
	}
	return ExecStoreVirtualTuple(slot);
}

static void
pd_end(CustomScanState *node)
{
	PushdownState *st = (PushdownState *) node;

	if (outerPlanState(st))
		ExecEndNode(outerPlanState(st));
	if (st->store)
		tuplestore_end(st->store);
	st->store = NULL;
}

static void
pd_rescan(CustomScanState *node)
{
	PushdownState *st = (PushdownState *) node;

	if (!st->pushed)
		ExecReScan(outerPlanState(st));
	else if (st->store)
		tuplestore_rescan(st->store);
}

static void
pd_explain(CustomScanState *node, List *ancestors, ExplainState *es)
{
	PushdownState *st = (PushdownState *) node;

	if (!st->pushed)
	{
		ExplainPropertyText("Pushdown", psprintf("no: %s", st->why), es);
		return;
	}
	ExplainPropertyText("Pushdown", "whole query", es);
	RouterExplainTasks(list_make1(st->task), 0, es);
}
