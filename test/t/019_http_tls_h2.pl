
# 019_http_tls_h2.pl
#
# HTTP against a real server: nginx (Debian's nginx-light) on loopback,
# over TLS with a certificate of a CA this test makes with openssl, speaking
# HTTP/2, started and stopped by its own pid.
#
# 1. Never a second send of a request that got its answer: 1,000 items POST
#    over HTTP/2 to nginx, which proxies them to a backend (as an API behind
#    a load balancer).  Every item completes on its first attempt, nginx
#    logged each Idempotency-Key once, over HTTP/2, on a few connections.
#    And an HTTP/2 server (test/fake_h2.py) that resets every stream with
#    INTERNAL_ERROR right after the whole answer: 40 items complete, each
#    sent once.
# 2. TLS per endpoint: the CA given as PEM text is trusted (and only it: an
#    endpoint without it fails with transport_error); a pinned public key
#    that matches lets requests through, one that does not fails them; a
#    client certificate and key are presented where the server demands one.
# 3. Compression: a gzip answer is decoded before it becomes the output.
# 4. A Retry-After on a success pauses nothing.
# 5. A GET carries no body and no Content-Type.
# 6. A failed answer's error message carries the API's own reason
#    (error.message of its JSON body).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_worker_node sql wait_for spawn_server start_nginx);
use PostgreSQL::Test::Utils;
use PostgreSQL::Test::Cluster;
use Test::More;
use Time::HiRes qw(usleep);

my $dir = PostgreSQL::Test::Utils::tempdir('tls');

# a CA, a server certificate for 127.0.0.1 it signed, a client certificate it
# signed, and another CA nobody trusts
for my $ca (qw(ca other))
{
	system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=pgbatch test $ca'"
		  . " -keyout $dir/$ca.key -out $dir/$ca.crt 2>/dev/null") == 0
	  or die "making CA $ca failed";
}
PostgreSQL::Test::Utils::append_to_file("$dir/server.ext",
	"subjectAltName = IP:127.0.0.1, DNS:localhost\n");
for my $who (qw(server client))
{
	system("openssl req -newkey rsa:2048 -nodes -subj '/CN=$who' -keyout $dir/$who.key"
		  . " -out $dir/$who.csr 2>/dev/null") == 0
	  or die "making the $who key failed";
	system("openssl x509 -req -in $dir/$who.csr -CA $dir/ca.crt -CAkey $dir/ca.key"
		  . " -CAcreateserial -days 2 -out $dir/$who.crt"
		  . ($who eq 'server' ? " -extfile $dir/server.ext" : '') . " 2>/dev/null") == 0
	  or die "signing the $who certificate failed";
}
my $pin = `openssl x509 -in $dir/server.crt -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`;
chomp $pin;
my $other_pin = `openssl x509 -in $dir/other.crt -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64`;
chomp $other_pin;

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $mtls_port = PostgreSQL::Test::Cluster::get_free_port();
my $backend_port = PostgreSQL::Test::Cluster::get_free_port();
my $ngx = start_nginx(<<"CONF");
	log_format keys '\$http_idempotency_key \$connection \$server_protocol \$request_method \$uri \$status "\$content_type" \$sent_http_content_encoding';
	access_log access.log keys;
	ssl_certificate $dir/server.crt;
	ssl_certificate_key $dir/server.key;
	server {
		listen 127.0.0.1:$port ssl http2;
		# like an API behind a load balancer: the request is read whole,
		# then answered (nginx answering a POST itself, with 'return',
		# would reset the stream before the body was sent: see below)
		location / { proxy_pass http://127.0.0.1:$backend_port; }
		location /gz {
			gzip on; gzip_types application/json; gzip_min_length 0;
			proxy_pass http://127.0.0.1:$backend_port;
		}
		location /ra { add_header Retry-After 30 always; proxy_pass http://127.0.0.1:$backend_port; }
	}
	server {
		listen 127.0.0.1:$backend_port;
		access_log off;
		location / { return 200 '{"ok":true}'; }
		location /gz { return 200 '{"zipped":"$dir $dir $dir $dir $dir $dir"}'; }
		location /ra { return 200 '{"ra":true}'; }
		location /bad { return 422 '{"error":{"message":"max_tokens is too large: 99999","type":"invalid_request_error"}}'; }
	}
	server {
		listen 127.0.0.1:$mtls_port ssl;
		ssl_verify_client on;
		ssl_client_certificate $dir/ca.crt;
		location / { return 200 '{"client":"\$ssl_client_s_dn"}'; }
	}
CONF
my $up = 0;
for (1 .. 100)
{
	$up = system("curl -s -m 1 --cacert $dir/ca.crt -o /dev/null https://127.0.0.1:$port/ok") == 0;
	last if $up;
	usleep(100_000);
}
ok($up, 'nginx answers over TLS')
  or diag(PostgreSQL::Test::Utils::slurp_file("$ngx/stdout"));

# the HTTP/2 server that resets each stream after the whole answer
my $python = -x '/usr/bin/python3' ? '/usr/bin/python3' : 'python3';
spawn_server("$dir/fake_h2.out", $python, "$FindBin::RealBin/../fake_h2.py", '--port', '0',
	'--portfile', "$dir/h2.port", '--pidfile', "$dir/h2.pid", '--cert', "$dir/server.crt",
	'--key', "$dir/server.key", '--log', "$dir/h2.log");
for (1 .. 100)
{
	last if -s "$dir/h2.port";
	usleep(100_000);
}
ok(-s "$dir/h2.port", 'the HTTP/2 server that resets streams listens')
  or diag(PostgreSQL::Test::Utils::slurp_file("$dir/fake_h2.out"));
my $h2_port = PostgreSQL::Test::Utils::slurp_file("$dir/h2.port");

my $node = new_worker_node('tls', "pgbatch.poll_interval = '200ms'\n");
my $ca = PostgreSQL::Test::Utils::slurp_file("$dir/ca.crt");
my $other = PostgreSQL::Test::Utils::slurp_file("$dir/other.crt");
my $client_cert = PostgreSQL::Test::Utils::slurp_file("$dir/client.crt");
my $client_key = PostgreSQL::Test::Utils::slurp_file("$dir/client.key");

# the PEM texts go in as psql variables, so that no quoting is needed
sub sql_with_pems
{
	my ($query) = @_;
	return $node->safe_psql('postgres', $query,
		extra_params => [ '-v', "ca=$ca", '-v', "other=$other",
			'-v', "cert=$client_cert", '-v', "key=$client_key" ]);
}

my $url = "https://127.0.0.1:$port";
sql_with_pems(qq{
CREATE EXTENSION pgbatch;
SELECT batch.create_endpoint('h2', '$url', max_concurrency => 8,
	tls => jsonb_build_object('ca', :'ca'));
SELECT batch.create_endpoint('untrusted', '$url');
SELECT batch.create_endpoint('wrong_ca', '$url', tls => jsonb_build_object('ca', :'other'));
SELECT batch.create_endpoint('pinned', '$url',
	tls => jsonb_build_object('ca', :'ca', 'pinned_public_key', 'sha256//$pin'));
SELECT batch.create_endpoint('mispinned', '$url',
	tls => jsonb_build_object('ca', :'ca', 'pinned_public_key', 'sha256//$other_pin'));
SELECT batch.create_endpoint('mtls', 'https://127.0.0.1:$mtls_port',
	tls => jsonb_build_object('ca', :'ca', 'client_cert', :'cert', 'client_key', :'key'));
SELECT batch.create_endpoint('no_client_cert', 'https://127.0.0.1:$mtls_port',
	tls => jsonb_build_object('ca', :'ca'));
SELECT batch.create_endpoint('reset', 'https://127.0.0.1:$h2_port', max_concurrency => 4,
	tls => jsonb_build_object('ca', :'ca'));
});
sql(q{
SELECT batch.create_pipeline('ok', '[{"name": "call", "http": {"endpoint": "h2", "path": "/ok"}}]',
	retry => '{"max_retries": 3, "backoff_base": "100 ms", "jitter": 0}');
SELECT batch.create_pipeline(e, format('[{"name": "call", "http": {"endpoint": "%s", "path": "/ok"}}]', e)::jsonb,
	retry => '{"max_retries": 0}')
FROM unnest(ARRAY['untrusted', 'wrong_ca', 'pinned', 'mispinned', 'mtls', 'no_client_cert']) e;
SELECT batch.create_pipeline('reset', '[{"name": "call", "http": {"endpoint": "reset", "path": "/x"}}]',
	retry => '{"max_retries": 3, "backoff_base": "100 ms", "jitter": 0}');
SELECT batch.create_pipeline('gz', '[{"name": "call", "http": {"endpoint": "h2", "path": "/gz"}}]');
SELECT batch.create_pipeline('ra', '[{"name": "call", "http": {"endpoint": "h2", "path": "/ra"}}]');
SELECT batch.create_pipeline('bad', '[{"name": "call", "http": {"endpoint": "h2", "path": "/bad"}}]');
SELECT batch.create_pipeline('get', '[{"name": "call", "http": {"endpoint": "h2", "path": "/ok", "method": "GET"}}]');
});

# 1. 1,000 POSTs over HTTP/2, each sent once
sql(q{SELECT batch.submit('ok', (SELECT jsonb_agg(jsonb_build_object('n', n)) FROM generate_series(1, 1000) n), name => 'ok')});
is(wait_for($node, q{SELECT status || ' ' || completed FROM batch.progress WHERE name = 'ok'},
	'completed 1000', 180), 'completed 1000', 'all 1,000 items completed over HTTP/2');
is(sql(q{SELECT count(*) FROM batch.attempts a JOIN batch.batches b ON b.id = a.batch_id
	WHERE b.name = 'ok' AND a.outcome <> 'completed'}), '0',
	'no attempt failed: a stream reset after the whole answer is not an error')
  or diag(sql(q{SELECT string_agg(concat_ws(' ', a.error_code, a.http_status, a.response_size, a.message), E'\n')
	FROM batch.attempts a JOIN batch.batches b ON b.id = a.batch_id WHERE b.name = 'ok' AND a.outcome <> 'completed'}));
my @log = grep { m{ /ok } && m{ POST } } split /\n/, PostgreSQL::Test::Utils::slurp_file("$ngx/access.log");
my %keys;
my %conns;
my %protocols;
for (@log)
{
	my ($key, $conn, $proto) = split / /;
	$keys{$key}++;
	$conns{$conn} = 1;
	$protocols{$proto} = 1;
}
is(scalar(@log), 1000, 'nginx got 1,000 POSTs');
is(scalar(keys %keys), 1000, 'every item was sent');
is(join(' ', grep { $keys{$_} > 1 } sort keys %keys), '',
	'no Idempotency-Key twice: no request that got its answer was sent again');
is(join(',', sort keys %protocols), 'HTTP/2.0', 'over HTTP/2');
cmp_ok(scalar(keys %conns), '<=', 8, 'multiplexed on a few connections (' . scalar(keys %conns) . ')');

# 1b. a stream reset after the whole answer (status, headers, every byte of
# its Content-Length) is not a failure: nothing is sent twice
sql(q{SELECT batch.submit('reset', (SELECT jsonb_agg(jsonb_build_object('n', n)) FROM generate_series(1, 40) n), name => 'reset')});
is(wait_for($node, q{SELECT status || ' ' || completed FROM batch.progress WHERE name = 'reset'},
	'completed 40', 60), 'completed 40', 'all 40 items whose streams were reset after the answer completed')
  or diag(sql(q{SELECT string_agg(concat_ws(' ', a.outcome, a.error_code, a.http_status, a.response_size, a.message), E'\n')
	FROM batch.attempts a JOIN batch.batches b ON b.id = a.batch_id WHERE b.name = 'reset'}));
my @sent = split /\n/, PostgreSQL::Test::Utils::slurp_file("$dir/h2.log");
my %times;
$times{$_}++ for @sent;
is(scalar(@sent), 40, 'the server got 40 requests');
is(join(' ', grep { $times{$_} > 1 } sort keys %times), '', 'none twice')
  or diag(sql(q{SELECT string_agg(concat_ws(' ', a.item_id, a.attempt, a.outcome, a.error_code, a.http_status,
		a.started_at, a.finished_at, a.message), E'\n' ORDER BY a.id)
	FROM batch.attempts a JOIN batch.batches b ON b.id = a.batch_id WHERE b.name = 'reset'
	AND a.item_id IN (SELECT item_id FROM batch.attempts GROUP BY item_id HAVING count(*) > 1
		OR bool_or(outcome <> 'completed'))}));
like(sql(q{SELECT min(o.output::text) FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
	JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'reset'}), qr/"whole": true/,
	'the answer is the output');

#    And an HTTP/2 server (test/fake_h2.py) that resets every stream with
#    INTERNAL_ERROR right after the whole answer: 40 items complete, each
#    sent once.
# 2. TLS per endpoint
sql(q{SELECT batch.submit(e, '[{"n": 1}]', name => 'tls_' || e)
	FROM unnest(ARRAY['untrusted', 'wrong_ca', 'pinned', 'mispinned', 'mtls', 'no_client_cert']) e});
is(wait_for($node, q{SELECT count(*) FROM batch.progress WHERE name LIKE 'tls\_%' AND finished_at IS NOT NULL},
	'6', 60), '6', 'the TLS batches finished');
is(sql(q{SELECT string_agg(substr(b.name, 5) || ' ' || i.status || ' ' || coalesce(i.error_code, '-'), ', ' ORDER BY b.name)
	FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id WHERE b.name LIKE 'tls\_%'}),
	'mispinned failed transport_error, mtls completed -, no_client_cert failed http_400, '
	  . 'pinned completed -, untrusted failed transport_error, wrong_ca failed transport_error',
	'the endpoint CA is trusted (and no other), pins are checked, the client certificate is presented');
like(sql(q{SELECT o.output::text FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
	JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'tls_mtls'}), qr/CN=client/,
	'nginx saw the client certificate');

# 3. a gzip answer is decoded
sql(q{SELECT batch.submit('gz', '[{"n": 1}]', name => 'gz')});
is(wait_for($node, q{SELECT status FROM batch.progress WHERE name = 'gz'}, 'completed', 60), 'completed',
	'the gzip answer completed');
like(sql(q{SELECT o.output ->> 'zipped' FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
	JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'gz'}), qr/^\Q$dir\E/, 'its output is the decoded JSON');
ok((grep { m{ /gz 200 .* gzip$} } split /\n/, PostgreSQL::Test::Utils::slurp_file("$ngx/access.log")),
	'nginx sent it gzip-encoded');

# 4. a Retry-After on a success pauses nothing
sql(q{SELECT batch.submit('ra', (SELECT jsonb_agg(jsonb_build_object('n', n)) FROM generate_series(1, 20) n), name => 'ra')});
is(wait_for($node, q{SELECT status FROM batch.progress WHERE name = 'ra'}, 'completed', 20), 'completed',
	'20 successes with Retry-After: 30 completed at once');
is(sql(q{SELECT count(*) FROM batch.endpoint_status WHERE paused_until IS NOT NULL}), '0',
	'no endpoint is paused');

# 5. a GET has no body and no Content-Type
sql(q{SELECT batch.submit('get', '[{"n": 1}]', name => 'get')});
is(wait_for($node, q{SELECT status FROM batch.progress WHERE name = 'get'}, 'completed', 60), 'completed',
	'the GET completed');
ok((grep { m{ GET /ok 200 "-" } } split /\n/, PostgreSQL::Test::Utils::slurp_file("$ngx/access.log")),
	'the GET carried no Content-Type');

# 6. a failed answer names the API's own reason
sql(q{SELECT batch.submit('bad', '[{"n": 1}]', name => 'bad')});
is(wait_for($node, q{SELECT status FROM batch.progress WHERE name = 'bad'}, 'failed', 60), 'failed',
	'the 422 failed its item');
is(sql(q{SELECT r.error FROM batch.review_queue r JOIN batch.batches b ON b.id = r.batch_id WHERE b.name = 'bad'}),
	'HTTP 422 from POST /bad: max_tokens is too large: 99999',
	"the review queue shows the API's error.message");

$node->stop;
done_testing();
