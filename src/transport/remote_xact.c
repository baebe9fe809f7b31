/*-------------------------------------------------------------------------
 *
 * remote_xact.c
 *	  Beginning the remote transactions that follow the local one.
 *
 * A connection taken for the current transaction (MYCELIUM_CONN_XACT)
 * gets a remote transaction the first time a statement needs its node:
 * START TRANSACTION with the local isolation level, the local lock_timeout
 * and the distributed transaction id, then one SAVEPOINT per level of
 * local subtransaction.  Every connection a statement first reaches is
 * begun at once, in one round trip for all.  Ending them is
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

#include "transport/transport.h"
#include "txn/txn.h"

/*
 * begin_sql returns what makes the remote nesting level of conn match the
 * local one (NULL: nothing), and counts it as done: START TRANSACTION with
 * the local isolation level, lock_timeout and the distributed transaction
 * id the first time, then one SAVEPOINT per local subtransaction level.
 */
static char *
begin_sql(MyceliumConnection *conn)
{
	int			level = GetCurrentTransactionNestLevel();
	StringInfoData sql;

	if (conn->xact_depth >= level)
		return NULL;
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
	return sql.data;
}

/*
 * MyceliumBeginRemoteXacts makes the remote nesting level of every usable
 * connection of conns match the local one (begin_sql), in one round trip
 * for all.  A connection listed twice is begun once: the second time it
 * already matches.
 */
void
MyceliumBeginRemoteXacts(MyceliumConnection **conns, int n)
{
	MyceliumConnection **begin = palloc(sizeof(MyceliumConnection *) * Max(n, 1));
	const char **sqls = palloc(sizeof(char *) * Max(n, 1));
	int			k = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		char	   *sql;

		if (!MyceliumConnectionUsable(conns[i]) || (sql = begin_sql(conns[i])) == NULL)
			continue;
		begin[k] = conns[i];
		sqls[k++] = sql;
	}
	if (k > 0)
		MyceliumExecEach(begin, k, sqls);
	pfree(begin);
	pfree(sqls);
}
