
# 003_transient_backoff.pl
#
# Tests transient stage errors (SQLSTATE PB001) and their backoff across
# sequential batch.run() calls.
#
# Part A, exact and independent of the clock: a pipeline whose retry policy is
# backoff_base 1 hour, factor 2, backoff_max 3 hours, jitter 0, max_retries 3.
# Its stage raises PB001 for the items listed in app.refused.  Checked:
#   - a retry is scheduled exactly base * factor^(retry-1), capped at
#     backoff_max, after the attempt finished (next_due - attempts.finished_at);
#   - a run while the retries are not due does nothing and reports next_due;
#   - making some items due (by moving their next_due back: "time travel")
#     runs only those;
#   - after max_retries retries the item fails with error code
#     retry_requested, while items that stop being refused complete;
#   - retry_failed(max_retries, backoff_factor) overrides the policy per item;
#   - with jitter 0.5 every delay stays within +/- 50 % of the base.
# Part B, in real time: a backoff of 1 second.  Runs are repeated (bounded)
# until the items complete; every run that ended before the items were due
# must have run nothing, and every retry started no earlier than its
# next_due.  Nothing is asserted about how fast anything runs.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_node sql);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);


my $node = new_node('backoff');


sql(q{
CREATE EXTENSION pgbatch;
CREATE SCHEMA app;

-- items whose stage call currently fails transiently
CREATE TABLE app.refused (n integer PRIMARY KEY);

CREATE FUNCTION app.fetch_item(payload jsonb, outputs jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	item_n integer := (payload ->> 'n')::integer;
BEGIN
	IF EXISTS (SELECT FROM app.refused r WHERE r.n = item_n) THEN
		RAISE EXCEPTION 'item % not available yet', item_n USING ERRCODE = 'PB001';
	END IF;
	RETURN jsonb_build_object('n', item_n);
END
$$;

-- one record per batch.run() call, with the wall-clock times around it
CREATE TABLE app.runs (batch text, t_start timestamptz, t_end timestamptz,
	stages_run bigint, items_completed bigint, next_due timestamptz);
CREATE FUNCTION app.timed_run(b text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	t0 timestamptz := clock_timestamp();
	r record;
BEGIN
	SELECT * INTO r FROM batch.run(b);
	INSERT INTO app.runs VALUES (b, t0, clock_timestamp(), r.stages_run,
								 r.items_completed, r.next_due);
	RETURN concat_ws('|', r.stages_run, r.items_completed, r.retries_scheduled,
					 r.items_failed);
END
$$;

SELECT batch.create_pipeline('slow', '[{"name": "fetch", "sql": "app.fetch_item"}]',
	retry => '{"max_retries": 3, "backoff_base": "1 hour", "backoff_factor": 2,
			   "backoff_max": "3 hours", "jitter": 0}');
SELECT batch.create_pipeline('jittery', '[{"name": "fetch", "sql": "app.fetch_item"}]',
	retry => '{"backoff_base": "1 hour", "backoff_max": "2 hours", "jitter": 0.5}');
SELECT batch.create_pipeline('quick', '[{"name": "fetch", "sql": "app.fetch_item"}]',
	retry => '{"max_retries": 3, "backoff_base": "1 s", "backoff_factor": 1, "jitter": 0}');
});

# ==== Part A: exact backoff, time moved by hand

# items 1-10; 1-5 ("A") stay refused, 6-10 ("B") are refused for a while
my $bid = sql(q{
INSERT INTO app.refused SELECT generate_series(1, 10);
SELECT batch.submit('slow',
	(SELECT jsonb_agg(jsonb_build_object('n', g) ORDER BY g) FROM generate_series(1, 10) g),
	name => 'a');
});

# item n: status|attempt|error_code|delay of its next_due after its last attempt
my $state_q = qq{
	SELECT string_agg(concat_ws('|', (i.payload ->> 'n'), i.status, i.attempt, i.error_code,
					  CASE WHEN i.status = 'pending' AND i.attempt > 0
						   THEN i.next_due - a.finished_at END),
					  E'\\n' ORDER BY (i.payload ->> 'n')::integer)
	FROM batch.items i
	LEFT JOIN LATERAL (SELECT max(a.finished_at) AS finished_at FROM batch.attempts a
					   WHERE a.item_id = i.id) a ON true
	WHERE i.batch_id = $bid};
sub expect_states
{
	my ($a, $b, $name) = @_;
	is(sql($state_q),
		join("\n", (map { "$_|$a" } 1 .. 5), (map { "$_|$b" } 6 .. 10)), $name);
}
sub time_travel
{
	my ($where) = @_;
	sql(qq{UPDATE batch.items SET next_due = now() - interval '1 s'
		   WHERE batch_id = $bid AND status = 'pending' AND $where});
}

is(sql(q{SELECT app.timed_run('a')}), '10|0|10|0', 'run 1: ten retries scheduled');
expect_states('pending|1|retry_requested|01:00:00', 'pending|1|retry_requested|01:00:00',
	'first retry is due backoff_base after the attempt');
is( sql(qq{SELECT r.next_due = (SELECT min(next_due) FROM batch.items WHERE batch_id = $bid)
			FROM app.runs r WHERE batch = 'a' ORDER BY t_start DESC LIMIT 1}),
	't', 'run reports when the next retry is due');
is( sql(qq{SELECT status, pending, retrying, completed, failed FROM batch.progress
			WHERE id = $bid}),
	'running|10|10|0|0', 'batch.progress counts the items as retrying');
is( sql(qq{SELECT level, event, error_code, count(*) FROM batch.log
			WHERE batch_id = $bid AND event LIKE 'stage%' GROUP BY 1, 2, 3}),
	'warning|stage_retry|retry_requested|10', 'batch.log shows the retries');

my $rows_q = qq{SELECT md5(string_agg(concat_ws(':', id, xmin, next_due), ',' ORDER BY id))
	FROM batch.items WHERE batch_id = $bid};
my $rows_before = sql($rows_q);
is(sql(q{SELECT app.timed_run('a')}), '0|0|0|0', 'run 2: nothing is due, nothing runs');
is(sql($rows_q), $rows_before, 'run 2 left the items alone');
is( sql(qq{SELECT count(*) FROM batch.attempts WHERE batch_id = $bid}),
	'10', 'run 2 made no attempt');

time_travel(q{(payload ->> 'n')::integer <= 5});
is(sql(q{SELECT app.timed_run('a')}), '5|0|5|0', 'run 3: only the five due items run');
expect_states('pending|2|retry_requested|02:00:00', 'pending|1|retry_requested|01:00:00',
	'second retry is due base * factor after the attempt; the others are untouched');

time_travel('true');
is(sql(q{SELECT app.timed_run('a')}), '10|0|10|0', 'run 4: all ten due again');
expect_states('pending|3|retry_requested|03:00:00', 'pending|2|retry_requested|02:00:00',
	'third retry is capped at backoff_max');

# B is no longer refused: it completes; A exhausts max_retries and fails
sql(q{DELETE FROM app.refused WHERE n > 5});
time_travel('true');
is(sql(q{SELECT app.timed_run('a')}), '10|5|0|5', 'run 5: five complete, five fail');
expect_states('failed|4|retry_requested', 'completed|3',
	'after max_retries retries an item fails; a later success completes it');
is( sql(qq{SELECT (i.payload ->> 'n')::integer <= 5, a.attempt, a.outcome, count(*)
			FROM batch.attempts a JOIN batch.items i ON i.id = a.item_id
			WHERE i.batch_id = $bid GROUP BY 1, 2, 3 ORDER BY 1, 2, 3}),
	join("\n", 'f|1|retry|5', 'f|2|retry|5', 'f|3|completed|5',
		't|1|retry|5', 't|2|retry|5', 't|3|retry|5', 't|4|failed|5'),
	'attempt history');
is( sql(qq{SELECT status, pending, completed, failed FROM batch.progress WHERE id = $bid}),
	'partial|0|5|5', 'batch.progress: partial');
is( sql(qq{SELECT stage, error_code, items FROM batch.errors WHERE batch_id = $bid}),
	'fetch|retry_requested|5', 'batch.errors groups the failures');

# retry_failed with per-item overrides: 2 retries, factor 1.5
is(sql(q{SELECT batch.retry_failed('a', max_retries => 2, backoff_factor => 1.5)}), '5',
	'retry_failed re-queues the five failed items');
expect_states('pending|0', 'completed|3', 'failed items are pending again, attempt 0');
is(sql(q{SELECT app.timed_run('a')}), '5|0|5|0', 'run 6: retries scheduled again');
expect_states('pending|1|retry_requested|01:00:00', 'completed|3',
	'first retry after retry_failed waits backoff_base');
is(sql(q{SELECT app.timed_run('a')}), '0|0|0|0', 'run 7: not due, nothing runs');
time_travel('true');
is(sql(q{SELECT app.timed_run('a')}), '5|0|5|0', 'run 8');
expect_states('pending|2|retry_requested|01:30:00', 'completed|3',
	'the overriding backoff_factor applies');
time_travel('true');
is(sql(q{SELECT app.timed_run('a')}), '5|0|0|5', 'run 9: the overriding max_retries applies');
expect_states('failed|3|retry_requested', 'completed|3', 'items failed after 2 retries');

# jitter 0.5: every delay is within 30 to 90 minutes, and they are not all alike
my $jid = sql(q{
INSERT INTO app.refused SELECT generate_series(1001, 1050);
SELECT batch.submit('jittery',
	(SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1001, 1050) g),
	name => 'j');
});
is(sql(q{SELECT app.timed_run('j')}), '50|0|50|0', 'jittery batch: 50 retries scheduled');
is( sql(qq{SELECT count(*) FILTER (WHERE i.next_due - a.finished_at
									BETWEEN interval '30 min' AND interval '90 min'),
				  count(DISTINCT i.next_due - a.finished_at) > 1
			FROM batch.items i JOIN batch.attempts a ON a.item_id = i.id
			WHERE i.batch_id = $jid}),
	'50|t', 'jittered delays stay within +/- 50 % of the base and vary');

# ==== Part B: a real 1-second backoff

my $qid = sql(q{
INSERT INTO app.refused SELECT generate_series(2001, 2003);
SELECT batch.submit('quick',
	(SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(2001, 2003) g),
	name => 'q');
});
is(sql(q{SELECT app.timed_run('q')}), '3|0|3|0', 'quick batch: 3 retries scheduled');
my $due = sql(qq{SELECT min(next_due) FROM batch.items WHERE batch_id = $qid});
sql(q{DELETE FROM app.refused WHERE n > 2000});

# run until done, for at most 30 s (the items are due after 1 s)
my $done = 0;
my $deadline = time() + 30;
while (time() < $deadline)
{
	sql(q{SELECT app.timed_run('q')});
	$done = sql(qq{SELECT count(*) = 3 FROM batch.items
				   WHERE batch_id = $qid AND status = 'completed'});
	last if $done eq 't';
	usleep(200_000);
}
is($done, 't', 'quick batch completes once the retries are due');
# (the first run, which scheduled the retries, is not one of them)
my $later_runs = q{FROM app.runs WHERE batch = 'q'
	AND t_start > (SELECT min(t_end) FROM app.runs WHERE batch = 'q')};
is(sql(qq{SELECT count(*) $later_runs AND t_end < '$due' AND stages_run > 0}),
	'0', 'no run that ended before the items were due ran anything');
note 'runs that ended before the items were due: '
  . sql(qq{SELECT count(*) $later_runs AND t_end < '$due'})
  . ' of ' . sql(qq{SELECT count(*) $later_runs});
is( sql(qq{SELECT count(*) FROM batch.attempts a1
			JOIN batch.attempts a2 ON a2.item_id = a1.item_id AND a2.attempt = 2
			WHERE a1.batch_id = $qid AND a1.attempt = 1 AND a1.outcome = 'retry'
			AND a2.outcome = 'completed'
			AND a2.started_at >= a1.finished_at + interval '1 s'}),
	'3', 'every retry started no earlier than 1 s after the failed attempt');

$node->stop;
done_testing();
