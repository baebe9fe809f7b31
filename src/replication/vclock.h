/*-------------------------------------------------------------------------
 *
 * vclock.h
 *	  Version vectors of peer replication (see vclock.c).
 *
 * IDENTIFICATION
 *	  src/replication/vclock.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_VCLOCK_H
#define MYCELIUM_VCLOCK_H

#include "datatype/timestamp.h"
#include "replication/origin.h"

#include "replication/peer_state.h"

/* prefix of the transactional logical messages carrying a writer's context */
#define MYCELIUM_CONTEXT_PREFIX "mycelium.context"

/* a copy of this node's version vector */
typedef struct MyceliumVector
{
	int			len;
	uint64		generation;
	char		nodes[MYCELIUM_REPL_MAX_PEERS][NAMEDATALEN];
	TimestampTz times[MYCELIUM_REPL_MAX_PEERS];
} MyceliumVector;

extern int	MyceliumReplVectorRead(MyceliumVector *v);
extern char *MyceliumReplVectorJson(int n, const char *const *nodes,
									const TimestampTz *times);
extern char *MyceliumReplLocalVectorJson(void);
extern void MyceliumReplVectorOriginName(const char *peer, char *buf, int buflen);
extern RepOriginId MyceliumReplVectorOrigin(const char *peer, bool create);
extern void MyceliumReplVectorPersist(RepOriginId vv_origin, TimestampTz t);

/* the hybrid logical clock */
extern void MyceliumReplHlcInit(void);
extern TimestampTz MyceliumReplHlcNow(void);
extern void MyceliumReplHlcStampCommitPrepared(void);
extern void MyceliumReplHlcObserve(TimestampTz t);
extern void MyceliumReplHlcOriginName(int k, char *buf, int buflen);
extern bool MyceliumReplIsHlcOriginName(const char *name);

#endif							/* MYCELIUM_VCLOCK_H */
