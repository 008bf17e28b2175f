/*-------------------------------------------------------------------------
 *
 * claim.c
 *		Item state: claiming due items, loading what they need, and
 *		recording the outcomes of a chunk of work.  Every statement here
 *		handles a whole chunk (pgbatch.claim_batch_size items) in one round
 *		trip through a saved plan; outcomes travel as arrays to unnest().
 *
 * src/claim.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "utils/builtins.h"

#include "pgbatch.h"

static SPIPlanPtr claim_batch_plan = NULL;
static SPIPlanPtr claim_all_plan = NULL;
static SPIPlanPtr outputs_plan = NULL;
static SPIPlanPtr update_plan = NULL;
static SPIPlanPtr output_insert_plan = NULL;
static SPIPlanPtr attempt_insert_plan = NULL;
static SPIPlanPtr next_due_batch_plan = NULL;
static SPIPlanPtr next_due_all_plan = NULL;

#define CLAIM_COLUMNS \
	"SELECT i.id, i.batch_id, i.stage, i.attempt, i.payload," \
	" i.max_retries, i.backoff_factor, i.next_due, i.error_code FROM batch.items i"

/*
 * pgb_claim_locked
 *		Locks up to 'limit' due items (of one batch, or when batch_id is 0
 *		of any batch role 'actor' may act on, or of any batch at all when
 *		actor is InvalidOid) with FOR UPDATE SKIP LOCKED, so that concurrent
 *		executors share the work without waiting for each other, and copies
 *		them into *items (allocated in the current memory context).  The
 *		items stay 'pending' in the table: their outcome is written in the
 *		same transaction, so nobody else can see them in between.  The scan
 *		starts after *cursor, in (next_due, id) order, and moves it on.
 *		Returns how many were claimed.
 */
int
pgb_claim_locked(int64 batch_id, Oid actor, TimestampTz now, int limit,
				 PgbClaimCursor *cursor, PgbWorkItem **items)
{
	Datum		args[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};
	SPIPlanPtr	plan;
	PgbWorkItem *result;
	int			ret;
	uint64		i;

	if (batch_id != 0)
	{
		if (claim_batch_plan == NULL)
		{
			Oid			argtypes[5] = {INT8OID, TIMESTAMPTZOID, INT4OID,
			TIMESTAMPTZOID, INT8OID};

			claim_batch_plan = pgb_prepare(CLAIM_COLUMNS
										   " WHERE i.batch_id = $1 AND i.status = 'pending'"
										   " AND (i.next_due, i.id) > ($4, $5)"
										   " AND i.next_due <= $2"
										   " ORDER BY i.next_due, i.id LIMIT $3"
										   " FOR UPDATE SKIP LOCKED",
										   5, argtypes);
		}
		plan = claim_batch_plan;
		args[0] = Int64GetDatum(batch_id);
		args[1] = TimestampTzGetDatum(now);
		args[2] = Int32GetDatum(limit);
		args[3] = TimestampTzGetDatum(cursor->next_due);
		args[4] = Int64GetDatum(cursor->id);
	}
	else
	{
		if (claim_all_plan == NULL)
		{
			Oid			argtypes[5] = {TIMESTAMPTZOID, INT4OID, TIMESTAMPTZOID, INT8OID,
			OIDOID};

			claim_all_plan = pgb_prepare(CLAIM_COLUMNS
										 " WHERE i.status = 'pending'"
										 " AND (i.next_due, i.id) > ($3, $4)"
										 " AND i.next_due <= $1"
										 " AND ($5 = 0 OR EXISTS (SELECT FROM batch.batches b"
										 "  WHERE b.id = i.batch_id AND batch_internal.can_act($5, b.owner)))"
										 " ORDER BY i.next_due, i.id LIMIT $2"
										 " FOR UPDATE SKIP LOCKED",
										 5, argtypes);
		}
		plan = claim_all_plan;
		args[0] = TimestampTzGetDatum(now);
		args[1] = Int32GetDatum(limit);
		args[2] = TimestampTzGetDatum(cursor->next_due);
		args[3] = Int64GetDatum(cursor->id);
		args[4] = ObjectIdGetDatum(actor);
	}

	ret = pgb_execute(plan, args, nulls, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pgbatch: claiming items failed: %s", SPI_result_code_string(ret));

	result = palloc0(sizeof(PgbWorkItem) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		PgbWorkItem *it = &result[i];
		bool		isnull;
		Datum		d;

		it->id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		it->batch_id = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
		it->stage = SPI_getvalue(tup, desc, 3);
		it->attempt = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		it->payload = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 5, &isnull));
		d = SPI_getbinval(tup, desc, 6, &isnull);
		it->max_retries = isnull ? -1 : DatumGetInt32(d);
		d = SPI_getbinval(tup, desc, 7, &isnull);
		it->backoff_factor = isnull ? 0.0 : DatumGetFloat8(d);
		cursor->next_due = DatumGetTimestampTz(SPI_getbinval(tup, desc, 8, &isnull));
		it->error_code = SPI_getvalue(tup, desc, 9);
		cursor->id = it->id;
	}
	*items = result;
	ret = (int) SPI_processed;
	SPI_freetuptable(SPI_tuptable);
	return ret;
}

/*
 * pgb_load_outputs
 *		Fills in the outputs of earlier stages for the items that the
 *		executor marked need_outputs, with one query for the whole chunk.
 */
void
pgb_load_outputs(PgbWorkItem *items, int nitems)
{
	PgbColumn	ids;
	Datum		args[1];
	int			ret;
	uint64		i;
	int			j;

	pgb_column_init(&ids, INT8OID);
	for (j = 0; j < nitems; j++)
		if (items[j].need_outputs)
			pgb_column_add(&ids, Int64GetDatum(items[j].id), false);
	if (ids.n == 0)
		return;

	if (outputs_plan == NULL)
	{
		Oid			argtypes[1] = {INT8ARRAYOID};

		outputs_plan = pgb_prepare("SELECT o.item_id, jsonb_object_agg(o.stage, o.output)"
								   " FROM batch.outputs o WHERE o.item_id = ANY ($1)"
								   " GROUP BY o.item_id",
								   1, argtypes);
	}
	args[0] = pgb_column_array(&ids);
	ret = pgb_execute(outputs_plan, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pgbatch: loading stage outputs failed: %s",
			 SPI_result_code_string(ret));

	/* a chunk is small (claim_batch_size), so a nested loop is fine */
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;
		int64		id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													 SPI_tuptable->tupdesc, 1, &isnull));

		for (j = 0; j < nitems; j++)
			if (items[j].id == id)
			{
				items[j].outputs = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[i],
																	SPI_tuptable->tupdesc,
																	2, &isnull));
				break;
			}
	}
	SPI_freetuptable(SPI_tuptable);
}

/*
 * pgb_record_init
 *		Empty outcome buffers, in the current memory context.
 */
void
pgb_record_init(PgbRecord *rec)
{
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
 * pgb_record_flush
 *		Writes a chunk's outcomes: the items' new state, the stage outputs,
 *		and the attempt history, one statement each.
 */
void
pgb_record_flush(PgbRecord *rec, TimestampTz now)
{
	Datum		args[13];
	int			ret;

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
											  " SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9,"
											  " $10, $11, $12, $13)",
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
											 " SELECT u.i, u.s, u.o, $4 FROM unnest($1, $2, $3) AS u(i, s, o)"
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

	if (rec->item_id.n > 0)
	{
		if (update_plan == NULL)
		{
			Oid			argtypes[11] = {
				INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID,
				TIMESTAMPTZARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
				TIMESTAMPTZARRAYOID, TIMESTAMPTZOID, INT4ARRAYOID, TIMESTAMPTZARRAYOID
			};

			update_plan = pgb_prepare_opts(
										   "UPDATE batch.items i SET status = u.status, stage = u.stage,"
									  " attempt = u.attempt, next_due = u.next_due,"
									  " error_code = u.error_code, error_message = u.error_message,"
									  " finished_at = u.finished_at, updated_at = $9,"
									  " claimed_by = u.claimed_by, lease_until = u.lease_until"
									  " FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $10, $11)"
									  "  AS u(id, status, stage, attempt, next_due, error_code,"
									  "       error_message, finished_at, claimed_by, lease_until)"
									  " WHERE i.id = u.id",
									  11, argtypes, CURSOR_OPT_CUSTOM_PLAN);
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
		ret = pgb_execute(update_plan, args, NULL, false, 0);
		if (ret != SPI_OK_UPDATE)
			elog(ERROR, "pgbatch: recording item states failed: %s",
				 SPI_result_code_string(ret));
	}
}

/*
 * pgb_next_due
 *		When the next pending item (of one batch, or when batch_id is 0 of
 *		the batches 'actor' may act on, or of any when actor is InvalidOid)
 *		is due; *found is false when none is pending.
 */
TimestampTz
pgb_next_due(int64 batch_id, Oid actor, bool *found)
{
	Datum		args[1];
	char		nulls[1] = {' '};
	SPIPlanPtr	plan;
	bool		isnull;
	Datum		d;
	int			ret;

	if (batch_id != 0)
	{
		if (next_due_batch_plan == NULL)
		{
			Oid			argtypes[1] = {INT8OID};

			next_due_batch_plan = pgb_prepare("SELECT min(next_due) FROM batch.items"
											  " WHERE batch_id = $1 AND status = 'pending'",
											  1, argtypes);
		}
		plan = next_due_batch_plan;
		args[0] = Int64GetDatum(batch_id);
	}
	else
	{
		if (next_due_all_plan == NULL)
		{
			Oid			argtypes[1] = {OIDOID};

			next_due_all_plan = pgb_prepare("SELECT min(i.next_due) FROM batch.items i"
											" WHERE i.status = 'pending'"
											" AND ($1 = 0 OR EXISTS (SELECT FROM batch.batches b"
											"  WHERE b.id = i.batch_id"
											"  AND batch_internal.can_act($1, b.owner)))",
											1, argtypes);
		}
		plan = next_due_all_plan;
		args[0] = ObjectIdGetDatum(actor);
	}
	ret = pgb_execute(plan, args, nulls, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pgbatch: reading the next due time failed");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*found = !isnull;
	SPI_freetuptable(SPI_tuptable);
	return isnull ? 0 : DatumGetTimestampTz(d);
}
