/*-------------------------------------------------------------------------
 *
 * counters.c
 *		The statement trigger that keeps batch.counters in step with
 *		batch.items.  It reads the statement's transition tables, sums the
 *		change in items per batch and state, and adds it to this backend's
 *		own shard row, so that concurrent executors never wait on one hot
 *		counter row and batch.progress reads a handful of rows, never the
 *		items themselves.
 *
 * IDENTIFICATION
 *		src/counters.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "miscadmin.h"
#include "storage/backendid.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/tuplestore.h"

#include "events.h"
#include "guc.h"
#include "pgbatch.h"
#include "shmem.h"
#include "util.h"

PG_FUNCTION_INFO_V1(pgbatch_count_items);
PG_FUNCTION_INFO_V1(pgbatch_count_items_1_4);
PG_FUNCTION_INFO_V1(pgbatch_item_bucket);

/* Counter buckets, in the column order of batch.counters. */
enum
{
	BUCKET_PENDING,
	BUCKET_RETRYING,
	BUCKET_RUNNING,
	BUCKET_COMPLETED,
	BUCKET_FAILED,
	BUCKET_CANCELLED,
	NUM_BUCKETS
};

/* Their names, as batch_internal.item_bucket() gives them. */
static const char *const bucket_names[NUM_BUCKETS] = {
	"pending", "retrying", "running", "completed", "failed", "cancelled"
};

typedef struct CountDelta
{
	int64		batch_id;		/* hash key */
	int64		delta[NUM_BUCKETS];
	bool		started;		/* some item of the batch has been run */
} CountDelta;

static SPIPlanPtr upsert_plan = NULL;
static SPIPlanPtr totals_plan = NULL;
static SPIPlanPtr announce_plan = NULL;

/*
 * Batches whose end this executor's last transactions may not have seen:
 * they finished items of a batch whose other waiting items were few enough
 * to be held by the other executors (running HTTP items, or SQL items that
 * another executor's open transaction has claimed: at most a claim each,
 * extra executors counted), which may finish them at the same moment (each
 * then sees the other's items still waiting, and neither announces the
 * end).  Checked after commit (pgb_announce_missed_ends).
 */
#define PGB_MAX_SUSPECT_ENDS 64
static int64 suspect_ends[PGB_MAX_SUSPECT_ENDS];
static TimestampTz suspect_since[PGB_MAX_SUSPECT_ENDS];
static int	n_suspect_ends = 0;

/*
 * bucket_of
 *		The counter bucket of an item state; -1 for an unknown state.
 */
static int
bucket_of(text *status, int attempt)
{
	const char *s = VARDATA_ANY(status);
	int			len = VARSIZE_ANY_EXHDR(status);

#define IS(lit) (len == sizeof(lit) - 1 && memcmp(s, lit, len) == 0)
	if (IS(PGB_PENDING))
		return attempt > 0 ? BUCKET_RETRYING : BUCKET_PENDING;
	if (IS(PGB_RUNNING))
		return BUCKET_RUNNING;
	if (IS(PGB_COMPLETED))
		return BUCKET_COMPLETED;
	if (IS(PGB_FAILED))
		return BUCKET_FAILED;
	if (IS(PGB_CANCELLED))
		return BUCKET_CANCELLED;
#undef IS
	return -1;
}

/*
 * fold_table
 *		Adds sign for every row of a transition table to the deltas of its
 *		batch and bucket.
 */
static void
fold_table(Tuplestorestate *ts, TupleDesc desc, int sign, HTAB *deltas,
		   AttrNumber att_batch, AttrNumber att_status, AttrNumber att_attempt)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);

	tuplestore_rescan(ts);
	while (tuplestore_gettupleslot(ts, true, false, slot))
	{
		bool		isnull;
		int64		batch_id = DatumGetInt64(slot_getattr(slot, att_batch, &isnull));
		text	   *status = DatumGetTextPP(slot_getattr(slot, att_status, &isnull));
		int			attempt = DatumGetInt32(slot_getattr(slot, att_attempt, &isnull));
		int			bucket = bucket_of(status, attempt);
		CountDelta *d;
		bool		found;

		if (bucket < 0)
			continue;
		d = hash_search(deltas, &batch_id, HASH_ENTER, &found);
		if (!found)
		{
			memset(d->delta, 0, sizeof(d->delta));
			d->started = false;
		}
		d->delta[bucket] += sign;
		if (sign > 0 && (bucket == BUCKET_RUNNING || bucket == BUCKET_COMPLETED ||
						 bucket == BUCKET_RETRYING ||
						 (bucket == BUCKET_FAILED && attempt > 0)))
			d->started = true;
	}
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * set_counts
 *		Fills a batch's counts from values in bucket order.
 */
static void
set_counts(PgbBatchCounts *c, const int64 *vals)
{
	c->pending = vals[BUCKET_PENDING];
	c->retrying = vals[BUCKET_RETRYING];
	c->running = vals[BUCKET_RUNNING];
	c->completed = vals[BUCKET_COMPLETED];
	c->failed = vals[BUCKET_FAILED];
	c->cancelled = vals[BUCKET_CANCELLED];
}

/*
 * mark_announced
 *		Notes in batch.batches.announced_at that the end of the batch was
 *		announced.
 */
static void
mark_announced(int64 batch_id, TimestampTz now)
{
	static SPIPlanPtr plan = NULL;
	Datum		args[2];

	if (plan == NULL)
	{
		Oid			argtypes[2] = {INT8OID, TIMESTAMPTZOID};

		plan = pgb_prepare("UPDATE batch.batches SET announced_at = $2 WHERE id = $1",
						   2, argtypes);
	}
	args[0] = Int64GetDatum(batch_id);
	args[1] = TimestampTzGetDatum(now);
	if (pgb_execute(plan, args, NULL, false, 0) != SPI_OK_UPDATE)
		elog(ERROR, "pgbatch: noting the announced end of batch " INT64_FORMAT " failed",
			 batch_id);
}

/*
 * prepare_totals
 *		The statement that reads batches' totals from their counters: id,
 *		cancelled, the six buckets, the first start.  Always a generic plan:
 *		left to choose, the plan cache found the generic plan dearer than a
 *		custom one for a single batch and planned the statement anew on
 *		every change of the items (with a generic plan the executors spent
 *		7 % less CPU per HTTP item).  Whatever the statistics, the plan
 *		reads a handful of counter rows per batch.
 */
static SPIPlanPtr
prepare_totals(void)
{
	if (totals_plan == NULL)
	{
		Oid			argtypes[1] = {INT8ARRAYOID};

		totals_plan = pgb_prepare_opts("SELECT b.id, b.cancelled_at IS NOT NULL,"
								  " coalesce(sum(c.pending), 0)::int8, coalesce(sum(c.retrying), 0)::int8,"
								  " coalesce(sum(c.running), 0)::int8, coalesce(sum(c.completed), 0)::int8,"
								  " coalesce(sum(c.failed), 0)::int8, coalesce(sum(c.cancelled), 0)::int8,"
								  " min(c.started_at)"
								  " FROM batch.batches b LEFT JOIN batch.counters c ON c.batch_id = b.id"
								  " WHERE b.id = ANY ($1)"
								  " GROUP BY b.id, b.cancelled_at",
								  1, argtypes, CURSOR_OPT_GENERIC_PLAN);
	}
	return totals_plan;
}

/*
 * note_suspect_end
 *		Remembers a batch whose end may be hidden (see suspect_ends), with
 *		the time of the first such note.
 */
static void
note_suspect_end(int64 batch_id, TimestampTz now)
{
	int			i;

	for (i = 0; i < n_suspect_ends; i++)
		if (suspect_ends[i] == batch_id)
			return;
	/* more at once: the maintenance job announces what is left */
	if (n_suspect_ends < PGB_MAX_SUSPECT_ENDS)
	{
		suspect_ends[n_suspect_ends] = batch_id;
		suspect_since[n_suspect_ends] = now;
		n_suspect_ends++;
	}
}

/*
 * pgb_missed_ends_pending
 *		Whether pgb_announce_missed_ends() has batches to look at.
 */
bool
pgb_missed_ends_pending(void)
{
	return n_suspect_ends > 0;
}

/*
 * pgb_announce_missed_ends
 *		In a transaction of its own, after the ones that noted them: for
 *		each batch whose end may have been hidden and that has ended, notes
 *		the announcement in announced_at unless one was made since the note
 *		(the UPDATE's row lock and re-check let only one executor do it) and
 *		announces batch_finished.  Whichever of two executors ending a batch
 *		together commits last sees both, so the end is announced once.  A
 *		batch that has not ended costs a read.
 */
void
pgb_announce_missed_ends(void)
{
	int64		ids[PGB_MAX_SUSPECT_ENDS];
	TimestampTz since[PGB_MAX_SUSPECT_ENDS];
	int			n = n_suspect_ends;
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	memcpy(ids, suspect_ends, sizeof(int64) * n);
	memcpy(since, suspect_since, sizeof(TimestampTz) * n);
	n_suspect_ends = 0;
	if (announce_plan == NULL)
	{
		Oid			argtypes[3] = {INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID};

		announce_plan = pgb_prepare("UPDATE batch.batches SET announced_at = $2"
									" WHERE id = $1 AND (announced_at IS NULL OR announced_at < $3)",
									3, argtypes);
	}
	for (i = 0; i < n; i++)
	{
		Datum		id = Int64GetDatum(ids[i]);
		Datum		one;
		Datum		args[3];
		bool		isnull;
		PgbBatchCounts after;
		int64		vals[NUM_BUCKETS];
		bool		cancelled;
		int			k;

		one = PointerGetDatum(construct_array(&id, 1, INT8OID, sizeof(int64),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
		if (pgb_execute(prepare_totals(), &one, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "pgbatch: reading batch totals failed");
		if (SPI_processed != 1)
			continue;			/* gone */
		cancelled = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		for (k = 0; k < NUM_BUCKETS; k++)
			vals[k] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
												  SPI_tuptable->tupdesc, 3 + k, &isnull));
		set_counts(&after, vals);
		if (after.pending + after.retrying + after.running > 0)
			continue;			/* not ended: its last items will say so */

		args[0] = id;
		args[1] = TimestampTzGetDatum(now);
		args[2] = TimestampTzGetDatum(since[i]);
		if (pgb_execute(announce_plan, args, NULL, false, 0) != SPI_OK_UPDATE)
			elog(ERROR, "pgbatch: noting the announced end of batch " INT64_FORMAT " failed",
				 ids[i]);
		if (SPI_processed == 1)
			pgb_batch_finished_event(ids[i], cancelled, &after, now);
	}
}

/*
 * notify_changes
 *		Reads the new totals of the batches the statement changed (its own
 *		changes included) and tells listeners what the changes mean (see
 *		events.c).  Another transaction's uncommitted changes are not seen,
 *		so when two of them finish a batch at once neither may see it end:
 *		an executor notes such a batch and looks again after its commit
 *		(pgb_announce_missed_ends); the maintenance job announces an end
 *		that no one announced still (announced_at).
 */
static void
notify_changes(HTAB *deltas, Datum batch_ids, TimestampTz now, bool mark_ends)
{
	uint64		i;
	int64	   *ended = NULL;
	int			nended = 0;

	if (pgb_execute(prepare_totals(), &batch_ids, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pgbatch: reading batch totals failed");
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		int64		batch_id;
		CountDelta *d;
		PgbBatchCounts after;
		PgbBatchCounts before;
		bool		isnull;
		bool		cancelled;
		Datum		started_at;
		int64		vals[NUM_BUCKETS];
		int			k;

		batch_id = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
		d = hash_search(deltas, &batch_id, HASH_FIND, NULL);
		if (d == NULL)
			continue;
		for (k = 0; k < NUM_BUCKETS; k++)
			vals[k] = DatumGetInt64(SPI_getbinval(tup, desc, 3 + k, &isnull));
		set_counts(&after, vals);
		for (k = 0; k < NUM_BUCKETS; k++)
			vals[k] -= d->delta[k];
		set_counts(&before, vals);
		cancelled = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
		started_at = SPI_getbinval(tup, desc, 9, &isnull);

		if (pgb_batch_events(batch_id, &before, &after, Max(d->delta[BUCKET_FAILED], 0),
							 d->started && !isnull && DatumGetTimestampTz(started_at) == now,
							 cancelled, now))
		{
			if (nended == 0)
				ended = palloc(sizeof(int64) * SPI_processed);
			ended[nended++] = batch_id;
		}
		else if (IsBackgroundWorker && mark_ends &&
				 d->delta[BUCKET_PENDING] + d->delta[BUCKET_RETRYING] + d->delta[BUCKET_RUNNING] < 0 &&
				 after.pending + after.retrying <=
				 (int64) pgb_claim_batch_size * pgb_workers * 2)
			note_suspect_end(batch_id, now);
	}
	SPI_freetuptable(SPI_tuptable);

	/* the ends announced: maintenance need not announce them again */
	for (i = 0; mark_ends && i < (uint64) nended; i++)
		mark_announced(ended[i], now);
}

/*
 * count_items
 *		AFTER ... FOR EACH STATEMENT trigger on batch.items with transition
 *		tables: folds the statement's changes into batch.counters and tells
 *		listeners what they mean; with mark_ends, notes the ends it
 *		announced in batch.batches.announced_at.
 */
static Datum
count_items(FunctionCallInfo fcinfo, bool mark_ends)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	AttrNumber	att_batch,
				att_status,
				att_attempt;
	HASHCTL		ctl;
	HTAB	   *deltas;
	HASH_SEQ_STATUS seq;
	CountDelta *d;
	PgbColumn	cols[NUM_BUCKETS + 2];
	Datum		args[NUM_BUCKETS + 4];
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event))
		elog(ERROR, "pgbatch_count_items: must be fired AFTER ... FOR EACH STATEMENT");

	desc = RelationGetDescr(trigdata->tg_relation);
	att_batch = SPI_fnumber(desc, "batch_id");
	att_status = SPI_fnumber(desc, "status");
	att_attempt = SPI_fnumber(desc, "attempt");
	if (att_batch <= 0 || att_status <= 0 || att_attempt <= 0)
		elog(ERROR, "pgbatch_count_items: batch.items lacks batch_id, status or attempt");

	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(CountDelta);
	ctl.hcxt = CurrentMemoryContext;
	deltas = hash_create("pgbatch count deltas", 16, &ctl,
						 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);

	if (trigdata->tg_oldtable)
		fold_table(trigdata->tg_oldtable, desc, -1, deltas,
				   att_batch, att_status, att_attempt);
	if (trigdata->tg_newtable)
		fold_table(trigdata->tg_newtable, desc, 1, deltas,
				   att_batch, att_status, att_attempt);

	pgb_column_init(&cols[0], INT8OID);
	for (i = 0; i < NUM_BUCKETS; i++)
		pgb_column_init(&cols[i + 1], INT8OID);
	pgb_column_init(&cols[NUM_BUCKETS + 1], BOOLOID);

	hash_seq_init(&seq, deltas);
	while ((d = hash_seq_search(&seq)) != NULL)
	{
		bool		changed = false;

		for (i = 0; i < NUM_BUCKETS; i++)
			changed |= (d->delta[i] != 0);
		if (!changed)
			continue;
		pgb_column_add(&cols[0], Int64GetDatum(d->batch_id), false);
		for (i = 0; i < NUM_BUCKETS; i++)
			pgb_column_add(&cols[i + 1], Int64GetDatum(d->delta[i]), false);
		pgb_column_add(&cols[NUM_BUCKETS + 1], BoolGetDatum(d->started), false);
		/* items became due: the executors should look at commit */
		if (d->delta[BUCKET_PENDING] > 0)
			pgb_wake_on_commit();
	}

	if (cols[0].n == 0)
	{
		hash_destroy(deltas);
		return PointerGetDatum(NULL);
	}

	SPI_connect();
	if (upsert_plan == NULL)
	{
		Oid			argtypes[NUM_BUCKETS + 4] = {
			INT4OID, TIMESTAMPTZOID, INT8ARRAYOID,
			INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID,
			INT8ARRAYOID, INT8ARRAYOID, INT8ARRAYOID, BOOLARRAYOID
		};

		upsert_plan = pgb_prepare(
								  "INSERT INTO batch.counters AS c (batch_id, shard, pending, retrying,"
								  "  running, completed, failed, cancelled, started_at, updated_at)"
								  " SELECT u.b, $1, u.p, u.r, u.ru, u.co, u.f, u.ca,"
								  "  CASE WHEN u.s THEN $2 END, $2"
								  " FROM unnest($3, $4, $5, $6, $7, $8, $9, $10)"
								  "  AS u(b, p, r, ru, co, f, ca, s)"
								  " ORDER BY u.b"
								  " ON CONFLICT (batch_id, shard) DO UPDATE"
								  " SET pending = c.pending + excluded.pending,"
								  "  retrying = c.retrying + excluded.retrying,"
								  "  running = c.running + excluded.running,"
								  "  completed = c.completed + excluded.completed,"
								  "  failed = c.failed + excluded.failed,"
								  "  cancelled = c.cancelled + excluded.cancelled,"
								  "  started_at = coalesce(c.started_at, excluded.started_at),"
								  "  updated_at = excluded.updated_at",
								  NUM_BUCKETS + 4, argtypes);
	}
	args[0] = Int32GetDatum((int32) MyBackendId);
	args[1] = TimestampTzGetDatum(now);
	for (i = 0; i < NUM_BUCKETS + 2; i++)
		args[i + 2] = pgb_column_array(&cols[i]);
	if (pgb_execute(upsert_plan, args, NULL, false, 0) != SPI_OK_INSERT)
		elog(ERROR, "pgbatch: updating batch.counters failed");
	notify_changes(deltas, args[2], now, mark_ends);
	hash_destroy(deltas);
	SPI_finish();

	return PointerGetDatum(NULL);
}

/*
 * pgbatch_count_items_1_4
 *		batch_internal.count_items(): the counting trigger of pgbatch 1.4.
 */
Datum
pgbatch_count_items_1_4(PG_FUNCTION_ARGS)
{
	return count_items(fcinfo, true);
}

/*
 * pgbatch_count_items
 *		batch._count_items() of pgbatch 1.0 to 1.3: counts, so that items
 *		written in the upgrade window stay counted, but notes no announced
 *		end (batch.batches.announced_at is 1.3's); maintenance announces
 *		those after the update.
 */
Datum
pgbatch_count_items(PG_FUNCTION_ARGS)
{
	return count_items(fcinfo, false);
}

/*
 * pgbatch_item_bucket
 *		batch_internal.item_bucket(status text, attempt integer): the counter
 *		bucket of an item state (pending, retrying, running, completed,
 *		failed, cancelled), or NULL for an unknown state: the rule the
 *		trigger counts by, for SQL that counts items itself.
 */
Datum
pgbatch_item_bucket(PG_FUNCTION_ARGS)
{
	int			bucket = bucket_of(PG_GETARG_TEXT_PP(0), PG_GETARG_INT32(1));

	if (bucket < 0)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(bucket_names[bucket]));
}
