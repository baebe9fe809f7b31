/*-------------------------------------------------------------------------
 *
 * rebalance.c
 *	  mycelium.rebalance and mycelium.drain_node: planning shard moves
 *	  across the active nodes and running them; mycelium.activate_node,
 *	  which lets a drained node take shards again.
 *
 * Both work per colocation group: the shards of one index in every table
 * of the group (a "shard group", see shard_move.h) always move together,
 * and what gets evened out is the number of shard groups each active node
 * holds in each colocation group.  Every move is made by
 * ShardMoveGroupLocked (move.c) inside one distributed transaction that
 * holds the mesh lock from the first move to the commit, so a failure
 * leaves every shard where it was.
 *
 * IDENTIFICATION
 *	  src/shard/rebalance.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/tuplestore.h"

#include "shard/shard_move.h"

PG_FUNCTION_INFO_V1(mycelium_rebalance);
PG_FUNCTION_INFO_V1(mycelium_drain_node);
PG_FUNCTION_INFO_V1(mycelium_activate_node);

/*
 * A colocation group being balanced: a representative table, where each
 * of its shard groups lives now, and how many each node holds.
 */
typedef struct Placement
{
	Oid			relid;			/* representative table */
	int			nshards;
	int			group_size;		/* tables in the colocation group */
	char	  **node_of;		/* per shard index */
	int		   *count;			/* per node (index in the node list) */
} Placement;

/* one move made, for the result */
typedef struct MoveMade
{
	int64		shard_id;
	char	   *from_node;
	char	   *to_node;
	int			nshards;		/* shards moved: the group's size */
} MoveMade;

/*
 * node_index returns the position of a node in the list, or -1.
 */
static int
node_index(List *nodes, const char *node_name)
{
	ListCell   *lc;
	int			i = 0;

	foreach(lc, nodes)
	{
		if (strcmp(((MyceliumNode *) lfirst(lc))->node_name, node_name) == 0)
			return i;
		i++;
	}
	return -1;
}

/*
 * is_active says whether node i of the list takes shards.
 */
static bool
is_active(List *nodes, int i, const char *excluded)
{
	MyceliumNode *node = list_nth(nodes, i);

	return strcmp(node->status, "active") == 0 &&
		(excluded == NULL || strcmp(node->node_name, excluded) != 0);
}

/*
 * load_placement records where the shard groups of a table's colocation
 * group live.
 */
static Placement *
load_placement(Oid relid, List *nodes)
{
	MyceliumDistTable *table = MyceliumGetDistTable(relid);
	Placement  *p = palloc0(sizeof(Placement));
	int			i;

	p->relid = relid;
	p->nshards = table->nshards;
	p->group_size = list_length(ShardMoveColocated(table));
	p->node_of = palloc0(sizeof(char *) * Max(p->nshards, 1));
	p->count = palloc0(sizeof(int) * Max(list_length(nodes), 1));
	for (i = 0; i < p->nshards; i++)
	{
		int			k = node_index(nodes, table->shards[i].node_name);

		p->node_of[i] = pstrdup(table->shards[i].node_name);
		if (k >= 0)
			p->count[k]++;
	}
	return p;
}

/*
 * colocation_representatives returns one table (relid) per colocation
 * group of hash and range tables: of `only` when it is valid, else of all.
 */
static List *
colocation_representatives(Oid only)
{
	List	   *reps = NIL;
	List	   *seen = NIL;
	ListCell   *lc;

	if (OidIsValid(only))
		return list_make1_oid(only);
	foreach(lc, MyceliumAllDistTables())
	{
		MyceliumDistTable *t = lfirst(lc);
		ListCell   *lc2;
		bool		dup = false;

		if (t->method == MYCELIUM_DIST_REFERENCE || t->nshards == 0)
			continue;
		foreach(lc2, ShardMoveColocated(t))
			if (list_member_oid(seen, ((MyceliumDistTable *) lfirst(lc2))->relid))
				dup = true;
		if (dup)
			continue;
		foreach(lc2, ShardMoveColocated(t))
			seen = lappend_oid(seen, ((MyceliumDistTable *) lfirst(lc2))->relid);
		reps = lappend_oid(reps, t->relid);
	}
	return reps;
}

/*
 * check_owner_of_group checks ownership of every table colocated with relid.
 */
static void
check_owner_of_group(Oid relid, const char *action)
{
	ListCell   *lc;

	foreach(lc, ShardMoveColocated(MyceliumGetDistTable(relid)))
		ShardMoveCheckOwner(lfirst(lc), action);
}

/*
 * move_one moves shard group `index` of the placement to node `to` and
 * records the move.
 */
static MoveMade *
move_one(Placement *p, int index, List *nodes, MyceliumConnection **conns, int to,
		 ShardMoveSwitch *sw)
{
	MyceliumDistTable *table = MyceliumGetDistTable(p->relid);
	List	   *group = ShardMoveGroupAt(table, index);
	MyceliumNode *target = list_nth(nodes, to);
	MoveMade   *mv = palloc(sizeof(MoveMade));
	int			from = node_index(nodes, p->node_of[index]);

	mv->shard_id = ((ShardMoveMember *) linitial(group))->shard_id;
	mv->from_node = pstrdup(p->node_of[index]);
	mv->to_node = pstrdup(target->node_name);
	mv->nshards = list_length(group);
	ShardMoveGroupLocked(group, nodes, conns, target->node_name, sw);
	if (from >= 0)
		p->count[from]--;
	p->count[to]++;
	p->node_of[index] = mv->to_node;
	return mv;
}

/*
 * least_loaded returns the active node (not `excluded`) holding the fewest
 * shard groups of the placement, the first in node_id order on a tie;
 * -1 when there is none.
 */
static int
least_loaded(Placement *p, List *nodes, const char *excluded)
{
	int			best = -1;
	int			i;

	for (i = 0; i < list_length(nodes); i++)
		if (is_active(nodes, i, excluded) && (best < 0 || p->count[i] < p->count[best]))
			best = i;
	return best;
}

/*
 * balance_placement moves shard groups of one colocation group until the
 * active nodes' counts differ by at most one and no shard group is on a
 * node that is not active; returns the moves made.
 */
static List *
balance_placement(Placement *p, List *nodes, MyceliumConnection **conns, ShardMoveSwitch *sw)
{
	List	   *moves = NIL;
	int			round;

	for (round = 0; round < p->nshards; round++)
	{
		int			to = least_loaded(p, nodes, NULL);
		int			from_index = -1;
		int			i;

		if (to < 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("no active node can take shards")));
		/* first any shard group on a node that is not active */
		for (i = 0; i < p->nshards && from_index < 0; i++)
		{
			int			k = node_index(nodes, p->node_of[i]);

			if (k < 0 || !is_active(nodes, k, NULL))
				from_index = i;
		}
		if (from_index < 0)
		{
			int			most = -1;

			for (i = 0; i < list_length(nodes); i++)
				if (is_active(nodes, i, NULL) && (most < 0 || p->count[i] > p->count[most]))
					most = i;
			if (p->count[most] - p->count[to] <= 1)
				break;
			for (i = 0; i < p->nshards && from_index < 0; i++)
				if (strcmp(p->node_of[i], ((MyceliumNode *) list_nth(nodes, most))->node_name) == 0)
					from_index = i;
		}
		moves = lappend(moves, move_one(p, from_index, nodes, conns, to, sw));
	}
	return moves;
}

/*
 * mycelium.rebalance(table_name regclass DEFAULT NULL)
 *	 returns table(shard_id bigint, from_node text, to_node text)
 *
 * Evens out the shard groups of the table's colocation group (of every
 * colocation group when NULL) over the active nodes; returns the moves
 * made, one row per shard group moved (the id of its first table's shard).
 */
Datum
mycelium_rebalance(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Oid			only = PG_ARGISNULL(0) ? InvalidOid : PG_GETARG_OID(0);
	ShardMoveSwitch sw = {0};
	List	   *reps;
	List	   *nodes;
	MyceliumConnection **conns;
	ListCell   *lc;

	InitMaterializedSRF(fcinfo, 0);
	if (!OidIsValid(only) && !superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to rebalance every distributed table"),
				 errdetail("Only superusers may rebalance the shards of all tables at once."),
				 errhint("Name a table you own: mycelium.rebalance('my_table').")));
	if (OidIsValid(only))
	{
		MyceliumDistTable *t = MyceliumGetDistTable(only);

		if (t == NULL || t->method == MYCELIUM_DIST_REFERENCE)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("table \"%s\" is not a hash or range distributed table",
							get_rel_name(only) ? get_rel_name(only) : "?"),
					 errhint("Only the shards of distributed tables are rebalanced.")));
	}
	foreach(lc, colocation_representatives(only))
		check_owner_of_group(lfirst_oid(lc), "move");
	MyceliumEnsureLocalNode();
	ShardMoveCheckIsolation("rebalance shards");

	nodes = ShardMoveLockMesh(NULL, &conns, "rebalance shards");
	reps = colocation_representatives(only);
	foreach(lc, reps)
	{
		ListCell   *lc2;

		foreach(lc2, balance_placement(load_placement(lfirst_oid(lc), nodes), nodes, conns, &sw))
		{
			MoveMade   *mv = lfirst(lc2);
			Datum		values[3];
			bool		nulls[3] = {false, false, false};

			values[0] = Int64GetDatum(mv->shard_id);
			values[1] = CStringGetTextDatum(mv->from_node);
			values[2] = CStringGetTextDatum(mv->to_node);
			tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
		}
	}
	ShardMoveFinish(&sw, nodes, conns);
	return (Datum) 0;
}

/*
 * drain_placement moves every shard group of one colocation group off the
 * node, each to the active node holding the fewest; returns the number of
 * shards moved.
 */
static int
drain_placement(Placement *p, List *nodes, MyceliumConnection **conns, const char *node_name,
				ShardMoveSwitch *sw)
{
	int			moved = 0;
	int			i;

	for (i = 0; i < p->nshards; i++)
	{
		int			to;

		if (strcmp(p->node_of[i], node_name) != 0)
			continue;
		to = least_loaded(p, nodes, node_name);
		if (to < 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("cannot drain node \"%s\" because no other active node can take its shards",
							node_name),
					 errhint("Add a node first.")));
		moved += move_one(p, i, nodes, conns, to, sw)->nshards;
	}
	return moved;
}

/*
 * mycelium.drain_node(node_name text) returns int
 *
 * Marks the node 'draining' (it takes no new shards) and moves every shard
 * off it to the other active nodes, least loaded first; returns the number
 * of shards moved.  The node stays 'draining' afterwards, ready for
 * mycelium.remove_node.
 */
Datum
mycelium_drain_node(PG_FUNCTION_ARGS)
{
	char	   *node_name;
	List	   *nodes;
	MyceliumConnection **conns;
	MyceliumNode *node;
	ShardMoveSwitch sw = {0};
	int			moved = 0;
	const char *params[1];
	ListCell   *lc;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("node name must not be null")));
	node_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	ShardCheckNodeAdmin("drain a node");
	MyceliumEnsureLocalNode();
	if (MyceliumFindNode(MyceliumLoadNodes(), node_name) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("node \"%s\" is not a member of the mesh", node_name),
				 errhint("SELECT * FROM mycelium.nodes lists the members.")));
	ShardMoveCheckIsolation("drain a node");

	nodes = ShardMoveLockMesh(NULL, &conns, "drain a node");
	node = MyceliumFindNode(nodes, node_name);
	if (node == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("node \"%s\" is not a member of the mesh", node_name),
				 errdetail("Another session removed it meanwhile.")));
	/*
	 * The node takes no shard from here on; its catalog status is written
	 * last, so the first move can still copy online (see move_online.c).
	 * The mesh lock keeps every other metadata change out until the commit,
	 * so no one sees the difference.
	 */
	strlcpy(node->status, "draining", sizeof(node->status));
	foreach(lc, colocation_representatives(InvalidOid))
		moved += drain_placement(load_placement(lfirst_oid(lc), nodes), nodes, conns, node_name, &sw);
	ShardMoveFinish(&sw, nodes, conns);
	params[0] = node_name;
	ShardMoveCatalogWrite(nodes, conns,
						  "UPDATE mycelium.node SET status = 'draining' WHERE node_name = $1",
						  1, params);
	PG_RETURN_INT32(moved);
}

/*
 * mycelium.activate_node(node_name text) returns void
 *
 * Marks a draining node active again on every member, so that new tables
 * and mycelium.rebalance place shards on it; no shard moves by itself.  A
 * node that is active already gets a NOTICE.
 */
Datum
mycelium_activate_node(PG_FUNCTION_ARGS)
{
	char	   *node_name;
	List	   *nodes;
	MyceliumConnection **conns;
	MyceliumNode *node;
	const char *params[1];

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("node name must not be null")));
	node_name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!superuser())
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied to activate a node"),
				 errdetail("Only superusers may change the status of a node.")));
	MyceliumEnsureLocalNode();
	if (MyceliumFindNode(MyceliumLoadNodes(), node_name) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("node \"%s\" is not a member of the mesh", node_name),
				 errhint("SELECT * FROM mycelium.nodes lists the members.")));

	nodes = ShardMoveLockMesh(NULL, &conns, "activate a node");
	node = MyceliumFindNode(nodes, node_name);
	if (node == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("node \"%s\" is not a member of the mesh", node_name),
				 errdetail("Another session removed it meanwhile.")));
	if (strcmp(node->status, "active") == 0)
	{
		ereport(NOTICE,
				(errmsg("node \"%s\" is already active", node_name)));
		PG_RETURN_VOID();
	}
	params[0] = node_name;
	ShardMoveCatalogWrite(nodes, conns,
						  "UPDATE mycelium.node SET status = 'active' WHERE node_name = $1",
						  1, params);
	PG_RETURN_VOID();
}
