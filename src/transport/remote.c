/*-------------------------------------------------------------------------
 *
 * remote.c
 *	  Sending commands to peers and waiting for their results, one or many
 *	  at once, interruptibly; relaying remote errors.
 *
 * All connections are in non-blocking mode.  A fan-out sends to every
 * connection first and then waits on all their sockets in one WaitEventSet,
 * so N nodes cost one round trip.  Waits that may throw check for
 * interrupts after every wake-up; the "no throw" variants are for commit
 * and abort callbacks, where an ERROR is not allowed, and give up at a
 * deadline instead.
 *
 * IDENTIFICATION
 *	  src/transport/remote.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/memutils.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "transport/transport.h"

/*
 * wait_timeout_ms converts a deadline (0 = none) to a WaitLatch timeout;
 * returns -2 when the deadline has passed.
 */
static long
wait_timeout_ms(TimestampTz deadline)
{
	TimestampTz now;

	if (deadline == 0)
		return -1;
	now = GetCurrentTimestamp();
	if (now >= deadline)
		return -2;
	return (long) ((deadline - now) / 1000) + 1;
}

/*
 * wait_socket waits until the connection's socket is ready for `events`,
 * the latch is set, or the deadline passes (returns false then).
 */
static bool
wait_socket(MyceliumConnection *conn, int events, TimestampTz deadline,
			bool can_throw)
{
	long		timeout = wait_timeout_ms(deadline);
	int			rc;

	if (timeout == -2)
		return false;
	rc = WaitLatchOrSocket(MyLatch,
						   WL_LATCH_SET | WL_EXIT_ON_PM_DEATH | events |
						   (timeout >= 0 ? WL_TIMEOUT : 0),
						   PQsocket(conn->conn), timeout, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
	{
		ResetLatch(MyLatch);
		if (can_throw)
			CHECK_FOR_INTERRUPTS();
	}
	return true;
}

/*
 * flush_out pushes a sent query out; a large one may not fit in the socket
 * buffer.  ok is what the libpq send call returned.  Returns false, marking
 * the connection broken, if sending failed.
 */
static bool
flush_out(MyceliumConnection *conn, int ok)
{
	if (!ok)
	{
		conn->broken = true;
		return false;
	}
	for (;;)
	{
		int			rc = PQflush(conn->conn);

		if (rc == 0)
			break;
		if (rc < 0 || !wait_socket(conn, WL_SOCKET_WRITEABLE | WL_SOCKET_READABLE, 0, true))
		{
			conn->broken = true;
			return false;
		}
		if (!PQconsumeInput(conn->conn))
		{
			conn->broken = true;
			return false;
		}
	}
	return true;
}

/*
 * pipeline_begin starts a libpq pipeline carrying conn's deferred remote
 * BEGIN (remote_xact.c) ahead of the single statement the caller sends
 * next, which extended_finish then closes with a Sync: one round trip for
 * both.  Returns 1 if it did, 0 if nothing was deferred, -1 on failure.
 */
static int
pipeline_begin(MyceliumConnection *conn)
{
	ListCell   *lc;
	int			ok;

	if (conn->deferred_begin == NIL)
		return 0;
	ok = PQenterPipelineMode(conn->conn);
	foreach(lc, conn->deferred_begin)
		if (ok)
			ok = PQsendQueryParams(conn->conn, lfirst(lc), 0, NULL, NULL, NULL, NULL, 0);
	list_free_deep(conn->deferred_begin);
	conn->deferred_begin = NIL;
	return ok ? 1 : -1;
}

/*
 * extended_start prepares conn for one extended-protocol send: reads a
 * COMMIT PREPARED left in flight (pending.c), then starts a pipeline if a
 * begin is deferred (*pipelined: pipeline_begin's result).  False if the
 * connection cannot be used.
 */
static bool
extended_start(MyceliumConnection *conn, int *pipelined)
{
	MyceliumFinishPending(conn, MYCELIUM_PENDING_TIMEOUT_MS);
	if (!MyceliumConnectionUsable(conn))
		return false;
	*pipelined = pipeline_begin(conn);
	return true;
}

/*
 * extended_finish ends what extended_start began, after the libpq send
 * call that returned ok: closes a pipeline with its Sync and pushes it
 * all out.
 */
static bool
extended_finish(MyceliumConnection *conn, int pipelined, int ok)
{
	if (pipelined < 0)
		ok = 0;
	else if (pipelined == 1 && ok)
		ok = PQpipelineSync(conn->conn);
	return flush_out(conn, ok);
}

/*
 * MyceliumResultHasSqlstate says whether res is an error with sqlstate.
 */
bool
MyceliumResultHasSqlstate(const PGresult *res, const char *sqlstate)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	return state != NULL && strcmp(state, sqlstate) == 0;
}

/*
 * MyceliumSendQuery sends one query (text parameters optional) without
 * waiting for the result; returns false if the connection failed.
 */
bool
MyceliumSendQuery(MyceliumConnection *conn, const char *sql, int nparams,
				  const char *const *values)
{
	return MyceliumSendQueryTyped(conn, sql, nparams, NULL, values);
}

/*
 * MyceliumSendQueryTyped is MyceliumSendQuery with parameter types (0 lets
 * the node infer one).  Without parameters it uses the simple protocol,
 * so sql may hold several statements or a COPY; a deferred remote BEGIN is
 * then sent and awaited first.
 */
bool
MyceliumSendQueryTyped(MyceliumConnection *conn, const char *sql, int nparams,
					   const Oid *types, const char *const *values)
{
	if (nparams > 0)
		return MyceliumSendStatement(conn, sql, nparams, types, values);
	MyceliumFinishPending(conn, MYCELIUM_PENDING_TIMEOUT_MS);
	if (!MyceliumConnectionUsable(conn))
		return false;
	MyceliumFlushBegins(&conn, 1);
	return flush_out(conn, PQsendQuery(conn->conn, sql));
}

/*
 * MyceliumSendStatement sends one single statement (no COPY) with the
 * extended protocol, parameters optional; a deferred remote BEGIN travels
 * with it.
 */
bool
MyceliumSendStatement(MyceliumConnection *conn, const char *sql, int nparams,
					  const Oid *types, const char *const *values)
{
	int			pipelined;

	if (!extended_start(conn, &pipelined))
		return false;
	return extended_finish(conn, pipelined,
						   PQsendQueryParams(conn->conn, sql, nparams, types, values, NULL, NULL, 0));
}

/*
 * MyceliumSendPrepare sends the preparation of a named statement.
 */
bool
MyceliumSendPrepare(MyceliumConnection *conn, const char *name, const char *sql,
					int nparams, const Oid *types)
{
	int			pipelined;

	if (!extended_start(conn, &pipelined))
		return false;
	return extended_finish(conn, pipelined, PQsendPrepare(conn->conn, name, sql, nparams, types));
}

/*
 * MyceliumSendPrepared sends the execution of a named statement.
 */
bool
MyceliumSendPrepared(MyceliumConnection *conn, const char *name, int nparams,
					 const char *const *values)
{
	int			pipelined;

	if (!extended_start(conn, &pipelined))
		return false;
	return extended_finish(conn, pipelined,
						   PQsendQueryPrepared(conn->conn, name, nparams, values, NULL, NULL, 0));
}

/*
 * drain_ready collects every result available without blocking.  *last
 * keeps the last result, or the first error, which takes priority (as in
 * postgres_fdw).  Returns true when the query is complete: for a
 * statement pipelined behind a deferred begin, once the pipeline's Sync
 * came back (and the pipeline is left).  A COPY found
 * in progress (a statement abandoned by an error) is ended: libpq would
 * otherwise report the copy state forever.
 */
static bool
drain_ready(MyceliumConnection *conn, PGresult **last)
{
	bool		after_end = false;	/* of one pipelined statement's results */

	while (!PQisBusy(conn->conn))
	{
		PGresult   *res = PQgetResult(conn->conn);

		if (res == NULL)
		{
			if (PQpipelineStatus(conn->conn) == PQ_PIPELINE_OFF)
				return true;
			/* two ends in a row: nothing more will come (a lost connection) */
			if (after_end || PQstatus(conn->conn) == CONNECTION_BAD)
			{
				conn->broken = true;
				return true;
			}
			after_end = true;
			continue;			/* between two pipelined statements */
		}
		after_end = false;
		switch (PQresultStatus(res))
		{
			case PGRES_PIPELINE_SYNC:
				/* the end of a pipelined begin and its statement */
				PQclear(res);
				if (!PQexitPipelineMode(conn->conn))
				{
					conn->broken = true;
					return true;
				}
				continue;
			case PGRES_PIPELINE_ABORTED:
				/* skipped after an earlier error, which is kept */
				PQclear(res);
				continue;
			case PGRES_COPY_IN:
				/* a COPY nobody feeds (an abort): end it, its error follows */
				PQclear(res);
				if (PQputCopyEnd(conn->conn, "abandoned by mycelium") < 0 ||
					PQflush(conn->conn) < 0)
				{
					conn->broken = true;
					return true;
				}
				continue;
			case PGRES_COPY_OUT:
				/* a COPY nobody reads: discard what has arrived */
				PQclear(res);
				for (;;)
				{
					char	   *buf;
					int			len = PQgetCopyData(conn->conn, &buf, 1);

					if (len > 0)
					{
						PQfreemem(buf);
						continue;
					}
					if (len == 0)
						return false;	/* more to come: wait for it */
					if (len == -2)
					{
						conn->broken = true;
						return true;
					}
					break;		/* -1: done, its result follows */
				}
				continue;
			case PGRES_COPY_BOTH:
				PQclear(res);
				conn->broken = true;
				return true;
			default:
				break;
		}
		if (*last && (PQresultStatus(*last) == PGRES_FATAL_ERROR))
			PQclear(res);
		else
		{
			PQclear(*last);
			*last = res;
		}
		if (PQstatus(conn->conn) == CONNECTION_BAD)
			return true;
	}
	return false;
}

/*
 * MyceliumGetResult waits for the result of the query in flight (deadline 0
 * = none).  Returns NULL, marking the connection broken, if the connection
 * fails or the deadline passes.  The caller PQclears the result.
 */
PGresult *
MyceliumGetResult(MyceliumConnection *conn, TimestampTz deadline, bool can_throw)
{
	PGresult   *volatile last = NULL;

	PG_TRY();
	{
		for (;;)
		{
			PGresult   *tmp = last;

			if (drain_ready(conn, &tmp))
			{
				last = tmp;
				break;
			}
			last = tmp;
			if (!wait_socket(conn, WL_SOCKET_READABLE, deadline, can_throw) ||
				!PQconsumeInput(conn->conn))
			{
				conn->broken = true;
				PQclear(last);
				last = NULL;
				break;
			}
		}
	}
	PG_CATCH();
	{
		PQclear(last);
		conn->broken = true;
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (last == NULL)
		conn->broken = true;
	return last;
}

/*
 * Wait sets of the last connections waited on alone, kept between waits: a
 * routed statement waits on one node, and building a set costs several
 * system calls (a statement alternating between two nodes rebuilt a single
 * cached set every other time).  An entry is reused only for the same
 * connection (its socket, and the connection it belongs to, which may
 * reuse a socket number); the least recently used one is rebuilt.
 */
#define SINGLE_SETS 8

typedef struct SingleSet
{
	WaitEventSet *set;
	pgsocket	sock;
	PGconn	   *conn;
	TimestampTz opened_at;
	uint64		used;
} SingleSet;

static SingleSet single_sets[SINGLE_SETS];
static uint64 single_clock = 0;

static WaitEventSet *
single_wait_set(MyceliumConnection *conn)
{
	pgsocket	sock = PQsocket(conn->conn);
	SingleSet  *victim = &single_sets[0];
	int			i;

	for (i = 0; i < SINGLE_SETS; i++)
	{
		SingleSet  *e = &single_sets[i];

		if (e->set != NULL && e->sock == sock && e->conn == conn->conn &&
			e->opened_at == conn->opened_at)
		{
			e->used = ++single_clock;
			return e->set;
		}
		if (e->used < victim->used)
			victim = e;
	}
	if (victim->set != NULL)
		FreeWaitEventSet(victim->set);
	victim->set = NULL;
	victim->set = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(victim->set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(victim->set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(victim->set, WL_SOCKET_READABLE, sock, NULL, (void *) (intptr_t) 0);
	victim->sock = sock;
	victim->conn = conn->conn;
	victim->opened_at = conn->opened_at;
	victim->used = ++single_clock;
	return victim->set;
}

/*
 * MyceliumWaitResults waits for the queries in flight on conns[0..n-1] all
 * at once; results[i] gets each one's result, or NULL for a connection that
 * failed, was not usable, or missed the deadline (0 = none).
 */
void
MyceliumWaitResults(MyceliumConnection **conns, int n, PGresult **results,
					TimestampTz deadline, bool can_throw)
{
	bool	   *done = palloc0(sizeof(bool) * n);
	int			remaining = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		results[i] = NULL;
		if (!MyceliumConnectionUsable(conns[i]))
			done[i] = true;
		else
			remaining++;
	}

	PG_TRY();
	{
		while (remaining > 0)
		{
			WaitEventSet *set;
			WaitEvent	events[64];
			int			nev;
			long		timeout;

			/* collect what is already there before sleeping */
			for (i = 0; i < n; i++)
			{
				if (done[i])
					continue;
				if (drain_ready(conns[i], &results[i]))
				{
					done[i] = true;
					remaining--;
				}
			}
			if (remaining == 0)
				break;

			timeout = wait_timeout_ms(deadline);
			if (timeout == -2)
				break;
			if (n == 1)
				set = single_wait_set(conns[0]);
			else
			{
				set = CreateWaitEventSet(CurrentMemoryContext, n + 2);
				AddWaitEventToSet(set, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
				AddWaitEventToSet(set, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
				for (i = 0; i < n; i++)
					if (!done[i])
						AddWaitEventToSet(set, WL_SOCKET_READABLE, PQsocket(conns[i]->conn),
										  NULL, (void *) (intptr_t) i);
			}
			nev = WaitEventSetWait(set, timeout, events, lengthof(events), PG_WAIT_EXTENSION);
			if (n != 1)
				FreeWaitEventSet(set);

			for (i = 0; i < nev; i++)
			{
				int			k;

				if (events[i].events & WL_LATCH_SET)
				{
					ResetLatch(MyLatch);
					if (can_throw)
						CHECK_FOR_INTERRUPTS();
					continue;
				}
				k = (int) (intptr_t) events[i].user_data;
				if (!PQconsumeInput(conns[k]->conn))
				{
					conns[k]->broken = true;
					PQclear(results[k]);
					results[k] = NULL;
					done[k] = true;
					remaining--;
				}
			}
		}
	}
	PG_CATCH();
	{
		for (i = 0; i < n; i++)
		{
			PQclear(results[i]);
			results[i] = NULL;
			if (!done[i])
				conns[i]->broken = true;
		}
		PG_RE_THROW();
	}
	PG_END_TRY();

	/* whatever is not done missed the deadline */
	for (i = 0; i < n; i++)
	{
		if (!done[i])
		{
			conns[i]->broken = true;
			PQclear(results[i]);
			results[i] = NULL;
		}
		else if (results[i] == NULL && MyceliumConnectionUsable(conns[i]))
			conns[i]->broken = true;	/* connection lost mid-query */
	}
	pfree(done);
}

/*
 * MyceliumReportConnError raises (at elevel) an error for a connection that
 * failed while doing `what`.
 */
void
MyceliumReportConnError(int elevel, MyceliumConnection *conn, const char *what)
{
	char	   *msg = (conn->conn && PQerrorMessage(conn->conn)[0]) ?
		pchomp(PQerrorMessage(conn->conn)) :
		(conn->connect_error ? conn->connect_error : "connection lost or timed out");

	conn->broken = true;
	ereport(elevel,
			(errcode(ERRCODE_CONNECTION_FAILURE),
			 errmsg("could not %s on node \"%s\"", what, conn->node_name),
			 errdetail_internal("%s", msg)));
}

/*
 * MyceliumReportResultError relays a remote error (its SQLSTATE, message,
 * detail and hint) at elevel, naming the node and the command, and clears
 * the result.
 */
void
MyceliumReportResultError(int elevel, PGresult *res, MyceliumConnection *conn,
						  const char *sql)
{
	char	   *sqlstate = NULL;
	char	   *primary = NULL;
	char	   *detail = NULL;
	char	   *hint = NULL;
	int			code;

	if (res == NULL)
	{
		MyceliumReportConnError(elevel, conn, "run a command");
		return;
	}
#define COPY_FIELD(f) (PQresultErrorField(res, f) ? pstrdup(PQresultErrorField(res, f)) : NULL)
	sqlstate = COPY_FIELD(PG_DIAG_SQLSTATE);
	primary = COPY_FIELD(PG_DIAG_MESSAGE_PRIMARY);
	detail = COPY_FIELD(PG_DIAG_MESSAGE_DETAIL);
	hint = COPY_FIELD(PG_DIAG_MESSAGE_HINT);
#undef COPY_FIELD
	if (primary == NULL)
		primary = pchomp(PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res) :
						 "unexpected result from remote command");
	PQclear(res);

	code = (sqlstate && strlen(sqlstate) == 5) ?
		MAKE_SQLSTATE(sqlstate[0], sqlstate[1], sqlstate[2], sqlstate[3], sqlstate[4]) :
		ERRCODE_CONNECTION_FAILURE;
	ereport(elevel,
			(errcode(code),
			 errmsg_internal("%s", primary),
			 detail ? errdetail_internal("%s", detail) : 0,
			 hint ? errhint("%s", hint) : 0,
			 sql ? errcontext("remote command on node \"%s\": %s", conn->node_name, sql) :
			 errcontext("on node \"%s\"", conn->node_name)));
}

/*
 * MyceliumResultErrorText returns a palloc'd one-line description of a
 * failed result (or of the connection's failure when res is NULL).
 */
char *
MyceliumResultErrorText(PGresult *res, MyceliumConnection *conn)
{
	const char *primary;

	if (res == NULL)
	{
		if (conn->conn && PQerrorMessage(conn->conn)[0])
			return pchomp(PQerrorMessage(conn->conn));
		return pstrdup(conn->connect_error ? conn->connect_error : "connection lost or timed out");
	}
	primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (primary)
		return pstrdup(primary);
	return pchomp(PQresultErrorMessage(res)[0] ? PQresultErrorMessage(res) : "unexpected result");
}

/*
 * MyceliumExec runs one command and returns its result (caller PQclears);
 * any failure is an ERROR relayed from the node.
 */
PGresult *
MyceliumExec(MyceliumConnection *conn, const char *sql, int nparams,
			 const char *const *values)
{
	PGresult   *res;

	if (!MyceliumSendQuery(conn, sql, nparams, values))
		MyceliumReportConnError(ERROR, conn, "send a command");
	res = MyceliumGetResult(conn, 0, true);
	if (res == NULL)
		MyceliumReportConnError(ERROR, conn, "run a command");
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
		MyceliumReportResultError(ERROR, res, conn, sql);
	return res;
}

/*
 * MyceliumExecCommand runs a command whose result is not needed.
 */
void
MyceliumExecCommand(MyceliumConnection *conn, const char *sql)
{
	PQclear(MyceliumExec(conn, sql, 0, NULL));
}

/*
 * MyceliumExecNoThrow runs a command for a commit/abort callback or a
 * worker: never raises, gives up after timeout_ms, and returns false with a
 * palloc'd *error (if error is not NULL) on failure.
 */
bool
MyceliumExecNoThrow(MyceliumConnection *conn, const char *sql, int timeout_ms,
					char **error)
{
	PGresult   *res;
	bool		ok;

	if (!MyceliumSendQuery(conn, sql, 0, NULL))
	{
		if (error)
			*error = MyceliumResultErrorText(NULL, conn);
		return false;
	}
	res = MyceliumGetResult(conn, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms), false);
	ok = res != NULL && (PQresultStatus(res) == PGRES_COMMAND_OK ||
						 PQresultStatus(res) == PGRES_TUPLES_OK);
	if (!ok && error)
		*error = MyceliumResultErrorText(res, conn);
	PQclear(res);
	return ok;
}

/*
 * MyceliumSendCancel asks the node to cancel the query running on conn
 * (a WARNING if the request could not be sent).
 */
void
MyceliumSendCancel(MyceliumConnection *conn)
{
	PGcancel   *cancel = PQgetCancel(conn->conn);
	char		errbuf[256];

	if (cancel == NULL)
		return;
	if (!PQcancel(cancel, errbuf, sizeof(errbuf)))
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not send cancel request to node \"%s\"", conn->node_name),
				 errdetail_internal("%s", errbuf)));
	PQfreeCancel(cancel);
}

/*
 * MyceliumCancelAndDrain cancels the query running on a connection and
 * discards its results, waiting at most 30 s; returns false (connection
 * marked broken) if that did not work.
 */
bool
MyceliumCancelAndDrain(MyceliumConnection *conn)
{
	PGresult   *res;

	if (conn->conn == NULL)
		return false;
	if (PQtransactionStatus(conn->conn) != PQTRANS_ACTIVE)
		return true;
	MyceliumSendCancel(conn);
	res = MyceliumGetResult(conn, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 30000), false);
	PQclear(res);
	return !conn->broken;
}

/*
 * exec_each sends sqls[i] (with the parameters, if any) to conns[i], all
 * at once (one round trip in all), and raises the first failure, relayed
 * from its node.
 */
static void
exec_each(MyceliumConnection **conns, int n, const char *const *sqls,
		  int nparams, const char *const *values)
{
	PGresult  **results = palloc0(sizeof(PGresult *) * n);
	int			i;
	int			bad = -1;

	if (nparams == 0)
		MyceliumFlushBegins(conns, n);	/* in parallel, before the sends */
	for (i = 0; i < n; i++)
		if (!MyceliumSendQuery(conns[i], sqls[i], nparams, values))
			MyceliumReportConnError(ERROR, conns[i], "send a command");
	MyceliumWaitResults(conns, n, results, 0, true);
	for (i = 0; i < n; i++)
	{
		ExecStatusType st = results[i] ? PQresultStatus(results[i]) : PGRES_FATAL_ERROR;

		if (bad < 0 && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
			bad = i;
		else
		{
			PQclear(results[i]);
			results[i] = NULL;
		}
	}
	if (bad >= 0)
		MyceliumReportResultError(ERROR, results[bad], conns[bad], sqls[bad]);
	pfree(results);
}

/*
 * MyceliumExecParallel runs one command on every connection at once (one
 * round trip in all) and raises the first failure, relayed from its node.
 */
void
MyceliumExecParallel(MyceliumConnection **conns, int n, const char *sql,
					 int nparams, const char *const *values)
{
	const char **sqls = palloc(sizeof(char *) * Max(n, 1));
	int			i;

	for (i = 0; i < n; i++)
		sqls[i] = sql;
	exec_each(conns, n, sqls, nparams, values);
	pfree(sqls);
}

/*
 * MyceliumExecEach runs sqls[i] (no parameters) on conns[i], all at once.
 */
void
MyceliumExecEach(MyceliumConnection **conns, int n, const char *const *sqls)
{
	exec_each(conns, n, sqls, 0, NULL);
}
