--
-- upgrade: pgbatch 1.0 with data, updated in place to 1.1, 1.2, 1.3 and 1.4,
-- keeps the data and gains the new objects.  Runs in a database of its own.
-- Until the last update the library refuses the older versions' batch.run()
-- (it ran as its caller, with no fixed search_path) and says what to do.
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
ALTER EXTENSION pgbatch UPDATE TO '1.4';
SELECT extversion FROM pg_extension WHERE extname = 'pgbatch';
SELECT items_completed FROM batch.run('before');
SELECT items_completed FROM batch.run('between');
SELECT name, status, total, pending FROM batch.progress ORDER BY name;
-- every batch table is under row-level security now, and the views run as their reader
SELECT c.relname, c.relrowsecurity, count(p.polname) AS policies
FROM pg_class c LEFT JOIN pg_policy p ON p.polrelid = c.oid
WHERE c.relnamespace = 'batch'::regnamespace AND c.relkind = 'r'
GROUP BY c.relname, c.relrowsecurity ORDER BY c.relname;
SELECT c.relname, c.reloptions FROM pg_class c
WHERE c.relnamespace = 'batch'::regnamespace AND c.relkind = 'v' ORDER BY c.relname;
-- SECURITY DEFINER only in batch_internal, which nobody else may use
SELECT p.oid::regprocedure AS definer_outside_batch_internal
FROM pg_proc p WHERE p.pronamespace = 'batch'::regnamespace AND p.prosecdef ORDER BY p.oid::regprocedure::text COLLATE "C";
SELECT has_schema_privilege(r, 'batch_internal', 'USAGE') AS usage_for_anyone
FROM unnest(ARRAY['public', 'pgbatch_reader', 'pgbatch_operator', 'pgbatch_admin', 'pgbatch_monitor']) r
GROUP BY 1;
-- nobody else executes an internal function but the four that the read
-- policies and views call for whoever reads them
SELECT p.oid::regprocedure AS internal_executable_by_others, string_agg(r, ', ' ORDER BY r) AS by_roles
FROM pg_proc p, unnest(ARRAY['public', 'pgbatch_reader', 'pgbatch_operator', 'pgbatch_admin', 'pgbatch_monitor']) r
WHERE p.pronamespace = 'batch_internal'::regnamespace AND has_function_privilege(r, p.oid, 'EXECUTE')
GROUP BY 1 ORDER BY p.oid::regprocedure::text COLLATE "C";
-- the public schema holds the API only: no helper (\df batch.*)
SELECT p.oid::regprocedure AS helper_in_public_schema FROM pg_proc p
WHERE p.pronamespace = 'batch'::regnamespace AND p.proname LIKE '\_%';
-- every function has a fixed search_path, but the procedure (which commits,
-- and qualifies every name) and the C functions that run no SQL of their own
-- (query_rows sets one for the query it runs)
SELECT p.oid::regprocedure AS without_fixed_search_path, l.lanname
FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
WHERE p.pronamespace IN ('batch'::regnamespace, 'batch_internal'::regnamespace) AND p.prokind <> 'p'
  AND NOT coalesce('search_path=pg_catalog, pg_temp' = ANY (p.proconfig), false)
ORDER BY p.oid::regprocedure::text COLLATE "C";
-- every public function, table and view says what it is (\df+, \d+)
SELECT p.oid::regprocedure AS function_without_comment FROM pg_proc p
WHERE p.pronamespace = 'batch'::regnamespace AND p.proname NOT LIKE '\_%'
  AND obj_description(p.oid, 'pg_proc') IS NULL;
SELECT c.oid::regclass AS relation_without_comment FROM pg_class c
WHERE c.relnamespace = 'batch'::regnamespace AND c.relkind IN ('r', 'v')
  AND obj_description(c.oid, 'pg_class') IS NULL;
SELECT c.oid::regclass AS relation, a.attname AS column_without_comment
FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
WHERE c.relnamespace = 'batch'::regnamespace AND c.relkind IN ('r', 'v')
  AND a.attnum > 0 AND NOT a.attisdropped AND col_description(c.oid, a.attnum) IS NULL;
-- and every setting says what it is (SHOW ALL, pg_settings)
LOAD 'pgbatch';
SELECT name AS setting_without_description FROM pg_settings
WHERE name LIKE 'pgbatch.%' AND coalesce(short_desc, '') = '';
-- only the extension's owner writes the tables
SELECT c.relname, r AS role, p AS privilege
FROM pg_class c,
	 unnest(ARRAY['public', 'pgbatch_reader', 'pgbatch_operator', 'pgbatch_admin', 'pgbatch_monitor']) r,
	 unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) p
WHERE c.relnamespace = 'batch'::regnamespace AND c.relkind = 'r'
  AND (has_table_privilege(r, c.oid, p)
	   OR p IN ('INSERT', 'UPDATE') AND has_any_column_privilege(r, c.oid, p))
ORDER BY 1, 2, 3;
\c contrib_regression
DROP DATABASE regress_pgbatch_upgrade;
