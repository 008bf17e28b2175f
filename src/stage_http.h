/*-------------------------------------------------------------------------
 *
 * stage_http.h
 *		The HTTP stage (stage_http.c): building an item's request from its
 *		stage and endpoint, and recording what the response means for it.
 *
 * IDENTIFICATION
 *		src/stage_http.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_STAGE_HTTP_H
#define PGB_STAGE_HTTP_H

#include "claim.h"
#include "http.h"
#include "outcome.h"
#include "pipeline.h"

struct PgbEndpointInfo;

/*
 * The HTTP stage's state in one executor run (a background executor's
 * transaction, or a batch.run() call): the endpoints as read once, and the
 * requests prepared to be sent.
 */
typedef struct PgbHttpStage
{
	MemoryContext cxt;			/* where the endpoints are read into */
	struct PgbEndpointInfo *endpoints;
	int			nendpoints;		/* -1: not read yet */
	bool		defer_busy;		/* leave items whose endpoint this backend
								 * already holds as many requests for as it
								 * takes at once (a background executor) */
	TimestampTz lease_until;	/* for the items it holds */
	PgbHttpRequest *prepared;	/* to send once the claim commits */
	PgbRunStats *stats;
} PgbHttpStage;

extern void pgb_http_stage_init(PgbHttpStage *hs, MemoryContext cxt, bool defer_busy,
								PgbRunStats *stats);
extern bool pgb_http_stage_prepare(PgbHttpStage *hs, PgbRecord *rec, PgbBatchInfo *info,
								   PgbStage *stage, PgbWorkItem *it, int attempt);
extern void pgb_http_stage_record(PgbHttpStage *hs, PgbRecord *rec, PgbHttpRequest *results);

#endif							/* PGB_STAGE_HTTP_H */
