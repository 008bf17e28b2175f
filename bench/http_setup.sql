/*
 * bench/http_setup.sql - the objects the background-executor benchmark
 * (bench/http.sh) uses, in a fresh database: the extension, the endpoints
 * (a local nginx and a local fake API that answers after a delay), the
 * pipelines built on them, a 3-stage SQL no-op pipeline, the item arrays to
 * submit, and a procedure that waits for a batch to finish.  Nothing here
 * measures anything by itself.
 *
 * psql variables: nginx_url, nginx_conc (max_concurrency of the nginx
 * endpoint), tls_url and ca (nginx over HTTPS, and the PEM of its CA),
 * slow_url, slow_conc, limit_url (nginx with limit_req), sleep_url (nginx
 * answering after 1 s), and the sizes of the arrays to build: items,
 * slow_items, rss_chunk, warmup, diag, paced_items, and flight_items (a
 * comma-separated list).
 */
\set ON_ERROR_STOP 1
SET client_min_messages = warning;

CREATE EXTENSION pgbatch;
CREATE EXTENSION pg_stat_statements;
CREATE SCHEMA bench;

-- A trivial SQL stage (simple enough to be inlined), as in bench/setup.sql.
CREATE FUNCTION bench.noop(p jsonb, o jsonb) RETURNS jsonb
	LANGUAGE sql AS 'SELECT ''{}''::jsonb';

SELECT batch.create_endpoint('nginx', :'nginx_url', max_concurrency => :nginx_conc);
SELECT batch.create_endpoint('slow', :'slow_url', max_concurrency => :slow_conc);
SELECT batch.create_endpoint('nginx_tls', :'tls_url', max_concurrency => :nginx_conc,
	tls => jsonb_build_object('ca', :'ca'));

-- pacing (section 6): nginx's limit_req, and the fake API's x-ratelimit-* headers
SELECT batch.create_endpoint('paced', :'limit_url', max_concurrency => 16, rate_limit => 1200);
SELECT batch.create_endpoint('headers', :'slow_url', max_concurrency => 16);
SELECT batch.create_pipeline('http_paced',
	'[{"name": "call", "http": {"endpoint": "paced", "method": "POST", "path": "/x"}}]',
	retry => '{"max_retries": 20, "backoff_base": "200 ms", "backoff_max": "2 s"}');
SELECT batch.create_pipeline('http_headers',
	'[{"name": "call", "http": {"endpoint": "headers", "method": "POST",
	   "path": "/v1/limited?rl_requests=20&rl_window=1&rl_style=openai"}}]',
	retry => '{"max_retries": 20, "backoff_base": "200 ms", "backoff_max": "2 s"}');

-- many in flight (section 7): max_concurrency is set by each run
SELECT batch.create_endpoint('sleepy', :'sleep_url', max_concurrency => 1000);
SELECT batch.create_pipeline('http_sleepy',
	'[{"name": "call", "http": {"endpoint": "sleepy", "method": "POST", "path": "/v1/chat"}}]');

SELECT batch.create_pipeline('http_nginx',
	'[{"name": "call", "http": {"endpoint": "nginx", "method": "POST", "path": "/x"}}]');
SELECT batch.create_pipeline('http_nginx_tls',
	'[{"name": "call", "http": {"endpoint": "nginx_tls", "method": "POST", "path": "/x"}}]');
SELECT batch.create_pipeline('http_slow',
	'[{"name": "call", "http": {"endpoint": "slow", "method": "POST", "path": "/v1/slow"}}]');
SELECT batch.create_pipeline('sql_3', '[{"name": "s1", "sql": "bench.noop"},
										{"name": "s2", "sql": "bench.noop"},
										{"name": "s3", "sql": "bench.noop"}]');

-- Item arrays, built once so that submit times do not include building them.
CREATE TABLE bench.arrays (n integer PRIMARY KEY, a jsonb NOT NULL);
INSERT INTO bench.arrays
SELECT s.n, (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, s.n) g)
FROM (SELECT DISTINCT unnest(ARRAY[:items, :slow_items, :rss_chunk, :warmup, :diag, :paced_items, :flight_items]::integer[]) AS n) s;

/*
 * Waits until batch bid has finished (completed, partial, failed or
 * cancelled), reading batch.progress every 100 ms, for at most timeout_s
 * seconds.  Commits between reads, so that it holds no snapshot back while
 * the executors work.  Sets seen_at to when it saw the batch finished and
 * status to the batch's status then ('timeout' if it never finished).
 */
CREATE PROCEDURE bench.wait_batch(bid bigint, timeout_s float8,
	INOUT seen_at timestamptz DEFAULT NULL, INOUT status text DEFAULT NULL)
	LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	st text;
BEGIN
	LOOP
		SELECT p.status INTO st FROM batch.progress p WHERE p.id = bid;
		IF st IN ('completed', 'partial', 'failed', 'cancelled') THEN
			seen_at := clock_timestamp();
			status := st;
			RETURN;
		END IF;
		IF clock_timestamp() - t0 > make_interval(secs => timeout_s) THEN
			seen_at := clock_timestamp();
			status := 'timeout';
			RETURN;
		END IF;
		COMMIT;
		PERFORM pg_sleep(0.1);
	END LOOP;
END
$$;
