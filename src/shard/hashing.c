/*-------------------------------------------------------------------------
 *
 * hashing.c
 *	  Mapping a distribution value to its shard: the hash of a value, the
 *	  hash ranges of a table's shards, the search over sorted shards, and
 *	  shard names.
 *
 * A hash table's shards split the int32 space of the column type's hash
 * function (support function 1 of its default hash operator class, called
 * with the column's collation) into equal inclusive ranges, the first
 * starting at INT32_MIN and the last ending at INT32_MAX.  A range table's
 * shards cover [min_value, max_value) in the order of the type's default
 * btree operator class; gaps between them belong to no shard.
 *
 * IDENTIFICATION
 *	  src/shard/hashing.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"

#include "shard/shard.h"

/*
 * MyceliumHashValue returns the hash of a (non-null) distribution value
 * with the table's hash function and the column's collation.
 */
int32
MyceliumHashValue(MyceliumDistTable *table, Datum value)
{
	if (!OidIsValid(table->hash_fn.fn_oid))
		elog(ERROR, "table \"%s\" has no hash function for its distribution column",
			 table->rel_name);
	return DatumGetInt32(FunctionCall1Coll(&table->hash_fn, table->dist_collation, value));
}

/*
 * MyceliumCompareRangeValues compares two values of the distribution
 * column with the type's btree comparison function (<0, 0, >0).
 */
int
MyceliumCompareRangeValues(MyceliumDistTable *table, Datum a, Datum b)
{
	if (!OidIsValid(table->cmp_fn.fn_oid))
		elog(ERROR, "table \"%s\" has no comparison function for its distribution column",
			 table->rel_name);
	return DatumGetInt32(FunctionCall2Coll(&table->cmp_fn, table->dist_collation, a, b));
}

/*
 * hash_shard_index finds the shard whose inclusive hash range holds h, by
 * binary search over shards sorted by min_hash; -1 if none does.
 */
static int
hash_shard_index(MyceliumDistTable *table, int32 h)
{
	int			lo = 0;
	int			hi = table->nshards - 1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;
		MyceliumShard *s = &table->shards[mid];

		if (h < s->min_hash)
			hi = mid - 1;
		else if (h > s->max_hash)
			lo = mid + 1;
		else
			return mid;
	}
	return -1;
}

/*
 * range_shard_index finds the last shard whose lower bound is <= value,
 * then checks that value is below its (exclusive) upper bound; -1 in a gap.
 */
static int
range_shard_index(MyceliumDistTable *table, Datum value)
{
	int			lo = 0;
	int			hi = table->nshards - 1;
	int			found = -1;

	while (lo <= hi)
	{
		int			mid = lo + (hi - lo) / 2;

		if (MyceliumCompareRangeValues(table, table->shards[mid].min_value, value) <= 0)
		{
			found = mid;
			lo = mid + 1;
		}
		else
			hi = mid - 1;
	}
	if (found >= 0 &&
		MyceliumCompareRangeValues(table, value, table->shards[found].max_value) < 0)
		return found;
	return -1;
}

/*
 * MyceliumShardIndexForValue returns the index into table->shards of the
 * shard that holds a distribution value, or -1 when the value is NULL, the
 * table is a reference table, or no shard covers it (a range gap).  value
 * must be of the column's type.
 */
int
MyceliumShardIndexForValue(MyceliumDistTable *table, Datum value, bool isnull)
{
	if (isnull || table->nshards == 0)
		return -1;
	if (table->method == MYCELIUM_DIST_HASH)
		return hash_shard_index(table, MyceliumHashValue(table, value));
	if (table->method == MYCELIUM_DIST_RANGE)
		return range_shard_index(table, value);
	return -1;
}

/*
 * MyceliumShardQualifiedName returns the quoted, schema-qualified name of
 * a shard (it lives in its table's schema).
 */
char *
MyceliumShardQualifiedName(MyceliumDistTable *table, MyceliumShard *shard)
{
	return quote_qualified_identifier(table->schema_name, shard->shard_name);
}

/*
 * MyceliumHashShardBounds gives the inclusive hash range of shard index
 * (0-based) of shard_count equal ranges over the int32 space.
 */
void
MyceliumHashShardBounds(int shard_count, int index, int32 *min_hash, int32 *max_hash)
{
	uint64		step = (UINT64CONST(1) << 32) / (uint64) shard_count;
	int64		lo = (int64) PG_INT32_MIN + (int64) step * index;

	Assert(shard_count > 0 && index >= 0 && index < shard_count);
	*min_hash = (int32) lo;
	if (index == shard_count - 1)
		*max_hash = PG_INT32_MAX;
	else
		*max_hash = (int32) (lo + (int64) step - 1);
}

/*
 * MyceliumShardName returns the name of a shard of a table:
 * <rel_name>_<shard_id>, with rel_name clipped (on a character boundary)
 * so that the whole fits in NAMEDATALEN - 1 bytes.
 */
char *
MyceliumShardName(const char *rel_name, int64 shard_id)
{
	char		suffix[32];
	int			room;
	int			len;

	snprintf(suffix, sizeof(suffix), "_" INT64_FORMAT, shard_id);
	room = NAMEDATALEN - 1 - (int) strlen(suffix);
	len = pg_mbcliplen(rel_name, strlen(rel_name), room);
	return psprintf("%.*s%s", len, rel_name, suffix);
}

/*
 * set_canonical_style makes the I/O of range bounds independent of the
 * session: ISO dates, the default interval style, shortest exact floats.
 * Returns the GUC nest level to pass to AtEOXact_GUC.
 */
static int
set_canonical_style(void)
{
	int			nest = NewGUCNestLevel();

	(void) set_config_option("datestyle", "ISO, YMD", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("intervalstyle", "postgres", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("extra_float_digits", "1", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nest;
}

/*
 * MyceliumRangeBoundIn parses a range bound stored in the catalog (or
 * given to add_range_shard) as a value of the column's type, in the
 * canonical style (so the catalog means the same in every session and on
 * every node).  Errors from the type's input function propagate.
 */
Datum
MyceliumRangeBoundIn(Oid type, int32 typmod, const char *text)
{
	Oid			typinput;
	Oid			typioparam;
	int			nest;
	Datum		result;

	getTypeInputInfo(type, &typinput, &typioparam);
	nest = set_canonical_style();
	result = OidInputFunctionCall(typinput, unconstify(char *, text), typioparam, typmod);
	AtEOXact_GUC(true, nest);
	return result;
}

/*
 * MyceliumRangeBoundOut prints a value of the column's type as the catalog
 * stores range bounds (canonical style).
 */
char *
MyceliumRangeBoundOut(Oid type, Datum value)
{
	Oid			typoutput;
	bool		varlena;
	int			nest;
	char	   *result;

	getTypeOutputInfo(type, &typoutput, &varlena);
	nest = set_canonical_style();
	result = OidOutputFunctionCall(typoutput, value);
	AtEOXact_GUC(true, nest);
	return result;
}
