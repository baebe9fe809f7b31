/*-------------------------------------------------------------------------
 *
 * vclock.c
 *	  Version vectors: causality between the writes of the mesh.
 *
 * A row version's dot is (origin node, commit time) of the transaction
 * that wrote it, read from the commit timestamp module with the row's xmin
 * (apply_conflict.c): rows applied from a peer carry the peer's origin and
 * commit time, so every node sees the same dot for the same version.
 *
 * This node's version vector holds, per peer, the latest commit time of
 * that peer's transactions applied here.  Apply is in commit order, one
 * stream per origin (nothing is forwarded), so "entry[P] >= t" means "every
 * transaction of P committed at or before t has been applied here".  The
 * vector lives in shared memory; the apply worker raises its peer's entry
 * in WAL just before every applied commit (MyceliumReplVectorPersist) and
 * in shared memory after it.  SQL: the view mycelium.version_vector.
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
 * Commit wait: for last-writer-wins to respect causality, a write must
 * commit later than every version it can have seen.  Commit times are
 * wall-clock, so the trigger waits until the local clock passes the
 * latest time in the vector (at most a second; beyond that it warns and
 * goes on).  On one machine, or with clocks in
 * sync, it never waits.
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
#include "catalog/pg_replication_origin.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "replication/message.h"
#include "replication/origin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "replication/apply_internal.h"
#include "replication/vclock.h"

/* the longest a writer waits for its clock to pass the vector (µs) */
#define MAX_COMMIT_WAIT_US	1000000

/* origins persisting the vector: "mycelium.vv:<peer>" */
#define VV_ORIGIN_PREFIX	"mycelium.vv:"

/* what this backend last logged as context */
static TransactionId context_xid = InvalidTransactionId;
static uint64 context_generation = 0;

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
 * commit_wait sleeps until the local clock is past every time in the
 * vector, so this transaction commits after every version it can see.
 */
static void
commit_wait(const MyceliumVector *v)
{
	TimestampTz latest = 0;
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	for (i = 0; i < v->len; i++)
		latest = Max(latest, v->times[i]);
	if (latest < now)
		return;
	if (latest - now >= MAX_COMMIT_WAIT_US)
	{
		ereport(WARNING,
				(errmsg("this node's clock is %.3f s behind a peer's commit time",
						(double) (latest - now) / USECS_PER_SEC),
				 errdetail("Last-writer-wins may let an older write win a conflict."),
				 errhint("Synchronize the clocks of the mesh (NTP).")));
		return;
	}
	while (now <= latest)
	{
		CHECK_FOR_INTERRUPTS();
		pg_usleep(Min(latest - now + 1, 10000));
		now = GetCurrentTimestamp();
	}
}

/*
 * mycelium_replication_context is the BEFORE ... FOR EACH STATEMENT trigger
 * of replicated tables: it logs the writer's context when it changed in
 * this transaction, and makes the commit wait for the clock if needed.
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

	xid = GetTopTransactionId();
	if (xid == context_xid && MyceliumReplVectorGeneration() == context_generation)
		PG_RETURN_POINTER(NULL);
	MyceliumReplVectorRead(&v);
	commit_wait(&v);
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
