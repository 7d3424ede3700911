/*-------------------------------------------------------------------------
 *
 * launcher.c
 *	  The launcher: a static background worker that keeps one worker
 *	  running in every database that has the extension.
 *
 * NOTIFY reaches only listeners connected to the notifying database, so
 * the transitions of a database must be carried out by a worker connected
 * to it.  The launcher finds those databases without any configuration:
 * when it starts it probes every database that accepts connections (a
 * probe is simply a worker, which exits at once if the extension is not
 * installed), it looks at pg_database again every few seconds for
 * databases it has not seen yet (CREATE DATABASE ... TEMPLATE of a
 * database with the extension), and a committed CREATE EXTENSION presence
 * asks it to probe that database again (see hooks.c).
 *
 * Workers are started by database OID with BGW_NEVER_RESTART: the
 * launcher itself restarts one that dies for any reason other than the
 * extension being gone, quickly the first time and with a growing delay
 * if it keeps dying, and it never starts one for a database that has been
 * dropped or that a DROP DATABASE is waiting for (see hooks.c).
 *
 * What the launcher knows about each shared slot (see shmem.c) that is
 * not needed by anyone else lives in launcher_slots, indexed alike.  When
 * the launcher itself is restarted, workers that are still running are
 * adopted: their exit is noticed through their slot rather than through
 * a handle.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "presence.h"

#define PRESENCE_LIBRARY			"presence"

#define PRESENCE_RESCAN_MS			10000	/* look for new databases */
#define PRESENCE_MAX_STARTING		2	/* workers not yet reporting */
#define PRESENCE_RESTART_MIN_MS		1000
#define PRESENCE_RESTART_MAX_MS		60000
#define PRESENCE_HEALTHY_MS			60000	/* up this long: no crash loop */
#define PRESENCE_REGISTER_RETRY_MS	5000	/* when out of bgworker slots */

/* The launcher's private view of one shared slot. */
typedef struct LauncherSlot
{
	bool		known;			/* this launcher has seen the slot in use */
	bool		wanted;			/* the database needs a worker started */
	bool		running;		/* a worker was started or adopted */
	BackgroundWorkerHandle *handle; /* NULL when none, or adopted */
	TimestampTz restart_at;		/* start no worker before this */
	int			failures;		/* abnormal exits in a row */
} LauncherSlot;

static LauncherSlot *launcher_slots;

/* Databases probed and found without the extension, sorted. */
static Oid *absent_dbs;
static int	n_absent;

/* Scratch for LauncherReconcile, which must not allocate under the lock. */
static Oid *newly_absent;
static int *to_start;

static MemoryContext LauncherContext;
static bool warned_slots_full = false;
static bool warned_no_bgworkers = false;

/*
 * Register the launcher.  Called from _PG_init while preloading.  A short
 * restart time brings it back soon after pg_terminate_backend() or an
 * unexpected error; its workers keep running meanwhile.
 */
void
PresenceRegisterLauncher(void)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 5;
	strlcpy(worker.bgw_library_name, PRESENCE_LIBRARY, BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "PresenceLauncherMain", BGW_MAXLEN);
	strlcpy(worker.bgw_name, "presence launcher", BGW_MAXLEN);
	strlcpy(worker.bgw_type, "presence launcher", BGW_MAXLEN);

	RegisterBackgroundWorker(&worker);
}

/*
 * Forget the launcher's latch on exit, so that nobody sets it after the
 * process is gone.
 */
static void
LauncherDetach(int code, Datum arg)
{
	LWLockAcquire(presence_shared->lock, LW_EXCLUSIVE);
	if (presence_shared->launcher_pid == MyProcPid)
	{
		presence_shared->launcher_pid = 0;
		presence_shared->launcher_latch = NULL;
	}
	LWLockRelease(presence_shared->lock);
}

/*
 * Publish the launcher's latch.  The first launcher since shared memory
 * was created also restarts the startup grace from now: on a promoted
 * standby it starts at the promotion, which is when clients come over.  A
 * later launcher leaves it alone: a launcher restart is not a server
 * restart, and clients that never lost their connection need no grace.
 */
static void
LauncherAttach(void)
{
	TimestampTz now = GetCurrentTimestamp();

	on_shmem_exit(LauncherDetach, (Datum) 0);

	LWLockAcquire(presence_shared->lock, LW_EXCLUSIVE);
	presence_shared->launcher_pid = MyProcPid;
	presence_shared->launcher_latch = MyLatch;
	if (!presence_shared->launcher_started)
	{
		presence_shared->launcher_started = true;
		presence_shared->grace_until =
			Max(presence_shared->grace_until,
				TimestampTzPlusMilliseconds(now, presence_startup_grace_ms));
	}
	LWLockRelease(presence_shared->lock);
}

/*
 * The OIDs of the databases a worker could serve, sorted: those that
 * accept connections, are not templates, and are not half dropped.
 * Allocated in the caller's memory context.
 */
static Oid *
LauncherScanDatabases(int *ndbs)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			capacity = 16;
	int			n = 0;
	Oid		   *dbs = palloc(capacity * sizeof(Oid));
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	(void) GetTransactionSnapshot();

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (db->datistemplate || !db->datallowconn ||
			database_is_invalid_form(db))
			continue;
		if (n == capacity)
		{
			capacity *= 2;
			dbs = repalloc(dbs, capacity * sizeof(Oid));
		}
		dbs[n++] = db->oid;
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);

	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);

	qsort(dbs, n, sizeof(Oid), oid_cmp);
	*ndbs = n;
	return dbs;
}

/*
 * Whether a sorted array of OIDs holds an OID.
 */
static bool
OidInSorted(Oid oid, const Oid *oids, int n)
{
	return n > 0 && bsearch(&oid, oids, n, sizeof(Oid), oid_cmp) != NULL;
}

/*
 * Drop the handles of workers that have exited.  Done before taking our
 * lock, as GetBackgroundWorkerPid takes a lock of its own.
 */
static void
LauncherPollHandles(void)
{
	int			i;

	for (i = 0; i < presence_shared->nslots; i++)
	{
		LauncherSlot *ls = &launcher_slots[i];
		pid_t		pid;

		if (ls->handle != NULL &&
			GetBackgroundWorkerPid(ls->handle, &pid) == BGWH_STOPPED)
		{
			pfree(ls->handle);
			ls->handle = NULL;
		}
	}
}

/*
 * Take note of slots claimed since the last look: by a CREATE EXTENSION
 * or a DROP DATABASE in some backend, or, when this launcher has just
 * started, by an earlier launcher.  A slot with a worker in it is adopted;
 * any other needs a worker started, which probes the database.
 *
 * This happens before pg_database is read, so every database noted here
 * is visible to that scan and none is mistaken for dropped.
 */
static void
LauncherNoteSlots(void)
{
	int			i;

	LWLockAcquire(presence_shared->lock, LW_SHARED);
	for (i = 0; i < presence_shared->nslots; i++)
	{
		PresenceSlot *slot = &presence_shared->slots[i];
		LauncherSlot *ls = &launcher_slots[i];

		if (!OidIsValid(slot->dboid) || ls->known)
			continue;

		memset(ls, 0, sizeof(LauncherSlot));
		ls->known = true;
		ls->running = (slot->pid != 0);
		ls->wanted = !ls->running;
	}
	LWLockRelease(presence_shared->lock);
}

/*
 * Give a slot back.  The caller holds the lock exclusively and has made
 * sure that no worker runs there.
 */
static void
LauncherFreeSlot(int i)
{
	presence_shared->slots[i].dboid = InvalidOid;
	memset(&launcher_slots[i], 0, sizeof(LauncherSlot));
	warned_slots_full = false;
}

/*
 * The delay before restarting a worker that exited abnormally: one second,
 * doubling with each further quick failure up to a minute.  A worker that
 * had been up for a while was healthy, so its exit starts afresh.
 */
static TimestampTz
LauncherRestartTime(LauncherSlot *ls, TimestampTz started_at, TimestampTz now)
{
	int			delay = PRESENCE_RESTART_MIN_MS;
	int			i;

	if (started_at != 0 &&
		TimestampDifferenceExceeds(started_at, now, PRESENCE_HEALTHY_MS))
		ls->failures = 0;

	for (i = 0; i < ls->failures && delay < PRESENCE_RESTART_MAX_MS; i++)
		delay *= 2;
	delay = Min(delay, PRESENCE_RESTART_MAX_MS);
	ls->failures++;

	return TimestampTzPlusMilliseconds(now, delay);
}

/*
 * Bring the slots in line with pg_database and with what the workers
 * reported, and choose which workers to start now.  Fills to_start with
 * slot numbers and newly_absent with databases whose probe found no
 * extension; returns the number of slots to start, and sets *out_of_slots
 * when a database could not be probed for lack of a slot.
 *
 * The whole pass holds the lock exclusively and must not fail: it only
 * reads and assigns, and signals workers that have to go.
 */
static int
LauncherReconcile(const Oid *dbs, int ndbs, TimestampTz now,
				  int *nabsent, bool *out_of_slots)
{
	int			starting = 0;
	int			nstart = 0;
	int			i;

	*nabsent = 0;
	*out_of_slots = false;

	LWLockAcquire(presence_shared->lock, LW_EXCLUSIVE);

	for (i = 0; i < presence_shared->nslots; i++)
	{
		PresenceSlot *slot = &presence_shared->slots[i];
		LauncherSlot *ls = &launcher_slots[i];
		bool		alive = (slot->pid != 0 || ls->handle != NULL);

		/* claimed after LauncherNoteSlots: next time */
		if (!ls->known)
			continue;

		if (ls->running && !alive)
		{
			ls->running = false;
			if (!slot->absent)
			{
				ls->wanted = true;
				/* stopped for a statement (see hooks.c): no failure */
				if (slot->paused_until > now)
					ls->restart_at = now;
				else
					ls->restart_at = LauncherRestartTime(ls, slot->started_at,
														 now);
			}
			else if (slot->probe_requested)
			{
				/* CREATE EXTENSION committed after the worker looked */
				ls->wanted = true;
				ls->failures = 0;
			}
			else
			{
				newly_absent[(*nabsent)++] = slot->dboid;
				LauncherFreeSlot(i);
				continue;
			}
		}

		if (!OidInSorted(slot->dboid, dbs, ndbs))
		{
			/* dropped, or no longer accepts connections */
			if (slot->pid != 0)
				(void) kill(slot->pid, SIGTERM);
			else if (!alive)
				LauncherFreeSlot(i);
			continue;
		}

		if (alive && slot->pid == 0)
			starting++;
	}

	/* Restart or probe where a worker is wanted, a few at a time. */
	for (i = 0; i < presence_shared->nslots; i++)
	{
		PresenceSlot *slot = &presence_shared->slots[i];
		LauncherSlot *ls = &launcher_slots[i];

		if (starting + nstart >= PRESENCE_MAX_STARTING)
			break;
		if (!ls->known || !ls->wanted || ls->running ||
			slot->pid != 0 || ls->handle != NULL ||
			now < ls->restart_at || now < slot->paused_until ||
			PresenceRestoreHolds(slot, now) ||
			!OidInSorted(slot->dboid, dbs, ndbs))
			continue;
		to_start[nstart++] = i;
	}

	/* Probe databases never seen before. */
	for (i = 0; i < ndbs && starting + nstart < PRESENCE_MAX_STARTING; i++)
	{
		PresenceSlot *slot;
		bool		just_probed = false;
		int			j;

		for (j = 0; j < *nabsent; j++)
			just_probed |= (newly_absent[j] == dbs[i]);
		if (just_probed ||
			OidInSorted(dbs[i], absent_dbs, n_absent) ||
			PresenceFindSlot(dbs[i]) != NULL)
			continue;

		slot = PresenceClaimSlot(dbs[i]);
		if (slot == NULL)
		{
			/* unless probes under way may yet free a slot */
			*out_of_slots = (starting + nstart == 0);
			break;
		}
		memset(&launcher_slots[slot - presence_shared->slots], 0,
			   sizeof(LauncherSlot));
		launcher_slots[slot - presence_shared->slots].known = true;
		to_start[nstart++] = slot - presence_shared->slots;
	}

	/* Whatever is started now starts afresh. */
	for (i = 0; i < nstart; i++)
	{
		PresenceSlot *slot = &presence_shared->slots[to_start[i]];
		LauncherSlot *ls = &launcher_slots[to_start[i]];

		slot->probe_requested = false;
		slot->absent = false;
		slot->started_at = 0;
		ls->wanted = false;
		ls->running = true;
	}

	LWLockRelease(presence_shared->lock);

	return nstart;
}

/*
 * Remember databases found without the extension, so that rescans do not
 * probe them again, and forget those no longer in pg_database.
 */
static void
LauncherUpdateAbsent(const Oid *dbs, int ndbs, int nabsent)
{
	int			kept = 0;
	int			i;

	for (i = 0; i < n_absent; i++)
	{
		if (OidInSorted(absent_dbs[i], dbs, ndbs))
			absent_dbs[kept++] = absent_dbs[i];
	}
	n_absent = kept;

	if (nabsent == 0)
		return;

	absent_dbs = repalloc(absent_dbs, (n_absent + nabsent) * sizeof(Oid));
	for (i = 0; i < nabsent; i++)
	{
		if (!OidInSorted(newly_absent[i], absent_dbs, n_absent))
			absent_dbs[n_absent++] = newly_absent[i];
	}
	qsort(absent_dbs, n_absent, sizeof(Oid), oid_cmp);
}

/*
 * Start the worker of one database.  Running out of background worker
 * slots is reported once, not every time, and is retried later: the
 * launcher must never fail because of it.
 */
static void
LauncherStartWorker(int i, TimestampTz now)
{
	LauncherSlot *ls = &launcher_slots[i];
	Oid			dboid = presence_shared->slots[i].dboid;
	BackgroundWorker worker;
	MemoryContext oldcontext;
	bool		ok;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS |
		BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(worker.bgw_library_name, PRESENCE_LIBRARY, BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, "PresenceWorkerMain", BGW_MAXLEN);
	snprintf(worker.bgw_name, BGW_MAXLEN,
			 "presence worker for database %u", dboid);
	strlcpy(worker.bgw_type, "presence worker", BGW_MAXLEN);
	worker.bgw_main_arg = ObjectIdGetDatum(dboid);
	worker.bgw_notify_pid = MyProcPid;

	/* the handle outlives this pass */
	oldcontext = MemoryContextSwitchTo(TopMemoryContext);
	ok = RegisterDynamicBackgroundWorker(&worker, &ls->handle);
	MemoryContextSwitchTo(oldcontext);

	if (ok)
	{
		warned_no_bgworkers = false;
		return;
	}

	ls->handle = NULL;
	ls->running = false;
	ls->wanted = true;
	ls->restart_at = TimestampTzPlusMilliseconds(now,
												 PRESENCE_REGISTER_RETRY_MS);
	if (!warned_no_bgworkers)
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("presence launcher could not start a worker for database %u",
						dboid),
				 errdetail("No background worker slot is free."),
				 errhint("Consider increasing max_worker_processes.")));
		warned_no_bgworkers = true;
	}
}

/*
 * How long the launcher may sleep: until the next rescan, or until a
 * worker is due to be restarted or a held database is released, whichever
 * comes first.  A database held by a restore waits for the latch.  Workers waiting only for others to finish starting need
 * no timer: the postmaster and the workers wake the launcher as they
 * report.
 */
static long
LauncherTimeout(TimestampTz now)
{
	TimestampTz next = TimestampTzPlusMilliseconds(now, PRESENCE_RESCAN_MS);
	int			i;

	LWLockAcquire(presence_shared->lock, LW_SHARED);
	for (i = 0; i < presence_shared->nslots; i++)
	{
		PresenceSlot *slot = &presence_shared->slots[i];
		LauncherSlot *ls = &launcher_slots[i];
		TimestampTz due;

		if (!ls->known || !ls->wanted || ls->running)
			continue;
		/* restoring sessions wake the launcher as they exit */
		if (PresenceRestoreHolds(slot, DT_NOEND))
			continue;
		due = Max(ls->restart_at, slot->paused_until);
		if (due > now && due < next)
			next = due;
	}
	LWLockRelease(presence_shared->lock);

	return TimestampDifferenceMilliseconds(now, next);
}

/*
 * One pass of the launcher: see which workers exited, read pg_database,
 * start what is wanted, and return how long to sleep.
 */
static long
LauncherPass(void)
{
	Oid		   *dbs;
	int			ndbs;
	int			nabsent;
	int			nstart;
	bool		out_of_slots;
	TimestampTz now;
	int			i;

	LauncherPollHandles();
	LauncherNoteSlots();
	dbs = LauncherScanDatabases(&ndbs);

	now = GetCurrentTimestamp();
	nstart = LauncherReconcile(dbs, ndbs, now, &nabsent, &out_of_slots);
	LauncherUpdateAbsent(dbs, ndbs, nabsent);

	for (i = 0; i < nstart; i++)
		LauncherStartWorker(to_start[i], now);

	if (out_of_slots && !warned_slots_full)
	{
		ereport(WARNING,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("presence launcher cannot look for the extension in every database"),
				 errdetail("All %d slots set by presence.max_databases are in use.",
						   presence_shared->nslots),
				 errhint("Consider increasing presence.max_databases.")));
		warned_slots_full = true;
	}

	return LauncherTimeout(now);
}

/*
 * Entry point of the launcher.  It connects to no database, only to the
 * shared catalogs, so that it holds up no DROP DATABASE.  Every wait ends
 * in CHECK_FOR_INTERRUPTS, which also answers the ProcSignalBarrier that
 * DROP DATABASE sends to every process from PG 15 on.
 */
void
PresenceLauncherMain(Datum main_arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("presence launcher");

	launcher_slots = MemoryContextAllocZero(TopMemoryContext,
											presence_shared->nslots *
											sizeof(LauncherSlot));
	newly_absent = MemoryContextAlloc(TopMemoryContext,
									  presence_shared->nslots * sizeof(Oid));
	to_start = MemoryContextAlloc(TopMemoryContext,
								  PRESENCE_MAX_STARTING * sizeof(int));
	absent_dbs = MemoryContextAlloc(TopMemoryContext, sizeof(Oid));
	n_absent = 0;
	LauncherContext = AllocSetContextCreate(TopMemoryContext,
											"presence launcher",
											ALLOCSET_DEFAULT_SIZES);

	LauncherAttach();
	ereport(LOG, (errmsg("presence launcher started")));

	for (;;)
	{
		long		timeout;

		MemoryContextSwitchTo(LauncherContext);
		MemoryContextReset(LauncherContext);

		timeout = LauncherPass();

		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 timeout, PRESENCE_WAIT_EVENT_MAIN);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();

		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
	}
}
