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
 * Outer joins keep this property when the preserved side holds a
 * distributed table and the ON clause links the two sides' distribution
 * columns; a reference table on the preserved side of an outer join with a
 * distributed table would repeat its unmatched rows once per group, so that
 * shape, like anything not listed here, is planned by pull.c instead.
 * Shard groups are pruned by = / IN on a distribution column in WHERE.
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

/* what the planning part learns about the FROM clause */
typedef struct JoinShape
{
	Query	   *query;
	int		   *group;			/* union-find over range table indexes */
	bool		failed;
} JoinShape;

static MyceliumDistTable *
dist_of(Query *q, Index rti)
{
	RangeTblEntry *rte = rt_fetch(rti, q->rtable);
	MyceliumDistTable *t;

	if (rte->rtekind != RTE_RELATION)
		return NULL;
	t = MyceliumGetDistTable(rte->relid);
	return t != NULL && t->method != MYCELIUM_DIST_REFERENCE ? t : NULL;
}

static int
find_root(int *group, int i)
{
	while (group[i] != i)
		i = group[i] = group[group[i]];
	return i;
}

/*
 * dist_key_equality returns the two range table indexes an equality of
 * distribution columns links, or false.
 */
static bool
dist_key_equality(Query *q, Node *clause, Index *a, Index *b)
{
	OpExpr	   *op;
	Var		   *l;
	Var		   *r;
	MyceliumDistTable *tl;
	MyceliumDistTable *tr;
	TypeCacheEntry *tc;

	if (!IsA(clause, OpExpr) || list_length(((OpExpr *) clause)->args) != 2)
		return false;
	op = (OpExpr *) clause;
	l = (Var *) strip_implicit_coercions(linitial(op->args));
	r = (Var *) strip_implicit_coercions(lsecond(op->args));
	if (!IsA(l, Var) || !IsA(r, Var) || l->varlevelsup != 0 || r->varlevelsup != 0)
		return false;
	tl = dist_of(q, l->varno);
	tr = dist_of(q, r->varno);
	if (tl == NULL || tr == NULL || l->varattno != tl->dist_attno || r->varattno != tr->dist_attno ||
		l->vartype != r->vartype)
		return false;
	tc = lookup_type_cache(l->vartype, TYPECACHE_EQ_OPR);
	if (tc->eq_opr != op->opno)
		return false;
	*a = l->varno;
	*b = r->varno;
	return true;
}

/*
 * link_quals unions the tables an AND-list of quals joins by key;
 * returns whether some equality linked a table in left with one in right
 * (when both are given).
 */
static bool
link_quals(JoinShape *js, Node *quals, Relids left, Relids right)
{
	List	   *conjuncts = make_ands_implicit((Expr *) quals);
	ListCell   *lc;
	bool		linked = false;

	foreach(lc, conjuncts)
	{
		Index		a,
					b;

		if (!dist_key_equality(js->query, lfirst(lc), &a, &b))
			continue;
		js->group[find_root(js->group, a)] = find_root(js->group, b);
		if (left && right &&
			((bms_is_member(a, left) && bms_is_member(b, right)) ||
			 (bms_is_member(b, left) && bms_is_member(a, right))))
			linked = true;
	}
	return linked;
}

static bool has_dist(JoinShape *js, Relids rels);

/*
 * walk_join checks one node of the FROM tree; returns whether its rows are
 * partitioned by shard group (it holds a distributed table whose rows are
 * never NULL-extended against a reference-only side).  *rels gets the
 * range table indexes below it.
 */
static bool
walk_join(JoinShape *js, Node *node, Relids *rels)
{
	if (IsA(node, RangeTblRef))
	{
		Index		rti = ((RangeTblRef *) node)->rtindex;

		*rels = bms_make_singleton(rti);
		return dist_of(js->query, rti) != NULL;
	}
	if (IsA(node, FromExpr))
	{
		FromExpr   *f = (FromExpr *) node;
		bool		part = false;
		ListCell   *lc;

		*rels = NULL;
		foreach(lc, f->fromlist)
		{
			Relids		sub;

			part |= walk_join(js, lfirst(lc), &sub);
			*rels = bms_join(*rels, sub);
		}
		(void) link_quals(js, f->quals, NULL, NULL);
		return part;
	}
	if (IsA(node, JoinExpr))
	{
		JoinExpr   *j = (JoinExpr *) node;
		Relids		l,
					r;
		bool		pl = walk_join(js, j->larg, &l);
		bool		pr = walk_join(js, j->rarg, &r);
		bool		linked = link_quals(js, j->quals, l, r);
		bool		dl = has_dist(js, l);
		bool		dr = has_dist(js, r);

		*rels = bms_union(l, r);
		switch (j->jointype)
		{
			case JOIN_INNER:
				return pl || pr;
			case JOIN_LEFT:
				if (dr && !(pl && linked))
					js->failed = true;
				return pl;
			case JOIN_RIGHT:
				if (dl && !(pr && linked))
					js->failed = true;
				return pr;
			case JOIN_FULL:
				if ((dl || dr) && !(pl && pr && linked))
					js->failed = true;
				return pl && pr;
			default:
				js->failed = true;
				return false;
		}
	}
	js->failed = true;
	return false;
}

static bool
has_dist(JoinShape *js, Relids rels)
{
	int			i = -1;

	while ((i = bms_next_member(rels, i)) >= 0)
		if (dist_of(js->query, i) != NULL)
			return true;
	return false;
}

/*
 * colocated_rtable checks the range table: only relations that are
 * distributed tables of one colocation group, or reference tables, and
 * join entries; at least two relations, one of them distributed.
 */
static bool
colocated_rtable(Query *q)
{
	MyceliumDistTable *first = NULL;
	int			nrels = 0;
	ListCell   *lc;

	foreach(lc, q->rtable)
	{
		RangeTblEntry *rte = lfirst(lc);
		MyceliumDistTable *t;
		int			i;

		if (rte->rtekind == RTE_JOIN)
			continue;
		if (rte->rtekind != RTE_RELATION || rte->securityQuals != NIL || rte->tablesample != NULL)
			return false;
		t = MyceliumGetDistTable(rte->relid);
		if (t == NULL)
			return false;
		nrels++;
		if (t->method == MYCELIUM_DIST_REFERENCE)
			continue;
		if (t->method != MYCELIUM_DIST_HASH)
			return false;
		if (first == NULL)
		{
			first = t;
			continue;
		}
		if (t->colocation_id != first->colocation_id || t->nshards != first->nshards)
			return false;
		for (i = 0; i < t->nshards; i++)
			if (t->shards[i].min_hash != first->shards[i].min_hash ||
				t->shards[i].max_hash != first->shards[i].max_hash ||
				strcmp(t->shards[i].node_name, first->shards[i].node_name) != 0)
				return false;
	}
	return first != NULL && nrels >= 2;
}

/*
 * join_shape_ok says whether every row of the FROM clause comes from one
 * shard group.
 */
static bool
join_shape_ok(Query *q)
{
	JoinShape	js;
	Relids		rels;
	int			n = list_length(q->rtable);
	int			root = -1;
	int			i;

	js.query = q;
	js.failed = false;
	js.group = palloc(sizeof(int) * (n + 1));
	for (i = 0; i <= n; i++)
		js.group[i] = i;
	if (!walk_join(&js, (Node *) q->jointree, &rels) || js.failed)
		return false;
	for (i = 1; i <= n; i++)
	{
		if (dist_of(q, i) == NULL)
			continue;
		if (root < 0)
			root = find_root(js.group, i);
		else if (find_root(js.group, i) != root)
			return false;
	}
	return true;
}

/*
 * plain_select says whether the query level has only the parts this
 * rewrite handles: no CTEs, sublinks, set operations or row locks.
 */
static bool
plain_select(Query *q)
{
	return q->commandType == CMD_SELECT && q->cteList == NIL && !q->hasSubLinks &&
		q->setOperations == NULL && q->rowMarks == NIL && q->utilityStmt == NULL &&
		!q->hasModifyingCTE;
}

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

	if (!plain_select(parse) || !colocated_rtable(parse) || !join_shape_ok(parse))
		return NULL;
	if (!RouterShipCheck((Node *) parse->jointree, &ids))
		return NULL;
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
	foreach(lc, parse->rtable)
	{
		RangeTblEntry *rte = lfirst(lc);

		if (dist_of(parse, foreach_current_index(lc) + 1) != NULL)
			rtis = lappend_int(rtis, foreach_current_index(lc) + 1);
		if (rte->rtekind == RTE_RELATION)
		{
			RangeTblEntry *shell = copyObject(rte);

			shell->inh = false;
			*shell_rtes = lappend(*shell_rtes, shell);
		}
	}
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
