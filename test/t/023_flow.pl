
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
# 3. Many in flight: one executor with 1,200 requests in flight
#    (max_http_in_flight and max_concurrency 1,200) against an API that
#    answers each after 3 s.  Every request goes on its first attempt (above
#    the usual soft limit of 1,024 open files, which the executor lifts), and
#    they all go at once: every one reaches the API before its first answer
#    (plain HTTP requests no longer wait, with CURLOPT_PIPEWAIT, for the first
#    connection to say whether it multiplexes, which it says only with its
#    answer).
# 4. Priority: one owner's two batches of 300 items (a SQL stage of 5 ms),
#    submitted together, the second with batch.set_priority() 10.  It runs
#    first: fewer than half of the other batch's items are done when its
#    last item completes (taking turns, nearly all of them were).
# 5. A request that its dispatch ends at once (here: its host left
#    pgbatch.allowed_hosts after the endpoint was made) is recorded at once,
#    not at the next poll (30 s): the item has failed within 10 s.

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

# 3. many in flight
sql(q{ALTER SYSTEM SET pgbatch.max_http_in_flight = 1200});
sql(q{SELECT pg_reload_conf()});
sql(q{SELECT batch.create_endpoint('wide', '} . $api->{url} . q{', max_concurrency => 1200)});
sql(q{SELECT batch.create_pipeline('wide', '[{"name": "call", "http": {"endpoint": "wide", "path": "/v1/wide"}}]')});
sleep 1;
my $seq0 = PgBatchTest::fake_api_json($api, '/_stats?keys=0')->{log_next_seq};
sql(q{SELECT batch.submit('wide', (SELECT jsonb_agg(jsonb_build_object('n', i, 'fault', 'slow=3000'))
	FROM generate_series(1, 1200) i), name => 'wide')});
is(wait_batch_done('wide', 120), 'completed 1200 0', 'the 1,200 items with 1,200 in flight completed');
is(sql(q{SELECT count(*) FROM batch.attempts a JOIN batch.batches b ON b.id = a.batch_id
	WHERE b.name = 'wide'}), 1200, 'each on its first attempt (no socket was refused)');
my $log = PgBatchTest::fake_api_json($api, "/_stats/requests?since=$seq0&limit=5000")->{requests};
my @wide = grep { $_->{path} eq '/v1/wide' } @$log;
my ($first_answer) = sort { $a <=> $b } map { $_->{t_done} // 9e99 } @wide;
my $before_answer = grep { $_->{t} < $first_answer } @wide;
is(scalar(@wide), 1200, 'the API saw 1,200 requests');
cmp_ok($before_answer, '>=', 1150,
	"the requests reached the API before its first answer ($before_answer of 1,200)");

# 4. priority between one owner's batches
sql(q{CREATE FUNCTION public.five_ms(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql
	AS 'SELECT jsonb_build_object(''slept'', pg_sleep(0.005) IS NULL)'});
sql(q{SELECT batch.create_pipeline('five', '[{"name": "wait", "sql": "public.five_ms"}]')});
sql(q{BEGIN;
SELECT batch.submit('five', (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, 300) i), name => 'low');
SELECT batch.submit('five', (SELECT jsonb_agg(jsonb_build_object('n', i)) FROM generate_series(1, 300) i), name => 'high');
SELECT batch.set_priority('high', 10);
COMMIT;});
is(wait_batch_done('low', 120), 'completed 300 0', 'the batch of priority 0 completed');
is(wait_batch_done('high', 120), 'completed 300 0', 'the batch of priority 10 completed');
my $low_first = sql(q{SELECT count(*) FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id
	WHERE b.name = 'low' AND i.finished_at < (SELECT max(h.finished_at) FROM batch.items h
		JOIN batch.batches hb ON hb.id = h.batch_id WHERE hb.name = 'high')});
cmp_ok($low_first, '<', 150,
	"the batch of priority 10 ran first ($low_first of the other's 300 items were done before its last)");

# 5. what a dispatch ends is recorded at once
sql(q{SELECT batch.create_endpoint('gone', '} . $api->{url} . q{', max_concurrency => 4)});
sql(q{SELECT batch.create_pipeline('gone', '[{"name": "call", "http": {"endpoint": "gone", "path": "/v1/gone"}}]')});
sql(q{ALTER SYSTEM SET pgbatch.allowed_hosts = 'api.example.com'});
sql(q{SELECT pg_reload_conf()});
sleep 1;
sql(q{SELECT batch.submit('gone', '[{"n": 1}]', name => 'gone')});
is(wait_batch_done('gone', 10), 'failed 0 1',
	'a request refused at its dispatch is recorded at once, not at the 30 s poll');
is(sql(q{SELECT error_code FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'gone'}),
	'host_not_allowed', 'as host_not_allowed');
sql(q{ALTER SYSTEM RESET pgbatch.allowed_hosts});
sql(q{SELECT pg_reload_conf()});

$node->stop;
done_testing();
