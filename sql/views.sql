--
-- views: batch.progress, batch.errors, batch.log and batch.review_queue
-- as BI tools and operators read them.
--
SELECT app.add_fault('v-429', 'draft', 'transient');
SELECT app.add_fault('v-bad', 'seo', 'permanent');

SELECT batch.submit('article', '[
  {"topic": "v-1", "key": "k1"}, {"topic": "v-2", "key": "k2"}, {"topic": "v-429", "key": "k3"},
  {"topic": "v-bad", "key": "k4"}, {"topic": "", "key": "k5"}]', name => 'b_views') AS bid \gset

-- the columns are an interface: names and order are fixed
SELECT attname FROM pg_attribute WHERE attrelid = 'batch.progress'::regclass AND attnum > 0 ORDER BY attnum;
SELECT attname FROM pg_attribute WHERE attrelid = 'batch.errors'::regclass AND attnum > 0 ORDER BY attnum;
SELECT attname FROM pg_attribute WHERE attrelid = 'batch.log'::regclass AND attnum > 0 ORDER BY attnum;
SELECT attname FROM pg_attribute WHERE attrelid = 'batch.review_queue'::regclass AND attnum > 0 ORDER BY attnum;

-- queued before anything ran
SELECT name, pipeline, status, total, pending, running, retrying, completed, failed, cancelled,
       completion_ratio, started_at IS NULL AS not_started, finished_at IS NULL AS not_finished
FROM batch.progress WHERE name = 'b_views';

SELECT stages_run FROM batch.run('b_views');
-- running: one item waits out a backoff (counted in pending and in retrying)
SELECT status, total, pending, running, retrying, completed, failed, completion_ratio,
       started_at IS NOT NULL AS started, finished_at IS NULL AS not_finished
FROM batch.progress WHERE name = 'b_views';

-- errors grouped by stage and code
SELECT batch, stage, error_code, items, first_seen <= last_seen AS ordered, sample_error
FROM batch.errors WHERE batch = 'b_views' ORDER BY stage, error_code;

SELECT key, stage, error_code, error, attempts, payload FROM batch.review_queue
WHERE batch_id = :bid ORDER BY item_id;

-- exhaust the retries of the 429 item: the batch is then partial
UPDATE batch.items SET max_retries = 0, next_due = now() WHERE batch_id = :bid AND status = 'pending';
SELECT items_failed FROM batch.run('b_views');
SELECT status, total, pending, retrying, completed, failed, completion_ratio,
       finished_at IS NOT NULL AS finished
FROM batch.progress WHERE name = 'b_views';
SELECT stage, error_code, items, sample_error FROM batch.errors WHERE batch_id = :bid ORDER BY stage, error_code;

-- the log: attempts (info/warning/error) and batch events, with durations
SELECT i.key, l.stage, l.attempt, l.level, l.event, l.error_code, l.message,
       l.duration_ms >= 0 AS timed, l.finished_at >= l.started_at AS ordered
FROM batch.log l LEFT JOIN batch.items i ON i.id = l.item_id
WHERE l.batch_id = :bid ORDER BY l.finished_at, i.key, l.stage DESC;
SELECT level, count(*) FROM batch.log WHERE batch_id = :bid GROUP BY level ORDER BY level;

-- completed and failed batches
SELECT batch.submit('article', '[{"topic": "only good"}]', name => 'b_done') AS dbid \gset
SELECT items_completed FROM batch.run('b_done');
SELECT status, total, completed, completion_ratio, finished_at >= started_at AS finished
FROM batch.progress WHERE name = 'b_done';
SELECT batch.submit('article', '[{"topic": ""}]', name => 'b_allbad') > 0 AS submitted;
SELECT status, total, failed, completion_ratio FROM batch.progress WHERE name = 'b_allbad';

-- the counters agree with the items for every batch
SELECT p.name FROM batch.progress p
JOIN LATERAL (SELECT count(*) AS total,
                     count(*) FILTER (WHERE status = 'pending') AS pending,
                     count(*) FILTER (WHERE status = 'pending' AND attempt > 0) AS retrying,
                     count(*) FILTER (WHERE status = 'completed') AS completed,
                     count(*) FILTER (WHERE status = 'failed') AS failed,
                     count(*) FILTER (WHERE status = 'cancelled') AS cancelled
              FROM batch.items i WHERE i.batch_id = p.id) c ON true
WHERE (p.total, p.pending, p.retrying, p.completed, p.failed, p.cancelled)
      IS DISTINCT FROM (c.total, c.pending, c.retrying, c.completed, c.failed, c.cancelled);

-- progress reads the counters, never the items
EXPLAIN (COSTS OFF) SELECT * FROM batch.progress WHERE name = 'b_views';

-- health: this suite's server does not preload pgbatch, and says so, per
-- database, with the fix; readers see it, nobody else
SELECT state, executors, wanted, since, started, reason, hint
FROM batch.health WHERE database = current_database();
SELECT count(*) = (SELECT count(*) FROM pg_database WHERE NOT datistemplate) AS every_database
FROM batch.health;
CREATE ROLE regress_health_reader IN ROLE pgbatch_reader;
CREATE ROLE regress_health_nobody;
SET ROLE regress_health_reader;
SELECT state FROM batch.health WHERE database = current_database();
SET ROLE regress_health_nobody;
SELECT state FROM batch.health;
SELECT * FROM batch_internal.health();
RESET ROLE;
DROP ROLE regress_health_reader, regress_health_nobody;
