
# 025_plans.pl
#
# The saved plan that records a chunk's outcomes stays right as batch.items
# grows.  It is planned once and kept (a generic plan), as long as it finds
# the items by primary key.  A generic plan made while batch.items was
# nearly empty reads it whole instead; it would stay in the plan cache after
# the table has grown, until the next ANALYZE, and make every chunk read
# every item.  The recorder then plans each chunk with its own arrays.
#
# One session (batch.run(), so the plans are its own; autovacuum off, so
# nothing analyzes the table behind the test's back) records a 5-item batch
# just after batch.items was analyzed with those 5 items in it, which gives
# a generic plan that scans the table, then 20,000 more items.  auto_explain
# logs the plan of every statement the session runs: no plan of the outcome
# UPDATE for the big batch reads batch.items by a sequential scan; they use
# its primary key.

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
my @updates = grep { /Query Text: UPDATE batch\.items i SET status = u\.status/ } @entries;
my @big = @updates[-200 .. -1];    # the big batch's chunks of 100, last
cmp_ok(scalar(@updates), '>=', 200, 'every chunk of the big batch was recorded by the outcome UPDATE')
  or diag(scalar(@updates) . ' outcome UPDATE plans in the log');
is(scalar(grep { /Seq Scan on items/ } @big), 0,
	'no chunk of the big batch read batch.items by a sequential scan');
is(scalar(grep { /Index Scan using items_pkey on items/ } @big), 200,
	'every chunk of the big batch found its items by primary key');

$node->stop;
done_testing();
