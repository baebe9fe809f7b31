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

/* in txn/twophase.c */
extern void MyceliumRegisterXactCallbacks(void);
extern bool MyceliumParseGid(const char *gid, uint64 *fxid, const char **coordinator);

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
extern List *MyceliumReadOutsideParticipants(void);
extern void MyceliumRemoveOutsideNote(const char *gid);

/* in txn/recovery.c */
extern int	MyceliumRecoverPreparedTransactions(void);

#endif							/* MYCELIUM_TXN_H */
