/*-------------------------------------------------------------------------
 *
 * item_exec.h
 *		Executing claimed items (item_exec.c), for the background executor
 *		(executor_main.c) and batch.run() (session_run.c) alike.
 *
 * IDENTIFICATION
 *		src/item_exec.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_ITEM_EXEC_H
#define PGB_ITEM_EXEC_H

#include "utils/hsearch.h"

#include "claim.h"
#include "outcome.h"
#include "stage_http.h"

/*
 * An executor's state for one run: a background executor's transaction, or
 * a batch.run() call.  Everything the two share lives here, passed
 * explicitly.
 */
typedef struct PgbExecState
{
	HTAB	   *cache;			/* batch id -> PgbBatchInfo */
	MemoryContext cachecxt;
	bool		background;		/* a background executor: prepares HTTP stages */
	bool		session_http;	/* batch.run() with no executors: sends them
								 * itself, in its transaction */
	PgbHttpStage http;			/* endpoints read, requests prepared */
	TimestampTz slice_end;		/* stop starting items after this, or 0 */
	bool		sliced;			/* items were left for the next claim */
	PgbRunStats stats;
	PgbRecord	carried;		/* results not flushed yet (pgb_exec_carry) */
	bool		carrying;
} PgbExecState;

extern void pgb_exec_init(PgbExecState *ex, MemoryContext cachecxt, bool background);
extern void pgb_exec_done(PgbExecState *ex);
extern void pgb_execute_claimed(PgbExecState *ex, PgbWorkItem *items, int nitems);
extern void pgb_exec_carry(PgbExecState *ex, PgbHttpRequest *results);
extern void pgb_exec_flush_carried(PgbExecState *ex);

#endif							/* PGB_ITEM_EXEC_H */
