/*-------------------------------------------------------------------------
 *
 * http_response.c
 *		What an HTTP response means: its Retry-After, its error code
 *		(http_NNN, timeout, connection, ...) and whether it is worth a
 *		retry, which the transport feeds to the endpoint's circuit breaker;
 *		and its body with the endpoint's secrets masked before anything of
 *		it is stored.  Plain C on malloc'd buffers: no palloc, no ereport.
 *
 * IDENTIFICATION
 *		src/http_response.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "mb/pg_wchar.h"

#include "http.h"
#include "http_response.h"
#include "rate_headers.h"

/*
 * set_error
 *		Sets the error code and class of a finished request.
 */
static void
set_error(PgbHttpRequest *req, const char *code, bool transient)
{
	strlcpy(req->error_buf, code, sizeof(req->error_buf));
	req->error_code = req->error_buf;
	req->transient = transient;
}

/*
 * hex_value
 *		The value of n hex digits at p, or -1 if they are not all hex.
 */
static long
hex_value(const char *p, int n)
{
	long		v = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		char		c = p[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/*
 * secret_at
 *		If the text at p (up to end) spells the secret s (slen bytes of
 *		UTF-8), the bytes it takes there, else 0.  Each character of the
 *		secret may stand as itself, JSON-escaped (\/, \", \\, \uXXXX, a
 *		surrogate pair beyond U+FFFF) or percent-encoded (%XX for each of
 *		its bytes), in any mix: an API that echoes a key in a JSON string or
 *		a URL still shows it.  Plain C: called on malloc'd buffers.
 */
static size_t
secret_at(const char *p, const char *end, const char *s, size_t slen)
{
	const char *q = p;
	size_t		i = 0;

	while (i < slen)
	{
		const unsigned char *c = (const unsigned char *) s + i;
		size_t		clen = (size_t) pg_utf_mblen(c);
		uint32		cp;
		size_t		k;

		/* (a value that is not UTF-8 is matched byte by byte) */
		if (clen > slen - i || !pg_utf8_islegal(c, (int) clen))
			clen = 1;
		cp = clen == 1 ? c[0] : utf8_to_unicode(c);

		/*
		 * JSON-escaped first: in JSON text a backslash always starts an
		 * escape, so a secret's own backslash stands there as \\ or \u005c
		 */
		if (end - q >= 2 && q[0] == '\\')
		{
			if (clen == 1 && (cp == '/' || cp == '"' || cp == '\\') && q[1] == (char) cp)
			{
				q += 2;
				i += clen;
				continue;
			}
			if (q[1] == 'u' && end - q >= 6 && cp < 0x10000 && hex_value(q + 2, 4) == (long) cp)
			{
				q += 6;
				i += clen;
				continue;
			}
			if (q[1] == 'u' && end - q >= 12 && cp >= 0x10000 && q[6] == '\\' && q[7] == 'u' &&
				hex_value(q + 2, 4) == (long) (0xD800 + ((cp - 0x10000) >> 10)) &&
				hex_value(q + 8, 4) == (long) (0xDC00 + ((cp - 0x10000) & 0x3FF)))
			{
				q += 12;
				i += clen;
				continue;
			}
		}
		/* as itself */
		if ((size_t) (end - q) >= clen && memcmp(q, c, clen) == 0)
		{
			q += clen;
			i += clen;
			continue;
		}
		/* percent-encoded, byte by byte */
		for (k = 0; k < clen; k++)
			if (end - q < 3 * (long) (k + 1) || q[3 * k] != '%' ||
				hex_value(q + 3 * k + 1, 2) != (long) c[k])
				break;
		if (k == clen)
		{
			q += 3 * clen;
			i += clen;
			continue;
		}
		return 0;
	}
	return (size_t) (q - p);
}

/*
 * mask_secret
 *		Overwrites with '*' every place in buf that spells the secret, in
 *		any of the forms secret_at knows.
 */
static void
mask_secret(char *buf, size_t len, const char *secret, size_t slen)
{
	char	   *p = buf;
	char	   *end = buf + len;

	while (p < end)
	{
		size_t		n = 0;

		if (*p == secret[0] || *p == '\\' || *p == '%')
			n = secret_at(p, end, secret, slen);
		if (n > 0)
		{
			memset(p, '*', n);
			p += n;
		}
		else
			p++;
	}
}

/*
 * pgb_http_redact
 *		Masks the endpoint's secrets in what came back: every word of
 *		PGB_SECRET_MIN characters or more of the values of the endpoint's
 *		own headers (the first nsecrets of the request's headers; the
 *		scheme of an Authorization header, "Bearer", is no secret) is
 *		overwritten with '*' wherever the response body repeats it, as
 *		itself, JSON-escaped or percent-encoded, so that an API that echoes
 *		its Authorization header puts no key into the attempt history or
 *		the outputs.
 */
void
pgb_http_redact(PgbHttpRequest *req)
{
	struct curl_slist *h = req->headers;
	int			i;

	if (req->resp == NULL || req->resp_len == 0)
		return;
	for (i = 0; h != NULL && i < req->nsecrets; i++, h = h->next)
	{
		const char *v = strchr(h->data, ':');
		bool		auth;
		bool		first = true;

		if (v == NULL)
			continue;
		auth = pg_strncasecmp(h->data, "authorization:", 14) == 0 ||
			pg_strncasecmp(h->data, "proxy-authorization:", 20) == 0;
		v++;
		while (*v)
		{
			size_t		len;

			v += strspn(v, " \t");
			len = strcspn(v, " \t");
			if (len >= PGB_SECRET_MIN && !(auth && first && v[len] != '\0'))
				mask_secret(req->resp, req->resp_len, v, len);
			first = false;
			v += len;
		}
	}
}

/*
 * pgb_http_header_callback
 *		CURLOPT_HEADERFUNCTION: picks the Retry-After header (seconds or an
 *		HTTP date) and the provider's rate-limit headers (rate_headers.c)
 *		out of the response headers.
 */
size_t
pgb_http_header_callback(char *data, size_t size, size_t nitems, void *userp)
{
	PgbHttpRequest *req = (PgbHttpRequest *) userp;
	size_t		n = size * nitems;
	static const char name[] = "retry-after:";
	char		value[128];
	size_t		vlen;
	size_t		i;

	if (n > 5 && strncmp(data, "HTTP/", 5) == 0)
	{
		/* a new response (after a redirect) */
		req->retry_after_s = -1;
		pgb_rate_hints_reset(&req->hints);
	}
	pgb_rate_header(&req->hints, data, n);
	if (n <= sizeof(name) - 1 || pg_strncasecmp(data, name, sizeof(name) - 1) != 0)
		return n;

	i = sizeof(name) - 1;
	while (i < n && (data[i] == ' ' || data[i] == '\t'))
		i++;
	vlen = 0;
	while (i < n && data[i] != '\r' && data[i] != '\n' && vlen < sizeof(value) - 1)
		value[vlen++] = data[i++];
	value[vlen] = '\0';
	if (vlen == 0)
		return n;
	if (strspn(value, "0123456789") == vlen)
		req->retry_after_s = Min(atof(value), 86400.0);
	else
	{
		time_t		when = curl_getdate(value, NULL);

		if (when > 0)
			req->retry_after_s = Max(0.0, Min((double) (when - time(NULL)), 86400.0));
	}
	return n;
}

/*
 * pgb_http_classify
 *		Names the outcome of a finished transfer: error_code NULL for a 2xx
 *		response, otherwise http_NNN, timeout, connection,
 *		response_too_large or transport_error, and whether it is worth a
 *		retry (408, 425, 429, 500, 502, 503, 504, timeouts and refused or
 *		reset connections are).  A transfer abandoned at shutdown is marked
 *		aborted: it did not count.
 */
void
pgb_http_classify(PgbHttpRequest *req)
{
	char		buf[32];

	req->aborted = false;
	if (req->host_denied)
	{
		/* libcurl's own message would only say that it could not connect */
		snprintf(req->errbuf, sizeof(req->errbuf),
				 "host \"%s\" (port %d) is not in pgbatch.allowed_hosts",
				 req->denied_host, req->denied_port);
		set_error(req, "host_not_allowed", false);
		return;
	}
	if (req->cross_origin)
	{
		snprintf(req->errbuf, sizeof(req->errbuf),
				 "a redirect to host \"%s\" (port %d), another origin than the endpoint's, would carry its headers",
				 req->denied_host, req->denied_port);
		set_error(req, "redirect_refused", false);
		return;
	}
	switch (req->result)
	{
		case CURLE_OK:
			if (req->status >= 200 && req->status < 300)
			{
				req->error_code = NULL;
				req->transient = false;
				return;
			}
			snprintf(buf, sizeof(buf), "http_%ld", req->status);
			set_error(req, buf,
					  req->status == 408 || req->status == 425 || req->status == 429 ||
					  req->status == 500 || req->status == 502 || req->status == 503 ||
					  req->status == 504);
			return;
		case CURLE_OPERATION_TIMEDOUT:
			set_error(req, "timeout", true);
			return;
		case CURLE_WRITE_ERROR:
			if (req->too_large)
			{
				set_error(req, "response_too_large", false);
				return;
			}
			break;
		case CURLE_ABORTED_BY_CALLBACK:
			req->aborted = true;
			set_error(req, "aborted", true);
			return;
		case CURLE_COULDNT_CONNECT:
		case CURLE_COULDNT_RESOLVE_HOST:
		case CURLE_COULDNT_RESOLVE_PROXY:
		case CURLE_GOT_NOTHING:
		case CURLE_SEND_ERROR:
		case CURLE_RECV_ERROR:
		case CURLE_PARTIAL_FILE:
		case CURLE_HTTP2:
		case CURLE_HTTP2_STREAM:
			set_error(req, "connection", true);
			return;
		default:
			break;
	}
	set_error(req, "transport_error", false);
}
