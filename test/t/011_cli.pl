# 011_cli.pl
#
# The operators' command-line tool, pgbatch (cli/), against a real batch:
# a two-stage pipeline whose first stage fails every 5th item (raise_exception)
# and whose second fails every 7th while app.broken says so
# (division_by_zero), plus an item that fails validation (invalid_input); run
# by batch.run().
#
# 1. status, errors, review and log, as text and as --json (each decoded with
#    JSON::PP): the counts, the groups by stage and code, the review queue
#    with and without --payload, the log's levels, order and limit.
# 2. retry: a filter that matches nothing re-queues 0; once the bug is fixed,
#    --codes division_by_zero --stage s2 re-queues 2 and the next run
#    completes them; --max-retries re-queues the s1 failures, not the invalid
#    item; while another transaction holds the batch's advisory lock, retry
#    prints 0 and the server's NOTICE, and retry --wait waits for it.
# 3. Exit statuses: 0; 1 for an unknown batch, a refused connection, a
#    server error (its message, detail and hint printed); 2 for usage errors.
# 4. Connections: PG* variables, -h/-p, a connection string and a URI as
#    -d, PGSERVICE, PGUSER (an operator who sees no batch).
# 5. watch and log --follow through pipes (no terminal): watch prints a
#    status line (with --json, an object) per change as batch.run() and
#    notifications come, and exits by itself once the batch has finished,
#    with its errors; log --follow --json prints each new error once, one
#    object a line, and exits with 0 on SIGTERM.
# 6. Terminal injection: a batch name, error messages and an unknown batch's
#    name holding ESC ] (title), ESC [ 2 J (clear), BEL and the C1 controls
#    U+009B and U+009D reach the output of status, errors, review and log,
#    as text and as --json, and the error messages on stderr, with no
#    control character left (the JSON escapes them); item too.
# 7. The triage loop: item (state, payload, outputs, attempts; --json);
#    fix with an editor (a script): an edit that is not JSON is refused
#    with the server's reason, no edit stores nothing, n 5 -> 6 is stored
#    and --retry re-queues it, and the next run completes it; cancel;
#    endpoints.
#
# (012_cli_tmux.pl covers watch and log --follow on a terminal.)

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use IPC::Run;
use JSON::PP;
use PgBatchTest qw(new_node sql);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

# the tool must be installed (make -C cli install) in the bindir, which the
# TAP harness puts first in PATH
my ($pgbatch) = grep { -x "$_/pgbatch" } split /:/, $ENV{PATH};
die 'pgbatch is not in PATH: run "make -C cli install" (or the top-level make install) first'
  unless defined $pgbatch;
$pgbatch .= '/pgbatch';
note "using $pgbatch";

my $node = new_node('cli');
my %conn = (PGHOST => $node->host, PGPORT => $node->port, PGDATABASE => 'postgres');

# cli(\%env, @args): runs pgbatch with the node's PG* variables (and those in
# %env; undef deletes one); returns (exit status, stdout, stderr)
sub cli
{
	my ($env, @args) = @_;
	my ($out, $err) = ('', '');
	local %ENV = (%ENV, %conn, %{ $env // {} });
	for my $k (keys %ENV) { delete $ENV{$k} unless defined $ENV{$k}; }
	IPC::Run::run([ $pgbatch, @args ], '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(60));
	return ($? >> 8, $out, $err);
}

# cli_ok(@args): runs pgbatch, expects status 0; returns stdout
sub cli_ok
{
	my ($rc, $out, $err) = cli({}, @_);
	is($rc, 0, "pgbatch @_ exits with 0") or diag("stdout: $out\nstderr: $err");
	return $out;
}

# cli_json(@args): runs pgbatch --json @args, expects status 0; returns the
# decoded document (a test fails if it is not JSON)
sub cli_json
{
	my $out = cli_ok('--json', @_);
	my $doc = eval { JSON::PP->new->decode($out) };
	ok(defined $doc, "pgbatch --json @_ prints valid JSON") or diag("$@\n$out");
	return $doc;
}

sql(q{
CREATE EXTENSION pgbatch;
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO PUBLIC;
CREATE TABLE app.broken (yes boolean);
INSERT INTO app.broken VALUES (true);
GRANT SELECT ON app.broken TO PUBLIC;
CREATE FUNCTION app.s1(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF (p ->> 'n')::int % 5 = 0 THEN
		RAISE EXCEPTION 'bad item %', p ->> 'n';
	END IF;
	RETURN jsonb_build_object('n', p -> 'n');
END $$;
CREATE FUNCTION app.s2(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF (p ->> 'n')::int % 7 = 0 AND (SELECT yes FROM app.broken) THEN
		RETURN jsonb_build_object('x', 1 / 0);
	END IF;
	RETURN o;
END $$;
SELECT batch.create_pipeline('p', '[{"name": "s1", "sql": "app.s1"},
	{"name": "s2", "sql": "app.s2"}]', required => '{n}');
});

# 20 valid items (n = 1..20) and one without n
my $bid = sql(q{SELECT batch.submit('p',
	(SELECT jsonb_agg(jsonb_build_object('n', g, 'key', 'k' || g)) FROM generate_series(1, 20) g)
	|| '[{"key": "no-n"}]', name => 'cli_batch')});
sql(q{SELECT batch.run('cli_batch')});
# s1 fails 5, 10, 15, 20; s2 fails 7, 14; the item without n is invalid
is(sql("SELECT status || ' ' || completed || ' ' || failed || ' ' || total FROM batch.progress WHERE id = $bid"),
	'partial 14 7 21', 'the batch ran: 14 completed, 7 failed');

# 1. status
my $out = cli_ok('status');
like($out, qr/^\s*id\s+batch\s+status\s+progress/m, 'status: a header line');
like($out, qr/^\s*$bid\s+cli_batch\s+partial\s+\[[#x.~>-]+\]\s+14\/21\s+0\s+0\s+0\s+7\s/m,
	'status: the batch with its status, bar and counts');
my $status = cli_json('status');
is(ref $status, 'ARRAY', 'status --json: an array');
my ($b) = grep { $_->{name} eq 'cli_batch' } @$status;
is_deeply([ @{$b}{qw(id status total completed failed pending retrying)} ],
	[ $bid, 'partial', 21, 14, 7, 0, 0 ], 'status --json: the batch and its counts');
ok(exists $b->{rate} && exists $b->{eta_seconds} && !defined $b->{eta_seconds},
	'status --json: a rate, and no ETA for a finished batch');

# errors
$out = cli_ok('errors', 'cli_batch');
like($out, qr/7 failed items in 3 groups/, 'errors: a summary');
like($out, qr/^s1\s+raise_exception\s+4\s.*bad item/m, 'errors: raise_exception at s1, with a sample');
like($out, qr/^\s+invalid_input\s+1\s/m, 'errors: the invalid item, in the same stage (named once)');
like($out, qr/^s2\s+division_by_zero\s+2\s.*division by zero/m, 'errors: division_by_zero at s2');
my $errors = cli_json('errors', $bid);
is_deeply({ map { ("$_->{stage}/$_->{error_code}" => $_->{items}) } @$errors },
	{ 's1/raise_exception' => 4, 's1/invalid_input' => 1, 's2/division_by_zero' => 2 },
	'errors --json (by id): the groups and their items');

# review
$out = cli_ok('review', 'cli_batch');
my @rows = grep { /^\s*\d+\s/ } split /\n/, $out;
is(scalar(@rows), 7, 'review: a line per failed item');
like($out, qr/^\s*\d+\s+k7\s+s2\s+division_by_zero\s+1\s+\S+ \S+\s+division by zero$/m,
	'review: item, key, stage, code, attempts, failed at, error');
unlike($out, qr/\{"n": /, 'review: no payload without --payload');
my $review = cli_json('review', 'cli_batch');
is(scalar(@$review), 7, 'review --json: 7 items');
ok(!exists $review->[0]{payload}, 'review --json: no payload without --payload');
$review = cli_json('review', 'cli_batch', '--payload');
my ($r7) = grep { ($_->{key} // '') eq 'k7' } @$review;
is_deeply($r7->{payload}, { n => 7, key => 'k7' }, 'review --json --payload: the payload, as JSON');
like(cli_ok('review', 'cli_batch', '--payload'), qr/\{"n": 7, "key": "k7"\}/, 'review --payload: the payload column');

# log
$out = cli_ok('log', 'cli_batch');
like($out, qr/info\s+submitted\s+batch\s/, 'log: the submission');
like($out, qr/info\s+stage_completed\s+item \d+ s2 #1/, 'log: completed attempts');
like($out, qr/error\s+stage_failed\s+item \d+ s1 #1\s+raise_exception: bad item 5/, 'log: failed attempts, with code and message');
my $total = sql("SELECT count(*) FROM batch.log WHERE batch_id = $bid");
my @lines = split /\n/, cli_ok('log', 'cli_batch', '--limit', '1000');
is(scalar(@lines), $total, "log --limit 1000: every line ($total)");
is(scalar(split /\n/, $out), $total < 50 ? $total : 50, 'log: the last 50 lines by default');
@lines = split /\n/, cli_ok('log', 'cli_batch', '-n', '3');
is(scalar(@lines), 3, 'log -n 3: three lines');
@lines = split /\n/, cli_ok('log', 'cli_batch', '--level', 'warning', '--limit', '1000');
is(scalar(grep { !/^\S+ \S+\s+(warning|error)\s/ } @lines), 0, 'log --level warning: warnings and errors only');
is(scalar(@lines), sql("SELECT count(*) FROM batch.log WHERE batch_id = $bid AND level IN ('warning', 'error')"),
	'log --level warning: all of them');
my $log = cli_json('log', 'cli_batch', '--level', 'error', '--limit', '1000');
is(scalar(@$log), sql("SELECT count(*) FROM batch.log WHERE batch_id = $bid AND level = 'error'"),
	'log --json --level error: every error');
is(scalar(grep { $_->{event} eq 'stage_failed' } @$log), 6, 'log --json --level error: the 6 failed attempts');
is(scalar(grep { $_->{level} ne 'error' } @$log), 0, 'log --json --level error: errors only');
is_deeply([ map { $_->{finished_at} } @$log ], [ sort map { $_->{finished_at} } @$log ],
	'log --json: oldest first');
$log = cli_json('log', 'cli_batch', '--limit', '2');
my $newest = sql("SELECT finished_at FROM batch.log WHERE batch_id = $bid ORDER BY finished_at DESC LIMIT 1");
is($log->[1]{finished_at}, $newest, 'log --limit 2: the newest lines');

# 2. retry
my $retry = cli_json('retry', 'cli_batch', '--codes', 'no_such_code');
is_deeply($retry, { batch_id => $bid, batch => 'cli_batch', requeued => 0 },
	'retry --json --codes no_such_code: nothing re-queued');
sql('UPDATE app.broken SET yes = false');
$retry = cli_json('retry', 'cli_batch', '--codes', 'http_429, division_by_zero', '--stage', 's2');
is($retry->{requeued}, 2, 'retry --codes ... --stage s2: the 2 division_by_zero items re-queued');
sql(q{SELECT batch.run('cli_batch')});
like(cli_ok('status'), qr/cli_batch\s+partial\s+\S+\s+16\/21\s+0\s+0\s+0\s+5\s/,
	'after a run, they completed: 16/21, 5 failed');
$out = cli_ok('retry', 'cli_batch', '--max-retries', '2');
is($out, "re-queued 4 items of batch \"cli_batch\" (id $bid)\n",
	'retry --max-retries 2: the 4 s1 failures (not the invalid item)');
is(sql("SELECT count(*) FROM batch.items WHERE batch_id = $bid AND status = 'pending' AND max_retries = 2"),
	'4', 'retry --max-retries 2: passed to batch.retry_failed');
sql(q{SELECT batch.run('cli_batch')});
my $locker = $node->background_psql('postgres');
$locker->query_safe("BEGIN; SELECT pg_advisory_xact_lock(1346847297, $bid)");
my ($rc, $rout, $rerr) = cli({}, 'retry', 'cli_batch');
is($rc, 0, 'retry while another transaction holds the lock: exit status 0');
like($rout, qr/^re-queued 0 items/, 'retry while the lock is held: 0 re-queued');
like($rerr, qr/NOTICE:/, "retry while the lock is held: the server's notice is printed");
# retry --wait: waits for the lock, then re-queues
{
	my ($wout, $werr) = ('', '');
	local %ENV = (%ENV, %conn);
	my $h = IPC::Run::start([ $pgbatch, 'retry', 'cli_batch', '--wait' ],
		'<', \undef, '>', \$wout, '2>', \$werr, IPC::Run::timeout(60));
	my $blocked = '';
	for (1 .. 100)
	{
		$blocked = sql(q{SELECT count(*) FROM pg_stat_activity
			WHERE wait_event = 'advisory' AND query LIKE '%retry_failed%'});
		last if $blocked eq '1';
		usleep(100_000);
	}
	is($blocked, '1', 'retry --wait while the lock is held: it waits on the lock');
	$locker->query_safe('COMMIT');
	$h->finish;
	is($? >> 8, 0, 'retry --wait: exit status 0 once the lock is free');
	like($wout, qr/^re-queued \d+ items of batch "cli_batch"/, 'retry --wait: it re-queued');
	unlike($werr, qr/NOTICE/, 'retry --wait: no notice that the lock was held');
}
$locker->quit;

# 3. exit statuses
($rc, $rout, $rerr) = cli({}, 'errors', 'nope');
is($rc, 1, 'an unknown batch: exit status 1');
like($rerr, qr/^pgbatch: error: batch "nope" does not exist$/m, 'an unknown batch: the message');
($rc, $rout, $rerr) = cli({}, 'retry', '999999');
is($rc, 1, 'an unknown batch id: exit status 1');
like($rerr, qr/batch "999999" does not exist/, 'an unknown batch id: the message');
($rc, $rout, $rerr) = cli({}, 'retry', 'cli_batch', '--backoff-factor', '1000');
is($rc, 1, 'a server error: exit status 1');
like($rerr, qr/^pgbatch: error: .*backoff_factor/m, "a server error: the server's message");
for my $bad ([ 'status', '--bogus' ], [ 'status', '--follow' ], [ 'log' ], [ 'frobnicate' ],
	[], [ 'log', 'cli_batch', '--level', 'debug' ], [ 'log', 'cli_batch', '-n', '0' ],
	[ 'retry', 'cli_batch', '--max-retries', 'x' ], [ 'errors', 'a', 'b' ])
{
	($rc, $rout, $rerr) = cli({}, @$bad);
	is($rc, 2, "usage error (pgbatch @$bad): exit status 2");
	like($rerr, qr/pgbatch: hint: Try "pgbatch --help"/, "usage error (pgbatch @$bad): a hint");
}
like(cli_ok('--help'), qr/^Usage:/m, '--help');
like(cli_ok('--version'), qr/^pgbatch \(pgbatch\) \d/, '--version');

# 4. connections
($rc, $rout, $rerr) = cli({ PGHOST => undef, PGPORT => undef }, '-h', $node->host, '-p', $node->port, 'status');
is($rc, 0, '-h and -p without PGHOST and PGPORT');
like($rout, qr/cli_batch/, '-h and -p: the batch');
my $h = $node->host;
my $p = $node->port;
($rc, $rout) = cli({ PGHOST => undef, PGPORT => undef, PGDATABASE => undef }, '-d', "host=$h port=$p dbname=postgres", 'status');
like($rout, qr/cli_batch/, '-d with a connection string');
($rc, $rout) = cli({ PGHOST => undef, PGPORT => undef, PGDATABASE => undef }, '--dbname', "postgresql:///postgres?host=$h&port=$p", 'status');
like($rout, qr/cli_batch/, '--dbname with a URI');
my $service = PostgreSQL::Test::Utils::tempdir() . '/pg_service.conf';
PostgreSQL::Test::Utils::append_to_file($service, "[clitest]\nhost=$h\nport=$p\ndbname=postgres\n");
($rc, $rout) = cli({ PGHOST => undef, PGPORT => undef, PGDATABASE => undef, PGSERVICEFILE => $service, PGSERVICE => 'clitest' }, 'status');
like($rout, qr/cli_batch/, 'PGSERVICE');
($rc, $rout, $rerr) = cli({ PGPORT => PostgreSQL::Test::Cluster::get_free_port() }, '-h', '127.0.0.1', 'status');
is($rc, 1, 'a refused connection: exit status 1');
like($rerr, qr/^pgbatch: error: connection to server at "127.0.0.1", port \d+ failed/m,
	"a refused connection: libpq's message");
sql('CREATE ROLE op LOGIN IN ROLE pgbatch_operator; CREATE ROLE nobody LOGIN');
($rc, $rout) = cli({ PGUSER => 'op' }, 'status');
like($rout, qr/\A(?:executors: .*\n  .*\n\n)?no batches\n\z/, 'PGUSER=op: an operator sees no batch of another role');
like($rout, qr/^executors: not served: pgbatch is not in shared_preload_libraries$/m,
	'PGUSER=op: ... and is told that no executor serves the database');
($rc, $rout, $rerr) = cli({ PGUSER => 'op' }, 'errors', 'cli_batch');
like($rerr, qr/batch "cli_batch" does not exist/, 'PGUSER=op: it does not exist for op');
sql('CREATE ROLE opmon LOGIN IN ROLE pgbatch_operator, pgbatch_monitor');
($rc, $rout, $rerr) = cli({ PGUSER => 'opmon' }, 'retry', 'cli_batch');
is($rc, 1, 'retry by an operator who sees the batch but may not act on it: exit status 1');
like($rerr, qr/^pgbatch: error: permission denied for batch $bid\npgbatch: detail: .+\npgbatch: hint: .+$/m,
	"the server's message, detail and hint");
($rc, $rout, $rerr) = cli({}, '-U', 'nobody', 'status');
is($rc, 1, '-U nobody: exit status 1');
like($rerr, qr/^pgbatch: error: permission denied for schema batch$/m, "-U nobody: the server's error");

# 5. watch and log --follow through pipes: a status line (or a JSON object)
# per change, as the batch runs; watch ends by itself with the batch
my $lid = sql(q{SELECT batch.submit('p',
	(SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 10) g), name => 'cli_live')});

# start_cli(\$out, @args): pgbatch in the background, its stdout in $out
sub start_cli
{
	my ($out, @args) = @_;
	my $err = '';
	local %ENV = (%ENV, %conn);
	return IPC::Run::start([ $pgbatch, @args ], '<', \undef, '>', $out, '2>', \$err,
		IPC::Run::timeout(60));
}

# wait_output($h, \$out, $re): reads its output until $out matches (at most
# 30 s); true if it does
sub wait_output
{
	my ($h, $out, $re) = @_;
	my $deadline = time() + 30;
	while ($$out !~ $re && time() < $deadline)
	{
		$h->pump_nb;
		usleep(100_000);
	}
	return $$out =~ $re;
}

# json_lines($text): each line decoded (undef for one that is not JSON)
sub json_lines
{
	return map { my $l = $_; scalar eval { JSON::PP->new->decode($l) } } split /\n/, $_[0];
}

sub notify_live
{
	sql(qq{NOTIFY pgbatch_events, '{"event": "progress", "batch_id": $lid}'});
	return;
}

my ($wout, $jout, $fout) = ('', '', '');
my $watch = start_cli(\$wout, 'watch', 'cli_live');
my $jwatch = start_cli(\$jout, '--json', 'watch', 'cli_live');
my $follow = start_cli(\$fout, '--json', 'log', 'cli_live', '--follow', '--level', 'error');
ok(wait_output($watch, \$wout, qr{cli_live  queued  \[\.+\]  0/10 completed, 10 pending}),
	'watch (plain): a status line for the queued batch') or diag($wout);
ok(wait_output($jwatch, \$jout, qr/\n/), 'watch --json: a first line');
# (the follower prints nothing yet; whether it reads the next lines with its
# first query or after the notification, it prints each once)
sql(q{SELECT batch.run('cli_live', max_items => 5)});
notify_live();
ok(wait_output($watch, \$wout, qr{cli_live  running  \[[^\]]+\]  4/10 completed, 5 pending, 0 retrying, 0 running, 1 failed  rate \S+  eta \S+\n}),
	'watch (plain): a new status line after the run') or diag($wout);
ok(wait_output($jwatch, \$jout, qr/"completed": 4/), 'watch --json: a new object after the run') or diag($jout);
ok(wait_output($follow, \$fout, qr/bad item 5/), 'log --follow --json: the new error line') or diag($fout);

sql(q{SELECT batch.run('cli_live')});
notify_live();
ok($watch->finish, 'watch (plain) exits with 0 once the batch has finished');
like($wout, qr{cli_live  partial  \[[^\]]+\]  8/10 completed, 0 pending, 0 retrying, 0 running, 2 failed.*\nbatch finished: partial\n\s+stage\s+code\s+items\s+sample error\n\s+s1\s+raise_exception\s+2\s+bad item}s,
	'watch (plain): the final status line and the errors');
ok($jwatch->finish, 'watch --json exits with 0 once the batch has finished');
my @objects = json_lines($jout);
is(scalar(grep { !defined } @objects), 0, 'watch --json: every line is a JSON object');
my $last = $objects[-1];
is_deeply([ $last->{finished} ? 1 : 0, $last->{progress}{status}, $last->{progress}{completed},
	scalar(@{ $last->{errors} }), $last->{errors}[0]{items} ],
	[ 1, 'partial', 8, 1, 2 ], 'watch --json: the last object, finished, with its errors');
ok(scalar(grep { $_->{message} =~ /bad item 10/ } @{ $last->{log} }), 'watch --json: the newest errors of the log');
ok(wait_output($follow, \$fout, qr/bad item 10/), 'log --follow --json: the next error line') or diag($fout);
$follow->signal('TERM');
ok($follow->finish, 'log --follow exits with 0 on SIGTERM');
@objects = json_lines($fout);
is_deeply([ map { defined $_ ? $_->{message} : 'not JSON' } @objects ], [ 'bad item 5', 'bad item 10' ],
	'log --follow --json: one object per line, each error once');

# 6. terminal injection
my $ESC_SQL = q{chr(27) || ']0;pwned' || chr(7) || chr(27) || '[2J' || chr(155) || '31m'
	|| chr(157) || '0;x' || chr(7)};
sql(qq{
CREATE FUNCTION app.say(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
	RAISE EXCEPTION '%', p ->> 'msg';
END \$\$;
SELECT batch.create_pipeline('say', '[{"name": "say", "sql": "app.say"}]', retry => '{"max_retries": 0}');
SELECT batch.submit('say', jsonb_build_array(jsonb_build_object('msg', 'boom ' || $ESC_SQL)),
	name => 'cli_esc ' || $ESC_SQL);
});
my $esc_id = sql(q{SELECT id FROM batch.batches WHERE name LIKE 'cli_esc %'});
sql(qq{SELECT batch.run($esc_id)});
my $controls = qr/[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]/;
for my $args ([ 'status' ], [ 'errors', $esc_id ], [ 'review', $esc_id ], [ 'log', $esc_id ],
	[ '--json', 'status' ], [ '--json', 'errors', $esc_id ], [ '--json', 'review', $esc_id ],
	[ '--json', 'log', $esc_id ])
{
	my $out = cli_ok(@$args);
	like($out, qr/pwned|boom/, "pgbatch @$args shows the text") if $args->[0] ne '--json' || $args->[1] ne 'status';
	unlike($out, $controls, "pgbatch @$args prints no control character of the server's strings");
}
my $doc = cli_json('errors', $esc_id);
like(JSON::PP->new->encode($doc), qr/\\u001b\]0;pwned\\u0007/, '--json keeps the text, escaped');
my ($erc, $eout, $eerr) = cli({}, 'errors', "nosuch\e]0;pwned\a\e[2J");
is($erc, 1, 'an unknown batch whose name holds escapes is an error');
like($eerr, qr/nosuch ]0;pwned  \[2J/, '... whose message quotes the name');
unlike($eerr, $controls, '... with no control character left');
# the item of the escapes: its payload, error and answer reach no terminal raw
my $esc_item = sql(qq{SELECT id FROM batch.items WHERE batch_id = $esc_id});
$out = cli_ok('item', $esc_item);
like($out, qr/boom/, 'pgbatch item shows the error text');
unlike($out, $controls, 'pgbatch item prints no control character of the server\'s strings');

# 7. the triage loop without SQL: item, fix (an editor), cancel, endpoints
sql(q{SELECT batch.run('cli_batch')});
my $k5 = sql(qq{SELECT id FROM batch.items WHERE batch_id = $bid AND key = 'k5'});
is(sql("SELECT status || ' ' || stage FROM batch.items WHERE id = $k5"), 'failed s1', 'item k5 failed at s1');
$out = cli_ok('item', $k5);
like($out, qr/^item $k5 of batch "cli_batch" \(id $bid\), key k5$/m, 'item: which item of which batch');
like($out, qr/^status failed at stage s1, attempt \d+$/m, 'item: its status, stage and attempt');
like($out, qr/^error raise_exception: bad item 5$/m, 'item: its error');
like($out, qr/^payload\n  \{\n      "n": 5,/m, 'item: its payload, pretty-printed');
like($out, qr/^  s1\s+\d+\s+failed\s+\d+\s+raise_exception\s+bad item 5$/m, 'item: every attempt, with its outcome, latency and error');
my $item = cli_json('item', $k5);
is_deeply([ $item->{item}{status}, $item->{payload}{n}, $item->{attempts}[0]{outcome} ],
	[ 'failed', 5, 'failed' ], 'item --json: item, payload, attempts');
($rc, $rout, $rerr) = cli({}, 'item', 'abc');
is($rc, 1, 'item abc: exit status 1');
like($rerr, qr/"abc" is not an item id/, 'item abc: says why');
($rc, $rout, $rerr) = cli({}, 'item', '987654321');
like($rerr, qr/item 987654321 does not exist/, 'item of no batch: does not exist');

# fix: the editor (a script here) changes n from 5 to 6, which s1 accepts
my $edit = PostgreSQL::Test::Utils::tempdir('editor');
PostgreSQL::Test::Utils::append_to_file("$edit/to6.sh", qq|#!/bin/sh\nsed -i 's/"n": 5/"n": 6/' "\$1"\n|);
PostgreSQL::Test::Utils::append_to_file("$edit/bad.sh", qq|#!/bin/sh\necho '{"n": ' > "\$1"\n|);
chmod 0755, "$edit/to6.sh", "$edit/bad.sh";
($rc, $rout, $rerr) = cli({ EDITOR => "$edit/bad.sh", VISUAL => undef }, 'fix', $k5);
is($rc, 1, 'fix with an edit that is not JSON: exit status 1');
like($rerr, qr/invalid input syntax for type json/, "fix: the server's reason");
is(sql("SELECT payload ->> 'n' FROM batch.items WHERE id = $k5"), '5', 'fix: the payload is unchanged');
($rc, $rout, $rerr) = cli({ EDITOR => 'true', VISUAL => undef }, 'fix', $k5);
is($rc, 0, 'fix, nothing edited: exit status 0');
like($rout, qr/^payload of item $k5 unchanged$/m, 'fix, nothing edited: says so');
($rc, $rout, $rerr) = cli({ EDITOR => "$edit/to6.sh", VISUAL => undef }, 'fix', $k5, '--retry');
is($rc, 0, 'fix --retry: exit status 0') or diag($rerr);
like($rout, qr/^payload of item $k5 stored\nitem $k5 re-queued at stage s1$/m, 'fix --retry: stored and re-queued');
is(sql("SELECT payload ->> 'n' || ' ' || status || ' ' || stage FROM batch.items WHERE id = $k5"),
	'6 pending s1', 'the item has its new payload and waits at s1');
sql(q{SELECT batch.run('cli_batch')});
is(sql("SELECT status FROM batch.items WHERE id = $k5"), 'completed', 'the fixed item completed');

# cancel
sql(q{SELECT batch.submit('p', '[{"n": 1}, {"n": 2}, {"n": 3}]', name => 'cli_cancel')});
my $cid = sql(q{SELECT id FROM batch.batches WHERE name = 'cli_cancel'});
is(cli_ok('cancel', 'cli_cancel'), qq{cancelled 3 items of batch "cli_cancel" (id $cid)\n}, 'cancel: says how many');
is(sql("SELECT status FROM batch.progress WHERE id = $cid"), 'cancelled', 'cancel: the batch is cancelled');

# endpoints
sql(q{SELECT batch.create_endpoint('cli_ep', 'https://api.example.com', max_concurrency => 4, rate_limit => 60)});
like(cli_ok('endpoints'), qr/^cli_ep\s+0\/4\s+60\s+closed\s+-\s+0 \(0 in a row\)\s+0\s+https:\/\/api.example.com$/m,
	'endpoints: in flight against the limit, rate, circuit, pause, failures, requests, url');
my $eps = cli_json('endpoints');
is(join(',', map { $_->{name} } grep { $_->{name} eq 'cli_ep' } @$eps), 'cli_ep', 'endpoints --json');

$node->stop;
done_testing();
