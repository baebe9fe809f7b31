/*-------------------------------------------------------------------------
 *
 * capture.h
 *	  Private declarations of change capture: the message writers used by
 *	  the output plugin.
 *
 * Other subsystems include replication/replication.h instead.
 *
 * IDENTIFICATION
 *	  src/replication/capture.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_CAPTURE_H
#define MYCELIUM_CAPTURE_H

#include "access/htup.h"
#include "lib/stringinfo.h"
#include "utils/relcache.h"

#include "replication/replication.h"

/* in replication/proto_write.c */
extern void MyceliumReplWriteBegin(StringInfo out, XLogRecPtr final_lsn,
								   TimestampTz commit_time, TransactionId xid);
extern void MyceliumReplWriteCommit(StringInfo out, XLogRecPtr commit_lsn,
									XLogRecPtr end_lsn, TimestampTz commit_time,
									const char *origin);
extern void MyceliumReplWriteRelation(StringInfo out, Relation rel);
extern void MyceliumReplWriteInsert(StringInfo out, Relation rel,
									HeapTuple newtuple);
extern void MyceliumReplWriteUpdate(StringInfo out, Relation rel,
									char old_kind, HeapTuple oldtuple,
									HeapTuple newtuple);
extern void MyceliumReplWriteDelete(StringInfo out, Relation rel,
									char old_kind, HeapTuple oldtuple);
extern void MyceliumReplWriteTruncate(StringInfo out, int nrelids,
									  const Oid *relids, uint8 flags);

#endif							/* MYCELIUM_CAPTURE_H */
