/*-------------------------------------------------------------------------
 *
 * ddl_alter.c
 *	  ALTER TABLE and CREATE INDEX on distributed and reference tables.
 *
 * Each ALTER TABLE subcommand is checked against what can be applied to
 * every shard safely (refused with 0A000 otherwise), then the statement's
 * text is turned into one version per shard and per node (rewrite.c).
 * Indexes of a shard, and constraints that own one (PRIMARY KEY, UNIQUE,
 * EXCLUDE), are named <name>_<shard id>, because index names are unique
 * per schema and all shards share the table's schema; CHECK constraints
 * keep their name (as shard/table_ddl.c creates them).  So that every node
 * and shard agrees on names, an index or constraint the user left unnamed
 * gets its name here, chosen the way PostgreSQL would choose it, before
 * the statement runs anywhere.
 *
 * IDENTIFICATION
 *	  src/commands/ddl_alter.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_constraint.h"
#include "commands/defrem.h"
#include "nodes/nodeFuncs.h"
#include "parser/gramparse.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

#include "cluster/cluster.h"
#include "commands/commands.h"



/*
 * MyceliumCheckUniqueColumns refuses a unique index or constraint of a
 * hash or range table whose columns do not include the distribution
 * column: uniqueness is enforced per shard, so only then is it global.
 */
void
MyceliumCheckUniqueColumns(MyceliumDistTable *table, List *columns, const char *what)
{
	ListCell   *lc;

	if (table->method == MYCELIUM_DIST_REFERENCE)
		return;
	foreach(lc, columns)
		if (lfirst(lc) && strcmp(lfirst(lc), table->dist_column) == 0)
			return;
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot create %s on distributed table \"%s\" without its distribution column \"%s\"",
					what, table->rel_name, table->dist_column),
			 errdetail("Uniqueness is enforced within each shard, so it holds for the whole table only when the distribution column is part of the key."),
			 errhint("Include column \"%s\" in the %s.", table->dist_column, what)));
}

/*
 * key_names returns the column names of a constraint's key (String nodes
 * as C strings).
 */
static List *
key_names(List *keys)
{
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, keys)
		names = lappend(names, strVal(lfirst(lc)));
	return names;
}

/*
 * exclusion_names returns the columns an exclusion constraint compares
 * with "=" (the only ones that make it hold across shards).
 */
static List *
exclusion_names(List *exclusions)
{
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, exclusions)
	{
		List	   *pair = lfirst(lc);
		IndexElem  *elem = linitial(pair);
		List	   *op = lsecond(pair);

		if (elem->name && strcmp(strVal(llast(op)), "=") == 0)
			names = lappend(names, elem->name);
	}
	return names;
}

/*
 * check_constraint refuses a constraint that shards cannot enforce.
 */
static void
check_constraint(MyceliumDistTable *table, Constraint *con, const char *column)
{
	switch (con->contype)
	{
		case CONSTR_FOREIGN:
			MyceliumRefuse(table, "add a foreign key to",
						 "Foreign keys are not enforced across shards and nodes.");
			break;
		case CONSTR_PRIMARY:
		case CONSTR_UNIQUE:
			if (con->indexname)
				MyceliumRefuse(table, "add a constraint using an existing index to",
							 "Add the constraint with its column list instead.");
			MyceliumCheckUniqueColumns(table,
									   column ? list_make1((char *) column) : key_names(con->keys),
									   con->contype == CONSTR_PRIMARY ? "a primary key" : "a unique constraint");
			break;
		case CONSTR_EXCLUSION:
			MyceliumCheckUniqueColumns(table, exclusion_names(con->exclusions),
									   "an exclusion constraint");
			break;
		case CONSTR_IDENTITY:
			MyceliumRefuse(table, "add an identity column to",
						 "Use a column with DEFAULT mycelium.next_id(): values unique across the mesh.");
			break;
		default:
			break;
	}
}

/*
 * first_column_walker finds the first column a raw expression refers to.
 */
static bool
first_column_walker(Node *node, char **name)
{
	if (node == NULL || *name)
		return false;
	if (IsA(node, ColumnRef))
	{
		Node	   *last = llast(((ColumnRef *) node)->fields);

		if (IsA(last, String))
			*name = strVal(last);
		return *name != NULL;
	}
	return raw_expression_tree_walker(node, first_column_walker, (void *) name);
}

/*
 * join_names joins column names with "_" as PostgreSQL does for chosen
 * index names.
 */
static char *
join_names(List *names)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, names)
		appendStringInfo(&buf, "%s%s", buf.len ? "_" : "", (char *) lfirst(lc));
	return buf.len ? buf.data : NULL;
}

/*
 * choose_constraint_name picks the name PostgreSQL would give an unnamed
 * constraint (column: the column of an inline constraint).
 */
static char *
choose_constraint_name(MyceliumDistTable *table, Oid nsp, Constraint *con,
					   const char *column)
{
	char	   *cols = column ? pstrdup(column) : NULL;

	switch (con->contype)
	{
		case CONSTR_PRIMARY:
			return ChooseRelationName(table->rel_name, NULL, "pkey", nsp, true);
		case CONSTR_UNIQUE:
			return ChooseRelationName(table->rel_name, cols ? cols : join_names(key_names(con->keys)),
									  "key", nsp, true);
		case CONSTR_EXCLUSION:
			return ChooseRelationName(table->rel_name, join_names(exclusion_names(con->exclusions)),
									  "excl", nsp, true);
		default:
			if (cols == NULL)
				first_column_walker(con->raw_expr, &cols);
			return ChooseConstraintName(table->rel_name, cols, "check", nsp, NIL);
	}
}

/*
 * name_constraint makes sure a CHECK, PRIMARY KEY, UNIQUE or EXCLUDE
 * constraint has a name and marks it to get the shard suffix.
 */
static void
name_constraint(MyceliumDdlText *ddl, MyceliumDistTable *table, Oid nsp,
				Constraint *con, const char *column)
{
	int			tok;
	bool		per_shard = con->contype != CONSTR_CHECK;

	if (con->contype != CONSTR_CHECK && con->contype != CONSTR_PRIMARY &&
		con->contype != CONSTR_UNIQUE && con->contype != CONSTR_EXCLUSION)
		return;
	tok = MyceliumTokenAt(ddl, con->location);
	if (con->conname)
	{
		if (MyceliumTokenCode(ddl, tok) != CONSTRAINT)
			elog(ERROR, "could not find the name of constraint \"%s\" in the statement text",
				 con->conname);
		MyceliumEditName(ddl, tok + 1, con->conname, per_shard);
	}
	else
	{
		con->conname = choose_constraint_name(table, nsp, con, column);
		MyceliumEditInsertName(ddl, tok, con->conname, "CONSTRAINT ", per_shard);
	}
}

/*
 * is_check_constraint says whether the table's constraint of that name is
 * a CHECK constraint (whose shard copies keep the name).
 */
static bool
is_check_constraint(Oid relid, const char *name)
{
	Oid			conid = get_relation_constraint_oid(relid, name, true);
	HeapTuple	tup;
	bool		result = false;

	if (!OidIsValid(conid))
		return false;
	tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conid));
	if (HeapTupleIsValid(tup))
	{
		result = ((Form_pg_constraint) GETSTRUCT(tup))->contype == CONSTRAINT_CHECK;
		ReleaseSysCache(tup);
	}
	return result;
}

/*
 * segment_token returns the first token of subcommand i of an ALTER TABLE
 * whose subcommands start after token first: subcommands are separated by
 * commas outside parentheses and brackets.
 */
static int
segment_token(MyceliumDdlText *ddl, int first, int i)
{
	int			depth = 0;
	int			t;

	for (t = first; t < ddl->ntokens && i > 0; t++)
	{
		int			code = MyceliumTokenCode(ddl, t);

		if (code == '(' || code == '[')
			depth++;
		else if (code == ')' || code == ']')
			depth--;
		else if (code == ',' && depth == 0)
			i--;
	}
	return t;
}

/*
 * name_token_after returns the token of the object name that follows
 * `keyword` [IF EXISTS] from token t on.
 */
static int
name_token_after(MyceliumDdlText *ddl, int t, int keyword)
{
	while (t < ddl->ntokens && MyceliumTokenCode(ddl, t) != keyword)
		t++;
	t++;
	if (MyceliumTokenCode(ddl, t) == IF_P)
		t += 2;
	return t;
}

/*
 * check_alter_cmd refuses what cannot be applied to every shard, and marks
 * the names in one subcommand (whose text starts at token seg).
 */
static void
check_alter_cmd(MyceliumDdlText *ddl, MyceliumDistTable *table, Oid nsp,
				AlterTableCmd *cmd, int seg)
{
	bool		dist_col = table->dist_column && cmd->name &&
		strcmp(cmd->name, table->dist_column) == 0;
	ListCell   *lc;

	switch (cmd->subtype)
	{
		case AT_AddColumn:
			{
				ColumnDef  *def = castNode(ColumnDef, cmd->def);
				char	   *type = strVal(llast(def->typeName->names));

				if (strstr(type, "serial") != NULL && list_length(def->typeName->names) == 1)
					MyceliumRefuse(table, "add a serial column to",
								 "Each shard would number its rows on its own. Use DEFAULT mycelium.next_id() instead.");
				foreach(lc, def->constraints)
				{
					check_constraint(table, lfirst(lc), def->colname);
					name_constraint(ddl, table, nsp, lfirst(lc), def->colname);
				}
				break;
			}
		case AT_DropColumn:
			if (dist_col)
				MyceliumRefuse(table, "drop the distribution column of",
						   "Undistribute the table first, or drop the whole table.");
			break;
		case AT_AlterColumnType:
			if (dist_col)
				MyceliumRefuse(table, "change the type of the distribution column of",
							 "Rows would hash to other shards. Undistribute the table first.");
			break;
		case AT_AddConstraint:
			check_constraint(table, castNode(Constraint, cmd->def), NULL);
			name_constraint(ddl, table, nsp, castNode(Constraint, cmd->def), NULL);
			break;
		case AT_DropConstraint:
		case AT_ValidateConstraint:
			MyceliumEditName(ddl, name_token_after(ddl, seg, CONSTRAINT), cmd->name,
							 !is_check_constraint(table->relid, cmd->name));
			break;
		case AT_ColumnDefault:
		case AT_DropNotNull:
		case AT_SetNotNull:
		case AT_SetStatistics:
		case AT_SetOptions:
		case AT_ResetOptions:
		case AT_SetStorage:
		case AT_SetCompression:
		case AT_SetRelOptions:
		case AT_ResetRelOptions:
		case AT_ChangeOwner:
		case AT_DropExpression:
			break;
		default:
			MyceliumRefuse(table, "run this form of ALTER TABLE on",
						 "Supported: ADD/DROP COLUMN, ALTER COLUMN TYPE/SET DEFAULT/DROP DEFAULT/SET NOT NULL/DROP NOT NULL/SET STATISTICS/SET STORAGE, ADD/DROP/VALIDATE CONSTRAINT, SET/RESET (storage parameters), OWNER TO.");
	}
}

/*
 * run_everywhere runs the adjusted local statement, then each shard's and
 * every other node's version of it.
 */
static void
run_everywhere(MyceliumUtilityArgs *args, Node *local_stmt, MyceliumDdlText *ddl,
			   MyceliumDistTable *table)
{
	List	   *nodes;
	MyceliumConnection **conns;
	char	  **sqls;
	char	   *preamble;
	StringInfoData *remote;
	ListCell   *lc;
	int			n;
	int			i;

	MyceliumRunStandardUtility(args, local_stmt);
	conns = MyceliumConnectOtherNodes(&nodes);
	n = list_length(nodes);
	remote = palloc0(sizeof(StringInfoData) * Max(n, 1));
	sqls = palloc0(sizeof(char *) * Max(n, 1));
	preamble = MyceliumRemotePreamble();
	for (i = 0; i < n; i++)
	{
		initStringInfo(&remote[i]);
		appendStringInfo(&remote[i], "%s%s;", preamble,
						 MyceliumApplyEdits(ddl, quote_qualified_identifier(table->schema_name,
																			table->rel_name), 0));
	}
	for (i = 0; i < table->nshards; i++)
	{
		MyceliumShard *shard = &table->shards[i];
		char	   *sql = MyceliumApplyEdits(ddl, MyceliumShardQualifiedName(table, shard),
											 shard->shard_id);
		int			k = 0;

		if (shard->is_local)
		{
			MyceliumRunLocalSql(sql);
			continue;
		}
		foreach(lc, nodes)
		{
			if (strcmp(((MyceliumNode *) lfirst(lc))->node_name, shard->node_name) == 0)
				appendStringInfo(&remote[k], "%s;", sql);
			k++;
		}
	}
	for (i = 0; i < n; i++)
		if (conns[i])
			sqls[i] = psprintf("%sSET LOCAL search_path TO DEFAULT", remote[i].data);
	MyceliumRunOnNodes(conns, sqls, n);
}

/*
 * MyceliumProcessAlterTable checks and propagates an ALTER TABLE on a
 * distributed or reference table.
 */
bool
MyceliumProcessAlterTable(MyceliumUtilityArgs *args, MyceliumDistTable *table)
{
	AlterTableStmt *stmt = copyObject(castNode(AlterTableStmt, args->pstmt->utilityStmt));
	MyceliumDdlText *ddl = MyceliumDdlTextFor(args);
	Oid			nsp = get_rel_namespace(table->relid);
	int			tok = MyceliumTokenAt(ddl, stmt->relation->location);
	int			last = MyceliumNameEnd(ddl, tok);
	int			first = last + 1;
	int			i = 0;
	ListCell   *lc;

	if (!mycelium_enable_ddl_propagation)
		return false;
	MyceliumEditRelation(ddl, tok, last);
	if (MyceliumTokenCode(ddl, first) == '*')
		first++;
	foreach(lc, stmt->cmds)
		check_alter_cmd(ddl, table, nsp, lfirst(lc), segment_token(ddl, first, i++));
	run_everywhere(args, (Node *) stmt, ddl, table);
	return true;
}

/*
 * index_column_names returns the names PostgreSQL would join into a chosen
 * index name: each column's name, or "expr".
 */
static List *
index_column_names(List *params)
{
	List	   *names = NIL;
	ListCell   *lc;

	foreach(lc, params)
	{
		IndexElem  *elem = lfirst(lc);

		names = lappend(names, elem->indexcolname ? elem->indexcolname :
						elem->name ? elem->name : "expr");
	}
	return names;
}

/*
 * MyceliumProcessCreateIndex creates an index on a distributed or
 * reference table and its copy (<name>_<shard id>) on every shard.
 */
bool
MyceliumProcessCreateIndex(MyceliumUtilityArgs *args, MyceliumDistTable *table)
{
	IndexStmt  *stmt = copyObject(castNode(IndexStmt, args->pstmt->utilityStmt));
	MyceliumDdlText *ddl;
	int			tok;
	int			t;

	if (!mycelium_enable_ddl_propagation)
		return false;
	if (stmt->concurrent)
		MyceliumRefuse(table, "create an index concurrently on",
					 "Use CREATE INDEX without CONCURRENTLY: it runs in one transaction on every node.");
	if (stmt->unique)
	{
		List	   *cols = NIL;
		ListCell   *lc;

		foreach(lc, stmt->indexParams)
			cols = lappend(cols, ((IndexElem *) lfirst(lc))->name);
		MyceliumCheckUniqueColumns(table, cols, "a unique index");
	}
	ddl = MyceliumDdlTextFor(args);
	tok = MyceliumTokenAt(ddl, stmt->relation->location);
	MyceliumEditRelation(ddl, tok, MyceliumNameEnd(ddl, tok));
	for (t = 0; t < ddl->ntokens && MyceliumTokenCode(ddl, t) != INDEX; t++)
		;
	t++;
	if (MyceliumTokenCode(ddl, t) == IF_P)
		t += 3;
	if (stmt->idxname)
		MyceliumEditName(ddl, t, stmt->idxname, true);
	else
	{
		stmt->idxname = ChooseRelationName(table->rel_name,
										   join_names(index_column_names(stmt->indexParams)),
										   stmt->unique ? "key" : "idx",
										   get_rel_namespace(table->relid), false);
		MyceliumEditInsertName(ddl, t, stmt->idxname, "", true);
	}
	run_everywhere(args, (Node *) stmt, ddl, table);
	return true;
}
