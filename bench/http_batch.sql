/*
 * bench/http_batch.sql - submits one batch while the background executors
 * are running, waits until they have finished it, and reports what it took.
 * The executors start on the items when the submit commits; nothing in this
 * session runs them.
 *
 * psql variables: pipeline, n (items; an array of that size is in
 * bench.arrays), name (batch name), timeout (seconds to wait at most).
 * Prints one line:
 *   batch id|submit s|wall s|status|completed|failed|first finished s|
 *   first-to-last finished s|last recorded s|attempts|completed attempts
 * Times are taken with clock_timestamp() in the statements around the
 * submit, so "wall" runs from just after the submit's commit to when
 * batch.progress was seen finished (read every 100 ms); "first finished",
 * "last recorded" are the earliest batch.items.finished_at and the latest
 * batch.items.updated_at (the recording transaction's time) from that
 * commit on.
 */
\set ON_ERROR_STOP 1
\set QUIET 1
SELECT clock_timestamp() AS t_sub \gset
SELECT batch.submit(:'pipeline', (SELECT a FROM bench.arrays WHERE n = :n), name => :'name') AS bid \gset
SELECT clock_timestamp() AS t0 \gset
CALL bench.wait_batch(:bid, :timeout) \gset w_
SELECT :bid,
	   round(extract(epoch FROM :'t0'::timestamptz - :'t_sub'::timestamptz)::numeric, 3),
	   round(extract(epoch FROM :'w_seen_at'::timestamptz - :'t0'::timestamptz)::numeric, 3),
	   :'w_status', p.completed, p.failed,
	   round(extract(epoch FROM s.first_done - :'t0'::timestamptz)::numeric, 3),
	   round(extract(epoch FROM s.last_done - s.first_done)::numeric, 3),
	   round(extract(epoch FROM s.last_recorded - :'t0'::timestamptz)::numeric, 3),
	   a.n, a.ok
FROM batch.progress p,
	 LATERAL (SELECT min(i.finished_at) AS first_done, max(i.finished_at) AS last_done,
					 max(i.updated_at) AS last_recorded
			  FROM batch.items i WHERE i.batch_id = :bid) s,
	 LATERAL (SELECT count(*) AS n, count(*) FILTER (WHERE t.outcome = 'completed') AS ok
			  FROM batch.attempts t WHERE t.batch_id = :bid) a
WHERE p.id = :bid;
