/*-------------------------------------------------------------------------
 *
 * pgbatch.h
 *		What every part of pgbatch shares: the advisory lock class, the
 *		retry SQLSTATE, the item states, the executor slot limit and a
 *		stage's retry policy.  Each module declares its own functions in
 *		its own header (claim.h, outcome.h, http.h, ...); the library's
 *		version, PGB_VERSION, comes from the Makefile (the control file's).
 *
 * IDENTIFICATION
 *		src/pgbatch.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGBATCH_H
#define PGBATCH_H

/* First key of every advisory lock pgbatch takes ('PGBA'); the second is a batch id. */
#define PGB_LOCK_CLASS		1346847297

/* Custom SQLSTATE a stage raises to ask for a retry (transient). */
#define PGB_ERRCODE_RETRY	MAKE_SQLSTATE('P','B','0','0','1')

/* Item states, as stored in batch.items.status. */
#define PGB_PENDING		"pending"
#define PGB_RUNNING		"running"
#define PGB_COMPLETED	"completed"
#define PGB_FAILED		"failed"
#define PGB_CANCELLED	"cancelled"

/* Executor workers, all databases together (shared-memory slots). */
#define PGB_MAX_SLOTS	64

/* A stage's retry policy, with intervals in milliseconds. */
typedef struct PgbRetryPolicy
{
	int			max_retries;
	double		backoff_base_ms;
	double		backoff_factor;
	double		backoff_max_ms;
	double		jitter;
} PgbRetryPolicy;

#endif							/* PGBATCH_H */
