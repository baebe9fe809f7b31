/*-------------------------------------------------------------------------
 *
 * deparse.c
 *	  Deny-by-default translation of restriction clauses and sort orders
 *	  into SQLite SQL.
 *
 * A clause is sent to SQLite only when SQLite's answer is PostgreSQL's:
 *
 *  - comparisons (= <> < <= > >=) of built-in integer operators on columns
 *	  SQLite stores with INTEGER or NUMERIC affinity, and of float8 operators
 *	  on columns with REAL affinity (affinity makes SQLite compare numbers as
 *	  numbers, as PostgreSQL does after reading them);
 *  - text = and <> under a deterministic collation on a column with TEXT
 *	  affinity and BINARY collation (byte equality is then the same);
 *  - AND, OR, NOT, IS [NOT] NULL, = ANY / <> ALL of a constant array
 *	  (IN / NOT IN), hence BETWEEN and IN lists; SQL's three-valued logic is
 *	  the same in both;
 *  - text [NOT] LIKE a constant pattern on such a text column, as GLOB.
 *
 * Arithmetic is never sent: SQLite turns integer overflow into a REAL and
 * divides integers differently, where PostgreSQL raises an error.  Nor are
 * functions, casts other than binary-compatible relabelling, ILIKE, LIKE
 * as SQLite's LIKE (which ignores case), or any operator that is not built
 * in.  Everything
 * else is evaluated locally.  ORDER BY is sent for integer and float8
 * columns and for text only under the "C" collation, always with explicit
 * NULLS FIRST/LAST.
 *
 * Constants are written as literals (so EXPLAIN shows them); Params and the
 * outer Vars of a parameterized scan become numbered "?N" placeholders
 * bound at execution time.
 *
 * IDENTIFICATION
 *	  src/sqlite/deparse.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "access/htup_details.h"
#include "access/sysattr.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_operator.h"
#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "mb/pg_wchar.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/pg_locale.h"
#include "utils/syscache.h"

#include "sqlite/sqlite_fdw.h"

/*
 * Deparse state: one foreign table (columns unqualified, Vars of other
 * relations become parameters) or the two sides of a join (columns
 * qualified r1. and r2., no parameters).
 */
typedef struct DeparseCtx
{
	RelOptInfo *rels[2];
	int			nrels;
	StringInfo	buf;
	List	  **params_list;
	bool		consts_as_params;	/* write "?" for constants */
} DeparseCtx;

static bool deparse_bool(Node *node, DeparseCtx *ctx);
static void add_param(Node *node, DeparseCtx *ctx);

/*
 * MyceliumSqliteQuoteIdent appends an identifier in SQLite double quotes.
 */
void
MyceliumSqliteQuoteIdent(StringInfo buf, const char *ident)
{
	const char *p;

	appendStringInfoChar(buf, '"');
	for (p = ident; *p; p++)
	{
		if (*p == '"')
			appendStringInfoChar(buf, '"');
		appendStringInfoChar(buf, *p);
	}
	appendStringInfoChar(buf, '"');
}

/*
 * type_class maps a PostgreSQL type to the class of comparisons it may
 * take part in.
 */
static char
type_class(Oid typid)
{
	switch (typid)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
			return COLCLASS_INT;
		case FLOAT8OID:
			return COLCLASS_REAL;
		case TEXTOID:
			return COLCLASS_TEXT;
		default:
			return COLCLASS_NONE;
	}
}

/*
 * MyceliumSqliteTypeClass exports type_class.
 */
char
MyceliumSqliteTypeClass(Oid typid)
{
	return type_class(typid);
}

/*
 * operator_class returns the comparison class of a built-in comparison
 * operator, or COLCLASS_NONE for any other operator; text operators
 * qualify only for = and <> under a deterministic collation.
 */
static char
operator_class(Oid opno, Oid inputcollid, const char **opname)
{
	HeapTuple	tup;
	Form_pg_operator op;
	char		lc,
				rc,
				result = COLCLASS_NONE;
	const char *name;

	if (opno >= FirstGenbkiObjectId)
		return COLCLASS_NONE;
	tup = SearchSysCache1(OPEROID, ObjectIdGetDatum(opno));
	if (!HeapTupleIsValid(tup))
		return COLCLASS_NONE;
	op = (Form_pg_operator) GETSTRUCT(tup);
	name = NameStr(op->oprname);
	lc = type_class(op->oprleft);
	rc = type_class(op->oprright);
	if (lc == rc && lc != COLCLASS_NONE)
	{
		static const char *const cmp[] = {"=", "<>", "<", "<=", ">", ">=", NULL};
		int			i;

		for (i = 0; cmp[i]; i++)
			if (strcmp(name, cmp[i]) == 0)
			{
				*opname = cmp[i];
				result = lc;
			}
		if (result == COLCLASS_TEXT &&
			strcmp(*opname, "=") != 0 && strcmp(*opname, "<>") != 0)
			result = COLCLASS_NONE;
		if (result == COLCLASS_TEXT &&
			(!OidIsValid(inputcollid) || !get_collation_isdeterministic(inputcollid)))
			result = COLCLASS_NONE;
	}
	ReleaseSysCache(tup);
	return result;
}

/*
 * deparse_const appends a constant of a comparison class as a literal.
 */
static bool
deparse_const(Datum value, Oid typid, DeparseCtx *ctx)
{
	StringInfo	buf = ctx->buf;

	if (ctx->consts_as_params)
	{
		StringInfoData scratch;
		DeparseCtx	c = *ctx;
		int16		typlen;
		bool		typbyval;

		initStringInfo(&scratch);
		c.buf = &scratch;
		c.consts_as_params = false;
		if (!deparse_const(value, typid, &c))
			return false;
		if (ctx->params_list == NULL)
			appendStringInfoChar(buf, '?');
		else
		{
			get_typlenbyval(typid, &typlen, &typbyval);
			add_param((Node *) makeConst(typid, -1, InvalidOid, typlen,
										 value, false, typbyval), ctx);
		}
		return true;
	}

	switch (typid)
	{
		case INT2OID:
			appendStringInfo(buf, "%d", (int) DatumGetInt16(value));
			return true;
		case INT4OID:
			appendStringInfo(buf, "%d", DatumGetInt32(value));
			return true;
		case INT8OID:
			if (DatumGetInt64(value) == PG_INT64_MIN)
				appendStringInfoString(buf, "(-9223372036854775807 - 1)");
			else
				appendStringInfo(buf, INT64_FORMAT, DatumGetInt64(value));
			return true;
		case FLOAT8OID:
			{
				double		d = DatumGetFloat8(value);
				char		s[32];

				if (isnan(d))
					return false;
				if (isinf(d))
				{
					appendStringInfoString(buf, d > 0 ? "9e999" : "-9e999");
					return true;
				}
				double_to_shortest_decimal_buf(d, s);
				appendStringInfoString(buf, s);
				if (strpbrk(s, ".e") == NULL)
					appendStringInfoString(buf, ".0");
				return true;
			}
		case TEXTOID:
			{
				char	   *s = TextDatumGetCString(value);
				char	   *u = pg_server_to_any(s, strlen(s), PG_UTF8);
				char	   *p;

				appendStringInfoChar(buf, '\'');
				for (p = u; *p; p++)
				{
					if (*p == '\'')
						appendStringInfoChar(buf, '\'');
					appendStringInfoChar(buf, *p);
				}
				appendStringInfoChar(buf, '\'');
				return true;
			}
		default:
			return false;
	}
}

/*
 * add_param appends a numbered placeholder for an expression computed at
 * execution time, reusing the number of an equal expression.
 */
static void
add_param(Node *node, DeparseCtx *ctx)
{
	ListCell   *lc;
	int			n = 0;

	foreach(lc, *ctx->params_list)
	{
		n++;
		if (equal(lfirst(lc), node))
		{
			appendStringInfo(ctx->buf, "?%d", n);
			return;
		}
	}
	*ctx->params_list = lappend(*ctx->params_list, node);
	appendStringInfo(ctx->buf, "?%d", list_length(*ctx->params_list));
}

/*
 * var_side finds which relation of the context a Var belongs to: its
 * index, or -1.
 */
static int
var_side(Var *var, DeparseCtx *ctx)
{
	int			i;

	if (var->varlevelsup != 0)
		return -1;
	for (i = 0; i < ctx->nrels; i++)
		if (var->varno == ctx->rels[i]->relid)
			return i;
	return -1;
}

/*
 * append_column appends a column of side i, qualified in a join.
 */
static void
append_column(DeparseCtx *ctx, int i, AttrNumber attnum)
{
	MyceliumSqliteRelInfo *fpinfo = ctx->rels[i]->fdw_private;

	if (ctx->nrels > 1)
		appendStringInfo(ctx->buf, "r%d.", i + 1);
	MyceliumSqliteQuoteIdent(ctx->buf, fpinfo->colnames[attnum - 1]);
}

/*
 * deparse_value appends an operand of a comparison of class cls: a column
 * of the foreign table whose class is cls, a constant, a Param or a Var of
 * another relation (a parameterized scan's outer value).
 */
static bool
deparse_value(Node *node, char cls, DeparseCtx *ctx)
{
	if (node == NULL)
		return false;
	if (IsA(node, RelabelType))
		return deparse_value((Node *) ((RelabelType *) node)->arg, cls, ctx);
	if (type_class(exprType(node)) != cls &&
		!(cls == COLCLASS_TEXT && exprType(node) == VARCHAROID))
		return false;
	if (IsA(node, Var))
	{
		Var		   *var = (Var *) node;
		int			side = var_side(var, ctx);
		MyceliumSqliteRelInfo *fpinfo;

		if (var->varlevelsup != 0)
			return false;
		if (side < 0)
		{
			if (ctx->nrels > 1)
				return false;
			add_param(node, ctx);
			return true;
		}
		fpinfo = ctx->rels[side]->fdw_private;
		if (var->varattno <= 0 || var->varattno > fpinfo->natts ||
			fpinfo->colclass[var->varattno - 1] != cls)
			return false;
		append_column(ctx, side, var->varattno);
		return true;
	}
	if (IsA(node, Const))
	{
		Const	   *c = (Const *) node;

		if (c->constisnull)
			return false;
		return deparse_const(c->constvalue, c->consttype, ctx);
	}
	if (IsA(node, Param))
	{
		add_param(node, ctx);
		return true;
	}
	return false;
}

/*
 * deparse_in appends "x IN (...)" or "x NOT IN (...)" for = ANY / <> ALL
 * of a constant array without NULL elements.
 */
static bool
deparse_in(ScalarArrayOpExpr *saop, DeparseCtx *ctx)
{
	const char *opname = NULL;
	char		cls = operator_class(saop->opno, saop->inputcollid, &opname);
	Node	   *arr = lsecond(saop->args);
	Const	   *c;
	ArrayType  *array;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	Datum	   *elems;
	bool	   *nulls;
	int			nelems,
				i;

	if (cls == COLCLASS_NONE || !IsA(arr, Const) || ((Const *) arr)->constisnull)
		return false;
	if (!((saop->useOr && strcmp(opname, "=") == 0) ||
		  (!saop->useOr && strcmp(opname, "<>") == 0)))
		return false;
	c = (Const *) arr;
	array = DatumGetArrayTypeP(c->constvalue);
	get_typlenbyvalalign(ARR_ELEMTYPE(array), &typlen, &typbyval, &typalign);
	deconstruct_array(array, ARR_ELEMTYPE(array), typlen, typbyval, typalign,
					  &elems, &nulls, &nelems);
	/* each element becomes a parameter: stay far below SQLite's limit */
	if (nelems > 1000)
		return false;
	appendStringInfoChar(ctx->buf, '(');
	if (!deparse_value(linitial(saop->args), cls, ctx))
		return false;
	appendStringInfoString(ctx->buf, saop->useOr ? " IN (" : " NOT IN (");
	for (i = 0; i < nelems; i++)
	{
		if (nulls[i])
			return false;
		if (i > 0)
			appendStringInfoString(ctx->buf, ", ");
		if (!deparse_const(elems[i], ARR_ELEMTYPE(array), ctx))
			return false;
	}
	appendStringInfoString(ctx->buf, "))");
	return true;
}

/*
 * append_glob appends a LIKE pattern (escape character backslash) as the
 * quoted GLOB pattern matching the same strings; false for a pattern
 * PostgreSQL would reject (ending with the escape character).
 */
static bool
append_glob(StringInfo buf, const char *like)
{
	const char *p;

	appendStringInfoChar(buf, '\'');
	for (p = like; *p; p++)
	{
		char		c = *p;

		if (c == '%' || c == '_')
		{
			appendStringInfoChar(buf, c == '%' ? '*' : '?');
			continue;
		}
		if (c == '\\')
		{
			if (*++p == '\0')
				return false;
			c = *p;
		}
		if (c == '*' || c == '?' || c == '[')
			appendStringInfo(buf, "[%c]", c);
		else if (c == '\'')
			appendStringInfoString(buf, "''");
		else
			appendStringInfoChar(buf, c);
	}
	appendStringInfoChar(buf, '\'');
	return true;
}

/*
 * deparse_like appends text LIKE / NOT LIKE a constant pattern, on a
 * column of the foreign table, as GLOB: SQLite's LIKE ignores ASCII case,
 * its GLOB matches characters exactly, as PostgreSQL's LIKE does under a
 * deterministic collation.
 */
static bool
deparse_like(OpExpr *op, DeparseCtx *ctx)
{
	char	   *name = get_opname(op->opno);
	Node	   *left = linitial(op->args);
	Const	   *pat = lsecond(op->args);
	bool		negate;
	char	   *like;

	if (op->opno >= FirstGenbkiObjectId || name == NULL ||
		list_length(op->args) != 2)
		return false;
	if (strcmp(name, "~~") == 0)
		negate = false;
	else if (strcmp(name, "!~~") == 0)
		negate = true;
	else
		return false;
	while (IsA(left, RelabelType))
		left = (Node *) ((RelabelType *) left)->arg;
	if (!IsA(left, Var) || var_side((Var *) left, ctx) < 0 ||
		!IsA(pat, Const) || pat->constisnull || pat->consttype != TEXTOID ||
		!OidIsValid(op->inputcollid) ||
		!get_collation_isdeterministic(op->inputcollid))
		return false;
	like = TextDatumGetCString(pat->constvalue);
	like = pg_server_to_any(like, strlen(like), PG_UTF8);
	appendStringInfoString(ctx->buf, negate ? "(NOT (" : "(");
	if (!deparse_value(left, COLCLASS_TEXT, ctx))
		return false;
	appendStringInfoString(ctx->buf, " GLOB ");
	if (!append_glob(ctx->buf, like))
		return false;
	appendStringInfoString(ctx->buf, negate ? "))" : ")");
	return true;
}

/*
 * deparse_bool appends a boolean clause, or returns false if any part of
 * it may not be sent to SQLite.
 */
static bool
deparse_bool(Node *node, DeparseCtx *ctx)
{
	if (node == NULL)
		return false;
	switch (nodeTag(node))
	{
		case T_OpExpr:
			{
				OpExpr	   *op = (OpExpr *) node;
				const char *opname = NULL;
				char		cls;

				if (list_length(op->args) != 2)
					return false;
				cls = operator_class(op->opno, op->inputcollid, &opname);
				if (cls == COLCLASS_NONE)
					return deparse_like(op, ctx);
				appendStringInfoChar(ctx->buf, '(');
				if (!deparse_value(linitial(op->args), cls, ctx))
					return false;
				appendStringInfo(ctx->buf, " %s ", opname);
				if (!deparse_value(lsecond(op->args), cls, ctx))
					return false;
				appendStringInfoChar(ctx->buf, ')');
				return true;
			}
		case T_ScalarArrayOpExpr:
			return deparse_in((ScalarArrayOpExpr *) node, ctx);
		case T_NullTest:
			{
				NullTest   *nt = (NullTest *) node;
				Var		   *var = (Var *) nt->arg;

				if (nt->argisrow || !IsA(var, Var) || var_side(var, ctx) < 0 ||
					var->varattno <= 0)
					return false;
				appendStringInfoChar(ctx->buf, '(');
				append_column(ctx, var_side(var, ctx), var->varattno);
				appendStringInfoString(ctx->buf, nt->nulltesttype == IS_NULL ?
									   " IS NULL)" : " IS NOT NULL)");
				return true;
			}
		case T_BoolExpr:
			{
				BoolExpr   *b = (BoolExpr *) node;
				ListCell   *lc;
				bool		first = true;

				appendStringInfoString(ctx->buf, b->boolop == NOT_EXPR ? "(NOT " : "(");
				foreach(lc, b->args)
				{
					if (!first)
						appendStringInfoString(ctx->buf,
											   b->boolop == AND_EXPR ? " AND " : " OR ");
					first = false;
					if (!deparse_bool(lfirst(lc), ctx))
						return false;
				}
				appendStringInfoChar(ctx->buf, ')');
				return true;
			}
		default:
			return false;
	}
}

/*
 * MyceliumSqliteIsShippable tells whether SQLite can evaluate a clause
 * with PostgreSQL's result.
 */
bool
MyceliumSqliteIsShippable(RelOptInfo *baserel, Expr *expr)
{
	DeparseCtx	ctx;
	StringInfoData buf;
	List	   *params = NIL;

	initStringInfo(&buf);
	ctx.rels[0] = baserel;
	ctx.nrels = 1;
	ctx.buf = &buf;
	ctx.params_list = &params;
	ctx.consts_as_params = false;
	return deparse_bool((Node *) expr, &ctx);
}

/*
 * MyceliumSqliteIsJoinShippable tells whether SQLite can evaluate a clause
 * over the two tables of a join with PostgreSQL's result.
 */
bool
MyceliumSqliteIsJoinShippable(RelOptInfo *outerrel, RelOptInfo *innerrel,
							  Expr *expr)
{
	DeparseCtx	ctx;
	StringInfoData buf;
	List	   *params = NIL;

	initStringInfo(&buf);
	ctx.rels[0] = outerrel;
	ctx.rels[1] = innerrel;
	ctx.nrels = 2;
	ctx.buf = &buf;
	ctx.params_list = &params;
	ctx.consts_as_params = false;
	return deparse_bool((Node *) expr, &ctx);
}

/*
 * append_clauses appends checked clauses joined by AND, after prefix.
 */
static void
append_clauses(DeparseCtx *ctx, List *clauses, const char *prefix)
{
	ListCell   *lc;
	bool		first = true;

	foreach(lc, clauses)
	{
		Expr	   *clause = lfirst(lc);

		if (IsA(clause, RestrictInfo))
			clause = ((RestrictInfo *) clause)->clause;
		appendStringInfoString(ctx->buf, first ? prefix : " AND ");
		first = false;
		if (!deparse_bool((Node *) clause, ctx))
			elog(ERROR, "clause cannot be sent to SQLite");
	}
}

/*
 * MyceliumSqliteDeparseJoin builds the SELECT of an inner join of two
 * foreign tables: the Vars of the scan target list, the join clauses and
 * each side's remote clauses.
 */
void
MyceliumSqliteDeparseJoin(StringInfo buf, RelOptInfo *outerrel,
						  RelOptInfo *innerrel, List *join_conds,
						  List *vars, List **params_list)
{
	DeparseCtx	ctx;
	ListCell   *lc;
	MyceliumSqliteRelInfo *o = outerrel->fdw_private;
	MyceliumSqliteRelInfo *i = innerrel->fdw_private;

	ctx.rels[0] = outerrel;
	ctx.rels[1] = innerrel;
	ctx.nrels = 2;
	ctx.buf = buf;
	ctx.params_list = params_list;
	ctx.consts_as_params = false;
	appendStringInfoString(buf, "SELECT ");
	foreach(lc, vars)
	{
		Var		   *var = lfirst(lc);

		if (foreach_current_index(lc) > 0)
			appendStringInfoString(buf, ", ");
		append_column(&ctx, var_side(var, &ctx), var->varattno);
	}
	if (vars == NIL)
		appendStringInfoString(buf, "NULL");
	appendStringInfoString(buf, " FROM ");
	MyceliumSqliteQuoteIdent(buf, o->table);
	appendStringInfoString(buf, " r1 INNER JOIN ");
	MyceliumSqliteQuoteIdent(buf, i->table);
	appendStringInfoString(buf, " r2");
	append_clauses(&ctx, join_conds, " ON ");
	append_clauses(&ctx, list_concat_copy(o->remote_conds, i->remote_conds),
				   " WHERE ");
}

/*
 * pathkey_column finds the column of the foreign table a pathkey sorts by,
 * if the sort may be done by SQLite (see the file header); 0 if not.
 */
static AttrNumber
pathkey_column(PlannerInfo *root, RelOptInfo *baserel, PathKey *pk)
{
	MyceliumSqliteRelInfo *fpinfo = (MyceliumSqliteRelInfo *) baserel->fdw_private;
	EquivalenceClass *ec = pk->pk_eclass;
	ListCell   *lc;

	if (ec->ec_has_volatile || pk->pk_opfamily >= FirstGenbkiObjectId)
		return 0;
	foreach(lc, ec->ec_members)
	{
		EquivalenceMember *em = (EquivalenceMember *) lfirst(lc);
		Expr	   *e = em->em_expr;
		Var		   *var;
		Oid			sortop;
		char		cls;

		while (IsA(e, RelabelType))
			e = ((RelabelType *) e)->arg;
		if (!IsA(e, Var) || !bms_equal(em->em_relids, baserel->relids))
			continue;
		var = (Var *) e;
		if (var->varno != baserel->relid || var->varattno <= 0 ||
			var->varlevelsup != 0)
			continue;
		cls = fpinfo->colclass[var->varattno - 1];
		if (cls == COLCLASS_NONE || cls != type_class(var->vartype))
			continue;
		if (cls == COLCLASS_TEXT && !lc_collate_is_c(ec->ec_collation))
			continue;
		sortop = get_opfamily_member(pk->pk_opfamily, em->em_datatype,
									 em->em_datatype, pk->pk_strategy);
		if (!OidIsValid(sortop) || sortop >= FirstGenbkiObjectId)
			continue;
		return var->varattno;
	}
	return 0;
}

/*
 * MyceliumSqlitePathkeysShippable tells whether SQLite can produce the
 * rows in the order of every pathkey.
 */
bool
MyceliumSqlitePathkeysShippable(PlannerInfo *root, RelOptInfo *baserel,
								List *pathkeys)
{
	ListCell   *lc;

	foreach(lc, pathkeys)
		if (pathkey_column(root, baserel, lfirst(lc)) == 0)
			return false;
	return pathkeys != NIL;
}

/*
 * MyceliumSqliteAppendWhere appends the WHERE clause of checked remote
 * clauses (RestrictInfos or bare expressions).
 */
void
MyceliumSqliteAppendWhere(StringInfo buf, RelOptInfo *baserel,
						  List *remote_conds, List **params_list,
						  bool consts_as_params)
{
	DeparseCtx	ctx;

	ctx.rels[0] = baserel;
	ctx.nrels = 1;
	ctx.buf = buf;
	ctx.params_list = params_list;
	ctx.consts_as_params = consts_as_params;
	append_clauses(&ctx, remote_conds, " WHERE ");
}

/*
 * MyceliumSqliteDeparseShape builds "SELECT NULL FROM table WHERE ..." with
 * every constant and parameter written "?": the same text for every
 * execution of a query shape, so SQLite's plan of it can be cached.
 */
void
MyceliumSqliteDeparseShape(StringInfo buf, RelOptInfo *baserel,
						   List *remote_conds)
{
	DeparseCtx	ctx;
	List	   *params = NIL;
	MyceliumSqliteRelInfo *fpinfo = baserel->fdw_private;

	ctx.rels[0] = baserel;
	ctx.nrels = 1;
	ctx.buf = buf;
	ctx.params_list = &params;
	ctx.consts_as_params = true;
	appendStringInfoString(buf, "SELECT NULL FROM ");
	MyceliumSqliteQuoteIdent(buf, fpinfo->table);
	append_clauses(&ctx, remote_conds, " WHERE ");
}

/*
 * MyceliumSqliteDeparseSelect builds the SELECT of a scan: rowid first if
 * asked, then the used columns (their attnums in *retrieved_attrs), the
 * remote clauses and the order.  Clauses must have been checked shippable.
 * With consts_as_params, constants become parameters too (appended to
 * *params_list as Consts), so that every execution of a query shape uses
 * the same SQLite statement from the cache.
 */
void
MyceliumSqliteDeparseSelect(StringInfo buf, RelOptInfo *baserel,
							bool with_rowid, List *remote_conds, List *pathkeys,
							List **retrieved_attrs, List **params_list,
							bool consts_as_params)
{
	MyceliumSqliteRelInfo *fpinfo = (MyceliumSqliteRelInfo *) baserel->fdw_private;
	bool		wholerow;
	bool		first = true;
	int			i;
	ListCell   *lc;

	*retrieved_attrs = NIL;

	appendStringInfoString(buf, "SELECT ");
	if (with_rowid)
	{
		appendStringInfoString(buf, "rowid");
		first = false;
	}
	wholerow = bms_is_member(0 - FirstLowInvalidHeapAttributeNumber,
							 fpinfo->attrs_used);
	for (i = 1; i <= fpinfo->natts; i++)
	{
		if (fpinfo->colnames[i - 1] == NULL)
			continue;			/* dropped */
		if (!wholerow &&
			!bms_is_member(i - FirstLowInvalidHeapAttributeNumber,
						   fpinfo->attrs_used))
			continue;
		if (!first)
			appendStringInfoString(buf, ", ");
		first = false;
		MyceliumSqliteQuoteIdent(buf, fpinfo->colnames[i - 1]);
		*retrieved_attrs = lappend_int(*retrieved_attrs, i);
	}
	if (first)
		appendStringInfoString(buf, "NULL");
	appendStringInfoString(buf, " FROM ");
	MyceliumSqliteQuoteIdent(buf, fpinfo->table);

	MyceliumSqliteAppendWhere(buf, baserel, remote_conds, params_list,
							  consts_as_params);

	first = true;
	foreach(lc, pathkeys)
	{
		PathKey    *pk = lfirst(lc);
		AttrNumber	attnum = pathkey_column(NULL, baserel, pk);

		if (attnum == 0)
			elog(ERROR, "sort order cannot be sent to SQLite");
		appendStringInfoString(buf, first ? " ORDER BY " : ", ");
		first = false;
		MyceliumSqliteQuoteIdent(buf, fpinfo->colnames[attnum - 1]);
		appendStringInfo(buf, "%s%s",
						 pk->pk_strategy == BTLessStrategyNumber ? " ASC" : " DESC",
						 pk->pk_nulls_first ? " NULLS FIRST" : " NULLS LAST");
	}
}
