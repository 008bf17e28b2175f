/*-------------------------------------------------------------------------
 *
 * watch.c
 *		watch BATCH: a live view of a batch until it finishes (or q, or
 *		Ctrl-C).  It LISTENs on the extension's channel and refreshes when a
 *		notification about the batch or an endpoint arrives (at most every
 *		200 ms: bursts are coalesced), and every 5 s for the rate and ETA.
 *		On a terminal it redraws a frame in place: progress bar, counts,
 *		rate and ETA, what is wrong with the executors (batch.health), the
 *		paused endpoints its stages use, errors by stage and code, and the
 *		newest warnings and errors of the log.  Elsewhere it prints a status
 *		line (or, with --json, a JSON object) per change.
 *
 * cli/watch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <time.h>

#include "common/logging.h"

#include "pgbatch_cli.h"

/* refreshes: at most one per MIN_GAP, at least one per SLOW */
#define WATCH_MIN_GAP_MS	200
#define WATCH_SLOW_MS		5000

/* the rate is measured over the samples of the last minute */
#define RATE_WINDOW_MS		60000
#define RATE_MIN_SPAN_MS	2000
#define SAMPLE_GAP_MS		1000
#define NSAMPLES			64

/* how much a frame shows */
#define LOG_LINES			20
#define ERROR_GROUPS		8
#define PLAIN_BAR_WIDTH		20
#define MAX_BAR_WIDTH		60

/* the newest warnings and errors of the batch's log */
#define LOG_SQL \
	"SELECT batch_id, item_id, stage, attempt, level, event, error_code, " \
	"message, finished_at, http_status, " \
	"to_char(finished_at, 'HH24:MI:SS') AS at " \
	"FROM batch.log WHERE batch_id = $1::bigint " \
	"AND level IN ('warning', 'error') " \
	"ORDER BY finished_at DESC LIMIT $2::integer"
#define LOG_JSON_COLS		10
#define LOG_COL_ITEM		1
#define LOG_COL_STAGE		2
#define LOG_COL_ATTEMPT		3
#define LOG_COL_LEVEL		4
#define LOG_COL_CODE		6
#define LOG_COL_MESSAGE		7
#define LOG_COL_AT			10

/* the endpoints the batch's stages use that are paused or whose circuit is not closed */
#define ENDPOINTS_VISIBLE_SQL \
	"SELECT coalesce(has_table_privilege(" \
	"to_regclass('batch.endpoint_status'), 'SELECT') " \
	"AND has_table_privilege(to_regclass('batch.stages'), 'SELECT'), false)"
#define ENDPOINTS_SQL \
	"SELECT name, circuit, paused_until, consecutive_failures " \
	"FROM batch.endpoint_status " \
	"WHERE (paused_until IS NOT NULL OR circuit <> 'closed') " \
	"AND id IN (SELECT s.endpoint_id FROM batch.stages s " \
	"JOIN batch.batches b ON b.pipeline_id = s.pipeline_id " \
	"WHERE b.id = $1::bigint) ORDER BY name"

/* the completed count at a moment */
typedef struct Sample
{
	int64		ms;
	int64		completed;
} Sample;

/* what watch knows of its batch */
typedef struct Watch
{
	PgbcliBatch batch;
	char		id[32];			/* the batch id, as a query parameter */
	bool		endpoints_visible;	/* batch.endpoint_status can be read */

	/* the last refresh */
	PGresult   *progress;
	PGresult   *errors;
	PGresult   *log;
	PGresult   *endpoints;		/* NULL if not visible */
	PGresult   *health;			/* this database's executors; NULL if not
								 * readable */
	PgbcliProgress p;
	double		rate;
	double		eta;

	/* completed counts, a ring, for the rate */
	Sample		samples[NSAMPLES];
	int			nsamples;
	int			next_sample;

	/* what the last plain or JSON output showed */
	char	   *last_shown;
	char	   *last_health;	/* ... of the executors (plain output) */
} Watch;

/*
 * clear_results
 *		Frees the results of the last refresh.
 */
static void
clear_results(Watch *w)
{
	PQclear(w->progress);
	PQclear(w->errors);
	PQclear(w->log);
	PQclear(w->endpoints);
	PQclear(w->health);
	w->progress = w->errors = w->log = w->endpoints = w->health = NULL;
}

/*
 * fetch_log
 *		The newest warnings and errors of the batch's log.
 */
static PGresult *
fetch_log(PGconn *conn, const Watch *w)
{
	char		limit[16];
	const char *params[2];

	snprintf(limit, sizeof(limit), "%d", LOG_LINES);
	params[0] = w->id;
	params[1] = limit;
	return pgbcli_query(conn, LOG_SQL, 2, params);
}

/*
 * add_sample
 *		Keeps the completed count of now (at most one sample a second).
 */
static void
add_sample(Watch *w, int64 now)
{
	int			newest = (w->next_sample + NSAMPLES - 1) % NSAMPLES;

	if (w->nsamples > 0 && now - w->samples[newest].ms < SAMPLE_GAP_MS)
		return;
	w->samples[w->next_sample].ms = now;
	w->samples[w->next_sample].completed = w->p.completed;
	w->next_sample = (w->next_sample + 1) % NSAMPLES;
	if (w->nsamples < NSAMPLES)
		w->nsamples++;
}

/*
 * measure_rate
 *		Items completed per second between the oldest sample of the last
 *		minute and now; until there are two seconds of samples (and once
 *		the batch has finished), the rate since the batch started.
 */
static double
measure_rate(const Watch *w, int64 now)
{
	const Sample *oldest = NULL;

	if (w->p.finished)
		return pgbcli_overall_rate(&w->p);
	for (int i = 0; i < w->nsamples; i++)
	{
		const Sample *s = &w->samples[i];

		if (now - s->ms <= RATE_WINDOW_MS && (oldest == NULL || s->ms < oldest->ms))
			oldest = s;
	}
	if (oldest == NULL || now - oldest->ms < RATE_MIN_SPAN_MS)
		return pgbcli_overall_rate(&w->p);
	return Max(w->p.completed - oldest->completed, 0) * 1000.0 / (now - oldest->ms);
}

/*
 * refresh
 *		Reads the batch's progress, errors, log and the endpoints' state;
 *		false after reporting an error (or that the batch is gone).
 */
static bool
refresh(PGconn *conn, Watch *w)
{
	const char *params[1] = {w->id};
	int64		now = pgbcli_now_ms();

	clear_results(w);
	w->progress = pgbcli_fetch_progress(conn, &w->batch);
	if (w->progress == NULL)
		return false;
	if (PQntuples(w->progress) == 0)
	{
		pg_log_error("batch \"%s\" no longer exists", pgbcli_clean_message(w->batch.name));
		return false;
	}
	w->errors = pgbcli_query(conn,
							 "SELECT batch_id, batch, stage, error_code, items, "
							 "first_seen, last_seen, sample_error "
							 "FROM batch.errors WHERE batch_id = $1::bigint "
							 "ORDER BY items DESC, stage, error_code",
							 1, params);
	if (w->errors == NULL)
		return false;
	w->log = fetch_log(conn, w);
	if (w->log == NULL)
		return false;
	if (w->endpoints_visible)
	{
		w->endpoints = pgbcli_query(conn, ENDPOINTS_SQL, 1, params);
		if (w->endpoints == NULL)
			return false;
	}

	w->health = pgbcli_fetch_health_here(conn);

	pgbcli_read_progress(w->progress, 0, &w->p);
	add_sample(w, now);
	w->rate = measure_rate(w, now);
	w->eta = pgbcli_eta(&w->p, w->rate);
	return true;
}

/*
 * screen_counts
 *		Appends the counts, each kind in the colour of its part of the bar.
 */
static void
screen_counts(PgbcliScreen *scr, const PgbcliProgress *p)
{
	pgbcli_screen_printf(scr, PGBCLI_GREEN, INT64_FORMAT "/" INT64_FORMAT " completed",
						 p->completed, p->total);
	pgbcli_screen_printf(scr, NULL, "  " INT64_FORMAT " pending", p->pending);
	pgbcli_screen_printf(scr, p->retrying > 0 ? PGBCLI_YELLOW : NULL,
						 "  " INT64_FORMAT " retrying", p->retrying);
	pgbcli_screen_printf(scr, p->running > 0 ? PGBCLI_CYAN : NULL,
						 "  " INT64_FORMAT " running", p->running);
	pgbcli_screen_printf(scr, p->failed > 0 ? PGBCLI_RED : NULL,
						 "  " INT64_FORMAT " failed", p->failed);
	if (p->cancelled > 0)
		pgbcli_screen_printf(scr, PGBCLI_MAGENTA, "  " INT64_FORMAT " cancelled",
							 p->cancelled);
}

/*
 * frame_header
 *		The top of a frame: the batch, status, times, bar and counts.
 */
static void
frame_header(PgbcliScreen *scr, const Watch *w, int cols)
{
	const PgbcliProgress *p = &w->p;
	char		elapsed[32];
	char		rate[32];
	char		eta[32];
	char	   *name = pgbcli_sanitize(p->name);
	char	   *pipeline = pgbcli_sanitize(p->pipeline);
	char	   *bar;
	int			width = Min(Max(cols - 10, 10), MAX_BAR_WIDTH);

	pgbcli_screen_text(scr, PGBCLI_BOLD, "pgbatch watch");
	pgbcli_screen_printf(scr, NULL, "  batch \"%s\" (id " INT64_FORMAT
						 ", pipeline %s)", name, p->id, pipeline);
	pgbcli_screen_newline(scr);

	pgbcli_format_duration(p->elapsed, elapsed, sizeof(elapsed));
	pgbcli_format_rate(w->rate, rate, sizeof(rate));
	pgbcli_format_duration(w->eta, eta, sizeof(eta));
	pgbcli_screen_text(scr, NULL, "status ");
	pgbcli_screen_text(scr, pgbcli_status_color(p->status), p->status);
	pgbcli_screen_printf(scr, NULL, "   elapsed %s   rate %s   eta %s",
						 elapsed, rate, eta);
	pgbcli_screen_newline(scr);

	bar = pgbcli_bar(p, width);
	pgbcli_screen_bar(scr, bar);
	pgbcli_screen_printf(scr, NULL, " %3d%%",
						 p->total > 0 ? (int) (p->completed * 100 / p->total) : 0);
	pgbcli_screen_newline(scr);
	screen_counts(scr, p);
	pgbcli_screen_newline(scr);

	free(bar);
	free(name);
	free(pipeline);
}

/*
 * frame_endpoints
 *		A line per endpoint that is paused or whose circuit is not closed.
 */
static void
frame_endpoints(PgbcliScreen *scr, const PGresult *res)
{
	for (int row = 0; res != NULL && row < PQntuples(res); row++)
	{
		char	   *name = pgbcli_sanitize(PQgetvalue(res, row, 0));

		pgbcli_screen_printf(scr, PGBCLI_YELLOW, "endpoint %s: circuit %s",
							 name, PQgetvalue(res, row, 1));
		if (!PQgetisnull(res, row, 2))
			pgbcli_screen_printf(scr, PGBCLI_YELLOW, ", paused until %s",
								 PQgetvalue(res, row, 2));
		pgbcli_screen_printf(scr, NULL, " (%s consecutive failures)",
							 PQgetvalue(res, row, 3));
		pgbcli_screen_newline(scr);
		free(name);
	}
}

/*
 * frame_errors
 *		The batch's errors by stage and code, as many groups as fit in
 *		room lines.
 */
static void
frame_errors(PgbcliScreen *scr, const PGresult *res, int room)
{
	int			ngroups = PQntuples(res);
	int			shown = Min(ngroups, Min(ERROR_GROUPS, room - 2));

	if (ngroups == 0)
	{
		pgbcli_screen_text(scr, PGBCLI_DIM, "no failed items");
		pgbcli_screen_newline(scr);
		return;
	}
	pgbcli_screen_text(scr, PGBCLI_BOLD, "errors by stage and code");
	pgbcli_screen_newline(scr);
	if (shown <= 0)
		return;
	pgbcli_errors_table(scr, res, 2, false, shown);
	if (shown < ngroups)
	{
		pgbcli_screen_printf(scr, PGBCLI_DIM, "  ... %d more groups", ngroups - shown);
		pgbcli_screen_newline(scr);
	}
}

/*
 * frame_log_line
 *		One line of the log: time, level, what it is about, code, message.
 */
static void
frame_log_line(PgbcliScreen *scr, const PGresult *res, int row)
{
	const char *level = PQgetvalue(res, row, LOG_COL_LEVEL);
	PQExpBufferData text;
	char	   *clean;

	initPQExpBuffer(&text);
	if (!PQgetisnull(res, row, LOG_COL_ITEM))
		appendPQExpBuffer(&text, "item %s", PQgetvalue(res, row, LOG_COL_ITEM));
	else
		appendPQExpBufferStr(&text, "batch");
	if (!PQgetisnull(res, row, LOG_COL_STAGE))
		appendPQExpBuffer(&text, " %s", PQgetvalue(res, row, LOG_COL_STAGE));
	if (!PQgetisnull(res, row, LOG_COL_ATTEMPT))
		appendPQExpBuffer(&text, " #%s", PQgetvalue(res, row, LOG_COL_ATTEMPT));
	if (!PQgetisnull(res, row, LOG_COL_CODE))
		appendPQExpBuffer(&text, "  %s", PQgetvalue(res, row, LOG_COL_CODE));
	if (!PQgetisnull(res, row, LOG_COL_MESSAGE))
		appendPQExpBuffer(&text, ": %s", PQgetvalue(res, row, LOG_COL_MESSAGE));
	clean = pgbcli_sanitize(text.data);

	pgbcli_screen_printf(scr, PGBCLI_DIM, "  %s", PQgetvalue(res, row, LOG_COL_AT));
	pgbcli_screen_printf(scr, pgbcli_level_color(level), "  %-7s  ", level);
	pgbcli_screen_text(scr, NULL, clean);
	pgbcli_screen_newline(scr);
	free(clean);
	termPQExpBuffer(&text);
}

/*
 * frame_log
 *		The newest warnings and errors, newest first, as many as fit in room
 *		lines.
 */
static void
frame_log(PgbcliScreen *scr, const PGresult *res, int room)
{
	int			shown = Min(PQntuples(res), room - 1);

	pgbcli_screen_text(scr, PGBCLI_BOLD, "newest warnings and errors");
	pgbcli_screen_newline(scr);
	if (PQntuples(res) == 0)
	{
		pgbcli_screen_text(scr, PGBCLI_DIM, "  none");
		pgbcli_screen_newline(scr);
	}
	for (int row = 0; row < shown; row++)
		frame_log_line(scr, res, row);
}

/*
 * draw_frame
 *		Redraws the whole view in place: home, the lines (each erasing what
 *		the last frame left to its right), then erase below.  It fits the
 *		terminal: lines are cut at its width, and the log gets the rows
 *		left.
 */
static void
draw_frame(const Watch *w)
{
	PgbcliScreen scr;
	int			cols;
	int			rows;
	int			room;

	pgbcli_term_size(&cols, &rows);
	pgbcli_screen_init(&scr, cols);
	scr.erase = true;
	appendPQExpBufferStr(&scr.buf, "\033[H");

	frame_header(&scr, w, cols);
	(void) pgbcli_health_lines(&scr, w->health);
	frame_endpoints(&scr, w->endpoints);
	pgbcli_screen_newline(&scr);

	/* the footer takes two lines, and the log at least three */
	room = rows - 1 - scr.lines - 2 - 3;
	frame_errors(&scr, w->errors, room);
	pgbcli_screen_newline(&scr);
	room = rows - 1 - scr.lines - 2;
	frame_log(&scr, w->log, room);
	pgbcli_screen_newline(&scr);

	if (w->p.finished)
		pgbcli_screen_printf(&scr, PGBCLI_BOLD, "batch finished: %s", w->p.status);
	else
		pgbcli_screen_text(&scr, PGBCLI_DIM,
						   "q or Ctrl-C quits; redrawn as the batch changes");
	pgbcli_screen_newline(&scr);
	appendPQExpBufferStr(&scr.buf, "\033[J");
	pgbcli_screen_flush(&scr);
	pgbcli_screen_free(&scr);
}

/*
 * status_line
 *		Appends the one-line state of the batch (plain output): its status,
 *		bar and counts, without the rate (which changes all the time).
 */
static void
status_line(PQExpBuffer buf, const Watch *w)
{
	char	   *bar = pgbcli_bar(&w->p, PLAIN_BAR_WIDTH);
	char	   *name = pgbcli_sanitize(w->p.name);

	appendPQExpBuffer(buf, "%s  %s  [%s]  ", name, w->p.status, bar);
	pgbcli_counts_text(buf, &w->p);
	free(bar);
	free(name);
}

/*
 * clock_text
 *		The local time, for the lines of plain and JSON output.
 */
static void
clock_text(char *out, size_t len, bool iso)
{
	time_t		now = time(NULL);
	struct tm	tm;

	localtime_r(&now, &tm);
	strftime(out, len, iso ? "%Y-%m-%dT%H:%M:%S%z" : "%H:%M:%S", &tm);
}

/*
 * print_plain
 *		Plain output: what is wrong with the executors, when that changed;
 *		a status line when the state changed since the last one; when the
 *		batch has finished, its errors by stage and code.
 */
static void
print_plain(Watch *w)
{
	PQExpBufferData state;
	char		clock[32];
	char		rate[32];
	char		eta[32];

	PgbcliScreen health;

	/* what is wrong with the executors, when that changes */
	pgbcli_screen_init(&health, 0);
	(void) pgbcli_health_lines(&health, w->health);
	if (strcmp(health.buf.data, w->last_health ? w->last_health : "") != 0)
	{
		fputs(health.buf.data, stdout);
		free(w->last_health);
		w->last_health = pg_strdup(health.buf.data);
	}
	pgbcli_screen_free(&health);

	initPQExpBuffer(&state);
	status_line(&state, w);
	if (w->last_shown == NULL || strcmp(w->last_shown, state.data) != 0)
	{
		clock_text(clock, sizeof(clock), false);
		pgbcli_format_rate(w->rate, rate, sizeof(rate));
		pgbcli_format_duration(w->eta, eta, sizeof(eta));
		printf("%s  %s  rate %s  eta %s\n", clock, state.data, rate, eta);
		free(w->last_shown);
		w->last_shown = pg_strdup(state.data);
	}
	if (w->p.finished)
	{
		PgbcliScreen scr;

		printf("batch finished: %s\n", w->p.status);
		pgbcli_screen_init(&scr, 0);
		if (PQntuples(w->errors) > 0)
			pgbcli_errors_table(&scr, w->errors, 2, false, -1);
		pgbcli_screen_flush(&scr);
		pgbcli_screen_free(&scr);
	}
	fflush(stdout);
	termPQExpBuffer(&state);
}

/*
 * print_json
 *		JSON output: an object on one line when the state changed since the
 *		last one (and always the last, when the batch has finished): the
 *		progress with rate and ETA, the errors, the newest log lines, the
 *		endpoints in trouble.
 */
static void
print_json(Watch *w)
{
	PQExpBufferData state;
	PQExpBufferData buf;
	char		clock[32];

	initPQExpBuffer(&state);
	status_line(&state, w);
	if (w->last_shown != NULL && strcmp(w->last_shown, state.data) == 0 &&
		!w->p.finished)
	{
		termPQExpBuffer(&state);
		return;
	}
	free(w->last_shown);
	w->last_shown = pg_strdup(state.data);
	termPQExpBuffer(&state);

	initPQExpBuffer(&buf);
	clock_text(clock, sizeof(clock), true);
	appendPQExpBufferStr(&buf, "{\"time\": ");
	pgbcli_json_string(&buf, clock);
	appendPQExpBufferStr(&buf, ", \"progress\": ");
	pgbcli_json_progress(&buf, w->progress, 0, w->rate, w->eta);
	appendPQExpBufferStr(&buf, ", \"errors\": ");
	pgbcli_json_rows(&buf, w->errors, PQnfields(w->errors));
	appendPQExpBufferStr(&buf, ", \"log\": ");
	pgbcli_json_rows(&buf, w->log, LOG_JSON_COLS);
	appendPQExpBufferStr(&buf, ", \"endpoints\": ");
	if (w->endpoints != NULL)
		pgbcli_json_rows(&buf, w->endpoints, PQnfields(w->endpoints));
	else
		appendPQExpBufferStr(&buf, "[]");
	appendPQExpBufferStr(&buf, ", \"health\": ");
	if (w->health != NULL)
		pgbcli_json_row(&buf, w->health, 0, PQnfields(w->health));
	else
		appendPQExpBufferStr(&buf, "null");
	appendPQExpBuffer(&buf, ", \"finished\": %s}", w->p.finished ? "true" : "false");

	/* one object a line: the arrays' line breaks go */
	for (char *c = buf.data; *c; c++)
		if (*c == '\n')
			*c = ' ';
	pgbcli_print_buffer(&buf);
	termPQExpBuffer(&buf);
}

/*
 * show
 *		Shows the last refresh the way the output wants it.
 */
static void
show(Watch *w)
{
	if (pgbcli_out.json)
		print_json(w);
	else if (pgbcli_out.redraw)
		draw_frame(w);
	else
		print_plain(w);
}

/*
 * endpoints_visible
 *		True if the user may read batch.endpoint_status.
 */
static bool
endpoints_visible(PGconn *conn, bool *visible)
{
	PGresult   *res = pgbcli_query(conn, ENDPOINTS_VISIBLE_SQL, 0, NULL);

	if (res == NULL)
		return false;
	*visible = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return true;
}

/*
 * run
 *		The loop: refresh and show when the pacer says so, wait for
 *		notifications, keys and signals in between; until the batch has
 *		finished or the user quits.  Returns the exit status.
 */
static int
run(PGconn *conn, Watch *w)
{
	PgbcliFilter filter = {w->batch.id, true};
	PgbcliPacer pacer;

	pgbcli_pacer_init(&pacer, WATCH_MIN_GAP_MS, WATCH_SLOW_MS);
	for (;;)
	{
		int			wake;

		if (pgbcli_pacer_ready(&pacer))
		{
			if (!refresh(conn, w))
				return PGBCLI_EXIT_ERROR;
			show(w);
			pgbcli_pacer_done(&pacer);
			if (w->p.finished)
				return PGBCLI_EXIT_OK;
		}
		wake = pgbcli_wait(conn, &filter, pgbcli_pacer_timeout(&pacer));
		if (wake & PGBCLI_WAKE_ERROR)
			return PGBCLI_EXIT_ERROR;
		if (wake & PGBCLI_WAKE_QUIT)
			return PGBCLI_EXIT_OK;
		if (wake & (PGBCLI_WAKE_NOTIFY | PGBCLI_WAKE_RESIZE))
			pgbcli_pacer_ask(&pacer);
	}
}

/*
 * pgbcli_cmd_watch
 *		watch BATCH: LISTEN, set up the terminal, run the loop, and put the
 *		terminal back.
 */
int
pgbcli_cmd_watch(PGconn *conn, const char *arg)
{
	Watch		w;
	int			status;

	memset(&w, 0, sizeof(w));
	if (!pgbcli_resolve_batch(conn, arg, &w.batch))
		return PGBCLI_EXIT_ERROR;
	snprintf(w.id, sizeof(w.id), INT64_FORMAT, w.batch.id);

	pgbcli_signals_init();
	if (!pgbcli_listen(conn, WATCH_SLOW_MS / 1000) ||
		!endpoints_visible(conn, &w.endpoints_visible))
	{
		pgbcli_free_batch(&w.batch);
		return PGBCLI_EXIT_ERROR;
	}

	pgbcli_term_keyboard_begin();
	if (pgbcli_out.redraw)
		pgbcli_term_draw_begin();
	status = run(conn, &w);
	pgbcli_term_end();

	clear_results(&w);
	free(w.last_shown);
	free(w.last_health);
	pgbcli_free_batch(&w.batch);
	return status;
}
