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
 * so the stamp strictly increases: a sequence that overflows within a
 * millisecond carries into the next millisecond, and when the clock goes
 * backwards we keep counting on from the last stamp instead of repeating.
 * Stamps issued ahead of the clock this way are caught up with as soon as
 * the clock passes them.
 *
 * The stamp lives in its own small shared memory segment ("mycelium ids")
 * and is not persisted: after a restart it starts again from the clock.
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
#include "port/atomics.h"
#include "storage/ipc.h"
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
 * next_stamp advances the shared stamp and returns the new value: the
 * next (millisecond, sequence) pair, never equal to or below one issued
 * before by any backend since the server started.
 */
static uint64
next_stamp(void)
{
	TimestampTz now = GetCurrentTimestamp();
	uint64		floor;
	uint64		old;
	uint64		new;

	if (now < MYCELIUM_ID_EPOCH)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("system clock is before the id epoch 2025-01-01"),
				 errdetail("The clock reads %s.", timestamptz_to_str(now))));
	floor = ((uint64) (now - MYCELIUM_ID_EPOCH) / 1000) << MYCELIUM_ID_SEQUENCE_BITS;

	old = pg_atomic_read_u64(&id_state->last_stamp);
	for (;;)
	{
		new = Max(old + 1, floor);
		if ((new >> MYCELIUM_ID_SEQUENCE_BITS) > (uint64) ID_MAX_MS)
			ereport(ERROR,
					(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
					 errmsg("mesh-wide ids are exhausted"),
					 errdetail("The 41-bit millisecond field of an id ends in September 2094.")));
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
