/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The per-database worker, which carries out the timed transitions of
 *	  one database and prunes its history, and presence.worker_status(),
 *	  which reports on it.
 *
 * The worker sleeps on its latch until the earliest stored deadline (at
 * most a few seconds, so that a missed wake-up costs little), settles
 * whatever is due in batches of one transaction each, and sleeps again.
 * The events of a batch are written to history and sent by event.c when
 * the batch commits, so listeners hear exactly what was committed.
 *
 * Nothing that goes wrong in a pass stops the worker: the error is logged,
 * counted and kept for worker_status(), and the worker retries after a
 * delay that grows while the errors persist.  It exits only when asked to
 * (SIGTERM, server shutdown), when the extension is no longer installed,
 * or when it turns out not to be needed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

#include "presence.h"

#define PRESENCE_MAX_SLEEP_MS		5000	/* what a missed wake-up costs */
#define PRESENCE_BUSY_RETRY_MS		100 /* due users held by others */
#define PRESENCE_LOCKED_RETRY_MS	1000	/* tables held by others */
#define PRESENCE_ERROR_MIN_MS		1000
#define PRESENCE_ERROR_MAX_MS		60000
#define PRESENCE_PRUNE_EVERY_MS		60000
#define PRESENCE_PRUNE_BATCH		1000
#define PRESENCE_PRUNE_MAX_BATCHES	10
#define PRESENCE_CAREFUL_BATCH		100 /* users per pass after an error */
#define PRESENCE_CAREFUL_SYSTEMIC	3	/* failures in a row with no success */
#define PRESENCE_QUARANTINE_MIN_MS	1000	/* a failing user's first wait */
#define PRESENCE_QUARANTINE_MAX_MS	60000	/* ... doubling up to this */
#define PRESENCE_PROBATION_MS		600000	/* forgotten this long after */

/*
 * A user whose transitions failed: left out of sweeps until "until", and
 * remembered for a while after, so that failing again doubles the wait.
 */
typedef struct QuarantinedUser
{
	char	   *user_id;
	TimestampTz until;
	int			wait_ms;
} QuarantinedUser;

/*
 * The relations each step uses, locked before the step starts, every one
 * of them: a lock the step's queries had to wait for could deadlock with
 * DROP EXTENSION (see WorkerBeginStep).  A sweep writes users, sessions,
 * members and typing, and its commit writes history and draws from seq
 * (event.c); pruning deletes from history; scheduling reads the deadlines
 * of users, sessions, members and typing.
 */
static const char *const sweep_relations[] = {
	"users", "sessions", "members", "typing", "history", "seq", NULL
};
static const char *const prune_relations[] = {
	"history", NULL
};
static const char *const schedule_relations[] = {
	"users", "sessions", "members", "typing", NULL
};

static Oid	WorkerDatabase = InvalidOid;
static PresenceSlot *MySlot = NULL;
static MemoryContext WorkerContext = NULL;
static TimestampTz WorkerRetryAt = 0;	/* 0: not backing off */
static int	WorkerBackoffMs = 0;
static TimestampTz WorkerNextPrune = 0;
static bool WorkerCareful = false;	/* settle one user per transaction */
static List *WorkerQuarantine = NIL;	/* of QuarantinedUser */
static MemoryContext QuarantineContext = NULL;	/* outlives each pass */

PG_FUNCTION_INFO_V1(presence_worker_status);

/*
 * Milliseconds from now until "when", as WaitLatch wants them.
 */
static long
WorkerDelay(TimestampTz now, TimestampTz when)
{
	return Min(TimestampDifferenceMilliseconds(now, when), (long) INT_MAX);
}

/*
 * Leave the slot on exit, however the worker exits, and tell the launcher,
 * which restarts the worker unless it left because the extension is gone.
 */
static void
WorkerDetach(int code, Datum arg)
{
	if (MySlot == NULL)
		return;

	LWLockAcquire(presence_shared->lock, LW_EXCLUSIVE);
	if (MySlot->pid == MyProcPid)
	{
		MySlot->pid = 0;
		MySlot->latch = NULL;
		pg_atomic_write_u64(&MySlot->next_wake, (uint64) DT_NOBEGIN);
	}
	if (presence_shared->launcher_latch != NULL)
		SetLatch(presence_shared->launcher_latch);
	LWLockRelease(presence_shared->lock);

	MySlot = NULL;
}

/*
 * Exit because the extension is not installed in this database: the
 * answer to a probe, or the consequence of DROP EXTENSION.  The slot says
 * so, which tells the launcher not to restart the worker; exit code 0
 * tells the postmaster the same.
 */
static void
WorkerExitAbsent(void)
{
	PresenceSlot *slot;

	LWLockAcquire(presence_shared->lock, LW_EXCLUSIVE);
	slot = PresenceFindSlot(WorkerDatabase);
	if (slot != NULL && (slot->pid == 0 || slot->pid == MyProcPid))
		slot->absent = true;
	LWLockRelease(presence_shared->lock);

	ereport(DEBUG1,
			(errmsg("presence worker exiting: extension \"%s\" is not installed in this database",
					PRESENCE_EXTENSION_NAME)));
	proc_exit(0);
}

/*
 * Finish a step: commit, which makes event.c write history and send the
 * events, and go back to the worker's own memory context.
 */
static void
WorkerEndStep(void)
{
	PopActiveSnapshot();
	CommitTransactionCommand();
	PresenceAfterCommitNotify();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);
	MemoryContextSwitchTo(WorkerContext);
}

/*
 * Start a step: a transaction with a snapshot, in which the extension is
 * known to exist and the given relations of its schema are locked.  Exits
 * the process when the extension is gone.  Returns false, with the
 * transaction already ended, when the step must wait: someone holds a
 * conflicting lock, most likely DROP EXTENSION.
 *
 * Every lock is taken without waiting.  DROP EXTENSION locks the extension
 * first and then each member as it goes, so a worker that waited for one
 * of them while holding another could deadlock with it; holding the
 * extension's own lock instead keeps a DROP from starting until the step
 * commits.
 */
static bool
WorkerBeginStep(const char *activity, const char *const *relnames,
				LOCKMODE lockmode)
{
	Oid			extoid;
	Oid			nspoid;
	LOCKTAG		tag;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, activity);

	/* the worker starts after recovery; this is a second line of defence */
	if (RecoveryInProgress())
	{
		WorkerEndStep();
		return false;
	}

	extoid = get_extension_oid(PRESENCE_EXTENSION_NAME, true);
	if (!OidIsValid(extoid))
	{
		WorkerEndStep();
		WorkerExitAbsent();
	}

	SET_LOCKTAG_OBJECT(tag, MyDatabaseId, ExtensionRelationId, extoid, 0);
	if (LockAcquire(&tag, AccessShareLock, false, true) ==
		LOCKACQUIRE_NOT_AVAIL)
	{
		WorkerEndStep();
		return false;
	}

	/* a DROP EXTENSION may have committed between the lookup and the lock */
	AcceptInvalidationMessages();
	if (get_extension_oid(PRESENCE_EXTENSION_NAME, true) != extoid)
	{
		WorkerEndStep();
		return false;
	}

	if (relnames == NULL)
		return true;

	nspoid = get_namespace_oid(PRESENCE_SCHEMA, false);
	for (; *relnames != NULL; relnames++)
	{
		Oid			relid = get_relname_relid(*relnames, nspoid);

		if (!OidIsValid(relid))
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_TABLE),
					 errmsg("relation \"%s.%s\" does not exist",
							PRESENCE_SCHEMA, *relnames),
					 errdetail("The extension \"%s\" is not installed correctly.",
							   PRESENCE_EXTENSION_NAME)));
		if (!ConditionalLockRelationOid(relid, lockmode))
		{
			WorkerEndStep();
			return false;
		}
	}
	return true;
}

/*
 * Make sure the extension is here before taking a slot: a worker started
 * as a probe in a database without it exits at once.  While a DROP
 * EXTENSION holds the extension, wait to see how it ends.  Returns the
 * database's name, for the log.
 */
static char *
WorkerWaitForExtension(void)
{
	char	   *dbname;

	while (!WorkerBeginStep("presence: starting", NULL, NoLock))
	{
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 PRESENCE_LOCKED_RETRY_MS, PRESENCE_WAIT_EVENT_MAIN);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	dbname = MemoryContextStrdup(WorkerContext,
								 get_database_name(MyDatabaseId));
	WorkerEndStep();

	return dbname;
}

/*
 * Take the database's slot and publish the worker's latch in it.  Exits
 * quietly when the worker is not needed after all: another worker already
 * serves the database (one started by an earlier launcher, say), the
 * launcher has forgotten the database, or a DROP DATABASE or a restore is
 * waiting for it.
 */
static void
WorkerAttach(void)
{
	TimestampTz now = GetCurrentTimestamp();
	PresenceSlot *slot;

	LWLockAcquire(presence_shared->lock, LW_EXCLUSIVE);
	slot = PresenceFindSlot(WorkerDatabase);
	if (slot != NULL && slot->pid == 0 && slot->paused_until <= now &&
		!PresenceRestoreHolds(slot, now))
	{
		slot->pid = MyProcPid;
		slot->latch = MyLatch;
		PresenceSlotStart(slot, now, DT_NOEND);
		MySlot = slot;
	}
	/* the launcher limits how many workers start at once */
	if (presence_shared->launcher_latch != NULL)
		SetLatch(presence_shared->launcher_latch);
	LWLockRelease(presence_shared->lock);

	if (MySlot == NULL)
	{
		ereport(DEBUG1,
				(errmsg("presence worker exiting: not needed in this database")));
		proc_exit(0);
	}
}

/*
 * Say what the worker waits for: next_wake for committing backends (see
 * PresenceWorkerNextWake), rest_until for worker_status().
 */
static void
WorkerPublishWake(TimestampTz next_wake, TimestampTz rest_until)
{
	LWLockAcquire(presence_shared->lock, LW_EXCLUSIVE);
	MySlot->rest_until = rest_until;
	LWLockRelease(presence_shared->lock);

	pg_atomic_write_u64(&MySlot->next_wake, (uint64) next_wake);
}

/*
 * Count what a batch did.
 */
static void
WorkerCountSweep(TimestampTz as_of, int events)
{
	LWLockAcquire(presence_shared->lock, LW_EXCLUSIVE);
	MySlot->last_sweep = as_of;
	MySlot->transitions += events;
	LWLockRelease(presence_shared->lock);
}

/*
 * Delete history older than presence.history_retention, about once a
 * minute, in short transactions so as not to hold up anyone.  A large
 * backlog is worked off over several wake-ups.
 */
static void
WorkerPrune(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int64		retention_ms = (int64) presence_history_retention_s * 1000;
	int			i;

	if (retention_ms == 0 || now < WorkerNextPrune)
		return;

	for (i = 0; i < PRESENCE_PRUNE_MAX_BATCHES; i++)
	{
		TimestampTz before;
		int			deleted;

		if (!WorkerBeginStep("presence: prune history", prune_relations,
							 RowExclusiveLock))
			return;
		before = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
											 -retention_ms);
		deleted = PresencePruneHistory(before, PRESENCE_PRUNE_BATCH);
		WorkerEndStep();

		if (deleted < PRESENCE_PRUNE_BATCH)
		{
			WorkerNextPrune =
				TimestampTzPlusMilliseconds(now, PRESENCE_PRUNE_EVERY_MS);
			return;
		}
	}
}

/*
 * Clean up after an error and log, count and keep it for worker_status().
 * Called in a PG_CATCH block; leaves the worker in its own memory context
 * outside any transaction.
 */
static void
WorkerCatchError(void)
{
	ErrorData  *edata;
	const char *message;
	int			len;

	MemoryContextSwitchTo(WorkerContext);
	edata = CopyErrorData();
	EmitErrorReport();
	FlushErrorState();
	AbortCurrentTransaction();
	MemoryContextSwitchTo(WorkerContext);
	pgstat_report_activity(STATE_IDLE, NULL);

	/* cut at a character boundary: worker_status() returns it as text */
	message = edata->message ? edata->message : "";
	len = pg_mbcliplen(message, strlen(message), PRESENCE_LAST_ERROR_LEN - 1);

	LWLockAcquire(presence_shared->lock, LW_EXCLUSIVE);
	MySlot->errors++;
	memcpy(MySlot->last_error, message, len);
	MySlot->last_error[len] = '\0';
	LWLockRelease(presence_shared->lock);

	FreeErrorData(edata);
}

/*
 * Back off after a failed pass: one second, doubling while the failures
 * persist, up to a minute.  While backing off, committing backends do not
 * wake the worker.
 */
static void
WorkerBackOff(void)
{
	WorkerBackoffMs = (WorkerBackoffMs == 0) ? PRESENCE_ERROR_MIN_MS :
		Min(WorkerBackoffMs * 2, PRESENCE_ERROR_MAX_MS);
	WorkerRetryAt = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
												WorkerBackoffMs);

	LWLockAcquire(presence_shared->lock, LW_EXCLUSIVE);
	MySlot->rest_until = WorkerRetryAt;
	LWLockRelease(presence_shared->lock);

	pg_atomic_write_u64(&MySlot->next_wake, (uint64) DT_NOBEGIN);
}

/*
 * An error ended a pass: record it, back off, and settle users one at a
 * time from now on until a pass goes through cleanly, so that one user
 * whose transitions fail cannot hold up everyone else.
 */
static void
WorkerRecordError(void)
{
	WorkerCatchError();
	WorkerBackOff();
	WorkerCareful = true;
}

/*
 * The quarantine entry of a user, or NULL.
 */
static QuarantinedUser *
WorkerFindQuarantined(const char *user_id)
{
	ListCell   *lc;

	foreach(lc, WorkerQuarantine)
	{
		QuarantinedUser *q = (QuarantinedUser *) lfirst(lc);

		if (strcmp(q->user_id, user_id) == 0)
			return q;
	}
	return NULL;
}

/*
 * Forget a user's quarantine entry, if any.
 */
static void
WorkerForgetQuarantined(const char *user_id)
{
	QuarantinedUser *q = WorkerFindQuarantined(user_id);

	if (q == NULL)
		return;
	WorkerQuarantine = list_delete_ptr(WorkerQuarantine, q);
	pfree(q->user_id);
	pfree(q);
}

/*
 * The ids of the users set aside now, as a list in the current memory
 * context whose strings stay valid until the next call; *retry is set to
 * the earliest end of a wait (DT_NOEND if none).  Entries long past their
 * wait are forgotten.
 */
static List *
WorkerQuarantinedIds(TimestampTz now, TimestampTz *retry)
{
	List	   *ids = NIL;
	ListCell   *lc;

	*retry = DT_NOEND;
	foreach(lc, WorkerQuarantine)
	{
		QuarantinedUser *q = (QuarantinedUser *) lfirst(lc);

		if (q->until > now)
		{
			ids = lappend(ids, q->user_id);
			*retry = Min(*retry, q->until);
		}
		else if (TimestampTzPlusMilliseconds(q->until,
											 PRESENCE_PROBATION_MS) <= now)
		{
			pfree(q->user_id);
			pfree(q);
			WorkerQuarantine = foreach_delete_current(WorkerQuarantine, lc);
		}
	}
	return ids;
}

/*
 * Set a user aside after their transitions failed: for a second the first
 * time, twice as long each time they fail again, up to a minute.
 */
static void
WorkerQuarantineUser(const char *user_id)
{
	QuarantinedUser *q = WorkerFindQuarantined(user_id);

	if (q == NULL)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(QuarantineContext);

		q = palloc(sizeof(QuarantinedUser));
		q->user_id = pstrdup(user_id);
		q->wait_ms = PRESENCE_QUARANTINE_MIN_MS;
		WorkerQuarantine = lappend(WorkerQuarantine, q);
		MemoryContextSwitchTo(oldcxt);
	}
	else
		q->wait_ms = Min(q->wait_ms * 2, PRESENCE_QUARANTINE_MAX_MS);
	q->until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), q->wait_ms);

	ereport(WARNING,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("presence worker is skipping user \"%s\" for %d ms",
					user_id, q->wait_ms),
			 errdetail("Settling the user's due transitions failed with the error above; other users are not held up.")));
}

/*
 * Sweep after an error: settle due users one transaction each, so that a
 * user whose transitions fail (a bad row, a trigger of the application's
 * that raises) is set aside while the others go through.  When the first
 * few users all fail, the cause is not one user but something systemic (a
 * full notification queue, a broken table): then nobody is set aside and
 * the worker backs off as for any error.  Returns the number of events,
 * or -1 when the caller should back off.
 */
static int
WorkerSweepCarefully(void)
{
	TimestampTz as_of;
	TimestampTz retry;
	List	   *ids;
	List	   *volatile failed_ids = NIL;
	ListCell   *lc;
	bool		more;
	volatile int events = 0;
	volatile int succeeded = 0;

	if (!WorkerBeginStep("presence: find due users", sweep_relations,
						 RowExclusiveLock))
		return 0;
	as_of = GetCurrentTimestamp();
	MemoryContextSwitchTo(WorkerContext);
	ids = PresenceFindDueUsers(as_of, PRESENCE_CAREFUL_BATCH,
							   WorkerQuarantinedIds(as_of, &retry), &more);
	WorkerEndStep();

	foreach(lc, ids)
	{
		const char *user_id = (const char *) lfirst(lc);

		PG_TRY();
		{
			if (WorkerBeginStep("presence: sweep one user", sweep_relations,
								RowExclusiveLock))
			{
				int			n = PresenceSettleUsers(list_make1((void *) user_id),
													as_of, true);

				WorkerEndStep();
				WorkerCountSweep(as_of, n);
				WorkerForgetQuarantined(user_id);
				events += n;
				succeeded++;
			}
		}
		PG_CATCH();
		{
			WorkerCatchError();
			failed_ids = lappend(failed_ids, (void *) user_id);
		}
		PG_END_TRY();

		if (succeeded == 0 &&
			list_length(failed_ids) >= PRESENCE_CAREFUL_SYSTEMIC)
			return -1;
	}

	if (failed_ids == NIL && !more)
		WorkerCareful = false;
	foreach(lc, failed_ids)
		WorkerQuarantineUser((const char *) lfirst(lc));
	return events;
}

/*
 * One working pass: settle everything due, prune, then find the next
 * deadline and publish it.  Returns how long to sleep.
 */
static long
WorkerTick(void)
{
	TimestampTz now;
	TimestampTz wake;
	TimestampTz deadline;
	TimestampTz retry;
	bool		have_deadline;
	bool		more;
	int			events;

	if (WorkerCareful)
	{
		events = WorkerSweepCarefully();
		if (events < 0)
		{
			WorkerBackOff();
			return WorkerBackoffMs;
		}
	}
	else
	{
		do
		{
			TimestampTz as_of;
			List	   *ids;

			if (!WorkerBeginStep("presence: sweep", sweep_relations,
								 RowExclusiveLock))
				return PRESENCE_LOCKED_RETRY_MS;
			as_of = GetCurrentTimestamp();
			ids = PresenceFindDueUsers(as_of, presence_batch_size,
									   WorkerQuarantinedIds(as_of, &retry),
									   &more);
			events = PresenceSettleUsers(ids, as_of, true);
			WorkerEndStep();
			WorkerCountSweep(as_of, events);

			/* the due users left are locked by other transactions */
			if (more && events == 0)
				return PRESENCE_BUSY_RETRY_MS;
		} while (more);
	}

	WorkerPrune();

	if (!WorkerBeginStep("presence: schedule", schedule_relations,
						 AccessShareLock))
		return PRESENCE_LOCKED_RETRY_MS;
	now = GetCurrentTimestamp();
	have_deadline = PresenceNextDeadline(WorkerQuarantinedIds(now, &retry),
										 &deadline);
	WorkerEndStep();

	/* wake for the next deadline, or to retry a user set aside */
	wake = TimestampTzPlusMilliseconds(now, PRESENCE_MAX_SLEEP_MS);
	if (have_deadline && deadline < wake)
		wake = deadline;
	if (retry < wake)
		wake = retry;
	pg_atomic_write_u64(&MySlot->next_wake, (uint64) wake);

	/*
	 * Something already due that the sweep did not settle is held by
	 * another transaction; do not spin while it is.
	 */
	if (wake <= now && events == 0)
		return PRESENCE_BUSY_RETRY_MS;

	return WorkerDelay(now, wake);
}

/*
 * A pass while the worker rests, during the startup grace or after an
 * error: it only checks that the extension is still installed, so that a
 * DROP EXTENSION is not kept waiting for the worker to exit.
 */
static void
WorkerRest(void)
{
	if (WorkerBeginStep("presence: resting", NULL, NoLock))
		WorkerEndStep();
}

/*
 * One iteration of the main loop, errors included; returns how long to
 * sleep.  next_wake is published before the latch is reset and before
 * anything is read, so that no commit made meanwhile goes unnoticed.
 */
static long
WorkerRunOnce(void)
{
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz resume = Max(PresenceGraceUntil(), WorkerRetryAt);
	long		delay;

	if (now < resume)
		WorkerPublishWake(DT_NOBEGIN, resume);
	else
		WorkerPublishWake(DT_NOEND, 0);

	ResetLatch(MyLatch);
	CHECK_FOR_INTERRUPTS();

	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		/* presence.history_retention may have changed */
		WorkerNextPrune = 0;
	}

	PG_TRY();
	{
		if (now < resume)
		{
			WorkerRest();
			delay = WorkerDelay(GetCurrentTimestamp(), resume);
		}
		else
		{
			delay = WorkerTick();
			WorkerRetryAt = 0;
			WorkerBackoffMs = 0;
		}
	}
	PG_CATCH();
	{
		WorkerRecordError();
		delay = WorkerBackoffMs;
	}
	PG_END_TRY();

	return delay;
}

/*
 * Say in every message of the worker where it comes from: its errors are
 * otherwise bare lines in the server log.
 */
static void
WorkerErrorContext(void *arg)
{
	errcontext("presence worker for database \"%s\"", (const char *) arg);
}

/*
 * Entry point of a per-database worker; the database's OID is the
 * argument.  SIGTERM (die) ends it at the next CHECK_FOR_INTERRUPTS, even
 * in the middle of a query; every wait ends in one, which also answers
 * the ProcSignalBarrier of a DROP DATABASE elsewhere.
 */
void
PresenceWorkerMain(Datum main_arg)
{
	char	   *dbname;
	ErrorContextCallback errcallback;

	WorkerDatabase = DatumGetObjectId(main_arg);

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(WorkerDatabase, InvalidOid, 0);
	SetConfigOption("search_path", "pg_catalog, pg_temp",
					PGC_SUSET, PGC_S_OVERRIDE);
	pgstat_report_appname("presence worker");

	WorkerContext = AllocSetContextCreate(TopMemoryContext,
										  "presence worker",
										  ALLOCSET_DEFAULT_SIZES);
	QuarantineContext = AllocSetContextCreate(TopMemoryContext,
											  "presence worker quarantine",
											  ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(WorkerContext);

	on_shmem_exit(WorkerDetach, (Datum) 0);
	dbname = WorkerWaitForExtension();
	WorkerAttach();
	ereport(LOG,
			(errmsg("presence worker started for database \"%s\"", dbname)));

	errcallback.callback = WorkerErrorContext;
	errcallback.arg = MemoryContextStrdup(TopMemoryContext, dbname);
	errcallback.previous = error_context_stack;
	error_context_stack = &errcallback;

	for (;;)
	{
		long		delay;

		MemoryContextReset(WorkerContext);
		delay = WorkerRunOnce();
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 delay, PRESENCE_WAIT_EVENT_MAIN);
	}
}

/*
 * presence.worker_status(): the worker of the current database, one row
 * if it runs, none otherwise (also when the library is not preloaded).
 * next_wake is NULL while the worker is busy; while it rests it is when
 * it resumes.
 */
Datum
presence_worker_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Datum		values[7];
	bool		nulls[7];
	PresenceSlot *slot;
	bool		found = false;
	int			pid = 0;
	TimestampTz started_at = 0;
	TimestampTz last_sweep = 0;
	TimestampTz next_wake = 0;
	uint64		transitions = 0;
	uint64		errors = 0;
	char		last_error[PRESENCE_LAST_ERROR_LEN];

	InitMaterializedSRF(fcinfo, 0);

	if (!PresenceShmemAvailable())
		return (Datum) 0;

	LWLockAcquire(presence_shared->lock, LW_SHARED);
	slot = PresenceFindSlot(MyDatabaseId);
	if (slot != NULL && slot->pid != 0)
	{
		found = true;
		pid = slot->pid;
		started_at = slot->started_at;
		last_sweep = slot->last_sweep;
		next_wake = (TimestampTz) pg_atomic_read_u64(&slot->next_wake);
		if (next_wake == DT_NOBEGIN)
			next_wake = slot->rest_until;
		transitions = slot->transitions;
		errors = slot->errors;
		strlcpy(last_error, slot->last_error, sizeof(last_error));
	}
	LWLockRelease(presence_shared->lock);

	if (!found)
		return (Datum) 0;

	memset(nulls, 0, sizeof(nulls));
	values[0] = Int32GetDatum(pid);
	values[1] = TimestampTzGetDatum(started_at);
	values[2] = TimestampTzGetDatum(last_sweep);
	nulls[2] = (last_sweep == 0);
	values[3] = TimestampTzGetDatum(next_wake);
	nulls[3] = (next_wake == DT_NOEND);
	values[4] = Int64GetDatum((int64) transitions);
	values[5] = Int64GetDatum((int64) errors);
	values[6] = CStringGetTextDatum(last_error);
	nulls[6] = (last_error[0] == '\0');

	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	return (Datum) 0;
}
