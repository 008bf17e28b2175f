/*-------------------------------------------------------------------------
 *
 * events.h
 *		Events for listeners on the channel pgbatch_events (events.c).
 *
 * IDENTIFICATION
 *		src/events.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_EVENTS_H
#define PGB_EVENTS_H

#include "utils/timestamp.h"

/* A batch's items by state, as batch.counters sums them. */
typedef struct PgbBatchCounts
{
	int64		pending;		/* waiting for a first attempt */
	int64		retrying;
	int64		running;
	int64		completed;
	int64		failed;
	int64		cancelled;
} PgbBatchCounts;

extern bool pgb_batch_events(int64 batch_id, const PgbBatchCounts *before,
							 const PgbBatchCounts *after, int64 failed_now, bool started,
							 bool cancelled, TimestampTz now);
extern const char *pgb_batch_status(bool cancelled, const PgbBatchCounts *c, bool started);
extern void pgb_batch_finished_event(int64 batch_id, bool cancelled,
									 const PgbBatchCounts *counts, TimestampTz now);

/* counters.c: ends two executors' transactions may have hidden from each other */
extern bool pgb_missed_ends_pending(void);
extern void pgb_announce_missed_ends(void);
extern void pgb_endpoint_event(int32 endpoint_id, const char *name, bool paused,
							   const char *reason, TimestampTz until);

#endif							/* PGB_EVENTS_H */
