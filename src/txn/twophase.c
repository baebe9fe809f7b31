/*-------------------------------------------------------------------------
 *
 * twophase.c
 *	  Committing the remote work of a transaction: one phase when a single
 *	  node wrote, two-phase commit when two or more did.
 *
 * At PRE_COMMIT, if more than one node wrote (counting this one), one
 * transaction decides, and a commit record (the gid and its participants)
 * is inserted in it (commit_record.c).  If this node wrote, that is the
 * local transaction: every remote node that wrote gets PREPARE TRANSACTION
 * in parallel (bounded by mycelium.prepare_timeout), and the local
 * transaction commits, always durably (ForceSyncCommit).  If it did not,
 * the first writer by name, the keeper, decides: the others prepare, then
 * the keeper inserts the record and commits in one phase, in one round
 * trip (commit_on_keeper); the local commit then flushes nothing.  Once
 * decided, COMMIT PREPARED is sent to every participant at once and
 * awaited (failures are left to recovery, with a WARNING), so that once
 * the client hears of the commit every session on every node sees it.  If
 * anything fails before the decision, the abort path rolls the prepared
 * transactions back; if the keeper's answer never came, it leaves them to
 * recovery.  Recovery (recovery.c) resolves whatever a crash leaves: a
 * prepared transaction whose coordinator transaction is over commits if
 * and only if its commit record exists (on a keeper: once nothing there
 * works for it any more).
 *
 * The gid names the coordinator and its transaction: <id> is the node's
 * life (MyceliumTxnLife, new at every start and crash restart) in the high
 * 32 bits and the coordinator's xid in the low 32 bits.  A transaction of
 * an earlier life is over, whatever its xid; one of this life is over when
 * its xid no longer runs.  So nothing is ever guessed, and the xid need not
 * be durable before PREPARE: an xid reused after a crash carries another
 * life, hence another gid.
 *
 * The backend's state (preparing, committing, aborting) is published in
 * shared memory for mycelium.distributed_transactions, and mycelium_events
 * notifications are queued (registry.c).
 *
 * Read-only remote transactions, and a single writing node when this node
 * wrote nothing, commit in one phase.  Subtransactions map to remote
 * savepoints s<level>, created lazily when a connection is first used at
 * that level.
 *
 * IDENTIFICATION
 *	  src/txn/twophase.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/procarray.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "config/config.h"
#include "transport/transport.h"
#include "cluster/cluster.h"
#include "txn/txn.h"

#define GID_PREFIX "mycelium_"
#define CALLBACK_TIMEOUT_MS 30000

static bool events_deferred = false;	/* after_commit leaves them to the worker */

/* mycelium.enable_commit_keeper: a writing peer may keep the commit record */
static bool enable_commit_keeper = true;

/* mycelium.synchronous_commit_prepared: COMMIT waits for COMMIT PREPARED */
static bool synchronous_commit_prepared = true;

/* where the keeper's commit (commit_record.c) of this transaction stands */
typedef enum KeeperState
{
	KEEPER_NONE,				/* none, or it certainly did not commit */
	KEEPER_SENT,				/* its answer never came: left to recovery */
	KEEPER_COMMITTED			/* it committed: the transaction did */
} KeeperState;

static KeeperState keeper_state = KEEPER_NONE;

/*
 * MyceliumGidCoordinatorRunning says whether the coordinating transaction
 * of a gid of this node (its parsed id) may still be running, in which
 * case recovery must leave the gid alone.  A gid of an earlier life of the
 * node (or of a version that put the full xid there) is over: that life
 * ended, and with it every transaction.
 */
bool
MyceliumGidCoordinatorRunning(uint64 id)
{
	if ((uint32) (id >> 32) != MyceliumTxnLife())
		return false;
	return TransactionIdIsInProgress((TransactionId) (id & 0xFFFFFFFF));
}

/*
 * drop_unsent_begins forgets the remote begins that no statement carried
 * to their node (transport/remote_xact.c): those connections have no
 * remote transaction to end.
 */
static void
drop_unsent_begins(List *conns)
{
	ListCell   *lc;

	foreach(lc, conns)
		MyceliumDropUnsentBegin(lfirst(lc));
}

/*
 * check_connections_intact fails the commit if a connection the transaction
 * used was lost: its remote work is gone.
 */
static void
check_connections_intact(List *conns)
{
	ListCell   *lc;

	foreach(lc, conns)
	{
		MyceliumConnection *c = lfirst(lc);

		if (c->xact_depth == 0)
			continue;			/* no remote transaction began on it */
		if (!MyceliumConnectionUsable(c) ||
			PQtransactionStatus(c->conn) != PQTRANS_INTRANS)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("connection to node \"%s\" was lost during the transaction", c->node_name),
					 errdetail("The work done on that node was rolled back, so the whole transaction is.")));
	}
}

/*
 * commit_one_phase sends COMMIT to every connection in the list at once.
 */
static void
commit_one_phase(List *conns)
{
	int			n = list_length(conns);
	MyceliumConnection **arr;
	int			i = 0;
	ListCell   *lc;

	if (n == 0)
		return;
	arr = palloc(sizeof(MyceliumConnection *) * n);
	foreach(lc, conns)
		arr[i++] = lfirst(lc);
	MyceliumExecParallel(arr, n, "COMMIT", 0, NULL);
	for (i = 0; i < n; i++)
		arr[i]->xact_depth = 0;
}

/*
 * node_names returns the node names of a list of connections as a text[].
 */
static ArrayType *
node_names(List *conns)
{
	Datum	   *names = palloc(sizeof(Datum) * Max(list_length(conns), 1));
	int			i = 0;
	ListCell   *lc;

	foreach(lc, conns)
		names[i++] = CStringGetTextDatum(((MyceliumConnection *) lfirst(lc))->node_name);
	return construct_array(names, i, TEXTOID, -1, false, TYPALIGN_INT);
}

/*
 * insert_commit_record records the decision to commit gid, durably with
 * the local transaction.
 */
static void
insert_commit_record(const char *gid, List *writers)
{
	MyceliumInsertCommitRecord(gid, PointerGetDatum(node_names(writers)));
}

/*
 * prepare_all sends PREPARE TRANSACTION to every writer at once and waits
 * at most mycelium.prepare_timeout; any failure is an ERROR (the abort path
 * then rolls back those that did prepare).  Each writer is marked with the
 * gid before its PREPARE is sent: an error or cancel can interrupt the
 * wait after a participant prepared but before its answer was read, and
 * the abort path must roll that one back too.
 */
static void
prepare_all(List *writers, const char *gid)
{
	int			n = list_length(writers);
	MyceliumConnection **arr = palloc(sizeof(MyceliumConnection *) * n);
	PGresult  **results = palloc0(sizeof(PGresult *) * n);
	char	   *sql = psprintf("PREPARE TRANSACTION '%s'", gid);
	int			i = 0;
	int			bad = -1;
	ListCell   *lc;

	foreach(lc, writers)
		arr[i++] = lfirst(lc);
	for (i = 0; i < n; i++)
		strlcpy(arr[i]->prepared_gid, gid, MYCELIUM_GID_SIZE);
	for (i = 0; i < n; i++)
		if (!MyceliumSendQuery(arr[i], sql, 0, NULL))
			MyceliumReportConnError(ERROR, arr[i], "send PREPARE TRANSACTION");
	MyceliumWaitResults(arr, n, results,
						TimestampTzPlusMilliseconds(GetCurrentTimestamp(), mycelium_prepare_timeout_ms),
						true);
	for (i = 0; i < n; i++)
	{
		if (results[i] && PQresultStatus(results[i]) == PGRES_COMMAND_OK)
			arr[i]->xact_depth = 0;
		else if (bad < 0)
			bad = i;
		if (bad != i)
			PQclear(results[i]);
	}
	if (bad >= 0)
	{
		if (results[bad] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not prepare the transaction on node \"%s\"", arr[bad]->node_name),
					 errdetail("The node did not answer within mycelium.prepare_timeout (%d ms) or the connection failed.",
							   mycelium_prepare_timeout_ms),
					 errhint("The transaction was rolled back on every node.")));
		MyceliumReportResultError(ERROR, results[bad], arr[bad], sql);
	}
}

/*
 * inject_fault kills this backend at a named point when the test-only
 * setting mycelium.fault_injection asks for it, simulating a crash.
 */
static void
inject_fault(MyceliumFault point)
{
	if (mycelium_fault_injection == point)
	{
		ereport(LOG, (errmsg("mycelium: fault injection: killing backend %d", MyProcPid)));
		kill(MyProcPid, SIGKILL);
		pg_usleep(10 * 1000000L);	/* never reached: SIGKILL is immediate */
	}
}

/*
 * by_node_name orders connections by node name (list_sort comparator), so
 * commit records, the registry and events list participants alike.
 */
static int
by_node_name(const ListCell *a, const ListCell *b)
{
	return strcmp(((MyceliumConnection *) lfirst(a))->node_name,
				  ((MyceliumConnection *) lfirst(b))->node_name);
}

/*
 * choose_keeper returns the writer that keeps the commit record and
 * commits in one phase (commit_record.c), or NULL when the record stays
 * here: this node wrote (its commit decides anyway), or a participant is
 * outside the mesh (membership changes keep their records here).
 */
static MyceliumConnection *
choose_keeper(List *writers, bool local_wrote)
{
	if (!enable_commit_keeper || local_wrote || MyceliumHasOutsideParticipants())
		return NULL;
	return linitial(writers);
}

/*
 * commit_on_keeper makes the keeper insert the commit record and commit,
 * in one round trip: that commit decides.  Waits at most
 * mycelium.prepare_timeout, then cancels and waits as long again for the
 * answer.  Returns once it committed.  Raises if it certainly did not (the
 * abort path then rolls the prepared writers back), and 08007 if its answer
 * never came: the prepared writers are then left alone for recovery, which
 * asks the keeper.
 */
static void
commit_on_keeper(MyceliumConnection *keeper, const char *gid, List *prepared)
{
	char	   *names = OidOutputFunctionCall(F_ARRAY_OUT, PointerGetDatum(node_names(prepared)));
	char	   *sql = psprintf("SELECT mycelium.keep_commit_record(%s, %s);COMMIT",
							   quote_literal_cstr(gid), quote_literal_cstr(names));
	bool		timed_out = false;
	PGresult   *res;

	if (!MyceliumSendQuery(keeper, sql, 0, NULL))
		MyceliumReportConnError(ERROR, keeper, "send COMMIT");
	keeper_state = KEEPER_SENT;
	/* like a local commit, not interrupted: bounded by the timeouts */
	res = MyceliumGetResult(keeper, TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																mycelium_prepare_timeout_ms), false);
	if (res == NULL && keeper->conn && PQstatus(keeper->conn) == CONNECTION_OK &&
		PQtransactionStatus(keeper->conn) == PQTRANS_ACTIVE)
	{
		timed_out = true;
		MyceliumSendCancel(keeper);
		res = MyceliumGetResult(keeper, TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																	mycelium_prepare_timeout_ms), false);
	}
	if (res && PQresultStatus(res) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(res), "COMMIT") == 0)
	{
		PQclear(res);
		keeper->xact_depth = 0;
		keeper_state = KEEPER_COMMITTED;
		return;
	}
	if (res == NULL)
	{
		/* keeper_state stays KEEPER_SENT: the abort path leaves them alone */
		keeper->broken = true;
		ereport(ERROR,
				(errcode(ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN),
				 errmsg("could not learn whether node \"%s\" committed the transaction", keeper->node_name),
				 errdetail("The transaction committed on every node or on none. Recovery on this node finishes prepared transaction \"%s\" on the other nodes accordingly once node \"%s\" can be reached.",
						   gid, keeper->node_name),
				 errhint("mycelium.commit_outcome('%s') on node \"%s\" tells the outcome.", gid, keeper->node_name)));
	}
	keeper_state = KEEPER_NONE;
	if (timed_out)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not commit the transaction on node \"%s\"", keeper->node_name),
				 errdetail("The node did not answer within mycelium.prepare_timeout (%d ms) and its commit was cancelled.",
						   mycelium_prepare_timeout_ms),
				 errhint("The transaction was rolled back on every node.")));
	MyceliumReportResultError(ERROR, res, keeper, "COMMIT");
}

/*
 * queue_events arranges for "prepared" and "committed": they go out only if
 * the local commit happens.  after_commit leaves them to the maintenance
 * worker (NOTIFY here would serialize the node's commits, see
 * txn/registry.c), unless its queue is backlogged.
 */
static void
queue_events(void)
{
	events_deferred = !MyceliumTxnRegistryEventsBacklogged();
	if (!events_deferred)
	{
		MyceliumNotifyOwnEvent("prepared");
		MyceliumNotifyOwnEvent("committed");
	}
}

/*
 * pre_commit ends the remote transactions before the local commit.
 */
static void
pre_commit(void)
{
	List	   *conns = MyceliumXactConnections();
	List	   *writers = NIL;
	List	   *readers = NIL;
	List	   *prepared;
	ListCell   *lc;
	bool		local_wrote;
	uint64		id;
	MyceliumConnection *keeper;
	char	   *gid;

	if (conns == NIL)
		return;
	drop_unsent_begins(conns);
	check_connections_intact(conns);
	foreach(lc, conns)
	{
		MyceliumConnection *c = lfirst(lc);

		if (c->xact_depth == 0)
			continue;			/* joined, but no remote transaction began */
		if (c->wrote)
			writers = lappend(writers, c);
		else
			readers = lappend(readers, c);
	}
	local_wrote = TransactionIdIsValid(GetTopTransactionIdIfAny());
	if (writers == NIL || (list_length(writers) == 1 && !local_wrote))
	{
		commit_one_phase(list_concat(readers, writers));
		return;
	}

	commit_one_phase(readers);
	list_sort(writers, by_node_name);
	id = ((uint64) MyceliumTxnLife() << 32) | GetTopTransactionId();
	keeper = choose_keeper(writers, local_wrote);
	if (keeper)
	{
		/* nothing to flush here: the keeper's commit decides */
		gid = MyceliumKeeperGid(id, keeper->node_name);
		prepared = list_delete_ptr(list_copy(writers), keeper);
	}
	else
	{
		/*
		 * The commit record stays invisible unless the local commit
		 * happens, and that commit must be durable before COMMIT PREPARED
		 * is sent, even with synchronous_commit = off.  Nothing is flushed
		 * before PREPARE: the life in the gid tells recovery a crashed
		 * transaction from one reusing its xid (see the file comment).
		 */
		gid = psprintf(GID_PREFIX UINT64_FORMAT "_%s", id, mycelium_node_name);
		prepared = writers;
		insert_commit_record(gid, writers);
		ForceSyncCommit();
	}
	MyceliumLogOutsideParticipants(gid);
	MyceliumTxnRegistrySet(MYCELIUM_TXN_PREPARING, gid, writers);
	prepare_all(prepared, gid);
	inject_fault(MYCELIUM_FAULT_CRASH_AFTER_PREPARE);
	if (mycelium_fault_injection == MYCELIUM_FAULT_ERROR_AFTER_PREPARE)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("mycelium: fault injection: error after PREPARE TRANSACTION")));
	queue_events();
	if (keeper)
		commit_on_keeper(keeper, gid, prepared);
}

/*
 * finish_prepared sends COMMIT PREPARED or ROLLBACK PREPARED for every
 * prepared participant, at once, never raising: what fails is left to
 * recovery, with a WARNING.
 */
static void
finish_prepared(List *conns, bool commit)
{
	int			n = 0;
	MyceliumConnection **arr = palloc(sizeof(MyceliumConnection *) * Max(list_length(conns), 1));
	PGresult  **results = palloc0(sizeof(PGresult *) * Max(list_length(conns), 1));
	ListCell   *lc;
	int			i;

	foreach(lc, conns)
	{
		MyceliumConnection *c = lfirst(lc);
		char	   *sql;

		if (c->prepared_gid[0] == '\0')
			continue;
		sql = psprintf("%s PREPARED '%s'", commit ? "COMMIT" : "ROLLBACK", c->prepared_gid);
		if (MyceliumSendQuery(c, sql, 0, NULL))
			arr[n++] = c;
		else
			ereport(WARNING,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not %s prepared transaction \"%s\" on node \"%s\"",
							commit ? "commit" : "roll back", c->prepared_gid, c->node_name),
					 errdetail("Recovery will finish it once the node can be reached.")));
	}
	MyceliumWaitResults(arr, n, results,
						TimestampTzPlusMilliseconds(GetCurrentTimestamp(), CALLBACK_TIMEOUT_MS), false);
	for (i = 0; i < n; i++)
	{
		/*
		 * Not prepared (any more): a PREPARE that had failed or was
		 * cancelled left nothing to roll back, or a recovery pass (of a
		 * keeper, say) finished it already, with this same outcome.
		 */
		if (MyceliumResultHasSqlstate(results[i], "42704"))
		{
			PQclear(results[i]);
			continue;
		}
		if (results[i] == NULL || PQresultStatus(results[i]) != PGRES_COMMAND_OK)
			ereport(WARNING,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not %s prepared transaction \"%s\" on node \"%s\"",
							commit ? "commit" : "roll back", arr[i]->prepared_gid, arr[i]->node_name),
					 errdetail_internal("%s", MyceliumResultErrorText(results[i], arr[i])),
					 errhint("Recovery will finish it once the node can be reached.")));
		PQclear(results[i]);
	}
}

/*
 * send_commit_prepared sends COMMIT PREPARED to every prepared participant
 * and leaves it in flight (transport/pending.c reads it before this
 * backend next reaches the node): mycelium.synchronous_commit_prepared =
 * off.
 */
static void
send_commit_prepared(List *conns)
{
	ListCell   *lc;

	foreach(lc, conns)
	{
		MyceliumConnection *c = lfirst(lc);

		if (c->prepared_gid[0] == '\0')
			continue;
		if (MyceliumSendQuery(c, psprintf("COMMIT PREPARED '%s'", c->prepared_gid), 0, NULL))
			strlcpy(c->pending_gid, c->prepared_gid, MYCELIUM_GID_SIZE);
		else
			ereport(WARNING,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not commit prepared transaction \"%s\" on node \"%s\"",
							c->prepared_gid, c->node_name),
					 errdetail("Recovery will finish it once the node can be reached.")));
	}
}

/*
 * after_commit completes two-phase commit once the local commit is durable.
 */
static void
after_commit(void)
{
	List	   *conns = MyceliumXactConnections();

	if (events_deferred)
		MyceliumTxnRegistryDeferCommitted();
	events_deferred = false;
	if (conns != NIL && mycelium_fault_injection != MYCELIUM_FAULT_SKIP_COMMIT_PREPARED)
	{
		MyceliumTxnRegistrySet(MYCELIUM_TXN_COMMITTING, NULL, NIL);
		inject_fault(MYCELIUM_FAULT_CRASH_AFTER_COMMIT);
		if (synchronous_commit_prepared)
			finish_prepared(conns, true);
		else
			send_commit_prepared(conns);
	}
	keeper_state = KEEPER_NONE;
	MyceliumTxnRegistrySet(MYCELIUM_TXN_IDLE, NULL, NIL);
	MyceliumForgetOutsideParticipants();
	MyceliumTransportEndXact();
}

/*
 * abort_after_keeper handles an abort that comes after the keeper's commit
 * was sent: that commit decides, not this abort.  If the keeper committed,
 * the prepared writers commit; if its answer never came, they are left to
 * recovery.  Either way the abort path then leaves them alone.
 */
static void
abort_after_keeper(List *conns)
{
	KeeperState state = keeper_state;
	ListCell   *lc;

	keeper_state = KEEPER_NONE;
	if (state == KEEPER_NONE)
		return;
	if (state == KEEPER_COMMITTED)
	{
		ereport(WARNING,
				(errcode(ERRCODE_TRANSACTION_RESOLUTION_UNKNOWN),
				 errmsg("the transaction was committed on the other nodes"),
				 errdetail("Its keeper had committed it before this error, so the prepared nodes commit too.")));
		finish_prepared(conns, true);
	}
	foreach(lc, conns)
		((MyceliumConnection *) lfirst(lc))->prepared_gid[0] = '\0';
}

/*
 * after_abort rolls back every remote transaction of the aborted one:
 * prepared ones with ROLLBACK PREPARED, open ones (cancelling a running
 * command first) with ROLLBACK.  Connections left in doubt are closed,
 * which makes the peer roll back.
 */
static void
after_abort(void)
{
	List	   *conns = MyceliumXactConnections();
	ListCell   *lc;
	bool		any_prepared = false;

	events_deferred = false;
	drop_unsent_begins(conns);
	abort_after_keeper(conns);
	foreach(lc, conns)
	{
		MyceliumConnection *c = lfirst(lc);

		if (c->prepared_gid[0] == '\0')
			continue;
		any_prepared = true;
		/* a PREPARE still running (interrupted wait): stop it, learn nothing */
		if (MyceliumConnectionUsable(c) && PQtransactionStatus(c->conn) == PQTRANS_ACTIVE &&
			!MyceliumCancelAndDrain(c))
			c->prepared_gid[0] = '\0'; /* closed: left to recovery */
	}
	if (any_prepared)
		MyceliumTxnRegistrySet(MYCELIUM_TXN_ABORTING, NULL, NIL);
	finish_prepared(conns, false);
	if (any_prepared)
		MyceliumTxnRegistryDeferAborted();
	MyceliumTxnRegistrySet(MYCELIUM_TXN_IDLE, NULL, NIL);
	foreach(lc, conns)
	{
		MyceliumConnection *c = lfirst(lc);

		if (c->prepared_gid[0] != '\0' || !MyceliumConnectionUsable(c))
			continue;
		if (PQtransactionStatus(c->conn) == PQTRANS_ACTIVE && !MyceliumCancelAndDrain(c))
			continue;
		if (PQtransactionStatus(c->conn) != PQTRANS_IDLE &&
			!MyceliumExecNoThrow(c, "ROLLBACK", CALLBACK_TIMEOUT_MS, NULL))
			c->broken = true;
	}
	MyceliumForgetOutsideParticipants();
	MyceliumTransportEndXact();
}

/*
 * xact_callback dispatches transaction events.
 */
static void
xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
		case XACT_EVENT_PARALLEL_PRE_COMMIT:
			pre_commit();
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			after_commit();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			after_abort();
			break;
		case XACT_EVENT_PRE_PREPARE:
			drop_unsent_begins(MyceliumXactConnections());
			foreach(lc, MyceliumXactConnections())
				if (((MyceliumConnection *) lfirst(lc))->wrote)
					ereport(ERROR,
							(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
							 errmsg("cannot PREPARE a transaction that has written on other mesh nodes")));
			commit_one_phase(MyceliumXactConnections());
			break;
		case XACT_EVENT_PREPARE:
			MyceliumForgetOutsideParticipants();
			MyceliumTransportEndXact();
			break;
	}
}

/*
 * subxact_callback keeps remote savepoints in step with local
 * subtransactions: RELEASE on commit, ROLLBACK TO + RELEASE on abort.
 */
static void
subxact_callback(SubXactEvent event, SubTransactionId mySubid,
				 SubTransactionId parentSubid, void *arg)
{
	int			level;
	ListCell   *lc;

	if (event != SUBXACT_EVENT_PRE_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB)
		return;
	level = GetCurrentTransactionNestLevel();
	foreach(lc, MyceliumXactConnections())
	{
		MyceliumConnection *c = lfirst(lc);
		char		sql[64];

		if (c->xact_depth < level || MyceliumUnbeginSavepoint(c, level))
			continue;			/* no savepoint there, or never sent */
		if (event == SUBXACT_EVENT_PRE_COMMIT_SUB)
		{
			snprintf(sql, sizeof(sql), "RELEASE SAVEPOINT s%d", level);
			MyceliumExecCommand(c, sql);
		}
		else if (MyceliumConnectionUsable(c))
		{
			snprintf(sql, sizeof(sql), "ROLLBACK TO SAVEPOINT s%d; RELEASE SAVEPOINT s%d", level, level);
			if ((PQtransactionStatus(c->conn) == PQTRANS_ACTIVE && !MyceliumCancelAndDrain(c)) ||
				!MyceliumExecNoThrow(c, sql, CALLBACK_TIMEOUT_MS, NULL))
				c->broken = true;	/* the top-level commit will fail */
		}
		c->xact_depth = level - 1;
	}
}

/*
 * MyceliumRegisterXactCallbacks installs the callbacks above, and those of
 * deadlock detection; called once from _PG_init.
 */
void
MyceliumRegisterXactCallbacks(void)
{
	DefineCustomBoolVariable("mycelium.enable_commit_keeper",
							 "Lets a writing node keep the commit record of a two-phase transaction and commit in one phase.",
							 "Applies when the coordinating node wrote nothing itself.",
							 &enable_commit_keeper, true, PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("mycelium.synchronous_commit_prepared",
							 "Makes COMMIT of a two-phase transaction wait until every participant committed its prepared part.",
							 "Off: COMMIT returns once the transaction is decided; the session's own next statements still see its writes, other sessions may see them about one round trip later.",
							 &synchronous_commit_prepared, true, PGC_USERSET, 0, NULL, NULL, NULL);
	RegisterXactCallback(xact_callback, NULL);
	RegisterSubXactCallback(subxact_callback, NULL);
	MyceliumDeadlockInit();
}
