/*
 * bench/setup.sql - the objects the pgbatch benchmark (bench/run.sh) uses, in a
 * fresh database: the extension, no-op stage functions and the pipelines built
 * on them, the item arrays to submit, and server-side timing helpers.  Nothing
 * here measures anything by itself.
 *
 * psql variables: items (items per throughput batch), diag_items (items of the
 * pg_stat_statements run), big and small (items of the retry_failed batches).
 */
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE EXTENSION pgbatch;
CREATE EXTENSION pg_stat_statements;
CREATE SCHEMA bench;

-- The headline stage: a trivial SQL function (simple enough to be inlined).
CREATE FUNCTION bench.noop(p jsonb, o jsonb) RETURNS jsonb
	LANGUAGE sql AS 'SELECT ''{}''::jsonb';

-- The same in PL/pgSQL: a real function call per stage execution.
CREATE FUNCTION bench.noop_plpgsql(p jsonb, o jsonb) RETURNS jsonb
	LANGUAGE plpgsql AS 'BEGIN RETURN ''{}''::jsonb; END';

SELECT batch.create_pipeline('sql_1', '[{"name": "s1", "sql": "bench.noop"}]');
SELECT batch.create_pipeline('sql_3', '[{"name": "s1", "sql": "bench.noop"},
										{"name": "s2", "sql": "bench.noop"},
										{"name": "s3", "sql": "bench.noop"}]');

/*
 * The secondary pipelines: PL/pgSQL, and a C stage, the built-in
 * jsonb_concat(jsonb, jsonb) (payload || outputs), an internal function with
 * the stage signature.  Should pgbatch refuse one, its row of the report says
 * so and the rest of the benchmark goes on.
 */
DO $$
DECLARE
	p record;
BEGIN
	FOR p IN SELECT * FROM (VALUES ('plpgsql_1', 'bench.noop_plpgsql'),
								   ('c_1', 'pg_catalog.jsonb_concat')) v(name, fn) LOOP
		BEGIN
			PERFORM batch.create_pipeline(p.name, jsonb_build_array(
				jsonb_build_object('name', 's1', 'sql', p.fn)));
		EXCEPTION WHEN OTHERS THEN
			RAISE WARNING 'pipeline % not created: %', p.name, SQLERRM;
		END;
	END LOOP;
END
$$;

-- Item arrays, built once so that submit times do not include building them.
CREATE TABLE bench.arrays (n integer PRIMARY KEY, a jsonb NOT NULL);
INSERT INTO bench.arrays
SELECT s.n, (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, s.n) g)
FROM (SELECT DISTINCT unnest(ARRAY[:items, :diag_items, :big, :small]::integer[]) AS n) s;

-- The items the retry_failed measurement fails and re-queues, per batch.
CREATE TABLE bench.failed_ids (batch_id bigint NOT NULL, id bigint PRIMARY KEY);

/*
 * This backend's peak private memory in MB, approximately: its peak resident
 * set (VmHWM) less the shared memory and file pages it has mapped now (which
 * only grow), so a lower bound of the private memory it held at its peak.
 */
CREATE FUNCTION bench.peak_private_mb() RETURNS numeric
	LANGUAGE sql AS $$
	WITH s AS (SELECT pg_read_file('/proc/self/status') AS t)
	SELECT round(((substring(t FROM 'VmHWM:\s*(\d+)')::bigint
				  - substring(t FROM 'RssShmem:\s*(\d+)')::bigint
				  - substring(t FROM 'RssFile:\s*(\d+)')::bigint) / 1024.0), 0)
	FROM s
$$;

/*
 * Runs a batch to the end in slices of max_items, committing after each
 * batch.run() call: the way a worker that loops over batch.run() behaves.
 */
CREATE PROCEDURE bench.run_sliced(bid bigint, slice bigint,
	INOUT stages_run bigint DEFAULT 0, INOUT items_completed bigint DEFAULT 0,
	INOUT items_failed bigint DEFAULT 0, INOUT calls integer DEFAULT 0)
	LANGUAGE plpgsql AS $$
DECLARE
	r record;
BEGIN
	LOOP
		SELECT * INTO r FROM batch.run(bid, slice);
		COMMIT;
		calls := calls + 1;
		stages_run := stages_run + r.stages_run;
		items_completed := items_completed + r.items_completed;
		items_failed := items_failed + r.items_failed;
		EXIT WHEN r.items_completed + r.retries_scheduled + r.items_failed < slice;
	END LOOP;
END
$$;

-- Marks the batch's chosen items failed again (as a failed stage leaves them).
CREATE FUNCTION bench.refail(bid bigint) RETURNS bigint
	LANGUAGE plpgsql AS $$
DECLARE
	n bigint;
BEGIN
	UPDATE batch.items i
	SET status = 'failed', error_code = 'bench', error_message = 'failed by the benchmark',
		finished_at = now(), attempt = 1
	FROM bench.failed_ids f
	WHERE f.batch_id = bid AND i.id = f.id AND i.status <> 'failed';
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

-- One batch.retry_failed() call, timed inside the server (commit excluded).
CREATE FUNCTION bench.time_retry(bid bigint, OUT ms float8, OUT requeued bigint)
	LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
BEGIN
	requeued := batch.retry_failed(bid);
	ms := extract(epoch FROM clock_timestamp() - t0) * 1000;
END
$$;

/*
 * Times SELECT * FROM batch.progress WHERE name = bname, runs times each way:
 * as dynamic SQL (parsed and planned every time, like an ad-hoc query) and
 * through PL/pgSQL's cached plan (like a prepared statement).
 */
CREATE FUNCTION bench.time_progress(bname text, runs integer,
	OUT adhoc_median_ms float8, OUT adhoc_p90_ms float8,
	OUT cached_median_ms float8, OUT cached_p90_ms float8, OUT total bigint)
	LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz;
	adhoc float8[] := '{}';
	cached float8[] := '{}';
	r record;
BEGIN
	FOR i IN 1..runs LOOP
		t0 := clock_timestamp();
		EXECUTE 'SELECT * FROM batch.progress WHERE name = $1' INTO r USING bname;
		adhoc := adhoc || extract(epoch FROM clock_timestamp() - t0) * 1000;
	END LOOP;
	FOR i IN 1..runs LOOP
		t0 := clock_timestamp();
		SELECT * INTO r FROM batch.progress p WHERE p.name = bname;
		cached := cached || extract(epoch FROM clock_timestamp() - t0) * 1000;
	END LOOP;
	total := r.total;
	SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x),
		   percentile_cont(0.9) WITHIN GROUP (ORDER BY x)
	INTO adhoc_median_ms, adhoc_p90_ms FROM unnest(adhoc) x;
	SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY x),
		   percentile_cont(0.9) WITHIN GROUP (ORDER BY x)
	INTO cached_median_ms, cached_p90_ms FROM unnest(cached) x;
END
$$;
