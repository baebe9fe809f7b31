/*-------------------------------------------------------------------------
 *
 * joinpush.c
 *	  Joins of co-located tables on their distribution column (and with
 *	  reference tables) run on the shards, one shard group at a time.
 *
 *   SELECT r.name, count(*) FROM orders o JOIN items i ON i.order_id = o.id
 *     JOIN region r ON r.cust = o.cust WHERE i.qty > 10 GROUP BY r.name
 *
 * When the FROM clause joins distributed tables of one colocation group,
 * each to the others by equality of their distribution columns, plus
 * reference tables, every row of the join comes from one shard group:
 * shard i of orders joined with shard i of items (both on one node) and a
 * node's copy of region.  So the FROM and WHERE part is sent to the nodes,
 * once per shard group (UNION ALL of a node's groups), returning only the
 * columns the rest of the query needs; the rest (grouping, aggregates,
 * HAVING, windows, DISTINCT, ORDER BY, LIMIT) runs here over those rows, a
 * query over mycelium.shard_rows() planned by PostgreSQL.
 *
 * Which FROM clauses qualify (outer joins, subqueries in FROM) is decided
 * in joinshape.c; anything else is planned by pull.c.  When the query's
 * aggregates split (aggpush.c), each shard group returns partial
 * aggregates per group instead of rows.  Shard groups are pruned by = / IN
 * on a distribution column in WHERE.
 *
 * IDENTIFICATION
 *	  src/router/joinpush.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parsetree.h"
#include "rewrite/rewriteManip.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "router/router.h"
#include "router/router_internal.h"
#include "transport/transport.h"

typedef struct ColumnMap
{
	List	   *vars;			/* distinct Vars the outer query needs */
} ColumnMap;

/*
 * to_column replaces a Var of the FROM clause by the column of the shard
 * rows that carries it.
 */
static Node *
to_column(Node *node, ColumnMap *map)
{
	if (node == NULL)
		return NULL;
	if (IsA(node, Var) && ((Var *) node)->varlevelsup == 0)
	{
		Var		   *var = (Var *) node;
		ListCell   *lc;

		foreach(lc, map->vars)
		{
			Var		   *v = lfirst(lc);

			if (v->varno == var->varno && v->varattno == var->varattno)
				return (Node *) makeVar(1, foreach_current_index(lc) + 1, var->vartype,
										var->vartypmod, var->varcollid, 0);
		}
		elog(ERROR, "variable not found in the pushed join's columns");
	}
	return expression_tree_mutator(node, to_column, map);
}

/*
 * needed_vars lists the distinct Vars of the outer parts, or NIL with
 * *ok false for whole rows and system columns.
 */
static List *
needed_vars(Node *outer, bool *ok)
{
	List	   *vars = pull_var_clause(outer, PVC_RECURSE_AGGREGATES |
									   PVC_RECURSE_WINDOWFUNCS | PVC_RECURSE_PLACEHOLDERS);
	List	   *result = NIL;
	ListCell   *lc;

	*ok = true;
	foreach(lc, vars)
	{
		Var		   *v = lfirst(lc);
		ListCell   *lr;
		bool		seen = false;

		if (v->varattno <= 0 || v->varlevelsup != 0)
		{
			*ok = false;
			return NIL;
		}
		foreach(lr, result)
			if (((Var *) lfirst(lr))->varno == v->varno &&
				((Var *) lfirst(lr))->varattno == v->varattno)
				seen = true;
		if (!seen)
			result = lappend(result, copyObject(v));
	}
	return result;
}

/*
 * inner_query builds the query sent per shard group: the FROM clause and
 * WHERE of q, returning the needed columns ("SELECT 1" when none are).
 */
static Query *
inner_query(Query *q, List *vars)
{
	Query	   *inner = copyObject(q);
	ListCell   *lc;

	inner->targetList = NIL;
	foreach(lc, vars)
		inner->targetList = lappend(inner->targetList,
									makeTargetEntry(copyObject(lfirst(lc)),
													list_length(inner->targetList) + 1,
													psprintf("c%d", list_length(inner->targetList) + 1),
													false));
	if (vars == NIL)
		inner->targetList = list_make1(makeTargetEntry((Expr *) makeConst(INT4OID, -1, InvalidOid, 4,
																		  Int32GetDatum(1), false, true),
														1, "c1", false));
	inner->groupClause = NIL;
	inner->groupingSets = NIL;
	inner->havingQual = NULL;
	inner->sortClause = NIL;
	inner->distinctClause = NIL;
	inner->hasDistinctOn = false;
	inner->windowClause = NIL;
	inner->limitCount = NULL;
	inner->limitOffset = NULL;
	inner->hasAggs = false;
	inner->hasWindowFuncs = false;
	inner->hasTargetSRFs = false;
	return inner;
}

/*
 * collect_relations appends a copy of every table entry of a query (its
 * subqueries too) to *rtes: the plan checks privileges on them, locks
 * them and depends on them.
 */
static bool
collect_walker(Node *node, List **rtes)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;

		if (rte->rtekind == RTE_RELATION)
		{
			RangeTblEntry *shell = copyObject(rte);

			shell->inh = false;
			*rtes = lappend(*rtes, shell);
		}
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, collect_walker, rtes, QTW_EXAMINE_RTES_BEFORE);
	return expression_tree_walker(node, collect_walker, rtes);
}

static void
collect_relations(Node *query, List **rtes)
{
	(void) collect_walker(query, rtes);
}

/*
 * agg_inner_query builds the query sent per shard group when the query's
 * aggregates split: the FROM clause and WHERE, grouped by the GROUP BY
 * expressions, returning them and the partial aggregates.
 */
static Query *
agg_inner_query(Query *q, RouterAggSplit *split)
{
	Query	   *inner = inner_query(q, NIL);
	ListCell   *lc;

	inner->targetList = NIL;
	foreach(lc, split->worker)
		inner->targetList = lappend(inner->targetList,
									makeTargetEntry(copyObject(lfirst(lc)),
													list_length(inner->targetList) + 1,
													psprintf("p%d", list_length(inner->targetList) + 1),
													false));
	inner->hasAggs = true;
	foreach(lc, q->groupClause)
	{
		SortGroupClause *sgc = copyObject(lfirst(lc));
		TargetEntry *tle = list_nth(inner->targetList, foreach_current_index(lc));

		sgc->tleSortGroupRef = foreach_current_index(lc) + 1;
		tle->ressortgroupref = sgc->tleSortGroupRef;
		inner->groupClause = lappend(inner->groupClause, sgc);
	}
	return inner;
}

/*
 * splittable says whether the aggregates of a join query may be computed
 * partially on the shard groups.
 */
static bool
splittable(Query *q, RouterAggSplit *split)
{
	if ((!q->hasAggs && q->groupClause == NIL) || q->hasWindowFuncs || q->hasTargetSRFs ||
		q->groupingSets != NIL || q->hasDistinctOn)
		return false;
	return RouterSplitAggregates(q, 0, split);
}

/*
 * cte_walker says whether a query refers to any CTE.
 */
static bool
cte_walker(Node *node, void *cxt)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
		return ((RangeTblEntry *) node)->rtekind == RTE_CTE;
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, cte_walker, cxt, QTW_EXAMINE_RTES_BEFORE);
	return expression_tree_walker(node, cte_walker, cxt);
}

/*
 * inline_ctes returns a copy of q with each CTE that PostgreSQL would
 * inline (not recursive or MATERIALIZED, a SELECT used once, at this
 * level, with no volatile functions and no CTE references of its own)
 * turned into a subquery in FROM; NULL when some CTE stays.
 */
static Query *
inline_ctes(Query *q)
{
	Query	   *copy = copyObject(q);
	ListCell   *lc;

	foreach(lc, copy->cteList)
	{
		CommonTableExpr *cte = lfirst(lc);
		Query	   *cq = (Query *) cte->ctequery;
		ListCell   *lr;
		bool		done = false;

		if (cte->cterecursive || cte->ctematerialized == CTEMaterializeAlways ||
			cte->cterefcount != 1 || cq->commandType != CMD_SELECT ||
			contain_volatile_functions((Node *) cq) || cte_walker((Node *) cq, NULL))
			return NULL;
		foreach(lr, copy->rtable)
		{
			RangeTblEntry *rte = lfirst(lr);

			if (rte->rtekind != RTE_CTE || rte->ctelevelsup != 0 ||
				strcmp(rte->ctename, cte->ctename) != 0)
				continue;
			rte->rtekind = RTE_SUBQUERY;
			rte->subquery = copyObject(cq);
			rte->ctename = NULL;
			rte->self_reference = false;
			rte->coltypes = rte->coltypmods = rte->colcollations = NIL;
			done = true;
		}
		if (!done)
			return NULL;		/* used in a nested query */
	}
	copy->cteList = NIL;
	return copy;
}

/*
 * RouterJoinPushdown rewrites a SELECT whose FROM clause is a co-located
 * join into a query over the rows that join returns from the shards;
 * NULL when the query does not have that shape.  The spec of the shard
 * rows is appended to *specs, the tables read to *shell_rtes.
 */
Query *
RouterJoinPushdown(Query *parse, List **specs, List **shell_rtes)
{
	Query	   *outer;
	Query	   *inner;
	List	   *vars;
	List	   *relids;
	List	   *pieces;
	List	   *colnames = NIL;
	List	   *param_ids = NIL;
	List	   *exprs = NIL;
	List	   *quals;
	List	   *rtis = NIL;
	Bitmapset  *ids = NULL;
	ColumnMap	map;
	RouterAggSplit split;
	bool		ok;
	int			id = -1;
	ListCell   *lc;

	if (parse->cteList != NIL && (parse = inline_ctes(parse)) == NULL)
		return NULL;
	if (!RouterColocatedJoin(parse, &rtis) || !RouterShipCheck((Node *) parse->jointree, &ids))
		return NULL;
	foreach(lc, parse->rtable)
	{
		RangeTblEntry *rte = lfirst(lc);

		if (rte->rtekind == RTE_SUBQUERY && !RouterShipCheck((Node *) rte->subquery, &ids))
			return NULL;
	}
	outer = copyObject(parse);
	if (splittable(parse, &split))
	{
		/* partial aggregates per shard group, combined here */
		inner = agg_inner_query(parse, &split);
		(void) RouterShipCheck((Node *) split.worker, &ids);
		outer->targetList = split.tlist;
		outer->havingQual = split.having;
		vars = NIL;
	}
	else
	{
		outer->targetList = (List *) flatten_join_alias_vars(outer, (Node *) outer->targetList);
		outer->havingQual = flatten_join_alias_vars(outer, outer->havingQual);
		vars = needed_vars((Node *) list_make2(outer->targetList, outer->havingQual), &ok);
		if (!ok)
			return NULL;
		inner = inner_query(parse, vars);
	}
	if (!RouterMarkDistRtes(inner, &relids))
		return NULL;
	pieces = RouterSplitText(RouterDeparseQuery(inner), relids);
	if (pieces == NIL)
		return NULL;
	while ((id = bms_next_member(ids, id)) >= 0)
		param_ids = lappend_int(param_ids, id);

	/* the rows the shards return, as one function scan */
	foreach(lc, inner->targetList)
	{
		TargetEntry *tle = lfirst(lc);

		exprs = lappend(exprs, tle->expr);
		colnames = lappend(colnames, makeString(tle->resname));
	}
	quals = make_ands_implicit((Expr *) copyObject(parse->jointree->quals));
	collect_relations((Node *) parse, shell_rtes);
	/* the spec: how the scan prints, prunes and runs the shard groups */
	*specs = lappend(*specs, list_make5(pieces, relids, param_ids, quals, rtis));
	if (inner->hasAggs)
		outer->hasAggs = true;	/* the combining aggregates */
	else
	{
		map.vars = vars;
		outer->targetList = (List *) to_column((Node *) outer->targetList, &map);
		outer->havingQual = to_column(outer->havingQual, &map);
	}
	outer->rtable = list_make1(RouterShardRowsRte(InvalidOid, list_length(*specs), exprs,
												  colnames, "shard_rows"));
	outer->jointree = makeFromExpr(list_make1(makeNode(RangeTblRef)), NULL);
	((RangeTblRef *) linitial(outer->jointree->fromlist))->rtindex = 1;
	return outer;
}
