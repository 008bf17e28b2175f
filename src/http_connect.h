/*-------------------------------------------------------------------------
 *
 * http_connect.h
 *		How a request connects: SSRF guard, proxy, TLS (http_connect.c).
 *
 * IDENTIFICATION
 *		src/http_connect.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_HTTP_CONNECT_H
#define PGB_HTTP_CONNECT_H

#include <curl/curl.h>

#include "http.h"

extern bool pgb_http_url_denied(PgbHttpRequest *req);
extern void pgb_http_connect_setup(CURL *easy, PgbHttpRequest *req);

#endif							/* PGB_HTTP_CONNECT_H */
