/*
 * src/sql/views.sql
 *
 * What operators, applications and BI tools read.  The views run with the
 * reader's privileges (security_invoker), so row-level security shows each
 * role its own batches; endpoint_status and workers show the live state the
 * executors share.
 */

CREATE VIEW batch.progress WITH (security_invoker = true) AS
SELECT b.id, b.name, p.name AS pipeline,
	   batch_internal.batch_status(b.cancelled_at IS NOT NULL, c.pending, c.retrying, c.running,
								   c.completed, c.failed, c.cancelled, c.started_at IS NOT NULL) AS status,
	   c.total,
	   c.pending + c.retrying AS pending,
	   c.running, c.retrying, c.completed, c.failed, c.cancelled,
	   round(c.completed::numeric / nullif(c.total, 0), 4) AS completion_ratio,
	   b.created_at, c.started_at,
	   CASE WHEN c.total > 0 AND c.pending + c.retrying + c.running = 0
			THEN greatest(c.updated_at, b.cancelled_at) END AS finished_at,
	   b.owner
FROM batch.batches b
JOIN batch.pipelines p ON p.id = b.pipeline_id
CROSS JOIN LATERAL (
	SELECT coalesce(sum(k.pending + k.retrying + k.running + k.completed
						+ k.failed + k.cancelled), 0)::bigint AS total,
		   coalesce(sum(k.pending), 0)::bigint AS pending,
		   coalesce(sum(k.retrying), 0)::bigint AS retrying,
		   coalesce(sum(k.running), 0)::bigint AS running,
		   coalesce(sum(k.completed), 0)::bigint AS completed,
		   coalesce(sum(k.failed), 0)::bigint AS failed,
		   coalesce(sum(k.cancelled), 0)::bigint AS cancelled,
		   min(k.started_at) AS started_at,
		   max(k.updated_at) AS updated_at
	FROM batch.counters k
	WHERE k.batch_id = b.id
) c;
COMMENT ON VIEW batch.progress IS
	'per batch: status and items by state, from the counters (constant time)';
COMMENT ON COLUMN batch.progress.id IS 'Batch id.';
COMMENT ON COLUMN batch.progress.name IS 'Batch name.';
COMMENT ON COLUMN batch.progress.pipeline IS 'Pipeline name.';
COMMENT ON COLUMN batch.progress.status IS 'Batch status: queued (no item attempted yet), running, completed (finished, none failed), partial (finished, some failed), failed (finished, none completed) or cancelled (cancelled, or finished with every item cancelled).';
COMMENT ON COLUMN batch.progress.total IS 'Items in the batch, in every state.';
COMMENT ON COLUMN batch.progress.pending IS 'Items waiting for an attempt, retrying ones included.';
COMMENT ON COLUMN batch.progress.running IS 'Items with an HTTP request out; items at SQL stages never show as running.';
COMMENT ON COLUMN batch.progress.retrying IS 'Items waiting out a backoff before a retry, a part of pending.';
COMMENT ON COLUMN batch.progress.completed IS 'Items that completed every stage.';
COMMENT ON COLUMN batch.progress.failed IS 'Failed items, those in the review queue.';
COMMENT ON COLUMN batch.progress.cancelled IS 'Cancelled items.';
COMMENT ON COLUMN batch.progress.completion_ratio IS 'Share of the items completed: completed divided by total, rounded to 4 decimals. NULL for a batch without items.';
COMMENT ON COLUMN batch.progress.created_at IS 'When the batch was submitted.';
COMMENT ON COLUMN batch.progress.started_at IS 'When an item of the batch was first recorded as attempted; NULL while the batch is queued.';
COMMENT ON COLUMN batch.progress.finished_at IS 'When nothing was left waiting or running: the last counter change, or the cancellation if later. NULL until then, and again while a retry or rerun is under way.';
COMMENT ON COLUMN batch.progress.owner IS 'The role the batch belongs to.';

-- errors and review_queue find the failed items through the queue's index; an
-- item and its queue row change in one transaction, so a snapshot sees them agree
CREATE VIEW batch.errors WITH (security_invoker = true) AS
SELECT i.batch_id, b.name AS batch, i.stage, i.error_code,
	   count(*) AS items,
	   min(i.finished_at) AS first_seen,
	   max(i.finished_at) AS last_seen,
	   (array_agg(i.error_message ORDER BY i.finished_at DESC, i.id))[1] AS sample_error
FROM batch.queue q
JOIN batch.items i ON i.id = q.item_id
JOIN batch.batches b ON b.id = i.batch_id
WHERE q.status = 'failed'
GROUP BY i.batch_id, b.name, i.stage, i.error_code;
COMMENT ON VIEW batch.errors IS
	'failed items per batch, stage and error code, with a sample message';
COMMENT ON COLUMN batch.errors.batch_id IS 'Batch id.';
COMMENT ON COLUMN batch.errors.batch IS 'Batch name.';
COMMENT ON COLUMN batch.errors.stage IS 'The stage the items failed at.';
COMMENT ON COLUMN batch.errors.error_code IS 'The error code the items failed with (see Error codes in the user guide).';
COMMENT ON COLUMN batch.errors.items IS 'How many items of the batch are failed now with this stage and error code.';
COMMENT ON COLUMN batch.errors.first_seen IS 'When the earliest of these items failed.';
COMMENT ON COLUMN batch.errors.last_seen IS 'When the latest of these items failed.';
COMMENT ON COLUMN batch.errors.sample_error IS 'The error message of the latest of these items.';

CREATE VIEW batch.review_queue WITH (security_invoker = true) AS
SELECT i.batch_id, i.id AS item_id, i.key, i.stage, i.error_code,
	   i.error_message AS error, i.attempt AS attempts, i.payload,
	   i.finished_at AS failed_at
FROM batch.queue q
JOIN batch.items i ON i.id = q.item_id
WHERE q.status = 'failed';
COMMENT ON VIEW batch.review_queue IS
	'the failed items, with their payload and last error';
COMMENT ON COLUMN batch.review_queue.batch_id IS 'Batch id.';
COMMENT ON COLUMN batch.review_queue.item_id IS 'Item id, for batch.update_item() and batch.retry_item().';
COMMENT ON COLUMN batch.review_queue.key IS 'The item''s key; NULL if it has none.';
COMMENT ON COLUMN batch.review_queue.stage IS 'The stage the item failed at, where a retry resumes.';
COMMENT ON COLUMN batch.review_queue.error_code IS 'The error code the item failed with.';
COMMENT ON COLUMN batch.review_queue.error IS 'The error message the item failed with. What an HTTP API answered is in batch.attempts.response_body.';
COMMENT ON COLUMN batch.review_queue.attempts IS 'Attempts made at that stage (0 for invalid_input).';
COMMENT ON COLUMN batch.review_queue.payload IS 'The item''s payload.';
COMMENT ON COLUMN batch.review_queue.failed_at IS 'When the item failed.';

-- Every attempt and batch event, as log lines.
CREATE VIEW batch.log WITH (security_invoker = true) AS
SELECT a.batch_id, a.item_id, a.stage, a.attempt,
	   CASE a.outcome WHEN 'completed' THEN 'info' WHEN 'retry' THEN 'warning' ELSE 'error' END AS level,
	   'stage_' || a.outcome AS event,
	   a.error_code, a.message, a.started_at, a.finished_at,
	   round(extract(epoch FROM a.finished_at - a.started_at) * 1000, 3) AS duration_ms,
	   a.http_status
FROM batch.attempts a
UNION ALL
SELECT e.batch_id, e.item_id, NULL, NULL, e.level, e.event,
	   NULL, e.message || ' (by ' || e.actor || ')', e.created_at, e.created_at, NULL, NULL
FROM batch.events e;
COMMENT ON VIEW batch.log IS
	'every attempt and batch event, as log lines';
COMMENT ON COLUMN batch.log.batch_id IS 'Batch id.';
COMMENT ON COLUMN batch.log.item_id IS 'The item; NULL for events about a whole batch.';
COMMENT ON COLUMN batch.log.stage IS 'The stage attempted; NULL for events.';
COMMENT ON COLUMN batch.log.attempt IS 'Attempt number at that stage, from 1; NULL for events.';
COMMENT ON COLUMN batch.log.level IS 'Severity: info, warning or error. An attempt is info when it completed, warning when it will be retried and error when it failed the item.';
COMMENT ON COLUMN batch.log.event IS 'For an attempt, stage_ followed by its outcome (stage_completed, stage_retry or stage_failed); for an event, its name from batch.events.';
COMMENT ON COLUMN batch.log.error_code IS 'The attempt''s error code; NULL for completed attempts and for events.';
COMMENT ON COLUMN batch.log.message IS 'The attempt''s error message; for an event, what happened followed by "(by <role>)".';
COMMENT ON COLUMN batch.log.started_at IS 'When the attempt began, or when the event happened.';
COMMENT ON COLUMN batch.log.finished_at IS 'When the attempt ended, or when the event happened.';
COMMENT ON COLUMN batch.log.duration_ms IS 'The attempt''s duration in milliseconds (finished_at minus started_at, 3 decimals); NULL for events.';
COMMENT ON COLUMN batch.log.http_status IS 'HTTP status of the response, for HTTP attempts that got an answer; NULL otherwise.';

CREATE VIEW batch.endpoint_status AS
SELECT e.id, e.name, e.base_url, e.max_concurrency, e.rate_limit, e.timeout,
	   coalesce(s.in_flight, 0) AS in_flight,
	   CASE WHEN s.paused_until > now() THEN s.paused_until END AS paused_until,
	   coalesce(s.circuit, 'closed') AS circuit,
	   coalesce(s.consecutive_failures, 0) AS consecutive_failures,
	   coalesce(s.requests, 0) AS requests,
	   coalesce(s.failures, 0) AS failures,
	   e.burst,
	   coalesce(s.rate_factor, 1) AS rate_factor,
	   e.tokens_per_minute,
	   coalesce(s.tokens_used, 0) AS tokens_used,
	   s.requests_left AS provider_requests_left,
	   s.tokens_left AS provider_tokens_left,
	   regexp_replace(e.proxy, '^([a-zA-Z0-9]+://)[^/@]*@', '\1') AS proxy
FROM batch.endpoints e
LEFT JOIN batch_internal.endpoint_state() s ON s.endpoint_id = e.id;
COMMENT ON VIEW batch.endpoint_status IS
	'per endpoint: settings and the live state shared by the executors';
COMMENT ON COLUMN batch.endpoint_status.id IS 'Endpoint id.';
COMMENT ON COLUMN batch.endpoint_status.name IS 'Endpoint name.';
COMMENT ON COLUMN batch.endpoint_status.base_url IS 'Base URL to which each stage''s path is appended.';
COMMENT ON COLUMN batch.endpoint_status.max_concurrency IS 'Most requests in flight at once, all executors together.';
COMMENT ON COLUMN batch.endpoint_status.rate_limit IS 'Most requests per minute, all executors together; NULL for no limit.';
COMMENT ON COLUMN batch.endpoint_status.timeout IS 'Longest a whole request may take; when it elapses the attempt fails with the transient error timeout.';
COMMENT ON COLUMN batch.endpoint_status.in_flight IS 'Requests in flight now, all executors together. Live state from shared memory: 0 when pgbatch is not in shared_preload_libraries.';
COMMENT ON COLUMN batch.endpoint_status.paused_until IS 'When the pause that a Retry-After header put on the endpoint ends; NULL when it is not paused.';
COMMENT ON COLUMN batch.endpoint_status.circuit IS 'State of the circuit breaker: closed (requests flow), open (no requests until the cooldown ends) or half-open (one probe request decides).';
COMMENT ON COLUMN batch.endpoint_status.consecutive_failures IS 'Transient failures in a row; any answer that is not a transient error resets it to 0.';
COMMENT ON COLUMN batch.endpoint_status.requests IS 'Requests sent to the endpoint since the server started.';
COMMENT ON COLUMN batch.endpoint_status.failures IS 'How many of those requests failed, transient and permanent failures alike.';
COMMENT ON COLUMN batch.endpoint_status.burst IS 'Requests that may go out at once after a quiet spell; past it they are spaced evenly at rate_limit.';
COMMENT ON COLUMN batch.endpoint_status.rate_factor IS 'The share of rate_limit, tokens_per_minute and max_concurrency in use now: a 429 halves it (down to 1/64), each success gives 1/64 back, up to 1.';
COMMENT ON COLUMN batch.endpoint_status.tokens_per_minute IS 'Most LLM tokens per minute, all executors together; NULL for no limit.';
COMMENT ON COLUMN batch.endpoint_status.tokens_used IS 'LLM tokens the endpoint''s responses reported (usage.total_tokens and the like) since the server started.';
COMMENT ON COLUMN batch.endpoint_status.provider_requests_left IS 'Requests the provider''s rate-limit headers last said were left, less those sent since; NULL when it did not say or its window has ended.';
COMMENT ON COLUMN batch.endpoint_status.provider_tokens_left IS 'Tokens the provider''s rate-limit headers last said were left, less the estimates of requests sent since; NULL when it did not say or its window has ended.';
COMMENT ON COLUMN batch.endpoint_status.proxy IS 'The proxy requests go through, without its user name and password; NULL for none.';

CREATE VIEW batch.workers AS
SELECT w.pid, w.worker, w.started_at, w.in_flight, w.requests
FROM batch_internal.workers() w;
COMMENT ON VIEW batch.workers IS
	'the running executors of this database';
COMMENT ON COLUMN batch.workers.pid IS 'Process id of the executor (pg_stat_activity.pid).';
COMMENT ON COLUMN batch.workers.worker IS 'Executor number within the database, from 0.';
COMMENT ON COLUMN batch.workers.started_at IS 'When the executor started.';
COMMENT ON COLUMN batch.workers.in_flight IS 'HTTP requests the executor has in flight now.';
COMMENT ON COLUMN batch.workers.requests IS 'HTTP requests the executor has sent since it started.';

CREATE VIEW batch.health AS
SELECT h.database, h.state, h.executors, h.wanted, h.since, h.started, h.reason, h.hint
FROM batch_internal.health() h;
COMMENT ON VIEW batch.health IS
	'per database of the cluster: whether pgbatch executors serve it, how many, since when, and if not, why not and what to do';
COMMENT ON COLUMN batch.health.database IS 'The database (templates are left out).';
COMMENT ON COLUMN batch.health.state IS 'serving (executors claim its work), starting (the launcher is starting them), paused (executors run but claim nothing new: the kill switch, pg_restore) or not served (no executor will run its items; see reason).';
COMMENT ON COLUMN batch.health.executors IS 'Executors running for the database now.';
COMMENT ON COLUMN batch.health.wanted IS 'Executors the launcher keeps running for it (pgbatch.workers), 0 when it is not served.';
COMMENT ON COLUMN batch.health.since IS 'When the longest-running of its executors started: served since then.';
COMMENT ON COLUMN batch.health.started IS 'Executors the launcher started for it since the server started: more than wanted means some exited and were started again.';
COMMENT ON COLUMN batch.health.reason IS 'Why it is not served, or served by fewer executors than wanted, or paused; NULL when all is well.';
COMMENT ON COLUMN batch.health.hint IS 'What to do about the reason.';

/*
 * Tokens and cost per batch and stage, from the outputs of completed
 * stages (one per item and stage):
 *   tokens, cost                 what the stage's outputs report;
 *   retried_tokens, retried_cost the part of it retries got done: outputs of
 *                                an item's stage that had failed attempts
 *                                first (failed attempts report no usage);
 *   retry_failed_calls           the batch.retry_failed() calls that re-queued
 *                                items;
 *   saved_tokens, saved_cost     what those calls saved against rerunning the
 *                                whole batch: every output that existed at a
 *                                call would have been paid for again.
 * Numbers only, never an output: readers (dashboards under pgbatch_monitor)
 * read it, not the outputs it sums.  So it reads the tables as its owner and
 * keeps to the batches the reader sees by the read policies' own rule
 * (current_can_see); a security barrier keeps the reader's conditions from
 * running before that one.
 */
CREATE VIEW batch.costs WITH (security_barrier = true) AS
WITH calls AS (
	SELECT e.batch_id, e.created_at
	FROM batch.events e
	WHERE e.event = 'retry_failed' AND coalesce((e.detail ->> 'items')::bigint, 0) > 0
), used AS (
	SELECT i.batch_id, o.stage, o.item_id, o.created_at,
		   CASE WHEN jsonb_typeof(o.output #> s.usage_path) = 'number'
				THEN (o.output #>> s.usage_path)::numeric END AS tokens,
		   EXISTS (SELECT FROM batch.attempts a
				   WHERE a.item_id = o.item_id AND a.stage = o.stage
					 AND a.outcome <> 'completed') AS retried
	FROM batch.outputs o
	JOIN batch.items i ON i.id = o.item_id
	JOIN batch.batches b ON b.id = i.batch_id
	JOIN batch.stages s ON s.pipeline_id = b.pipeline_id AND s.name = o.stage
	WHERE s.usage_path IS NOT NULL AND batch_internal.current_can_see(b.owner)
)
SELECT b.id AS batch_id, b.name AS batch, s.name AS stage, s.price_per_1k_tokens,
	   coalesce(sum(u.tokens), 0) AS tokens,
	   round(coalesce(sum(u.tokens), 0) * s.price_per_1k_tokens / 1000, 6) AS cost,
	   coalesce(sum(u.tokens) FILTER (WHERE u.retried), 0) AS retried_tokens,
	   round(coalesce(sum(u.tokens) FILTER (WHERE u.retried), 0) * s.price_per_1k_tokens / 1000, 6) AS retried_cost,
	   (SELECT count(*) FROM calls c WHERE c.batch_id = b.id) AS retry_failed_calls,
	   coalesce((SELECT sum(u2.tokens) FROM used u2 JOIN calls c ON c.batch_id = u2.batch_id
				 WHERE u2.batch_id = b.id AND u2.stage = s.name AND u2.created_at < c.created_at), 0)
		   AS saved_tokens,
	   round(coalesce((SELECT sum(u2.tokens) FROM used u2 JOIN calls c ON c.batch_id = u2.batch_id
					   WHERE u2.batch_id = b.id AND u2.stage = s.name AND u2.created_at < c.created_at), 0)
			 * s.price_per_1k_tokens / 1000, 6) AS saved_cost
FROM batch.batches b
JOIN batch.stages s ON s.pipeline_id = b.pipeline_id
LEFT JOIN used u ON u.batch_id = b.id AND u.stage = s.name
WHERE s.usage_path IS NOT NULL AND batch_internal.current_can_see(b.owner)
GROUP BY b.id, b.name, s.name, s.position, s.price_per_1k_tokens;
COMMENT ON VIEW batch.costs IS
	'tokens and cost per batch and stage, and what retries cost and retry_failed saved';
COMMENT ON COLUMN batch.costs.batch_id IS 'Batch id.';
COMMENT ON COLUMN batch.costs.batch IS 'Batch name.';
COMMENT ON COLUMN batch.costs.stage IS 'A stage of the batch''s pipeline that has a usage path (set with batch.set_stage_cost()).';
COMMENT ON COLUMN batch.costs.price_per_1k_tokens IS 'The stage''s price of 1,000 tokens, in the currency of your choice; NULL when no price is set.';
COMMENT ON COLUMN batch.costs.tokens IS 'Tokens reported by the stage''s current outputs in the batch: the sum of the numbers at the usage path. Outputs without a number there count 0.';
COMMENT ON COLUMN batch.costs.cost IS 'Cost of the tokens: tokens times price_per_1k_tokens divided by 1000, rounded to 6 decimals. NULL when the stage has no price.';
COMMENT ON COLUMN batch.costs.retried_tokens IS 'The part of tokens from outputs of item stages that had failed attempts first (outcome retry or failed): what the retries finally bought.';
COMMENT ON COLUMN batch.costs.retried_cost IS 'Cost of retried_tokens, rounded to 6 decimals; NULL when the stage has no price.';
COMMENT ON COLUMN batch.costs.retry_failed_calls IS 'Number of batch.retry_failed() calls on the batch, scheduled ones included, that re-queued at least one item. retry_item and rerun_stage do not count.';
COMMENT ON COLUMN batch.costs.saved_tokens IS 'Tokens those retry_failed calls saved against rerunning the whole batch: for each call, the tokens of this stage''s outputs that existed at the call and still exist, summed over the calls.';
COMMENT ON COLUMN batch.costs.saved_cost IS 'Cost of saved_tokens, rounded to 6 decimals; NULL when the stage has no price.';

/*
 * Attempts per minute, batch, stage and outcome, and the items that
 * completed (their last stage's completed attempts): a progress-over-time
 * series for any pipeline, without naming its last stage.
 */
CREATE VIEW batch.throughput WITH (security_invoker = true) AS
SELECT date_trunc('minute', a.finished_at) AS minute, a.batch_id, b.name AS batch,
	   a.stage, a.outcome, count(*) AS attempts,
	   count(*) FILTER (WHERE a.outcome = 'completed' AND s.position = last.position) AS items_completed
FROM batch.attempts a
JOIN batch.batches b ON b.id = a.batch_id
JOIN batch.stages s ON s.pipeline_id = b.pipeline_id AND s.name = a.stage
JOIN (SELECT st.pipeline_id, max(st.position) AS position FROM batch.stages st
	  GROUP BY st.pipeline_id) last ON last.pipeline_id = b.pipeline_id
GROUP BY 1, a.batch_id, b.name, a.stage, a.outcome;
COMMENT ON VIEW batch.throughput IS
	'attempts per minute, batch, stage and outcome, and the items completed in that minute';
COMMENT ON COLUMN batch.throughput.minute IS 'The minute the attempts finished in.';
COMMENT ON COLUMN batch.throughput.batch_id IS 'Batch id.';
COMMENT ON COLUMN batch.throughput.batch IS 'Batch name.';
COMMENT ON COLUMN batch.throughput.stage IS 'The stage attempted.';
COMMENT ON COLUMN batch.throughput.outcome IS 'completed, retry (a transient error, retried later) or failed.';
COMMENT ON COLUMN batch.throughput.attempts IS 'Attempts of that stage with that outcome that finished in that minute.';
COMMENT ON COLUMN batch.throughput.items_completed IS 'Items that completed in that minute: the completed attempts of the pipeline''s last stage (0 on the rows of other stages and outcomes).';

-- Every stage output of every item, with the item's key: a batch's results.
CREATE VIEW batch.results WITH (security_invoker = true) AS
SELECT i.batch_id, b.name AS batch, i.id AS item_id, i.key, o.stage, o.output,
	   o.created_at
FROM batch.outputs o
JOIN batch.items i ON i.id = o.item_id
JOIN batch.batches b ON b.id = i.batch_id;
COMMENT ON VIEW batch.results IS
	'the output of every completed stage of every item, with the item''s key and its batch';
COMMENT ON COLUMN batch.results.batch_id IS 'Batch id.';
COMMENT ON COLUMN batch.results.batch IS 'Batch name.';
COMMENT ON COLUMN batch.results.item_id IS 'Item id.';
COMMENT ON COLUMN batch.results.key IS 'The item''s key; NULL if it has none.';
COMMENT ON COLUMN batch.results.stage IS 'The stage that produced the output.';
COMMENT ON COLUMN batch.results.output IS 'What the stage returned (a SQL stage''s result, an HTTP stage''s parsed answer).';
COMMENT ON COLUMN batch.results.created_at IS 'When the stage completed.';

/*
 * Counters and gauges for monitoring, one row per metric and label set:
 * items by state per batch; failed items per batch, stage and error code;
 * attempts per batch, stage and outcome, and their latency quantiles over the
 * last five minutes, for batches not finished or finished within the hour;
 * and per endpoint, requests in flight and in all, failures, whether it is
 * paused (Retry-After) and for how long, and whether its circuit is open.
 * doc/prometheus-queries.yml exports it through prometheus-postgres-exporter.
 */
CREATE VIEW batch.metrics WITH (security_invoker = true) AS
WITH recent AS (
	SELECT p.id, p.name
	FROM batch.progress p
	WHERE p.finished_at IS NULL OR p.finished_at > now() - interval '1 hour'
)
SELECT 'pgbatch_items'::text AS metric, 'gauge'::text AS kind, p.name AS batch,
	   NULL::text AS stage, NULL::text AS endpoint, s.state, NULL::text AS outcome,
	   NULL::text AS code, NULL::text AS quantile, s.n::float8 AS value
FROM batch.progress p
CROSS JOIN LATERAL (VALUES ('pending', p.pending - p.retrying), ('retrying', p.retrying),
						   ('running', p.running), ('completed', p.completed),
						   ('failed', p.failed), ('cancelled', p.cancelled)) s(state, n)
UNION ALL
SELECT 'pgbatch_failed_items', 'gauge', e.batch, e.stage, NULL, NULL, NULL, e.error_code,
	   NULL, e.items
FROM batch.errors e
UNION ALL
SELECT 'pgbatch_attempts_total', 'counter', r.name, a.stage, NULL, NULL, a.outcome, NULL,
	   NULL, count(*)
FROM recent r JOIN batch.attempts a ON a.batch_id = r.id
GROUP BY r.name, a.stage, a.outcome
UNION ALL
SELECT 'pgbatch_attempt_duration_seconds', 'gauge', r.name, a.stage, NULL, NULL, NULL, NULL,
	   q.quantile, q.value
FROM recent r
CROSS JOIN LATERAL (
	SELECT x.stage,
		   percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP
			   (ORDER BY extract(epoch FROM x.finished_at - x.started_at)) AS qs
	FROM batch.attempts x
	WHERE x.batch_id = r.id AND x.finished_at > now() - interval '5 minutes'
	GROUP BY x.stage
) a
CROSS JOIN LATERAL (VALUES ('0.5', a.qs[1]), ('0.9', a.qs[2]), ('0.99', a.qs[3])) q(quantile, value)
UNION ALL
SELECT m.metric, m.kind, NULL, NULL, es.name, NULL, NULL, NULL, NULL, m.value
FROM batch.endpoint_status es
CROSS JOIN LATERAL (VALUES
	('pgbatch_endpoint_in_flight', 'gauge', es.in_flight::float8),
	('pgbatch_endpoint_requests_total', 'counter', es.requests::float8),
	('pgbatch_endpoint_failures_total', 'counter', es.failures::float8),
	('pgbatch_endpoint_paused', 'gauge', (es.paused_until IS NOT NULL)::int::float8),
	('pgbatch_endpoint_paused_seconds', 'gauge',
	 coalesce(extract(epoch FROM es.paused_until - now()), 0)::float8),
	('pgbatch_endpoint_circuit_open', 'gauge', (es.circuit <> 'closed')::int::float8),
	('pgbatch_endpoint_consecutive_failures', 'gauge', es.consecutive_failures::float8)
) m(metric, kind, value);
COMMENT ON VIEW batch.metrics IS
	'counters and gauges for Prometheus (doc/prometheus-queries.yml)';
COMMENT ON COLUMN batch.metrics.metric IS 'Metric family: pgbatch_items, pgbatch_failed_items, pgbatch_attempts_total, pgbatch_attempt_duration_seconds, or pgbatch_endpoint_ followed by in_flight, requests_total, failures_total, paused, paused_seconds, circuit_open or consecutive_failures. The attempt metrics cover batches not finished or finished within the last hour.';
COMMENT ON COLUMN batch.metrics.kind IS 'Prometheus metric type: gauge or counter.';
COMMENT ON COLUMN batch.metrics.batch IS 'Label: batch name; NULL for the endpoint metrics.';
COMMENT ON COLUMN batch.metrics.stage IS 'Label: stage name, for pgbatch_failed_items, pgbatch_attempts_total and pgbatch_attempt_duration_seconds; NULL otherwise.';
COMMENT ON COLUMN batch.metrics.endpoint IS 'Label: endpoint name, for the pgbatch_endpoint_ metrics; NULL otherwise.';
COMMENT ON COLUMN batch.metrics.state IS 'Label for pgbatch_items: pending (waiting for a first attempt), retrying, running, completed, failed or cancelled; NULL otherwise.';
COMMENT ON COLUMN batch.metrics.outcome IS 'Label for pgbatch_attempts_total: completed, retry or failed; NULL otherwise.';
COMMENT ON COLUMN batch.metrics.code IS 'Label for pgbatch_failed_items: the error code; NULL otherwise.';
COMMENT ON COLUMN batch.metrics.quantile IS 'Label for pgbatch_attempt_duration_seconds: 0.5, 0.9 or 0.99, over the attempts that ended in the last 5 minutes; NULL otherwise.';
COMMENT ON COLUMN batch.metrics.value IS 'The value: a count of items, attempts or requests, seconds for pgbatch_attempt_duration_seconds and pgbatch_endpoint_paused_seconds, or 1 or 0 for pgbatch_endpoint_paused and pgbatch_endpoint_circuit_open.';
