
# 004_http_pipeline.pl
#
# Tests the background executors running a 4-stage HTTP pipeline against the
# fault-injecting fake API (test/fake_api.py), with no batch.run() call.
#
# The pipeline outline -> draft -> voice -> seo calls four paths of the fake
# API through one endpoint with max_concurrency 4.  outline and voice build
# their request bodies with a body function that copies the item's fault for
# that stage (payload.faults.<stage>) into the body's "fault" field; draft and
# seo send the default body {"payload", "outputs"} (the payload's "faults" is
# an object, so the fake API does not take it as a fault).  1,000 items:
#   - 50 (every 20th) meet one transient fault at outline or voice: 503, 429
#     with Retry-After: 1, 504, a connection reset, 500 (fault counts "x1"
#     are kept by the fake API per Idempotency-Key, so the retry succeeds);
#   - item 7 meets 429 with Retry-After: 2 at outline;
#   - 8 items meet a permanent fault (400, 401, a 200 that is not JSON, 404)
#     at outline or voice.
# Checked, once the batch has finished (bounded wait):
#   - the executors show in pg_stat_activity and batch.workers;
#   - every item without a permanent fault completed; the 8 others are in
#     batch.review_queue at the right stage with error codes http_400,
#     http_401, invalid_response, http_404, after one attempt;
#   - per Idempotency-Key (the fake API's request log): exactly the keys
#     pgbatch-<sysid>-<dboid>-<item id>-<stage position> of the stages each
#     item reached, each requested 1 + (its faults) times, so every retry
#     carried the same key; no request for a key after its first success;
#     permanent faults requested exactly once;
#   - every output records the key the fake API saw, and the last stage got
#     the earlier stages' outputs;
#   - the fake API never had more than 4 requests in flight;
#   - Retry-After: item 7's second request arrived at least 2 s after the
#     first response (fake API clock), and its second attempt started at
#     least 2 s after the first finished (batch.attempts); likewise 1 s for
#     the "ra=1" items;
#   - batch.attempts has the HTTP details: http_status, response_size and
#     response_sha256 of every answered attempt, the body of failed answers;
#     retries are recorded as 'retry' with the right error code;
#   - items waiting out an endpoint pause spent no attempt;
#   - the endpoint ends with nothing in flight and its circuit closed;
#   - batch.workers counts one request per attempt;
#   - a request whose connection was reset is either recorded as an attempt
#     (error_code connection) or, when the connection was a reused
#     keep-alive one, sent once more by libcurl on a new connection within
#     the same attempt (documented; same Idempotency-Key).
# Nothing is asserted about speed.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_worker_node start_fake_api stop_fake_api fake_api_get
  fake_api_json wait_for sql);
use PostgreSQL::Test::Utils;
use Test::More;

my $NITEMS = 1000;

my $node = new_worker_node('http_pipeline');
# every answer takes 10 ms, so that requests overlap at the fake API
my $api = start_fake_api(args => [ '--latency-ms', '10' ]);
my $port = $api->{port};


sql(qq{
CREATE EXTENSION pgbatch;
CREATE SCHEMA app;

SELECT batch.create_endpoint('fake', 'http://127.0.0.1:$port',
	max_concurrency => 4, timeout => '20 s');

-- request bodies of the stages that inject faults
CREATE FUNCTION app.outline_body(payload jsonb, outputs jsonb) RETURNS jsonb
LANGUAGE sql AS \$\$
	SELECT jsonb_build_object('n', payload -> 'n', 'topic', payload -> 'topic',
							  'fault', payload -> 'faults' -> 'outline')
\$\$;
CREATE FUNCTION app.voice_body(payload jsonb, outputs jsonb) RETURNS jsonb
LANGUAGE sql AS \$\$
	SELECT jsonb_build_object('n', payload -> 'n',
							  'draft_key', outputs -> 'draft' -> 'idempotency_key',
							  'fault', payload -> 'faults' -> 'voice')
\$\$;

SELECT batch.create_pipeline('article', '[
	{"name": "outline", "http": {"endpoint": "fake", "method": "POST", "path": "/v1/outline",
								 "body": "app.outline_body"}},
	{"name": "draft",   "http": {"endpoint": "fake", "method": "POST", "path": "/v1/draft"}},
	{"name": "voice",   "http": {"endpoint": "fake", "method": "POST", "path": "/v1/voice",
								 "body": "app.voice_body"}},
	{"name": "seo",     "http": {"endpoint": "fake", "method": "POST", "path": "/v1/seo"}}]',
	retry => '{"max_retries": 3, "backoff_base": "200 ms", "backoff_factor": 2,
			   "backoff_max": "2 s", "jitter": 0.2}');

-- the faults: item n meets fault (a fake API fault spec) at stage; a
-- permanent one fails the item with error_code
CREATE TABLE app.faults (n integer PRIMARY KEY, stage text NOT NULL, fault text NOT NULL,
	transient boolean NOT NULL, error_code text);
INSERT INTO app.faults
SELECT g, CASE WHEN (g / 20) % 2 = 0 THEN 'outline' ELSE 'voice' END,
	   (ARRAY['503x1', '429:ra=1x1', '504x1', 'resetx1', '500x1'])[(g / 20) % 5 + 1],
	   true, NULL
FROM generate_series(20, $NITEMS, 20) g;
INSERT INTO app.faults VALUES
	(7, 'outline', '429:ra=2x1', true, NULL),
	(13, 'outline', '400', false, 'http_400'),
	(33, 'outline', '401', false, 'http_401'),
	(53, 'outline', 'badjson', false, 'invalid_response'),
	(73, 'outline', '404', false, 'http_404'),
	(113, 'voice', '400', false, 'http_400'),
	(133, 'voice', '401', false, 'http_401'),
	(153, 'voice', 'badjson', false, 'invalid_response'),
	(173, 'voice', '404', false, 'http_404');

CREATE TABLE app.stage_pos (stage text PRIMARY KEY, pos integer NOT NULL);
INSERT INTO app.stage_pos VALUES ('outline', 1), ('draft', 2), ('voice', 3), ('seo', 4);
});

my $sysid = sql(q{SELECT system_identifier FROM pg_control_system()});
my $dboid = sql(q{SELECT oid FROM pg_database WHERE datname = current_database()});
my $key_prefix = "pgbatch-$sysid-$dboid-";

# ==== the executors are there

is( wait_for($node, q{SELECT count(*) FROM pg_stat_activity
		WHERE backend_type = 'pgbatch executor' AND datname = 'postgres'
		AND wait_event_type = 'Extension'}, '2', 30),
	'2', 'two executors wait in pg_stat_activity (wait_event_type Extension)');
is( sql(q{SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pgbatch launcher'}),
	'1', 'the launcher runs');
is( sql(q{SELECT count(*), count(*) FILTER (WHERE w.pid IN
		(SELECT pid FROM pg_stat_activity WHERE backend_type = 'pgbatch executor'))
		FROM batch.workers w}),
	'2|2', 'batch.workers lists the two executors');

# ==== submit: the executors run it without batch.run()

my $bid = sql(qq{
SELECT batch.submit('article',
	(SELECT jsonb_agg(jsonb_build_object('n', g, 'topic', 'Topic ' || g,
		'faults', coalesce((SELECT jsonb_build_object(f.stage, f.fault)
							FROM app.faults f WHERE f.n = g), '{}'))
		ORDER BY g)
	 FROM generate_series(1, $NITEMS) g),
	name => 'articles');
});

my $nperm = sql(q{SELECT count(*) FROM app.faults WHERE NOT transient});
my $ndone = $NITEMS - $nperm;
is( wait_for($node, qq{SELECT status, completed, failed, pending, running
		FROM batch.progress WHERE id = $bid}, "partial|$ndone|$nperm|0|0", 100),
	"partial|$ndone|$nperm|0|0",
	'the batch finishes: all but the permanently failing items complete');

is( sql(qq{SELECT count(*) FROM batch.items i
		WHERE i.batch_id = $bid AND i.status = 'completed'
		AND NOT EXISTS (SELECT FROM app.faults f
						WHERE f.n = (i.payload ->> 'n')::integer AND NOT f.transient)}),
	$ndone, 'every item without a permanent fault completed, transient faults included');

is( sql(qq{SELECT string_agg(concat_ws('|', r.payload ->> 'n', r.stage, r.error_code, r.attempts),
					 ',' ORDER BY (r.payload ->> 'n')::integer)
		FROM batch.review_queue r WHERE r.batch_id = $bid}),
	sql(q{SELECT string_agg(concat_ws('|', n, stage, error_code, 1), ',' ORDER BY n)
		FROM app.faults WHERE NOT transient}),
	'review_queue: each permanent fault, at its stage, with its error code, after one attempt');

is( sql(qq{SELECT count(*) FROM batch.items WHERE batch_id = $bid AND status = 'completed'
		AND (stage <> 'seo' OR attempt <> 1)}),
	'0', 'completed items ended at seo on its first attempt (waiting out a pause spends no retry)');

# ==== the fake API's view, per Idempotency-Key

my $stats = fake_api_get($api, '/_stats?keys=1');
die 'unexpected $fake$ in the stats' if $stats =~ /\$fake\$/;
sql(qq{CREATE TABLE app.fake_stats AS SELECT \$fake\$$stats\$fake\$::jsonb AS s});
sql(qq{
CREATE TABLE app.fake_keys AS
SELECT k.key, (k.value ->> 'n')::integer AS n, k.value -> 'requests' AS requests
FROM app.fake_stats, jsonb_each(s -> 'keys') k;

-- the keys expected: item n's stages up to where it ended, with the number
-- of requests each should have had (1, or 2 for a stage with one transient
-- fault)
CREATE TABLE app.expected_keys AS
SELECT format('pgbatch-%s-%s-%s-%s', (SELECT system_identifier FROM pg_control_system()),
			  (SELECT oid FROM pg_database WHERE datname = current_database()),
			  i.id, sp.pos) AS key,
	   (i.payload ->> 'n')::integer AS item_n, i.id AS item_id, sp.stage, sp.pos,
	   1 + coalesce(f.transient AND f.stage = sp.stage, false)::integer AS n,
	   f.fault
FROM batch.items i
LEFT JOIN app.faults f ON f.n = (i.payload ->> 'n')::integer
JOIN app.stage_pos sp ON sp.pos <= coalesce((SELECT p2.pos FROM app.stage_pos p2
											WHERE p2.stage = f.stage AND NOT f.transient), 4)
WHERE i.batch_id = $bid;
});

is( sql(q{SELECT count(*), sum(n) FROM app.expected_keys}),
	sql(q{SELECT count(*), sum(n) FROM app.fake_keys}),
	'as many keys and requests as expected');
is( sql(q{SELECT count(*) FROM app.expected_keys e FULL JOIN app.fake_keys k USING (key)
		WHERE e.n IS DISTINCT FROM k.n}),
	'0',
	'one Idempotency-Key per item and stage, requested 1 + (its transient faults) times');
is( sql(q{SELECT count(*) FROM app.fake_keys k WHERE k.key NOT LIKE 'pgbatch-%'}),
	'0', 'every request carried an Idempotency-Key');
is( sql(q{SELECT string_agg(e.item_n || ':' || k.n, ',' ORDER BY e.item_n)
		FROM app.expected_keys e JOIN app.fake_keys k USING (key)
		JOIN app.faults f ON f.n = e.item_n AND f.stage = e.stage AND NOT f.transient}),
	'13:1,33:1,53:1,73:1,113:1,133:1,153:1,173:1',
	'each permanent fault was requested exactly once');

# a request after the first success of a key (status 200 that was not the
# badjson fault) would be a duplicate
is( sql(q{
SELECT count(*)
FROM app.fake_keys k
JOIN app.expected_keys e USING (key)
CROSS JOIN LATERAL (
	SELECT min(r.i) AS first_ok
	FROM jsonb_array_elements(k.requests) WITH ORDINALITY r(a, i)
	WHERE (r.a ->> 1)::integer = 200) ok
CROSS JOIN LATERAL jsonb_array_elements(k.requests) WITH ORDINALITY r(a, i)
WHERE r.i > ok.first_ok}),
	'0', 'no item and stage was requested again after its success');
is( sql(q{
SELECT count(*) FROM app.fake_keys k JOIN app.expected_keys e USING (key)
LEFT JOIN app.faults f ON f.n = e.item_n AND f.stage = e.stage AND NOT f.transient
WHERE (k.requests -> -1 ->> 1)::integer IS DISTINCT FROM
	  CASE WHEN f.fault IN ('400', '401', '404') THEN f.fault::integer ELSE 200 END}),
	'0', 'the last request of every key got the answer that ended it');

# what the executors sent, as the fake API echoed it
is( sql(qq{SELECT count(*) FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
		JOIN app.stage_pos sp ON sp.stage = o.stage
		WHERE i.batch_id = $bid AND o.output ->> 'idempotency_key'
			= '$key_prefix' || i.id || '-' || sp.pos}),
	sql(q{SELECT count(*) FROM app.expected_keys e
		WHERE NOT EXISTS (SELECT FROM app.faults f
						  WHERE f.n = e.item_n AND f.stage = e.stage AND NOT f.transient)}),
	'every stage output echoes the Idempotency-Key pgbatch-<sysid>-<dboid>-<item>-<position>');
is( sql(qq{SELECT count(*) FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
		WHERE i.batch_id = $bid AND o.stage = 'seo'
		AND (SELECT array_agg(k ORDER BY k) FROM jsonb_object_keys(o.output -> 'request' -> 'outputs') k)
			= '{draft,outline,voice}'
		AND o.output -> 'request' -> 'payload' = i.payload}),
	$ndone, 'the default body carries the payload and the earlier stages\' outputs');
is( sql(qq{SELECT count(*) FROM batch.outputs o JOIN batch.items i ON i.id = o.item_id
		WHERE i.batch_id = $bid AND o.stage = 'voice'
		AND o.output -> 'request' ->> 'draft_key' = '$key_prefix' || i.id || '-2'}),
	$ndone, 'a body function sees the earlier stages\' outputs');

# ==== concurrency

my $s = fake_api_json($api, '/_stats?keys=0');
note "fake API: $s->{total} requests, at most $s->{max_in_flight} in flight, "
  . "$s->{connections_opened} connections";
cmp_ok($s->{max_in_flight}, '<=', 4, 'never more than max_concurrency (4) requests in flight');
cmp_ok($s->{max_in_flight}, '>=', 2, 'requests did run concurrently');
is( sql(q{SELECT in_flight, circuit FROM batch.endpoint_status WHERE name = 'fake'}),
	'0|closed', 'the endpoint ends with nothing in flight and its circuit closed');

# ==== Retry-After

my $gaps = sql(q{
SELECT string_agg(format('%s:%s', e.item_n,
	(((k.requests -> 1 ->> 0)::float8 - (k.requests -> 0 ->> 2)::float8)
		>= substring(e.fault FROM 'ra=([0-9]+)')::float8)), ',' ORDER BY e.item_n)
FROM app.expected_keys e JOIN app.fake_keys k USING (key)
WHERE e.fault LIKE '429:ra=%' AND e.n = 2});
is( $gaps,
	join(',', map { "$_:t" } 7, grep { int($_ / 20) % 5 == 1 } map { $_ * 20 } 1 .. $NITEMS / 20),
	'fake API clock: each 429 retry arrived no earlier than Retry-After after the 429');
note 'item 7: second request '
  . sql(q{SELECT round(((k.requests -> 1 ->> 0)::float8 - (k.requests -> 0 ->> 2)::float8)::numeric, 3)
	FROM app.expected_keys e JOIN app.fake_keys k USING (key) WHERE e.item_n = 7 AND e.pos = 1})
  . ' s after the first answer';
is( sql(qq{SELECT bool_and(a2.started_at >= a1.finished_at + interval '2 s'), count(*)
		FROM batch.attempts a1 JOIN batch.attempts a2
			ON a2.item_id = a1.item_id AND a2.stage = a1.stage AND a2.attempt = 2
		JOIN batch.items i ON i.id = a1.item_id
		WHERE a1.batch_id = $bid AND a1.attempt = 1 AND (i.payload ->> 'n')::integer = 7}),
	't|1', 'batch.attempts: item 7 was not retried before Retry-After (2 s)');

# ==== batch.attempts: outcomes and HTTP details

is( sql(qq{
SELECT string_agg(x, ',' ORDER BY x) FROM (
	SELECT DISTINCT concat_ws(':', f.fault, a.attempt, a.outcome, a.error_code, a.http_status) AS x
	FROM batch.attempts a JOIN batch.items i ON i.id = a.item_id
	JOIN app.faults f ON f.n = (i.payload ->> 'n')::integer AND f.stage = a.stage
	WHERE a.batch_id = $bid AND f.fault <> 'resetx1') s}),
	join(',', sort(
		'400:1:failed:http_400:400', '401:1:failed:http_401:401',
		'404:1:failed:http_404:404', 'badjson:1:failed:invalid_response:200',
		'429:ra=1x1:1:retry:http_429:429', '429:ra=1x1:2:completed:200',
		'429:ra=2x1:1:retry:http_429:429', '429:ra=2x1:2:completed:200',
		'500x1:1:retry:http_500:500', '500x1:2:completed:200',
		'503x1:1:retry:http_503:503', '503x1:2:completed:200',
		'504x1:1:retry:http_504:504', '504x1:2:completed:200')),
	'attempts of the faulted stages: retry then completed, or failed, with code and HTTP status');
is( sql(qq{SELECT count(*) FROM batch.attempts a WHERE a.batch_id = $bid
		AND a.outcome = 'completed'
		AND (a.http_status IS DISTINCT FROM 200 OR a.response_sha256 !~ '^[0-9a-f]{64}\$'
			 OR a.response_size IS NULL OR a.response_size <= 0
			 OR a.response_body IS NOT NULL)}),
	'0', 'every completed attempt has http_status 200, response_size and response_sha256');
is( sql(qq{SELECT count(*) FROM batch.attempts a WHERE a.batch_id = $bid
		AND a.outcome = 'completed'}),
	sql(q{SELECT count(*) FROM app.expected_keys e
		WHERE NOT EXISTS (SELECT FROM app.faults f
						  WHERE f.n = e.item_n AND f.stage = e.stage AND NOT f.transient)}),
	'one completed attempt per item and stage reached');
is( sql(qq{SELECT count(*) FROM batch.attempts a WHERE a.batch_id = $bid
		AND a.outcome <> 'completed' AND a.http_status IS NOT NULL
		AND (a.response_sha256 IS NULL OR a.response_body IS NULL
			 OR a.response_body NOT LIKE '%fake_api injected fault%' AND a.error_code <> 'invalid_response')}),
	'0', 'failed answers keep their status, sha256 and body');
is( sql(qq{SELECT count(*) FROM batch.attempts a WHERE a.batch_id = $bid
		AND a.outcome <> 'completed' AND a.http_status IS NULL
		AND a.error_code IS DISTINCT FROM 'connection'}),
	'0', 'attempts without an HTTP answer are connection errors');
# Every request the fake API received should be one attempt of pgbatch.  A
# connection reset on a reused keep-alive connection is resent by libcurl on
# a new connection without pgbatch knowing, so those requests have no attempt.
my $missing = sql(qq{
SELECT count(*), coalesce(string_agg(e.item_n || '/' || e.stage, ' ' ORDER BY e.item_n), '')
FROM app.expected_keys e JOIN app.fake_keys k USING (key)
WHERE k.n <> (SELECT count(*) FROM batch.attempts a
			  WHERE a.item_id = e.item_id AND a.stage = e.stage)});
note "keys whose requests outnumber their attempts: $missing";
is( sql(qq{
SELECT count(*) FROM app.expected_keys e JOIN app.fake_keys k USING (key)
WHERE e.fault IS DISTINCT FROM 'resetx1'
AND k.n <> (SELECT count(*) FROM batch.attempts a
			WHERE a.item_id = e.item_id AND a.stage = e.stage)}),
	'0', 'apart from connection resets, every request is one recorded attempt');
is( sql(qq{
SELECT count(*) FROM app.expected_keys e JOIN app.fake_keys k USING (key)
WHERE e.fault = 'resetx1'
AND k.n NOT IN ((SELECT count(*) FROM batch.attempts a
				 WHERE a.item_id = e.item_id AND a.stage = e.stage),
				(SELECT count(*) + 1 FROM batch.attempts a
				 WHERE a.item_id = e.item_id AND a.stage = e.stage))}),
	'0', 'a reset request is its own attempt, or re-sent once by libcurl on a new connection');

# each executor counts the requests it sent and got an answer or error for:
# one per attempt (no executor restarted during the test)
is( sql(qq{SELECT (SELECT sum(requests) FROM batch.workers),
		(SELECT count(*) FROM batch.attempts WHERE batch_id = $bid),
		(SELECT sum(in_flight) FROM batch.workers)}),
	sql(qq{SELECT count(*), count(*), 0 FROM batch.attempts WHERE batch_id = $bid}),
	'batch.workers: requests add up to the attempts, nothing in flight at the end');

stop_fake_api($api);
$node->stop;
done_testing();
