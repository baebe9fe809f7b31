/*-------------------------------------------------------------------------
 *
 * move_switch.c
 *	  Switching the placement of moving shards without failing the
 *	  statements that use them: locks on the distributed tables on every
 *	  node, a target that exists before the switch, and the old copies
 *	  dropped last.
 *
 * A statement on a distributed table locks that table (its "shell") on the
 * node the client is connected to, for the rest of its transaction, before
 * it is planned and routed.  A move uses that lock on every member:
 *
 *	 1. before it blocks writes on the source shards, it locks the shells
 *		of the group's tables IN EXCLUSIVE MODE on every node: routed writes
 *		to those tables wait (on the node they arrive at) from here to the
 *		commit, routed reads go on;
 *	 2. the new copies exist (committed, empty) on the target before the
 *		move's transaction writes them: a statement routed there just
 *		after the switch finds them and waits for the move's lock on them
 *		until the target has committed, instead of failing because the
 *		table is not there yet;
 *	 3. last, the shells are locked IN ACCESS EXCLUSIVE MODE on every node
 *		(this waits for the routed statements still reading the old copies)
 *		and the old copies are dropped.
 *
 * A statement that waited at 1 or 3 gets its lock when the move has
 * committed on its node, together with the new placements (taking a
 * relation lock processes the invalidations the catalog change sent), so
 * it is planned, or its cached plan rebuilt, and routed to the target.
 * Rebalancing and draining, which move many shard groups in one
 * transaction, do step 3 once for all of them at the end, so the tables
 * stay readable until then.
 *
 * Only statements that name a shard table directly can still meet a copy
 * that has just been dropped.
 *
 * IDENTIFICATION
 *	  src/shard/move_switch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "shard/shard_move.h"

/*
 * lock_shells locks the switch's shells on every member, in node_id order
 * (the order of every mesh-wide lock), locally or through the member's
 * connection in the move's transaction.
 */
static void
lock_shells(ShardMoveSwitch *sw, List *nodes, MyceliumConnection **conns,
			LOCKMODE lockmode, const char *mode)
{
	StringInfoData names;
	ListCell   *lc;
	int			i = 0;

	if (sw->relids == NIL)
		return;
	initStringInfo(&names);
	foreach(lc, sw->shells)
		appendStringInfo(&names, "%s%s", names.len > 0 ? ", " : "", (char *) lfirst(lc));
	foreach(lc, nodes)
	{
		MyceliumNode *node = lfirst(lc);

		if (node->is_local)
		{
			ListCell   *lc2;

			foreach(lc2, sw->relids)
				LockRelationOid(lfirst_oid(lc2), lockmode);
		}
		else if (MyceliumConnectionUsable(conns[i]))
			MyceliumExecCommand(conns[i], psprintf("LOCK TABLE %s IN %s MODE", names.data, mode));
		i++;
	}
}

/*
 * ShardMoveBlockWrites blocks writes to a moving group: routed writes to
 * its tables on every node (step 1 of the file header), then any write
 * to its shards on the source.  Reads go on.  Locks held until commit.
 */
void
ShardMoveBlockWrites(List *group, List *nodes, MyceliumConnection **conns,
					 const char *source_node, const char *tables, ShardMoveSwitch *sw)
{
	ListCell   *lc;

	foreach(lc, group)
	{
		ShardMoveMember *m = lfirst(lc);

		if (!list_member_oid(sw->relids, m->relid))
		{
			sw->relids = lappend_oid(sw->relids, m->relid);
			sw->shells = lappend(sw->shells, quote_qualified_identifier(m->schema_name, m->rel_name));
		}
	}
	lock_shells(sw, nodes, conns, ExclusiveLock, "EXCLUSIVE");
	ShardMoveRunOn(nodes, conns, source_node, psprintf("LOCK TABLE %s IN EXCLUSIVE MODE", tables));
}

/*
 * ShardMovePrepareTarget gives the target empty, committed copies of the
 * group's shard tables and locks them in the move's transaction (step 2
 * of the file header).  They are created in an autocommit session, as
 * the extension's owner when the caller is not a superuser (the commands
 * give them the table's owner); a table of that name there can only be
 * left by a failed attempt, and is replaced.  On the local node (the
 * move's coordinator commits here first) they are created in the move's
 * transaction.
 */
void
ShardMovePrepareTarget(List *group, List *nodes, MyceliumConnection **conns,
					   const char *target_node, const char *tables)
{
	MyceliumNode *node = MyceliumFindNode(nodes, target_node);
	MyceliumConnection *ac;
	StringInfoData ddl;
	Oid			save_userid;
	int			save_sec_context;
	ListCell   *lc;

	if (node->is_local)
	{
		foreach(lc, group)
			ShardMoveCreateTable(lfirst(lc), nodes, conns, target_node);
		return;
	}
	initStringInfo(&ddl);
	appendStringInfo(&ddl, "BEGIN;\nDROP TABLE IF EXISTS %s;\n", tables);
	foreach(lc, group)
	{
		ShardMoveMember *m = lfirst(lc);
		ListCell   *lc2;

		foreach(lc2, MyceliumShardCreateCommands(m->relid, m->schema_name, m->shard_name))
			appendStringInfo(&ddl, "%s;\n", (char *) lfirst(lc2));
	}
	appendStringInfoString(&ddl, "COMMIT");

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	if (!superuser())
		MyceliumBeginCatalogAccess(&save_userid, &save_sec_context);
	ac = MyceliumGetConnection(node->node_name, node->host, node->port, MYCELIUM_CONN_AUTOCOMMIT);
	SetUserIdAndSecContext(save_userid, save_sec_context);
	PG_TRY();
	{
		MyceliumExecCommand(ac, ddl.data);
	}
	PG_FINALLY();
	{
		MyceliumReleaseConnection(ac);
	}
	PG_END_TRY();
	ShardMoveRunOn(nodes, conns, target_node,
				   psprintf("LOCK TABLE %s IN ACCESS EXCLUSIVE MODE", tables));
}

/*
 * ShardMoveDropLater records the old copies of a moved group, to be
 * dropped by ShardMoveFinish.
 */
void
ShardMoveDropLater(ShardMoveSwitch *sw, const char *source_node, const char *tables)
{
	sw->drop_nodes = lappend(sw->drop_nodes, pstrdup(source_node));
	sw->drop_tables = lappend(sw->drop_tables, pstrdup(tables));
}

/*
 * ShardMoveFinish ends the moves of a transaction (step 3 of the file
 * header): waits for the routed statements on the moved tables to end
 * everywhere, then drops the old copies.
 */
void
ShardMoveFinish(ShardMoveSwitch *sw, List *nodes, MyceliumConnection **conns)
{
	ListCell   *ln;
	ListCell   *lt;

	lock_shells(sw, nodes, conns, AccessExclusiveLock, "ACCESS EXCLUSIVE");
	forboth(ln, sw->drop_nodes, lt, sw->drop_tables)
		ShardMoveRunOn(nodes, conns, lfirst(ln), psprintf("DROP TABLE %s", (char *) lfirst(lt)));
}
