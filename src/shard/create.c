/*-------------------------------------------------------------------------
 *
 * create.c
 *	  mycelium.create_distributed_table and mycelium.create_reference_table.
 *
 * create_distributed_table, in one metadata change (all members locked,
 * every write committed with 2PC):
 *	 1. checks the table, the column, the method and the shard count;
 *	 2. chooses the colocation group and so where each shard goes: the
 *		group of colocate_with, else the first hash group with the same
 *		shard count, column type and collation, else a new group placed
 *		round-robin over the active nodes;
 *	 3. creates the shell (the table's definition, empty) on every other
 *		member, and the shard tables on their nodes;
 *	 4. moves the existing rows into the shards (one scan of the table,
 *		rows batched per shard as JSON, inserted locally or through the
 *		node's connection), then empties the local table;
 *	 5. records the table and its shards in every member's catalog.
 * Rows move before the catalog lists the table, so nothing routes the
 * table's own scan or TRUNCATE to the (still empty) shards.
 *
 * IDENTIFICATION
 *	  src/shard/create.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/typcache.h"

#include "config/config.h"
#include "shard/shard_internal.h"

PG_FUNCTION_INFO_V1(mycelium_create_distributed_table);
PG_FUNCTION_INFO_V1(mycelium_create_reference_table);

/* rows per INSERT when moving rows into a shard */
#define MOVE_BATCH_ROWS 1000

/* what create_distributed_table was asked for */
typedef struct DistRequest
{
	Oid			relid;
	char	   *qualname;
	char	   *display;
	char	   *column;
	char		method;			/* MYCELIUM_DIST_HASH or _RANGE */
	int			shard_count;	/* 0: not given */
	Oid			colocate_with;	/* InvalidOid: not given */
} DistRequest;

/*
 * parse_method maps the method argument to MYCELIUM_DIST_HASH or _RANGE.
 */
static char
parse_method(const char *method)
{
	if (strcmp(method, "hash") == 0)
		return MYCELIUM_DIST_HASH;
	if (strcmp(method, "range") == 0)
		return MYCELIUM_DIST_RANGE;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown distribution method \"%s\"", method),
			 errdetail("The methods are \"hash\" and \"range\"."),
			 errhint("Use mycelium.create_reference_table for a table copied to every node.")));
	return 0;					/* keep compiler quiet */
}

/*
 * new_layout returns a MyceliumDistTable describing the table as it will
 * be distributed (no shards yet): the column, its type and support
 * functions.  Raises 42703 for a missing column, 42883 for a type without
 * the operator class the method needs.
 */
static MyceliumDistTable *
new_layout(Relation rel, DistRequest *req)
{
	MyceliumDistTable *t = palloc0(sizeof(MyceliumDistTable));
	TypeCacheEntry *tc;

	t->relid = req->relid;
	t->method = req->method;
	t->schema_name = get_namespace_name(RelationGetNamespace(rel));
	t->rel_name = pstrdup(RelationGetRelationName(rel));
	t->dist_column = req->column;
	t->dist_attno = get_attnum(req->relid, req->column);
	if (t->dist_attno <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of relation \"%s\" does not exist",
						req->column, req->display)));
	get_atttypetypmodcoll(req->relid, t->dist_attno, &t->dist_type, &t->dist_typmod,
						  &t->dist_collation);
	tc = lookup_type_cache(t->dist_type, TYPECACHE_HASH_PROC | TYPECACHE_CMP_PROC);
	if (req->method == MYCELIUM_DIST_HASH && !OidIsValid(tc->hash_proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("data type %s has no default operator class for access method \"hash\"",
						format_type_be(t->dist_type)),
				 errhint("Distribute by a column of another type, use method 'range', or create a default hash operator class for the type.")));
	if (req->method == MYCELIUM_DIST_RANGE && !OidIsValid(tc->cmp_proc))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("data type %s has no default operator class for access method \"btree\"",
						format_type_be(t->dist_type)),
				 errhint("Distribute by a column of another type.")));
	if (OidIsValid(tc->hash_proc))
		fmgr_info(tc->hash_proc, &t->hash_fn);
	if (OidIsValid(tc->cmp_proc))
		fmgr_info(tc->cmp_proc, &t->cmp_fn);
	return t;
}

/*
 * check_shard_count validates the shard_count argument for the method.
 */
static void
check_shard_count(DistRequest *req, bool given)
{
	if (req->method == MYCELIUM_DIST_RANGE)
	{
		if (given)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("shard_count must be NULL for range distribution"),
					 errhint("Add the shards of a range-distributed table with mycelium.add_range_shard.")));
		if (OidIsValid(req->colocate_with))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("colocate_with is supported for hash distribution only")));
		return;
	}
	if (given && (req->shard_count < 1 || req->shard_count > MYCELIUM_MAX_SHARD_COUNT))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid shard count %d", req->shard_count),
				 errdetail("A hash-distributed table has between 1 and %d shards.",
						   MYCELIUM_MAX_SHARD_COUNT)));
}

/*
 * same_column_kind says whether two tables' distribution columns hash
 * alike: same type and collation.
 */
static bool
same_column_kind(MyceliumDistTable *a, MyceliumDistTable *b)
{
	return a->dist_type == b->dist_type && a->dist_collation == b->dist_collation;
}

/*
 * colocate_explicitly returns the table named by colocate_with, after
 * checking that the new table can join its group.
 */
static MyceliumDistTable *
colocate_explicitly(DistRequest *req, MyceliumDistTable *layout)
{
	MyceliumDistTable *other = MyceliumGetDistTable(req->colocate_with);
	char	   *other_name = ShardDisplayName(req->colocate_with);

	if (other == NULL || other->method != MYCELIUM_DIST_HASH)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot colocate with \"%s\": it is not a hash-distributed table", other_name)));
	if (req->shard_count != 0 && req->shard_count != other->nshards)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot colocate with \"%s\": it has %d shards, not %d",
						other_name, other->nshards, req->shard_count),
				 errhint("Leave shard_count NULL to use the count of the table colocated with.")));
	if (!same_column_kind(layout, other))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot colocate with \"%s\": distribution column types differ", other_name),
				 errdetail("\"%s\" is distributed by a column of type %s; column \"%s\" is of type %s.",
						   other_name, format_type_be(other->dist_type), req->column,
						   format_type_be(layout->dist_type))));
	return other;
}

/*
 * has_uniform_shards says whether a hash table's shards are the ones a new
 * table of its shard count gets (none split since).
 */
static bool
has_uniform_shards(MyceliumDistTable *t)
{
	int			i;

	for (i = 0; i < t->nshards; i++)
	{
		int32		min_hash;
		int32		max_hash;

		MyceliumHashShardBounds(t->nshards, i, &min_hash, &max_hash);
		if (t->shards[i].min_hash != min_hash || t->shards[i].max_hash != max_hash)
			return false;
	}
	return true;
}

/*
 * default_group returns the first table (lowest colocation id) of a hash
 * group with this shard count and column type whose shards were never
 * split, or NULL.  (A group with split shards is joined only on request,
 * with colocate_with: the new table then gets the same split ranges.)
 */
static MyceliumDistTable *
default_group(int shard_count, MyceliumDistTable *layout)
{
	MyceliumDistTable *best = NULL;
	ListCell   *lc;

	foreach(lc, MyceliumAllDistTables())
	{
		MyceliumDistTable *t = lfirst(lc);

		if (t->method == MYCELIUM_DIST_HASH && t->nshards == shard_count &&
			same_column_kind(layout, t) && has_uniform_shards(t) &&
			(best == NULL || t->colocation_id < best->colocation_id))
			best = t;
	}
	return best;
}

/*
 * plan_hash_shards fills layout's shards: ids from next_id on, hash ranges
 * and nodes from the colocated table (same index: its shards may have been
 * split, so its ranges are copied) or even ranges placed round-robin over
 * the active nodes starting at an offset given by the new group's id.
 */
static void
plan_hash_shards(MyceliumDistTable *layout, int count, MyceliumDistTable *group,
				 ShardMesh *mesh)
{
	List	   *active = ShardActiveNodes(mesh);
	int64		next_id = ShardNextShardId();
	int			i;

	layout->nshards = count;
	layout->shards = palloc0(sizeof(MyceliumShard) * count);
	for (i = 0; i < count; i++)
	{
		MyceliumShard *s = &layout->shards[i];
		const char *node;

		s->shard_id = next_id + i;
		s->shard_name = MyceliumShardName(layout->rel_name, s->shard_id);
		if (group)
		{
			s->min_hash = group->shards[i].min_hash;
			s->max_hash = group->shards[i].max_hash;
		}
		else
			MyceliumHashShardBounds(count, i, &s->min_hash, &s->max_hash);
		s->min_text = psprintf("%d", s->min_hash);
		s->max_text = psprintf("%d", s->max_hash);
		if (group)
			node = group->shards[i].node_name;
		else
			node = ((MyceliumNode *) list_nth(active, (i + layout->colocation_id) %
											  list_length(active)))->node_name;
		strlcpy(s->node_name, node, sizeof(s->node_name));
		s->is_local = strcmp(s->node_name, mycelium_node_name) == 0;
	}
}

/*
 * choose_group sets layout's colocation id and plans its shards.
 */
static void
choose_group(DistRequest *req, MyceliumDistTable *layout, ShardMesh *mesh)
{
	MyceliumDistTable *group = NULL;
	int			count;

	if (req->method == MYCELIUM_DIST_RANGE)
	{
		layout->colocation_id = ShardNextColocationId();
		return;
	}
	if (OidIsValid(req->colocate_with))
		group = colocate_explicitly(req, layout);
	count = group ? group->nshards : req->shard_count ? req->shard_count : mycelium_shard_count;
	if (count > MYCELIUM_MAX_SHARD_COUNT)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid shard count %d", count),
				 errdetail("A hash-distributed table has between 1 and %d shards.",
						   MYCELIUM_MAX_SHARD_COUNT)));
	if (group == NULL)
		group = default_group(count, layout);
	layout->colocation_id = group ? group->colocation_id : ShardNextColocationId();
	plan_hash_shards(layout, count, group, mesh);
}

/* per-shard buffer of rows being moved */
typedef struct MoveBuffer
{
	StringInfoData json;
	int			nrows;
	char	   *insert_sql;
	MyceliumConnection *conn;	/* NULL: local shard */
} MoveBuffer;

/*
 * flush_buffer inserts the buffered rows into their shard.
 */
static void
flush_buffer(MoveBuffer *buf)
{
	const char *param;

	if (buf->nrows == 0)
		return;
	appendStringInfoChar(&buf->json, ']');
	param = buf->json.data;
	if (buf->conn == NULL)
		ShardRunLocal(buf->insert_sql, 1, &param);
	else
	{
		ShardRemoteAsCaller(buf->conn, true);
		PQclear(MyceliumExec(buf->conn, buf->insert_sql, 1, &param));
		ShardRemoteAsCaller(buf->conn, false);
		buf->conn->wrote = true;
	}
	resetStringInfo(&buf->json);
	appendStringInfoChar(&buf->json, '[');
	buf->nrows = 0;
}

/*
 * make_buffers prepares one MoveBuffer per shard of layout, in cxt.
 */
static MoveBuffer *
make_buffers(MyceliumDistTable *layout, ShardMesh *mesh, const char *cols, MemoryContext cxt)
{
	MemoryContext old = MemoryContextSwitchTo(cxt);
	MoveBuffer *bufs = palloc0(sizeof(MoveBuffer) * Max(layout->nshards, 1));
	int			i;

	for (i = 0; i < layout->nshards; i++)
	{
		char	   *shard = MyceliumShardQualifiedName(layout, &layout->shards[i]);

		initStringInfo(&bufs[i].json);
		appendStringInfoChar(&bufs[i].json, '[');
		bufs[i].insert_sql = psprintf("INSERT INTO %s (%s) SELECT %s FROM "
									  "pg_catalog.json_populate_recordset(NULL::%s, $1::pg_catalog.json)",
									  shard, cols, cols, shard);
		bufs[i].conn = ShardMeshConn(mesh, layout->shards[i].node_name);
	}
	MemoryContextSwitchTo(old);
	return bufs;
}

/*
 * move_rows moves every row of the table into its shard: one scan, rows
 * buffered per shard and inserted MOVE_BATCH_ROWS at a time.  A NULL
 * distribution value is an ERROR (23502).
 */
static void
move_rows(DistRequest *req, MyceliumDistTable *layout, ShardMesh *mesh)
{
	MemoryContext cxt = AllocSetContextCreate(CurrentMemoryContext, "mycelium move rows",
											  ALLOCSET_DEFAULT_SIZES);
	MoveBuffer *bufs = make_buffers(layout, mesh, MyceliumInsertColumnList(req->relid), cxt);
	SPIPlanPtr	plan;
	Portal		portal;
	int			i;

	SPI_connect();
	plan = SPI_prepare(psprintf("SELECT r.%s, pg_catalog.row_to_json(r.*)::pg_catalog.text "
								"FROM ONLY %s r", quote_identifier(req->column), req->qualname),
					   0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare the scan of %s", req->qualname);
	PushActiveSnapshot(GetLatestSnapshot());
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	PopActiveSnapshot();
	for (;;)
	{
		SPITupleTable *tt;
		uint64		n;
		uint64		r;

		SPI_cursor_fetch(portal, true, MOVE_BATCH_ROWS);
		tt = SPI_tuptable;
		n = SPI_processed;
		if (n == 0)
			break;
		for (r = 0; r < n; r++)
		{
			bool		isnull;
			Datum		value = SPI_getbinval(tt->vals[r], tt->tupdesc, 1, &isnull);
			MoveBuffer *buf;
			MemoryContext old;

			if (isnull)
				ereport(ERROR,
						(errcode(ERRCODE_NOT_NULL_VIOLATION),
						 errmsg("column \"%s\" of table \"%s\" contains null values",
								req->column, req->display),
						 errdetail("Every row must have a distribution value to be placed in a shard."),
						 errhint("Fill in or delete those rows, then retry.")));
			buf = &bufs[MyceliumShardIndexForValue(layout, value, false)];
			old = MemoryContextSwitchTo(cxt);
			if (buf->nrows > 0)
				appendStringInfoChar(&buf->json, ',');
			appendStringInfoString(&buf->json, SPI_getvalue(tt->vals[r], tt->tupdesc, 2));
			buf->nrows++;
			MemoryContextSwitchTo(old);
		}
		SPI_freetuptable(tt);
		for (i = 0; i < layout->nshards; i++)
			if (bufs[i].nrows >= MOVE_BATCH_ROWS)
				flush_buffer(&bufs[i]);
	}
	SPI_cursor_close(portal);
	for (i = 0; i < layout->nshards; i++)
		flush_buffer(&bufs[i]);
	SPI_finish();
	MemoryContextDelete(cxt);
}

/*
 * table_has_rows says whether the local table has any row (latest
 * snapshot; the caller holds an exclusive lock).
 */
static bool
table_has_rows(const char *qualname)
{
	bool		has_rows;

	SPI_connect();
	MyceliumSpiExecLatest(psprintf("SELECT 1 FROM ONLY %s LIMIT 1", qualname), 0, NULL, NULL, true);
	has_rows = SPI_processed > 0;
	SPI_finish();
	return has_rows;
}

/*
 * record_table lists the table and its shards in every member's catalog.
 */
static void
record_table(ShardMesh *mesh, MyceliumDistTable *layout, const char *qualname)
{
	char		colo[16];
	const char *method = layout->method == MYCELIUM_DIST_HASH ? "hash" :
		layout->method == MYCELIUM_DIST_RANGE ? "range" : "reference";
	const char *params[4] = {qualname, method, layout->dist_column, colo};
	int			i;

	snprintf(colo, sizeof(colo), "%d", layout->colocation_id);
	ShardCatalogWrite(mesh, "INSERT INTO mycelium.dist_table (table_name, method, dist_column, "
					  "colocation_id) VALUES ($1::pg_catalog.regclass, $2, $3, $4::pg_catalog.int4)",
					  4, params);
	for (i = 0; i < layout->nshards; i++)
	{
		MyceliumShard *s = &layout->shards[i];

		ShardInsertShardRow(mesh, qualname, s->shard_id, s->shard_name, s->min_text,
							s->max_text, s->node_name);
	}
}

/*
 * distribute does the work of create_distributed_table once the
 * arguments are checked (steps 2 to 5 of the file header).
 */
static void
distribute(DistRequest *req, MyceliumDistTable *layout)
{
	ShardMesh  *mesh = ShardLockMesh("distribute a table");
	int			i;

	LockRelationOid(req->relid, AccessExclusiveLock);
	ShardCheckNotDistributed(req->relid);
	choose_group(req, layout, mesh);
	if (req->method == MYCELIUM_DIST_RANGE && table_has_rows(req->qualname))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot range-distribute table \"%s\" because it has rows", req->display),
				 errdetail("A range-distributed table starts without shards, so its rows would have nowhere to go."),
				 errhint("Distribute the empty table, add shards with mycelium.add_range_shard, then insert the rows.")));
	for (i = 0; i < mesh->nremote; i++)
		ShardEnsureTableOn(mesh->remote[i], req->relid, false);
	for (i = 0; i < layout->nshards; i++)
		ShardRunOn(mesh, layout->shards[i].node_name,
				   MyceliumShardCreateCommands(req->relid, layout->schema_name,
											   layout->shards[i].shard_name));
	if (layout->nshards > 0)
	{
		move_rows(req, layout, mesh);
		ShardRunLocal(psprintf("TRUNCATE ONLY %s", req->qualname), 0, NULL);
	}
	record_table(mesh, layout, req->qualname);
}

/*
 * mycelium.create_distributed_table(table_name regclass, distribution_column
 * text, method text DEFAULT 'hash', shard_count int DEFAULT NULL,
 * colocate_with regclass DEFAULT NULL) returns void
 *
 * Distributes a table by a column (see the file header).  Only the owner
 * or a superuser may.
 */
Datum
mycelium_create_distributed_table(PG_FUNCTION_ARGS)
{
	DistRequest req;
	Relation	rel;
	MyceliumDistTable *layout;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table name and distribution column must not be null")));
	memset(&req, 0, sizeof(req));
	req.relid = PG_GETARG_OID(0);
	req.column = text_to_cstring(PG_GETARG_TEXT_PP(1));
	req.method = parse_method(PG_ARGISNULL(2) ? "hash" : text_to_cstring(PG_GETARG_TEXT_PP(2)));
	req.shard_count = PG_ARGISNULL(3) ? 0 : PG_GETARG_INT32(3);
	req.colocate_with = PG_ARGISNULL(4) ? InvalidOid : PG_GETARG_OID(4);
	check_shard_count(&req, !PG_ARGISNULL(3));
	MyceliumEnsureLocalNode();

	rel = ShardOpenOwnedTable(req.relid, AccessShareLock, "distribute");
	req.qualname = ShardQualifiedName(req.relid);
	req.display = ShardDisplayName(req.relid);
	ShardCheckDistributable(rel, false);
	layout = new_layout(rel, &req);
	ShardCheckUniqueIncludes(rel, layout->dist_attno, req.column);
	ShardCheckNotDistributed(req.relid);
	/* closed (lock kept) so that TRUNCATE sees no other user of it */
	relation_close(rel, NoLock);
	distribute(&req, layout);
	PG_RETURN_VOID();
}

/*
 * mycelium.create_reference_table(table_name regclass) returns void
 *
 * Makes a table a reference table: created (with this node's rows) on
 * every other member, or reused where an identical empty table exists,
 * and listed in every member's catalog, in one metadata change.  Writes
 * are blocked (EXCLUSIVE lock) from the copy until commit.
 */
Datum
mycelium_create_reference_table(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Relation	rel;
	ShardMesh  *mesh;
	char	   *qualname;
	const char *params[4];
	int			i;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table name must not be null")));
	relid = PG_GETARG_OID(0);
	MyceliumEnsureLocalNode();
	rel = ShardOpenOwnedTable(relid, AccessShareLock, "distribute");
	qualname = ShardQualifiedName(relid);
	ShardCheckDistributable(rel, true);
	ShardCheckNotDistributed(relid);

	mesh = ShardLockMesh("create a reference table");
	LockRelationOid(relid, ExclusiveLock);
	ShardCheckNotDistributed(relid);
	for (i = 0; i < mesh->nremote; i++)
		ShardEnsureTableOn(mesh->remote[i], relid, true);
	params[0] = qualname;
	params[1] = "reference";
	params[2] = NULL;
	params[3] = "0";
	ShardCatalogWrite(mesh, "INSERT INTO mycelium.dist_table (table_name, method, dist_column, "
					  "colocation_id) VALUES ($1::pg_catalog.regclass, $2, $3, $4::pg_catalog.int4)",
					  4, params);
	relation_close(rel, NoLock);
	PG_RETURN_VOID();
}
