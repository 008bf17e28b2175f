# 012_cli_tmux.pl
#
# pgbatch watch and pgbatch log --follow as a person uses them: typed into a
# shell in a terminal (a detached tmux server on its own socket, 120 x 40),
# the screen read back with capture-pane while the test changes the batch.
#
# 1. watch on a batch that is queued: its frame shows 0/12 completed.  Then
#    batch.run() runs 8 of its items (every 4th fails) and a notification
#    is sent (as the extension does): the frame shows the new counts, the
#    error group, and the newest error line of the log.  q quits: the shell
#    is back, with the cursor shown and the terminal's echo and line mode
#    restored.
# 2. Ctrl-C quits watch the same way, and restores the terminal too.
# 3. log --follow --level error shows the errors so far; once the rest of the
#    batch runs (and a notification comes), the new error line appears.
#    Ctrl-C ends it.
# 4. watch on a finished batch prints its final state and exits by itself.
# 5. status, errors, review, log, health, endpoints and item at 60 and 120
#    columns: no line wraps; a 77-character batch name is cut with an
#    ellipsis.
#
# Every wait is bounded (30 s); the tmux server is killed by its socket at the
# end.  Skipped if tmux is not installed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use IPC::Run;
use PgBatchTest qw(new_node sql);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my ($tmux_dir) = grep { -x "$_/tmux" } split /:/, $ENV{PATH};
plan skip_all => 'tmux is not installed (Debian: apt-get install tmux)'
  unless defined $tmux_dir;
my ($pgbatch_dir) = grep { -x "$_/pgbatch" } split /:/, $ENV{PATH};
die 'pgbatch is not in PATH: run "make -C cli install" (or the top-level make install) first'
  unless defined $pgbatch_dir;

# how long any wait for the screen lasts at most
my $WAIT = 30;

# the tmux server's own socket (-L), and the session in it
my $socket = "pgbatch_cli_test_$$";
my $session = 'cli';
my $tmux_started = 0;

# tmux(@args): runs a tmux command on our server; dies if it fails; returns
# its output
sub tmux
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'tmux', '-L', $socket, '-f', '/dev/null', @_ ], '<', \undef,
		'>', \$out, '2>', \$err, IPC::Run::timeout($WAIT))
	  or die "tmux @_ failed: $err";
	return $out;
}

END
{
	local $?;
	system('tmux', '-L', $socket, 'kill-server') if $tmux_started;
}

# type($text): types a line into the shell and presses Enter
sub type
{
	my ($text) = @_;
	tmux('send-keys', '-t', $session, '-l', $text);
	tmux('send-keys', '-t', $session, 'Enter');
	return;
}

# screen(): the text on the terminal now
sub screen
{
	return tmux('capture-pane', '-p', '-t', $session);
}

# pane(format): a tmux format of the pane (its current command, cursor, ...)
sub pane
{
	my $v = tmux('display-message', '-p', '-t', $session, $_[0]);
	chomp $v;
	return $v;
}

# wait_screen($name, @patterns): waits (at most $WAIT s) until the screen
# matches every pattern at once; one test
sub wait_screen
{
	my ($name, @patterns) = @_;
	my $deadline = time() + $WAIT;
	my $text;
	while (1)
	{
		$text = screen();
		my $missing = grep { $text !~ $_ } @patterns;
		return pass($name) if !$missing;
		last if time() > $deadline;
		usleep(200_000);
	}
	fail($name);
	diag("the screen:\n$text\nwanted: @patterns");
	return;
}

# wait_command($cmd, $name): waits until the pane's foreground program is
# $cmd (pgbatch while it runs, bash once it has exited); one test
sub wait_command
{
	my ($cmd, $name) = @_;
	my $deadline = time() + $WAIT;
	my $now;
	while (1)
	{
		$now = pane('#{pane_current_command}');
		return pass($name) if $now eq $cmd;
		last if time() > $deadline;
		usleep(200_000);
	}
	fail($name);
	diag("the pane runs $now, not $cmd; the screen:\n" . screen());
	return;
}

# terminal_restored($what): the cursor is shown and the terminal is back in
# line mode with echo (stty says so)
sub terminal_restored
{
	my ($what) = @_;
	is(pane('#{cursor_flag}'), '1', "$what: the cursor is shown");
	type(q{clear; stty -a | tr -s ' ;' '\n' | grep -qx -e -icanon -e -echo && echo RA''W || echo COO''KED});
	wait_screen("$what: line mode and echo are restored", qr/^COOKED$/m);
	return;
}

my $node = new_node('cli_tmux');
sql(q{
CREATE EXTENSION pgbatch;
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO PUBLIC;
CREATE FUNCTION app.s1(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	IF (p ->> 'n')::int % 4 = 0 THEN
		RAISE EXCEPTION 'tmux boom %', p ->> 'n';
	END IF;
	RETURN p;
END $$;
SELECT batch.create_pipeline('w', '[{"name": "s1", "sql": "app.s1"}]');
});
my $bid = sql(q{SELECT batch.submit('w',
	(SELECT jsonb_agg(jsonb_build_object('n', g)) FROM generate_series(1, 12) g),
	name => 'tmux_watch')});

# notify(): what the extension sends when the batch changes (sent here too,
# in case this version of the extension does not)
sub notify
{
	sql(qq{NOTIFY pgbatch_events, '{"event": "progress", "batch_id": $bid, "batch": "tmux_watch"}'});
	return;
}

# a shell in a terminal, with the node's connection settings
tmux('new-session', '-d', '-s', $session, '-x', '120', '-y', '40',
	'-e', 'PGHOST=' . $node->host, '-e', 'PGPORT=' . $node->port,
	'-e', 'PGDATABASE=postgres', '-e', "PATH=$ENV{PATH}",
	'bash --norc --noprofile');
$tmux_started = 1;

# 1. watch, redrawn as the batch changes; q quits
type('pgbatch watch tmux_watch');
wait_screen('watch: the first frame', qr/batch "tmux_watch" \(id $bid, pipeline w\)/,
	qr/status queued/, qr{0/12 completed});
wait_command('pgbatch', 'watch is running');

sql(q{SELECT batch.run('tmux_watch', max_items => 8)});
notify();
my ($done, $failed) = split /\|/, sql("SELECT completed, failed FROM batch.progress WHERE id = $bid");
my $newest = sql("SELECT message FROM batch.log WHERE batch_id = $bid AND level = 'error'
	ORDER BY finished_at DESC LIMIT 1");
ok($failed > 0 && $done > 0, "the run completed $done items and failed $failed");
wait_screen('watch: the new counts, the error group and the newest error',
	qr{$done/12 completed .* $failed failed}, qr/status running/,
	qr/errors by stage and code/, qr/^\s+s1\s+raise_exception\s+$failed\s+tmux boom \d+/m,
	qr/^\s+\d\d:\d\d:\d\d\s+error\s+item \d+ s1 #1\s+raise_exception: \Q$newest\E\s*$/m);
tmux('send-keys', '-t', $session, 'q');
wait_command('bash', 'q quits watch');
terminal_restored('after q');

# 2. Ctrl-C quits watch too
type('clear; pgbatch watch tmux_watch');
wait_screen('watch again: the frame', qr{$done/12 completed});
wait_command('pgbatch', 'watch is running again');
tmux('send-keys', '-t', $session, 'C-c');
wait_command('bash', 'Ctrl-C quits watch');
terminal_restored('after Ctrl-C');

# 3. log --follow prints new lines as they come
type('clear; pgbatch log tmux_watch --follow --level error');
wait_screen('log --follow: the errors so far', qr/raise_exception: \Q$newest\E/);
wait_command('pgbatch', 'log --follow keeps running');
sql(q{SELECT batch.run('tmux_watch')});
notify();
wait_screen('log --follow: the new error line',
	qr/^\S+ \S+\s+error\s+stage_failed\s+item \d+ s1 #1\s+raise_exception: tmux boom 12/m);
tmux('send-keys', '-t', $session, 'C-c');
wait_command('bash', 'Ctrl-C ends log --follow');

# 4. watch on a finished batch: its final state, and it exits by itself
is(sql("SELECT status FROM batch.progress WHERE id = $bid"), 'partial', 'the batch has finished');
type('clear; pgbatch watch tmux_watch');
wait_screen('watch on a finished batch: the final state',
	qr/batch finished: partial/, qr{9/12 completed .* 3 failed});
wait_command('bash', 'watch exits by itself when the batch has finished');

# 5. every command fits the terminal: at 60 and at 120 columns no line
#    wraps (capture-pane -J joins wrapped lines), and a long batch name is
#    cut with an ellipsis
my $long = 'tmux_' . ('long_name_' x 7) . 'end';
sql(qq{SELECT batch.submit('w', '[{"n": 8}, {"n": 9}]', name => '$long')});
sql(qq{SELECT batch.run('$long')});
sql(q{SELECT batch.create_endpoint('tmux_ep', 'https://api.example.com/a/rather/long/base/path/for/the/table')});
my $item = sql("SELECT min(id) FROM batch.items WHERE batch_id = $bid AND status = 'failed'");
my $n = 0;
for my $cols (60, 120)
{
	tmux('resize-window', '-t', $session, '-x', $cols, '-y', '40');
	for my $cmd ('status', 'errors tmux_watch', 'review tmux_watch', 'log tmux_watch', 'health',
		'endpoints', "item $item")
	{
		$n++;
		type("clear; pgbatch $cmd; echo EN''D_$n");
		wait_screen("pgbatch $cmd at $cols columns: it ran", qr/^END_$n$/m);
		my $text = tmux('capture-pane', '-p', '-J', '-t', $session);
		utf8::decode($text);
		my @wrapped = grep { length($_) > $cols } map { s/\s+$//r } split /\n/, $text;
		is(scalar(@wrapped), 0, "pgbatch $cmd at $cols columns: no line wraps")
		  or diag("the lines wider than $cols columns:\n" . join("\n", @wrapped));
		like($text, qr/tmux_lo\S*\x{2026}/, "pgbatch status at $cols columns: the long name is cut with an ellipsis")
		  if $cmd eq 'status' && $cols == 60;
	}
}

tmux('kill-server');
$tmux_started = 0;
$node->stop;
done_testing();
