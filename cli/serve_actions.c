/*-------------------------------------------------------------------------
 *
 * serve_actions.c
 *		What the forms of pgbatch serve do, each through the SQL API as the
 *		signed-in role (so the same checks and row-level security apply as
 *		in psql): retry a batch's failed items, with an error code and a
 *		stage as filters (batch.retry_failed); store an item's edited
 *		payload (batch.update_item, which validates it) and maybe retry
 *		the item (batch.retry_item); cancel a batch (batch.cancel).  Each
 *		action leaves its result as the next page's message and redirects
 *		to the batch's page.  Every value is a query parameter.
 *
 * cli/serve_actions.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "pgbatch_serve.h"

#define RETRY_SQL \
	"SELECT batch.retry_failed($1::bigint, " \
	"error_codes => CASE WHEN $2::text = '' THEN NULL ELSE ARRAY[$2::text] END, " \
	"stage => NULLIF($3::text, ''))"

#define UPDATE_SQL	"SELECT batch.update_item($1::bigint, $2::jsonb)"
#define RETRY_ITEM_SQL	"SELECT batch.retry_item($1::bigint)"
#define CANCEL_SQL	"SELECT batch.cancel($1::bigint)"

/*
 * pgbw_error_text
 *		The server's message, detail and hint of a failed query (or libpq's
 *		message), each made fit for one line, into error.
 */
void
pgbw_error_text(PQExpBuffer error, PGconn *conn, const PGresult *res)
{
	const char *fields[3] = {NULL, NULL, NULL};

	if (res != NULL)
	{
		fields[0] = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
		fields[1] = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
		fields[2] = PQresultErrorField(res, PG_DIAG_MESSAGE_HINT);
	}
	if (fields[0] == NULL)
		fields[0] = PQerrorMessage(conn);
	for (int i = 0; i < 3; i++)
	{
		char	   *clean;

		if (fields[i] == NULL)
			continue;
		clean = pgbcli_sanitize(fields[i]);
		appendPQExpBuffer(error, "%s%s", i > 0 ? " " : "", clean);
		free(clean);
	}
}

/*
 * pgbw_query
 *		Runs a query on the session's connection (the caller holds the
 *		session's lock), its parameters apart from its text.  The rows, or
 *		NULL with the error in error.  A lost connection ends the session.
 */
PGresult *
pgbw_query(PgbwSession *s, const char *sql, int nparams,
		   const char *const *params, PQExpBuffer error)
{
	PGresult   *res = PQexecParams(s->conn, sql, nparams, NULL, params,
								   NULL, NULL, 0);

	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		return res;
	pgbw_error_text(error, s->conn, res);
	PQclear(res);
	if (PQstatus(s->conn) == CONNECTION_BAD)
	{
		appendPQExpBufferStr(error, " The connection to the database was lost: sign in again.");
		pgbw_session_end(s);
	}
	return NULL;
}

/*
 * run
 *		Runs an action's query; its single value into value (if given), or
 *		false with the error as the session's next message.
 */
static bool
run(PgbwSession *s, const char *sql, int nparams, const char *const *params,
	char *value, size_t len, const char *what)
{
	PQExpBufferData error;
	PGresult   *res;

	initPQExpBuffer(&error);
	res = pgbw_query(s, sql, nparams, params, &error);
	if (res == NULL)
	{
		PQExpBufferData msg;

		initPQExpBuffer(&msg);
		appendPQExpBuffer(&msg, "%s: %s", what, error.data);
		pgbw_session_flash(s, true, msg.data);
		termPQExpBuffer(&msg);
		termPQExpBuffer(&error);
		return false;
	}
	if (value != NULL)
		strlcpy(value, PQntuples(res) > 0 ? PQgetvalue(res, 0, 0) : "", len);
	PQclear(res);
	termPQExpBuffer(&error);
	return true;
}

/*
 * retry
 *		POST /retry: batch.retry_failed with the code and stage filters.
 */
static void
retry(PgbwSession *s, const char *batch, const PgbwForm *form)
{
	const char *code = pgbw_form_get(form, "code");
	const char *stage = pgbw_form_get(form, "stage");
	const char *params[3];
	char		n[32];
	char		msg[512];

	params[0] = batch;
	params[1] = code != NULL ? code : "";
	params[2] = stage != NULL ? stage : "";
	if (!run(s, RETRY_SQL, 3, params, n, sizeof(n), "Nothing was retried"))
		return;
	if (strcmp(n, "0") == 0)
		snprintf(msg, sizeof(msg), "No failed item matched: nothing re-queued.");
	else
		snprintf(msg, sizeof(msg), "Re-queued %s failed %s at the stage where %s failed.",
				 n, strcmp(n, "1") == 0 ? "item" : "items",
				 strcmp(n, "1") == 0 ? "it" : "they");
	pgbw_session_flash(s, false, msg);
}

/*
 * item
 *		POST /item: stores the edited payload (the server validates it
 *		against the pipeline), then retries the item if asked.
 */
static void
item(PgbwSession *s, const PgbwForm *form)
{
	const char *id = pgbw_form_get(form, "item");
	const char *payload = pgbw_form_get(form, "payload");
	const char *then = pgbw_form_get(form, "then");
	const char *params[2];
	char		done[8];
	char		msg[256];

	if (id == NULL || !pgbcli_looks_like_id(id) || payload == NULL)
	{
		pgbw_session_flash(s, true, "The form lacks the item or its payload.");
		return;
	}
	params[0] = id;
	params[1] = payload;
	if (!run(s, UPDATE_SQL, 2, params, NULL, 0, "The payload was not saved"))
		return;
	if (then == NULL || strcmp(then, "retry") != 0)
	{
		snprintf(msg, sizeof(msg), "Saved the payload of item %s.", id);
		pgbw_session_flash(s, false, msg);
		return;
	}
	if (!run(s, RETRY_ITEM_SQL, 1, params, done, sizeof(done),
			 "The payload was saved, but the item was not retried"))
		return;
	snprintf(msg, sizeof(msg), strcmp(done, "t") == 0 ?
			 "Saved the payload of item %s and re-queued it." :
			 "Saved the payload of item %s; it was not failed, so it was not re-queued.",
			 id);
	pgbw_session_flash(s, false, msg);
}

/*
 * cancel
 *		POST /cancel: batch.cancel.
 */
static void
cancel(PgbwSession *s, const char *batch)
{
	char		n[32];
	char		msg[128];

	if (!run(s, CANCEL_SQL, 1, &batch, n, sizeof(n), "The batch was not cancelled"))
		return;
	snprintf(msg, sizeof(msg), "Cancelled %s waiting %s.", n,
			 strcmp(n, "1") == 0 ? "item" : "items");
	pgbw_session_flash(s, false, msg);
}

/*
 * pgbw_action
 *		Runs the action a form posted to path (its CSRF token checked), and
 *		redirects to the batch's page.
 */
void
pgbw_action(PgbwReply *reply, PgbwSession *s, const char *path,
			const PgbwForm *form)
{
	const char *batch = pgbw_form_get(form, "batch");
	char		location[64];

	if (batch == NULL || !pgbcli_looks_like_id(batch))
	{
		reply->status = 400;
		reply->content_type = "text/plain; charset=utf-8";
		appendPQExpBufferStr(&reply->body, "The form names no batch.\n");
		return;
	}
	pthread_mutex_lock(&s->lock);
	if (strcmp(path, "/retry") == 0)
		retry(s, batch, form);
	else if (strcmp(path, "/item") == 0)
		item(s, form);
	else if (strcmp(path, "/cancel") == 0)
		cancel(s, batch);
	else
	{
		pthread_mutex_unlock(&s->lock);
		reply->status = 404;
		reply->content_type = "text/plain; charset=utf-8";
		appendPQExpBufferStr(&reply->body, "Not found.\n");
		return;
	}
	pthread_mutex_unlock(&s->lock);
	snprintf(location, sizeof(location), "/batch?id=%s", batch);
	reply->status = 303;
	reply->location = pg_strdup(location);
}
