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
 * Shared pool waits: the slots for all the peers of one request are taken
 * at once, under the lock, or not at all, so a backend never holds some
 * slots of a request while it waits for the others (no deadlock between
 * fan-outs that want the same peers).  A backend that finds a pool full
 * queues its request in its own waiter slot (indexed by pgprocno) and
 * sleeps on its latch; whoever releases a slot of a peer with waiters hands
 * the free slots, under the lock, to the queued requests that now fit,
 * oldest first, and sets only their latches (no thundering herd).  The
 * per-peer waiters count tells backends to give back idle connections
 * instead of caching them.
 *
 * IDENTIFICATION
 *	  src/shmem/shared_state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "lib/ilist.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"
#include "utils/memutils.h"

#include "config/config.h"
#include "shmem/shmem.h"

/* states of a backend's request for shared pool slots */
#define POOL_IDLE		0		/* not waiting */
#define POOL_WAITING	1		/* queued */
#define POOL_GRANTED	2		/* slots taken for it by a release */

/* One backend's queued request for pool slots (slot = its pgprocno). */
typedef struct MyceliumPoolWaiter
{
	dlist_node	node;			/* in pool_queue while POOL_WAITING */
	int			state;
	int			nwant;			/* peers asked for */
	int16		peer[MYCELIUM_MAX_PEERS];	/* index in peers[] */
	int16		count[MYCELIUM_MAX_PEERS];	/* slots wanted of it */
} MyceliumPoolWaiter;

typedef struct MyceliumSharedState
{
	LWLock	   *lock;
	dlist_head	pool_queue;		/* waiting requests, oldest first */
	int			nwaiters;		/* length of waiters[] (MaxBackends) */
	MyceliumPoolWaiter *waiters;	/* follows this struct in the segment */
	MyceliumPeerState peers[MYCELIUM_MAX_PEERS];
} MyceliumSharedState;

static MyceliumSharedState *shared = NULL;
static int *wake_buffer = NULL;	/* pgprocnos to wake, nwaiters long */

/*
 * segment_size is the size of the segment: the state, then one waiter
 * slot per backend.
 */
static Size
segment_size(void)
{
	return add_size(MAXALIGN(sizeof(MyceliumSharedState)),
					mul_size(MaxBackends, sizeof(MyceliumPoolWaiter)));
}

/*
 * MyceliumShmemRequest asks for our segment and lock; called from the
 * shmem_request_hook.
 */
void
MyceliumShmemRequest(void)
{
	RequestAddinShmemSpace(segment_size());
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

	shared = ShmemInitStruct("mycelium", segment_size(), &found);
	if (!found)
	{
		memset(shared, 0, segment_size());
		dlist_init(&shared->pool_queue);
		shared->nwaiters = MaxBackends;
		shared->waiters = (MyceliumPoolWaiter *)
			((char *) shared + MAXALIGN(sizeof(MyceliumSharedState)));
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
 * pool_limit returns the shared pool limit of a peer:
 * mycelium.max_shared_pool_size when set, else 80% of the peer's
 * max_connections; 0 means no limit (not known yet).  Caller holds the lock.
 */
static int
pool_limit(MyceliumPeerState *p)
{
	return mycelium_max_shared_pool_size > 0 ? mycelium_max_shared_pool_size :
		(p->max_connections * 8) / 10;
}

/*
 * waiter_fits says whether every pool a waiter asks for has room for it
 * now.  Caller holds the lock.
 */
static bool
waiter_fits(MyceliumPoolWaiter *w)
{
	int			i;

	for (i = 0; i < w->nwant; i++)
	{
		MyceliumPeerState *p = &shared->peers[w->peer[i]];
		int			limit = pool_limit(p);

		if (limit > 0 && p->open_connections + w->count[i] > limit)
			return false;
	}
	return true;
}

/*
 * waiter_leave takes a waiter off the queue and out of the waiter counts of
 * its peers, with the given new state.  Caller holds the lock exclusively.
 */
static void
waiter_leave(MyceliumPoolWaiter *w, int state)
{
	int			i;

	dlist_delete(&w->node);
	for (i = 0; i < w->nwant; i++)
		if (shared->peers[w->peer[i]].waiters > 0)
			shared->peers[w->peer[i]].waiters--;
	w->state = state;
}

/*
 * grant_waiters hands free slots to the queued waiters whose whole request
 * fits now, oldest first, and returns in wake[] the pgprocnos of those to
 * wake (after the lock is released).  A request that does not fit yet does
 * not stop a smaller one behind it.  Caller holds the lock exclusively.
 */
static int
grant_waiters(int *wake)
{
	dlist_mutable_iter it;
	int			nwake = 0;

	dlist_foreach_modify(it, &shared->pool_queue)
	{
		MyceliumPoolWaiter *w = dlist_container(MyceliumPoolWaiter, node, it.cur);
		int			i;

		if (!waiter_fits(w))
			continue;
		for (i = 0; i < w->nwant; i++)
			shared->peers[w->peer[i]].open_connections += w->count[i];
		waiter_leave(w, POOL_GRANTED);
		wake[nwake++] = w - shared->waiters;
	}
	return nwake;
}

/*
 * get_wake_buffer returns this backend's array for grant_waiters, made on
 * first use (never under the lock).
 */
static int *
get_wake_buffer(void)
{
	if (wake_buffer == NULL)
		wake_buffer = MemoryContextAlloc(TopMemoryContext, sizeof(int) * shared->nwaiters);
	return wake_buffer;
}

/*
 * wake_all sets the latches of the processes grant_waiters granted slots.
 */
static void
wake_all(const int *wake, int nwake)
{
	int			i;

	for (i = 0; i < nwake; i++)
		SetLatch(&GetPGProcByNumber(wake[i])->procLatch);
}

/*
 * enqueue_self records this backend's request in its waiter slot and puts
 * it at the end of the queue.  Caller holds the lock exclusively; peers[]
 * are the slots of reqs[].
 */
static void
enqueue_self(const MyceliumPeerRequest *reqs, MyceliumPeerState **peers, int n)
{
	MyceliumPoolWaiter *w = &shared->waiters[MyProc->pgprocno];
	int			i;

	w->nwant = 0;
	for (i = 0; i < n; i++)
	{
		if (peers[i] == NULL)
			continue;
		w->peer[w->nwant] = peers[i] - shared->peers;
		w->count[w->nwant] = reqs[i].count;
		w->nwant++;
		peers[i]->waiters++;
	}
	w->state = POOL_WAITING;
	dlist_push_tail(&shared->pool_queue, &w->node);
}

/*
 * MyceliumPeerTryAcquire takes, at once, reqs[i].count more connection
 * slots of every peer reqs[i].node_name, or none when any of those pools
 * lacks room.  When it takes none it says which pool is full and its limit
 * (*full_index, *limit_out), and returns MYCELIUM_POOL_IMPOSSIBLE if that
 * request can never fit (reqs[i].held + reqs[i].count > limit: what this
 * backend holds already plus what it asks for), MYCELIUM_POOL_FULL
 * otherwise.  With enqueue, a full pool puts the caller in the queue of
 * waiters (*enqueued set): releases then grant it the slots directly and
 * set its latch (MyceliumPeerWaitGranted says when); it must then call
 * MyceliumPeerStopWaiting or MyceliumPeerCancelWait.
 */
MyceliumPoolResult
MyceliumPeerTryAcquire(const MyceliumPeerRequest *reqs, int n, bool enqueue,
					   bool *enqueued, int *full_index, int *limit_out)
{
	MyceliumPeerState *peers[MYCELIUM_MAX_PEERS];
	MyceliumPoolResult result = MYCELIUM_POOL_ACQUIRED;
	int			i;

	if (shared == NULL || n == 0)
		return MYCELIUM_POOL_ACQUIRED;
	Assert(n <= MYCELIUM_MAX_PEERS);
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < n; i++)
	{
		int			limit;

		peers[i] = find_peer(reqs[i].node_name, true);
		if (peers[i] == NULL || result != MYCELIUM_POOL_ACQUIRED)
			continue;			/* no slot to count in: do not limit */
		limit = pool_limit(peers[i]);
		if (limit > 0 && peers[i]->open_connections + reqs[i].count > limit)
		{
			result = reqs[i].held + reqs[i].count > limit ?
				MYCELIUM_POOL_IMPOSSIBLE : MYCELIUM_POOL_FULL;
			*full_index = i;
			*limit_out = limit;
		}
	}
	if (result == MYCELIUM_POOL_ACQUIRED)
	{
		for (i = 0; i < n; i++)
			if (peers[i])
				peers[i]->open_connections += reqs[i].count;
	}
	else if (result == MYCELIUM_POOL_FULL && enqueue && MyProc != NULL &&
			 MyProc->pgprocno < shared->nwaiters &&
			 shared->waiters[MyProc->pgprocno].state == POOL_IDLE)
	{
		enqueue_self(reqs, peers, n);
		*enqueued = true;
	}
	LWLockRelease(shared->lock);
	return result;
}

/*
 * MyceliumPeerWaitGranted says whether this backend's queued request has
 * been granted.
 */
bool
MyceliumPeerWaitGranted(void)
{
	bool		granted;

	LWLockAcquire(shared->lock, LW_SHARED);
	granted = shared->waiters[MyProc->pgprocno].state == POOL_GRANTED;
	LWLockRelease(shared->lock);
	return granted;
}

/*
 * MyceliumPeerStopWaiting leaves the queue of waiters; returns true when
 * the request was granted meanwhile (the caller holds the slots now).
 */
bool
MyceliumPeerStopWaiting(void)
{
	MyceliumPoolWaiter *w = &shared->waiters[MyProc->pgprocno];
	bool		granted;

	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	granted = w->state == POOL_GRANTED;
	if (w->state == POOL_WAITING)
		waiter_leave(w, POOL_IDLE);
	w->state = POOL_IDLE;
	LWLockRelease(shared->lock);
	return granted;
}

/*
 * MyceliumPeerCancelWait leaves the queue of waiters and gives back the
 * slots if they were granted meanwhile; error and exit cleanup of a wait.
 */
void
MyceliumPeerCancelWait(void)
{
	MyceliumPoolWaiter *w;
	int		   *wake;
	int			nwake = 0;
	int			i;

	if (shared == NULL || MyProc == NULL || MyProc->pgprocno >= shared->nwaiters)
		return;
	w = &shared->waiters[MyProc->pgprocno];
	wake = get_wake_buffer();
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	if (w->state == POOL_WAITING)
		waiter_leave(w, POOL_IDLE);
	else if (w->state == POOL_GRANTED)
	{
		for (i = 0; i < w->nwant; i++)
			shared->peers[w->peer[i]].open_connections -= w->count[i];
		w->state = POOL_IDLE;
		nwake = grant_waiters(wake);
	}
	LWLockRelease(shared->lock);
	wake_all(wake, nwake);
}

/*
 * MyceliumPeerHasWaiters says whether some backend waits for a slot of a
 * peer's pool, so an idle connection to it should be given back.
 */
bool
MyceliumPeerHasWaiters(const char *node_name)
{
	MyceliumPeerState *p;
	bool		waiters = false;

	if (shared == NULL)
		return false;
	LWLockAcquire(shared->lock, LW_SHARED);
	p = find_peer(node_name, false);
	if (p)
		waiters = p->waiters > 0;
	LWLockRelease(shared->lock);
	return waiters;
}

/*
 * MyceliumPeerReleaseConnection gives back one slot of a peer's pool and
 * hands the free slots to waiters whose requests now fit.
 */
void
MyceliumPeerReleaseConnection(const char *node_name)
{
	MyceliumPeerState *p;
	int		   *wake;
	int			nwake = 0;

	if (shared == NULL)
		return;
	wake = get_wake_buffer();
	LWLockAcquire(shared->lock, LW_EXCLUSIVE);
	p = find_peer(node_name, false);
	if (p && p->open_connections > 0)
	{
		p->open_connections--;
		if (p->waiters > 0)
			nwake = grant_waiters(wake);
	}
	LWLockRelease(shared->lock);
	wake_all(wake, nwake);
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
