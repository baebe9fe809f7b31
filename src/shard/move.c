/*-------------------------------------------------------------------------
 *
 * move.c
 *	  mycelium.move_shard: moving a shard, with every shard colocated with
 *	  it, to another node; and the helpers split.c and rebalance.c share.
 *
 * A move is one distributed transaction, run by whichever node the caller
 * is connected to (the coordinator), which need hold none of the shards:
 *
 *	 1. lock the mesh metadata (MyceliumLockMesh: every member's node
 *		catalog, in node_id order), re-read the shard group under the lock;
 *	 2. fill the new copies on the target and block writes: either by
 *		logical replication while writes go on, then locks (see
 *		move_switch.c) for the catch-up only (move_online.c), or, when that
 *		cannot be used, by taking those locks first and streaming the rows
 *		with COPY (move_copy.c);
 *	 3. point the group's placements at the target on every member;
 *	 4. wait for the routed statements still using the old copies, and
 *		drop them (move_switch.c).
 *
 * The catalog change and the drop commit together with two-phase commit at
 * the end of the caller's transaction, so a failure anywhere (a node dying
 * mid-copy, a cancel, a timeout) changes nothing: the source keeps its
 * rows, the catalog is unchanged, and the move can simply be run again
 * (the replication objects a failed attempt could not remove are removed
 * by the next one).  Statements routed to the moving shards meanwhile wait
 * and then go to the new placement (move_switch.c).
 *
 * IDENTIFICATION
 *	  src/shard/move.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "shard/shard_move.h"

PG_FUNCTION_INFO_V1(mycelium_move_shard);

/*
 * copy_member fills a ShardMoveMember from a cache entry.
 */
static ShardMoveMember *
copy_member(MyceliumDistTable *table, int index)
{
	ShardMoveMember *m = palloc0(sizeof(ShardMoveMember));
	MyceliumShard *s = &table->shards[index];

	m->relid = table->relid;
	m->method = table->method;
	m->schema_name = pstrdup(table->schema_name);
	m->rel_name = pstrdup(table->rel_name);
	m->dist_column = table->dist_column ? pstrdup(table->dist_column) : NULL;
	m->shard_id = s->shard_id;
	m->shard_name = pstrdup(s->shard_name);
	strlcpy(m->node_name, s->node_name, sizeof(m->node_name));
	m->index = index;
	m->min_hash = s->min_hash;
	m->max_hash = s->max_hash;
	m->min_text = s->min_text ? pstrdup(s->min_text) : NULL;
	m->max_text = s->max_text ? pstrdup(s->max_text) : NULL;
	return m;
}

/*
 * same_hash_ranges says whether two hash tables' shards cover the same
 * ranges, index by index.
 */
static bool
same_hash_ranges(MyceliumDistTable *a, MyceliumDistTable *b)
{
	int			i;

	if (a->nshards != b->nshards)
		return false;
	for (i = 0; i < a->nshards; i++)
		if (a->shards[i].min_hash != b->shards[i].min_hash ||
			a->shards[i].max_hash != b->shards[i].max_hash)
			return false;
	return true;
}

/*
 * ShardMoveColocated returns the distributed tables colocated with
 * `table` (itself first): hash tables of the same colocation group whose
 * shard i covers the same hash range as its shard i.  Range tables are
 * never colocated.
 */
List *
ShardMoveColocated(MyceliumDistTable *table)
{
	List	   *result = list_make1(table);
	ListCell   *lc;

	if (table->colocation_id == 0 || table->method != MYCELIUM_DIST_HASH)
		return result;
	foreach(lc, MyceliumAllDistTables())
	{
		MyceliumDistTable *other = lfirst(lc);

		if (other->relid != table->relid &&
			other->colocation_id == table->colocation_id &&
			other->method == MYCELIUM_DIST_HASH &&
			same_hash_ranges(table, other))
			result = lappend(result, other);
	}
	return result;
}

/*
 * ShardMoveGroupAt returns the shard group of shard `index` of `table`: a
 * list of ShardMoveMember, the table's own shard first.
 */
List *
ShardMoveGroupAt(MyceliumDistTable *table, int index)
{
	List	   *group = NIL;
	ListCell   *lc;

	foreach(lc, ShardMoveColocated(table))
		group = lappend(group, copy_member(lfirst(lc), index));
	return group;
}

/*
 * ShardMoveGroupOf finds a shard by id in the shard cache and returns its
 * group (see ShardMoveGroupAt); an unknown id is an error unless missing_ok
 * (then NIL).
 */
List *
ShardMoveGroupOf(int64 shard_id, bool missing_ok)
{
	ListCell   *lc;

	foreach(lc, MyceliumAllDistTables())
	{
		MyceliumDistTable *table = lfirst(lc);
		int			i;

		if (table->method == MYCELIUM_DIST_REFERENCE)
			continue;
		for (i = 0; i < table->nshards; i++)
			if (table->shards[i].shard_id == shard_id)
				return ShardMoveGroupAt(table, i);
	}
	if (!missing_ok)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("shard " INT64_FORMAT " does not exist", shard_id),
				 errhint("SELECT * FROM mycelium.shards lists the shards.")));
	return NIL;
}

/*
 * ShardMoveCheckOwner allows only the owner of a distributed table, or a
 * superuser, to move or split its shards.
 */
void
ShardMoveCheckOwner(MyceliumDistTable *table, const char *action)
{
	if (!pg_class_ownercheck(table->relid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("must be owner of table %s to %s its shards",
						quote_qualified_identifier(table->schema_name, table->rel_name),
						action),
				 errhint("Only the table's owner or a superuser may; colocated tables move and split together, so their owners must be the same.")));
}

/*
 * ShardCheckNodeAdmin allows only superusers a node-level operation (one
 * that moves the shards of every table or changes a node's status); the
 * function is also revoked from PUBLIC, this is for roles granted it.
 */
void
ShardCheckNodeAdmin(const char *what)
{
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to %s", what),
				 errdetail("It moves the shards of every table, so only superusers may.")));
}

/*
 * ShardMoveCheckIsolation refuses to run in a transaction whose snapshot was
 * taken before the shards were locked (REPEATABLE READ, SERIALIZABLE): the
 * copy would miss rows committed meanwhile.
 */
void
ShardMoveCheckIsolation(const char *what)
{
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("cannot %s in a transaction with isolation level %s", what,
						XactIsoLevel == XACT_SERIALIZABLE ? "SERIALIZABLE" : "REPEATABLE READ"),
				 errdetail("Its snapshot could predate the lock on the shards, so rows committed meanwhile would be lost."),
				 errhint("Run it in a READ COMMITTED transaction.")));
}

/*
 * ShardMoveConn returns the connection to a node of a
 * MyceliumLockMesh result: NULL for the local node.
 */
MyceliumConnection *
ShardMoveConn(List *nodes, MyceliumConnection **conns, const char *node_name)
{
	ListCell   *lc;
	int			i = 0;

	foreach(lc, nodes)
	{
		MyceliumNode *node = lfirst(lc);

		if (strcmp(node->node_name, node_name) == 0)
		{
			if (node->is_local)
				return NULL;
			if (!MyceliumConnectionUsable(conns[i]))
				MyceliumReportConnError(ERROR, conns[i], "reach node");
			return conns[i];
		}
		i++;
	}
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("node \"%s\" is not a member of the mesh", node_name),
			 errdetail("A shard placement names a node the mesh no longer has.")));
	return NULL;				/* keep compiler quiet */
}

/*
 * ShardMoveRunOn runs one utility or DML statement on a node (locally through
 * SPI), as part of the current distributed transaction.
 */
void
ShardMoveRunOn(List *nodes, MyceliumConnection **conns, const char *node_name,
			   const char *sql)
{
	MyceliumConnection *conn = ShardMoveConn(nodes, conns, node_name);

	if (conn == NULL)
	{
		ShardRunLocal(sql, 0, NULL);
		return;
	}
	MyceliumExecCommand(conn, sql);
	conn->wrote = true;
}

/*
 * ShardMoveCatalogWrite runs one catalog write (text parameters) locally and
 * on every member, joining the distributed commit.
 */
void
ShardMoveCatalogWrite(List *nodes, MyceliumConnection **conns, const char *sql,
					  int nparams, const char *const *params)
{
	MyceliumConnection **remote;
	int			nremote;

	ShardCatalogWriteLocal(sql, nparams, params);
	remote = MyceliumUsableMembers(nodes, conns, &nremote);
	MyceliumWriteOnMembers(remote, nremote, sql, nparams, params);
}

/*
 * ShardMoveLockMesh connects to the target node first, so that a target
 * that is down gets an error naming it, then locks the mesh metadata (see
 * MyceliumLockMesh) and returns the membership under the lock.
 */
List *
ShardMoveLockMesh(const char *target_node, MyceliumConnection ***conns_out, const char *what)
{
	List	   *nodes = MyceliumLoadNodes();
	MyceliumNode *target = target_node ? MyceliumFindNode(nodes, target_node) : NULL;
	ShardRole	role;

	ShardBeginMeshRole(&role, what);
	if (target && !target->is_local)
	{
		MyceliumConnection *conn;
		const char *name = target->node_name;
		const char *host = target->host;
		int			port = target->port;

		MyceliumGetConnections(&conn, 1, &name, &host, &port, MYCELIUM_CONN_XACT, true);
		if (!MyceliumConnectionUsable(conn))
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not connect to node \"%s\"", target_node),
					 errdetail_internal("%s", conn->connect_error ? conn->connect_error : "connection failed"),
					 errhint("A shard can only move to a node that is up; nothing was changed.")));
	}
	nodes = MyceliumLockMesh(NULL, conns_out);
	ShardEndMeshRole(&role);
	return nodes;
}

/*
 * ShardMoveCreateTable creates the (empty) shard table of a group member on a
 * node, one statement at a time.
 */
void
ShardMoveCreateTable(ShardMoveMember *m, List *nodes, MyceliumConnection **conns,
					 const char *node_name)
{
	MyceliumConnection *conn = ShardMoveConn(nodes, conns, node_name);
	ListCell   *lc;

	foreach(lc, MyceliumShardCreateCommands(m->relid, m->schema_name, m->shard_name))
	{
		if (conn == NULL)
			ShardRunLocalDdl(lfirst(lc));
		else
			ShardMoveRunOn(nodes, conns, node_name, lfirst(lc));
	}
}

/*
 * ShardMoveHashExpr returns the SQL condition "hash(col) >= point" with the
 * table's hash function, which computes on any node the same hash as
 * MyceliumHashValue (the column's collation applies implicitly).
 */
char *
ShardMoveHashExpr(MyceliumDistTable *table, const char *quoted_col, const char *point)
{
	Oid			fn = table->hash_fn.fn_oid;

	return psprintf("%s(%s) >= %s",
					quote_qualified_identifier(get_namespace_name(get_func_namespace(fn)),
											   get_func_name(fn)),
					quoted_col, quote_literal_cstr(point));
}

/*
 * shard_table_list returns "s.t_1, s.t_2, ..." for the group's shard tables.
 */
static char *
shard_table_list(List *group)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, group)
	{
		ShardMoveMember *m = lfirst(lc);

		if (buf.len > 0)
			appendStringInfoString(&buf, ", ");
		appendStringInfoString(&buf, quote_qualified_identifier(m->schema_name, m->shard_name));
	}
	return buf.data;
}

/*
 * ShardMoveGroupLocked moves a shard group to target_node; the caller
 * holds the mesh lock (nodes and conns are MyceliumLockMesh's result), has
 * checked the target, and calls ShardMoveFinish(sw) after its last move.
 * See the file header for the steps.
 */
void
ShardMoveGroupLocked(List *group, List *nodes, MyceliumConnection **conns,
					 const char *target_node, ShardMoveSwitch *sw)
{
	ShardMoveMember *first = linitial(group);
	char		source_node[64];
	MyceliumConnection *src;
	MyceliumConnection *dst;
	char	   *tables = shard_table_list(group);
	StringInfoData ids;
	const char *params[2];
	ListCell   *lc;

	strlcpy(source_node, first->node_name, sizeof(source_node));
	foreach(lc, group)
		if (strcmp(((ShardMoveMember *) lfirst(lc))->node_name, source_node) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("colocated shards of shard " INT64_FORMAT " are on different nodes",
							first->shard_id),
					 errdetail("Shard " INT64_FORMAT " is on node \"%s\"; colocated shards always move together.",
							   first->shard_id, source_node)));
	src = ShardMoveConn(nodes, conns, source_node);
	dst = ShardMoveConn(nodes, conns, target_node);

	initStringInfo(&ids);
	appendStringInfoChar(&ids, '{');
	foreach(lc, group)
		appendStringInfo(&ids, "%s" INT64_FORMAT, ids.len > 1 ? "," : "",
						 ((ShardMoveMember *) lfirst(lc))->shard_id);
	appendStringInfoChar(&ids, '}');

	if (ShardMoveOnlinePossible(nodes, conns, source_node))
		ShardMoveCopyOnline(group, nodes, conns, source_node, target_node, tables, sw);
	else
	{
		ShardMoveRemoveLeftovers(group, nodes, source_node, target_node, tables);
		ShardMovePrepareTarget(group, nodes, conns, target_node, tables);
		/* writes to the group wait from here until the commit; reads go on */
		ShardMoveBlockWrites(group, nodes, conns, source_node, tables, sw);
		foreach(lc, group)
			ShardMoveCopyRows(lfirst(lc), src, dst);
	}

	ShardMoveDropLater(sw, source_node, tables);
	params[0] = ids.data;
	params[1] = target_node;
	ShardMoveCatalogWrite(nodes, conns, SHARD_MOVE_SQL, 2, params);
}

/*
 * check_move_target refuses a target that is not an active member.
 */
static void
check_move_target(List *nodes, const char *target_node)
{
	MyceliumNode *target = MyceliumFindNode(nodes, target_node);

	if (target == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("node \"%s\" is not a member of the mesh", target_node),
				 errhint("SELECT * FROM mycelium.nodes lists the members.")));
	if (strcmp(target->status, "active") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot move shards to node \"%s\" because it is %s",
						target_node, target->status)));
}

/*
 * mycelium.move_shard(shard_id bigint, target_node text) returns void
 *
 * Moves a shard, with every shard colocated with it, to target_node (see
 * the file header).  Moving a shard to the node that already holds it
 * does nothing (a NOTICE says so).
 */
Datum
mycelium_move_shard(PG_FUNCTION_ARGS)
{
	int64		shard_id;
	char	   *target_node;
	List	   *group;
	List	   *nodes;
	MyceliumConnection **conns;
	ShardMoveSwitch sw = {0};
	ListCell   *lc;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("shard id and target node must not be null")));
	shard_id = PG_GETARG_INT64(0);
	target_node = text_to_cstring(PG_GETARG_TEXT_PP(1));

	/* fail fast on bad input, before connecting anywhere */
	group = ShardMoveGroupOf(shard_id, false);
	foreach(lc, group)
		ShardMoveCheckOwner(MyceliumGetDistTable(((ShardMoveMember *) lfirst(lc))->relid), "move");
	MyceliumEnsureLocalNode();
	check_move_target(MyceliumLoadNodes(), target_node);
	if (strcmp(((ShardMoveMember *) linitial(group))->node_name, target_node) == 0)
	{
		ereport(NOTICE,
				(errmsg("shard " INT64_FORMAT " is already on node \"%s\"", shard_id, target_node)));
		PG_RETURN_VOID();
	}
	ShardMoveCheckIsolation("move shards");

	/* then again under the mesh lock: another move may have committed */
	nodes = ShardMoveLockMesh(target_node, &conns, "move shards");
	check_move_target(nodes, target_node);
	group = ShardMoveGroupOf(shard_id, false);
	if (strcmp(((ShardMoveMember *) linitial(group))->node_name, target_node) == 0)
	{
		ereport(NOTICE,
				(errmsg("shard " INT64_FORMAT " is already on node \"%s\"", shard_id, target_node)));
		PG_RETURN_VOID();
	}
	ShardMoveGroupLocked(group, nodes, conns, target_node, &sw);
	ShardMoveFinish(&sw, nodes, conns);
	PG_RETURN_VOID();
}
