/*-------------------------------------------------------------------------
 *
 * rooms.c
 *	  Presence per place: who is in a room, their sessions' metadata, who
 *	  is typing, and pass-through broadcasts, each announced on the room's
 *	  own NOTIFY channel.
 *
 * A user is in a room while at least one of their sessions is.  The first
 * session to enter announces a join and the last to go a leave; sessions in
 * between are updates, so a second device never makes a user flicker out
 * and back.  A session's rooms and the user's typing flags there end with
 * the session, announced as a leave with the reason the session ended.
 *
 * Rooms follow the same visibility as everything else: an invisible user
 * is absent from every room and room event, exactly as if disconnected.
 * Going invisible is a leave with reason "disconnect", coming back a join,
 * and their typing is not announced at all.
 *
 * Every change runs under the user's row lock, as in state.c, so room
 * changes of one user are serialized with their session changes.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/timestamp.h"

#include "presence.h"
#include "state.h"

#define PRESENCE_MAX_ROOM_BYTES			200
#define PRESENCE_MAX_BROADCAST_BYTES	4096

int			presence_typing_timeout_ms = 5000;
int			presence_meta_interval_ms = 100;
char	   *presence_join_check = NULL;

PG_FUNCTION_INFO_V1(presence_join);
PG_FUNCTION_INFO_V1(presence_leave);
PG_FUNCTION_INFO_V1(presence_set_meta);
PG_FUNCTION_INFO_V1(presence_typing);
PG_FUNCTION_INFO_V1(presence_broadcast);
PG_FUNCTION_INFO_V1(presence_room_channel);

static SPIPlanPtr user_rooms_plan = NULL;
static SPIPlanPtr room_sessions_plan = NULL;
static SPIPlanPtr session_rooms_plan = NULL;
static SPIPlanPtr delete_member_plan = NULL;
static SPIPlanPtr insert_member_plan = NULL;
static SPIPlanPtr update_meta_plan = NULL;
static SPIPlanPtr delete_typing_plan = NULL;
static SPIPlanPtr upsert_typing_plan = NULL;
static SPIPlanPtr typing_plan = NULL;
static SPIPlanPtr due_typing_plan = NULL;
static SPIPlanPtr due_meta_plan = NULL;
static SPIPlanPtr sent_meta_plan = NULL;

/* One session of a user in a room. */
typedef struct RoomSession
{
	char	   *session_id;
	char	   *meta;			/* JSON text, or NULL */
} RoomSession;

/*
 * Check a room name: 1 to 200 bytes, so that its events always fit.
 */
static char *
CheckRoom(Datum value, bool isnull)
{
	text	   *t;
	int			len;

	if (isnull)
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("room must not be null")));
	t = DatumGetTextPP(value);
	len = VARSIZE_ANY_EXHDR(t);
	if (len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("room must not be empty")));
	if (len > PRESENCE_MAX_ROOM_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("room is too long"),
				 errdetail("It is %d bytes long; the limit is %d bytes.",
						   len, PRESENCE_MAX_ROOM_BYTES)));
	return text_to_cstring(t);
}

/*
 * JSON text of a metadata or payload value.
 */
static char *
JsonText(Jsonb *jb)
{
	return jb ? JsonbToCString(NULL, &jb->root, VARSIZE(jb)) : NULL;
}

/*
 * Whether others may see the user at all: invisible users are absent from
 * rooms.
 */
static inline bool
Visible(const PresenceUser *u)
{
	return u->manual != MANUAL_INVISIBLE;
}

/*
 * Queue a room event of a user.
 */
static void
QueueRoomEvent(PresenceEventKind kind, const char *room, const PresenceUser *u,
			   const char *session_id, const char *reason, const char *json,
			   const char *change, bool typing, TimestampTz at)
{
	PresenceEvent ev;

	memset(&ev, 0, sizeof(ev));
	ev.kind = kind;
	ev.room = (char *) room;
	ev.user_id = u->user_id;
	ev.session_id = (char *) session_id;
	ev.status = u->status;
	ev.reason = reason;
	ev.json = (char *) json;
	ev.change = change;
	ev.typing = typing;
	ev.at = at;
	PresenceQueue(&ev);
}

/*
 * Find the users of a batch that are in no room and type nowhere, and mark
 * them no_rooms: for them every rooms query of the state machine would
 * find nothing, so it is skipped.  The caller holds the users' row locks,
 * which join() and typing() take first, so that stays true until it
 * commits.
 */
void
PresenceRoomsFindRoomless(PresenceUser *users, int n)
{
	static PresenceRowsStatement roomed_users = {
		.one = NULL,
		.many = "SELECT i.ord FROM unnest($1) WITH ORDINALITY AS i(user_id, ord)"
			" WHERE EXISTS (SELECT FROM presence.members m"
			"  WHERE m.user_id = i.user_id)"
			" OR i.user_id IN (SELECT t.user_id FROM presence.typing t)",
		.ncolumns = 1, .types = {TEXTOID}
	};
	Datum	   *ids;
	int			rows;

	if (n == 0)
		return;
	for (int i = 0; i < n; i++)
		users[i].no_rooms = true;
	ids = PresenceUserIds(users, n);
	rows = PresenceExecuteRows(&roomed_users, &ids, NULL, n);
	for (int i = 0; i < rows; i++)
		PresenceRowUser(users, i, 1)->no_rooms = false;
}

/*
 * The rooms a user is in (any session), sorted.
 */
List *
PresenceUserRooms(const PresenceUser *u)
{
	static const Oid argtypes[] = {TEXTOID};
	Datum		values[1];
	List	   *rooms = NIL;
	int			n;

	if (u->no_rooms)
		return NIL;
	values[0] = CStringGetTextDatum(u->user_id);
	n = PresenceExecute(PresencePrepare(&user_rooms_plan,
										"SELECT DISTINCT room FROM presence.members"
										" WHERE user_id = $1 ORDER BY room",
										1, argtypes),
						values, NULL, false, 0);
	for (int i = 0; i < n; i++)
		rooms = lappend(rooms, PresenceGetText(i, 1));
	return rooms;
}

/*
 * The sessions of a user in a room, oldest first.
 */
static List *
RoomSessions(const char *room, const char *user_id)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID};
	Datum		values[2];
	List	   *sessions = NIL;
	int			n;

	values[0] = CStringGetTextDatum(room);
	values[1] = CStringGetTextDatum(user_id);
	n = PresenceExecute(PresencePrepare(&room_sessions_plan,
										"SELECT session_id, meta::text FROM presence.members"
										" WHERE room = $1 AND user_id = $2"
										" ORDER BY joined_at, session_id",
										2, argtypes),
						values, NULL, false, 0);
	for (int i = 0; i < n; i++)
	{
		RoomSession *rs = palloc(sizeof(RoomSession));

		rs->session_id = PresenceGetText(i, 1);
		rs->meta = PresenceGetText(i, 2);
		sessions = lappend(sessions, rs);
	}
	return sessions;
}

/*
 * End the user's typing flag in a room at "at", and announce the stop (if
 * the user can be seen): a flag that had run out by then stopped by itself,
 * reason "timeout", at its own deadline; otherwise it stops at "at", with
 * no reason.
 */
static void
StopTyping(PresenceUser *u, const char *room, TimestampTz at)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID};
	Datum		values[2];
	TimestampTz until;
	bool		ran_out;

	values[0] = CStringGetTextDatum(room);
	values[1] = CStringGetTextDatum(u->user_id);
	if (PresenceExecute(PresencePrepare(&delete_typing_plan,
										"DELETE FROM presence.typing"
										" WHERE room = $1 AND user_id = $2 RETURNING until",
										2, argtypes),
						values, NULL, false, 0) == 0)
		return;
	PresenceGetTimestamp(0, 1, &until);
	if (!Visible(u))
		return;
	ran_out = until <= at;
	QueueRoomEvent(EVENT_TYPING, room, u, NULL, ran_out ? "timeout" : NULL,
				   NULL, NULL, false, ran_out ? until : at);
}

/*
 * A user's last session left a room: their typing ends and they leave.
 */
static void
LeaveRoom(PresenceUser *u, const char *room, const char *reason,
		  TimestampTz at)
{
	StopTyping(u, room, at);
	if (Visible(u))
		QueueRoomEvent(EVENT_LEAVE, room, u, NULL, reason, NULL, NULL, false,
					   at);
}

/*
 * Remove one session from a room and announce it: a leave if it was the
 * user's last session there, otherwise an update.
 */
static void
RemoveSession(PresenceUser *u, const char *room, const char *session_id,
			  const char *reason, TimestampTz at)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID, TEXTOID};
	Datum		values[3];

	values[0] = CStringGetTextDatum(room);
	values[1] = CStringGetTextDatum(u->user_id);
	values[2] = CStringGetTextDatum(session_id);
	PresenceExecute(PresencePrepare(&delete_member_plan,
									"DELETE FROM presence.members"
									" WHERE room = $1 AND user_id = $2 AND session_id = $3",
									3, argtypes),
					values, NULL, false, 0);

	if (RoomSessions(room, u->user_id) == NIL)
		LeaveRoom(u, room, reason, at);
	else if (Visible(u))
		QueueRoomEvent(EVENT_UPDATE, room, u, session_id, NULL, NULL, "left",
					   false, at);
}

/*
 * A session is ending (disconnect or timeout): its rooms end with it.
 * Called by state.c before it deletes the session row.
 */
void
PresenceRoomsSessionEnded(PresenceUser *u, const char *session_id,
						  const char *reason, TimestampTz at)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID};
	Datum		values[2];
	List	   *rooms = NIL;
	ListCell   *lc;
	int			n;

	if (u->no_rooms)
		return;
	values[0] = CStringGetTextDatum(u->user_id);
	values[1] = CStringGetTextDatum(session_id);
	n = PresenceExecute(PresencePrepare(&session_rooms_plan,
										"SELECT room FROM presence.members"
										" WHERE user_id = $1 AND session_id = $2 ORDER BY room",
										2, argtypes),
						values, NULL, false, 0);
	for (int i = 0; i < n; i++)
		rooms = lappend(rooms, PresenceGetText(i, 1));
	foreach(lc, rooms)
		RemoveSession(u, lfirst(lc), session_id, reason, at);
}

/*
 * The user's visibility changed: going invisible leaves every room (as a
 * disconnect would); coming back joins them again, as the sessions there
 * would on connecting: a join for the oldest, an update for each other.
 */
void
PresenceRoomsVisibility(PresenceUser *u, bool visible, TimestampTz at)
{
	List	   *rooms = PresenceUserRooms(u);
	ListCell   *lc;

	foreach(lc, rooms)
	{
		const char *room = (const char *) lfirst(lc);

		if (!visible)
		{
			/* The typing flag ends while visible, so its stop is seen. */
			PresenceManual manual = u->manual;

			u->manual = MANUAL_NONE;
			StopTyping(u, room, at);
			QueueRoomEvent(EVENT_LEAVE, room, u, NULL, "disconnect", NULL,
						   NULL, false, at);
			u->manual = manual;
		}
		else
		{
			List	   *sessions = RoomSessions(room, u->user_id);
			ListCell   *sc;

			foreach(sc, sessions)
			{
				RoomSession *rs = (RoomSession *) lfirst(sc);
				bool		first = (sc == list_head(sessions));

				QueueRoomEvent(first ? EVENT_JOIN : EVENT_UPDATE, room, u,
							   rs->session_id, NULL, rs->meta,
							   first ? NULL : "joined", false, at);
			}
		}
	}
}

/*
 * Send the trailing metadata update of a session whose last update was
 * held back, and record it as sent.
 */
static void
SendTrailingMeta(PresenceUser *u, const char *room, const char *session_id,
				 const char *meta, TimestampTz at, TimestampTz sent_at)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID};
	Datum		values[4];

	values[0] = CStringGetTextDatum(room);
	values[1] = CStringGetTextDatum(u->user_id);
	values[2] = CStringGetTextDatum(session_id);
	values[3] = TimestampTzGetDatum(sent_at);
	PresenceExecute(PresencePrepare(&sent_meta_plan,
									"UPDATE presence.members"
									" SET meta_sent_at = $4, meta_due_at = NULL"
									" WHERE room = $1 AND user_id = $2 AND session_id = $3",
									4, argtypes),
					values, NULL, false, 0);
	if (Visible(u))
		QueueRoomEvent(EVENT_UPDATE, room, u, session_id, NULL, meta, "meta",
					   false, at);
}

/*
 * Apply what fell due in the user's rooms by as_of: typing flags that ran
 * out stop (reason "timeout"), and held-back metadata updates go out.
 */
void
PresenceRoomsSettle(PresenceUser *u, TimestampTz as_of)
{
	static const Oid argtypes[] = {TEXTOID, TIMESTAMPTZOID};
	Datum		values[2];
	int			n;
	char	  **rooms;
	TimestampTz *times;
	char	  **sessions;
	char	  **metas;

	if (u->no_rooms)
		return;
	values[0] = CStringGetTextDatum(u->user_id);
	values[1] = TimestampTzGetDatum(as_of);

	n = PresenceExecute(PresencePrepare(&due_typing_plan,
										"SELECT room, until FROM presence.typing"
										" WHERE user_id = $1 AND until <= $2 ORDER BY until, room",
										2, argtypes),
						values, NULL, false, 0);
	rooms = palloc(sizeof(char *) * Max(n, 1));
	times = palloc(sizeof(TimestampTz) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		rooms[i] = PresenceGetText(i, 1);
		PresenceGetTimestamp(i, 2, &times[i]);
	}
	for (int i = 0; i < n; i++)
		StopTyping(u, rooms[i], times[i]);

	n = PresenceExecute(PresencePrepare(&due_meta_plan,
										"SELECT room, session_id, meta::text, meta_due_at"
										" FROM presence.members"
										" WHERE user_id = $1 AND meta_due_at <= $2"
										" ORDER BY meta_due_at, room, session_id",
										2, argtypes),
						values, NULL, false, 0);
	rooms = palloc(sizeof(char *) * Max(n, 1));
	sessions = palloc(sizeof(char *) * Max(n, 1));
	metas = palloc(sizeof(char *) * Max(n, 1));
	times = palloc(sizeof(TimestampTz) * Max(n, 1));
	for (int i = 0; i < n; i++)
	{
		rooms[i] = PresenceGetText(i, 1);
		sessions[i] = PresenceGetText(i, 2);
		metas[i] = PresenceGetText(i, 3);
		PresenceGetTimestamp(i, 4, &times[i]);
	}
	for (int i = 0; i < n; i++)
		SendTrailingMeta(u, rooms[i], sessions[i], metas[i], times[i], as_of);
}

/*
 * Store a session's new metadata in a room and announce it, at most once
 * per presence.meta_interval: an update sooner than that after the last
 * one announced is held back, and the latest value goes out when the
 * interval is over (the worker or sweep() sends it).  Returns false if the
 * session is not in the room.
 */
static bool
StoreMeta(PresenceUser *u, const char *room, const char *session_id,
		  Jsonb *meta, TimestampTz now)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID,
	TIMESTAMPTZOID, INTERVALOID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', ' ', ' ', ' ', ' '};
	Interval	interval;
	TimestampTz due_at;

	memset(&interval, 0, sizeof(interval));
	interval.time = (int64) presence_meta_interval_ms * 1000;

	values[0] = CStringGetTextDatum(room);
	values[1] = CStringGetTextDatum(u->user_id);
	values[2] = CStringGetTextDatum(session_id);
	values[3] = PointerGetDatum(meta);
	if (meta == NULL)
		nulls[3] = 'n';
	values[4] = TimestampTzGetDatum(now);
	values[5] = IntervalPGetDatum(&interval);
	if (PresenceExecute(PresencePrepare(&update_meta_plan,
										"UPDATE presence.members SET meta = $4,"
										" meta_sent_at = CASE WHEN $5 >= meta_sent_at + $6"
										"  THEN $5 ELSE meta_sent_at END,"
										" meta_due_at = CASE WHEN $5 >= meta_sent_at + $6"
										"  THEN NULL ELSE COALESCE(meta_due_at, meta_sent_at + $6) END"
										" WHERE room = $1 AND user_id = $2 AND session_id = $3"
										" RETURNING meta_due_at",
										lengthof(argtypes), argtypes),
						values, nulls, false, 0) == 0)
		return false;

	if (PresenceGetTimestamp(0, 1, &due_at))
		PresenceNoteDeadline(due_at);
	else if (Visible(u))
		QueueRoomEvent(EVENT_UPDATE, room, u, session_id, NULL, JsonText(meta),
					   "meta", false, now);
	return true;
}

/*
 * Call the application's presence.join_check function, if one is set, as
 * the role that called join() rather than as the extension's owner, and
 * refuse the join unless it returns true.
 */
static void
CheckJoinAllowed(const char *room, const char *user_id)
{
	Oid			argtypes[2] = {TEXTOID, TEXTOID};
	Oid			fn;
	Oid			saved_userid;
	int			saved_context;
	FmgrInfo	flinfo;
	volatile Datum result = (Datum) 0;
	volatile bool isnull = true;

	if (presence_join_check == NULL || presence_join_check[0] == '\0')
		return;

	fn = LookupFuncName(PresenceQualifiedNameList(presence_join_check), 2,
						argtypes, true);
	if (!OidIsValid(fn))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("function %s(text, text) named by presence.join_check does not exist",
						presence_join_check)));
	if (get_func_rettype(fn) != BOOLOID)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("function %s named by presence.join_check must return boolean",
						format_procedure(fn))));

	fmgr_info(fn, &flinfo);
	GetUserIdAndSecContext(&saved_userid, &saved_context);
	SetUserIdAndSecContext(GetOuterUserId(),
						   saved_context | SECURITY_LOCAL_USERID_CHANGE);
	PG_TRY();
	{
		LOCAL_FCINFO(fcinfo, 2);

		InitFunctionCallInfoData(*fcinfo, &flinfo, 2, InvalidOid, NULL, NULL);
		fcinfo->args[0].value = CStringGetTextDatum(room);
		fcinfo->args[0].isnull = false;
		fcinfo->args[1].value = CStringGetTextDatum(user_id);
		fcinfo->args[1].isnull = false;
		result = FunctionCallInvoke(fcinfo);
		isnull = fcinfo->isnull;
	}
	PG_FINALLY();
	{
		SetUserIdAndSecContext(saved_userid, saved_context);
	}
	PG_END_TRY();

	if (isnull || !DatumGetBool(result))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("user \"%s\" may not join room \"%s\"", user_id, room),
				 errdetail("%s returned %s.", format_procedure(fn),
						   isnull ? "NULL" : "false")));
}

/*
 * join(room, user_id, session_id, meta): the session enters the room (an
 * active heartbeat of it, creating it if needed); joining again replaces
 * the metadata.
 */
Datum
presence_join(PG_FUNCTION_ARGS)
{
	char	   *room = CheckRoom(PG_GETARG_DATUM(0), PG_ARGISNULL(0));
	char	   *user_id = PresenceCheckId(PG_GETARG_DATUM(1), PG_ARGISNULL(1),
										  "user_id");
	char	   *session_id = PresenceCheckId(PG_GETARG_DATUM(2),
											 PG_ARGISNULL(2), "session_id");
	Jsonb	   *meta = PresenceCheckMeta(PG_GETARG_DATUM(3), PG_ARGISNULL(3),
										 PRESENCE_MAX_META_BYTES);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	PresenceUser u;
	List	   *sessions;
	ListCell   *lc;
	bool		member = false;

	CheckJoinAllowed(room, user_id);

	PresenceConnect();
	PresenceLockUser(user_id, true, false, now, &u);
	PresenceSettleForCall(&u, now);
	PresenceTouchSession(&u, session_id, true, NULL,
						 (int64) presence_session_ttl_ms * 1000,
						 (int64) presence_away_after_ms * 1000, now);

	sessions = RoomSessions(room, user_id);
	foreach(lc, sessions)
		member |= strcmp(((RoomSession *) lfirst(lc))->session_id,
						 session_id) == 0;

	if (member)
		StoreMeta(&u, room, session_id, meta, now);
	else
	{
		static const Oid argtypes[] = {TEXTOID, TEXTOID, TEXTOID, JSONBOID,
		TIMESTAMPTZOID};
		Datum		values[5];
		char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

		values[0] = CStringGetTextDatum(room);
		values[1] = CStringGetTextDatum(user_id);
		values[2] = CStringGetTextDatum(session_id);
		values[3] = PointerGetDatum(meta);
		if (meta == NULL)
			nulls[3] = 'n';
		values[4] = TimestampTzGetDatum(now);
		PresenceExecute(PresencePrepare(&insert_member_plan,
										"INSERT INTO presence.members"
										" (room, user_id, session_id, meta, joined_at, meta_sent_at)"
										" VALUES ($1, $2, $3, $4, $5, $5)",
										5, argtypes),
						values, nulls, false, 0);
		if (Visible(&u))
			QueueRoomEvent(sessions == NIL ? EVENT_JOIN : EVENT_UPDATE, room,
						   &u, session_id, NULL, JsonText(meta),
						   sessions == NIL ? NULL : "joined", false, now);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * leave(room, user_id, session_id): one session, or with NULL all of the
 * user's sessions, leave the room.  Leaving a room one is not in does
 * nothing.
 */
Datum
presence_leave(PG_FUNCTION_ARGS)
{
	char	   *room = CheckRoom(PG_GETARG_DATUM(0), PG_ARGISNULL(0));
	char	   *user_id = PresenceCheckId(PG_GETARG_DATUM(1), PG_ARGISNULL(1),
										  "user_id");
	char	   *session_id = NULL;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	PresenceUser u;

	if (!PG_ARGISNULL(2))
		session_id = PresenceCheckId(PG_GETARG_DATUM(2), false, "session_id");

	PresenceConnect();
	if (PresenceLockUser(user_id, false, false, now, &u))
	{
		List	   *sessions;
		ListCell   *lc;

		PresenceSettleForCall(&u, now);
		sessions = RoomSessions(room, user_id);
		foreach(lc, sessions)
		{
			RoomSession *rs = (RoomSession *) lfirst(lc);

			if (session_id == NULL || strcmp(rs->session_id, session_id) == 0)
				RemoveSession(&u, room, rs->session_id, "leave", now);
		}
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * set_meta(room, user_id, session_id, meta): replace the session's
 * metadata in the room.
 */
Datum
presence_set_meta(PG_FUNCTION_ARGS)
{
	char	   *room = CheckRoom(PG_GETARG_DATUM(0), PG_ARGISNULL(0));
	char	   *user_id = PresenceCheckId(PG_GETARG_DATUM(1), PG_ARGISNULL(1),
										  "user_id");
	char	   *session_id = PresenceCheckId(PG_GETARG_DATUM(2),
											 PG_ARGISNULL(2), "session_id");
	Jsonb	   *meta = PresenceCheckMeta(PG_GETARG_DATUM(3), PG_ARGISNULL(3),
										 PRESENCE_MAX_META_BYTES);
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	PresenceUser u;
	bool		found;

	PresenceConnect();
	found = PresenceLockUser(user_id, false, false, now, &u);
	if (found)
	{
		PresenceSettleForCall(&u, now);
		found = StoreMeta(&u, room, session_id, meta, now);
	}
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("session \"%s\" of user \"%s\" is not in room \"%s\"",
						session_id, user_id, room),
				 errhint("Call presence.join() first.")));
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * typing(room, user_id, is_typing): start, renew or stop the user's typing
 * flag in a room.  It stops by itself presence.typing_timeout after the
 * last renewal; renewing announces nothing new.  An invisible user's
 * typing is not recorded or announced.
 */
Datum
presence_typing(PG_FUNCTION_ARGS)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID, TIMESTAMPTZOID,
	TIMESTAMPTZOID};
	char	   *room = CheckRoom(PG_GETARG_DATUM(0), PG_ARGISNULL(0));
	char	   *user_id = PresenceCheckId(PG_GETARG_DATUM(1), PG_ARGISNULL(1),
										  "user_id");
	bool		is_typing;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	TimestampTz until;
	PresenceUser u;
	Datum		values[4];

	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("is_typing must not be null")));
	is_typing = PG_GETARG_BOOL(2);
	until = TimestampTzPlusMilliseconds(now, presence_typing_timeout_ms);

	PresenceConnect();
	if (PresenceLockUser(user_id, false, false, now, &u))
		PresenceSettleForCall(&u, now);
	else
		u.user_id = NULL;
	if (u.user_id == NULL || RoomSessions(room, user_id) == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("user \"%s\" is not in room \"%s\"", user_id, room),
				 errhint("Call presence.join() first.")));

	if (!is_typing)
		StopTyping(&u, room, now);
	else if (Visible(&u))
	{
		TimestampTz old_until;
		bool		running;

		values[0] = CStringGetTextDatum(room);
		values[1] = CStringGetTextDatum(user_id);
		running = PresenceExecute(PresencePrepare(&typing_plan,
												  "SELECT until FROM presence.typing"
												  " WHERE room = $1 AND user_id = $2",
												  2, argtypes),
								  values, NULL, false, 1) == 1 &&
			PresenceGetTimestamp(0, 1, &old_until) && old_until > now;

		values[2] = TimestampTzGetDatum(now);
		values[3] = TimestampTzGetDatum(until);
		PresenceExecute(PresencePrepare(&upsert_typing_plan,
										"INSERT INTO presence.typing (room, user_id, started_at, until)"
										" VALUES ($1, $2, $3, $4) ON CONFLICT (room, user_id)"
										" DO UPDATE SET until = EXCLUDED.until,"
										" started_at = CASE WHEN presence.typing.until > $3"
										"  THEN presence.typing.started_at ELSE EXCLUDED.started_at END",
										4, argtypes),
						values, NULL, false, 0);
		PresenceNoteDeadline(until);
		if (!running)
			QueueRoomEvent(EVENT_TYPING, room, &u, NULL, NULL, NULL, NULL,
						   true, now);
	}
	SPI_finish();
	PG_RETURN_VOID();
}

/*
 * broadcast(room, payload): a pass-through event to the room's listeners,
 * stored nowhere.
 */
Datum
presence_broadcast(PG_FUNCTION_ARGS)
{
	char	   *room = CheckRoom(PG_GETARG_DATUM(0), PG_ARGISNULL(0));
	Jsonb	   *payload;
	char	   *json;
	PresenceEvent ev;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payload must not be null")));
	payload = PG_GETARG_JSONB_P(1);
	json = JsonText(payload);
	if (strlen(json) > PRESENCE_MAX_BROADCAST_BYTES)
		ereport(ERROR,
				(errcode(ERRCODE_STRING_DATA_RIGHT_TRUNCATION),
				 errmsg("payload is too long"),
				 errdetail("Its JSON text is %zu bytes long; the limit is %d bytes.",
						   strlen(json), PRESENCE_MAX_BROADCAST_BYTES)));

	memset(&ev, 0, sizeof(ev));
	ev.kind = EVENT_BROADCAST;
	ev.room = room;
	ev.json = json;
	ev.at = GetCurrentTransactionStartTimestamp();
	PresenceQueue(&ev);
	PG_RETURN_VOID();
}

/*
 * room_channel(room): the NOTIFY channel a room's events are sent on.
 */
Datum
presence_room_channel(PG_FUNCTION_ARGS)
{
	char	   *room = CheckRoom(PG_GETARG_DATUM(0), PG_ARGISNULL(0));

	PG_RETURN_TEXT_P(cstring_to_text(PresenceRoomChannel(room)));
}
