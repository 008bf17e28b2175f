/* demo/summary.sql - the end state of demo_batch and what it cost.
 *
 * Shows the final batch.progress row; the HTTP requests spent, per stage and
 * per pass (batch.attempts with an HTTP status), cross-checked with what the
 * fake API counted (its GET /_stats, passed in as :'api_stats') and with
 * batch.endpoint_status; tokens and cost per stage (batch.costs); what
 * rerunning the whole batch after the failure would have cost; article 87's attempts in batch.log and the requests the
 * fake API saw with its Idempotency-Key (:'key_stats', for :'key87'); the
 * operator's actions; and one finished article.  Read-only.  Run by
 * demo/run.sh with psql -q.
 */

SELECT b.id AS batch_id, b.pipeline_id,
	   (SELECT min(e.created_at) FROM batch.events e
		WHERE e.batch_id = b.id AND e.event = 'retry_failed') AS requeued_at
FROM batch.batches b WHERE b.name = 'demo_batch' \gset

\echo 'batch.progress:'
SELECT p.status, p.total, p.completed, p.pending, p.running, p.failed, p.completion_ratio,
	   round(extract(epoch FROM p.finished_at - p.started_at), 1) AS elapsed_s
FROM batch.progress p WHERE p.id = :batch_id;
SELECT format('%s of %s articles completed, %s failed.', p.completed, p.total, p.failed) AS msg
FROM batch.progress p WHERE p.id = :batch_id \gset
\echo :msg
\echo

-- the batch's HTTP requests: attempts that got an HTTP status back
CREATE TEMP VIEW requests AS
SELECT a.*, a.started_at < :'requeued_at'::timestamptz AS first_pass
FROM batch.attempts a
WHERE a.batch_id = :batch_id AND a.http_status IS NOT NULL;

\echo 'HTTP requests spent, per stage (batch.attempts with an http_status):'
WITH per_stage AS (
	SELECT s.position, s.name AS stage,
		   count(r.id) FILTER (WHERE r.http_status BETWEEN 200 AND 299) AS ok,
		   count(r.id) FILTER (WHERE r.http_status = 429) AS "429",
		   count(r.id) FILTER (WHERE r.http_status = 504) AS "504",
		   count(r.id) FILTER (WHERE r.http_status = 400) AS "400",
		   count(r.id) FILTER (WHERE r.first_pass) AS first_pass,
		   count(r.id) FILTER (WHERE NOT r.first_pass) AS after_retry_failed,
		   count(r.id) AS requests
	FROM batch.stages s
	LEFT JOIN requests r ON r.stage = s.name
	WHERE s.pipeline_id = :pipeline_id
	GROUP BY s.position, s.name
)
SELECT stage, ok, "429", "504", "400", first_pass, after_retry_failed, requests
FROM (SELECT * FROM per_stage
	  UNION ALL
	  SELECT 99, 'total', sum(ok), sum("429"), sum("504"), sum("400"), sum(first_pass),
			 sum(after_retry_failed), sum(requests)
	  FROM per_stage) t
ORDER BY position;

\echo 'Cross-check, per HTTP status: batch.attempts against the fake API''s own count (GET /_stats):'
WITH ours AS (
	SELECT http_status::text AS status, count(*) AS n FROM requests GROUP BY 1
), theirs AS (
	SELECT s.key AS status, s.value::bigint AS n
	FROM jsonb_each_text(:'api_stats'::jsonb -> 'status') s
), t AS (
	SELECT coalesce(o.status, f.status) AS http_status, coalesce(o.n, 0) AS "batch.attempts",
		   coalesce(f.n, 0) AS fake_api
	FROM ours o FULL JOIN theirs f USING (status)
)
SELECT * FROM (SELECT * FROM t ORDER BY http_status) t1
UNION ALL
SELECT 'total', sum("batch.attempts"), sum(fake_api) FROM t;

SELECT (SELECT count(*) FROM requests) AS requests_made,
	   (SELECT count(*) FROM requests WHERE first_pass) AS first_pass,
	   (:'api_stats'::jsonb ->> 'total')::bigint AS api_total,
	   (SELECT requests FROM batch.endpoint_status WHERE name = 'llm') AS endpoint_requests,
	   (SELECT count(*) FROM app.articles) AS articles,
	   (SELECT count(*) FROM batch.stages WHERE pipeline_id = :pipeline_id) AS stages
\gset
SELECT CASE WHEN :requests_made = :api_total AND :requests_made = :endpoint_requests
			THEN format('They agree: %s requests (batch.endpoint_status counts %s as well).',
						:requests_made, :endpoint_requests)
			ELSE format('MISMATCH: batch.attempts %s, fake API %s, batch.endpoint_status %s.',
						:requests_made, :api_total, :endpoint_requests)
	   END AS msg \gset
\echo :msg

\echo
\echo 'Tokens and cost per stage (batch.costs: the usage the answers reported, at 0.60 per 1,000 tokens):'
SELECT stage, tokens, cost, retried_tokens AS "tokens of retried stages", retry_failed_calls,
	   saved_tokens AS "tokens retry_failed saved", saved_cost
FROM (SELECT c.*, s.position FROM batch.costs c
	  JOIN batch.stages s ON s.pipeline_id = :pipeline_id AND s.name = c.stage
	  WHERE c.batch_id = :batch_id
	  UNION ALL
	  SELECT c.batch_id, c.batch, 'total', NULL, sum(c.tokens), sum(c.cost), sum(c.retried_tokens),
			 sum(c.retried_cost), max(c.retry_failed_calls), sum(c.saved_tokens), sum(c.saved_cost), 99
	  FROM batch.costs c WHERE c.batch_id = :batch_id GROUP BY c.batch_id, c.batch) t
ORDER BY position;

\echo
\echo 'What the batch cost, against rerunning it all after the failure:'
SELECT 'pgbatch: retry only what failed, where it failed' AS approach,
	   :requests_made::bigint AS http_requests,
	   format('%s in the first pass + %s after retry_failed',
			  :first_pass, :requests_made - :first_pass) AS how
UNION ALL
SELECT 'rerun the whole batch after the first pass', :first_pass + :articles * :stages,
	   format('%s + %s articles x %s stages again', :first_pass, :articles, :stages)
UNION ALL
SELECT 'rerun everything, the naive estimate', 2 * :articles * :stages,
	   format('%s articles x %s stages x 2 runs', :articles, :stages);
SELECT format('Requests saved: %s of %s (%s%%) -- and that assumes the rerun itself went clean.',
			  :first_pass + :articles * :stages - :requests_made,
			  :first_pass + :articles * :stages,
			  round(100.0 * (:first_pass + :articles * :stages - :requests_made)
					/ (:first_pass + :articles * :stages))) AS msg \gset
\echo :msg

\echo
\echo 'The transient failures, and when each stage was tried again: not before its backoff'
\echo '(300 ms x 2^n, +/- 20%) or the Retry-After (1 s), then in turn for one of the 8 request slots:'
SELECT i.key, r.stage, r.attempt, r.http_status AS http, r.error_code,
	   coalesce(substring(r.response_body FROM '"type"\s*:\s*"([^"]*)"'), '-') AS api_error,
	   to_char(r.finished_at, 'HH24:MI:SS.MS') AS answered,
	   coalesce(round(extract(epoch FROM nxt.started_at - r.finished_at), 2)::text || ' s',
				'(failed)') AS next_attempt_after
FROM requests r
JOIN batch.items i ON i.id = r.item_id
LEFT JOIN LATERAL (
	SELECT n.started_at FROM batch.attempts n
	WHERE n.item_id = r.item_id AND n.stage = r.stage AND n.started_at > r.started_at
	ORDER BY n.started_at LIMIT 1
) nxt ON r.outcome = 'retry'
WHERE r.outcome <> 'completed' AND r.error_code IN ('http_429', 'http_504')
ORDER BY i.key, r.started_at;

\echo 'batch.log for article-087, rate limited past its retry budget at the last stage:'
SELECT to_char(l.started_at, 'HH24:MI:SS.MS') AS started, l.stage, l.attempt, l.event, l.http_status AS http, l.error_code, round(l.duration_ms) AS ms,
	   coalesce(l.message, '') AS message
FROM batch.log l
JOIN batch.items i ON i.id = l.item_id
WHERE i.batch_id = :batch_id AND i.key = 'article-087'
ORDER BY l.started_at, l.stage NULLS LAST;

SELECT format(E'The fake API saw %s requests with Idempotency-Key %s, answered %s:\n'
			  'every retry, even the one after retry_failed, carried the same key.',
			  k.value ->> 'n', k.key,
			  (SELECT string_agg(r ->> 1, ', ' ORDER BY o)
			   FROM jsonb_array_elements(k.value -> 'requests') WITH ORDINALITY AS x(r, o)))
	   AS msg
FROM jsonb_each(:'key_stats'::jsonb -> 'keys') k \gset
\echo :msg

\echo
\echo 'batch.log, the operator''s actions (rows without a stage):'
SELECT to_char(l.started_at, 'HH24:MI:SS.MS') AS at, l.item_id, l.event, l.message
FROM batch.log l
WHERE l.batch_id = :batch_id AND l.stage IS NULL
ORDER BY l.started_at;

\echo 'One finished article, article-087, from batch.outputs (the API''s answer to each stage):'
SELECT s.position, o.stage, o.output ->> 'model' AS model,
	   (o.output -> 'usage' ->> 'total_tokens')::integer AS tokens,
	   left(app.reply(jsonb_build_object(o.stage, o.output), o.stage), 80) AS reply
FROM batch.outputs o
JOIN batch.items i ON i.id = o.item_id
JOIN batch.stages s ON s.pipeline_id = :pipeline_id AND s.name = o.stage
WHERE i.batch_id = :batch_id AND i.key = 'article-087'
ORDER BY s.position;

\echo 'Its final CTA and SEO metadata, as the API sent it back (batch.outputs, stage seo):'
\pset format unaligned
\pset tuples_only on
SELECT jsonb_pretty(o.output) AS output
FROM batch.outputs o
JOIN batch.items i ON i.id = o.item_id
WHERE i.batch_id = :batch_id AND i.key = 'article-087' AND o.stage = 'seo';
\pset format aligned
\pset tuples_only off
