--
-- pipeline: creating pipelines and the errors that name what is wrong.
--
SELECT batch.create_pipeline('article', stages => '[
   {"name": "outline", "sql": "app.outline"},
   {"name": "draft",   "sql": "app.draft", "retry": {"max_retries": 5}},
   {"name": "seo",     "sql": "app.seo"}]',
   retry => '{"max_retries": 3, "backoff_base": "2 s", "backoff_factor": 2, "backoff_max": "10 min", "jitter": 0.2}',
   required => '{topic}');

SELECT p.name, p.retry, p.required FROM batch.pipelines p;
SELECT position, name, kind, func, timeout, max_retries, backoff_base, backoff_factor, backoff_max, jitter
FROM batch.stages ORDER BY position;

-- defaults: 3 retries, 2 s doubling to 10 min, 20% jitter; numbers are seconds
SELECT batch.create_pipeline('defaults', '[{"name": "only", "sql": "app.outline", "timeout": 0.5,
  "retry": {"backoff_base": 0.25}}]');
SELECT name, max_retries, backoff_base, backoff_factor, backoff_max, jitter, timeout
FROM batch.stages s WHERE pipeline_id = (SELECT id FROM batch.pipelines WHERE name = 'defaults');

-- validation errors
SELECT batch.create_pipeline('article', '[{"name": "a", "sql": "app.outline"}]');
SELECT batch.create_pipeline('', '[{"name": "a", "sql": "app.outline"}]');
SELECT batch.create_pipeline('p', '[]');
SELECT batch.create_pipeline('p', '{"name": "a"}');
SELECT batch.create_pipeline('p', '[{"sql": "app.outline"}]');
SELECT batch.create_pipeline('p', '["outline"]');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.outline"}, {"name": "a", "sql": "app.draft"}]');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.nope"}]');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.wrong_return"}]');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.one_arg"}]');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.many"}]');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.outline; DROP TABLE app.calls"}]');
SELECT batch.create_pipeline('p', '[{"name": "a"}]');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.outline", "colour": "red"}]');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.outline", "timeout": "soon"}]');
SELECT batch.create_pipeline('p', '[{"name": "a", "http": {"endpoint": "llm"}}]');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.outline"}]', retry => '{"retries": 3}');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.outline"}]', retry => '{"max_retries": -1}');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.outline"}]', retry => '{"max_retries": 1.5}');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.outline"}]', retry => '{"backoff_factor": 0.5}');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.outline"}]', retry => '{"jitter": 2}');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.outline"}]', retry => '{"backoff_base": "later"}');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.outline"}]', retry => '{"backoff_max": "30 days"}');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.outline"}]', retry => '{"backoff_base": "1 hour"}');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.outline", "retry": {"max_retries": "x"}}]');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.outline"}]', retry => '[1]');
SELECT batch.create_pipeline('p', '[{"name": "a", "sql": "app.outline"}]', required => '{topic,NULL}');
-- none of the failed attempts left anything behind
SELECT name FROM batch.pipelines ORDER BY id;

-- drop_pipeline
SELECT batch.create_pipeline('scratch', '[{"name": "a", "sql": "app.outline"}]') > 0 AS created;
SELECT batch.drop_pipeline('scratch');
SELECT batch.drop_pipeline('scratch');
