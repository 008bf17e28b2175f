
# 023_flow.pl
#
# Flow and time, as an operator watching a batch sees them (issue 12):
#
# 1. Depth first: a 2-stage pipeline (an HTTP stage against an API that
#    answers after 50 ms, then a SQL stage), 2,000 items, one executor.  An
#    item goes on to its SQL stage as soon as its HTTP stage is done, ahead
#    of the items that have not started: the first item completes before
#    10 % of the HTTP stage's attempts are done (before this, none completed
#    until nearly all of them were).
# 2. Timers: with pgbatch.poll_interval at 30 s, 20 items meet a 503 once
#    and are retried 1 s later (the circuit breaker off: 20 failures in a row
#    would open it for its cooldown).  The executors wake for the retries' due time,
#    not for the next poll: every retry starts well within the poll interval
#    of its due time (tests assert behaviour, not speed: bench/ prints the
#    lateness).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_worker_node sql start_fake_api wait_batch_done);
use PostgreSQL::Test::Utils;
use PostgreSQL::Test::Cluster;
use Test::More;

my $api = start_fake_api(args => ['--latency-ms', '50']);
my $node = new_worker_node('flow',
	"pgbatch.workers = 1\npgbatch.poll_interval = '30s'\npgbatch.claim_batch_size = 100\n"
	  . "pgbatch.circuit_threshold = 0\n");
sql(qq{
CREATE EXTENSION pgbatch;
CREATE FUNCTION public.noop(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT ''{}''::jsonb';
SELECT batch.create_endpoint('api', '$api->{url}', max_concurrency => 32);
SELECT batch.create_pipeline('two', '[{"name": "call", "http": {"endpoint": "api", "path": "/v1/call"}},
									  {"name": "finish", "sql": "public.noop"}]');
SELECT batch.create_pipeline('retry', '[{"name": "call", "http": {"endpoint": "api", "path": "/v1/retry"}}]',
	retry => '{"max_retries": 3, "backoff_base": "1 s", "backoff_factor": 1, "jitter": 0}');
});

# 1. depth first
sql(q{SELECT batch.submit('two', (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, 2000) i),
	name => 'depth')});
is(wait_batch_done('depth', 120), 'completed 2000 0', 'the 2,000 items of the 2-stage pipeline completed');
my $before = sql(q{SELECT count(*) FROM batch.attempts a JOIN batch.batches b ON b.id = a.batch_id
	WHERE b.name = 'depth' AND a.stage = 'call'
	AND a.finished_at < (SELECT min(i.finished_at) FROM batch.items i WHERE i.batch_id = b.id)});
cmp_ok($before, '<', 200,
	"the first item completed before 10 % of the HTTP stage's attempts were done ($before of 2,000)");

# 2. timers: retries start at their due time, not at the next poll
sql(q{SELECT batch.submit('retry', (SELECT jsonb_agg(jsonb_build_object('n', i, 'fault', '503x1'))
	FROM generate_series(1, 20) i), name => 'retries')});
is(wait_batch_done('retries', 60), 'completed 20 0', 'the 20 items that met a 503 once completed');
my ($n, $worst) = split /\|/, sql(q{SELECT count(*), round(max(extract(epoch FROM a2.started_at - (a1.finished_at + interval '1 s')))::numeric, 3)
	FROM batch.attempts a1 JOIN batch.attempts a2 ON a2.item_id = a1.item_id AND a2.attempt = 2 AND a2.stage = a1.stage
	JOIN batch.batches b ON b.id = a1.batch_id
	WHERE b.name = 'retries' AND a1.attempt = 1});
is($n, 20, 'every item was retried once');
cmp_ok($worst, '<', 5, "every retry started within 5 s of its due time, not at the 30 s poll (latest: $worst s)");

$node->stop;
done_testing();
