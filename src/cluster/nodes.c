/*-------------------------------------------------------------------------
 *
 * nodes.c
 *	  Reading the node catalog (mycelium.node) and the local node's
 *	  identity; the health part of the mycelium.nodes view.
 *
 * Metadata is read with the latest snapshot, not the transaction's: a
 * membership change takes locks first and must then see every change that
 * committed before it got them, whatever the isolation level.
 *
 * IDENTIFICATION
 *	  src/cluster/nodes.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/fmgroids.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_extension.h"
#include "catalog/indexing.h"
#include "access/table.h"
#include "access/genam.h"
#include <ctype.h>

#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/postmaster.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"

#include "cluster/cluster.h"
#include "config/config.h"
#include "shmem/shmem.h"

PG_FUNCTION_INFO_V1(mycelium_node_status);
PG_FUNCTION_INFO_V1(mycelium_node_catalog_changed);

/*
 * Per-backend cache of the node catalog, for the hot paths (fan-out, and
 * routing later).  A statement trigger on mycelium.node sends a relcache
 * invalidation for it, which every backend receives when the change
 * commits (on this node or, through 2PC, on any other), and which empties
 * this cache.
 */
static List *node_cache = NIL;	/* MyceliumNode *, in node_cache_cxt */
static bool node_cache_valid = false;
static MemoryContext node_cache_cxt = NULL;
static Oid	node_cache_relid = InvalidOid;
static bool node_callback_registered = false;

/*
 * MyceliumCatalogRelid returns the OID of a table in schema mycelium.
 */
Oid
MyceliumCatalogRelid(const char *relname)
{
	Oid			nsp = get_namespace_oid("mycelium", false);
	Oid			relid = get_relname_relid(relname, nsp);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("mycelium catalog table \"%s\" does not exist", relname),
				 errhint("Is the mycelium extension installed in this database?")));
	return relid;
}

/*
 * MyceliumValidateNodeName raises 22023 unless the name is a valid node name
 * (the rules of mycelium.node_name).
 */
void
MyceliumValidateNodeName(const char *node_name)
{
	const char *p;

	if (node_name[0] == '\0' || strlen(node_name) > 63)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid node name \"%s\"", node_name),
				 errdetail("Node names are 1 to 63 characters long.")));
	for (p = node_name; *p; p++)
		if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid node name \"%s\"", node_name),
					 errdetail("Node names may contain only ASCII letters, digits, \"_\" and \"-\".")));
}

/*
 * MyceliumLoadNodes returns every node of the catalog, ordered by node_id,
 * as a List of palloc'd MyceliumNode in the caller's memory context, read
 * with the latest snapshot (what a metadata change must see).
 */
/*
 * MyceliumExtensionOwner returns the role that owns the mycelium extension.
 */
Oid
MyceliumExtensionOwner(void)
{
	Relation	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			owner = BOOTSTRAP_SUPERUSERID;

	ScanKeyInit(&key, Anum_pg_extension_extname, BTEqualStrategyNumber,
				F_NAMEEQ, CStringGetDatum("mycelium"));
	scan = systable_beginscan(rel, ExtensionNameIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		owner = ((Form_pg_extension) GETSTRUCT(tup))->extowner;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return owner;
}

/*
 * MyceliumBeginCatalogAccess makes the current user the extension's owner
 * until MyceliumEndCatalogAccess, so Mycelium's own catalog can be read
 * and written on behalf of users who hold no right on it (the table owner
 * running DDL, any role committing a write that spans nodes).
 */
void
MyceliumBeginCatalogAccess(Oid *save_userid, int *save_sec_context)
{
	GetUserIdAndSecContext(save_userid, save_sec_context);
	SetUserIdAndSecContext(MyceliumExtensionOwner(),
						   *save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
}

void
MyceliumEndCatalogAccess(Oid save_userid, int save_sec_context)
{
	SetUserIdAndSecContext(save_userid, save_sec_context);
}

List *
MyceliumLoadNodes(void)
{
	MemoryContext caller = CurrentMemoryContext;
	List	   *result = NIL;
	uint64		i;
	Oid			save_userid;
	int			save_sec_context;

	MyceliumBeginCatalogAccess(&save_userid, &save_sec_context);
	SPI_connect();
	MyceliumSpiExecLatest("SELECT node_id, node_name, host, port, status "
						  "FROM mycelium.node ORDER BY node_id", 0, NULL, NULL, true);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		MemoryContext old = MemoryContextSwitchTo(caller);
		MyceliumNode *n = palloc0(sizeof(MyceliumNode));
		bool		isnull;

		n->node_id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		strlcpy(n->node_name, SPI_getvalue(tup, desc, 2), sizeof(n->node_name));
		strlcpy(n->host, SPI_getvalue(tup, desc, 3), sizeof(n->host));
		n->port = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		strlcpy(n->status, SPI_getvalue(tup, desc, 5), sizeof(n->status));
		n->is_local = strcmp(n->node_name, mycelium_node_name) == 0;
		result = lappend(result, n);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	/* an error above aborts the transaction, which restores the user */
	MyceliumEndCatalogAccess(save_userid, save_sec_context);
	return result;
}

/*
 * MyceliumSpiExecLatest runs a query through SPI (already connected) with
 * the latest snapshot rather than the transaction's, so that metadata reads
 * see every change committed before the locks a change holds, at any
 * isolation level, and this transaction's own changes.
 */
void
MyceliumSpiExecLatest(const char *sql, int nargs, Oid *types, Datum *values,
					  bool read_only)
{
	SPIPlanPtr	plan = SPI_prepare(sql, nargs, types);

	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", sql, SPI_result_code_string(SPI_result));
	PushActiveSnapshot(GetLatestSnapshot());
	if (SPI_execute_snapshot(plan, values, NULL, GetActiveSnapshot(), InvalidSnapshot,
							 read_only, false, 0) < 0)
		elog(ERROR, "could not run \"%s\"", sql);
	PopActiveSnapshot();
}

/*
 * node_cache_callback empties the node cache when mycelium.node changed (or
 * on a full relcache reset).
 */
static void
node_cache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == node_cache_relid)
		node_cache_valid = false;
}

/*
 * MyceliumCachedNodes returns the node catalog from the per-backend cache,
 * filling it when needed.  The list and its nodes belong to the cache:
 * valid until the next catalog change, so callers must not keep them past
 * the current statement nor modify them.
 */
List *
MyceliumCachedNodes(void)
{
	MemoryContext old;

	if (node_cache_valid)
		return node_cache;
	if (!node_callback_registered)
	{
		CacheRegisterRelcacheCallback(node_cache_callback, (Datum) 0);
		node_cache_cxt = AllocSetContextCreate(CacheMemoryContext, "mycelium node cache",
											   ALLOCSET_SMALL_SIZES);
		node_callback_registered = true;
	}
	node_cache_relid = MyceliumCatalogRelid("node");
	MemoryContextReset(node_cache_cxt);
	node_cache = NIL;
	old = MemoryContextSwitchTo(node_cache_cxt);
	/* valid first: an invalidation arriving while we read clears it again */
	node_cache_valid = true;
	node_cache = MyceliumLoadNodes();
	MemoryContextSwitchTo(old);
	return node_cache;
}

/*
 * mycelium_node_catalog_changed is the statement trigger on mycelium.node:
 * it makes every backend drop its node cache once the change commits.
 */
Datum
mycelium_node_catalog_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("mycelium.node_catalog_changed() must be called as a trigger")));
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	return PointerGetDatum(NULL);
}

/*
 * MyceliumFindNode returns the node of that name in a list, or NULL.
 */
MyceliumNode *
MyceliumFindNode(List *nodes, const char *node_name)
{
	ListCell   *lc;

	foreach(lc, nodes)
	{
		MyceliumNode *n = lfirst(lc);

		if (strcmp(n->node_name, node_name) == 0)
			return n;
	}
	return NULL;
}

/*
 * MyceliumEnsureLocalNode returns the local node's catalog entry.  A node
 * whose mycelium.node_name was empty at CREATE EXTENSION time is
 * registered here, once the name is set; a node without a name, or whose
 * name is not in a catalog that lists other nodes, cannot take part.
 */
MyceliumNode *
MyceliumEnsureLocalNode(void)
{
	List	   *nodes;
	MyceliumNode *local;

	MyceliumRequirePreload();
	if (mycelium_node_name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("mycelium.node_name is not set"),
				 errhint("Set mycelium.node_name in postgresql.conf to this node's name and restart the server.")));
	nodes = MyceliumCachedNodes();
	local = MyceliumFindNode(nodes, mycelium_node_name);
	if (local)
		return local;
	nodes = MyceliumLoadNodes();	/* no trust in the cache for a write */
	local = MyceliumFindNode(nodes, mycelium_node_name);
	if (local)
		return local;
	if (nodes != NIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this node's name \"%s\" is not in the mesh metadata", mycelium_node_name),
				 errdetail("The node catalog lists %d other nodes.", list_length(nodes)),
				 errhint("mycelium.node_name must not change after a node joins a mesh.")));

	SPI_connect();
	{
		Oid			types[3] = {TEXTOID, TEXTOID, INT4OID};
		Datum		vals[3];

		vals[0] = CStringGetTextDatum(mycelium_node_name);
		vals[1] = CStringGetTextDatum(mycelium_node_host);
		vals[2] = Int32GetDatum(PostPortNumber);
		if (SPI_execute_with_args("INSERT INTO mycelium.node (node_id, node_name, host, port) "
								  "VALUES (1, $1, $2, $3)", 3, types, vals, NULL,
								  false, 0) != SPI_OK_INSERT)
			elog(ERROR, "could not register the local node");
	}
	SPI_finish();
	CommandCounterIncrement();
	return MyceliumFindNode(MyceliumLoadNodes(), mycelium_node_name);
}

/*
 * mycelium_node_status(node_name, catalog_status) gives the status shown by
 * mycelium.nodes: 'down' for a peer the maintenance worker found silent for
 * mycelium.peer_timeout, the catalog status otherwise.
 */
Datum
mycelium_node_status(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (strcmp(name, mycelium_node_name) != 0 && MyceliumPeerIsDown(name))
		PG_RETURN_TEXT_P(cstring_to_text("down"));
	PG_RETURN_DATUM(PG_GETARG_DATUM(1));
}
