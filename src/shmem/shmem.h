/*-------------------------------------------------------------------------
 *
 * shmem.h
 *	  Mycelium's shared memory: per-peer health and connection counts.
 *
 * IDENTIFICATION
 *	  src/shmem/shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_SHMEM_H
#define MYCELIUM_SHMEM_H

#include "datatype/timestamp.h"

#define MYCELIUM_MAX_PEERS 256

/* What this node knows about one peer (keyed by node name). */
typedef struct MyceliumPeerState
{
	char		node_name[64];	/* "" = free slot */
	TimestampTz last_ok;		/* last successful health check, 0 = never */
	TimestampTz failing_since;	/* first failed check since last_ok, 0 = none */
	bool		down;			/* silent for mycelium.peer_timeout */
	int			max_connections;	/* peer's max_connections, 0 = unknown */
	int			open_connections;	/* connections of all local backends */
	int			waiters;		/* backends waiting for a slot of this pool */
} MyceliumPeerState;

/* A request for connection slots of one peer (MyceliumPeerTryAcquire). */
typedef struct MyceliumPeerRequest
{
	const char *node_name;
	int			count;			/* slots wanted now */
	int			held;			/* slots the caller holds already */
} MyceliumPeerRequest;

typedef enum MyceliumPoolResult
{
	MYCELIUM_POOL_ACQUIRED,		/* every slot taken */
	MYCELIUM_POOL_FULL,			/* none taken: wait for a release */
	MYCELIUM_POOL_IMPOSSIBLE	/* none taken: the request exceeds the limit */
} MyceliumPoolResult;

/* in shmem/shared_state.c */
extern void MyceliumShmemRequest(void);
extern void MyceliumShmemStartup(void);
extern bool MyceliumShmemReady(void);
extern bool MyceliumPeerIsDown(const char *node_name);
extern void MyceliumPeerReportHealth(const char *node_name, bool ok,
									 TimestampTz now, int peer_timeout_ms);
extern MyceliumPoolResult MyceliumPeerTryAcquire(const MyceliumPeerRequest *reqs, int n,
												 bool enqueue, bool *enqueued,
												 int *full_index, int *limit_out);
extern bool MyceliumPeerWaitGranted(void);
extern bool MyceliumPeerStopWaiting(void);
extern void MyceliumPeerCancelWait(void);
extern bool MyceliumPeerHasWaiters(const char *node_name);
extern void MyceliumPeerReleaseConnection(const char *node_name);
extern void MyceliumPeerSetMaxConnections(const char *node_name, int max_connections);
extern bool MyceliumPeerMaxConnectionsKnown(const char *node_name);
extern void MyceliumPeerForget(const char *node_name);

#endif							/* MYCELIUM_SHMEM_H */
