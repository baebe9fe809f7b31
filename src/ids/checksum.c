/*-------------------------------------------------------------------------
 *
 * checksum.c
 *	  mycelium.table_checksum(): an order-independent fingerprint of the
 *	  rows of a table, equal on two nodes exactly when they hold the same
 *	  rows.
 *
 * Each row is encoded column by column (a NULL marker, or the length and
 * the text form from the type's output function), the encoding is hashed
 * with SHA-256, and the first 128 bits of every row's hash are added up
 * modulo 2^128.  Addition is commutative, so row order does not matter, and
 * a duplicate row adds its hash twice, so the result is a checksum of the
 * multiset of rows.  The row count is reported beside the sum.
 *
 * Text forms depend on a few settings (DateStyle, TimeZone, ...); they are
 * pinned for the duration of the call so that two nodes, or two sessions,
 * configured differently still agree.  Rows are read through an SPI cursor
 * in batches, as an ordinary "SELECT *" of the caller would read them:
 * privileges, row-level security and the transaction's snapshot apply, and
 * the table is never held in memory.
 *
 * IDENTIFICATION
 *	  src/ids/checksum.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_class.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "ids/ids.h"

PG_FUNCTION_INFO_V1(mycelium_table_checksum);

/* rows fetched from the cursor at a time */
#define CHECKSUM_BATCH_ROWS 1000

/* running state of one checksum */
typedef struct ChecksumState
{
	uint64		rows;
	uint64		sum_hi;			/* sum of row hashes mod 2^128, high half */
	uint64		sum_lo;			/* low half */
	int			natts;
	FmgrInfo   *out_funcs;		/* per column, filled at the first batch */
	pg_cryptohash_ctx *sha;
	StringInfoData buf;			/* encoding of the current row */
} ChecksumState;

/*
 * Settings that change the text form of values, and the values pinned
 * while a checksum is computed.
 */
static const char *const pinned_settings[][2] = {
	{"DateStyle", "ISO, MDY"},
	{"IntervalStyle", "postgres"},
	{"TimeZone", "UTC"},
	{"extra_float_digits", "1"},
	{"bytea_output", "hex"},
	{"lc_monetary", "C"},
	{"search_path", "pg_catalog, pg_temp"},
};

/*
 * check_relkind accepts what a SELECT can read as a set of rows: tables,
 * partitioned tables, views, materialized views and foreign tables.
 */
static void
check_relkind(Oid relid)
{
	char		relkind = get_rel_relkind(relid);

	switch (relkind)
	{
		case RELKIND_RELATION:
		case RELKIND_PARTITIONED_TABLE:
		case RELKIND_VIEW:
		case RELKIND_MATVIEW:
		case RELKIND_FOREIGN_TABLE:
			return;
		case '\0':
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation with OID %u does not exist", relid)));
			break;
		default:
			ereport(ERROR,
					(errcode(ERRCODE_WRONG_OBJECT_TYPE),
					 errmsg("cannot compute a checksum of \"%s\"", get_rel_name(relid)),
					 errdetail("Only tables, views, materialized views and foreign tables have checksums.")));
	}
}

/*
 * pin_settings sets every pinned setting at a new GUC nest level and
 * returns that level, for AtEOXact_GUC to undo (an error undoes it too).
 */
static int
pin_settings(void)
{
	int			level = NewGUCNestLevel();
	int			i;

	for (i = 0; i < lengthof(pinned_settings); i++)
		(void) set_config_option(pinned_settings[i][0], pinned_settings[i][1],
								 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
								 true, 0, false);
	return level;
}

/*
 * add_row encodes one row, hashes it and adds the hash to the sum.  The
 * encoding is unambiguous: per column, 'N' for NULL, or 'V', the length
 * of the text form as 4 bytes and the text.  Allocates in the current
 * (per-row) memory context.
 */
static void
add_row(ChecksumState *st, HeapTuple tuple, TupleDesc tupdesc)
{
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	uint64		hi = 0;
	uint64		lo = 0;
	int			i;

	resetStringInfo(&st->buf);
	for (i = 0; i < st->natts; i++)
	{
		bool		isnull;
		Datum		value = heap_getattr(tuple, i + 1, tupdesc, &isnull);
		char	   *text;
		uint32		len;

		if (isnull)
		{
			appendStringInfoChar(&st->buf, 'N');
			continue;
		}
		text = OutputFunctionCall(&st->out_funcs[i], value);
		len = pg_hton32((uint32) strlen(text));
		appendStringInfoChar(&st->buf, 'V');
		appendBinaryStringInfo(&st->buf, (char *) &len, sizeof(len));
		appendBinaryStringInfo(&st->buf, text, strlen(text));
	}

	if (pg_cryptohash_init(st->sha) < 0 ||
		pg_cryptohash_update(st->sha, (uint8 *) st->buf.data, st->buf.len) < 0 ||
		pg_cryptohash_final(st->sha, digest, sizeof(digest)) < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not compute a SHA-256 hash"),
				 errdetail_internal("%s", pg_cryptohash_error(st->sha))));

	for (i = 0; i < 8; i++)
	{
		hi = (hi << 8) | digest[i];
		lo = (lo << 8) | digest[i + 8];
	}
	st->sum_lo += lo;
	st->sum_hi += hi + (st->sum_lo < lo ? 1 : 0);	/* carry */
	st->rows++;
}

/*
 * prepare_columns looks up the output function of every column of the
 * cursor's result, once.
 */
static void
prepare_columns(ChecksumState *st, TupleDesc tupdesc, MemoryContext cxt)
{
	int			i;

	st->natts = tupdesc->natts;
	st->out_funcs = MemoryContextAllocZero(cxt, sizeof(FmgrInfo) * Max(st->natts, 1));
	for (i = 0; i < st->natts; i++)
	{
		Oid			func;
		bool		varlena;

		getTypeOutputInfo(TupleDescAttr(tupdesc, i)->atttypid, &func, &varlena);
		fmgr_info_cxt(func, &st->out_funcs[i], cxt);
	}
}

/*
 * scan_rows reads every row of the relation through a cursor, in batches,
 * and adds each to the checksum.  Runs inside SPI; per-row allocations go
 * to a context reset for every row.
 */
static void
scan_rows(ChecksumState *st, Oid relid, MemoryContext cxt)
{
	char	   *query;
	Portal		portal;
	SPIPlanPtr	plan;
	MemoryContext row_cxt;

	query = psprintf("SELECT * FROM %s",
					 quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
												get_rel_name(relid)));
	plan = SPI_prepare(query, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "could not prepare \"%s\": %s", query,
			 SPI_result_code_string(SPI_result));
	portal = SPI_cursor_open(NULL, plan, NULL, NULL, true);
	row_cxt = AllocSetContextCreate(cxt, "mycelium checksum row",
									ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		uint64		i;

		SPI_cursor_fetch(portal, true, CHECKSUM_BATCH_ROWS);
		if (st->out_funcs == NULL)
			prepare_columns(st, SPI_tuptable->tupdesc, cxt);
		for (i = 0; i < SPI_processed; i++)
		{
			MemoryContext old = MemoryContextSwitchTo(row_cxt);

			add_row(st, SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
			MemoryContextSwitchTo(old);
			MemoryContextReset(row_cxt);
		}
		if (SPI_processed == 0)
			break;
		SPI_freetuptable(SPI_tuptable);
		CHECK_FOR_INTERRUPTS();
	}
	SPI_cursor_close(portal);
}

/*
 * mycelium_table_checksum(table_name regclass) returns
 * '<row count>:<32 hex digits>', the row count and the sum of the rows'
 * 128-bit hashes (see the file header).  STRICT: NULL gives NULL.
 */
Datum
mycelium_table_checksum(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	MemoryContext cxt = CurrentMemoryContext;
	ChecksumState st;
	int			level;

	check_relkind(relid);
	memset(&st, 0, sizeof(st));
	initStringInfo(&st.buf);
	/* the hash context is freed by our resource owner, even on error */
	st.sha = pg_cryptohash_create(PG_SHA256);
	if (st.sha == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));

	level = pin_settings();
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	scan_rows(&st, relid, cxt);
	SPI_finish();
	AtEOXact_GUC(true, level);
	pg_cryptohash_free(st.sha);

	PG_RETURN_TEXT_P(cstring_to_text(psprintf(UINT64_FORMAT ":%016" INT64_MODIFIER "x%016" INT64_MODIFIER "x",
											  st.rows, st.sum_hi, st.sum_lo)));
}
