-- doc/bi-queries.sql - ready-made queries for BI dashboards over pgbatch's views
--
-- Every query reads only the views batch.progress, batch.errors, batch.log,
-- batch.costs, batch.throughput, batch.metrics and batch.endpoint_status,
-- whose columns are fixed (see doc/user-guide.md, "Views"). Each one is preceded by a
-- "-- name:" line and a one-line description; each is a plain SELECT ending
-- with ";", so a BI tool (Grafana, Metabase, Superset, ...) can take it as is.
--
-- Roles. Give the BI tool a login in pgbatch_monitor: it sees every team's
-- batches (their costs too, never a payload or an output) and can change
-- none. Times are in the session's TimeZone.
--
-- test/t/015_docs.pl runs every query here against a database that holds a
-- finished batch with failures and a retry_failed, so they stay valid.

-- name: Batches per day by status
-- Batches submitted per day, by their current status, with their item counts.
SELECT created_at::date AS day, status, count(*) AS batches,
       sum(total) AS items, sum(completed) AS completed, sum(failed) AS failed
FROM batch.progress
GROUP BY day, status
ORDER BY day DESC, status;

-- name: Completion ratio and throughput per batch
-- The last 100 batches: completion ratio, elapsed time and completed items per minute (until they finished, or until now).
SELECT id, name, pipeline, status, total, completed, failed, pending, running,
       completion_ratio,
       coalesce(finished_at, now()) - started_at AS elapsed,
       round(completed / nullif(extract(epoch FROM coalesce(finished_at, now()) - started_at), 0) * 60, 2)
           AS items_per_minute
FROM batch.progress
ORDER BY created_at DESC, id DESC
LIMIT 100;

-- name: Open batches and their ETA
-- Batches not finished yet, with an estimated end from their pace so far (NULL before the first item ended).
SELECT id, name, pipeline, status, total, completed, failed, pending, retrying, running,
       now() + (pending + running) * ((now() - started_at) / nullif(completed + failed, 0)) AS eta
FROM batch.progress
WHERE finished_at IS NULL AND status IN ('queued', 'running')
ORDER BY created_at;

-- name: Failed items by batch, stage and code
-- What waits in the review queues now, one row per batch, stage and error code.
SELECT batch_id, batch, stage, error_code, items, first_seen, last_seen, sample_error
FROM batch.errors
ORDER BY items DESC, batch, stage, error_code;

-- name: Top error codes over the last 24 hours
-- Failed attempts of the last 24 hours by error code: those retried and those that failed their item (invalid_input is not an attempt).
SELECT error_code,
       count(*) AS attempts,
       count(*) FILTER (WHERE event = 'stage_retry') AS retried,
       count(*) FILTER (WHERE event = 'stage_failed') AS failed_items,
       count(DISTINCT batch_id) AS batches,
       max(finished_at) AS last_seen
FROM batch.log
WHERE event IN ('stage_retry', 'stage_failed')
  AND finished_at > now() - interval '24 hours'
GROUP BY error_code
ORDER BY attempts DESC, error_code
LIMIT 20;

-- name: Failed attempts per hour and code
-- Failed attempts per hour and error code over the last 24 hours, for a stacked time series.
SELECT date_trunc('hour', finished_at) AS hour, error_code, count(*) AS attempts
FROM batch.log
WHERE event IN ('stage_retry', 'stage_failed')
  AND finished_at > now() - interval '24 hours'
GROUP BY hour, error_code
ORDER BY hour, error_code;

-- name: HTTP statuses over the last 24 hours
-- Answers of the APIs by HTTP status over the last 24 hours, per stage.
SELECT stage, http_status, count(*) AS attempts
FROM batch.log
WHERE http_status IS NOT NULL
  AND finished_at > now() - interval '24 hours'
GROUP BY stage, http_status
ORDER BY stage, http_status;

-- name: Retry rate per stage
-- Attempts per pipeline and stage over the last 7 days, the share retried, the share that failed its item, and the items that needed a retry.
SELECT p.pipeline, l.stage,
       count(*) AS attempts,
       count(*) FILTER (WHERE l.event = 'stage_completed') AS completed,
       count(*) FILTER (WHERE l.event = 'stage_retry') AS retried,
       count(*) FILTER (WHERE l.event = 'stage_failed') AS failed,
       round(count(*) FILTER (WHERE l.event = 'stage_retry')::numeric / count(*), 4) AS retry_rate,
       round(count(*) FILTER (WHERE l.event = 'stage_failed')::numeric / count(*), 4) AS failure_rate,
       count(DISTINCT l.item_id) FILTER (WHERE l.event = 'stage_retry') AS items_retried
FROM batch.log l
JOIN batch.progress p ON p.id = l.batch_id
WHERE l.attempt IS NOT NULL
  AND l.finished_at > now() - interval '7 days'
GROUP BY p.pipeline, l.stage
ORDER BY p.pipeline, l.stage;

-- name: Stage latency percentiles
-- p50, p90 and p99 of the duration of successful attempts per pipeline and stage over the last 24 hours, in milliseconds.
SELECT p.pipeline, l.stage, count(*) AS attempts,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY l.duration_ms)::numeric, 1) AS p50_ms,
       round(percentile_cont(0.9) WITHIN GROUP (ORDER BY l.duration_ms)::numeric, 1) AS p90_ms,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY l.duration_ms)::numeric, 1) AS p99_ms,
       max(l.duration_ms) AS max_ms
FROM batch.log l
JOIN batch.progress p ON p.id = l.batch_id
WHERE l.event = 'stage_completed'
  AND l.finished_at > now() - interval '24 hours'
GROUP BY p.pipeline, l.stage
ORDER BY p.pipeline, l.stage;

-- name: Progress over time
-- Items completed per minute and in all, per batch, over the last 24 hours, for any pipeline (batch.throughput counts an item when its pipeline's last stage completes).
SELECT t.minute, t.batch, sum(t.items_completed) AS completed,
       sum(sum(t.items_completed)) OVER (PARTITION BY t.batch ORDER BY t.minute) AS completed_so_far,
       sum(t.attempts) FILTER (WHERE t.outcome <> 'completed') AS failed_attempts
FROM batch.throughput t
WHERE t.minute > now() - interval '24 hours'
GROUP BY t.minute, t.batch
ORDER BY t.batch, t.minute;

-- name: Completed stages per hour
-- Throughput over the last 24 hours: completed stage attempts per hour and stage.
SELECT date_trunc('hour', finished_at) AS hour, stage, count(*) AS completed
FROM batch.log
WHERE event = 'stage_completed'
  AND finished_at > now() - interval '24 hours'
GROUP BY hour, stage
ORDER BY hour, stage;

-- name: Operator actions
-- Who re-queued, fixed, reran, cancelled or gave away what, newest first (the role is at the end of the message).
SELECT l.finished_at AS at, p.name AS batch, l.event, l.item_id, l.message
FROM batch.log l
JOIN batch.progress p ON p.id = l.batch_id
WHERE l.event IN ('retry_failed', 'item_retried', 'item_updated', 'stage_rerun',
                  'cancelled', 'owner_changed')
ORDER BY l.finished_at DESC
LIMIT 200;

-- name: Batches without progress
-- Batches not finished whose last attempt ended more than 15 minutes ago, or that never started: worth a look.
SELECT p.id, p.name, p.status, p.pending, p.retrying, p.running, p.created_at,
       max(l.finished_at) AS last_attempt
FROM batch.progress p
LEFT JOIN batch.log l ON l.batch_id = p.id AND l.attempt IS NOT NULL
WHERE p.finished_at IS NULL
GROUP BY p.id, p.name, p.status, p.pending, p.retrying, p.running, p.created_at
HAVING coalesce(max(l.finished_at), p.created_at) < now() - interval '15 minutes'
ORDER BY p.id;

-- name: Cost per batch
-- Tokens and cost of each batch, and per completed item.
SELECT c.batch_id, c.batch, p.pipeline, p.status, p.completed,
       sum(c.tokens) AS tokens, sum(c.cost) AS cost,
       round(sum(c.cost) / nullif(p.completed, 0), 6) AS cost_per_completed_item,
       sum(c.retried_cost) AS retried_cost, sum(c.saved_cost) AS saved_cost
FROM batch.costs c
JOIN batch.progress p ON p.id = c.batch_id
GROUP BY c.batch_id, c.batch, p.pipeline, p.status, p.completed, p.created_at
ORDER BY p.created_at DESC, c.batch_id DESC;

-- name: Cost per pipeline and stage
-- Tokens and cost per pipeline and stage over the batches of the last 30 days.
SELECT p.pipeline, c.stage, count(*) AS batches,
       sum(c.tokens) AS tokens, sum(c.cost) AS cost,
       sum(c.retried_cost) AS retried_cost
FROM batch.costs c
JOIN batch.progress p ON p.id = c.batch_id
WHERE p.created_at > now() - interval '30 days'
GROUP BY p.pipeline, c.stage
ORDER BY p.pipeline, cost DESC NULLS LAST, c.stage;

-- name: Cost per day
-- Cost of the batches submitted each day, and what retry_failed saved on them.
SELECT p.created_at::date AS day, count(DISTINCT c.batch_id) AS batches,
       sum(c.tokens) AS tokens, sum(c.cost) AS cost, sum(c.saved_cost) AS saved_cost
FROM batch.costs c
JOIN batch.progress p ON p.id = c.batch_id
GROUP BY day
ORDER BY day DESC;

-- name: Savings from retry_failed
-- Per batch: retry_failed calls, what they saved against rerunning the whole batch, and what the retried items finally cost.
SELECT batch_id, batch, max(retry_failed_calls) AS retry_failed_calls,
       sum(saved_tokens) AS saved_tokens, sum(saved_cost) AS saved_cost,
       sum(retried_tokens) AS retried_tokens, sum(retried_cost) AS retried_cost,
       sum(cost) AS cost
FROM batch.costs
WHERE retry_failed_calls > 0
GROUP BY batch_id, batch
ORDER BY saved_cost DESC NULLS LAST, batch_id;

-- name: Endpoint health
-- Each endpoint's load, Retry-After pause, circuit and failure ratio since the server started, summed up in one word.
SELECT name, base_url, in_flight, max_concurrency,
       round(in_flight::numeric / max_concurrency, 2) AS load,
       rate_limit, paused_until, circuit, consecutive_failures, requests, failures,
       round(failures::numeric / nullif(requests, 0), 4) AS failure_ratio,
       CASE WHEN circuit <> 'closed' THEN 'circuit ' || circuit
            WHEN paused_until IS NOT NULL THEN 'paused'
            WHEN consecutive_failures > 0 THEN 'failing'
            ELSE 'ok' END AS health
FROM batch.endpoint_status
ORDER BY name;

-- name: Items by state across all batches
-- The pgbatch_items gauge of batch.metrics summed over batches: how much work waits, runs, is done or failed.
SELECT state, sum(value)::bigint AS items
FROM batch.metrics
WHERE metric = 'pgbatch_items'
GROUP BY state
ORDER BY state;

-- name: Attempt latency, last 5 minutes
-- The attempt duration quantiles of batch.metrics per batch and stage, over the attempts that ended in the last 5 minutes, in seconds.
SELECT batch, stage,
       max(value) FILTER (WHERE quantile = '0.5') AS p50_seconds,
       max(value) FILTER (WHERE quantile = '0.9') AS p90_seconds,
       max(value) FILTER (WHERE quantile = '0.99') AS p99_seconds
FROM batch.metrics
WHERE metric = 'pgbatch_attempt_duration_seconds'
GROUP BY batch, stage
ORDER BY batch, stage;
