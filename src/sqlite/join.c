/*-------------------------------------------------------------------------
 *
 * join.c
 *	  Inner joins of two SQLite foreign tables of the same server, run as
 *	  one SQLite query.
 *
 * A join is sent to SQLite when it is an inner join of two foreign tables
 * (not of a join and a table) of one server, in a plain SELECT without row
 * locks, every join clause is one SQLite answers as PostgreSQL would (see
 * deparse.c), and neither table has a clause that must be evaluated
 * locally.  SQLite then joins with its primary keys and indexes, or with
 * an automatic index it builds for the query.  Anything else is joined
 * locally, where parameterized paths (scan.c) still give index lookups.
 *
 * IDENTIFICATION
 *	  src/sqlite/join.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nodes/makefuncs.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/planmain.h"
#include "parser/parsetree.h"
#include "utils/lsyscache.h"

#include "sqlite/sqlite_fdw.h"

/* what a join relation of ours knows (joinrel->fdw_private) */
typedef struct SqliteJoinInfo
{
	RelOptInfo *outerrel;
	RelOptInfo *innerrel;
	List	   *join_conds;		/* RestrictInfos, all shippable */
	bool		pushable;
} SqliteJoinInfo;

/*
 * join_vars returns the Vars of the join's target list, or NIL with
 * *ok = false if it holds anything else (placeholders, whole rows).
 */
static List *
join_vars(RelOptInfo *joinrel, RelOptInfo *outerrel, RelOptInfo *innerrel,
		  bool *ok)
{
	List	   *vars = NIL;
	ListCell   *lc;

	*ok = true;
	foreach(lc, joinrel->reltarget->exprs)
	{
		Var		   *var = lfirst(lc);

		if (!IsA(var, Var) || var->varattno <= 0 || var->varlevelsup != 0 ||
			(var->varno != outerrel->relid && var->varno != innerrel->relid))
		{
			*ok = false;
			return NIL;
		}
		vars = lappend(vars, var);
	}
	return vars;
}

/*
 * MyceliumSqliteGetForeignJoinPaths offers a path running the join in
 * SQLite when it qualifies (see the file header).
 */
void
MyceliumSqliteGetForeignJoinPaths(PlannerInfo *root, RelOptInfo *joinrel,
								  RelOptInfo *outerrel, RelOptInfo *innerrel,
								  JoinType jointype, JoinPathExtraData *extra)
{
	MyceliumSqliteRelInfo *o = outerrel->fdw_private;
	MyceliumSqliteRelInfo *i = innerrel->fdw_private;
	SqliteJoinInfo *info;
	ListCell   *lc;
	bool		ok;
	double		rows;

	if (joinrel->fdw_private != NULL)
		return;
	info = palloc0(sizeof(SqliteJoinInfo));
	joinrel->fdw_private = info;
	if (jointype != JOIN_INNER || root->parse->commandType != CMD_SELECT ||
		root->rowMarks != NIL || outerrel->reloptkind != RELOPT_BASEREL ||
		innerrel->reloptkind != RELOPT_BASEREL || o == NULL || i == NULL ||
		o->local_conds != NIL || i->local_conds != NIL ||
		!bms_is_empty(joinrel->lateral_relids))
		return;
	foreach(lc, extra->restrictlist)
	{
		RestrictInfo *ri = lfirst(lc);

		if (ri->pseudoconstant ||
			!MyceliumSqliteIsJoinShippable(outerrel, innerrel, ri->clause))
			return;
		info->join_conds = lappend(info->join_conds, ri);
	}
	(void) join_vars(joinrel, outerrel, innerrel, &ok);
	if (info->join_conds == NIL || !ok)
		return;
	info->outerrel = outerrel;
	info->innerrel = innerrel;
	info->pushable = true;

	rows = joinrel->rows;
	add_path(joinrel, (Path *)
			 create_foreign_join_path(root, joinrel, NULL, rows, 1.0,
									  1.0 + (o->tuples + i->tuples) * 0.005 +
									  rows * cpu_tuple_cost,
									  NIL, NULL, NULL, NIL));
}

/*
 * MyceliumSqliteGetJoinPlan builds the ForeignScan of a join path: no scan
 * relation, the join's Vars as the scan tuple.
 */
ForeignScan *
MyceliumSqliteGetJoinPlan(PlannerInfo *root, RelOptInfo *joinrel,
						  ForeignPath *best_path, List *tlist)
{
	SqliteJoinInfo *info = joinrel->fdw_private;
	StringInfoData sql;
	List	   *vars;
	List	   *scan_tlist = NIL;
	List	   *retrieved = NIL;
	List	   *relnames = NIL;
	List	   *labels = NIL;
	List	   *params = NIL;
	ListCell   *lc;
	bool		ok;

	vars = join_vars(joinrel, info->outerrel, info->innerrel, &ok);
	foreach(lc, vars)
	{
		Var		   *var = lfirst(lc);
		Oid			relid = planner_rt_fetch(var->varno, root)->relid;

		scan_tlist = lappend(scan_tlist,
							 makeTargetEntry((Expr *) var, list_length(scan_tlist) + 1,
											 NULL, false));
		retrieved = lappend_int(retrieved, list_length(scan_tlist));
		relnames = lappend(relnames, makeString(get_rel_name(relid)));
		labels = lappend(labels, makeString(get_attname(relid, var->varattno, false)));
	}
	initStringInfo(&sql);
	MyceliumSqliteDeparseJoin(&sql, info->outerrel, info->innerrel,
							  info->join_conds, vars, &params);
	return make_foreignscan(tlist, NIL, 0, params,
							list_make5(makeString(sql.data), retrieved,
									   makeBoolean(false), relnames, labels),
							scan_tlist, NIL, NULL);
}
