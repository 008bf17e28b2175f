/*-------------------------------------------------------------------------
 *
 * claim.c
 *		Claiming due items and loading what they need: the outputs of their
 *		earlier stages, and when the next item is due.  Every statement
 *		here handles a whole chunk (pgbatch.claim_batch_size items) in one
 *		round trip through a saved plan; outcome.c records what became of
 *		them.
 *
 * IDENTIFICATION
 *		src/claim.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "claim.h"
#include "util.h"

static SPIPlanPtr claim_batch_plan = NULL;
static SPIPlanPtr claim_all_plan = NULL;
static SPIPlanPtr outputs_plan = NULL;
static SPIPlanPtr next_due_batch_plan = NULL;
static SPIPlanPtr next_due_all_plan = NULL;

/*
 * The claims and due-time reads below always take a generic plan: a custom
 * plan for a batch submitted since the table was last analyzed estimates one
 * row for it, and may then read the whole batch and sort it for every chunk
 * of 100 (375 ms a claim, seen in bench/churn.sh) instead of walking the
 * partial index of due items.  The generic plan estimates an average batch
 * and walks that index; it is made again whenever the table is analyzed.
 */
#define PGB_PLAN_GENERIC CURSOR_OPT_GENERIC_PLAN

/*
 * The claims walk batch.queue's partial index of due items, in due order,
 * and lock each item found there in a LATERAL subquery.  Run with
 * sequential scans off (pgb_execute_keyed), and with no order of use inside
 * it, that subquery can only reach the item by primary key, however few
 * rows the statistics describe: a join of the two tables planned from
 * statistics taken while they held a few rows read the items whole, or
 * walked their whole primary key, for every queue row (21 s and 108 ms a
 * claim of 100 among 20,000 items, test/t/025_plans.pl).
 * Under FOR UPDATE, an item that changed since the statement's snapshot is
 * checked again in its new version, but the queue row it was found by is
 * not: hence the conditions on the item itself.  An item another session
 * holds is passed over, and the LIMIT counts only the items locked.  'due'
 * is the parameter that holds the claim's time.
 */
#define CLAIM_FROM_QUEUE(due) \
	"SELECT x.id, x.batch_id, x.stage, x.attempt, x.payload, x.max_retries," \
	" x.backoff_factor, q.next_due, x.error_code FROM batch.queue q" \
	" CROSS JOIN LATERAL (SELECT i.id, i.batch_id, i.stage, i.attempt, i.payload," \
	"  i.max_retries, i.backoff_factor, i.error_code FROM batch.items i" \
	"  WHERE i.id = q.item_id AND i.status = 'pending' AND i.next_due <= " due \
	"  FOR UPDATE OF i SKIP LOCKED) x"

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

			claim_batch_plan = pgb_prepare_opts(CLAIM_FROM_QUEUE("$2")
												" WHERE q.batch_id = $1 AND q.status = 'pending'"
												" AND (q.next_due, q.item_id) > ($4, $5)"
												" AND q.next_due <= $2"
												" ORDER BY q.next_due, q.item_id LIMIT $3",
												5, argtypes, PGB_PLAN_GENERIC);
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

			/*
			 * The batches the actor may act on first (no other batch's item
			 * is even locked); then each locks its first due items, and the
			 * merge keeps the earliest.  Those it leaves stay locked by this
			 * transaction until it ends, and the next claim (its cursor
			 * behind them) takes them: they are next in the due order.
			 */
			claim_all_plan = pgb_prepare_opts("SELECT y.* FROM"
											  " (SELECT a.batch_id FROM " PGB_ACTIVE_BATCHES
											  "  WHERE $5 = 0 OR EXISTS (SELECT FROM batch.batches b"
											  "   WHERE b.id = a.batch_id AND batch_internal.can_act($5, b.owner))) p"
											  " CROSS JOIN LATERAL (" CLAIM_FROM_QUEUE("$1")
											  "  WHERE q.batch_id = p.batch_id AND q.status = 'pending'"
											  "  AND (q.next_due, q.item_id) > ($3, $4)"
											  "  AND q.next_due <= $1"
											  "  ORDER BY q.next_due, q.item_id LIMIT $2) y"
											  " ORDER BY y.next_due, y.id LIMIT $2",
											  5, argtypes, PGB_PLAN_GENERIC);
		}
		plan = claim_all_plan;
		args[0] = TimestampTzGetDatum(now);
		args[1] = Int32GetDatum(limit);
		args[2] = TimestampTzGetDatum(cursor->next_due);
		args[3] = Int64GetDatum(cursor->id);
		args[4] = ObjectIdGetDatum(actor);
	}

	ret = pgb_execute_keyed(plan, args, nulls, false, 0);
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
		it->next_due = DatumGetTimestampTz(SPI_getbinval(tup, desc, 8, &isnull));
		cursor->next_due = it->next_due;
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
	ret = pgb_execute_keyed(outputs_plan, args, NULL, false, 0);
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

			next_due_batch_plan = pgb_prepare_opts("SELECT min(next_due) FROM batch.queue"
												   " WHERE batch_id = $1 AND status = 'pending'",
												   1, argtypes, PGB_PLAN_GENERIC);
		}
		plan = next_due_batch_plan;
		args[0] = Int64GetDatum(batch_id);
	}
	else
	{
		if (next_due_all_plan == NULL)
		{
			Oid			argtypes[1] = {OIDOID};

			next_due_all_plan = pgb_prepare_opts("SELECT min(d.next_due) FROM " PGB_ACTIVE_BATCHES
												 " CROSS JOIN LATERAL (SELECT min(q.next_due) AS next_due"
												 "  FROM batch.queue q"
												 "  WHERE q.batch_id = a.batch_id AND q.status = 'pending') d"
												 " WHERE ($1 = 0 OR EXISTS (SELECT FROM batch.batches b"
												 "  WHERE b.id = a.batch_id"
												 "  AND batch_internal.can_act($1, b.owner)))",
												 1, argtypes, PGB_PLAN_GENERIC);
		}
		plan = next_due_all_plan;
		args[0] = ObjectIdGetDatum(actor);
	}
	ret = pgb_execute_keyed(plan, args, nulls, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "pgbatch: reading the next due time failed");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*found = !isnull;
	SPI_freetuptable(SPI_tuptable);
	return isnull ? 0 : DatumGetTimestampTz(d);
}
