/*-------------------------------------------------------------------------
 *
 * item.c
 *		One item, for the morning triage without SQL: item ITEM shows its
 *		state, its payload, its outputs by stage and every attempt with
 *		status, latency, error and the API's answer; fix ITEM opens its
 *		payload in $VISUAL or $EDITOR, has the server validate and store it
 *		(batch.update_item) and offers to re-queue it (batch.retry_item).
 *		What the user may not read (payloads, outputs, answers: operators
 *		only) is left out, not an error.
 *
 * cli/item.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/logging.h"

#include "pgbatch_cli.h"

/* the item's state, as readers may read it */
#define ITEM_SQL \
	"SELECT i.id, i.batch_id, b.name AS batch, i.key, i.status, i.stage, " \
	"i.attempt, i.error_code, i.error_message, i.next_due, i.created_at, " \
	"i.updated_at, i.finished_at " \
	"FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id " \
	"WHERE i.id = $1::bigint"
#define ITEM_COLS		13

/* what else the user may read */
#define PRIVILEGES_SQL \
	"SELECT has_column_privilege('batch.items', 'payload', 'SELECT'), " \
	"has_table_privilege('batch.outputs', 'SELECT'), " \
	"has_column_privilege('batch.attempts', 'response_body', 'SELECT')"

#define PAYLOAD_SQL \
	"SELECT payload, jsonb_pretty(payload) FROM batch.items WHERE id = $1::bigint"
#define OUTPUTS_SQL \
	"SELECT o.stage, o.output, o.created_at, jsonb_pretty(o.output) " \
	"FROM batch.outputs o " \
	"JOIN batch.items i ON i.id = o.item_id " \
	"JOIN batch.stages s ON s.pipeline_id = (SELECT b.pipeline_id FROM batch.batches b " \
	"WHERE b.id = i.batch_id) AND s.name = o.stage " \
	"WHERE o.item_id = $1::bigint ORDER BY s.position"
#define ATTEMPTS_SQL \
	"SELECT stage, attempt, outcome, http_status, " \
	"round(extract(epoch FROM finished_at - started_at) * 1000)::bigint AS latency_ms, " \
	"error_code, message, started_at, finished_at%s " \
	"FROM batch.attempts WHERE item_id = $1::bigint ORDER BY id"
#define ATTEMPTS_COLS	9

/* what item and fix read of an item */
typedef struct ItemView
{
	char		id[32];
	PGresult   *item;
	PGresult   *payload;		/* NULL if not readable */
	PGresult   *outputs;		/* NULL if not readable */
	PGresult   *attempts;
	bool		answers;		/* attempts have the response_body column */
} ItemView;

/*
 * free_view
 *		Frees what fetch_item read.
 */
static void
free_view(ItemView *v)
{
	PQclear(v->item);
	PQclear(v->payload);
	PQclear(v->outputs);
	PQclear(v->attempts);
	memset(v, 0, sizeof(ItemView));
}

/*
 * fetch_item
 *		Reads the item and what the user may read of it; false after
 *		reporting an error, or that the item does not exist for the user.
 */
static bool
fetch_item(PGconn *conn, const char *arg, ItemView *v)
{
	const char *params[1];
	PGresult   *priv;
	char		sql[512];
	bool		ok = true;

	memset(v, 0, sizeof(ItemView));
	if (!pgbcli_looks_like_id(arg))
	{
		pg_log_error("\"%s\" is not an item id", pgbcli_clean_message(arg));
		pg_log_error_hint("Item ids are the numbers in the item_id column of \"%s review BATCH\".",
						  "pgbatch");
		return false;
	}
	strlcpy(v->id, arg, sizeof(v->id));
	params[0] = v->id;
	v->item = pgbcli_query(conn, ITEM_SQL, 1, params);
	if (v->item == NULL)
		return false;
	if (PQntuples(v->item) == 0)
	{
		pg_log_error("item %s does not exist", v->id);
		pg_log_error_hint("An item of a batch you cannot see does not exist for you.");
		free_view(v);
		return false;
	}
	priv = pgbcli_query(conn, PRIVILEGES_SQL, 0, NULL);
	if (priv == NULL)
	{
		free_view(v);
		return false;
	}
	if (strcmp(PQgetvalue(priv, 0, 0), "t") == 0)
		ok = ok && (v->payload = pgbcli_query(conn, PAYLOAD_SQL, 1, params)) != NULL;
	if (ok && strcmp(PQgetvalue(priv, 0, 1), "t") == 0)
		ok = (v->outputs = pgbcli_query(conn, OUTPUTS_SQL, 1, params)) != NULL;
	v->answers = strcmp(PQgetvalue(priv, 0, 2), "t") == 0;
	PQclear(priv);
	snprintf(sql, sizeof(sql), ATTEMPTS_SQL, v->answers ? ", response_body" : "");
	if (ok)
		ok = (v->attempts = pgbcli_query(conn, sql, 1, params)) != NULL;
	if (!ok)
		free_view(v);
	return ok;
}

/*
 * screen_json_block
 *		Appends a text of several lines (a pretty-printed JSON value, an
 *		API's answer), each a screen line, indented.
 */
static void
screen_json_block(PgbcliScreen *scr, const char *json, int indent)
{
	char	   *text = pgbcli_sanitize_lines(json);
	char	   *line = text;

	while (line != NULL && *line != '\0')
	{
		char	   *end = strchr(line, '\n');

		if (end != NULL)
			*end = '\0';
		pgbcli_screen_pad(scr, indent);
		pgbcli_screen_text(scr, NULL, line);
		pgbcli_screen_newline(scr);
		line = end != NULL ? end + 1 : NULL;
	}
	free(text);
}

/*
 * print_header
 *		The item's state: batch, key, status, stage, attempt, error, times.
 */
static void
print_header(PgbcliScreen *scr, const ItemView *v)
{
	const PGresult *r = v->item;
	const char *status = PQgetvalue(r, 0, 4);

	pgbcli_screen_printf(scr, PGBCLI_BOLD, "item %s", v->id);
	pgbcli_screen_printf(scr, NULL, " of batch \"%s\" (id %s)", PQgetvalue(r, 0, 2),
						 PQgetvalue(r, 0, 1));
	if (!PQgetisnull(r, 0, 3))
		pgbcli_screen_printf(scr, NULL, ", key %s", PQgetvalue(r, 0, 3));
	pgbcli_screen_newline(scr);
	pgbcli_screen_text(scr, NULL, "status ");
	pgbcli_screen_text(scr, pgbcli_status_color(status), status);
	pgbcli_screen_printf(scr, NULL, " at stage %s, attempt %s", PQgetvalue(r, 0, 5),
						 PQgetvalue(r, 0, 6));
	if (strcmp(status, "pending") == 0)
		pgbcli_screen_printf(scr, NULL, ", due %s", PQgetvalue(r, 0, 9));
	pgbcli_screen_newline(scr);
	if (!PQgetisnull(r, 0, 7))
	{
		pgbcli_screen_printf(scr, PGBCLI_RED, "error %s", PQgetvalue(r, 0, 7));
		if (!PQgetisnull(r, 0, 8))
			pgbcli_screen_printf(scr, NULL, ": %s", PQgetvalue(r, 0, 8));
		pgbcli_screen_newline(scr);
	}
	pgbcli_screen_printf(scr, PGBCLI_DIM, "created %s, updated %s", PQgetvalue(r, 0, 10),
						 PQgetvalue(r, 0, 11));
	if (!PQgetisnull(r, 0, 12))
		pgbcli_screen_printf(scr, PGBCLI_DIM, ", finished %s", PQgetvalue(r, 0, 12));
	pgbcli_screen_newline(scr);
}

/*
 * print_attempts
 *		Every attempt as a table line, then the answers of those that did
 *		not complete (a completed one's answer is the stage's output).
 */
static void
print_attempts(PgbcliScreen *scr, const PGresult *res, bool answers)
{
	static const char *const headers[] = {
		"stage", "#", "outcome", "http", "ms", "error", "message"
	};
	PgbcliTable table;

	pgbcli_screen_newline(scr);
	pgbcli_screen_text(scr, PGBCLI_BOLD, "attempts");
	pgbcli_screen_newline(scr);
	if (PQntuples(res) == 0)
	{
		pgbcli_screen_text(scr, NULL, "  none yet");
		pgbcli_screen_newline(scr);
		return;
	}
	pgbcli_table_init(&table, lengthof(headers), headers, "lrlrrll");
	for (int row = 0; row < PQntuples(res); row++)
	{
		int			r = pgbcli_table_add_row(&table);
		const char *outcome = PQgetvalue(res, row, 2);

		pgbcli_table_set(&table, r, 0, NULL, PQgetvalue(res, row, 0));
		pgbcli_table_set(&table, r, 1, NULL, PQgetvalue(res, row, 1));
		pgbcli_table_set(&table, r, 2,
						 strcmp(outcome, "completed") == 0 ? PGBCLI_GREEN :
						 strcmp(outcome, "retry") == 0 ? PGBCLI_YELLOW : PGBCLI_RED,
						 outcome);
		pgbcli_table_set(&table, r, 3, NULL, PQgetvalue(res, row, 3));
		pgbcli_table_set(&table, r, 4, NULL, PQgetvalue(res, row, 4));
		pgbcli_table_set(&table, r, 5, NULL, PQgetvalue(res, row, 5));
		pgbcli_table_set(&table, r, 6, NULL, PQgetvalue(res, row, 6));
	}
	pgbcli_table_print(scr, &table, 2);
	pgbcli_table_free(&table);

	for (int row = 0; answers && row < PQntuples(res); row++)
	{
		if (strcmp(PQgetvalue(res, row, 2), "completed") == 0 ||
			PQgetisnull(res, row, ATTEMPTS_COLS))
			continue;
		pgbcli_screen_newline(scr);
		pgbcli_screen_printf(scr, PGBCLI_BOLD, "  the API's answer to attempt %s at stage %s",
							 PQgetvalue(res, row, 1), PQgetvalue(res, row, 0));
		if (!PQgetisnull(res, row, 3))
			pgbcli_screen_printf(scr, NULL, " (HTTP %s)", PQgetvalue(res, row, 3));
		pgbcli_screen_newline(scr);
		screen_json_block(scr, PQgetvalue(res, row, ATTEMPTS_COLS), 4);
	}
}

/*
 * print_item_text
 *		item: the state, payload, outputs by stage and attempts.
 */
static void
print_item_text(const ItemView *v)
{
	PgbcliScreen scr;

	pgbcli_screen_init_out(&scr);
	print_header(&scr, v);
	if (v->payload != NULL && PQntuples(v->payload) == 1)
	{
		pgbcli_screen_newline(&scr);
		pgbcli_screen_text(&scr, PGBCLI_BOLD, "payload");
		pgbcli_screen_newline(&scr);
		screen_json_block(&scr, PQgetvalue(v->payload, 0, 1), 2);
	}
	if (v->outputs != NULL)
	{
		pgbcli_screen_newline(&scr);
		pgbcli_screen_text(&scr, PGBCLI_BOLD, "outputs");
		pgbcli_screen_newline(&scr);
		if (PQntuples(v->outputs) == 0)
		{
			pgbcli_screen_text(&scr, NULL, "  none yet");
			pgbcli_screen_newline(&scr);
		}
		for (int row = 0; row < PQntuples(v->outputs); row++)
		{
			pgbcli_screen_printf(&scr, NULL, "  %s", PQgetvalue(v->outputs, row, 0));
			pgbcli_screen_printf(&scr, PGBCLI_DIM, " (%s)", PQgetvalue(v->outputs, row, 2));
			pgbcli_screen_newline(&scr);
			screen_json_block(&scr, PQgetvalue(v->outputs, row, 3), 4);
		}
	}
	print_attempts(&scr, v->attempts, v->answers);
	pgbcli_screen_flush(&scr);
	pgbcli_screen_free(&scr);
}

/*
 * print_item_json
 *		item --json: {"item": {...}, "payload": ..., "outputs": [...],
 *		"attempts": [...]}, payload and outputs null when not readable.
 */
static void
print_item_json(const ItemView *v)
{
	PQExpBufferData buf;

	initPQExpBuffer(&buf);
	appendPQExpBufferStr(&buf, "{\"item\": ");
	pgbcli_json_row(&buf, v->item, 0, ITEM_COLS);
	appendPQExpBufferStr(&buf, ",\n \"payload\": ");
	if (v->payload != NULL && PQntuples(v->payload) == 1)
		appendPQExpBufferStr(&buf, PQgetvalue(v->payload, 0, 0));
	else
		appendPQExpBufferStr(&buf, "null");
	appendPQExpBufferStr(&buf, ",\n \"outputs\": ");
	if (v->outputs != NULL)
		pgbcli_json_rows(&buf, v->outputs, 3);
	else
		appendPQExpBufferStr(&buf, "null");
	appendPQExpBufferStr(&buf, ",\n \"attempts\": ");
	pgbcli_json_rows(&buf, v->attempts, PQnfields(v->attempts));
	appendPQExpBufferChar(&buf, '}');
	pgbcli_print_buffer(&buf);
	termPQExpBuffer(&buf);
}

/*
 * pgbcli_cmd_item
 *		item ITEM: everything about one item the user may read.
 */
int
pgbcli_cmd_item(PGconn *conn, const char *arg)
{
	ItemView	v;

	if (!fetch_item(conn, arg, &v))
		return PGBCLI_EXIT_ERROR;
	if (pgbcli_out.json)
		print_item_json(&v);
	else
		print_item_text(&v);
	free_view(&v);
	return PGBCLI_EXIT_OK;
}

/*
 * run_editor
 *		Runs $VISUAL, else $EDITOR, else vi, on a file (through the shell,
 *		as other tools do, so that an editor with arguments works); false
 *		if it failed.
 */
static bool
run_editor(const char *path)
{
	const char *editor = getenv("VISUAL");
	char	   *cmd;
	int			rc;

	if (editor == NULL || editor[0] == '\0')
		editor = getenv("EDITOR");
	if (editor == NULL || editor[0] == '\0')
		editor = "vi";
	/* the path is ours (mkstemps), without quotes or spaces */
	cmd = psprintf("%s '%s'", editor, path);
	fflush(NULL);
	rc = system(cmd);
	free(cmd);
	if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0)
	{
		pg_log_error("the editor (%s) failed", editor);
		return false;
	}
	return true;
}

/*
 * pgbcli_read_file
 *		The whole of a file, malloc'd; NULL after reporting an error.  (Also
 *		serve's certificate and key.)
 */
char *
pgbcli_read_file(const char *path)
{
	FILE	   *f = fopen(path, "r");
	PQExpBufferData buf;
	char		chunk[4096];
	size_t		n;
	char	   *result;

	if (f == NULL)
	{
		pg_log_error("could not read file \"%s\": %m", path);
		return NULL;
	}
	initPQExpBuffer(&buf);
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		appendBinaryPQExpBuffer(&buf, chunk, n);
	fclose(f);
	result = pg_strdup(buf.data);
	termPQExpBuffer(&buf);
	return result;
}

/*
 * ask
 *		Asks a yes/no question on the terminal; 'dflt' when the answer is
 *		empty, or when there is no terminal to ask on.
 */
static bool
ask(const char *question, bool dflt)
{
	char		answer[16];

	if (!isatty(STDIN_FILENO))
		return dflt;
	printf("%s [%s] ", question, dflt ? "Y/n" : "y/N");
	fflush(stdout);
	if (fgets(answer, sizeof(answer), stdin) == NULL || answer[0] == '\n')
		return dflt;
	return answer[0] == 'y' || answer[0] == 'Y';
}

/*
 * store_payload
 *		batch.update_item with the edited text, which the server parses and
 *		validates; false after reporting why not.
 */
static bool
store_payload(PGconn *conn, const char *id, const char *text)
{
	const char *params[2] = {id, text};
	PGresult   *res;

	res = pgbcli_query(conn, "SELECT batch.update_item($1::bigint, $2::jsonb)", 2, params);
	if (res == NULL)
		return false;
	PQclear(res);
	return true;
}

/*
 * pgbcli_cmd_fix
 *		fix ITEM: edit the payload, store it (validated by the server), and
 *		re-queue the item if it failed: with --retry, or when the user says
 *		so on a terminal.  An edit the server refuses can be edited again.
 */
int
pgbcli_cmd_fix(PGconn *conn, const char *arg)
{
	ItemView	v;
	char		path[MAXPGPATH];
	int			fd;
	char	   *before;
	char	   *after = NULL;
	bool		stored = false;
	int			status = PGBCLI_EXIT_ERROR;

	if (!fetch_item(conn, arg, &v))
		return PGBCLI_EXIT_ERROR;
	if (v.payload == NULL || PQntuples(v.payload) != 1)
	{
		pg_log_error("you may not read the payload of item %s", v.id);
		pg_log_error_hint("Fixing a payload takes pgbatch_operator, and a batch you may act on.");
		free_view(&v);
		return PGBCLI_EXIT_ERROR;
	}

	/* the payload, pretty-printed, in a file only this user can read */
	snprintf(path, sizeof(path), "%s/pgbatch-item-%s-XXXXXX.json",
			 getenv("TMPDIR") && getenv("TMPDIR")[0] ? getenv("TMPDIR") : "/tmp", v.id);
	fd = mkstemps(path, 5);
	if (fd < 0)
	{
		pg_log_error("could not create a temporary file: %m");
		free_view(&v);
		return PGBCLI_EXIT_ERROR;
	}
	{
		const char *params[1] = {v.id};
		PGresult   *res = pgbcli_query(conn, "SELECT jsonb_pretty(payload) FROM batch.items "
									   "WHERE id = $1::bigint", 1, params);
		FILE	   *f = fdopen(fd, "w");

		if (res == NULL || f == NULL)
		{
			PQclear(res);
			if (f != NULL)
				fclose(f);
			else
			{
				pg_log_error("could not write file \"%s\": %m", path);
				close(fd);
			}
			unlink(path);
			free_view(&v);
			return PGBCLI_EXIT_ERROR;
		}
		fprintf(f, "%s\n", PQgetvalue(res, 0, 0));
		if (fclose(f) != 0)
		{
			pg_log_error("could not write file \"%s\": %m", path);
			PQclear(res);
			unlink(path);
			free_view(&v);
			return PGBCLI_EXIT_ERROR;
		}
		PQclear(res);
	}
	before = pgbcli_read_file(path);

	while (before != NULL && !stored)
	{
		free(after);
		after = NULL;
		if (!run_editor(path) || (after = pgbcli_read_file(path)) == NULL)
			break;
		if (strcmp(before, after) == 0)
		{
			printf("payload of item %s unchanged\n", v.id);
			status = PGBCLI_EXIT_OK;
			break;
		}
		stored = store_payload(conn, v.id, after);
		if (!stored && !ask("edit it again?", true))
			break;
		if (!stored && !isatty(STDIN_FILENO))
			break;
	}
	unlink(path);

	if (stored)
	{
		const char *params[1] = {v.id};
		PGresult   *res;

		printf("payload of item %s stored\n", v.id);
		status = PGBCLI_EXIT_OK;
		if (strcmp(PQgetvalue(v.item, 0, 4), "failed") == 0 &&
			(pgbcli_opts.retry || ask("re-queue it at its stage now?", false)))
		{
			res = pgbcli_query(conn, "SELECT batch.retry_item($1::bigint)", 1, params);
			if (res == NULL)
				status = PGBCLI_EXIT_ERROR;
			else
			{
				printf(strcmp(PQgetvalue(res, 0, 0), "t") == 0 ?
					   "item %s re-queued at stage %s\n" :
					   "item %s was not re-queued (stage %s): it is no longer failed\n",
					   v.id, PQgetvalue(v.item, 0, 5));
				PQclear(res);
			}
		}
	}
	free(before);
	free(after);
	free_view(&v);
	return status;
}
