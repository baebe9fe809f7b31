/*-------------------------------------------------------------------------
 *
 * apply_worker.c
 *	  The apply worker of one source peer: connect, stream, apply, and
 *	  keep the shared peer state current.
 *
 * Started by the launcher with the peer's name and node id.  A session
 * connects to the peer (replication=database, TLS per mycelium.ssl_*),
 * creates the slot "mycelium_node_<our id>" there if it is missing, and
 * starts streaming from the progress of the local replication origin
 * "mycelium_<peer>" (set up for the whole life of the worker).  The loop
 * drains every CopyData message libpq has before doing per-batch work
 * (committing the remote transactions applied meanwhile -- in one local
 * transaction where apply.c finds that safe --, shared state, feedback),
 * so a backlog is applied at full speed; it
 * sends status feedback every mycelium.heartbeat_interval (asking the peer
 * for a keepalive, our liveness probe) or when applying moved far, never
 * per transaction.  A peer silent for mycelium.peer_timeout is marked down.
 *
 * Any error ends the session, not the worker: it is logged with the remote
 * position, the local transaction is rolled back, and the worker
 * reconnects after a per-peer exponential backoff with jitter, resuming
 * from the origin's progress -- nothing lost, nothing applied twice.  A
 * protocol violation (a malformed or unexpected message, SQLSTATE 08P01)
 * ends the worker too: nothing it holds can be trusted any more, so it
 * exits with code 1 (which the postmaster does not treat as a crash) and
 * the launcher starts a fresh one after the peer's backoff.  The test-only
 * mycelium.fault_injection = corrupt_replication_message garbles one
 * received row change per worker process to exercise that path.
 * pause_replication (peer->paused) ends the session too; the worker waits
 * until resumed.
 *
 * IDENTIFICATION
 *	  src/replication/apply_worker.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/origin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "cluster/cluster.h"
#include "config/config.h"
#include "replication/apply_internal.h"
#include "replication/vclock.h"

/* send feedback early when applying moved this far since the last one */
#define FEEDBACK_LSN_DISTANCE	(16 * 1024 * 1024)

/* what the worker reports into the shared peer state */
typedef struct PeerReport
{
	int			status;			/* -1: unchanged */
	XLogRecPtr	received_lsn;
	XLogRecPtr	applied_lsn;
	XLogRecPtr	peer_wal_end;
	TimestampTz last_commit_time;
	TimestampTz last_heartbeat;
	int64		add_transactions;
	int64		add_conflicts;
	int64		add_retries;
} PeerReport;

/* the worker's session with its peer */
static struct
{
	MyceliumApplyArgs args;
	char		host[256];
	int			port;
	int			my_node_id;
	char		user[NAMEDATALEN];
	RepOriginId origin;
	RepOriginId vv_origin;		/* persists the version vector entry */
	PGconn	   *conn;
	char	   *copybuf;		/* from PQgetCopyData, freed on error too */
	XLogRecPtr	start_lsn;
	XLogRecPtr	received_lsn;
	XLogRecPtr	peer_wal_end;
	XLogRecPtr	flushed_reported;
	XLogRecPtr	applied_at_feedback;	/* end_lsn when feedback was last sent */
	TimestampTz last_receive;
	TimestampTz next_feedback;
	bool		timed_out;
	int64		reported_transactions;
	int64		reported_conflicts;
	int64		retries;		/* consecutive failed sessions */
} w;

/*
 * apply_report is the peer state callback: it only assigns.
 */
static void
apply_report(MyceliumReplPeer *peer, void *arg)
{
	PeerReport *r = arg;

	if (r->status >= 0)
		peer->status = (MyceliumReplPeerStatus) r->status;
	peer->worker_pid = MyProcPid;
	if (r->received_lsn)
		peer->received_lsn = r->received_lsn;
	if (r->applied_lsn)
		peer->applied_lsn = r->applied_lsn;
	if (r->peer_wal_end)
		peer->peer_wal_end = r->peer_wal_end;
	if (r->last_commit_time)
		peer->last_commit_time = r->last_commit_time;
	if (r->last_heartbeat)
		peer->last_heartbeat = r->last_heartbeat;
	peer->applied_transactions += r->add_transactions;
	peer->conflicts += r->add_conflicts;
	peer->retries += r->add_retries;
}

/*
 * report publishes the worker's progress (and a new status, or -1).
 */
static void
report(int status, int64 add_retries)
{
	MyceliumApplyStats *st = MyceliumApplyGetStats();
	PeerReport	r;

	memset(&r, 0, sizeof(r));
	r.status = status;
	r.received_lsn = w.received_lsn;
	r.applied_lsn = Max(st->end_lsn, w.start_lsn);
	r.peer_wal_end = w.peer_wal_end;
	r.last_commit_time = st->commit_time;
	r.last_heartbeat = w.last_receive;
	r.add_transactions = st->transactions - w.reported_transactions;
	r.add_conflicts = st->conflicts - w.reported_conflicts;
	r.add_retries = add_retries;
	w.reported_transactions = st->transactions;
	w.reported_conflicts = st->conflicts;
	MyceliumReplPeerUpdate(w.args.node_name, apply_report, &r);
}

/* peer state callback for a worker that exits */
static void
clear_pid(MyceliumReplPeer *peer, void *arg)
{
	if (peer->worker_pid == MyProcPid)
		peer->worker_pid = 0;
}

/*
 * worker_exit closes the connection and clears our pid from the state.
 */
static void
worker_exit(int code, Datum arg)
{
	MyceliumReplPeer peer;

	if (w.conn)
		PQfinish(w.conn);
	w.conn = NULL;
	/* the launcher may have forgotten a removed peer: do not recreate it */
	if (MyceliumReplPeerGet(w.args.node_name, &peer))
		MyceliumReplPeerUpdate(w.args.node_name, clear_pid, NULL);
}

/*
 * load_setup finds the peer and ourselves in the catalog, and creates or
 * finds the local replication origin of the peer.  Raises when the mesh
 * does not know the peer (the launcher will stop us).
 */
static void
load_setup(void)
{
	List	   *nodes;
	MyceliumNode *peer;
	MyceliumNode *me;
	char		origin_name[NAMEDATALEN];

	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	nodes = MyceliumCachedNodes();
	peer = MyceliumFindNode(nodes, w.args.node_name);
	me = MyceliumFindNode(nodes, mycelium_node_name);
	if (peer == NULL || me == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("node \"%s\" is not in the mesh", peer ? mycelium_node_name : w.args.node_name)));
	strlcpy(w.host, peer->host, sizeof(w.host));
	w.port = peer->port;
	w.my_node_id = me->node_id;
	strlcpy(w.user, GetUserNameFromId(BOOTSTRAP_SUPERUSERID, false), sizeof(w.user));
	MyceliumReplOriginName(w.args.node_name, origin_name, sizeof(origin_name));
	w.origin = replorigin_by_name(origin_name, true);
	if (w.origin == InvalidRepOriginId)
		w.origin = replorigin_create(origin_name);
	w.vv_origin = MyceliumReplVectorOrigin(w.args.node_name, true);
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/*
 * ensure_slot creates our slot on the peer unless it exists (asked first,
 * so the peer's log is not filled with "already exists" errors).
 */
static void
ensure_slot(const char *slot)
{
	char		sql[256];
	PGresult   *res;
	bool		exists;

	snprintf(sql, sizeof(sql),
			 "SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = '%s'", slot);
	res = MyceliumWalExec(w.conn, sql);
	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		PQclear(res);
		MyceliumWalConnError(w.conn, "look up the replication slot", w.args.node_name);
	}
	exists = PQntuples(res) > 0;
	PQclear(res);
	if (exists)
		return;

	snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT \"%s\" LOGICAL mycelium NOEXPORT_SNAPSHOT", slot);
	res = MyceliumWalExec(w.conn, sql);
	if (res == NULL)
		MyceliumWalConnError(w.conn, "create a replication slot", w.args.node_name);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		char	   *msg = pchomp(PQresultErrorMessage(res));

		PQclear(res);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not create replication slot \"%s\" on node \"%s\"", slot, w.args.node_name),
				 errdetail_internal("%s", msg)));
	}
	PQclear(res);
	if (replorigin_session_get_progress(false) != InvalidXLogRecPtr)
		ereport(WARNING,
				(errcode(ERRCODE_DATA_CORRUPTED),
				 errmsg("replication slot \"%s\" was missing on node \"%s\" and has been created again",
						slot, w.args.node_name),
				 errdetail("Changes committed on node \"%s\" while the slot was missing are not replicated here.",
						   w.args.node_name),
				 errhint("Compare the replicated tables with mycelium.table_checksum and copy what is missing.")));
	ereport(LOG,
			(errmsg("mycelium: created replication slot \"%s\" on node \"%s\"", slot, w.args.node_name)));
}

/*
 * start_stream connects, makes sure our slot exists on the peer and starts
 * streaming from the origin's progress.
 */
static void
start_stream(void)
{
	char		slot[NAMEDATALEN];
	char		appname[NAMEDATALEN + 16];
	char		sql[256];
	PGresult   *res;

	MyceliumReplSlotName(w.my_node_id, slot, sizeof(slot));
	snprintf(appname, sizeof(appname), "mycelium apply %s", mycelium_node_name);
	w.conn = MyceliumWalConnect(w.host, w.port, w.user, appname);

	ensure_slot(slot);
	w.start_lsn = replorigin_session_get_progress(false);
	snprintf(sql, sizeof(sql), "START_REPLICATION SLOT \"%s\" LOGICAL %X/%X (proto_version '1')",
			 slot, LSN_FORMAT_ARGS(w.start_lsn));
	res = MyceliumWalExec(w.conn, sql);
	if (res == NULL || PQresultStatus(res) != PGRES_COPY_BOTH)
	{
		char	   *msg = pchomp(res ? PQresultErrorMessage(res) : PQerrorMessage(w.conn));

		PQclear(res);
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not start streaming from node \"%s\"", w.args.node_name),
				 errdetail_internal("%s", msg)));
	}
	PQclear(res);
	MyceliumWalReadAhead(w.conn);
	w.received_lsn = Max(w.received_lsn, w.start_lsn);
	w.flushed_reported = w.start_lsn;
	w.last_receive = GetCurrentTimestamp();
	w.next_feedback = 0;
	w.retries = 0;
	ereport(LOG,
			(errmsg("mycelium: streaming from node \"%s\" at %X/%X",
					w.args.node_name, LSN_FORMAT_ARGS(w.start_lsn))));
	report(MYCELIUM_REPL_STREAMING, 0);
}

/*
 * read_int64 reads a big-endian 64-bit integer.
 */
static uint64
read_int64(const char *p)
{
	uint64		v = 0;
	int			i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | (unsigned char) p[i];
	return v;
}

/*
 * send_feedback reports what we received and what is applied and on disk
 * here: the worker commits asynchronously, so a position is confirmed to
 * the peer (which may then drop that WAL) only once the local commit
 * record is flushed -- until then the last confirmed position is repeated.
 * Out of a remote transaction with everything received applied and
 * flushed, the peer's WAL end from its keepalive is confirmed too, so an
 * idle or filtered stream does not hold WAL on the peer.
 */
static void
send_feedback(bool reply_requested)
{
	MyceliumApplyStats *st = MyceliumApplyGetStats();
	XLogRecPtr	flush = Max(st->end_lsn, w.start_lsn);

	if (st->local_end > GetFlushRecPtr(NULL))
		flush = w.flushed_reported;
	else if (!MyceliumApplyInTransaction() && w.peer_wal_end >= w.received_lsn)
		flush = Max(flush, w.peer_wal_end);
	MyceliumWalSendFeedback(w.conn, Max(w.received_lsn, flush), flush, reply_requested);
	w.flushed_reported = flush;
	w.applied_at_feedback = st->end_lsn;
	w.next_feedback = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												  mycelium_heartbeat_interval_ms);
}

/*
 * inject_fault garbles the header of the replication message carried by
 * an XLogData CopyData message when mycelium.fault_injection is
 * corrupt_replication_message (tests only): the fifth row change the
 * worker receives -- inside a remote transaction whose first changes are
 * applied already -- gets the high byte of its 4-byte body length
 * flipped, so the parser must refuse it.  Once per worker process; tests
 * reset the setting once the error is logged.
 */
static void
inject_fault(char *buf, int len)
{
	static int	changes = 0;
	char		type;

	if (mycelium_fault_injection != MYCELIUM_FAULT_CORRUPT_REPLICATION_MESSAGE ||
		changes > 5 || len < 25 + MYCELIUM_REPL_HEADER_SIZE || buf[0] != 'w')
		return;
	type = buf[25];
	if (type != MYCELIUM_REPL_MSG_INSERT && type != MYCELIUM_REPL_MSG_UPDATE &&
		type != MYCELIUM_REPL_MSG_DELETE)
		return;
	if (++changes < 5)
		return;
	changes++;
	buf[25 + 1] ^= 0x40;
	ereport(LOG,
			(errmsg("mycelium: fault injection garbled a replication message from node \"%s\"",
					w.args.node_name)));
}

/*
 * handle_copydata processes one CopyData message of the stream.
 */
static void
handle_copydata(const char *buf, int len)
{
	if (len >= 25 && buf[0] == 'w')
	{
		XLogRecPtr	start = read_int64(buf + 1);

		w.received_lsn = Max(w.received_lsn, start);
		MyceliumApplyMessage(buf + 25, len - 25, start);
	}
	else if (len >= 18 && buf[0] == 'k')
	{
		w.peer_wal_end = read_int64(buf + 1);
		if (buf[17])
			send_feedback(false);
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("node \"%s\" sent an unexpected streaming message", w.args.node_name)));
}

/*
 * drain applies every CopyData message libpq has already received, but
 * returns at least every heartbeat interval so that feedback and shared
 * state keep flowing through a long backlog.  Returns true when it
 * stopped early (more may be buffered).
 */
static bool
drain(void)
{
	int			n = 0;

	for (;;)
	{
		int			len = PQgetCopyData(w.conn, &w.copybuf, 1);

		if (len == 0)
		{
			/* libpq's buffer is empty: read what the socket already holds */
			if (!PQconsumeInput(w.conn))
				MyceliumWalConnError(w.conn, "read the stream", w.args.node_name);
			len = PQgetCopyData(w.conn, &w.copybuf, 1);
			if (len == 0)
				return false;
		}
		if (len < 0)
			MyceliumWalConnError(w.conn, len == -1 ? "keep streaming (the stream ended)" : "read the stream",
								 w.args.node_name);
		w.last_receive = GetCurrentTimestamp();
		inject_fault(w.copybuf, len);
		handle_copydata(w.copybuf, len);
		PQfreemem(w.copybuf);
		w.copybuf = NULL;
		if (++n % 256 == 0 && w.last_receive >= w.next_feedback)
			return true;
	}
}

/*
 * is_paused: pause_replication is in force for our peer.
 */
static bool
is_paused(void)
{
	MyceliumReplPeer peer;

	return MyceliumReplPeerGet(w.args.node_name, &peer) && peer.paused;
}

/*
 * stream runs one session until paused (returns) or an error (raises).
 */
static void
stream(MemoryContext loop_ctx)
{
	start_stream();
	for (;;)
	{
		TimestampTz now;
		long		timeout;
		bool		more;

		more = drain();
		/* commit the batch of remote transactions applied so far */
		MyceliumApplyFlush();
		report(-1, 0);
		now = GetCurrentTimestamp();
		if (now >= w.next_feedback ||
			MyceliumApplyGetStats()->end_lsn > w.applied_at_feedback + FEEDBACK_LSN_DISTANCE)
			send_feedback(true);
		if (now > TimestampTzPlusMilliseconds(w.last_receive, mycelium_peer_timeout_ms))
		{
			w.timed_out = true;
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("node \"%s\" sent nothing for %d ms", w.args.node_name,
							mycelium_peer_timeout_ms)));
		}
		if (is_paused())
			return;
		MemoryContextReset(loop_ctx);

		timeout = Max((long) ((w.next_feedback - now) / 1000), 1);
		/* bytes held by OpenSSL (read-ahead) do not wake us: poll */
		if (MyceliumWalReadPending(w.conn))
			timeout = 1;
		if (more)
		{
			CHECK_FOR_INTERRUPTS();
			continue;			/* drain stopped early: no sleep */
		}
		(void) WaitLatchOrSocket(MyLatch,
								 WL_SOCKET_READABLE | WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
								 PQsocket(w.conn), timeout, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		if (!PQconsumeInput(w.conn))
			MyceliumWalConnError(w.conn, "read the stream", w.args.node_name);
	}
}

/*
 * end_session drops the connection and any half-applied transaction.
 */
static void
end_session(void)
{
	if (w.copybuf)
		PQfreemem(w.copybuf);
	w.copybuf = NULL;
	AbortOutOfAnyTransaction();
	MyceliumApplyReset();
	if (w.conn)
		PQfinish(w.conn);
	w.conn = NULL;
}

/*
 * wait_ms sleeps on the latch (interruptible) for ms.
 */
static void
wait_ms(long ms)
{
	(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					 Max(ms, 1), PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * exit_after_violation ends the worker after a protocol violation (the
 * session is already ended): exit code 1 is an orderly exit for the
 * postmaster, and the launcher, woken by the death, restarts the worker
 * after the peer's backoff and counts the retry.
 */
static void
exit_after_violation(void)
{
	ereport(LOG,
			(errmsg("mycelium: apply worker for node \"%s\" exits after a protocol violation",
					w.args.node_name),
			 errdetail("The replication launcher starts it again after a backoff; it resumes at %X/%X.",
					   LSN_FORMAT_ARGS(replorigin_session_get_progress(false)))));
	report(MYCELIUM_REPL_DOWN, 0);
	proc_exit(1);
}

/*
 * MyceliumApplyWorkerMain is the apply worker's entry point.
 */
void
MyceliumApplyWorkerMain(Datum main_arg)
{
	MemoryContext loop_ctx;

	memcpy(&w.args, MyBgworkerEntry->bgw_extra, sizeof(w.args));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(mycelium_database, NULL, 0);
	pgstat_report_appname("mycelium apply");
	/* like PostgreSQL's apply worker: only ENABLE REPLICA/ALWAYS triggers fire */
	SetConfigOption("session_replication_role", "replica", PGC_SUSET, PGC_S_OVERRIDE);
	/* safe: feedback confirms only flushed commits (send_feedback) */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);
	before_shmem_exit(worker_exit, (Datum) 0);
	report(MYCELIUM_REPL_STARTING, 0);

	load_setup();
	replorigin_session_setup(w.origin);
	replorigin_session_origin = w.origin;
	MyceliumApplyInit(w.args.node_name, w.vv_origin);
	loop_ctx = AllocSetContextCreate(TopMemoryContext, "mycelium apply loop",
									 ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		if (is_paused())
		{
			report(MYCELIUM_REPL_PAUSED, 0);
			wait_ms(mycelium_heartbeat_interval_ms);
			continue;
		}
		w.timed_out = false;
		PG_TRY();
		{
			MemoryContextSwitchTo(loop_ctx);
			stream(loop_ctx);
			end_session();
		}
		PG_CATCH();
		{
			int			code;

			MemoryContextSwitchTo(loop_ctx);
			code = geterrcode();
			errcontext("applying changes from node \"%s\", received up to %X/%X",
					   w.args.node_name, LSN_FORMAT_ARGS(w.received_lsn));
			EmitErrorReport();
			FlushErrorState();
			end_session();
			if (code == ERRCODE_PROTOCOL_VIOLATION)
				exit_after_violation();
			w.retries++;
			/* unreachable or silent: down; an apply error: starting again */
			report(w.timed_out || code == ERRCODE_CONNECTION_FAILURE ? MYCELIUM_REPL_DOWN : MYCELIUM_REPL_STARTING, 1);
			wait_ms(MyceliumReplBackoffMs(w.retries));
		}
		PG_END_TRY();
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(loop_ctx);
	}
}
