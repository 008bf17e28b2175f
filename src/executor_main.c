/*-------------------------------------------------------------------------
 *
 * executor_main.c
 *		The executor background worker: one or more per database, started by
 *		the launcher.  Each loop it waits (latch, libcurl sockets, timers),
 *		then in one short transaction records the HTTP results that came
 *		back, takes back items whose executor is gone or whose lease ran
 *		out, and claims due items: SQL stages run right there, HTTP stages
 *		are marked running under a lease and their requests are sent only
 *		after that transaction commits.  No transaction is open while a
 *		request is in flight; an error is caught, reported and survived.
 *
 * src/executor_main.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "pgbatch.h"

PGDLLEXPORT void pgbatch_executor_main(Datum main_arg);

/* An endpoint as the executor sends to it (loaded once per transaction). */
typedef struct PgbEndpointInfo
{
	int32		id;
	char	   *name;
	char	   *base_url;
	int			nheaders;
	char	  **header_lines;	/* "Name: value" */
	const char *header_problem; /* why a header cannot be sent, or NULL */
	long		timeout_ms;
	int			max_concurrency;
	int			rate_limit;
	bool		follow_redirects;
	int			shm_index;
} PgbEndpointInfo;

static PgbEndpointInfo *endpoints = NULL;	/* in the iteration context */
static int	n_endpoints = -1;	/* -1: not loaded in this transaction */
static MemoryContext endpoints_cxt = NULL;	/* batch.run(): where they live */

/* results waiting to be recorded, kept across a failed transaction */
static PgbHttpRequest *results = NULL;

/* this executor has seen the extension in its database */
static bool found_extension = false;

/* ... at the version this library is built for (PGB_VERSION) */
static bool schema_current = false;

/* the executor state of the transaction in progress (its prepared requests) */
static PgbExecutor *current = NULL;

/* batch.run() has the HTTP layer set up in this backend */
static bool session_http_ready = false;

static void free_list(PgbHttpRequest *req);

static SPIPlanPtr endpoints_plan = NULL;
static SPIPlanPtr guard_plan = NULL;
static SPIPlanPtr active_plan = NULL;
static SPIPlanPtr due_plan = NULL;

#define RESPONSE_BODY_KEPT	4096

/*
 * How often executor 0 of a database looks for running items whose lease ran
 * out; it looks at once when another executor has exited.
 */
#define RECLAIM_INTERVAL_MS	30000

/*
 * load_endpoints
 *		Reads every endpoint, with its secret headers, into the current
 *		(iteration) memory context, or batch.run()'s.
 */
static void
load_endpoints(void)
{
	uint64		i;
	Oid			save_userid;
	int			save_sec_context;
	MemoryContext oldcxt = MemoryContextSwitchTo(endpoints_cxt ? endpoints_cxt :
												 CurrentMemoryContext);

	if (endpoints_plan == NULL)
		endpoints_plan = pgb_prepare("SELECT e.id, e.base_url,"
									 " (extract(epoch FROM e.timeout) * 1000)::float8,"
									 " e.max_concurrency, coalesce(e.rate_limit, 0),"
									 " e.follow_redirects,"
									 " ARRAY(SELECT h.key"
									 "  FROM pg_catalog.jsonb_each_text(e.headers) h),"
									 " e.name,"
									 " ARRAY(SELECT h.value"
									 "  FROM pg_catalog.jsonb_each_text(e.headers) h)"
									 " FROM batch.endpoints e",
									 0, NULL);
	/*
	 * The headers are readable by admins only; batch.run() reads them for a
	 * caller who is not one, to send them, never to show them.
	 */
	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SetUserIdAndSecContext(BOOTSTRAP_SUPERUSERID,
						   save_sec_context | SECURITY_LOCAL_USERID_CHANGE);
	if (pgb_execute(endpoints_plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "pgbatch: reading batch.endpoints failed");
	SetUserIdAndSecContext(save_userid, save_sec_context);
	n_endpoints = (int) SPI_processed;
	endpoints = palloc0(sizeof(PgbEndpointInfo) * Max(n_endpoints, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		PgbEndpointInfo *ep = &endpoints[i];
		bool		isnull;
		Datum		d;

		ep->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
		ep->base_url = SPI_getvalue(tup, desc, 2);
		ep->timeout_ms = (long) DatumGetFloat8(SPI_getbinval(tup, desc, 3, &isnull));
		ep->max_concurrency = DatumGetInt32(SPI_getbinval(tup, desc, 4, &isnull));
		ep->rate_limit = DatumGetInt32(SPI_getbinval(tup, desc, 5, &isnull));
		ep->follow_redirects = DatumGetBool(SPI_getbinval(tup, desc, 6, &isnull));
		d = SPI_getbinval(tup, desc, 7, &isnull);
		if (!isnull)
		{
			Datum	   *names;
			Datum	   *values;
			bool	   *nulls;
			int			nvalues;
			int			j;

			deconstruct_array(DatumGetArrayTypePCopy(d), TEXTOID, -1, false,
							  TYPALIGN_INT, &names, &nulls, &ep->nheaders);
			deconstruct_array(DatumGetArrayTypePCopy(SPI_getbinval(tup, desc, 9, &isnull)),
							  TEXTOID, -1, false, TYPALIGN_INT, &values, &nulls, &nvalues);
			if (nvalues != ep->nheaders)
				elog(ERROR, "pgbatch: the headers of endpoint %d changed while read", ep->id);
			ep->header_lines = palloc(sizeof(char *) * Max(ep->nheaders, 1));

			/*
			 * The API checked them; check again, whatever wrote the table,
			 * before anything goes on a connection.
			 */
			for (j = 0; j < ep->nheaders; j++)
			{
				char	   *name = TextDatumGetCString(names[j]);
				char	   *value = TextDatumGetCString(values[j]);

				if (ep->header_problem == NULL)
					ep->header_problem = pgb_header_problem(name, value);
				ep->header_lines[j] = psprintf("%s: %s", name, value);
			}
		}
		ep->name = SPI_getvalue(tup, desc, 8);
		ep->shm_index = pgb_endpoint_index(MyDatabaseId, ep->id, ep->max_concurrency,
										   ep->rate_limit);
	}
	SPI_freetuptable(SPI_tuptable);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * find_endpoint
 *		The endpoint with this id, or NULL.
 */
static PgbEndpointInfo *
find_endpoint(int32 id)
{
	int			i;

	if (n_endpoints < 0)
		load_endpoints();
	for (i = 0; i < n_endpoints; i++)
		if (endpoints[i].id == id)
			return &endpoints[i];
	return NULL;
}

/*
 * strdup_or_fail
 *		strdup() that frees the half-built request and errors out on failure.
 */
static char *
strdup_or_fail(PgbHttpRequest *req, const char *s)
{
	char	   *copy = strdup(s);

	if (copy == NULL)
	{
		pgb_http_request_free(req);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}
	return copy;
}

/*
 * add_header
 *		Appends a header line to the request, or frees it and errors out.
 */
static void
add_header(PgbHttpRequest *req, const char *line)
{
	struct curl_slist *list = curl_slist_append(req->headers, line);

	if (list == NULL)
	{
		pgb_http_request_free(req);
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	}
	req->headers = list;
}

/*
 * pgb_prepare_http
 *		Called by the executor for an item at an HTTP stage: builds the
 *		request body (with the stage's body function, as the batch owner, or
 *		as {"payload", "outputs"}), the request itself, and records the item
 *		as running under this executor's lease.  The request is sent once
 *		the claim commits (by batch.run(): once the chunk is recorded).
 *		Returns false, recording nothing, if the item is deferred because
 *		this executor already holds as many requests for the endpoint as it
 *		takes at once (batch.run() queues them all: no one else sends).
 */
bool
pgb_prepare_http(PgbExecutor *ex, PgbBatchInfo *info, PgbStage *stage,
				 PgbWorkItem *it, int attempt, PgbRecord *rec)
{
	PgbEndpointInfo *ep = find_endpoint(stage->endpoint_id);
	PgbRetryPolicy policy = stage->policy;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz lease_until;
	Jsonb	   *body;
	PgbHttpRequest *req;
	char	   *url;
	char	   *json;
	char		key[128];
	int			i;

	if (it->max_retries >= 0)
		policy.max_retries = it->max_retries;
	if (it->backoff_factor > 0)
		policy.backoff_factor = it->backoff_factor;

	if (ep == NULL || ep->shm_index < 0)
	{
		const char *msg = ep == NULL ? "the endpoint of this stage no longer exists" :
			"too many endpoints for shared memory (pgbatch.max_endpoints)";

		pgb_record_stage_error(ex, rec, it->batch_id, it->id, stage->name, attempt,
							   &policy, false, "endpoint_unavailable", msg, now, now, 0);
		return true;
	}
	if (!stage->endpoint_allowed)
	{
		pgb_record_stage_error(ex, rec, it->batch_id, it->id, stage->name, attempt,
							   &policy, false, "insufficient_privilege",
							   psprintf("role \"%s\" may not use endpoint \"%s\"",
										info->owner_name, ep->name),
							   now, now, 0);
		return true;
	}
	if (ep->header_problem != NULL)
	{
		pgb_record_stage_error(ex, rec, it->batch_id, it->id, stage->name, attempt,
							   &policy, false, "invalid_header",
							   psprintf("endpoint \"%s\" has a header that pgbatch does not send: %s",
										ep->name, ep->header_problem),
							   now, now, 0);
		return true;
	}

	/*
	 * Hold no more requests for an endpoint than it takes at once: the rest
	 * stay pending (untouched) for a later claim, by us or another executor.
	 */
	if (ex->background && pgb_http_endpoint_load(ep->shm_index) >= ep->max_concurrency)
	{
		ex->stats.items_deferred++;
		return false;
	}

	if (OidIsValid(stage->func))
	{
		char	   *error_code;
		char	   *message;
		PgbStageResult result = pgb_run_sql_stage(info, stage, it, &body,
												  &error_code, &message);

		if (result != PGB_STAGE_OK)
		{
			pgb_record_stage_error(ex, rec, it->batch_id, it->id, stage->name, attempt,
								   &policy, result == PGB_STAGE_TRANSIENT, error_code,
								   psprintf("building the request failed: %s", message),
								   now, GetCurrentTimestamp(), 0);
			return true;
		}
	}
	else
	{
		Jsonb	   *outputs = it->outputs ? it->outputs : pgb_jsonb_constant("{}");

		body = pgb_jsonb_set_key(pgb_jsonb_set_key(NULL, "payload", it->payload),
								 "outputs", outputs);
	}
	json = JsonbToCString(NULL, &body->root, VARSIZE(body));
	url = psprintf("%s%s", ep->base_url, stage->path);

	req = calloc(1, sizeof(PgbHttpRequest));
	if (req == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("out of memory")));
	req->item_id = it->id;
	req->batch_id = it->batch_id;
	req->stage_position = stage->position;
	req->attempt = attempt;
	req->policy = policy;
	req->endpoint_index = ep->shm_index;
	req->endpoint_id = ep->id;
	req->timeout_ms = ep->timeout_ms;
	req->follow_redirects = ep->follow_redirects;
	pgb_http_reserve(req);
	strlcpy(req->method, stage->method, sizeof(req->method));
	req->stage = strdup_or_fail(req, stage->name);
	if (stage->position < info->pipeline->nstages - 1)
		req->next_stage = strdup_or_fail(req, info->pipeline->stages[stage->position + 1].name);
	req->url = strdup_or_fail(req, url);
	req->body = strdup_or_fail(req, json);

	for (i = 0; i < ep->nheaders; i++)
		add_header(req, ep->header_lines[i]);
	req->nsecrets = ep->nheaders;
	add_header(req, "Content-Type: application/json");
	add_header(req, "Accept: application/json");
	add_header(req, "Expect:");
	/* the same key on every attempt of this item's stage */
	snprintf(key, sizeof(key), "Idempotency-Key: pgbatch-" UINT64_FORMAT "-%u-" INT64_FORMAT "-%d",
			 GetSystemIdentifier(), MyDatabaseId, it->id, stage->position + 1);
	add_header(req, key);

	req->next = ex->prepared;
	ex->prepared = req;
	ex->stats.requests_prepared++;

	lease_until = Max(ex->lease_until,
					  TimestampTzPlusMilliseconds(now, ep->timeout_ms + 60000));
	pgb_record_item(rec, it->id, PGB_RUNNING, stage->name, attempt, now, NULL, NULL, 0);
	rec->item_claimed_by.values[rec->item_claimed_by.n - 1] = Int32GetDatum(MyProcPid);
	rec->item_claimed_by.nulls[rec->item_claimed_by.n - 1] = false;
	rec->item_lease_until.values[rec->item_lease_until.n - 1] = TimestampTzGetDatum(lease_until);
	rec->item_lease_until.nulls[rec->item_lease_until.n - 1] = false;
	return true;
}

/*
 * sha256_hex
 *		The SHA-256 of a buffer as hex, or NULL if it could not be computed.
 */
static char *
sha256_hex(const char *data, size_t len)
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	char	   *hex;
	int			i;

	if (ctx == NULL)
		return NULL;
	if (pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) data, len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
	{
		pg_cryptohash_free(ctx);
		return NULL;
	}
	pg_cryptohash_free(ctx);
	hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);
	for (i = 0; i < PG_SHA256_DIGEST_LENGTH; i++)
		sprintf(hex + i * 2, "%02x", digest[i]);
	return hex;
}

/*
 * parse_response
 *		The response body as jsonb (JSON null for an empty body), or NULL if
 *		it is not JSON.  Parsed in a subtransaction, so that a body jsonb
 *		rejects cannot abort the recording transaction.
 */
static Jsonb *
parse_response(PgbHttpRequest *req)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	Jsonb	   *volatile result = NULL;

	if (req->resp_len == 0)
		return pgb_jsonb_constant("null");
	if (strlen(req->resp) != req->resp_len)
		return NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		result = DatumGetJsonbPCopy(DirectFunctionCall1(jsonb_in,
														CStringGetDatum(req->resp)));
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		result = NULL;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return result;
}

/*
 * kept_body
 *		The start of a failed response's body, if it is valid text.
 */
static char *
kept_body(PgbHttpRequest *req)
{
	int			len = (int) Min(req->resp_len, RESPONSE_BODY_KEPT);

	if (req->resp == NULL || len == 0)
		return NULL;
	/* cut at a character boundary */
	len = pg_mbcliplen(req->resp, len, len);
	if (memchr(req->resp, '\0', len) != NULL ||
		!pg_verifymbstr(req->resp, len, true))
		return psprintf("(%zu bytes that are not text)", req->resp_len);
	return pnstrdup(req->resp, len);
}

/*
 * record_result
 *		Adds what a finished request means for its item to the outcome
 *		buffers.
 */
static void
record_result(PgbExecutor *ex, PgbRecord *rec, PgbHttpRequest *req, bool cancelled)
{
	TimestampTz now = GetCurrentTimestamp();
	const char *code = req->error_code;
	char	   *message = NULL;
	Jsonb	   *output = NULL;
	TimestampTz not_before = 0;
	const char *outcome;
	const char *path;
	int			n;

	if (req->state == PGB_HTTP_RELEASED || req->aborted)
	{
		/* never sent: back to pending, the attempt not spent */
		if (!cancelled && req->state == PGB_HTTP_RELEASED &&
			(ex->earliest_due == 0 || req->release_until < ex->earliest_due))
			ex->earliest_due = req->release_until;
		pgb_record_item(rec, req->item_id, cancelled ? PGB_CANCELLED : PGB_PENDING,
						req->stage, req->attempt - 1,
						req->state == PGB_HTTP_RELEASED ? req->release_until : now,
						NULL, NULL, cancelled ? now : 0);
		return;
	}

	/* no secret of the endpoint goes into the history or the outputs */
	pgb_http_redact(req);

	/* name the path only: the base URL may carry credentials */
	path = strstr(req->url, "://");
	path = path ? path + 3 + strcspn(path + 3, "/") : req->url;
	if (code == NULL)
	{
		/* stored text must be valid in the database's encoding, or no dump restores it */
		if (req->resp_len > 0 && !pg_verifymbstr(req->resp, (int) req->resp_len, true))
		{
			code = "invalid_response";
			message = psprintf("HTTP %ld from %s %s: the response body is not valid %s",
							   req->status, req->method, path, GetDatabaseEncodingName());
		}
		else if ((output = parse_response(req)) == NULL)
		{
			code = "invalid_response";
			message = psprintf("HTTP %ld from %s %s: the response body is not JSON",
							   req->status, req->method, path);
		}
	}
	else if (req->status > 0 && !req->host_denied)
		message = psprintf("HTTP %ld from %s %s", req->status, req->method, path);
	else
		message = psprintf("%s %s: %s", req->method, path,
						   req->errbuf[0] ? req->errbuf : curl_easy_strerror((CURLcode) req->result));

	/* the item's new state */
	if (output != NULL)
	{
		pgb_column_add(&rec->out_item_id, Int64GetDatum(req->item_id), false);
		pgb_column_add(&rec->out_stage, pgb_text_datum(req->stage), false);
		pgb_column_add(&rec->out_output, JsonbPGetDatum(output), false);
		outcome = PGB_COMPLETED;
		if (cancelled)
			pgb_record_item(rec, req->item_id, PGB_CANCELLED, req->stage, req->attempt,
							now, NULL, NULL, now);
		else if (req->next_stage == NULL)
		{
			pgb_record_item(rec, req->item_id, PGB_COMPLETED, req->stage, req->attempt,
							now, NULL, NULL, req->finished_at);
			ex->stats.items_completed++;
		}
		else
			pgb_record_item(rec, req->item_id, PGB_PENDING, req->next_stage, 0, now,
							NULL, NULL, 0);
	}
	else if (cancelled)
	{
		outcome = PGB_FAILED;
		pgb_record_item(rec, req->item_id, PGB_CANCELLED, req->stage, req->attempt,
						now, code, message, now);
	}
	else
	{
		if (req->retry_after_s > 0)
			not_before = TimestampTzPlusMilliseconds(req->finished_at,
													 (int64) (req->retry_after_s * 1000.0));
		outcome = pgb_record_failure(ex, rec, req->item_id, req->stage, req->attempt,
									 &req->policy,
									 req->transient && strcmp(code, "invalid_response") != 0,
									 code, message, req->finished_at, not_before);
	}

	/* the attempt, with what came back */
	pgb_record_attempt(rec, req->batch_id, req->item_id, req->stage, req->attempt,
					   outcome, output ? NULL : code, message,
					   req->started_at, req->finished_at);
	n = rec->att_item_id.n - 1;
	if (req->status > 0)
	{
		rec->att_http_status.values[n] = Int32GetDatum((int32) req->status);
		rec->att_http_status.nulls[n] = false;
	}
	rec->att_response_size.values[n] = Int32GetDatum((int32) Min(req->resp_len, PG_INT32_MAX));
	rec->att_response_size.nulls[n] = false;
	if (req->resp_len > 0)
	{
		char	   *sum = sha256_hex(req->resp, req->resp_len);

		rec->att_response_sha256.values[n] = pgb_text_datum(sum);
		rec->att_response_sha256.nulls[n] = sum == NULL;
	}
	if (output == NULL)
	{
		char	   *kept = kept_body(req);

		rec->att_response_body.values[n] = pgb_text_datum(kept);
		rec->att_response_body.nulls[n] = kept == NULL;
	}
}

/*
 * announce_endpoints
 *		Tells listeners (at commit) about the endpoints these results paused
 *		(a Retry-After, an opened circuit) or resumed (a closed circuit):
 *		one event per endpoint and kind.
 */
static void
announce_endpoints(PgbHttpRequest *list)
{
	PgbHttpRequest *req;
	PgbHttpRequest *other;

	for (req = list; req; req = req->next)
	{
		PgbEndpointInfo *ep;
		bool		retry_after = req->retry_after_s > 0 && !req->aborted;
		bool		circuit = req->circuit_change != PGB_CIRCUIT_UNCHANGED;

		/* once per endpoint and kind: drop what an earlier result announces */
		for (other = list; other != req; other = other->next)
		{
			if (other->endpoint_id != req->endpoint_id)
				continue;
			if (other->retry_after_s > 0 && !other->aborted)
				retry_after = false;
			if (other->circuit_change == req->circuit_change)
				circuit = false;
		}
		if (!retry_after && !circuit)
			continue;
		ep = find_endpoint(req->endpoint_id);
		if (retry_after)
			pgb_endpoint_event(req->endpoint_id, ep ? ep->name : NULL, true, "retry_after",
							   TimestampTzPlusMilliseconds(req->finished_at,
														   (int64) (req->retry_after_s * 1000.0)));
		if (circuit && req->circuit_change == PGB_CIRCUIT_OPENED)
			pgb_endpoint_event(req->endpoint_id, ep ? ep->name : NULL, true, "circuit_open",
							   TimestampTzPlusMilliseconds(req->finished_at,
														   pgb_circuit_cooldown_ms));
		else if (circuit)
			pgb_endpoint_event(req->endpoint_id, ep ? ep->name : NULL, false, "circuit_closed", 0);
	}
}

/*
 * record_results
 *		Records the finished requests whose items this executor still holds
 *		(a lease taken back by another executor is not ours to record), in
 *		the current transaction.
 */
static void
record_results(PgbExecutor *ex)
{
	PgbColumn	ids;
	PgbRecord	rec;
	PgbHttpRequest *req;
	Datum		args[2];
	uint64		i;
	int64	   *owned;
	bool	   *cancelled;
	int			nowned;

	pgb_column_init(&ids, INT8OID);
	for (req = results; req; req = req->next)
		pgb_column_add(&ids, Int64GetDatum(req->item_id), false);
	if (ids.n == 0)
		return;

	if (guard_plan == NULL)
	{
		Oid			argtypes[2] = {INT8ARRAYOID, INT4OID};

		/* by primary key only: no plan may walk the index of running items */
		guard_plan = pgb_prepare("SELECT i.id, b.cancelled_at IS NOT NULL,"
								 " i.status = 'running' AND i.claimed_by = $2"
								 " FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id"
								 " WHERE i.id = ANY ($1)"
								 " FOR UPDATE OF i",
								 2, argtypes);
	}
	args[0] = pgb_column_array(&ids);
	args[1] = Int32GetDatum(MyProcPid);
	if (pgb_execute(guard_plan, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pgbatch: locking items with results failed");
	nowned = 0;
	owned = palloc(sizeof(int64) * Max(SPI_processed, 1));
	cancelled = palloc(sizeof(bool) * Max(SPI_processed, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		/* still ours: running, under this executor's claim */
		if (!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
										SPI_tuptable->tupdesc, 3, &isnull)) || isnull)
			continue;
		owned[nowned] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
													SPI_tuptable->tupdesc, 1, &isnull));
		cancelled[nowned] = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[i],
													   SPI_tuptable->tupdesc, 2, &isnull));
		nowned++;
	}
	SPI_freetuptable(SPI_tuptable);

	announce_endpoints(results);

	pgb_record_init(&rec);
	for (req = results; req; req = req->next)
	{
		int			j;

		for (j = 0; j < nowned; j++)
			if (owned[j] == req->item_id)
				break;
		if (j < nowned)
			record_result(ex, &rec, req, cancelled[j]);
		else
			elog(DEBUG1, "pgbatch: item " INT64_FORMAT " is no longer held by this executor; its result is dropped",
				 req->item_id);
	}
	pgb_record_flush(&rec, GetCurrentTimestamp());
}

/*
 * pgb_session_http_begin
 *		Starts batch.run()'s use of the HTTP layer: endpoints are read
 *		afresh, into cxt, which lives as long as the call.
 */
void
pgb_session_http_begin(MemoryContext cxt)
{
	if (!session_http_ready)
	{
		pgb_http_init();
		session_http_ready = true;
	}
	endpoints_cxt = cxt;
	endpoints = NULL;
	n_endpoints = -1;
}

/*
 * pgb_session_http_end
 *		Ends batch.run()'s use of the HTTP layer: the endpoints it read go
 *		with its memory context.
 */
void
pgb_session_http_end(void)
{
	endpoints_cxt = NULL;
	endpoints = NULL;
	n_endpoints = -1;
}

/*
 * pgb_session_http
 *		batch.run()'s HTTP stages, when no executor serves the database:
 *		sends the requests the last chunk prepared (its items are recorded
 *		as running, in this transaction), as the endpoints' limits let them
 *		go, waits for every one that went, and records the results in the
 *		same transaction.  Requests not sent by the deadline go back to
 *		pending without spending an attempt.  On an error (a cancel) the
 *		transfers are abandoned and the error goes on: the transaction's
 *		rollback puts the items back.
 */
void
pgb_session_http(PgbExecutor *ex, TimestampTz deadline)
{
	PgbHttpRequest *req = ex->prepared;

	ex->prepared = NULL;
	while (req)
	{
		PgbHttpRequest *next = req->next;

		pgb_http_enqueue(req);
		req = next;
	}

	PG_TRY();
	{
		while (pgb_http_busy() > 0)
		{
			TimestampTz now = GetCurrentTimestamp();
			TimestampTz retry_at;
			long		timeout_ms = 1000;

			CHECK_FOR_INTERRUPTS();
			if (deadline > 0 && now >= deadline)
				pgb_http_release_waiting();
			retry_at = pgb_http_dispatch();
			if (retry_at > 0)
				timeout_ms = Min(timeout_ms, Max(0, (long) ((retry_at - now) / 1000)));
			if (pgb_http_wait(timeout_ms))
				ResetLatch(MyLatch);
			while ((req = pgb_http_take_done()) != NULL)
			{
				req->next = results;
				results = req;
			}
		}
		record_results(ex);
	}
	PG_CATCH();
	{
		free_list(results);
		results = NULL;
		pgb_http_shutdown();
		session_http_ready = false;
		pgb_endpoint_release_all();
		pgb_session_http_end();
		PG_RE_THROW();
	}
	PG_END_TRY();
	free_list(results);
	results = NULL;
}

/*
 * owner_busy_elsewhere
 *		True if another executor of this database runs stages of the role
 *		now (read without the lock: a hint for taking turns, nothing more).
 */
static bool
owner_busy_elsewhere(Oid owner)
{
	PgbWorkerSlot *mine = pgb_my_slot();
	int			i;

	if (!OidIsValid(owner))
		return false;
	for (i = 0; i < PGB_MAX_SLOTS; i++)
	{
		PgbWorkerSlot *slot = &pgb_shared->slots[i];

		if (slot != mine && slot->in_use && slot->dboid == MyDatabaseId &&
			slot->busy_owner == owner)
			return true;
	}
	return false;
}

/*
 * claim_fair
 *		Claims up to 'limit' due items and executes them, taking turns
 *		between the owners of the batches that have waiting items (starting
 *		after the owner this executor served last, and with the owners no
 *		other executor is serving), then between each owner's batches, so
 *		that neither a huge batch nor one team's slow stages starve the
 *		others.  Stops starting items after its time slice (PGB_SLICE_MS).
 *		Returns how many items it ran; *more says whether it should claim
 *		again at once.
 */
static int
claim_fair(PgbExecutor *ex, int limit, bool *more)
{
	static Oid	last_owner = InvalidOid;
	PgbWorkerSlot *mine = pgb_my_slot();
	int64	   *batches;
	Oid		   *owners;
	bool	   *busy;
	int			nbatches;
	int			claimed = 0;
	int			per_batch;
	int			start = 0;
	int			pass;
	uint64		k;

	if (active_plan == NULL)
		active_plan = pgb_prepare("SELECT c.batch_id, b.owner::text FROM batch.counters c"
								  " JOIN batch.batches b ON b.id = c.batch_id"
								  " GROUP BY c.batch_id, b.owner"
								  " HAVING sum(c.pending + c.retrying) > 0"
								  " ORDER BY b.owner, c.batch_id",
								  0, NULL);
	if (pgb_execute(active_plan, NULL, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pgbatch: listing batches with waiting items failed");
	nbatches = (int) SPI_processed;
	batches = palloc(sizeof(int64) * Max(nbatches, 1));
	owners = palloc(sizeof(Oid) * Max(nbatches, 1));
	busy = palloc(sizeof(bool) * Max(nbatches, 1));
	for (k = 0; k < SPI_processed; k++)
	{
		bool		isnull;

		batches[k] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[k],
												 SPI_tuptable->tupdesc, 1, &isnull));
		owners[k] = get_role_oid(SPI_getvalue(SPI_tuptable->vals[k],
											  SPI_tuptable->tupdesc, 2), true);
		busy[k] = owner_busy_elsewhere(owners[k]);
		/* start with the first batch of the owner after the one served last */
		if (start == 0 && k > 0 && owners[k - 1] == last_owner && owners[k] != last_owner)
			start = (int) k;
	}
	SPI_freetuptable(SPI_tuptable);
	*more = false;
	if (nbatches == 0)
		return 0;

	ex->slice_end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), PGB_SLICE_MS);
	ex->sliced = false;
	per_batch = Max((limit + nbatches - 1) / nbatches, 10);

	/* first the owners no other executor serves, then the others */
	for (pass = 0; pass < 2 && claimed < limit && !ex->sliced; pass++)
	{
		int			i;

		for (i = 0; i < nbatches && claimed < limit && !ex->sliced; i++)
		{
			int			b = (start + i) % nbatches;
			PgbClaimCursor cursor = {DT_NOBEGIN, 0};
			PgbWorkItem *items;
			int			want = Min(per_batch, limit - claimed);
			int			n;

			if (busy[b] != (pass == 1))
				continue;
			n = pgb_claim_locked(batches[b], InvalidOid, GetCurrentTimestamp(),
								 want, &cursor, &items);
			if (n > 0)
			{
				mine->busy_owner = owners[b];
				pgb_execute_claimed(ex, items, n);
				mine->busy_owner = InvalidOid;
				last_owner = owners[b];
			}
			if (n == want || ex->sliced)
				*more = true;
			claimed += n;
		}
	}
	return claimed;
}

/*
 * next_due_later
 *		When the next item that is not due yet becomes due (0 if none).
 */
static TimestampTz
next_due_later(void)
{
	Datum		args[1];
	TimestampTz result = 0;
	bool		isnull;
	Datum		d;

	if (due_plan == NULL)
	{
		Oid			argtypes[1] = {TIMESTAMPTZOID};

		due_plan = pgb_prepare("SELECT next_due FROM batch.items"
							   " WHERE status = 'pending' AND next_due > $1"
							   " ORDER BY next_due LIMIT 1",
							   1, argtypes);
	}
	args[0] = TimestampTzGetDatum(GetCurrentTimestamp());
	if (pgb_execute(due_plan, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "pgbatch: reading the next due time failed");
	if (SPI_processed == 1)
	{
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			result = DatumGetTimestampTz(d);
	}
	SPI_freetuptable(SPI_tuptable);
	return result;
}

/*
 * free_list
 *		Frees a list of requests.
 */
static void
free_list(PgbHttpRequest *req)
{
	while (req)
	{
		PgbHttpRequest *next = req->next;

		pgb_http_request_free(req);
		req = next;
	}
}

/*
 * executor_cleanup
 *		before_shmem_exit callback: abandon the transfers, free libcurl.
 */
static void
executor_cleanup(int code, Datum arg)
{
	free_list(results);
	results = NULL;
	pgb_http_shutdown();
	curl_global_cleanup();
}

/*
 * check_schema_version
 *		True if the database's pgbatch is at the version this library is
 *		built for.  If not (the library was updated and ALTER EXTENSION
 *		pgbatch UPDATE has not run yet), the executors stay idle instead of
 *		failing on objects they do not know, and executor 0 says so once.
 *		Once current, a version stays current (there is no downgrade).
 */
static bool
check_schema_version(void)
{
	static bool warned = false;
	char	   *version = NULL;

	if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pgbatch'",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pgbatch: reading the extension's version failed");
	if (SPI_processed == 1)
		version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	SPI_freetuptable(SPI_tuptable);
	if (version != NULL && strcmp(version, PGB_VERSION) == 0)
		return true;
	if (!warned && pgb_my_slot()->worker == 0)
		ereport(LOG,
				(errmsg("pgbatch in database \"%s\" is at version %s, older than its library (%s): its executors stay idle",
						get_database_name(MyDatabaseId), version ? version : "?", PGB_VERSION),
				 errhint("Run ALTER EXTENSION pgbatch UPDATE in that database.")));
	warned = true;
	return false;
}

/*
 * restore_in_progress
 *		True while a pg_restore session is connected to this database: its
 *		data is loading, table by table, and items may be there before
 *		their attempts, outputs or sequences are.  The executors take no
 *		work until it has gone (executor 0 says so once per restore), and
 *		then resume the restored batches: items restored as running are
 *		taken back like those of any executor that is gone.  Looked up at
 *		most once a second (it copies every backend's status).
 */
static bool
restore_in_progress(void)
{
	static bool said = false;
	static bool restoring = false;
	static TimestampTz checked_at = 0;
	TimestampTz now = GetCurrentTimestamp();
	int			n;
	int			i;

	if (checked_at != 0 && !TimestampDifferenceExceeds(checked_at, now, 1000))
		return restoring;
	checked_at = now;
	restoring = false;
	n = pgstat_fetch_stat_numbackends();
	for (i = 1; i <= n; i++)
	{
		PgBackendStatus *be = &pgstat_fetch_stat_local_beentry(i)->backendStatus;

		if (be->st_databaseid == MyDatabaseId && be->st_procpid != MyProcPid &&
			strcmp(be->st_appname, "pg_restore") == 0)
		{
			if (!said && pgb_my_slot()->worker == 0)
				ereport(LOG,
						(errmsg("pgbatch: pg_restore is loading database \"%s\": its executors wait for it to finish",
								get_database_name(MyDatabaseId))));
			said = true;
			restoring = true;
			return true;
		}
	}
	said = false;
	return false;
}

/* What one loop of the executor asks of its transaction. */
typedef struct IterationPlan
{
	bool		reclaim;
	int			claim_limit;	/* 0: do not claim */
} IterationPlan;

/*
 * run_transaction
 *		One short transaction: record results, take back orphans, claim and
 *		execute.  Sets *more (claim again at once) and *next_due; returns
 *		false if the extension is gone from this database.  After commit,
 *		the requests of the items it claimed go to the HTTP layer.
 */
static bool
run_transaction(IterationPlan *plan, bool *more, TimestampTz *next_due)
{
	PgbExecutor ex;
	bool		present;
	bool		working;		/* present, and at this library's version */
	bool		restoring;

	*more = false;
	*next_due = 0;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "pgbatch executor: recording and claiming");

	present = OidIsValid(get_extension_oid("pgbatch", true));
	if (present && !schema_current)
		schema_current = check_schema_version();
	if (present && !found_extension)
	{
		PgbDbFlags *f;

		/* tell the launcher, which starts the other executors */
		LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
		f = pgb_db_flags_find(MyDatabaseId, true);
		if (f)
		{
			f->has_extension = true;
			f->no_extension = false;
		}
		LWLockRelease(pgb_shared->lock);
		if (pgb_shared->launcher_latch)
			SetLatch(pgb_shared->launcher_latch);
		found_extension = true;
	}
	working = present && schema_current;
	if (working)
	{
		n_endpoints = -1;
		pgb_my_slot()->busy_owner = InvalidOid; /* after an error, too */
		pgb_executor_init(&ex, CurrentMemoryContext, true);
		current = &ex;
		ex.lease_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 (int64) pgb_lease_duration_s * 1000);
		record_results(&ex);
		restoring = restore_in_progress();
		if (plan->reclaim && !restoring)
			pgb_reclaim(GetUserId());
		if (plan->claim_limit > 0 && !restoring)
		{
			(void) claim_fair(&ex, plan->claim_limit, more);
			/* items deferred for a busy endpoint wait for its requests to end */
			if (ex.stats.items_deferred > 0)
				*more = false;
			if (!*more)
				*next_due = next_due_later();
		}
		/* a retry or a resume scheduled here is due before the next poll */
		if (ex.earliest_due > 0 && (*next_due == 0 || ex.earliest_due < *next_due))
			*next_due = ex.earliest_due;
		pgb_executor_done(&ex);
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	/* committed: the results are recorded, the claimed requests may go */
	current = NULL;
	free_list(results);
	results = NULL;
	if (working)
	{
		PgbHttpRequest *req = ex.prepared;

		while (req)
		{
			PgbHttpRequest *next = req->next;

			pgb_http_enqueue(req);
			req = next;
		}
	}
	return present;
}

/*
 * pgbatch_executor_main
 *		Entry point of an executor worker: bgw_main_arg is its shared-memory
 *		slot, bgw_extra its database's OID.
 */
void
pgbatch_executor_main(Datum main_arg)
{
	int			slot = DatumGetInt32(main_arg);
	Oid			dboid;
	MemoryContext loopcxt;
	TimestampTz next_claim = 0;
	TimestampTz next_reclaim = 0;
	bool		claim_wanted = true;
	int			failures = 0;
	uint32		exits_seen = 0;
	volatile uint32 exits_now = 0;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	/*
	 * Nothing a role creates in a schema on the default path may capture a
	 * name this superuser session resolves; stage functions see the same
	 * path as under batch.run().
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	pgb_slot_attach(slot, dboid);
	pgstat_report_appname("pgbatch executor");

	loopcxt = AllocSetContextCreate(TopMemoryContext, "pgbatch executor loop",
									ALLOCSET_DEFAULT_SIZES);
	pgb_http_init();
	before_shmem_exit(executor_cleanup, (Datum) 0);

	for (;;)
	{
		TimestampTz now;
		TimestampTz dispatch_at;
		IterationPlan plan = {false, 0};
		PgbHttpRequest *req;
		long		timeout_ms;
		int			capacity;

		MemoryContextSwitchTo(loopcxt);
		now = GetCurrentTimestamp();

		/* send what the endpoints let go; wait for the rest */
		dispatch_at = pgb_http_dispatch();
		capacity = pgb_max_http_in_flight * 2 - pgb_http_busy();

		timeout_ms = pgb_poll_interval_ms;
		if (pgb_enabled && capacity > 0)
		{
			if (claim_wanted)
				timeout_ms = 0;
			else if (next_claim > 0)
				timeout_ms = Min(timeout_ms, Max(0, (next_claim - now) / 1000));
		}
		if (dispatch_at > 0)
			timeout_ms = Min(timeout_ms, Max(1, (dispatch_at - now) / 1000));
		if (results != NULL)
			timeout_ms = 0;
		if (pgb_my_slot()->worker == 0)
			timeout_ms = Min(timeout_ms, Max(0, (next_reclaim - now) / 1000));

		if (pgb_http_wait(timeout_ms))
		{
			ResetLatch(MyLatch);
			claim_wanted = true;
		}
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/* finished requests wait in 'results' until they are recorded */
		while ((req = pgb_http_take_done()) != NULL)
		{
			req->next = results;
			results = req;
			/* a request slot is free again: look for more work */
			claim_wanted = true;
			if (req->state == PGB_HTTP_DONE && !req->aborted)
				pgb_my_slot()->requests++;
		}
		pgb_my_slot()->in_flight = pgb_http_in_flight();

		now = GetCurrentTimestamp();
		if (pgb_my_slot()->worker == 0 &&
			(now >= next_reclaim ||
			 pg_atomic_read_u32(&pgb_shared->exits) != exits_seen))
			plan.reclaim = true;
		capacity = pgb_max_http_in_flight * 2 - pgb_http_busy();
		if (pgb_enabled && capacity > 0 &&
			(claim_wanted || (next_claim > 0 && now >= next_claim)))
			plan.claim_limit = Min(capacity, pgb_claim_batch_size);
		if (results == NULL && !plan.reclaim && plan.claim_limit == 0)
			continue;

		MemoryContextReset(loopcxt);
		exits_now = pg_atomic_read_u32(&pgb_shared->exits);
		PG_TRY();
		{
			MemoryContext oldcxt = MemoryContextSwitchTo(loopcxt);
			bool		more;
			TimestampTz next_due;

			if (!run_transaction(&plan, &more, &next_due))
			{
				/* DROP EXTENSION (or never installed): stop until told */
				LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
				{
					PgbDbFlags *f = pgb_db_flags_find(MyDatabaseId, true);

					if (f)
					{
						f->no_extension = true;
						f->has_extension = false;
						f->checked_at = GetCurrentTimestamp();
					}
				}
				LWLockRelease(pgb_shared->lock);
				MemoryContextSwitchTo(oldcxt);
				proc_exit(0);
			}
			MemoryContextSwitchTo(oldcxt);

			if (plan.reclaim)
			{
				exits_seen = exits_now;
				next_reclaim = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   RECLAIM_INTERVAL_MS);
			}
			if (plan.claim_limit > 0)
			{
				claim_wanted = more;
				next_claim = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 pgb_poll_interval_ms);
			}
			if (next_due > 0 && (next_claim == 0 || next_due < next_claim))
				next_claim = next_due;
			failures = 0;
		}
		PG_CATCH();
		{
			/* report, roll back, and carry on after a pause */
			MemoryContextSwitchTo(loopcxt);
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
			pgstat_report_activity(STATE_IDLE, NULL);
			/* the claim rolled back: its requests must not go */
			if (current)
				free_list(current->prepared);
			current = NULL;
			failures++;
			if (failures >= 5)
			{
				/* results that cannot be recorded: their leases will run out */
				free_list(results);
				results = NULL;
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(1000L * failures, 10000L), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		PG_END_TRY();
	}
}
