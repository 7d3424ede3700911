/*-------------------------------------------------------------------------
 *
 * event.c
 *	  Status events: queued while a transaction runs, written to the history
 *	  table and sent with NOTIFY when it commits.
 *
 * Events are held in backend memory until XACT_EVENT_PRE_COMMIT.  There
 * the transaction takes the lock that PostgreSQL's own PreCommit_Notify
 * takes to keep the notification queue in commit order, and only then
 * draws the events' seqs, inserts their history rows (one statement for
 * them all) and queues their NOTIFYs.
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
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "presence.h"

/* Events of the current transaction, in TopTransactionContext. */
static List *pending_events = NIL;

/*
 * The role the events were queued as: the owner of the extension, whose
 * SECURITY DEFINER functions queue them.  They are published at commit,
 * after those functions have returned, as that role again, since the
 * calling role may not write the history.
 */
static Oid	events_owner = InvalidOid;

/* Events queued by this backend so far, for counting what a call made. */
static uint64 events_queued = 0;

/* The earliest deadline this transaction stored; DT_NOEND if none. */
static TimestampTz earliest_deadline = DT_NOEND;

/*
 * Copy a string into the current memory context, keeping NULL.
 */
static char *
CopyString(const char *str)
{
	return str ? pstrdup(str) : NULL;
}

/*
 * Queue an event for the current transaction.  The event and its strings
 * are copied, so callers may pass memory that ends with their SPI
 * connection.
 */
void
PresenceQueue(const PresenceEvent *src)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	PresenceEvent *ev = palloc(sizeof(PresenceEvent));
	ListCell   *lc;

	*ev = *src;
	ev->room = CopyString(src->room);
	ev->user_id = CopyString(src->user_id);
	ev->session_id = CopyString(src->session_id);
	ev->message = CopyString(src->message);
	ev->json = CopyString(src->json);
	ev->rooms = NIL;
	foreach(lc, src->rooms)
		ev->rooms = lappend(ev->rooms, pstrdup(lfirst(lc)));
	ev->subid = GetCurrentSubTransactionId();
	if (pending_events == NIL)
		events_owner = GetUserId();
	Assert(events_owner == GetUserId());
	pending_events = lappend(pending_events, ev);
	events_queued++;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * How many events this backend has queued so far: the difference over a
 * call is how many events it made.
 */
uint64
PresenceEventsQueued(void)
{
	return events_queued;
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
 * Send one payload on a channel.
 */
static void
Notify(StringInfo payload, int64 seq, const PresenceEvent *ev,
	   const char *room, const char *channel)
{
	resetStringInfo(payload);
	PresenceBuildPayload(payload, seq, ev, room);
	Async_Notify(channel, payload->data);
}

/*
 * Give the pending events their seqs, in the order they were queued, and
 * write the history rows of the status events among them: one statement
 * for the whole transaction, however many events it made.  Returns the
 * seqs, in queue order.
 */
static int64 *
WriteHistory(List *events)
{
	enum
	{
		H_IS_STATUS, H_USER_ID, H_STATUS, H_PREVIOUS, H_REASON, H_MESSAGE,
		H_LAST_ACTIVE, H_AT, H_NCOLUMNS
	};

	/*
	 * unnest ... WITH ORDINALITY yields the events in queue order, and
	 * nextval is evaluated row by row in that order (a volatile output
	 * column is computed after any sort), so seq order is queue order.
	 */
	static PresenceRowsStatement write_history = {
		.one = "WITH e AS (SELECT pg_catalog.nextval('presence.seq') AS seq),"
			" h AS (INSERT INTO presence.history"
			"  (seq, user_id, status, previous, reason, message, last_active, at)"
			"  SELECT seq, $2, $3::presence.status, $4::presence.status, $5, $6,"
			"  $7, $8 FROM e WHERE $1)"
			" SELECT seq FROM e",
		.many = "WITH e AS"
			" (SELECT pg_catalog.nextval('presence.seq') AS seq, d.*"
			"  FROM unnest($1, $2, $3, $4, $5, $6, $7, $8) WITH ORDINALITY"
			"   AS d(is_status, user_id, status, previous, reason, message,"
			"   last_active, at, ord)"
			"  ORDER BY d.ord),"
			" h AS (INSERT INTO presence.history"
			"  (seq, user_id, status, previous, reason, message, last_active, at)"
			"  SELECT seq, user_id, status::presence.status,"
			"  previous::presence.status, reason, message, last_active, at"
			"  FROM e WHERE is_status)"
			" SELECT seq FROM e ORDER BY ord",
		.ncolumns = H_NCOLUMNS,
		.types = {BOOLOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
			TIMESTAMPTZOID, TIMESTAMPTZOID}
	};
	int			n = list_length(events);
	Datum	   *columns[H_NCOLUMNS];
	bool	   *nulls[H_NCOLUMNS];
	int64	   *seqs = palloc(sizeof(int64) * n);
	ListCell   *lc;
	int			i = 0;

	for (int c = 0; c < H_NCOLUMNS; c++)
	{
		columns[c] = palloc0(sizeof(Datum) * n);
		nulls[c] = palloc(sizeof(bool) * n);
		memset(nulls[c], true, sizeof(bool) * n);
	}
	foreach(lc, events)
	{
		PresenceEvent *ev = (PresenceEvent *) lfirst(lc);

		columns[H_IS_STATUS][i] = BoolGetDatum(ev->kind == EVENT_STATUS);
		nulls[H_IS_STATUS][i] = false;
		if (ev->kind == EVENT_STATUS)
		{
			columns[H_USER_ID][i] = CStringGetTextDatum(ev->user_id);
			columns[H_STATUS][i] =
				CStringGetTextDatum(PresenceStatusName(ev->status));
			columns[H_PREVIOUS][i] =
				CStringGetTextDatum(PresenceStatusName(ev->previous));
			columns[H_REASON][i] = CStringGetTextDatum(ev->reason);
			if (ev->message)
				columns[H_MESSAGE][i] = CStringGetTextDatum(ev->message);
			columns[H_LAST_ACTIVE][i] = TimestampTzGetDatum(ev->last_active);
			columns[H_AT][i] = TimestampTzGetDatum(ev->at);
			nulls[H_USER_ID][i] = nulls[H_STATUS][i] = nulls[H_PREVIOUS][i] =
				nulls[H_REASON][i] = nulls[H_AT][i] = false;
			nulls[H_MESSAGE][i] = (ev->message == NULL);
			nulls[H_LAST_ACTIVE][i] = !ev->has_last_active;
		}
		i++;
	}

	if (PresenceExecuteRows(&write_history, columns, nulls, n) != n)
		elog(ERROR, "could not draw a seq for each of %d events", n);
	for (i = 0; i < n; i++)
	{
		bool		isnull;

		seqs[i] = DatumGetInt64(PresenceGetDatum(i, 1, &isnull));
	}
	return seqs;
}

/*
 * Give each pending event its seq, its history row if it is a status
 * event, and its NOTIFYs, in the order the events were queued.  A status
 * event goes to the status channel and to the channel of each room the
 * user is in, with the same seq; room events go to their room's channel.
 * Runs inside the committing transaction, so a failure here (say, a full
 * notification queue) aborts it with all its changes.
 */
static void
PublishPendingEvents(void)
{
	List	   *events = pending_events;
	ListCell   *lc;
	StringInfoData payload;
	PresenceRoleSave save;
	int64	   *seqs;
	int			i = 0;

	/* Detach first: nothing below may queue more, and an error drops them. */
	pending_events = NIL;

	/* The same lock PreCommit_Notify takes: serializes committing notifiers. */
	LockSharedObject(DatabaseRelationId, InvalidOid, 0, AccessExclusiveLock);

	/*
	 * Write as the role that queued the events, with the search_path that
	 * the SECURITY DEFINER functions pin, as if still inside them.
	 */
	PresenceBecomeRole(events_owner, &save);

	PushActiveSnapshot(GetTransactionSnapshot());
	PresenceConnect();

	seqs = WriteHistory(events);
	initStringInfo(&payload);
	foreach(lc, events)
	{
		PresenceEvent *ev = (PresenceEvent *) lfirst(lc);
		int64		seq = seqs[i++];

		if (ev->kind == EVENT_STATUS)
		{
			ListCell   *rc;

			Notify(&payload, seq, ev, NULL, presence_channel);
			foreach(rc, ev->rooms)
			{
				const char *room = (const char *) lfirst(rc);

				Notify(&payload, seq, ev, room, PresenceRoomChannel(room));
			}
		}
		else
			Notify(&payload, seq, ev, ev->room, PresenceRoomChannel(ev->room));
	}

	SPI_finish();
	PopActiveSnapshot();
	PresenceRestoreRole(&save);
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
