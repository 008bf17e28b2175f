
# PgBatchTest.pm
#
# Helpers shared by the pgbatch TAP tests (test/t/*.pl):
#   new_node($name, $conf)   a started PostgreSQL::Test::Cluster, with the
#                            postgresql.conf lines in $conf (optional)
#   run_together($node, $gate, @scripts)
#                            runs each psql script in its own session, all
#                            released at the same moment through an advisory
#                            lock "gate", and returns their outputs
#   new_worker_node($name, $conf)
#                            a started cluster with pgbatch preloaded (its
#                            launcher and executors run; pgbatch.workers = 2,
#                            poll_interval 500ms), plus the postgresql.conf
#                            lines in $conf
#   start_fake_api(args => [...])
#                            starts test/fake_api.py on 127.0.0.1 (a free
#                            port) and returns { pid, port, url, dir }; it is
#                            stopped by its own pid, by stop_fake_api() or at
#                            exit at the latest
#   stop_fake_api($api)      SIGTERM to its pid (SIGKILL after 10 s), waited for
#   fake_api_get($api, $path), fake_api_post($api, $path, $json)
#                            a control or stats request; returns the body
#   fake_api_json($api, $path)
#                            fake_api_get, decoded (JSON::PP)
#   spawn_server($out, @cmd) starts a server process (output to $out), stopped
#                            by its own pid at exit at the latest; its pid
#   start_nginx($http)       Debian's nginx on loopback, one worker, with its own
#                            config in a temporary directory and $http inside
#                            its http block; returns that directory (relative
#                            paths in $http, e.g. an access_log, land there)
#   wait_for($node, $sql, $expected, $timeout, $db)
#                            polls $sql until its output is $expected or
#                            $timeout seconds have passed; returns the last
#                            output (failed calls, e.g. while the server
#                            restarts, are polled through)
#
# Every psql call is bounded by $PgBatchTest::TIMEOUT seconds.

package PgBatchTest;

use strict;
use warnings;

use Exporter 'import';
use Cwd qw(abs_path);
use File::Basename qw(dirname);
use HTTP::Tiny;
use JSON::PP;
use POSIX qw(WNOHANG);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

our @EXPORT_OK = qw(new_node run_together new_worker_node start_fake_api
  stop_fake_api fake_api_get fake_api_post fake_api_json wait_for sql
  spawn_server start_nginx start_fake_proxy wait_batch_done);
our $TIMEOUT = 60;

# the fake API script, next to this module
my $FAKE_API = dirname(abs_path(__FILE__)) . '/fake_api.py';

# fake APIs started and not yet stopped (stopped at exit at the latest)
my @fake_apis;

# The first key of the advisory locks the gates use (the second is $gate).
my $GATE_CLASS = 4242;

# the node that new_node() or new_worker_node() made last: sql() runs there
my $current_node;

# new_node($name, $conf): initialises and starts a cluster (loopback only,
# stopped by the test framework when the test ends), with $conf (optional)
# appended to postgresql.conf.
sub new_node
{
	my ($name, $conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf', $conf) if defined $conf;
	$node->start;
	$current_node = $node;
	return $node;
}

# sql($query, $db): runs a query on the current node (database postgres by
# default) and returns its output; dies on error; bounded by $TIMEOUT.
sub sql
{
	my ($query, $db) = @_;
	return $current_node->safe_psql($db // 'postgres', $query, timeout => $TIMEOUT);
}

# new_worker_node($name, $conf): a started cluster with pgbatch preloaded, so
# that its launcher and executors run; $conf (optional) is appended to
# postgresql.conf after the defaults below.
sub new_worker_node
{
	my ($name, $conf) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init;
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = 'pgbatch'\n"
		  . "pgbatch.workers = 2\n"
		  . "pgbatch.poll_interval = '500ms'\n"
		  . ($conf // ''));
	$node->start;
	$current_node = $node;
	return $node;
}

# start_fake_api(args => [...]): starts test/fake_api.py on 127.0.0.1 with a
# port of its choosing (and the extra command-line arguments given), waits
# until it listens, and returns { pid, port, url, dir }.  Its stdout and
# stderr go to files in dir.
sub start_fake_api
{
	my (%opts) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir('fake_api');
	my @cmd = ('python3', $FAKE_API, '--port', '0',
		'--portfile', "$dir/port", '--pidfile', "$dir/pid",
		@{ $opts{args} // [] });

	my $pid = fork();
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>', "$dir/stdout");
		open(STDERR, '>', "$dir/stderr");
		exec(@cmd) or POSIX::_exit(127);
	}
	my $api = { pid => $pid, dir => $dir };
	push @fake_apis, $api;

	my $deadline = time() + 15;
	while (time() < $deadline && !-s "$dir/port")
	{
		if (waitpid($pid, WNOHANG) == $pid)
		{
			$api->{pid} = undef;
			die "fake_api exited at start: "
			  . PostgreSQL::Test::Utils::slurp_file("$dir/stderr");
		}
		usleep(50_000);
	}
	die "fake_api did not start listening within 15 s" unless -s "$dir/port";
	chomp(my $port = PostgreSQL::Test::Utils::slurp_file("$dir/port"));
	$api->{port} = $port;
	$api->{url} = "http://127.0.0.1:$port";
	note "fake_api pid $pid listening on $api->{url}";
	return $api;
}

# stop_fake_api($api): SIGTERM to the fake API's own pid, then waits for it
# (SIGKILL to that pid if it has not exited within 10 s).
sub stop_fake_api
{
	my ($api) = @_;
	my $pid = $api->{pid};
	return unless $pid;
	local $?;
	kill('TERM', $pid);
	my $deadline = time() + 10;
	while (waitpid($pid, WNOHANG) == 0)
	{
		if (time() > $deadline)
		{
			kill('KILL', $pid);
			waitpid($pid, 0);
			last;
		}
		usleep(50_000);
	}
	$api->{pid} = undef;
	return;
}

# other servers started by spawn_server()
my @servers;

END
{
	local $?;
	stop_fake_api($_) for @fake_apis;
	for my $pid (@servers)
	{
		kill('TERM', $pid);
		waitpid($pid, 0);
	}
}

# spawn_server($out, @cmd): starts a server in the background, its stdout
# and stderr to $out; it is stopped by its own pid at exit at the latest.
# Returns its pid.
sub spawn_server
{
	my ($out, @cmd) = @_;
	my $pid = fork();
	die "fork failed: $!" unless defined $pid;
	if ($pid == 0)
	{
		open(STDIN, '<', '/dev/null');
		open(STDOUT, '>', $out);
		open(STDERR, '>&', \*STDOUT);
		exec(@cmd) or POSIX::_exit(127);
	}
	push @servers, $pid;
	return $pid;
}

# start_nginx($http): starts nginx in the foreground of a child process with a
# config of its own in a new temporary directory (one worker, its pid file,
# logs and temporary files there), with $http inside the http block; the
# caller's server blocks listen on 127.0.0.1.  Returns the directory.
sub start_nginx
{
	my ($http) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir('nginx');
	PostgreSQL::Test::Utils::append_to_file("$dir/nginx.conf", <<"CONF");
worker_processes 1;
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
	client_body_temp_path $dir/body;
	proxy_temp_path $dir/proxy;
	fastcgi_temp_path $dir/fastcgi;
	uwsgi_temp_path $dir/uwsgi;
	scgi_temp_path $dir/scgi;
	default_type application/json;
$http
}
CONF
	spawn_server("$dir/stdout", 'nginx', '-e', "$dir/error.log", '-p', "$dir/", '-c', "$dir/nginx.conf");
	return $dir;
}

# start_fake_proxy(@args): starts test/fake_proxy.py on 127.0.0.1 with a port
# of its choosing and the arguments given (--mode, --auth, --log, --tls-cert,
# --tls-key), waits until it listens, and returns its port.  It is stopped by
# its own pid at exit.
sub start_fake_proxy
{
	my (@args) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir('fake_proxy');
	spawn_server("$dir/stdout", 'python3', dirname(abs_path(__FILE__)) . '/fake_proxy.py',
		'--port', '0', '--portfile', "$dir/port", '--pidfile', "$dir/pid", @args);
	my $deadline = time() + 15;
	usleep(50_000) while time() < $deadline && !-s "$dir/port";
	die "fake_proxy did not start listening within 15 s: "
	  . PostgreSQL::Test::Utils::slurp_file("$dir/stdout")
	  unless -s "$dir/port";
	chomp(my $port = PostgreSQL::Test::Utils::slurp_file("$dir/port"));
	return $port;
}

# fake_api_get($api, $path): a GET (e.g. '/_stats?keys=0'); returns the body.
sub fake_api_get
{
	my ($api, $path) = @_;
	my $r = HTTP::Tiny->new(timeout => $TIMEOUT)->get("$api->{url}$path");
	die "GET $path on the fake API: $r->{status} $r->{content}" unless $r->{success};
	return $r->{content};
}

# fake_api_post($api, $path, $json): a POST of a JSON body; returns the body.
sub fake_api_post
{
	my ($api, $path, $json) = @_;
	my $r = HTTP::Tiny->new(timeout => $TIMEOUT)->post("$api->{url}$path",
		{ content => $json // '{}', headers => { 'Content-Type' => 'application/json' } });
	die "POST $path on the fake API: $r->{status} $r->{content}" unless $r->{success};
	return $r->{content};
}

# fake_api_json($api, $path): fake_api_get, decoded.
sub fake_api_json
{
	return decode_json(fake_api_get(@_));
}

# wait_for($node, $sql, $expected, $timeout, $db): runs $sql (in $db,
# default postgres) every 200 ms until its output is $expected, for at most
# $timeout seconds (default $TIMEOUT).  Failed calls (the server restarting,
# say) are retried.  Returns the last output ('' if none succeeded), for the
# caller to compare.
sub wait_for
{
	my ($node, $sql, $expected, $timeout, $db) = @_;
	my $deadline = time() + ($timeout // $TIMEOUT);
	my $last = '';
	while (1)
	{
		my $left = $deadline - time();
		my $timed_out;
		my ($ret, $out, $err) = $node->psql($db // 'postgres', $sql,
			timeout => ($left < 5 ? 5 : $left > $TIMEOUT ? $TIMEOUT : $left),
			timed_out => \$timed_out);
		$last = $out if defined $ret && $ret == 0;
		return $last if defined $ret && $ret == 0 && $last eq $expected;
		last if time() >= $deadline;
		usleep(200_000);
	}
	return $last;
}

# wait_batch_done($name, $timeout): waits ($timeout seconds, default
# $TIMEOUT) until batch $name of the current node has finished (completed,
# partial or failed); returns 'status completed failed'.
sub wait_batch_done
{
	my ($name, $timeout) = @_;
	my $deadline = time() + ($timeout // $TIMEOUT);
	my $r = '';
	while (time() < $deadline)
	{
		$r = sql(qq{SELECT status || ' ' || completed || ' ' || failed FROM batch.progress WHERE name = '$name'});
		last if $r =~ /^(completed|failed|partial) /;
		usleep(200_000);
	}
	return $r;
}

# run_together($node, $gate, @scripts): starts one background psql session
# per script.  Each waits on the shared advisory lock ($GATE_CLASS, $gate)
# that this function holds exclusively; once all are queued behind it, the
# gate opens and they run at once.  Returns a list of { out, err } hashes in
# script order.
sub run_together
{
	my ($node, $gate, @scripts) = @_;
	my $key = "$GATE_CLASS, $gate";

	my $opener = $node->background_psql('postgres', timeout => $TIMEOUT);
	$opener->query_safe("SELECT pg_advisory_lock($key)");

	my @sessions;
	for my $script (@scripts)
	{
		my $s = $node->background_psql('postgres', timeout => $TIMEOUT);
		$s->query_until(qr/waiting/, qq{
\\echo waiting
SELECT pg_advisory_lock_shared($key);
$script
SELECT pg_advisory_unlock_shared($key);
\\echo finished
});
		push @sessions, $s;
	}

	my $waiting = 0;
	my $deadline = time() + $TIMEOUT;
	while (time() < $deadline)
	{
		$waiting = $node->safe_psql('postgres', qq{
			SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND NOT granted
			AND classid = $GATE_CLASS AND objid = $gate AND objsubid = 2},
			timeout => $TIMEOUT);
		last if $waiting == scalar(@scripts);
		usleep(100_000);
	}
	is($waiting, scalar(@scripts), 'all sessions wait at the gate');
	$opener->query_safe("SELECT pg_advisory_unlock($key)");

	my @results;
	for my $s (@sessions)
	{
		my $out = $s->query_until(qr/finished/, '');
		push @results, { out => $out, err => $s->{stderr} };
		$s->quit;
	}
	$opener->quit;
	return @results;
}

1;
