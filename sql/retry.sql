--
-- retry: retry_failed re-queues only failed items, at the stage where they
-- failed, with earlier outputs intact; error-code and stage filters; the
-- advisory lock; the per-item policy overrides.
--
SELECT app.add_fault('r-draft-1', 'draft', 'permanent');
SELECT app.add_fault('r-draft-2', 'draft', 'permanent');
SELECT app.add_fault('r-seo', 'seo', 'permanent');
SELECT app.add_fault('r-outline', 'outline', 'division');

SELECT batch.submit('article', '[
  {"topic": "r-ok-1"}, {"topic": "r-draft-1"}, {"topic": "r-ok-2"}, {"topic": "r-draft-2"},
  {"topic": "r-seo"}, {"topic": "r-outline"}, {"topic": ""}]', name => 'b_retry') AS bid \gset
SELECT stages_run, items_completed, items_failed FROM batch.run('b_retry');

SELECT payload->>'topic' AS topic, status, stage, error_code FROM batch.items
WHERE batch_id = :bid ORDER BY id;

-- remember the completed items' rows and every output before retrying
CREATE TEMP TABLE before_items AS SELECT id, xmin::text AS x, status, updated_at FROM batch.items WHERE batch_id = :bid;
CREATE TEMP TABLE before_outputs AS SELECT o.* FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id WHERE i.batch_id = :bid;

-- only the draft failures (by stage filter), and nothing else
SELECT batch.retry_failed('b_retry', stage => 'draft');
SELECT payload->>'topic' AS topic, status, stage, attempt, error_code FROM batch.items
WHERE batch_id = :bid ORDER BY id;

-- their outline output is still there, and so is every other output
SELECT count(*) AS outputs_lost FROM before_outputs b
WHERE NOT EXISTS (SELECT FROM batch.outputs o WHERE o.item_id = b.item_id AND o.stage = b.stage AND o.output = b.output);
-- completed items were not touched at all
SELECT count(*) AS completed_touched FROM before_items b JOIN batch.items i USING (id)
WHERE b.status = 'completed' AND (i.xmin::text <> b.x OR i.updated_at <> b.updated_at);

-- by error code
SELECT batch.retry_failed('b_retry', error_codes => '{division_by_zero}');
SELECT payload->>'topic' AS topic, status, stage FROM batch.items
WHERE batch_id = :bid AND payload->>'topic' = 'r-outline';
-- codes that match nothing
SELECT batch.retry_failed('b_retry', error_codes => '{no_such_code}');

-- the faults are fixed: the re-queued items finish, running only the failed stage on
DELETE FROM app.faults WHERE topic IN ('r-draft-1', 'r-draft-2', 'r-outline');
SELECT stages_run, items_completed, items_failed FROM batch.run('b_retry');
SELECT c.topic, c.stage, count(*) FROM app.calls c WHERE c.topic LIKE 'r-%' GROUP BY 1, 2 ORDER BY 1, 2;

-- the draft stage of a retried item saw the outline output kept from before
SELECT outputs FROM app.calls WHERE topic = 'r-draft-1' AND stage = 'draft';

-- all the rest: r-seo is still failing, the blank topic is still invalid and stays failed
SELECT batch.retry_failed('b_retry', max_retries => 0, backoff_factor => 3);
SELECT payload->>'topic' AS topic, status, stage, attempt, max_retries, backoff_factor, error_code
FROM batch.items WHERE batch_id = :bid AND status <> 'completed' ORDER BY id;
SELECT stages_run, items_failed FROM batch.run('b_retry');

-- the override applies: with max_retries 0 a transient error fails at once
SELECT app.add_fault('r-once', 'outline', 'transient');
SELECT batch.add_items('b_retry', '[{"topic": "r-once"}]');
SELECT retries_scheduled FROM batch.run('b_retry');
UPDATE batch.items SET next_due = now() WHERE batch_id = :bid AND status = 'pending';
SELECT retries_scheduled FROM batch.run('b_retry');
UPDATE batch.items SET next_due = now() WHERE batch_id = :bid AND status = 'pending';
SELECT retries_scheduled FROM batch.run('b_retry');
UPDATE batch.items SET next_due = now() WHERE batch_id = :bid AND status = 'pending';
SELECT retries_scheduled, items_failed FROM batch.run('b_retry');
SELECT batch.retry_failed('b_retry', max_retries => 0, error_codes => '{retry_requested}');
SELECT retries_scheduled, items_failed FROM batch.run('b_retry');

-- the advisory lock: a concurrent call is tested in test/t/; here the lock is
-- shown to be transaction-scoped (nothing is left held after the call)
SELECT batch.retry_failed('b_retry', stage => 'seo') AS first_call;
SELECT count(*) AS locks_left FROM pg_locks WHERE locktype = 'advisory' AND classid = 1346847297;

-- errors
SELECT batch.retry_failed('b_retry', stage => 'nosuch');
SELECT batch.retry_failed('b_retry', max_retries => -2);
SELECT batch.retry_failed('b_retry', backoff_factor => 0.5);
SELECT batch.retry_failed('nosuch');
SELECT batch.retry_failed(NULL::bigint);

-- every retry_failed call that did something is in the log, with who asked
SELECT event, message, detail FROM batch.events WHERE batch_id = :bid AND event = 'retry_failed' ORDER BY id;
SELECT count(*) FILTER (WHERE actor = current_user) = count(*) AS actor_recorded
FROM batch.events WHERE batch_id = :bid;

-- the plan can walk the queue's index of failed items, not the batch (on a
-- table this small a sequential scan may cost less, so it is ruled out here)
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) UPDATE batch.items i SET status = 'pending'
FROM batch.queue q
WHERE q.batch_id = 1 AND q.status = 'failed' AND q.stage = 'draft'
  AND i.id = q.item_id AND i.status = 'failed';
RESET enable_seqscan;

-- the queue's indexes: due items per batch only.  With one across batches
-- too, a plan made on statistics taken while nothing was due could walk it
-- for a claim of one batch, through every due item of the batches before.
SELECT c.relname AS index, pg_get_indexdef(i.indexrelid) ~ 'batch_id' AS per_batch,
	   pg_get_expr(i.indpred, i.indrelid) AS predicate
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
WHERE i.indrelid = 'batch.queue'::regclass ORDER BY c.relname;

-- a state change of an item touches no index of batch.items: it is a HOT
-- update (the state's indexes are on batch.queue)
BEGIN;
UPDATE batch.items i SET status = 'pending', stage = 'draft', attempt = 0,
	next_due = now(), error_code = NULL, error_message = NULL, finished_at = NULL
WHERE i.batch_id = 1 AND i.status = 'failed';
SELECT n_tup_upd > 0 AS updated, n_tup_hot_upd = n_tup_upd AS all_hot
FROM pg_stat_xact_user_tables WHERE relid = 'batch.items'::regclass;
SELECT count(*) AS queue_rows_pending FROM batch.queue q
WHERE q.batch_id = 1 AND q.status = 'pending';
ROLLBACK;
