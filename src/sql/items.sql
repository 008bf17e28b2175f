/*
 * src/sql/items.sql
 *
 * Batches and their items: submitting, validating and counting items,
 * fixing and re-queuing them (retry_failed, retry_item, rerun_stage),
 * cancelling, giving a batch to another role, and running due items in the
 * session (batch.run).
 */

-- batch.run() for a role: due work of one batch, or of every batch it may act on.
CREATE FUNCTION batch_internal.run_due(role regrole, batch_id bigint, max_items bigint,
	max_seconds float8,
	OUT stages_run bigint, OUT items_completed bigint, OUT retries_scheduled bigint,
	OUT items_failed bigint, OUT next_due timestamptz)
	RETURNS record
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'pgbatch_run_1_4';

-- Re-queues failed items of a batch for a role (retry_failed, retry_item).
CREATE FUNCTION batch_internal.requeue(role regrole, batch_id bigint, item_id bigint,
	max_retries integer, backoff_factor float8, error_codes text[], stage text,
	take_lock boolean, wait boolean DEFAULT false)
	RETURNS bigint
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'pgbatch_requeue_1_4';

-- pgbatch.max_payload_size: the largest item payload, in bytes.
CREATE FUNCTION batch_internal.max_payload_size() RETURNS integer
	LANGUAGE c STABLE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_max_payload_size';

/*
 * Why an input element cannot become a runnable item, or NULL when it can:
 * not a JSON object, larger than max_size bytes, or a required key missing
 * or blank (JSON null or only white space).
 */
CREATE FUNCTION batch_internal.invalid_reason(e jsonb, required text[], max_size integer)
	RETURNS text
	LANGUAGE c IMMUTABLE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_invalid_reason';

-- Wakes the launcher at commit, so that the executors of this database start.
CREATE FUNCTION batch_internal.wake_launcher() RETURNS void
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'pgbatch_wake_launcher';

-- The executors running for this database.
CREATE FUNCTION batch_internal.workers(OUT pid integer, OUT worker integer,
	OUT started_at timestamptz, OUT in_flight integer, OUT requests bigint)
	RETURNS SETOF record
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'pgbatch_workers';

-- Per database: whether executors serve it, and if not why (src/health.c).
CREATE FUNCTION batch_internal.health(OUT database name, OUT state text,
	OUT executors integer, OUT wanted integer, OUT since timestamptz,
	OUT started bigint, OUT reason text, OUT hint text)
	RETURNS SETOF record
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'pgbatch_health';

-- A batch's status from its counts: the one rule (src/events.c), for
-- batch.progress and the batch_finished event.
CREATE FUNCTION batch_internal.batch_status(cancelled boolean, pending bigint, retrying bigint,
	running bigint, completed bigint, failed bigint, cancelled_items bigint, started boolean)
	RETURNS text
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_batch_status';

-- The counter bucket of an item state (pending, retrying, running,
-- completed, failed, cancelled): the rule the counting trigger uses.
CREATE FUNCTION batch_internal.item_bucket(status text, attempt integer) RETURNS text
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_item_bucket';

/*
 * The guards every requeue of a batch passes (src/requeue.c): the role may
 * act on it, no other transaction is re-queuing it (an advisory lock; false
 * and a NOTICE if one is), it is neither cancelled nor purged, and 'stage',
 * if given, is one of its pipeline's.
 */
CREATE FUNCTION batch_internal.requeue_begin(role regrole, batch_id bigint, stage text,
	wait boolean DEFAULT false)
	RETURNS boolean
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'pgbatch_requeue_begin';

/*
 * Statement trigger on batch.items (C): folds the status changes of a
 * statement, read from its transition tables, into this backend's shard row
 * of batch.counters.
 */
CREATE FUNCTION batch_internal.count_items() RETURNS trigger
	LANGUAGE c
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'pgbatch_count_items_1_4';

/*
 * Statement trigger on batch.items (C, src/queue.c): keeps batch.queue, the
 * narrow copy of the items' state, in step with the statement's changes
 * (read from its transition tables): inserted items get their row, deleted
 * items lose it, and changed items update theirs in place.  An update that
 * changes none of the copied columns writes nothing.
 */
CREATE FUNCTION batch_internal.queue_items() RETURNS trigger
	LANGUAGE c
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'pgbatch_queue_items_1_4';

/*
 * batch_finished for a batch whose end no one announced: the executors
 * announce an end as their statement makes it (and note it in announced_at),
 * but two of them ending a batch together may each not see the other's last
 * items.  Maintenance checks every batch once it has ended (counted_at is
 * set then); this trigger announces the end then if no one has.
 */
CREATE FUNCTION batch_internal.announce_finished() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	p record;
BEGIN
	SELECT x.status, x.finished_at INTO p FROM batch.progress x WHERE x.id = NEW.id;
	IF FOUND AND p.status IN ('completed', 'partial', 'failed', 'cancelled')
	   AND (NEW.announced_at IS NULL OR NEW.announced_at < p.finished_at) THEN
		NEW.announced_at := clock_timestamp();
		PERFORM pg_notify('pgbatch_events', json_build_object(
			'event', 'batch_finished', 'at', NEW.announced_at, 'batch_id', NEW.id,
			'status', p.status)::text);
	END IF;
	RETURN NEW;
END
$$;

/*
 * Inserts the elements of a JSON array as items of a batch (at most
 * pgbatch.max_items_per_call); an invalid element becomes a failed item with
 * error code invalid_input, a key already in the batch is skipped.
 */
CREATE FUNCTION batch_internal.insert_items(target bigint, items jsonb,
	OUT inserted bigint, OUT invalid bigint, OUT duplicates bigint)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	lim integer := (batch_internal.limits()).max_items_per_call;
	req text[];
	first_stage text;
	max_size integer := batch_internal.max_payload_size();
	given bigint;
BEGIN
	IF items IS NULL OR jsonb_typeof(items) <> 'array' THEN
		RAISE EXCEPTION 'items must be a JSON array, not %', coalesce(jsonb_typeof(items), 'SQL NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass one JSON object per item, for example ''[{"topic": "..."}]''.';
	END IF;
	given := jsonb_array_length(items);
	IF given > lim THEN
		RAISE EXCEPTION 'too many items in one call: %, the limit is %', given, lim
			USING ERRCODE = 'program_limit_exceeded',
				  HINT = 'Submit them in parts with batch.add_items(), or have a superuser raise pgbatch.max_items_per_call.';
	END IF;

	SELECT p.required, s.name INTO req, first_stage
	FROM batch.batches b
	JOIN batch.pipelines p ON p.id = b.pipeline_id
	JOIN batch.stages s ON s.pipeline_id = p.id AND s.position = 1
	WHERE b.id = target;

	WITH elements AS MATERIALIZED (
		SELECT t.e, t.ord, batch_internal.invalid_reason(t.e, req, max_size) AS why
		FROM jsonb_array_elements(items) WITH ORDINALITY AS t(e, ord)
	), ins AS (
		INSERT INTO batch.items AS i (batch_id, key, payload, status, stage,
									  error_code, error_message, finished_at)
		SELECT target,
			   CASE WHEN jsonb_typeof(e) = 'object' THEN e ->> 'key' END,
			   CASE WHEN pg_column_size(e) > max_size THEN 'null'::jsonb ELSE e END,
			   CASE WHEN why IS NULL THEN 'pending' ELSE 'failed' END,
			   first_stage,
			   CASE WHEN why IS NOT NULL THEN 'invalid_input' END,
			   CASE WHEN why IS NOT NULL THEN format('input element %s: %s', ord, why) END,
			   CASE WHEN why IS NOT NULL THEN clock_timestamp() END
		FROM elements
		ORDER BY ord
		ON CONFLICT (batch_id, key) WHERE key IS NOT NULL DO NOTHING
		RETURNING i.status
	)
	SELECT count(*), count(*) FILTER (WHERE status = 'failed')
	INTO inserted, invalid
	FROM ins;

	duplicates := given - inserted;
	IF invalid > 0 THEN
		RAISE NOTICE '% of % items are invalid and were stored as failed with error code invalid_input',
			invalid, given
			USING HINT = 'See batch.review_queue; fix them with batch.update_item() and re-queue them with batch.retry_failed().';
	END IF;
	IF duplicates > 0 THEN
		RAISE NOTICE '% items skipped: their key is already in the batch', duplicates;
	END IF;
END
$$;

CREATE FUNCTION batch_internal.submit(caller regrole, pipeline text, items jsonb, name text)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pid integer;
	bid bigint;
	r record;
	health record;
BEGIN
	SELECT p.id INTO pid FROM batch.pipelines p WHERE p.name = submit.pipeline;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'pipeline "%" does not exist', pipeline
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it first with batch.create_pipeline().';
	END IF;
	IF items IS NULL OR jsonb_typeof(items) <> 'array' THEN
		RAISE EXCEPTION 'items must be a JSON array, not %', coalesce(jsonb_typeof(items), 'SQL NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass one JSON object per item, for example ''[{"topic": "..."}]''.';
	END IF;
	IF name IS NOT NULL AND btrim(name) = '' THEN
		RAISE EXCEPTION 'batch name must not be blank' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF EXISTS (SELECT FROM batch.batches b WHERE b.name = submit.name) THEN
		RAISE EXCEPTION 'batch "%" already exists', name
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Add items to it with batch.add_items(), or pick another name.';
	END IF;

	PERFORM batch_internal.require_use(caller, pid);
	bid := nextval('batch.batches_id_seq');
	INSERT INTO batch.batches (id, name, pipeline_id, owner)
	VALUES (bid, coalesce(submit.name, 'batch_' || bid), pid, pg_get_userbyid(caller));

	r := batch_internal.insert_items(bid, items);
	INSERT INTO batch.events (batch_id, level, event, message, detail, actor)
	VALUES (bid, 'info', 'submitted',
			format('batch submitted with %s items (%s invalid, %s duplicates skipped)',
				   r.inserted, r.invalid, r.duplicates),
			jsonb_build_object('items', r.inserted, 'invalid', r.invalid,
							   'duplicates', r.duplicates, 'pipeline', pipeline),
			pg_get_userbyid(caller));

	-- this database has the extension: the launcher knows it from the commit on
	PERFORM batch_internal.wake_launcher();
	-- nothing will run its HTTP stages (batch.health says why): say so, with the fix
	IF EXISTS (SELECT FROM batch.stages s WHERE s.pipeline_id = pid AND s.kind = 'http') THEN
		SELECT h.state, h.reason, h.hint INTO health
		FROM batch_internal.health() h WHERE h.database = current_database();
		IF health.state NOT IN ('serving', 'starting') THEN
			RAISE WARNING 'no executor will run the HTTP stages of batch "%": %',
				coalesce(submit.name, 'batch_' || bid), health.reason
				USING HINT = coalesce(health.hint || ' ', '') || 'batch.health shows the state of every database.';
		END IF;
	END IF;
	RETURN bid;
END
$$;

CREATE FUNCTION batch_internal.add_items(caller regrole, batch bigint, items jsonb)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bid bigint := batch_internal.batch_id(caller, batch);
	r record;
BEGIN
	-- a batch being cancelled or changed waits for us, and we for it
	PERFORM FROM batch.batches b WHERE b.id = bid AND b.cancelled_at IS NOT NULL FOR SHARE;
	IF FOUND THEN
		RAISE EXCEPTION 'batch % is cancelled', bid
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Submit a new batch instead.';
	END IF;
	PERFORM batch_internal.require_use(to_regrole(b.owner), b.pipeline_id)
	FROM batch.batches b WHERE b.id = bid;
	r := batch_internal.insert_items(bid, items);
	INSERT INTO batch.events (batch_id, level, event, message, detail, actor)
	VALUES (bid, 'info', 'items_added',
			format('%s items added (%s invalid, %s duplicates skipped)',
				   r.inserted, r.invalid, r.duplicates),
			jsonb_build_object('items', r.inserted, 'invalid', r.invalid,
							   'duplicates', r.duplicates),
			pg_get_userbyid(caller));
	RETURN r.inserted;
END
$$;

CREATE FUNCTION batch_internal.add_items(caller regrole, batch text, items jsonb)
	RETURNS bigint
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN batch_internal.add_items(caller, batch_internal.batch_id(caller, batch), items);

CREATE FUNCTION batch_internal.run(caller regrole, batch bigint, max_items bigint,
	max_seconds float8,
	OUT stages_run bigint, OUT items_completed bigint, OUT retries_scheduled bigint,
	OUT items_failed bigint, OUT next_due timestamptz)
	RETURNS record
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	SELECT * FROM batch_internal.run_due(caller, batch_internal.batch_id(caller, batch),
										 max_items, max_seconds)
$$;

CREATE FUNCTION batch_internal.run(caller regrole, batch text, max_items bigint,
	max_seconds float8,
	OUT stages_run bigint, OUT items_completed bigint, OUT retries_scheduled bigint,
	OUT items_failed bigint, OUT next_due timestamptz)
	RETURNS record
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	SELECT * FROM batch_internal.run_due(caller,
		CASE WHEN batch IS NOT NULL THEN batch_internal.batch_id(caller, batch) END,
		max_items, max_seconds)
$$;

CREATE FUNCTION batch_internal.retry_failed(caller regrole, batch bigint, max_retries integer,
	backoff_factor float8, error_codes text[], stage text, wait boolean)
	RETURNS bigint
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN batch_internal.requeue(caller, batch_internal.batch_id(caller, batch), NULL,
								  max_retries, backoff_factor, error_codes, stage, true, wait);

CREATE FUNCTION batch_internal.retry_failed(caller regrole, batch text, max_retries integer,
	backoff_factor float8, error_codes text[], stage text, wait boolean)
	RETURNS bigint
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN batch_internal.requeue(caller, batch_internal.batch_id(caller, batch), NULL,
								  max_retries, backoff_factor, error_codes, stage, true, wait);

/*
 * The item, locked, with what the item functions need, if the role may
 * act on its batch; an item of a batch it cannot see does not exist.
 */
CREATE FUNCTION batch_internal.item(caller regrole, item_id bigint,
	OUT batch_id bigint, OUT status text, OUT error_code text, OUT payload jsonb,
	OUT required text[])
	RETURNS record
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	owner name;
BEGIN
	SELECT i.batch_id, i.status, i.error_code, i.payload, p.required, b.owner
	INTO batch_id, status, error_code, payload, required, owner
	FROM batch.items i
	JOIN batch.batches b ON b.id = i.batch_id
	JOIN batch.pipelines p ON p.id = b.pipeline_id
	WHERE i.id = item.item_id
	FOR UPDATE OF i;
	IF NOT FOUND OR NOT batch_internal.can_see(caller, owner) THEN
		RAISE EXCEPTION 'item % does not exist', item_id USING ERRCODE = 'undefined_object';
	END IF;
	PERFORM batch_internal.batch_id(caller, batch_id);
END
$$;

CREATE FUNCTION batch_internal.retry_item(caller regrole, item_id bigint) RETURNS boolean
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	it record := batch_internal.item(caller, item_id);
	why text;
BEGIN
	IF it.status <> 'failed' THEN
		RAISE EXCEPTION 'item % is %, not failed', item_id, it.status
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Only failed items can be retried.';
	END IF;
	IF it.error_code = 'invalid_input' THEN
		why := batch_internal.invalid_reason(it.payload, it.required, batch_internal.max_payload_size());
		IF why IS NOT NULL THEN
			RAISE EXCEPTION 'item % is still invalid: %', item_id, why
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  HINT = 'Fix its payload with batch.update_item() first.';
		END IF;
	END IF;
	RETURN batch_internal.requeue(caller, it.batch_id, item_id, NULL, NULL, NULL, NULL, false) = 1;
END
$$;

CREATE FUNCTION batch_internal.update_item(caller regrole, item_id bigint, payload jsonb)
	RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	it record := batch_internal.item(caller, item_id);
	why text;
BEGIN
	IF it.status IN ('running', 'completed') THEN
		RAISE EXCEPTION 'item % is %; its payload can no longer change', item_id, it.status
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Only pending, failed and cancelled items can be updated.';
	END IF;
	why := batch_internal.invalid_reason(payload, it.required, batch_internal.max_payload_size());
	IF why IS NOT NULL THEN
		RAISE EXCEPTION 'invalid payload for item %: %', item_id, why
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	BEGIN
		UPDATE batch.items i
		SET payload = update_item.payload, key = update_item.payload ->> 'key',
			updated_at = clock_timestamp()
		WHERE i.id = item_id;
	EXCEPTION WHEN unique_violation THEN
		RAISE EXCEPTION 'key "%" is already used by another item of batch %',
			payload ->> 'key', it.batch_id
			USING ERRCODE = 'unique_violation',
				  HINT = 'Keys identify items within a batch; pick another key.';
	END;
	INSERT INTO batch.events (batch_id, item_id, level, event, message, actor)
	VALUES (it.batch_id, item_id, 'info', 'item_updated',
			format('payload of item %s updated', item_id), pg_get_userbyid(caller));
END
$$;

CREATE FUNCTION batch_internal.cancel(caller regrole, batch bigint) RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bid bigint := batch_internal.batch_id(caller, batch);
	n bigint;
BEGIN
	UPDATE batch.batches b SET cancelled_at = clock_timestamp(), cancelled_by = pg_get_userbyid(caller)
	WHERE b.id = bid AND b.cancelled_at IS NULL;
	IF NOT FOUND THEN
		RAISE NOTICE 'batch % is already cancelled', bid;
		RETURN 0;
	END IF;
	UPDATE batch.items i SET status = 'cancelled', finished_at = clock_timestamp(),
		updated_at = clock_timestamp()
	WHERE i.batch_id = bid AND i.status = 'pending';
	GET DIAGNOSTICS n = ROW_COUNT;
	INSERT INTO batch.events (batch_id, level, event, message, detail, actor)
	VALUES (bid, 'warning', 'cancelled', format('batch cancelled; %s waiting items cancelled', n),
			jsonb_build_object('items', n), pg_get_userbyid(caller));
	RETURN n;
END
$$;

CREATE FUNCTION batch_internal.cancel(caller regrole, batch text) RETURNS bigint
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN batch_internal.cancel(caller, batch_internal.batch_id(caller, batch));

/*
 * Gives a batch to another role the caller is a member of: stage functions
 * run as the owner, so anything else would let a role run code with
 * privileges it does not have.
 */
CREATE FUNCTION batch_internal.set_owner(caller regrole, batch bigint, owner name)
	RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bid bigint := batch_internal.batch_id(caller, batch);
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = set_owner.owner) THEN
		RAISE EXCEPTION 'role "%" does not exist', owner USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT batch_internal.is_member(caller, owner) THEN
		RAISE EXCEPTION 'permission denied to give a batch to role "%"', owner
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Stage functions run as the batch''s owner, so a batch can only belong to a role you are a member of.';
	END IF;
	PERFORM batch_internal.require_use(to_regrole(set_owner.owner), b.pipeline_id)
	FROM batch.batches b WHERE b.id = bid;
	UPDATE batch.batches b SET owner = set_owner.owner WHERE b.id = bid;
	INSERT INTO batch.events (batch_id, level, event, message, detail, actor)
	VALUES (bid, 'info', 'owner_changed', format('batch given to role %I', owner),
			jsonb_build_object('owner', owner), pg_get_userbyid(caller));
END
$$;

CREATE FUNCTION batch_internal.set_owner(caller regrole, batch text, owner name)
	RETURNS void
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN batch_internal.set_owner(caller, batch_internal.batch_id(caller, batch), owner);

/*
 * Sets a batch's priority among its owner's batches: executors claim the due
 * items of an owner's higher-priority batches first, and its lower ones get
 * what is left.  Owners still take turns, so a priority never takes time from
 * another owner's batches.
 */
CREATE FUNCTION batch_internal.set_priority(caller regrole, batch bigint, priority integer)
	RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bid bigint := batch_internal.batch_id(caller, batch);
	was integer;
BEGIN
	IF bid IS NULL THEN
		RAISE EXCEPTION 'batch must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	IF priority IS NULL OR priority NOT BETWEEN -1000 AND 1000 THEN
		RAISE EXCEPTION 'priority must be between -1000 and 1000'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The priority given was %s.', coalesce(priority::text, 'NULL'));
	END IF;
	SELECT b.priority INTO was FROM batch.batches b WHERE b.id = bid FOR UPDATE;
	IF was = priority THEN
		RETURN;
	END IF;
	UPDATE batch.batches b SET priority = set_priority.priority WHERE b.id = bid;
	INSERT INTO batch.events (batch_id, level, event, message, detail, actor)
	VALUES (bid, 'info', 'priority_changed', format('batch priority set to %s (was %s)', priority, was),
			jsonb_build_object('priority', priority, 'was', was), pg_get_userbyid(caller));
END
$$;

CREATE FUNCTION batch_internal.set_priority(caller regrole, batch text, priority integer)
	RETURNS void
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN batch_internal.set_priority(caller, batch_internal.batch_id(caller, batch), priority);

CREATE FUNCTION batch_internal.rerun_stage(caller regrole, batch bigint, stage text,
	wait boolean)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bid bigint := batch_internal.batch_id(caller, batch);
	pos integer;
	later text[];
	n bigint;
	skipped bigint;
BEGIN
	IF stage IS NULL THEN
		RAISE EXCEPTION 'stage must not be NULL' USING ERRCODE = 'null_value_not_allowed';
	END IF;
	-- the guards of every requeue, and its lock (src/requeue.c)
	IF NOT batch_internal.requeue_begin(caller, bid, stage, wait) THEN
		RETURN 0;
	END IF;
	SELECT s.position INTO pos FROM batch.stages s JOIN batch.batches x ON x.pipeline_id = s.pipeline_id
	WHERE x.id = bid AND s.name = rerun_stage.stage;
	SELECT array_agg(s.name) INTO later FROM batch.stages s JOIN batch.batches x ON x.pipeline_id = s.pipeline_id
	WHERE x.id = bid AND s.position >= pos;

	WITH requeued AS (
		UPDATE batch.items i
		SET status = 'pending', stage = rerun_stage.stage, attempt = 0, next_due = clock_timestamp(),
			error_code = NULL, error_message = NULL, finished_at = NULL, updated_at = clock_timestamp()
		WHERE i.batch_id = bid AND i.status IN ('pending', 'completed', 'failed')
		  AND i.stage = ANY (later)
		RETURNING i.id
	), dropped AS (
		DELETE FROM batch.outputs o USING requeued r
		WHERE o.item_id = r.id AND o.stage = ANY (later)
	)
	SELECT count(*) INTO n FROM requeued;
	SELECT count(*) INTO skipped FROM batch.items i
	WHERE i.batch_id = bid AND i.status = 'running' AND i.stage = ANY (later);
	IF skipped > 0 THEN
		RAISE NOTICE '% running items were left alone', skipped
			USING HINT = 'Call batch.rerun_stage() again once they have finished.';
	END IF;
	INSERT INTO batch.events (batch_id, level, event, message, detail, actor)
	VALUES (bid, 'info', 'stage_rerun',
			format('%s items re-queued at stage %s', n, stage),
			jsonb_build_object('items', n, 'stage', stage, 'running_left', skipped),
			pg_get_userbyid(caller));
	RETURN n;
END
$$;

CREATE FUNCTION batch_internal.rerun_stage(caller regrole, batch text, stage text,
	wait boolean)
	RETURNS bigint
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN batch_internal.rerun_stage(caller, batch_internal.batch_id(caller, batch), stage, wait);

-- A batch's items by counter bucket, counted from the items themselves.
CREATE FUNCTION batch_internal.item_counts(batch_id bigint,
	OUT pending bigint, OUT retrying bigint, OUT running bigint, OUT completed bigint,
	OUT failed bigint, OUT cancelled bigint)
	RETURNS record
	LANGUAGE sql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
	SELECT count(*) FILTER (WHERE k.bucket = 'pending'),
		   count(*) FILTER (WHERE k.bucket = 'retrying'),
		   count(*) FILTER (WHERE k.bucket = 'running'),
		   count(*) FILTER (WHERE k.bucket = 'completed'),
		   count(*) FILTER (WHERE k.bucket = 'failed'),
		   count(*) FILTER (WHERE k.bucket = 'cancelled')
	FROM batch.items i, batch_internal.item_bucket(i.status, i.attempt) AS k(bucket)
	WHERE i.batch_id = item_counts.batch_id
$$;

/* ------------------------------------------------------------------------
 * The public functions (gates: src/gate.c)
 * ------------------------------------------------------------------------ */

CREATE FUNCTION batch.submit(pipeline text, items jsonb, name text DEFAULT NULL)
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.submit(text,jsonb,text) IS
	'submits a JSON array of items as a new batch of the pipeline, owned by the caller; returns the batch id';

CREATE FUNCTION batch.add_items(batch bigint, items jsonb) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.add_items(bigint,jsonb) IS
	'adds a JSON array of items to a batch; returns how many were inserted';

CREATE FUNCTION batch.add_items(batch text, items jsonb) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.add_items(text,jsonb) IS
	'adds a JSON array of items to a batch (by name); returns how many were inserted';

CREATE FUNCTION batch.run(batch bigint, max_items bigint DEFAULT NULL,
	max_seconds float8 DEFAULT NULL,
	OUT stages_run bigint, OUT items_completed bigint, OUT retries_scheduled bigint,
	OUT items_failed bigint, OUT next_due timestamptz) RETURNS record
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.run(bigint,bigint,double precision) IS
	'runs a batch''s due work in this session, within limits; returns what it did and when the next item is due';

CREATE FUNCTION batch.run(batch text DEFAULT NULL, max_items bigint DEFAULT NULL,
	max_seconds float8 DEFAULT NULL,
	OUT stages_run bigint, OUT items_completed bigint, OUT retries_scheduled bigint,
	OUT items_failed bigint, OUT next_due timestamptz) RETURNS record
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.run(text,bigint,double precision) IS
	'runs the due work of a batch (by name), or of every batch the caller may act on, in this session';

CREATE FUNCTION batch.retry_failed(batch bigint, max_retries integer DEFAULT NULL,
	backoff_factor float8 DEFAULT NULL, error_codes text[] DEFAULT NULL, stage text DEFAULT NULL,
	wait boolean DEFAULT false)
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.retry_failed(bigint,integer,double precision,text[],text,boolean) IS
	're-queues the failed items of a batch at the stage where they failed, outputs kept; under the batch''s advisory lock (wait: block until another call holding it is done, instead of returning 0)';

CREATE FUNCTION batch.retry_failed(batch text, max_retries integer DEFAULT NULL,
	backoff_factor float8 DEFAULT NULL, error_codes text[] DEFAULT NULL, stage text DEFAULT NULL,
	wait boolean DEFAULT false)
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.retry_failed(text,integer,double precision,text[],text,boolean) IS
	're-queues the failed items of a batch (by name) at the stage where they failed, outputs kept';

CREATE FUNCTION batch.retry_item(item_id bigint) RETURNS boolean
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.retry_item(bigint) IS
	're-queues one failed item at its stage; true if it was';

CREATE FUNCTION batch.update_item(item_id bigint, payload jsonb) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.update_item(bigint,jsonb) IS
	'replaces the payload of a pending, failed or cancelled item (validated)';

CREATE FUNCTION batch.cancel(batch bigint) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.cancel(bigint) IS
	'cancels a batch: its waiting items become cancelled; returns how many';

CREATE FUNCTION batch.cancel(batch text) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.cancel(text) IS
	'cancels a batch (by name): its waiting items become cancelled; returns how many';

CREATE FUNCTION batch.set_owner(batch text, owner name) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.set_owner(text,name) IS
	'gives a batch (by name) to a role the caller is a member of; its stages then run as that role';

CREATE FUNCTION batch.set_owner(batch bigint, owner name) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.set_owner(bigint,name) IS
	'gives a batch to a role the caller is a member of; its stages then run as that role';

CREATE FUNCTION batch.set_priority(batch bigint, priority integer) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.set_priority(bigint,integer) IS
	'sets the batch''s priority (-1000 to 1000, default 0) among its owner''s batches: higher runs first';

CREATE FUNCTION batch.set_priority(batch text, priority integer) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.set_priority(text,integer) IS
	'sets the batch''s (by name) priority (-1000 to 1000, default 0) among its owner''s batches: higher runs first';

CREATE FUNCTION batch.rerun_stage(batch bigint, stage text, wait boolean DEFAULT false)
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.rerun_stage(bigint,text,boolean) IS
	're-queues a batch''s items from a stage on, dropping that stage''s and later outputs; earlier outputs kept (wait: block on the batch''s lock instead of returning 0)';

CREATE FUNCTION batch.rerun_stage(batch text, stage text, wait boolean DEFAULT false)
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.rerun_stage(text,text,boolean) IS
	're-queues a batch''s (by name) items from a stage on, dropping that stage''s and later outputs';

-- the counters follow every change of the items
CREATE TRIGGER items_count_insert AFTER INSERT ON batch.items
	REFERENCING NEW TABLE AS new_items
	FOR EACH STATEMENT EXECUTE FUNCTION batch_internal.count_items();
CREATE TRIGGER items_count_update AFTER UPDATE ON batch.items
	REFERENCING OLD TABLE AS old_items NEW TABLE AS new_items
	FOR EACH STATEMENT EXECUTE FUNCTION batch_internal.count_items();
CREATE TRIGGER items_count_delete AFTER DELETE ON batch.items
	REFERENCING OLD TABLE AS old_items
	FOR EACH STATEMENT EXECUTE FUNCTION batch_internal.count_items();
-- and so does the queue
CREATE TRIGGER items_queue_insert AFTER INSERT ON batch.items
	REFERENCING NEW TABLE AS new_items
	FOR EACH STATEMENT EXECUTE FUNCTION batch_internal.queue_items();
CREATE TRIGGER items_queue_update AFTER UPDATE ON batch.items
	REFERENCING NEW TABLE AS new_items
	FOR EACH STATEMENT EXECUTE FUNCTION batch_internal.queue_items();
CREATE TRIGGER items_queue_delete AFTER DELETE ON batch.items
	REFERENCING OLD TABLE AS old_items
	FOR EACH STATEMENT EXECUTE FUNCTION batch_internal.queue_items();
CREATE TRIGGER batches_finished BEFORE UPDATE OF counted_at ON batch.batches
	FOR EACH ROW WHEN (NEW.counted_at IS NOT NULL)
	EXECUTE FUNCTION batch_internal.announce_finished();
