/*-------------------------------------------------------------------------
 *
 * serve_session.c
 *		The sessions of pgbatch serve: signing in with the user's own role
 *		(the server checks the password; the password is wiped once the
 *		two connections are made, and never written anywhere), random
 *		tokens for the session cookie and the CSRF fields, the table of
 *		sessions with their expiry, the notifications a session's LISTEN
 *		connection receives, and the decoding of forms.
 *
 *		The sessions live in a fixed table under one mutex; a request holds
 *		a reference to its session, and a session that is signed out or
 *		expires is freed when its last reference goes.
 *
 * cli/serve_session.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres_fe.h"

#include <poll.h>
#include <sys/random.h>
#include <time.h>

#include "common/logging.h"

#include "pgbatch_serve.h"

/* how many users may be signed in at once */
#define MAX_SESSIONS	32

/* a session ends after this long unused, and after this long in any case */
#define IDLE_MS			(30 * 60 * 1000)
#define LIFETIME_MS		(12 * 60 * 60 * 1000)

static PgbwSession *sessions[MAX_SESSIONS];
static pthread_mutex_t table_lock = PTHREAD_MUTEX_INITIALIZER;

/*
 * pgbw_random_token
 *		PGBW_TOKEN_LEN hex digits from the kernel's random source
 *		(getrandom); false if it gives too few bytes.
 */
bool
pgbw_random_token(char *out)
{
	unsigned char bytes[PGBW_TOKEN_LEN / 2];

	if (getrandom(bytes, sizeof(bytes), 0) != (ssize_t) sizeof(bytes))
		return false;
	for (int i = 0; i < (int) sizeof(bytes); i++)
		snprintf(out + 2 * i, 3, "%02x", bytes[i]);
	return true;
}

/*
 * pgbw_token_equal
 *		Compares a token given by a browser with ours, in a time that does
 *		not depend on where they differ.
 */
bool
pgbw_token_equal(const char *given, const char *ours)
{
	unsigned char diff = 0;

	if (given == NULL || strlen(given) != PGBW_TOKEN_LEN ||
		strlen(ours) != PGBW_TOKEN_LEN)
		return false;
	for (int i = 0; i < PGBW_TOKEN_LEN; i++)
		diff |= (unsigned char) given[i] ^ (unsigned char) ours[i];
	return diff == 0;
}

/*
 * free_session
 *		Closes a session's connections and frees it (no reference left).
 */
static void
free_session(PgbwSession *s)
{
	PQfinish(s->conn);
	PQfinish(s->listen);
	pthread_mutex_destroy(&s->lock);
	pthread_mutex_destroy(&s->listen_lock);
	free(s->flash);
	explicit_bzero(s, sizeof(PgbwSession));
	free(s);
}

/*
 * sweep
 *		Ends the sessions past their time, frees the ended ones nobody uses.
 *		Called under table_lock.
 */
static void
sweep(int64 now)
{
	for (int i = 0; i < MAX_SESSIONS; i++)
	{
		PgbwSession *s = sessions[i];

		if (s == NULL)
			continue;
		/* (an open event stream keeps a session in use, not alive forever) */
		if (!s->dead &&
			((s->refs == 0 && now - s->used_ms > IDLE_MS) ||
			 now - s->created_ms > LIFETIME_MS))
			s->dead = true;
		if (s->dead && s->refs == 0)
		{
			sessions[i] = NULL;
			free_session(s);
		}
	}
}

/*
 * pgbw_session_find
 *		The live session the cookie names, with a reference taken (give it
 *		back with pgbw_session_release), or NULL.
 */
PgbwSession *
pgbw_session_find(const char *cookie)
{
	PgbwSession *found = NULL;
	int64		now = pgbcli_now_ms();

	pthread_mutex_lock(&table_lock);
	sweep(now);
	for (int i = 0; cookie != NULL && i < MAX_SESSIONS; i++)
	{
		PgbwSession *s = sessions[i];

		if (s != NULL && !s->dead && pgbw_token_equal(cookie, s->id))
			found = s;
	}
	if (found != NULL)
	{
		found->refs++;
		found->used_ms = now;
	}
	pthread_mutex_unlock(&table_lock);
	return found;
}

/*
 * pgbw_session_release
 *		Gives back a reference; the last one of an ended session frees it.
 */
void
pgbw_session_release(PgbwSession *s)
{
	pthread_mutex_lock(&table_lock);
	s->refs--;
	s->used_ms = pgbcli_now_ms();
	sweep(s->used_ms);
	pthread_mutex_unlock(&table_lock);
}

/*
 * pgbw_session_end
 *		Signs out: the session is gone for every request that comes next.
 */
void
pgbw_session_end(PgbwSession *s)
{
	pthread_mutex_lock(&table_lock);
	s->dead = true;
	pthread_mutex_unlock(&table_lock);
}

/*
 * pgbw_session_end_all
 *		The server stops: ends every session (none is in use any more).
 */
void
pgbw_session_end_all(void)
{
	pthread_mutex_lock(&table_lock);
	for (int i = 0; i < MAX_SESSIONS; i++)
	{
		if (sessions[i] != NULL)
			sessions[i]->dead = true;
	}
	sweep(pgbcli_now_ms());
	pthread_mutex_unlock(&table_lock);
}

/*
 * connect_as
 *		A connection to the database pgbatch serve was started for, as the
 *		role with its password; NULL with the reason in error.  Refused
 *		when the server let the role in without checking the password
 *		(trust, peer, a certificate): anybody could then sign in as anyone.
 */
static PGconn *
connect_as(const char *user, const char *password, PQExpBuffer error)
{
	const char *keywords[10];
	const char *values[10];
	int			n = 0;
	PGconn	   *conn;
	char	   *clean;

	/* the database first: user and password override a connection string's */
	keywords[n] = "dbname";
	values[n++] = pgbcli_opts.dbname;
	keywords[n] = "host";
	values[n++] = pgbcli_opts.host;
	keywords[n] = "port";
	values[n++] = pgbcli_opts.port;
	keywords[n] = "user";
	values[n++] = user;
	keywords[n] = "password";
	values[n++] = password;
	keywords[n] = "client_encoding";
	values[n++] = "UTF8";
	keywords[n] = "application_name";
	values[n++] = "pgbatch serve";
	keywords[n] = "connect_timeout";
	values[n++] = "10";
	keywords[n] = NULL;
	values[n] = NULL;

	conn = PQconnectdbParams(keywords, values, true);
	if (PQstatus(conn) == CONNECTION_BAD)
	{
		clean = pgbcli_sanitize_lines(PQerrorMessage(conn));
		appendPQExpBuffer(error, "Could not sign in: %s", clean);
		free(clean);
		PQfinish(conn);
		return NULL;
	}
	if (!PQconnectionUsedPassword(conn))
	{
		appendPQExpBufferStr(error,
							 "Refused: the database server let this role in "
							 "without checking its password (pg_hba.conf says trust, "
							 "peer or another method). pgbatch serve signs in only "
							 "with a password the server checks.");
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

/*
 * setup
 *		The session's settings (a search_path reaching only pg_catalog, ISO
 *		dates), and LISTEN on the listening connection.
 */
static bool
setup(PGconn *conn, bool listen, PQExpBuffer error)
{
	PGresult   *res;
	bool		ok;

	res = PQexec(conn, listen ?
				 PGBCLI_SESSION_SETUP_SQL "; LISTEN " PGBCLI_CHANNEL :
				 PGBCLI_SESSION_SETUP_SQL);
	ok = PQresultStatus(res) == PGRES_TUPLES_OK ||
		PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		pgbw_error_text(error, conn, res);
	PQclear(res);
	return ok;
}

/*
 * pgbw_sign_in
 *		Signs a user in: two connections as the role, then a new session
 *		in the table (with a reference taken).  The password is wiped
 *		whatever happens.  NULL with the reason in error.
 */
PgbwSession *
pgbw_sign_in(const char *user, char *password, PQExpBuffer error)
{
	PGconn	   *conn;
	PGconn	   *listen = NULL;
	PgbwSession *s;
	int			slot = -1;
	char	   *clean;

	conn = connect_as(user, password, error);
	if (conn != NULL)
		listen = connect_as(user, password, error);
	explicit_bzero(password, strlen(password));
	if (listen == NULL || !setup(conn, false, error) ||
		!setup(listen, true, error))
	{
		PQfinish(conn);
		PQfinish(listen);
		return NULL;
	}

	s = pg_malloc0(sizeof(PgbwSession));
	s->conn = conn;
	s->listen = listen;
	/* for the page and the log: no control characters */
	clean = pgbcli_sanitize(user);
	strlcpy(s->user, clean, sizeof(s->user));
	free(clean);
	pthread_mutex_init(&s->lock, NULL);
	pthread_mutex_init(&s->listen_lock, NULL);
	if (!pgbw_random_token(s->id) || !pgbw_random_token(s->csrf))
	{
		appendPQExpBufferStr(error, "No random bytes for a session.");
		free_session(s);
		return NULL;
	}
	s->created_ms = s->used_ms = pgbcli_now_ms();
	s->refs = 1;

	pthread_mutex_lock(&table_lock);
	sweep(s->created_ms);
	for (int i = 0; i < MAX_SESSIONS && slot < 0; i++)
	{
		if (sessions[i] == NULL)
			slot = i;
	}
	if (slot >= 0)
		sessions[slot] = s;
	pthread_mutex_unlock(&table_lock);
	if (slot < 0)
	{
		appendPQExpBuffer(error, "Too many users are signed in (%d): try again later.",
						  MAX_SESSIONS);
		free_session(s);
		return NULL;
	}
	pg_log_info("signed in: role \"%s\"", s->user);
	return s;
}

/*
 * pgbw_session_flash
 *		A message for the next page the session shows (an action's result).
 */
void
pgbw_session_flash(PgbwSession *s, bool is_error, const char *text)
{
	pthread_mutex_lock(&table_lock);
	free(s->flash);
	s->flash = pg_strdup(text);
	s->flash_error = is_error;
	pthread_mutex_unlock(&table_lock);
}

/*
 * pgbw_session_take_flash
 *		The message for this page, or NULL; the caller frees it.
 */
char *
pgbw_session_take_flash(PgbwSession *s, bool *is_error)
{
	char	   *flash;

	pthread_mutex_lock(&table_lock);
	flash = s->flash;
	*is_error = s->flash_error;
	s->flash = NULL;
	pthread_mutex_unlock(&table_lock);
	return flash;
}

/*
 * seen_event
 *		Whether the notifications after *seen include one about the batch
 *		(any, when batch_id is 0); moves *seen to the last.  -1 if the
 *		session has ended.  Called under table_lock.
 */
static int
seen_event(PgbwSession *s, uint64_t *seen, int64 batch_id)
{
	int			found = 0;

	if (s->dead)
		return -1;
	if (batch_id < 0 || s->generation - *seen > PGBW_RECENT)
		found = batch_id >= 0 && s->generation != *seen;
	else
	{
		for (uint64_t g = *seen + 1; g <= s->generation; g++)
		{
			if (batch_id == 0 || s->recent[g % PGBW_RECENT] == batch_id)
				found = 1;
		}
	}
	*seen = s->generation;
	return found;
}

/*
 * receive
 *		Waits up to timeout_ms on the listening connection and records the
 *		notifications that came.  False if the connection is lost.
 */
static bool
receive(PgbwSession *s, int timeout_ms)
{
	struct pollfd pfd;
	PGnotify   *note;

	pfd.fd = PQsocket(s->listen);
	pfd.events = POLLIN;
	if (pfd.fd < 0)
		return false;
	if (poll(&pfd, 1, timeout_ms) < 0 && errno != EINTR)
		return false;
	if (!PQconsumeInput(s->listen))
		return false;
	while ((note = PQnotifies(s->listen)) != NULL)
	{
		char		id[32];
		int64		batch_id = 0;

		if (pgbcli_json_field(note->extra, "batch_id", id, sizeof(id)) &&
			pgbcli_looks_like_id(id))
			batch_id = strtoi64(id, NULL, 10);
		pthread_mutex_lock(&table_lock);
		s->generation++;
		s->recent[s->generation % PGBW_RECENT] = batch_id;
		pthread_mutex_unlock(&table_lock);
		PQfreemem(note);
	}
	return true;
}

/*
 * pgbw_session_wait_event
 *		Waits up to timeout_ms for a notification about the batch (any,
 *		when batch_id is 0) that *seen has not seen.  1 if one came, 0 if
 *		not, -1 if the session ended; losing its listening connection ends
 *		it.
 *		batch_id -1 only moves *seen to now.  Several event streams of the
 *		session may wait at once: one reads the connection, and every one
 *		sees what it read.
 */
int
pgbw_session_wait_event(PgbwSession *s, uint64_t *seen, int64 batch_id,
						int timeout_ms)
{
	struct timespec deadline;
	int			rc;
	bool		alive = true;

	pthread_mutex_lock(&table_lock);
	rc = seen_event(s, seen, batch_id);
	pthread_mutex_unlock(&table_lock);
	if (rc != 0 || timeout_ms <= 0)
		return rc;

	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long) (timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L)
	{
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	if (pthread_mutex_timedlock(&s->listen_lock, &deadline) == 0)
	{
		alive = receive(s, timeout_ms);
		pthread_mutex_unlock(&s->listen_lock);
	}

	if (!alive)
	{
		/* the server went away: the page's queries cannot work either */
		pg_log_warning("lost the listening connection of role \"%s\": session ended",
					   s->user);
		pgbw_session_end(s);
		return -1;
	}
	pthread_mutex_lock(&table_lock);
	rc = seen_event(s, seen, batch_id);
	pthread_mutex_unlock(&table_lock);
	return rc;
}

/*
 * pgbw_session_tick
 *		Housekeeping, every few seconds from the main thread: frees the
 *		sessions past their time (their connections closed even if no
 *		request comes), and reads the notifications of sessions no event
 *		stream listens for, so that a listening connection nobody reads
 *		never holds back the server's notification queue.
 */
void
pgbw_session_tick(void)
{
	PgbwSession *live[MAX_SESSIONS];
	int			n = 0;

	pthread_mutex_lock(&table_lock);
	sweep(pgbcli_now_ms());
	for (int i = 0; i < MAX_SESSIONS; i++)
	{
		if (sessions[i] != NULL && !sessions[i]->dead)
		{
			sessions[i]->refs++;
			live[n++] = sessions[i];
		}
	}
	pthread_mutex_unlock(&table_lock);

	for (int i = 0; i < n; i++)
	{
		/* a stream waiting on the connection reads it already */
		if (pthread_mutex_trylock(&live[i]->listen_lock) == 0)
		{
			bool		alive = true;
			struct pollfd pfd = {PQsocket(live[i]->listen), POLLIN, 0};
			int64		until = pgbcli_now_ms() + 1000;

			/*
			 * While more comes within 10 ms (a burst may be megabytes), for a
			 * second at most: the next tick goes on.
			 */
			while (alive && pgbcli_now_ms() < until)
			{
				alive = receive(live[i], 0);
				if (!alive || poll(&pfd, 1, 10) <= 0)
					break;
			}

			pthread_mutex_unlock(&live[i]->listen_lock);
			if (!alive)
				pgbw_session_end(live[i]);
		}
		/* (not pgbw_session_release: an idle session stays idle) */
		pthread_mutex_lock(&table_lock);
		live[i]->refs--;
		pthread_mutex_unlock(&table_lock);
	}
}

/*
 * url_decode
 *		Decodes a form value in place ("+" is a space, %XX a byte).
 */
static void
url_decode(char *s)
{
	char	   *out = s;

	for (; *s != '\0'; s++)
	{
		if (*s == '+')
			*out++ = ' ';
		else if (*s == '%' && isxdigit((unsigned char) s[1]) &&
				 isxdigit((unsigned char) s[2]))
		{
			char		hex[3] = {s[1], s[2], '\0'};

			*out++ = (char) strtol(hex, NULL, 16);
			s += 2;
		}
		else
			*out++ = *s;
	}
	*out = '\0';
}

/*
 * pgbw_form_parse
 *		Decodes an application/x-www-form-urlencoded body (the first
 *		PGBW_MAX_FIELDS fields; a field with a NUL byte is dropped).
 */
void
pgbw_form_parse(PgbwForm *form, const char *body, size_t len)
{
	char	   *p;

	memset(form, 0, sizeof(*form));
	form->size = len + 1;
	form->storage = pg_malloc(form->size);
	memcpy(form->storage, body != NULL ? body : "", len);
	form->storage[len] = '\0';

	p = form->storage;
	while (p != NULL && *p != '\0' && form->n < PGBW_MAX_FIELDS)
	{
		char	   *next = strchr(p, '&');
		char	   *eq;

		if (next != NULL)
			*next++ = '\0';
		eq = strchr(p, '=');
		if (eq != NULL)
		{
			*eq = '\0';
			url_decode(p);
			/* a %00 inside the value would cut it: drop the field */
			if (strstr(eq + 1, "%00") == NULL)
			{
				url_decode(eq + 1);
				form->keys[form->n] = p;
				form->values[form->n++] = eq + 1;
			}
		}
		p = next;
	}
}

/*
 * pgbw_form_get
 *		The first value of a field, or NULL.
 */
const char *
pgbw_form_get(const PgbwForm *form, const char *key)
{
	for (int i = 0; i < form->n; i++)
	{
		if (strcmp(form->keys[i], key) == 0)
			return form->values[i];
	}
	return NULL;
}

/*
 * pgbw_form_free
 *		Frees a form, wiped first (it may hold a password).
 */
void
pgbw_form_free(PgbwForm *form)
{
	if (form->storage != NULL)
	{
		explicit_bzero(form->storage, form->size);
		free(form->storage);
	}
	memset(form, 0, sizeof(*form));
}
