/*-------------------------------------------------------------------------
 *
 * join.c
 *	  Sharding metadata and membership changes: what a joining node
 *	  receives (add_node), what keeps a node from leaving (remove_node),
 *	  and what a node that left forgets.
 *
 * A joining node gets, inside add_node's distributed transaction, the
 * shell of every distributed table (empty), a full copy of every
 * reference table, and the catalog rows of both; it holds no shard until
 * shards are moved to it.  The catalog cannot be copied row for row like
 * the node catalog: its regclass values only resolve on a node where the
 * tables exist, so rows are written with qualified names after the tables
 * are there.
 *
 * IDENTIFICATION
 *	  src/shard/join.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "shard/shard_internal.h"

/* a row of mycelium.dist_table */
typedef struct CatalogTable
{
	Oid			relid;
	char	   *method;
	char	   *dist_column;	/* NULL for reference tables */
	char	   *colocation_id;
} CatalogTable;

/*
 * MyceliumShardCheckNodeJoinable refuses a joining node that has
 * distributed or reference tables of its own: the mesh's catalog would
 * replace its own, leaving its shards unknown.
 */
void
MyceliumShardCheckNodeJoinable(MyceliumConnection *conn, const char *node_name)
{
	PGresult   *res = MyceliumExec(conn, "SELECT pg_catalog.count(*) FROM mycelium.dist_table",
								   0, NULL);
	int			count = atoi(PQgetvalue(res, 0, 0));

	PQclear(res);
	if (count > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("node \"%s\" has distributed or reference tables of its own", node_name),
				 errdetail("It lists %d tables in mycelium.tables.", count),
				 errhint("Run mycelium.undistribute_table for them on that node first.")));
}

/*
 * catalog_tables returns this node's mycelium.dist_table (latest
 * snapshot) as a List of CatalogTable, by colocation group then relid;
 * rows whose table no longer exists are left out.
 */
static List *
catalog_tables(void)
{
	MemoryContext caller = CurrentMemoryContext;
	List	   *result = NIL;
	uint64		i;

	SPI_connect();
	MyceliumSpiExecLatest("SELECT table_name::pg_catalog.oid, method, dist_column, colocation_id "
						  "FROM mycelium.dist_table ORDER BY colocation_id, table_name",
						  0, NULL, NULL, true);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old;
		CatalogTable *t;
		bool		isnull;
		Oid			relid = DatumGetObjectId(SPI_getbinval(tup, desc, 1, &isnull));
		char	   *column = SPI_getvalue(tup, desc, 3);

		if (!SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
			continue;
		old = MemoryContextSwitchTo(caller);
		t = palloc0(sizeof(CatalogTable));
		t->relid = relid;
		t->method = pstrdup(SPI_getvalue(tup, desc, 2));
		t->dist_column = column ? pstrdup(column) : NULL;
		t->colocation_id = pstrdup(SPI_getvalue(tup, desc, 4));
		result = lappend(result, t);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return result;
}

/*
 * copy_shard_rows writes the shard rows of one table into the catalog of
 * the node behind conn.
 */
static void
copy_shard_rows(MyceliumConnection *conn, Oid relid, const char *qualname)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	uint64		i;

	SPI_connect();
	MyceliumSpiExecLatest("SELECT shard_id::pg_catalog.text, shard_name, min_value, max_value, "
						  "node_name FROM mycelium.shard WHERE table_name = $1::pg_catalog.regclass "
						  "ORDER BY shard_id", 1, types, values, true);
	for (i = 0; i < SPI_processed; i++)
	{
		const char *params[6];
		int			k;

		params[0] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		params[1] = qualname;
		for (k = 2; k <= 5; k++)
			params[k] = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, k);
		PQclear(MyceliumExec(conn, "INSERT INTO mycelium.shard (shard_id, table_name, shard_name, "
							 "min_value, max_value, node_name) VALUES ($1::pg_catalog.int8, "
							 "$2::pg_catalog.regclass, $3, $4, $5, $6)", 6, params));
	}
	SPI_finish();
}

/*
 * MyceliumShardCopyMetadataTo gives the node behind conn (joining the
 * mesh, in add_node's transaction) every shell and reference table and
 * this node's sharding catalog.  Reference tables are locked against
 * writes (EXCLUSIVE) here until commit, so the copy is complete.
 */
void
MyceliumShardCopyMetadataTo(MyceliumConnection *conn)
{
	ListCell   *lc;

	MyceliumExecCommand(conn, "DELETE FROM mycelium.dist_table");
	conn->wrote = true;
	foreach(lc, catalog_tables())
	{
		CatalogTable *t = lfirst(lc);
		bool		reference = strcmp(t->method, "reference") == 0;
		char	   *qualname = ShardQualifiedName(t->relid);
		const char *params[4] = {qualname, t->method, t->dist_column, t->colocation_id};

		LockRelationOid(t->relid, reference ? ExclusiveLock : AccessShareLock);
		ShardEnsureTableOn(conn, t->relid, reference);
		PQclear(MyceliumExec(conn, "INSERT INTO mycelium.dist_table (table_name, method, "
							 "dist_column, colocation_id) VALUES ($1::pg_catalog.regclass, $2, $3, "
							 "$4::pg_catalog.int4)", 4, params));
		copy_shard_rows(conn, t->relid, qualname);
	}
}

/*
 * MyceliumShardResetMetadataOf empties the sharding catalog of a node that
 * leaves the mesh (its shells and reference copies stay as ordinary
 * tables; it held no shards, or remove_node would have refused).
 */
void
MyceliumShardResetMetadataOf(MyceliumConnection *conn)
{
	MyceliumExecCommand(conn, "DELETE FROM mycelium.dist_table");
	conn->wrote = true;
}

/*
 * MyceliumShardCheckNodeRemovable raises 55006 while the node holds any
 * shard (latest snapshot; call under the mesh lock).
 */
void
MyceliumShardCheckNodeRemovable(const char *node_name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(node_name)};
	bool		isnull;
	int64		count;

	SPI_connect();
	MyceliumSpiExecLatest("SELECT pg_catalog.count(*) FROM mycelium.shard WHERE node_name = $1",
						  1, types, values, true);
	count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	if (count > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_IN_USE),
				 errmsg("node \"%s\" still holds " INT64_FORMAT " shards", node_name, count),
				 errdetail("A node can leave the mesh only once its shards are on other nodes."),
				 errhint("Run mycelium.drain_node('%s') first.", node_name)));
}
