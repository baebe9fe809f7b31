/*-------------------------------------------------------------------------
 *
 * import.c
 *	  IMPORT FOREIGN SCHEMA for SQLite databases.
 *
 * Every table and view of the database (but SQLite's own sqlite_* tables)
 * becomes a foreign table; LIMIT TO and EXCEPT filter by name.  The remote
 * schema name is not used: a SQLite file has one schema ("main").  Column
 * types follow SQLite's affinity rules on the declared type, refined for
 * the names that carry a more precise meaning (see map_type and
 * docs/sqlite.md); NOT NULL and PRIMARY KEY columns are NOT NULL.
 *
 * IDENTIFICATION
 *	  src/sqlite/import.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "nodes/parsenodes.h"
#include "utils/builtins.h"
#include "utils/formatting.h"

#include "sqlite/sqlite_fdw.h"

/*
 * map_type maps a SQLite declared type to a PostgreSQL type.  "INT" is
 * tested first, as SQLite does; names SQLite gives NUMERIC affinity but
 * that mean something precise (BOOLEAN, DATE, DATETIME, TIMESTAMP, UUID,
 * JSON) get that type; an empty or unknown declared type becomes text,
 * which reads any storage class.
 */
static const char *
map_type(const char *decl)
{
	char	   *d = asc_toupper(decl, strlen(decl));

	if (strstr(d, "INT"))
		return "bigint";
	if (strstr(d, "BOOL"))
		return "boolean";
	if (strstr(d, "TIMESTAMPTZ") || strstr(d, "WITH TIME ZONE"))
		return "timestamp with time zone";
	if (strstr(d, "DATETIME") || strstr(d, "TIMESTAMP"))
		return "timestamp";
	if (strstr(d, "DATE"))
		return "date";
	if (strstr(d, "UUID"))
		return "uuid";
	if (strstr(d, "JSONB"))
		return "jsonb";
	if (strstr(d, "JSON"))
		return "json";
	if (strstr(d, "CHAR") || strstr(d, "CLOB") || strstr(d, "TEXT"))
		return "text";
	if (strstr(d, "BLOB"))
		return "bytea";
	if (strstr(d, "REAL") || strstr(d, "FLOA") || strstr(d, "DOUB"))
		return "double precision";
	if (strstr(d, "NUMERIC") || strstr(d, "DECIMAL"))
		return "numeric";
	return "text";
}

/*
 * wanted applies LIMIT TO / EXCEPT to a table name.
 */
static bool
wanted(ImportForeignSchemaStmt *stmt, const char *name)
{
	ListCell   *lc;
	bool		listed = false;

	if (stmt->list_type == FDW_IMPORT_SCHEMA_ALL)
		return true;
	foreach(lc, stmt->table_list)
		if (strcmp(((RangeVar *) lfirst(lc))->relname, name) == 0)
			listed = true;
	return stmt->list_type == FDW_IMPORT_SCHEMA_LIMIT_TO ? listed : !listed;
}

/*
 * table_command builds the CREATE FOREIGN TABLE of one SQLite table.
 */
static char *
table_command(MyceliumSqliteConn *conn, ImportForeignSchemaStmt *stmt,
			  const char *table)
{
	StringInfoData sql;
	StringInfoData cmd;
	sqlite3_stmt *pragma;
	int			ncols = 0;

	initStringInfo(&sql);
	appendStringInfoString(&sql, "PRAGMA table_info(");
	MyceliumSqliteQuoteIdent(&sql, table);
	appendStringInfoChar(&sql, ')');

	initStringInfo(&cmd);
	appendStringInfo(&cmd, "CREATE FOREIGN TABLE %s (",
					 quote_identifier(table));
	pragma = MyceliumSqliteAcquireStmt(conn, sql.data);
	while (MyceliumSqliteStep(conn, pragma) == SQLITE_ROW)
	{
		const char *name = (const char *) sqlite3_column_text(pragma, 1);
		const char *decl = (const char *) sqlite3_column_text(pragma, 2);
		bool		notnull = sqlite3_column_int(pragma, 3) != 0 ||
			sqlite3_column_int(pragma, 5) != 0;

		appendStringInfo(&cmd, "%s\n  %s %s", ncols++ > 0 ? "," : "",
						 quote_identifier(name), map_type(decl ? decl : ""));
		if (strlen(name) >= NAMEDATALEN)
			appendStringInfo(&cmd, " OPTIONS (column_name %s)",
							 quote_literal_cstr(name));
		if (notnull)
			appendStringInfoString(&cmd, " NOT NULL");
	}
	MyceliumSqliteReleaseStmt(conn, pragma);
	appendStringInfo(&cmd, "\n) SERVER %s OPTIONS (table %s)",
					 quote_identifier(stmt->server_name),
					 quote_literal_cstr(table));
	return cmd.data;
}

/*
 * MyceliumSqliteImportForeignSchema returns the CREATE FOREIGN TABLE
 * commands for the tables and views of the server's database.
 */
List *
MyceliumSqliteImportForeignSchema(ImportForeignSchemaStmt *stmt, Oid serverOid)
{
	ForeignServer *server = GetForeignServer(serverOid);
	MyceliumSqliteConn *conn = MyceliumSqliteGetConnection(server, false);
	sqlite3_stmt *tables;
	List	   *names = NIL;
	List	   *commands = NIL;
	ListCell   *lc;

	tables = MyceliumSqliteAcquireStmt(conn,
									   "SELECT name FROM sqlite_master "
									   "WHERE type IN ('table', 'view') "
									   "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' "
									   "ORDER BY name");
	while (MyceliumSqliteStep(conn, tables) == SQLITE_ROW)
	{
		const char *name = (const char *) sqlite3_column_text(tables, 0);

		if (wanted(stmt, name))
			names = lappend(names, pstrdup(name));
	}
	MyceliumSqliteReleaseStmt(conn, tables);

	foreach(lc, names)
		commands = lappend(commands, table_command(conn, stmt, lfirst(lc)));
	return commands;
}
