/*-------------------------------------------------------------------------
 *
 * utility.c
 *	  The ProcessUtility hook: which utility statements Mycelium handles,
 *	  and the helpers its DDL and COPY code share to reach other nodes.
 *
 * Only statements that can name a distributed or reference table are
 * looked at, and only once some table is distributed; everything else
 * (BEGIN, SET, ...) costs one switch.  Statements a peer sends us as part
 * of propagating DDL run with mycelium.enable_ddl_propagation off, so they
 * are applied here and not propagated again.
 *
 * IDENTIFICATION
 *	  src/commands/utility.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_extension.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"

#include "cluster/cluster.h"
#include "commands/commands.h"
#include "replication/vclock.h"

bool		mycelium_enable_ddl_propagation = true;

static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/*
 * MyceliumRunStandardUtility runs a statement (the user's, or a copy of it
 * that Mycelium adjusted) the way it would run without us: through the
 * previous hook or standard_ProcessUtility.
 */
void
MyceliumRunStandardUtility(MyceliumUtilityArgs *args, Node *stmt)
{
	PlannedStmt *pstmt = args->pstmt;

	if (stmt != NULL && stmt != pstmt->utilityStmt)
	{
		pstmt = copyObject(pstmt);
		pstmt->utilityStmt = stmt;
	}
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, args->queryString, args->readOnlyTree,
							args->context, args->params, args->queryEnv,
							args->dest, args->qc);
	else
		standard_ProcessUtility(pstmt, args->queryString, args->readOnlyTree,
								args->context, args->params, args->queryEnv,
								args->dest, args->qc);
}

/*
 * may_name_table says whether a statement of this type can act on a
 * distributed or reference table, i.e. whether the hook looks further.
 */
static bool
may_name_table(Node *stmt)
{
	switch (nodeTag(stmt))
	{
		case T_CopyStmt:
		case T_CreateStmt:
		case T_AlterTableStmt:
		case T_IndexStmt:
		case T_DropStmt:
		case T_TruncateStmt:
		case T_GrantStmt:
		case T_RenameStmt:
		case T_AlterObjectSchemaStmt:
		case T_CreateTrigStmt:
		case T_CreatePolicyStmt:
		case T_RuleStmt:
			return true;
		default:
			return false;
	}
}

/*
 * mycelium_ProcessUtility hands the statements that touch distributed or
 * reference tables to ddl.c / copy.c, which run the standard utility
 * themselves; all others run unchanged.
 */
static void
mycelium_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
						bool readOnlyTree, ProcessUtilityContext context,
						ParamListInfo params, QueryEnvironment *queryEnv,
						DestReceiver *dest, QueryCompletion *qc)
{
	MyceliumUtilityArgs args;
	Node	   *stmt = pstmt->utilityStmt;

	/* a prepared transaction's dot is stamped when it commits */
	if (IsA(stmt, TransactionStmt) &&
		((TransactionStmt *) stmt)->kind == TRANS_STMT_COMMIT_PREPARED &&
		IsNormalProcessingMode())
		MyceliumReplHlcStampCommitPrepared();
	if (may_name_table(stmt) && !creating_extension &&
		IsNormalProcessingMode() && IsTransactionState() &&
		MyceliumAnyDistTables())
	{
		args.pstmt = pstmt;
		args.queryString = queryString;
		args.readOnlyTree = readOnlyTree;
		args.context = context;
		args.params = params;
		args.queryEnv = queryEnv;
		args.dest = dest;
		args.qc = qc;
		if (IsA(stmt, CopyStmt))
		{
			if (mycelium_enable_ddl_propagation && MyceliumProcessCopy(&args))
				return;
		}
		else if (MyceliumProcessDdl(&args))
			return;
	}
	if (prev_ProcessUtility)
		prev_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
							queryEnv, dest, qc);
	else
		standard_ProcessUtility(pstmt, queryString, readOnlyTree, context, params,
								queryEnv, dest, qc);
}

/*
 * MyceliumConnectOtherNodes opens (in the current transaction, in
 * parallel) a connection to every other node of the mesh; *nodes_out gets
 * the node list, parallel to the array (NULL for the local node).
 */
MyceliumConnection **
MyceliumConnectOtherNodes(List **nodes_out)
{
	List	   *nodes;

	/* MyceliumLoadNodes reads the catalog as the extension's owner */
	MyceliumConnection **conns;

	nodes = MyceliumLoadNodes();
	*nodes_out = nodes;
	conns = MyceliumConnectNodes(nodes, MYCELIUM_CONN_XACT, false, false, NULL);
	/* DDL and COPY go with the simple protocol: begin on every node at once */
	MyceliumFlushBegins(conns, list_length(nodes));
	return conns;
}

/*
 * MyceliumRemotePreamble returns the commands that prefix DDL sent to a
 * peer: do not propagate it again there, and resolve the names the user's
 * text leaves unqualified (types, functions, operator classes) as they
 * resolve here.
 */
char *
MyceliumRemotePreamble(void)
{
	char	   *path = GetConfigOptionByName("search_path", NULL, false);

	return psprintf("SET LOCAL mycelium.enable_ddl_propagation = off;"
					"SELECT pg_catalog.set_config('search_path', %s, true);",
					quote_literal_cstr(path));
}

/*
 * MyceliumRunOnNodes sends sqls[i] (NULL: nothing) to conns[i], all at
 * once, waits for every node, and raises the first failure, relayed from
 * its node.  Every connection written on joins the distributed commit.
 */
void
MyceliumRunOnNodes(MyceliumConnection **conns, char **sqls, int n)
{
	MyceliumConnection **busy = palloc0(sizeof(MyceliumConnection *) * Max(n, 1));
	char	  **sent = palloc0(sizeof(char *) * Max(n, 1));
	PGresult  **results = palloc0(sizeof(PGresult *) * Max(n, 1));
	int			nbusy = 0;
	int			bad = -1;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (conns[i] == NULL || sqls[i] == NULL)
			continue;
		conns[i]->wrote = true;
		if (!MyceliumSendQuery(conns[i], sqls[i], 0, NULL))
			MyceliumReportConnError(ERROR, conns[i], "send a command");
		busy[nbusy] = conns[i];
		sent[nbusy++] = sqls[i];
	}
	if (nbusy == 0)
		return;
	MyceliumWaitResults(busy, nbusy, results, 0, true);
	for (i = 0; i < nbusy; i++)
	{
		ExecStatusType st = results[i] ? PQresultStatus(results[i]) : PGRES_FATAL_ERROR;

		if (bad < 0 && st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
			bad = i;
		else
			PQclear(results[i]);
	}
	if (bad >= 0)
		MyceliumReportResultError(ERROR, results[bad], busy[bad], sent[bad]);
}

/*
 * MyceliumInstallUtilityHook defines mycelium.enable_ddl_propagation and
 * installs the hook, after whatever was installed before.
 */
void
MyceliumInstallUtilityHook(void)
{
	DefineCustomBoolVariable("mycelium.enable_ddl_propagation",
							 "Applies DDL on distributed and reference tables to every shard and node.",
							 "Peers turn it off for the statements they receive; turning it off by hand lets shards diverge from their table.",
							 &mycelium_enable_ddl_propagation,
							 true, PGC_USERSET, GUC_NOT_IN_SAMPLE,
							 NULL, NULL, NULL);
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = mycelium_ProcessUtility;
}
