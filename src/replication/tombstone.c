/*-------------------------------------------------------------------------
 *
 * tombstone.c
 *	  Tombstones of deleted rows of replicated tables.
 *
 * A delete of a row of a replicated table leaves a tombstone in
 * mycelium.tombstone: (table, primary key as jsonb, node that deleted).
 * Its dot is the (commit timestamp, origin) of the tombstone row's xmin --
 * the deleting transaction, stamped like any row version (vclock.c): a
 * local delete writes it from the row trigger mycelium_tombstone, an
 * applied delete from the apply worker, in the deleting transaction.
 *
 * The apply uses them to tell a key deleted concurrently (a tombstone the
 * remote writer had not seen: update_delete) from a key that never
 * existed (delete_missing), and to settle a late write of a key deleted
 * concurrently by the same rule on every node: it brings the row back
 * (and removes the tombstones) only when it is later than the latest
 * concurrent delete (last writer wins, apply.c).
 *
 * A tombstone of node N with clock value t is purged once every other
 * member M of the mesh (M != N) is known to have seen it: M sent a
 * transaction whose context had entry N >= t (the apply records what each
 * peer had seen, peer_state.c).  After that, everything M sends was written
 * knowing the delete, so no change can be concurrent with it.  The apply
 * worker purges at most PURGE_BATCH tombstones per second, scanning the
 * table round-robin by ctid.  What peers had seen is in shared memory: a
 * restart delays purging until every peer has written again.
 *
 * IDENTIFICATION
 *	  src/replication/tombstone.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/commit_ts.h"
#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/heaptoast.h"
#include "access/htup_details.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "nodes/bitmapset.h"
#include "storage/itemptr.h"
#include "replication/origin.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/relcache.h"
#include "utils/timestamp.h"

#include "cluster/cluster.h"
#include "config/config.h"
#include "replication/apply_internal.h"

/* tombstones examined per purge, and the least time between purges */
#define PURGE_BATCH		1000
#define PURGE_INTERVAL_MS	1000

PG_FUNCTION_INFO_V1(mycelium_tombstone_trigger);
PG_FUNCTION_INFO_V1(mycelium_key_change_trigger);

/*
 * settings_dependent: the text form of a value of type typid depends on
 * DateStyle, IntervalStyle, TimeZone, extra_float_digits or lc_monetary
 * (user-defined types: assumed to).
 */
static bool
settings_dependent(Oid typid)
{
	typid = getBaseType(typid);
	switch (typid)
	{
		case TIMESTAMPTZOID:
		case TIMESTAMPOID:
		case DATEOID:
		case TIMEOID:
		case TIMETZOID:
		case INTERVALOID:
		case FLOAT4OID:
		case FLOAT8OID:
		case MONEYOID:
			return true;
		default:
			return typid >= FirstNormalObjectId;
	}
}

/*
 * push_key_modes makes values print the same in every session (the
 * trigger runs in the user's, the apply in the worker's): ISO dates, UTC,
 * postgres intervals, exact floats.  Returns the GUC nest level to pop.
 */
static int
push_key_modes(void)
{
	int			nest = NewGUCNestLevel();

	(void) set_config_option("datestyle", "ISO", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("intervalstyle", "postgres", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("extra_float_digits", "3", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("timezone", "UTC", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

/*
 * MyceliumTombstoneKey renders the primary key of a row of rel, given as
 * values/nulls in the table's layout, as a jsonb object {"column": "text
 * value"}: the same on every node and in every session for the same key
 * (settings-dependent types print in fixed modes).
 */
Datum
MyceliumTombstoneKey(Relation rel, Datum *values, bool *nulls)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Bitmapset  *pk = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
	StringInfoData buf;
	bool		first = true;
	int			nest = -1;
	int			i;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Oid			outfunc;
		bool		varlena;

		if (!bms_is_member(att->attnum - FirstLowInvalidHeapAttributeNumber, pk))
			continue;
		if (!first)
			appendStringInfoChar(&buf, ',');
		first = false;
		escape_json(&buf, NameStr(att->attname));
		appendStringInfoChar(&buf, ':');
		if (nulls[i])
		{
			appendStringInfoString(&buf, "null");
			continue;
		}
		if (nest < 0 && settings_dependent(att->atttypid))
			nest = push_key_modes();
		getTypeOutputInfo(att->atttypid, &outfunc, &varlena);
		escape_json(&buf, OidOutputFunctionCall(outfunc, values[i]));
	}
	appendStringInfoChar(&buf, '}');
	if (nest >= 0)
		AtEOXact_GUC(false, nest);
	return DirectFunctionCall1(jsonb_in, CStringGetDatum(buf.data));
}

/*
 * exec_kept_plan runs sql (prepared once into *plan, kept for the
 * session) with values of types through SPI, and raises unless it returns
 * expect; what names the statement in errors.
 */
static void
exec_kept_plan(SPIPlanPtr *plan, const char *sql, int nargs, Oid *types, Datum *values,
			   int expect, const char *what)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (*plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "could not prepare the %s: %s", what,
				 SPI_result_code_string(SPI_result));
		*plan = p;
	}
	if (SPI_execute_plan(*plan, values, NULL, false, 0) != expect)
		elog(ERROR, "could not run the %s", what);
	SPI_finish();
}

/*
 * MyceliumTombstoneStore records (or renews: its dot becomes the current
 * transaction's) the tombstone of node for key of rel.
 */
void
MyceliumTombstoneStore(Relation rel, Datum key, const char *node)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[3] = {OIDOID, JSONBOID, TEXTOID};
	Datum		values[3];

	values[0] = ObjectIdGetDatum(RelationGetRelid(rel));
	values[1] = key;
	values[2] = CStringGetTextDatum(node);
	exec_kept_plan(&plan, "INSERT INTO mycelium.tombstone (table_name, key, node_name) "
				   "VALUES ($1::oid::regclass, $2, $3) "
				   "ON CONFLICT (table_name, key, node_name) "
				   "DO UPDATE SET key = EXCLUDED.key",
				   3, types, values, SPI_OK_INSERT, "tombstone insert");
}

/*
 * MyceliumTombstoneRemove deletes every tombstone of key in rel: a write
 * that won over the concurrent deletes brought the row back, and is later
 * than all of them (see MyceliumTombstoneConcurrent).  The node that
 * receives that write before the deletes keeps the row and stores none, so
 * every node ends without them.
 */
void
MyceliumTombstoneRemove(Relation rel, Datum key)
{
	static SPIPlanPtr plan = NULL;
	Oid			types[2] = {OIDOID, JSONBOID};
	Datum		values[2];

	values[0] = ObjectIdGetDatum(RelationGetRelid(rel));
	values[1] = key;
	exec_kept_plan(&plan, "DELETE FROM mycelium.tombstone "
				   "WHERE table_name = $1::oid::regclass AND key = $2",
				   2, types, values, SPI_OK_DELETE, "tombstone delete");
}

/*
 * MyceliumTombstoneConcurrent looks for the tombstones of key in rel that
 * the remote writer had not seen (seen(node, dot time, arg) false) and
 * fills the latest one's dot into hit: a change that is later than it is
 * later than every delete it competes with (the tombstones it had seen
 * are older than it anyway).  hit->any tells whether the key has any
 * tombstone.  The
 * dot time of a tombstone written by the current transaction is
 * current_ts; one whose commit time is unknown (frozen) counts as seen.
 * An index scan of mycelium.tombstone's primary key, no SQL: it runs for
 * every applied INSERT.
 */
bool
MyceliumTombstoneConcurrent(Relation rel, Datum key, TimestampTz current_ts,
							bool (*seen) (const char *node, TimestampTz ts, void *arg),
							void *arg, MyceliumTombstoneHit *hit)
{
	Oid			nsp = get_namespace_oid("mycelium", false);
	Oid			relid = get_relname_relid("tombstone", nsp);
	Relation	tomb;
	SysScanDesc scan;
	ScanKeyData skey[2];
	HeapTuple	tup;
	Snapshot	snap;
	bool		found = false;

	memset(hit, 0, sizeof(*hit));
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation \"mycelium.tombstone\" does not exist"),
				 errhint("Update the mycelium extension on this node.")));
	tomb = table_open(relid, AccessShareLock);
	(void) RelationGetIndexList(tomb);	/* fills rd_pkindex */
	ScanKeyInit(&skey[0], 1, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(RelationGetRelid(rel)));
	ScanKeyInit(&skey[1], 2, BTEqualStrategyNumber, F_JSONB_EQ, key);
	snap = RegisterSnapshot(GetLatestSnapshot());	/* deletes committed meanwhile */
	scan = systable_beginscan(tomb, tomb->rd_pkindex, true, snap, 2, skey);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		node = heap_getattr(tup, 3, RelationGetDescr(tomb), &isnull);
		TransactionId xmin = HeapTupleHeaderGetXmin(tup->t_data);
		TimestampTz ts = 0;
		RepOriginId origin;

		if (isnull)
			continue;
		hit->any = true;
		if (TransactionIdIsCurrentTransactionId(xmin))
			ts = current_ts;
		else if (!TransactionIdIsNormal(xmin) ||
				 !TransactionIdGetCommitTsData(xmin, &ts, &origin) || ts == 0)
			continue;
		if (seen(TextDatumGetCString(node), ts, arg))
			continue;
		if (found && !MyceliumDotLater(ts, TextDatumGetCString(node), hit->ts, hit->node))
			continue;
		hit->ts = ts;
		strlcpy(hit->node, TextDatumGetCString(node), NAMEDATALEN);
		found = true;
	}
	systable_endscan(scan);
	UnregisterSnapshot(snap);
	table_close(tomb, AccessShareLock);
	return found;
}

/*
 * store_local stores this node's tombstone of the key of row tup of rel,
 * deleted (or moved to another key) by the current transaction.
 */
static void
store_local(Relation rel, HeapTuple tup)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Datum	   *values = palloc(sizeof(Datum) * Max(desc->natts, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(desc->natts, 1));

	heap_deform_tuple(tup, desc, values, nulls);
	MyceliumTombstoneStore(rel, MyceliumTombstoneKey(rel, values, nulls), mycelium_node_name);
}

/*
 * mycelium_tombstone_trigger is the AFTER DELETE ... FOR EACH ROW trigger
 * of replicated tables: a local delete leaves the local node's tombstone.
 * Apply workers write their own (session_replication_role = replica does
 * not fire it).
 */
Datum
mycelium_tombstone_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BY_DELETE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("mycelium_tombstone_trigger() must be called as a row trigger on delete")));
	if (replorigin_session_origin != InvalidRepOriginId)
		PG_RETURN_POINTER(NULL);
	store_local(trigdata->tg_relation, trigdata->tg_trigtuple);
	PG_RETURN_POINTER(NULL);
}

/*
 * key_changed: the primary key of newtup differs from oldtup's (binary
 * comparison: what PostgreSQL itself uses to decide whether WAL carries
 * the old key).
 */
static bool
key_changed(Relation rel, HeapTuple oldtup, HeapTuple newtup)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Bitmapset  *pk = RelationGetIndexAttrBitmap(rel, INDEX_ATTR_BITMAP_PRIMARY_KEY);
	int			m = -1;

	while ((m = bms_next_member(pk, m)) >= 0)
	{
		AttrNumber	attnum = m + FirstLowInvalidHeapAttributeNumber;
		Form_pg_attribute att;
		bool		oldnull,
					newnull;
		Datum		oldval,
					newval;

		if (attnum <= 0)
			continue;
		att = TupleDescAttr(desc, attnum - 1);
		oldval = heap_getattr(oldtup, attnum, desc, &oldnull);
		newval = heap_getattr(newtup, attnum, desc, &newnull);
		if (oldnull != newnull ||
			(!oldnull && !datumIsEqual(oldval, newval, att->attbyval, att->attlen)))
			return true;
	}
	return false;
}

/*
 * mycelium_key_change_trigger is the BEFORE UPDATE ... FOR EACH ROW
 * trigger of replicated tables.  An UPDATE that changes the primary key is
 * applied by peers as a delete of the old key and an insert of the new one
 * (apply_rows.c), so here it leaves the local node's tombstone of the old
 * key, like a delete, and its new row carries every value inline: a value
 * stored out of line and left unchanged would otherwise be missing from
 * WAL, and a peer without the old row could not insert the new one.  The
 * tombstone is written as the extension owner with search_path
 * pg_catalog, only when the key changed.
 */
Datum
mycelium_key_change_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Relation	rel;
	HeapTuple	newtup;
	Oid			save_userid;
	int			save_sec_context;
	int			nest;

	if (!CALLED_AS_TRIGGER(fcinfo) || !TRIGGER_FIRED_FOR_ROW(trigdata->tg_event) ||
		!TRIGGER_FIRED_BEFORE(trigdata->tg_event) || !TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("mycelium_key_change_trigger() must be called as a BEFORE UPDATE row trigger")));
	rel = trigdata->tg_relation;
	newtup = trigdata->tg_newtuple;
	if (replorigin_session_origin != InvalidRepOriginId ||
		!key_changed(rel, trigdata->tg_trigtuple, newtup))
		PG_RETURN_POINTER(newtup);

	nest = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	MyceliumBeginCatalogAccess(&save_userid, &save_sec_context);
	store_local(rel, trigdata->tg_trigtuple);
	MyceliumEndCatalogAccess(save_userid, save_sec_context);
	AtEOXact_GUC(true, nest);
	if (HeapTupleHasExternal(newtup))
		newtup = toast_flatten_tuple(newtup, RelationGetDescr(rel));
	PG_RETURN_POINTER(newtup);
}

/*
 * seen_by_all: every member of the mesh other than this node and node has
 * seen node's clock value ts (members: text[] of their names).
 */
static bool
seen_by_all(char **members, int nmembers, const char *node, TimestampTz ts)
{
	int			i;

	for (i = 0; i < nmembers; i++)
	{
		if (strcmp(members[i], node) == 0)
			continue;
		if (MyceliumReplSeenGet(members[i], node) < ts)
			return false;
	}
	return true;
}

/*
 * MyceliumTombstonePurge deletes tombstones every peer has seen, at most
 * PURGE_BATCH examined per call and one call per PURGE_INTERVAL_MS (else
 * returns at once); in the apply transaction.
 */
void
MyceliumTombstonePurge(void)
{
	static TimestampTz last_purge = 0;
	static ItemPointerData last_tid;
	TimestampTz now = GetCurrentTimestamp();
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	char	  **members;
	int			nmembers;
	uint64		i;
	StringInfoData tids;
	int			ndelete = 0;
	MemoryContext caller = CurrentMemoryContext;

	if (!TimestampDifferenceExceeds(last_purge, now, PURGE_INTERVAL_MS))
		return;
	last_purge = now;
	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = CStringGetTextDatum(mycelium_node_name);
	if (SPI_execute_with_args("SELECT node_name FROM mycelium.node WHERE node_name <> $1",
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read mycelium.node");
	nmembers = (int) SPI_processed;
	members = MemoryContextAlloc(caller, sizeof(char *) * Max(nmembers, 1));
	for (i = 0; i < SPI_processed; i++)
		members[i] = MemoryContextStrdup(caller, SPI_getvalue(SPI_tuptable->vals[i],
															  SPI_tuptable->tupdesc, 1));
	if (!ItemPointerIsValid(&last_tid))
		ItemPointerSet(&last_tid, 0, 0);
	values[0] = CStringGetTextDatum(psprintf("(%u,%u)", ItemPointerGetBlockNumberNoCheck(&last_tid),
											 ItemPointerGetOffsetNumberNoCheck(&last_tid)));
	if (SPI_execute_with_args(psprintf("SELECT ctid, node_name, xmin FROM mycelium.tombstone "
									   "WHERE ctid > $1::text::tid ORDER BY ctid LIMIT %d",
									   PURGE_BATCH),
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read mycelium.tombstone");
	initStringInfo(&tids);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		bool		isnull;
		ItemPointer tid = (ItemPointer) DatumGetPointer(SPI_getbinval(tup, SPI_tuptable->tupdesc, 1,
															&isnull));
		char	   *node = SPI_getvalue(tup, SPI_tuptable->tupdesc, 2);
		TransactionId xmin = DatumGetTransactionId(SPI_getbinval(tup, SPI_tuptable->tupdesc,
																 3, &isnull));
		TimestampTz ts = 0;
		RepOriginId origin;

		last_tid = *tid;
		if (TransactionIdIsCurrentTransactionId(xmin))
			continue;
		if (TransactionIdIsNormal(xmin))
			(void) TransactionIdGetCommitTsData(xmin, &ts, &origin);
		if (!seen_by_all(members, nmembers, node, ts))
			continue;
		appendStringInfo(&tids, "%s\"(%u,%u)\"", ndelete++ ? "," : "",
						 ItemPointerGetBlockNumber(tid), ItemPointerGetOffsetNumber(tid));
	}
	if (SPI_processed < PURGE_BATCH)
		ItemPointerSetInvalid(&last_tid);	/* wrap around */
	if (ndelete > 0)
	{
		values[0] = CStringGetTextDatum(psprintf("{%s}", tids.data));
		if (SPI_execute_with_args("DELETE FROM mycelium.tombstone WHERE ctid = ANY ($1::text::tid[])",
								  1, types, values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not purge mycelium.tombstone");
	}
	SPI_finish();
	PopActiveSnapshot();
}
