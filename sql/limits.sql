--
-- limits: the SSRF guard (pgbatch.allowed_hosts), the limits on what one
-- call or role may create, the default stage timeout, and endpoint secrets
-- that only admins read back.
-- Every violation is a clear error and loses nothing already stored.
--
CREATE ROLE regress_lim_op IN ROLE pgbatch_operator;
CREATE ROLE regress_lim_other IN ROLE pgbatch_operator;
CREATE ROLE regress_lim_reader IN ROLE pgbatch_reader;
CREATE FUNCTION public.lim_echo(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT p $$;
SELECT batch.create_pipeline('lim', '[{"name": "echo", "sql": "public.lim_echo"}]') > 0 AS created;

-- unset, any http(s) host is allowed
SHOW pgbatch.allowed_hosts;
SELECT batch_internal.url_check('http://169.254.169.254/latest') IS NULL AS allowed;
SELECT batch_internal.url_check('ftp://example.com/');

-- set by a superuser only
SET ROLE regress_lim_op;
SET pgbatch.allowed_hosts = '*';
RESET ROLE;
SET pgbatch.allowed_hosts = 'api.example.com, *.llm.example:8443, 127.0.0.1:18080, [::1]';
SELECT u, batch_internal.url_check(u) AS refused FROM (VALUES
	('https://api.example.com/v1'),
	('http://API.Example.COM./v1'),
	('https://api.example.com:444/'),
	('https://eu.llm.example:8443/v1'),
	('https://a.b.llm.example:8443/'),
	('https://llm.example:8443/'),
	('https://eu.llm.example/'),
	('http://127.0.0.1:18080/'),
	('http://127.0.0.1:18081/'),
	('http://[::1]:5432/'),
	('http://169.254.169.254/latest/meta-data'),
	('http://api.example.com.evil.org/'),
	('http://evil.org/#@api.example.com'),
	('http://evil.org/?api.example.com'),
	('http://2130706433/'),
	('file:///etc/passwd'),
	('gopher://api.example.com/')) v(u);
SET pgbatch.allowed_hosts = 'bad host';
SET pgbatch.allowed_hosts = 'api.example.com:99999';
SET pgbatch.allowed_hosts = '[::1';

-- an endpoint outside the list cannot be created, or moved outside it
SELECT batch.create_endpoint('meta', 'http://169.254.169.254');
SELECT batch.create_endpoint('ok', 'https://api.example.com') > 0 AS created;
SELECT batch.alter_endpoint('ok', base_url => 'https://internal.corp');
SELECT name, base_url FROM batch.endpoints ORDER BY id;

-- the guard applies to an endpoint's proxy as to its base URL
SELECT u, batch_internal.proxy_check(u) AS refused FROM (VALUES
	('http://127.0.0.1:18080'),
	('socks5h://[::1]:1080'),
	('http://user:pw@api.example.com:443'),
	('http://127.0.0.1:3128'),
	('socks5://10.0.0.1:1080'),
	('file:///tmp/x')) v(u);
SELECT batch.create_endpoint('via', 'https://api.example.com', proxy => 'socks5://10.0.0.1:1080');
SELECT batch.alter_endpoint('ok', proxy => 'http://u:pw@internal.corp:3128');
SELECT batch.alter_endpoint('ok', proxy => 'http://127.0.0.1:18080');
SELECT name, proxy FROM batch.endpoint_status ORDER BY id;
SELECT batch.alter_endpoint('ok', proxy => '');
RESET pgbatch.allowed_hosts;

-- endpoint headers: write-only for everyone but admins, never in errors or views
SET ROLE regress_lim_op;
SELECT batch.create_endpoint('lim_mine', 'https://api.example.com',
	headers => '{"Authorization": "Bearer sk-op-0123456789"}') > 0 AS created;
SELECT headers FROM batch.endpoints WHERE name = 'lim_mine';
SELECT name, base_url, created_by FROM batch.endpoints WHERE name = 'lim_mine';
SELECT batch.alter_endpoint('lim_mine', headers => '{"Authorization": "Bearer sk-op-rotated-99"}');
SELECT batch.alter_endpoint('lim_mine', headers => '{"Authorization": "Bearer sk-bad\r\nX-Evil: 1"}');
SELECT count(*) AS leaks FROM batch.endpoint_status s WHERE s::text LIKE '%sk-op%';
RESET ROLE;
SELECT headers FROM batch.endpoints WHERE name = 'lim_mine';
SET ROLE regress_lim_other;
SELECT batch.alter_endpoint('lim_mine', base_url => 'https://attacker.example');
SELECT batch.drop_endpoint('lim_mine');
UPDATE batch.endpoints SET base_url = 'https://attacker.example' WHERE name = 'lim_mine';
RESET ROLE;
SET ROLE regress_lim_reader;
SELECT name FROM batch.endpoints WHERE name = 'lim_mine';
SELECT headers FROM batch.endpoints;
RESET ROLE;
SELECT base_url FROM batch.endpoints WHERE name = 'lim_mine';

-- items per call
SET ROLE regress_lim_op;
SELECT batch.submit('lim', '[{"n": 1}, {"n": 2}]', name => 'lim1') AS lim1 \gset
SET pgbatch.max_items_per_call = 1;
RESET ROLE;
SET pgbatch.max_items_per_call = 3;
SET ROLE regress_lim_op;
SELECT batch.submit('lim', '[{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]', name => 'lim2');
SELECT batch.add_items('lim1', '[{"n": 3}, {"n": 4}, {"n": 5}, {"n": 6}]');
SELECT batch.add_items('lim1', '[{"n": 3}, {"n": 4}, {"n": 5}]');
SELECT name, total FROM batch.progress WHERE name LIKE 'lim%' ORDER BY name;
RESET ROLE;
RESET pgbatch.max_items_per_call;

-- pipelines and stages
SET pgbatch.max_stages = 2;
SELECT batch.create_pipeline('three', '[{"name": "a", "sql": "public.lim_echo"},
	{"name": "b", "sql": "public.lim_echo"}, {"name": "c", "sql": "public.lim_echo"}]');
SELECT batch.create_pipeline('two', '[{"name": "a", "sql": "public.lim_echo"},
	{"name": "b", "sql": "public.lim_echo"}]') > 0 AS created;
SELECT count(*) AS pipelines FROM batch.pipelines \gset
SELECT set_config('pgbatch.max_pipelines', :'pipelines', false) IS NOT NULL AS set;
SELECT batch.create_pipeline('one_too_many', '[{"name": "a", "sql": "public.lim_echo"}]');
SELECT count(*) = :pipelines AS unchanged FROM batch.pipelines;
RESET pgbatch.max_stages;
RESET pgbatch.max_pipelines;

-- payload size: too large an item is stored as failed, the rest go on
SET pgbatch.max_payload_size = 100;
SET ROLE regress_lim_op;
SELECT batch.submit('lim', jsonb_build_array(jsonb_build_object('n', 1),
	jsonb_build_object('n', 2, 'blob', repeat('x', 200))), name => 'lim3') AS lim3 \gset
SELECT status, error_code, error_message FROM batch.items WHERE batch_id = :lim3 ORDER BY id;
RESET ROLE;
RESET pgbatch.max_payload_size;

-- endpoints per role: a role at pgbatch.max_endpoints_per_role creates no
-- more, other roles still can, and a dropped one makes room
SET pgbatch.max_endpoints_per_role = 2;
SET ROLE regress_lim_op;
SET pgbatch.max_endpoints_per_role = 1000;
SELECT batch.create_endpoint('lim_mine2', 'https://api.example.com') > 0 AS created;
SELECT batch.create_endpoint('lim_mine3', 'https://api.example.com');
RESET ROLE;
SET ROLE regress_lim_other;
SELECT batch.create_endpoint('lim_other', 'https://api.example.com') > 0 AS created;
RESET ROLE;
SET ROLE regress_lim_op;
SELECT batch.drop_endpoint('lim_mine2');
SELECT batch.create_endpoint('lim_mine3', 'https://api.example.com') > 0 AS created;
SELECT batch.drop_endpoint('lim_mine3');
RESET ROLE;
RESET pgbatch.max_endpoints_per_role;

-- a stage that sets no timeout gets pgbatch.stage_timeout (superusers set it)
CREATE FUNCTION public.lim_sleep(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT pg_sleep(2); SELECT p $$;
SELECT batch.create_pipeline('lim_slow', '[{"name": "sleep", "sql": "public.lim_sleep"}]',
	retry => '{"max_retries": 0}') > 0 AS created;
SET ROLE regress_lim_op;
SET pgbatch.stage_timeout = '1h';
SELECT batch.submit('lim_slow', '[{"n": 1}]', name => 'lim_slow') AS lim_slow \gset
RESET ROLE;
SET pgbatch.stage_timeout = '100ms';
SELECT items_failed FROM batch.run('lim_slow');
SELECT status, error_code, error_message FROM batch.items WHERE batch_id = :lim_slow;
RESET pgbatch.stage_timeout;

SELECT batch.drop_endpoint('lim_mine');
DROP FUNCTION public.lim_echo(jsonb, jsonb) CASCADE;
DROP FUNCTION public.lim_sleep(jsonb, jsonb) CASCADE;
SET client_min_messages = warning;
DROP OWNED BY regress_lim_op, regress_lim_other, regress_lim_reader;
RESET client_min_messages;
DROP ROLE regress_lim_op, regress_lim_other, regress_lim_reader;
