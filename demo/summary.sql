/* demo/summary.sql - the end state of demo_batch and what it cost.
 *
 * Shows the final batch.progress row, the API calls spent per stage (from
 * the app's own counters, cross-checked against pgbatch's attempt log),
 * what rerunning the whole batch after the first failure would have cost,
 * and a few rows of batch.log.  Read-only.  Run by demo/run.sh with psql -q.
 */

SELECT id AS batch_id FROM batch.batches WHERE name = 'demo_batch' \gset

\echo 'batch.progress:'
SELECT p.status, p.total, p.completed, p.pending, p.failed, p.completion_ratio,
	   round(extract(epoch FROM p.finished_at - p.started_at), 1) AS elapsed_s
FROM batch.progress p WHERE p.name = 'demo_batch';
SELECT format('%s of %s articles completed, %s failed.', p.completed, p.total, p.failed) AS msg
FROM batch.progress p WHERE p.name = 'demo_batch' \gset
\echo :msg
\echo

\echo 'API calls spent, per stage (succeeded: app.api_calls; failed: batch.log):'
WITH ok AS (
	SELECT stage, count(*) AS n FROM app.api_calls GROUP BY stage
), bad AS (
	SELECT l.stage, count(*) AS n
	FROM batch.log l
	WHERE l.batch_id = :batch_id AND l.event IN ('stage_retry', 'stage_failed')
	GROUP BY l.stage
), per_stage AS (
	SELECT s.position, s.name AS stage, coalesce(ok.n, 0) AS succeeded,
		   coalesce(bad.n, 0) AS failed
	FROM batch.stages s
	LEFT JOIN ok ON ok.stage = s.name
	LEFT JOIN bad ON bad.stage = s.name
	WHERE s.pipeline_id = (SELECT pipeline_id FROM batch.batches WHERE id = :batch_id)
)
SELECT stage, succeeded, failed, succeeded + failed AS calls
FROM (SELECT position, stage, succeeded, failed FROM per_stage
	  UNION ALL
	  SELECT 99, 'total', sum(succeeded), sum(failed) FROM per_stage) t
ORDER BY position;

SELECT (SELECT last_value FROM app.api_call_no) AS calls_made,
	   (SELECT count(*) FROM app.articles) AS articles,
	   (SELECT count(*) FROM batch.stages
		WHERE pipeline_id = (SELECT pipeline_id FROM batch.batches WHERE id = :batch_id)) AS stages
\gset
SELECT format('Cross-check: the app made %s calls (its sequence); batch.log holds %s stage attempts.',
			  :calls_made,
			  (SELECT count(*) FROM batch.log l
			   WHERE l.batch_id = :batch_id AND l.stage IS NOT NULL)) AS msg \gset
\echo :msg

\echo
\echo 'What the batch cost, against the old script that reran everything after the first failure:'
SELECT 'pgbatch: retry only what failed, where it failed' AS approach,
	   :calls_made::bigint AS api_calls,
	   format('%s that succeeded + %s 429s, 504s and 400s',
			  (SELECT count(*) FROM app.api_calls),
			  :calls_made - (SELECT count(*) FROM app.api_calls)) AS how
UNION ALL
SELECT 'old script: rerun the whole batch once', 2 * :articles * :stages,
	   format('%s articles x %s stages x 2 runs', :articles, :stages);
SELECT format('Calls saved: %s of %s (%s%%), and that assumes the rerun itself went clean.',
			  2 * :articles * :stages - :calls_made, 2 * :articles * :stages,
			  round(100.0 * (2 * :articles * :stages - :calls_made) / (2 * :articles * :stages))) AS msg \gset
\echo :msg

\echo
\echo 'batch.log for article-087, which outlasted its retry budget at the last stage:'
SELECT to_char(l.started_at, 'HH24:MI:SS.MS') AS at, l.stage, l.attempt, l.level,
	   l.event, l.error_code, left(l.message, 58) AS message
FROM batch.log l
JOIN batch.items i ON i.id = l.item_id
WHERE i.batch_id = :batch_id AND i.key = 'article-087'
ORDER BY l.started_at, l.stage NULLS LAST;

\echo 'batch.log, the operator''s actions (rows without a stage):'
SELECT to_char(l.started_at, 'HH24:MI:SS.MS') AS at, l.item_id, l.event, l.message
FROM batch.log l
WHERE l.batch_id = :batch_id AND l.stage IS NULL
ORDER BY l.started_at;

\echo 'One finished article, from batch.outputs:'
SELECT o.stage, o.output
FROM batch.outputs o
JOIN batch.items i ON i.id = o.item_id
WHERE i.batch_id = :batch_id AND i.key = 'article-087'
ORDER BY o.created_at;
