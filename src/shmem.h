/*-------------------------------------------------------------------------
 *
 * shmem.h
 *		pgbatch's shared memory (shmem.c), present when pgbatch is
 *		preloaded: the launcher, one slot per executor, per-database flags,
 *		and the live state of every endpoint (whose rules are endpoint.c's).
 *
 * IDENTIFICATION
 *		src/shmem.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_SHMEM_H
#define PGB_SHMEM_H

#include "port/atomics.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

#define PGB_MAX_DBS		64		/* databases with remembered flags */

typedef struct PgbWorkerSlot
{
	bool		in_use;			/* reserved by the launcher or attached */
	Oid			dboid;
	int			worker;			/* number within its database */
	pid_t		pid;			/* 0 until the executor attaches */
	Latch	   *latch;
	TimestampTz started_at;
	int32		in_flight;		/* HTTP requests in flight */
	int64		requests;		/* HTTP requests finished */
	Oid			busy_owner;		/* owner whose stages it runs now, or 0 */
	TimestampTz busy_since;		/* ... since then */
	bool		extra;			/* started because every executor was held up */
} PgbWorkerSlot;

/*
 * What is known of one database.  'registered' says that it has the
 * extension: set at the commit of CREATE EXTENSION or ALTER EXTENSION UPDATE
 * (and of a submit, or a look at batch.health, there), cleared when an
 * executor finds the extension gone, and kept across restarts in the
 * launcher's registry file (registry.c).  The launcher starts executors
 * only in registered databases.  Where there is no registry file yet (a new
 * data directory, one pg_upgrade made, a library older than the registry
 * before), every database is registered 'tentative'ly once: one executor
 * looks, and confirms or unregisters it.
 */
typedef struct PgbDbFlags
{
	Oid			dboid;
	bool		registered;		/* the database has the extension */
	bool		tentative;		/* ... maybe: to be looked into by one
								 * executor (no registry file yet) */
	bool		dropping;		/* DROP DATABASE in progress */
	bool		old_schema;		/* its executors found the schema older than
								 * the library */
	bool		restoring;		/* its executors wait for pg_restore */
	bool		out_of_slots;	/* 'unstarted' for want of pgbatch's own
								 * slots, not of max_worker_processes */
	int32		unstarted;		/* executors the launcher could not start at
								 * its last try */
	int64		starts;			/* executors started since the server started */
	TimestampTz registered_at;	/* when a backend last registered it */
} PgbDbFlags;

typedef enum PgbCircuit
{
	PGB_CIRCUIT_CLOSED,
	PGB_CIRCUIT_OPEN,			/* half-open once open_until has passed */
	PGB_CIRCUIT_PROBING			/* one probe request in flight */
} PgbCircuit;

/* The live state of an endpoint (see endpoint.c). */
typedef struct PgbEndpointState
{
	Oid			dboid;
	int32		endpoint_id;
	int32		max_concurrency;
	int32		rate_limit;		/* per minute; 0 = none */
	int32		burst;			/* the most tokens the bucket holds */
	double		rate_factor;	/* share of the limits in use (AIMD on 429s) */
	double		implied_rate;	/* per minute: without a rate_limit, the rate
								 * it was sent at when it first answered 429 */
	TimestampTz sent_window_at; /* the second being counted ... */
	int32		sent_in_window; /* ... and the requests sent in it */
	double		sent_rate;		/* per minute, over the last whole second */
	TimestampTz decreased_at;	/* when a 429 last lowered it */
	int32		in_flight;
	double		tokens;
	TimestampTz refilled_at;
	int32		tokens_per_minute;	/* LLM tokens per minute; 0 = none */
	double		llm_tokens;		/* its bucket: what may be spent now */
	TimestampTz llm_refilled_at;
	int64		tokens_used;	/* LLM tokens the responses reported */
	int64		hint_requests;	/* the provider's remaining requests ... */
	TimestampTz hint_requests_until;	/* ... until then (0: not known) */
	int64		hint_tokens;	/* the provider's remaining tokens ... */
	TimestampTz hint_tokens_until;	/* ... until then (0: not known) */
	TimestampTz hint_next_at;	/* no request before (spacing the rest) */
	TimestampTz paused_until;	/* Retry-After */
	PgbCircuit	circuit;
	TimestampTz open_until;
	int32		consecutive_failures;
	bool		waiters;		/* some executor waits for a free slot */
	int64		requests;
	int64		failures;
} PgbEndpointState;

typedef struct PgbShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	PgbDbFlags	dbs[PGB_MAX_DBS];
	pg_atomic_uint32 exits;		/* executors that have exited, ever */
	int			nendpoints;
	PgbEndpointState *endpoints;	/* pgb_max_endpoints, after the slots */
	PgbWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} PgbShared;

extern PgbShared *pgb_shared;
extern void pgb_shmem_init(void);
extern void pgb_register_xact_callback(void);
extern void pgb_wake_on_commit(void);
extern PgbDbFlags *pgb_db_flags_find(Oid dboid, bool create);
extern void pgb_register_database(void);
extern void pgb_register_at_commit(void);
extern void pgb_slot_attach(int index, Oid dboid);
extern PgbWorkerSlot *pgb_my_slot(void);
extern Datum pgb_live_executor_pids(Oid dboid);
extern void pgb_wake_executors(Oid dboid);
extern bool pgb_executors_serve(Oid dboid);
extern bool pgb_held_up(Oid dboid, PgbWorkerSlot *except, TimestampTz now, int *extras);

/* an executor in one chunk of stages for longer than this is held up */
#define PGB_HELD_UP_MS	700

#endif							/* PGB_SHMEM_H */
