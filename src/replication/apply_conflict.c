/*-------------------------------------------------------------------------
 *
 * apply_conflict.c
 *	  Row versions and the conflict log of the apply side.
 *
 * A row's version is the (commit timestamp, origin) of the transaction
 * that wrote it, read from the commit timestamp module
 * (track_commit_timestamp = on) with the row's xmin.  Rows written here
 * have the local node as origin; rows applied from a peer carry that
 * peer's replication origin "mycelium_<name>" and, because the apply
 * worker sets replorigin_session_origin_timestamp, the peer's commit time.
 * So every node sees the same version for the same row.
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
#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "replication/origin.h"
#include "utils/builtins.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "config/config.h"
#include "replication/apply_internal.h"

#define ORIGIN_PREFIX "mycelium_"

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
		if (strncmp(roname, ORIGIN_PREFIX, strlen(ORIGIN_PREFIX)) == 0)
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
 * both rows as jsonb (local NULL when there is no local row), both
 * versions as {"commit_time": ..., "node": ...}, and the resolution.
 */
void
MyceliumApplyLogConflict(Relation rel, const char *conflict_type,
						 TupleTableSlot *local, TupleTableSlot *remote,
						 TimestampTz local_ts, const char *local_node,
						 TimestampTz remote_ts, const char *remote_node,
						 const char *resolution)
{
	Oid			rowtype = rel->rd_rel->reltype;
	Oid			types[9] = {OIDOID, TEXTOID, rowtype, rowtype, TIMESTAMPTZOID, TEXTOID,
	TIMESTAMPTZOID, TEXTOID, TEXTOID};
	Datum		values[9];
	char		nulls[10] = "         ";
	int			rc;

	values[0] = ObjectIdGetDatum(RelationGetRelid(rel));
	values[1] = CStringGetTextDatum(conflict_type);
	values[2] = slot_datum(local, &nulls[2]);
	values[3] = slot_datum(remote, &nulls[3]);
	values[4] = TimestampTzGetDatum(local_ts);
	nulls[4] = local_ts ? ' ' : 'n';
	values[5] = local_node ? CStringGetTextDatum(local_node) : (Datum) 0;
	nulls[5] = local_node ? ' ' : 'n';
	values[6] = TimestampTzGetDatum(remote_ts);
	values[7] = CStringGetTextDatum(remote_node);
	values[8] = CStringGetTextDatum(resolution);

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	rc = SPI_execute_with_args("INSERT INTO mycelium.conflicts (table_name, conflict_type, "
							   "local_row, remote_row, local_version, remote_version, "
							   "remote_node, resolution) VALUES ($1::oid::regclass, $2, "
							   "to_jsonb($3), to_jsonb($4), "
							   "CASE WHEN $5 IS NULL THEN NULL ELSE "
							   "jsonb_build_object('commit_time', $5, 'node', $6) END, "
							   "jsonb_build_object('commit_time', $7, 'node', $8), $8, $9)",
							   9, types, values, nulls, false, 0);
	if (rc != SPI_OK_INSERT)
		elog(ERROR, "could not record a replication conflict: %s", SPI_result_code_string(rc));
	SPI_finish();
}
