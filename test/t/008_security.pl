
# 008_security.pl
#
# The security of HTTP work done by the background executors, against two
# fake APIs on loopback: A (inside pgbatch.allowed_hosts) and B (outside).
# One cluster with pgbatch preloaded (2 executors), allowed_hosts set to A's
# host:port in postgresql.conf.  Batches are submitted by an operator role.
#
# 1. SSRF guard.  An endpoint on B cannot be created.  One created before
#    the guard (a superuser's session without it) fails its items with
#    host_not_allowed when used, and B never sees a request.  A redirect
#    from A to B (follow_redirects on) fails the same way without reaching
#    B; a redirect from A to A is followed and completes.
# 2. Secrets.  The endpoint's Authorization header is read from a file by
#    the admin, so no statement carries it.  A echoes the request headers
#    back (?echo_headers=1), in a 200 and in a 400: the key is masked in the
#    stored output and in the stored error body, appears in no batch table,
#    in no executor's pg_stat_activity, and not in the server log; A did
#    receive it.
# 3. Oversized response.  One item among five gets a 1 GiB answer: it fails
#    with response_too_large (pgbatch.max_response_size, 16 MB), the four
#    others complete, and the executors are the same processes as before.
# 4. Stage functions under the executors run as the batch's owner: SET ROLE
#    fails the item, and the owner is who the others ran as.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_worker_node start_fake_api stop_fake_api fake_api_json
  wait_for sql);
use PostgreSQL::Test::Utils;
use Test::More;

my $SECRET = 'sk-pgbatch-test-SECRET-0042-abcdef';

my $api_a = start_fake_api();
my $api_b = start_fake_api();
my $node = new_worker_node('security',
	"pgbatch.allowed_hosts = '127.0.0.1:$api_a->{port}'\n");

# the key lives in a file only the server reads
my $keyfile = PostgreSQL::Test::Utils::tempdir('key') . '/openai.key';
PostgreSQL::Test::Utils::append_to_file($keyfile, "Bearer $SECRET");
chmod 0644, $keyfile;

sql(qq{
CREATE EXTENSION pgbatch;
CREATE ROLE tenant IN ROLE pgbatch_operator;
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO PUBLIC;
CREATE FUNCTION app.escape(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
	IF p ? 'role' THEN
		EXECUTE 'SET ROLE ' || quote_ident(p ->> 'role');
	END IF;
	RETURN jsonb_build_object('user', current_user);
END \$\$;
SELECT batch.create_endpoint('a', '$api_a->{url}', follow_redirects => true,
	headers => jsonb_build_object('Authorization', pg_read_file('$keyfile')),
	max_concurrency => 4);
});

# 1. the SSRF guard
my ($rc, $out, $err) = $node->psql('postgres',
	"SELECT batch.create_endpoint('b', '$api_b->{url}')");
isnt($rc, 0, 'an endpoint outside pgbatch.allowed_hosts cannot be created');
like($err, qr/base_url of endpoint "b" is not allowed: host "127\.0\.0\.1" \(port $api_b->{port}\) is not in pgbatch\.allowed_hosts/,
	'... and the error names the host and the setting');

sql(qq{
SET pgbatch.allowed_hosts = '';
SELECT batch.create_endpoint('b', '$api_b->{url}');
RESET pgbatch.allowed_hosts;
SELECT batch.create_pipeline('old', '[{"name": "call", "http": {"endpoint": "b", "path": "/x"}}]');
SELECT batch.create_pipeline('redir', '[{"name": "call", "http": {"endpoint": "a",
	"path": "/redirect?to=http://127.0.0.1:$api_b->{port}/stolen"}}]');
SELECT batch.create_pipeline('redir_ok', '[{"name": "call", "http": {"endpoint": "a",
	"path": "/redirect?to=http://127.0.0.1:$api_a->{port}/fine"}}]');
SELECT batch.create_pipeline('echo', '[{"name": "call", "http": {"endpoint": "a",
	"path": "/v1/echo?echo_headers=1"}}]', retry => '{"max_retries": 0}');
SELECT batch.create_pipeline('big', '[{"name": "call", "http": {"endpoint": "a",
	"path": "/v1/big"}}]', retry => '{"max_retries": 0}');
SELECT batch.create_pipeline('esc', '[{"name": "escape", "sql": "app.escape"}]');
});

my $pids_before = sql('SELECT string_agg(pid::text, \',\' ORDER BY pid) FROM batch.workers');

sql(q{
SET ROLE tenant;
SELECT batch.submit('old', '[{"n": 1}, {"n": 2}]', name => 'old');
SELECT batch.submit('redir', '[{"n": 1}]', name => 'redir');
SELECT batch.submit('redir_ok', '[{"n": 1}]', name => 'redir_ok');
SELECT batch.submit('echo', '[{"n": 1}, {"n": 2, "fault": "400"}]', name => 'echo');
SELECT batch.submit('big', '[{"n": 1}, {"n": 2}, {"n": 3, "fault": "big=1073741824"}, {"n": 4}, {"n": 5}]',
	name => 'big');
SELECT batch.submit('esc', '[{"n": 1}, {"n": 2, "role": "postgres"}]', name => 'esc');
});

is(wait_for($node,
		"SELECT string_agg(name || ':' || status, ' ' ORDER BY name) FROM batch.progress",
		'big:partial echo:partial esc:partial old:failed redir:failed redir_ok:completed', 120),
	'big:partial echo:partial esc:partial old:failed redir:failed redir_ok:completed',
	'every batch finished');

is(sql(q{SELECT string_agg(DISTINCT error_code || ' ' || attempt, ',') FROM batch.items i
	JOIN batch.batches b ON b.id = i.batch_id WHERE b.name IN ('old', 'redir')}),
	'host_not_allowed 1',
	'an endpoint and a redirect outside the allowed hosts fail with host_not_allowed, at once');
like(sql(q{SELECT error_message FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id
	WHERE b.name = 'redir'}),
	qr/host "127\.0\.0\.1" \(port $api_b->{port}\) is not in pgbatch\.allowed_hosts/,
	'... the message names the refused host');
is(fake_api_json($api_b, '/_stats')->{total}, 0, 'the host outside the list never got a request');
is(sql(q{SELECT o.output ->> 'path' FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
	JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'redir_ok'}),
	'/fine', 'a redirect inside the allowed hosts is followed');

# 2. secrets
my $stats = fake_api_json($api_a, '/_stats/requests?since=0&limit=1000');
ok((grep { $_->{path} eq '/v1/echo' && $_->{auth} } @{ $stats->{requests} }) == 2,
	'the API received the Authorization header');
my $masked = '*' x length($SECRET);
is(sql(q{SELECT o.output -> 'request' -> 'headers' ->> 'authorization'
	FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
	JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'echo'}),
	"Bearer $masked", 'the echoed key is masked in the stored output');
like(sql(q{SELECT a.response_body FROM batch.attempts a JOIN batch.batches b ON b.id = a.batch_id
	WHERE b.name = 'echo' AND a.error_code = 'http_400'}),
	qr/Bearer \Q$masked\E/, '... and in the stored error body');
# (the key is read from its file here too, so that these queries, which the
# test cluster logs, do not carry it either)
is(sql(qq{WITH k AS (SELECT '%' || substr(pg_read_file('$keyfile'), 8) || '%' AS pat)
	SELECT
	(SELECT count(*) FROM batch.outputs, k WHERE output::text LIKE k.pat)
	+ (SELECT count(*) FROM batch.attempts, k WHERE concat(response_body, message) LIKE k.pat)
	+ (SELECT count(*) FROM batch.items, k WHERE concat(payload::text, error_message) LIKE k.pat)
	+ (SELECT count(*) FROM batch.events, k WHERE concat(message, detail::text) LIKE k.pat)
	+ (SELECT count(*) FROM batch.log, k WHERE message LIKE k.pat)
	+ (SELECT count(*) FROM batch.endpoint_status s, k WHERE s::text LIKE k.pat)
	+ (SELECT count(*) FROM pg_stat_activity, k WHERE query LIKE k.pat AND pid <> pg_backend_pid())}),
	0, 'the key is in no batch table, view, or activity');
is(sql(qq{SELECT headers ->> 'Authorization' = pg_read_file('$keyfile') FROM batch.endpoints WHERE name = 'a'}),
	't', 'the admin reads the stored key back');

# 3. a 1 GiB response fails its item only
is(sql(q{SELECT string_agg(i.status || coalesce(':' || i.error_code, ''), ' ' ORDER BY i.id)
	FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'big'}),
	'completed completed failed:response_too_large completed completed',
	'a 1 GiB response fails its own item with response_too_large, and the others complete');
is(sql('SELECT string_agg(pid::text, \',\' ORDER BY pid) FROM batch.workers'),
	$pids_before, 'the executors are the same processes');

# 4. stage functions run as the owner
is(sql(q{SELECT string_agg(i.status || ':' || coalesce(o.output ->> 'user', i.error_code), ' ' ORDER BY i.id)
	FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id
	LEFT JOIN batch.outputs o ON o.item_id = i.id WHERE b.name = 'esc'}),
	'completed:tenant failed:insufficient_privilege',
	'under the executors, a stage runs as the owner and cannot SET ROLE');

stop_fake_api($api_a);
stop_fake_api($api_b);
$node->stop;
unlike(slurp_file($node->logfile), qr/\Q$SECRET\E/, 'the key is nowhere in the server log');
done_testing();
