
# 027_health.pl
#
# Nothing running is never silent.  batch.health says, per database, whether
# executors serve it, how many, since when, and if not why not; submit warns
# when nothing will run a batch's HTTP stages.
#
#  1. A server without pgbatch in shared_preload_libraries: health says so,
#     and submit's WARNING gives the fix.
#  2. A server whose max_worker_processes leaves room for the launcher and
#     two executors: database "one" gets them; "two", registered after,
#     gets none, and health there names max_worker_processes.  The databases
#     without the extension ("postgres", "nox") never had an executor
#     started for them (health's started: 0): the launcher starts executors
#     only in databases registered as having the extension.
#  3. The registry survives a restart: "one" is served again at once, with
#     no call of pgbatch there, and "nox" still gets no executor.
#  4. The kill switch: health says 'paused'.  pgbatch.databases leaving
#     "one" out: its executors stop, health and submit say why.
#  5. DROP EXTENSION: the database leaves the registry file.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use IPC::Run;
use JSON::PP;
use PgBatchTest qw(new_node new_worker_node sql wait_for);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# the command-line tool, installed in the bindir (first in PATH)
my ($pgbatch) = grep { -x "$_/pgbatch" } split /:/, $ENV{PATH};
die 'pgbatch is not in PATH: run "make -C cli install" (or the top-level make install) first'
  unless defined $pgbatch;
$pgbatch .= '/pgbatch';

# cli($node, $db, @args): runs pgbatch against a database; returns
# (exit status, stdout, stderr)
sub cli
{
	my ($node, $db, @args) = @_;
	my ($out, $err) = ('', '');
	local %ENV = (%ENV, PGHOST => $node->host, PGPORT => $node->port, PGDATABASE => $db);
	IPC::Run::run([ $pgbatch, @args ], '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(60));
	return ($? >> 8, $out, $err);
}

my $setup = q{
CREATE EXTENSION pgbatch;
SELECT batch.create_endpoint('api', 'https://api.example.com');
SELECT batch.create_pipeline('web', '[{"name": "get", "http": {"endpoint": "api", "method": "GET", "path": "/x"}}]');
};

# health's row for database $db, seen from database $from
sub health_of
{
	my ($node, $from, $db, $cols) = @_;
	return $node->safe_psql($from,
		"SELECT $cols FROM batch.health WHERE database = '$db'");
}

# ---------------------------------------------------------------- 1
my $plain = new_node('health_plain');
sql($setup);
my ($ret, $out, $err) = $plain->psql('postgres',
	q{SELECT batch.submit('web', '[{"n": 1}]', name => 'b1') > 0});
is($ret, 0, 'submit succeeds without the preload');
like($err, qr/WARNING:  no executor will run the HTTP stages of batch "b1": pgbatch is not in shared_preload_libraries/,
	'submit warns that nothing will run the batch');
like($err, qr/HINT:  Add pgbatch to shared_preload_libraries in postgresql.conf and restart the server/,
	'... and gives the fix');
is(health_of($plain, 'postgres', 'postgres', 'state, executors, wanted, reason'),
	'not served|0|0|pgbatch is not in shared_preload_libraries', 'health says the same');
($ret, $out, $err) = $plain->psql('postgres',
	q{CREATE FUNCTION public.noop(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT ''{}''::jsonb';
	  SELECT batch.create_pipeline('sqlonly', '[{"name": "s", "sql": "public.noop"}]');
	  SELECT batch.submit('sqlonly', '[{"n": 1}]', name => 'b2') > 0});
unlike($err, qr/WARNING/, 'no warning for a pipeline without HTTP stages (batch.run() runs it)');
($ret, $out, $err) = cli($plain, 'postgres', 'status');
like($out, qr/^executors: not served: pgbatch is not in shared_preload_libraries\n  Add pgbatch to shared_preload_libraries/m,
	'pgbatch status says first that nothing runs, and the fix');
like($out, qr/^\s*id\s+batch\s+status/m, '... then shows the batches');
$plain->stop;

# ---------------------------------------------------------------- 2
# the launcher and two executors: nothing is left for a second database
# (the fourth is the logical replication launcher's)
my $node = new_worker_node('health', "max_worker_processes = 4\nmax_parallel_workers = 0\n");
# a new data directory has no registry: the launcher looks into each
# database once, then writes it
my $registry = $node->data_dir . '/pgbatch_databases';
for (1 .. 150) { last if -e $registry; usleep(200_000); }
ok(-e $registry, 'the launcher wrote its registry once it had looked into every database');
is(slurp_file($registry) =~ tr/\n//, 1, '... which lists none (only its header line)');
$node->safe_psql('postgres', 'CREATE DATABASE one; CREATE DATABASE two; CREATE DATABASE nox;');
$node->safe_psql('one', $setup);
is(wait_for($node, q{SELECT state || '|' || executors FROM batch.health WHERE database = 'one'},
		'serving|2', 30, 'one'), 'serving|2', 'database one is served by its two executors');
$node->safe_psql('two', $setup);
is(wait_for($node, q{SELECT state FROM batch.health WHERE database = 'two'}, 'not served', 30, 'two'),
	'not served', 'database two is not served');
is(health_of($node, 'two', 'two', 'executors, wanted, reason'),
	'0|2|2 of 2 executors could not start: max_worker_processes (4) is exhausted',
	'health names max_worker_processes');
like(health_of($node, 'two', 'two', 'hint'), qr/Raise max_worker_processes/, '... and says what to do');
($ret, $out, $err) = $node->psql('two', q{SELECT batch.submit('web', '[{"n": 1}]', name => 'w2') > 0});
like($err, qr/WARNING:  no executor will run the HTTP stages of batch "w2": 2 of 2 executors could not start: max_worker_processes \(4\) is exhausted/,
	"submit in two warns, naming max_worker_processes");
like(health_of($node, 'one', 'one', 'since'), qr/^\d{4}-/, 'health says since when one is served');

# the command-line tool says the same
($ret, $out, $err) = cli($node, 'two', 'health');
is($ret, 0, 'pgbatch health exits with 0');
like($out, qr/^two\s+not served\s+0\/2\s+0\s+2 of 2 executors could not start: max_worker_processes \(4\) is exhausted$/m,
	'pgbatch health: two is not served, and why');
like($out, qr/^one\s+serving\s+2\/2\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+2\s*$/m, '... one is served by two executors');
like($out, qr/^two: Raise max_worker_processes and restart the server/m, '... and what to do about two');
($ret, $out, $err) = cli($node, 'two', '--json', 'health');
my ($row) = grep { $_->{database} eq 'two' } @{ JSON::PP->new->decode($out) };
is_deeply([ @{$row}{qw(state executors wanted)} ], [ 'not served', 0, 2 ], 'pgbatch --json health');
($ret, $out, $err) = cli($node, 'two', 'status');
like($out, qr/^executors: not served: 2 of 2 executors could not start: max_worker_processes \(4\) is exhausted$/m,
	'pgbatch status in two says that nothing runs there');
($ret, $out, $err) = cli($node, 'one', 'status');
unlike($out, qr/executors:/, 'pgbatch status in one, served as wanted, says nothing of its executors');

# the launcher reconciles on every wake-up: give it a few
$node->safe_psql('one', qq{SELECT batch.submit('web', '[{"n": 1}]', name => 'w1_$_')}) for 1 .. 3;
$node->safe_psql('postgres', 'SELECT pg_reload_conf()');
usleep(1_500_000);
is(health_of($node, 'one', 'nox', 'state, executors, started, reason'),
	'not served|0|0|the extension is not installed here, or has not been used since this database was copied or upgraded',
	'no executor was ever started in database nox, which lacks the extension');
is(health_of($node, 'one', 'postgres', 'executors, started'), '0|1',
	'database postgres, without the extension, had one executor start: the look before the registry was written');
is(health_of($node, 'one', 'one', 'started'), '2', 'database one had two executor starts');

# ---------------------------------------------------------------- 3
my $oids = $node->safe_psql('postgres',
	q{SELECT string_agg(oid::text, ',' ORDER BY oid) FROM pg_database WHERE datname IN ('one', 'two')});
$node->restart;
is(join(',', sort { $a <=> $b } grep { /^\d+$/ } split /\n/, slurp_file($registry)), $oids,
	'the registry file lists the two databases with the extension');
is(wait_for($node, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgbatch executor'
		AND datname = 'one'}, '2', 30), '2',
	'after a restart, one is served again with no call of pgbatch there');
usleep(1_000_000);
is(health_of($node, 'one', 'nox', 'started'), '0', 'and nox still had no executor');
is(health_of($node, 'one', 'postgres', 'started'), '0', 'nor postgres: the registry is trusted');

# without the registry (pg_upgrade makes a data directory without it), the
# launcher looks into each database once: one is found and served again
$node->stop;
unlink $registry or die "unlink $registry: $!";
$node->append_conf('postgresql.conf', "max_worker_processes = 16\n");
$node->start;
is(wait_for($node, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgbatch executor'
		AND datname = 'one'}, '2', 30), '2',
	'with the registry gone, one is found by a look and served again');
my $listed = '';
for (1 .. 150)
{
	$listed = -e $registry ? join(',', sort { $a <=> $b } grep { /^\d+$/ } split /\n/, slurp_file($registry)) : '';
	last if $listed eq $oids;
	usleep(200_000);
}
is($listed, $oids, '... and the registry is written anew, with one and two');
is(health_of($node, 'one', 'nox', 'started'), '1', 'nox had its one look');

# ---------------------------------------------------------------- 4
$node->safe_psql('postgres', q{ALTER SYSTEM SET pgbatch.enabled = off; SELECT pg_reload_conf();});
is(wait_for($node, q{SELECT state FROM batch.health WHERE database = 'one'}, 'paused', 30, 'one'),
	'paused', 'with the kill switch off, health says paused');
like(health_of($node, 'one', 'one', 'reason'), qr/pgbatch.enabled is off/, '... and why');
$node->safe_psql('postgres', q{ALTER SYSTEM SET pgbatch.enabled = on;
	ALTER SYSTEM SET pgbatch.databases = 'two'; SELECT pg_reload_conf();});
is(wait_for($node, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgbatch executor'
		AND datname = 'one'}, '0', 30), '0',
	'the executors of a database pgbatch.databases leaves out stop');
is(wait_for($node, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgbatch executor'
		AND datname = 'two'}, '2', 30), '2', '... and those of the one it names start');
is(health_of($node, 'one', 'one', 'state, reason'),
	'not served|pgbatch.databases does not name this database', 'health says why one is not served');
($ret, $out, $err) = $node->psql('one', q{SELECT batch.submit('web', '[{"n": 1}]', name => 'w9') > 0});
like($err, qr/no executor will run the HTTP stages of batch "w9": pgbatch.databases does not name this database/,
	'submit in one warns');
$node->safe_psql('postgres', q{ALTER SYSTEM RESET pgbatch.databases; SELECT pg_reload_conf();});

# ---------------------------------------------------------------- 5
$node->safe_psql('two', 'DROP EXTENSION pgbatch CASCADE');
my $one_oid = $node->safe_psql('postgres', q{SELECT oid FROM pg_database WHERE datname = 'one'});
$listed = '';
for (1 .. 100)
{
	$listed = join(',', grep { /^\d+$/ } split /\n/, slurp_file($registry));
	last if $listed eq $one_oid;
	usleep(200_000);
}
is($listed, $one_oid, 'after DROP EXTENSION in two, the registry lists only one');
is(wait_for($node, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgbatch executor'
		AND datname = 'two'}, '0', 30), '0', 'and two has no executor');

$node->stop;
done_testing();
