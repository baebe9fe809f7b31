/*-------------------------------------------------------------------------
 *
 * shared_state.c
 *	  Per-peer state shared by all backends and workers of this node.
 *
 * Locking protocol: one LWLock (tranche "mycelium") protects the whole peer
 * array.  Every access is a short critical section that copies values in or
 * out; nothing waits or allocates while holding it.  The array is small
 * (MYCELIUM_MAX_PEERS) and searched linearly by node name.
 *
 * Writers: the maintenance worker (health), every backend that opens or
 * closes a node-to-node connection (connection counts, a peer's
 * max_connections).  Readers: mycelium.nodes (down or not), the connection
 * layer (shared pool limit).
 *
 * IDENTIFICATION
 *	  src/shmem/shared_state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "config/config.h"
#include "shmem/shmem.h"

typedef struct MyceliumSharedState
{
	LWLock	   *lock;
	MyceliumPeerState peers[MYCELIUM_MAX_PEERS];
} MyceliumSharedState;

static MyceliumSharedState *shared = NULL;

/*
 * MyceliumShmemRequest asks for our segment and lock; called from the
 * shmem_request_hook.
 */
void
MyceliumShmemRequest(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(MyceliumSharedState)));
	RequestNamedLWLockTranche("mycelium", 1);
}

/*
 * MyceliumShmemStartup attaches to (or creates) the segment; called from
 * the shmem_startup_hook with AddinShmemInitLock held by our caller.
 */
void
MyceliumShmemStartup(void)
{
	bool		found;

	shared = ShmemInitStruct("mycelium", sizeof(MyceliumSharedState), &found);
	if (!found)
	{
		memset(shared->peers, 0, sizeof(shared->peers));
		shared->lock = &(GetNamedLWLockTranche("mycelium"))->lock;
	}
}

/*
 * MyceliumShmemReady says whether shared state exists (the library was
 * preloaded).
 */
bool
MyceliumShmemReady(void)
{
	return shared != NULL;
}

/*
 * find_peer returns the slot of a peer, creating it when create is true and
 * a slot is free.  Caller holds the lock (exclusively when creating).
 */
static MyceliumPeerState *
find_peer(const char *node_name, bool create)
{
	int			i;
	MyceliumPeerState *free_slot = NULL;

	for (i = 0; i < MYCELIUM_MAX_PEERS; i++)
	{
		MyceliumPeerState *p = &shared->peers[i];

		if (p->node_name[0] == '\0')
		{
			if (free_slot == NULL)
				free_slot = p;
			continue;
		}
		if (strcmp(p->node_name, node_name) == 0)
			return p;
	}
	if (create && free_slot != NULL)
	{
		memset(free_slot, 0, sizeof(*free_slot));
		strlcpy(free_slot->node_name, node_name, sizeof(free_slot->node_name));
		return free_slot;
	}
	return NULL;
}

/*
 * MyceliumPeerIsDown says whether the maintenance worker has marked a peer
 * down (silent for longer than mycelium.peer_timeout).
 */
bool
MyceliumPeerIsDown(const char *node_name)
{
	MyceliumPeerState *p;
	bool		down = false;

	if (shared == NULL)
		return false;
	LWLockAcquire(shared->lock, LW_SHARED);
	p = find_peer(node_name, false);
	if (p)
		down = p->down;
	LWLockRelease(shared->lock);
	return down;
}

/*
 * MyceliumPeerReportHealth records one health check.  A peer is marked down
 * once its checks have failed continuously for peer_timeout_ms, and up again
 * at the first success.
 */
void
MyceliumPeerReportHealth(const char *node_name, bool ok, TimestampTz now,
						 int peer_timeout_ms)
{
	MyceliumPeerState *p;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	p = find_peer(node_name, true);
	if (p)
	{
		if (ok)
		{
			p->last_ok = now;
			p->failing_since = 0;
			p->down = false;
		}
		else
		{
			if (p->failing_since == 0)
				p->failing_since = now;
			if (TimestampDifferenceExceeds(p->failing_since, now, peer_timeout_ms))
				p->down = true;
		}
	}
	LWLockRelease(shared->lock);
}

/*
 * MyceliumPeerAcquireConnection counts one more connection to a peer unless
 * that would exceed the shared pool limit: mycelium.max_shared_pool_size, or
 * when that is 0, 80% of the peer's max_connections once known.  Returns
 * false (with the limit in *limit_out) when the pool is full.
 */
bool
MyceliumPeerAcquireConnection(const char *node_name, int limit_override,
							  int *limit_out)
{
	MyceliumPeerState *p;
	int			limit;
	bool		ok = true;

	if (shared == NULL)
		return true;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	p = find_peer(node_name, true);
	if (p)
	{
		limit = limit_override > 0 ? limit_override : (p->max_connections * 8) / 10;
		if (limit > 0 && p->open_connections >= limit)
		{
			ok = false;
			*limit_out = limit;
		}
		else
			p->open_connections++;
	}
	LWLockRelease(shared->lock);
	return ok;
}

/*
 * MyceliumPeerReleaseConnection undoes MyceliumPeerAcquireConnection.
 */
void
MyceliumPeerReleaseConnection(const char *node_name)
{
	MyceliumPeerState *p;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	p = find_peer(node_name, false);
	if (p && p->open_connections > 0)
		p->open_connections--;
	LWLockRelease(shared->lock);
}

/*
 * MyceliumPeerSetMaxConnections records a peer's max_connections, learnt on
 * the first connection to it.
 */
void
MyceliumPeerSetMaxConnections(const char *node_name, int max_connections)
{
	MyceliumPeerState *p;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	p = find_peer(node_name, true);
	if (p)
		p->max_connections = max_connections;
	LWLockRelease(shared->lock);
}

/*
 * MyceliumPeerMaxConnectionsKnown says whether a peer's max_connections has
 * been learnt already.
 */
bool
MyceliumPeerMaxConnectionsKnown(const char *node_name)
{
	MyceliumPeerState *p;
	bool		known = true;

	if (shared == NULL)
		return true;
	LWLockAcquire(shared->lock, LW_SHARED);
	p = find_peer(node_name, false);
	known = (p != NULL && p->max_connections > 0);
	LWLockRelease(shared->lock);
	return known;
}

/*
 * MyceliumPeerForget drops the health state of a peer that left the mesh,
 * keeping its connection count (backends may still hold connections).
 */
void
MyceliumPeerForget(const char *node_name)
{
	MyceliumPeerState *p;

	if (shared == NULL)
		return;
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	p = find_peer(node_name, false);
	if (p)
	{
		p->down = false;
		p->last_ok = 0;
		p->failing_since = 0;
	}
	LWLockRelease(shared->lock);
}
