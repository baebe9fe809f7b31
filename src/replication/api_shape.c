/*-------------------------------------------------------------------------
 *
 * api_shape.c
 *	  The shape of a table (columns by name, their types, the primary key)
 *	  as replicate_table compares it between members.
 *
 * Every member reads the shape with the same SQL function,
 * mycelium.replication_table_shape, which prints types under
 * search_path = pg_catalog, so the texts compare equal exactly when the
 * types are the same.
 *
 * IDENTIFICATION
 *	  src/replication/api_shape.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "cluster/cluster.h"
#include "replication/api_internal.h"

#define SHAPE_SQL "SELECT column_name, column_type, in_primary_key, relkind, replicated " \
	"FROM mycelium.replication_table_shape($1)"

/*
 * shape_from_spi fills a TableShape from the rows of SHAPE_SQL in
 * SPI_tuptable, allocating in the current memory context.
 */
static void
shape_from_spi(TableShape *shape)
{
	uint64		i;

	memset(shape, 0, sizeof(*shape));
	shape->ncols = (int) SPI_processed;
	shape->present = SPI_processed > 0;
	shape->cols = palloc0(sizeof(ShapeColumn) * Max(shape->ncols, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		shape->cols[i].name = SPI_getvalue(tup, desc, 1);
		shape->cols[i].type = SPI_getvalue(tup, desc, 2);
		shape->cols[i].in_pk = strcmp(SPI_getvalue(tup, desc, 3), "t") == 0;
		shape->relkind = SPI_getvalue(tup, desc, 4)[0];
		shape->replicated = strcmp(SPI_getvalue(tup, desc, 5), "t") == 0;
	}
}

/*
 * shape_from_result fills a TableShape from a PGresult of SHAPE_SQL.
 */
static void
shape_from_result(TableShape *shape, PGresult *res)
{
	int			i;

	memset(shape, 0, sizeof(*shape));
	shape->ncols = PQntuples(res);
	shape->present = shape->ncols > 0;
	shape->cols = palloc0(sizeof(ShapeColumn) * Max(shape->ncols, 1));
	for (i = 0; i < shape->ncols; i++)
	{
		shape->cols[i].name = pstrdup(PQgetvalue(res, i, 0));
		shape->cols[i].type = pstrdup(PQgetvalue(res, i, 1));
		shape->cols[i].in_pk = strcmp(PQgetvalue(res, i, 2), "t") == 0;
		shape->relkind = PQgetvalue(res, i, 3)[0];
		shape->replicated = strcmp(PQgetvalue(res, i, 4), "t") == 0;
	}
}

/*
 * MyceliumReplLocalShape reads the table's shape here, with the latest snapshot (a
 * concurrent replicate_table that committed before our locks is seen).
 */
void
MyceliumReplLocalShape(const char *qualname, TableShape *shape)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	MemoryContext old;

	values[0] = CStringGetTextDatum(qualname);
	SPI_connect();
	MyceliumSpiExecLatest(SHAPE_SQL, 1, types, values, true);
	old = MemoryContextSwitchTo(caller);
	shape_from_spi(shape);
	MemoryContextSwitchTo(old);
	SPI_finish();
}

/*
 * shape_difference describes, as a sentence for errdetail, how a member's
 * table differs from the local one, or returns NULL when they match.
 * Columns are compared by name (both lists are ordered by name).
 */
static char *
shape_difference(const TableShape *here, const TableShape *there, const char *member)
{
	int			i = 0,
				j = 0;

	if (there->relkind != RELKIND_RELATION)
		return psprintf("On node \"%s\" it is not an ordinary table.", member);
	while (i < here->ncols || j < there->ncols)
	{
		int			cmp = (i >= here->ncols) ? 1 : (j >= there->ncols) ? -1 :
			strcmp(here->cols[i].name, there->cols[j].name);

		if (cmp < 0)
			return psprintf("Column \"%s\" is missing on node \"%s\".",
							here->cols[i].name, member);
		if (cmp > 0)
			return psprintf("Column \"%s\" exists only on node \"%s\".",
							there->cols[j].name, member);
		if (strcmp(here->cols[i].type, there->cols[j].type) != 0)
			return psprintf("Column \"%s\" has type %s on node \"%s\" but %s here.",
							here->cols[i].name, there->cols[j].type, member,
							here->cols[i].type);
		if (here->cols[i].in_pk != there->cols[j].in_pk)
			return psprintf("Column \"%s\" is %spart of the primary key on node \"%s\" but %s here.",
							here->cols[i].name, there->cols[j].in_pk ? "" : "not ",
							member, here->cols[i].in_pk ? "is" : "is not");
		i++;
		j++;
	}
	return NULL;
}

/*
 * MyceliumReplMembersToCreate reads the table's shape on every remote member (in
 * parallel) and returns those that lack it; *ncreate gets their number.
 * A member where it is already replicated, or where it differs from here,
 * is an ERROR naming the member.  Members that have it get a SHARE lock on
 * it, so its definition cannot change before commit.
 */
MyceliumConnection **
MyceliumReplMembersToCreate(MyceliumConnection **remote, int n, const char *qualname,
				  const char *display, const TableShape *here, int *ncreate)
{
	PGresult  **results = palloc0(sizeof(PGresult *) * Max(n, 1));
	TableShape *there = palloc0(sizeof(TableShape) * Max(n, 1));
	MyceliumConnection **create = palloc0(sizeof(MyceliumConnection *) * Max(n, 1));
	MyceliumConnection **keep = palloc0(sizeof(MyceliumConnection *) * Max(n, 1));
	const char *param = qualname;
	int			nkeep = 0;
	int			i;

	*ncreate = 0;
	for (i = 0; i < n; i++)
		if (!MyceliumSendQuery(remote[i], SHAPE_SQL, 1, &param))
			MyceliumReportConnError(ERROR, remote[i], "send a command");
	MyceliumWaitResults(remote, n, results, 0, true);
	for (i = 0; i < n; i++)
		if (results[i] == NULL || PQresultStatus(results[i]) != PGRES_TUPLES_OK)
			MyceliumReportResultError(ERROR, results[i], remote[i], SHAPE_SQL);
	for (i = 0; i < n; i++)
	{
		shape_from_result(&there[i], results[i]);
		PQclear(results[i]);
	}
	for (i = 0; i < n; i++)
	{
		char	   *diff;

		if (!there[i].present)
		{
			create[(*ncreate)++] = remote[i];
			continue;
		}
		if (there[i].replicated)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("table \"%s\" is already replicated on node \"%s\"",
							display, remote[i]->node_name),
					 errhint("The mesh metadata differs between nodes; run mycelium.stop_replicating_table first.")));
		diff = shape_difference(here, &there[i], remote[i]->node_name);
		if (diff)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
					 errmsg("table \"%s\" has a different definition on node \"%s\"",
							display, remote[i]->node_name),
					 errdetail_internal("%s", diff),
					 errhint("Make the definitions match, or drop the table on that node so that it is created there with this node's rows.")));
		keep[nkeep++] = remote[i];
	}
	if (nkeep > 0)
		MyceliumExecParallel(keep, nkeep, psprintf("LOCK TABLE %s IN SHARE MODE", qualname),
							 0, NULL);
	return create;
}
