/*-------------------------------------------------------------------------
 *
 * model.c
 *	  What presence_watch shows: the users (or the room's members) it
 *	  knows, kept in one array, and the recent events.
 *
 *	  The users view sorts present users by group (online, busy, away) and
 *	  within a group by user id, so that rows do not jump about with every
 *	  heartbeat; then offline users, the most recently seen first.  Offline
 *	  users leave the view an hour after they were last seen.  The room
 *	  view keeps members() order: the order in which they joined.
 *
 *-------------------------------------------------------------------------
 */
#include <stdlib.h>
#include <string.h>

#include "watch.h"

/*
 * The status enum from its text; unknown text counts as offline.
 */
WatchStatus
status_from_text(const char *s)
{
	if (s == NULL)
		return WS_OFFLINE;
	if (strcmp(s, "online") == 0)
		return WS_ONLINE;
	if (strcmp(s, "busy") == 0)
		return WS_BUSY;
	if (strcmp(s, "away") == 0)
		return WS_AWAY;
	return WS_OFFLINE;
}

/* The text of a status, as the table shows it. */
const char *
status_text(WatchStatus st)
{
	switch (st)
	{
		case WS_ONLINE:
			return "online";
		case WS_BUSY:
			return "busy";
		case WS_AWAY:
			return "away";
		default:
			return "offline";
	}
}

/*
 * Linear search: the model holds the displayed users, at most a few
 * thousand.
 */
WatchUser *
model_find(Watch *w, const char *user_id)
{
	for (int i = 0; i < w->nusers; i++)
	{
		if (strcmp(w->users[i].user_id, user_id) == 0)
			return &w->users[i];
	}
	return NULL;
}

/*
 * The user's entry, created (offline, to be read) if it is new.
 */
WatchUser *
model_add(Watch *w, const char *user_id)
{
	WatchUser  *u = model_find(w, user_id);

	if (u)
		return u;
	if (w->nusers == w->maxusers)
	{
		int			newmax = w->maxusers ? w->maxusers * 2 : 64;
		WatchUser  *nu = watch_malloc(sizeof(WatchUser) * newmax);

		if (w->nusers)
			memcpy(nu, w->users, sizeof(WatchUser) * w->nusers);
		free(w->users);
		w->users = nu;
		w->maxusers = newmax;
	}
	u = &w->users[w->nusers++];
	memset(u, 0, sizeof(*u));
	u->user_id = watch_strdup(user_id);
	u->status = WS_OFFLINE;
	u->dirty = true;
	u->order = w->nusers;
	return u;
}

/* Free one entry's strings. */
static void
free_user(WatchUser *u)
{
	free(u->user_id);
	free(u->message);
	free(u->metas);
}

/* Forget every user (the room view reloads its members whole). */
void
model_clear(Watch *w)
{
	for (int i = 0; i < w->nusers; i++)
		free_user(&w->users[i]);
	w->nusers = 0;
}

/*
 * Forget offline users not seen for WATCH_OFFLINE_KEEP seconds (and users
 * never seen at all, such as the subject of a forged notification).  Rows
 * still to be read are kept until they are.
 */
void
model_prune(Watch *w, double server_now)
{
	int			j = 0;

	if (w->room)
		return;
	for (int i = 0; i < w->nusers; i++)
	{
		WatchUser  *u = &w->users[i];

		if (!u->dirty && u->status == WS_OFFLINE &&
			u->last_seen < server_now - WATCH_OFFLINE_KEEP)
		{
			free_user(u);
			continue;
		}
		if (i != j)
			w->users[j] = *u;
		j++;
	}
	w->nusers = j;
}

/*
 * The users view's order: groups online, busy, away, offline; by
 * user id within a group, except offline users, most recently seen first.
 */
static int
compare_users(const void *a, const void *b)
{
	const WatchUser *x = a;
	const WatchUser *y = b;

	if (x->status != y->status)
		return x->status < y->status ? -1 : 1;
	if (x->status == WS_OFFLINE && x->last_seen != y->last_seen)
		return x->last_seen > y->last_seen ? -1 : 1;
	return strcmp(x->user_id, y->user_id);
}

/* The room view's order: as members() returned them (join order). */
static int
compare_members(const void *a, const void *b)
{
	const WatchUser *x = a;
	const WatchUser *y = b;

	return (x->order > y->order) - (x->order < y->order);
}

/* Sort the model for display. */
void
model_sort(Watch *w)
{
	if (w->nusers > 1)
		qsort(w->users, w->nusers, sizeof(WatchUser),
			  w->room ? compare_members : compare_users);
}

/*
 * Remember an event for the screen's "recent events" lines (a ring).
 */
void
log_add(Watch *w, double at, long long seq, const char *text, bool caught_up)
{
	WatchLogLine *l = &w->log[w->log_next];

	free(l->text);
	l->at = at;
	l->seq = seq;
	l->text = watch_strdup(text);
	l->caught_up = caught_up;
	w->log_next = (w->log_next + 1) % WATCH_EVENT_LOG;
	if (w->nlog < WATCH_EVENT_LOG)
		w->nlog++;
}
