/*-------------------------------------------------------------------------
 *
 * fuzz_presence.c
 *	  Coverage-guided fuzzing (libFuzzer) of the code that turns user text
 *	  into NOTIFY payloads (src/payload.c) and channel names
 *	  (src/channel.c), run inside a real backend.
 *
 * The targets need PostgreSQL's own JSON escaping, timestamp formatting,
 * encoding and hashing, so they run in a backend: presence_fuzz_run(target,
 * seconds) hands a callback to libFuzzer's LLVMFuzzerRunDriver().  Each
 * input is cut into fields that obey the limits the SQL API enforces
 * (valid UTF-8, no NUL, the documented lengths); the callback builds a
 * payload or a channel name from them and checks what must always hold.
 * libFuzzer finishes by calling exit(), which a backend must not do, so
 * the fuzzing runs in a child process forked from the backend: it forgets
 * the backend's exit callbacks (it owns none of its shared state), touches
 * no shared memory, and reports its count of inputs through a pipe.  A
 * failure calls abort(): libFuzzer prints the input, saves it as a crash-*
 * file in the data directory and exits non-zero, and the SQL call fails.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "catalog/pg_type.h"
#include "common/jsonapi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "presence.h"

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(presence_fuzz_run);

/* The one setting the targets read; presence.c is not linked in. */
char	   *presence_channel = "presence";

extern int	LLVMFuzzerRunDriver(int *argc, char ***argv,
								int (*cb) (const uint8 *data, size_t size));

#define NOTIFY_PAYLOAD_LIMIT	8000	/* NOTIFY's limit on a payload */
#define MAX_ROOM_BYTES			200 /* as rooms.c checks */

static int64 fuzz_runs;
static int	fuzz_pipe = -1;		/* the child's end */
static MemoryContext fuzz_cxt;

/* The input still to be cut into fields. */
typedef struct FuzzInput
{
	const uint8 *data;
	size_t		size;
} FuzzInput;

/*
 * Report a broken property and stop, so that libFuzzer saves the input.
 */
static void
Fail(const char *what, const char *detail)
{
	fprintf(stderr, "presence fuzz: %s\n%s\n", what, detail ? detail : "");
	abort();
}

static uint8
NextByte(FuzzInput *in)
{
	uint8		b = 0;

	if (in->size > 0)
	{
		b = in->data[0];
		in->data++;
		in->size--;
	}
	return b;
}

/*
 * The next field: a length, up to max_bytes, then that many bytes; when the
 * length's top bit is set, those bytes repeated up to max_bytes, so that
 * short inputs reach the longest fields too.  NULL when they are not text
 * the API would accept (invalid UTF-8 or a NUL): such input never reaches
 * the code under test.
 */
static char *
NextText(FuzzInput *in, int max_bytes)
{
	int			raw = NextByte(in) << 8;
	bool		fill;
	int			len;
	char	   *s;

	raw |= NextByte(in);
	fill = (raw & 0x8000) != 0;
	len = (raw & 0x7fff) % (max_bytes + 1);
	if ((size_t) len > in->size)
		len = (int) in->size;
	s = palloc(len + 1);
	memcpy(s, in->data, len);
	s[len] = '\0';
	in->data += len;
	in->size -= len;
	if (!pg_verify_mbstr(PG_UTF8, s, len, true))
		return NULL;
	if (fill && len > 0)
	{
		StringInfoData buf;

		initStringInfo(&buf);
		while (buf.len + len <= max_bytes)
			appendBinaryStringInfo(&buf, s, len);
		s = buf.data;
	}
	return s;
}

static TimestampTz
NextTimestamp(FuzzInput *in)
{
	uint64		v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | NextByte(in);
	switch (v % 16)
	{
		case 0:
			return DT_NOBEGIN;
		case 1:
			return DT_NOEND;
		default:
			/* anywhere in timestamptz's range */
			return (TimestampTz) ((uint64) MIN_TIMESTAMP +
								  v % ((uint64) END_TIMESTAMP - (uint64) MIN_TIMESTAMP));
	}
}

/*
 * Whether text is one complete JSON value.
 */
static bool
IsJson(const char *text)
{
	JsonLexContext *lex = PRESENCE_JSON_LEX(text, strlen(text));

	return pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS;
}

/*
 * The string value of a top-level key of a JSON object, or NULL.
 */
static char *
JsonField(const char *json, const char *key)
{
	Datum		d;
	LOCAL_FCINFO(fcinfo, 2);

	InitFunctionCallInfoData(*fcinfo, NULL, 2, InvalidOid, NULL, NULL);
	fcinfo->args[0].value = CStringGetTextDatum(json);
	fcinfo->args[0].isnull = false;
	fcinfo->args[1].value = CStringGetTextDatum(key);
	fcinfo->args[1].isnull = false;
	d = json_object_field_text(fcinfo);
	return fcinfo->isnull ? NULL : text_to_cstring(DatumGetTextPP(d));
}

static void
CheckField(const char *payload, const char *key, const char *expected)
{
	char	   *got = JsonField(payload, key);

	if ((got == NULL) != (expected == NULL) ||
		(got != NULL && strcmp(got, expected) != 0))
		Fail(psprintf("payload field \"%s\" does not round-trip", key), payload);
}

/*
 * Target "payload": build the payload of any kind of event from fields
 * within the API's limits; it must be one JSON object that gives back every
 * string it was given, and fit NOTIFY's limit.
 */
static void
FuzzPayload(FuzzInput *in)
{
	PresenceEvent ev;
	StringInfoData buf;
	char	   *room;
	char	   *value;
	int64		seq;

	memset(&ev, 0, sizeof(ev));
	ev.kind = (PresenceEventKind) (NextByte(in) % (EVENT_BROADCAST + 1));
	seq = (int64) NextTimestamp(in);
	ev.user_id = NextText(in, PRESENCE_MAX_ID_BYTES);
	ev.session_id = NextText(in, PRESENCE_MAX_ID_BYTES);
	room = NextText(in, MAX_ROOM_BYTES);
	ev.message = NextText(in, PRESENCE_MAX_MESSAGE_CHARS * MAX_MULTIBYTE_CHAR_LEN);
	value = NextText(in, ev.kind == EVENT_BROADCAST ? 4096 : PRESENCE_MAX_META_BYTES);
	ev.status = (PresenceStatus) (NextByte(in) % (PRESENCE_OFFLINE + 1));
	ev.previous = (PresenceStatus) (NextByte(in) % (PRESENCE_OFFLINE + 1));
	ev.typing = NextByte(in) & 1;
	ev.has_last_active = NextByte(in) & 1;
	ev.last_active = NextTimestamp(in);
	ev.at = NextTimestamp(in);
	ev.reason = "timeout";
	ev.change = "meta";
	if (ev.user_id == NULL || ev.session_id == NULL || room == NULL ||
		ev.message == NULL || value == NULL)
		return;
	/* a message is limited in characters */
	ev.message[pg_mbcharcliplen(ev.message, strlen(ev.message),
								PRESENCE_MAX_MESSAGE_CHARS)] = '\0';
	if (*ev.user_id == '\0' || *ev.session_id == '\0' || *room == '\0')
		return;
	if (NextByte(in) & 1)
		ev.message = NULL;

	/* Metadata and payloads arrive as JSON text: make the value a string. */
	initStringInfo(&buf);
	escape_json(&buf, value);
	if (buf.len > (ev.kind == EVENT_BROADCAST ? 4096 : PRESENCE_MAX_META_BYTES))
		return;
	ev.json = (NextByte(in) & 1) || ev.kind == EVENT_BROADCAST ? buf.data : NULL;
	if (ev.kind == EVENT_BROADCAST)
		ev.user_id = NULL;
	if (ev.kind != EVENT_STATUS)
		ev.room = room;

	initStringInfo(&buf);
	PresenceBuildPayload(&buf, seq, &ev,
						 (ev.kind != EVENT_STATUS || (NextByte(in) & 1)) ? room : NULL);
	if (!IsJson(buf.data) || buf.data[0] != '{')
		Fail("payload is not a JSON object", buf.data);
	if (buf.len >= NOTIFY_PAYLOAD_LIMIT)
		Fail(psprintf("payload of %d bytes exceeds NOTIFY's limit", buf.len),
			 buf.data);
	CheckField(buf.data, "user_id", ev.user_id);
	if (ev.kind == EVENT_STATUS)
		CheckField(buf.data, "message", ev.message);
	if (ev.kind == EVENT_JOIN || ev.kind == EVENT_UPDATE)
		CheckField(buf.data, "session_id", ev.session_id);
	if (ev.kind != EVENT_STATUS)
		CheckField(buf.data, "room", room);
}

/*
 * Target "channel": the channel of any valid room name is a valid name of
 * at most 63 bytes, the plain "presence:" || room whenever that fits and
 * could not be mistaken for a hashed one, and two different rooms never
 * share a channel.
 */
static void
FuzzChannel(FuzzInput *in)
{
	char	   *a = NextText(in, MAX_ROOM_BYTES);
	char	   *b = NextText(in, MAX_ROOM_BYTES);
	char	   *ca;
	char	   *cb;
	char	   *plain;

	if (a == NULL || b == NULL || *a == '\0' || *b == '\0')
		return;
	ca = PresenceRoomChannel(a);
	cb = PresenceRoomChannel(b);
	if (strlen(ca) >= NAMEDATALEN)
		Fail("channel longer than 63 bytes", ca);
	if (!pg_verify_mbstr(PG_UTF8, ca, strlen(ca), true))
		Fail("channel is not valid UTF-8", ca);
	plain = psprintf("%s:%s", presence_channel, a);
	if (strlen(plain) < NAMEDATALEN && strchr(a, '~') == NULL &&
		strcmp(ca, plain) != 0)
		Fail("a short room does not get its plain channel", ca);
	if (strcmp(a, b) != 0 && strcmp(ca, cb) == 0)
		Fail(psprintf("rooms \"%s\" and \"%s\" share a channel", a, b), ca);
	if (strcmp(a, b) == 0 && strcmp(ca, cb) != 0)
		Fail("one room, two channels", ca);
}

static void (*fuzz_target) (FuzzInput *in);

/*
 * libFuzzer's callback: one input, in a memory context reset each time.
 * An ERROR is a failure too: nothing valid may raise one.
 */
static int
FuzzOne(const uint8 *data, size_t size)
{
	MemoryContext oldcxt;
	FuzzInput	in = {data, size};

	fuzz_runs++;
	oldcxt = MemoryContextSwitchTo(fuzz_cxt);
	PG_TRY();
	{
		fuzz_target(&in);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(fuzz_cxt);
		edata = CopyErrorData();
		Fail("an ERROR was raised", edata->message);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(fuzz_cxt);
	return 0;
}

/*
 * In the child, at libFuzzer's exit(): send the count of inputs tried.
 */
static void
ReportRuns(void)
{
	if (fuzz_pipe >= 0 &&
		write(fuzz_pipe, &fuzz_runs, sizeof(fuzz_runs)) != sizeof(fuzz_runs))
		fuzz_runs = -1;
}

/*
 * The child: fuzz until libFuzzer's time is up, and exit.
 */
static void
FuzzChild(int seconds)
{
	char	   *args[] = {
		"presence_fuzz", "-seed=1", "-max_len=8192", "-timeout=0",
		"-rss_limit_mb=0", "-malloc_limit_mb=0", "-handle_int=0",
		"-handle_term=0", "-handle_usr1=0", "-handle_usr2=0",
		"-use_value_profile=1", "-print_final_stats=1",
		psprintf("-max_total_time=%d", seconds), NULL
	};
	char	  **argv = args;
	int			argc = lengthof(args) - 1;

	on_exit_reset();			/* the backend's callbacks are not ours */
	pqsignal(SIGTERM, SIG_DFL);
	pqsignal(SIGINT, SIG_DFL);
	fuzz_cxt = AllocSetContextCreate(TopMemoryContext, "presence fuzz",
									 ALLOCSET_DEFAULT_SIZES);
	atexit(ReportRuns);
	LLVMFuzzerRunDriver(&argc, &argv, FuzzOne);
	exit(0);
}

/*
 * presence_fuzz_run(target, seconds): fuzz one target for that long in a
 * child process and return the number of inputs tried; an error if the
 * fuzzer found an input that breaks a property.
 */
Datum
presence_fuzz_run(PG_FUNCTION_ARGS)
{
	char	   *target = text_to_cstring(PG_GETARG_TEXT_PP(0));
	int			seconds = PG_GETARG_INT32(1);
	int			fds[2];
	pid_t		pid;
	int			status;
	int64		runs = -1;

	if (strcmp(target, "payload") == 0)
		fuzz_target = FuzzPayload;
	else if (strcmp(target, "channel") == 0)
		fuzz_target = FuzzChannel;
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("unknown fuzz target \"%s\"", target),
				 errhint("Use 'payload' or 'channel'.")));
	if (seconds < 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("seconds must be at least 1")));

	if (pipe(fds) != 0)
		elog(ERROR, "could not create a pipe: %m");
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		elog(ERROR, "could not fork: %m");
	if (pid == 0)
	{
		close(fds[0]);
		fuzz_pipe = fds[1];
		FuzzChild(seconds);
	}
	close(fds[1]);

	/* Wait, staying cancellable; a cancel stops the child too. */
	PG_TRY();
	{
		while (waitpid(pid, &status, WNOHANG) == 0)
		{
			CHECK_FOR_INTERRUPTS();
			pg_usleep(100 * 1000L);
		}
	}
	PG_CATCH();
	{
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		close(fds[0]);
		PG_RE_THROW();
	}
	PG_END_TRY();
	if (read(fds[0], &runs, sizeof(runs)) != sizeof(runs))
		runs = -1;
	close(fds[0]);

	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || runs < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("fuzz target \"%s\" failed", target),
				 errdetail("The fuzzer exited with status %d; the failing input is in the server log and in a crash-* file in the data directory.",
						   WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status))));
	PG_RETURN_INT64(runs);
}
