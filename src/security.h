/*-------------------------------------------------------------------------
 *
 * security.h
 *		Who may see and act on a batch, the rule for endpoint headers, and
 *		the SSRF guard (security.c).
 *
 * IDENTIFICATION
 *		src/security.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_SECURITY_H
#define PGB_SECURITY_H

#include "utils/guc.h"

typedef enum PgbUrlVerdict
{
	PGB_URL_ALLOWED,
	PGB_URL_DENIED,				/* outside pgbatch.allowed_hosts */
	PGB_URL_INVALID				/* not an http(s) URL with a host */
} PgbUrlVerdict;

extern bool pgb_may_act(Oid user, const char *owner);
extern bool pgb_may_see(Oid user, const char *owner);
extern bool pgb_is_admin(Oid user);
extern void pgb_require_update(void);
extern void pgb_require_batch(Oid role, int64 batch_id);
extern const char *pgb_header_problem(const char *name, const char *value);
extern bool pgb_check_allowed_hosts(char **newval, void **extra, GucSource source);
extern void pgb_assign_allowed_hosts(const char *newval, void *extra);
extern PgbUrlVerdict pgb_url_verdict(const char *url, char *hostbuf, size_t hostsize,
									 int *port);
extern PgbUrlVerdict pgb_proxy_verdict(const char *url, char *hostbuf, size_t hostsize,
									   int *port);

#endif							/* PGB_SECURITY_H */
