/*-------------------------------------------------------------------------
 *
 * peer_state.h
 *	  Per-peer replication state shared by the apply workers, the launcher
 *	  and the SQL functions (pause/resume, stat_replication, wait_for_sync).
 *
 * Naming, fixed here so every part agrees:
 *	 - each node N streams its changes to peer P through a logical slot on N
 *	   named MyceliumReplSlotName(P's node_id): "mycelium_node_<id>", plugin
 *	   "mycelium", option proto_version '1';
 *	 - P's apply worker for N tracks progress in a replication origin on P
 *	   named MyceliumReplOriginName(N's node name): "mycelium_<name>".
 *
 * IDENTIFICATION
 *	  src/replication/peer_state.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_PEER_STATE_H
#define MYCELIUM_PEER_STATE_H

#include "access/xlogdefs.h"
#include "datatype/timestamp.h"
#include "storage/latch.h"

#define MYCELIUM_REPL_MAX_PEERS 64

/* origins through which local writers commit with a clock value (vclock.c) */
#define MYCELIUM_HLC_ORIGINS 4

typedef enum MyceliumReplPeerStatus
{
	MYCELIUM_REPL_STOPPED,		/* no worker */
	MYCELIUM_REPL_STARTING,		/* worker connecting / creating its slot */
	MYCELIUM_REPL_STREAMING,	/* receiving and applying */
	MYCELIUM_REPL_PAUSED,		/* paused by pause_replication */
	MYCELIUM_REPL_DOWN			/* peer silent for mycelium.peer_timeout; retrying */
} MyceliumReplPeerStatus;

/* What this node knows about replication from one peer (source). */
typedef struct MyceliumReplPeer
{
	char		node_name[64];	/* the source peer; "" = free slot */
	bool		paused;			/* pause_replication(peer) is in force */
	MyceliumReplPeerStatus status;
	int			worker_pid;		/* apply worker, 0 = none */
	XLogRecPtr	received_lsn;	/* last WAL position received from the peer */
	XLogRecPtr	applied_lsn;	/* end LSN of the last applied transaction */
	XLogRecPtr	peer_wal_end;	/* the peer's WAL end, from its keepalives */
	TimestampTz last_commit_time;	/* commit time of the last applied transaction */
	TimestampTz last_heartbeat; /* last message or keepalive from the peer */
	int64		applied_transactions;
	int64		conflicts;
	int64		retries;
} MyceliumReplPeer;

/* in replication/peer_state.c */
extern void MyceliumReplShmemRequest(void);
extern void MyceliumReplShmemStartup(void);
extern bool MyceliumReplPeerGet(const char *node_name, MyceliumReplPeer *out);
extern void MyceliumReplPeerUpdate(const char *node_name,
								   void (*update) (MyceliumReplPeer *peer, void *arg),
								   void *arg);
extern int	MyceliumReplPeerSnapshot(MyceliumReplPeer *out, int max);
extern void MyceliumReplPeerForget(const char *node_name);
extern void MyceliumReplSetLauncherLatch(Latch *latch);
extern void MyceliumReplWakeLauncher(void);
extern void MyceliumReplSlotName(int consumer_node_id, char *buf, int buflen);
extern void MyceliumReplOriginName(const char *source_node_name, char *buf, int buflen);
extern const char *MyceliumReplStatusName(MyceliumReplPeerStatus status);
extern void MyceliumReplVectorAdvance(const char *node, TimestampTz t);
extern void MyceliumReplVectorSetLoaded(void);
extern int	MyceliumReplVectorGet(char (*nodes)[NAMEDATALEN], TimestampTz *times, int max,
								  uint64 *generation, bool *loaded);
extern uint64 MyceliumReplVectorGeneration(void);
extern bool MyceliumReplHlcLoaded(void);
extern TimestampTz MyceliumReplHlcUpdate(TimestampTz floor, TimestampTz physical, bool loaded);
extern int	MyceliumReplHlcClaim(void);
extern void MyceliumReplHlcRelease(int i);
extern void MyceliumReplPeerSeen(const char *peer, int n, char **nodes,
								 const TimestampTz *times);
extern TimestampTz MyceliumReplSeenGet(const char *peer, const char *node);

/* in replication/launcher.c: called from _PG_init */
extern void MyceliumRegisterReplicationLauncher(void);

#endif							/* MYCELIUM_PEER_STATE_H */
