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
 * affected.
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
	MyceliumConnection **conns;
	PGresult  **results;
	const char **names,
			  **hosts;
	int		   *ports;
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
	conns = palloc0(sizeof(MyceliumConnection *) * n);
	results = palloc0(sizeof(PGresult *) * n);
	names = palloc(sizeof(char *) * n);
	hosts = palloc(sizeof(char *) * n);
	ports = palloc(sizeof(int) * n);
	i = 0;
	foreach(lc, nodes)
	{
		MyceliumNode *node = lfirst(lc);

		names[i] = node->node_name;
		hosts[i] = node->host;
		ports[i] = node->port;
		i++;
	}

	MyceliumGetConnections(conns, n, names, hosts, ports, MYCELIUM_CONN_AUTOCOMMIT, true);
	for (i = 0; i < n; i++)
		if (MyceliumConnectionUsable(conns[i]))
			MyceliumSendQuery(conns[i], command, 0, NULL);
	MyceliumWaitResults(conns, n, results, 0, true);

	for (i = 0; i < n; i++)
	{
		Datum		values[3];
		bool		nulls[3] = {false, false, false};
		bool		ok;
		char	   *text;

		ok = results[i] != NULL &&
			(PQresultStatus(results[i]) == PGRES_COMMAND_OK ||
			 PQresultStatus(results[i]) == PGRES_TUPLES_OK);
		if (ok)
			text = result_text(results[i], &ok, &nulls[2]);
		else
			text = MyceliumResultErrorText(results[i], conns[i]);
		PQclear(results[i]);
		results[i] = NULL;
		values[0] = CStringGetTextDatum(names[i]);
		values[1] = BoolGetDatum(ok);
		if (!nulls[2])
			values[2] = CStringGetTextDatum(text);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		MyceliumReleaseConnection(conns[i]);
	}
	return (Datum) 0;
}
