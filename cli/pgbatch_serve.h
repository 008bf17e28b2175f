/*-------------------------------------------------------------------------
 *
 * pgbatch_serve.h
 *		Declarations shared by the files of "pgbatch serve", the web page
 *		of the operators' tool: an HTTP server (libmicrohttpd) whose users
 *		sign in with their own database role.  Each signed-in session holds
 *		two connections made with the user's password (which is then
 *		forgotten): one runs the page's queries and actions through the SQL
 *		API, the other LISTENs for the live updates.
 *
 * cli/pgbatch_serve.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGBATCH_SERVE_H
#define PGBATCH_SERVE_H

#include <pthread.h>
#include <signal.h>
#include <stdint.h>

#include "pgbatch_cli.h"

/* the length of a random token (a session id, a CSRF token), in hex */
#define PGBW_TOKEN_LEN		64

/* the cookies: the session, and the sign-in form's CSRF token */
#define PGBW_SESSION_COOKIE	"pgbatch_session"
#define PGBW_SIGNIN_COOKIE	"pgbatch_signin"

/* how many batch ids a session remembers from its notifications */
#define PGBW_RECENT			64

/* a signed-in user's session */
typedef struct PgbwSession
{
	char		id[PGBW_TOKEN_LEN + 1]; /* the cookie's value */
	char		csrf[PGBW_TOKEN_LEN + 1];	/* in every form, checked on POST */
	char		user[64 * 4];	/* the role, as typed */
	PGconn	   *conn;			/* the page's queries; under lock */
	PGconn	   *listen;			/* LISTENs; under listen_lock */
	pthread_mutex_t lock;
	pthread_mutex_t listen_lock;

	/* below: under the session table's mutex */
	int			refs;			/* requests using the session */
	bool		dead;			/* signed out or expired: freed at refs 0 */
	int64		created_ms;
	int64		used_ms;
	char	   *flash;			/* a message for the next page, malloc'd */
	bool		flash_error;
	uint64_t	generation;		/* notifications seen */
	int64		recent[PGBW_RECENT];	/* their batch ids (0: none) */
} PgbwSession;

/* a form's fields (application/x-www-form-urlencoded), decoded */
#define PGBW_MAX_FIELDS		32
typedef struct PgbwForm
{
	int			n;
	char	   *keys[PGBW_MAX_FIELDS];
	char	   *values[PGBW_MAX_FIELDS];
	char	   *storage;		/* the decoded copy of the body */
	size_t		size;
} PgbwForm;

/* a response being built */
typedef struct PgbwReply
{
	unsigned	status;			/* HTTP status */
	const char *content_type;
	PQExpBufferData body;
	char	   *location;		/* a redirection, or NULL */
	char		set_cookie[2][256]; /* up to two Set-Cookie headers */
} PgbwReply;

/* serve.c: the server */
extern volatile sig_atomic_t pgbw_stopping;
extern bool pgbw_tls;

/* serve_session.c: sessions, tokens, sign-in, forms */
extern bool pgbw_random_token(char *out);
extern bool pgbw_token_equal(const char *a, const char *b);
extern PgbwSession *pgbw_session_find(const char *cookie);
extern void pgbw_session_release(PgbwSession *s);
extern void pgbw_session_end(PgbwSession *s);
extern void pgbw_session_end_all(void);
extern void pgbw_session_tick(void);
extern PgbwSession *pgbw_sign_in(const char *user, char *password,
								 PQExpBuffer error);
extern void pgbw_session_flash(PgbwSession *s, bool is_error,
							   const char *text);
extern char *pgbw_session_take_flash(PgbwSession *s, bool *is_error);
extern int	pgbw_session_wait_event(PgbwSession *s, uint64_t *seen,
									int64 batch_id, int timeout_ms);
extern void pgbw_form_parse(PgbwForm *form, const char *body, size_t len);
extern const char *pgbw_form_get(const PgbwForm *form, const char *key);
extern void pgbw_form_free(PgbwForm *form);

/* serve_pages.c: the pages, HTML */
extern void pgbw_html_escape(PQExpBuffer buf, const char *text);
extern void pgbw_page_signin(PgbwReply *reply, const char *token,
							 const char *message);
extern void pgbw_page_batches(PgbwReply *reply, PgbwSession *s);
extern void pgbw_page_batch(PgbwReply *reply, PgbwSession *s, int64 id,
							int level);

/* serve_actions.c: the forms' actions, through the SQL API */
extern void pgbw_action(PgbwReply *reply, PgbwSession *s, const char *path,
						const PgbwForm *form);
extern PGresult *pgbw_query(PgbwSession *s, const char *sql, int nparams,
							const char *const *params, PQExpBuffer error);
extern void pgbw_error_text(PQExpBuffer error, PGconn *conn,
							const PGresult *res);

/* serve_assets.c: the style sheet and the script */
extern const char pgbw_css[];
extern const char pgbw_js[];

#endif							/* PGBATCH_SERVE_H */
