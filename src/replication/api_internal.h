/*-------------------------------------------------------------------------
 *
 * api_internal.h
 *	  Private declarations shared by the files of the replication SQL API
 *	  (api.c, api_slots.c, api_control.c).
 *
 * IDENTIFICATION
 *	  src/replication/api_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_REPL_API_INTERNAL_H
#define MYCELIUM_REPL_API_INTERNAL_H

#include "transport/transport.h"

/* in replication/api.c (for add_node: belongs in replication/replication.h) */
extern void MyceliumReplCopyTablesTo(MyceliumConnection *conn);

/* in replication/api_slots.c */
extern bool MyceliumReplSlotsReady(bool raise);

#endif							/* MYCELIUM_REPL_API_INTERNAL_H */
