/*-------------------------------------------------------------------------
 *
 * cache.c
 *	  The session cache: a shared-memory copy of each session's stored
 *	  deadlines and its user's announced status, so that a heartbeat that
 *	  has nothing to write can answer without reading a table.
 *
 * The cache only ever holds what committed.  A transaction that writes a
 * session or a users row stages the new values (see state.c), and they are
 * copied in after its commit; an abort drops them.  A session that ends is
 * removed at once, before its transaction commits, so from that moment on
 * heartbeats of it take the table path and wait for the user's row lock.
 * A missing entry is therefore always safe (the caller reads the tables),
 * and an entry that is present describes the committed row.
 *
 * Two transactions that change the same user are serialized by its row
 * lock, but their after-commit copies could still cross: the second may
 * take the lock once the first is no longer running but before the first
 * has copied its values.  Each transaction therefore takes a version
 * number at pre-commit, while it still holds its locks, and a copy never
 * replaces a newer one.
 *
 * Only sessions whose user and session ids fit in the fixed-size key are
 * cached; others, and everything once the cache is full, take the table
 * path.  If the tables are changed behind the API's back (a superuser's
 * DELETE, say), an entry can outlive its row, but never by more than the
 * granularity: the fast path still writes as soon as a deadline would move
 * by that much, and that write goes through the tables.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/xact.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "presence.h"

PG_FUNCTION_INFO_V1(presence_cache_status);

/* user id and session id bytes together; two UUIDs take 72 */
#define CACHE_ID_BYTES		90
#define CACHE_PARTITIONS	16

int			presence_max_sessions = 100000;

typedef struct CacheKey
{
	Oid			dboid;
	uint8		user_len;
	uint8		session_len;
	char		ids[CACHE_ID_BYTES];	/* user id, then session id, zeros */
} CacheKey;

typedef struct CacheEntry
{
	CacheKey	key;			/* hash key: must be first */
	uint64		version;		/* of the transaction that stored it */
	PresenceCachedSession row;
} CacheEntry;

typedef struct CacheShared
{
	pg_atomic_uint64 next_version;
	pg_atomic_uint64 rejected;	/* entries not stored: cache full */
	LWLockPadded *locks;
} CacheShared;

/* A change staged by this transaction, copied in at commit. */
typedef struct CacheChange
{
	CacheKey	key;
	bool		remove;
	PresenceCachedSession row;
	SubTransactionId subid;
} CacheChange;

static CacheShared *cache_shared = NULL;
static HTAB *cache_hash = NULL;
static List *staged = NIL;		/* of CacheChange *, TopTransactionContext */
static uint64 staged_version = 0;

/*
 * Shared memory the cache needs: its header and a hash table sized for
 * presence.max_sessions entries.
 */
Size
PresenceCacheShmemSize(void)
{
	if (presence_max_sessions == 0)
		return 0;
	return add_size(MAXALIGN(sizeof(CacheShared)),
					hash_estimate_size(presence_max_sessions,
									   sizeof(CacheEntry)));
}

/*
 * Ask for the cache's locks; with the memory, from the shmem request hook.
 */
void
PresenceCacheShmemRequest(void)
{
	if (presence_max_sessions == 0)
		return;
	RequestNamedLWLockTranche("presence cache", CACHE_PARTITIONS);
}

/*
 * Create or attach to the cache, from the shmem startup hook.
 */
void
PresenceCacheShmemStartup(void)
{
	HASHCTL		info;
	bool		found;

	cache_shared = NULL;
	cache_hash = NULL;
	if (presence_max_sessions == 0)
		return;

	cache_shared = ShmemInitStruct("presence cache", sizeof(CacheShared),
								   &found);
	if (!found)
	{
		pg_atomic_init_u64(&cache_shared->next_version, 1);
		pg_atomic_init_u64(&cache_shared->rejected, 0);
		cache_shared->locks = GetNamedLWLockTranche("presence cache");
	}

	memset(&info, 0, sizeof(info));
	info.keysize = sizeof(CacheKey);
	info.entrysize = sizeof(CacheEntry);
	info.num_partitions = CACHE_PARTITIONS;
	cache_hash = ShmemInitHash("presence sessions",
							   presence_max_sessions, presence_max_sessions,
							   &info,
							   HASH_ELEM | HASH_BLOBS | HASH_PARTITION);
}

/*
 * Build the key of a session of this database; false if it cannot be
 * cached (no cache, or ids too long for the key).
 */
static bool
MakeKey(const char *user_id, const char *session_id, CacheKey *key)
{
	size_t		ulen = strlen(user_id);
	size_t		slen = strlen(session_id);

	if (cache_hash == NULL || ulen + slen > CACHE_ID_BYTES)
		return false;
	memset(key, 0, sizeof(CacheKey));
	key->dboid = MyDatabaseId;
	key->user_len = (uint8) ulen;
	key->session_len = (uint8) slen;
	memcpy(key->ids, user_id, ulen);
	memcpy(key->ids + ulen, session_id, slen);
	return true;
}

static inline LWLock *
PartitionLock(uint32 hashcode)
{
	return &cache_shared->locks[hashcode % CACHE_PARTITIONS].lock;
}

/*
 * Read a session's cached row.  False when it is not cached, or when this
 * transaction has itself changed presence state that the cache cannot show
 * yet (its changes are copied in only at commit).
 */
bool
PresenceCacheLookup(const char *user_id, const char *session_id,
					PresenceCachedSession *row)
{
	CacheKey	key;
	uint32		hashcode;
	LWLock	   *lock;
	CacheEntry *entry;

	if (staged != NIL || !MakeKey(user_id, session_id, &key))
		return false;
	hashcode = get_hash_value(cache_hash, &key);
	lock = PartitionLock(hashcode);
	LWLockAcquire(lock, LW_SHARED);
	entry = hash_search_with_hash_value(cache_hash, &key, hashcode,
										HASH_FIND, NULL);
	if (entry != NULL)
		*row = entry->row;
	LWLockRelease(lock);
	return entry != NULL;
}

/*
 * Remove a session's entry now.  Nothing here can fail.
 */
static void
RemoveEntry(const CacheKey *key)
{
	uint32		hashcode = get_hash_value(cache_hash, key);
	LWLock	   *lock = PartitionLock(hashcode);

	LWLockAcquire(lock, LW_EXCLUSIVE);
	hash_search_with_hash_value(cache_hash, key, hashcode, HASH_REMOVE, NULL);
	LWLockRelease(lock);
}

/*
 * Stage a change to copy in at commit.
 */
static void
Stage(const CacheKey *key, bool remove, const PresenceCachedSession *row)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(TopTransactionContext);
	CacheChange *change = palloc(sizeof(CacheChange));

	change->key = *key;
	change->remove = remove;
	if (row)
		change->row = *row;
	change->subid = GetCurrentSubTransactionId();
	staged = lappend(staged, change);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * The caller's transaction stored these values for a session (or holds the
 * user's lock, so they cannot change before it ends): cache them once it
 * commits.
 */
void
PresenceCacheStage(const char *user_id, const char *session_id,
				   const PresenceCachedSession *row)
{
	CacheKey	key;

	if (MakeKey(user_id, session_id, &key))
		Stage(&key, false, row);
}

/*
 * A session is ending in the caller's transaction: forget it now, and
 * again at commit in case an older transaction's copy lands in between.
 */
void
PresenceCacheForget(const char *user_id, const char *session_id)
{
	CacheKey	key;

	if (!MakeKey(user_id, session_id, &key))
		return;
	RemoveEntry(&key);
	Stage(&key, true, NULL);
}

/*
 * Copy one committed change in, unless a newer one is already there.
 */
static void
Apply(const CacheChange *change, uint64 version)
{
	uint32		hashcode = get_hash_value(cache_hash, &change->key);
	LWLock	   *lock = PartitionLock(hashcode);
	CacheEntry *entry;
	bool		found;

	LWLockAcquire(lock, LW_EXCLUSIVE);
	if (change->remove)
	{
		entry = hash_search_with_hash_value(cache_hash, &change->key,
											hashcode, HASH_FIND, NULL);
		if (entry != NULL && entry->version <= version)
			hash_search_with_hash_value(cache_hash, &change->key, hashcode,
										HASH_REMOVE, NULL);
	}
	else
	{
		entry = hash_search_with_hash_value(cache_hash, &change->key,
											hashcode, HASH_FIND, NULL);
		if (entry == NULL)
		{
			if (hash_get_num_entries(cache_hash) >= presence_max_sessions)
				pg_atomic_fetch_add_u64(&cache_shared->rejected, 1);
			else
			{
				entry = hash_search_with_hash_value(cache_hash, &change->key,
													hashcode, HASH_ENTER_NULL,
													&found);
				if (entry == NULL)
					pg_atomic_fetch_add_u64(&cache_shared->rejected, 1);
				else
					entry->version = 0;
			}
		}
		if (entry != NULL && entry->version <= version)
		{
			entry->version = version;
			entry->row = change->row;
		}
	}
	LWLockRelease(lock);
}

/*
 * Take a version at pre-commit, while the row locks are still held; copy
 * the staged changes in after commit; drop them on abort.
 */
static void
CacheXactCallback(XactEvent event, void *arg)
{
	ListCell   *lc;

	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			if (staged != NIL)
				staged_version =
					pg_atomic_fetch_add_u64(&cache_shared->next_version, 1);
			break;
		case XACT_EVENT_COMMIT:
			foreach(lc, staged)
				Apply((CacheChange *) lfirst(lc), staged_version);
			staged = NIL;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PREPARE:
			staged = NIL;
			break;
		default:
			break;
	}
}

/*
 * Drop the changes of an aborted subtransaction and of everything nested
 * in it (their ids are at least the aborted one's).
 */
static void
CacheSubXactCallback(SubXactEvent event, SubTransactionId mySubid,
					 SubTransactionId parentSubid, void *arg)
{
	ListCell   *lc;

	if (event != SUBXACT_EVENT_ABORT_SUB || staged == NIL)
		return;
	foreach(lc, staged)
	{
		CacheChange *change = (CacheChange *) lfirst(lc);

		if (change->subid >= mySubid)
			staged = foreach_delete_current(staged, lc);
	}
}

/*
 * Register the transaction callbacks; from _PG_init in every backend.
 */
void
PresenceCacheInit(void)
{
	RegisterXactCallback(CacheXactCallback, NULL);
	RegisterSubXactCallback(CacheSubXactCallback, NULL);
}

/*
 * Forget every session of a database: it is being dropped, or so is the
 * extension in it.  Takes every partition lock, in order.
 */
void
PresenceCachePurgeDatabase(Oid dboid)
{
	HASH_SEQ_STATUS status;
	CacheEntry *entry;

	if (cache_hash == NULL)
		return;
	for (int i = 0; i < CACHE_PARTITIONS; i++)
		LWLockAcquire(&cache_shared->locks[i].lock, LW_EXCLUSIVE);
	hash_seq_init(&status, cache_hash);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (entry->key.dboid == dboid)
			hash_search(cache_hash, &entry->key, HASH_REMOVE, NULL);
	}
	for (int i = CACHE_PARTITIONS - 1; i >= 0; i--)
		LWLockRelease(&cache_shared->locks[i].lock);
}

/*
 * cache_status(): the cache's capacity, the sessions it holds (of all
 * databases, and of this one), how many it could not take because it was
 * full, and the shared memory it was given.  All zero when the library is
 * not preloaded or the cache is off.
 */
Datum
presence_cache_status(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	int64		entries = 0;
	int64		here = 0;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");

	if (cache_hash != NULL)
	{
		HASH_SEQ_STATUS status;
		CacheEntry *entry;

		for (int i = 0; i < CACHE_PARTITIONS; i++)
			LWLockAcquire(&cache_shared->locks[i].lock, LW_SHARED);
		hash_seq_init(&status, cache_hash);
		while ((entry = hash_seq_search(&status)) != NULL)
		{
			entries++;
			if (entry->key.dboid == MyDatabaseId)
				here++;
		}
		for (int i = CACHE_PARTITIONS - 1; i >= 0; i--)
			LWLockRelease(&cache_shared->locks[i].lock);
	}

	values[0] = Int64GetDatum(cache_hash ? presence_max_sessions : 0);
	values[1] = Int64GetDatum(entries);
	values[2] = Int64GetDatum(here);
	values[3] = Int64GetDatum(cache_hash ?
							  (int64) pg_atomic_read_u64(&cache_shared->rejected) : 0);
	values[4] = Int64GetDatum(cache_hash ? (int64) PresenceCacheShmemSize() : 0);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}
