/*
 * bench/retry_rep.sql - one repetition of the retry_failed measurement on
 * batch :bid: fail its chosen items again, VACUUM ANALYZE batch.items, then
 * time one batch.retry_failed() call inside the server (bench.time_retry).
 *
 * Prints one line: ms|items re-queued.
 */
\set ON_ERROR_STOP 1
\set QUIET 1
SELECT bench.refail(:bid) \gset
VACUUM ANALYZE batch.items;
SELECT round(ms::numeric, 3), requeued FROM bench.time_retry(:bid);
