/* pgbatch--1.0--1.1.sql
 *
 * Background workers and HTTP stages: endpoints (with their limits and
 * secret headers), HTTP stages in pipelines, leases on running items, the
 * HTTP details of every attempt, and the live endpoint state.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pgbatch UPDATE TO '1.1'" to load this file. \quit

/* ------------------------------------------------------------------------
 * Endpoints
 * ------------------------------------------------------------------------ */

-- An HTTP API that stages call.  headers hold secrets: only admins read them.
CREATE TABLE batch.endpoints (
	id					integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name				text NOT NULL UNIQUE,
	base_url			text NOT NULL CHECK (base_url ~* '^https?://[^/?#]+'),
	headers				jsonb NOT NULL DEFAULT '{}',
	max_concurrency		integer NOT NULL DEFAULT 8
		CHECK (max_concurrency BETWEEN 1 AND 10000),
	rate_limit			integer CHECK (rate_limit BETWEEN 1 AND 6000000),
	timeout				interval NOT NULL DEFAULT '60 s'
		CHECK (timeout > interval '0' AND timeout <= interval '1 hour'),
	follow_redirects	boolean NOT NULL DEFAULT false,
	created_at			timestamptz NOT NULL DEFAULT now(),
	created_by			name NOT NULL DEFAULT current_user
);
COMMENT ON COLUMN batch.endpoints.rate_limit IS 'requests per minute across all workers; NULL for none';
SELECT pg_catalog.pg_extension_config_dump('batch.endpoints', '');

ALTER TABLE batch.stages
	ADD COLUMN endpoint_id integer REFERENCES batch.endpoints,
	ADD COLUMN method text CHECK (method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
	ADD COLUMN path text,
	ADD CONSTRAINT stages_http_check CHECK
		((kind = 'http') = (endpoint_id IS NOT NULL AND method IS NOT NULL AND path IS NOT NULL));
COMMENT ON COLUMN batch.stages.func IS
	'SQL stage: the stage function; HTTP stage: the optional request body function';

-- The executor holding a running item, and until when.
ALTER TABLE batch.items
	ADD COLUMN claimed_by integer,
	ADD COLUMN lease_until timestamptz;

-- What an HTTP attempt sent back.
ALTER TABLE batch.attempts
	ADD COLUMN http_status smallint,
	ADD COLUMN response_size integer,
	ADD COLUMN response_sha256 text,
	ADD COLUMN response_body text;
COMMENT ON COLUMN batch.attempts.response_body IS
	'the body of a response that did not succeed (the first 4 kB); a successful one is the stage output';

/* ------------------------------------------------------------------------
 * C helpers
 * ------------------------------------------------------------------------ */

-- Wakes the launcher at commit, so that the executors of this database start.
CREATE FUNCTION batch._wake_launcher() RETURNS void
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'pgbatch_wake_launcher';

-- Live state of every endpoint the executors of this database have used.
CREATE FUNCTION batch._endpoint_state(
	OUT endpoint_id integer, OUT in_flight integer, OUT max_concurrency integer,
	OUT tokens float8, OUT paused_until timestamptz, OUT circuit text,
	OUT consecutive_failures integer, OUT requests bigint, OUT failures bigint)
	RETURNS SETOF record
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'pgbatch_endpoint_state';

-- The executors running for this database.
CREATE FUNCTION batch._workers(OUT pid integer, OUT worker integer,
	OUT started_at timestamptz, OUT in_flight integer, OUT requests bigint)
	RETURNS SETOF record
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'pgbatch_workers';

/* ------------------------------------------------------------------------
 * Endpoint API
 * ------------------------------------------------------------------------ */

-- Checks an endpoint's settings; raises an error naming what is wrong.
CREATE FUNCTION batch._check_endpoint(name text, base_url text, headers jsonb,
	max_concurrency integer, rate_limit integer, timeout interval)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	v jsonb;
BEGIN
	IF name IS NULL OR btrim(name) = '' THEN
		RAISE EXCEPTION 'endpoint name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF base_url IS NULL OR base_url !~* '^https?://[^/?#@[:space:]]+' OR base_url ~ '[[:space:][:cntrl:]]' THEN
		RAISE EXCEPTION 'base_url of endpoint "%" must be an http:// or https:// URL, not %', name, coalesce(quote_literal(base_url), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example ''https://api.openai.com''; only http and https are allowed.';
	END IF;
	IF headers IS NULL OR jsonb_typeof(headers) <> 'object' THEN
		RAISE EXCEPTION 'headers of endpoint "%" must be a JSON object of strings', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(headers) LOOP
		IF k !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$' OR jsonb_typeof(v) <> 'string'
		   OR (v #>> '{}') ~ '[\r\n\x01-\x08\x0b\x0c\x0e-\x1f]' THEN
			RAISE EXCEPTION 'header "%" of endpoint "%" is not a valid HTTP header', k, name
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'Header names are tokens; values are strings without line breaks or control characters.';
		END IF;
		IF lower(k) IN ('content-length', 'host', 'transfer-encoding', 'idempotency-key', 'connection') THEN
			RAISE EXCEPTION 'header "%" of endpoint "%" is set by pgbatch', k, name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	IF max_concurrency IS NULL OR max_concurrency NOT BETWEEN 1 AND 10000 THEN
		RAISE EXCEPTION 'max_concurrency of endpoint "%" must be from 1 to 10000', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF rate_limit IS NOT NULL AND rate_limit NOT BETWEEN 1 AND 6000000 THEN
		RAISE EXCEPTION 'rate_limit of endpoint "%" must be from 1 to 6000000 requests per minute, or NULL for none', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF timeout IS NULL OR timeout <= interval '0' OR timeout > interval '1 hour' THEN
		RAISE EXCEPTION 'timeout of endpoint "%" must be from 1 ms to 1 hour', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
END
$$;

/*
 * Creates an endpoint: an HTTP API with its base URL, headers (kept secret),
 * a concurrency limit and a rate limit shared by all workers, and a timeout.
 */
CREATE FUNCTION batch.create_endpoint(name text, base_url text,
	headers jsonb DEFAULT '{}', max_concurrency integer DEFAULT 8,
	rate_limit integer DEFAULT NULL, timeout interval DEFAULT '60 s',
	follow_redirects boolean DEFAULT false)
	RETURNS integer
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	eid integer;
BEGIN
	PERFORM batch._check_endpoint(name, base_url, headers, max_concurrency, rate_limit, timeout);
	IF EXISTS (SELECT FROM batch.endpoints e WHERE e.name = create_endpoint.name) THEN
		RAISE EXCEPTION 'endpoint "%" already exists', name
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Change it with batch.alter_endpoint().';
	END IF;
	INSERT INTO batch.endpoints (name, base_url, headers, max_concurrency, rate_limit,
								 timeout, follow_redirects)
	VALUES (name, rtrim(base_url, '/'), headers, max_concurrency, rate_limit, timeout,
			coalesce(follow_redirects, false))
	RETURNING id INTO eid;
	RETURN eid;
END
$$;

-- Changes the given settings of an endpoint (NULL keeps a setting).
CREATE FUNCTION batch.alter_endpoint(name text, base_url text DEFAULT NULL,
	headers jsonb DEFAULT NULL, max_concurrency integer DEFAULT NULL,
	rate_limit integer DEFAULT NULL, timeout interval DEFAULT NULL,
	follow_redirects boolean DEFAULT NULL)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e batch.endpoints;
BEGIN
	SELECT * INTO e FROM batch.endpoints x WHERE x.name = alter_endpoint.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'endpoint "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
	e.base_url := rtrim(coalesce(base_url, e.base_url), '/');
	e.headers := coalesce(headers, e.headers);
	e.max_concurrency := coalesce(max_concurrency, e.max_concurrency);
	e.rate_limit := coalesce(rate_limit, e.rate_limit);
	e.timeout := coalesce(timeout, e.timeout);
	e.follow_redirects := coalesce(follow_redirects, e.follow_redirects);
	PERFORM batch._check_endpoint(e.name, e.base_url, e.headers, e.max_concurrency,
								  e.rate_limit, e.timeout);
	UPDATE batch.endpoints x
	SET base_url = e.base_url, headers = e.headers, max_concurrency = e.max_concurrency,
		rate_limit = e.rate_limit, timeout = e.timeout, follow_redirects = e.follow_redirects
	WHERE x.id = e.id;
END
$$;

-- Drops an endpoint that no pipeline uses.
CREATE FUNCTION batch.drop_endpoint(name text) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	eid integer;
BEGIN
	SELECT e.id INTO eid FROM batch.endpoints e WHERE e.name = drop_endpoint.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'endpoint "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
	IF EXISTS (SELECT FROM batch.stages s WHERE s.endpoint_id = eid) THEN
		RAISE EXCEPTION 'endpoint "%" is used by pipelines', name
			USING ERRCODE = 'dependent_objects_still_exist',
				  HINT = 'Drop the pipelines that call it first.';
	END IF;
	DELETE FROM batch.endpoints e WHERE e.id = eid;
END
$$;

/*
 * Validates the "http" object of a stage: {"endpoint", "method", "path",
 * "body"}; returns it resolved ({"endpoint_id", "method", "path", "body"}).
 */
CREATE FUNCTION batch._http_stage(http jsonb, stage text) RETURNS jsonb
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	eid integer;
	m text;
	p text;
	fn regprocedure;
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
		fn := batch._stage_function(http ->> 'body');
	END IF;
	RETURN jsonb_build_object('endpoint_id', eid, 'method', m, 'path', p, 'body', fn::text);
END
$$;

CREATE OR REPLACE FUNCTION batch.create_pipeline(name text, stages jsonb,
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
		IF (st ? 'http') = (st ? 'sql') THEN
			RAISE EXCEPTION 'stage "%" of pipeline "%" needs exactly one of "sql" and "http"', sname, name
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'A SQL stage is {"name": "...", "sql": "schema.function"}; an HTTP stage is {"name": "...", "http": {"endpoint": "...", "path": "/..."}}.';
		END IF;
		IF st ? 'http' THEN
			h := batch._http_stage(st -> 'http', sname);
			kind := 'http';
			fn := (h ->> 'body')::regprocedure;
		ELSE
			IF jsonb_typeof(st -> 'sql') <> 'string' THEN
				RAISE EXCEPTION 'stage "%" of pipeline "%" needs "sql": the name of a function f(payload jsonb, outputs jsonb) returning jsonb', sname, name
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			h := NULL;
			kind := 'sql';
			fn := batch._stage_function(st ->> 'sql');
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

		spolicy := batch._retry_policy(policy, st -> 'retry', format('stage "%s"', sname));

		INSERT INTO batch.stages (pipeline_id, position, name, kind, func, timeout,
								  max_retries, backoff_base, backoff_factor,
								  backoff_max, jitter, endpoint_id, method, path)
		VALUES (pid, pos, sname, kind, fn, tmo,
				(spolicy ->> 'max_retries')::integer,
				(spolicy ->> 'backoff_base')::interval,
				(spolicy ->> 'backoff_factor')::float8,
				(spolicy ->> 'backoff_max')::interval,
				(spolicy ->> 'jitter')::float8,
				(h ->> 'endpoint_id')::integer, h ->> 'method', h ->> 'path');
	END LOOP;
	RETURN pid;
END
$$;


/* ------------------------------------------------------------------------
 * Views
 * ------------------------------------------------------------------------ */

-- the log gains the HTTP status of each attempt
CREATE OR REPLACE VIEW batch.log AS
SELECT a.batch_id, a.item_id, a.stage, a.attempt,
	   CASE a.outcome WHEN 'completed' THEN 'info' WHEN 'retry' THEN 'warning' ELSE 'error' END AS level,
	   'stage_' || a.outcome AS event,
	   a.error_code, a.message, a.started_at, a.finished_at,
	   round(extract(epoch FROM a.finished_at - a.started_at) * 1000, 3) AS duration_ms,
	   a.http_status
FROM batch.attempts a
UNION ALL
SELECT e.batch_id, e.item_id, NULL, NULL, e.level, e.event,
	   NULL, e.message || ' (by ' || e.actor || ')', e.created_at, e.created_at, NULL, NULL
FROM batch.events e;

-- Endpoints as operators see them: settings (never the headers) and live state.
CREATE VIEW batch.endpoint_status AS
SELECT e.id, e.name, e.base_url, e.max_concurrency, e.rate_limit, e.timeout,
	   coalesce(s.in_flight, 0) AS in_flight,
	   CASE WHEN s.paused_until > now() THEN s.paused_until END AS paused_until,
	   coalesce(s.circuit, 'closed') AS circuit,
	   coalesce(s.consecutive_failures, 0) AS consecutive_failures,
	   coalesce(s.requests, 0) AS requests,
	   coalesce(s.failures, 0) AS failures
FROM batch.endpoints e
LEFT JOIN batch._endpoint_state() s ON s.endpoint_id = e.id;

-- The executors working for this database.
CREATE VIEW batch.workers AS
SELECT w.pid, w.worker, w.started_at, w.in_flight, w.requests
FROM batch._workers() w;

/* ------------------------------------------------------------------------
 * Privileges
 * ------------------------------------------------------------------------ */

REVOKE ALL ON batch.endpoints FROM PUBLIC;
REVOKE ALL ON FUNCTION batch._wake_launcher(), batch._endpoint_state(), batch._workers(),
	batch._check_endpoint(text, text, jsonb, integer, integer, interval),
	batch.create_endpoint(text, text, jsonb, integer, integer, interval, boolean),
	batch.alter_endpoint(text, text, jsonb, integer, integer, interval, boolean),
	batch.drop_endpoint(text), batch._http_stage(jsonb, text)
	FROM PUBLIC;

GRANT SELECT ON batch.log, batch.endpoint_status, batch.workers TO pgbatch_reader;
GRANT EXECUTE ON FUNCTION batch._endpoint_state(), batch._workers() TO pgbatch_reader;
-- everything but the headers
GRANT SELECT (id, name, base_url, max_concurrency, rate_limit, timeout, follow_redirects,
			  created_at, created_by) ON batch.endpoints TO pgbatch_operator;
GRANT SELECT, INSERT, UPDATE, DELETE ON batch.endpoints TO pgbatch_admin;
GRANT EXECUTE ON FUNCTION
	batch._check_endpoint(text, text, jsonb, integer, integer, interval),
	batch.create_endpoint(text, text, jsonb, integer, integer, interval, boolean),
	batch.alter_endpoint(text, text, jsonb, integer, integer, interval, boolean),
	batch.drop_endpoint(text), batch._http_stage(jsonb, text)
	TO pgbatch_admin;

-- start this database's executors once the extension is committed
SELECT batch._wake_launcher();
