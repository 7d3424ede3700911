/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared memory: where the launcher, the per-database workers and
 *	  ordinary backends meet.
 *
 * The launcher needs to learn which databases gained the extension or are
 * about to be dropped; a backend that commits an earlier deadline than the
 * one its database's worker sleeps towards needs that worker's latch; and
 * presence.worker_status() needs to see what the worker is doing.  All of
 * that lives in one fixed array of slots, one per database, sized by
 * presence.max_databases and guarded by a single LWLock.  Every lock
 * section here is a handful of assignments: nothing in it can fail, so no
 * error is ever raised while the lock is held.
 *
 * Only the launcher frees slots (see launcher.c); anyone may claim one.
 * Shared memory exists only when the library is preloaded; every entry
 * point below does nothing, quietly, when it is absent.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "presence.h"

PresenceShared *presence_shared = NULL;

#ifdef PRESENCE_HAS_SHMEM_REQUEST_HOOK
static shmem_request_hook_type prev_shmem_request_hook = NULL;
#endif
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/*
 * Bytes needed for the shared state; presence.max_databases is
 * PGC_POSTMASTER, so this cannot change while the server runs.
 */
static Size
PresenceShmemSize(void)
{
	return add_size(offsetof(PresenceShared, slots),
					mul_size(presence_max_databases, sizeof(PresenceSlot)));
}

/*
 * Ask for our memory and our lock.  From PG 15 this must happen in
 * shmem_request_hook; before that, directly from _PG_init.
 */
static void
PresenceShmemRequest(void)
{
#ifdef PRESENCE_HAS_SHMEM_REQUEST_HOOK
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
#endif

	RequestAddinShmemSpace(add_size(PresenceShmemSize(),
									PresenceCacheShmemSize()));
	RequestNamedLWLockTranche("presence", 1);
	PresenceCacheShmemRequest();
}

/*
 * Create or attach to the shared state.  It is created once per
 * shared-memory lifetime: at server start and again after a crash
 * restart, which is also when the startup grace begins, so that it covers
 * clients that reconnect even before the launcher is up.
 */
static void
PresenceShmemStartup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	/* reset in case this is a restart within the postmaster */
	presence_shared = NULL;

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);

	presence_shared = ShmemInitStruct("presence", PresenceShmemSize(), &found);
	if (!found)
	{
		int			i;

		memset(presence_shared, 0, PresenceShmemSize());
		presence_shared->lock = &(GetNamedLWLockTranche("presence"))->lock;
		presence_shared->nslots = presence_max_databases;
		presence_shared->grace_until =
			TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										presence_startup_grace_ms);
		for (i = 0; i < presence_shared->nslots; i++)
			pg_atomic_init_u64(&presence_shared->slots[i].next_wake,
							   (uint64) DT_NOBEGIN);
	}
	PresenceCacheShmemStartup();

	LWLockRelease(AddinShmemInitLock);
}

/*
 * Install the shared memory hooks; called from _PG_init while the library
 * is being preloaded.
 */
void
PresenceShmemInit(void)
{
#ifdef PRESENCE_HAS_SHMEM_REQUEST_HOOK
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = PresenceShmemRequest;
#else
	PresenceShmemRequest();
#endif
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = PresenceShmemStartup;
}

/*
 * False when the library was loaded on demand instead of preloaded: there
 * are then no workers, and the SQL functions must not look for them.
 */
bool
PresenceShmemAvailable(void)
{
	return presence_shared != NULL;
}

/*
 * The end of the startup grace, before which no session is ended for
 * missing heartbeats; DT_NOBEGIN without shared memory.  It is set when
 * shared memory is created and pushed back when the launcher first starts
 * (see launcher.c), and never changes after that.
 */
TimestampTz
PresenceGraceUntil(void)
{
	TimestampTz result;

	if (presence_shared == NULL)
		return DT_NOBEGIN;

	LWLockAcquire(presence_shared->lock, LW_SHARED);
	result = presence_shared->grace_until;
	LWLockRelease(presence_shared->lock);

	return result;
}

/*
 * The slot of a database, or NULL.  The caller holds the lock.
 */
PresenceSlot *
PresenceFindSlot(Oid dboid)
{
	int			i;

	for (i = 0; i < presence_shared->nslots; i++)
	{
		if (presence_shared->slots[i].dboid == dboid)
			return &presence_shared->slots[i];
	}
	return NULL;
}

/*
 * Reset what a slot reports about its worker, for a worker starting at
 * started_at (0 for a slot without one).  The caller holds the lock
 * exclusively.
 */
void
PresenceSlotStart(PresenceSlot *slot, TimestampTz started_at,
				  TimestampTz next_wake)
{
	slot->started_at = started_at;
	slot->last_sweep = 0;
	slot->rest_until = 0;
	slot->transitions = 0;
	slot->errors = 0;
	slot->last_error[0] = '\0';
	pg_atomic_write_u64(&slot->next_wake, (uint64) next_wake);
}

/*
 * The slot of a database, claiming a free one for it if it has none;
 * NULL when every slot is taken.  The caller holds the lock exclusively.
 */
PresenceSlot *
PresenceClaimSlot(Oid dboid)
{
	PresenceSlot *slot = PresenceFindSlot(dboid);
	int			i;

	if (slot != NULL)
		return slot;

	for (i = 0; i < presence_shared->nslots; i++)
	{
		slot = &presence_shared->slots[i];
		if (OidIsValid(slot->dboid))
			continue;

		slot->dboid = dboid;
		slot->probe_requested = false;
		slot->absent = false;
		slot->paused_until = 0;
		memset(slot->restorers, 0, sizeof(slot->restorers));
		slot->restore_until = 0;
		slot->pid = 0;
		slot->latch = NULL;
		PresenceSlotStart(slot, 0, DT_NOBEGIN);
		return slot;
	}
	return NULL;
}

/*
 * How early a newly committed deadline must be for it to be worth waking
 * the worker of a database (see event.c).  DT_NOBEGIN, which no deadline
 * precedes, when no worker serves that database.
 *
 * The worker publishes DT_NOEND before it takes the snapshot it sweeps
 * with, and our caller committed before asking; acquiring the lock is a
 * full barrier.  So either the worker's snapshot sees the new deadline or
 * we read DT_NOEND and wake it: a deadline cannot slip between the two.
 */
TimestampTz
PresenceWorkerNextWake(Oid dboid)
{
	PresenceSlot *slot;
	TimestampTz result = DT_NOBEGIN;

	if (presence_shared == NULL)
		return DT_NOBEGIN;

	LWLockAcquire(presence_shared->lock, LW_SHARED);
	slot = PresenceFindSlot(dboid);
	if (slot != NULL && slot->pid != 0)
		result = (TimestampTz) pg_atomic_read_u64(&slot->next_wake);
	LWLockRelease(presence_shared->lock);

	return result;
}

/*
 * Wake the worker of a database, if one runs.  Called after commit, so it
 * must not fail.  The worker itself needs no wake-up: it computes its next
 * deadline after every commit of its own.
 */
void
PresenceWakeWorker(Oid dboid)
{
	PresenceSlot *slot;

	if (presence_shared == NULL)
		return;

	LWLockAcquire(presence_shared->lock, LW_SHARED);
	slot = PresenceFindSlot(dboid);
	if (slot != NULL && slot->latch != NULL && slot->pid != MyProcPid)
		SetLatch(slot->latch);
	LWLockRelease(presence_shared->lock);
}

/*
 * Ask the launcher to look for the extension in a database again; called
 * when a CREATE EXTENSION presence commits.  Returns false when no slot is
 * left for the database, so the caller can say so.
 */
bool
PresenceWakeLauncher(Oid dboid)
{
	PresenceSlot *slot;

	if (presence_shared == NULL)
		return true;

	LWLockAcquire(presence_shared->lock, LW_EXCLUSIVE);
	slot = PresenceClaimSlot(dboid);
	if (slot != NULL)
		slot->probe_requested = true;
	if (presence_shared->launcher_latch != NULL)
		SetLatch(presence_shared->launcher_latch);
	LWLockRelease(presence_shared->lock);

	return slot != NULL;
}

/*
 * Keep the launcher from starting a worker in a database until "until",
 * and ask the worker running there, if any, to exit.  Used before a
 * statement that needs the database to itself (DROP DATABASE and the
 * like).  Returns the pid signalled, 0 if none.
 *
 * The signal is sent with the lock held: a worker clears its pid under the
 * same lock before it exits, so the pid cannot belong to anyone else yet.
 */
int
PresenceHoldDatabase(Oid dboid, TimestampTz until)
{
	PresenceSlot *slot;
	int			pid = 0;

	if (presence_shared == NULL)
		return 0;

	LWLockAcquire(presence_shared->lock, LW_EXCLUSIVE);
	slot = PresenceClaimSlot(dboid);
	if (slot != NULL)
	{
		slot->paused_until = Max(slot->paused_until, until);
		pid = slot->pid;
		if (pid != 0)
			(void) kill(pid, SIGTERM);
	}
	LWLockRelease(presence_shared->lock);

	return pid;
}

/*
 * Whether a worker still serves a database.
 */
bool
PresenceWorkerRunning(Oid dboid)
{
	PresenceSlot *slot;
	bool		result = false;

	if (presence_shared == NULL)
		return false;

	LWLockAcquire(presence_shared->lock, LW_SHARED);
	slot = PresenceFindSlot(dboid);
	if (slot != NULL)
		result = (slot->pid != 0);
	LWLockRelease(presence_shared->lock);

	return result;
}

/*
 * Undo PresenceHoldDatabase() once the statement is over and the database
 * is still there, and let the launcher restart its worker now.
 */
void
PresenceReleaseDatabase(Oid dboid)
{
	PresenceSlot *slot;

	if (presence_shared == NULL)
		return;

	LWLockAcquire(presence_shared->lock, LW_EXCLUSIVE);
	slot = PresenceFindSlot(dboid);
	if (slot != NULL)
		slot->paused_until = 0;
	if (presence_shared->launcher_latch != NULL)
		SetLatch(presence_shared->launcher_latch);
	LWLockRelease(presence_shared->lock);
}
