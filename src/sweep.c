/*-------------------------------------------------------------------------
 *
 * sweep.c
 *	  Finding what has fallen due: batches of due users for sweep() and the
 *	  worker, the next deadline the worker sleeps towards, and history
 *	  pruning.
 *
 * Due work is found only through the indexes on sessions.due_at and
 * users.manual_until, so the cost of a sweep follows the number of due
 * sessions, not the number of sessions.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "presence.h"
#include "state.h"

static SPIPlanPtr due_sessions_plan = NULL;
static SPIPlanPtr due_overrides_plan = NULL;
static SPIPlanPtr next_deadline_plan = NULL;
static SPIPlanPtr prune_plan = NULL;

static int
CompareStrings(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/*
 * Append the user ids of one due query to ids[], returning the new count;
 * *full is set when the query returned as many rows as it was allowed.
 */
static int
CollectDueUsers(SPIPlanPtr plan, TimestampTz as_of, int limit, char **ids,
				int nids, bool *full)
{
	Datum		values[2];
	int			n;

	values[0] = TimestampTzGetDatum(as_of);
	values[1] = Int32GetDatum(limit);
	n = PresenceExecute(plan, values, NULL, true, 0);
	if (n >= limit)
		*full = true;
	for (int i = 0; i < n; i++)
		ids[nids++] = PresenceGetText(i, 1);
	return nids;
}

/*
 * Settle up to max_users due users, in user_id order so that two sweeps
 * running at once take user locks in the same order.
 */
int
PresenceSweepBatch(TimestampTz as_of, int max_users, bool skip_locked,
				   bool *more)
{
	static const Oid argtypes[] = {TIMESTAMPTZOID, INT4OID};
	MemoryContext user_cxt;
	MemoryContext oldcxt;
	char	  **ids;
	int			nids = 0;
	int			nunique = 0;
	int			events = 0;

	*more = false;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");

	ids = palloc(sizeof(char *) * 2 * max_users);
	nids = CollectDueUsers(PresencePrepare(&due_sessions_plan,
										   "SELECT user_id FROM presence.sessions"
										   " WHERE due_at <= $1 ORDER BY due_at LIMIT $2",
										   2, argtypes),
						   as_of, max_users, ids, nids, more);
	nids = CollectDueUsers(PresencePrepare(&due_overrides_plan,
										   "SELECT user_id FROM presence.users"
										   " WHERE manual_until <= $1"
										   " ORDER BY manual_until LIMIT $2",
										   2, argtypes),
						   as_of, max_users, ids, nids, more);

	/* A user with several due sessions is settled once. */
	qsort(ids, nids, sizeof(char *), CompareStrings);
	for (int i = 0; i < nids; i++)
	{
		if (nunique > 0 && strcmp(ids[nunique - 1], ids[i]) == 0)
			continue;
		ids[nunique++] = ids[i];
	}
	if (nunique > max_users)
	{
		nunique = max_users;
		*more = true;
	}

	user_cxt = AllocSetContextCreate(CurrentMemoryContext,
									 "presence sweep user",
									 ALLOCSET_DEFAULT_SIZES);
	for (int i = 0; i < nunique; i++)
	{
		PresenceUser u;

		oldcxt = MemoryContextSwitchTo(user_cxt);
		if (PresenceLockUser(ids[i], false, skip_locked, as_of, &u))
			events += PresenceSettle(&u, as_of);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(user_cxt);
	}

	SPI_finish();
	return events;
}

/*
 * The earliest deadline stored in this database.
 */
bool
PresenceNextDeadline(TimestampTz *deadline)
{
	bool		found;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	PresenceExecute(PresencePrepare(&next_deadline_plan,
									"SELECT LEAST((SELECT min(due_at) FROM presence.sessions),"
									" (SELECT min(manual_until) FROM presence.users))",
									0, NULL),
					NULL, NULL, true, 1);
	found = PresenceGetTimestamp(0, 1, deadline);
	SPI_finish();
	return found;
}

/*
 * Delete up to limit history rows that took effect before "before".
 */
int
PresencePruneHistory(TimestampTz before, int limit)
{
	static const Oid argtypes[] = {TIMESTAMPTZOID, INT4OID};
	Datum		values[2];
	int			n;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	values[0] = TimestampTzGetDatum(before);
	values[1] = Int32GetDatum(limit);
	n = PresenceExecute(PresencePrepare(&prune_plan,
										"DELETE FROM presence.history WHERE seq IN"
										" (SELECT seq FROM presence.history WHERE at < $1"
										" ORDER BY at LIMIT $2)",
										2, argtypes),
						values, NULL, false, 0);
	SPI_finish();
	return n;
}
