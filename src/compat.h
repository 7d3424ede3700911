/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every difference between PostgreSQL 13 and 17 that presence cares
 *	  about, in one place, so the rest of the code reads as plain PG 15.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PRESENCE_COMPAT_H
#define PRESENCE_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 130000
#error "presence requires PostgreSQL 13 or later"
#endif

/* PG 15 renamed EmitWarningsOnPlaceholders to MarkGUCPrefixReserved. */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/*
 * PG 15 moved shared memory requests into shmem_request_hook; before that
 * they were made directly from _PG_init.
 */
#if PG_VERSION_NUM >= 150000
#define PRESENCE_HAS_SHMEM_REQUEST_HOOK 1
#endif

/*
 * Before PG 15 a background worker had to signal listeners itself after
 * committing a transaction that sent NOTIFY (commit 2e4eae87d0).
 */
#if PG_VERSION_NUM < 150000
#define PresenceAfterCommitNotify() ProcessCompletedNotifies()
#else
#define PresenceAfterCommitNotify() ((void) 0)
#endif

/* PG 17 lets extensions name their own wait events. */
#if PG_VERSION_NUM >= 170000
#define PRESENCE_WAIT_EVENT_MAIN	WaitEventExtensionNew("PresenceMain")
#else
#define PRESENCE_WAIT_EVENT_MAIN	PG_WAIT_EXTENSION
#endif

#endif							/* PRESENCE_COMPAT_H */
