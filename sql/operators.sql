--
-- operators: batch.rerun_stage() re-queues a batch from a stage on, keeping
-- the earlier stages' outputs; batch.set_stage_cost() and batch.costs add up
-- the tokens the stages' outputs report, what retries cost, and what
-- batch.retry_failed() saved against rerunning the whole batch;
-- batch.metrics exposes counters and gauges for monitoring.
--
CREATE SCHEMA ops;
-- three stages reporting usage like an LLM API; 'draft' fails while the gate is closed
CREATE TABLE ops.gate (open boolean NOT NULL);
INSERT INTO ops.gate VALUES (false);
CREATE FUNCTION ops.outline(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('text', 'outline ' || (p ->> 'n'), 'usage', jsonb_build_object('total_tokens', 100)) $$;
CREATE FUNCTION ops.draft(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF (p ->> 'n')::int % 2 = 0 AND NOT (SELECT g.open FROM ops.gate g) THEN
		RAISE EXCEPTION 'the draft model is down';
	END IF;
	RETURN jsonb_build_object('text', 'draft of ' || (o -> 'outline' ->> 'text'),
							  'usage', jsonb_build_object('total_tokens', 1000));
END $$;
CREATE FUNCTION ops.voice(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('text', 'voiced ' || (o -> 'draft' ->> 'text') || coalesce(' ' || current_setting('ops.style', true), ''),
								'usage', jsonb_build_object('total_tokens', 10)) $$;
SELECT batch.create_pipeline('ops', '[{"name": "outline", "sql": "ops.outline"},
	{"name": "draft", "sql": "ops.draft"}, {"name": "voice", "sql": "ops.voice"}]',
	retry => '{"max_retries": 0}') > 0 AS created;
SELECT batch.set_stage_cost('ops', 'outline', 'usage.total_tokens', 0.5);
SELECT batch.set_stage_cost('ops', 'draft', 'usage.total_tokens', 2);
SELECT batch.set_stage_cost('ops', 'voice', 'usage.total_tokens');
SELECT batch.set_stage_cost('ops', 'nosuch', 'usage.total_tokens', 1);
SELECT batch.set_stage_cost('ops', 'draft', 'usage..x', 1);
SELECT batch.set_stage_cost('ops', 'draft', 'usage.total_tokens', -1);

-- four items; the even ones fail at draft, then are retried and complete
SELECT batch.submit('ops', '[{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]', name => 'ops1') AS ops1 \gset
SELECT items_completed, items_failed FROM batch.run('ops1');
SELECT stage, tokens, cost, retried_tokens, retry_failed_calls, saved_tokens, saved_cost
FROM batch.costs WHERE batch = 'ops1' ORDER BY stage;
UPDATE ops.gate SET open = true;
SELECT batch.retry_failed('ops1');
SELECT items_completed FROM batch.run('ops1');
-- the retry paid for two drafts and two voice passes; a rerun of the whole
-- batch would have paid again for the four outlines, two drafts and two
-- voice passes that existed when retry_failed ran
SELECT stage, price_per_1k_tokens, tokens, cost, retried_tokens, retried_cost,
	   retry_failed_calls, saved_tokens, saved_cost
FROM batch.costs WHERE batch = 'ops1' ORDER BY stage;

-- rerun the voice pass with a new style: earlier outputs kept, voice redone
SET ops.style = 'v2';
SELECT batch.rerun_stage('ops1', 'voice');
SELECT status, stage, attempt, count(*) FROM batch.items WHERE batch_id = :ops1
GROUP BY status, stage, attempt;
SELECT count(*) AS outputs_left, count(*) FILTER (WHERE o.stage = 'voice') AS voice_left
FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id WHERE i.batch_id = :ops1;
SELECT items_completed FROM batch.run('ops1');
SELECT DISTINCT o.output ->> 'text' LIKE '% v2' AS new_style, i.status
FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
WHERE i.batch_id = :ops1 AND o.stage = 'voice';
SELECT count(*) AS outlines_kept FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
WHERE i.batch_id = :ops1 AND o.stage = 'outline' AND o.output ->> 'text' LIKE 'outline %';
SELECT event, detail FROM batch.events WHERE batch_id = :ops1 AND event = 'stage_rerun';
RESET ops.style;

-- from an earlier stage: the items go back there, later outputs dropped
SELECT batch.rerun_stage(:ops1, 'draft');
SELECT string_agg(DISTINCT o.stage, ',') AS outputs_kept FROM batch.outputs o
JOIN batch.items i ON i.id = o.item_id WHERE i.batch_id = :ops1;
SELECT items_completed FROM batch.run('ops1');
-- items that have not reached the stage are left alone
SELECT batch.submit('ops', '[{"n": 5}]', name => 'ops2') AS ops2 \gset
SELECT batch.rerun_stage('ops2', 'voice');
SELECT status, stage FROM batch.items WHERE batch_id = :ops2;
-- errors
SELECT batch.rerun_stage('ops1', 'nosuch');
SELECT batch.rerun_stage('nosuch', 'voice');
SELECT batch.cancel('ops2');
SELECT batch.rerun_stage('ops2', 'voice');

-- metrics
SELECT metric, kind, batch, stage, state, outcome, code, value FROM batch.metrics
WHERE batch = 'ops1' AND metric IN ('pgbatch_items', 'pgbatch_attempts_total')
ORDER BY metric, stage NULLS FIRST, state, outcome;
SELECT count(*) = 3 AS three_quantiles_per_stage FROM batch.metrics
WHERE batch = 'ops1' AND metric = 'pgbatch_attempt_duration_seconds' AND stage = 'draft';
SELECT metric, endpoint IS NOT NULL AS per_endpoint FROM batch.metrics
WHERE metric LIKE 'pgbatch_endpoint%' GROUP BY 1, 2 ORDER BY 1;

-- set_owner() by id too
SELECT batch.set_owner(:ops1, current_user);

-- set_priority(): by name and by id, bounded, logged once per change
SELECT batch.set_priority('ops1', 5);
SELECT batch.set_priority(:ops1, 5);
SELECT priority FROM batch.batches WHERE name = 'ops1';
SELECT event, message, detail FROM batch.events
WHERE batch_id = :ops1 AND event = 'priority_changed' ORDER BY id;
SELECT batch.set_priority('ops1', 1001);
SELECT batch.set_priority('ops1', NULL);
SELECT batch.set_priority(NULL::bigint, 1);
SELECT batch.set_priority('no_such_batch', 1);

-- roles: readers see the costs of the batches they see (monitors: of all),
-- never the outputs behind them; operators rerun their own batches
CREATE ROLE regress_ops_reader IN ROLE pgbatch_reader;
CREATE ROLE regress_ops_monitor IN ROLE pgbatch_monitor;
CREATE ROLE regress_ops_op IN ROLE pgbatch_operator;
SET ROLE regress_ops_reader;
SELECT count(*) FROM batch.metrics WHERE batch = 'ops1';
SELECT * FROM batch.costs;
-- a condition of the reader's own that prints what it is given is shown no
-- batch the reader may not see
CREATE FUNCTION pg_temp.leak(t text) RETURNS boolean LANGUAGE plpgsql COST 0.0000001 AS $$
BEGIN
	RAISE NOTICE 'leaked %', t;
	RETURN true;
END $$;
SELECT count(*) FROM batch.costs WHERE pg_temp.leak(batch_id::text);
DROP FUNCTION pg_temp.leak(text);
SELECT batch.rerun_stage('ops1', 'voice');
SELECT batch.set_priority('ops1', 9);
SET ROLE regress_ops_monitor;
SELECT batch, stage, tokens, cost FROM batch.costs WHERE batch = 'ops1' ORDER BY stage;
SELECT stage, outcome, sum(attempts) AS attempts, sum(items_completed) AS items_completed
FROM batch.throughput WHERE batch = 'ops1' GROUP BY stage, outcome ORDER BY stage, outcome;
SELECT name, position FROM batch.stages WHERE pipeline_id = (SELECT id FROM batch.pipelines WHERE name = 'ops') ORDER BY position;
SELECT count(*) FROM batch.outputs;
SELECT count(*) FROM batch.results;
RESET ROLE;
-- a batch's results: every output with its item's key
SELECT key, stage, output ->> 'text' AS text FROM batch.results WHERE batch = 'ops1'
ORDER BY stage, text LIMIT 6;
SELECT (SELECT count(*) FROM batch.results WHERE batch = 'ops1')
	 = (SELECT count(*) FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
		JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'ops1') AS every_output;
SET ROLE regress_ops_op;
SELECT batch.rerun_stage('ops1', 'voice');
SELECT batch.set_priority('ops1', 9);
SELECT count(*) FROM batch.costs;
RESET ROLE;
SELECT priority FROM batch.batches WHERE name = 'ops1';
-- one statement that changes more items than the queue's trigger writes in
-- one chunk (10,000): every queue row follows
SELECT batch.submit('ops', (SELECT jsonb_agg(jsonb_build_object('n', g))
	FROM generate_series(1, 25000) g), name => 'ops_big') AS ops_big \gset
SELECT batch.cancel('ops_big') AS cancelled;
SELECT status, count(*) FROM batch.queue WHERE batch_id = :ops_big GROUP BY status;
DROP ROLE regress_ops_reader, regress_ops_monitor, regress_ops_op;
DROP SCHEMA ops CASCADE;

-- batch.queue holds a row for every item, with the item's state, after
-- everything the tests above did to them
SELECT count(*) AS queue_mismatches
FROM batch.items i FULL JOIN batch.queue q ON q.item_id = i.id
WHERE (q.batch_id, q.status, q.stage, q.next_due, q.error_code)
	  IS DISTINCT FROM (i.batch_id, i.status, i.stage, i.next_due, i.error_code);
SELECT count(*) > 0 AS queue_has_rows FROM batch.queue;
