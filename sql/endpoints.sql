--
-- endpoints: HTTP APIs that stages call, their validation and their
-- secrets; HTTP stages in pipelines.
--
SELECT batch.create_endpoint('llm', 'http://127.0.0.1:8090/',
       headers => '{"Authorization": "Bearer sk-secret"}', max_concurrency => 8,
       rate_limit => 600, timeout => '60 s') > 0 AS created;
SELECT name, base_url, max_concurrency, rate_limit, timeout, follow_redirects FROM batch.endpoints;

-- validation
SELECT batch.create_endpoint('llm', 'http://127.0.0.1:8090');
SELECT batch.create_endpoint('ftp', 'ftp://example.com');
SELECT batch.create_endpoint('file', 'file:///etc/passwd');
SELECT batch.create_endpoint('nohost', 'http://');
SELECT batch.create_endpoint('space', 'http://a b');
SELECT batch.create_endpoint('hdr', 'http://h', headers => '{"X-A": "1\r\nX-Injected: 2"}');
SELECT batch.create_endpoint('hdr', 'http://h', headers => '{"Bad Name": "x"}');
SELECT batch.create_endpoint('hdr', 'http://h', headers => '{"X-N": 5}');
SELECT batch.create_endpoint('hdr', 'http://h', headers => '{"Idempotency-Key": "mine"}');
SELECT batch.create_endpoint('conc', 'http://h', max_concurrency => 0);
SELECT batch.create_endpoint('rate', 'http://h', rate_limit => 0);
SELECT batch.create_endpoint('tmo', 'http://h', timeout => '2 hours');

-- alter: only what is given changes
SELECT batch.alter_endpoint('llm', max_concurrency => 4, timeout => '30 s');
SELECT name, base_url, max_concurrency, rate_limit, timeout FROM batch.endpoints;
SELECT batch.alter_endpoint('nosuch', max_concurrency => 4);
SELECT batch.alter_endpoint('llm', base_url => 'gopher://x');

-- HTTP stages
CREATE FUNCTION app.draft_request(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('model', 'm', 'messages', jsonb_build_array(jsonb_build_object('role', 'user', 'content', p->>'topic'))) $$;
SELECT batch.create_pipeline('web', '[
   {"name": "outline", "sql": "app.outline"},
   {"name": "draft", "http": {"endpoint": "llm", "method": "post", "path": "/v1/chat/completions", "body": "app.draft_request"}},
   {"name": "seo", "http": {"endpoint": "llm", "path": "/v1/seo"}}]') > 0 AS created;
SELECT s.position, s.name, s.kind, s.func, s.method, s.path, e.name AS endpoint
FROM batch.stages s LEFT JOIN batch.endpoints e ON e.id = s.endpoint_id
WHERE pipeline_id = (SELECT id FROM batch.pipelines WHERE name = 'web') ORDER BY position;
SELECT batch.create_pipeline('p', '[{"name": "a", "http": {"endpoint": "nosuch", "path": "/"}}]');
SELECT batch.create_pipeline('p', '[{"name": "a", "http": {"endpoint": "llm", "path": "v1"}}]');
SELECT batch.create_pipeline('p', '[{"name": "a", "http": {"endpoint": "llm", "method": "TRACE"}}]');
SELECT batch.create_pipeline('p', '[{"name": "a", "http": {"endpoint": "llm", "url": "http://x"}}]');
SELECT batch.create_pipeline('p', '[{"name": "a", "http": {"endpoint": "llm", "body": "app.nope"}}]');
SELECT batch.create_pipeline('p', '[{"name": "a", "http": {"endpoint": "llm"}, "sql": "app.outline"}]');
SELECT batch.drop_endpoint('llm');

-- with no background executor (pgbatch is not preloaded here), batch.run()
-- runs the SQL stages and sends the HTTP requests itself: nothing listens on
-- the endpoint's port, so each item's attempt fails, to be retried later
SELECT batch.submit('web', '[{"topic": "w1"}, {"topic": "w2"}]', name => 'b_web') AS wbid \gset
SELECT stages_run, items_completed, retries_scheduled FROM batch.run('b_web');
SELECT status, stage, attempt, error_code FROM batch.items WHERE batch_id = :wbid ORDER BY id;
SELECT stage, attempt, error_code, http_status, message ~ '^POST /v1/chat/completions: Failed to connect to 127.0.0.1 port 8090' AS names_the_call
FROM batch.attempts WHERE batch_id = :wbid AND stage = 'draft' ORDER BY id;
SELECT stages_run FROM batch.run('b_web');

-- endpoint state lives in shared memory, which this (not preloaded) server lacks
SELECT name, in_flight, paused_until, circuit, requests FROM batch.endpoint_status;
SELECT count(*) FROM batch.workers;

-- secrets: operators and readers never see the headers
CREATE ROLE regress_pgb_op2 IN ROLE pgbatch_operator;
CREATE ROLE regress_pgb_rd2 IN ROLE pgbatch_reader;
SET ROLE regress_pgb_op2;
SELECT name, base_url FROM batch.endpoints;
SELECT headers FROM batch.endpoints;
SELECT * FROM batch.endpoints;
SELECT batch.create_endpoint('mine', 'http://h');
RESET ROLE;
SET ROLE regress_pgb_rd2;
SELECT name, max_concurrency FROM batch.endpoint_status;
SELECT count(*) FROM batch.endpoint_status WHERE endpoint_status::text LIKE '%sk-secret%';
SELECT name FROM batch.endpoints;
RESET ROLE;
DROP ROLE regress_pgb_op2, regress_pgb_rd2;


-- TLS per endpoint: checked, stored, the key never shown to non-admins
\set pem_cert '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n'
\set pem_key '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n'
SELECT batch.create_endpoint('tls1', 'https://api.example.com',
	tls => jsonb_build_object('ca', :'pem_cert')) > 0 AS created;
SELECT tls ->> 'ca' = :'pem_cert' AS ca_kept FROM batch.endpoints WHERE name = 'tls1';
SELECT batch.create_endpoint('tls2', 'https://h', tls => '{"verify": false}');
SELECT batch.create_endpoint('tls2', 'https://h', tls => '{"ca": "not a certificate"}');
SELECT batch.create_endpoint('tls2', 'https://h', tls => '{"ca": ""}');
SELECT batch.create_endpoint('tls2', 'https://h', tls => '[]');
SELECT batch.create_endpoint('tls2', 'https://h', tls => jsonb_build_object('client_cert', :'pem_cert'));
SELECT batch.create_endpoint('tls2', 'https://h', tls => jsonb_build_object('client_cert', :'pem_cert', 'client_key', 'secret'));
SELECT batch.create_endpoint('tls2', 'https://h', tls => '{"pinned_public_key": "sha1//abc"}');
SELECT batch.create_endpoint('tls2', 'https://h',
	tls => '{"pinned_public_key": "sha256//AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=;sha256//BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB="}') > 0 AS pinned;
-- alter: the keys given replace those stored, a JSON null removes one
SELECT batch.alter_endpoint('tls1', tls => jsonb_build_object('client_cert', :'pem_cert', 'client_key', :'pem_key'));
SELECT array(SELECT jsonb_object_keys(tls) ORDER BY 1) FROM batch.endpoints WHERE name = 'tls1';
SELECT batch.alter_endpoint('tls1', tls => '{"ca": null}');
SELECT array(SELECT jsonb_object_keys(tls) ORDER BY 1) FROM batch.endpoints WHERE name = 'tls1';
SELECT batch.alter_endpoint('tls1', tls => '{"client_key": null}');
-- a file path reads a file of the server: admins only
CREATE ROLE regress_pgb_op3 IN ROLE pgbatch_operator;
SET ROLE regress_pgb_op3;
SELECT batch.create_endpoint('tls3', 'https://h', tls => '{"ca": "/etc/ssl/certs/ca-certificates.crt"}');
SELECT batch.create_endpoint('tls3', 'https://h', tls => jsonb_build_object('ca', :'pem_cert')) > 0 AS operator_pem;
SELECT tls FROM batch.endpoints;
RESET ROLE;
SELECT batch.create_endpoint('tls4', 'https://h', tls => '{"ca": "/etc/ssl/certs/ca-certificates.crt"}') > 0 AS admin_path;
SELECT batch.drop_endpoint(n) FROM unnest(ARRAY['tls1', 'tls2', 'tls3', 'tls4']) n;
DROP ROLE regress_pgb_op3;

-- pacing: burst 1..10000 (1 by default), shown with the rate factor in use
SELECT batch.create_endpoint('paced', 'https://h', rate_limit => 600, burst => 0);
SELECT batch.create_endpoint('paced', 'https://h', rate_limit => 600) > 0 AS created;
SELECT batch.alter_endpoint('paced', burst => 5);
SELECT name, rate_limit, burst, rate_factor FROM batch.endpoint_status WHERE name = 'paced';
SELECT batch.alter_endpoint('paced', burst => 10001);
SELECT batch.drop_endpoint('paced');

-- LLM tokens per minute: 1..1000000000 or NULL (none); tokens_used starts at 0
SELECT batch.create_endpoint('llm_t', 'https://h', tokens_per_minute => 0);
SELECT batch.create_endpoint('llm_t', 'https://h', tokens_per_minute => 90000) > 0 AS created;
SELECT batch.alter_endpoint('llm_t', tokens_per_minute => 1000000001);
SELECT batch.alter_endpoint('llm_t', tokens_per_minute => 30000);
SELECT name, tokens_per_minute, tokens_used, provider_requests_left, provider_tokens_left
FROM batch.endpoint_status WHERE name = 'llm_t';

-- a proxy per endpoint: http, https, socks5 or socks5h with a port; its
-- password is never shown, nor echoed in an error
SELECT batch.alter_endpoint('llm_t', proxy => 'ftp://proxy.corp:21');
SELECT batch.alter_endpoint('llm_t', proxy => 'http://proxy.corp');
SELECT batch.alter_endpoint('llm_t', proxy => 'http://u:s3cret@proxy.corp:3128/path?x');
SELECT batch.alter_endpoint('llm_t', proxy => 'socks5h://proxy.corp:1080');
SELECT name, proxy FROM batch.endpoint_status WHERE name = 'llm_t';
SELECT batch.alter_endpoint('llm_t', proxy => 'http://u:s3cret@proxy.corp:3128');
SELECT name, proxy FROM batch.endpoint_status WHERE name = 'llm_t';
SELECT proxy = 'http://u:s3cret@proxy.corp:3128' AS admin_reads_it FROM batch.endpoints WHERE name = 'llm_t';
SELECT batch.alter_endpoint('llm_t', tls => '{"proxy_ca": "not a certificate"}');
SELECT batch.alter_endpoint('llm_t', tls => jsonb_build_object('proxy_ca', :'pem_cert'));
SELECT batch.alter_endpoint('llm_t', proxy => '');
SELECT name, proxy, tokens_per_minute FROM batch.endpoint_status WHERE name = 'llm_t';
SELECT batch.drop_endpoint('llm_t');
