/*-------------------------------------------------------------------------
 *
 * item_exec.c
 *		Executing claimed items: the path every item takes, and the file to
 *		open first.  The background executor (executor_main.c) and
 *		batch.run() (session_run.c) claim a chunk of due items (claim.c)
 *		and hand it here:
 *
 *		1. The chunk's items get the outputs of their earlier stages, in one
 *		   query, and a fresh record of outcomes (outcome.c).
 *		2. Each item runs its current stage: a SQL stage in its own
 *		   subtransaction, as the batch owner (stage_sql.c); while they
 *		   succeed, the SQL stages after it run too, each output added to
 *		   the record.  An HTTP stage is prepared as a request (stage_http.c)
 *		   that goes out once the claim commits, its item held as running
 *		   under a lease; its response is recorded by the same file later.
 *		3. A failed attempt becomes a retry after the stage's backoff or a
 *		   failure (outcome.c), and the item waits for its next claim.
 *		4. The record is flushed: the chunk's states, outputs and attempts,
 *		   one statement each.
 *
 *		A background executor stops starting items once its time slice is
 *		over, so that owners take turns; the items left stay pending.
 *
 * IDENTIFICATION
 *		src/item_exec.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "utils/timestamp.h"

#include "claim.h"
#include "item_exec.h"
#include "outcome.h"
#include "pgbatch.h"
#include "pipeline.h"
#include "stage_http.h"
#include "stage_sql.h"
#include "util.h"

/*
 * execute_item
 *		Runs the claimed item's current stage and, while they succeed, the
 *		SQL stages after it; records every attempt, every output, and the
 *		item's resulting state.  An HTTP stage is handed to the HTTP layer
 *		by a background executor, or, when none serves the database, by
 *		batch.run() itself.
 */
static void
execute_item(PgbExecState *ex, PgbBatchInfo *info, PgbWorkItem *it, PgbRecord *rec)
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

		pgb_outcome_attempt(rec, it->batch_id, it->id, it->stage, attempt, PGB_FAILED,
							"unknown_stage", msg, now, now, NULL);
		pgb_outcome_item(rec, it->id, PGB_FAILED, it->stage, attempt, now, "unknown_stage",
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

		pgb_outcome_attempt(rec, it->batch_id, it->id, stage->name, attempt, PGB_FAILED,
							"interrupted", msg, now, now, NULL);
		pgb_outcome_item(rec, it->id, PGB_FAILED, stage->name, attempt - 1, now,
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
				pgb_http_stage_prepare(&ex->http, rec, info, stage, it, attempt))
				return;

			/*
			 * Not sent now.  An item that got here through the SQL stages of
			 * this claim waits at the HTTP stage; one claimed at it stays as
			 * it was.
			 */
			if (chained)
				pgb_outcome_item(rec, it->id, PGB_PENDING, stage->name, 0,
								 Min(it->next_due, GetCurrentTimestamp()), NULL, NULL, 0);
			return;
		}

		started = GetCurrentTimestamp();
		result = pgb_run_sql_stage(info, stage, it, &output, &error_code, &message);
		finished = GetCurrentTimestamp();
		stats->stages_run++;

		if (result == PGB_STAGE_OK)
		{
			pgb_outcome_attempt(rec, it->batch_id, it->id, stage->name, attempt,
								PGB_COMPLETED, NULL, NULL, started, finished, NULL);
			pgb_outcome_output(rec, it->id, stage->name, output);

			if (stage->position == pipeline->nstages - 1)
			{
				pgb_outcome_item(rec, it->id, PGB_COMPLETED, stage->name, attempt, finished,
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
			pgb_outcome_stage_error(rec, it->batch_id, it->id, stage->name, attempt,
									&policy, result == PGB_STAGE_TRANSIENT, error_code,
									message, started, finished, 0);
		}
		return;
	}
}

/*
 * pgb_exec_init
 *		A fresh executor state whose pipeline cache (and the endpoints its
 *		HTTP stages read) lives in cachecxt.
 */
void
pgb_exec_init(PgbExecState *ex, MemoryContext cachecxt, bool background)
{
	memset(ex, 0, sizeof(PgbExecState));
	ex->cachecxt = cachecxt;
	ex->cache = pgb_batch_cache_create(cachecxt);
	ex->background = background;
	pgb_http_stage_init(&ex->http, cachecxt, background, &ex->stats);
}

/*
 * pgb_exec_done
 *		Releases what the executor's cache holds beyond memory.
 */
void
pgb_exec_done(PgbExecState *ex)
{
	pgb_release_batch_cache(ex->cache);
}

/*
 * pgb_exec_carry
 *		Adds the results of finished HTTP requests to the executor's
 *		carried record, which the next chunk's record takes along (or
 *		pgb_exec_flush_carried writes), so that a transaction that records
 *		results and claims more writes the items' new states in one
 *		statement, not two.  What it records is not in the tables until
 *		then: a claim in between does not see it.
 */
void
pgb_exec_carry(PgbExecState *ex, PgbHttpRequest *results)
{
	if (results == NULL)
		return;
	if (!ex->carrying)
	{
		pgb_outcome_begin(&ex->carried, &ex->stats);
		ex->carrying = true;
	}
	pgb_http_stage_record(&ex->http, &ex->carried, results);
}

/*
 * pgb_exec_flush_carried
 *		Writes the carried record, if there is one.
 */
void
pgb_exec_flush_carried(PgbExecState *ex)
{
	if (!ex->carrying)
		return;
	ex->carrying = false;
	pgb_outcome_flush(&ex->carried, GetCurrentTimestamp());
}

/*
 * pgb_execute_claimed
 *		Executes a chunk of claimed items and records the outcomes: outputs
 *		of earlier stages loaded in one query, every item run (until the
 *		executor's time slice, if it has one, is over), and the chunk's
 *		states, outputs and attempts written in one statement each, with
 *		the executor's carried record if it has one.
 */
void
pgb_execute_claimed(PgbExecState *ex, PgbWorkItem *items, int nitems)
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

	if (ex->carrying)
	{
		/* the results carried come along: one statement for all of them */
		rec = ex->carried;
		ex->carrying = false;
	}
	else
		pgb_outcome_begin(&rec, &ex->stats);
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
	pgb_outcome_flush(&rec, GetCurrentTimestamp());
}
