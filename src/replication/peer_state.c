/*-------------------------------------------------------------------------
 *
 * peer_state.c
 *	  Shared memory for per-peer replication state (see peer_state.h).
 *
 * Locking protocol: one LWLock (tranche "mycelium_repl") guards the peer
 * array and the launcher's latch pointer.  Every access is a short copy or
 * an update callback that must not allocate, wait or raise.
 *
 * IDENTIFICATION
 *	  src/replication/peer_state.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "replication/peer_state.h"

typedef struct MyceliumReplShared
{
	LWLock	   *lock;
	Latch	   *launcher_latch;
	MyceliumReplPeer peers[MYCELIUM_REPL_MAX_PEERS];
	/* this node's version vector (see vclock.c) */
	bool		vector_loaded;	/* merged with mycelium.version_vector */
	uint64		vector_generation;	/* bumped at every advance */
	int			vector_len;
	char		vector_nodes[MYCELIUM_REPL_MAX_PEERS][NAMEDATALEN];
	TimestampTz vector_times[MYCELIUM_REPL_MAX_PEERS];
	/* the hybrid logical clock (see vclock.c) */
	bool		hlc_loaded;		/* recovered from WAL since server start */
	TimestampTz hlc_last;		/* the latest value stamped or observed */
	bool		hlc_busy[MYCELIUM_HLC_ORIGINS]; /* origins claimed by committers */
	/* what each peer had seen, from its latest context (tombstone purge) */
	int			seen_len;
	char		seen_nodes[MYCELIUM_REPL_MAX_PEERS][NAMEDATALEN];
	char		seen_peers[MYCELIUM_REPL_MAX_PEERS][NAMEDATALEN];
	TimestampTz seen[MYCELIUM_REPL_MAX_PEERS][MYCELIUM_REPL_MAX_PEERS];
} MyceliumReplShared;

static MyceliumReplShared *repl = NULL;

/*
 * MyceliumReplShmemRequest asks for the segment; from shmem_request_hook.
 */
void
MyceliumReplShmemRequest(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(MyceliumReplShared)));
	RequestNamedLWLockTranche("mycelium_repl", 1);
}

/*
 * MyceliumReplShmemStartup attaches to (or creates) the segment; the caller
 * holds AddinShmemInitLock.
 */
void
MyceliumReplShmemStartup(void)
{
	bool		found;

	repl = ShmemInitStruct("mycelium_repl", sizeof(MyceliumReplShared), &found);
	if (!found)
	{
		memset(repl, 0, sizeof(MyceliumReplShared));
		repl->lock = &(GetNamedLWLockTranche("mycelium_repl"))->lock;
	}
}

/*
 * find_peer returns the slot of a peer, creating it when asked and a slot
 * is free; the caller holds the lock (exclusively to create).
 */
static MyceliumReplPeer *
find_peer(const char *node_name, bool create)
{
	MyceliumReplPeer *free_slot = NULL;
	int			i;

	for (i = 0; i < MYCELIUM_REPL_MAX_PEERS; i++)
	{
		MyceliumReplPeer *p = &repl->peers[i];

		if (p->node_name[0] == '\0')
		{
			if (free_slot == NULL)
				free_slot = p;
		}
		else if (strcmp(p->node_name, node_name) == 0)
			return p;
	}
	if (create && free_slot)
	{
		memset(free_slot, 0, sizeof(*free_slot));
		strlcpy(free_slot->node_name, node_name, sizeof(free_slot->node_name));
		return free_slot;
	}
	return NULL;
}

/*
 * MyceliumReplPeerGet copies a peer's state into *out; false if unknown.
 */
bool
MyceliumReplPeerGet(const char *node_name, MyceliumReplPeer *out)
{
	MyceliumReplPeer *p;

	if (repl == NULL)
		return false;
	LWLockAcquire(repl->lock, LW_SHARED);
	p = find_peer(node_name, false);
	if (p)
		memcpy(out, p, sizeof(*out));
	LWLockRelease(repl->lock);
	return p != NULL;
}

/*
 * MyceliumReplPeerUpdate runs update(peer, arg) on a peer's state (created
 * if new) under the lock.  update must only assign fields.
 */
void
MyceliumReplPeerUpdate(const char *node_name,
					   void (*update) (MyceliumReplPeer *peer, void *arg), void *arg)
{
	MyceliumReplPeer *p;

	if (repl == NULL)
		return;
	LWLockAcquire(repl->lock, LW_EXCLUSIVE);
	p = find_peer(node_name, true);
	if (p)
		update(p, arg);
	LWLockRelease(repl->lock);
}

/*
 * MyceliumReplPeerSnapshot copies up to max known peers into out; returns
 * how many.
 */
int
MyceliumReplPeerSnapshot(MyceliumReplPeer *out, int max)
{
	int			n = 0;
	int			i;

	if (repl == NULL)
		return 0;
	LWLockAcquire(repl->lock, LW_SHARED);
	for (i = 0; i < MYCELIUM_REPL_MAX_PEERS && n < max; i++)
		if (repl->peers[i].node_name[0] != '\0')
			memcpy(&out[n++], &repl->peers[i], sizeof(MyceliumReplPeer));
	LWLockRelease(repl->lock);
	return n;
}

/*
 * MyceliumReplPeerForget frees the state of a peer that left the mesh.
 */
void
MyceliumReplPeerForget(const char *node_name)
{
	MyceliumReplPeer *p;

	if (repl == NULL)
		return;
	LWLockAcquire(repl->lock, LW_EXCLUSIVE);
	p = find_peer(node_name, false);
	if (p)
		memset(p, 0, sizeof(*p));
	LWLockRelease(repl->lock);
}

/*
 * MyceliumReplSetLauncherLatch publishes the launcher's latch (NULL when it
 * exits).
 */
void
MyceliumReplSetLauncherLatch(Latch *latch)
{
	if (repl == NULL)
		return;
	LWLockAcquire(repl->lock, LW_EXCLUSIVE);
	repl->launcher_latch = latch;
	LWLockRelease(repl->lock);
}

/*
 * MyceliumReplWakeLauncher wakes the launcher (after the set of replicated
 * tables or peers changed, or a pause was lifted).
 */
void
MyceliumReplWakeLauncher(void)
{
	Latch	   *latch;

	if (repl == NULL)
		return;
	LWLockAcquire(repl->lock, LW_SHARED);
	latch = repl->launcher_latch;
	LWLockRelease(repl->lock);
	if (latch)
		SetLatch(latch);
}

/*
 * MyceliumReplSlotName: the slot on a source node for the consumer with
 * this node_id (slot names allow only [a-z0-9_], node names more).
 */
void
MyceliumReplSlotName(int consumer_node_id, char *buf, int buflen)
{
	snprintf(buf, buflen, "mycelium_node_%d", consumer_node_id);
}

/*
 * MyceliumReplOriginName: the replication origin on a consumer that tracks
 * what it applied from this source node.
 */
void
MyceliumReplOriginName(const char *source_node_name, char *buf, int buflen)
{
	snprintf(buf, buflen, "mycelium_%s", source_node_name);
}

/*
 * MyceliumReplStatusName: the text of a peer status, as stat_replication and
 * replication_peer_state() show it.
 */
const char *
MyceliumReplStatusName(MyceliumReplPeerStatus status)
{
	switch (status)
	{
		case MYCELIUM_REPL_STOPPED:
			return "stopped";
		case MYCELIUM_REPL_STARTING:
			return "starting";
		case MYCELIUM_REPL_STREAMING:
			return "streaming";
		case MYCELIUM_REPL_PAUSED:
			return "paused";
		case MYCELIUM_REPL_DOWN:
			return "down";
	}
	return "unknown";
}

/*
 * MyceliumReplVectorAdvance raises the entry of node in this node's version
 * vector to t (entries never go back); a full vector ignores new nodes,
 * which only makes later changes look concurrent, never causal.
 */
void
MyceliumReplVectorAdvance(const char *node, TimestampTz t)
{
	int			i;

	LWLockAcquire(repl->lock, LW_EXCLUSIVE);
	for (i = 0; i < repl->vector_len; i++)
		if (strcmp(repl->vector_nodes[i], node) == 0)
			break;
	if (i == repl->vector_len && i < MYCELIUM_REPL_MAX_PEERS)
	{
		strlcpy(repl->vector_nodes[i], node, NAMEDATALEN);
		repl->vector_times[i] = 0;
		repl->vector_len++;
	}
	if (i < repl->vector_len && repl->vector_times[i] < t)
	{
		repl->vector_times[i] = t;
		repl->vector_generation++;
	}
	LWLockRelease(repl->lock);
}

/*
 * MyceliumReplVectorSetLoaded records that the persisted vector was merged.
 */
void
MyceliumReplVectorSetLoaded(void)
{
	LWLockAcquire(repl->lock, LW_EXCLUSIVE);
	repl->vector_loaded = true;
	repl->vector_generation++;
	LWLockRelease(repl->lock);
}

/*
 * MyceliumReplVectorGet copies this node's version vector (at most max
 * entries) and returns its length; *generation changes whenever it does.
 */
int
MyceliumReplVectorGet(char (*nodes)[NAMEDATALEN], TimestampTz *times, int max,
					  uint64 *generation, bool *loaded)
{
	int			n;

	LWLockAcquire(repl->lock, LW_SHARED);
	n = Min(repl->vector_len, max);
	memcpy(nodes, repl->vector_nodes, n * NAMEDATALEN);
	memcpy(times, repl->vector_times, n * sizeof(TimestampTz));
	*generation = repl->vector_generation;
	*loaded = repl->vector_loaded;
	LWLockRelease(repl->lock);
	return n;
}

/*
 * MyceliumReplVectorGeneration: changes whenever the vector does (a cheap
 * test before copying it).
 */
uint64
MyceliumReplVectorGeneration(void)
{
	uint64		g;

	LWLockAcquire(repl->lock, LW_SHARED);
	g = repl->vector_generation;
	LWLockRelease(repl->lock);
	return g;
}

/*
 * MyceliumReplHlcLoaded: the clock was recovered since the server started.
 */
bool
MyceliumReplHlcLoaded(void)
{
	bool		loaded;

	LWLockAcquire(repl->lock, LW_SHARED);
	loaded = repl->hlc_loaded;
	LWLockRelease(repl->lock);
	return loaded;
}

/*
 * MyceliumReplHlcUpdate raises the clock to at least floor and, when
 * physical is not 0, ticks it: the new value is max(physical, last + 1),
 * returned.  loaded marks it recovered.
 */
TimestampTz
MyceliumReplHlcUpdate(TimestampTz floor, TimestampTz physical, bool loaded)
{
	TimestampTz t;

	LWLockAcquire(repl->lock, LW_EXCLUSIVE);
	if (repl->hlc_last < floor)
		repl->hlc_last = floor;
	if (physical != 0)
		repl->hlc_last = Max(physical, repl->hlc_last + 1);
	if (loaded)
		repl->hlc_loaded = true;
	t = repl->hlc_last;
	LWLockRelease(repl->lock);
	return t;
}

/*
 * MyceliumReplHlcClaim claims a free origin of the clock's pool: its index,
 * or -1 when all are in use.
 */
int
MyceliumReplHlcClaim(void)
{
	int			i;

	LWLockAcquire(repl->lock, LW_EXCLUSIVE);
	for (i = 0; i < MYCELIUM_HLC_ORIGINS; i++)
		if (!repl->hlc_busy[i])
		{
			repl->hlc_busy[i] = true;
			break;
		}
	LWLockRelease(repl->lock);
	return i < MYCELIUM_HLC_ORIGINS ? i : -1;
}

/*
 * MyceliumReplHlcRelease gives an origin of the pool back.
 */
void
MyceliumReplHlcRelease(int i)
{
	LWLockAcquire(repl->lock, LW_EXCLUSIVE);
	repl->hlc_busy[i] = false;
	LWLockRelease(repl->lock);
}

/*
 * seen_index returns the column of node in the seen matrix (adding it), -1
 * when full; the caller holds the lock exclusively.
 */
static int
seen_index(char (*names)[NAMEDATALEN], int *len, const char *node)
{
	int			i;

	for (i = 0; i < *len; i++)
		if (strcmp(names[i], node) == 0)
			return i;
	if (*len >= MYCELIUM_REPL_MAX_PEERS)
		return -1;
	strlcpy(names[*len], node, NAMEDATALEN);
	return (*len)++;
}

/*
 * MyceliumReplPeerSeen records that peer had seen, per node, everything up
 * to times[] (the context of one of its transactions, applied here).
 */
void
MyceliumReplPeerSeen(const char *peer, int n, char **nodes, const TimestampTz *times)
{
	int			npeers = 0;
	int			p,
				i;

	LWLockAcquire(repl->lock, LW_EXCLUSIVE);
	npeers = 0;
	for (p = 0; p < MYCELIUM_REPL_MAX_PEERS && repl->seen_peers[p][0] != '\0'; p++)
		npeers++;
	p = seen_index(repl->seen_peers, &npeers, peer);
	for (i = 0; p >= 0 && i < n; i++)
	{
		int			c = seen_index(repl->seen_nodes, &repl->seen_len, nodes[i]);

		if (c >= 0 && repl->seen[p][c] < times[i])
			repl->seen[p][c] = times[i];
	}
	LWLockRelease(repl->lock);
}

/*
 * MyceliumReplSeenGet returns what peer had seen of node (0: nothing known).
 */
TimestampTz
MyceliumReplSeenGet(const char *peer, const char *node)
{
	TimestampTz t = 0;
	int			p,
				c;

	LWLockAcquire(repl->lock, LW_SHARED);
	for (p = 0; p < MYCELIUM_REPL_MAX_PEERS && repl->seen_peers[p][0] != '\0'; p++)
		if (strcmp(repl->seen_peers[p], peer) == 0)
			break;
	for (c = 0; c < repl->seen_len; c++)
		if (strcmp(repl->seen_nodes[c], node) == 0)
			break;
	if (p < MYCELIUM_REPL_MAX_PEERS && repl->seen_peers[p][0] != '\0' && c < repl->seen_len)
		t = repl->seen[p][c];
	LWLockRelease(repl->lock);
	return t;
}
