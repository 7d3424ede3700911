/*-------------------------------------------------------------------------
 *
 * main.c
 *	  presence_watch: a live terminal viewer of the presence extension.
 *
 *	  This file reads the options, picks the output mode (full screen on a
 *	  terminal, plain lines when stdout is not one, JSON lines with
 *	  --json), turns signals into flags through a self-pipe, and runs the
 *	  main loop: read notifications, refresh what events do not announce,
 *	  reconnect when due, redraw, and wait in poll() for the next of these.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <langinfo.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "watch.h"

static Watch watch;
static int	signal_pipe[2] = {-1, -1};
static volatile sig_atomic_t got_quit;
static volatile sig_atomic_t got_winch;
static volatile sig_atomic_t got_tstp;

/*
 * Monotonic seconds: for timers that must not jump with the wall clock.
 */
double
now_monotonic(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * The server's clock, estimated from the local one and the offset measured
 * at the last load: "3 min ago" must not depend on the two clocks agreeing.
 */
double
now_server(const Watch *w)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return tv.tv_sec + tv.tv_usec / 1e6 + w->clock_offset;
}

/*
 * Leave with one line on stderr and a distinct exit code, giving the
 * terminal back first.
 */
void
fatal(Watch *w, int code, const char *fmt,...)
{
	va_list		ap;

	if (w->screen_active)
		screen_end(w);
	fflush(stdout);
	fprintf(stderr, "%s: ", WATCH_PROGNAME);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (w->conn)
		PQfinish(w->conn);
	exit(code);
}

/*
 * Say that the connection changed state.  On the full screen the header
 * says it; in line mode it is a line of the output; with --json it goes to
 * stderr, so that stdout stays pure JSON.
 */
void
note_state(Watch *w, const char *fmt,...)
{
	va_list		ap;
	char	   *text;

	va_start(ap, fmt);
	text = watch_vprintf(fmt, ap);
	va_end(ap);

	switch (w->mode)
	{
		case MODE_JSON:
			fflush(stdout);
			fprintf(stderr, "%s: %s\n", WATCH_PROGNAME, text);
			fflush(stderr);
			break;
		case MODE_LINES:
			lines_state(w, text);
			break;
		case MODE_TABLE:
			w->need_redraw = true;
			break;
	}
	free(text);
}

/* --help: the usage, the keys and the exit codes. */
static void
usage(void)
{
	printf("%s shows who is online in a database with the presence extension, live.\n\n",
		   WATCH_PROGNAME);
	printf("Usage:\n  %s [CONNINFO] [--room ROOM] [--json] [--since SEQ]\n\n",
		   WATCH_PROGNAME);
	printf("CONNINFO is a libpq connection string or URI (\"dbname=app host=db\",\n"
		   "\"postgresql://app@db/app\") or a database name; without it the PG*\n"
		   "environment variables and libpq's defaults apply, as for psql.\n\n");
	printf("Options:\n");
	printf("  -r, --room ROOM   show the members of ROOM, their metadata and who is typing\n");
	printf("  -j, --json        print each event as one JSON object per line, nothing else\n");
	printf("  -s, --since SEQ   first print the events after SEQ from presence.changes()\n");
	printf("                    (users view only; default: start from now)\n");
	printf("  -V, --version     print the version and exit\n");
	printf("  -h, --help        print this help and exit\n\n");
	printf("On a terminal the view is redrawn in place (keys: q quit, r reload,\n"
		   "Ctrl-L redraw); when stdout is not a terminal each event is one line.\n"
		   "Colours follow NO_COLOR.  After a lost connection it retries with\n"
		   "backoff, LISTENs again, reloads and catches up through changes().\n\n");
	printf("Exit status:\n");
	printf("  0  quit (q, Ctrl-C, SIGTERM)\n");
	printf("  1  a query failed unexpectedly\n");
	printf("  2  bad arguments\n");
	printf("  3  invalid connection string\n");
	printf("  4  could not connect at startup\n");
	printf("  5  the presence extension is not installed in the database\n");
	printf("  6  permission denied (the role lacks USAGE and EXECUTE grants)\n");
}

/*
 * Bad arguments: one line, and the way to the help.
 */
static void
usage_error(const char *fmt,...)
	__attribute__((format(printf, 1, 2), noreturn));

static void
usage_error(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "%s: ", WATCH_PROGNAME);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (try \"%s --help\")\n", WATCH_PROGNAME);
	exit(EXIT_WATCH_USAGE);
}

/*
 * Read the options and the connection string, and pick the output
 * mode: JSON if asked, the full screen on a terminal, plain lines otherwise.
 */
static void
parse_options(Watch *w, int argc, char **argv)
{
	static const struct option long_options[] = {
		{"room", required_argument, NULL, 'r'},
		{"json", no_argument, NULL, 'j'},
		{"since", required_argument, NULL, 's'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0}
	};
	int			c;
	bool		json = false;

	opterr = 0;
	while ((c = getopt_long(argc, argv, ":r:js:Vh", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 'r':
				if (optarg[0] == '\0')
					usage_error("the room name must not be empty");
				w->room = optarg;
				break;
			case 'j':
				json = true;
				break;
			case 's':
				{
					char	   *end;

					errno = 0;
					w->since = strtoll(optarg, &end, 10);
					if (errno != 0 || end == optarg || *end != '\0' || w->since < 0)
						usage_error("invalid --since value \"%s\": expected a seq (0 or more)",
									optarg);
					break;
				}
			case 'V':
				printf("%s (presence) %s\n", WATCH_PROGNAME, WATCH_VERSION);
				exit(EXIT_WATCH_OK);
			case 'h':
				usage();
				exit(EXIT_WATCH_OK);
			case ':':
				usage_error("option \"%s\" needs a value", argv[optind - 1]);
			default:
				if (optopt)
					usage_error("unknown option \"-%c\"", optopt);
				usage_error("unknown option \"%s\"", argv[optind - 1]);
		}
	}
	if (optind < argc)
		w->conninfo = argv[optind++];
	if (optind < argc)
		usage_error("too many arguments, starting with \"%s\"", argv[optind]);
	if (w->room && w->since >= 0)
		usage_error("--since applies to the users view, not to --room (room events have no history)");

	if (json)
		w->mode = MODE_JSON;
	else
	{
		const char *term = getenv("TERM");

		if (isatty(STDOUT_FILENO) && term && term[0] && strcmp(term, "dumb") != 0)
			w->mode = MODE_TABLE;
		else
			w->mode = MODE_LINES;
	}
}

/* Signal handler: set a flag and wake the loop through the self-pipe. */
static void
on_signal(int signo)
{
	int			save_errno = errno;
	char		c = (char) signo;

	switch (signo)
	{
		case SIGWINCH:
			got_winch = 1;
			break;
		case SIGTSTP:
			got_tstp = 1;
			break;
		default:
			got_quit = signo;
			break;
	}
	if (signal_pipe[1] >= 0 && write(signal_pipe[1], &c, 1) < 0)
	{
		/* the pipe is full: the loop wakes up anyway */
	}
	errno = save_errno;
}

/* Install a signal handler (without SA_RESTART: poll() must wake). */
static void
set_handler(int signo, void (*handler) (int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	sigaction(signo, &sa, NULL);
}

/*
 * Signals only set flags and wake poll() through a pipe: the loop does the
 * work, so that the terminal is restored by ordinary code.
 */
static void
setup_signals(Watch *w)
{
	if (pipe(signal_pipe) == 0)
	{
		fcntl(signal_pipe[0], F_SETFL, O_NONBLOCK);
		fcntl(signal_pipe[1], F_SETFL, O_NONBLOCK);
		fcntl(signal_pipe[0], F_SETFD, FD_CLOEXEC);
		fcntl(signal_pipe[1], F_SETFD, FD_CLOEXEC);
	}
	set_handler(SIGINT, on_signal);
	set_handler(SIGTERM, on_signal);
	set_handler(SIGHUP, on_signal);
	if (w->mode == MODE_TABLE)
	{
		set_handler(SIGWINCH, on_signal);
		set_handler(SIGTSTP, on_signal);
	}
}

/*
 * Ctrl-Z on the full screen: give the terminal back, stop, and take it
 * again when continued.
 */
static void
suspend_self(Watch *w)
{
	screen_suspend(w);
	set_handler(SIGTSTP, SIG_DFL);
	raise(SIGTSTP);
	/* continued */
	set_handler(SIGTSTP, on_signal);
	screen_begin(w);
	w->need_redraw = true;
}

/*
 * Keys on the full screen.
 */
static void
read_keys(Watch *w)
{
	char		buf[64];
	ssize_t		n = read(STDIN_FILENO, buf, sizeof(buf));

	if (n == 0)
	{
		/* the terminal is gone: stop reading it */
		w->keys = false;
		return;
	}
	for (ssize_t i = 0; i < n; i++)
	{
		switch (buf[i])
		{
			case 'q':
			case 'Q':
				got_quit = SIGTERM;
				break;
			case 'r':
			case 'R':
				w->reload = true;
				break;
			case '\f':			/* Ctrl-L */
				w->need_redraw = true;
				break;
			default:
				break;
		}
	}
}

/*
 * Read the options, connect (any startup error ends the program), then
 * loop until q, Ctrl-C or a signal.
 */
int
main(int argc, char **argv)
{
	Watch	   *w = &watch;
	double		next_tick = 0;

	setlocale(LC_ALL, "");
	w->utf8 = strcmp(nl_langinfo(CODESET), "UTF-8") == 0;
	w->since = -1;
	w->last_seq = -1;
	w->backoff = WATCH_BACKOFF_FIRST;
	parse_options(w, argc, argv);
	{
		const char *no_color = getenv("NO_COLOR");

		w->color = w->mode == MODE_TABLE && !(no_color && no_color[0]);
	}
	w->keys = w->mode == MODE_TABLE && isatty(STDIN_FILENO);
	setup_signals(w);

	conn_first(w);
	if (w->mode == MODE_TABLE)
	{
		screen_begin(w);
		w->need_redraw = true;
	}

	while (!got_quit)
	{
		struct pollfd fds[3];
		int			nfds = 0;
		int			conn_fd = -1;
		double		now,
					wake;
		int			timeout_ms;

		if (got_winch)
		{
			got_winch = 0;
			w->need_redraw = true;
		}
		if (got_tstp)
		{
			got_tstp = 0;
			suspend_self(w);
		}

		/* Notifications, including any that arrived during a query. */
		if (w->state == CONN_CONNECTED)
			conn_notifications(w);

		now = now_monotonic();
		if (w->state == CONN_CONNECTED && w->mode == MODE_TABLE &&
			(((w->dirty || w->reload) && now - w->last_refresh >= 0.1) ||
			 now - w->last_refresh >= WATCH_REFRESH_SECONDS))
		{
			if (conn_refresh(w))
				conn_notifications(w);
			w->need_redraw = true;
		}

		if (w->state == CONN_DISCONNECTED && now >= w->retry_at)
		{
			conn_retry(w);
			w->need_redraw = true;
		}
		if (w->state == CONN_CONNECTING && now >= w->connect_deadline)
		{
			conn_continue(w);	/* says it timed out */
			w->need_redraw = true;
		}

		/* Redraw on change, and every second for the "ago" column. */
		if (w->mode == MODE_TABLE)
		{
			now = now_monotonic();
			if (w->need_redraw || now >= next_tick)
			{
				screen_draw(w);
				w->need_redraw = false;
				next_tick = now + 1.0;
			}
		}

		/* Wait for the socket, a key, a signal or the next timer. */
		now = now_monotonic();
		wake = now + 1.0;
		if (w->mode == MODE_TABLE && next_tick < wake)
			wake = next_tick;
		if (w->state == CONN_DISCONNECTED && w->retry_at < wake)
			wake = w->retry_at;
		if (w->state == CONN_CONNECTING && w->connect_deadline < wake)
			wake = w->connect_deadline;
		if (w->state == CONN_CONNECTED && w->mode == MODE_TABLE)
		{
			double		due = w->last_refresh +
				((w->dirty || w->reload) ? 0.1 : WATCH_REFRESH_SECONDS);

			if (due < wake)
				wake = due;
		}
		timeout_ms = (int) ((wake - now) * 1000.0) + 1;
		if (timeout_ms < 0)
			timeout_ms = 0;

		if ((w->state == CONN_CONNECTED || w->state == CONN_CONNECTING) &&
			(conn_fd = PQsocket(w->conn)) >= 0)
		{
			fds[nfds].fd = conn_fd;
			fds[nfds].events =
				(w->state == CONN_CONNECTING &&
				 w->connect_poll == PGRES_POLLING_WRITING) ? POLLOUT : POLLIN;
			nfds++;
		}
		if (w->keys)
		{
			fds[nfds].fd = STDIN_FILENO;
			fds[nfds].events = POLLIN;
			nfds++;
		}
		if (signal_pipe[0] >= 0)
		{
			fds[nfds].fd = signal_pipe[0];
			fds[nfds].events = POLLIN;
			nfds++;
		}
		if (poll(fds, nfds, timeout_ms) < 0)
		{
			if (errno == EINTR)
				continue;
			fatal(w, EXIT_WATCH_ERROR, "poll failed: %s", strerror(errno));
		}
		for (int i = 0; i < nfds; i++)
		{
			if (fds[i].revents == 0)
				continue;
			if (fds[i].fd == signal_pipe[0])
			{
				char		drain[64];

				while (read(signal_pipe[0], drain, sizeof(drain)) > 0)
					;
			}
			else if (fds[i].fd == STDIN_FILENO && w->keys)
				read_keys(w);
			else if (fds[i].fd == conn_fd && w->state == CONN_CONNECTING)
			{
				conn_continue(w);
				w->need_redraw = true;
			}
			/* a connected socket is read at the top of the loop */
		}
	}

	if (w->screen_active)
		screen_end(w);
	fflush(stdout);
	if (w->conn)
		PQfinish(w->conn);
	return EXIT_WATCH_OK;
}
