/*-------------------------------------------------------------------------
 *
 * aggpush.c
 *	  Aggregates over one distributed table, computed in two steps: partial
 *	  aggregates on every shard, combined on the routing node.
 *
 *   SELECT g, count(*), avg(x) FROM t WHERE q GROUP BY g HAVING ... ORDER BY ...
 *
 * becomes, on each node (over that node's chosen shards),
 *
 *   SELECT g, count(*), sum(x), count(x) FROM <shards> t WHERE q GROUP BY g
 *
 * and, here, a query over those rows that groups again and combines:
 * count -> sum of counts, sum -> sum of sums, min/max -> min/max, avg ->
 * sum of sums / sum of counts -- each cast back to the type the original
 * aggregate returns, computed with the same arithmetic PostgreSQL's own
 * avg uses.  HAVING, ORDER BY, DISTINCT and LIMIT stay in the combining
 * query, which the standard planner plans.  Only that exact shape, with
 * shippable expressions and these aggregates, is rewritten; any other
 * query over a distributed table is planned by pull.c (always right, it
 * just moves more rows).
 *
 * IDENTIFICATION
 *	  src/router/aggpush.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_aggregate.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_func.h"
#include "catalog/namespace.h"
#include "parser/parsetree.h"
#include "rewrite/rewriteManip.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"

#include "router/router_internal.h"

typedef struct AggPushContext
{
	Index		rti;			/* the distributed table in the query */
	List	   *group;			/* GROUP BY expressions (varno rti) */
	List	   *worker;			/* worker output expressions (varno rti) */
	bool		failed;
} AggPushContext;

/*
 * worker_column adds an output column to the shard query; returns a Var
 * for it in the combining query.
 */
static Var *
worker_column(AggPushContext *cxt, Expr *expr)
{
	cxt->worker = lappend(cxt->worker, expr);
	return makeVar(1, list_length(cxt->worker), exprType((Node *) expr),
				   exprTypmod((Node *) expr), exprCollation((Node *) expr), 0);
}

/*
 * make_agg builds a one-argument aggregate call.
 */
static Expr *
make_agg(Oid aggfnoid, Oid rettype, Oid collid, Expr *arg)
{
	Aggref	   *a = makeNode(Aggref);

	a->aggfnoid = aggfnoid;
	a->aggtype = rettype;
	a->aggcollid = collid;
	a->inputcollid = exprCollation((Node *) arg);
	a->aggargtypes = list_make1_oid(exprType((Node *) arg));
	a->args = list_make1(makeTargetEntry(arg, 1, NULL, false));
	a->aggkind = AGGKIND_NORMAL;
	a->aggsplit = AGGSPLIT_SIMPLE;
	a->aggno = -1;
	a->aggtransno = -1;
	a->location = -1;
	return (Expr *) a;
}

static Expr *
make_func(Oid funcid, Oid rettype, List *args)
{
	return (Expr *) makeFuncExpr(funcid, rettype, args, InvalidOid, InvalidOid,
								 COERCE_EXPLICIT_CAST);
}

/*
 * lookup_agg finds a built-in aggregate by name and argument type.
 */
static Oid
lookup_agg(const char *name, Oid argtype)
{
	Oid			argtypes[1];

	argtypes[0] = argtype;
	return LookupFuncName(list_make1(makeString((char *) name)), 1, argtypes, true);
}

/*
 * sum_of sums a worker column of int8 or numeric into numeric.
 */
static Expr *
sum_of(Var *v)
{
	if (v->vartype == INT8OID)
		return make_agg(F_SUM_INT8, NUMERICOID, InvalidOid, (Expr *) v);
	return make_agg(F_SUM_NUMERIC, NUMERICOID, InvalidOid, (Expr *) v);
}

/*
 * nullif_zero is NULLIF(expr, 0) for float8 or numeric.
 */
static NullIfExpr *
nullif_zero(Expr *expr, Oid type, Datum zero)
{
	NullIfExpr *nz = makeNode(NullIfExpr);
	int16		typlen;
	bool		typbyval;

	get_typlenbyval(type, &typlen, &typbyval);
	nz->opno = OpernameGetOprid(list_make1(makeString("=")), type, type);
	nz->opfuncid = get_opcode(nz->opno);
	nz->opresulttype = type;
	nz->args = list_make2(expr, makeConst(type, -1, InvalidOid, typlen, zero, false, typbyval));
	nz->location = -1;
	return nz;
}

/*
 * combine_agg returns the combining expression for one aggregate, adding
 * its partial columns; NULL when the aggregate cannot be split.
 */
static Expr *
combine_agg(Aggref *agg, AggPushContext *cxt)
{
	char	   *name = get_func_name(agg->aggfnoid);
	Oid			argtype = agg->aggargtypes ? linitial_oid(agg->aggargtypes) : InvalidOid;
	Aggref	   *partial;
	Var		   *v;
	Expr	   *num;
	Expr	   *den;
	NullIfExpr *nz;

	if (agg->aggdistinct || agg->aggorder || agg->aggkind != AGGKIND_NORMAL ||
		agg->agglevelsup != 0 || agg->aggvariadic || list_length(agg->args) > 1 ||
		agg->aggfnoid >= FirstGenbkiObjectId)
		return NULL;
	if (strcmp(name, "count") == 0)
	{
		v = worker_column(cxt, (Expr *) copyObject(agg));
		return (Expr *) makeFuncExpr(F_INT8_NUMERIC, INT8OID,
									 list_make1(sum_of(v)), InvalidOid, InvalidOid,
									 COERCE_EXPLICIT_CAST);
	}
	if (strcmp(name, "min") == 0 || strcmp(name, "max") == 0)
	{
		v = worker_column(cxt, (Expr *) copyObject(agg));
		return make_agg(agg->aggfnoid, agg->aggtype, agg->aggcollid, (Expr *) v);
	}
	if (strcmp(name, "sum") == 0)
	{
		v = worker_column(cxt, (Expr *) copyObject(agg));
		if (argtype == INT2OID || argtype == INT4OID)
			return make_func(F_INT8_NUMERIC, INT8OID, list_make1(sum_of(v)));
		if (argtype == INT8OID || argtype == NUMERICOID)
			return sum_of(v);
		if (argtype == FLOAT4OID || argtype == FLOAT8OID)
			return make_agg(agg->aggfnoid, agg->aggtype, InvalidOid, (Expr *) v);
		return NULL;
	}
	if (strcmp(name, "avg") == 0 &&
		(argtype == INT2OID || argtype == INT4OID || argtype == INT8OID ||
		 argtype == NUMERICOID || argtype == FLOAT8OID))
	{
		Var		   *s;
		Var		   *c;

		partial = copyObject(agg);
		partial->aggfnoid = lookup_agg("sum", argtype);
		partial->aggtype = get_func_rettype(partial->aggfnoid);
		s = worker_column(cxt, (Expr *) partial);
		partial = copyObject(agg);
		partial->aggfnoid = F_COUNT_ANY;
		partial->aggtype = INT8OID;
		c = worker_column(cxt, (Expr *) partial);
		if (argtype == FLOAT8OID)
		{
			num = make_agg(F_SUM_FLOAT8, FLOAT8OID, InvalidOid, (Expr *) s);
			den = make_func(F_FLOAT8_NUMERIC, FLOAT8OID, list_make1(sum_of(c)));
			nz = nullif_zero(den, FLOAT8OID, Float8GetDatum(0.0));
			return make_func(F_FLOAT8DIV, FLOAT8OID, list_make2(num, nz));
		}
		num = sum_of(s);
		den = sum_of(c);
		nz = nullif_zero(den, NUMERICOID, NumericGetDatum(int64_to_numeric(0)));
		return make_func(F_NUMERIC_DIV, NUMERICOID, list_make2(num, nz));
	}
	return NULL;
}

/*
 * combine_mutator rewrites the target list and HAVING of the query into
 * the combining query's terms.
 */
static Node *
combine_mutator(Node *node, AggPushContext *cxt)
{
	ListCell   *lc;
	int			i = 0;

	if (node == NULL || cxt->failed)
		return node;
	foreach(lc, cxt->group)
	{
		i++;
		if (equal(node, lfirst(lc)))
			return (Node *) makeVar(1, i, exprType(node), exprTypmod(node), exprCollation(node), 0);
	}
	if (IsA(node, Aggref))
	{
		Expr	   *e = combine_agg((Aggref *) node, cxt);

		if (e == NULL)
			cxt->failed = true;
		return (Node *) e;
	}
	if (IsA(node, Var) || IsA(node, SubLink) || IsA(node, GroupingFunc) ||
		IsA(node, WindowFunc))
	{
		cxt->failed = true;
		return node;
	}
	return expression_tree_mutator(node, combine_mutator, cxt);
}

/*
 * pushable_shape says whether a query is one SELECT over one distributed
 * table with aggregates or grouping and nothing else the split cannot
 * carry; *rti gets the table's range table index.
 */
static MyceliumDistTable *
pushable_shape(Query *q, Index *rti)
{
	RangeTblRef *ref;
	RangeTblEntry *rte;
	MyceliumDistTable *table;

	if (q->commandType != CMD_SELECT || q->utilityStmt || q->cteList ||
		q->hasWindowFuncs || q->hasTargetSRFs || q->hasSubLinks || q->hasRecursive ||
		q->hasForUpdate || q->rowMarks || q->setOperations || q->groupingSets ||
		(!q->hasAggs && q->groupClause == NIL) || q->hasDistinctOn)
		return NULL;
	if (list_length(q->jointree->fromlist) != 1 ||
		!IsA(linitial(q->jointree->fromlist), RangeTblRef))
		return NULL;
	ref = linitial(q->jointree->fromlist);
	rte = rt_fetch(ref->rtindex, q->rtable);
	if (rte->rtekind != RTE_RELATION || rte->securityQuals || rte->tablesample)
		return NULL;
	table = MyceliumGetDistTable(rte->relid);
	if (table == NULL || table->method == MYCELIUM_DIST_REFERENCE)
		return NULL;
	*rti = ref->rtindex;
	return table;
}

/*
 * to_shard_vars returns a copy of expressions with the table's Vars
 * renumbered to 1, the shard query's only relation.
 */
static List *
to_shard_vars(List *exprs, Index rti)
{
	List	   *copy = copyObject(exprs);

	ChangeVarNodes((Node *) copy, rti, 1, 0);
	return copy;
}

/*
 * shippable_here checks one expression of the split: over the table rti,
 * or (rti 0) over a co-located join, whose check also notes parameters.
 */
static bool
shippable_here(Node *expr, Index rti)
{
	Bitmapset  *ids = NULL;

	return rti > 0 ? RouterExprShippable(expr, rti) : RouterShipCheck(expr, &ids);
}

/*
 * RouterSplitAggregates splits the aggregates and grouping of a query into
 * the partial aggregates the shards compute (split->worker, the GROUP BY
 * expressions first: split->group) and the combining target list and
 * HAVING over them (Vars of varno 1, one per worker column).  rti is the
 * one distributed table the expressions read, or 0 for a co-located join.
 * False when some aggregate or expression cannot be split or shipped.
 */
bool
RouterSplitAggregates(Query *parse, Index rti, RouterAggSplit *split)
{
	AggPushContext cxt;
	ListCell   *lc;

	memset(&cxt, 0, sizeof(cxt));
	memset(split, 0, sizeof(*split));
	cxt.rti = rti;
	foreach(lc, parse->groupClause)
	{
		TargetEntry *tle = get_sortgroupclause_tle(lfirst(lc), parse->targetList);

		if (!shippable_here((Node *) tle->expr, rti))
			return false;
		cxt.group = lappend(cxt.group, tle->expr);
		(void) worker_column(&cxt, tle->expr);
	}
	foreach(lc, parse->targetList)
	{
		TargetEntry *tle = flatCopyTargetEntry(lfirst(lc));

		tle->expr = (Expr *) combine_mutator((Node *) tle->expr, &cxt);
		split->tlist = lappend(split->tlist, tle);
	}
	split->having = combine_mutator(copyObject(parse->havingQual), &cxt);
	if (cxt.failed)
		return false;
	foreach(lc, cxt.worker)
		if (!shippable_here(lfirst(lc), rti))
			return false;
	split->group = cxt.group;
	split->worker = cxt.worker;
	return true;
}

/*
 * RouterAggPushdown returns the combining query for an aggregate over one
 * distributed table, adding the shard query's spec to *specs and the
 * table's entry to *shell_rtes; NULL if the query does not have that
 * shape.
 */
Query *
RouterAggPushdown(Query *parse, List **specs, List **shell_rtes)
{
	RouterAggSplit split;
	MyceliumDistTable *table;
	Index		rti;
	List	   *quals;
	ListCell   *lc;
	Query	   *combine;
	RouterScanSpec *spec;
	RangeTblEntry *rte;
	List	   *colnames = NIL;
	int			i;

	if ((table = pushable_shape(parse, &rti)) == NULL)
		return NULL;
	quals = make_ands_implicit((Expr *) parse->jointree->quals);
	foreach(lc, quals)
		if (!RouterExprShippable(lfirst(lc), rti))
			return NULL;
	if (!RouterSplitAggregates(parse, rti, &split))
		return NULL;
	combine = copyObject(parse);
	combine->havingQual = split.having;

	spec = palloc0(sizeof(RouterScanSpec));
	spec->relid = table->relid;
	spec->target = to_shard_vars(split.worker, rti);
	spec->quals = to_shard_vars(quals, rti);
	spec->group = to_shard_vars(split.group, rti);
	spec->limit = -1;
	*specs = lappend(*specs, spec);
	*shell_rtes = lappend(*shell_rtes, copyObject(rt_fetch(rti, parse->rtable)));
	((RangeTblEntry *) llast(*shell_rtes))->inh = false;

	for (i = 1; i <= list_length(split.worker); i++)
		colnames = lappend(colnames, makeString(psprintf("p%d", i)));
	rte = RouterShardRowsRte(table->relid, list_length(*specs), split.worker, colnames,
							 rt_fetch(rti, parse->rtable)->eref->aliasname);
	combine->rtable = list_make1(rte);
	combine->jointree = makeFromExpr(list_make1(makeNode(RangeTblRef)), NULL);
	((RangeTblRef *) linitial(combine->jointree->fromlist))->rtindex = 1;
	combine->targetList = split.tlist;
	return combine;
}
