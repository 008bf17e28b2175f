/*-------------------------------------------------------------------------
 *
 * http.c
 *		The HTTP transport of a backend, through libcurl's multi interface:
 *		many requests in flight at once, their sockets kept in an epoll set
 *		of our own (each added, changed and removed as libcurl asks, so
 *		thousands in flight cost nothing per wait), which is waited on in
 *		one WaitEventSet together with the process latch, so that new work
 *		and shutdown are seen at once.  Requests wait in a queue until their
 *		endpoint's shared limits (concurrency, rate, tokens, what the
 *		provider's headers said, Retry-After pause, circuit breaker;
 *		endpoint.c) let them go; how each connects (the SSRF guard, the
 *		proxy, TLS) is http_connect.c's.  What a request is for and
 *		what its response means are the HTTP stage's (stage_http.c).
 *
 *		Everything libcurl touches is malloc'd and freed here on every
 *		path; the curl callbacks never ereport and never palloc.
 *
 * IDENTIFICATION
 *		src/http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/epoll.h>
#include <sys/resource.h>

#include <curl/curl.h>

#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "storage/fd.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "endpoint.h"
#include "guc.h"
#include "http.h"
#include "http_connect.h"
#include "http_response.h"
#include "rate_headers.h"
#include "security.h"

static CURLM *multi = NULL;
static PgbHttpRequest *waiting_head = NULL;
static PgbHttpRequest *waiting_tail = NULL;
static PgbHttpRequest *done_head = NULL;
static PgbHttpRequest *in_flight_head = NULL;	/* linked by next and prev */
static int	n_in_flight = 0;
static int	n_waiting = 0;

/* requests this executor holds (prepared, waiting or in flight) per endpoint */
static int *endpoint_load = NULL;

/*
 * When each endpoint last answered this backend (CURLOPT_PIPEWAIT, in
 * start_transfer); a minute is well within the two minutes libcurl keeps an
 * idle connection (CURLOPT_MAXAGE_CONN), so its connections are still there.
 */
static TimestampTz *endpoint_answered_at = NULL;
#define PGB_ANSWERED_RECENTLY_MS 60000

/* endpoints a dispatch pass remembers as saying wait */
#define PGB_DISPATCH_BLOCKED 32

/* libcurl's sockets; the wait set holds the latch, postmaster death and it */
static int	epoll_fd = -1;
static WaitEventSet *wes = NULL;

/* socketp of a socket in the epoll set (libcurl forgets it at removal) */
static char socket_known;

static bool timer_set = false;
static TimestampTz timer_at = 0;

/*
 * socket_callback
 *		CURLMOPT_SOCKETFUNCTION: adds a socket to the epoll set, changes
 *		what it is waited for, or removes it, as libcurl asks; O(1) whatever
 *		the number of sockets.  A socket libcurl has seen added carries
 *		socket_known as its socketp.  Returns -1 (libcurl fails the transfer)
 *		if the kernel refuses.
 */
static int
socket_callback(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		/* it may be closed already, which removed it */
		(void) epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd, NULL);
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) |
		((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
	ev.data.fd = fd;
	if (socketp != NULL)
		return epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &ev) == 0 ? 0 : -1;
	if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0 &&
		(errno != EEXIST || epoll_ctl(epoll_fd, EPOLL_CTL_MOD, fd, &ev) != 0))
		return -1;
	curl_multi_assign(multi, fd, &socket_known);
	return 0;
}

/*
 * timer_callback
 *		CURLMOPT_TIMERFUNCTION: when libcurl wants to be called back.
 */
static int
timer_callback(CURLM *m, long timeout_ms, void *userp)
{
	if (timeout_ms < 0)
		timer_set = false;
	else
	{
		timer_set = true;
		timer_at = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), timeout_ms);
	}
	return 0;
}

/*
 * write_callback
 *		Appends response body bytes, refusing more than
 *		pgbatch.max_response_size (the transfer then fails).
 */
static size_t
write_callback(char *data, size_t size, size_t nmemb, void *userp)
{
	PgbHttpRequest *req = (PgbHttpRequest *) userp;
	size_t		n = size * nmemb;

	if (req->resp_len + n > (size_t) pgb_max_response_size)
	{
		req->too_large = true;
		return 0;
	}
	if (req->resp_len + n + 1 > req->resp_cap)
	{
		size_t		cap = Max(req->resp_cap * 2, req->resp_len + n + 1);
		char	   *grown;

		cap = Max(cap, 1024);
		grown = realloc(req->resp, cap);
		if (grown == NULL)
			return 0;
		req->resp = grown;
		req->resp_cap = cap;
	}
	memcpy(req->resp + req->resp_len, data, n);
	req->resp_len += n;
	req->resp[req->resp_len] = '\0';
	return n;
}

/*
 * progress_callback
 *		CURLOPT_XFERINFOFUNCTION: abandon the transfer when the backend is
 *		told to exit.
 */
static int
progress_callback(void *userp, curl_off_t dltotal, curl_off_t dlnow,
				  curl_off_t ultotal, curl_off_t ulnow)
{
	return ProcDiePending ? 1 : 0;
}

/*
 * pgb_http_init
 *		Sets up libcurl (with its default malloc-based allocators) and the
 *		multi handle of this executor.
 */
void
pgb_http_init(void)
{
	struct rlimit rl;

	if (curl_global_init(CURL_GLOBAL_ALL) != CURLE_OK)
		elog(ERROR, "pgbatch: could not initialize libcurl");

	/*
	 * A socket per request in flight: lift the soft limit on open files
	 * (often 1024) to the hard one.  PostgreSQL's own file budget was fixed
	 * at startup from max_files_per_process and is not touched.
	 */
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
	{
		rl.rlim_cur = rl.rlim_max;
		(void) setrlimit(RLIMIT_NOFILE, &rl);
	}

	/* what an earlier call that failed half-way made is kept, not leaked */
	if (epoll_fd < 0)
	{
		if (!AcquireExternalFD())
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_RESOURCES),
					 errmsg("pgbatch: no file descriptor left for the HTTP sockets' wait set"),
					 errhint("Raise max_files_per_process, or the operating system's limit on open files.")));
		epoll_fd = epoll_create1(EPOLL_CLOEXEC);
		if (epoll_fd < 0)
		{
			ReleaseExternalFD();
			ereport(ERROR,
					(errcode_for_socket_access(),
					 errmsg("pgbatch: could not create an epoll set: %m")));
		}
	}
	if (wes == NULL)
	{
		wes = CreateWaitEventSet(TopMemoryContext, 3);
		AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
		AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
		AddWaitEventToSet(wes, WL_SOCKET_READABLE, epoll_fd, NULL, NULL);
	}

	multi = curl_multi_init();
	if (multi == NULL)
		elog(ERROR, "pgbatch: could not create a libcurl multi handle");
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_callback);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_callback);
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) Max(pgb_max_http_in_flight, 8));
	/* HTTP/2: many streams on a few connections */
	curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX);
}

/*
 * pgb_http_request_free
 *		Frees a request and everything libcurl held for it.
 */
void
pgb_http_request_free(PgbHttpRequest *req)
{
	if (req == NULL)
		return;
	if (req->reserved && endpoint_load)
		endpoint_load[req->endpoint_index]--;
	if (req->easy)
	{
		if (req->state == PGB_HTTP_IN_FLIGHT)
			curl_multi_remove_handle(multi, req->easy);
		curl_easy_cleanup(req->easy);
	}
	curl_slist_free_all(req->headers);
	free(req->url);
	free(req->body);
	free(req->tls_ca);
	free(req->tls_cert);
	free(req->tls_key);
	free(req->tls_pin);
	free(req->proxy);
	free(req->tls_proxy_ca);
	free(req->resp);
	free(req->stage);
	free(req->next_stage);
	free(req);
}

/*
 * pgb_http_shutdown
 *		Abandons every transfer and frees the multi handle.
 */
void
pgb_http_shutdown(void)
{
	PgbHttpRequest *req;

	while ((req = pgb_http_take_done()) != NULL)
		pgb_http_request_free(req);
	while (waiting_head)
	{
		req = waiting_head;
		waiting_head = req->next;
		pgb_http_request_free(req);
	}
	waiting_tail = NULL;
	n_waiting = 0;
	while (in_flight_head)
	{
		req = in_flight_head;
		in_flight_head = req->next;
		pgb_http_request_free(req);
	}
	if (multi)
	{
		curl_multi_cleanup(multi);
		multi = NULL;
	}
	n_in_flight = 0;
	if (wes)
	{
		FreeWaitEventSet(wes);
		wes = NULL;
	}
	if (epoll_fd >= 0)
	{
		close(epoll_fd);
		ReleaseExternalFD();
		epoll_fd = -1;
	}
	timer_set = false;
}

/*
 * pgb_http_free_list
 *		Frees a list of requests (linked by next).
 */
void
pgb_http_free_list(PgbHttpRequest *list)
{
	while (list)
	{
		PgbHttpRequest *next = list->next;

		pgb_http_request_free(list);
		list = next;
	}
}

/*
 * pgb_http_enqueue
 *		Queues a list of prepared requests (linked by next), in order; each
 *		is sent when its endpoint lets it.
 */
void
pgb_http_enqueue(PgbHttpRequest *list)
{
	while (list)
	{
		PgbHttpRequest *req = list;

		list = req->next;
		req->state = PGB_HTTP_WAITING;
		req->next = NULL;
		if (waiting_tail)
			waiting_tail->next = req;
		else
			waiting_head = req;
		waiting_tail = req;
		n_waiting++;
	}
}

/*
 * finish
 *		Moves a request to the done list.
 */
static void
finish(PgbHttpRequest *req, PgbHttpState state)
{
	/* it no longer counts against its endpoint's local load */
	if (req->reserved && endpoint_load)
		endpoint_load[req->endpoint_index]--;
	req->reserved = false;
	req->state = state;
	req->finished_at = GetCurrentTimestamp();
	req->next = done_head;
	done_head = req;
}

/*
 * pgb_http_release_waiting
 *		Hands back every request still waiting for its endpoint, unsent
 *		(PGB_HTTP_RELEASED, due again now): batch.run()'s time is up.
 */
void
pgb_http_release_waiting(void)
{
	TimestampTz now = GetCurrentTimestamp();

	while (waiting_head)
	{
		PgbHttpRequest *req = waiting_head;

		waiting_head = req->next;
		n_waiting--;
		req->release_until = now;
		finish(req, PGB_HTTP_RELEASED);
	}
	waiting_tail = NULL;
}

/*
 * start_transfer
 *		Builds the easy handle of a request and adds it to the multi handle.
 *		False if libcurl refused.
 */
static bool
start_transfer(PgbHttpRequest *req)
{
	CURL	   *easy = curl_easy_init();

	if (easy == NULL)
		return false;
	req->easy = easy;
	req->retry_after_s = -1;
	pgb_rate_hints_reset(&req->hints);
	curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *) req);
	curl_easy_setopt(easy, CURLOPT_URL, req->url);
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, req->follow_redirects ? 1L : 0L);
	curl_easy_setopt(easy, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
	if (req->body)
	{
		curl_easy_setopt(easy, CURLOPT_POSTFIELDS, req->body);
		curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, (long) strlen(req->body));
	}
	if (strcmp(req->method, "GET") == 0)
		curl_easy_setopt(easy, CURLOPT_HTTPGET, 1L);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, req->headers);
	curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, req->timeout_ms);
	curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, Min(req->timeout_ms, 10000L));
	curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_callback);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, req);
	curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, pgb_http_header_callback);
	curl_easy_setopt(easy, CURLOPT_HEADERDATA, req);
	curl_easy_setopt(easy, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(easy, CURLOPT_XFERINFOFUNCTION, progress_callback);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, req->errbuf);
	pgb_http_connect_setup(easy, req);
	curl_easy_setopt(easy, CURLOPT_USERAGENT, "pgbatch/" PGB_VERSION);
	curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
	/* every encoding libcurl decodes; max_response_size counts decoded bytes */
	curl_easy_setopt(easy, CURLOPT_ACCEPT_ENCODING, "");
	/*
	 * Wait for a connection that may multiplex (HTTP/2) rather than open
	 * another: over TLS always (the handshake says at once), over plain
	 * HTTP when the endpoint answered in the last minute.  Otherwise a
	 * plain HTTP connection says it cannot multiplex only with its first
	 * answer, so every request waiting for it would go one response time
	 * late (1 s for all but one of a thousand requests to an LLM).  Once
	 * it has answered, waiting keeps requests on the connections there are
	 * (as before this rule: bench/http.sh showed no gain in dropping it).
	 */
	req->started_at = GetCurrentTimestamp();
	if (pg_strncasecmp(req->url, "https:", 6) == 0 ||
		(endpoint_answered_at &&
		 !TimestampDifferenceExceeds(endpoint_answered_at[req->endpoint_index],
									 req->started_at, PGB_ANSWERED_RECENTLY_MS)))
		curl_easy_setopt(easy, CURLOPT_PIPEWAIT, 1L);
	req->errbuf[0] = '\0';
	if (curl_multi_add_handle(multi, easy) != CURLM_OK)
		return false;
	req->state = PGB_HTTP_IN_FLIGHT;
	req->prev = NULL;
	req->next = in_flight_head;
	if (in_flight_head)
		in_flight_head->prev = req;
	in_flight_head = req;
	n_in_flight++;
	return true;
}

/*
 * pgb_http_dispatch
 *		Starts the waiting requests whose endpoint lets them go now.  A
 *		request whose endpoint is paused (Retry-After, open circuit) is not
 *		sent: it is handed back (PGB_HTTP_RELEASED) to be re-queued in the
 *		database for when the pause ends, without spending an attempt.
 *		Returns when to try again for requests that had to wait (0: when a
 *		request finishes).
 */
TimestampTz
pgb_http_dispatch(void)
{
	PgbHttpRequest *req = waiting_head;
	PgbHttpRequest *prev = NULL;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz retry_at = 0;
	int			blocked[PGB_DISPATCH_BLOCKED];	/* endpoints that said wait */
	int			n_blocked = 0;
	int			started = 0;

	while (req && n_in_flight < pgb_max_http_in_flight)
	{
		PgbHttpRequest *next = req->next;
		TimestampTz until;
		PgbEndpointVerdict verdict;
		int			b;

		/* an endpoint that said wait says it again in this pass */
		for (b = 0; b < n_blocked; b++)
			if (blocked[b] == req->endpoint_index)
				break;
		if (b < n_blocked)
		{
			prev = req;
			req = next;
			continue;
		}
		verdict = pgb_endpoint_acquire(req->endpoint_index, now,
									   req->token_estimate, &until);
		if (verdict == PGB_EP_WAIT)
		{
			if (until != 0 && (retry_at == 0 || until < retry_at))
				retry_at = until;
			if (n_blocked < PGB_DISPATCH_BLOCKED)
				blocked[n_blocked++] = req->endpoint_index;
			prev = req;
			req = next;
			continue;
		}

		/* unlink */
		if (prev)
			prev->next = next;
		else
			waiting_head = next;
		if (waiting_tail == req)
			waiting_tail = prev;
		n_waiting--;

		if (verdict == PGB_EP_PAUSED)
		{
			req->release_until = until;
			finish(req, PGB_HTTP_RELEASED);
		}
		else if (pgb_http_url_denied(req))
		{
			/* outside pgbatch.allowed_hosts: not even looked up */
			pgb_endpoint_tokens_used(req->endpoint_index, req->token_estimate, 0);
			pgb_endpoint_release(req->endpoint_index, PGB_EPR_NOT_SENT, -1, NULL, now);
			req->host_denied = true;
			req->result = CURLE_COULDNT_CONNECT;
			pgb_http_classify(req);
			finish(req, PGB_HTTP_DONE);
		}
		else if (!start_transfer(req))
		{
			pgb_endpoint_tokens_used(req->endpoint_index, req->token_estimate, 0);
			pgb_endpoint_release(req->endpoint_index, PGB_EPR_NOT_SENT, -1, NULL, now);
			req->result = CURLE_OUT_OF_MEMORY;
			pgb_http_classify(req);
			finish(req, PGB_HTTP_DONE);
		}
		else
			started++;
		req = next;
	}

	/*
	 * Send them now (on the connections there are), not at the next wait:
	 * the executor may record results before it waits again.
	 */
	if (started > 0)
	{
		int			running;

		/* libcurl's timer stays: it says so if that changes */
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	return retry_at;
}

/*
 * collect
 *		Takes the finished transfers off the multi handle.
 */
static void
collect(void)
{
	CURLMsg    *msg;
	int			left;

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		PgbHttpRequest *req;
		long		status = 0;

		if (msg->msg != CURLMSG_DONE)
			continue;

		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &req);
		curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE, &status);
		if (req->prev)
			req->prev->next = req->next;
		else
			in_flight_head = req->next;
		if (req->next)
			req->next->prev = req->prev;
		req->prev = NULL;
		req->result = msg->data.result;
		req->status = status;
		if (status > 0)
		{
			if (endpoint_answered_at == NULL)
				endpoint_answered_at = MemoryContextAllocZero(TopMemoryContext,
															  sizeof(TimestampTz) * pgb_max_endpoints);
			endpoint_answered_at[req->endpoint_index] = GetCurrentTimestamp();
		}
		curl_multi_remove_handle(multi, req->easy);
		curl_easy_cleanup(req->easy);
		req->easy = NULL;
		n_in_flight--;
		finish(req, PGB_HTTP_DONE);
		pgb_http_classify(req);
		/*
		 * A Retry-After counts only on an answer that failed (a 429, a 503):
		 * on a success, or on a success whose transfer failed after it, it
		 * pauses nothing.
		 */
		if (req->error_code == NULL || req->status < 400)
			req->retry_after_s = -1;
		req->circuit_change =
			pgb_endpoint_release(req->endpoint_index,
								 req->aborted ? PGB_EPR_NOT_SENT :
								 req->error_code == NULL ? PGB_EPR_SUCCESS :
								 req->status == 429 ? PGB_EPR_RATE_LIMITED :
								 req->transient ? PGB_EPR_TRANSIENT : PGB_EPR_PERMANENT,
								 req->retry_after_s, req->aborted ? NULL : &req->hints,
								 req->finished_at);
	}
}

/*
 * drive
 *		Lets libcurl work on the sockets that are ready and on its timer,
 *		then collects the transfers that finished.  Never waits.
 */
static void
drive(void)
{
	struct epoll_event ready[256];
	int			nready;
	int			running;
	int			i;

	/* a bounded number of rounds */
	for (int round = 0; round < 16; round++)
	{
		nready = epoll_wait(epoll_fd, ready, lengthof(ready), 0);
		for (i = 0; i < nready; i++)
		{
			int			mask = 0;

			if (ready[i].events & (EPOLLIN | EPOLLHUP | EPOLLRDHUP))
				mask |= CURL_CSELECT_IN;
			if (ready[i].events & EPOLLOUT)
				mask |= CURL_CSELECT_OUT;
			if (ready[i].events & EPOLLERR)
				mask |= CURL_CSELECT_ERR;
			curl_multi_socket_action(multi, ready[i].data.fd, mask, &running);
		}
		if (nready < (int) lengthof(ready))
			break;
	}
	if (timer_set && GetCurrentTimestamp() >= timer_at)
	{
		timer_set = false;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
	}
	collect();
}

/*
 * pgb_http_wait
 *		Waits up to timeout_ms (shortened to libcurl's own timer) for the
 *		latch or socket activity, drives the transfers that have work, and
 *		collects those that finished.  Returns true if the latch was set.
 */
bool
pgb_http_wait(long timeout_ms)
{
	WaitEvent	events[3];
	int			nevents;
	int			i;
	bool		latch_set = false;
	TimestampTz now = GetCurrentTimestamp();

	if (timer_set)
	{
		long		curl_ms = (long) ((timer_at - now) / 1000);

		timeout_ms = Max(0, Min(timeout_ms, curl_ms));
	}
	nevents = WaitEventSetWait(wes, timeout_ms, events, lengthof(events), PG_WAIT_EXTENSION);
	for (i = 0; i < nevents; i++)
		if (events[i].events & WL_LATCH_SET)
			latch_set = true;
	drive();
	return latch_set;
}

/*
 * pgb_http_pump
 *		Without waiting: lets libcurl read the answers that have come, and
 *		gives the slots they free to waiting requests.  Called between the
 *		statements of the executor's transaction, so that an answer does not
 *		wait for its commit to free its slot; what it collects is recorded
 *		by the next transaction.
 */
void
pgb_http_pump(void)
{
	drive();
	(void) pgb_http_dispatch();
}

/*
 * pgb_http_has_done
 *		Whether finished (or handed back) requests wait to be taken.
 */
bool
pgb_http_has_done(void)
{
	return done_head != NULL;
}

/*
 * pgb_http_take_done
 *		One finished (or handed back) request, or NULL; the caller frees it.
 */
PgbHttpRequest *
pgb_http_take_done(void)
{
	PgbHttpRequest *req = done_head;

	if (req)
	{
		done_head = req->next;
		req->next = NULL;
	}
	return req;
}

/*
 * pgb_http_endpoint_load
 *		Requests this executor holds for an endpoint.
 */
int
pgb_http_endpoint_load(int endpoint_index)
{
	return endpoint_load ? endpoint_load[endpoint_index] : 0;
}

/*
 * pgb_http_reserve
 *		Counts a new request in its endpoint's local load (until it has
 *		finished, or is freed unsent).  An executor holds no more requests for an endpoint than the
 *		endpoint lets through at once, so none waits long under its lease.
 */
void
pgb_http_reserve(PgbHttpRequest *req)
{
	if (endpoint_load == NULL)
		endpoint_load = MemoryContextAllocZero(TopMemoryContext,
											   sizeof(int) * pgb_max_endpoints);
	endpoint_load[req->endpoint_index]++;
	req->reserved = true;
}

/*
 * pgb_http_busy
 *		Requests in flight or waiting for their endpoint.
 */
int
pgb_http_busy(void)
{
	return n_in_flight + n_waiting;
}

/*
 * pgb_http_in_flight
 *		Requests in flight.
 */
int
pgb_http_in_flight(void)
{
	return n_in_flight;
}
