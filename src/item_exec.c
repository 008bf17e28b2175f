/*-------------------------------------------------------------------------
 *
 * item_exec.c
 *		batch.run(): executes due work in the calling session.  It claims
 *		due items a chunk at a time, runs each item's SQL stages in order
 *		(each stage in its own subtransaction, one attempt recorded per
 *		stage), decides retry or failure from the stage's retry policy, and
 *		records the chunk's outcomes together.  It never sleeps through a
 *		backoff: when nothing is due it returns, saying when the next item
 *		is due.
 *
 * src/item_exec.c
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
PG_FUNCTION_INFO_V1(pgbatch_run_1_4);

/*
 * pgb_record_attempt
 *		Adds one attempt of one stage to the history buffer (the HTTP
 *		columns NULL; see worker.c for HTTP attempts).
 */
void
pgb_record_attempt(PgbRecord *rec, int64 batch_id, int64 item_id, const char *stage,
				   int attempt, const char *outcome, const char *error_code,
				   const char *message, TimestampTz started, TimestampTz finished)
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
	pgb_column_add(&rec->att_http_status, (Datum) 0, true);
	pgb_column_add(&rec->att_response_size, (Datum) 0, true);
	pgb_column_add(&rec->att_response_sha256, (Datum) 0, true);
	pgb_column_add(&rec->att_response_body, (Datum) 0, true);
}

/*
 * pgb_record_item
 *		Adds an item's new state to the state buffer.  finished_at is 0 for
 *		items that are still waiting; the item is not held by an executor
 *		(see pgb_prepare_http for items that are).
 */
void
pgb_record_item(PgbRecord *rec, int64 item_id, const char *status, const char *stage,
				int attempt, TimestampTz next_due, const char *error_code,
				const char *message, TimestampTz finished_at)
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
	pgb_column_add(&rec->item_claimed_by, (Datum) 0, true);
	pgb_column_add(&rec->item_lease_until, (Datum) 0, true);
}

/*
 * execute_item
 *		Runs the claimed item's current stage and, while they succeed, the
 *		SQL stages after it; records every attempt, every output, and the
 *		item's resulting state.  An HTTP stage is handed to the HTTP layer
 *		by a background executor, or, when none serves the database, by
 *		batch.run() itself.
 */
static void
execute_item(PgbExecutor *ex, PgbBatchInfo *info, PgbWorkItem *it, PgbRecord *rec)
{
	PgbPipeline *pipeline = info->pipeline;
	PgbStage   *stage = pgb_find_stage(pipeline, it->stage);
	int			attempt = it->attempt + 1;
	PgbRunStats *stats = &ex->stats;

	if (stage == NULL)
	{
		TimestampTz now = GetCurrentTimestamp();
		char	   *msg = psprintf("stage \"%s\" is not a stage of the item's pipeline",
								   it->stage);

		pgb_record_attempt(rec, it->batch_id, it->id, it->stage, attempt, PGB_FAILED,
						   "unknown_stage", msg, now, now);
		pgb_record_item(rec, it->id, PGB_FAILED, it->stage, attempt, now, "unknown_stage",
						msg, now);
		stats->items_failed++;
		return;
	}

	/*
	 * An item taken back from an executor that stopped mid-attempt has had
	 * that attempt counted; past its retries, it fails with the error it has.
	 */
	if (it->error_code != NULL && strcmp(it->error_code, "interrupted") == 0 &&
		attempt > (it->max_retries >= 0 ? it->max_retries : stage->policy.max_retries) + 1)
	{
		TimestampTz now = GetCurrentTimestamp();
		const char *msg = "the executors holding this item stopped during every attempt";

		pgb_record_attempt(rec, it->batch_id, it->id, stage->name, attempt, PGB_FAILED,
						   "interrupted", msg, now, now);
		pgb_record_item(rec, it->id, PGB_FAILED, stage->name, attempt - 1, now,
						"interrupted", msg, now);
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

		if (stage->kind != PGB_STAGE_SQL)
		{
			bool		chained = strcmp(stage->name, it->stage) != 0;

			if ((ex->background || ex->session_http) &&
				pgb_prepare_http(ex, info, stage, it, attempt, rec))
				return;

			/*
			 * Not sent now.  An item that got here through the SQL stages of
			 * this claim waits at the HTTP stage; one claimed at it stays as
			 * it was.
			 */
			if (chained)
				pgb_record_item(rec, it->id, PGB_PENDING, stage->name, 0,
								GetCurrentTimestamp(), NULL, NULL, 0);
			return;
		}

		started = GetCurrentTimestamp();
		result = pgb_run_sql_stage(info, stage, it, &output, &error_code, &message);
		finished = GetCurrentTimestamp();
		stats->stages_run++;

		if (result == PGB_STAGE_OK)
		{
			pgb_record_attempt(rec, it->batch_id, it->id, stage->name, attempt,
							   PGB_COMPLETED, NULL, NULL, started, finished);
			pgb_column_add(&rec->out_item_id, Int64GetDatum(it->id), false);
			pgb_column_add(&rec->out_stage, pgb_text_datum(stage->name), false);
			pgb_column_add(&rec->out_output, JsonbPGetDatum(output), false);

			if (stage->position == pipeline->nstages - 1)
			{
				pgb_record_item(rec, it->id, PGB_COMPLETED, stage->name, attempt, finished,
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

		{
			PgbRetryPolicy policy = stage->policy;

			if (it->max_retries >= 0)
				policy.max_retries = it->max_retries;
			if (it->backoff_factor > 0)
				policy.backoff_factor = it->backoff_factor;
			pgb_record_stage_error(ex, rec, it->batch_id, it->id, stage->name, attempt,
								   &policy, result == PGB_STAGE_TRANSIENT, error_code,
								   message, started, finished, 0);
		}
		return;
	}
}

/*
 * pgb_record_failure
 *		Records what follows from a failed attempt for the item: a retry
 *		after the policy's backoff (and not before not_before, e.g. a
 *		Retry-After) if the error is transient and retries are left, else
 *		failure.  Returns the attempt's outcome, "retry" or "failed".
 */
const char *
pgb_record_failure(PgbExecutor *ex, PgbRecord *rec, int64 item_id, const char *stage,
				   int attempt, const PgbRetryPolicy *policy, bool transient,
				   const char *error_code, const char *message,
				   TimestampTz finished, TimestampTz not_before)
{
	if (transient && attempt <= policy->max_retries)
	{
		double		delay_ms = pgb_backoff_ms(policy, attempt);
		TimestampTz next_due = finished + (TimestampTz) (delay_ms * 1000.0);

		next_due = Max(next_due, not_before);
		pgb_record_item(rec, item_id, PGB_PENDING, stage, attempt,
						next_due, error_code, message, 0);
		if (ex->earliest_due == 0 || next_due < ex->earliest_due)
			ex->earliest_due = next_due;
		ex->stats.retries_scheduled++;
		return "retry";
	}
	pgb_record_item(rec, item_id, PGB_FAILED, stage, attempt, finished,
					error_code, message, finished);
	ex->stats.items_failed++;
	return PGB_FAILED;
}

/*
 * pgb_record_stage_error
 *		Records a failed attempt of a stage and what follows from it.
 */
void
pgb_record_stage_error(PgbExecutor *ex, PgbRecord *rec, int64 batch_id, int64 item_id,
					   const char *stage, int attempt, const PgbRetryPolicy *policy,
					   bool transient, const char *error_code, const char *message,
					   TimestampTz started, TimestampTz finished, TimestampTz not_before)
{
	const char *outcome = pgb_record_failure(ex, rec, item_id, stage, attempt, policy,
											 transient, error_code, message, finished,
											 not_before);

	pgb_record_attempt(rec, batch_id, item_id, stage, attempt, outcome, error_code,
					   message, started, finished);
}

/*
 * pgb_executor_init
 *		A fresh executor state whose pipeline cache lives in cachecxt.
 */
void
pgb_executor_init(PgbExecutor *ex, MemoryContext cachecxt, bool background)
{
	memset(ex, 0, sizeof(PgbExecutor));
	ex->cachecxt = cachecxt;
	ex->cache = pgb_batch_cache_create(cachecxt);
	ex->background = background;
}

/*
 * pgb_executor_done
 *		Releases what the executor's cache holds beyond memory.
 */
void
pgb_executor_done(PgbExecutor *ex)
{
	pgb_release_batch_cache(ex->cache);
}

/*
 * pgb_execute_claimed
 *		Executes a chunk of claimed items and records the outcomes: outputs
 *		of earlier stages loaded in one query, every item run (until the
 *		executor's time slice, if it has one, is over), and the chunk's
 *		states, outputs and attempts written in one statement each.
 */
void
pgb_execute_claimed(PgbExecutor *ex, PgbWorkItem *items, int nitems)
{
	PgbRecord	rec;
	int			i;

	for (i = 0; i < nitems; i++)
	{
		PgbBatchInfo *info = pgb_batch_info(ex->cache, ex->cachecxt, items[i].batch_id);
		PgbStage   *stage = pgb_find_stage(info->pipeline, items[i].stage);

		items[i].need_outputs = stage != NULL && stage->position > 0;
	}
	pgb_load_outputs(items, nitems);

	pgb_record_init(&rec);
	for (i = 0; i < nitems; i++)
	{
		/*
		 * Past the executor's time slice, the items not started stay as they
		 * are: pending, untouched, for the next claim once this commits.
		 */
		if (ex->slice_end > 0 && i > 0 && GetCurrentTimestamp() >= ex->slice_end)
		{
			ex->sliced = true;
			break;
		}
		execute_item(ex, pgb_batch_info(ex->cache, ex->cachecxt, items[i].batch_id),
					 &items[i], &rec);
	}
	pgb_record_flush(&rec, GetCurrentTimestamp());
}

/*
 * pgbatch_run
 *		batch._run() of pgbatch 1.0 to 1.3, which ran as its caller: refused
 *		by this library until the database's pgbatch is updated.
 */
Datum
pgbatch_run(PG_FUNCTION_ARGS)
{
	pgb_require_update();
	PG_RETURN_NULL();
}

/*
 * pgbatch_run_1_4
 *		batch_internal.run_due(role, batch_id, max_items, max_seconds):
 *		batch.run() for 'role', the role in effect for the call (see
 *		gate.c): runs due items of one batch (or of every batch the role
 *		may act on when batch_id is NULL) until none is due, max_items
 *		items have been taken, or max_seconds have passed.  Stage functions
 *		run as each batch's owner.  Returns (stages_run, items_completed,
 *		retries_scheduled, items_failed, next_due).
 */
Datum
pgbatch_run_1_4(PG_FUNCTION_ARGS)
{
	Oid			role = PG_GETARG_OID(0);
	int64		batch_id = PG_ARGISNULL(1) ? 0 : PG_GETARG_INT64(1);
	int64		max_items = PG_ARGISNULL(2) ? -1 : PG_GETARG_INT64(2);
	double		max_seconds = PG_ARGISNULL(3) ? -1 : PG_GETARG_FLOAT8(3);
	TimestampTz start = GetCurrentTimestamp();
	int64		taken = 0;
	MemoryContext runcxt;
	MemoryContext chunkcxt;
	PgbExecutor ex;
	TupleDesc	tupdesc;
	Datum		values[5];
	bool		nulls[5] = {false, false, false, false, false};
	TimestampTz next_due;
	bool		found;
	PgbClaimCursor cursor = {DT_NOBEGIN, 0};
	TimestampTz deadline = 0;
	Oid			actor;

	if (!PG_ARGISNULL(2) && max_items < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_items must not be negative")));
	if (!PG_ARGISNULL(3) && !(max_seconds >= 0))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_seconds must not be negative")));
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pgbatch_run: return type must be a row type");

	runcxt = AllocSetContextCreate(CurrentMemoryContext, "pgbatch run",
								   ALLOCSET_DEFAULT_SIZES);
	chunkcxt = AllocSetContextCreate(runcxt, "pgbatch run chunk",
									 ALLOCSET_DEFAULT_SIZES);
	pgb_executor_init(&ex, runcxt, false);

	/* with no executor serving this database, HTTP stages are ours too */
	ex.session_http = !pgb_executors_serve(MyDatabaseId);
	if (ex.session_http)
	{
		pgb_session_http_begin(runcxt);
		ex.lease_until = TimestampTzPlusMilliseconds(start, (int64) pgb_lease_duration_s * 1000);
	}
	if (max_seconds >= 0)
		deadline = TimestampTzPlusMilliseconds(start, (int64) Min(max_seconds * 1000.0,
																  (double) PG_INT64_MAX / 1000));

	SPI_connect();
	if (batch_id != 0)
		pgb_require_batch(role, batch_id);
	/* over every batch: those the role may act on; an admin's are all */
	actor = pgb_is_admin(role) ? InvalidOid : role;
	for (;;)
	{
		MemoryContext oldcxt;
		PgbWorkItem *items;
		int			limit = pgb_claim_batch_size;
		int			n;

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
		n = pgb_claim_locked(batch_id, actor, GetCurrentTimestamp(), limit, &cursor, &items);
		if (n > 0)
			pgb_execute_claimed(&ex, items, n);
		if (ex.prepared)
			pgb_session_http(&ex, deadline);
		MemoryContextSwitchTo(oldcxt);
		if (n == 0)
			break;
		taken += n;
	}

	next_due = pgb_next_due(batch_id, actor, &found);
	pgb_executor_done(&ex);
	SPI_finish();
	if (ex.session_http)
		pgb_session_http_end();
	MemoryContextDelete(runcxt);

	values[0] = Int64GetDatum(ex.stats.stages_run);
	values[1] = Int64GetDatum(ex.stats.items_completed);
	values[2] = Int64GetDatum(ex.stats.retries_scheduled);
	values[3] = Int64GetDatum(ex.stats.items_failed);
	values[4] = TimestampTzGetDatum(next_due);
	nulls[4] = !found;
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc),
													  values, nulls)));
}
