/*-------------------------------------------------------------------------
 *
 * pgbatch_cli.h
 *		Declarations shared by the files of pgbatch, the operators'
 *		command-line tool for the pgbatch extension (a libpq client).
 *
 * cli/pgbatch_cli.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGBATCH_CLI_H
#define PGBATCH_CLI_H

#include "fe_utils/connect_utils.h"
#include "libpq-fe.h"
#include "pqexpbuffer.h"

/* exit statuses */
#define PGBCLI_EXIT_OK		0
#define PGBCLI_EXIT_ERROR	1
#define PGBCLI_EXIT_USAGE	2

/* the channel the extension sends its events to */
#define PGBCLI_CHANNEL		"pgbatch_events"

/*
 * Every session: a search_path that only reaches pg_catalog (the queries
 * qualify every name) and ISO dates, the same for JSON whatever the user's
 * settings.
 */
#define PGBCLI_SESSION_SETUP_SQL \
	"SELECT pg_catalog.set_config('search_path', '', false), " \
	"pg_catalog.set_config('datestyle', 'ISO, YMD', false)"

/* the least log level a command shows (--level) */
typedef enum PgbcliLevel
{
	PGBCLI_LEVEL_INFO = 1,
	PGBCLI_LEVEL_WARNING = 2,
	PGBCLI_LEVEL_ERROR = 3
} PgbcliLevel;

/* batch.log's level as a PgbcliLevel, in SQL (log, serve) */
#define PGBCLI_LEVEL_SQL \
	"CASE level WHEN 'error' THEN 3 WHEN 'warning' THEN 2 ELSE 1 END"


/* what the command line asked for (pgbatch.c) */
typedef struct PgbcliOptions
{
	/* connection */
	const char *host;
	const char *port;
	const char *username;
	const char *dbname;
	enum trivalue prompt_password;

	/* output */
	bool		json;			/* --json */
	bool		no_color;		/* --no-color */

	/* options of the commands */
	const char *codes;			/* retry --codes, comma-separated */
	const char *stage;			/* retry --stage */
	const char *max_retries;	/* retry --max-retries, checked integer */
	const char *backoff_factor; /* retry --backoff-factor, checked number */
	bool		payload;		/* review --payload */
	bool		wait;			/* retry --wait */
	bool		retry;			/* fix --retry */
	PgbcliLevel level;			/* log --level */
	bool		follow;			/* log --follow */
	int			limit;			/* log --limit */
	const char *listen;			/* serve --listen */
	int			web_port;		/* serve --web-port */
	const char *tls_cert;		/* serve --tls-cert */
	const char *tls_key;		/* serve --tls-key */
} PgbcliOptions;

/* how output is written, decided once from the options and stdout */
typedef struct PgbcliOutput
{
	bool		json;			/* machine output */
	bool		redraw;			/* stdout is a capable terminal: redraw */
	bool		color;			/* and colours are wanted */
	int			encoding;		/* the client encoding, for display widths */
} PgbcliOutput;

extern PgbcliOptions pgbcli_opts;
extern PgbcliOutput pgbcli_out;

/* a batch named on the command line, resolved */
typedef struct PgbcliBatch
{
	int64		id;
	char	   *name;
} PgbcliBatch;

/* conn.c: connections, queries and errors */
extern PGconn *pgbcli_connect(void);
extern PGresult *pgbcli_query(PGconn *conn, const char *sql, int nparams,
							  const char *const *params);
extern bool pgbcli_command(PGconn *conn, const char *sql);
extern void pgbcli_report_error(PGconn *conn, const PGresult *res);
extern bool pgbcli_resolve_batch(PGconn *conn, const char *arg,
								 PgbcliBatch *batch);
extern void pgbcli_free_batch(PgbcliBatch *batch);
extern bool pgbcli_looks_like_id(const char *arg);

/* json.c: JSON output and the fields of notification payloads */
extern void pgbcli_json_string(PQExpBuffer buf, const char *str);
extern void pgbcli_json_number(PQExpBuffer buf, double value);
extern void pgbcli_json_fields(PQExpBuffer buf, const PGresult *res, int row,
							   int ncols);
extern void pgbcli_json_row(PQExpBuffer buf, const PGresult *res, int row,
							int ncols);
extern void pgbcli_json_rows(PQExpBuffer buf, const PGresult *res, int ncols);
extern bool pgbcli_json_field(const char *json, const char *key,
							  char *out, size_t outlen);
extern void pgbcli_print_buffer(PQExpBuffer buf);

/* render.c: text output, colours, tables and formats */

/* colours (SGR parameters), NULL for none */
#define PGBCLI_RED		"31"
#define PGBCLI_GREEN	"32"
#define PGBCLI_YELLOW	"33"
#define PGBCLI_BLUE		"34"
#define PGBCLI_MAGENTA	"35"
#define PGBCLI_CYAN		"36"
#define PGBCLI_BOLD		"1"
#define PGBCLI_DIM		"2"

/* text being laid out: lines, maybe cut to the terminal's width */
typedef struct PgbcliScreen
{
	PQExpBufferData buf;
	int			width;			/* columns per line; 0 for no limit */
	int			col;			/* columns used on the current line */
	int			lines;			/* lines ended so far */
	bool		erase;			/* end lines with erase-to-end-of-line */
} PgbcliScreen;

/* a table of text cells, laid out in aligned columns */
typedef struct PgbcliTable
{
	int			ncols;
	int			nrows;
	int			maxrows;
	const char *const *headers;
	const char *kinds;			/* per column: 'l' left, 'r' right, 'b' bar */
	char	  **cells;			/* nrows * ncols, owned */
	const char **colors;		/* nrows * ncols */
} PgbcliTable;

extern void pgbcli_screen_init(PgbcliScreen *scr, int width);
extern void pgbcli_screen_init_out(PgbcliScreen *scr);
extern void pgbcli_screen_text(PgbcliScreen *scr, const char *color,
							   const char *text);
extern void pgbcli_screen_printf(PgbcliScreen *scr, const char *color,
								 const char *fmt,...) pg_attribute_printf(3, 4);
extern void pgbcli_screen_pad(PgbcliScreen *scr, int n);
extern void pgbcli_screen_bar(PgbcliScreen *scr, const char *bar);
extern void pgbcli_screen_newline(PgbcliScreen *scr);
extern void pgbcli_screen_flush(PgbcliScreen *scr);
extern void pgbcli_screen_free(PgbcliScreen *scr);
extern void pgbcli_table_init(PgbcliTable *table, int ncols,
							  const char *const *headers, const char *kinds);
extern int	pgbcli_table_add_row(PgbcliTable *table);
extern void pgbcli_table_set(PgbcliTable *table, int row, int col,
							 const char *color, const char *text);
extern void pgbcli_table_print(PgbcliScreen *scr, const PgbcliTable *table,
							   int indent);
extern void pgbcli_table_free(PgbcliTable *table);
extern char *pgbcli_sanitize(const char *text);
extern char *pgbcli_sanitize_lines(const char *text);
extern const char *pgbcli_clean_message(const char *text);
extern int	pgbcli_control_len(const char *text, int encoding);
extern int	pgbcli_display_width(const char *text);
extern void pgbcli_format_duration(double seconds, char *out, size_t outlen);
extern void pgbcli_format_rate(double rate, char *out, size_t outlen);
extern const char *pgbcli_level_color(const char *level);

/* progress.c: a batch's progress, its bar, rate and ETA */

/* one row of batch.progress, read */
typedef struct PgbcliProgress
{
	int64		id;
	const char *name;			/* point into the PGresult */
	const char *pipeline;
	const char *status;
	int64		total;
	int64		pending;		/* waiting for a first attempt (not retrying) */
	int64		running;
	int64		retrying;
	int64		completed;
	int64		failed;
	int64		cancelled;
	double		elapsed;		/* seconds since started_at; < 0 if none */
	bool		finished;		/* completed, partial, failed or cancelled */
} PgbcliProgress;

extern PGresult *pgbcli_fetch_progress(PGconn *conn, const PgbcliBatch *batch);
extern void pgbcli_read_progress(const PGresult *res, int row,
								 PgbcliProgress *p);
extern double pgbcli_overall_rate(const PgbcliProgress *p);
extern double pgbcli_eta(const PgbcliProgress *p, double rate);
extern char *pgbcli_bar(const PgbcliProgress *p, int width);
extern const char *pgbcli_status_color(const char *status);
extern void pgbcli_json_progress(PQExpBuffer buf, const PGresult *res, int row,
								 double rate, double eta);
extern void pgbcli_counts_text(PQExpBuffer buf, const PgbcliProgress *p);

/* term.c: the terminal, while watch draws on it and reads keys */
extern void pgbcli_term_size(int *cols, int *rows);
extern void pgbcli_term_keyboard_begin(void);
extern void pgbcli_term_draw_begin(void);
extern void pgbcli_term_end(void);
extern void pgbcli_term_emergency_end(void);
extern int	pgbcli_term_keyboard_fd(void);

/* listen.c: waiting for notifications, keys and signals */

/* which notifications wake a waiter */
typedef struct PgbcliFilter
{
	int64		batch_id;		/* those whose "batch_id" is this */
	bool		endpoints;		/* and those whose "event" is endpoint_* */
} PgbcliFilter;

/* what woke a waiter (a bit mask) */
#define PGBCLI_WAKE_TIMEOUT	0x00
#define PGBCLI_WAKE_NOTIFY	0x01	/* a notification that passed the filter */
#define PGBCLI_WAKE_QUIT	0x02	/* q, Ctrl-C, SIGTERM or SIGHUP */
#define PGBCLI_WAKE_RESIZE	0x04	/* the terminal changed size */
#define PGBCLI_WAKE_ERROR	0x08	/* the connection failed (reported) */

/* when a waiter refreshes: notifications coalesced, and a slow timer */
typedef struct PgbcliPacer
{
	int64		min_gap_ms;		/* least time between two refreshes */
	int64		slow_ms;		/* longest time without one */
	int64		last_ms;		/* when the last one was */
	bool		due;			/* something asked for one */
} PgbcliPacer;

extern void pgbcli_signals_init(void);
extern bool pgbcli_listen(PGconn *conn, int fallback_s);
extern int	pgbcli_wait(PGconn *conn, const PgbcliFilter *filter,
						int64 timeout_ms);
extern int64 pgbcli_now_ms(void);
extern void pgbcli_pacer_init(PgbcliPacer *pacer, int64 min_gap_ms,
							  int64 slow_ms);
extern bool pgbcli_pacer_ready(const PgbcliPacer *pacer);
extern void pgbcli_pacer_done(PgbcliPacer *pacer);
extern void pgbcli_pacer_ask(PgbcliPacer *pacer);
extern int64 pgbcli_pacer_timeout(const PgbcliPacer *pacer);

/* commands.c, log.c, watch.c: the commands */
extern int	pgbcli_cmd_status(PGconn *conn);
extern int	pgbcli_cmd_errors(PGconn *conn, const char *arg);
extern int	pgbcli_cmd_review(PGconn *conn, const char *arg);
extern int	pgbcli_cmd_retry(PGconn *conn, const char *arg);
extern int	pgbcli_cmd_log(PGconn *conn, const char *arg);
extern int	pgbcli_cmd_watch(PGconn *conn, const char *arg);
extern int	pgbcli_cmd_cancel(PGconn *conn, const char *arg);
extern int	pgbcli_cmd_endpoints(PGconn *conn, const char *arg);

/* item.c: one item */
extern int	pgbcli_cmd_item(PGconn *conn, const char *arg);
extern int	pgbcli_cmd_fix(PGconn *conn, const char *arg);
extern char *pgbcli_read_file(const char *path);

/* shared by errors and watch: the batch's errors by stage and code */
extern PGresult *pgbcli_fetch_errors(PGconn *conn, const PgbcliBatch *batch);
extern void pgbcli_errors_table(PgbcliScreen *scr, const PGresult *res,
								int indent, bool full, int max_rows);

/* serve.c: the web page */
extern int	pgbcli_cmd_serve(PGconn *conn, const char *arg);

/* health.c: whether executors serve the databases */
extern PGresult *pgbcli_fetch_health_here(PGconn *conn);
extern int	pgbcli_health_lines(PgbcliScreen *scr, const PGresult *res);
extern int	pgbcli_cmd_health(PGconn *conn, const char *arg);

#endif							/* PGBATCH_CLI_H */
