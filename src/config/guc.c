/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  Definition and validation of every mycelium.* configuration parameter.
 *
 * Each string parameter has a check hook that refuses a bad value with
 * SQLSTATE 22023 and a detail saying why; integer parameters rely on GUC's
 * own range checks (also 22023) and carry units so '5s' or '1GB' work.
 * MyceliumCheckServerSettings() warns at start-up about core settings that
 * are too low for the mesh.
 *
 * IDENTIFICATION
 *	  src/config/guc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "access/twophase.h"
#include "access/xlog.h"
#include "access/commit_ts.h"
#include "miscadmin.h"
#include "replication/slot.h"
#include "replication/walsender.h"
#include "utils/guc.h"

#include "config/config.h"

/* initialised for processes that load the library without preloading it */
char	   *mycelium_database = "postgres";
char	   *mycelium_node_name = "";
char	   *mycelium_node_host = "localhost";
int			mycelium_ssl_mode = MYCELIUM_SSL_VERIFY_FULL;
char	   *mycelium_ssl_ca_file = "";
char	   *mycelium_ssl_cert_file = "";
char	   *mycelium_ssl_key_file = "";
int			mycelium_connect_timeout_ms = 5000;
int			mycelium_connect_attempts = 3;
int			mycelium_max_connections_per_node = 32;
int			mycelium_max_shared_pool_size = 0;
int			mycelium_shard_count = 32;
int			mycelium_recovery_interval_ms = 10000;
int			mycelium_prepare_timeout_ms = 30000;
int			mycelium_deadlock_detection_interval_ms = 2000;
int			mycelium_heartbeat_interval_ms = 1000;
int			mycelium_peer_timeout_ms = 10000;
int			mycelium_conflict_resolution = MYCELIUM_CONFLICT_LAST_WRITER_WINS;
int			mycelium_max_slot_lag_kb = 1024 * 1024;
int			mycelium_certificate_expiry_warning_s = 30 * 86400;
int			mycelium_fault_injection = MYCELIUM_FAULT_NONE;

static const struct config_enum_entry ssl_mode_options[] = {
	{"disable", MYCELIUM_SSL_DISABLE, false},
	{"allow", MYCELIUM_SSL_ALLOW, false},
	{"prefer", MYCELIUM_SSL_PREFER, false},
	{"require", MYCELIUM_SSL_REQUIRE, false},
	{"verify-ca", MYCELIUM_SSL_VERIFY_CA, false},
	{"verify-full", MYCELIUM_SSL_VERIFY_FULL, false},
	{NULL, 0, false}
};

static const struct config_enum_entry conflict_options[] = {
	{"last_writer_wins", MYCELIUM_CONFLICT_LAST_WRITER_WINS, false},
	{NULL, 0, false}
};

static const struct config_enum_entry fault_options[] = {
	{"none", MYCELIUM_FAULT_NONE, false},
	{"skip_commit_prepared", MYCELIUM_FAULT_SKIP_COMMIT_PREPARED, false},
	{"crash_after_prepare", MYCELIUM_FAULT_CRASH_AFTER_PREPARE, false},
	{"crash_after_commit", MYCELIUM_FAULT_CRASH_AFTER_COMMIT, false},
	{"error_after_prepare", MYCELIUM_FAULT_ERROR_AFTER_PREPARE, false},
	{"corrupt_replication_message", MYCELIUM_FAULT_CORRUPT_REPLICATION_MESSAGE, false},
	{NULL, 0, false}
};

/*
 * MyceliumSslModeName returns the libpq sslmode keyword for an enum value.
 */
const char *
MyceliumSslModeName(int mode)
{
	const struct config_enum_entry *e;

	for (e = ssl_mode_options; e->name; e++)
		if (e->val == mode)
			return e->name;
	return "verify-full";
}

/*
 * check_node_name accepts '' (not yet configured) or a name of 1-63
 * letters, digits, '_' and '-': node names appear in global transaction ids,
 * replication slot names and certificate common names, so they must be safe
 * in all of those.
 */
static bool
check_node_name(char **newval, void **extra, GucSource source)
{
	const char *p;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	if (strlen(*newval) > 63)
	{
		GUC_check_errdetail("Node names are at most 63 characters long.");
		return false;
	}
	for (p = *newval; *p; p++)
	{
		if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-'))
		{
			GUC_check_errdetail("Node names may contain only ASCII letters, digits, \"_\" and \"-\"; \"%s\" contains \"%c\".",
								*newval, *p);
			return false;
		}
	}
	return true;
}

/*
 * check_node_host accepts a host name or address without white space.
 */
static bool
check_node_host(char **newval, void **extra, GucSource source)
{
	const char *p;

	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("The address peers use to reach this node must not be empty.");
		return false;
	}
	if (strlen(*newval) > 255)
	{
		GUC_check_errdetail("Host names are at most 255 characters long.");
		return false;
	}
	for (p = *newval; *p; p++)
	{
		if (isspace((unsigned char) *p) || *p == '\'' || *p == '\\')
		{
			GUC_check_errdetail("A host name must not contain white space, quotes or backslashes.");
			return false;
		}
	}
	return true;
}

/*
 * check_database accepts any non-empty name that fits in a NameData.
 */
static bool
check_database(char **newval, void **extra, GucSource source)
{
	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("The background workers need a database to serve.");
		return false;
	}
	if (strlen(*newval) >= NAMEDATALEN)
	{
		GUC_check_errdetail("Database names are at most %d bytes long.", NAMEDATALEN - 1);
		return false;
	}
	return true;
}

/*
 * check_file_path refuses paths with characters libpq's connection string
 * quoting would have to escape in surprising ways; existence is checked when
 * a connection is opened, since files are replaced during rotation.
 */
static bool
check_file_path(char **newval, void **extra, GucSource source)
{
	if (*newval && strchr(*newval, '\n'))
	{
		GUC_check_errdetail("A file path must not contain a newline.");
		return false;
	}
	if (*newval && (*newval)[0] != '\0' && !is_absolute_path(*newval))
	{
		GUC_check_errdetail("\"%s\" is not an absolute path.", *newval);
		GUC_check_errhint("Give the full path of the PEM file, for example \"/etc/mycelium/node.crt\".");
		return false;
	}
	return true;
}

/*
 * define_postmaster_gucs defines the parameters fixed at server start.  A
 * backend that loads the library without preloading it (the SQLite FDW
 * needs no preload) cannot define them, so they keep their defaults there.
 */
static void
define_postmaster_gucs(void)
{
	DefineCustomStringVariable("mycelium.database",
							   "Sets the database whose mesh the background workers serve.",
							   NULL, &mycelium_database, "postgres",
							   PGC_POSTMASTER, 0, check_database, NULL, NULL);
	DefineCustomStringVariable("mycelium.node_name",
							   "Sets this node's name in the mesh.",
							   "Required before the node joins a mesh; letters, digits, '_' and '-'.",
							   &mycelium_node_name, "",
							   PGC_POSTMASTER, 0, check_node_name, NULL, NULL);
}

/*
 * define_string_gucs defines the string-valued parameters.
 */
static void
define_string_gucs(void)
{
	DefineCustomStringVariable("mycelium.node_host",
							   "Sets the address peers use to reach this node.",
							   NULL, &mycelium_node_host, "localhost",
							   PGC_SIGHUP, 0, check_node_host, NULL, NULL);
	DefineCustomStringVariable("mycelium.ssl_ca_file",
							   "Sets the PEM file of CA certificates that node certificates are verified against.",
							   NULL, &mycelium_ssl_ca_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, check_file_path, NULL, NULL);
	DefineCustomStringVariable("mycelium.ssl_cert_file",
							   "Sets the PEM certificate this node presents to its peers.",
							   NULL, &mycelium_ssl_cert_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, check_file_path, NULL, NULL);
	DefineCustomStringVariable("mycelium.ssl_key_file",
							   "Sets the PEM private key of this node's certificate.",
							   NULL, &mycelium_ssl_key_file, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, check_file_path, NULL, NULL);
}

/*
 * define_time_gucs defines the interval and timeout parameters (all in
 * milliseconds or seconds, with units so '5s', '2min' and '30d' work).
 */
static void
define_time_gucs(void)
{
	DefineCustomIntVariable("mycelium.connect_timeout",
							"Sets the time limit of one connection attempt to a peer.",
							NULL, &mycelium_connect_timeout_ms, 5000, 100, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("mycelium.recovery_interval",
							"Sets how often in-doubt two-phase transactions are resolved.",
							"0 turns automatic recovery off; mycelium.recover_prepared_transactions() still works.",
							&mycelium_recovery_interval_ms, 10000, 0, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("mycelium.prepare_timeout",
							"Sets how long a participant may stay silent at PREPARE before the transaction aborts.",
							NULL, &mycelium_prepare_timeout_ms, 30000, 100, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("mycelium.deadlock_detection_interval",
							"Sets the period of distributed deadlock detection.",
							"0 turns distributed deadlock detection off.",
							&mycelium_deadlock_detection_interval_ms, 2000, 0, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("mycelium.heartbeat_interval",
							"Sets the period of peer health checks and replication keepalives.",
							NULL, &mycelium_heartbeat_interval_ms, 1000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("mycelium.peer_timeout",
							"Sets how long a peer may stay silent before it is marked down.",
							NULL, &mycelium_peer_timeout_ms, 10000, 100, 24 * 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("mycelium.certificate_expiry_warning",
							"Sets how close to expiry a configured certificate must be to be warned about.",
							NULL, &mycelium_certificate_expiry_warning_s, 30 * 86400, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
}

/*
 * define_count_gucs defines the count and size parameters.
 */
static void
define_count_gucs(void)
{
	DefineCustomIntVariable("mycelium.connect_attempts",
							"Sets how many times opening a connection to a peer is tried before giving up.",
							"Attempts are spaced by exponential backoff with jitter.",
							&mycelium_connect_attempts, 3, 1, 100,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("mycelium.max_connections_per_node",
							"Sets the most connections one backend keeps open to one peer.",
							NULL, &mycelium_max_connections_per_node, 32, 1, 10000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("mycelium.max_shared_pool_size",
							"Sets the most connections all backends of this node together keep open to one peer.",
							"0 means 80% of the peer's max_connections.",
							&mycelium_max_shared_pool_size, 0, 0, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("mycelium.shard_count",
							"Sets the default number of shards of a hash-distributed table.",
							NULL, &mycelium_shard_count, 32, 1, 64000,
							PGC_USERSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("mycelium.max_slot_lag",
							"Sets how much WAL may be held for a silent peer before a warning.",
							"-1 means no limit.",
							&mycelium_max_slot_lag_kb, 1024 * 1024, -1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_KB, NULL, NULL, NULL);
}

/*
 * MyceliumDefineGucs defines every mycelium.* parameter and, when
 * preloading, reserves the prefix so a misspelt mycelium.* setting is
 * reported instead of ignored.  Without preload only the parameters that
 * can be defined after start-up are (see define_postmaster_gucs).
 */
void
MyceliumDefineGucs(bool preloading)
{
	if (preloading)
		define_postmaster_gucs();
	define_string_gucs();
	define_time_gucs();
	define_count_gucs();

	DefineCustomEnumVariable("mycelium.ssl_mode",
							 "Sets the libpq sslmode of every node-to-node connection.",
							 "Use \"disable\" only for local tests.",
							 &mycelium_ssl_mode, MYCELIUM_SSL_VERIFY_FULL, ssl_mode_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("mycelium.conflict_resolution",
							 "Sets the default conflict resolution policy of replicated tables.",
							 NULL, &mycelium_conflict_resolution,
							 MYCELIUM_CONFLICT_LAST_WRITER_WINS, conflict_options,
							 PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("mycelium.fault_injection",
							 "Injects a fault into the two-phase commit path or the apply workers (testing only).",
							 NULL, &mycelium_fault_injection, MYCELIUM_FAULT_NONE, fault_options,
							 PGC_SUSET, GUC_NOT_IN_SAMPLE | GUC_NO_SHOW_ALL, NULL, NULL, NULL);

	if (preloading)
		MarkGUCPrefixReserved("mycelium");
}

/*
 * check_output_plugin_libraries warns when the server only lets listed
 * output plugins decode (PostgreSQL 15.19 and later) and mycelium is not
 * listed: replication would fail when it creates its slots.
 */
static void
check_output_plugin_libraries(void)
{
	const char *libs = GetConfigOption("output_plugin_libraries", true, false);

	if (libs == NULL || strstr(libs, "mycelium") != NULL)
		return;
	ereport(WARNING,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("output_plugin_libraries does not list mycelium, so mycelium replication cannot decode changes"),
			 errdetail("output_plugin_libraries is \"%s\".", libs),
			 errhint("Set output_plugin_libraries = '%s, mycelium' in postgresql.conf.", libs)));
}

/*
 * MyceliumCheckServerSettings warns, once at postmaster start, about core
 * settings too low for the mesh, naming the value each needs.
 */
void
MyceliumCheckServerSettings(void)
{
	if (max_prepared_xacts < MaxConnections)
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mycelium needs max_prepared_transactions of at least max_connections (%d), but it is %d",
						MaxConnections, max_prepared_xacts),
				 errhint("Set max_prepared_transactions = %d or more in postgresql.conf; two-phase commits fail without it.",
						 MaxConnections)));
	if (wal_level < WAL_LEVEL_LOGICAL)
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mycelium replication needs wal_level = logical"),
				 errhint("Set wal_level = logical in postgresql.conf and restart.")));
	if (!track_commit_timestamp)
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mycelium conflict resolution needs track_commit_timestamp = on"),
				 errhint("Set track_commit_timestamp = on in postgresql.conf and restart.")));
	if (max_worker_processes < 4)
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mycelium needs max_worker_processes of at least 4, but it is %d",
						max_worker_processes),
				 errhint("Set max_worker_processes = 4 or more (one maintenance worker, plus one replication worker per peer) and restart.")));
	if (max_replication_slots < 1 || max_wal_senders < 1)
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mycelium replication needs max_replication_slots and max_wal_senders of at least one per peer"),
				 errdetail("max_replication_slots is %d and max_wal_senders is %d.",
						   max_replication_slots, max_wal_senders)));
	check_output_plugin_libraries();
	if (mycelium_ssl_mode == MYCELIUM_SSL_DISABLE)
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mycelium.ssl_mode is \"disable\": node-to-node traffic is not encrypted"),
				 errhint("Use \"disable\" only for local tests; \"verify-full\" is the default.")));
	if (mycelium_node_name[0] == '\0')
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("mycelium.node_name is not set"),
				 errhint("Set mycelium.node_name in postgresql.conf before this node joins a mesh.")));
}
