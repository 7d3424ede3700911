/*-------------------------------------------------------------------------
 *
 * presence.c
 *	  Module entry point: the settings (GUCs) and what _PG_init wires up.
 *
 * The settings are defined in every backend that loads the library, so
 * the SQL functions work without shared_preload_libraries; the shared
 * memory, the hooks that wake the workers and the launcher itself exist
 * only when the library is preloaded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "presence.h"

PG_MODULE_MAGIC;

int			presence_away_after_ms = 5 * 60 * 1000;
int			presence_session_ttl_ms = 60 * 1000;
int			presence_granularity_ms = 60 * 1000;
char	   *presence_channel = NULL;
int			presence_history_retention_s = 30 * 24 * 60 * 60;
int			presence_startup_grace_ms = 30 * 1000;
int			presence_batch_size = 1000;
int			presence_max_databases = 64;

/*
 * A NOTIFY channel must be a non-empty name shorter than NAMEDATALEN;
 * catching a bad value here beats failing every commit that announces.
 */
static bool
check_channel(char **newval, void **extra, GucSource source)
{
	size_t		len = *newval ? strlen(*newval) : 0;

	if (len == 0)
	{
		GUC_check_errdetail("The channel name must not be empty.");
		return false;
	}
	if (len >= NAMEDATALEN)
	{
		GUC_check_errdetail("The channel name must be shorter than %d bytes.",
							NAMEDATALEN);
		return false;
	}
	return true;
}

/*
 * Define the settings.  Timers that an application may tune per database,
 * role or session are USERSET; what decides where events go or how long
 * history is kept is SUSET; what only the worker reads is SIGHUP.
 */
static void
DefineSettings(void)
{
	DefineCustomIntVariable("presence.away_after",
							"Idle time after which a session is away.",
							"Counted from the session's last activity; a heartbeat can override it.",
							&presence_away_after_ms,
							5 * 60 * 1000, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("presence.session_ttl",
							"Time without a heartbeat after which a session ends.",
							"A heartbeat can override it.",
							&presence_session_ttl_ms,
							60 * 1000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("presence.granularity",
							"Smallest deadline change that a heartbeat writes.",
							"A heartbeat that moves no deadline by this much or more (capped at a quarter of the ttl and of away_after) writes nothing.",
							&presence_granularity_ms,
							60 * 1000, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("presence.channel",
							   "NOTIFY channel that status events are sent on.",
							   NULL,
							   &presence_channel,
							   "presence",
							   PGC_SUSET, 0,
							   check_channel, NULL, NULL);

	DefineCustomIntVariable("presence.typing_timeout",
							"Time after which a typing flag stops unless renewed.",
							NULL,
							&presence_typing_timeout_ms,
							5000, 1, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("presence.meta_interval",
							"Shortest time between two metadata updates announced for a session in a room.",
							"Updates sooner than that are held back; the latest one is announced when the interval is over.",
							&presence_meta_interval_ms,
							100, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("presence.join_check",
							   "Function that decides whether a user may join a room.",
							   "A function (room text, user_id text) RETURNS boolean, called by join() as the calling role; empty means anyone may join.",
							   &presence_join_check,
							   "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("presence.history_retention",
							"How long status history is kept.",
							"The worker deletes older rows in small batches; 0 keeps history forever.",
							&presence_history_retention_s,
							30 * 24 * 60 * 60, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("presence.startup_grace",
							"Time after server start before the worker ends sessions.",
							"Gives clients a chance to reconnect after a restart or failover.",
							&presence_startup_grace_ms,
							30 * 1000, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("presence.batch_size",
							"Most users the worker moves in one transaction.",
							NULL,
							&presence_batch_size,
							1000, 1, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);
}

/*
 * Module load callback.  pg_upgrade loads every library in binary-upgrade
 * mode, where no worker may run and no hook should fire.
 */
void
_PG_init(void)
{
	if (IsBinaryUpgrade)
		return;

	DefineSettings();
	PresenceEventInit();

	if (!process_shared_preload_libraries_in_progress)
		return;

	/* Sizes shared memory, so it exists only where shared memory does. */
	DefineCustomIntVariable("presence.max_databases",
							"Most databases the worker serves at once.",
							NULL,
							&presence_max_databases,
							64, 1, 1024,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("presence.max_sessions",
							"Most sessions the shared-memory session cache holds.",
							"Heartbeats of cached sessions that have nothing to write read no table; 0 turns the cache off.",
							&presence_max_sessions,
							100000, 0, INT_MAX / 2,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("presence");
	PresenceShmemInit();
	PresenceCacheInit();
	PresenceHooksInit();
	PresenceRegisterLauncher();
}
