/*-------------------------------------------------------------------------
 *
 * conn.c
 *		The connection to the server and the queries run on it: connecting
 *		the way every libpq program does (options, PG* variables, a
 *		connection string or URI as the database name, a password prompt),
 *		queries with parameters, the server's errors and notices, and the
 *		resolution of a batch named on the command line.
 *
 * cli/conn.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "common/logging.h"
#include "common/string.h"

#include "pgbatch_cli.h"

/*
 * notice_processor
 *		Prints the server's notices (say, that another retry_failed holds
 *		the batch's lock) on stderr, as psql does.
 */
static void
notice_processor(void *arg, const char *message)
{
	char	   *clean = pgbcli_sanitize_lines(message);

	fprintf(stderr, "%s", clean);
	free(clean);
}

/*
 * try_connect
 *		One connection attempt with the given password (or NULL).
 */
static PGconn *
try_connect(const char *password)
{
	const char *keywords[8];
	const char *values[8];
	int			n = 0;

	keywords[n] = "host";
	values[n++] = pgbcli_opts.host;
	keywords[n] = "port";
	values[n++] = pgbcli_opts.port;
	keywords[n] = "user";
	values[n++] = pgbcli_opts.username;
	keywords[n] = "password";
	values[n++] = password;
	keywords[n] = "dbname";
	values[n++] = pgbcli_opts.dbname;
	keywords[n] = "fallback_application_name";
	values[n++] = "pgbatch";
	/* JSON is UTF-8; text follows the locale, as psql's does */
	keywords[n] = "client_encoding";
	values[n++] = pgbcli_opts.json ? "UTF8" : "auto";
	keywords[n] = NULL;
	values[n] = NULL;

	return PQconnectdbParams(keywords, values, true);
}

/*
 * pgbcli_connect
 *		Connects as the options and PG* environment variables say, prompting
 *		for a password when the server wants one (unless -w) or when -W asks
 *		for it.  Returns the connection, or NULL after reporting why not.
 */
PGconn *
pgbcli_connect(void)
{
	char	   *password = NULL;
	PGconn	   *conn;

	if (pgbcli_opts.prompt_password == TRI_YES)
		password = simple_prompt("Password: ", false);

	for (;;)
	{
		conn = try_connect(password);
		if (PQstatus(conn) == CONNECTION_BAD &&
			PQconnectionNeedsPassword(conn) &&
			password == NULL &&
			pgbcli_opts.prompt_password != TRI_NO)
		{
			PQfinish(conn);
			password = simple_prompt("Password: ", false);
			continue;
		}
		break;
	}
	free(password);

	if (PQstatus(conn) == CONNECTION_BAD)
	{
		pg_log_error("%s", pgbcli_clean_message(PQerrorMessage(conn)));
		PQfinish(conn);
		return NULL;
	}

	PQsetNoticeProcessor(conn, notice_processor, NULL);
	if (!pgbcli_command(conn, PGBCLI_SESSION_SETUP_SQL))
	{
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/*
 * pgbcli_clean_message
 *		pgbcli_sanitize_lines into a buffer reused from call to call: for
 *		one message at a time, quoting names and texts of anyone's making.
 */
const char *
pgbcli_clean_message(const char *text)
{
	static char *last = NULL;

	free(last);
	last = pgbcli_sanitize_lines(text);
	return last;
}

/*
 * pgbcli_report_error
 *		Reports a failed query: the server's message, detail and hint, or
 *		libpq's message when the server sent none (a lost connection).
 */
void
pgbcli_report_error(PGconn *conn, const PGresult *res)
{
	const char *primary = NULL;
	const char *detail = NULL;
	const char *hint = NULL;

	if (res != NULL)
	{
		primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		detail = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
		hint = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
	}
	/* the messages may quote names and texts of anyone's making */
	if (primary != NULL)
		pg_log_error("%s", pgbcli_clean_message(primary));
	else
		pg_log_error("%s", pgbcli_clean_message(PQerrorMessage(conn)));
	if (detail != NULL)
		pg_log_error_detail("%s", pgbcli_clean_message(detail));
	if (hint != NULL)
		pg_log_error_hint("%s", pgbcli_clean_message(hint));
}

/*
 * pgbcli_query
 *		Runs a query whose parameters are passed apart from its text (the
 *		text never carries user input; the SQL casts each parameter).
 *		Returns the rows, or NULL after reporting the error.
 */
PGresult *
pgbcli_query(PGconn *conn, const char *sql, int nparams,
			 const char *const *params)
{
	PGresult   *res;

	res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		pgbcli_report_error(conn, res);
		PQclear(res);
		return NULL;
	}
	return res;
}

/*
 * pgbcli_command
 *		Runs a query without parameters whose rows are not wanted; false
 *		after reporting an error.
 */
bool
pgbcli_command(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);
	bool		ok;

	ok = PQresultStatus(res) == PGRES_TUPLES_OK ||
		PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		pgbcli_report_error(conn, res);
	PQclear(res);
	return ok;
}

/*
 * pgbcli_looks_like_id
 *		True if arg is an id (of a batch, of an item): digits only, short
 *		enough for a bigint.
 */
bool
pgbcli_looks_like_id(const char *arg)
{
	size_t		len = strlen(arg);

	return len > 0 && len <= 18 && strspn(arg, "0123456789") == len;
}

/*
 * pgbcli_resolve_batch
 *		Finds the batch that arg names among those the user can see: by
 *		name, or else by id when arg is a number.  False after reporting
 *		that it does not exist (or a query error).
 */
bool
pgbcli_resolve_batch(PGconn *conn, const char *arg, PgbcliBatch *batch)
{
	const char *params[2];
	PGresult   *res;

	params[0] = arg;
	params[1] = pgbcli_looks_like_id(arg) ? arg : NULL;
	res = pgbcli_query(conn,
					   "SELECT id, name FROM batch.progress "
					   "WHERE name = $1::text OR id = $2::bigint "
					   "ORDER BY name = $1::text DESC LIMIT 1",
					   2, params);
	if (res == NULL)
		return false;
	if (PQntuples(res) == 0)
	{
		pg_log_error("batch \"%s\" does not exist", pgbcli_clean_message(arg));
		pg_log_error_hint("Run \"%s status\" to list the batches you can see.",
						  "pgbatch");
		PQclear(res);
		return false;
	}
	batch->id = strtoi64(PQgetvalue(res, 0, 0), NULL, 10);
	batch->name = pg_strdup(PQgetvalue(res, 0, 1));
	PQclear(res);
	return true;
}

/*
 * pgbcli_free_batch
 *		Frees what pgbcli_resolve_batch allocated.
 */
void
pgbcli_free_batch(PgbcliBatch *batch)
{
	free(batch->name);
	batch->name = NULL;
}
