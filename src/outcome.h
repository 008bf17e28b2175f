/*-------------------------------------------------------------------------
 *
 * outcome.h
 *		The outcome recorder (outcome.c): what a chunk of work did to its
 *		items, gathered in memory and written together.  Begin a record,
 *		add item states, outputs and attempts to it, flush it; a failed
 *		attempt is turned into a retry or a failure by the stage's retry
 *		policy here too.  No other file fills a PgbRecord.
 *
 * IDENTIFICATION
 *		src/outcome.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_OUTCOME_H
#define PGB_OUTCOME_H

#include "utils/jsonb.h"
#include "utils/timestamp.h"

#include "pgbatch.h"
#include "util.h"

/* What an executor did: batch.run()'s result, and when to look again. */
typedef struct PgbRunStats
{
	int64		stages_run;
	int64		items_completed;
	int64		retries_scheduled;
	int64		items_failed;
	int64		requests_prepared;
	int64		items_deferred; /* left for later: their endpoint is busy */
	TimestampTz earliest_due;	/* soonest retry or resume scheduled, or 0 */
} PgbRunStats;

/* What came back for an HTTP attempt (see pgb_outcome_attempt). */
typedef struct PgbResponseInfo
{
	long		status;			/* HTTP status, 0 if none came back */
	size_t		size;			/* bytes of the body */
	const char *sha256;			/* of the body, or NULL */
	const char *body;			/* the start of a failed response's body, or
								 * NULL */
} PgbResponseInfo;

/* The outcomes of a chunk of work, recorded together in one round trip each. */
typedef struct PgbRecord
{
	PgbRunStats *stats;			/* retries and failures are counted here */
	int32		guard_pid;		/* see pgb_outcome_guard (0: none) */
	/* item state after the chunk */
	PgbColumn	item_id;
	PgbColumn	item_status;
	PgbColumn	item_stage;
	PgbColumn	item_attempt;
	PgbColumn	item_next_due;
	PgbColumn	item_error_code;
	PgbColumn	item_error;
	PgbColumn	item_finished_at;
	PgbColumn	item_claimed_by;
	PgbColumn	item_lease_until;
	PgbColumn	item_held_by;	/* written only if still running under this
								 * pid's claim (NULL: unconditionally) */
	/* stage outputs */
	PgbColumn	out_item_id;
	PgbColumn	out_stage;
	PgbColumn	out_output;
	/* attempt history */
	PgbColumn	att_batch_id;
	PgbColumn	att_item_id;
	PgbColumn	att_stage;
	PgbColumn	att_attempt;
	PgbColumn	att_outcome;
	PgbColumn	att_error_code;
	PgbColumn	att_message;
	PgbColumn	att_started_at;
	PgbColumn	att_finished_at;
	PgbColumn	att_http_status;
	PgbColumn	att_response_size;
	PgbColumn	att_response_sha256;
	PgbColumn	att_response_body;
} PgbRecord;

extern void pgb_outcome_begin(PgbRecord *rec, PgbRunStats *stats);
extern void pgb_outcome_guard(PgbRecord *rec, int32 pid);
extern void pgb_outcome_item(PgbRecord *rec, int64 item_id, const char *status,
							 const char *stage, int attempt, TimestampTz next_due,
							 const char *error_code, const char *message,
							 TimestampTz finished_at);
extern void pgb_outcome_item_held(PgbRecord *rec, int64 item_id, const char *stage,
								  int attempt, TimestampTz due,
								  TimestampTz lease_until);
extern void pgb_outcome_output(PgbRecord *rec, int64 item_id, const char *stage,
							   Jsonb *output);
extern void pgb_outcome_attempt(PgbRecord *rec, int64 batch_id, int64 item_id,
								const char *stage, int attempt, const char *outcome,
								const char *error_code, const char *message,
								TimestampTz started, TimestampTz finished,
								const PgbResponseInfo *response);
extern const char *pgb_outcome_failure(PgbRecord *rec, int64 item_id, const char *stage,
									   int attempt, const PgbRetryPolicy *policy,
									   bool transient, const char *error_code,
									   const char *message, TimestampTz finished,
									   TimestampTz not_before);
extern void pgb_outcome_stage_error(PgbRecord *rec, int64 batch_id, int64 item_id,
									const char *stage, int attempt,
									const PgbRetryPolicy *policy, bool transient,
									const char *error_code, const char *message,
									TimestampTz started, TimestampTz finished,
									TimestampTz not_before);
extern void pgb_outcome_flush(PgbRecord *rec, TimestampTz now);

#endif							/* PGB_OUTCOME_H */
