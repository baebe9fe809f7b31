/*-------------------------------------------------------------------------
 *
 * sqlite_fdw.h
 *	  Private declarations of the mycelium_sqlite foreign data wrapper.
 *
 * Nothing outside src/sqlite includes this header: the wrapper is reached
 * only through its SQL-callable handler and validator.  Prototypes are
 * grouped by file so the header reads as a table of contents.
 *
 * IDENTIFICATION
 *	  src/sqlite/sqlite_fdw.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_SQLITE_FDW_H
#define MYCELIUM_SQLITE_FDW_H

#include <sqlite3.h>

#include "datatype/timestamp.h"
#include "foreign/fdwapi.h"
#include "foreign/foreign.h"
#include "lib/stringinfo.h"
#include "nodes/execnodes.h"
#include "nodes/pathnodes.h"
#include "utils/relcache.h"

/* option defaults */
#define MYCELIUM_SQLITE_DEFAULT_BUSY_TIMEOUT	5000
#define MYCELIUM_SQLITE_DEFAULT_BATCH_SIZE		100

/* a server's options, resolved with defaults */
typedef struct MyceliumSqliteServerOptions
{
	char	   *database;		/* path of the SQLite file */
	bool		readonly;		/* open read-only, refuse writes */
	int			busy_timeout;	/* ms to wait for a lock */
	int			batch_size;		/* rows per INSERT statement */
} MyceliumSqliteServerOptions;

/* one cached prepared statement of a connection */
typedef struct MyceliumSqliteStmt
{
	char	   *sql;			/* malloc'd text, the cache key */
	sqlite3_stmt *stmt;
	bool		in_use;			/* taken by a scan or modify */
	int			level;			/* transaction nesting level that took it */
	uint64		last_used;		/* for least-recently-used eviction */
} MyceliumSqliteStmt;

/* one open SQLite database: a connection cache entry */
typedef struct MyceliumSqliteConn
{
	Oid			serverid;		/* hash key */
	sqlite3    *db;				/* NULL when closed */
	char		servername[NAMEDATALEN];
	char		database[MAXPGPATH];
	bool		readonly;
	int			busy_timeout_ms;	/* busy handler's limit */
	TimestampTz busy_since;		/* busy handler's first call */
	uint32		server_hashvalue;	/* syscache hash of the server */
	bool		invalidated;	/* server changed: close when idle */
	int			xact_depth;		/* 0 none, 1 BEGIN, n>1 savepoints */
	bool		xact_lost;		/* SQLite rolled back on its own */
	int			nstmts;
	MyceliumSqliteStmt *stmts;	/* cache, malloc'd array */
} MyceliumSqliteConn;

/*
 * Planner state of a foreign table (baserel->fdw_private).  colclass says,
 * per attribute, which comparisons SQLite answers as PostgreSQL would:
 * COLCLASS_INT (an integer column with INTEGER or NUMERIC affinity),
 * COLCLASS_REAL (float8 with REAL affinity), COLCLASS_TEXT (text with TEXT
 * affinity and BINARY collation: equality only, order only under "C"),
 * COLCLASS_NONE (nothing but IS [NOT] NULL).
 */
#define COLCLASS_NONE	0
#define COLCLASS_INT	'i'
#define COLCLASS_REAL	'r'
#define COLCLASS_TEXT	't'

typedef struct MyceliumSqliteRelInfo
{
	Oid			relid;
	ForeignServer *server;
	char	   *table;			/* SQLite table name */
	int			natts;
	char	  **colnames;		/* SQLite column names, by attnum - 1 */
	char	   *colclass;		/* COLCLASS_*, by attnum - 1 */
	List	   *remote_conds;	/* RestrictInfos evaluated by SQLite */
	List	   *local_conds;	/* RestrictInfos evaluated locally */
	Bitmapset  *attrs_used;		/* attributes fetched (plus system offset) */
	double		tuples;			/* estimated rows of the table */
} MyceliumSqliteRelInfo;

/* in options.c */
extern void MyceliumSqliteGetServerOptions(ForeignServer *server,
										   MyceliumSqliteServerOptions *opts);
extern char *MyceliumSqliteTableName(Oid relid);
extern char *MyceliumSqliteColumnName(Oid relid, AttrNumber attnum);
extern bool MyceliumSqliteTableIsReadonly(Oid relid);
extern void MyceliumSqliteCheckWritable(Relation rel);

/* in connection.c */
extern MyceliumSqliteConn *MyceliumSqliteGetConnection(ForeignServer *server,
													   bool create);
extern sqlite3_stmt *MyceliumSqliteAcquireStmt(MyceliumSqliteConn *conn,
											   const char *sql);
extern sqlite3_stmt *MyceliumSqliteTryAcquireStmt(MyceliumSqliteConn *conn,
												  const char *sql);
extern void MyceliumSqliteReleaseStmt(MyceliumSqliteConn *conn,
									  sqlite3_stmt *stmt);
extern int	MyceliumSqliteStep(MyceliumSqliteConn *conn, sqlite3_stmt *stmt);
extern void MyceliumSqliteExec(MyceliumSqliteConn *conn, const char *sql);
extern void MyceliumSqliteReportError(MyceliumSqliteConn *conn, int rc,
									  const char *sql) pg_attribute_noreturn();

/* in convert.c */
typedef struct MyceliumSqliteColumnConv
{
	Oid			typid;
	int32		typmod;
	Oid			typinput;
	Oid			typioparam;
	FmgrInfo	inflinfo;		/* input function */
	Oid			typoutput;
	FmgrInfo	outflinfo;		/* output function */
	const char *relname;		/* for error context */
	const char *colname;
} MyceliumSqliteColumnConv;

extern void MyceliumSqliteInitConv(MyceliumSqliteColumnConv *conv,
								   Relation rel, AttrNumber attnum);
extern void MyceliumSqliteInitConvType(MyceliumSqliteColumnConv *conv,
									   Oid typid, int32 typmod,
									   const char *relname,
									   const char *colname);
extern Datum MyceliumSqliteValueToDatum(sqlite3_stmt *stmt, int col,
										MyceliumSqliteColumnConv *conv,
										bool *isnull);
extern void MyceliumSqliteBindDatum(sqlite3_stmt *stmt, int idx,
									Datum value, bool isnull, Oid typid,
									FmgrInfo *outflinfo);

/* in deparse.c */
extern bool MyceliumSqliteIsShippable(RelOptInfo *baserel, Expr *expr);
extern void MyceliumSqliteQuoteIdent(StringInfo buf, const char *ident);
extern void MyceliumSqliteDeparseSelect(StringInfo buf, RelOptInfo *baserel,
										bool with_rowid, List *remote_conds,
										List *pathkeys,
										List **retrieved_attrs,
										List **params_list,
										bool consts_as_params);
extern bool MyceliumSqliteIsJoinShippable(RelOptInfo *outerrel,
										  RelOptInfo *innerrel, Expr *expr);
extern void MyceliumSqliteDeparseJoin(StringInfo buf, RelOptInfo *outerrel,
									  RelOptInfo *innerrel, List *join_conds,
									  List *vars, List **params_list);
extern void MyceliumSqliteDeparseShape(StringInfo buf, RelOptInfo *baserel,
									   List *remote_conds);
extern void MyceliumSqliteAppendWhere(StringInfo buf, RelOptInfo *baserel,
									  List *remote_conds, List **params_list,
									  bool consts_as_params);
extern char MyceliumSqliteTypeClass(Oid typid);
extern bool MyceliumSqlitePathkeysShippable(PlannerInfo *root,
											RelOptInfo *baserel,
											List *pathkeys);

/* in upper.c */
extern void MyceliumSqliteGetForeignUpperPaths(PlannerInfo *root,
											   UpperRelationKind stage,
											   RelOptInfo *input_rel,
											   RelOptInfo *output_rel,
											   void *extra);
extern ForeignScan *MyceliumSqliteGetAggPlan(PlannerInfo *root,
											 RelOptInfo *grouped_rel,
											 ForeignPath *best_path,
											 List *tlist);

/* in modify.c */
extern void MyceliumSqliteSetModifyRoutine(FdwRoutine *routine);

/* in join.c */
extern void MyceliumSqliteGetForeignJoinPaths(PlannerInfo *root,
											  RelOptInfo *joinrel,
											  RelOptInfo *outerrel,
											  RelOptInfo *innerrel,
											  JoinType jointype,
											  JoinPathExtraData *extra);
extern ForeignScan *MyceliumSqliteGetJoinPlan(PlannerInfo *root,
											  RelOptInfo *joinrel,
											  ForeignPath *best_path,
											  List *tlist);

/* in analyze.c */
extern bool MyceliumSqliteAnalyzeForeignTable(Relation relation,
											  AcquireSampleRowsFunc *func,
											  BlockNumber *totalpages);

/* in import.c */
extern List *MyceliumSqliteImportForeignSchema(ImportForeignSchemaStmt *stmt,
											   Oid serverOid);

#endif							/* MYCELIUM_SQLITE_FDW_H */
