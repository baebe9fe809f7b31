/*-------------------------------------------------------------------------
 *
 * ddl.c
 *	  DDL on distributed and reference tables: which statements are
 *	  propagated, which are refused, and how TRUNCATE, DROP, GRANT/REVOKE
 *	  and column renames reach every shard and node.
 *
 * Every propagated statement runs in three steps inside the user's
 * transaction: the standard utility on the local table (PostgreSQL checks
 * privileges, dependencies and arguments there first), the shard versions
 * on the local shards (SPI, no loopback connection), then on every other
 * node in parallel the table's version plus the versions of that node's
 * shards, over the transaction's connections.  The 2PC core then commits
 * all nodes or none.  Refusals (0A000) happen before any step, so a
 * refused statement changes nothing anywhere.
 *
 * ALTER TABLE and CREATE INDEX live in ddl_alter.c.
 *
 * IDENTIFICATION
 *	  src/commands/ddl.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_extension.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "parser/gramparse.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "cluster/cluster.h"
#include "commands/commands.h"

/* deletes a dropped table's metadata ($1: its former OID; shards cascade) */
#define FORGET_TABLE_SQL \
	"DELETE FROM mycelium.dist_table WHERE table_name = $1::pg_catalog.regclass"

/* statements for every node: local SQL and one string per other node */
typedef struct NodeWork
{
	List	   *nodes;
	MyceliumConnection **conns;
	StringInfoData local;
	StringInfoData *remote;
} NodeWork;

/*
 * MyceliumCopyDistTable copies a cached table (names, shards, hash and
 * comparison functions, range bounds) into the current memory context:
 * running a statement may invalidate the cache under our feet.
 */
MyceliumDistTable *
MyceliumCopyDistTable(MyceliumDistTable *cached)
{
	MyceliumDistTable *t;
	int16		typlen = 0;
	bool		typbyval = false;
	int			i;

	if (cached == NULL)
		return NULL;
	t = palloc0(sizeof(MyceliumDistTable));
	t->relid = cached->relid;
	t->method = cached->method;
	t->schema_name = pstrdup(cached->schema_name);
	t->rel_name = pstrdup(cached->rel_name);
	t->dist_attno = cached->dist_attno;
	t->dist_column = cached->dist_column ? pstrdup(cached->dist_column) : NULL;
	t->dist_type = cached->dist_type;
	t->dist_typmod = cached->dist_typmod;
	t->dist_collation = cached->dist_collation;
	t->colocation_id = cached->colocation_id;
	if (cached->method != MYCELIUM_DIST_REFERENCE)
	{
		get_typlenbyval(t->dist_type, &typlen, &typbyval);
		if (OidIsValid(cached->hash_fn.fn_oid))
			fmgr_info_copy(&t->hash_fn, &cached->hash_fn, CurrentMemoryContext);
		if (OidIsValid(cached->cmp_fn.fn_oid))
			fmgr_info_copy(&t->cmp_fn, &cached->cmp_fn, CurrentMemoryContext);
	}
	t->nshards = cached->nshards;
	t->shards = palloc0(sizeof(MyceliumShard) * Max(t->nshards, 1));
	for (i = 0; i < t->nshards; i++)
	{
		MyceliumShard *from = &cached->shards[i];
		MyceliumShard *to = &t->shards[i];

		*to = *from;
		to->shard_name = pstrdup(from->shard_name);
		to->min_text = from->min_text ? pstrdup(from->min_text) : NULL;
		to->max_text = from->max_text ? pstrdup(from->max_text) : NULL;
		if (cached->method == MYCELIUM_DIST_RANGE)
		{
			to->min_value = datumCopy(from->min_value, typbyval, typlen);
			to->max_value = datumCopy(from->max_value, typbyval, typlen);
		}
	}
	return t;
}

/*
 * dist_table_of returns (a copy of) the distributed or reference table a
 * RangeVar names, or NULL (also when it names nothing).
 */
static MyceliumDistTable *
dist_table_of(RangeVar *rv)
{
	Oid			relid = RangeVarGetRelid(rv, NoLock, true);

	return OidIsValid(relid) ? MyceliumCopyDistTable(MyceliumGetDistTable(relid)) : NULL;
}

static char *
shell_name(MyceliumDistTable *table)
{
	return quote_qualified_identifier(table->schema_name, table->rel_name);
}

/*
 * MyceliumRefuse raises the 0A000 error of a statement Mycelium cannot
 * apply to every shard safely: "cannot <what> distributed table "t"".
 */
void
MyceliumRefuse(MyceliumDistTable *table, const char *what, const char *hint)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot %s %s table \"%s\"", what,
					table->method == MYCELIUM_DIST_REFERENCE ? "reference" : "distributed",
					table->rel_name),
			 hint ? errhint("%s", hint) : 0));
}

/*
 * node_work_start connects to every other node and prepares empty
 * per-node statement buffers.
 */
static NodeWork *
node_work_start(void)
{
	NodeWork   *w = palloc0(sizeof(NodeWork));
	int			i;

	w->conns = MyceliumConnectOtherNodes(&w->nodes);
	initStringInfo(&w->local);
	w->remote = palloc0(sizeof(StringInfoData) * Max(list_length(w->nodes), 1));
	for (i = 0; i < list_length(w->nodes); i++)
		initStringInfo(&w->remote[i]);
	return w;
}

/*
 * node_work_append adds one statement for the node named node_name (NULL:
 * every other node); the local node's goes to the local buffer.
 */
static void
node_work_append(NodeWork *w, const char *node_name, const char *sql)
{
	ListCell   *lc;
	int			i = 0;

	foreach(lc, w->nodes)
	{
		MyceliumNode *node = lfirst(lc);

		if (node_name == NULL ? !node->is_local : strcmp(node->node_name, node_name) == 0)
		{
			StringInfo	buf = node->is_local ? &w->local : &w->remote[i];

			appendStringInfo(buf, "%s;", sql);
		}
		i++;
	}
}

/*
 * MyceliumRunLocalSql runs statements on the local node through SPI, in
 * the current transaction (the local shards' versions of a statement).
 */
void
MyceliumRunLocalSql(const char *sql)
{
	int			rc;
	int			nest;

	if (sql[0] == '\0')
		return;
	/* the user saw the table's notices; the shards' would only repeat them */
	nest = NewGUCNestLevel();
	(void) set_config_option("client_min_messages", "warning", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	SPI_connect();
	rc = SPI_execute(sql, false, 0);
	if (rc < 0)
		elog(ERROR, "could not run \"%s\" locally: %s", sql, SPI_result_code_string(rc));
	SPI_finish();
	AtEOXact_GUC(true, nest);
	CommandCounterIncrement();
}

/*
 * node_work_finish runs the local statements, then every node's at once.
 */
static void
node_work_finish(NodeWork *w)
{
	int			n = list_length(w->nodes);
	char	  **sqls = palloc0(sizeof(char *) * Max(n, 1));
	char	   *preamble = MyceliumRemotePreamble();
	int			i;

	MyceliumRunLocalSql(w->local.data);
	for (i = 0; i < n; i++)
		if (w->conns[i] && w->remote[i].len > 0)
			sqls[i] = psprintf("%s%sSET LOCAL search_path TO DEFAULT",
							   preamble, w->remote[i].data);
	MyceliumRunOnNodes(w->conns, sqls, n);
}

/*
 * add_table_work adds, for one table, the statement for each shard (on
 * its node) and for the shell or reference table on every other node (the
 * standard utility did the local one).  The statement is ddl's text
 * spliced for the target, or, without ddl, fmt with the target's name.
 */
static void
add_table_work(NodeWork *w, MyceliumDistTable *table, MyceliumDdlText *ddl,
			   const char *fmt)
{
	int			i;

	for (i = 0; i < table->nshards; i++)
	{
		MyceliumShard *shard = &table->shards[i];
		char	   *target = MyceliumShardQualifiedName(table, shard);

		node_work_append(w, shard->node_name,
						 ddl ? MyceliumApplyEdits(ddl, target, shard->shard_id) :
						 psprintf(fmt, target));
	}
	node_work_append(w, NULL,
					 ddl ? MyceliumApplyEdits(ddl, shell_name(table), 0) :
					 psprintf(fmt, shell_name(table)));
}

/*
 * process_truncate truncates the shards (and the reference tables' copies)
 * of the distributed tables a TRUNCATE names, after the local TRUNCATE.
 */
static bool
process_truncate(MyceliumUtilityArgs *args, TruncateStmt *stmt)
{
	List	   *tables = NIL;
	ListCell   *lc;
	NodeWork   *w;
	char	   *fmt;

	foreach(lc, stmt->relations)
	{
		MyceliumDistTable *table = dist_table_of(lfirst(lc));

		if (table)
			tables = lappend(tables, table);
	}
	if (tables == NIL || !mycelium_enable_ddl_propagation)
		return false;
	MyceliumRunStandardUtility(args, NULL);
	fmt = psprintf("TRUNCATE TABLE %%s%s%s",
				   stmt->restart_seqs ? " RESTART IDENTITY" : "",
				   stmt->behavior == DROP_CASCADE ? " CASCADE" : "");
	w = node_work_start();
	foreach(lc, tables)
		add_table_work(w, lfirst(lc), NULL, fmt);
	node_work_finish(w);
	return true;
}

/*
 * process_drop_table drops, with the tables a DROP TABLE names, their
 * shards and metadata on every node.  On a node that receives the
 * propagated DROP (propagation off), only the local metadata is cleaned
 * up: each node forgets the tables its own DROP removed.
 */
static bool
process_drop_table(MyceliumUtilityArgs *args, DropStmt *stmt)
{
	List	   *tables = NIL;
	ListCell   *lc;
	NodeWork   *w;
	char	   *fmt;

	foreach(lc, stmt->objects)
	{
		MyceliumDistTable *table = dist_table_of(makeRangeVarFromNameList(lfirst(lc)));

		if (table)
			tables = lappend(tables, table);
	}
	if (tables == NIL)
		return false;
	MyceliumRunStandardUtility(args, NULL);
	MyceliumForgetDroppedTables(tables);
	if (!mycelium_enable_ddl_propagation)
		return true;
	fmt = psprintf("DROP TABLE IF EXISTS %%s%s",
				   stmt->behavior == DROP_CASCADE ? " CASCADE" : "");
	w = node_work_start();
	foreach(lc, tables)
		add_table_work(w, lfirst(lc), NULL, fmt);
	/* the local table went with the standard DROP: keep only shards here */
	node_work_finish(w);
	return true;
}

/*
 * process_drop_index drops the shards' copies of the indexes a DROP INDEX
 * names (index_<shard id>), and the index on every other node's table.
 */
static bool
process_drop_index(MyceliumUtilityArgs *args, DropStmt *stmt)
{
	List	   *work = NIL;
	ListCell   *lc;
	NodeWork   *w;

	foreach(lc, stmt->objects)
	{
		RangeVar   *rv = makeRangeVarFromNameList(lfirst(lc));
		Oid			indexid = RangeVarGetRelid(rv, NoLock, true);
		Oid			relid = OidIsValid(indexid) ? IndexGetRelation(indexid, true) : InvalidOid;
		MyceliumDistTable *table = OidIsValid(relid) ?
			MyceliumCopyDistTable(MyceliumGetDistTable(relid)) : NULL;

		if (table == NULL)
			continue;
		if (stmt->concurrent)
			MyceliumRefuse(table, "drop an index concurrently on",
				   "Use DROP INDEX without CONCURRENTLY: it runs in one transaction on every node.");
		work = lappend(work, list_make2(table, get_rel_name(indexid)));
	}
	if (work == NIL || !mycelium_enable_ddl_propagation)
		return false;
	MyceliumRunStandardUtility(args, NULL);
	w = node_work_start();
	foreach(lc, work)
	{
		MyceliumDistTable *table = linitial(lfirst(lc));
		char	   *index = lsecond(lfirst(lc));
		const char *cascade = stmt->behavior == DROP_CASCADE ? " CASCADE" : "";
		int			i;

		for (i = 0; i < table->nshards; i++)
			node_work_append(w, table->shards[i].node_name,
							 psprintf("DROP INDEX IF EXISTS %s%s",
									  quote_qualified_identifier(table->schema_name,
																 MyceliumShardObjectName(index, table->shards[i].shard_id)),
									  cascade));
		node_work_append(w, NULL, psprintf("DROP INDEX IF EXISTS %s%s",
										   quote_qualified_identifier(table->schema_name, index),
										   cascade));
	}
	node_work_finish(w);
	return true;
}

/*
 * check_drop_schema refuses DROP SCHEMA ... CASCADE of a schema holding a
 * distributed or reference table: its shards on other nodes would stay.
 */
static void
check_drop_schema(DropStmt *stmt)
{
	ListCell   *lc;

	foreach(lc, MyceliumAllDistTables())
	{
		MyceliumDistTable *table = lfirst(lc);
		ListCell   *lc2;

		foreach(lc2, stmt->objects)
			if (strcmp(table->schema_name, strVal(lfirst(lc2))) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot drop schema \"%s\" because it contains %s table \"%s\"",
								table->schema_name,
								table->method == MYCELIUM_DIST_REFERENCE ? "reference" : "distributed",
								table->rel_name),
						 errhint("Drop its distributed and reference tables first with DROP TABLE, which drops their shards on every node.")));
	}
}

/*
 * grant_tables returns the distributed and reference tables a GRANT or
 * REVOKE on tables names (one by one or ALL TABLES IN SCHEMA).
 */
static List *
grant_tables(GrantStmt *stmt)
{
	List	   *tables = NIL;
	ListCell   *lc;

	if (stmt->objtype != OBJECT_TABLE)
		return NIL;
	if (stmt->targtype == ACL_TARGET_OBJECT)
	{
		foreach(lc, stmt->objects)
		{
			MyceliumDistTable *table = dist_table_of(lfirst(lc));

			if (table)
				tables = lappend(tables, table);
		}
	}
	else if (stmt->targtype == ACL_TARGET_ALL_IN_SCHEMA)
	{
		foreach(lc, MyceliumAllDistTables())
		{
			MyceliumDistTable *table = lfirst(lc);
			ListCell   *lc2;

			foreach(lc2, stmt->objects)
				if (strcmp(table->schema_name, strVal(lfirst(lc2))) == 0)
					tables = lappend(tables, MyceliumCopyDistTable(table));
		}
	}
	return tables;
}

/*
 * process_grant applies a GRANT or REVOKE on tables to the shards and the
 * other nodes' tables: the text between ON and TO/FROM becomes "TABLE
 * <the node's shards and shell>", privileges and grantees stay as written.
 */
static bool
process_grant(MyceliumUtilityArgs *args, GrantStmt *stmt)
{
	List	   *tables = grant_tables(stmt);
	MyceliumDdlText *ddl;
	int			on = -1,
				to = -1;
	int			i;
	ListCell   *lc;
	NodeWork   *w;

	if (tables == NIL || !mycelium_enable_ddl_propagation)
		return false;
	ddl = MyceliumDdlTextFor(args);
	for (i = 0; i < ddl->ntokens; i++)
	{
		int			code = MyceliumTokenCode(ddl, i);

		if (on < 0 && code == ON)
			on = i;
		else if (on >= 0 && (code == (stmt->is_grant ? TO : FROM)))
		{
			to = i;
			break;
		}
	}
	if (on < 0 || to <= on + 1)
		elog(ERROR, "could not find the objects of a GRANT or REVOKE statement");
	MyceliumEditRelation(ddl, on + 1, to - 1);
	MyceliumRunStandardUtility(args, NULL);
	w = node_work_start();
	foreach(lc, tables)
	{
		MyceliumDistTable *table = lfirst(lc);

		for (i = 0; i < table->nshards; i++)
			node_work_append(w, table->shards[i].node_name,
							 MyceliumApplyEdits(ddl, psprintf("TABLE %s",
															  MyceliumShardQualifiedName(table, &table->shards[i])), 0));
		node_work_append(w, NULL, MyceliumApplyEdits(ddl, psprintf("TABLE %s", shell_name(table)), 0));
	}
	node_work_finish(w);
	return true;
}

/*
 * process_rename propagates renaming a column other than the distribution
 * column; every other rename of (or on) a distributed table is refused,
 * because shard, index and constraint names derive from the table's.
 */
static bool
process_rename(MyceliumUtilityArgs *args, RenameStmt *stmt)
{
	MyceliumDistTable *table;
	MyceliumDdlText *ddl;
	int			tok;
	NodeWork   *w;

	if (stmt->relation == NULL || (table = dist_table_of(stmt->relation)) == NULL)
		return false;
	if (stmt->renameType == OBJECT_TABLE)
		MyceliumRefuse(table, "rename", "Undistribute the table, rename it, and distribute it again.");
	if (stmt->renameType != OBJECT_COLUMN)
		MyceliumRefuse(table, "rename constraints of", "Drop the constraint and add it again with the new name.");
	if (table->dist_column && strcmp(stmt->subname, table->dist_column) == 0)
		MyceliumRefuse(table, "rename the distribution column of", NULL);
	if (!mycelium_enable_ddl_propagation)
		return false;
	ddl = MyceliumDdlTextFor(args);
	tok = MyceliumTokenAt(ddl, stmt->relation->location);
	MyceliumEditRelation(ddl, tok, MyceliumNameEnd(ddl, tok));
	MyceliumRunStandardUtility(args, NULL);
	w = node_work_start();
	add_table_work(w, table, ddl, NULL);
	node_work_finish(w);
	return true;
}

/*
 * index_table_of returns the distributed table whose index a RangeVar
 * names, or NULL.
 */
static MyceliumDistTable *
index_table_of(RangeVar *rv)
{
	Oid			indexid = RangeVarGetRelid(rv, NoLock, true);
	Oid			relid;

	if (!OidIsValid(indexid) || get_rel_relkind(indexid) != RELKIND_INDEX)
		return NULL;
	relid = IndexGetRelation(indexid, true);
	return OidIsValid(relid) ? MyceliumCopyDistTable(MyceliumGetDistTable(relid)) : NULL;
}

/*
 * check_foreign_keys refuses foreign keys, among a list of constraints
 * (and of column definitions with theirs), that reference a distributed
 * or reference table: its local table is an empty shell (or one node's
 * copy), so they could not be checked against its rows.
 */
static void
check_foreign_keys(List *elts)
{
	ListCell   *lc;

	foreach(lc, elts)
	{
		Node	   *elt = lfirst(lc);
		Constraint *con;
		MyceliumDistTable *table;

		if (IsA(elt, ColumnDef))
		{
			check_foreign_keys(((ColumnDef *) elt)->constraints);
			continue;
		}
		if (!IsA(elt, Constraint))
			continue;
		con = (Constraint *) elt;
		if (con->contype == CONSTR_FOREIGN && con->pktable &&
			(table = dist_table_of(con->pktable)) != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot create a foreign key referencing %s table \"%s\"",
							table->method == MYCELIUM_DIST_REFERENCE ? "reference" : "distributed",
							table->rel_name),
					 errhint("Foreign keys are not enforced across shards and nodes.")));
	}
}

/*
 * alter_table_elements returns the column definitions and constraints an
 * ALTER TABLE adds.
 */
static List *
alter_table_elements(AlterTableStmt *stmt)
{
	List	   *elts = NIL;
	ListCell   *lc;

	foreach(lc, stmt->cmds)
	{
		AlterTableCmd *cmd = lfirst(lc);

		if ((cmd->subtype == AT_AddColumn || cmd->subtype == AT_AddConstraint) && cmd->def)
			elts = lappend(elts, cmd->def);
	}
	return elts;
}

/*
 * check_other refuses the statements that would silently not apply to a
 * distributed table's rows: moving it to another schema, triggers,
 * policies, rules, ALTER INDEX on its indexes, and foreign keys (from any
 * table) that reference it.
 */
static void
check_other(Node *stmt)
{
	MyceliumDistTable *table = NULL;

	switch (nodeTag(stmt))
	{
		case T_CreateStmt:
			{
				ListCell   *lc;

				check_foreign_keys(((CreateStmt *) stmt)->tableElts);
				foreach(lc, ((CreateStmt *) stmt)->inhRelations)
					if ((table = dist_table_of(lfirst(lc))))
						MyceliumRefuse(table, "inherit from or add a partition to",
									   "Its rows live in its shards, not in the table.");
				break;
			}
		case T_AlterObjectSchemaStmt:
			if (((AlterObjectSchemaStmt *) stmt)->relation &&
				(table = dist_table_of(((AlterObjectSchemaStmt *) stmt)->relation)))
				MyceliumRefuse(table, "change the schema of", "Undistribute the table, move it, and distribute it again.");
			break;
		case T_CreateTrigStmt:
			if ((table = dist_table_of(((CreateTrigStmt *) stmt)->relation)))
				MyceliumRefuse(table, "create a trigger on", "Triggers on the table would not fire for rows stored in its shards.");
			break;
		case T_CreatePolicyStmt:
			if ((table = dist_table_of(((CreatePolicyStmt *) stmt)->table)))
				MyceliumRefuse(table, "create a row security policy on", NULL);
			break;
		case T_RuleStmt:
			if ((table = dist_table_of(((RuleStmt *) stmt)->relation)))
				MyceliumRefuse(table, "create a rule on", NULL);
			break;
		case T_RenameStmt:
			if (((RenameStmt *) stmt)->renameType == OBJECT_INDEX &&
				(table = index_table_of(((RenameStmt *) stmt)->relation)))
				MyceliumRefuse(table, "rename an index of", "Drop the index and create it again with the new name.");
			break;
		case T_AlterTableStmt:
			if (((AlterTableStmt *) stmt)->objtype == OBJECT_INDEX &&
				(table = index_table_of(((AlterTableStmt *) stmt)->relation)))
				MyceliumRefuse(table, "alter an index of", "Drop the index and create it again.");
			check_foreign_keys(alter_table_elements((AlterTableStmt *) stmt));
			break;
		default:
			break;
	}
}

/*
 * MyceliumProcessDdl applies a DDL statement to the distributed and
 * reference tables it names; returns false when the statement does not
 * concern them (or propagation is off) and should run unchanged.
 */
bool
MyceliumProcessDdl(MyceliumUtilityArgs *args)
{
	Node	   *stmt = args->pstmt->utilityStmt;

	check_other(stmt);
	switch (nodeTag(stmt))
	{
		case T_TruncateStmt:
			return process_truncate(args, (TruncateStmt *) stmt);
		case T_DropStmt:
			{
				DropStmt   *drop = (DropStmt *) stmt;

				if (drop->removeType == OBJECT_TABLE)
					return process_drop_table(args, drop);
				if (drop->removeType == OBJECT_INDEX)
					return process_drop_index(args, drop);
				if (drop->removeType == OBJECT_SCHEMA && drop->behavior == DROP_CASCADE)
					check_drop_schema(drop);
				return false;
			}
		case T_GrantStmt:
			return process_grant(args, (GrantStmt *) stmt);
		case T_RenameStmt:
			return process_rename(args, (RenameStmt *) stmt);
		case T_AlterTableStmt:
			{
				AlterTableStmt *alter = (AlterTableStmt *) stmt;
				MyceliumDistTable *table;

				if (alter->objtype != OBJECT_TABLE ||
					(table = dist_table_of(alter->relation)) == NULL)
					return false;
				return MyceliumProcessAlterTable(args, table);
			}
		case T_IndexStmt:
			{
				IndexStmt  *index = (IndexStmt *) stmt;
				MyceliumDistTable *table = dist_table_of(index->relation);

				return table ? MyceliumProcessCreateIndex(args, table) : false;
			}
		default:
			return false;
	}
}

/*
 * MyceliumForgetDroppedTables deletes the local metadata of tables just
 * dropped here.  It runs as the extension's owner: the user may drop a
 * table it owns without any right on Mycelium's catalog.
 */
void
MyceliumForgetDroppedTables(List *dist_tables)
{
	Oid			save_userid;
	int			save_sec_context;
	Oid			owner = MyceliumExtensionOwner();
	ListCell   *lc;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(owner, save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		foreach(lc, dist_tables)
		{
			MyceliumDistTable *table = lfirst(lc);
			Oid			types[1] = {OIDOID};
			Datum		values[1];

			values[0] = ObjectIdGetDatum(table->relid);
			SPI_connect();
			/* not MyceliumSpiExecLatest: the catalog's triggers must fire */
			if (SPI_execute_with_args(FORGET_TABLE_SQL, 1, types, values, NULL,
									  false, 0) != SPI_OK_DELETE)
				elog(ERROR, "could not delete the metadata of table \"%s\"", table->rel_name);
			SPI_finish();
		}
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(save_userid, save_sec_context);
	}
	PG_END_TRY();
	CommandCounterIncrement();
}
