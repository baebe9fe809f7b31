/*-------------------------------------------------------------------------
 *
 * deadlock_detect.c
 *	  Distributed deadlock detection: the global wait-for graph of the mesh
 *	  and the cycles in it, run by the maintenance worker.
 *
 * Every mycelium.deadlock_detection_interval, the maintenance worker of
 * each node that is coordinating remote work collects mycelium.lock_waits()
 * from every reachable member (its own through SPI, the others in
 * parallel), and merges them into one graph whose vertices are distributed
 * transaction ids (deadlock.c): a remote session and its coordinator are
 * one vertex, so a wait on node A and a wait on node B close a cycle that
 * no single node can see.  Cycles are found by depth-first search; of each
 * cycle the youngest distributed transaction (latest start) is the victim,
 * removed from the graph, and the search goes on until no cycle is left.
 *
 * Each node cancels only the victims it coordinates (every node computes
 * the same victim for the same cycle, since the choice depends only on the
 * ids).  Cycles whose waits are all on one node are left to PostgreSQL's
 * own deadlock detector, which sees them whole, and so are cycles without
 * any distributed transaction.  The waits of different nodes are read at
 * slightly different moments, so before cancelling, the waits of the
 * cycle are collected again and must all still be there: a real deadlock
 * does not go away by itself, a cycle stitched from waits that never
 * existed together does.
 *
 * IDENTIFICATION
 *	  src/txn/deadlock_detect.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "cluster/cluster.h"
#include "config/config.h"
#include "shmem/shmem.h"
#include "transport/transport.h"
#include "txn/txn.h"

#define LOCK_WAITS_QUERY "SELECT waiting_pid, waiting_xact, waiting_distributed, " \
	"blocking_pid, blocking_xact, blocking_distributed FROM mycelium.lock_waits()"
#define COLLECT_MIN_MS 1000

typedef struct WaitEdge
{
	int			waiter;			/* vertex index */
	int			blocker;		/* vertex index */
	char	   *node;			/* where the wait is */
	int			wpid;
	int			bpid;
	bool		removed;
} WaitEdge;

typedef struct WaitVertex
{
	char	   *id;
	bool		distributed;
	int64		start;
	bool		removed;
	int			color;			/* DFS: 0 unseen, 1 on the path, 2 done */
	int			via;			/* DFS: edge that reached it */
} WaitVertex;

typedef struct WaitGraph
{
	WaitVertex *v;
	int			nv;
	WaitEdge   *e;
	int			ne;
	int			cap_v;
	int			cap_e;
} WaitGraph;

/*
 * vertex_of returns the index of a distributed transaction id in the
 * graph, adding it.
 */
static int
vertex_of(WaitGraph *g, const char *id, bool distributed)
{
	int			i;
	int			pid;
	int64		start = 0;

	for (i = 0; i < g->nv; i++)
		if (strcmp(g->v[i].id, id) == 0)
		{
			g->v[i].distributed |= distributed;
			return i;
		}
	if (g->nv == g->cap_v)
	{
		g->cap_v *= 2;
		g->v = repalloc(g->v, sizeof(WaitVertex) * g->cap_v);
	}
	memset(&g->v[g->nv], 0, sizeof(WaitVertex));
	g->v[g->nv].id = pstrdup(id);
	g->v[g->nv].distributed = distributed;
	(void) MyceliumParseXactId(id, NULL, &pid, &start);
	g->v[g->nv].start = start;
	return g->nv++;
}

/*
 * add_edge records that waiter waits on node for blocker (once).
 */
static void
add_edge(WaitGraph *g, const char *node, int wpid, const char *wid, bool wdist,
		 int bpid, const char *bid, bool bdist)
{
	int			w = vertex_of(g, wid, wdist);
	int			b = vertex_of(g, bid, bdist);
	int			i;

	if (w == b)
		return;					/* waits inside one transaction: not a cycle */
	for (i = 0; i < g->ne; i++)
		if (g->e[i].waiter == w && g->e[i].blocker == b && strcmp(g->e[i].node, node) == 0)
			return;
	if (g->ne == g->cap_e)
	{
		g->cap_e *= 2;
		g->e = repalloc(g->e, sizeof(WaitEdge) * g->cap_e);
	}
	g->e[g->ne].waiter = w;
	g->e[g->ne].blocker = b;
	g->e[g->ne].node = pstrdup(node);
	g->e[g->ne].wpid = wpid;
	g->e[g->ne].bpid = bpid;
	g->e[g->ne].removed = false;
	g->ne++;
}

/*
 * add_result adds the rows of a lock_waits() result from node.
 */
static void
add_result(WaitGraph *g, const char *node, PGresult *res)
{
	int			r;

	if (res == NULL || PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 6)
		return;
	for (r = 0; r < PQntuples(res); r++)
		add_edge(g, node,
				 atoi(PQgetvalue(res, r, 0)), PQgetvalue(res, r, 1),
				 PQgetvalue(res, r, 2)[0] == 't',
				 atoi(PQgetvalue(res, r, 3)), PQgetvalue(res, r, 4),
				 PQgetvalue(res, r, 5)[0] == 't');
}

/*
 * add_local adds this node's lock waits, read through SPI.
 */
static void
add_local(WaitGraph *g)
{
	uint64		i;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute(LOCK_WAITS_QUERY, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not list the local lock waits");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		add_edge(g, mycelium_node_name,
				 atoi(SPI_getvalue(tup, desc, 1)), SPI_getvalue(tup, desc, 2),
				 SPI_getvalue(tup, desc, 3)[0] == 't',
				 atoi(SPI_getvalue(tup, desc, 4)), SPI_getvalue(tup, desc, 5),
				 SPI_getvalue(tup, desc, 6)[0] == 't');
	}
	SPI_finish();
}

/*
 * collect_graph builds the global wait-for graph from every member that is
 * not known to be down; an unreachable member contributes nothing.
 */
static WaitGraph *
collect_graph(List *nodes)
{
	WaitGraph  *g = palloc0(sizeof(WaitGraph));
	int			n = list_length(nodes);
	bool	   *skip = palloc0(sizeof(bool) * Max(n, 1));
	PGresult  **results = palloc0(sizeof(PGresult *) * Max(n, 1));
	MyceliumConnection **conns;
	int			i = 0;
	ListCell   *lc;

	g->cap_v = g->cap_e = 16;
	g->v = palloc(sizeof(WaitVertex) * g->cap_v);
	g->e = palloc(sizeof(WaitEdge) * g->cap_e);
	foreach(lc, nodes)
	{
		MyceliumNode *node = lfirst(lc);

		skip[i++] = !node->is_local && MyceliumPeerIsDown(node->node_name);
	}
	conns = MyceliumConnectNodes(nodes, MYCELIUM_CONN_AUTOCOMMIT, true, false, skip);
	for (i = 0; i < n; i++)
		if (MyceliumConnectionUsable(conns[i]))
			MyceliumSendQuery(conns[i], LOCK_WAITS_QUERY, 0, NULL);
	add_local(g);
	MyceliumWaitResults(conns, n, results,
						TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													Max(mycelium_deadlock_detection_interval_ms, COLLECT_MIN_MS)),
						true);
	for (i = 0; i < n; i++)
	{
		if (conns[i] == NULL)
			continue;
		add_result(g, conns[i]->node_name, results[i]);
		PQclear(results[i]);
		MyceliumReleaseConnection(conns[i]);
	}
	return g;
}

/*
 * dfs looks for a cycle through vertex v; on finding one, fills cycle with
 * its edges in order and returns their number, else 0.
 */
static int
dfs(WaitGraph *g, int v, int *cycle)
{
	int			i;

	g->v[v].color = 1;
	for (i = 0; i < g->ne; i++)
	{
		WaitEdge   *e = &g->e[i];
		int			w = e->blocker;

		if (e->waiter != v || e->removed || g->v[w].removed)
			continue;
		if (g->v[w].color == 1)
		{
			/* back edge: walk from v back to w along the DFS path */
			int			n = 0;
			int			k = v;
			int			j;

			cycle[n++] = i;
			while (k != w)
			{
				cycle[n++] = g->v[k].via;
				k = g->e[g->v[k].via].waiter;
			}
			for (j = 0; j < n / 2; j++)
			{
				int			t = cycle[j];

				cycle[j] = cycle[n - 1 - j];
				cycle[n - 1 - j] = t;
			}
			return n;
		}
		if (g->v[w].color == 0)
		{
			int			n;

			g->v[w].via = i;
			if ((n = dfs(g, w, cycle)) > 0)
				return n;
		}
	}
	g->v[v].color = 2;
	return 0;
}

/*
 * find_cycle returns the edges of one cycle of the graph (not counting
 * removed vertices and edges) in cycle, and their number; 0 if none.
 */
static int
find_cycle(WaitGraph *g, int *cycle)
{
	int			i;
	int			n;

	for (i = 0; i < g->nv; i++)
		g->v[i].color = 0;
	for (i = 0; i < g->nv; i++)
		if (!g->v[i].removed && g->v[i].color == 0 && (n = dfs(g, i, cycle)) > 0)
			return n;
	return 0;
}

/*
 * describe_xact names a transaction for the error detail: its node and
 * coordinating pid.
 */
static void
describe_xact(StringInfo buf, const char *id)
{
	char		node[64];
	int			pid;
	int64		start;

	if (MyceliumParseXactId(id, node, &pid, &start))
		appendStringInfo(buf, "transaction of process %d on node \"%s\"", pid, node);
	else
		appendStringInfo(buf, "transaction \"%s\"", id);
}

/*
 * describe_cycle renders a cycle for the error detail and the log.
 */
static char *
describe_cycle(WaitGraph *g, int *cycle, int n)
{
	StringInfoData buf;
	int			i;

	initStringInfo(&buf);
	for (i = 0; i < n; i++)
	{
		WaitEdge   *e = &g->e[cycle[i]];

		if (i > 0)
			appendStringInfoString(&buf, "; ");
		describe_xact(&buf, g->v[e->waiter].id);
		appendStringInfo(&buf, " waits on node \"%s\" (process %d) for ", e->node, e->wpid);
		describe_xact(&buf, g->v[e->blocker].id);
		appendStringInfo(&buf, " (process %d)", e->bpid);
	}
	appendStringInfoChar(&buf, '.');
	if (buf.len >= MYCELIUM_DEADLOCK_DETAIL_SIZE)
		buf.data[MYCELIUM_DEADLOCK_DETAIL_SIZE - 1] = '\0';
	return buf.data;
}

/*
 * pick_victim returns the youngest distributed transaction of a cycle, or
 * -1 when the cycle is left to PostgreSQL (all its waits on one node, or
 * no distributed transaction in it).
 */
static int
pick_victim(WaitGraph *g, int *cycle, int n)
{
	int			victim = -1;
	bool		one_node = true;
	int			i;

	for (i = 0; i < n; i++)
	{
		WaitEdge   *e = &g->e[cycle[i]];
		WaitVertex *v = &g->v[e->waiter];

		one_node &= strcmp(e->node, g->e[cycle[0]].node) == 0;
		if (!v->distributed)
			continue;
		if (victim < 0 || v->start > g->v[victim].start ||
			(v->start == g->v[victim].start && strcmp(v->id, g->v[victim].id) > 0))
			victim = e->waiter;
	}
	return one_node ? -1 : victim;
}

/*
 * still_waiting says whether every wait of a cycle is in a fresh graph.
 */
static bool
still_waiting(WaitGraph *g, int *cycle, int n, WaitGraph *fresh)
{
	int			i,
				j;

	for (i = 0; i < n; i++)
	{
		WaitEdge   *e = &g->e[cycle[i]];
		bool		found = false;

		for (j = 0; j < fresh->ne && !found; j++)
			found = strcmp(fresh->e[j].node, e->node) == 0 &&
				strcmp(fresh->v[fresh->e[j].waiter].id, g->v[e->waiter].id) == 0 &&
				strcmp(fresh->v[fresh->e[j].blocker].id, g->v[e->blocker].id) == 0;
		if (!found)
			return false;
	}
	return true;
}

/*
 * MyceliumDetectDistributedDeadlocks runs one detection pass over the
 * members in nodes and cancels, with 40P01, the youngest transaction of
 * every cycle that this node coordinates; returns how many it cancelled.
 */
int
MyceliumDetectDistributedDeadlocks(List *nodes)
{
	WaitGraph  *g;
	WaitGraph  *fresh = NULL;
	int		   *cycle;
	int			cancelled = 0;
	int			round;

	if (!MyceliumDeadlockAnyCoordinator())
		return 0;
	g = collect_graph(nodes);
	cycle = palloc(sizeof(int) * Max(g->ne, 1));
	for (round = 0; round <= g->ne; round++)
	{
		int			n = find_cycle(g, cycle);
		int			victim;
		char		node[64];
		int			pid;
		int64		start;
		char	   *detail;

		if (n == 0)
			break;
		victim = pick_victim(g, cycle, n);
		if (victim < 0)
		{
			g->e[cycle[n - 1]].removed = true;	/* PostgreSQL's to break */
			continue;
		}
		g->v[victim].removed = true;
		if (!MyceliumParseXactId(g->v[victim].id, node, &pid, &start) ||
			strcmp(node, mycelium_node_name) != 0)
			continue;			/* its coordinator's detector cancels it */
		if (fresh == NULL)
			fresh = collect_graph(nodes);
		if (!still_waiting(g, cycle, n, fresh))
			continue;
		detail = describe_cycle(g, cycle, n);
		if (MyceliumDeadlockCancel(g->v[victim].id, detail))
		{
			ereport(LOG,
					(errmsg("mycelium: distributed deadlock detected, cancelling the transaction of process %d", pid),
					 errdetail_internal("%s", detail)));
			cancelled++;
		}
	}
	return cancelled;
}
