/*-------------------------------------------------------------------------
 *
 * executor.c
 *		batch.run(): executes due work in the calling session.  It claims
 *		due items a chunk at a time, runs each item's SQL stages in order
 *		(each stage in its own subtransaction, one attempt recorded per
 *		stage), decides retry or failure from the stage's retry policy, and
 *		records the chunk's outcomes together.  It never sleeps through a
 *		backoff: when nothing is due it returns, saying when the next item
 *		is due.
 *
 * src/executor.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/memutils.h"

#include "pgbatch.h"

PG_FUNCTION_INFO_V1(pgbatch_run);

/* What one call of batch.run() did. */
typedef struct PgbRunStats
{
	int64		stages_run;
	int64		items_completed;
	int64		retries_scheduled;
	int64		items_failed;
} PgbRunStats;

/*
 * record_attempt
 *		Adds one attempt of one stage to the history buffer.
 */
static void
record_attempt(PgbRecord *rec, PgbWorkItem *it, const char *stage, int attempt,
			   const char *outcome, const char *error_code, const char *message,
			   TimestampTz started, TimestampTz finished)
{
	pgb_column_add(&rec->att_batch_id, Int64GetDatum(it->batch_id), false);
	pgb_column_add(&rec->att_item_id, Int64GetDatum(it->id), false);
	pgb_column_add(&rec->att_stage, pgb_text_datum(stage), false);
	pgb_column_add(&rec->att_attempt, Int32GetDatum(attempt), false);
	pgb_column_add(&rec->att_outcome, pgb_text_datum(outcome), false);
	pgb_column_add(&rec->att_error_code, pgb_text_datum(error_code), error_code == NULL);
	pgb_column_add(&rec->att_message, pgb_text_datum(message), message == NULL);
	pgb_column_add(&rec->att_started_at, TimestampTzGetDatum(started), false);
	pgb_column_add(&rec->att_finished_at, TimestampTzGetDatum(finished), false);
}

/*
 * record_item
 *		Adds an item's state after this chunk to the state buffer.
 *		finished_at is 0 for items that are still waiting.
 */
static void
record_item(PgbRecord *rec, PgbWorkItem *it, const char *status, const char *stage,
			int attempt, TimestampTz next_due, const char *error_code,
			const char *message, TimestampTz finished_at)
{
	pgb_column_add(&rec->item_id, Int64GetDatum(it->id), false);
	pgb_column_add(&rec->item_status, pgb_text_datum(status), false);
	pgb_column_add(&rec->item_stage, pgb_text_datum(stage), false);
	pgb_column_add(&rec->item_attempt, Int32GetDatum(attempt), false);
	pgb_column_add(&rec->item_next_due, TimestampTzGetDatum(next_due), false);
	pgb_column_add(&rec->item_error_code, pgb_text_datum(error_code), error_code == NULL);
	pgb_column_add(&rec->item_error, pgb_text_datum(message), message == NULL);
	pgb_column_add(&rec->item_finished_at, TimestampTzGetDatum(finished_at),
				   finished_at == 0);
}

/*
 * execute_item
 *		Runs the claimed item's current stage and, while they succeed, the
 *		SQL stages after it; records every attempt, every output, and the
 *		item's resulting state.
 */
static void
execute_item(PgbBatchInfo *info, PgbWorkItem *it, PgbRecord *rec, PgbRunStats *stats)
{
	PgbPipeline *pipeline = info->pipeline;
	PgbStage   *stage = pgb_find_stage(pipeline, it->stage);
	int			attempt = it->attempt + 1;

	if (stage == NULL)
	{
		TimestampTz now = GetCurrentTimestamp();
		char	   *msg = psprintf("stage \"%s\" is not a stage of the item's pipeline",
								   it->stage);

		record_attempt(rec, it, it->stage, attempt, PGB_FAILED, "unknown_stage", msg,
					   now, now);
		record_item(rec, it, PGB_FAILED, it->stage, attempt, now, "unknown_stage", msg, now);
		stats->items_failed++;
		return;
	}

	for (;;)
	{
		PgbStageResult result;
		Jsonb	   *output;
		char	   *error_code;
		char	   *message;
		TimestampTz started;
		TimestampTz finished;
		int			max_retries;

		if (stage->kind != PGB_STAGE_SQL)
		{
			/* not ours to run here: leave it due for an executor that can */
			record_item(rec, it, PGB_PENDING, stage->name, attempt - 1,
						GetCurrentTimestamp(), NULL, NULL, 0);
			return;
		}

		started = GetCurrentTimestamp();
		result = pgb_run_sql_stage(info, stage, it, &output, &error_code, &message);
		finished = GetCurrentTimestamp();
		stats->stages_run++;

		if (result == PGB_STAGE_OK)
		{
			record_attempt(rec, it, stage->name, attempt, PGB_COMPLETED, NULL, NULL,
						   started, finished);
			pgb_column_add(&rec->out_item_id, Int64GetDatum(it->id), false);
			pgb_column_add(&rec->out_stage, pgb_text_datum(stage->name), false);
			pgb_column_add(&rec->out_output, JsonbPGetDatum(output), false);

			if (stage->position == pipeline->nstages - 1)
			{
				record_item(rec, it, PGB_COMPLETED, stage->name, attempt, finished,
							NULL, NULL, finished);
				stats->items_completed++;
				return;
			}
			it->outputs = pgb_jsonb_set_key(it->outputs, stage->name, output);
			stage = &pipeline->stages[stage->position + 1];
			attempt = 1;
			CHECK_FOR_INTERRUPTS();
			continue;
		}

		max_retries = it->max_retries >= 0 ? it->max_retries : stage->policy.max_retries;
		if (result == PGB_STAGE_TRANSIENT && attempt <= max_retries)
		{
			PgbRetryPolicy policy = stage->policy;
			double		delay_ms;
			TimestampTz next_due;

			if (it->backoff_factor > 0)
				policy.backoff_factor = it->backoff_factor;
			delay_ms = pgb_backoff_ms(&policy, attempt);
			next_due = finished + (TimestampTz) (delay_ms * 1000.0);
			record_attempt(rec, it, stage->name, attempt, "retry", error_code, message,
						   started, finished);
			record_item(rec, it, PGB_PENDING, stage->name, attempt, next_due,
						error_code, message, 0);
			stats->retries_scheduled++;
			return;
		}

		record_attempt(rec, it, stage->name, attempt, PGB_FAILED, error_code, message,
					   started, finished);
		record_item(rec, it, PGB_FAILED, stage->name, attempt, finished,
					error_code, message, finished);
		stats->items_failed++;
		return;
	}
}

/*
 * pgbatch_run
 *		batch._run(batch_id, max_items, max_seconds): runs due items of one
 *		batch (or of every batch when batch_id is NULL) until none is due,
 *		max_items items have been taken, or max_seconds have passed.
 *		Returns (stages_run, items_completed, retries_scheduled,
 *		items_failed, next_due).
 */
Datum
pgbatch_run(PG_FUNCTION_ARGS)
{
	int64		batch_id = PG_ARGISNULL(0) ? 0 : PG_GETARG_INT64(0);
	int64		max_items = PG_ARGISNULL(1) ? -1 : PG_GETARG_INT64(1);
	double		max_seconds = PG_ARGISNULL(2) ? -1 : PG_GETARG_FLOAT8(2);
	TimestampTz start = GetCurrentTimestamp();
	PgbRunStats stats = {0};
	int64		taken = 0;
	MemoryContext runcxt;
	MemoryContext chunkcxt;
	HTAB	   *cache;
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	TimestampTz next_due;
	bool		found;
	PgbClaimCursor cursor = {DT_NOBEGIN, 0};

	if (max_items < -1 || (!PG_ARGISNULL(1) && max_items < 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_items must not be negative")));
	if (!PG_ARGISNULL(2) && !(max_seconds >= 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_seconds must not be negative")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pgbatch_run: return type must be a row type");

	runcxt = AllocSetContextCreate(CurrentMemoryContext, "pgbatch run",
								   ALLOCSET_DEFAULT_SIZES);
	chunkcxt = AllocSetContextCreate(runcxt, "pgbatch run chunk",
									 ALLOCSET_DEFAULT_SIZES);
	cache = pgb_batch_cache_create(runcxt);

	SPI_connect();
	for (;;)
	{
		MemoryContext oldcxt;
		PgbWorkItem *items;
		PgbRecord	rec;
		int			limit = pgb_claim_batch_size;
		int			n;
		int			i;

		CHECK_FOR_INTERRUPTS();
		if (max_items >= 0)
			limit = (int) Min((int64) limit, max_items - taken);
		if (limit <= 0)
			break;
		if (max_seconds >= 0 &&
			TimestampDifferenceExceeds(start, GetCurrentTimestamp(),
									   (int) Min(max_seconds * 1000.0, (double) INT_MAX)))
			break;

		MemoryContextReset(chunkcxt);
		oldcxt = MemoryContextSwitchTo(chunkcxt);

		n = pgb_claim_locked(batch_id, GetCurrentTimestamp(), limit, &cursor, &items);
		if (n == 0)
		{
			MemoryContextSwitchTo(oldcxt);
			break;
		}
		for (i = 0; i < n; i++)
		{
			PgbBatchInfo *info = pgb_batch_info(cache, runcxt, items[i].batch_id);
			PgbStage   *stage = pgb_find_stage(info->pipeline, items[i].stage);

			items[i].need_outputs = stage != NULL && stage->position > 0;
		}
		pgb_load_outputs(items, n);

		pgb_record_init(&rec);
		for (i = 0; i < n; i++)
			execute_item(pgb_batch_info(cache, runcxt, items[i].batch_id),
						 &items[i], &rec, &stats);
		pgb_record_flush(&rec, GetCurrentTimestamp());

		MemoryContextSwitchTo(oldcxt);
		taken += n;
	}

	next_due = pgb_next_due(batch_id, &found);
	pgb_release_batch_cache(cache);
	SPI_finish();
	MemoryContextDelete(runcxt);

	values[0] = Int64GetDatum(stats.stages_run);
	values[1] = Int64GetDatum(stats.items_completed);
	values[2] = Int64GetDatum(stats.retries_scheduled);
	values[3] = Int64GetDatum(stats.items_failed);
	values[4] = TimestampTzGetDatum(next_due);
	nulls[4] = !found;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}
