
# 005_crash_recovery.pl
#
# Tests that the background executors lose nothing and repeat no SQL stage
# when the server crashes under them.
#
# The pipeline has a SQL stage "prepare", whose function logs (batch tag,
# item n) into app.sql_log, then an HTTP stage "send" to the fake API, whose
# every answer is delayed by 20 ms (fault "slow=20" in the payload) so that
# many requests are in flight, with their items 'running' under a lease.
#
# Part 0: a 1,000-item batch without a crash, as a control.
# Part 1: a 10,000-item batch; once it is well under way, one executor is
# killed with SIGKILL (by the pid batch.workers gives): the postmaster treats
# it as a crash, terminates every backend and reinitializes.
# Part 2: another 10,000-item batch; mid-way the server is stopped in
# immediate mode (no shutdown checkpoint) and started again.
#
# Checked after each:
#   - items were running (held by executors) when the crash came;
#   - after the restart, running items whose executor is gone are taken back
#     promptly (within 30 s, far less than the 5 min lease), and an
#     items_reclaimed event says so;
#   - the batch completes (bounded wait): every item completed, none lost,
#     none left running or pending, batch.progress agrees with the items;
#   - the SQL stage ran exactly once per item (its effects commit with the
#     item's advance, so a crash cannot leave a duplicate or lose one);
#   - both stages' outputs are there, and the fake API saw a request for
#     every item (an HTTP request in flight at the crash may be sent again,
#     with the same Idempotency-Key: reported, not asserted).
# Nothing is asserted about speed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_worker_node start_fake_api stop_fake_api fake_api_get wait_for sql);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $NITEMS = 10000;

# (the test framework turns restart_after_crash off; the postmaster's own
# crash recovery is what this test is about)
my $node = new_worker_node('crash_recovery',
	"restart_after_crash = on\npgbatch.lease_duration = '5min'\n");
my $api = start_fake_api();
my $port = $api->{port};


sql(qq{
CREATE EXTENSION pgbatch;
CREATE SCHEMA app;

SELECT batch.create_endpoint('fake', 'http://127.0.0.1:$port', max_concurrency => 32);

-- one row per run of the SQL stage that committed
CREATE TABLE app.sql_log (tag text NOT NULL, n integer NOT NULL,
	logged_at timestamptz NOT NULL DEFAULT clock_timestamp());
CREATE FUNCTION app.prepare(payload jsonb, outputs jsonb) RETURNS jsonb
LANGUAGE sql AS \$\$
	INSERT INTO app.sql_log (tag, n) VALUES (payload ->> 'tag', (payload ->> 'n')::integer)
	RETURNING jsonb_build_object('prepared', n);
\$\$;

SELECT batch.create_pipeline('crashy', '[
	{"name": "prepare", "sql": "app.prepare"},
	{"name": "send", "http": {"endpoint": "fake", "method": "POST", "path": "/v1/send"}}]',
	retry => '{"max_retries": 5, "backoff_base": "200 ms", "backoff_factor": 2,
			   "backoff_max": "2 s"}');
});

is( wait_for($node, q{SELECT count(*) FROM batch.workers}, '2', 30),
	'2', 'two executors run');

sub submit
{
	my ($tag) = @_;
	return sql(qq{
SELECT batch.submit('crashy',
	(SELECT jsonb_agg(jsonb_build_object('tag', '$tag', 'n', g, 'fault', 'slow=20') ORDER BY g)
	 FROM generate_series(1, $NITEMS) g),
	name => '$tag');
});
}

# waits until the batch is under way: some items completed, some running
sub wait_under_way
{
	my ($bid, $tag) = @_;
	my $r = wait_for($node, qq{SELECT completed >= 1500 AND running > 0
		FROM batch.progress WHERE id = $bid}, 't', 90);
	is($r, 't', "$tag: under way (items completed and items running)");
	return;
}

# after a restart: running items of executors that are gone must be taken
# back well before their lease runs out
sub check_reclaim
{
	my ($bid, $tag, $crashed_at) = @_;
	my $orphans = qq{SELECT count(*) FROM batch.items i
		WHERE i.batch_id = $bid AND i.status = 'running'
		AND i.claimed_by <> ALL (ARRAY(SELECT pid FROM batch.workers))};
	my $first = wait_for($node, 'SELECT 1', '1', 60);
	is($first, '1', "$tag: the server accepts connections again");
	my $at_start = sql($orphans);
	my $left = wait_for($node, $orphans, '0', 30);
	note sprintf('%s: %s orphaned running items at the first connection, none left %.1f s after the crash',
		$tag, $at_start, time() - $crashed_at);
	is($left, '0', "$tag: running items of the executors that died are taken back within 30 s");
	is( wait_for($node, qq{SELECT count(*) > 0 FROM batch.events
			WHERE batch_id = $bid AND event = 'items_reclaimed'}, 't', 10),
		't', "$tag: an items_reclaimed event is logged");
	my ($nreclaimed, $after) = split /\|/, sql(qq{
		SELECT sum((detail ->> 'items')::integer),
			   round((extract(epoch FROM min(created_at)) - $crashed_at)::numeric, 1)
		FROM batch.events WHERE batch_id = $bid AND event = 'items_reclaimed'});
	note "$tag: $nreclaimed items reclaimed, the first $after s after the crash";
	cmp_ok($nreclaimed, '>', 0, "$tag: the running items were taken back");
	cmp_ok($after, '<', 30, "$tag: taken back within 30 s of the crash, not after the lease");
	return;
}

# the batch completes, with every SQL stage run exactly once
sub check_complete
{
	my ($bid, $tag) = @_;
	is( wait_for($node, qq{SELECT status, completed, failed, pending, running
			FROM batch.progress WHERE id = $bid}, "completed|$NITEMS|0|0|0", 100),
		"completed|$NITEMS|0|0|0", "$tag: the batch completes");
	is( sql(qq{SELECT count(*), count(*) FILTER (WHERE status = 'completed')
			FROM batch.items WHERE batch_id = $bid}),
		"$NITEMS|$NITEMS", "$tag: no item lost, every item completed");
	is( sql(qq{SELECT count(*) FROM batch.items
			WHERE batch_id = $bid AND status IN ('running', 'pending')}),
		'0', "$tag: no item left running or pending");
	is( sql(qq{SELECT count(*), count(DISTINCT n), min(n), max(n) FROM app.sql_log
			WHERE tag = '$tag'}),
		"$NITEMS|$NITEMS|1|$NITEMS", "$tag: the SQL stage ran exactly once per item");
	is( sql(qq{SELECT count(*) FILTER (WHERE o.stage = 'prepare'),
				count(*) FILTER (WHERE o.stage = 'send'
					AND o.output ->> 'idempotency_key' LIKE 'pgbatch-%-' || i.id || '-2')
			FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
			WHERE i.batch_id = $bid}),
		"$NITEMS|$NITEMS", "$tag: both stages' outputs are stored");
	is( sql(qq{SELECT count(*) FROM batch.attempts WHERE batch_id = $bid
			AND stage = 'prepare' AND outcome = 'completed'}),
		$NITEMS, "$tag: one completed attempt of the SQL stage per item");
	return;
}

# requests the fake API received for the items of a batch, per key
sub report_requests
{
	my ($bid, $tag) = @_;
	my $stats = fake_api_get($api, '/_stats?keys=1');
	sql(qq{
CREATE TEMP TABLE k AS SELECT key, (value ->> 'n')::integer AS n
FROM jsonb_each(\$fake\$$stats\$fake\$::jsonb -> 'keys');
CREATE TABLE app.keys_$tag AS
SELECT i.id, k.n FROM batch.items i
LEFT JOIN k ON k.key = format('pgbatch-%s-%s-%s-2',
	(SELECT system_identifier FROM pg_control_system()),
	(SELECT oid FROM pg_database WHERE datname = current_database()), i.id)
WHERE i.batch_id = $bid;
});
	is( sql(qq{SELECT count(*) FROM app.keys_$tag WHERE n IS NULL}),
		'0', "$tag: the fake API saw a request for every item");
	note "$tag: items whose request was sent more than once (after the crash): "
	  . sql(qq{SELECT count(*) FROM app.keys_$tag WHERE n > 1});
	return;
}

# ==== Part 0: a control batch, no crash: the same checks must hold

my $nctl = 1000;
my $b0 = sql(qq{
SELECT batch.submit('crashy',
	(SELECT jsonb_agg(jsonb_build_object('tag', 'b0', 'n', g, 'fault', 'slow=20') ORDER BY g)
	 FROM generate_series(1, $nctl) g),
	name => 'b0');
});
is( wait_for($node, qq{SELECT status, completed FROM batch.progress WHERE id = $b0},
		"completed|$nctl", 60),
	"completed|$nctl", 'b0 (no crash): the batch completes');
is( sql(q{SELECT count(*), count(DISTINCT n) FROM app.sql_log WHERE tag = 'b0'}),
	"$nctl|$nctl", 'b0 (no crash): the SQL stage ran exactly once per item');

# ==== Part 1: SIGKILL of an executor

my $b1 = submit('b1');
wait_under_way($b1, 'b1');

my $victim = sql(q{SELECT pid FROM batch.workers ORDER BY worker LIMIT 1});
ok($victim =~ /^\d+$/ && $victim > 0, "b1: executor pid $victim");
is( sql(qq{SELECT backend_type FROM pg_stat_activity WHERE pid = $victim}),
	'pgbatch executor', 'b1: that pid is an executor');
my $running = sql(qq{SELECT count(*) FROM batch.items WHERE batch_id = $b1 AND status = 'running'});
cmp_ok($running, '>', 0, "b1: items are running when the executor is killed ($running)");

my $log_offset = -s $node->logfile;
ok(kill('KILL', $victim), "b1: SIGKILL sent to executor $victim");
my $killed_at = time();

# the postmaster sees a crash and reinitializes
my $reinit = 0;
while (time() < $killed_at + 60)
{
	my $log = slurp_file($node->logfile, $log_offset);
	if ($log =~ /all server processes terminated; reinitializing/)
	{
		$reinit = 1;
		last;
	}
	usleep(100_000);
}
ok($reinit, 'b1: the postmaster reinitialized after the executor crashed');
like(slurp_file($node->logfile, $log_offset),
	qr/\(PID $victim\) was terminated by signal 9/, 'b1: the log names the killed executor');

check_reclaim($b1, 'b1', $killed_at);
isnt(sql(q{SELECT string_agg(pid::text, ',') FROM batch.workers}) =~ /\b$victim\b/ ? 'same' : 'new',
	'same', 'b1: the executors are new processes');
check_complete($b1, 'b1');
report_requests($b1, 'b1');

# ==== Part 2: immediate shutdown, then start

my $b2 = submit('b2');
wait_under_way($b2, 'b2');
$running = sql(qq{SELECT count(*) FROM batch.items WHERE batch_id = $b2 AND status = 'running'});
cmp_ok($running, '>', 0, "b2: items are running at the immediate shutdown ($running)");
my $stopped_at = time();
$node->stop('immediate');
$node->start;
check_reclaim($b2, 'b2', $stopped_at);
check_complete($b2, 'b2');
report_requests($b2, 'b2');

# batch 1 was not disturbed by the second crash
is( sql(qq{SELECT status, completed FROM batch.progress WHERE id = $b1}),
	"completed|$NITEMS", 'b1 is still complete');
is( sql(q{SELECT count(*) FROM app.sql_log WHERE tag = 'b1'}), $NITEMS,
	'b1: still one SQL stage run per item');

stop_fake_api($api);
$node->stop;
done_testing();
