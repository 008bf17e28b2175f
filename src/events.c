/*-------------------------------------------------------------------------
 *
 * events.c
 *		Events for listeners: NOTIFY on the channel pgbatch_events, with a
 *		JSON payload, when a batch starts, makes progress, finishes, sees
 *		items land in the review queue, and when an endpoint pauses or
 *		resumes.  NOTIFY is transactional, so every event is delivered at
 *		commit (and never for a transaction that rolls back); identical
 *		payloads within one transaction are folded by the server.  Progress
 *		is coalesced further: each backend sends it at most once a second
 *		per batch, so a 1,000,000-item batch does not flood listeners.
 *
 *		Anyone who may connect may LISTEN, so a payload names a batch by id
 *		only and carries nothing of its contents: listeners read the rest
 *		through the views, under row-level security.
 *
 * IDENTIFICATION
 *		src/events.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/async.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "events.h"

PG_FUNCTION_INFO_V1(pgbatch_batch_status);

/* The channel every event goes to. */
#define PGB_EVENTS_CHANNEL	"pgbatch_events"

/* The least time between two progress events of one batch from a backend. */
#define PROGRESS_INTERVAL_MS	1000

/* When this backend last sent the progress of a batch. */
typedef struct ProgressSent
{
	int64		batch_id;		/* hash key */
	TimestampTz at;
} ProgressSent;

static HTAB *progress_sent = NULL;

/*
 * add_time
 *		Adds ', "key": "<ISO 8601 timestamp>"', written as jsonb writes one.
 */
static void
add_time(StringInfo buf, const char *key, TimestampTz t)
{
	char		tbuf[MAXDATELEN + 1];

	appendStringInfo(buf, ", \"%s\": \"%s\"", key,
					 JsonEncodeDateTime(tbuf, TimestampTzGetDatum(t), TIMESTAMPTZOID, NULL));
}

/*
 * begin_event
 *		Starts a payload: {"event": ..., "at": ...
 */
static void
begin_event(StringInfo buf, const char *event, TimestampTz now)
{
	initStringInfo(buf);
	appendStringInfoString(buf, "{\"event\": ");
	escape_json(buf, event);
	add_time(buf, "at", now);
}

/*
 * send_event
 *		Closes the payload and queues the notification for commit.
 */
static void
send_event(StringInfo buf)
{
	appendStringInfoChar(buf, '}');
	Async_Notify(PGB_EVENTS_CHANNEL, buf->data);
	pfree(buf->data);
}

/*
 * add_batch
 *		Adds the batch's id.
 */
static void
add_batch(StringInfo buf, int64 batch_id)
{
	appendStringInfo(buf, ", \"batch_id\": " INT64_FORMAT, batch_id);
}

/*
 * progress_due
 *		True if this backend may send the batch's progress now (and notes
 *		that it does); 'force' sends it regardless, as when the batch ends.
 */
static bool
progress_due(int64 batch_id, TimestampTz now, bool force)
{
	ProgressSent *p;
	bool		found;

	if (progress_sent == NULL)
	{
		HASHCTL		ctl;

		ctl.keysize = sizeof(int64);
		ctl.entrysize = sizeof(ProgressSent);
		ctl.hcxt = TopMemoryContext;
		progress_sent = hash_create("pgbatch progress events", 64, &ctl,
									HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	/* forget old batches now and then, so that the table stays small */
	if (hash_get_num_entries(progress_sent) > 1024)
	{
		hash_destroy(progress_sent);
		progress_sent = NULL;
		return progress_due(batch_id, now, force);
	}
	p = hash_search(progress_sent, &batch_id, HASH_ENTER, &found);
	if (found && !force &&
		!TimestampDifferenceExceeds(p->at, now, PROGRESS_INTERVAL_MS))
		return false;
	p->at = now;
	return true;
}

/*
 * pgb_batch_events
 *		What a statement's change to a batch's items means for listeners:
 *		'before' and 'after' are the batch's counts around it, 'failed_now'
 *		how many items it moved to failed, 'started' whether its first
 *		attempt began now, 'cancelled' whether the batch is cancelled.
 *		Sends batch_started, items_failed (they are in the review queue),
 *		progress (coalesced), and batch_finished with the batch's status as
 *		batch.progress gives it.  Returns true if it announced the end.
 */
bool
pgb_batch_events(int64 batch_id, const PgbBatchCounts *before, const PgbBatchCounts *after,
				 int64 failed_now, bool started, bool cancelled, TimestampTz now)
{
	StringInfoData buf;
	int64		waiting_before = before->pending + before->retrying + before->running;
	int64		waiting_after = after->pending + after->retrying + after->running;
	bool		finished = waiting_before > 0 && waiting_after == 0;


	if (started)
	{
		begin_event(&buf, "batch_started", now);
		add_batch(&buf, batch_id);
		send_event(&buf);
	}
	if (failed_now > 0)
	{
		begin_event(&buf, "items_failed", now);
		add_batch(&buf, batch_id);
		appendStringInfo(&buf, ", \"items\": " INT64_FORMAT, failed_now);
		send_event(&buf);
	}
	if (progress_due(batch_id, now, finished || started))
	{
		begin_event(&buf, "progress", now);
		add_batch(&buf, batch_id);
		send_event(&buf);
	}
	if (finished)
		pgb_batch_finished_event(batch_id, cancelled, after, now);
	return finished;
}

/*
 * pgb_batch_finished_event
 *		batch_finished, with the batch's status as batch.progress gives it
 *		(sent at commit).
 */
void
pgb_batch_finished_event(int64 batch_id, bool cancelled, const PgbBatchCounts *counts,
						 TimestampTz now)
{
	StringInfoData buf;

	begin_event(&buf, "batch_finished", now);
	add_batch(&buf, batch_id);
	appendStringInfoString(&buf, ", \"status\": ");
	escape_json(&buf, pgb_batch_status(cancelled, counts, true));
	send_event(&buf);
}

/*
 * pgb_endpoint_event
 *		An endpoint paused (reason retry_after or circuit_open, until when)
 *		or resumed (circuit_closed; until is 0).
 */
void
pgb_endpoint_event(int32 endpoint_id, const char *name, bool paused, const char *reason,
				   TimestampTz until)
{
	StringInfoData buf;

	begin_event(&buf, paused ? "endpoint_paused" : "endpoint_resumed", GetCurrentTimestamp());
	appendStringInfo(&buf, ", \"endpoint_id\": %d, \"endpoint\": ", endpoint_id);
	escape_json(&buf, name ? name : "");
	appendStringInfoString(&buf, ", \"reason\": ");
	escape_json(&buf, reason);
	if (until != 0)
		add_time(&buf, "until", until);
	send_event(&buf);
}

/*
 * pgb_batch_status
 *		A batch's status, the one rule for it: cancelled once cancelled;
 *		queued until its first attempt began; running while items wait or
 *		run; then completed, failed or partial by what its items became
 *		(cancelled when none completed or failed).  batch.progress applies
 *		it through batch_internal.batch_status(), batch_finished here.
 */
const char *
pgb_batch_status(bool cancelled, const PgbBatchCounts *c, bool started)
{
	int64		waiting = c->pending + c->retrying + c->running;
	int64		total = waiting + c->completed + c->failed + c->cancelled;

	if (cancelled)
		return "cancelled";
	if (total == 0)
		return "queued";
	if (waiting > 0)
		return started ? "running" : "queued";
	if (c->failed == 0 && c->completed == 0)
		return "cancelled";
	if (c->failed == 0)
		return "completed";
	if (c->completed == 0)
		return "failed";
	return "partial";
}

/*
 * pgbatch_batch_status
 *		batch_internal.batch_status(cancelled, pending, retrying, running,
 *		completed, failed, cancelled_items, started): pgb_batch_status() for
 *		the batch.progress view.
 */
Datum
pgbatch_batch_status(PG_FUNCTION_ARGS)
{
	PgbBatchCounts c;

	c.pending = PG_GETARG_INT64(1);
	c.retrying = PG_GETARG_INT64(2);
	c.running = PG_GETARG_INT64(3);
	c.completed = PG_GETARG_INT64(4);
	c.failed = PG_GETARG_INT64(5);
	c.cancelled = PG_GETARG_INT64(6);
	PG_RETURN_TEXT_P(cstring_to_text(pgb_batch_status(PG_GETARG_BOOL(0), &c,
													  PG_GETARG_BOOL(7))));
}
