/*-------------------------------------------------------------------------
 *
 * commands.h
 *	  Utility commands on distributed and reference tables: the
 *	  ProcessUtility hook, DDL propagation to every shard and node, and
 *	  COPY routed by shard.
 *
 * The hook (utility.c) looks at the few statement types that can touch a
 * distributed or reference table and hands them to ddl.c or copy.c; every
 * other statement goes straight to the previous hook.  DDL runs locally
 * first (so PostgreSQL's own checks decide), then on the local shards, then
 * on every other node inside the user's transaction, so the 2PC core
 * commits it everywhere or nowhere.  Shard versions of a statement are made
 * by splicing the statement's text at the parse tree's locations
 * (rewrite.c): PostgreSQL has no deparser for utility statements.
 *
 * IDENTIFICATION
 *	  src/commands/commands.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef MYCELIUM_COMMANDS_H
#define MYCELIUM_COMMANDS_H

#include "nodes/execnodes.h"
#include "nodes/params.h"
#include "parser/parse_node.h"
#include "utils/relcache.h"
#include "nodes/plannodes.h"
#include "tcop/cmdtag.h"
#include "tcop/dest.h"
#include "tcop/utility.h"

#include "shard/shard.h"
#include "transport/transport.h"

/* arguments of one ProcessUtility call, passed along as one unit */
typedef struct MyceliumUtilityArgs
{
	PlannedStmt *pstmt;
	const char *queryString;
	bool		readOnlyTree;
	ProcessUtilityContext context;
	ParamListInfo params;
	QueryEnvironment *queryEnv;
	DestReceiver *dest;
	QueryCompletion *qc;
} MyceliumUtilityArgs;

/*
 * A statement's text with the edits that turn it into the version for
 * another relation (a shard, or the shell on another node).
 */
typedef struct MyceliumDdlText
{
	char	   *text;			/* the statement alone, NUL-terminated */
	int			len;
	int			offset;			/* of text within the query string */
	int			ntokens;
	struct MyceliumToken *tokens;
	List	   *edits;			/* MyceliumDdlEdit *, sorted by start */
} MyceliumDdlText;

/* in commands/utility.c */
extern bool mycelium_enable_ddl_propagation;
extern void MyceliumInstallUtilityHook(void);
extern void MyceliumRunStandardUtility(MyceliumUtilityArgs *args, Node *stmt);
extern void MyceliumRunOnNodes(MyceliumConnection **conns, char **sqls, int n);
extern MyceliumConnection **MyceliumConnectOtherNodes(List **nodes_out);
extern char *MyceliumRemotePreamble(void);

/* in commands/ddl.c */
extern bool MyceliumProcessDdl(MyceliumUtilityArgs *args);
extern void MyceliumForgetDroppedTables(List *dist_tables);
extern void MyceliumRunLocalSql(const char *sql);
extern void MyceliumRefuse(MyceliumDistTable *table, const char *what, const char *hint);
extern MyceliumDistTable *MyceliumCopyDistTable(MyceliumDistTable *cached);

/* in commands/ddl_alter.c */
extern bool MyceliumProcessAlterTable(MyceliumUtilityArgs *args, MyceliumDistTable *table);
extern bool MyceliumProcessCreateIndex(MyceliumUtilityArgs *args, MyceliumDistTable *table);
extern void MyceliumCheckUniqueColumns(MyceliumDistTable *table, List *columns,
									   const char *what);

/* in commands/rewrite.c */
extern MyceliumDdlText *MyceliumDdlTextFor(MyceliumUtilityArgs *args);
extern int	MyceliumTokenAt(MyceliumDdlText *ddl, int location);
extern int	MyceliumNameEnd(MyceliumDdlText *ddl, int tok);
extern int	MyceliumTokenCode(MyceliumDdlText *ddl, int tok);
extern int	MyceliumTokenStart(MyceliumDdlText *ddl, int tok);
extern int	MyceliumTokenEnd(MyceliumDdlText *ddl, int tok);
extern void MyceliumEditRelation(MyceliumDdlText *ddl, int start_tok, int end_tok);
extern void MyceliumEditName(MyceliumDdlText *ddl, int tok, const char *name,
							 bool per_shard);
extern void MyceliumEditInsertName(MyceliumDdlText *ddl, int tok, const char *name,
								   const char *before, bool per_shard);
extern char *MyceliumApplyEdits(MyceliumDdlText *ddl, const char *relation,
								int64 shard_id);
extern char *MyceliumShardObjectName(const char *name, int64 shard_id);

/* in commands/copy.c */
extern bool MyceliumProcessCopy(MyceliumUtilityArgs *args);

/* in commands/copy_check.c */
extern ParseState *MyceliumCopyCheckPrivileges(MyceliumUtilityArgs *args, CopyStmt *stmt,
											   Relation rel);
extern ExprState *MyceliumCopyWhereQual(ParseState *pstate, Node *where);
extern void MyceliumCopyToViaQuery(MyceliumUtilityArgs *args, CopyStmt *stmt);

#endif							/* MYCELIUM_COMMANDS_H */
