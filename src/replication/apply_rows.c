/*-------------------------------------------------------------------------
 *
 * apply_rows.c
 *	  Applying one row change of a peer: INSERT, UPDATE, DELETE, with
 *	  conflict detection and resolution.
 *
 * Each primary key is settled on its own, by the same rule on every node
 * (docs/replication.md "Conflicts and policies"): a change whose writer
 * had seen the local version (the dot is in its context, or the sender's
 * own) is applied silently; a concurrent one is a conflict, settled by the
 * table's policy -- last writer wins on dots (MyceliumDotLater), or a
 * custom function.  A missing key is looked up among the tombstones
 * (tombstone.c): one the writer had not seen is a concurrent delete
 * (update_delete), settled by last writer wins between the write's dot and
 * the delete's.
 *
 * An UPDATE that changes the primary key is, for conflicts, a delete of
 * the old key and an insert of the new one, both with the update's dot
 * (the writer left a tombstone of the old key: mycelium_key_change_trigger).
 * So each key converges by itself whatever order the nodes receive
 * concurrent changes in.
 *
 * Streams of different peers are not ordered with one another: with three
 * or more nodes, a change can arrive before an earlier change of the same
 * key that reaches this node through a third node's stream.  An UPDATE
 * that finds neither its row nor a concurrent tombstone inserts its row,
 * and a DELETE that finds nothing still leaves its tombstone: the earlier
 * change, when it arrives, then meets a later version and loses, as it
 * does on the nodes that received the two in order (it is recorded as a
 * conflict there, though it was none).  An UPDATE that left unchanged
 * TOASTed values out cannot be inserted: it waits, a bounded time, until
 * this node has applied what its writer had seen (the writer's context),
 * so that the row arrives first.
 *
 * IDENTIFICATION
 *	  src/replication/apply_rows.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/executor.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/rel.h"
#include "utils/timestamp.h"

#include "config/config.h"
#include "replication/apply_internal.h"
#include "replication/vclock.h"

/* the longest an UPDATE waits for its row to arrive, and how often it looks */
#define CAUSAL_WAIT_MS	10000
#define CAUSAL_POLL_MS	10

typedef MyceliumApplyTarget ApplyTarget;

/*
 * context_covers: the writer of the remote transaction had seen the
 * version (node, ts) -- its context's entry for node is at or after ts.
 */
static bool
context_covers(ApplyTarget *t, const char *node, TimestampTz ts)
{
	const MyceliumApplyChange *c = t->chg;
	int			i;

	for (i = 0; i < c->ctx_len; i++)
		if (strcmp(c->ctx_nodes[i], node) == 0)
			return c->ctx_times[i] >= ts;
	return false;
}

/*
 * key_of renders the primary key of the row in slot (local layout).
 */
static Datum
key_of(ApplyTarget *t, TupleTableSlot *slot)
{
	slot_getallattrs(slot);
	return MyceliumTombstoneKey(t->rel, slot->tts_values, slot->tts_isnull);
}

/*
 * same_key: the rows in a and b (local layout) have the same primary key.
 */
static bool
same_key(ApplyTarget *t, TupleTableSlot *a, TupleTableSlot *b)
{
	return DatumGetBool(DirectFunctionCall2(jsonb_eq, key_of(t, a), key_of(t, b)));
}

/*
 * seen_by_writer: the remote writer had seen version (node, ts) -- it is
 * the sending peer's (its stream is in order), in the writer's context,
 * or older than the table's replication here.
 */
static bool
seen_by_writer(const char *node, TimestampTz ts, void *arg)
{
	ApplyTarget *t = arg;

	return strcmp(node, t->chg->peer) == 0 || context_covers(t, node, ts) ||
		ts <= t->listed_at;
}

/*
 * deleted_concurrently: the key of slot has a tombstone the remote writer
 * had not seen (its dot filled into hit; hit->any: it has any).
 */
static bool
deleted_concurrently(ApplyTarget *t, TupleTableSlot *slot, MyceliumTombstoneHit *hit)
{
	return MyceliumTombstoneConcurrent(t->rel, key_of(t, slot), t->chg->commit_time,
									   seen_by_writer, t, hit);
}

/*
 * remote_wins decides for the row in t->local.  No conflict when the local
 * row has no competing version (written by this remote transaction, or
 * its commit time is unknown), was last written by the same peer (whose
 * stream is in order), its version is in the writer's context (the
 * writer had seen it: causally ordered), or it predates the table's
 * replication (every node had it: copied by replicate_table).  Otherwise
 * the writes are concurrent (*concurrent): last writer wins by commit
 * time, then node name.  Fills the local version for the conflict record.
 */
static bool
remote_wins(ApplyTarget *t, TimestampTz *local_ts, char *local_node, bool *concurrent)
{
	*concurrent = false;
	if (!MyceliumApplyLocalVersion(t->local, local_ts, local_node, NAMEDATALEN))
		return true;
	if (seen_by_writer(local_node, *local_ts, t))
		return true;
	*concurrent = true;
	return MyceliumDotLater(t->chg->commit_time, t->chg->peer, *local_ts, local_node);
}

/*
 * conflict records one conflict and counts it.
 */
static void
conflict(ApplyTarget *t, const char *type, TupleTableSlot *local, TupleTableSlot *remote,
		 TimestampTz local_ts, const char *local_node, const char *resolution)
{
	const MyceliumApplyChange *c = t->chg;
	MyceliumConflictVersions v;

	v.local_ts = local_ts;
	v.local_node = local_node;
	v.remote_ts = c->commit_time;
	v.remote_node = c->peer;
	v.remote_context = MyceliumReplVectorJson(c->ctx_len,
											  (const char *const *) c->ctx_nodes,
											  c->ctx_times);
	MyceliumApplyLogConflict(t->rel, type, local, remote, &v, resolution);
	(*c->conflicts)++;
}

/*
 * resolve_concurrent settles two concurrent versions of a row: the
 * table's custom function when it has one (its row replaces t->remote),
 * else last writer wins (remote_won).  Records the conflict; returns true
 * when t->remote must be written.
 */
static bool
resolve_concurrent(ApplyTarget *t, const char *type, bool remote_won,
				   TimestampTz local_ts, const char *local_node)
{
	const char *resolution;

	if (MyceliumApplyCustomResolve(t->rel, t->local, t->remote))
	{
		conflict(t, type, t->local, t->remote, local_ts, local_node, "custom");
		return true;
	}
	resolution = remote_won ? "apply_remote" : "keep_local";
	conflict(t, type, t->local, t->remote, local_ts, local_node, resolution);
	return remote_won;
}

/*
 * tuple_complete: the sender sent every column's value (an UPDATE leaves
 * out unchanged TOASTed values).
 */
static bool
tuple_complete(MyceliumReplTuple *tuple)
{
	int			i;

	for (i = 0; i < tuple->natts; i++)
		if (tuple->values[i].kind == MYCELIUM_REPL_VALUE_UNCHANGED)
			return false;
	return true;
}

/*
 * write_beats_delete settles update_delete for a write and a concurrent
 * delete by last writer wins, the same on every node: the write wins when
 * its dot is later than the delete's, unless the table's policy is custom
 * (the function settles two rows: the delete wins) or the row is large
 * (MyceliumApplyRowIsSmall: the node that deleted it could not rebuild it).
 * row is the written row; write_* its dot, delete_* the delete's.
 */
static bool
write_beats_delete(ApplyTarget *t, TupleTableSlot *row, TimestampTz write_ts,
				   const char *write_node, TimestampTz delete_ts, const char *delete_node)
{
	return MyceliumDotLater(write_ts, write_node, delete_ts, delete_node) &&
		MyceliumApplyRowIsSmall(t->rel, row) && !MyceliumApplyPolicyIsCustom(t->rel);
}

/*
 * insert_deleted settles a remote write (complete: the whole new row is in
 * t->remote) of a key this node deleted concurrently (hit: the latest such
 * tombstone): update_delete, the row comes back without its tombstones
 * when the write wins (apply_remote), else it stays deleted (skip).
 */
static void
insert_deleted(ApplyTarget *t, bool complete, MyceliumTombstoneHit *hit)
{
	if (complete && write_beats_delete(t, t->remote, t->chg->commit_time, t->chg->peer,
									   hit->ts, hit->node))
	{
		conflict(t, "update_delete", NULL, t->remote, hit->ts, hit->node, "apply_remote");
		ExecSimpleRelationInsert(t->rri, t->estate, t->remote);
		MyceliumTombstoneRemove(t->rel, key_of(t, t->remote));
	}
	else
		conflict(t, "update_delete", NULL, t->remote, hit->ts, hit->node, "skip");
}

/*
 * insert_row writes the remote row in t->remote (complete: every value is
 * there) under its key: inserted when the key is free, settled as
 * update_delete when it was deleted concurrently (insert_deleted), and as
 * insert_insert when the key has a concurrent version here.  Returns
 * whether it recorded a conflict.
 */
static bool
insert_row(ApplyTarget *t, bool complete)
{
	TimestampTz local_ts = 0;
	char		local_node[NAMEDATALEN] = "";
	bool		concurrent;
	bool		wins;

	ExecCopySlot(t->search, t->remote);
	slot_getallattrs(t->search);	/* the key scan reads tts_values */
	if (!MyceliumApplyFindLocal(t))
	{
		MyceliumTombstoneHit hit;

		if (deleted_concurrently(t, t->remote, &hit))
		{
			insert_deleted(t, complete, &hit);
			return true;
		}
		if (!complete)
			return false;		/* caller records it */
		ExecSimpleRelationInsert(t->rri, t->estate, t->remote);
		return false;
	}
	wins = remote_wins(t, &local_ts, local_node, &concurrent);
	if (concurrent)
		wins = resolve_concurrent(t, "insert_insert", wins, local_ts, local_node);
	if (wins)
		ExecSimpleRelationUpdate(t->rri, t->estate, &t->epq, t->local, t->remote);
	return concurrent;
}

/*
 * delete_key deletes the row of the key in t->search (found: it is in
 * t->local) and leaves the peer's tombstone.  A row written concurrently
 * is update_delete, settled by write_beats_delete as where the write
 * arrives after the delete: the row is kept (keep_local) and no tombstone
 * stored -- a node that receives the delete first removes its tombstones
 * when the write brings the row back, so no node keeps one -- or deleted
 * (apply_remote).  A missing key gets the tombstone too (a write of it may
 * still arrive through a third node); it is a conflict only when the key
 * has no tombstone at all: delete_missing, unless in_update (the old key
 * of an UPDATE that changed it: move_key records it).
 */
static void
delete_key(ApplyTarget *t, bool found, bool in_update)
{
	Datum		key = key_of(t, t->search);

	if (found)
	{
		TimestampTz local_ts = 0;
		char		local_node[NAMEDATALEN] = "";
		bool		concurrent;

		(void) remote_wins(t, &local_ts, local_node, &concurrent);
		if (concurrent && write_beats_delete(t, t->local, local_ts, local_node,
											 t->chg->commit_time, t->chg->peer))
		{
			conflict(t, "update_delete", t->local, NULL, local_ts, local_node, "keep_local");
			return;
		}
		if (concurrent)
			conflict(t, "update_delete", t->local, NULL, local_ts, local_node, "apply_remote");
		ExecSimpleRelationDelete(t->rri, t->estate, &t->epq, t->local);
	}
	else if (!in_update)
	{
		MyceliumTombstoneHit hit;

		(void) MyceliumTombstoneConcurrent(t->rel, key, t->chg->commit_time,
										   seen_by_writer, t, &hit);
		if (!hit.any)
			conflict(t, "delete_missing", NULL, t->search, 0, NULL, "skip");
	}
	MyceliumTombstoneStore(t->rel, key, t->chg->peer);
}

/*
 * MyceliumApplyRowInsert inserts the remote row (insert_row).
 */
void
MyceliumApplyRowInsert(MyceliumReplMessage *m)
{
	ApplyTarget t;

	MyceliumApplyOpenTarget(m->u.change.relid, &t);
	MyceliumApplyFillSlot(&t, t.remote, &m->u.change.new_tuple, NULL);
	(void) insert_row(&t, true);
	MyceliumApplyCloseTarget(&t);
}

/*
 * move_key applies an UPDATE that changed the primary key from the one in
 * t->search: the old key is deleted (delete_key) and the new row inserted
 * (insert_row), both as of the update's dot.  Values the sender left out
 * (unchanged, stored out of line) come from the old row when this node
 * has it; the writer's mycelium_key_change trigger sends them all anyway.
 * An old key missing here is recorded as update_delete, unless inserting
 * the new row recorded a conflict of its own.
 */
static void
move_key(ApplyTarget *t, MyceliumReplTuple *new_tuple)
{
	bool		found = MyceliumApplyFindLocal(t);
	bool		complete = found || tuple_complete(new_tuple);

	MyceliumApplyFillSlot(t, t->remote, new_tuple, found ? t->local : NULL);
	ExecMaterializeSlot(t->remote); /* its own copy: insert_row reuses t->local */
	delete_key(t, found, true);
	if (insert_row(t, complete) || found)
		return;
	conflict(t, "update_delete", NULL, t->remote, 0, NULL, complete ? "apply_remote" : "skip");
}

/*
 * context_ahead: the remote writer had seen a change of a third node that
 * is not applied here yet -- its context has an entry later than this
 * node's version vector.
 */
static bool
context_ahead(ApplyTarget *t)
{
	const MyceliumApplyChange *c = t->chg;
	MyceliumVector v;
	int			i,
				j;

	MyceliumReplVectorRead(&v);
	for (i = 0; i < c->ctx_len; i++)
	{
		TimestampTz have = 0;

		if (strcmp(c->ctx_nodes[i], c->peer) == 0 ||
			strcmp(c->ctx_nodes[i], mycelium_node_name) == 0)
			continue;
		for (j = 0; j < v.len; j++)
			if (strcmp(v.nodes[j], c->ctx_nodes[i]) == 0)
				have = v.times[j];
		if (have < c->ctx_times[i])
			return true;
	}
	return false;
}

/*
 * wait_for_context waits until everything the remote writer had seen from
 * third nodes is applied here (context_ahead no longer holds), at most
 * CAUSAL_WAIT_MS; returns whether it was.  Used only for an UPDATE that finds no row and cannot insert it
 * (unchanged TOASTed values left out): its row is on its way through
 * another peer's stream.
 */
static bool
wait_for_context(ApplyTarget *t)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), CAUSAL_WAIT_MS);

	while (context_ahead(t))
	{
		if (GetCurrentTimestamp() >= deadline)
		{
			ereport(WARNING,
					(errmsg("an UPDATE of \"%s\" from node \"%s\" found no row to update",
							RelationGetRelationName(t->rel), t->chg->peer),
					 errdetail("Its writer had seen changes of other nodes not applied here after %d ms; values it left out (unchanged, stored out of line) cannot be rebuilt, so it is skipped.",
							   CAUSAL_WAIT_MS),
					 errhint("The row differs on this node until it is written again; see mycelium.conflicts.")));
			return false;
		}
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 CAUSAL_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	return true;
}

/*
 * MyceliumApplyRowUpdate updates the row found by its key, kept when the
 * local version is later (update_update).  A missing row is update_delete:
 * deleted concurrently (a tombstone the writer had not seen),
 * insert_deleted settles it; else its earlier versions have not arrived
 * here yet (see the file comment) and the new row is inserted
 * (apply_remote), if the sender sent every value; if it left some out, it
 * first waits for the row (wait_for_context), then is skipped.  An UPDATE
 * that changed the key is move_key.
 */
void
MyceliumApplyRowUpdate(MyceliumReplMessage *m)
{
	ApplyTarget t;
	TimestampTz local_ts = 0;
	char		local_node[NAMEDATALEN] = "";
	bool		concurrent;
	bool		found;
	bool		complete = tuple_complete(&m->u.change.new_tuple);
	MyceliumReplTuple *key = m->u.change.old_kind ? &m->u.change.old_tuple
		: &m->u.change.new_tuple;

	MyceliumApplyOpenTarget(m->u.change.relid, &t);
	MyceliumApplyFillSlot(&t, t.search, key, NULL);
	if (m->u.change.old_kind)
	{
		MyceliumApplyFillSlot(&t, t.remote, &m->u.change.new_tuple, NULL);
		if (!same_key(&t, t.search, t.remote))
		{
			move_key(&t, &m->u.change.new_tuple);
			MyceliumApplyCloseTarget(&t);
			return;
		}
	}
	found = MyceliumApplyFindLocal(&t);
	/* an incomplete row cannot be inserted: wait for it to arrive */
	if (!found && !complete && context_ahead(&t) && wait_for_context(&t))
		found = MyceliumApplyFindLocal(&t);
	if (!found)
	{
		MyceliumTombstoneHit hit;

		MyceliumApplyFillSlot(&t, t.remote, &m->u.change.new_tuple, NULL);
		if (deleted_concurrently(&t, t.search, &hit))
			insert_deleted(&t, complete, &hit);
		else
		{
			conflict(&t, "update_delete", NULL, t.remote, hit.ts,
					 hit.ts ? hit.node : NULL, complete ? "apply_remote" : "skip");
			if (complete)
				ExecSimpleRelationInsert(t.rri, t.estate, t.remote);
		}
	}
	else
	{
		bool		wins;

		MyceliumApplyFillSlot(&t, t.remote, &m->u.change.new_tuple, t.local);
		wins = remote_wins(&t, &local_ts, local_node, &concurrent);
		if (concurrent)
			wins = resolve_concurrent(&t, "update_update", wins, local_ts, local_node);
		if (wins)
			ExecSimpleRelationUpdate(t.rri, t.estate, &t.epq, t.local, t.remote);
	}
	MyceliumApplyCloseTarget(&t);
}

/*
 * MyceliumApplyRowDelete deletes the row of the key (delete_key).
 */
void
MyceliumApplyRowDelete(MyceliumReplMessage *m)
{
	ApplyTarget t;

	MyceliumApplyOpenTarget(m->u.change.relid, &t);
	MyceliumApplyFillSlot(&t, t.search, &m->u.change.old_tuple, NULL);
	delete_key(&t, MyceliumApplyFindLocal(&t), false);
	MyceliumApplyCloseTarget(&t);
}
