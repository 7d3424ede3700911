/*-------------------------------------------------------------------------
 *
 * restore.c
 *	  Keep the worker out of a database while it is being restored.
 *
 * pg_restore without --single-transaction, pg_restore -j and a plain
 * dump fed to psql create the extension in one transaction and load its
 * tables' rows in later ones.  A worker started as soon as CREATE
 * EXTENSION commits would sweep a half-loaded database: it ends restored
 * sessions whose memberships are not loaded yet (they would then belong
 * to no session) and draws event seqs from the fresh sequence, which then
 * collide with the history still to come.
 *
 * Every restore tool runs SET check_function_bodies = false on each of
 * its connections, and no application has a reason to.  So a CREATE
 * EXTENSION presence committed by a session with that setting off starts
 * a hold on the database: no worker runs there while that session, or any
 * other session that runs a statement there with the setting off while
 * the hold lasts (pg_restore -j's parallel connections), is connected,
 * nor for PRESENCE_RESTORE_GRACE_MS after the last of them leaves, which
 * bridges pg_restore -j's leader disconnecting before its workers connect.
 * The worker then starts and settles every due transition at once.
 *
 * Sessions are tracked by pid in the database's slot and leave it when
 * they exit; a crash resets shared memory, and the hold with it.  Beyond
 * PRESENCE_MAX_RESTORERS sessions, each further statement of a restoring
 * session renews the grace instead.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/timestamp.h"

#include "presence.h"

/* how long a database stays held after its last restoring session */
#define PRESENCE_RESTORE_GRACE_MS	5000

static bool exit_callback_registered = false;

/*
 * Whether a restore holds a database's worker off; the caller holds the
 * lock.
 */
bool
PresenceRestoreHolds(PresenceSlot *slot, TimestampTz now)
{
	int			i;

	for (i = 0; i < PRESENCE_MAX_RESTORERS; i++)
	{
		if (slot->restorers[i] != 0)
			return true;
	}
	return slot->restore_until > now;
}

/*
 * Record this session as restoring the slot's database: by pid if there
 * is room, by renewing the grace otherwise; and keep the launcher from
 * starting a worker there until then.  The caller holds the lock
 * exclusively.
 */
static void
RestoreAddSession(PresenceSlot *slot, TimestampTz now)
{
	TimestampTz until = TimestampTzPlusMilliseconds(now,
													PRESENCE_RESTORE_GRACE_MS);
	int			free_entry = -1;
	int			i;

	for (i = 0; i < PRESENCE_MAX_RESTORERS; i++)
	{
		if (slot->restorers[i] == MyProcPid)
			return;
		if (slot->restorers[i] == 0 && free_entry < 0)
			free_entry = i;
	}
	if (free_entry >= 0)
		slot->restorers[free_entry] = MyProcPid;
	slot->restore_until = Max(slot->restore_until, until);
	slot->paused_until = Max(slot->paused_until, slot->restore_until);
}

/*
 * At exit, leave every hold this session is part of.  The grace starts
 * now, and the launcher is woken so that it starts the worker once the
 * grace is over rather than at its next rescan.
 */
static void
RestoreSessionExit(int code, Datum arg)
{
	TimestampTz until;
	int			i;
	int			j;

	if (presence_shared == NULL)
		return;

	until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
										PRESENCE_RESTORE_GRACE_MS);
	LWLockAcquire(presence_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < presence_shared->nslots; i++)
	{
		PresenceSlot *slot = &presence_shared->slots[i];

		for (j = 0; j < PRESENCE_MAX_RESTORERS; j++)
		{
			if (slot->restorers[j] != MyProcPid)
				continue;
			slot->restorers[j] = 0;
			slot->restore_until = Max(slot->restore_until, until);
			slot->paused_until = Max(slot->paused_until, until);
		}
	}
	if (presence_shared->launcher_latch != NULL)
		SetLatch(presence_shared->launcher_latch);
	LWLockRelease(presence_shared->lock);
}

/*
 * Make sure this session leaves its holds when it exits.  Done before the
 * session is recorded anywhere, and never after commit, where failing is
 * not allowed.
 */
static void
RestoreRegisterExit(void)
{
	if (exit_callback_registered)
		return;
	before_shmem_exit(RestoreSessionExit, (Datum) 0);
	exit_callback_registered = true;
}

/*
 * CREATE EXTENSION presence is committing in a session that looks like a
 * restore: hold the database from now on.  Called before commit (it may
 * fail there); a transaction that aborts instead leaves a hold that ends
 * with the session, which is harmless.  Without a free slot the launcher
 * will not serve the database anyway, and says so at commit.  A worker
 * still serving the database is asked to exit, under the lock, as in
 * PresenceHoldDatabase().
 */
void
PresenceRestoreBegin(Oid dboid)
{
	TimestampTz now = GetCurrentTimestamp();
	PresenceSlot *slot;

	if (presence_shared == NULL)
		return;

	RestoreRegisterExit();

	LWLockAcquire(presence_shared->lock, LW_EXCLUSIVE);
	slot = PresenceClaimSlot(dboid);
	if (slot != NULL)
	{
		RestoreAddSession(slot, now);
		/* a worker still there after DROP EXTENSION (pg_restore --clean) */
		if (slot->pid != 0)
			(void) kill(slot->pid, SIGTERM);
	}
	LWLockRelease(presence_shared->lock);

	ereport(LOG,
			(errmsg("presence will not start its worker in this database until the restore has ended"),
			 errdetail("CREATE EXTENSION presence ran with check_function_bodies off, as pg_restore and dump scripts do; the worker starts %d ms after the last session restoring the database has ended.",
					   PRESENCE_RESTORE_GRACE_MS)));
}

/*
 * A statement ran with check_function_bodies off: if a restore holds this
 * database, the session is part of it.  Sessions of databases without a
 * hold only take the lock shared, and only while the setting is off.
 */
void
PresenceRestoreJoin(Oid dboid)
{
	TimestampTz now;
	PresenceSlot *slot;
	bool		held;

	if (presence_shared == NULL)
		return;

	now = GetCurrentTimestamp();
	LWLockAcquire(presence_shared->lock, LW_SHARED);
	slot = PresenceFindSlot(dboid);
	held = (slot != NULL && PresenceRestoreHolds(slot, now));
	LWLockRelease(presence_shared->lock);
	if (!held)
		return;

	RestoreRegisterExit();

	LWLockAcquire(presence_shared->lock, LW_EXCLUSIVE);
	slot = PresenceFindSlot(dboid);
	if (slot != NULL && PresenceRestoreHolds(slot, now))
		RestoreAddSession(slot, now);
	LWLockRelease(presence_shared->lock);
}
