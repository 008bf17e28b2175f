/*
 * bench/retry_setup.sql - builds the two batches the retry_failed measurement
 * compares: a big one (:big items) and a small one (:small items), each with
 * :failed of its items failed.  In the big batch every (:big / :failed)-th
 * item by id fails; in the small one (:small = :failed) all of them do.
 * Items are failed by UPDATE (a trigger keeps the counters), as a failing
 * stage would leave them: status failed, attempt 1, an error code.
 *
 * Prints one line: big id|small id|big submit s|small submit s|big failed|small failed.
 */
\set ON_ERROR_STOP 1
\set QUIET 1
SELECT clock_timestamp() AS t0 \gset
SELECT batch.submit('sql_1', (SELECT a FROM bench.arrays WHERE n = :big), name => 'retry_big') AS big_bid \gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)::numeric, 3) AS big_submit_s \gset
SELECT clock_timestamp() AS t0 \gset
SELECT batch.submit('sql_1', (SELECT a FROM bench.arrays WHERE n = :small), name => 'retry_small') AS small_bid \gset
SELECT round(extract(epoch FROM clock_timestamp() - :'t0'::timestamptz)::numeric, 3) AS small_submit_s \gset

INSERT INTO bench.failed_ids (batch_id, id)
SELECT batch_id, id
FROM (SELECT i.batch_id, i.id, row_number() OVER (PARTITION BY i.batch_id ORDER BY i.id) AS rn
	  FROM batch.items i WHERE i.batch_id IN (:big_bid, :small_bid)) s
WHERE (batch_id = :big_bid AND rn % (:big / :failed) = 0)
   OR (batch_id = :small_bid AND rn <= :failed);

SELECT :big_bid, :small_bid, :big_submit_s, :small_submit_s,
	   bench.refail(:big_bid), bench.refail(:small_bid);
