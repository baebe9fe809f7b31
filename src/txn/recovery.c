/*-------------------------------------------------------------------------
 *
 * recovery.c
 *	  Resolving prepared transactions that crashes and network cuts leave
 *	  behind, and cleaning up commit records.
 *
 * Each node resolves the transactions it coordinated (its name is in the
 * gid), and those whose commit record it keeps as a writing peer (see
 * commit_record.c; those need no coordinator): for every such prepared
 * transaction on a reachable peer whose deciding transaction is over,
 * COMMIT PREPARED if
 * the commit record exists, ROLLBACK PREPARED otherwise.  The commit record
 * is written in the deciding transaction itself, so its presence is
 * exactly "it committed"; it is read with the latest snapshot so that the
 * caller's isolation level cannot hide it.  A record kept by a writing
 * peer (commit_record.c) is asked for there, with
 * mycelium.commit_outcome(), which holds its answer back while that peer
 * may still commit.  Each node's pass also cleans the records it keeps.  Commit records are
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
 * keeper_outcome asks the keeper of a gid (on its connection among conns)
 * whether the transaction committed: 1 yes, 0 no, -1 not known yet (the
 * keeper is unreachable or its transaction may still run).
 */
static int
keeper_outcome(MyceliumConnection **conns, int n, const char *gid, const char *keeper)
{
	const char *values[1] = {gid};
	MyceliumConnection *conn = NULL;
	PGresult   *res;
	int			outcome = -1;
	int			i;

	for (i = 0; i < n; i++)
		if (strcmp(conns[i]->node_name, keeper) == 0)
			conn = conns[i];
	if (!MyceliumConnectionUsable(conn) ||
		!MyceliumSendQuery(conn, "SELECT mycelium.commit_outcome($1)", 1, values))
		return -1;
	res = MyceliumGetResult(conn, TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
															  mycelium_peer_timeout_ms), false);
	if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
	{
		if (!PQgetisnull(res, 0, 0))
			outcome = strcmp(PQgetvalue(res, 0, 0), "t") == 0 ? 1 : 0;
	}
	else
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not ask node \"%s\" for the outcome of prepared transaction \"%s\"",
						keeper, gid),
				 errdetail_internal("%s", MyceliumResultErrorText(res, conn))));
	PQclear(res);
	return outcome;
}

/*
 * decide says what to do with a prepared transaction listed on a peer: 1
 * commit, 0 roll back, -1 leave it (not ours to resolve, or undecided).
 * This node resolves the gids it coordinated, and those whose commit
 * record it keeps: a keeper's answer is final once nothing works for the
 * transaction there, so it needs no coordinator.
 */
static int
decide(MyceliumConnection **conns, int n, const char *gid)
{
	MyceliumGid parsed;

	if (!MyceliumParseGid(gid, &parsed))
		return -1;
	if (strcmp(parsed.keeper, mycelium_node_name) == 0 ||
		(parsed.keeper[0] == '\0' && strcmp(parsed.coordinator, mycelium_node_name) == 0))
		return MyceliumKeptOutcome(gid, &parsed);
	if (strcmp(parsed.coordinator, mycelium_node_name) != 0 ||
		MyceliumGidCoordinatorRunning(parsed.id))
		return -1;
	return keeper_outcome(conns, n, gid, parsed.keeper);
}

/*
 * finish sends COMMIT or ROLLBACK PREPARED for gid to conn: 1 done, 0 it
 * was no longer prepared (another node's recovery finished it), -1 failed
 * (a WARNING).
 */
static int
finish(MyceliumConnection *conn, const char *gid, bool commit)
{
	char	   *sql = psprintf("%s PREPARED '%s'", commit ? "COMMIT" : "ROLLBACK", gid);
	PGresult   *res = NULL;
	int			done = -1;

	if (MyceliumSendQuery(conn, sql, 0, NULL))
		res = MyceliumGetResult(conn, TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
																  mycelium_peer_timeout_ms), false);
	if (res && PQresultStatus(res) == PGRES_COMMAND_OK)
	{
		done = 1;
		MyceliumNotifyEvent("recovered", gid, conn->node_name);
		ereport(LOG,
				(errmsg("mycelium: recovery %s prepared transaction \"%s\" on node \"%s\"",
						commit ? "committed" : "rolled back", gid, conn->node_name)));
	}
	else if (MyceliumResultHasSqlstate(res, "42704"))
		done = 0;
	else
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not %s prepared transaction \"%s\" on node \"%s\"",
						commit ? "commit" : "roll back", gid, conn->node_name),
				 errdetail_internal("%s", MyceliumResultErrorText(res, conn))));
	PQclear(res);
	return done;
}

/*
 * resolve_on_node resolves the prepared transactions listed in res on
 * conns[k] that are this node's to resolve (decide); returns how many it
 * finished.  Gids it leaves in place are appended to *still_prepared.
 */
static int
resolve_on_node(MyceliumConnection **conns, int n, int k, PGresult *res, List **still_prepared)
{
	int			resolved = 0;
	int			i;

	for (i = 0; i < PQntuples(res); i++)
	{
		const char *gid = PQgetvalue(res, i, 0);
		int			commit = decide(conns, n, gid);
		int			done = commit < 0 ? -1 : finish(conns[k], gid, commit == 1);

		if (done < 0)
			*still_prepared = lappend(*still_prepared, pstrdup(gid));
		else
			resolved += done;
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
		MyceliumGid parsed;

		if (MyceliumParseGid(note->gid, &parsed) &&
			!MyceliumGidCoordinatorRunning(parsed.id))
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
			resolved += resolve_on_node(conns, n, i, results[i], &still_prepared);
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
