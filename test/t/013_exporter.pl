
# 013_exporter.pl
#
# batch.metrics through Debian's prometheus-postgres-exporter (0.11) and the
# query file doc/prometheus-queries.yml.  The exporter binary comes from the
# environment variable PGB_EXPORTER (test/run.sh fetches the package and
# unpacks it without installing it, see pgb_fetch_exporter in test/lib.sh);
# without it the test is skipped.
#
# A cluster with pgbatch preloaded (so that endpoints have their shared
# state), and:
# - a SQL pipeline whose stage fails some items (raise_exception for n % 4
#   = 0, division_by_zero for the other n % 5 = 0), 20 items run by
#   batch.run() in the transaction that submits them: 12 completed, 5 + 3
#   failed;
# - an HTTP pipeline against the fake API, run by the executors: 6 items,
#   one meets a 503 once (a retry, then completed), two a 404 (failed): 4
#   completed, 2 failed, 7 requests, 3 failures;
# - an endpoint paused by a 429 with Retry-After: 300 (its one item waits,
#   retrying).
# The exporter logs in as a role in pgbatch_monitor, over the node's unix
# socket, and listens on 127.0.0.1 (a free port); /metrics is scraped with
# HTTP::Tiny.  Checked: the pgbatch_* series with their labels and values
# (items by state, failed items by code, attempts by outcome, latency
# quantiles, endpoint requests, failures and pause), no query error
# (pg_exporter_last_scrape_error 0, nothing in the exporter's log).  And,
# through psql: a plain pgbatch_reader sees no batch in batch.metrics (row-
# level security), the monitor sees them all.  The exporter is stopped by
# its own pid.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use HTTP::Tiny;
use POSIX qw(WNOHANG);
use PgBatchTest qw(new_worker_node start_fake_api stop_fake_api wait_for sql);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my $exporter_bin = $ENV{PGB_EXPORTER} // '';
if ($exporter_bin eq '' || !-x $exporter_bin)
{
	plan skip_all => 'PGB_EXPORTER is not set to a prometheus-postgres-exporter binary'
	  . ' (test/run.sh sets it; or: . test/lib.sh; export PGB_EXPORTER=$(pgb_fetch_exporter DIR))';
}

my $QUERIES = "$FindBin::RealBin/../../doc/prometheus-queries.yml";
ok(-r $QUERIES, 'doc/prometheus-queries.yml is there');

my $node = new_worker_node('exporter');
my $api = start_fake_api();

sql(qq{
CREATE EXTENSION pgbatch;
CREATE ROLE exporter LOGIN IN ROLE pgbatch_monitor;
CREATE ROLE plain LOGIN IN ROLE pgbatch_reader;
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO PUBLIC;
CREATE FUNCTION app.check(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
BEGIN
	IF (p ->> 'n')::int % 4 = 0 THEN
		RAISE EXCEPTION 'item % is bad', p ->> 'n';
	END IF;
	RETURN jsonb_build_object('n', (p ->> 'n')::int / ((p ->> 'n')::int % 5));
END
\$\$;
SELECT batch.create_pipeline('chk', '[{"name": "check", "sql": "app.check"}]');
SELECT batch.create_endpoint('api', '$api->{url}', max_concurrency => 4);
SELECT batch.create_endpoint('limited', '$api->{url}', max_concurrency => 4);
SELECT batch.create_pipeline('web', '[{"name": "call", "http": {"endpoint": "api", "path": "/v1/web"}}]',
	retry => '{"max_retries": 3, "backoff_base": "100 ms", "jitter": 0}');
SELECT batch.create_pipeline('wait', '[{"name": "call", "http": {"endpoint": "limited", "path": "/v1/wait"}}]',
	retry => '{"max_retries": 3, "backoff_base": "100 ms", "jitter": 0}');
});

is( wait_for($node, q{SELECT count(*) FROM batch.workers}, '2', 60),
	'2', 'two executors run');

# the SQL batch, run in-session (submitted and run in one transaction, so the
# executors, woken at commit, find nothing to do)
my $run = sql(q{
BEGIN;
SELECT batch.submit('chk', (SELECT jsonb_agg(jsonb_build_object('n', g) ORDER BY g)
	FROM generate_series(1, 20) g), name => 'sql batch');
SELECT items_completed || ' ' || items_failed FROM batch.run('sql batch');
COMMIT;
});
like($run, qr/^12 8$/m, 'batch.run() completed 12 items and failed 8');

# the HTTP batch, run by the executors
sql(q{SELECT batch.submit('web', '[{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4, "fault": "503x1"},
	{"n": 5, "fault": "404"}, {"n": 6, "fault": "404"}]', name => 'web')});
is( wait_for($node, q{SELECT status || ' ' || completed || ' ' || failed
		FROM batch.progress WHERE name = 'web'}, 'partial 4 2', 60),
	'partial 4 2', 'the executors ran the HTTP batch: 4 completed, 2 failed');

# an endpoint paused by a Retry-After; its item waits
sql(q{SELECT batch.submit('wait', '[{"n": 1, "fault": "429:ra=300x1"}]', name => 'waiting')});
is( wait_for($node, q{SELECT paused_until > now() FROM batch.endpoint_status WHERE name = 'limited'},
		't', 60),
	't', 'the endpoint "limited" is paused by a 429 with Retry-After');
is( wait_for($node, q{SELECT retrying FROM batch.progress WHERE name = 'waiting'}, '1', 60),
	'1', 'its item waits, retrying');

# row-level security: a plain reader sees no batch, the monitor every one
sub psql_as
{
	my ($role, $query) = @_;
	return $node->safe_psql('postgres', $query, extra_params => [ '-U', $role ],
		timeout => $PgBatchTest::TIMEOUT);
}
my $count_batches = q{SELECT count(*) || ' ' || count(DISTINCT batch) FROM batch.metrics WHERE batch IS NOT NULL};
is(psql_as('plain', $count_batches), '0 0',
	'a plain pgbatch_reader sees no batch in batch.metrics (row-level security)');
is(psql_as('plain', q{SELECT count(*) FROM batch.metrics WHERE metric = 'pgbatch_items'}), '0',
	'... not even their item counts');
my $all = sql($count_batches);
like($all, qr/ 3$/, 'the superuser sees the 3 batches');
is(psql_as('exporter', $count_batches), $all, 'a pgbatch_monitor member sees all of them');

# ----------------------------------------------------------------------
# the exporter
# ----------------------------------------------------------------------

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $log = $node->basedir . '/exporter.log';
my $dsn = sprintf('host=%s port=%d user=exporter dbname=postgres sslmode=disable',
	$node->host, $node->port);
my @cmd = ($exporter_bin, "--extend.query-path=$QUERIES",
	"--web.listen-address=127.0.0.1:$port",
	'--disable-default-metrics', '--disable-settings-metrics',
	'--no-collector.database', '--no-collector.bgwriter');
note "starting @cmd with DATA_SOURCE_NAME='$dsn'";

my $exporter_pid = fork();
die "fork failed: $!" unless defined $exporter_pid;
if ($exporter_pid == 0)
{
	# only the settings given here (no PG_EXPORTER_* from the environment)
	delete $ENV{$_} for grep { /^(PG_EXPORTER_|DATA_SOURCE_)/ } keys %ENV;
	$ENV{DATA_SOURCE_NAME} = $dsn;
	open(STDIN, '<', '/dev/null');
	open(STDOUT, '>', $log);
	open(STDERR, '>&', \*STDOUT);
	exec(@cmd) or POSIX::_exit(127);
}

# stop_exporter(): SIGTERM to its pid, SIGKILL to it after 10 s
sub stop_exporter
{
	return unless $exporter_pid;
	local $?;
	kill('TERM', $exporter_pid);
	my $deadline = time() + 10;
	while (waitpid($exporter_pid, WNOHANG) == 0)
	{
		if (time() > $deadline)
		{
			kill('KILL', $exporter_pid);
			waitpid($exporter_pid, 0);
			last;
		}
		usleep(50_000);
	}
	$exporter_pid = undef;
	return;
}
END { stop_exporter(); }

# scrape(): GET /metrics, retried (bounded) while the exporter starts
sub scrape
{
	my $http = HTTP::Tiny->new(timeout => 30);
	my $deadline = time() + 60;
	my $r;
	while (1)
	{
		$r = $http->get("http://127.0.0.1:$port/metrics");
		return $r->{content} if $r->{success} && $r->{content} =~ /^pg_up 1$/m;
		last if time() > $deadline;
		if (waitpid($exporter_pid, WNOHANG) == $exporter_pid)
		{
			$exporter_pid = undef;
			diag 'the exporter exited: ' . slurp_file($log);
			last;
		}
		usleep(250_000);
	}
	diag "no metrics from the exporter: $r->{status} $r->{content}";
	return '';
}

# parse($text): { 'name{label="value",...}' => value }, labels sorted, without
# the label "server" the exporter adds
sub parse
{
	my ($text) = @_;
	my %m;
	for my $line (split /\n/, $text)
	{
		next if $line =~ /^#/ || $line !~ /\S/;
		my ($name, $labels, $value) = $line =~ /^(\w+)(?:\{(.*)\})? (\S+)$/
		  or next;
		my %l;
		while (($labels // '') =~ /(\w+)="((?:[^"\\]|\\.)*)"/g) { $l{$1} = $2; }
		delete $l{server};
		my $key = $name . (%l ? '{' . join(',', map { qq{$_="$l{$_}"} } sort keys %l) . '}' : '');
		$m{$key} = $value;
	}
	return \%m;
}

my $text = scrape();
ok($text ne '', 'the exporter answers /metrics');
my $m = parse($text);
note join("\n", map { "$_ $m->{$_}" } grep { /^pg/ } sort keys %$m);

# the exporter's own health: connected, queries file loaded, no query error
is($m->{pg_up}, 1, 'pg_up 1: the exporter logged in as the monitor role');
is($m->{pg_exporter_last_scrape_error}, 0, 'pg_exporter_last_scrape_error 0: every query ran');
my ($load_error) = map { $m->{$_} } grep { /^pg_exporter_user_queries_load_error\{/ } keys %$m;
is($load_error, 0, 'the queries file loaded (pg_exporter_user_queries_load_error 0)');

# items by state
my %items = (pending => 0, retrying => 0, running => 0, completed => 12, failed => 8, cancelled => 0);
for my $state (sort keys %items)
{
	is($m->{qq{pgbatch_items_value{batch="sql batch",state="$state"}}}, $items{$state},
		"pgbatch_items_value{batch=\"sql batch\",state=\"$state\"} $items{$state}");
}
is($m->{q{pgbatch_items_value{batch="web",state="completed"}}}, 4, 'web: 4 items completed');
is($m->{q{pgbatch_items_value{batch="web",state="failed"}}}, 2, 'web: 2 items failed');
is($m->{q{pgbatch_items_value{batch="waiting",state="retrying"}}}, 1, 'waiting: 1 item retrying');
is(scalar(grep { /^pgbatch_items_value\{/ } keys %$m), 18, 'six states for each of the 3 batches');

# failed items by stage and code
is($m->{q{pgbatch_failed_items_value{batch="sql batch",code="raise_exception",stage="check"}}},
	5, 'failed items: 5 raise_exception at stage check');
is($m->{q{pgbatch_failed_items_value{batch="sql batch",code="division_by_zero",stage="check"}}},
	3, 'failed items: 3 division_by_zero at stage check');
is($m->{q{pgbatch_failed_items_value{batch="web",code="http_404",stage="call"}}},
	2, 'failed items: 2 http_404 at stage call');
is(scalar(grep { /^pgbatch_failed_items_value\{/ } keys %$m), 3, 'no other failed items');

# attempts by outcome
my %attempts = (
	q{batch="sql batch",outcome="completed",stage="check"} => 12,
	q{batch="sql batch",outcome="failed",stage="check"} => 8,
	q{batch="web",outcome="completed",stage="call"} => 4,
	q{batch="web",outcome="retry",stage="call"} => 1,
	q{batch="web",outcome="failed",stage="call"} => 2,
	q{batch="waiting",outcome="retry",stage="call"} => 1);
for my $labels (sort keys %attempts)
{
	is($m->{"pgbatch_attempts_total_value{$labels}"}, $attempts{$labels},
		"pgbatch_attempts_total_value{$labels} $attempts{$labels}");
}
is(scalar(grep { /^pgbatch_attempts_total_value\{/ } keys %$m), scalar(keys %attempts),
	'no other attempts');
like($text, qr/^# TYPE pgbatch_attempts_total_value counter$/m, 'attempts are a counter');
like($text, qr/^# TYPE pgbatch_items_value gauge$/m, 'items are a gauge');

# latency quantiles
for my $q ('0.5', '0.9', '0.99')
{
	my $v = $m->{qq{pgbatch_attempt_duration_seconds_value{batch="sql batch",quantile="$q",stage="check"}}};
	ok(defined $v && $v >= 0, "attempt duration quantile $q of stage check: " . ($v // 'missing'));
}

# endpoints
is($m->{q{pgbatch_endpoint_requests_total_value{endpoint="api"}}}, 7,
	'endpoint api: 7 requests (6 items, one retried)');
is($m->{q{pgbatch_endpoint_failures_total_value{endpoint="api"}}}, 3,
	'endpoint api: 3 failures (a 503 and two 404s)');
is($m->{q{pgbatch_endpoint_in_flight_value{endpoint="api"}}}, 0, 'endpoint api: nothing in flight');
is($m->{q{pgbatch_endpoint_paused_value{endpoint="api"}}}, 0, 'endpoint api: not paused');
is($m->{q{pgbatch_endpoint_circuit_open_value{endpoint="api"}}}, 0, 'endpoint api: circuit closed');
is($m->{q{pgbatch_endpoint_consecutive_failures_value{endpoint="api"}}} // 'missing', 0,
	'endpoint api: no failure since the last answer');
is($m->{q{pgbatch_endpoint_paused_value{endpoint="limited"}}}, 1,
	'endpoint limited: paused');
my $left = $m->{q{pgbatch_endpoint_paused_seconds_value{endpoint="limited"}}} // -1;
ok($left > 0 && $left <= 300, "endpoint limited: paused for $left more seconds (at most 300)");
is($m->{q{pgbatch_endpoint_requests_total_value{endpoint="limited"}}}, 1,
	'endpoint limited: 1 request');

# every family of batch.metrics has its series
for my $family (qw(pgbatch_items pgbatch_failed_items pgbatch_attempts_total
	pgbatch_attempt_duration_seconds pgbatch_endpoint_in_flight
	pgbatch_endpoint_requests_total pgbatch_endpoint_failures_total
	pgbatch_endpoint_paused pgbatch_endpoint_paused_seconds
	pgbatch_endpoint_circuit_open pgbatch_endpoint_consecutive_failures))
{
	like($text, qr/^${family}_value\{/m, "${family}_value is exported");
}

# a second scrape: still no error
$m = parse(scrape());
is($m->{pg_exporter_last_scrape_error}, 0, 'a second scrape: no error either');

stop_exporter();
my $exporter_log = slurp_file($log);
unlike($exporter_log, qr/Error running query|level=error/,
	"the exporter logged no query error") or diag $exporter_log;

stop_fake_api($api);
$node->stop;
done_testing();
