/*-------------------------------------------------------------------------
 *
 * deadlock.c
 *	  Distributed transaction ids of backends, the per-node list of lock
 *	  waits between them, and cancelling a transaction to break a
 *	  distributed deadlock.
 *
 * Every transaction that opens remote work has a distributed transaction
 * id "<node>:<pid>:<start>" (its coordinating node, the coordinating
 * backend's pid and the transaction's start time in microseconds since
 * 2000-01-01).  The coordinator publishes it in its shared-memory slot when
 * it begins its first remote transaction, and every remote session gets it
 * with SET LOCAL mycelium.distributed_transaction_id in the same round trip
 * as its START TRANSACTION; the setting's assign hook publishes it in that
 * session's slot, and the end of the remote transaction (commit, rollback
 * or PREPARE) resets it.  mycelium.lock_waits() lists this node's lock
 * waits with the distributed id of both ends, which is what the detector
 * (deadlock_detect.c) merges into the global wait-for graph.
 *
 * Cancelling: the detector of the victim's coordinating node marks the
 * victim's slot (with the cycle, for the error detail) and sends SIGINT to
 * the coordinating backend, as pg_cancel_backend does.  The backend is in
 * a statement (it waits either for a remote result or for a local lock),
 * so the cancel raises 57014, and the emit_log_hook here turns that error
 * into 40P01 with the cycle as detail before it reaches the client.  The
 * mark names the transaction, and is checked against the slot under its
 * spinlock just before the signal, so a transaction that ended meanwhile
 * is not reported as a deadlock victim; the tiny window between that check
 * and the signal is the same as pg_cancel_backend's.
 *
 * Locking: one spinlock per slot; holders copy a few bytes.
 *
 * IDENTIFICATION
 *	  src/txn/deadlock.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/backendid.h"
#include "storage/proc.h"
#include "storage/procarray.h"
#include "storage/shmem.h"
#include "storage/spin.h"
#include "utils/builtins.h"
#include "utils/elog.h"
#include "utils/guc.h"

#include "config/config.h"
#include "txn/txn.h"

typedef struct DeadlockSlot
{
	slock_t		mutex;
	char		coord_id[MYCELIUM_XACT_ID_SIZE];	/* coordinating this one */
	char		remote_id[MYCELIUM_XACT_ID_SIZE];	/* working for this one */
	bool		cancel;			/* cancelled to break a deadlock */
	char		cancel_id[MYCELIUM_XACT_ID_SIZE];
	char		detail[MYCELIUM_DEADLOCK_DETAIL_SIZE];
} DeadlockSlot;

static DeadlockSlot *slots = NULL;
static char *distributed_xact_id_guc = NULL;
static emit_log_hook_type prev_emit_log_hook = NULL;
static bool published = false;	/* coord_id set by this transaction */

PG_FUNCTION_INFO_V1(mycelium_lock_waits);

/*
 * slots_size is the size of the slot array (one per backend).
 */
static Size
slots_size(void)
{
	return mul_size(sizeof(DeadlockSlot), MaxBackends);
}

/*
 * MyceliumDeadlockShmemRequest asks for the slots' shared memory.
 */
void
MyceliumDeadlockShmemRequest(void)
{
	RequestAddinShmemSpace(slots_size());
}

/*
 * MyceliumDeadlockShmemStartup attaches to (or creates) the slots; the
 * caller holds AddinShmemInitLock.
 */
void
MyceliumDeadlockShmemStartup(void)
{
	bool		found;
	int			i;

	slots = ShmemInitStruct("mycelium_deadlock", slots_size(), &found);
	if (!found)
	{
		memset(slots, 0, slots_size());
		for (i = 0; i < MaxBackends; i++)
			SpinLockInit(&slots[i].mutex);
	}
}

/*
 * slot_of returns the slot of a backend id, or NULL where there is none.
 */
static DeadlockSlot *
slot_of(BackendId id)
{
	if (slots == NULL || id == InvalidBackendId || id < 1 || id > MaxBackends)
		return NULL;
	return &slots[id - 1];
}

/*
 * MyceliumParseXactId splits "<node>:<pid>:<start>"; false if malformed.
 * node (of size 64) may be NULL.
 */
bool
MyceliumParseXactId(const char *id, char *node, int *pid, int64 *start)
{
	const char *c2 = strrchr(id, ':');
	const char *c1;
	char	   *end;
	long		p;

	if (c2 == NULL || c2 == id)
		return false;
	for (c1 = c2 - 1; c1 > id && *c1 != ':'; c1--)
		;
	if (c1 == id || c2 - c1 < 2 || c1 - id >= 64 || c2[1] == '\0')
		return false;
	errno = 0;
	p = strtol(c1 + 1, &end, 10);
	if (errno != 0 || end != c2 || p <= 0 || p > INT_MAX)
		return false;
	errno = 0;
	*start = strtoll(c2 + 1, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*pid = (int) p;
	if (node)
		strlcpy(node, id, c1 - id + 1);
	return true;
}

/*
 * MyceliumFormatXactId writes the distributed transaction id of node's
 * backend pid in its transaction started at start into buf (of
 * MYCELIUM_XACT_ID_SIZE).
 */
void
MyceliumFormatXactId(char *buf, const char *node, int pid, int64 start)
{
	snprintf(buf, MYCELIUM_XACT_ID_SIZE, "%s:%d:" INT64_FORMAT, node, pid, start);
}

/*
 * check_xact_id accepts '' or a well-formed distributed transaction id.
 */
static bool
check_xact_id(char **newval, void **extra, GucSource source)
{
	int			pid;
	int64		start;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (strlen(*newval) >= MYCELIUM_XACT_ID_SIZE ||
		!MyceliumParseXactId(*newval, NULL, &pid, &start))
	{
		GUC_check_errdetail("A distributed transaction id has the form \"<node>:<pid>:<start>\".");
		return false;
	}
	return true;
}

/*
 * assign_xact_id publishes the id this session works for (set by the
 * coordinator at remote BEGIN, reset at the end of the transaction).
 */
static void
assign_xact_id(const char *newval, void *extra)
{
	DeadlockSlot *slot = slot_of(MyBackendId);

	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	strlcpy(slot->remote_id, newval ? newval : "", MYCELIUM_XACT_ID_SIZE);
	SpinLockRelease(&slot->mutex);
}

/*
 * MyceliumDistributedXactId returns the distributed transaction id remote
 * work of the current transaction carries: the one this session works
 * for, if it is itself remote work, else its own, which it publishes as
 * the coordinator's.
 */
const char *
MyceliumDistributedXactId(void)
{
	static char id[MYCELIUM_XACT_ID_SIZE];
	DeadlockSlot *slot;

	if (distributed_xact_id_guc && distributed_xact_id_guc[0] != '\0')
		return distributed_xact_id_guc;
	MyceliumFormatXactId(id, mycelium_node_name, MyProcPid,
						 (int64) GetCurrentTransactionStartTimestamp());
	slot = slot_of(MyBackendId);
	if (slot != NULL && !published)
	{
		SpinLockAcquire(&slot->mutex);
		strlcpy(slot->coord_id, id, MYCELIUM_XACT_ID_SIZE);
		slot->cancel = false;
		SpinLockRelease(&slot->mutex);
		published = true;
	}
	return id;
}

/*
 * MyceliumRemoteXactId returns the distributed transaction id this session
 * works for as a peer's remote work, "" if none.
 */
const char *
MyceliumRemoteXactId(void)
{
	return distributed_xact_id_guc ? distributed_xact_id_guc : "";
}

/*
 * MyceliumXactIdAtWork says whether a session of this node still works for
 * the distributed transaction id (as its remote work).  The id is
 * withdrawn when that session's transaction ends, after its commit became
 * visible: once this returns false, whatever it committed is seen.
 */
bool
MyceliumXactIdAtWork(const char *id)
{
	int			i;
	bool		found = false;

	if (slots == NULL || id[0] == '\0')
		return false;
	for (i = 0; i < MaxBackends && !found; i++)
	{
		DeadlockSlot *slot = &slots[i];

		SpinLockAcquire(&slot->mutex);
		found = strcmp(slot->remote_id, id) == 0;
		SpinLockRelease(&slot->mutex);
	}
	return found;
}

/*
 * deadlock_xact_callback withdraws the coordinator's id and any cancel
 * mark when its transaction ends.
 */
static void
deadlock_xact_callback(XactEvent event, void *arg)
{
	DeadlockSlot *slot;

	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PREPARE && event != XACT_EVENT_PARALLEL_COMMIT &&
		event != XACT_EVENT_PARALLEL_ABORT)
		return;
	if (!published)
		return;
	published = false;
	slot = slot_of(MyBackendId);
	if (slot == NULL)
		return;
	SpinLockAcquire(&slot->mutex);
	slot->coord_id[0] = '\0';
	slot->cancel = false;
	SpinLockRelease(&slot->mutex);
}

/*
 * deadlock_emit_log_hook turns the query-cancel error of a backend the
 * detector cancelled into a deadlock error carrying the cycle.
 */
static void
deadlock_emit_log_hook(ErrorData *edata)
{
	DeadlockSlot *slot;

	if (edata->elevel == ERROR && edata->sqlerrcode == ERRCODE_QUERY_CANCELED &&
		published && (slot = slot_of(MyBackendId)) != NULL)
	{
		char		detail[MYCELIUM_DEADLOCK_DETAIL_SIZE];
		bool		mine;

		SpinLockAcquire(&slot->mutex);
		mine = slot->cancel && strcmp(slot->cancel_id, slot->coord_id) == 0;
		if (mine)
			strlcpy(detail, slot->detail, sizeof(detail));
		slot->cancel = false;
		SpinLockRelease(&slot->mutex);
		if (mine)
		{
			edata->sqlerrcode = ERRCODE_T_R_DEADLOCK_DETECTED;
			edata->message = pstrdup("distributed deadlock detected");
			edata->detail = pstrdup(detail);
			edata->hint = pstrdup("The transaction was the youngest of the cycle and was rolled back on every node; retry it.");
		}
	}
	if (prev_emit_log_hook)
		prev_emit_log_hook(edata);
}

/*
 * MyceliumDeadlockInit defines mycelium.distributed_transaction_id and,
 * when preloading, installs the hooks; called once from _PG_init (through
 * MyceliumRegisterXactCallbacks).
 */
void
MyceliumDeadlockInit(void)
{
	DefineCustomStringVariable("mycelium.distributed_transaction_id",
							   "Shows the distributed transaction this session's remote work belongs to.",
							   "Set by the coordinating node at the start of remote work; used by distributed deadlock detection.",
							   &distributed_xact_id_guc, "", PGC_USERSET,
							   GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE | GUC_NO_RESET_ALL,
							   check_xact_id, assign_xact_id, NULL);
	RegisterXactCallback(deadlock_xact_callback, NULL);
	if (process_shared_preload_libraries_in_progress)
	{
		prev_emit_log_hook = emit_log_hook;
		emit_log_hook = deadlock_emit_log_hook;
	}
}

/*
 * MyceliumDeadlockAnyCoordinator says whether some backend of this node is
 * coordinating remote work now (else no victim can be this node's).
 */
bool
MyceliumDeadlockAnyCoordinator(void)
{
	int			i;
	bool		any = false;

	if (slots == NULL)
		return false;
	for (i = 0; i < MaxBackends && !any; i++)
	{
		SpinLockAcquire(&slots[i].mutex);
		any = slots[i].coord_id[0] != '\0';
		SpinLockRelease(&slots[i].mutex);
	}
	return any;
}

/*
 * MyceliumDeadlockCancel cancels the coordinating backend of the
 * distributed transaction id on this node, to fail with 40P01 and detail;
 * false if that transaction is no longer running here.
 */
bool
MyceliumDeadlockCancel(const char *id, const char *detail)
{
	char		node[64];
	int			pid;
	int64		start;
	PGPROC	   *proc;
	DeadlockSlot *slot;
	bool		found;

	if (!MyceliumParseXactId(id, node, &pid, &start) ||
		strcmp(node, mycelium_node_name) != 0)
		return false;
	proc = BackendPidGetProc(pid);
	if (proc == NULL || (slot = slot_of(proc->backendId)) == NULL)
		return false;
	SpinLockAcquire(&slot->mutex);
	found = strcmp(slot->coord_id, id) == 0;
	if (found)
	{
		slot->cancel = true;
		strlcpy(slot->cancel_id, id, MYCELIUM_XACT_ID_SIZE);
		strlcpy(slot->detail, detail, MYCELIUM_DEADLOCK_DETAIL_SIZE);
	}
	SpinLockRelease(&slot->mutex);
	if (found && kill(pid, SIGINT) != 0)
		found = false;
	return found;
}

/*
 * backend_xact_id returns the distributed transaction id of the backend
 * pid (its own as coordinator, or the one it works for), or an id made of
 * this node, pid and its transaction start for a local-only transaction;
 * *distributed says which.
 */
static char *
backend_xact_id(int pid, int64 xact_start, bool *distributed)
{
	PGPROC	   *proc = BackendPidGetProc(pid);
	DeadlockSlot *slot = proc ? slot_of(proc->backendId) : NULL;
	char		id[MYCELIUM_XACT_ID_SIZE] = "";

	if (slot != NULL)
	{
		SpinLockAcquire(&slot->mutex);
		strlcpy(id, slot->remote_id[0] ? slot->remote_id : slot->coord_id, sizeof(id));
		SpinLockRelease(&slot->mutex);
	}
	*distributed = id[0] != '\0';
	if (!*distributed)
		MyceliumFormatXactId(id, mycelium_node_name, pid, xact_start);
	return pstrdup(id);
}

#define LOCK_WAITS_SQL \
	"SELECT w.pid, (extract(epoch FROM w.xact_start - '2000-01-01 00:00:00+00') * 1000000)::int8," \
	"       b.pid, (extract(epoch FROM b.xact_start - '2000-01-01 00:00:00+00') * 1000000)::int8" \
	"  FROM pg_catalog.pg_stat_activity w" \
	" CROSS JOIN LATERAL unnest(pg_catalog.pg_blocking_pids(w.pid)) AS bp(pid)" \
	"  JOIN pg_catalog.pg_stat_activity b ON b.pid = bp.pid" \
	" WHERE w.wait_event_type = 'Lock' AND w.xact_start IS NOT NULL" \
	"   AND b.xact_start IS NOT NULL"

/*
 * mycelium_lock_waits lists this node's lock waits: who waits (pid,
 * distributed transaction id, whether it is distributed) and who blocks
 * it.  Prepared transactions never wait, so blocking ones are left out.
 */
Datum
mycelium_lock_waits(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	uint64		i;

	InitMaterializedSRF(fcinfo, 0);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(LOCK_WAITS_SQL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list lock waits");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		values[6];
		bool		nulls[6] = {0};
		bool		isnull;
		bool		wdist,
					bdist;
		int			wpid = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		int64		wstart = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		int			bpid = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
		int64		bstart = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		char	   *wid = backend_xact_id(wpid, wstart, &wdist);
		char	   *bid = backend_xact_id(bpid, bstart, &bdist);

		values[0] = Int32GetDatum(wpid);
		values[1] = CStringGetTextDatum(wid);
		values[2] = BoolGetDatum(wdist);
		values[3] = Int32GetDatum(bpid);
		values[4] = CStringGetTextDatum(bid);
		values[5] = BoolGetDatum(bdist);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}
