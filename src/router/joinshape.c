/*-------------------------------------------------------------------------
 *
 * joinshape.c
 *	  Does every row of a query's FROM clause come from one shard group?
 *
 * A FROM clause qualifies (joinpush.c then runs it per shard group) when:
 *
 *   - it reads only hash-distributed tables of one colocation group,
 *     reference tables, and subqueries that qualify themselves;
 *   - every distributed input is linked to the others by equality of
 *     distribution columns (a union-find over the equalities of WHERE and
 *     ON clauses);
 *   - an outer join between two sides holding distributed inputs has such
 *     an equality in its own ON clause, and its preserved side holds a
 *     distributed input (a reference table alone on the preserved side
 *     would repeat its unmatched rows once per group).
 *
 * Sublinks may be WHERE conjuncts: [NOT] EXISTS over a subquery that
 * qualifies and equates its distribution column with this level's, key IN
 * (subquery returning its distribution column), or any sublink reading
 * only reference tables.
 *
 * A subquery in FROM qualifies when its own FROM clause does, it has no
 * LIMIT, DISTINCT, window functions or set-returning functions, and, if it
 * aggregates, it groups by a distribution column (so each group lies in one
 * shard group).  Its output columns that are distribution columns can then
 * be joined on like a table's.
 *
 * IDENTIFICATION
 *	  src/router/joinshape.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parsetree.h"
#include "rewrite/rewriteManip.h"
#include "utils/typcache.h"

#include "router/router_internal.h"

/* what the analysis learns about one query level's range table */
typedef struct JoinShape
{
	Query	   *query;
	MyceliumDistTable **dist;	/* per rti: the distributed input's table */
	Bitmapset **keys;			/* per rti: its columns that are dist keys */
	int		   *group;			/* union-find over range table indexes */
	MyceliumDistTable **first;	/* the colocation group, shared by levels */
	bool		failed;
} JoinShape;

static bool analyze_level(Query *q, int min_rels, MyceliumDistTable **first,
						  JoinShape *js);
static MyceliumDistTable *subquery_input(Query *sq, MyceliumDistTable **first,
										 Bitmapset **keys, JoinShape *out);

static int
find_root(int *group, int i)
{
	while (group[i] != i)
		i = group[i] = group[group[i]];
	return i;
}

/*
 * same_group says whether two hash tables have equal shard ranges on the
 * same nodes (a colocation group).
 */
static bool
same_group(MyceliumDistTable *a, MyceliumDistTable *b)
{
	int			i;

	if (a->colocation_id != b->colocation_id || a->nshards != b->nshards)
		return false;
	for (i = 0; i < a->nshards; i++)
		if (a->shards[i].min_hash != b->shards[i].min_hash ||
			a->shards[i].max_hash != b->shards[i].max_hash ||
			strcmp(a->shards[i].node_name, b->shards[i].node_name) != 0)
			return false;
	return true;
}

/*
 * key_var returns the range table index of a Var of a distribution
 * column of a distributed input, or 0.
 */
static Index
key_var(JoinShape *js, Node *node, Oid *type)
{
	Var		   *v = (Var *) strip_implicit_coercions(node);

	if (!IsA(v, Var) || v->varlevelsup != 0 || js->dist[v->varno] == NULL ||
		!bms_is_member(v->varattno, js->keys[v->varno]))
		return 0;
	*type = v->vartype;
	return v->varno;
}

/*
 * dist_key_equality returns the two inputs an equality of distribution
 * columns links, or false.
 */
static bool
dist_key_equality(JoinShape *js, Node *clause, Index *a, Index *b)
{
	OpExpr	   *op = (OpExpr *) clause;
	Oid			ta,
				tb;

	if (!IsA(clause, OpExpr) || list_length(op->args) != 2)
		return false;
	*a = key_var(js, linitial(op->args), &ta);
	*b = key_var(js, lsecond(op->args), &tb);
	if (*a == 0 || *b == 0 || ta != tb)
		return false;
	return lookup_type_cache(ta, TYPECACHE_EQ_OPR)->eq_opr == op->opno;
}

/*
 * link_quals unions the inputs an AND-list of quals joins by key; returns
 * whether some equality linked an input in left with one in right.
 */
static bool
link_quals(JoinShape *js, Node *quals, Relids left, Relids right)
{
	ListCell   *lc;
	bool		linked = false;

	foreach(lc, make_ands_implicit((Expr *) quals))
	{
		Index		a,
					b;

		if (!dist_key_equality(js, lfirst(lc), &a, &b))
			continue;
		js->group[find_root(js->group, a)] = find_root(js->group, b);
		if ((bms_is_member(a, left) && bms_is_member(b, right)) ||
			(bms_is_member(b, left) && bms_is_member(a, right)))
			linked = true;
	}
	return linked;
}

static bool
has_dist(JoinShape *js, Relids rels)
{
	int			i = -1;

	while ((i = bms_next_member(rels, i)) >= 0)
		if (js->dist[i] != NULL)
			return true;
	return false;
}

/*
 * outer_join_ok checks an outer join: true when its rows stay partitioned.
 */
static bool
outer_join_ok(JoinShape *js, JoinType type, bool pl, bool pr, bool dl, bool dr, bool linked)
{
	switch (type)
	{
		case JOIN_INNER:
			return true;
		case JOIN_LEFT:
			return !dr || (pl && linked);
		case JOIN_RIGHT:
			return !dl || (pr && linked);
		case JOIN_FULL:
			return !(dl || dr) || (pl && pr && linked);
		default:
			return false;
	}
}

/*
 * walk_join checks one node of the FROM tree; returns whether its rows are
 * partitioned by shard group.  *rels gets the inputs below it.
 */
static bool
walk_join(JoinShape *js, Node *node, Relids *rels)
{
	if (IsA(node, RangeTblRef))
	{
		Index		rti = ((RangeTblRef *) node)->rtindex;

		*rels = bms_make_singleton(rti);
		return js->dist[rti] != NULL;
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

		*rels = bms_union(l, r);
		if (!outer_join_ok(js, j->jointype, pl, pr, has_dist(js, l), has_dist(js, r), linked))
			js->failed = true;
		switch (j->jointype)
		{
			case JOIN_LEFT:
				return pl;
			case JOIN_RIGHT:
				return pr;
			case JOIN_FULL:
				return pl && pr;
			default:
				return pl || pr;
		}
	}
	js->failed = true;
	return false;
}

/*
 * plain_select says whether a query level has only the parts the rewrite
 * handles: no CTEs, sublinks, set operations or row locks.
 */
static bool
plain_select(Query *q)
{
	return q->commandType == CMD_SELECT && q->cteList == NIL &&
		q->setOperations == NULL && q->rowMarks == NIL && q->utilityStmt == NULL &&
		!q->hasModifyingCTE && q->groupingSets == NIL;
}

/*
 * outer_key_var says whether a Var one level up is a distribution column
 * of a distributed input of the outer level.
 */
static bool
outer_key_var(JoinShape *outer, Node *node, Oid *type)
{
	Var		   *v = (Var *) strip_implicit_coercions(node);

	if (!IsA(v, Var) || v->varlevelsup != 1 || outer->dist[v->varno] == NULL ||
		!bms_is_member(v->varattno, outer->keys[v->varno]))
		return false;
	*type = v->vartype;
	return true;
}

/*
 * correlated_by_key says whether an EXISTS subquery's WHERE equates one of
 * its distribution columns with one of the outer level's.
 */
static bool
correlated_by_key(JoinShape *outer, JoinShape *inner)
{
	ListCell   *lc;

	foreach(lc, make_ands_implicit((Expr *) inner->query->jointree->quals))
	{
		OpExpr	   *op = lfirst(lc);
		Oid			ta,
					tb;

		if (!IsA(op, OpExpr) || list_length(op->args) != 2)
			continue;
		if (((key_var(inner, linitial(op->args), &ta) && outer_key_var(outer, lsecond(op->args), &tb)) ||
			 (key_var(inner, lsecond(op->args), &ta) && outer_key_var(outer, linitial(op->args), &tb))) &&
			ta == tb && lookup_type_cache(ta, TYPECACHE_EQ_OPR)->eq_opr == op->opno)
			return true;
	}
	return false;
}

/*
 * reads_only_reference says whether a subquery reads reference tables and
 * nothing else (no distributed or local tables, no outer-level Vars).
 */
static bool
reference_walker(Node *node, void *cxt)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;
		MyceliumDistTable *t;

		if (rte->rtekind != RTE_RELATION)
			return false;
		t = MyceliumGetDistTable(rte->relid);
		return t == NULL || t->method != MYCELIUM_DIST_REFERENCE;
	}
	if (IsA(node, Var) && ((Var *) node)->varlevelsup > 0)
		return true;
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, reference_walker, cxt, QTW_EXAMINE_RTES_BEFORE);
	return expression_tree_walker(node, reference_walker, cxt);
}

static bool
reads_only_reference(Node *subselect)
{
	return !reference_walker(subselect, NULL);
}

/*
 * sublink_ok checks one WHERE conjunct that holds a sublink: [NOT] EXISTS
 * or key [NOT] IN over a subquery whose rows stay in one shard group,
 * tied to this level's distribution column, so each row finds its matches
 * in its own shard group.
 */
static bool
sublink_ok(JoinShape *outer, Node *clause)
{
	SubLink    *sl;
	JoinShape	inner;
	Bitmapset  *keys = NULL;
	OpExpr	   *test;
	Oid			ta;
	Param	   *p;

	bool		negated = is_notclause(clause);

	if (negated)
		clause = (Node *) get_notclausearg((Expr *) clause);
	if (!IsA(clause, SubLink))
		return false;
	sl = (SubLink *) clause;
	/* over reference tables alone it gives the same answer on every node */
	if (reads_only_reference((Node *) sl->subselect))
		return true;
	if (subquery_input((Query *) sl->subselect, outer->first, &keys, &inner) == NULL)
		return false;
	if (sl->subLinkType == EXISTS_SUBLINK)
		return correlated_by_key(outer, &inner);
	/* NOT IN sees a NULL of any shard group: not split */
	if (negated || sl->subLinkType != ANY_SUBLINK || !IsA(sl->testexpr, OpExpr))
		return false;
	test = (OpExpr *) sl->testexpr;
	p = (Param *) strip_implicit_coercions(lsecond(test->args));
	return list_length(test->args) == 2 && key_var(outer, linitial(test->args), &ta) != 0 &&
		IsA(p, Param) && p->paramkind == PARAM_SUBLINK && p->paramid == 1 &&
		bms_is_member(1, keys) && p->paramtype == ta &&
		lookup_type_cache(ta, TYPECACHE_EQ_OPR)->eq_opr == test->opno;
}

/*
 * join_sublinks says whether a sublink sits in a JOIN ... ON clause or a
 * nested FROM list's quals (anywhere but the top-level WHERE).
 */
static bool
join_sublinks(Node *node, bool top)
{
	ListCell   *lc;

	if (IsA(node, JoinExpr))
		return checkExprHasSubLink(((JoinExpr *) node)->quals) ||
			join_sublinks(((JoinExpr *) node)->larg, false) ||
			join_sublinks(((JoinExpr *) node)->rarg, false);
	if (!IsA(node, FromExpr))
		return false;
	if (!top && checkExprHasSubLink(((FromExpr *) node)->quals))
		return true;
	foreach(lc, ((FromExpr *) node)->fromlist)
		if (join_sublinks(lfirst(lc), false))
			return true;
	return false;
}

/*
 * sublinks_ok says whether the sublinks of a query level are all WHERE
 * conjuncts that sublink_ok accepts.
 */
static bool
sublinks_ok(JoinShape *js)
{
	Query	   *q = js->query;
	ListCell   *lc;

	if (!q->hasSubLinks)
		return true;
	if (checkExprHasSubLink((Node *) q->targetList) || checkExprHasSubLink(q->havingQual) ||
		join_sublinks((Node *) q->jointree, true))
		return false;
	foreach(lc, make_ands_implicit((Expr *) q->jointree->quals))
		if (checkExprHasSubLink(lfirst(lc)) && !sublink_ok(js, lfirst(lc)))
			return false;
	return true;
}

/*
 * subquery_input analyzes a subquery in FROM: its table (any of its
 * distributed inputs: they are all colocated) and which of its output
 * columns are distribution columns; NULL when it does not qualify.
 */
static MyceliumDistTable *
subquery_input(Query *sq, MyceliumDistTable **first, Bitmapset **keys, JoinShape *out)
{
	JoinShape	inner;
	bool		grouped_by_key = false;
	ListCell   *lc;

	if (!plain_select(sq) || sq->limitCount || sq->limitOffset || sq->distinctClause ||
		sq->hasWindowFuncs || sq->hasTargetSRFs || !analyze_level(sq, 1, first, &inner))
		return NULL;
	if (out)
		*out = inner;
	*keys = NULL;
	foreach(lc, sq->targetList)
	{
		TargetEntry *tle = lfirst(lc);
		Oid			type;
		bool		key = key_var(&inner, (Node *) tle->expr, &type) != 0;

		if (key && !tle->resjunk)
			*keys = bms_add_member(*keys, tle->resno);
		if (key && tle->ressortgroupref != 0 &&
			get_sortgroupref_clause_noerr(tle->ressortgroupref, sq->groupClause) != NULL)
			grouped_by_key = true;
	}
	if ((sq->hasAggs || sq->groupClause != NIL) && !grouped_by_key)
		return NULL;
	return *first;
}

/*
 * classify fills the shape's per-input arrays from the range table;
 * false when some entry may not take part.
 */
static bool
classify(JoinShape *js, int min_rels)
{
	Query	   *q = js->query;
	int			nrels = 0;
	bool		any = false;
	ListCell   *lc;

	foreach(lc, q->rtable)
	{
		RangeTblEntry *rte = lfirst(lc);
		Index		rti = foreach_current_index(lc) + 1;
		MyceliumDistTable *t;

		if (rte->rtekind == RTE_JOIN)
			continue;
		nrels++;
		if (rte->rtekind == RTE_SUBQUERY && !rte->lateral && !rte->security_barrier)
		{
			if ((js->dist[rti] = subquery_input(rte->subquery, js->first, &js->keys[rti], NULL)) == NULL)
				return false;
			any = true;
			continue;
		}
		if (rte->rtekind != RTE_RELATION || rte->securityQuals != NIL || rte->tablesample != NULL)
			return false;
		if ((t = MyceliumGetDistTable(rte->relid)) == NULL)
			return false;
		if (t->method == MYCELIUM_DIST_REFERENCE)
			continue;
		if (t->method != MYCELIUM_DIST_HASH)
			return false;
		if (*js->first == NULL)
			*js->first = t;
		else if (!same_group(t, *js->first))
			return false;
		js->dist[rti] = t;
		js->keys[rti] = bms_make_singleton(t->dist_attno);
		any = true;
	}
	return any && nrels >= min_rels;
}

/*
 * analyze_level checks one query level's FROM clause (and its subqueries).
 */
static bool
analyze_level(Query *q, int min_rels, MyceliumDistTable **first, JoinShape *js)
{
	int			n = list_length(q->rtable);
	Relids		rels;
	int			root = -1;
	int			i;

	js->query = q;
	js->first = first;
	js->failed = false;
	js->dist = palloc0(sizeof(MyceliumDistTable *) * (n + 1));
	js->keys = palloc0(sizeof(Bitmapset *) * (n + 1));
	js->group = palloc(sizeof(int) * (n + 1));
	for (i = 0; i <= n; i++)
		js->group[i] = i;
	if (!classify(js, min_rels))
		return false;
	if (!walk_join(js, (Node *) q->jointree, &rels) || js->failed || !sublinks_ok(js))
		return false;
	for (i = 1; i <= n; i++)
	{
		if (js->dist[i] == NULL)
			continue;
		if (root < 0)
			root = find_root(js->group, i);
		else if (find_root(js->group, i) != root)
			return false;
	}
	return true;
}

/*
 * is_value says whether an expression is a constant, a parameter, or an
 * ARRAY[...] of them (IN (1, 2) before constant folding).
 */
static bool
is_value(Node *node)
{
	ListCell   *lc;

	if (IsA(node, Const))
		return true;
	if (IsA(node, Param))
		return ((Param *) node)->paramkind == PARAM_EXTERN;
	if (!IsA(node, ArrayExpr))
		return false;
	foreach(lc, ((ArrayExpr *) node)->elements)
		if (!is_value(strip_implicit_coercions(lfirst(lc))))
			return false;
	return true;
}

/*
 * key_filter_walker looks, at every query level, for a condition that fixes
 * a distributed table's distribution column (= or IN with a constant or a
 * parameter).
 */
static bool
key_filter_walker(Node *node, Query *level)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
	{
		Query	   *q = (Query *) node;

		return query_tree_walker(q, key_filter_walker, q, 0);
	}
	if ((IsA(node, OpExpr) || IsA(node, ScalarArrayOpExpr)) && level != NULL)
	{
		List	   *args = IsA(node, OpExpr) ? ((OpExpr *) node)->args :
			((ScalarArrayOpExpr *) node)->args;
		ListCell   *lc;
		bool		key = false;
		bool		value = false;

		foreach(lc, args)
		{
			Node	   *arg = strip_implicit_coercions(lfirst(lc));

			if (IsA(arg, Var) && ((Var *) arg)->varlevelsup == 0 &&
				((Var *) arg)->varno <= list_length(level->rtable))
			{
				RangeTblEntry *rte = rt_fetch(((Var *) arg)->varno, level->rtable);
				MyceliumDistTable *t = rte->rtekind == RTE_RELATION ?
					MyceliumGetDistTable(rte->relid) : NULL;

				key |= t != NULL && t->method != MYCELIUM_DIST_REFERENCE &&
					((Var *) arg)->varattno == t->dist_attno;
			}
			else if (is_value(arg))
				value = true;
		}
		if (key && value)
			return true;
	}
	return expression_tree_walker(node, key_filter_walker, level);
}

/*
 * RouterHasKeyFilter says whether a query fixes some distributed table's
 * distribution column anywhere: then the per-table scans prune it (and the
 * planner carries the value across joins), which beats running a join on
 * every shard group.
 */
bool
RouterHasKeyFilter(Query *q)
{
	return key_filter_walker((Node *) q, NULL);
}

/*
 * RouterColocatedJoin says whether every row of a SELECT's FROM clause
 * (two or more inputs, or one and a sublink) comes from one shard group; *prune_rtis gets the
 * range table indexes of its distributed tables at this level, in range
 * table order (the first references RouterMarkDistRtes numbers).
 */
bool
RouterColocatedJoin(Query *q, List **prune_rtis)
{
	MyceliumDistTable *first = NULL;
	JoinShape	js;
	int			i;

	/* one table with a sublink is a join too; one table alone is a scan */
	if (!plain_select(q) || !analyze_level(q, q->hasSubLinks ? 1 : 2, &first, &js))
		return false;
	*prune_rtis = NIL;
	for (i = 1; i <= list_length(q->rtable); i++)
		if (js.dist[i] != NULL && rt_fetch(i, q->rtable)->rtekind == RTE_RELATION)
			*prune_rtis = lappend_int(*prune_rtis, i);
	return true;
}
