
# 026_lease_guard.pl
#
# A result that comes back after its item was taken back is not recorded.
# An executor sends an HTTP request (the fake API answers after 3 s) and is
# then stopped (SIGSTOP) before it reads the answer.  Its lease (the
# endpoint's timeout, 5 s, plus a minute) runs out; batch.maintenance()
# takes the item back and the other executor runs it again: it completes,
# with one attempt.  The stopped executor is let go on (SIGCONT) and reads
# the old answer: the item is no longer running under its claim, so that
# answer leaves no attempt, no output and no state behind.  About 75 s, most
# of it waiting for the lease.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_worker_node sql wait_for start_fake_api stop_fake_api);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = new_worker_node('lease_guard', "pgbatch.lease_duration = '10s'\n");
my $api = start_fake_api(args => [ '--latency-ms', '3000' ]);
sql(qq{
CREATE EXTENSION pgbatch;
SELECT batch.create_endpoint('api', '$api->{url}', timeout => '5 s');
SELECT batch.create_pipeline('call', '[{"name": "call", "http": {"endpoint": "api", "method": "POST", "path": "/v1/send"}}]');
});
is(wait_for($node, q{SELECT count(*) FROM batch.workers}, '2', 30), '2', 'two executors run');

sql(q{SELECT batch.submit('call', '[{"n": 1}]', name => 'guarded')});
my $holder = '';
for (1 .. 500)
{
	$holder = sql(q{SELECT i.claimed_by FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id
		WHERE b.name = 'guarded' AND i.status = 'running'});
	last if $holder ne '';
	usleep(20_000);
}
like($holder, qr/^\d+$/, 'an executor claimed the item and sent its request');
kill 'STOP', $holder;
note "executor $holder stopped while its request is out";
my $stopped = 1;
END { kill 'CONT', $holder if $stopped && $holder =~ /^\d+$/; }

# the lease runs out a minute after the request's timeout
my $lease = sql(q{SELECT ceil(extract(epoch FROM i.lease_until - clock_timestamp()))
	FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'guarded'});
cmp_ok($lease, '<=', 66, "the lease runs out within about a minute ($lease s)");
sleep($lease + 1) if $lease > 0;
sql(q{CALL batch.maintenance()});
is(wait_for($node, q{SELECT i.status || ' ' || (i.claimed_by IS DISTINCT FROM } . $holder . q{)
	FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'guarded'},
	'completed true', 30), 'completed true', 'taken back, the item ran again on the other executor and completed');
is(sql(q{SELECT count(*) FROM batch.attempts a JOIN batch.batches b ON b.id = a.batch_id
	WHERE b.name = 'guarded'}), '1', 'one attempt recorded');

# the stopped executor reads its old answer
my $offset = -s $node->logfile;
kill 'CONT', $holder;
$stopped = 0;
note "executor $holder let go on";
my $dropped = 0;
for (1 .. 150)
{
	$dropped = $node->log_contains(qr/the result of item \d+ is dropped: the item is no longer held by this executor/,
		$offset);
	last if $dropped;
	usleep(200_000);
}
ok($dropped, 'the executor read its old answer and dropped it (server log, within 30 s)');
sql(q{SELECT batch.submit('call', '[{"n": 2}, {"n": 3}]', name => 'after')});
is(wait_for($node, q{SELECT status FROM batch.progress WHERE name = 'after'}, 'completed', 30), 'completed',
	'the executors went on working');
is(sql(q{SELECT count(*) || ' ' || count(*) FILTER (WHERE outcome = 'completed')
	FROM batch.attempts a JOIN batch.batches b ON b.id = a.batch_id WHERE b.name = 'guarded'}), '1 1',
	'the old answer left no attempt behind');
is(sql(q{SELECT count(*) FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
	JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'guarded'}), '1', 'one output');
is(sql(q{SELECT i.status FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id
	WHERE b.name = 'guarded'}), 'completed', 'the item stays completed');
is(sql(q{SELECT completed || ' ' || running FROM batch.progress WHERE name = 'guarded'}), '1 0',
	'batch.progress counts it once');

stop_fake_api($api);
$node->stop;
done_testing();
