
# 022_provider_limits.pl
#
# Limits as LLM providers set them, emulated by the fake API (?rl_requests=,
# ?rl_tpm=, ?rl_style=: see test/fake_api.md), which answers 429 to what is
# over them:
#
# 1. The provider's rate-limit headers, in each dialect pgbatch reads
#    (OpenAI, Anthropic, the IETF draft's RateLimit in its structured and its
#    draft-07 form, RateLimit-Remaining/-Reset, X-RateLimit-* with a Unix
#    time): 10 requests a second, 40 items, 8 at once, no rate_limit set.
#    pgbatch slows down before the limit: no 429 at all.  The same limit
#    without headers is met with 429s (so it is the headers that help).
# 2. tokens_per_minute: the provider allows 12,000 tokens a minute and each
#    request uses 100 (its body asks for max_tokens 90).  With the endpoint's
#    tokens_per_minute at 12,000, 140 items meet no 429, and
#    endpoint_status.tokens_used counts the usage the responses reported.
#    Without it, the same items meet 429s.

use strict;
use warnings;

use FindBin;
use lib "$FindBin::RealBin/..";
use PgBatchTest qw(new_worker_node sql start_fake_api fake_api_json wait_batch_done);
use PostgreSQL::Test::Utils;
use PostgreSQL::Test::Cluster;
use Test::More;
use Time::HiRes qw(usleep);

my $api = start_fake_api();
my $url = $api->{url};
my $node = new_worker_node('limits', "pgbatch.poll_interval = '200ms'\n");
sql(q{CREATE EXTENSION pgbatch});

# limited(): the 429s the fake API has answered so far
sub limited
{
	return fake_api_json($api, '/_stats?keys=0')->{rate_limited};
}

# run($name, $path, $n, %endpoint): an endpoint and a one-stage pipeline
# calling $path, $n items with max_tokens 90; returns the batch's
# 'status completed failed' and the 429s it met
sub run
{
	my ($name, $path, $n, $settings) = @_;
	sql(qq{SELECT batch.create_endpoint('$name', '$url', max_concurrency => 8 $settings)});
	sql(qq{SELECT batch.create_pipeline('$name', '[{"name": "call", "http": {"endpoint": "$name", "path": "$path"}}]',
		retry => '{"max_retries": 50, "backoff_base": "200 ms", "backoff_max": "2 s"}')});
	my $before = limited();
	sql(qq{SELECT batch.submit('$name', (SELECT jsonb_agg(jsonb_build_object('n', i, 'max_tokens', 90))
		FROM generate_series(1, $n) i), name => '$name')});
	my $done = wait_batch_done($name, 90);
	return ($done, limited() - $before);
}

# 1. the provider's headers, in every dialect
for my $style (qw(openai anthropic ietf ietf7 legacy epoch))
{
	my ($done, $n429) = run("rl_$style", "/rl_$style?rl_requests=10&rl_window=1&rl_style=$style", 40, '');
	is($done, 'completed 40 0', "$style headers: all 40 items completed");
	is($n429, 0, "$style headers: no request was answered 429");
	like(sql(qq{SELECT provider_requests_left IS NOT NULL OR requests > 0 FROM batch.endpoint_status WHERE name = 'rl_$style'}),
		qr/t/, "$style headers: endpoint_status shows the endpoint");
}
my ($done, $n429) = run('rl_none', '/rl_none?rl_requests=10&rl_window=1&rl_style=none', 40, '');
is($done, 'completed 40 0', 'without headers: all 40 items completed (after retries)');
cmp_ok($n429, '>', 0, "without headers the same limit answered 429s ($n429)");

# 2. tokens per minute
($done, $n429) = run('tpm', '/tpm?rl_tpm=12000&usage=100&rl_style=none', 140, ', tokens_per_minute => 12000');
is($done, 'completed 140 0', 'tokens_per_minute: all 140 items completed');
is($n429, 0, 'tokens_per_minute: no request was answered 429');
is(sql(q{SELECT tokens_used FROM batch.endpoint_status WHERE name = 'tpm'}), '14000',
	'tokens_used counts the usage the responses reported (140 x 100)');

($done, $n429) = run('no_tpm', '/no_tpm?rl_tpm=12000&usage=100&rl_style=none', 140, '');
cmp_ok($n429, '>', 0, "without tokens_per_minute the same token limit answered 429s ($n429)");

$node->stop;
done_testing();
