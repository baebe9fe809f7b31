/*-------------------------------------------------------------------------
 *
 * registry.c
 *	  What this node's two-phase transactions are doing, for the
 *	  mycelium.distributed_transactions view, and the mycelium_events
 *	  notifications about them.
 *
 * Shared memory holds one slot per backend (indexed by MyBackendId) with
 * the gid, participants, state and start time of the two-phase commit it
 * is coordinating, and a small ring of "aborted" events.  An aborting
 * transaction cannot NOTIFY (its notifications are discarded with it), so
 * the abort path leaves the event in the ring and the maintenance worker
 * sends it from its next iteration.  Other events are queued with
 * Async_Notify in the transaction they describe, so listeners receive
 * them exactly when it commits.
 *
 * Locking: one LWLock guards the slots and the ring; every holder copies
 * a few bytes and releases it.
 *
 * IDENTIFICATION
 *	  src/txn/registry.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"


#include "commands/async.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/backendid.h"
#include "storage/fd.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "config/config.h"
#include "transport/transport.h"
#include "txn/txn.h"

#define PARTICIPANTS_SIZE 1024
#define EVENT_RING_SIZE 512
/* events copied out of the ring per hold of its lock */
#define SEND_BATCH 64

/* kinds of deferred events */
#define EVENT_ABORTED 'a'
#define EVENT_COMMITTED 'c'		/* "prepared", then "committed" */

typedef struct MyceliumTxnEvent
{
	char		kind;
	char		gid[MYCELIUM_GID_SIZE];
	char		participants[PARTICIPANTS_SIZE];
} MyceliumTxnEvent;

typedef struct MyceliumTxnSlot
{
	MyceliumTxnState state;
	char		gid[MYCELIUM_GID_SIZE];
	char		participants[PARTICIPANTS_SIZE];	/* names, comma-separated */
	TimestampTz started_at;
} MyceliumTxnSlot;

typedef struct MyceliumTxnRegistry
{
	LWLock	   *lock;
	uint32		life;			/* this life of the node, for gids */
	int			ring_head;		/* next event to send */
	int			ring_tail;		/* next free place */
	uint64		dropped;		/* events lost to a full ring, not yet logged */
	int			worker_procno;	/* the maintenance worker's, or -1 */
	MyceliumTxnEvent ring[EVENT_RING_SIZE];
	MyceliumTxnSlot slots[FLEXIBLE_ARRAY_MEMBER];
} MyceliumTxnRegistry;

static MyceliumTxnRegistry *registry = NULL;

static const char *const state_names[] = {"idle", "preparing", "committing", "aborting"};

PG_FUNCTION_INFO_V1(mycelium_active_transactions);
PG_FUNCTION_INFO_V1(mycelium_gid_coordinator);

/*
 * registry_size is the size of the shared registry (MaxBackends is known
 * when the shmem_request_hook runs).
 */
static Size
registry_size(void)
{
	return add_size(offsetof(MyceliumTxnRegistry, slots),
					mul_size(sizeof(MyceliumTxnSlot), MaxBackends));
}

/*
 * MyceliumTxnRegistryRequest asks for the registry's shared memory.
 */
void
MyceliumTxnRegistryRequest(void)
{
	RequestAddinShmemSpace(registry_size());
	RequestNamedLWLockTranche("mycelium_txn", 1);
	MyceliumDeadlockShmemRequest();
}

#define LIFE_FILE "pg_mycelium/life"

/*
 * next_life returns the life of the node that is starting: the clock in
 * milliseconds, or one more than the last life if the clock is behind it
 * (set back), so lives only grow (modulo 2^32); the value is kept in
 * $PGDATA/pg_mycelium/life, written durably before any gid can carry it.
 * Runs in the postmaster, at start and at every crash restart.
 */
static uint32
next_life(void)
{
	uint32		life = (uint32) (GetCurrentTimestamp() / 1000);
	uint32		last = 0;
	FILE	   *f;
	char		tmp[MAXPGPATH];

	if ((f = AllocateFile(LIFE_FILE, "r")) != NULL)
	{
		if (fscanf(f, "%u", &last) != 1)
			last = 0;
		FreeFile(f);
	}
	/* the clock is behind the last life (within half the range): go on from it */
	if (last != 0 && (int32) (life - last) <= 0)
		life = last + 1;
	if (life == 0)
		life = 1;
	(void) MakePGDirectory("pg_mycelium");
	snprintf(tmp, sizeof(tmp), "%s.tmp", LIFE_FILE);
	f = AllocateFile(tmp, "w");
	if (f != NULL)
	{
		bool		ok = fprintf(f, "%u\n", life) >= 0 && pg_fsync(fileno(f)) == 0;

		if (FreeFile(f) != 0 || !ok)
			f = NULL;
	}
	if (f == NULL || durable_rename(tmp, LIFE_FILE, LOG) != 0)
		ereport(LOG,
				(errcode_for_file_access(),
				 errmsg("mycelium: could not record this start's life in \"%s\": %m", LIFE_FILE),
				 errdetail("Gids use the clock alone this time.")));
	return life;
}

/*
 * MyceliumTxnRegistryStartup attaches to (or creates) the registry; the
 * caller holds AddinShmemInitLock.
 */
void
MyceliumTxnRegistryStartup(void)
{
	bool		found;

	registry = ShmemInitStruct("mycelium_txn", registry_size(), &found);
	if (!found)
	{
		memset(registry, 0, registry_size());
		registry->lock = &(GetNamedLWLockTranche("mycelium_txn"))->lock;
		registry->life = next_life();
		registry->worker_procno = -1;
	}
	MyceliumDeadlockShmemStartup();
}

/*
 * MyceliumTxnLife identifies this life of the node: it is set when shared
 * memory is created, at start and after every crash restart, and never
 * 0.  Gids carry it (txn/twophase.c).
 */
uint32
MyceliumTxnLife(void)
{
	return registry ? registry->life : 0;
}

/*
 * my_slot returns this backend's slot, or NULL where there is none.
 */
static MyceliumTxnSlot *
my_slot(void)
{
	if (registry == NULL || MyBackendId == InvalidBackendId ||
		MyBackendId < 1 || MyBackendId > MaxBackends)
		return NULL;
	return &registry->slots[MyBackendId - 1];
}

/*
 * MyceliumTxnRegistrySet records this backend's two-phase commit: its gid
 * and participants (a List of MyceliumConnection) when starting, then each
 * change of state; MYCELIUM_TXN_IDLE clears it.
 */
void
MyceliumTxnRegistrySet(MyceliumTxnState state, const char *gid, List *participants)
{
	MyceliumTxnSlot *slot = my_slot();
	ListCell   *lc;

	if (slot == NULL)
		return;
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	slot->state = state;
	if (gid != NULL)
	{
		strlcpy(slot->gid, gid, sizeof(slot->gid));
		slot->started_at = GetCurrentTimestamp();
		slot->participants[0] = '\0';
		foreach(lc, participants)
		{
			const char *name = ((MyceliumConnection *) lfirst(lc))->node_name;

			if (strlen(slot->participants) + strlen(name) + 2 >= PARTICIPANTS_SIZE)
				break;
			if (slot->participants[0])
				strcat(slot->participants, ",");
			strcat(slot->participants, name);
		}
	}
	LWLockRelease(registry->lock);
}

/*
 * event_json builds the payload {"event": ..., "gid": ..., "nodes": [...]}
 * from comma-separated node names.
 */
static char *
event_json(const char *event, const char *gid, const char *nodes_csv)
{
	StringInfoData buf;
	char	   *copy = pstrdup(nodes_csv ? nodes_csv : "");
	char	   *tok;
	char	   *save = NULL;
	bool		first = true;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "{\"event\": ");
	escape_json(&buf, event);
	appendStringInfoString(&buf, ", \"gid\": ");
	escape_json(&buf, gid);
	appendStringInfoString(&buf, ", \"nodes\": [");
	for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
	{
		if (!first)
			appendStringInfoString(&buf, ", ");
		escape_json(&buf, tok);
		first = false;
	}
	appendStringInfoString(&buf, "]}");
	return buf.data;
}

/*
 * MyceliumNotifyEvent queues a mycelium_events notification in the current
 * transaction (sent if and when it commits).
 */
void
MyceliumNotifyEvent(const char *event, const char *gid, const char *nodes_csv)
{
	Async_Notify("mycelium_events", event_json(event, gid, nodes_csv));
}

/*
 * MyceliumNotifyOwnEvent queues an event about this backend's registered
 * two-phase commit, with its participants.
 */
void
MyceliumNotifyOwnEvent(const char *event)
{
	MyceliumTxnSlot *slot = my_slot();
	char		gid[MYCELIUM_GID_SIZE];
	char		nodes[PARTICIPANTS_SIZE];

	if (slot == NULL)
		return;
	LWLockAcquire(registry->lock, LW_SHARED);
	strlcpy(gid, slot->gid, sizeof(gid));
	strlcpy(nodes, slot->participants, sizeof(nodes));
	LWLockRelease(registry->lock);
	MyceliumNotifyEvent(event, gid, nodes);
}

/*
 * defer_event puts an event about this backend's registered two-phase
 * commit in the ring and wakes the maintenance worker if the ring was
 * empty; never raises (the commit and abort paths call it).  A full ring
 * drops its oldest event.
 */
static void
defer_event(char kind)
{
	MyceliumTxnSlot *slot = my_slot();
	MyceliumTxnEvent *entry;
	int			procno;

	if (slot == NULL || slot->gid[0] == '\0')
		return;
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	/* a ring that held events already has the worker on its way */
	procno = registry->ring_head == registry->ring_tail ? registry->worker_procno : -1;
	entry = &registry->ring[registry->ring_tail];
	entry->kind = kind;
	strlcpy(entry->gid, slot->gid, sizeof(entry->gid));
	strlcpy(entry->participants, slot->participants, sizeof(entry->participants));
	registry->ring_tail = (registry->ring_tail + 1) % EVENT_RING_SIZE;
	if (registry->ring_tail == registry->ring_head)
	{
		registry->ring_head = (registry->ring_head + 1) % EVENT_RING_SIZE;
		registry->dropped++;
	}
	LWLockRelease(registry->lock);
	if (procno >= 0)
		SetLatch(&ProcGlobal->allProcs[procno].procLatch);
}

/*
 * ring_used is the number of events waiting in the ring.
 */
static int
ring_used(void)
{
	int			used;

	LWLockAcquire(registry->lock, LW_SHARED);
	used = (registry->ring_tail - registry->ring_head + EVENT_RING_SIZE) % EVENT_RING_SIZE;
	LWLockRelease(registry->lock);
	return used;
}

/*
 * MyceliumTxnRegistryDeferAborted leaves an "aborted" event for the
 * maintenance worker; called from the abort path, where nothing may fail.
 */
void
MyceliumTxnRegistryDeferAborted(void)
{
	defer_event(EVENT_ABORTED);
}

/*
 * MyceliumTxnRegistryDeferCommitted leaves the "prepared" and "committed"
 * events of this backend's two-phase commit for the maintenance worker;
 * called right after the local commit.
 */
void
MyceliumTxnRegistryDeferCommitted(void)
{
	defer_event(EVENT_COMMITTED);
}

/*
 * MyceliumTxnRegistryEventsBacklogged says whether the ring is three
 * quarters full (the worker is slow or not running): a committing
 * transaction then queues its events itself.
 */
bool
MyceliumTxnRegistryEventsBacklogged(void)
{
	return registry == NULL || ring_used() >= EVENT_RING_SIZE * 3 / 4;
}

/*
 * MyceliumTxnRegistrySetWorker records the maintenance worker's latch
 * (procno), for deferred events to wake it; -1 when it exits.
 */
void
MyceliumTxnRegistrySetWorker(int procno)
{
	if (registry == NULL)
		return;
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	registry->worker_procno = procno;
	LWLockRelease(registry->lock);
}

/*
 * MyceliumTxnRegistryHasDeferred says whether events wait to be sent.
 */
bool
MyceliumTxnRegistryHasDeferred(void)
{
	return registry != NULL && ring_used() > 0;
}

/*
 * MyceliumTxnRegistrySendDeferred queues, in the current transaction, the
 * notifications left in the ring.  Called by the maintenance worker.
 */
void
MyceliumTxnRegistrySendDeferred(void)
{
	MyceliumTxnEvent *batch;
	uint64		dropped;

	if (registry == NULL)
		return;
	LWLockAcquire(registry->lock, LW_EXCLUSIVE);
	dropped = registry->dropped;
	registry->dropped = 0;
	LWLockRelease(registry->lock);
	if (dropped > 0)
		ereport(WARNING,
				(errmsg("mycelium: %llu mycelium_events notifications were dropped",
						(unsigned long long) dropped),
				 errdetail("More two-phase commits ended than the maintenance worker could announce.")));
	batch = palloc(sizeof(MyceliumTxnEvent) * SEND_BATCH);
	for (;;)
	{
		int			n = 0;
		int			i;

		/* a batch per lock hold; NOTIFY runs without the lock */
		LWLockAcquire(registry->lock, LW_EXCLUSIVE);
		while (n < SEND_BATCH && registry->ring_head != registry->ring_tail)
		{
			memcpy(&batch[n++], &registry->ring[registry->ring_head], sizeof(MyceliumTxnEvent));
			registry->ring_head = (registry->ring_head + 1) % EVENT_RING_SIZE;
		}
		LWLockRelease(registry->lock);
		if (n == 0)
			break;
		for (i = 0; i < n; i++)
		{
			if (batch[i].kind == EVENT_COMMITTED)
			{
				MyceliumNotifyEvent("prepared", batch[i].gid, batch[i].participants);
				MyceliumNotifyEvent("committed", batch[i].gid, batch[i].participants);
			}
			else
				MyceliumNotifyEvent("aborted", batch[i].gid, batch[i].participants);
		}
	}
	pfree(batch);
}

/*
 * mycelium.active_transactions(): the two-phase commits this node's
 * backends are coordinating right now.
 */
Datum
mycelium_active_transactions(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (registry == NULL)
		return (Datum) 0;
	for (i = 0; i < MaxBackends; i++)
	{
		MyceliumTxnSlot copy;
		Datum		values[5];
		bool		nulls[5] = {0};
		Datum	   *names;
		int			n = 0;
		char	   *tok,
				   *save = NULL;

		LWLockAcquire(registry->lock, LW_SHARED);
		memcpy(&copy, &registry->slots[i], sizeof(copy));
		LWLockRelease(registry->lock);
		if (copy.state == MYCELIUM_TXN_IDLE)
			continue;
		names = palloc(sizeof(Datum) * (PARTICIPANTS_SIZE / 2 + 1));
		for (tok = strtok_r(copy.participants, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
			names[n++] = CStringGetTextDatum(tok);
		values[0] = CStringGetTextDatum(copy.gid);
		values[1] = CStringGetTextDatum(mycelium_node_name);
		values[2] = PointerGetDatum(construct_array(names, n, TEXTOID, -1, false, TYPALIGN_INT));
		values[3] = CStringGetTextDatum(state_names[copy.state]);
		values[4] = TimestampTzGetDatum(copy.started_at);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * mycelium.gid_coordinator(gid text) returns text: the coordinating node
 * named in a Mycelium gid, NULL for any other gid.
 */
Datum
mycelium_gid_coordinator(PG_FUNCTION_ARGS)
{
	char	   *gid = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MyceliumGid parsed;

	if (!MyceliumParseGid(gid, &parsed))
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(parsed.coordinator));
}
