/*-------------------------------------------------------------------------
 *
 * limitpush.c
 *	  ORDER BY ... LIMIT over one distributed table: each shard sends only
 *	  its first rows.
 *
 *   SELECT ... FROM t WHERE q ORDER BY a DESC LIMIT 10 OFFSET 5
 *
 * reads, from each node, SELECT ... FROM <shards> t WHERE q ORDER BY a
 * DESC LIMIT 15: the first 15 rows of the whole table are among the first
 * 15 of some node.  The query itself is planned as usual over the scan,
 * so its Sort and Limit still run here over those rows and the answer is
 * the one a local table gives.  Only sorts by the default ordering of a
 * type (ASC or DESC, either NULLS placement) are sent; constant limits
 * only.
 *
 * IDENTIFICATION
 *	  src/router/limitpush.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parsetree.h"
#include "rewrite/rewriteManip.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "router/router_internal.h"

/*
 * const_count reads a constant LIMIT/OFFSET value; false when it is not
 * a constant (or NULL means "no limit": *value -1).
 */
static bool
const_count(Node *node, int64 *value)
{
	if (node == NULL)
	{
		*value = 0;
		return true;
	}
	node = eval_const_expressions(NULL, copyObject(node));	/* int8(3) */
	if (!IsA(node, Const) || ((Const *) node)->consttype != INT8OID)
		return false;
	*value = ((Const *) node)->constisnull ? -1 : DatumGetInt64(((Const *) node)->constvalue);
	return true;
}

/*
 * sort_key returns the expression of one sort key (*desc set), or NULL if
 * its operator is not the default ordering of its type or it cannot run
 * on a shard.
 */
static Expr *
sort_key(SortGroupClause *sgc, List *tlist, Index rti, bool *desc)
{
	TargetEntry *tle = get_sortgroupclause_tle(sgc, tlist);
	Oid			type = exprType((Node *) tle->expr);
	TypeCacheEntry *tc = lookup_type_cache(type, TYPECACHE_LT_OPR | TYPECACHE_GT_OPR);

	if (sgc->sortop == tc->lt_opr)
		*desc = false;
	else if (sgc->sortop == tc->gt_opr)
		*desc = true;
	else
		return NULL;
	if (!RouterExprShippable((Node *) tle->expr, rti))
		return NULL;
	return tle->expr;
}

/*
 * RouterLimitPushdown returns, for a query of that shape, the spec number
 * (added to *specs) its table's scan is to use, or 0.
 */
int
RouterLimitPushdown(Query *q, List **specs)
{
	RouterScanSpec *spec;
	RangeTblRef *ref;
	RangeTblEntry *rte;
	MyceliumDistTable *table;
	int64		limit;
	int64		offset;
	ListCell   *lc;

	if (q->commandType != CMD_SELECT || q->sortClause == NIL || q->limitCount == NULL ||
		q->limitOption != LIMIT_OPTION_COUNT || q->hasAggs || q->groupClause ||
		q->groupingSets || q->havingQual || q->hasWindowFuncs || q->hasTargetSRFs ||
		q->hasSubLinks || q->distinctClause || q->setOperations || q->rowMarks || q->cteList ||
		list_length(q->jointree->fromlist) != 1 ||
		!IsA(linitial(q->jointree->fromlist), RangeTblRef))
		return 0;
	ref = linitial(q->jointree->fromlist);
	rte = rt_fetch(ref->rtindex, q->rtable);
	if (rte->rtekind != RTE_RELATION)
		return 0;
	table = MyceliumGetDistTable(rte->relid);
	if (table == NULL || table->method == MYCELIUM_DIST_REFERENCE)
		return 0;
	if (!const_count(q->limitCount, &limit) || !const_count(q->limitOffset, &offset) ||
		limit < 0 || offset < 0)
		return 0;

	spec = palloc0(sizeof(RouterScanSpec));
	spec->relid = table->relid;
	spec->limit = limit + offset;
	foreach(lc, q->sortClause)
	{
		SortGroupClause *sgc = lfirst(lc);
		bool		desc;
		Expr	   *key = sort_key(sgc, q->targetList, ref->rtindex, &desc);
		RouterSortKey *sk;

		if (key == NULL)
			return 0;
		sk = palloc0(sizeof(RouterSortKey));
		sk->expr = copyObject(key);
		ChangeVarNodes((Node *) sk->expr, ref->rtindex, 1, 0);
		sk->desc = desc;
		sk->nulls_first = sgc->nulls_first;
		spec->sort = lappend(spec->sort, sk);
	}
	*specs = lappend(*specs, spec);
	return list_length(*specs);
}

/*
 * RouterSortText prints the ORDER BY list of a spec.
 */
char *
RouterSortText(RouterScanSpec *spec)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, spec->sort)
	{
		RouterSortKey *sk = lfirst(lc);

		appendStringInfo(&buf, "%s%s %s NULLS %s", lc == list_head(spec->sort) ? "" : ", ",
						 RouterDeparseExpr((Node *) sk->expr, spec->relid),
						 sk->desc ? "DESC" : "ASC", sk->nulls_first ? "FIRST" : "LAST");
	}
	return buf.data;
}
