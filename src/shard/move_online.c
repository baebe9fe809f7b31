/*-------------------------------------------------------------------------
 *
 * move_online.c
 *	  Copying a shard group to its new node with PostgreSQL's logical
 *	  replication, so that writes to it are blocked only while the last
 *	  changes are applied.
 *
 * Used by ShardMoveGroupLocked (move.c) when the caller is a superuser
 * (CREATE SUBSCRIPTION requires it in PostgreSQL 15) and the source runs
 * with wal_level = logical; otherwise the move copies under a lock.
 * Names are fixed per shard group (mycelium_move_<first shard id>), so a
 * retry finds and removes what a failed attempt left:
 *
 *	 1. remove leftovers of an earlier attempt (subscription and tables on
 *		the target, slot and publication on the source);
 *	 2. on the source: a publication of the group's shard tables and a
 *		pgoutput slot; on the target: the shard tables (committed: the
 *		apply worker must see them) and a subscription with copy_data that
 *		connects back with the target's own node-to-node TLS settings;
 *	 3. wait until every table is synchronised (writes go on meanwhile);
 *	 4. in the move's transaction, block writes (ShardMoveBlockWrites),
 *		read the source's WAL position and wait until the slot confirms it
 *		(the target has applied every change);
 *	 5. drop the subscription, the slot, and (in the move's transaction)
 *		the publication.
 * The caller then drops the old tables and switches the catalog.  Steps 1
 * to 3 and the subscription's end run in their own autocommit sessions;
 * on an error they are undone at once where possible, and by the next
 * attempt otherwise.  Every wait is interruptible and fails when the
 * replication reports an error or stops progressing for
 * REPLICATION_STALL_MS.
 *
 * IDENTIFICATION
 *	  src/shard/move_online.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "access/xlog.h"
#include "commands/dbcommands.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "config/config.h"
#include "shard/shard_move.h"

#define POLL_MS 50
#define CLEANUP_TIMEOUT_MS 5000

/*
 * A subscriber reports its position at least every
 * wal_receiver_status_interval (10 s by default), and often sooner: allow
 * a replication this long without visible progress, or
 * mycelium.peer_timeout if that is longer.
 */
#define REPLICATION_STALL_MS Max(mycelium_peer_timeout_ms, 30000)

/* the autocommit sessions and names of one online copy */
typedef struct OnlineCopy
{
	MyceliumConnection *src;	/* autocommit, to the source */
	MyceliumConnection *dst;	/* autocommit, to the target */
	char	   *name;			/* publication, slot and subscription */
	char	   *tables;			/* the group's qualified shard tables */
} OnlineCopy;

/*
 * ShardMoveOnlinePossible says whether a group can be copied by logical
 * replication: a superuser caller, a source with wal_level = logical, and
 * no write of this distributed transaction on the source yet.  (Creating
 * the slot waits for every transaction running on the source to end, ours
 * included once it has a transaction id there, which happens from the
 * second move of a rebalance or drain on.)
 */
bool
ShardMoveOnlinePossible(List *nodes, MyceliumConnection **conns, const char *source_node)
{
	MyceliumConnection *src;
	PGresult   *res;
	bool		ok;

	if (!superuser())
		return false;
	src = ShardMoveConn(nodes, conns, source_node);
	if (src == NULL)
		return wal_level >= WAL_LEVEL_LOGICAL &&
			!TransactionIdIsValid(GetTopTransactionIdIfAny());
	res = MyceliumExec(src, "SELECT current_setting('wal_level') = 'logical' "
					   "AND pg_current_xact_id_if_assigned() IS NULL", 0, NULL);
	ok = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return ok;
}

/*
 * ac_connection lends an autocommit session to a node of the list.
 */
static MyceliumConnection *
ac_connection(List *nodes, const char *node_name)
{
	MyceliumNode *node = MyceliumFindNode(nodes, node_name);

	return MyceliumGetConnection(node->node_name, node->host, node->port,
								 MYCELIUM_CONN_AUTOCOMMIT);
}

/*
 * query_value runs a one-value query on a session and returns the value
 * (NULL for SQL NULL or no row).
 */
static char *
query_value(MyceliumConnection *conn, const char *sql, int nparams, const char *const *params)
{
	PGresult   *res = MyceliumExec(conn, sql, nparams, params);
	char	   *v = NULL;

	if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
		v = pstrdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	return v;
}

/*
 * conninfo_append adds "key='value'" to a libpq connection string.
 */
static void
conninfo_append(StringInfo buf, const char *key, const char *value)
{
	const char *p;

	appendStringInfo(buf, "%s%s='", buf->len > 0 ? " " : "", key);
	for (p = value; *p; p++)
	{
		if (*p == '\'' || *p == '\\')
			appendStringInfoChar(buf, '\\');
		appendStringInfoChar(buf, *p);
	}
	appendStringInfoChar(buf, '\'');
}

/*
 * subscription_conninfo builds the connection string the target's apply
 * worker uses to reach the source: the source's address, this database
 * and role, and the target's own mycelium.ssl_* settings (the same
 * parameters MyceliumConnectStart uses, as the target would set them).
 */
static char *
subscription_conninfo(OnlineCopy *oc, MyceliumNode *source)
{
	PGresult   *res;
	StringInfoData buf;
	char		port[16];
	const char *keys[4] = {"sslmode", "sslrootcert", "sslcert", "sslkey"};
	int			i;

	res = MyceliumExec(oc->dst, "SELECT current_setting('mycelium.ssl_mode'), "
					   "current_setting('mycelium.ssl_ca_file'), "
					   "current_setting('mycelium.ssl_cert_file'), "
					   "current_setting('mycelium.ssl_key_file')", 0, NULL);
	initStringInfo(&buf);
	snprintf(port, sizeof(port), "%d", source->port);
	conninfo_append(&buf, "host", source->host);
	conninfo_append(&buf, "port", port);
	conninfo_append(&buf, "dbname", get_database_name(MyDatabaseId));
	conninfo_append(&buf, "user", GetUserNameFromId(GetUserId(), false));
	conninfo_append(&buf, "application_name", oc->name);
	conninfo_append(&buf, "keepalives", "1");
	for (i = 0; i < 4; i++)
		if (PQgetvalue(res, 0, i)[0] != '\0')
			conninfo_append(&buf, keys[i], PQgetvalue(res, 0, i));
	PQclear(res);
	return buf.data;
}

/*
 * cleanup runs the statements that remove every object of an online copy
 * (those that exist), without raising: used before a copy (leftovers of a
 * failed attempt) and after an error.  Returns false if a node could not
 * be cleaned (the next attempt tries again).
 */
static bool
cleanup(OnlineCopy *oc, bool drop_target_tables)
{
	const char *name = quote_identifier(oc->name);
	char	   *lit = quote_literal_cstr(oc->name);
	bool		ok = true;

	if (MyceliumConnectionUsable(oc->dst))
	{
		char	   *sql = psprintf("DO $$BEGIN IF EXISTS (SELECT FROM pg_subscription WHERE subname = %s) THEN "
								   "ALTER SUBSCRIPTION %s DISABLE; "
								   "ALTER SUBSCRIPTION %s SET (slot_name = NONE); "
								   "DROP SUBSCRIPTION %s; END IF; END$$",
								   lit, name, name, name);

		ok &= MyceliumExecNoThrow(oc->dst, sql, CLEANUP_TIMEOUT_MS, NULL);
		if (ok && drop_target_tables)
			ok &= MyceliumExecNoThrow(oc->dst, psprintf("DROP TABLE IF EXISTS %s", oc->tables),
									  CLEANUP_TIMEOUT_MS, NULL);
	}
	if (MyceliumConnectionUsable(oc->src))
	{
		/* the walsender may outlive its subscription for a moment */
		ok &= MyceliumExecNoThrow(oc->src,
								  psprintf("DO $$BEGIN FOR i IN 1..100 LOOP "
										   "PERFORM pg_terminate_backend(active_pid) FROM pg_replication_slots "
										   "WHERE slot_name = %s AND active_pid IS NOT NULL; "
										   "EXIT WHEN NOT EXISTS (SELECT FROM pg_replication_slots "
										   "WHERE slot_name = %s AND active_pid IS NOT NULL); "
										   "PERFORM pg_sleep(0.05); END LOOP; "
										   "PERFORM pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
										   "WHERE slot_name = %s; END$$", lit, lit, lit),
								  CLEANUP_TIMEOUT_MS + 2000, NULL);
		ok &= MyceliumExecNoThrow(oc->src, psprintf("DROP PUBLICATION IF EXISTS %s", name),
								  CLEANUP_TIMEOUT_MS, NULL);
	}
	return ok;
}

/*
 * check_replication_errors fails the copy when the subscription's workers
 * reported an error (their log on the target has it).
 */
static void
check_replication_errors(OnlineCopy *oc)
{
	const char *params[1] = {oc->name};
	char	   *errors = query_value(oc->dst,
									 "SELECT apply_error_count + sync_error_count FROM pg_stat_subscription_stats "
									 "WHERE subname = $1", 1, params);

	if (errors && strcmp(errors, "0") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("logical replication of the moving shards to node \"%s\" failed", oc->dst->node_name),
				 errhint("The server log of node \"%s\" has the error; nothing was changed.",
						 oc->dst->node_name)));
}

/*
 * poll_sleep waits one polling interval, interruptibly.
 */
static void
poll_sleep(void)
{
	int			rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							   POLL_MS, PG_WAIT_EXTENSION);

	if (rc & WL_LATCH_SET)
		ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();
}

/*
 * check_progress fails the copy when `progress` (a position or count, as
 * text) has not changed for mycelium.peer_timeout.
 */
static void
check_progress(OnlineCopy *oc, char **last, TimestampTz *since, const char *progress,
			   const char *what)
{
	TimestampTz now = GetCurrentTimestamp();

	if (*last == NULL || progress == NULL || strcmp(*last, progress) != 0)
	{
		*last = progress ? pstrdup(progress) : pstrdup("");
		*since = now;
		return;
	}
	if (TimestampDifferenceExceeds(*since, now, REPLICATION_STALL_MS))
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("logical replication of the moving shards to node \"%s\" stopped progressing while %s",
						oc->dst->node_name, what),
				 errdetail("Nothing changed for %d ms.", REPLICATION_STALL_MS),
				 errhint("Nothing was changed; run the move again once both nodes are healthy.")));
}

/*
 * wait_synchronised waits until the subscription copied every table and
 * follows the source's changes.
 */
static void
wait_synchronised(OnlineCopy *oc, int ntables)
{
	const char *params[1] = {oc->name};
	char	   *last = NULL;
	TimestampTz since = 0;

	for (;;)
	{
		char	   *state = query_value(oc->dst,
										"SELECT count(*) FILTER (WHERE r.srsubstate IN ('r', 's')) || '/' || count(*) "
										"|| '/' || coalesce(max(st.received_lsn)::text, '') "
										"FROM pg_subscription s JOIN pg_subscription_rel r ON r.srsubid = s.oid "
										"LEFT JOIN pg_stat_subscription st ON st.subid = s.oid "
										"WHERE s.subname = $1", 1, params);
		char	   *ready = psprintf("%d/%d/", ntables, ntables);

		if (state && strncmp(state, ready, strlen(ready)) == 0)
			return;
		check_replication_errors(oc);
		/* a large table copies for long: its rows copied count as progress */
		check_progress(oc, &last, &since,
					   psprintf("%s %s", state ? state : "",
								query_value(oc->dst, "SELECT coalesce(sum(tuples_processed), 0)::text "
											"FROM pg_stat_progress_copy", 0, NULL)),
					   "copying the shards");
		poll_sleep();
	}
}

/*
 * wait_caught_up waits until the slot confirms the source's current WAL
 * position: the target has applied every change made before the lock.
 */
static void
wait_caught_up(OnlineCopy *oc)
{
	char	   *lsn = query_value(oc->src, "SELECT pg_current_wal_lsn()::text", 0, NULL);
	const char *params[2] = {oc->name, lsn};
	char	   *last = NULL;
	TimestampTz since = 0;

	for (;;)
	{
		char	   *confirmed = query_value(oc->src,
											"SELECT confirmed_flush_lsn::text || ' ' || "
											"(confirmed_flush_lsn >= $2::pg_lsn)::text "
											"FROM pg_replication_slots WHERE slot_name = $1", 2, params);

		if (confirmed && strstr(confirmed, " true") != NULL)
			return;
		check_replication_errors(oc);
		check_progress(oc, &last, &since, confirmed, "applying the last changes");
		poll_sleep();
	}
}

/*
 * start_copy creates the publication and slot on the source and the
 * tables and subscription on the target (steps 1 and 2 of the header).
 */
static void
start_copy(OnlineCopy *oc, List *group, List *nodes, const char *source_node)
{
	const char *name = quote_identifier(oc->name);
	char	   *slot = quote_literal_cstr(oc->name);
	StringInfoData ddl;
	ListCell   *lc;

	if (!cleanup(oc, true))
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not remove what an earlier move of these shards left")));

	MyceliumExecCommand(oc->src, psprintf("CREATE PUBLICATION %s FOR TABLE %s", name, oc->tables));
	MyceliumExecCommand(oc->src, psprintf("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", slot));

	initStringInfo(&ddl);
	appendStringInfoString(&ddl, "BEGIN;\n");
	foreach(lc, group)
	{
		ShardMoveMember *m = lfirst(lc);
		ListCell   *lc2;

		foreach(lc2, MyceliumShardCreateCommands(m->relid, m->schema_name, m->shard_name))
			appendStringInfo(&ddl, "%s;\n", (char *) lfirst(lc2));
	}
	appendStringInfoString(&ddl, "COMMIT");
	MyceliumExecCommand(oc->dst, ddl.data);

	MyceliumExecCommand(oc->dst,
						psprintf("CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s "
								 "WITH (create_slot = false, slot_name = %s, copy_data = true, enabled = true)",
								 name,
								 quote_literal_cstr(subscription_conninfo(oc, MyceliumFindNode(nodes, source_node))),
								 name, slot));
}

/*
 * ShardMoveCopyOnline fills the group's tables on the target by logical
 * replication and returns with writes to the source tables blocked (in
 * the move's transaction) and every change applied on the target; see
 * the file header.
 */
void
ShardMoveCopyOnline(List *group, List *nodes, MyceliumConnection **conns,
					const char *source_node, const char *target_node, const char *tables,
					ShardMoveSwitch *sw)
{
	OnlineCopy	oc;

	oc.name = psprintf("mycelium_move_" INT64_FORMAT, ((ShardMoveMember *) linitial(group))->shard_id);
	oc.tables = pstrdup(tables);
	oc.src = ac_connection(nodes, source_node);
	oc.dst = ac_connection(nodes, target_node);
	PG_TRY();
	{
		start_copy(&oc, group, nodes, source_node);
		wait_synchronised(&oc, list_length(group));

		/* writes to the group wait from here until the commit; reads go on */
		ShardMoveBlockWrites(group, nodes, conns, source_node, tables, sw);
		wait_caught_up(&oc);
		if (!cleanup(&oc, false))
			ereport(ERROR,
					(errcode(ERRCODE_CONNECTION_FAILURE),
					 errmsg("could not end the replication of the moving shards")));
	}
	PG_CATCH();
	{
		/* best effort: the next attempt removes whatever is left */
		cleanup(&oc, true);
		MyceliumReleaseConnection(oc.src);
		MyceliumReleaseConnection(oc.dst);
		PG_RE_THROW();
	}
	PG_END_TRY();
	MyceliumReleaseConnection(oc.src);
	MyceliumReleaseConnection(oc.dst);
}

/*
 * ShardMoveRemoveLeftovers removes what a failed online copy of the group
 * left on the two nodes (see cleanup), before a copy under a lock; only a
 * superuser can have made such objects, or remove them.
 */
void
ShardMoveRemoveLeftovers(List *group, List *nodes, const char *source_node,
						 const char *target_node, const char *tables)
{
	OnlineCopy	oc;
	bool		ok;

	if (!superuser())
		return;
	oc.name = psprintf("mycelium_move_" INT64_FORMAT, ((ShardMoveMember *) linitial(group))->shard_id);
	oc.tables = pstrdup(tables);
	oc.src = ac_connection(nodes, source_node);
	oc.dst = ac_connection(nodes, target_node);
	ok = cleanup(&oc, true);
	MyceliumReleaseConnection(oc.src);
	MyceliumReleaseConnection(oc.dst);
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_CONNECTION_FAILURE),
				 errmsg("could not remove what an earlier move of these shards left")));
}
