/*-------------------------------------------------------------------------
 *
 * pull.c
 *	  Planning reads of distributed tables: each distributed table in the
 *	  query becomes a scan that fetches its rows from the shards.
 *
 * Before planning, every distributed table reference of the query (at any
 * depth: subqueries, CTEs, sublinks) is turned into a call of the
 * placeholder set-returning function mycelium.shard_rows(table) with the
 * table's column list.  The standard planner then plans the query as
 * usual -- joins, aggregates, sorting, everything -- and pushes each
 * table's restriction clauses down to its function scan.  Afterwards each
 * such FunctionScan is replaced by a MyceliumScan that fetches the rows
 * from the shards, sending the clauses that can run there with the shard
 * query, pruning shards by them, and checking them again locally.
 *
 * Because PostgreSQL itself evaluates everything above the scans, every
 * query shape gives the answer a local table would; what is pushed down is
 * only ever a filter the scan re-checks.  The original table entries are
 * appended to the plan's range table so the executor still checks
 * privileges on the distributed table and locks it, and the plan depends on
 * the table, so metadata changes invalidate it.
 *
 * IDENTIFICATION
 *	  src/router/pull.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_func.h"
#include "parser/parsetree.h"
#include "rewrite/rewriteManip.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/rel.h"

#include "router/router_internal.h"

typedef struct ConvertContext
{
	Oid			funcoid;
	List	   *shell_rtes;
	const char *why;
	int			nrefs;			/* distributed table references so far */
	bool		mark;			/* RouterMarkDistRtes: alias, do not convert */
	List	   *relids;			/* RouterMarkDistRtes: relid per reference */
} ConvertContext;

/*
 * RouterShardRowsFunc returns the OID of mycelium.shard_rows(oid, int),
 * looked up once per backend: every routed plan needs it several times.
 */
static Oid	shard_rows_oid = InvalidOid;

/* a change to pg_proc (the extension recreated) forgets the cached OID */
static void
forget_shard_rows(Datum arg, int cacheid, uint32 hashvalue)
{
	shard_rows_oid = InvalidOid;
}

Oid
RouterShardRowsFunc(void)
{
	static bool registered = false;
	Oid			argtypes[2] = {OIDOID, INT4OID};

	if (OidIsValid(shard_rows_oid))
		return shard_rows_oid;
	if (!registered)
	{
		CacheRegisterSyscacheCallback(PROCOID, forget_shard_rows, (Datum) 0);
		registered = true;
	}
	shard_rows_oid = LookupFuncName(list_make2(makeString("mycelium"), makeString("shard_rows")),
									2, argtypes, false);
	return shard_rows_oid;
}

/*
 * shard_rows_call builds the call mycelium.shard_rows(relid, spec).
 */
static FuncExpr *
shard_rows_call(Oid funcoid, Oid relid, int spec)
{
	FuncExpr   *fe;

	fe = makeFuncExpr(funcoid, RECORDOID,
					  list_make2(makeConst(OIDOID, -1, InvalidOid, sizeof(Oid),
										   ObjectIdGetDatum(relid), false, true),
								 makeConst(INT4OID, -1, InvalidOid, sizeof(int32),
										   Int32GetDatum(spec), false, true)),
					  InvalidOid, InvalidOid, COERCE_EXPLICIT_CALL);
	fe->funcretset = true;
	return fe;
}

/*
 * RouterShardRowsRte makes a range table entry reading shard_rows(relid,
 * spec) with one column per expression (the shard query's output).
 */
RangeTblEntry *
RouterShardRowsRte(Oid relid, int spec, List *exprs, List *colnames, const char *alias)
{
	RangeTblEntry *rte = makeNode(RangeTblEntry);
	RangeTblFunction *rtf = makeNode(RangeTblFunction);
	ListCell   *lc;

	rtf->funcexpr = (Node *) shard_rows_call(RouterShardRowsFunc(), relid, spec);
	rtf->funccolcount = list_length(exprs);
	rtf->funccolnames = colnames;
	foreach(lc, exprs)
	{
		rtf->funccoltypes = lappend_oid(rtf->funccoltypes, exprType(lfirst(lc)));
		rtf->funccoltypmods = lappend_int(rtf->funccoltypmods, exprTypmod(lfirst(lc)));
		rtf->funccolcollations = lappend_oid(rtf->funccolcollations, exprCollation(lfirst(lc)));
	}
	rte->rtekind = RTE_FUNCTION;
	rte->functions = list_make1(rtf);
	rte->eref = makeAlias(alias, colnames);
	rte->inFromCl = true;
	return rte;
}

/*
 * convert_rte turns one distributed table entry into a shard_rows() call
 * with the table's columns, remembering the original entry.
 */
static void
convert_rte(RangeTblEntry *rte, ConvertContext *cxt)
{
	Relation	rel = table_open(rte->relid, NoLock);
	TupleDesc	desc = RelationGetDescr(rel);
	RangeTblFunction *rtf = makeNode(RangeTblFunction);
	RangeTblEntry *orig = copyObject(rte);
	int			i;

	/* a negative spec number names the reference (see fix_plan) */
	rtf->funcexpr = (Node *) shard_rows_call(cxt->funcoid, rte->relid, -cxt->nrefs);
	rtf->funccolcount = desc->natts;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		rtf->funccolnames = lappend(rtf->funccolnames,
									makeString(pstrdup(att->attisdropped ? "" : NameStr(att->attname))));
		rtf->funccoltypes = lappend_oid(rtf->funccoltypes, att->attisdropped ? INT4OID : att->atttypid);
		rtf->funccoltypmods = lappend_int(rtf->funccoltypmods, att->attisdropped ? -1 : att->atttypmod);
		rtf->funccolcollations = lappend_oid(rtf->funccolcollations,
											 att->attisdropped ? InvalidOid : att->attcollation);
	}
	table_close(rel, NoLock);

	orig->inh = false;
	cxt->shell_rtes = lappend(cxt->shell_rtes, orig);

	rte->rtekind = RTE_FUNCTION;
	rte->functions = list_make1(rtf);
	rte->funcordinality = false;
	rte->relid = InvalidOid;
	rte->relkind = 0;
	rte->rellockmode = NoLock;
	rte->tablesample = NULL;
	rte->inh = false;
	rte->requiredPerms = 0;
	rte->checkAsUser = InvalidOid;
	rte->selectedCols = NULL;
	rte->insertedCols = NULL;
	rte->updatedCols = NULL;
	rte->extraUpdatedCols = NULL;
}

/*
 * mark_rte gives one distributed table entry the alias pushdown.c finds it
 * by in the printed query ("mycelium_ref_<n>"), keeping column aliases.
 */
static void
mark_rte(RangeTblEntry *rte, ConvertContext *cxt)
{
	List	   *colnames = rte->alias ? copyObject(rte->alias->colnames) : NIL;

	rte->alias = makeAlias(psprintf("mycelium_ref_%d", cxt->nrefs), colnames);
	cxt->relids = lappend_oid(cxt->relids, rte->relid);
}

/*
 * rte_is_dist says whether an entry is a hash or range distributed table.
 */
static bool
rte_is_dist(RangeTblEntry *rte)
{
	MyceliumDistTable *t;

	if (rte->rtekind != RTE_RELATION)
		return false;
	t = MyceliumGetDistTable(rte->relid);
	return t != NULL && t->method != MYCELIUM_DIST_REFERENCE;
}

static bool convert_walker(Node *node, ConvertContext *cxt);

/*
 * convert_query converts the distributed tables of one query level, all
 * but skip_rti, and recurses.
 */
static bool
convert_query(Query *query, Index skip_rti, ConvertContext *cxt)
{
	ListCell   *lc;
	Index		rti = 0;

	foreach(lc, query->rowMarks)
	{
		RowMarkClause *rc = lfirst(lc);

		if (rte_is_dist(rt_fetch(rc->rti, query->rtable)))
		{
			cxt->why = "SELECT ... FOR UPDATE/SHARE on a distributed table is not supported";
			return true;
		}
	}
	foreach(lc, query->rtable)
	{
		RangeTblEntry *rte = lfirst(lc);

		rti++;
		if (rti == skip_rti || !rte_is_dist(rte))
			continue;
		if (rte->securityQuals != NIL)
		{
			cxt->why = "row-level security on a distributed table is not supported";
			return true;
		}
		if (rte->tablesample != NULL)
		{
			cxt->why = "TABLESAMPLE on a distributed table is not supported";
			return true;
		}
		cxt->nrefs++;
		if (cxt->mark)
			mark_rte(rte, cxt);
		else
			convert_rte(rte, cxt);
	}
	return query_tree_walker(query, convert_walker, cxt, 0);
}

static bool
convert_walker(Node *node, ConvertContext *cxt)
{
	if (node == NULL)
		return false;
	if (IsA(node, Query))
		return convert_query((Query *) node, 0, cxt);
	return expression_tree_walker(node, convert_walker, cxt);
}

/*
 * RouterConvertDistRtes converts every distributed table read by the query
 * (not the INSERT target skip_rti) into a shard_rows() call; returns false
 * with *why set for shapes that cannot be converted.  The original entries
 * go to *shell_rtes.
 */
/*
 * RouterSetScanSpec makes the scan of the (converted) entry rti use spec.
 */
void
RouterSetScanSpec(Query *query, Index rti, int spec)
{
	RangeTblEntry *rte = rt_fetch(rti, query->rtable);
	FuncExpr   *fe = (FuncExpr *) ((RangeTblFunction *) linitial(rte->functions))->funcexpr;

	((Const *) lsecond(fe->args))->constvalue = Int32GetDatum(spec);
}

bool
RouterConvertDistRtes(Query *query, Index skip_rti, List **shell_rtes, char **why)
{
	ConvertContext cxt;

	memset(&cxt, 0, sizeof(cxt));
	cxt.funcoid = RouterShardRowsFunc();
	if (convert_query(query, skip_rti, &cxt))
	{
		*why = pstrdup(cxt.why);
		return false;
	}
	*shell_rtes = cxt.shell_rtes;
	return true;
}

/*
 * RouterMarkDistRtes aliases every distributed table reference of a query
 * "mycelium_ref_<n>", numbered in the order RouterConvertDistRtes numbers
 * the scans it makes, and lists their relids; false for shapes that
 * cannot be converted.
 */
bool
RouterMarkDistRtes(Query *query, List **relids)
{
	ConvertContext cxt;

	memset(&cxt, 0, sizeof(cxt));
	cxt.mark = true;
	if (convert_query(query, 0, &cxt))
		return false;
	*relids = cxt.relids;
	return true;
}

/*
 * to_index_var points the scan-level Vars of a replaced scan at the custom
 * scan tuple.
 */
static Node *
to_index_var(Node *node, Index *scanrelid)
{
	if (node == NULL)
		return NULL;
	if (IsA(node, Var) && ((Var *) node)->varno == *scanrelid &&
		((Var *) node)->varlevelsup == 0)
	{
		Var		   *var = copyObject((Var *) node);

		var->varno = INDEX_VAR;
		return (Node *) var;
	}
	return expression_tree_mutator(node, to_index_var, scanrelid);
}

/*
 * copyObjectSpec copies a spec of aggpush.c.
 */
static RouterScanSpec *
copyObjectSpec(RouterScanSpec *given)
{
	RouterScanSpec *spec = palloc(sizeof(RouterScanSpec));

	*spec = *given;
	spec->target = copyObject(given->target);
	spec->quals = copyObject(given->quals);
	spec->group = copyObject(given->group);
	spec->sort = list_copy(given->sort);	/* keys are read only */
	return spec;
}

/*
 * replace_function_scan builds the MyceliumScan for one shard_rows() scan.
 */
static Plan *
replace_function_scan(FunctionScan *fs, RangeTblFunction *rtf, Oid relid,
					  RouterScanSpec *given, int refno, bool xact)
{
	Index		scanrelid = fs->scan.scanrelid;
	RouterScanSpec *spec = given ? copyObjectSpec(given) : palloc0(sizeof(RouterScanSpec));
	bool		columns = (given == NULL || given->target == NIL);	/* read table columns */
	Bitmapset  *used = NULL;
	List	   *scan_tlist = NIL;
	bool		wholerow;
	ListCell   *ln,
			   *lt,
			   *lm,
			   *lcoll;
	ListCell   *lc;
	AttrNumber	attno = 0;
	CustomScan *cscan;

	pull_varattnos((Node *) fs->scan.plan.targetlist, scanrelid, &used);
	pull_varattnos((Node *) fs->scan.plan.qual, scanrelid, &used);
	wholerow = bms_is_member(0 - FirstLowInvalidHeapAttributeNumber, used);

	spec->relid = relid;
	spec->xact = xact;
	spec->refno = refno;
	if (given == NULL)
		spec->limit = -1;
	forfour(ln, rtf->funccolnames, lt, rtf->funccoltypes, lm, rtf->funccoltypmods,
			lcoll, rtf->funccolcollations)
	{
		Oid			type = lfirst_oid(lt);
		int32		typmod = lfirst_int(lm);
		Oid			coll = lfirst_oid(lcoll);
		bool		dropped = strVal(lfirst(ln))[0] == '\0';
		Node	   *expr;

		attno++;
		scan_tlist = lappend(scan_tlist,
							 makeTargetEntry((Expr *) makeVar(scanrelid, attno, type, typmod, coll, 0),
											 attno, pstrdup(strVal(lfirst(ln))), false));
		if (!dropped && (wholerow ||
						 bms_is_member(attno - FirstLowInvalidHeapAttributeNumber, used)))
			expr = (Node *) makeVar(1, attno, type, typmod, coll, 0);
		else
			expr = (Node *) makeNullConst(type, typmod, coll);
		if (columns)
			spec->target = lappend(spec->target, expr);
	}
	/* an aggregate spec's columns are not the table's: its quals are set */
	foreach(lc, columns ? fs->scan.plan.qual : NIL)
	{
		Node	   *qual = copyObject(lfirst(lc));

		ChangeVarNodes(qual, scanrelid, 1, 0);
		if (RouterExprShippable(qual, 1))
			spec->quals = lappend(spec->quals, qual);
		else
		{
			/* a shard's first rows are only right if it filters them all */
			spec->sort = NIL;
			spec->limit = -1;
		}
	}
	cscan = RouterMakeScan(spec, scan_tlist);
	RouterTakeScanPlace(cscan, fs);
	return (Plan *) cscan;
}

/*
 * RouterTakeScanPlace gives a custom scan that replaces a shard_rows()
 * scan that scan's costs, node id, parameters and init plans, and its
 * target list and quals, pointed at the custom scan tuple.
 */
void
RouterTakeScanPlace(CustomScan *cscan, FunctionScan *fs)
{
	Index		scanrelid = fs->scan.scanrelid;

	cscan->scan.plan.startup_cost = fs->scan.plan.startup_cost;
	cscan->scan.plan.total_cost = fs->scan.plan.total_cost;
	cscan->scan.plan.plan_rows = fs->scan.plan.plan_rows;
	cscan->scan.plan.plan_width = fs->scan.plan.plan_width;
	cscan->scan.plan.plan_node_id = fs->scan.plan.plan_node_id;
	cscan->scan.plan.extParam = fs->scan.plan.extParam;
	cscan->scan.plan.allParam = fs->scan.plan.allParam;
	cscan->scan.plan.initPlan = fs->scan.plan.initPlan;
	cscan->scan.plan.targetlist = (List *) to_index_var((Node *) fs->scan.plan.targetlist, &scanrelid);
	cscan->scan.plan.qual = (List *) to_index_var((Node *) fs->scan.plan.qual, &scanrelid);
}

typedef struct FixContext
{
	Oid			funcoid;
	List	   *specs;			/* RouterScanSpec of aggpush.c, numbered from 1 */
	bool		xact;
} FixContext;

static Plan *fix_plan(Plan *plan, FixContext *cxt);

static List *
fix_plans(List *plans, FixContext *cxt)
{
	ListCell   *lc;

	foreach(lc, plans)
		lfirst(lc) = fix_plan(lfirst(lc), cxt);
	return plans;
}

/*
 * fix_plan replaces, anywhere in a plan tree, the scans of shard_rows().
 */
static Plan *
fix_plan(Plan *plan, FixContext *cxt)
{
	if (plan == NULL)
		return NULL;
	switch (nodeTag(plan))
	{
		case T_FunctionScan:
			{
				FunctionScan *fs = (FunctionScan *) plan;
				RangeTblFunction *rtf;
				FuncExpr   *fe;

				if (list_length(fs->functions) != 1)
					break;
				rtf = linitial(fs->functions);
				fe = (FuncExpr *) rtf->funcexpr;
				if (!IsA(fe, FuncExpr) || fe->funcid != cxt->funcoid)
					break;
				{
					int			k = DatumGetInt32(((Const *) lsecond(fe->args))->constvalue);
					Oid			relid = DatumGetObjectId(((Const *) linitial(fe->args))->constvalue);

					/* no table: the rows of a co-located join (joinpush.c) */
					if (!OidIsValid(relid))
						return RouterMakeJoinScan(fs, rtf, list_nth(cxt->specs, k - 1), cxt->xact);
					return replace_function_scan(fs, rtf,
												 DatumGetObjectId(((Const *) linitial(fe->args))->constvalue),
												 k > 0 ? list_nth(cxt->specs, k - 1) : NULL,
												 k < 0 ? -k : 0, cxt->xact);
				}
			}
		case T_Append:
			fix_plans(((Append *) plan)->appendplans, cxt);
			break;
		case T_MergeAppend:
			fix_plans(((MergeAppend *) plan)->mergeplans, cxt);
			break;
		case T_BitmapAnd:
			fix_plans(((BitmapAnd *) plan)->bitmapplans, cxt);
			break;
		case T_BitmapOr:
			fix_plans(((BitmapOr *) plan)->bitmapplans, cxt);
			break;
		case T_SubqueryScan:
			((SubqueryScan *) plan)->subplan = fix_plan(((SubqueryScan *) plan)->subplan, cxt);
			break;
		case T_CustomScan:
			fix_plans(((CustomScan *) plan)->custom_plans, cxt);
			break;
		default:
			break;
	}
	plan->lefttree = fix_plan(plan->lefttree, cxt);
	plan->righttree = fix_plan(plan->righttree, cxt);
	return plan;
}

/*
 * RouterFixPlan replaces the shard_rows() scans of a planned statement by
 * MyceliumScans and makes the statement check, lock and depend on the
 * distributed tables it reads (shell_rtes).
 */
void
RouterFixPlan(PlannedStmt *stmt, List *shell_rtes, List *specs, bool xact)
{
	FixContext	cxt;
	ListCell   *lc;

	cxt.funcoid = RouterShardRowsFunc();
	cxt.specs = specs;
	cxt.xact = xact;
	stmt->planTree = fix_plan(stmt->planTree, &cxt);
	fix_plans(stmt->subplans, &cxt);
	foreach(lc, shell_rtes)
	{
		RangeTblEntry *rte = lfirst(lc);

		stmt->rtable = lappend(stmt->rtable, rte);
		stmt->relationOids = lappend_oid(stmt->relationOids, rte->relid);
	}
}
