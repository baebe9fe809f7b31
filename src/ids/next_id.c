/*-------------------------------------------------------------------------
 *
 * next_id.c
 *	  mycelium.next_id(): bigint keys unique across the mesh without any
 *	  coordination between nodes, and mycelium.id_parts() to decode them.
 *
 * An id is (milliseconds since 2025-01-01, node_id, sequence) packed into
 * 63 bits (layout in ids.h).  Two nodes never produce the same id because
 * their node_id bits differ; one node never produces the same id twice
 * because all its backends draw from one shared 64-bit "stamp", the last
 * (millisecond, sequence) pair issued, packed as ms << 12 | sequence.
 *
 * Locking protocol: the stamp is a pg_atomic_uint64 advanced with a
 * compare-and-swap loop, no lock.  Each call takes
 *
 *		new = max(last + 1, now_ms << 12)
 *
 * so the stamp strictly increases: when the clock goes backwards we keep
 * counting on from the last stamp instead of repeating, and a sequence
 * that overflows carries into the next millisecond.
 *
 * The stamp is never allowed to run ahead of the clock: when "new" falls
 * in a millisecond the clock has not reached yet (4096 ids were issued
 * within the current millisecond, or the clock went back and the last
 * millisecond's sequence is used up), the caller waits for the clock
 * instead.  That caps a node at 4096 ids per millisecond, and is what
 * makes the state safe to lose: it lives in its own small shared memory
 * segment ("mycelium ids"), is not persisted, and after a restart starts
 * again from the clock, which is past every id issued before as long as
 * the clock did not go back across the restart.  A clock found more than
 * MAX_CLOCK_BEHIND_MS behind the last stamp is an error rather than a wait.
 *
 * IDENTIFICATION
 *	  src/ids/next_id.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "cluster/cluster.h"
#include "config/config.h"
#include "ids/ids.h"

PG_FUNCTION_INFO_V1(mycelium_next_id);
PG_FUNCTION_INFO_V1(mycelium_id_parts);

#define ID_SEQUENCE_MASK	((UINT64CONST(1) << MYCELIUM_ID_SEQUENCE_BITS) - 1)
#define ID_NODE_MASK		((UINT64CONST(1) << MYCELIUM_ID_NODE_BITS) - 1)
#define ID_MAX_MS			((INT64CONST(1) << MYCELIUM_ID_TIME_BITS) - 1)

/* how far back the clock may go before next_id fails instead of waiting */
#define MAX_CLOCK_BEHIND_MS	1000

typedef struct MyceliumIdState
{
	pg_atomic_uint64 last_stamp;	/* last ms << 12 | sequence issued */
} MyceliumIdState;

static MyceliumIdState *id_state = NULL;

/*
 * MyceliumIdsShmemRequest asks for the id generator's segment; called from
 * the shmem_request_hook.
 */
void
MyceliumIdsShmemRequest(void)
{
	RequestAddinShmemSpace(MAXALIGN(sizeof(MyceliumIdState)));
}

/*
 * MyceliumIdsShmemStartup attaches to (or creates and zeroes) the segment;
 * called from the shmem_startup_hook with AddinShmemInitLock held by our
 * caller.
 */
void
MyceliumIdsShmemStartup(void)
{
	bool		found;

	id_state = ShmemInitStruct("mycelium ids", sizeof(MyceliumIdState), &found);
	if (!found)
		pg_atomic_init_u64(&id_state->last_stamp, 0);
}

/*
 * local_node_bits returns the local node's node_id, checked to fit in the
 * id's node bits.  The per-backend node cache makes this cheap; the cache
 * is dropped when mycelium.node changes, so a node_id changed by joining a
 * mesh is seen by the next call.
 */
static uint64
local_node_bits(void)
{
	MyceliumNode *local = MyceliumEnsureLocalNode();

	if (local == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("this node is not registered in the mesh metadata")));
	if (local->node_id < 0 || local->node_id > MYCELIUM_ID_MAX_NODE)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("node_id %d of node \"%s\" does not fit in a mesh-wide id",
						local->node_id, local->node_name),
				 errdetail("Ids have room for node_id 0 to %d.", MYCELIUM_ID_MAX_NODE)));
	return (uint64) local->node_id;
}

/*
 * ms_since_epoch converts a timestamp read from the clock to milliseconds
 * since the id epoch.
 */
static uint64
ms_since_epoch(TimestampTz now)
{
	if (now < MYCELIUM_ID_EPOCH)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("system clock is before the id epoch 2025-01-01"),
				 errdetail("The clock reads %s.", timestamptz_to_str(now))));
	return (uint64) (now - MYCELIUM_ID_EPOCH) / 1000;
}

/*
 * clock_ms returns the clock as milliseconds since the id epoch.
 */
static uint64
clock_ms(void)
{
	return ms_since_epoch(GetCurrentTimestamp());
}

/*
 * wait_for_clock waits until the clock reaches millisecond ms, or fails
 * when it is too far behind (see the file header).  The usual wait, for
 * the rest of the current millisecond, is a sub-millisecond pause like a
 * spinlock's delay (a latch timeout cannot be shorter than 1 ms, which
 * would halve a busy node's rate); longer waits sleep on the latch.  Both
 * are interruptible.
 */
static void
wait_for_clock(uint64 ms)
{
	TimestampTz now;

	/* read the clock afresh: we may have been descheduled since */
	while (ms_since_epoch(now = GetCurrentTimestamp()) < ms)
	{
		int64		wait_us = MYCELIUM_ID_EPOCH + (int64) ms * 1000 - now;

		if (wait_us > (int64) MAX_CLOCK_BEHIND_MS * 1000)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("system clock is " INT64_FORMAT " ms behind the last mesh-wide id issued",
							wait_us / 1000),
					 errdetail("The clock went backwards, and ids are never issued ahead of the clock."),
					 errhint("Ids are issued again once the clock catches up.")));
		if (wait_us <= 1000)
			pg_usleep(wait_us);
		else
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 (long) Min(wait_us / 1000, 100), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * next_stamp advances the shared stamp and returns the new value: the
 * next (millisecond, sequence) pair, above every one issued before by any
 * backend since the server started, and not in a millisecond the clock
 * has not reached.
 */
static uint64
next_stamp(void)
{
	uint64		now_ms = clock_ms();
	uint64		old = pg_atomic_read_u64(&id_state->last_stamp);
	uint64		new;

	for (;;)
	{
		new = Max(old + 1, now_ms << MYCELIUM_ID_SEQUENCE_BITS);
		if ((new >> MYCELIUM_ID_SEQUENCE_BITS) > (uint64) ID_MAX_MS)
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("mesh-wide ids are exhausted"),
					 errdetail("The 41-bit millisecond field of an id ends in September 2094.")));
		if ((new >> MYCELIUM_ID_SEQUENCE_BITS) > now_ms)
		{
			/* ahead of the clock: wait, then start over from a fresh stamp */
			wait_for_clock(new >> MYCELIUM_ID_SEQUENCE_BITS);
			now_ms = clock_ms();
			old = pg_atomic_read_u64(&id_state->last_stamp);
			continue;
		}
		/* on failure, old is reloaded with the current value */
		if (pg_atomic_compare_exchange_u64(&id_state->last_stamp, &old, new))
			return new;
	}
}

/*
 * mycelium_next_id() returns a new id: time, local node_id and sequence
 * (see ids.h).  Refused during recovery: a standby shares its primary's
 * node_id and could hand out the primary's ids.
 */
Datum
mycelium_next_id(PG_FUNCTION_ARGS)
{
	uint64		node;
	uint64		stamp;
	uint64		id;

	PreventCommandDuringRecovery("mycelium.next_id()");
	node = local_node_bits();
	if (id_state == NULL)
		MyceliumRequirePreload();
	if (id_state == NULL)
		elog(ERROR, "mycelium id generator shared memory is not initialised");

	stamp = next_stamp();
	id = ((stamp >> MYCELIUM_ID_SEQUENCE_BITS)
		  << (MYCELIUM_ID_NODE_BITS + MYCELIUM_ID_SEQUENCE_BITS))
		| (node << MYCELIUM_ID_SEQUENCE_BITS)
		| (stamp & ID_SEQUENCE_MASK);
	PG_RETURN_INT64((int64) id);
}

/*
 * mycelium_id_parts(id) decodes an id into (created_at, node_id, sequence).
 * Any non-negative bigint decodes; negative ones were never issued.
 */
Datum
mycelium_id_parts(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int64		id = PG_GETARG_INT64(0);
	uint64		u;
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	if (id < 0)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("id " INT64_FORMAT " is not a mesh-wide id", id),
				 errdetail("Ids made by mycelium.next_id() are never negative.")));

	InitMaterializedSRF(fcinfo, 0);
	u = (uint64) id;
	values[0] = TimestampTzGetDatum(MYCELIUM_ID_EPOCH +
									(TimestampTz) (u >> (MYCELIUM_ID_NODE_BITS +
														 MYCELIUM_ID_SEQUENCE_BITS)) * 1000);
	values[1] = Int32GetDatum((int32) ((u >> MYCELIUM_ID_SEQUENCE_BITS) & ID_NODE_MASK));
	values[2] = Int32GetDatum((int32) (u & ID_SEQUENCE_MASK));
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
