
# 014_events.pl
#
# The events pgbatch sends on the channel pgbatch_events (NOTIFY at commit,
# JSON payloads), heard by a psql session that LISTENs: psql prints
# 'Asynchronous notification "pgbatch_events" with payload "..." received
# from server process with PID n.' after each command it runs, so the
# listener runs SELECT 1 to collect them, and decodes each payload.  A
# marker (a NOTIFY of our own, committed after the transaction under test)
# says when everything committed before it has been delivered, since
# notifications arrive in commit order: no test waits on the clock for
# something not to happen.
#
# 1. In-session, on a node without executors: a 20-item batch whose SQL
#    stage fails 5 items, run by batch.run(): batch_started, then progress,
#    then batch_finished (status partial, counts 20 = 15 completed + 5
#    failed), items_failed for 5 items in all; the events carry the batch's
#    id, never its name or contents (anyone who may connect may LISTEN).
# 2. A run that rolls back (BEGIN; SELECT batch.run(...); ROLLBACK) sends
#    nothing; the same run committed does.  A batch.cancel() that ends a
#    batch sends batch_finished with status cancelled, as batch.progress.
# 3. Coalescing: a 20,000-item batch run by one batch.run() call sends at
#    most 10 progress events (at most one a second per backend and batch,
#    plus submit, start and end; on a machine so slow that the run takes
#    over 6 s, at most 4 + its seconds) - a bound on their number, not on
#    speed.
# 4. Executors (pgbatch.workers = 2): a 3,000-item batch gets one or two
#    batch_finished from them, also when they end it together (the one
#    that commits last looks again after its commit); after CALL
#    batch.maintenance() still one or two, and every one says completed;
#    every event's "at" is ISO 8601, and none carries a batch name or
#    counts.
# 5. Endpoint events, with the executors and the fake API: a 429 with
#    Retry-After sends endpoint_paused (reason retry_after, the endpoint's id
#    and name, until); with pgbatch.circuit_threshold = 2, a path that
#    always answers 503 sends endpoint_paused (reason circuit_open), and
#    once the rule is cleared, endpoint_resumed (reason circuit_closed).
#
# Every wait is bounded; nothing is asserted about speed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use JSON::PP;
use PgBatchTest qw(new_node new_worker_node start_fake_api stop_fake_api
  fake_api_post wait_for sql);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $WAIT = 90;    # seconds any expected event may take to come

# A listener: a background psql session that LISTENs on pgbatch_events, and
# the events it has heard so far, decoded, in the order they came.
sub new_listener
{
	my ($node) = @_;
	my $session = $node->background_psql('postgres', timeout => $PgBatchTest::TIMEOUT);
	$session->set_query_timer_restart();
	$session->query_safe('LISTEN pgbatch_events');
	return { node => $node, session => $session, events => [], bad => [], markers => 0 };
}

# pump($l): runs SELECT 1 in the listener and collects what psql printed
sub pump
{
	my ($l) = @_;
	my $out = $l->{session}->query_safe('SELECT 1');
	for my $line (split /\n/, $out)
	{
		next unless $line =~
		  /^Asynchronous notification "pgbatch_events" with payload "(.*)" received from server process with PID (\d+)\.$/;
		my ($payload, $pid) = ($1, $2);
		my $ev = eval { decode_json($payload) };
		if (ref $ev ne 'HASH' || !defined $ev->{event})
		{
			push @{ $l->{bad} }, $payload;
			next;
		}
		$ev->{_pid} = $pid;
		push @{ $l->{events} }, $ev;
	}
	return;
}

# wait_events($l, $pred, $timeout): pumps until $pred->(events) is true, for
# at most $timeout seconds; returns whether it became true
sub wait_events
{
	my ($l, $pred, $timeout) = @_;
	my $deadline = time() + ($timeout // $WAIT);
	while (1)
	{
		pump($l);
		return 1 if $pred->($l->{events});
		return 0 if time() > $deadline;
		usleep(200_000);
	}
}

# sync($l): commits a marker NOTIFY (from another session) and waits until it
# is heard: every event committed before it has been delivered by then
sub sync
{
	my ($l) = @_;
	my $n = ++$l->{markers};
	$l->{node}->safe_psql('postgres',
		qq{SELECT pg_notify('pgbatch_events', '{"event": "test_marker", "n": $n}')},
		timeout => $PgBatchTest::TIMEOUT);
	return wait_events($l,
		sub { grep { $_->{event} eq 'test_marker' && $_->{n} == $n } @{ $_[0] } });
}

# id_of($l, $name): a batch's id (payloads name a batch by id only)
sub id_of
{
	my ($l, $name) = @_;
	$l->{ids}{$name} //= $l->{node}->safe_psql('postgres',
		"SELECT id FROM batch.batches WHERE name = '$name'", timeout => $PgBatchTest::TIMEOUT);
	return $l->{ids}{$name};
}

# is_batch($l, $ev, $name): whether the event is about that batch
sub is_batch
{
	my ($l, $ev, $name) = @_;
	my $id = id_of($l, $name);
	return $id ne '' && defined $ev->{batch_id} && $ev->{batch_id} == $id;
}

# of_batch($l, $name, $event): the events of a batch (by name), optionally
# only those of one kind
sub of_batch
{
	my ($l, $name, $event) = @_;
	return grep {
		is_batch($l, $_, $name)
		  && (!defined $event || $_->{event} eq $event)
	} @{ $l->{events} };
}

# counts($l, $ev): the counts of the event's batch now (batch.progress), as
# text: events carry ids, not contents
sub counts
{
	my ($l, $ev) = @_;
	return $l->{node}->safe_psql('postgres',
		"SELECT format('total=%s pending=%s retrying=%s running=%s completed=%s failed=%s cancelled=%s',"
		  . " total, pending - retrying, retrying, running, completed, failed, cancelled)"
		  . " FROM batch.progress WHERE id = $ev->{batch_id}",
		timeout => $PgBatchTest::TIMEOUT);
}

sub quit_listener
{
	my ($l) = @_;
	is_deeply($l->{bad}, [], 'every payload was a JSON object with an "event"');
	$l->{session}->quit;
	return;
}

# ======================================================================
# 1-3: in-session runs, no executors
# ======================================================================

my $node = new_node('events');
sql(q{
CREATE EXTENSION pgbatch;
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO PUBLIC;
CREATE FUNCTION app.check(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF (p ->> 'n')::int % 4 = 0 THEN
		RAISE EXCEPTION 'item % is bad', p ->> 'n';
	END IF;
	RETURN jsonb_build_object('n', p -> 'n');
END
$$;
CREATE FUNCTION app.noop(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql
	AS $$ SELECT '{}'::jsonb $$;
SELECT batch.create_pipeline('chk', '[{"name": "check", "sql": "app.check"}]');
SELECT batch.create_pipeline('noop', '[{"name": "noop", "sql": "app.noop"}]');
});

my $l = new_listener($node);

# 1. batch_started, progress, items_failed, batch_finished
my $bid = sql(q{SELECT batch.submit('chk', (SELECT jsonb_agg(jsonb_build_object('n', g) ORDER BY g)
	FROM generate_series(1, 20) g), name => 'ev one')});
is(sql(q{SELECT items_completed || ' ' || items_failed FROM batch.run('ev one')}), '15 5',
	'batch.run() completed 15 items and failed 5');
ok(wait_events($l, sub { grep { $_->{event} eq 'batch_finished' && is_batch($l, $_, 'ev one') } @{ $_[0] } }),
	'batch_finished was heard');
ok(sync($l), 'the marker came after it');
my @one = of_batch($l, 'ev one');
note 'events of "ev one": ' . join(', ', map { $_->{event} . ($_->{event} eq 'progress' ? ' (' . counts($l, $_) . ')' : '') } @one);

my ($i_started) = grep { $one[$_]{event} eq 'batch_started' } 0 .. $#one;
my @i_finished = grep { $one[$_]{event} eq 'batch_finished' } 0 .. $#one;
is(scalar(grep { $_->{event} eq 'batch_started' } @one), 1, 'one batch_started');
is(scalar(@i_finished), 1, 'one batch_finished');
ok(defined $i_started && @i_finished && $i_started < $i_finished[0],
	'batch_started came before batch_finished');
ok(defined $i_started && grep({ $one[$_]{event} eq 'progress' && $_ > $i_started && $_ < $i_finished[0] } 0 .. $#one),
	'a progress event came between them');
is($i_finished[0], $#one, 'batch_finished came last');

my ($fin) = of_batch($l, 'ev one', 'batch_finished');
is($fin->{status}, 'partial', 'batch_finished: status partial (some items failed)');
is(counts($l, $fin), 'total=20 pending=0 retrying=0 running=0 completed=15 failed=5 cancelled=0',
	'batch_finished: the counts of the finished batch');
is($fin->{batch_id}, $bid, 'batch_finished: the batch id');
ok(defined $fin->{at} && $fin->{at} =~ /^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d/, "batch_finished: at ($fin->{at})");

my @failed = of_batch($l, 'ev one', 'items_failed');
my $nfailed = 0;
$nfailed += $_->{items} for @failed;
ok(@failed >= 1, 'items_failed was heard (' . scalar(@failed) . ' events)');
is($nfailed, 5, 'items_failed: 5 items in all');
my ($last_progress) = reverse of_batch($l, 'ev one', 'progress');
is(counts($l, $last_progress), counts($l, $fin), 'the last progress event has the final counts');
is(scalar(grep { ($_->{batch_id} // -1) != $bid } @one), 0, 'every event carries the batch id');

# 2. a run that rolls back sends nothing
my $bid2 = sql(q{SELECT batch.submit('chk', '[{"n": 1}, {"n": 4}]', name => 'ev rollback')});
ok(sync($l), 'marker after the submit');
my $before = scalar(@{ $l->{events} });
my @at_submit = of_batch($l, 'ev rollback');
note 'events at submit: ' . join(', ', map { $_->{event} } @at_submit);
is( sql(q{BEGIN; SELECT items_completed || ' ' || items_failed FROM batch.run('ev rollback'); ROLLBACK;}),
	'1 1', 'a run in a transaction that rolls back (1 completed, 1 failed)');
ok(sync($l), 'marker after the rollback');
my @after = grep { $_->{event} ne 'test_marker' } @{ $l->{events} }[ $before .. $#{ $l->{events} } ];
is(scalar(@after), 0, 'nothing was delivered for the rolled-back run')
  or diag explain \@after;
sql(q{SELECT batch.run('ev rollback')});
ok(wait_events($l, sub { grep { $_->{event} eq 'batch_finished' && is_batch($l, $_, 'ev rollback') } @{ $_[0] } }),
	'the same run committed: batch_finished');
my @rb = of_batch($l, 'ev rollback');
is(scalar(grep { $_->{event} eq 'batch_started' } @rb), 1, '... and one batch_started');
is(join(' ', map { $_->{items} } of_batch($l, 'ev rollback', 'items_failed')), '1',
	'... and items_failed for 1 item');

# 2b. a cancel ends a batch too: batch_finished should say what
# batch.progress says
sql(q{SELECT batch.submit('noop', '[{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]', name => 'ev cancel')});
is(sql(q{SELECT items_completed FROM batch.run('ev cancel', max_items => 2)}), '2', 'ran 2 items of 4');
is(sql(q{SELECT batch.cancel('ev cancel')}), '2', 'batch.cancel() cancelled the other 2');
ok(wait_events($l, sub { grep { $_->{event} eq 'batch_finished' && is_batch($l, $_, 'ev cancel') } @{ $_[0] } }),
	'the cancel announced batch_finished');
my ($cfin) = of_batch($l, 'ev cancel', 'batch_finished');
is(counts($l, $cfin), 'total=4 pending=0 retrying=0 running=0 completed=2 failed=0 cancelled=2',
	'batch_finished: 2 completed, 2 cancelled');
my $cstatus = sql(q{SELECT status FROM batch.progress WHERE name = 'ev cancel'});
is($cfin->{status}, $cstatus, "batch_finished: status $cstatus, as in batch.progress");

# 3. coalescing: a 20,000-item batch in one batch.run() call
sql(q{SELECT batch.submit('noop', (SELECT jsonb_agg(jsonb_build_object('n', g))
	FROM generate_series(1, 20000) g), name => 'ev big')});
my $t0 = time();
is(sql(q{SELECT items_completed FROM batch.run('ev big')}), '20000', 'one batch.run() completed 20,000 items');
my $elapsed = time() - $t0;
note sprintf('the run took %.1f s', $elapsed);
ok(wait_events($l, sub { grep { $_->{event} eq 'batch_finished' && is_batch($l, $_, 'ev big') } @{ $_[0] } }),
	'batch_finished of the big batch');
ok(sync($l), 'marker after it');
my @progress = of_batch($l, 'ev big', 'progress');
note 'progress events of the big batch: ' . join('; ', map { $_->{at} } @progress);
# One at submit, then from the run: one at start, at most one a second, one
# at the end.  So at most 10, unless the run took longer than 6 s (a slow
# machine): then at most 4 + its seconds.
my $bound = 4 + int($elapsed);
$bound = 10 if $bound < 10;
cmp_ok(scalar(@progress), '<=', $bound,
	'progress events for 20,000 items are coalesced: ' . scalar(@progress) . " (at most $bound)");
cmp_ok(scalar(@progress), '>=', 1, 'at least one');
my ($big_fin) = of_batch($l, 'ev big', 'batch_finished');
is($big_fin->{status} . ' ' . counts($l, $big_fin),
	'completed total=20000 pending=0 retrying=0 running=0 completed=20000 failed=0 cancelled=0',
	'batch_finished: completed, 20,000 items');
is(scalar(of_batch($l, 'ev big', 'batch_finished')), 1, 'one batch_finished');
is(scalar(of_batch($l, 'ev big', 'batch_started')), 1, 'one batch_started');

quit_listener($l);
$node->stop;

# ======================================================================
# 4-5: executors and endpoints
# ======================================================================

my $wnode = new_worker_node('events_workers',
	"pgbatch.circuit_threshold = 2\n" . "pgbatch.circuit_cooldown = '1s'\n");
my $api = start_fake_api();
sql(qq{
CREATE EXTENSION pgbatch;
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO PUBLIC;
CREATE FUNCTION app.noop(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql
	AS \$\$ SELECT '{}'::jsonb \$\$;
SELECT batch.create_pipeline('noop', '[{"name": "noop", "sql": "app.noop"}]');
SELECT batch.create_endpoint('ra', '$api->{url}', max_concurrency => 4);
SELECT batch.create_endpoint('cb', '$api->{url}', max_concurrency => 4);
SELECT batch.create_pipeline('ra', '[{"name": "call", "http": {"endpoint": "ra", "path": "/v1/ra"}}]',
	retry => '{"max_retries": 5, "backoff_base": "100 ms", "jitter": 0}');
SELECT batch.create_pipeline('cb', '[{"name": "call", "http": {"endpoint": "cb", "path": "/v1/cb"}}]',
	retry => '{"max_retries": 20, "backoff_base": "100 ms", "backoff_factor": 1, "jitter": 0}');
});
is( wait_for($wnode, q{SELECT count(*) FROM batch.workers}, '2', 60),
	'2', 'two executors run');

$l = new_listener($wnode);

# 4. a batch run by the executors
my $wid = sql(q{SELECT batch.submit('noop', (SELECT jsonb_agg(jsonb_build_object('n', g))
	FROM generate_series(1, 3000) g), name => 'ev workers')});
is(wait_for($wnode, q{SELECT status FROM batch.progress WHERE name = 'ev workers'}, 'completed', $WAIT),
	'completed', 'the executors completed the batch');
# one of them announces the end: the one whose statement sees it, or, when
# both ended it together and neither saw the other's last items, the one
# that commits last, in a transaction right after (the docs allow two)
ok(wait_events($l, sub { scalar(of_batch($l, 'ev workers', 'batch_finished')) >= 1 }, 30),
	'the executors announced the end themselves');
ok(sync($l), 'marker after it');
my @wfin = of_batch($l, 'ev workers', 'batch_finished');
note 'batch_finished from the executors: ' . scalar(@wfin) . ' (pids ' . join(', ', map { $_->{_pid} } @wfin) . ')';
cmp_ok(scalar(@wfin), '<=', 2, 'at most two batch_finished from the executors: ' . scalar(@wfin));
note 'batch_started: ' . scalar(of_batch($l, 'ev workers', 'batch_started'))
  . ', progress: ' . scalar(of_batch($l, 'ev workers', 'progress'));
cmp_ok(scalar(of_batch($l, 'ev workers', 'batch_started')), '>=', 1, 'batch_started was heard');

$wnode->safe_psql('postgres', 'CALL batch.maintenance()', timeout => $PgBatchTest::TIMEOUT);
ok(sync($l), 'marker after CALL batch.maintenance()');
@wfin = of_batch($l, 'ev workers', 'batch_finished');
note 'batch_finished after maintenance: ' . scalar(@wfin);
cmp_ok(scalar(@wfin), '>=', 1, 'after maintenance: at least one batch_finished');
cmp_ok(scalar(@wfin), '<=', 2, 'after maintenance: at most two (it announces only an end no one announced)');
my %formats = map { (($_->{at} // '') =~ /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$/ ? 'ISO 8601' : "other: $_->{at}") => 1 }
  grep { $_->{event} ne 'test_marker' } @{ $l->{events} };
is(join(', ', sort keys %formats), 'ISO 8601', 'every event writes "at" the same way (ISO 8601)');
is(scalar(grep { exists $_->{batch} || exists $_->{total} } @{ $l->{events} }), 0,
	'no event carries a batch name or counts');
is( join(',', sort { $a cmp $b } map { $_->{status} . ' ' . counts($l, $_) } @wfin),
	join(',', ('completed total=3000 pending=0 retrying=0 running=0 completed=3000 failed=0 cancelled=0') x @wfin),
	'every batch_finished: completed, 3000 items');
is(scalar(grep { $_->{batch_id} != $wid } @wfin), 0, 'every batch_finished: the batch id');

# 5a. Retry-After pauses the endpoint
my $ra_id = sql(q{SELECT id FROM batch.endpoints WHERE name = 'ra'});
sql(q{SELECT batch.submit('ra', '[{"n": 1, "fault": "429:ra=1x1"}]', name => 'ev ra')});
ok(wait_events($l, sub { grep { $_->{event} eq 'endpoint_paused' && ($_->{endpoint} // '') eq 'ra' } @{ $_[0] } }),
	'endpoint_paused for the endpoint ra');
my ($paused) = grep { $_->{event} eq 'endpoint_paused' && ($_->{endpoint} // '') eq 'ra' } @{ $l->{events} };
note 'endpoint_paused: ' . encode_json({ map { $_ => $paused->{$_} } grep { !/^_/ } keys %$paused });
is($paused->{reason}, 'retry_after', 'endpoint_paused: reason retry_after');
is($paused->{endpoint_id}, $ra_id, 'endpoint_paused: the endpoint id');
ok(defined $paused->{until} && $paused->{until} =~ /^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d/,
	'endpoint_paused: until (' . ($paused->{until} // 'missing') . ')');
ok(wait_events($l, sub { grep { $_->{event} eq 'batch_finished' && is_batch($l, $_, 'ev ra') } @{ $_[0] } }),
	'the item completed after the pause');
my ($ra_fin) = of_batch($l, 'ev ra', 'batch_finished');
is($ra_fin->{status}, 'completed', '... batch_finished: completed');
is(scalar(grep { ($_->{endpoint} // '') eq 'ra' } @{ $l->{events} }), 1,
	'one event for the endpoint ra (the pause), no circuit event after one failure');

# 5b. the circuit opens, then closes
my $cb_id = sql(q{SELECT id FROM batch.endpoints WHERE name = 'cb'});
fake_api_post($api, '/_control/rules', '{"rules": [{"match": {"path": "/v1/cb"}, "fault": "503"}]}');
sql(q{SELECT batch.submit('cb', (SELECT jsonb_agg(jsonb_build_object('n', g))
	FROM generate_series(1, 5) g), name => 'ev cb')});
ok(wait_events($l, sub { grep { $_->{event} eq 'endpoint_paused' && ($_->{endpoint} // '') eq 'cb' } @{ $_[0] } }),
	'endpoint_paused for the endpoint cb');
my ($opened) = grep { $_->{event} eq 'endpoint_paused' && ($_->{endpoint} // '') eq 'cb' } @{ $l->{events} };
note 'endpoint_paused: ' . encode_json({ map { $_ => $opened->{$_} } grep { !/^_/ } keys %$opened });
is($opened->{reason}, 'circuit_open', 'endpoint_paused: reason circuit_open');
is($opened->{endpoint_id}, $cb_id, 'endpoint_paused: the endpoint id');
ok(defined $opened->{until}, 'endpoint_paused: until (' . ($opened->{until} // 'missing') . ')');
is( wait_for($wnode, q{SELECT circuit <> 'closed' FROM batch.endpoint_status WHERE name = 'cb'}, 't', 10),
	't', 'batch.endpoint_status: the circuit is not closed');
ok(sync($l), 'marker while the circuit is open');
is(scalar(grep { $_->{event} eq 'endpoint_resumed' && ($_->{endpoint} // '') eq 'cb' } @{ $l->{events} }), 0,
	'no endpoint_resumed while every request fails');

fake_api_post($api, '/_control/rules', '{"rules": []}');
ok(wait_events($l, sub { grep { $_->{event} eq 'endpoint_resumed' && ($_->{endpoint} // '') eq 'cb' } @{ $_[0] } }),
	'endpoint_resumed for the endpoint cb once the 503s stop');
my ($resumed) = grep { $_->{event} eq 'endpoint_resumed' && ($_->{endpoint} // '') eq 'cb' } @{ $l->{events} };
note 'endpoint_resumed: ' . encode_json({ map { $_ => $resumed->{$_} } grep { !/^_/ } keys %$resumed });
is($resumed->{reason}, 'circuit_closed', 'endpoint_resumed: reason circuit_closed');
is($resumed->{endpoint_id}, $cb_id, 'endpoint_resumed: the endpoint id');
ok(wait_events($l, sub { grep { $_->{event} eq 'batch_finished' && is_batch($l, $_, 'ev cb') } @{ $_[0] } }),
	'the items completed');
ok(sync($l), 'marker at the end');
my @cb = grep { ($_->{endpoint} // '') eq 'cb' } @{ $l->{events} };
note 'events of endpoint cb: ' . join(', ', map { "$_->{event} ($_->{reason})" } @cb);
is(scalar(grep { $_->{event} eq 'endpoint_paused' && $_->{reason} eq 'circuit_open' } @cb), 1,
	'one circuit_open (a failed probe does not announce it again)');
is(scalar(grep { $_->{event} eq 'endpoint_resumed' } @cb), 1, 'one endpoint_resumed');
is(scalar(grep { ($_->{reason} // '') eq 'retry_after' } @cb), 0,
	'no retry_after for 503s without Retry-After');
my ($cb_fin) = of_batch($l, 'ev cb', 'batch_finished');
is($cb_fin->{status} . ' ' . $wnode->safe_psql('postgres', "SELECT completed FROM batch.progress WHERE id = $cb_fin->{batch_id}"),
	'completed 5', '... batch_finished: completed, 5 items');

quit_listener($l);
stop_fake_api($api);
$wnode->stop;
done_testing();
