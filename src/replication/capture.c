/*-------------------------------------------------------------------------
 *
 * capture.c
 *	  The logical decoding output plugin "mycelium": change capture for
 *	  peer replication.
 *
 * pg_create_logical_replication_slot('s', 'mycelium') loads this library
 * and calls _PG_output_plugin_init.  The plugin streams INSERT, UPDATE,
 * DELETE and TRUNCATE of the tables listed in mycelium.replicated_table,
 * framed as transactions, in the binary protocol of replication.h.
 *
 * Which tables: mycelium.replicated_table is a user_catalog_table, so it can
 * be read under the historic snapshot of the change being decoded, and the
 * answer is the membership as of that change.  Membership is cached per
 * relation and per decoded transaction (a generation counter bumped at every
 * BEGIN), and forgotten mid-transaction when that transaction itself
 * changes mycelium.replicated_table or the relation's relcache entry is
 * invalidated.  Re-reading per transaction, rather than caching for the
 * whole session, is deliberate: transactions that changed the catalog may be
 * filtered out (origin) and never reach this plugin, so decoded changes
 * alone cannot invalidate a session-long cache.  The cost is one index
 * probe per relation per transaction.
 *
 * Which relation descriptions: RELATION is sent before the first change of
 * a relation in the session and again after its relcache entry is
 * invalidated (ALTER TABLE), as pgoutput does; the receiver keeps them.
 *
 * Which transactions: BEGIN is sent lazily before the first captured
 * change, so transactions touching no replicated table produce nothing.
 * Changes that carry a replication origin were applied from a peer and are
 * filtered (filter_by_origin_cb), so nothing loops between peers -- except
 * the origins of the hybrid logical clock's pool (vclock.c), through which
 * local transactions commit with their clock value: their commit time as
 * decoded, and so as sent in BEGIN and COMMIT, is that value.
 *
 * IDENTIFICATION
 *	  src/replication/capture.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "nodes/parsenodes.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "replication/output_plugin.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "config/config.h"
#include "replication/capture.h"
#include "replication/vclock.h"

extern PGDLLEXPORT void _PG_output_plugin_init(OutputPluginCallbacks *cb);

/* report progress to the walsender every this many skipped changes */
#define CAPTURE_PROGRESS_THRESHOLD	100

/* per decoding session state (ctx->output_plugin_private) */
typedef struct CaptureData
{
	MemoryContext context;		/* reset after every callback */
	char	   *node_name;		/* origin name sent in COMMIT */
	bool		begin_sent;		/* BEGIN of the current transaction sent */
	Oid			catalog_relid;	/* mycelium.replicated_table, or InvalidOid */
	uint64		catalog_generation; /* generation catalog_relid is from */
	int			skipped_changes;	/* since the last progress report */
	StringInfo	pending_context;	/* CONTEXT to send before the next change */
	bool		context_pending;
	RepOriginId hlc_origins[MYCELIUM_HLC_ORIGINS];	/* local commits' origins */
} CaptureData;

/* what this session knows about one relation */
typedef struct CaptureRelEntry
{
	Oid			relid;			/* hash key */
	uint64		checked_generation; /* membership valid in this generation */
	bool		replicated;		/* listed and has a usable primary key */
	bool		schema_sent;	/* RELATION sent since last invalidation */
	bool		warned;			/* unusable key reported since then */
} CaptureRelEntry;

/*
 * Session relation cache.  It lives in CacheMemoryContext because the
 * relcache callback (which cannot be unregistered) must never see freed
 * memory, even after a decoding session ended in an ERROR without reaching
 * the shutdown callback; startup replaces whatever an earlier session left.
 */
static HTAB *capture_rels = NULL;
static bool capture_callback_registered = false;
static uint64 capture_generation = 0;

/*
 * capture_relcache_callback forgets what is cached about an invalidated
 * relation (all of them for InvalidOid): its description must be sent again
 * and its membership and primary key checked again.
 */
static void
capture_relcache_callback(Datum arg, Oid relid)
{
	HASH_SEQ_STATUS status;
	CaptureRelEntry *entry;

	if (capture_rels == NULL)
		return;
	if (OidIsValid(relid))
	{
		entry = hash_search(capture_rels, &relid, HASH_FIND, NULL);
		if (entry != NULL)
		{
			entry->schema_sent = false;
			entry->warned = false;
			entry->checked_generation = 0;
		}
		return;
	}
	hash_seq_init(&status, capture_rels);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		entry->schema_sent = false;
		entry->warned = false;
		entry->checked_generation = 0;
	}
}

/*
 * parse_options reads the START_REPLICATION / pg_logical_slot_*_changes
 * options: proto_version (required, must be 1) and node_name (optional,
 * default mycelium.node_name), the origin name sent in every COMMIT.
 */
static void
parse_options(CaptureData *data, List *options)
{
	bool		have_version = false;
	ListCell   *lc;

	foreach(lc, options)
	{
		DefElem    *elem = lfirst(lc);
		char	   *value = elem->arg ? strVal(elem->arg) : NULL;

		if (strcmp(elem->defname, "proto_version") == 0)
		{
			char	   *end;
			long		version;

			errno = 0;
			version = value ? strtol(value, &end, 10) : 0;
			if (value == NULL || *value == '\0' || *end != '\0' || errno != 0)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value \"%s\" for option \"proto_version\"",
								value ? value : "")));
			if (version != MYCELIUM_REPL_PROTO_VERSION)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("output plugin \"mycelium\" does not support protocol version %ld",
								version),
						 errdetail("The only supported protocol version is %d.",
								   MYCELIUM_REPL_PROTO_VERSION)));
			have_version = true;
		}
		else if (strcmp(elem->defname, "node_name") == 0)
		{
			if (value == NULL || *value == '\0' || strlen(value) >= NAMEDATALEN)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("invalid value \"%s\" for option \"node_name\"",
								value ? value : ""),
						 errdetail("A node name has 1 to %d bytes.", NAMEDATALEN - 1)));
			data->node_name = pstrdup(value);
		}
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"%s\" is not recognized by output plugin \"mycelium\"",
							elem->defname),
					 errhint("The options are \"proto_version\" and \"node_name\".")));
	}

	if (!have_version)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("output plugin \"mycelium\" requires option \"proto_version\""),
				 errhint("Pass option \"proto_version\" with value \"%d\".",
						 MYCELIUM_REPL_PROTO_VERSION)));
	if (data->node_name == NULL)
	{
		if (mycelium_node_name == NULL || mycelium_node_name[0] == '\0')
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("output plugin \"mycelium\" needs a node name"),
					 errhint("Set \"mycelium.node_name\" or pass option \"node_name\".")));
		data->node_name = pstrdup(mycelium_node_name);
	}
}

/*
 * lookup_hlc_origins finds the ids of the clock's pool origins (created by
 * CREATE EXTENSION), in a transaction of its own when none is open (the
 * walsender calls startup outside any).
 */
static void
lookup_hlc_origins(CaptureData *data)
{
	MemoryContext caller = CurrentMemoryContext;
	bool		started = false;
	int			i;

	if (!IsTransactionState())
	{
		StartTransactionCommand();
		started = true;
	}
	for (i = 0; i < MYCELIUM_HLC_ORIGINS; i++)
	{
		char		name[NAMEDATALEN];

		MyceliumReplHlcOriginName(i, name, sizeof(name));
		data->hlc_origins[i] = replorigin_by_name(name, true);
	}
	if (started)
		CommitTransactionCommand();
	MemoryContextSwitchTo(caller);
}

/*
 * capture_startup sets up a decoding session: binary output, options (not
 * when the slot is only being created), memory and the relation cache.
 */
static void
capture_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt,
				bool is_init)
{
	CaptureData *data = palloc0(sizeof(CaptureData));
	HASHCTL		hctl;

	data->context = AllocSetContextCreate(ctx->context,
										  "mycelium capture",
										  ALLOCSET_DEFAULT_SIZES);
	{
		MemoryContext old = MemoryContextSwitchTo(ctx->context);

		data->pending_context = makeStringInfo();
		MemoryContextSwitchTo(old);
	}
	opt->output_type = OUTPUT_PLUGIN_BINARY_OUTPUT;
	opt->receive_rewrites = false;
	ctx->output_plugin_private = data;

	if (!is_init)
	{
		parse_options(data, ctx->output_plugin_options);
		lookup_hlc_origins(data);
	}

	if (capture_rels != NULL)
		hash_destroy(capture_rels);
	capture_rels = NULL;
	hctl.keysize = sizeof(Oid);
	hctl.entrysize = sizeof(CaptureRelEntry);
	hctl.hcxt = CacheMemoryContext;
	capture_rels = hash_create("mycelium capture relations", 64, &hctl,
							   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	if (!capture_callback_registered)
	{
		CacheRegisterRelcacheCallback(capture_relcache_callback, (Datum) 0);
		capture_callback_registered = true;
	}
}

/*
 * capture_shutdown drops the relation cache; memory in ctx->context goes
 * with the decoding context.
 */
static void
capture_shutdown(LogicalDecodingContext *ctx)
{
	if (capture_rels != NULL)
		hash_destroy(capture_rels);
	capture_rels = NULL;
}

/*
 * capture_catalog_relid returns the OID of mycelium.replicated_table as the
 * historic snapshot sees it (InvalidOid when the extension is not there),
 * looked up once per generation.
 */
static Oid
capture_catalog_relid(CaptureData *data)
{
	if (data->catalog_generation != capture_generation)
	{
		Oid			nspid = get_namespace_oid("mycelium", true);

		data->catalog_relid = OidIsValid(nspid) ?
			get_relname_relid("replicated_table", nspid) : InvalidOid;
		data->catalog_generation = capture_generation;
	}
	return data->catalog_relid;
}

/*
 * capture_is_listed says whether mycelium.replicated_table lists relid,
 * with one probe of its primary key index under the historic snapshot.
 */
static bool
capture_is_listed(CaptureData *data, Oid relid)
{
	Oid			catalog = capture_catalog_relid(data);
	Relation	crel;
	SysScanDesc scan;
	ScanKeyData key;
	bool		found;

	if (!OidIsValid(catalog))
		return false;
	crel = table_open(catalog, AccessShareLock);
	ScanKeyInit(&key, 1, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(relid));
	scan = systable_beginscan(crel, RelationGetPrimaryKeyIndex(crel), true,
							  NULL, 1, &key);
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(crel, AccessShareLock);
	return found;
}

/*
 * capture_has_usable_key says whether rel's changes identify rows by its
 * primary key: it needs one, and a replica identity of DEFAULT, FULL or
 * USING that same index, so WAL carries the old key of updates and deletes.
 * Otherwise the table is skipped, with a WARNING once per session and again
 * after the table's definition changes (*warned tracks that), so a busy
 * table does not flood the log.
 */
static bool
capture_has_usable_key(Relation rel, bool *warned)
{
	Oid			pkey = RelationGetPrimaryKeyIndex(rel);
	char		ident = rel->rd_rel->relreplident;
	bool		usable = true;

	if (!OidIsValid(pkey))
	{
		usable = false;
		if (!*warned)
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("skipping changes of replicated table \"%s.%s\", which has no primary key",
							get_namespace_name(RelationGetNamespace(rel)),
							RelationGetRelationName(rel)),
					 errdetail("Peers identify replicated rows by primary key."),
					 errhint("Add a primary key to the table.")));
	}
	else if (ident != REPLICA_IDENTITY_DEFAULT && ident != REPLICA_IDENTITY_FULL &&
			 !(ident == REPLICA_IDENTITY_INDEX && RelationGetReplicaIndex(rel) == pkey))
	{
		usable = false;
		if (!*warned)
			ereport(WARNING,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("skipping changes of replicated table \"%s.%s\", whose replica identity is not its primary key",
							get_namespace_name(RelationGetNamespace(rel)),
							RelationGetRelationName(rel)),
					 errhint("Use ALTER TABLE ... REPLICA IDENTITY DEFAULT.")));
	}
	if (!usable)
		*warned = true;
	return usable;
}

/*
 * capture_rel_entry returns the cache entry of rel with its membership
 * checked for the current generation.
 */
static CaptureRelEntry *
capture_rel_entry(CaptureData *data, Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	CaptureRelEntry *entry;
	bool		found;

	entry = hash_search(capture_rels, &relid, HASH_ENTER, &found);
	if (!found)
	{
		entry->checked_generation = 0;
		entry->replicated = false;
		entry->schema_sent = false;
		entry->warned = false;
	}
	if (entry->checked_generation != capture_generation)
	{
		entry->replicated = capture_is_listed(data, relid) &&
			capture_has_usable_key(rel, &entry->warned);
		entry->checked_generation = capture_generation;
	}
	return entry;
}

/*
 * capture_prepare_output writes what must precede a change of rel: BEGIN
 * once per transaction and RELATION when the receiver lacks it.
 */
static void
capture_prepare_output(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
					   Relation rel, CaptureRelEntry *entry)
{
	CaptureData *data = ctx->output_plugin_private;

	if (!data->begin_sent)
	{
		OutputPluginPrepareWrite(ctx, false);
		MyceliumReplWriteBegin(ctx->out, txn->final_lsn,
							   txn->xact_time.commit_time, txn->xid);
		OutputPluginWrite(ctx, false);
		data->begin_sent = true;
	}
	if (data->context_pending)
	{
		OutputPluginPrepareWrite(ctx, false);
		appendBinaryStringInfo(ctx->out, data->pending_context->data,
							   data->pending_context->len);
		OutputPluginWrite(ctx, false);
		data->context_pending = false;
	}
	if (!entry->schema_sent)
	{
		OutputPluginPrepareWrite(ctx, false);
		MyceliumReplWriteRelation(ctx->out, rel);
		OutputPluginWrite(ctx, false);
		entry->schema_sent = true;
	}
}

/*
 * capture_skipped counts a change not sent and, every so many, lets the
 * walsender report progress so a long transaction on other tables does
 * not look like a stalled stream.
 */
static void
capture_skipped(LogicalDecodingContext *ctx)
{
	CaptureData *data = ctx->output_plugin_private;

	if (++data->skipped_changes >= CAPTURE_PROGRESS_THRESHOLD)
	{
		OutputPluginUpdateProgress(ctx, false);
		data->skipped_changes = 0;
	}
}

/*
 * capture_begin starts a transaction: nothing is sent until its first
 * captured change, and cached membership expires.
 */
static void
capture_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	CaptureData *data = ctx->output_plugin_private;

	data->begin_sent = false;
	data->context_pending = false;
	capture_generation++;
}

/*
 * capture_write_change writes one INSERT, UPDATE or DELETE of rel.  The old
 * tuple is the key ('K') unless the table has REPLICA IDENTITY FULL ('O');
 * UPDATE has one only when the key changed (or under FULL).
 */
static void
capture_write_change(LogicalDecodingContext *ctx, Relation rel,
					 ReorderBufferChange *change)
{
	HeapTuple	oldtuple = NULL;
	HeapTuple	newtuple = NULL;
	char		old_kind = '\0';

	if (change->data.tp.oldtuple != NULL)
	{
		oldtuple = &change->data.tp.oldtuple->tuple;
		old_kind = rel->rd_rel->relreplident == REPLICA_IDENTITY_FULL ?
			MYCELIUM_REPL_TUPLE_OLD : MYCELIUM_REPL_TUPLE_KEY;
	}
	if (change->data.tp.newtuple != NULL)
		newtuple = &change->data.tp.newtuple->tuple;

	OutputPluginPrepareWrite(ctx, true);
	switch (change->action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
			MyceliumReplWriteInsert(ctx->out, rel, newtuple);
			break;
		case REORDER_BUFFER_CHANGE_UPDATE:
			MyceliumReplWriteUpdate(ctx->out, rel, old_kind, oldtuple, newtuple);
			break;
		case REORDER_BUFFER_CHANGE_DELETE:
			MyceliumReplWriteDelete(ctx->out, rel, old_kind, oldtuple);
			break;
		default:
			elog(ERROR, "unexpected change action %d", (int) change->action);
	}
	OutputPluginWrite(ctx, true);
}

/*
 * capture_change sends a row change of a replicated table.  A change of
 * mycelium.replicated_table itself is not sent but expires cached
 * membership, so the rest of its transaction sees the new list.
 */
static void
capture_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			   Relation rel, ReorderBufferChange *change)
{
	CaptureData *data = ctx->output_plugin_private;
	MemoryContext old = MemoryContextSwitchTo(data->context);
	CaptureRelEntry *entry;

	if (RelationGetRelid(rel) == capture_catalog_relid(data))
	{
		capture_generation++;
		capture_skipped(ctx);
	}
	else if (!(entry = capture_rel_entry(data, rel))->replicated)
		capture_skipped(ctx);
	else if ((change->action == REORDER_BUFFER_CHANGE_INSERT ||
			  change->action == REORDER_BUFFER_CHANGE_UPDATE) &&
			 change->data.tp.newtuple == NULL)
		elog(ERROR, "no new tuple in a decoded change of \"%s\"",
			 RelationGetRelationName(rel));
	else if (change->action == REORDER_BUFFER_CHANGE_DELETE &&
			 change->data.tp.oldtuple == NULL)
		elog(ERROR, "no old key in a decoded delete from \"%s\"",
			 RelationGetRelationName(rel));
	else
	{
		capture_prepare_output(ctx, txn, rel, entry);
		capture_write_change(ctx, rel, change);
	}

	MemoryContextSwitchTo(old);
	MemoryContextReset(data->context);
}

/*
 * capture_truncate sends one TRUNCATE naming the replicated tables among
 * those truncated (nothing when there are none), after their RELATIONs.
 */
static void
capture_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				 int nrelations, Relation relations[],
				 ReorderBufferChange *change)
{
	CaptureData *data = ctx->output_plugin_private;
	MemoryContext old = MemoryContextSwitchTo(data->context);
	Oid		   *relids = palloc(nrelations * sizeof(Oid));
	int			nrelids = 0;
	uint8		flags = 0;
	int			i;

	for (i = 0; i < nrelations; i++)
	{
		CaptureRelEntry *entry = capture_rel_entry(data, relations[i]);

		if (!entry->replicated)
			continue;
		capture_prepare_output(ctx, txn, relations[i], entry);
		relids[nrelids++] = RelationGetRelid(relations[i]);
	}

	if (nrelids > 0)
	{
		if (change->data.truncate.cascade)
			flags |= MYCELIUM_REPL_TRUNCATE_CASCADE;
		if (change->data.truncate.restart_seqs)
			flags |= MYCELIUM_REPL_TRUNCATE_RESTART;
		OutputPluginPrepareWrite(ctx, true);
		MyceliumReplWriteTruncate(ctx->out, nrelids, relids, flags);
		OutputPluginWrite(ctx, true);
	}
	else
		capture_skipped(ctx);

	MemoryContextSwitchTo(old);
	MemoryContextReset(data->context);
}

/*
 * capture_commit ends a transaction that sent anything with COMMIT; an
 * empty one only reports progress, so the slot can still advance.
 */
static void
capture_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			   XLogRecPtr commit_lsn)
{
	CaptureData *data = ctx->output_plugin_private;

	if (!data->begin_sent)
	{
		OutputPluginUpdateProgress(ctx, true);
		return;
	}
	OutputPluginUpdateProgress(ctx, false);
	data->skipped_changes = 0;

	OutputPluginPrepareWrite(ctx, true);
	MyceliumReplWriteCommit(ctx->out, commit_lsn, txn->end_lsn,
							txn->xact_time.commit_time, data->node_name);
	OutputPluginWrite(ctx, true);
	data->begin_sent = false;
}

/*
 * capture_message keeps the writer's context (a transactional message of
 * the mycelium_context trigger, already a CONTEXT message) to send before
 * the transaction's next captured change; other messages are ignored.  It
 * is parsed first, so a forged one stops decoding rather than the peers.
 */
static void
capture_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				XLogRecPtr message_lsn, bool transactional, const char *prefix,
				Size message_size, const char *message)
{
	CaptureData *data = ctx->output_plugin_private;
	MemoryContext old;
	MyceliumReplMessage m;

	if (!transactional || strcmp(prefix, MYCELIUM_CONTEXT_PREFIX) != 0)
		return;
	old = MemoryContextSwitchTo(data->context);
	MyceliumReplParseMessage(message, (int) message_size, &m);
	if (m.type != MYCELIUM_REPL_MSG_CONTEXT)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("logical message \"%s\" is not a CONTEXT message", prefix)));
	MemoryContextSwitchTo(old);
	MemoryContextReset(data->context);
	resetStringInfo(data->pending_context);
	appendBinaryStringInfo(data->pending_context, message, (int) message_size);
	data->context_pending = true;
}

/*
 * capture_filter_by_origin drops every change that carries a replication
 * origin: it was applied here from a peer, and its own node streams it.
 * The clock's pool origins mark local commits: kept.
 */
static bool
capture_filter_by_origin(LogicalDecodingContext *ctx, RepOriginId origin_id)
{
	CaptureData *data = ctx->output_plugin_private;
	int			i;

	if (origin_id == InvalidRepOriginId)
		return false;
	for (i = 0; i < MYCELIUM_HLC_ORIGINS; i++)
		if (data->hlc_origins[i] == origin_id)
			return false;
	return true;
}

/*
 * _PG_output_plugin_init registers the callbacks of the "mycelium" output
 * plugin.  No prepare or streaming callbacks: prepared transactions are
 * decoded once, at COMMIT PREPARED, and large ones spill to disk.
 */
void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	cb->startup_cb = capture_startup;
	cb->begin_cb = capture_begin;
	cb->change_cb = capture_change;
	cb->truncate_cb = capture_truncate;
	cb->commit_cb = capture_commit;
	cb->message_cb = capture_message;
	cb->filter_by_origin_cb = capture_filter_by_origin;
	cb->shutdown_cb = capture_shutdown;
}
