/*-------------------------------------------------------------------------
 *
 * vclock.c
 *	  Version vectors: causality between the writes of the mesh.
 *
 * A row version's dot is (origin node, hybrid logical clock value) of the
 * transaction that wrote it, read from the commit timestamp module with the
 * row's xmin (apply_conflict.c).  Both halves travel in the commit record:
 *
 *	 - a local transaction that wrote a replicated table commits through one
 *	   of a small pool of replication origins, "mycelium.hlc:<k>" (claimed at
 *	   PRE_COMMIT, released at the end), with the origin timestamp set to a
 *	   fresh clock value: its commit timestamp *is* the clock value, and the
 *	   output plugin sends it as the transaction's commit time (decoding
 *	   takes a commit's time from its origin timestamp);
 *	 - a transaction applied from a peer commits with the peer's origin and
 *	   the peer's clock value (apply.c), so every node sees the same dot for
 *	   the same version.
 *
 * The clock (shared memory, peer_state.c) is max(wall clock in µs, last
 * value + 1, the highest value received from a peer): a node's own writes
 * are ordered by it even when the wall clock steps back, and a write is
 * always later than every version its writer could have seen.  It never
 * goes back across a restart: every committed value is the remote_lsn of
 * its pool origin (WAL-logged with the commit record, kept by checkpoints),
 * and the first stamp after a start recovers max(pool progress, version
 * vector).  mycelium.test_clock_offset (test-only) shifts the wall-clock
 * input, to simulate a skewed node.
 *
 * This node's version vector holds, per peer, the latest clock value of
 * that peer's transactions applied here.  Apply is in commit order, one
 * stream per origin (nothing is forwarded), so "entry[P] >= t" means "every
 * transaction of P stamped at or before t has been applied here" (up to
 * concurrent commits on P racing between their stamp and their commit
 * record; a write of the same row always waits for the previous one's
 * commit, so a row's versions are always ordered).  The vector lives in
 * shared memory; the apply worker raises its peer's entry in WAL just
 * before every applied commit (MyceliumReplVectorPersist) and in shared
 * memory after it.  SQL: the view mycelium.version_vector.
 *
 * A local transaction carries its context -- the vector when it wrote --
 * to the peers: the statement trigger mycelium_context (created on every
 * replicated table) writes it into WAL as a transactional logical message
 * before the statement's changes when the vector changed since the last
 * one of the transaction; the output plugin turns it into a CONTEXT
 * message ahead of the next change it sends.  A peer applying a change of
 * row r whose local version has dot (N, t) knows the writer had seen that
 * version when context[N] >= t: then it is no conflict.
 *
 * IDENTIFICATION
 *	  src/replication/vclock.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_replication_origin.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "replication/message.h"
#include "utils/guc.h"
#include "replication/origin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "replication/apply_internal.h"
#include "replication/vclock.h"

/* the clock's pool of commit origins: "mycelium.hlc:<k>" */
#define HLC_ORIGIN_PREFIX	"mycelium.hlc:"

/* origins persisting the vector: "mycelium.vv:<peer>" */
#define VV_ORIGIN_PREFIX	"mycelium.vv:"

/* what this backend last logged as context */
static TransactionId context_xid = InvalidTransactionId;
static uint64 context_generation = 0;

/* mycelium.test_clock_offset: shifts the clock's wall-clock input (ms) */
static int	test_clock_offset_ms = 0;

/* this transaction wrote a replicated table: stamp its commit */
static bool hlc_pending = false;
static int	hlc_claimed = -1;	/* the pool origin claimed, -1: none */
static bool hlc_session = false;	/* its session is set up */

PG_FUNCTION_INFO_V1(mycelium_replication_context);
PG_FUNCTION_INFO_V1(mycelium_version_vector);

/*
 * MyceliumReplVectorOriginName: the replication origin whose remote_lsn
 * holds this node's vector entry of peer (see MyceliumReplVectorPersist).
 */
void
MyceliumReplVectorOriginName(const char *peer, char *buf, int buflen)
{
	snprintf(buf, buflen, "%s%s", VV_ORIGIN_PREFIX, peer);
}

/*
 * load_persisted merges the persisted entries (every "mycelium.vv:<peer>"
 * replication origin) into the shared vector, once per server start (the
 * first writer does it).  A catalog scan: no SQL privilege is needed.
 */
static void
load_persisted(void)
{
	Relation	rel = table_open(ReplicationOriginRelationId, AccessShareLock);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tup;
	int			plen = strlen(VV_ORIGIN_PREFIX);

	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_replication_origin ro = (Form_pg_replication_origin) GETSTRUCT(tup);
		char	   *name = text_to_cstring(&ro->roname);
		XLogRecPtr	t;

		if (strncmp(name, VV_ORIGIN_PREFIX, plen) != 0 || name[plen] == '\0')
			continue;
		t = replorigin_get_progress(ro->roident, false);
		if (t != InvalidXLogRecPtr)
			MyceliumReplVectorAdvance(name + plen, (TimestampTz) t);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	MyceliumReplVectorSetLoaded();
}

/*
 * MyceliumReplHlcOriginName: the name of origin k of the clock's pool.
 */
void
MyceliumReplHlcOriginName(int k, char *buf, int buflen)
{
	snprintf(buf, buflen, "%s%d", HLC_ORIGIN_PREFIX, k);
}

/*
 * MyceliumReplIsHlcOriginName: name is one of the clock's pool origins
 * (a local commit, not one applied from a peer).
 */
bool
MyceliumReplIsHlcOriginName(const char *name)
{
	return strncmp(name, HLC_ORIGIN_PREFIX, strlen(HLC_ORIGIN_PREFIX)) == 0;
}

/*
 * hlc_recover raises the clock, once per server start, to the latest value
 * committed here (the progress of the pool origins) or received (the
 * persisted version vector); in a transaction.
 */
static void
hlc_recover(void)
{
	MyceliumVector *v = palloc(sizeof(MyceliumVector));
	TimestampTz floor = 0;
	int			i;

	for (i = 0; i < MYCELIUM_HLC_ORIGINS; i++)
	{
		char		name[NAMEDATALEN];
		RepOriginId id;

		MyceliumReplHlcOriginName(i, name, sizeof(name));
		id = replorigin_by_name(name, true);
		if (id != InvalidRepOriginId)
			floor = Max(floor, (TimestampTz) replorigin_get_progress(id, false));
	}
	MyceliumReplVectorRead(v);
	for (i = 0; i < v->len; i++)
		floor = Max(floor, v->times[i]);
	pfree(v);
	MyceliumReplHlcUpdate(floor, 0, true);
}

/*
 * MyceliumReplHlcNow ticks the clock and returns the new value:
 * max(wall clock + mycelium.test_clock_offset, last + 1).
 */
TimestampTz
MyceliumReplHlcNow(void)
{
	if (!MyceliumReplHlcLoaded())
		hlc_recover();
	return MyceliumReplHlcUpdate(0, GetCurrentTimestamp() +
								 (TimestampTz) test_clock_offset_ms * 1000, false);
}

/*
 * MyceliumReplHlcObserve raises the clock to a value received from a peer,
 * so later local writes are stamped after it.
 */
void
MyceliumReplHlcObserve(TimestampTz t)
{
	MyceliumReplHlcUpdate(t, 0, false);
}

/*
 * hlc_stamp makes the committing transaction commit through a free origin
 * of the pool with a fresh clock value as its origin timestamp (and
 * remote_lsn, which persists it).  Waits while every origin of the pool is
 * in use by other committers (they hold one only until their commit record
 * is written).  A missing pool origin (not created by CREATE EXTENSION in
 * this cluster) leaves the commit time as the dot, with a WARNING when
 * warn_missing.
 */
static void
hlc_stamp(bool warn_missing)
{
	char		name[NAMEDATALEN];
	RepOriginId id;
	TimestampTz t;

	while ((hlc_claimed = MyceliumReplHlcClaim()) < 0)
	{
		CHECK_FOR_INTERRUPTS();
		pg_usleep(100);
	}
	MyceliumReplHlcOriginName(hlc_claimed, name, sizeof(name));
	id = replorigin_by_name(name, true);
	if (id == InvalidRepOriginId)
	{
		if (warn_missing)
			ereport(WARNING,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("replication origin \"%s\" does not exist", name),
					 errdetail("This commit of a replicated table is stamped with the wall clock."),
					 errhint("Create the extension again, or create the origin with pg_replication_origin_create().")));
		return;
	}
	t = MyceliumReplHlcNow();
	replorigin_session_setup(id);
	hlc_session = true;
	replorigin_session_origin = id;
	replorigin_session_origin_lsn = (XLogRecPtr) t;
	replorigin_session_origin_timestamp = t;
}

/*
 * hlc_stamp_commit stamps the commit of a transaction that wrote a
 * replicated table (hlc_pending).
 */
static void
hlc_stamp_commit(void)
{
	if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
		hlc_stamp(true);
}

/*
 * any_replicated_tables: this database lists replicated tables
 * (mycelium.replicated_table has a row).
 */
static bool
any_replicated_tables(void)
{
	Oid			nsp = get_namespace_oid("mycelium", true);
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("replicated_table", nsp) : InvalidOid;
	Relation	rel;
	SysScanDesc scan;
	Snapshot	snap;
	bool		any;

	if (!OidIsValid(relid))
		return false;
	rel = table_open(relid, AccessShareLock);
	snap = RegisterSnapshot(GetLatestSnapshot());
	scan = systable_beginscan(rel, InvalidOid, false, snap, 0, NULL);
	any = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(rel, AccessShareLock);
	return any;
}

/*
 * MyceliumReplHlcStampCommitPrepared stamps the COMMIT PREPARED about to
 * run in this session (ProcessUtility hook) with a clock value, like any
 * commit of a replicated table: PostgreSQL takes a finished prepared
 * transaction's commit timestamp and origin from the session that runs
 * COMMIT PREPARED, not from the one that prepared it.  Whether the
 * prepared transaction wrote a replicated table is not known here, so
 * every COMMIT PREPARED of a database that replicates tables is stamped
 * (a scan of mycelium.replicated_table's first page, a claim of a pool
 * origin and a clock tick); apply workers keep their peer's origin.  The
 * claim is released at the end of the statement's transaction
 * (hlc_xact_callback).
 */
void
MyceliumReplHlcStampCommitPrepared(void)
{
	if (replorigin_session_origin != InvalidRepOriginId || hlc_claimed >= 0 ||
		!IsTransactionState() || !any_replicated_tables())
		return;
	hlc_stamp(false);
}

/*
 * hlc_end releases what hlc_stamp_commit took, after the commit (or an
 * abort).  It touches the session's origin only when it set it up: apply
 * workers keep theirs.
 */
static void
hlc_end(void)
{
	if (hlc_session)
	{
		replorigin_session_reset();
		replorigin_session_origin = InvalidRepOriginId;
		replorigin_session_origin_lsn = InvalidXLogRecPtr;
		replorigin_session_origin_timestamp = 0;
		hlc_session = false;
	}
	if (hlc_claimed >= 0)
		MyceliumReplHlcRelease(hlc_claimed);
	hlc_claimed = -1;
	hlc_pending = false;
}

/*
 * hlc_xact_callback stamps the commit of a transaction that wrote a
 * replicated table.  A prepared transaction is stamped when COMMIT
 * PREPARED runs (MyceliumReplHlcStampCommitPrepared), in whatever session.
 */
static void
hlc_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (hlc_pending && replorigin_session_origin == InvalidRepOriginId)
				hlc_stamp_commit();
			break;
		case XACT_EVENT_PRE_PREPARE:
			hlc_pending = false;
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			hlc_end();
			break;
		default:
			break;
	}
}

/*
 * MyceliumReplHlcInit defines mycelium.test_clock_offset and registers the
 * commit stamping; from _PG_init.
 */
void
MyceliumReplHlcInit(void)
{
	DefineCustomIntVariable("mycelium.test_clock_offset",
							"Shifts the wall-clock input of the hybrid logical clock (test only).",
							"Simulates a node whose clock is skewed; never set it in production.",
							&test_clock_offset_ms, 0, -86400000, 86400000,
							PGC_SUSET, GUC_UNIT_MS | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							NULL, NULL, NULL);
	RegisterXactCallback(hlc_xact_callback, NULL);
}

/*
 * MyceliumReplVectorRead copies this node's vector (loading the persisted
 * one first if nobody has yet) and returns its length.
 */
int
MyceliumReplVectorRead(MyceliumVector *v)
{
	bool		loaded;

	v->len = MyceliumReplVectorGet(v->nodes, v->times, MYCELIUM_REPL_MAX_PEERS,
								   &v->generation, &loaded);
	if (!loaded)
	{
		load_persisted();
		v->len = MyceliumReplVectorGet(v->nodes, v->times, MYCELIUM_REPL_MAX_PEERS,
									   &v->generation, &loaded);
	}
	return v->len;
}

/*
 * MyceliumReplVectorJson renders a vector as a jsonb object text
 * {"node": "commit time", ...}.
 */
char *
MyceliumReplVectorJson(int n, const char *const *nodes, const TimestampTz *times)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (i = 0; i < n; i++)
	{
		char		tbuf[MAXDATELEN + 1];

		if (i > 0)
			appendStringInfoChar(&buf, ',');
		escape_json(&buf, nodes[i]);
		appendStringInfo(&buf, ":\"%s\"",
						 JsonEncodeDateTime(tbuf, TimestampTzGetDatum(times[i]),
											TIMESTAMPTZOID, NULL));
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * MyceliumReplLocalVectorJson renders this node's version vector.
 */
char *
MyceliumReplLocalVectorJson(void)
{
	MyceliumVector *v = palloc(sizeof(MyceliumVector));
	const char *names[MYCELIUM_REPL_MAX_PEERS];
	int			i;

	MyceliumReplVectorRead(v);
	for (i = 0; i < v->len; i++)
		names[i] = v->nodes[i];
	return MyceliumReplVectorJson(v->len, names, v->times);
}

/*
 * mycelium_replication_context is the BEFORE ... FOR EACH STATEMENT trigger
 * of replicated tables: it logs the writer's context when it changed in
 * this transaction, and has the commit stamped with the clock.
 * It does nothing in apply workers (session_replication_role = replica
 * does not fire it anyway) or without logical WAL.
 */
Datum
mycelium_replication_context(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	MyceliumVector v;
	StringInfoData msg;
	TransactionId xid;
	const char *names[MYCELIUM_REPL_MAX_PEERS];
	int			i;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("mycelium_replication_context() must be called as a statement trigger")));
	if (!XLogLogicalInfoActive() || replorigin_session_origin != InvalidRepOriginId)
		PG_RETURN_POINTER(NULL);
	hlc_pending = true;			/* commit with a clock value */

	xid = GetTopTransactionId();
	if (xid == context_xid && MyceliumReplVectorGeneration() == context_generation)
		PG_RETURN_POINTER(NULL);
	MyceliumReplVectorRead(&v);
	context_xid = xid;
	context_generation = v.generation;
	if (v.len == 0)
		PG_RETURN_POINTER(NULL);	/* seen nothing: same as no context */
	for (i = 0; i < v.len; i++)
		names[i] = v.nodes[i];
	initStringInfo(&msg);
	MyceliumReplWriteContext(&msg, v.len, names, v.times);
	LogLogicalMessage(MYCELIUM_CONTEXT_PREFIX, msg.data, msg.len, true);
	pfree(msg.data);
	PG_RETURN_POINTER(NULL);
}

/*
 * MyceliumReplVectorOrigin returns (creating it if asked) the origin that
 * persists peer's entry; in a transaction.
 */
RepOriginId
MyceliumReplVectorOrigin(const char *peer, bool create)
{
	char		name[NAMEDATALEN + 16];
	RepOriginId id;

	MyceliumReplVectorOriginName(peer, name, sizeof(name));
	id = replorigin_by_name(name, true);
	if (id == InvalidRepOriginId && create)
		id = replorigin_create(name);
	return id;
}

/*
 * MyceliumReplVectorPersist raises the persisted entry of a peer to t, in
 * the current apply transaction, before its commit.
 *
 * The entry is the remote_lsn of the replication origin
 * "mycelium.vv:<peer>", never used as a session origin: replorigin_advance
 * logs it in WAL (a record of a few bytes, no heap or index write) and the
 * checkpointer keeps it, so it survives any crash.  Written just before the
 * commit record, it can at worst claim one transaction that a crash then
 * undid -- which is re-applied, with that very commit time, on restart.
 */
void
MyceliumReplVectorPersist(RepOriginId vv_origin, TimestampTz t)
{
	/* keeps the origin from being dropped meanwhile, as SQL callers do */
	LockRelationOid(ReplicationOriginRelationId, RowExclusiveLock);
	replorigin_advance(vv_origin, (XLogRecPtr) t, InvalidXLogRecPtr, false, true);
}

/*
 * mycelium_version_vector() returns this node's version vector: per peer,
 * the commit time of the latest of its transactions applied here.
 */
Datum
mycelium_version_vector(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MyceliumVector *v = palloc(sizeof(MyceliumVector));
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	MyceliumReplVectorRead(v);
	for (i = 0; i < v->len; i++)
	{
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = CStringGetTextDatum(v->nodes[i]);
		values[1] = TimestampTzGetDatum(v->times[i]);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
