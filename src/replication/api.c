/*-------------------------------------------------------------------------
 *
 * api.c
 *	  mycelium.replicate_table and mycelium.stop_replicating_table:
 *	  choosing which tables peers replicate; and the same for a node that
 *	  joins the mesh (MyceliumReplCopyTablesTo).
 *
 * Both table functions are metadata changes (see cluster/metadata.c): every
 * member is connected and locked in node_id order, and every write commits
 * together with two-phase commit at the end of the caller's transaction, so
 * a refusal on any member leaves nothing changed anywhere.
 *
 * replicate_table creates the table on the members that lack it, copies
 * this node's rows there, and then lists it in mycelium.replicated_table on
 * every member.  On a member the rows are written before the listing in the
 * same transaction: the output plugin captures a table from its listing on,
 * so copied rows are never streamed back.  This node holds a SHARE lock on
 * the table from before the copy until commit, so no local write falls
 * between the copy and the start of capture.  Members that already have a
 * table of that name must have the same columns, types and primary key;
 * their rows are kept as they are (the comparison is in api_shape.c).
 *
 * IDENTIFICATION
 *	  src/replication/api.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "utils/fmgroids.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"
#include "utils/snapmgr.h"

#include "cluster/cluster.h"
#include "config/config.h"
#include "shard/shard.h"
#include "replication/api_internal.h"
#include "replication/apply_internal.h"
#include "replication/replication.h"
#include "replication/peer_state.h"

PG_FUNCTION_INFO_V1(mycelium_replicate_table);
PG_FUNCTION_INFO_V1(mycelium_stop_replicating_table);

/* rows per batch when copying a table to the members that lacked it */

/* the conflict resolution policies replicate_table accepts */
static const char *const supported_policies[] = {"last_writer_wins"};

/* wake the launcher when the current transaction commits */
static bool wake_launcher_at_commit = false;
static bool xact_callback_registered = false;

/*
 * api_xact_callback wakes the replication launcher once a transaction that
 * changed the set of replicated tables has committed, so that it (and the
 * apply workers) see the change without waiting for their next poll.
 */
static void
api_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (wake_launcher_at_commit)
				MyceliumReplWakeLauncher();
			wake_launcher_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
		case XACT_EVENT_PARALLEL_ABORT:
			wake_launcher_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * wake_launcher_after_commit arranges for api_xact_callback to wake the
 * launcher at the end of the current transaction if it commits.
 */
static void
wake_launcher_after_commit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(api_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_launcher_at_commit = true;
}

/*
 * custom_policy validates 'custom:<function>': the function must exist as
 * f(regclass, jsonb, jsonb) RETURNS jsonb (42883 / 42P13 otherwise).
 * Returns the policy to record, with the function schema-qualified.
 */
static const char *
custom_policy(const char *policy)
{
	const char *name = policy + strlen("custom:");
	Oid			fn;

	if (*name == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("conflict resolution policy \"custom\" needs a function"),
				 errhint("Write 'custom:schema.function', naming a function (regclass, jsonb, jsonb) RETURNS jsonb.")));
	fn = MyceliumConflictFunction(name);
	if (!OidIsValid(fn))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function %s(regclass, jsonb, jsonb) does not exist", name),
				 errhint("A custom conflict function takes (table regclass, local jsonb, remote jsonb) and returns the row to keep as jsonb.")));
	if (get_func_rettype(fn) != JSONBOID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("conflict function %s must return jsonb", name)));
	return psprintf("custom:%s",
					quote_qualified_identifier(get_namespace_name(get_func_namespace(fn)),
											   get_func_name(fn)));
}

/*
 * resolve_policy returns the conflict resolution policy to record: the
 * argument, or mycelium.conflict_resolution when it is NULL (which only
 * takes supported values); only the supported policies are accepted
 * (22023): last_writer_wins, and custom:<function> (a function that exists
 * on this node; it must exist on every node).
 */
static const char *
resolve_policy(FunctionCallInfo fcinfo)
{
	const char *policy;
	int			i;

	if (PG_ARGISNULL(1))
		policy = GetConfigOption("mycelium.conflict_resolution", false, false);
	else
		policy = text_to_cstring(PG_GETARG_TEXT_PP(1));
	for (i = 0; i < lengthof(supported_policies); i++)
		if (strcmp(policy, supported_policies[i]) == 0)
			return supported_policies[i];
	if (strncmp(policy, "custom", strlen("custom")) == 0 &&
		(policy[strlen("custom")] == ':' || policy[strlen("custom")] == '\0'))
		return custom_policy(strcmp(policy, "custom") == 0 ? "custom:" : policy);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unsupported conflict resolution policy \"%s\"", policy),
			 errdetail("The supported policies are: last_writer_wins, custom:<function>.")));
	return NULL;				/* keep compiler quiet */
}

/*
 * check_replicable raises unless rel is a permanent ordinary user table
 * with a primary key.
 */
static void
check_replicable(Relation rel, const char *name)
{
	if (rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("cannot replicate \"%s\"", name),
				 errdetail("Only ordinary tables can be replicated."),
				 rel->rd_rel->relkind == RELKIND_PARTITIONED_TABLE ?
				 errhint("Replicate its partitions.") : 0));
	if (rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot replicate temporary or unlogged table \"%s\"", name),
				 errdetail("Changes are read from the WAL, which does not hold them.")));
	if (IsCatalogRelation(rel) ||
		RelationGetNamespace(rel) == get_namespace_oid("mycelium", false))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot replicate system table \"%s\"", name)));
	if (!OidIsValid(RelationGetPrimaryKeyIndex(rel)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("table \"%s\" has no primary key", name),
				 errdetail("Peers identify replicated rows by primary key."),
				 errhint("Add a primary key to the table, then retry.")));
}

/*
 * append_primary_key appends ", CONSTRAINT <name> PRIMARY KEY (...)" for
 * the table's primary key (which check_replicable made sure exists).
 */
static void
append_primary_key(StringInfo sql, Relation rel)
{
	Relation	idx = index_open(RelationGetPrimaryKeyIndex(rel), AccessShareLock);
	int			k;

	appendStringInfo(sql, ", CONSTRAINT %s PRIMARY KEY (",
					 quote_identifier(RelationGetRelationName(idx)));
	for (k = 0; k < IndexRelationGetNumberOfKeyAttributes(idx); k++)
		appendStringInfo(sql, "%s%s", k > 0 ? ", " : "",
						 quote_identifier(get_attname(RelationGetRelid(rel),
													  idx->rd_index->indkey.values[k],
													  false)));
	appendStringInfoChar(sql, ')');
	index_close(idx, AccessShareLock);
}

/*
 * create_table_sql builds the CREATE TABLE that reproduces rel on a peer:
 * columns with their types (and typmods), non-default collations, NOT
 * NULL, defaults that use no sequence, stored generated columns, and
 * the primary key.  Identity and serial defaults are left out (sequences
 * do not replicate).  Names are printed under search_path = pg_catalog so
 * they resolve the same way on the peer.  *cols gets the list of columns a
 * copy inserts (all but generated ones).
 */
static char *
create_table_sql(Relation rel, const char *qualname, StringInfo cols)
{
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *dpcontext = deparse_context_for(RelationGetRelationName(rel), RelationGetRelid(rel));
	StringInfoData sql;
	int			nest = NewGUCNestLevel();
	bool		first = true;
	int			i;

	(void) set_config_option("search_path", "pg_catalog", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TABLE %s (", qualname);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		generated = att->attgenerated == ATTRIBUTE_GENERATED_STORED;
		const char *name = quote_identifier(NameStr(att->attname));
		char	   *def;

		if (att->attisdropped)
			continue;
		appendStringInfo(&sql, "%s%s %s", first ? "" : ", ", name,
						 format_type_with_typemod(att->atttypid, att->atttypmod));
		first = false;
		if (OidIsValid(att->attcollation) && att->attcollation != get_typcollation(att->atttypid))
			appendStringInfo(&sql, " COLLATE %s", generate_collation_name(att->attcollation));
		def = MyceliumColumnDefaultSql(rel, att->attnum, dpcontext, generated);
		if (generated)
			appendStringInfo(&sql, " GENERATED ALWAYS AS (%s) STORED", def);
		else if (def)
			appendStringInfo(&sql, " DEFAULT %s", def);
		if (att->attnotnull)
			appendStringInfoString(&sql, " NOT NULL");
		if (!generated)
			appendStringInfo(cols, "%s%s", cols->len > 0 ? ", " : "", name);
	}
	append_primary_key(&sql, rel);
	appendStringInfoChar(&sql, ')');
	AtEOXact_GUC(true, nest);
	return sql.data;
}

/*
 * create_on_members creates the table (and its schema if needed) on the
 * members in conns and copies this node's rows there.
 */
static void
create_on_members(Relation rel, const char *qualname, MyceliumConnection **conns, int n)
{
	StringInfoData cols;
	char	   *create_sql;

	if (n == 0)
		return;
	initStringInfo(&cols);
	create_sql = create_table_sql(rel, qualname, &cols);
	MyceliumExecParallel(conns, n,
						 psprintf("CREATE SCHEMA IF NOT EXISTS %s",
								  quote_identifier(get_namespace_name(RelationGetNamespace(rel)))),
						 0, NULL);
	MyceliumWriteOnMembers(conns, n, create_sql, 0, NULL);
	/* the caller holds a SHARE lock: the latest snapshot is every row */
	MyceliumCopyRows(psprintf("SELECT pg_catalog.row_to_json(r.*)::pg_catalog.text "
							  "FROM ONLY %s r", qualname),
					 qualname, cols.data, conns, n);
}

/*
 * list_everywhere inserts the table's row into mycelium.replicated_table
 * here and on every remote member.
 */
static void
list_everywhere(Oid relid, const char *qualname, const char *policy,
				MyceliumConnection **remote, int n)
{
	Oid			types[2] = {REGCLASSOID, TEXTOID};
	Datum		values[2];
	const char *params[2] = {qualname, policy};

	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(policy);
	SPI_connect();
	if (SPI_execute_with_args("INSERT INTO mycelium.replicated_table (relid, conflict_resolution) "
							  "VALUES ($1, $2)", 2, types, values, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "could not insert into mycelium.replicated_table");
	SPI_finish();
	MyceliumWriteOnMembers(remote, n,
						   "INSERT INTO mycelium.replicated_table (relid, conflict_resolution) "
						   "VALUES ($1::pg_catalog.regclass, $2)", 2, params);
}

/*
 * open_table opens the relation behind a regclass argument (which may name
 * a relation dropped since) and returns it with AccessShareLock held until
 * the end of the transaction; *qualname gets its quoted qualified name (for
 * SQL), *display the unquoted one (for messages).
 */
static Relation
open_table(Oid relid, char **qualname, char **display)
{
	Relation	rel = try_relation_open(relid, AccessShareLock);

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	*qualname = quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
										   RelationGetRelationName(rel));
	/* a temporary schema's name varies from session to session */
	*display = RelationUsesLocalBuffers(rel) ? pstrdup(RelationGetRelationName(rel)) :
		psprintf("%s.%s", get_namespace_name(RelationGetNamespace(rel)),
				 RelationGetRelationName(rel));
	return rel;
}

/*
 * already_replicated raises 42710 when the shape says the table is listed.
 */
static void
already_replicated(const TableShape *here, const char *display)
{
	if (here->replicated)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("table \"%s\" is already replicated", display)));
}

/*
 * mycelium.replicate_table(table_name regclass, conflict_resolution text
 * DEFAULT NULL) returns void
 *
 * Replicates a table between all members, in one distributed transaction:
 * created (and filled with this node's rows) where missing, checked where
 * present, and listed in mycelium.replicated_table everywhere.  Refused
 * until mycelium.replication_ready() holds.  The launcher is woken at
 * commit.
 */
Datum
mycelium_replicate_table(PG_FUNCTION_ARGS)
{
	const char *policy;
	Relation	rel;
	char	   *qualname;
	char	   *display;
	TableShape	here;
	List	   *nodes;
	MyceliumConnection **conns;
	MyceliumConnection **remote;
	MyceliumConnection **create;
	int			nremote;
	int			ncreate;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table name must not be null")));
	MyceliumEnsureLocalNode();
	policy = resolve_policy(fcinfo);
	rel = open_table(PG_GETARG_OID(0), &qualname, &display);
	check_replicable(rel, display);
	MyceliumReplLocalShape(qualname, &here);
	already_replicated(&here, display);
	MyceliumReplEnsureSlots();
	MyceliumReplSlotsReady(true);

	nodes = MyceliumLockMesh(NULL, &conns);
	LockRelationOid(RelationGetRelid(rel), ShareLock);
	MyceliumReplLocalShape(qualname, &here);
	already_replicated(&here, display);
	remote = MyceliumUsableMembers(nodes, conns, &nremote);
	create = MyceliumReplMembersToCreate(remote, nremote, qualname, display, &here, &ncreate);
	create_on_members(rel, qualname, create, ncreate);
	list_everywhere(RelationGetRelid(rel), qualname, policy, remote, nremote);
	relation_close(rel, NoLock);
	wake_launcher_after_commit();
	PG_RETURN_VOID();
}

/* a row of mycelium.replicated_table */
typedef struct ListedTable
{
	Oid			relid;
	char	   *policy;
} ListedTable;

/*
 * listed_tables returns this node's mycelium.replicated_table (latest
 * snapshot), oldest first, as a List of ListedTable.
 */
static List *
listed_tables(void)
{
	MemoryContext caller = CurrentMemoryContext;
	List	   *result = NIL;
	uint64		i;

	SPI_connect();
	MyceliumSpiExecLatest("SELECT relid::pg_catalog.oid, conflict_resolution "
						  "FROM mycelium.replicated_table ORDER BY added_at, relid",
						  0, NULL, NULL, true);
	for (i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(caller);
		ListedTable *t = palloc(sizeof(ListedTable));
		bool		isnull;

		t->relid = DatumGetObjectId(SPI_getbinval(SPI_tuptable->vals[i],
												  SPI_tuptable->tupdesc, 1, &isnull));
		t->policy = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2);
		result = lappend(result, t);
		MemoryContextSwitchTo(old);
	}
	SPI_finish();
	return result;
}

/*
 * MyceliumReplCopyTablesTo gives the node behind conn every table this
 * node replicates, and only those (its own list is emptied first), within
 * the current distributed transaction: created and filled with this node's
 * rows where it lacks one, checked where it has one (its rows kept), and
 * listed in its mycelium.replicated_table with the same policy.  Meant for add_node, once the node catalog is copied
 * (mycelium.replicated_table cannot be copied as plain metadata: its
 * regclass values only resolve where the tables exist).  Each table gets a
 * SHARE lock here until commit.  It does not check replication slots: the
 * new node's slots do not exist yet.
 */
void
MyceliumReplCopyTablesTo(MyceliumConnection *conn)
{
	ListCell   *lc;

	/* the joining node adopts the mesh's set, as it adopts its node catalog */
	MyceliumExecCommand(conn, "DELETE FROM mycelium.replicated_table");
	conn->wrote = true;
	foreach(lc, listed_tables())
	{
		ListedTable *t = lfirst(lc);
		char	   *qualname;
		char	   *display;
		Relation	rel = open_table(t->relid, &qualname, &display);
		TableShape	here;
		MyceliumConnection **create;
		int			ncreate;
		const char *params[2] = {qualname, t->policy};

		LockRelationOid(t->relid, ShareLock);
		MyceliumReplLocalShape(qualname, &here);
		create = MyceliumReplMembersToCreate(&conn, 1, qualname, display, &here, &ncreate);
		create_on_members(rel, qualname, create, ncreate);
		PQclear(MyceliumExec(conn, "INSERT INTO mycelium.replicated_table (relid, conflict_resolution) "
							 "VALUES ($1::pg_catalog.regclass, $2)", 2, params));
		conn->wrote = true;
		relation_close(rel, NoLock);
	}
}

/*
 * is_listed says whether a table is in mycelium.replicated_table, read
 * with the latest snapshot.
 */
static bool
is_listed(Oid relid)
{
	Oid			types[1] = {REGCLASSOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	bool		listed;

	SPI_connect();
	MyceliumSpiExecLatest("SELECT 1 FROM mycelium.replicated_table WHERE relid = $1",
						  1, types, values, true);
	listed = SPI_processed > 0;
	SPI_finish();
	return listed;
}

/*
 * not_listed_error raises 42704 for a table that is not replicated.
 */
static void
not_listed_error(const char *display)
{
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("table \"%s\" is not replicated", display),
			 errhint("SELECT relid FROM mycelium.replicated_table lists the replicated tables.")));
}

/*
 * mycelium.stop_replicating_table(table_name regclass) returns void
 *
 * Removes the table from mycelium.replicated_table on every member in one
 * distributed transaction; the tables and their rows stay.
 */
Datum
mycelium_stop_replicating_table(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	Relation	rel;
	char	   *qualname;
	char	   *display;
	List	   *nodes;
	MyceliumConnection **conns;
	MyceliumConnection **remote;
	int			nremote;

	MyceliumEnsureLocalNode();
	rel = open_table(relid, &qualname, &display);
	relation_close(rel, NoLock);
	if (!is_listed(relid))
		not_listed_error(display);
	nodes = MyceliumLockMesh(NULL, &conns);
	if (!is_listed(relid))
		not_listed_error(display);

	SPI_connect();
	{
		Oid			types[1] = {REGCLASSOID};
		Datum		values[1] = {ObjectIdGetDatum(relid)};

		if (SPI_execute_with_args("DELETE FROM mycelium.replicated_table WHERE relid = $1",
								  1, types, values, NULL, false, 0) != SPI_OK_DELETE)
			elog(ERROR, "could not delete from mycelium.replicated_table");
	}
	SPI_finish();
	remote = MyceliumUsableMembers(nodes, conns, &nremote);
	if (nremote > 0)
	{
		const char *params[1] = {qualname};

		MyceliumWriteOnMembers(remote, nremote,
							   "DELETE FROM mycelium.replicated_table "
							   "WHERE relid = pg_catalog.to_regclass($1)", 1, params);
	}
	wake_launcher_after_commit();
	PG_RETURN_VOID();
}
