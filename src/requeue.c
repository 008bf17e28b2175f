/*-------------------------------------------------------------------------
 *
 * requeue.c
 *		Re-queuing failed items (batch.retry_failed and batch.retry_item)
 *		at the stage where they failed, with their earlier stages' outputs
 *		kept; the guards every requeue passes (batch.rerun_stage too) and
 *		the limits of the retry settings.  (The backoff before an automatic
 *		retry is outcome.c's.)
 *
 * IDENTIFICATION
 *		src/requeue.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "pgbatch.h"
#include "security.h"
#include "util.h"

PG_FUNCTION_INFO_V1(pgbatch_requeue);
PG_FUNCTION_INFO_V1(pgbatch_requeue_1_4);
PG_FUNCTION_INFO_V1(pgbatch_requeue_begin);
PG_FUNCTION_INFO_V1(pgbatch_retry_setting_problem);

/* The largest max_retries and backoff_factor a pipeline or a requeue may set. */
#define PGB_MAX_RETRIES_LIMIT	1000
#define PGB_BACKOFF_FACTOR_LIMIT 100.0

static SPIPlanPtr requeue_plan = NULL;
static SPIPlanPtr batch_check_plan = NULL;
static SPIPlanPtr event_plan = NULL;

/*
 * check_batch
 *		Errors out if the batch is cancelled or purged, or if 'stage' is
 *		given and is not a stage of the batch's pipeline.
 */
static void
check_batch(int64 batch_id, text *stage)
{
	Datum		args[2];
	char		nulls[2] = {' ', stage ? ' ' : 'n'};
	bool		isnull;
	bool		cancelled;
	bool		stage_ok;
	bool		purged;

	if (batch_check_plan == NULL)
	{
		Oid			argtypes[2] = {INT8OID, TEXTOID};

		batch_check_plan = pgb_prepare(
									   "SELECT b.cancelled_at IS NOT NULL,"
									   " $2 IS NULL OR EXISTS (SELECT FROM batch.stages s"
									   "  WHERE s.pipeline_id = b.pipeline_id AND s.name = $2),"
									   " b.purged_at IS NOT NULL"
									   " FROM batch.batches b WHERE b.id = $1",
									   2, argtypes);
	}
	args[0] = Int64GetDatum(batch_id);
	args[1] = PointerGetDatum(stage);
	if (pgb_execute(batch_check_plan, args, nulls, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pgbatch: reading batch " INT64_FORMAT " failed", batch_id);
	if (SPI_processed != 1)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("batch " INT64_FORMAT " does not exist", batch_id)));
	cancelled = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										   SPI_tuptable->tupdesc, 1, &isnull));
	stage_ok = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										  SPI_tuptable->tupdesc, 2, &isnull));
	purged = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0],
										SPI_tuptable->tupdesc, 3, &isnull));
	SPI_freetuptable(SPI_tuptable);

	if (purged)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("batch " INT64_FORMAT " was purged", batch_id),
				 errdetail("Its attempt history and stage outputs were removed after pgbatch.retention, so its items cannot run a stage again."),
				 errhint("Submit its items again as a new batch.")));

	if (cancelled)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("batch " INT64_FORMAT " is cancelled", batch_id),
				 errhint("Submit its items again as a new batch.")));
	if (!stage_ok)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("stage \"%s\" is not a stage of the pipeline of batch " INT64_FORMAT,
						text_to_cstring(stage), batch_id)));
}

/*
 * requeue_begin
 *		The guards every requeue of a batch passes, in one place: the role
 *		may act on the batch; with take_lock, no other transaction is
 *		re-queuing it (the transaction-scoped advisory lock (PGB_LOCK_CLASS,
 *		batch id); if another holds it, a NOTICE and false, or with 'wait'
 *		a wait for it, bounded by lock_timeout and statement_timeout); the
 *		batch is neither cancelled nor purged; 'stage', if given, is one of
 *		its pipeline's.  The caller is connected to SPI.
 */
static bool
requeue_begin(Oid role, int64 batch_id, text *stage, bool take_lock, bool wait)
{
	pgb_require_batch(role, batch_id);
	if (take_lock && wait)
		(void) DirectFunctionCall2(pg_advisory_xact_lock_int4,
								   Int32GetDatum(PGB_LOCK_CLASS),
								   Int32GetDatum((int32) batch_id));
	else if (take_lock &&
			 !DatumGetBool(DirectFunctionCall2(pg_try_advisory_xact_lock_int4,
											   Int32GetDatum(PGB_LOCK_CLASS),
											   Int32GetDatum((int32) batch_id))))
	{
		ereport(NOTICE,
				(errmsg("batch " INT64_FORMAT " is being re-queued by another transaction; nothing done",
						batch_id),
				 errdetail("The advisory lock (%d, %d) is held.",
						   PGB_LOCK_CLASS, (int32) batch_id)));
		return false;
	}
	check_batch(batch_id, stage);
	return true;
}

/*
 * pgbatch_requeue_begin
 *		batch_internal.requeue_begin(role, batch_id, stage, wait):
 *		requeue_begin() with the lock, for batch.rerun_stage(); false if
 *		another transaction is re-queuing the batch (unless 'wait').
 */
Datum
pgbatch_requeue_begin(PG_FUNCTION_ARGS)
{
	bool		wait = PG_NARGS() > 3 && !PG_ARGISNULL(3) && PG_GETARG_BOOL(3);
	bool		ok;

	SPI_connect();
	ok = requeue_begin(PG_GETARG_OID(0), PG_GETARG_INT64(1),
					   PG_ARGISNULL(2) ? NULL : PG_GETARG_TEXT_PP(2), true, wait);
	SPI_finish();
	PG_RETURN_BOOL(ok);
}

/*
 * retry_setting_problem
 *		NULL if 'value' is allowed for the retry setting 'key' (max_retries,
 *		backoff_factor, jitter), else what it must be; the one rule for a
 *		pipeline's retry policy and for a requeue's overrides.
 */
static const char *
retry_setting_problem(const char *key, double value)
{
	if (strcmp(key, "max_retries") == 0)
	{
		if (!(value >= 0 && value <= PGB_MAX_RETRIES_LIMIT) || value != floor(value))
			return psprintf("a whole number from 0 to %d", PGB_MAX_RETRIES_LIMIT);
	}
	else if (strcmp(key, "backoff_factor") == 0)
	{
		if (!(value >= 1.0 && value <= PGB_BACKOFF_FACTOR_LIMIT))
			return psprintf("from 1 to %g", PGB_BACKOFF_FACTOR_LIMIT);
	}
	else if (strcmp(key, "jitter") == 0)
	{
		if (!(value >= 0.0 && value <= 1.0))
			return "from 0 to 1";
	}
	else
		elog(ERROR, "pgbatch: unknown retry setting \"%s\"", key);
	return NULL;
}

/*
 * pgbatch_retry_setting_problem
 *		batch_internal.retry_setting_problem(key text, value float8):
 *		retry_setting_problem() for batch_internal.retry_policy().
 */
Datum
pgbatch_retry_setting_problem(PG_FUNCTION_ARGS)
{
	const char *problem = retry_setting_problem(text_to_cstring(PG_GETARG_TEXT_PP(0)),
												PG_GETARG_FLOAT8(1));

	if (problem == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(problem));
}

/*
 * pgbatch_requeue
 *		batch._requeue() of pgbatch 1.0 to 1.3, which ran as its caller:
 *		refused by this library until the database's pgbatch is updated.
 */
Datum
pgbatch_requeue(PG_FUNCTION_ARGS)
{
	pgb_require_update();
	PG_RETURN_NULL();
}

/*
 * pgbatch_requeue_1_4
 *		batch_internal.requeue(role, batch_id, item_id, max_retries,
 *		backoff_factor, error_codes, stage, take_lock, wait), for the role in
 *		effect for the call (see gate.c): moves failed items of a batch (all,
 *		one, or those matching the error codes and stage) back to pending
 *		at the stage where they failed, attempts reset, outputs kept.  Items
 *		that failed validation are re-queued only once their payload is
 *		valid.  With take_lock it first takes the transaction-scoped
 *		advisory lock (PGB_LOCK_CLASS, batch id) and returns 0 with a
 *		NOTICE when another transaction holds it (with 'wait', waits for it).  Returns how many items
 *		were re-queued.  The UPDATE walks the partial index of failed
 *		items, so its cost follows the number of failed items, not the
 *		size of the batch.
 */
Datum
pgbatch_requeue_1_4(PG_FUNCTION_ARGS)
{
	Oid			role = PG_GETARG_OID(0);
	int64		batch_id;
	bool		take_lock = PG_ARGISNULL(7) ? true : PG_GETARG_BOOL(7);
	bool		wait = PG_NARGS() > 8 && !PG_ARGISNULL(8) && PG_GETARG_BOOL(8);
	text	   *stage = PG_ARGISNULL(6) ? NULL : PG_GETARG_TEXT_PP(6);
	TimestampTz now = GetCurrentTimestamp();
	Datum		args[8];
	char		nulls[8];
	uint64		count;
	int			i;
	const char *problem;

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("batch must not be NULL")));
	batch_id = PG_GETARG_INT64(1);

	if (!PG_ARGISNULL(3) &&
		(problem = retry_setting_problem("max_retries", PG_GETARG_INT32(3))) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("max_retries must be %s, not %d", problem, PG_GETARG_INT32(3))));
	if (!PG_ARGISNULL(4) &&
		(problem = retry_setting_problem("backoff_factor", PG_GETARG_FLOAT8(4))) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("backoff_factor must be %s, not %g", problem, PG_GETARG_FLOAT8(4))));

	SPI_connect();
	if (!requeue_begin(role, batch_id, stage, take_lock, wait))
	{
		SPI_finish();
		PG_RETURN_INT64(0);
	}

	if (requeue_plan == NULL)
	{
		Oid			argtypes[8] = {INT8OID, INT8OID, INT4OID, FLOAT8OID,
		TEXTARRAYOID, TEXTOID, TIMESTAMPTZOID, INT4OID};

		requeue_plan = pgb_prepare(
								   "UPDATE batch.items i SET status = 'pending', attempt = 0,"
								   " next_due = $7, error_code = NULL, error_message = NULL,"
								   " finished_at = NULL, updated_at = $7,"
								   " max_retries = coalesce($3, i.max_retries),"
								   " backoff_factor = coalesce($4, i.backoff_factor)"
								   " FROM batch.queue q, batch.batches b"
								   " JOIN batch.pipelines p ON p.id = b.pipeline_id"
								   " WHERE b.id = $1 AND q.batch_id = $1 AND q.status = 'failed'"
								   " AND i.id = q.item_id AND i.status = 'failed'"
								   " AND ($2 IS NULL OR q.item_id = $2)"
								   " AND ($5 IS NULL OR i.error_code = ANY ($5))"
								   " AND ($6 IS NULL OR i.stage = $6)"
								   " AND (i.error_code IS DISTINCT FROM 'invalid_input'"
								   "  OR batch_internal.invalid_reason(i.payload, p.required, $8) IS NULL)",
								   8, argtypes);
	}
	for (i = 0; i < 6; i++)
	{
		args[i] = PG_ARGISNULL(i + 1) ? (Datum) 0 : PG_GETARG_DATUM(i + 1);
		nulls[i] = PG_ARGISNULL(i + 1) ? 'n' : ' ';
	}
	args[6] = TimestampTzGetDatum(now);
	nulls[6] = ' ';
	args[7] = Int32GetDatum(pgb_max_payload_size);
	nulls[7] = ' ';
	if (pgb_execute(requeue_plan, args, nulls, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "pgbatch: re-queuing failed items failed");
	count = SPI_processed;

	/* every retry_failed call is logged; retry_item only when it did something */
	if (!PG_ARGISNULL(2) && count == 0)
	{
		SPI_finish();
		PG_RETURN_INT64(0);
	}

	if (event_plan == NULL)
	{
		Oid			argtypes[8] = {INT8OID, INT8OID, INT8OID, INT4OID, FLOAT8OID,
		TEXTARRAYOID, TEXTOID, OIDOID};

		event_plan = pgb_prepare(
								 "INSERT INTO batch.events (batch_id, item_id, level, event, message, detail, actor)"
								 " VALUES ($1, $2, 'info',"
								 "  CASE WHEN $2 IS NULL THEN 'retry_failed' ELSE 'item_retried' END,"
								 "  CASE WHEN $2 IS NULL THEN format('%s failed items re-queued', $3)"
								 "   ELSE format('item %s re-queued', $2) END,"
								 "  jsonb_strip_nulls(jsonb_build_object('items', $3, 'max_retries', $4,"
								 "   'backoff_factor', $5, 'error_codes', $6, 'stage', $7)),"
								 "  pg_catalog.pg_get_userbyid($8))",
								 8, argtypes);
	}
	args[0] = Int64GetDatum(batch_id);
	nulls[0] = ' ';
	args[1] = PG_ARGISNULL(2) ? (Datum) 0 : PG_GETARG_DATUM(2);
	nulls[1] = PG_ARGISNULL(2) ? 'n' : ' ';
	args[2] = Int64GetDatum((int64) count);
	nulls[2] = ' ';
	for (i = 2; i < 6; i++)
	{
		args[i + 1] = PG_ARGISNULL(i + 1) ? (Datum) 0 : PG_GETARG_DATUM(i + 1);
		nulls[i + 1] = PG_ARGISNULL(i + 1) ? 'n' : ' ';
	}
	args[7] = ObjectIdGetDatum(role);
	nulls[7] = ' ';
	if (pgb_execute(event_plan, args, nulls, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "pgbatch: recording the retry event failed");

	SPI_finish();
	PG_RETURN_INT64((int64) count);
}
