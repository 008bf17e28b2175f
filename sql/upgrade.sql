--
-- upgrade: pgbatch 1.0 with data, updated in place to 1.1, 1.2 and 1.3, keeps
-- the data and gains the new objects.  Runs in a database of its own.
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
SELECT batch.submit('e', '[{"n": 3}]', name => 'between') > 0 AS submitted;
ALTER EXTENSION pgbatch UPDATE TO '1.2';
SELECT extversion FROM pg_extension WHERE extname = 'pgbatch';
ALTER EXTENSION pgbatch UPDATE TO '1.3';
SELECT extversion FROM pg_extension WHERE extname = 'pgbatch';
SELECT name, status, total, pending, owner = current_user AS mine FROM batch.progress ORDER BY name;
SELECT items_completed FROM batch.run('between');
-- every batch table is under row-level security now, and the views run as their reader
SELECT c.relname, c.relrowsecurity, count(p.polname) AS policies
FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid
WHERE c.relnamespace = 'batch'::regnamespace AND c.relkind = 'r'
GROUP BY c.relname, c.relrowsecurity ORDER BY c.relname;
SELECT c.relname, c.reloptions FROM pg_class c
WHERE c.relnamespace = 'batch'::regnamespace AND c.relkind = 'v' ORDER BY c.relname;
-- SECURITY DEFINER only where needed, each with a fixed search_path
SELECT p.oid::regprocedure AS definer, p.proconfig
FROM pg_proc p WHERE p.pronamespace = 'batch'::regnamespace AND p.prosecdef ORDER BY p.oid::regprocedure::text COLLATE "C";
SELECT p.oid::regprocedure AS without_fixed_search_path FROM pg_proc p
JOIN pg_language l ON l.oid = p.prolang
WHERE p.pronamespace = 'batch'::regnamespace AND l.lanname <> 'c'
  AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
ORDER BY p.oid::regprocedure::text COLLATE "C";
\c contrib_regression
DROP DATABASE regress_pgbatch_upgrade;
