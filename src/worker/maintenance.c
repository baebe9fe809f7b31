/*-------------------------------------------------------------------------
 *
 * maintenance.c
 *	  The maintenance background worker: peer health checks, recovery of
 *	  in-doubt two-phase transactions and distributed deadlock detection,
 *	  for the database mycelium.database.
 *
 * One worker per node.  Its loop sleeps on its latch until the next health
 * check (every mycelium.heartbeat_interval), recovery pass (every
 * mycelium.recovery_interval) or deadlock detection pass (every
 * mycelium.deadlock_detection_interval, txn/deadlock_detect.c) is due and runs it in its own transaction,
 * catching errors per iteration so that one failure (a peer gone mid-query,
 * a catalog being changed) never stops the loop.  Once a day, and after
 * each reload, it warns about configured certificates close to expiry.  A memory context is
 * reset every iteration.  While the extension is not installed in the
 * database, or this node has no name, the worker idles.
 *
 * IDENTIFICATION
 *	  src/worker/maintenance.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "cluster/cluster.h"
#include "config/config.h"
#include "shmem/shmem.h"
#include "tls/tls.h"
#include "transport/transport.h"
#include "txn/txn.h"
#include "worker/worker.h"

#define IDLE_CHECK_MS 1000		/* re-check for the extension this often */
#define EVENTS_BATCH_MS 10		/* least time between two sends of events */
#define CERT_CHECK_MS (86400 * 1000)	/* certificate expiry: daily */

/*
 * MyceliumRegisterStaticWorker registers one of Mycelium's static workers
 * (database connection, started after recovery, restarted after 10 s);
 * called from _PG_init in the postmaster.  name is also its bgw_type.
 */
void
MyceliumRegisterStaticWorker(const char *function, const char *name)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	strlcpy(worker.bgw_library_name, "mycelium", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, function, BGW_MAXLEN);
	strlcpy(worker.bgw_name, name, BGW_MAXLEN);
	strlcpy(worker.bgw_type, name, BGW_MAXLEN);
	RegisterBackgroundWorker(&worker);
}

/*
 * MyceliumRegisterWorkers registers the maintenance worker.
 */
void
MyceliumRegisterWorkers(void)
{
	MyceliumRegisterStaticWorker("MyceliumMaintenanceMain", "mycelium maintenance");
}

/*
 * health_check asks every peer for SELECT 1 at once and records who
 * answered within mycelium.peer_timeout; logs peers going down or up.
 */
static void
health_check(List *nodes)
{
	int			n = list_length(nodes),
				i = 0;
	MyceliumConnection **conns;
	PGresult  **results = palloc0(sizeof(PGresult *) * Max(n, 1));
	ListCell   *lc;
	TimestampTz now;

	conns = MyceliumConnectNodes(nodes, MYCELIUM_CONN_AUTOCOMMIT, true, false, NULL);
	for (i = 0; i < n; i++)
		MyceliumSendQuery(conns[i], "SELECT 1", 0, NULL);
	MyceliumWaitResults(conns, n, results,
						TimestampTzPlusMilliseconds(GetCurrentTimestamp(), mycelium_peer_timeout_ms),
						true);
	now = GetCurrentTimestamp();
	i = 0;
	foreach(lc, nodes)
	{
		const char *name = ((MyceliumNode *) lfirst(lc))->node_name;
		bool		ok = results[i] && PQresultStatus(results[i]) == PGRES_TUPLES_OK;
		bool		was_down;

		if (conns[i] == NULL)
		{
			i++;
			continue;			/* the local node */
		}
		was_down = MyceliumPeerIsDown(name);
		MyceliumPeerReportHealth(name, ok, now, mycelium_peer_timeout_ms);
		if (!was_down && MyceliumPeerIsDown(name))
			ereport(LOG,
					(errmsg("mycelium: node \"%s\" is down", name),
					 errdetail_internal("%s", MyceliumResultErrorText(results[i], conns[i]))));
		else if (was_down && ok)
			ereport(LOG, (errmsg("mycelium: node \"%s\" is up again", name)));
		PQclear(results[i]);
		MyceliumReleaseConnection(conns[i]);
		i++;
	}
}

/*
 * mesh_ready says whether this database has the extension and the local
 * node is registered; returns the node list when it does.
 */
static List *
mesh_ready(void)
{
	List	   *nodes;

	if (!OidIsValid(get_extension_oid("mycelium", true)) || mycelium_node_name[0] == '\0')
		return NIL;
	nodes = MyceliumCachedNodes();
	if (MyceliumFindNode(nodes, mycelium_node_name) == NULL)
		return NIL;
	return nodes;
}

/*
 * run_iteration does the due work in one transaction; returns false when
 * the mesh is not set up here (the worker then idles).
 */
static bool
run_iteration(bool do_health, bool do_recovery, bool do_deadlock)
{
	List	   *nodes;
	bool		ready;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "mycelium maintenance");
	nodes = mesh_ready();
	ready = nodes != NIL;
	if (ready)
		MyceliumTxnRegistrySendDeferred();	/* events of ended two-phase commits */
	if (ready && do_deadlock)
		MyceliumDetectDistributedDeadlocks(nodes);	/* first: a down peer slows health */
	if (ready && do_health)
		health_check(nodes);
	if (ready && do_recovery)
		MyceliumRecoverPreparedTransactions();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_activity(STATE_IDLE, NULL);
	return ready;
}

/*
 * forget_worker stops backends from waking this worker once it exits.
 */
static void
forget_worker(int code, Datum arg)
{
	MyceliumTxnRegistrySetWorker(-1);
}

/*
 * MyceliumMaintenanceMain is the worker's entry point.
 */
void
MyceliumMaintenanceMain(Datum main_arg)
{
	MemoryContext loop_ctx;
	TimestampTz next_health = 0;
	TimestampTz next_recovery = 0;
	TimestampTz next_deadlock = 0;
	TimestampTz next_cert_check = 0;
	TimestampTz next_events = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(mycelium_database, NULL, 0);
	pgstat_report_appname("mycelium maintenance");
	/* backends wake it to announce their ended two-phase commits */
	MyceliumTxnRegistrySetWorker(MyProc->pgprocno);
	before_shmem_exit(forget_worker, (Datum) 0);
	/* a health check must not stall on retries: one attempt per check */
	SetConfigOption("mycelium.connect_attempts", "1", PGC_SUSET, PGC_S_OVERRIDE);

	loop_ctx = AllocSetContextCreate(TopMemoryContext, "mycelium maintenance loop",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		TimestampTz now = GetCurrentTimestamp();
		bool		do_health = now >= next_health;
		bool		do_recovery = mycelium_recovery_interval_ms > 0 && now >= next_recovery;
		bool		do_deadlock = mycelium_deadlock_detection_interval_ms > 0 && now >= next_deadlock;
		bool		events = MyceliumTxnRegistryHasDeferred();
		bool		do_events = events && now >= next_events;
		bool		ready = true;
		long		timeout;

		if (do_health || do_recovery || do_deadlock || do_events)
		{
			MemoryContext old = MemoryContextSwitchTo(loop_ctx);

			PG_TRY();
			{
				ready = run_iteration(do_health, do_recovery, do_deadlock);
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

			now = GetCurrentTimestamp();
			if (do_health)
				next_health = TimestampTzPlusMilliseconds(now, ready ? mycelium_heartbeat_interval_ms : IDLE_CHECK_MS);
			if (do_recovery)
				next_recovery = TimestampTzPlusMilliseconds(now, ready ? mycelium_recovery_interval_ms : IDLE_CHECK_MS);
			if (do_deadlock)
				next_deadlock = TimestampTzPlusMilliseconds(now, ready ? mycelium_deadlock_detection_interval_ms : IDLE_CHECK_MS);
			/* events wait a little, to go out in batches under load */
			next_events = TimestampTzPlusMilliseconds(now, ready ? EVENTS_BATCH_MS : IDLE_CHECK_MS);
		}

		if (now >= next_cert_check)
		{
			MyceliumTlsCheckExpiry();	/* logs, never raises */
			next_cert_check = TimestampTzPlusMilliseconds(now, CERT_CHECK_MS);
		}

		timeout = (long) ((next_health - now) / 1000);
		if (mycelium_recovery_interval_ms > 0)
			timeout = Min(timeout, (long) ((next_recovery - now) / 1000));
		if (mycelium_deadlock_detection_interval_ms > 0)
			timeout = Min(timeout, (long) ((next_deadlock - now) / 1000));
		if (events)
			timeout = Min(timeout, (long) ((next_events - now) / 1000));
		timeout = Max(timeout, 1);
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			next_recovery = 0;	/* apply a new interval at once */
			next_deadlock = 0;
			next_cert_check = 0;	/* and look at rotated certificates */
		}
	}
}
