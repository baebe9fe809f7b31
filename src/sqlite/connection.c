/*-------------------------------------------------------------------------
 *
 * connection.c
 *	  Per-backend cache of SQLite handles, the transaction that follows
 *	  PostgreSQL's, prepared-statement cache and SQLite error relay.
 *
 * One sqlite3 handle per foreign server per backend, opened on first use
 * (read-only for a readonly server) and kept in a hash in
 * TopMemoryContext.  A syscache callback marks the entry of a server that
 * is altered or dropped; the handle is closed as soon as no transaction
 * uses it.  All handles are closed at backend exit.
 *
 * Transactions: the first access in a PostgreSQL transaction issues BEGIN,
 * and each deeper subtransaction level that touches SQLite adds a
 * SAVEPOINT; the transaction callbacks COMMIT at pre-commit (so a failing
 * COMMIT aborts the PostgreSQL transaction), ROLLBACK at abort, and RELEASE
 * or ROLLBACK TO the savepoints at subtransaction end.  A SQLite error that
 * rolls back the whole SQLite transaction by itself marks the entry, and
 * the PostgreSQL transaction can then only roll back.
 *
 * Waiting: a busy handler waits on the process latch in 10 ms steps up to
 * busy_timeout, and a progress handler interrupts a statement when a query
 * cancel, statement_timeout or termination is pending.  Neither may throw
 * (SQLite is C code that must not be longjmp'd through): they return to
 * SQLite, which fails the statement, and CHECK_FOR_INTERRUPTS runs after.
 *
 * IDENTIFICATION
 *	  src/sqlite/connection.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_foreign_server.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "sqlite/sqlite_fdw.h"

/* statements cached per handle before the least recently used goes */
#define MAX_CACHED_STMTS	64
/* SQLite virtual-machine steps between interrupt checks */
#define PROGRESS_STEPS		1000

static HTAB *conn_hash = NULL;
static uint64 stmt_clock = 0;

PG_FUNCTION_INFO_V1(mycelium_sqlite_execute);
PG_FUNCTION_INFO_V1(mycelium_sqlite_connections);

static void sqlite_xact_callback(XactEvent event, void *arg);
static void sqlite_subxact_callback(SubXactEvent event,
									SubTransactionId mySubid,
									SubTransactionId parentSubid, void *arg);
static void sqlite_inval_callback(Datum arg, int cacheid, uint32 hashvalue);
static void sqlite_exit_callback(int code, Datum arg);
static sqlite3_stmt *acquire_stmt(MyceliumSqliteConn *conn, const char *sql,
								  bool throw);

/*
 * busy_handler waits for a lock held by another connection: up to the
 * server's busy_timeout, in latch waits of 10 ms, giving up early when an
 * interrupt is pending (the caller then runs CHECK_FOR_INTERRUPTS).
 */
static int
busy_handler(void *arg, int count)
{
	MyceliumSqliteConn *conn = (MyceliumSqliteConn *) arg;
	int			rc;

	if (count == 0)
		conn->busy_since = GetCurrentTimestamp();
	if (InterruptPending ||
		TimestampDifferenceExceeds(conn->busy_since, GetCurrentTimestamp(),
								   conn->busy_timeout_ms))
		return 0;
	rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_POSTMASTER_DEATH,
				   10, PG_WAIT_EXTENSION);
	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	if ((rc & WL_POSTMASTER_DEATH) || InterruptPending)
		return 0;
	return 1;
}

/*
 * progress_handler makes SQLite abandon a statement (SQLITE_INTERRUPT) when
 * a cancel, timeout or termination is pending.
 */
static int
progress_handler(void *arg)
{
	return (QueryCancelPending || ProcDiePending) ? 1 : 0;
}

/*
 * close_conn finalizes every cached statement and closes the handle;
 * sqlite3_close_v2 rolls back any open SQLite transaction.
 */
static void
close_conn(MyceliumSqliteConn *conn)
{
	int			i;

	for (i = 0; i < conn->nstmts; i++)
	{
		sqlite3_finalize(conn->stmts[i].stmt);
		free(conn->stmts[i].sql);
	}
	free(conn->stmts);
	conn->stmts = NULL;
	conn->nstmts = 0;
	if (conn->db)
		sqlite3_close_v2(conn->db);
	conn->db = NULL;
	conn->xact_depth = 0;
	conn->xact_lost = false;
}

/*
 * open_conn opens the server's database.  Without "create" a missing file
 * is an error (a typo must not silently create an empty database).  The
 * handle is checked by reading the schema, so a file that is not a SQLite
 * database is refused here with a clear message.
 */
static void
open_conn(MyceliumSqliteConn *conn, ForeignServer *server, bool create)
{
	MyceliumSqliteServerOptions opts;
	int			flags;
	int			rc;
	sqlite3    *db = NULL;

	MyceliumSqliteGetServerOptions(server, &opts);
	flags = opts.readonly ? SQLITE_OPEN_READONLY :
		SQLITE_OPEN_READWRITE | (create ? SQLITE_OPEN_CREATE : 0);
	flags |= SQLITE_OPEN_NOMUTEX;
	strlcpy(conn->database, opts.database, MAXPGPATH);
	strlcpy(conn->servername, server->servername, NAMEDATALEN);
	conn->readonly = opts.readonly;
	conn->invalidated = false;
	conn->server_hashvalue = GetSysCacheHashValue1(FOREIGNSERVEROID,
												   ObjectIdGetDatum(server->serverid));

	rc = sqlite3_open_v2(opts.database, &db, flags, NULL);
	if (rc != SQLITE_OK)
	{
		char	   *msg = pstrdup(db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));

		sqlite3_close_v2(db);
		ereport(ERROR,
				(errcode(rc == SQLITE_CANTOPEN ? ERRCODE_UNDEFINED_FILE :
						 ERRCODE_FDW_UNABLE_TO_ESTABLISH_CONNECTION),
				 errmsg("could not open SQLite database \"%s\" of server \"%s\"",
						opts.database, server->servername),
				 errdetail_internal("%s", msg)));
	}
	sqlite3_extended_result_codes(db, 1);
	/* "name" is an identifier, never a string that hides a missing column */
	sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DML, 0, (int *) NULL);
	sqlite3_db_config(db, SQLITE_DBCONFIG_DQS_DDL, 0, (int *) NULL);
	conn->db = db;
	/* the handle is kept from now on: anything below may fail */
	conn->busy_timeout_ms = opts.busy_timeout;
	sqlite3_busy_handler(db, busy_handler, conn);
	sqlite3_progress_handler(db, PROGRESS_STEPS, progress_handler, NULL);
	PG_TRY();
	{
		MyceliumSqliteExec(conn, "SELECT count(*) FROM sqlite_master");
	}
	PG_CATCH();
	{
		close_conn(conn);
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * register_callbacks installs the transaction, invalidation and exit
 * callbacks once per backend, on first use (the library may be loaded
 * without shared_preload_libraries, so _PG_init cannot be relied on).
 */
static void
register_callbacks(void)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(MyceliumSqliteConn);
	conn_hash = hash_create("mycelium sqlite connections", 8, &ctl,
							HASH_ELEM | HASH_BLOBS);
	RegisterXactCallback(sqlite_xact_callback, NULL);
	RegisterSubXactCallback(sqlite_subxact_callback, NULL);
	CacheRegisterSyscacheCallback(FOREIGNSERVEROID, sqlite_inval_callback,
								  (Datum) 0);
	on_proc_exit(sqlite_exit_callback, (Datum) 0);
}

/*
 * begin_xact opens the SQLite transaction and the savepoints down to the
 * current subtransaction level.
 */
static void
begin_xact(MyceliumSqliteConn *conn)
{
	int			level = GetCurrentTransactionNestLevel();

	if (conn->xact_lost)
		ereport(ERROR,
				(errcode(ERRCODE_IN_FAILED_SQL_TRANSACTION),
				 errmsg("SQLite transaction on server \"%s\" was rolled back",
						conn->servername),
				 errhint("Roll back the PostgreSQL transaction.")));
	if (conn->xact_depth == 0)
	{
		MyceliumSqliteExec(conn, "BEGIN");
		conn->xact_depth = 1;
	}
	while (conn->xact_depth < level)
	{
		char		sql[64];

		snprintf(sql, sizeof(sql), "SAVEPOINT s%d", conn->xact_depth + 1);
		MyceliumSqliteExec(conn, sql);
		conn->xact_depth++;
	}
}

/*
 * MyceliumSqliteGetConnection returns the server's open handle inside a
 * SQLite transaction matching the current PostgreSQL (sub)transaction,
 * opening the database if needed ("create" allows a new file).
 */
MyceliumSqliteConn *
MyceliumSqliteGetConnection(ForeignServer *server, bool create)
{
	MyceliumSqliteConn *conn;
	bool		found;

	if (conn_hash == NULL)
		register_callbacks();

	conn = hash_search(conn_hash, &server->serverid, HASH_ENTER, &found);
	if (!found)
	{
		memset(((char *) conn) + sizeof(Oid), 0,
			   sizeof(MyceliumSqliteConn) - sizeof(Oid));
	}
	if (conn->db && conn->invalidated && conn->xact_depth == 0)
		close_conn(conn);
	if (conn->db == NULL)
		open_conn(conn, server, create);
	begin_xact(conn);
	return conn;
}

/*
 * sqlstate_of chooses the SQLSTATE of a SQLite (extended) result code.
 */
static int
sqlstate_of(int rc, const char *msg)
{
	switch (rc & 0xff)
	{
		case SQLITE_BUSY:
		case SQLITE_LOCKED:
			return ERRCODE_LOCK_NOT_AVAILABLE;
		case SQLITE_INTERRUPT:
			return ERRCODE_QUERY_CANCELED;
		case SQLITE_READONLY:
			return ERRCODE_READ_ONLY_SQL_TRANSACTION;
		case SQLITE_NOTADB:
		case SQLITE_CORRUPT:
			return ERRCODE_DATA_CORRUPTED;
		case SQLITE_CANTOPEN:
			return ERRCODE_UNDEFINED_FILE;
		case SQLITE_IOERR:
			return ERRCODE_IO_ERROR;
		case SQLITE_FULL:
			return ERRCODE_DISK_FULL;
		case SQLITE_NOMEM:
			return ERRCODE_OUT_OF_MEMORY;
		case SQLITE_PERM:
		case SQLITE_AUTH:
			return ERRCODE_INSUFFICIENT_PRIVILEGE;
		case SQLITE_TOOBIG:
			return ERRCODE_PROGRAM_LIMIT_EXCEEDED;
		case SQLITE_CONSTRAINT:
			if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY ||
				rc == SQLITE_CONSTRAINT_ROWID)
				return ERRCODE_UNIQUE_VIOLATION;
			if (rc == SQLITE_CONSTRAINT_NOTNULL)
				return ERRCODE_NOT_NULL_VIOLATION;
			if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
				return ERRCODE_FOREIGN_KEY_VIOLATION;
			if (rc == SQLITE_CONSTRAINT_CHECK)
				return ERRCODE_CHECK_VIOLATION;
			return ERRCODE_INTEGRITY_CONSTRAINT_VIOLATION;
		default:
			if (strncmp(msg, "no such table", 13) == 0)
				return ERRCODE_FDW_TABLE_NOT_FOUND;
			if (strncmp(msg, "no such column", 14) == 0)
				return ERRCODE_FDW_COLUMN_NAME_NOT_FOUND;
			return ERRCODE_FDW_ERROR;
	}
}

/*
 * MyceliumSqliteReportError raises the error of a failed SQLite call with
 * a SQLSTATE chosen from the (extended) result code; SQLite's text goes in
 * the detail.  A pending interrupt (which is what makes the busy and
 * progress handlers give up) is reported first, as PostgreSQL always does.
 */
void
MyceliumSqliteReportError(MyceliumSqliteConn *conn, int rc, const char *sql)
{
	const char *msg = conn->db ? sqlite3_errmsg(conn->db) : sqlite3_errstr(rc);
	int			sqlstate = sqlstate_of(rc, msg);

	/* an error may have ended the SQLite transaction behind our back */
	if (conn->db && conn->xact_depth > 0 && sqlite3_get_autocommit(conn->db))
		conn->xact_lost = true;
	/* a cancel that made SQLite give up (busy wait, progress) wins */
	CHECK_FOR_INTERRUPTS();

	if (sqlstate == ERRCODE_LOCK_NOT_AVAILABLE)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg("SQLite database \"%s\" of server \"%s\" is locked",
						conn->database, conn->servername),
				 errdetail_internal("%s", msg),
				 errhint("Another connection held a lock for longer than busy_timeout (%d ms).",
						 conn->busy_timeout_ms),
				 sql ? errcontext("SQLite query: %s", sql) : 0));
	if (sqlstate == ERRCODE_DATA_CORRUPTED)
		ereport(ERROR,
				(errcode(sqlstate),
				 errmsg("SQLite database \"%s\" of server \"%s\" is corrupt or not a SQLite database",
						conn->database, conn->servername),
				 errdetail_internal("%s", msg),
				 sql ? errcontext("SQLite query: %s", sql) : 0));
	ereport(ERROR,
			(errcode(sqlstate),
			 errmsg("SQLite error on server \"%s\": %s",
					conn->servername, sqlite3_errstr(rc)),
			 errdetail_internal("%s", msg),
			 sql ? errcontext("SQLite query: %s", sql) : 0));
}

/*
 * MyceliumSqliteExec runs a statement that returns no rows we need,
 * through the statement cache.
 */
void
MyceliumSqliteExec(MyceliumSqliteConn *conn, const char *sql)
{
	sqlite3_stmt *stmt = MyceliumSqliteAcquireStmt(conn, sql);
	int			rc;

	do
		rc = MyceliumSqliteStep(conn, stmt);
	while (rc == SQLITE_ROW);
	MyceliumSqliteReleaseStmt(conn, stmt);
}

/*
 * MyceliumSqliteStep steps a statement; SQLITE_ROW or SQLITE_DONE are
 * returned, anything else is raised as an error (after resetting the
 * statement, so it can be reused).
 */
int
MyceliumSqliteStep(MyceliumSqliteConn *conn, sqlite3_stmt *stmt)
{
	int			rc = sqlite3_step(stmt);

	if (rc == SQLITE_ROW || rc == SQLITE_DONE)
		return rc;
	sqlite3_reset(stmt);
	MyceliumSqliteReportError(conn, rc, sqlite3_sql(stmt));
}

/*
 * MyceliumSqliteAcquireStmt returns a prepared statement for sql, taken
 * from the cache when an idle one exists.  It stays in use until released
 * (or until the transaction ends, for a statement an error left behind).
 */
sqlite3_stmt *
MyceliumSqliteAcquireStmt(MyceliumSqliteConn *conn, const char *sql)
{
	return acquire_stmt(conn, sql, true);
}

/*
 * MyceliumSqliteTryAcquireStmt is MyceliumSqliteAcquireStmt returning NULL
 * when SQLite cannot prepare the statement (for planning-time probes).
 */
sqlite3_stmt *
MyceliumSqliteTryAcquireStmt(MyceliumSqliteConn *conn, const char *sql)
{
	return acquire_stmt(conn, sql, false);
}

/*
 * acquire_stmt implements the two above.
 */
static sqlite3_stmt *
acquire_stmt(MyceliumSqliteConn *conn, const char *sql, bool throw)
{
	int			i;
	int			victim = -1;
	sqlite3_stmt *stmt = NULL;
	int			rc;
	MyceliumSqliteStmt *s;

	for (i = 0; i < conn->nstmts; i++)
	{
		s = &conn->stmts[i];
		if (!s->in_use && strcmp(s->sql, sql) == 0)
		{
			s->in_use = true;
			s->level = GetCurrentTransactionNestLevel();
			s->last_used = ++stmt_clock;
			return s->stmt;
		}
		if (!s->in_use && (victim < 0 || s->last_used < conn->stmts[victim].last_used))
			victim = i;
	}

	rc = sqlite3_prepare_v3(conn->db, sql, -1, SQLITE_PREPARE_PERSISTENT,
							&stmt, NULL);
	if (rc != SQLITE_OK)
	{
		sqlite3_finalize(stmt);
		if (!throw)
			return NULL;
		MyceliumSqliteReportError(conn, rc, sql);
	}
	if (stmt == NULL)
		elog(ERROR, "SQLite statement is empty: %s", sql);

	if (conn->nstmts >= MAX_CACHED_STMTS && victim >= 0)
	{
		s = &conn->stmts[victim];
		sqlite3_finalize(s->stmt);
		free(s->sql);
	}
	else
	{
		void	   *p = realloc(conn->stmts,
								sizeof(MyceliumSqliteStmt) * (conn->nstmts + 1));

		if (p == NULL)
		{
			sqlite3_finalize(stmt);
			ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
							errmsg("out of memory")));
		}
		conn->stmts = p;
		s = &conn->stmts[conn->nstmts++];
	}
	s->sql = strdup(sql);
	s->stmt = stmt;
	s->in_use = true;
	s->level = GetCurrentTransactionNestLevel();
	s->last_used = ++stmt_clock;
	if (s->sql == NULL)
	{
		s->sql = NULL;
		sqlite3_finalize(stmt);
		conn->nstmts--;
		ereport(ERROR, (errcode(ERRCODE_OUT_OF_MEMORY),
						errmsg("out of memory")));
	}
	return stmt;
}

/*
 * MyceliumSqliteReleaseStmt resets a statement and returns it to the cache.
 */
void
MyceliumSqliteReleaseStmt(MyceliumSqliteConn *conn, sqlite3_stmt *stmt)
{
	int			i;

	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	for (i = 0; i < conn->nstmts; i++)
		if (conn->stmts[i].stmt == stmt)
			conn->stmts[i].in_use = false;
}

/*
 * release_stmts_from resets the statements taken at (sub)transaction
 * nesting level "level" or deeper: at the end of a transaction nothing may
 * still be running, even after an error, and a rolled-back subtransaction
 * leaves no statement behind, while an outer cursor keeps its own.
 */
static void
release_stmts_from(MyceliumSqliteConn *conn, int level)
{
	int			i;

	for (i = 0; i < conn->nstmts; i++)
	{
		if (conn->stmts[i].in_use && conn->stmts[i].level < level)
			continue;
		sqlite3_reset(conn->stmts[i].stmt);
		sqlite3_clear_bindings(conn->stmts[i].stmt);
		conn->stmts[i].in_use = false;
	}
}

/*
 * release_all_stmts resets every statement of a handle.
 */
static void
release_all_stmts(MyceliumSqliteConn *conn)
{
	release_stmts_from(conn, 0);
}

/*
 * exec_quietly runs a statement during abort processing, where raising an
 * error would recurse: failures become warnings.
 */
static void
exec_quietly(MyceliumSqliteConn *conn, const char *sql)
{
	char	   *msg = NULL;

	if (sqlite3_exec(conn->db, sql, NULL, NULL, &msg) != SQLITE_OK)
	{
		ereport(WARNING,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("could not run \"%s\" on SQLite server \"%s\"",
						sql, conn->servername),
				 errdetail_internal("%s", msg ? msg : "")));
		sqlite3_free(msg);
	}
}

/*
 * commit_all commits every SQLite transaction at PostgreSQL pre-commit:
 * the read-only ones first, so that their shared locks do not keep a
 * writer to the same file (through another server) from committing.
 */
static void
commit_all(void)
{
	HASH_SEQ_STATUS scan;
	MyceliumSqliteConn *conn;
	int			pass;

	for (pass = 0; pass < 2; pass++)
	{
		hash_seq_init(&scan, conn_hash);
		while ((conn = hash_seq_search(&scan)))
		{
			if (conn->db == NULL || (conn->xact_depth == 0 && !conn->xact_lost))
				continue;
			if (pass == 0 && sqlite3_txn_state(conn->db, NULL) == SQLITE_TXN_WRITE)
				continue;
			release_all_stmts(conn);
			if (conn->xact_lost)
				ereport(ERROR,
						(errcode(ERRCODE_IN_FAILED_SQL_TRANSACTION),
						 errmsg("SQLite transaction on server \"%s\" was rolled back",
								conn->servername)));
			/* keep the depth until done: an error here must roll back */
			if (!sqlite3_get_autocommit(conn->db))
				MyceliumSqliteExec(conn, "COMMIT");
			conn->xact_depth = 0;
			if (conn->invalidated)
				close_conn(conn);
		}
	}
}

/*
 * sqlite_xact_callback ends the SQLite transactions with the PostgreSQL
 * one: COMMIT at pre-commit, ROLLBACK at abort.  PREPARE TRANSACTION is
 * refused: SQLite has no two-phase commit.
 */
static void
sqlite_xact_callback(XactEvent event, void *arg)
{
	HASH_SEQ_STATUS scan;
	MyceliumSqliteConn *conn;

	if (conn_hash == NULL)
		return;
	if (event == XACT_EVENT_PRE_COMMIT || event == XACT_EVENT_PARALLEL_PRE_COMMIT)
	{
		commit_all();
		return;
	}
	hash_seq_init(&scan, conn_hash);
	while ((conn = hash_seq_search(&scan)))
	{
		if (conn->db == NULL || (conn->xact_depth == 0 && !conn->xact_lost))
			continue;
		switch (event)
		{
			case XACT_EVENT_PRE_PREPARE:
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot prepare a transaction that used SQLite server \"%s\"",
								conn->servername)));
				break;
			case XACT_EVENT_PARALLEL_ABORT:
			case XACT_EVENT_ABORT:
				release_all_stmts(conn);
				if (!sqlite3_get_autocommit(conn->db))
					exec_quietly(conn, "ROLLBACK");
				conn->xact_depth = 0;
				conn->xact_lost = false;
				break;
			default:
				break;
		}
		if (conn->xact_depth == 0 && conn->invalidated)
			close_conn(conn);
	}
}

/*
 * sqlite_subxact_callback releases or rolls back the SQLite savepoint of a
 * subtransaction that ends.
 */
static void
sqlite_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	HASH_SEQ_STATUS scan;
	MyceliumSqliteConn *conn;
	int			level = GetCurrentTransactionNestLevel();
	char		sql[96];

	if (event != SUBXACT_EVENT_PRE_COMMIT_SUB && event != SUBXACT_EVENT_ABORT_SUB)
		return;
	hash_seq_init(&scan, conn_hash);
	while ((conn = hash_seq_search(&scan)))
	{
		if (conn->db == NULL || conn->xact_depth < level)
			continue;
		if (event == SUBXACT_EVENT_PRE_COMMIT_SUB && !conn->xact_lost)
		{
			snprintf(sql, sizeof(sql), "RELEASE SAVEPOINT s%d", level);
			MyceliumSqliteExec(conn, sql);
		}
		else if (event == SUBXACT_EVENT_ABORT_SUB && !conn->xact_lost &&
				 !sqlite3_get_autocommit(conn->db))
		{
			release_stmts_from(conn, level);
			snprintf(sql, sizeof(sql),
					 "ROLLBACK TO SAVEPOINT s%d; RELEASE SAVEPOINT s%d",
					 level, level);
			exec_quietly(conn, sql);
		}
		if (sqlite3_get_autocommit(conn->db))
			conn->xact_lost = true;
		conn->xact_depth = level - 1;
	}
}

/*
 * sqlite_inval_callback marks the entries of servers that were altered or
 * dropped (hashvalue 0: all of them); they close when idle.
 */
static void
sqlite_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	HASH_SEQ_STATUS scan;
	MyceliumSqliteConn *conn;

	hash_seq_init(&scan, conn_hash);
	while ((conn = hash_seq_search(&scan)))
	{
		if (conn->db == NULL)
			continue;
		if (hashvalue == 0 || conn->server_hashvalue == hashvalue)
		{
			conn->invalidated = true;
			if (conn->xact_depth == 0)
				close_conn(conn);
		}
	}
}

/*
 * sqlite_exit_callback closes every handle when the backend exits; an open
 * SQLite transaction is rolled back by the close.
 */
static void
sqlite_exit_callback(int code, Datum arg)
{
	HASH_SEQ_STATUS scan;
	MyceliumSqliteConn *conn;

	hash_seq_init(&scan, conn_hash);
	while ((conn = hash_seq_search(&scan)))
		if (conn->db)
			close_conn(conn);
}

/*
 * mycelium_sqlite_execute(server, sql) runs SQL statements on a server's
 * database inside the current transaction, creating the file if it does
 * not exist.  For set-up and tests; superuser only (revoked in SQL).
 */
Datum
mycelium_sqlite_execute(PG_FUNCTION_ARGS)
{
	ForeignServer *server = GetForeignServerByName(NameStr(*PG_GETARG_NAME(0)),
												   false);
	char	   *sql = text_to_cstring(PG_GETARG_TEXT_PP(1));
	MyceliumSqliteConn *conn;
	const char *tail = sql;

	conn = MyceliumSqliteGetConnection(server, true);
	while (*tail)
	{
		sqlite3_stmt *stmt = NULL;
		const char *next;
		int			rc;

		rc = sqlite3_prepare_v2(conn->db, tail, -1, &stmt, &next);
		if (rc != SQLITE_OK)
			MyceliumSqliteReportError(conn, rc, tail);
		if (stmt == NULL)
			break;
		do
			rc = sqlite3_step(stmt);
		while (rc == SQLITE_ROW);
		if (rc != SQLITE_DONE)
		{
			rc = sqlite3_finalize(stmt);
			MyceliumSqliteReportError(conn, rc, tail);
		}
		sqlite3_finalize(stmt);
		tail = next;
	}
	PG_RETURN_VOID();
}

/*
 * mycelium_sqlite_connections lists this backend's open SQLite handles.
 */
Datum
mycelium_sqlite_connections(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HASH_SEQ_STATUS scan;
	MyceliumSqliteConn *conn;

	InitMaterializedSRF(fcinfo, 0);
	if (conn_hash == NULL)
		return (Datum) 0;
	hash_seq_init(&scan, conn_hash);
	while ((conn = hash_seq_search(&scan)))
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		if (conn->db == NULL)
			continue;
		values[0] = CStringGetTextDatum(conn->servername);
		values[1] = CStringGetTextDatum(conn->database);
		values[2] = BoolGetDatum(conn->readonly);
		values[3] = BoolGetDatum(conn->xact_depth > 0);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
