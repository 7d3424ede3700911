/*
 * listen_client.c: a small libpq LISTEN client for the presence benchmarks.
 *
 * It LISTENs on one channel, stamps every notification with the time it
 * was received (CLOCK_REALTIME, the clock the server's now() reads, on the
 * same machine), and keeps the events that match a filter: a status (for
 * example "offline") and a user_id prefix.  For each of those it computes
 * the latency from the event's "at" field (for a timed change, its
 * deadline) to its receipt.  It stops when it has seen --expect distinct
 * users (and then keeps listening --grace seconds to catch duplicates), or
 * after --timeout seconds.  It ends with one summary line of key=value
 * pairs on stdout:
 *
 *   received matched distinct duplicates  counts
 *   first_recv last_recv min_at max_at    epoch seconds (6 decimals)
 *   last_after_deadline_ms                last receipt - latest "at"
 *   p50_ms p90_ms p99_ms max_ms min_ms    latency (receipt - "at")
 *
 * Build:  cc -O2 -o listen_client listen_client.c -I$(pg_config --includedir) -lpq
 * Usage:  listen_client -d CONNINFO [-c CHANNEL] [-s STATUS] [-p PREFIX]
 *                       [-n EXPECT] [-t TIMEOUT_S] [-g GRACE_S] [-r READY_FILE]
 *                       [-o EVENTS_FILE]
 *
 * -r: a file created once LISTEN is in effect, so a script can wait for it.
 * -o: every matching event as "recv_epoch at_epoch latency_ms user_id".
 * The exit status is 0 when EXPECT distinct users were seen (or no EXPECT
 * was given), 2 on timeout, 1 on errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

static double
now_epoch(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (double) ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---- a set of strings (open addressing, grows at half full) ---- */

typedef struct StrSet
{
	char	  **slots;
	size_t		cap;
	size_t		n;
} StrSet;

static uint64_t
hash_str(const char *s)
{
	uint64_t	h = 1469598103934665603ULL;	/* FNV-1a */

	for (; *s; s++)
		h = (h ^ (unsigned char) *s) * 1099511628211ULL;
	return h;
}

static void strset_grow(StrSet *set);

/* Adds s; returns false when it was already there. */
static bool
strset_add(StrSet *set, const char *s)
{
	size_t		i;

	if (set->cap == 0 || set->n * 2 >= set->cap)
		strset_grow(set);
	for (i = hash_str(s) & (set->cap - 1);; i = (i + 1) & (set->cap - 1))
	{
		if (set->slots[i] == NULL)
		{
			set->slots[i] = strdup(s);
			set->n++;
			return true;
		}
		if (strcmp(set->slots[i], s) == 0)
			return false;
	}
}

static void
strset_grow(StrSet *set)
{
	StrSet		bigger = {NULL, set->cap ? set->cap * 2 : 1024, 0};

	bigger.slots = calloc(bigger.cap, sizeof(char *));
	if (bigger.slots == NULL)
	{
		fprintf(stderr, "listen_client: out of memory\n");
		exit(1);
	}
	for (size_t i = 0; i < set->cap; i++)
		if (set->slots[i])
		{
			size_t		j;

			for (j = hash_str(set->slots[i]) & (bigger.cap - 1);
				 bigger.slots[j];
				 j = (j + 1) & (bigger.cap - 1))
				;
			bigger.slots[j] = set->slots[i];
			bigger.n++;
		}
	free(set->slots);
	*set = bigger;
}

/* ---- the few fields we need from the JSON payload ---- */

/*
 * Copy the string value of "key" (top-level, "key":"value") into out.
 * Returns false when the key is missing or its value is not a string.  The
 * payload is produced by the extension: keys are unique and a quote inside a
 * value is always escaped, so the first match is the key.
 */
static bool
json_string(const char *json, const char *key, char *out, size_t outlen)
{
	char		pattern[64];
	const char *p;
	size_t		n = 0;

	snprintf(pattern, sizeof(pattern), "\"%s\":\"", key);
	p = strstr(json, pattern);
	if (p == NULL)
		return false;
	p += strlen(pattern);
	while (*p && *p != '"' && n + 1 < outlen)
	{
		if (*p == '\\' && p[1])
			p++;
		out[n++] = *p++;
	}
	out[n] = '\0';
	return *p == '"';
}

static int
digits(const char **p, int n)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		if (**p < '0' || **p > '9')
			return -1;
		v = v * 10 + (**p - '0');
		(*p)++;
	}
	return v;
}

/*
 * Parse an ISO 8601 timestamp with a UTC offset, as the extension writes
 * it: 2026-11-22T10:05:00.123456+00:00 (fraction and offset minutes
 * optional, or Z).  Returns epoch seconds, or -1.
 */
static double
parse_iso(const char *s)
{
	struct tm	tm = {0};
	const char *p = s;
	double		frac = 0,
				scale = 0.1;
	int			sign,
				oh = 0,
				om = 0;
	time_t		t;

	if ((tm.tm_year = digits(&p, 4)) < 0 || *p++ != '-' ||
		(tm.tm_mon = digits(&p, 2)) < 0 || *p++ != '-' ||
		(tm.tm_mday = digits(&p, 2)) < 0 || (*p != 'T' && *p != ' '))
		return -1;
	p++;
	if ((tm.tm_hour = digits(&p, 2)) < 0 || *p++ != ':' ||
		(tm.tm_min = digits(&p, 2)) < 0 || *p++ != ':' ||
		(tm.tm_sec = digits(&p, 2)) < 0)
		return -1;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
			frac += (*p - '0') * scale;
	if (*p == 'Z')
		sign = 0;
	else if (*p == '+' || *p == '-')
	{
		sign = (*p++ == '+') ? 1 : -1;
		if ((oh = digits(&p, 2)) < 0)
			return -1;
		if (*p == ':')
			p++;
		if (*p >= '0' && *p <= '9' && (om = digits(&p, 2)) < 0)
			return -1;
	}
	else
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	t = timegm(&tm);
	return (double) t + frac - sign * (oh * 3600 + om * 60);
}

static int
cmp_double(const void *a, const void *b)
{
	double		x = *(const double *) a,
				y = *(const double *) b;

	return (x > y) - (x < y);
}

static double
percentile(const double *sorted, size_t n, double q)
{
	double		pos;
	size_t		lo;

	if (n == 0)
		return -1;
	pos = q * (double) (n - 1);
	lo = (size_t) pos;
	if (lo + 1 >= n)
		return sorted[n - 1];
	return sorted[lo] + (pos - (double) lo) * (sorted[lo + 1] - sorted[lo]);
}

static void
usage(void)
{
	fprintf(stderr,
			"usage: listen_client -d CONNINFO [-c CHANNEL] [-s STATUS] [-p PREFIX]\n"
			"                     [-n EXPECT] [-t TIMEOUT_S] [-g GRACE_S]\n"
			"                     [-r READY_FILE] [-o EVENTS_FILE]\n");
	exit(1);
}

int
main(int argc, char **argv)
{
	const char *conninfo = NULL,
			   *channel = "presence",
			   *want_status = NULL,
			   *prefix = "",
			   *ready_file = NULL,
			   *events_file = NULL;
	long		expect = 0;
	double		timeout = 600,
				grace = 1.0;
	PGconn	   *conn;
	PGresult   *res;
	char	   *sql;
	FILE	   *events = NULL;
	StrSet		seen = {0};
	double	   *lat = NULL;
	size_t		nlat = 0,
				latcap = 0;
	long		received = 0,
				matched = 0,
				duplicates = 0;
	double		first_recv = 0,
				last_recv = 0,
				min_at = 0,
				max_at = 0,
				start,
				stop_at,
				complete_at = 0;
	int			opt;
	size_t		prefixlen;

	while ((opt = getopt(argc, argv, "d:c:s:p:n:t:g:r:o:")) != -1)
	{
		switch (opt)
		{
			case 'd': conninfo = optarg; break;
			case 'c': channel = optarg; break;
			case 's': want_status = optarg; break;
			case 'p': prefix = optarg; break;
			case 'n': expect = atol(optarg); break;
			case 't': timeout = atof(optarg); break;
			case 'g': grace = atof(optarg); break;
			case 'r': ready_file = optarg; break;
			case 'o': events_file = optarg; break;
			default: usage();
		}
	}
	if (conninfo == NULL)
		usage();
	prefixlen = strlen(prefix);

	conn = PQconnectdb(conninfo);
	if (PQstatus(conn) != CONNECTION_OK)
	{
		fprintf(stderr, "listen_client: %s", PQerrorMessage(conn));
		return 1;
	}
	{
		char	   *ident = PQescapeIdentifier(conn, channel, strlen(channel));

		if (asprintf(&sql, "LISTEN %s", ident) < 0)
			return 1;
		PQfreemem(ident);
	}
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		fprintf(stderr, "listen_client: %s", PQerrorMessage(conn));
		return 1;
	}
	PQclear(res);
	if (events_file && (events = fopen(events_file, "w")) == NULL)
	{
		perror(events_file);
		return 1;
	}
	if (ready_file)
	{
		FILE	   *f = fopen(ready_file, "w");

		if (f == NULL)
		{
			perror(ready_file);
			return 1;
		}
		fclose(f);
	}

	start = now_epoch();
	stop_at = start + timeout;
	for (;;)
	{
		struct pollfd pfd = {PQsocket(conn), POLLIN, 0};
		double		now = now_epoch(),
					until = stop_at;
		PGnotify   *n;
		int			rc;

		if (complete_at > 0 && complete_at + grace < until)
			until = complete_at + grace;
		if (now >= until)
			break;
		rc = poll(&pfd, 1, (int) ((until - now) * 1000) + 1);
		if (rc < 0 && errno != EINTR)
		{
			perror("poll");
			return 1;
		}
		if (rc <= 0)
			continue;
		if (!PQconsumeInput(conn))
		{
			fprintf(stderr, "listen_client: %s", PQerrorMessage(conn));
			break;
		}
		now = now_epoch();
		while ((n = PQnotifies(conn)) != NULL)
		{
			char		user[512],
						status[32],
						atbuf[64];
			double		at;

			received++;
			if (!json_string(n->extra, "user_id", user, sizeof(user)) ||
				strncmp(user, prefix, prefixlen) != 0 ||
				(want_status &&
				 (!json_string(n->extra, "status", status, sizeof(status)) ||
				  strcmp(status, want_status) != 0)) ||
				!json_string(n->extra, "at", atbuf, sizeof(atbuf)) ||
				(at = parse_iso(atbuf)) < 0)
			{
				PQfreemem(n);
				continue;
			}
			matched++;
			if (!strset_add(&seen, user))
				duplicates++;
			if (nlat == latcap)
			{
				latcap = latcap ? latcap * 2 : 4096;
				lat = realloc(lat, latcap * sizeof(double));
				if (lat == NULL)
					return 1;
			}
			lat[nlat++] = (now - at) * 1000.0;
			if (first_recv == 0)
				first_recv = now;
			last_recv = now;
			if (min_at == 0 || at < min_at)
				min_at = at;
			if (at > max_at)
				max_at = at;
			if (events)
				fprintf(events, "%.6f %.6f %.3f %s\n", now, at,
						(now - at) * 1000.0, user);
			if (expect > 0 && complete_at == 0 && (long) seen.n >= expect)
				complete_at = now;
			PQfreemem(n);
		}
	}
	if (events)
		fclose(events);
	PQfinish(conn);

	qsort(lat, nlat, sizeof(double), cmp_double);
	printf("received=%ld matched=%ld distinct=%zu duplicates=%ld"
		   " first_recv=%.6f last_recv=%.6f min_at=%.6f max_at=%.6f"
		   " last_after_deadline_ms=%.3f"
		   " p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f max_ms=%.3f min_ms=%.3f"
		   " complete=%d\n",
		   received, matched, seen.n, duplicates,
		   first_recv, last_recv, min_at, max_at,
		   nlat ? (last_recv - max_at) * 1000.0 : -1.0,
		   percentile(lat, nlat, 0.50), percentile(lat, nlat, 0.90),
		   percentile(lat, nlat, 0.99),
		   nlat ? lat[nlat - 1] : -1.0, nlat ? lat[0] : -1.0,
		   expect == 0 || (long) seen.n >= expect);
	return (expect == 0 || (long) seen.n >= expect) ? 0 : 2;
}
