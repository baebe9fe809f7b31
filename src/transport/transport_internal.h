/*-------------------------------------------------------------------------
 *
 * transport_internal.h
 *	  Declarations shared by the files of the transport subsystem only.
 *
 * IDENTIFICATION
 *	  src/transport/transport_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_TRANSPORT_INTERNAL_H
#define MYCELIUM_TRANSPORT_INTERNAL_H

#include "transport/transport.h"

/* counters per (node, role), kept even when connections close */
typedef struct MyceliumConnStats
{
	char		node_name[64];
	Oid			roleid;
	int64		opened;
	int64		reused;
	int64		failures;
} MyceliumConnStats;

/* in transport/connection.c */
extern MyceliumConnStats *MyceliumGetConnStats(const char *node_name, Oid roleid);
extern List *MyceliumConnectionCache(void);

/* in transport/connect.c */
extern void MyceliumDriveConnects(MyceliumConnection **conns, bool *pending, int n);

#endif							/* MYCELIUM_TRANSPORT_INTERNAL_H */
