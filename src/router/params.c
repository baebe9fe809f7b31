/*-------------------------------------------------------------------------
 *
 * params.c
 *	  External parameters ($n) of routed statements: which a shard
 *	  statement uses, and their values for one execution.
 *
 * A shard statement is printed once, at plan time, with its parameters as
 * $n; each execution sends their values (as text to other nodes, as
 * Datums to this node's SPI).  Built-in types travel with their OID, which
 * is the same on every node; other types are left for the node to infer
 * from the statement, since their OIDs differ between nodes.
 *
 * IDENTIFICATION
 *	  src/router/params.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "catalog/pg_type.h"
#include "nodes/nodeFuncs.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"

#include "router/router_internal.h"

/*
 * RouterParamValue fetches the value of external parameter id; ERROR if
 * the execution has none.
 */
void
RouterParamValue(ParamListInfo params, int id, Oid *type, Datum *value, bool *isnull)
{
	ParamExternData prmdata;
	ParamExternData *prm = NULL;

	if (params && id > 0 && id <= params->numParams)
	{
		if (params->paramFetch != NULL)
			prm = params->paramFetch(params, id, false, &prmdata);
		else
			prm = &params->params[id - 1];
	}
	if (prm == NULL || !OidIsValid(prm->ptype))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_PARAMETER),
				 errmsg("no value found for parameter %d", id)));
	*type = prm->ptype;
	*value = prm->value;
	*isnull = prm->isnull;
}

static bool
param_ids_walker(Node *node, Bitmapset **ids)
{
	if (node == NULL)
		return false;
	if (IsA(node, Param) && ((Param *) node)->paramkind == PARAM_EXTERN)
		*ids = bms_add_member(*ids, ((Param *) node)->paramid);
	return expression_tree_walker(node, param_ids_walker, ids);
}

/*
 * RouterParamIds returns the ids of the external parameters in node.
 */
Bitmapset *
RouterParamIds(Node *node)
{
	Bitmapset  *ids = NULL;

	(void) param_ids_walker(node, &ids);
	return ids;
}

/*
 * RouterFetchParams collects this execution's values of $1..$n, n the
 * highest id used; ids not used are sent as untyped text NULLs.
 */
RouterParams *
RouterFetchParams(List *param_ids, ParamListInfo params)
{
	RouterParams *rp = palloc0(sizeof(RouterParams));
	ListCell   *lc;
	int			i;

	foreach(lc, param_ids)
		rp->nparams = Max(rp->nparams, lfirst_int(lc));
	if (rp->nparams == 0)
		return rp;
	rp->types = palloc(sizeof(Oid) * rp->nparams);
	rp->remote_types = palloc(sizeof(Oid) * rp->nparams);
	rp->values = palloc0(sizeof(Datum) * rp->nparams);
	rp->nulls = palloc(sizeof(bool) * rp->nparams);
	for (i = 0; i < rp->nparams; i++)
	{
		rp->types[i] = TEXTOID;
		rp->remote_types[i] = TEXTOID;
		rp->nulls[i] = true;
	}
	foreach(lc, param_ids)
	{
		int			id = lfirst_int(lc);
		Oid			type;

		RouterParamValue(params, id, &type, &rp->values[id - 1], &rp->nulls[id - 1]);
		rp->types[id - 1] = type;
		rp->remote_types[id - 1] = type < FirstGenbkiObjectId ? type : InvalidOid;
	}
	return rp;
}

/*
 * RouterTaskSetParams gives a task the parameter values.
 */
void
RouterTaskSetParams(RouterTask *task, RouterParams *rp)
{
	task->nparams = rp->nparams;
	task->types = rp->types;
	task->remote_types = rp->remote_types;
	task->values = rp->values;
	task->nulls = rp->nulls;
}
