
# 028_watch_endpoints.pl
#
# pgbatch watch shows the endpoint trouble of its own batch only.  Two
# endpoints on the fake API: batch "b" meets a 429 with Retry-After: 60 on
# endpoint "eb", which pauses it; batch "a" uses endpoint "ea" only.
# `pgbatch --json watch a` (finished: one object) lists no endpoint;
# `pgbatch --json watch b` (waiting out the pause) lists "eb" in its first
# object.
#
# And watch says when notifications cannot reach it: through pgbouncer in
# transaction mode (FIFO server connections, two of them, so that two
# transactions of one client run in different server processes), watch
# warns that it refreshes every 5 s instead, and still shows the batch;
# connected directly, it says nothing of the kind.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use IPC::Run;
use JSON::PP;
use PgBatchTest qw(new_worker_node spawn_server start_fake_api stop_fake_api sql wait_for);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my ($pgbatch) = grep { -x "$_/pgbatch" } split /:/, $ENV{PATH};
die 'pgbatch is not in PATH: run "make -C cli install" (or the top-level make install) first'
  unless defined $pgbatch;
$pgbatch .= '/pgbatch';

my $node = new_worker_node('watch_endpoints');
my $api = start_fake_api();
my $port = $api->{port};
sql(qq{
CREATE EXTENSION pgbatch;
SELECT batch.create_endpoint('ea', 'http://127.0.0.1:$port', timeout => '10 s');
SELECT batch.create_endpoint('eb', 'http://127.0.0.1:$port', timeout => '10 s');
SELECT batch.create_pipeline('pa', '[{"name": "call", "http": {"endpoint": "ea", "method": "POST", "path": "/v1/a"}}]');
SELECT batch.create_pipeline('pb', '[{"name": "call", "http": {"endpoint": "eb", "method": "POST", "path": "/v1/b"}}]',
	retry => '{"max_retries": 3, "backoff_base": "100 ms", "jitter": 0}');
SELECT batch.submit('pb', '[{"n": 1, "fault": "429:ra=60x1"}]', name => 'b');
});
is(wait_for($node, q{SELECT paused_until IS NOT NULL FROM batch.endpoint_status WHERE name = 'eb'}, 't', 30),
	't', 'endpoint eb is paused by its Retry-After');
sql(q{SELECT batch.submit('pa', '[{"n": 1}]', name => 'a')});
is(wait_for($node, q{SELECT status FROM batch.progress WHERE name = 'a'}, 'completed', 30),
	'completed', 'batch a, on endpoint ea, completed');

# watch_json($batch): the first JSON object pgbatch --json watch prints
sub watch_json
{
	my ($batch, $host, $port) = @_;
	my ($out, $err) = ('', '');
	local %ENV = (%ENV, PGHOST => $host // $node->host, PGPORT => $port // $node->port,
		PGDATABASE => 'postgres');
	my $h = IPC::Run::start([ $pgbatch, '--json', 'watch', $batch ],
		'<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(30));
	for (1 .. 300)
	{
		$h->pump_nb;
		last if $out =~ /\n/;
		usleep(50_000);
	}
	$h->kill_kill;
	my ($line) = split /\n/, $out;
	my $doc = eval { JSON::PP->new->decode($line // '') } // { error => "$err$out" };
	$doc->{stderr} = $err;
	return $doc;
}

my $a = watch_json('a');
is_deeply($a->{endpoints}, [], 'watch a: no endpoint, although eb is paused');
my $b = watch_json('b');
is(join(',', map { $_->{name} } @{ $b->{endpoints} // [] }), 'eb', 'watch b: endpoint eb, paused');

unlike($a->{stderr}, qr/notifications/, 'connected directly, watch does not warn about notifications');

# through pgbouncer in transaction mode
my $dir = PostgreSQL::Test::Utils::tempdir('pgbouncer');
my $bport = PostgreSQL::Test::Cluster::get_free_port();
my $user = $node->safe_psql('postgres', 'SELECT current_user');
PostgreSQL::Test::Utils::append_to_file("$dir/users.txt", qq{"$user" ""\n});
PostgreSQL::Test::Utils::append_to_file("$dir/pgbouncer.ini", <<"INI");
[databases]
postgres = host=@{[ $node->host ]} port=@{[ $node->port ]} dbname=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bport
unix_socket_dir =
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
default_pool_size = 2
min_pool_size = 2
server_round_robin = 1
ignore_startup_parameters = extra_float_digits
logfile = $dir/pgbouncer.log
INI
spawn_server("$dir/stdout", 'pgbouncer', "$dir/pgbouncer.ini");
my $primed = '';
for (1 .. 100)
{
	my $ret = system('psql', '-X', '-q', '-o', '/dev/null', '-h', '127.0.0.1', '-p', $bport,
		'-d', 'postgres', '-c', 'SELECT 1') >> 8;
	$primed = $ret == 0 ? 'ok' : '';
	last if $primed;
	usleep(100_000);
}
is($primed, 'ok', 'pgbouncer answers');
# two clients at once make it open its second server connection
my @busy = map {
	IPC::Run::start([ 'psql', '-X', '-q', '-o', '/dev/null', '-h', '127.0.0.1', '-p', $bport,
		'-d', 'postgres', '-c', 'SELECT pg_sleep(1)' ], '<', \undef, IPC::Run::timeout(30))
} 1 .. 2;
$_->finish for @busy;
is(wait_for($node, q{SELECT count(*) FROM pg_stat_activity WHERE datname = 'postgres'
		AND backend_type = 'client backend' AND pid <> pg_backend_pid()}, '2', 30), '2',
	'pgbouncer holds its two server connections');
my $pooled = watch_json('a', '127.0.0.1', $bport);
like($pooled->{stderr}, qr/warning: notifications do not reach this connection: refreshing every 5 s instead/,
	'through pgbouncer in transaction mode, watch warns that it cannot LISTEN');
like($pooled->{stderr}, qr/hint: .*pool_mode = transaction/, '... and says why');
is($pooled->{progress}{status}, 'completed', '... and still shows the batch');

stop_fake_api($api);
$node->stop;
done_testing();
