/*-------------------------------------------------------------------------
 *
 * outcome.c
 *		The outcome recorder: what a chunk of work did to its items.  An
 *		executor begins a record, adds to it as it runs the chunk (each
 *		item's new state, each stage output, each attempt with what came
 *		back), and flushes it: one statement each for the items, the
 *		outputs and the attempt history, the values travelling as arrays
 *		that unnest() takes apart, every statement through a saved plan.
 *		The arrays are unnested in a select list, side by side, not in
 *		FROM: unnest(a, b, ...) in FROM stores every row it makes in a
 *		tuplestore before the join reads it, and cost the executors 5 % of
 *		their instructions per HTTP item (callgrind).  A failed
 *		attempt becomes a retry after the stage's backoff or a failure
 *		here, by the stage's retry policy.  This is the only file that
 *		fills a PgbRecord.
 *
 * IDENTIFICATION
 *		src/outcome.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/pg_prng.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"

#include "outcome.h"
#include "pgbatch.h"
#include "util.h"

static SPIPlanPtr update_plan = NULL;
static SPIPlanPtr output_insert_plan = NULL;
static SPIPlanPtr attempt_insert_plan = NULL;

/* The items' new state, in one statement for a whole chunk. */
#define OUTCOME_UPDATE \
	"UPDATE batch.items i SET status = u.status, stage = u.stage," \
	" attempt = u.attempt, next_due = u.next_due," \
	" error_code = u.error_code, error_message = u.error_message," \
	" finished_at = u.finished_at, updated_at = $9," \
	" claimed_by = u.claimed_by, lease_until = u.lease_until" \
	" FROM (SELECT unnest($1) AS id, unnest($2) AS status," \
	"  unnest($3) AS stage, unnest($4) AS attempt, unnest($5) AS next_due," \
	"  unnest($6) AS error_code, unnest($7) AS error_message," \
	"  unnest($8) AS finished_at, unnest($10) AS claimed_by," \
	"  unnest($11) AS lease_until, unnest($12) AS held_by) u" \
	" WHERE i.id = u.id" \
	" AND (u.held_by IS NULL OR (i.status = 'running' AND i.claimed_by = u.held_by))" \
	" RETURNING i.id"

/*
 * pgb_outcome_begin
 *		An empty record, in the current memory context; the retries and
 *		failures it decides are counted in *stats.
 */
void
pgb_outcome_begin(PgbRecord *rec, PgbRunStats *stats)
{
	rec->stats = stats;
	rec->guard_pid = 0;
	pgb_column_init(&rec->item_id, INT8OID);
	pgb_column_init(&rec->item_status, TEXTOID);
	pgb_column_init(&rec->item_stage, TEXTOID);
	pgb_column_init(&rec->item_attempt, INT4OID);
	pgb_column_init(&rec->item_next_due, TIMESTAMPTZOID);
	pgb_column_init(&rec->item_error_code, TEXTOID);
	pgb_column_init(&rec->item_error, TEXTOID);
	pgb_column_init(&rec->item_finished_at, TIMESTAMPTZOID);
	pgb_column_init(&rec->item_claimed_by, INT4OID);
	pgb_column_init(&rec->item_lease_until, TIMESTAMPTZOID);
	pgb_column_init(&rec->item_held_by, INT4OID);

	pgb_column_init(&rec->out_item_id, INT8OID);
	pgb_column_init(&rec->out_stage, TEXTOID);
	pgb_column_init(&rec->out_output, JSONBOID);

	pgb_column_init(&rec->att_batch_id, INT8OID);
	pgb_column_init(&rec->att_item_id, INT8OID);
	pgb_column_init(&rec->att_stage, TEXTOID);
	pgb_column_init(&rec->att_attempt, INT4OID);
	pgb_column_init(&rec->att_outcome, TEXTOID);
	pgb_column_init(&rec->att_error_code, TEXTOID);
	pgb_column_init(&rec->att_message, TEXTOID);
	pgb_column_init(&rec->att_started_at, TIMESTAMPTZOID);
	pgb_column_init(&rec->att_finished_at, TIMESTAMPTZOID);
	pgb_column_init(&rec->att_http_status, INT4OID);
	pgb_column_init(&rec->att_response_size, INT4OID);
	pgb_column_init(&rec->att_response_sha256, TEXTOID);
	pgb_column_init(&rec->att_response_body, TEXTOID);
}

/*
 * add_item
 *		Adds an item's new state to the record, held by claimed_by (0: by
 *		nobody) until lease_until.
 */
static void
add_item(PgbRecord *rec, int64 item_id, const char *status, const char *stage,
		 int attempt, TimestampTz next_due, const char *error_code,
		 const char *message, TimestampTz finished_at, int32 claimed_by,
		 TimestampTz lease_until)
{
	pgb_column_add(&rec->item_id, Int64GetDatum(item_id), false);
	pgb_column_add(&rec->item_status, pgb_text_datum(status), false);
	pgb_column_add(&rec->item_stage, pgb_text_datum(stage), false);
	pgb_column_add(&rec->item_attempt, Int32GetDatum(attempt), false);
	pgb_column_add(&rec->item_next_due, TimestampTzGetDatum(next_due), false);
	pgb_column_add(&rec->item_error_code, pgb_text_datum(error_code), error_code == NULL);
	pgb_column_add(&rec->item_error, pgb_text_datum(message), message == NULL);
	pgb_column_add(&rec->item_finished_at, TimestampTzGetDatum(finished_at),
				   finished_at == 0);
	pgb_column_add(&rec->item_claimed_by, Int32GetDatum(claimed_by), claimed_by == 0);
	pgb_column_add(&rec->item_lease_until, TimestampTzGetDatum(lease_until),
				   claimed_by == 0);
	pgb_column_add(&rec->item_held_by, Int32GetDatum(rec->guard_pid), rec->guard_pid == 0);
}

/*
 * pgb_outcome_guard
 *		From now on, what is added for an item (its state, output and
 *		attempt) is written only if the item is still running under the
 *		claim of backend 'pid' when the record is flushed; 0 ends that.
 *		For results that come back after the claim committed: the item's
 *		lease may have run out meanwhile and another executor taken it
 *		back, and that result is then not this backend's to record.
 */
void
pgb_outcome_guard(PgbRecord *rec, int32 pid)
{
	rec->guard_pid = pid;
}

/*
 * pgb_outcome_item
 *		Adds an item's new state.  finished_at is 0 for items that are
 *		still waiting; the item is not held by an executor (see
 *		pgb_outcome_item_held for items that are).
 */
void
pgb_outcome_item(PgbRecord *rec, int64 item_id, const char *status, const char *stage,
				 int attempt, TimestampTz next_due, const char *error_code,
				 const char *message, TimestampTz finished_at)
{
	add_item(rec, item_id, status, stage, attempt, next_due, error_code, message,
			 finished_at, 0, 0);
}

/*
 * pgb_outcome_item_held
 *		Adds an item that runs now at an HTTP stage, held by this backend
 *		until lease_until: its request goes out once the record commits.
 *		It keeps 'due', when it was due, as its next_due: taken back after
 *		a crash, it is due before the work that came after it.
 */
void
pgb_outcome_item_held(PgbRecord *rec, int64 item_id, const char *stage, int attempt,
					  TimestampTz due, TimestampTz lease_until)
{
	add_item(rec, item_id, PGB_RUNNING, stage, attempt, due, NULL, NULL, 0,
			 (int32) MyProcPid, lease_until);
}

/*
 * pgb_outcome_output
 *		Adds the output of an item's stage.
 */
void
pgb_outcome_output(PgbRecord *rec, int64 item_id, const char *stage, Jsonb *output)
{
	pgb_column_add(&rec->out_item_id, Int64GetDatum(item_id), false);
	pgb_column_add(&rec->out_stage, pgb_text_datum(stage), false);
	pgb_column_add(&rec->out_output, JsonbPGetDatum(output), false);
}

/*
 * pgb_outcome_attempt
 *		Adds one attempt of one stage to the history, with what came back
 *		for an HTTP attempt (response; NULL for a SQL stage, whose HTTP
 *		columns stay NULL).
 */
void
pgb_outcome_attempt(PgbRecord *rec, int64 batch_id, int64 item_id, const char *stage,
					int attempt, const char *outcome, const char *error_code,
					const char *message, TimestampTz started, TimestampTz finished,
					const PgbResponseInfo *response)
{
	pgb_column_add(&rec->att_batch_id, Int64GetDatum(batch_id), false);
	pgb_column_add(&rec->att_item_id, Int64GetDatum(item_id), false);
	pgb_column_add(&rec->att_stage, pgb_text_datum(stage), false);
	pgb_column_add(&rec->att_attempt, Int32GetDatum(attempt), false);
	pgb_column_add(&rec->att_outcome, pgb_text_datum(outcome), false);
	pgb_column_add(&rec->att_error_code, pgb_text_datum(error_code), error_code == NULL);
	pgb_column_add(&rec->att_message, pgb_text_datum(message), message == NULL);
	pgb_column_add(&rec->att_started_at, TimestampTzGetDatum(started), false);
	pgb_column_add(&rec->att_finished_at, TimestampTzGetDatum(finished), false);
	if (response == NULL)
	{
		pgb_column_add(&rec->att_http_status, (Datum) 0, true);
		pgb_column_add(&rec->att_response_size, (Datum) 0, true);
		pgb_column_add(&rec->att_response_sha256, (Datum) 0, true);
		pgb_column_add(&rec->att_response_body, (Datum) 0, true);
		return;
	}
	pgb_column_add(&rec->att_http_status, Int32GetDatum((int32) response->status),
				   response->status <= 0);
	pgb_column_add(&rec->att_response_size,
				   Int32GetDatum((int32) Min(response->size, PG_INT32_MAX)), false);
	pgb_column_add(&rec->att_response_sha256, pgb_text_datum(response->sha256),
				   response->sha256 == NULL);
	pgb_column_add(&rec->att_response_body, pgb_text_datum(response->body),
				   response->body == NULL);
}

/*
 * backoff_ms
 *		The delay before retry number 'retry' (1 for the first retry):
 *		backoff_base * backoff_factor ^ (retry - 1), spread uniformly by
 *		+/- jitter of itself so that items that failed together do not come
 *		back together, and never more than backoff_max.
 */
static double
backoff_ms(const PgbRetryPolicy *policy, int retry)
{
	double		delay;

	delay = policy->backoff_base_ms * pow(policy->backoff_factor, Max(retry - 1, 0));
	if (!isfinite(delay) || delay > policy->backoff_max_ms)
		delay = policy->backoff_max_ms;
	if (policy->jitter > 0)
		delay *= 1.0 + policy->jitter * (2.0 * pg_prng_double(&pg_global_prng_state) - 1.0);
	return Max(Min(delay, policy->backoff_max_ms), 0.0);
}

/*
 * pgb_outcome_failure
 *		Adds what follows from a failed attempt for the item: a retry
 *		after the policy's backoff (and not before not_before, e.g. a
 *		Retry-After) if the error is transient and retries are left, else
 *		failure.  Returns the attempt's outcome, "retry" or "failed".
 */
const char *
pgb_outcome_failure(PgbRecord *rec, int64 item_id, const char *stage, int attempt,
					const PgbRetryPolicy *policy, bool transient,
					const char *error_code, const char *message,
					TimestampTz finished, TimestampTz not_before)
{
	PgbRunStats *stats = rec->stats;

	if (transient && attempt <= policy->max_retries)
	{
		double		delay_ms = backoff_ms(policy, attempt);
		TimestampTz next_due = finished + (TimestampTz) (delay_ms * 1000.0);

		next_due = Max(next_due, not_before);
		pgb_outcome_item(rec, item_id, PGB_PENDING, stage, attempt,
						 next_due, error_code, message, 0);
		if (stats->earliest_due == 0 || next_due < stats->earliest_due)
			stats->earliest_due = next_due;
		stats->retries_scheduled++;
		return "retry";
	}
	pgb_outcome_item(rec, item_id, PGB_FAILED, stage, attempt, finished,
					 error_code, message, finished);
	stats->items_failed++;
	return PGB_FAILED;
}

/*
 * pgb_outcome_stage_error
 *		Adds a failed attempt of a stage (no response) and what follows
 *		from it.
 */
void
pgb_outcome_stage_error(PgbRecord *rec, int64 batch_id, int64 item_id, const char *stage,
						int attempt, const PgbRetryPolicy *policy, bool transient,
						const char *error_code, const char *message,
						TimestampTz started, TimestampTz finished, TimestampTz not_before)
{
	const char *outcome = pgb_outcome_failure(rec, item_id, stage, attempt, policy,
											  transient, error_code, message, finished,
											  not_before);

	pgb_outcome_attempt(rec, batch_id, item_id, stage, attempt, outcome, error_code,
						message, started, finished, NULL);
}

/*
 * int64_cmp
 *		qsort/bsearch comparator of int64 values.
 */
static int
int64_cmp(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return (x > y) - (x < y);
}

/*
 * drop_rows
 *		Removes, from the ncols columns of equal length, the rows whose item
 *		(in the column 'ids', one of them) is among 'dropped' (sorted); the
 *		others keep their order.
 */
static void
drop_rows(PgbColumn **cols, int ncols, const PgbColumn *ids,
		  const int64 *dropped, int ndropped)
{
	bool	   *keep = palloc(sizeof(bool) * Max(ids->n, 1));
	int			nrows = ids->n;
	int			c;
	int			i;

	for (i = 0; i < nrows; i++)
	{
		int64		id = DatumGetInt64(ids->values[i]);

		keep[i] = bsearch(&id, dropped, ndropped, sizeof(int64), int64_cmp) == NULL;
	}
	for (c = 0; c < ncols; c++)
	{
		PgbColumn  *col = cols[c];
		int			n = 0;

		for (i = 0; i < nrows; i++)
		{
			if (!keep[i])
				continue;
			col->values[n] = col->values[i];
			col->nulls[n] = col->nulls[i];
			n++;
		}
		col->n = n;
	}
	pfree(keep);
}

/*
 * drop_unheld
 *		After the items' UPDATE, whose RETURNING ids are in SPI_tuptable,
 *		fewer than all: the guarded items it left alone (no longer running
 *		under this backend's claim) leave no output and no attempt either.
 *		Rare: it takes an executor held up past its lease.
 */
static void
drop_unheld(PgbRecord *rec)
{
	uint64		ndone = SPI_processed;
	int64	   *done = palloc(sizeof(int64) * Max(ndone, 1));
	int64	   *dropped = palloc(sizeof(int64) * rec->item_id.n);
	int			ndropped = 0;
	uint64		k;
	int			i;
	PgbColumn  *att[] = {
		&rec->att_batch_id, &rec->att_item_id, &rec->att_stage, &rec->att_attempt,
		&rec->att_outcome, &rec->att_error_code, &rec->att_message,
		&rec->att_started_at, &rec->att_finished_at, &rec->att_http_status,
		&rec->att_response_size, &rec->att_response_sha256, &rec->att_response_body
	};
	PgbColumn  *out[] = {&rec->out_item_id, &rec->out_stage, &rec->out_output};

	for (k = 0; k < ndone; k++)
	{
		bool		isnull;

		done[k] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[k],
											  SPI_tuptable->tupdesc, 1, &isnull));
	}
	qsort(done, ndone, sizeof(int64), int64_cmp);
	for (i = 0; i < rec->item_id.n; i++)
	{
		int64		id = DatumGetInt64(rec->item_id.values[i]);

		if (rec->item_held_by.nulls[i] ||
			bsearch(&id, done, ndone, sizeof(int64), int64_cmp) != NULL)
			continue;
		dropped[ndropped++] = id;
		ereport(LOG,
				(errmsg("pgbatch: the result of item " INT64_FORMAT " is dropped: the item is no longer held by this executor",
						id),
				 errdetail("Its lease ran out or it was taken back before the result was recorded; it may have run again.")));
	}
	if (ndropped == 0)
		return;
	qsort(dropped, ndropped, sizeof(int64), int64_cmp);
	drop_rows(att, lengthof(att), &rec->att_item_id, dropped, ndropped);
	drop_rows(out, lengthof(out), &rec->out_item_id, dropped, ndropped);
}

/*
 * pgb_outcome_flush
 *		Writes a chunk's outcomes: the items' new state, the stage outputs,
 *		and the attempt history, one statement each.  The items go first:
 *		those added under a guard (pgb_outcome_guard) that are no longer
 *		held are left as they are, and their outputs and attempts are then
 *		left out too.
 */
void
pgb_outcome_flush(PgbRecord *rec, TimestampTz now)
{
	Datum		args[13];
	int			ret;

	if (rec->item_id.n > 0)
	{
		if (update_plan == NULL)
		{
			Oid			argtypes[12] = {
				INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
				TIMESTAMPTZARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
				TIMESTAMPTZARRAYOID, TIMESTAMPTZOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID,
				INT4ARRAYOID
			};

			/*
			 * Planned once, not for every chunk (the executors spent 6 %
			 * less CPU per HTTP item), and without sequential scans or
			 * hash joins (pgb_execute_keyed), so that a plan made while
			 * batch.items was nearly empty still finds each item by
			 * primary key once the table has grown.
			 */
			update_plan = pgb_prepare_opts(OUTCOME_UPDATE, 12, argtypes,
										   CURSOR_OPT_GENERIC_PLAN);
		}
		args[0] = pgb_column_array(&rec->item_id);
		args[1] = pgb_column_array(&rec->item_status);
		args[2] = pgb_column_array(&rec->item_stage);
		args[3] = pgb_column_array(&rec->item_attempt);
		args[4] = pgb_column_array(&rec->item_next_due);
		args[5] = pgb_column_array(&rec->item_error_code);
		args[6] = pgb_column_array(&rec->item_error);
		args[7] = pgb_column_array(&rec->item_finished_at);
		args[8] = TimestampTzGetDatum(now);
		args[9] = pgb_column_array(&rec->item_claimed_by);
		args[10] = pgb_column_array(&rec->item_lease_until);
		args[11] = pgb_column_array(&rec->item_held_by);
		ret = pgb_execute_keyed(update_plan, args, NULL, false, 0);
		if (ret != SPI_OK_UPDATE_RETURNING)
			elog(ERROR, "pgbatch: recording item states failed: %s",
				 SPI_result_code_string(ret));
		if (SPI_processed < (uint64) rec->item_id.n)
			drop_unheld(rec);
		SPI_freetuptable(SPI_tuptable);
	}

	if (rec->att_item_id.n > 0)
	{
		if (attempt_insert_plan == NULL)
		{
			Oid			argtypes[13] = {
				INT8ARRAYOID, INT8ARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
				TEXTARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
				TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID,
				INT4ARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID
			};

			attempt_insert_plan = pgb_prepare(
											  "INSERT INTO batch.attempts (batch_id, item_id, stage, attempt,"
											  " outcome, error_code, message, started_at, finished_at,"
											  " http_status, response_size, response_sha256, response_body)"
											  " SELECT unnest($1), unnest($2), unnest($3), unnest($4),"
											  " unnest($5), unnest($6), unnest($7), unnest($8), unnest($9),"
											  " unnest($10), unnest($11), unnest($12), unnest($13)",
											  13, argtypes);
		}
		args[0] = pgb_column_array(&rec->att_batch_id);
		args[1] = pgb_column_array(&rec->att_item_id);
		args[2] = pgb_column_array(&rec->att_stage);
		args[3] = pgb_column_array(&rec->att_attempt);
		args[4] = pgb_column_array(&rec->att_outcome);
		args[5] = pgb_column_array(&rec->att_error_code);
		args[6] = pgb_column_array(&rec->att_message);
		args[7] = pgb_column_array(&rec->att_started_at);
		args[8] = pgb_column_array(&rec->att_finished_at);
		args[9] = pgb_column_array(&rec->att_http_status);
		args[10] = pgb_column_array(&rec->att_response_size);
		args[11] = pgb_column_array(&rec->att_response_sha256);
		args[12] = pgb_column_array(&rec->att_response_body);
		ret = pgb_execute(attempt_insert_plan, args, NULL, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "pgbatch: recording attempts failed: %s",
				 SPI_result_code_string(ret));
	}

	if (rec->out_item_id.n > 0)
	{
		if (output_insert_plan == NULL)
		{
			Oid			argtypes[4] = {INT8ARRAYOID, TEXTARRAYOID, JSONBARRAYOID,
			TIMESTAMPTZOID};

			output_insert_plan = pgb_prepare(
											 "INSERT INTO batch.outputs AS o (item_id, stage, output, created_at)"
											 " SELECT unnest($1), unnest($2), unnest($3), $4"
											 " ON CONFLICT (item_id, stage) DO UPDATE"
											 " SET output = excluded.output, created_at = excluded.created_at",
											 4, argtypes);
		}
		args[0] = pgb_column_array(&rec->out_item_id);
		args[1] = pgb_column_array(&rec->out_stage);
		args[2] = pgb_column_array(&rec->out_output);
		args[3] = TimestampTzGetDatum(now);
		ret = pgb_execute(output_insert_plan, args, NULL, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "pgbatch: recording stage outputs failed: %s",
				 SPI_result_code_string(ret));
	}

}
