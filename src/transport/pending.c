/*-------------------------------------------------------------------------
 *
 * pending.c
 *	  COMMIT PREPARED left in flight when a two-phase commit answers its
 *	  client early (mycelium.synchronous_commit_prepared = off).
 *
 * With that setting off, txn/twophase.c sends COMMIT PREPARED to the
 * prepared participants once the transaction is decided and lets the
 * client go on without waiting: each connection keeps the gid as pending.
 * The result is read before anything else of this backend reaches that
 * node: before any send on the connection (remote.c), before any
 * connection to the node is taken (MyceliumGetConnections), and before the
 * connection is closed.  So the session's next statement always sees its
 * own writes; other sessions may, for about one round trip, still read
 * the participant's rows as they were.  A failure is only a WARNING: the
 * transaction is decided, and recovery finishes it.
 *
 * IDENTIFICATION
 *	  src/transport/pending.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "transport/transport.h"
#include "transport/transport_internal.h"

/*
 * MyceliumFinishPending reads the result of the COMMIT PREPARED left in
 * flight on conn, waiting at most timeout_ms; never throws.
 */
void
MyceliumFinishPending(MyceliumConnection *conn, int timeout_ms)
{
	PGresult   *res = NULL;

	if (conn == NULL || conn->pending_gid[0] == '\0')
		return;
	if (conn->conn != NULL && PQstatus(conn->conn) == CONNECTION_OK)
		res = MyceliumGetResult(conn, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms),
								false);
	/* 42704: a recovery pass finished it first, with the same outcome */
	if (res == NULL || (PQresultStatus(res) != PGRES_COMMAND_OK &&
						!MyceliumResultHasSqlstate(res, "42704")))
	{
		conn->broken = true;
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not commit prepared transaction \"%s\" on node \"%s\"",
						conn->pending_gid, conn->node_name),
				 errdetail_internal("%s", MyceliumResultErrorText(res, conn)),
				 errhint("Recovery will finish it once the node can be reached.")));
	}
	PQclear(res);
	conn->pending_gid[0] = '\0';
}

/*
 * MyceliumFinishPendingTo reads the pending COMMIT PREPARED results of every
 * connection of this backend (any role) to the n nodes named.
 */
void
MyceliumFinishPendingTo(const char *const *node_names, int n)
{
	ListCell   *lc;
	int			i;

	foreach(lc, MyceliumConnectionCache())
	{
		MyceliumConnection *c = lfirst(lc);

		if (c->pending_gid[0] == '\0')
			continue;
		for (i = 0; i < n; i++)
			if (strcmp(c->node_name, node_names[i]) == 0)
			{
				MyceliumFinishPending(c, MYCELIUM_PENDING_TIMEOUT_MS);
				break;
			}
	}
}
