
# 021_proxy.pl
#
# A proxy per endpoint, against test/fake_proxy.py on loopback (an HTTP proxy
# with a password, the same over TLS, a SOCKS5 proxy), in front of the fake
# API:
#
# 1. The proxy settings of the server's environment are never used: with
#    http_proxy set when the server starts, an endpoint without a proxy goes
#    straight to the API.
# 2. http://user:password@proxy, socks5h://user:password@proxy and
#    https://user:password@proxy (its CA in tls.proxy_ca) carry every
#    request; endpoint_status shows the proxy without its password.  An
#    https proxy whose certificate is not trusted is refused.
# 3. The SSRF guard applies to the target through a proxy: a redirect to a
#    host outside pgbatch.allowed_hosts fails host_not_allowed, even though
#    the connection to the proxy could carry it without a new socket.
# 4. ... and to the proxy: once pgbatch.allowed_hosts no longer lists it,
#    nothing goes through it.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_worker_node sql start_fake_api fake_api_json start_fake_proxy wait_batch_done);
use PostgreSQL::Test::Utils;
use PostgreSQL::Test::Cluster;
use Test::More;

my $dir = PostgreSQL::Test::Utils::tempdir('proxy');
PostgreSQL::Test::Utils::append_to_file("$dir/san.ext", "subjectAltName = IP:127.0.0.1\n");
system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=pgbatch test proxy'"
	  . " -addext 'subjectAltName = IP:127.0.0.1' -keyout $dir/proxy.key -out $dir/proxy.crt 2>/dev/null") == 0
  or die "making the proxy's certificate failed";
my $proxy_ca = PostgreSQL::Test::Utils::slurp_file("$dir/proxy.crt");

my $api = start_fake_api();
my $a_port = $api->{port};
my $log = "$dir/proxy.log";
my $p_port = start_fake_proxy('--mode', 'http', '--auth', 'u:pw', '--log', $log);
my $s_port = start_fake_proxy('--mode', 'socks5', '--auth', 'u:pw', '--log', $log);
my $h_port = start_fake_proxy('--mode', 'http', '--auth', 'u:pw', '--log', $log,
	'--tls-cert', "$dir/proxy.crt", '--tls-key', "$dir/proxy.key");

# 1. the environment's proxy is not used
my $node;
{
	local $ENV{http_proxy} = "http://u:pw\@127.0.0.1:$p_port";
	local $ENV{HTTP_PROXY} = "http://u:pw\@127.0.0.1:$p_port";
	local $ENV{ALL_PROXY} = "http://u:pw\@127.0.0.1:$p_port";
	$node = new_worker_node('proxy', "pgbatch.poll_interval = '200ms'\n");
}

# proxied($path): requests through a proxy to that path, by kind
sub proxied
{
	my ($path) = @_;
	my %n;
	return \%n unless -e $log;
	for (split /\n/, PostgreSQL::Test::Utils::slurp_file($log))
	{
		$n{forward}++ if /"kind": "forward"/ && /"path": "\Q$path\E[?"]/;
		$n{tunnel}++ if /"kind": "(?:socks|connect)"/;
	}
	return \%n;
}

# run($name, $n): submits $n items to pipeline $name, waits until it is done,
# returns 'status completed failed'
sub run
{
	my ($name, $n) = @_;
	sql(qq{SELECT batch.submit('$name', (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, $n) i), name => '$name')});
	return wait_batch_done($name, 60);
}

sql(qq{
CREATE EXTENSION pgbatch;
SELECT batch.create_endpoint('direct', 'http://127.0.0.1:$a_port');
SELECT batch.create_endpoint('viahttp', 'http://127.0.0.1:$a_port', proxy => 'http://u:pw\@127.0.0.1:$p_port');
SELECT batch.create_endpoint('viasocks', 'http://127.0.0.1:$a_port', proxy => 'socks5h://u:pw\@127.0.0.1:$s_port');
SELECT batch.create_endpoint('viahttps', 'http://127.0.0.1:$a_port', proxy => 'https://u:pw\@127.0.0.1:$h_port',
	tls => jsonb_build_object('proxy_ca', \$pem\$$proxy_ca\$pem\$));
SELECT batch.create_endpoint('untrusted', 'http://127.0.0.1:$a_port', proxy => 'https://u:pw\@127.0.0.1:$h_port');
SELECT batch.create_endpoint('redir', 'http://127.0.0.1:$a_port', proxy => 'http://u:pw\@127.0.0.1:$p_port',
	follow_redirects => true);
});
for my $name (qw(direct viahttp viasocks viahttps untrusted))
{
	sql(qq{SELECT batch.create_pipeline('$name', '[{"name": "call", "http": {"endpoint": "$name", "path": "/$name"}}]',
		retry => '{"max_retries": 0}')});
}
sql(qq{SELECT batch.create_pipeline('redir',
	'[{"name": "call", "http": {"endpoint": "redir", "path": "/redirect?to=http://localhost:$a_port/stolen"}}]',
	retry => '{"max_retries": 0}')});

is(run('direct', 10), 'completed 10 0', 'an endpoint without a proxy completes');
is(proxied('/direct')->{forward} // 0, 0, "no request went through the environment's proxy");

# 2. through each kind of proxy
is(run('viahttp', 20), 'completed 20 0', 'through an http:// proxy with a password: all complete');
is(proxied('/viahttp')->{forward}, 20, 'the proxy carried all 20 requests');
is(sql(q{SELECT proxy FROM batch.endpoint_status WHERE name = 'viahttp'}), "http://127.0.0.1:$p_port",
	'endpoint_status shows the proxy without its password');

is(run('viasocks', 10), 'completed 10 0', 'through a socks5h:// proxy with a password: all complete');
cmp_ok(proxied('/none')->{tunnel} // 0, '>=', 1, 'the SOCKS proxy opened the connections');

is(run('viahttps', 10), 'completed 10 0', 'through an https:// proxy whose CA is tls.proxy_ca: all complete');
is(proxied('/viahttps')->{forward}, 10, 'the TLS proxy carried all 10 requests');

is(run('untrusted', 2), 'failed 0 2', 'an https:// proxy with an untrusted certificate is refused');
is(sql(q{SELECT DISTINCT error_code FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'untrusted'}),
	'transport_error', '... as a transport_error');
is(proxied('/untrusted')->{forward} // 0, 0, '... and nothing went through it');

# 3. and 4. the SSRF guard: the target through the proxy, and the proxy
sql(qq{ALTER SYSTEM SET pgbatch.allowed_hosts = '127.0.0.1:$a_port, 127.0.0.1:$p_port';
	SELECT pg_reload_conf();});
sleep(1);
is(run('redir', 3), 'failed 0 3', 'a redirect through the proxy to a host outside allowed_hosts fails');
is(sql(q{SELECT DISTINCT error_code FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'redir'}),
	'host_not_allowed', '... with host_not_allowed');
is(proxied('/stolen')->{forward} // 0, 0, '... and the proxy never carried it');
is(fake_api_json($api, '/_stats?keys=0')->{paths}{'/stolen'} // 0, 0, '... nor did the API see it');

my $tunnels = proxied('/none')->{tunnel};
sql(q{SELECT batch.submit('viasocks', '[{"n": 1}, {"n": 2}]', name => 'viasocks2')});
is(wait_batch_done('viasocks2', 60), 'failed 0 2', 'a proxy outside allowed_hosts carries nothing');
is(sql(q{SELECT DISTINCT error_code FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'viasocks2'}),
	'host_not_allowed', '... the items fail host_not_allowed');
is(proxied('/none')->{tunnel}, $tunnels, '... and no connection went through it');

done_testing();
