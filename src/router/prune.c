/*-------------------------------------------------------------------------
 *
 * prune.c
 *	  Shard pruning: which shards of a distributed table can hold rows that
 *	  satisfy a query's quals.
 *
 * Only top-level AND-ed conditions of the form
 *   <distribution column> = <constant>
 *   <distribution column> = ANY (<constant array>)     (IN lists)
 * prune; anything else keeps every shard.  The equality operator must
 * belong to the operator family the shards were cut with (the hash family
 * for hash tables, the btree family for range tables), so equal values are
 * guaranteed to land in the same shard.  Parameters have been bound to
 * constants before this runs, so prepared statements prune per execution.
 *
 * IDENTIFICATION
 *	  src/router/prune.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/hash.h"
#include "access/nbtree.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/typcache.h"

#include "router/router_internal.h"

/*
 * dist_var says whether a node is the distribution column of the table
 * (as Var varno, possibly under a binary-compatible relabel).
 */
static bool
dist_var(Node *node, MyceliumDistTable *table, Index varno)
{
	while (node && IsA(node, RelabelType))
		node = (Node *) ((RelabelType *) node)->arg;
	if (node == NULL || !IsA(node, Var))
		return false;
	return ((Var *) node)->varno == varno && ((Var *) node)->varlevelsup == 0 &&
		((Var *) node)->varattno == table->dist_attno;
}

/*
 * dist_opfamily is the operator family the shards were cut with: the
 * column type's default hash family, or btree family for range tables
 * (from the type cache, so no catalog lookup per execution).
 */
static Oid
dist_opfamily(MyceliumDistTable *table)
{
	TypeCacheEntry *tc = lookup_type_cache(table->dist_type,
										   TYPECACHE_HASH_OPFAMILY | TYPECACHE_BTREE_OPFAMILY);

	return table->method == MYCELIUM_DIST_HASH ? tc->hash_opf : tc->btree_opf;
}

/*
 * equality_prunes says whether opno compares the distribution column with
 * the same notion of equality the shards were cut with.
 */
static bool
equality_prunes(MyceliumDistTable *table, Oid opno, Oid valtype)
{
	Oid			family = dist_opfamily(table);

	if (!OidIsValid(family))
		return false;
	/* range bounds compare with the column type's own comparator only */
	if (table->method == MYCELIUM_DIST_RANGE && valtype != table->dist_type)
		return false;
	return get_op_opfamily_strategy(opno, family) ==
		(table->method == MYCELIUM_DIST_HASH ? HTEqualStrategyNumber : BTEqualStrategyNumber);
}

/*
 * shard_of_const returns the shard index for a constant compared by
 * equality (-1: no shard can match), hashing it with the family's hash
 * function for its own type (equal across types within a family).
 */
static int
shard_of_const(MyceliumDistTable *table, Datum value, bool isnull, Oid valtype)
{
	if (isnull)
		return -1;
	if (table->method == MYCELIUM_DIST_HASH && valtype != table->dist_type)
	{
		Oid			proc = get_opfamily_proc(dist_opfamily(table), valtype, valtype,
											 HASHSTANDARD_PROC);
		int32		h;
		int			i;

		if (!OidIsValid(proc))
			return -2;			/* cannot tell: keep all shards */
		h = DatumGetInt32(OidFunctionCall1Coll(proc, table->dist_collation, value));
		for (i = 0; i < table->nshards; i++)
			if (h >= table->shards[i].min_hash && h <= table->shards[i].max_hash)
				return i;
		return -1;
	}
	return MyceliumShardIndexForValue(table, value, false);
}

/*
 * prune_clause returns the shards one condition allows, or NULL with
 * *useful false when the condition does not prune.
 */
static Bitmapset *
prune_clause(MyceliumDistTable *table, Node *clause, Index varno, bool *useful)
{
	Bitmapset  *result = NULL;

	*useful = false;
	if (IsA(clause, OpExpr) && list_length(((OpExpr *) clause)->args) == 2)
	{
		OpExpr	   *op = (OpExpr *) clause;
		Node	   *l = linitial(op->args);
		Node	   *r = lsecond(op->args);
		Const	   *c;
		int			idx;

		if (dist_var(r, table, varno))
		{
			Node	   *tmp = l;

			l = r;
			r = tmp;
		}
		if (!dist_var(l, table, varno) || !IsA(r, Const))
			return NULL;
		c = (Const *) r;
		if (!equality_prunes(table, op->opno, c->consttype))
			return NULL;
		idx = shard_of_const(table, c->constvalue, c->constisnull, c->consttype);
		if (idx == -2)
			return NULL;
		*useful = true;
		return idx >= 0 ? bms_make_singleton(idx) : NULL;
	}
	if (IsA(clause, ScalarArrayOpExpr))
	{
		ScalarArrayOpExpr *sa = (ScalarArrayOpExpr *) clause;
		Const	   *c = lsecond(sa->args);
		ArrayType  *arr;
		Oid			elemtype;
		int16		elmlen;
		bool		elmbyval;
		char		elmalign;
		Datum	   *elems;
		bool	   *nulls;
		int			n;
		int			i;

		if (!sa->useOr || !dist_var(linitial(sa->args), table, varno) || !IsA(c, Const))
			return NULL;
		if (c->constisnull)
		{
			*useful = true;
			return NULL;
		}
		arr = DatumGetArrayTypeP(c->constvalue);
		elemtype = ARR_ELEMTYPE(arr);
		if (!equality_prunes(table, sa->opno, elemtype))
			return NULL;
		get_typlenbyvalalign(elemtype, &elmlen, &elmbyval, &elmalign);
		deconstruct_array(arr, elemtype, elmlen, elmbyval, elmalign, &elems, &nulls, &n);
		for (i = 0; i < n; i++)
		{
			int			idx = shard_of_const(table, elems[i], nulls[i], elemtype);

			if (idx == -2)
				return NULL;
			if (idx >= 0)
				result = bms_add_member(result, idx);
		}
		*useful = true;
		return result;
	}
	return NULL;
}

/*
 * RouterPruneShards returns the shards of table that the AND-ed quals
 * (Vars of varno) leave; *all is set when nothing pruned.
 */
Bitmapset *
RouterPruneShards(MyceliumDistTable *table, List *quals, Index varno, bool *all)
{
	Bitmapset  *result = NULL;
	ListCell   *lc;

	*all = true;
	if (table->method == MYCELIUM_DIST_REFERENCE)
		return NULL;
	foreach(lc, quals)
	{
		Node	   *clause = lfirst(lc);
		bool		useful;
		Bitmapset  *these;

		if (IsA(clause, RestrictInfo))
			clause = (Node *) ((RestrictInfo *) clause)->clause;
		if (IsA(clause, BoolExpr) && ((BoolExpr *) clause)->boolop == AND_EXPR)
		{
			bool		suball;

			these = RouterPruneShards(table, ((BoolExpr *) clause)->args, varno, &suball);
			useful = !suball;
		}
		else
			these = prune_clause(table, clause, varno, &useful);
		if (!useful)
			continue;
		if (*all)
		{
			result = these;
			*all = false;
		}
		else
			result = bms_intersect(result, these);
	}
	return result;
}

/*
 * RouterTaskNodes groups the chosen shards by node: a List of Lists, each
 * with the shard indexes of one node, the node's shards in index order.
 */
List *
RouterTaskNodes(MyceliumDistTable *table, Bitmapset *shards, bool all)
{
	List	   *groups = NIL;
	List	   *names = NIL;
	int			i;

	for (i = 0; i < table->nshards; i++)
	{
		ListCell   *lc;
		ListCell   *lg;
		bool		found = false;

		if (!all && !bms_is_member(i, shards))
			continue;
		forboth(lc, names, lg, groups)
		{
			if (strcmp(lfirst(lc), table->shards[i].node_name) == 0)
			{
				lfirst(lg) = lappend_int(lfirst(lg), i);
				found = true;
				break;
			}
		}
		if (!found)
		{
			names = lappend(names, table->shards[i].node_name);
			groups = lappend(groups, list_make1_int(i));
		}
	}
	return groups;
}
