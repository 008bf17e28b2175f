--
-- security: two tenants in one database.  Tenant A cannot see, retry,
-- cancel, update, run or take over tenant B's batches through any function,
-- view or table; a reader cannot act; a monitor sees all and acts on
-- nothing; stage functions run as the batch's owner and cannot climb out of
-- it; names, payloads and error messages carrying SQL stay data; an
-- endpoint or pipeline is used only by the roles that may use it.
--
CREATE ROLE regress_sec_admin IN ROLE pgbatch_admin;
CREATE ROLE regress_sec_a IN ROLE pgbatch_operator;
CREATE ROLE regress_sec_b IN ROLE pgbatch_operator;
CREATE ROLE regress_sec_reader IN ROLE pgbatch_reader;
CREATE ROLE regress_sec_monitor IN ROLE pgbatch_monitor, pgbatch_operator;

CREATE SCHEMA sec;
GRANT USAGE ON SCHEMA sec TO PUBLIC;
-- fails items whose payload says so, with a message that looks like SQL
CREATE FUNCTION sec.work(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF p ? 'fail' THEN
		RAISE EXCEPTION '%', p ->> 'fail';
	END IF;
	RETURN jsonb_build_object('by', current_user, 'n', p -> 'n');
END $$;
-- tries to leave the owner's privileges in every way it can think of
CREATE FUNCTION sec.escape(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	CASE p ->> 'how'
	WHEN 'set_role' THEN EXECUTE 'SET ROLE ' || quote_ident(p ->> 'to');
	WHEN 'reset_role' THEN RESET ROLE;
	WHEN 'session_authorization' THEN EXECUTE 'SET SESSION AUTHORIZATION ' || quote_ident(p ->> 'to');
	WHEN 'set_config' THEN PERFORM set_config('role', p ->> 'to', false);
	WHEN 'temp_table' THEN CREATE TEMP TABLE sneaky (x int);
	WHEN 'search_path' THEN PERFORM set_config('search_path', 'sec, public', false);
	WHEN 'headers' THEN PERFORM headers FROM batch.endpoints;
	WHEN 'owner' THEN UPDATE batch.batches SET owner = p ->> 'to';
	ELSE NULL;
	END CASE;
	RETURN jsonb_build_object('user', current_user, 'session', session_user,
							  'path', current_setting('search_path'));
END $$;

SET ROLE regress_sec_admin;
SELECT batch.create_pipeline('sec', '[{"name": "work", "sql": "sec.work"}]') > 0 AS created;
SELECT batch.create_pipeline('esc', '[{"name": "escape", "sql": "sec.escape"}]') > 0 AS created;
RESET ROLE;

-- each tenant submits and runs a batch; one item of each fails
SET ROLE regress_sec_a;
SELECT batch.submit('sec', '[{"n": 1}, {"n": 2, "fail": "A''s secret failure"}]', name => 'a1') AS a1 \gset
SELECT items_completed, items_failed FROM batch.run('a1');
RESET ROLE;
SET ROLE regress_sec_b;
SELECT batch.submit('sec', '[{"n": 1, "secret": "B-payload"}, {"n": 2, "fail": "B''s secret failure"}]',
					name => 'b1') AS b1 \gset
SELECT items_completed, items_failed FROM batch.run();
SELECT i.id AS b_item FROM batch.items i WHERE i.batch_id = :b1 AND i.status = 'failed' \gset
RESET ROLE;

-- tenant A sees only its own batch, in every view and table
SET ROLE regress_sec_a;
SELECT name, status, total, owner FROM batch.progress ORDER BY name;
SELECT batch, error_code, sample_error FROM batch.errors ORDER BY batch;
SELECT DISTINCT batch_id = :a1 AS own FROM batch.log;
SELECT count(*) FILTER (WHERE batch_id <> :a1) AS others FROM batch.review_queue;
SELECT count(*) FILTER (WHERE batch_id <> :a1) AS others FROM batch.items;
SELECT count(*) AS others FROM batch.outputs o WHERE o.output ->> 'by' <> 'regress_sec_a';
SELECT count(*) FILTER (WHERE batch_id <> :a1) AS others FROM batch.attempts;
SELECT count(*) FILTER (WHERE batch_id <> :a1) AS others FROM batch.events;
SELECT count(*) FILTER (WHERE batch_id <> :a1) AS others FROM batch.counters;
SELECT count(*) FILTER (WHERE batch_id <> :a1) AS others, count(*) AS own FROM batch.queue;
-- the queue is read-only to everyone: a forged queue row would be claimed
INSERT INTO batch.queue (item_id, batch_id, status, stage, next_due)
VALUES (:b_item, :b1, 'pending', 'x', now());
UPDATE batch.queue SET next_due = now();
DELETE FROM batch.queue;
SELECT count(*) AS others FROM batch.batches WHERE id <> :a1;

-- ... and cannot act on B's, by name or id, through any function
SELECT batch.retry_failed('b1');
SELECT batch.retry_failed(:b1);
SELECT batch._requeue(:b1, NULL, NULL, NULL, NULL, NULL, true);
SELECT batch.retry_item(:b_item);
SELECT batch.update_item(:b_item, '{"n": 2}');
SELECT batch.cancel('b1');
SELECT batch.cancel(:b1);
SELECT batch.add_items(:b1, '[{"n": 3}]');
SELECT * FROM batch.run(:b1);
SELECT * FROM batch._run(:b1, NULL, NULL);
SELECT batch.set_owner('b1', 'regress_sec_a');
SELECT batch.schedule_retry('b1');
SELECT batch.schedule_retry(:b1);
SELECT batch.unschedule_retry(:b1);
-- ... nor run B's waiting items by running "everything"
RESET ROLE;
SET ROLE regress_sec_b;
SELECT batch.submit('sec', '[{"n": 7}]', name => 'b2') AS b2 \gset
RESET ROLE;
SET ROLE regress_sec_a;
SELECT stages_run FROM batch.run();
-- ... nor through the tables
UPDATE batch.items SET status = 'cancelled' WHERE batch_id = :b1;
UPDATE batch.batches SET cancelled_at = now() WHERE id = :b1;
INSERT INTO batch.items (batch_id, payload, stage) VALUES (:b1, '{}', 'work');
INSERT INTO batch.events (batch_id, level, event, message) VALUES (:b1, 'info', 'x', 'forged');
DELETE FROM batch.items WHERE batch_id = :b1;
-- ... nor give its own batch to B, or to a superuser, to run code as them
SELECT batch.set_owner('a1', 'regress_sec_b');
UPDATE batch.batches SET owner = 'postgres' WHERE id = :a1;
INSERT INTO batch.batches (name, pipeline_id, owner)
SELECT 'forged', id, 'postgres' FROM batch.pipelines WHERE name = 'sec';
INSERT INTO batch.events (batch_id, level, event, message, actor)
VALUES (:a1, 'info', 'x', 'forged', 'regress_sec_b');
RESET ROLE;

-- B's batches are untouched
SELECT name, status, total, completed, failed, cancelled, owner FROM batch.progress
WHERE name IN ('b1', 'b2') ORDER BY name;

-- a member of pgbatch_monitor sees every batch but acts on none it does not own
SET ROLE regress_sec_monitor;
SELECT name, owner FROM batch.progress WHERE name IN ('a1', 'b1') ORDER BY name;
SELECT batch.retry_failed('b1');
SELECT batch.cancel('b1');
SELECT * FROM batch._run(:b1, NULL, NULL);
UPDATE batch.items SET status = 'cancelled' WHERE batch_id = :b1;
RESET ROLE;

-- a reader sees nothing of theirs, and may not act even on what it sees
SET ROLE regress_sec_reader;
SELECT count(*) FROM batch.progress;
SELECT batch.retry_failed('a1');
SELECT payload FROM batch.items;
RESET ROLE;

-- an admin sees and repairs every batch
SET ROLE regress_sec_admin;
SELECT name FROM batch.progress WHERE name IN ('a1', 'b1') ORDER BY name;
SELECT batch.update_item(:b_item, '{"n": 2}');
SELECT batch.retry_failed('b1');
RESET ROLE;
-- the stage still runs as B, whoever runs it
SELECT items_completed FROM batch.run('b1');
SELECT o.output ->> 'by' AS ran_as FROM batch.outputs o WHERE o.item_id = :b_item;

-- stage functions run as the batch's owner and cannot climb out of it
SET ROLE regress_sec_a;
SELECT batch.submit('esc', '[
	{"key": "plain"},
	{"key": "set_role", "how": "set_role", "to": "postgres"},
	{"key": "reset_role", "how": "reset_role"},
	{"key": "session_authorization", "how": "session_authorization", "to": "postgres"},
	{"key": "set_config", "how": "set_config", "to": "postgres"},
	{"key": "temp_table", "how": "temp_table"},
	{"key": "search_path", "how": "search_path"},
	{"key": "headers", "how": "headers"},
	{"key": "owner", "how": "owner", "to": "postgres"}]', name => 'esc_a') AS esc \gset
RESET ROLE;
-- run by a superuser, as the executors would
SELECT items_completed, items_failed FROM batch.run('esc_a');
SELECT current_user, current_setting('search_path') AS search_path;
SELECT i.key, i.status, i.error_code, o.output ->> 'user' AS ran_as, i.error_message
FROM batch.items i LEFT JOIN batch.outputs o ON o.item_id = i.id
WHERE i.batch_id = :esc ORDER BY i.id;
SELECT owner FROM batch.batches WHERE id = :esc;

-- SQL in names, payloads and error messages is data
SET ROLE regress_sec_admin;
SELECT batch.create_pipeline('x''); DROP TABLE batch.items; --',
	'[{"name": "w''; DROP TABLE batch.items; --", "sql": "sec.work"}]') > 0 AS created;
RESET ROLE;
SET ROLE regress_sec_a;
SELECT batch.submit('x''); DROP TABLE batch.items; --',
	'[{"n": 1, "key": "k''); DELETE FROM batch.items; --"},
	  {"n": 2, "fail": "boom''); DROP TABLE batch.batches; -- %s %n %1$s"}]',
	name => 'inj''; DROP SCHEMA batch CASCADE; --') AS inj \gset
SELECT items_completed, items_failed FROM batch.run('inj''; DROP SCHEMA batch CASCADE; --');
SELECT key, stage, status, error_message FROM batch.items WHERE batch_id = :inj ORDER BY id;
SELECT batch.retry_failed('inj''; DROP SCHEMA batch CASCADE; --',
						  error_codes => ARRAY['raise_exception''); DROP TABLE x; --']);
SELECT batch.schedule_retry('nosuch''); SELECT pg_sleep(10); --');
RESET ROLE;
SELECT count(*) > 0 AS items_table_intact FROM batch.items;

-- scheduling needs pg_cron, and says how to get it
SET ROLE regress_sec_a;
SELECT batch.schedule_retry('a1');
SELECT batch.schedule_run();
RESET ROLE;
SET ROLE regress_sec_admin;
SELECT batch.schedule_maintenance();
RESET ROLE;
SET ROLE regress_sec_a;
SELECT batch.schedule_maintenance();
SELECT batch._cron_schedule('x', '* * * * *', 'SELECT 1');
RESET ROLE;

-- use grants: tenant A's endpoint carries A's key; an admin's pipeline on it
-- is no way for B to use that key
SET ROLE regress_sec_a;
SELECT batch.create_endpoint('sec_a_ep', 'https://api.example.com',
	headers => '{"Authorization": "Bearer sk-tenant-a-000"}') > 0 AS created;
RESET ROLE;
SET ROLE regress_sec_admin;
SELECT batch.create_pipeline('sec_on_a', '[{"name": "call", "http": {"endpoint": "sec_a_ep", "path": "/v1/x"}}]',
	retry => '{"max_retries": 0}') > 0 AS created;
RESET ROLE;
SET ROLE regress_sec_b;
SELECT batch.submit('sec_on_a', '[{"n": 1}]', name => 'b_on_a');
SELECT batch.grant_endpoint('sec_a_ep', 'regress_sec_b');
RESET ROLE;
SET ROLE regress_sec_a;
SELECT batch.submit('sec_on_a', '[{"n": 1}]', name => 'a_on_a') > 0 AS submitted;
SELECT batch.grant_endpoint('sec_a_ep', 'regress_sec_b');
RESET ROLE;
SET ROLE regress_sec_b;
SELECT batch.submit('sec_on_a', '[{"n": 1}]', name => 'b_on_a') AS b_on_a \gset
RESET ROLE;
-- B may not hand its batch to its team, which may not use the endpoint
CREATE ROLE regress_sec_b_team;
GRANT regress_sec_b_team TO regress_sec_b;
SET ROLE regress_sec_b;
SELECT batch.set_owner('b_on_a', 'regress_sec_b_team');
RESET ROLE;
-- what was granted is visible to admins only
SET ROLE regress_sec_admin;
SELECT g.object_kind, coalesce(e.name, p.name) AS object, g.grantee, g.granted_by
FROM batch.usage_grants g
LEFT JOIN batch.endpoints e ON g.object_kind = 'endpoint' AND e.id = g.object_id
LEFT JOIN batch.pipelines p ON g.object_kind = 'pipeline' AND p.id = g.object_id
WHERE coalesce(e.name, p.name) IN ('sec_a_ep', 'sec_on_a') ORDER BY 1, 2, 3;
RESET ROLE;
SET ROLE regress_sec_b;
SELECT count(*) FROM batch.usage_grants;
RESET ROLE;
-- A takes the grant back: B's waiting item fails when it comes to send, unsent
SET ROLE regress_sec_a;
SELECT batch.revoke_endpoint('sec_a_ep', 'regress_sec_b');
RESET ROLE;
SET ROLE regress_sec_b;
SELECT items_failed FROM batch.run('b_on_a');
SELECT status, error_code, error_message FROM batch.items WHERE batch_id = :b_on_a;
RESET ROLE;
-- a pipeline an admin takes from the operators is theirs no longer
SET ROLE regress_sec_admin;
SELECT batch.revoke_pipeline('sec', 'pgbatch_operator');
RESET ROLE;
SET ROLE regress_sec_a;
SELECT batch.submit('sec', '[{"n": 5}]', name => 'a_after_revoke');
SELECT batch.grant_pipeline('sec', 'regress_sec_a');
RESET ROLE;
SET ROLE regress_sec_admin;
SELECT batch.grant_pipeline('sec', 'regress_sec_a');
RESET ROLE;
SET ROLE regress_sec_a;
SELECT batch.submit('sec', '[{"n": 5}]', name => 'a_after_grant') > 0 AS submitted;
RESET ROLE;
SET ROLE regress_sec_b;
SELECT batch.submit('sec', '[{"n": 5}]', name => 'b_after_revoke');
RESET ROLE;

-- a stage function of another role than the batch's owner runs as approved:
-- tenant A replacing its function cannot run new code as tenant B
GRANT CREATE ON SCHEMA sec TO regress_sec_a;
SET ROLE regress_sec_a;
CREATE FUNCTION sec.a_fn(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('by', current_user, 'version', 1) $$;
RESET ROLE;
SET ROLE regress_sec_admin;
SELECT batch.create_pipeline('sec_fn', '[{"name": "f", "sql": "sec.a_fn"}]',
	retry => '{"max_retries": 0}') > 0 AS created;
RESET ROLE;
SET ROLE regress_sec_b;
SELECT batch.submit('sec_fn', '[{"n": 1}]', name => 'b_fn1') AS b_fn1 \gset
SELECT items_completed FROM batch.run('b_fn1');
RESET ROLE;
SET ROLE regress_sec_a;
CREATE OR REPLACE FUNCTION sec.a_fn(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('by', current_user, 'version', 2) $$;
SELECT batch.submit('sec_fn', '[{"n": 1}]', name => 'a_fn') AS a_fn \gset
SELECT items_completed FROM batch.run('a_fn');
RESET ROLE;
SET ROLE regress_sec_b;
SELECT batch.submit('sec_fn', '[{"n": 2}]', name => 'b_fn2') AS b_fn2 \gset
SELECT items_failed FROM batch.run('b_fn2');
SELECT status, error_code, error_message FROM batch.items WHERE batch_id = :b_fn2;
SELECT batch.refresh_pipeline('sec_fn');
RESET ROLE;
SET ROLE regress_sec_admin;
SELECT batch.refresh_pipeline('sec_fn');
RESET ROLE;
SET ROLE regress_sec_b;
SELECT batch.retry_failed('b_fn2');
SELECT items_completed FROM batch.run('b_fn2');
SELECT i.batch_id = :b_fn2 AS b2, o.output FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
WHERE i.batch_id IN (:b_fn1, :b_fn2) ORDER BY i.id;
RESET ROLE;
SELECT o.output FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id WHERE i.batch_id = :a_fn;

DROP SCHEMA sec CASCADE;
SET client_min_messages = warning;
DROP OWNED BY regress_sec_admin, regress_sec_a, regress_sec_b, regress_sec_reader,
	regress_sec_monitor, regress_sec_b_team;
RESET client_min_messages;
DROP ROLE regress_sec_admin, regress_sec_a, regress_sec_b, regress_sec_reader,
	regress_sec_monitor, regress_sec_b_team;
