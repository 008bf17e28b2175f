/*-------------------------------------------------------------------------
 *
 * security.c
 *		Who may see and act on a batch (the tests behind the row-level
 *		security policies), who called a SECURITY DEFINER function, and the
 *		SSRF guard: the pgbatch.allowed_hosts patterns and the check of a
 *		URL against them.
 *
 *		The host check is also called from libcurl callbacks, so everything
 *		it uses is plain C: no palloc, no ereport.
 *
 * IDENTIFICATION
 *		src/security.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <curl/curl.h>

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "commands/dbcommands.h"
#include "utils/builtins.h"
#include "utils/guc.h"

#include "security.h"
#include "util.h"

PG_FUNCTION_INFO_V1(pgbatch_can_see);
PG_FUNCTION_INFO_V1(pgbatch_can_act);
PG_FUNCTION_INFO_V1(pgbatch_caller);
PG_FUNCTION_INFO_V1(pgbatch_caller_can_act);
PG_FUNCTION_INFO_V1(pgbatch_url_check);
PG_FUNCTION_INFO_V1(pgbatch_proxy_check);
PG_FUNCTION_INFO_V1(pgbatch_is_member);
PG_FUNCTION_INFO_V1(pgbatch_role_can_see);
PG_FUNCTION_INFO_V1(pgbatch_role_can_act);
PG_FUNCTION_INFO_V1(pgbatch_role_is_member);
PG_FUNCTION_INFO_V1(pgbatch_header_problem);
PG_FUNCTION_INFO_V1(pgbatch_batch_id);
PG_FUNCTION_INFO_V1(pgbatch_batch_id_by_name);

/* One pattern of pgbatch.allowed_hosts. */
typedef struct PgbHostPattern
{
	char		host[256];		/* lower case; "" with any_host */
	bool		any_host;		/* "*" */
	bool		subdomains;		/* "*.example.com": any name below it */
	int			port;			/* -1: any port */
} PgbHostPattern;

/* The parsed setting: the GUC's "extra", malloc'd by guc.c's rules. */
typedef struct PgbHostList
{
	int			npatterns;		/* 0: any host (the setting is empty) */
	PgbHostPattern patterns[FLEXIBLE_ARRAY_MEMBER];
} PgbHostList;

static PgbHostList *allowed_hosts = NULL;

/*
 * member_of
 *		True if 'user' is a member (directly or not) of the role named
 *		'rolname'; false if there is no such role.  Superusers are members
 *		of every role.
 */
static bool
member_of(Oid user, const char *rolname)
{
	Oid			role = get_role_oid(rolname, true);

	return OidIsValid(role) && is_member_of_role(user, role);
}

/*
 * pgb_may_act
 *		True if 'user' may act on (run, retry, cancel, change) a batch owned
 *		by the role named 'owner': a member of that role, or an admin.
 */
bool
pgb_may_act(Oid user, const char *owner)
{
	return member_of(user, owner) || member_of(user, "pgbatch_admin");
}

/*
 * pgb_is_admin
 *		True if 'user' may act on every batch: a member of pgbatch_admin
 *		(or a superuser).
 */
bool
pgb_is_admin(Oid user)
{
	return member_of(user, "pgbatch_admin");
}

/*
 * pgb_require_update
 *		Refuses an SQL entry point of an older pgbatch version: the library
 *		is newer than the extension's objects in this database.
 */
void
pgb_require_update(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("pgbatch in database \"%s\" is older than its library",
					get_database_name(MyDatabaseId)),
			 errhint("Run ALTER EXTENSION pgbatch UPDATE.")));
}

/*
 * pgb_may_see
 *		True if 'user' sees batches owned by the role named 'owner': a
 *		member of that role, an admin, or a monitor.
 */
bool
pgb_may_see(Oid user, const char *owner)
{
	return pgb_may_act(user, owner) || member_of(user, "pgbatch_monitor");
}

/*
 * pgbatch_can_see
 *		batch._can_see(owner name): true if the current user sees batches
 *		owned by 'owner'.  The SELECT policies of the batch tables rest on
 *		it: a role reading the tables or views directly.
 */
Datum
pgbatch_can_see(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(pgb_may_see(GetUserId(), NameStr(*PG_GETARG_NAME(0))));
}

/*
 * pgbatch_role_can_see
 *		batch_internal.can_see(role regrole, owner name): pgb_may_see for
 *		the role an implementation acts for (see gate.c).
 */
Datum
pgbatch_role_can_see(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(pgb_may_see(PG_GETARG_OID(0), NameStr(*PG_GETARG_NAME(1))));
}

/*
 * pgbatch_role_can_act
 *		batch_internal.can_act(role regrole, owner name): pgb_may_act for
 *		the role an implementation acts for.
 */
Datum
pgbatch_role_can_act(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(pgb_may_act(PG_GETARG_OID(0), NameStr(*PG_GETARG_NAME(1))));
}

/*
 * pgbatch_role_is_member
 *		batch_internal.is_member(role regrole, of name): true if the role
 *		is a member of the role named 'of' (superusers are members of
 *		every role).  Being an admin is not enough: it guards whom a batch
 *		may belong to, and so as whom its stage functions run.
 */
Datum
pgbatch_role_is_member(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(member_of(PG_GETARG_OID(0), NameStr(*PG_GETARG_NAME(1))));
}

/*
 * pgbatch_can_act
 *		batch._can_act(owner name): true if the current user may act on
 *		batches owned by 'owner'.  The INSERT, UPDATE and DELETE policies of
 *		the batch tables rest on it.
 */
Datum
pgbatch_can_act(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(pgb_may_act(GetUserId(), NameStr(*PG_GETARG_NAME(0))));
}

/*
 * pgbatch_is_member
 *		batch._is_member(role name): true if the current user is a member
 *		of the role (superusers are members of every role).  Unlike
 *		batch._can_act(), being an admin is not enough: it guards whom a
 *		batch may belong to, and so as whom its stage functions run.
 */
Datum
pgbatch_is_member(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(member_of(GetUserId(), NameStr(*PG_GETARG_NAME(0))));
}

/*
 * pgbatch_caller
 *		batch._caller() of pgbatch 1.2 and 1.3: the session's current role.
 *		pgbatch 1.4 drops the SQL function (inside a stage or a SECURITY
 *		DEFINER function it is not the role in effect; gate.c is); the
 *		symbol stays for the scripts that create and then drop it.
 */
Datum
pgbatch_caller(PG_FUNCTION_ARGS)
{
	Name		result = (Name) palloc0(NAMEDATALEN);

	namestrcpy(result, GetUserNameFromId(GetOuterUserId(), false));
	PG_RETURN_NAME(result);
}

/*
 * pgbatch_caller_can_act
 *		batch._caller_can_act(owner name) of pgbatch 1.2 and 1.3, dropped
 *		by 1.4 like batch._caller().
 */
Datum
pgbatch_caller_can_act(PG_FUNCTION_ARGS)
{
	PG_RETURN_BOOL(pgb_may_act(GetOuterUserId(), NameStr(*PG_GETARG_NAME(0))));
}

/* ------------------------------------------------------------------------
 * Endpoint headers
 * ------------------------------------------------------------------------ */

/*
 * Headers that pgbatch or libcurl set, or that describe the connection
 * rather than the request: an endpoint may not override them (a Host or a
 * Content-Length of one's own can smuggle a second request onto a shared
 * connection).
 */
static const char *const pgb_reserved_headers[] = {
	"host", "content-length", "transfer-encoding", "connection", "keep-alive",
	"upgrade", "te", "trailer", "proxy-connection", "expect", "idempotency-key",
	NULL
};

/*
 * pgb_header_problem
 *		The rule for an endpoint's header, checked when an endpoint is
 *		created or altered and again when a request is built: NULL if the
 *		header may be sent, else why not (static words for an error
 *		message, never the value).  A name is an HTTP token and not one of
 *		pgb_reserved_headers; a value holds no CR, LF, NUL or other control
 *		character but tab.  Plain C: no palloc, no ereport.
 */
const char *
pgb_header_problem(const char *name, const char *value)
{
	const char *p;
	int			i;

	if (name[0] == '\0')
		return "a header name must not be empty";
	for (p = name; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (!(isalnum(c) || strchr("!#$%&'*+.^_`|~-", c) != NULL))
			return "a header name is a token: letters, digits and !#$%&'*+.^_`|~-";
	}
	for (i = 0; pgb_reserved_headers[i] != NULL; i++)
		if (pg_strcasecmp(name, pgb_reserved_headers[i]) == 0)
			return "pgbatch and libcurl set this header themselves";
	for (p = value; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return "a header value must not hold line breaks or control characters";
	}
	return NULL;
}

/*
 * pgbatch_header_problem
 *		batch_internal.header_problem(name text, value text): the SQL face
 *		of pgb_header_problem; NULL if the header may be sent.
 */
Datum
pgbatch_header_problem(PG_FUNCTION_ARGS)
{
	const char *why = pgb_header_problem(text_to_cstring(PG_GETARG_TEXT_PP(0)),
										 text_to_cstring(PG_GETARG_TEXT_PP(1)));

	if (why == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(why));
}

/* ------------------------------------------------------------------------
 * The SSRF guard
 * ------------------------------------------------------------------------ */

/*
 * parse_pattern
 *		Parses one pattern of pgbatch.allowed_hosts ("*", "host",
 *		"*.domain", "host:port", "[v6addr]:port") into *p.  False, with
 *		*why set, if it is not one.
 */
static bool
parse_pattern(const char *s, size_t len, PgbHostPattern *p, const char **why)
{
	const char *host = s;
	size_t		hostlen = len;
	const char *colon = NULL;
	size_t		i;

	memset(p, 0, sizeof(*p));
	p->port = -1;
	if (len == 1 && s[0] == '*')
	{
		p->any_host = true;
		return true;
	}

	if (s[0] == '[')
	{
		const char *close = memchr(s, ']', len);

		if (close == NULL)
		{
			*why = "an IPv6 address lacks its closing \"]\"";
			return false;
		}
		host = s + 1;
		hostlen = close - host;
		if (close + 1 < s + len)
		{
			if (close[1] != ':')
			{
				*why = "only a port may follow an IPv6 address";
				return false;
			}
			colon = close + 1;
		}
	}
	else
	{
		colon = memchr(s, ':', len);
		if (colon)
			hostlen = colon - s;
	}

	if (colon)
	{
		const char *digits = colon + 1;
		size_t		ndigits = s + len - digits;
		long		port = 0;

		if (ndigits == 0 || ndigits > 5)
		{
			*why = "a port must be a number from 1 to 65535";
			return false;
		}
		for (i = 0; i < ndigits; i++)
		{
			if (!isdigit((unsigned char) digits[i]))
			{
				*why = "a port must be a number from 1 to 65535";
				return false;
			}
			port = port * 10 + (digits[i] - '0');
		}
		if (port < 1 || port > 65535)
		{
			*why = "a port must be a number from 1 to 65535";
			return false;
		}
		p->port = (int) port;
	}

	if (hostlen > 2 && host[0] == '*' && host[1] == '.')
	{
		p->subdomains = true;
		host += 2;
		hostlen -= 2;
	}
	if (hostlen == 0 || hostlen >= sizeof(p->host))
	{
		*why = "a host name must be 1 to 255 characters";
		return false;
	}
	for (i = 0; i < hostlen; i++)
	{
		unsigned char c = (unsigned char) host[i];

		if (!(isalnum(c) || c == '.' || c == '-' || c == '_' || c == ':'))
		{
			*why = "a host holds only letters, digits, \".\", \"-\", \"_\" (and \":\" in an IPv6 address)";
			return false;
		}
		p->host[i] = (char) tolower(c);
	}
	p->host[hostlen] = '\0';
	return true;
}

/*
 * pgb_check_allowed_hosts
 *		GUC check hook of pgbatch.allowed_hosts: parses the comma-separated
 *		patterns into the setting's "extra".
 */
bool
pgb_check_allowed_hosts(char **newval, void **extra, GucSource source)
{
	const char *s = *newval ? *newval : "";
	int			max = 1;
	PgbHostList *list;
	const char *p;

	for (p = s; *p; p++)
		if (*p == ',')
			max++;
	list = (PgbHostList *) malloc(offsetof(PgbHostList, patterns) +
								 max * sizeof(PgbHostPattern));
	if (list == NULL)
		return false;
	list->npatterns = 0;

	p = s;
	while (*p)
	{
		const char *start;
		const char *end;
		const char *why = NULL;

		while (*p == ' ' || *p == '\t')
			p++;
		start = p;
		while (*p && *p != ',')
			p++;
		end = p;
		while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
			end--;
		if (*p == ',')
			p++;
		if (end == start)
			continue;
		if (!parse_pattern(start, end - start, &list->patterns[list->npatterns], &why))
		{
			GUC_check_errmsg("invalid host pattern \"%.*s\": %s", (int) (end - start), start, why);
			GUC_check_errhint("Give a comma-separated list of host, *.domain, host:port or [IPv6]:port patterns, or * for any host.");
			free(list);
			return false;
		}
		list->npatterns++;
	}
	*extra = list;
	return true;
}

/*
 * pgb_assign_allowed_hosts
 *		GUC assign hook of pgbatch.allowed_hosts.
 */
void
pgb_assign_allowed_hosts(const char *newval, void *extra)
{
	allowed_hosts = (PgbHostList *) extra;
}

/*
 * host_matches
 *		True if the lower-case host and port match the pattern.
 */
static bool
host_matches(const PgbHostPattern *p, const char *host, int port)
{
	size_t		hlen;
	size_t		plen;

	if (p->port >= 0 && p->port != port)
		return false;
	if (p->any_host)
		return true;
	if (!p->subdomains)
		return strcmp(p->host, host) == 0;
	hlen = strlen(host);
	plen = strlen(p->host);
	return hlen > plen + 1 &&
		host[hlen - plen - 1] == '.' &&
		strcmp(host + hlen - plen, p->host) == 0;
}

/*
 * The last URL url_parse() parsed, and what it found: an executor sends the
 * same endpoint's URL again and again, and libcurl's parse cost 8,000
 * instructions a request (callgrind).  Plain static memory: url_parse runs
 * in libcurl callbacks too.
 */
static struct
{
	bool		valid;
	bool		proxy;
	bool		ok;
	char		url[1024];
	char		host[256];
	int			port;
}			last_parse;

/*
 * url_parse
 *		Parses a URL for the SSRF guard: true if it is an http or https URL
 *		with a host (for a proxy: http, https, socks5 or socks5h, with a
 *		host and a port), with its lower-case host in hostbuf (at most
 *		hostsize bytes) and its port.  Safe in libcurl callbacks.
 */
static bool
url_parse(const char *url, bool proxy, char *hostbuf, size_t hostsize, int *port)
{
	CURLU	   *u;
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *portstr = NULL;
	bool		ok = false;
	size_t		len;
	size_t		i;

	hostbuf[0] = '\0';
	*port = 0;
	/* every caller's buffer is as large as the remembered host's */
	if (last_parse.valid && last_parse.proxy == proxy &&
		hostsize == sizeof(last_parse.host) && strcmp(last_parse.url, url) == 0)
	{
		strcpy(hostbuf, last_parse.host);
		*port = last_parse.port;
		return last_parse.ok;
	}

	u = curl_url();
	if (u == NULL)
		return false;
	if (curl_url_set(u, CURLUPART_URL, url, proxy ? CURLU_NON_SUPPORT_SCHEME : 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_PORT, &portstr, proxy ? 0 : CURLU_DEFAULT_PORT) != CURLUE_OK)
		goto done;
	if (strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0 &&
		!(proxy && (strcmp(scheme, "socks5") == 0 || strcmp(scheme, "socks5h") == 0)))
		goto done;

	/* lower case, without IPv6 brackets or a trailing dot */
	if (host[0] == '[')
		memmove(host, host + 1, strlen(host));
	len = strlen(host);
	if (len > 0 && (host[len - 1] == ']' || host[len - 1] == '.'))
		host[--len] = '\0';
	if (len == 0 || len >= hostsize)
		goto done;
	for (i = 0; i <= len; i++)
		hostbuf[i] = (char) tolower((unsigned char) host[i]);
	*port = atoi(portstr);
	ok = true;

done:
	curl_free(scheme);
	curl_free(host);
	curl_free(portstr);
	curl_url_cleanup(u);
	last_parse.valid = false;
	if (hostsize == sizeof(last_parse.host) && strlen(url) < sizeof(last_parse.url))
	{
		strcpy(last_parse.url, url);
		strcpy(last_parse.host, hostbuf);
		last_parse.port = *port;
		last_parse.proxy = proxy;
		last_parse.ok = ok;
		last_parse.valid = true;
	}
	return ok;
}

/*
 * url_verdict
 *		Checks a URL against the SSRF guard: it must parse (url_parse), and
 *		its host and port must match a pattern of pgbatch.allowed_hosts
 *		(when it is set).  Writes the lower-case host (at most hostsize
 *		bytes) and the port.  Safe in libcurl callbacks.
 */
static PgbUrlVerdict
url_verdict(const char *url, bool proxy, char *hostbuf, size_t hostsize, int *port)
{
	int			i;

	if (!url_parse(url, proxy, hostbuf, hostsize, port))
		return PGB_URL_INVALID;
	if (allowed_hosts == NULL || allowed_hosts->npatterns == 0)
		return PGB_URL_ALLOWED;
	for (i = 0; i < allowed_hosts->npatterns; i++)
	{
		if (host_matches(&allowed_hosts->patterns[i], hostbuf, *port))
			return PGB_URL_ALLOWED;
	}
	return PGB_URL_DENIED;
}

/*
 * pgb_url_verdict
 *		The SSRF guard's verdict on a URL that HTTP stages call.
 */
PgbUrlVerdict
pgb_url_verdict(const char *url, char *hostbuf, size_t hostsize, int *port)
{
	return url_verdict(url, false, hostbuf, hostsize, port);
}

/*
 * pgb_proxy_verdict
 *		The SSRF guard's verdict on the proxy of an endpoint: the guard
 *		applies to it as to the hosts called through it.
 */
PgbUrlVerdict
pgb_proxy_verdict(const char *url, char *hostbuf, size_t hostsize, int *port)
{
	return url_verdict(url, true, hostbuf, hostsize, port);
}

/*
 * verdict_problem
 *		An SSRF verdict in words for an error message: NULL if allowed.
 */
static text *
verdict_problem(PgbUrlVerdict verdict, const char *host, int port, const char *invalid)
{
	if (verdict == PGB_URL_ALLOWED)
		return NULL;
	if (verdict == PGB_URL_DENIED)
		return cstring_to_text(psprintf("host \"%s\" (port %d) is not in pgbatch.allowed_hosts",
										host, port));
	return cstring_to_text(invalid);
}

/*
 * pgbatch_proxy_check
 *		batch_internal.proxy_check(url text): NULL if endpoints may send
 *		through this proxy, else why not.
 */
Datum
pgbatch_proxy_check(PG_FUNCTION_ARGS)
{
	char	   *url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char		host[256];
	int			port;
	PgbUrlVerdict verdict = pgb_proxy_verdict(url, host, sizeof(host), &port);
	text	   *why = verdict_problem(verdict, host, port,
									  "it is not an http://, https://, socks5:// or socks5h:// URL with a host and a port");

	if (why == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(why);
}

/*
 * pgbatch_url_check
 *		batch_internal.url_check(url text): NULL if HTTP stages may call the
 *		URL, else why not, in words that go into an error message.
 */
Datum
pgbatch_url_check(PG_FUNCTION_ARGS)
{
	char	   *url = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char		host[256];
	int			port;
	PgbUrlVerdict verdict = pgb_url_verdict(url, host, sizeof(host), &port);
	text	   *why = verdict_problem(verdict, host, port,
									  "it is not an http:// or https:// URL with a host");

	if (why == NULL)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(why);
}

/*
 * pgb_require_batch
 *		Errors out unless the batch exists, 'role' sees it, and may act on
 *		it: a batch a role cannot see does not exist for it.  The caller is
 *		connected to SPI.
 */
void
pgb_require_batch(Oid role, int64 batch_id)
{
	static SPIPlanPtr plan = NULL;
	Datum		arg = Int64GetDatum(batch_id);
	char	   *owner;

	if (plan == NULL)
	{
		Oid			argtype = INT8OID;

		plan = pgb_prepare("SELECT b.owner::text FROM batch.batches b WHERE b.id = $1",
						   1, &argtype);
	}
	if (pgb_execute(plan, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pgbatch: reading batch " INT64_FORMAT " failed", batch_id);
	owner = SPI_processed == 1 ?
		SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
	SPI_freetuptable(SPI_tuptable);
	if (owner == NULL || !pgb_may_see(role, owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("batch " INT64_FORMAT " does not exist", batch_id),
				 errhint("See batch.progress for the batches there are.")));
	if (!pgb_may_act(role, owner))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for batch " INT64_FORMAT, batch_id),
				 errdetail("The batch belongs to role \"%s\".", owner),
				 errhint("Only members of the owning role and of pgbatch_admin may act on a batch.")));
}

/*
 * pgbatch_batch_id
 *		batch_internal.batch_id(role, batch bigint): the batch's id if the
 *		role may act on it, by pgb_require_batch()'s rule, else an error.
 */
Datum
pgbatch_batch_id(PG_FUNCTION_ARGS)
{
	int64		batch_id = PG_GETARG_INT64(1);

	SPI_connect();
	pgb_require_batch(PG_GETARG_OID(0), batch_id);
	SPI_finish();
	PG_RETURN_INT64(batch_id);
}

/*
 * pgbatch_batch_id_by_name
 *		batch_internal.batch_id(role, batch text): the same for a batch
 *		named; one the role cannot see does not exist for it.
 */
Datum
pgbatch_batch_id_by_name(PG_FUNCTION_ARGS)
{
	static SPIPlanPtr plan = NULL;
	Oid			role = PG_GETARG_OID(0);
	Datum		arg = PG_GETARG_DATUM(1);
	int64		batch_id = 0;
	char	   *owner = NULL;
	bool		isnull;

	SPI_connect();
	if (plan == NULL)
	{
		Oid			argtype = TEXTOID;

		plan = pgb_prepare("SELECT b.id, b.owner::text FROM batch.batches b WHERE b.name = $1",
						   1, &argtype);
	}
	if (pgb_execute(plan, &arg, NULL, true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pgbatch: reading a batch by name failed");
	if (SPI_processed == 1)
	{
		batch_id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
											   SPI_tuptable->tupdesc, 1, &isnull));
		owner = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	}
	if (owner == NULL || !pgb_may_see(role, owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("batch \"%s\" does not exist", TextDatumGetCString(arg)),
				 errhint("See batch.progress for the batches there are.")));
	pgb_require_batch(role, batch_id);
	SPI_finish();
	PG_RETURN_INT64(batch_id);
}
