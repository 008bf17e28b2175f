--
-- maintenance: batch.maintenance() takes back items whose lease ran out,
-- purges the history and outputs of batches finished longer than
-- pgbatch.retention ago (a purged batch can no longer be retried), and
-- corrects counters that drifted from the items.
--
CREATE FUNCTION public.mnt(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF p ? 'fail' THEN
		RAISE EXCEPTION 'failed on purpose';
	END IF;
	RETURN p;
END $$;
SELECT batch.create_pipeline('mnt', '[{"name": "one", "sql": "public.mnt"}, {"name": "two", "sql": "public.mnt"}]',
	retry => '{"max_retries": 0}') > 0 AS created;

-- a finished batch, with history and outputs
SELECT batch.submit('mnt', '[{"n": 1}, {"n": 2}, {"n": 3, "fail": true}]', name => 'm_old') AS m_old \gset
SELECT items_completed, items_failed FROM batch.run('m_old');
-- a batch whose counters drifted (as after a TRUNCATE or disabled triggers)
SELECT batch.submit('mnt', '[{"n": 1}]', name => 'm_drift') AS m_drift \gset
SELECT items_completed FROM batch.run('m_drift');
UPDATE batch.counters SET completed = completed + 5 WHERE batch_id = :m_drift;
SELECT total, completed FROM batch.progress WHERE id = :m_drift;
-- an item held by an executor that is gone, whose lease ran out
SELECT batch.submit('mnt', '[{"n": 1}]', name => 'm_held') AS m_held \gset
UPDATE batch.items SET status = 'running', attempt = 1, max_retries = 1, claimed_by = 999999,
	lease_until = now() - interval '1 minute', next_due = '2000-01-01'
	WHERE batch_id = :m_held;

-- the retention is counted from when a batch finished
SET pgbatch.retention = '1s';
SELECT pg_sleep(1.2);
-- m_held is not finished, so it is never purged; m_drift is purged too
SET client_min_messages = warning;
CALL batch.maintenance();
RESET client_min_messages;

-- taken back, due when it was due before: ahead of the work that came after it
SELECT status, error_code, attempt, next_due = '2000-01-01' AS due_as_before
FROM batch.items WHERE batch_id = :m_held;
SELECT b.name, b.purged_at IS NOT NULL AS purged,
	   (SELECT count(*) FROM batch.attempts a WHERE a.batch_id = b.id) AS attempts,
	   (SELECT count(*) FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
		WHERE i.batch_id = b.id) AS outputs,
	   p.status, p.total, p.completed, p.failed
FROM batch.batches b JOIN batch.progress p ON p.id = b.id
WHERE b.id IN (:m_old, :m_drift, :m_held) ORDER BY b.id;
SELECT batch_id = :m_drift AS drift, event, detail FROM batch.events
WHERE batch_id IN (:m_old, :m_drift, :m_held) AND event IN ('purged', 'counters_corrected', 'items_reclaimed')
ORDER BY batch_id, id;
-- one counter row per checked batch
SELECT count(*) FROM batch.counters WHERE batch_id = :m_drift;

-- a purged batch cannot resume where it failed
SELECT batch.retry_failed(:m_old);
-- the rest still runs: the taken-back item finishes
SELECT items_completed FROM batch.run('m_held');

-- a second run finds nothing more to do for these batches
SET client_min_messages = warning;
CALL batch.maintenance();
RESET client_min_messages;
SELECT count(*) FROM batch.events
WHERE batch_id IN (:m_old, :m_drift) AND event IN ('purged', 'counters_corrected');

-- retention 0 keeps everything
SET pgbatch.retention = 0;
SELECT batch.maintenance_step('purge', 100);
RESET pgbatch.retention;

-- inside a transaction block it cannot commit as it goes
BEGIN;
CALL batch.maintenance();
ROLLBACK;

-- a scheduled submission's run (what its pg_cron job calls): the query's
-- rows become the items of a new batch, as the schedule's owner
INSERT INTO batch.schedules (name, pipeline, schedule, query)
VALUES ('nightly', 'mnt', '0 3 * * *', $q$SELECT g AS n, 'k' || g AS key FROM generate_series(1, 3) g$q$),
	   ('as_is', 'mnt', '0 4 * * *', $q$SELECT jsonb_build_object('n', 9) AS item$q$),
	   ('empty', 'mnt', '0 5 * * *', $q$SELECT 1 AS n WHERE false$q$);
SELECT batch.run_schedule(s.id) IS NOT NULL AS submitted, s.name FROM batch.schedules s ORDER BY s.id;
SELECT s.name, b.name LIKE s.name || ' %' AS named, p.total,
	   (SELECT jsonb_agg(i.payload ORDER BY i.id) FROM batch.items i WHERE i.batch_id = b.id) AS items
FROM batch.schedules s JOIN batch.batches b ON b.id = s.last_batch_id
JOIN batch.progress p ON p.id = b.id ORDER BY s.id;
SELECT batch.schedule_submit('x', '* * * * *', 'nosuch', 'SELECT 1');
-- a schedule's query runs only as its owner, never with another's privileges
CREATE ROLE regress_mnt_sched IN ROLE pgbatch_operator;
INSERT INTO batch.schedules (name, pipeline, schedule, query, owner)
VALUES ('theirs', 'mnt', '0 6 * * *', 'SELECT current_user AS who', 'regress_mnt_sched')
RETURNING id AS theirs \gset
SELECT batch.run_schedule(:theirs);
SET ROLE regress_mnt_sched;
SELECT batch.run_schedule(:theirs) IS NOT NULL AS submitted_as_owner;
RESET ROLE;
SELECT i.payload FROM batch.items i JOIN batch.schedules s ON s.last_batch_id = i.batch_id
WHERE s.id = :theirs;
DELETE FROM batch.schedules;

-- only admins maintain
CREATE ROLE regress_mnt_op IN ROLE pgbatch_operator;
SET ROLE regress_mnt_op;
CALL batch.maintenance();
RESET ROLE;
DROP ROLE regress_mnt_op;
SET client_min_messages = warning;
DROP OWNED BY regress_mnt_sched;
RESET client_min_messages;
DROP ROLE regress_mnt_sched;
DROP FUNCTION public.mnt(jsonb, jsonb) CASCADE;
