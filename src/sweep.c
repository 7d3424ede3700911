/*-------------------------------------------------------------------------
 *
 * sweep.c
 *	  Finding what has fallen due: batches of due users for sweep() and the
 *	  worker, the next deadline the worker sleeps towards, and history
 *	  pruning.
 *
 * Due work is found only through the indexes on sessions.due_at,
 * users.manual_until, typing.until and members.meta_due_at, so the cost of
 * a sweep follows the number of due items, not the number of sessions.
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

/*
 * What makes a user due: a deadline column, each with its own index.  The
 * sweep's queries and the next-deadline query are built from this list.
 */
typedef struct DueSource
{
	const char *table;
	const char *column;
	SPIPlanPtr	find_plan;
} DueSource;

static DueSource due_sources[] = {
	{"presence.sessions", "due_at", NULL},	/* idle or ended */
	{"presence.users", "manual_until", NULL},	/* override expires */
	{"presence.typing", "until", NULL}, /* typing stops */
	{"presence.members", "meta_due_at", NULL},	/* held-back metadata */
};

/*
 * Users locked, loaded and written together by PresenceSettleUsers: a
 * batch of presence.batch_size (at most 100,000) is taken in chunks of
 * this many, which bounds the memory held and the size of each statement.
 */
#define PRESENCE_SETTLE_CHUNK	1000

static SPIPlanPtr next_deadline_plan = NULL;
static SPIPlanPtr prune_plan = NULL;

/*
 * Append the user ids of one due query to *ids; *full is set when the
 * query returned as many rows as it was allowed.
 */
static List *
CollectDueUsers(SPIPlanPtr plan, TimestampTz as_of, int limit,
				Datum exclude, List *ids, bool *full)
{
	Datum		values[3];
	int			n;

	values[0] = TimestampTzGetDatum(as_of);
	values[1] = Int32GetDatum(limit);
	values[2] = exclude;
	n = PresenceExecute(plan, values, NULL, false, 0);
	if (n >= limit)
		*full = true;
	for (int i = 0; i < n; i++)
		ids = lappend(ids, PresenceGetText(i, 1));
	return ids;
}

static int
CompareStrings(const ListCell *a, const ListCell *b)
{
	return strcmp((const char *) lfirst(a), (const char *) lfirst(b));
}

/*
 * The C strings in a List, as an array.
 */
static const char **
StringArray(List *strings)
{
	const char **elems = palloc(sizeof(char *) * Max(list_length(strings), 1));
	ListCell   *lc;

	foreach(lc, strings)
		elems[foreach_current_index(lc)] = (const char *) lfirst(lc);
	return elems;
}

/*
 * A text[] of the C strings in a List, for the "leave these users out"
 * parameter of the queries below.
 */
static Datum
TextArrayFromList(List *strings)
{
	return PresenceTextArray(StringArray(strings), list_length(strings));
}

/*
 * The users with something due at as_of, at most max_users of them, sorted
 * by user_id so that two sweeps running at once take user locks in the same
 * order; users in exclude (a List of C strings) are left out.  The ids are
 * allocated in the caller's memory context.  *more is set when more due
 * users may remain.
 */
List *
PresenceFindDueUsers(TimestampTz as_of, int max_users, List *exclude,
					 bool *more)
{
	static const Oid argtypes[] = {TIMESTAMPTZOID, INT4OID, TEXTARRAYOID};
	MemoryContext callercxt = CurrentMemoryContext;
	MemoryContext oldcxt;
	Datum		exclude_array = TextArrayFromList(exclude);
	List	   *ids = NIL;
	List	   *result = NIL;
	ListCell   *lc;

	*more = false;

	PresenceConnect();
	for (size_t i = 0; i < lengthof(due_sources); i++)
	{
		DueSource  *src = &due_sources[i];

		if (src->find_plan == NULL)
			PresencePrepare(&src->find_plan,
							psprintf("SELECT user_id FROM %s WHERE %s <= $1"
									 " AND NOT user_id = ANY ($3)"
									 " ORDER BY %s LIMIT $2",
									 src->table, src->column, src->column),
							3, argtypes);
		ids = CollectDueUsers(src->find_plan, as_of, max_users, exclude_array,
							  ids, more);
	}

	/*
	 * A user with several due sessions is settled once.  The result must
	 * outlive the SPI connection, so it is built in the caller's context.
	 */
	list_sort(ids, CompareStrings);
	oldcxt = MemoryContextSwitchTo(callercxt);
	foreach(lc, ids)
	{
		const char *id = (const char *) lfirst(lc);

		if (result != NIL && strcmp(llast(result), id) == 0)
			continue;
		if (list_length(result) == max_users)
		{
			*more = true;
			break;
		}
		result = lappend(result, pstrdup(id));
	}
	MemoryContextSwitchTo(oldcxt);

	SPI_finish();
	return result;
}

/*
 * Settle the given users at as_of, in the caller's transaction, and return
 * the number of events that made (status and room events).  The ids must
 * be sorted (as PresenceFindDueUsers returns them), which is the order the
 * users are locked and settled in.  With skip_locked, users whose row
 * another transaction holds are left for a later call.
 *
 * The users are taken a chunk at a time: one query locks the chunk and one
 * loads its sessions, one finds who of them is in a room (only those run
 * the rooms queries), the state machine settles each user in memory, and
 * the writes it decides are carried out together at the end of the chunk.
 */
int
PresenceSettleUsers(List *user_ids, TimestampTz as_of, bool skip_locked)
{
	uint64		queued_before = PresenceEventsQueued();
	int			n = list_length(user_ids);
	const char **ids;
	MemoryContext chunk_cxt;
	MemoryContext oldcxt;

	PresenceConnect();
	ids = StringArray(user_ids);
	chunk_cxt = AllocSetContextCreate(CurrentMemoryContext,
									  "presence sweep chunk",
									  ALLOCSET_DEFAULT_SIZES);
	for (int first = 0; first < n; first += PRESENCE_SETTLE_CHUNK)
	{
		int			count = Min(n - first, PRESENCE_SETTLE_CHUNK);
		PresenceUser *users;
		PresenceWrites *writes;
		int			locked;

		oldcxt = MemoryContextSwitchTo(chunk_cxt);
		users = palloc(sizeof(PresenceUser) * count);
		writes = PresenceWritesCreate();
		locked = PresenceLockUsers(ids + first, count, skip_locked, users);
		PresenceRoomsFindRoomless(users, locked);
		for (int i = 0; i < locked; i++)
		{
			users[i].writes = writes;
			PresenceSettle(&users[i], as_of);
		}
		PresenceWritesFlush(writes);
		MemoryContextSwitchTo(oldcxt);
		MemoryContextReset(chunk_cxt);
	}
	SPI_finish();
	return (int) (PresenceEventsQueued() - queued_before);
}

/*
 * Settle up to max_users due users: one batch of sweep().
 */
int
PresenceSweepBatch(TimestampTz as_of, int max_users, bool skip_locked,
				   bool *more)
{
	List	   *ids = PresenceFindDueUsers(as_of, max_users, NIL, more);
	int			events = PresenceSettleUsers(ids, as_of, skip_locked);

	list_free_deep(ids);
	return events;
}

/*
 * The earliest deadline stored in this database, leaving out the users in
 * exclude (a List of C strings): the worker sets aside users whose
 * transitions fail, and must not wake up for them until it retries them.
 */
bool
PresenceNextDeadline(List *exclude, TimestampTz *deadline)
{
	static const Oid argtypes[] = {TEXTARRAYOID};
	Datum		values[1];
	bool		found;

	values[0] = TextArrayFromList(exclude);
	PresenceConnect();
	if (next_deadline_plan == NULL)
	{
		StringInfoData sql;

		initStringInfo(&sql);
		appendStringInfoString(&sql, "SELECT LEAST(");
		for (size_t i = 0; i < lengthof(due_sources); i++)
			appendStringInfo(&sql, "%s(SELECT min(%s) FROM %s"
							 " WHERE NOT user_id = ANY ($1))",
							 i > 0 ? ", " : "", due_sources[i].column,
							 due_sources[i].table);
		appendStringInfoChar(&sql, ')');
		PresencePrepare(&next_deadline_plan, sql.data, 1, argtypes);
	}
	PresenceExecute(next_deadline_plan, values, NULL, true, 1);
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

	PresenceConnect();
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
