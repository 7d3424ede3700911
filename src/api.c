/*-------------------------------------------------------------------------
 *
 * api.c
 *	  The SQL-callable writes: heartbeat(), disconnect(), set_status() and
 *	  sweep().
 *
 * Each checks its arguments before touching anything, then hands the
 * change to the state machine in state.c, so that every path announces
 * changes the same way.  The heartbeat has a fast path: a heartbeat that
 * would move no deadline by more than the granularity and change no
 * status writes nothing, and reads only the shared-memory session cache
 * (cache.c) when its session is there, or one row when it is not.
 *
 * heartbeat() and heartbeat_many() are not SECURITY DEFINER, so that the
 * fast path costs no more than a plain C function call.  They become their
 * owner, with the search_path pinned, only when they read or write the
 * tables, exactly as the SECURITY DEFINER functions do for their whole
 * run.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "presence.h"
#include "state.h"

PG_FUNCTION_INFO_V1(presence_heartbeat);
PG_FUNCTION_INFO_V1(presence_heartbeat_many);
PG_FUNCTION_INFO_V1(presence_disconnect);
PG_FUNCTION_INFO_V1(presence_set_status);
PG_FUNCTION_INFO_V1(presence_sweep);

/* How much of an unknown status name its error quotes. */
#define PRESENCE_MAX_STATUS_QUOTED	64

static SPIPlanPtr heartbeat_probe_plan = NULL;
static SPIPlanPtr heartbeat_many_probe_plan = NULL;

/*
 * The presence.status value to return from a SQL function that touched the
 * tables.  The function itself may have been dropped meanwhile (see
 * PresenceCheckStatusType), so its return type is looked up without failing.
 */
static Datum
ReturnStatus(FunctionCallInfo fcinfo, PresenceStatus status)
{
	HeapTuple	tup = SearchSysCache1(PROCOID,
									  ObjectIdGetDatum(fcinfo->flinfo->fn_oid));
	Oid			rettype = InvalidOid;

	if (HeapTupleIsValid(tup))
	{
		rettype = ((Form_pg_proc) GETSTRUCT(tup))->prorettype;
		ReleaseSysCache(tup);
	}
	PresenceCheckStatusType(rettype);
	return PresenceStatusDatum(rettype, status);
}

/* What heartbeat() and heartbeat_many() keep in fn_extra. */
typedef struct HeartbeatFnInfo
{
	Oid			owner;			/* the role they act as on the tables */
	Oid			rettype;
} HeartbeatFnInfo;

/*
 * The function's owner and return type, looked up once per call site.
 */
static const HeartbeatFnInfo *
GetFnInfo(FunctionCallInfo fcinfo)
{
	HeartbeatFnInfo *info = (HeartbeatFnInfo *) fcinfo->flinfo->fn_extra;

	if (info == NULL)
	{
		HeapTuple	tup = SearchSysCache1(PROCOID,
										  ObjectIdGetDatum(fcinfo->flinfo->fn_oid));

		if (!HeapTupleIsValid(tup))
			elog(ERROR, "cache lookup failed for function %u",
				 fcinfo->flinfo->fn_oid);
		info = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt,
								  sizeof(HeartbeatFnInfo));
		info->owner = ((Form_pg_proc) GETSTRUCT(tup))->proowner;
		info->rettype = ((Form_pg_proc) GETSTRUCT(tup))->prorettype;
		ReleaseSysCache(tup);
		fcinfo->flinfo->fn_extra = info;
	}
	return info;
}

/*
 * Whether a heartbeat of an existing session, stored with these deadlines,
 * must be written: it is due, it moves a deadline by the granularity or
 * more (never more than a quarter of either timer), or it makes an idle
 * session active, which is a change of status.  A session is idle from its
 * away_at on, and also before that if a sweep already applied its idle
 * deadline (a transaction that started just before the deadline).
 */
static bool
HeartbeatMustWrite(TimestampTz away_at, TimestampTz end_at, TimestampTz due_at,
				   bool active, int64 ttl, int64 away_after, TimestampTz now)
{
	int64		granularity = Min((int64) presence_granularity_ms * 1000,
								  Min(ttl / 4, away_after / 4));

	if (due_at <= now || Abs(now + ttl - end_at) >= granularity)
		return true;
	return active &&
		(away_at <= now || PresenceIdleApplied(away_at, end_at, due_at) ||
		 Abs(now + away_after - away_at) >= granularity);
}

/*
 * The heartbeat fast path.  Returns true, with the announced status in
 * *status, when the heartbeat changes nothing worth writing: the session
 * exists and is not due, keeps its idle/online state, its deadlines would
 * move by less than the granularity and its metadata is unchanged.
 *
 * The probe takes no lock.  A concurrent change to this session can only
 * come from another heartbeat (which itself writes if needed) or from a
 * sweep of a due session, and a due session never takes this path.
 */
static bool
HeartbeatFastPath(const char *user_id, const char *session_id, bool active,
				  Jsonb *meta, int64 ttl, int64 away_after, TimestampTz now,
				  PresenceStatus *status)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID};
	Datum		values[2];
	TimestampTz away_at,
				end_at,
				due_at;
	bool		isnull;

	values[0] = CStringGetTextDatum(user_id);
	values[1] = CStringGetTextDatum(session_id);
	if (PresenceExecute(PresencePrepare(&heartbeat_probe_plan,
										"SELECT s.away_at, s.end_at, s.due_at, s.meta,"
										" u.status::text FROM presence.sessions s"
										" JOIN presence.users u ON u.user_id = s.user_id"
										" WHERE s.user_id = $1 AND s.session_id = $2",
										2, argtypes),
						values, NULL, false, 1) == 0)
		return false;

	PresenceGetTimestamp(0, 1, &away_at);
	PresenceGetTimestamp(0, 2, &end_at);
	PresenceGetTimestamp(0, 3, &due_at);
	if (HeartbeatMustWrite(away_at, end_at, due_at, active, ttl, away_after,
						   now))
		return false;

	if (meta != NULL)
	{
		Datum		stored = PresenceGetDatum(0, 4, &isnull);

		if (isnull ||
			!DatumGetBool(DirectFunctionCall2(jsonb_eq, stored,
											  PointerGetDatum(meta))))
			return false;
	}

	*status = PresenceStatusFromName(PresenceGetText(0, 5));
	return true;
}

/*
 * Create or refresh a session and return the user's visible status.
 */
static PresenceStatus
Heartbeat(const char *user_id, const char *session_id, bool active,
		  Jsonb *meta, int64 ttl, int64 away_after, TimestampTz now)
{
	PresenceUser u;

	PresenceLockUser(user_id, true, false, now, &u);
	PresenceSettleForCall(&u, now);
	PresenceTouchSession(&u, session_id, active, meta, ttl, away_after, now);
	return u.status;
}

/*
 * heartbeat(user_id, session_id, active, meta, ttl, away_after)
 */
Datum
presence_heartbeat(PG_FUNCTION_ARGS)
{
	char	   *user_id = PresenceCheckId(PG_GETARG_DATUM(0), PG_ARGISNULL(0),
										  "user_id");
	char	   *session_id = PresenceCheckId(PG_GETARG_DATUM(1),
											 PG_ARGISNULL(1), "session_id");
	bool		active;
	Jsonb	   *meta;
	int64		ttl;
	int64		away_after;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	const HeartbeatFnInfo *info = GetFnInfo(fcinfo);
	PresenceCachedSession cached;
	PresenceStatus status;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("active must not be null")));
	active = PG_GETARG_BOOL(2);
	meta = PresenceCheckMeta(PG_GETARG_DATUM(3), PG_ARGISNULL(3),
							 PRESENCE_MAX_META_BYTES);
	ttl = PG_ARGISNULL(4) ? (int64) presence_session_ttl_ms * 1000 :
		PresenceCheckInterval(PG_GETARG_DATUM(4), "ttl", false);
	away_after = PG_ARGISNULL(5) ? (int64) presence_away_after_ms * 1000 :
		PresenceCheckInterval(PG_GETARG_DATUM(5), "away_after", true);

	if (meta != NULL ||
		!PresenceCacheLookup(user_id, session_id, &cached) ||
		HeartbeatMustWrite(cached.away_at, cached.end_at, cached.due_at,
						   active, ttl, away_after, now))
	{
		PresenceRoleSave save;

		PresenceBecomeRole(info->owner, &save);
		PresenceConnect();
		if (!HeartbeatFastPath(user_id, session_id, active, meta, ttl,
							   away_after, now, &status))
			status = Heartbeat(user_id, session_id, active, meta, ttl,
							   away_after, now);
		SPI_finish();
		PresenceRestoreRole(&save);
		PresenceCheckStatusType(info->rettype);
	}
	else
		status = cached.status;

	PG_RETURN_DATUM(PresenceStatusDatum(info->rettype, status));
}

/*
 * Check an array argument of heartbeat_many() and return its elements,
 * each checked as an id.
 */
static char **
CheckIdArray(Datum value, bool isnull, const char *what, int *n)
{
	ArrayType  *arr;
	Datum	   *elems;
	bool	   *nulls;
	char	  **ids;
	char	   *element_what = psprintf("an element of %s", what);

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", what)));
	arr = DatumGetArrayTypeP(value);
	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("%s must be a one-dimensional array", what)));
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, n);
	ids = palloc(sizeof(char *) * Max(*n, 1));
	for (int i = 0; i < *n; i++)
		ids[i] = PresenceCheckId(elems[i], nulls[i], element_what);
	return ids;
}

/*
 * heartbeat_many(user_ids, session_ids, active): heartbeats of many
 * sessions at once, for app servers that hold many connections; returns
 * how many of them changed a status.  Sessions in the cache are decided
 * there; one query reads the rest.  Only the heartbeats that must write
 * take the path of heartbeat(), one by one in array order, each with the
 * default timers.
 */
Datum
presence_heartbeat_many(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {TEXTARRAYOID, TEXTARRAYOID};
	int			nusers;
	int			nsessions;
	char	  **user_ids = CheckIdArray(PG_GETARG_DATUM(0), PG_ARGISNULL(0),
										"user_ids", &nusers);
	char	  **session_ids = CheckIdArray(PG_GETARG_DATUM(1), PG_ARGISNULL(1),
										   "session_ids", &nsessions);
	bool		active;
	int64		ttl = (int64) presence_session_ttl_ms * 1000;
	int64		away_after = (int64) presence_away_after_ms * 1000;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	const HeartbeatFnInfo *info = GetFnInfo(fcinfo);
	bool	   *must_write;
	int		   *probe;
	int			nprobe = 0;
	int			nwrite = 0;
	int			changed = 0;
	PresenceRoleSave save;

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("active must not be null")));
	active = PG_GETARG_BOOL(2);
	if (nusers != nsessions)
		ereport(ERROR,
				(errcode(ERRCODE_ARRAY_SUBSCRIPT_ERROR),
				 errmsg("user_ids and session_ids must have the same length"),
				 errdetail("user_ids has %d elements and session_ids has %d.",
						   nusers, nsessions)));

	must_write = palloc0(sizeof(bool) * Max(nusers, 1));
	probe = palloc(sizeof(int) * Max(nusers, 1));
	for (int i = 0; i < nusers; i++)
	{
		PresenceCachedSession cached;

		if (!PresenceCacheLookup(user_ids[i], session_ids[i], &cached))
			probe[nprobe++] = i;
		else if (HeartbeatMustWrite(cached.away_at, cached.end_at,
									cached.due_at, active, ttl, away_after,
									now))
		{
			must_write[i] = true;
			nwrite++;
		}
	}
	if (nprobe == 0 && nwrite == 0)
		PG_RETURN_INT32(0);

	PresenceBecomeRole(info->owner, &save);
	PresenceConnect();
	if (nprobe > 0)
	{
		Datum	   *elems = palloc(sizeof(Datum) * nprobe * 2);
		Datum		values[2];
		int			n;

		for (int j = 0; j < nprobe; j++)
		{
			elems[j] = CStringGetTextDatum(user_ids[probe[j]]);
			elems[nprobe + j] = CStringGetTextDatum(session_ids[probe[j]]);
		}
		values[0] = PointerGetDatum(construct_array(elems, nprobe, TEXTOID,
													-1, false, TYPALIGN_INT));
		values[1] = PointerGetDatum(construct_array(elems + nprobe, nprobe,
													TEXTOID, -1, false,
													TYPALIGN_INT));
		n = PresenceExecute(PresencePrepare(&heartbeat_many_probe_plan,
											"SELECT t.i, s.away_at, s.end_at, s.due_at"
											" FROM unnest($1, $2) WITH ORDINALITY"
											"  AS t(user_id, session_id, i)"
											" LEFT JOIN LATERAL (SELECT x.away_at, x.end_at, x.due_at"
											"  FROM presence.sessions x WHERE x.user_id = t.user_id"
											"  AND x.session_id = t.session_id LIMIT 1) s ON true"
											" ORDER BY t.i",
											2, argtypes),
							values, NULL, false, 0);
		Assert(n == nprobe);
		for (int j = 0; j < n; j++)
		{
			TimestampTz away_at,
						end_at,
						due_at;

			if (!PresenceGetTimestamp(j, 4, &due_at))
				must_write[probe[j]] = true;	/* a new session */
			else
			{
				PresenceGetTimestamp(j, 2, &away_at);
				PresenceGetTimestamp(j, 3, &end_at);
				must_write[probe[j]] = HeartbeatMustWrite(away_at, end_at,
														  due_at, active, ttl,
														  away_after, now);
			}
		}
	}

	for (int i = 0; i < nusers; i++)
	{
		uint64		queued;

		if (!must_write[i])
			continue;
		queued = PresenceEventsQueued();
		Heartbeat(user_ids[i], session_ids[i], active, NULL, ttl, away_after,
				  now);
		if (PresenceEventsQueued() != queued)
			changed++;
	}
	SPI_finish();
	PresenceRestoreRole(&save);

	PG_RETURN_INT32(changed);
}

/*
 * disconnect(user_id, session_id): end one session, or all of them.  An
 * unknown user or session is not an error: a tab may close twice.
 */
Datum
presence_disconnect(PG_FUNCTION_ARGS)
{
	char	   *user_id = PresenceCheckId(PG_GETARG_DATUM(0), PG_ARGISNULL(0),
										  "user_id");
	char	   *session_id = NULL;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	PresenceUser u;
	PresenceStatus status = PRESENCE_OFFLINE;

	if (!PG_ARGISNULL(1))
		session_id = PresenceCheckId(PG_GETARG_DATUM(1), false, "session_id");

	PresenceConnect();
	if (PresenceLockUser(user_id, false, false, now, &u))
	{
		ListCell   *lc;

		PresenceSettleForCall(&u, now);
		foreach(lc, u.sessions)
		{
			PresenceSession *s = (PresenceSession *) lfirst(lc);

			if (s->deleted ||
				(session_id != NULL && strcmp(s->session_id, session_id) != 0))
				continue;
			/* Closing a session is its last sign of life. */
			s->last_seen = now;
			PresenceDeleteSession(&u, s, "disconnect", now);
		}
		PresencePublish(&u, CAUSE_DISCONNECT, 0, now, now, false);
		status = u.status;
	}
	SPI_finish();

	PG_RETURN_DATUM(ReturnStatus(fcinfo, status));
}

/*
 * Parse the status argument of set_status().  Users go offline by leaving,
 * so 'offline' is refused with a pointer to disconnect().
 */
static PresenceManual
ParseManual(Datum value, bool isnull)
{
	char	   *name;

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("status must not be null"),
				 errhint("Use 'auto' to clear a manual status.")));
	name = text_to_cstring(DatumGetTextPP(value));
	if (strcmp(name, "away") == 0)
		return MANUAL_AWAY;
	if (strcmp(name, "busy") == 0 || strcmp(name, "dnd") == 0)
		return MANUAL_BUSY;
	if (strcmp(name, "invisible") == 0)
		return MANUAL_INVISIBLE;
	if (strcmp(name, "auto") == 0 || strcmp(name, "online") == 0)
		return MANUAL_NONE;
	if (strcmp(name, "offline") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("cannot set status \"offline\""),
				 errdetail("A user goes offline when their last session ends."),
				 errhint("Call presence.disconnect() to end sessions, or set 'invisible' to appear offline.")));
	/* Quote no more than the start of a name that may be a megabyte long. */
	if (strlen(name) > PRESENCE_MAX_STATUS_QUOTED)
		name = psprintf("%.*s...",
						pg_mbcliplen(name, strlen(name),
									 PRESENCE_MAX_STATUS_QUOTED), name);
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("unknown status \"%s\"", name),
			 errhint("Use one of 'away', 'busy' (or 'dnd'), 'invisible', or 'auto' (or 'online').")));
	pg_unreachable();
}

/*
 * set_status(user_id, status, message, until): set or clear the manual
 * override and the custom message; with until, both run out then.
 */
Datum
presence_set_status(PG_FUNCTION_ARGS)
{
	char	   *user_id = PresenceCheckId(PG_GETARG_DATUM(0), PG_ARGISNULL(0),
										  "user_id");
	PresenceManual manual = ParseManual(PG_GETARG_DATUM(1), PG_ARGISNULL(1));
	char	   *message = PresenceCheckMessage(PG_GETARG_DATUM(2),
											   PG_ARGISNULL(2));
	bool		has_until = !PG_ARGISNULL(3);
	TimestampTz until = has_until ? PG_GETARG_TIMESTAMPTZ(3) : 0;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	PresenceUser u;

	if (has_until && until <= now)
	{
		/* timestamptz_to_str returns a static buffer: copy the first. */
		char	   *until_str = pstrdup(timestamptz_to_str(until));

		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("until must be in the future"),
				 errdetail("It is %s; the transaction started at %s.",
						   until_str, timestamptz_to_str(now))));
	}
	if (has_until && TIMESTAMP_NOT_FINITE(until))
		has_until = false;		/* 'infinity': no expiry */

	PresenceConnect();
	PresenceLockUser(user_id, true, false, now, &u);
	PresenceSettleForCall(&u, now);
	if (manual == MANUAL_INVISIBLE && u.manual != MANUAL_INVISIBLE)
		PresenceFreezeTimes(&u);
	u.manual = manual;
	u.manual_message = message;
	u.has_manual_until = has_until;
	u.manual_until = until;
	u.dirty = true;
	if (has_until)
		PresenceNoteDeadline(until);
	PresencePublish(&u, CAUSE_MANUAL, 0, now, now, false);
	SPI_finish();

	PG_RETURN_DATUM(ReturnStatus(fcinfo, u.status));
}

/*
 * sweep(as_of): apply every transition due at as_of and return the number
 * of events.  It waits for users locked by other transactions, so that
 * when it returns nothing due at as_of is left.
 */
Datum
presence_sweep(PG_FUNCTION_ARGS)
{
	TimestampTz as_of;
	bool		more;
	int			events = 0;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("as_of must not be null")));
	as_of = PG_GETARG_TIMESTAMPTZ(0);

	do
	{
		events += PresenceSweepBatch(as_of, presence_batch_size, false, &more);
	} while (more);

	PG_RETURN_INT32(events);
}
