/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  Argument checks shared by the SQL functions.
 *
 * Every check runs before anything is read or written, so bad input gets a
 * clear error with a fitting SQLSTATE and changes nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "presence.h"

/* Per-call ttl and away_after may not exceed this. */
#define PRESENCE_MAX_INTERVAL_DAYS	365

/*
 * Check a user, session or room id and return it as a C string.  Ids end
 * up in primary keys and event payloads, so they must be present, non-empty
 * and short.
 */
char *
PresenceCheckId(Datum value, bool isnull, const char *what)
{
	text	   *t;
	int			len;

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));

	t = DatumGetTextPP(value);
	len = VARSIZE_ANY_EXHDR(t);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", what)));
	if (len > PRESENCE_MAX_ID_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("%s is too long", what),
				 errdetail("It is %d bytes long; the limit is %d bytes.",
						   len, PRESENCE_MAX_ID_BYTES)));
	return text_to_cstring(t);
}

/*
 * Check a status message; SQL NULL and the empty string both mean none.
 */
char *
PresenceCheckMessage(Datum value, bool isnull)
{
	text	   *t;
	int			nchars;

	if (isnull)
		return NULL;
	t = DatumGetTextPP(value);
	if (VARSIZE_ANY_EXHDR(t) == 0)
		return NULL;
	nchars = pg_mbstrlen_with_len(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	if (nchars > PRESENCE_MAX_MESSAGE_CHARS)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("message is too long"),
				 errdetail("It is %d characters long; the limit is %d characters.",
						   nchars, PRESENCE_MAX_MESSAGE_CHARS)));
	return text_to_cstring(t);
}

/*
 * Check session metadata: a JSON object whose text fits the limit, so that
 * it can always be carried by an event.  SQL NULL means none.
 */
Jsonb *
PresenceCheckMeta(Datum value, bool isnull, int max_bytes)
{
	Jsonb	   *jb;
	char	   *text;
	int			len;

	if (isnull)
		return NULL;
	jb = DatumGetJsonbP(value);
	if (JB_ROOT_IS_SCALAR(jb) || !JB_ROOT_IS_OBJECT(jb))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("meta must be a JSON object"),
				 errdetail("Use SQL NULL for no metadata.")));
	text = JsonbToCString(NULL, &jb->root, VARSIZE(jb));
	len = strlen(text);
	pfree(text);
	if (len > max_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("meta is too long"),
				 errdetail("Its JSON text is %d bytes long; the limit is %d bytes.",
						   len, max_bytes)));
	return jb;
}

/*
 * Check a per-call timer and return it in microseconds.  A month counts as
 * 30 days, as in interval comparison.  The upper limit keeps deadline
 * arithmetic far from the end of the timestamp range.
 */
int64
PresenceCheckInterval(Datum value, const char *what, bool allow_zero)
{
	Interval   *span = DatumGetIntervalP(value);
	int64		days;
	int64		usecs;

	days = (int64) span->month * DAYS_PER_MONTH + span->day;
	if (days > PRESENCE_MAX_INTERVAL_DAYS || days < -PRESENCE_MAX_INTERVAL_DAYS ||
		span->time > PRESENCE_MAX_INTERVAL_DAYS * USECS_PER_DAY ||
		span->time < -PRESENCE_MAX_INTERVAL_DAYS * USECS_PER_DAY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is out of range", what),
				 errdetail("It must be at most %d days.",
						   PRESENCE_MAX_INTERVAL_DAYS)));
	usecs = days * USECS_PER_DAY + span->time;
	if (usecs > PRESENCE_MAX_INTERVAL_DAYS * USECS_PER_DAY)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is out of range", what),
				 errdetail("It must be at most %d days.",
						   PRESENCE_MAX_INTERVAL_DAYS)));
	if (usecs < 0 && allow_zero)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", what),
				 errdetail("The value given was %s.",
						   DatumGetCString(DirectFunctionCall1(interval_out, value)))));
	if (usecs <= 0 && !allow_zero)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be positive", what),
				 errdetail("The value given was %s.",
						   DatumGetCString(DirectFunctionCall1(interval_out, value)))));
	return usecs;
}
