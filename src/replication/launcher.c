/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The replication launcher: one apply worker per remote node.
 *
 * A static background worker for mycelium.database.  While the extension
 * is missing or the local node is not registered it idles.  Otherwise,
 * every mycelium.heartbeat_interval or when its latch is set (a worker
 * started or died -- bgw_notify_pid is the launcher --, or another part of
 * Mycelium called MyceliumReplWakeLauncher), it compares the running apply
 * workers with the active remote nodes of the catalog: it starts a dynamic
 * worker for a node that has none, restarts a dead one after a per-peer
 * exponential backoff with jitter (counted in the peer's retries; the
 * launcher sleeps no longer than the earliest pending restart), and
 * stops the workers of nodes that left the mesh.
 *
 * Also here: mycelium.replication_peer_state(), the raw shared state.
 *
 * IDENTIFICATION
 *	  src/replication/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "common/pg_prng.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "cluster/cluster.h"
#include "config/config.h"
#include "replication/apply_internal.h"
#include "worker/worker.h"

#define IDLE_CHECK_MS 1000

/* the launcher's view of one peer's worker */
typedef struct LauncherSlot
{
	char		node_name[64];
	int			node_id;
	bool		wanted;			/* still an active remote node */
	BackgroundWorkerHandle *handle;
	TimestampTz next_start;
	int			failures;		/* consecutive deaths, for the backoff */
} LauncherSlot;

static LauncherSlot slots[MYCELIUM_REPL_MAX_PEERS];

/* the earliest pending restart (0: none), so the launcher wakes for it */
static TimestampTz next_restart = 0;

PG_FUNCTION_INFO_V1(mycelium_replication_peer_state);

/*
 * MyceliumRegisterReplicationLauncher registers the launcher; called from
 * _PG_init in the postmaster.
 */
void
MyceliumRegisterReplicationLauncher(void)
{
	MyceliumRegisterStaticWorker("MyceliumReplLauncherMain", "mycelium replication launcher");
}

/*
 * MyceliumReplBackoffMs: the delay before retry number `retries` (1, 2,
 * ...) of one peer: exponential from 200 ms, capped at 30 s, drawn from its
 * upper half ("equal jitter") so peers do not retry in step.
 */
long
MyceliumReplBackoffMs(int64 retries)
{
	long		base = 200L << Min(Max(retries, 1) - 1, 8);

	base = Min(base, 30000);
	return base / 2 + (long) (pg_prng_double(&pg_global_prng_state) * (base / 2));
}

/*
 * count_retry is a peer state callback (it only assigns): a worker died
 * and will be restarted.
 */
static void
count_retry(MyceliumReplPeer *peer, void *arg)
{
	peer->retries++;
	peer->worker_pid = 0;
	if (peer->status != MYCELIUM_REPL_PAUSED)
		peer->status = MYCELIUM_REPL_DOWN;
}

/*
 * mark_stopped is a peer state callback: the launcher stopped the worker.
 */
static void
mark_stopped(MyceliumReplPeer *peer, void *arg)
{
	peer->status = MYCELIUM_REPL_STOPPED;
	peer->worker_pid = 0;
}

/*
 * start_worker registers the dynamic apply worker of one peer.
 */
static void
start_worker(LauncherSlot *s)
{
	BackgroundWorker worker;
	MyceliumApplyArgs args;
	MemoryContext old;
	bool		registered;

	memset(&worker, 0, sizeof(worker));
	memset(&args, 0, sizeof(args));
	strlcpy(args.node_name, s->node_name, sizeof(args.node_name));
	args.node_id = s->node_id;
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	worker.bgw_notify_pid = MyProcPid;
	strlcpy(worker.bgw_library_name, "mycelium", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "MyceliumApplyWorkerMain", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN, "mycelium apply from %s", s->node_name);
	strlcpy(worker.bgw_type, "mycelium apply", BGW_MAXLEN);
	StaticAssertStmt(sizeof(MyceliumApplyArgs) <= BGW_EXTRALEN, "apply args too long");
	memcpy(worker.bgw_extra, &args, sizeof(args));
	/* the handle outlives this transaction */
	old = MemoryContextSwitchTo(TopMemoryContext);
	registered = RegisterDynamicBackgroundWorker(&worker, &s->handle);
	MemoryContextSwitchTo(old);
	if (!registered)
	{
		s->handle = NULL;
		s->next_start = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													MyceliumReplBackoffMs(++s->failures));
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the apply worker for node \"%s\"", s->node_name),
				 errhint("Raise max_worker_processes.")));
	}
}

/*
 * stop_slot terminates a slot's worker and frees the slot.
 */
static void
stop_slot(LauncherSlot *s, bool forget)
{
	if (s->handle)
	{
		TerminateBackgroundWorker(s->handle);
		pfree(s->handle);
	}
	if (forget)
		MyceliumReplPeerForget(s->node_name);
	else
		MyceliumReplPeerUpdate(s->node_name, mark_stopped, NULL);
	memset(s, 0, sizeof(*s));
}

/*
 * find_slot returns the slot of a node, taking a free one when asked.
 */
static LauncherSlot *
find_slot(const char *node_name, bool create)
{
	LauncherSlot *free_slot = NULL;
	int			i;

	for (i = 0; i < MYCELIUM_REPL_MAX_PEERS; i++)
	{
		if (slots[i].node_name[0] == '\0')
		{
			if (!free_slot)
				free_slot = &slots[i];
		}
		else if (strcmp(slots[i].node_name, node_name) == 0)
			return &slots[i];
	}
	if (create && free_slot)
		strlcpy(free_slot->node_name, node_name, sizeof(free_slot->node_name));
	return create ? free_slot : NULL;
}

/*
 * check_slot starts or restarts the worker of a wanted peer when due.
 */
static void
check_slot(LauncherSlot *s, TimestampTz now)
{
	pid_t		pid;
	MyceliumReplPeer peer;

	if (s->handle && GetBackgroundWorkerPid(s->handle, &pid) != BGWH_STOPPED)
	{
		/* a worker that streams has recovered: reset its backoff */
		if (s->failures > 0 && MyceliumReplPeerGet(s->node_name, &peer) &&
			peer.status == MYCELIUM_REPL_STREAMING)
			s->failures = 0;
		return;
	}
	if (s->handle)
	{
		/* it died (apply workers never exit on their own) */
		pfree(s->handle);
		s->handle = NULL;
		s->failures++;
		MyceliumReplPeerUpdate(s->node_name, count_retry, NULL);
		s->next_start = TimestampTzPlusMilliseconds(now, MyceliumReplBackoffMs(s->failures));
	}
	if (now >= s->next_start)
		start_worker(s);
	if (s->handle == NULL && (next_restart == 0 || s->next_start < next_restart))
		next_restart = s->next_start;
}

/*
 * have_replicated_tables: this node lists at least one replicated table.
 * Until it does, no apply worker runs, so a mesh that does not use peer
 * replication creates no slots (which would hold WAL on every peer).
 */
static bool
have_replicated_tables(void)
{
	bool		found;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT 1 FROM mycelium.replicated_table LIMIT 1", true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read mycelium.replicated_table");
	found = SPI_processed > 0;
	SPI_finish();
	return found;
}

/*
 * reconcile matches the workers with the active remote nodes of the
 * catalog (none while no table is replicated); returns false when the
 * mesh is not set up here.
 */
static bool
reconcile(void)
{
	List	   *nodes = NIL;
	ListCell   *lc;
	TimestampTz now = GetCurrentTimestamp();
	bool		ready = false;
	int			i;

	if (OidIsValid(get_extension_oid("mycelium", true)) && mycelium_node_name[0] != '\0')
	{
		nodes = MyceliumCachedNodes();
		if (MyceliumFindNode(nodes, mycelium_node_name) == NULL)
			nodes = NIL;
		else
			MyceliumReplWatchSlots(nodes);
		if (nodes != NIL && !have_replicated_tables())
		{
			/* mesh ready, nothing to replicate: no workers, no slots */
			nodes = NIL;
			ready = true;
		}
	}
	for (i = 0; i < MYCELIUM_REPL_MAX_PEERS; i++)
		slots[i].wanted = false;
	next_restart = 0;
	foreach(lc, nodes)
	{
		MyceliumNode *n = lfirst(lc);
		LauncherSlot *s;

		if (n->is_local || strcmp(n->status, "active") != 0)
			continue;
		s = find_slot(n->node_name, true);
		if (s == NULL)
			continue;			/* more peers than MYCELIUM_REPL_MAX_PEERS */
		if (s->node_id != 0 && s->node_id != n->node_id)
			stop_slot(s, true); /* re-added under the same name */
		strlcpy(s->node_name, n->node_name, sizeof(s->node_name));
		s->node_id = n->node_id;
		s->wanted = true;
		check_slot(s, now);
	}
	for (i = 0; i < MYCELIUM_REPL_MAX_PEERS; i++)
		if (slots[i].node_name[0] != '\0' && !slots[i].wanted)
			stop_slot(&slots[i], true);
	return ready || nodes != NIL;
}

/*
 * launcher_exit unpublishes the latch.
 */
static void
launcher_exit(int code, Datum arg)
{
	MyceliumReplSetLauncherLatch(NULL);
}

/*
 * MyceliumReplLauncherMain is the launcher's entry point.
 */
void
MyceliumReplLauncherMain(Datum main_arg)
{
	MemoryContext loop_ctx;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(mycelium_database, NULL, 0);
	pgstat_report_appname("mycelium replication launcher");
	before_shmem_exit(launcher_exit, (Datum) 0);
	MyceliumReplSetLauncherLatch(MyLatch);

	loop_ctx = AllocSetContextCreate(TopMemoryContext, "mycelium launcher loop",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		bool		ready = false;
		long		timeout;
		MemoryContext old = MemoryContextSwitchTo(loop_ctx);

		PG_TRY();
		{
			SetCurrentStatementStartTimestamp();
			StartTransactionCommand();
			PushActiveSnapshot(GetTransactionSnapshot());
			ready = reconcile();
			PopActiveSnapshot();
			CommitTransactionCommand();
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(loop_ctx);
			EmitErrorReport();
			FlushErrorState();
			AbortOutOfAnyTransaction();
		}
		PG_END_TRY();
		MemoryContextSwitchTo(old);
		MemoryContextReset(loop_ctx);

		timeout = ready ? mycelium_heartbeat_interval_ms : IDLE_CHECK_MS;
		if (next_restart != 0)
		{
			/* a dead worker's backoff ends sooner: wake for its restart */
			long		ms = (long) ((next_restart - GetCurrentTimestamp()) / 1000) + 1;

			timeout = Min(timeout, Max(ms, 1));
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}

/*
 * mycelium_replication_peer_state returns one row per known source peer
 * with its shared apply state.
 */
Datum
mycelium_replication_peer_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MyceliumReplPeer *peers;
	int			n,
				i;

	MyceliumRequirePreload();
	InitMaterializedSRF(fcinfo, 0);
	peers = palloc(sizeof(MyceliumReplPeer) * MYCELIUM_REPL_MAX_PEERS);
	n = MyceliumReplPeerSnapshot(peers, MYCELIUM_REPL_MAX_PEERS);
	for (i = 0; i < n; i++)
	{
		MyceliumReplPeer *p = &peers[i];
		Datum		values[12];
		bool		nulls[12];

		memset(nulls, 0, sizeof(nulls));
		values[0] = CStringGetTextDatum(p->node_name);
		values[1] = CStringGetTextDatum(MyceliumReplStatusName(p->status));
		values[2] = BoolGetDatum(p->paused);
		values[3] = Int32GetDatum(p->worker_pid);
		nulls[3] = p->worker_pid == 0;
		values[4] = LSNGetDatum(p->received_lsn);
		values[5] = LSNGetDatum(p->applied_lsn);
		values[6] = LSNGetDatum(p->peer_wal_end);
		values[7] = TimestampTzGetDatum(p->last_commit_time);
		nulls[7] = p->last_commit_time == 0;
		values[8] = TimestampTzGetDatum(p->last_heartbeat);
		nulls[8] = p->last_heartbeat == 0;
		values[9] = Int64GetDatum(p->applied_transactions);
		values[10] = Int64GetDatum(p->conflicts);
		values[11] = Int64GetDatum(p->retries);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
