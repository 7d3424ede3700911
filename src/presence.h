/*-------------------------------------------------------------------------
 *
 * presence.h
 *	  Declarations shared by the files of the presence extension.
 *
 * Each .c file in src/ owns one idea; this header is the contract between
 * them: the settings (presence.c), the transition engine (state.c,
 * sweep.c), the event queue (event.c), shared memory (shmem.c), the
 * session cache (cache.c), and the background workers (launcher.c,
 * worker.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef PRESENCE_H
#define PRESENCE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "executor/spi.h"
#include "nodes/pg_list.h"
#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/jsonb.h"

#include "compat.h"

#define PRESENCE_EXTENSION_NAME		"presence"
#define PRESENCE_SCHEMA				"presence"

/* Limits on what callers may store; see validate.c. */
#define PRESENCE_MAX_ID_BYTES		256
#define PRESENCE_MAX_MESSAGE_CHARS	256
#define PRESENCE_MAX_META_BYTES		2048

/* A user's visible status: the values of the SQL enum presence.status. */
typedef enum PresenceStatus
{
	PRESENCE_ONLINE,
	PRESENCE_AWAY,
	PRESENCE_BUSY,
	PRESENCE_OFFLINE
} PresenceStatus;

/* A user's manual override (users.manual). */
typedef enum PresenceManual
{
	MANUAL_NONE,
	MANUAL_AWAY,
	MANUAL_BUSY,
	MANUAL_INVISIBLE
} PresenceManual;

/* ---- presence.c: settings ---- */
extern int	presence_away_after_ms;
extern int	presence_session_ttl_ms;
extern int	presence_granularity_ms;
extern char *presence_channel;
extern int	presence_history_retention_s;
extern int	presence_startup_grace_ms;
extern int	presence_batch_size;
extern int	presence_max_databases;

extern PGDLLEXPORT void _PG_init(void);

/* ---- status.c: names of statuses, manual overrides and reasons ---- */
extern const char *PresenceStatusName(PresenceStatus status);
extern PresenceStatus PresenceStatusFromName(const char *name);
extern const char *PresenceManualName(PresenceManual manual);
extern PresenceManual PresenceManualFromName(const char *name);
extern Datum PresenceStatusDatum(Oid enumtypoid, PresenceStatus status);
extern void PresenceCheckStatusType(Oid enumtypoid);

/* ---- validate.c: argument checks shared by the SQL functions ---- */
extern char *PresenceCheckId(Datum value, bool isnull, const char *what);
extern char *PresenceCheckMessage(Datum value, bool isnull);
extern Jsonb *PresenceCheckMeta(Datum value, bool isnull, int max_bytes);
extern int64 PresenceCheckInterval(Datum value, const char *what,
								   bool allow_zero);

/* ---- spi.c: prepared statements and result accessors ---- */
extern void PresenceConnect(void);
extern SPIPlanPtr PresencePrepare(SPIPlanPtr *cache, const char *sql,
								  int nargs, const Oid *argtypes);
extern int	PresenceExecute(SPIPlanPtr plan, const Datum *values,
							const char *nulls, bool read_only, long count);
extern char *PresenceGetText(int row, int col);
extern bool PresenceGetTimestamp(int row, int col, TimestampTz *value);
extern Datum PresenceGetDatum(int row, int col, bool *isnull);
extern Datum *PresenceTextDatums(const char *const *strings, int n);
extern Datum PresenceTextArray(const char *const *strings, int n);

/*
 * A statement over rows, in two forms: "many" takes a batch of rows as one
 * array per column ($1 the first column's) and unnests them; "one", if not
 * NULL, takes a single row's values themselves.  See PresenceExecuteRows.
 */
#define PRESENCE_MAX_COLUMNS	9

typedef struct PresenceRowsStatement
{
	const char *one;
	const char *many;
	int			ncolumns;
	Oid			types[PRESENCE_MAX_COLUMNS];	/* of the columns */
	SPIPlanPtr	one_plan;
	SPIPlanPtr	many_plan;
} PresenceRowsStatement;

extern int	PresenceExecuteRows(PresenceRowsStatement *stmt,
								Datum *const *columns, bool *const *nulls,
								int n);

/* Acting as a function's owner, with the search_path pinned. */
typedef struct PresenceRoleSave
{
	Oid			userid;
	int			sec_context;
	int			guc_nestlevel;
} PresenceRoleSave;

extern void PresenceBecomeRole(Oid role, PresenceRoleSave *save);
extern void PresenceRestoreRole(const PresenceRoleSave *save);

/* ---- event.c: events queued in a transaction, published at commit ---- */
typedef enum PresenceEventKind
{
	EVENT_STATUS,				/* a user's visible status or message changed */
	EVENT_JOIN,					/* a user's first session entered a room */
	EVENT_LEAVE,				/* a user's last session left a room */
	EVENT_UPDATE,				/* a session entered, left or changed meta */
	EVENT_TYPING,				/* a user started or stopped typing */
	EVENT_BROADCAST				/* a pass-through payload for a room */
} PresenceEventKind;

typedef struct PresenceEvent
{
	PresenceEventKind kind;
	char	   *room;			/* room events; NULL for status */
	char	   *user_id;		/* NULL for broadcasts */
	char	   *session_id;		/* join, update */
	PresenceStatus status;		/* status, join */
	PresenceStatus previous;	/* status */
	const char *reason;			/* status, leave, typing; a constant or NULL */
	char	   *message;		/* status; NULL: none */
	char	   *json;			/* join/update: meta; broadcast: payload */
	const char *change;			/* update: "joined", "left" or "meta" */
	bool		typing;			/* typing */
	bool		has_last_active;	/* status */
	TimestampTz last_active;
	TimestampTz at;
	List	   *rooms;			/* status: rooms it is also announced in */
	SubTransactionId subid;		/* for discarding on subtransaction abort */
} PresenceEvent;

extern void PresenceEventInit(void);
extern void PresenceQueue(const PresenceEvent *ev);
extern uint64 PresenceEventsQueued(void);
extern void PresenceNoteDeadline(TimestampTz deadline);

/* ---- payload.c: the JSON payload of an event ---- */
extern void PresenceBuildPayload(StringInfo buf, int64 seq,
								 const PresenceEvent *ev, const char *room);

/* ---- state.c / sweep.c: the transition engine ---- */

/*
 * Runs every transition due at as_of for at most max_users users, in its
 * caller's transaction, and returns the number of events queued.  With
 * skip_locked, users whose row another transaction holds are left for a
 * later call (the worker); without it the call waits for them (sweep()).
 * *more is set when more due users may remain.
 */
extern int	PresenceSweepBatch(TimestampTz as_of, int max_users,
							   bool skip_locked, bool *more);

/* The two halves of a batch, for the worker, which excludes bad users. */
extern List *PresenceFindDueUsers(TimestampTz as_of, int max_users,
								  List *exclude, bool *more);
extern int	PresenceSettleUsers(List *user_ids, TimestampTz as_of,
								bool skip_locked);

/* Earliest stored deadline of users not excluded; false if none. */
extern bool PresenceNextDeadline(List *exclude, TimestampTz *deadline);

/* Deletes at most limit history rows older than before; returns count. */
extern int	PresencePruneHistory(TimestampTz before, int limit);

/* ---- shmem.c: state shared between backends and the workers ---- */

#define PRESENCE_LAST_ERROR_LEN		256

/* sessions of one restore tracked by pid; any more extend restore_until */
#define PRESENCE_MAX_RESTORERS		8

/*
 * One slot per database that has, or may soon have, a worker: a database
 * being probed for the extension, one whose worker runs or is due to be
 * restarted, or one that CREATE EXTENSION or DROP DATABASE just named.
 * Databases found without the extension hold no slot, so
 * presence.max_databases bounds the databases served, not the databases
 * in the cluster.  Only the launcher frees a slot; any backend may claim
 * one.  Every field but next_wake is protected by PresenceShared.lock.
 */
typedef struct PresenceSlot
{
	Oid			dboid;			/* InvalidOid: the slot is free */
	bool		probe_requested;	/* CREATE EXTENSION committed here */
	bool		absent;			/* the last worker found no extension */
	TimestampTz paused_until;	/* start no worker before this */

	/*
	 * A restore in progress (see restore.c): the sessions restoring the
	 * database, 0 for a free entry, and how long after the last of them
	 * the database stays held.  No worker starts while either holds.
	 */
	int			restorers[PRESENCE_MAX_RESTORERS];
	TimestampTz restore_until;

	/* Published by the serving worker; pid 0 when there is none. */
	int			pid;
	Latch	   *latch;
	TimestampTz started_at;
	TimestampTz last_sweep;		/* 0: not yet */
	TimestampTz rest_until;		/* end of grace or error backoff */
	uint64		transitions;
	uint64		errors;
	char		last_error[PRESENCE_LAST_ERROR_LEN];

	/*
	 * A committing backend that stored a deadline earlier than this wakes
	 * the worker.  DT_NOEND while the worker works, so nothing committed
	 * meanwhile is missed; DT_NOBEGIN while it rests (grace, backoff).
	 */
	pg_atomic_uint64 next_wake;
} PresenceSlot;

typedef struct PresenceShared
{
	LWLock	   *lock;
	int			launcher_pid;	/* 0 when no launcher runs */
	Latch	   *launcher_latch;
	bool		launcher_started;	/* a launcher has run */
	TimestampTz grace_until;	/* end of the startup grace */
	int			nslots;
	PresenceSlot slots[FLEXIBLE_ARRAY_MEMBER];
} PresenceShared;

/* NULL unless the library was preloaded */
extern PresenceShared *presence_shared;

extern void PresenceShmemInit(void);
extern bool PresenceShmemAvailable(void);
extern TimestampTz PresenceGraceUntil(void);
extern PresenceSlot *PresenceFindSlot(Oid dboid);
extern PresenceSlot *PresenceClaimSlot(Oid dboid);
extern void PresenceSlotStart(PresenceSlot *slot, TimestampTz started_at,
							  TimestampTz next_wake);
extern TimestampTz PresenceWorkerNextWake(Oid dboid);
extern void PresenceWakeWorker(Oid dboid);
extern bool PresenceWakeLauncher(Oid dboid);
extern int	PresenceHoldDatabase(Oid dboid, TimestampTz until);
extern bool PresenceWorkerRunning(Oid dboid);
extern void PresenceReleaseDatabase(Oid dboid);

/* ---- cache.c: the shared-memory session cache ---- */

/* What the cache holds of a session: its stored row and user's status. */
typedef struct PresenceCachedSession
{
	TimestampTz away_at;
	TimestampTz end_at;
	TimestampTz due_at;
	PresenceStatus status;		/* the user's announced status */
} PresenceCachedSession;

extern int	presence_max_sessions;

extern Size PresenceCacheShmemSize(void);
extern void PresenceCacheShmemRequest(void);
extern void PresenceCacheShmemStartup(void);
extern void PresenceCacheInit(void);
extern bool PresenceCacheLookup(const char *user_id, const char *session_id,
								PresenceCachedSession *row);
extern void PresenceCacheStage(const char *user_id, const char *session_id,
							   const PresenceCachedSession *row);
extern void PresenceCacheForget(const char *user_id, const char *session_id);
extern void PresenceCachePurgeDatabase(Oid dboid);

/* ---- launcher.c / worker.c: the background workers ---- */
extern void PresenceRegisterLauncher(void);
extern PGDLLEXPORT void PresenceLauncherMain(Datum main_arg);
extern PGDLLEXPORT void PresenceWorkerMain(Datum main_arg);

/* ---- rooms.c: rooms, metadata, typing, broadcast ---- */
extern int	presence_typing_timeout_ms;
extern int	presence_meta_interval_ms;
extern char *presence_join_check;

/* ---- channel.c: the NOTIFY channel of a room ---- */
extern char *PresenceRoomChannel(const char *room);

/* ---- hooks.c: react to CREATE/DROP EXTENSION and DROP DATABASE ---- */
extern void PresenceHooksInit(void);

/* ---- restore.c: no worker in a database while it is being restored ---- */
extern void PresenceRestoreBegin(Oid dboid);
extern void PresenceRestoreJoin(Oid dboid);
extern bool PresenceRestoreHolds(PresenceSlot *slot, TimestampTz now);

#endif							/* PRESENCE_H */
