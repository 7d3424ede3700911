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
 * status reads one row and writes nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/timestamp.h"

#include "presence.h"
#include "state.h"

PG_FUNCTION_INFO_V1(presence_heartbeat);
PG_FUNCTION_INFO_V1(presence_disconnect);
PG_FUNCTION_INFO_V1(presence_set_status);
PG_FUNCTION_INFO_V1(presence_sweep);

static SPIPlanPtr heartbeat_probe_plan = NULL;

/*
 * The presence.status value to return from a SQL function.
 */
static Datum
ReturnStatus(FunctionCallInfo fcinfo, PresenceStatus status)
{
	return PresenceStatusDatum(get_func_rettype(fcinfo->flinfo->fn_oid),
							   status);
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
	int64		granularity;
	bool		isnull;

	values[0] = CStringGetTextDatum(user_id);
	values[1] = CStringGetTextDatum(session_id);
	if (PresenceExecute(PresencePrepare(&heartbeat_probe_plan,
										"SELECT s.away_at, s.end_at, s.due_at, s.meta,"
										" u.status::text FROM presence.sessions s"
										" JOIN presence.users u ON u.user_id = s.user_id"
										" WHERE s.user_id = $1 AND s.session_id = $2",
										2, argtypes),
						values, NULL, true, 1) == 0)
		return false;

	PresenceGetTimestamp(0, 1, &away_at);
	PresenceGetTimestamp(0, 2, &end_at);
	PresenceGetTimestamp(0, 3, &due_at);
	if (due_at <= now)
		return false;

	/* Never skip by more than a quarter of either timer. */
	granularity = Min((int64) presence_granularity_ms * 1000,
					  Min(ttl / 4, away_after / 4));
	if (Abs(now + ttl - end_at) >= granularity)
		return false;
	if (active)
	{
		/* An idle session becoming active is a change of status. */
		if (away_at <= now || Abs(now + away_after - away_at) >= granularity)
			return false;
	}

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

	PresenceConnect();
	if (!HeartbeatFastPath(user_id, session_id, active, meta, ttl, away_after,
						   now, &status))
		status = Heartbeat(user_id, session_id, active, meta, ttl,
						   away_after, now);
	SPI_finish();

	PG_RETURN_DATUM(ReturnStatus(fcinfo, status));
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
