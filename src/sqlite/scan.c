/*-------------------------------------------------------------------------
 *
 * scan.c
 *	  Handler of the mycelium_sqlite foreign data wrapper: planning and
 *	  execution of foreign scans.
 *
 * Planning learns, per column, what SQLite stores (declared type, affinity
 * and collation, from sqlite3_table_column_metadata) so deparse.c can send
 * only the clauses SQLite answers as PostgreSQL would.  Row counts come
 * from ANALYZE, else from max(rowid), which SQLite finds in O(log n).
 * Besides the plain path, a path sorted by SQLite is offered when the query
 * order can be shipped, and a parameterized path for each set of join
 * clauses that SQLite can evaluate: a small local table joined to a big
 * foreign one then becomes a nested loop of index lookups in SQLite.
 * SQLite's own plan ("EXPLAIN QUERY PLAN") tells whether a lookup uses an
 * index, and the costs follow.
 *
 * Execution runs one cached prepared statement per scan, binds the
 * parameters at each (re)scan and converts each row into the scan slot in
 * a per-tuple memory context that is reset for every row.
 *
 * IDENTIFICATION
 *	  src/sqlite/scan.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/sysattr.h"
#include "access/table.h"
#include "access/tupdesc.h"
#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/cost.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "optimizer/paths.h"
#include "optimizer/planmain.h"
#include "optimizer/restrictinfo.h"
#include "utils/formatting.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/tuplestore.h"

#include "sqlite/sqlite_fdw.h"

PG_FUNCTION_INFO_V1(mycelium_sqlite_fdw_handler);

/* cost of starting a SQLite statement, and of visiting one row in SQLite */
#define SQLITE_STARTUP_COST		1.0
#define SQLITE_ROW_COST			0.005

/* execution state of a foreign scan */
typedef struct SqliteScanState
{
	MyceliumSqliteConn *conn;
	sqlite3_stmt *stmt;
	char	   *sql;
	List	   *retrieved_attrs;
	bool		with_rowid;
	bool		bound;			/* parameters bound for this (re)scan */
	List	   *param_exprs;	/* ExprStates of the ?N parameters */
	Oid		   *param_types;
	FmgrInfo   *param_out;
	MyceliumSqliteColumnConv *convs;	/* by attnum - 1 */
	MemoryContext tuple_cxt;	/* reset for every row */
	bool		materialize;	/* read all rows before returning any */
	Tuplestorestate *store;		/* ... kept here, with the rowid last */
	TupleTableSlot *store_slot;
} SqliteScanState;

/*
 * affinity_class maps a SQLite declared type and a PostgreSQL type to the
 * comparison class of the column (see sqlite_fdw.h), using SQLite's
 * affinity rules.
 */
static char
affinity_class(const char *decl, const char *coll, Oid pgtype)
{
	char	   *d = asc_toupper(decl ? decl : "", strlen(decl ? decl : ""));

	if (strstr(d, "INT"))
		return (pgtype == INT2OID || pgtype == INT4OID || pgtype == INT8OID) ?
			COLCLASS_INT : COLCLASS_NONE;
	if (strstr(d, "CHAR") || strstr(d, "CLOB") || strstr(d, "TEXT"))
		return ((pgtype == TEXTOID || pgtype == VARCHAROID) && coll &&
				pg_strcasecmp(coll, "BINARY") == 0) ? COLCLASS_TEXT : COLCLASS_NONE;
	if (d[0] == '\0' || strstr(d, "BLOB"))
		return COLCLASS_NONE;
	if (strstr(d, "REAL") || strstr(d, "FLOA") || strstr(d, "DOUB"))
		return pgtype == FLOAT8OID ? COLCLASS_REAL : COLCLASS_NONE;
	/* NUMERIC affinity */
	return (pgtype == INT2OID || pgtype == INT4OID || pgtype == INT8OID) ?
		COLCLASS_INT : COLCLASS_NONE;
}

/*
 * load_columns fills the column names and comparison classes of fpinfo.
 */
static void
load_columns(MyceliumSqliteRelInfo *fpinfo, MyceliumSqliteConn *conn)
{
	Relation	rel = table_open(fpinfo->relid, NoLock);
	TupleDesc	tupdesc = RelationGetDescr(rel);
	int			i;

	fpinfo->natts = tupdesc->natts;
	fpinfo->colnames = palloc0(sizeof(char *) * Max(1, tupdesc->natts));
	fpinfo->colclass = palloc0(Max(1, tupdesc->natts));
	for (i = 0; i < tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i);
		const char *decl = NULL;
		const char *coll = NULL;
		int			notnull,
					pk,
					autoinc;

		if (att->attisdropped)
			continue;
		fpinfo->colnames[i] = MyceliumSqliteColumnName(fpinfo->relid, i + 1);
		if (sqlite3_table_column_metadata(conn->db, NULL, fpinfo->table,
										  fpinfo->colnames[i], &decl, &coll,
										  &notnull, &pk, &autoinc) == SQLITE_OK)
			fpinfo->colclass[i] = affinity_class(decl, coll, att->atttypid);
	}
	table_close(rel, NoLock);
}

/*
 * estimate_tuples guesses the size of the SQLite table from max(rowid);
 * 1000 when the table has no rowid or cannot be read now.
 */
static double
estimate_tuples(MyceliumSqliteConn *conn, const char *table)
{
	StringInfoData sql;
	sqlite3_stmt *stmt;
	double		result = 1000;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT max(rowid) FROM ");
	MyceliumSqliteQuoteIdent(&sql, table);
	stmt = MyceliumSqliteTryAcquireStmt(conn, sql.data);
	if (stmt == NULL)
		return result;
	if (sqlite3_step(stmt) == SQLITE_ROW &&
		sqlite3_column_type(stmt, 0) == SQLITE_INTEGER)
		result = Max(1, (double) sqlite3_column_int64(stmt, 0));
	MyceliumSqliteReleaseStmt(conn, stmt);
	return result;
}

/*
 * uses_index asks SQLite whether its plan of a query shape searches an
 * index (or the rowid) rather than scanning the table.  The shape has
 * "?" for every value, so the prepared EXPLAIN comes from the cache.
 */
static bool
uses_index(MyceliumSqliteConn *conn, const char *shape)
{
	char	   *sql = psprintf("EXPLAIN QUERY PLAN %s", shape);
	sqlite3_stmt *stmt = MyceliumSqliteTryAcquireStmt(conn, sql);
	bool		search = false;

	if (stmt == NULL)
		return false;
	while (sqlite3_step(stmt) == SQLITE_ROW)
	{
		const char *detail = (const char *) sqlite3_column_text(stmt, 3);

		if (detail && strncmp(detail, "SEARCH", 6) == 0)
			search = true;
		else if (detail && strncmp(detail, "SCAN", 4) == 0)
		{
			search = false;
			break;
		}
	}
	MyceliumSqliteReleaseStmt(conn, stmt);
	return search;
}

/*
 * estimate_cost costs a scan returning rows rows with the given remote
 * clauses: a full table scan unless SQLite searches an index.
 */
static void
estimate_cost(RelOptInfo *baserel, List *remote_conds, double rows,
			  Cost *startup, Cost *total)
{
	MyceliumSqliteRelInfo *fpinfo = baserel->fdw_private;
	double		visited = fpinfo->tuples;

	if (remote_conds != NIL)
	{
		StringInfoData sql;
		MyceliumSqliteConn *conn = MyceliumSqliteGetConnection(fpinfo->server, false);

		initStringInfo(&sql);
		MyceliumSqliteDeparseShape(&sql, baserel, remote_conds);
		if (uses_index(conn, sql.data))
			visited = rows + log2(fpinfo->tuples + 1);
	}
	*startup = SQLITE_STARTUP_COST;
	*total = *startup + visited * SQLITE_ROW_COST +
		rows * (cpu_tuple_cost + baserel->reltarget->cost.per_tuple);
}

/*
 * sqliteGetForeignRelSize sets up the planner state and the row estimate.
 */
static void
sqliteGetForeignRelSize(PlannerInfo *root, RelOptInfo *baserel,
						Oid foreigntableid)
{
	MyceliumSqliteRelInfo *fpinfo = palloc0(sizeof(MyceliumSqliteRelInfo));
	MyceliumSqliteConn *conn;
	ListCell   *lc;
	Selectivity sel;

	baserel->fdw_private = fpinfo;
	fpinfo->relid = foreigntableid;
	fpinfo->server = GetForeignServer(GetForeignTable(foreigntableid)->serverid);
	fpinfo->table = MyceliumSqliteTableName(foreigntableid);
	conn = MyceliumSqliteGetConnection(fpinfo->server, false);
	load_columns(fpinfo, conn);

	foreach(lc, baserel->baserestrictinfo)
	{
		RestrictInfo *ri = lfirst(lc);

		if (MyceliumSqliteIsShippable(baserel, ri->clause))
			fpinfo->remote_conds = lappend(fpinfo->remote_conds, ri);
		else
			fpinfo->local_conds = lappend(fpinfo->local_conds, ri);
	}
	pull_varattnos((Node *) baserel->reltarget->exprs, baserel->relid,
				   &fpinfo->attrs_used);
	foreach(lc, fpinfo->local_conds)
		pull_varattnos((Node *) ((RestrictInfo *) lfirst(lc))->clause,
					   baserel->relid, &fpinfo->attrs_used);

	fpinfo->tuples = baserel->tuples > 0 ? baserel->tuples :
		estimate_tuples(conn, fpinfo->table);
	baserel->tuples = fpinfo->tuples;
	sel = clauselist_selectivity(root, extract_actual_clauses(baserel->baserestrictinfo, false),
								 baserel->relid, JOIN_INNER, NULL);
	baserel->rows = clamp_row_est(fpinfo->tuples * sel);
}

/* state of the search for equivalence classes of the foreign table */
typedef struct EcMatchState
{
	Expr	   *current;		/* Var being matched */
	List	   *already_used;	/* Vars done */
} EcMatchState;

/*
 * ec_member_matches picks one Var of the foreign table at a time for
 * generate_implied_equalities_for_column.
 */
static bool
ec_member_matches(PlannerInfo *root, RelOptInfo *rel, EquivalenceClass *ec,
				  EquivalenceMember *em, void *arg)
{
	EcMatchState *state = arg;
	Expr	   *expr = em->em_expr;

	if (!IsA(expr, Var) || ((Var *) expr)->varno != rel->relid ||
		list_member(state->already_used, expr))
		return false;
	if (state->current)
		return equal(expr, state->current);
	state->current = expr;
	return true;
}

/*
 * join_clauses lists the join clauses SQLite could evaluate with outer
 * values as parameters: movable clauses of joininfo and equalities implied
 * by equivalence classes.
 */
static List *
join_clauses(PlannerInfo *root, RelOptInfo *baserel)
{
	List	   *result = NIL;
	ListCell   *lc;
	EcMatchState state;

	foreach(lc, baserel->joininfo)
	{
		RestrictInfo *ri = lfirst(lc);

		if (join_clause_is_movable_to(ri, baserel) &&
			MyceliumSqliteIsShippable(baserel, ri->clause))
			result = lappend(result, ri);
	}
	if (!baserel->has_eclass_joins)
		return result;
	state.already_used = NIL;
	for (;;)
	{
		List	   *clauses;

		state.current = NULL;
		clauses = generate_implied_equalities_for_column(root, baserel,
														 ec_member_matches, &state,
														 baserel->lateral_referencers);
		if (state.current == NULL)
			break;
		state.already_used = lappend(state.already_used, state.current);
		foreach(lc, clauses)
		{
			RestrictInfo *ri = lfirst(lc);

			if (join_clause_is_movable_to(ri, baserel) &&
				MyceliumSqliteIsShippable(baserel, ri->clause))
				result = lappend(result, ri);
		}
	}
	return result;
}

/*
 * sqliteGetForeignPaths offers the plain path, a path sorted by SQLite for
 * the query's order, and parameterized paths for join clauses.
 */
static void
sqliteGetForeignPaths(PlannerInfo *root, RelOptInfo *baserel,
					  Oid foreigntableid)
{
	MyceliumSqliteRelInfo *fpinfo = baserel->fdw_private;
	Cost		startup,
				total;
	List	   *seen = NIL;
	ListCell   *lc;

	estimate_cost(baserel, fpinfo->remote_conds, baserel->rows, &startup, &total);
	add_path(baserel, (Path *)
			 create_foreignscan_path(root, baserel, NULL, baserel->rows,
									 startup, total, NIL,
									 baserel->lateral_relids, NULL, NIL));

	if (root->query_pathkeys &&
		MyceliumSqlitePathkeysShippable(root, baserel, root->query_pathkeys))
		add_path(baserel, (Path *)
				 create_foreignscan_path(root, baserel, NULL, baserel->rows,
										 startup,
										 total + baserel->rows * cpu_operator_cost *
										 log2(baserel->rows + 2),
										 root->query_pathkeys,
										 baserel->lateral_relids, NULL, NIL));

	foreach(lc, join_clauses(root, baserel))
	{
		RestrictInfo *ri = lfirst(lc);
		Relids		outer;
		ParamPathInfo *ppi;
		List	   *conds;
		ListCell   *lc2;
		bool		dup = false;

		outer = bms_union(ri->clause_relids, baserel->lateral_relids);
		outer = bms_del_members(outer, baserel->relids);
		foreach(lc2, seen)
			dup = dup || bms_equal(lfirst(lc2), outer);
		if (bms_is_empty(outer) || dup)
			continue;
		seen = lappend(seen, outer);
		ppi = get_baserel_parampathinfo(root, baserel, outer);
		conds = list_copy(fpinfo->remote_conds);
		foreach(lc2, ppi->ppi_clauses)
			if (MyceliumSqliteIsShippable(baserel, ((RestrictInfo *) lfirst(lc2))->clause))
				conds = lappend(conds, lfirst(lc2));
		estimate_cost(baserel, conds, ppi->ppi_rows, &startup, &total);
		add_path(baserel, (Path *)
				 create_foreignscan_path(root, baserel, NULL, ppi->ppi_rows,
										 startup, total, NIL, outer, NULL, NIL));
	}
}

/*
 * sqliteGetForeignPlan splits the clauses between SQLite and local
 * evaluation and builds the SQLite query.
 */
static ForeignScan *
sqliteGetForeignPlan(PlannerInfo *root, RelOptInfo *baserel,
					 Oid foreigntableid, ForeignPath *best_path, List *tlist,
					 List *scan_clauses, Plan *outer_plan)
{
	MyceliumSqliteRelInfo *fpinfo = baserel->fdw_private;
	List	   *remote_conds = NIL;
	List	   *local_exprs = NIL;
	List	   *retrieved_attrs;
	List	   *params_list = NIL;
	StringInfoData sql;
	StringInfoData shown;
	bool		with_rowid;
	bool		materialize;
	ListCell   *lc;

	if (IS_UPPER_REL(baserel))
		return MyceliumSqliteGetAggPlan(root, baserel, best_path, tlist);
	if (IS_JOIN_REL(baserel))
		return MyceliumSqliteGetJoinPlan(root, baserel, best_path, tlist);

	foreach(lc, scan_clauses)
	{
		RestrictInfo *ri = lfirst(lc);

		if (ri->pseudoconstant)
			continue;
		if (list_member_ptr(fpinfo->remote_conds, ri))
			remote_conds = lappend(remote_conds, ri);
		else if (list_member_ptr(fpinfo->local_conds, ri))
			local_exprs = lappend(local_exprs, ri->clause);
		else if (MyceliumSqliteIsShippable(baserel, ri->clause))
			remote_conds = lappend(remote_conds, ri);
		else
			local_exprs = lappend(local_exprs, ri->clause);
	}
	with_rowid = bms_is_member(SelfItemPointerAttributeNumber -
							   FirstLowInvalidHeapAttributeNumber,
							   fpinfo->attrs_used);
	/*
	 * The scan below an UPDATE or DELETE of the same table reads every row
	 * first: SQLite shows a statement the rows its own connection changes,
	 * so an updated row that moves ahead in the table would be met again.
	 */
	materialize = bms_is_member(baserel->relid, root->all_result_relids) &&
		(root->parse->commandType == CMD_UPDATE ||
		 root->parse->commandType == CMD_DELETE);

	/* what EXPLAIN shows, with the constants */
	initStringInfo(&shown);
	MyceliumSqliteDeparseSelect(&shown, baserel, with_rowid, remote_conds,
								best_path->path.pathkeys, &retrieved_attrs,
								&params_list, false);
	/* what runs: constants bound too, one cached statement per shape */
	params_list = NIL;
	initStringInfo(&sql);
	MyceliumSqliteDeparseSelect(&sql, baserel, with_rowid, remote_conds,
								best_path->path.pathkeys, &retrieved_attrs,
								&params_list, true);
	/* a final path of upper.c: LIMIT and OFFSET */
	if (best_path->fdw_private != NIL)
	{
		appendStringInfoString(&sql, strVal(linitial(best_path->fdw_private)));
		appendStringInfoString(&shown, strVal(linitial(best_path->fdw_private)));
	}
	return make_foreignscan(tlist, local_exprs, baserel->relid, params_list,
							list_concat(list_make5(makeString(sql.data), retrieved_attrs,
												   makeBoolean(with_rowid),
												   makeString(get_rel_name(foreigntableid)),
												   NIL),
										list_make2(makeString(shown.data),
												   makeBoolean(materialize))),
							NIL, NIL, outer_plan);
}

/*
 * sqliteBeginForeignScan opens the connection (and SQLite transaction) and
 * prepares the statement and the conversions.
 */
static void
sqliteBeginForeignScan(ForeignScanState *node, int eflags)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;
	Relation	rel = node->ss.ss_currentRelation;
	SqliteScanState *st;
	ListCell   *lc;
	int			i;

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	st = palloc0(sizeof(SqliteScanState));
	node->fdw_state = st;
	st->sql = strVal(linitial(fsplan->fdw_private));
	st->retrieved_attrs = lsecond(fsplan->fdw_private);
	st->with_rowid = boolVal(lthird(fsplan->fdw_private));
	st->materialize = list_length(fsplan->fdw_private) >= 7 &&
		boolVal(list_nth(fsplan->fdw_private, 6));
	st->conn = MyceliumSqliteGetConnection(GetForeignServer(fsplan->fs_server),
										   false);
	if (rel)
	{
		st->convs = palloc0(sizeof(MyceliumSqliteColumnConv) *
							Max(1, RelationGetDescr(rel)->natts));
		foreach(lc, st->retrieved_attrs)
			MyceliumSqliteInitConv(&st->convs[lfirst_int(lc) - 1], rel,
								   lfirst_int(lc));
	}
	else
	{
		/* an aggregate or a join: the scan tuple is fdw_scan_tlist */
		List	   *relnames = lfourth(fsplan->fdw_private);
		List	   *labels = list_nth(fsplan->fdw_private, 4);

		st->convs = palloc0(sizeof(MyceliumSqliteColumnConv) *
							Max(1, list_length(fsplan->fdw_scan_tlist)));
		foreach(lc, fsplan->fdw_scan_tlist)
		{
			Expr	   *e = ((TargetEntry *) lfirst(lc))->expr;

			MyceliumSqliteInitConvType(&st->convs[foreach_current_index(lc)],
									   exprType((Node *) e), exprTypmod((Node *) e),
									   strVal(list_nth(relnames, foreach_current_index(lc))),
									   strVal(list_nth(labels, foreach_current_index(lc))));
		}
	}

	st->param_exprs = ExecInitExprList(fsplan->fdw_exprs, (PlanState *) node);
	st->param_types = palloc0(sizeof(Oid) * Max(1, list_length(fsplan->fdw_exprs)));
	st->param_out = palloc0(sizeof(FmgrInfo) * Max(1, list_length(fsplan->fdw_exprs)));
	i = 0;
	foreach(lc, fsplan->fdw_exprs)
	{
		Oid			typout;
		bool		isvarlena;

		st->param_types[i] = exprType(lfirst(lc));
		getTypeOutputInfo(st->param_types[i], &typout, &isvarlena);
		fmgr_info(typout, &st->param_out[i]);
		i++;
	}
	st->tuple_cxt = AllocSetContextCreate(node->ss.ps.state->es_query_cxt,
										  "mycelium sqlite tuple",
										  ALLOCSET_DEFAULT_SIZES);
	st->stmt = MyceliumSqliteAcquireStmt(st->conn, st->sql);
}

/*
 * bind_params evaluates the ?N parameters and binds them.
 */
static void
bind_params(ForeignScanState *node, SqliteScanState *st)
{
	ExprContext *econtext = node->ss.ps.ps_ExprContext;
	MemoryContext old = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
	ListCell   *lc;
	int			i = 0;

	foreach(lc, st->param_exprs)
	{
		bool		isnull;
		Datum		value = ExecEvalExpr(lfirst(lc), econtext, &isnull);

		MyceliumSqliteBindDatum(st->stmt, i + 1, value, isnull,
								st->param_types[i], &st->param_out[i]);
		i++;
	}
	MemoryContextSwitchTo(old);
	st->bound = true;
}

/*
 * store_rowid keeps a row's SQLite rowid in the slot's tid (the "ctid" of
 * the foreign table), which UPDATE and DELETE use to find the row again.
 * 47 bits fit: 32 in the block number and 15 in the offset, plus one so
 * that the offset is never zero.
 */
static void
store_rowid(TupleTableSlot *slot, sqlite3_int64 rowid)
{
	if (rowid < 0 || rowid >= ((sqlite3_int64) 1 << 47))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("SQLite rowid " INT64_FORMAT " is out of the range that can be updated or deleted",
						(int64) rowid)));
	ItemPointerSet(&slot->tts_tid, (BlockNumber) (rowid >> 15),
				   (OffsetNumber) ((rowid & 0x7FFF) + 1));
}

/*
 * convert_row converts the current row of the statement into values and
 * nulls (by attnum - 1), in the per-tuple context.
 */
static void
convert_row(SqliteScanState *st, Datum *values, bool *nulls, int natts)
{
	MemoryContext old;
	ListCell   *lc;
	int			col = st->with_rowid ? 1 : 0;

	MemoryContextReset(st->tuple_cxt);
	old = MemoryContextSwitchTo(st->tuple_cxt);
	memset(nulls, true, sizeof(bool) * natts);
	foreach(lc, st->retrieved_attrs)
	{
		int			attnum = lfirst_int(lc);

		values[attnum - 1] =
			MyceliumSqliteValueToDatum(st->stmt, col++, &st->convs[attnum - 1],
									   &nulls[attnum - 1]);
	}
	MemoryContextSwitchTo(old);
}

/*
 * fill_store reads every row of the scan into a tuplestore, the rowid in
 * an extra last column, and ends the SQLite statement.
 */
static void
fill_store(ForeignScanState *node, SqliteScanState *st)
{
	TupleDesc	scandesc = node->ss.ss_ScanTupleSlot->tts_tupleDescriptor;
	int			natts = scandesc->natts;
	MemoryContext old = MemoryContextSwitchTo(node->ss.ps.state->es_query_cxt);
	TupleDesc	desc = CreateTemplateTupleDesc(natts + 1);
	Datum	   *values = palloc(sizeof(Datum) * (natts + 1));
	bool	   *nulls = palloc(sizeof(bool) * (natts + 1));
	int			i;

	/* all of it lives as long as the scan: the caller's context is per row */
	for (i = 1; i <= natts; i++)
		TupleDescCopyEntry(desc, i, scandesc, i);
	TupleDescInitEntry(desc, natts + 1, "rowid", INT8OID, -1, 0);
	st->store = tuplestore_begin_heap(false, false, work_mem);
	st->store_slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	MemoryContextSwitchTo(old);
	while (MyceliumSqliteStep(st->conn, st->stmt) == SQLITE_ROW)
	{
		convert_row(st, values, nulls, natts);
		values[natts] = Int64GetDatum(st->with_rowid ?
									  sqlite3_column_int64(st->stmt, 0) : 0);
		nulls[natts] = false;
		tuplestore_putvalues(st->store, desc, values, nulls);
	}
	sqlite3_reset(st->stmt);
}

/*
 * next_stored returns the next row of the tuplestore in the scan slot.
 */
static TupleTableSlot *
next_stored(ForeignScanState *node, SqliteScanState *st)
{
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	int			natts = slot->tts_tupleDescriptor->natts;

	if (st->store == NULL)
		fill_store(node, st);
	ExecClearTuple(slot);
	if (!tuplestore_gettupleslot(st->store, true, false, st->store_slot))
		return slot;
	slot_getallattrs(st->store_slot);
	memcpy(slot->tts_values, st->store_slot->tts_values, sizeof(Datum) * natts);
	memcpy(slot->tts_isnull, st->store_slot->tts_isnull, sizeof(bool) * natts);
	ExecStoreVirtualTuple(slot);
	if (st->with_rowid)
		store_rowid(slot, DatumGetInt64(st->store_slot->tts_values[natts]));
	return slot;
}

/*
 * sqliteIterateForeignScan returns the next row, converted by the foreign
 * columns' types, or an empty slot at the end.
 */
static TupleTableSlot *
sqliteIterateForeignScan(ForeignScanState *node)
{
	SqliteScanState *st = node->fdw_state;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;

	if (!st->bound)
		bind_params(node, st);
	if (st->materialize)
		return next_stored(node, st);
	ExecClearTuple(slot);
	if (MyceliumSqliteStep(st->conn, st->stmt) != SQLITE_ROW)
		return slot;
	convert_row(st, slot->tts_values, slot->tts_isnull,
				slot->tts_tupleDescriptor->natts);
	ExecStoreVirtualTuple(slot);
	if (st->with_rowid)
		store_rowid(slot, sqlite3_column_int64(st->stmt, 0));
	return slot;
}

/*
 * sqliteReScanForeignScan restarts the statement; parameters are bound
 * again on the next fetch.
 */
static void
sqliteReScanForeignScan(ForeignScanState *node)
{
	SqliteScanState *st = node->fdw_state;

	sqlite3_reset(st->stmt);
	sqlite3_clear_bindings(st->stmt);
	st->bound = false;
	if (st->store)
	{
		tuplestore_end(st->store);
		ExecDropSingleTupleTableSlot(st->store_slot);
		st->store = NULL;
	}
}

/*
 * sqliteEndForeignScan returns the statement to the cache.
 */
static void
sqliteEndForeignScan(ForeignScanState *node)
{
	SqliteScanState *st = node->fdw_state;

	if (st && st->stmt)
		MyceliumSqliteReleaseStmt(st->conn, st->stmt);
}

/*
 * sqliteExplainForeignScan shows the SQLite query in EXPLAIN VERBOSE.
 */
static void
sqliteExplainForeignScan(ForeignScanState *node, ExplainState *es)
{
	ForeignScan *fsplan = (ForeignScan *) node->ss.ps.plan;

	/* a table scan keeps the text with constants in its sixth item */
	if (es->verbose)
		ExplainPropertyText("SQLite query",
							strVal(list_length(fsplan->fdw_private) >= 6 ?
								   list_nth(fsplan->fdw_private, 5) :
								   linitial(fsplan->fdw_private)), es);
}

/*
 * mycelium_sqlite_fdw_handler returns the wrapper's callbacks.
 */
Datum
mycelium_sqlite_fdw_handler(PG_FUNCTION_ARGS)
{
	FdwRoutine *routine = makeNode(FdwRoutine);

	routine->GetForeignRelSize = sqliteGetForeignRelSize;
	routine->GetForeignPaths = sqliteGetForeignPaths;
	routine->GetForeignPlan = sqliteGetForeignPlan;
	routine->BeginForeignScan = sqliteBeginForeignScan;
	routine->IterateForeignScan = sqliteIterateForeignScan;
	routine->ReScanForeignScan = sqliteReScanForeignScan;
	routine->EndForeignScan = sqliteEndForeignScan;
	routine->ExplainForeignScan = sqliteExplainForeignScan;
	routine->GetForeignJoinPaths = MyceliumSqliteGetForeignJoinPaths;
	routine->GetForeignUpperPaths = MyceliumSqliteGetForeignUpperPaths;
	routine->AnalyzeForeignTable = MyceliumSqliteAnalyzeForeignTable;
	routine->ImportForeignSchema = MyceliumSqliteImportForeignSchema;
	MyceliumSqliteSetModifyRoutine(routine);
	PG_RETURN_POINTER(routine);
}
