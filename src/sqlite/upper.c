/*-------------------------------------------------------------------------
 *
 * upper.c
 *	  LIMIT and OFFSET pushdown for SQLite foreign scans.
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

#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"

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
 * MyceliumSqliteGetForeignUpperPaths is the GetForeignUpperPaths callback.
 */
void
MyceliumSqliteGetForeignUpperPaths(PlannerInfo *root, UpperRelationKind stage,
								   RelOptInfo *input_rel, RelOptInfo *output_rel,
								   void *extra)
{
	SqliteUpperInfo *info;

	if ((stage != UPPERREL_ORDERED && stage != UPPERREL_FINAL) ||
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
	else
		add_final_path(root, input_rel, output_rel, (FinalPathExtraData *) extra);
}
