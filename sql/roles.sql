--
-- roles: pgbatch_reader sees views only, pgbatch_operator runs and repairs
-- batches, pgbatch_admin manages pipelines; PUBLIC gets nothing.  Stage
-- functions run as the batch's owner.  Each sees the batches of the roles
-- it is a member of (see security.sql for tenants).
--
CREATE ROLE regress_pgb_admin IN ROLE pgbatch_admin;
CREATE ROLE regress_pgb_operator IN ROLE pgbatch_operator;
CREATE ROLE regress_pgb_reader IN ROLE pgbatch_reader;
CREATE ROLE regress_pgb_nobody;
CREATE ROLE regress_pgb_team;
GRANT regress_pgb_team TO regress_pgb_operator, regress_pgb_reader;

CREATE FUNCTION app.whoami(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('user', current_user) $$;

-- nothing in schema batch is granted to PUBLIC
SELECT count(*) AS public_grants FROM (
  SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace,
         aclexplode(coalesce(relacl, acldefault('r', relowner))) a
  WHERE nspname = 'batch' AND a.grantee = 0
  UNION ALL
  SELECT proname FROM pg_proc p JOIN pg_namespace n ON n.oid = pronamespace,
         aclexplode(coalesce(proacl, acldefault('f', proowner))) a
  WHERE nspname = 'batch' AND a.grantee = 0) x;

SET ROLE regress_pgb_nobody;
SELECT * FROM batch.progress;
SELECT batch.submit('article', '[]');
RESET ROLE;

-- admin: pipelines
SET ROLE regress_pgb_admin;
SELECT batch.create_pipeline('who', '[{"name": "who", "sql": "app.whoami"}]') > 0 AS created;
-- the team (not an operator role itself) may own batches of it
SELECT batch.grant_pipeline('who', 'regress_pgb_team');
RESET ROLE;

-- operator: submit, run, retry, cancel, update; not pipelines
SET ROLE regress_pgb_operator;
SELECT batch.create_pipeline('op', '[{"name": "who", "sql": "app.whoami"}]');
SELECT batch.submit('who', '[{"n": 1}]', name => 'b_roles') > 0 AS submitted;
SELECT batch.retry_failed('b_roles');
SELECT count(*) FROM batch.review_queue WHERE batch_id = (SELECT b.id FROM batch.batches b WHERE b.name = 'b_roles');
RESET ROLE;

-- the stage runs as the batch's owner, even when a superuser runs the batch
SELECT items_completed FROM batch.run('b_roles');
SELECT o.output FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
WHERE i.batch_id = (SELECT b.id FROM batch.batches b WHERE b.name = 'b_roles');
SELECT owner FROM batch.progress WHERE name = 'b_roles';

-- an owner without EXECUTE on the stage function fails the item, it does not run it
REVOKE EXECUTE ON FUNCTION app.whoami(jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION app.whoami(jsonb, jsonb) TO regress_pgb_admin;
SET ROLE regress_pgb_operator;
SELECT batch.add_items('b_roles', '[{"n": 2}]');
SELECT items_failed FROM batch.run('b_roles');
SELECT status, error_code, error_message FROM batch.items
WHERE batch_id = (SELECT b.id FROM batch.batches b WHERE b.name = 'b_roles') AND payload->>'n' = '2';
SELECT batch.cancel('b_roles');
RESET ROLE;

-- reader: not the batch of another role...
SET ROLE regress_pgb_reader;
SELECT name, status, total FROM batch.progress WHERE name = 'b_roles';
RESET ROLE;

-- ... until it belongs to a team the reader is in
SET ROLE regress_pgb_operator;
SELECT batch.set_owner('b_roles', 'regress_pgb_team');
SELECT batch.set_owner('b_roles', 'regress_pgb_nobody');
RESET ROLE;

-- reader: progress, errors and the log; no payloads, no actions
SET ROLE regress_pgb_reader;
SELECT name, status, total, owner FROM batch.progress WHERE name = 'b_roles';
SELECT stage, error_code, items FROM batch.errors WHERE batch = 'b_roles';
SELECT count(*) > 0 AS has_log FROM batch.log;
SELECT * FROM batch.review_queue;
SELECT payload FROM batch.items;
SELECT * FROM batch.outputs;
SELECT batch.retry_failed('b_roles');
SELECT batch.run('b_roles');
SELECT batch.cancel('b_roles');
SELECT batch.create_pipeline('rd', '[{"name": "who", "sql": "app.whoami"}]');
RESET ROLE;

DROP FUNCTION app.whoami(jsonb, jsonb) CASCADE;
DROP OWNED BY regress_pgb_admin, regress_pgb_operator, regress_pgb_reader, regress_pgb_nobody,
	regress_pgb_team;
DROP ROLE regress_pgb_admin, regress_pgb_operator, regress_pgb_reader, regress_pgb_nobody,
	regress_pgb_team;
