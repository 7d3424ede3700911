/*-------------------------------------------------------------------------
 *
 * spi.c
 *	  Prepared statements and result accessors for the SQL that the
 *	  transition engine runs through SPI.
 *
 * Every statement is prepared once per backend and kept; the plan cache
 * re-plans it by name if the extension's tables are dropped and created
 * again.  Callers must be connected to SPI.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "presence.h"

/*
 * Connect to SPI; failing to is an internal error, never the caller's.
 */
void
PresenceConnect(void)
{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
}

/*
 * Return the kept plan in *cache, preparing it on first use.
 */
SPIPlanPtr
PresencePrepare(SPIPlanPtr *cache, const char *sql, int nargs,
				const Oid *argtypes)
{
	if (*cache == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare(sql, nargs, (Oid *) argtypes);

		if (plan == NULL)
			elog(ERROR, "could not prepare \"%s\": %s",
				 sql, SPI_result_code_string(SPI_result));
		if (SPI_keepplan(plan) != 0)
			elog(ERROR, "could not keep plan for \"%s\"", sql);
		*cache = plan;
	}
	return *cache;
}

/*
 * Execute a prepared statement and return the number of rows processed.
 * A negative SPI result is a bug or a broken installation, never user
 * input, so it is an internal error.
 */
int
PresenceExecute(SPIPlanPtr plan, const Datum *values, const char *nulls,
				bool read_only, long count)
{
	int			ret;

	ret = SPI_execute_plan(plan, (Datum *) values, nulls, read_only, count);
	if (ret < 0)
		elog(ERROR, "SPI_execute_plan failed: %s", SPI_result_code_string(ret));
	return (int) SPI_processed;
}

/*
 * Column col (1-based) of result row as a palloc'd string, or NULL.
 */
char *
PresenceGetText(int row, int col)
{
	return SPI_getvalue(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col);
}

/*
 * Column col of result row as a timestamptz; false if it is NULL.
 */
bool
PresenceGetTimestamp(int row, int col, TimestampTz *value)
{
	bool		isnull;
	Datum		d;

	d = SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col,
					  &isnull);
	*value = isnull ? 0 : DatumGetTimestampTz(d);
	return !isnull;
}

/*
 * Column col of result row as a raw Datum, valid until SPI_finish.
 */
Datum
PresenceGetDatum(int row, int col, bool *isnull)
{
	return SPI_getbinval(SPI_tuptable->vals[row], SPI_tuptable->tupdesc, col,
						 isnull);
}

/*
 * A one-dimensional array of n values of elemtype, with NULLs where nulls
 * says so (nulls may be NULL: none): the parameter of a set-wise statement,
 * which takes a batch of rows as one array per column and unnests them.
 */
Datum
PresenceArray(Oid elemtype, const Datum *values, const bool *nulls, int n)
{
	int			dims[1] = {n};
	int			lbs[1] = {1};
	int16		typlen;
	bool		typbyval;
	char		typalign;

	if (n == 0)
		return PointerGetDatum(construct_empty_array(elemtype));
	get_typlenbyvalalign(elemtype, &typlen, &typbyval, &typalign);
	return PointerGetDatum(construct_md_array((Datum *) values, (bool *) nulls,
											  1, dims, lbs, elemtype, typlen,
											  typbyval, typalign));
}

/*
 * A text[] of n C strings, for the statements that take a batch of ids.
 */
Datum
PresenceTextArray(const char *const *strings, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(strings[i]);
	return PresenceArray(TEXTOID, elems, NULL, n);
}
