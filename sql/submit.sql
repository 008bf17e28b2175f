--
-- submit: batches, items, validation at the door, duplicate keys.
--
SELECT batch.submit('article', '[
  {"topic": "How to scale cold email", "key": "a1"},
  {"topic": "Warm-up schedules", "key": "a2"},
  {"topic": "   ", "key": "blank"},
  {"title": "no topic"},
  {"topic": null},
  "just a string",
  [1, 2],
  {"topic": "Warm-up schedules again", "key": "a2"},
  {"topic": "Deliverability", "key": "a3"}]', name => 'b_submit');

SELECT id, key, status, stage, attempt, error_code, error_message, payload
FROM batch.items WHERE batch_id = batch_internal.batch_id(current_user::regrole, 'b_submit') ORDER BY id;

-- items that failed validation are finished and show in the review queue
SELECT item_id, key, stage, error_code, error, attempts, payload
FROM batch.review_queue WHERE batch_id = batch_internal.batch_id(current_user::regrole, 'b_submit') ORDER BY item_id;

-- add_items: more items later, by name or by id; duplicate keys are skipped
SELECT batch.add_items('b_submit', '[{"topic": "Inbox placement", "key": "a4"}, {"topic": "dup", "key": "a1"}]');
SELECT batch.add_items(batch_internal.batch_id(current_user::regrole, 'b_submit'), '[{"topic": "Subject lines"}, {"topic": "Subject lines"}]');
SELECT count(*) AS items, count(*) FILTER (WHERE status = 'pending') AS pending
FROM batch.items WHERE batch_id = batch_internal.batch_id(current_user::regrole, 'b_submit');

-- an oversized payload becomes a failed item; the payload is not stored
SET pgbatch.max_payload_size = '100B';
SELECT batch.add_items('b_submit', jsonb_build_array(jsonb_build_object('topic', repeat('x', 200)),
                                                     jsonb_build_object('topic', 'small')));
RESET pgbatch.max_payload_size;
SELECT key, status, error_code, error_message, payload FROM batch.items
WHERE batch_id = batch_internal.batch_id(current_user::regrole, 'b_submit') ORDER BY id DESC LIMIT 2;

-- errors
SELECT batch.submit('article', '{"topic": "not an array"}');
SELECT batch.submit('article', NULL);
SELECT batch.submit('nosuch', '[]');
SELECT batch.submit('article', '[]', name => 'b_submit');
SELECT batch.submit('article', '[]', name => ' ');
SELECT batch.add_items('nosuch', '[]');
SELECT batch.add_items(999999, '[]');
SELECT batch.add_items('b_submit', '"x"');

-- an unnamed batch is named after its id; an empty batch is queued
SELECT batch.submit('article', '[]') AS empty_id \gset
SELECT name = 'batch_' || :empty_id AS named_by_id, status, total FROM batch.progress WHERE id = :empty_id;

-- the submission is in the log
SELECT level, event, message FROM batch.log
WHERE batch_id = batch_internal.batch_id(current_user::regrole, 'b_submit') AND item_id IS NULL ORDER BY started_at;
