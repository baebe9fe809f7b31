/*-------------------------------------------------------------------------
 *
 * transport.h
 *	  Node-to-node connections: a per-backend cache of libpq connections,
 *	  interruptible asynchronous I/O, parallel fan-out and error relay.
 *
 * A connection is identified by (node name, role).  It is either taken by
 * the current transaction (MYCELIUM_CONN_XACT: a remote transaction is
 * opened on first use and ended by txn/twophase.c at commit or abort) or
 * lent for one autocommit operation (MYCELIUM_CONN_AUTOCOMMIT: returned with
 * MyceliumReleaseConnection).  Connections stay open across transactions.
 *
 * IDENTIFICATION
 *	  src/transport/transport.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_TRANSPORT_H
#define MYCELIUM_TRANSPORT_H

#include "access/xact.h"
#include "datatype/timestamp.h"
#include "libpq-fe.h"
#include "nodes/pg_list.h"

/* GIDSIZE of twophase.c, which is not exported */
#define MYCELIUM_GID_SIZE 200

typedef enum MyceliumConnMode
{
	MYCELIUM_CONN_XACT,			/* part of the current transaction */
	MYCELIUM_CONN_AUTOCOMMIT	/* lent for one operation, no transaction */
} MyceliumConnMode;

typedef struct MyceliumConnection
{
	char		node_name[64];
	char		host[256];
	int			port;
	Oid			roleid;
	PGconn	   *conn;			/* NULL until connected */

	/* connection establishment state (see connection.c) */
	int			attempt;		/* attempts made so far */
	TimestampTz attempt_deadline;	/* current attempt times out at */
	TimestampTz next_attempt_at;	/* backoff: start next attempt at */
	PostgresPollingStatusType poll;
	char	   *connect_error;	/* last libpq error, palloc'd */
	bool		counted;		/* holds a slot of the shared pool */

	/* use by the current transaction or operation */
	bool		in_xact;		/* taken by the current transaction */
	bool		lent;			/* lent to an autocommit operation */
	int			xact_depth;		/* remote nesting: 0 none, 1 top, >1 savepoints */
	bool		wrote;			/* wrote on the node in this transaction */
	bool		broken;			/* state unknown: close at end of transaction */
	char		prepared_gid[MYCELIUM_GID_SIZE];	/* "" unless prepared */
	List	   *deferred_begin;	/* statements of a remote BEGIN not sent yet */
	char		pending_gid[MYCELIUM_GID_SIZE];	/* COMMIT PREPARED in flight (pending.c) */
	uint64		notices;		/* notices received (see connect.c) */

	/* statistics for mycelium.stat_connections */
	TimestampTz opened_at;
	int64		uses;
} MyceliumConnection;

/* in transport/connection.c */
extern MyceliumConnection *MyceliumGetConnection(const char *node_name,
												 const char *host, int port,
												 MyceliumConnMode mode);
extern void MyceliumGetConnections(MyceliumConnection **conns, int n,
								   const char *const *node_names,
								   const char *const *hosts, const int *ports,
								   MyceliumConnMode mode, bool missing_ok);
extern void MyceliumReleaseConnection(MyceliumConnection *conn);
extern void MyceliumCloseConnection(MyceliumConnection *conn);
extern void MyceliumBeginRemoteXacts(MyceliumConnection **conns, int n);

/* in transport/pending.c; how long the result of an early-answered COMMIT
 * PREPARED may take when the node is used next or the connection closes */
#define MYCELIUM_PENDING_TIMEOUT_MS 30000
extern void MyceliumFinishPending(MyceliumConnection *conn, int timeout_ms);
extern void MyceliumFinishPendingTo(const char *const *node_names, int n);
extern void MyceliumFlushBegins(MyceliumConnection **conns, int n);
extern bool MyceliumUnbeginSavepoint(MyceliumConnection *conn, int level);
extern void MyceliumDropUnsentBegin(MyceliumConnection *conn);
extern List *MyceliumXactConnections(void);
extern void MyceliumTransportEndXact(void);
extern void MyceliumCloseNodeConnections(const char *node_name);
extern bool MyceliumConnectionUsable(MyceliumConnection *conn);
extern void MyceliumTransportRegisterExit(void);

/* in transport/connect.c */
extern PGconn *MyceliumConnectStart(const char *host, int port, const char *dbname,
									const char *user, const char *appname, bool replication);

/* in transport/remote.c */
extern bool MyceliumSendQuery(MyceliumConnection *conn, const char *sql,
							  int nparams, const char *const *values);
extern bool MyceliumSendQueryTyped(MyceliumConnection *conn, const char *sql, int nparams,
								   const Oid *types, const char *const *values);
extern bool MyceliumSendPrepare(MyceliumConnection *conn, const char *name, const char *sql,
								int nparams, const Oid *types);
extern bool MyceliumSendPrepared(MyceliumConnection *conn, const char *name, int nparams,
								 const char *const *values);
extern PGresult *MyceliumGetResult(MyceliumConnection *conn, TimestampTz deadline,
								   bool can_throw);
extern void MyceliumWaitResults(MyceliumConnection **conns, int n,
								PGresult **results, TimestampTz deadline,
								bool can_throw);
extern PGresult *MyceliumExec(MyceliumConnection *conn, const char *sql,
							  int nparams, const char *const *values);
extern void MyceliumExecCommand(MyceliumConnection *conn, const char *sql);
extern void MyceliumReportResultError(int elevel, PGresult *res,
									  MyceliumConnection *conn, const char *sql);
extern void MyceliumReportConnError(int elevel, MyceliumConnection *conn,
									const char *what);
extern bool MyceliumSendStatement(MyceliumConnection *conn, const char *sql, int nparams,
								  const Oid *types, const char *const *values);
extern void MyceliumSendCancel(MyceliumConnection *conn);
extern bool MyceliumResultHasSqlstate(const PGresult *res, const char *sqlstate);
extern bool MyceliumCancelAndDrain(MyceliumConnection *conn);
extern bool MyceliumExecNoThrow(MyceliumConnection *conn, const char *sql,
								int timeout_ms, char **error);
extern char *MyceliumResultErrorText(PGresult *res, MyceliumConnection *conn);
extern void MyceliumExecEach(MyceliumConnection **conns, int n, const char *const *sqls);
extern void MyceliumExecParallel(MyceliumConnection **conns, int n, const char *sql,
								 int nparams, const char *const *values);

/* application_name of node-to-node (non-replication) connections */
#define MYCELIUM_CONN_APPNAME "mycelium"

/* readahead.c */
extern void MyceliumInstallReadAheadHook(void);

#endif							/* MYCELIUM_TRANSPORT_H */
