/*-------------------------------------------------------------------------
 *
 * remote_xact.c
 *	  Beginning the remote transactions that follow the local one.
 *
 * A connection taken for the current transaction (MYCELIUM_CONN_XACT)
 * gets a remote transaction the first time a statement needs its node:
 * START TRANSACTION with the local isolation level, the local lock_timeout
 * and the distributed transaction id, then one SAVEPOINT per level of
 * local subtransaction.  Those statements are not sent at once but kept
 * as the connection's deferred begin, and travel with the next statement
 * sent on it, in one round trip:
 *
 *	- a single statement sent with the extended protocol (routed
 *	  statements, prepared or not) goes in a libpq pipeline behind them
 *	  (remote.c), so beginning costs no round trip of its own;
 *	- anything else (simple-protocol commands, which may hold several
 *	  statements or a COPY, neither of which a pipeline takes) first sends
 *	  the deferred begins of all the connections it addresses at once,
 *	  in one round trip for all (MyceliumFlushBegins), as before.
 *
 * A begin that was never sent began nothing: at the end of the transaction
 * such a connection has no remote transaction (MyceliumDropUnsentBegin),
 * and a local subtransaction that ends before its SAVEPOINT was sent just
 * forgets it (MyceliumUnbeginSavepoint).  Ending remote transactions is
 * txn/twophase.c's.
 *
 * IDENTIFICATION
 *	  src/transport/remote_xact.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "storage/proc.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "transport/transport.h"
#include "txn/txn.h"

/*
 * defer_begin appends to conn's deferred begin what makes its remote
 * nesting level match the local one, and counts it as done: START
 * TRANSACTION with the local isolation level, lock_timeout and the
 * distributed transaction id the first time, then one SAVEPOINT per local
 * subtransaction level.  Kept in TopMemoryContext: a connection outlives
 * transactions, and the list is freed when sent or dropped.
 */
static void
defer_begin(MyceliumConnection *conn)
{
	int			level = GetCurrentTransactionNestLevel();
	MemoryContext old;

	if (conn->xact_depth >= level)
		return;
	old = MemoryContextSwitchTo(TopMemoryContext);
	if (conn->xact_depth == 0)
	{
		conn->deferred_begin = lappend(conn->deferred_begin,
									   psprintf("START TRANSACTION ISOLATION LEVEL %s",
												XactIsoLevel == XACT_SERIALIZABLE ? "SERIALIZABLE" :
												XactIsoLevel == XACT_REPEATABLE_READ ? "REPEATABLE READ" :
												"READ COMMITTED"));

		/*
		 * A lock wait on the peer is not a local lock wait, so the local
		 * lock_timeout would never fire for it: forward it.
		 * (statement_timeout needs no forwarding: it fires locally and the
		 * abort cancels the remote command.)
		 */
		conn->deferred_begin = lappend(conn->deferred_begin,
									   psprintf("SET LOCAL lock_timeout = %d", LockTimeout));
		/* the id deadlock detection knows this remote work by (txn/deadlock.c) */
		conn->deferred_begin = lappend(conn->deferred_begin,
									   psprintf("SET LOCAL mycelium.distributed_transaction_id = %s",
												quote_literal_cstr(MyceliumDistributedXactId())));
		conn->xact_depth = 1;
	}
	while (conn->xact_depth < level)
	{
		conn->xact_depth++;
		conn->deferred_begin = lappend(conn->deferred_begin,
									   psprintf("SAVEPOINT s%d", conn->xact_depth));
	}
	MemoryContextSwitchTo(old);
}

/*
 * MyceliumBeginRemoteXacts makes the remote nesting level of every usable
 * connection of conns match the local one, deferred until the next
 * statement sent on it (see the file comment).  A connection listed twice
 * is begun once: the second time it already matches.
 */
void
MyceliumBeginRemoteXacts(MyceliumConnection **conns, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		if (MyceliumConnectionUsable(conns[i]))
			defer_begin(conns[i]);
}

/*
 * MyceliumFlushBegins sends the deferred begins of the usable connections
 * of conns, in one round trip for all, and waits for them; a failure is an
 * ERROR relayed from its node.
 */
void
MyceliumFlushBegins(MyceliumConnection **conns, int n)
{
	MyceliumConnection **begin = palloc(sizeof(MyceliumConnection *) * Max(n, 1));
	const char **sqls = palloc(sizeof(char *) * Max(n, 1));
	int			k = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		MyceliumConnection *c = conns[i];
		StringInfoData sql;
		ListCell   *lc;

		if (c == NULL || c->deferred_begin == NIL || !MyceliumConnectionUsable(c))
			continue;
		initStringInfo(&sql);
		foreach(lc, c->deferred_begin)
			appendStringInfo(&sql, "%s%s", sql.len ? ";" : "", (char *) lfirst(lc));
		list_free_deep(c->deferred_begin);
		c->deferred_begin = NIL;	/* a duplicate in conns is sent once */
		begin[k] = c;
		sqls[k++] = sql.data;
	}
	if (k > 0)
		MyceliumExecEach(begin, k, sqls);
	pfree(begin);
	pfree(sqls);
}

/*
 * MyceliumUnbeginSavepoint forgets the deferred SAVEPOINT of a local
 * subtransaction (of nesting level) that ends before any statement took it
 * to the node; true if there was one, and then the node needs nothing.
 */
bool
MyceliumUnbeginSavepoint(MyceliumConnection *conn, int level)
{
	if (conn->deferred_begin == NIL || conn->xact_depth != level || level < 2)
		return false;
	pfree(llast(conn->deferred_begin));
	conn->deferred_begin = list_delete_last(conn->deferred_begin);
	conn->xact_depth = level - 1;
	return true;
}

/*
 * MyceliumDropUnsentBegin forgets a deferred begin at the end of the local
 * transaction: if it holds the START TRANSACTION, no remote transaction
 * began on the connection.
 */
void
MyceliumDropUnsentBegin(MyceliumConnection *conn)
{
	if (conn->deferred_begin == NIL)
		return;
	if (strncmp(linitial(conn->deferred_begin), "START ", 6) == 0)
		conn->xact_depth = 0;
	list_free_deep(conn->deferred_begin);
	conn->deferred_begin = NIL;
}
