/*
 * bench/statements.sql - where a batch.run() call spends its time: runs batch
 * :bid to the end with pg_stat_statements tracking nested statements in this
 * session only (the server runs with pg_stat_statements.track = none), then
 * lists the statements that took longest.  Statements nest (a trigger's
 * statement runs inside the UPDATE that fired it), so shares can add up to
 * more than 100%.
 *
 * psql variables: bid, claim.  Prints: run seconds|stages run, then one line
 * per statement: calls|total ms|mean ms|rows|% of the run|statement.
 */
\set ON_ERROR_STOP 1
\set QUIET 1
SET pgbatch.claim_batch_size = :claim;
SET pg_stat_statements.track = 'all';
SELECT pg_stat_statements_reset() \gset
SELECT clock_timestamp() AS t0 \gset
SELECT stages_run FROM batch.run(:bid::bigint) \gset
SELECT extract(epoch FROM clock_timestamp() - :'t0'::timestamptz) * 1000 AS run_ms \gset
SET pg_stat_statements.track = 'none';
SELECT round(:run_ms / 1000.0, 3), :stages_run;
SELECT calls, round(total_exec_time::numeric, 0), round(mean_exec_time::numeric, 3), rows,
	   round((100 * total_exec_time / :run_ms)::numeric, 0),
	   left(regexp_replace(query, '\s+', ' ', 'g'), 110)
FROM pg_stat_statements
WHERE query !~* '(batch\.run|batch\._run|pg_stat_statements|clock_timestamp)'
  AND query !~* '^\s*(SET|SELECT \$1 AS)'
ORDER BY total_exec_time DESC
LIMIT 8;
