/*-------------------------------------------------------------------------
 *
 * modify.c
 *	  MyceliumModify: INSERT, UPDATE and DELETE on distributed and
 *	  reference tables.
 *
 * UPDATE and DELETE run whole on the shards: the statement, with the
 * parameters of the execution bound, is printed by ruleutils and its
 * target replaced by each shard (pruned by the WHERE clause) or, for a
 * reference table, sent to every node.  It may read only its own table
 * and reference tables and call built-in functions; otherwise it is
 * refused with 0A000 rather than run somewhere it would mean something
 * else.
 *
 * INSERT is planned by the standard planner (so defaults, casts and any
 * source query are evaluated here, once); its ModifyTable node is replaced
 * by a MyceliumModify that takes the rows the source produces, routes each
 * by its distribution value, and sends batches of rows to the shards as
 * multi-row INSERTs with the statement's ON CONFLICT and RETURNING
 * clauses.  A reference table gets every row on every node.
 *
 * All writes run in the transaction (see execute.c), so a statement that
 * writes on several nodes commits with two-phase commit.
 *
 * IDENTIFICATION
 *	  src/router/modify.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/explain.h"
#include "executor/executor.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parsetree.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "cluster/cluster.h"
#include "router/router.h"
#include "router/router_internal.h"

#define BATCH_ROWS 1000
#define MAX_PARAMS 65535

typedef struct RowBatch
{
	int			nrows;
	Datum	   *values;			/* nrows * ncols */
	bool	   *nulls;
} RowBatch;

typedef struct RouterModifyState
{
	CustomScanState css;
	CmdType		command;
	Oid			relid;
	Query	   *query;			/* the statement as planned */
	MyceliumDistTable *table;
	List	   *tasks;			/* UPDATE/DELETE: built at start */
	Tuplestorestate *store;
	TupleTableSlot *readslot;	/* minimal-tuple slot reading the store */
	bool		done;
	/* INSERT */
	int			ncols;			/* non-dropped columns */
	AttrNumber *attnos;
	Oid		   *types;
	char	   *head;			/* "(a, b) " */
	char	   *tail;			/* " ON CONFLICT ... RETURNING ..." */
	char	   *tail_noreturn;
	int			batch_rows;
	RowBatch   *batches;		/* per shard, or one for a reference table */
	MemoryContext batchcxt;
	uint64		processed;
} RouterModifyState;

static Node *create_modify_state(CustomScan *cscan);
static void begin_modify(CustomScanState *node, EState *estate, int eflags);
static TupleTableSlot *exec_modify(CustomScanState *node);
static void end_modify(CustomScanState *node);
static void rescan_modify(CustomScanState *node);
static void explain_modify(CustomScanState *node, List *ancestors, ExplainState *es);

static CustomScanMethods modify_methods = {
	"MyceliumModify",
	create_modify_state
};

static CustomExecMethods modify_exec_methods = {
	.CustomName = "MyceliumModify",
	.BeginCustomScan = begin_modify,
	.ExecCustomScan = exec_modify,
	.EndCustomScan = end_modify,
	.ReScanCustomScan = rescan_modify,
	.ExplainCustomScan = explain_modify
};

void
RouterRegisterModifyScan(void)
{
	RegisterCustomScanMethods(&modify_methods);
}

/*
 * refuse_modify raises 0A000 for a write the router cannot run.
 */
static void
refuse_modify(MyceliumDistTable *target, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
			 errmsg("cannot run this statement on %s table \"%s\"",
					target->method == MYCELIUM_DIST_REFERENCE ? "reference" : "distributed",
					target->rel_name),
			 errdetail("%s", why),
			 errhint("UPDATE and DELETE on distributed tables may read only the table itself and reference tables, and call only built-in functions.")));
}

/*
 * make_modify_scan builds the MyceliumModify node; its output is the
 * RETURNING list.
 */
static CustomScan *
make_modify_scan(Query *parse, MyceliumDistTable *target)
{
	CustomScan *cscan = makeNode(CustomScan);
	ListCell   *lc;
	AttrNumber	resno = 0;

	cscan->methods = &modify_methods;
	cscan->scan.scanrelid = 0;
	foreach(lc, parse->returningList)
	{
		TargetEntry *tle = lfirst(lc);
		Expr	   *expr = tle->expr;

		resno++;
		cscan->custom_scan_tlist = lappend(cscan->custom_scan_tlist,
										   makeTargetEntry(copyObject(expr), resno, tle->resname, false));
		cscan->scan.plan.targetlist = lappend(cscan->scan.plan.targetlist,
											  makeTargetEntry((Expr *) makeVar(INDEX_VAR, resno, exprType((Node *) expr),
																			   exprTypmod((Node *) expr),
																			   exprCollation((Node *) expr), 0),
															  resno, tle->resname, false));
	}
	cscan->custom_private = list_make3(makeInteger(parse->commandType),
									   makeString(psprintf("%u", target->relid)),
									   copyObject(parse));
	return cscan;
}

typedef struct CollectContext
{
	List	   *rtes;
	List	   *relids;
} CollectContext;

/*
 * collect_rels gathers the relations a statement reads in sublinks, so the
 * plan checks their privileges and depends on them.
 */
static bool
collect_rels(Node *node, CollectContext *cxt)
{
	if (node == NULL)
		return false;
	if (IsA(node, RangeTblEntry))
	{
		RangeTblEntry *rte = (RangeTblEntry *) node;

		if (rte->rtekind == RTE_RELATION)
		{
			cxt->rtes = lappend(cxt->rtes, copyObject(rte));
			cxt->relids = lappend_oid(cxt->relids, rte->relid);
		}
		return false;
	}
	if (IsA(node, Query))
		return query_tree_walker((Query *) node, collect_rels, cxt, QTW_EXAMINE_RTES_BEFORE);
	return expression_tree_walker(node, collect_rels, cxt);
}

/*
 * RouterPlanModify plans an UPDATE or DELETE of a distributed or reference
 * table: checks that it can run on the shards and makes the statement.
 */
PlannedStmt *
RouterPlanModify(Query *parse, MyceliumDistTable *target)
{
	RangeTblEntry *rte = rt_fetch(parse->resultRelation, parse->rtable);
	PlannedStmt *stmt = makeNode(PlannedStmt);
	CollectContext cc = {NIL, NIL};
	char	   *why;
	ListCell   *lc;

	if (parse->cteList != NIL)
		refuse_modify(target, "WITH queries in UPDATE and DELETE are not supported.");
	if (rte->securityQuals != NIL)
		refuse_modify(target, "Row-level security is not supported on distributed tables.");
	if (!RouterQueryShippable(parse, rte, &why))
		refuse_modify(target, psprintf("The statement cannot run on the shards because %s.", why));
	if (target->method != MYCELIUM_DIST_REFERENCE && parse->commandType == CMD_UPDATE)
		foreach(lc, parse->targetList)
		{
			TargetEntry *tle = lfirst(lc);

			if (!tle->resjunk && tle->resno == target->dist_attno)
				refuse_modify(target, psprintf("Column \"%s\" is the distribution column, which cannot be updated.",
											   target->dist_column));
		}
	if (target->method == MYCELIUM_DIST_REFERENCE && contain_mutable_functions((Node *) parse))
		refuse_modify(target, "A write to a reference table must give the same result on every node, so it cannot call volatile or stable functions.");

	(void) query_tree_walker(parse, collect_rels, &cc, QTW_EXAMINE_RTES_BEFORE);
	stmt->commandType = parse->commandType;
	stmt->queryId = parse->queryId;
	stmt->hasReturning = parse->returningList != NIL;
	stmt->canSetTag = parse->canSetTag;
	stmt->planTree = (Plan *) make_modify_scan(parse, target);
	stmt->rtable = list_concat(copyObject(parse->rtable), cc.rtes);
	stmt->relationOids = cc.relids;
	stmt->stmt_location = parse->stmt_location;
	stmt->stmt_len = parse->stmt_len;
	return stmt;
}

/*
 * RouterReplaceModifyTable turns a planned INSERT into a distributed or
 * reference table into a routed one: the ModifyTable's source plan feeds a
 * MyceliumModify.
 */
void
RouterReplaceModifyTable(PlannedStmt *stmt, Query *parse, MyceliumDistTable *target)
{
	ModifyTable *mt = (ModifyTable *) stmt->planTree;
	CustomScan *cscan;

	if (!IsA(mt, ModifyTable) || mt->plan.lefttree == NULL)
		refuse_modify(target, "This form of INSERT is not supported.");
	if (parse->onConflict && parse->onConflict->constraint != InvalidOid)
		refuse_modify(target, "ON CONFLICT ON CONSTRAINT is not supported; name the conflict columns instead.");
	if (target->method == MYCELIUM_DIST_REFERENCE && parse->onConflict &&
		contain_mutable_functions((Node *) parse->onConflict))
		refuse_modify(target, "ON CONFLICT on a reference table cannot call volatile or stable functions.");
	if (parse->onConflict && parse->onConflict->action == ONCONFLICT_UPDATE &&
		target->method != MYCELIUM_DIST_REFERENCE)
	{
		ListCell   *lc;

		foreach(lc, parse->onConflict->onConflictSet)
			if (((TargetEntry *) lfirst(lc))->resno == target->dist_attno)
				refuse_modify(target, "ON CONFLICT DO UPDATE cannot change the distribution column.");
	}
	cscan = make_modify_scan(parse, target);
	cscan->custom_plans = list_make1(mt->plan.lefttree);
	cscan->scan.plan.initPlan = mt->plan.initPlan;
	cscan->scan.plan.startup_cost = mt->plan.startup_cost;
	cscan->scan.plan.total_cost = mt->plan.total_cost;
	cscan->scan.plan.plan_rows = mt->plan.plan_rows;
	stmt->planTree = (Plan *) cscan;
	stmt->resultRelations = NIL;
	stmt->rowMarks = NIL;
}

static Node *
create_modify_state(CustomScan *cscan)
{
	RouterModifyState *state = palloc0(sizeof(RouterModifyState));

	NodeSetTag(state, T_CustomScanState);
	state->css.methods = &modify_exec_methods;
	state->command = (CmdType) intVal(linitial(cscan->custom_private));
	state->relid = (Oid) strtoul(strVal(lsecond(cscan->custom_private)), NULL, 10);
	state->query = lthird(cscan->custom_private);
	return (Node *) state;
}

/*
 * shell_name is how ruleutils names the table under search_path pg_catalog.
 */
static char *
shell_name(MyceliumDistTable *table)
{
	return quote_qualified_identifier(table->schema_name, table->rel_name);
}

/*
 * keep_alias gives the statement's target an explicit alias (its own
 * name when it has none), so column references that ruleutils qualifies
 * stay valid once the target is renamed to a shard.
 */
static void
keep_alias(Query *q)
{
	RangeTblEntry *rte = rt_fetch(q->resultRelation, q->rtable);

	if (rte->alias == NULL)
		rte->alias = makeAlias(rte->eref->aliasname, NIL);
}

/*
 * reference_tasks makes one task per node for a statement on a reference
 * table; only the local one's rows count.
 */
static List *
reference_tasks(MyceliumDistTable *table, const char *sql, const char *sql_remote)
{
	List	   *tasks = NIL;
	ListCell   *lc;

	foreach(lc, MyceliumCachedNodes())
	{
		MyceliumNode *node = lfirst(lc);
		RouterTask *task = palloc0(sizeof(RouterTask));

		task->node_name = node->node_name;
		task->is_local = node->is_local;
		task->sql = (char *) (node->is_local ? sql : sql_remote);
		task->counts = node->is_local;
		tasks = lappend(tasks, task);
	}
	return tasks;
}

/*
 * plan_update_tasks prints an UPDATE/DELETE for this execution and makes
 * its tasks: one per chosen shard, or one per node for a reference table.
 */
static List *
plan_update_tasks(RouterModifyState *state, ParamListInfo params)
{
	MyceliumDistTable *table = state->table;
	Query	   *q = (Query *) RouterBindParams(copyObject((Node *) state->query), params);
	char	   *text;
	const char *verb = state->command == CMD_UPDATE ? "UPDATE " : "DELETE FROM ";
	char	   *name = shell_name(table);
	char	   *rest;
	List	   *tasks = NIL;
	Bitmapset  *shards;
	bool		all;
	int			i;

	keep_alias(q);
	text = RouterDeparseQuery(q);
	rest = text + strspn(text, " \n");
	if (strncmp(rest, verb, strlen(verb)) == 0)
		rest += strlen(verb);
	else
		rest = NULL;
	if (rest && strncmp(rest, "ONLY ", 5) == 0)
		rest += 5;
	if (rest == NULL || strncmp(rest, name, strlen(name)) != 0)
		elog(ERROR, "could not print the shard statement: unexpected text \"%s\"", text);
	rest += strlen(name);

	if (table->method == MYCELIUM_DIST_REFERENCE)
	{
		char	   *sql = psprintf("%s%s%s", verb, name, rest);

		return reference_tasks(table, sql, sql);
	}
	shards = RouterPruneShards(table, make_ands_implicit((Expr *) q->jointree->quals),
							   q->resultRelation, &all);
	for (i = 0; i < table->nshards; i++)
	{
		RouterTask *task;

		if (!all && !bms_is_member(i, shards))
			continue;
		task = palloc0(sizeof(RouterTask));
		task->node_name = table->shards[i].node_name;
		task->is_local = table->shards[i].is_local;
		task->shards = psprintf(INT64_FORMAT, table->shards[i].shard_id);
		task->sql = psprintf("%s%s%s", verb, MyceliumShardQualifiedName(table, &table->shards[i]), rest);
		task->counts = true;
		tasks = lappend(tasks, task);
	}
	return tasks;
}

/*
 * insert_template prints the INSERT for this execution with $1..$n in
 * place of one row, and keeps the text around the VALUES list.
 */
static void
insert_template(RouterModifyState *state, ParamListInfo params, bool returning,
				char **head, char **tail)
{
	Query	   *q = copyObject(state->query);
	List	   *tlist = NIL;
	StringInfoData values;
	char	   *text;
	char	   *name = shell_name(state->table);
	char	   *p;
	char	   *v;
	ListCell   *lc;
	int			i;

	q->onConflict = (OnConflictExpr *) RouterBindParams((Node *) q->onConflict, params);
	q->returningList = returning ?
		(List *) RouterBindParams((Node *) q->returningList, params) : NIL;
	initStringInfo(&values);
	appendStringInfoString(&values, "VALUES (");
	for (i = 0; i < state->ncols; i++)
	{
		Param	   *param = makeNode(Param);

		param->paramkind = PARAM_EXTERN;
		param->paramid = i + 1;
		param->paramtype = state->types[i];
		param->paramtypmod = -1;
		param->location = -1;
		tlist = lappend(tlist, makeTargetEntry((Expr *) param, state->attnos[i],
											   get_attname(state->relid, state->attnos[i], false),
											   false));
		appendStringInfo(&values, "%s$%d", i > 0 ? ", " : "", i + 1);
	}
	appendStringInfoChar(&values, ')');
	q->targetList = tlist;
	q->cteList = NIL;
	q->jointree->fromlist = NIL;
	q->jointree->quals = NULL;
	foreach(lc, q->rtable)
	{
		RangeTblEntry *rte = lfirst(lc);

		if (rte->rtekind == RTE_SUBQUERY || rte->rtekind == RTE_VALUES)
		{
			RangeTblEntry *dummy = makeNode(RangeTblEntry);

			dummy->rtekind = RTE_RESULT;
			dummy->eref = makeAlias("*RESULT*", NIL);
			lfirst(lc) = dummy;
		}
	}
	keep_alias(q);
	text = RouterDeparseQuery(q);
	text += strspn(text, " \n");
	p = text + strlen("INSERT INTO ");
	if (strncmp(text, "INSERT INTO ", 12) != 0 || strncmp(p, name, strlen(name)) != 0 ||
		(v = strstr(p, values.data)) == NULL)
		elog(ERROR, "could not print the shard statement: unexpected text \"%s\"", text);
	p += strlen(name);
	*head = pnstrdup(p, v - p);
	*tail = pstrdup(v + values.len);
}

/*
 * begin_insert prepares routing rows: the columns, the statement text,
 * one batch per shard.
 */
static void
begin_insert(RouterModifyState *state, EState *estate, int eflags)
{
	CustomScan *cscan = (CustomScan *) state->css.ss.ps.plan;
	Relation	rel = RelationIdGetRelation(state->relid);
	TupleDesc	desc = RelationGetDescr(rel);
	int			nbatches;
	int			i;

	state->attnos = palloc(sizeof(AttrNumber) * Max(desc->natts, 1));
	state->types = palloc(sizeof(Oid) * Max(desc->natts, 1));
	for (i = 0; i < desc->natts; i++)
	{
		if (TupleDescAttr(desc, i)->attisdropped)
			continue;
		state->attnos[state->ncols] = i + 1;
		state->types[state->ncols] = TupleDescAttr(desc, i)->atttypid;
		state->ncols++;
	}
	RelationClose(rel);
	insert_template(state, estate->es_param_list_info, true, &state->head, &state->tail);
	if (state->table->method == MYCELIUM_DIST_REFERENCE)
	{
		char	   *head2;

		insert_template(state, estate->es_param_list_info, false, &head2, &state->tail_noreturn);
	}
	state->batch_rows = Max(1, Min(BATCH_ROWS, MAX_PARAMS / Max(state->ncols, 1)));
	nbatches = state->table->method == MYCELIUM_DIST_REFERENCE ? 1 : state->table->nshards;
	state->batches = palloc0(sizeof(RowBatch) * Max(nbatches, 1));
	state->batchcxt = AllocSetContextCreate(estate->es_query_cxt, "mycelium insert batch",
											ALLOCSET_DEFAULT_SIZES);
	state->css.custom_ps = list_make1(ExecInitNode(linitial(cscan->custom_plans), estate, eflags));
}

static void
begin_modify(CustomScanState *node, EState *estate, int eflags)
{
	RouterModifyState *state = (RouterModifyState *) node;

	state->table = MyceliumGetDistTable(state->relid);
	if (state->table == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("table \"%s\" is no longer distributed", get_rel_name(state->relid)),
				 errhint("Run the statement again.")));
	state->readslot = ExecInitExtraTupleSlot(estate,
											 node->ss.ss_ScanTupleSlot->tts_tupleDescriptor,
											 &TTSOpsMinimalTuple);
	if (state->command == CMD_INSERT)
		begin_insert(state, estate, eflags);
	else
		state->tasks = plan_update_tasks(state, estate->es_param_list_info);
}

/*
 * batch_tasks makes the tasks that insert a batch: into one shard, or into
 * every node's copy of a reference table.
 */
static List *
batch_tasks(RouterModifyState *state, int b)
{
	RowBatch   *batch = &state->batches[b];
	MyceliumDistTable *table = state->table;
	StringInfoData rows;
	int			nparams = batch->nrows * state->ncols;
	Oid		   *types = palloc(sizeof(Oid) * Max(nparams, 1));
	List	   *tasks;
	ListCell   *lc;
	int			r;
	int			c;

	initStringInfo(&rows);
	for (r = 0; r < batch->nrows; r++)
	{
		appendStringInfoString(&rows, r > 0 ? ", (" : "VALUES (");
		for (c = 0; c < state->ncols; c++)
		{
			appendStringInfo(&rows, "%s$%d", c > 0 ? ", " : "", r * state->ncols + c + 1);
			types[r * state->ncols + c] = state->types[c];
		}
		appendStringInfoChar(&rows, ')');
	}
	if (table->method == MYCELIUM_DIST_REFERENCE)
	{
		char	   *name = shell_name(table);

		tasks = reference_tasks(table,
								psprintf("INSERT INTO %s%s%s%s", name, state->head, rows.data, state->tail),
								psprintf("INSERT INTO %s%s%s%s", name, state->head, rows.data,
										 state->tail_noreturn));
	}
	else
	{
		RouterTask *task = palloc0(sizeof(RouterTask));

		task->node_name = table->shards[b].node_name;
		task->is_local = table->shards[b].is_local;
		task->shards = psprintf(INT64_FORMAT, table->shards[b].shard_id);
		task->sql = psprintf("INSERT INTO %s%s%s%s",
							 MyceliumShardQualifiedName(table, &table->shards[b]),
							 state->head, rows.data, state->tail);
		task->counts = true;
		tasks = list_make1(task);
	}
	foreach(lc, tasks)
	{
		RouterTask *task = lfirst(lc);

		task->nparams = nparams;
		task->types = types;
		task->values = batch->values;
		task->nulls = batch->nulls;
	}
	return tasks;
}

/*
 * flush_batches sends the given batches (all nodes at once) and empties
 * them.
 */
static void
flush_batches(RouterModifyState *state, int first, int last)
{
	List	   *tasks = NIL;
	TupleDesc	desc = state->css.ss.ss_ScanTupleSlot->tts_tupleDescriptor;
	int			b;

	for (b = first; b <= last; b++)
		if (state->batches[b].nrows > 0)
			tasks = list_concat(tasks, batch_tasks(state, b));
	if (tasks == NIL)
		return;
	state->processed += RouterRunModifyTasks(tasks, state->store, desc);
	for (b = first; b <= last; b++)
		state->batches[b].nrows = 0;
	if (first == 0 && last == (state->table->method == MYCELIUM_DIST_REFERENCE ? 0 :
								state->table->nshards - 1))
		MemoryContextReset(state->batchcxt);
}

/*
 * route_row finds the batch of a row: its shard's, with clear errors for
 * rows no shard can take.
 */
static int
route_row(RouterModifyState *state, TupleTableSlot *slot)
{
	MyceliumDistTable *table = state->table;
	AttrNumber	a = table->dist_attno;
	int			idx;

	if (table->method == MYCELIUM_DIST_REFERENCE)
		return 0;
	if (slot->tts_isnull[a - 1])
		ereport(ERROR,
				(errcode(ERRCODE_NOT_NULL_VIOLATION),
				 errmsg("null value in distribution column \"%s\" of table \"%s\"",
						table->dist_column, table->rel_name),
				 errdetail("Every row of a distributed table needs a value in its distribution column to find its shard.")));
	idx = MyceliumShardIndexForValue(table, slot->tts_values[a - 1], false);
	if (idx < 0)
	{
		Oid			outfunc;
		bool		isvarlena;

		getTypeOutputInfo(table->dist_type, &outfunc, &isvarlena);
		ereport(ERROR,
				(errcode(ERRCODE_CHECK_VIOLATION),
				 errmsg("no shard of table \"%s\" covers the value %s of column \"%s\"",
						table->rel_name, OidOutputFunctionCall(outfunc, slot->tts_values[a - 1]),
						table->dist_column),
				 errhint("Add a shard for the value with mycelium.add_range_shard().")));
	}
	return idx;
}

/*
 * add_row copies a source row into its batch, sending the batch when full.
 */
static void
add_row(RouterModifyState *state, TupleTableSlot *slot)
{
	int			b = route_row(state, slot);
	RowBatch   *batch = &state->batches[b];
	MemoryContext old = MemoryContextSwitchTo(state->batchcxt);
	int			c;

	if (batch->values == NULL)
	{
		batch->values = palloc(sizeof(Datum) * state->batch_rows * state->ncols);
		batch->nulls = palloc(sizeof(bool) * state->batch_rows * state->ncols);
	}
	for (c = 0; c < state->ncols; c++)
	{
		int			k = batch->nrows * state->ncols + c;
		AttrNumber	a = state->attnos[c];
		Form_pg_attribute att = TupleDescAttr(slot->tts_tupleDescriptor, a - 1);

		batch->nulls[k] = slot->tts_isnull[a - 1];
		batch->values[k] = batch->nulls[k] ? (Datum) 0 :
			datumCopy(slot->tts_values[a - 1], att->attbyval, att->attlen);
	}
	batch->nrows++;
	MemoryContextSwitchTo(old);
	if (batch->nrows >= state->batch_rows)
		flush_batches(state, b, b);
}

/*
 * run_modify does the whole write on the first call.
 */
static void
run_modify(RouterModifyState *state)
{
	EState	   *estate = state->css.ss.ps.state;
	TupleDesc	desc = state->css.ss.ss_ScanTupleSlot->tts_tupleDescriptor;
	MemoryContext old = MemoryContextSwitchTo(estate->es_query_cxt);

	state->store = tuplestore_begin_heap(false, false, work_mem);
	MemoryContextSwitchTo(old);
	if (state->command == CMD_INSERT)
	{
		PlanState  *source = linitial(state->css.custom_ps);

		for (;;)
		{
			TupleTableSlot *slot = ExecProcNode(source);

			if (TupIsNull(slot))
				break;
			slot_getallattrs(slot);
			add_row(state, slot);
		}
		flush_batches(state, 0, state->table->method == MYCELIUM_DIST_REFERENCE ? 0 :
					  state->table->nshards - 1);
	}
	else
		state->processed = RouterRunModifyTasks(state->tasks, state->store, desc);
	if (state->css.ss.ps.plan->targetlist == NIL)
	{
		tuplestore_end(state->store);
		state->store = NULL;
	}
	estate->es_processed += state->processed;
	state->done = true;
}

static TupleTableSlot *
exec_modify(CustomScanState *node)
{
	RouterModifyState *state = (RouterModifyState *) node;
	TupleTableSlot *slot = node->ss.ss_ScanTupleSlot;
	ExprContext *econtext = node->ss.ps.ps_ExprContext;

	if (!state->done)
		run_modify(state);
	if (state->store == NULL ||
		!tuplestore_gettupleslot(state->store, true, false, state->readslot))
		return NULL;
	ExecCopySlot(slot, state->readslot);
	if (node->ss.ps.ps_ProjInfo == NULL)
		return slot;
	ResetExprContext(econtext);
	econtext->ecxt_scantuple = slot;
	return ExecProject(node->ss.ps.ps_ProjInfo);
}

static void
end_modify(CustomScanState *node)
{
	RouterModifyState *state = (RouterModifyState *) node;

	if (state->css.custom_ps != NIL)
		ExecEndNode(linitial(state->css.custom_ps));
	if (state->store)
		tuplestore_end(state->store);
	state->store = NULL;
}

static void
rescan_modify(CustomScanState *node)
{
	elog(ERROR, "a routed INSERT, UPDATE or DELETE cannot be rescanned");
}

static void
explain_modify(CustomScanState *node, List *ancestors, ExplainState *es)
{
	RouterModifyState *state = (RouterModifyState *) node;
	MyceliumDistTable *table = state->table;

	ExplainPropertyText(table->method == MYCELIUM_DIST_REFERENCE ? "Reference Table" :
						"Distributed Table", shell_name(table), es);
	if (state->command == CMD_INSERT)
	{
		ExplainPropertyText("Routing", table->method == MYCELIUM_DIST_REFERENCE ?
							"every row to every node" :
							psprintf("each row to its shard by column \"%s\"", table->dist_column), es);
		ExplainPropertyText("SQL", psprintf("INSERT INTO <shard>%sVALUES (...)%s",
											state->head, state->tail), es);
	}
	else
		RouterExplainTasks(state->tasks, table->nshards, es);
}
