/*-------------------------------------------------------------------------
 *
 * api_internal.h
 *	  Private declarations shared by the files of the replication SQL API
 *	  (api.c, api_shape.c, api_slots.c, api_control.c).
 *
 * IDENTIFICATION
 *	  src/replication/api_internal.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_REPL_API_INTERNAL_H
#define MYCELIUM_REPL_API_INTERNAL_H

#include "transport/transport.h"

/* one column of a table, as mycelium.replication_table_shape shows it */
typedef struct ShapeColumn
{
	char	   *name;
	char	   *type;
	bool		in_pk;
} ShapeColumn;

/* a table (or whatever has its name) on one member */
typedef struct TableShape
{
	bool		present;		/* a relation of that name exists */
	char		relkind;
	bool		replicated;		/* listed in mycelium.replicated_table */
	int			ncols;
	ShapeColumn *cols;			/* ordered by name */
} TableShape;

/* in replication/api_shape.c */
extern void MyceliumReplLocalShape(const char *qualname, TableShape *shape);
extern MyceliumConnection **MyceliumReplMembersToCreate(MyceliumConnection **remote, int n,
														const char *qualname,
														const char *display,
														const TableShape *here,
														int *ncreate);

/* in replication/api.c (for add_node: belongs in replication/replication.h) */

/* in replication/api_slots.c */
extern void MyceliumReplEnsureSlots(void);
extern bool MyceliumReplSlotsReady(bool raise);

#endif							/* MYCELIUM_REPL_API_INTERNAL_H */
