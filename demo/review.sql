/* demo/review.sql - what went wrong in demo_batch, as an operator sees it.
 *
 * batch.errors groups the failed items by stage and error code;
 * batch.review_queue lists them one by one; batch.attempts keeps what the
 * API answered to each failed request.  Read-only.  Run by demo/run.sh with
 * psql -q.
 */

\echo 'batch.errors -- failed items grouped by stage and error code:'
SELECT e.stage, e.error_code, e.items, e.sample_error
FROM batch.errors e
WHERE e.batch = 'demo_batch'
ORDER BY e.items DESC, e.stage, e.error_code;

\echo 'batch.review_queue -- the failed items, with what the API answered last (batch.attempts):'
SELECT q.item_id, coalesce(q.key, '(none)') AS key, q.stage, q.error_code, q.attempts,
	   coalesce(nullif(concat_ws(' ', a.http_status,
								 substring(a.response_body FROM '"type"\s*:\s*"([^"]*)"')), ''),
				'-') AS api_answer,
	   q.error
FROM batch.review_queue q
JOIN batch.batches b ON b.id = q.batch_id
LEFT JOIN LATERAL (
	SELECT a.http_status, a.response_body
	FROM batch.attempts a
	WHERE a.item_id = q.item_id AND a.stage = q.stage
	ORDER BY a.attempt DESC LIMIT 1
) a ON true
WHERE b.name = 'demo_batch'
ORDER BY q.item_id;

\echo 'The payloads of the malformed items:'
SELECT q.item_id, q.payload
FROM batch.review_queue q
JOIN batch.batches b ON b.id = q.batch_id
WHERE b.name = 'demo_batch' AND q.error_code = 'invalid_input'
ORDER BY q.item_id;
