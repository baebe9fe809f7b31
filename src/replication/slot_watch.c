/*-------------------------------------------------------------------------
 *
 * slot_watch.c
 *	  The launcher's watch over this node's replication slots.
 *
 * Every SLOT_WATCH_INTERVAL the launcher looks at the slots that stream
 * this node's changes to its peers ("mycelium_node_<consumer id>"):
 *
 *	 - a slot whose consumer is no longer a member of the mesh (removed with
 *	   remove_node) and that nobody streams from is dropped, so it stops
 *	   holding WAL and a node added later under the same id does not start
 *	   from its stale position.  It must be seen so at two watches in a
 *	   row: a node being added may create its slot here a moment before
 *	   its catalog row commits here.
 *	 - a slot holding more WAL than mycelium.max_slot_lag gives a WARNING
 *	   (at most every SLOT_WARN_INTERVAL per slot).  The figure itself is
 *	   the view mycelium.replication_slots.
 *
 * IDENTIFICATION
 *	  src/replication/slot_watch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "cluster/cluster.h"
#include "config/config.h"
#include "replication/apply_internal.h"

#define SLOT_WATCH_INTERVAL_MS	10000
#define SLOT_WARN_INTERVAL_MS	300000
#define SLOT_PREFIX				"mycelium_node_"

/* when each lagging slot was last warned about */
typedef struct SlotWarning
{
	char		slot_name[NAMEDATALEN];
	TimestampTz warned_at;
} SlotWarning;

static SlotWarning warnings[MYCELIUM_REPL_MAX_PEERS];
static TimestampTz last_watch = 0;

/* slots seen inactive with a non-member consumer at the previous watch */
static char orphans[MYCELIUM_REPL_MAX_PEERS][NAMEDATALEN];
static int	n_orphans = 0;
static char new_orphans[MYCELIUM_REPL_MAX_PEERS][NAMEDATALEN];
static int	n_new_orphans = 0;

/*
 * warn_due: whether slot may be warned about now (and note it).
 */
static bool
warn_due(const char *slot, TimestampTz now)
{
	SlotWarning *free_entry = NULL;
	int			i;

	for (i = 0; i < MYCELIUM_REPL_MAX_PEERS; i++)
	{
		if (strcmp(warnings[i].slot_name, slot) == 0)
		{
			if (!TimestampDifferenceExceeds(warnings[i].warned_at, now, SLOT_WARN_INTERVAL_MS))
				return false;
			warnings[i].warned_at = now;
			return true;
		}
		if (warnings[i].slot_name[0] == '\0' && free_entry == NULL)
			free_entry = &warnings[i];
	}
	if (free_entry == NULL)
		free_entry = &warnings[0];
	strlcpy(free_entry->slot_name, slot, NAMEDATALEN);
	free_entry->warned_at = now;
	return true;
}

/*
 * is_member: id is a member's node_id.
 */
static bool
is_member(List *nodes, int id)
{
	ListCell   *lc;

	foreach(lc, nodes)
		if (((MyceliumNode *) lfirst(lc))->node_id == id)
			return true;
	return false;
}

/*
 * orphan_confirmed: slot was already seen orphaned at the previous watch
 * (then it is dropped); notes it for the next one otherwise.
 */
static bool
orphan_confirmed(const char *slot)
{
	int			i;

	for (i = 0; i < n_orphans; i++)
		if (strcmp(orphans[i], slot) == 0)
			return true;
	if (n_new_orphans < MYCELIUM_REPL_MAX_PEERS)
		strlcpy(new_orphans[n_new_orphans++], slot, NAMEDATALEN);
	return false;
}

/*
 * watch_one drops or warns about one slot.
 */
static void
watch_one(List *nodes, const char *slot, bool active, int64 lag, TimestampTz now)
{
	int			id = atoi(slot + strlen(SLOT_PREFIX));
	Datum		arg = CStringGetTextDatum(slot);
	Oid			type = TEXTOID;

	if (!active && !is_member(nodes, id))
	{
		if (!orphan_confirmed(slot))
			return;
		if (SPI_execute_with_args("SELECT pg_catalog.pg_drop_replication_slot($1)", 1,
								  &type, &arg, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "could not drop replication slot \"%s\"", slot);
		ereport(LOG,
				(errmsg("mycelium: dropped replication slot \"%s\" of removed node %d",
						slot, id)));
		return;
	}
	if (mycelium_max_slot_lag_kb >= 0 && lag > (int64) mycelium_max_slot_lag_kb * 1024 &&
		warn_due(slot, now))
		ereport(WARNING,
				(errmsg("replication slot \"%s\" holds " INT64_FORMAT " MB of WAL for node %d",
						slot, lag / (1024 * 1024), id),
				 errdetail("mycelium.max_slot_lag is %d kB; the node has not confirmed this WAL.",
						   mycelium_max_slot_lag_kb),
				 errhint("Bring the node back, or remove it from the mesh with mycelium.remove_node().")));
}

/*
 * MyceliumReplWatchSlots runs the watch if its interval has passed; in the
 * launcher's transaction, with the member list.
 */
void
MyceliumReplWatchSlots(List *nodes)
{
	TimestampTz now = GetCurrentTimestamp();
	MemoryContext caller = CurrentMemoryContext;
	uint64		i,
				n;
	char	  **slots;
	bool	   *actives;
	int64	   *lags;

	if (nodes == NIL ||
		!TimestampDifferenceExceeds(last_watch, now, SLOT_WATCH_INTERVAL_MS))
		return;
	last_watch = now;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute("SELECT slot_name::text, active, coalesce(pg_catalog.pg_wal_lsn_diff("
					"pg_catalog.pg_current_wal_lsn(), restart_lsn), 0)::bigint "
					"FROM pg_catalog.pg_replication_slots WHERE plugin = 'mycelium' "
					"AND slot_name ~ '^mycelium_node_[0-9]+$' "
					"AND database = pg_catalog.current_database()",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_replication_slots");
	n = SPI_processed;
	slots = palloc(sizeof(char *) * Max(n, 1));
	actives = palloc(sizeof(bool) * Max(n, 1));
	lags = palloc(sizeof(int64) * Max(n, 1));
	for (i = 0; i < n; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;

		slots[i] = MemoryContextStrdup(caller, SPI_getvalue(tup, desc, 1));
		actives[i] = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
		lags[i] = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	}
	n_new_orphans = 0;
	for (i = 0; i < n; i++)
		watch_one(nodes, slots[i], actives[i], lags[i], now);
	n_orphans = n_new_orphans;
	memcpy(orphans, new_orphans, sizeof(orphans[0]) * n_orphans);
	SPI_finish();
}
