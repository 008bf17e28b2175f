
# 006_lifecycle.pl
#
# Tests the life cycle of pgbatch's background workers: what happens to the
# executors when the extension or their database goes away while they are
# busy, the kill switch, the wake-up at commit, and fairness between batches.
#
#   1. DROP EXTENSION pgbatch while the executors have slow HTTP requests in
#      flight (the fake API answers after 3 s) returns (bounded: 60 s) and
#      succeeds; the executors of that database exit, and stay gone.
#   2. CREATE EXTENSION again brings two executors back, and they work.
#   3. DROP DATABASE of a second database whose executors are busy succeeds
#      (bounded: 60 s); its executors are gone, the other database's stay.
#   4. pgbatch.enabled = off (ALTER SYSTEM + reload): a batch submitted then
#      stays pending, with no attempt, while it is off; on again, it
#      completes.  Requests in flight when it is switched off finish and
#      are recorded.
#   5. Wake-up: with pgbatch.poll_interval = 60s, a submitted batch still
#      completes within 20 s, because submit wakes the executors at commit.
#   6. Fairness: a 20,000-item batch submitted first and a 20-item batch
#      after it: the small one finishes first (batch.progress.finished_at).
# No server process may crash in any of this (checked in the server log).
# Nothing is asserted about speed beyond the generous bounds above.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_worker_node start_fake_api stop_fake_api fake_api_json wait_for sql);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $TIMEOUT = 60;    # seconds; bounds every psql call below

my $node = new_worker_node('lifecycle');
my $api = start_fake_api();
my $port = $api->{port};


# runs a statement with a bound; returns (success, seconds taken, stderr)
sub bounded
{
	my ($query, $db) = @_;
	my $timed_out;
	my $t0 = time();
	my ($ret, $out, $err) = $node->psql($db // 'postgres', $query,
		timeout => $TIMEOUT, timed_out => \$timed_out);
	return (!$timed_out && defined $ret && $ret == 0, time() - $t0, $err);
}

sub executors
{
	my ($db) = @_;
	return qq{SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'pgbatch executor' AND datname = '$db'};
}

# the extension and what the tests use, in a database
sub setup_db
{
	my ($db) = @_;
	sql(qq{
CREATE EXTENSION pgbatch;
CREATE SCHEMA IF NOT EXISTS app;
CREATE OR REPLACE FUNCTION app.step(payload jsonb, outputs jsonb) RETURNS jsonb
LANGUAGE sql AS \$\$ SELECT jsonb_build_object('n', payload -> 'n') \$\$;
SELECT batch.create_endpoint('fake', 'http://127.0.0.1:$port', max_concurrency => 8);
SELECT batch.create_pipeline('slow',
	'[{"name": "call", "http": {"endpoint": "fake", "method": "POST", "path": "/v1/slow"}}]',
	retry => '{"max_retries": 3, "backoff_base": "200 ms"}');
SELECT batch.create_pipeline('quick', '[{"name": "step", "sql": "app.step"}]');
}, $db);
	return;
}

# submits n items to a pipeline; a fault spec makes every request use it
sub submit
{
	my ($db, $pipeline, $name, $n, $fault) = @_;
	my $f = defined $fault ? ", 'fault', '$fault'" : '';
	return sql(qq{SELECT batch.submit('$pipeline',
		(SELECT jsonb_agg(jsonb_build_object('n', g $f) ORDER BY g)
		 FROM generate_series(1, $n) g), name => '$name')}, $db);
}

# waits until the fake API has at least n requests in flight
sub wait_api_in_flight
{
	my ($n, $timeout) = @_;
	my $deadline = time() + $timeout;
	my $now = 0;
	while (time() < $deadline)
	{
		$now = fake_api_json($api, '/_stats?keys=0')->{in_flight};
		return $now if $now >= $n;
		usleep(100_000);
	}
	return $now;
}

# waits until the fake API has nothing in flight (requests of executors that
# were stopped end when their connections close)
sub wait_api_idle
{
	my $deadline = time() + 20;
	while (time() < $deadline)
	{
		return 1 if fake_api_json($api, '/_stats?keys=0')->{in_flight} == 0;
		usleep(100_000);
	}
	return 0;
}

# no server process crashed since offset
sub no_crash
{
	my ($offset, $what) = @_;
	my $log = slurp_file($node->logfile, $offset);
	my @bad = $log =~ /^.*(?:terminated by signal|PANIC|server process .* exited with exit code [^01]).*$/mg;
	is(join("\n", @bad), '', "$what: no server process crashed");
	return;
}

# reloads after ALTER SYSTEM and waits until new sessions see the value
sub set_and_reload
{
	my ($setting, $value, $shown) = @_;
	sql(defined $value
		? "ALTER SYSTEM SET $setting = '$value'"
		: "ALTER SYSTEM RESET $setting");
	sql('SELECT pg_reload_conf()');
	is(wait_for($node, "SHOW $setting", $shown, 10), $shown, "$setting is now $shown");
	# the executors and the launcher get the reload signal at the same time
	# as the postmaster; give them a moment to act on it
	usleep(1_000_000);
	return;
}

setup_db('postgres');
is(wait_for($node, executors('postgres'), '2', 30), '2', 'two executors run in postgres');

# ==== 1. DROP EXTENSION while the executors are busy

my $offset = -s $node->logfile;
my $busy = submit('postgres', 'slow', 'busy', 100, 'slow=3000');
cmp_ok(wait_api_in_flight(8, 30), '>=', 8, 'drop extension: 8 slow requests are in flight');
is( sql(qq{SELECT running > 0 FROM batch.progress WHERE id = $busy}),
	't', 'drop extension: items are running');

my ($ok, $took, $err) = bounded('DROP EXTENSION pgbatch');
ok($ok, 'DROP EXTENSION pgbatch returns, successfully, while the executors are busy')
  or diag $err;
note sprintf('DROP EXTENSION took %.2f s', $took);
is(wait_for($node, executors('postgres'), '0', 30), '0',
	'the executors of the database exit after DROP EXTENSION');
my $still = 0;
for (1 .. 6)
{
	usleep(500_000);
	$still += sql(executors('postgres'));
}
is($still, 0, 'and no executor comes back while the extension is gone (3 s)');
no_crash($offset, 'drop extension');

# ==== 2. CREATE EXTENSION brings them back

$offset = -s $node->logfile;
ok(wait_api_idle(), 'the fake API has nothing in flight');
setup_db('postgres');
is(wait_for($node, q{SELECT count(*) FROM batch.workers}, '2', 30), '2',
	'CREATE EXTENSION brings two executors back (batch.workers)');
is(sql(executors('postgres')), '2', '... also in pg_stat_activity');
my $again = submit('postgres', 'slow', 'again', 20);
is( wait_for($node, qq{SELECT status, completed FROM batch.progress WHERE id = $again},
		'completed|20', 30),
	'completed|20', 'and they run HTTP stages again');
no_crash($offset, 'create extension');

# ==== 3. DROP DATABASE of a database with busy executors

$offset = -s $node->logfile;
sql('CREATE DATABASE other');
setup_db('other');
is(wait_for($node, executors('other'), '2', 30), '2', 'two executors run in the other database');
my $obusy = submit('other', 'slow', 'obusy', 100, 'slow=3000');
cmp_ok(wait_api_in_flight(8, 30), '>=', 8, 'drop database: 8 slow requests are in flight');
is( wait_for($node, qq{SELECT running > 0 FROM batch.progress WHERE id = $obusy}, 't', 10,
		'other'),
	't', 'drop database: items are running there');

my $pids_q = q{SELECT string_agg(pid::text, ',' ORDER BY pid) FROM pg_stat_activity
	WHERE backend_type = 'pgbatch executor' AND datname = 'postgres'};
my $pids_before = sql($pids_q);
($ok, $took, $err) = bounded('DROP DATABASE other');
ok($ok, 'DROP DATABASE returns, successfully, while its executors are busy') or diag $err;
note sprintf('DROP DATABASE took %.2f s', $took);
is( wait_for($node, q{SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'pgbatch executor'
		AND (datname IS NULL OR datname <> 'postgres')}, '0', 30),
	'0', 'no executor is left for the dropped database');
is(sql($pids_q), $pids_before, 'the executors of the postgres database are untouched');
no_crash($offset, 'drop database');
{
	my @started = slurp_file($node->logfile, $offset) =~ /^.*FATAL:  database \d+ does not exist$/mg;
	is(join("\n", @started), '', 'no executor was started for the database being dropped');
}

# ==== 4. the kill switch

$offset = -s $node->logfile;
ok(wait_api_idle(), 'the fake API has nothing in flight');
my $inflight = submit('postgres', 'slow', 'inflight', 8, 'slow=3000');
cmp_ok(wait_api_in_flight(8, 30), '>=', 8, 'kill switch: 8 slow requests are in flight');
set_and_reload('pgbatch.enabled', 'off', 'off');
my $held = submit('postgres', 'quick', 'held', 50);
my $held_at = time();

is( wait_for($node, qq{SELECT completed FROM batch.progress WHERE id = $inflight},
		'8', 10),
	'8', 'requests in flight when switched off finish and are recorded');
note 'executors while pgbatch.enabled is off: ' . sql(executors('postgres'));

# while off, for at least 3 s after the submit: nothing claimed
my @seen;
while (time() < $held_at + 3)
{
	push @seen, sql(qq{SELECT pending, running, completed,
		(SELECT count(*) FROM batch.attempts a WHERE a.batch_id = $held)
		FROM batch.progress WHERE id = $held});
	usleep(500_000);
}
is_deeply([ grep { $_ ne '50|0|0|0' } @seen ], [],
	'while pgbatch.enabled is off, the submitted items stay pending with no attempt');

set_and_reload('pgbatch.enabled', undef, 'on');
is( wait_for($node, qq{SELECT status, completed FROM batch.progress WHERE id = $held},
		'completed|50', 30),
	'completed|50', 'pgbatch.enabled on again: the held batch completes');
is( wait_for($node, qq{SELECT status, completed FROM batch.progress WHERE id = $inflight},
		'completed|8', 30),
	'completed|8', '... and so do the items that were in flight');
no_crash($offset, 'kill switch');

# ==== 5. wake-up at commit, with a 60 s poll interval

$offset = -s $node->logfile;
set_and_reload('pgbatch.poll_interval', '60s', '1min');
# let the executors finish the claim the reload caused: then their next
# look for work by poll is a minute away
usleep(2_000_000);
my $t0 = time();
my $woken = submit('postgres', 'quick', 'woken', 20);
is( wait_for($node, qq{SELECT status, completed FROM batch.progress WHERE id = $woken},
		'completed|20', 20),
	'completed|20', 'with poll_interval 60s a new batch completes within 20 s: submit wakes the executors');
note sprintf('the woken batch completed within %.1f s', time() - $t0);
set_and_reload('pgbatch.poll_interval', undef, '500ms');
no_crash($offset, 'wake-up');

# ==== 6. fairness: a small batch is not stuck behind a big one

$offset = -s $node->logfile;
my $big = submit('postgres', 'quick', 'big', 20000);
my $small = submit('postgres', 'quick', 'small', 20);
is( wait_for($node, qq{SELECT status FROM batch.progress WHERE id = $small}, 'completed', 60),
	'completed', 'the small batch completes');
note 'the big batch had completed '
  . sql(qq{SELECT completed FROM batch.progress WHERE id = $big})
  . ' of 20000 items then';
is( wait_for($node, qq{SELECT status FROM batch.progress WHERE id = $big}, 'completed', 90),
	'completed', 'the big batch completes');
is( sql(qq{SELECT s.finished_at < b.finished_at
		FROM batch.progress s, batch.progress b WHERE s.id = $small AND b.id = $big}),
	't', 'the small batch, submitted after the big one, finished before it');
no_crash($offset, 'fairness');

stop_fake_api($api);
$node->stop;
done_testing();
