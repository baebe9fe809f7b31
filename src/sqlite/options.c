/*-------------------------------------------------------------------------
 *
 * options.c
 *	  Options of the mycelium_sqlite foreign data wrapper: the validator and
 *	  the accessors the planner and executor use.
 *
 * Server options: database (required), readonly, busy_timeout, batch_size.
 * Table options: table, readonly.  Column option: column_name.  Anything
 * else, on any object, is refused, and so is a bad value.
 *
 * IDENTIFICATION
 *	  src/sqlite/options.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/reloptions.h"
#include "catalog/pg_attribute.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_foreign_data_wrapper.h"
#include "catalog/pg_foreign_server.h"
#include "catalog/pg_foreign_table.h"
#include "catalog/pg_user_mapping.h"
#include "commands/defrem.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "sqlite/sqlite_fdw.h"

PG_FUNCTION_INFO_V1(mycelium_sqlite_fdw_validator);

typedef struct SqliteOption
{
	const char *name;
	Oid			context;		/* catalog the option belongs to */
} SqliteOption;

static const SqliteOption valid_options[] = {
	{"database", ForeignServerRelationId},
	{"readonly", ForeignServerRelationId},
	{"busy_timeout", ForeignServerRelationId},
	{"batch_size", ForeignServerRelationId},
	{"table", ForeignTableRelationId},
	{"readonly", ForeignTableRelationId},
	{"column_name", AttributeRelationId},
	{NULL, InvalidOid}
};

/*
 * option_valid_names lists the options valid in a catalog, for a hint.
 */
static char *
option_valid_names(Oid context)
{
	StringInfoData buf;
	const SqliteOption *opt;

	initStringInfo(&buf);
	for (opt = valid_options; opt->name; opt++)
	{
		if (opt->context != context)
			continue;
		appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "", opt->name);
	}
	return buf.data;
}

/*
 * check_int_option parses an integer option value in [min, max] or raises
 * an error naming the option.
 */
static int
check_int_option(DefElem *def, int min, int max)
{
	char	   *value = defGetString(def);
	int			result;
	const char *hintmsg = NULL;

	if (!parse_int(value, &result, 0, &hintmsg) || result < min || result > max)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid value for option \"%s\": \"%s\"",
						def->defname, value),
				 errdetail("The value must be an integer between %d and %d.",
						   min, max)));
	return result;
}

/*
 * check_option_value checks the value of one known option.  The database
 * path is a file the server opens with its own privileges, so (as for
 * file_fdw) only roles allowed to read server files may set it.
 */
static void
check_option_value(DefElem *def)
{
	if (strcmp(def->defname, "readonly") == 0)
	{
		bool		b;

		if (!parse_bool(defGetString(def), &b))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid value for option \"%s\": \"%s\"",
							def->defname, defGetString(def)),
					 errdetail("The value must be a boolean.")));
	}
	else if (strcmp(def->defname, "busy_timeout") == 0)
		(void) check_int_option(def, 0, INT_MAX);
	else if (strcmp(def->defname, "batch_size") == 0)
		(void) check_int_option(def, 1, 10000);
	else if (strcmp(def->defname, "database") == 0)
	{
		if (defGetString(def)[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"database\" must not be empty")));
		if (!superuser() &&
			!has_privs_of_role(GetUserId(), ROLE_PG_READ_SERVER_FILES))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("permission denied to set option \"database\""),
					 errdetail("Only superusers and roles with privileges of the pg_read_server_files role may set it.")));
	}
	else if (defGetString(def)[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" must not be empty", def->defname)));
}

/*
 * mycelium_sqlite_fdw_validator checks the options of a wrapper, server,
 * user mapping, foreign table or column: every option must be known in its
 * catalog, appear once, and have a valid value; a server needs database.
 */
Datum
mycelium_sqlite_fdw_validator(PG_FUNCTION_ARGS)
{
	List	   *options = untransformRelOptions(PG_GETARG_DATUM(0));
	Oid			catalog = PG_GETARG_OID(1);
	ListCell   *lc;
	bool		has_database = false;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);
		const SqliteOption *opt;
		ListCell   *lc2;
		bool		known = false;

		for (opt = valid_options; opt->name; opt++)
			if (opt->context == catalog && strcmp(opt->name, def->defname) == 0)
				known = true;
		if (!known)
		{
			char	   *names = option_valid_names(catalog);

			ereport(ERROR,
					(errcode(ERRCODE_FDW_INVALID_OPTION_NAME),
					 errmsg("invalid option \"%s\"", def->defname),
					 names[0] ? errhint("Valid options in this context are: %s.", names)
					 : errhint("There are no valid options in this context.")));
		}
		foreach(lc2, options)
		{
			DefElem    *other = (DefElem *) lfirst(lc2);

			if (other != def && strcmp(other->defname, def->defname) == 0)
				ereport(ERROR,
						(errcode(ERRCODE_SYNTAX_ERROR),
						 errmsg("option \"%s\" specified more than once",
								def->defname)));
		}
		check_option_value(def);
		if (strcmp(def->defname, "database") == 0)
			has_database = true;
	}

	if (catalog == ForeignServerRelationId && !has_database)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("option \"database\" is required for a mycelium_sqlite server")));

	PG_RETURN_VOID();
}

/*
 * MyceliumSqliteGetServerOptions resolves a server's options, defaults
 * included.  The validator has already checked every value.
 */
void
MyceliumSqliteGetServerOptions(ForeignServer *server,
							   MyceliumSqliteServerOptions *opts)
{
	ListCell   *lc;

	opts->database = NULL;
	opts->readonly = false;
	opts->busy_timeout = MYCELIUM_SQLITE_DEFAULT_BUSY_TIMEOUT;
	opts->batch_size = MYCELIUM_SQLITE_DEFAULT_BATCH_SIZE;

	foreach(lc, server->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "database") == 0)
			opts->database = defGetString(def);
		else if (strcmp(def->defname, "readonly") == 0)
			opts->readonly = defGetBoolean(def);
		else if (strcmp(def->defname, "busy_timeout") == 0)
			opts->busy_timeout = check_int_option(def, 0, INT_MAX);
		else if (strcmp(def->defname, "batch_size") == 0)
			opts->batch_size = check_int_option(def, 1, 10000);
	}
	if (opts->database == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_OPTION_NAME_NOT_FOUND),
				 errmsg("server \"%s\" has no option \"database\"",
						server->servername)));
}

/*
 * MyceliumSqliteTableName returns the SQLite table a foreign table reads:
 * its "table" option, or else its own name.
 */
char *
MyceliumSqliteTableName(Oid relid)
{
	ForeignTable *table = GetForeignTable(relid);
	ListCell   *lc;

	foreach(lc, table->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "table") == 0)
			return defGetString(def);
	}
	return get_rel_name(relid);
}

/*
 * MyceliumSqliteColumnName returns the SQLite column of an attribute: its
 * "column_name" option, or else the attribute's name.
 */
char *
MyceliumSqliteColumnName(Oid relid, AttrNumber attnum)
{
	List	   *options = GetForeignColumnOptions(relid, attnum);
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "column_name") == 0)
			return defGetString(def);
	}
	return get_attname(relid, attnum, false);
}

/*
 * MyceliumSqliteTableIsReadonly tells whether the table's own "readonly"
 * option forbids writes (the server's option is checked separately).
 */
bool
MyceliumSqliteTableIsReadonly(Oid relid)
{
	ForeignTable *table = GetForeignTable(relid);
	ListCell   *lc;

	foreach(lc, table->options)
	{
		DefElem    *def = (DefElem *) lfirst(lc);

		if (strcmp(def->defname, "readonly") == 0)
			return defGetBoolean(def);
	}
	return false;
}

/*
 * MyceliumSqliteCheckWritable raises an error if the table or its server is
 * read-only, before any SQLite statement is attempted.
 */
void
MyceliumSqliteCheckWritable(Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	ForeignTable *table = GetForeignTable(relid);
	ForeignServer *server = GetForeignServer(table->serverid);
	MyceliumSqliteServerOptions opts;

	MyceliumSqliteGetServerOptions(server, &opts);
	if (opts.readonly)
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot modify foreign table \"%s\"",
						RelationGetRelationName(rel)),
				 errdetail("Server \"%s\" has option readonly set.",
						   server->servername)));
	if (MyceliumSqliteTableIsReadonly(relid))
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("cannot modify foreign table \"%s\"",
						RelationGetRelationName(rel)),
				 errdetail("The foreign table has option readonly set.")));
}
