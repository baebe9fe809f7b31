/*-------------------------------------------------------------------------
 *
 * cache.c
 *	  The per-backend cache of sharding metadata (mycelium.dist_table and
 *	  mycelium.shard), and the trigger that invalidates it everywhere.
 *
 * The planner hook asks MyceliumAnyDistTables() for every query, so that
 * answer is one static bool once the cache is loaded.  Loading reads both
 * catalog tables in full with plain heap scans (no SPI: the planner hook
 * must not recurse into itself) and keeps, per table, the catalog row and
 * its shard rows; the MyceliumDistTable with types, support functions and
 * parsed bounds is built on first use of each table.
 *
 * Invalidation: a trigger on both catalog tables sends a relcache
 * invalidation for the catalog table (and one for each table whose rows
 * changed), which every backend processes once the change commits, on this
 * node or, through 2PC, on any other.  Our relcache callback marks the
 * cache stale when it sees a catalog table, a cached table or a full reset;
 * a syscache callback on pg_namespace does the same, so a backend notices
 * CREATE/DROP EXTENSION.  A stale cache is not freed at once: the planner
 * may hold pointers into it while it takes further locks (which process
 * invalidations).  Its memory context is retired and deleted at the end of
 * the transaction.
 *
 * IDENTIFICATION
 *	  src/shard/cache.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"
#include "utils/typcache.h"

#include "config/config.h"
#include "shard/shard.h"

PG_FUNCTION_INFO_V1(mycelium_shard_catalog_changed);

/* a shard row as read from mycelium.shard */
typedef struct RawShard
{
	int64		shard_id;
	char	   *shard_name;
	char	   *min_text;
	char	   *max_text;
	char	   *node_name;
} RawShard;

/* one hash table entry per row of mycelium.dist_table */
typedef struct DistCacheEntry
{
	Oid			relid;			/* hash key */
	char		method;
	char	   *dist_column;	/* NULL for reference tables */
	int			colocation_id;
	List	   *raw_shards;		/* RawShard */
	MyceliumDistTable *table;	/* NULL until built */
} DistCacheEntry;

static bool cache_valid = false;
static bool any_dist_tables = false;
static HTAB *dist_hash = NULL;	/* in cache_cxt */
static MemoryContext cache_cxt = NULL;
static List *retired_cxts = NIL;	/* in TopMemoryContext */
static Oid	dist_table_relid = InvalidOid;
static Oid	shard_relid = InvalidOid;
static bool callbacks_registered = false;

/*
 * MyceliumShardCacheInvalidate marks this backend's cache stale; the next
 * use reloads it.
 */
void
MyceliumShardCacheInvalidate(void)
{
	cache_valid = false;
}

/*
 * relcache_callback marks the cache stale on a full reset, a change of a
 * catalog table, or a change of a cached table's definition; and on any
 * change while the catalog tables do not both exist (say, in the middle
 * of CREATE EXTENSION), since their first change could not be recognized.
 */
static void
relcache_callback(Datum arg, Oid relid)
{
	if (!cache_valid)
		return;
	if (relid == InvalidOid || relid == dist_table_relid || relid == shard_relid)
		cache_valid = false;
	else if (!OidIsValid(dist_table_relid) || !OidIsValid(shard_relid))
		cache_valid = false;	/* catalog not there (yet): cheap to look again */
	else if (dist_hash != NULL && hash_search(dist_hash, &relid, HASH_FIND, NULL) != NULL)
		cache_valid = false;
}

/*
 * namespace_callback marks the cache stale when any schema changes, which
 * covers CREATE and DROP EXTENSION mycelium.
 */
static void
namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	cache_valid = false;
}

/*
 * xact_callback deletes the memory of caches that went stale during the
 * transaction, now that nobody can hold pointers into them.
 */
static void
xact_callback(XactEvent event, void *arg)
{
	ListCell   *lc;

	if (event != XACT_EVENT_COMMIT && event != XACT_EVENT_ABORT &&
		event != XACT_EVENT_PREPARE && event != XACT_EVENT_PARALLEL_COMMIT &&
		event != XACT_EVENT_PARALLEL_ABORT)
		return;
	foreach(lc, retired_cxts)
		MemoryContextDelete((MemoryContext) lfirst(lc));
	list_free(retired_cxts);
	retired_cxts = NIL;
}

/*
 * register_callbacks registers the invalidation and transaction callbacks
 * once per backend.
 */
static void
register_callbacks(void)
{
	if (callbacks_registered)
		return;
	CacheRegisterRelcacheCallback(relcache_callback, (Datum) 0);
	CacheRegisterSyscacheCallback(NAMESPACEOID, namespace_callback, (Datum) 0);
	RegisterXactCallback(xact_callback, NULL);
	callbacks_registered = true;
}

/*
 * text_datum_cstring returns a text datum as a C string in the current
 * memory context.
 */
static char *
text_datum_cstring(Datum d)
{
	return TextDatumGetCString(d);
}

/*
 * load_dist_tables reads mycelium.dist_table into dist_hash, skipping rows
 * whose table no longer exists.
 */
static void
load_dist_tables(void)
{
	Relation	rel = table_open(dist_table_relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tup;

	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Datum		values[4];
		bool		nulls[4];
		Oid			relid;
		DistCacheEntry *entry;
		char	   *method;
		bool		found;

		if (desc->natts < 4)
			elog(ERROR, "mycelium.dist_table has %d columns, expected 4", desc->natts);
		heap_deform_tuple(tup, desc, values, nulls);
		relid = DatumGetObjectId(values[0]);
		if (nulls[0] || nulls[1] || !SearchSysCacheExists1(RELOID, ObjectIdGetDatum(relid)))
			continue;
		entry = hash_search(dist_hash, &relid, HASH_ENTER, &found);
		method = text_datum_cstring(values[1]);
		entry->method = strcmp(method, "hash") == 0 ? MYCELIUM_DIST_HASH :
			strcmp(method, "range") == 0 ? MYCELIUM_DIST_RANGE : MYCELIUM_DIST_REFERENCE;
		entry->dist_column = nulls[2] ? NULL : text_datum_cstring(values[2]);
		entry->colocation_id = nulls[3] ? 0 : DatumGetInt32(values[3]);
		entry->raw_shards = NIL;
		entry->table = NULL;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/*
 * load_shards reads mycelium.shard and attaches each row to the entry of
 * its table.
 */
static void
load_shards(void)
{
	Relation	rel = table_open(shard_relid, AccessShareLock);
	TupleDesc	desc = RelationGetDescr(rel);
	SysScanDesc scan = systable_beginscan(rel, InvalidOid, false, NULL, 0, NULL);
	HeapTuple	tup;

	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Datum		values[6];
		bool		nulls[6];
		Oid			relid;
		DistCacheEntry *entry;
		RawShard   *raw;

		if (desc->natts < 6)
			elog(ERROR, "mycelium.shard has %d columns, expected 6", desc->natts);
		heap_deform_tuple(tup, desc, values, nulls);
		if (nulls[0] || nulls[1] || nulls[2] || nulls[3] || nulls[4] || nulls[5])
			continue;
		relid = DatumGetObjectId(values[1]);
		entry = hash_search(dist_hash, &relid, HASH_FIND, NULL);
		if (entry == NULL)
			continue;
		raw = palloc(sizeof(RawShard));
		raw->shard_id = DatumGetInt64(values[0]);
		raw->shard_name = text_datum_cstring(values[2]);
		raw->min_text = text_datum_cstring(values[3]);
		raw->max_text = text_datum_cstring(values[4]);
		raw->node_name = text_datum_cstring(values[5]);
		entry->raw_shards = lappend(entry->raw_shards, raw);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
}

/*
 * ensure_cache loads the cache if it is stale.  Outside a transaction, or
 * where the extension is not installed, the cache is empty.
 */
static void
ensure_cache(void)
{
	HASHCTL		ctl;
	MemoryContext old;
	Oid			nsp;

	if (cache_valid)
		return;
	register_callbacks();
	if (cache_cxt != NULL)
	{
		MemoryContext top = MemoryContextSwitchTo(TopMemoryContext);

		retired_cxts = lappend(retired_cxts, cache_cxt);
		MemoryContextSwitchTo(top);
		cache_cxt = NULL;
	}
	dist_hash = NULL;
	any_dist_tables = false;
	if (!IsTransactionState())
		return;

	cache_cxt = AllocSetContextCreate(CacheMemoryContext, "mycelium shard cache",
									  ALLOCSET_DEFAULT_SIZES);
	memset(&ctl, 0, sizeof(ctl));
	ctl.keysize = sizeof(Oid);
	ctl.entrysize = sizeof(DistCacheEntry);
	ctl.hcxt = cache_cxt;
	dist_hash = hash_create("mycelium distributed tables", 32, &ctl,
							HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	/* valid first: an invalidation arriving while we read clears it again */
	cache_valid = true;
	nsp = get_namespace_oid("mycelium", true);
	dist_table_relid = OidIsValid(nsp) ? get_relname_relid("dist_table", nsp) : InvalidOid;
	shard_relid = OidIsValid(nsp) ? get_relname_relid("shard", nsp) : InvalidOid;
	if (!OidIsValid(dist_table_relid) || !OidIsValid(shard_relid))
		return;

	old = MemoryContextSwitchTo(cache_cxt);
	load_dist_tables();
	load_shards();
	MemoryContextSwitchTo(old);
	any_dist_tables = hash_get_num_entries(dist_hash) > 0;
}

/*
 * MyceliumAnyDistTables says whether this database has any distributed or
 * reference table.  Cheap: one test of a cached bool once loaded.  False
 * where the extension is not installed.
 */
bool
MyceliumAnyDistTables(void)
{
	if (likely(cache_valid))
		return any_dist_tables;
	ensure_cache();
	return any_dist_tables;
}

/* qsort_arg comparators for the shards of a table */
static int
compare_hash_shards(const void *a, const void *b, void *arg)
{
	const MyceliumShard *sa = a;
	const MyceliumShard *sb = b;

	return (sa->min_hash > sb->min_hash) - (sa->min_hash < sb->min_hash);
}

static int
compare_range_shards(const void *a, const void *b, void *arg)
{
	return MyceliumCompareRangeValues((MyceliumDistTable *) arg,
									  ((const MyceliumShard *) a)->min_value,
									  ((const MyceliumShard *) b)->min_value);
}

/*
 * fill_column sets the distribution column fields of a table from its
 * catalog row and the table's definition, with the type's hash and btree
 * comparison support functions (those of its default operator classes).
 */
static void
fill_column(MyceliumDistTable *t, DistCacheEntry *entry)
{
	TypeCacheEntry *tc;

	t->dist_column = pstrdup(entry->dist_column);
	t->dist_attno = get_attnum(t->relid, entry->dist_column);
	if (t->dist_attno == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("distribution column \"%s\" of table \"%s.%s\" does not exist",
						entry->dist_column, t->schema_name, t->rel_name),
				 errhint("The table was changed behind Mycelium's back; restore the column.")));
	get_atttypetypmodcoll(t->relid, t->dist_attno, &t->dist_type, &t->dist_typmod,
						  &t->dist_collation);
	tc = lookup_type_cache(t->dist_type, TYPECACHE_HASH_PROC | TYPECACHE_CMP_PROC);
	if (OidIsValid(tc->hash_proc))
		fmgr_info_cxt(tc->hash_proc, &t->hash_fn, cache_cxt);
	if (OidIsValid(tc->cmp_proc))
		fmgr_info_cxt(tc->cmp_proc, &t->cmp_fn, cache_cxt);
	if (t->method == MYCELIUM_DIST_HASH && !OidIsValid(tc->hash_proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("type %s of distribution column \"%s\" has no default hash operator class",
						format_type_be(t->dist_type), t->dist_column)));
	if (t->method == MYCELIUM_DIST_RANGE && !OidIsValid(tc->cmp_proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("type %s of distribution column \"%s\" has no default btree operator class",
						format_type_be(t->dist_type), t->dist_column)));
}

/*
 * fill_shards converts the raw shard rows of an entry into the table's
 * sorted shard array (hash bounds as int32, range bounds as Datums of the
 * column's type).
 */
static void
fill_shards(MyceliumDistTable *t, DistCacheEntry *entry)
{
	ListCell   *lc;
	int			i = 0;

	t->nshards = list_length(entry->raw_shards);
	t->shards = palloc0(sizeof(MyceliumShard) * Max(t->nshards, 1));
	foreach(lc, entry->raw_shards)
	{
		RawShard   *raw = lfirst(lc);
		MyceliumShard *s = &t->shards[i++];

		s->shard_id = raw->shard_id;
		s->shard_name = raw->shard_name;
		strlcpy(s->node_name, raw->node_name, sizeof(s->node_name));
		s->is_local = strcmp(raw->node_name, mycelium_node_name) == 0;
		s->min_text = raw->min_text;
		s->max_text = raw->max_text;
		if (t->method == MYCELIUM_DIST_HASH)
		{
			s->min_hash = pg_strtoint32(raw->min_text);
			s->max_hash = pg_strtoint32(raw->max_text);
		}
		else
		{
			s->min_value = MyceliumRangeBoundIn(t->dist_type, t->dist_typmod, raw->min_text);
			s->max_value = MyceliumRangeBoundIn(t->dist_type, t->dist_typmod, raw->max_text);
		}
	}
	if (t->method == MYCELIUM_DIST_HASH)
		qsort_arg(t->shards, t->nshards, sizeof(MyceliumShard), compare_hash_shards, t);
	else if (t->method == MYCELIUM_DIST_RANGE)
		qsort_arg(t->shards, t->nshards, sizeof(MyceliumShard), compare_range_shards, t);
}

/*
 * build_table makes the MyceliumDistTable of a cache entry, in the cache's
 * memory context.  On error nothing is kept and the next call tries again.
 */
static MyceliumDistTable *
build_table(DistCacheEntry *entry)
{
	MemoryContext old = MemoryContextSwitchTo(cache_cxt);
	MyceliumDistTable *t = palloc0(sizeof(MyceliumDistTable));
	char	   *relname = get_rel_name(entry->relid);
	Oid			nsp = get_rel_namespace(entry->relid);

	if (relname == NULL)
		elog(ERROR, "cache lookup failed for relation %u", entry->relid);
	t->relid = entry->relid;
	t->method = entry->method;
	t->rel_name = relname;
	t->schema_name = get_namespace_name(nsp);
	t->colocation_id = entry->colocation_id;
	t->dist_attno = InvalidAttrNumber;
	t->hash_fn.fn_oid = InvalidOid;
	t->cmp_fn.fn_oid = InvalidOid;
	if (t->method != MYCELIUM_DIST_REFERENCE && entry->dist_column != NULL)
		fill_column(t, entry);
	if (t->method != MYCELIUM_DIST_REFERENCE)
		fill_shards(t, entry);
	MemoryContextSwitchTo(old);
	return t;
}

/*
 * MyceliumGetDistTable returns the cached metadata of a distributed or
 * reference table, or NULL when relid is neither (or the extension is not
 * installed).  The result belongs to the cache: see shard.h.
 */
MyceliumDistTable *
MyceliumGetDistTable(Oid relid)
{
	DistCacheEntry *entry;

	ensure_cache();
	if (!any_dist_tables)
		return NULL;
	entry = hash_search(dist_hash, &relid, HASH_FIND, NULL);
	if (entry == NULL)
		return NULL;
	if (entry->table == NULL)
		entry->table = build_table(entry);
	return entry->table;
}

/* list_sort comparator: tables by relid */
static int
compare_table_relids(const ListCell *a, const ListCell *b)
{
	Oid			ra = ((MyceliumDistTable *) lfirst(a))->relid;
	Oid			rb = ((MyceliumDistTable *) lfirst(b))->relid;

	return (ra > rb) - (ra < rb);
}

/*
 * MyceliumAllDistTables returns every distributed and reference table as a
 * List of MyceliumDistTable (the list in the caller's memory context, the
 * tables in the cache), ordered by relid.
 */
List *
MyceliumAllDistTables(void)
{
	List	   *result = NIL;
	List	   *relids = NIL;
	HASH_SEQ_STATUS status;
	DistCacheEntry *entry;
	ListCell   *lc;

	ensure_cache();
	if (!any_dist_tables)
		return NIL;
	/* collect first: building a table may not run inside a hash scan */
	hash_seq_init(&status, dist_hash);
	while ((entry = hash_seq_search(&status)) != NULL)
		relids = lappend_oid(relids, entry->relid);
	foreach(lc, relids)
	{
		MyceliumDistTable *t = MyceliumGetDistTable(lfirst_oid(lc));

		if (t != NULL)
			result = lappend(result, t);
	}
	list_sort(result, compare_table_relids);
	return result;
}

/*
 * invalidate_changed_table sends a relcache invalidation for the table a
 * catalog row names, if it still exists.
 */
static void
invalidate_changed_table(HeapTuple tup, TupleDesc desc)
{
	int			attno = 0;
	int			i;
	bool		isnull;
	Datum		d;

	for (i = 0; i < desc->natts; i++)
		if (strcmp(NameStr(TupleDescAttr(desc, i)->attname), "table_name") == 0)
			attno = i + 1;
	if (tup == NULL || attno == 0)
		return;
	d = heap_getattr(tup, attno, desc, &isnull);
	if (!isnull && SearchSysCacheExists1(RELOID, d))
		CacheInvalidateRelcacheByRelid(DatumGetObjectId(d));
}

/*
 * mycelium_shard_catalog_changed is the trigger on mycelium.dist_table and
 * mycelium.shard: per row, it invalidates the relcache entry of the table
 * the row names (plans cached over it are rebuilt); per statement (and
 * TRUNCATE), it invalidates the catalog table itself, which makes every
 * backend drop its shard cache once the change commits.  TRUNCATE
 * invalidates every relcache entry, since the rows are not at hand.
 */
Datum
mycelium_shard_catalog_changed(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("mycelium.shard_catalog_changed() must be called as a trigger")));
	desc = RelationGetDescr(trigdata->tg_relation);
	CacheInvalidateRelcacheByRelid(RelationGetRelid(trigdata->tg_relation));
	if (TRIGGER_FIRED_BY_TRUNCATE(trigdata->tg_event))
		CacheInvalidateRelcacheAll();
	else if (TRIGGER_FIRED_FOR_ROW(trigdata->tg_event))
	{
		invalidate_changed_table(trigdata->tg_trigtuple, desc);
		if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
			invalidate_changed_table(trigdata->tg_newtuple, desc);
	}
	MyceliumShardCacheInvalidate();
	return PointerGetDatum(NULL);
}
