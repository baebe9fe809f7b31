/*-------------------------------------------------------------------------
 *
 * apply_conflict.c
 *	  Row versions and the conflict log of the apply side.
 *
 * A row's version (its dot) is the (commit timestamp, origin) of the
 * transaction that wrote it, read from the commit timestamp module
 * (track_commit_timestamp = on) with the row's xmin.  Rows written here
 * commit through an origin of the clock's pool "mycelium.hlc:<k>" with a
 * hybrid logical clock value as timestamp (vclock.c): the local node is
 * their node.  Rows applied from a peer carry that peer's replication
 * origin "mycelium_<name>" and, because the apply worker sets
 * replorigin_session_origin_timestamp, the peer's clock value.  So every
 * node sees the same dot for the same row version.
 *
 * Conflicts are inserted into mycelium.conflicts in the apply transaction
 * itself: a conflict is recorded exactly when its resolution commits.
 *
 * IDENTIFICATION
 *	  src/replication/apply_conflict.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/commit_ts.h"
#include "access/detoast.h"
#include "access/heaptoast.h"
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "replication/origin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "parser/parse_func.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "config/config.h"
#include "replication/apply_internal.h"
#include "replication/vclock.h"

#define ORIGIN_PREFIX "mycelium_"
#define CUSTOM_PREFIX "custom:"

/*
 * MyceliumApplyLocalVersion reads the version of the row in slot: its
 * commit time and the name of the node that wrote it.  Returns false when
 * the row has no version to compete with: written by the current
 * transaction, or its commit timestamp is unknown (frozen, or written
 * before track_commit_timestamp was on) -- then the remote change wins.
 */
bool
MyceliumApplyLocalVersion(TupleTableSlot *slot, TimestampTz *ts, char *node, int nodelen)
{
	bool		should_free;
	HeapTuple	tup = ExecFetchSlotHeapTuple(slot, false, &should_free);
	TransactionId xmin = HeapTupleHeaderGetXmin(tup->t_data);
	RepOriginId origin = InvalidRepOriginId;
	char	   *roname = NULL;

	if (should_free)
		heap_freetuple(tup);
	*ts = 0;
	node[0] = '\0';
	if (!TransactionIdIsNormal(xmin) || TransactionIdIsCurrentTransactionId(xmin))
		return false;
	if (!TransactionIdGetCommitTsData(xmin, ts, &origin) || *ts == 0)
		return false;
	if (origin == InvalidRepOriginId)
		strlcpy(node, mycelium_node_name, nodelen);
	else if (replorigin_by_oid(origin, true, &roname))
	{
		if (MyceliumReplIsHlcOriginName(roname))
			strlcpy(node, mycelium_node_name, nodelen);
		else if (strncmp(roname, ORIGIN_PREFIX, strlen(ORIGIN_PREFIX)) == 0)
			strlcpy(node, roname + strlen(ORIGIN_PREFIX), nodelen);
		else
			strlcpy(node, roname, nodelen);
	}
	return true;
}

/*
 * slot_datum returns the row in slot as a composite datum of the table's
 * row type (NULL when slot is NULL).
 */
static Datum
slot_datum(TupleTableSlot *slot, char *null)
{
	*null = slot ? ' ' : 'n';
	return slot ? ExecFetchSlotHeapTupleDatum(slot) : (Datum) 0;
}

/*
 * MyceliumApplyLogConflict records one conflict in mycelium.conflicts:
 * both rows as jsonb (NULL when there is none), both versions as
 * {"commit_time", "node", "vector"} -- the local row's dot with this
 * node's version vector, the remote change's dot with its writer's
 * context -- and the resolution.
 */
void
MyceliumApplyLogConflict(Relation rel, const char *conflict_type,
						 TupleTableSlot *local, TupleTableSlot *remote,
						 const MyceliumConflictVersions *v, const char *resolution)
{
	Oid			rowtype = rel->rd_rel->reltype;
	Oid			types[11] = {OIDOID, TEXTOID, rowtype, rowtype, TIMESTAMPTZOID, TEXTOID,
	TIMESTAMPTZOID, TEXTOID, TEXTOID, JSONBOID, JSONBOID};
	Datum		values[11];
	char		nulls[12] = "           ";
	int			rc;

	values[0] = ObjectIdGetDatum(RelationGetRelid(rel));
	values[1] = CStringGetTextDatum(conflict_type);
	values[2] = slot_datum(local, &nulls[2]);
	values[3] = slot_datum(remote, &nulls[3]);
	values[4] = TimestampTzGetDatum(v->local_ts);
	nulls[4] = v->local_ts ? ' ' : 'n';
	values[5] = v->local_node ? CStringGetTextDatum(v->local_node) : (Datum) 0;
	nulls[5] = v->local_node ? ' ' : 'n';
	values[6] = TimestampTzGetDatum(v->remote_ts);
	values[7] = CStringGetTextDatum(v->remote_node);
	values[8] = CStringGetTextDatum(resolution);
	values[9] = DirectFunctionCall1(jsonb_in, CStringGetDatum(MyceliumReplLocalVectorJson()));
	values[10] = DirectFunctionCall1(jsonb_in, CStringGetDatum(v->remote_context));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_with_args("INSERT INTO mycelium.conflicts (table_name, conflict_type, "
							   "local_row, remote_row, local_version, remote_version, "
							   "remote_node, resolution) VALUES ($1::oid::regclass, $2, "
							   "to_jsonb($3), to_jsonb($4), "
							   "jsonb_build_object('commit_time', $5, 'node', $6, 'vector', $10), "
							   "jsonb_build_object('commit_time', $7, 'node', $8, 'vector', $11), "
							   "$8, $9)",
							   11, types, values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not record a replication conflict: %s", SPI_result_code_string(rc));
	SPI_finish();
}

/*
 * MyceliumConflictFunction returns the OID of name(regclass, jsonb, jsonb),
 * InvalidOid when there is none (or name is not a valid function name).
 */
Oid
MyceliumConflictFunction(const char *name)
{
	Oid			argtypes[3] = {REGCLASSOID, JSONBOID, JSONBOID};
	List	   *names = NIL;
	Oid			fn = InvalidOid;
	MemoryContext caller = CurrentMemoryContext;

	PG_TRY();
	{
		names = stringToQualifiedNameList(name);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		FlushErrorState();
		names = NIL;
	}
	PG_END_TRY();
	if (names != NIL)
		fn = LookupFuncName(names, 3, argtypes, true);
	return fn;
}

/*
 * MyceliumDotLater: the dot (ts, node) is later than (other_ts,
 * other_node) -- the larger clock value, then the greater node name.  The
 * one order of versions every node applies (last writer wins), for rows
 * and tombstones alike.
 */
bool
MyceliumDotLater(TimestampTz ts, const char *node, TimestampTz other_ts,
				 const char *other_node)
{
	if (ts != other_ts)
		return ts > other_ts;
	return strcmp(node, other_node) > 0;
}

/*
 * MyceliumApplyRowIsSmall: the row in slot has no value stored out of line
 * and its values' raw sizes add up to at most half the table's TOAST
 * target.  Only small rows may beat a concurrent delete.  An UPDATE does
 * not ship unchanged out-of-line values, so a node that deleted the row
 * could not rebuild a large one; the rule must nevertheless give the same
 * answer on the node holding the row (which cannot tell what was shipped)
 * and on the one rebuilding it, hence a test of the values themselves:
 * PostgreSQL moves values out of line only in rows larger than that.
 */
bool
MyceliumApplyRowIsSmall(Relation rel, TupleTableSlot *slot)
{
	TupleDesc	desc = slot->tts_tupleDescriptor;
	Size		limit = Min(TOAST_TUPLE_THRESHOLD,
							RelationGetToastTupleTarget(rel, TOAST_TUPLE_TARGET)) / 2;
	Size		size = 0;
	int			i;

	slot_getallattrs(slot);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		Datum		d = slot->tts_values[i];

		if (att->attisdropped || slot->tts_isnull[i])
			continue;
		if (att->attlen == -1)
		{
			if (VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(d)))
				return false;
			size += toast_raw_datum_size(d);
		}
		else if (att->attlen == -2)
			size += strlen(DatumGetCString(d)) + 1;
		else
			size += att->attlen;
	}
	return size <= limit;
}

/*
 * table_policy returns the conflict_resolution of rel in
 * mycelium.replicated_table (NULL when it is not listed), in the caller's
 * memory context.
 */
static char *
table_policy(Relation rel)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1];
	char	   *policy = NULL;
	MemoryContext caller = CurrentMemoryContext;

	values[0] = ObjectIdGetDatum(RelationGetRelid(rel));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT conflict_resolution FROM mycelium.replicated_table "
							  "WHERE relid = $1::oid::regclass", 1, types, values, NULL,
							  true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read mycelium.replicated_table");
	if (SPI_processed == 1)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);

		if (v)
			policy = MemoryContextStrdup(caller, v);
	}
	SPI_finish();
	return policy;
}

/*
 * MyceliumApplyPolicyIsCustom: rel's policy is custom:<function>.  Such a
 * function settles two rows; between a row and a delete the delete wins.
 */
bool
MyceliumApplyPolicyIsCustom(Relation rel)
{
	char	   *policy = table_policy(rel);

	return policy && strncmp(policy, CUSTOM_PREFIX, strlen(CUSTOM_PREFIX)) == 0;
}

/*
 * custom_function returns the OID of the custom conflict function of rel
 * (conflict_resolution 'custom:<function>'), or InvalidOid when its policy
 * is another.  A function that went away is an error: the apply retries
 * until it is back, rather than resolving differently from other nodes.
 */
static Oid
custom_function(Relation rel)
{
	char	   *policy = table_policy(rel);
	Oid			fn = InvalidOid;

	if (policy && strncmp(policy, CUSTOM_PREFIX, strlen(CUSTOM_PREFIX)) == 0)
	{
		fn = MyceliumConflictFunction(policy + strlen(CUSTOM_PREFIX));
		if (!OidIsValid(fn))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_FUNCTION),
					 errmsg("conflict function %s(regclass, jsonb, jsonb) of table \"%s\" does not exist",
							policy + strlen(CUSTOM_PREFIX), RelationGetRelationName(rel)),
					 errhint("Create the function on every node, or replicate the table again with another policy.")));
	}
	return fn;
}

/*
 * MyceliumApplyCustomResolve settles a conflict with the table's custom
 * function, if it has one: f(table, local jsonb, remote jsonb) returns the
 * row to keep as jsonb (keys it lacks keep the local values), stored into
 * remote.  Returns false when the table has no custom function or it
 * returned NULL (then last writer wins).
 */
bool
MyceliumApplyCustomResolve(Relation rel, TupleTableSlot *local, TupleTableSlot *remote)
{
	Oid			fn = custom_function(rel);
	Oid			rowtype = rel->rd_rel->reltype;
	Oid			types[3] = {OIDOID, rowtype, rowtype};
	Datum		values[3];
	char	   *sql;
	bool		isnull;
	Datum		row;
	HeapTupleData tup;
	MemoryContext caller = CurrentMemoryContext;

	if (!OidIsValid(fn))
		return false;
	values[0] = ObjectIdGetDatum(RelationGetRelid(rel));
	values[1] = ExecFetchSlotHeapTupleDatum(local);
	values[2] = ExecFetchSlotHeapTupleDatum(remote);
	sql = psprintf("SELECT pg_catalog.jsonb_populate_record($2, r) FROM "
				   "(SELECT %s($1::oid::regclass, pg_catalog.to_jsonb($2), "
				   "pg_catalog.to_jsonb($3)) AS r) s WHERE r IS NOT NULL",
				   quote_qualified_identifier(get_namespace_name(get_func_namespace(fn)),
											  get_func_name(fn)));
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args(sql, 3, types, values, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not run the conflict function of \"%s\"",
			 RelationGetRelationName(rel));
	if (SPI_processed == 0)
	{
		SPI_finish();
		return false;
	}
	row = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	MemoryContextSwitchTo(caller);
	row = isnull ? (Datum) 0 : SPI_datumTransfer(row, false, -1);
	SPI_finish();
	if (isnull)
		return false;
	tup.t_len = HeapTupleHeaderGetDatumLength(DatumGetHeapTupleHeader(row));
	tup.t_data = DatumGetHeapTupleHeader(row);
	ItemPointerSetInvalid(&tup.t_self);
	tup.t_tableOid = RelationGetRelid(rel);
	ExecForceStoreHeapTuple(&tup, remote, false);
	return true;
}

/*
 * MyceliumApplyListedAt returns the commit time of relid's row in
 * mycelium.replicated_table here (0 if unknown): row versions committed
 * until then predate the table's replication -- replicate_table copied
 * them in that very transaction -- so every node has them.
 */
TimestampTz
MyceliumApplyListedAt(Oid relid)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1];
	TimestampTz ts = 0;

	values[0] = ObjectIdGetDatum(relid);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("SELECT pg_catalog.pg_xact_commit_timestamp(xmin) "
							  "FROM mycelium.replicated_table WHERE relid = $1::oid::regclass",
							  1, types, values, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "could not read mycelium.replicated_table");
	if (SPI_processed == 1)
	{
		bool		isnull;
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
									  &isnull);

		if (!isnull)
			ts = DatumGetTimestampTz(d);
	}
	SPI_finish();
	return ts;
}
