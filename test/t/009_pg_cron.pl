
# 009_pg_cron.pl
#
# Scheduling through a real pg_cron, preloaded with pgbatch in one cluster
# (cron.database_name = postgres, jobs in background workers).  pg_cron
# 1.4 runs jobs at minute boundaries, so each part waits up to about two
# minutes; nothing is asserted about when within that time.
#
# 1. Scheduled retry.  An operator (alice, logged in as herself) runs a
#    batch whose stage fails permanently until a gate opens; all 5 items
#    fail.  The gate opens, and batch.schedule_retry() makes a job named
#    pgbatch_retry_<id>, owned by alice, calling retry_failed: the job runs,
#    re-queues the items, the executors complete them, and cron's run
#    history shows the job succeeded.  unschedule_retry() removes it.
# 2. Maintenance and runs without workers.  An executor holds an HTTP item
#    whose request hangs; the server is stopped with -m immediate (the
#    executor is killed) and started with pgbatch.workers = 0 and
#    pgbatch.retention = 1s.  An admin schedules maintenance, alice
#    schedules batch.run() and submits a SQL batch.  Within two minutes:
#    the maintenance job takes the item back (an items_reclaimed event) and
#    purges the history and outputs of the
#    finished batch of part 1 (purged_at set, no attempts or outputs left,
#    a purged event); the run job completes alice's SQL batch; alice's
#    scheduled submission turns a query's rows into a batch, which the run
#    job completes; and the run job, with no executor to leave it to, sends
#    the taken-back item's HTTP request itself and completes it.
# 3. pg_cron in another database.  In a second database with pgbatch, the
#    schedule functions fail with an error naming cron.database_name and a
#    hint holding the exact cron.schedule_in_database() call to run there;
#    the rest of pgbatch works in that database.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_worker_node start_fake_api stop_fake_api wait_for sql);
use PostgreSQL::Test::Utils;
use Test::More;

my $CRON_WAIT = 150;    # seconds: two minute boundaries and the job's run
my ($rc, $out, $err);

my $node = new_worker_node('cron',
	"shared_preload_libraries = 'pgbatch,pg_cron'\n"
	  . "cron.database_name = 'postgres'\n"
	  . "cron.use_background_workers = on\n"
	  . "max_worker_processes = 32\n"
	  . "pgbatch.workers = 1\n");

# as($user, $sql): runs SQL logged in as that role
sub as
{
	my ($user, $query) = @_;
	return $node->safe_psql('postgres', $query, extra_params => [ '-U', $user ],
		timeout => 60);
}

sql(q{
CREATE EXTENSION pg_cron;
CREATE EXTENSION pgbatch;
CREATE ROLE alice LOGIN IN ROLE pgbatch_operator;
CREATE ROLE boss LOGIN IN ROLE pgbatch_admin;
-- so that operators can read their jobs' history (pg_cron's own RLS shows them theirs)
GRANT USAGE ON SCHEMA cron TO pgbatch_operator;
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO PUBLIC;
CREATE TABLE app.gate (open boolean NOT NULL);
INSERT INTO app.gate VALUES (false);
GRANT SELECT ON app.gate TO PUBLIC;
CREATE FUNCTION app.gated(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF NOT (SELECT g.open FROM app.gate g) THEN
		RAISE EXCEPTION 'the gate is closed';
	END IF;
	RETURN p;
END $$;
SELECT batch.create_pipeline('gated', '[{"name": "pass", "sql": "app.gated"}]',
	retry => '{"max_retries": 0}');
});

# 1. a scheduled retry re-queues and completes the failed items
my $bid = as('alice', q{SELECT batch.submit('gated', '[{"n":1},{"n":2},{"n":3},{"n":4},{"n":5}]',
	name => 'retry_me')});
is(wait_for($node, "SELECT status || ' ' || failed FROM batch.progress WHERE id = $bid",
		'failed 5', 60),
	'failed 5', 'with the gate closed, every item fails');
sql('UPDATE app.gate SET open = true');

my $jobid = as('alice', q{SELECT batch.schedule_retry('retry_me', '* * * * *')});
is(sql("SELECT jobname || ' ' || username || ' ' || command || ' ' || database FROM cron.job WHERE jobid = $jobid"),
	"pgbatch_retry_$bid alice SELECT batch.retry_failed(${bid}::bigint) postgres",
	'the job is named after the batch, owned by the operator, and calls retry_failed');
is(as('alice', q{SELECT jobname FROM cron.job}), "pgbatch_retry_$bid",
	'the operator sees her job, and only hers, in cron.job');
is(wait_for($node, "SELECT status || ' ' || completed FROM batch.progress WHERE id = $bid",
		'completed 5', $CRON_WAIT),
	'completed 5', 'the scheduled retry re-queued the failed items and they completed');
is(sql("SELECT count(*) > 0 FROM cron.job_run_details WHERE jobid = $jobid AND status = 'succeeded'"),
	't', 'cron.job_run_details shows the job succeeded');
like(sql("SELECT message FROM batch.events WHERE batch_id = $bid AND event = 'retry_failed' ORDER BY id LIMIT 1"),
	qr/^5 failed items re-queued/, 'the retry is in the batch log');
is(as('alice', "SELECT batch.unschedule_retry($bid)"), '1', 'unschedule_retry removes the job');
is(sql("SELECT count(*) FROM cron.job WHERE jobname = 'pgbatch_retry_$bid'"), '0', '... from cron.job');

# 2. a killed executor's lease, taken back by the maintenance job; runs
#    without workers
my $api = start_fake_api();
sql(qq{
SELECT batch.create_endpoint('api', '$api->{url}');
SELECT batch.create_pipeline('hang', '[{"name": "call", "http": {"endpoint": "api", "path": "/v1/hang"}}]');
});
my $hid = as('alice', q{SELECT batch.submit('hang', '[{"n": 1, "fault": "hangx1"}]', name => 'held')});
is(wait_for($node, "SELECT status FROM batch.items WHERE batch_id = $hid", 'running', 60),
	'running', 'an executor holds the item while its request hangs');

$node->stop('immediate');
$node->append_conf('postgresql.conf', "pgbatch.workers = 0\npgbatch.retention = '1s'\n");
$node->start;
is(sql("SELECT status FROM batch.items WHERE batch_id = $hid"), 'running',
	'after the crash, with no executors, the item is still marked running');
is(sql('SELECT count(*) FROM batch.workers'), '0', 'no executors run');

as('boss', q{SELECT batch.schedule_maintenance()});
is(sql(q{SELECT username || ' ' || command FROM cron.job WHERE jobname = 'pgbatch_maintenance'}),
	'boss CALL batch.maintenance()', 'the maintenance job runs as the admin who scheduled it');
my $rid = as('alice', q{SELECT batch.submit('gated', '[{"n": 1}, {"n": 2}]', name => 'by_cron')});
as('alice', q{SELECT batch.schedule_run('* * * * *', 20)});
as('alice', q{SELECT batch.schedule_submit('nightly', '* * * * *', 'gated',
	'SELECT g AS n FROM generate_series(1, 3) g')});
is(sql(q{SELECT j.username || ' ' || j.command = 'alice SELECT batch.run_schedule(' || s.id || ')'
	FROM cron.job j, batch.schedules s WHERE j.jobname = 'pgbatch_submit_' || s.id AND s.name = 'nightly'}),
	't', 'the scheduled submission is a job of the operator calling run_schedule');
is(sql(q{SELECT username || ' ' || command FROM cron.job WHERE jobname = 'pgbatch_run'}),
	'alice SELECT batch.run(max_seconds => 20)', 'the run job calls batch.run as the operator');

is(wait_for($node, "SELECT count(*) FROM batch.events WHERE batch_id = $hid AND event = 'items_reclaimed' AND actor = 'boss'",
		'1', $CRON_WAIT),
	'1', 'the maintenance job took the item back, and logged it');
is(wait_for($node, "SELECT status || ' ' || attempt FROM batch.items WHERE batch_id = $hid", 'completed 2', $CRON_WAIT),
	'completed 2', '... and the run job, sending the HTTP request itself, completed it (the interrupted attempt counted)');
is(wait_for($node, "SELECT status FROM batch.progress WHERE id = $rid", 'completed', $CRON_WAIT),
	'completed', 'the run job completed the SQL batch without executors');
is(wait_for($node, q{SELECT string_agg(p.status || ' ' || p.total, ',') FROM batch.progress p
		JOIN batch.schedules s ON s.last_batch_id = p.id WHERE s.name = 'nightly'}, 'completed 3', $CRON_WAIT),
	'completed 3', 'the scheduled submission made a batch of the query\'s rows, and the run job completed it');
as('alice', q{SELECT batch.unschedule_submit('nightly')});
is(wait_for($node, "SELECT purged_at IS NOT NULL FROM batch.batches WHERE id = $bid", 't', $CRON_WAIT),
	't', 'the maintenance job purged the batch finished longer than pgbatch.retention ago');
is(sql("SELECT (SELECT count(*) FROM batch.attempts WHERE batch_id = $bid)
	+ (SELECT count(*) FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id WHERE i.batch_id = $bid)"),
	'0', '... its attempts and outputs are gone');
is(sql("SELECT status || ' ' || completed FROM batch.progress WHERE id = $bid"), 'completed 5',
	'... its progress is kept');
is(sql("SELECT count(*) FROM batch.events WHERE batch_id = $bid AND event = 'purged'"), '1',
	'... and the purge is logged');
is(sql(q{SELECT count(*) > 0 FROM cron.job_run_details d JOIN cron.job j USING (jobid)
	WHERE j.jobname = 'pgbatch_maintenance' AND d.status = 'succeeded'}),
	't', 'the maintenance job succeeded');

is(as('alice', q{SELECT batch.unschedule_run()}), '1', 'unschedule_run removes the run job');

# a role that cannot log in cannot own jobs: pg_cron could not run them
sql('CREATE ROLE team NOLOGIN IN ROLE pgbatch_operator; GRANT team TO alice');
($rc, $out, $err) = $node->psql('postgres', 'SET ROLE team; SELECT batch.schedule_run()',
	extra_params => [ '-U', 'alice' ]);
like($err, qr/role "team" cannot log in, so pg_cron cannot run its jobs/,
	'scheduling as a role without LOGIN is refused');

# 3. pg_cron in another database
sql('CREATE DATABASE other');
$node->safe_psql('other', 'CREATE EXTENSION pgbatch');
($rc, $out, $err) = $node->psql('other', 'SELECT batch.schedule_maintenance()');
isnt($rc, 0, 'scheduling from a database without pg_cron fails');
like($err, qr/pg_cron runs in database "postgres", not in "other"/,
	'... naming the database pg_cron runs in');
like($err,
	qr/HINT:  Connect to database postgres and run: SELECT cron\.schedule_in_database\('pgbatch_maintenance', '\* \* \* \* \*', 'CALL batch\.maintenance\(\)', 'other'\);/,
	'... with the exact call to make there');
$node->safe_psql('other', q{
	CREATE FUNCTION public.echo(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT p';
	SELECT batch.create_pipeline('e', '[{"name": "e", "sql": "public.echo"}]');
	SELECT batch.submit('e', '[{"n": 1}]', name => 'x');
	SELECT batch.run('x');});
is(wait_for($node, "SELECT status FROM batch.progress WHERE name = 'x'", 'completed', 60, 'other'),
	'completed', 'the rest of pgbatch works there');

stop_fake_api($api);
$node->stop;
done_testing();
