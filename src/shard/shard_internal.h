/*-------------------------------------------------------------------------
 *
 * shard_internal.h
 *	  Private helpers of the table policies (create_distributed_table,
 *	  create_reference_table, add_range_shard, undistribute_table): the
 *	  locked mesh, catalog writes on every node, table checks.
 *
 * IDENTIFICATION
 *	  src/shard/shard_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_SHARD_INTERNAL_H
#define MYCELIUM_SHARD_INTERNAL_H

#include "cluster/cluster.h"
#include "shard/shard.h"
#include "utils/relcache.h"

/* the mesh as a metadata change holds it (see cluster/metadata.c) */
typedef struct ShardMesh
{
	List	   *nodes;			/* MyceliumNode, node_id order */
	MyceliumConnection **conns; /* parallel to nodes; NULL for the local node */
	MyceliumConnection **remote;	/* the usable remote connections */
	int			nremote;
} ShardMesh;

/* the user saved while a metadata change opens its connections */
typedef struct ShardRole
{
	Oid			userid;
	int			sec_context;
	bool		switched;
} ShardRole;

/* in placement.c */
extern void ShardBeginMeshRole(ShardRole *save, const char *what);
extern void ShardEndMeshRole(ShardRole *save);
extern void ShardRemoteAsCaller(MyceliumConnection *conn, bool enter);
extern ShardMesh *ShardLockMesh(const char *what);
extern MyceliumConnection *ShardMeshConn(ShardMesh *mesh, const char *node_name);
extern List *ShardActiveNodes(ShardMesh *mesh);
extern void ShardRunOn(ShardMesh *mesh, const char *node_name, List *commands);
extern void ShardRunLocal(const char *sql, int nparams, const char *const *params);
extern void ShardRunLocalDdl(const char *sql);
extern void ShardCatalogWriteLocal(const char *sql, int nparams, const char *const *params);
extern void ShardCatalogWrite(ShardMesh *mesh, const char *sql, int nparams,
							  const char *const *params);
extern int64 ShardNextShardId(void);
extern int	ShardNextColocationId(void);
extern char *ShardQualifiedName(Oid relid);
extern void ShardEnsureTableOn(MyceliumConnection *conn, Oid relid, bool copy_rows);
extern void ShardInsertShardRow(ShardMesh *mesh, const char *qualname, int64 shard_id,
								const char *shard_name, const char *min_value,
								const char *max_value, const char *node_name);
extern void ShardPullRows(MyceliumConnection *conn, const char *source_qualname,
						  const char *target_qualname, const char *cols);

/* in validate.c */
extern Relation ShardOpenOwnedTable(Oid relid, LOCKMODE lockmode, const char *what);
extern void ShardCheckDistributable(Relation rel, bool reference);
extern void ShardCheckUniqueIncludes(Relation rel, AttrNumber attno, const char *column);
extern void ShardCheckNotDistributed(Oid relid);
extern char *ShardDisplayName(Oid relid);

#endif							/* MYCELIUM_SHARD_INTERNAL_H */
