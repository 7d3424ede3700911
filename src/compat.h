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

/*
 * PG 14 gave ProcessUtility_hook a readOnlyTree argument.  These spell the
 * hook's parameter list and the matching argument list for a call.
 */
#if PG_VERSION_NUM >= 140000
#define PRESENCE_UTILITY_PARAMS \
	PlannedStmt *pstmt, const char *queryString, bool readOnlyTree, \
	ProcessUtilityContext context, ParamListInfo params, \
	QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc
#define PRESENCE_UTILITY_ARGS \
	pstmt, queryString, readOnlyTree, context, params, queryEnv, dest, qc
#else
#define PRESENCE_UTILITY_PARAMS \
	PlannedStmt *pstmt, const char *queryString, \
	ProcessUtilityContext context, ParamListInfo params, \
	QueryEnvironment *queryEnv, DestReceiver *dest, QueryCompletion *qc
#define PRESENCE_UTILITY_ARGS \
	pstmt, queryString, context, params, queryEnv, dest, qc
#endif

/* PG 16 folded the per-catalog ownership checks into object_ownercheck. */
#if PG_VERSION_NUM >= 160000
#define pg_database_ownercheck(dboid, roleid) \
	object_ownercheck(DatabaseRelationId, (dboid), (roleid))
#endif

/*
 * InitMaterializedSRF sets up a set-returning function that fills a
 * tuplestore in one call.  15.0 named it SetSingleFuncCall (renamed in
 * 15.1, which kept the old name as an alias); before 15 each function did
 * the work itself, as below.
 */
#if PG_VERSION_NUM >= 150000 && !defined(MAT_SRF_USE_EXPECTED_DESC)
#define InitMaterializedSRF(fcinfo, flags) SetSingleFuncCall((fcinfo), (flags))
#elif PG_VERSION_NUM < 150000
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/tuplestore.h"

static inline void
InitMaterializedSRF(FunctionCallInfo fcinfo, bits32 flags)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext oldcontext;
	TupleDesc	tupdesc;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("set-valued function called in context that cannot accept a set")));

	oldcontext = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	rsinfo->returnMode = SFRM_Materialize;
	rsinfo->setResult = tuplestore_begin_heap(true, false, work_mem);
	rsinfo->setDesc = tupdesc;
	MemoryContextSwitchTo(oldcontext);
}
#endif

/* PG 16 gave stringToQualifiedNameList a soft-error context argument. */
#if PG_VERSION_NUM >= 160000
#define PresenceQualifiedNameList(str) stringToQualifiedNameList((str), NULL)
#else
#define PresenceQualifiedNameList(str) stringToQualifiedNameList(str)
#endif

/*
 * SHA-256 of a byte string (for room channel names).  PG 14 brought the
 * cryptohash API, whose final step PG 15 gave a length argument; PG 13 had
 * plain SHA-2 functions.
 */
#include "common/sha2.h"
#if PG_VERSION_NUM >= 140000
#include "common/cryptohash.h"
#endif

static inline void
PresenceSha256(const uint8 *data, size_t len, uint8 *digest)
{
#if PG_VERSION_NUM >= 140000
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, data, len) < 0 ||
#if PG_VERSION_NUM >= 150000
		pg_cryptohash_final(ctx, digest, PG_SHA256_DIGEST_LENGTH) < 0)
#else
		pg_cryptohash_final(ctx, digest) < 0)
#endif
		elog(ERROR, "could not compute a SHA-256 digest");
	pg_cryptohash_free(ctx);
#else
	pg_sha256_ctx ctx;

	pg_sha256_init(&ctx);
	pg_sha256_update(&ctx, data, len);
	pg_sha256_final(&ctx, digest);
#endif
}

/*
 * A JSON lexer over a C string (for the fuzzer's checks): PG 17 added a
 * context argument and made the string const.
 */
#if PG_VERSION_NUM >= 170000
#define PRESENCE_JSON_LEX(json, len) \
	makeJsonLexContextCstringLen(NULL, (json), (len), PG_UTF8, true)
#else
#define PRESENCE_JSON_LEX(json, len) \
	makeJsonLexContextCstringLen((char *) (json), (len), PG_UTF8, true)
#endif

#endif							/* PRESENCE_COMPAT_H */
