/*-------------------------------------------------------------------------
 *
 * apply.c
 *	  Applying one peer's change stream to local tables.
 *
 * Each remote transaction (BEGIN ... COMMIT) becomes one local transaction,
 * or several consecutive ones share one where that is safe (see "Batching"
 * below).  Before it commits, replorigin_session_origin_lsn and _timestamp
 * are set to the (last) remote commit's end LSN and commit time: the
 * commit record then
 * carries the origin (so the capture plugin filters it and nothing loops),
 * the origin's progress advances atomically with the data (so a crash
 * never loses or repeats a transaction), and the commit timestamp of every
 * applied row is the remote commit time (so last-writer-wins compares the
 * same versions on every node).
 *
 * Rows are found by primary key with an index scan
 * (RelationFindReplTupleByIndex) and written with the executor's
 * ExecSimpleRelation{Insert,Update,Delete}, as PostgreSQL's own logical
 * replication worker does: no SQL text, constraints, indexes and triggers
 * handled by the executor.  Values arrive as text and go through the local
 * column type's input function.
 *
 * RELATION messages are kept per sender OID; the local table is looked up
 * by schema and name on first use and again after any relcache
 * invalidation of it.
 *
 * Batching: the local commit of a remote transaction is deferred, and the
 * next remote transaction applied in the same local one, up to
 * BATCH_MAX_TRANSACTIONS, until the worker has nothing more buffered and
 * calls MyceliumApplyFlush.  The origin's progress, the persisted vector
 * entry and the shared vector then advance to the batch's last remote
 * commit, atomically with its data: a crash or error mid-batch loses the
 * whole batch, which is streamed again from the last committed one --
 * nothing lost, nothing applied twice.  Only safe while the peer is this
 * node's only peer: a row's version is its local commit's timestamp, and
 * the batch stamps every row with its last remote commit time, which only
 * the same peer's later changes (always in order) ever compare with; with
 * a third node, its concurrent changes would compare with shifted versions
 * and could be resolved differently than on the other nodes.
 *
 * Row changes are applied by apply_rows.c.  Conflicts (last writer wins;
 * see docs/replication.md "Apply") are decided with the local row's dot
 * (commit timestamp, origin: a hybrid logical clock value, vclock.c) and
 * the remote transaction's (clock value, peer name) and recorded through
 * apply_conflict.c.  Deletes leave
 * tombstones (tombstone.c) that tell a key deleted concurrently from one
 * that never existed, and carry the delete's dot: a write and a delete
 * concurrent with it are settled by the same comparison of dots.
 *
 * IDENTIFICATION
 *	  src/replication/apply.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "commands/tablecmds.h"
#include "commands/trigger.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "replication/origin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"

#include "cluster/cluster.h"
#include "config/config.h"
#include "replication/apply_internal.h"
#include "replication/vclock.h"

/* most remote transactions applied in one local transaction */
#define BATCH_MAX_TRANSACTIONS	100

/* what we know about one relation of the sender */
struct ApplyRel
{
	uint32		remote_relid;	/* hash key */
	MemoryContext cxt;			/* names and columns (reset on RELATION) */
	MemoryContext mapcxt;		/* the local mapping (reset on remap) */
	char	   *nspname;
	char	   *relname;
	int			natts;
	char	  **attnames;
	bool		mapped;			/* localrelid and the arrays below are valid */
	Oid			localrelid;
	AttrNumber *attmap;			/* remote column -> local attnum */
	FmgrInfo   *infuncs;		/* remote column -> local type input */
	Oid		   *ioparams;
	int32	   *typmods;
	TimestampTz listed_at;		/* commit time of its mycelium.replicated_table
								 * row here: older versions predate replication */
};
typedef struct ApplyRel ApplyRel;

typedef MyceliumApplyTarget ApplyTarget;

static struct
{
	char		peer[64];
	bool		in_xact;
	TimestampTz commit_time;	/* of the remote transaction being applied */
	XLogRecPtr	final_lsn;
	MemoryContext cxt;			/* lives as long as the worker */
	MemoryContext msgcxt;		/* reset after every message */
	MemoryContext xactcxt;		/* reset at every BEGIN: the context */
	RepOriginId vv_origin;		/* persists our vector entry of the peer */
	int			ctx_len;		/* the writer's context (version vector) */
	char	  **ctx_nodes;
	TimestampTz *ctx_times;
	HTAB	   *rels;
	int			batch_max;		/* for the open local transaction: 1 or more */
	int			batch_txns;		/* remote commits in it, not committed here */
	XLogRecPtr	batch_end_lsn;	/* of the last of them */
	TimestampTz batch_commit_time;
	MyceliumApplyStats stats;
} apply;

/* the remote transaction's part of the change being applied (apply_rows.c) */
static MyceliumApplyChange change;

/*
 * invalidate_rels is the relcache callback: forget the local mapping of
 * the relation (or all of them), so the next change looks it up again.
 */
static void
invalidate_rels(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS seq;
	ApplyRel   *ar;

	if (apply.rels == NULL)
		return;
	hash_seq_init(&seq, apply.rels);
	while ((ar = hash_seq_search(&seq)) != NULL)
		if (relid == InvalidOid || ar->localrelid == relid)
			ar->mapped = false;
}

/*
 * MyceliumApplyInit prepares applying the stream of peer_name; once per
 * worker.
 */
void
MyceliumApplyInit(const char *peer_name, RepOriginId vv_origin)
{
	HASHCTL		ctl;

	memset(&apply, 0, sizeof(apply));
	strlcpy(apply.peer, peer_name, sizeof(apply.peer));
	apply.vv_origin = vv_origin;
	apply.cxt = AllocSetContextCreate(TopMemoryContext, "mycelium apply",
									  ALLOCSET_DEFAULT_SIZES);
	apply.msgcxt = AllocSetContextCreate(apply.cxt, "mycelium apply message",
										 ALLOCSET_DEFAULT_SIZES);
	apply.xactcxt = AllocSetContextCreate(apply.cxt, "mycelium apply context",
										  ALLOCSET_SMALL_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(uint32);
	ctl.entrysize = sizeof(ApplyRel);
	ctl.hcxt = apply.cxt;
	apply.rels = hash_create("mycelium apply relations", 64, &ctl,
							 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	CacheRegisterRelcacheCallback(invalidate_rels, (Datum) 0);
}

/*
 * MyceliumApplyInTransaction: a remote transaction is open (BEGIN seen, no
 * COMMIT yet), or a batch of them is not committed here yet.
 */
bool
MyceliumApplyInTransaction(void)
{
	return apply.in_xact || apply.batch_txns > 0;
}

/*
 * MyceliumApplyReset forgets a remote transaction cut short by an error or
 * a disconnect; the caller has aborted the local transaction.  Relation
 * descriptions are dropped too: a new stream announces them again.
 */
void
MyceliumApplyReset(void)
{
	HASH_SEQ_STATUS seq;
	ApplyRel   *ar;

	apply.in_xact = false;
	apply.batch_txns = 0;
	MemoryContextReset(apply.msgcxt);
	hash_seq_init(&seq, apply.rels);
	while ((ar = hash_seq_search(&seq)) != NULL)
	{
		MemoryContextDelete(ar->cxt);
		hash_search(apply.rels, &ar->remote_relid, HASH_REMOVE, NULL);
	}
}

/*
 * MyceliumApplyGetStats: progress since the worker started.
 */
MyceliumApplyStats *
MyceliumApplyGetStats(void)
{
	return &apply.stats;
}

/*
 * handle_relation stores (or replaces) a RELATION description.
 */
static void
handle_relation(MyceliumReplMessage *m)
{
	ApplyRel   *ar;
	bool		found;
	MemoryContext old;
	int			i;

	ar = hash_search(apply.rels, &m->u.relation.relid, HASH_ENTER, &found);
	if (!found)
	{
		ar->cxt = AllocSetContextCreate(apply.cxt, "mycelium apply relation",
										ALLOCSET_SMALL_SIZES);
		ar->mapcxt = AllocSetContextCreate(ar->cxt, "mycelium apply relation map",
										   ALLOCSET_SMALL_SIZES);
	}
	else
		MemoryContextReset(ar->cxt);	/* also resets mapcxt, its child */
	old = MemoryContextSwitchTo(ar->cxt);
	ar->nspname = pstrdup(m->u.relation.nspname);
	ar->relname = pstrdup(m->u.relation.relname);
	ar->natts = m->u.relation.natts;
	ar->attnames = palloc(sizeof(char *) * Max(ar->natts, 1));
	for (i = 0; i < ar->natts; i++)
		ar->attnames[i] = pstrdup(m->u.relation.columns[i].name);
	MemoryContextSwitchTo(old);
	ar->mapped = false;
	ar->localrelid = InvalidOid;
}

/*
 * map_relation resolves the local table of ar and maps the sender's
 * columns to local ones by name, with their input functions.
 */
static void
map_relation(ApplyRel *ar, Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	MemoryContext old;
	int			i,
				j;

	MemoryContextReset(ar->mapcxt);
	old = MemoryContextSwitchTo(ar->mapcxt);
	ar->attmap = palloc(sizeof(AttrNumber) * Max(ar->natts, 1));
	ar->infuncs = palloc(sizeof(FmgrInfo) * Max(ar->natts, 1));
	ar->ioparams = palloc(sizeof(Oid) * Max(ar->natts, 1));
	ar->typmods = palloc(sizeof(int32) * Max(ar->natts, 1));
	for (i = 0; i < ar->natts; i++)
	{
		Form_pg_attribute att = NULL;
		Oid			infunc;

		for (j = 0; j < desc->natts; j++)
		{
			Form_pg_attribute a = TupleDescAttr(desc, j);

			if (!a->attisdropped && strcmp(NameStr(a->attname), ar->attnames[i]) == 0)
			{
				att = a;
				break;
			}
		}
		if (att == NULL || att->attgenerated)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("replicated table \"%s.%s\" has no column \"%s\" here",
							ar->nspname, ar->relname, ar->attnames[i]),
					 errdetail("Node \"%s\" sends that column.", apply.peer),
					 errhint("Give the table the same definition on every node.")));
		ar->attmap[i] = att->attnum;
		getTypeInputInfo(att->atttypid, &infunc, &ar->ioparams[i]);
		fmgr_info_cxt(infunc, &ar->infuncs[i], ar->mapcxt);
		ar->typmods[i] = att->atttypmod;
	}
	MemoryContextSwitchTo(old);
	ar->listed_at = MyceliumApplyListedAt(RelationGetRelid(rel));
	ar->localrelid = RelationGetRelid(rel);
	ar->mapped = true;
}

/*
 * MyceliumApplyOpenTarget opens the local table of a remote relation with
 * its primary key index and an executor state for one change; raises when
 * the table or its primary key is missing here.
 */
void
MyceliumApplyOpenTarget(uint32 remote_relid, ApplyTarget *t)
{
	ApplyRel   *ar = hash_search(apply.rels, &remote_relid, HASH_FIND, NULL);
	RangeTblEntry *rte;
	Oid			relid;

	if (ar == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("node \"%s\" sent a change of relation %u before describing it",
						apply.peer, remote_relid)));
	relid = RangeVarGetRelid(makeRangeVar(ar->nspname, ar->relname, -1), RowExclusiveLock, true);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("replicated table \"%s.%s\" does not exist here",
						ar->nspname, ar->relname),
				 errdetail("Node \"%s\" sends changes of that table.", apply.peer),
				 errhint("Create the table with the same definition on every node.")));
	memset(t, 0, sizeof(*t));
	change.peer = apply.peer;
	change.commit_time = apply.commit_time;
	change.ctx_len = apply.ctx_len;
	change.ctx_nodes = apply.ctx_nodes;
	change.ctx_times = apply.ctx_times;
	change.conflicts = &apply.stats.conflicts;
	t->chg = &change;
	t->ar = ar;
	t->rel = table_open(relid, NoLock);
	if (!ar->mapped || ar->localrelid != relid)
		map_relation(ar, t->rel);
	t->listed_at = ar->listed_at;
	(void) RelationGetIndexList(t->rel);	/* fills rd_pkindex */
	t->pkoid = t->rel->rd_pkindex;
	if (!OidIsValid(t->pkoid))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("replicated table \"%s.%s\" has no primary key here",
						ar->nspname, ar->relname),
				 errhint("Give the table the same primary key on every node.")));

	t->estate = CreateExecutorState();
	rte = makeNode(RangeTblEntry);
	rte->rtekind = RTE_RELATION;
	rte->relid = relid;
	rte->relkind = t->rel->rd_rel->relkind;
	rte->rellockmode = RowExclusiveLock;
	ExecInitRangeTable(t->estate, list_make1(rte));
	t->rri = makeNode(ResultRelInfo);
	InitResultRelInfo(t->rri, t->rel, 1, NULL, 0);
	t->estate->es_output_cid = GetCurrentCommandId(true);
	ExecOpenIndices(t->rri, false);
	EvalPlanQualInit(&t->epq, t->estate, NULL, NIL, -1);
	AfterTriggerBeginQuery();
	t->remote = table_slot_create(t->rel, &t->estate->es_tupleTable);
	t->search = table_slot_create(t->rel, &t->estate->es_tupleTable);
	t->local = table_slot_create(t->rel, &t->estate->es_tupleTable);
}

/*
 * MyceliumApplyCloseTarget fires queued triggers and releases what
 * MyceliumApplyOpenTarget and the triggers took (the table lock stays until commit).  AFTER triggers
 * of the table (ENABLE ALWAYS) open it again as a trigger target relation:
 * closed here too, or every such change leaked a relcache reference.
 */
void
MyceliumApplyCloseTarget(ApplyTarget *t)
{
	AfterTriggerEndQuery(t->estate);
	EvalPlanQualEnd(&t->epq);
	ExecCloseIndices(t->rri);
	/* the tables the triggers opened (ExecGetTriggerResultRel) */
	ExecCloseResultRelations(t->estate);
	ExecResetTupleTable(t->estate->es_tupleTable, false);
	FreeExecutorState(t->estate);
	table_close(t->rel, NoLock);
}

/*
 * MyceliumApplyFillSlot stores a remote tuple into slot in the local
 * layout: columns the sender did not send, and unchanged TOASTed values, are taken from
 * base (the local row) when given, NULL otherwise (an unchanged value is
 * never part of a key, so key lookups need no base).
 */
void
MyceliumApplyFillSlot(ApplyTarget *t, TupleTableSlot *slot, MyceliumReplTuple *tuple,
		  TupleTableSlot *base)
{
	ApplyRel   *ar = t->ar;
	int			natts = slot->tts_tupleDescriptor->natts;
	int			i;

	if (tuple->natts != ar->natts)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("node \"%s\" sent a row of %d columns for \"%s.%s\", described with %d",
						apply.peer, tuple->natts, ar->nspname, ar->relname, ar->natts)));
	ExecClearTuple(slot);
	if (base)
	{
		slot_getallattrs(base);
		memcpy(slot->tts_values, base->tts_values, sizeof(Datum) * natts);
		memcpy(slot->tts_isnull, base->tts_isnull, sizeof(bool) * natts);
	}
	else
	{
		memset(slot->tts_values, 0, sizeof(Datum) * natts);
		memset(slot->tts_isnull, true, sizeof(bool) * natts);
	}
	for (i = 0; i < tuple->natts; i++)
	{
		MyceliumReplValue *v = &tuple->values[i];
		int			off = ar->attmap[i] - 1;

		if (v->kind == MYCELIUM_REPL_VALUE_UNCHANGED && base != NULL)
			continue;
		if (v->kind == MYCELIUM_REPL_VALUE_UNCHANGED)
		{
			/* no local row to take it from: a key lookup never needs it */
			slot->tts_isnull[off] = true;
			continue;
		}
		slot->tts_isnull[off] = v->kind == MYCELIUM_REPL_VALUE_NULL;
		slot->tts_values[off] = slot->tts_isnull[off] ? (Datum) 0 :
			InputFunctionCall(&ar->infuncs[i], v->data, ar->ioparams[i], ar->typmods[i]);
	}
	ExecStoreVirtualTuple(slot);
}

/*
 * MyceliumApplyFindLocal looks the remote key (t->search) up by primary
 * key and locks the row found into t->local.
 */
bool
MyceliumApplyFindLocal(ApplyTarget *t)
{
	return RelationFindReplTupleByIndex(t->rel, t->pkoid, LockTupleExclusive,
										t->search, t->local);
}

/*
 * handle_truncate truncates the local tables named, together, like the
 * sender did (RESTART IDENTITY honoured; CASCADE is not: a table the
 * sender did not list is never truncated here).
 */
static void
handle_truncate(MyceliumReplMessage *m)
{
	List	   *rels = NIL;
	List	   *relids = NIL;
	ListCell   *lc;
	int			i;

	for (i = 0; i < m->u.truncate.nrelids; i++)
	{
		ApplyTarget t;

		MyceliumApplyOpenTarget(m->u.truncate.relids[i], &t);
		MyceliumApplyCloseTarget(&t);
		if (list_member_oid(relids, t.ar->localrelid))
			continue;
		rels = lappend(rels, table_open(t.ar->localrelid, AccessExclusiveLock));
		relids = lappend_oid(relids, t.ar->localrelid);
	}
	ExecuteTruncateGuts(rels, relids, relids, DROP_RESTRICT,
						(m->u.truncate.flags & MYCELIUM_REPL_TRUNCATE_RESTART) != 0);
	foreach(lc, rels)
		table_close((Relation) lfirst(lc), NoLock);
}

/*
 * batch_is_safe: this node has no other peer than the one we apply (see
 * "Batching" above).  Read at the start of every local transaction, from
 * the node cache, which a membership change invalidates.
 */
static bool
batch_is_safe(void)
{
	ListCell   *lc;
	int			others = 0;

	PushActiveSnapshot(GetTransactionSnapshot());
	foreach(lc, MyceliumCachedNodes())
	{
		MyceliumNode *n = lfirst(lc);

		if (!n->is_local && strcmp(n->node_name, apply.peer) != 0)
			others++;
	}
	PopActiveSnapshot();
	return others == 0;
}

/*
 * handle_begin starts the local transaction of a remote one, or goes on
 * with the open batch.
 */
static void
handle_begin(MyceliumReplMessage *m)
{
	if (apply.in_xact)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("node \"%s\" began a transaction inside another", apply.peer)));
	if (apply.batch_txns >= apply.batch_max)
		MyceliumApplyFlush();
	if (apply.batch_txns == 0)
	{
		StartTransactionCommand();
		apply.batch_max = batch_is_safe() ? BATCH_MAX_TRANSACTIONS : 1;
	}
	apply.in_xact = true;
	MemoryContextReset(apply.xactcxt);
	apply.ctx_len = 0;
	apply.ctx_nodes = NULL;
	apply.ctx_times = NULL;
	apply.commit_time = m->u.begin.commit_time;
	apply.final_lsn = m->u.begin.final_lsn;
}

/*
 * handle_commit ends a remote transaction: its local transaction commits
 * now, or with the batch (MyceliumApplyFlush).
 */
static void
handle_commit(MyceliumReplMessage *m)
{
	if (!apply.in_xact)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("node \"%s\" committed a transaction it did not begin", apply.peer)));
	if (strcmp(m->u.commit.origin, apply.peer) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("node \"%s\" sent a transaction of node \"%s\"",
						apply.peer, m->u.commit.origin),
				 errdetail("The server at the address of node \"%s\" now calls itself \"%s\".",
						   apply.peer, m->u.commit.origin),
				 errhint("Give the server back its mycelium.node_name, or remove and add the node again.")));
	apply.in_xact = false;
	/* the clock passes every version applied; what the peer had seen */
	MyceliumReplHlcObserve(m->u.commit.commit_time);
	MyceliumReplPeerSeen(apply.peer, apply.ctx_len, apply.ctx_nodes, apply.ctx_times);
	apply.batch_txns++;
	apply.batch_end_lsn = m->u.commit.end_lsn;
	apply.batch_commit_time = m->u.commit.commit_time;
	if (apply.batch_txns >= apply.batch_max)
		MyceliumApplyFlush();
}

/*
 * MyceliumApplyFlush commits the local transaction of the applied remote
 * transactions (if any) with the last one's end LSN and commit time as
 * the origin's progress.  The worker calls it whenever it has nothing
 * more buffered.  Inside a remote transaction (the stream may pause in the
 * middle of one) it does nothing: the batch goes on until a later call.
 */
void
MyceliumApplyFlush(void)
{
	if (apply.in_xact || apply.batch_txns == 0)
		return;
	MyceliumTombstonePurge();
	MyceliumReplVectorPersist(apply.vv_origin, apply.batch_commit_time);
	replorigin_session_origin_lsn = apply.batch_end_lsn;
	replorigin_session_origin_timestamp = apply.batch_commit_time;
	CommitTransactionCommand();
	MyceliumReplVectorAdvance(apply.peer, apply.batch_commit_time);
	apply.stats.end_lsn = apply.batch_end_lsn;
	if (XactLastCommitEnd > apply.stats.local_end)
		apply.stats.local_end = XactLastCommitEnd;
	apply.stats.commit_time = apply.batch_commit_time;
	apply.stats.transactions += apply.batch_txns;
	apply.batch_txns = 0;
}

/*
 * handle_context keeps the writer's context for the changes that follow
 * it in the remote transaction.
 */
static void
handle_context(MyceliumReplMessage *m)
{
	int			n = m->u.context.nentries;
	int			i;

	if (!apply.in_xact)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("node \"%s\" sent a CONTEXT message outside a transaction",
						apply.peer)));
	MemoryContextReset(apply.xactcxt);
	apply.ctx_nodes = MemoryContextAlloc(apply.xactcxt, Max(n, 1) * sizeof(char *));
	apply.ctx_times = MemoryContextAlloc(apply.xactcxt, Max(n, 1) * sizeof(TimestampTz));
	for (i = 0; i < n; i++)
	{
		apply.ctx_nodes[i] = MemoryContextStrdup(apply.xactcxt, m->u.context.nodes[i]);
		apply.ctx_times[i] = m->u.context.times[i];
	}
	apply.ctx_len = n;
}

/*
 * apply_change runs one row change or TRUNCATE inside the open remote
 * transaction, with its own snapshot, then makes it visible to the next.
 */
static void
apply_change(MyceliumReplMessage *m)
{
	if (!apply.in_xact)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("node \"%s\" sent a %s message outside a transaction",
						apply.peer, MyceliumReplMsgTypeName(m->type))));
	PushActiveSnapshot(GetTransactionSnapshot());
	switch (m->type)
	{
		case MYCELIUM_REPL_MSG_INSERT:
			MyceliumApplyRowInsert(m);
			break;
		case MYCELIUM_REPL_MSG_UPDATE:
			MyceliumApplyRowUpdate(m);
			break;
		case MYCELIUM_REPL_MSG_DELETE:
			MyceliumApplyRowDelete(m);
			break;
		case MYCELIUM_REPL_MSG_TRUNCATE:
			handle_truncate(m);
			break;
		default:
			elog(ERROR, "unexpected replication message type %d", (int) m->type);
	}
	PopActiveSnapshot();
	CommandCounterIncrement();
}

/*
 * MyceliumApplyMessage parses and applies one protocol message received at
 * WAL position lsn.  Errors propagate: the caller aborts the local
 * transaction, calls MyceliumApplyReset and reconnects, and the stream
 * resumes at the origin's progress.  Memory is per message.
 */
void
MyceliumApplyMessage(const char *buf, int len, XLogRecPtr lsn)
{
	MemoryContext caller = CurrentMemoryContext;
	MyceliumReplMessage m;

	MemoryContextSwitchTo(apply.msgcxt);
	MyceliumReplParseMessage(buf, len, &m);
	switch (m.type)
	{
		case MYCELIUM_REPL_MSG_BEGIN:
			handle_begin(&m);
			break;
		case MYCELIUM_REPL_MSG_COMMIT:
			handle_commit(&m);
			break;
		case MYCELIUM_REPL_MSG_RELATION:
			handle_relation(&m);
			break;
		case MYCELIUM_REPL_MSG_CONTEXT:
			handle_context(&m);
			break;
		default:
			MemoryContextSwitchTo(apply.msgcxt);
			apply_change(&m);
			break;
	}
	MemoryContextSwitchTo(caller);
	MemoryContextReset(apply.msgcxt);
}
