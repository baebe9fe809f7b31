/*-------------------------------------------------------------------------
 *
 * router_internal.h
 *	  Private interfaces of the query router.
 *
 * A routed plan replaces each distributed table of the query by a custom
 * scan ("MyceliumScan") that fetches its rows from the shards, with the
 * quals that can run remotely pushed into the shard queries, or runs a
 * whole INSERT/UPDATE/DELETE on the shards ("MyceliumModify").  Shard
 * queries are built at execution time, after parameter values are known,
 * so prepared statements prune shards per execution.
 *
 * IDENTIFICATION
 *	  src/router/router_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_ROUTER_INTERNAL_H
#define MYCELIUM_ROUTER_INTERNAL_H

#include "nodes/bitmapset.h"
#include "nodes/execnodes.h"
#include "nodes/extensible.h"
#include "nodes/parsenodes.h"
#include "nodes/plannodes.h"
#include "utils/tuplestore.h"

#include "shard/shard.h"

/*
 * What a MyceliumScan fetches from each shard, relative to one shard
 * relation aliased "t" (Vars have varno 1):
 *   SELECT <target> FROM <shard> t WHERE <quals> [GROUP BY <group>]
 */
typedef struct RouterScanSpec
{
	Oid			relid;			/* the distributed table */
	List	   *target;			/* output expressions, one per scan column */
	List	   *quals;			/* shippable quals, implicitly ANDed */
	List	   *group;			/* GROUP BY expressions (partial aggregation) */
	int64		limit;			/* rows each shard needs to send, -1 = all */
	bool		xact;			/* statement writes: always use the transaction */
} RouterScanSpec;

/* one unit of remote or local work: a statement on one node */
typedef struct RouterTask
{
	char	   *node_name;
	bool		is_local;
	char	   *shards;			/* shard ids, for EXPLAIN: "102008, 102011" */
	char	   *sql;
	int			nparams;		/* $1..$n of sql */
	Oid		   *types;
	Datum	   *values;
	bool	   *nulls;
	bool		counts;			/* its rows count and are returned (not
								 * the remote copies of a reference table) */
} RouterTask;

/* in router/deparse.c */
extern bool RouterExprShippable(Node *expr, Index varno);
extern bool RouterQueryShippable(Query *query, RangeTblEntry *target, char **why);
extern Node *RouterBindParams(Node *node, ParamListInfo params);
extern char *RouterDeparseExpr(Node *expr, Oid relid);
extern char *RouterDeparseExprList(List *exprs, Oid relid, const char *sep);
extern char *RouterDeparseQuery(Query *query);
extern int	RouterPushSearchPath(void);
extern void RouterPopSearchPath(int nestlevel);

/* in router/prune.c */
extern Bitmapset *RouterPruneShards(MyceliumDistTable *table, List *quals, Index varno,
									bool *all);
extern List *RouterTaskNodes(MyceliumDistTable *table, Bitmapset *shards, bool all);

/* in router/pull.c */
extern bool RouterConvertDistRtes(Query *query, Index skip_rti, List **shell_rtes, char **why);
extern void RouterFixPlan(PlannedStmt *stmt, List *shell_rtes, List *specs, bool xact);
extern Oid	RouterShardRowsFunc(void);
extern RangeTblEntry *RouterShardRowsRte(Oid relid, int spec, List *exprs, List *colnames,
										 const char *alias);

/* in router/aggpush.c */
extern Query *RouterAggPushdown(Query *parse, List **specs, List **shell_rtes);

/* in router/execute.c */
extern void RouterRunSelectTasks(List *tasks, Tuplestorestate *store, TupleDesc desc,
								 bool xact);
extern uint64 RouterRunModifyTasks(List *tasks, Tuplestorestate *store, TupleDesc desc);

/* in router/scan.c */
extern CustomScan *RouterMakeScan(RouterScanSpec *spec, List *scan_tlist);
extern RouterScanSpec *RouterScanSpecFrom(CustomScan *cscan);
struct ExplainState;
extern void RouterExplainTasks(List *tasks, int shards_total, struct ExplainState *es);

/* in router/modify.c */
extern PlannedStmt *RouterPlanModify(Query *parse, MyceliumDistTable *target);
extern void RouterReplaceModifyTable(PlannedStmt *stmt, Query *parse,
									 MyceliumDistTable *target);
extern void RouterRegisterModifyScan(void);


#endif							/* MYCELIUM_ROUTER_INTERNAL_H */
