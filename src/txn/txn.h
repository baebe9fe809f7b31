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

/* in txn/twophase.c */
extern void MyceliumRegisterXactCallbacks(void);
extern bool MyceliumParseGid(const char *gid, uint64 *fxid, const char **coordinator);

/* in txn/recovery.c */
extern int	MyceliumRecoverPreparedTransactions(void);

#endif							/* MYCELIUM_TXN_H */
