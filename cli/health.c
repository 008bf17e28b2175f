/*-------------------------------------------------------------------------
 *
 * health.c
 *		Whether executors serve the databases (batch.health): the health
 *		command (every database, with the fix for each problem), and the
 *		line that status and watch show about the current database when
 *		something is wrong there, so that a batch that waits because
 *		nothing runs it never looks merely slow.
 *
 * cli/health.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include "pgbatch_cli.h"

/* every database, the current one first */
#define HEALTH_SQL \
	"SELECT database, state, executors, wanted, " \
	"to_char(since, 'YYYY-MM-DD HH24:MI:SS') AS since, started, reason, hint " \
	"FROM batch.health ORDER BY database = current_database() DESC, database"
#define HEALTH_COLS		8

/* the current database, when the user may read batch.health */
#define HEALTH_HERE_SQL \
	"SELECT database, state, executors, wanted, " \
	"to_char(since, 'YYYY-MM-DD HH24:MI:SS') AS since, started, reason, hint " \
	"FROM batch.health WHERE database = current_database() " \
	"AND coalesce(has_table_privilege(to_regclass('batch.health'), 'SELECT'), false)"

/*
 * state_color
 *		The colour of a state.
 */
static const char *
state_color(const char *state)
{
	if (strcmp(state, "serving") == 0)
		return PGBCLI_GREEN;
	if (strcmp(state, "not served") == 0)
		return PGBCLI_RED;
	return PGBCLI_YELLOW;
}

/*
 * pgbcli_fetch_health_here
 *		The current database's row of batch.health, or NULL if there is
 *		none to read (an older schema, no privilege): the callers show
 *		nothing then, and say nothing.
 */
PGresult *
pgbcli_fetch_health_here(PGconn *conn)
{
	/* whether the view is there: asked once (watch refreshes often) */
	static int	present = -1;
	PGresult   *res;

	if (present < 0)
	{
		res = PQexec(conn, "SELECT to_regclass('batch.health') IS NOT NULL");
		present = PQresultStatus(res) == PGRES_TUPLES_OK &&
			strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		PQclear(res);
	}
	if (!present)
		return NULL;
	res = PQexec(conn, HEALTH_HERE_SQL);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		PQclear(res);
		return NULL;
	}
	return res;
}

/*
 * pgbcli_health_lines
 *		Appends what is wrong with the current database's service (res:
 *		pgbcli_fetch_health_here's), a line for the state and its reason
 *		and one for the hint; nothing when its executors serve it as
 *		wanted.  Returns the lines appended.
 */
int
pgbcli_health_lines(PgbcliScreen *scr, const PGresult *res)
{
	const char *state;

	if (res == NULL)
		return 0;
	state = PQgetvalue(res, 0, 1);
	if (strcmp(state, "serving") == 0 && PQgetisnull(res, 0, 6))
		return 0;
	pgbcli_screen_printf(scr, state_color(state), "executors: %s", state);
	if (!PQgetisnull(res, 0, 6))
		pgbcli_screen_printf(scr, state_color(state), ": %s",
							 PQgetvalue(res, 0, 6));
	pgbcli_screen_newline(scr);
	if (PQgetisnull(res, 0, 7))
		return 1;
	pgbcli_screen_printf(scr, NULL, "  %s", PQgetvalue(res, 0, 7));
	pgbcli_screen_newline(scr);
	return 2;
}

/*
 * print_health_table
 *		health: a line per database, then the hints.
 */
static void
print_health_table(const PGresult *res)
{
	static const char *const headers[] = {
		"database", "state", "executors", "since", "started", "reason"
	};
	PgbcliScreen scr;
	PgbcliTable table;
	bool		hints = false;

	pgbcli_screen_init_out(&scr);
	pgbcli_table_init(&table, lengthof(headers), headers, "llrlrl");
	for (int row = 0; row < PQntuples(res); row++)
	{
		int			r = pgbcli_table_add_row(&table);
		char		text[64];

		pgbcli_table_set(&table, r, 0, PGBCLI_BOLD, PQgetvalue(res, row, 0));
		pgbcli_table_set(&table, r, 1, state_color(PQgetvalue(res, row, 1)),
						 PQgetvalue(res, row, 1));
		snprintf(text, sizeof(text), "%s/%s", PQgetvalue(res, row, 2),
				 PQgetvalue(res, row, 3));
		pgbcli_table_set(&table, r, 2, NULL, text);
		pgbcli_table_set(&table, r, 3, NULL, PQgetvalue(res, row, 4));
		pgbcli_table_set(&table, r, 4, NULL, PQgetvalue(res, row, 5));
		pgbcli_table_set(&table, r, 5, NULL, PQgetvalue(res, row, 6));
		hints = hints || !PQgetisnull(res, row, 7);
	}
	pgbcli_table_print(&scr, &table, 0);
	pgbcli_table_free(&table);

	if (hints)
	{
		pgbcli_screen_newline(&scr);
		for (int row = 0; row < PQntuples(res); row++)
		{
			char	   *db;

			if (PQgetisnull(res, row, 7))
				continue;
			db = pgbcli_sanitize(PQgetvalue(res, row, 0));
			pgbcli_screen_printf(&scr, PGBCLI_BOLD, "%s", db);
			pgbcli_screen_printf(&scr, NULL, ": %s", PQgetvalue(res, row, 7));
			pgbcli_screen_newline(&scr);
			free(db);
		}
	}
	pgbcli_screen_flush(&scr);
	pgbcli_screen_free(&scr);
}

/*
 * pgbcli_cmd_health
 *		health: whether executors serve each database of the server, and
 *		what to do where they do not.
 */
int
pgbcli_cmd_health(PGconn *conn, const char *arg)
{
	PGresult   *res = pgbcli_query(conn, HEALTH_SQL, 0, NULL);

	if (res == NULL)
		return PGBCLI_EXIT_ERROR;
	if (pgbcli_out.json)
	{
		PQExpBufferData buf;

		initPQExpBuffer(&buf);
		pgbcli_json_rows(&buf, res, HEALTH_COLS);
		pgbcli_print_buffer(&buf);
		termPQExpBuffer(&buf);
	}
	else
		print_health_table(res);
	PQclear(res);
	return PGBCLI_EXIT_OK;
}
