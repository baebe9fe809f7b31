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
	List	   *sort;			/* RouterSortKey: ORDER BY sent with limit */
	int64		limit;			/* rows each shard needs to send, -1 = all */
	bool		xact;			/* statement writes: always use the transaction */
	int			refno;			/* which reference of the query (pushdown.c), 0
								 * for the one table of an aggregate or LIMIT spec */
	/* printed at plan time (parameters as $n), set by RouterMakeScan */
	char	   *target_sql;
	char	   *rest_sql;		/* " WHERE ... GROUP BY ... LIMIT ..." */
	List	   *param_ids;		/* external parameters the statement uses */
} RouterScanSpec;

/* one ORDER BY key of a shard statement */
typedef struct RouterSortKey
{
	Expr	   *expr;			/* over the shard (Vars of varno 1) */
	bool		desc;
	bool		nulls_first;
} RouterSortKey;

/* values of the external parameters a shard statement uses */
typedef struct RouterParams
{
	int			nparams;		/* highest id used; $1..$n are sent */
	Oid		   *types;			/* local types, for SPI and output */
	Oid		   *remote_types;	/* built-in types, 0 (infer) for others */
	Datum	   *values;
	bool	   *nulls;
} RouterParams;

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
	Oid		   *remote_types;	/* types sent to a node (NULL: none) */
	bool		prepare;		/* run as a prepared statement on the node */
} RouterTask;

/* in router/deparse.c */
extern bool RouterExprShippable(Node *expr, Index varno);
extern const char *RouterNotBuiltin(Node *node);
extern bool RouterQueryShippable(Query *query, RangeTblEntry *target, char **why);
extern Node *RouterBindParams(Node *node, ParamListInfo params);
/* in router/params.c */
extern void RouterParamValue(ParamListInfo params, int id, Oid *type, Datum *value,
							 bool *isnull);
extern Bitmapset *RouterParamIds(Node *node);
extern RouterParams *RouterFetchParams(List *param_ids, ParamListInfo params);
extern void RouterTaskSetParams(RouterTask *task, RouterParams *rp);
extern char *RouterDeparseExpr(Node *expr, Oid relid);
extern char *RouterDeparseExprList(List *exprs, Oid relid, const char *sep);
extern char *RouterDeparseQuery(Query *query);
extern int	RouterPushSearchPath(void);
extern int	RouterPushTransmissionModes(void);
extern void RouterPopSearchPath(int nestlevel);

/* in router/prune.c */
extern Bitmapset *RouterPruneShards(MyceliumDistTable *table, List *quals, Index varno,
									bool *all);
extern List *RouterTaskNodes(MyceliumDistTable *table, Bitmapset *shards, bool all);

/* in router/pull.c */
extern bool RouterConvertDistRtes(Query *query, Index skip_rti, List **shell_rtes, char **why);
extern bool RouterMarkDistRtes(Query *query, List **relids);
extern void RouterFixPlan(PlannedStmt *stmt, List *shell_rtes, List *specs, bool xact);
extern Oid	RouterShardRowsFunc(void);
extern void RouterTakeScanPlace(CustomScan *cscan, FunctionScan *fs);
extern void RouterSetScanSpec(Query *query, Index rti, int spec);
extern RangeTblEntry *RouterShardRowsRte(Oid relid, int spec, List *exprs, List *colnames,
										 const char *alias);

/* in router/limitpush.c */
extern int	RouterLimitPushdown(Query *q, List **specs);
extern char *RouterSortText(RouterScanSpec *spec);

/* in router/aggpush.c */
typedef struct RouterAggSplit
{
	List	   *group;			/* GROUP BY expressions (the first worker columns) */
	List	   *worker;			/* what each shard returns: groups, partial aggregates */
	List	   *tlist;			/* the combining target list */
	Node	   *having;			/* the combining HAVING */
} RouterAggSplit;
extern Query *RouterAggPushdown(Query *parse, List **specs, List **shell_rtes);
extern bool RouterSplitAggregates(Query *parse, Index rti, RouterAggSplit *split);

/* in router/execute.c */
extern void RouterRunSelectTasks(List *tasks, Tuplestorestate *store, TupleDesc desc,
								 bool xact);
extern uint64 RouterRunModifyTasks(List *tasks, Tuplestorestate *store, TupleDesc desc);

/* in router/scan.c */
extern CustomScan *RouterMakeScan(RouterScanSpec *spec, List *scan_tlist);
extern RouterScanSpec *RouterScanSpecFrom(CustomScan *cscan);
struct ExplainState;
extern void RouterExplainTasks(List *tasks, int shards_total, struct ExplainState *es);
extern bool RouterScanStatePruned(PlanState *ps, int *refno, MyceliumDistTable **table,
								  Bitmapset **shards);

/* in router/pushdown.c */
typedef struct RouterPushdown RouterPushdown;
extern RouterPushdown *RouterPushdownPrepare(Query *parse);
extern void RouterPushdownWrap(PlannedStmt *stmt, RouterPushdown *pd);
extern void RouterRegisterPushdownScan(void);
extern bool RouterShipCheck(Node *node, Bitmapset **param_ids);
extern List *RouterSplitText(const char *text, List *relids);

/* in router/joinshape.c */
extern bool RouterColocatedJoin(Query *q, List **prune_rtis);
extern bool RouterHasKeyFilter(Query *q);

/* in router/joinpush.c */
extern Query *RouterJoinPushdown(Query *parse, List **specs, List **shell_rtes);
extern Plan *RouterMakeJoinScan(FunctionScan *fs, RangeTblFunction *rtf, List *spec,
								bool xact);
extern bool RouterJoinScanPruned(PlanState *ps, int nrefs, MyceliumDistTable **tables,
								 Bitmapset **shards);
extern void RouterRegisterJoinScan(void);

/* in router/modify.c */
extern PlannedStmt *RouterPlanModify(Query *parse, MyceliumDistTable *target);
extern void RouterReplaceModifyTable(PlannedStmt *stmt, Query *parse,
									 MyceliumDistTable *target);
extern void RouterRegisterModifyScan(void);


#endif							/* MYCELIUM_ROUTER_INTERNAL_H */
