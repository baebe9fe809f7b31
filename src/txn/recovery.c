/*-------------------------------------------------------------------------
 *
 * recovery.c
 *	  Resolving prepared transactions that crashes and network cuts leave
 *	  behind, and cleaning up commit records.
 *
 * Each node resolves the transactions it coordinated (its name is in the
 * gid): for every such prepared transaction on a reachable peer whose
 * coordinating transaction is no longer running here, COMMIT PREPARED if
 * the commit record exists, ROLLBACK PREPARED otherwise.  The commit record
 * is written in the coordinating transaction itself, so its presence is
 * exactly "the coordinator committed"; it is read with the latest snapshot
 * so that the caller's isolation level cannot hide it.  Commit records are
 * read before prepared transactions are listed on the peers (see
 * read_commit_records), and a record is deleted only when no participant
 * still holds its gid and every participant was reachable.
 *
 * IDENTIFICATION
 *	  src/txn/recovery.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "storage/procarray.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "cluster/cluster.h"
#include "config/config.h"
#include "transport/transport.h"
#include "txn/txn.h"

PG_FUNCTION_INFO_V1(mycelium_recover_prepared_transactions);

#define LIST_PREPARED_SQL \
	"SELECT gid FROM pg_prepared_xacts WHERE database = current_database() " \
	"AND gid LIKE 'mycelium\\_%'"

/*
 * commit_record_exists says whether the coordinator committed gid.
 */
static bool
commit_record_exists(const char *gid)
{
	Oid			types[1] = {TEXTOID};
	Datum		vals[1] = {CStringGetTextDatum(gid)};
	bool		found;

	SPI_connect();
	MyceliumSpiExecLatest("SELECT 1 FROM mycelium.commit_record WHERE gid = $1", 1, types, vals, true);
	found = SPI_processed > 0;
	SPI_finish();
	return found;
}

/*
 * resolve_on_node resolves our prepared transactions listed in res on the
 * node behind conn; returns how many it finished.  Gids it leaves in place
 * are appended to *still_prepared.
 */
static int
resolve_on_node(MyceliumConnection *conn, PGresult *res, List **still_prepared)
{
	int			resolved = 0;
	int			i;

	for (i = 0; i < PQntuples(res); i++)
	{
		const char *gid = PQgetvalue(res, i, 0);
		const char *coordinator;
		uint64		fxid;
		bool		commit;
		char	   *sql;
		char	   *error = NULL;

		if (!MyceliumParseGid(gid, &fxid, &coordinator) ||
			strcmp(coordinator, mycelium_node_name) != 0 ||
			MyceliumGidCoordinatorRunning(fxid))
		{
			*still_prepared = lappend(*still_prepared, pstrdup(gid));
			continue;
		}
		commit = commit_record_exists(gid);
		sql = psprintf("%s PREPARED '%s'", commit ? "COMMIT" : "ROLLBACK", gid);
		if (MyceliumExecNoThrow(conn, sql, mycelium_peer_timeout_ms, &error))
		{
			resolved++;
			MyceliumNotifyEvent("recovered", gid, conn->node_name);
			ereport(LOG,
					(errmsg("mycelium: recovery %s prepared transaction \"%s\" on node \"%s\"",
							commit ? "committed" : "rolled back", gid, conn->node_name)));
		}
		else
		{
			*still_prepared = lappend(*still_prepared, pstrdup(gid));
			ereport(WARNING,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not %s prepared transaction \"%s\" on node \"%s\"",
							commit ? "commit" : "roll back", gid, conn->node_name),
					 errdetail_internal("%s", error)));
		}
	}
	return resolved;
}

/*
 * list_contains_str says whether a List of C strings holds s.
 */
static bool
list_contains_str(List *list, const char *s)
{
	ListCell   *lc;

	foreach(lc, list)
		if (strcmp((char *) lfirst(lc), s) == 0)
			return true;
	return false;
}

/*
 * read_commit_records returns the commit records (as MyceliumOutsideNote:
 * gid and participant names in nodes) visible now.  Recovery reads them
 * before it lists prepared transactions: a record visible then belongs to
 * a transaction that committed, so every PREPARE of it came before the
 * listing and shows there while still pending.  (A record read after the
 * listing could belong to a transaction that prepared after it, and would
 * be deleted while still needed.)
 */
static List *
read_commit_records(void)
{
	MemoryContext caller = CurrentMemoryContext;
	List	   *records = NIL;
	uint64		i;

	SPI_connect();
	MyceliumSpiExecLatest("SELECT gid, participants FROM mycelium.commit_record",
						  0, NULL, NULL, true);
	for (i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);
		MyceliumOutsideNote *rec = palloc0(sizeof(MyceliumOutsideNote));
		bool		isnull;
		ArrayType  *arr = DatumGetArrayTypePCopy(SPI_getbinval(SPI_tuptable->vals[i],
															   SPI_tuptable->tupdesc, 2, &isnull));
		Datum	   *elems;
		int			nelems,
					k;

		rec->gid = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, NULL, &nelems);
		for (k = 0; k < nelems; k++)
			rec->nodes = lappend(rec->nodes, TextDatumGetCString(elems[k]));
		records = lappend(records, rec);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return records;
}

/*
 * cleanup_commit_records deletes the records (read before the listing) of
 * transactions finished on every participant.  unreachable: names of
 * members not heard from.
 */
static void
cleanup_commit_records(List *records, List *still_prepared, List *unreachable)
{
	List	   *done = NIL;
	ListCell   *lc,
			   *lc2;

	foreach(lc, records)
	{
		MyceliumOutsideNote *rec = lfirst(lc);
		bool		finished = !list_contains_str(still_prepared, rec->gid);

		foreach(lc2, rec->nodes)
			if (list_contains_str(unreachable, (char *) lfirst(lc2)))
				finished = false;
		if (finished)
			done = lappend(done, rec->gid);
	}
	if (done != NIL)
	{
		Datum	   *d = palloc(sizeof(Datum) * list_length(done));
		int			n = 0;
		Oid			types[1] = {TEXTARRAYOID};
		Datum		vals[1];

		foreach(lc, done)
			d[n++] = CStringGetTextDatum(lfirst(lc));
		vals[0] = PointerGetDatum(construct_array(d, n, TEXTOID, -1, false, TYPALIGN_INT));
		SPI_connect();
		if (SPI_execute_with_args("DELETE FROM mycelium.commit_record WHERE gid = ANY($1)",
								  1, types, vals, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not delete commit records");
		SPI_finish();
	}
}

/*
 * add_outside_nodes adds to the nodes to visit the outside participants
 * named by participants notes (see participants.c) that are not members.
 */
static List *
add_outside_nodes(List *remote_nodes, List *notes)
{
	ListCell   *lc,
			   *lc2;

	foreach(lc, notes)
	{
		MyceliumOutsideNote *note = lfirst(lc);

		foreach(lc2, note->nodes)
		{
			MyceliumNode *node = lfirst(lc2);

			if (MyceliumFindNode(remote_nodes, node->node_name) == NULL &&
				strcmp(node->node_name, mycelium_node_name) != 0)
				remote_nodes = lappend(remote_nodes, node);
		}
	}
	return remote_nodes;
}

/*
 * notes_over returns the participants notes whose coordinating transaction
 * is over; like commit records, this is judged before the listing, so that
 * a note is never dropped for a transaction that prepared after it.
 */
static List *
notes_over(List *notes)
{
	List	   *over = NIL;
	ListCell   *lc;

	foreach(lc, notes)
	{
		MyceliumOutsideNote *note = lfirst(lc);
		uint64		fxid;
		const char *coordinator;

		if (MyceliumParseGid(note->gid, &fxid, &coordinator) &&
			!MyceliumGidCoordinatorRunning(fxid))
			over = lappend(over, note);
	}
	return over;
}

/*
 * cleanup_notes removes the notes (of transactions over before the
 * listing) whose transaction is finished on every node they name.
 */
static void
cleanup_notes(List *over, List *still_prepared, List *unreachable)
{
	ListCell   *lc,
			   *lc2;

	foreach(lc, over)
	{
		MyceliumOutsideNote *note = lfirst(lc);
		bool		finished = !list_contains_str(still_prepared, note->gid);

		foreach(lc2, note->nodes)
			if (list_contains_str(unreachable, ((MyceliumNode *) lfirst(lc2))->node_name))
				finished = false;
		if (finished)
			MyceliumRemoveOutsideNote(note->gid);
	}
}

/*
 * MyceliumRecoverPreparedTransactions makes one recovery pass over every
 * reachable peer; returns the number of prepared transactions finished.
 */
int
MyceliumRecoverPreparedTransactions(void)
{
	List	   *nodes = MyceliumLoadNodes();
	List	   *remote_nodes = NIL;
	List	   *unreachable = NIL;
	List	   *still_prepared = NIL;
	MyceliumConnection **conns;
	PGresult  **results;
	int			n,
				i,
				resolved = 0;
	ListCell   *lc;

	List	   *notes = MyceliumReadOutsideParticipants();
	List	   *over = notes_over(notes);
	List	   *records = read_commit_records();

	foreach(lc, nodes)
		if (!((MyceliumNode *) lfirst(lc))->is_local)
			remote_nodes = lappend(remote_nodes, lfirst(lc));
	remote_nodes = add_outside_nodes(remote_nodes, notes);
	n = list_length(remote_nodes);
	if (n == 0)
	{
		cleanup_commit_records(records, NIL, NIL);
		cleanup_notes(over, NIL, NIL);
		return 0;
	}

	conns = MyceliumConnectNodes(remote_nodes, MYCELIUM_CONN_AUTOCOMMIT, true, false, NULL);
	results = palloc0(sizeof(PGresult *) * n);
	for (i = 0; i < n; i++)
		MyceliumSendQuery(conns[i], LIST_PREPARED_SQL, 0, NULL);
	MyceliumWaitResults(conns, n, results,
						TimestampTzPlusMilliseconds(GetCurrentTimestamp(), mycelium_peer_timeout_ms),
						true);
	for (i = 0; i < n; i++)
	{
		if (results[i] == NULL || PQresultStatus(results[i]) != PGRES_TUPLES_OK)
			unreachable = lappend(unreachable, conns[i]->node_name);
		else
			resolved += resolve_on_node(conns[i], results[i], &still_prepared);
		PQclear(results[i]);
		results[i] = NULL;
	}
	cleanup_commit_records(records, still_prepared, unreachable);
	cleanup_notes(over, still_prepared, unreachable);
	for (i = 0; i < n; i++)
		MyceliumReleaseConnection(conns[i]);
	return resolved;
}

/*
 * mycelium.recover_prepared_transactions() returns int: one recovery pass
 * now, as the maintenance worker does every mycelium.recovery_interval.
 */
Datum
mycelium_recover_prepared_transactions(PG_FUNCTION_ARGS)
{
	MyceliumEnsureLocalNode();
	PG_RETURN_INT32(MyceliumRecoverPreparedTransactions());
}
