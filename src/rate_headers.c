/*-------------------------------------------------------------------------
 *
 * rate_headers.c
 *		Reads the rate-limit headers that API providers send with their
 *		answers, so that an endpoint slows down before the limit instead of
 *		after a 429: how many requests and tokens are left, and in how many
 *		seconds they are whole again.  Understood:
 *
 *		- OpenAI and those who copy it: x-ratelimit-remaining-requests,
 *		  x-ratelimit-reset-requests, x-ratelimit-remaining-tokens,
 *		  x-ratelimit-reset-tokens (durations such as "1s", "6m0s", "20ms");
 *		- Anthropic: anthropic-ratelimit-requests-remaining and -reset,
 *		  anthropic-ratelimit-tokens-remaining and -reset (RFC 3339 times);
 *		- the IETF draft "RateLimit header fields for HTTP": RateLimit with
 *		  r= and t= per policy (drafts 08 on; the most restrictive policy
 *		  counts), RateLimit with remaining= and reset= (draft 07), and the
 *		  separate RateLimit-Remaining and RateLimit-Reset (drafts 01-06);
 *		- x-ratelimit-remaining and x-ratelimit-reset (seconds, or a Unix
 *		  time), as GitHub and many others send them.
 *
 *		Called from libcurl's header callback: nothing here allocates or
 *		raises an error.
 *
 * IDENTIFICATION
 *		src/rate_headers.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <math.h>
#include <time.h>

#include "rate_headers.h"

/* a reset further off than this is not believed */
#define PGB_HINT_MAX_S	86400.0

/*
 * pgb_rate_hints_reset
 *		No hint known.
 */
void
pgb_rate_hints_reset(PgbRateHints *hints)
{
	hints->requests_remaining = -1;
	hints->requests_reset_s = -1;
	hints->tokens_remaining = -1;
	hints->tokens_reset_s = -1;
}

/*
 * parse_count
 *		A non-negative integer, or -1.
 */
static int64
parse_count(const char *s)
{
	char	   *end;
	double		v;

	while (*s == ' ' || *s == '\t')
		s++;
	if (!isdigit((unsigned char) *s))
		return -1;
	v = strtod(s, &end);
	if (end == s || !(v >= 0) || v > 1e15)
		return -1;
	return (int64) v;
}

/*
 * parse_duration
 *		Seconds of a duration in the form OpenAI sends ("1s", "6m0s",
 *		"20ms", "1h2m3.5s"); a bare number is seconds.  -1 if it is not one.
 */
static double
parse_duration(const char *s)
{
	double		total = 0;
	bool		any = false;

	while (*s == ' ' || *s == '\t')
		s++;
	while (*s && *s != ' ' && *s != '\t')
	{
		char	   *end;
		double		v;

		if (!isdigit((unsigned char) *s) && *s != '.')
			return -1;
		v = strtod(s, &end);
		if (end == s || !(v >= 0))
			return -1;
		s = end;
		if (s[0] == 'm' && s[1] == 's')
		{
			v /= 1000.0;
			s += 2;
		}
		else if (s[0] == 'u' && s[1] == 's')
		{
			v /= 1e6;
			s += 2;
		}
		else if (s[0] == 'n' && s[1] == 's')
		{
			v /= 1e9;
			s += 2;
		}
		else if (*s == 'h')
		{
			v *= 3600.0;
			s++;
		}
		else if (*s == 'm')
		{
			v *= 60.0;
			s++;
		}
		else if (*s == 's')
			s++;
		else if (*s != '\0' && *s != ' ' && *s != '\t')
			return -1;
		total += v;
		any = true;
	}
	return any ? Min(total, PGB_HINT_MAX_S) : -1;
}

/*
 * parse_rfc3339
 *		Seconds from now until an RFC 3339 time ("2026-12-05T10:00:30Z",
 *		with fractions and offsets), at least 0; -1 if it is not one.
 */
static double
parse_rfc3339(const char *s)
{
	struct tm	tm;
	int			consumed = 0;
	double		frac = 0;
	time_t		when;
	struct timespec now;
	int			offset = 0;

	memset(&tm, 0, sizeof(tm));
	while (*s == ' ' || *s == '\t')
		s++;
	if (sscanf(s, "%4d-%2d-%2d%*1[Tt ]%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
			   &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6 ||
		consumed == 0)
		return -1;
	s += consumed;
	if (*s == '.')
	{
		char	   *end;

		frac = strtod(s, &end);
		s = end;
	}
	if (*s == '+' || *s == '-')
	{
		int			hh,
					mm;

		if (sscanf(s + 1, "%2d:%2d", &hh, &mm) != 2)
			return -1;
		offset = (hh * 60 + mm) * 60 * (*s == '+' ? 1 : -1);
	}
	else if (*s != 'Z' && *s != 'z')
		return -1;
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	when = timegm(&tm);
	if (when == (time_t) -1)
		return -1;
	clock_gettime(CLOCK_REALTIME, &now);
	return Max(0.0, Min((double) (when - offset) + frac -
						((double) now.tv_sec + now.tv_nsec / 1e9), PGB_HINT_MAX_S));
}

/*
 * parse_reset_seconds
 *		A reset given in seconds, or as a Unix time (what some APIs send in
 *		x-ratelimit-reset): seconds from now, or -1.
 */
static double
parse_reset_seconds(const char *s)
{
	char	   *end;
	double		v;

	while (*s == ' ' || *s == '\t')
		s++;
	v = strtod(s, &end);
	if (end == s || !(v >= 0))
		return -1;
	if (v > 1e9)
	{
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		v -= (double) now.tv_sec + now.tv_nsec / 1e9;
	}
	return Max(0.0, Min(v, PGB_HINT_MAX_S));
}

/*
 * param_number
 *		The number after "name=" in s (a parameter of a structured header),
 *		where name starts s or follows one of the separators; -1 if none.
 */
static double
param_number(const char *s, const char *name)
{
	size_t		nlen = strlen(name);
	const char *p = s;

	while ((p = strstr(p, name)) != NULL)
	{
		if ((p == s || p[-1] == ';' || p[-1] == ',' || p[-1] == ' ' || p[-1] == '\t') &&
			p[nlen] == '=')
		{
			char	   *end;
			double		v = strtod(p + nlen + 1, &end);

			if (end != p + nlen + 1 && v >= 0)
				return v;
		}
		p += nlen;
	}
	return -1;
}

/*
 * parse_ratelimit_field
 *		The RateLimit header of the IETF draft.  Drafts 08 on send a list of
 *		policies, "name";r=REMAINING;t=SECONDS, and the one with the least
 *		left counts; draft 07 sends limit=, remaining=, reset=.
 */
static void
parse_ratelimit_field(PgbRateHints *hints, char *value)
{
	double		remaining = param_number(value, "remaining");
	double		reset = param_number(value, "reset");
	char	   *member;
	char	   *save = NULL;

	if (remaining >= 0 && reset >= 0)
	{
		hints->requests_remaining = (int64) remaining;
		hints->requests_reset_s = Min(reset, PGB_HINT_MAX_S);
		return;
	}
	for (member = strtok_r(value, ",", &save); member != NULL;
		 member = strtok_r(NULL, ",", &save))
	{
		double		r = param_number(member, "r");
		double		t = param_number(member, "t");

		if (r < 0 || t < 0)
			continue;
		if (hints->requests_remaining < 0 || (int64) r < hints->requests_remaining)
		{
			hints->requests_remaining = (int64) r;
			hints->requests_reset_s = Min(t, PGB_HINT_MAX_S);
		}
	}
}

/*
 * pgb_rate_header
 *		Takes in one header line ("Name: value\r\n", n bytes) of an answer if
 *		it is one of the rate-limit headers understood.
 */
void
pgb_rate_header(PgbRateHints *hints, const char *line, size_t n)
{
	char		name[64];
	char		value[256];
	size_t		i = 0;
	size_t		vlen = 0;
	char		c = n > 0 ? line[0] : '\0';

	/* most header lines are not these: decide on the first letter */
	if (c != 'x' && c != 'X' && c != 'a' && c != 'A' && c != 'r' && c != 'R')
		return;
	while (i < n && line[i] != ':' && i < sizeof(name) - 1)
	{
		name[i] = (char) tolower((unsigned char) line[i]);
		i++;
	}
	if (i >= n || line[i] != ':')
		return;
	name[i++] = '\0';
	while (i < n && (line[i] == ' ' || line[i] == '\t'))
		i++;
	while (i < n && line[i] != '\r' && line[i] != '\n' && vlen < sizeof(value) - 1)
		value[vlen++] = line[i++];
	value[vlen] = '\0';
	if (vlen == 0)
		return;

	if (strcmp(name, "x-ratelimit-remaining-requests") == 0)
		hints->requests_remaining = parse_count(value);
	else if (strcmp(name, "x-ratelimit-reset-requests") == 0)
		hints->requests_reset_s = parse_duration(value);
	else if (strcmp(name, "x-ratelimit-remaining-tokens") == 0)
		hints->tokens_remaining = parse_count(value);
	else if (strcmp(name, "x-ratelimit-reset-tokens") == 0)
		hints->tokens_reset_s = parse_duration(value);
	else if (strcmp(name, "anthropic-ratelimit-requests-remaining") == 0)
		hints->requests_remaining = parse_count(value);
	else if (strcmp(name, "anthropic-ratelimit-requests-reset") == 0)
		hints->requests_reset_s = parse_rfc3339(value);
	else if (strcmp(name, "anthropic-ratelimit-tokens-remaining") == 0)
		hints->tokens_remaining = parse_count(value);
	else if (strcmp(name, "anthropic-ratelimit-tokens-reset") == 0)
		hints->tokens_reset_s = parse_rfc3339(value);
	else if (strcmp(name, "ratelimit") == 0)
		parse_ratelimit_field(hints, value);
	else if (strcmp(name, "ratelimit-remaining") == 0 ||
			 strcmp(name, "x-ratelimit-remaining") == 0)
	{
		/* the first of several policies given, if more are */
		value[strcspn(value, ",;")] = '\0';
		hints->requests_remaining = parse_count(value);
	}
	else if (strcmp(name, "ratelimit-reset") == 0 ||
			 strcmp(name, "x-ratelimit-reset") == 0)
		hints->requests_reset_s = parse_reset_seconds(value);
}
