/*-------------------------------------------------------------------------
 *
 * copy_check.c
 *	  The parts of COPY on a distributed table that PostgreSQL's DoCopy
 *	  would do: privilege checks and the WHERE clause of COPY FROM, and
 *	  COPY TO through a query the router answers.
 *
 * IDENTIFICATION
 *	  src/commands/copy_check.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/sysattr.h"
#include "catalog/pg_authid.h"
#include "commands/copy.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/parse_collate.h"
#include "parser/parse_expr.h"
#include "parser/parse_relation.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/rel.h"

#include "commands/commands.h"

/*
 * MyceliumCopyCheckPrivileges makes the checks DoCopy makes for COPY FROM: the
 * right to read server files or run programs, INSERT on the columns
 * copied, and a writable transaction.
 */
ParseState *
MyceliumCopyCheckPrivileges(MyceliumUtilityArgs *args, CopyStmt *stmt, Relation rel)
{
	ParseState *pstate = make_parsestate(NULL);
	ParseNamespaceItem *nsitem;
	RangeTblEntry *rte;
	ListCell   *lc;

	pstate->p_sourcetext = args->queryString;
	if (stmt->filename != NULL && !has_privs_of_role(GetUserId(), stmt->is_program ?
													 ROLE_PG_EXECUTE_SERVER_PROGRAM :
													 ROLE_PG_READ_SERVER_FILES))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg(stmt->is_program ?
						"must be superuser or have privileges of the pg_execute_server_program role to COPY to or from an external program" :
						"must be superuser or have privileges of the pg_read_server_files role to COPY from a file")));
	nsitem = addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);
	addNSItemToQuery(pstate, nsitem, false, true, true);
	rte = nsitem->p_rte;
	rte->requiredPerms = ACL_INSERT;
	foreach(lc, CopyGetAttnums(RelationGetDescr(rel), rel, stmt->attlist))
		rte->insertedCols = bms_add_member(rte->insertedCols,
										   lfirst_int(lc) - FirstLowInvalidHeapAttributeNumber);
	ExecCheckRTPerms(pstate->p_rtable, true);
	PreventCommandIfReadOnly("COPY FROM");
	PreventCommandIfParallelMode("COPY FROM");
	return pstate;
}

/*
 * MyceliumCopyWhereQual prepares a COPY FROM's WHERE clause as DoCopy does.
 */
ExprState *
MyceliumCopyWhereQual(ParseState *pstate, Node *where)
{
	if (where == NULL)
		return NULL;
	where = transformExpr(pstate, where, EXPR_KIND_COPY_WHERE);
	where = coerce_to_boolean(pstate, where, "WHERE");
	assign_expr_collations(pstate, where);
	where = eval_const_expressions(NULL, where);
	where = (Node *) canonicalize_qual((Expr *) where, false);
	return ExecPrepareQual(make_ands_implicit((Expr *) where), CreateExecutorState());
}

/*
 * MyceliumCopyToViaQuery turns COPY dist_table [(cols)] TO into COPY (SELECT
 * cols FROM dist_table) TO, which the query router answers from every
 * shard.
 */
void
MyceliumCopyToViaQuery(MyceliumUtilityArgs *args, CopyStmt *stmt)
{
	CopyStmt   *copy = copyObject(stmt);
	SelectStmt *select = makeNode(SelectStmt);
	ListCell   *lc;

	if (stmt->attlist == NIL)
	{
		ColumnRef  *star = makeNode(ColumnRef);
		ResTarget  *target = makeNode(ResTarget);

		star->fields = list_make1(makeNode(A_Star));
		star->location = -1;
		target->val = (Node *) star;
		target->location = -1;
		select->targetList = list_make1(target);
	}
	foreach(lc, stmt->attlist)
	{
		ColumnRef  *col = makeNode(ColumnRef);
		ResTarget  *target = makeNode(ResTarget);

		col->fields = list_make1(makeString(pstrdup(strVal(lfirst(lc)))));
		col->location = -1;
		target->val = (Node *) col;
		target->location = -1;
		select->targetList = lappend(select->targetList, target);
	}
	select->fromClause = list_make1(copyObject(stmt->relation));
	copy->relation = NULL;
	copy->attlist = NIL;
	copy->query = (Node *) select;
	MyceliumRunStandardUtility(args, (Node *) copy);
}
