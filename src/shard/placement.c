/*-------------------------------------------------------------------------
 *
 * placement.c
 *	  The mesh side of the table policies: locking the mesh, running
 *	  commands and catalog writes on the nodes, creating a table's copy or
 *	  shell on a node, copying rows between nodes, and giving a joining
 *	  node the sharding metadata (add_node) or checking a leaving one
 *	  (remove_node).
 *
 * Every table policy is a metadata change (see cluster/metadata.c): it
 * locks the node catalog of every member in node_id order, and all its
 * writes, local and remote, commit together with two-phase commit at the
 * end of the caller's transaction.  Catalog rows name tables by regclass,
 * whose OIDs differ per node, so remote rows are written with the table's
 * qualified name cast to regclass on that node.
 *
 * IDENTIFICATION
 *	  src/shard/placement.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "shard/shard_internal.h"

/* rows per statement when copying rows between nodes */
#define COPY_BATCH_ROWS 1000

/*
 * ShardBeginMeshRole prepares opening the connections of a metadata change
 * on behalf of a table owner who is not a superuser: the connections are
 * opened as the extension's owner (until ShardEndMeshRole), because the
 * catalog writes on the other members need its rights, and a connection
 * runs as the role that opened it.  The work done over them as the caller
 * is wrapped with ShardRemoteAsCaller; shard tables made over them get
 * their table's owner explicitly (see table_ddl.c).  A superuser keeps its
 * own connections.
 *
 * The caller's transaction must not hold connections of another role
 * already (its own routed work): they would be other sessions of the same
 * transaction on the same nodes, and the locks this change takes there
 * could wait forever for theirs.
 */
void
ShardBeginMeshRole(ShardRole *save, const char *what)
{
	Oid			owner;
	bool		others = false;
	ListCell   *lc;

	GetUserIdAndSecContext(&save->userid, &save->sec_context);
	save->switched = false;
	if (superuser())
		return;
	owner = MyceliumExtensionOwner();
	foreach(lc, MyceliumXactConnections())
		if (((MyceliumConnection *) lfirst(lc))->roleid != owner)
			others = true;
	if (others)
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("cannot %s in a transaction that has already used other nodes", what),
				 errdetail("Only superusers may do this after other work on distributed tables in the same transaction."),
				 errhint("Run it in a transaction of its own.")));
	MyceliumBeginCatalogAccess(&save->userid, &save->sec_context);
	save->switched = true;
}

/*
 * ShardEndMeshRole restores the user ShardBeginMeshRole saved.
 */
void
ShardEndMeshRole(ShardRole *save)
{
	if (save->switched)
		MyceliumEndCatalogAccess(save->userid, save->sec_context);
}

/*
 * ShardRemoteAsCaller makes the statements sent on conn from now on run as
 * the current user (entering) or as the connection's own role again
 * (leaving), when the two differ (see ShardBeginMeshRole): the rows a
 * policy moves are written with the caller's rights, so that the table's
 * constraints and index expressions run as they would for a local write.
 */
void
ShardRemoteAsCaller(MyceliumConnection *conn, bool enter)
{
	if (conn == NULL || conn->roleid == GetUserId())
		return;
	if (enter)
		MyceliumExecCommand(conn, psprintf("SET LOCAL ROLE %s",
										   quote_identifier(GetUserNameFromId(GetUserId(), false))));
	else
		MyceliumExecCommand(conn, "RESET ROLE");
}

/*
 * ShardLockMesh connects to every member and locks the mesh (see
 * MyceliumLockMesh): every member must be reachable.  `what` names the
 * operation for errors (see ShardBeginMeshRole).
 */
ShardMesh *
ShardLockMesh(const char *what)
{
	ShardMesh  *mesh = palloc0(sizeof(ShardMesh));
	ShardRole	role;

	MyceliumEnsureLocalNode();
	ShardBeginMeshRole(&role, what);
	mesh->nodes = MyceliumLockMesh(NULL, &mesh->conns);
	ShardEndMeshRole(&role);
	mesh->remote = MyceliumUsableMembers(mesh->nodes, mesh->conns, &mesh->nremote);
	return mesh;
}

/*
 * ShardMeshConn returns the connection to a member (NULL for the local
 * node); an unknown node is an ERROR.
 */
MyceliumConnection *
ShardMeshConn(ShardMesh *mesh, const char *node_name)
{
	ListCell   *lc;
	int			i = 0;

	foreach(lc, mesh->nodes)
	{
		MyceliumNode *node = lfirst(lc);

		if (strcmp(node->node_name, node_name) == 0)
			return node->is_local ? NULL : mesh->conns[i];
		i++;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("node \"%s\" is not a member of the mesh", node_name),
			 errhint("SELECT * FROM mycelium.nodes lists the members.")));
	return NULL;				/* keep compiler quiet */
}

/*
 * ShardActiveNodes returns the members whose catalog status is active
 * (new shards go only there), in node_id order.
 */
List *
ShardActiveNodes(ShardMesh *mesh)
{
	List	   *active = NIL;
	ListCell   *lc;

	foreach(lc, mesh->nodes)
	{
		MyceliumNode *node = lfirst(lc);

		if (strcmp(node->status, "active") == 0)
			active = lappend(active, node);
	}
	if (active == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("the mesh has no active node to place shards on")));
	return active;
}

/*
 * ShardRunLocal runs one statement here through SPI, with text parameters
 * (NULL pointers are SQL NULLs), and makes its effects visible.
 */
void
ShardRunLocal(const char *sql, int nparams, const char *const *params)
{
	Oid		   *types = palloc(sizeof(Oid) * Max(nparams, 1));
	Datum	   *values = palloc(sizeof(Datum) * Max(nparams, 1));
	char	   *nulls = palloc(Max(nparams, 1) + 1);
	int			i;

	for (i = 0; i < nparams; i++)
	{
		types[i] = TEXTOID;
		values[i] = params[i] ? CStringGetTextDatum(params[i]) : (Datum) 0;
		nulls[i] = params[i] ? ' ' : 'n';
	}
	nulls[nparams] = '\0';
	SPI_connect();
	if (SPI_execute_with_args(sql, nparams, types, values, nulls, false, 0) < 0)
		elog(ERROR, "could not run \"%s\"", sql);
	SPI_finish();
	CommandCounterIncrement();
}

/*
 * ShardCatalogWriteLocal runs one write of Mycelium's catalog here, as the
 * extension's owner: a table's owner may change its table's metadata
 * without any right on the catalog (the policies check ownership first).
 */
void
ShardCatalogWriteLocal(const char *sql, int nparams, const char *const *params)
{
	Oid			save_userid;
	int			save_sec_context;

	MyceliumBeginCatalogAccess(&save_userid, &save_sec_context);
	ShardRunLocal(sql, nparams, params);
	MyceliumEndCatalogAccess(save_userid, save_sec_context);
}

/*
 * ShardRunLocalDdl runs one statement that creates or drops a shard table
 * here as the extension's owner, like the same statement on another node
 * (see ShardBeginMeshRole): a shard belongs to its table's owner (the
 * commands say so) but is created like an index of the table, without
 * the right to create tables in the schema.
 */
void
ShardRunLocalDdl(const char *sql)
{
	Oid			save_userid;
	int			save_sec_context;

	MyceliumBeginCatalogAccess(&save_userid, &save_sec_context);
	ShardRunLocal(sql, 0, NULL);
	MyceliumEndCatalogAccess(save_userid, save_sec_context);
}

/*
 * ShardRunOn runs a list of commands (C strings) on one member, locally
 * or in its remote transaction.
 */
void
ShardRunOn(ShardMesh *mesh, const char *node_name, List *commands)
{
	MyceliumConnection *conn = ShardMeshConn(mesh, node_name);
	ListCell   *lc;

	foreach(lc, commands)
	{
		if (conn == NULL)
			ShardRunLocalDdl(lfirst(lc));
		else
			MyceliumExecCommand(conn, lfirst(lc));
	}
	if (conn != NULL)
		conn->wrote = true;
}

/*
 * ShardCatalogWrite runs one catalog write here and on every other member
 * (text parameters; cast them in the SQL).
 */
void
ShardCatalogWrite(ShardMesh *mesh, const char *sql, int nparams, const char *const *params)
{
	ShardCatalogWriteLocal(sql, nparams, params);
	MyceliumWriteOnMembers(mesh->remote, mesh->nremote, sql, nparams, params);
}

/*
 * ShardInsertShardRow records a shard in every member's catalog.
 */
void
ShardInsertShardRow(ShardMesh *mesh, const char *qualname, int64 shard_id,
					const char *shard_name, const char *min_value,
					const char *max_value, const char *node_name)
{
	char		idbuf[32];
	const char *params[6] = {idbuf, qualname, shard_name, min_value, max_value, node_name};

	snprintf(idbuf, sizeof(idbuf), INT64_FORMAT, shard_id);
	ShardCatalogWrite(mesh, "INSERT INTO mycelium.shard (shard_id, table_name, shard_name, "
					  "min_value, max_value, node_name) VALUES ($1::pg_catalog.int8, "
					  "$2::pg_catalog.regclass, $3, $4, $5, $6)", 6, params);
}

/*
 * latest_int8 runs a one-value query with the latest snapshot and returns
 * its result as int64.
 */
static int64
latest_int8(const char *sql)
{
	bool		isnull;
	int64		result;

	SPI_connect();
	MyceliumSpiExecLatest(sql, 0, NULL, NULL, true);
	result = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										 &isnull));
	SPI_finish();
	return result;
}

/*
 * ShardNextShardId returns the next free shard_id (call under the mesh
 * lock: every member's catalog is the same, so ids are unique mesh-wide).
 */
int64
ShardNextShardId(void)
{
	return latest_int8("SELECT GREATEST(pg_catalog.max(shard_id) + 1, "
					   CppAsString2(MYCELIUM_FIRST_SHARD_ID) ")::pg_catalog.int8 "
					   "FROM mycelium.shard");
}

/*
 * ShardNextColocationId returns the next free colocation group id (under
 * the mesh lock).
 */
int
ShardNextColocationId(void)
{
	return (int) latest_int8("SELECT (COALESCE(pg_catalog.max(colocation_id), 0) + 1)"
							 "::pg_catalog.int8 FROM mycelium.dist_table");
}

/*
 * ShardQualifiedName returns the quoted qualified name of a table.
 */
char *
ShardQualifiedName(Oid relid)
{
	char	   *relname = get_rel_name(relid);

	if (relname == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), relname);
}

#define SHAPE_SQL "SELECT pg_catalog.string_agg(column_name || ' ' || column_type, ', ' " \
	"ORDER BY column_name), pg_catalog.min(relkind) FROM mycelium.replication_table_shape($1)"

/*
 * local_shape returns the columns of a table here as SHAPE_SQL prints
 * them (the same text on every node for the same definition).
 */
static char *
local_shape(const char *qualname)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(qualname)};
	char	   *shape;

	SPI_connect();
	MyceliumSpiExecLatest(SHAPE_SQL, 1, types, values, true);
	shape = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	shape = shape ? MemoryContextStrdup(caller, shape) : NULL;
	SPI_finish();
	return shape;
}

/*
 * check_reusable raises unless the table of that name on the node behind
 * conn (which exists) has the same columns as here and no rows; it then
 * takes an ACCESS EXCLUSIVE lock on it there.
 */
static void
check_reusable(MyceliumConnection *conn, const char *qualname, const char *display,
			   PGresult *res)
{
	char	   *here = local_shape(qualname);
	char	   *there = pstrdup(PQgetvalue(res, 0, 0));
	bool		is_table = strcmp(PQgetvalue(res, 0, 1), "r") == 0;
	PGresult   *rows;
	bool		has_rows;

	PQclear(res);
	if (!is_table || here == NULL || strcmp(here, there) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("a different relation named \"%s\" already exists on node \"%s\"",
						display, conn->node_name),
				 is_table ? errdetail("Its columns there are (%s); here they are (%s).",
									  there, here ? here : "") :
				 errdetail("It is not an ordinary table there."),
				 errhint("Drop or rename it on that node, then retry.")));
	MyceliumExecCommand(conn, psprintf("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", qualname));
	rows = MyceliumExec(conn, psprintf("SELECT EXISTS (SELECT 1 FROM ONLY %s)", qualname),
						0, NULL);
	has_rows = strcmp(PQgetvalue(rows, 0, 0), "t") == 0;
	PQclear(rows);
	if (has_rows)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("table \"%s\" already exists on node \"%s\" and is not empty",
						display, conn->node_name),
				 errhint("Empty or drop it on that node, then retry.")));
}

/*
 * ShardEnsureTableOn gives the node behind conn table relid under its own
 * name: created from this node's definition, or, if a table of that name
 * is there already, reused when it has the same columns and no rows
 * (anything else is an ERROR).  With copy_rows, this node's rows are then
 * copied there (reference tables).
 */
void
ShardEnsureTableOn(MyceliumConnection *conn, Oid relid, bool copy_rows)
{
	char	   *qualname = ShardQualifiedName(relid);
	char	   *display = ShardDisplayName(relid);
	const char *param = qualname;
	PGresult   *res = MyceliumExec(conn, SHAPE_SQL, 1, &param);

	if (!PQgetisnull(res, 0, 0))
		check_reusable(conn, qualname, display, res);
	else
	{
		ListCell   *lc;

		PQclear(res);
		foreach(lc, MyceliumTableCreateCommands(relid))
			MyceliumExecCommand(conn, lfirst(lc));
	}
	conn->wrote = true;
	if (copy_rows)
	{
		ShardRemoteAsCaller(conn, true);
		MyceliumCopyRows(psprintf("SELECT pg_catalog.row_to_json(r.*)::pg_catalog.text "
								  "FROM ONLY %s r", qualname),
						 qualname, MyceliumInsertColumnList(relid), &conn, 1);
		ShardRemoteAsCaller(conn, false);
	}
}

/*
 * send_batch inserts one JSON array of rows into target on every
 * connection at once.
 */
static void
send_batch(const char *insert_sql, StringInfo json, MyceliumConnection **conns, int n)
{
	const char *param = json->data;
	int			i;

	appendStringInfoChar(json, ']');
	MyceliumExecParallel(conns, n, insert_sql, 1, &param);
	for (i = 0; i < n; i++)
		conns[i]->wrote = true;
}

/*
 * MyceliumCopyRows runs source_sql here (a query returning one text column,
 * each a row as JSON, e.g. row_to_json(r.*)::text) and inserts the rows
 * into target_qualname (the columns cols, as MyceliumInsertColumnList
 * prints them) on every connection, COPY_BATCH_ROWS rows per statement, to
 * all of them at once.  Rows are read with the latest snapshot: callers
 * hold a lock that keeps writers out.
 */
void
MyceliumCopyRows(const char *source_sql, const char *target_qualname, const char *cols,
				 MyceliumConnection **conns, int n)
{
	MemoryContext batch_cxt = AllocSetContextCreate(CurrentMemoryContext,
													"mycelium row copy batch",
													ALLOCSET_DEFAULT_SIZES);
	char	   *insert_sql = psprintf("INSERT INTO %s (%s) SELECT %s FROM "
									  "pg_catalog.json_populate_recordset(NULL::%s, $1::pg_catalog.json)",
									  target_qualname, cols, cols, target_qualname);
	SPIPlanPtr	plan;
	Portal		portal;

	if (n == 0)
		return;
	SPI_connect();
	plan = SPI_prepare(source_sql, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\"", source_sql);
	PushActiveSnapshot(GetLatestSnapshot());
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	PopActiveSnapshot();
	for (;;)
	{
		MemoryContext old;
		StringInfoData json;
		uint64		i;

		SPI_cursor_fetch(portal, true, COPY_BATCH_ROWS);
		if (SPI_processed == 0)
			break;
		old = MemoryContextSwitchTo(batch_cxt);
		initStringInfo(&json);
		appendStringInfoChar(&json, '[');
		for (i = 0; i < SPI_processed; i++)
		{
			if (i > 0)
				appendStringInfoChar(&json, ',');
			appendStringInfoString(&json, SPI_getvalue(SPI_tuptable->vals[i],
													   SPI_tuptable->tupdesc, 1));
		}
		send_batch(insert_sql, &json, conns, n);
		MemoryContextSwitchTo(old);
		SPI_freetuptable(SPI_tuptable);
		MemoryContextReset(batch_cxt);
	}
	SPI_cursor_close(portal);
	SPI_finish();
	MemoryContextDelete(batch_cxt);
}

/*
 * ShardPullRows copies every row of source_qualname on the node behind
 * conn (in its remote transaction, through a cursor) into the local table
 * target_qualname, COPY_BATCH_ROWS rows at a time.
 */
void
ShardPullRows(MyceliumConnection *conn, const char *source_qualname,
			  const char *target_qualname, const char *cols)
{
	char	   *insert_sql = psprintf("INSERT INTO %s (%s) SELECT %s FROM "
									  "pg_catalog.json_populate_recordset(NULL::%s, $1::pg_catalog.json)",
									  target_qualname, cols, cols, target_qualname);
	char	   *fetch_sql = psprintf("FETCH %d FROM mycelium_pull", COPY_BATCH_ROWS);

	MyceliumExecCommand(conn, psprintf("DECLARE mycelium_pull NO SCROLL CURSOR FOR "
									   "SELECT pg_catalog.row_to_json(r.*)::pg_catalog.text "
									   "FROM ONLY %s r", source_qualname));
	for (;;)
	{
		PGresult   *res = MyceliumExec(conn, fetch_sql, 0, NULL);
		int			ntuples = PQntuples(res);
		StringInfoData json;
		const char *param;
		int			i;

		if (ntuples == 0)
		{
			PQclear(res);
			break;
		}
		initStringInfo(&json);
		appendStringInfoChar(&json, '[');
		for (i = 0; i < ntuples; i++)
		{
			if (i > 0)
				appendStringInfoChar(&json, ',');
			appendStringInfoString(&json, PQgetvalue(res, i, 0));
		}
		appendStringInfoChar(&json, ']');
		PQclear(res);
		param = json.data;
		ShardRunLocal(insert_sql, 1, &param);
		pfree(json.data);
	}
	MyceliumExecCommand(conn, "CLOSE mycelium_pull");
}
