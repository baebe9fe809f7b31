/*-------------------------------------------------------------------------
 *
 * table_ddl.c
 *	  The SQL that recreates a table's definition elsewhere: as a shard
 *	  (its own name, constraints and indexes renamed with the shard's
 *	  suffix) or as the same table on another node (shell or reference
 *	  copy).
 *
 * What is reproduced: columns with types and typmods, non-default
 * collations, NOT NULL, defaults (except those calling nextval(): the
 * sequence is local to one node, and per-node sequences would hand out
 * colliding values anyway; use mycelium.next_id()), stored generated
 * columns, CHECK, PRIMARY KEY, UNIQUE and EXCLUDE constraints, other
 * indexes, the owner and the table and column privileges of other roles.
 * Not reproduced: identity (a sequence again), foreign keys (refused for
 * distributed tables), triggers, rules, policies, storage parameters,
 * comments, statistics objects.
 *
 * Everything is printed under search_path = pg_catalog, so every name
 * outside pg_catalog is schema-qualified and the commands mean the same
 * on every node.
 *
 * IDENTIFICATION
 *	  src/shard/table_ddl.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/nodeFuncs.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/ruleutils.h"

#include "cluster/cluster.h"
#include "shard/shard.h"

/*
 * calls_nextval is an expression walker: true when the expression calls
 * nextval(), i.e. takes values from a sequence of this node.
 */
static bool
calls_nextval(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (IsA(node, FuncExpr) && ((FuncExpr *) node)->funcid == F_NEXTVAL)
		return true;
	return expression_tree_walker(node, calls_nextval, context);
}

/*
 * MyceliumColumnDefaultSql returns the SQL text of a column's default (or,
 * for a generated column, its generation expression), or NULL when it has
 * none or the default takes values from a sequence of this node (serial,
 * nextval()): that sequence does not exist on the other nodes, and values
 * from per-node sequences would collide anyway (use mycelium.next_id()).
 * Other defaults, volatile ones included, mean the same on every node.
 * Shared by shard tables and by tables replication creates on peers.
 */
char *
MyceliumColumnDefaultSql(Relation rel, AttrNumber attnum, List *dpcontext, bool generated)
{
	TupleConstr *constr = RelationGetDescr(rel)->constr;
	int			i;

	if (constr == NULL)
		return NULL;
	for (i = 0; i < constr->num_defval; i++)
	{
		Node	   *expr;

		if (constr->defval[i].adnum != attnum)
			continue;
		expr = stringToNode(constr->defval[i].adbin);
		if (!generated && calls_nextval(expr, NULL))
			return NULL;
		return deparse_expression(expr, dpcontext, false, false);
	}
	return NULL;
}

/*
 * MyceliumNameWithSuffix is name followed by suffix, name clipped (at a
 * character boundary) so the whole fits in NAMEDATALEN; a suffix that
 * leaves no room is dropped.  The names of shards' indexes and
 * constraints are made with it.
 */
char *
MyceliumNameWithSuffix(const char *name, const char *suffix)
{
	int			room = NAMEDATALEN - 1 - (int) strlen(suffix);

	if (room < 1)
		suffix = "";
	return psprintf("%.*s%s", pg_mbcliplen(name, strlen(name), Max(room, 1)), name, suffix);
}

/*
 * object_name gives the name of a constraint or index of the new table:
 * unchanged when the table keeps its name, otherwise the original name
 * with the shard's suffix ("_<shard_id>", or "_<shard_name>" when the
 * shard name does not end in a number), clipped to fit NAMEDATALEN.
 */
static char *
object_name(const char *name, const char *relname, const char *new_name)
{
	const char *us = strrchr(new_name, '_');

	if (strcmp(relname, new_name) == 0)
		return pstrdup(name);
	if (us != NULL && us[1] != '\0' && strspn(us + 1, "0123456789") == strlen(us + 1))
		return MyceliumNameWithSuffix(name, us);
	return MyceliumNameWithSuffix(name, psprintf("_%s", new_name));
}

/*
 * create_table_sql builds the CREATE TABLE with the columns of rel.
 */
static char *
create_table_sql(Relation rel, const char *qualname)
{
	TupleDesc	desc = RelationGetDescr(rel);
	List	   *dpcontext = deparse_context_for(RelationGetRelationName(rel),
												RelationGetRelid(rel));
	StringInfoData sql;
	bool		first = true;
	int			i;

	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TABLE %s (", qualname);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		bool		generated = att->attgenerated == ATTRIBUTE_GENERATED_STORED;
		char	   *def;

		if (att->attisdropped)
			continue;
		appendStringInfo(&sql, "%s%s %s", first ? "" : ", ",
						 quote_identifier(NameStr(att->attname)),
						 format_type_with_typemod(att->atttypid, att->atttypmod));
		first = false;
		if (OidIsValid(att->attcollation) && att->attcollation != get_typcollation(att->atttypid))
			appendStringInfo(&sql, " COLLATE %s", generate_collation_name(att->attcollation));
		def = MyceliumColumnDefaultSql(rel, att->attnum, dpcontext, generated);
		if (generated && def)
			appendStringInfo(&sql, " GENERATED ALWAYS AS (%s) STORED", def);
		else if (def)
			appendStringInfo(&sql, " DEFAULT %s", def);
		if (att->attnotnull)
			appendStringInfoString(&sql, " NOT NULL");
	}
	appendStringInfoChar(&sql, ')');
	return sql.data;
}

/*
 * constraint_commands returns ALTER TABLE ... ADD CONSTRAINT for every
 * CHECK, PRIMARY KEY, UNIQUE and EXCLUDE constraint of rel (renamed for a
 * shard; CHECK names are per table and kept), and, in *index_oids, the
 * indexes those constraints own.
 */
static List *
constraint_commands(Relation rel, const char *qualname, const char *new_name,
					List **index_oids)
{
	List	   *cmds = NIL;
	Relation	conrel = table_open(ConstraintRelationId, AccessShareLock);
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;

	ScanKeyInit(&key, Anum_pg_constraint_conrelid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(RelationGetRelid(rel)));
	scan = systable_beginscan(conrel, ConstraintRelidTypidNameIndexId, true, NULL, 1, &key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_constraint con = (Form_pg_constraint) GETSTRUCT(tup);
		char	   *def;
		const char *name;

		if (con->contype != CONSTRAINT_CHECK && con->contype != CONSTRAINT_PRIMARY &&
			con->contype != CONSTRAINT_UNIQUE && con->contype != CONSTRAINT_EXCLUSION)
			continue;
		def = TextDatumGetCString(OidFunctionCall1(F_PG_GET_CONSTRAINTDEF_OID,
												   ObjectIdGetDatum(con->oid)));
		name = con->contype == CONSTRAINT_CHECK ? NameStr(con->conname) :
			object_name(NameStr(con->conname), RelationGetRelationName(rel), new_name);
		cmds = lappend(cmds, psprintf("ALTER TABLE %s ADD CONSTRAINT %s %s",
									  qualname, quote_identifier(name), def));
		if (OidIsValid(con->conindid))
			*index_oids = lappend_oid(*index_oids, con->conindid);
	}
	systable_endscan(scan);
	table_close(conrel, AccessShareLock);
	return cmds;
}

/*
 * index_command returns the CREATE INDEX of an index of rel, retargeted
 * at the new table and renamed for a shard.  pg_get_indexdef_string
 * prints "CREATE [UNIQUE] INDEX <name> ON <schema>.<table> USING ...";
 * everything from " USING " on is kept.
 */
static char *
index_command(Relation rel, Oid indexoid, const char *qualname, const char *new_name)
{
	char	   *def = pg_get_indexdef_string(indexoid);
	char	   *idxname = get_rel_name(indexoid);
	bool		unique = strncmp(def, "CREATE UNIQUE INDEX ", 20) == 0;
	char	   *prefix;

	prefix = psprintf("CREATE %sINDEX %s ON %s USING ", unique ? "UNIQUE " : "",
					  quote_identifier(idxname),
					  quote_qualified_identifier(get_namespace_name(RelationGetNamespace(rel)),
												 RelationGetRelationName(rel)));
	if (strncmp(def, prefix, strlen(prefix)) != 0)
		elog(ERROR, "unexpected definition of index \"%s\": %s", idxname, def);
	return psprintf("CREATE %sINDEX %s ON %s USING %s", unique ? "UNIQUE " : "",
					quote_identifier(object_name(idxname, RelationGetRelationName(rel), new_name)),
					qualname, def + strlen(prefix));
}

/*
 * GRANTS_SQL prints one GRANT per privilege the table's ACL and its
 * columns' ACLs give to roles other than the owner (whose privileges come
 * with ownership).  $1 is the table, $2 the name to grant on.
 */
#define GRANTS_SQL \
	"SELECT pg_catalog.format('GRANT %s%s ON %s TO %s%s', a.privilege_type, " \
	"  CASE WHEN a.col IS NULL THEN '' ELSE ' (' || pg_catalog.quote_ident(a.col) || ')' END, $2, " \
	"  CASE WHEN a.grantee = 0 THEN 'PUBLIC' " \
	"       ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END, " \
	"  CASE WHEN a.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END) " \
	"FROM (SELECT NULL::pg_catalog.name AS col, (pg_catalog.aclexplode(c.relacl)).* " \
	"        FROM pg_catalog.pg_class c WHERE c.oid = $1 " \
	"      UNION ALL " \
	"      SELECT t.attname, (pg_catalog.aclexplode(t.attacl)).* " \
	"        FROM pg_catalog.pg_attribute t WHERE t.attrelid = $1 AND t.attnum > 0 " \
	"         AND NOT t.attisdropped) a " \
	"WHERE a.grantee <> (SELECT relowner FROM pg_catalog.pg_class WHERE oid = $1) " \
	"ORDER BY 1"

/*
 * grant_commands returns the GRANTs that give the new table the
 * privileges other roles hold on relid (table and column privileges), so
 * that remote work, which runs as the caller's role, is allowed where the
 * table allows it.
 */
static List *
grant_commands(Oid relid, const char *qualname)
{
	MemoryContext caller = CurrentMemoryContext;
	Oid			types[2] = {OIDOID, TEXTOID};
	Datum		values[2] = {ObjectIdGetDatum(relid), CStringGetTextDatum(qualname)};
	List	   *cmds = NIL;
	uint64		i;

	SPI_connect();
	if (SPI_execute_with_args(GRANTS_SQL, 2, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the privileges of relation %u", relid);
	for (i = 0; i < SPI_processed; i++)
		cmds = lappend(cmds, MemoryContextStrdup(caller, SPI_getvalue(SPI_tuptable->vals[i],
																	  SPI_tuptable->tupdesc, 1)));
	SPI_finish();
	return cmds;
}

/*
 * table_commands builds the commands that create a copy of relid's
 * definition named schema.new_name.
 */
static List *
table_commands(Oid relid, const char *schema, const char *new_name)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	char	   *qualname = quote_qualified_identifier(schema, new_name);
	List	   *cmds = NIL;
	List	   *constraint_indexes = NIL;
	List	   *indexes;
	ListCell   *lc;
	int			nest = NewGUCNestLevel();

	(void) set_config_option("search_path", "pg_catalog", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	cmds = lappend(cmds, create_table_sql(rel, qualname));
	cmds = list_concat(cmds, constraint_commands(rel, qualname, new_name, &constraint_indexes));
	indexes = RelationGetIndexList(rel);
	foreach(lc, indexes)
	{
		Oid			indexoid = lfirst_oid(lc);

		if (!list_member_oid(constraint_indexes, indexoid))
			cmds = lappend(cmds, index_command(rel, indexoid, qualname, new_name));
	}
	/*
	 * The commands run as the current user or as the extension's owner
	 * (see ShardBeginMeshRole, ShardRunLocalDdl); unless both own the table,
	 * say who does (a change to the same owner does nothing).
	 */
	if (rel->rd_rel->relowner != GetUserId() ||
		rel->rd_rel->relowner != MyceliumExtensionOwner())
		cmds = lappend(cmds, psprintf("ALTER TABLE %s OWNER TO %s", qualname,
									  quote_identifier(GetUserNameFromId(rel->rd_rel->relowner,
																		 false))));
	cmds = list_concat(cmds, grant_commands(relid, qualname));
	AtEOXact_GUC(true, nest);
	relation_close(rel, AccessShareLock);
	return cmds;
}

/*
 * MyceliumShardCreateCommands returns the commands (a List of C strings)
 * that create a shard of table relid named schema.shard_name on any node:
 * CREATE TABLE, then ALTER TABLE ADD CONSTRAINT and CREATE INDEX with
 * names suffixed like the shard, then the owner, then GRANTs.  Run them in order in
 * one transaction; the schema must exist.
 */
List *
MyceliumShardCreateCommands(Oid relid, const char *schema, const char *shard_name)
{
	return table_commands(relid, schema, shard_name);
}

/*
 * MyceliumTableCreateCommands returns the commands that create table
 * relid under its own name (and schema) on another node: the shell of a
 * distributed table or the copy of a reference table.  Constraint and
 * index names are kept.  The first command creates the schema if needed.
 */
List *
MyceliumTableCreateCommands(Oid relid)
{
	char	   *schema = get_namespace_name(get_rel_namespace(relid));
	char	   *relname = get_rel_name(relid);

	if (relname == NULL || schema == NULL)
		elog(ERROR, "cache lookup failed for relation %u", relid);
	return lcons(psprintf("CREATE SCHEMA IF NOT EXISTS %s", quote_identifier(schema)),
				 table_commands(relid, schema, relname));
}

/*
 * MyceliumInsertColumnList returns the quoted, comma-separated columns of
 * relid a copy of its rows inserts: all but dropped and generated ones.
 */
char *
MyceliumInsertColumnList(Oid relid)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	StringInfoData cols;
	int			i;

	initStringInfo(&cols);
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped || att->attgenerated)
			continue;
		appendStringInfo(&cols, "%s%s", cols.len > 0 ? ", " : "",
						 quote_identifier(NameStr(att->attname)));
	}
	relation_close(rel, AccessShareLock);
	return cols.data;
}
