/*-------------------------------------------------------------------------
 *
 * api_control.c
 *	  mycelium.pause_replication, mycelium.resume_replication,
 *	  mycelium.stat_replication and mycelium.wait_for_sync: controlling and
 *	  watching replication into this node.
 *
 * All of them act on this node only and go through the shared per-peer
 * state of replication/peer_state.h, which the apply workers and the
 * launcher fill in.  A pause lives in shared memory: it lasts until
 * resume_replication or a server restart.
 *
 * IDENTIFICATION
 *	  src/replication/api_control.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xlog.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "replication/slot.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "cluster/cluster.h"
#include "config/config.h"
#include "replication/peer_state.h"

PG_FUNCTION_INFO_V1(mycelium_pause_replication);
PG_FUNCTION_INFO_V1(mycelium_resume_replication);
PG_FUNCTION_INFO_V1(mycelium_stat_replication);
PG_FUNCTION_INFO_V1(mycelium_wait_for_sync);

/* wait_for_sync re-checks the slots at least this often (ms) */
#define SYNC_POLL_MS 50

/*
 * remote_members returns the members of the mesh other than this node,
 * ordered by node_id.
 */
static List *
remote_members(void)
{
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, MyceliumLoadNodes())
	{
		MyceliumNode *node = lfirst(lc);

		if (!node->is_local)
			result = lappend(result, node);
	}
	return result;
}

/*
 * target_peers returns the peers a pause or resume applies to: the named
 * member, or every remote member when the argument is NULL.  An unknown
 * name is 42704, this node's own name 22023.
 */
static List *
target_peers(FunctionCallInfo fcinfo, const char *verb)
{
	char	   *name;
	MyceliumNode *node;

	MyceliumEnsureLocalNode();
	if (PG_ARGISNULL(0))
		return remote_members();
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	node = MyceliumFindNode(MyceliumLoadNodes(), name);
	if (node == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("node \"%s\" is not a member of the mesh", name),
				 errhint("SELECT * FROM mycelium.nodes lists the members.")));
	if (node->is_local)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot %s replication from the local node \"%s\"", verb, name),
				 errdetail("This node applies changes from the other members only.")));
	return list_make1(node);
}

/*
 * set_paused is the MyceliumReplPeerUpdate callback of pause and resume.
 */
static void
set_paused(MyceliumReplPeer *peer, void *arg)
{
	peer->paused = *(bool *) arg;
}

/*
 * set_paused_for sets or clears the paused flag of each peer in the list,
 * wakes its apply worker (a resumed one reconnects at once, not at its
 * next heartbeat) and the launcher.
 */
static void
set_paused_for(List *peers, bool paused)
{
	ListCell   *lc;

	foreach(lc, peers)
	{
		const char *name = ((MyceliumNode *) lfirst(lc))->node_name;
		MyceliumReplPeer peer;

		MyceliumReplPeerUpdate(name, set_paused, &paused);
		if (MyceliumReplPeerGet(name, &peer) && peer.worker_pid != 0)
		{
			PGPROC	   *proc = BackendPidGetProc(peer.worker_pid);

			if (proc != NULL)
				SetLatch(&proc->procLatch);
		}
	}
	MyceliumReplWakeLauncher();
}

/*
 * mycelium.pause_replication(peer text DEFAULT NULL) returns void
 *
 * Stops applying changes from a peer (NULL: from every peer) on this node.
 * Nothing is lost: the peer keeps the changes in its slot for this node.
 */
Datum
mycelium_pause_replication(PG_FUNCTION_ARGS)
{
	set_paused_for(target_peers(fcinfo, "pause"), true);
	PG_RETURN_VOID();
}

/*
 * mycelium.resume_replication(peer text DEFAULT NULL) returns void
 *
 * Lifts a pause (NULL: every pause) and wakes the launcher.  Resuming a
 * peer that is not paused does nothing.
 */
Datum
mycelium_resume_replication(PG_FUNCTION_ARGS)
{
	set_paused_for(target_peers(fcinfo, "resume"), false);
	PG_RETURN_VOID();
}

/*
 * peer_state_name names the state a peer is shown in: "paused" as soon as
 * a pause is in force, whatever the worker is doing.
 */
static const char *
peer_state_name(const MyceliumReplPeer *peer)
{
	if (peer->paused)
		return "paused";
	if (peer->status == MYCELIUM_REPL_PAUSED)
		return "starting";		/* resumed; the worker has not reconnected yet */
	return MyceliumReplStatusName(peer->status);
}

/*
 * stat_values fills one row of stat_replication from a peer's state.
 * Lag is unknown (NULL) until both the peer's WAL end and the applied
 * position are known; lag_seconds is the age of the last applied commit
 * while behind, 0 when caught up.
 */
static void
stat_values(const MyceliumReplPeer *p, Datum *values, bool *nulls)
{
	values[0] = CStringGetTextDatum(p->node_name);
	values[1] = CStringGetTextDatum(peer_state_name(p));
	nulls[2] = nulls[3] = true;
	if (p->peer_wal_end != InvalidXLogRecPtr && p->applied_lsn != InvalidXLogRecPtr)
	{
		int64		lag = p->peer_wal_end > p->applied_lsn ?
			(int64) (p->peer_wal_end - p->applied_lsn) : 0;

		values[2] = Int64GetDatum(lag);
		nulls[2] = false;
		if (lag == 0)
		{
			values[3] = Float8GetDatum(0.0);
			nulls[3] = false;
		}
		else if (p->last_commit_time != 0)
		{
			TimestampTz now = GetCurrentTimestamp();

			values[3] = Float8GetDatum(now > p->last_commit_time ?
									   (double) (now - p->last_commit_time) / USECS_PER_SEC : 0.0);
			nulls[3] = false;
		}
	}
	values[4] = TimestampTzGetDatum(p->last_heartbeat);
	nulls[4] = p->last_heartbeat == 0;
	values[5] = Int64GetDatum(p->applied_transactions);
	values[6] = Int64GetDatum(p->conflicts);
	values[7] = Int64GetDatum(p->retries);
}

/*
 * mycelium.stat_replication_internal() returns setof (peer, state,
 * lag_bytes, lag_seconds, last_heartbeat, applied_transactions, conflicts,
 * retries)
 *
 * One row per remote member, in node_id order: replication from that peer
 * into this node.  A member without state (no worker has run for it since
 * the server started) shows as "stopped" with zero counters.
 */
Datum
mycelium_stat_replication(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;

	MyceliumRequirePreload();
	InitMaterializedSRF(fcinfo, 0);
	foreach(lc, remote_members())
	{
		MyceliumNode *node = lfirst(lc);
		MyceliumReplPeer peer;
		Datum		values[8];
		bool		nulls[8] = {false};

		if (!MyceliumReplPeerGet(node->node_name, &peer))
		{
			memset(&peer, 0, sizeof(peer));
			strlcpy(peer.node_name, node->node_name, sizeof(peer.node_name));
		}
		stat_values(&peer, values, nulls);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/*
 * slot_confirmed says whether this database's slot of that name exists
 * and has confirmed_flush_lsn >= target.
 */
static bool
slot_confirmed(const char *name, XLogRecPtr target)
{
	bool		ok = false;
	int			i;

	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (i = 0; i < max_replication_slots; i++)
	{
		ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];
		XLogRecPtr	confirmed;

		if (!s->in_use || s->data.database != MyDatabaseId ||
			strcmp(NameStr(s->data.name), name) != 0)
			continue;
		SpinLockAcquire(&s->mutex);
		confirmed = s->data.confirmed_flush;
		SpinLockRelease(&s->mutex);
		ok = confirmed != InvalidXLogRecPtr && confirmed >= target;
		break;
	}
	LWLockRelease(ReplicationSlotControlLock);
	return ok;
}

/*
 * timeout_usecs converts wait_for_sync's interval to microseconds (months
 * as 30 days), refusing a negative one (22023) and capping a huge one.
 */
static int64
timeout_usecs(Interval *timeout)
{
	double		us = (double) timeout->time +
		((double) timeout->day + (double) timeout->month * DAYS_PER_MONTH) * USECS_PER_DAY;

	if (us < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("timeout must not be negative")));
	return us > (double) PG_INT64_MAX / 4 ? PG_INT64_MAX / 4 : (int64) us;
}

/*
 * mycelium.wait_for_sync(timeout interval DEFAULT '30s') returns bool
 *
 * True once every remote member has applied everything committed here
 * before the call: each peer's slot on this node ("mycelium_node_<peer
 * id>") has confirmed a position at or past the WAL flushed at the call.
 * This session's own last commit is flushed first, so it counts even under
 * synchronous_commit = off.  False when the timeout passes first (a paused
 * or down peer, or one without a slot yet).  True at once with no peers.
 */
Datum
mycelium_wait_for_sync(PG_FUNCTION_ARGS)
{
	int64		timeout = timeout_usecs(PG_GETARG_INTERVAL_P(0));
	List	   *slots = NIL;
	TimestampTz deadline;
	XLogRecPtr	target;
	ListCell   *lc;

	MyceliumEnsureLocalNode();
	foreach(lc, remote_members())
	{
		char	   *slot = palloc(NAMEDATALEN);

		MyceliumReplSlotName(((MyceliumNode *) lfirst(lc))->node_id, slot, NAMEDATALEN);
		slots = lappend(slots, slot);
	}
	if (slots == NIL)
		PG_RETURN_BOOL(true);
	if (XactLastCommitEnd != InvalidXLogRecPtr)
		XLogFlush(XactLastCommitEnd);
	target = GetFlushRecPtr(NULL);
	deadline = GetCurrentTimestamp() + timeout;

	for (;;)
	{
		bool		synced = true;
		TimestampTz now;

		foreach(lc, slots)
			if (!slot_confirmed((char *) lfirst(lc), target))
				synced = false;
		if (synced)
			PG_RETURN_BOOL(true);
		now = GetCurrentTimestamp();
		if (now >= deadline)
			PG_RETURN_BOOL(false);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 Min(SYNC_POLL_MS, (deadline - now + 999) / 1000),
						 PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}
