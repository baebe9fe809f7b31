/*-------------------------------------------------------------------------
 *
 * cluster.h
 *	  The mesh: node catalog, membership changes, mesh-wide metadata and
 *	  commands run on every node.
 *
 * IDENTIFICATION
 *	  src/cluster/cluster.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_CLUSTER_H
#define MYCELIUM_CLUSTER_H

#include "nodes/pg_list.h"
#include "transport/transport.h"

typedef struct MyceliumNode
{
	int			node_id;
	char		node_name[64];
	char		host[256];
	int			port;
	char		status[16];		/* catalog status: active, draining */
	bool		is_local;
} MyceliumNode;

/* in cluster/nodes.c */
extern List *MyceliumLoadNodes(void);
extern Oid	MyceliumExtensionOwner(void);
extern void MyceliumBeginCatalogAccess(Oid *save_userid, int *save_sec_context);
extern void MyceliumEndCatalogAccess(Oid save_userid, int save_sec_context);
extern List *MyceliumCachedNodes(void);
extern void MyceliumSpiExecLatest(const char *sql, int nargs, Oid *types, Datum *values,
								  bool read_only);
extern MyceliumNode *MyceliumFindNode(List *nodes, const char *node_name);
extern MyceliumNode *MyceliumEnsureLocalNode(void);
extern void MyceliumValidateNodeName(const char *node_name);
extern Oid	MyceliumCatalogRelid(const char *relname);

/* in cluster/metadata.c */
extern MyceliumConnection **MyceliumConnectNodes(List *nodes, MyceliumConnMode mode,
												bool missing_ok, bool include_local,
												const bool *skip);
extern void MyceliumLockMembers(List *nodes, MyceliumConnection **conns);
extern MyceliumConnection **MyceliumUsableMembers(List *nodes, MyceliumConnection **conns, int *n);
extern void MyceliumWriteOnMembers(MyceliumConnection **conns, int n, const char *sql,
								   int nparams, const char *const *params);
extern List *MyceliumLockMesh(const char *skip_node, MyceliumConnection ***conns_out);
extern void MyceliumCopyMetadataTo(MyceliumConnection *conn);
extern void MyceliumResetMetadataOf(MyceliumConnection *conn, const char *node_name);

#endif							/* MYCELIUM_CLUSTER_H */
