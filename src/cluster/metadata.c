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
#define MESH_LOCK_ROUNDS 5

/*
 * MyceliumConnectNodes opens, in parallel, connections (in the given mode)
 * to the nodes of a list, and returns an array parallel to it.  The local
 * node gets NULL unless include_local (a loopback connection), and so does
 * node i when skip && skip[i].  With missing_ok, unreachable nodes get
 * stand-ins (MyceliumConnectionUsable false, connect_error set) instead of
 * an ERROR.  Every caller that talks to a set of nodes goes through here.
 */
MyceliumConnection **
MyceliumConnectNodes(List *nodes, MyceliumConnMode mode, bool missing_ok,
					 bool include_local, const bool *skip)
{
	int			n = list_length(nodes);
	MyceliumConnection **conns = palloc0(sizeof(MyceliumConnection *) * Max(n, 1));
	MyceliumConnection **wanted = palloc0(sizeof(MyceliumConnection *) * Max(n, 1));
	const char **names = palloc0(sizeof(char *) * Max(n, 1));
	const char **hosts = palloc0(sizeof(char *) * Max(n, 1));
	int		   *ports = palloc0(sizeof(int) * Max(n, 1));
	bool	   *take = palloc0(sizeof(bool) * Max(n, 1));
	int			nwanted = 0;
	int			i = 0;
	ListCell   *lc;

	foreach(lc, nodes)
	{
		MyceliumNode *node = lfirst(lc);

		take[i] = (include_local || !node->is_local) && !(skip && skip[i]);
		if (take[i])
		{
			names[nwanted] = node->node_name;
			hosts[nwanted] = node->host;
			ports[nwanted] = node->port;
			nwanted++;
		}
		i++;
	}
	if (nwanted > 0)
		MyceliumGetConnections(wanted, nwanted, names, hosts, ports, mode, missing_ok);
	nwanted = 0;
	for (i = 0; i < n; i++)
		conns[i] = take[i] ? wanted[nwanted++] : NULL;
	return conns;
}

/*
 * MyceliumUsableMembers compacts the usable connections of a
 * MyceliumLockMesh array (NULL for the local node) into a new array; *n
 * gets their number.
 */
MyceliumConnection **
MyceliumUsableMembers(List *nodes, MyceliumConnection **conns, int *n)
{
	MyceliumConnection **out = palloc0(sizeof(MyceliumConnection *) * Max(list_length(nodes), 1));
	int			i;

	*n = 0;
	for (i = 0; i < list_length(nodes); i++)
		if (conns[i] && MyceliumConnectionUsable(conns[i]))
			out[(*n)++] = conns[i];
	return out;
}

/*
 * MyceliumWriteOnMembers runs one metadata write on every connection at
 * once and marks them written, so the write joins the distributed commit.
 */
void
MyceliumWriteOnMembers(MyceliumConnection **conns, int n, const char *sql,
					   int nparams, const char *const *params)
{
	int			i;

	if (n == 0)
		return;
	MyceliumExecParallel(conns, n, sql, nparams, params);
	for (i = 0; i < n; i++)
		conns[i]->wrote = true;
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
 * node_in_list says whether a node of that name is in the list.
 */
static bool
node_in_list(List *nodes, const char *node_name)
{
	return MyceliumFindNode(nodes, node_name) != NULL;
}

/*
 * MyceliumLockMesh connects to every member except skip_node (in parallel,
 * in the current transaction) and locks their node catalogs in node_id
 * order.  If the membership changed while it waited (another change
 * committed first), it locks the members it had not seen too and looks
 * again, a few times, then gives up with 40001.  Returns the membership as
 * it is under the locks; *conns_out gets a parallel array of connections
 * (NULL for the local node and for skip_node).
 */
List *
MyceliumLockMesh(const char *skip_node, MyceliumConnection ***conns_out)
{
	List	   *locked = NIL;
	List	   *nodes = MyceliumLoadNodes();
	int			round;

	for (round = 0; round < MESH_LOCK_ROUNDS; round++)
	{
		List	   *to_lock = NIL;
		List	   *fresh;
		ListCell   *lc;
		bool		complete = true;

		foreach(lc, nodes)
		{
			MyceliumNode *node = lfirst(lc);

			if (!node_in_list(locked, node->node_name) &&
				(skip_node == NULL || strcmp(node->node_name, skip_node) != 0))
				to_lock = lappend(to_lock, node);
		}
		MyceliumLockMembers(to_lock, MyceliumConnectNodes(to_lock, MYCELIUM_CONN_XACT, false, false, NULL));
		locked = list_concat(locked, to_lock);

		fresh = MyceliumLoadNodes();
		foreach(lc, fresh)
		{
			MyceliumNode *node = lfirst(lc);

			if (!node_in_list(locked, node->node_name) &&
				(skip_node == NULL || strcmp(node->node_name, skip_node) != 0))
				complete = false;
		}
		if (complete)
		{
			List	   *reachable = NIL;
			MyceliumConnection **sub;
			MyceliumConnection **conns = palloc0(sizeof(MyceliumConnection *) * Max(list_length(fresh), 1));
			int			i = 0,
						k = 0;

			foreach(lc, fresh)
				if (skip_node == NULL || strcmp(((MyceliumNode *) lfirst(lc))->node_name, skip_node) != 0)
					reachable = lappend(reachable, lfirst(lc));
			/* already connected: this only collects the transaction's connections */
			sub = MyceliumConnectNodes(reachable, MYCELIUM_CONN_XACT, false, false, NULL);
			foreach(lc, fresh)
			{
				if (skip_node == NULL || strcmp(((MyceliumNode *) lfirst(lc))->node_name, skip_node) != 0)
					conns[i] = sub[k++];
				i++;
			}
			*conns_out = conns;
			return fresh;
		}
		nodes = fresh;
	}
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("mesh membership kept changing while this metadata change waited for its locks"),
			 errhint("Retry the command.")));
	return NIL;					/* keep compiler quiet */
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
	MyceliumSpiExecLatest(sql, 0, NULL, NULL, true);
	if (SPI_processed != 1)
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
	/* a node that leaves stops capturing changes for the mesh */
	MyceliumExecCommand(conn, "DELETE FROM mycelium.replicated_table");
	conn->wrote = true;
}
