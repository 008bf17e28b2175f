/*-------------------------------------------------------------------------
 *
 * endpoint.c
 *		Per-endpoint limits held in shared memory and so shared by every
 *		executor of a database: requests in flight (max_concurrency), a
 *		token bucket for the rate limit (requests per minute) that holds
 *		'burst' tokens, so that past a small burst requests are spaced
 *		evenly, a rate factor that a 429 halves and successes restore
 *		(additive increase, multiplicative decrease), a second bucket of
 *		LLM tokens per minute (a request reserves its estimate, its
 *		response's reported usage corrects it), what the provider's own
 *		rate-limit headers say is left (no request when nothing is, the
 *		rest spread over the time until it is whole again), the pause a
 *		Retry-After header asks for, and a circuit breaker that stops
 *		sending after a run of transient failures and probes before it
 *		resumes.  Each executor also counts what it holds, so that an exit
 *		gives its requests in flight back.  When pgbatch is not preloaded
 *		there is no shared memory: batch.run() keeps the same state for
 *		itself, in its backend.
 *
 * IDENTIFICATION
 *		src/endpoint.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/lwlock.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "endpoint.h"
#include "guc.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(pgbatch_forget_endpoint);
PG_FUNCTION_INFO_V1(pgbatch_endpoint_state);

/* requests in flight this backend holds, per endpoint index */
static int32 *held = NULL;

/*
 * Without shared memory (pgbatch not preloaded, so no executors: batch.run()
 * sends the requests), the same limits are kept in this backend alone.
 */
static PgbEndpointState *local_endpoints = NULL;
static int	local_nendpoints = 0;

/*
 * endpoint_table
 *		The endpoint states (shared, or this backend's) and their count.
 */
static PgbEndpointState *
endpoint_table(int **count)
{
	if (pgb_shared)
	{
		*count = &pgb_shared->nendpoints;
		return pgb_shared->endpoints;
	}
	if (local_endpoints == NULL)
		local_endpoints = MemoryContextAllocZero(TopMemoryContext,
												 sizeof(PgbEndpointState) * pgb_max_endpoints);
	*count = &local_nendpoints;
	return local_endpoints;
}

/*
 * lock_endpoints, unlock_endpoints
 *		The shared lock, when the states are shared.
 */
static void
lock_endpoints(void)
{
	if (pgb_shared)
		LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
}

static void
unlock_endpoints(void)
{
	if (pgb_shared)
		LWLockRelease(pgb_shared->lock);
}

/* AIMD: the least rate factor, and what a success gives back */
#define PGB_RATE_FACTOR_MIN		(1.0 / 64)
#define PGB_RATE_FACTOR_STEP	(1.0 / 64)

/*
 * rate_in_use
 *		Requests per minute the endpoint may send now: its rate_limit, or
 *		without one the rate implied by its first 429, times the rate
 *		factor; 0 for no limit.
 */
static double
rate_in_use(PgbEndpointState *ep)
{
	return (ep->rate_limit > 0 ? ep->rate_limit : ep->implied_rate) * ep->rate_factor;
}

/*
 * count_sent
 *		Counts a request sent, for the rate it is sent at (sent_rate, per
 *		minute, measured over whole seconds).
 */
static void
count_sent(PgbEndpointState *ep, TimestampTz now)
{
	if (ep->sent_window_at == 0 || now - ep->sent_window_at >= USECS_PER_SEC)
	{
		if (ep->sent_window_at != 0)
			ep->sent_rate = now - ep->sent_window_at < 2 * USECS_PER_SEC ?
				ep->sent_in_window * 60.0 * USECS_PER_SEC / (double) (now - ep->sent_window_at) : 0;
		ep->sent_window_at = now;
		ep->sent_in_window = 0;
	}
	ep->sent_in_window++;
}

/*
 * refill
 *		Adds the tokens earned since the last refill at the rate in use;
 *		the bucket holds 'burst' tokens.
 */
static void
refill(PgbEndpointState *ep, TimestampTz now)
{
	double		per_ms;
	double		cap;

	if (rate_in_use(ep) <= 0)
		return;
	per_ms = rate_in_use(ep) / 60000.0;
	cap = Max(1, ep->burst);
	if (ep->refilled_at == 0)
		ep->tokens = cap;
	else if (now > ep->refilled_at)
		ep->tokens = Min(cap, ep->tokens + per_ms * (double) (now - ep->refilled_at) / 1000.0);
	ep->refilled_at = now;
}

/*
 * refill_llm
 *		Adds the LLM tokens earned since the last refill at tokens_per_minute
 *		times rate_factor; the bucket holds one minute's worth, as the
 *		providers' own buckets do.
 */
static void
refill_llm(PgbEndpointState *ep, TimestampTz now)
{
	double		per_ms;

	if (ep->tokens_per_minute <= 0)
		return;
	per_ms = ep->tokens_per_minute * ep->rate_factor / 60000.0;
	if (ep->llm_refilled_at == 0)
		ep->llm_tokens = ep->tokens_per_minute;
	else if (now > ep->llm_refilled_at)
		ep->llm_tokens = Min((double) ep->tokens_per_minute,
							 ep->llm_tokens + per_ms * (double) (now - ep->llm_refilled_at) / 1000.0);
	ep->llm_refilled_at = now;
}

/*
 * provider_wait
 *		When the provider's rate-limit headers say that a request should not
 *		go yet: the next of the requests (or tokens) left, spread evenly
 *		over the time until the limit is whole again, is not due; or
 *		nothing is left of its requests, or of its tokens for a request
 *		estimated at 'estimate' tokens, before that time.  0 if it may go
 *		now.
 */
static TimestampTz
provider_wait(PgbEndpointState *ep, TimestampTz now, int64 estimate)
{
	if (ep->hint_next_at > now)
		return ep->hint_next_at;
	if (ep->hint_requests_until > now && ep->hint_requests <= 0)
		return ep->hint_requests_until;
	if (ep->hint_tokens_until > now && ep->hint_tokens < Max(estimate, 1))
		return ep->hint_tokens_until;
	return 0;
}

/*
 * provider_spend
 *		Counts a request that goes out against what the provider said was
 *		left, and spaces what is left evenly until it is whole again: the
 *		next request is due after the time left divided by the requests
 *		left, or by the requests of this size the tokens left make.  Under
 *		a limit that refills steadily this settles at the provider's rate,
 *		far from its edge.
 */
static void
provider_spend(PgbEndpointState *ep, TimestampTz now, int64 estimate)
{
	TimestampTz next = 0;

	if (ep->hint_requests_until > now)
	{
		ep->hint_requests--;
		next = now + (ep->hint_requests_until - now) / (Max(ep->hint_requests, 0) + 1);
	}
	if (ep->hint_tokens_until > now)
	{
		ep->hint_tokens -= estimate;
		if (estimate > 0)
			next = Max(next, now + (TimestampTz) ((double) (ep->hint_tokens_until - now) *
												  estimate / (Max(ep->hint_tokens, 0) + estimate)));
	}
	if (next > ep->hint_next_at)
		ep->hint_next_at = next;
}

/*
 * provider_learn
 *		Takes in what a response's rate-limit headers said.  Requests of
 *		ours still in flight may not be counted in the remaining figure
 *		yet, so they are taken from it.
 */
static void
provider_learn(PgbEndpointState *ep, const PgbRateHints *hints, TimestampTz now)
{
	if (hints == NULL)
		return;
	if (hints->requests_remaining >= 0 && hints->requests_reset_s >= 0)
	{
		ep->hint_requests = hints->requests_remaining - ep->in_flight;
		ep->hint_requests_until =
			TimestampTzPlusMilliseconds(now, (int64) ceil(hints->requests_reset_s * 1000.0));
	}
	if (hints->tokens_remaining >= 0 && hints->tokens_reset_s >= 0)
	{
		ep->hint_tokens = hints->tokens_remaining;
		ep->hint_tokens_until =
			TimestampTzPlusMilliseconds(now, (int64) ceil(hints->tokens_reset_s * 1000.0));
	}
}

/*
 * pgb_endpoint_index
 *		The shared state of an endpoint of a database, created on first use,
 *		with its limits brought up to date.  -1 if the table is full.
 */
int
pgb_endpoint_index(Oid dboid, int32 endpoint_id, int max_concurrency, int rate_limit,
				   int burst, int tokens_per_minute)
{
	int			i;
	int			found = -1;
	int		   *count;
	PgbEndpointState *table = endpoint_table(&count);

	lock_endpoints();
	for (i = 0; i < *count; i++)
	{
		PgbEndpointState *ep = &table[i];

		if (ep->dboid == dboid && ep->endpoint_id == endpoint_id)
		{
			found = i;
			break;
		}
	}
	/* a slot freed by a dropped endpoint, else a new one */
	for (i = 0; found < 0 && i < *count; i++)
		if (table[i].dboid == InvalidOid)
			found = i;
	if (found < 0 && *count < pgb_max_endpoints)
		found = (*count)++;
	if (found >= 0 && table[found].dboid == InvalidOid)
	{
		PgbEndpointState *ep = &table[found];

		memset(ep, 0, sizeof(PgbEndpointState));
		ep->dboid = dboid;
		ep->endpoint_id = endpoint_id;
		ep->circuit = PGB_CIRCUIT_CLOSED;
		ep->rate_factor = 1.0;
	}
	if (found >= 0)
	{
		PgbEndpointState *ep = &table[found];

		ep->max_concurrency = max_concurrency;
		if (ep->rate_limit != rate_limit || ep->burst != burst)
		{
			ep->rate_limit = rate_limit;
			ep->burst = burst;
			ep->refilled_at = 0;
			ep->implied_rate = 0;	/* a new setting: nothing learnt yet */
		}
		if (ep->tokens_per_minute != tokens_per_minute)
		{
			ep->tokens_per_minute = tokens_per_minute;
			ep->llm_refilled_at = 0;
		}
	}
	unlock_endpoints();
	return found;
}

/*
 * pgb_endpoint_forget
 *		Frees the state of a dropped endpoint for another one, unless a
 *		request of it is still in flight (a later drop of the database, or
 *		a restart, frees it then).
 */
static void
pgb_endpoint_forget(Oid dboid, int32 endpoint_id)
{
	int			i;
	int		   *count;
	PgbEndpointState *table = endpoint_table(&count);

	lock_endpoints();
	for (i = 0; i < *count; i++)
	{
		PgbEndpointState *ep = &table[i];

		if (ep->dboid == dboid && ep->endpoint_id == endpoint_id && ep->in_flight == 0)
			memset(ep, 0, sizeof(PgbEndpointState));
	}
	unlock_endpoints();
}

/*
 * pgbatch_forget_endpoint
 *		batch_internal.forget_endpoint(endpoint_id): called by
 *		batch.drop_endpoint() so that dropped endpoints do not use up
 *		pgbatch.max_endpoints.
 */
Datum
pgbatch_forget_endpoint(PG_FUNCTION_ARGS)
{
	pgb_endpoint_forget(MyDatabaseId, PG_GETARG_INT32(0));
	PG_RETURN_VOID();
}

/*
 * pgb_endpoint_acquire
 *		Takes a request slot (a rate token, and its estimate of LLM tokens)
 *		of an endpoint if it may send now.  Otherwise says why not; *until
 *		is when to look again (0 when that depends on a request finishing).
 */
PgbEndpointVerdict
pgb_endpoint_acquire(int index, TimestampTz now, int64 token_estimate, TimestampTz *until)
{
	int		   *count;
	PgbEndpointState *ep = &endpoint_table(&count)[index];
	PgbEndpointVerdict verdict = PGB_EP_GO;

	if (held == NULL)
		held = MemoryContextAllocZero(TopMemoryContext, sizeof(int32) * pgb_max_endpoints);

	*until = 0;
	lock_endpoints();
	if (ep->paused_until > now)
	{
		verdict = PGB_EP_PAUSED;
		*until = ep->paused_until;
	}
	else if (ep->circuit == PGB_CIRCUIT_PROBING ||
			 (ep->circuit == PGB_CIRCUIT_OPEN && now < ep->open_until))
	{
		/* while the probe is out, look again in a second (or when it ends) */
		verdict = PGB_EP_PAUSED;
		*until = Max(ep->open_until, TimestampTzPlusMilliseconds(now, 1000));
	}
	else if (ep->in_flight >= Max(1, (int) (ep->max_concurrency * ep->rate_factor)))
	{
		verdict = PGB_EP_WAIT;
		ep->waiters = true;
	}
	else
	{
		refill(ep, now);
		if (rate_in_use(ep) > 0 && ep->tokens < 1.0)
		{
			double		wait_ms = (1.0 - ep->tokens) * 60000.0 / rate_in_use(ep);

			verdict = PGB_EP_WAIT;
			*until = TimestampTzPlusMilliseconds(now, (int64) ceil(wait_ms));
		}
		else if (ep->tokens_per_minute > 0)
		{
			/* a request larger than a whole minute waits for a full bucket */
			double		need = Min((double) Max(token_estimate, 1), (double) ep->tokens_per_minute);

			refill_llm(ep, now);
			if (ep->llm_tokens < need)
			{
				double		wait_ms = (need - ep->llm_tokens) * 60000.0 /
					(ep->tokens_per_minute * ep->rate_factor);

				verdict = PGB_EP_WAIT;
				*until = TimestampTzPlusMilliseconds(now, (int64) ceil(wait_ms));
			}
		}
		if (verdict == PGB_EP_GO)
		{
			TimestampTz provider_until = provider_wait(ep, now, token_estimate);

			if (provider_until != 0)
			{
				verdict = PGB_EP_WAIT;
				*until = provider_until;
			}
		}
	}
	if (verdict == PGB_EP_GO)
	{
		if (rate_in_use(ep) > 0)
			ep->tokens -= 1.0;
		count_sent(ep, now);
		if (ep->tokens_per_minute > 0)
			ep->llm_tokens -= token_estimate;
		provider_spend(ep, now, token_estimate);
		if (ep->circuit == PGB_CIRCUIT_OPEN)
			ep->circuit = PGB_CIRCUIT_PROBING;	/* this request is the probe */
		ep->in_flight++;
		ep->requests++;
		held[index]++;
	}
	unlock_endpoints();
	return verdict;
}

/*
 * pgb_endpoint_release
 *		Gives back a request slot and feeds the outcome to the circuit
 *		breaker; a Retry-After (seconds, or < 0 for none) pauses the whole
 *		endpoint; the provider's rate-limit headers (hints, or NULL) say
 *		what is left.  Executors waiting for a slot of it are woken.
 *		Returns whether this outcome opened or closed the circuit.
 */
PgbCircuitChange
pgb_endpoint_release(int index, PgbEndpointResult result, double retry_after_s,
					 const PgbRateHints *hints, TimestampTz now)
{
	PgbCircuitChange change = PGB_CIRCUIT_UNCHANGED;
	PgbCircuit	was;
	int		   *count;
	PgbEndpointState *ep = &endpoint_table(&count)[index];
	bool		wake;

	lock_endpoints();
	if (held && held[index] > 0)
	{
		held[index]--;
		ep->in_flight = Max(ep->in_flight - 1, 0);
	}
	if (retry_after_s > 0)
	{
		TimestampTz resume = TimestampTzPlusMilliseconds(now, (int64) (retry_after_s * 1000.0));

		ep->paused_until = Max(ep->paused_until, resume);
	}
	provider_learn(ep, hints, now);
	was = ep->circuit;
	switch (result)
	{
		case PGB_EPR_SUCCESS:
		case PGB_EPR_PERMANENT:
			/* the endpoint answered: it is up */
			ep->consecutive_failures = 0;
			ep->circuit = PGB_CIRCUIT_CLOSED;
			if (result == PGB_EPR_PERMANENT)
				ep->failures++;
			else
			{
				ep->rate_factor = Min(1.0, ep->rate_factor + PGB_RATE_FACTOR_STEP);
				/* back to the full limits: a rate implied by a 429 is forgotten */
				if (ep->rate_factor >= 1.0)
					ep->implied_rate = 0;
			}
			break;
		case PGB_EPR_RATE_LIMITED:

			/*
			 * Too fast: halve the share of the limits in use, once per
			 * second at most (the 429s of requests already out say nothing
			 * new), and spend the tokens in hand.  An endpoint without a
			 * rate_limit is given the rate it was sent at as one, until
			 * the factor is back to 1, unless the 429 said when to come
			 * back (its Retry-After pauses the endpoint until then).
			 */
			if (ep->decreased_at == 0 ||
				TimestampDifferenceExceeds(ep->decreased_at, now, 1000))
			{
				if (ep->rate_limit <= 0 && ep->implied_rate <= 0 && retry_after_s <= 0)
				{
					double		current = ep->sent_window_at == 0 ? 0 :
						ep->sent_in_window * 60.0 * USECS_PER_SEC /
						(double) Max(now - ep->sent_window_at, USECS_PER_SEC);

					ep->implied_rate = Max(60.0, Max(ep->sent_rate, current));
					ep->refilled_at = 0;
				}
				refill(ep, now);
				ep->rate_factor = Max(PGB_RATE_FACTOR_MIN, ep->rate_factor / 2);
				ep->decreased_at = now;
				ep->tokens = Min(ep->tokens, 0.0);
			}

			/*
			 * The endpoint answered: it is up, and the slower rate, not the
			 * circuit breaker, deals with its limit.
			 */
			ep->failures++;
			ep->consecutive_failures = 0;
			ep->circuit = PGB_CIRCUIT_CLOSED;
			break;
		case PGB_EPR_TRANSIENT:
			ep->failures++;
			ep->consecutive_failures++;
			if (ep->circuit == PGB_CIRCUIT_PROBING ||
				(pgb_circuit_threshold > 0 &&
				 ep->consecutive_failures >= pgb_circuit_threshold))
			{
				ep->circuit = PGB_CIRCUIT_OPEN;
				ep->open_until = TimestampTzPlusMilliseconds(now, pgb_circuit_cooldown_ms);
			}
			break;
		case PGB_EPR_NOT_SENT:
			if (ep->circuit == PGB_CIRCUIT_PROBING)
				ep->circuit = PGB_CIRCUIT_OPEN;
			break;
	}
	if (was == PGB_CIRCUIT_CLOSED && ep->circuit == PGB_CIRCUIT_OPEN)
		change = PGB_CIRCUIT_OPENED;
	else if (was != PGB_CIRCUIT_CLOSED && ep->circuit == PGB_CIRCUIT_CLOSED)
		change = PGB_CIRCUIT_CLOSED_AGAIN;
	wake = ep->waiters && pgb_shared != NULL;
	ep->waiters = false;
	unlock_endpoints();
	if (wake)
		pgb_wake_executors(ep->dboid);
	return change;
}

/*
 * pgb_endpoint_tokens_used
 *		Replaces a request's estimate of LLM tokens with what its response
 *		reported it used (used < 0: not reported, the estimate stands; a
 *		request never sent gives its estimate back with used = 0).
 */
void
pgb_endpoint_tokens_used(int index, int64 estimate, int64 used)
{
	int		   *count;
	PgbEndpointState *ep = &endpoint_table(&count)[index];

	if (used < 0)
		return;
	lock_endpoints();
	ep->tokens_used += used;
	if (ep->tokens_per_minute > 0 && ep->llm_refilled_at != 0)
		ep->llm_tokens = Min((double) ep->tokens_per_minute,
							 ep->llm_tokens + (double) (estimate - used));
	if (ep->hint_tokens_until != 0)
		ep->hint_tokens += estimate - used;
	unlock_endpoints();
}

/*
 * pgb_endpoint_release_all
 *		Gives back every request slot this backend holds (at exit, or when
 *		batch.run() gives up its requests).
 */
void
pgb_endpoint_release_all(void)
{
	int			i;
	int		   *count;
	PgbEndpointState *table;

	if (held == NULL)
		return;
	table = endpoint_table(&count);
	lock_endpoints();
	for (i = 0; i < *count && i < pgb_max_endpoints; i++)
	{
		PgbEndpointState *ep = &table[i];

		ep->in_flight = Max(ep->in_flight - held[i], 0);
		if (held[i] > 0 && ep->circuit == PGB_CIRCUIT_PROBING)
			ep->circuit = PGB_CIRCUIT_OPEN;
		held[i] = 0;
	}
	unlock_endpoints();
}

/*
 * pgbatch_endpoint_state
 *		batch._endpoint_state(): the live state of this database's endpoints.
 */
Datum
pgbatch_endpoint_state(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (pgb_shared == NULL)
		PG_RETURN_VOID();

	LWLockAcquire(pgb_shared->lock, LW_SHARED);
	for (i = 0; i < pgb_shared->nendpoints; i++)
	{
		PgbEndpointState *ep = &pgb_shared->endpoints[i];
		Datum		values[13];
		bool		nulls[13] = {false};
		const char *circuit;

		if (ep->dboid != MyDatabaseId)
			continue;
		circuit = ep->circuit == PGB_CIRCUIT_CLOSED ? "closed" :
			(ep->circuit == PGB_CIRCUIT_OPEN && now < ep->open_until) ? "open" : "half-open";
		values[0] = Int32GetDatum(ep->endpoint_id);
		values[1] = Int32GetDatum(ep->in_flight);
		values[2] = Int32GetDatum(ep->max_concurrency);
		values[3] = Float8GetDatum(ep->tokens);
		values[4] = TimestampTzGetDatum(ep->paused_until);
		nulls[4] = ep->paused_until == 0;
		values[5] = CStringGetTextDatum(circuit);
		values[6] = Int32GetDatum(ep->consecutive_failures);
		values[7] = Int64GetDatum(ep->requests);
		values[8] = Int64GetDatum(ep->failures);
		/* the columns from rate_factor on are 1.4's; 1.1 to 1.3 declare nine */
		values[9] = Float8GetDatum(ep->rate_factor);
		values[10] = Int64GetDatum(ep->tokens_used);
		values[11] = Int64GetDatum(Max(ep->hint_requests, 0));
		nulls[11] = ep->hint_requests_until <= now;
		values[12] = Int64GetDatum(Max(ep->hint_tokens, 0));
		nulls[12] = ep->hint_tokens_until <= now;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(pgb_shared->lock);
	PG_RETURN_VOID();
}
