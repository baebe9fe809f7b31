/*-------------------------------------------------------------------------
 *
 * upper.c
 *	  Aggregate, LIMIT and OFFSET pushdown for SQLite foreign scans.
 *
 * GROUP_AGG stage: count(*), count(col), sum of int2/int4 columns, and
 * min/max of integer, float8 and (under the "C" collation) text columns,
 * grouped by plain columns, over a foreign table whose clauses all run in
 * SQLite, become one SQLite query.  sum(int8), sum(float8) and avg stay
 * local: SQLite raises an error on int64 overflow where PostgreSQL returns
 * a numeric, sums floats in its own way and averages in double precision
 * where PostgreSQL answers an exact numeric.  HAVING, DISTINCT, ORDER BY
 * or FILTER in an aggregate, and grouping sets also stay local.
 *
 * The planner offers the post-scan stages to the wrapper.  At the ORDERED
 * stage the wrapper only notes which foreign table the ordered relation
 * sorts (the sort itself is pushed by the sorted path of scan.c); at the
 * FINAL stage, when the query is a plain scan of one foreign table whose
 * clauses all run in SQLite, and LIMIT and OFFSET are constants, a path
 * that does the whole query in SQLite replaces the local Limit node.  With
 * a local filter, a set-returning target list, row locking or WITH TIES,
 * the limit stays local.
 *
 * IDENTIFICATION
 *	  src/sqlite/upper.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_aggregate.h"
#include "catalog/pg_type.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "utils/fmgroids.h"
#include "utils/lsyscache.h"
#include "utils/pg_locale.h"
#include "utils/selfuncs.h"
#include "nodes/makefuncs.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/planmain.h"

#include "sqlite/sqlite_fdw.h"

/* what an upper relation of ours knows (output_rel->fdw_private) */
typedef struct SqliteUpperInfo
{
	MyceliumSqliteRelInfo base;	/* must be first: read as a RelInfo */
	UpperRelationKind stage;
	RelOptInfo *outerrel;		/* foreign table below, NULL if none */
} SqliteUpperInfo;

/*
 * limit_value reads a LIMIT or OFFSET expression: absent or NULL gives
 * *value = -1; false if it is not a non-negative int8 constant.
 */
static bool
limit_value(Node *node, int64 *value)
{
	Const	   *c = (Const *) node;

	*value = -1;
	if (node == NULL)
		return true;
	if (!IsA(node, Const) || c->consttype != INT8OID)
		return false;
	if (c->constisnull)
		return true;
	*value = DatumGetInt64(c->constvalue);
	return *value >= 0;
}

/*
 * add_final_path adds a path that runs the scan, its order and its limit
 * in SQLite.
 */
static void
add_final_path(PlannerInfo *root, RelOptInfo *input_rel,
			   RelOptInfo *final_rel, FinalPathExtraData *extra)
{
	Query	   *parse = root->parse;
	RelOptInfo *base = input_rel;
	List	   *pathkeys = NIL;
	MyceliumSqliteRelInfo *fpinfo;
	int64		count,
				offset;
	Path	   *cheapest = NULL;
	ListCell   *lc;
	double		rows,
				frac;
	char	   *suffix;

	if (!extra->limit_needed || parse->hasTargetSRFs || parse->rowMarks ||
		parse->limitOption == LIMIT_OPTION_WITH_TIES)
		return;
	if (input_rel->reloptkind == RELOPT_UPPER_REL)
	{
		SqliteUpperInfo *info = input_rel->fdw_private;

		if (info == NULL || info->stage != UPPERREL_ORDERED || info->outerrel == NULL)
			return;
		base = info->outerrel;
		pathkeys = root->sort_pathkeys;
		if (!MyceliumSqlitePathkeysShippable(root, base, pathkeys))
			return;
	}
	else if (input_rel->reloptkind != RELOPT_BASEREL)
		return;
	fpinfo = base->fdw_private;
	if (fpinfo == NULL || fpinfo->local_conds != NIL || base->lateral_relids)
		return;
	if (!limit_value(parse->limitCount, &count) ||
		!limit_value(parse->limitOffset, &offset))
		return;

	foreach(lc, base->pathlist)
	{
		Path	   *p = lfirst(lc);

		if (p->param_info == NULL && pathkeys_contained_in(pathkeys, p->pathkeys) &&
			(cheapest == NULL || p->total_cost < cheapest->total_cost))
			cheapest = p;
	}
	if (cheapest == NULL)
		return;

	rows = extra->count_est > 0 ? Min(extra->count_est, base->rows) : base->rows;
	frac = base->rows > 0 ? Min(1.0, (rows + Max(offset, 0)) / base->rows) : 1.0;
	suffix = psprintf(" LIMIT " INT64_FORMAT, count);
	if (offset > 0)
		suffix = psprintf("%s OFFSET " INT64_FORMAT, suffix, offset);
	add_path(final_rel, (Path *)
			 create_foreign_upper_path(root, base,
									   root->upper_targets[UPPERREL_FINAL],
									   rows, cheapest->startup_cost,
									   cheapest->startup_cost +
									   (cheapest->total_cost - cheapest->startup_cost) *
									   frac * 0.9,
									   pathkeys, NULL,
									   list_make1(makeString(suffix))));
}

/*
 * own_column returns the attribute number of a Var of the foreign table,
 * 0 for anything else.
 */
static AttrNumber
own_column(Expr *expr, RelOptInfo *base)
{
	Var		   *var;

	while (expr && IsA(expr, RelabelType))
		expr = ((RelabelType *) expr)->arg;
	if (expr == NULL || !IsA(expr, Var))
		return 0;
	var = (Var *) expr;
	if (var->varno != base->relid || var->varlevelsup != 0 || var->varattno <= 0)
		return 0;
	return var->varattno;
}

/*
 * agg_name returns the SQLite function computing an aggregate as
 * PostgreSQL would for the column it reads, or NULL.
 */
static const char *
agg_name(Aggref *agg, RelOptInfo *base)
{
	MyceliumSqliteRelInfo *fpinfo = base->fdw_private;
	AttrNumber	attnum;
	char		cls;

	if (agg->aggdistinct || agg->aggorder || agg->aggfilter ||
		agg->aggkind != AGGKIND_NORMAL || agg->aggsplit != AGGSPLIT_SIMPLE ||
		agg->agglevelsup != 0 || agg->aggvariadic)
		return NULL;
	if (agg->aggfnoid == F_COUNT_)
		return "count";
	if (list_length(agg->args) != 1)
		return NULL;
	attnum = own_column(((TargetEntry *) linitial(agg->args))->expr, base);
	if (attnum == 0)
		return NULL;
	cls = fpinfo->colclass[attnum - 1];
	switch (agg->aggfnoid)
	{
		case F_COUNT_ANY:
			return "count";
		case F_SUM_INT2:
		case F_SUM_INT4:
			return cls == COLCLASS_INT ? "sum" : NULL;
		case F_MIN_INT2:
		case F_MIN_INT4:
		case F_MIN_INT8:
			return cls == COLCLASS_INT ? "min" : NULL;
		case F_MAX_INT2:
		case F_MAX_INT4:
		case F_MAX_INT8:
			return cls == COLCLASS_INT ? "max" : NULL;
		case F_MIN_FLOAT8:
			return cls == COLCLASS_REAL ? "min" : NULL;
		case F_MAX_FLOAT8:
			return cls == COLCLASS_REAL ? "max" : NULL;
		case F_MIN_TEXT:
		case F_MAX_TEXT:
			if (cls != COLCLASS_TEXT || !lc_collate_is_c(agg->inputcollid))
				return NULL;
			return agg->aggfnoid == F_MIN_TEXT ? "min" : "max";
		default:
			return NULL;
	}
}

/*
 * add_agg_path adds a path computing the grouping and aggregates of a
 * query over one foreign table in SQLite.
 */
static void
add_agg_path(PlannerInfo *root, RelOptInfo *input_rel,
			 RelOptInfo *grouped_rel, GroupPathExtraData *extra)
{
	Query	   *parse = root->parse;
	MyceliumSqliteRelInfo *fpinfo = input_rel->fdw_private;
	SqliteUpperInfo *info = grouped_rel->fdw_private;
	PathTarget *target = root->upper_targets[UPPERREL_GROUP_AGG];
	List	   *group_exprs = NIL;
	ListCell   *lc;
	int			i = 0;
	double		rows;

	if (input_rel->reloptkind != RELOPT_BASEREL || fpinfo == NULL ||
		fpinfo->local_conds != NIL || input_rel->lateral_relids ||
		parse->groupingSets || extra->havingQual ||
		extra->patype != PARTITIONWISE_AGGREGATE_NONE)
		return;
	foreach(lc, target->exprs)
	{
		Expr	   *e = lfirst(lc);
		Index		sgref = get_pathtarget_sortgroupref(target, i++);
		AttrNumber	attnum;

		if (sgref && get_sortgroupref_clause_noerr(sgref, parse->groupClause))
		{
			attnum = own_column(e, input_rel);
			if (attnum == 0 || fpinfo->colclass[attnum - 1] == COLCLASS_NONE ||
				fpinfo->colclass[attnum - 1] != MyceliumSqliteTypeClass(exprType((Node *) e)))
				return;
			/* text groups by byte equality only under a deterministic collation */
			if (OidIsValid(exprCollation((Node *) e)) &&
				!get_collation_isdeterministic(exprCollation((Node *) e)))
				return;
			group_exprs = lappend(group_exprs, e);
		}
		else if (!IsA(e, Aggref) || agg_name((Aggref *) e, input_rel) == NULL)
			return;
	}
	if (list_length(group_exprs) != list_length(parse->groupClause))
		return;

	rows = group_exprs ? estimate_num_groups(root, group_exprs, input_rel->rows,
											 NULL, NULL) : 1;
	info->outerrel = input_rel;
	add_path(grouped_rel, (Path *)
			 create_foreign_upper_path(root, grouped_rel, target, rows, 1.0,
									   1.0 + fpinfo->tuples * 0.005 +
									   rows * cpu_tuple_cost,
									   NIL, NULL, NIL));
}

/*
 * MyceliumSqliteGetAggPlan builds the ForeignScan of an aggregate path:
 * no scan relation, the grouped target list as the scan tuple.
 */
ForeignScan *
MyceliumSqliteGetAggPlan(PlannerInfo *root, RelOptInfo *grouped_rel,
						 ForeignPath *best_path, List *tlist)
{
	SqliteUpperInfo *info = grouped_rel->fdw_private;
	RelOptInfo *base = info->outerrel;
	MyceliumSqliteRelInfo *fpinfo = base->fdw_private;
	PathTarget *target = best_path->path.pathtarget;
	StringInfoData sql;
	List	   *scan_tlist = NIL;
	List	   *retrieved = NIL;
	List	   *labels = NIL;
	List	   *params = NIL;
	List	   *groups = NIL;
	List	   *relnames;
	ListCell   *lc;
	int			i = 0;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	foreach(lc, target->exprs)
	{
		Expr	   *e = lfirst(lc);
		AttrNumber	attnum;

		if (i > 0)
			appendStringInfoString(&sql, ", ");
		if (IsA(e, Aggref))
		{
			Aggref	   *agg = (Aggref *) e;

			appendStringInfo(&sql, "%s(", agg_name(agg, base));
			if (agg->aggfnoid == F_COUNT_)
				appendStringInfoChar(&sql, '*');
			else
				MyceliumSqliteQuoteIdent(&sql, fpinfo->colnames[own_column(((TargetEntry *) linitial(agg->args))->expr, base) - 1]);
			appendStringInfoChar(&sql, ')');
			labels = lappend(labels, makeString(get_func_name(agg->aggfnoid)));
		}
		else
		{
			attnum = own_column(e, base);
			MyceliumSqliteQuoteIdent(&sql, fpinfo->colnames[attnum - 1]);
			groups = lappend_int(groups, attnum);
			labels = lappend(labels, makeString(get_attname(fpinfo->relid, attnum, false)));
		}
		scan_tlist = lappend(scan_tlist, makeTargetEntry(e, ++i, NULL, false));
		retrieved = lappend_int(retrieved, i);
	}
	appendStringInfoString(&sql, " FROM ");
	MyceliumSqliteQuoteIdent(&sql, fpinfo->table);
	MyceliumSqliteAppendWhere(&sql, base, fpinfo->remote_conds, &params, false);
	foreach(lc, groups)
	{
		appendStringInfoString(&sql, foreach_current_index(lc) == 0 ? " GROUP BY " : ", ");
		MyceliumSqliteQuoteIdent(&sql, fpinfo->colnames[lfirst_int(lc) - 1]);
	}
	relnames = list_make1(makeString(get_rel_name(fpinfo->relid)));
	while (list_length(relnames) < list_length(labels))
		relnames = lappend(relnames, linitial(relnames));
	return make_foreignscan(tlist, NIL, 0, params,
							list_make5(makeString(sql.data), retrieved,
									   makeBoolean(false), relnames, labels),
							scan_tlist, NIL, NULL);
}

/*
 * MyceliumSqliteGetForeignUpperPaths is the GetForeignUpperPaths callback.
 */
void
MyceliumSqliteGetForeignUpperPaths(PlannerInfo *root, UpperRelationKind stage,
								   RelOptInfo *input_rel, RelOptInfo *output_rel,
								   void *extra)
{
	SqliteUpperInfo *info;

	if ((stage != UPPERREL_ORDERED && stage != UPPERREL_FINAL &&
		 stage != UPPERREL_GROUP_AGG) ||
		output_rel->fdw_private != NULL)
		return;
	info = palloc0(sizeof(SqliteUpperInfo));
	info->stage = stage;
	output_rel->fdw_private = info;
	if (stage == UPPERREL_ORDERED)
	{
		if (input_rel->reloptkind == RELOPT_BASEREL && input_rel->fdw_private)
			info->outerrel = input_rel;
	}
	else if (stage == UPPERREL_GROUP_AGG)
		add_agg_path(root, input_rel, output_rel, (GroupPathExtraData *) extra);
	else
		add_final_path(root, input_rel, output_rel, (FinalPathExtraData *) extra);
}
