/*-------------------------------------------------------------------------
 *
 * render.c
 *	  presence_watch's output for people: the full-screen users and room
 *	  views on a terminal (alternate screen, redrawn in place, ANSI colours
 *	  unless NO_COLOR is set), and the plain line output used when stdout
 *	  is not a terminal.
 *
 *	  Ids, messages and metadata are other people's text: every control
 *	  character (C0, DEL, C1) and every invalid byte is shown as '?', so
 *	  that nothing in the data can move the cursor or change the terminal;
 *	  display widths come from the locale (wcwidth), so that wide and
 *	  combining characters keep the columns straight.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>
#include <wchar.h>

#include "watch.h"

#define ESC "\033"

/* Colours (SGR) */
#define C_RESET		ESC "[0m"
#define C_BOLD		ESC "[1m"
#define C_DIM		ESC "[2m"
#define C_RED		ESC "[31m"
#define C_GREEN		ESC "[32m"
#define C_YELLOW	ESC "[33m"
#define C_GREY		ESC "[90m"

static struct termios saved_termios;
static bool termios_saved;

/* Append n spaces (padding). */
static void
buf_spaces(Str *b, int n)
{
	for (int i = 0; i < n; i++)
		str_addn(b, " ", 1);
}

/* A colour, only when colours are on. */
static void
buf_color(const Watch *w, Str *b, const char *sgr)
{
	if (w->color)
		str_add(b, sgr);
}

/*
 * Write everything, despite signals and short writes: a frame is one
 * write, so that the terminal never shows half of it.
 */
static void
write_all(int fd, const char *p, size_t n)
{
	while (n > 0)
	{
		ssize_t		k = write(fd, p, n);

		if (k < 0)
		{
			if (errno == EINTR)
				continue;
			return;
		}
		p += k;
		n -= k;
	}
}

/*
 * Append at most maxw display columns of s, safely: control characters and
 * invalid bytes become '?'; a string that does not fit ends with an
 * ellipsis.  Returns the columns used.
 */
static int
put_text(const Watch *w, Str *b, const char *s, int maxw)
{
	mbstate_t	st;
	int			used = 0;
	const char *p = s ? s : "";
	size_t		left = strlen(p);
	const char *ellipsis = w->utf8 ? "\xe2\x80\xa6" : "~";

	if (maxw <= 0)
		return 0;
	memset(&st, 0, sizeof(st));
	while (left > 0)
	{
		wchar_t		wc;
		size_t		n = mbrtowc(&wc, p, left, &st);
		int			cw;
		bool		bad = false;

		if (n == (size_t) -1 || n == (size_t) -2 || n == 0)
		{
			memset(&st, 0, sizeof(st));
			n = 1;
			bad = true;
		}
		else if (wc < 0x20 || wc == 0x7f || (wc >= 0x80 && wc < 0xa0))
			bad = true;
		cw = bad ? 1 : wcwidth(wc);
		if (cw < 0)
		{
			bad = true;
			cw = 1;
		}
		/* keep one column for the ellipsis unless this is the end */
		if (used + cw > maxw || (used + cw == maxw && left > n))
		{
			if (used < maxw)
			{
				str_add(b, ellipsis);
				used++;
			}
			break;
		}
		if (bad)
			str_addn(b, "?", 1);
		else
			str_addn(b, p, n);
		used += cw;
		p += n;
		left -= n;
	}
	return used;
}

/* put_text() in the dim colour: notes, placeholders, times. */
static int
put_dim(const Watch *w, Str *b, const char *s, int maxw)
{
	int			used;

	buf_color(w, b, C_DIM);
	used = put_text(w, b, s, maxw);
	buf_color(w, b, C_RESET);
	return used;
}

/* The display width of s, as put_text() would print it. */
static int
text_width(const Watch *w, const char *s)
{
	Str			scratch = {0};
	int			n = put_text(w, &scratch, s, 1 << 20);

	free(scratch.data);
	return n;
}

/* A cell: s in exactly width columns, left or right aligned. */
static void
put_cell(const Watch *w, Str *b, const char *s, int width, bool right)
{
	if (width <= 0)
		return;
	if (right)
	{
		int			tw = text_width(w, s);

		if (tw < width)
			buf_spaces(b, width - tw);
		put_text(w, b, s, width);
	}
	else
		buf_spaces(b, width - put_text(w, b, s, width));
}

/* "just now", "42 s ago", "3 min ago", "2 h ago", "3 d ago" */
char *
format_ago(double seconds)
{
	if (seconds < 5)
		return watch_strdup("just now");
	if (seconds < 60)
		return watch_printf("%d s ago", (int) seconds);
	if (seconds < 3600)
		return watch_printf("%d min ago", (int) (seconds / 60));
	if (seconds < 48 * 3600)
		return watch_printf("%d h ago", (int) (seconds / 3600));
	return watch_printf("%d d ago", (int) (seconds / 86400));
}

/* How long ago a time was, for the LAST ACTIVE column; "-" if unknown. */
static char *
ago_of(const Watch *w, double t)
{
	if (t <= 0)
		return watch_strdup("-");
	return format_ago(now_server(w) - t);
}

/* HH:MM:SS in local time. */
static void
clock_text(double t, char *out, size_t size)
{
	time_t		secs = (time_t) t;
	struct tm	tm;

	localtime_r(&secs, &tm);
	strftime(out, size, "%H:%M:%S", &tm);
}

/* The colour of a status's dot: green, red, yellow, grey. */
static const char *
status_color(WatchStatus st)
{
	switch (st)
	{
		case WS_ONLINE:
			return C_GREEN;
		case WS_BUSY:
			return C_RED;
		case WS_AWAY:
			return C_YELLOW;
		default:
			return C_GREY;
	}
}

/* A status dot, coloured when colours are on. */
static void
put_dot(const Watch *w, Str *b, WatchStatus st)
{
	buf_color(w, b, status_color(st));
	str_add(b, w->utf8 ? "\xe2\x97\x8f" : "*");
	buf_color(w, b, C_RESET);
}

/* End a screen line: clear the rest of it, and go to the next. */
static void
end_line(Str *b, int *row, int rows)
{
	str_add(b, ESC "[K");
	(*row)++;
	if (*row < rows)
		str_add(b, "\r\n");
}

/*
 * Take the terminal: keys without echo or line editing (Ctrl-C still
 * signals), the alternate screen, no cursor.
 */
void
screen_begin(Watch *w)
{
	static const char enter[] = ESC "[?1049h" ESC "[?25l" ESC "[H" ESC "[2J";

	if (w->keys && tcgetattr(STDIN_FILENO, &saved_termios) == 0)
	{
		struct termios raw = saved_termios;

		termios_saved = true;
		raw.c_lflag &= ~(ICANON | ECHO);
		raw.c_cc[VMIN] = 1;
		raw.c_cc[VTIME] = 0;
		tcsetattr(STDIN_FILENO, TCSADRAIN, &raw);
	}
	write_all(STDOUT_FILENO, enter, sizeof(enter) - 1);
	w->screen_active = true;
}

/*
 * Give the terminal back as it was: main screen, cursor, modes.
 */
void
screen_end(Watch *w)
{
	static const char leave[] = ESC "[0m" ESC "[?25h" ESC "[?1049l";

	if (!w->screen_active)
		return;
	write_all(STDOUT_FILENO, leave, sizeof(leave) - 1);
	if (termios_saved)
	{
		tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_termios);
		termios_saved = false;
	}
	w->screen_active = false;
}

/* Ctrl-Z: give the terminal back before stopping. */
void
screen_suspend(Watch *w)
{
	screen_end(w);
}

/*
 * The first line: what is watched, how many are online, and the state of
 * the connection; the clock on the right.
 */
static void
draw_header(Watch *w, Str *b, int cols)
{
	Str			left = {0};
	char	   *state;
	const char *state_color;
	char		clock[16];
	int			used,
				sw,
				avail;
	const char *dot = w->utf8 ? " \xc2\xb7 " : " - ";

	str_add(&left, " presence_watch");
	str_add(&left, dot);
	str_add(&left, w->dbname ? w->dbname : "?");
	str_add(&left, dot);
	if (w->room)
	{
		int			typing = 0;
		char	   *n;

		for (int i = 0; i < w->nusers; i++)
			typing += w->users[i].typing;
		str_add(&left, "room ");
		str_add(&left, w->room);
		n = watch_printf("%s%d member%s%s%d typing", dot, w->nusers,
						 w->nusers == 1 ? "" : "s", dot, typing);
		str_add(&left, n);
		free(n);
	}
	else
	{
		char	   *n = watch_printf("%lld online%s%lld busy%s%lld away",
									 w->counts[WS_ONLINE], dot,
									 w->counts[WS_BUSY], dot,
									 w->counts[WS_AWAY]);

		str_add(&left, n);
		free(n);
	}
	str_add(&left, dot);

	switch (w->state)
	{
		case CONN_CONNECTED:
			state = watch_strdup("connected");
			state_color = C_GREEN;
			break;
		case CONN_CONNECTING:
			state = watch_strdup(w->utf8 ? "reconnecting\xe2\x80\xa6" : "reconnecting...");
			state_color = C_YELLOW;
			break;
		default:
			{
				double		left_s = w->retry_at - now_monotonic();

				state = watch_printf("disconnected, retrying in %d s",
									 left_s > 0 ? (int) (left_s + 0.999) : 0);
				state_color = C_RED;
				break;
			}
	}
	clock_text(now_server(w) - w->clock_offset, clock, sizeof(clock));

	sw = text_width(w, state);
	avail = cols - 1;
	buf_color(w, b, C_BOLD);
	used = put_text(w, b, left.data, avail - sw > 0 ? avail - sw : 0);
	buf_color(w, b, C_RESET);
	buf_color(w, b, C_BOLD);
	buf_color(w, b, state_color);
	used += put_text(w, b, state, avail - used);
	buf_color(w, b, C_RESET);
	if (used + 2 + (int) strlen(clock) <= avail)
	{
		buf_spaces(b, avail - used - (int) strlen(clock));
		str_add(b, clock);
	}
	free(state);
	free(left.data);
}

/*
 * The second line: where, as whom; or why the connection was lost.
 */
static void
draw_info(Watch *w, Str *b, int cols)
{
	char	   *info;

	if (w->state != CONN_CONNECTED && w->last_error)
	{
		info = watch_printf(" lost: %s", w->last_error);
		buf_color(w, b, C_RED);
	}
	else
	{
		char	   *seq = w->last_seq >= 0 ?
			watch_printf(", after seq %lld", w->last_seq) : watch_strdup("");

		info = watch_printf(" %s as %s, channel \"%s\"%s   q quit  r reload",
							w->where ? w->where : "?", w->role ? w->role : "?",
							w->channel ? w->channel : "?", seq);
		free(seq);
		buf_color(w, b, C_DIM);
	}
	put_text(w, b, info, cols - 1);
	buf_color(w, b, C_RESET);
	free(info);
}

/*
 * The recent events, oldest first, in the lines given.
 */
static void
draw_events(Watch *w, Str *b, int cols, int lines, int *row, int rows)
{
	int			first = w->nlog > lines ? w->nlog - lines : 0;

	buf_color(w, b, C_BOLD);
	put_text(w, b, " recent events", cols - 1);
	buf_color(w, b, C_RESET);
	end_line(b, row, rows);
	for (int i = first; i < w->nlog; i++)
	{
		int			idx = (w->log_next - w->nlog + i + WATCH_EVENT_LOG) % WATCH_EVENT_LOG;
		WatchLogLine *l = &w->log[idx];
		char		clock[16];
		char	   *head;
		int			used;

		clock_text(l->at - w->clock_offset, clock, sizeof(clock));
		head = watch_printf(" %s  #%lld  ", clock, l->seq);
		used = put_dim(w, b, head, cols - 1);
		used += put_text(w, b, l->text, cols - 1 - used);
		if (l->caught_up)
		{
			put_dim(w, b, " (caught up)", cols - 1 - used);
		}
		free(head);
		end_line(b, row, rows);
	}
	if (w->nlog == 0)
	{
		put_dim(w, b, "   (none yet)", cols - 1);
		end_line(b, row, rows);
	}
}

/*
 * The users view: one row per user, in model order.
 */
static void
draw_users(Watch *w, Str *b, int cols, int avail, int *row, int rows)
{
	int			uw = 4,
				mw;
	int			shown;

	for (int i = 0; i < w->nusers; i++)
	{
		int			tw = text_width(w, w->users[i].user_id);

		if (tw > uw)
			uw = tw;
	}
	if (uw > 24)
		uw = 24;
	/* " ● " user "  " status(7) "  " message "  " ago(11) "  " sessions(8) */
	mw = cols - 1 - (3 + uw + 2 + 7 + 2 + 2 + 11 + 2 + 8);
	if (mw < 0)
		mw = 0;

	buf_color(w, b, C_BOLD);
	str_add(b, "   ");
	put_cell(w, b, "USER", uw, false);
	str_add(b, "  ");
	put_cell(w, b, "STATUS", 7, false);
	str_add(b, "  ");
	put_cell(w, b, "MESSAGE", mw, false);
	str_add(b, "  ");
	put_cell(w, b, "LAST ACTIVE", 11, false);
	str_add(b, "  ");
	put_cell(w, b, "SESSIONS", 8, true);
	buf_color(w, b, C_RESET);
	end_line(b, row, rows);
	avail--;

	shown = w->nusers;
	if (shown > avail)
		shown = avail > 0 ? avail - 1 : 0;
	for (int i = 0; i < shown; i++)
	{
		WatchUser  *u = &w->users[i];
		char	   *ago = ago_of(w, u->last_active);
		char		sessions[16];

		snprintf(sessions, sizeof(sessions), "%d", u->sessions);
		str_add(b, " ");
		put_dot(w, b, u->status);
		str_add(b, " ");
		put_cell(w, b, u->user_id, uw, false);
		str_add(b, "  ");
		put_cell(w, b, status_text(u->status), 7, false);
		str_add(b, "  ");
		put_cell(w, b, u->message ? u->message : "", mw, false);
		str_add(b, "  ");
		put_cell(w, b, ago, 11, false);
		str_add(b, "  ");
		put_cell(w, b, sessions, 8, true);
		free(ago);
		end_line(b, row, rows);
	}
	if (shown < w->nusers && avail > 0)
	{
		char	   *more = watch_printf("   ... and %d more", w->nusers - shown);

		put_dim(w, b, more, cols - 1);
		free(more);
		end_line(b, row, rows);
	}
	else if (w->nusers == 0 && avail > 0)
	{
		put_dim(w, b, "   (nobody online or recently seen)", cols - 1);
		end_line(b, row, rows);
	}
}

/*
 * The room view: the members in the order they joined, their status,
 * whether they type, their message and their sessions' metadata.
 */
static void
draw_room(Watch *w, Str *b, int cols, int avail, int *row, int rows)
{
	int			uw = 4,
				msgw = 0,
				metaw;
	int			shown;
	const char *typing_text = w->utf8 ? "typing\xe2\x80\xa6" : "typing...";
	Str			typing = {0};
	int			ntyping = 0;

	for (int i = 0; i < w->nusers; i++)
	{
		int			tw = text_width(w, w->users[i].user_id);

		if (tw > uw)
			uw = tw;
		if (w->users[i].message)
		{
			tw = text_width(w, w->users[i].message);
			if (tw > msgw)
				msgw = tw;
		}
	}
	if (uw > 24)
		uw = 24;
	if (msgw > 0 && msgw < 7)
		msgw = 7;
	if (msgw > 24)
		msgw = 24;
	/* " ● " user "  " status(7) "  " ago(11) "  " typing(9) "  " [message "  "] meta */
	metaw = cols - 1 - (3 + uw + 2 + 7 + 2 + 11 + 2 + 9 + 2 + (msgw ? msgw + 2 : 0));
	if (metaw < 0)
		metaw = 0;

	buf_color(w, b, C_BOLD);
	str_add(b, "   ");
	put_cell(w, b, "USER", uw, false);
	str_add(b, "  ");
	put_cell(w, b, "STATUS", 7, false);
	str_add(b, "  ");
	put_cell(w, b, "LAST ACTIVE", 11, false);
	str_add(b, "  ");
	put_cell(w, b, "TYPING", 9, false);
	str_add(b, "  ");
	if (msgw)
	{
		put_cell(w, b, "MESSAGE", msgw, false);
		str_add(b, "  ");
	}
	put_text(w, b, "META", metaw);
	buf_color(w, b, C_RESET);
	end_line(b, row, rows);
	avail -= 2;					/* the heading, and the typing line */

	shown = w->nusers;
	if (shown > avail)
		shown = avail > 0 ? avail - 1 : 0;
	for (int i = 0; i < w->nusers; i++)
	{
		WatchUser  *u = &w->users[i];

		if (u->typing)
		{
			if (ntyping++ > 0)
				str_add(&typing, ", ");
			str_add(&typing, u->user_id);
		}
		if (i < shown)
		{
			char	   *ago = ago_of(w, u->last_active);
			char	   *metas = describe_metas(u->metas);

			str_add(b, " ");
			put_dot(w, b, u->status);
			str_add(b, " ");
			put_cell(w, b, u->user_id, uw, false);
			str_add(b, "  ");
			put_cell(w, b, status_text(u->status), 7, false);
			str_add(b, "  ");
			put_cell(w, b, ago, 11, false);
			str_add(b, "  ");
			buf_color(w, b, C_YELLOW);
			put_cell(w, b, u->typing ? typing_text : "", 9, false);
			buf_color(w, b, C_RESET);
			str_add(b, "  ");
			if (msgw)
			{
				put_cell(w, b, u->message ? u->message : "", msgw, false);
				str_add(b, "  ");
			}
			put_text(w, b, metas, metaw);
			free(metas);
			free(ago);
			end_line(b, row, rows);
		}
	}
	if (shown < w->nusers && avail > 0)
	{
		char	   *more = watch_printf("   ... and %d more", w->nusers - shown);

		put_dim(w, b, more, cols - 1);
		free(more);
		end_line(b, row, rows);
	}
	else if (w->nusers == 0)
	{
		put_dim(w, b, "   (nobody in the room)", cols - 1);
		end_line(b, row, rows);
	}
	if (ntyping > 0 && *row < rows)
	{
		char	   *line = watch_printf("   %s %s %s", typing.data,
										ntyping == 1 ? "is" : "are", typing_text);

		buf_color(w, b, C_YELLOW);
		put_text(w, b, line, cols - 1);
		buf_color(w, b, C_RESET);
		free(line);
		end_line(b, row, rows);
	}
	free(typing.data);
}

/*
 * Draw the whole screen in one write: home, each line cleared to its end,
 * the rest of the screen cleared.  Nothing is written in the last column,
 * so that no terminal scrolls.
 */
void
screen_draw(Watch *w)
{
	struct winsize ws;
	int			cols = 80,
				rows = 24;
	int			row = 0;
	int			event_lines = 0,
				avail;
	Str			b = {0};

	if (!w->screen_active)
		return;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0)
	{
		cols = ws.ws_col;
		rows = ws.ws_row;
	}
	model_sort(w);

	str_add(&b, ESC "[H");
	draw_header(w, &b, cols);
	end_line(&b, &row, rows);
	if (row < rows)
	{
		draw_info(w, &b, cols);
		end_line(&b, &row, rows);
	}
	if (row < rows)
		end_line(&b, &row, rows);

	/* rows left, less the recent events: a blank line, a title, the lines */
	if (rows >= 14)
	{
		event_lines = (rows - 4) / 3;
		if (event_lines > 6)
			event_lines = 6;
	}
	avail = rows - row - (event_lines ? event_lines + 2 : 0);
	if (avail > 0)
	{
		if (w->room)
			draw_room(w, &b, cols, avail, &row, rows);
		else
			draw_users(w, &b, cols, avail, &row, rows);
	}
	if (event_lines)
	{
		/* the events sit at the bottom, the newest last */
		int			n = w->nlog < event_lines ? (w->nlog ? w->nlog : 1) : event_lines;

		while (row < rows - n - 1)
			end_line(&b, &row, rows);
		draw_events(w, &b, cols, n, &row, rows);
	}
	str_add(&b, ESC "[J");
	write_all(STDOUT_FILENO, b.data, b.len);
	free(b.data);
}

/*
 * Line output: one event.
 */
void
lines_event(Watch *w, double at, long long seq, const char *text, bool caught_up)
{
	Str			b = {0};
	char		clock[16];
	char	   *head;

	clock_text(at > 0 ? at - w->clock_offset : now_server(w) - w->clock_offset,
			   clock, sizeof(clock));
	head = watch_printf("%s  #%lld  ", clock, seq);
	str_add(&b, head);
	if (w->room)
	{
		/* lines of several watchers may share a stream: say which room */
		str_add(&b, "[");
		put_text(w, &b, w->room, 1 << 20);
		str_add(&b, "] ");
	}
	put_text(w, &b, text, 1 << 20);
	if (caught_up)
		str_add(&b, "  (caught up)");
	str_add(&b, "\n");
	fputs(b.data, stdout);
	fflush(stdout);
	free(head);
	free(b.data);
}

/*
 * Line output: a change of the connection's state.
 */
void
lines_state(Watch *w, const char *text)
{
	Str			b = {0};
	char		clock[16];

	clock_text(now_server(w) - w->clock_offset, clock, sizeof(clock));
	str_add(&b, clock);
	str_add(&b, "  -- ");
	put_text(w, &b, text, 1 << 20);
	str_add(&b, "\n");
	fputs(b.data, stdout);
	fflush(stdout);
	free(b.data);
}

/*
 * Line output: who is there, after each (re)connection: the users view's
 * present users (the first 20), or the room's members.
 */
void
lines_summary(Watch *w)
{
	Str			b = {0};
	int			shown = 0;

	model_sort(w);
	str_add(&b, w->room ? "members:" : "present:");
	for (int i = 0; i < w->nusers; i++)
	{
		WatchUser  *u = &w->users[i];
		char	   *item;

		if (u->status == WS_OFFLINE && !w->room)
			continue;
		if (shown++ == 20)
		{
			str_add(&b, " ...");
			break;
		}
		item = watch_printf("%s %s (%s%s%s%s%s)", shown > 1 ? "," : "",
							u->user_id, status_text(u->status),
							u->message ? ", \"" : "", u->message ? u->message : "",
							u->message ? "\"" : "", u->typing ? ", typing" : "");
		str_add(&b, item);
		free(item);
	}
	if (shown == 0)
		str_add(&b, " nobody");
	lines_state(w, b.data);
	free(b.data);
}
