/*-------------------------------------------------------------------------
 *
 * config.h
 *	  Mycelium's GUC variables and start-up checks.
 *
 * Every other subsystem reads configuration through these variables; they
 * are defined (with their check hooks) in config/guc.c.
 *
 * IDENTIFICATION
 *	  src/config/config.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_CONFIG_H
#define MYCELIUM_CONFIG_H

/* libpq sslmode values, in libpq's order of strictness */
typedef enum MyceliumSslMode
{
	MYCELIUM_SSL_DISABLE,
	MYCELIUM_SSL_ALLOW,
	MYCELIUM_SSL_PREFER,
	MYCELIUM_SSL_REQUIRE,
	MYCELIUM_SSL_VERIFY_CA,
	MYCELIUM_SSL_VERIFY_FULL
} MyceliumSslMode;

/* default policy of replicated tables ("custom" needs a function per table) */
typedef enum MyceliumConflictResolution
{
	MYCELIUM_CONFLICT_LAST_WRITER_WINS
} MyceliumConflictResolution;

/*
 * test-only fault injection points of the 2PC core (see txn/twophase.c)
 * and of the apply worker (see replication/apply_worker.c)
 */
typedef enum MyceliumFault
{
	MYCELIUM_FAULT_NONE,
	MYCELIUM_FAULT_SKIP_COMMIT_PREPARED,	/* commit locally, tell no one */
	MYCELIUM_FAULT_CRASH_AFTER_PREPARE,	/* die after PREPARE, before commit record */
	MYCELIUM_FAULT_CRASH_AFTER_COMMIT,	/* die after local commit, before COMMIT PREPARED */
	MYCELIUM_FAULT_ERROR_AFTER_PREPARE,	/* fail (ERROR) after PREPARE: the abort path */
	MYCELIUM_FAULT_CORRUPT_REPLICATION_MESSAGE	/* apply workers garble one received message */
} MyceliumFault;

/* in config/guc.c */
extern char *mycelium_database;
extern char *mycelium_node_name;
extern char *mycelium_node_host;
extern int	mycelium_ssl_mode;
extern char *mycelium_ssl_ca_file;
extern char *mycelium_ssl_cert_file;
extern char *mycelium_ssl_key_file;
extern int	mycelium_connect_timeout_ms;
extern int	mycelium_connect_attempts;
extern int	mycelium_max_connections_per_node;
extern int	mycelium_max_shared_pool_size;
extern int	mycelium_shard_count;
extern int	mycelium_recovery_interval_ms;
extern int	mycelium_prepare_timeout_ms;
extern int	mycelium_deadlock_detection_interval_ms;
extern int	mycelium_heartbeat_interval_ms;
extern int	mycelium_peer_timeout_ms;
extern int	mycelium_conflict_resolution;
extern int	mycelium_max_slot_lag_kb;
extern int	mycelium_certificate_expiry_warning_s;
extern int	mycelium_fault_injection;

extern void MyceliumDefineGucs(bool preloading);
extern void MyceliumCheckServerSettings(void);
extern const char *MyceliumSslModeName(int mode);

/* in mycelium.c */
extern bool mycelium_preloaded;
extern void MyceliumRequirePreload(void);

#endif							/* MYCELIUM_CONFIG_H */
