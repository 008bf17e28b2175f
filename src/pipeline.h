/*-------------------------------------------------------------------------
 *
 * pipeline.h
 *		Pipelines and their stages in memory, one cache entry per batch
 *		(pipeline.c).
 *
 * IDENTIFICATION
 *		src/pipeline.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_PIPELINE_H
#define PGB_PIPELINE_H

#include "utils/hsearch.h"
#include "utils/palloc.h"

#include "pgbatch.h"

typedef enum PgbStageKind
{
	PGB_STAGE_SQL,
	PGB_STAGE_HTTP
} PgbStageKind;

/* One stage of a pipeline, as the executor needs it. */
typedef struct PgbStage
{
	char	   *name;
	int			position;		/* 0-based */
	PgbStageKind kind;
	Oid			func;			/* SQL stage function, or InvalidOid */
	bool		func_trusted;	/* it may run as the batch owner (see
								 * batch_internal.stage_trusted) */
	int			timeout_ms;		/* 0 = no timeout */
	PgbRetryPolicy policy;
	struct PgbStageCall *call;	/* prepared call of func, built on first use
								 * (stage_sql.c) */
	/* HTTP stage: func, if valid, builds the request body */
	int32		endpoint_id;
	char	   *method;
	char	   *path;
	bool		endpoint_allowed;	/* the batch owner may use the endpoint */
} PgbStage;

typedef struct PgbPipeline
{
	int32		id;
	int			nstages;
	PgbStage   *stages;
	MemoryContext mcxt;			/* where the stages and their calls live */
} PgbPipeline;

/* What the executor knows of a batch while it runs its items. */
typedef struct PgbBatchInfo
{
	int64		id;				/* hash key */
	PgbPipeline *pipeline;
	Oid			owner;			/* role stage functions run as */
	char	   *owner_name;
} PgbBatchInfo;

extern HTAB *pgb_batch_cache_create(MemoryContext mcxt);
extern PgbBatchInfo *pgb_batch_info(HTAB *cache, MemoryContext cachecxt,
									 int64 batch_id);
extern void pgb_release_batch_cache(HTAB *cache);
extern PgbStage *pgb_find_stage(PgbPipeline *pipeline, const char *name);

#endif							/* PGB_PIPELINE_H */
