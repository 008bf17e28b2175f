/*-------------------------------------------------------------------------
 *
 * rate_headers.h
 *		The rate-limit headers of API providers (rate_headers.c).
 *
 * IDENTIFICATION
 *		src/rate_headers.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_RATE_HEADERS_H
#define PGB_RATE_HEADERS_H

#include "endpoint.h"

extern void pgb_rate_hints_reset(PgbRateHints *hints);
extern void pgb_rate_header(PgbRateHints *hints, const char *line, size_t n);

#endif							/* PGB_RATE_HEADERS_H */
