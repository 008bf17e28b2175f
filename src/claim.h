/*-------------------------------------------------------------------------
 *
 * claim.h
 *		Claiming due items and loading what they need (claim.c).
 *
 * IDENTIFICATION
 *		src/claim.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_CLAIM_H
#define PGB_CLAIM_H

#include "utils/jsonb.h"
#include "utils/timestamp.h"

/* An item claimed for execution. */
typedef struct PgbWorkItem
{
	int64		id;
	int64		batch_id;
	char	   *stage;
	int			attempt;		/* attempts made before this claim */
	Jsonb	   *payload;
	Jsonb	   *outputs;		/* earlier stages' outputs, or NULL if none */
	bool		need_outputs;	/* set by the executor: load outputs */
	char	   *error_code;		/* last error, or NULL */
	int			max_retries;	/* per-item override, or -1 */
	double		backoff_factor; /* per-item override, or 0 */
	TimestampTz next_due;		/* when it was due: its place in the queue */
} PgbWorkItem;

/*
 * Where an in-transaction claim scan resumes: the (next_due, id) of the last
 * item claimed.  The rows an executor has already updated in its open
 * transaction stay in the due-items index until it commits, so each claim
 * starts after the previous one instead of walking them again.
 */
typedef struct PgbClaimCursor
{
	TimestampTz next_due;
	int64		id;
} PgbClaimCursor;

/*
 * The batches with waiting items (pending, due or not), as a FROM item named
 * a with one column, batch_id.  The queue has no index of due items across
 * batches, only the one per batch: with both, a plan made while the due
 * index was empty (statistics taken between batches) could walk the overall
 * one for a claim of one batch, filtering out every due item of the batches
 * before it (92 ms a claim behind 200,000 items of another batch, against
 * 0.2 ms).  What reads across batches goes batch by batch over these, each
 * through its own part of the index, and merges.
 */
#define PGB_ACTIVE_BATCHES \
	"(SELECT c.batch_id FROM batch.counters c GROUP BY c.batch_id" \
	" HAVING sum(c.pending + c.retrying) > 0) a"

extern int	pgb_claim_locked(int64 batch_id, Oid actor, TimestampTz now, int limit,
							 PgbClaimCursor *cursor, PgbWorkItem **items);
extern void pgb_load_outputs(PgbWorkItem *items, int nitems);
extern TimestampTz pgb_next_due(int64 batch_id, Oid actor, bool *found);

#endif							/* PGB_CLAIM_H */
