/*-------------------------------------------------------------------------
 *
 * analyze.c
 *	  ANALYZE of SQLite foreign tables.
 *
 * SQLite has no cheap random sample, so the whole table is read once and
 * a reservoir sample of it kept (Vitter's algorithm, as for local tables);
 * every value goes through the same conversion as a scan, so a value that
 * does not fit its column stops ANALYZE with the usual error.
 *
 * IDENTIFICATION
 *	  src/sqlite/analyze.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "commands/vacuum.h"
#include "foreign/fdwapi.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/sampling.h"

#include "sqlite/sqlite_fdw.h"

/*
 * read_row converts the current row of stmt into a heap tuple allocated in
 * the caller's context; values are converted in tmp_cxt.
 */
static HeapTuple
read_row(Relation rel, sqlite3_stmt *stmt, List *attrs,
		 MyceliumSqliteColumnConv *convs, MemoryContext tmp_cxt)
{
	TupleDesc	tupdesc = RelationGetDescr(rel);
	Datum	   *values = palloc(sizeof(Datum) * tupdesc->natts);
	bool	   *nulls = palloc(sizeof(bool) * tupdesc->natts);
	MemoryContext old;
	HeapTuple	tuple;
	ListCell   *lc;

	memset(nulls, true, sizeof(bool) * tupdesc->natts);
	MemoryContextReset(tmp_cxt);
	old = MemoryContextSwitchTo(tmp_cxt);
	foreach(lc, attrs)
	{
		int			attnum = lfirst_int(lc);

		values[attnum - 1] =
			MyceliumSqliteValueToDatum(stmt, foreach_current_index(lc),
									   &convs[attnum - 1], &nulls[attnum - 1]);
	}
	MemoryContextSwitchTo(old);
	tuple = heap_form_tuple(tupdesc, values, nulls);
	pfree(values);
	pfree(nulls);
	return tuple;
}

/*
 * acquire_sample_rows reads the table and keeps a reservoir sample of
 * targrows rows.
 */
static int
acquire_sample_rows(Relation rel, int elevel, HeapTuple *rows, int targrows,
					double *totalrows, double *totaldeadrows)
{
	Oid			relid = RelationGetRelid(rel);
	TupleDesc	tupdesc = RelationGetDescr(rel);
	MyceliumSqliteConn *conn;
	MyceliumSqliteColumnConv *convs;
	MemoryContext tmp_cxt;
	StringInfoData sql;
	sqlite3_stmt *stmt;
	List	   *attrs = NIL;
	ReservoirStateData rstate;
	double		rowstoskip = -1;
	double		seen = 0;
	int			numrows = 0;
	int			i;

	conn = MyceliumSqliteGetConnection(GetForeignServer(GetForeignTable(relid)->serverid),
									   false);
	convs = palloc0(sizeof(MyceliumSqliteColumnConv) * Max(1, tupdesc->natts));
	initStringInfo(&sql);
	appendStringInfoString(&sql, "SELECT ");
	for (i = 1; i <= tupdesc->natts; i++)
	{
		if (TupleDescAttr(tupdesc, i - 1)->attisdropped)
			continue;
		if (attrs != NIL)
			appendStringInfoString(&sql, ", ");
		MyceliumSqliteQuoteIdent(&sql, MyceliumSqliteColumnName(relid, i));
		MyceliumSqliteInitConv(&convs[i - 1], rel, i);
		attrs = lappend_int(attrs, i);
	}
	if (attrs == NIL)
		appendStringInfoString(&sql, "NULL");
	appendStringInfoString(&sql, " FROM ");
	MyceliumSqliteQuoteIdent(&sql, MyceliumSqliteTableName(relid));

	tmp_cxt = AllocSetContextCreate(CurrentMemoryContext, "mycelium sqlite analyze",
									ALLOCSET_DEFAULT_SIZES);
	reservoir_init_selection_state(&rstate, targrows);
	stmt = MyceliumSqliteAcquireStmt(conn, sql.data);
	while (MyceliumSqliteStep(conn, stmt) == SQLITE_ROW)
	{
		vacuum_delay_point();
		seen++;
		if (numrows < targrows)
			rows[numrows++] = read_row(rel, stmt, attrs, convs, tmp_cxt);
		else
		{
			if (rowstoskip < 0)
				rowstoskip = reservoir_get_next_S(&rstate, seen, targrows);
			if (rowstoskip <= 0)
			{
				int			k = (int) (targrows * sampler_random_fract(&rstate.randstate));

				heap_freetuple(rows[k]);
				rows[k] = read_row(rel, stmt, attrs, convs, tmp_cxt);
			}
			rowstoskip -= 1;
		}
	}
	MyceliumSqliteReleaseStmt(conn, stmt);
	MemoryContextDelete(tmp_cxt);

	*totalrows = seen;
	*totaldeadrows = 0;
	ereport(elevel,
			(errmsg("\"%s\": SQLite table contains %.0f rows; %d rows in sample",
					RelationGetRelationName(rel), seen, numrows)));
	return numrows;
}

/*
 * MyceliumSqliteAnalyzeForeignTable is the AnalyzeForeignTable callback.
 */
bool
MyceliumSqliteAnalyzeForeignTable(Relation relation,
								  AcquireSampleRowsFunc *func,
								  BlockNumber *totalpages)
{
	*func = acquire_sample_rows;
	*totalpages = 1;
	return true;
}
