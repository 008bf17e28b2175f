/* demo/diagnose.sql - what demo/run.sh prints when demo_batch does not finish
 * in time: the batch's counts, the items that are not completed, the
 * endpoint, the executors, and their sessions.  Read-only.
 */

\echo 'batch.progress:'
SELECT * FROM batch.progress WHERE name = 'demo_batch';

\echo 'Items not completed (at most 30):'
SELECT i.id, i.key, i.status, i.stage, i.attempt,
	   to_char(i.next_due, 'HH24:MI:SS.MS') AS next_due, i.claimed_by,
	   to_char(i.lease_until, 'HH24:MI:SS.MS') AS lease_until, i.error_code,
	   left(i.error_message, 60) AS error
FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id
WHERE b.name = 'demo_batch' AND i.status <> 'completed'
ORDER BY i.id LIMIT 30;

\echo 'batch.endpoint_status:'
SELECT * FROM batch.endpoint_status;

\echo 'batch.workers:'
SELECT * FROM batch.workers;

\echo 'pgbatch sessions (pg_stat_activity):'
SELECT pid, backend_type, datname, state, wait_event_type, wait_event, left(query, 60) AS query
FROM pg_stat_activity WHERE backend_type LIKE 'pgbatch%';

\echo 'The last 15 attempts:'
SELECT to_char(a.started_at, 'HH24:MI:SS.MS') AS started, a.item_id, a.stage, a.attempt,
	   a.outcome, a.http_status, a.error_code, left(a.message, 60) AS message
FROM batch.attempts a ORDER BY a.id DESC LIMIT 15;
