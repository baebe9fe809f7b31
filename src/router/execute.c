/*-------------------------------------------------------------------------
 *
 * execute.c
 *	  Running shard statements: remote ones in parallel over the node
 *	  connections, local ones through SPI in the current transaction, and
 *	  their rows into a tuplestore.
 *
 * Reads use the transaction's connection to a node (MYCELIUM_CONN_XACT)
 * inside a transaction block or in a statement that writes, so they see
 * the transaction's earlier writes; a lone autocommit SELECT borrows the
 * connection for one round trip instead.  Writes always go through the
 * transaction's connection and mark it written, so the two-phase commit of
 * txn/twophase.c makes them atomic with everything else the transaction
 * did.  A shard on this node is always read and written locally, never
 * through a loopback connection, so local and remote work of one
 * transaction never wait on each other.
 *
 * IDENTIFICATION
 *	  src/router/execute.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "executor/spi.h"
#include "common/hashfn.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "cluster/cluster.h"
#include "router/router.h"
#include "router/router_internal.h"
#include "transport/transport.h"

/*
 * task_connections returns a connection per remote task (NULL for local
 * ones), opened in parallel.
 */
static MyceliumConnection **
task_connections(List *tasks, bool xact)
{
	int			n = list_length(tasks);
	MyceliumConnection **conns = palloc0(sizeof(MyceliumConnection *) * Max(n, 1));
	MyceliumConnection **remote = palloc0(sizeof(MyceliumConnection *) * Max(n, 1));
	const char **names = palloc0(sizeof(char *) * Max(n, 1));
	const char **hosts = palloc0(sizeof(char *) * Max(n, 1));
	int		   *ports = palloc0(sizeof(int) * Max(n, 1));
	List	   *nodes = MyceliumCachedNodes();
	int			nremote = 0;
	int			i = 0;
	ListCell   *lc;

	foreach(lc, tasks)
	{
		RouterTask *task = lfirst(lc);
		MyceliumNode *node;

		if (task->is_local)
			continue;
		node = MyceliumFindNode(nodes, task->node_name);
		if (node == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_OBJECT),
					 errmsg("node \"%s\" of a shard is not in the mesh", task->node_name),
					 errhint("The shard metadata and the node catalog disagree; check mycelium.shards.")));
		names[nremote] = node->node_name;
		hosts[nremote] = node->host;
		ports[nremote] = node->port;
		nremote++;
	}
	if (nremote > 0)
		MyceliumGetConnections(remote, nremote, names, hosts, ports,
							   xact ? MYCELIUM_CONN_XACT : MYCELIUM_CONN_AUTOCOMMIT, false);
	nremote = 0;
	foreach(lc, tasks)
	{
		RouterTask *task = lfirst(lc);

		if (!task->is_local)
			conns[i] = remote[nremote++];
		i++;
	}
	return conns;
}

/*
 * Shard statements prepared on node connections, per backend: a statement
 * is prepared on a connection the first time it runs there (one extra
 * round trip), then executed by name, so the node parses and plans it
 * once.  A connection that was reopened has a new opened_at and gets its
 * statements prepared again.
 */
static const char *const *text_params(RouterTask *task);

typedef struct PreparedKey
{
	MyceliumConnection *conn;
	TimestampTz opened_at;
	uint64		sql_hash;
} PreparedKey;

typedef struct PreparedEntry
{
	PreparedKey key;
	char	   *sql;			/* to tell hash collisions apart */
	char		name[32];
} PreparedEntry;

#define MAX_PREPARED 4096

static HTAB *prepared = NULL;
static uint64 prepared_counter = 0;

/*
 * prepared_name returns the name of sql prepared on conn, preparing it
 * first if needed; NULL to run it unprepared (hash collision, cache full).
 */
static const char *
prepared_name(MyceliumConnection *conn, RouterTask *task)
{
	PreparedKey key;
	PreparedEntry *entry;
	PGresult   *res;
	bool		found;

	if (prepared == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(PreparedKey);
		ctl.entrysize = sizeof(PreparedEntry);
		ctl.hcxt = TopMemoryContext;
		prepared = hash_create("mycelium prepared shard statements", 256, &ctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	memset(&key, 0, sizeof(key));
	key.conn = conn;
	key.opened_at = conn->opened_at;
	key.sql_hash = hash_bytes_extended((const unsigned char *) task->sql,
									   strlen(task->sql), 0);
	entry = hash_search(prepared, &key, HASH_FIND, NULL);
	if (entry != NULL)
		return strcmp(entry->sql, task->sql) == 0 ? entry->name : NULL;
	if (hash_get_num_entries(prepared) >= MAX_PREPARED)
		return NULL;

	entry = hash_search(prepared, &key, HASH_ENTER, &found);
	entry->sql = MemoryContextStrdup(TopMemoryContext, task->sql);
	snprintf(entry->name, sizeof(entry->name), "mycelium_s" UINT64_FORMAT, ++prepared_counter);
	if (!MyceliumSendPrepare(conn, entry->name, task->sql, task->nparams, task->remote_types) ||
		(res = MyceliumGetResult(conn, 0, true)) == NULL)
	{
		pfree(entry->sql);
		hash_search(prepared, &key, HASH_REMOVE, NULL);
		MyceliumReportConnError(ERROR, conn, "prepare a shard query");
	}
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		pfree(entry->sql);
		hash_search(prepared, &key, HASH_REMOVE, NULL);
		MyceliumReportResultError(ERROR, res, conn, task->sql);
	}
	PQclear(res);
	return entry->name;
}

/*
 * send_task sends one task's statement to its node.
 */
static void
send_task(MyceliumConnection *conn, RouterTask *task)
{
	const char *const *values = text_params(task);
	const char *name = task->prepare ? prepared_name(conn, task) : NULL;
	bool		ok;

	if (name != NULL)
		ok = MyceliumSendPrepared(conn, name, task->nparams, values);
	else
		ok = MyceliumSendStatement(conn, task->sql, task->nparams, task->remote_types, values);
	if (!ok)
		MyceliumReportConnError(ERROR, conn, "send a shard statement");
}

/*
 * text_params converts a task's parameters to text for libpq.
 */
static const char *const *
text_params(RouterTask *task)
{
	const char **out = palloc0(sizeof(char *) * Max(task->nparams, 1));
	int			nestlevel;
	int			i;

	if (task->nparams == 0)
		return (const char *const *) out;
	nestlevel = RouterPushTransmissionModes();
	for (i = 0; i < task->nparams; i++)
	{
		Oid			outfunc;
		bool		isvarlena;

		if (task->nulls[i])
			continue;
		getTypeOutputInfo(task->types[i], &outfunc, &isvarlena);
		out[i] = OidOutputFunctionCall(outfunc, task->values[i]);
	}
	RouterPopSearchPath(nestlevel);
	return (const char *const *) out;
}

/*
 * store_result converts a remote result's rows into the tuplestore.
 */
static void
store_result(PGresult *res, Tuplestorestate *store, TupleDesc desc, MemoryContext rowcxt)
{
	int			natts = desc->natts;
	FmgrInfo   *in = palloc(sizeof(FmgrInfo) * Max(natts, 1));
	Oid		   *ioparams = palloc(sizeof(Oid) * Max(natts, 1));
	Datum	   *values = palloc(sizeof(Datum) * Max(natts, 1));
	bool	   *nulls = palloc(sizeof(bool) * Max(natts, 1));
	int			nrows = PQntuples(res);
	int			r;
	int			c;

	if (PQnfields(res) != natts)
		elog(ERROR, "shard query returned %d columns, expected %d", PQnfields(res), natts);
	for (c = 0; c < natts; c++)
	{
		Oid			infunc;

		getTypeInputInfo(TupleDescAttr(desc, c)->atttypid, &infunc, &ioparams[c]);
		fmgr_info(infunc, &in[c]);
	}
	for (r = 0; r < nrows; r++)
	{
		MemoryContext old = MemoryContextSwitchTo(rowcxt);

		for (c = 0; c < natts; c++)
		{
			char	   *v = PQgetisnull(res, r, c) ? NULL : PQgetvalue(res, r, c);

			values[c] = InputFunctionCall(&in[c], v, ioparams[c],
										  TupleDescAttr(desc, c)->atttypmod);
			nulls[c] = (v == NULL);
		}
		tuplestore_putvalues(store, desc, values, nulls);
		MemoryContextSwitchTo(old);
		MemoryContextReset(rowcxt);
	}
}

/*
 * run_local runs one task on this node through SPI, storing returned rows;
 * returns the number of rows processed.
 */
static uint64
run_local(RouterTask *task, bool read_only, Tuplestorestate *store, TupleDesc desc)
{
	uint64		processed;
	int			rc;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	MyceliumRouterBypass(true);
	PG_TRY();
	{
		if (task->nparams > 0)
		{
			char	   *nulls = palloc(task->nparams);
			int			i;

			for (i = 0; i < task->nparams; i++)
				nulls[i] = task->nulls[i] ? 'n' : ' ';
			rc = SPI_execute_with_args(task->sql, task->nparams, task->types, task->values,
									   nulls, read_only, 0);
		}
		else
			rc = SPI_execute(task->sql, read_only, 0);
	}
	PG_FINALLY();
	{
		MyceliumRouterBypass(false);
	}
	PG_END_TRY();
	if (rc < 0)
		elog(ERROR, "local shard statement failed: %s", SPI_result_code_string(rc));
	processed = SPI_processed;
	if (store != NULL && SPI_tuptable != NULL)
	{
		TupleDesc	rdesc = SPI_tuptable->tupdesc;
		Datum	   *values = palloc(sizeof(Datum) * Max(rdesc->natts, 1));
		bool	   *nulls = palloc(sizeof(bool) * Max(rdesc->natts, 1));
		uint64		i;

		if (rdesc->natts != desc->natts)
			elog(ERROR, "local shard query returned %d columns, expected %d",
				 rdesc->natts, desc->natts);
		for (i = 0; i < SPI_processed; i++)
		{
			heap_deform_tuple(SPI_tuptable->vals[i], rdesc, values, nulls);
			tuplestore_putvalues(store, desc, values, nulls);
		}
	}
	SPI_finish();
	return processed;
}

/*
 * RouterRunSelectTasks runs read tasks, at most one per node: the remote
 * ones all at once, the local one meanwhile, and puts every row into store.
 */
void
RouterRunSelectTasks(List *tasks, Tuplestorestate *store, TupleDesc desc, bool xact)
{
	int			n = list_length(tasks);
	MyceliumConnection **conns;
	PGresult  **results;
	MemoryContext rowcxt;
	RouterTask *local = NULL;
	int			i;
	ListCell   *lc;

	if (n == 0)
		return;
	conns = task_connections(tasks, xact);
	results = palloc0(sizeof(PGresult *) * n);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "mycelium shard rows",
								   ALLOCSET_DEFAULT_SIZES);
	i = 0;
	foreach(lc, tasks)
	{
		RouterTask *task = lfirst(lc);

		if (task->is_local)
			local = task;
		else
			send_task(conns[i], task);
		i++;
	}
	if (local)
		(void) run_local(local, true, store, desc);
	MyceliumWaitResults(conns, n, results, 0, true);
	i = 0;
	foreach(lc, tasks)
	{
		RouterTask *task = lfirst(lc);

		if (!task->is_local)
		{
			if (results[i] == NULL || PQresultStatus(results[i]) != PGRES_TUPLES_OK)
				MyceliumReportResultError(ERROR, results[i], conns[i], task->sql);
			store_result(results[i], store, desc, rowcxt);
			PQclear(results[i]);
			results[i] = NULL;
			if (!xact)
				MyceliumReleaseConnection(conns[i]);
		}
		i++;
	}
	MemoryContextDelete(rowcxt);
}

/*
 * RouterRunModifyTasks runs write tasks: in rounds, one task per node at a
 * time, the nodes in parallel.  Returns the rows affected in all; returned
 * rows go into store when it is not NULL.
 */
uint64
RouterRunModifyTasks(List *tasks, Tuplestorestate *store, TupleDesc desc)
{
	int			n = list_length(tasks);
	MyceliumConnection **conns;
	bool	   *done;
	int			remaining = n;
	uint64		total = 0;
	MemoryContext rowcxt;

	if (n == 0)
		return 0;
	conns = task_connections(tasks, true);
	done = palloc0(sizeof(bool) * n);
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "mycelium shard rows",
								   ALLOCSET_DEFAULT_SIZES);
	while (remaining > 0)
	{
		MyceliumConnection **round = palloc0(sizeof(MyceliumConnection *) * n);
		int		   *which = palloc(sizeof(int) * n);
		PGresult  **results = palloc0(sizeof(PGresult *) * n);
		int			nround = 0;
		int			i;
		int			k;

		/* one remote task per connection, then the local ones meanwhile */
		for (i = 0; i < n; i++)
		{
			RouterTask *task = list_nth(tasks, i);
			bool		busy = false;

			if (done[i] || task->is_local)
				continue;
			for (k = 0; k < nround; k++)
				if (round[k] == conns[i])
					busy = true;
			if (busy)
				continue;
			send_task(conns[i], task);
			conns[i]->wrote = true;
			round[nround] = conns[i];
			which[nround++] = i;
		}
		for (i = 0; i < n; i++)
		{
			RouterTask *task = list_nth(tasks, i);

			if (done[i] || !task->is_local)
				continue;
			{
				uint64		n_local = run_local(task, false, task->counts ? store : NULL, desc);

				if (task->counts)
					total += n_local;
			}
			done[i] = true;
			remaining--;
		}
		MyceliumWaitResults(round, nround, results, 0, true);
		for (k = 0; k < nround; k++)
		{
			RouterTask *task = list_nth(tasks, which[k]);
			ExecStatusType st = results[k] ? PQresultStatus(results[k]) : PGRES_FATAL_ERROR;

			if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK)
				MyceliumReportResultError(ERROR, results[k], round[k], task->sql);
			if (task->counts)
				total += strtou64(PQcmdTuples(results[k]), NULL, 10);
			if (store != NULL && task->counts && st == PGRES_TUPLES_OK)
				store_result(results[k], store, desc, rowcxt);
			PQclear(results[k]);
			done[which[k]] = true;
			remaining--;
		}
	}
	MemoryContextDelete(rowcxt);
	return total;
}
