--
-- upgrade: pgbatch 1.0 with data, updated in place to 1.1, keeps the data
-- and gains the 1.1 objects.  Runs in a database of its own.
--
CREATE DATABASE regress_pgbatch_upgrade;
\c regress_pgbatch_upgrade
CREATE EXTENSION pgbatch VERSION '1.0';
CREATE FUNCTION public.echo(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT p $$;
SELECT batch.create_pipeline('e', '[{"name": "echo", "sql": "public.echo"}]') > 0 AS created;
SELECT batch.submit('e', '[{"n": 1}, {"n": 2}]', name => 'before') > 0 AS submitted;
ALTER EXTENSION pgbatch UPDATE TO '1.1';
SELECT extversion FROM pg_extension WHERE extname = 'pgbatch';
SELECT name, status, total, pending FROM batch.progress;
SELECT items_completed FROM batch.run('before');
SELECT batch.create_endpoint('x', 'https://example.com') > 0 AS endpoint_created;
\c contrib_regression
DROP DATABASE regress_pgbatch_upgrade;
