
# 007_endpoint_limits.pl
#
# Tests the per-endpoint limits the background executors share through
# shared memory (src/endpoint.c), against the fault-injecting fake API
# (test/fake_api.py).  One cluster (pgbatch.workers = 2,
# pgbatch.circuit_threshold = 3, pgbatch.circuit_cooldown = 2s), one
# endpoint, pipeline and fake API per part:
#
# 1. Circuit breaker.  A control rule makes every request to /v1/cb answer
#    503 (no Retry-After); 20 items with max_retries 10, backoff 100 ms,
#    backoff_factor 1, jitter 0 (without a circuit breaker they would send
#    about 200 requests within a few seconds).  Checked:
#    - batch.endpoint_status soon shows the circuit open (or half-open) with
#      consecutive_failures >= 3;
#    - while it stays open (about 5 s watched), it never shows 'closed', the
#      fake API gets only the probes: at most one per cooldown (plus one),
#      and each request after the circuit opened arrived at least the
#      cooldown (minus 0.2 s) after every earlier answer;
#    - waiting on the open circuit spends no retry: no item failed, the
#      attempts recorded are exactly the requests sent, and no item has more
#      attempts than 1 + the probes;
#    - once the rule is cleared, the next probe (the cooldown after the last
#      failure, alone until its answer) succeeds, the circuit closes and
#      every item completes, each with exactly one 200 and every request
#      after the probe a 200; the endpoint ends 'closed' with
#      consecutive_failures 0.
#    (The probes all fall on the same item, the one whose short backoff
#    makes it due first; it spends one attempt per probe.)
# 2. Shared rate limit.  An endpoint with rate_limit 600/min (10/s, a bucket
#    of at most 10 tokens) and max_concurrency 16; 50 items to a fast path,
#    sent by the two executors.  From the fake API's arrival times: at most
#    10 + 10 (+ 2 slack) requests in any sliding 1-second window, and at
#    most 10 + 10 * (t_j - t_i) (+ 2 slack) between any two requests (the
#    token bucket); the first and last requests are at least 3.5 s apart
#    (50 at 10/s after a burst of at most 10 need 4 s).  All 50 complete;
#    how the two executors split the requests is only reported.
# 3. Retry-After pauses the whole endpoint.  One item gets 429 with
#    Retry-After: 2 (once); while the endpoint is paused, 10 more items are
#    added.  No request to the endpoint arrives between the 429's answer and
#    2 s later (minus 0.2 s slack), the 10 items spend no attempt waiting,
#    and all 11 complete.
#
# Nothing is asserted about speed beyond the lower bounds the limits imply.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_worker_node start_fake_api stop_fake_api fake_api_post
  fake_api_json wait_for sql);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $COOLDOWN = 2;    # pgbatch.circuit_cooldown, in seconds
my $THRESHOLD = 3;   # pgbatch.circuit_threshold
my $SLACK = 0.2;     # seconds of slack on the time bounds

my $node = new_worker_node('endpoint_limits',
	"pgbatch.circuit_threshold = $THRESHOLD\n"
	  . "pgbatch.circuit_cooldown = '${COOLDOWN}s'\n");


# fake_api_log($api): the fake API's whole request log (arrival order), as a
# list of hashes { seq, t, method, path, key, status, outcome, fault, t_done }.
sub fake_api_log
{
	my ($api) = @_;
	my @log;
	my $since = 0;
	while (1)
	{
		my $page = fake_api_json($api, "/_stats/requests?since=$since&limit=100000");
		push @log, @{ $page->{requests} };
		last unless $page->{more};
		$since = $page->{next};
	}
	return @log;
}

# count_probes($api): the requests that arrived at least the cooldown (minus
# the slack) after every earlier answer: with every request failing, only
# the probes of an open circuit do.
sub count_probes
{
	my ($api) = @_;
	my $n = 0;
	my $last_done = 0;
	for my $r (fake_api_log($api))
	{
		$n++ if $last_done > 0 && $r->{t} >= $last_done + $COOLDOWN - $SLACK;
		$last_done = $r->{t_done} if defined $r->{t_done} && $r->{t_done} > $last_done;
	}
	return $n;
}

sql(q{
CREATE EXTENSION pgbatch;
});

is( wait_for($node, q{SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'pgbatch executor' AND datname = 'postgres'}, '2', 30),
	'2', 'two executors run');

# ======================================================================
# 1. Circuit breaker
# ======================================================================

my $api_cb = start_fake_api();
my $port_cb = $api_cb->{port};

sql(qq{
SELECT batch.create_endpoint('cb', 'http://127.0.0.1:$port_cb',
	max_concurrency => 4, timeout => '10 s');
SELECT batch.create_pipeline('cb', '[
	{"name": "call", "http": {"endpoint": "cb", "method": "POST", "path": "/v1/cb"}}]',
	retry => '{"max_retries": 10, "backoff_base": "100 ms", "backoff_factor": 1,
			   "jitter": 0}');
});

fake_api_post($api_cb, '/_control/rules',
	'{"rules": [{"match": {"path": "/v1/cb"}, "fault": "503"}]}');

my $bid_cb = sql(q{
SELECT batch.submit('cb', (SELECT jsonb_agg(jsonb_build_object('n', g) ORDER BY g)
						  FROM generate_series(1, 20) g), name => 'cb');
});

is( wait_for($node, qq{SELECT circuit IN ('open', 'half-open')
			AND consecutive_failures >= $THRESHOLD
		FROM batch.endpoint_status WHERE name = 'cb'}, 't', 30),
	't', "the circuit opens after $THRESHOLD consecutive 503s");
note 'endpoint cb: '
  . sql(q{SELECT circuit || ', consecutive_failures ' || consecutive_failures
		|| ', requests ' || requests FROM batch.endpoint_status WHERE name = 'cb'});

# let the requests sent before the circuit opened finish, then watch it
usleep(500_000);
my $before = fake_api_json($api_cb, '/_stats?keys=0');
my $n_before = $before->{total};
my $t_watch = $before->{now};
my %seen;
my $bad_items = '';
my $watch_end = time() + 5;
while (time() < $watch_end)
{
	my $st = sql(q{SELECT circuit || ':' || consecutive_failures
		FROM batch.endpoint_status WHERE name = 'cb'});
	my ($circuit) = split /:/, $st;
	$seen{$circuit}++;
	usleep(250_000);
}
my $after = fake_api_json($api_cb, '/_stats?keys=0');
my $window = $after->{now} - $t_watch;
my $probes = $after->{total} - $n_before;
note sprintf('watched %.2f s: circuit states seen %s; %d requests before, %d during',
	$window, join(', ', map { "$_ x$seen{$_}" } sort keys %seen), $n_before, $probes);

ok(!exists $seen{closed}, 'while every request fails, the circuit never shows closed');
ok($seen{open}, 'the circuit shows open between probes');
cmp_ok($n_before, '<', 20,
	'before the circuit opened, fewer requests than items went out');
my $max_probes = int($window / $COOLDOWN) + 1;
cmp_ok($probes, '<=', $max_probes,
	sprintf('while open, the fake API got only probes: %d in %.1f s (at most %d)',
		$probes, $window, $max_probes));
cmp_ok($probes, '>=', 1, 'the open circuit was probed');

# every request after the circuit opened came at least the cooldown after
# every earlier answer (a failed probe opens it again for the cooldown)
{
	my @log = fake_api_log($api_cb);
	my $last_done = 0;
	my @gaps;
	for my $r (@log)
	{
		push @gaps, $r->{t} - $last_done if $r->{seq} >= $n_before;
		$last_done = $r->{t_done} if defined $r->{t_done} && $r->{t_done} > $last_done;
	}
	note 'probe gaps after the previous answer: ' . join(', ', map { sprintf('%.3f', $_) } @gaps);
	is(scalar(grep { $_ < $COOLDOWN - $SLACK } @gaps), 0,
		"each probe came at least the cooldown ($COOLDOWN s) after the previous answer");
	is(scalar(grep { $_->{path} ne '/v1/cb' || ($_->{status} // 0) != 503 } @log), 0,
		'so far every request went to /v1/cb and got 503');
}

# Waiting on the open circuit spent no retry.  Between probes nothing moves
# (the items wait for the end of the cooldown), so take a snapshot there: no
# item running, nothing in flight, the fake API's count the same before and
# after, its last answer at least 0.3 s old (so recorded).
my ($snap_ok, $running, $max_attempt, $failed, $attempt_sum, $nattempts, $nrequests);
my $snap_deadline = time() + 10;
while (1)
{
	my $s1 = fake_api_json($api_cb, '/_stats?keys=0');
	my $last = fake_api_json($api_cb, '/_stats/requests?since=' . ($s1->{total} - 1));
	($running, $max_attempt, $failed, $attempt_sum, $nattempts) = split /\|/, sql(qq{
SELECT count(*) FILTER (WHERE status = 'running'), max(attempt),
	   count(*) FILTER (WHERE status = 'failed'), sum(attempt),
	   (SELECT count(*) FROM batch.attempts WHERE batch_id = $bid_cb)
	   + (SELECT sum(in_flight) FROM batch.endpoint_status WHERE name = 'cb')
FROM batch.items WHERE batch_id = $bid_cb});
	my $s2 = fake_api_json($api_cb, '/_stats?keys=0');
	$nrequests = $s2->{total};
	my $last_done = $last->{requests}[-1]{t_done} // $s2->{now};
	$snap_ok = $running == 0 && $s1->{total} == $s2->{total}
	  && $s2->{in_flight} == 0 && $s1->{now} - $last_done >= 0.3;
	last if $snap_ok || time() > $snap_deadline;
	usleep(100_000);
}
ok($snap_ok, 'a quiet moment between probes to look at the items');
note "items: max attempt $max_attempt, attempts recorded $nattempts, "
  . "sum of item attempts $attempt_sum, requests $nrequests";
note 'items (id:status:attempt:recorded attempts): ' . sql(qq{
SELECT string_agg(i.id || ':' || i.status || ':' || i.attempt || ':'
	|| (SELECT count(*) FROM batch.attempts a WHERE a.item_id = i.id), ' ' ORDER BY i.id)
FROM batch.items i WHERE i.batch_id = $bid_cb});

# the probes so far: the requests that came at least the cooldown after
# every earlier answer (the first ones, before the circuit opened, did not)
my $all_probes = count_probes($api_cb);
note "$all_probes probes in all so far";

is($failed, '0', 'no item failed while the circuit was open');
is($nattempts, $nrequests,
	'attempts recorded = requests sent: waiting on the open circuit spends no attempt');
is($attempt_sum, $nattempts, 'the items\' attempt counters add up to the attempts recorded');
cmp_ok($max_attempt, '<=', 1 + $all_probes,
	'no item has more attempts than its first one plus the probes');
cmp_ok($max_attempt, '<=', 5, 'max attempt per item stays low (<= 5 of 11)');

# the API comes back: the next probe succeeds, the circuit closes
fake_api_post($api_cb, '/_control/rules', '{"rules": []}');
my $t_cleared = fake_api_json($api_cb, '/_stats?keys=0')->{now};

is( wait_for($node, qq{SELECT status, completed, failed FROM batch.progress
		WHERE id = $bid_cb}, 'completed|20|0', 40),
	'completed|20|0', 'once the API answers again, every item completes');
is( sql(q{SELECT circuit, consecutive_failures, in_flight FROM batch.endpoint_status
		WHERE name = 'cb'}),
	'closed|0|0', 'the endpoint ends with its circuit closed');
{
	my @log = fake_api_log($api_cb);
	my @ok = grep { ($_->{status} // 0) == 200 } @log;
	is(scalar(@ok), 20, 'exactly one 200 per item');
	my %per_key;
	$per_key{ $_->{key} }++ for @ok;
	is(scalar(keys %per_key), 20, 'the 200s went to 20 different Idempotency-Keys');
	my $first_ok = $ok[0];
	my $done_before = 0;
	for my $r (@log)
	{
		last if $r->{seq} == $first_ok->{seq};
		$done_before = $r->{t_done} if defined $r->{t_done} && $r->{t_done} > $done_before;
	}
	cmp_ok($first_ok->{t} - $done_before, '>=', $COOLDOWN - $SLACK,
		'the first success was a probe, the cooldown after the last failure');
	is(scalar(grep { $_->{t} >= $first_ok->{t} && $_->{t} <= $first_ok->{t_done} } @log), 1,
		'nothing else was sent until the probe had its answer');
	is(scalar(grep { $_->{seq} > $first_ok->{seq} && ($_->{status} // 0) != 200 } @log), 0,
		'every request after it got 200');
	note sprintf('first success %.3f s after the rule was cleared; %d requests in all',
		$first_ok->{t} - $t_cleared, scalar(@log));
}
{
	my $probes_total = count_probes($api_cb);
	note "$probes_total probes in all, the last one successful";
	is( sql(qq{SELECT max(attempt) <= 1 + $probes_total FROM batch.items
			WHERE batch_id = $bid_cb}),
		't', 'no item spent more attempts than its first one plus the probes');
}
stop_fake_api($api_cb);

# ======================================================================
# 2. Rate limit shared by the two executors
# ======================================================================

my $api_rl = start_fake_api();
my $port_rl = $api_rl->{port};
my $NRL = 50;

sql(qq{
SELECT batch.create_endpoint('rl', 'http://127.0.0.1:$port_rl',
	max_concurrency => 16, rate_limit => 600, timeout => '10 s');
SELECT batch.create_pipeline('rl', '[
	{"name": "call", "http": {"endpoint": "rl", "method": "POST", "path": "/v1/fast"}}]',
	retry => '{"max_retries": 3, "backoff_base": "100 ms", "jitter": 0}');
});

my %requests_before = map { split /\|/ }
  split /\n/, sql(q{SELECT pid || '|' || requests FROM batch.workers});

my $bid_rl = sql(qq{
SELECT batch.submit('rl', (SELECT jsonb_agg(jsonb_build_object('n', g) ORDER BY g)
						  FROM generate_series(1, $NRL) g), name => 'rl');
});
is( wait_for($node, qq{SELECT status, completed, failed FROM batch.progress
		WHERE id = $bid_rl}, "completed|$NRL|0", 40),
	"completed|$NRL|0", "all $NRL rate-limited items complete");

{
	my @log = fake_api_log($api_rl);
	my @t = sort { $a <=> $b } map { $_->{t} } grep { $_->{path} eq '/v1/fast' } @log;
	is(scalar(@t), $NRL, "the fake API got $NRL requests");
	is(scalar(grep { ($_->{status} // 0) != 200 } @log), 0, 'all answered 200');

	# the busiest sliding 1-second window
	my $max_window = 0;
	my $j = 0;
	for my $i (0 .. $#t)
	{
		$j = $i if $j < $i;
		$j++ while $j + 1 <= $#t && $t[ $j + 1 ] < $t[$i] + 1.0;
		my $n = $j - $i + 1;
		$max_window = $n if $n > $max_window;
	}
	# the token bucket: requests in [t_i, t_j] <= 10 + 10 * (t_j - t_i)
	my $max_excess = 0;
	for my $i (0 .. $#t)
	{
		for my $k ($i .. $#t)
		{
			my $excess = ($k - $i + 1) - 10 * ($t[$k] - $t[$i]);
			$max_excess = $excess if $excess > $max_excess;
		}
	}
	my $span = $t[-1] - $t[0];
	note sprintf('rate limit: %d requests over %.3f s; busiest 1 s window %d; '
		  . 'largest burst above the rate %.2f (bucket 10)', scalar(@t), $span,
		$max_window, $max_excess);
	cmp_ok($max_window, '<=', 10 + 10 + 2,
		'at most 10 (rate) + 10 (bucket) + slack requests in any 1-second window');
	cmp_ok($max_excess, '<=', 10 + 2,
		'between any two requests, at most the bucket (10) + 10/s + slack');
	cmp_ok($span, '>=', 3.5,
		"$NRL requests at 10/s after a burst of at most 10 take at least 3.5 s");
}

my %requests_after = map { split /\|/ }
  split /\n/, sql(q{SELECT pid || '|' || requests FROM batch.workers});
note 'requests per executor: '
  . join(', ', map { "pid $_: " . ($requests_after{$_} - ($requests_before{$_} // 0)) }
	  sort keys %requests_after);
is( sql(q{SELECT in_flight, circuit FROM batch.endpoint_status WHERE name = 'rl'}),
	'0|closed', 'the rate-limited endpoint ends with nothing in flight');
stop_fake_api($api_rl);

# ======================================================================
# 3. A Retry-After pauses the whole endpoint
# ======================================================================

my $api_ra = start_fake_api();
my $port_ra = $api_ra->{port};
my $RA = 2;

sql(qq{
SELECT batch.create_endpoint('ra', 'http://127.0.0.1:$port_ra',
	max_concurrency => 8, timeout => '10 s');
SELECT batch.create_pipeline('ra', '[
	{"name": "call", "http": {"endpoint": "ra", "method": "POST", "path": "/v1/ra"}}]',
	retry => '{"max_retries": 3, "backoff_base": "100 ms", "jitter": 0}');
});

# the default body carries the payload, whose "fault" the fake API applies
my $bid_ra = sql(qq{
SELECT batch.submit('ra', '[{"n": 0, "fault": "429:ra=${RA}x1"}]', name => 'ra');
});
is( wait_for($node, q{SELECT paused_until IS NOT NULL FROM batch.endpoint_status
		WHERE name = 'ra'}, 't', 30),
	't', 'the 429 with Retry-After pauses the endpoint');
my $added_in_pause = sql(qq{
SELECT batch.add_items($bid_ra, (SELECT jsonb_agg(jsonb_build_object('n', g) ORDER BY g)
								FROM generate_series(1, 10) g)) \\gset
SELECT paused_until > clock_timestamp() FROM batch.endpoint_status WHERE name = 'ra';
});
is($added_in_pause, 't', '10 items were added while the endpoint was paused');

is( wait_for($node, qq{SELECT status, completed, failed FROM batch.progress
		WHERE id = $bid_ra}, 'completed|11|0', 40),
	'completed|11|0', 'all 11 items complete after the pause');
{
	my @log = fake_api_log($api_ra);
	my @r429 = grep { ($_->{status} // 0) == 429 } @log;
	is(scalar(@r429), 1, 'one 429');
	is(scalar(@log), 12, '12 requests: the 429, its retry and 10 others');
	my $answered = $r429[0]{t_done};
	my @early = grep { $_->{t} > $answered && $_->{t} < $answered + $RA - $SLACK } @log;
	my ($next) = grep { $_->{t} > $answered } @log;
	note sprintf('first request after the 429 arrived %.3f s after its answer',
		$next->{t} - $answered) if $next;
	is(scalar(@early), 0,
		"no request reached the endpoint within Retry-After ($RA s, minus $SLACK) of the 429's answer");
	is(scalar(grep { $_->{t} < $answered && $_->{seq} != $r429[0]{seq} } @log), 0,
		'the 429 was the first request');
}
is( sql(qq{SELECT count(*) FILTER (WHERE attempt = 1), count(*) FILTER (WHERE attempt = 2)
		FROM batch.items WHERE batch_id = $bid_ra}),
	'10|1', 'items waiting out the pause spent no attempt; the 429 item retried once');
is( sql(qq{SELECT count(*) FROM batch.attempts WHERE batch_id = $bid_ra}),
	'12', 'one attempt per request');
is( sql(q{SELECT in_flight, circuit, paused_until IS NULL FROM batch.endpoint_status
		WHERE name = 'ra'}),
	'0|closed|t', 'the endpoint ends unpaused, closed, with nothing in flight');
stop_fake_api($api_ra);

$node->stop;
done_testing();
