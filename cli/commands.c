/*-------------------------------------------------------------------------
 *
 * commands.c
 *		The commands that read or change a batch once and print: status
 *		(every batch's progress), errors (failed items grouped by stage and
 *		code), review (the review queue), retry (batch.retry_failed) and
 *		cancel (batch.cancel); and endpoints (their live state).
 *		Each prints a table, or one JSON document with --json.
 *
 * cli/commands.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "pgbatch_cli.h"

/* the width of the progress bars of the status table, and on a terminal
 * narrower than STATUS_NARROW columns */
#define STATUS_BAR_WIDTH	20
#define STATUS_BAR_NARROW	10
#define STATUS_NARROW		100

/* the columns of the errors query; those JSON shows are all of them */
#define ERRORS_SQL \
	"SELECT batch_id, batch, stage, error_code, items, first_seen, " \
	"last_seen, sample_error " \
	"FROM batch.errors WHERE batch_id = $1::bigint " \
	"ORDER BY stage, items DESC, error_code"
#define ERRORS_COLS		8

/* the review queue, without and with the payloads */
#define REVIEW_SQL \
	"SELECT batch_id, item_id, key, stage, error_code, attempts, failed_at, " \
	"error%s FROM batch.review_queue WHERE batch_id = $1::bigint " \
	"ORDER BY failed_at, item_id"

/*
 * batch.retry_failed with every argument a parameter; --codes is split on
 * commas by the server, blanks dropped (no codes: NULL, every code).
 */
#define RETRY_SQL \
	"SELECT batch.retry_failed($1::bigint, " \
	"max_retries => $2::integer, " \
	"backoff_factor => $3::float8, " \
	"error_codes => (SELECT array_agg(btrim(c)) " \
	"FROM unnest(string_to_array($4::text, ',')) AS c " \
	"WHERE btrim(c) <> ''), " \
	"stage => $5::text, wait => $6::boolean)"

/*
 * id_param
 *		A batch's id as a query parameter, in buf.
 */
static const char *
id_param(const PgbcliBatch *batch, char *buf, size_t len)
{
	snprintf(buf, len, INT64_FORMAT, batch->id);
	return buf;
}

/*
 * print_status_json
 *		status --json: an array of the batches' progress, with rate and ETA.
 */
static void
print_status_json(const PGresult *res)
{
	PQExpBufferData buf;

	initPQExpBuffer(&buf);
	appendPQExpBufferChar(&buf, '[');
	for (int row = 0; row < PQntuples(res); row++)
	{
		PgbcliProgress p;
		double		rate;

		pgbcli_read_progress(res, row, &p);
		rate = pgbcli_overall_rate(&p);
		appendPQExpBufferStr(&buf, row > 0 ? ",\n " : "\n ");
		pgbcli_json_progress(&buf, res, row, rate, pgbcli_eta(&p, rate));
	}
	appendPQExpBufferStr(&buf, PQntuples(res) > 0 ? "\n]" : "]");
	pgbcli_print_buffer(&buf);
	termPQExpBuffer(&buf);
}

/*
 * add_status_row
 *		One batch's line of the status table, its bar bar_width wide.
 */
static void
add_status_row(PgbcliTable *table, const PGresult *res, int row, int bar_width)
{
	PgbcliProgress p;
	double		rate;
	char		text[64];
	char	   *bar;
	int			r = pgbcli_table_add_row(table);

	pgbcli_read_progress(res, row, &p);
	rate = pgbcli_overall_rate(&p);
	bar = pgbcli_bar(&p, bar_width);

	pgbcli_table_set(table, r, 0, NULL, PQgetvalue(res, row, 0));
	pgbcli_table_set(table, r, 1, PGBCLI_BOLD, p.name);
	pgbcli_table_set(table, r, 2, pgbcli_status_color(p.status), p.status);
	pgbcli_table_set(table, r, 3, NULL, bar);
	snprintf(text, sizeof(text), INT64_FORMAT "/" INT64_FORMAT,
			 p.completed, p.total);
	pgbcli_table_set(table, r, 4, PGBCLI_GREEN, text);
	snprintf(text, sizeof(text), INT64_FORMAT, p.pending);
	pgbcli_table_set(table, r, 5, NULL, text);
	snprintf(text, sizeof(text), INT64_FORMAT, p.retrying);
	pgbcli_table_set(table, r, 6, p.retrying > 0 ? PGBCLI_YELLOW : NULL, text);
	snprintf(text, sizeof(text), INT64_FORMAT, p.running);
	pgbcli_table_set(table, r, 7, NULL, text);
	snprintf(text, sizeof(text), INT64_FORMAT, p.failed);
	pgbcli_table_set(table, r, 8, p.failed > 0 ? PGBCLI_RED : NULL, text);
	pgbcli_format_rate(rate, text, sizeof(text));
	pgbcli_table_set(table, r, 9, NULL, text);
	pgbcli_format_duration(pgbcli_eta(&p, rate), text, sizeof(text));
	pgbcli_table_set(table, r, 10, NULL, text);
	free(bar);
}

/*
 * print_status_table
 *		status: a line per batch.
 */
static void
print_status_table(const PGresult *res)
{
	static const char *const headers[] = {
		"id", "batch", "status", "progress", "completed", "pending",
		"retrying", "running", "failed", "rate", "eta"
	};
	PgbcliScreen scr;
	PgbcliTable table;

	pgbcli_screen_init_out(&scr);
	if (PQntuples(res) == 0)
	{
		pgbcli_screen_text(&scr, NULL, "no batches");
		pgbcli_screen_newline(&scr);
	}
	else
	{
		pgbcli_table_init(&table, lengthof(headers), headers, "rllbrrrrrrr");
		for (int row = 0; row < PQntuples(res); row++)
			add_status_row(&table, res, row,
						   scr.width > 0 && scr.width < STATUS_NARROW ?
						   STATUS_BAR_NARROW : STATUS_BAR_WIDTH);
		pgbcli_table_print(&scr, &table, 0);
		pgbcli_table_free(&table);
	}
	pgbcli_screen_flush(&scr);
	pgbcli_screen_free(&scr);
}

/*
 * pgbcli_cmd_status
 *		status: every batch the user can see, under a word on the
 *		executors when they do not serve this database as wanted.
 */
int
pgbcli_cmd_status(PGconn *conn)
{
	PGresult   *res = pgbcli_fetch_progress(conn, NULL);

	if (res == NULL)
		return PGBCLI_EXIT_ERROR;
	if (pgbcli_out.json)
		print_status_json(res);
	else
	{
		PGresult   *health = pgbcli_fetch_health_here(conn);
		PgbcliScreen scr;

		/* first, what is wrong with the executors here, if anything */
		pgbcli_screen_init_out(&scr);
		if (pgbcli_health_lines(&scr, health) > 0)
			pgbcli_screen_newline(&scr);
		pgbcli_screen_flush(&scr);
		pgbcli_screen_free(&scr);
		PQclear(health);
		print_status_table(res);
	}
	PQclear(res);
	return PGBCLI_EXIT_OK;
}

/*
 * pgbcli_fetch_errors
 *		The batch's failed items grouped by stage and code (batch.errors);
 *		NULL after reporting an error.
 */
PGresult *
pgbcli_fetch_errors(PGconn *conn, const PgbcliBatch *batch)
{
	char		id[32];
	const char *params[1];

	params[0] = id_param(batch, id, sizeof(id));
	return pgbcli_query(conn, ERRORS_SQL, 1, params);
}

/*
 * pgbcli_errors_table
 *		Appends the groups of pgbcli_fetch_errors's result as a table; the
 *		stage is named on the first line of its groups only.  full adds
 *		when each group was first and last seen; max_rows (if not negative)
 *		is the most groups shown.
 */
void
pgbcli_errors_table(PgbcliScreen *scr, const PGresult *res, int indent,
					bool full, int max_rows)
{
	static const char *const full_headers[] = {
		"stage", "code", "items", "first seen", "last seen", "sample error"
	};
	static const char *const short_headers[] = {
		"stage", "code", "items", "sample error"
	};
	PgbcliTable table;
	const char *prev_stage = NULL;

	if (full)
		pgbcli_table_init(&table, lengthof(full_headers), full_headers, "llrlll");
	else
		pgbcli_table_init(&table, lengthof(short_headers), short_headers, "llrl");

	for (int row = 0; row < PQntuples(res) && (max_rows < 0 || row < max_rows); row++)
	{
		const char *stage = PQgetvalue(res, row, 2);
		int			r = pgbcli_table_add_row(&table);
		int			col = 0;

		if (prev_stage == NULL || strcmp(prev_stage, stage) != 0)
			pgbcli_table_set(&table, r, col, PGBCLI_BOLD, stage);
		col++;
		prev_stage = stage;
		pgbcli_table_set(&table, r, col++, PGBCLI_RED, PQgetvalue(res, row, 3));
		pgbcli_table_set(&table, r, col++, NULL, PQgetvalue(res, row, 4));
		if (full)
		{
			pgbcli_table_set(&table, r, col++, NULL, PQgetvalue(res, row, 5));
			pgbcli_table_set(&table, r, col++, NULL, PQgetvalue(res, row, 6));
		}
		pgbcli_table_set(&table, r, col, NULL, PQgetvalue(res, row, 7));
	}
	pgbcli_table_print(scr, &table, indent);
	pgbcli_table_free(&table);
}

/*
 * count_items
 *		The items of every group of pgbcli_fetch_errors's result.
 */
static int64
count_items(const PGresult *res)
{
	int64		items = 0;

	for (int row = 0; row < PQntuples(res); row++)
		items += strtoi64(PQgetvalue(res, row, 4), NULL, 10);
	return items;
}

/*
 * print_errors
 *		errors in text: a summary line, then the groups.
 */
static void
print_errors(const PgbcliBatch *batch, const PGresult *res)
{
	PgbcliScreen scr;
	char	   *name = pgbcli_sanitize(batch->name);

	pgbcli_screen_init_out(&scr);
	if (PQntuples(res) == 0)
		pgbcli_screen_printf(&scr, NULL, "batch \"%s\" (id " INT64_FORMAT
							 ") has no failed items", name, batch->id);
	else
		pgbcli_screen_printf(&scr, NULL, "batch \"%s\" (id " INT64_FORMAT
							 "): " INT64_FORMAT " failed items in %d groups",
							 name, batch->id, count_items(res), PQntuples(res));
	pgbcli_screen_newline(&scr);
	if (PQntuples(res) > 0)
		pgbcli_errors_table(&scr, res, 0, true, -1);
	pgbcli_screen_flush(&scr);
	pgbcli_screen_free(&scr);
	free(name);
}

/*
 * emit_rows
 *		Prints a command's rows (the first ncols columns as JSON objects with
 *		--json, else with print_text), frees them and the batch, and gives
 *		the command's exit status: an error if the query failed (res NULL).
 */
static int
emit_rows(PgbcliBatch *batch, PGresult *res, int ncols,
		  void (*print_text) (const PgbcliBatch *batch, const PGresult *res))
{
	if (res == NULL)
	{
		pgbcli_free_batch(batch);
		return PGBCLI_EXIT_ERROR;
	}
	if (pgbcli_out.json)
	{
		PQExpBufferData buf;

		initPQExpBuffer(&buf);
		pgbcli_json_rows(&buf, res, ncols);
		pgbcli_print_buffer(&buf);
		termPQExpBuffer(&buf);
	}
	else
		print_text(batch, res);
	PQclear(res);
	pgbcli_free_batch(batch);
	return PGBCLI_EXIT_OK;
}

/*
 * pgbcli_cmd_errors
 *		errors BATCH: the batch's failed items, grouped by stage and code.
 */
int
pgbcli_cmd_errors(PGconn *conn, const char *arg)
{
	PgbcliBatch batch;
	PGresult   *res;

	if (!pgbcli_resolve_batch(conn, arg, &batch))
		return PGBCLI_EXIT_ERROR;
	res = pgbcli_fetch_errors(conn, &batch);
	return emit_rows(&batch, res, ERRORS_COLS, print_errors);
}

/*
 * print_review
 *		review in text: a table of the failed items (from the item id on:
 *		the batch is the same on every line).
 */
static void
print_review(const PgbcliBatch *batch, const PGresult *res)
{
	static const char *const headers[] = {
		"item", "key", "stage", "code", "attempts", "failed at", "error",
		"payload"
	};
	int			ncols = PQnfields(res) - 1;
	PgbcliScreen scr;
	PgbcliTable table;

	pgbcli_screen_init_out(&scr);
	if (PQntuples(res) == 0)
	{
		char	   *name = pgbcli_sanitize(batch->name);

		pgbcli_screen_printf(&scr, NULL, "the review queue of batch \"%s\" (id "
							 INT64_FORMAT ") is empty", name, batch->id);
		pgbcli_screen_newline(&scr);
		free(name);
	}
	else
	{
		pgbcli_table_init(&table, ncols, headers, "rlllrlll");
		for (int row = 0; row < PQntuples(res); row++)
		{
			int			r = pgbcli_table_add_row(&table);

			for (int col = 0; col < ncols; col++)
				pgbcli_table_set(&table, r, col, col == 3 ? PGBCLI_RED : NULL,
								 PQgetvalue(res, row, col + 1));
		}
		pgbcli_table_print(&scr, &table, 0);
		pgbcli_table_free(&table);
	}
	pgbcli_screen_flush(&scr);
	pgbcli_screen_free(&scr);
}

/*
 * pgbcli_cmd_review
 *		review BATCH: the review queue of the batch (payloads with
 *		--payload).
 */
int
pgbcli_cmd_review(PGconn *conn, const char *arg)
{
	PgbcliBatch batch;
	PGresult   *res;
	char		id[32];
	char		sql[512];
	const char *params[1];

	if (!pgbcli_resolve_batch(conn, arg, &batch))
		return PGBCLI_EXIT_ERROR;
	snprintf(sql, sizeof(sql), REVIEW_SQL, pgbcli_opts.payload ? ", payload" : "");
	params[0] = id_param(&batch, id, sizeof(id));
	res = pgbcli_query(conn, sql, 1, params);
	return emit_rows(&batch, res, res ? PQnfields(res) : 0, print_review);
}

/*
 * print_retried
 *		What retry did, in text or as a JSON object.
 */
static void
print_retried(const PgbcliBatch *batch, const char *count)
{
	PQExpBufferData buf;

	initPQExpBuffer(&buf);
	if (pgbcli_out.json)
	{
		appendPQExpBuffer(&buf, "{\"batch_id\": " INT64_FORMAT ", \"batch\": ",
						  batch->id);
		pgbcli_json_string(&buf, batch->name);
		appendPQExpBuffer(&buf, ", \"requeued\": %s}", count);
	}
	else
	{
		char	   *name = pgbcli_sanitize(batch->name);

		appendPQExpBuffer(&buf, "re-queued %s %s of batch \"%s\" (id "
						  INT64_FORMAT ")", count,
						  strcmp(count, "1") == 0 ? "item" : "items",
						  name, batch->id);
		free(name);
	}
	pgbcli_print_buffer(&buf);
	termPQExpBuffer(&buf);
}

/*
 * pgbcli_cmd_retry
 *		retry BATCH: batch.retry_failed() with the options given, every one
 *		a parameter; prints how many items were re-queued (0, with the
 *		server's NOTICE, when another retry holds the batch's lock, unless
 *		--wait: then it waits for that retry to end).
 */
int
pgbcli_cmd_retry(PGconn *conn, const char *arg)
{
	PgbcliBatch batch;
	PGresult   *res;
	char		id[32];
	const char *params[6];

	if (!pgbcli_resolve_batch(conn, arg, &batch))
		return PGBCLI_EXIT_ERROR;
	params[0] = id_param(&batch, id, sizeof(id));
	params[1] = pgbcli_opts.max_retries;
	params[2] = pgbcli_opts.backoff_factor;
	params[3] = pgbcli_opts.codes;
	params[4] = pgbcli_opts.stage;
	params[5] = pgbcli_opts.wait ? "true" : "false";
	res = pgbcli_query(conn, RETRY_SQL, 6, params);
	if (res == NULL)
	{
		pgbcli_free_batch(&batch);
		return PGBCLI_EXIT_ERROR;
	}
	print_retried(&batch, PQgetvalue(res, 0, 0));
	PQclear(res);
	pgbcli_free_batch(&batch);
	return PGBCLI_EXIT_OK;
}

/*
 * pgbcli_cmd_cancel
 *		cancel BATCH: batch.cancel(); prints how many waiting items were
 *		cancelled (running ones finish, their results recorded).
 */
int
pgbcli_cmd_cancel(PGconn *conn, const char *arg)
{
	PgbcliBatch batch;
	PGresult   *res;
	char		id[32];
	const char *params[1];
	PQExpBufferData buf;

	if (!pgbcli_resolve_batch(conn, arg, &batch))
		return PGBCLI_EXIT_ERROR;
	params[0] = id_param(&batch, id, sizeof(id));
	res = pgbcli_query(conn, "SELECT batch.cancel($1::bigint)", 1, params);
	if (res == NULL)
	{
		pgbcli_free_batch(&batch);
		return PGBCLI_EXIT_ERROR;
	}
	initPQExpBuffer(&buf);
	if (pgbcli_out.json)
	{
		appendPQExpBuffer(&buf, "{\"batch_id\": " INT64_FORMAT ", \"batch\": ", batch.id);
		pgbcli_json_string(&buf, batch.name);
		appendPQExpBuffer(&buf, ", \"cancelled\": %s}", PQgetvalue(res, 0, 0));
	}
	else
	{
		char	   *name = pgbcli_sanitize(batch.name);

		appendPQExpBuffer(&buf, "cancelled %s %s of batch \"%s\" (id " INT64_FORMAT ")",
						  PQgetvalue(res, 0, 0),
						  strcmp(PQgetvalue(res, 0, 0), "1") == 0 ? "item" : "items",
						  name, batch.id);
		free(name);
	}
	pgbcli_print_buffer(&buf);
	termPQExpBuffer(&buf);
	PQclear(res);
	pgbcli_free_batch(&batch);
	return PGBCLI_EXIT_OK;
}

/* every endpoint the user may see, and its live state */
#define ENDPOINTS_SQL \
	"SELECT name, base_url, in_flight, max_concurrency, rate_limit, circuit, " \
	"to_char(paused_until, 'YYYY-MM-DD HH24:MI:SS') AS paused_until, " \
	"consecutive_failures, requests, failures " \
	"FROM batch.endpoint_status ORDER BY name"

/*
 * pgbcli_cmd_endpoints
 *		endpoints: a line per endpoint, its requests in flight against its
 *		limit, rate limit, circuit, pause, failures.
 */
int
pgbcli_cmd_endpoints(PGconn *conn, const char *arg)
{
	static const char *const headers[] = {
		"endpoint", "in flight", "rate/min", "circuit", "paused until",
		"failures", "requests", "url"
	};
	PGresult   *res = pgbcli_query(conn, ENDPOINTS_SQL, 0, NULL);
	PgbcliScreen scr;
	PgbcliTable table;

	if (res == NULL)
		return PGBCLI_EXIT_ERROR;
	if (pgbcli_out.json)
	{
		PQExpBufferData buf;

		initPQExpBuffer(&buf);
		pgbcli_json_rows(&buf, res, PQnfields(res));
		pgbcli_print_buffer(&buf);
		termPQExpBuffer(&buf);
		PQclear(res);
		return PGBCLI_EXIT_OK;
	}
	pgbcli_screen_init_out(&scr);
	if (PQntuples(res) == 0)
	{
		pgbcli_screen_text(&scr, NULL, "no endpoints");
		pgbcli_screen_newline(&scr);
	}
	else
	{
		pgbcli_table_init(&table, lengthof(headers), headers, "lrrllrrl");
		for (int row = 0; row < PQntuples(res); row++)
		{
			int			r = pgbcli_table_add_row(&table);
			const char *circuit = PQgetvalue(res, row, 5);
			char		text[64];

			pgbcli_table_set(&table, r, 0, PGBCLI_BOLD, PQgetvalue(res, row, 0));
			snprintf(text, sizeof(text), "%s/%s", PQgetvalue(res, row, 2),
					 PQgetvalue(res, row, 3));
			pgbcli_table_set(&table, r, 1, NULL, text);
			pgbcli_table_set(&table, r, 2, NULL,
							 PQgetisnull(res, row, 4) ? "-" : PQgetvalue(res, row, 4));
			pgbcli_table_set(&table, r, 3,
							 strcmp(circuit, "closed") == 0 ? NULL : PGBCLI_RED, circuit);
			pgbcli_table_set(&table, r, 4, PQgetisnull(res, row, 6) ? NULL : PGBCLI_YELLOW,
							 PQgetisnull(res, row, 6) ? "-" : PQgetvalue(res, row, 6));
			snprintf(text, sizeof(text), "%s (%s in a row)", PQgetvalue(res, row, 9),
					 PQgetvalue(res, row, 7));
			pgbcli_table_set(&table, r, 5, NULL, text);
			pgbcli_table_set(&table, r, 6, NULL, PQgetvalue(res, row, 8));
			pgbcli_table_set(&table, r, 7, PGBCLI_DIM, PQgetvalue(res, row, 1));
		}
		pgbcli_table_print(&scr, &table, 0);
		pgbcli_table_free(&table);
	}
	pgbcli_screen_flush(&scr);
	pgbcli_screen_free(&scr);
	PQclear(res);
	return PGBCLI_EXIT_OK;
}
