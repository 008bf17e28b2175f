/*
 * src/sql/pipelines.sql
 *
 * Pipelines: ordered stages (SQL functions or HTTP requests) and the retry
 * policy they share; their limits, costs, use grants and the approval of
 * their stage functions.
 */

-- A stage function by name, checked to be callable by the role.
CREATE FUNCTION batch_internal.stage_function(role regrole, fn text) RETURNS regprocedure
	LANGUAGE c STABLE STRICT
	AS 'MODULE_PATHNAME', 'pgbatch_stage_function_1_4';

-- The limits that the SQL functions enforce.
CREATE FUNCTION batch_internal.limits(OUT max_items_per_call integer, OUT max_pipelines integer,
	OUT max_stages integer, OUT retention interval)
	LANGUAGE c STABLE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_limits';

/*
 * The limits on pipelines (pgbatch.max_pipelines) and their stages
 * (pgbatch.max_stages), checked as create_pipeline() inserts them.
 */
CREATE FUNCTION batch_internal.check_pipeline_limits() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	lim record := batch_internal.limits();
	n bigint;
BEGIN
	IF TG_TABLE_NAME = 'stages' THEN
		IF NEW.position > lim.max_stages THEN
			RAISE EXCEPTION 'pipeline "%" has more than % stages, the limit',
				(SELECT p.name FROM batch.pipelines p WHERE p.id = NEW.pipeline_id), lim.max_stages
				USING ERRCODE = 'program_limit_exceeded',
					  HINT = 'The limit is pgbatch.max_stages, which a superuser may raise.';
		END IF;
		RETURN NEW;
	END IF;
	-- one new pipeline at a time, so that concurrent ones cannot pass the limit together
	LOCK TABLE batch.pipelines IN SHARE ROW EXCLUSIVE MODE;
	SELECT count(*) INTO n FROM batch.pipelines;
	IF n >= lim.max_pipelines THEN
		RAISE EXCEPTION 'there are already % pipelines, the limit', n
			USING ERRCODE = 'program_limit_exceeded',
				  HINT = 'Drop unused pipelines with batch.drop_pipeline(), or have a superuser raise pgbatch.max_pipelines.';
	END IF;
	RETURN NEW;
END
$$;

-- NULL if the value is allowed for the retry setting (max_retries,
-- backoff_factor, jitter), else what it must be: the C rule retry_failed()
-- applies too.
CREATE FUNCTION batch_internal.retry_setting_problem(key text, value float8) RETURNS text
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_retry_setting_problem';

/*
 * Validates a retry policy object and merges it over a base policy.
 * Intervals may be given as interval text ("2 s") or as seconds.
 */
CREATE FUNCTION batch_internal.retry_policy(base jsonb, policy jsonb, what text)
	RETURNS jsonb
	LANGUAGE plpgsql IMMUTABLE
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	v jsonb;
	result jsonb := base;
	num float8;
	why text;
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
		WHEN 'max_retries', 'backoff_factor', 'jitter' THEN
			-- the limits are the C rule's, shared with retry_failed()
			IF jsonb_typeof(v) = 'number' THEN
				num := least(greatest((v #>> '{}')::numeric, -1e300), 1e300)::float8;
				why := batch_internal.retry_setting_problem(k, num);
			ELSIF k = 'max_retries' THEN
				why := batch_internal.retry_setting_problem(k, 'NaN');
			ELSE
				why := 'a number';
			END IF;
			IF why IS NOT NULL AND k = 'jitter' AND jsonb_typeof(v) = 'number' THEN
				RAISE EXCEPTION '% of % must be %, not %', k, what, why, v
					USING ERRCODE = 'invalid_parameter_value',
						  DETAIL = 'Jitter is the fraction by which a delay may vary either way.';
			ELSIF why IS NOT NULL THEN
				RAISE EXCEPTION '% of % must be %, not %', k, what, why, v
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			result := result || jsonb_build_object(k, CASE WHEN k = 'max_retries'
														 THEN to_jsonb(num::integer) ELSE to_jsonb(num) END);
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

CREATE FUNCTION batch_internal.grant_pipeline(caller regrole, pipeline text, grantee name)
	RETURNS boolean
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN batch_internal.set_usage(caller, 'pipeline', pipeline, grantee, true);

CREATE FUNCTION batch_internal.revoke_pipeline(caller regrole, pipeline text, grantee name)
	RETURNS boolean
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN batch_internal.set_usage(caller, 'pipeline', pipeline, grantee, false);

/*
 * Approves the current definitions of a pipeline's stage functions (an
 * admin, after reviewing a change); returns how many stages' pins changed.
 */
CREATE FUNCTION batch_internal.refresh_pipeline(caller regrole, name text) RETURNS integer
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	pid integer;
	n integer;
BEGIN
	PERFORM batch_internal.require_role(caller, 'pgbatch_admin', 'approve stage functions');
	SELECT p.id INTO pid FROM batch.pipelines p WHERE p.name = refresh_pipeline.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'pipeline "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
	UPDATE batch.stages s SET func_pin = batch_internal.function_pin(s.func)
	WHERE s.pipeline_id = pid AND s.func IS NOT NULL
	  AND s.func_pin IS DISTINCT FROM batch_internal.function_pin(s.func);
	GET DIAGNOSTICS n = ROW_COUNT;
	RETURN n;
END
$$;

/*
 * Checks the "http" of a stage; returns its endpoint id, method, path and
 * the name of its body function (resolved by create_pipeline for the role).
 */
CREATE FUNCTION batch_internal.http_stage(http jsonb, stage text)
	RETURNS jsonb
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	eid integer;
	m text;
	p text;
BEGIN
	IF http IS NULL OR jsonb_typeof(http) <> 'object' THEN
		RAISE EXCEPTION '"http" of stage "%" must be a JSON object', stage
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example {"endpoint": "llm", "method": "POST", "path": "/v1/chat/completions"}.';
	END IF;
	FOR k IN SELECT jsonb_object_keys(http) LOOP
		IF k NOT IN ('endpoint', 'method', 'path', 'body') THEN
			RAISE EXCEPTION 'unknown key "%" in "http" of stage "%"', k, stage
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'HTTP stage keys are endpoint, method, path and body.';
		END IF;
	END LOOP;
	SELECT e.id INTO eid FROM batch.endpoints e WHERE e.name = http ->> 'endpoint';
	IF NOT FOUND THEN
		RAISE EXCEPTION 'endpoint "%" of stage "%" does not exist', http ->> 'endpoint', stage
			USING ERRCODE = 'undefined_object',
				  HINT = 'Create it first with batch.create_endpoint().';
	END IF;
	m := upper(coalesce(http ->> 'method', 'POST'));
	IF m NOT IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE') THEN
		RAISE EXCEPTION 'method of stage "%" must be GET, POST, PUT, PATCH or DELETE, not %', stage, http -> 'method'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	p := coalesce(http ->> 'path', '/');
	IF left(p, 1) <> '/' OR p ~ '[[:space:][:cntrl:]#]' THEN
		RAISE EXCEPTION 'path of stage "%" must start with "/" and hold no spaces, control characters or "#"', stage
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF http ? 'body' THEN
		IF jsonb_typeof(http -> 'body') <> 'string' THEN
			RAISE EXCEPTION 'body of stage "%" must name a function f(payload jsonb, outputs jsonb) returning jsonb', stage
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END IF;
	RETURN jsonb_build_object('endpoint_id', eid, 'method', m, 'path', p, 'body', http ->> 'body');
END
$$;

CREATE FUNCTION batch_internal.create_pipeline(caller regrole, name text, stages jsonb,
	retry jsonb, required text[])
	RETURNS integer
	LANGUAGE plpgsql SECURITY DEFINER
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
	h jsonb;
	kind text;
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

	policy := batch_internal.retry_policy(
		'{"max_retries": 3, "backoff_base": "2 s", "backoff_factor": 2,
		  "backoff_max": "600 s", "jitter": 0.2}',
		retry, format('pipeline "%s"', name));

	INSERT INTO batch.pipelines (name, definition, retry, required, created_by)
	VALUES (create_pipeline.name, stages, policy, create_pipeline.required, pg_get_userbyid(caller))
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
		IF (st ? 'http') = (st ? 'sql') THEN
			RAISE EXCEPTION 'stage "%" of pipeline "%" needs exactly one of "sql" and "http"', sname, name
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'A SQL stage is {"name": "...", "sql": "schema.function"}; an HTTP stage is {"name": "...", "http": {"endpoint": "...", "path": "/..."}}.';
		END IF;
		IF st ? 'http' THEN
			h := batch_internal.http_stage(st -> 'http', sname);
			kind := 'http';
			IF NOT coalesce(batch_internal.may_use(caller, 'endpoint', (h ->> 'endpoint_id')::integer), false) THEN
				RAISE EXCEPTION 'role "%" may not use endpoint "%"', pg_get_userbyid(caller), st -> 'http' ->> 'endpoint'
					USING ERRCODE = 'insufficient_privilege',
						  HINT = 'A member of the endpoint''s creator role or an admin can grant it with batch.grant_endpoint().';
			END IF;
			IF h ->> 'body' IS NOT NULL THEN
				fn := batch_internal.stage_function(caller, h ->> 'body');
			ELSE
				fn := NULL;
			END IF;
		ELSE
			IF jsonb_typeof(st -> 'sql') <> 'string' THEN
				RAISE EXCEPTION 'stage "%" of pipeline "%" needs "sql": the name of a function f(payload jsonb, outputs jsonb) returning jsonb', sname, name
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			h := NULL;
			kind := 'sql';
			fn := batch_internal.stage_function(caller, st ->> 'sql');
		END IF;

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

		spolicy := batch_internal.retry_policy(policy, st -> 'retry', format('stage "%s"', sname));

		INSERT INTO batch.stages (pipeline_id, position, name, kind, func, func_pin, timeout,
								  max_retries, backoff_base, backoff_factor,
								  backoff_max, jitter, endpoint_id, method, path)
		VALUES (pid, pos, sname, kind, fn, batch_internal.function_pin(fn), tmo,
				(spolicy ->> 'max_retries')::integer,
				(spolicy ->> 'backoff_base')::interval,
				(spolicy ->> 'backoff_factor')::float8,
				(spolicy ->> 'backoff_max')::interval,
				(spolicy ->> 'jitter')::float8,
				(h ->> 'endpoint_id')::integer, h ->> 'method', h ->> 'path');
	END LOOP;
	-- pipelines are shared: every operator may submit, until an admin revokes it
	INSERT INTO batch.usage_grants (object_kind, object_id, grantee, granted_by)
	VALUES ('pipeline', pid, 'pgbatch_operator', pg_get_userbyid(caller));
	RETURN pid;
END
$$;

CREATE FUNCTION batch_internal.drop_pipeline(caller regrole, name text) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER
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
	DELETE FROM batch.usage_grants g WHERE g.object_kind = 'pipeline' AND g.object_id = pid;
END
$$;

CREATE FUNCTION batch_internal.set_stage_cost(caller regrole, pipeline text, stage text,
	tokens text, price_per_1k_tokens numeric)
	RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	upath text[];
BEGIN
	IF tokens IS NOT NULL THEN
		IF tokens !~ '^[A-Za-z0-9_$-]+(\.[A-Za-z0-9_$-]+)*$' THEN
			RAISE EXCEPTION 'tokens must be a dotted path such as ''usage.total_tokens'', not %', quote_literal(tokens)
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
		upath := string_to_array(tokens, '.');
	END IF;
	IF price_per_1k_tokens < 0 THEN
		RAISE EXCEPTION 'price_per_1k_tokens must not be negative'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	UPDATE batch.stages s
	SET usage_path = upath, price_per_1k_tokens = set_stage_cost.price_per_1k_tokens
	FROM batch.pipelines p
	WHERE p.id = s.pipeline_id AND p.name = set_stage_cost.pipeline AND s.name = set_stage_cost.stage;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'pipeline "%" has no stage "%"', pipeline, stage
			USING ERRCODE = 'undefined_object';
	END IF;
END
$$;

/* ------------------------------------------------------------------------
 * The public functions (gates: src/gate.c)
 * ------------------------------------------------------------------------ */

CREATE FUNCTION batch.grant_pipeline(pipeline text, grantee name) RETURNS boolean
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.grant_pipeline(text,name) IS
	'lets a role (and its members) submit to a pipeline';

CREATE FUNCTION batch.revoke_pipeline(pipeline text, grantee name) RETURNS boolean
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.revoke_pipeline(text,name) IS
	'takes back batch.grant_pipeline()';

CREATE FUNCTION batch.refresh_pipeline(name text) RETURNS integer
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.refresh_pipeline(text) IS
	'approves the current definitions of a pipeline''s stage functions; returns how many changed (admins)';

CREATE FUNCTION batch.create_pipeline(name text, stages jsonb, retry jsonb DEFAULT '{}',
	required text[] DEFAULT '{}') RETURNS integer
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.create_pipeline(text,jsonb,jsonb,text[]) IS
	'creates a pipeline: ordered SQL and HTTP stages, a retry policy, required item keys; returns its id (admins)';

CREATE FUNCTION batch.drop_pipeline(name text) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.drop_pipeline(text) IS
	'drops a pipeline no batch uses (admins)';

CREATE FUNCTION batch.set_stage_cost(pipeline text, stage text, tokens text,
	price_per_1k_tokens numeric DEFAULT NULL) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.set_stage_cost(text,text,text,numeric) IS
	'says where a stage''s output reports its token usage, and the price per 1,000 tokens (admins)';

CREATE TRIGGER pipelines_limit BEFORE INSERT ON batch.pipelines
	FOR EACH ROW EXECUTE FUNCTION batch_internal.check_pipeline_limits();
CREATE TRIGGER stages_limit BEFORE INSERT ON batch.stages
	FOR EACH ROW EXECUTE FUNCTION batch_internal.check_pipeline_limits();
