/*-------------------------------------------------------------------------
 *
 * txn.h
 *	  Distributed transactions: commit of remote work (one-phase or
 *	  two-phase), savepoints across nodes, recovery of in-doubt
 *	  prepared transactions.
 *
 * IDENTIFICATION
 *	  src/txn/txn.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_TXN_H
#define MYCELIUM_TXN_H

#include "nodes/pg_list.h"

/* distributed transaction ids, "<node>:<pid>:<start>" (see deadlock.c) */
#define MYCELIUM_XACT_ID_SIZE 128
#define MYCELIUM_DEADLOCK_DETAIL_SIZE 1024

/* a Mycelium gid, parsed (see commit_record.c) */
typedef struct MyceliumGid
{
	uint64		id;				/* coordinator's life << 32 | its xid */
	char		coordinator[64];
	char		keeper[64];		/* keeps the commit record; "" = the coordinator */
	char		keeper_xact[MYCELIUM_XACT_ID_SIZE]; /* distributed id of the keeper's work */
} MyceliumGid;

/* in txn/twophase.c */
extern void MyceliumRegisterXactCallbacks(void);
extern bool MyceliumGidCoordinatorRunning(uint64 id);

/* in txn/commit_record.c */
extern bool MyceliumParseGid(const char *gid, MyceliumGid *parsed);
extern char *MyceliumKeeperGid(uint64 id, const char *keeper);
extern void MyceliumInsertCommitRecord(const char *gid, Datum participants);
extern bool MyceliumCommitRecordExists(const char *gid);
extern int	MyceliumKeptOutcome(const char *gid, const MyceliumGid *parsed);

/* a participants note of participants.c */
typedef struct MyceliumOutsideNote
{
	char	   *gid;
	List	   *nodes;			/* MyceliumNode */
} MyceliumOutsideNote;

/* in txn/participants.c */
extern void MyceliumAddOutsideParticipant(const char *node_name, const char *host, int port);
extern void MyceliumForgetOutsideParticipants(void);
extern void MyceliumLogOutsideParticipants(const char *gid);
extern bool MyceliumHasOutsideParticipants(void);
extern List *MyceliumReadOutsideParticipants(void);
extern void MyceliumRemoveOutsideNote(const char *gid);

/* what a coordinating backend's two-phase commit is doing */
typedef enum MyceliumTxnState
{
	MYCELIUM_TXN_IDLE,
	MYCELIUM_TXN_PREPARING,
	MYCELIUM_TXN_COMMITTING,
	MYCELIUM_TXN_ABORTING
} MyceliumTxnState;

/* in txn/registry.c */
extern void MyceliumTxnRegistryRequest(void);
extern void MyceliumTxnRegistryStartup(void);
extern uint32 MyceliumTxnLife(void);
extern void MyceliumTxnRegistrySet(MyceliumTxnState state, const char *gid, List *participants);
extern void MyceliumNotifyEvent(const char *event, const char *gid, const char *nodes_csv);
extern void MyceliumNotifyOwnEvent(const char *event);
extern void MyceliumTxnRegistryDeferAborted(void);
extern void MyceliumTxnRegistryDeferCommitted(void);
extern bool MyceliumTxnRegistryEventsBacklogged(void);
extern void MyceliumTxnRegistrySetWorker(int procno);
extern bool MyceliumTxnRegistryHasDeferred(void);
extern void MyceliumTxnRegistrySendDeferred(void);

/* in txn/deadlock.c */
extern void MyceliumDeadlockInit(void);
extern void MyceliumDeadlockShmemRequest(void);
extern void MyceliumDeadlockShmemStartup(void);
extern const char *MyceliumDistributedXactId(void);
extern bool MyceliumParseXactId(const char *id, char *node, int *pid, int64 *start);
extern void MyceliumFormatXactId(char *buf, const char *node, int pid, int64 start);
extern const char *MyceliumRemoteXactId(void);
extern bool MyceliumXactIdAtWork(const char *id);
extern bool MyceliumDeadlockAnyCoordinator(void);
extern bool MyceliumDeadlockCancel(const char *id, const char *detail);

/* in txn/deadlock_detect.c */
extern int	MyceliumDetectDistributedDeadlocks(List *nodes);

/* in txn/recovery.c */
extern int	MyceliumRecoverPreparedTransactions(void);

#endif							/* MYCELIUM_TXN_H */
