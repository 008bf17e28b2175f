/*-------------------------------------------------------------------------
 *
 * serve.c
 *		pgbatch serve: the web page for the operations manager.  An HTTP
 *		server (libmicrohttpd, a thread per connection) on 127.0.0.1 by
 *		default, that refuses to listen beyond the loopback interface
 *		without TLS.  This file checks the address, starts and stops the
 *		server, and routes each request: the Host and origin checks, the
 *		sign-in form's and the session's CSRF tokens, the pages, the
 *		actions, and the live updates (server-sent events).
 *
 * cli/serve.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <microhttpd.h>

#include "common/logging.h"
#include "mb/pg_wchar.h"

#include "pgbatch_serve.h"

/* the most a request's body may hold (a payload edited in the page) */
#define MAX_BODY		(1024 * 1024)

/* seconds a connection may stay idle (the events send a comment every 15) */
#define IDLE_TIMEOUT	60
#define MAX_CONNECTIONS	64
#define KEEPALIVE_MS	15000

/* how often the main thread looks after the sessions */
#define TICK_SECONDS	5

/* the headers of every answer */
#define CSP "default-src 'none'; script-src 'self'; style-src 'self'; " \
	"img-src 'self'; connect-src 'self'; form-action 'self'; " \
	"frame-ancestors 'none'; base-uri 'none'"

/* the server is stopping: the event streams end */
volatile sig_atomic_t pgbw_stopping = false;

/* the server speaks TLS: cookies are Secure */
bool		pgbw_tls = false;

/* the host names a request may give (when on loopback), without the port */
static bool check_host = false;
static char allowed_hosts[4][128];

/* a request being received: its body */
typedef struct Request
{
	PQExpBufferData body;
	bool		too_big;
} Request;

/* an event stream: its session, what it has seen, its batch */
typedef struct EventStream
{
	PgbwSession *session;
	uint64_t	seen;
	int64		batch_id;
	int64		last_write_ms;
	bool		started;
} EventStream;

/*
 * header
 *		A request header, or NULL.
 */
static const char *
header(struct MHD_Connection *connection, const char *name)
{
	return MHD_lookup_connection_value(connection, MHD_HEADER_KIND, name);
}

/*
 * host_allowed
 *		On loopback, the Host header must name the server as this process
 *		knows it (127.0.0.1, localhost, [::1], the --listen address), on
 *		any port (an SSH tunnel may forward another one): a page of another
 *		site whose name resolves to 127.0.0.1 (DNS rebinding) is refused.
 */
static bool
host_allowed(struct MHD_Connection *connection)
{
	const char *host = header(connection, "Host");
	const char *colon;
	size_t		len;

	if (!check_host)
		return true;
	if (host == NULL)
		return false;
	/* the name: up to the port's colon (after the brackets of IPv6) */
	colon = strrchr(host, ':');
	if (colon != NULL && strchr(colon, ']') == NULL &&
		(host[0] != '[' || colon > strchr(host, ']')))
		len = colon - host;
	else
		len = strlen(host);
	for (int i = 0; i < lengthof(allowed_hosts); i++)
	{
		if (allowed_hosts[i][0] != '\0' &&
			strlen(allowed_hosts[i]) == len &&
			pg_strncasecmp(host, allowed_hosts[i], len) == 0)
			return true;
	}
	return false;
}

/*
 * same_origin
 *		A POST must come from one of our pages: when the browser says where
 *		it comes from (Origin, Sec-Fetch-Site), that must be here.  (The
 *		pages' Referrer-Policy is same-origin: under no-referrer, a browser
 *		sends "Origin: null" with its forms.)
 */
static bool
same_origin(struct MHD_Connection *connection)
{
	const char *origin = header(connection, "Origin");
	const char *site = header(connection, "Sec-Fetch-Site");
	const char *host = header(connection, "Host");

	if (site != NULL && strcmp(site, "same-origin") != 0)
		return false;
	if (origin != NULL)
	{
		const char *scheme = pgbw_tls ? "https://" : "http://";
		size_t		slen = strlen(scheme);

		if (host == NULL || strncmp(origin, scheme, slen) != 0 ||
			pg_strcasecmp(origin + slen, host) != 0)
			return false;
	}
	return true;
}

/*
 * reply_init
 *		An empty HTML answer with status 200.
 */
static void
reply_init(PgbwReply *reply)
{
	memset(reply, 0, sizeof(*reply));
	reply->status = MHD_HTTP_OK;
	reply->content_type = "text/html; charset=utf-8";
	initPQExpBuffer(&reply->body);
}

/*
 * reply_text
 *		A short plain-text answer (an error) with the given status.
 */
static void
reply_text(PgbwReply *reply, unsigned status, const char *text)
{
	reply->status = status;
	reply->content_type = "text/plain; charset=utf-8";
	resetPQExpBuffer(&reply->body);
	appendPQExpBuffer(&reply->body, "%s\n", text);
}

/*
 * redirect
 *		303 See Other to a path of ours (after a POST: the page reloads
 *		with a GET).
 */
static void
redirect(PgbwReply *reply, const char *path)
{
	reply->status = MHD_HTTP_SEE_OTHER;
	free(reply->location);
	reply->location = pg_strdup(path);
}

/*
 * set_cookie
 *		Adds a Set-Cookie header: HttpOnly, SameSite=Strict, Path=/, and
 *		Secure under TLS; an empty value deletes the cookie.
 */
static void
set_cookie(PgbwReply *reply, const char *name, const char *value)
{
	int			i = reply->set_cookie[0][0] == '\0' ? 0 : 1;

	snprintf(reply->set_cookie[i], sizeof(reply->set_cookie[i]),
			 "%s=%s; Path=/; HttpOnly; SameSite=Strict%s%s",
			 name, value, value[0] == '\0' ? "; Max-Age=0" : "",
			 pgbw_tls ? "; Secure" : "");
}

/*
 * send_reply
 *		Queues the answer with the headers every answer has (no caching,
 *		no framing, no sniffing, the content security policy) and frees it.
 */
static enum MHD_Result
send_reply(struct MHD_Connection *connection, PgbwReply *reply)
{
	struct MHD_Response *response;
	enum MHD_Result ret;

	response = MHD_create_response_from_buffer(reply->body.len,
											   reply->body.data,
											   MHD_RESPMEM_MUST_COPY);
	if (response == NULL)
	{
		termPQExpBuffer(&reply->body);
		free(reply->location);
		return MHD_NO;
	}
	MHD_add_response_header(response, "Content-Type", reply->content_type);
	MHD_add_response_header(response, "Cache-Control", "no-store");
	MHD_add_response_header(response, "Content-Security-Policy", CSP);
	MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
	MHD_add_response_header(response, "X-Frame-Options", "DENY");
	MHD_add_response_header(response, "Referrer-Policy", "same-origin");
	if (reply->location != NULL)
		MHD_add_response_header(response, "Location", reply->location);
	for (int i = 0; i < lengthof(reply->set_cookie); i++)
	{
		if (reply->set_cookie[i][0] != '\0')
			MHD_add_response_header(response, "Set-Cookie",
									reply->set_cookie[i]);
	}
	ret = MHD_queue_response(connection, reply->status, response);
	MHD_destroy_response(response);
	termPQExpBuffer(&reply->body);
	free(reply->location);
	return ret;
}

/*
 * event_read
 *		The event stream's content: "change" when a notification about the
 *		stream's batch (any batch on the list of batches) arrives, a comment
 *		every 15 s, and the end when the session ends or the server stops.
 *		Runs in the connection's own thread, so it may block, a second at a
 *		time.
 */
static ssize_t
event_read(void *cls, uint64_t pos, char *buf, size_t max)
{
	EventStream *st = cls;

	if (!st->started)
	{
		st->started = true;
		st->last_write_ms = pgbcli_now_ms();
		return snprintf(buf, max, "retry: 2000\n: pgbatch\n\n");
	}
	while (!pgbw_stopping)
	{
		int			rc = pgbw_session_wait_event(st->session, &st->seen,
												 st->batch_id, 1000);

		if (rc < 0)
			break;
		if (rc > 0)
		{
			st->last_write_ms = pgbcli_now_ms();
			return snprintf(buf, max, "event: change\ndata: %lld\n\n",
							(long long) st->batch_id);
		}
		if (pgbcli_now_ms() - st->last_write_ms >= KEEPALIVE_MS)
		{
			st->last_write_ms = pgbcli_now_ms();
			return snprintf(buf, max, ": keepalive\n\n");
		}
	}
	return MHD_CONTENT_READER_END_OF_STREAM;
}

/*
 * event_free
 *		The stream is over: releases its session.
 */
static void
event_free(void *cls)
{
	EventStream *st = cls;

	pgbw_session_release(st->session);
	free(st);
}

/*
 * send_events
 *		GET /events?batch=N: a server-sent event stream for the session.
 *		Takes over the session's reference.
 */
static enum MHD_Result
send_events(struct MHD_Connection *connection, PgbwSession *s)
{
	const char *batch = MHD_lookup_connection_value(connection,
													MHD_GET_ARGUMENT_KIND,
													"batch");
	EventStream *st = pg_malloc0(sizeof(EventStream));
	struct MHD_Response *response;
	enum MHD_Result ret;

	st->session = s;
	st->batch_id = (batch != NULL && pgbcli_looks_like_id(batch)) ?
		strtoi64(batch, NULL, 10) : 0;
	/* from now on: what happened before, the page already shows */
	(void) pgbw_session_wait_event(s, &st->seen, -1, 0);

	response = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 1024,
												 event_read, st, event_free);
	if (response == NULL)
	{
		event_free(st);
		return MHD_NO;
	}
	MHD_add_response_header(response, "Content-Type", "text/event-stream");
	MHD_add_response_header(response, "Cache-Control", "no-store");
	MHD_add_response_header(response, "X-Content-Type-Options", "nosniff");
	ret = MHD_queue_response(connection, MHD_HTTP_OK, response);
	MHD_destroy_response(response);
	return ret;
}

/*
 * handle_signin
 *		POST /signin: the form's token must match its cookie; then the
 *		server checks the role's password.  A failure waits a second.
 */
static void
handle_signin(PgbwReply *reply, struct MHD_Connection *connection,
			  PgbwForm *form)
{
	const char *cookie = MHD_lookup_connection_value(connection,
													 MHD_COOKIE_KIND,
													 PGBW_SIGNIN_COOKIE);
	const char *token = pgbw_form_get(form, "csrf");
	const char *user = pgbw_form_get(form, "user");
	char	   *password = (char *) pgbw_form_get(form, "password");
	PQExpBufferData error;
	PgbwSession *s;
	char		fresh[PGBW_TOKEN_LEN + 1];

	if (cookie == NULL || token == NULL || !pgbw_token_equal(cookie, token))
	{
		reply_text(reply, MHD_HTTP_FORBIDDEN,
				   "The sign-in form has expired: reload the page.");
		return;
	}
	initPQExpBuffer(&error);
	if (user == NULL || user[0] == '\0' || password == NULL ||
		password[0] == '\0')
	{
		appendPQExpBufferStr(&error, "Give your database role and its password.");
		s = NULL;
	}
	else
		s = pgbw_sign_in(user, password, &error);

	if (s != NULL)
	{
		set_cookie(reply, PGBW_SESSION_COOKIE, s->id);
		set_cookie(reply, PGBW_SIGNIN_COOKIE, "");
		pgbw_session_release(s);
		redirect(reply, "/");
	}
	else
	{
		char	   *clean = pgbcli_sanitize(user != NULL ? user : "");

		pg_log_warning("sign-in refused for role \"%s\"", clean);
		free(clean);
		pg_usleep(1000000);
		if (!pgbw_random_token(fresh))
			fresh[0] = '\0';
		set_cookie(reply, PGBW_SIGNIN_COOKIE, fresh);
		reply->status = MHD_HTTP_UNAUTHORIZED;
		pgbw_page_signin(reply, fresh, error.data);
	}
	termPQExpBuffer(&error);
}

/*
 * route_get
 *		The pages: the sign-in form, the list of batches, a batch.
 */
static void
route_get(PgbwReply *reply, struct MHD_Connection *connection,
		  const char *url, PgbwSession *s)
{
	if (strcmp(url, "/app.css") == 0 || strcmp(url, "/app.js") == 0)
	{
		bool		css = strcmp(url, "/app.css") == 0;

		reply->content_type = css ? "text/css; charset=utf-8" :
			"text/javascript; charset=utf-8";
		appendPQExpBufferStr(&reply->body, css ? pgbw_css : pgbw_js);
		return;
	}
	if (strcmp(url, "/") != 0 && strcmp(url, "/batch") != 0)
	{
		reply_text(reply, MHD_HTTP_NOT_FOUND, "Not found.");
		return;
	}
	if (s == NULL)
	{
		char		token[PGBW_TOKEN_LEN + 1];

		if (strcmp(url, "/") != 0)
		{
			redirect(reply, "/");
			return;
		}
		if (!pgbw_random_token(token))
		{
			reply_text(reply, MHD_HTTP_INTERNAL_SERVER_ERROR,
					   "No random bytes for a token.");
			return;
		}
		set_cookie(reply, PGBW_SIGNIN_COOKIE, token);
		pgbw_page_signin(reply, token, NULL);
		return;
	}
	if (strcmp(url, "/") == 0)
		pgbw_page_batches(reply, s);
	else
	{
		const char *id = MHD_lookup_connection_value(connection,
													 MHD_GET_ARGUMENT_KIND,
													 "id");
		const char *level = MHD_lookup_connection_value(connection,
														MHD_GET_ARGUMENT_KIND,
														"level");

		if (id == NULL || !pgbcli_looks_like_id(id))
		{
			reply_text(reply, MHD_HTTP_BAD_REQUEST, "No batch id.");
			return;
		}
		pgbw_page_batch(reply, s, strtoi64(id, NULL, 10),
						(level != NULL && strcmp(level, "error") == 0) ?
						PGBCLI_LEVEL_ERROR : PGBCLI_LEVEL_WARNING);
	}
}

/*
 * route_post
 *		The forms: sign in, sign out, and the actions, each behind the
 *		session's CSRF token.
 */
static void
route_post(PgbwReply *reply, struct MHD_Connection *connection,
		   const char *url, PgbwSession *s, PgbwForm *form)
{
	const char *token = pgbw_form_get(form, "csrf");

	if (!same_origin(connection))
	{
		reply_text(reply, MHD_HTTP_FORBIDDEN,
				   "Refused: the form was not sent from this site.");
		return;
	}
	if (strcmp(url, "/signin") == 0)
	{
		handle_signin(reply, connection, form);
		return;
	}
	if (s == NULL)
	{
		reply_text(reply, MHD_HTTP_FORBIDDEN,
				   "You are not signed in (or your session expired): reload the page.");
		return;
	}
	if (token == NULL || !pgbw_token_equal(token, s->csrf))
	{
		reply_text(reply, MHD_HTTP_FORBIDDEN,
				   "Refused: the form's token is not this session's. Reload the page.");
		return;
	}
	if (strcmp(url, "/signout") == 0)
	{
		pgbw_session_end(s);
		set_cookie(reply, PGBW_SESSION_COOKIE, "");
		redirect(reply, "/");
		return;
	}
	pgbw_action(reply, s, url, form);
}

/*
 * respond
 *		Answers a request whose body has been received.
 */
static enum MHD_Result
respond(struct MHD_Connection *connection, Request *req, const char *url,
		const char *method)
{
	bool		is_get = strcmp(method, "GET") == 0 ||
		strcmp(method, "HEAD") == 0;
	const char *cookie;
	PgbwSession *s;
	PgbwReply	reply;
	enum MHD_Result ret;

	reply_init(&reply);
	if (!host_allowed(connection))
	{
		reply_text(&reply, MHD_HTTP_MISDIRECTED_REQUEST,
				   "Refused: this server answers only to its own address.");
		return send_reply(connection, &reply);
	}
	if (!is_get && strcmp(method, "POST") != 0)
	{
		reply_text(&reply, MHD_HTTP_METHOD_NOT_ALLOWED, "Method not allowed.");
		return send_reply(connection, &reply);
	}
	if (req->too_big)
	{
		reply_text(&reply, MHD_HTTP_CONTENT_TOO_LARGE, "The form is too large.");
		return send_reply(connection, &reply);
	}

	cookie = MHD_lookup_connection_value(connection, MHD_COOKIE_KIND,
										 PGBW_SESSION_COOKIE);
	s = pgbw_session_find(cookie);

	if (is_get && strcmp(url, "/events") == 0)
	{
		if (s == NULL)
		{
			reply_text(&reply, MHD_HTTP_UNAUTHORIZED, "Not signed in.");
			return send_reply(connection, &reply);
		}
		termPQExpBuffer(&reply.body);
		return send_events(connection, s);	/* the stream keeps s */
	}

	if (is_get)
		route_get(&reply, connection, url, s);
	else
	{
		PgbwForm	form;

		pgbw_form_parse(&form, req->body.data, req->body.len);
		route_post(&reply, connection, url, s, &form);
		pgbw_form_free(&form);
	}
	if (s != NULL)
		pgbw_session_release(s);
	ret = send_reply(connection, &reply);
	return ret;
}

/*
 * handle_request
 *		libmicrohttpd's access handler: collects the body, then answers.
 */
static enum MHD_Result
handle_request(void *cls, struct MHD_Connection *connection, const char *url,
			   const char *method, const char *version,
			   const char *upload_data, size_t *upload_data_size,
			   void **con_cls)
{
	Request    *req = *con_cls;

	if (req == NULL)
	{
		req = pg_malloc0(sizeof(Request));
		initPQExpBuffer(&req->body);
		*con_cls = req;
		return MHD_YES;
	}
	if (*upload_data_size > 0)
	{
		if (req->body.len + *upload_data_size > MAX_BODY)
			req->too_big = true;
		else
			appendBinaryPQExpBuffer(&req->body, upload_data,
									*upload_data_size);
		*upload_data_size = 0;
		return MHD_YES;
	}
	return respond(connection, req, url, method);
}

/*
 * request_completed
 *		Frees a request, its body wiped first (it may hold a password).
 */
static void
request_completed(void *cls, struct MHD_Connection *connection,
				  void **con_cls, enum MHD_RequestTerminationCode toe)
{
	Request    *req = *con_cls;

	if (req == NULL)
		return;
	if (req->body.data != NULL)
		explicit_bzero(req->body.data, req->body.maxlen);
	termPQExpBuffer(&req->body);
	free(req);
	*con_cls = NULL;
}

/*
 * mhd_log
 *		libmicrohttpd's messages, as ours.
 */
static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
	char		msg[1024];
	char	   *clean;

	vsnprintf(msg, sizeof(msg), fmt, ap);
	clean = pgbcli_sanitize(msg);
	pg_log_warning("%s", clean);
	free(clean);
}

/*
 * resolve_listen
 *		The address to listen on: an IP address, or "localhost".  Exits
 *		with status 2 on anything else, and when it is not a loopback
 *		address and there is no TLS.
 */
static void
resolve_listen(const char *listen, int port, struct sockaddr_storage *addr,
			   bool *ipv6, bool tls)
{
	struct addrinfo hints = {0};
	struct addrinfo *res;
	const char *name = strcmp(listen, "localhost") == 0 ? "127.0.0.1" : listen;
	bool		loopback;
	char		portstr[16];

	hints.ai_flags = AI_NUMERICHOST | AI_PASSIVE;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(portstr, sizeof(portstr), "%d", port);
	if (getaddrinfo(name, portstr, &hints, &res) != 0)
	{
		pg_log_error("invalid value \"%s\" for --listen: not an IP address",
					 listen);
		pg_log_error_hint("Give an address such as 127.0.0.1 or ::1.");
		exit(PGBCLI_EXIT_USAGE);
	}
	memcpy(addr, res->ai_addr, res->ai_addrlen);
	*ipv6 = res->ai_family == AF_INET6;
	freeaddrinfo(res);

	if (*ipv6)
		loopback = IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *) addr)->sin6_addr);
	else
		loopback = (ntohl(((struct sockaddr_in *) addr)->sin_addr.s_addr) >> 24) == 127;

	if (!loopback && !tls)
	{
		pg_log_error("refusing to listen on %s without TLS", listen);
		pg_log_error_detail("Sign-in passwords and session cookies would cross the network in clear text.");
		pg_log_error_hint("Give --tls-cert and --tls-key, or listen on 127.0.0.1 and reach it through an SSH tunnel.");
		exit(PGBCLI_EXIT_USAGE);
	}
	check_host = loopback;
	if (loopback)
	{
		strlcpy(allowed_hosts[0], "127.0.0.1", sizeof(allowed_hosts[0]));
		strlcpy(allowed_hosts[1], "localhost", sizeof(allowed_hosts[1]));
		strlcpy(allowed_hosts[2], "[::1]", sizeof(allowed_hosts[2]));
		snprintf(allowed_hosts[3], sizeof(allowed_hosts[3]), *ipv6 ? "[%s]" : "%s",
				 name);
	}
}

/*
 * pgbcli_cmd_serve
 *		serve: runs the web page until SIGINT or SIGTERM.
 */
int
pgbcli_cmd_serve(PGconn *conn, const char *arg)
{
	const char *listen = pgbcli_opts.listen ? pgbcli_opts.listen : "127.0.0.1";
	int			port = pgbcli_opts.web_port;
	bool		tls = pgbcli_opts.tls_cert != NULL;
	struct sockaddr_storage addr;
	bool		ipv6;
	char	   *cert = NULL;
	char	   *key = NULL;
	struct MHD_Daemon *daemon;
	unsigned	flags;
	const union MHD_DaemonInfo *info;
	sigset_t	stop_signals;
	struct MHD_OptionItem options[8];
	int			n = 0;

	if ((pgbcli_opts.tls_cert == NULL) != (pgbcli_opts.tls_key == NULL))
	{
		pg_log_error("--tls-cert and --tls-key go together");
		exit(PGBCLI_EXIT_USAGE);
	}
	resolve_listen(listen, port, &addr, &ipv6, tls);
	if (tls)
	{
		cert = pgbcli_read_file(pgbcli_opts.tls_cert);
		key = cert != NULL ? pgbcli_read_file(pgbcli_opts.tls_key) : NULL;
		if (key == NULL)
			return PGBCLI_EXIT_ERROR;
	}
	pgbw_tls = tls;
	/* the sessions' connections speak UTF-8 (the pages' charset) */
	pgbcli_out.encoding = PG_UTF8;

	/* the signals that stop the server: waited for here, in no other thread */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGINT);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
	signal(SIGPIPE, SIG_IGN);

	flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
		MHD_USE_ERROR_LOG | (ipv6 ? MHD_USE_IPv6 : 0) | (tls ? MHD_USE_TLS : 0);
	options[n++] = (struct MHD_OptionItem) {
		MHD_OPTION_SOCK_ADDR, 0, &addr
	};
	options[n++] = (struct MHD_OptionItem) {
		MHD_OPTION_CONNECTION_LIMIT, MAX_CONNECTIONS, NULL
	};
	options[n++] = (struct MHD_OptionItem) {
		MHD_OPTION_CONNECTION_TIMEOUT, IDLE_TIMEOUT, NULL
	};
	options[n++] = (struct MHD_OptionItem) {
		MHD_OPTION_NOTIFY_COMPLETED, (intptr_t) request_completed, NULL
	};
	if (tls)
	{
		options[n++] = (struct MHD_OptionItem) {
			MHD_OPTION_HTTPS_MEM_CERT, 0, cert
		};
		options[n++] = (struct MHD_OptionItem) {
			MHD_OPTION_HTTPS_MEM_KEY, 0, key
		};
	}
	options[n++] = (struct MHD_OptionItem) {
		MHD_OPTION_END, 0, NULL
	};
	/* the logger first, so that even the options' messages go through it */
	daemon = MHD_start_daemon(flags, (uint16_t) port, NULL, NULL,
							  handle_request, NULL,
							  MHD_OPTION_EXTERNAL_LOGGER, mhd_log, NULL,
							  MHD_OPTION_ARRAY, options,
							  MHD_OPTION_END);
	if (daemon == NULL)
	{
		pg_log_error("could not start the web server on %s port %d", listen, port);
		pg_log_error_hint("The messages above say why: another program on the port (choose another with --web-port), or a certificate or key that cannot be used.");
		return PGBCLI_EXIT_ERROR;
	}
	info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
	if (info != NULL && port == 0)
		port = info->port;
	printf("pgbatch serve: listening on %s://%s%s%s:%d/ (Ctrl-C stops)\n",
		   tls ? "https" : "http", ipv6 ? "[" : "", listen, ipv6 ? "]" : "",
		   port);
	fflush(stdout);

	/* until a stop signal: the sessions' housekeeping every few seconds */
	for (;;)
	{
		struct timespec tick = {TICK_SECONDS, 0};

		if (sigtimedwait(&stop_signals, NULL, &tick) >= 0)
			break;
		if (errno == EAGAIN)
			pgbw_session_tick();
	}
	pgbw_stopping = true;
	MHD_stop_daemon(daemon);
	pgbw_session_end_all();
	if (cert != NULL)
		explicit_bzero(cert, strlen(cert));
	if (key != NULL)
		explicit_bzero(key, strlen(key));
	free(cert);
	free(key);
	printf("pgbatch serve: stopped\n");
	return PGBCLI_EXIT_OK;
}
