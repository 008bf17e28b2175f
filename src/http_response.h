/*-------------------------------------------------------------------------
 *
 * http_response.h
 *		What a finished transfer means (http_response.c): its error code
 *		and class, and its body with the endpoint's secrets masked.
 *
 * IDENTIFICATION
 *		src/http_response.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_HTTP_RESPONSE_H
#define PGB_HTTP_RESPONSE_H

#include "http.h"

/* the shortest word of a header value that pgb_http_redact masks */
#define PGB_SECRET_MIN	4

extern size_t pgb_http_header_callback(char *data, size_t size, size_t nitems, void *userp);
extern void pgb_http_classify(PgbHttpRequest *req);
extern void pgb_http_redact(PgbHttpRequest *req);

#endif							/* PGB_HTTP_RESPONSE_H */
