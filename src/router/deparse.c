/*-------------------------------------------------------------------------
 *
 * deparse.c
 *	  What may run on a shard, and turning it into SQL text.
 *
 * Expressions are printed with PostgreSQL's own ruleutils under
 * search_path = pg_catalog, so every name outside pg_catalog comes out
 * schema-qualified and means the same thing on every node.  Only built-in,
 * immutable functions and operators are shipped inside expressions: they
 * exist on every node and give the same result there.  Parameters are bound
 * to constants before printing, so a shard statement carries the values of
 * the current execution.
 *
 * IDENTIFICATION
 *	  src/router/deparse.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "lib/stringinfo.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parsetree.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/float.h"
#include "utils/datum.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/ruleutils.h"

#include "router/router_internal.h"

typedef struct ShippableContext
{
	Index		varno;			/* the only relation Vars may reference */
} ShippableContext;

/*
 * builtin_immutable says whether a function is built in and immutable.
 */
static bool
builtin_immutable(Oid funcid)
{
	return funcid < FirstGenbkiObjectId && func_volatile(funcid) == PROVOLATILE_IMMUTABLE;
}

/*
 * shippable_walker rejects any node a shard could not evaluate exactly as
 * this node would.
 */
static bool
shippable_walker(Node *node, ShippableContext *cxt)
{
	if (node == NULL)
		return false;
	switch (nodeTag(node))
	{
		case T_Var:
			{
				Var		   *var = (Var *) node;

				if (var->varlevelsup != 0 || var->varno != cxt->varno || var->varattno <= 0)
					return true;
				return false;
			}
		case T_Const:
			return false;
		case T_Param:
			return ((Param *) node)->paramkind != PARAM_EXTERN;
		case T_FuncExpr:
			if (!builtin_immutable(((FuncExpr *) node)->funcid))
				return true;
			break;
		case T_OpExpr:
		case T_DistinctExpr:
		case T_NullIfExpr:
			set_opfuncid((OpExpr *) node);
			if (!builtin_immutable(((OpExpr *) node)->opfuncid))
				return true;
			break;
		case T_ScalarArrayOpExpr:
			set_sa_opfuncid((ScalarArrayOpExpr *) node);
			if (!builtin_immutable(((ScalarArrayOpExpr *) node)->opfuncid))
				return true;
			break;
		case T_BoolExpr:
		case T_NullTest:
		case T_BooleanTest:
		case T_RelabelType:
		case T_CollateExpr:
		case T_ArrayExpr:
		case T_CaseExpr:
		case T_CaseWhen:
		case T_CaseTestExpr:
		case T_CoalesceExpr:
		case T_MinMaxExpr:
		case T_List:
			break;
		case T_Aggref:
			{
				Aggref	   *agg = (Aggref *) node;

				if (agg->aggfnoid >= FirstGenbkiObjectId || agg->agglevelsup != 0)
					return true;
				break;
			}
		case T_TargetEntry:
			break;
		default:
			return true;
	}
	return expression_tree_walker(node, shippable_walker, cxt);
}

/*
 * RouterExprShippable says whether an expression over one relation (Vars of
 * varno) can be evaluated on a shard with the same result as here.
 */
bool
RouterExprShippable(Node *expr, Index varno)
{
	ShippableContext cxt;

	cxt.varno = varno;
	return !shippable_walker(expr, &cxt);
}

/*
 * RouterNotBuiltin says why a function call, operator or aggregate node
 * names something other nodes may not have (not built in), or NULL.
 */
const char *
RouterNotBuiltin(Node *node)
{
	switch (nodeTag(node))
	{
		case T_FuncExpr:
			if (((FuncExpr *) node)->funcid >= FirstGenbkiObjectId)
				return "it calls a function that is not built in";
			break;
		case T_OpExpr:
		case T_DistinctExpr:
		case T_NullIfExpr:
			set_opfuncid((OpExpr *) node);
			if (((OpExpr *) node)->opfuncid >= FirstGenbkiObjectId)
				return "it uses an operator that is not built in";
			break;
		case T_ScalarArrayOpExpr:
			set_sa_opfuncid((ScalarArrayOpExpr *) node);
			if (((ScalarArrayOpExpr *) node)->opfuncid >= FirstGenbkiObjectId)
				return "it uses an operator that is not built in";
			break;
		case T_Aggref:
			if (((Aggref *) node)->aggfnoid >= FirstGenbkiObjectId)
				return "it calls an aggregate that is not built in";
			break;
		case T_WindowFunc:
			if (((WindowFunc *) node)->winfnoid >= FirstGenbkiObjectId)
				return "it calls a window function that is not built in";
			break;
		default:
			break;
	}
	return NULL;
}

typedef struct QueryShipContext
{
	RangeTblEntry *target;
	const char *why;
} QueryShipContext;

/*
 * query_ship_walker checks a whole statement sent to shards as text: it may
 * read only its target and reference tables, and call only built-in
 * functions.
 */
static bool
query_ship_walker(Node *node, QueryShipContext *cxt)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;
		MyceliumDistTable *t;

		if (rte->rtekind == RTE_FUNCTION || rte->rtekind == RTE_TABLEFUNC)
		{
			cxt->why = "it reads from a function";
			return true;
		}
		if (rte == cxt->target)
			return false;
		if (rte->rtekind != RTE_RELATION)
			return false;
		if (rte->securityQuals != NIL)
		{
			cxt->why = "a table it reads has row-level security";
			return true;
		}
		t = MyceliumGetDistTable(rte->relid);
		if (t == NULL || t->method != MYCELIUM_DIST_REFERENCE)
		{
			cxt->why = "it reads a table that is not on every node";
			return true;
		}
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, query_ship_walker, cxt,
								 QTW_EXAMINE_RTES_BEFORE);
	if ((cxt->why = RouterNotBuiltin(node)) != NULL)
		return true;
	if (IsA(node, CurrentOfExpr))
	{
		cxt->why = "WHERE CURRENT OF is not supported on distributed tables";
		return true;
	}
	if (IsA(node, Param) && ((Param *) node)->paramkind != PARAM_EXTERN)
	{
		cxt->why = "it uses an internal parameter";
		return true;
	}
	return expression_tree_walker(node, query_ship_walker, cxt);
}

/*
 * RouterQueryShippable says whether a statement whose result relation is
 * target can be sent whole to the nodes holding it; *why says why not.
 */
bool
RouterQueryShippable(Query *query, RangeTblEntry *target, char **why)
{
	QueryShipContext cxt;

	cxt.target = target;
	cxt.why = NULL;
	if (query_tree_walker(query, query_ship_walker, &cxt, QTW_EXAMINE_RTES_BEFORE))
	{
		*why = pstrdup(cxt.why ? cxt.why : "it uses an unsupported construct");
		return false;
	}
	return true;
}

/*
 * bind_params_mutator replaces external parameters by constants.
 */
static Node *
bind_params_mutator(Node *node, ParamListInfo params)
{
	if (node == NULL)
		return NULL;
	if (IsA(node, Param) && ((Param *) node)->paramkind == PARAM_EXTERN)
	{
		Param	   *param = (Param *) node;
		Oid			type;
		Datum		value;
		bool		isnull;
		int16		typlen;
		bool		typbyval;

		RouterParamValue(params, param->paramid, &type, &value, &isnull);
		get_typlenbyval(param->paramtype, &typlen, &typbyval);
		return (Node *) makeConst(param->paramtype, param->paramtypmod, param->paramcollid,
								  typlen, isnull ? (Datum) 0 : datumCopy(value, typbyval, typlen),
								  isnull, typbyval);
	}
	if (IsA(node, Query))
		return (Node *) query_tree_mutator((Query *) node, bind_params_mutator, params, 0);
	return expression_tree_mutator(node, bind_params_mutator, params);
}

/*
 * RouterBindParams returns a copy of an expression or Query with every
 * external parameter replaced by its value in params.
 */
Node *
RouterBindParams(Node *node, ParamListInfo params)
{
	return bind_params_mutator(node, params);
}

/*
 * RouterPushSearchPath sets search_path to pg_catalog (and the transmission
 * modes) until the matching RouterPopSearchPath, so ruleutils qualifies
 * every other name and prints constants unambiguously.
 */
int
RouterPushSearchPath(void)
{
	int			nestlevel = RouterPushTransmissionModes();

	(void) set_config_option("search_path", "pg_catalog", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

/*
 * RouterPushTransmissionModes makes values print in the forms every node
 * reads back the same way (the settings node-to-node sessions use, see
 * transport/connect.c), until RouterPopSearchPath: a date printed in the
 * client's DateStyle 'German' would be misread by a shard.
 */
int
RouterPushTransmissionModes(void)
{
	int			nestlevel = NewGUCNestLevel();

	/* the usual case costs nothing: the session prints that way already */
	if (DateStyle == USE_ISO_DATES && IntervalStyle == INTSTYLE_POSTGRES &&
		extra_float_digits > 0)
		return nestlevel;

	(void) set_config_option("datestyle", "ISO", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("intervalstyle", "postgres", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) set_config_option("extra_float_digits", "3", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return nestlevel;
}

void
RouterPopSearchPath(int nestlevel)
{
	AtEOXact_GUC(true, nestlevel);
}

/*
 * RouterDeparseExpr prints an expression over the relation relid (Vars of
 * varno 1) with the relation aliased "t".
 */
char *
RouterDeparseExpr(Node *expr, Oid relid)
{
	int			nestlevel = RouterPushSearchPath();
	char	   *s;

	s = deparse_expression(expr, deparse_context_for("t", relid), true, false);
	RouterPopSearchPath(nestlevel);
	return s;
}

/*
 * RouterDeparseExprList prints expressions over the relation relid (Vars
 * of varno 1, aliased "t") joined by sep, under one search_path change and
 * one deparse context.
 */
char *
RouterDeparseExprList(List *exprs, Oid relid, const char *sep)
{
	StringInfoData buf;
	int			nestlevel;
	List	   *context;
	ListCell   *lc;

	initStringInfo(&buf);
	if (exprs == NIL)
		return buf.data;
	nestlevel = RouterPushSearchPath();
	context = deparse_context_for("t", relid);
	foreach(lc, exprs)
	{
		if (lc != list_head(exprs))
			appendStringInfoString(&buf, sep);
		appendStringInfoString(&buf, deparse_expression(lfirst(lc), context, true, false));
	}
	RouterPopSearchPath(nestlevel);
	return buf.data;
}

/*
 * RouterDeparseQuery prints a whole statement.
 */
char *
RouterDeparseQuery(Query *query)
{
	int			nestlevel = RouterPushSearchPath();
	char	   *s;

	s = pg_get_querydef(query, false);
	RouterPopSearchPath(nestlevel);
	return s;
}
