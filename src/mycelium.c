/*-------------------------------------------------------------------------
 *
 * mycelium.c
 *	  Module start-up: GUCs, hooks, shared memory and background workers.
 *
 * This file only wires subsystems together; each lives in its own folder
 * (config/, shmem/, transport/, cluster/, txn/, worker/, ...).  Hooks are
 * chained to whatever was installed before us.
 *
 * IDENTIFICATION
 *	  src/mycelium.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"

#include "commands/commands.h"
#include "config/config.h"
#include "ids/ids.h"
#include "replication/peer_state.h"
#include "replication/vclock.h"
#include "router/router.h"
#include "shmem/shmem.h"
#include "transport/transport.h"
#include "txn/txn.h"
#include "worker/worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* true when loaded through shared_preload_libraries */
bool		mycelium_preloaded = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * mycelium_shmem_request requests our shared memory, after earlier hooks.
 */
static void
mycelium_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	MyceliumShmemRequest();
	MyceliumTxnRegistryRequest();
	MyceliumIdsShmemRequest();
	MyceliumReplShmemRequest();
}

/*
 * mycelium_shmem_startup initialises our shared memory, after earlier hooks.
 */
static void
mycelium_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	MyceliumShmemStartup();
	MyceliumTxnRegistryStartup();
	MyceliumIdsShmemStartup();
	MyceliumReplShmemStartup();
	LWLockRelease(AddinShmemInitLock);
}

/*
 * MyceliumRequirePreload fails, naming the setting, when a function that
 * needs shared memory or workers runs without the library preloaded.
 */
void
MyceliumRequirePreload(void)
{
	if (!mycelium_preloaded || !MyceliumShmemReady())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("mycelium must be loaded via shared_preload_libraries"),
				 errhint("Add mycelium to shared_preload_libraries in postgresql.conf and restart the server.")));
}

/*
 * _PG_init defines the GUCs in every process that loads the library, and,
 * when preloaded, installs hooks, requests shared memory and registers the
 * background workers.
 */
void
_PG_init(void)
{
	MyceliumDefineGucs(process_shared_preload_libraries_in_progress);
	MyceliumReplHlcInit();		/* first registered: its PRE_COMMIT runs last */
	MyceliumRegisterXactCallbacks();

	if (!process_shared_preload_libraries_in_progress)
		return;

	mycelium_preloaded = true;
	MyceliumCheckServerSettings();

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = mycelium_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = mycelium_shmem_startup;

	MyceliumRegisterWorkers();
	MyceliumRegisterReplicationLauncher();
	MyceliumInstallUtilityHook();
	MyceliumInstallPlannerHook();
	MyceliumInstallReadAheadHook();
	MyceliumRegisterCustomScans();
}
