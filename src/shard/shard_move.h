/*-------------------------------------------------------------------------
 *
 * shard_move.h
 *	  Private interface of shard moves, splits, rebalancing and draining
 *	  (move.c, split.c, rebalance.c).
 *
 * A "shard group" is a shard together with every shard colocated with it:
 * the shard of the same index in every table of its colocation group.  A
 * group is moved as a whole, so colocated joins stay local.
 *
 * IDENTIFICATION
 *	  src/shard/shard_move.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_SHARD_MOVE_H
#define MYCELIUM_SHARD_MOVE_H

#include "cluster/cluster.h"
#include "shard/shard.h"
#include "shard/shard_internal.h"

/*
 * One member of a shard group, copied out of the shard cache (which a
 * catalog change may rebuild under our feet).
 */
typedef struct ShardMoveMember
{
	Oid			relid;			/* the distributed (shell) table */
	char		method;
	char	   *schema_name;
	char	   *rel_name;
	char	   *dist_column;
	int64		shard_id;
	char	   *shard_name;
	char		node_name[64];
	int			index;			/* position of the shard in its table */
	int32		min_hash;
	int32		max_hash;
	char	   *min_text;
	char	   *max_text;
} ShardMoveMember;

/*
 * The switch of the moves of one transaction (move_switch.c): the tables
 * whose writes are blocked on every node, and the old copies to drop.
 */
typedef struct ShardMoveSwitch
{
	List	   *relids;			/* the distributed tables (OIDs) */
	List	   *shells;			/* and their qualified names */
	List	   *drop_nodes;		/* per moved group: its source node */
	List	   *drop_tables;	/* and its old shard tables, "s.t_1, s.t_2" */
} ShardMoveSwitch;

/* catalog writes (text parameters), run on every member */
#define SHARD_MOVE_SQL \
	"UPDATE mycelium.shard SET node_name = $2 WHERE shard_id = ANY ($1::bigint[])"

/* in shard/move.c */
extern List *ShardMoveGroupOf(int64 shard_id, bool missing_ok);
extern List *ShardMoveGroupAt(MyceliumDistTable *table, int index);
extern List *ShardMoveColocated(MyceliumDistTable *table);
extern void ShardMoveCheckOwner(MyceliumDistTable *table, const char *action);
extern void ShardMoveCheckIsolation(const char *what);
extern void ShardCheckNodeAdmin(const char *what);
extern MyceliumConnection *ShardMoveConn(List *nodes, MyceliumConnection **conns,
										 const char *node_name);
extern void ShardMoveRunOn(List *nodes, MyceliumConnection **conns, const char *node_name,
						   const char *sql);
extern void ShardMoveCatalogWrite(List *nodes, MyceliumConnection **conns, const char *sql,
								  int nparams, const char *const *params);
extern List *ShardMoveLockMesh(const char *target_node, MyceliumConnection ***conns_out,
							   const char *what);
extern void ShardMoveCreateTable(ShardMoveMember *m, List *nodes, MyceliumConnection **conns,
								 const char *node_name);
extern char *ShardMoveHashExpr(MyceliumDistTable *table, const char *quoted_col,
							   const char *point);
extern void ShardMoveGroupLocked(List *group, List *nodes, MyceliumConnection **conns,
								 const char *target_node, ShardMoveSwitch *sw);

/* in shard/move_switch.c */
extern void ShardMoveBlockWrites(List *group, List *nodes, MyceliumConnection **conns,
								 const char *source_node, const char *tables,
								 ShardMoveSwitch *sw);
extern void ShardMovePrepareTarget(List *group, List *nodes, MyceliumConnection **conns,
								   const char *target_node, const char *tables);
extern void ShardMoveDropLater(ShardMoveSwitch *sw, const char *source_node,
							   const char *tables);
extern void ShardMoveFinish(ShardMoveSwitch *sw, List *nodes, MyceliumConnection **conns);

/* in shard/move_copy.c */
extern char *ShardMoveColumnList(Oid relid);
extern void ShardMoveCopyRows(ShardMoveMember *m, MyceliumConnection *src,
							  MyceliumConnection *dst);

/* in shard/move_online.c */
extern bool ShardMoveOnlinePossible(List *nodes, MyceliumConnection **conns,
									const char *source_node);
extern void ShardMoveCopyOnline(List *group, List *nodes, MyceliumConnection **conns,
								const char *source_node, const char *target_node,
								const char *tables, ShardMoveSwitch *sw);
extern void ShardMoveRemoveLeftovers(List *group, List *nodes, const char *source_node,
									 const char *target_node, const char *tables);

#endif							/* MYCELIUM_SHARD_MOVE_H */
