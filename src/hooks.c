/*-------------------------------------------------------------------------
 *
 * hooks.c
 *	  Hooks that keep the workers in step with DDL: CREATE and DROP
 *	  EXTENSION, restores, and statements that need a database to
 *	  themselves.
 *
 * The launcher probes each database once, so without help it would not
 * notice CREATE EXTENSION presence in a database it has already probed,
 * and a worker would notice DROP EXTENSION only at its next wake-up.  An
 * object access hook sees both and, once the transaction commits, wakes
 * the launcher or the worker.
 *
 * DROP DATABASE, CREATE DATABASE ... TEMPLATE, ALTER DATABASE ... RENAME
 * and ALTER DATABASE ... SET TABLESPACE fail while anyone else is
 * connected to the database, and a worker is.  A ProcessUtility hook
 * stops that database's worker first, waits for it to be gone, and keeps
 * the launcher from starting another until the statement is over (or, for
 * DROP DATABASE, until the database has disappeared), so that even a
 * plain DROP DATABASE works and the FORCE form is never raced by a
 * restarting worker.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/indexing.h"		/* ExtensionOidIndexId before PG 15 */
#include "catalog/objectaccess.h"
#include "catalog/pg_database.h"
#include "catalog/pg_extension.h"
#include "commands/dbcommands.h"
#include "commands/defrem.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "storage/latch.h"
#include "tcop/utility.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/fmgroids.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "presence.h"

/* how long a database is kept free of workers for a statement */
#define PRESENCE_HOLD_MS			10000
/* how long to wait for its worker to exit before going ahead */
#define PRESENCE_STOP_WAIT_MS		5000
#define PRESENCE_STOP_POLL_MS		10

static object_access_hook_type prev_object_access_hook = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* what to do when the current transaction commits */
static bool wake_launcher_at_commit = false;
static bool wake_worker_at_commit = false;

/*
 * Whether an extension is ours.  On OAT_POST_CREATE the new pg_extension
 * row is not yet visible to catalog snapshots, only to SnapshotSelf, which
 * sees it as well as every committed row.
 */
static bool
IsPresenceExtension(Oid extoid)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	bool		result = false;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(extoid));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, SnapshotSelf,
							  1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
	{
		Form_pg_extension ext = (Form_pg_extension) GETSTRUCT(tup);

		result = (strcmp(NameStr(ext->extname), PRESENCE_EXTENSION_NAME) == 0);
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);

	return result;
}

/*
 * Note CREATE and DROP of our extension, to act on them at commit.  A
 * savepoint rolled back afterwards leaves the note in place, which costs
 * at most a pointless probe or wake-up.
 */
static void
PresenceObjectAccess(ObjectAccessType access, Oid classId, Oid objectId,
					 int subId, void *arg)
{
	if (prev_object_access_hook)
		prev_object_access_hook(access, classId, objectId, subId, arg);

	if (classId != ExtensionRelationId)
		return;

	if (access == OAT_POST_CREATE && IsPresenceExtension(objectId))
	{
		wake_launcher_at_commit = true;
		/* as pg_restore and dump scripts run it: see restore.c */
		if (!check_function_bodies)
			PresenceRestoreBegin(MyDatabaseId);
	}
	else if (access == OAT_DROP && IsPresenceExtension(objectId))
		wake_worker_at_commit = true;
}

/*
 * Act on the notes once the transaction has committed, when the launcher
 * or the worker can see the change; forget them otherwise.  A prepared
 * transaction is forgotten too: it commits elsewhere, later.  After
 * commit nothing may fail, and nothing here does; a WARNING is safe.
 */
static void
PresenceXactCallback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
			if (wake_launcher_at_commit && !PresenceWakeLauncher(MyDatabaseId))
				ereport(WARNING,
						(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
						 errmsg("presence cannot start a worker for this database"),
						 errdetail("All %d slots set by presence.max_databases are in use.",
								   presence_max_databases),
						 errhint("Consider increasing presence.max_databases.")));
			if (wake_worker_at_commit)
			{
				PresenceWakeWorker(MyDatabaseId);
				PresenceCachePurgeDatabase(MyDatabaseId);
			}
			wake_launcher_at_commit = false;
			wake_worker_at_commit = false;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			wake_launcher_at_commit = false;
			wake_worker_at_commit = false;
			break;
		default:
			break;
	}
}

/*
 * The database a utility statement needs to itself because it fails while
 * others are connected, or InvalidOid.
 *
 * Only a user who owns the database (or a superuser) can run these
 * statements on it, and only such a user gets to stop its worker: anyone
 * else's statement fails anyway, and must not interrupt the worker.
 */
static Oid
DatabaseToHold(Node *parsetree)
{
	const char *dbname = NULL;
	ListCell   *lc;
	Oid			dboid;

	switch (nodeTag(parsetree))
	{
		case T_DropdbStmt:
			dbname = ((DropdbStmt *) parsetree)->dbname;
			break;
		case T_CreatedbStmt:
			foreach(lc, ((CreatedbStmt *) parsetree)->options)
			{
				DefElem    *def = (DefElem *) lfirst(lc);

				if (strcmp(def->defname, "template") == 0 && def->arg != NULL)
					dbname = defGetString(def);
			}
			break;
		case T_RenameStmt:
			if (((RenameStmt *) parsetree)->renameType == OBJECT_DATABASE)
				dbname = ((RenameStmt *) parsetree)->subname;
			break;
		case T_AlterDatabaseStmt:
			foreach(lc, ((AlterDatabaseStmt *) parsetree)->options)
			{
				DefElem    *def = (DefElem *) lfirst(lc);

				if (strcmp(def->defname, "tablespace") == 0)
					dbname = ((AlterDatabaseStmt *) parsetree)->dbname;
			}
			break;
		default:
			break;
	}

	if (dbname == NULL)
		return InvalidOid;

	dboid = get_database_oid(dbname, true);
	if (!OidIsValid(dboid) || !pg_database_ownercheck(dboid, GetUserId()))
		return InvalidOid;
	return dboid;
}

/*
 * Stop the worker of a database and wait, interruptibly, until it is gone
 * or until PRESENCE_STOP_WAIT_MS have passed; the statement then reports
 * any session still connected as usual.
 */
static void
StopWorkerAndWait(Oid dboid)
{
	TimestampTz start = GetCurrentTimestamp();
	TimestampTz hold_until = TimestampTzPlusMilliseconds(start,
														 PRESENCE_HOLD_MS);

	if (PresenceHoldDatabase(dboid, hold_until) == 0)
		return;

	while (PresenceWorkerRunning(dboid) &&
		   !TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
									   PRESENCE_STOP_WAIT_MS))
	{
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 PRESENCE_STOP_POLL_MS, PRESENCE_WAIT_EVENT_MAIN);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * Run a utility statement, first clearing the database it needs to itself
 * of its worker.  The database is released again when the statement
 * fails, or when it succeeds and the database is still there; after a
 * DROP DATABASE the hold simply runs out once the database is gone.
 */
static void
PresenceProcessUtility(PRESENCE_UTILITY_PARAMS)
{
	Oid			held = DatabaseToHold(pstmt->utilityStmt);

	if (OidIsValid(held))
	{
		StopWorkerAndWait(held);

		PG_TRY();
		{
			if (prev_ProcessUtility)
				prev_ProcessUtility(PRESENCE_UTILITY_ARGS);
			else
				standard_ProcessUtility(PRESENCE_UTILITY_ARGS);
		}
		PG_CATCH();
		{
			PresenceReleaseDatabase(held);
			PG_RE_THROW();
		}
		PG_END_TRY();

		if (!IsA(pstmt->utilityStmt, DropdbStmt))
			PresenceReleaseDatabase(held);
		else
			PresenceCachePurgeDatabase(held);
	}
	else if (prev_ProcessUtility)
		prev_ProcessUtility(PRESENCE_UTILITY_ARGS);
	else
		standard_ProcessUtility(PRESENCE_UTILITY_ARGS);

	/* after the statement, so that SET check_function_bodies counts */
	if (!check_function_bodies)
		PresenceRestoreJoin(MyDatabaseId);
}

/*
 * Install the hooks; called from _PG_init while preloading, as the
 * launcher and the shared memory they talk to exist only then.
 */
void
PresenceHooksInit(void)
{
	prev_object_access_hook = object_access_hook;
	object_access_hook = PresenceObjectAccess;

	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = PresenceProcessUtility;

	RegisterXactCallback(PresenceXactCallback, NULL);
}
