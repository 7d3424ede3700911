/*-------------------------------------------------------------------------
 *
 * state.h
 *	  One user's presence state in memory, as the transition engine
 *	  (state.c) and its callers (api.c, sweep.c) see it.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PRESENCE_STATE_H
#define PRESENCE_STATE_H

#include "presence.h"

/* A row of presence.sessions. */
typedef struct PresenceSession
{
	char	   *session_id;
	TimestampTz started_at;
	TimestampTz last_seen;
	bool		has_last_active;
	TimestampTz last_active;
	TimestampTz away_at;		/* idle from here on */
	TimestampTz end_at;			/* ended from here on */
	TimestampTz due_at;			/* next deadline not yet processed */
	bool		deleted;		/* deleted in this call */
} PresenceSession;

/*
 * Whether a session's idle deadline has been applied: a sweep (or a call
 * that found it due) made the session idle, or it was written idle.  Its
 * next deadline is then its end, although it goes idle before that.  Such
 * a session stays idle until an active heartbeat, whatever the time a
 * caller's transaction started: a call that began before a sweep applied
 * the deadline must not make the user online again.
 */
static inline bool
PresenceIdleApplied(TimestampTz away_at, TimestampTz end_at, TimestampTz due_at)
{
	return due_at == end_at && away_at < end_at;
}

/*
 * The writes of a batch of users, recorded as the state machine decides
 * them and carried out together by PresenceWritesFlush (state.c).
 */
typedef struct PresenceWrites PresenceWrites;

/* A row of presence.users plus its sessions. */
typedef struct PresenceUser
{
	char	   *user_id;
	/* the announced, public view */
	PresenceStatus status;
	char	   *message;
	TimestampTz since;
	bool		has_last_active;
	TimestampTz last_active;
	bool		has_last_seen;
	TimestampTz last_seen;
	/* the private override */
	PresenceManual manual;
	char	   *manual_message;
	bool		has_manual_until;
	TimestampTz manual_until;

	List	   *sessions;		/* of PresenceSession * */
	bool		dirty;			/* users row must be written */

	bool		no_rooms;		/* known to be in no room, typing nowhere */
	PresenceWrites *writes;		/* the batch to record writes in, or NULL:
								 * write at once */
} PresenceUser;

/* What made a change: decides the reason an event gives. */
typedef enum PresenceCause
{
	CAUSE_CONNECT,				/* a heartbeat that created its session */
	CAUSE_HEARTBEAT,			/* a heartbeat of an existing session */
	CAUSE_DISCONNECT,
	CAUSE_MANUAL,
	CAUSE_TIMED					/* a deadline passed */
} PresenceCause;

extern bool PresenceLockUser(const char *user_id, bool create,
							 bool skip_locked, TimestampTz now,
							 PresenceUser *u);
extern int	PresenceLockUsers(const char *const *user_ids, int n,
							  bool skip_locked, PresenceUser *users);
extern Datum *PresenceUserIds(const PresenceUser *users, int n);
extern PresenceUser *PresenceRowUser(PresenceUser *users, int row, int col);
extern PresenceWrites *PresenceWritesCreate(void);
extern void PresenceWritesFlush(PresenceWrites *writes);
extern void PresenceSettle(PresenceUser *u, TimestampTz as_of);
extern void PresenceSettleForCall(PresenceUser *u, TimestampTz now);
extern void PresencePublish(PresenceUser *u, PresenceCause cause,
							int due_kinds, TimestampTz now, TimestampTz at,
							bool freeze_message);
extern PresenceSession *PresenceFindSession(PresenceUser *u,
											const char *session_id);
extern void PresenceDeleteSession(PresenceUser *u, PresenceSession *s,
								  const char *reason, TimestampTz at);
extern void PresenceTouchSession(PresenceUser *u, const char *session_id,
								 bool active, Jsonb *meta, int64 ttl,
								 int64 away_after, TimestampTz now);

/* rooms.c, for the state machine */
extern void PresenceRoomsFindRoomless(PresenceUser *users, int n);
extern List *PresenceUserRooms(const PresenceUser *u);
extern void PresenceRoomsSessionEnded(PresenceUser *u, const char *session_id,
									  const char *reason, TimestampTz at);
extern void PresenceRoomsVisibility(PresenceUser *u, bool visible,
									TimestampTz at);
extern void PresenceRoomsSettle(PresenceUser *u, TimestampTz as_of);
extern void PresenceWriteSession(PresenceUser *u, PresenceSession *s,
								 bool is_new, Jsonb *meta);
extern void PresenceFreezeTimes(PresenceUser *u);

#endif							/* PRESENCE_STATE_H */
