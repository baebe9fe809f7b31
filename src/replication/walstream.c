/*-------------------------------------------------------------------------
 *
 * walstream.c
 *	  The apply worker's libpq replication connection to one peer:
 *	  non-blocking connect with TLS, commands, and status feedback.
 *
 * The connection is opened with replication=database and the node
 * certificate settings (mycelium.ssl_*), exactly like the mesh's ordinary
 * node connections (transport/connect.c), and is driven with libpq's
 * asynchronous API: every wait is a WaitLatchOrSocket that checks for
 * interrupts, bounded by mycelium.connect_timeout.  Nothing here blocks.
 *
 * Once streaming, TLS read-ahead is switched on (MyceliumWalReadAhead):
 * the sender flushes every change as its own small TLS record, and
 * without read-ahead OpenSSL reads each record with two recv() calls
 * (header, then body); with it one recv() takes everything the socket
 * holds.  Records OpenSSL then holds are invisible to the socket's
 * readiness, so the receive loop asks MyceliumWalReadPending before it
 * sleeps on the socket.
 *
 * IDENTIFICATION
 *	  src/replication/walstream.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/ssl.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "config/config.h"
#include "replication/apply_internal.h"
#include "transport/transport.h"

/*
 * wait_socket waits until the socket is ready for what `events` asks or
 * the deadline passes (then raises), checking for interrupts.
 */
static void
wait_socket(PGconn *conn, int events, TimestampTz deadline, const char *what)
{
	long		ms = (long) ((deadline - GetCurrentTimestamp()) / 1000);

	if (ms <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not %s: timeout expired after %d ms",
						what, mycelium_connect_timeout_ms)));
	(void) WaitLatchOrSocket(MyLatch, events | WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 PQsocket(conn), ms, PG_WAIT_EXTENSION);
	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * MyceliumWalConnError raises a connection error with libpq's message as
 * detail; the caller still owns conn.
 */
void
MyceliumWalConnError(PGconn *conn, const char *what, const char *peer)
{
	ereport(ERROR,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("could not %s on node \"%s\"", what, peer),
			 errdetail_internal("%s", conn ? pchomp(PQerrorMessage(conn)) : "out of memory")));
}

/*
 * MyceliumWalConnect opens a replication connection (replication=database)
 * to host:port, non-blocking, within mycelium.connect_timeout.  The caller
 * owns the result (PQfinish it, also on error: this function finishes it
 * itself only when it raises).
 */
PGconn *
MyceliumWalConnect(const char *host, int port, const char *user, const char *appname)
{
	PGconn	   *conn;
	PostgresPollingStatusType poll = PGRES_POLLING_WRITING;
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   mycelium_connect_timeout_ms);

	conn = MyceliumConnectStart(host, port, mycelium_database, user, appname, true);
	PG_TRY();
	{
		if (PQstatus(conn) == CONNECTION_BAD)
			poll = PGRES_POLLING_FAILED;
		while (poll != PGRES_POLLING_OK)
		{
			if (poll == PGRES_POLLING_FAILED)
				ereport(ERROR,
						(errcode(ERRCODE_CONNECTION_FAILURE),
						 errmsg("could not open a replication connection to \"%s:%d\"", host, port),
						 errdetail_internal("%s", pchomp(PQerrorMessage(conn)))));
			wait_socket(conn, poll == PGRES_POLLING_READING ? WL_SOCKET_READABLE : WL_SOCKET_WRITEABLE,
						deadline, "open a replication connection");
			poll = PQconnectPoll(conn);
		}
		if (PQsetnonblocking(conn, 1) != 0)
			elog(ERROR, "could not make a replication connection non-blocking");
	}
	PG_CATCH();
	{
		PQfinish(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return conn;
}

/*
 * MyceliumWalFlush pushes pending output to the server, waiting for the
 * socket to drain (bounded by mycelium.connect_timeout).
 */
void
MyceliumWalFlush(PGconn *conn)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													   mycelium_connect_timeout_ms);
	int			r;

	while ((r = PQflush(conn)) == 1)
		wait_socket(conn, WL_SOCKET_WRITEABLE | WL_SOCKET_READABLE, deadline, "send to a peer");
	if (r < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not send to a peer"),
				 errdetail_internal("%s", pchomp(PQerrorMessage(conn)))));
}

/*
 * MyceliumWalExec sends one command and returns its first result (for
 * START_REPLICATION: the PGRES_COPY_BOTH result, after which the stream
 * follows).  Other results are consumed.  NULL means the connection broke.
 * The command may take as long as the peer needs (creating a slot waits for
 * running transactions there), so only interrupts end the wait.
 */
PGresult *
MyceliumWalExec(PGconn *conn, const char *sql)
{
	PGresult   *first = NULL;
	PGresult   *res;

	if (!PQsendQuery(conn, sql))
		return NULL;
	MyceliumWalFlush(conn);
	for (;;)
	{
		while (PQisBusy(conn))
		{
			(void) WaitLatchOrSocket(MyLatch,
									 WL_SOCKET_READABLE | WL_LATCH_SET | WL_EXIT_ON_PM_DEATH,
									 PQsocket(conn), -1, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
			CHECK_FOR_INTERRUPTS();
			if (!PQconsumeInput(conn))
			{
				PQclear(first);
				return NULL;
			}
		}
		res = PQgetResult(conn);
		if (res == NULL)
			return first;
		if (PQresultStatus(res) == PGRES_COPY_BOTH)
		{
			PQclear(first);
			return res;
		}
		if (first == NULL)
			first = res;
		else
			PQclear(res);
	}
}

/*
 * MyceliumWalSendFeedback sends a standby status update ('r'): received
 * and flushed positions, asking the peer for a keepalive in return when
 * reply_requested (our liveness probe of an idle peer).
 */
void
MyceliumWalSendFeedback(PGconn *conn, XLogRecPtr recv, XLogRecPtr flush,
						bool reply_requested)
{
	char		buf[1 + 8 * 4 + 1];
	uint64		v;
	int			i,
				off = 1;
	uint64		fields[4];

	fields[0] = recv;
	fields[1] = flush;
	fields[2] = flush;
	fields[3] = (uint64) GetCurrentTimestamp();
	buf[0] = 'r';
	for (i = 0; i < 4; i++)
	{
		int			b;

		v = fields[i];
		for (b = 7; b >= 0; b--)
			buf[off++] = (char) ((v >> (8 * b)) & 0xFF);
	}
	buf[off++] = reply_requested ? 1 : 0;
	if (PQputCopyData(conn, buf, off) <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not send feedback to a peer"),
				 errdetail_internal("%s", pchomp(PQerrorMessage(conn)))));
	MyceliumWalFlush(conn);
}

/*
 * MyceliumWalReadAhead lets OpenSSL read as much as the socket holds on a
 * TLS connection (no-op without TLS).  Only for the streaming phase: the
 * command phase (MyceliumWalExec) sleeps on the socket's readiness alone.
 */
void
MyceliumWalReadAhead(PGconn *conn)
{
	SSL		   *ssl = PQsslStruct(conn, "OpenSSL");

	if (ssl != NULL)
		SSL_set_read_ahead(ssl, 1);
}

/*
 * MyceliumWalReadPending: OpenSSL holds received bytes that libpq has not
 * read yet (then the socket's readiness does not tell that data is there).
 */
bool
MyceliumWalReadPending(PGconn *conn)
{
	SSL		   *ssl = PQsslStruct(conn, "OpenSSL");

	return ssl != NULL && SSL_has_pending(ssl);
}
