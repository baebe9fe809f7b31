/*-------------------------------------------------------------------------
 *
 * split.c
 *	  mycelium.split_shard: splitting a shard in two on the node that
 *	  holds it.
 *
 * The shard keeps the lower part of its range and a new shard, on the same
 * node, takes the upper part: for hash shards [split_point, old max] (the
 * old one keeps [old min, split_point - 1]), for range shards
 * [split_point, old upper) (the old one keeps [old lower, split_point)).
 * Every shard colocated with it is split at the same point, so shard i of
 * every table of a colocation group still covers the same range.
 *
 * Like a move, a split is one distributed transaction under the mesh lock:
 * the new tables are created (committed, empty) on the holding node, the
 * writes to the group's tables are blocked (routed ones on every node, any
 * on the old shard tables; reads go on), the rows of the upper part move
 * with one DELETE ... RETURNING feeding an INSERT, the catalog changes on
 * every member, and the routed statements on the tables are waited for
 * before the commit (see move_switch.c), so that none reads a half with
 * the old catalog.  All of it commits with two-phase commit or none of it
 * does; new tables a failed split left are replaced by the next attempt.
 *
 * IDENTIFICATION
 *	  src/shard/split.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "shard/shard_move.h"

PG_FUNCTION_INFO_V1(mycelium_split_shard);

#define SHARD_SHRINK_SQL \
	"UPDATE mycelium.shard SET max_value = $2 WHERE shard_id = $1::bigint"
#define SHARD_INSERT_SQL \
	"INSERT INTO mycelium.shard (shard_id, table_name, shard_name, min_value, max_value, node_name) " \
	"VALUES ($1::bigint, $2::regclass, $3, $4, $5, $6)"

/*
 * bad_split_point raises the error for a split point outside the shard.
 */
static void
bad_split_point(ShardMoveMember *m, const char *split_point, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid split point \"%s\" for shard " INT64_FORMAT, split_point, m->shard_id),
			 errdetail("%s", why)));
}

/*
 * parse_hash_point parses a split point of a hash shard: an int32 with
 * min_hash < point <= max_hash, so both halves are non-empty.
 */
static int32
parse_hash_point(ShardMoveMember *m, const char *split_point)
{
	char	   *end;
	long long	v;

	errno = 0;
	v = strtoll(split_point, &end, 10);
	if (split_point[0] == '\0' || *end != '\0' || errno != 0 || v < PG_INT32_MIN || v > PG_INT32_MAX)
		bad_split_point(m, split_point, "The split point of a hash shard is an int4 hash value.");
	if (v <= m->min_hash || v > m->max_hash)
		bad_split_point(m, split_point,
						psprintf("It must lie in (%d, %d], so that both halves cover some hash values.",
								 m->min_hash, m->max_hash));
	return (int32) v;
}

/*
 * parse_value_quietly converts text to a value of the column's type, in a
 * subtransaction, so that bad input is reported as a bad split point.
 * Returns false if the input function refused it.
 */
static bool
parse_value_quietly(MyceliumDistTable *table, const char *text, Datum *value)
{
	MemoryContext caller = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Oid			infunc;
	Oid			ioparam;
	volatile bool ok = true;

	getTypeInputInfo(table->dist_type, &infunc, &ioparam);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(caller);
	PG_TRY();
	{
		*value = OidInputFunctionCall(infunc, (char *) text, ioparam, table->dist_typmod);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(caller);
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(caller);
	CurrentResourceOwner = owner;
	return ok;
}

/*
 * check_range_point checks a split point of a range shard: a value of the
 * column's type strictly between the shard's bounds.
 */
static void
check_range_point(ShardMoveMember *m, const char *split_point)
{
	MyceliumDistTable *table = MyceliumGetDistTable(m->relid);
	MyceliumShard *s = &table->shards[m->index];
	Datum		v;

	if (!parse_value_quietly(table, split_point, &v))
		bad_split_point(m, split_point,
						psprintf("It is not a valid value of type %s.",
								 format_type_with_typemod(table->dist_type, table->dist_typmod)));
	table = MyceliumGetDistTable(m->relid);
	s = &table->shards[m->index];
	if (DatumGetInt32(FunctionCall2Coll(&table->cmp_fn, table->dist_collation, v, s->min_value)) <= 0 ||
		DatumGetInt32(FunctionCall2Coll(&table->cmp_fn, table->dist_collation, v, s->max_value)) >= 0)
		bad_split_point(m, split_point,
						psprintf("It must lie strictly between the shard's bounds \"%s\" and \"%s\".",
								 m->min_text, m->max_text));
}

/*
 * upper_part_condition returns the WHERE condition selecting the rows of
 * the upper part of a shard on the node holding it.
 */
static char *
upper_part_condition(ShardMoveMember *m, const char *split_point)
{
	MyceliumDistTable *table = MyceliumGetDistTable(m->relid);
	const char *col = quote_identifier(m->dist_column);

	if (m->method == MYCELIUM_DIST_HASH)
		return ShardMoveHashExpr(table, col, split_point);
	return psprintf("%s >= %s::%s", col, quote_literal_cstr(split_point),
					format_type_with_typemod(table->dist_type, table->dist_typmod));
}

/*
 * new_member describes the new shard (the upper part) of a group member.
 */
static ShardMoveMember *
new_member(ShardMoveMember *m, int64 shard_id, const char *split_point, int32 hash_point)
{
	ShardMoveMember *n = palloc(sizeof(ShardMoveMember));

	*n = *m;
	n->shard_id = shard_id;
	n->shard_name = MyceliumShardName(m->rel_name, n->shard_id);
	n->min_text = m->method == MYCELIUM_DIST_HASH ? psprintf("%d", hash_point) : pstrdup(split_point);
	return n;
}

/*
 * split_member moves the rows of the upper part of shard m into the new
 * shard n (which exists: see ShardMovePrepareTarget) on their node and
 * records both halves on every member.
 */
static void
split_member(ShardMoveMember *m, ShardMoveMember *n, const char *split_point, int32 hash_point,
			 List *nodes, MyceliumConnection **conns)
{
	char	   *old_q = quote_qualified_identifier(m->schema_name, m->shard_name);
	char	   *new_q = quote_qualified_identifier(n->schema_name, n->shard_name);
	char	   *cols = ShardMoveColumnList(m->relid);
	MyceliumConnection *conn;
	char		idbuf[32],
				newidbuf[32];
	const char *params[6];

	conn = ShardMoveConn(nodes, conns, m->node_name);
	ShardRemoteAsCaller(conn, true);
	ShardMoveRunOn(nodes, conns, m->node_name,
				   psprintf("WITH moved AS (DELETE FROM %s WHERE %s RETURNING %s) "
							"INSERT INTO %s (%s) SELECT %s FROM moved",
							old_q, upper_part_condition(m, split_point), cols,
							new_q, cols, cols));
	ShardRemoteAsCaller(conn, false);

	snprintf(idbuf, sizeof(idbuf), INT64_FORMAT, m->shard_id);
	snprintf(newidbuf, sizeof(newidbuf), INT64_FORMAT, n->shard_id);
	params[0] = idbuf;
	params[1] = m->method == MYCELIUM_DIST_HASH ? psprintf("%d", hash_point - 1) : split_point;
	ShardMoveCatalogWrite(nodes, conns, SHARD_SHRINK_SQL, 2, params);
	params[0] = newidbuf;
	params[1] = quote_qualified_identifier(m->schema_name, m->rel_name);
	params[2] = n->shard_name;
	params[3] = n->min_text;
	params[4] = m->max_text;
	params[5] = m->node_name;
	ShardMoveCatalogWrite(nodes, conns, SHARD_INSERT_SQL, 6, params);
}

/*
 * shard_list returns "s.t_1, s.t_2, ..." for the shard tables of a group.
 */
static char *
shard_list(List *group)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, group)
	{
		ShardMoveMember *m = lfirst(lc);

		appendStringInfo(&buf, "%s%s", buf.len > 0 ? ", " : "",
						 quote_qualified_identifier(m->schema_name, m->shard_name));
	}
	return buf.data;
}

/*
 * check_split_point validates the split point against the group's first
 * shard (the others cover the same range); returns the hash point for
 * hash shards.
 */
static int32
check_split_point(List *group, const char *split_point)
{
	ShardMoveMember *m = linitial(group);

	if (m->method == MYCELIUM_DIST_HASH)
		return parse_hash_point(m, split_point);
	check_range_point(m, split_point);
	return 0;
}

/*
 * mycelium.split_shard(shard_id bigint, split_point text) returns bigint
 *
 * Splits a shard, with every shard colocated with it, at split_point (see
 * the file header); returns the id of the new shard of the given one.
 */
Datum
mycelium_split_shard(PG_FUNCTION_ARGS)
{
	int64		shard_id;
	char	   *split_point;
	List	   *group;
	List	   *nodes;
	MyceliumConnection **conns;
	ShardMoveMember *first;
	List	   *news = NIL;
	ShardMoveSwitch sw = {0};
	int32		hash_point;
	int64		next_id;
	int64		result;
	ListCell   *lc;
	ListCell   *ln;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("shard id and split point must not be null")));
	shard_id = PG_GETARG_INT64(0);
	split_point = text_to_cstring(PG_GETARG_TEXT_PP(1));

	group = ShardMoveGroupOf(shard_id, false);
	foreach(lc, group)
		ShardMoveCheckOwner(MyceliumGetDistTable(((ShardMoveMember *) lfirst(lc))->relid), "split");
	MyceliumEnsureLocalNode();
	check_split_point(group, split_point);
	ShardMoveCheckIsolation("split shards");

	first = linitial(group);
	nodes = ShardMoveLockMesh(first->node_name, &conns, "split shards");
	group = ShardMoveGroupOf(shard_id, false);
	hash_point = check_split_point(group, split_point);
	first = linitial(group);

	/*
	 * The new shards exist before the switch, writes to the old ones wait
	 * until the commit (their rows are moving), and routed statements on
	 * the group's tables are waited for before it (see move_switch.c).
	 */
	next_id = ShardNextShardId();
	foreach(lc, group)
		news = lappend(news, new_member(lfirst(lc), next_id++, split_point, hash_point));
	ShardMovePrepareTarget(news, nodes, conns, first->node_name, shard_list(news));
	ShardMoveBlockWrites(group, nodes, conns, first->node_name, shard_list(group), &sw);
	forboth(lc, group, ln, news)
		split_member(lfirst(lc), lfirst(ln), split_point, hash_point, nodes, conns);
	ShardMoveFinish(&sw, nodes, conns);
	result = ((ShardMoveMember *) linitial(news))->shard_id;
	PG_RETURN_INT64(result);
}
