/*-------------------------------------------------------------------------
 *
 * api_slots.c
 *	  mycelium.replication_ready: whether every ordered pair of members has
 *	  its replication slot, which replicate_table requires.
 *
 * The naming is that of replication/peer_state.h: on each member (the
 * source) a logical slot "mycelium_node_<node_id>" of plugin "mycelium" in
 * this database for every other member (the consumer).  The apply workers
 * create them; this file only looks.
 *
 * IDENTIFICATION
 *	  src/replication/api_slots.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/memutils.h"

#include "cluster/cluster.h"
#include "replication/api_internal.h"
#include "replication/peer_state.h"

PG_FUNCTION_INFO_V1(mycelium_replication_ready);

#define CREATE_SLOTS_SQL \
	"SELECT count(pg_catalog.pg_create_logical_replication_slot(s, 'mycelium')) " \
	"FROM unnest($1::text[]) s WHERE NOT EXISTS " \
	"(SELECT 1 FROM pg_catalog.pg_replication_slots r WHERE r.slot_name = s)"
#define SLOTS_SQL "SELECT slot_name::text FROM pg_catalog.pg_replication_slots " \
	"WHERE plugin = 'mycelium' AND slot_type = 'logical' " \
	"AND database = pg_catalog.current_database()"

/*
 * slots_of_member returns the names of the mycelium logical slots of this
 * database on one member: locally through SPI, else from res (a result of
 * SLOTS_SQL on that member).
 */
static List *
slots_of_member(MyceliumNode *node, PGresult *res)
{
	List	   *slots = NIL;
	uint64		i;

	if (!node->is_local)
	{
		for (i = 0; i < (uint64) PQntuples(res); i++)
			slots = lappend(slots, pstrdup(PQgetvalue(res, (int) i, 0)));
		return slots;
	}
	{
		MemoryContext caller = CurrentMemoryContext;

		SPI_connect();
		if (SPI_execute(SLOTS_SQL, true, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not read pg_replication_slots");
		for (i = 0; i < SPI_processed; i++)
			slots = lappend(slots, MemoryContextStrdup(caller,
													   SPI_getvalue(SPI_tuptable->vals[i],
																	SPI_tuptable->tupdesc, 1)));
		SPI_finish();
	}
	return slots;
}

/*
 * check_member_slots says whether a source member has the slot of every
 * other member; if not and raise, it raises 55000 naming the pair.
 */
static bool
check_member_slots(List *nodes, MyceliumNode *source, List *slots, bool raise)
{
	ListCell   *lc;

	foreach(lc, nodes)
	{
		MyceliumNode *consumer = lfirst(lc);
		char		slot[NAMEDATALEN];
		bool		found = false;
		ListCell   *ls;

		if (consumer->node_id == source->node_id)
			continue;
		MyceliumReplSlotName(consumer->node_id, slot, sizeof(slot));
		foreach(ls, slots)
			if (strcmp((char *) lfirst(ls), slot) == 0)
				found = true;
		if (found)
			continue;
		if (!raise)
			return false;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replication between nodes \"%s\" and \"%s\" is not set up yet",
						source->node_name, consumer->node_name),
				 errdetail("Node \"%s\" has no replication slot \"%s\" for node \"%s\".",
						   source->node_name, slot, consumer->node_name),
				 errhint("The apply workers create the slots within seconds of a node joining; "
						 "retry when mycelium.replication_ready() returns true.")));
	}
	return true;
}

/*
 * replication_slots_ready checks that every member, as a source, has the
 * logical slot "mycelium_node_<id>" of every other member, asking all of
 * them in parallel in autocommit connections.  Without raise it returns
 * false on a missing slot or an unreachable member; with raise, either is
 * an ERROR.
 */
bool
MyceliumReplSlotsReady(bool raise)
{
	List	   *nodes = MyceliumLoadNodes();
	int			n = list_length(nodes);
	MyceliumConnection **conns;
	PGresult  **results;
	bool		ready = true;
	int			i = 0;
	ListCell   *lc;

	if (n <= 1)
		return true;
	conns = MyceliumConnectNodes(nodes, MYCELIUM_CONN_AUTOCOMMIT, !raise, false, NULL);
	results = palloc0(sizeof(PGresult *) * n);
	for (i = 0; i < n; i++)
		if (conns[i] && MyceliumConnectionUsable(conns[i]))
			MyceliumSendQuery(conns[i], SLOTS_SQL, 0, NULL);
	MyceliumWaitResults(conns, n, results, 0, true);
	i = 0;
	foreach(lc, nodes)
	{
		MyceliumNode *node = lfirst(lc);
		PGresult   *res = results[i];

		if (!node->is_local && (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK))
		{
			if (raise)
				MyceliumReportResultError(ERROR, res, conns[i], SLOTS_SQL);
			ready = false;
		}
		else if (ready)
			ready = check_member_slots(nodes, node, slots_of_member(node, res), raise);
		PQclear(res);
		results[i] = NULL;
		MyceliumReleaseConnection(conns[i]);
		i++;
	}
	return ready;
}

/*
 * consumer_slots_literal returns, as a text[] literal, the slot names every
 * other member of the list needs on source.
 */
static char *
consumer_slots_literal(List *nodes, MyceliumNode *source)
{
	StringInfoData buf;
	ListCell   *lc;
	char		slot[NAMEDATALEN];

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '{');
	foreach(lc, nodes)
	{
		MyceliumNode *consumer = lfirst(lc);

		if (consumer == source)
			continue;
		MyceliumReplSlotName(consumer->node_id, slot, sizeof(slot));
		appendStringInfo(&buf, "%s%s", buf.len > 1 ? "," : "", slot);
	}
	appendStringInfoChar(&buf, '}');
	return buf.data;
}

/*
 * MyceliumReplEnsureSlots creates, on every member at once (the local one
 * through a loopback session), the logical slots the other members'
 * apply workers will read, where they are missing.  Slots cannot be made
 * in a transaction that has written, and making one waits for the
 * transactions running on that member, so it runs in autocommit sessions
 * before the caller writes anything; a caller whose transaction already
 * has an xid would wait for itself, so nothing is made then (the check
 * that follows reports what is missing).
 */
void
MyceliumReplEnsureSlots(void)
{
	List	   *nodes = MyceliumLoadNodes();
	int			n = list_length(nodes);
	MyceliumConnection **conns;
	int			i = 0;
	ListCell   *lc;

	if (n <= 1 || TransactionIdIsValid(GetTopTransactionIdIfAny()))
		return;
	conns = MyceliumConnectNodes(nodes, MYCELIUM_CONN_AUTOCOMMIT, false, true, NULL);
	foreach(lc, nodes)
	{
		const char *param = consumer_slots_literal(nodes, lfirst(lc));

		if (!MyceliumSendQuery(conns[i], CREATE_SLOTS_SQL, 1, &param))
			MyceliumReportConnError(ERROR, conns[i], "send a command");
		i++;
	}
	{
		PGresult  **results = palloc0(sizeof(PGresult *) * n);

		MyceliumWaitResults(conns, n, results, 0, true);
		for (i = 0; i < n; i++)
		{
			if (results[i] == NULL || PQresultStatus(results[i]) != PGRES_TUPLES_OK)
				MyceliumReportResultError(ERROR, results[i], conns[i], CREATE_SLOTS_SQL);
			PQclear(results[i]);
			MyceliumReleaseConnection(conns[i]);
		}
	}
}

/*
 * mycelium.replication_ready() returns bool
 *
 * True when every ordered pair of members has its replication slot (see
 * replication/peer_state.h for the naming), i.e. replicate_table can run.
 * A member that cannot be reached makes it false.
 */
Datum
mycelium_replication_ready(PG_FUNCTION_ARGS)
{
	MyceliumEnsureLocalNode();
	PG_RETURN_BOOL(MyceliumReplSlotsReady(false));
}
