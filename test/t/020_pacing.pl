
# 020_pacing.pl
#
# Pacing against a provider's rate limit: nginx (Debian's nginx-light) on
# loopback with limit_req rate=20r/s burst=5 and limit_req_status 429, the
# way an API limits requests per second.  Started and stopped by its own pid.
#
# 1. rate_limit => 1200 a minute (20 a second, the provider's rate): 300 items, 16 at once,
#    2 executors.  Requests go out evenly spaced, so at most 1 % of them
#    meet a 429, and every item completes.  (bench prints the times; this
#    test counts.)
# 2. Too fast: rate_limit => 6000 (100 per second) against the same limit.
#    The 429s halve the endpoint's rate factor (endpoint_status.rate_factor
#    falls below 1), the items that met one are retried, and every item
#    completes.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_worker_node sql wait_for start_nginx);
use PostgreSQL::Test::Utils;
use PostgreSQL::Test::Cluster;
use Test::More;
use Time::HiRes qw(usleep);

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $backend_port = PostgreSQL::Test::Cluster::get_free_port();
my $ngx = start_nginx(<<"CONF");
	log_format keys '\$uri \$status';
	access_log access.log keys;
	limit_req_zone \$server_port zone=api:1m rate=20r/s;
	server {
		listen 127.0.0.1:$port;
		limit_req zone=api burst=5 nodelay;
		limit_req_status 429;
		# limit_req runs before the content phase, so the answer comes from
		# a backend ('return' would answer before limit_req ever ran)
		location / { proxy_pass http://127.0.0.1:$backend_port; }
	}
	server {
		listen 127.0.0.1:$backend_port;
		access_log off;
		location / { return 200 '{"ok":true}'; }
	}
CONF
my $up = 0;
for (1 .. 100)
{
	$up = system("curl -s -m 1 -o /dev/null http://127.0.0.1:$port/probe") == 0;
	last if $up;
	usleep(100_000);
}
ok($up, 'nginx answers') or diag(PostgreSQL::Test::Utils::slurp_file("$ngx/stdout"));
# let the probe's token come back before the paced run starts
usleep(500_000);

my $node = new_worker_node('pacing', "pgbatch.poll_interval = '200ms'\n");
sql(qq{
CREATE EXTENSION pgbatch;
SELECT batch.create_endpoint('paced', 'http://127.0.0.1:$port', max_concurrency => 16, rate_limit => 1200);
SELECT batch.create_endpoint('fast', 'http://127.0.0.1:$port', max_concurrency => 16, rate_limit => 6000);
SELECT batch.create_pipeline('paced', '[{"name": "call", "http": {"endpoint": "paced", "path": "/paced"}}]',
	retry => '{"max_retries": 20, "backoff_base": "200 ms", "backoff_max": "2 s"}');
SELECT batch.create_pipeline('fast', '[{"name": "call", "http": {"endpoint": "fast", "path": "/fast"}}]',
	retry => '{"max_retries": 50, "backoff_base": "200 ms", "backoff_max": "2 s"}');
});

# counts($uri): requests of that path nginx answered, and those with a 429
sub counts
{
	my ($uri) = @_;
	my ($all, $limited) = (0, 0);
	for (split /\n/, PostgreSQL::Test::Utils::slurp_file("$ngx/access.log"))
	{
		my ($u, $status) = split / /;
		next unless $u eq $uri;
		$all++;
		$limited++ if $status eq '429';
	}
	return ($all, $limited);
}

# 1. at the provider's rate: evenly spaced, (almost) no 429
sql(q{SELECT batch.submit('paced', (SELECT jsonb_agg(jsonb_build_object('n', n)) FROM generate_series(1, 300) n), name => 'paced')});
is(wait_for($node, q{SELECT status || ' ' || completed FROM batch.progress WHERE name = 'paced'},
	'completed 300', 120), 'completed 300', 'all 300 paced items completed');
my ($all, $limited) = counts('/paced');
cmp_ok($limited, '<=', $all / 100, "at most 1 % of the paced requests met a 429 ($limited of $all)");

# 2. too fast: the 429s slow the endpoint down, and every item completes
sql(q{SELECT batch.submit('fast', (SELECT jsonb_agg(jsonb_build_object('n', n)) FROM generate_series(1, 200) n), name => 'fast')});
my $lowest = 1;
my $deadline = time() + 120;
while (time() < $deadline)
{
	my ($status, $factor) = split /\|/, sql(q{SELECT p.status, e.rate_factor FROM batch.progress p, batch.endpoint_status e
		WHERE p.name = 'fast' AND e.name = 'fast'});
	$lowest = $factor if $factor < $lowest;
	last if $status eq 'completed';
	usleep(200_000);
}
is(sql(q{SELECT status || ' ' || completed FROM batch.progress WHERE name = 'fast'}), 'completed 200',
	'all 200 items sent too fast completed');
($all, $limited) = counts('/fast');
cmp_ok($limited, '>', 0, "the provider answered 429 ($limited of $all)");
cmp_ok($lowest, '<', 1, "the 429s lowered the endpoint's rate factor (to $lowest)");

$node->stop;
done_testing();
