/*-------------------------------------------------------------------------
 *
 * progress.c
 *		A batch's progress, read from batch.progress: its counts, its bar,
 *		its rate (items completed per second since it started) and ETA, and
 *		the same as JSON.  Shared by status and watch.
 *
 * cli/progress.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <math.h>

#include "pgbatch_cli.h"

/*
 * The columns of batch.progress, then the seconds since the batch started
 * (until it finished), measured by the server's clock.
 */
#define PROGRESS_SQL \
	"SELECT id, name, pipeline, status, total, pending, running, retrying, " \
	"completed, failed, cancelled, completion_ratio, created_at, started_at, " \
	"finished_at, owner, " \
	"extract(epoch FROM coalesce(finished_at, now()) - started_at)::float8 " \
	"AS elapsed " \
	"FROM batch.progress "

/* the columns JSON shows (those of batch.progress), then the elapsed seconds */
#define PROGRESS_JSON_COLS		16
#define PROGRESS_COL_ELAPSED	16

/* the least time a running batch is measured over for its rate */
#define MIN_RATE_SECONDS	1.0

/* the kinds of items in a bar, in the order they are drawn */
#define BAR_KINDS	6

/*
 * pgbcli_fetch_progress
 *		The progress of one batch, or of every batch the user can see (when
 *		batch is NULL), by id.  NULL after reporting an error.
 */
PGresult *
pgbcli_fetch_progress(PGconn *conn, const PgbcliBatch *batch)
{
	char		id[32];
	const char *params[1];

	if (batch == NULL)
		return pgbcli_query(conn, PROGRESS_SQL "ORDER BY id", 0, NULL);

	snprintf(id, sizeof(id), INT64_FORMAT, batch->id);
	params[0] = id;
	return pgbcli_query(conn, PROGRESS_SQL "WHERE id = $1::bigint", 1, params);
}

/*
 * count
 *		A count column; 0 when NULL.
 */
static int64
count(const PGresult *res, int row, int col)
{
	if (PQgetisnull(res, row, col))
		return 0;
	return strtoi64(PQgetvalue(res, row, col), NULL, 10);
}

/*
 * pgbcli_read_progress
 *		Reads one row of pgbcli_fetch_progress's result; the strings point
 *		into the result.  pending is made the items waiting for a first
 *		attempt (batch.progress counts the retrying ones in it too).
 */
void
pgbcli_read_progress(const PGresult *res, int row, PgbcliProgress *p)
{
	p->id = count(res, row, 0);
	p->name = PQgetvalue(res, row, 1);
	p->pipeline = PQgetvalue(res, row, 2);
	p->status = PQgetvalue(res, row, 3);
	p->total = count(res, row, 4);
	p->running = count(res, row, 6);
	p->retrying = count(res, row, 7);
	p->pending = count(res, row, 5) - p->retrying;
	if (p->pending < 0)
		p->pending = 0;
	p->completed = count(res, row, 8);
	p->failed = count(res, row, 9);
	p->cancelled = count(res, row, 10);
	p->elapsed = PQgetisnull(res, row, PROGRESS_COL_ELAPSED) ? -1 :
		strtod(PQgetvalue(res, row, PROGRESS_COL_ELAPSED), NULL);
	p->finished = strcmp(p->status, "completed") == 0 ||
		strcmp(p->status, "partial") == 0 ||
		strcmp(p->status, "failed") == 0 ||
		strcmp(p->status, "cancelled") == 0;
}

/*
 * pgbcli_overall_rate
 *		Items completed per second since the batch started (until it
 *		finished); -1 if it has not started, or (while it runs) started less
 *		than a second ago, when a rate would mean little.
 */
double
pgbcli_overall_rate(const PgbcliProgress *p)
{
	if (p->elapsed <= 0 || (!p->finished && p->elapsed < MIN_RATE_SECONDS))
		return -1;
	return p->completed / p->elapsed;
}

/*
 * pgbcli_eta
 *		Seconds until the items still to run are done at this rate; -1 when
 *		it cannot be told (finished, or no rate yet).
 */
double
pgbcli_eta(const PgbcliProgress *p, double rate)
{
	int64		left = p->pending + p->retrying + p->running;

	if (p->finished || left == 0)
		return -1;
	if (!(rate > 0))
		return -1;
	return left / rate;
}

/*
 * pgbcli_bar
 *		A progress bar of width characters, each kind of item taking its
 *		share: completed '#', failed 'x', cancelled '-', retrying '~',
 *		running '>', pending '.'.  A kind that has items gets at least one
 *		character when the bar is wide enough.  Returns a malloc'd string.
 */
char *
pgbcli_bar(const PgbcliProgress *p, int width)
{
	static const char marks[BAR_KINDS] = {'#', 'x', '-', '~', '>', '.'};
	int64		counts[BAR_KINDS];
	int			cells[BAR_KINDS];
	double		rest[BAR_KINDS];
	int64		total = 0;
	int			used = 0;
	char	   *bar = pg_malloc(width + 1);
	char	   *out = bar;

	counts[0] = p->completed;
	counts[1] = p->failed;
	counts[2] = p->cancelled;
	counts[3] = p->retrying;
	counts[4] = p->running;
	counts[5] = p->pending;
	for (int k = 0; k < BAR_KINDS; k++)
		total += counts[k];

	if (total == 0)
	{
		memset(bar, '.', width);
		bar[width] = '\0';
		return bar;
	}

	/* each kind's share, rounded down; then the largest remainders */
	for (int k = 0; k < BAR_KINDS; k++)
	{
		double		share = (double) counts[k] * width / total;

		cells[k] = (int) floor(share);
		rest[k] = share - cells[k];
		used += cells[k];
	}
	while (used < width)
	{
		int			best = 0;

		for (int k = 1; k < BAR_KINDS; k++)
			if (rest[k] > rest[best])
				best = k;
		cells[best]++;
		rest[best] = -1;
		used++;
	}

	/* a kind with items but no cell takes one from the widest */
	for (int k = 0; k < BAR_KINDS; k++)
	{
		int			widest = 0;

		if (counts[k] == 0 || cells[k] > 0)
			continue;
		for (int j = 1; j < BAR_KINDS; j++)
			if (cells[j] > cells[widest])
				widest = j;
		if (cells[widest] > 1)
		{
			cells[widest]--;
			cells[k]++;
		}
	}

	for (int k = 0; k < BAR_KINDS; k++)
	{
		memset(out, marks[k], cells[k]);
		out += cells[k];
	}
	*out = '\0';
	return bar;
}

/*
 * pgbcli_status_color
 *		The colour of a batch's status.
 */
const char *
pgbcli_status_color(const char *status)
{
	if (strcmp(status, "completed") == 0)
		return PGBCLI_GREEN;
	if (strcmp(status, "partial") == 0)
		return PGBCLI_YELLOW;
	if (strcmp(status, "failed") == 0)
		return PGBCLI_RED;
	if (strcmp(status, "cancelled") == 0)
		return PGBCLI_MAGENTA;
	if (strcmp(status, "running") == 0)
		return PGBCLI_CYAN;
	return NULL;
}

/*
 * pgbcli_json_progress
 *		Appends a row of pgbcli_fetch_progress's result as an object: the
 *		columns of batch.progress, then elapsed_seconds, rate (items per
 *		second) and eta_seconds (null when unknown).
 */
void
pgbcli_json_progress(PQExpBuffer buf, const PGresult *res, int row,
					 double rate, double eta)
{
	appendPQExpBufferChar(buf, '{');
	pgbcli_json_fields(buf, res, row, PROGRESS_JSON_COLS);
	appendPQExpBufferStr(buf, ", \"elapsed_seconds\": ");
	if (PQgetisnull(res, row, PROGRESS_COL_ELAPSED))
		appendPQExpBufferStr(buf, "null");
	else
		pgbcli_json_number(buf, strtod(PQgetvalue(res, row, PROGRESS_COL_ELAPSED),
									   NULL));
	appendPQExpBufferStr(buf, ", \"rate\": ");
	pgbcli_json_number(buf, rate);
	appendPQExpBufferStr(buf, ", \"eta_seconds\": ");
	pgbcli_json_number(buf, eta);
	appendPQExpBufferChar(buf, '}');
}

/*
 * pgbcli_counts_text
 *		Appends the counts in words: "47/100 completed, 30 pending, ...";
 *		cancelled items only when there are some.
 */
void
pgbcli_counts_text(PQExpBuffer buf, const PgbcliProgress *p)
{
	appendPQExpBuffer(buf,
					  INT64_FORMAT "/" INT64_FORMAT " completed, "
					  INT64_FORMAT " pending, " INT64_FORMAT " retrying, "
					  INT64_FORMAT " running, " INT64_FORMAT " failed",
					  p->completed, p->total, p->pending, p->retrying,
					  p->running, p->failed);
	if (p->cancelled > 0)
		appendPQExpBuffer(buf, ", " INT64_FORMAT " cancelled", p->cancelled);
}
