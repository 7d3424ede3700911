/*-------------------------------------------------------------------------
 *
 * conn.c
 *	  presence_watch's connection: connecting, the startup checks (the
 *	  extension, the grants, the room), LISTEN, loading the state through
 *	  the read functions, catching up through presence.changes(since), the
 *	  notifications, and reconnecting with backoff.
 *
 *	  The order after every (re)connection is the one README.md's
 *	  "Listening from Node.js" gives: LISTEN first; then, in one REPEATABLE
 *	  READ snapshot, read changes(last_seq) page by page until a page comes
 *	  back short, and the state; only then apply the notifications that
 *	  arrived meanwhile, skipping every seq already applied.  Each event is
 *	  so shown once, in seq order, with none missing.
 *
 *	  Errors at startup end the program with a distinct exit code; once it
 *	  has run, a lost connection is retried (1 s, doubling to 10 s) and
 *	  said so.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "watch.h"

/* The read functions presence_watch calls: the role needs EXECUTE on each. */
static const char *const needed_functions[] = {
	"presence.changes(bigint, integer)",
	"presence.last_seq()",
	"presence.online_users(integer)",
	"presence.statuses(text[])",
	"presence.counts()",
	"presence.get(text)",
	"presence.members(text)",
	"presence.typing_users(text)",
	"presence.room_count(text)",
	"presence.room_channel(text)",
};

/*
 * A libpq message (often several lines, with tabs) as one line, without
 * the "FATAL:  " or "ERROR:  " prefix.
 */
char *
one_line(const char *msg)
{
	char	   *out = watch_malloc(strlen(msg ? msg : "") + 1);
	char	   *o = out;
	bool		space = false;

	if (msg == NULL)
		msg = "";
	if (strncmp(msg, "FATAL:  ", 8) == 0 || strncmp(msg, "ERROR:  ", 8) == 0)
		msg += 8;
	for (; *msg; msg++)
	{
		if (*msg == '\n' || *msg == '\t' || *msg == '\r' || *msg == ' ')
		{
			space = o > out;
			continue;
		}
		if (space)
			*o++ = ' ';
		space = false;
		*o++ = *msg;
	}
	*o = '\0';
	return out;
}

/* The local wall clock, to compare with the server's. */
static double
wall_now(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return tv.tv_sec + tv.tv_usec / 1e6;
}

/*
 * The first line of a libpq message, without its severity prefix: the
 * connection-lost reasons libpq gives go on with a paragraph of advice.
 */
static char *
first_line(const char *msg)
{
	char	   *line = one_line(msg);
	char	   *cut;

	if ((cut = strstr(line, " This probably means")) != NULL)
		*cut = '\0';
	if ((cut = strstr(line, " Is the server running")) != NULL)
		*cut = '\0';
	return line;
}

/*
 * Notices and the server's FATAL message when it ends the session arrive
 * outside any query; libpq would print them on stderr, over the screen.
 * Keep the last one instead: it is the best reason to show for a lost
 * connection ("terminating connection due to administrator command").
 */
static void
keep_notice(void *arg, const char *message)
{
	Watch	   *w = arg;

	if (strncmp(message, "FATAL:", 6) == 0)
	{
		free(w->last_notice);
		w->last_notice = one_line(message);
	}
}

/* Seconds a connection attempt may take, unless PGCONNECT_TIMEOUT says. */
#define WATCH_CONNECT_TIMEOUT	"10"

/*
 * The connection parameters.  Defaults for timeouts and keepalives go
 * before the user's connection string, which overrides them (and so do the
 * PG* variables that have a say in them); a dead server must not freeze
 * the viewer.  keywords and values have room for 8 entries.
 */
static void
connect_params(const Watch *w, const char **keywords, const char **values)
{
	int			n = 0;

	if (getenv("PGCONNECT_TIMEOUT") == NULL)
	{
		keywords[n] = "connect_timeout";
		values[n++] = WATCH_CONNECT_TIMEOUT;
	}
	keywords[n] = "keepalives_idle";
	values[n++] = "10";
	keywords[n] = "keepalives_interval";
	values[n++] = "5";
	keywords[n] = "keepalives_count";
	values[n++] = "3";
	keywords[n] = "tcp_user_timeout";
	values[n++] = "15000";
	keywords[n] = "fallback_application_name";
	values[n++] = WATCH_PROGNAME;
	if (w->conninfo)
	{
		keywords[n] = "dbname";
		values[n++] = w->conninfo;
	}
	keywords[n] = NULL;
	values[n] = NULL;
}

/*
 * A connection that has just been made: start listening to its notices.
 */
static void
connected(Watch *w)
{
	free(w->last_notice);
	w->last_notice = NULL;
	PQsetNoticeProcessor(w->conn, keep_notice, w);
}

/*
 * The connection went away (or a reconnection failed): say so and plan
 * the next attempt.
 */
void
conn_lost(Watch *w, const char *why)
{
	char	   *reason;

	/* the server's own word for it, if it said one */
	reason = first_line(w->conn && w->last_notice ? w->last_notice : why);
	free(w->last_notice);
	w->last_notice = NULL;
	if (w->conn)
	{
		PQfinish(w->conn);
		w->conn = NULL;
	}
	free(w->last_error);
	w->last_error = reason;
	w->state = CONN_DISCONNECTED;
	w->retry_at = now_monotonic() + w->backoff;
	note_state(w, "disconnected (%s), retrying in %.0f s", reason, w->backoff);
	w->backoff *= 2;
	if (w->backoff > WATCH_BACKOFF_MAX)
		w->backoff = WATCH_BACKOFF_MAX;
}

/*
 * Run a query.  Returns the result when it succeeded.  A lost connection
 * returns NULL, after conn_lost() (or, before the first load, ends the
 * program); any other error ends the program with the exit code of its
 * kind.
 */
static PGresult *
run(Watch *w, const char *sql, int nparams, const char *const *params)
{
	PGresult   *res;
	ExecStatusType st;
	const char *state;
	char	   *msg;

	res = PQexecParams(w->conn, sql, nparams, NULL, params, NULL, NULL, 0);
	st = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
	if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK)
		return res;

	msg = one_line(res ? PQresultErrorMessage(res) : PQerrorMessage(w->conn));
	if (msg[0] == '\0')
	{
		free(msg);
		msg = one_line(PQerrorMessage(w->conn));
	}
	state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (PQstatus(w->conn) == CONNECTION_BAD ||
		(state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0)))
	{
		PQclear(res);
		if (!w->ever_connected)
			fatal(w, EXIT_WATCH_CONNECT, "lost the connection at startup: %s", msg);
		conn_lost(w, msg);
		free(msg);
		return NULL;
	}
	if (state && strcmp(state, "42501") == 0)
		fatal(w, EXIT_WATCH_PERMISSION, "permission denied: %s", msg);
	if (state && (strcmp(state, "3F000") == 0 || strcmp(state, "42883") == 0))
		fatal(w, EXIT_WATCH_NO_EXTENSION,
			  "the presence extension is missing in database \"%s\": %s",
			  w->dbname ? w->dbname : "?", msg);
	fatal(w, EXIT_WATCH_ERROR, "query failed: %s", msg);
}

/* Run a query with one parameter. */
static PGresult *
run1(Watch *w, const char *sql, const char *param)
{
	return run(w, sql, 1, &param);
}

/*
 * A text[] literal of the model's user ids, for presence.statuses().
 */
static char *
model_ids_array(Watch *w)
{
	size_t		cap = 16,
				len = 0;
	char	   *buf = watch_malloc(cap);

	buf[len++] = '{';
	for (int i = 0; i < w->nusers; i++)
	{
		const char *s = w->users[i].user_id;

		if (len + 2 * strlen(s) + 8 > cap)
		{
			char	   *nb;

			cap = (len + 2 * strlen(s) + 8) * 2;
			nb = watch_malloc(cap);
			memcpy(nb, buf, len);
			free(buf);
			buf = nb;
		}
		if (i > 0)
			buf[len++] = ',';
		buf[len++] = '"';
		for (; *s; s++)
		{
			if (*s == '"' || *s == '\\')
				buf[len++] = '\\';
			buf[len++] = *s;
		}
		buf[len++] = '"';
	}
	buf[len++] = '}';
	buf[len] = '\0';
	return buf;
}

/* A float8 column of epoch seconds, 0 when NULL (unknown). */
static double
field_epoch(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? 0 : strtod(PQgetvalue(res, row, col), NULL);
}

/* A text column as a new string, NULL when NULL. */
static char *
field_strdup(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : watch_strdup(PQgetvalue(res, row, col));
}

/*
 * Copy a row of (user_id, status, message, last_active, last_seen,
 * sessions) into the model.
 */
static void
apply_status_row(Watch *w, PGresult *res, int row)
{
	WatchUser  *u = model_add(w, PQgetvalue(res, row, 0));

	u->status = status_from_text(PQgetvalue(res, row, 1));
	free(u->message);
	u->message = field_strdup(res, row, 2);
	u->last_active = field_epoch(res, row, 3);
	u->last_seen = field_epoch(res, row, 4);
	u->sessions = atoi(PQgetvalue(res, row, 5));
	u->dirty = false;
}

/*
 * Measure the server's clock against ours, so that "ago" is computed on
 * the server's clock.
 */
static bool
measure_clock(Watch *w)
{
	double		before = wall_now(),
				after;
	PGresult   *res = run(w, "SELECT extract(epoch FROM clock_timestamp())::float8",
						  0, NULL);

	if (res == NULL)
		return false;
	after = wall_now();
	w->clock_offset = strtod(PQgetvalue(res, 0, 0), NULL) - (before + after) / 2;
	PQclear(res);
	return true;
}

/*
 * Show one event recovered from changes() (a row of the catch-up query),
 * the same way a notification would be shown.
 */
static void
emit_change(Watch *w, PGresult *res, int row)
{
	char	   *json = event_json_from_change(res, row);
	JsonObject	ev;
	long long	seq = strtoll(PQgetvalue(res, row, 0), NULL, 10);

	if (w->mode == MODE_JSON)
	{
		fputs(json, stdout);
		fputc('\n', stdout);
		fflush(stdout);
	}
	else if (json_parse_object(json, &ev))
	{
		char	   *text = event_describe(w, &ev);
		double		at = parse_iso_time(json_get_string(&ev, "at"));

		if (w->mode == MODE_LINES)
			lines_event(w, at, seq, text, true);
		else
		{
			WatchUser  *u = model_add(w, json_get_string(&ev, "user_id"));

			u->dirty = true;
			w->dirty = true;
			log_add(w, at, seq, text, true);
		}
		free(text);
		json_free_object(&ev);
	}
	free(json);
	w->last_seq = seq;
}

static const char changes_sql[] =
	"SELECT seq, user_id, status, previous, reason, message, "
	"to_json(last_active)::text, to_json(at)::text "
	"FROM presence.changes($1, $2)";

/*
 * Catch up: every history row after last_seq, a page at a time until a
 * page comes back short.  Returns false when the connection was lost.
 */
static bool
catch_up(Watch *w)
{
	char		page[16];

	snprintf(page, sizeof(page), "%d", WATCH_PAGE);
	w->caught_up = 0;
	for (;;)
	{
		char		since[32];
		const char *params[2] = {since, page};
		PGresult   *res;
		int			rows;

		snprintf(since, sizeof(since), "%lld", w->last_seq);
		res = run(w, changes_sql, 2, params);
		if (res == NULL)
			return false;
		rows = PQntuples(res);
		for (int i = 0; i < rows; i++)
			emit_change(w, res, i);
		w->caught_up += rows;
		PQclear(res);
		if (rows < WATCH_PAGE)
			return true;
	}
}

/*
 * Start from now: the end of the history is presence.last_seq().  With
 * recent > 0, the users of the last "recent" changes also start the table
 * (offline users recently seen).  Returns false when the connection was
 * lost.
 */
static bool
start_from_now(Watch *w, int recent)
{
	char		since[32],
				limit[16];
	const char *params[2] = {since, limit};
	PGresult   *res;

	res = run(w, "SELECT presence.last_seq()", 0, NULL);
	if (res == NULL)
		return false;
	w->last_seq = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	if (recent == 0 || w->last_seq == 0)
		return true;

	snprintf(since, sizeof(since), "%lld",
			 w->last_seq > recent ? w->last_seq - recent : 0);
	snprintf(limit, sizeof(limit), "%d", recent);
	res = run(w, "SELECT DISTINCT user_id FROM presence.changes($1, $2)", 2, params);
	if (res == NULL)
		return false;
	for (int i = 0; i < PQntuples(res); i++)
		model_add(w, PQgetvalue(res, i, 0))->dirty = true;
	PQclear(res);
	return true;
}

/*
 * Read the users view's state: the counts, the present users, and the
 * current row of every other user the model knows (offline users recently
 * seen, users whose events were caught up).
 */
static bool
load_users(Watch *w)
{
	PGresult   *res;
	char	   *ids;
	char		limit[16];

	res = run(w, "SELECT status, users FROM presence.counts()", 0, NULL);
	if (res == NULL)
		return false;
	memset(w->counts, 0, sizeof(w->counts));
	for (int i = 0; i < PQntuples(res); i++)
		w->counts[status_from_text(PQgetvalue(res, i, 0))] =
			strtoll(PQgetvalue(res, i, 1), NULL, 10);
	PQclear(res);

	if (w->reload)
	{
		/* everyone present now comes from online_users() */
		for (int i = 0; i < w->nusers; i++)
			w->users[i].dirty = true;
		snprintf(limit, sizeof(limit), "%d", WATCH_MAX_USERS);
		res = run1(w,
				   "SELECT user_id, status, message, "
				   "extract(epoch FROM last_active)::float8, "
				   "extract(epoch FROM last_seen)::float8, sessions "
				   "FROM presence.online_users($1)", limit);
		if (res == NULL)
			return false;
		for (int i = 0; i < PQntuples(res); i++)
			apply_status_row(w, res, i);
		PQclear(res);
	}

	ids = model_ids_array(w);
	res = run1(w,
			   "SELECT user_id, status, message, "
			   "extract(epoch FROM last_active)::float8, "
			   "extract(epoch FROM last_seen)::float8, sessions "
			   "FROM presence.statuses($1::text[])", ids);
	free(ids);
	if (res == NULL)
		return false;
	for (int i = 0; i < PQntuples(res); i++)
		apply_status_row(w, res, i);
	PQclear(res);
	return true;
}

/*
 * Read the room view's state: the members in the order they joined, with
 * their metadata, their status row and whether they are typing.
 */
static bool
load_room(Watch *w)
{
	PGresult   *res;

	res = run1(w,
			   "SELECT m.user_id, m.status, m.message, "
			   "extract(epoch FROM g.last_active)::float8, "
			   "extract(epoch FROM g.last_seen)::float8, g.sessions, "
			   "m.metas::text, "
			   "m.user_id IN (SELECT t FROM presence.typing_users($1) AS t) "
			   "FROM presence.members($1) WITH ORDINALITY "
			   "AS m(user_id, status, message, metas, joined_at, ord) "
			   "CROSS JOIN LATERAL presence.get(m.user_id) AS g "
			   "ORDER BY m.ord", w->room);
	if (res == NULL)
		return false;
	model_clear(w);
	for (int i = 0; i < PQntuples(res); i++)
	{
		WatchUser  *u;

		apply_status_row(w, res, i);
		u = model_find(w, PQgetvalue(res, i, 0));
		u->metas = field_strdup(res, i, 6);
		u->typing = strcmp(PQgetvalue(res, i, 7), "t") == 0;
		u->order = i;
	}
	PQclear(res);
	return true;
}

/*
 * With --json --room: the room as it is now, one JSON line, at the start
 * and after each reconnection (room events have no history to catch up
 * from; README: a listener that reconnects re-reads members() and
 * typing_users()).
 */
static bool
print_room_resync(Watch *w)
{
	PGresult   *res;

	res = run1(w,
			   "SELECT jsonb_build_object('event', 'resync', 'room', $1::text, "
			   "'members', coalesce((SELECT jsonb_agg(m) FROM presence.members($1) AS m), '[]'), "
			   "'typing', coalesce((SELECT jsonb_agg(t) FROM presence.typing_users($1) AS t), '[]'), "
			   "'at', clock_timestamp())::text", w->room);
	if (res == NULL)
		return false;
	fputs(PQgetvalue(res, 0, 0), stdout);
	fputc('\n', stdout);
	fflush(stdout);
	PQclear(res);
	return true;
}

/*
 * Check that this database and role can be watched.  Only before the
 * first load: afterwards a failure here would show as a query error.
 */
static void
check_database(Watch *w)
{
	PGresult   *res;
	const char *role;

	res = run(w,
			  "SELECT current_database(), current_user, "
			  "(SELECT extversion FROM pg_extension WHERE extname = 'presence')",
			  0, NULL);
	free(w->dbname);
	w->dbname = watch_strdup(PQgetvalue(res, 0, 0));
	free(w->role);
	w->role = watch_strdup(PQgetvalue(res, 0, 1));
	role = w->role;
	if (PQgetisnull(res, 0, 2))
		fatal(w, EXIT_WATCH_NO_EXTENSION,
			  "the presence extension is not installed in database \"%s\" (CREATE EXTENSION presence)",
			  w->dbname);
	PQclear(res);

	res = run(w, "SELECT has_schema_privilege('presence', 'USAGE')", 0, NULL);
	if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
		fatal(w, EXIT_WATCH_PERMISSION,
			  "permission denied: role \"%s\" has no USAGE on schema presence (GRANT USAGE ON SCHEMA presence TO ...; see README \"Grants\")",
			  role);
	PQclear(res);

	for (size_t i = 0; i < sizeof(needed_functions) / sizeof(needed_functions[0]); i++)
	{
		res = run1(w, "SELECT has_function_privilege($1, 'EXECUTE')",
				   needed_functions[i]);
		if (strcmp(PQgetvalue(res, 0, 0), "t") != 0)
			fatal(w, EXIT_WATCH_PERMISSION,
				  "permission denied: role \"%s\" may not execute %s (GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA presence TO ...; see README \"Grants\")",
				  role, needed_functions[i]);
		PQclear(res);
	}
}

/*
 * After connecting: LISTEN, then catch up and load in one snapshot, then
 * the notifications that came meanwhile.  Returns false when the
 * connection was lost on the way.
 */
static bool
start_session(Watch *w)
{
	PGresult   *res;
	char	   *ident;
	char	   *sql;
	const char *host = PQhost(w->conn);
	bool		socket_dir = host && host[0] == '/';

	free(w->where);
	w->where = watch_printf("%s%s:%s", socket_dir ? "socket " : "",
							host ? host : "?", PQport(w->conn));
	if (!w->ever_connected)
		check_database(w);

	/* The channel: the room's, or presence.channel. */
	if (w->room)
		res = run1(w, "SELECT presence.room_channel($1)", w->room);
	else
		res = run(w, "SELECT coalesce(nullif(current_setting('presence.channel', true), ''), 'presence')",
				  0, NULL);
	if (res == NULL)
		return false;
	free(w->channel);
	w->channel = watch_strdup(PQgetvalue(res, 0, 0));
	PQclear(res);

	/* 1. LISTEN, so that nothing committed from now on can be missed. */
	ident = PQescapeIdentifier(w->conn, w->channel, strlen(w->channel));
	if (ident == NULL)
		fatal(w, EXIT_WATCH_ERROR, "cannot quote the channel name: %s",
			  PQerrorMessage(w->conn));
	sql = watch_printf("LISTEN %s", ident);
	PQfreemem(ident);
	res = run(w, sql, 0, NULL);
	free(sql);
	if (res == NULL)
		return false;
	PQclear(res);

	/* 2. One snapshot: the catch-up and the state agree with each other. */
	res = run(w, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL);
	if (res == NULL)
		return false;
	PQclear(res);

	w->caught_up = 0;
	if (w->room == NULL)
	{
		if (w->last_seq < 0 && w->since >= 0)
			w->last_seq = w->since;
		if (w->last_seq >= 0)
		{
			if (!catch_up(w))
				return false;
		}
		else if (!start_from_now(w, w->mode == MODE_JSON ? 0 : WATCH_PAGE))
			return false;
	}

	if (w->mode != MODE_JSON)
	{
		w->reload = true;
		if (!(w->room ? load_room(w) : load_users(w)))
			return false;
		w->reload = false;
		w->dirty = false;
		model_prune(w, now_server(w));
	}
	else if (w->room && !print_room_resync(w))
		return false;

	res = run(w, "COMMIT", 0, NULL);
	if (res == NULL)
		return false;
	PQclear(res);
	if (!measure_clock(w))
		return false;
	if (w->mode != MODE_JSON)
		model_prune(w, now_server(w));

	w->last_refresh = now_monotonic();
	w->state = CONN_CONNECTED;
	w->backoff = WATCH_BACKOFF_FIRST;

	if (!w->ever_connected)
	{
		w->ever_connected = true;
		if (w->room && w->mode == MODE_JSON)
			note_state(w, "connected to database \"%s\" (%s) as %s, listening on \"%s\" (room \"%s\")",
					   w->dbname, w->where, w->role, w->channel, w->room);
		else if (w->room)
			note_state(w, "connected to database \"%s\" (%s) as %s, listening on \"%s\" (room \"%s\", %d member%s)",
					   w->dbname, w->where, w->role, w->channel, w->room, w->nusers,
					   w->nusers == 1 ? "" : "s");
		else if (w->mode == MODE_JSON)
			note_state(w, "connected to database \"%s\" (%s) as %s, listening on \"%s\" after seq %lld",
					   w->dbname, w->where, w->role, w->channel, w->last_seq);
		else
			note_state(w, "connected to database \"%s\" (%s) as %s, listening on \"%s\": %lld online, %lld busy, %lld away",
					   w->dbname, w->where, w->role, w->channel,
					   w->counts[WS_ONLINE], w->counts[WS_BUSY], w->counts[WS_AWAY]);
	}
	else
	{
		w->reconnects++;
		if (w->room)
			note_state(w, "reconnected, room \"%s\" reloaded (%d members)", w->room, w->nusers);
		else
			note_state(w, "reconnected, caught up %ld event%s through changes(), now after seq %lld",
					   w->caught_up, w->caught_up == 1 ? "" : "s", w->last_seq);
	}
	if (w->mode == MODE_LINES)
		lines_summary(w);
	free(w->last_error);
	w->last_error = NULL;
	return true;
}

/*
 * The first connection: every failure is fatal, with its exit code.
 */
void
conn_first(Watch *w)
{
	const char *keywords[8];
	const char *values[8];
	char	   *err = NULL;

	if (w->conninfo &&
		(strchr(w->conninfo, '=') != NULL ||
		 strncmp(w->conninfo, "postgresql://", 13) == 0 ||
		 strncmp(w->conninfo, "postgres://", 11) == 0))
	{
		PQconninfoOption *opts = PQconninfoParse(w->conninfo, &err);

		if (opts == NULL)
			fatal(w, EXIT_WATCH_CONNINFO, "invalid connection string: %s",
				  err ? one_line(err) : "out of memory");
		PQconninfoFree(opts);
	}

	connect_params(w, keywords, values);
	w->conn = PQconnectdbParams(keywords, values, 1);
	if (w->conn == NULL)
		fatal(w, EXIT_WATCH_CONNECT, "could not connect: out of memory");
	if (PQstatus(w->conn) != CONNECTION_OK)
		fatal(w, EXIT_WATCH_CONNECT, "could not connect: %s",
			  one_line(PQerrorMessage(w->conn)));
	connected(w);
	start_session(w);
}

/*
 * Start a reconnection without waiting for it: the main loop goes on
 * reading keys and redrawing while conn_continue() takes it further each
 * time the socket is ready, as PQconnectPoll() asks.
 */
void
conn_retry(Watch *w)
{
	const char *keywords[8];
	const char *values[8];
	const char *timeout = getenv("PGCONNECT_TIMEOUT");
	double		secs = atof(timeout ? timeout : WATCH_CONNECT_TIMEOUT);

	connect_params(w, keywords, values);
	w->conn = PQconnectStartParams(keywords, values, 1);
	if (w->conn == NULL)
	{
		conn_lost(w, "out of memory");
		return;
	}
	if (PQstatus(w->conn) == CONNECTION_BAD)
	{
		char	   *err = one_line(PQerrorMessage(w->conn));

		conn_lost(w, err);
		free(err);
		return;
	}
	w->state = CONN_CONNECTING;
	w->connect_poll = PGRES_POLLING_WRITING;
	/* libpq's own timeout applies only to blocking connections */
	w->connect_deadline = now_monotonic() + (secs > 0 ? secs : atof(WATCH_CONNECT_TIMEOUT));
}

/*
 * Take a reconnection further: the socket is ready for what PQconnectPoll()
 * waited for, or the attempt ran out of time.  Once connected, the session
 * starts as after the first connection.
 */
void
conn_continue(Watch *w)
{
	if (now_monotonic() >= w->connect_deadline)
	{
		conn_lost(w, "timeout expired");
		return;
	}
	w->connect_poll = PQconnectPoll(w->conn);
	if (w->connect_poll == PGRES_POLLING_FAILED)
	{
		char	   *err = one_line(PQerrorMessage(w->conn));

		conn_lost(w, err);
		free(err);
		return;
	}
	if (w->connect_poll != PGRES_POLLING_OK)
		return;
	connected(w);
	start_session(w);
}

/*
 * Re-read what events do not announce (heartbeats that change nothing,
 * session counts, last activity) and what they changed: the counts and the
 * model's rows, or the whole room.  Returns false when the connection was
 * lost.
 */
bool
conn_refresh(Watch *w)
{
	bool		ok;

	if (w->room)
		ok = load_room(w);
	else
		ok = load_users(w);
	if (!ok)
		return false;
	w->reload = false;
	w->dirty = false;
	w->last_refresh = now_monotonic();
	if (!measure_clock(w))
		return false;
	model_prune(w, now_server(w));
	return true;
}

/*
 * One notification: shown once, in order; one whose seq was applied
 * already (during a catch-up) is skipped.
 */
static void
handle_notification(Watch *w, const char *payload)
{
	JsonObject	ev;
	long long	seq;

	if (!json_parse_object(payload, &ev) || !json_get_seq(&ev, &seq))
	{
		if (w->mode == MODE_JSON)
		{
			fflush(stdout);
			fprintf(stderr, "%s: ignored a notification that is not a presence event\n",
					WATCH_PROGNAME);
		}
		json_free_object(&ev);
		return;
	}
	if (seq <= w->last_seq)
	{
		json_free_object(&ev);
		return;
	}
	w->last_seq = seq;

	if (w->mode == MODE_JSON)
	{
		fputs(payload, stdout);
		fputc('\n', stdout);
		fflush(stdout);
	}
	else
	{
		char	   *text = event_describe(w, &ev);
		double		at = parse_iso_time(json_get_string(&ev, "at"));

		if (w->mode == MODE_LINES)
			lines_event(w, at, seq, text, false);
		else
		{
			log_add(w, at, seq, text, false);
			if (w->room)
				w->reload = true;
			else
			{
				const char *user = json_get_string(&ev, "user_id");
				const char *status = json_get_string(&ev, "status");

				if (user)
				{
					WatchUser  *u = model_add(w, user);

					if (status)
					{
						const char *msg = json_get_string(&ev, "message");
						const char *la = json_get_string(&ev, "last_active");

						u->status = status_from_text(status);
						free(u->message);
						u->message = msg ? watch_strdup(msg) : NULL;
						if (la)
							u->last_active = parse_iso_time(la);
					}
					u->dirty = true;
					w->dirty = true;
				}
			}
			w->need_redraw = true;
		}
		free(text);
	}
	json_free_object(&ev);
}

/*
 * Read what the server sent and handle every notification.
 */
void
conn_notifications(Watch *w)
{
	PGnotify   *n;

	if (w->conn == NULL)
		return;
	if (!PQconsumeInput(w->conn) || PQstatus(w->conn) == CONNECTION_BAD)
	{
		char	   *msg = one_line(PQerrorMessage(w->conn));

		/* deliver what came before the end, then say it ended */
		while ((n = PQnotifies(w->conn)) != NULL)
		{
			handle_notification(w, n->extra);
			PQfreemem(n);
		}
		conn_lost(w, msg[0] ? msg : "connection lost");
		free(msg);
		return;
	}
	while ((n = PQnotifies(w->conn)) != NULL)
	{
		handle_notification(w, n->extra);
		PQfreemem(n);
	}
}
