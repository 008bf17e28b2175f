
# 029_serve.pl
#
# pgbatch serve, the web page: as its users and its attackers would try it.
#
#  1. Listening: beyond loopback without TLS it refuses and exits 2; with
#     --tls-cert/--tls-key it speaks HTTPS and its cookies are Secure.
#  2. Signing in (HTTP, no browser): the sign-in form's token must match its
#     cookie; a wrong password is refused; a role the database server lets
#     in without a password (trust on the unix socket) is refused; the
#     session cookie is HttpOnly and SameSite=Strict; every answer carries
#     the content security policy; a Host that is not the server's (DNS
#     rebinding) is refused.
#  3. The actions: without the session's CSRF token, from another origin,
#     or after signing out, nothing happens; a role acts only on what the
#     SQL API lets it (ann cannot see or retry bob's batch); a payload that
#     is not JSON is refused by the server; texts of anyone's making (a key,
#     a payload with </textarea><script>) come out escaped.
#  4. In a real browser (Debian's chromium, driven by chromedriver through
#     the WebDriver protocol): sign in, see the bar (1 of 3 completed), take
#     a screenshot, fix a payload in the review queue, retry with the code
#     and stage filters, and see the item complete without reloading (the
#     event stream); the injected scripts never ran.
#  5. The database restarts: the sessions end, signing in again works.  A
#     session with no page open still reads its notifications, so its
#     server process is never stuck writing them.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use MIME::Base64;
use PgBatchTest qw(new_worker_node spawn_server start_fake_api sql wait_for);
use PostgreSQL::Test::Utils;
use PostgreSQL::Test::Cluster;
use Test::More;
use Time::HiRes qw(usleep);

my ($pgbatch) = grep { -x "$_/pgbatch" } split /:/, $ENV{PATH};
die 'pgbatch is not in PATH: run "make -C cli install" (or the top-level make install) first'
  unless defined $pgbatch;
$pgbatch .= '/pgbatch';
for my $prog ('/usr/bin/chromium', '/usr/bin/chromedriver')
{
	die "$prog is missing: apt-get install chromium chromium-driver (test/lib.sh pgb_install_deps)"
	  unless -x $prog;
}

my $tmp = PostgreSQL::Test::Utils::tempdir('serve');

# a cluster that checks passwords over TCP on 127.0.0.1, and trusts its
# unix socket (as PostgreSQL::Test::Cluster sets it up)
my $node = new_worker_node('serve', "listen_addresses = '127.0.0.1'\n");
open(my $hba, '>', $node->data_dir . '/pg_hba.conf') or die $!;
print $hba "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n";
close($hba);
$node->restart;

my $api = start_fake_api();
my $api_port = $api->{port};
sql(qq{
CREATE EXTENSION pgbatch;
CREATE ROLE ann LOGIN PASSWORD 'ann-secret' IN ROLE pgbatch_operator;
CREATE ROLE bob LOGIN PASSWORD 'bob-secret' IN ROLE pgbatch_operator;
CREATE ROLE nopass LOGIN IN ROLE pgbatch_operator;
CREATE ROLE carol LOGIN PASSWORD 'carol-secret' IN ROLE pgbatch_monitor;
SELECT batch.create_endpoint('api', 'http://127.0.0.1:$api_port', timeout => '10 s');
SELECT batch.create_pipeline('web', '[{"name": "call", "http": {"endpoint": "api", "method": "POST", "path": "/v1/call"}}]',
	retry => '{"max_retries": 1, "backoff_base": "100 ms", "jitter": 0}');
SET ROLE ann;
SELECT batch.submit('web', jsonb_build_array(
	jsonb_build_object('key', 'fine', 'n', 1),
	jsonb_build_object('key', 'to-fix', 'n', 2, 'fault', '400'),
	jsonb_build_object('key', '<img src=x onerror="window.__pwned=1">', 'n', 3, 'fault', '400',
		'note', '</textarea><script>window.__pwned=2</script>')),
	name => 'ann_batch');
RESET ROLE;
SET ROLE bob;
SELECT batch.submit('web', '[{"key": "b1", "n": 4, "fault": "400"}]', name => 'bob_batch');
});
is( wait_for($node,
		q{SELECT string_agg(completed || '/' || failed, ',' ORDER BY name) FROM batch.progress WHERE pending + running + retrying = 0},
		'1/2,0/1', 60),
	'1/2,0/1',
	'ann_batch: 1 completed, 2 failed; bob_batch: 1 failed');
my $ann_batch = sql(q{SELECT id FROM batch.batches WHERE name = 'ann_batch'});
my $bob_batch = sql(q{SELECT id FROM batch.batches WHERE name = 'bob_batch'});
my $fix_item = sql(q{SELECT id FROM batch.items WHERE key = 'to-fix'});
my $xss_item = sql(q{SELECT id FROM batch.items WHERE key LIKE '<img%'});

# serve(@args): starts pgbatch serve on a free port of 127.0.0.1 for this
# cluster's database postgres; returns (pid, base url, its output file)
my $serves = 0;
sub serve
{
	my (@args) = @_;
	my $out = "$tmp/serve" . ++$serves . '.out';
	my $pid = spawn_server($out, $pgbatch, '-h', $args[0], '-p', $node->port, '-d', 'postgres',
		'serve', '--web-port', '0', @args[ 1 .. $#args ]);
	for (1 .. 200)
	{
		my $text = -e $out ? slurp_file($out) : '';
		return ($pid, $1, $out) if $text =~ m{listening on (https?://[^/]+)/};
		usleep(50_000);
	}
	die "pgbatch serve did not start: " . (-e $out ? slurp_file($out) : '');
}

# --- 1. listening ---------------------------------------------------------

for my $addr ('0.0.0.0', '::', '192.0.2.1')
{
	my ($stdout, $stderr);
	my $ok = IPC::Run::run([ $pgbatch, '-h', '127.0.0.1', '-p', $node->port, 'serve', '--listen', $addr ],
		'<', \undef, '>', \$stdout, '2>', \$stderr, IPC::Run::timeout(30));
	is($? >> 8, 2, "--listen $addr without TLS: exit status 2");
	like($stderr, qr/refusing to listen on \Q$addr\E without TLS/, "--listen $addr: says why");
}

system("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=127.0.0.1' "
	  . "-keyout $tmp/web.key -out $tmp/web.crt 2>/dev/null") == 0
  or die 'openssl could not make a certificate';
{
	my ($pid, $url) = serve('127.0.0.1', '--tls-cert', "$tmp/web.crt", '--tls-key', "$tmp/web.key");
	like($url, qr{^https://127\.0\.0\.1:\d+$}, 'with a certificate: HTTPS');
	my $headers = `curl -sk -D - -o /dev/null $url/`;
	like($headers, qr/^HTTP\/1\.1 200/m, 'HTTPS: the sign-in page');
	like($headers, qr/^Set-Cookie: pgbatch_signin=[0-9a-f]{64}; Path=\/; HttpOnly; SameSite=Strict; Secure/mi,
		'HTTPS: the cookie is Secure, HttpOnly, SameSite=Strict');
	kill('TERM', $pid);
	waitpid($pid, 0);
	is($? >> 8, 0, 'SIGTERM stops it, exit status 0');
}

# --- 2. signing in ----------------------------------------------------------

my ($serve_pid, $base, $serve_out) = serve('127.0.0.1');
{
	my ($web_port) = $base =~ /:(\d+)$/;
	my ($stdout, $stderr);
	IPC::Run::run([ $pgbatch, '-h', '127.0.0.1', '-p', $node->port, 'serve', '--web-port', $web_port ],
		'<', \undef, '>', \$stdout, '2>', \$stderr, IPC::Run::timeout(30));
	is($? >> 8, 1, 'a second serve on the same port: exit status 1');
	like($stderr, qr/Address already in use.*could not start the web server/s, '... and says why');
}
my $http = HTTP::Tiny->new(max_redirect => 0, timeout => 30);

# cookie($res, $name): the value a response's Set-Cookie gives $name
sub cookie
{
	my ($res, $name) = @_;
	my $h = $res->{headers}{'set-cookie'} // [];
	for my $c (ref $h ? @$h : ($h))
	{
		return $1 if $c =~ /^\Q$name\E=([^;]*)/;
	}
	return undef;
}

# post($path, $cookie, \%form, %headers): a POST of a form
sub post
{
	my ($path, $cookie, $form, %headers) = @_;
	return $http->post_form("$base$path", $form,
		{ headers => { ($cookie ? (Cookie => $cookie) : ()), %headers } });
}

# sign_in($user, $password, $base): (response, session cookie or undef)
sub sign_in
{
	my ($user, $password, $at) = @_;
	$at //= $base;
	my $page = $http->get("$at/");
	my $token = cookie($page, 'pgbatch_signin');
	my ($field) = $page->{content} =~ /name="csrf" value="([0-9a-f]{64})"/;
	my $res = $http->post_form("$at/signin", { csrf => $field, user => $user, password => $password },
		{ headers => { Cookie => "pgbatch_signin=$token" } });
	return ($res, cookie($res, 'pgbatch_session'));
}

my $page = $http->get("$base/");
is($page->{status}, 200, 'GET /: 200');
like($page->{content}, qr/<form method="post" action="\/signin">/, 'GET / without a session: the sign-in form');
like(join(' ', @{ [ $page->{headers}{'set-cookie'} ] }), qr/HttpOnly; SameSite=Strict/,
	'the sign-in cookie is HttpOnly, SameSite=Strict');
like($page->{headers}{'content-security-policy'}, qr/default-src 'none'; script-src 'self'/,
	'a content security policy: no inline script');
is($page->{headers}{'x-frame-options'}, 'DENY', 'no framing');

# (HTTP::Tiny sets Host itself: curl)
is(`curl -s -o /dev/null -w '%{http_code}' -H 'Host: attacker.example' $base/`, '421',
	'a Host that is not the server (DNS rebinding): 421');
is(`curl -s -o /dev/null -w '%{http_code}' -H 'Host: attacker.example:$1' $base/`, '421',
	'... with the server\'s port too') if $base =~ /:(\d+)$/;
is(`curl -s -o /dev/null -w '%{http_code}' -H 'Host: localhost:9999' $base/`, '200',
	'localhost on another port (an SSH tunnel): 200');

my $res = $http->post_form("$base/signin", { csrf => 'x' x 64, user => 'ann', password => 'ann-secret' });
is($res->{status}, 403, 'sign-in without the form cookie: refused');
ok(!defined cookie($res, 'pgbatch_session'), '... and no session');

my ($bad, $bad_session) = sign_in('ann', 'wrong');
is($bad->{status}, 401, 'a wrong password: 401');
like($bad->{content}, qr/password authentication failed/, '... the server says why');
ok(!defined $bad_session, '... and no session');

{
	# serve on the unix socket, where the cluster trusts every role
	my ($pid, $url) = serve($node->host);
	my ($r, $s) = sign_in('nopass', 'anything', $url);
	like($r->{content}, qr/without checking its password/,
		'a server that lets the role in without a password: refused');
	ok(!defined $s, '... and no session');
	kill('TERM', $pid);
	waitpid($pid, 0);
}

my ($ok, $ann) = sign_in('ann', 'ann-secret');
is($ok->{status}, 303, 'ann signs in: 303 to /');
ok(defined $ann, '... with a session cookie');
like(join(' ', ref $ok->{headers}{'set-cookie'} ? @{ $ok->{headers}{'set-cookie'} } : $ok->{headers}{'set-cookie'}),
	qr/pgbatch_session=[0-9a-f]{64}; Path=\/; HttpOnly; SameSite=Strict/, '... HttpOnly, SameSite=Strict');
my $ann_cookie = "pgbatch_session=$ann";
unlike(slurp_file($serve_out), qr/ann-secret/, 'the password is in no log');

$page = $http->get("$base/", { headers => { Cookie => $ann_cookie } });
like($page->{content}, qr/ann_batch/, 'ann sees her batch');
unlike($page->{content}, qr/bob_batch/, '... not bob\'s');
my ($csrf) = $page->{content} =~ /name="csrf" value="([0-9a-f]{64})"/;
ok(defined $csrf, 'the page carries the session\'s CSRF token');

$page = $http->get("$base/batch?id=$bob_batch", { headers => { Cookie => $ann_cookie } });
is($page->{status}, 404, 'bob\'s batch, for ann: 404');

# --- 3. actions ---------------------------------------------------------------

$page = $http->get("$base/batch?id=$ann_batch", { headers => { Cookie => $ann_cookie } });
like($page->{content}, qr/1 of 3 completed/, 'the batch page: 1 of 3 completed');
like($page->{content}, qr/&lt;img src=x onerror=&quot;window.__pwned=1&quot;&gt;/, 'a key is escaped');
unlike($page->{content}, qr/<img src=x/, '... never raw');
like($page->{content}, qr/&lt;\/textarea&gt;&lt;script&gt;window.__pwned=2/, 'a payload is escaped');
unlike($page->{content}, qr/<script>window/, '... never raw');

my $failed = q{SELECT string_agg(key, ',' ORDER BY key) FROM batch.items WHERE status = 'failed'};
my $before = sql($failed);
$res = post('/retry', $ann_cookie, { batch => $ann_batch, code => '', stage => '' });
is($res->{status}, 403, 'retry without the CSRF token: 403');
$res = post('/retry', $ann_cookie, { batch => $ann_batch, csrf => 'f' x 64 });
is($res->{status}, 403, 'retry with another token: 403');
$res = post('/retry', $ann_cookie, { batch => $ann_batch, csrf => $csrf }, Origin => 'http://attacker.example');
is($res->{status}, 403, 'retry from another origin: 403');
$res = post('/retry', $ann_cookie, { batch => $ann_batch, csrf => $csrf }, 'Sec-Fetch-Site' => 'cross-site');
is($res->{status}, 403, 'retry from a cross-site form: 403');
$res = post('/retry', '', { batch => $ann_batch, csrf => $csrf });
is($res->{status}, 403, 'retry without a session: 403');
$res = post('/retry', $ann_cookie, { batch => $bob_batch, csrf => $csrf });
is($res->{status}, 303, 'ann retries bob\'s batch: the page answers ...');
$page = $http->get("$base/batch?id=$ann_batch", { headers => { Cookie => $ann_cookie } });
like($page->{content}, qr/class="flash error"[^>]*>Nothing was retried: /, '... with the SQL API\'s refusal');
is(sql($failed), $before, 'no item changed');

my $bob_item = sql(q{SELECT id FROM batch.items WHERE key = 'b1'});
$res = post('/item', $ann_cookie, { batch => $ann_batch, csrf => $csrf, item => $bob_item,
	payload => '{"n": 4, "key": "b1"}', then => 'retry' });
$page = $http->get("$base/batch?id=$ann_batch", { headers => { Cookie => $ann_cookie } });
like($page->{content}, qr/class="flash error"[^>]*>The payload was not saved: /,
	'ann edits bob\'s item: the SQL API refuses');
is(sql("SELECT payload->>'fault' || status FROM batch.items WHERE id = $bob_item"), '400failed',
	'... and it is unchanged');

$res = post('/item', $ann_cookie, { batch => $ann_batch, csrf => $csrf, item => $fix_item,
	payload => '{"n": 2,', then => 'save' });
$page = $http->get("$base/batch?id=$ann_batch", { headers => { Cookie => $ann_cookie } });
like($page->{content}, qr/class="flash error"[^>]*>The payload was not saved: invalid input syntax for type json/,
	'a payload that is not JSON: the server refuses it');
is(sql("SELECT payload->>'fault' FROM batch.items WHERE id = $fix_item"), '400', '... and it is unchanged');

# a monitor sees every batch, no payload, and acts on nothing
my ($cres, $carol) = sign_in('carol', 'carol-secret');
my $carol_cookie = "pgbatch_session=$carol";
$page = $http->get("$base/", { headers => { Cookie => $carol_cookie } });
like($page->{content}, qr/ann_batch.*bob_batch|bob_batch.*ann_batch/s, 'a monitor sees every batch');
my ($carol_csrf) = $page->{content} =~ /name="csrf" value="([0-9a-f]{64})"/;
$page = $http->get("$base/batch?id=$ann_batch", { headers => { Cookie => $carol_cookie } });
like($page->{content}, qr/Your role may not read payloads/, '... no review queue, no payloads');
unlike($page->{content}, qr/window.__pwned=2/, '... not even escaped');
post('/retry', $carol_cookie, { batch => $ann_batch, csrf => $carol_csrf });
$page = $http->get("$base/batch?id=$ann_batch", { headers => { Cookie => $carol_cookie } });
like($page->{content}, qr/class="flash error"[^>]*>Nothing was retried: /, '... and may not retry');
is(sql($failed), $before, 'no item changed');

# the browser test signs in on its own; this session signs out
$res = post('/signout', $ann_cookie, { csrf => $csrf });
is($res->{status}, 303, 'sign out');
$res = $http->get("$base/batch?id=$ann_batch", { headers => { Cookie => $ann_cookie } });
is($res->{status}, 303, 'after signing out, the session is gone');
$res = post('/retry', $ann_cookie, { batch => $ann_batch, csrf => $csrf });
is($res->{status}, 403, '... and its token acts no more');

# --- 4. in a real browser -------------------------------------------------------

my $wd_port = PostgreSQL::Test::Cluster::get_free_port();
my $wd_pid = spawn_server("$tmp/chromedriver.log", '/usr/bin/chromedriver', "--port=$wd_port");
my $wd = "http://127.0.0.1:$wd_port";
my $wd_http = HTTP::Tiny->new(timeout => 60);
for (1 .. 100)
{
	last if $wd_http->get("$wd/status")->{success};
	usleep(100_000);
}

# webdriver($method, $path, $body): a WebDriver command; dies on an error
my $sid = '';
sub webdriver
{
	my ($method, $path, $body) = @_;
	my $r = $wd_http->request($method, "$wd/session$sid$path",
		{ headers => { 'Content-Type' => 'application/json' },
		  content => encode_json($body // {}) });
	my $doc = eval { decode_json($r->{content}) } // {};
	die "webdriver $method $path: $r->{status} $r->{content}\n" unless $r->{success};
	return $doc->{value};
}

# element($css): the first element the selector finds (waiting 10 s at most
# for it: a page may still be loading), or dies
sub element
{
	my ($css) = @_;
	my $deadline = time() + 10;
	while (1)
	{
		my $v = eval { webdriver('POST', '/element', { using => 'css selector', value => $css }) };
		return (values %$v)[0] if $v;
		die $@ if time() > $deadline;
		usleep(100_000);
	}
}

# text($css): the element's text, or '' if there is none
sub text
{
	my ($css) = @_;
	my $t = eval { webdriver('GET', '/element/' . element($css) . '/text') };
	return $t // '';
}

# wait_text($css, $re, $seconds): waits until the element's text matches
sub wait_text
{
	my ($css, $re, $seconds) = @_;
	my $deadline = time() + $seconds;
	my $t = '';
	while (time() < $deadline)
	{
		$t = text($css);
		return $t if $t =~ $re;
		usleep(200_000);
	}
	return $t;
}

# refreshed_after($n): waits (10 s at most) until the page has replaced its
# live sections more than $n times, so that no element found next goes stale
sub refreshed_after
{
	my ($n) = @_;
	for (1 .. 50)
	{
		my $r = eval { webdriver('GET', '/element/' . element('body') . '/attribute/data-refreshed') } // 0;
		return $r if $r > $n;
		usleep(200_000);
	}
	return 0;
}

# screenshot($name): saves a PNG of the page next to the test's log (kept
# after the test); returns its size
sub screenshot
{
	my ($name) = @_;
	my $png = decode_base64(webdriver('GET', '/screenshot'));
	my $file = "$PostgreSQL::Test::Utils::log_path/029_serve_$name.png";
	open(my $fh, '>:raw', $file) or die "$file: $!";
	print $fh $png;
	close($fh);
	note "screenshot: $file";
	return ($png =~ /^\x89PNG/ ? length($png) : 0);
}

my $session = webdriver('POST', '', {
	capabilities => { alwaysMatch => { browserName => 'chrome',
		'goog:chromeOptions' => { binary => '/usr/bin/chromium',
			args => [ '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
				'--no-first-run', '--disable-background-networking', '--disable-component-update',
				'--disable-sync', '--disable-quic', '--window-size=1280,1400',
				"--user-data-dir=$tmp/chromium" ] } } } });
$sid = '/' . $session->{sessionId};

webdriver('POST', '/url', { url => "$base/" });
webdriver('POST', '/element/' . element('#user') . '/value', { text => 'ann' });
webdriver('POST', '/element/' . element('#password') . '/value', { text => 'ann-secret' });
webdriver('POST', '/element/' . element('#signin') . '/click');
like(wait_text('#who', qr/ann/, 10), qr/ann/, 'browser: signed in as ann');

webdriver('POST', '/url', { url => "$base/batch?id=$ann_batch" });
like(wait_text('#ratio', qr/of 3 completed/, 10), qr/^1 of 3 completed/, 'browser: the bar says 1 of 3 completed');
is(webdriver('GET', '/element/' . element('svg.bar') . '/attribute/data-completed'), '1',
	'browser: the bar\'s completed part');
ok(screenshot('batch-before') > 5000, 'browser: a screenshot of the batch page');
like(wait_text('#live', qr/live/, 10), qr/^live$/, 'browser: the event stream is open');
ok(refreshed_after(0), 'browser: the page caught up once the stream opened');

# fix the payload in place, save it
my $area = element("#payload-$fix_item");
webdriver('POST', "/element/$area/clear");
webdriver('POST', "/element/$area/value", { text => '{"key": "to-fix", "n": 2}' });
webdriver('POST', '/element/' . element("#save-$fix_item") . '/click');
like(wait_text('#flash', qr/Saved/, 10), qr/Saved the payload of item $fix_item/, 'browser: the payload is saved');
ok(refreshed_after(0), 'browser: the new page is live');
is(sql("SELECT payload::text FROM batch.items WHERE id = $fix_item"), '{"n": 2, "key": "to-fix"}',
	'the new payload is stored');

# retry with the filters: code http_400, stage call
webdriver('POST', '/element/' . element('#retry-code option[value="http_400"]') . '/click');
webdriver('POST', '/element/' . element('#retry-stage option[value="call"]') . '/click');
webdriver('POST', '/element/' . element('#retry') . '/click');
like(wait_text('#flash', qr/Re-queued|No failed/, 10), qr/Re-queued 2 failed items/,
	'browser: Retry re-queued the two items that failed with http_400 at call');

# the item completes; the page learns it from the event stream
like(wait_text('#ratio', qr/^2 of 3/, 30), qr/^2 of 3 completed/, 'browser: the bar moves to 2 of 3 completed');
is(sql("SELECT status FROM batch.items WHERE id = $fix_item"), 'completed', 'the fixed item completed');
is(sql("SELECT status FROM batch.items WHERE id = $xss_item"), 'failed', 'the other one failed again');
like(text('#review'), qr/item $xss_item/, 'browser: it is in the review queue');
unlike(text('#review'), qr/item $fix_item\b/, 'browser: the fixed one is not');

# a change made elsewhere (psql) shows in the page, which is not reloaded
my $refreshed = webdriver('GET', '/element/' . element('body') . '/attribute/data-refreshed') // 0;
sql(qq{SET ROLE ann; SELECT batch.update_item($xss_item, '{"n": 3}'); SELECT batch.retry_item($xss_item)});
like(wait_text('#ratio', qr/^3 of 3/, 30), qr/^3 of 3 completed/,
	'browser: an item fixed in psql completes, and the bar moves to 3 of 3');
ok(webdriver('GET', '/element/' . element('body') . '/attribute/data-refreshed') > $refreshed,
	'browser: the page was refreshed by the event stream, not reloaded');
ok(screenshot('batch-after') > 5000, 'browser: a screenshot after the retry');
is(webdriver('POST', '/execute/sync', { script => 'return String(window.__pwned);', args => [] }),
	'undefined', 'browser: no injected script ran');

# an edited payload that is not JSON is caught in the page (bob's item,
# through a page of bob's)
webdriver('POST', '/element/' . element('#signout') . '/click');
webdriver('POST', '/element/' . element('#user') . '/value', { text => 'bob' });
webdriver('POST', '/element/' . element('#password') . '/value', { text => 'bob-secret' });
webdriver('POST', '/element/' . element('#signin') . '/click');
like(wait_text('#who', qr/bob/, 10), qr/bob/, 'browser: signed out, and in as bob');
webdriver('POST', '/url', { url => "$base/batch?id=$bob_batch" });
ok(refreshed_after(0), 'browser: bob\'s batch page is live');
$area = element("#payload-$bob_item");
webdriver('POST', "/element/$area/clear");
webdriver('POST', "/element/$area/value", { text => '{"n": 4,' });
webdriver('POST', '/element/' . element("#save-$bob_item") . '/click');
like(wait_text("#item-$bob_item .json-error", qr/Not JSON/, 5), qr/Not JSON/,
	'browser: a payload that is not JSON is not sent');
is(sql("SELECT payload->>'fault' FROM batch.items WHERE id = $bob_item"), '400', '... and nothing changed');

webdriver('DELETE', '');
$sid = '';
kill('TERM', $wd_pid);
waitpid($wd_pid, 0);

# the database server restarts: the sessions end (their connections are
# gone), and signing in again works
my ($r1, $ann2) = sign_in('ann', 'ann-secret');
$node->restart;
my $status = 0;
for (1 .. 100)
{
	$status = $http->get("$base/batch?id=$ann_batch", { headers => { Cookie => "pgbatch_session=$ann2" } })->{status};
	last if $status == 303;
	usleep(200_000);
}
is($status, 303, 'after the database restarts, the session has ended');
my ($r2, $ann3) = sign_in('ann', 'ann-secret');
ok(defined $ann3, '... and ann signs in again');
like($http->get("$base/batch?id=$ann_batch", { headers => { Cookie => "pgbatch_session=$ann3" } })->{content},
	qr/3 of 3 completed/, '... and sees her batch');

# a signed-in session with no page open still reads its notifications (21
# MB of them): a listening connection nobody reads would leave its server
# process stuck writing them, and hold back the server's notification queue
sql(q{SELECT count(pg_notify('pgbatch_events', g || repeat('x', 7000))) FROM generate_series(1, 3000) g});
is( wait_for($node,
		q{SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgbatch serve' AND wait_event = 'ClientWrite'},
		'0', 60),
	'0',
	'its server process is not stuck writing notifications nobody reads');

kill('TERM', $serve_pid);
waitpid($serve_pid, 0);
is($? >> 8, 0, 'pgbatch serve stops on SIGTERM');
like(slurp_file($serve_out), qr/signed in: role "ann"/, 'the sign-ins are logged');

done_testing();
