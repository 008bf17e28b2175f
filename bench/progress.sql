/*
 * bench/progress.sql - times SELECT * FROM batch.progress WHERE name = :'name'
 * inside the server, :runs times as an ad-hoc query (parsed and planned each
 * time) and :runs times through a cached plan; see bench.time_progress.
 *
 * Prints: ad-hoc median ms|ad-hoc p90 ms|cached median ms|cached p90 ms|batch total.
 */
\set ON_ERROR_STOP 1
\set QUIET 1
SELECT round(adhoc_median_ms::numeric, 3), round(adhoc_p90_ms::numeric, 3),
	   round(cached_median_ms::numeric, 3), round(cached_p90_ms::numeric, 3), total
FROM bench.time_progress(:'name', :runs);
