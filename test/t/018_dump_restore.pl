
# 018_dump_restore.pl
#
# Backups that restore.  A database is dumped with pg_dump -Fc while the
# executors work through a batch (two SQL stages, every tenth item failing),
# and restored with pg_restore into a fresh database of a second cluster
# with pgbatch preloaded.  With no manual step:
#
# 1. the executors of the new database take no work while a pg_restore
#    session is connected to it (one log line; a second session named
#    pg_restore stays a few seconds longer than the restore itself, so that
#    the executors surely meet one), and no server process logs an error;
# 2. the restored batch finishes by itself with correct progress: every item
#    counted once (the counters are rebuilt from the items, not dumped too);
# 3. a new submit works, its ids after the restored ones (the identity
#    sequences are in the dump), and completes;
# 4. retry_failed re-queues the restored failures at their stage, keeping
#    their first stage's output, and they complete once the bug is fixed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_worker_node wait_for sql);
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);

# an error of a background process: its log lines carry no application name
my $WORKER_ERROR = qr/^\S+ \S+ \S+ \[\d+\] (ERROR|FATAL|PANIC):/m;

my $src = new_worker_node('dump_src');
sql(q{
CREATE EXTENSION pgbatch;
CREATE TABLE public.bug (on_ boolean);
INSERT INTO public.bug VALUES (true);
CREATE FUNCTION public.a(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM pg_sleep(0.002);
	RETURN jsonb_build_object('a', p -> 'n');
END $$;
CREATE FUNCTION public.b(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF (p ->> 'n')::int % 10 = 0 AND (SELECT on_ FROM public.bug) THEN
		RAISE EXCEPTION 'bad item %', p ->> 'n';
	END IF;
	RETURN jsonb_build_object('b', o -> 'a' -> 'a');
END $$;
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "public.a"}, {"name": "b", "sql": "public.b"}]',
	retry => '{"max_retries": 0}');
SELECT batch.submit('p', (SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 2000) g),
	name => 'big');
});

# dump while the executors are at it
wait_for($src, q{SELECT completed > 50 FROM batch.progress WHERE name = 'big'}, 't', 60);
my $dump = PostgreSQL::Test::Utils::tempdir() . '/db.dump';
$src->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $src->connstr('postgres') ],
	'pg_dump -Fc while the executors work');
my $dumped = sql(q{SELECT count(*) FILTER (WHERE status <> 'pending') FROM batch.items});
note "the dump was taken with about $dumped items done";
$src->stop;

# restore into a fresh database of a fresh cluster, executors running
my $dst = new_worker_node('dump_dst');
$dst->safe_psql('postgres', 'CREATE DATABASE restored');
my ($hold_out, $hold_err) = ('', '');
my $hold = IPC::Run::start(
	[ 'psql', '-X', '-d', $dst->connstr('restored') . ' application_name=pg_restore',
	  '-c', 'SELECT pg_sleep(6)' ],
	'<', \undef, '>', \$hold_out, '2>', \$hold_err);
$dst->command_ok([ 'pg_restore', '-d', $dst->connstr('restored'), $dump ],
	'pg_restore into a fresh database');

# 1: nothing moves while pg_restore is there
is(wait_for($dst, q{SELECT count(*) FROM batch.workers}, '2', 30, 'restored'), '2',
	'the executors start in the restored database');
my $done = $dst->safe_psql('restored', q{SELECT count(*) FROM batch.items WHERE status <> 'pending'});
usleep(1_500_000);
is($dst->safe_psql('restored', q{SELECT count(*) FROM batch.items WHERE status <> 'pending'}),
	$done, '... and leave the items alone while a pg_restore session is connected');
$hold->finish;

# 1, 2: the batch finishes by itself, every item counted once
is(wait_for($dst, q{SELECT status || ' ' || total || ' ' || completed || ' ' || failed
		FROM batch.progress WHERE name = 'big'}, 'partial 2000 1800 200', 120, 'restored'),
	'partial 2000 1800 200', 'the restored batch finishes by itself, every item counted once');
is($dst->safe_psql('restored', q{SELECT count(*) FROM batch.items WHERE status = 'completed'}),
	'1800', '... as its items say');

# 3: a new submit
my $new = $dst->safe_psql('restored', q{SELECT batch.submit('p', '[{"n": 1}]', name => 'after')});
ok($new > 0, 'a new batch can be submitted');
is($dst->safe_psql('restored', q{SELECT min(i.id) > (SELECT max(i2.id) FROM batch.items i2
	JOIN batch.batches b2 ON b2.id = i2.batch_id WHERE b2.name = 'big')
	FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'after'}),
	't', '... its items numbered after the restored ones');
is(wait_for($dst, q{SELECT status FROM batch.progress WHERE name = 'after'}, 'completed', 60, 'restored'),
	'completed', '... and it completes');

# 4: retry_failed
$dst->safe_psql('restored', q{UPDATE public.bug SET on_ = false});
is($dst->safe_psql('restored', q{SELECT batch.retry_failed('big')}), '200',
	'retry_failed re-queues the restored failures');
is(wait_for($dst, q{SELECT status || ' ' || completed FROM batch.progress WHERE name = 'big'},
		'completed 2000', 120, 'restored'),
	'completed 2000', '... which complete at their stage');
is($dst->safe_psql('restored', q{SELECT count(*) FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
	JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'big' AND o.stage = 'a'}),
	'2000', '... keeping the output of the stage before');

my $log = slurp_file($dst->logfile);
like($log, qr/pg_restore is loading database "restored": its executors wait for it to finish/,
	'the executors waited for pg_restore');
unlike($log, $WORKER_ERROR, 'no server process logged an error');

$dst->stop;
done_testing();
