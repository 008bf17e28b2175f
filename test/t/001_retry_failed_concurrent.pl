
# 001_retry_failed_concurrent.pl
#
# Tests batch.retry_failed() when several sessions call it at the same time.
#
# A 3-stage pipeline (s1 -> s2 -> s3) runs a batch of 2,000 items.  Stage s2
# refuses every tenth item with a plain RAISE EXCEPTION (a permanent error)
# while app.switch.refuse is on, so 200 items end up 'failed' at s2.  Then 8
# sessions are released together through a gate and each runs
#     BEGIN; SELECT batch.retry_failed(...); SELECT pg_sleep(0.3); COMMIT;
# so their calls overlap.  Checked:
#   - the 8 returned counts add up to exactly the number of failed items, and
#     only one call re-queued anything;
#   - every call either lost the advisory lock (NOTICE, returns 0, writes no
#     event) or took it and wrote one 'retry_failed' event; exactly one event
#     carries the count, any others carry 0;
#   - every formerly failed item is pending at s2 with attempt 0, no error,
#     its s1 output intact and no s2/s3 output;
#   - completed items, their outputs and attempts are untouched;
#   - batch.progress / batch.errors / batch.review_queue agree;
#   - a second retry_failed() after the first round committed re-queues 0;
#   - once s2 accepts the items, batch.run() completes the batch and every
#     stage function ran successfully exactly once per item (app.calls);
#   - 4 sessions calling batch.rerun_stage(batch, 's3') together: one
#     re-queues every item at s3 (dropping the s3 outputs, keeping s1 and s2),
#     the others find the advisory lock held;
#   - with wait => true, two sessions calling rerun_stage (or retry_failed)
#     together both take the lock, one after the other: no NOTICE, and each
#     re-queues (and writes its event).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_node run_together sql);
use PostgreSQL::Test::Utils;
use Test::More;

my $NITEMS = 2000;
my $NWORKERS = 8;

my $node = new_node('retry_failed');


sql(q{
CREATE EXTENSION pgbatch;
CREATE SCHEMA app;

-- while refuse is true, s2 fails every tenth item permanently
CREATE TABLE app.switch (refuse boolean NOT NULL);
INSERT INTO app.switch VALUES (true);

-- one row per successful stage call (a failed call's row is rolled back
-- with the stage's subtransaction)
CREATE TABLE app.calls (n integer NOT NULL, stage text NOT NULL,
	pid integer NOT NULL DEFAULT pg_backend_pid());

CREATE FUNCTION app.s1(payload jsonb, outputs jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	n integer := (payload ->> 'n')::integer;
BEGIN
	INSERT INTO app.calls (n, stage) VALUES (n, 's1');
	RETURN jsonb_build_object('double', n * 2);
END
$$;

CREATE FUNCTION app.s2(payload jsonb, outputs jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	n integer := (payload ->> 'n')::integer;
BEGIN
	IF (outputs #>> '{s1,double}')::integer IS DISTINCT FROM n * 2 THEN
		RAISE EXCEPTION 'item %: s2 got s1 output %', n, outputs;
	END IF;
	IF n % 10 = 0 AND (SELECT refuse FROM app.switch) THEN
		RAISE EXCEPTION 's2 refuses item %', n;
	END IF;
	INSERT INTO app.calls (n, stage) VALUES (n, 's2');
	RETURN jsonb_build_object('square', n * n);
END
$$;

CREATE FUNCTION app.s3(payload jsonb, outputs jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	n integer := (payload ->> 'n')::integer;
BEGIN
	IF (outputs #>> '{s1,double}')::integer IS DISTINCT FROM n * 2
	   OR (outputs #>> '{s2,square}')::integer IS DISTINCT FROM n * n THEN
		RAISE EXCEPTION 'item %: s3 got outputs %', n, outputs;
	END IF;
	INSERT INTO app.calls (n, stage) VALUES (n, 's3');
	RETURN jsonb_build_object('sum', n * 2 + n * n);
END
$$;

SELECT batch.create_pipeline('three',
	'[{"name": "s1", "sql": "app.s1"},
	  {"name": "s2", "sql": "app.s2"},
	  {"name": "s3", "sql": "app.s3"}]');
});

my $bid = sql(qq{
SELECT batch.submit('three',
	(SELECT jsonb_agg(jsonb_build_object('n', g, 'key', 'k' || g) ORDER BY g)
	 FROM generate_series(1, $NITEMS) g),
	name => 'b1');
});
like($bid, qr/^\d+$/, 'batch submitted');

my $nfail = $NITEMS / 10;

# ---- first run: 200 items fail permanently at s2
is( sql(q{SELECT stages_run, items_completed, retries_scheduled, items_failed,
			next_due IS NULL FROM batch.run('b1')}),
	join('|', $NITEMS + $NITEMS + ($NITEMS - $nfail), $NITEMS - $nfail, 0, $nfail, 't'),
	'first run: every tenth item fails at s2, the rest complete');

is( sql(qq{SELECT status, stage, attempt, error_code, count(*)
			FROM batch.items WHERE batch_id = $bid
			GROUP BY 1, 2, 3, 4 ORDER BY 1, 2}),
	"completed|s3|1||" . ($NITEMS - $nfail) . "\nfailed|s2|1|raise_exception|$nfail",
	'item states after the first run');

is( sql(qq{SELECT count(*) FROM batch.items
			WHERE batch_id = $bid AND status = 'failed'
			AND (key <> 'k' || (payload ->> 'n') OR (payload ->> 'n')::integer % 10 <> 0)}),
	'0', 'exactly the items n % 10 = 0 failed');

# What must not change for completed items: their rows (xmin, updated_at,
# state) and all outputs and attempts recorded so far.
my $completed_q = qq{
	SELECT md5(string_agg(concat_ws(':', i.id, i.xmin, i.status, i.stage, i.attempt,
									i.updated_at, i.finished_at), ',' ORDER BY i.id))
	FROM batch.items i WHERE i.batch_id = $bid AND i.status = 'completed'};
my $outputs_q = qq{
	SELECT count(*) || ':' || md5(string_agg(concat_ws(':', o.item_id, o.stage, o.output,
									o.created_at, o.xmin), ',' ORDER BY o.item_id, o.stage))
	FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id WHERE i.batch_id = $bid};
my $attempts_q = qq{
	SELECT count(*) || ':' || md5(string_agg(concat_ws(':', a.id, a.item_id, a.stage,
									a.attempt, a.outcome, a.xmin), ',' ORDER BY a.id))
	FROM batch.attempts a WHERE a.batch_id = $bid};
my $completed_before = sql($completed_q);
my $outputs_before = sql($outputs_q);
my $attempts_before = sql($attempts_q);
my $failed_ids_before = sql(qq{SELECT string_agg(id::text, ',' ORDER BY id)
	FROM batch.items WHERE batch_id = $bid AND status = 'failed'});
my $events_before = sql(qq{SELECT count(*) FROM batch.events
	WHERE batch_id = $bid AND event = 'retry_failed'});
is($events_before, '0', 'no retry_failed event yet');

# ---- 8 sessions call retry_failed() together; half of them name the batch,
# half give its id: both must take the same lock
my @results = run_together($node, 1,
	map {
		my $arg = $_ % 2 ? "'b1'" : "$bid";
		qq{BEGIN;
SELECT 'requeued=' || batch.retry_failed($arg);
SELECT pg_sleep(0.3);
COMMIT;}
	} 1 .. $NWORKERS);

my @counts;
my $notices = 0;
for my $r (@results)
{
	my ($n) = $r->{out} =~ /requeued=(\d+)/;
	push @counts, $n;
	$notices++ if $r->{err} =~ /is being re-queued by another transaction; nothing done/;
	unlike($r->{err}, qr/ERROR/, 'worker had no error');
}

is(scalar(grep { defined } @counts), $NWORKERS, 'every worker returned a count');
@counts = map { $_ // -1 } @counts;
my $sum = 0;
$sum += $_ for @counts;
note "retry_failed() returned: @counts; $notices lost the lock with a NOTICE";
is($sum, $nfail, 'the counts add up to the number of failed items');
is(scalar(grep { $_ > 0 } @counts), 1, 'exactly one call re-queued items');

# A call either lost the lock (NOTICE, no event) or held it (one event).
my $events = sql(qq{SELECT count(*), count(*) FILTER (WHERE (detail ->> 'items')::bigint = $nfail),
	count(*) FILTER (WHERE (detail ->> 'items')::bigint = 0)
	FROM batch.events WHERE batch_id = $bid AND event = 'retry_failed'});
my ($nevents, $nfull, $nzero) = split /\|/, $events;
is($nfull, 1, "exactly one retry_failed event says $nfail items");
is($nevents, 1 + $nzero, 'any other retry_failed events say 0 items');
is($nevents + $notices, $NWORKERS,
	'each call either wrote an event or returned 0 with a NOTICE');

# ---- state after the concurrent round
is( sql(qq{SELECT string_agg(id::text, ',' ORDER BY id) FROM batch.items
			WHERE batch_id = $bid AND status = 'pending' AND stage = 's2' AND attempt = 0
			AND error_code IS NULL AND error_message IS NULL AND finished_at IS NULL
			AND next_due <= now()}),
	$failed_ids_before,
	'every formerly failed item is pending at s2, attempt 0, error cleared');
is( sql(qq{SELECT count(*) FROM batch.items WHERE batch_id = $bid
			AND status NOT IN ('completed', 'pending')}),
	'0', 'no failed or running items left');
is( sql(qq{SELECT count(*) FILTER (WHERE o.stage = 's1'
									AND (o.output ->> 'double')::integer = (i.payload ->> 'n')::integer * 2),
				  count(*) FILTER (WHERE o.stage <> 's1')
			FROM batch.items i JOIN batch.outputs o ON o.item_id = i.id
			WHERE i.batch_id = $bid AND i.status = 'pending'}),
	"$nfail|0", 're-queued items keep their s1 output and have no later output');
is(sql($completed_q), $completed_before, 'completed items untouched');
is(sql($outputs_q), $outputs_before, 'outputs untouched');
is(sql($attempts_q), $attempts_before, 'attempt history untouched');
is( sql(qq{SELECT status, total, pending, retrying, running, completed, failed
			FROM batch.progress WHERE id = $bid}),
	join('|', 'running', $NITEMS, $nfail, 0, 0, $NITEMS - $nfail, 0),
	'batch.progress counts the re-queued items as pending');
is(sql(qq{SELECT count(*) FROM batch.errors WHERE batch_id = $bid}), '0',
	'batch.errors is empty');
is(sql(qq{SELECT count(*) FROM batch.review_queue WHERE batch_id = $bid}), '0',
	'batch.review_queue is empty');

# ---- a second round, after the first committed, finds nothing to do
is(sql(q{SELECT batch.retry_failed('b1')}), '0', 'second retry_failed re-queues 0');
is( sql(qq{SELECT count(*) FROM batch.events WHERE batch_id = $bid
			AND event = 'retry_failed' AND (detail ->> 'items')::bigint > 0}),
	'1', 'still only one retry_failed event with a nonzero count');

# ---- let s2 accept everything and finish the batch
sql(q{UPDATE app.switch SET refuse = false});
is( sql(q{SELECT stages_run, items_completed, retries_scheduled, items_failed,
			next_due IS NULL FROM batch.run('b1')}),
	join('|', 2 * $nfail, $nfail, 0, 0, 't'),
	'second run: the re-queued items run s2 and s3 and complete');

is( sql(qq{SELECT status, total, pending, completed, failed
			FROM batch.progress WHERE id = $bid}),
	"completed|$NITEMS|0|$NITEMS|0", 'batch.progress: completed');
is( sql(qq{SELECT count(*) FROM batch.items WHERE batch_id = $bid AND status = 'completed'}),
	$NITEMS, 'every item completed');

# every stage of every item ran successfully exactly once
is( sql(q{SELECT stage, count(*), count(DISTINCT n), min(n), max(n)
			FROM app.calls GROUP BY stage ORDER BY stage}),
	join("\n", map { "$_|$NITEMS|$NITEMS|1|$NITEMS" } qw(s1 s2 s3)),
	'each stage function ran successfully once per item');
is( sql(q{SELECT count(*) FROM (SELECT n, stage FROM app.calls
			GROUP BY n, stage HAVING count(*) > 1) d}),
	'0', 'no stage ran twice for an item');

# history of the re-queued items: s2 failed once, then completed once
is( sql(qq{SELECT a.stage, a.attempt, a.outcome, count(*)
			FROM batch.attempts a JOIN batch.items i ON i.id = a.item_id
			WHERE i.batch_id = $bid AND (i.payload ->> 'n')::integer % 10 = 0
			GROUP BY 1, 2, 3 ORDER BY 1, 3, 2}),
	join("\n", "s1|1|completed|$nfail", "s2|1|completed|$nfail",
		"s2|1|failed|$nfail", "s3|1|completed|$nfail"),
	'attempt history of the re-queued items');
is( sql(qq{SELECT count(*) FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
			WHERE i.batch_id = $bid}),
	3 * $NITEMS, 'one output per item and stage');

# ---- rerun_stage() takes the same lock: 4 sessions rerun s3 together
@results = run_together($node, 2,
	map {
		qq{BEGIN;
SELECT 'rerun=' || batch.rerun_stage($bid, 's3');
SELECT pg_sleep(0.3);
COMMIT;}
	} 1 .. 4);
my @reruns = map { my ($n) = $_->{out} =~ /rerun=(\d+)/; $n // -1 } @results;
note "rerun_stage() returned: @reruns";
is(join(' ', sort { $a <=> $b } @reruns), "0 0 0 $NITEMS",
	'one rerun_stage() call re-queued every item at s3, the others found the lock held');
is(scalar(grep { $_->{err} =~ /is being re-queued by another transaction; nothing done/ } @results),
	3, 'the three others said so with a NOTICE');
is( sql(qq{SELECT status || ' ' || stage || ' ' || count(*) FROM batch.items WHERE batch_id = $bid
			GROUP BY status, stage}),
	"pending s3 $NITEMS", 'every item is pending at s3');
is( sql(qq{SELECT string_agg(DISTINCT o.stage, ',' ORDER BY o.stage) FROM batch.outputs o
			JOIN batch.items i ON i.id = o.item_id WHERE i.batch_id = $bid}),
	's1,s2', 'the s3 outputs were dropped, s1 and s2 kept');
is(sql(qq{SELECT items_completed FROM batch.run($bid)}), $NITEMS, 'batch.run() ran s3 again for every item');

# ---- wait => true: the calls queue on the lock instead of returning 0
@results = run_together($node, 3,
	map {
		qq{BEGIN;
SELECT 'rerun=' || batch.rerun_stage($bid, 's3', wait => true);
SELECT pg_sleep(0.3);
COMMIT;}
	} 1 .. 2);
@reruns = map { my ($n) = $_->{out} =~ /rerun=(\d+)/; $n // -1 } @results;
is("@reruns", "$NITEMS $NITEMS",
	'rerun_stage(wait => true) in two sessions together: each re-queued every item, one after the other');
is(scalar(grep { $_->{err} =~ /NOTICE/ } @results), 0, '... and neither found the lock held');
$events_before = sql(qq{SELECT count(*) FROM batch.events WHERE batch_id = $bid AND event = 'retry_failed'});
@results = run_together($node, 4,
	map {
		qq{BEGIN;
SELECT 'retried=' || batch.retry_failed($bid, wait => true);
SELECT pg_sleep(0.3);
COMMIT;}
	} 1 .. 2);
is(join(' ', map { my ($n) = $_->{out} =~ /retried=(\d+)/; $n // -1 } @results), '0 0',
	'retry_failed(wait => true) in two sessions together: both ran (nothing failed)');
is(scalar(grep { $_->{err} =~ /NOTICE/ } @results), 0, '... neither found the lock held');
is(sql(qq{SELECT count(*) FROM batch.events WHERE batch_id = $bid AND event = 'retry_failed'}) - $events_before,
	2, '... and each wrote its event');

$node->stop;
done_testing();
