/*-------------------------------------------------------------------------
 *
 * modify.c
 *	  INSERT (batched), UPDATE, DELETE, RETURNING, COPY FROM and TRUNCATE
 *	  on SQLite foreign tables.
 *
 * UPDATE and DELETE find a row again by its SQLite rowid, which the scan
 * stores in the row's ctid (see store_rowid in scan.c); an INTEGER PRIMARY
 * KEY is the rowid itself.  A table declared WITHOUT ROWID is updated by
 * its primary key instead, whose columns the plan then carries as junk
 * columns; the foreign table must have all of them.
 * RETURNING uses SQLite's RETURNING clause, so it returns what SQLite
 * stored (after its type affinity), converted like a scan.  INSERT sends
 * batch_size rows per statement when nothing needs the rows one by one
 * (no RETURNING, no row triggers).  Every statement runs in the SQLite
 * transaction that follows PostgreSQL's (connection.c), so ROLLBACK undoes
 * TRUNCATE as well.
 *
 * IDENTIFICATION
 *	  src/sqlite/modify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/sysattr.h"
#include "access/table.h"
#include "catalog/pg_type.h"
#include "commands/explain.h"
#include "executor/executor.h"
#include "foreign/fdwapi.h"
#include "nodes/makefuncs.h"
#include "optimizer/appendinfo.h"
#include "optimizer/inherit.h"
#include "optimizer/optimizer.h"
#include "optimizer/pathnode.h"
#include "parser/parsetree.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "sqlite/sqlite_fdw.h"

/* SQLite's default limit on host parameters in one statement */
#define SQLITE_MAX_PARAMS	32766

/* execution state of a foreign modify or insert */
typedef struct SqliteModifyState
{
	Relation	rel;
	MyceliumSqliteConn *conn;
	CmdType		operation;
	char	   *table;
	List	   *target_attrs;	/* attnums bound, in order */
	List	   *returning_attrs;	/* attnums of RETURNING, in order */
	AttrNumber	ctid_attno;		/* junk ctid in the plan's output */
	List	   *key_attrs;		/* WITHOUT ROWID: primary key attnums */
	AttrNumber *key_junk;		/* ... and their junk columns */
	MyceliumSqliteColumnConv *convs;	/* by attnum - 1 */
	int			insert_rows;	/* rows of insert_sql */
	char	   *insert_sql;
	char	   *sql;			/* update or delete */
	MemoryContext temp_cxt;		/* reset for every row or batch */
} SqliteModifyState;

/*
 * append_returning appends " RETURNING cols" for the RETURNING attributes.
 */
static void
append_returning(StringInfo buf, Relation rel, List *attrs)
{
	ListCell   *lc;
	bool		first = true;

	foreach(lc, attrs)
	{
		appendStringInfoString(buf, first ? " RETURNING " : ", ");
		first = false;
		MyceliumSqliteQuoteIdent(buf, MyceliumSqliteColumnName(RelationGetRelid(rel),
															   lfirst_int(lc)));
	}
}

/*
 * append_row_match appends the WHERE clause finding one row: by rowid, or
 * by the primary key of a WITHOUT ROWID table.
 */
static void
append_row_match(StringInfo buf, Oid relid, List *key_attrs)
{
	ListCell   *lc;

	if (key_attrs == NIL)
	{
		appendStringInfoString(buf, " WHERE rowid = ?");
		return;
	}
	foreach(lc, key_attrs)
	{
		appendStringInfoString(buf, foreach_current_index(lc) == 0 ? " WHERE " : " AND ");
		MyceliumSqliteQuoteIdent(buf, MyceliumSqliteColumnName(relid, lfirst_int(lc)));
		appendStringInfoString(buf, " = ?");
	}
}

/*
 * key_attrs returns NIL for a SQLite table with a rowid; for a WITHOUT
 * ROWID table, the attnums of the foreign columns holding its primary key,
 * which must all be there (a partial key could match several rows).
 */
static List *
key_attrs(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	MyceliumSqliteConn *conn;
	char	   *table = MyceliumSqliteTableName(relid);
	List	   *keys = NIL;
	int			npk = 0;
	int			i;
	StringInfoData sql;
	sqlite3_stmt *stmt;

	conn = MyceliumSqliteGetConnection(GetForeignServer(GetForeignTable(relid)->serverid),
									   false);
	/* a missing table is reported when the statement runs */
	if (sqlite3_table_column_metadata(conn->db, NULL, table, NULL,
									  NULL, NULL, NULL, NULL, NULL) != SQLITE_OK ||
		sqlite3_table_column_metadata(conn->db, NULL, table, "rowid",
									  NULL, NULL, NULL, NULL, NULL) == SQLITE_OK)
		return NIL;
	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT count(*) FROM pragma_table_info(?1) WHERE pk > 0");
	stmt = MyceliumSqliteTryAcquireStmt(conn, sql.data);
	if (stmt)
		sqlite3_bind_text(stmt, 1, table, -1, SQLITE_TRANSIENT);
	if (stmt && sqlite3_step(stmt) == SQLITE_ROW)
		npk = sqlite3_column_int(stmt, 0);
	if (stmt)
		MyceliumSqliteReleaseStmt(conn, stmt);
	for (i = 1; i <= RelationGetDescr(rel)->natts; i++)
	{
		int			pk = 0;

		if (TupleDescAttr(RelationGetDescr(rel), i - 1)->attisdropped)
			continue;
		if (sqlite3_table_column_metadata(conn->db, NULL, table,
										  MyceliumSqliteColumnName(relid, i),
										  NULL, NULL, NULL, &pk, NULL) == SQLITE_OK && pk)
			keys = lappend_int(keys, i);
	}
	if (npk == 0 || list_length(keys) != npk)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot update or delete rows of foreign table \"%s\"",
						RelationGetRelationName(rel)),
				 errdetail("SQLite table \"%s\" has no rowid, and the foreign table does not have all of its primary key columns.",
						   table)));
	return keys;
}

/*
 * build_sql builds the statement of an operation; INSERT for nrows rows.
 */
static char *
build_sql(Relation rel, CmdType op, const char *table, List *target_attrs,
		  List *returning_attrs, List *key_attrs, int nrows)
{
	StringInfoData buf;
	ListCell   *lc;
	int			n = 0;
	int			i;
	Oid			relid = RelationGetRelid(rel);

	initStringInfo(&buf);
	if (op == CMD_INSERT)
	{
		appendStringInfoString(&buf, "INSERT INTO ");
		MyceliumSqliteQuoteIdent(&buf, table);
		if (target_attrs == NIL)
			appendStringInfoString(&buf, " DEFAULT VALUES");
		else
		{
			appendStringInfoString(&buf, " (");
			foreach(lc, target_attrs)
			{
				if (n++ > 0)
					appendStringInfoString(&buf, ", ");
				MyceliumSqliteQuoteIdent(&buf, MyceliumSqliteColumnName(relid, lfirst_int(lc)));
			}
			appendStringInfoString(&buf, ") VALUES ");
			for (i = 0; i < nrows; i++)
			{
				appendStringInfoString(&buf, i > 0 ? ", (" : "(");
				foreach(lc, target_attrs)
					appendStringInfoString(&buf, foreach_current_index(lc) > 0 ? ", ?" : "?");
				appendStringInfoChar(&buf, ')');
			}
		}
	}
	else if (op == CMD_UPDATE)
	{
		appendStringInfoString(&buf, "UPDATE ");
		MyceliumSqliteQuoteIdent(&buf, table);
		foreach(lc, target_attrs)
		{
			appendStringInfoString(&buf, n++ > 0 ? ", " : " SET ");
			MyceliumSqliteQuoteIdent(&buf, MyceliumSqliteColumnName(relid, lfirst_int(lc)));
			appendStringInfoString(&buf, " = ?");
		}
		if (target_attrs == NIL)
			appendStringInfoString(&buf, " SET rowid = rowid");
		append_row_match(&buf, relid, key_attrs);
	}
	else
	{
		appendStringInfoString(&buf, "DELETE FROM ");
		MyceliumSqliteQuoteIdent(&buf, table);
		append_row_match(&buf, relid, key_attrs);
	}
	append_returning(&buf, rel, returning_attrs);
	return buf.data;
}

/*
 * attrs_of lists the attnums in a bitmapset of pull_varattnos (all columns
 * for a whole-row reference), skipping dropped and generated columns.
 */
static List *
attrs_of(Relation rel, Bitmapset *attrs, bool all)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	List	   *result = NIL;
	int			i;

	if (bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, attrs))
		all = true;
	for (i = 1; i <= tupdesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tupdesc, i - 1);

		if (att->attisdropped || att->attgenerated)
			continue;
		if (all || bms_is_member(i - FirstLowInvalidHeapAttributeNumber, attrs))
			result = lappend_int(result, i);
	}
	return result;
}

/*
 * sqliteAddForeignUpdateTargets asks for the ctid, which holds the rowid,
 * or for the primary key columns of a WITHOUT ROWID table.
 */
static void
sqliteAddForeignUpdateTargets(PlannerInfo *root, Index rtindex,
							  RangeTblEntry *target_rte,
							  Relation target_relation)
{
	List	   *keys = key_attrs(target_relation);
	ListCell   *lc;

	if (keys == NIL)
	{
		add_row_identity_var(root, makeVar(rtindex, SelfItemPointerAttributeNumber,
										   TIDOID, -1, InvalidOid, 0),
							 rtindex, "ctid");
		return;
	}
	foreach(lc, keys)
	{
		Form_pg_attribute att = TupleDescAttr(RelationGetDescr(target_relation),
											  lfirst_int(lc) - 1);

		add_row_identity_var(root, makeVar(rtindex, lfirst_int(lc), att->atttypid,
										   att->atttypmod, att->attcollation, 0),
							 rtindex, psprintf("mycelium_key_%d", lfirst_int(lc)));
	}
}

/*
 * sqlitePlanForeignModify refuses writes to read-only tables and records
 * what the statement binds and returns.
 */
static List *
sqlitePlanForeignModify(PlannerInfo *root, ModifyTable *plan,
						Index resultRelation, int subplan_index)
{
	RangeTblEntry *rte = planner_rt_fetch(resultRelation, root);
	Relation	rel = table_open(rte->relid, NoLock);
	CmdType		op = plan->operation;
	List	   *target_attrs = NIL;
	List	   *returning_attrs = NIL;
	List	   *keys = NIL;
	Bitmapset  *attrs = NULL;
	char	   *table;
	char	   *sql;

	MyceliumSqliteCheckWritable(rel);
	if (op != CMD_INSERT)
		keys = key_attrs(rel);
	table = MyceliumSqliteTableName(rte->relid);
	if (op == CMD_INSERT)
		target_attrs = attrs_of(rel, NULL, true);
	else if (op == CMD_UPDATE)
		target_attrs = attrs_of(rel, get_rel_all_updated_cols(root,
															  find_base_rel(root, resultRelation)),
								false);
	if (plan->returningLists)
	{
		pull_varattnos((Node *) list_nth(plan->returningLists, subplan_index),
					   resultRelation, &attrs);
		returning_attrs = attrs_of(rel, attrs, false);
	}
	sql = build_sql(rel, op, table, target_attrs, returning_attrs, keys, 1);
	table_close(rel, NoLock);
	return lappend(list_make5(makeString(sql), makeString(table), target_attrs,
							  returning_attrs, makeInteger(op)),
				   keys);
}

/*
 * begin_modify sets up the execution state shared by modify and insert.
 */
static SqliteModifyState *
begin_modify(EState *estate, ResultRelInfo *rinfo, CmdType op, char *table,
			 List *target_attrs, List *returning_attrs, List *keys)
{
	Relation	rel = rinfo->ri_RelationDesc;
	SqliteModifyState *st = palloc0(sizeof(SqliteModifyState));
	int			i;

	MyceliumSqliteCheckWritable(rel);
	st->rel = rel;
	st->operation = op;
	st->table = table;
	st->target_attrs = target_attrs;
	st->returning_attrs = returning_attrs;
	st->key_attrs = keys;
	st->conn = MyceliumSqliteGetConnection(GetForeignServer(GetForeignTable(RelationGetRelid(rel))->serverid),
										   false);
	st->convs = palloc0(sizeof(MyceliumSqliteColumnConv) *
						Max(1, RelationGetDescr(rel)->natts));
	for (i = 1; i <= RelationGetDescr(rel)->natts; i++)
		if (!TupleDescAttr(RelationGetDescr(rel), i - 1)->attisdropped)
			MyceliumSqliteInitConv(&st->convs[i - 1], rel, i);
	if (op != CMD_INSERT)
		st->sql = build_sql(rel, op, table, target_attrs, returning_attrs,
							keys, 1);
	st->temp_cxt = AllocSetContextCreate(estate->es_query_cxt,
										 "mycelium sqlite modify",
										 ALLOCSET_SMALL_SIZES);
	rinfo->ri_FdwState = st;
	return st;
}

/*
 * sqliteBeginForeignModify prepares INSERT, UPDATE or DELETE execution.
 */
static void
sqliteBeginForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
						 List *fdw_private, int subplan_index, int eflags)
{
	SqliteModifyState *st;

	if (eflags & EXEC_FLAG_EXPLAIN_ONLY)
		return;
	st = begin_modify(mtstate->ps.state, rinfo, intVal(list_nth(fdw_private, 4)),
					  strVal(lsecond(fdw_private)), lthird(fdw_private),
					  lfourth(fdw_private), list_nth(fdw_private, 5));
	if (st->operation != CMD_INSERT)
	{
		Plan	   *subplan = outerPlanState(mtstate)->plan;
		ListCell   *lc;

		if (st->key_attrs == NIL)
		{
			st->ctid_attno = ExecFindJunkAttributeInTlist(subplan->targetlist, "ctid");
			if (!AttributeNumberIsValid(st->ctid_attno))
				elog(ERROR, "could not find junk ctid column");
		}
		st->key_junk = palloc0(sizeof(AttrNumber) * Max(1, list_length(st->key_attrs)));
		foreach(lc, st->key_attrs)
		{
			char	   *name = psprintf("mycelium_key_%d", lfirst_int(lc));

			st->key_junk[foreach_current_index(lc)] =
				ExecFindJunkAttributeInTlist(subplan->targetlist, name);
			if (!AttributeNumberIsValid(st->key_junk[foreach_current_index(lc)]))
				elog(ERROR, "could not find junk column \"%s\"", name);
		}
	}
}

/*
 * bind_slot binds the target attributes of a slot from parameter *idx on.
 */
static void
bind_slot(SqliteModifyState *st, sqlite3_stmt *stmt, TupleTableSlot *slot,
		  int *idx)
{
	ListCell   *lc;

	slot_getallattrs(slot);
	foreach(lc, st->target_attrs)
	{
		int			attnum = lfirst_int(lc);

		MyceliumSqliteBindDatum(stmt, (*idx)++, slot->tts_values[attnum - 1],
								slot->tts_isnull[attnum - 1],
								st->convs[attnum - 1].typid,
								&st->convs[attnum - 1].outflinfo);
	}
}

/*
 * finish_stmt steps a bound statement to its end.  With RETURNING, the
 * returned row is stored in slot; without, the result says whether a row
 * was changed.
 */
static bool
finish_stmt(SqliteModifyState *st, sqlite3_stmt *stmt, TupleTableSlot *slot)
{
	int			rc = MyceliumSqliteStep(st->conn, stmt);
	bool		found = (rc == SQLITE_ROW);

	if (st->returning_attrs != NIL && rc == SQLITE_ROW)
	{
		ListCell   *lc;
		int			col = 0;

		ExecClearTuple(slot);
		memset(slot->tts_isnull, true, sizeof(bool) * slot->tts_tupleDescriptor->natts);
		foreach(lc, st->returning_attrs)
		{
			int			attnum = lfirst_int(lc);

			slot->tts_values[attnum - 1] =
				MyceliumSqliteValueToDatum(stmt, col++, &st->convs[attnum - 1],
										   &slot->tts_isnull[attnum - 1]);
		}
		ExecStoreVirtualTuple(slot);
	}
	while (rc == SQLITE_ROW)
		rc = MyceliumSqliteStep(st->conn, stmt);
	if (st->returning_attrs == NIL)
		found = sqlite3_changes(st->conn->db) > 0;
	MyceliumSqliteReleaseStmt(st->conn, stmt);
	return found;
}

/*
 * exec_insert inserts n slots with one statement.
 */
static void
exec_insert(SqliteModifyState *st, TupleTableSlot **slots, int n)
{
	MemoryContext old = MemoryContextSwitchTo(st->temp_cxt);
	sqlite3_stmt *stmt;
	int			idx = 1;
	int			i;

	if (st->insert_rows != n)
	{
		MemoryContext qcxt = GetMemoryChunkContext(st);

		st->insert_sql = build_sql(st->rel, CMD_INSERT, st->table, st->target_attrs,
								   st->returning_attrs, NIL, n);
		st->insert_sql = MemoryContextStrdup(qcxt, st->insert_sql);
		st->insert_rows = n;
	}
	stmt = MyceliumSqliteAcquireStmt(st->conn, st->insert_sql);
	for (i = 0; i < n; i++)
		bind_slot(st, stmt, slots[i], &idx);
	MemoryContextSwitchTo(old);
	(void) finish_stmt(st, stmt, slots[0]);
	MemoryContextReset(st->temp_cxt);
}

/*
 * sqliteExecForeignInsert inserts one row (with RETURNING, or one by one).
 */
static TupleTableSlot *
sqliteExecForeignInsert(EState *estate, ResultRelInfo *rinfo,
						TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	exec_insert(rinfo->ri_FdwState, &slot, 1);
	return slot;
}

/*
 * sqliteExecForeignBatchInsert inserts *numSlots rows with one statement.
 */
static TupleTableSlot **
sqliteExecForeignBatchInsert(EState *estate, ResultRelInfo *rinfo,
							 TupleTableSlot **slots, TupleTableSlot **planSlots,
							 int *numSlots)
{
	exec_insert(rinfo->ri_FdwState, slots, *numSlots);
	return slots;
}

/*
 * sqliteGetForeignModifyBatchSize returns the server's batch_size, bounded
 * by SQLite's parameter limit, or 1 when rows must be handled one by one.
 */
static int
sqliteGetForeignModifyBatchSize(ResultRelInfo *rinfo)
{
	Relation	rel = rinfo->ri_RelationDesc;
	MyceliumSqliteServerOptions opts;
	int			natts = Max(1, RelationGetDescr(rel)->natts);

	if (rinfo->ri_projectReturning != NULL || RelationGetDescr(rel)->natts == 0 ||
		(rinfo->ri_TrigDesc &&
		 (rinfo->ri_TrigDesc->trig_insert_before_row ||
		  rinfo->ri_TrigDesc->trig_insert_after_row)))
		return 1;
	MyceliumSqliteGetServerOptions(GetForeignServer(GetForeignTable(RelationGetRelid(rel))->serverid),
								   &opts);
	return Max(1, Min(opts.batch_size, SQLITE_MAX_PARAMS / natts));
}

/*
 * bind_row_match binds what finds the row again: the rowid kept in the
 * ctid, or the old primary key values.
 */
static void
bind_row_match(SqliteModifyState *st, sqlite3_stmt *stmt,
			   TupleTableSlot *planSlot, int idx)
{
	bool		isnull;
	ListCell   *lc;

	if (st->key_attrs == NIL)
	{
		ItemPointer tid = (ItemPointer)
		DatumGetPointer(ExecGetJunkAttribute(planSlot, st->ctid_attno, &isnull));

		if (isnull)
			elog(ERROR, "ctid is NULL");
		sqlite3_bind_int64(stmt, idx,
						   ((sqlite3_int64) ItemPointerGetBlockNumberNoCheck(tid) << 15) |
						   (ItemPointerGetOffsetNumberNoCheck(tid) - 1));
		return;
	}
	foreach(lc, st->key_attrs)
	{
		int			attnum = lfirst_int(lc);
		Datum		d = ExecGetJunkAttribute(planSlot,
											 st->key_junk[foreach_current_index(lc)],
											 &isnull);

		MyceliumSqliteBindDatum(stmt, idx++, d, isnull, st->convs[attnum - 1].typid,
								&st->convs[attnum - 1].outflinfo);
	}
}

/*
 * exec_by_rowid runs the UPDATE or DELETE of the row planSlot identifies;
 * NULL if the row is gone.
 */
static TupleTableSlot *
exec_by_rowid(SqliteModifyState *st, TupleTableSlot *slot,
			  TupleTableSlot *planSlot)
{
	sqlite3_stmt *stmt;
	int			idx = 1;
	MemoryContext old;
	bool		found;

	stmt = MyceliumSqliteAcquireStmt(st->conn, st->sql);
	old = MemoryContextSwitchTo(st->temp_cxt);
	if (st->operation == CMD_UPDATE)
		bind_slot(st, stmt, slot, &idx);
	bind_row_match(st, stmt, planSlot, idx);
	MemoryContextSwitchTo(old);
	found = finish_stmt(st, stmt, slot);
	MemoryContextReset(st->temp_cxt);
	return found ? slot : NULL;
}

/*
 * sqliteExecForeignUpdate updates the row planSlot identifies.
 */
static TupleTableSlot *
sqliteExecForeignUpdate(EState *estate, ResultRelInfo *rinfo,
						TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	return exec_by_rowid(rinfo->ri_FdwState, slot, planSlot);
}

/*
 * sqliteExecForeignDelete deletes the row planSlot identifies.
 */
static TupleTableSlot *
sqliteExecForeignDelete(EState *estate, ResultRelInfo *rinfo,
						TupleTableSlot *slot, TupleTableSlot *planSlot)
{
	return exec_by_rowid(rinfo->ri_FdwState, slot, planSlot);
}

/*
 * sqliteEndForeignModify has nothing to do: statements go back to the
 * cache after each row, memory goes with the query.
 */
static void
sqliteEndForeignModify(EState *estate, ResultRelInfo *rinfo)
{
}

/*
 * sqliteBeginForeignInsert prepares COPY FROM (or tuple routing) into a
 * foreign table: every column, batched.
 */
static void
sqliteBeginForeignInsert(ModifyTableState *mtstate, ResultRelInfo *rinfo)
{
	Relation	rel = rinfo->ri_RelationDesc;

	if (rinfo->ri_returningList != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot route rows with RETURNING into foreign table \"%s\"",
						RelationGetRelationName(rel))));
	(void) begin_modify(mtstate->ps.state, rinfo, CMD_INSERT,
						MyceliumSqliteTableName(RelationGetRelid(rel)),
						attrs_of(rel, NULL, true), NIL, NIL);
}

/*
 * sqliteEndForeignInsert has nothing to do either.
 */
static void
sqliteEndForeignInsert(EState *estate, ResultRelInfo *rinfo)
{
}

/*
 * sqliteExplainForeignModify shows the SQLite statement.
 */
static void
sqliteExplainForeignModify(ModifyTableState *mtstate, ResultRelInfo *rinfo,
						   List *fdw_private, int subplan_index,
						   ExplainState *es)
{
	if (es->verbose)
		ExplainPropertyText("SQLite query", strVal(linitial(fdw_private)), es);
}

/*
 * sqliteExecForeignTruncate empties the tables inside the current SQLite
 * transaction, so a rollback restores them.
 */
static void
sqliteExecForeignTruncate(List *rels, DropBehavior behavior, bool restart_seqs)
{
	ListCell   *lc;

	foreach(lc, rels)
	{
		Relation	rel = lfirst(lc);
		MyceliumSqliteConn *conn;
		StringInfoData sql;

		MyceliumSqliteCheckWritable(rel);
		conn = MyceliumSqliteGetConnection(GetForeignServer(GetForeignTable(RelationGetRelid(rel))->serverid),
										   false);
		initStringInfo(&sql);
		appendStringInfoString(&sql, "DELETE FROM ");
		MyceliumSqliteQuoteIdent(&sql, MyceliumSqliteTableName(RelationGetRelid(rel)));
		MyceliumSqliteExec(conn, sql.data);
	}
}

/*
 * sqliteIsForeignRelUpdatable allows every write: read-only tables and
 * servers are refused with a message naming the option at planning.
 */
static int
sqliteIsForeignRelUpdatable(Relation rel)
{
	return (1 << CMD_INSERT) | (1 << CMD_UPDATE) | (1 << CMD_DELETE);
}

/*
 * MyceliumSqliteSetModifyRoutine fills the write callbacks.
 */
void
MyceliumSqliteSetModifyRoutine(FdwRoutine *routine)
{
	routine->AddForeignUpdateTargets = sqliteAddForeignUpdateTargets;
	routine->PlanForeignModify = sqlitePlanForeignModify;
	routine->BeginForeignModify = sqliteBeginForeignModify;
	routine->ExecForeignInsert = sqliteExecForeignInsert;
	routine->ExecForeignBatchInsert = sqliteExecForeignBatchInsert;
	routine->GetForeignModifyBatchSize = sqliteGetForeignModifyBatchSize;
	routine->ExecForeignUpdate = sqliteExecForeignUpdate;
	routine->ExecForeignDelete = sqliteExecForeignDelete;
	routine->EndForeignModify = sqliteEndForeignModify;
	routine->BeginForeignInsert = sqliteBeginForeignInsert;
	routine->EndForeignInsert = sqliteEndForeignInsert;
	routine->ExplainForeignModify = sqliteExplainForeignModify;
	routine->ExecForeignTruncate = sqliteExecForeignTruncate;
	routine->IsForeignRelUpdatable = sqliteIsForeignRelUpdatable;
}
