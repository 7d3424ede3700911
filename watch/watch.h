/*-------------------------------------------------------------------------
 *
 * watch.h
 *	  Shared declarations of presence_watch, the live terminal viewer of
 *	  the presence extension: its options and state (struct Watch), the
 *	  users and room members it shows, the events it parses, and the
 *	  functions each file offers to the others.
 *
 *	  main.c	options, signals, the main loop and its timers
 *	  conn.c	connecting, checks, LISTEN, loading state, catching up,
 *				reconnecting with backoff
 *	  model.c	the users / members table: lookup, sorting, pruning
 *	  event.c	parsing NOTIFY payloads (JSON), describing events,
 *				writing caught-up events as JSON
 *	  render.c	the terminal: full-screen table and room views, plain
 *				line output, colours and display widths
 *
 *-------------------------------------------------------------------------
 */
#ifndef PRESENCE_WATCH_H
#define PRESENCE_WATCH_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#define WATCH_PROGNAME		"presence_watch"
#ifndef WATCH_VERSION
#define WATCH_VERSION		"1.0"
#endif

/*
 * Exit codes, as --help documents them.
 */
#define EXIT_WATCH_OK			0	/* q, SIGINT, SIGTERM, SIGHUP */
#define EXIT_WATCH_ERROR		1	/* a query failed for another reason */
#define EXIT_WATCH_USAGE		2	/* bad arguments */
#define EXIT_WATCH_CONNINFO		3	/* the connection string is invalid */
#define EXIT_WATCH_CONNECT		4	/* cannot connect at startup */
#define EXIT_WATCH_NO_EXTENSION 5	/* presence is not installed there */
#define EXIT_WATCH_PERMISSION	6	/* the role lacks the grants */

/* Rows read per changes() call while catching up. */
#define WATCH_PAGE				1000
/* Most present users loaded through online_users(). */
#define WATCH_MAX_USERS			1000
/* Offline users stay in the table this long after they were last seen. */
#define WATCH_OFFLINE_KEEP		3600.0
/* Re-read the displayed rows this often (silent heartbeats, sessions). */
#define WATCH_REFRESH_SECONDS	2.0
/* Events remembered for the "recent events" part of the screen. */
#define WATCH_EVENT_LOG			64
/* Reconnection backoff: first delay and cap, in seconds. */
#define WATCH_BACKOFF_FIRST		1.0
#define WATCH_BACKOFF_MAX		10.0

typedef enum WatchMode
{
	MODE_TABLE,					/* full screen on a terminal */
	MODE_LINES,					/* one readable line per event */
	MODE_JSON					/* one JSON object per line */
} WatchMode;

typedef enum ConnState
{
	CONN_CONNECTED,
	CONN_DISCONNECTED,			/* waiting for retry_at */
	CONN_CONNECTING				/* a reconnection under way (connect_poll) */
} ConnState;

/* Visible statuses, in the order of the table's groups. */
typedef enum WatchStatus
{
	WS_ONLINE,
	WS_BUSY,
	WS_AWAY,
	WS_OFFLINE,
	WS_COUNT
} WatchStatus;

/*
 * One user in the table, or one member in the room view.  Times are
 * seconds since the epoch on the server's clock, 0 when unknown.
 */
typedef struct WatchUser
{
	char	   *user_id;
	WatchStatus status;
	char	   *message;		/* NULL: none */
	double		last_active;
	double		last_seen;
	int			sessions;
	bool		dirty;			/* re-read it at the next refresh */
	/* room view only */
	char	   *metas;			/* members().metas as text */
	bool		typing;
	long		order;			/* position in members() */
} WatchUser;

/* A remembered event, for the screen's "recent events" lines. */
typedef struct WatchLogLine
{
	double		at;				/* when it took effect (server clock) */
	long long	seq;
	char	   *text;			/* event_describe() text */
	bool		caught_up;		/* came from changes(), not NOTIFY */
} WatchLogLine;

/*
 * A parsed JSON object: the top-level members of a NOTIFY payload.
 * Strings are decoded; objects and arrays are kept as their JSON text.
 */
typedef enum JsonKind
{
	JK_STRING,
	JK_NUMBER,
	JK_TRUE,
	JK_FALSE,
	JK_NULL,
	JK_RAW						/* an object or array, as text */
} JsonKind;

typedef struct JsonMember
{
	char	   *key;
	JsonKind	kind;
	char	   *value;			/* decoded string, number text, raw text */
} JsonMember;

typedef struct JsonObject
{
	JsonMember *members;
	int			count;
} JsonObject;

/*
 * Everything presence_watch knows: options, connection, stream position,
 * model and screen.
 */
typedef struct Watch
{
	/* options */
	const char *conninfo;		/* NULL: libpq's defaults (PG* variables) */
	const char *room;			/* NULL: the users view */
	WatchMode	mode;
	long long	since;			/* --since, or -1 */
	bool		color;			/* ANSI colours */
	bool		utf8;			/* the locale encodes UTF-8 */
	bool		keys;			/* stdin is a terminal we read keys from */

	/* connection */
	PGconn	   *conn;
	ConnState	state;
	bool		ever_connected;
	double		retry_at;		/* when to try again (monotonic) */
	int			connect_poll;	/* CONN_CONNECTING: what PQconnectPoll waits for */
	double		connect_deadline;	/* CONN_CONNECTING: give up then */
	double		backoff;		/* the next delay */
	char	   *last_error;		/* why the connection went away */
	char	   *last_notice;	/* the server's last FATAL message */
	char	   *dbname;			/* for the header */
	char	   *where;			/* host:port or socket directory:port */
	char	   *role;
	char	   *channel;		/* the LISTENed channel */
	double		clock_offset;	/* server clock - local clock, seconds */

	/* stream */
	long long	last_seq;		/* highest seq applied; -1 before the first */
	long		caught_up;		/* events recovered by the last catch-up */
	long		reconnects;

	/* model */
	WatchUser  *users;
	int			nusers;
	int			maxusers;
	long long	counts[WS_COUNT];
	bool		dirty;			/* some users need re-reading */
	bool		reload;			/* everything needs re-reading */
	double		last_refresh;	/* monotonic */

	/* recent events */
	WatchLogLine log[WATCH_EVENT_LOG];
	int			nlog;
	int			log_next;

	/* screen */
	bool		screen_active;
	bool		need_redraw;
} Watch;

/* A growing string, always NUL-terminated (str.c). */
typedef struct Str
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Str;

/* main.c */
extern double now_monotonic(void);
extern double now_server(const Watch *w);
extern void fatal(Watch *w, int code, const char *fmt,...)
			__attribute__((format(printf, 3, 4), noreturn));
extern void note_state(Watch *w, const char *fmt,...)
			__attribute__((format(printf, 2, 3)));

/* str.c */
extern void *watch_malloc(size_t size);
extern char *watch_strdup(const char *s);
extern char *watch_vprintf(const char *fmt, va_list ap)
			__attribute__((format(printf, 1, 0)));
extern char *watch_printf(const char *fmt,...)
			__attribute__((format(printf, 1, 2)));
extern void str_reserve(Str *s, size_t more);
extern void str_addn(Str *s, const char *p, size_t n);
extern void str_add(Str *s, const char *p);
extern void str_addc(Str *s, char c);

/* conn.c */
extern void conn_first(Watch *w);
extern void conn_retry(Watch *w);
extern void conn_continue(Watch *w);
extern void conn_lost(Watch *w, const char *why);
extern bool conn_refresh(Watch *w);
extern void conn_notifications(Watch *w);
extern char *one_line(const char *msg);

/* model.c */
extern WatchStatus status_from_text(const char *s);
extern const char *status_text(WatchStatus st);
extern WatchUser *model_find(Watch *w, const char *user_id);
extern WatchUser *model_add(Watch *w, const char *user_id);
extern void model_clear(Watch *w);
extern void model_prune(Watch *w, double server_now);
extern void model_sort(Watch *w);
extern void log_add(Watch *w, double at, long long seq, const char *text,
					bool caught_up);

/* event.c */
extern bool json_parse_object(const char *text, JsonObject *obj);
extern void json_free_object(JsonObject *obj);
extern const JsonMember *json_get(const JsonObject *obj, const char *key);
extern const char *json_get_string(const JsonObject *obj, const char *key);
extern bool json_get_seq(const JsonObject *obj, long long *seq);
extern double parse_iso_time(const char *s);
extern char *event_describe(const Watch *w, const JsonObject *ev);
extern char *event_json_from_change(PGresult *res, int row);
extern char *describe_metas(const char *metas);

/* render.c */
extern void screen_begin(Watch *w);
extern void screen_end(Watch *w);
extern void screen_suspend(Watch *w);
extern void screen_draw(Watch *w);
extern void lines_event(Watch *w, double at, long long seq, const char *text,
						bool caught_up);
extern void lines_state(Watch *w, const char *text);
extern void lines_summary(Watch *w);
extern char *format_ago(double seconds);

#endif							/* PRESENCE_WATCH_H */
