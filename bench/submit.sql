/*
 * bench/submit.sql - submits one benchmark batch and prepares it for running.
 *
 * psql variables: pipeline, n (items; an array of that size is in
 * bench.arrays), name (batch name).  Prints one line: batch id|submit seconds.
 * The submit is timed with clock_timestamp() in the statements before and
 * after it, so its commit is included.
 * Afterwards batch.items is VACUUM ANALYZEd, so that the run that follows
 * starts from settled statistics and no autovacuum of the new rows is due.
 */
\set ON_ERROR_STOP 1
\set QUIET 1
SELECT clock_timestamp() AS t0 \gset
SELECT batch.submit(:'pipeline', (SELECT a FROM bench.arrays WHERE n = :n), name => :'name') AS bid \gset
SELECT :bid AS bid, round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)::numeric, 3) AS submit_s;
VACUUM ANALYZE batch.items;
