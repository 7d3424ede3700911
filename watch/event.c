/*-------------------------------------------------------------------------
 *
 * event.c
 *	  presence_watch's events: a small JSON reader for NOTIFY payloads
 *	  (one flat object whose nested objects and arrays are kept as text),
 *	  ISO 8601 times, the one-line description of each event the screen
 *	  and the line output show, and the JSON of an event recovered through
 *	  presence.changes().
 *
 *	  Payloads come from the server, but anyone who may connect may NOTIFY
 *	  on the presence channels: the reader accepts any input, fails cleanly
 *	  on what is not a JSON object, and never trusts lengths.
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "watch.h"

typedef struct Reader
{
	const char *p;
} Reader;

/* Skip JSON whitespace. */
static void
skip_ws(Reader *r)
{
	while (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r')
		r->p++;
}

/* The value of four hex digits (\uXXXX), or -1 if they are not. */
static int
hex4(const char *p)
{
	int			v = 0;

	for (int i = 0; i < 4; i++)
	{
		int			c = (unsigned char) p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/* Append a code point encoded as UTF-8. */
static void
add_utf8(Str *s, unsigned int cp)
{
	char		b[4];

	if (cp < 0x80)
		str_addc(s, (char) cp);
	else if (cp < 0x800)
	{
		b[0] = (char) (0xC0 | (cp >> 6));
		b[1] = (char) (0x80 | (cp & 0x3F));
		str_addn(s, b, 2);
	}
	else if (cp < 0x10000)
	{
		b[0] = (char) (0xE0 | (cp >> 12));
		b[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
		b[2] = (char) (0x80 | (cp & 0x3F));
		str_addn(s, b, 3);
	}
	else
	{
		b[0] = (char) (0xF0 | (cp >> 18));
		b[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
		b[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
		b[3] = (char) (0x80 | (cp & 0x3F));
		str_addn(s, b, 4);
	}
}

/*
 * A JSON string at r->p (on the opening quote), decoded into *out.
 * A lone surrogate becomes U+FFFD, as it has no UTF-8 form.
 */
static bool
read_string(Reader *r, char **out)
{
	Str			s = {0};

	if (*r->p != '"')
		return false;
	r->p++;
	str_reserve(&s, 16);
	s.data[0] = '\0';
	for (;;)
	{
		unsigned char c = (unsigned char) *r->p;

		if (c == '\0' || c < 0x20)
			goto fail;
		r->p++;
		if (c == '"')
			break;
		if (c != '\\')
		{
			str_addc(&s, (char) c);
			continue;
		}
		c = (unsigned char) *r->p++;
		switch (c)
		{
			case '"':
			case '\\':
			case '/':
				str_addc(&s, (char) c);
				break;
			case 'b':
				str_addc(&s, '\b');
				break;
			case 'f':
				str_addc(&s, '\f');
				break;
			case 'n':
				str_addc(&s, '\n');
				break;
			case 'r':
				str_addc(&s, '\r');
				break;
			case 't':
				str_addc(&s, '\t');
				break;
			case 'u':
				{
					int			cp = hex4(r->p);

					if (cp < 0)
						goto fail;
					r->p += 4;
					if (cp >= 0xD800 && cp < 0xDC00 && r->p[0] == '\\' && r->p[1] == 'u')
					{
						int			lo = hex4(r->p + 2);

						if (lo >= 0xDC00 && lo < 0xE000)
						{
							r->p += 6;
							cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
						}
					}
					if ((cp >= 0xD800 && cp < 0xE000) || cp == 0)
						cp = 0xFFFD;
					add_utf8(&s, (unsigned int) cp);
					break;
				}
			default:
				goto fail;
		}
	}
	*out = s.data;
	return true;

fail:
	free(s.data);
	return false;
}

/*
 * Skip a nested object or array, minding strings; r->p is on its opening
 * bracket.
 */
static bool
skip_nested(Reader *r)
{
	int			depth = 0;

	do
	{
		char		c = *r->p;

		if (c == '\0')
			return false;
		if (c == '"')
		{
			char	   *tmp;

			if (!read_string(r, &tmp))
				return false;
			free(tmp);
			continue;
		}
		if (c == '{' || c == '[')
			depth++;
		else if (c == '}' || c == ']')
			depth--;
		r->p++;
	} while (depth > 0);
	return true;
}

/*
 * Any JSON value at r->p: strings decoded, objects and arrays as
 * their text, numbers and literals as their text.
 */
static bool
read_value(Reader *r, JsonKind *kind, char **value)
{
	const char *start = r->p;

	skip_ws(r);
	start = r->p;
	switch (*r->p)
	{
		case '"':
			*kind = JK_STRING;
			return read_string(r, value);
		case '{':
		case '[':
			if (!skip_nested(r))
				return false;
			*kind = JK_RAW;
			break;
		case 't':
			if (strncmp(r->p, "true", 4) != 0)
				return false;
			r->p += 4;
			*kind = JK_TRUE;
			break;
		case 'f':
			if (strncmp(r->p, "false", 5) != 0)
				return false;
			r->p += 5;
			*kind = JK_FALSE;
			break;
		case 'n':
			if (strncmp(r->p, "null", 4) != 0)
				return false;
			r->p += 4;
			*kind = JK_NULL;
			break;
		default:
			if (*r->p != '-' && !isdigit((unsigned char) *r->p))
				return false;
			while (*r->p == '-' || *r->p == '+' || *r->p == '.' ||
				   *r->p == 'e' || *r->p == 'E' || isdigit((unsigned char) *r->p))
				r->p++;
			*kind = JK_NUMBER;
			break;
	}
	*value = watch_malloc(r->p - start + 1);
	memcpy(*value, start, r->p - start);
	(*value)[r->p - start] = '\0';
	return true;
}

/* Free what json_parse_object() allocated, and empty the object. */
void
json_free_object(JsonObject *obj)
{
	for (int i = 0; i < obj->count; i++)
	{
		free(obj->members[i].key);
		free(obj->members[i].value);
	}
	free(obj->members);
	obj->members = NULL;
	obj->count = 0;
}

/*
 * Parse text that must be exactly one JSON object.  On failure *obj is
 * empty (and may still be passed to json_free_object()).
 */
bool
json_parse_object(const char *text, JsonObject *obj)
{
	Reader		r = {text};
	int			cap = 0;

	obj->members = NULL;
	obj->count = 0;
	skip_ws(&r);
	if (*r.p++ != '{')
		return false;
	skip_ws(&r);
	if (*r.p == '}')
		r.p++;
	else
	{
		for (;;)
		{
			JsonMember m;

			skip_ws(&r);
			if (!read_string(&r, &m.key))
				goto fail;
			skip_ws(&r);
			if (*r.p++ != ':' || !read_value(&r, &m.kind, &m.value))
			{
				free(m.key);
				goto fail;
			}
			if (obj->count == cap)
			{
				JsonMember *nm;

				cap = cap ? cap * 2 : 16;
				nm = watch_malloc(sizeof(JsonMember) * cap);
				if (obj->count)
					memcpy(nm, obj->members, sizeof(JsonMember) * obj->count);
				free(obj->members);
				obj->members = nm;
			}
			obj->members[obj->count++] = m;
			skip_ws(&r);
			if (*r.p == ',')
			{
				r.p++;
				continue;
			}
			if (*r.p++ == '}')
				break;
			goto fail;
		}
	}
	skip_ws(&r);
	if (*r.p == '\0')
		return true;

fail:
	json_free_object(obj);
	return false;
}

/*
 * The elements of a JSON array, as text, in *items (NULL-terminated).
 * Returns false if text is not an array.
 */
static bool
json_parse_array(const char *text, char ***items)
{
	Reader		r = {text};
	int			n = 0,
				cap = 8;
	char	  **v = watch_malloc(sizeof(char *) * cap);

	skip_ws(&r);
	if (*r.p++ != '[')
		goto fail;
	skip_ws(&r);
	if (*r.p == ']')
		r.p++;
	else
	{
		for (;;)
		{
			JsonKind	kind;
			char	   *value;

			if (!read_value(&r, &kind, &value))
				goto fail;
			if (n + 1 >= cap)
			{
				char	  **nv = watch_malloc(sizeof(char *) * cap * 2);

				memcpy(nv, v, sizeof(char *) * n);
				free(v);
				v = nv;
				cap *= 2;
			}
			v[n++] = value;
			skip_ws(&r);
			if (*r.p == ',')
			{
				r.p++;
				continue;
			}
			if (*r.p++ == ']')
				break;
			goto fail;
		}
	}
	v[n] = NULL;
	*items = v;
	return true;

fail:
	for (int i = 0; i < n; i++)
		free(v[i]);
	free(v);
	return false;
}

/* A member of the object by key, or NULL. */
const JsonMember *
json_get(const JsonObject *obj, const char *key)
{
	for (int i = 0; i < obj->count; i++)
	{
		if (strcmp(obj->members[i].key, key) == 0)
			return &obj->members[i];
	}
	return NULL;
}

/*
 * A string member, or NULL when absent, null or not a string.
 */
const char *
json_get_string(const JsonObject *obj, const char *key)
{
	const JsonMember *m = json_get(obj, key);

	return m && m->kind == JK_STRING ? m->value : NULL;
}

/*
 * The event's seq: a positive integer.
 */
bool
json_get_seq(const JsonObject *obj, long long *seq)
{
	const JsonMember *m = json_get(obj, "seq");
	char	   *end;

	if (m == NULL || m->kind != JK_NUMBER)
		return false;
	*seq = strtoll(m->value, &end, 10);
	return *end == '\0' && *seq > 0;
}

/*
 * Seconds since the epoch of an ISO 8601 time with a UTC offset, as the
 * payloads carry ("2026-11-22T10:05:00.123+00:00"); 0 when it is not one.
 */
double
parse_iso_time(const char *s)
{
	struct tm	tm;
	int			year,
				mon,
				day,
				hour,
				min,
				sec,
				n = 0;
	double		frac = 0;
	const char *p;
	int			sign,
				oh = 0,
				om = 0;
	time_t		t;

	if (s == NULL ||
		sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &year, &mon, &day, &hour, &min, &sec, &n) != 6)
		return 0;
	p = s + n;
	if (*p == '.')
	{
		double		scale = 0.1;

		for (p++; isdigit((unsigned char) *p); p++, scale /= 10)
			frac += (*p - '0') * scale;
	}
	if (*p == 'Z')
		sign = 0;
	else if (*p == '+' || *p == '-')
	{
		sign = *p == '-' ? -1 : 1;
		if (sscanf(p + 1, "%2d:%2d", &oh, &om) < 1)
			return 0;
	}
	else
		return 0;

	memset(&tm, 0, sizeof(tm));
	tm.tm_year = year - 1900;
	tm.tm_mon = mon - 1;
	tm.tm_mday = day;
	tm.tm_hour = hour;
	tm.tm_min = min;
	tm.tm_sec = sec;
	t = timegm(&tm);
	return (double) t + frac - sign * (oh * 3600 + om * 60);
}

/* "text" or "?" */
static const char *
or_q(const char *s)
{
	return s ? s : "?";
}

/*
 * A session's metadata as text: the raw JSON, or "-" for none.
 */
static const char *
raw_or_dash(const JsonObject *ev, const char *key)
{
	const JsonMember *m = json_get(ev, key);

	if (m == NULL || m->kind == JK_NULL)
		return "-";
	return m->value;
}

/*
 * One line that says what an event is, for people: the screen's recent
 * events and the line output.  Control characters are replaced where it
 * is printed, not here.
 */
char *
event_describe(const Watch *w, const JsonObject *ev)
{
	const char *event = or_q(json_get_string(ev, "event"));
	const char *user = or_q(json_get_string(ev, "user_id"));
	const char *arrow = w->utf8 ? " \xe2\x86\x92 " : " -> ";
	Str			s = {0};

	str_reserve(&s, 64);
	s.data[0] = '\0';
	if (strcmp(event, "status") == 0)
	{
		const char *msg = json_get_string(ev, "message");

		str_add(&s, user);
		str_add(&s, " ");
		str_add(&s, or_q(json_get_string(ev, "previous")));
		str_add(&s, arrow);
		str_add(&s, or_q(json_get_string(ev, "status")));
		str_add(&s, " (");
		str_add(&s, or_q(json_get_string(ev, "reason")));
		str_add(&s, ")");
		if (msg)
		{
			str_add(&s, " \"");
			str_add(&s, msg);
			str_add(&s, "\"");
		}
	}
	else if (strcmp(event, "join") == 0)
	{
		str_add(&s, user);
		str_add(&s, " joined (");
		str_add(&s, or_q(json_get_string(ev, "session_id")));
		str_add(&s, ", ");
		str_add(&s, or_q(json_get_string(ev, "status")));
		str_add(&s, ") meta ");
		str_add(&s, raw_or_dash(ev, "meta"));
	}
	else if (strcmp(event, "leave") == 0)
	{
		str_add(&s, user);
		str_add(&s, " left (");
		str_add(&s, or_q(json_get_string(ev, "reason")));
		str_add(&s, ")");
	}
	else if (strcmp(event, "update") == 0)
	{
		const char *change = or_q(json_get_string(ev, "change"));

		str_add(&s, user);
		str_add(&s, " ");
		str_add(&s, or_q(json_get_string(ev, "session_id")));
		if (strcmp(change, "joined") == 0)
			str_add(&s, " joined too, meta ");
		else if (strcmp(change, "left") == 0)
			str_add(&s, " left, still here from another session");
		else
			str_add(&s, " meta ");
		if (strcmp(change, "left") != 0)
			str_add(&s, raw_or_dash(ev, "meta"));
	}
	else if (strcmp(event, "typing") == 0)
	{
		const JsonMember *t = json_get(ev, "typing");
		const char *reason = json_get_string(ev, "reason");

		str_add(&s, user);
		str_add(&s, t && t->kind == JK_TRUE ? " is typing" : " stopped typing");
		if (reason)
		{
			str_add(&s, " (");
			str_add(&s, reason);
			str_add(&s, ")");
		}
	}
	else if (strcmp(event, "broadcast") == 0)
	{
		str_add(&s, "broadcast ");
		str_add(&s, raw_or_dash(ev, "payload"));
	}
	else
	{
		str_add(&s, event);
		str_add(&s, " ");
		str_add(&s, user);
	}
	return s.data;
}

/*
 * Append text as a JSON string (quoted, escaped).
 */
static void
str_add_json(Str *str, const char *text)
{
	str_addc(str, '"');
	for (; *text; text++)
	{
		unsigned char c = (unsigned char) *text;
		char		esc[8];

		switch (c)
		{
			case '"':
				str_add(str, "\\\"");
				break;
			case '\\':
				str_add(str, "\\\\");
				break;
			case '\n':
				str_add(str, "\\n");
				break;
			case '\r':
				str_add(str, "\\r");
				break;
			case '\t':
				str_add(str, "\\t");
				break;
			default:
				if (c < 0x20)
				{
					snprintf(esc, sizeof(esc), "\\u%04x", c);
					str_add(str, esc);
				}
				else
					str_addc(str, (char) c);
		}
	}
	str_addc(str, '"');
}

/*
 * The JSON line of an event recovered through changes(): the keys of the
 * NOTIFY payload, in its order, and "caught_up": true.  The row has (seq,
 * user_id, status, previous, reason, message, to_json(last_active),
 * to_json(at)).
 */
char *
event_json_from_change(PGresult *res, int row)
{
	static const char *const keys[] = {"user_id", "status", "previous", "reason", "message"};
	Str			s = {0};

	str_add(&s, "{\"seq\":");
	str_add(&s, PQgetvalue(res, row, 0));
	str_add(&s, ",\"event\":\"status\"");
	for (int i = 0; i < 5; i++)
	{
		str_add(&s, ",\"");
		str_add(&s, keys[i]);
		str_add(&s, "\":");
		if (PQgetisnull(res, row, i + 1))
			str_add(&s, "null");
		else
			str_add_json(&s, PQgetvalue(res, row, i + 1));
	}
	str_add(&s, ",\"last_active\":");
	str_add(&s, PQgetisnull(res, row, 6) ? "null" : PQgetvalue(res, row, 6));
	str_add(&s, ",\"at\":");
	str_add(&s, PQgetvalue(res, row, 7));
	str_add(&s, ",\"caught_up\":true}");
	return s.data;
}

/*
 * A room member's sessions and their metadata, from members().metas
 * ([{session_id, meta, joined_at}, ...]): the meta alone when there is one
 * session, "session: meta" for each otherwise.
 */
char *
describe_metas(const char *metas)
{
	char	  **items;
	int			n = 0;
	Str			s = {0};

	str_reserve(&s, 32);
	s.data[0] = '\0';
	if (metas == NULL || !json_parse_array(metas, &items))
		return s.data;
	while (items[n])
		n++;
	for (int i = 0; i < n; i++)
	{
		JsonObject	o;

		if (json_parse_object(items[i], &o))
		{
			if (i > 0)
				str_add(&s, "  ");
			if (n > 1)
			{
				str_add(&s, or_q(json_get_string(&o, "session_id")));
				str_add(&s, ": ");
			}
			str_add(&s, raw_or_dash(&o, "meta"));
			json_free_object(&o);
		}
		free(items[i]);
	}
	free(items);
	return s.data;
}
