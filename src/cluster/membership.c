/*-------------------------------------------------------------------------
 *
 * membership.c
 *	  mycelium.add_node and mycelium.remove_node.
 *
 * Both are metadata changes (see metadata.c): all members are connected and
 * locked in node_id order, the membership is re-checked, and every write
 * commits together with two-phase commit at the end of the caller's
 * transaction.  Any member that cannot be reached makes the change fail
 * before anything is written, so nothing changes anywhere.
 *
 * IDENTIFICATION
 *	  src/cluster/membership.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"

#include "cluster/cluster.h"
#include "config/config.h"
#include "replication/replication.h"
#include "shard/shard.h"
#include "shmem/shmem.h"
#include "txn/txn.h"

PG_FUNCTION_INFO_V1(mycelium_add_node);
PG_FUNCTION_INFO_V1(mycelium_remove_node);

/*
 * probe_new_node checks, inside its remote transaction, that the server at
 * conn runs Mycelium in this database under the expected node name and can
 * take part in two-phase commit.
 */
static void
probe_new_node(MyceliumConnection *conn, const char *node_name)
{
	PGresult   *res;
	const char *remote_name;

	res = MyceliumExec(conn,
					   "SELECT current_setting('mycelium.node_name', true), "
					   "(SELECT extversion FROM pg_extension WHERE extname = 'mycelium'), "
					   "current_setting('max_prepared_transactions')::int, "
					   "current_database()", 0, NULL);
	if (PQgetisnull(res, 0, 1))
	{
		char	   *db = pstrdup(PQgetvalue(res, 0, 3));

		PQclear(res);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("node \"%s\" at %s:%d does not have the mycelium extension",
						node_name, conn->host, conn->port),
				 errhint("Run CREATE EXTENSION mycelium in database \"%s\" on that node first.", db)));
	}
	remote_name = PQgetisnull(res, 0, 0) ? "" : PQgetvalue(res, 0, 0);
	if (strcmp(remote_name, node_name) != 0)
	{
		char	   *got = pstrdup(remote_name);

		PQclear(res);
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("the server at %s:%d is not node \"%s\"", conn->host, conn->port, node_name),
				 errdetail("Its mycelium.node_name is \"%s\".", got),
				 errhint("Pass the name configured on that server, or set mycelium.node_name there and restart it.")));
	}
	if (atoi(PQgetvalue(res, 0, 2)) == 0)
	{
		PQclear(res);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("node \"%s\" has max_prepared_transactions = 0", node_name),
				 errhint("Set max_prepared_transactions to at least max_connections on that node and restart it.")));
	}
	PQclear(res);
}

/*
 * check_new_node_alone refuses a node whose catalog lists other nodes (it
 * belongs to another mesh).  Run after the new node's catalog is locked,
 * so two meshes cannot both take the same server.
 */
static void
check_new_node_alone(MyceliumConnection *conn, const char *node_name)
{
	PGresult   *res;

	res = MyceliumExec(conn, "SELECT string_agg(node_name, ', ' ORDER BY node_id) FROM mycelium.node "
					   "WHERE node_name <> current_setting('mycelium.node_name', true)", 0, NULL);
	if (!PQgetisnull(res, 0, 0))
	{
		char	   *others = pstrdup(PQgetvalue(res, 0, 0));

		PQclear(res);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("node \"%s\" already belongs to a mesh", node_name),
				 errdetail("It knows the nodes %s.", others),
				 errhint("Remove it from that mesh first.")));
	}
	PQclear(res);
}

/*
 * check_not_member refuses a name or address the mesh already has.
 */
static void
check_not_member(List *nodes, const char *node_name, const char *host, int port)
{
	ListCell   *lc;

	foreach(lc, nodes)
	{
		MyceliumNode *n = lfirst(lc);

		if (strcmp(n->node_name, node_name) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("node \"%s\" is already a member of the mesh", node_name)));
		if (strcmp(n->host, host) == 0 && n->port == port)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("a node at %s:%d is already a member of the mesh", host, port),
					 errdetail("It is named \"%s\".", n->node_name)));
	}
}

/*
 * insert_local_node adds the new node's row to the local catalog.
 */
static void
insert_local_node(int node_id, const char *node_name, const char *host, int port)
{
	Oid			types[4] = {INT4OID, TEXTOID, TEXTOID, INT4OID};
	Datum		vals[4];

	vals[0] = Int32GetDatum(node_id);
	vals[1] = CStringGetTextDatum(node_name);
	vals[2] = CStringGetTextDatum(host);
	vals[3] = Int32GetDatum(port);
	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO mycelium.node (node_id, node_name, host, port) "
							  "VALUES ($1, $2, $3, $4)", 4, types, vals, NULL,
							  false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into mycelium.node");
	SPI_finish();
	CommandCounterIncrement();
}

/*
 * validate_address checks add_node's host and port arguments.
 */
static void
validate_address(const char *host, int port)
{
	if (host[0] == '\0' || strlen(host) > 255 || strpbrk(host, " \t\n'\\") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid host \"%s\"", host),
				 errdetail("A host is a non-empty name or address without white space, quotes or backslashes.")));
	if (port < 1 || port > 65535)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid port %d", port),
				 errdetail("Ports are between 1 and 65535.")));
}

/*
 * mycelium.add_node(node_name text, host text, port int) returns int
 *
 * Adds the node to the mesh and returns its node_id: the node must run
 * Mycelium under that name and belong to no mesh; it receives all metadata
 * and every member records it, in one two-phase transaction.
 */
Datum
mycelium_add_node(PG_FUNCTION_ARGS)
{
	char	   *node_name;
	char	   *host;
	int			port = PG_GETARG_INT32(2);
	List	   *nodes;
	MyceliumConnection **conns;
	MyceliumConnection *newconn;
	MyceliumConnection **remote;
	int			nremote;
	int			new_id = 1;
	ListCell   *lc;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("node name, host and port must not be null")));
	node_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	host = text_to_cstring(PG_GETARG_TEXT_PP(1));
	MyceliumValidateNodeName(node_name);
	validate_address(host, port);
	MyceliumEnsureLocalNode();

	nodes = MyceliumLoadNodes();
	check_not_member(nodes, node_name, host, port);

	/* reach the new node, then every member: an unreachable one means nothing changes */
	newconn = MyceliumGetConnection(node_name, host, port, MYCELIUM_CONN_XACT);
	probe_new_node(newconn, node_name);
	MyceliumAddOutsideParticipant(node_name, host, port);
	nodes = MyceliumLockMesh(NULL, &conns);
	MyceliumExecCommand(newconn, "LOCK TABLE mycelium.node IN SHARE ROW EXCLUSIVE MODE");
	check_not_member(nodes, node_name, host, port);
	check_new_node_alone(newconn, node_name);
	MyceliumShardCheckNodeJoinable(newconn, node_name);
	foreach(lc, nodes)
		new_id = Max(new_id, ((MyceliumNode *) lfirst(lc))->node_id + 1);

	insert_local_node(new_id, node_name, host, port);
	remote = MyceliumUsableMembers(nodes, conns, &nremote);
	if (nremote > 0)
	{
		char		idbuf[16],
					portbuf[16];
		const char *params[4] = {idbuf, node_name, host, portbuf};

		snprintf(idbuf, sizeof(idbuf), "%d", new_id);
		snprintf(portbuf, sizeof(portbuf), "%d", port);
		MyceliumWriteOnMembers(remote, nremote,
							   "INSERT INTO mycelium.node (node_id, node_name, host, port) "
							   "VALUES ($1::int, $2, $3, $4::int)", 4, params);
	}
	MyceliumCopyMetadataTo(newconn);
	MyceliumReplCopyTablesTo(newconn);
	MyceliumShardCopyMetadataTo(newconn);
	MyceliumPeerForget(node_name);

	PG_RETURN_INT32(new_id);
}

/*
 * mycelium.remove_node(node_name text) returns void
 *
 * Removes a node from every member's metadata.  The node itself, if it can
 * be reached, is reset to a mesh of one; if it cannot (the usual case for a
 * dead node) it is removed anyway.  Every other member must be reachable.
 */
Datum
mycelium_remove_node(PG_FUNCTION_ARGS)
{
	char	   *node_name;
	List	   *nodes;
	MyceliumNode *target;
	MyceliumConnection **conns;
	MyceliumConnection *tconn;
	MyceliumConnection **remote;
	int			nremote;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("node name must not be null")));
	node_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	MyceliumEnsureLocalNode();
	nodes = MyceliumLoadNodes();
	target = MyceliumFindNode(nodes, node_name);
	if (target == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("node \"%s\" is not a member of the mesh", node_name),
				 errhint("SELECT * FROM mycelium.nodes lists the members.")));
	if (target->is_local)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot remove the local node \"%s\"", node_name),
				 errhint("Run mycelium.remove_node on another member of the mesh.")));
	MyceliumShardCheckNodeRemovable(node_name);

	{
		const char *tname = target->node_name;
		const char *thost = target->host;
		int			tport = target->port;

		MyceliumGetConnections(&tconn, 1, &tname, &thost, &tport, MYCELIUM_CONN_XACT, true);
	}
	if (!MyceliumConnectionUsable(tconn))
		ereport(WARNING,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("node \"%s\" could not be reached; it is removed from the other members only", node_name),
				 errdetail_internal("%s", tconn->connect_error ? tconn->connect_error : "")));
	nodes = MyceliumLockMesh(node_name, &conns);
	if (MyceliumConnectionUsable(tconn))
		MyceliumExecCommand(tconn, "LOCK TABLE mycelium.node IN SHARE ROW EXCLUSIVE MODE");
	if (MyceliumFindNode(nodes, node_name) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("node \"%s\" is not a member of the mesh", node_name),
				 errdetail("Another session removed it meanwhile.")));
	MyceliumShardCheckNodeRemovable(node_name);

	SPI_connect();
	{
		Oid			types[1] = {TEXTOID};
		Datum		vals[1] = {CStringGetTextDatum(node_name)};

		if (SPI_execute_with_args("DELETE FROM mycelium.node WHERE node_name = $1",
								  1, types, vals, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not delete from mycelium.node");
	}
	SPI_finish();

	remote = MyceliumUsableMembers(nodes, conns, &nremote);
	if (nremote > 0)
	{
		const char *params[1] = {node_name};

		MyceliumWriteOnMembers(remote, nremote, "DELETE FROM mycelium.node WHERE node_name = $1",
							   1, params);
	}
	if (MyceliumConnectionUsable(tconn))
	{
		MyceliumAddOutsideParticipant(node_name, target->host, target->port);
		MyceliumResetMetadataOf(tconn, node_name);
		MyceliumShardResetMetadataOf(tconn);
	}
	MyceliumPeerForget(node_name);
	PG_RETURN_VOID();
}
