/*-------------------------------------------------------------------------
 *
 * rewrite.c
 *	  Shard versions of a utility statement, by splicing its text.
 *
 * PostgreSQL has no deparser for utility statements, and the expressions
 * inside them (defaults, CHECK constraints, USING clauses, index
 * expressions) are raw parse trees that cannot be printed.  So a shard
 * version of a statement is the user's own text with a few spans replaced:
 * the table's name (found at the RangeVar's location) becomes the shard's
 * qualified name, and the names of indexes and of the constraints that own
 * an index (PRIMARY KEY, UNIQUE, EXCLUDE), which must be unique per schema,
 * get the shard id appended (CHECK constraints keep their name, as in
 * shard/table_ddl.c, which creates shards).  The spans are found with
 * PostgreSQL's own lexer (core_yylex), so quoting, comments and string
 * literals never confuse them.  Every other name in the text resolves on
 * the remote node under the local search_path, which the remote side sets
 * for the statement (MyceliumRemotePreamble).
 *
 * IDENTIFICATION
 *	  src/commands/rewrite.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "parser/gramparse.h"
#include "parser/scanner.h"
#include "parser/scansup.h"
#include "utils/builtins.h"

#include "commands/commands.h"
#include "shard/shard.h"

typedef struct MyceliumToken
{
	int			code;			/* token code (gram.h) or a character */
	int			start;			/* byte offset in the statement text */
	int			end;			/* one past the last byte (spaces trimmed) */
} MyceliumToken;

typedef enum EditKind
{
	EDIT_RELATION,				/* replace by the target relation */
	EDIT_NAME,					/* replace by name (+ shard suffix) */
	EDIT_INSERT_NAME			/* insert before + name (+ suffix) + " " */
} EditKind;

typedef struct MyceliumDdlEdit
{
	EditKind	kind;
	int			start;
	int			end;
	char	   *name;
	bool		per_shard;		/* name gets the shard suffix */
	const char *before;
} MyceliumDdlEdit;

/*
 * tokenize lexes the statement text; token ends are the start of the next
 * token with white space trimmed.
 */
static void
tokenize(MyceliumDdlText *ddl)
{
	core_yyscan_t scanner;
	core_yy_extra_type yyextra;
	core_YYSTYPE yylval;
	YYLTYPE		yylloc;
	int			cap = 64;
	int			i;

	ddl->tokens = palloc(sizeof(MyceliumToken) * cap);
	ddl->ntokens = 0;
	scanner = scanner_init(ddl->text, &yyextra, &ScanKeywords, ScanKeywordTokens);
	for (;;)
	{
		int			tok = core_yylex(&yylval, &yylloc, scanner);

		if (tok == 0)
			break;
		if (ddl->ntokens == cap)
		{
			cap *= 2;
			ddl->tokens = repalloc(ddl->tokens, sizeof(MyceliumToken) * cap);
		}
		ddl->tokens[ddl->ntokens].code = tok;
		ddl->tokens[ddl->ntokens].start = yylloc;
		ddl->ntokens++;
	}
	scanner_finish(scanner);

	for (i = 0; i < ddl->ntokens; i++)
	{
		int			end = (i + 1 < ddl->ntokens) ? ddl->tokens[i + 1].start : ddl->len;

		while (end > ddl->tokens[i].start + 1 &&
			   (scanner_isspace(ddl->text[end - 1]) ||
				(i + 1 == ddl->ntokens && ddl->text[end - 1] == ';')))
			end--;
		ddl->tokens[i].end = end;
	}
}

/*
 * MyceliumDdlTextFor returns the text of the statement being executed
 * (alone, even in a multi-statement query string), lexed.
 */
MyceliumDdlText *
MyceliumDdlTextFor(MyceliumUtilityArgs *args)
{
	MyceliumDdlText *ddl = palloc0(sizeof(MyceliumDdlText));
	int			loc = Max(args->pstmt->stmt_location, 0);
	int			len = args->pstmt->stmt_len;

	if (len <= 0)
		len = strlen(args->queryString) - loc;
	ddl->offset = loc;
	ddl->text = pnstrdup(args->queryString + loc, len);
	ddl->len = strlen(ddl->text);
	tokenize(ddl);
	return ddl;
}

/*
 * MyceliumTokenAt returns the index of the token starting at a parse-node
 * location (an offset in the query string); -1 if there is none.
 */
int
MyceliumTokenAt(MyceliumDdlText *ddl, int location)
{
	int			i;

	for (i = 0; i < ddl->ntokens; i++)
		if (ddl->tokens[i].start == location - ddl->offset)
			return i;
	return -1;
}

int
MyceliumTokenCode(MyceliumDdlText *ddl, int tok)
{
	return (tok >= 0 && tok < ddl->ntokens) ? ddl->tokens[tok].code : 0;
}

int
MyceliumTokenStart(MyceliumDdlText *ddl, int tok)
{
	return tok < ddl->ntokens ? ddl->tokens[tok].start : ddl->len;
}

int
MyceliumTokenEnd(MyceliumDdlText *ddl, int tok)
{
	return ddl->tokens[tok].end;
}

/*
 * MyceliumNameEnd returns the last token of the (possibly qualified) name
 * that begins at token tok: name { '.' name }.
 */
int
MyceliumNameEnd(MyceliumDdlText *ddl, int tok)
{
	while (tok + 2 < ddl->ntokens && ddl->tokens[tok + 1].code == '.')
		tok += 2;
	return tok;
}

/*
 * add_edit inserts an edit, keeping the list sorted by start; overlapping
 * edits are a bug in the caller.
 */
static void
add_edit(MyceliumDdlText *ddl, MyceliumDdlEdit *edit)
{
	ListCell   *lc;
	int			pos = 0;

	foreach(lc, ddl->edits)
	{
		MyceliumDdlEdit *e = lfirst(lc);

		if (e->start > edit->start ||
			(e->start == edit->start && edit->kind == EDIT_INSERT_NAME))
			break;
		if (e->end > edit->start)
			elog(ERROR, "overlapping edits of a utility statement");
		pos++;
	}
	ddl->edits = list_insert_nth(ddl->edits, pos, edit);
}

/*
 * MyceliumEditRelation marks tokens start_tok..end_tok (a table name or a
 * list of them) to be replaced by the target relation.
 */
void
MyceliumEditRelation(MyceliumDdlText *ddl, int start_tok, int end_tok)
{
	MyceliumDdlEdit *e = palloc0(sizeof(MyceliumDdlEdit));

	if (start_tok < 0 || end_tok < start_tok || end_tok >= ddl->ntokens)
		elog(ERROR, "could not find a table name in the statement text");
	e->kind = EDIT_RELATION;
	e->start = ddl->tokens[start_tok].start;
	e->end = ddl->tokens[end_tok].end;
	add_edit(ddl, e);
}

/*
 * MyceliumEditName marks the name at token tok to be rewritten (quoted,
 * with the shard suffix when per_shard).
 */
void
MyceliumEditName(MyceliumDdlText *ddl, int tok, const char *name, bool per_shard)
{
	MyceliumDdlEdit *e = palloc0(sizeof(MyceliumDdlEdit));

	if (tok < 0 || tok >= ddl->ntokens)
		elog(ERROR, "could not find an object name in the statement text");
	e->kind = EDIT_NAME;
	e->start = ddl->tokens[tok].start;
	e->end = ddl->tokens[tok].end;
	e->name = pstrdup(name);
	e->per_shard = per_shard;
	add_edit(ddl, e);
}

/*
 * MyceliumEditInsertName inserts, before token tok, `before` (e.g.
 * "CONSTRAINT ") and the name that the statement left for PostgreSQL to
 * choose, so every node and shard gets a known name.
 */
void
MyceliumEditInsertName(MyceliumDdlText *ddl, int tok, const char *name,
					   const char *before, bool per_shard)
{
	MyceliumDdlEdit *e = palloc0(sizeof(MyceliumDdlEdit));

	if (tok < 0 || tok > ddl->ntokens)
		elog(ERROR, "could not find where to name an object in the statement text");
	e->kind = EDIT_INSERT_NAME;
	e->start = e->end = MyceliumTokenStart(ddl, tok);
	e->name = pstrdup(name);
	e->before = before;
	e->per_shard = per_shard;
	add_edit(ddl, e);
}

/*
 * MyceliumShardObjectName is the name of a shard's copy of an index or
 * constraint: name_<shard id> (MyceliumNameWithSuffix, as when the shard
 * was made).  shard_id 0 means the shell's own object: the name unchanged.
 */
char *
MyceliumShardObjectName(const char *name, int64 shard_id)
{
	if (shard_id == 0)
		return pstrdup(name);
	return MyceliumNameWithSuffix(name, psprintf("_" INT64_FORMAT, shard_id));
}

/*
 * MyceliumApplyEdits returns the statement for one target: relation (text
 * to put where the table's name was) and shard_id (0 for a shell, whose
 * objects keep their names).
 */
char *
MyceliumApplyEdits(MyceliumDdlText *ddl, const char *relation, int64 shard_id)
{
	StringInfoData out;
	int			pos = 0;
	ListCell   *lc;

	initStringInfo(&out);
	foreach(lc, ddl->edits)
	{
		MyceliumDdlEdit *e = lfirst(lc);

		appendBinaryStringInfo(&out, ddl->text + pos, e->start - pos);
		switch (e->kind)
		{
			case EDIT_RELATION:
				appendStringInfoString(&out, relation);
				break;
			case EDIT_NAME:
				appendStringInfoString(&out,
									   quote_identifier(MyceliumShardObjectName(e->name,
																				e->per_shard ? shard_id : 0)));
				break;
			case EDIT_INSERT_NAME:
				appendStringInfo(&out, "%s%s ", e->before,
								 quote_identifier(MyceliumShardObjectName(e->name,
																		  e->per_shard ? shard_id : 0)));
				break;
		}
		pos = e->end;
	}
	appendBinaryStringInfo(&out, ddl->text + pos, ddl->len - pos);
	return out.data;
}
