/*-------------------------------------------------------------------------
 *
 * planner.c
 *	  The planner hook: decides how a query over distributed and reference
 *	  tables runs.
 *
 *   - no distributed or reference table in the query: the standard
 *     planner, untouched (one cached flag and a hash lookup per table;
 *     this path must stay cheap);
 *   - reads of reference tables only: the standard planner (every node
 *     has a full copy);
 *   - UPDATE/DELETE of a distributed or reference table: the whole
 *     statement is sent to the shards (modify.c), or refused with 0A000;
 *   - anything else: distributed tables that are read become shard scans
 *     (pull.c), and an INSERT into a distributed or reference table routes
 *     the rows its source produces (modify.c).
 *
 * Statements the router runs on this node's shards through SPI are
 * planned with the router bypassed (they name shard tables, or the local
 * copy of a reference table, directly).
 *
 * IDENTIFICATION
 *	  src/router/planner.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nodes/nodeFuncs.h"
#include "optimizer/planner.h"
#include "parser/parsetree.h"
#include "utils/guc.h"

#include "router/router.h"
#include "router/router_internal.h"

static planner_hook_type prev_planner_hook = NULL;
static int	bypass_depth = 0;

/* mycelium.enable_routing: off in the sessions nodes open to each other */
bool		mycelium_enable_routing = true;

/* mycelium.enable_pushdown: joins and whole queries run on the shards */
static bool mycelium_enable_pushdown = true;

typedef struct UsesContext
{
	bool		dist;			/* reads or writes a hash/range table */
	bool		any;			/* any distributed or reference table */
} UsesContext;

/*
 * uses_walker notes which kinds of Mycelium tables a query references.
 */
static bool
uses_walker(Node *node, UsesContext *cxt)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;

		if (rte->rtekind == RTE_RELATION)
		{
			MyceliumDistTable *t = MyceliumGetDistTable(rte->relid);

			if (t != NULL)
			{
				cxt->any = true;
				if (t->method != MYCELIUM_DIST_REFERENCE)
					cxt->dist = true;
			}
		}
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, uses_walker, cxt, QTW_EXAMINE_RTES_BEFORE);
	return expression_tree_walker(node, uses_walker, cxt);
}

static PlannedStmt *
plan_standard(Query *parse, const char *query_string, int cursorOptions,
			  ParamListInfo boundParams)
{
	if (prev_planner_hook)
		return prev_planner_hook(parse, query_string, cursorOptions, boundParams);
	return standard_planner(parse, query_string, cursorOptions, boundParams);
}

/*
 * refuse raises the error for a statement shape the router cannot run.
 */
static void
refuse(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("%s", why),
			 errhint("See \"Supported queries\" in Mycelium's sharding documentation.")));
}

/*
 * route plans a statement that references Mycelium tables.
 */
static PlannedStmt *
route(Query *parse, const char *query_string, int cursorOptions,
	  ParamListInfo boundParams, UsesContext *uses)
{
	MyceliumDistTable *target = NULL;
	Query	   *copy;
	List	   *shell_rtes = NIL;
	List	   *specs = NIL;
	int			k;
	char	   *why;
	PlannedStmt *stmt;
	RouterPushdown *pd = NULL;
	bool		writes = parse->commandType != CMD_SELECT || parse->hasModifyingCTE;

	if (parse->resultRelation > 0)
		target = MyceliumGetDistTable(rt_fetch(parse->resultRelation, parse->rtable)->relid);
	if (parse->commandType == CMD_MERGE)
		refuse("MERGE involving distributed or reference tables is not supported");
	if (parse->hasModifyingCTE)
		refuse("data-modifying statements in WITH are not supported in queries on distributed or reference tables");
	if (target != NULL && (parse->commandType == CMD_UPDATE || parse->commandType == CMD_DELETE))
		return RouterPlanModify(parse, target);
	if (!uses->dist && target == NULL)
		return plan_standard(parse, query_string, cursorOptions, boundParams);

	if (target == NULL && !writes && mycelium_enable_pushdown)
		pd = RouterPushdownPrepare(parse);
	if (target == NULL &&
		((!writes && mycelium_enable_pushdown && (pd == NULL || !RouterHasKeyFilter(parse)) && (copy = RouterJoinPushdown(parse, &specs, &shell_rtes)) != NULL) ||
		 (copy = RouterAggPushdown(parse, &specs, &shell_rtes)) != NULL))
	{
		stmt = plan_standard(copy, query_string, cursorOptions, boundParams);
		RouterFixPlan(stmt, shell_rtes, specs, writes);
		if (pd)
			RouterPushdownWrap(stmt, pd);
		return stmt;
	}
	copy = copyObject(parse);
	if (!RouterConvertDistRtes(copy, target ? parse->resultRelation : 0, &shell_rtes, &why))
		refuse(why);
	if (target == NULL && (k = RouterLimitPushdown(parse, &specs)) > 0)
		RouterSetScanSpec(copy, ((RangeTblRef *) linitial(copy->jointree->fromlist))->rtindex, k);
	stmt = plan_standard(copy, query_string, cursorOptions, boundParams);
	RouterFixPlan(stmt, shell_rtes, specs, writes);
	if (target != NULL)
		RouterReplaceModifyTable(stmt, parse, target);
	else if (pd)
		RouterPushdownWrap(stmt, pd);
	return stmt;
}

/*
 * mycelium_planner is the planner hook.
 */
static PlannedStmt *
mycelium_planner(Query *parse, const char *query_string, int cursorOptions,
				 ParamListInfo boundParams)
{
	if (bypass_depth == 0 && mycelium_enable_routing && parse->commandType != CMD_UTILITY &&
		MyceliumAnyDistTables())
	{
		UsesContext uses = {false, false};

		(void) query_tree_walker(parse, uses_walker, &uses, QTW_EXAMINE_RTES_BEFORE);
		if (uses.any)
			return route(parse, query_string, cursorOptions, boundParams, &uses);
	}
	return plan_standard(parse, query_string, cursorOptions, boundParams);
}

/*
 * MyceliumInstallPlannerHook installs the hook, after any earlier one.
 */
void
MyceliumInstallPlannerHook(void)
{
	DefineCustomBoolVariable("mycelium.enable_routing",
							 "Routes statements on distributed and reference tables to their shards and copies.",
							 "Node-to-node sessions turn it off: the statements they receive already name "
							 "shards and local copies.  With it off, a session sees only this node's "
							 "tables (a distributed table's shell is empty).",
							 &mycelium_enable_routing, true, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("mycelium.enable_pushdown",
							 "Runs co-located joins on the shard groups, and whole queries on the one node "
							 "holding every shard they need.",
							 "With it off, a query's distributed tables are read into this node and "
							 "everything else runs here (the answer is the same).",
							 &mycelium_enable_pushdown, true, PGC_USERSET, 0, NULL, NULL, NULL);
	prev_planner_hook = planner_hook;
	planner_hook = mycelium_planner;
}

/*
 * MyceliumRouterBypass turns routing off (nesting) while the router runs
 * its own statements on local shards; callers turn it back on in
 * PG_FINALLY, so an error cannot leave it off.
 */
void
MyceliumRouterBypass(bool on)
{
	if (on)
		bypass_depth++;
	else if (bypass_depth > 0)
		bypass_depth--;
}
