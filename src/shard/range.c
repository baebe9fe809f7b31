/*-------------------------------------------------------------------------
 *
 * range.c
 *	  mycelium.add_range_shard and mycelium.shard_for.
 *
 * A range shard covers [lower_bound, upper_bound) in the order of the
 * distribution column type's default btree operator class.  Bounds are
 * parsed with the type's input function and stored as its output prints
 * them; shards of one table may not overlap (42P17, as for overlapping
 * partitions), and values between shards belong to none.
 *
 * IDENTIFICATION
 *	  src/shard/range.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/relation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "shard/shard_internal.h"

PG_FUNCTION_INFO_V1(mycelium_add_range_shard);
PG_FUNCTION_INFO_V1(mycelium_shard_for);

/*
 * least_loaded_node returns the active member holding the fewest shards
 * (of all tables), the first in node_id order on a tie.
 */
static char *
least_loaded_node(ShardMesh *mesh)
{
	List	   *active = ShardActiveNodes(mesh);
	MyceliumNode *best = NULL;
	int64		best_count = 0;
	ListCell   *lc;

	foreach(lc, active)
	{
		MyceliumNode *node = lfirst(lc);
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(node->node_name)};
		bool		isnull;
		int64		count;

		SPI_connect();
		MyceliumSpiExecLatest("SELECT pg_catalog.count(*) FROM mycelium.shard WHERE node_name = $1",
							  1, types, values, true);
		count = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
											&isnull));
		SPI_finish();
		if (best == NULL || count < best_count)
		{
			best = node;
			best_count = count;
		}
	}
	return best->node_name;
}

/*
 * check_target_node raises unless node_name is an active member.
 */
static void
check_target_node(ShardMesh *mesh, const char *node_name)
{
	MyceliumNode *node = MyceliumFindNode(mesh->nodes, node_name);

	if (node == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("node \"%s\" is not a member of the mesh", node_name),
				 errhint("SELECT * FROM mycelium.nodes lists the members.")));
	if (strcmp(node->status, "active") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("node \"%s\" is %s and takes no new shards", node_name, node->status)));
}

/*
 * range_table returns the cached metadata of a range-distributed table,
 * or raises 22023.
 */
static MyceliumDistTable *
range_table(Oid relid)
{
	MyceliumDistTable *t = MyceliumGetDistTable(relid);

	if (t == NULL || t->method != MYCELIUM_DIST_RANGE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table \"%s\" is not range-distributed", ShardDisplayName(relid)),
				 errhint("Range shards belong to tables distributed with method 'range'.")));
	return t;
}

/*
 * check_no_overlap raises 42P17 if [lower, upper) overlaps a shard of t.
 */
static void
check_no_overlap(MyceliumDistTable *t, Datum lower, Datum upper)
{
	int			i;

	for (i = 0; i < t->nshards; i++)
	{
		MyceliumShard *s = &t->shards[i];

		if (MyceliumCompareRangeValues(t, lower, s->max_value) < 0 &&
			MyceliumCompareRangeValues(t, s->min_value, upper) < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("range shard would overlap shard " INT64_FORMAT " of table \"%s\"",
							s->shard_id, ShardDisplayName(t->relid)),
					 errdetail("Shard " INT64_FORMAT " covers [%s, %s).",
							   s->shard_id, s->min_text, s->max_text)));
	}
}

/*
 * mycelium.add_range_shard(table_name regclass, lower_bound text,
 * upper_bound text, node_name text DEFAULT NULL) returns bigint
 *
 * Adds a shard for [lower_bound, upper_bound) to a range-distributed
 * table on node_name (default: the active node with the fewest shards),
 * creating its table there, and returns its shard_id.
 */
Datum
mycelium_add_range_shard(PG_FUNCTION_ARGS)
{
	Oid			relid;
	Relation	rel;
	ShardMesh  *mesh;
	MyceliumDistTable *t;
	Datum		lower,
				upper;
	char	   *lower_text,
			   *upper_text,
			   *node_name,
			   *shard_name;
	int64		shard_id;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("table name and bounds must not be null")));
	relid = PG_GETARG_OID(0);
	MyceliumEnsureLocalNode();
	rel = ShardOpenOwnedTable(relid, AccessShareLock, "add shards to");
	mesh = ShardLockMesh("add a range shard");
	t = range_table(relid);

	lower = MyceliumRangeBoundIn(t->dist_type, t->dist_typmod,
								 text_to_cstring(PG_GETARG_TEXT_PP(1)));
	upper = MyceliumRangeBoundIn(t->dist_type, t->dist_typmod,
								 text_to_cstring(PG_GETARG_TEXT_PP(2)));
	lower_text = MyceliumRangeBoundOut(t->dist_type, lower);
	upper_text = MyceliumRangeBoundOut(t->dist_type, upper);
	if (MyceliumCompareRangeValues(t, lower, upper) >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("lower bound %s is not below upper bound %s", lower_text, upper_text),
				 errdetail("A range shard covers [lower_bound, upper_bound).")));
	check_no_overlap(t, lower, upper);

	node_name = PG_ARGISNULL(3) ? least_loaded_node(mesh) : text_to_cstring(PG_GETARG_TEXT_PP(3));
	check_target_node(mesh, node_name);
	shard_id = ShardNextShardId();
	shard_name = MyceliumShardName(t->rel_name, shard_id);
	ShardRunOn(mesh, node_name, MyceliumShardCreateCommands(relid, t->schema_name, shard_name));
	ShardInsertShardRow(mesh, ShardQualifiedName(relid), shard_id, shard_name,
						lower_text, upper_text, node_name);
	relation_close(rel, NoLock);
	PG_RETURN_INT64(shard_id);
}

/*
 * coerce_to_column converts a value of type argtype to the distribution
 * column's type: as is when the types match, else through text (output
 * function of argtype, input function of the column type with its typmod).
 */
static Datum
coerce_to_column(MyceliumDistTable *t, Datum value, Oid argtype)
{
	Oid			typoutput,
				typinput,
				typioparam;
	bool		varlena;

	if (argtype == t->dist_type)
		return value;
	getTypeOutputInfo(argtype, &typoutput, &varlena);
	getTypeInputInfo(t->dist_type, &typinput, &typioparam);
	return OidInputFunctionCall(typinput, OidOutputFunctionCall(typoutput, value),
								typioparam, t->dist_typmod);
}

/*
 * mycelium.shard_for(table_name regclass, value anyelement) returns bigint
 *
 * The shard_id of the shard that holds rows whose distribution column
 * equals value (converted to the column's type), or NULL when no shard
 * covers it (a gap between range shards).  STRICT: NULL in, NULL out.
 */
Datum
mycelium_shard_for(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	MyceliumDistTable *t = MyceliumGetDistTable(relid);
	Oid			argtype = get_fn_expr_argtype(fcinfo->flinfo, 1);
	int			idx;

	if (t == NULL || t->method == MYCELIUM_DIST_REFERENCE)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("table \"%s\" is not a distributed table", ShardDisplayName(relid)),
				 t ? errdetail("Reference tables have a full copy on every node, not shards.") : 0));
	if (!OidIsValid(argtype))
		elog(ERROR, "could not determine the type of the value");
	idx = MyceliumShardIndexForValue(t, coerce_to_column(t, PG_GETARG_DATUM(1), argtype), false);
	if (idx < 0)
		PG_RETURN_NULL();
	PG_RETURN_INT64(t->shards[idx].shard_id);
}
