/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  The checks a table passes before it is distributed or made a
 *	  reference table: ownership, kind, persistence, inheritance, foreign
 *	  keys, replication, unique constraints, and not being distributed
 *	  already.
 *
 * IDENTIFICATION
 *	  src/shard/validate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/relation.h"
#include "catalog/catalog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "shard/shard_internal.h"

/*
 * ShardDisplayName returns a table's name for messages: schema.table,
 * unquoted (just the table for a temporary one, whose schema varies).
 */
char *
ShardDisplayName(Oid relid)
{
	char	   *relname = get_rel_name(relid);
	Oid			nsp = get_rel_namespace(relid);

	if (relname == NULL)
		return psprintf("%u", relid);
	if (isAnyTempNamespace(nsp))
		return relname;
	return psprintf("%s.%s", get_namespace_name(nsp), relname);
}

/*
 * ShardOpenOwnedTable opens the relation behind a regclass argument (which
 * may name a relation dropped since) with lockmode held until the end of
 * the transaction, and raises 42501 unless the current user owns it (or a
 * role it belongs to does) or is a superuser, as ALTER TABLE does.  The
 * catalog writes an owner cannot make itself are made as the extension's
 * owner (ShardCatalogWriteLocal, ShardBeginMeshRole).
 */
Relation
ShardOpenOwnedTable(Oid relid, LOCKMODE lockmode, const char *what)
{
	Relation	rel = try_relation_open(relid, lockmode);

	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (!pg_class_ownercheck(relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s to %s it",
						RelationGetRelationName(rel), what),
				 errhint("Only the table's owner or a superuser may do this.")));
	return rel;
}

/*
 * check_no_foreign_keys refuses a table that references or is referenced
 * by a foreign key: the referenced rows would live on other nodes.
 */
static void
check_no_foreign_keys(Relation rel, const char *display)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(RelationGetRelid(rel))};
	char	   *conname = NULL;
	char	   *other = NULL;
	MemoryContext caller = CurrentMemoryContext;

	SPI_connect();
	if (SPI_execute_with_args("SELECT conname::text, conrelid::regclass::text, "
							  "confrelid::regclass::text, conrelid = $1 "
							  "FROM pg_catalog.pg_constraint WHERE contype = 'f' "
							  "AND (conrelid = $1 OR confrelid = $1) ORDER BY oid LIMIT 1",
							  1, types, values, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read the foreign keys of \"%s\"", display);
	if (SPI_processed > 0)
	{
		bool		outgoing = strcmp(SPI_getvalue(SPI_tuptable->vals[0],
												   SPI_tuptable->tupdesc, 4), "t") == 0;

		conname = MemoryContextStrdup(caller, SPI_getvalue(SPI_tuptable->vals[0],
														   SPI_tuptable->tupdesc, 1));
		other = MemoryContextStrdup(caller, SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc,
									 outgoing ? 3 : 2));
	}
	SPI_finish();
	if (conname)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot distribute table \"%s\" because of foreign key \"%s\"",
						display, conname),
				 errdetail("Foreign keys between \"%s\" and \"%s\" are not supported on distributed or reference tables yet.",
						   display, other),
				 errhint("Drop the foreign key, then retry.")));
}

/*
 * check_not_replicated refuses a table listed in mycelium.replicated_table:
 * a table is either replicated between peers or distributed, not both.
 */
static void
check_not_replicated(Relation rel, const char *display)
{
	Oid			types[1] = {REGCLASSOID};
	Datum		values[1] = {ObjectIdGetDatum(RelationGetRelid(rel))};
	bool		listed;
	Oid			save_userid;
	int			save_sec_context;

	/* the replication catalog is not readable by every role */
	MyceliumBeginCatalogAccess(&save_userid, &save_sec_context);
	SPI_connect();
	MyceliumSpiExecLatest("SELECT 1 FROM mycelium.replicated_table WHERE relid = $1",
						  1, types, values, true);
	listed = SPI_processed > 0;
	SPI_finish();
	MyceliumEndCatalogAccess(save_userid, save_sec_context);
	if (listed)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot distribute replicated table \"%s\"", display),
				 errhint("Run mycelium.stop_replicating_table first.")));
}

/*
 * ShardCheckDistributable raises 0A000 (or 42809 for a relation that is
 * not a table at all) unless rel is a permanent, ordinary user table
 * without inheritance, foreign keys or replication.
 */
void
ShardCheckDistributable(Relation rel, bool reference)
{
	char	   *display = ShardDisplayName(RelationGetRelid(rel));
	char		relkind = rel->rd_rel->relkind;

	if (relkind == RELKIND_PARTITIONED_TABLE || relkind == RELKIND_FOREIGN_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot distribute %s table \"%s\"",
						relkind == RELKIND_FOREIGN_TABLE ? "foreign" : "partitioned", display),
				 errdetail("Only ordinary tables can be distributed or made reference tables.")));
	if (relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", display)));
	if (rel->rd_rel->relispartition || has_subclass(RelationGetRelid(rel)) ||
		has_superclass(RelationGetRelid(rel)))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot distribute table \"%s\" because it takes part in inheritance or partitioning",
						display)));
	if (rel->rd_rel->relpersistence != RELPERSISTENCE_PERMANENT)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot distribute %s table \"%s\"",
						rel->rd_rel->relpersistence == RELPERSISTENCE_TEMP ? "temporary" : "unlogged",
						display),
				 errdetail("Shards live on other nodes, so the table must be permanent.")));
	if (IsCatalogRelation(rel) ||
		RelationGetNamespace(rel) == get_namespace_oid("mycelium", false))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("cannot distribute system table \"%s\"", display)));
	check_no_foreign_keys(rel, display);
	check_not_replicated(rel, display);
	(void) reference;
}

/*
 * ShardCheckUniqueIncludes raises 0A000 unless every unique index (so
 * every primary key and unique constraint) of rel has the distribution
 * column among its key columns: uniqueness is enforced inside one shard
 * only.  Exclusion constraints are refused for the same reason.
 */
void
ShardCheckUniqueIncludes(Relation rel, AttrNumber attno, const char *column)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;

	foreach(lc, indexes)
	{
		Relation	idx = index_open(lfirst_oid(lc), AccessShareLock);
		Form_pg_index form = idx->rd_index;
		bool		found = false;
		char	   *name = pstrdup(RelationGetRelationName(idx));
		int			k;

		for (k = 0; k < form->indnkeyatts; k++)
			if (form->indkey.values[k] == attno)
				found = true;
		index_close(idx, AccessShareLock);
		if (form->indisexclusion)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot distribute table \"%s\" with exclusion constraint \"%s\"",
							ShardDisplayName(RelationGetRelid(rel)), name)));
		if (form->indisunique && !found)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot distribute table \"%s\": unique index \"%s\" does not include distribution column \"%s\"",
							ShardDisplayName(RelationGetRelid(rel)), name, column),
					 errdetail("Primary keys and unique constraints are enforced within each shard only."),
					 errhint("Add \"%s\" to the columns of the primary key or unique constraint, or distribute by one of its columns.",
							 column)));
	}
}

/*
 * ShardCheckNotDistributed raises 42710 when the table is already a
 * distributed or reference table (read with the latest snapshot).
 */
void
ShardCheckNotDistributed(Oid relid)
{
	Oid			types[1] = {REGCLASSOID};
	Datum		values[1] = {ObjectIdGetDatum(relid)};
	char	   *method = NULL;
	MemoryContext caller = CurrentMemoryContext;

	SPI_connect();
	MyceliumSpiExecLatest("SELECT method FROM mycelium.dist_table WHERE table_name = $1",
						  1, types, values, true);
	if (SPI_processed > 0)
		method = MemoryContextStrdup(caller, SPI_getvalue(SPI_tuptable->vals[0],
														  SPI_tuptable->tupdesc, 1));
	SPI_finish();
	if (method)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 strcmp(method, "reference") == 0 ?
				 errmsg("table \"%s\" is already a reference table", ShardDisplayName(relid)) :
				 errmsg("table \"%s\" is already distributed", ShardDisplayName(relid)),
				 errhint("Run mycelium.undistribute_table first to change how it is distributed.")));
}
