/*-------------------------------------------------------------------------
 *
 * state.c
 *	  The presence state machine: one user's sessions and override in, the
 *	  visible status and its events out.
 *
 * Every change to a user goes through the same steps, whoever makes it (a
 * heartbeat, a disconnect, set_status, sweep() or the worker):
 *
 *	1. lock the user's row (all writers do, so changes to one user are
 *	   serialized; sweeps lock a batch of users in user_id order, the API
 *	   one user at a time, so they can never deadlock);
 *	2. settle: apply every transition that fell due up to "now" (sessions
 *	   going idle or ending, an override expiring), announcing the net
 *	   change once, at the moment it took effect;
 *	3. apply the caller's change to the sessions or the override;
 *	4. publish: derive the visible status and message and, if they differ
 *	   from what was last announced, store them and queue one event.
 *
 * The visible status is derived, never stored independently: no live
 * session -> offline; invisible -> offline; busy -> busy; away -> away;
 * any session not yet idle -> online; otherwise away.
 *
 * Sweeps settle users in batches: one query locks the batch and one loads
 * its sessions, and the writes the state machine decides for the batch's
 * users (session deletes, idle marks, users rows) are recorded as they are
 * decided and carried out together, one set-wise statement per kind, when
 * the batch is done.  The API, with one user, locks, loads and writes at
 * once, through the one-row forms of the same statements.
 *
 * An invisible user must look exactly like one who disconnected when they
 * went invisible: the public columns of the users row (status, message,
 * since, last_active, last_seen) are frozen at that moment and nothing is
 * announced until they become visible again, which is announced as a
 * connect.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/datum.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "presence.h"
#include "state.h"

/* Kinds of timed transition, as a bit mask per moment in settle. */
#define DUE_IDLE		0x01
#define DUE_END			0x02
#define DUE_EXPIRE		0x04

static SPIPlanPtr insert_user_plan = NULL;
static SPIPlanPtr insert_session_plan = NULL;
static SPIPlanPtr update_session_plan = NULL;

#define USER_COLUMNS \
	"user_id, status::text, message, since, last_active, last_seen," \
	" manual, manual_message, manual_until"

/*
 * Lock users' rows and return them (USER_COLUMNS): [0] waits for rows that
 * others hold, [1] skips them.  A batch is locked in user_id order,
 * bytewise, as sweeps sort the ids they settle: two sweeps take their
 * locks in the same order and cannot deadlock, and the users are settled,
 * and their events queued, in that order.
 */
#define LOCK_ONE_USER \
	"SELECT " USER_COLUMNS " FROM presence.users WHERE user_id = $1" \
	" FOR NO KEY UPDATE"
#define LOCK_USERS \
	"SELECT " USER_COLUMNS " FROM presence.users WHERE user_id = ANY ($1)" \
	" ORDER BY user_id COLLATE \"C\" FOR NO KEY UPDATE"

static PresenceRowsStatement lock_users[2] = {
	{.one = LOCK_ONE_USER, .many = LOCK_USERS,
	.ncolumns = 1, .types = {TEXTOID}},
	{.one = LOCK_ONE_USER " SKIP LOCKED", .many = LOCK_USERS " SKIP LOCKED",
	.ncolumns = 1, .types = {TEXTOID}},
};

/* The sessions of users, with the position of their user in the batch. */
static PresenceRowsStatement load_sessions = {
	.one = "SELECT 1::bigint, session_id, started_at, last_seen, last_active,"
		" away_at, end_at, due_at FROM presence.sessions WHERE user_id = $1"
		" ORDER BY session_id",
	.many = "SELECT i.ord, s.session_id, s.started_at, s.last_seen,"
		" s.last_active, s.away_at, s.end_at, s.due_at"
		" FROM unnest($1) WITH ORDINALITY AS i(user_id, ord)"
		" JOIN presence.sessions s ON s.user_id = i.user_id"
		" ORDER BY i.ord, s.session_id",
	.ncolumns = 1, .types = {TEXTOID}
};

/*
 * The writes a batch can defer.  Each is one statement whatever the number
 * of rows; a write made at once is a batch of one row.
 */
typedef enum WriteKind
{
	WRITE_DELETE_SESSION,		/* PresenceDeleteSession */
	WRITE_IDLE_MARK,			/* MarkIdleProcessed */
	WRITE_USER,					/* WriteUser */
	NUM_WRITE_KINDS
} WriteKind;

static PresenceRowsStatement write_statements[NUM_WRITE_KINDS] = {
	[WRITE_DELETE_SESSION] = {
		.one = "DELETE FROM presence.sessions"
			" WHERE user_id = $1 AND session_id = $2",
		.many = "DELETE FROM presence.sessions s"
			" USING unnest($1, $2) AS d(user_id, session_id)"
			" WHERE s.user_id = d.user_id AND s.session_id = d.session_id",
		.ncolumns = 2, .types = {TEXTOID, TEXTOID}
	},
	[WRITE_IDLE_MARK] = {
		.one = "UPDATE presence.sessions SET due_at = $3"
			" WHERE user_id = $1 AND session_id = $2",
		.many = "UPDATE presence.sessions s SET due_at = d.due_at"
			" FROM unnest($1, $2, $3) AS d(user_id, session_id, due_at)"
			" WHERE s.user_id = d.user_id AND s.session_id = d.session_id",
		.ncolumns = 3, .types = {TEXTOID, TEXTOID, TIMESTAMPTZOID}
	},
	[WRITE_USER] = {
		.one = "UPDATE presence.users SET status = $2::presence.status,"
			" message = $3, since = $4, last_active = $5, last_seen = $6,"
			" manual = $7, manual_message = $8, manual_until = $9"
			" WHERE user_id = $1",
		.many = "UPDATE presence.users u"
			" SET status = d.status::presence.status, message = d.message,"
			" since = d.since, last_active = d.last_active,"
			" last_seen = d.last_seen, manual = d.manual,"
			" manual_message = d.manual_message, manual_until = d.manual_until"
			" FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9)"
			" AS d(user_id, status, message, since, last_active, last_seen,"
			" manual, manual_message, manual_until)"
			" WHERE u.user_id = d.user_id",
		.ncolumns = 9,
		.types = {TEXTOID, TEXTOID, TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
			TIMESTAMPTZOID, TEXTOID, TEXTOID, TIMESTAMPTZOID}
	},
};

/* The rows of one kind of write that a batch holds, column by column. */
typedef struct WriteRows
{
	int			n;
	int			size;
	Datum	   *values[PRESENCE_MAX_COLUMNS];
	bool	   *nulls[PRESENCE_MAX_COLUMNS];
} WriteRows;

/*
 * A batch settles each user once, so it never holds two writes of one
 * row, which a set-wise UPDATE would apply in no defined order.
 */
struct PresenceWrites
{
	MemoryContext cxt;			/* holds the rows */
	WriteRows	rows[NUM_WRITE_KINDS];
};

/*
 * Record a row of a kind of write in a batch, copying its values into the
 * batch's memory.
 */
static void
RecordWrite(PresenceWrites *w, WriteKind kind, const Datum *values,
			const bool *nulls)
{
	PresenceRowsStatement *stmt = &write_statements[kind];
	WriteRows  *rows = &w->rows[kind];
	MemoryContext oldcxt = MemoryContextSwitchTo(w->cxt);

	if (rows->n == rows->size)
	{
		rows->size = Max(2 * rows->size, 64);
		for (int c = 0; c < stmt->ncolumns; c++)
		{
			if (rows->values[c] == NULL)
			{
				rows->values[c] = palloc(sizeof(Datum) * rows->size);
				rows->nulls[c] = palloc(sizeof(bool) * rows->size);
			}
			else
			{
				rows->values[c] = repalloc(rows->values[c],
										   sizeof(Datum) * rows->size);
				rows->nulls[c] = repalloc(rows->nulls[c],
										  sizeof(bool) * rows->size);
			}
		}
	}
	for (int c = 0; c < stmt->ncolumns; c++)
	{
		bool		text = (stmt->types[c] == TEXTOID);

		Assert(text || stmt->types[c] == TIMESTAMPTZOID);
		rows->nulls[c][rows->n] = nulls[c];
		rows->values[c][rows->n] = (nulls[c] || !text) ? values[c] :
			datumCopy(values[c], false, -1);
	}
	rows->n++;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Offer a session's stored deadlines and the user's announced status to
 * the session cache.  The caller holds the user's row lock and the values
 * are what its transaction stored or read under that lock, so they hold
 * until it ends; the cache takes them if it commits.
 */
static void
CacheSession(const PresenceUser *u, const PresenceSession *s)
{
	PresenceCachedSession row;

	row.away_at = s->away_at;
	row.end_at = s->end_at;
	row.due_at = s->due_at;
	row.status = u->status;
	PresenceCacheStage(u->user_id, s->session_id, &row);
}

/*
 * Make one write of a user's: record it in the user's batch, whose flush
 * carries it out, or carry it out at once.  Either way the values are
 * taken as they are now.
 */
static void
Write(PresenceUser *u, WriteKind kind, Datum *values, bool *nulls)
{
	Datum	   *columns[PRESENCE_MAX_COLUMNS];
	bool	   *colnulls[PRESENCE_MAX_COLUMNS];

	if (u->writes != NULL)
	{
		RecordWrite(u->writes, kind, values, nulls);
		return;
	}
	for (int c = 0; c < write_statements[kind].ncolumns; c++)
	{
		columns[c] = &values[c];
		colnulls[c] = &nulls[c];
	}
	PresenceExecuteRows(&write_statements[kind], columns, colnulls, 1);
}

/*
 * A batch to record writes in, for users whose writes point to it; it
 * lives in the current memory context.
 */
PresenceWrites *
PresenceWritesCreate(void)
{
	PresenceWrites *w = palloc0(sizeof(PresenceWrites));

	w->cxt = CurrentMemoryContext;
	return w;
}

/*
 * Carry out the writes recorded in a batch, one statement per kind, and
 * empty it.
 */
void
PresenceWritesFlush(PresenceWrites *w)
{
	for (int k = 0; k < NUM_WRITE_KINDS; k++)
	{
		WriteRows  *rows = &w->rows[k];

		if (rows->n == 0)
			continue;
		PresenceExecuteRows(&write_statements[k], rows->values, rows->nulls,
							rows->n);
		rows->n = 0;
	}
}

/*
 * Fill *u from a row of the last SPI result (USER_COLUMNS).
 */
static void
ReadUserRow(int row, PresenceUser *u)
{
	memset(u, 0, sizeof(PresenceUser));
	u->user_id = PresenceGetText(row, 1);
	u->status = PresenceStatusFromName(PresenceGetText(row, 2));
	u->message = PresenceGetText(row, 3);
	PresenceGetTimestamp(row, 4, &u->since);
	u->has_last_active = PresenceGetTimestamp(row, 5, &u->last_active);
	u->has_last_seen = PresenceGetTimestamp(row, 6, &u->last_seen);
	u->manual = PresenceManualFromName(PresenceGetText(row, 7));
	u->manual_message = PresenceGetText(row, 8);
	u->has_manual_until = PresenceGetTimestamp(row, 9, &u->manual_until);
}

/*
 * Text datums of the ids of n users, the column of the statements that
 * take a batch of users and return each row's position in it.
 */
Datum *
PresenceUserIds(const PresenceUser *users, int n)
{
	const char **ids = palloc(sizeof(char *) * Max(n, 1));

	for (int i = 0; i < n; i++)
		ids[i] = users[i].user_id;
	return PresenceTextDatums(ids, n);
}

/*
 * The user a result row is about, by its position (column col, 1-based)
 * in the batch.
 */
PresenceUser *
PresenceRowUser(PresenceUser *users, int row, int col)
{
	bool		isnull;

	return &users[DatumGetInt64(PresenceGetDatum(row, col, &isnull)) - 1];
}

/*
 * Load the sessions of n locked users into their u->sessions, with one
 * query.  The caller holds the users' row locks, which every session
 * writer takes first, so the sessions cannot change underneath.
 */
static void
LoadSessions(PresenceUser *users, int n)
{
	Datum	   *ids = PresenceUserIds(users, n);
	int			rows = PresenceExecuteRows(&load_sessions, &ids, NULL, n);

	for (int i = 0; i < rows; i++)
	{
		PresenceSession *s = palloc0(sizeof(PresenceSession));
		PresenceUser *u = PresenceRowUser(users, i, 1);

		s->session_id = PresenceGetText(i, 2);
		PresenceGetTimestamp(i, 3, &s->started_at);
		PresenceGetTimestamp(i, 4, &s->last_seen);
		s->has_last_active = PresenceGetTimestamp(i, 5, &s->last_active);
		PresenceGetTimestamp(i, 6, &s->away_at);
		PresenceGetTimestamp(i, 7, &s->end_at);
		PresenceGetTimestamp(i, 8, &s->due_at);
		u->sessions = lappend(u->sessions, s);
		CacheSession(u, s);
	}
}

/*
 * Lock the rows of a batch of users and load their state into users[],
 * which has room for n; returns how many were locked, filled in from the
 * start in user_id order.  Users without a row are left out, and so, with
 * skip_locked (the worker), are users whose row another transaction holds,
 * to be retried later, so the worker never waits behind an application.
 */
int
PresenceLockUsers(const char *const *user_ids, int n, bool skip_locked,
				  PresenceUser *users)
{
	Datum	   *ids;
	int			locked;

	if (n == 0)
		return 0;
	ids = PresenceTextDatums(user_ids, n);
	locked = PresenceExecuteRows(&lock_users[skip_locked ? 1 : 0], &ids, NULL,
								 n);
	for (int i = 0; i < locked; i++)
		ReadUserRow(i, &users[i]);
	if (locked > 0)
		LoadSessions(users, locked);
	return locked;
}

/*
 * Lock a user's row and load their state.  With create, a user seen for the
 * first time gets an offline row.  With skip_locked, a user whose row
 * another transaction holds is reported as not found.
 */
bool
PresenceLockUser(const char *user_id, bool create, bool skip_locked,
				 TimestampTz now, PresenceUser *u)
{
	static const Oid argtypes[] = {TEXTOID, TIMESTAMPTZOID};
	Datum		values[2];

	if (PresenceLockUsers(&user_id, 1, skip_locked, u) == 1)
		return true;

	memset(u, 0, sizeof(PresenceUser));
	u->user_id = pstrdup(user_id);
	if (!create)
		return false;
	values[0] = CStringGetTextDatum(user_id);
	values[1] = TimestampTzGetDatum(now);
	PresenceExecute(PresencePrepare(&insert_user_plan,
									"INSERT INTO presence.users (user_id, since)"
									" VALUES ($1, $2) ON CONFLICT (user_id) DO NOTHING",
									2, argtypes),
					values, NULL, false, 0);
	if (PresenceLockUsers(&user_id, 1, skip_locked, u) == 0)
		elog(ERROR, "could not lock presence user \"%s\"", user_id);
	return true;
}

/*
 * Is the session live at t (not ended) and, if so, active (not yet idle)?
 */
static inline bool
SessionLive(const PresenceSession *s, TimestampTz t)
{
	return !s->deleted && s->end_at > t;
}

static inline bool
SessionOnline(const PresenceSession *s, TimestampTz t)
{
	return SessionLive(s, t) && s->away_at > t &&
		!PresenceIdleApplied(s->away_at, s->end_at, s->due_at);
}

/*
 * The visible status at time t, with the given override in force.
 */
static PresenceStatus
DeriveStatus(const PresenceUser *u, PresenceManual manual, TimestampTz t)
{
	bool		live = false;
	bool		online = false;
	ListCell   *lc;

	foreach(lc, u->sessions)
	{
		PresenceSession *s = (PresenceSession *) lfirst(lc);

		live |= SessionLive(s, t);
		online |= SessionOnline(s, t);
	}
	if (!live)
		return PRESENCE_OFFLINE;
	switch (manual)
	{
		case MANUAL_INVISIBLE:
			return PRESENCE_OFFLINE;
		case MANUAL_BUSY:
			return PRESENCE_BUSY;
		case MANUAL_AWAY:
			return PRESENCE_AWAY;
		case MANUAL_NONE:
			break;
	}
	return online ? PRESENCE_ONLINE : PRESENCE_AWAY;
}

/*
 * The user's latest activity and liveness over the stored values and the
 * sessions still held in memory.
 */
static void
LatestTimes(const PresenceUser *u, bool *has_active, TimestampTz *active,
			bool *has_seen, TimestampTz *seen)
{
	ListCell   *lc;

	*has_active = u->has_last_active;
	*active = u->last_active;
	*has_seen = u->has_last_seen;
	*seen = u->last_seen;
	foreach(lc, u->sessions)
	{
		PresenceSession *s = (PresenceSession *) lfirst(lc);

		if (s->deleted)
			continue;
		if (s->has_last_active && (!*has_active || s->last_active > *active))
		{
			*has_active = true;
			*active = s->last_active;
		}
		if (!*has_seen || s->last_seen > *seen)
		{
			*has_seen = true;
			*seen = s->last_seen;
		}
	}
}

/*
 * Fold a session that is about to be deleted into the user's stored times,
 * unless the user is invisible and those times are frozen.
 */
static void
FoldSession(PresenceUser *u, const PresenceSession *s)
{
	if (u->manual == MANUAL_INVISIBLE)
		return;
	if (s->has_last_active &&
		(!u->has_last_active || s->last_active > u->last_active))
	{
		u->has_last_active = true;
		u->last_active = s->last_active;
	}
	if (!u->has_last_seen || s->last_seen > u->last_seen)
	{
		u->has_last_seen = true;
		u->last_seen = s->last_seen;
	}
	u->dirty = true;
}

/*
 * End a session: its rooms end with it (announced with reason, dated at),
 * its row is deleted (at once, or when the user's batch is flushed), and
 * its times are remembered.
 */
void
PresenceDeleteSession(PresenceUser *u, PresenceSession *s, const char *reason,
					  TimestampTz at)
{
	Datum		values[2];
	bool		nulls[2] = {false, false};

	PresenceRoomsSessionEnded(u, s->session_id, reason, at);
	PresenceCacheForget(u->user_id, s->session_id);
	values[0] = CStringGetTextDatum(u->user_id);
	values[1] = CStringGetTextDatum(s->session_id);
	Write(u, WRITE_DELETE_SESSION, values, nulls);
	FoldSession(u, s);
	s->deleted = true;
}

/*
 * Write a session's clocks and deadlines, inserting it if it is new.
 */
void
PresenceWriteSession(PresenceUser *u, PresenceSession *s, bool is_new,
					 Jsonb *meta)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID, TIMESTAMPTZOID,
		TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TIMESTAMPTZOID,
	TIMESTAMPTZOID, JSONBOID};
	Datum		values[9];
	char		nulls[9] = {' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(u->user_id);
	values[1] = CStringGetTextDatum(s->session_id);
	values[2] = TimestampTzGetDatum(s->started_at);
	values[3] = TimestampTzGetDatum(s->last_seen);
	values[4] = TimestampTzGetDatum(s->last_active);
	if (!s->has_last_active)
		nulls[4] = 'n';
	values[5] = TimestampTzGetDatum(s->away_at);
	values[6] = TimestampTzGetDatum(s->end_at);
	values[7] = TimestampTzGetDatum(s->due_at);
	values[8] = PointerGetDatum(meta);
	if (meta == NULL)
		nulls[8] = 'n';

	if (is_new)
		PresenceExecute(PresencePrepare(&insert_session_plan,
										"INSERT INTO presence.sessions (user_id, session_id,"
										" started_at, last_seen, last_active, away_at, end_at,"
										" due_at, meta) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
										lengthof(argtypes), argtypes),
						values, nulls, false, 0);
	else
		PresenceExecute(PresencePrepare(&update_session_plan,
										"UPDATE presence.sessions SET last_seen = $4,"
										" last_active = $5, away_at = $6, end_at = $7,"
										" due_at = $8, meta = COALESCE($9, meta)"
										" WHERE user_id = $1 AND session_id = $2",
										lengthof(argtypes), argtypes),
						values, nulls, false, 0);
	PresenceNoteDeadline(s->due_at);
	CacheSession(u, s);
}

/*
 * Record that a session's idle deadline has been processed: from now on
 * only its end is due.  Stored at once, or when the user's batch is
 * flushed.
 */
static void
MarkIdleProcessed(PresenceUser *u, PresenceSession *s)
{
	Datum		values[3];
	bool		nulls[3] = {false, false, false};

	s->due_at = s->end_at;
	values[0] = CStringGetTextDatum(u->user_id);
	values[1] = CStringGetTextDatum(s->session_id);
	values[2] = TimestampTzGetDatum(s->due_at);
	Write(u, WRITE_IDLE_MARK, values, nulls);
	CacheSession(u, s);
}

/*
 * Store the users row, as *u now has it: the announced view and the
 * override.  Stored at once, or when the user's batch is flushed.
 */
static void
WriteUser(PresenceUser *u)
{
	Datum		values[9];
	bool		nulls[9] = {false, false, false, false, false, false, false,
	false, false};
	const char *manual = PresenceManualName(u->manual);
	ListCell   *lc;

	values[0] = CStringGetTextDatum(u->user_id);
	values[1] = CStringGetTextDatum(PresenceStatusName(u->status));
	if (u->message)
		values[2] = CStringGetTextDatum(u->message);
	else
		nulls[2] = true;
	values[3] = TimestampTzGetDatum(u->since);
	values[4] = TimestampTzGetDatum(u->last_active);
	nulls[4] = !u->has_last_active;
	values[5] = TimestampTzGetDatum(u->last_seen);
	nulls[5] = !u->has_last_seen;
	if (manual)
		values[6] = CStringGetTextDatum(manual);
	else
		nulls[6] = true;
	if (u->manual_message)
		values[7] = CStringGetTextDatum(u->manual_message);
	else
		nulls[7] = true;
	values[8] = TimestampTzGetDatum(u->manual_until);
	nulls[8] = !u->has_manual_until;

	Write(u, WRITE_USER, values, nulls);
	u->dirty = false;

	/* The announced status is cached with each session. */
	foreach(lc, u->sessions)
	{
		PresenceSession *s = (PresenceSession *) lfirst(lc);

		if (!s->deleted)
			CacheSession(u, s);
	}
}

/*
 * The reason an event gives for a change, from what caused it.  Any change
 * out of offline is a connect and any change into offline by the user's
 * own hand is a disconnect, so that going invisible and coming back read
 * exactly like leaving and returning.
 */
static const char *
ChooseReason(PresenceCause cause, int due_kinds, PresenceStatus previous,
			 PresenceStatus status)
{
	if (previous == PRESENCE_OFFLINE && status != PRESENCE_OFFLINE)
		return "connect";
	switch (cause)
	{
		case CAUSE_CONNECT:
			return status == PRESENCE_AWAY ? "idle" : "connect";
		case CAUSE_HEARTBEAT:
			return status == PRESENCE_AWAY ? "idle" : "activity";
		case CAUSE_DISCONNECT:
			return "disconnect";
		case CAUSE_MANUAL:
			return (status == PRESENCE_OFFLINE && previous != PRESENCE_OFFLINE) ?
				"disconnect" : "manual";
		case CAUSE_TIMED:
			if (due_kinds & DUE_EXPIRE)
				return "expired";
			if (due_kinds & DUE_END)
				return "timeout";
			return "idle";
	}
	pg_unreachable();
}

/*
 * Announce the user's visible state if it changed, and store the users row
 * if anything in it changed.
 *
 * freeze_message keeps the announced message while the user stays offline:
 * an invisible user whose override runs out while disconnected must not
 * produce an event that a disconnected user never would.
 */
void
PresencePublish(PresenceUser *u, PresenceCause cause, int due_kinds,
				TimestampTz now, TimestampTz at, bool freeze_message)
{
	PresenceStatus status = DeriveStatus(u, u->manual, now);
	PresenceStatus previous = u->status;
	const char *message;
	bool		message_changed;
	bool		has_active,
				has_seen;
	TimestampTz active,
				seen;
	PresenceEvent ev;

	if (u->manual == MANUAL_INVISIBLE ||
		(freeze_message && status == PRESENCE_OFFLINE))
		message = u->message;
	else
		message = u->manual_message;

	message_changed = (message == NULL) != (u->message == NULL) ||
		(message != NULL && strcmp(message, u->message) != 0);

	if (status == previous && !message_changed)
	{
		if (u->dirty)
			WriteUser(u);
		return;
	}

	if (u->manual != MANUAL_INVISIBLE)
	{
		LatestTimes(u, &has_active, &active, &has_seen, &seen);
		u->has_last_active = has_active;
		u->last_active = active;
		u->has_last_seen = has_seen;
		u->last_seen = seen;
	}
	if (status != previous)
		u->since = at;
	u->status = status;
	u->message = message ? pstrdup(message) : NULL;
	WriteUser(u);

	memset(&ev, 0, sizeof(ev));
	ev.kind = EVENT_STATUS;
	ev.user_id = u->user_id;
	ev.status = status;
	ev.previous = previous;
	ev.reason = ChooseReason(cause, due_kinds, previous, status);
	ev.message = u->message;
	ev.has_last_active = u->has_last_active;
	ev.last_active = u->last_active;
	ev.at = at;

	/*
	 * In rooms, a user who stays visible gets a status event in each room;
	 * one who turns invisible leaves them all and one who comes back joins
	 * them again.  (Leaving offline by ending sessions left the rooms as
	 * the sessions ended.)
	 */
	if (previous != PRESENCE_OFFLINE && status != PRESENCE_OFFLINE)
		ev.rooms = PresenceUserRooms(u);
	PresenceQueue(&ev);
	if (previous != PRESENCE_OFFLINE && status == PRESENCE_OFFLINE &&
		u->manual == MANUAL_INVISIBLE)
		PresenceRoomsVisibility(u, false, at);
	else if (previous == PRESENCE_OFFLINE && status != PRESENCE_OFFLINE)
		PresenceRoomsVisibility(u, true, at);
}

/*
 * One moment at which something about the user fell due.
 */
typedef struct DueMoment
{
	TimestampTz at;
	int			kinds;
} DueMoment;

static int
CompareDueMoments(const void *a, const void *b)
{
	TimestampTz x = ((const DueMoment *) a)->at;
	TimestampTz y = ((const DueMoment *) b)->at;

	return (x > y) - (x < y);
}

/*
 * Apply every transition due at as_of and announce the net change once.
 *
 * The due moments are replayed in time order to find when the visible
 * status last changed and why: that is the event's "at" and reason.  A
 * session whose idle and end deadlines both passed thus takes its user
 * from online straight to offline, in one event dated at its end.
 */
void
PresenceSettle(PresenceUser *u, TimestampTz as_of)
{
	DueMoment  *moments;
	int			nmoments = 0;
	ListCell   *lc;
	PresenceStatus current = u->status;
	TimestampTz change_at = 0;
	int			change_kinds = 0;
	bool		expire = u->has_manual_until && u->manual_until <= as_of;
	bool		expired_invisible = expire && u->manual == MANUAL_INVISIBLE;

	moments = palloc(sizeof(DueMoment) * (2 * list_length(u->sessions) + 1));
	foreach(lc, u->sessions)
	{
		PresenceSession *s = (PresenceSession *) lfirst(lc);

		if (s->deleted || s->due_at > as_of)
			continue;
		if (s->due_at < s->end_at && s->away_at <= as_of)
		{
			moments[nmoments].at = s->away_at;
			moments[nmoments++].kinds = DUE_IDLE;
		}
		if (s->end_at <= as_of)
		{
			moments[nmoments].at = s->end_at;
			moments[nmoments++].kinds = DUE_END;
		}
	}
	if (expire)
	{
		moments[nmoments].at = u->manual_until;
		moments[nmoments++].kinds = DUE_EXPIRE;
	}
	if (nmoments == 0)
	{
		PresenceRoomsSettle(u, as_of);
		return;
	}

	qsort(moments, nmoments, sizeof(DueMoment), CompareDueMoments);
	for (int i = 0; i < nmoments; i++)
	{
		TimestampTz t = moments[i].at;
		int			kinds = moments[i].kinds;
		PresenceStatus s;

		/* Several deadlines at the same instant are one moment. */
		while (i + 1 < nmoments && moments[i + 1].at == t)
			kinds |= moments[++i].kinds;

		s = DeriveStatus(u, (expire && u->manual_until <= t) ? MANUAL_NONE :
						 u->manual, t);
		if (s != current)
		{
			current = s;
			change_at = t;
			change_kinds = kinds;
		}
	}

	/* Now make it so. */
	foreach(lc, u->sessions)
	{
		PresenceSession *s = (PresenceSession *) lfirst(lc);

		if (s->deleted || s->due_at > as_of)
			continue;
		if (s->end_at <= as_of)
			PresenceDeleteSession(u, s, "timeout", s->end_at);
		else
			MarkIdleProcessed(u, s);
	}
	if (expire)
	{
		u->manual = MANUAL_NONE;
		u->manual_message = NULL;
		u->has_manual_until = false;
		u->dirty = true;
	}

	/*
	 * Then the rooms the user is still in: typing flags that ran out, and
	 * held-back metadata.  (Sessions that ended took their rooms' typing
	 * flags and metadata with them, above.)
	 */
	PresenceRoomsSettle(u, as_of);

	/*
	 * A change of message alone dates from the expiry that caused it, also
	 * when the status changed and changed back meanwhile (an away override
	 * that ran out, then the session went idle): the status is what it was.
	 */
	if (change_at == 0 || current == u->status)
	{
		change_at = expire ? u->manual_until : moments[nmoments - 1].at;
		change_kinds = expire ? DUE_EXPIRE : 0;
	}
	PresencePublish(u, CAUSE_TIMED, change_kinds, as_of, change_at,
					expired_invisible);
}

/*
 * Settle a user before an API call applies its own change, unless the
 * server is still in its startup grace.  During the grace, deadlines that
 * passed while the server was down are left alone, so a client that
 * reconnects continues its session with no offline/online flicker; the
 * worker ends the sessions nobody refreshed once the grace is over.
 */
void
PresenceSettleForCall(PresenceUser *u, TimestampTz now)
{
	if (now >= PresenceGraceUntil())
		PresenceSettle(u, now);
}

/*
 * Find a live (not deleted) session of the user by id.
 */
PresenceSession *
PresenceFindSession(PresenceUser *u, const char *session_id)
{
	ListCell   *lc;

	foreach(lc, u->sessions)
	{
		PresenceSession *s = (PresenceSession *) lfirst(lc);

		if (!s->deleted && strcmp(s->session_id, session_id) == 0)
			return s;
	}
	return NULL;
}

/*
 * Create or refresh a session of a locked, settled user, and announce what
 * that changes: a heartbeat, and the heartbeat part of join().
 */
void
PresenceTouchSession(PresenceUser *u, const char *session_id, bool active,
					 Jsonb *meta, int64 ttl, int64 away_after, TimestampTz now)
{
	PresenceSession *s = PresenceFindSession(u, session_id);
	bool		is_new = (s == NULL);
	bool		stays_idle;

	/* An inactive heartbeat leaves an idle session idle. */
	stays_idle = !is_new && !active &&
		PresenceIdleApplied(s->away_at, s->end_at, s->due_at);
	if (is_new)
	{
		s = palloc0(sizeof(PresenceSession));
		s->session_id = pstrdup(session_id);
		s->started_at = now;
		/* A session that starts inactive is idle from the start. */
		s->away_at = now;
		u->sessions = lappend(u->sessions, s);
	}
	s->last_seen = now;
	if (active)
	{
		s->has_last_active = true;
		s->last_active = now;
		s->away_at = now + away_after;
	}
	s->end_at = now + ttl;
	s->due_at = (s->away_at > now && s->away_at < s->end_at && !stays_idle) ?
		s->away_at : s->end_at;
	PresenceWriteSession(u, s, is_new, meta);

	PresencePublish(u, is_new ? CAUSE_CONNECT : CAUSE_HEARTBEAT, 0, now, now,
					false);
}

/*
 * Freeze the public times before a user turns invisible: from now on they
 * show what they were at this moment.
 */
void
PresenceFreezeTimes(PresenceUser *u)
{
	LatestTimes(u, &u->has_last_active, &u->last_active,
				&u->has_last_seen, &u->last_seen);
	u->dirty = true;
}
