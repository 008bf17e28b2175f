
# 024_owner_time.pl
#
# Owner fairness in time: one owner's slow stages do not keep another owner
# waiting.  team_a's two batches each run a stage that takes 6 s, one on each
# of the two executors.  When every executor has been held up for a while,
# the launcher starts an extra one, which serves only the owners nobody
# serves: team_b's one-item batch, submitted a second later, completes while
# team_a's stages are still running, instead of after them.  The extra
# executor exits once it has had nothing to do for a few seconds.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_worker_node sql wait_for);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $node = new_worker_node('owner_time', "pgbatch.poll_interval = '1s'\n");
sql(q{
CREATE EXTENSION pgbatch;
CREATE ROLE team_a LOGIN IN ROLE pgbatch_operator;
CREATE ROLE team_b LOGIN IN ROLE pgbatch_operator;
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO PUBLIC;
CREATE FUNCTION app.act(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_sleep((p ->> 'sleep')::float8);
	RETURN '{}';
END $$;
SELECT batch.create_pipeline('act', '[{"name": "act", "sql": "app.act"}]', retry => '{"max_retries": 0}');
});
is(wait_for($node, q{SELECT count(*) FROM batch.workers}, '2', 30), '2', 'two executors run');

$node->safe_psql('postgres', q{SET ROLE team_a;
SELECT batch.submit('act', '[{"sleep": 6}]', name => 'a_slow1');
SELECT batch.submit('act', '[{"sleep": 6}]', name => 'a_slow2');});
usleep(1_000_000);
$node->safe_psql('postgres', q{SET ROLE team_b; SELECT batch.submit('act', '[{"sleep": 0}]', name => 'b_quick');});

is(wait_for($node, q{SELECT count(*) FROM batch.progress WHERE name IN ('a_slow1', 'a_slow2', 'b_quick')
	AND status = 'completed'}, '3', 60), '3', 'all three batches completed');
is(sql(q{SELECT (SELECT max(i.finished_at) FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id
		WHERE b.name = 'b_quick')
	< (SELECT min(i.finished_at) FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id
		WHERE b.name LIKE 'a_slow%')}), 't',
	"team_b's item completed while team_a's slow stages were still running on both executors");
is(sql(q{SELECT count(DISTINCT a.started_at) FROM batch.attempts a JOIN batch.batches b ON b.id = a.batch_id
	WHERE b.name LIKE 'a_slow%'}), '2', "team_a's two stages ran side by side, one per executor");

# the extra executor goes once idle
is(wait_for($node, q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgbatch executor'}, '2', 30),
	'2', 'the extra executor exited once it had nothing to do');

$node->stop;
done_testing();
