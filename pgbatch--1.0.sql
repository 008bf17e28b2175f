/* pgbatch--1.0.sql
 *
 * The pgbatch data model and SQL API: pipelines of stages, batches of items,
 * per-item and per-stage state, the attempt history, the maintained batch
 * counters, and the views that operators and BI tools read.
 */

-- complain if script is sourced in psql, rather than via CREATE EXTENSION
\echo Use "CREATE EXTENSION pgbatch" to load this file. \quit

/*
 * Roles.  Roles are cluster-wide, so a second database that installs the
 * extension finds them already there.
 */
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgbatch_reader') THEN
		CREATE ROLE pgbatch_reader NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgbatch_operator') THEN
		CREATE ROLE pgbatch_operator NOLOGIN;
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgbatch_admin') THEN
		CREATE ROLE pgbatch_admin NOLOGIN;
	END IF;
	IF NOT pg_catalog.pg_has_role('pgbatch_operator', 'pgbatch_reader', 'MEMBER') THEN
		GRANT pgbatch_reader TO pgbatch_operator;
	END IF;
	IF NOT pg_catalog.pg_has_role('pgbatch_admin', 'pgbatch_operator', 'MEMBER') THEN
		GRANT pgbatch_operator TO pgbatch_admin;
	END IF;
END
$roles$;

REVOKE ALL ON SCHEMA batch FROM PUBLIC;
GRANT USAGE ON SCHEMA batch TO pgbatch_reader;

/* ------------------------------------------------------------------------
 * Tables
 * ------------------------------------------------------------------------ */

-- A pipeline: an ordered list of stages and the retry policy they share.
CREATE TABLE batch.pipelines (
	id			integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name		text NOT NULL UNIQUE,
	definition	jsonb NOT NULL,
	retry		jsonb NOT NULL,
	required	text[] NOT NULL DEFAULT '{}',
	created_at	timestamptz NOT NULL DEFAULT now(),
	created_by	name NOT NULL DEFAULT current_user
);

-- One row per stage, with its effective (merged) retry policy resolved.
CREATE TABLE batch.stages (
	pipeline_id		integer NOT NULL REFERENCES batch.pipelines ON DELETE CASCADE,
	position		smallint NOT NULL CHECK (position >= 1),
	name			text NOT NULL,
	kind			text NOT NULL CHECK (kind IN ('sql', 'http')),
	func			regprocedure,
	timeout			interval,
	max_retries		integer NOT NULL CHECK (max_retries >= 0),
	backoff_base	interval NOT NULL,
	backoff_factor	float8 NOT NULL CHECK (backoff_factor >= 1),
	backoff_max		interval NOT NULL,
	jitter			float8 NOT NULL CHECK (jitter >= 0 AND jitter <= 1),
	PRIMARY KEY (pipeline_id, position),
	UNIQUE (pipeline_id, name)
);

CREATE SEQUENCE batch.batches_id_seq;

-- A batch: a run of one pipeline over a set of items.
CREATE TABLE batch.batches (
	id				bigint PRIMARY KEY DEFAULT nextval('batch.batches_id_seq'),
	name			text NOT NULL UNIQUE,
	pipeline_id		integer NOT NULL REFERENCES batch.pipelines,
	owner			name NOT NULL DEFAULT current_user,
	created_at		timestamptz NOT NULL DEFAULT now(),
	cancelled_at	timestamptz,
	cancelled_by	name
);
ALTER SEQUENCE batch.batches_id_seq OWNED BY batch.batches.id;

/*
 * An item: the hot row.  Stage outputs live in batch.outputs and the attempt
 * history in batch.attempts so that this row stays narrow.
 */
CREATE TABLE batch.items (
	id				bigint GENERATED ALWAYS AS IDENTITY (CACHE 100) PRIMARY KEY,
	batch_id		bigint NOT NULL REFERENCES batch.batches ON DELETE CASCADE,
	key				text,
	payload			jsonb NOT NULL,
	status			text NOT NULL DEFAULT 'pending'
		CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
	stage			text NOT NULL,
	attempt			integer NOT NULL DEFAULT 0,
	next_due		timestamptz NOT NULL DEFAULT now(),
	error_code		text,
	error_message	text,
	max_retries		integer CHECK (max_retries >= 0),
	backoff_factor	float8 CHECK (backoff_factor >= 1),
	created_at		timestamptz NOT NULL DEFAULT now(),
	updated_at		timestamptz NOT NULL DEFAULT now(),
	finished_at		timestamptz
);
COMMENT ON COLUMN batch.items.attempt IS
	'attempts made so far at the current stage';
COMMENT ON COLUMN batch.items.max_retries IS
	'per-item override of the stage''s max_retries, set by batch.retry_failed()';
COMMENT ON COLUMN batch.items.backoff_factor IS
	'per-item override of the stage''s backoff_factor, set by batch.retry_failed()';

-- Due work, per batch and across batches: only pending rows are indexed.
CREATE INDEX items_due_batch_idx ON batch.items (batch_id, next_due, id)
	WHERE status = 'pending';
CREATE INDEX items_due_idx ON batch.items (next_due, id)
	WHERE status = 'pending';
-- Failed items: keeps retry_failed() and the review queue O(failed).
CREATE INDEX items_failed_idx ON batch.items (batch_id, stage, error_code)
	WHERE status = 'failed';
-- Items a worker holds (leases).
CREATE INDEX items_running_idx ON batch.items (batch_id)
	WHERE status = 'running';
-- Dedupe by caller-given key within a batch.
CREATE UNIQUE INDEX items_key_idx ON batch.items (batch_id, key)
	WHERE key IS NOT NULL;

-- The output of each completed stage of each item.
CREATE TABLE batch.outputs (
	item_id		bigint NOT NULL,
	stage		text NOT NULL,
	output		jsonb,
	created_at	timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (item_id, stage)
);

-- Every attempt of every stage: the per-batch log.
CREATE TABLE batch.attempts (
	id			bigint GENERATED ALWAYS AS IDENTITY (CACHE 100) PRIMARY KEY,
	batch_id	bigint NOT NULL,
	item_id		bigint NOT NULL,
	stage		text NOT NULL,
	attempt		integer NOT NULL,
	outcome		text NOT NULL CHECK (outcome IN ('completed', 'retry', 'failed')),
	error_code	text,
	message		text,
	started_at	timestamptz NOT NULL,
	finished_at	timestamptz NOT NULL
);
CREATE INDEX attempts_batch_idx ON batch.attempts (batch_id, finished_at);
CREATE INDEX attempts_item_idx ON batch.attempts (item_id);

-- Batch-level events: submissions, retries asked for, cancellations.
CREATE TABLE batch.events (
	id			bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	batch_id	bigint,
	item_id		bigint,
	level		text NOT NULL CHECK (level IN ('info', 'warning', 'error')),
	event		text NOT NULL,
	message		text NOT NULL,
	detail		jsonb,
	actor		name NOT NULL DEFAULT current_user,
	created_at	timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX events_batch_idx ON batch.events (batch_id, created_at);

/*
 * Item counts per batch, maintained by statement triggers on batch.items.
 * Each backend writes its own shard row, so concurrent executors never queue
 * on one hot counter row; readers add the shards up.  'pending' here counts
 * only items waiting for a first attempt at their stage, 'retrying' those
 * waiting for a retry.
 */
CREATE TABLE batch.counters (
	batch_id	bigint NOT NULL,
	shard		integer NOT NULL,
	pending		bigint NOT NULL DEFAULT 0,
	retrying	bigint NOT NULL DEFAULT 0,
	running		bigint NOT NULL DEFAULT 0,
	completed	bigint NOT NULL DEFAULT 0,
	failed		bigint NOT NULL DEFAULT 0,
	cancelled	bigint NOT NULL DEFAULT 0,
	started_at	timestamptz,
	updated_at	timestamptz NOT NULL,
	PRIMARY KEY (batch_id, shard)
) WITH (fillfactor = 50);

SELECT pg_catalog.pg_extension_config_dump('batch.pipelines', '');
SELECT pg_catalog.pg_extension_config_dump('batch.stages', '');
SELECT pg_catalog.pg_extension_config_dump('batch.batches', '');
SELECT pg_catalog.pg_extension_config_dump('batch.batches_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('batch.items', '');
SELECT pg_catalog.pg_extension_config_dump('batch.outputs', '');
SELECT pg_catalog.pg_extension_config_dump('batch.attempts', '');
SELECT pg_catalog.pg_extension_config_dump('batch.events', '');
SELECT pg_catalog.pg_extension_config_dump('batch.counters', '');

/* ------------------------------------------------------------------------
 * Internal helpers (C)
 * ------------------------------------------------------------------------ */

CREATE FUNCTION batch._max_payload_size() RETURNS integer
	LANGUAGE c STABLE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_max_payload_size';

CREATE FUNCTION batch._stage_function(fn text) RETURNS regprocedure
	LANGUAGE c STABLE STRICT
	AS 'MODULE_PATHNAME', 'pgbatch_stage_function';

CREATE FUNCTION batch._run(batch_id bigint, max_items bigint, max_seconds float8,
	OUT stages_run bigint, OUT items_completed bigint, OUT retries_scheduled bigint,
	OUT items_failed bigint, OUT next_due timestamptz)
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'pgbatch_run';

CREATE FUNCTION batch._requeue(batch_id bigint, item_id bigint, max_retries integer,
	backoff_factor float8, error_codes text[], stage text, take_lock boolean)
	RETURNS bigint
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'pgbatch_requeue';

/* ------------------------------------------------------------------------
 * Internal helpers (SQL)
 * ------------------------------------------------------------------------ */

-- The batch id for a batch name, or an error naming it.
CREATE FUNCTION batch._batch_id(batch text) RETURNS bigint
	LANGUAGE plpgsql STABLE STRICT
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bid bigint;
BEGIN
	SELECT b.id INTO bid FROM batch.batches b WHERE b.name = _batch_id.batch;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'batch "%" does not exist', batch
			USING ERRCODE = 'undefined_object',
				  HINT = 'See batch.progress for the batches there are.';
	END IF;
	RETURN bid;
END
$$;

-- Checks that a batch id exists; returns it.
CREATE FUNCTION batch._batch_id(batch bigint) RETURNS bigint
	LANGUAGE plpgsql STABLE STRICT
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT FROM batch.batches b WHERE b.id = _batch_id.batch) THEN
		RAISE EXCEPTION 'batch % does not exist', batch
			USING ERRCODE = 'undefined_object',
				  HINT = 'See batch.progress for the batches there are.';
	END IF;
	RETURN batch;
END
$$;

/*
 * Why an input element cannot become a runnable item, or NULL when it can:
 * not a JSON object, larger than max_size bytes, or a required key missing
 * or blank (JSON null or only white space).
 */
CREATE FUNCTION batch._invalid_reason(e jsonb, required text[], max_size integer)
	RETURNS text
	LANGUAGE c IMMUTABLE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_invalid_reason';

-- Inserts the elements of a JSON array as items of a batch; see submit().
CREATE FUNCTION batch._insert_items(target bigint, items jsonb,
	OUT inserted bigint, OUT invalid bigint, OUT duplicates bigint)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	req text[];
	first_stage text;
	max_size integer := batch._max_payload_size();
	given bigint;
BEGIN
	IF items IS NULL OR jsonb_typeof(items) <> 'array' THEN
		RAISE EXCEPTION 'items must be a JSON array, not %', coalesce(jsonb_typeof(items), 'SQL NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Pass one JSON object per item, for example ''[{"topic": "..."}]''.';
	END IF;

	SELECT p.required, s.name INTO req, first_stage
	FROM batch.batches b
	JOIN batch.pipelines p ON p.id = b.pipeline_id
	JOIN batch.stages s ON s.pipeline_id = p.id AND s.position = 1
	WHERE b.id = target;

	given := jsonb_array_length(items);

	WITH elements AS MATERIALIZED (
		SELECT t.e, t.ord, batch._invalid_reason(t.e, req, max_size) AS why
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

/*
 * Validates a retry policy object and merges it over a base policy.
 * Intervals may be given as interval text ("2 s") or as seconds.
 */
CREATE FUNCTION batch._retry_policy(base jsonb, policy jsonb, what text)
	RETURNS jsonb
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	v jsonb;
	result jsonb := base;
	num float8;
	iv interval;
BEGIN
	IF policy IS NULL OR policy = 'null'::jsonb THEN
		RETURN result;
	END IF;
	IF jsonb_typeof(policy) <> 'object' THEN
		RAISE EXCEPTION 'retry policy of % must be a JSON object', what
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(policy) LOOP
		CASE k
		WHEN 'max_retries' THEN
			IF jsonb_typeof(v) <> 'number' OR (v #>> '{}')::numeric <> trunc((v #>> '{}')::numeric)
			   OR (v #>> '{}')::numeric NOT BETWEEN 0 AND 1000 THEN
				RAISE EXCEPTION 'max_retries of % must be a whole number from 0 to 1000, not %', what, v
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			result := result || jsonb_build_object(k, (v #>> '{}')::integer);
		WHEN 'backoff_factor', 'jitter' THEN
			IF jsonb_typeof(v) <> 'number' THEN
				RAISE EXCEPTION '% of % must be a number, not %', k, what, v
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			num := (v #>> '{}')::float8;
			IF k = 'backoff_factor' AND num NOT BETWEEN 1 AND 100 THEN
				RAISE EXCEPTION 'backoff_factor of % must be from 1 to 100, not %', what, v
					USING ERRCODE = 'invalid_parameter_value';
			ELSIF k = 'jitter' AND num NOT BETWEEN 0 AND 1 THEN
				RAISE EXCEPTION 'jitter of % must be from 0 to 1, not %', what, v
					USING ERRCODE = 'invalid_parameter_value',
						  DETAIL = 'Jitter is the fraction by which a delay may vary either way.';
			END IF;
			result := result || jsonb_build_object(k, num);
		WHEN 'backoff_base', 'backoff_max' THEN
			BEGIN
				IF jsonb_typeof(v) = 'number' THEN
					iv := make_interval(secs => (v #>> '{}')::float8);
				ELSIF jsonb_typeof(v) = 'string' THEN
					iv := (v #>> '{}')::interval;
				ELSE
					RAISE EXCEPTION USING ERRCODE = 'invalid_datetime_format';
				END IF;
			EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow
						OR invalid_text_representation OR syntax_error THEN
				RAISE EXCEPTION '% of % must be an interval such as "2 s" or a number of seconds, not %',
					k, what, v
					USING ERRCODE = 'invalid_parameter_value';
			END;
			IF iv < interval '0' OR iv > interval '7 days' THEN
				RAISE EXCEPTION '% of % must be from 0 to 7 days, not %', k, what, v
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			result := result || jsonb_build_object(k, trim_scale(extract(epoch FROM iv)) || ' s');
		ELSE
			RAISE EXCEPTION 'unknown retry key "%" in %', k, what
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Retry keys are max_retries, backoff_base, backoff_factor, backoff_max and jitter.';
		END CASE;
	END LOOP;
	IF (result ->> 'backoff_base')::interval > (result ->> 'backoff_max')::interval THEN
		RAISE EXCEPTION 'backoff_base of % (%) is larger than its backoff_max (%)', what,
			result ->> 'backoff_base', result ->> 'backoff_max'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Raise backoff_max too: no delay is ever longer than backoff_max.';
	END IF;
	RETURN result;
END
$$;

/* ------------------------------------------------------------------------
 * Pipelines
 * ------------------------------------------------------------------------ */

/*
 * Creates a pipeline: stages run in order for every item; each SQL stage is
 * a function f(payload jsonb, outputs jsonb) RETURNS jsonb.
 */
CREATE FUNCTION batch.create_pipeline(name text, stages jsonb,
	retry jsonb DEFAULT '{}', required text[] DEFAULT '{}')
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pid integer;
	policy jsonb;
	spolicy jsonb;
	st jsonb;
	pos integer;
	sname text;
	k text;
	fn regprocedure;
	tmo interval;
	seen text[] := '{}';
BEGIN
	IF name IS NULL OR btrim(name) = '' THEN
		RAISE EXCEPTION 'pipeline name must not be empty'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF EXISTS (SELECT FROM batch.pipelines p WHERE p.name = create_pipeline.name) THEN
		RAISE EXCEPTION 'pipeline "%" already exists', name
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Pick another name, or drop it first with batch.drop_pipeline().';
	END IF;
	IF stages IS NULL OR jsonb_typeof(stages) <> 'array' OR jsonb_array_length(stages) = 0 THEN
		RAISE EXCEPTION 'stages of pipeline "%" must be a non-empty JSON array', name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example ''[{"name": "outline", "sql": "app.make_outline"}]''.';
	END IF;
	IF required IS NULL OR array_position(required, NULL) IS NOT NULL THEN
		RAISE EXCEPTION 'required keys of pipeline "%" must not be NULL', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;

	policy := batch._retry_policy(
		'{"max_retries": 3, "backoff_base": "2 s", "backoff_factor": 2,
		  "backoff_max": "600 s", "jitter": 0.2}',
		retry, format('pipeline "%s"', name));

	INSERT INTO batch.pipelines (name, definition, retry, required)
	VALUES (create_pipeline.name, stages, policy, create_pipeline.required)
	RETURNING id INTO pid;

	FOR st, pos IN SELECT * FROM jsonb_array_elements(stages) WITH ORDINALITY LOOP
		IF jsonb_typeof(st) <> 'object' THEN
			RAISE EXCEPTION 'stage % of pipeline "%" must be a JSON object', pos, name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		sname := st ->> 'name';
		IF sname IS NULL OR btrim(sname) = '' OR jsonb_typeof(st -> 'name') <> 'string' THEN
			RAISE EXCEPTION 'stage % of pipeline "%" needs a "name"', pos, name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		IF sname = ANY (seen) THEN
			RAISE EXCEPTION 'stage name "%" appears twice in pipeline "%"', sname, name
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'Stage names key the outputs passed to later stages, so they must be unique.';
		END IF;
		seen := seen || sname;
		FOR k IN SELECT jsonb_object_keys(st) LOOP
			IF k NOT IN ('name', 'sql', 'http', 'retry', 'timeout') THEN
				RAISE EXCEPTION 'unknown key "%" in stage "%" of pipeline "%"', k, sname, name
					USING ERRCODE = 'invalid_parameter_value',
						  HINT = 'Stage keys are name, sql, http, retry and timeout.';
			END IF;
		END LOOP;
		IF st ? 'http' THEN
			RAISE EXCEPTION 'stage "%" of pipeline "%" is an http stage, which this version of pgbatch cannot run', sname, name
				USING ERRCODE = 'feature_not_supported',
					  HINT = 'Use a SQL stage: {"name": "...", "sql": "schema.function"}.';
		END IF;
		IF NOT st ? 'sql' OR jsonb_typeof(st -> 'sql') <> 'string' THEN
			RAISE EXCEPTION 'stage "%" of pipeline "%" needs "sql": the name of a function f(payload jsonb, outputs jsonb) returning jsonb', sname, name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		fn := batch._stage_function(st ->> 'sql');

		tmo := NULL;
		IF st ? 'timeout' THEN
			BEGIN
				IF jsonb_typeof(st -> 'timeout') = 'number' THEN
					tmo := make_interval(secs => (st ->> 'timeout')::float8);
				ELSE
					tmo := (st ->> 'timeout')::interval;
				END IF;
			EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow
						OR invalid_text_representation OR syntax_error THEN
				tmo := NULL;
			END;
			IF tmo IS NULL OR tmo <= interval '0' OR tmo > interval '1 day' THEN
				RAISE EXCEPTION 'timeout of stage "%" must be an interval from 1 ms to 1 day, not %', sname, st -> 'timeout'
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
		END IF;

		spolicy := batch._retry_policy(policy, st -> 'retry', format('stage "%s"', sname));

		INSERT INTO batch.stages (pipeline_id, position, name, kind, func, timeout,
								  max_retries, backoff_base, backoff_factor,
								  backoff_max, jitter)
		VALUES (pid, pos, sname, 'sql', fn, tmo,
				(spolicy ->> 'max_retries')::integer,
				(spolicy ->> 'backoff_base')::interval,
				(spolicy ->> 'backoff_factor')::float8,
				(spolicy ->> 'backoff_max')::interval,
				(spolicy ->> 'jitter')::float8);
	END LOOP;
	RETURN pid;
END
$$;

-- Drops a pipeline that no batch uses.
CREATE FUNCTION batch.drop_pipeline(name text) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pid integer;
BEGIN
	SELECT p.id INTO pid FROM batch.pipelines p WHERE p.name = drop_pipeline.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'pipeline "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
	IF EXISTS (SELECT FROM batch.batches b WHERE b.pipeline_id = pid) THEN
		RAISE EXCEPTION 'pipeline "%" is used by batches', name
			USING ERRCODE = 'dependent_objects_still_exist',
				  HINT = 'A pipeline can be dropped once no batch refers to it.';
	END IF;
	DELETE FROM batch.pipelines p WHERE p.id = pid;
END
$$;

/* ------------------------------------------------------------------------
 * Batches and items
 * ------------------------------------------------------------------------ */

-- Creates a batch of items for a pipeline; returns the batch id.
CREATE FUNCTION batch.submit(pipeline text, items jsonb, name text DEFAULT NULL)
	RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pid integer;
	bid bigint;
	r record;
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

	bid := nextval('batch.batches_id_seq');
	INSERT INTO batch.batches (id, name, pipeline_id)
	VALUES (bid, coalesce(submit.name, 'batch_' || bid), pid);

	r := batch._insert_items(bid, items);
	INSERT INTO batch.events (batch_id, level, event, message, detail)
	VALUES (bid, 'info', 'submitted',
			format('batch submitted with %s items (%s invalid, %s duplicates skipped)',
				   r.inserted, r.invalid, r.duplicates),
			jsonb_build_object('items', r.inserted, 'invalid', r.invalid,
							   'duplicates', r.duplicates, 'pipeline', pipeline));
	RETURN bid;
END
$$;

-- Adds items to an existing batch; returns the number inserted.
CREATE FUNCTION batch.add_items(batch bigint, items jsonb) RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bid bigint := batch._batch_id(batch);
	r record;
BEGIN
	PERFORM FROM batch.batches b WHERE b.id = bid AND b.cancelled_at IS NOT NULL;
	IF FOUND THEN
		RAISE EXCEPTION 'batch % is cancelled', bid
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Submit a new batch instead.';
	END IF;
	r := batch._insert_items(bid, items);
	INSERT INTO batch.events (batch_id, level, event, message, detail)
	VALUES (bid, 'info', 'items_added',
			format('%s items added (%s invalid, %s duplicates skipped)',
				   r.inserted, r.invalid, r.duplicates),
			jsonb_build_object('items', r.inserted, 'invalid', r.invalid,
							   'duplicates', r.duplicates));
	RETURN r.inserted;
END
$$;

CREATE FUNCTION batch.add_items(batch text, items jsonb) RETURNS bigint
	LANGUAGE sql
	SET search_path = pg_catalog, pg_temp
	RETURN batch.add_items(batch._batch_id(batch), items);

/*
 * Runs due work in this session until nothing is due now: every SQL stage of
 * every due item, in order, each in its own subtransaction.  Does not sleep
 * through backoffs; next_due says when the next item is due.
 */
CREATE FUNCTION batch.run(batch bigint, max_items bigint DEFAULT NULL,
	max_seconds float8 DEFAULT NULL,
	OUT stages_run bigint, OUT items_completed bigint, OUT retries_scheduled bigint,
	OUT items_failed bigint, OUT next_due timestamptz)
	LANGUAGE sql
	SET search_path = pg_catalog, pg_temp
	BEGIN ATOMIC
		SELECT * FROM batch._run(batch._batch_id(batch), max_items, max_seconds);
	END;

CREATE FUNCTION batch.run(batch text DEFAULT NULL, max_items bigint DEFAULT NULL,
	max_seconds float8 DEFAULT NULL,
	OUT stages_run bigint, OUT items_completed bigint, OUT retries_scheduled bigint,
	OUT items_failed bigint, OUT next_due timestamptz)
	LANGUAGE sql
	SET search_path = pg_catalog, pg_temp
	BEGIN ATOMIC
		SELECT * FROM batch._run(CASE WHEN batch IS NOT NULL THEN batch._batch_id(batch) END,
								 max_items, max_seconds);
	END;

/*
 * Re-queues the failed items of a batch at the stage where they failed,
 * keeping earlier stages' outputs.  Guarded by a transaction-scoped advisory
 * lock on (1346847297, batch id): a concurrent call returns 0.
 */
CREATE FUNCTION batch.retry_failed(batch bigint, max_retries integer DEFAULT NULL,
	backoff_factor float8 DEFAULT NULL, error_codes text[] DEFAULT NULL,
	stage text DEFAULT NULL)
	RETURNS bigint
	LANGUAGE sql
	SET search_path = pg_catalog, pg_temp
	RETURN batch._requeue(batch._batch_id(batch), NULL, max_retries, backoff_factor,
						  error_codes, stage, true);

CREATE FUNCTION batch.retry_failed(batch text, max_retries integer DEFAULT NULL,
	backoff_factor float8 DEFAULT NULL, error_codes text[] DEFAULT NULL,
	stage text DEFAULT NULL)
	RETURNS bigint
	LANGUAGE sql
	SET search_path = pg_catalog, pg_temp
	RETURN batch._requeue(batch._batch_id(batch), NULL, max_retries, backoff_factor,
						  error_codes, stage, true);

-- Re-queues one failed item at the stage where it failed.
CREATE FUNCTION batch.retry_item(item_id bigint) RETURNS boolean
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	it record;
	why text;
BEGIN
	SELECT i.batch_id, i.status, i.error_code, i.payload, p.required INTO it
	FROM batch.items i
	JOIN batch.batches b ON b.id = i.batch_id
	JOIN batch.pipelines p ON p.id = b.pipeline_id
	WHERE i.id = item_id;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'item % does not exist', item_id USING ERRCODE = 'undefined_object';
	END IF;
	IF it.status <> 'failed' THEN
		RAISE EXCEPTION 'item % is %, not failed', item_id, it.status
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Only failed items can be retried.';
	END IF;
	IF it.error_code = 'invalid_input' THEN
		why := batch._invalid_reason(it.payload, it.required, batch._max_payload_size());
		IF why IS NOT NULL THEN
			RAISE EXCEPTION 'item % is still invalid: %', item_id, why
				USING ERRCODE = 'object_not_in_prerequisite_state',
					  HINT = 'Fix its payload with batch.update_item() first.';
		END IF;
	END IF;
	RETURN batch._requeue(it.batch_id, item_id, NULL, NULL, NULL, NULL, false) = 1;
END
$$;

-- Replaces the payload (and so the key) of an item that is not running or
-- completed.
CREATE FUNCTION batch.update_item(item_id bigint, payload jsonb) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	it record;
	why text;
BEGIN
	SELECT i.batch_id, i.status, p.required INTO it
	FROM batch.items i
	JOIN batch.batches b ON b.id = i.batch_id
	JOIN batch.pipelines p ON p.id = b.pipeline_id
	WHERE i.id = item_id
	FOR UPDATE OF i;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'item % does not exist', item_id USING ERRCODE = 'undefined_object';
	END IF;
	IF it.status IN ('running', 'completed') THEN
		RAISE EXCEPTION 'item % is %; its payload can no longer change', item_id, it.status
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Only pending, failed and cancelled items can be updated.';
	END IF;
	why := batch._invalid_reason(payload, it.required, batch._max_payload_size());
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
	INSERT INTO batch.events (batch_id, item_id, level, event, message)
	VALUES (it.batch_id, item_id, 'info', 'item_updated', format('payload of item %s updated', item_id));
END
$$;

-- Cancels a batch: its waiting items become cancelled; returns how many.
CREATE FUNCTION batch.cancel(batch bigint) RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bid bigint := batch._batch_id(batch);
	n bigint;
BEGIN
	UPDATE batch.batches b SET cancelled_at = clock_timestamp(), cancelled_by = current_user
	WHERE b.id = bid AND b.cancelled_at IS NULL;
	IF NOT FOUND THEN
		RAISE NOTICE 'batch % is already cancelled', bid;
		RETURN 0;
	END IF;
	UPDATE batch.items i SET status = 'cancelled', finished_at = clock_timestamp(),
		updated_at = clock_timestamp()
	WHERE i.batch_id = bid AND i.status = 'pending';
	GET DIAGNOSTICS n = ROW_COUNT;
	INSERT INTO batch.events (batch_id, level, event, message, detail)
	VALUES (bid, 'warning', 'cancelled', format('batch cancelled; %s waiting items cancelled', n),
			jsonb_build_object('items', n));
	RETURN n;
END
$$;

CREATE FUNCTION batch.cancel(batch text) RETURNS bigint
	LANGUAGE sql
	SET search_path = pg_catalog, pg_temp
	RETURN batch.cancel(batch._batch_id(batch));

/* ------------------------------------------------------------------------
 * Counters
 * ------------------------------------------------------------------------ */

/*
 * Statement trigger on batch.items (C): folds the status changes of a
 * statement, read from its transition tables, into this backend's shard row
 * of batch.counters.
 */
CREATE FUNCTION batch._count_items() RETURNS trigger
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'pgbatch_count_items';

CREATE TRIGGER items_count_insert AFTER INSERT ON batch.items
	REFERENCING NEW TABLE AS new_items
	FOR EACH STATEMENT EXECUTE FUNCTION batch._count_items();
CREATE TRIGGER items_count_update AFTER UPDATE ON batch.items
	REFERENCING OLD TABLE AS old_items NEW TABLE AS new_items
	FOR EACH STATEMENT EXECUTE FUNCTION batch._count_items();
CREATE TRIGGER items_count_delete AFTER DELETE ON batch.items
	REFERENCING OLD TABLE AS old_items
	FOR EACH STATEMENT EXECUTE FUNCTION batch._count_items();

/* ------------------------------------------------------------------------
 * Views
 * ------------------------------------------------------------------------ */

CREATE VIEW batch.progress AS
SELECT b.id, b.name, p.name AS pipeline,
	   CASE
		   WHEN b.cancelled_at IS NOT NULL THEN 'cancelled'
		   WHEN c.total = 0 THEN 'queued'
		   WHEN c.pending + c.retrying + c.running > 0 THEN
			   CASE WHEN c.started_at IS NULL THEN 'queued' ELSE 'running' END
		   WHEN c.failed = 0 AND c.completed = 0 THEN 'cancelled'
		   WHEN c.failed = 0 THEN 'completed'
		   WHEN c.completed = 0 THEN 'failed'
		   ELSE 'partial'
	   END AS status,
	   c.total,
	   c.pending + c.retrying AS pending,
	   c.running, c.retrying, c.completed, c.failed, c.cancelled,
	   round(c.completed::numeric / nullif(c.total, 0), 4) AS completion_ratio,
	   b.created_at, c.started_at,
	   CASE WHEN c.total > 0 AND c.pending + c.retrying + c.running = 0
			THEN greatest(c.updated_at, b.cancelled_at) END AS finished_at,
	   b.owner
FROM batch.batches b
JOIN batch.pipelines p ON p.id = b.pipeline_id
CROSS JOIN LATERAL (
	SELECT coalesce(sum(k.pending + k.retrying + k.running + k.completed
						+ k.failed + k.cancelled), 0)::bigint AS total,
		   coalesce(sum(k.pending), 0)::bigint AS pending,
		   coalesce(sum(k.retrying), 0)::bigint AS retrying,
		   coalesce(sum(k.running), 0)::bigint AS running,
		   coalesce(sum(k.completed), 0)::bigint AS completed,
		   coalesce(sum(k.failed), 0)::bigint AS failed,
		   coalesce(sum(k.cancelled), 0)::bigint AS cancelled,
		   min(k.started_at) AS started_at,
		   max(k.updated_at) AS updated_at
	FROM batch.counters k
	WHERE k.batch_id = b.id
) c;

CREATE VIEW batch.errors AS
SELECT i.batch_id, b.name AS batch, i.stage, i.error_code,
	   count(*) AS items,
	   min(i.finished_at) AS first_seen,
	   max(i.finished_at) AS last_seen,
	   (array_agg(i.error_message ORDER BY i.finished_at DESC, i.id))[1] AS sample_error
FROM batch.items i
JOIN batch.batches b ON b.id = i.batch_id
WHERE i.status = 'failed'
GROUP BY i.batch_id, b.name, i.stage, i.error_code;

CREATE VIEW batch.log AS
SELECT a.batch_id, a.item_id, a.stage, a.attempt,
	   CASE a.outcome WHEN 'completed' THEN 'info' WHEN 'retry' THEN 'warning' ELSE 'error' END AS level,
	   'stage_' || a.outcome AS event,
	   a.error_code, a.message, a.started_at, a.finished_at,
	   round(extract(epoch FROM a.finished_at - a.started_at) * 1000, 3) AS duration_ms
FROM batch.attempts a
UNION ALL
SELECT e.batch_id, e.item_id, NULL, NULL, e.level, e.event,
	   NULL, e.message || ' (by ' || e.actor || ')', e.created_at, e.created_at, NULL
FROM batch.events e;

CREATE VIEW batch.review_queue AS
SELECT i.batch_id, i.id AS item_id, i.key, i.stage, i.error_code,
	   i.error_message AS error, i.attempt AS attempts, i.payload,
	   i.finished_at AS failed_at
FROM batch.items i
WHERE i.status = 'failed';

/* ------------------------------------------------------------------------
 * Privileges: nothing for PUBLIC; readers see progress, errors and the log;
 * operators run and repair batches; admins manage pipelines.
 * ------------------------------------------------------------------------ */

REVOKE ALL ON ALL TABLES IN SCHEMA batch FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA batch FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA batch FROM PUBLIC;

GRANT SELECT ON batch.progress, batch.errors, batch.log TO pgbatch_reader;

GRANT SELECT ON batch.review_queue, batch.pipelines, batch.stages TO pgbatch_operator;
GRANT SELECT, INSERT, UPDATE ON batch.batches, batch.items, batch.outputs,
	batch.counters TO pgbatch_operator;
GRANT SELECT, INSERT ON batch.attempts, batch.events TO pgbatch_operator;
GRANT USAGE ON SEQUENCE batch.batches_id_seq, batch.items_id_seq,
	batch.attempts_id_seq, batch.events_id_seq TO pgbatch_operator;
GRANT EXECUTE ON FUNCTION
	batch._max_payload_size(), batch._batch_id(text),
	batch._batch_id(bigint), batch._invalid_reason(jsonb, text[], integer),
	batch._insert_items(bigint, jsonb), batch._count_items(),
	batch._run(bigint, bigint, float8),
	batch._requeue(bigint, bigint, integer, float8, text[], text, boolean),
	batch.submit(text, jsonb, text),
	batch.add_items(bigint, jsonb), batch.add_items(text, jsonb),
	batch.run(bigint, bigint, float8), batch.run(text, bigint, float8),
	batch.retry_failed(bigint, integer, float8, text[], text),
	batch.retry_failed(text, integer, float8, text[], text),
	batch.retry_item(bigint), batch.update_item(bigint, jsonb),
	batch.cancel(bigint), batch.cancel(text)
	TO pgbatch_operator;

GRANT INSERT, UPDATE, DELETE ON batch.pipelines, batch.stages TO pgbatch_admin;
GRANT USAGE ON SEQUENCE batch.pipelines_id_seq TO pgbatch_admin;
GRANT EXECUTE ON FUNCTION
	batch._stage_function(text), batch._retry_policy(jsonb, jsonb, text),
	batch.create_pipeline(text, jsonb, jsonb, text[]), batch.drop_pipeline(text)
	TO pgbatch_admin;
