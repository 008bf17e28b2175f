/*-------------------------------------------------------------------------
 *
 * reclaim.c
 *		Taking back running items whose executor is gone or whose lease ran
 *		out.  Executor 0 of each database does it on its own; the
 *		maintenance job (batch.maintenance()) does it through
 *		batch_internal.reclaim() for databases without executors, or with
 *		hung ones.
 *
 * IDENTIFICATION
 *		src/reclaim.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"

#include "reclaim.h"
#include "security.h"
#include "shmem.h"
#include "util.h"

PG_FUNCTION_INFO_V1(pgbatch_reclaim);
PG_FUNCTION_INFO_V1(pgbatch_reclaim_1_4);

static SPIPlanPtr reclaim_plan = NULL;

/*
 * pgb_reclaim
 *		Takes back running items whose executor is gone (its pid is not
 *		among the executors in shared memory, when pgbatch is preloaded) or
 *		whose lease ran out, so that they run again, due when they were
 *		due before (so before the work that came after them); logs an
 *		event per batch, in the name of 'actor'.  Returns how many items
 *		it took back.  The caller is connected to SPI, in a transaction.
 */
int64
pgb_reclaim(Oid actor)
{
	TimestampTz listed_at = GetCurrentTimestamp();
	Datum		args[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};
	int64		total = 0;
	uint64		i;

	if (reclaim_plan == NULL)
	{
		Oid			argtypes[4] = {TIMESTAMPTZOID, INT4ARRAYOID, TIMESTAMPTZOID, OIDOID};

		reclaim_plan = pgb_prepare("WITH r AS ("
								   " UPDATE batch.items i SET status = 'pending', next_due = least(i.next_due, $1),"
								   "  claimed_by = NULL, lease_until = NULL, updated_at = $1,"
								   "  error_code = 'interrupted',"
								   "  error_message = 'the executor running this item stopped or its lease ran out'"
								   " FROM batch.queue q"
								   " WHERE q.item_id = i.id AND q.status = 'running' AND i.status = 'running'"
								   "  AND (i.lease_until < $1"
								   "   OR ($2 IS NOT NULL AND NOT (coalesce(i.claimed_by, 0) = ANY ($2))"
								   "    AND i.updated_at < $3))"
								   " RETURNING i.batch_id)"
								   " INSERT INTO batch.events (batch_id, level, event, message, detail, actor)"
								   " SELECT r.batch_id, 'warning', 'items_reclaimed',"
								   "  format('%s running items taken back from executors that stopped or whose lease ran out', count(*)),"
								   "  jsonb_build_object('items', count(*)), pg_catalog.pg_get_userbyid($4)"
								   " FROM r GROUP BY r.batch_id"
								   " RETURNING (detail ->> 'items')::bigint",
								   4, argtypes);
	}

	/* without shared memory only the leases tell */
	if (pgb_shared)
		args[1] = pgb_live_executor_pids(MyDatabaseId);
	else
		nulls[1] = 'n';
	args[0] = TimestampTzGetDatum(GetCurrentTimestamp());
	args[2] = TimestampTzGetDatum(listed_at);
	args[3] = ObjectIdGetDatum(actor);
	if (pgb_execute_keyed(reclaim_plan, args, nulls, false, 0) != SPI_OK_INSERT_RETURNING)
		elog(ERROR, "pgbatch: taking back orphaned items failed");
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		total += DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
											 SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);
	return total;
}

/*
 * pgbatch_reclaim
 *		batch._reclaim() of pgbatch 1.2 and 1.3: refused by this library
 *		until the database's pgbatch is updated.
 */
Datum
pgbatch_reclaim(PG_FUNCTION_ARGS)
{
	pgb_require_update();
	PG_RETURN_NULL();
}

/*
 * pgbatch_reclaim_1_4
 *		batch_internal.reclaim(role): pgb_reclaim() for the maintenance
 *		job, in the name of the role that runs it; returns how many items
 *		it took back.
 */
Datum
pgbatch_reclaim_1_4(PG_FUNCTION_ARGS)
{
	int64		n;

	SPI_connect();
	n = pgb_reclaim(PG_GETARG_OID(0));
	SPI_finish();
	PG_RETURN_INT64(n);
}
