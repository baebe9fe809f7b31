/*-------------------------------------------------------------------------
 *
 * shard.h
 *	  Sharding metadata: distributed and reference tables, their shards and
 *	  where each shard lives, the per-backend metadata cache, and the hash
 *	  and range arithmetic that maps a distribution value to a shard.
 *
 * Catalog (sql/parts/50_sharding.sql, identical on every node, changed only
 * in mesh-wide 2PC transactions under MyceliumLockMesh):
 *
 *	 mycelium.dist_table  one row per distributed or reference table
 *	 mycelium.shard       one row per shard of a hash/range table, with the
 *	                      node holding it (exactly one placement per shard)
 *
 * A distributed (hash or range) table keeps an empty "shell" table of its
 * own name on every node; its rows live in shard tables named
 * <table>_<shard_id> in the same schema, each an ordinary table on one node.
 * A reference table is the table itself, with a full copy on every node.
 *
 * Any change to the catalog invalidates, on every node once it commits, the
 * shard cache of every backend and the relcache entry of the shell table
 * (so cached plans over it are rebuilt).
 *
 * IDENTIFICATION
 *	  src/shard/shard.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_SHARD_H
#define MYCELIUM_SHARD_H

#include "access/attnum.h"
#include "fmgr.h"
#include "nodes/pg_list.h"

typedef enum MyceliumDistMethod
{
	MYCELIUM_DIST_HASH = 'h',
	MYCELIUM_DIST_RANGE = 'r',
	MYCELIUM_DIST_REFERENCE = 'n'
} MyceliumDistMethod;

/*
 * One shard.  For hash tables the bounds are int32 hash values, both
 * inclusive (min_hash..max_hash); for range tables they are values of the
 * distribution column's type, lower inclusive and upper exclusive.
 */
typedef struct MyceliumShard
{
	int64		shard_id;
	char	   *shard_name;		/* relation name, unqualified: orders_102008 */
	char		node_name[64];	/* node holding the shard */
	bool		is_local;		/* node_name is this node */
	int32		min_hash;		/* hash tables */
	int32		max_hash;
	Datum		min_value;		/* range tables (in the cache's context) */
	Datum		max_value;
	char	   *min_text;		/* bounds as stored in the catalog */
	char	   *max_text;
} MyceliumShard;

/*
 * A distributed or reference table as the cache holds it.  shards are
 * sorted by their lower bound; shard i of two tables of one colocation
 * group covers the same hash range and lives on the same node.
 */
typedef struct MyceliumDistTable
{
	Oid			relid;			/* the shell (or reference) table */
	char		method;			/* MyceliumDistMethod */
	char	   *schema_name;
	char	   *rel_name;
	AttrNumber	dist_attno;		/* InvalidAttrNumber for reference tables */
	char	   *dist_column;
	Oid			dist_type;
	int32		dist_typmod;
	Oid			dist_collation;
	int			colocation_id;	/* 0 for reference tables */
	FmgrInfo	hash_fn;		/* hash: the type's default hash opclass proc 1 */
	FmgrInfo	cmp_fn;			/* range: the type's default btree opclass proc 1 */
	int			nshards;
	MyceliumShard *shards;		/* palloc'd array of nshards, sorted */
} MyceliumDistTable;

/* first shard_id of a mesh; later ones are max(shard_id) + 1 */
#define MYCELIUM_FIRST_SHARD_ID 102008

/* most shards a hash table may have */
#define MYCELIUM_MAX_SHARD_COUNT 16384

struct MyceliumConnection;

/*
 * in shard/cache.c
 *
 * Everything the cache returns (tables, their shards, the list) stays valid
 * until the end of the current transaction even if an invalidation arrives
 * meanwhile (a rebuilt cache lives in a new memory context; the old one is
 * freed at transaction end).  Callers must not modify it.
 */
extern bool MyceliumAnyDistTables(void);
extern MyceliumDistTable *MyceliumGetDistTable(Oid relid);
extern List *MyceliumAllDistTables(void);
extern void MyceliumShardCacheInvalidate(void);

/* in shard/table_ddl.c */
struct RelationData;
extern char *MyceliumColumnDefaultSql(struct RelationData *rel, AttrNumber attnum,
									  List *dpcontext, bool generated);

/* in shard/hashing.c */
extern int32 MyceliumHashValue(MyceliumDistTable *table, Datum value);
extern int	MyceliumShardIndexForValue(MyceliumDistTable *table, Datum value, bool isnull);
extern char *MyceliumShardQualifiedName(MyceliumDistTable *table, MyceliumShard *shard);
extern void MyceliumHashShardBounds(int shard_count, int index, int32 *min_hash, int32 *max_hash);
extern char *MyceliumShardName(const char *rel_name, int64 shard_id);
extern int	MyceliumCompareRangeValues(MyceliumDistTable *table, Datum a, Datum b);
extern Datum MyceliumRangeBoundIn(Oid type, int32 typmod, const char *text);
extern char *MyceliumRangeBoundOut(Oid type, Datum value);

/* in shard/table_ddl.c */
extern List *MyceliumShardCreateCommands(Oid relid, const char *schema, const char *shard_name);
extern List *MyceliumTableCreateCommands(Oid relid);
extern char *MyceliumInsertColumnList(Oid relid);
extern char *MyceliumNameWithSuffix(const char *name, const char *suffix);

/* in shard/placement.c */
extern void MyceliumCopyRows(const char *source_sql, const char *target_qualname,
							 const char *cols, struct MyceliumConnection **conns, int n);

/* in shard/join.c (add_node, remove_node) */
extern void MyceliumShardCheckNodeJoinable(struct MyceliumConnection *conn, const char *node_name);
extern void MyceliumShardCopyMetadataTo(struct MyceliumConnection *conn);
extern void MyceliumShardResetMetadataOf(struct MyceliumConnection *conn);
extern void MyceliumShardCheckNodeRemovable(const char *node_name);

#endif							/* MYCELIUM_SHARD_H */
