/*-------------------------------------------------------------------------
 *
 * log.c
 *		log BATCH: the batch's log (batch.log), oldest first, the last N
 *		lines at or above a level; with --follow, then the lines that come
 *		later, fetched when a notification about the batch arrives (no
 *		polling: a slow timer only in case an event is missed).  Lines are
 *		ordered, and followed, by (finished_at, item_id, stage, attempt,
 *		event).
 *
 * cli/log.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "pgbatch_cli.h"

/* the columns of batch.log (what JSON shows), then display and order keys */
#define LOG_SELECT \
	"SELECT batch_id, item_id, stage, attempt, level, event, error_code, " \
	"message, started_at, finished_at, duration_ms, http_status, " \
	"to_char(finished_at, 'YYYY-MM-DD HH24:MI:SS.MS') AS at, " \
	"coalesce(item_id, 0) AS k_item, coalesce(stage, '') AS k_stage, " \
	"coalesce(attempt, 0) AS k_attempt " \
	"FROM batch.log " \
	"WHERE batch_id = $1::bigint " \
	"AND " PGBCLI_LEVEL_SQL " " \
	">= $2::integer "

#define LOG_ORDER		"finished_at, k_item, k_stage, k_attempt, event"
#define LOG_ORDER_DESC	"finished_at DESC, k_item DESC, k_stage DESC, " \
	"k_attempt DESC, event DESC"

/* the last $3 lines, oldest first */
#define LOG_LAST_SQL \
	"SELECT * FROM (" LOG_SELECT "ORDER BY " LOG_ORDER_DESC \
	" LIMIT $3::integer) AS l ORDER BY " LOG_ORDER

/*
 * the lines after the key ($3 .. $7), oldest first, a page at a time (the
 * first condition, implied by the second, lets the indexes on the batch's
 * attempts and events by time skip the older lines)
 */
#define LOG_AFTER_SQL \
	LOG_SELECT "AND finished_at >= $3::timestamptz " \
	"AND (finished_at, coalesce(item_id, 0), coalesce(stage, ''), " \
	"coalesce(attempt, 0), event) > ($3::timestamptz, $4::bigint, $5::text, " \
	"$6::integer, $7::text) ORDER BY " LOG_ORDER " LIMIT 1000"
#define LOG_PAGE		1000

/* the columns of the queries above */
#define COL_ITEM		1
#define COL_STAGE		2
#define COL_ATTEMPT		3
#define COL_LEVEL		4
#define COL_EVENT		5
#define COL_CODE		6
#define COL_MESSAGE		7
#define COL_FINISHED	9
#define COL_DURATION	10
#define COL_HTTP		11
#define COL_AT			12
#define COL_K_ITEM		13
#define COL_K_STAGE		14
#define COL_K_ATTEMPT	15
#define LOG_JSON_COLS	12

/* the slow timer of --follow, in case a notification was missed */
#define FOLLOW_SLOW_MS		5000
#define FOLLOW_MIN_GAP_MS	200

/* the last line printed: the key the next lines come after */
typedef struct LogKey
{
	char	   *finished_at;
	char	   *item;
	char	   *stage;
	char	   *attempt;
	char	   *event;
} LogKey;

/*
 * key_set
 *		Makes key the order key of a row.
 */
static void
key_set(LogKey *key, const PGresult *res, int row)
{
	free(key->finished_at);
	free(key->item);
	free(key->stage);
	free(key->attempt);
	free(key->event);
	key->finished_at = pg_strdup(PQgetvalue(res, row, COL_FINISHED));
	key->item = pg_strdup(PQgetvalue(res, row, COL_K_ITEM));
	key->stage = pg_strdup(PQgetvalue(res, row, COL_K_STAGE));
	key->attempt = pg_strdup(PQgetvalue(res, row, COL_K_ATTEMPT));
	key->event = pg_strdup(PQgetvalue(res, row, COL_EVENT));
}

/*
 * key_init
 *		A key before every line.
 */
static void
key_init(LogKey *key)
{
	key->finished_at = pg_strdup("-infinity");
	key->item = pg_strdup("0");
	key->stage = pg_strdup("");
	key->attempt = pg_strdup("0");
	key->event = pg_strdup("");
}

/*
 * key_free
 *		Frees a key's strings.
 */
static void
key_free(LogKey *key)
{
	free(key->finished_at);
	free(key->item);
	free(key->stage);
	free(key->attempt);
	free(key->event);
}

/*
 * value
 *		A column's value, or NULL when it is NULL.
 */
static const char *
value(const PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/*
 * line_subject
 *		Appends what a line is about: "item 17 draft #2", or "batch".
 */
static void
line_subject(PQExpBuffer buf, const PGresult *res, int row)
{
	const char *item = value(res, row, COL_ITEM);
	const char *stage = value(res, row, COL_STAGE);
	const char *attempt = value(res, row, COL_ATTEMPT);

	if (item != NULL)
		appendPQExpBuffer(buf, "item %s", item);
	else
		appendPQExpBufferStr(buf, "batch");
	if (stage != NULL)
		appendPQExpBuffer(buf, " %s", stage);
	if (attempt != NULL)
		appendPQExpBuffer(buf, " #%s", attempt);
}

/*
 * line_details
 *		Appends the HTTP status and duration of an attempt, if any:
 *		" (http 503, 12.3 ms)".
 */
static void
line_details(PQExpBuffer buf, const PGresult *res, int row)
{
	const char *http = value(res, row, COL_HTTP);
	const char *duration = value(res, row, COL_DURATION);

	if (http == NULL && duration == NULL)
		return;
	appendPQExpBufferStr(buf, " (");
	if (http != NULL)
		appendPQExpBuffer(buf, "http %s%s", http, duration != NULL ? ", " : "");
	if (duration != NULL)
		appendPQExpBuffer(buf, "%s ms", duration);
	appendPQExpBufferChar(buf, ')');
}

/*
 * print_line
 *		Appends one log line in text: time, level, event, what it is about,
 *		error code and message.
 */
static void
print_line(PgbcliScreen *scr, const PGresult *res, int row)
{
	const char *level = PQgetvalue(res, row, COL_LEVEL);
	const char *code = value(res, row, COL_CODE);
	const char *message = value(res, row, COL_MESSAGE);
	PQExpBufferData text;
	char	   *clean;

	initPQExpBuffer(&text);
	pgbcli_screen_printf(scr, PGBCLI_DIM, "%s", PQgetvalue(res, row, COL_AT));
	pgbcli_screen_printf(scr, pgbcli_level_color(level), "  %-7s", level);
	pgbcli_screen_printf(scr, NULL, "  %-16s  ", PQgetvalue(res, row, COL_EVENT));
	line_subject(&text, res, row);
	clean = pgbcli_sanitize(text.data);
	pgbcli_screen_text(scr, PGBCLI_BOLD, clean);
	free(clean);

	resetPQExpBuffer(&text);
	if (code != NULL)
		pgbcli_screen_printf(scr, PGBCLI_RED, "  %s", code);
	if (message != NULL)
		appendPQExpBuffer(&text, "%s%s", code != NULL ? ": " : "  ", message);
	line_details(&text, res, row);
	clean = pgbcli_sanitize(text.data);
	pgbcli_screen_text(scr, NULL, clean);
	free(clean);
	pgbcli_screen_newline(scr);
	termPQExpBuffer(&text);
}

/*
 * print_lines
 *		Prints the rows of a log query: text lines, or (one_per_line) a JSON
 *		object a line; the key becomes the last row's.
 */
static void
print_lines(const PGresult *res, bool one_per_line, LogKey *key)
{
	int			nrows = PQntuples(res);

	if (pgbcli_out.json && one_per_line)
	{
		PQExpBufferData buf;

		initPQExpBuffer(&buf);
		for (int row = 0; row < nrows; row++)
		{
			pgbcli_json_row(&buf, res, row, LOG_JSON_COLS);
			pgbcli_print_buffer(&buf);
		}
		termPQExpBuffer(&buf);
	}
	else if (pgbcli_out.json)
	{
		PQExpBufferData buf;

		initPQExpBuffer(&buf);
		pgbcli_json_rows(&buf, res, LOG_JSON_COLS);
		pgbcli_print_buffer(&buf);
		termPQExpBuffer(&buf);
	}
	else
	{
		PgbcliScreen scr;

		pgbcli_screen_init_out(&scr);
		for (int row = 0; row < nrows; row++)
			print_line(&scr, res, row);
		pgbcli_screen_flush(&scr);
		pgbcli_screen_free(&scr);
	}
	if (nrows > 0)
		key_set(key, res, nrows - 1);
}

/*
 * print_last
 *		Prints the last --limit lines; false after reporting an error.
 */
static bool
print_last(PGconn *conn, const char *id, LogKey *key)
{
	char		level[16];
	char		limit[16];
	const char *params[3];
	PGresult   *res;

	snprintf(level, sizeof(level), "%d", (int) pgbcli_opts.level);
	snprintf(limit, sizeof(limit), "%d", pgbcli_opts.limit);
	params[0] = id;
	params[1] = level;
	params[2] = limit;
	res = pgbcli_query(conn, LOG_LAST_SQL, 3, params);
	if (res == NULL)
		return false;
	print_lines(res, pgbcli_opts.follow, key);
	PQclear(res);
	return true;
}

/*
 * print_after
 *		Prints every line after the key, a page at a time; false after
 *		reporting an error.
 */
static bool
print_after(PGconn *conn, const char *id, LogKey *key)
{
	char		level[16];
	const char *params[7];
	int			nrows;

	snprintf(level, sizeof(level), "%d", (int) pgbcli_opts.level);
	do
	{
		PGresult   *res;

		params[0] = id;
		params[1] = level;
		params[2] = key->finished_at;
		params[3] = key->item;
		params[4] = key->stage;
		params[5] = key->attempt;
		params[6] = key->event;
		res = pgbcli_query(conn, LOG_AFTER_SQL, 7, params);
		if (res == NULL)
			return false;
		nrows = PQntuples(res);
		print_lines(res, true, key);
		PQclear(res);
	} while (nrows == LOG_PAGE);
	return true;
}

/*
 * follow
 *		--follow: after the last lines, prints new ones as notifications
 *		about the batch arrive, until Ctrl-C (or SIGTERM); LISTEN comes
 *		first, so that nothing falls between.
 */
static int
follow(PGconn *conn, const PgbcliBatch *batch, const char *id)
{
	PgbcliFilter filter = {batch->id, false};
	PgbcliPacer pacer;
	LogKey		key;
	int			status = PGBCLI_EXIT_OK;

	pgbcli_signals_init();
	if (!pgbcli_listen(conn, FOLLOW_SLOW_MS / 1000))
		return PGBCLI_EXIT_ERROR;

	key_init(&key);
	if (!print_last(conn, id, &key))
	{
		key_free(&key);
		return PGBCLI_EXIT_ERROR;
	}

	pgbcli_pacer_init(&pacer, FOLLOW_MIN_GAP_MS, FOLLOW_SLOW_MS);
	pgbcli_pacer_done(&pacer);
	for (;;)
	{
		int			wake;

		if (pgbcli_pacer_ready(&pacer))
		{
			if (!print_after(conn, id, &key))
			{
				status = PGBCLI_EXIT_ERROR;
				break;
			}
			pgbcli_pacer_done(&pacer);
		}
		wake = pgbcli_wait(conn, &filter, pgbcli_pacer_timeout(&pacer));
		if (wake & PGBCLI_WAKE_ERROR)
		{
			status = PGBCLI_EXIT_ERROR;
			break;
		}
		if (wake & PGBCLI_WAKE_QUIT)
			break;
		if (wake & PGBCLI_WAKE_NOTIFY)
			pgbcli_pacer_ask(&pacer);
	}
	key_free(&key);
	return status;
}

/*
 * pgbcli_cmd_log
 *		log BATCH: the last --limit lines of the batch's log at or above
 *		--level, oldest first; then, with --follow, the new ones.
 */
int
pgbcli_cmd_log(PGconn *conn, const char *arg)
{
	PgbcliBatch batch;
	char		id[32];
	int			status = PGBCLI_EXIT_OK;

	if (!pgbcli_resolve_batch(conn, arg, &batch))
		return PGBCLI_EXIT_ERROR;
	snprintf(id, sizeof(id), INT64_FORMAT, batch.id);

	if (pgbcli_opts.follow)
		status = follow(conn, &batch, id);
	else
	{
		LogKey		key;

		key_init(&key);
		if (!print_last(conn, id, &key))
			status = PGBCLI_EXIT_ERROR;
		key_free(&key);
	}
	pgbcli_free_batch(&batch);
	return status;
}
