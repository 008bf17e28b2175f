/* demo/setup.sql - the demo's application side: an LLM endpoint, four request
 * builders and the pipeline that chains them.
 *
 * A fake SEO content shop plans 100 articles (app.articles).  Each goes
 * through four calls to an LLM chat-completions API -- outline -> draft ->
 * voice (brand-voice rewrite) -> seo (call to action and SEO metadata) --
 * run by pgbatch's background executors as HTTP stages.  The request
 * builders app.*_request(payload, outputs) turn an item and the earlier
 * stages' replies into OpenAI chat requests, so pointing the endpoint at a
 * real provider (base_url, a real key) needs no other change.
 *
 * In the demo the endpoint is test/fake_api.py, which answers in the OpenAI
 * shape and fails a request on purpose when a message carries a
 * [fault:SPEC] token (test/fake_api.md).  The builders add such tokens in
 * two cases only:
 *   - the item's payload has "fault": {"<stage>": "<spec>"}: the token goes
 *     into that stage's prompt (demo/submit.sql plans a few 429s and 504s);
 *   - the voice stage, for a topic that app.banned_topics bans: [fault:400],
 *     standing for the refusal of a prompt that breaks the brand guide.
 *     Lifting the ban is the demo's "fix the prompt".
 * A real provider would read the tokens as plain text.
 *
 * Run by demo/run.sh with psql -q -v api_url=http://127.0.0.1:PORT.
 */

CREATE EXTENSION pgbatch;
CREATE SCHEMA app;

-- The editorial plan: 100 articles, 25 subjects x 4 formats.
CREATE TABLE app.articles (
	n		integer PRIMARY KEY,
	key		text NOT NULL UNIQUE,
	topic	text NOT NULL
);
INSERT INTO app.articles (n, key, topic)
SELECT n, format('article-%s', lpad(n::text, 3, '0')),
	   format((ARRAY['A beginner''s guide to %s', '7 mistakes people make with %s',
					 'Is %s worth it?', 'Everything you wanted to know about %s'])
			  [(n - 1) % 4 + 1],
			  (ARRAY['standing desks', 'sourdough starters', 'home espresso',
					 'trail running shoes', 'indoor herb gardens', 'budget travel in Portugal',
					 'learning Rust', 'houseplant lighting', 'e-bike commuting',
					 'password managers', 'cold brew coffee', 'beginner woodworking',
					 'composting at home', 'mechanical keyboards', 'remote team rituals',
					 'meal prep for one', 'noise-cancelling headphones', 'bouldering',
					 'small business bookkeeping', 'aquarium cycling', 'heat pumps',
					 'birdwatching', 'home network security', 'fermenting vegetables',
					 'podcast microphones'])
			  [(n - 1) / 4 + 1])
FROM generate_series(1, 100) AS n;
UPDATE app.articles SET topic = 'Online casino bonuses explained' WHERE n = 55;
UPDATE app.articles SET topic = 'Hosting a casino night at home' WHERE n = 71;

-- What the brand guide does not let the voice stage write about.
CREATE TABLE app.banned_topics (
	term	text PRIMARY KEY,
	reason	text NOT NULL,
	active	boolean NOT NULL DEFAULT true
);
INSERT INTO app.banned_topics (term, reason) VALUES
	('casino', 'brand guide bans gambling');

/*
 * The [fault:...] tokens for an item's request at a stage (see the header):
 * the fault its payload plans for that stage, and a refusal at the voice
 * stage while its topic is banned.  Empty for every other request.
 */
CREATE FUNCTION app.fault_tokens(stage text, payload jsonb) RETURNS text
	LANGUAGE sql STABLE
	RETURN concat(' [fault:' || (payload -> 'fault' ->> stage) || ']',
				  CASE WHEN stage = 'voice' AND EXISTS (
						   SELECT FROM app.banned_topics b
						   WHERE b.active AND payload ->> 'topic' ILIKE '%' || b.term || '%')
					   THEN ' [fault:400]' END);

-- An OpenAI chat-completions request: a system and a user message.
CREATE FUNCTION app.chat(system_prompt text, user_prompt text, extra jsonb DEFAULT '{}')
	RETURNS jsonb
	LANGUAGE sql IMMUTABLE
	RETURN jsonb_build_object(
		'model', 'gpt-4o-mini',
		'temperature', 0.7,
		'messages', jsonb_build_array(
			jsonb_build_object('role', 'system', 'content', system_prompt),
			jsonb_build_object('role', 'user', 'content', user_prompt))) || extra;

-- The text of a chat completion that an earlier stage got back.
CREATE FUNCTION app.reply(outputs jsonb, stage text) RETURNS text
	LANGUAGE sql IMMUTABLE
	RETURN outputs -> stage -> 'choices' -> 0 -> 'message' ->> 'content';

/*
 * The request builders, one per stage: f(payload jsonb, outputs jsonb)
 * RETURNS jsonb, where outputs holds the earlier stages' outputs (here, the
 * API's JSON answers) by stage name.
 */
CREATE FUNCTION app.outline_request(payload jsonb, outputs jsonb) RETURNS jsonb
	LANGUAGE sql STABLE
	RETURN app.chat(
		'You are an SEO content strategist. Reply with a numbered outline of five '
		'sections, one line each, for the article the user names.',
		'Outline an article titled: ' || (payload ->> 'topic')
			|| app.fault_tokens('outline', payload));

CREATE FUNCTION app.draft_request(payload jsonb, outputs jsonb) RETURNS jsonb
	LANGUAGE sql STABLE
	RETURN app.chat(
		'You write for a home and hobby blog. Write the article in Markdown, about '
		'800 words, following the outline section by section.',
		'Title: ' || (payload ->> 'topic') || E'\n\nOutline:\n' || app.reply(outputs, 'outline')
			|| app.fault_tokens('draft', payload));

CREATE FUNCTION app.voice_request(payload jsonb, outputs jsonb) RETURNS jsonb
	LANGUAGE sql STABLE
	RETURN app.chat(
		'You are the brand editor. Rewrite the draft in our voice: warm, direct, '
		'second person, no hype. Keep every fact and the Markdown structure.',
		app.reply(outputs, 'draft') || app.fault_tokens('voice', payload));

CREATE FUNCTION app.seo_request(payload jsonb, outputs jsonb) RETURNS jsonb
	LANGUAGE sql STABLE
	RETURN app.chat(
		'You write calls to action and SEO metadata. Reply with a JSON object with '
		'the keys title (at most 60 characters), meta_description (at most 155), '
		'slug, keywords (five) and cta (one sentence).',
		'Title: ' || (payload ->> 'topic') || E'\n\nArticle:\n' || app.reply(outputs, 'voice')
			|| app.fault_tokens('seo', payload),
		'{"response_format": {"type": "json_object"}}');

-- The LLM API: at most 8 requests in flight and 6000 a minute, across both
-- executors; a request that takes over 10 s is a (transient) timeout.
SELECT batch.create_endpoint('llm', base_url => :'api_url',
	   headers => '{"Authorization": "Bearer sk-demo"}',
	   max_concurrency => 8, rate_limit => 6000, timeout => '10 s') AS endpoint_id \gset

/*
 * The pipeline: four HTTP stages through that endpoint.  Retry policy: 1 try
 * + 3 retries after 300 ms, 600 ms, 1.2 s (+/- 20%); a Retry-After answer
 * delays the retry (and pauses the endpoint) as long as it asks.  An item
 * without a non-blank "topic" is rejected at submit time.
 */
SELECT batch.create_pipeline('seo_articles', '[
	{"name": "outline", "http": {"endpoint": "llm", "method": "POST",
		"path": "/v1/chat/completions", "body": "app.outline_request"}},
	{"name": "draft",   "http": {"endpoint": "llm", "method": "POST",
		"path": "/v1/chat/completions", "body": "app.draft_request"}},
	{"name": "voice",   "http": {"endpoint": "llm", "method": "POST",
		"path": "/v1/chat/completions", "body": "app.voice_request"}},
	{"name": "seo",     "http": {"endpoint": "llm", "method": "POST",
		"path": "/v1/chat/completions", "body": "app.seo_request"}}]',
	retry => '{"max_retries": 3, "backoff_base": "300 ms", "backoff_factor": 2, "jitter": 0.2}',
	required => '{topic}') AS pipeline_id \gset
-- each answer reports its tokens (usage.total_tokens); an illustrative price per 1,000
SELECT count(batch.set_stage_cost('seo_articles', s, 'usage.total_tokens', 0.60)) AS priced
FROM unnest(ARRAY['outline', 'draft', 'voice', 'seo']) s \gset

\echo 'Endpoint (batch.endpoint_status; its headers are readable by pgbatch_admin only):'
SELECT name, base_url, max_concurrency, rate_limit AS "rate_limit/min", timeout, circuit
FROM batch.endpoint_status WHERE id = :endpoint_id;

\echo 'Pipeline seo_articles (batch.stages):'
SELECT s.position, s.name AS stage, s.kind, e.name AS endpoint, s.method || ' ' || s.path AS request,
	   s.func::oid::regproc AS body_from,
	   format('%s retries, %s ms x %s^n, +/- %s%%', s.max_retries,
			  (extract(epoch FROM s.backoff_base) * 1000)::integer, s.backoff_factor,
			  s.jitter * 100) AS retry_policy
FROM batch.stages s JOIN batch.endpoints e ON e.id = s.endpoint_id
WHERE s.pipeline_id = :pipeline_id ORDER BY s.position;

\echo 'What the draft stage would send for article-001 after its outline (app.draft_request):'
\pset format unaligned
\pset tuples_only on
SELECT jsonb_pretty(app.draft_request(jsonb_build_object('key', key, 'topic', topic),
		'{"outline": {"choices": [{"message": {"role": "assistant",
		  "content": "1. Why posture matters\n2. ..."}}]}}'))
FROM app.articles WHERE n = 1;
\pset format aligned
\pset tuples_only off
\echo
