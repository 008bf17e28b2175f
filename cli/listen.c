/*-------------------------------------------------------------------------
 *
 * listen.c
 *		Waiting without polling the server: LISTEN on the extension's event
 *		channel, then poll() on the connection's socket, the keyboard and a
 *		self-pipe that signal handlers write to, until a notification about
 *		the batch (or an endpoint) arrives, a key or signal says to quit,
 *		or a timeout passes.  And the pacer that turns bursts of
 *		notifications into at most one refresh per interval.
 *
 * cli/listen.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "common/logging.h"

#include "pgbatch_cli.h"

/* how long a notification sent on the connection may take to come back */
#define PROBE_WAIT_MS	1000

/* the self-pipe: signal handlers write a byte, pgbcli_wait reads it */
static int	signal_pipe[2] = {-1, -1};

/* what the signals asked for */
static volatile sig_atomic_t quit_requested = false;
static volatile sig_atomic_t resize_requested = false;

/* the keyboard gave end of file: stop reading it */
static bool keyboard_closed = false;

/*
 * wake_up
 *		Writes to the self-pipe (from a signal handler).
 */
static void
wake_up(void)
{
	int			save_errno = errno;
	ssize_t		rc pg_attribute_unused();

	rc = write(signal_pipe[1], "!", 1);
	errno = save_errno;
}

/*
 * handle_quit
 *		SIGINT, SIGTERM, SIGHUP: the waiter quits cleanly.  A second one
 *		(the program is stuck, say in a query) puts the terminal back and
 *		exits at once.
 */
static void
handle_quit(int signo)
{
	if (quit_requested)
	{
		pgbcli_term_emergency_end();
		_exit(128 + signo);
	}
	quit_requested = true;
	wake_up();
}

/*
 * handle_resize
 *		SIGWINCH: the next frame fits the new size.
 */
static void
handle_resize(int signo)
{
	resize_requested = true;
	wake_up();
}

/*
 * set_nonblocking
 *		Makes a descriptor non-blocking and close-on-exec.
 */
static void
set_nonblocking(int fd)
{
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	fcntl(fd, F_SETFD, FD_CLOEXEC);
}

/*
 * pgbcli_signals_init
 *		Installs the handlers of the signals that end or redraw a waiter.
 */
void
pgbcli_signals_init(void)
{
	struct sigaction sa;

	if (signal_pipe[0] >= 0)
		return;
	if (pipe(signal_pipe) != 0)
	{
		pg_log_error("could not create pipe: %m");
		exit(PGBCLI_EXIT_ERROR);
	}
	set_nonblocking(signal_pipe[0]);
	set_nonblocking(signal_pipe[1]);

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sa.sa_handler = handle_quit;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	sa.sa_handler = handle_resize;
	sigaction(SIGWINCH, &sa, NULL);
}

/*
 * backend_pid
 *		The server process that runs this query (and, run with 'first' in
 *		the same query, its statements); 0 after reporting an error.
 */
static int
backend_pid(PGconn *conn, const char *first)
{
	char		sql[160];
	PGresult   *res;
	int			pid = 0;

	snprintf(sql, sizeof(sql), "%s%sSELECT pg_backend_pid()", first, first[0] ? "; " : "");
	res = PQexec(conn, sql);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		pid = atoi(PQgetvalue(res, 0, 0));
	else
		pgbcli_report_error(conn, res);
	PQclear(res);
	return pid;
}

/*
 * notifications_arrive
 *		Whether notifications reach this connection.  Through a connection
 *		pooler in transaction mode (pgbouncer), LISTEN succeeds, but each
 *		transaction may run in another server process, and what one of them
 *		listens for goes to whichever client holds it then.  So: LISTEN on
 *		a channel of this process and NOTIFY it in two transactions, each
 *		telling its server process; they must be the same one, and the
 *		notification must come back within PROBE_WAIT_MS.  Other
 *		notifications read meanwhile are dropped: the caller refreshes
 *		first anyway.  -1 after reporting an error.
 */
static int
notifications_arrive(PGconn *conn)
{
	char		channel[64];
	char		sql[128];
	int			pid1;
	int			pid2;
	int64		deadline;
	bool		arrived = false;

	snprintf(channel, sizeof(channel), "pgbatch_cli_probe_%d", (int) getpid());
	snprintf(sql, sizeof(sql), "LISTEN %s", channel);
	if ((pid1 = backend_pid(conn, sql)) == 0)
		return -1;
	snprintf(sql, sizeof(sql), "NOTIFY %s", channel);
	if ((pid2 = backend_pid(conn, sql)) == 0)
		return -1;
	deadline = pgbcli_now_ms() + PROBE_WAIT_MS;
	while (!arrived && pid1 == pid2)
	{
		PGnotify   *notify;
		struct pollfd pfd;
		int64		left;

		if (!PQconsumeInput(conn))
		{
			pgbcli_report_error(conn, NULL);
			return -1;
		}
		while ((notify = PQnotifies(conn)) != NULL)
		{
			arrived = arrived || strcmp(notify->relname, channel) == 0;
			PQfreemem(notify);
		}
		left = deadline - pgbcli_now_ms();
		if (arrived || left <= 0)
			break;
		pfd.fd = PQsocket(conn);
		pfd.events = POLLIN;
		pfd.revents = 0;
		(void) poll(&pfd, 1, (int) left);
	}
	snprintf(sql, sizeof(sql), "UNLISTEN %s", channel);
	if (!pgbcli_command(conn, sql))
		return -1;
	return arrived && pid1 == pid2 ? 1 : 0;
}

/*
 * pgbcli_listen
 *		LISTEN on the extension's event channel, and check that
 *		notifications reach this connection: if they do not, a warning says
 *		that the caller falls back to refreshing every 'fallback_s'
 *		seconds.  False after reporting an error.
 */
bool
pgbcli_listen(PGconn *conn, int fallback_s)
{
	int			arrive;

	if (!pgbcli_command(conn, "LISTEN " PGBCLI_CHANNEL))
		return false;
	arrive = notifications_arrive(conn);
	if (arrive < 0)
		return false;
	if (arrive == 0)
	{
		pg_log_warning("notifications do not reach this connection: refreshing every %d s instead",
					   fallback_s);
		pg_log_warning_detail("Two transactions of this connection ran in different server processes, or a notification it sent did not come back within %d ms.",
							  PROBE_WAIT_MS);
		pg_log_warning_hint("Connect to the server directly, or through a pooler in session mode: LISTEN does not work through one in transaction mode (pgbouncer's pool_mode = transaction).");
	}
	return true;
}

/*
 * pgbcli_now_ms
 *		A monotonic clock, in milliseconds.
 */
int64
pgbcli_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * notification_matches
 *		True if a notification is about the filter's batch (its payload's
 *		"batch_id"), or, when the filter wants them, about an endpoint (its
 *		"event" starts with endpoint_).
 */
static bool
notification_matches(const PGnotify *notify, const PgbcliFilter *filter)
{
	char		value[128];

	if (strcmp(notify->relname, PGBCLI_CHANNEL) != 0)
		return false;
	if (pgbcli_json_field(notify->extra, "batch_id", value, sizeof(value)))
	{
		char	   *end;
		int64		id = strtoi64(value, &end, 10);

		if (end != value && *end == '\0' && id == filter->batch_id)
			return true;
	}
	if (filter->endpoints &&
		pgbcli_json_field(notify->extra, "event", value, sizeof(value)) &&
		strncmp(value, "endpoint_", strlen("endpoint_")) == 0)
		return true;
	return false;
}

/*
 * drain_notifications
 *		Takes every notification libpq has read; PGBCLI_WAKE_NOTIFY if one
 *		of them passes the filter.
 */
static int
drain_notifications(PGconn *conn, const PgbcliFilter *filter)
{
	PGnotify   *notify;
	int			wake = PGBCLI_WAKE_TIMEOUT;

	while ((notify = PQnotifies(conn)) != NULL)
	{
		if (notification_matches(notify, filter))
			wake |= PGBCLI_WAKE_NOTIFY;
		PQfreemem(notify);
	}
	return wake;
}

/*
 * read_signals
 *		Empties the self-pipe; what the signals asked for.
 */
static int
read_signals(void)
{
	char		buf[64];
	int			wake = PGBCLI_WAKE_TIMEOUT;

	while (read(signal_pipe[0], buf, sizeof(buf)) > 0)
		;
	if (quit_requested)
		wake |= PGBCLI_WAKE_QUIT;
	if (resize_requested)
	{
		resize_requested = false;
		wake |= PGBCLI_WAKE_RESIZE;
	}
	return wake;
}

/*
 * read_keys
 *		Reads the keys typed: q (or Q) quits; the others are ignored.
 */
static int
read_keys(int fd)
{
	char		buf[64];
	ssize_t		n = read(fd, buf, sizeof(buf));
	int			wake = PGBCLI_WAKE_TIMEOUT;

	if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
	{
		keyboard_closed = true;
		return wake;
	}
	for (ssize_t i = 0; i < n; i++)
	{
		if (buf[i] == 'q' || buf[i] == 'Q')
			wake |= PGBCLI_WAKE_QUIT;
	}
	return wake;
}

/*
 * pgbcli_wait
 *		Sleeps in poll() on the connection's socket, the self-pipe and the
 *		keyboard (if read) until something happens or timeout_ms passes
 *		(-1: no timeout).  Returns what woke it (PGBCLI_WAKE_*): notifications
 *		that pass the filter, a quit, a resize; PGBCLI_WAKE_ERROR after
 *		reporting that the connection failed.  Notifications that arrived
 *		while a query ran are seen at once.
 */
int
pgbcli_wait(PGconn *conn, const PgbcliFilter *filter, int64 timeout_ms)
{
	struct pollfd fds[3];
	int			nfds = 0;
	int			keyboard = keyboard_closed ? -1 : pgbcli_term_keyboard_fd();
	int			sock = PQsocket(conn);
	int			wake;
	int			rc;

	wake = drain_notifications(conn, filter) | read_signals();
	if (wake != PGBCLI_WAKE_TIMEOUT)
		return wake;
	if (sock < 0)
	{
		pg_log_error("the connection to the server was lost");
		return PGBCLI_WAKE_ERROR;
	}

	fds[nfds].fd = sock;
	fds[nfds++].events = POLLIN;
	fds[nfds].fd = signal_pipe[0];
	fds[nfds++].events = POLLIN;
	if (keyboard >= 0)
	{
		fds[nfds].fd = keyboard;
		fds[nfds++].events = POLLIN;
	}

	rc = poll(fds, nfds, timeout_ms < 0 ? -1 : (int) Min(timeout_ms, INT_MAX));
	if (rc < 0)
	{
		if (errno == EINTR)
			return read_signals();
		pg_log_error("poll() failed: %m");
		return PGBCLI_WAKE_ERROR;
	}

	if (fds[0].revents != 0)
	{
		if (!PQconsumeInput(conn))
		{
			pg_log_error("%s", pgbcli_clean_message(PQerrorMessage(conn)));
			return PGBCLI_WAKE_ERROR;
		}
		wake |= drain_notifications(conn, filter);
	}
	if (fds[1].revents != 0)
		wake |= read_signals();
	if (keyboard >= 0 && fds[2].revents != 0)
		wake |= read_keys(keyboard);
	return wake;
}

/*
 * pgbcli_pacer_init
 *		A pacer that allows a refresh at most every min_gap_ms and asks for
 *		one at least every slow_ms; the first is due at once.
 */
void
pgbcli_pacer_init(PgbcliPacer *pacer, int64 min_gap_ms, int64 slow_ms)
{
	pacer->min_gap_ms = min_gap_ms;
	pacer->slow_ms = slow_ms;
	pacer->last_ms = pgbcli_now_ms() - min_gap_ms;
	pacer->due = true;
}

/*
 * pgbcli_pacer_ready
 *		True if it is time to refresh: one was asked for and the least gap
 *		has passed, or the slow timer ran out.
 */
bool
pgbcli_pacer_ready(const PgbcliPacer *pacer)
{
	int64		since = pgbcli_now_ms() - pacer->last_ms;

	return (pacer->due && since >= pacer->min_gap_ms) || since >= pacer->slow_ms;
}

/*
 * pgbcli_pacer_done
 *		Notes that a refresh was made now.
 */
void
pgbcli_pacer_done(PgbcliPacer *pacer)
{
	pacer->last_ms = pgbcli_now_ms();
	pacer->due = false;
}

/*
 * pgbcli_pacer_ask
 *		Asks for a refresh (a notification came): made once the least gap
 *		since the last one has passed, so that a burst makes one refresh.
 */
void
pgbcli_pacer_ask(PgbcliPacer *pacer)
{
	pacer->due = true;
}

/*
 * pgbcli_pacer_timeout
 *		Milliseconds until the next refresh is ready (0: now).
 */
int64
pgbcli_pacer_timeout(const PgbcliPacer *pacer)
{
	int64		next = pacer->last_ms +
		(pacer->due ? pacer->min_gap_ms : pacer->slow_ms);
	int64		left = next - pgbcli_now_ms();

	return Max(left, 0);
}
