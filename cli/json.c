/*-------------------------------------------------------------------------
 *
 * json.c
 *		JSON for --json output (rows of a PGresult as objects, values typed
 *		by their column's type) and the little JSON reading the tool needs:
 *		one top-level field of a notification's payload.
 *
 * cli/json.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <math.h>

#include "catalog/pg_type_d.h"

#include "pgbatch_cli.h"

/*
 * pgbcli_json_string
 *		Appends str as a JSON string (quoted and escaped).
 */
void
pgbcli_json_string(PQExpBuffer buf, const char *str)
{
	appendPQExpBufferChar(buf, '"');
	for (const unsigned char *p = (const unsigned char *) str; *p; p++)
	{
		switch (*p)
		{
			case '"':
				appendPQExpBufferStr(buf, "\\\"");
				break;
			case '\\':
				appendPQExpBufferStr(buf, "\\\\");
				break;
			case '\n':
				appendPQExpBufferStr(buf, "\\n");
				break;
			case '\r':
				appendPQExpBufferStr(buf, "\\r");
				break;
			case '\t':
				appendPQExpBufferStr(buf, "\\t");
				break;
			default:
				if (*p < 0x20 || *p == 0x7f)
					appendPQExpBuffer(buf, "\\u%04x", *p);
				else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f)
				{
					/* a C1 control in UTF-8 (the CLI reads UTF-8 for --json) */
					appendPQExpBuffer(buf, "\\u%04x", p[1]);
					p++;
				}
				else
					appendPQExpBufferChar(buf, (char) *p);
				break;
		}
	}
	appendPQExpBufferChar(buf, '"');
}

/*
 * pgbcli_json_number
 *		Appends a number, or null when it is unknown (negative, or not
 *		finite): rates, ETAs and durations are never negative.
 */
void
pgbcli_json_number(PQExpBuffer buf, double value)
{
	if (isfinite(value) && value >= 0)
		appendPQExpBuffer(buf, "%.3f", value);
	else
		appendPQExpBufferStr(buf, "null");
}

/*
 * json_value
 *		Appends one value of a result: null, a number, a boolean, JSON as
 *		it is, or else a string.
 */
static void
json_value(PQExpBuffer buf, const PGresult *res, int row, int col)
{
	const char *value = PQgetvalue(res, row, col);

	if (PQgetisnull(res, row, col))
	{
		appendPQExpBufferStr(buf, "null");
		return;
	}
	switch (PQftype(res, col))
	{
		case INT2OID:
		case INT4OID:
		case INT8OID:
		case OIDOID:
			appendPQExpBufferStr(buf, value);
			break;
		case FLOAT4OID:
		case FLOAT8OID:
		case NUMERICOID:
			/* NaN and the infinities are not JSON numbers */
			if (strspn(value, "0123456789.-+eE") == strlen(value) &&
				strpbrk(value, "0123456789") != NULL)
				appendPQExpBufferStr(buf, value);
			else
				appendPQExpBufferStr(buf, "null");
			break;
		case BOOLOID:
			appendPQExpBufferStr(buf, value[0] == 't' ? "true" : "false");
			break;
		case JSONOID:
		case JSONBOID:
			appendPQExpBufferStr(buf, value);
			break;
		default:
			pgbcli_json_string(buf, value);
			break;
	}
}

/*
 * pgbcli_json_fields
 *		Appends the first ncols columns of a row as "name": value pairs,
 *		comma-separated, without braces (the caller may add fields).
 */
void
pgbcli_json_fields(PQExpBuffer buf, const PGresult *res, int row, int ncols)
{
	for (int col = 0; col < ncols; col++)
	{
		if (col > 0)
			appendPQExpBufferStr(buf, ", ");
		pgbcli_json_string(buf, PQfname(res, col));
		appendPQExpBufferStr(buf, ": ");
		json_value(buf, res, row, col);
	}
}

/*
 * pgbcli_json_row
 *		Appends the first ncols columns of a row as an object.
 */
void
pgbcli_json_row(PQExpBuffer buf, const PGresult *res, int row, int ncols)
{
	appendPQExpBufferChar(buf, '{');
	pgbcli_json_fields(buf, res, row, ncols);
	appendPQExpBufferChar(buf, '}');
}

/*
 * pgbcli_json_rows
 *		Appends every row of a result as an array of objects, one a line.
 */
void
pgbcli_json_rows(PQExpBuffer buf, const PGresult *res, int ncols)
{
	int			nrows = PQntuples(res);

	appendPQExpBufferChar(buf, '[');
	for (int row = 0; row < nrows; row++)
	{
		appendPQExpBufferStr(buf, row > 0 ? ",\n " : "\n ");
		pgbcli_json_row(buf, res, row, ncols);
	}
	appendPQExpBufferStr(buf, nrows > 0 ? "\n]" : "]");
}

/*
 * pgbcli_print_buffer
 *		Writes a buffer and a newline to stdout, flushed (it may be a pipe
 *		read line by line), and empties the buffer.
 */
void
pgbcli_print_buffer(PQExpBuffer buf)
{
	fwrite(buf->data, 1, buf->len, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	resetPQExpBuffer(buf);
}

/*
 * skip_space
 *		Skips JSON white space.
 */
static const char *
skip_space(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

/*
 * skip_string
 *		p is at the opening quote of a string: returns the position after
 *		its closing quote, or NULL if it is not closed.
 */
static const char *
skip_string(const char *p)
{
	for (p++; *p; p++)
	{
		if (*p == '\\')
		{
			if (p[1] == '\0')
				return NULL;
			p++;
		}
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

/*
 * skip_value
 *		Returns the position after the value at p (a string, an object or
 *		an array, nested as deep as it goes, or a scalar), or NULL if the
 *		JSON is broken.
 */
static const char *
skip_value(const char *p)
{
	int			depth = 0;

	for (;;)
	{
		if (*p == '\0')
			return depth == 0 ? p : NULL;
		if (*p == '"')
		{
			p = skip_string(p);
			if (p == NULL || depth == 0)
				return p;
			continue;
		}
		if (*p == '{' || *p == '[')
			depth++;
		else if (*p == '}' || *p == ']')
		{
			if (depth == 0)
				return p;		/* the end of the enclosing object */
			if (--depth == 0)
				return p + 1;
		}
		else if (depth == 0 && strchr(", \t\n\r", *p) != NULL)
			return p;
		p++;
	}
}

/*
 * copy_scalar
 *		Copies the scalar value at p to out: a string's text (its escapes
 *		other than \" and \\ kept as they are: the tool only compares names
 *		and numbers), or a number or literal as written.  Objects and arrays
 *		give false.
 */
static bool
copy_scalar(const char *p, char *out, size_t outlen)
{
	size_t		n = 0;
	const char *end;

	if (*p == '{' || *p == '[')
		return false;
	if (*p == '"')
	{
		for (p++; *p && *p != '"'; p++)
		{
			if (*p == '\\' && (p[1] == '"' || p[1] == '\\'))
				p++;
			else if (*p == '\\' && p[1] == '\0')
				return false;
			if (n + 1 < outlen)
				out[n++] = *p;
		}
		out[n] = '\0';
		return *p == '"';
	}
	end = skip_value(p);
	if (end == NULL)
		return false;
	while (p < end && n + 1 < outlen)
		out[n++] = *p++;
	out[n] = '\0';
	return n > 0;
}

/*
 * pgbcli_json_field
 *		Finds key among the top-level fields of a JSON object and copies its
 *		scalar value to out (a string without its quotes).  False if json
 *		is not an object, has no such field, or the field is an object or an
 *		array.  No JSON library: a small scanner that skips nested values
 *		and strings properly, so a key inside a string never matches.
 */
bool
pgbcli_json_field(const char *json, const char *key, char *out, size_t outlen)
{
	const char *p = skip_space(json);
	size_t		keylen = strlen(key);

	if (*p != '{' || outlen == 0)
		return false;
	p = skip_space(p + 1);
	while (*p == '"')
	{
		const char *name = p + 1;
		const char *after = skip_string(p);
		bool		match;

		if (after == NULL)
			return false;
		match = (size_t) (after - 1 - name) == keylen &&
			strncmp(name, key, keylen) == 0;
		p = skip_space(after);
		if (*p != ':')
			return false;
		p = skip_space(p + 1);
		if (match)
			return copy_scalar(p, out, outlen);
		p = skip_value(p);
		if (p == NULL)
			return false;
		p = skip_space(p);
		if (*p != ',')
			return false;
		p = skip_space(p + 1);
	}
	return false;
}
