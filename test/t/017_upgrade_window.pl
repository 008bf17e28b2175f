
# 017_upgrade_window.pl
#
# The upgrade window: the library is new, the database's pgbatch is still at
# an older version (the binaries were updated and the server restarted, but
# ALTER EXTENSION pgbatch UPDATE has not run yet).  One cluster with pgbatch
# preloaded (2 executors) and a database at version 1.3.
#
# 1. The executors stay idle: submitted items stay pending, and the server
#    log says so once, from executor 0, with the version, the library's and
#    the hint to update; no executor logs an error, however often it wakes.
# 2. batch.run() refuses with the same hint.
# 3. After ALTER EXTENSION pgbatch UPDATE the executors take the waiting
#    items up by themselves and complete them, also an item whose insert
#    was still open when the update started (the update waits for it before
#    it copies the items into batch.queue, so the new item is there too);
#    the log still holds the one line.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_worker_node wait_for sql);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

# an error of a background process: its log lines carry no application name
# (log_line_prefix '%m [%p] %q%a ' stops at %q for them), this test's do
my $WORKER_ERROR = qr/^\S+ \S+ \S+ \[\d+\] (ERROR|FATAL|PANIC):/m;

my $node = new_worker_node('window');
my $library = sql(q{SELECT default_version FROM pg_available_extensions WHERE name = 'pgbatch'});

sql(q{
CREATE EXTENSION pgbatch VERSION '1.3';
CREATE FUNCTION public.echo(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT p $$;
SELECT batch.create_pipeline('echo', '[{"name": "echo", "sql": "public.echo"}]');
SELECT batch.submit('echo', '[{"n": 1}, {"n": 2}, {"n": 3}]', name => 'waiting');
});

# 1. idle executors, one log line
is(wait_for($node, q{SELECT count(*) FROM batch.workers}, '2', 60), '2',
	'the executors run in the database at 1.3');
# several poll intervals (500 ms) and wake-ups
for my $i (1 .. 4)
{
	sql(qq{SELECT batch.add_items('waiting', '[{"n": 1$i}]')});
	usleep(500_000);
}
is(sql(q{SELECT string_agg(DISTINCT status, ',') FROM batch.items}), 'pending',
	'the executors leave the items of an older pgbatch alone');
my $log = slurp_file($node->logfile);
my @lines = $log =~ /(pgbatch in database "postgres" is at version 1\.3, older than its library \(\Q$library\E\): its executors stay idle)/g;
is(scalar(@lines), 1, 'the log says so once');
like($log, qr/HINT:  Run ALTER EXTENSION pgbatch UPDATE in that database\./, '... with the hint');
unlike($log, $WORKER_ERROR, 'no executor logs an error');

# 2. batch.run() refuses
my ($rc, $out, $err) = $node->psql('postgres', q{SELECT * FROM batch.run('waiting')});
like($err, qr/pgbatch in database "postgres" is older than its library/, 'batch.run() refuses');
like($err, qr/HINT:  Run ALTER EXTENSION pgbatch UPDATE\./, '... and says what to do');

# 3. the update, while an insert is still open, and the work resumes by itself
my $writer = $node->background_psql('postgres', timeout => $PostgreSQL::Test::Utils::timeout_default);
$writer->query_safe('BEGIN');
$writer->query_safe(q{SELECT batch.add_items('waiting', '[{"n": 100}]')});
my $updater = $node->background_psql('postgres', timeout => $PostgreSQL::Test::Utils::timeout_default);
$updater->query_until(qr/updating/, qq{\\echo updating\nALTER EXTENSION pgbatch UPDATE;\n\\echo updated\n});
is(wait_for($node, q{SELECT count(*) FROM pg_stat_activity
		WHERE query LIKE 'ALTER EXTENSION%' AND wait_event_type = 'Lock'}, '1', 60),
	'1', 'the update waits for the open insert');
$writer->query_safe('COMMIT');
$writer->quit;
$updater->query_until(qr/updated/, '');
$updater->quit;
is(sql(q{SELECT extversion FROM pg_extension WHERE extname = 'pgbatch'}), $library, 'updated');
is(sql(q{SELECT count(*) FROM batch.items i LEFT JOIN batch.queue q ON q.item_id = i.id
		WHERE q.item_id IS NULL}), '0', 'every item has its queue row, the one inserted meanwhile too');
is(wait_for($node, q{SELECT status || ' ' || completed FROM batch.progress WHERE name = 'waiting'},
		'completed 8', 60),
	'completed 8', 'after the update the executors complete the waiting items');
$log = slurp_file($node->logfile);
@lines = $log =~ /(is at version 1\.3, older than its library)/g;
is(scalar(@lines), 1, 'the log still holds the one line');
unlike($log, $WORKER_ERROR, 'and no executor error');

$node->stop;
done_testing();
