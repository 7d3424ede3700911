/*-------------------------------------------------------------------------
 *
 * payload.c
 *	  The NOTIFY payload of an event: one JSON object, built by hand.
 *
 * Kept apart from the event queue (event.c) because it is the code that
 * turns user-supplied text (ids, messages, room names, metadata) into
 * JSON: it depends only on string building and PostgreSQL's JSON escaping,
 * so the fuzzer (test/fuzz/) can drive it directly.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "presence.h"

/*
 * Append a timestamp to a JSON payload as ISO 8601 text with a UTC offset.
 */
static void
AppendJsonTimestamp(StringInfo buf, TimestampTz ts)
{
	char		tsbuf[MAXDATELEN + 1];

	appendStringInfoChar(buf, '"');
	appendStringInfoString(buf, JsonEncodeDateTime(tsbuf,
												   TimestampTzGetDatum(ts),
												   TIMESTAMPTZOID, NULL));
	appendStringInfoChar(buf, '"');
}

/*
 * Append a string to a JSON payload, escaped, or null.
 */
static void
AppendJsonString(StringInfo buf, const char *key, const char *value)
{
	appendStringInfo(buf, ",\"%s\":", key);
	if (value)
		escape_json(buf, value);
	else
		appendStringInfoString(buf, "null");
}

static const char *const event_names[] = {
	[EVENT_STATUS] = "status",
	[EVENT_JOIN] = "join",
	[EVENT_LEAVE] = "leave",
	[EVENT_UPDATE] = "update",
	[EVENT_TYPING] = "typing",
	[EVENT_BROADCAST] = "broadcast",
};

/*
 * Build the NOTIFY payload of an event: one JSON object.  room is the room
 * it is announced in (a room event's own room, or one of the rooms a status
 * event is also sent to), or NULL for the status channel.  Ids, messages,
 * metadata and payloads are limited so that the payload always stays below
 * NOTIFY's 8000 bytes, escaping included.
 */
void
PresenceBuildPayload(StringInfo buf, int64 seq, const PresenceEvent *ev,
					 const char *room)
{
	appendStringInfo(buf, "{\"seq\":" INT64_FORMAT ",\"event\":\"%s\"",
					 seq, event_names[ev->kind]);
	if (room)
		AppendJsonString(buf, "room", room);
	AppendJsonString(buf, "user_id", ev->user_id);

	switch (ev->kind)
	{
		case EVENT_STATUS:
			appendStringInfo(buf, ",\"status\":\"%s\",\"previous\":\"%s\",\"reason\":\"%s\"",
							 PresenceStatusName(ev->status),
							 PresenceStatusName(ev->previous), ev->reason);
			AppendJsonString(buf, "message", ev->message);
			appendStringInfoString(buf, ",\"last_active\":");
			if (ev->has_last_active)
				AppendJsonTimestamp(buf, ev->last_active);
			else
				appendStringInfoString(buf, "null");
			break;
		case EVENT_JOIN:
			AppendJsonString(buf, "session_id", ev->session_id);
			appendStringInfo(buf, ",\"status\":\"%s\",\"meta\":%s",
							 PresenceStatusName(ev->status),
							 ev->json ? ev->json : "null");
			break;
		case EVENT_LEAVE:
			AppendJsonString(buf, "reason", ev->reason);
			break;
		case EVENT_UPDATE:
			AppendJsonString(buf, "session_id", ev->session_id);
			appendStringInfo(buf, ",\"change\":\"%s\",\"meta\":%s",
							 ev->change, ev->json ? ev->json : "null");
			break;
		case EVENT_TYPING:
			appendStringInfo(buf, ",\"typing\":%s",
							 ev->typing ? "true" : "false");
			if (ev->reason)
				AppendJsonString(buf, "reason", ev->reason);
			break;
		case EVENT_BROADCAST:
			appendStringInfo(buf, ",\"payload\":%s", ev->json);
			break;
	}
	appendStringInfoString(buf, ",\"at\":");
	AppendJsonTimestamp(buf, ev->at);
	appendStringInfoChar(buf, '}');
}
