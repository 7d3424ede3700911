/*-------------------------------------------------------------------------
 *
 * spi.c
 *	  Prepared statements, statements over batches of rows, and result
 *	  accessors for the SQL that the transition engine runs through SPI,
 *	  and the role it runs it as.
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
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
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
 * Return the kept plan in *cache, preparing it on first use with the given
 * cursor options.
 */
static SPIPlanPtr
Prepare(SPIPlanPtr *cache, const char *sql, int nargs, const Oid *argtypes,
		int options)
{
	if (*cache == NULL)
	{
		SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, (Oid *) argtypes,
											  options);

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
 * Return the kept plan in *cache, preparing it on first use.
 */
SPIPlanPtr
PresencePrepare(SPIPlanPtr *cache, const char *sql, int nargs,
				const Oid *argtypes)
{
	return Prepare(cache, sql, nargs, argtypes, 0);
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
 * says so (nulls may be NULL: none).
 */
static Datum
MakeArray(Oid elemtype, const Datum *values, const bool *nulls, int n)
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
 * Execute a statement over n rows, given column by column (columns[c][i];
 * nulls likewise, or NULL: none), and return the number of rows processed.
 *
 * A batch runs the "many" form, which takes one array per column and
 * unnests them.  It always runs its generic plan: left to choose, the plan
 * cache would plan it afresh on every call, since the arrays it sees are
 * never as long as those it assumes.  The generic plan is the one a batch
 * wants anyway (an index probe per row).  A single row runs the "one"
 * form, if there is one, which takes the values themselves: the API calls
 * with one row, and would pay for the unnesting on every call.
 */
int
PresenceExecuteRows(PresenceRowsStatement *stmt, Datum *const *columns,
					bool *const *nulls, int n)
{
	Oid			argtypes[PRESENCE_MAX_COLUMNS];
	Datum		values[PRESENCE_MAX_COLUMNS];
	char		argnulls[PRESENCE_MAX_COLUMNS];

	Assert(stmt->ncolumns <= PRESENCE_MAX_COLUMNS);
	if (n == 1 && stmt->one != NULL)
	{
		for (int c = 0; c < stmt->ncolumns; c++)
		{
			values[c] = columns[c][0];
			argnulls[c] = (nulls != NULL && nulls[c][0]) ? 'n' : ' ';
		}
		return PresenceExecute(Prepare(&stmt->one_plan, stmt->one,
									   stmt->ncolumns, stmt->types, 0),
							   values, argnulls, false, 0);
	}

	for (int c = 0; c < stmt->ncolumns; c++)
	{
		argtypes[c] = get_array_type(stmt->types[c]);
		values[c] = MakeArray(stmt->types[c], columns[c],
							  nulls != NULL ? nulls[c] : NULL, n);
	}
	return PresenceExecute(Prepare(&stmt->many_plan, stmt->many,
								   stmt->ncolumns, argtypes,
								   CURSOR_OPT_GENERIC_PLAN),
						   values, NULL, false, 0);
}

/*
 * Text datums of n C strings.
 */
Datum *
PresenceTextDatums(const char *const *strings, int n)
{
	Datum	   *elems = palloc(sizeof(Datum) * Max(n, 1));

	for (int i = 0; i < n; i++)
		elems[i] = CStringGetTextDatum(strings[i]);
	return elems;
}

/*
 * A text[] of n C strings.
 */
Datum
PresenceTextArray(const char *const *strings, int n)
{
	return MakeArray(TEXTOID, PresenceTextDatums(strings, n), NULL, n);
}

/*
 * Act as role with the search_path pinned to pg_catalog, pg_temp, as a
 * SECURITY DEFINER function owned by role with that SET clause would.  For
 * code that runs outside such a function: the heartbeat, which is not one
 * so that its fast path pays nothing for it, and events published at
 * commit.  An error aborts the (sub)transaction, which restores both.
 */
void
PresenceBecomeRole(Oid role, PresenceRoleSave *save)
{
	GetUserIdAndSecContext(&save->userid, &save->sec_context);
	SetUserIdAndSecContext(role,
						   save->sec_context | SECURITY_LOCAL_USERID_CHANGE);
	save->guc_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp",
							 PGC_USERSET, PGC_S_SESSION, GUC_ACTION_SAVE,
							 true, 0, false);
}

/*
 * Undo PresenceBecomeRole.
 */
void
PresenceRestoreRole(const PresenceRoleSave *save)
{
	AtEOXact_GUC(true, save->guc_nestlevel);
	SetUserIdAndSecContext(save->userid, save->sec_context);
}
