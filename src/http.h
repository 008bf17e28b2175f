/*-------------------------------------------------------------------------
 *
 * http.h
 *		The HTTP transport of a backend (http.c): requests queued until
 *		their endpoint lets them go, sent through libcurl's multi
 *		interface, and handed back once finished.  A request and all it
 *		holds are malloc'd.
 *
 * IDENTIFICATION
 *		src/http.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_HTTP_H
#define PGB_HTTP_H

#include "utils/timestamp.h"

#include "endpoint.h"
#include "pgbatch.h"

typedef enum PgbHttpState
{
	PGB_HTTP_WAITING,			/* for its endpoint's limits */
	PGB_HTTP_IN_FLIGHT,
	PGB_HTTP_DONE,				/* finished, successfully or not */
	PGB_HTTP_RELEASED			/* not sent: endpoint paused */
} PgbHttpState;

typedef struct PgbHttpRequest
{
	/* what it is for */
	int64		item_id;
	int64		batch_id;
	char	   *stage;
	int			stage_position;
	int			attempt;
	int			max_retries;
	double		backoff_factor; /* per-item override, or 0 */
	int			endpoint_index; /* in shared memory */
	PgbRetryPolicy policy;
	char	   *next_stage;		/* NULL if this is the last stage */
	/* the request */
	char	   *url;
	char		method[8];
	char	   *body;
	struct curl_slist *headers;
	int			nsecrets;		/* the first ones are the endpoint's own */
	long		timeout_ms;
	bool		follow_redirects;
	char	   *tls_ca;			/* PEM, or a file path; NULL: the system's */
	char	   *tls_cert;		/* client certificate, PEM, or NULL */
	char	   *tls_key;		/* its key, PEM, or NULL */
	char	   *tls_pin;		/* sha256//... public keys, or NULL */
	char	   *proxy;			/* the endpoint's proxy URL, or NULL */
	char	   *tls_proxy_ca;	/* the CAs of an https proxy, or NULL */
	int64		token_estimate; /* LLM tokens it may use, reserved */
	TimestampTz due;			/* when its item was due: its next stage keeps it */
	void	   *easy;			/* CURL * while in flight */
	/* what came back */
	PgbHttpState state;
	int			result;			/* CURLcode */
	long		status;
	char	   *resp;
	size_t		resp_len;
	size_t		resp_cap;
	bool		too_large;
	double		retry_after_s;	/* < 0: no Retry-After */
	PgbRateHints hints;			/* the provider's rate-limit headers */
	char		errbuf[256];
	char	   *error_code;		/* NULL: success; else points to error_buf */
	char		error_buf[32];
	bool		transient;
	bool		aborted;		/* abandoned at shutdown: does not count */
	bool		reserved;		/* counted in its endpoint's local load */
	int32		endpoint_id;
	PgbCircuitChange circuit_change;	/* what its outcome did to the circuit */
	bool		host_denied;	/* the SSRF guard refused a connection */
	bool		cross_origin;	/* a redirect left the endpoint's origin */
	char		denied_host[256];	/* ... to this host */
	int			denied_port;
	char		origin_host[256];	/* the endpoint's host and port */
	int			origin_port;
	TimestampTz started_at;
	TimestampTz finished_at;
	TimestampTz release_until;	/* PGB_HTTP_RELEASED: when to try again */
	struct PgbHttpRequest *next;
	struct PgbHttpRequest *prev;	/* in flight: the list is doubly linked */
} PgbHttpRequest;

extern void pgb_http_init(void);
extern void pgb_http_shutdown(void);
extern void pgb_http_enqueue(PgbHttpRequest *list);
extern void pgb_http_release_waiting(void);
extern TimestampTz pgb_http_dispatch(void);
extern bool pgb_http_wait(long timeout_ms);
extern void pgb_http_pump(void);
extern bool pgb_http_has_done(void);
extern PgbHttpRequest *pgb_http_take_done(void);
extern void pgb_http_request_free(PgbHttpRequest *req);
extern void pgb_http_free_list(PgbHttpRequest *list);
extern int	pgb_http_busy(void);
extern int	pgb_http_endpoint_load(int endpoint_index);
extern void pgb_http_reserve(PgbHttpRequest *req);
extern int	pgb_http_in_flight(void);

#endif							/* PGB_HTTP_H */
