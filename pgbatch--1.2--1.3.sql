/* pgbatch--1.2--1.3.sql
 *
 * Operators' tools: rerunning a batch from a stage on, what each stage
 * costs (tokens reported by the API and a price), metrics for monitoring,
 * and the batch_finished event of batches whose end no executor saw.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pgbatch UPDATE TO '1.3'" to load this file. \quit

/* ------------------------------------------------------------------------
 * Stage reruns
 * ------------------------------------------------------------------------ */

/*
 * Re-queues every item of a batch from the given stage on (a new prompt for
 * the voice pass, say): items that reached or passed the stage go back to
 * pending at it, attempts reset, and the outputs of that stage and the later
 * ones are dropped; earlier stages' outputs are kept, and items that have not
 * reached the stage yet are left alone, as are running and cancelled items.
 * Guarded like retry_failed by the transaction-scoped advisory lock
 * (1346847297, batch id): a concurrent call returns 0 with a NOTICE.
 * Returns how many items were re-queued.
 */
CREATE FUNCTION batch.rerun_stage(batch bigint, stage text) RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bid bigint := batch._batch_id(batch);
	b record;
	pos integer;
	later text[];
	n bigint;
	skipped bigint;
BEGIN
	SELECT x.pipeline_id, x.cancelled_at, x.purged_at INTO b FROM batch.batches x WHERE x.id = bid;
	IF b.cancelled_at IS NOT NULL THEN
		RAISE EXCEPTION 'batch % is cancelled', bid
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Submit its items again as a new batch.';
	END IF;
	IF b.purged_at IS NOT NULL THEN
		RAISE EXCEPTION 'batch % was purged', bid
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'Its stage outputs were removed after pgbatch.retention, so no stage can run again on them.',
				  HINT = 'Submit its items again as a new batch.';
	END IF;
	SELECT s.position INTO pos FROM batch.stages s
	WHERE s.pipeline_id = b.pipeline_id AND s.name = rerun_stage.stage;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'stage "%" is not a stage of the pipeline of batch %', stage, bid
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT pg_try_advisory_xact_lock(1346847297, bid::integer) THEN
		RAISE NOTICE 'batch % is being re-queued by another transaction; nothing done', bid
			USING DETAIL = format('The advisory lock (1346847297, %s) is held.', bid::integer);
		RETURN 0;
	END IF;
	SELECT array_agg(s.name) INTO later FROM batch.stages s
	WHERE s.pipeline_id = b.pipeline_id AND s.position >= pos;

	WITH requeued AS (
		UPDATE batch.items i
		SET status = 'pending', stage = rerun_stage.stage, attempt = 0, next_due = clock_timestamp(),
			error_code = NULL, error_message = NULL, finished_at = NULL, updated_at = clock_timestamp()
		WHERE i.batch_id = bid AND i.status IN ('pending', 'completed', 'failed')
		  AND i.stage = ANY (later)
		RETURNING i.id
	), dropped AS (
		DELETE FROM batch.outputs o USING requeued r
		WHERE o.item_id = r.id AND o.stage = ANY (later)
	)
	SELECT count(*) INTO n FROM requeued;
	SELECT count(*) INTO skipped FROM batch.items i
	WHERE i.batch_id = bid AND i.status = 'running' AND i.stage = ANY (later);
	IF skipped > 0 THEN
		RAISE NOTICE '% running items were left alone', skipped
			USING HINT = 'Call batch.rerun_stage() again once they have finished.';
	END IF;
	INSERT INTO batch.events (batch_id, level, event, message, detail)
	VALUES (bid, 'info', 'stage_rerun',
			format('%s items re-queued at stage %s', n, stage),
			jsonb_build_object('items', n, 'stage', stage, 'running_left', skipped));
	RETURN n;
END
$$;

-- batch.set_owner() by batch id, as every function that takes a batch
CREATE FUNCTION batch.set_owner(batch bigint, owner name) RETURNS void
	LANGUAGE sql
	SET search_path = pg_catalog, pg_temp
	RETURN batch.set_owner((SELECT b.name FROM batch.batches b WHERE b.id = batch._batch_id(batch)), owner);

CREATE FUNCTION batch.rerun_stage(batch text, stage text) RETURNS bigint
	LANGUAGE sql
	SET search_path = pg_catalog, pg_temp
	RETURN batch.rerun_stage(batch._batch_id(batch), stage);

/* ------------------------------------------------------------------------
 * Costs
 * ------------------------------------------------------------------------ */

ALTER TABLE batch.stages
	ADD COLUMN usage_path text[],
	ADD COLUMN price_per_1k_tokens numeric CHECK (price_per_1k_tokens >= 0);
COMMENT ON COLUMN batch.stages.usage_path IS
	'where the stage output reports the tokens it used, e.g. {usage,total_tokens}';
COMMENT ON COLUMN batch.stages.price_per_1k_tokens IS
	'the price of 1,000 of those tokens, in the currency of your choice';

/*
 * Says where a stage's output reports its usage (a dotted path such as
 * 'usage.total_tokens', as in OpenAI's answers) and what 1,000 tokens cost;
 * batch.costs adds them up.  NULLs remove the setting.
 */
CREATE FUNCTION batch.set_stage_cost(pipeline text, stage text, tokens text,
	price_per_1k_tokens numeric DEFAULT NULL)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	upath text[];
BEGIN
	IF tokens IS NOT NULL THEN
		IF tokens !~ '^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$' THEN
			RAISE EXCEPTION 'tokens must be a dotted path such as ''usage.total_tokens'', not %', quote_literal(tokens)
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		upath := string_to_array(tokens, '.');
	END IF;
	IF price_per_1k_tokens < 0 THEN
		RAISE EXCEPTION 'price_per_1k_tokens must not be negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	UPDATE batch.stages s
	SET usage_path = upath, price_per_1k_tokens = set_stage_cost.price_per_1k_tokens
	FROM batch.pipelines p
	WHERE p.id = s.pipeline_id AND p.name = set_stage_cost.pipeline AND s.name = set_stage_cost.stage;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'pipeline "%" has no stage "%"', pipeline, stage
			USING ERRCODE = 'undefined_object';
	END IF;
END
$$;

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
 */
CREATE VIEW batch.costs WITH (security_invoker = true) AS
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
	WHERE s.usage_path IS NOT NULL
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
WHERE s.usage_path IS NOT NULL
GROUP BY b.id, b.name, s.name, s.position, s.price_per_1k_tokens;

/* ------------------------------------------------------------------------
 * Metrics
 * ------------------------------------------------------------------------ */

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

/* ------------------------------------------------------------------------
 * Events
 * ------------------------------------------------------------------------ */

ALTER TABLE batch.batches ADD COLUMN announced_at timestamptz;
COMMENT ON COLUMN batch.batches.announced_at IS
	'when the end of the batch was last announced to listeners (event batch_finished)';

/*
 * batch_finished for a batch whose end no one announced: the executors
 * announce an end as their statement makes it (and note it in announced_at),
 * but two of them ending a batch together may each not see the other's last
 * items.  Maintenance checks every batch once it has ended (counted_at is
 * set then); this trigger announces the end then if no one has.
 */
CREATE FUNCTION batch._announce_finished() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p record;
BEGIN
	SELECT x.status, x.finished_at INTO p FROM batch.progress x WHERE x.id = NEW.id;
	IF FOUND AND p.status IN ('completed', 'partial', 'failed', 'cancelled')
	   AND (NEW.announced_at IS NULL OR NEW.announced_at < p.finished_at) THEN
		NEW.announced_at := clock_timestamp();
		PERFORM pg_notify('pgbatch_events', json_build_object(
			'event', 'batch_finished', 'at', NEW.announced_at, 'batch_id', NEW.id,
			'status', p.status)::text);
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER batches_finished BEFORE UPDATE OF counted_at ON batch.batches
	FOR EACH ROW WHEN (NEW.counted_at IS NOT NULL)
	EXECUTE FUNCTION batch._announce_finished();

/* ------------------------------------------------------------------------
 * Scheduled submissions run as their owner only
 * ------------------------------------------------------------------------ */

/*
 * One run of a scheduled submission (what its pg_cron job calls): runs its
 * query and submits the rows as a new batch; returns the batch id, or NULL
 * when the query returned no rows.  Only as the schedule's owner, as its job
 * runs: the query is that role's SQL, and no one else's privileges (an
 * admin's, a superuser's) may run it.
 */
CREATE OR REPLACE FUNCTION batch.run_schedule(schedule_id integer) RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s batch.schedules;
	cur refcursor;
	r record;
	j jsonb;
	items jsonb[] := '{}';
	bid bigint;
BEGIN
	SELECT * INTO s FROM batch.schedules x WHERE x.id = schedule_id;
	IF FOUND AND s.owner <> current_user AND batch._can_see(s.owner) THEN
		RAISE EXCEPTION 'scheduled submission % belongs to role "%"', schedule_id, s.owner
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Its query runs with the privileges of whoever runs it, so only its owner may.',
				  HINT = format('Its pg_cron job runs it as %I; to run it by hand, SET ROLE %I first.', s.owner, s.owner);
	END IF;
	IF NOT FOUND OR NOT batch._can_act(s.owner) THEN
		RAISE EXCEPTION 'scheduled submission % does not exist', schedule_id
			USING ERRCODE = 'undefined_object';
	END IF;
	OPEN cur FOR EXECUTE s.query;
	LOOP
		FETCH cur INTO r;
		EXIT WHEN NOT FOUND;
		j := to_jsonb(r);
		IF (SELECT count(*) FROM jsonb_object_keys(j)) = 1 AND j ? 'item' THEN
			j := j -> 'item';
		END IF;
		items := items || j;
	END LOOP;
	CLOSE cur;
	IF cardinality(items) > 0 THEN
		bid := batch.submit(s.pipeline, to_jsonb(items),
							format('%s %s', s.name, to_char(clock_timestamp(), 'YYYY-MM-DD HH24:MI:SS.US')));
	END IF;
	UPDATE batch.schedules x SET last_run_at = clock_timestamp(), last_batch_id = coalesce(bid, x.last_batch_id)
	WHERE x.id = s.id;
	RETURN bid;
END
$$;

/* ------------------------------------------------------------------------
 * Privileges
 * ------------------------------------------------------------------------ */

REVOKE ALL ON batch.costs, batch.metrics FROM PUBLIC;
REVOKE ALL ON FUNCTION batch.rerun_stage(text, text), batch.rerun_stage(bigint, text),
	batch.set_owner(bigint, name), batch.run_schedule(integer),
	batch.set_stage_cost(text, text, text, numeric), batch._announce_finished()
	FROM PUBLIC;

GRANT SELECT ON batch.metrics TO pgbatch_reader;
GRANT SELECT ON batch.costs TO pgbatch_operator;
-- rerun_stage() drops the outputs it re-queues (the policies keep it to one's own)
GRANT DELETE ON batch.outputs TO pgbatch_operator;
-- batch.run() notes the ends it announces
GRANT UPDATE (announced_at) ON batch.batches TO pgbatch_operator;
GRANT EXECUTE ON FUNCTION batch.rerun_stage(text, text), batch.rerun_stage(bigint, text),
	batch.set_owner(bigint, name), batch.run_schedule(integer)
	TO pgbatch_operator;
GRANT EXECUTE ON FUNCTION batch.set_stage_cost(text, text, text, numeric) TO pgbatch_admin;
