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
 * Every open connection holds a slot of its peer's shared pool
 * (shmem/shared_state.c, mycelium.max_shared_pool_size).  A call that needs
 * new connections when the pool is full waits for slots; meanwhile the
 * backends holding idle connections to that peer close them instead of
 * caching them (at the end of their operation or transaction), which is
 * what frees the slots.
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

/* how long closing waits for a COMMIT PREPARED in flight (pending.c) */
#define PENDING_CLOSE_TIMEOUT_MS 5000

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
	/* a COMMIT PREPARED in flight is read first, never cut off */
	MyceliumFinishPending(c, PENDING_CLOSE_TIMEOUT_MS);
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
 * MyceliumConnectionCache returns this backend's connections.
 */
List *
MyceliumConnectionCache(void)
{
	return conn_cache;
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
 * new_entry adds a not-yet-connected cache entry that holds one shared pool
 * slot (the caller took it).
 */
static MyceliumConnection *
new_entry(const char *node_name, const char *host, int port, Oid roleid)
{
	MyceliumConnection *c;
	MemoryContext old;

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
 * count_entries counts this backend's cache entries to a node: those of
 * one role (roleid valid), or those holding a shared pool slot (any role).
 */
static int
count_entries(const char *node_name, Oid roleid)
{
	ListCell   *lc;
	int			count = 0;

	foreach(lc, conn_cache)
	{
		MyceliumConnection *c = lfirst(lc);

		if (strcmp(c->node_name, node_name) != 0)
			continue;
		if (OidIsValid(roleid) ? c->roleid == roleid : c->counted)
			count++;
	}
	return count;
}

/*
 * give_back_idle says whether a connection nobody uses should be closed
 * rather than cached: when other backends wait for a slot of its peer's
 * shared pool.  Background workers keep theirs (a few, long-lived: the
 * health checks must not depend on winning a slot).
 */
static bool
give_back_idle(MyceliumConnection *c)
{
	return c->counted && !IsBackgroundWorker && MyceliumPeerHasWaiters(c->node_name);
}

/*
 * close_idle_contended closes this backend's idle connections to peers
 * that other backends wait for, so that backends waiting for each other's
 * peers cannot stall one another.
 */
static void
close_idle_contended(void)
{
	ListCell   *lc;
	List	   *doomed = NIL;

	foreach(lc, conn_cache)
	{
		MyceliumConnection *c = lfirst(lc);

		if (!c->in_xact && !c->lent && give_back_idle(c))
			doomed = lappend(doomed, c);
	}
	foreach(lc, doomed)
		MyceliumCloseConnection(lfirst(lc));
	list_free(doomed);
}

/*
 * idle_connection_alive reads what arrived on an idle connection (without
 * blocking), which notices a peer that closed it, e.g. by restarting.  A
 * peer that shuts down sends an error (which libpq reports as a notice on
 * an idle connection) before closing, so when the first read brought a
 * notice a second one looks for the close; otherwise there is nothing more
 * to see, and the routed statement saves that system call.  (With TLS,
 * libpq leaves no errno to tell an empty read by.)
 */
static bool
idle_connection_alive(MyceliumConnection *c)
{
	uint64		notices = c->notices;

	if (!PQconsumeInput(c->conn))
		return false;
	(void) PQisBusy(c->conn);	/* parses what arrived */
	if (c->notices == notices)
		return PQstatus(c->conn) == CONNECTION_OK;
	return PQconsumeInput(c->conn) != 0;
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
		if (MyceliumConnectionUsable(c) && !idle_connection_alive(c))
			c->broken = true;
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
 * report_pool_full raises the error for a shared pool request that could
 * not be met: the pool of req's peer stayed full for connect_timeout, or
 * (impossible) the request alone exceeds the limit.
 */
static void
report_pool_full(const MyceliumPeerRequest *req, int limit, bool impossible)
{
	if (impossible)
		ereport(ERROR,
				(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
				 errmsg("too many connections to node \"%s\"", req->node_name),
				 errdetail("This query needs %d more connections to node \"%s\" and its session holds %d, but this node may open at most %d to it (mycelium.max_shared_pool_size).",
						   req->count, req->node_name, req->held, limit),
				 errhint("Raise mycelium.max_shared_pool_size, keeping it below the max_connections of node \"%s\".",
						 req->node_name)));
	ereport(ERROR,
			(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
			 errmsg("too many connections to node \"%s\"", req->node_name),
			 errdetail("All %d connections this node may open to node \"%s\" (mycelium.max_shared_pool_size) stayed in use for %d ms (mycelium.connect_timeout).",
					   limit, req->node_name, mycelium_connect_timeout_ms),
			 errhint("Raise mycelium.max_shared_pool_size, keeping it below the max_connections of node \"%s\", or run fewer distributed queries at once.",
					 req->node_name)));
}

/*
 * cancel_pool_wait is the error and exit cleanup of wait_for_slots: leave
 * the queue, giving back slots granted meanwhile.
 */
static void
cancel_pool_wait(int code, Datum arg)
{
	MyceliumPeerCancelWait();
}

/*
 * wait_for_slots takes the shared pool slots of reqs[0..n-1], all at once,
 * waiting up to mycelium.connect_timeout for other backends to release
 * some.  The request is queued in shared memory and granted by the
 * releasing backend, which sets our latch (no polling); meanwhile this
 * backend gives back its own idle connections to peers others wait for.
 * Interruptible.  ERROR 53300 when the slots do not come in time.
 */
static void
wait_for_slots(const MyceliumPeerRequest *reqs, int n)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   mycelium_connect_timeout_ms);
	MyceliumPoolResult r;
	bool		enqueued = false;
	int			full = 0;
	int			limit = 0;

	r = MyceliumPeerTryAcquire(reqs, n, true, &enqueued, &full, &limit);
	if (r != MYCELIUM_POOL_FULL || !enqueued)
	{
		if (r != MYCELIUM_POOL_ACQUIRED)
			report_pool_full(&reqs[full], limit, r == MYCELIUM_POOL_IMPOSSIBLE);
		return;
	}
	PG_ENSURE_ERROR_CLEANUP(cancel_pool_wait, (Datum) 0);
	{
		for (;;)
		{
			long		ms;

			close_idle_contended();
			if (MyceliumPeerWaitGranted())
				break;
			ms = TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
			if (ms <= 0)
				break;
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 ms, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
		}
	}
	PG_END_ENSURE_ERROR_CLEANUP(cancel_pool_wait, (Datum) 0);
	if (!MyceliumPeerStopWaiting())
		report_pool_full(&reqs[full], limit, false);
}

/*
 * pool_requests groups the connections still missing in conns[] (NULL
 * and not a duplicate) by node into reqs[]; returns their number.
 */
static int
pool_requests(MyceliumConnection **conns, const int *dup, int n,
			  const char *const *node_names, MyceliumPeerRequest *reqs)
{
	int			nreqs = 0;
	int			i,
				k;

	for (i = 0; i < n; i++)
	{
		if (conns[i] != NULL || dup[i] >= 0)
			continue;
		for (k = 0; k < nreqs; k++)
			if (strcmp(reqs[k].node_name, node_names[i]) == 0)
				break;
		if (k == nreqs)
		{
			reqs[k].node_name = node_names[i];
			reqs[k].count = 0;
			reqs[k].held = count_entries(node_names[i], InvalidOid);
			nreqs++;
		}
		reqs[k].count++;
	}
	return nreqs;
}

/*
 * claim marks a connection as used by the current transaction or lent to
 * the current operation.
 */
static void
claim(MyceliumConnection *c, MyceliumConnMode mode)
{
	if (mode == MYCELIUM_CONN_XACT)
		c->in_xact = true;
	else
		c->lent = true;
	c->uses++;
}

/*
 * check_backend_limit replaces by a stand-in (missing_ok) or an ERROR each
 * missing connection that would exceed mycelium.max_connections_per_node
 * for this backend.
 */
static void
check_backend_limit(MyceliumConnection **conns, const int *dup, int n,
					const char *const *node_names, const char *const *hosts,
					const int *ports, Oid roleid, bool missing_ok)
{
	int			i,
				j;

	for (i = 0; i < n; i++)
	{
		int			count;
		char	   *error;

		if (conns[i] != NULL || dup[i] >= 0)
			continue;
		count = count_entries(node_names[i], roleid);
		for (j = 0; j < i; j++)
			if (conns[j] == NULL && dup[j] < 0 && strcmp(node_names[j], node_names[i]) == 0)
				count++;
		if (count < mycelium_max_connections_per_node)
			continue;
		error = psprintf("this backend already has %d connections to node \"%s\" (mycelium.max_connections_per_node)",
						 count, node_names[i]);
		if (!missing_ok)
			ereport(ERROR,
					(errcode(ERRCODE_TOO_MANY_CONNECTIONS),
					 errmsg("could not open another connection to node \"%s\"", node_names[i]),
					 errdetail_internal("%s", error)));
		conns[i] = failed_copy(node_names[i], hosts[i], ports[i], error);
	}
}

/*
 * reserve_missing takes shared pool slots for the connections still missing
 * in conns[] and makes their cache entries (pending[i] set: to be
 * connected).  When the pool is full it first gives back the idle
 * connections this call took from the cache (fresh[i]), so that a waiting
 * backend holds only what its transaction uses, then waits for all the
 * slots it needs at once.
 */
static void
reserve_missing(MyceliumConnection **conns, const bool *fresh, const int *dup,
				bool *pending, int n, const char *const *node_names,
				const char *const *hosts, const int *ports, Oid roleid,
				MyceliumConnMode mode)
{
	MyceliumPeerRequest *reqs = palloc0(sizeof(MyceliumPeerRequest) * n);
	int			nreqs = pool_requests(conns, dup, n, node_names, reqs);
	bool		enqueued = false;
	int			full = 0;
	int			limit = 0;
	int			i;

	if (nreqs > 0 &&
		MyceliumPeerTryAcquire(reqs, nreqs, false, &enqueued, &full, &limit) != MYCELIUM_POOL_ACQUIRED)
	{
		for (i = 0; i < n; i++)
		{
			if (!fresh[i])
				continue;
			conns[i]->lent = conns[i]->in_xact = false;
			MyceliumCloseConnection(conns[i]);
			conns[i] = NULL;
		}
		nreqs = pool_requests(conns, dup, n, node_names, reqs);
		wait_for_slots(reqs, nreqs);
	}
	for (i = 0; i < n; i++)
	{
		if (conns[i] != NULL || dup[i] >= 0)
			continue;
		conns[i] = new_entry(node_names[i], hosts[i], ports[i], roleid);
		claim(conns[i], mode);
		pending[i] = true;
	}
	pfree(reqs);
}

/*
 * MyceliumGetConnections returns in conns[i] a connection to node i, opening
 * the missing ones in parallel.  With missing_ok, a node that cannot be
 * reached gets a stand-in for which MyceliumConnectionUsable is false and
 * connect_error says why; otherwise the first failure is an ERROR (08001).
 * In MYCELIUM_CONN_XACT mode the connections join the current transaction
 * (one per node: a node asked for twice gets the same one) and a remote
 * transaction is begun on each (in parallel).  New connections need slots
 * of the shared pool of their peer (mycelium.max_shared_pool_size); when
 * it is full the call waits for them up to mycelium.connect_timeout, then
 * fails with ERROR 53300 even with missing_ok (the node is fine, this node
 * is too busy).
 */
void
MyceliumGetConnections(MyceliumConnection **conns, int n,
					   const char *const *node_names, const char *const *hosts,
					   const int *ports, MyceliumConnMode mode, bool missing_ok)
{
	Oid			roleid = GetUserId();
	bool	   *pending = palloc0(sizeof(bool) * n);
	bool	   *opened = palloc0(sizeof(bool) * n);
	bool	   *fresh = palloc0(sizeof(bool) * n);
	int		   *dup = palloc(sizeof(int) * n);
	int			i,
				j;

	MyceliumTransportRegisterExit();
	MyceliumFinishPendingTo(node_names, n);
	for (i = 0; i < n; i++)
	{
		dup[i] = -1;
		conns[i] = NULL;
		if (mode == MYCELIUM_CONN_XACT)
			for (j = 0; j < i && dup[i] < 0; j++)
				if (strcmp(node_names[j], node_names[i]) == 0)
					dup[i] = j;
		if (dup[i] >= 0)
			continue;
		/* claim it now, so a second request for the node gets another */
		conns[i] = find_cached(node_names[i], hosts[i], ports[i], roleid, mode);
		if (conns[i] == NULL)
			continue;
		fresh[i] = !conns[i]->in_xact;
		claim(conns[i], mode);
	}
	check_backend_limit(conns, dup, n, node_names, hosts, ports, roleid, missing_ok);
	reserve_missing(conns, fresh, dup, pending, n, node_names, hosts, ports, roleid, mode);
	for (i = 0; i < n; i++)
	{
		if (dup[i] >= 0)
			conns[i] = conns[dup[i]];
		else if (fresh[i] && !pending[i])
			MyceliumGetConnStats(conns[i]->node_name, roleid)->reused++;
	}

	memcpy(opened, pending, sizeof(bool) * n);
	MyceliumDriveConnects(conns, pending, n);

	for (i = 0; i < n; i++)
	{
		MyceliumConnection *c = conns[i];

		if (!opened[i] || c->conn != NULL)
			continue;			/* connected, reused, or already a stand-in */
		/* forget the entry first, so no transaction keeps a dead connection */
		conns[i] = failed_copy(c->node_name, c->host, c->port, c->connect_error);
		for (j = i + 1; j < n; j++)
			if (dup[j] == i)
				conns[j] = conns[i];
		MyceliumCloseConnection(c);
		if (!missing_ok)
			report_connect_failure(conns[i]->node_name, conns[i]->host, conns[i]->port,
								   conns[i]->connect_error);
	}

	if (mode == MYCELIUM_CONN_XACT)
		MyceliumBeginRemoteXacts(conns, n);
	pfree(pending);
	pfree(opened);
	pfree(fresh);
	pfree(dup);
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
		PQtransactionStatus(conn->conn) != PQTRANS_IDLE ||
		(!conn->in_xact && give_back_idle(conn)))
		MyceliumCloseConnection(conn);
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
		MyceliumDropUnsentBegin(c);
		c->xact_depth = 0;
		c->wrote = false;
		c->prepared_gid[0] = '\0';
		if (c->pending_gid[0] != '\0' && MyceliumConnectionUsable(c) && !give_back_idle(c))
			continue;			/* COMMIT PREPARED in flight: read at next use */
		if (!MyceliumConnectionUsable(c) ||
			PQtransactionStatus(c->conn) != PQTRANS_IDLE ||
			give_back_idle(c))
			doomed = lappend(doomed, c);
	}
	foreach(lc, doomed)
	{
		MyceliumConnection *c = lfirst(lc);

		MyceliumFinishPending(c, PENDING_CLOSE_TIMEOUT_MS);	/* read, never cancelled */
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
