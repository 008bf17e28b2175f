
# 002_run_concurrent.pl
#
# Tests two batch.run() calls executing the same batch at the same time.
#
# A 3-stage pipeline whose stage functions each insert (n, stage, backend
# pid) into app.log runs a batch of 5,000 items.  Two sessions are released
# together through a gate and each calls SELECT * FROM batch.run('b2'); they
# claim items with FOR UPDATE SKIP LOCKED, so they must share the work without
# running anything twice.  Checked after both return:
#   - every item is completed, with one output per stage;
#   - for every item and stage the stage function ran exactly once (app.log;
#     a stage run twice, even in different sessions, would log twice);
#   - one 'completed' attempt per item and stage, and no other attempts;
#   - the two calls' stages_run add up to 15,000 and items_completed to
#     5,000 (how the work was split is only reported, not asserted);
#   - batch.progress says 'completed' with completed = 5,000.
# Then batch.run() without a batch, as a tenant (alice, two batches) in a
# transaction left open: across batches each batch locks its first due
# items and the earliest are taken, so some of alice's items stay locked
# until her transaction ends, but none of another tenant's (bob's batch
# stays whole for everyone else), and after the commit her next run takes
# the rest in due order.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_node run_together sql);
use PostgreSQL::Test::Utils;
use Test::More;

my $NITEMS = 5000;
my $NSTAGES = 3;
my $NWORKERS = 2;

my $node = new_node('run_concurrent');


sql(q{
CREATE EXTENSION pgbatch;
CREATE SCHEMA app;

CREATE TABLE app.log (n integer NOT NULL, stage text NOT NULL,
	pid integer NOT NULL DEFAULT pg_backend_pid());

-- one function serves all three stages; the stage name is a parameter
CREATE FUNCTION app.step(stage text, payload jsonb, outputs jsonb) RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
	n integer := (payload ->> 'n')::integer;
BEGIN
	-- the outputs of the earlier stages must have come along
	IF (SELECT count(*) FROM jsonb_object_keys(outputs)) <> substr(stage, 2)::integer - 1 THEN
		RAISE EXCEPTION 'item % at %: unexpected outputs %', n, stage, outputs;
	END IF;
	INSERT INTO app.log (n, stage) VALUES (n, stage);
	RETURN jsonb_build_object('n', n, 'stage', stage);
END
$$;
CREATE FUNCTION app.s1(payload jsonb, outputs jsonb) RETURNS jsonb
	LANGUAGE sql RETURN app.step('s1', payload, outputs);
CREATE FUNCTION app.s2(payload jsonb, outputs jsonb) RETURNS jsonb
	LANGUAGE sql RETURN app.step('s2', payload, outputs);
CREATE FUNCTION app.s3(payload jsonb, outputs jsonb) RETURNS jsonb
	LANGUAGE sql RETURN app.step('s3', payload, outputs);

SELECT batch.create_pipeline('three',
	'[{"name": "s1", "sql": "app.s1"},
	  {"name": "s2", "sql": "app.s2"},
	  {"name": "s3", "sql": "app.s3"}]');
});

my $bid = sql(qq{
SELECT batch.submit('three',
	(SELECT jsonb_agg(jsonb_build_object('n', g) ORDER BY g)
	 FROM generate_series(1, $NITEMS) g),
	name => 'b2');
});
like($bid, qr/^\d+$/, 'batch submitted');
is( sql(qq{SELECT status, total, pending FROM batch.progress WHERE id = $bid}),
	"queued|$NITEMS|$NITEMS", 'batch queued');

# ---- two executors, started together
my @results = run_together($node, 2,
	(q{SELECT 'run=' || concat_ws(',', stages_run, items_completed, retries_scheduled,
	items_failed) || ';pid=' || pg_backend_pid() FROM batch.run('b2');}) x $NWORKERS);

my (@stages_run, @completed);
my ($retries, $failed) = (0, 0);
for my $r (@results)
{
	my ($s, $c, $rt, $f, $pid) = $r->{out} =~ /run=(\d+),(\d+),(\d+),(\d+);pid=(\d+)/;
	ok(defined $s, 'executor returned its counts')
	  or diag "output: $r->{out}\nstderr: $r->{err}";
	unlike($r->{err}, qr/ERROR/, 'executor had no error');
	push @stages_run, $s // 0;
	push @completed, $c // 0;
	$retries += $rt // 0;
	$failed += $f // 0;
}

my ($sum_stages, $sum_completed) = (0, 0);
$sum_stages += $_ for @stages_run;
$sum_completed += $_ for @completed;
note "stages_run per executor: @stages_run; items_completed per executor: @completed";
is($sum_stages, $NITEMS * $NSTAGES, 'stages_run adds up to items x stages');
is($sum_completed, $NITEMS, 'items_completed adds up to the number of items');
is($retries + $failed, 0, 'no retries, no failures');
if (grep { $_ == 0 } @stages_run)
{
	note 'one executor found no work: the two calls did not overlap this time';
}

# ---- every item completed, every stage ran exactly once
is( sql(qq{SELECT status, stage, attempt, count(*) FROM batch.items
			WHERE batch_id = $bid GROUP BY 1, 2, 3}),
	"completed|s3|1|$NITEMS", 'every item completed at s3');
is( sql(q{SELECT stage, count(*), count(DISTINCT n), min(n), max(n)
			FROM app.log GROUP BY stage ORDER BY stage}),
	join("\n", map { "$_|$NITEMS|$NITEMS|1|$NITEMS" } qw(s1 s2 s3)),
	'each stage function ran once per item');
is( sql(q{SELECT count(*) FROM (SELECT n, stage FROM app.log
			GROUP BY n, stage HAVING count(*) > 1) d}),
	'0', 'no stage ran twice for an item');
is( sql(q{SELECT count(*) FROM (SELECT n FROM app.log
			GROUP BY n HAVING count(DISTINCT pid) > 1) d}),
	'0', 'all stages of an item ran in the same session');
note 'stage calls per session: '
  . sql(q{SELECT string_agg(c::text, ' ' ORDER BY c)
		  FROM (SELECT count(*) AS c FROM app.log GROUP BY pid) s});
is( sql(qq{SELECT outcome, count(*), count(DISTINCT (item_id, stage))
			FROM batch.attempts WHERE batch_id = $bid GROUP BY outcome}),
	join('|', 'completed', $NITEMS * $NSTAGES, $NITEMS * $NSTAGES),
	'one completed attempt per item and stage, nothing else');
is( sql(qq{SELECT count(*), count(DISTINCT (o.item_id, o.stage))
			FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
			WHERE i.batch_id = $bid}),
	join('|', $NITEMS * $NSTAGES, $NITEMS * $NSTAGES), 'one output per item and stage');
is( sql(qq{SELECT status, total, pending, running, retrying, completed, failed, cancelled,
			completion_ratio, finished_at IS NOT NULL
			FROM batch.progress WHERE id = $bid}),
	"completed|$NITEMS|0|0|0|$NITEMS|0|0|1.0000|t",
	'batch.progress: completed, completed = items');

# nothing is left to run
is( sql(q{SELECT stages_run, items_completed, next_due IS NULL FROM batch.run('b2')}),
	'0|0|t', 'a further run finds nothing to do');

# ---- across batches, as a tenant, in an open transaction
sql(q{
CREATE ROLE alice IN ROLE pgbatch_operator;
CREATE ROLE bob IN ROLE pgbatch_operator;
GRANT USAGE ON SCHEMA app TO alice, bob;
GRANT INSERT ON app.log TO alice, bob;
SELECT batch.create_pipeline('one', '[{"name": "s1", "sql": "app.s1"}]');
SELECT batch.grant_pipeline('one', 'alice');
SELECT batch.grant_pipeline('one', 'bob');
SET ROLE alice;
SELECT batch.submit('one', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 10) g),
	name => 'a1');
SELECT batch.submit('one', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(11, 20) g),
	name => 'a2');
RESET ROLE;
SET ROLE bob;
SELECT batch.submit('one', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(21, 120) g),
	name => 'b1');
RESET ROLE;
});
my $alice = $node->background_psql('postgres', timeout => $PostgreSQL::Test::Utils::timeout_default);
$alice->query_safe('SET ROLE alice');
$alice->query_safe('SET pgbatch.claim_batch_size = 4');
$alice->query_safe('BEGIN');
is($alice->query_safe('SELECT items_completed FROM batch.run(max_items => 6)'),
	'6', "alice's run across her batches took 6 items");
my $lockable = q{SELECT count(*) FROM (SELECT 1 FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id
	WHERE b.name = '%s' AND i.status = 'pending' FOR UPDATE OF i SKIP LOCKED) s};
is(sql(sprintf($lockable, 'b1')), '100', "none of bob's items is locked by alice's open transaction");
my $a_free = sql(sprintf($lockable, 'a1')) + sql(sprintf($lockable, 'a2'));
cmp_ok($a_free, '<', 14, "some of alice's items she did not take stay locked until she commits ($a_free of 14 free)");
$alice->query_safe('COMMIT');
is(sql(sprintf($lockable, 'a1')) + sql(sprintf($lockable, 'a2')), 14,
	'after her commit all 14 are free again');
is($alice->query_safe('SELECT items_completed FROM batch.run()'), '14', 'her next run takes them');
$alice->quit;
is( sql(q{SELECT string_agg(b.name || ':' || i.status || ':' || n, ',' ORDER BY b.name, i.status)
		  FROM (SELECT batch_id, status, count(*) AS n FROM batch.items GROUP BY 1, 2) i
		  JOIN batch.batches b ON b.id = i.batch_id WHERE b.name IN ('a1', 'a2', 'b1')}),
	'a1:completed:10,a2:completed:10,b1:pending:100', "alice's items all done, bob's untouched");

$node->stop;
done_testing();
