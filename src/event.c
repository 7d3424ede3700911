/*-------------------------------------------------------------------------
 *
 * event.c
 *	  Status events: queued while a transaction runs, written to the history
 *	  table and sent with NOTIFY when it commits.
 *
 * Events are held in backend memory until XACT_EVENT_PRE_COMMIT.  There
 * the transaction takes the lock that PostgreSQL's own PreCommit_Notify
 * takes to keep the notification queue in commit order, and only then
 * draws each event's seq, inserts its history row and queues its NOTIFY.
 * Holding that lock from the first seq to the commit makes seq order equal
 * commit order, so a listener that catches up with changes(since) can never
 * miss an event that committed late with a lower seq.  The lock is held
 * only during commit, as NOTIFY holds it anyway; a transaction that calls
 * the API and then does other work does not block anyone meanwhile.
 *
 * A rolled-back transaction or subtransaction announces nothing: its
 * events are dropped with it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_database.h"
#include "catalog/pg_type.h"
#include "commands/async.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "storage/lmgr.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "presence.h"

/* Events of the current transaction, in TopTransactionContext. */
static List *pending_events = NIL;

/* The earliest deadline this transaction stored; DT_NOEND if none. */
static TimestampTz earliest_deadline = DT_NOEND;

static SPIPlanPtr insert_history_plan = NULL;

/*
 * Queue an event for the current transaction.  The strings are copied, so
 * callers may pass memory that ends with their SPI connection.
 */
void
PresenceQueueEvent(const char *user_id, PresenceStatus status,
				   PresenceStatus previous, const char *reason,
				   const char *message, bool has_last_active,
				   TimestampTz last_active, TimestampTz at)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	PresenceEvent *ev = palloc(sizeof(PresenceEvent));

	ev->user_id = pstrdup(user_id);
	ev->status = status;
	ev->previous = previous;
	ev->reason = reason;
	ev->message = message ? pstrdup(message) : NULL;
	ev->has_last_active = has_last_active;
	ev->last_active = last_active;
	ev->at = at;
	ev->subid = GetCurrentSubTransactionId();
	pending_events = lappend(pending_events, ev);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Remember a deadline this transaction stores.  Whether it must wake the
 * worker is decided after commit (see WakeWorkerIfNeeded), not now: the
 * worker may be computing its next wake-up from a snapshot that cannot see
 * this transaction yet.
 */
void
PresenceNoteDeadline(TimestampTz deadline)
{
	if (deadline < earliest_deadline)
		earliest_deadline = deadline;
}

/*
 * After commit, wake the worker if it sleeps towards a later moment than a
 * deadline just stored.  The worker publishes "infinitely far" while it
 * works and its next deadline only after reading the tables, so a deadline
 * committed after that read is always compared with a value that is too
 * late, and wakes it.  Neither call can fail.
 */
static void
WakeWorkerIfNeeded(void)
{
	if (earliest_deadline == DT_NOEND || !PresenceShmemAvailable())
		return;
	if (earliest_deadline < PresenceWorkerNextWake(MyDatabaseId))
		PresenceWakeWorker(MyDatabaseId);
}

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
 * Build the NOTIFY payload of an event: one JSON object.  Ids and messages
 * are escaped by escape_json, and their length limits keep the payload far
 * below NOTIFY's 8000 bytes.
 */
void
PresenceBuildPayload(StringInfo buf, int64 seq, const PresenceEvent *ev)
{
	appendStringInfo(buf, "{\"seq\":" INT64_FORMAT ",\"event\":\"status\",\"user_id\":",
					 seq);
	escape_json(buf, ev->user_id);
	appendStringInfo(buf, ",\"status\":\"%s\",\"previous\":\"%s\",\"reason\":\"%s\",\"message\":",
					 PresenceStatusName(ev->status),
					 PresenceStatusName(ev->previous),
					 ev->reason);
	if (ev->message)
		escape_json(buf, ev->message);
	else
		appendStringInfoString(buf, "null");
	appendStringInfoString(buf, ",\"last_active\":");
	if (ev->has_last_active)
		AppendJsonTimestamp(buf, ev->last_active);
	else
		appendStringInfoString(buf, "null");
	appendStringInfoString(buf, ",\"at\":");
	AppendJsonTimestamp(buf, ev->at);
	appendStringInfoChar(buf, '}');
}

/*
 * Give each pending event its seq, history row and NOTIFY, in the order the
 * events were queued.  Runs inside the committing transaction, so a failure
 * here (say, a full notification queue) aborts it with all its changes.
 */
static void
PublishPendingEvents(void)
{
	static const Oid argtypes[] = {TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID};
	List	   *events = pending_events;
	ListCell   *lc;
	StringInfoData payload;
	SPIPlanPtr	plan;

	/* Detach first: nothing below may queue more, and an error drops them. */
	pending_events = NIL;

	/* The same lock PreCommit_Notify takes: serializes committing notifiers. */
	LockSharedObject(DatabaseRelationId, InvalidOid, 0, AccessExclusiveLock);

	PushActiveSnapshot(GetTransactionSnapshot());
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	plan = PresencePrepare(&insert_history_plan,
						   "INSERT INTO presence.history"
						   " (seq, user_id, status, previous, reason, message, last_active, at)"
						   " VALUES (pg_catalog.nextval('presence.seq'), $1,"
						   " $2::presence.status, $3::presence.status, $4, $5, $6, $7)"
						   " RETURNING seq",
						   lengthof(argtypes), argtypes);

	initStringInfo(&payload);
	foreach(lc, events)
	{
		PresenceEvent *ev = (PresenceEvent *) lfirst(lc);
		Datum		values[7];
		char		nulls[7] = {' ', ' ', ' ', ' ', ' ', ' ', ' '};
		bool		isnull;
		int64		seq;

		values[0] = CStringGetTextDatum(ev->user_id);
		values[1] = CStringGetTextDatum(PresenceStatusName(ev->status));
		values[2] = CStringGetTextDatum(PresenceStatusName(ev->previous));
		values[3] = CStringGetTextDatum(ev->reason);
		if (ev->message)
			values[4] = CStringGetTextDatum(ev->message);
		else
			nulls[4] = 'n';
		values[5] = TimestampTzGetDatum(ev->last_active);
		if (!ev->has_last_active)
			nulls[5] = 'n';
		values[6] = TimestampTzGetDatum(ev->at);

		PresenceExecute(plan, values, nulls, false, 1);
		seq = DatumGetInt64(PresenceGetDatum(0, 1, &isnull));

		resetStringInfo(&payload);
		PresenceBuildPayload(&payload, seq, ev);
		Async_Notify(presence_channel, payload.data);
	}

	SPI_finish();
	PopActiveSnapshot();
}

/*
 * Publish at pre-commit, wake the worker after commit, forget everything
 * on abort.  Two-phase commit cannot carry NOTIFY, so a transaction with
 * events may not be prepared.
 */
static void
PresenceXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (pending_events != NIL)
				PublishPendingEvents();
			break;
		case XACT_EVENT_PRE_PREPARE:
			if (pending_events != NIL)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("cannot PREPARE a transaction that changed presence status"),
						 errdetail("Presence events are sent with NOTIFY, which two-phase commit does not support.")));
			break;
		case XACT_EVENT_COMMIT:
			WakeWorkerIfNeeded();
			pending_events = NIL;
			earliest_deadline = DT_NOEND;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			pending_events = NIL;
			earliest_deadline = DT_NOEND;
			break;
		default:
			break;
	}
}

/*
 * Drop the events of an aborted subtransaction and of everything nested in
 * it.  Subtransaction ids grow in start order, so those are exactly the
 * events whose id is at least the aborted one's.
 */
static void
PresenceSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
						SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (event != SUBXACT_EVENT_ABORT_SUB || pending_events == NIL)
		return;

	foreach(lc, pending_events)
	{
		PresenceEvent *ev = (PresenceEvent *) lfirst(lc);

		if (ev->subid >= mySubid)
			pending_events = foreach_delete_current(pending_events, lc);
	}
}

/*
 * Register the transaction callbacks; called from _PG_init in every
 * backend that loads the library.
 */
void
PresenceEventInit(void)
{
	RegisterXactCallback(PresenceXactCallback, NULL);
	RegisterSubXactCallback(PresenceSubXactCallback, NULL);
}
