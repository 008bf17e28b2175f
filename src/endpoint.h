/*-------------------------------------------------------------------------
 *
 * endpoint.h
 *		Per-endpoint limits shared by all executors of a database
 *		(endpoint.c): concurrency, rate, tokens per minute, what the
 *		provider's rate-limit headers say, Retry-After pause, circuit breaker.
 *
 * IDENTIFICATION
 *		src/endpoint.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_ENDPOINT_H
#define PGB_ENDPOINT_H

#include "utils/timestamp.h"

typedef enum PgbEndpointVerdict
{
	PGB_EP_GO,					/* send now: a slot and a token are taken */
	PGB_EP_WAIT,				/* at its concurrency or rate limit */
	PGB_EP_PAUSED				/* Retry-After or open circuit until *until */
} PgbEndpointVerdict;

typedef enum PgbEndpointResult
{
	PGB_EPR_SUCCESS,
	PGB_EPR_TRANSIENT,
	PGB_EPR_RATE_LIMITED,		/* a 429: transient, and slows the endpoint */
	PGB_EPR_PERMANENT,
	PGB_EPR_NOT_SENT
} PgbEndpointResult;

/*
 * What a provider's rate-limit headers said about its limits after a
 * response (rate_headers.c): how many requests and tokens are left and in
 * how many seconds they are whole again.  -1: not said.
 */
typedef struct PgbRateHints
{
	int64		requests_remaining;
	double		requests_reset_s;
	int64		tokens_remaining;
	double		tokens_reset_s;
} PgbRateHints;

typedef enum PgbCircuitChange
{
	PGB_CIRCUIT_UNCHANGED,
	PGB_CIRCUIT_OPENED,
	PGB_CIRCUIT_CLOSED_AGAIN
} PgbCircuitChange;

extern int	pgb_endpoint_index(Oid dboid, int32 endpoint_id, int max_concurrency,
							   int rate_limit, int burst, int tokens_per_minute);
extern PgbEndpointVerdict pgb_endpoint_acquire(int index, TimestampTz now,
											   int64 token_estimate, TimestampTz *until);
extern PgbCircuitChange pgb_endpoint_release(int index, PgbEndpointResult result,
											 double retry_after_s,
											 const PgbRateHints *hints, TimestampTz now);
extern void pgb_endpoint_tokens_used(int index, int64 estimate, int64 used);
extern void pgb_endpoint_release_all(void);

#endif							/* PGB_ENDPOINT_H */
