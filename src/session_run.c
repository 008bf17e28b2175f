/*-------------------------------------------------------------------------
 *
 * session_run.c
 *		batch.run(): executes due work in the calling session.  It claims
 *		due items a chunk at a time (claim.c) and runs them (item_exec.c):
 *		each item's SQL stages in order, each stage in its own
 *		subtransaction, one attempt recorded per stage, retry or failure
 *		decided by the stage's retry policy, the chunk's outcomes recorded
 *		together.  When no background executor serves the database, it
 *		sends the chunk's HTTP requests itself, waits for them and records
 *		their results in the same transaction.  It never sleeps through a
 *		backoff: when nothing is due it returns, saying when the next item
 *		is due.
 *
 * IDENTIFICATION
 *		src/session_run.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "claim.h"
#include "endpoint.h"
#include "guc.h"
#include "http.h"
#include "item_exec.h"
#include "security.h"
#include "shmem.h"
#include "stage_http.h"

PG_FUNCTION_INFO_V1(pgbatch_run);
PG_FUNCTION_INFO_V1(pgbatch_run_1_4);

/* batch.run() has the HTTP transport set up in this backend */
static bool session_http_ready = false;

/*
 * session_http_begin
 *		Starts batch.run()'s use of the HTTP transport.
 */
static void
session_http_begin(void)
{
	if (!session_http_ready)
	{
		pgb_http_init();
		session_http_ready = true;
	}
}

/*
 * session_http
 *		batch.run()'s HTTP stages, when no executor serves the database:
 *		sends the requests the last chunk prepared (its items are recorded
 *		as running, in this transaction), as the endpoints' limits let them
 *		go, waits for every one that went, and records the results in the
 *		same transaction.  Requests not sent by the deadline go back to
 *		pending without spending an attempt.  On an error (a cancel) the
 *		transfers are abandoned and the error goes on: the transaction's
 *		rollback puts the items back.
 */
static void
session_http(PgbExecState *ex, TimestampTz deadline)
{
	PgbHttpRequest *volatile results = NULL;
	PgbHttpRequest *req;

	pgb_http_enqueue(ex->http.prepared);
	ex->http.prepared = NULL;

	PG_TRY();
	{
		while (pgb_http_busy() > 0)
		{
			TimestampTz now = GetCurrentTimestamp();
			TimestampTz retry_at;
			long		timeout_ms = 1000;

			CHECK_FOR_INTERRUPTS();
			if (deadline > 0 && now >= deadline)
				pgb_http_release_waiting();
			retry_at = pgb_http_dispatch();
			if (retry_at > 0)
				timeout_ms = Min(timeout_ms, Max(0, (long) ((retry_at - now) / 1000)));
			if (pgb_http_wait(timeout_ms))
				ResetLatch(MyLatch);
			while ((req = pgb_http_take_done()) != NULL)
			{
				req->next = results;
				results = req;
			}
		}
		pgb_exec_carry(ex, results);
		pgb_exec_flush_carried(ex);
	}
	PG_CATCH();
	{
		pgb_http_free_list(results);
		pgb_http_shutdown();
		session_http_ready = false;
		pgb_endpoint_release_all();
		PG_RE_THROW();
	}
	PG_END_TRY();
	pgb_http_free_list(results);
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
	PgbExecState ex;
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
	pgb_exec_init(&ex, runcxt, false);

	/* with no executor serving this database, HTTP stages are ours too */
	ex.session_http = !pgb_executors_serve(MyDatabaseId);
	if (ex.session_http)
	{
		session_http_begin();
		ex.http.lease_until = TimestampTzPlusMilliseconds(start, (int64) pgb_lease_duration_s * 1000);
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
		if (ex.http.prepared)
			session_http(&ex, deadline);
		MemoryContextSwitchTo(oldcxt);
		if (n == 0)
			break;
		taken += n;
	}

	next_due = pgb_next_due(batch_id, actor, &found);
	pgb_exec_done(&ex);
	SPI_finish();
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
