/* demo/setup.sql - the demo's application side and its batch.
 *
 * Builds the `app` schema of a fake SEO content shop: 100 planned articles,
 * a simulated LLM API (app.call_api) that counts every call and fails some of
 * them on purpose, and four stage functions (outline -> draft -> voice -> seo)
 * that call it.  Then creates the pgbatch pipeline and submits the 100
 * articles, three of them malformed, as the batch 'demo_batch'.
 *
 * The simulated failures are deterministic:
 *   - transient (HTTP 429 / 504, raised with SQLSTATE PB001, pgbatch's
 *     "retry me" code): articles 12, 25, 40 and 63 fail once or twice and
 *     then succeed; article 87 is rate limited 4 times in a row at its last
 *     stage, which outlasts its retry budget (1 try + 3 retries);
 *   - permanent: articles 55 and 71 are about casinos, a topic the voice
 *     prompt does not allow (plain RAISE EXCEPTION -> raise_exception);
 *   - malformed input: article 31 has a blank topic, article 58 misspells the
 *     "topic" key, article 92 is a bare string instead of a JSON object.
 *
 * Run by demo/run.sh with psql -q; not meant to be run twice.
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

/*
 * Every simulated API call first takes a number from this sequence.
 * pgbatch runs each stage in a subtransaction and rolls it back when the
 * stage raises, so a row the failing call wrote would vanish; a sequence is
 * not transactional, so failed calls are counted too -- just as a real HTTP
 * request, once sent, cannot be taken back.
 */
CREATE SEQUENCE app.api_call_no;

-- The calls that returned a result (a failed call's row is rolled back).
CREATE TABLE app.api_calls (
	call_no	bigint PRIMARY KEY,
	article	text NOT NULL,
	topic	text NOT NULL,
	stage	text NOT NULL,
	at		timestamptz NOT NULL DEFAULT clock_timestamp()
);

/*
 * The failure plan: the first `failures` calls for `article` at `stage` fail
 * with `error`.  Each row counts its calls in its own sequence, for the same
 * reason as above: a table counter would be rolled back with the failed call,
 * and the article would fail forever.
 */
CREATE TABLE app.flaky (
	article		text NOT NULL,
	stage		text NOT NULL,
	failures	integer NOT NULL,
	error		text NOT NULL,
	calls		regclass,
	PRIMARY KEY (article, stage)
);
INSERT INTO app.flaky (article, stage, failures, error) VALUES
	('article-012', 'draft',   1, 'HTTP 429 rate limited'),
	('article-025', 'outline', 1, 'HTTP 504 gateway timeout'),
	('article-040', 'draft',   2, 'HTTP 504 gateway timeout'),
	('article-063', 'voice',   2, 'HTTP 429 rate limited'),
	('article-087', 'seo',     4, 'HTTP 429 rate limited');
DO $$
DECLARE
	f record;
BEGIN
	FOR f IN SELECT article, stage FROM app.flaky LOOP
		EXECUTE format('CREATE SEQUENCE app.%I', 'calls_' || replace(f.article, '-', '_') || '_' || f.stage);
		UPDATE app.flaky SET calls = format('app.%I', 'calls_' || replace(f.article, '-', '_') || '_' || f.stage)::regclass
		WHERE article = f.article AND stage = f.stage;
	END LOOP;
END
$$;

-- What the voice prompt refuses to write about (the editor can lift a rule).
CREATE TABLE app.voice_rules (
	term	text PRIMARY KEY,
	reason	text NOT NULL,
	active	boolean NOT NULL DEFAULT true
);
INSERT INTO app.voice_rules (term, reason) VALUES
	('casino', 'brand guide bans gambling');

/*
 * The simulated LLM API: counts the call, fails it if the failure plan or a
 * voice rule says so, otherwise logs it in app.api_calls and returns text.
 */
CREATE FUNCTION app.call_api(stage text, payload jsonb, prompt text) RETURNS text
	LANGUAGE plpgsql
AS $$
DECLARE
	v_call_no bigint := nextval('app.api_call_no');
	v_article text := payload ->> 'key';
	v_topic text := payload ->> 'topic';
	f app.flaky;
	r app.voice_rules;
BEGIN
	SELECT * INTO f FROM app.flaky
	WHERE flaky.article = v_article AND flaky.stage = call_api.stage;
	IF FOUND AND nextval(f.calls) <= f.failures THEN
		-- transient: PB001 asks pgbatch to retry this stage after a backoff
		RAISE EXCEPTION '%', f.error USING ERRCODE = 'PB001';
	END IF;
	IF call_api.stage = 'voice' THEN
		SELECT * INTO r FROM app.voice_rules v
		WHERE v.active AND v_topic ILIKE '%' || v.term || '%';
		IF FOUND THEN
			-- permanent: any other error fails the item
			RAISE EXCEPTION 'HTTP 400 topic is not allowed: %', r.reason;
		END IF;
	END IF;
	INSERT INTO app.api_calls (call_no, article, topic, stage)
	VALUES (v_call_no, v_article, v_topic, call_api.stage);
	RETURN format('%s for "%s"', prompt, v_topic);
END
$$;

-- The four stages: f(payload jsonb, outputs jsonb) RETURNS jsonb, where
-- outputs holds the earlier stages' outputs keyed by stage name.
CREATE FUNCTION app.make_outline(payload jsonb, outputs jsonb) RETURNS jsonb
	LANGUAGE sql
	RETURN jsonb_build_object('outline', app.call_api('outline', payload, 'outline'),
							  'sections', 5);

CREATE FUNCTION app.make_draft(payload jsonb, outputs jsonb) RETURNS jsonb
	LANGUAGE sql
	RETURN jsonb_build_object('draft', app.call_api('draft', payload, 'draft'),
							  'words', 200 * (outputs -> 'outline' ->> 'sections')::integer);

CREATE FUNCTION app.make_voice(payload jsonb, outputs jsonb) RETURNS jsonb
	LANGUAGE sql
	RETURN jsonb_build_object('text', app.call_api('voice', payload, 'brand-voice rewrite'),
							  'words', (outputs -> 'draft' ->> 'words')::integer);

CREATE FUNCTION app.make_seo(payload jsonb, outputs jsonb) RETURNS jsonb
	LANGUAGE sql
	RETURN jsonb_build_object('meta', app.call_api('seo', payload, 'meta description'),
							  'slug', trim(BOTH '-' FROM regexp_replace(lower(payload ->> 'topic'), '[^a-z0-9]+', '-', 'g')));

-- The pipeline: one retry policy for all stages (1 try + 3 retries, backoff
-- 200 ms, 400 ms, 800 ms, +/- 20%), the draft stage gets a bigger budget,
-- and an item without a non-blank "topic" is rejected at submit time.
SELECT batch.create_pipeline('seo_articles',
	'[{"name": "outline", "sql": "app.make_outline"},
	  {"name": "draft",   "sql": "app.make_draft", "retry": {"max_retries": 5}},
	  {"name": "voice",   "sql": "app.make_voice"},
	  {"name": "seo",     "sql": "app.make_seo"}]',
	retry => '{"max_retries": 3, "backoff_base": "200 ms", "backoff_factor": 2, "jitter": 0.2}',
	required => '{topic}') AS pipeline_id \gset

\echo 'Stages of pipeline seo_articles:'
SELECT s.position, s.name AS stage, s.func AS function, s.max_retries,
	   (extract(epoch FROM s.backoff_base) * 1000)::integer || ' ms' AS backoff_base,
	   s.backoff_factor, s.jitter
FROM batch.stages s WHERE s.pipeline_id = :pipeline_id ORDER BY s.position;

-- The batch: the 100 planned articles, three of them mangled on the way in.
\echo 'Submitting 100 articles (three of them malformed):'
SELECT batch.submit('seo_articles',
	jsonb_agg(CASE a.n
				  WHEN 31 THEN jsonb_build_object('key', a.key, 'topic', '   ')
				  WHEN 58 THEN jsonb_build_object('key', a.key, 'tpoic', a.topic)
				  WHEN 92 THEN to_jsonb(a.topic)
				  ELSE jsonb_build_object('key', a.key, 'topic', a.topic)
			  END ORDER BY a.n),
	name => 'demo_batch') AS batch_id
FROM app.articles a \gset
SELECT format('Submitted batch demo_batch (id %s).', :batch_id) AS msg \gset
\echo :msg
