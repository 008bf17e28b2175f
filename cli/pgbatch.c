/*-------------------------------------------------------------------------
 *
 * pgbatch.c
 *		pgbatch, the operators' command-line tool for the pgbatch extension:
 *		the command line (options, commands, --help), the choice of output
 *		(JSON, plain text, or colour and redraws on a terminal), and the
 *		dispatch to the commands.
 *
 *		pgbatch [OPTION]... COMMAND [BATCH] [COMMAND OPTION]...
 *
 * cli/pgbatch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <limits.h>
#include <locale.h>
#include <unistd.h>

#include "common/logging.h"
#include "fe_utils/option_utils.h"
#include "getopt_long.h"

#include "pgbatch_cli.h"

#define PGBCLI_VERSION PGB_VERSION

/* options of the commands, as bits: which command accepts which */
#define CMDOPT_CODES			0x01
#define CMDOPT_STAGE			0x02
#define CMDOPT_MAX_RETRIES		0x04
#define CMDOPT_BACKOFF_FACTOR	0x08
#define CMDOPT_PAYLOAD			0x10
#define CMDOPT_LEVEL			0x20
#define CMDOPT_FOLLOW			0x40
#define CMDOPT_LIMIT			0x80
#define CMDOPT_WAIT				0x100
#define CMDOPT_RETRY			0x200
#define CMDOPT_LISTEN			0x400
#define CMDOPT_WEB_PORT			0x800
#define CMDOPT_TLS_CERT			0x1000
#define CMDOPT_TLS_KEY			0x2000
#define CMDOPT_LAST				CMDOPT_TLS_KEY

/* getopt values of the options that have no short form */
enum
{
	OPT_JSON = 1000,
	OPT_NO_COLOR,
	OPT_CODES,
	OPT_STAGE,
	OPT_MAX_RETRIES,
	OPT_BACKOFF_FACTOR,
	OPT_PAYLOAD,
	OPT_LEVEL,
	OPT_WAIT,
	OPT_RETRY,
	OPT_LISTEN,
	OPT_WEB_PORT,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_HELP
};

/* a command: its name, what argument it takes, the options it accepts */
typedef struct Command
{
	const char *name;
	const char *needs;			/* "a batch name or id", "an item id", or NULL */
	unsigned	options;
	int			(*run) (PGconn *conn, const char *arg);
	bool		own_connections;	/* connects by itself: run gets NULL */
} Command;

/* the command-line options and the choice of output, for every file */
PgbcliOptions pgbcli_opts;
PgbcliOutput pgbcli_out;

#define BATCH_ARG	"a batch name or id"
#define ITEM_ARG	"an item id"

static int	run_status(PGconn *conn, const char *arg);
static void usage_error(const char *fmt,...)
			pg_attribute_printf(1, 2) pg_attribute_noreturn();

static const Command commands[] = {
	{"status", NULL, 0, run_status},
	{"watch", BATCH_ARG, 0, pgbcli_cmd_watch},
	{"errors", BATCH_ARG, 0, pgbcli_cmd_errors},
	{"review", BATCH_ARG, CMDOPT_PAYLOAD, pgbcli_cmd_review},
	{"retry", BATCH_ARG,
	CMDOPT_CODES | CMDOPT_STAGE | CMDOPT_MAX_RETRIES | CMDOPT_BACKOFF_FACTOR | CMDOPT_WAIT,
	pgbcli_cmd_retry},
	{"log", BATCH_ARG, CMDOPT_LEVEL | CMDOPT_FOLLOW | CMDOPT_LIMIT, pgbcli_cmd_log},
	{"cancel", BATCH_ARG, 0, pgbcli_cmd_cancel},
	{"item", ITEM_ARG, 0, pgbcli_cmd_item},
	{"fix", ITEM_ARG, CMDOPT_RETRY, pgbcli_cmd_fix},
	{"endpoints", NULL, 0, pgbcli_cmd_endpoints},
	{"health", NULL, 0, pgbcli_cmd_health},
	{"serve", NULL, CMDOPT_LISTEN | CMDOPT_WEB_PORT | CMDOPT_TLS_CERT | CMDOPT_TLS_KEY,
	pgbcli_cmd_serve, true},
	{NULL, NULL, 0, NULL}
};

/*
 * run_status
 *		The status command takes no batch: adapts it to the common signature.
 */
static int
run_status(PGconn *conn, const char *arg)
{
	return pgbcli_cmd_status(conn);
}

/*
 * usage
 *		Prints the help text.
 */
static void
usage(void)
{
	printf(_("%s shows and repairs the batches of the pgbatch extension.\n\n"),
		   "pgbatch");
	printf(_("Usage:\n"));
	printf(_("  pgbatch [OPTION]... COMMAND [BATCH] [COMMAND OPTION]...\n"));
	printf(_("\nCommands (BATCH is a batch's name or id, ITEM an item's id):\n"));
	printf(_("  status               every batch you can see: progress, rate and ETA\n"));
	printf(_("  watch BATCH          a live view of a batch, until it finishes (q quits)\n"));
	printf(_("  errors BATCH         the batch's failed items, grouped by stage and code\n"));
	printf(_("  review BATCH         the batch's review queue (its failed items)\n"));
	printf(_("  retry BATCH          re-queue the batch's failed items at their stage\n"));
	printf(_("  log BATCH            the batch's log, oldest first\n"));
	printf(_("  cancel BATCH         cancel the batch's waiting items\n"));
	printf(_("  item ITEM            an item: payload, outputs by stage, every attempt and answer\n"));
	printf(_("  fix ITEM             edit an item's payload in $VISUAL or $EDITOR, store it, retry it\n"));
	printf(_("  endpoints            the endpoints: in flight, limits, circuit, pauses, failures\n"));
	printf(_("  health               whether executors serve each database, and if not why\n"));
	printf(_("  serve                a web page for the batches; its users sign in with\n"
			 "                       their own database role and password\n"));
	printf(_("\nCommand options:\n"));
	printf(_("  review --payload           show each item's payload too\n"));
	printf(_("  retry --codes=CODE,...     only items that failed with these error codes\n"));
	printf(_("  retry --stage=STAGE        only items that failed at this stage\n"));
	printf(_("  retry --max-retries=N      retries the re-queued items may use\n"));
	printf(_("  retry --backoff-factor=F   backoff factor for the re-queued items\n"));
	printf(_("  retry --wait               wait for a retry of the batch under way, instead of\n"
			 "                             re-queuing nothing\n"));
	printf(_("  fix --retry                re-queue the item once fixed, without asking\n"));
	printf(_("  log --level=LEVEL          info (all), warning (and errors), error\n"));
	printf(_("  log -n, --limit=N          the last N lines (default 50)\n"));
	printf(_("  log -f, --follow           keep printing new lines as they come\n"));
	printf(_("  serve --listen=ADDRESS     the IP address to listen on (default 127.0.0.1);\n"
			 "                             beyond loopback only with TLS\n"));
	printf(_("  serve --web-port=PORT      the port to listen on (default 8432; 0: any free)\n"));
	printf(_("  serve --tls-cert=FILE      serve HTTPS with this certificate (PEM) ...\n"));
	printf(_("  serve --tls-key=FILE       ... and this private key (PEM)\n"));
	printf(_("\nOutput options:\n"));
	printf(_("  --json                     machine output: one JSON document, or one\n"
			 "                             JSON object per line for watch and log --follow\n"));
	printf(_("  --no-color                 no colours on a terminal\n"));
	printf(_("  -V, --version              output version information, then exit\n"));
	printf(_("  -?, --help                 show this help, then exit\n"));
	printf(_("\nConnection options:\n"));
	printf(_("  -h, --host=HOSTNAME        database server host or socket directory\n"));
	printf(_("  -p, --port=PORT            database server port\n"));
	printf(_("  -U, --username=USERNAME    database user name\n"));
	printf(_("  -d, --dbname=DBNAME        database name, or a connection string or URI\n"));
	printf(_("  -w, --no-password          never prompt for password\n"));
	printf(_("  -W, --password             force password prompt\n"));
	printf(_("\nThe PG* environment variables (PGHOST, PGPORT, PGDATABASE, PGUSER,\n"
			 "PGPASSWORD, PGSERVICE, ...) apply as in every libpq program.\n"));
	printf(_("\nExit status: 0 done, 1 error (connection, SQL), 2 usage error.\n"));
}

/*
 * usage_error
 *		Reports a mistake on the command line (a printf format and its
 *		arguments) and exits with status 2.
 */
static void
usage_error(const char *fmt,...)
{
	va_list		ap;

	va_start(ap, fmt);
	pg_log_generic_v(PG_LOG_ERROR, PG_LOG_PRIMARY, fmt, ap);
	va_end(ap);
	pg_log_error_hint("Try \"%s --help\" for more information.", "pgbatch");
	exit(PGBCLI_EXIT_USAGE);
}

/*
 * find_command
 *		The command of that name, or NULL.
 */
static const Command *
find_command(const char *name)
{
	for (const Command *cmd = commands; cmd->name != NULL; cmd++)
	{
		if (strcmp(cmd->name, name) == 0)
			return cmd;
	}
	return NULL;
}

/*
 * parse_level
 *		--level: info, warning or error; exits on anything else.
 */
static PgbcliLevel
parse_level(const char *arg)
{
	if (pg_strcasecmp(arg, "info") == 0)
		return PGBCLI_LEVEL_INFO;
	if (pg_strcasecmp(arg, "warning") == 0)
		return PGBCLI_LEVEL_WARNING;
	if (pg_strcasecmp(arg, "error") == 0)
		return PGBCLI_LEVEL_ERROR;
	usage_error("invalid value \"%s\" for --level: must be info, warning or error",
				arg);
}

/*
 * parse_int
 *		An integer option in [min, max]; exits with status 2 otherwise.
 */
static int
parse_int(const char *arg, const char *option, int min, int max)
{
	int			n;

	if (!option_parse_int(arg, option, min, max, &n))
	{
		pg_log_error_hint("Try \"%s --help\" for more information.", "pgbatch");
		exit(PGBCLI_EXIT_USAGE);
	}
	return n;
}

/*
 * check_number
 *		Exits unless arg is a number (a float when is_float, else a
 *		non-negative integer); returns arg.
 */
static const char *
check_number(const char *arg, const char *option, bool is_float)
{
	char	   *end;

	if (is_float)
	{
		errno = 0;
		(void) strtod(arg, &end);
		if (end == arg || *end != '\0' || errno != 0)
			usage_error("invalid value \"%s\" for %s: not a number", arg, option);
		return arg;
	}
	(void) parse_int(arg, option, 0, INT_MAX);
	return arg;
}

/*
 * check_list
 *		Exits unless arg has at least one non-blank element; returns arg.
 */
static const char *
check_list(const char *arg, const char *option)
{
	if (strspn(arg, " ,\t") == strlen(arg))
		usage_error("%s needs at least one value", option);
	return arg;
}

/*
 * option_name
 *		The long name of a command option bit, for messages.
 */
static const char *
option_name(unsigned bit)
{
	switch (bit)
	{
		case CMDOPT_CODES:
			return "--codes";
		case CMDOPT_STAGE:
			return "--stage";
		case CMDOPT_MAX_RETRIES:
			return "--max-retries";
		case CMDOPT_BACKOFF_FACTOR:
			return "--backoff-factor";
		case CMDOPT_PAYLOAD:
			return "--payload";
		case CMDOPT_LEVEL:
			return "--level";
		case CMDOPT_FOLLOW:
			return "--follow";
		case CMDOPT_LIMIT:
			return "--limit";
		case CMDOPT_WAIT:
			return "--wait";
		case CMDOPT_RETRY:
			return "--retry";
		case CMDOPT_LISTEN:
			return "--listen";
		case CMDOPT_WEB_PORT:
			return "--web-port";
		case CMDOPT_TLS_CERT:
			return "--tls-cert";
		case CMDOPT_TLS_KEY:
			return "--tls-key";
	}
	return "?";
}

/*
 * parse_options
 *		Reads the options into pgbcli_opts (options may come before or after
 *		the command and its batch) and returns the command; *arg is set to
 *		the batch argument.  Exits with status 2 on a usage error.
 */
static const Command *
parse_options(int argc, char **argv, const char **arg)
{
	static const struct option long_options[] = {
		{"host", required_argument, NULL, 'h'},
		{"port", required_argument, NULL, 'p'},
		{"username", required_argument, NULL, 'U'},
		{"dbname", required_argument, NULL, 'd'},
		{"no-password", no_argument, NULL, 'w'},
		{"password", no_argument, NULL, 'W'},
		{"version", no_argument, NULL, 'V'},
		{"help", no_argument, NULL, OPT_HELP},
		{"json", no_argument, NULL, OPT_JSON},
		{"no-color", no_argument, NULL, OPT_NO_COLOR},
		{"codes", required_argument, NULL, OPT_CODES},
		{"stage", required_argument, NULL, OPT_STAGE},
		{"max-retries", required_argument, NULL, OPT_MAX_RETRIES},
		{"backoff-factor", required_argument, NULL, OPT_BACKOFF_FACTOR},
		{"payload", no_argument, NULL, OPT_PAYLOAD},
		{"level", required_argument, NULL, OPT_LEVEL},
		{"follow", no_argument, NULL, 'f'},
		{"limit", required_argument, NULL, 'n'},
		{"wait", no_argument, NULL, OPT_WAIT},
		{"retry", no_argument, NULL, OPT_RETRY},
		{"listen", required_argument, NULL, OPT_LISTEN},
		{"web-port", required_argument, NULL, OPT_WEB_PORT},
		{"tls-cert", required_argument, NULL, OPT_TLS_CERT},
		{"tls-key", required_argument, NULL, OPT_TLS_KEY},
		{NULL, 0, NULL, 0}
	};
	const Command *cmd;
	unsigned	given = 0;
	int			c;

	pgbcli_opts.prompt_password = TRI_DEFAULT;
	pgbcli_opts.level = PGBCLI_LEVEL_INFO;
	pgbcli_opts.limit = 50;
	pgbcli_opts.web_port = 8432;

	while ((c = getopt_long(argc, argv, "d:fh:n:p:U:VwW", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 'h':
				pgbcli_opts.host = optarg;
				break;
			case 'p':
				pgbcli_opts.port = optarg;
				break;
			case 'U':
				pgbcli_opts.username = optarg;
				break;
			case 'd':
				pgbcli_opts.dbname = optarg;
				break;
			case 'w':
				pgbcli_opts.prompt_password = TRI_NO;
				break;
			case 'W':
				pgbcli_opts.prompt_password = TRI_YES;
				break;
			case 'V':
				printf("pgbatch (pgbatch) " PGBCLI_VERSION "\n");
				exit(PGBCLI_EXIT_OK);
			case OPT_HELP:
				usage();
				exit(PGBCLI_EXIT_OK);
			case OPT_JSON:
				pgbcli_opts.json = true;
				break;
			case OPT_NO_COLOR:
				pgbcli_opts.no_color = true;
				break;
			case OPT_CODES:
				pgbcli_opts.codes = check_list(optarg, "--codes");
				given |= CMDOPT_CODES;
				break;
			case OPT_STAGE:
				if (optarg[0] == '\0')
					usage_error("%s needs a stage name", "--stage");
				pgbcli_opts.stage = optarg;
				given |= CMDOPT_STAGE;
				break;
			case OPT_MAX_RETRIES:
				pgbcli_opts.max_retries = check_number(optarg, "--max-retries", false);
				given |= CMDOPT_MAX_RETRIES;
				break;
			case OPT_BACKOFF_FACTOR:
				pgbcli_opts.backoff_factor =
					check_number(optarg, "--backoff-factor", true);
				given |= CMDOPT_BACKOFF_FACTOR;
				break;
			case OPT_PAYLOAD:
				pgbcli_opts.payload = true;
				given |= CMDOPT_PAYLOAD;
				break;
			case OPT_LEVEL:
				pgbcli_opts.level = parse_level(optarg);
				given |= CMDOPT_LEVEL;
				break;
			case OPT_WAIT:
				pgbcli_opts.wait = true;
				given |= CMDOPT_WAIT;
				break;
			case OPT_RETRY:
				pgbcli_opts.retry = true;
				given |= CMDOPT_RETRY;
				break;
			case OPT_LISTEN:
				pgbcli_opts.listen = optarg;
				given |= CMDOPT_LISTEN;
				break;
			case OPT_WEB_PORT:
				pgbcli_opts.web_port = parse_int(optarg, "--web-port", 0, 65535);
				given |= CMDOPT_WEB_PORT;
				break;
			case OPT_TLS_CERT:
				pgbcli_opts.tls_cert = optarg;
				given |= CMDOPT_TLS_CERT;
				break;
			case OPT_TLS_KEY:
				pgbcli_opts.tls_key = optarg;
				given |= CMDOPT_TLS_KEY;
				break;
			case 'f':
				pgbcli_opts.follow = true;
				given |= CMDOPT_FOLLOW;
				break;
			case 'n':
				pgbcli_opts.limit = parse_int(optarg, "-n/--limit", 1, INT_MAX);
				given |= CMDOPT_LIMIT;
				break;
			default:
				/* getopt_long already complained */
				pg_log_error_hint("Try \"%s --help\" for more information.",
								  "pgbatch");
				exit(PGBCLI_EXIT_USAGE);
		}
	}

	if (optind >= argc)
		usage_error("no command given");
	cmd = find_command(argv[optind]);
	if (cmd == NULL)
		usage_error("unknown command \"%s\"", argv[optind]);
	optind++;

	*arg = NULL;
	if (cmd->needs != NULL)
	{
		if (optind >= argc)
			usage_error("command \"%s\" needs %s", cmd->name, cmd->needs);
		*arg = argv[optind++];
	}
	if (optind < argc)
		usage_error("too many command-line arguments (first is \"%s\")",
					argv[optind]);

	for (unsigned bit = 1; bit <= CMDOPT_LAST; bit <<= 1)
	{
		if ((given & bit) && !(cmd->options & bit))
			usage_error("option %s is not valid for command \"%s\"",
						option_name(bit), cmd->name);
	}
	return cmd;
}

/*
 * choose_output
 *		JSON when asked; otherwise colour and in-place redraws only when
 *		stdout is a terminal that is not "dumb" (and, for colour, neither
 *		--no-color nor NO_COLOR says otherwise).
 */
static void
choose_output(void)
{
	const char *term = getenv("TERM");
	const char *no_color = getenv("NO_COLOR");

	pgbcli_out.json = pgbcli_opts.json;
	pgbcli_out.redraw = !pgbcli_opts.json && isatty(STDOUT_FILENO) &&
		term != NULL && term[0] != '\0' && strcmp(term, "dumb") != 0;
	pgbcli_out.color = pgbcli_out.redraw && !pgbcli_opts.no_color &&
		(no_color == NULL || no_color[0] == '\0');
}

/*
 * main
 *		Parses the command line, connects, and runs the command; returns its
 *		exit status.
 */
int
main(int argc, char **argv)
{
	const Command *cmd;
	const char *arg;
	PGconn	   *conn;
	int			status;

	pg_logging_init(argv[0]);
	set_pglocale_pgservice(argv[0], PG_TEXTDOMAIN("pgbatch"));
	/* numbers are read from the server and written as JSON: always a '.' */
	setlocale(LC_NUMERIC, "C");

	if (argc > 1 && (strcmp(argv[1], "-?") == 0))
	{
		usage();
		exit(PGBCLI_EXIT_OK);
	}

	cmd = parse_options(argc, argv, &arg);
	choose_output();

	if (cmd->own_connections)
		return cmd->run(NULL, arg);

	conn = pgbcli_connect();
	if (conn == NULL)
		exit(PGBCLI_EXIT_ERROR);
	pgbcli_out.encoding = PQclientEncoding(conn);

	status = cmd->run(conn, arg);
	fflush(stdout);
	PQfinish(conn);
	return status;
}
