/*-------------------------------------------------------------------------
 *
 * metadata.c
 *	  Mesh-wide metadata changes: connecting to and locking every member,
 *	  and copying the metadata tables to a node.
 *
 * Every metadata change runs in one distributed transaction: it connects to
 * all members (in parallel), locks mycelium.node on each of them in
 * node_id order, re-reads the membership and checks that it did not change
 * meanwhile, then writes on every member; txn/twophase.c commits all of it
 * with two-phase commit.  Because every change locks in the same global
 * order, two changes started at once on two nodes serialize instead of
 * deadlocking, and the second sees the first's result.
 *
 * IDENTIFICATION
 *	  src/cluster/metadata.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"

#include "cluster/cluster.h"

/*
 * The tables that make up mesh metadata, in dependency order (a table may
 * reference those before it).  Later subsystems append theirs.
 */
static const char *const metadata_tables[] = {
	"node",
};

#define MESH_LOCK_SQL "LOCK TABLE mycelium.node IN SHARE ROW EXCLUSIVE MODE"

/*
 * MyceliumConnectMembers opens, in parallel, transaction connections to
 * every remote node of the list; the array has one slot per node, NULL for
 * the local one.  With missing_ok, unreachable nodes get stand-ins
 * (MyceliumConnectionUsable false) instead of an ERROR.
 */
MyceliumConnection **
MyceliumConnectMembers(List *nodes, bool missing_ok)
{
	int			n = list_length(nodes);
	MyceliumConnection **conns = palloc0(sizeof(MyceliumConnection *) * Max(n, 1));
	MyceliumConnection **remote = palloc0(sizeof(MyceliumConnection *) * Max(n, 1));
	const char **names = palloc0(sizeof(char *) * Max(n, 1));
	const char **hosts = palloc0(sizeof(char *) * Max(n, 1));
	int		   *ports = palloc0(sizeof(int) * Max(n, 1));
	int			nremote = 0;
	int			i;
	ListCell   *lc;

	foreach(lc, nodes)
	{
		MyceliumNode *node = lfirst(lc);

		if (node->is_local)
			continue;
		names[nremote] = node->node_name;
		hosts[nremote] = node->host;
		ports[nremote] = node->port;
		nremote++;
	}
	if (nremote > 0)
		MyceliumGetConnections(remote, nremote, names, hosts, ports,
							   MYCELIUM_CONN_XACT, missing_ok);
	i = 0;
	nremote = 0;
	foreach(lc, nodes)
	{
		MyceliumNode *node = lfirst(lc);

		conns[i++] = node->is_local ? NULL : remote[nremote++];
	}
	return conns;
}

/*
 * MyceliumLockMembers locks the node catalog of every node in the list, in
 * node_id order (the list's order), locally or through conns[i].  Nodes
 * whose connection is not usable are skipped.
 */
void
MyceliumLockMembers(List *nodes, MyceliumConnection **conns)
{
	ListCell   *lc;
	int			i = 0;

	foreach(lc, nodes)
	{
		MyceliumNode *node = lfirst(lc);

		if (node->is_local)
			LockRelationOid(MyceliumCatalogRelid("node"), ShareRowExclusiveLock);
		else if (MyceliumConnectionUsable(conns[i]))
			MyceliumExecCommand(conns[i], MESH_LOCK_SQL);
		i++;
	}
}

/*
 * MyceliumRecheckMembers re-reads the membership once the locks are held
 * and fails with 40001 if it is not the one that was locked (another change
 * committed in between); returns the fresh list.
 */
List *
MyceliumRecheckMembers(List *locked)
{
	List	   *fresh = MyceliumLoadNodes();
	ListCell   *a,
			   *b;
	bool		same = list_length(fresh) == list_length(locked);

	if (same)
	{
		forboth(a, fresh, b, locked)
		{
			MyceliumNode *x = lfirst(a);
			MyceliumNode *y = lfirst(b);

			if (x->node_id != y->node_id || strcmp(x->node_name, y->node_name) != 0)
				same = false;
		}
	}
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("mesh membership changed while this metadata change waited for its locks"),
				 errhint("Retry the command.")));
	return fresh;
}

/*
 * local_table_json returns the rows of a metadata table as a JSON array.
 */
static char *
local_table_json(const char *table)
{
	MemoryContext caller = CurrentMemoryContext;
	char	   *sql = psprintf("SELECT coalesce(json_agg(t), '[]')::text FROM mycelium.%s t",
						   quote_identifier(table));
	char	   *result;

	SPI_connect();
	if (SPI_execute(sql, true, 0) != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not read metadata table \"%s\"", table);
	result = MemoryContextStrdup(caller, SPI_getvalue(SPI_tuptable->vals[0],
													 SPI_tuptable->tupdesc, 1));
	SPI_finish();
	return result;
}

/*
 * MyceliumCopyMetadataTo replaces every metadata table on the node behind
 * conn with this node's rows (within the remote transaction).
 */
void
MyceliumCopyMetadataTo(MyceliumConnection *conn)
{
	int			i;
	int			n = lengthof(metadata_tables);

	for (i = n - 1; i >= 0; i--)
		MyceliumExecCommand(conn, psprintf("DELETE FROM mycelium.%s",
										   quote_identifier(metadata_tables[i])));
	for (i = 0; i < n; i++)
	{
		const char *json = local_table_json(metadata_tables[i]);
		const char *q = quote_identifier(metadata_tables[i]);

		PQclear(MyceliumExec(conn,
							 psprintf("INSERT INTO mycelium.%s SELECT * FROM "
									  "json_populate_recordset(NULL::mycelium.%s, $1::json)", q, q),
							 1, &json));
	}
	conn->wrote = true;
}

/*
 * MyceliumResetMetadataOf leaves the node behind conn with no mesh: every
 * metadata table emptied except its own node row.
 */
void
MyceliumResetMetadataOf(MyceliumConnection *conn, const char *node_name)
{
	int			i;
	const char *param = node_name;

	for (i = lengthof(metadata_tables) - 1; i >= 1; i--)
		MyceliumExecCommand(conn, psprintf("DELETE FROM mycelium.%s",
										   quote_identifier(metadata_tables[i])));
	PQclear(MyceliumExec(conn, "DELETE FROM mycelium.node WHERE node_name <> $1", 1, &param));
	conn->wrote = true;
}
