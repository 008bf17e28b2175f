
# 016_security_attacks.pl
#
# The attacks of the adversarial review of pgbatch 1.3, each a real attempt
# that must be refused or harmless (every one of them worked on 1.3).  Two
# operator teams (team_a, team_b) share a database with an admin (boss).
#
# Node 1: pgbatch preloaded with two executors, and pg_cron.
#  1. Identity inside an executor.  A stage function that schedules a
#     submission gets a pg_cron job of the batch's owner, never of the
#     superuser the executors connect as; that job's query cannot read the
#     endpoints' headers, and nobody else may run it.  One step removed: a
#     stage of the admin's batch writes into a team's table whose trigger
#     schedules a job: the job belongs to the role in effect (the trigger's
#     owner if it is SECURITY DEFINER, else the admin), never the superuser.
#  2. Another team's schedules.  A stage of team_b cannot unschedule team_a's
#     submission, nor schedule retries of team_a's batch.
#  3. The tables.  An operator writes no pgbatch table directly: not the
#     endpoints' headers (CR LF smuggling, Host), not items (oversized,
#     into a cancelled batch), attempts, outputs, events or counters; and it
#     may not call the implementations behind the API.
#  4. Headers.  Through the API: CR LF, Host, Content-Length,
#     Transfer-Encoding, Connection, and a base_url with user:password@ are
#     refused.  A bad header already in the table (written before 1.4) is
#     checked again when the request is built: the item fails with
#     invalid_header and the API never sees a request.
#  5. Endpoint slots.  Endpoints created, used and dropped over and over
#     give their shared-memory slot back: pgbatch.max_endpoints (8) is not
#     used up, and a new endpoint still works.
#  6. Secrets in answers.  An API echoes the endpoint's headers JSON-escaped
#     (\/), as \uXXXX, or percent-encoded, in a 200 and in a 400: no form of
#     a key (of eight characters, or of four) is stored; a redirect to
#     another origin is refused (redirect_refused) before the headers go
#     there; a 2xx body that is not valid UTF-8 fails its item
#     (invalid_response) and stores no output.
#  7. A session-level advisory lock a stage takes in an executor is released
#     when the stage ends.
#
# Node 2: pg_cron only, so no executor serves it and batch.run() sends HTTP
# requests itself.
#  8. An admin's batch.run() over a team's batch runs the team's stage as the
#     team: a job that stage schedules belongs to the team, not the admin.
#  9. The search_path trick: an operator's own jsonb_each_text() first in
#     search_path never runs while batch.run() reads the endpoints (with
#     their headers) as the extension's owner, and the old batch._run() is
#     gone.
# 10. Another team's key: team_b cannot submit to an admin's pipeline built
#     on team_a's endpoint until team_a grants it; once team_a revokes it,
#     team_b's waiting item fails unsent (the API never sees it).
# 11. A replaced stage function: team_a replaces the function of an admin's
#     pipeline; team_b's item fails instead of running the new code as
#     team_b, until an admin approves it (batch.refresh_pipeline).
#
# (Terminal injection through the pgbatch command is attacked in
# 011_cli.pl, section 6, next to the command's other tests.)
#
# Node 3: one executor.
# 12. Owners take turns: one team's slow stages do not hold the executor
#     while another team's item waits.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_node new_worker_node start_fake_api stop_fake_api fake_api_json
  wait_for sql);
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);

my $api = start_fake_api();

# roles and a stage function that runs the SQL its payload carries, as the
# batch's owner: the owner's own code, whatever it is
my $CRON = q{
CREATE EXTENSION pg_cron;
GRANT USAGE ON SCHEMA cron TO pgbatch_operator;
};
my $SETUP = qq{
CREATE EXTENSION pgbatch;
CREATE ROLE team_a LOGIN IN ROLE pgbatch_operator;
CREATE ROLE team_b LOGIN IN ROLE pgbatch_operator;
CREATE ROLE boss LOGIN IN ROLE pgbatch_admin;
CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO PUBLIC;
CREATE FUNCTION app.act(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS \$\$
DECLARE
	r text;
BEGIN
	EXECUTE p ->> 'sql' INTO r;
	RETURN jsonb_build_object('user', current_user, 'r', r);
END \$\$;
SELECT batch.create_pipeline('act', '[{"name": "act", "sql": "app.act"}]',
	retry => '{"max_retries": 0}');
SELECT batch.create_endpoint('api', '$api->{url}',
	headers => '{"Authorization": "Bearer sk-team-secret-000111"}');
SELECT batch.create_pipeline('call', '[{"name": "call", "http": {"endpoint": "api", "path": "/v1/ok"}}]',
	retry => '{"max_retries": 0}');
};

# as($node, $role, $sql): runs $sql as $role; returns (rc, stdout, stderr)
sub as
{
	my ($node, $role, $query) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "SET ROLE $role;\n$query",
		timeout => $PgBatchTest::TIMEOUT);
	return ($rc, $out, $err);
}

# item($name): "status:error_code" (or "status:output") of a one-item batch
sub item
{
	my ($name) = @_;
	return sql(qq{SELECT i.status || ':' || coalesce(i.error_code, o.output ->> 'r', '')
		FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id
		LEFT JOIN batch.outputs o ON o.item_id = i.id WHERE b.name = '$name'});
}

# finished($node, @names): waits until those batches have finished
sub finished
{
	my ($node, @names) = @_;
	my $list = join(',', map { "'$_'" } @names);
	return wait_for($node,
		"SELECT count(*) FROM batch.progress WHERE name IN ($list) AND pending + running = 0",
		scalar(@names), 60);
}

my $node = new_worker_node('attacks',
	"shared_preload_libraries = 'pgbatch,pg_cron'\n"
	  . "cron.database_name = 'postgres'\n"
	  . "pgbatch.max_endpoints = 8\n");
sql($SETUP . $CRON);

# 1. identity inside an executor
as($node, 'team_a', q{
SELECT batch.submit('act', jsonb_build_array(jsonb_build_object('sql',
	$$SELECT batch.schedule_submit('a_steal', '0 0 1 1 *', 'act',
		'SELECT headers::text AS stolen FROM batch.endpoints')::text$$)), name => 'a_sched');
});
finished($node, 'a_sched');
like(item('a_sched'), qr/^completed:\d+$/, 'a stage function in an executor schedules a submission');
is(sql(q{SELECT string_agg(j.username, ',') FROM cron.job j
	JOIN batch.schedules s ON j.jobname = 'pgbatch_submit_' || s.id WHERE s.name = 'a_steal'}),
	'team_a', '... as a pg_cron job of the batch owner, not of the superuser');
is(sql(q{SELECT owner FROM batch.schedules WHERE name = 'a_steal'}), 'team_a',
	'... and the schedule belongs to the owner');
my $sid = sql(q{SELECT id FROM batch.schedules WHERE name = 'a_steal'});
my ($rc, $out, $err) = as($node, 'team_a', "SELECT batch.run_schedule($sid)");
like($err, qr/permission denied for table endpoints/,
	"the job's query runs as the owner and cannot read the endpoints' headers");
($rc, $out, $err) = $node->psql('postgres', "SELECT batch.run_schedule($sid)");
like($err, qr/scheduled submission $sid belongs to role "team_a"/,
	'a superuser cannot run it for the owner either');

# ... one step removed: a team's table with a trigger that schedules a job,
# written by a stage of the admin's batch
sql(q{
CREATE TABLE app.inbox (n int);
ALTER TABLE app.inbox OWNER TO team_a;
GRANT INSERT ON app.inbox TO boss;
CREATE TABLE app.inbox_definer (n int);
ALTER TABLE app.inbox_definer OWNER TO team_a;
GRANT INSERT ON app.inbox_definer TO boss;
CREATE FUNCTION app.inbox_trigger() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
	PERFORM batch.schedule_run('0 0 1 1 *');
	RETURN NEW;
END $$;
ALTER FUNCTION app.inbox_trigger() OWNER TO team_a;
CREATE FUNCTION app.inbox_definer_trigger() RETURNS trigger LANGUAGE plpgsql
SECURITY DEFINER SET search_path = pg_catalog AS $$
BEGIN
	PERFORM batch.schedule_run('0 0 1 1 *');
	RETURN NEW;
END $$;
ALTER FUNCTION app.inbox_definer_trigger() OWNER TO team_a;
CREATE TRIGGER inbox AFTER INSERT ON app.inbox FOR EACH ROW EXECUTE FUNCTION app.inbox_trigger();
CREATE TRIGGER inbox AFTER INSERT ON app.inbox_definer FOR EACH ROW
	EXECUTE FUNCTION app.inbox_definer_trigger();
});
as($node, 'boss', q{
SELECT batch.submit('act', '[{"sql": "INSERT INTO app.inbox_definer VALUES (1) RETURNING 1"},
	{"sql": "INSERT INTO app.inbox VALUES (1) RETURNING 1"}]', name => 'boss_b');
});
finished($node, 'boss_b');
is(sql(q{SELECT string_agg(username, ',' ORDER BY username) FROM cron.job WHERE jobname = 'pgbatch_run'}),
	'boss,team_a',
	"a trigger the admin's stage fires schedules as the role in effect (its SECURITY DEFINER owner, or the admin), never the superuser");
is(sql(q{SELECT count(*) FROM cron.job j JOIN pg_roles r ON r.rolname = j.username WHERE r.rolsuper}),
	'0', 'no pg_cron job of a superuser exists');

# 2. another team's schedules, from an executor
as($node, 'team_a', q{SELECT batch.submit('act', '[{"sql": "SELECT 1"}]', name => 'a_batch')});
finished($node, 'a_batch');
as($node, 'team_b', q{
SELECT batch.submit('act', $$[{"sql": "SELECT batch.unschedule_submit('a_steal')::text"}]$$, name => 'b_unsched');
SELECT batch.submit('act', $$[{"sql": "SELECT batch.schedule_retry('a_batch')::text"}]$$, name => 'b_retry');
});
finished($node, 'b_unsched', 'b_retry');
is(item('b_unsched') . ' ' . item('b_retry'), 'failed:undefined_object failed:undefined_object',
	"a stage of team_b can neither unschedule team_a's submission nor schedule retries of its batch");
is(sql(q{SELECT count(*) FROM batch.schedules WHERE name = 'a_steal'}), '1',
	"... team_a's schedule is still there");
is(sql(q{SELECT count(*) FROM cron.job WHERE jobname LIKE 'pgbatch_retry_%'}), '0',
	'... and no retry job was made');

# 3. the tables
my $a_batch = sql(q{SELECT id FROM batch.batches WHERE name = 'a_batch'});
my $a_item = sql(qq{SELECT id FROM batch.items WHERE batch_id = $a_batch});
as($node, 'team_a', q{SELECT batch.cancel('a_batch')});
for my $attack (
	[ q{UPDATE batch.endpoints SET headers = '{"X-A": "1\r\nHost: evil.example"}' WHERE name = 'api'},
		'CR LF smuggled into an endpoint header' ],
	[ q{UPDATE batch.endpoints SET base_url = 'http://127.0.0.1:1'}, 'an endpoint moved' ],
	[ qq{INSERT INTO batch.items (batch_id, payload, stage) VALUES ($a_batch, '{}', 'act')},
		'an item inserted into a cancelled batch' ],
	[ qq{INSERT INTO batch.items (batch_id, payload, stage)
		VALUES ($a_batch, jsonb_build_object('x', repeat('x', 2000000)), 'act')},
		'an item over pgbatch.max_payload_size' ],
	[ qq{UPDATE batch.items SET status = 'pending' WHERE id = $a_item}, 'an item re-queued by hand' ],
	[ qq{INSERT INTO batch.attempts (batch_id, item_id, stage, attempt, outcome, started_at, finished_at)
		VALUES ($a_batch, $a_item, 'act', 9, 'completed', now(), now())}, 'a forged attempt' ],
	[ qq{INSERT INTO batch.outputs (item_id, stage, output) VALUES ($a_item, 'x', '{}')},
		'a forged output' ],
	[ qq{INSERT INTO batch.events (batch_id, level, event, message) VALUES ($a_batch, 'info', 'x', 'y')},
		'a forged event' ],
	[ qq{DELETE FROM batch.events WHERE batch_id = $a_batch}, 'history deleted' ],
	[ qq{UPDATE batch.counters SET completed = 1000 WHERE batch_id = $a_batch}, 'counters changed' ],
	[ q{INSERT INTO batch.schedules (name, pipeline, schedule, query, owner)
		VALUES ('x', 'act', '* * * * *', 'SELECT 1', 'postgres')}, 'a schedule of the superuser' ])
{
	($rc, $out, $err) = as($node, 'team_a', $attack->[0]);
	like($err, qr/permission denied for table/, "an operator cannot write: $attack->[1]");
}
for my $internal (
	q{SELECT batch_internal.submit('postgres', 'act', '[{}]', 'forged')},
	q{SELECT batch_internal.query_rows('postgres', 'SELECT 1')},
	q{SELECT batch_internal.cron_schedule('postgres', 'x', '* * * * *', 'SELECT 1')},
	q{SELECT * FROM batch._run(NULL, NULL, NULL)},
	qq{SELECT batch._run_schedule($sid)})
{
	($rc, $out, $err) = as($node, 'team_b', $internal);
	like($err, qr/permission denied for schema batch_internal|function batch\._run(_schedule)?\(.* does not exist/,
		"an operator cannot call the implementation behind the API: $internal");
}
is(sql(q{SELECT headers ->> 'Authorization' FROM batch.endpoints WHERE name = 'api'}),
	'Bearer sk-team-secret-000111', 'the endpoint is untouched');

# 4. headers, through the API and at send time
for my $bad (
	[ q{headers => '{"X-A": "1\r\nHost: evil.example"}'}, qr/must not hold line breaks/ ],
	[ q{headers => '{"Host": "evil.example"}'}, qr/set this header themselves/ ],
	[ q{headers => '{"Content-Length": "0"}'}, qr/set this header themselves/ ],
	[ q{headers => '{"Transfer-Encoding": "chunked"}'}, qr/set this header themselves/ ],
	[ q{headers => '{"Connection": "close"}'}, qr/set this header themselves/ ],
	[ q{base_url => 'http://user:secret@127.0.0.1:1'}, qr/must not hold a user name or password/ ])
{
	my $args = $bad->[0] =~ /^base_url/ ? $bad->[0] : "base_url => '$api->{url}', $bad->[0]";
	($rc, $out, $err) = as($node, 'team_a', "SELECT batch.create_endpoint('bad', $args)");
	like($err, $bad->[1], "the API refuses an endpoint with $bad->[0]");
}
sql(qq{
SELECT batch.create_endpoint('smuggle', '$api->{url}');
-- as if written before 1.4, past the API
UPDATE batch.endpoints SET headers = '{"X-A": "1\\r\\nX-Smuggled: 1"}' WHERE name = 'smuggle';
SELECT batch.create_pipeline('smuggle', '[{"name": "call", "http": {"endpoint": "smuggle", "path": "/v1/smuggled"}}]',
	retry => '{"max_retries": 0}');
});
as($node, 'team_a', q{SELECT batch.submit('smuggle', '[{"n": 1}]', name => 'a_smuggle')});
finished($node, 'a_smuggle');
is(item('a_smuggle'), 'failed:invalid_header',
	'a bad header already in the table fails the item with invalid_header');
my $requests = fake_api_json($api, '/_stats/requests?since=0&limit=10000')->{requests};
is(scalar(grep { $_->{path} eq '/v1/smuggled' } @$requests), 0, '... and the API never saw the request');

# 5. endpoint slots are given back
for my $i (1 .. 10)
{
	as($node, 'team_a', qq{SELECT batch.create_endpoint('tmp$i', '$api->{url}')});
	as($node, 'team_a', qq{SELECT batch.submit('call', '[{"n": $i}]', name => 'slot$i')});
	finished($node, "slot$i");
	as($node, 'team_a', qq{SELECT batch.drop_endpoint('tmp$i')});
}
is(sql(q{SELECT string_agg(DISTINCT status, ',') FROM batch.progress WHERE name LIKE 'slot%'}),
	'completed', 'ten endpoints created, used and dropped');
sql(qq{
SELECT batch.create_endpoint('late', '$api->{url}');
SELECT batch.create_pipeline('late', '[{"name": "call", "http": {"endpoint": "late", "path": "/v1/late"}}]',
	retry => '{"max_retries": 0}');
});
as($node, 'team_a', q{SELECT batch.submit('late', '[{"n": 1}]', name => 'a_late')});
finished($node, 'a_late');
like(item('a_late'), qr/^completed:/,
	'... and a new endpoint still gets a slot of pgbatch.max_endpoints (8)');

# 6. secrets in answers
my $api2 = start_fake_api();
# X-Api-Key: k3y/Sec+rét9"\~ (with characters that JSON escapes)
sql(qq{
SELECT batch.create_endpoint('echo', '$api->{url}', follow_redirects => true,
	headers => jsonb_build_object('X-Api-Key', convert_from('\\x6b33792f5365632b72c3a97439225c7e', 'UTF8'),
		'Authorization', 'Bearer abcd'));
SELECT batch.create_pipeline('echo_' || m, jsonb_build_array(jsonb_build_object('name', 'call',
	'http', jsonb_build_object('endpoint', 'echo', 'path', '/v1/echo?echo_headers=1&echo_escape=' || m))),
	retry => '{"max_retries": 0}')
FROM unnest(ARRAY['slash', 'unicode', 'percent']) m;
SELECT batch.create_pipeline('echo_away', jsonb_build_array(jsonb_build_object('name', 'call',
	'http', jsonb_build_object('endpoint', 'echo', 'path', '/redirect?to=$api2->{url}/stolen'))),
	retry => '{"max_retries": 0}');
SELECT batch.create_pipeline('echo_utf8', '[{"name": "call", "http": {"endpoint": "echo", "path": "/v1/x"}}]',
	retry => '{"max_retries": 0}');
});
as($node, 'team_a', q{
SELECT batch.submit('echo_' || m, '[{"n": 1}, {"n": 2, "fault": "400"}]', name => 'a_echo_' || m)
FROM unnest(ARRAY['slash', 'unicode', 'percent']) m;
SELECT batch.submit('echo_away', '[{"n": 1}]', name => 'a_away');
SELECT batch.submit('echo_utf8', '[{"n": 1, "fault": "badencoding"}]', name => 'a_utf8');
});
finished($node, 'a_echo_slash', 'a_echo_unicode', 'a_echo_percent', 'a_away', 'a_utf8');
is(sql(q{SELECT string_agg(i.status || ':' || coalesce(i.error_code, ''), ' ' ORDER BY b.name, i.id)
	FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id WHERE b.name LIKE 'a_echo_%'}),
	'completed: failed:http_400 completed: failed:http_400 completed: failed:http_400',
	'the API echoed the headers in three encodings, in a 200 and in a 400');
my $echoed = sql(q{SELECT string_agg(o.output::text, E'\n') FROM batch.outputs o
	JOIN batch.items i ON i.id = o.item_id JOIN batch.batches b ON b.id = i.batch_id
	WHERE b.name LIKE 'a_echo_%'})
  . "\n" . sql(q{SELECT string_agg(a.response_body, E'\n') FROM batch.attempts a
	JOIN batch.batches b ON b.id = a.batch_id WHERE b.name LIKE 'a_echo_%'});
like($echoed, qr/x-api-key/, 'the stored answers hold the echoed headers');
for my $form ('k3y', 'r\x{e9}t9', 'r\\u00e9t9', '\\u006b\\u0033', '%6B%33%79', 'abcd', '\\u0061\\u0062', '%61%62')
{
	my $re = $form;
	utf8::encode($re);
	unlike($echoed, qr/\Q$re\E/, "no trace of the keys is stored: $form");
}
like($echoed, qr/Bearer \*{4}/, 'the scheme of the Authorization header stays, its 4-character key is masked');
is(item('a_away'), 'failed:redirect_refused',
	"a redirect to another origin is refused, the endpoint's headers being secrets");
is(fake_api_json($api2, '/_stats')->{total}, 0, '... and the other origin never got a request');
is(item('a_utf8'), 'failed:invalid_response', 'a 200 whose body is not valid UTF-8 fails its item');
is(sql(q{SELECT count(*) FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
	JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'a_utf8'}), '0', '... and stores no output');
stop_fake_api($api2);

# 7. session-level advisory locks of a stage
as($node, 'team_a', q{
SELECT batch.submit('act', '[{"sql": "SELECT pg_advisory_lock(4711)::text"}]', name => 'a_lock');
});
finished($node, 'a_lock');
is(item('a_lock'), 'completed:', 'a stage takes a session-level advisory lock in an executor');
is(sql(q{SELECT pg_try_advisory_lock(4711)}), 't', '... which is released when the stage ends');

$node->stop;

# node 2: no executors, so batch.run() sends HTTP requests itself
my $solo = new_node('attacks_solo',
	"shared_preload_libraries = 'pg_cron'\ncron.database_name = 'postgres'\n");
sql($SETUP . $CRON);

# 8. an admin's batch.run() runs the team's stage as the team
as($solo, 'team_a', q{
SELECT batch.submit('act', $$[{"sql": "SELECT batch.schedule_run('0 0 1 1 *')::text"}]$$, name => 'a_run');
});
($rc, $out, $err) = as($solo, 'boss', q{SELECT items_completed FROM batch.run('a_run')});
is($out, '1', "an admin runs a team's batch in its session");
is(sql(q{SELECT string_agg(username, ',') FROM cron.job WHERE jobname = 'pgbatch_run'}), 'team_a',
	"... and the job the team's stage schedules belongs to the team, not the admin");

# 9. the search_path trick
sql(q{
GRANT CREATE ON DATABASE postgres TO team_a;
});
as($solo, 'team_a', q{
CREATE SCHEMA evil;
CREATE TABLE evil.seen (who name);
GRANT INSERT ON evil.seen TO PUBLIC;
GRANT USAGE ON SCHEMA evil TO PUBLIC;
CREATE FUNCTION evil.jsonb_each_text(j jsonb, OUT key text, OUT value text) RETURNS SETOF record
LANGUAGE plpgsql AS $$
BEGIN
	INSERT INTO evil.seen VALUES (current_user);
	RETURN QUERY SELECT * FROM pg_catalog.jsonb_each_text(j);
END $$;
SELECT batch.submit('call', '[{"n": 1}]', name => 'a_http');
});
($rc, $out, $err) = as($solo, 'team_a', q{
SET search_path = evil, pg_catalog;
SELECT * FROM batch._run(NULL, NULL, NULL);
});
like($err, qr/function batch\._run\(unknown, unknown, unknown\) does not exist/,
	'the old batch._run() is gone');
($rc, $out, $err) = as($solo, 'team_a', q{
SET search_path = evil, pg_catalog;
SELECT items_completed FROM batch.run('a_http');
});
is($out, '1', "batch.run() with the operator's own schema first in search_path sends the request");
is(sql(q{SELECT count(*) FROM evil.seen}), '0',
	"... and the operator's jsonb_each_text() never ran");

# 10. another team's key
as($solo, 'team_a', qq{SELECT batch.create_endpoint('a_key', '$api->{url}',
	headers => '{"Authorization": "Bearer sk-team-a-999"}')});
sql(q{SELECT batch.create_pipeline('on_a_key', '[{"name": "call", "http": {"endpoint": "a_key", "path": "/v1/a_key"}}]',
	retry => '{"max_retries": 0}')});
($rc, $out, $err) = as($solo, 'team_b', q{SELECT batch.submit('on_a_key', '[{"n": 1}]', name => 'b_key')});
like($err, qr/role "team_b" may not use endpoint "a_key"/,
	"team_b cannot submit to a pipeline on team_a's endpoint");
as($solo, 'team_a', q{SELECT batch.grant_endpoint('a_key', 'team_b')});
($rc, $out, $err) = as($solo, 'team_b', q{SELECT batch.submit('on_a_key', '[{"n": 1}]', name => 'b_key')});
is($rc, 0, '... until team_a grants it');
as($solo, 'team_a', q{SELECT batch.revoke_endpoint('a_key', 'team_b')});
($rc, $out, $err) = as($solo, 'team_b', q{SELECT items_failed FROM batch.run('b_key')});
is(item('b_key'), 'failed:insufficient_privilege', '... and once revoked, its waiting item fails');
$requests = fake_api_json($api, '/_stats/requests?since=0&limit=100000')->{requests};
is(scalar(grep { $_->{path} eq '/v1/a_key' } @$requests), 0, '... unsent');

# 11. a replaced stage function
sql(q{
GRANT CREATE ON SCHEMA app TO team_a;
SET ROLE team_a;
CREATE FUNCTION app.a_fn(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('r', 'version 1 as ' || current_user) $$;
RESET ROLE;
SELECT batch.create_pipeline('a_fn', '[{"name": "f", "sql": "app.a_fn"}]', retry => '{"max_retries": 0}');
});
as($solo, 'team_a', q{
CREATE OR REPLACE FUNCTION app.a_fn(p jsonb, o jsonb) RETURNS jsonb LANGUAGE sql
AS $$ SELECT jsonb_build_object('r', 'version 2 as ' || current_user) $$;
});
as($solo, 'team_b', q{SELECT batch.submit('a_fn', '[{"n": 1}]', name => 'b_fn'); SELECT batch.run('b_fn')});
is(item('b_fn'), 'failed:insufficient_privilege',
	"team_a's replaced function does not run as team_b");
sql(q{SELECT batch.refresh_pipeline('a_fn')});
as($solo, 'team_b', q{SELECT batch.retry_failed('b_fn'); SELECT batch.run('b_fn')});
is(sql(q{SELECT o.output ->> 'r' FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
	JOIN batch.batches b ON b.id = i.batch_id WHERE b.name = 'b_fn'}), 'version 2 as team_b',
	'... until an admin approves it');

$solo->stop;

# node 3: one executor
# 12. Owners take turns: team_a's three slow items (a second each) do not
#     hold the only executor while team_b's item waits; it runs before
#     team_a's last one starts.
my $one = new_worker_node('attacks_one', "pgbatch.workers = 1\n");
sql($SETUP);
as($one, 'team_a', q{
SELECT batch.submit('act', '[{"sql": "SELECT pg_sleep(1)::text"}, {"sql": "SELECT pg_sleep(1)::text"},
	{"sql": "SELECT pg_sleep(1)::text"}]', name => 'a_slow');
});
usleep(300_000);
as($one, 'team_b', q{SELECT batch.submit('act', '[{"sql": "SELECT 1"}]', name => 'b_quick')});
finished($one, 'a_slow', 'b_quick');
is(sql(q{SELECT (SELECT min(a.started_at) FROM batch.attempts a JOIN batch.batches b ON b.id = a.batch_id
		WHERE b.name = 'b_quick')
	< (SELECT max(a.started_at) FROM batch.attempts a JOIN batch.batches b ON b.id = a.batch_id
		WHERE b.name = 'a_slow')}), 't',
	"team_b's item ran between team_a's slow ones, not after all of them");

stop_fake_api($api);
$one->stop;
done_testing();
