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
} MyceliumPeerState;

/* in shmem/shared_state.c */
extern void MyceliumShmemRequest(void);
extern void MyceliumShmemStartup(void);
extern bool MyceliumShmemReady(void);
extern bool MyceliumPeerIsDown(const char *node_name);
extern void MyceliumPeerReportHealth(const char *node_name, bool ok,
									 TimestampTz now, int peer_timeout_ms);
extern bool MyceliumPeerAcquireConnection(const char *node_name, int limit_override,
										  int *limit_out);
extern void MyceliumPeerReleaseConnection(const char *node_name);
extern void MyceliumPeerSetMaxConnections(const char *node_name, int max_connections);
extern bool MyceliumPeerMaxConnectionsKnown(const char *node_name);
extern void MyceliumPeerForget(const char *node_name);

#endif							/* MYCELIUM_SHMEM_H */
