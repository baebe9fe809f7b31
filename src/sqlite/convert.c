/*-------------------------------------------------------------------------
 *
 * convert.c
 *	  Conversion between SQLite values and PostgreSQL datums, driven by the
 *	  foreign column's PostgreSQL type.
 *
 * SQLite stores any value in any column; what a value means is decided
 * here by the PostgreSQL type of the foreign column, strictly: a value that
 * does not fit is an error, never a rounded, truncated or defaulted datum.
 * Every conversion runs under an error context naming the foreign table,
 * the column, the SQLite storage class and the value, so the errors raised
 * by PostgreSQL's own input functions say where the value came from.
 *
 * Text is UTF-8 in SQLite; it is validated (and converted to the database
 * encoding) before it becomes a datum.  Numbers are never passed through a
 * double unless SQLite stored a double (REAL): numeric reads INTEGER values
 * exactly and TEXT values through numeric_in.  Dates and times are read
 * from ISO-8601 text or from Unix epoch seconds (INTEGER or REAL) and are
 * written as ISO-8601 text (timestamptz in UTC with "+00:00").
 *
 * IDENTIFICATION
 *	  src/sqlite/convert.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <float.h>
#include <math.h>

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "parser/parse_coerce.h"
#include "utils/builtins.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/rel.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

#include "sqlite/sqlite_fdw.h"

static void mismatch(MyceliumSqliteColumnConv *conv, int storage) pg_attribute_noreturn();

/* what the error context callback reports */
typedef struct ConvErrorInfo
{
	MyceliumSqliteColumnConv *conv;
	sqlite3_stmt *stmt;
	int			col;
	int			storage;		/* SQLite storage class */
} ConvErrorInfo;

/*
 * storage_name names a SQLite storage class.
 */
static const char *
storage_name(int storage)
{
	switch (storage)
	{
		case SQLITE_INTEGER:
			return "INTEGER";
		case SQLITE_FLOAT:
			return "REAL";
		case SQLITE_TEXT:
			return "TEXT";
		case SQLITE_BLOB:
			return "BLOB";
		default:
			return "NULL";
	}
}

/*
 * append_hex appends up to 32 bytes as a SQLite blob literal.
 */
static void
append_hex(StringInfo buf, const unsigned char *p, int len)
{
	int			i;

	appendStringInfoString(buf, "x'");
	for (i = 0; i < len && i < 32; i++)
		appendStringInfo(buf, "%02x", p[i]);
	appendStringInfoString(buf, len > 32 ? "...'" : "'");
}

/*
 * conv_error_callback names the value being converted.  It must not fail
 * itself: text that is not valid UTF-8 is shown in hex.
 */
static void
conv_error_callback(void *arg)
{
	ConvErrorInfo *info = (ConvErrorInfo *) arg;
	StringInfoData buf;
	int			len;
	const unsigned char *p;

	initStringInfo(&buf);
	switch (info->storage)
	{
		case SQLITE_INTEGER:
			appendStringInfo(&buf, INT64_FORMAT,
							 (int64) sqlite3_column_int64(info->stmt, info->col));
			break;
		case SQLITE_FLOAT:
			appendStringInfo(&buf, "%.17g", sqlite3_column_double(info->stmt, info->col));
			break;
		case SQLITE_TEXT:
			p = sqlite3_column_text(info->stmt, info->col);
			len = sqlite3_column_bytes(info->stmt, info->col);
			if (pg_verify_mbstr(PG_UTF8, (const char *) p, Min(len, 64), true) &&
				GetDatabaseEncoding() == PG_UTF8)
				appendStringInfo(&buf, "'%.*s%s'", Min(len, 64), p,
								 len > 64 ? "..." : "");
			else
				append_hex(&buf, p, len);
			break;
		default:
			p = sqlite3_column_blob(info->stmt, info->col);
			append_hex(&buf, p, sqlite3_column_bytes(info->stmt, info->col));
			break;
	}
	errcontext("column \"%s\" of foreign table \"%s\", SQLite %s value %s",
			   info->conv->colname, info->conv->relname,
			   storage_name(info->storage), buf.data);
}

/*
 * MyceliumSqliteInitConv prepares the conversion of one attribute.
 */
void
MyceliumSqliteInitConv(MyceliumSqliteColumnConv *conv, Relation rel,
					   AttrNumber attnum)
{
	Form_pg_attribute att = TupleDescAttr(RelationGetDescr(rel), attnum - 1);

	MyceliumSqliteInitConvType(conv, att->atttypid, att->atttypmod,
							   RelationGetRelationName(rel),
							   NameStr(att->attname));
}

/*
 * MyceliumSqliteInitConvType prepares the conversion of a value of a type;
 * the names are those the error context reports.
 */
void
MyceliumSqliteInitConvType(MyceliumSqliteColumnConv *conv, Oid typid,
						   int32 typmod, const char *relname,
						   const char *colname)
{
	bool		isvarlena;

	conv->typid = typid;
	conv->typmod = typmod;
	getTypeInputInfo(conv->typid, &conv->typinput, &conv->typioparam);
	fmgr_info(conv->typinput, &conv->inflinfo);
	getTypeOutputInfo(conv->typid, &conv->typoutput, &isvarlena);
	fmgr_info(conv->typoutput, &conv->outflinfo);
	conv->relname = pstrdup(relname);
	conv->colname = pstrdup(colname);
}

/*
 * mismatch raises the error for a storage class a type cannot take.
 */
static void
mismatch(MyceliumSqliteColumnConv *conv, int storage)
{
	ereport(ERROR,
			(errcode(ERRCODE_DATATYPE_MISMATCH),
			 errmsg("cannot convert SQLite %s value to type %s",
					storage_name(storage), format_type_be(conv->typid))));
}

/*
 * value_text returns a value as text in the database encoding: TEXT and
 * BLOB are validated as UTF-8, INTEGER in decimal, REAL in the shortest
 * form that reads back exactly.
 */
static char *
value_text(sqlite3_stmt *stmt, int col, int storage, int *lenp)
{
	char	   *s;
	int			len;

	if (storage == SQLITE_FLOAT)
	{
		s = palloc(32);
		len = double_to_shortest_decimal_buf(sqlite3_column_double(stmt, col), s);
	}
	else if (storage == SQLITE_INTEGER)
	{
		s = psprintf(INT64_FORMAT, (int64) sqlite3_column_int64(stmt, col));
		len = strlen(s);
	}
	else
	{
		const char *p = (storage == SQLITE_BLOB) ?
		(const char *) sqlite3_column_blob(stmt, col) :
		(const char *) sqlite3_column_text(stmt, col);

		len = sqlite3_column_bytes(stmt, col);
		s = pg_any_to_server(p ? p : "", len, PG_UTF8);
		if (s == p || storage == SQLITE_BLOB)
			s = pnstrdup(s, len);
		len = strlen(s);
	}
	*lenp = len;
	return s;
}

/*
 * to_integer reads an int2/int4/int8 value.
 */
static Datum
to_integer(sqlite3_stmt *stmt, int col, int storage,
		   MyceliumSqliteColumnConv *conv)
{
	int64		v;
	int64		min = conv->typid == INT2OID ? PG_INT16_MIN :
	conv->typid == INT4OID ? PG_INT32_MIN : PG_INT64_MIN;
	int64		max = conv->typid == INT2OID ? PG_INT16_MAX :
	conv->typid == INT4OID ? PG_INT32_MAX : PG_INT64_MAX;
	int			len;

	if (storage == SQLITE_INTEGER)
		v = sqlite3_column_int64(stmt, col);
	else if (storage == SQLITE_FLOAT)
	{
		double		d = sqlite3_column_double(stmt, col);

		if (isnan(d) || d != rint(d))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TEXT_REPRESENTATION),
					 errmsg("SQLite REAL value is not an integer")));
		if (!FLOAT8_FITS_IN_INT64(d))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("value out of range for type %s",
							format_type_be(conv->typid))));
		v = (int64) d;
	}
	else if (storage == SQLITE_TEXT)
		return InputFunctionCall(&conv->inflinfo,
								 value_text(stmt, col, storage, &len),
								 conv->typioparam, conv->typmod);
	else
		mismatch(conv, storage);

	if (v < min || v > max)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("value out of range for type %s",
						format_type_be(conv->typid))));
	if (conv->typid == INT2OID)
		return Int16GetDatum((int16) v);
	if (conv->typid == INT4OID)
		return Int32GetDatum((int32) v);
	return Int64GetDatum(v);
}

/*
 * to_float reads a float4/float8 value; float4 overflow and underflow are
 * errors, as in PostgreSQL's float8-to-float4 cast.
 */
static Datum
to_float(sqlite3_stmt *stmt, int col, int storage,
		 MyceliumSqliteColumnConv *conv)
{
	double		d;
	int			len;

	if (storage == SQLITE_INTEGER)
		d = (double) sqlite3_column_int64(stmt, col);
	else if (storage == SQLITE_FLOAT)
		d = sqlite3_column_double(stmt, col);
	else if (storage == SQLITE_TEXT)
		return InputFunctionCall(&conv->inflinfo,
								 value_text(stmt, col, storage, &len),
								 conv->typioparam, conv->typmod);
	else
		mismatch(conv, storage);

	if (conv->typid == FLOAT4OID)
	{
		float		f = (float) d;

		if ((isinf(f) && !isinf(d)) || (f == 0.0f && d != 0.0))
			ereport(ERROR,
					(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
					 errmsg("value out of range for type real")));
		return Float4GetDatum(f);
	}
	return Float8GetDatum(d);
}

/*
 * epoch_to_timestamp converts Unix epoch seconds to a PostgreSQL timestamp
 * (microseconds since 2000-01-01), refusing values out of range.
 */
static Timestamp
epoch_to_timestamp(double secs, MyceliumSqliteColumnConv *conv)
{
	double		us;

	us = rint((secs - ((double) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) *
						SECS_PER_DAY)) * USECS_PER_SEC);
	if (isnan(us) || us < (double) MIN_TIMESTAMP || us >= (double) END_TIMESTAMP)
		ereport(ERROR,
				(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
				 errmsg("Unix epoch value out of range for type %s",
						format_type_be(conv->typid))));
	return (Timestamp) us;
}

/*
 * to_datetime reads a date, timestamp or timestamptz from ISO-8601 text or
 * Unix epoch seconds.  Words PostgreSQL would evaluate at read time
 * ("now", "today", ...) are refused: stored data must not change meaning.
 */
static Datum
to_datetime(sqlite3_stmt *stmt, int col, int storage,
			MyceliumSqliteColumnConv *conv)
{
	Timestamp	ts;
	int			len;

	if (storage == SQLITE_TEXT)
	{
		char	   *s = value_text(stmt, col, storage, &len);
		char	   *p = s;

		while (*p == ' ')
			p++;
		if (isalpha((unsigned char) *p) &&
			pg_strncasecmp(p, "infinity", 8) != 0 &&
			pg_strncasecmp(p, "epoch", 5) != 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_DATETIME_FORMAT),
					 errmsg("invalid input syntax for type %s: \"%s\"",
							format_type_be(conv->typid), s)));
		return InputFunctionCall(&conv->inflinfo, s, conv->typioparam,
								 conv->typmod);
	}
	if (storage == SQLITE_INTEGER)
		ts = epoch_to_timestamp((double) sqlite3_column_int64(stmt, col), conv);
	else if (storage == SQLITE_FLOAT)
		ts = epoch_to_timestamp(sqlite3_column_double(stmt, col), conv);
	else
		mismatch(conv, storage);

	if (conv->typid == DATEOID)
	{
		int64		days = ts / USECS_PER_DAY;

		if (ts < 0 && ts % USECS_PER_DAY != 0)
			days--;
		return DateADTGetDatum((DateADT) days);
	}
	return TimestampGetDatum(ts);
}

/*
 * to_other reads every remaining type: bytea from BLOB or TEXT bytes,
 * uuid from a 16-byte BLOB, numeric exactly, and the rest through the
 * type's input function on the value's text.
 */
static Datum
to_other(sqlite3_stmt *stmt, int col, int storage,
		 MyceliumSqliteColumnConv *conv)
{
	int			len;
	char	   *s;

	switch (conv->typid)
	{
		case BYTEAOID:
			if (storage == SQLITE_BLOB || storage == SQLITE_TEXT)
			{
				const void *p = (storage == SQLITE_BLOB) ?
				sqlite3_column_blob(stmt, col) :
				(const void *) sqlite3_column_text(stmt, col);
				bytea	   *b;

				len = sqlite3_column_bytes(stmt, col);
				b = palloc(VARHDRSZ + len);
				SET_VARSIZE(b, VARHDRSZ + len);
				if (len > 0)
					memcpy(VARDATA(b), p, len);
				return PointerGetDatum(b);
			}
			mismatch(conv, storage);
		case UUIDOID:
			if (storage == SQLITE_BLOB && sqlite3_column_bytes(stmt, col) == UUID_LEN)
			{
				pg_uuid_t  *u = palloc(sizeof(pg_uuid_t));

				memcpy(u->data, sqlite3_column_blob(stmt, col), UUID_LEN);
				return UUIDPGetDatum(u);
			}
			if (storage != SQLITE_TEXT)
				mismatch(conv, storage);
			break;
		case NUMERICOID:
			if (storage == SQLITE_INTEGER && conv->typmod < 0)
				return NumericGetDatum(int64_to_numeric(sqlite3_column_int64(stmt, col)));
			if (storage == SQLITE_BLOB)
				mismatch(conv, storage);
			break;
		case BOOLOID:
			if (storage == SQLITE_INTEGER)
				return BoolGetDatum(sqlite3_column_int64(stmt, col) != 0);
			if (storage != SQLITE_TEXT)
				mismatch(conv, storage);
			break;
		case TEXTOID:
			s = value_text(stmt, col, storage, &len);
			return PointerGetDatum(cstring_to_text_with_len(s, len));
		default:
			if (storage == SQLITE_BLOB && TypeCategory(conv->typid) != TYPCATEGORY_STRING)
				mismatch(conv, storage);
			break;
	}
	s = value_text(stmt, col, storage, &len);
	return InputFunctionCall(&conv->inflinfo, s, conv->typioparam, conv->typmod);
}

/*
 * MyceliumSqliteValueToDatum converts column col of the current row of
 * stmt to the foreign column's type.  The result lives in the current
 * memory context.
 */
Datum
MyceliumSqliteValueToDatum(sqlite3_stmt *stmt, int col,
						   MyceliumSqliteColumnConv *conv, bool *isnull)
{
	int			storage = sqlite3_column_type(stmt, col);
	ConvErrorInfo info;
	ErrorContextCallback errcb;
	Datum		result;

	*isnull = (storage == SQLITE_NULL);
	if (*isnull)
		return (Datum) 0;

	info.conv = conv;
	info.stmt = stmt;
	info.col = col;
	info.storage = storage;
	errcb.callback = conv_error_callback;
	errcb.arg = &info;
	errcb.previous = error_context_stack;
	error_context_stack = &errcb;

	switch (conv->typid)
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
			result = to_integer(stmt, col, storage, conv);
			break;
		case FLOAT4OID:
		case FLOAT8OID:
			result = to_float(stmt, col, storage, conv);
			break;
		case DATEOID:
		case TIMESTAMPOID:
		case TIMESTAMPTZOID:
			result = to_datetime(stmt, col, storage, conv);
			break;
		default:
			result = to_other(stmt, col, storage, conv);
			break;
	}
	error_context_stack = errcb.previous;
	return result;
}

/*
 * bind_text binds a string of the database encoding as UTF-8 text.
 */
static int
bind_text(sqlite3_stmt *stmt, int idx, const char *s, int len)
{
	char	   *u = pg_server_to_any(s, len, PG_UTF8);

	if (u != s)
		len = strlen(u);
	return sqlite3_bind_text(stmt, idx, u, len, SQLITE_TRANSIENT);
}

/*
 * bind_datetime binds a date or timestamp as ISO-8601 text, timestamptz in
 * UTC with an explicit "+00:00" (a form SQLite's date functions read).
 */
static int
bind_datetime(sqlite3_stmt *stmt, int idx, Datum value, Oid typid)
{
	char		buf[MAXDATELEN + 8];
	struct pg_tm tm;
	fsec_t		fsec;

	if (typid == DATEOID)
	{
		DateADT		d = DatumGetDateADT(value);

		if (DATE_NOT_FINITE(d))
			EncodeSpecialDate(d, buf);
		else
		{
			j2date(d + POSTGRES_EPOCH_JDATE, &tm.tm_year, &tm.tm_mon, &tm.tm_mday);
			EncodeDateOnly(&tm, USE_ISO_DATES, buf);
		}
	}
	else
	{
		Timestamp	ts = DatumGetTimestamp(value);

		if (TIMESTAMP_NOT_FINITE(ts))
			EncodeSpecialTimestamp(ts, buf);
		else
		{
			if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
				ereport(ERROR,
						(errcode(ERRCODE_DATETIME_VALUE_OUT_OF_RANGE),
						 errmsg("timestamp out of range")));
			EncodeDateTime(&tm, fsec, false, 0, NULL, USE_ISO_DATES, buf);
			if (typid == TIMESTAMPTZOID)
				strcat(buf, "+00:00");
		}
	}
	return sqlite3_bind_text(stmt, idx, buf, -1, SQLITE_TRANSIENT);
}

/*
 * bind_numeric binds a numeric: an integer that fits int64 as INTEGER, any
 * other value as its exact text (SQLite's column affinity then decides).
 */
static int
bind_numeric(sqlite3_stmt *stmt, int idx, Datum value)
{
	char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out, value));
	char	   *end;
	long long	v;

	if (strpbrk(s, ".eEaIn") == NULL)
	{
		errno = 0;
		v = strtoll(s, &end, 10);
		if (errno == 0 && *end == '\0')
			return sqlite3_bind_int64(stmt, idx, v);
	}
	return sqlite3_bind_text(stmt, idx, s, -1, SQLITE_TRANSIENT);
}

/*
 * MyceliumSqliteBindDatum binds a datum of type typid to parameter idx.
 * NaN is bound as the text 'NaN' (SQLite would store a NULL), which reads
 * back as NaN.
 */
void
MyceliumSqliteBindDatum(sqlite3_stmt *stmt, int idx, Datum value,
						bool isnull, Oid typid, FmgrInfo *outflinfo)
{
	int			rc;
	double		d;

	if (isnull)
		rc = sqlite3_bind_null(stmt, idx);
	else
		switch (typid)
		{
			case INT2OID:
				rc = sqlite3_bind_int64(stmt, idx, DatumGetInt16(value));
				break;
			case INT4OID:
				rc = sqlite3_bind_int64(stmt, idx, DatumGetInt32(value));
				break;
			case INT8OID:
				rc = sqlite3_bind_int64(stmt, idx, DatumGetInt64(value));
				break;
			case BOOLOID:
				rc = sqlite3_bind_int(stmt, idx, DatumGetBool(value) ? 1 : 0);
				break;
			case FLOAT4OID:
			case FLOAT8OID:
				d = typid == FLOAT4OID ? DatumGetFloat4(value) : DatumGetFloat8(value);
				if (isnan(d))
					rc = sqlite3_bind_text(stmt, idx, "NaN", 3, SQLITE_STATIC);
				else
					rc = sqlite3_bind_double(stmt, idx, d);
				break;
			case NUMERICOID:
				rc = bind_numeric(stmt, idx, value);
				break;
			case BYTEAOID:
				rc = sqlite3_bind_blob(stmt, idx, VARDATA_ANY(value),
									   VARSIZE_ANY_EXHDR(value), SQLITE_TRANSIENT);
				break;
			case TEXTOID:
			case VARCHAROID:
			case BPCHAROID:
				rc = bind_text(stmt, idx, VARDATA_ANY(value),
							   VARSIZE_ANY_EXHDR(value));
				break;
			case DATEOID:
			case TIMESTAMPOID:
			case TIMESTAMPTZOID:
				rc = bind_datetime(stmt, idx, value, typid);
				break;
			default:
				{
					char	   *s = OutputFunctionCall(outflinfo, value);

					rc = bind_text(stmt, idx, s, strlen(s));
				}
				break;
		}
	if (rc != SQLITE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_FDW_ERROR),
				 errmsg("could not bind SQLite parameter %d", idx),
				 errdetail_internal("%s", sqlite3_errstr(rc))));
}
