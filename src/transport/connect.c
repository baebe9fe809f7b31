/*-------------------------------------------------------------------------
 *
 * connect.c
 *	  Opening node-to-node connections: in parallel, asynchronously, with
 *	  retries.
 *
 * Every connection wanted by one call is started at once and driven with
 * PQconnectPoll from a single WaitEventSet loop, so a fan-out to N cold
 * nodes costs one connection time, not N.  A failed attempt is retried
 * with exponential backoff and jitter, mycelium.connect_attempts times,
 * each attempt bounded by mycelium.connect_timeout.  Every wait checks for
 * interrupts, so query cancel and pg_terminate_backend act at once.  The
 * node certificate settings (mycelium.ssl_*) are read at every attempt, so
 * a reload rotates certificates for new connections.
 *
 * IDENTIFICATION
 *	  src/transport/connect.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/dbcommands.h"
#include "common/pg_prng.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/acl.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "config/config.h"
#include "shmem/shmem.h"
#include "transport/transport.h"
#include "transport/transport_internal.h"

/*
 * backoff_ms returns the delay before attempt number `attempt` (2, 3, ...):
 * exponential from 100 ms, capped at 5 s, drawn uniformly from its upper
 * half ("equal jitter") so that many backends retrying one peer do not
 * retry in step.
 */
static long
backoff_ms(int attempt)
{
	long		base = 100L << Min(attempt - 2, 6);

	base = Min(base, 5000);
	return base / 2 + (long) (pg_prng_double(&pg_global_prng_state) * (base / 2));
}

/*
 * MyceliumConnectStart begins an asynchronous libpq connection to a node
 * with every node-to-node setting: TLS per mycelium.ssl_mode and the
 * mycelium.ssl_* files (read now, so a reload rotates certificates for new
 * connections), keepalives, the database encoding, and replication=database
 * when asked.  Never returns NULL (out of memory is an ERROR); the caller
 * polls it with PQconnectPoll and owns it.
 */
PGconn *
MyceliumConnectStart(const char *host, int port, const char *dbname,
					 const char *user, const char *appname, bool replication)
{
	const char *keys[16];
	const char *vals[16];
	char		portbuf[16];
	int			n = 0;
	PGconn	   *conn;

	snprintf(portbuf, sizeof(portbuf), "%d", port);
	keys[n] = "host"; vals[n++] = host;
	keys[n] = "port"; vals[n++] = portbuf;
	keys[n] = "dbname"; vals[n++] = dbname;
	keys[n] = "user"; vals[n++] = user;
	if (replication)
	{
		keys[n] = "replication"; vals[n++] = "database";
	}
	keys[n] = "application_name"; vals[n++] = appname;
	/*
	 * values travel as text: make their printed forms unambiguous; and
	 * statements from a peer name shards and local copies already, so the
	 * receiving session must not route them again
	 */
	if (!replication)
	{
		keys[n] = "options";
		vals[n++] = "-c datestyle=ISO -c intervalstyle=postgres -c extra_float_digits=3 "
			"-c mycelium.enable_routing=off";
	}
	keys[n] = "client_encoding"; vals[n++] = GetDatabaseEncodingName();
	keys[n] = "sslmode"; vals[n++] = MyceliumSslModeName(mycelium_ssl_mode);
	keys[n] = "keepalives"; vals[n++] = "1";
	if (mycelium_ssl_ca_file[0])
	{
		keys[n] = "sslrootcert"; vals[n++] = mycelium_ssl_ca_file;
	}
	if (mycelium_ssl_cert_file[0])
	{
		keys[n] = "sslcert"; vals[n++] = mycelium_ssl_cert_file;
	}
	if (mycelium_ssl_key_file[0])
	{
		keys[n] = "sslkey"; vals[n++] = mycelium_ssl_key_file;
	}
	keys[n] = NULL; vals[n] = NULL;

	conn = PQconnectStartParams(keys, vals, false);
	if (conn == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory while connecting to %s:%d", host, port)));
	return conn;
}

/* libpq's own notice receiver, which the one below passes notices on to */
static PQnoticeReceiver default_receiver = NULL;

/*
 * count_notice counts a notice (or an error received while idle, which
 * libpq reports as a notice) on the connection arg, then handles it as
 * libpq would have.
 */
static void
count_notice(void *arg, const PGresult *res)
{
	((MyceliumConnection *) arg)->notices++;
	if (default_receiver)
		default_receiver(NULL, res);
}

/*
 * start_attempt begins one asynchronous connection attempt.
 */
static void
start_attempt(MyceliumConnection *c, TimestampTz now)
{
	PQnoticeReceiver prev;

	c->attempt++;
	c->conn = MyceliumConnectStart(c->host, c->port, get_database_name(MyDatabaseId),
								   GetUserNameFromId(c->roleid, false), MYCELIUM_CONN_APPNAME, false);
	prev = PQsetNoticeReceiver(c->conn, count_notice, c);
	if (prev != count_notice)
		default_receiver = prev;
	c->poll = PQstatus(c->conn) == CONNECTION_BAD ? PGRES_POLLING_FAILED : PGRES_POLLING_WRITING;
	c->attempt_deadline = TimestampTzPlusMilliseconds(now, mycelium_connect_timeout_ms);
	c->next_attempt_at = 0;
}

/*
 * attempt_failed records a failed attempt and schedules the next one;
 * returns true when no attempt is left.
 */
static bool
attempt_failed(MyceliumConnection *c, TimestampTz now, const char *why)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

	if (c->connect_error)
		pfree(c->connect_error);
	if (why)
		c->connect_error = pstrdup(why);
	else if (c->conn && PQerrorMessage(c->conn)[0])
		c->connect_error = pchomp(PQerrorMessage(c->conn));
	else
		c->connect_error = pstrdup("connection failed");
	MemoryContextSwitchTo(old);

	if (c->conn)
	{
		PQfinish(c->conn);
		c->conn = NULL;
	}
	MyceliumGetConnStats(c->node_name, c->roleid)->failures++;
	if (c->attempt >= mycelium_connect_attempts)
		return true;
	c->next_attempt_at = TimestampTzPlusMilliseconds(now, backoff_ms(c->attempt + 1));
	return false;
}

/*
 * connect_succeeded finishes set-up of a new connection: non-blocking mode,
 * statistics, and (once per peer) its max_connections for the shared pool.
 */
static void
connect_succeeded(MyceliumConnection *c)
{
	PQsetnonblocking(c->conn, 1);
	c->opened_at = GetCurrentTimestamp();
	c->poll = PGRES_POLLING_OK;
	MyceliumGetConnStats(c->node_name, c->roleid)->opened++;
	if (mycelium_max_shared_pool_size == 0 && !MyceliumPeerMaxConnectionsKnown(c->node_name) &&
		MyceliumSendQuery(c, "SHOW max_connections", 0, NULL))
	{
		PGresult   *res = MyceliumGetResult(c, c->attempt_deadline, true);

		if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
			MyceliumPeerSetMaxConnections(c->node_name, atoi(PQgetvalue(res, 0, 0)));
		PQclear(res);
	}
}

/*
 * schedule_attempts starts due attempts and retires failed or late ones
 * among conns[0..n-1] (those with pending set); returns how long to wait
 * for the next event in ms (-1: nothing pending).
 */
static long
schedule_attempts(MyceliumConnection **conns, bool *pending, int n)
{
	TimestampTz now = GetCurrentTimestamp();
	long		timeout = -1;
	int			i;

	for (i = 0; i < n; i++)
	{
		MyceliumConnection *c = conns[i];
		TimestampTz wake;
		long		ms;

		if (!pending[i])
			continue;
		if (c->conn == NULL && now >= c->next_attempt_at)
			start_attempt(c, now);
		if (c->conn && (c->poll == PGRES_POLLING_FAILED || now >= c->attempt_deadline))
		{
			char		msg[128];

			snprintf(msg, sizeof(msg), "timeout expired after %d ms", mycelium_connect_timeout_ms);
			if (attempt_failed(c, now, c->poll == PGRES_POLLING_FAILED ? NULL : msg))
			{
				pending[i] = false;
				continue;
			}
		}
		wake = c->conn ? c->attempt_deadline : c->next_attempt_at;
		ms = (long) ((wake - now) / 1000) + 1;
		timeout = (timeout < 0) ? ms : Min(timeout, ms);
	}
	return timeout;
}

/*
 * MyceliumDriveConnects runs the connection state machines of
 * conns[0..n-1] (those with pending set) until each is connected or out of
 * attempts, waiting on all their sockets at once.
 */
void
MyceliumDriveConnects(MyceliumConnection **conns, bool *pending, int n)
{
	long		timeout;

	while ((timeout = schedule_attempts(conns, pending, n)) >= 0)
	{
		WaitEventSet *set;
		WaitEvent	events[64];
		int			nev,
					i;

		set = CreateWaitEventSet(CurrentMemoryContext, n + 2);
		AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		for (i = 0; i < n; i++)
		{
			MyceliumConnection *c = conns[i];

			if (pending[i] && c->conn && PQsocket(c->conn) >= 0)
				AddWaitEventToSet(set,
								  c->poll == PGRES_POLLING_READING ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE,
								  PQsocket(c->conn), NULL, (void *) (intptr_t) i);
		}
		nev = WaitEventSetWait(set, timeout, events, lengthof(events), PG_WAIT_EXTENSION);
		FreeWaitEventSet(set);

		for (i = 0; i < nev; i++)
		{
			int			k = (int) (intptr_t) events[i].user_data;

			if (events[i].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				CHECK_FOR_INTERRUPTS();
				continue;
			}
			if (conns[k]->conn == NULL)
				continue;
			conns[k]->poll = PQconnectPoll(conns[k]->conn);
			if (conns[k]->poll == PGRES_POLLING_OK)
			{
				connect_succeeded(conns[k]);
				pending[k] = false;
			}
		}
		CHECK_FOR_INTERRUPTS();
	}
}
