/*-------------------------------------------------------------------------
 *
 * undistribute.c
 *	  mycelium.undistribute_table: make a distributed or reference table
 *	  an ordinary table of this node again.
 *
 * In one metadata change: the table's catalog rows go first (on every
 * member; the shards' rows follow by cascade), so that from then on
 * nothing routes the table; then every shard's rows are copied into the
 * local table (locally with INSERT ... SELECT, from other nodes through a
 * cursor in their remote transaction) and the shard is dropped; finally
 * the table's shell or reference copy is dropped on every other member.
 * As with Citus, the table then exists only on the node that ran the
 * function.
 *
 * IDENTIFICATION
 *	  src/shard/undistribute.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "fmgr.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"

#include "shard/shard_internal.h"

PG_FUNCTION_INFO_V1(mycelium_undistribute_table);

/*
 * pull_shards copies every shard's rows into the local table and drops
 * the shard (t is the cache's entry from before the catalog rows were
 * deleted; it stays valid until the end of the transaction).
 */
static void
pull_shards(ShardMesh *mesh, MyceliumDistTable *t, const char *qualname)
{
	char	   *cols = MyceliumInsertColumnList(t->relid);
	int			i;

	for (i = 0; i < t->nshards; i++)
	{
		MyceliumShard *s = &t->shards[i];
		char	   *shard = MyceliumShardQualifiedName(t, s);
		MyceliumConnection *conn = ShardMeshConn(mesh, s->node_name);

		if (conn == NULL)
			ShardRunLocal(psprintf("INSERT INTO %s (%s) SELECT %s FROM ONLY %s",
								   qualname, cols, cols, shard), 0, NULL);
		else
			ShardPullRows(conn, shard, qualname, cols);
		ShardRunOn(mesh, s->node_name, list_make1(psprintf("DROP TABLE %s", shard)));
	}
}

/*
 * mycelium.undistribute_table(table_name regclass) returns void
 *
 * Brings every row of a distributed or reference table back into the
 * table on this node and removes its shards, its other copies and its
 * metadata everywhere.  Only the owner or a superuser may.
 */
Datum
mycelium_undistribute_table(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Relation	rel;
	ShardMesh  *mesh;
	MyceliumDistTable *t;
	char	   *qualname;
	const char *param;
	int			i;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table name must not be null")));
	relid = PG_GETARG_OID(0);
	MyceliumEnsureLocalNode();
	rel = ShardOpenOwnedTable(relid, AccessShareLock, "undistribute");
	qualname = ShardQualifiedName(relid);
	mesh = ShardLockMesh("undistribute a table");
	LockRelationOid(relid, AccessExclusiveLock);
	t = MyceliumGetDistTable(relid);
	if (t == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table \"%s\" is not a distributed or reference table",
						ShardDisplayName(relid))));

	param = qualname;
	ShardCatalogWrite(mesh, "DELETE FROM mycelium.dist_table WHERE table_name = $1::pg_catalog.regclass",
					  1, &param);
	pull_shards(mesh, t, qualname);
	for (i = 0; i < mesh->nremote; i++)
	{
		MyceliumExecCommand(mesh->remote[i], psprintf("DROP TABLE %s", qualname));
		mesh->remote[i]->wrote = true;
	}
	relation_close(rel, NoLock);
	PG_RETURN_VOID();
}
