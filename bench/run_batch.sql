/*
 * bench/run_batch.sql - runs one submitted batch to the end in this (fresh)
 * session and reports what it took.
 *
 * psql variables: bid (batch id), claim (pgbatch.claim_batch_size), slice (0:
 * one batch.run() call, a single transaction; N: batch.run(bid, N) called
 * until done, committing after each call, see bench.run_sliced).  Prints one
 * line: seconds|stages_run|items_completed|items_failed|batch.run calls|peak
 * private MB of this backend.  The time is taken with clock_timestamp() in the
 * statements before and after the run, so it includes the commit(s).
 */
\set ON_ERROR_STOP 1
\set QUIET 1
SET pgbatch.claim_batch_size = :claim;
SELECT :slice > 0 AS sliced \gset
SELECT clock_timestamp() AS t0 \gset
\if :sliced
CALL bench.run_sliced(:bid, :slice) \gset r_
\else
SELECT stages_run AS r_stages_run, items_completed AS r_items_completed,
	   items_failed AS r_items_failed, 1 AS r_calls
FROM batch.run(:bid::bigint) \gset
\endif
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)::numeric, 3) AS run_s,
	   :r_stages_run, :r_items_completed, :r_items_failed, :r_calls, bench.peak_private_mb();
