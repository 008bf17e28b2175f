/* demo/fix.sql - repair what failed in demo_batch and re-queue it.
 *
 *   1. the three malformed rows get proper payloads (batch.update_item),
 *      taken from the editorial plan in app.articles;
 *   2. the editor lifts the ban that got the casino articles refused
 *      (modelling "we fixed the prompt");
 *   3. batch.retry_failed('demo_batch') re-queues every failed item at the
 *      stage where it failed; earlier stages' outputs are kept, so those
 *      requests are not paid for again.  Article 87 needs no fix: the rate
 *      limit that outlasted its retries has cleared by now.
 *
 * Step 3 runs in a transaction that also lists the re-queued items: the
 * executors are woken when it commits, and start on them at once.
 *
 * Run by demo/run.sh with psql -q.
 */

\echo '1. Fix the malformed rows with batch.update_item(item_id, payload):'
WITH fixed AS MATERIALIZED (
	SELECT q.item_id, q.payload AS was,
		   jsonb_build_object('key', a.key, 'topic', a.topic) AS now
	FROM batch.review_queue q
	JOIN batch.batches b ON b.id = q.batch_id
	JOIN app.articles a ON a.key = q.payload ->> 'key' OR a.topic = q.payload #>> '{}'
	WHERE b.name = 'demo_batch' AND q.error_code = 'invalid_input'
), applied AS MATERIALIZED (
	SELECT f.*, batch.update_item(f.item_id, f.now) FROM fixed f
)
SELECT item_id, now AS new_payload FROM applied ORDER BY item_id;

\echo '2. Lift the ban that got the casino articles refused ("fix the prompt"):'
UPDATE app.banned_topics SET active = false WHERE term = 'casino'
RETURNING term, reason, active;

\echo '3. Re-queue the failed items where they failed: SELECT batch.retry_failed(''demo_batch'')'
BEGIN;
SELECT batch.retry_failed('demo_batch') AS items_requeued;

\echo 'Where the re-queued items resume (the outputs of their earlier stages are kept):'
SELECT i.id AS item_id, coalesce(i.key, '(none)') AS key, i.status, i.stage AS resumes_at,
	   coalesce((SELECT string_agg(o.stage, ', ' ORDER BY s.position)
				 FROM batch.outputs o
				 JOIN batch.stages s ON s.name = o.stage AND s.pipeline_id = b.pipeline_id
				 WHERE o.item_id = i.id), '-') AS outputs_kept
FROM batch.items i
JOIN batch.batches b ON b.id = i.batch_id
WHERE b.name = 'demo_batch' AND i.status = 'pending'
ORDER BY i.id;
COMMIT;
