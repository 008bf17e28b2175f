/*-------------------------------------------------------------------------
 *
 * stage_http.c
 *		The HTTP stage: what an item at an HTTP stage becomes on the wire,
 *		and what the response means for it.  Building the request: the
 *		stage's endpoint (read once per run, with its secret headers), the
 *		body (the stage's body function, run as the batch owner, or
 *		{"payload", "outputs"}), the URL and headers, an idempotency key;
 *		the item is recorded as running under this backend's lease, and the
 *		request goes to the HTTP transport (http.c) once the claim commits.
 *		Handling the response: each result becomes (for an item still held
 *		when the record is written, see pgb_outcome_guard) an output and
 *		the next stage, a retry (after a Retry-After, if one came) or a
 *		failure, with the attempt's status, size, checksum and (for a
 *		failure) the start of the body, secrets masked (http_response.c);
 *		endpoints that paused or resumed are announced (events.c).
 *
 * IDENTIFICATION
 *		src/stage_http.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>

#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_authid.h"
#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "claim.h"
#include "endpoint.h"
#include "events.h"
#include "guc.h"
#include "http.h"
#include "http_response.h"
#include "llm_tokens.h"
#include "outcome.h"
#include "pgbatch.h"
#include "pipeline.h"
#include "security.h"
#include "stage_http.h"
#include "stage_sql.h"
#include "util.h"

/* An endpoint as the executor sends to it (read once per run). */
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
	int			burst;
	int			tokens_per_minute;
	bool		follow_redirects;
	int			shm_index;
	char	   *tls_ca;			/* tls settings (see batch_internal.check_tls) */
	char	   *tls_cert;
	char	   *tls_key;
	char	   *tls_pin;
	char	   *tls_proxy_ca;
	char	   *proxy;
} PgbEndpointInfo;

static SPIPlanPtr endpoints_plan = NULL;
static SPIPlanPtr cancelled_plan = NULL;

#define RESPONSE_BODY_KEPT	4096

/*
 * pgb_http_stage_init
 *		A fresh HTTP stage state for a run: endpoints are read on first use,
 *		into cxt; retries, failures and requests are counted in *stats.
 */
void
pgb_http_stage_init(PgbHttpStage *hs, MemoryContext cxt, bool defer_busy,
					PgbRunStats *stats)
{
	memset(hs, 0, sizeof(PgbHttpStage));
	hs->cxt = cxt;
	hs->endpoints = NULL;
	hs->nendpoints = -1;
	hs->defer_busy = defer_busy;
	hs->stats = stats;
}

/*
 * load_endpoints
 *		Reads every endpoint, with its secret headers, into the run's memory
 *		context.
 */
static void
load_endpoints(PgbHttpStage *hs)
{
	uint64		i;
	Oid			save_userid;
	int			save_sec_context;
	PgbEndpointInfo *endpoints;
	MemoryContext oldcxt = MemoryContextSwitchTo(hs->cxt);

	if (endpoints_plan == NULL)
		endpoints_plan = pgb_prepare("SELECT e.id, e.base_url,"
									 " (extract(epoch FROM e.timeout) * 1000)::float8,"
									 " e.max_concurrency, coalesce(e.rate_limit, 0),"
									 " e.follow_redirects,"
									 " ARRAY(SELECT h.key"
									 "  FROM pg_catalog.jsonb_each_text(e.headers) h),"
									 " e.name,"
									 " ARRAY(SELECT h.value"
									 "  FROM pg_catalog.jsonb_each_text(e.headers) h),"
									 " e.tls ->> 'ca', e.tls ->> 'client_cert',"
									 " e.tls ->> 'client_key', e.tls ->> 'pinned_public_key',"
									 " e.burst, coalesce(e.tokens_per_minute, 0),"
									 " e.proxy, e.tls ->> 'proxy_ca'"
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
	hs->nendpoints = (int) SPI_processed;
	endpoints = palloc0(sizeof(PgbEndpointInfo) * Max(hs->nendpoints, 1));
	hs->endpoints = endpoints;
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
		ep->tls_ca = SPI_getvalue(tup, desc, 10);
		ep->tls_cert = SPI_getvalue(tup, desc, 11);
		ep->tls_key = SPI_getvalue(tup, desc, 12);
		ep->tls_pin = SPI_getvalue(tup, desc, 13);
		ep->burst = DatumGetInt32(SPI_getbinval(tup, desc, 14, &isnull));
		ep->tokens_per_minute = DatumGetInt32(SPI_getbinval(tup, desc, 15, &isnull));
		ep->proxy = SPI_getvalue(tup, desc, 16);
		ep->tls_proxy_ca = SPI_getvalue(tup, desc, 17);
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
										   ep->rate_limit, ep->burst,
										   ep->tokens_per_minute);
	}
	SPI_freetuptable(SPI_tuptable);
	MemoryContextSwitchTo(oldcxt);
}

/*
 * find_endpoint
 *		The endpoint with this id, or NULL.
 */
static PgbEndpointInfo *
find_endpoint(PgbHttpStage *hs, int32 id)
{
	int			i;

	if (hs->nendpoints < 0)
		load_endpoints(hs);
	for (i = 0; i < hs->nendpoints; i++)
		if (hs->endpoints[i].id == id)
			return &hs->endpoints[i];
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
 * pgb_http_stage_prepare
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
pgb_http_stage_prepare(PgbHttpStage *hs, PgbRecord *rec, PgbBatchInfo *info,
					   PgbStage *stage, PgbWorkItem *it, int attempt)
{
	PgbEndpointInfo *ep = find_endpoint(hs, stage->endpoint_id);
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

		pgb_outcome_stage_error(rec, it->batch_id, it->id, stage->name, attempt,
							   &policy, false, "endpoint_unavailable", msg, now, now, 0);
		return true;
	}
	if (!stage->endpoint_allowed)
	{
		pgb_outcome_stage_error(rec, it->batch_id, it->id, stage->name, attempt,
							   &policy, false, "insufficient_privilege",
							   psprintf("role \"%s\" may not use endpoint \"%s\"",
										info->owner_name, ep->name),
							   now, now, 0);
		return true;
	}
	if (ep->header_problem != NULL)
	{
		pgb_outcome_stage_error(rec, it->batch_id, it->id, stage->name, attempt,
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
	if (hs->defer_busy && pgb_http_endpoint_load(ep->shm_index) >= ep->max_concurrency)
	{
		hs->stats->items_deferred++;
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
			pgb_outcome_stage_error(rec, it->batch_id, it->id, stage->name, attempt,
								   &policy, result == PGB_STAGE_TRANSIENT, error_code,
								   psprintf("building the request failed: %s", message),
								   now, GetCurrentTimestamp(), 0);
			return true;
		}
		json = JsonbToCString(NULL, &body->root, VARSIZE(body));
	}
	else
	{
		StringInfoData buf;

		/*
		 * The object {"outputs": ..., "payload": ...}, written as
		 * JsonbToCString() writes it (keys in jsonb's order), without
		 * building it as a jsonb first
		 */
		initStringInfo(&buf);
		appendStringInfoString(&buf, "{\"outputs\": ");
		if (it->outputs)
			(void) JsonbToCString(&buf, &it->outputs->root, VARSIZE(it->outputs));
		else
			appendStringInfoString(&buf, "{}");
		appendStringInfoString(&buf, ", \"payload\": ");
		(void) JsonbToCString(&buf, &it->payload->root, VARSIZE(it->payload));
		appendStringInfoChar(&buf, '}');
		json = buf.data;
	}
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
	req->due = Min(it->next_due, now);
	req->timeout_ms = ep->timeout_ms;
	req->follow_redirects = ep->follow_redirects;
	pgb_http_reserve(req);
	strlcpy(req->method, stage->method, sizeof(req->method));
	req->stage = strdup_or_fail(req, stage->name);
	if (stage->position < info->pipeline->nstages - 1)
		req->next_stage = strdup_or_fail(req, info->pipeline->stages[stage->position + 1].name);
	req->url = strdup_or_fail(req, url);
	if (ep->tls_ca)
		req->tls_ca = strdup_or_fail(req, ep->tls_ca);
	if (ep->tls_cert && ep->tls_key)
	{
		req->tls_cert = strdup_or_fail(req, ep->tls_cert);
		req->tls_key = strdup_or_fail(req, ep->tls_key);
	}
	if (ep->tls_pin)
		req->tls_pin = strdup_or_fail(req, ep->tls_pin);
	if (ep->proxy)
		req->proxy = strdup_or_fail(req, ep->proxy);
	if (ep->tls_proxy_ca)
		req->tls_proxy_ca = strdup_or_fail(req, ep->tls_proxy_ca);

	for (i = 0; i < ep->nheaders; i++)
		add_header(req, ep->header_lines[i]);
	req->nsecrets = ep->nheaders;
	/* a GET carries no body, so no Content-Type */
	if (strcmp(stage->method, "GET") != 0)
	{
		req->body = strdup_or_fail(req, json);
		req->token_estimate = pgb_estimate_tokens(req->body);
		add_header(req, "Content-Type: application/json");
	}
	add_header(req, "Accept: application/json");
	add_header(req, "Expect:");
	/* the same key on every attempt of this item's stage */
	snprintf(key, sizeof(key), "Idempotency-Key: pgbatch-" UINT64_FORMAT "-%u-" INT64_FORMAT "-%d",
			 GetSystemIdentifier(), MyDatabaseId, it->id, stage->position + 1);
	add_header(req, key);

	req->next = hs->prepared;
	hs->prepared = req;
	hs->stats->requests_prepared++;

	lease_until = Max(hs->lease_until,
					  TimestampTzPlusMilliseconds(now, ep->timeout_ms + 60000));
	pgb_outcome_item_held(rec, it->id, stage->name, attempt, req->due, lease_until);
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
	/* one hex_encode: 32 sprintf calls cost 11,000 instructions an item */
	hex = palloc(PG_SHA256_DIGEST_LENGTH * 2 + 1);
	hex[hex_encode((const char *) digest, sizeof(digest), hex)] = '\0';
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
 * api_reason
 *		The API's own reason for a failed answer, if its body is JSON that
 *		gives one as a string (error.message, error, message, detail or
 *		error_description, where OpenAI, Anthropic, FastAPI and OAuth put
 *		it), cut to 200 characters; NULL otherwise.  The body is already
 *		masked.
 */
static char *
api_reason(PgbHttpRequest *req)
{
	static const char *const keys[][2] = {
		{"error", "message"}, {"error", NULL}, {"message", NULL},
		{"detail", NULL}, {"error_description", NULL}
	};
	Jsonb	   *body;
	int			i;

	if (req->resp_len == 0 || req->resp_len > 65536 ||
		!pg_verifymbstr(req->resp, (int) req->resp_len, true) ||
		(body = parse_response(req)) == NULL || !JB_ROOT_IS_OBJECT(body))
		return NULL;
	for (i = 0; i < lengthof(keys); i++)
	{
		JsonbValue	outer;
		JsonbValue	inner;
		JsonbValue *v = getKeyJsonValueFromContainer(&body->root, keys[i][0],
													 strlen(keys[i][0]), &outer);

		if (v != NULL && keys[i][1] != NULL)
			v = v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data) ?
				getKeyJsonValueFromContainer(v->val.binary.data, keys[i][1],
											 strlen(keys[i][1]), &inner) : NULL;
		if (v != NULL && v->type == jbvString && v->val.string.len > 0)
			return pnstrdup(v->val.string.val,
							pg_mbcliplen(v->val.string.val, v->val.string.len, 200));
	}
	return NULL;
}

/*
 * record_result
 *		Adds what a finished request means for its item to the outcome
 *		buffers.
 */
static void
record_result(PgbHttpStage *hs, PgbRecord *rec, PgbHttpRequest *req, bool cancelled)
{
	TimestampTz now = GetCurrentTimestamp();
	const char *code = req->error_code;
	char	   *message = NULL;
	Jsonb	   *output = NULL;
	TimestampTz not_before = 0;
	const char *outcome;
	const char *path;
	PgbResponseInfo response;

	if (req->state == PGB_HTTP_RELEASED || req->aborted)
	{
		/* never sent: back to pending, the attempt not spent */
		if (!cancelled && req->state == PGB_HTTP_RELEASED &&
			(hs->stats->earliest_due == 0 || req->release_until < hs->stats->earliest_due))
			hs->stats->earliest_due = req->release_until;
		pgb_outcome_item(rec, req->item_id, cancelled ? PGB_CANCELLED : PGB_PENDING,
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
	{
		char	   *reason = api_reason(req);

		message = reason ?
			psprintf("HTTP %ld from %s %s: %s", req->status, req->method, path, reason) :
			psprintf("HTTP %ld from %s %s", req->status, req->method, path);
	}
	else
		message = psprintf("%s %s: %s", req->method, path,
						   req->errbuf[0] ? req->errbuf : curl_easy_strerror((CURLcode) req->result));

	/* the item's new state */
	if (output != NULL)
	{
		/* the tokens it used, for the endpoint's tokens_per_minute */
		pgb_endpoint_tokens_used(req->endpoint_index, req->token_estimate,
								 pgb_reported_tokens(output));
		pgb_outcome_output(rec, req->item_id, req->stage, output);
		outcome = PGB_COMPLETED;
		if (cancelled)
			pgb_outcome_item(rec, req->item_id, PGB_CANCELLED, req->stage, req->attempt,
							 now, NULL, NULL, now);
		else if (req->next_stage == NULL)
		{
			pgb_outcome_item(rec, req->item_id, PGB_COMPLETED, req->stage, req->attempt,
							 now, NULL, NULL, req->finished_at);
			hs->stats->items_completed++;
		}
		else
		{
			/*
			 * Depth first: the item keeps its place in the queue, so that
			 * it goes on to its next stage before items due after it start
			 * their first, and completions flow from the start.
			 */
			pgb_outcome_item(rec, req->item_id, PGB_PENDING, req->next_stage, 0,
							 Min(req->due, now), NULL, NULL, 0);
		}
	}
	else if (cancelled)
	{
		outcome = PGB_FAILED;
		pgb_outcome_item(rec, req->item_id, PGB_CANCELLED, req->stage, req->attempt,
						 now, code, message, now);
	}
	else
	{
		if (req->retry_after_s > 0)
			not_before = TimestampTzPlusMilliseconds(req->finished_at,
													 (int64) (req->retry_after_s * 1000.0));
		outcome = pgb_outcome_failure(rec, req->item_id, req->stage, req->attempt,
									  &req->policy,
									  req->transient && strcmp(code, "invalid_response") != 0,
									  code, message, req->finished_at, not_before);
	}

	/* the attempt, with what came back */
	response.status = req->status;
	response.size = req->resp_len;
	response.sha256 = req->resp_len > 0 ? sha256_hex(req->resp, req->resp_len) : NULL;
	response.body = output == NULL ? kept_body(req) : NULL;
	pgb_outcome_attempt(rec, req->batch_id, req->item_id, req->stage, req->attempt,
						outcome, output ? NULL : code, message,
						req->started_at, req->finished_at, &response);
}

/*
 * announce_endpoints
 *		Tells listeners (at commit) about the endpoints these results paused
 *		(a Retry-After, an opened circuit) or resumed (a closed circuit):
 *		one event per endpoint and kind.
 */
static void
announce_endpoints(PgbHttpStage *hs, PgbHttpRequest *list)
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
		ep = find_endpoint(hs, req->endpoint_id);
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
 * pgb_http_stage_record
 *		Adds to rec what the finished requests (a list) did to their items,
 *		under the guard that each item is still running under this
 *		backend's claim when rec is flushed (a lease taken back by another
 *		executor is not ours to record); the caller flushes rec.  The list
 *		stays the caller's.
 */
void
pgb_http_stage_record(PgbHttpStage *hs, PgbRecord *rec, PgbHttpRequest *results)
{
	PgbColumn	batches;
	PgbHttpRequest *req;
	Datum		args[1];
	uint64		i;
	int64	   *cancelled;
	int			ncancelled;

	pgb_column_init(&batches, INT8OID);
	for (req = results; req; req = req->next)
		pgb_column_add(&batches, Int64GetDatum(req->batch_id), false);
	if (batches.n == 0)
		return;

	if (cancelled_plan == NULL)
	{
		Oid			argtypes[1] = {INT8ARRAYOID};

		cancelled_plan = pgb_prepare("SELECT b.id FROM batch.batches b"
									 " WHERE b.id = ANY ($1) AND b.cancelled_at IS NOT NULL",
									 1, argtypes);
	}
	args[0] = pgb_column_array(&batches);
	if (pgb_execute_keyed(cancelled_plan, args, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pgbatch: reading the cancelled batches failed");
	ncancelled = (int) SPI_processed;
	cancelled = palloc(sizeof(int64) * Max(ncancelled, 1));
	for (i = 0; i < SPI_processed; i++)
	{
		bool		isnull;

		cancelled[i] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[i],
												   SPI_tuptable->tupdesc, 1, &isnull));
	}
	SPI_freetuptable(SPI_tuptable);

	announce_endpoints(hs, results);

	pgb_outcome_guard(rec, (int32) MyProcPid);
	for (req = results; req; req = req->next)
	{
		int			j;

		for (j = 0; j < ncancelled; j++)
			if (cancelled[j] == req->batch_id)
				break;
		record_result(hs, rec, req, j < ncancelled);
	}
	pgb_outcome_guard(rec, 0);
}
