--
-- requeue: fixing one item with update_item and retrying it with
-- retry_item; cancelling a batch.
--
-- ids are printed in messages: start from known values
ALTER SEQUENCE batch.items_id_seq RESTART WITH 1000;
ALTER SEQUENCE batch.batches_id_seq RESTART WITH 100;
SELECT batch.submit('article', '[{"topic": "fine"}, {"topic": ""}, {"name": "x"}]', name => 'b_fix') AS bid \gset
SELECT (batch.run('b_fix')).items_completed;
SELECT id AS blank_id FROM batch.items WHERE batch_id = :bid AND payload->>'topic' = '' \gset
SELECT id AS fine_id FROM batch.items WHERE batch_id = :bid AND payload->>'topic' = 'fine' \gset

-- an invalid fix is refused; the item keeps its payload
SELECT batch.update_item(:blank_id, '{"topic": "  "}');
SELECT batch.update_item(:blank_id, '[1]');
-- retrying an item that is still invalid is refused
SELECT batch.retry_item(:blank_id);
-- a completed item cannot be updated or retried; unknown ids are errors
SELECT batch.update_item(:fine_id, '{"topic": "changed"}');
SELECT batch.retry_item(:fine_id);
SELECT batch.update_item(999999, '{"topic": "x"}');
SELECT batch.retry_item(999999);

SELECT batch.update_item(:blank_id, '{"topic": "fixed", "key": "f1"}');
SELECT key FROM batch.items WHERE id = :blank_id;
-- keys stay unique within the batch
SELECT batch.add_items('b_fix', '[{"topic": "other", "key": "f2"}]');
SELECT batch.update_item(:blank_id, '{"topic": "fixed", "key": "f2"}');
SELECT key, payload FROM batch.items WHERE id = :blank_id;
SELECT batch.retry_item(:blank_id);
SELECT status, stage, attempt, error_code FROM batch.items WHERE id = :blank_id;
SELECT items_completed FROM batch.run('b_fix');
SELECT status FROM batch.items WHERE id = :blank_id;
SELECT count(*) FROM app.calls WHERE topic = 'fixed';

-- the other invalid item stays failed until someone fixes it
SELECT status, error_code FROM batch.items WHERE batch_id = :bid AND payload ? 'name';
SELECT level, event, message FROM batch.log WHERE batch_id = :bid AND item_id IS NOT NULL AND stage IS NULL ORDER BY started_at;

-- cancel: waiting items are cancelled, finished ones stay as they are
SELECT app.add_fault('c-wait', 'outline', 'transient');
SELECT batch.submit('article', '[{"topic": "c-done"}, {"topic": "c-wait"}, {"topic": "c-later"}]', name => 'b_cancel') AS cbid \gset
SELECT items_completed, retries_scheduled FROM batch.run('b_cancel', max_items => 2);
SELECT batch.cancel('b_cancel');
SELECT batch.cancel(:cbid);
SELECT payload->>'topic' AS topic, status FROM batch.items WHERE batch_id = :cbid ORDER BY id;
SELECT status, total, pending, completed, cancelled, finished_at IS NOT NULL AS finished FROM batch.progress WHERE id = :cbid;
-- nothing runs in a cancelled batch, and it takes no more items or retries
SELECT stages_run FROM batch.run('b_cancel');
SELECT batch.add_items('b_cancel', '[{"topic": "more"}]');
SELECT batch.retry_failed('b_cancel');
-- a cancelled item can be edited, but is not failed, so it is not retried
SELECT id AS cancelled_id FROM batch.items WHERE batch_id = :cbid AND payload->>'topic' = 'c-later' \gset
SELECT batch.update_item(:cancelled_id, '{"topic": "c-later2"}');
SELECT batch.retry_item(:cancelled_id);
SELECT batch.cancel('nosuch');
