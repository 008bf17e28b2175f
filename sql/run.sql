--
-- run: executing stages in order, outputs passed along, transient versus
-- permanent errors, backoff, retries exhausted, stage timeouts.
--
SELECT app.add_fault('permanent', 'draft', 'permanent');
SELECT app.add_fault('division', 'outline', 'division');
SELECT app.add_fault('flaky', 'draft', 'transient', 1);
SELECT app.add_fault('deadlock', 'seo', 'deadlock', 1);
SELECT app.add_fault('serialization', 'outline', 'serialization', 1);
SELECT app.add_fault('lock', 'outline', 'lock', 1);
SELECT app.add_fault('resources', 'outline', 'resources', 1);
SELECT app.add_fault('hopeless', 'outline', 'transient');

SELECT batch.submit('article', '[
  {"topic": "good one"}, {"topic": "good two"}, {"topic": "permanent"}, {"topic": "division"},
  {"topic": "flaky"}, {"topic": "deadlock"}, {"topic": "serialization"}, {"topic": "lock"},
  {"topic": "resources"}, {"topic": "hopeless"}]', name => 'b_run') AS bid \gset

SELECT stages_run, items_completed, retries_scheduled, items_failed,
       next_due > now() AS next_due_later
FROM batch.run('b_run');

-- states after the first pass
SELECT payload->>'topic' AS topic, status, stage, attempt, error_code, error_message,
       next_due > now() AS waiting
FROM batch.items WHERE batch_id = :bid ORDER BY id;

-- stages ran in order and each saw the earlier outputs
SELECT topic, stage, outputs FROM app.calls WHERE topic = 'good one' ORDER BY stage DESC;
SELECT o.stage, o.output FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
WHERE i.payload->>'topic' = 'good one' ORDER BY o.created_at, o.stage DESC;

-- backoff: first retry waits backoff_base (2 s) +/- 20% jitter
SELECT i.payload->>'topic' AS topic,
       i.next_due - a.finished_at BETWEEN interval '1.6 s' AND interval '2.4 s' AS within_jitter
FROM batch.items i JOIN batch.attempts a ON a.item_id = i.id AND a.outcome = 'retry'
WHERE i.batch_id = :bid ORDER BY i.id;

-- nothing is due now: run returns at once and does nothing
SELECT stages_run, next_due > now() AS next_due_later FROM batch.run('b_run');

-- fast-forward the clock for the waiting items and run again
UPDATE batch.items SET next_due = now() - interval '1 s' WHERE batch_id = :bid AND status = 'pending';
SELECT stages_run, items_completed, retries_scheduled, items_failed FROM batch.run(:bid);

-- 'hopeless' fails transiently every time: the second retry waits 4 s +/- 20%
SELECT i.next_due - a.finished_at BETWEEN interval '3.2 s' AND interval '4.8 s' AS within_jitter
FROM batch.items i JOIN batch.attempts a ON a.item_id = i.id AND a.attempt = 2
WHERE i.batch_id = :bid AND i.payload->>'topic' = 'hopeless';

-- after max_retries (3) retries it fails for good, keeping its last error
UPDATE batch.items SET next_due = now() - interval '1 s' WHERE batch_id = :bid AND status = 'pending';
SELECT stages_run, retries_scheduled, items_failed FROM batch.run(:bid);
UPDATE batch.items SET next_due = now() - interval '1 s' WHERE batch_id = :bid AND status = 'pending';
SELECT stages_run, retries_scheduled, items_failed, next_due FROM batch.run(:bid);

SELECT payload->>'topic' AS topic, status, stage, attempt, error_code
FROM batch.items WHERE batch_id = :bid ORDER BY id;

SELECT a.stage, a.attempt, a.outcome, a.error_code, a.message FROM batch.attempts a
JOIN batch.items i ON i.id = a.item_id WHERE i.payload->>'topic' = 'hopeless' ORDER BY a.id;

-- a completed stage never ran again: one successful call per item and stage
SELECT topic, stage, count(*) FROM app.calls GROUP BY 1, 2 HAVING count(*) > 1;
SELECT count(*) AS successful_calls FROM app.calls;

-- the stage's writes commit exactly once with the item's advance: a rolled
-- back run leaves neither the calls nor the state change
SELECT batch.submit('article', '[{"topic": "rolled back"}]', name => 'b_rollback') AS rbid \gset
BEGIN;
SELECT items_completed FROM batch.run('b_rollback');
ROLLBACK;
SELECT count(*) FROM app.calls WHERE topic = 'rolled back';
SELECT status, stage, attempt FROM batch.items WHERE batch_id = :rbid;
SELECT count(*) FROM batch.attempts WHERE batch_id = :rbid;

-- max_items bounds the work
SELECT batch.submit('article', '[{"topic": "m1"}, {"topic": "m2"}, {"topic": "m3"}]', name => 'b_max') AS mbid \gset
SELECT stages_run, items_completed FROM batch.run('b_max', max_items => 2);
SELECT stages_run, items_completed FROM batch.run('b_max', max_seconds => 60);
SELECT batch.run('b_max', max_items => -1);

-- a stage that overruns its timeout is cancelled and retried (error code timeout)
SELECT app.add_fault('slow', 'outline', 'sleep', 1);
SELECT batch.submit('defaults', '[{"topic": "slow"}, {"topic": "quick"}]', name => 'b_timeout') AS tbid \gset
SELECT stages_run, items_completed, retries_scheduled FROM batch.run('b_timeout');
SELECT payload->>'topic' AS topic, status, attempt, error_code, error_message,
       next_due - updated_at BETWEEN interval '0.2 s' AND interval '0.3 s' AS backoff_ok
FROM batch.items WHERE batch_id = :tbid ORDER BY id;
-- the cancel did not leak into the rest of the session
SELECT 1 AS still_fine;

-- run without a batch runs every batch's due work
UPDATE batch.items SET next_due = now() WHERE batch_id = :tbid AND status = 'pending';
SELECT stages_run, items_completed FROM batch.run();
SELECT status, attempt FROM batch.items WHERE batch_id = :tbid ORDER BY id;

-- across batches it takes the due items in due order: each batch offers its
-- earliest (through its own part of the queue's due index) and the earliest
-- of all go first; here two at a time
CREATE TABLE app.ran (seq serial PRIMARY KEY, n integer NOT NULL);
CREATE FUNCTION app.log_n(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql AS
$$ INSERT INTO app.ran (n) VALUES ((p ->> 'n')::integer) RETURNING '{}'::jsonb $$;
SELECT batch.create_pipeline('logged', '[{"name": "l", "sql": "app.log_n"}]') > 0 AS created;
SELECT batch.submit('logged', '[{"n": 1}, {"n": 3}, {"n": 5}, {"n": 7}]', name => 'b_odd') AS obid \gset
SELECT batch.submit('logged', '[{"n": 2}, {"n": 4}, {"n": 6}]', name => 'b_even') AS ebid \gset
UPDATE batch.items SET next_due = now() - make_interval(secs => 100 - (payload ->> 'n')::integer)
WHERE batch_id IN (:obid, :ebid);
SET pgbatch.claim_batch_size = 2;
SELECT stages_run, items_completed FROM batch.run();
RESET pgbatch.claim_batch_size;
SELECT string_agg(n::text, ',' ORDER BY seq) AS ran_in_order FROM app.ran;

-- a stage function that was dropped fails the item permanently
CREATE FUNCTION app.temp_stage(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT '{}'::jsonb $$;
SELECT batch.create_pipeline('fragile', '[{"name": "t", "sql": "app.temp_stage"}]') > 0 AS created;
SELECT batch.submit('fragile', '[{"x": 1}]', name => 'b_fragile') AS fbid \gset
DROP FUNCTION app.temp_stage(jsonb, jsonb);
SELECT items_failed FROM batch.run('b_fragile');
SELECT status, error_code, error_message FROM batch.items WHERE batch_id = :fbid;
