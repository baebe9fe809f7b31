/*-------------------------------------------------------------------------
 *
 * router.h
 *	  Query routing: the planner hook that sends queries over distributed
 *	  and reference tables to the shards they need, and the custom scan
 *	  nodes that run the shard queries.
 *
 * IDENTIFICATION
 *	  src/router/router.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_ROUTER_H
#define MYCELIUM_ROUTER_H

/* in router/planner.c */
extern PGDLLIMPORT bool mycelium_enable_routing;
extern void MyceliumInstallPlannerHook(void);
extern void MyceliumRouterBypass(bool on);

/* in router/scan.c */
extern void MyceliumRegisterCustomScans(void);

#endif							/* MYCELIUM_ROUTER_H */
