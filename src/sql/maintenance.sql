/*
 * src/sql/maintenance.sql
 *
 * Maintenance (admins): taking back items of executors that died, purging
 * the history after pgbatch.retention and keeping the counters honest, in
 * short steps that each commit.
 */

-- Takes back running items whose executor is gone or whose lease ran out.
CREATE FUNCTION batch_internal.reclaim(caller regrole) RETURNS bigint
	LANGUAGE c VOLATILE STRICT
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'pgbatch_reclaim_1_4';

/*
 * Purges, in one short transaction, up to 'chunk' rows of the attempt
 * history and outputs of the oldest batch that has been finished longer
 * than pgbatch.retention; marks the batch purged once nothing is left.
 * Returns how many rows went (0: nothing to purge).
 */
CREATE FUNCTION batch_internal.purge_step(caller regrole, chunk integer)
 RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	keep interval := (batch_internal.limits()).retention;
	bid bigint;
	n bigint;
	m bigint;
BEGIN
	IF keep <= interval '0' THEN
		RETURN 0;
	END IF;
	SELECT p.id INTO bid
	FROM batch.progress p
	JOIN batch.batches b ON b.id = p.id
	WHERE b.purged_at IS NULL
	  AND p.pending + p.running = 0
	  AND coalesce(p.finished_at, b.cancelled_at, b.created_at) < now() - keep
	ORDER BY p.id
	LIMIT 1;
	IF NOT FOUND THEN
		RETURN 0;
	END IF;

	DELETE FROM batch.attempts a
	WHERE a.ctid = ANY (ARRAY(SELECT x.ctid FROM batch.attempts x WHERE x.batch_id = bid LIMIT chunk));
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n < chunk THEN
		DELETE FROM batch.outputs o
		WHERE o.ctid = ANY (ARRAY(SELECT x.ctid FROM batch.items i
								  JOIN batch.outputs x ON x.item_id = i.id
								  WHERE i.batch_id = bid LIMIT chunk - n));
		GET DIAGNOSTICS m = ROW_COUNT;
		n := n + m;
	END IF;
	IF n < chunk THEN
		UPDATE batch.batches b SET purged_at = clock_timestamp() WHERE b.id = bid;
		INSERT INTO batch.events (batch_id, level, event, message, detail, actor)
		VALUES (bid, 'info', 'purged',
				format('attempt history and outputs purged: the batch finished more than %s ago', keep),
				jsonb_build_object('retention', keep::text), pg_get_userbyid(caller));
		n := n + 1;
	END IF;
	RETURN n;
END
$$;

/*
 * Keeps batch.counters honest, in one short transaction: drops the rows of
 * batches that are gone, folds the per-backend rows of batches idle for a
 * minute into one, and checks up to 'max_batches' finished batches against
 * their items, correcting (and logging) any difference.  Returns how many
 * batches it touched.
 */
CREATE FUNCTION batch_internal.counters_step(caller regrole, max_batches integer)
 RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint := 0;
	m bigint;
	cur record;
	cnt record;
BEGIN
	DELETE FROM batch.counters k
	WHERE NOT EXISTS (SELECT FROM batch.batches b WHERE b.id = k.batch_id);
	GET DIAGNOSTICS m = ROW_COUNT;
	n := n + m;

	-- one row per idle batch; the shards are backend ids, so 0 is free
	WITH idle AS (
		SELECT k.batch_id FROM batch.counters k
		GROUP BY k.batch_id
		HAVING count(*) > 1 AND max(k.updated_at) < now() - interval '1 minute'
		LIMIT 1000
	), gone AS (
		DELETE FROM batch.counters k USING idle
		WHERE k.batch_id = idle.batch_id
		RETURNING k.*
	)
	INSERT INTO batch.counters (batch_id, shard, pending, retrying, running, completed,
								failed, cancelled, started_at, updated_at)
	SELECT g.batch_id, 0, sum(g.pending), sum(g.retrying), sum(g.running), sum(g.completed),
		   sum(g.failed), sum(g.cancelled), min(g.started_at), max(g.updated_at)
	FROM gone g GROUP BY g.batch_id;
	GET DIAGNOSTICS m = ROW_COUNT;
	n := n + m;

	FOR cur IN
		SELECT p.id, p.pending, p.retrying, p.running, p.completed, p.failed, p.cancelled
		FROM batch.progress p
		JOIN batch.batches x ON x.id = p.id
		WHERE p.pending + p.running = 0
		  AND (x.counted_at IS NULL OR x.counted_at < p.finished_at)
		ORDER BY p.id
		LIMIT max_batches
		FOR UPDATE OF x SKIP LOCKED
	LOOP
		cnt := batch_internal.item_counts(cur.id);
		IF (cnt.pending, cnt.retrying, cnt.running, cnt.completed, cnt.failed, cnt.cancelled)
		   IS DISTINCT FROM (cur.pending - cur.retrying, cur.retrying, cur.running, cur.completed,
							 cur.failed, cur.cancelled) THEN
			-- recount with every writer of these counters done, then rewrite them
			LOCK TABLE batch.counters IN EXCLUSIVE MODE;
			cnt := batch_internal.item_counts(cur.id);
			WITH gone AS (
				DELETE FROM batch.counters k WHERE k.batch_id = cur.id
				RETURNING k.started_at, k.updated_at
			)
			INSERT INTO batch.counters (batch_id, shard, pending, retrying, running, completed,
										failed, cancelled, started_at, updated_at)
			SELECT cur.id, 0, cnt.pending, cnt.retrying, cnt.running, cnt.completed, cnt.failed,
				   cnt.cancelled, min(g.started_at), coalesce(max(g.updated_at), now())
			FROM gone g;
			INSERT INTO batch.events (batch_id, level, event, message, detail, actor)
			VALUES (cur.id, 'warning', 'counters_corrected',
					'the counters of the batch did not match its items and were corrected',
					jsonb_build_object('was', to_jsonb(cur) - 'id', 'now', to_jsonb(cnt)), pg_get_userbyid(caller));
		END IF;
		UPDATE batch.batches x SET counted_at = clock_timestamp() WHERE x.id = cur.id;
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

/*
 * One step of maintenance in the current transaction: 'reclaim' takes back
 * running items whose executor is gone or whose lease ran out, 'purge'
 * purges up to 'chunk' rows of the history of batches finished longer than
 * pgbatch.retention ago, 'counters' keeps the counters honest.  Returns how
 * many rows or batches it touched (0: nothing left to do).
 */
CREATE FUNCTION batch_internal.maintenance_step(caller regrole, step text, chunk integer)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM batch_internal.require_role(caller, 'pgbatch_admin', 'run maintenance');
	IF chunk IS NULL OR chunk < 1 THEN
		RAISE EXCEPTION 'chunk must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- the launcher learns at commit that this database has the extension (a
	-- database pg_upgrade carried over is not in its registry)
	PERFORM batch_internal.wake_launcher();
	CASE step
	WHEN 'reclaim' THEN RETURN batch_internal.reclaim(caller);
	WHEN 'purge' THEN RETURN batch_internal.purge_step(caller, chunk);
	WHEN 'counters' THEN RETURN batch_internal.counters_step(caller, 20);
	ELSE
		RAISE EXCEPTION 'unknown maintenance step "%"', step
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The steps are reclaim, purge and counters.';
	END CASE;
END
$$;

/* ------------------------------------------------------------------------
 * The public functions (gates: src/gate.c)
 * ------------------------------------------------------------------------ */

CREATE FUNCTION batch.maintenance_step(step text, chunk integer DEFAULT 10000) RETURNS bigint
	LANGUAGE c
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.maintenance_step(text,integer) IS
	'one step of batch.maintenance() in the current transaction (reclaim, purge or counters); admins';

CREATE PROCEDURE batch.maintenance(max_seconds float8 DEFAULT 50, chunk integer DEFAULT 10000)
	LANGUAGE plpgsql
AS $$
-- no SET search_path here (a procedure with one cannot commit): every name is qualified
DECLARE
	deadline timestamptz := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => max_seconds);
	reclaimed bigint;
	purged bigint := 0;
	n bigint;
	counted bigint;
BEGIN
	reclaimed := batch.maintenance_step('reclaim', chunk);
	COMMIT;
	LOOP
		n := batch.maintenance_step('purge', chunk);
		COMMIT;
		purged := purged OPERATOR(pg_catalog.+) n;
		EXIT WHEN n OPERATOR(pg_catalog.=) 0
			OR pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>) deadline;
	END LOOP;
	counted := 0;
	LOOP
		n := batch.maintenance_step('counters', chunk);
		COMMIT;
		counted := counted OPERATOR(pg_catalog.+) n;
		EXIT WHEN n OPERATOR(pg_catalog.=) 0
			OR pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>) deadline;
	END LOOP;
	RAISE NOTICE 'pgbatch maintenance: % items taken back, % rows purged, % counter rows and batches checked',
		reclaimed, purged, counted;
END
$$;
COMMENT ON PROCEDURE batch.maintenance(double precision,integer) IS
	'takes back orphaned items, purges history past pgbatch.retention, keeps counters honest; commits as it goes (admins)';
