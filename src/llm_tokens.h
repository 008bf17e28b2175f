/*-------------------------------------------------------------------------
 *
 * llm_tokens.h
 *		LLM tokens of a request: estimated before it goes, as its response
 *		reports them after (llm_tokens.c).
 *
 * IDENTIFICATION
 *		src/llm_tokens.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_LLM_TOKENS_H
#define PGB_LLM_TOKENS_H

#include "utils/jsonb.h"

extern int64 pgb_estimate_tokens(const char *body);
extern int64 pgb_reported_tokens(Jsonb *response);

#endif							/* PGB_LLM_TOKENS_H */
