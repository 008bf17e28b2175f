/*-------------------------------------------------------------------------
 *
 * serve_pages.c
 *		The pages of pgbatch serve, as HTML: the sign-in form, the batches
 *		the user can see (with their bars), and a batch: its bar, its
 *		errors grouped by code with Retry buttons (retry_failed with the
 *		code and stage as filters), its review queue with each payload
 *		editable in place, and its warnings and errors.  Every text read
 *		from the database is escaped: payloads, keys, names and error
 *		messages are of anyone's making.  Every read goes through the SQL
 *		API's views, as the signed-in role, under row-level security.
 *
 * cli/serve_pages.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "pgbatch_serve.h"

/* the most rows a table of a page shows */
#define MAX_ROWS		100

/* the segments of a bar, in the order they are drawn */
static const char *const bar_kinds[] = {
	"completed", "running", "retrying", "pending", "failed", "cancelled"
};

#define PROGRESS_COLS \
	"id, name, pipeline, status, total, completed, running, retrying, " \
	"pending, failed, cancelled"
#define PROGRESS_FIRST_COUNT	5	/* the column of "completed" */

#define BATCHES_SQL \
	"SELECT " PROGRESS_COLS " FROM batch.progress " \
	"ORDER BY created_at DESC, id DESC LIMIT 100"

#define BATCH_SQL \
	"SELECT " PROGRESS_COLS " FROM batch.progress WHERE id = $1::bigint"

#define HEALTH_SQL \
	"SELECT state, reason, hint FROM batch.health " \
	"WHERE database = pg_catalog.current_database()"

#define ERRORS_SQL \
	"SELECT stage, error_code, items, " \
	"to_char(last_seen, 'YYYY-MM-DD HH24:MI:SS'), sample_error " \
	"FROM batch.errors WHERE batch_id = $1::bigint " \
	"ORDER BY stage, items DESC, error_code"

#define CAN_REVIEW_SQL \
	"SELECT pg_catalog.has_table_privilege('batch.review_queue', 'SELECT')"

#define REVIEW_SQL \
	"SELECT item_id, key, stage, error_code, attempts, error, " \
	"pg_catalog.jsonb_pretty(payload), count(*) OVER () " \
	"FROM batch.review_queue WHERE batch_id = $1::bigint " \
	"ORDER BY failed_at, item_id LIMIT 100"

#define LOG_SQL \
	"SELECT * FROM (SELECT to_char(finished_at, 'YYYY-MM-DD HH24:MI:SS'), " \
	"level, item_id, stage, attempt, error_code, message, finished_at " \
	"FROM batch.log WHERE batch_id = $1::bigint " \
	"AND " PGBCLI_LEVEL_SQL " " \
	">= $2::integer ORDER BY finished_at DESC LIMIT 100) AS l " \
	"ORDER BY finished_at"

/*
 * pgbw_html_escape
 *		Appends text with the characters HTML gives a meaning escaped, fit
 *		for an element's content and a quoted attribute's value.
 */
void
pgbw_html_escape(PQExpBuffer buf, const char *text)
{
	for (const char *p = text != NULL ? text : ""; *p != '\0'; p++)
	{
		switch (*p)
		{
			case '&':
				appendPQExpBufferStr(buf, "&amp;");
				break;
			case '<':
				appendPQExpBufferStr(buf, "&lt;");
				break;
			case '>':
				appendPQExpBufferStr(buf, "&gt;");
				break;
			case '"':
				appendPQExpBufferStr(buf, "&quot;");
				break;
			case '\'':
				appendPQExpBufferStr(buf, "&#39;");
				break;
			default:
				appendPQExpBufferChar(buf, *p);
				break;
		}
	}
}

/*
 * cell
 *		Appends a table cell with a value of a result, escaped.
 */
static void
cell(PQExpBuffer buf, const PGresult *res, int row, int col, const char *cls)
{
	if (cls != NULL)
		appendPQExpBuffer(buf, "<td class=\"%s\">", cls);
	else
		appendPQExpBufferStr(buf, "<td>");
	pgbw_html_escape(buf, PQgetvalue(res, row, col));
	appendPQExpBufferStr(buf, "</td>");
}

/*
 * page_begin
 *		The page's head, and the header with the user and the sign-out
 *		button.  events is the event stream the page listens to, or NULL.
 */
static void
page_begin(PQExpBuffer buf, PgbwSession *s, const char *title,
		   const char *events)
{
	appendPQExpBufferStr(buf,
						 "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
						 "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
						 "<title>");
	pgbw_html_escape(buf, title);
	appendPQExpBufferStr(buf, " · pgbatch</title>"
						 "<link rel=\"stylesheet\" href=\"/app.css\">"
						 "<script src=\"/app.js\" defer></script></head>\n<body");
	if (events != NULL)
		appendPQExpBuffer(buf, " data-events=\"%s\"", events);
	appendPQExpBufferStr(buf, "><header><a class=\"home\" href=\"/\">pgbatch</a>");
	if (s != NULL)
	{
		appendPQExpBufferStr(buf, "<span class=\"who\">signed in as <b id=\"who\">");
		pgbw_html_escape(buf, s->user);
		appendPQExpBuffer(buf, "</b></span>"
						  "<form method=\"post\" action=\"/signout\">"
						  "<input type=\"hidden\" name=\"csrf\" value=\"%s\">"
						  "<button id=\"signout\">Sign out</button></form>",
						  s->csrf);
	}
	appendPQExpBufferStr(buf, "<span id=\"live\" class=\"live\"></span></header>\n<main>");
}

/*
 * page_end
 *		Closes the page.
 */
static void
page_end(PQExpBuffer buf)
{
	appendPQExpBufferStr(buf, "</main></body></html>\n");
}

/*
 * flash
 *		The session's message for this page (an action's result), if any.
 */
static void
flash(PQExpBuffer buf, PgbwSession *s)
{
	bool		is_error;
	char	   *text = pgbw_session_take_flash(s, &is_error);

	if (text == NULL)
		return;
	appendPQExpBuffer(buf, "<p id=\"flash\" class=\"flash%s\" role=\"status\">",
					  is_error ? " error" : "");
	pgbw_html_escape(buf, text);
	appendPQExpBufferStr(buf, "</p>");
	free(text);
}

/*
 * problem
 *		A query failed: says so in the page.
 */
static void
problem(PQExpBuffer buf, const char *what, PQExpBuffer error)
{
	appendPQExpBufferStr(buf, "<p class=\"flash error\">");
	pgbw_html_escape(buf, what);
	appendPQExpBufferStr(buf, ": ");
	pgbw_html_escape(buf, error->data);
	appendPQExpBufferStr(buf, "</p>");
	resetPQExpBuffer(error);
}

/*
 * bar
 *		A batch's bar (an SVG: its segments' widths are attributes, which
 *		the content security policy allows, where style attributes would
 *		not be) and its legend, from a row of PROGRESS_COLS.
 */
static void
bar(PQExpBuffer buf, const PGresult *res, int row, bool legend)
{
	int64		total = strtoi64(PQgetvalue(res, row, 4), NULL, 10);
	int64		completed = strtoi64(PQgetvalue(res, row, PROGRESS_FIRST_COUNT), NULL, 10);
	double		x = 0;

	appendPQExpBuffer(buf, "<svg class=\"bar\" viewBox=\"0 0 1000 10\" "
					  "preserveAspectRatio=\"none\" role=\"img\" "
					  "aria-label=\"" INT64_FORMAT " of " INT64_FORMAT " completed\" "
					  "data-completed=\"" INT64_FORMAT "\" data-total=\"" INT64_FORMAT "\">",
					  completed, total, completed, total);
	for (int k = 0; k < lengthof(bar_kinds) && total > 0; k++)
	{
		int64		n = strtoi64(PQgetvalue(res, row, PROGRESS_FIRST_COUNT + k), NULL, 10);
		double		w = 1000.0 * n / total;

		if (n > 0)
			appendPQExpBuffer(buf, "<rect class=\"%s\" x=\"%.2f\" y=\"0\" "
							  "width=\"%.2f\" height=\"10\"></rect>",
							  bar_kinds[k], x, w);
		x += w;
	}
	appendPQExpBufferStr(buf, "</svg>");
	if (!legend)
		return;
	appendPQExpBuffer(buf, "<p id=\"ratio\" class=\"ratio\">" INT64_FORMAT " of "
					  INT64_FORMAT " completed (%.1f %%)</p><p class=\"legend\">",
					  completed, total, total > 0 ? 100.0 * completed / total : 0.0);
	for (int k = 0; k < lengthof(bar_kinds); k++)
		appendPQExpBuffer(buf, "<span class=\"key %s\" id=\"count-%s\">%s %s</span> ",
						  bar_kinds[k], bar_kinds[k], bar_kinds[k],
						  PQgetvalue(res, row, PROGRESS_FIRST_COUNT + k));
	appendPQExpBufferStr(buf, "</p>");
}

/*
 * health
 *		A warning above everything when no executor serves the database.
 */
static void
health(PQExpBuffer buf, PgbwSession *s, PQExpBuffer error)
{
	PGresult   *res = pgbw_query(s, HEALTH_SQL, 0, NULL, error);

	appendPQExpBufferStr(buf, "<section id=\"health\" data-live>");
	if (res == NULL)
		resetPQExpBuffer(error);	/* an older schema: no view, no banner */
	else if (PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), "serving") != 0)
	{
		appendPQExpBufferStr(buf, "<p class=\"flash error\">Executors: ");
		pgbw_html_escape(buf, PQgetvalue(res, 0, 0));
		appendPQExpBufferStr(buf, ". ");
		pgbw_html_escape(buf, PQgetvalue(res, 0, 1));
		appendPQExpBufferStr(buf, " ");
		pgbw_html_escape(buf, PQgetvalue(res, 0, 2));
		appendPQExpBufferStr(buf, "</p>");
	}
	PQclear(res);
	appendPQExpBufferStr(buf, "</section>");
}

/*
 * pgbw_page_signin
 *		The sign-in form, with its CSRF token (also in a cookie), and why
 *		the last attempt failed.
 */
void
pgbw_page_signin(PgbwReply *reply, const char *token, const char *message)
{
	PQExpBuffer buf = &reply->body;

	page_begin(buf, NULL, "Sign in", NULL);
	appendPQExpBufferStr(buf, "<section class=\"signin\"><h1>Sign in</h1>"
						 "<p>With your database role and its password. The database "
						 "server checks them; this page keeps neither.</p>");
	if (message != NULL)
	{
		appendPQExpBufferStr(buf, "<p id=\"flash\" class=\"flash error\">");
		pgbw_html_escape(buf, message);
		appendPQExpBufferStr(buf, "</p>");
	}
	appendPQExpBuffer(buf, "<form method=\"post\" action=\"/signin\">"
					  "<input type=\"hidden\" name=\"csrf\" value=\"%s\">"
					  "<label>Role <input id=\"user\" name=\"user\" "
					  "autocomplete=\"username\" required></label>"
					  "<label>Password <input id=\"password\" name=\"password\" "
					  "type=\"password\" autocomplete=\"current-password\" required></label>"
					  "<button id=\"signin\">Sign in</button></form></section>",
					  token);
	page_end(buf);
}

/*
 * pgbw_page_batches
 *		The batches the user can see, newest first, with their bars.
 */
void
pgbw_page_batches(PgbwReply *reply, PgbwSession *s)
{
	PQExpBuffer buf = &reply->body;
	PQExpBufferData error;
	PGresult   *res;

	initPQExpBuffer(&error);
	pthread_mutex_lock(&s->lock);
	page_begin(buf, s, "Batches", "/events");
	flash(buf, s);
	health(buf, s, &error);
	appendPQExpBufferStr(buf, "<h1>Batches</h1><section id=\"batches\" data-live>");
	res = pgbw_query(s, BATCHES_SQL, 0, NULL, &error);
	if (res == NULL)
		problem(buf, "The batches could not be read", &error);
	else if (PQntuples(res) == 0)
		appendPQExpBufferStr(buf, "<p>No batch you can see.</p>");
	else
	{
		appendPQExpBufferStr(buf, "<table><thead><tr><th>batch</th><th>pipeline</th>"
							 "<th>status</th><th class=\"wide\">progress</th>"
							 "<th>completed</th><th>failed</th></tr></thead><tbody>");
		for (int row = 0; row < PQntuples(res); row++)
		{
			appendPQExpBuffer(buf, "<tr><td><a href=\"/batch?id=%s\">",
							  PQgetvalue(res, row, 0));
			pgbw_html_escape(buf, PQgetvalue(res, row, 1));
			appendPQExpBufferStr(buf, "</a></td>");
			cell(buf, res, row, 2, NULL);
			cell(buf, res, row, 3, "status");
			appendPQExpBufferStr(buf, "<td class=\"wide\">");
			bar(buf, res, row, false);
			appendPQExpBuffer(buf, "</td><td class=\"num\">%s / %s</td>",
							  PQgetvalue(res, row, PROGRESS_FIRST_COUNT),
							  PQgetvalue(res, row, 4));
			cell(buf, res, row, PROGRESS_FIRST_COUNT + 4, "num");
			appendPQExpBufferStr(buf, "</tr>");
		}
		appendPQExpBufferStr(buf, "</tbody></table>");
	}
	PQclear(res);
	pthread_mutex_unlock(&s->lock);
	appendPQExpBufferStr(buf, "</section>");
	page_end(buf);
	termPQExpBuffer(&error);
}

/*
 * hidden
 *		The hidden fields every action's form carries: the CSRF token and
 *		the batch.
 */
static void
hidden(PQExpBuffer buf, PgbwSession *s, int64 id)
{
	appendPQExpBuffer(buf, "<input type=\"hidden\" name=\"csrf\" value=\"%s\">"
					  "<input type=\"hidden\" name=\"batch\" value=\"" INT64_FORMAT "\">",
					  s->csrf, id);
}

/*
 * option
 *		An option of a select, its value its text.
 */
static void
option(PQExpBuffer buf, const char *value)
{
	appendPQExpBufferStr(buf, "<option value=\"");
	pgbw_html_escape(buf, value);
	appendPQExpBufferStr(buf, "\">");
	pgbw_html_escape(buf, value);
	appendPQExpBufferStr(buf, "</option>");
}

/*
 * errors_section
 *		The batch's failed items by stage and code, each group with its
 *		Retry button, and a Retry form with both filters.
 */
static void
errors_section(PQExpBuffer buf, PgbwSession *s, int64 id, const char *idstr,
			   PQExpBuffer error)
{
	PGresult   *res = pgbw_query(s, ERRORS_SQL, 1, &idstr, error);

	appendPQExpBufferStr(buf, "<section id=\"errors\" data-live><h2>Errors by code</h2>");
	if (res == NULL)
	{
		problem(buf, "The errors could not be read", error);
		appendPQExpBufferStr(buf, "</section>");
		return;
	}
	if (PQntuples(res) == 0)
		appendPQExpBufferStr(buf, "<p>No failed item.</p>");
	else
	{
		appendPQExpBufferStr(buf, "<table><thead><tr><th>stage</th><th>code</th>"
							 "<th>items</th><th>last seen</th><th>sample error</th>"
							 "<th></th></tr></thead><tbody>");
		for (int row = 0; row < PQntuples(res); row++)
		{
			appendPQExpBufferStr(buf, "<tr>");
			cell(buf, res, row, 0, NULL);
			cell(buf, res, row, 1, "code");
			cell(buf, res, row, 2, "num");
			cell(buf, res, row, 3, NULL);
			cell(buf, res, row, 4, "message");
			appendPQExpBufferStr(buf, "<td><form method=\"post\" action=\"/retry\">");
			hidden(buf, s, id);
			appendPQExpBufferStr(buf, "<input type=\"hidden\" name=\"code\" value=\"");
			pgbw_html_escape(buf, PQgetvalue(res, row, 1));
			appendPQExpBufferStr(buf, "\"><input type=\"hidden\" name=\"stage\" value=\"");
			pgbw_html_escape(buf, PQgetvalue(res, row, 0));
			appendPQExpBufferStr(buf, "\"><button class=\"retry\">Retry these</button>"
								 "</form></td></tr>");
		}
		appendPQExpBufferStr(buf, "</tbody></table>");

		/* the filters: every code and stage seen above */
		appendPQExpBufferStr(buf, "<form id=\"retry-form\" class=\"filters\" "
							 "method=\"post\" action=\"/retry\">");
		hidden(buf, s, id);
		appendPQExpBufferStr(buf, "<label>code <select id=\"retry-code\" name=\"code\">"
							 "<option value=\"\">every code</option>");
		for (int row = 0; row < PQntuples(res); row++)
			option(buf, PQgetvalue(res, row, 1));
		appendPQExpBufferStr(buf, "</select></label><label>stage <select "
							 "id=\"retry-stage\" name=\"stage\">"
							 "<option value=\"\">every stage</option>");
		for (int row = 0; row < PQntuples(res); row++)
		{
			if (row > 0 && strcmp(PQgetvalue(res, row, 0),
								  PQgetvalue(res, row - 1, 0)) == 0)
				continue;		/* sorted by stage: each once */
			option(buf, PQgetvalue(res, row, 0));
		}
		appendPQExpBufferStr(buf, "</select></label>"
							 "<button id=\"retry\" class=\"retry\">Retry failed items</button></form>");
	}
	PQclear(res);
	appendPQExpBufferStr(buf, "</section>");
}

/*
 * review_section
 *		The review queue: each failed item with its error, and its payload
 *		in a form that stores it (update_item) and may retry it.
 */
static void
review_section(PQExpBuffer buf, PgbwSession *s, int64 id, const char *idstr,
			   PQExpBuffer error)
{
	PGresult   *res = pgbw_query(s, CAN_REVIEW_SQL, 0, NULL, error);
	int			n;

	appendPQExpBufferStr(buf, "<section id=\"review\" data-live><h2>Review queue</h2>");
	if (res != NULL && strcmp(PQgetvalue(res, 0, 0), "t") != 0)
	{
		appendPQExpBufferStr(buf, "<p>Your role may not read payloads (that takes "
							 "pgbatch_operator).</p></section>");
		PQclear(res);
		return;
	}
	PQclear(res);
	res = pgbw_query(s, REVIEW_SQL, 1, &idstr, error);
	if (res == NULL)
	{
		problem(buf, "The review queue could not be read", error);
		appendPQExpBufferStr(buf, "</section>");
		return;
	}
	n = PQntuples(res);
	if (n == 0)
		appendPQExpBufferStr(buf, "<p>Empty: no item waits for review.</p>");
	else if (strtoi64(PQgetvalue(res, 0, 7), NULL, 10) > n)
		appendPQExpBuffer(buf, "<p>The first %d of %s items.</p>", n,
						  PQgetvalue(res, 0, 7));
	for (int row = 0; row < n; row++)
	{
		const char *item = PQgetvalue(res, row, 0);

		appendPQExpBuffer(buf, "<article class=\"item\" id=\"item-%s\"><h3>item %s", item, item);
		if (!PQgetisnull(res, row, 1))
		{
			appendPQExpBufferStr(buf, " · <span class=\"key\">");
			pgbw_html_escape(buf, PQgetvalue(res, row, 1));
			appendPQExpBufferStr(buf, "</span>");
		}
		appendPQExpBufferStr(buf, "</h3><p class=\"meta\">failed at <b>");
		pgbw_html_escape(buf, PQgetvalue(res, row, 2));
		appendPQExpBufferStr(buf, "</b> with <b class=\"code\">");
		pgbw_html_escape(buf, PQgetvalue(res, row, 3));
		appendPQExpBuffer(buf, "</b> after %s %s</p><p class=\"message\">",
						  PQgetvalue(res, row, 4),
						  strcmp(PQgetvalue(res, row, 4), "1") == 0 ? "attempt" : "attempts");
		pgbw_html_escape(buf, PQgetvalue(res, row, 5));
		appendPQExpBufferStr(buf, "</p><form class=\"payload\" method=\"post\" action=\"/item\">");
		hidden(buf, s, id);
		appendPQExpBuffer(buf, "<input type=\"hidden\" name=\"item\" value=\"%s\">"
						  "<textarea name=\"payload\" rows=\"6\" spellcheck=\"false\" "
						  "id=\"payload-%s\">", item, item);
		pgbw_html_escape(buf, PQgetvalue(res, row, 6));
		appendPQExpBuffer(buf, "</textarea><span class=\"json-error\"></span>"
						  "<button name=\"then\" value=\"save\" id=\"save-%s\">Save</button>"
						  "<button name=\"then\" value=\"retry\" id=\"save-retry-%s\">"
						  "Save and retry</button></form></article>", item, item);
	}
	PQclear(res);
	appendPQExpBufferStr(buf, "</section>");
}

/*
 * log_section
 *		The batch's last warnings and errors (or errors only).
 */
static void
log_section(PQExpBuffer buf, PgbwSession *s, int64 id, const char *idstr,
			int level, PQExpBuffer error)
{
	char		levelstr[8];
	const char *params[2];
	PGresult   *res;

	snprintf(levelstr, sizeof(levelstr), "%d", level);
	params[0] = idstr;
	params[1] = levelstr;
	res = pgbw_query(s, LOG_SQL, 2, params, error);

	appendPQExpBuffer(buf, "<section id=\"log\" data-live><h2>Log</h2><p class=\"filters\">"
					  "<a href=\"/batch?id=" INT64_FORMAT "\"%s>warnings and errors</a> · "
					  "<a href=\"/batch?id=" INT64_FORMAT "&amp;level=error\"%s>errors only</a></p>",
					  id, level == PGBCLI_LEVEL_WARNING ? " class=\"on\"" : "",
					  id, level == PGBCLI_LEVEL_ERROR ? " class=\"on\"" : "");
	if (res == NULL)
		problem(buf, "The log could not be read", error);
	else if (PQntuples(res) == 0)
		appendPQExpBufferStr(buf, "<p>Nothing to show.</p>");
	else
	{
		appendPQExpBufferStr(buf, "<table><thead><tr><th>at</th><th>level</th>"
							 "<th>item</th><th>stage</th><th>attempt</th><th>code</th>"
							 "<th>message</th></tr></thead><tbody>");
		for (int row = 0; row < PQntuples(res); row++)
		{
			const char *lvl = PQgetvalue(res, row, 1);

			appendPQExpBufferStr(buf, "<tr>");
			for (int col = 0; col < 7; col++)
				cell(buf, res, row, col, col == 6 ? "message" :
					 col != 1 ? NULL :
					 strcmp(lvl, "error") == 0 ? "error" :
					 strcmp(lvl, "warning") == 0 ? "warning" : "info");
			appendPQExpBufferStr(buf, "</tr>");
		}
		appendPQExpBufferStr(buf, "</tbody></table>");
	}
	PQclear(res);
	appendPQExpBufferStr(buf, "</section>");
}

/*
 * pgbw_page_batch
 *		A batch: its bar, errors by code, review queue and log.
 */
void
pgbw_page_batch(PgbwReply *reply, PgbwSession *s, int64 id, int level)
{
	PQExpBuffer buf = &reply->body;
	PQExpBufferData error;
	PGresult   *res;
	char		idstr[32];
	char		events[64];
	const char *params[1];

	snprintf(idstr, sizeof(idstr), INT64_FORMAT, id);
	snprintf(events, sizeof(events), "/events?batch=" INT64_FORMAT, id);
	params[0] = idstr;
	initPQExpBuffer(&error);
	pthread_mutex_lock(&s->lock);
	res = pgbw_query(s, BATCH_SQL, 1, params, &error);
	if (res == NULL || PQntuples(res) == 0)
	{
		reply->status = res == NULL ? 500 : 404;
		page_begin(buf, s, "No such batch", NULL);
		if (res == NULL)
			problem(buf, "The batch could not be read", &error);
		else
			appendPQExpBuffer(buf, "<h1>No batch " INT64_FORMAT "</h1><p>It does "
							  "not exist, or your role cannot see it.</p>", id);
	}
	else
	{
		const char *status = PQgetvalue(res, 0, 3);

		page_begin(buf, s, PQgetvalue(res, 0, 1), events);
		appendPQExpBufferStr(buf, "<h1 id=\"batch-name\">");
		pgbw_html_escape(buf, PQgetvalue(res, 0, 1));
		appendPQExpBufferStr(buf, "</h1>");
		flash(buf, s);
		health(buf, s, &error);
		appendPQExpBufferStr(buf, "<section id=\"progress\" data-live><p class=\"meta\">"
							 "pipeline <b>");
		pgbw_html_escape(buf, PQgetvalue(res, 0, 2));
		appendPQExpBufferStr(buf, "</b> · <span id=\"status\" class=\"status\">");
		pgbw_html_escape(buf, status);
		appendPQExpBufferStr(buf, "</span></p>");
		bar(buf, res, 0, true);
		if (strcmp(status, "queued") == 0 || strcmp(status, "running") == 0)
		{
			appendPQExpBufferStr(buf, "<form class=\"cancel\" method=\"post\" action=\"/cancel\">");
			hidden(buf, s, id);
			appendPQExpBufferStr(buf, "<button id=\"cancel\" class=\"danger\">Cancel the "
								 "waiting items</button></form>");
		}
		appendPQExpBufferStr(buf, "</section>");
		errors_section(buf, s, id, idstr, &error);
		review_section(buf, s, id, idstr, &error);
		log_section(buf, s, id, idstr, level, &error);
	}
	PQclear(res);
	pthread_mutex_unlock(&s->lock);
	page_end(buf);
	termPQExpBuffer(&error);
}
