/*-------------------------------------------------------------------------
 *
 * apply_internal.h
 *	  Private interfaces of the apply side of peer replication: the
 *	  launcher, the per-peer apply worker, its replication connection and
 *	  the code that applies decoded changes locally.
 *
 * IDENTIFICATION
 *	  src/replication/apply_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_APPLY_INTERNAL_H
#define MYCELIUM_APPLY_INTERNAL_H

#include "fmgr.h"
#include "executor/tuptable.h"
#include "nodes/execnodes.h"
#include "libpq-fe.h"
#include "replication/origin.h"
#include "utils/relcache.h"

#include "replication/peer_state.h"
#include "replication/replication.h"

/* what an apply worker is told at start (bgw_extra) */
typedef struct MyceliumApplyArgs
{
	char		node_name[64];	/* the source peer */
	int			node_id;
} MyceliumApplyArgs;

/* in replication/launcher.c */
extern PGDLLEXPORT void MyceliumReplLauncherMain(Datum main_arg);
extern long MyceliumReplBackoffMs(int64 retries);

/* in replication/slot_watch.c */
extern void MyceliumReplWatchSlots(List *nodes);

/* in replication/walstream.c */
extern PGconn *MyceliumWalConnect(const char *host, int port, const char *user,
								  const char *appname);
extern PGresult *MyceliumWalExec(PGconn *conn, const char *sql);
extern void MyceliumWalFlush(PGconn *conn);
extern void MyceliumWalSendFeedback(PGconn *conn, XLogRecPtr recv, XLogRecPtr flush,
									bool reply_requested);
extern void MyceliumWalConnError(PGconn *conn, const char *what, const char *peer);
extern void MyceliumWalReadAhead(PGconn *conn);
extern bool MyceliumWalReadPending(PGconn *conn);

/* in replication/apply_worker.c */
extern PGDLLEXPORT void MyceliumApplyWorkerMain(Datum main_arg);

/* in replication/apply.c: the apply of one peer's stream */
typedef struct MyceliumApplyStats
{
	XLogRecPtr	end_lsn;		/* of the last committed remote transaction */
	XLogRecPtr	local_end;		/* end of its local commit record */
	TimestampTz commit_time;
	int64		transactions;	/* committed since the worker started */
	int64		conflicts;
} MyceliumApplyStats;

extern void MyceliumApplyInit(const char *peer_name, RepOriginId vv_origin);
extern void MyceliumApplyMessage(const char *buf, int len, XLogRecPtr lsn);
extern bool MyceliumApplyInTransaction(void);
extern void MyceliumApplyFlush(void);
extern void MyceliumApplyReset(void);
extern MyceliumApplyStats *MyceliumApplyGetStats(void);

/*
 * in replication/apply.c, for apply_rows.c: the remote transaction a row
 * change belongs to, and the local table it is applied to
 */
typedef struct MyceliumApplyChange
{
	const char *peer;			/* the sender */
	TimestampTz commit_time;	/* its clock value: the change's dot */
	int			ctx_len;		/* the writer's context (version vector) */
	char	  **ctx_nodes;
	TimestampTz *ctx_times;
	int64	   *conflicts;		/* counter of conflicts recorded */
} MyceliumApplyChange;

struct ApplyRel;				/* the sender's description of the table */

typedef struct MyceliumApplyTarget
{
	const MyceliumApplyChange *chg;
	struct ApplyRel *ar;
	TimestampTz listed_at;		/* versions older than this predate the
								 * table's replication here */
	Relation	rel;
	Oid			pkoid;
	EState	   *estate;
	ResultRelInfo *rri;
	EPQState	epq;
	TupleTableSlot *remote;		/* the remote row, in local layout */
	TupleTableSlot *search;		/* the remote key, in local layout */
	TupleTableSlot *local;		/* the local row found by key */
} MyceliumApplyTarget;

extern void MyceliumApplyOpenTarget(uint32 remote_relid, MyceliumApplyTarget *t);
extern void MyceliumApplyCloseTarget(MyceliumApplyTarget *t);
extern void MyceliumApplyFillSlot(MyceliumApplyTarget *t, TupleTableSlot *slot,
								  MyceliumReplTuple *tuple, TupleTableSlot *base);
extern bool MyceliumApplyFindLocal(MyceliumApplyTarget *t);

/* in replication/apply_rows.c: INSERT, UPDATE and DELETE of one row */
extern void MyceliumApplyRowInsert(MyceliumReplMessage *m);
extern void MyceliumApplyRowUpdate(MyceliumReplMessage *m);
extern void MyceliumApplyRowDelete(MyceliumReplMessage *m);

/* in replication/apply_conflict.c */
/* the two versions of a conflict, as recorded */
typedef struct MyceliumConflictVersions
{
	TimestampTz local_ts;		/* the local row's dot (0, NULL: none) */
	const char *local_node;
	TimestampTz remote_ts;		/* the remote change's dot */
	const char *remote_node;
	const char *remote_context; /* its writer's vector, jsonb text */
} MyceliumConflictVersions;

extern void MyceliumApplyLogConflict(Relation rel, const char *conflict_type,
									 TupleTableSlot *local, TupleTableSlot *remote,
									 const MyceliumConflictVersions *v,
									 const char *resolution);
extern TimestampTz MyceliumApplyListedAt(Oid relid);
extern Oid	MyceliumConflictFunction(const char *name);
extern bool MyceliumApplyCustomResolve(Relation rel, TupleTableSlot *local,
									   TupleTableSlot *remote);
extern bool MyceliumApplyLocalVersion(TupleTableSlot *slot, TimestampTz *ts,
									  char *node, int nodelen);
extern bool MyceliumDotLater(TimestampTz ts, const char *node, TimestampTz other_ts,
							 const char *other_node);
extern bool MyceliumApplyRowIsSmall(Relation rel, TupleTableSlot *slot);
extern bool MyceliumApplyPolicyIsCustom(Relation rel);

/* in replication/tombstone.c */
extern Datum MyceliumTombstoneKey(Relation rel, Datum *values, bool *nulls);
extern void MyceliumTombstoneStore(Relation rel, Datum key, const char *node);
extern void MyceliumTombstoneRemove(Relation rel, Datum key);
/* the latest tombstone the remote writer had not seen */
typedef struct MyceliumTombstoneHit
{
	TimestampTz ts;				/* its dot (0: none found) */
	char		node[NAMEDATALEN];
	bool		any;			/* the key has some tombstone */
} MyceliumTombstoneHit;

extern bool MyceliumTombstoneConcurrent(Relation rel, Datum key, TimestampTz current_ts,
										bool (*seen) (const char *node, TimestampTz ts,
													  void *arg),
										void *arg, MyceliumTombstoneHit *hit);
extern void MyceliumTombstonePurge(void);

#endif							/* MYCELIUM_APPLY_INTERNAL_H */
