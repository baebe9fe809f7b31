/*-------------------------------------------------------------------------
 *
 * commands.c
 *	  mycelium.run_command_on_nodes: one command on every node, in parallel.
 *
 * The command runs on each node in its own autocommit session (the local
 * node included, through a loopback connection), outside the caller's
 * transaction, so it may be anything a client could send: VACUUM, CREATE
 * DATABASE, several statements.  A node that fails or cannot be reached
 * gives a row with success = false and the error; the others are not
 * affected.  A peer the maintenance worker has marked down is not tried
 * (that would stall every fan-out for mycelium.connect_timeout): its row
 * says it is down.
 *
 * IDENTIFICATION
 *	  src/cluster/commands.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "cluster/cluster.h"
#include "config/config.h"
#include "shmem/shmem.h"

PG_FUNCTION_INFO_V1(mycelium_run_command_on_nodes);

/*
 * result_text turns a successful result into run_command_on_nodes' result
 * column: the single value of a one-row, one-column result, the command tag
 * otherwise.  Sets *ok = false with a reason for results of several values.
 */
static char *
result_text(PGresult *res, bool *ok, bool *isnull)
{
	*isnull = false;
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
	{
		if (PQntuples(res) == 1 && PQnfields(res) == 1)
		{
			*isnull = PQgetisnull(res, 0, 0);
			return *isnull ? NULL : pstrdup(PQgetvalue(res, 0, 0));
		}
		if (PQntuples(res) == 0)
			return pstrdup(PQcmdStatus(res));
		*ok = false;
		return psprintf("command returned %d rows of %d columns; one value is expected",
						PQntuples(res), PQnfields(res));
	}
	return pstrdup(PQcmdStatus(res));
}

/*
 * mycelium.run_command_on_nodes(command text)
 *	 returns table(node_name text, success bool, result text)
 */
Datum
mycelium_run_command_on_nodes(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	char	   *command;
	List	   *nodes;
	int			n,
				i;
	bool	   *down;
	MyceliumConnection **conns;
	PGresult  **results;
	ListCell   *lc;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("command must not be null")));
	command = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MyceliumEnsureLocalNode();
	InitMaterializedSRF(fcinfo, 0);

	nodes = MyceliumCachedNodes();
	n = list_length(nodes);
	results = palloc0(sizeof(PGresult *) * Max(n, 1));
	down = palloc0(sizeof(bool) * Max(n, 1));
	i = 0;
	foreach(lc, nodes)
	{
		MyceliumNode *node = lfirst(lc);

		/* a peer known to be down answers at once instead of stalling all */
		down[i++] = !node->is_local && MyceliumPeerIsDown(node->node_name);
	}

	conns = MyceliumConnectNodes(nodes, MYCELIUM_CONN_AUTOCOMMIT, true, true, down);
	for (i = 0; i < n; i++)
		MyceliumSendQuery(conns[i], command, 0, NULL);
	MyceliumWaitResults(conns, n, results, 0, true);

	i = 0;
	foreach(lc, nodes)
	{
		MyceliumNode *node = lfirst(lc);
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		bool		ok = false;
		char	   *text;

		if (down[i])
			text = psprintf("node \"%s\" is down: it has not answered for mycelium.peer_timeout",
							node->node_name);
		else
		{
			ok = results[i] != NULL &&
				(PQresultStatus(results[i]) == PGRES_COMMAND_OK ||
				 PQresultStatus(results[i]) == PGRES_TUPLES_OK);
			if (ok)
				text = result_text(results[i], &ok, &nulls[2]);
			else
				text = MyceliumResultErrorText(results[i], conns[i]);
			PQclear(results[i]);
			results[i] = NULL;
			MyceliumReleaseConnection(conns[i]);
		}
		i++;
		values[0] = CStringGetTextDatum(node->node_name);
		values[1] = BoolGetDatum(ok);
		if (!nulls[2])
			values[2] = CStringGetTextDatum(text);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
