/*-------------------------------------------------------------------------
 *
 * stage_sql.h
 *		Running one SQL stage of one item (stage_sql.c).
 *
 * IDENTIFICATION
 *		src/stage_sql.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_STAGE_SQL_H
#define PGB_STAGE_SQL_H

#include "claim.h"
#include "pipeline.h"

/* Result of running one stage once. */
typedef enum PgbStageResult
{
	PGB_STAGE_OK,
	PGB_STAGE_TRANSIENT,
	PGB_STAGE_PERMANENT
} PgbStageResult;

extern PgbStageResult pgb_run_sql_stage(PgbBatchInfo *batch, PgbStage *stage,
										PgbWorkItem *item, Jsonb **output,
										char **error_code, char **message);
extern void pgb_release_stage_calls(PgbPipeline *pipeline);
extern const char *pgb_sqlstate_name(int sqlerrcode);
extern bool pgb_sqlstate_is_transient(int sqlerrcode);

#endif							/* PGB_STAGE_SQL_H */
