
# 010_run_http.pl
#
# batch.run() sending HTTP requests itself, in a server where pgbatch is not
# preloaded (no executors): what a pg_cron job calling
# batch.run(max_seconds => ...) does every minute.  Against the fake API.
#
# 1. A 3-stage pipeline (SQL -> HTTP -> SQL), 60 items, run by an operator
#    who cannot read the endpoint's headers; the endpoint takes 3 requests
#    at once and answers after 50 ms.  Every 10th item meets a 503 once;
#    item 5 meets a 429 with Retry-After: 1.  batch.run() is called until
#    the batch is finished (it does not sleep through backoffs: the loop
#    waits 200 ms between calls).  Checked: every item completes, through
#    all three stages; each Idempotency-Key was requested 1 + its faults
#    times; the fake API never had more than 3 requests in flight; it got
#    the Authorization header; the last stage saw the HTTP stage's output;
#    item 5's second request came at least 1 s after its 429.
# 2. max_seconds: with 20 items to an endpoint answering after 300 ms, one
#    at a time, batch.run(max_seconds => 1) returns after a few requests:
#    the requests it had not sent went back to pending without spending an
#    attempt, and no item is left running.
# 3. A cancel (statement_timeout) while requests hang: batch.run() fails,
#    its transaction rolls back, no item is left running, and the next call
#    completes them (the hang is once per key).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_node start_fake_api stop_fake_api fake_api_json sql);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = new_node('run_http');
my $api = start_fake_api(args => [ '--latency-ms', '50' ]);
my $slow = start_fake_api(args => [ '--latency-ms', '300' ]);

sql(qq{
CREATE EXTENSION pgbatch;
CREATE ROLE op LOGIN IN ROLE pgbatch_operator;
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO PUBLIC;
CREATE FUNCTION app.prep(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql
	AS \$\$ SELECT jsonb_build_object('n', p -> 'n') \$\$;
CREATE FUNCTION app.body(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql
	AS \$\$ SELECT jsonb_build_object('n', p -> 'n', 'fault', p -> 'fault', 'prep', o -> 'prep') \$\$;
CREATE FUNCTION app.finish(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql
	AS \$\$ SELECT jsonb_build_object('echoed', o -> 'call' -> 'request' -> 'prep' -> 'n') \$\$;
SELECT batch.create_endpoint('api', '$api->{url}', max_concurrency => 3,
	headers => '{"Authorization": "Bearer sk-run-http-test-key"}');
SELECT batch.create_endpoint('slow', '$slow->{url}', max_concurrency => 1);
SELECT batch.create_pipeline('three', '[
	{"name": "prep", "sql": "app.prep"},
	{"name": "call", "http": {"endpoint": "api", "path": "/v1/call", "body": "app.body"}},
	{"name": "finish", "sql": "app.finish"}]',
	retry => '{"max_retries": 3, "backoff_base": "100 ms", "jitter": 0}');
SELECT batch.create_pipeline('slow', '[{"name": "call", "http": {"endpoint": "slow", "path": "/v1/slow"}}]');
SELECT batch.create_pipeline('hang', '[{"name": "call", "http": {"endpoint": "api", "path": "/v1/hang"}}]');
});

# as_op($sql): runs SQL logged in as the operator
sub as_op
{
	return $node->safe_psql('postgres', $_[0], extra_params => [ '-U', 'op' ], timeout => 120);
}

# 1. a 3-stage pipeline, driven by batch.run() alone
my @items;
for my $n (1 .. 60)
{
	my $fault = $n == 5 ? '429:ra=1x1' : $n % 10 == 0 ? '503x1' : 'none';
	push @items, qq({"n": $n, "fault": "$fault"});
}
my $bid = as_op("SELECT batch.submit('three', '[" . join(',', @items) . "]', name => 'three')");
is(as_op('SELECT count(*) FROM batch.workers'), '0', 'no executors: pgbatch is not preloaded');
my $calls = 0;
while ($calls < 200)
{
	$calls++;
	as_op("SELECT batch.run('three', max_seconds => 30)");
	last if as_op("SELECT pending + running FROM batch.progress WHERE id = $bid") eq '0';
	usleep(200_000);
}
is(as_op("SELECT status || ' ' || completed FROM batch.progress WHERE id = $bid"),
	'completed 60', "batch.run() alone completed all 60 items ($calls calls)");
is(as_op("SELECT count(*) FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
	WHERE i.batch_id = $bid AND o.stage = 'finish' AND (o.output ->> 'echoed')::int =
	(i.payload ->> 'n')::int"),
	'60', 'the last stage saw the HTTP stage output, built from the first stage');

my $stats = fake_api_json($api, '/_stats?keys=1');
my %want;
for my $n (1 .. 60) { $want{$n} = ($n == 5 || $n % 10 == 0) ? 2 : 1; }
my $ids = as_op("SELECT string_agg(id || ':' || (payload ->> 'n'), ',') FROM batch.items WHERE batch_id = $bid");
my %n_of = map { split /:/ } split /,/, $ids;
my $bad = 0;
for my $key (keys %{ $stats->{keys} })
{
	my ($item) = $key =~ /-(\d+)-2$/;
	$bad++ unless defined $item && $stats->{keys}{$key}{n} == $want{ $n_of{$item} };
}
is(scalar(keys %{ $stats->{keys} }), 60, 'one Idempotency-Key per item');
is($bad, 0, 'each key was requested once, plus once per fault');
ok($stats->{max_in_flight} <= 3, "at most 3 requests in flight (max_concurrency): $stats->{max_in_flight}");
my $log = fake_api_json($api, '/_stats/requests?since=0&limit=10000');
is(scalar(grep { !$_->{auth} } @{ $log->{requests} }), 0,
	'every request carried the Authorization header the operator cannot read');
my ($k5) = grep { my ($i) = /-(\d+)-2$/; $n_of{$i} == 5 } keys %{ $stats->{keys} };
my $r5 = $stats->{keys}{$k5}{requests};
ok($r5->[1][0] - $r5->[0][2] >= 0.95,
	'the retry after a 429 with Retry-After: 1 came at least 1 s later');

# 2. max_seconds: unsent requests go back unspent
my $sid = as_op(q{SELECT batch.submit('slow', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 20) g), name => 'slow')});
my $r = as_op(q{SELECT items_completed FROM batch.run('slow', max_seconds => 1)});
ok($r >= 1 && $r < 20, "max_seconds => 1 stopped the run after $r of 20 requests");
is(as_op("SELECT count(*) FILTER (WHERE status = 'running') || ' ' || count(*) FILTER (WHERE status = 'pending' AND attempt = 0)
	|| ' ' || count(*) FILTER (WHERE status = 'completed') FROM batch.items WHERE batch_id = $sid"),
	'0 ' . (20 - $r) . " $r", 'no item is left running; the unsent ones are pending with no attempt spent');

# 3. a cancel while requests hang rolls the run back
my $hid = as_op(q{SELECT batch.submit('hang', '[{"n": 1, "fault": "hangx1"}, {"n": 2, "fault": "hangx1"}]', name => 'hang')});
my ($rc, $out, $err) = $node->psql('postgres',
	"SET statement_timeout = '1s'; SELECT batch.run('hang')",
	extra_params => [ '-U', 'op' ]);
like($err, qr/canceling statement due to statement timeout/, 'a statement timeout cancels batch.run() while requests hang');
is(as_op("SELECT string_agg(status || ' ' || attempt, ',') FROM batch.items WHERE batch_id = $hid"),
	'pending 0,pending 0', 'the run rolled back: nothing is left running or spent');
is(as_op(q{SELECT items_completed FROM batch.run('hang')}), '2', 'the next call completes them');

stop_fake_api($api);
stop_fake_api($slow);
$node->stop;
done_testing();
