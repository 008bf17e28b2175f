
# 015_docs.pl
#
# The documentation cannot rot: doc/user-guide.md, doc/runbook.md and
# doc/bi-queries.sql are executed against a real server.
#
# Conventions (explained at the top of both Markdown files): a ```sql block
# whose first line is "-- setup as ROLE" builds the guide's worked example;
# one whose first line is "-- runnable as ROLE" works against it. ROLE is a
# login role the setup creates (alice, ops_admin, grafana) or "superuser".
# Blocks without such a line hold placeholder values and are not run (the
# names they use are checked, see 5).
#
# 1. A cluster with pgbatch (2 executors) and pg_cron preloaded; the fake LLM
#    API (test/fake_api.py) stands in for https://api.openai.com, which the
#    setup blocks name. The kill switch (pgbatch.enabled = off) holds the
#    executors back while the example is built.
# 2. Every setup block of the guide, then of the runbook, in order, as its
#    role: extension, roles, functions, endpoint, pipeline with stage costs,
#    the batch batch_982 (3 items, one invalid), given to team_seo. Then the
#    night: 97 more items (two invalid), and fault rules on the fake API:
#    a087 meets 429 (Retry-After: 1) at the voice stage past its retries,
#    a033 and a066 a 400 at seo, a010/a020/a030 one 504 at draft, a040 two
#    503s at voice. The executors are let go; the batch ends partial with
#    94 completed and 6 failed (3 invalid_input, 2 http_400, 1 http_429);
#    retry_failed(error_codes => '{http_429}') completes a087: 95 and 5.
#    A listener on pgbatch_events meanwhile checks that every event it hears
#    is in the guide's table, with exactly the fields the guide lists.
# 3. Every query of doc/bi-queries.sql, split on its "-- name:" lines: each
#    is a single plain SELECT over the documented views, runs as grafana
#    (pgbatch_monitor), and returns rows (except the two that may well be
#    empty). grafana reads batch.costs, not the outputs behind it; the
#    completions per minute of batch.throughput add up to the batch's.
# 4. The command-line tool, when installed: every "pgbatch ..." line of the
#    docs' sh blocks uses only commands and options of "pgbatch --help", and
#    runs (as alice) with exit status 0; watch and --follow are left out
#    (they wait), JSON output is decoded.
# 5. The reference parts of the guide against the catalog: the columns (and
#    types) of every view, the names, defaults and contexts of the settings,
#    the parameter names of the function reference, and every batch.*,
#    cron.* and pgbatch.* name the three files mention.
# 6. Every runnable block of the guide, then of the runbook, in order, as its
#    role, against the populated database: each must run without error.
# 7. The README's Quickstart, verbatim, in a new database: no error, and its
#    batch completes (the bad row fixed and retried).

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use IPC::Run;
use JSON::PP;
use PgBatchTest qw(new_worker_node start_fake_api stop_fake_api fake_api_post sql);
use PostgreSQL::Test::Utils;
use Test::More;
use Text::ParseWords qw(shellwords);
use Time::HiRes qw(time usleep);

my $DOC = "$FindBin::RealBin/../../doc";
my %doc = (
	guide => "$DOC/user-guide.md",
	runbook => "$DOC/runbook.md",
	bi => "$DOC/bi-queries.sql");
my %text = map { $_ => PostgreSQL::Test::Utils::slurp_file($doc{$_}) } keys %doc;

# the base URL the setup blocks name, replaced by the fake API's
my $REAL_API = 'https://api.openai.com';

# BI queries that may return no rows even here
my %MAY_BE_EMPTY = map { $_ => 1 } (
	'Open batches and their ETA',
	'Batches without progress');

# fenced($name): the fenced code blocks of a Markdown file, in order, as
# { lang, line, first, body, marker, role }; marker is setup or runnable
# (for sql blocks whose first line says so), role the role it runs as.
sub fenced
{
	my ($name) = @_;
	my @lines = split /\n/, $text{$name};
	my (@blocks, $cur);
	for my $i (0 .. $#lines)
	{
		my $l = $lines[$i];
		if (!$cur && $l =~ /^```(\S*)\s*$/)
		{
			$cur = { lang => $1, line => $i + 1, body => '', file => $name };
			next;
		}
		if ($cur && $l =~ /^```\s*$/)
		{
			($cur->{first}) = split /\n/, $cur->{body};
			$cur->{first} //= '';
			if ($cur->{lang} eq 'sql' && $cur->{first} =~ /^-- (setup|runnable)\b/)
			{
				die "$name line $cur->{line}: bad marker \"$cur->{first}\" (want \"-- setup as ROLE\" or \"-- runnable as ROLE\")"
				  unless $cur->{first} =~ /^-- (setup|runnable) as (\w+)\s*$/;
				($cur->{marker}, $cur->{role}) = ($1, $2);
			}
			push @blocks, $cur;
			undef $cur;
			next;
		}
		$cur->{body} .= "$l\n" if $cur;
	}
	die "$name: a code block is not closed" if $cur;
	return @blocks;
}

my @blocks = (fenced('guide'), fenced('runbook'));
my @setup = grep { ($_->{marker} // '') eq 'setup' } @blocks;
my @runnable = grep { ($_->{marker} // '') eq 'runnable' } @blocks;
ok(@setup >= 4, scalar(@setup) . ' setup blocks');
ok(@runnable >= 30, scalar(@runnable) . ' runnable blocks');

# 1. the cluster and the fake API
my $node = new_worker_node('docs',
	"shared_preload_libraries = 'pgbatch,pg_cron'\n"
	  . "cron.database_name = 'postgres'\n"
	  . "cron.use_background_workers = on\n"
	  . "max_worker_processes = 32\n");
my $api = start_fake_api();

# as($role, $sql): runs SQL as that role (superuser: the bootstrap one);
# returns (output, error); error is undef when it ran
sub as
{
	my ($role, $query) = @_;
	my $out = eval {
		$node->safe_psql('postgres', $query, timeout => 120,
			$role eq 'superuser' ? () : (extra_params => [ '-U', $role ]));
	};
	return ($out, $@ || undef);
}

# run_block($block, $what): runs a doc block as its role; one test
sub run_block
{
	my ($b, $what) = @_;
	my $body = $b->{body};
	$body =~ s/\Q$REAL_API\E/$api->{url}/g if $b->{marker} eq 'setup';
	my ($out, $err) = as($b->{role}, $body);
	ok(!defined $err, "$what block at $b->{file} line $b->{line} runs as $b->{role}")
	  or diag("$err\n--- block:\n$body");
	return $out;
}

# hold the executors back while the example is built (they start with the
# extension and read the setting then)
sql("ALTER SYSTEM SET pgbatch.enabled = off; SELECT pg_reload_conf();");
my $deadline = time() + 30;
usleep(100_000) while sql('SHOW pgbatch.enabled') ne 'off' && time() < $deadline;
is(sql('SHOW pgbatch.enabled'), 'off', 'the kill switch is off before the example is built');

# 2. the worked example, then the night
run_block($_, 'setup') for @setup;
is(sql("SELECT total || ' ' || failed || ' ' || owner FROM batch.progress WHERE name = 'batch_982'"),
	'3 1 team_seo', 'the setup submitted batch_982 (one invalid item) and gave it to team_seo');

# the test's only change to the example: no waiting on a 600/min rate limit
as('ops_admin', "SELECT batch.alter_endpoint('llm', rate_limit => 600000)");

my @more;
for my $n (4 .. 100)
{
	my $key = sprintf('a%03d', $n);
	push @more,
	    $n == 50 ? qq({"key": "$key"})
	  : $n == 60 ? qq({"key": "$key", "topic": "   "})
	  :            qq({"key": "$key", "topic": "Article $n of the spring campaign"});
}
my ($added, $err) = as('alice', "SELECT batch.add_items('batch_982', '[" . join(', ', @more) . "]')");
is($added, '97', '97 more items added by alice') or diag($err);

my %id = split /[ =]/, sql(q{SELECT string_agg(key || '=' || id, ' ') FROM batch.items
	WHERE key IN ('a010', 'a020', 'a030', 'a033', 'a040', 'a066', 'a087')});
my %stage_no = (outline => 1, draft => 2, voice => 3, seo => 4);
my @rules = (
	[ a087 => voice => '429:ra=1x4' ],
	[ a033 => seo => '400' ],
	[ a066 => seo => '400' ],
	[ a010 => draft => '504x1' ],
	[ a020 => draft => '504x1' ],
	[ a030 => draft => '504x1' ],
	[ a040 => voice => '503x2' ]);
fake_api_post($api, '/_control/rules', encode_json({ rules => [
	map { { match => { key_contains => "-$id{$_->[0]}-$stage_no{$_->[1]}" }, fault => $_->[2] } } @rules ] }));

# events, heard while the batch runs
my $listener = $node->background_psql('postgres', timeout => 600);
$listener->query_safe('LISTEN pgbatch_events');
my $heard = '';

# wait_until($sql, $expected, $timeout): polls (and collects notifications)
sub wait_until
{
	my ($query, $expected, $timeout) = @_;
	my $until = time() + $timeout;
	my $last = '';
	while (time() < $until)
	{
		$heard .= $listener->query_safe('SELECT 1') . "\n";
		$last = sql($query);
		return $last if $last eq $expected;
		usleep(250_000);
	}
	return $last;
}

sql('ALTER SYSTEM RESET pgbatch.enabled; SELECT pg_reload_conf();');
my $state = q{SELECT status || ' ' || completed || ' ' || failed FROM batch.progress WHERE name = 'batch_982'};
is(wait_until($state, 'partial 94 6', 240), 'partial 94 6', 'the night: batch_982 ends partial, 94 completed, 6 failed');
is(sql(q{SELECT string_agg(stage || ' ' || error_code || ' ' || items, ', ' ORDER BY stage, error_code)
	FROM batch.errors WHERE batch = 'batch_982'}),
	'outline invalid_input 3, seo http_400 2, voice http_429 1', 'the failures, grouped by stage and code');
is((as('alice', q{SELECT batch.retry_failed('batch_982', error_codes => '{http_429}')}))[0], '1',
	'retry_failed re-queues the rate-limited item');
is(wait_until($state, 'partial 95 5', 120), 'partial 95 5', 'and it completes: 95 completed, 5 failed');
$heard .= $listener->query_safe('SELECT 1') . "\n";
$listener->quit;

# the events heard are the documented ones, with the documented fields
my %fields;
{
	my ($section) = $text{guide} =~ /^## Events\n(.*?)^## /ms;
	while ($section =~ /^\| `(\w+)` \|[^|]*\|([^|]*)\|\s*$/mg)
	{
		my ($event, $cell) = ($1, $2);
		next if $event eq 'event';    # the header
		$fields{$event} = join ',', sort('event', 'at', $cell =~ /`(\w+)`/g);
	}
}
is(join(' ', sort keys %fields),
	'batch_finished batch_started endpoint_paused endpoint_resumed items_failed progress',
	'the guide lists the six events');
my (%seen, %wrong);
my @payloads = $heard =~ /^Asynchronous notification "pgbatch_events" with payload "(.*)" received from server process with PID \d+\.$/mg;
for my $payload (@payloads)
{
	my $ev = eval { decode_json($payload) };
	my $name = $ev ? $ev->{event} // '(no event)' : '(not JSON)';
	$seen{$name}++;
	$wrong{$name} = $payload
	  unless $ev && exists $fields{$name}
	  && join(',', sort keys %$ev) eq $fields{$name}
	  && ($ev->{at} // '') =~ /^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d/;
}
note(scalar(@payloads) . ' events heard: ' . join(', ', map { "$_ x$seen{$_}" } sort keys %seen));
is(join(' ', sort keys %wrong), '', 'every event heard is documented, with the documented fields and a time')
  or diag(join("\n", map { "$_: $wrong{$_}" } sort keys %wrong));
ok($seen{$_}, "heard $_") for qw(batch_started progress items_failed batch_finished endpoint_paused);

# 3. the BI queries
{
	my @parts = split /^(?=-- name:)/m, $text{bi};
	my $header = shift @parts;
	like($header, qr/^-- /, 'bi-queries.sql starts with a comment header');
	ok(@parts >= 15, scalar(@parts) . ' BI queries');
	my %views = map { $_ => 1 } qw(progress errors log costs throughput metrics endpoint_status);
	my %names;
	for my $part (@parts)
	{
		my ($name) = $part =~ /^-- name: (\S.*?)\s*$/m;
		ok(!$names{$name}++, "BI query \"$name\": its name is unique");
		my @lines = split /\n/, $part;
		like($lines[1] // '', qr/^-- \S/, "BI query \"$name\": a one-line description follows the name");
		my $query = join "\n", grep { !/^\s*--/ && /\S/ } @lines;
		like($query, qr/^\s*(SELECT|WITH)\b/i, "BI query \"$name\" is a SELECT");
		like($query, qr/;\s*\z/, "BI query \"$name\" ends with a semicolon");
		is(scalar(() = $query =~ /;/g), 1, "BI query \"$name\" is one statement");
		unlike($query, qr/^\s*\\/m, "BI query \"$name\" has no psql meta-command");
		my @other = grep { !$views{$_} } $query =~ /\bbatch\.(\w+)/g;
		is("@other", '', "BI query \"$name\" reads only the documented views");
		my $role = 'grafana';
		my ($out, $err) = as($role, $query);
		ok(!defined $err, "BI query \"$name\" runs as $role") or diag($err);
		next if defined $err || $MAY_BE_EMPTY{$name};
		ok($out ne '', "BI query \"$name\" returns rows");
	}
	my ($out, $err) = as('grafana', 'SELECT count(*) FROM batch.outputs');
	like($err // '', qr/permission denied/, 'a monitor reads the costs, not the outputs they come from');
	($out, $err) = as('grafana', q{SELECT sum(items_completed) FROM batch.throughput WHERE batch = 'batch_982'});
	is($out, sql(q{SELECT completed FROM batch.progress WHERE name = 'batch_982'}),
		'batch.throughput: the items completed per minute add up to the batch\'s completed items');
}

# 4. the command-line tool
{
	my ($dir) = grep { -x "$_/pgbatch" } split /:/, $ENV{PATH};
	my @lines;
	for my $b (grep { $_->{lang} eq 'sh' } @blocks)
	{
		push @lines, map { [ $b, $_ ] } grep { /^pgbatch\s/ } split /\n/, $b->{body};
	}
	ok(@lines >= 10, scalar(@lines) . ' pgbatch command lines in the docs');
  SKIP:
	{
		skip 'pgbatch (the command-line tool) is not installed', 1 unless $dir;
		my $pgbatch = "$dir/pgbatch";
		my ($help, $herr) = ('', '');
		IPC::Run::run([ $pgbatch, '--help' ], '<', \undef, '>', \$help, '2>', \$herr, IPC::Run::timeout(30));
		my %commands = map { $_ => 1 } $help =~ /^  (\w+)(?: BATCH| ITEM)?\s{2,}/mg;
		for my $l (@lines)
		{
			my ($b, $line) = @$l;
			my $where = "$b->{file} line $b->{line}";
			$line =~ s/\s+\|\s+.*$//;    # a pipe to jq: run what is before it
			my @argv = shellwords($line);
			shift @argv;
			my ($command) = grep { !/^-/ } @argv;
			ok($commands{ $command // '' }, "\"$line\" ($where): \"" . ($command // '') . '" is a command of pgbatch --help');
			for my $opt (grep { /^-/ } @argv)
			{
				(my $o = $opt) =~ s/=.*//;
				like($help, qr/(?<![\w-])\Q$o\E(?![\w-])/, "\"$line\": option $o is in pgbatch --help");
			}
			# watch and --follow wait; item and fix take an item id the
			# example does not fix in advance, and fix an editor; cancel
			# would end the example's batch; serve runs until stopped
			next if $command && $command =~ /^(watch|item|fix|cancel|serve)$/ || grep { /^(-f|--follow)$/ } @argv;
			my ($out, $cerr) = ('', '');
			{
				local %ENV = (%ENV, PGHOST => $node->host, PGPORT => $node->port,
					PGDATABASE => 'postgres', PGUSER => 'alice');
				IPC::Run::run([ $pgbatch, @argv ], '<', \undef, '>', \$out, '2>', \$cerr,
					IPC::Run::timeout(60));
			}
			is($? >> 8, 0, "\"$line\" runs as alice with exit status 0") or diag("stdout: $out\nstderr: $cerr");
			ok(defined eval { decode_json($out) }, "\"$line\" prints JSON") or diag($out)
			  if grep { $_ eq '--json' } @argv;
		}
	}
}

# 5. the reference against the catalog
{
	# views: columns and types
	my %catalog;
	for my $row (split /\n/, sql(q{SELECT c.relname || '|' || a.attname || '|' || format_type(a.atttypid, a.atttypmod)
		FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
		WHERE c.relnamespace = 'batch'::regnamespace AND c.relkind = 'v' AND a.attnum > 0
		ORDER BY c.relname, a.attnum}))
	{
		my ($view, $col, $type) = split /\|/, $row;
		push @{ $catalog{$view} }, "$col $type";
	}
	my %documented;
	my $view;
	my $in_table = 0;
	for my $l (split /\n/, $text{guide})
	{
		if ($l =~ /^### `batch\.(\w+)`\s*$/) { $view = $1; $in_table = 0; $documented{$view} = []; next; }
		if ($l =~ /^#/) { undef $view; next; }
		next unless defined $view;
		if ($l =~ /^\| column \| type \| meaning \|/) { $in_table = 1; next; }
		if ($in_table && $l !~ /^\|/) { $in_table = 0; undef $view; next; }
		next unless $in_table;
		next if $l =~ /^\|---/;
		if ($l =~ /^\| `(\w+)` \| ([^|]+?) \|/)
		{
			my ($col, $type) = ($1, $2);
			$type =~ s/^timestamptz$/timestamp with time zone/;
			push @{ $documented{$view} }, "$col $type";
		}
	}
	is(join(' ', sort keys %documented), join(' ', sort keys %catalog), 'the guide documents every view of schema batch');
	for my $v (sort keys %catalog)
	{
		is(join(', ', @{ $documented{$v} // [] }), join(', ', @{ $catalog{$v} }),
			"the guide's columns of batch.$v are the view's, in order, with their types");
	}

	# settings: names, defaults, contexts
	my ($settings) = $text{guide} =~ /^## Settings\n(.*?)^## /ms;
	my %doc_set;
	while ($settings =~ /^\| `(pgbatch\.\w+)` \| ([^|]*?) \| (\w+) \|/mg)
	{
		$doc_set{$1} = [ $2, $3 ];
	}
	my %ctx = (reload => 'sighup', restart => 'postmaster', superuser => 'superuser', user => 'user');
	my %pg_set;
	for my $row (split /\n/, sql(q{SELECT name || '|' || boot_val || '|' || coalesce(unit, '') || '|' || context
		FROM pg_settings WHERE name LIKE 'pgbatch.%' ORDER BY name}))
	{
		my ($name, $boot, $unit, $context) = split /\|/, $row, -1;
		$pg_set{$name} = [ $boot, $unit, $context ];
	}
	is(join(' ', sort keys %doc_set), join(' ', sort keys %pg_set), 'the settings table lists every pgbatch.* setting');
	my %mult = (ms => 1, s => 1000, min => 60_000, h => 3_600_000, d => 86_400_000,
		B => 1, kB => 1024, MB => 1024**2, GB => 1024**3);
	for my $name (sort keys %pg_set)
	{
		next unless $doc_set{$name};
		my ($default, $context) = @{ $doc_set{$name} };
		my ($boot, $unit, $pgctx) = @{ $pg_set{$name} };
		is($ctx{$context} // "($context)", $pgctx, "$name: context $context");
		my ($want, $got);
		if ($default eq 'empty') { ($want, $got) = ('', $boot); }
		elsif ($default =~ /^(\d+)([a-zA-Z]+)$/ && $mult{$2} && $mult{$unit})
		{
			($want, $got) = ($1 * $mult{$2}, $boot * $mult{$unit});
		}
		else { ($want, $got) = ($default, $boot); }
		is($want, $got, "$name: default $default");
	}

	# the function reference: parameter names, and nothing public left out
	my %args;
	for my $row (split /\n/, sql(q{SELECT proname || '|' || pg_get_function_identity_arguments(oid)
		FROM pg_proc WHERE pronamespace = 'batch'::regnamespace AND proname !~ '^_'}))
	{
		my ($name, $identity) = split /\|/, $row, -1;
		my @names = map { s/^(IN|INOUT|VARIADIC)\s+//r =~ s/\s.*//r }
		  grep { /\S/ && !/^OUT\s/ } split /,\s*/, $identity;
		push @{ $args{$name} }, join(', ', @names);
	}
	my ($reference) = $text{guide} =~ /^## Function reference\n(.*)\z/ms;
	my %listed;
	while ($reference =~ /^\| `batch\.(\w+)\(([^)]*)\)` \|/mg)
	{
		my ($name, $params) = ($1, $2);
		$listed{$name} = 1;
		ok((grep { $_ eq $params } @{ $args{$name} // [] }),
			"function reference: batch.$name($params) exists with these parameter names")
		  or diag('overloads: ' . join(' / ', map { "($_)" } @{ $args{$name} // [] }));
	}
	is(join(' ', grep { !$listed{$_} } sort keys %args), '', 'the function reference lists every public function');

	# every batch.*, cron.* and pgbatch.* name the docs mention exists
	my $all = join "\n", values %text;
	my %names = map { $_ => 1 } $all =~ /(?<![\w.\/])batch\.([a-z_][a-z0-9_]*)/g;
	my $missing = sql("SELECT string_agg(n, ' ' ORDER BY n) FROM unnest(ARRAY['" . join("','", sort keys %names) . "']) n
		WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.relnamespace = 'batch'::regnamespace AND c.relname = n)
		  AND NOT EXISTS (SELECT FROM pg_proc p WHERE p.pronamespace = 'batch'::regnamespace AND p.proname = n)");
	is($missing, '', 'every batch.* name in the docs exists (' . scalar(keys %names) . ' names)');
	my %cron = map { $_ => 1 } $all =~ /(?<![\w.\/])cron\.([a-z_][a-z0-9_]*)/g;
	$missing = sql("SELECT string_agg(n, ' ' ORDER BY n) FROM unnest(ARRAY['" . join("','", sort keys %cron) . "']) n
		WHERE NOT EXISTS (SELECT FROM pg_class c WHERE c.relnamespace = 'cron'::regnamespace AND c.relname = n)
		  AND NOT EXISTS (SELECT FROM pg_proc p WHERE p.pronamespace = 'cron'::regnamespace AND p.proname = n)
		  AND NOT EXISTS (SELECT FROM pg_settings s WHERE s.name = 'cron.' || n)");
	is($missing, '', 'every cron.* name in the docs exists (' . scalar(keys %cron) . ' names)');
	my %gucs = map { $_ => 1 } $all =~ /(?<![\w.\/])pgbatch\.([a-z_][a-z0-9_]*)/g;
	my @unknown = grep { !$pg_set{"pgbatch.$_"} } sort keys %gucs;
	is("@unknown", '', 'every pgbatch.* setting in the docs exists (' . scalar(keys %gucs) . ' names)');
}

# 6. the runnable blocks, in order, against the populated database
run_block($_, 'runnable') for @runnable;

stop_fake_api($api);
# 7. the README's Quickstart, verbatim, in a database of its own, as the
#    superuser a newcomer would be: it runs without an error, and its batch
#    ends with the three items completed (the bad row fixed and retried;
#    the executors may run it before the block's batch.run() calls do)
{
	my $readme = PostgreSQL::Test::Utils::slurp_file("$DOC/../README.md");
	my ($quick) = $readme =~ /^## Quickstart\n\n```sql\n(.*?)^```$/ms;
	ok(defined $quick, 'the README has a Quickstart SQL block');
	$node->safe_psql('postgres', 'CREATE DATABASE quickstart');
	my ($ret, $out, $err) = $node->psql('quickstart', $quick, on_error_stop => 1, timeout => 120);
	is($ret, 0, 'the README Quickstart runs verbatim') or diag($err);
	my $state = '';
	for (1 .. 150)
	{
		$state = $node->safe_psql('quickstart',
			q{SELECT status || ' ' || completed || '/' || total FROM batch.progress WHERE name = 'batch_982'});
		last if $state eq 'completed 3/3';
		usleep(200_000);
	}
	is($state, 'completed 3/3', 'the Quickstart batch ends with its three items completed');
}

$node->stop;
done_testing();
