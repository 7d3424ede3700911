/*-------------------------------------------------------------------------
 *
 * status.c
 *	  The names of statuses and manual overrides, and the presence.status
 *	  enum values that SQL functions return.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/syscache.h"

#include "presence.h"

static const char *const status_names[] = {
	[PRESENCE_ONLINE] = "online",
	[PRESENCE_AWAY] = "away",
	[PRESENCE_BUSY] = "busy",
	[PRESENCE_OFFLINE] = "offline",
};

static const char *const manual_names[] = {
	[MANUAL_NONE] = NULL,
	[MANUAL_AWAY] = "away",
	[MANUAL_BUSY] = "busy",
	[MANUAL_INVISIBLE] = "invisible",
};

/*
 * The label of a status, as in the SQL enum and in event payloads.
 */
const char *
PresenceStatusName(PresenceStatus status)
{
	Assert(status >= PRESENCE_ONLINE && status <= PRESENCE_OFFLINE);
	return status_names[status];
}

/*
 * Parse a label read back from the users table.  The table's column is of
 * the enum type, so anything else means the catalog and this code disagree.
 */
PresenceStatus
PresenceStatusFromName(const char *name)
{
	for (int i = PRESENCE_ONLINE; i <= PRESENCE_OFFLINE; i++)
	{
		if (strcmp(name, status_names[i]) == 0)
			return (PresenceStatus) i;
	}
	elog(ERROR, "unrecognized presence status \"%s\"", name);
	pg_unreachable();
}

/*
 * The value stored in users.manual; NULL means no override.
 */
const char *
PresenceManualName(PresenceManual manual)
{
	return manual_names[manual];
}

/*
 * Parse users.manual; the table's CHECK constraint limits it to the names
 * above, so an unknown value is an internal error.
 */
PresenceManual
PresenceManualFromName(const char *name)
{
	if (name == NULL)
		return MANUAL_NONE;
	for (int i = MANUAL_AWAY; i <= MANUAL_INVISIBLE; i++)
	{
		if (strcmp(name, manual_names[i]) == 0)
			return (PresenceManual) i;
	}
	elog(ERROR, "unrecognized manual presence status \"%s\"", name);
	pg_unreachable();
}

/*
 * Fail cleanly if the status type a function returns is gone.  A call that
 * waited for the locks of a DROP EXTENSION, and of a CREATE EXTENSION in
 * the same transaction, goes on with the new tables, but the type its
 * (dropped) function returns no longer exists: returning a value of it
 * would fail on a cache lookup, an internal error.  The call's changes are
 * rolled back either way.  Callers check after they touched the tables,
 * which is when the DROP's invalidations are seen.
 */
void
PresenceCheckStatusType(Oid enumtypoid)
{
	if (!SearchSysCacheExists1(TYPEOID, ObjectIdGetDatum(enumtypoid)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"%s\" was dropped during the call",
						PRESENCE_EXTENSION_NAME),
				 errhint("Call the function again.")));
}

/*
 * The presence.status enum Datum for a status.  Enum values are OIDs that
 * differ per installation, so they are looked up once per backend and
 * looked up again if the type itself changes (extension re-created).
 */
Datum
PresenceStatusDatum(Oid enumtypoid, PresenceStatus status)
{
	static Oid	cached_typoid = InvalidOid;
	static Datum cached_values[PRESENCE_OFFLINE + 1];

	if (cached_typoid != enumtypoid)
	{
		PresenceCheckStatusType(enumtypoid);
		for (int i = PRESENCE_ONLINE; i <= PRESENCE_OFFLINE; i++)
			cached_values[i] = DirectFunctionCall2(enum_in,
												   CStringGetDatum(status_names[i]),
												   ObjectIdGetDatum(enumtypoid));
		cached_typoid = enumtypoid;
	}
	return cached_values[status];
}
