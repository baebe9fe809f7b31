/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  Mycelium's background workers.
 *
 * IDENTIFICATION
 *	  src/worker/worker.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_WORKER_H
#define MYCELIUM_WORKER_H

#include "fmgr.h"

/* in worker/maintenance.c */
extern void MyceliumRegisterStaticWorker(const char *function, const char *name);
extern void MyceliumRegisterWorkers(void);
extern PGDLLEXPORT void MyceliumMaintenanceMain(Datum main_arg);

#endif							/* MYCELIUM_WORKER_H */
