/* demo/submit.sql - submits the 100 planned articles as the batch demo_batch.
 *
 * Each item is {"key": "article-NNN", "topic": ...}.  What goes wrong, on
 * purpose:
 *   - transient faults, planned in the payload ("fault": {stage: spec}, see
 *     demo/setup.sql) and counted by the fake API per Idempotency-Key, which
 *     pgbatch keeps the same on every retry of an item's stage:
 *       article-012  draft    429 with Retry-After: 1, once
 *       article-025  outline  504, once
 *       article-040  draft    504, twice
 *       article-063  voice    429 with Retry-After: 1, twice
 *       article-078  seo      504, once
 *       article-087  seo      429 four times: it outlasts its retries
 *                             (1 try + 3), then the rate limit has cleared;
 *   - permanent: articles 55 and 71 are about casinos, which the brand guide
 *     bans (app.banned_topics): their voice request is refused with a 400;
 *   - malformed input: article 31 has a blank topic, article 58 misspells the
 *     "topic" key, article 92 is a bare string instead of a JSON object.
 *
 * Run by demo/run.sh with psql -q.
 */

CREATE TABLE app.fault_plan (
	n		integer PRIMARY KEY REFERENCES app.articles,
	stage	text NOT NULL,
	fault	text NOT NULL
);
INSERT INTO app.fault_plan VALUES
	(12, 'draft',   '429:ra=1x1'),
	(25, 'outline', '504x1'),
	(40, 'draft',   '504x2'),
	(63, 'voice',   '429:ra=1x2'),
	(78, 'seo',     '504x1'),
	(87, 'seo',     '429x4');

\echo 'Submitting 100 articles (six with planned API faults, three malformed):'
SELECT batch.submit('seo_articles',
	jsonb_agg(CASE a.n
				  WHEN 31 THEN jsonb_build_object('key', a.key, 'topic', '   ')
				  WHEN 58 THEN jsonb_build_object('key', a.key, 'tpoic', a.topic)
				  WHEN 92 THEN to_jsonb(a.topic)
				  ELSE jsonb_build_object('key', a.key, 'topic', a.topic)
					   || CASE WHEN f.n IS NOT NULL
							   THEN jsonb_build_object('fault', jsonb_build_object(f.stage, f.fault))
							   ELSE '{}' END
			  END ORDER BY a.n),
	name => 'demo_batch') AS batch_id
FROM app.articles a LEFT JOIN app.fault_plan f USING (n) \gset
SELECT format('Submitted batch demo_batch (id %s).  No batch.run(): the executors '
			  'were woken when the submit committed.', :batch_id) AS msg \gset
\echo :msg
