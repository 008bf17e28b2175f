/*-------------------------------------------------------------------------
 *
 * pgbatch.h
 *		Shared declarations of the pgbatch extension: GUCs, the in-memory
 *		form of pipelines and claimed items, the executor's outcome buffers,
 *		and the functions each source file offers the others.
 *
 * src/pgbatch.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGBATCH_H
#define PGBATCH_H

#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/hsearch.h"
#include "utils/jsonb.h"
#include "utils/timestamp.h"

/* First key of every advisory lock pgbatch takes ('PGBA'); the second is a batch id. */
#define PGB_LOCK_CLASS		1346847297

/* Custom SQLSTATE a stage raises to ask for a retry (transient). */
#define PGB_ERRCODE_RETRY	MAKE_SQLSTATE('P','B','0','0','1')

/* Item states, as stored in batch.items.status. */
#define PGB_PENDING		"pending"
#define PGB_RUNNING		"running"
#define PGB_COMPLETED	"completed"
#define PGB_FAILED		"failed"
#define PGB_CANCELLED	"cancelled"

/* guc.c */
extern int	pgb_max_payload_size;
extern int	pgb_claim_batch_size;
extern void pgb_define_gucs(void);

/* A stage's retry policy, with intervals in milliseconds. */
typedef struct PgbRetryPolicy
{
	int			max_retries;
	double		backoff_base_ms;
	double		backoff_factor;
	double		backoff_max_ms;
	double		jitter;
} PgbRetryPolicy;

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
	int			timeout_ms;		/* 0 = no timeout */
	PgbRetryPolicy policy;
	struct PgbStageCall *call;	/* prepared call of func, built on first use */
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

/* An item claimed for execution. */
typedef struct PgbWorkItem
{
	int64		id;
	int64		batch_id;
	char	   *stage;
	int			attempt;		/* attempts made before this claim */
	Jsonb	   *payload;
	Jsonb	   *outputs;		/* earlier stages' outputs, or NULL if none */
	bool		need_outputs;	/* set by the executor: load outputs */
	int			max_retries;	/* per-item override, or -1 */
	double		backoff_factor; /* per-item override, or 0 */
} PgbWorkItem;

/* A growable column of Datums, turned into a SQL array for unnest(). */
typedef struct PgbColumn
{
	Oid			elemtype;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			n;
	int			cap;
	Datum	   *values;
	bool	   *nulls;
} PgbColumn;

/* The outcomes of a chunk of work, recorded together in one round trip each. */
typedef struct PgbRecord
{
	/* item state after the chunk */
	PgbColumn	item_id;
	PgbColumn	item_status;
	PgbColumn	item_stage;
	PgbColumn	item_attempt;
	PgbColumn	item_next_due;
	PgbColumn	item_error_code;
	PgbColumn	item_error;
	PgbColumn	item_finished_at;
	/* stage outputs */
	PgbColumn	out_item_id;
	PgbColumn	out_stage;
	PgbColumn	out_output;
	/* attempt history */
	PgbColumn	att_batch_id;
	PgbColumn	att_item_id;
	PgbColumn	att_stage;
	PgbColumn	att_attempt;
	PgbColumn	att_outcome;
	PgbColumn	att_error_code;
	PgbColumn	att_message;
	PgbColumn	att_started_at;
	PgbColumn	att_finished_at;
} PgbRecord;

/* Result of running one stage once. */
typedef enum PgbStageResult
{
	PGB_STAGE_OK,
	PGB_STAGE_TRANSIENT,
	PGB_STAGE_PERMANENT
} PgbStageResult;

/* util.c */
extern void pgb_column_init(PgbColumn *col, Oid elemtype);
extern void pgb_column_add(PgbColumn *col, Datum value, bool isnull);
extern Datum pgb_column_array(PgbColumn *col);
extern SPIPlanPtr pgb_prepare(const char *sql, int nargs, Oid *argtypes);
extern int	pgb_execute(SPIPlanPtr plan, Datum *args, const char *nulls,
						bool read_only, long tcount);
extern Jsonb *pgb_jsonb_constant(const char *literal);
extern Datum pgb_text_datum(const char *s);
extern Jsonb *pgb_jsonb_set_key(Jsonb *obj, const char *key, Jsonb *value);

/* pipeline.c */
extern PgbBatchInfo *pgb_batch_info(HTAB *cache, MemoryContext cachecxt,
									 int64 batch_id);
extern HTAB *pgb_batch_cache_create(MemoryContext mcxt);
extern void pgb_release_batch_cache(HTAB *cache);
extern PgbStage *pgb_find_stage(PgbPipeline *pipeline, const char *name);

/*
 * Where an in-transaction claim scan resumes: the (next_due, id) of the last
 * item claimed.  The rows an executor has already updated in its open
 * transaction stay in the due-items index until it commits, so each claim
 * starts after the previous one instead of walking them again.
 */
typedef struct PgbClaimCursor
{
	TimestampTz next_due;
	int64		id;
} PgbClaimCursor;

/* claim.c */
extern int	pgb_claim_locked(int64 batch_id, TimestampTz now, int limit,
							 PgbClaimCursor *cursor, PgbWorkItem **items);
extern void pgb_load_outputs(PgbWorkItem *items, int nitems);
extern void pgb_record_init(PgbRecord *rec);
extern void pgb_record_flush(PgbRecord *rec, TimestampTz now);
extern TimestampTz pgb_next_due(int64 batch_id, bool *found);

/* stage_sql.c */
extern PgbStageResult pgb_run_sql_stage(PgbBatchInfo *batch, PgbStage *stage,
										PgbWorkItem *item, Jsonb **output,
										char **error_code, char **message);
extern void pgb_release_stage_calls(PgbPipeline *pipeline);
extern const char *pgb_sqlstate_name(int sqlerrcode);
extern bool pgb_sqlstate_is_transient(int sqlerrcode);

/* retry.c */
extern double pgb_backoff_ms(const PgbRetryPolicy *policy, int retry);

#endif							/* PGBATCH_H */
