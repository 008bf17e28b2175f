/*-------------------------------------------------------------------------
 *
 * http_connect.c
 *		How a request connects: the SSRF guard on every connection it opens
 *		(and, through a proxy, before every request, since a connection to
 *		the proxy serves any target), the endpoint's proxy (never one from
 *		the server's environment), and its TLS settings, with certificate
 *		verification always on.  The callbacks run inside libcurl: they
 *		neither allocate nor raise errors.
 *
 * IDENTIFICATION
 *		src/http_connect.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include <curl/curl.h>

#include "http.h"
#include "http_connect.h"
#include "security.h"

/*
 * target_allowed
 *		Whether the URL being fetched (the endpoint's, or a redirect's
 *		target) may be: inside pgbatch.allowed_hosts, with the endpoint's
 *		proxy too, and, when the endpoint has secret headers, at its own
 *		origin.  Marks the request host_denied or cross_origin if not.
 */
static bool
target_allowed(PgbHttpRequest *req)
{
	char	   *url = NULL;

	if (curl_easy_getinfo((CURL *) req->easy, CURLINFO_EFFECTIVE_URL, &url) != CURLE_OK ||
		url == NULL ||
		pgb_url_verdict(url, req->denied_host, sizeof(req->denied_host),
						&req->denied_port) != PGB_URL_ALLOWED)
	{
		req->host_denied = true;
		return false;
	}

	/*
	 * The endpoint's headers are secrets, and libcurl would send them along
	 * a redirect to any host: they go to the endpoint's own origin only.
	 */
	if (req->nsecrets > 0 &&
		(strcmp(req->denied_host, req->origin_host) != 0 ||
		 req->denied_port != req->origin_port))
	{
		req->cross_origin = true;
		return false;
	}
	if (req->proxy &&
		pgb_proxy_verdict(req->proxy, req->denied_host, sizeof(req->denied_host),
						  &req->denied_port) != PGB_URL_ALLOWED)
	{
		req->host_denied = true;
		return false;
	}
	return true;
}

/*
 * opensocket_callback
 *		Opens the socket of a connection, unless the URL being fetched is
 *		not allowed (target_allowed): then no connection is made and the
 *		transfer fails with host_not_allowed.
 */
static curl_socket_t
opensocket_callback(void *clientp, curlsocktype purpose, struct curl_sockaddr *address)
{
	PgbHttpRequest *req = (PgbHttpRequest *) clientp;

	if (!target_allowed(req))
		return CURL_SOCKET_BAD;
	return socket(address->family, address->socktype, address->protocol);
}

/*
 * prereq_callback
 *		Before each request of a transfer through a proxy: a connection to
 *		the proxy serves any target, so a redirect may reuse it without a
 *		new socket; the target is checked again here.
 */
static int
prereq_callback(void *clientp, char *conn_primary_ip, char *conn_local_ip,
				int conn_primary_port, int conn_local_port)
{
	return target_allowed((PgbHttpRequest *) clientp) ?
		CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}

/*
 * set_ca
 *		Certificate authorities to trust instead of the system's, if 'ca' is
 *		not NULL: by the rule of batch_internal.check_tls, PEM text (handed
 *		to libcurl without a copy: it lives as long as the request), else a
 *		file path.
 */
static void
set_ca(CURL *easy, char *ca, CURLoption blob_option, CURLoption file_option)
{
	struct curl_blob blob;

	if (ca == NULL)
		return;
	if (strstr(ca, "-----BEGIN CERTIFICATE-----") != NULL)
	{
		blob.data = ca;
		blob.len = strlen(ca);
		blob.flags = CURL_BLOB_NOCOPY;
		curl_easy_setopt(easy, blob_option, &blob);
	}
	else
		curl_easy_setopt(easy, file_option, ca);
}

/*
 * set_tls
 *		The endpoint's TLS settings on an easy handle: its CA certificates
 *		(PEM text or a file) instead of the system's, a client certificate
 *		and key, pinned public keys, and the CA certificates of an https
 *		proxy.  Verification stays on whatever they are.  The PEM texts are the request's own copies, freed only after
 *		the easy handle (pgb_http_request_free), so libcurl need not copy
 *		them again.
 */
static void
set_tls(CURL *easy, PgbHttpRequest *req)
{
	struct curl_blob blob;

	set_ca(easy, req->tls_ca, CURLOPT_CAINFO_BLOB, CURLOPT_CAINFO);
	if (req->tls_cert && req->tls_key)
	{
		blob.data = req->tls_cert;
		blob.len = strlen(req->tls_cert);
		blob.flags = CURL_BLOB_NOCOPY;
		curl_easy_setopt(easy, CURLOPT_SSLCERT_BLOB, &blob);
		curl_easy_setopt(easy, CURLOPT_SSLCERTTYPE, "PEM");
		blob.data = req->tls_key;
		blob.len = strlen(req->tls_key);
		blob.flags = CURL_BLOB_NOCOPY;
		curl_easy_setopt(easy, CURLOPT_SSLKEY_BLOB, &blob);
		curl_easy_setopt(easy, CURLOPT_SSLKEYTYPE, "PEM");
	}
	if (req->tls_pin)
		curl_easy_setopt(easy, CURLOPT_PINNEDPUBLICKEY, req->tls_pin);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
	set_ca(easy, req->tls_proxy_ca, CURLOPT_PROXY_CAINFO_BLOB, CURLOPT_PROXY_CAINFO);

	/*
	 * libcurl 7.88 let a request through an https proxy use a connection or
	 * a CA store that another endpoint's proxy_ca had verified (TAP 021).
	 * So no cached CA store for https proxies, and a connection verified
	 * with a proxy_ca serves its one request only.
	 */
	if (req->proxy && pg_strncasecmp(req->proxy, "https:", 6) == 0)
		curl_easy_setopt(easy, CURLOPT_CA_CACHE_TIMEOUT, 0L);
	if (req->tls_proxy_ca)
	{
		curl_easy_setopt(easy, CURLOPT_FRESH_CONNECT, 1L);
		curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);
	}
	curl_easy_setopt(easy, CURLOPT_PROXY_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(easy, CURLOPT_PROXY_SSL_VERIFYHOST, 2L);
}

/*
 * pgb_http_url_denied
 *		The SSRF guard on a request about to go out: its URL, whose host
 *		and port become the request's origin (pgb_http_connect_setup), and
 *		its proxy.  True, with the host denied in denied_host, if either is
 *		outside pgbatch.allowed_hosts (or not a URL that may be called).
 */
bool
pgb_http_url_denied(PgbHttpRequest *req)
{
	if (pgb_url_verdict(req->url, req->origin_host, sizeof(req->origin_host),
						&req->origin_port) != PGB_URL_ALLOWED)
	{
		strlcpy(req->denied_host, req->origin_host, sizeof(req->denied_host));
		req->denied_port = req->origin_port;
		return true;
	}
	return req->proxy &&
		pgb_proxy_verdict(req->proxy, req->denied_host, sizeof(req->denied_host),
						  &req->denied_port) != PGB_URL_ALLOWED;
}

/*
 * pgb_http_connect_setup
 *		Sets the SSRF guard, the proxy and TLS of a request on its easy
 *		handle.  The request's origin (origin_host, origin_port) is the
 *		host and port of its URL, as the dispatch's guard found them.
 */
void
pgb_http_connect_setup(CURL *easy, PgbHttpRequest *req)
{
	req->host_denied = false;
	req->cross_origin = false;
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETFUNCTION, opensocket_callback);
	curl_easy_setopt(easy, CURLOPT_OPENSOCKETDATA, req);
	curl_easy_setopt(easy, CURLOPT_PROXY, req->proxy ? req->proxy : "");
	if (req->proxy)
	{
		curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, prereq_callback);
		curl_easy_setopt(easy, CURLOPT_PREREQDATA, req);
	}
	set_tls(easy, req);
}
