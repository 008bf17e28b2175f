
# 025_plans.pl
#
# The saved plans that record a chunk's outcomes stay right as batch.items
# and batch.queue grow: the outcome UPDATE of the items, and the queue
# trigger's UPDATE of their queue rows (src/queue.c).  Each is planned once
# and kept (a generic plan).  One made while its table was nearly empty
# would read the table whole, stay in the plan cache after the table has
# grown, until the next ANALYZE, and make every chunk read every row; so
# they are planned and run with sequential scans off (pgb_execute_keyed).
#
# One session (batch.run(), so the plans are its own; autovacuum off, so
# nothing analyzes the tables behind the test's back) records a 5-item batch
# just after batch.items and batch.queue were analyzed with those 5 items in
# them (statistics from which a plan would scan the tables), then 20,000
# more items.  auto_explain logs the plan of every statement the session
# runs: no plan of the outcome UPDATE or of the queue's UPDATE for the big batch reads
# its table by a sequential scan; they use its primary key.  Every claim
# walks the queue's index of due items and reaches each item by primary key
# (a join of the two tables, planned from those statistics, read both whole
# for every queue row: 21 s a claim of 100).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_node sql);
use PostgreSQL::Test::Utils;
use Test::More;

my $node = new_node('plans', "autovacuum = off\n");
sql(q{
CREATE EXTENSION pgbatch;
CREATE SCHEMA app;
CREATE FUNCTION app.noop(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql AS 'SELECT ''{}''::jsonb';
SELECT batch.create_pipeline('noop', '[{"name": "s", "sql": "app.noop"}]');
SELECT batch.submit('noop', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 5) g),
	name => 'small');
});
sql('VACUUM ANALYZE batch.items');
sql('VACUUM ANALYZE batch.queue');

my $offset = -s $node->logfile;
my $out = sql(q{
LOAD 'auto_explain';
SET auto_explain.log_min_duration = 0;
SET auto_explain.log_nested_statements = on;
SELECT items_completed FROM batch.run('small');
SELECT 'big: ' || batch.submit('noop',
	(SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 20000) g), name => 'big');
SELECT items_completed FROM batch.run('big');
});
like($out, qr/^5\nbig: \d+\n20000$/, 'both batches ran in the session');

# auto_explain's entries, each a "duration: ... plan:" message and its lines
my @entries = split /^\S.*?LOG:  duration: /m, slurp_file($node->logfile, $offset);

# by_key(QUERY, TABLE, COND, WHAT): the big batch's 200 chunks (of 100, the
# last ones logged) ran QUERY, and each found its rows of batch.TABLE by
# primary key, one probe per row (Index Cond COND): not by reading the whole
# index into a hash or a sort
sub by_key
{
	my ($query, $table, $cond, $what) = @_;
	my @all = grep { /Query Text: \Q$query\E/ } @entries;
	my @big = @all[-200 .. -1];
	cmp_ok(scalar(@all), '>=', 200, "every chunk of the big batch ran the $what")
	  or diag(scalar(@all) . " $what plans in the log");
	is(scalar(grep { /Seq Scan on $table/ } @big), 0,
		"no $what of the big batch read batch.$table by a sequential scan");
	is(scalar(grep { /Hash Join|Merge Join/ } @big), 0,
		"no $what of the big batch hashed or sorted batch.$table");
	is( scalar(
			grep { /Index Scan using ${table}_pkey on $table \S+\s.*\n\s*Index Cond: \(\Q$cond\E\)/ }
			  @big),
		200,
		"every $what of the big batch found its rows by primary key");
}
by_key('UPDATE batch.items i SET status = u.status', 'items', 'id = u.id', 'outcome UPDATE');
by_key('UPDATE batch.queue q SET status = u.status', 'queue', 'item_id = u.item_id', 'queue UPDATE');

my @claims = grep { /Query Text: SELECT x\.id, x\.batch_id/ } @entries;
cmp_ok(scalar(@claims), '>=', 200, 'every chunk of the big batch was claimed')
  or diag(scalar(@claims) . ' claim plans in the log');
is(scalar(grep { /Seq Scan|Join Filter/ } @claims), 0,
	'no claim read a table by a sequential scan or filtered a join');
is(scalar(grep { /Index Cond: \(id = q\.item_id\)/ && /using queue_due_batch_idx on queue/ } @claims),
	scalar(@claims), 'every claim walked the index of due items and found each item by primary key');

$node->stop;
done_testing();
