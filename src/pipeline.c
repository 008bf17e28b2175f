/*-------------------------------------------------------------------------
 *
 * pipeline.c
 *		Loads pipelines and their stages into memory for the executor, one
 *		cache entry per batch (its pipeline and the role its stages run as).
 *
 * IDENTIFICATION
 *		src/pipeline.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/memutils.h"

#include "guc.h"
#include "pipeline.h"
#include "stage_sql.h"
#include "util.h"

static SPIPlanPtr load_plan = NULL;

/*
 * pgb_batch_cache_create
 *		A hash table of PgbBatchInfo keyed by batch id, allocated in mcxt.
 */
HTAB *
pgb_batch_cache_create(MemoryContext mcxt)
{
	HASHCTL		ctl;

	ctl.keysize = sizeof(int64);
	ctl.entrysize = sizeof(PgbBatchInfo);
	ctl.hcxt = mcxt;
	return hash_create("pgbatch batch cache", 16, &ctl,
					   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
}

/*
 * double_col
 *		Column 'col' of the current SPI row as a double (0 if NULL).
 */
static double
double_col(HeapTuple tup, TupleDesc desc, int col)
{
	bool		isnull;
	Datum		d = SPI_getbinval(tup, desc, col, &isnull);

	return isnull ? 0.0 : DatumGetFloat8(d);
}

/*
 * pgb_batch_info
 *		The executor's view of a batch: its pipeline's stages and its
 *		owner.  Loaded through SPI on first use and kept in the cache, whose
 *		entries are allocated in cachecxt.
 */
PgbBatchInfo *
pgb_batch_info(HTAB *cache, MemoryContext cachecxt, int64 batch_id)
{
	PgbBatchInfo *info;
	Datum		args[1];
	MemoryContext oldcxt;
	int			ret;
	uint64		i;

	info = hash_search(cache, &batch_id, HASH_FIND, NULL);
	if (info)
		return info;

	if (load_plan == NULL)
	{
		Oid			argtypes[1] = {INT8OID};

		load_plan = pgb_prepare(
								"SELECT b.pipeline_id, b.owner::text, s.position, s.name, s.kind,"
								" s.func::oid,"
								" (extract(epoch FROM s.timeout) * 1000)::float8,"
								" s.max_retries,"
								" (extract(epoch FROM s.backoff_base) * 1000)::float8,"
								" s.backoff_factor,"
								" (extract(epoch FROM s.backoff_max) * 1000)::float8,"
								" s.jitter, s.endpoint_id, s.method, s.path,"
								" s.endpoint_id IS NULL OR coalesce(batch_internal.may_use("
								"  pg_catalog.to_regrole(b.owner), 'endpoint', s.endpoint_id), false),"
								" s.func IS NULL OR coalesce(batch_internal.stage_trusted("
								"  b.owner, s.func, s.func_pin), false)"
								" FROM batch.batches b"
								" JOIN batch.stages s ON s.pipeline_id = b.pipeline_id"
								" WHERE b.id = $1 ORDER BY s.position",
								1, argtypes);
	}

	args[0] = Int64GetDatum(batch_id);
	ret = pgb_execute(load_plan, args, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "pgbatch: loading batch " INT64_FORMAT " failed: %s",
			 batch_id, SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("batch " INT64_FORMAT " does not exist or its pipeline has no stages",
						batch_id)));

	oldcxt = MemoryContextSwitchTo(cachecxt);

	info = hash_search(cache, &batch_id, HASH_ENTER, NULL);
	info->pipeline = palloc0(sizeof(PgbPipeline));
	info->pipeline->nstages = (int) SPI_processed;
	info->pipeline->mcxt = cachecxt;
	info->pipeline->stages = palloc0(sizeof(PgbStage) * SPI_processed);
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		PgbStage   *stage = &info->pipeline->stages[i];
		bool		isnull;
		char	   *kind;

		if (i == 0)
		{
			info->pipeline->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
			info->owner_name = SPI_getvalue(tup, desc, 2);
			info->owner = get_role_oid(info->owner_name, true);
		}
		stage->position = (int) i;
		stage->name = SPI_getvalue(tup, desc, 4);
		kind = SPI_getvalue(tup, desc, 5);
		stage->kind = strcmp(kind, "http") == 0 ? PGB_STAGE_HTTP : PGB_STAGE_SQL;
		stage->func = DatumGetObjectId(SPI_getbinval(tup, desc, 6, &isnull));
		if (isnull)
			stage->func = InvalidOid;
		stage->func_trusted = DatumGetBool(SPI_getbinval(tup, desc, 17, &isnull));
		stage->timeout_ms = (int) Min(double_col(tup, desc, 7), (double) INT_MAX);
		if (stage->timeout_ms == 0)
			stage->timeout_ms = pgb_stage_timeout_ms;
		stage->policy.max_retries = DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull));
		stage->policy.backoff_base_ms = double_col(tup, desc, 9);
		stage->policy.backoff_factor = double_col(tup, desc, 10);
		stage->policy.backoff_max_ms = double_col(tup, desc, 11);
		stage->policy.jitter = double_col(tup, desc, 12);
		if (stage->kind == PGB_STAGE_HTTP)
		{
			stage->endpoint_id = DatumGetInt32(SPI_getbinval(tup, desc, 13, &isnull));
			stage->method = SPI_getvalue(tup, desc, 14);
			stage->path = SPI_getvalue(tup, desc, 15);
			stage->endpoint_allowed = DatumGetBool(SPI_getbinval(tup, desc, 16, &isnull));
		}
	}
	MemoryContextSwitchTo(oldcxt);
	SPI_freetuptable(SPI_tuptable);
	return info;
}

/*
 * pgb_find_stage
 *		The stage of a pipeline with the given name, or NULL.
 */
PgbStage *
pgb_find_stage(PgbPipeline *pipeline, const char *name)
{
	int			i;

	for (i = 0; i < pipeline->nstages; i++)
		if (strcmp(pipeline->stages[i].name, name) == 0)
			return &pipeline->stages[i];
	return NULL;
}

/*
 * pgb_release_batch_cache
 *		Releases what the cached pipelines hold beyond memory (the
 *		expression contexts of prepared stage calls).
 */
void
pgb_release_batch_cache(HTAB *cache)
{
	HASH_SEQ_STATUS seq;
	PgbBatchInfo *info;

	hash_seq_init(&seq, cache);
	while ((info = hash_seq_search(&seq)) != NULL)
		pgb_release_stage_calls(info->pipeline);
}
