/*-------------------------------------------------------------------------
 *
 * connection.c
 *	  Per-backend cache of node-to-node libpq connections.
 *
 * Connections are keyed by (node name, role) and live in TopMemoryContext
 * for the life of the backend, so statements and transactions reuse them.
 * Every connection wanted by one call is opened in parallel (connect.c).
 *
 * Connections used by a transaction are ended by txn/twophase.c; at the end
 * of every transaction MyceliumTransportEndXact closes any connection whose
 * state is unknown (broken, half-open, still busy), and at backend exit all
 * are closed, so no half-open remote transaction outlives its backend.
 *
 * IDENTIFICATION
 *	  src/transport/connection.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "common/pg_prng.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/proc.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "config/config.h"
#include "shmem/shmem.h"
#include "transport/transport.h"
#include "transport/transport_internal.h"
#include "txn/txn.h"

static List *conn_cache = NIL;	/* MyceliumConnection *, TopMemoryContext */
static List *conn_stats = NIL;	/* MyceliumConnStats *, TopMemoryContext */
static bool exit_registered = false;

PG_FUNCTION_INFO_V1(mycelium_stat_connections);

/*
 * MyceliumGetConnStats returns the counters of (node, role), creating them.
 */
MyceliumConnStats *
MyceliumGetConnStats(const char *node_name, Oid roleid)
{
	ListCell   *lc;
	MyceliumConnStats *st;
	MemoryContext old;

	foreach(lc, conn_stats)
	{
		st = lfirst(lc);
		if (st->roleid == roleid && strcmp(st->node_name, node_name) == 0)
			return st;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	st = palloc0(sizeof(MyceliumConnStats));
	strlcpy(st->node_name, node_name, sizeof(st->node_name));
	st->roleid = roleid;
	conn_stats = lappend(conn_stats, st);
	MemoryContextSwitchTo(old);
	return st;
}

/*
 * close_pgconn finishes the libpq connection of a cache entry and gives back
 * its shared pool slot; the entry itself stays.
 */
static void
close_pgconn(MyceliumConnection *c)
{
	if (c->conn)
	{
		PQfinish(c->conn);
		c->conn = NULL;
	}
	if (c->counted)
	{
		MyceliumPeerReleaseConnection(c->node_name);
		c->counted = false;
	}
}

/*
 * MyceliumCloseConnection closes a connection and forgets it.
 */
void
MyceliumCloseConnection(MyceliumConnection *conn)
{
	close_pgconn(conn);
	conn_cache = list_delete_ptr(conn_cache, conn);
	if (conn->connect_error)
		pfree(conn->connect_error);
	pfree(conn);
}

/*
 * close_all_at_exit closes every connection when the backend exits, so the
 * peers roll back whatever remote transaction was still open.
 */
static void
close_all_at_exit(int code, Datum arg)
{
	ListCell   *lc;

	foreach(lc, conn_cache)
		close_pgconn((MyceliumConnection *) lfirst(lc));
	conn_cache = NIL;
}

/*
 * MyceliumTransportRegisterExit arranges for connections to be closed at
 * backend exit; idempotent.
 */
void
MyceliumTransportRegisterExit(void)
{
	if (!exit_registered)
	{
		before_shmem_exit(close_all_at_exit, (Datum) 0);
		exit_registered = true;
	}
}

/*
 * MyceliumConnectionUsable says whether a connection is open and healthy.
 */
bool
MyceliumConnectionUsable(MyceliumConnection *conn)
{
	return conn != NULL && conn->conn != NULL && !conn->broken &&
		PQstatus(conn->conn) == CONNECTION_OK;
}

/*
 * new_entry adds a not-yet-connected cache entry, taking a shared pool slot.
 * Returns NULL with *error set when the pool or the per-node limit is full.
 */
static MyceliumConnection *
new_entry(const char *node_name, const char *host, int port, Oid roleid,
		  char **error)
{
	MyceliumConnection *c;
	ListCell   *lc;
	int			count = 0;
	int			limit = 0;
	MemoryContext old;

	foreach(lc, conn_cache)
	{
		c = lfirst(lc);
		if (c->roleid == roleid && strcmp(c->node_name, node_name) == 0)
			count++;
	}
	if (count >= mycelium_max_connections_per_node)
	{
		*error = psprintf("this backend already has %d connections to node \"%s\" (mycelium.max_connections_per_node)",
						  count, node_name);
		return NULL;
	}
	if (!MyceliumPeerAcquireConnection(node_name, mycelium_max_shared_pool_size, &limit))
	{
		*error = psprintf("the shared pool of %d connections to node \"%s\" is full (mycelium.max_shared_pool_size)",
						  limit, node_name);
		return NULL;
	}
	c = MemoryContextAllocZero(TopMemoryContext, sizeof(MyceliumConnection));
	strlcpy(c->node_name, node_name, sizeof(c->node_name));
	strlcpy(c->host, host, sizeof(c->host));
	c->port = port;
	c->roleid = roleid;
	c->counted = true;
	old = MemoryContextSwitchTo(TopMemoryContext);
	conn_cache = lappend(conn_cache, c);
	MemoryContextSwitchTo(old);
	return c;
}

/*
 * find_cached returns a cached connection of (node, role) fit for mode: the
 * one the transaction already holds, or an idle one; NULL if none.
 * Entries whose address changed or that died while idle are closed.
 */
static MyceliumConnection *
find_cached(const char *node_name, const char *host, int port, Oid roleid,
			MyceliumConnMode mode)
{
	ListCell   *lc;
	MyceliumConnection *idle = NULL;

	foreach(lc, conn_cache)
	{
		MyceliumConnection *c = lfirst(lc);

		if (c->roleid != roleid || strcmp(c->node_name, node_name) != 0)
			continue;
		if (mode == MYCELIUM_CONN_XACT && c->in_xact)
			return c;
		if (c->in_xact || c->lent || idle != NULL)
			continue;
		if (strcmp(c->host, host) != 0 || c->port != port ||
			!MyceliumConnectionUsable(c) ||
			PQtransactionStatus(c->conn) != PQTRANS_IDLE)
		{
			/* stale: moved node or connection lost while idle */
			MyceliumCloseConnection(c);
			return find_cached(node_name, host, port, roleid, mode);
		}
		idle = c;
	}
	return idle;
}

/*
 * failed_copy returns a palloc'd stand-in for a connection that could not be
 * opened, carrying the reason, for callers with missing_ok.
 */
static MyceliumConnection *
failed_copy(const char *node_name, const char *host, int port, const char *error)
{
	MyceliumConnection *f = palloc0(sizeof(MyceliumConnection));

	strlcpy(f->node_name, node_name, sizeof(f->node_name));
	strlcpy(f->host, host, sizeof(f->host));
	f->port = port;
	f->connect_error = pstrdup(error);
	return f;
}

/*
 * report_connect_failure raises the error for a connection that could not
 * be opened.
 */
static void
report_connect_failure(const char *node_name, const char *host, int port,
					   const char *error)
{
	ereport(ERROR,
			(errcode(ERRCODE_SQLCLIENT_UNABLE_TO_ESTABLISH_SQLCONNECTION),
			 errmsg("could not connect to node \"%s\" at %s:%d", node_name, host, port),
			 errdetail_internal("%s", error),
			 errhint("Check that the node is running, reachable from this node, and accepts mycelium's connections (pg_hba.conf, TLS settings).")));
}

/*
 * MyceliumGetConnections returns in conns[i] a connection to node i, opening
 * the missing ones in parallel.  With missing_ok, a node that cannot be
 * reached gets a stand-in for which MyceliumConnectionUsable is false and
 * connect_error says why; otherwise the first failure is an ERROR (08001).
 * In MYCELIUM_CONN_XACT mode the connections join the current transaction
 * and a remote transaction is begun on each (in parallel).
 */
void
MyceliumGetConnections(MyceliumConnection **conns, int n,
					   const char *const *node_names, const char *const *hosts,
					   const int *ports, MyceliumConnMode mode, bool missing_ok)
{
	Oid			roleid = GetUserId();
	bool	   *pending = palloc0(sizeof(bool) * n);
	int			i;

	MyceliumTransportRegisterExit();
	for (i = 0; i < n; i++)
	{
		MyceliumConnection *c = find_cached(node_names[i], hosts[i], ports[i], roleid, mode);
		char	   *error = NULL;

		if (c)
		{
			if (!c->in_xact)
				MyceliumGetConnStats(c->node_name, roleid)->reused++;
		}
		else if ((c = new_entry(node_names[i], hosts[i], ports[i], roleid, &error)) != NULL)
			pending[i] = true;
		else if (missing_ok)
			c = failed_copy(node_names[i], hosts[i], ports[i], error);
		else
			ereport(ERROR,
					(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
					 errmsg("could not open another connection to node \"%s\"", node_names[i]),
					 errdetail_internal("%s", error)));
		/* claim it now, so a second request for the node gets another */
		if (c->counted || c->conn)
		{
			if (mode == MYCELIUM_CONN_XACT)
				c->in_xact = true;
			else
				c->lent = true;
			c->uses++;
		}
		conns[i] = c;
	}

	MyceliumDriveConnects(conns, pending, n);

	for (i = 0; i < n; i++)
	{
		MyceliumConnection *c = conns[i];

		if (c->conn != NULL || !c->counted)
			continue;			/* connected, or already a stand-in */
		/* forget the entry first, so no transaction keeps a dead connection */
		conns[i] = failed_copy(c->node_name, c->host, c->port, c->connect_error);
		MyceliumCloseConnection(c);
		if (!missing_ok)
			report_connect_failure(conns[i]->node_name, conns[i]->host, conns[i]->port,
								   conns[i]->connect_error);
	}

	if (mode == MYCELIUM_CONN_XACT)
		for (i = 0; i < n; i++)
			if (MyceliumConnectionUsable(conns[i]))
				MyceliumBeginRemoteXact(conns[i]);
	pfree(pending);
}

/*
 * MyceliumGetConnection is MyceliumGetConnections for one node; errors if
 * the node cannot be reached.
 */
MyceliumConnection *
MyceliumGetConnection(const char *node_name, const char *host, int port,
					  MyceliumConnMode mode)
{
	MyceliumConnection *conn;

	MyceliumGetConnections(&conn, 1, &node_name, &host, &port, mode, false);
	return conn;
}

/*
 * MyceliumReleaseConnection returns a connection lent for an autocommit
 * operation; one left mid-transaction or busy is closed instead.
 */
void
MyceliumReleaseConnection(MyceliumConnection *conn)
{
	if (conn == NULL || (!conn->counted && conn->conn == NULL))
		return;					/* nothing, or a stand-in for a failed connection */
	conn->lent = false;
	if (!MyceliumConnectionUsable(conn) ||
		PQtransactionStatus(conn->conn) != PQTRANS_IDLE)
		MyceliumCloseConnection(conn);
}

/*
 * MyceliumBeginRemoteXact makes the remote nesting level match the local
 * one: START TRANSACTION with the local isolation level, lock_timeout and
 * the distributed transaction id the first time, then one SAVEPOINT per local subtransaction level, in one
 * round trip.
 */
void
MyceliumBeginRemoteXact(MyceliumConnection *conn)
{
	int			level = GetCurrentTransactionNestLevel();
	StringInfoData sql;

	if (conn->xact_depth >= level)
		return;
	initStringInfo(&sql);
	if (conn->xact_depth == 0)
	{
		appendStringInfo(&sql, "START TRANSACTION ISOLATION LEVEL %s",
						 XactIsoLevel == XACT_SERIALIZABLE ? "SERIALIZABLE" :
						 XactIsoLevel == XACT_REPEATABLE_READ ? "REPEATABLE READ" :
						 "READ COMMITTED");
		/*
		 * A lock wait on the peer is not a local lock wait, so the local
		 * lock_timeout would never fire for it: forward it.
		 * (statement_timeout needs no forwarding: it fires locally and the
		 * abort cancels the remote command.)
		 */
		appendStringInfo(&sql, ";SET LOCAL lock_timeout = %d", LockTimeout);
		/* the id deadlock detection knows this remote work by (txn/deadlock.c) */
		appendStringInfo(&sql, ";SET LOCAL mycelium.distributed_transaction_id = %s",
						 quote_literal_cstr(MyceliumDistributedXactId()));
		conn->xact_depth = 1;
	}
	while (conn->xact_depth < level)
	{
		conn->xact_depth++;
		appendStringInfo(&sql, "%sSAVEPOINT s%d", sql.len ? ";" : "", conn->xact_depth);
	}
	MyceliumExecCommand(conn, sql.data);
	pfree(sql.data);
}

/*
 * MyceliumXactConnections lists the connections the current transaction
 * holds.
 */
List *
MyceliumXactConnections(void)
{
	List	   *result = NIL;
	ListCell   *lc;

	foreach(lc, conn_cache)
	{
		MyceliumConnection *c = lfirst(lc);

		if (c->in_xact)
			result = lappend(result, c);
	}
	return result;
}

/*
 * MyceliumTransportEndXact resets every connection at the end of a
 * transaction (after txn/twophase.c committed or rolled back remote work)
 * and closes those whose state is unknown.
 */
void
MyceliumTransportEndXact(void)
{
	ListCell   *lc;
	List	   *doomed = NIL;

	foreach(lc, conn_cache)
	{
		MyceliumConnection *c = lfirst(lc);

		c->in_xact = false;
		c->lent = false;
		c->xact_depth = 0;
		c->wrote = false;
		c->prepared_gid[0] = '\0';
		if (!MyceliumConnectionUsable(c) ||
			PQtransactionStatus(c->conn) != PQTRANS_IDLE)
			doomed = lappend(doomed, c);
	}
	foreach(lc, doomed)
	{
		MyceliumConnection *c = lfirst(lc);

		if (c->conn && PQtransactionStatus(c->conn) == PQTRANS_ACTIVE)
			MyceliumCancelAndDrain(c);
		MyceliumCloseConnection(c);
	}
	list_free(doomed);
}

/*
 * MyceliumCloseNodeConnections closes every idle connection to a node (one
 * that left the mesh or moved).
 */
void
MyceliumCloseNodeConnections(const char *node_name)
{
	ListCell   *lc;
	List	   *doomed = NIL;

	foreach(lc, conn_cache)
	{
		MyceliumConnection *c = lfirst(lc);

		if (strcmp(c->node_name, node_name) == 0 && !c->in_xact && !c->lent)
			doomed = lappend(doomed, c);
	}
	foreach(lc, doomed)
		MyceliumCloseConnection(lfirst(lc));
	list_free(doomed);
}

/*
 * mycelium_stat_connections backs the mycelium.stat_connections view: one
 * row per (node, role) this backend has talked to.
 */
Datum
mycelium_stat_connections(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	foreach(lc, conn_stats)
	{
		MyceliumConnStats *st = lfirst(lc);
		Datum		values[7];
		bool		nulls[7] = {0};
		ListCell   *lc2;
		int			open = 0;
		bool		in_xact = false;
		char	   *role = GetUserNameFromId(st->roleid, true);

		foreach(lc2, conn_cache)
		{
			MyceliumConnection *c = lfirst(lc2);

			if (c->roleid == st->roleid && strcmp(c->node_name, st->node_name) == 0 &&
				c->conn != NULL)
			{
				open++;
				in_xact |= c->in_xact;
			}
		}
		values[0] = CStringGetTextDatum(st->node_name);
		if (role)
			values[1] = CStringGetTextDatum(role);
		else
			nulls[1] = true;
		values[2] = CStringGetTextDatum(in_xact ? "in_transaction" : open > 0 ? "idle" : "closed");
		values[3] = Int32GetDatum(open);
		values[4] = Int64GetDatum(st->opened);
		values[5] = Int64GetDatum(st->reused);
		values[6] = Int64GetDatum(st->failures);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
