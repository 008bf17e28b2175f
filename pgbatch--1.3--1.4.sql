/* pgbatch--1.3--1.4.sql
 *
 * One trust boundary.  No role but the extension's owner writes a pgbatch
 * table: every change goes through the public functions, each of which is
 * a gate (src/gate.c) that calls its implementation in the schema
 * batch_internal with the role in effect for the call as a first argument
 * (the session's role from psql, the batch owner inside a stage, the job's
 * role under pg_cron).  The implementations are SECURITY DEFINER functions
 * of the extension's owner with a fixed search_path, executable by nobody
 * else, and decide every authorization for that role alone: row-level
 * security still governs what roles read directly, and no longer has any
 * write to govern.  Endpoint headers are checked by one rule in C, here
 * and again when a request is built; a base_url with user:password@ is
 * refused.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pgbatch UPDATE TO '1.4'" to load this file. \quit

CREATE SCHEMA batch_internal;
REVOKE ALL ON SCHEMA batch_internal FROM PUBLIC;
COMMENT ON SCHEMA batch_internal IS
	'pgbatch''s implementations and helpers: executable by the extension''s owner only';

/* ------------------------------------------------------------------------
 * C helpers for the implementations
 * ------------------------------------------------------------------------ */

-- Does this role see batches owned by 'owner'?  (member, admin, monitor)
CREATE FUNCTION batch_internal.can_see(role regrole, owner name) RETURNS boolean
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_role_can_see';

-- May this role act on batches owned by 'owner'?  (member, admin)
CREATE FUNCTION batch_internal.can_act(role regrole, owner name) RETURNS boolean
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_role_can_act';

-- Is this role a member of role 'of'?  (being an admin is not enough)
CREATE FUNCTION batch_internal.is_member(role regrole, of name) RETURNS boolean
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_role_is_member';

-- NULL if an endpoint may send this header, else why not (never the value).
CREATE FUNCTION batch_internal.header_problem(name text, value text) RETURNS text
	LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_header_problem';

-- Runs a role's own query as that role; its rows as a JSON array of objects.
CREATE FUNCTION batch_internal.query_rows(role regrole, query text) RETURNS jsonb
	LANGUAGE c VOLATILE STRICT
	AS 'MODULE_PATHNAME', 'pgbatch_query_rows';

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

-- A stage function by name, checked to be callable by the role.
CREATE FUNCTION batch_internal.stage_function(role regrole, fn text) RETURNS regprocedure
	LANGUAGE c STABLE STRICT
	AS 'MODULE_PATHNAME', 'pgbatch_stage_function_1_4';

-- Forgets an endpoint's shared-memory slot once it is dropped.
CREATE FUNCTION batch_internal.forget_endpoint(endpoint_id integer) RETURNS void
	LANGUAGE c VOLATILE STRICT
	AS 'MODULE_PATHNAME', 'pgbatch_forget_endpoint';

/* ------------------------------------------------------------------------
 * Identity and access, for the role an implementation acts for
 * ------------------------------------------------------------------------ */

/*
 * The id of a batch the role may act on (src/security.c, the rule the C
 * entry points apply too).  A batch it cannot see does not exist for it;
 * one it sees but may not act on (a monitor's view of another team's
 * batch) is refused.
 */
CREATE FUNCTION batch_internal.batch_id(caller regrole, batch bigint) RETURNS bigint
	LANGUAGE c STABLE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'pgbatch_batch_id';

CREATE FUNCTION batch_internal.batch_id(caller regrole, batch text) RETURNS bigint
	LANGUAGE c STABLE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'pgbatch_batch_id_by_name';

-- Raises an error, naming the task, unless the role is a member of role member_of.
CREATE FUNCTION batch_internal.require_role(caller regrole, member_of name, task text)
	RETURNS void
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT pg_has_role(caller, member_of, 'MEMBER') THEN
		RAISE EXCEPTION 'permission denied to %', task
			USING ERRCODE = 'insufficient_privilege',
				  HINT = format('Only members of %I may.', member_of);
	END IF;
END
$$;

/* ------------------------------------------------------------------------
 * Helpers, out of the public schema (\df batch.* lists the API only)
 * ------------------------------------------------------------------------ */

-- Does the current role see batches owned by 'owner'?  (the read policies)
CREATE FUNCTION batch_internal.current_can_see(owner name) RETURNS boolean
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_can_see';

-- The limits that the SQL functions enforce.
CREATE FUNCTION batch_internal.limits(OUT max_items_per_call integer, OUT max_pipelines integer,
	OUT max_stages integer, OUT retention interval)
	LANGUAGE c STABLE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_limits';

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

-- NULL if HTTP stages may call the URL (pgbatch.allowed_hosts), else why not.
CREATE FUNCTION batch_internal.url_check(url text) RETURNS text
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_url_check';

-- NULL if endpoints may send through the proxy (pgbatch.allowed_hosts), else why not.
CREATE FUNCTION batch_internal.proxy_check(url text) RETURNS text
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_proxy_check';

-- Wakes the launcher at commit, so that the executors of this database start.
CREATE FUNCTION batch_internal.wake_launcher() RETURNS void
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'pgbatch_wake_launcher';

-- Live state of every endpoint the executors of this database have used.
CREATE FUNCTION batch_internal.endpoint_state(
	OUT endpoint_id integer, OUT in_flight integer, OUT max_concurrency integer,
	OUT tokens float8, OUT paused_until timestamptz, OUT circuit text,
	OUT consecutive_failures integer, OUT requests bigint, OUT failures bigint,
	OUT rate_factor float8, OUT tokens_used bigint, OUT requests_left bigint,
	OUT tokens_left bigint)
	RETURNS SETOF record
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'pgbatch_endpoint_state';

-- The executors running for this database.
CREATE FUNCTION batch_internal.workers(OUT pid integer, OUT worker integer,
	OUT started_at timestamptz, OUT in_flight integer, OUT requests bigint)
	RETURNS SETOF record
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'pgbatch_workers';

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

/*
 * Raises an error saying why pg_cron cannot schedule a job from this
 * database, and what to do, unless it can.  The job is named in the hint:
 * the call that schedules it, or (command NULL) the one that removes it.
 */
CREATE FUNCTION batch_internal.require_cron(job_name text, schedule text, command text)
	RETURNS void
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	cron_db text := current_setting('cron.database_name', true);
BEGIN
	IF EXISTS (SELECT FROM pg_extension WHERE extname = 'pg_cron') THEN
		RETURN;
	END IF;
	IF cron_db IS NULL THEN
		RAISE EXCEPTION 'pg_cron is not available in this server'
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'pgbatch schedules its jobs with pg_cron; the rest of pgbatch works without it.',
				  HINT = format('Install pg_cron (Debian: postgresql-15-cron), add it to shared_preload_libraries, set cron.database_name = %L, restart, and run CREATE EXTENSION pg_cron.',
								current_database());
	ELSIF cron_db <> current_database() THEN
		RAISE EXCEPTION 'pg_cron runs in database "%", not in "%"', cron_db, current_database()
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  DETAIL = 'pg_cron keeps its jobs in the database named by cron.database_name, so they cannot be scheduled from here.',
				  HINT = CASE WHEN command IS NULL THEN
							 format('Connect to database %I and run: SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname = %L AND database = %L;',
									cron_db, job_name, current_database())
						 ELSE
							 format('Connect to database %I and run: SELECT cron.schedule_in_database(%L, %L, %L, %L);',
									cron_db, job_name, schedule, command, current_database())
						 END;
	ELSE
		RAISE EXCEPTION 'pg_cron is loaded but not created in database "%"', current_database()
			USING ERRCODE = 'object_not_in_prerequisite_state',
				  HINT = 'Run CREATE EXTENSION pg_cron in this database.';
	END IF;
END
$$;

/*
 * Checks an endpoint's settings: a name, an http(s) base URL without
 * credentials and inside pgbatch.allowed_hosts, headers by the C rule
 * (batch_internal.header_problem), and limits in range.  Raises an error
 * naming what is wrong, never a header's value.
 */
CREATE FUNCTION batch_internal.check_endpoint(name text, base_url text, headers jsonb,
	max_concurrency integer, rate_limit integer, timeout interval, burst integer,
	tokens_per_minute integer, proxy text)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	v jsonb;
	why text;
BEGIN
	IF name IS NULL OR btrim(name) = '' THEN
		RAISE EXCEPTION 'endpoint name must not be empty' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF base_url IS NULL OR base_url !~* '^https?://[^/?#@[:space:]]+' OR base_url ~ '[[:space:][:cntrl:]]' THEN
		RAISE EXCEPTION 'base_url of endpoint "%" must be an http:// or https:// URL, not %', name, coalesce(quote_literal(base_url), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'For example ''https://api.openai.com''; only http and https are allowed.';
	END IF;
	IF base_url ~ '^[^:]+://[^/?#]*@' THEN
		RAISE EXCEPTION 'base_url of endpoint "%" must not hold a user name or password', name
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Everyone who reads batch.endpoint_status sees base_url.',
				  HINT = 'Put credentials in the endpoint''s headers, which only admins can read, e.g. {"Authorization": "Basic ..."}.';
	END IF;
	IF headers IS NULL OR jsonb_typeof(headers) <> 'object' THEN
		RAISE EXCEPTION 'headers of endpoint "%" must be a JSON object of strings', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(headers) LOOP
		IF jsonb_typeof(v) <> 'string' THEN
			RAISE EXCEPTION 'header "%" of endpoint "%" is not a valid HTTP header', k, name
				USING ERRCODE = 'invalid_parameter_value',
					  DETAIL = 'Header values are JSON strings.';
		END IF;
		why := batch_internal.header_problem(k, v #>> '{}');
		IF why IS NOT NULL THEN
			RAISE EXCEPTION 'header "%" of endpoint "%" is not allowed: %', k, name, why
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
	IF burst IS NULL OR burst NOT BETWEEN 1 AND 10000 THEN
		RAISE EXCEPTION 'burst of endpoint "%" must be from 1 to 10000 requests', name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The burst is how many requests may go out at once after a quiet spell; the rest are spaced evenly at rate_limit.';
	END IF;
	IF tokens_per_minute IS NOT NULL AND tokens_per_minute NOT BETWEEN 1 AND 1000000000 THEN
		RAISE EXCEPTION 'tokens_per_minute of endpoint "%" must be from 1 to 1000000000, or NULL for none', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- never the proxy's text in a message: it may hold a password
	IF proxy IS NOT NULL THEN
		IF proxy !~* '^(https?|socks5h?)://([^/?#@[:space:][:cntrl:]]+@)?[^/?#@[:space:][:cntrl:]]+:[0-9]+/?$' THEN
			RAISE EXCEPTION 'proxy of endpoint "%" must be a URL such as http://host:port, https://host:port, socks5://host:port or socks5h://host:port', name
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'A user name and password may come before the host: http://user:password@host:port.';
		END IF;
		why := batch_internal.proxy_check(proxy);
		IF why IS NOT NULL THEN
			RAISE EXCEPTION 'proxy of endpoint "%" is not allowed: %', name, why
				USING ERRCODE = 'insufficient_privilege',
					  HINT = 'A superuser decides which hosts HTTP stages may reach, proxies included, with pgbatch.allowed_hosts.';
		END IF;
	END IF;
	why := batch_internal.url_check(base_url);
	IF why IS NOT NULL THEN
		RAISE EXCEPTION 'base_url of endpoint "%" is not allowed: %', name, why
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'A superuser decides which hosts HTTP stages may call, with pgbatch.allowed_hosts.';
	END IF;
END
$$;

/* ------------------------------------------------------------------------
 * Use of endpoints and pipelines: the creator's role, admins, and the roles
 * granted it (like USAGE on a foreign server)
 * ------------------------------------------------------------------------ */

CREATE TABLE batch.usage_grants (
	object_kind		text NOT NULL CHECK (object_kind IN ('endpoint', 'pipeline')),
	object_id		integer NOT NULL,
	grantee			name NOT NULL,
	granted_by		name NOT NULL,
	granted_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (object_kind, object_id, grantee)
);
SELECT pg_catalog.pg_extension_config_dump('batch.usage_grants', '');
COMMENT ON TABLE batch.usage_grants IS
	'who may use an endpoint or a pipeline besides the members of its creator''s role and admins; read by admins';
COMMENT ON COLUMN batch.usage_grants.object_kind IS 'endpoint or pipeline';
COMMENT ON COLUMN batch.usage_grants.object_id IS 'batch.endpoints.id or batch.pipelines.id';
COMMENT ON COLUMN batch.usage_grants.grantee IS 'the role granted use (and so its members)';
COMMENT ON COLUMN batch.usage_grants.granted_by IS 'the role that granted it';
COMMENT ON COLUMN batch.usage_grants.granted_at IS 'when';

/*
 * May the role use the endpoint or pipeline: send requests with the
 * endpoint's headers, or submit to the pipeline?  Members of its creator's
 * role and admins may, and members of a role it was granted to.  NULL (so
 * no) for a role or object that does not exist.
 */
CREATE FUNCTION batch_internal.may_use(role regrole, kind text, id integer) RETURNS boolean
	LANGUAGE plpgsql STABLE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	creator name;
BEGIN
	IF kind = 'endpoint' THEN
		SELECT e.created_by INTO creator FROM batch.endpoints e WHERE e.id = may_use.id;
	ELSE
		SELECT p.created_by INTO creator FROM batch.pipelines p WHERE p.id = may_use.id;
	END IF;
	IF NOT FOUND THEN
		RETURN NULL;
	END IF;
	RETURN batch_internal.can_act(role, creator)
		OR EXISTS (SELECT FROM batch.usage_grants g
				   WHERE g.object_kind = kind AND g.object_id = may_use.id
					 AND batch_internal.is_member(role, g.grantee));
END
$$;

-- Raises an error unless the role may use the pipeline and every endpoint of it.
CREATE FUNCTION batch_internal.require_use(role regrole, pipeline_id integer) RETURNS void
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e record;
BEGIN
	IF NOT coalesce(batch_internal.may_use(role, 'pipeline', pipeline_id), false) THEN
		RAISE EXCEPTION 'role "%" may not use pipeline "%"', pg_get_userbyid(role),
			(SELECT p.name FROM batch.pipelines p WHERE p.id = require_use.pipeline_id)
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'A member of the pipeline''s creator role or an admin can grant it with batch.grant_pipeline().';
	END IF;
	FOR e IN SELECT DISTINCT x.id, x.name FROM batch.stages s JOIN batch.endpoints x ON x.id = s.endpoint_id
			 WHERE s.pipeline_id = require_use.pipeline_id ORDER BY x.id LOOP
		IF NOT coalesce(batch_internal.may_use(role, 'endpoint', e.id), false) THEN
			RAISE EXCEPTION 'role "%" may not use endpoint "%"', pg_get_userbyid(role), e.name
				USING ERRCODE = 'insufficient_privilege',
					  DETAIL = 'The requests of its stages carry the endpoint''s headers, its keys.',
					  HINT = 'A member of the endpoint''s creator role or an admin can grant it with batch.grant_endpoint().';
		END IF;
	END LOOP;
END
$$;

/*
 * Grants or revokes the use of an endpoint or a pipeline: by members of its
 * creator's role and admins.  Returns whether anything changed.
 */
CREATE FUNCTION batch_internal.set_usage(caller regrole, kind text, object_name text,
	grantee name, give boolean)
	RETURNS boolean
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	o record;
BEGIN
	IF kind = 'endpoint' THEN
		SELECT x.id, x.created_by INTO o FROM batch.endpoints x WHERE x.name = object_name;
	ELSE
		SELECT x.id, x.created_by INTO o FROM batch.pipelines x WHERE x.name = object_name;
	END IF;
	IF NOT FOUND THEN
		RAISE EXCEPTION '% "%" does not exist', kind, object_name USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT batch_internal.can_act(caller, o.created_by) THEN
		RAISE EXCEPTION 'permission denied for % "%"', kind, object_name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The %s belongs to role %I.', kind, o.created_by),
				  HINT = 'Only members of that role and of pgbatch_admin may grant its use.';
	END IF;
	IF NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = grantee) THEN
		RAISE EXCEPTION 'role "%" does not exist', grantee USING ERRCODE = 'undefined_object';
	END IF;
	IF give THEN
		INSERT INTO batch.usage_grants (object_kind, object_id, grantee, granted_by)
		VALUES (kind, o.id, grantee, pg_get_userbyid(caller))
		ON CONFLICT DO NOTHING;
	ELSE
		DELETE FROM batch.usage_grants g
		WHERE g.object_kind = kind AND g.object_id = o.id AND g.grantee = set_usage.grantee;
	END IF;
	RETURN FOUND;
END
$$;

CREATE FUNCTION batch_internal.grant_endpoint(caller regrole, endpoint text, grantee name)
	RETURNS boolean
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN batch_internal.set_usage(caller, 'endpoint', endpoint, grantee, true);
CREATE FUNCTION batch_internal.revoke_endpoint(caller regrole, endpoint text, grantee name)
	RETURNS boolean
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN batch_internal.set_usage(caller, 'endpoint', endpoint, grantee, false);
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

CREATE FUNCTION batch.grant_endpoint(endpoint text, grantee name) RETURNS boolean
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE FUNCTION batch.revoke_endpoint(endpoint text, grantee name) RETURNS boolean
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE FUNCTION batch.grant_pipeline(pipeline text, grantee name) RETURNS boolean
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE FUNCTION batch.revoke_pipeline(pipeline text, grantee name) RETURNS boolean
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.grant_endpoint(text, name) IS
	'lets a role (and its members) use an endpoint: submit to pipelines whose requests carry its headers';
COMMENT ON FUNCTION batch.revoke_endpoint(text, name) IS
	'takes back batch.grant_endpoint(); requests not yet sent fail with insufficient_privilege';
COMMENT ON FUNCTION batch.grant_pipeline(text, name) IS
	'lets a role (and its members) submit to a pipeline';
COMMENT ON FUNCTION batch.revoke_pipeline(text, name) IS
	'takes back batch.grant_pipeline()';

-- what 1.3 allowed stays allowed: every pipeline, and the endpoints admins
-- made, for every operator; endpoints operators made stay their role's
INSERT INTO batch.usage_grants (object_kind, object_id, grantee, granted_by)
SELECT 'pipeline', p.id, 'pgbatch_operator', p.created_by FROM batch.pipelines p;
INSERT INTO batch.usage_grants (object_kind, object_id, grantee, granted_by)
SELECT 'endpoint', e.id, 'pgbatch_operator', e.created_by FROM batch.endpoints e
WHERE to_regrole(e.created_by) IS NOT NULL
  AND pg_has_role(to_regrole(e.created_by), 'pgbatch_admin', 'MEMBER');

/* ------------------------------------------------------------------------
 * Stage functions of other roles run as approved
 * ------------------------------------------------------------------------ */

ALTER TABLE batch.stages ADD COLUMN func_pin text;

-- TLS per endpoint: CA certificates, a client certificate and key, pinned keys
ALTER TABLE batch.endpoints ADD COLUMN tls jsonb NOT NULL DEFAULT '{}';
-- pacing: requests spaced evenly at rate_limit past a small burst
ALTER TABLE batch.endpoints ADD COLUMN burst integer NOT NULL DEFAULT 1
	CHECK (burst BETWEEN 1 AND 10000);
GRANT SELECT (burst) ON batch.endpoints TO pgbatch_reader;
-- LLM tokens per minute, and a proxy per endpoint
ALTER TABLE batch.endpoints ADD COLUMN tokens_per_minute integer
	CHECK (tokens_per_minute BETWEEN 1 AND 1000000000);
ALTER TABLE batch.endpoints ADD COLUMN proxy text;
GRANT SELECT (tokens_per_minute) ON batch.endpoints TO pgbatch_reader;
COMMENT ON COLUMN batch.stages.func_pin IS
	'fingerprint of the stage (or body) function as it was when the pipeline was created or last refreshed';

-- A fingerprint of a function's definition, owner and settings.
CREATE FUNCTION batch_internal.function_pin(fn regprocedure) RETURNS text
	LANGUAGE plpgsql STABLE STRICT SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN (SELECT md5(concat_ws(E'\x1f', p.proowner::text, p.prolang::text, p.prosecdef::text,
								 p.proleakproof::text, p.provolatile::text, p.proconfig::text,
								 p.probin, p.prosrc, p.prosqlbody::text))
			FROM pg_proc p WHERE p.oid = fn);
END
$$;

/*
 * May the stage function run as the batch's owner?  It may if the owner or
 * a superuser owns it, or if it is still as it was approved (its pin):
 * otherwise a role could replace a function that other roles' batches call
 * and run its new code with their privileges.  A function that is gone
 * "may": calling it fails the item with undefined_function.
 */
CREATE FUNCTION batch_internal.stage_trusted(owner name, fn regprocedure, pin text)
	RETURNS boolean
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN fn IS NULL
		OR NOT EXISTS (SELECT FROM pg_proc p WHERE p.oid = fn)
		OR EXISTS (SELECT FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
				   WHERE p.oid = fn AND (r.rolname = owner OR r.rolsuper))
		OR batch_internal.function_pin(fn) = pin;
END
$$;

UPDATE batch.stages s SET func_pin = batch_internal.function_pin(s.func) WHERE s.func IS NOT NULL;

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

CREATE FUNCTION batch.refresh_pipeline(name text) RETURNS integer
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.refresh_pipeline(text) IS
	'approves the current definitions of a pipeline''s stage functions; returns how many changed (admins)';

/* ------------------------------------------------------------------------
 * Pipelines (admins)
 * ------------------------------------------------------------------------ */

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
 * Batches and items
 * ------------------------------------------------------------------------ */

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

/* ------------------------------------------------------------------------
 * Endpoints
 * ------------------------------------------------------------------------ */

-- The endpoint, locked, if the role may change it (its creator's members, admins).
CREATE FUNCTION batch_internal.endpoint(caller regrole, name text) RETURNS batch.endpoints
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e batch.endpoints;
BEGIN
	SELECT * INTO e FROM batch.endpoints x WHERE x.name = endpoint.name FOR UPDATE;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'endpoint "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT batch_internal.can_act(caller, e.created_by) THEN
		RAISE EXCEPTION 'permission denied for endpoint "%"', name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The endpoint belongs to role %I.', e.created_by),
				  HINT = 'Only members of that role and of pgbatch_admin may change it.';
	END IF;
	RETURN e;
END
$$;

/*
 * Checks the TLS settings of an endpoint and returns them as stored: a JSON
 * object of strings, with
 *   ca                 the certificate authorities to trust instead of the
 *                      system's, as PEM text, or (admins only) a file path;
 *   client_cert, client_key
 *                      a client certificate and its key, PEM, both or none
 *                      (the key is secret: only admins read it back);
 *   pinned_public_key  sha256//<base64> hashes, ;-separated: the server's key
 *                      must be one of them;
 *   proxy_ca           the certificate authorities of an https:// proxy, as
 *                      ca.
 * Certificate verification is always on; there is no setting to turn it off.
 */
CREATE FUNCTION batch_internal.check_tls(caller regrole, name text, tls jsonb) RETURNS jsonb
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	k text;
	v jsonb;
BEGIN
	IF tls IS NULL OR tls = 'null'::jsonb THEN
		RETURN '{}';
	END IF;
	IF jsonb_typeof(tls) <> 'object' THEN
		RAISE EXCEPTION 'tls of endpoint "%" must be a JSON object', name
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Keys: ca, client_cert, client_key, pinned_public_key, proxy_ca.';
	END IF;
	FOR k, v IN SELECT * FROM jsonb_each(tls) LOOP
		IF k NOT IN ('ca', 'client_cert', 'client_key', 'pinned_public_key', 'proxy_ca') THEN
			RAISE EXCEPTION 'unknown tls key "%" for endpoint "%"', k, name
				USING ERRCODE = 'invalid_parameter_value',
					  HINT = 'Keys: ca, client_cert, client_key, pinned_public_key, proxy_ca; certificate verification cannot be turned off.';
		END IF;
		IF jsonb_typeof(v) <> 'string' OR btrim(v #>> '{}') = '' OR length(v #>> '{}') > 65536 THEN
			RAISE EXCEPTION 'tls.% of endpoint "%" must be a non-empty string of at most 64 kB', k, name
				USING ERRCODE = 'invalid_parameter_value';
		END IF;
	END LOOP;
	FOREACH k IN ARRAY ARRAY['ca', 'proxy_ca'] LOOP
		IF tls ? k AND (tls ->> k) !~ '-----BEGIN CERTIFICATE-----' THEN
			IF (tls ->> k) !~ '^/[^[:cntrl:]]*$' THEN
				RAISE EXCEPTION 'tls.% of endpoint "%" must be PEM certificates or an absolute file path', k, name
					USING ERRCODE = 'invalid_parameter_value';
			END IF;
			IF NOT pg_has_role(caller, 'pgbatch_admin', 'MEMBER') THEN
				RAISE EXCEPTION 'permission denied to name a file in tls.% of endpoint "%"', k, name
					USING ERRCODE = 'insufficient_privilege',
						  DETAIL = 'A file path reads a file of the database server.',
						  HINT = 'Give the certificates as PEM text, or ask an admin.';
			END IF;
		END IF;
	END LOOP;
	IF (tls ? 'client_cert') <> (tls ? 'client_key') THEN
		RAISE EXCEPTION 'tls of endpoint "%" needs both client_cert and client_key, or neither', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF tls ? 'client_cert' AND (tls ->> 'client_cert') !~ '-----BEGIN CERTIFICATE-----' THEN
		RAISE EXCEPTION 'tls.client_cert of endpoint "%" must be a PEM certificate', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF tls ? 'client_key' AND (tls ->> 'client_key') !~ '-----BEGIN ([A-Z]+ )?PRIVATE KEY-----' THEN
		RAISE EXCEPTION 'tls.client_key of endpoint "%" must be a PEM private key', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF tls ? 'pinned_public_key'
	   AND (tls ->> 'pinned_public_key') !~ '^sha256//[A-Za-z0-9+/]{43}=(;sha256//[A-Za-z0-9+/]{43}=)*$' THEN
		RAISE EXCEPTION 'tls.pinned_public_key of endpoint "%" must be sha256//<base64 of the key''s SHA-256>, several separated by ;', name
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	RETURN tls;
END
$$;

CREATE FUNCTION batch_internal.create_endpoint(caller regrole, name text, base_url text,
	headers jsonb, max_concurrency integer, rate_limit integer, timeout interval,
	follow_redirects boolean, tls jsonb, burst integer, tokens_per_minute integer, proxy text)
	RETURNS integer
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	eid integer;
	lim integer := current_setting('pgbatch.max_endpoints_per_role')::integer;
	n bigint;
BEGIN
	PERFORM batch_internal.check_endpoint(name, base_url, headers, max_concurrency, rate_limit,
										  timeout, burst, tokens_per_minute, proxy);
	tls := batch_internal.check_tls(caller, name, tls);
	IF EXISTS (SELECT FROM batch.endpoints e WHERE e.name = create_endpoint.name) THEN
		RAISE EXCEPTION 'endpoint "%" already exists', name
			USING ERRCODE = 'duplicate_object',
				  HINT = 'Change it with batch.alter_endpoint().';
	END IF;
	-- one new endpoint at a time, so that concurrent ones cannot pass the limit together
	LOCK TABLE batch.endpoints IN SHARE ROW EXCLUSIVE MODE;
	SELECT count(*) INTO n FROM batch.endpoints e WHERE e.created_by = pg_get_userbyid(caller);
	IF n >= lim THEN
		RAISE EXCEPTION 'role "%" already has % endpoints, the limit', pg_get_userbyid(caller), n
			USING ERRCODE = 'program_limit_exceeded',
				  HINT = 'Drop unused endpoints with batch.drop_endpoint(), or have a superuser raise pgbatch.max_endpoints_per_role.';
	END IF;
	INSERT INTO batch.endpoints (name, base_url, headers, max_concurrency, rate_limit,
								 timeout, follow_redirects, created_by, tls, burst,
								 tokens_per_minute, proxy)
	VALUES (name, rtrim(base_url, '/'), headers, max_concurrency, rate_limit, timeout,
			coalesce(follow_redirects, false), pg_get_userbyid(caller), tls, burst,
			tokens_per_minute, proxy)
	RETURNING id INTO eid;
	-- an admin's endpoint is shared infrastructure; an operator's is its role's
	IF pg_has_role(caller, 'pgbatch_admin', 'MEMBER') THEN
		INSERT INTO batch.usage_grants (object_kind, object_id, grantee, granted_by)
		VALUES ('endpoint', eid, 'pgbatch_operator', pg_get_userbyid(caller));
	END IF;
	RETURN eid;
END
$$;

CREATE FUNCTION batch_internal.alter_endpoint(caller regrole, name text, base_url text,
	headers jsonb, max_concurrency integer, rate_limit integer, timeout interval,
	follow_redirects boolean, tls jsonb, burst integer, tokens_per_minute integer, proxy text)
	RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e batch.endpoints := batch_internal.endpoint(caller, name);
BEGIN
	e.base_url := rtrim(coalesce(base_url, e.base_url), '/');
	e.max_concurrency := coalesce(max_concurrency, e.max_concurrency);
	e.rate_limit := coalesce(rate_limit, e.rate_limit);
	e.timeout := coalesce(timeout, e.timeout);
	e.follow_redirects := coalesce(follow_redirects, e.follow_redirects);
	e.headers := coalesce(headers, e.headers);
	e.burst := coalesce(burst, e.burst);
	e.tokens_per_minute := coalesce(tokens_per_minute, e.tokens_per_minute);
	-- '' removes the proxy
	e.proxy := CASE WHEN proxy IS NULL THEN e.proxy ELSE nullif(proxy, '') END;
	PERFORM batch_internal.check_endpoint(e.name, e.base_url, e.headers,
								  e.max_concurrency, e.rate_limit, e.timeout, e.burst,
								  e.tokens_per_minute, e.proxy);
	-- the keys given replace those stored; a key given as JSON null is removed
	IF tls IS NOT NULL THEN
		IF jsonb_typeof(tls) <> 'object' THEN
			PERFORM batch_internal.check_tls(caller, e.name, tls);	-- says what it must be
		END IF;
		e.tls := batch_internal.check_tls(caller, e.name, jsonb_strip_nulls(e.tls || tls));
	END IF;
	UPDATE batch.endpoints x
	SET base_url = e.base_url, max_concurrency = e.max_concurrency,
		rate_limit = e.rate_limit, timeout = e.timeout, follow_redirects = e.follow_redirects,
		headers = e.headers, tls = e.tls, burst = e.burst,
		tokens_per_minute = e.tokens_per_minute, proxy = e.proxy
	WHERE x.id = e.id;
END
$$;

CREATE FUNCTION batch_internal.drop_endpoint(caller regrole, name text) RETURNS void
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e batch.endpoints := batch_internal.endpoint(caller, name);
BEGIN
	IF EXISTS (SELECT FROM batch.stages s WHERE s.endpoint_id = e.id) THEN
		RAISE EXCEPTION 'endpoint "%" is used by pipelines', name
			USING ERRCODE = 'dependent_objects_still_exist',
				  HINT = 'Drop the pipelines that call it first.';
	END IF;
	DELETE FROM batch.endpoints x WHERE x.id = e.id;
	DELETE FROM batch.usage_grants g WHERE g.object_kind = 'endpoint' AND g.object_id = e.id;
	PERFORM batch_internal.forget_endpoint(e.id);
END
$$;

/* ------------------------------------------------------------------------
 * Scheduling through pg_cron: every job runs as the role in effect
 * ------------------------------------------------------------------------ */

/*
 * Schedules (or reschedules) a named pg_cron job in this database that runs
 * as the role.  The extension's owner names the role of the job, which
 * pg_cron lets only superusers do; the role needs LOGIN.
 */
CREATE FUNCTION batch_internal.cron_schedule(caller regrole, job_name text, schedule text,
	command text)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM batch_internal.require_cron(job_name, schedule, command);
	IF schedule IS NULL OR btrim(schedule) = '' THEN
		RAISE EXCEPTION 'schedule must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give a cron schedule such as ''*/5 * * * *''.';
	END IF;
	IF NOT (SELECT r.rolcanlogin FROM pg_roles r WHERE r.oid = caller) THEN
		RAISE EXCEPTION 'role "%" cannot log in, so pg_cron cannot run its jobs', pg_get_userbyid(caller)
			USING ERRCODE = 'invalid_authorization_specification',
				  HINT = 'Jobs run as the role that schedules them: schedule as a role with LOGIN (RESET ROLE first).';
	END IF;
	RETURN cron.schedule_in_database(job_name, schedule, command, current_database(),
									 pg_get_userbyid(caller)::text, true);
END
$$;

-- Removes the pg_cron jobs of this database with that name (of one role, if given).
CREATE FUNCTION batch_internal.cron_unschedule(job_name text, username name) RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint := 0;
	jid bigint;
BEGIN
	PERFORM batch_internal.require_cron(job_name, NULL, NULL);
	FOR jid IN SELECT j.jobid FROM cron.job j
			   WHERE j.jobname = job_name AND j.database = current_database()
				 AND (cron_unschedule.username IS NULL OR j.username = cron_unschedule.username) LOOP
		PERFORM cron.unschedule(jid);
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

/*
 * The id of a batch the role may act on, by name or id, for the schedule
 * functions; the same error whether the batch is missing or someone else's.
 */
CREATE FUNCTION batch_internal.schedule_batch(caller regrole, batch text) RETURNS bigint
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	b record;
BEGIN
	SELECT x.id, x.owner INTO b FROM batch.batches x
	WHERE x.name = schedule_batch.batch
	   OR (schedule_batch.batch ~ '^[0-9]{1,18}$' AND x.id = schedule_batch.batch::bigint)
	ORDER BY x.name = schedule_batch.batch DESC
	LIMIT 1;
	IF NOT FOUND OR NOT batch_internal.can_act(caller, b.owner) THEN
		RAISE EXCEPTION 'batch "%" does not exist', batch
			USING ERRCODE = 'undefined_object',
				  HINT = 'See batch.progress for the batches you may act on.';
	END IF;
	RETURN b.id;
END
$$;

CREATE FUNCTION batch_internal.schedule_retry(caller regrole, batch text, schedule text)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bid bigint := batch_internal.schedule_batch(caller, batch);
BEGIN
	RETURN batch_internal.cron_schedule(caller, format('pgbatch_retry_%s', bid), schedule,
										format('SELECT batch.retry_failed(%s::bigint)', bid));
END
$$;

CREATE FUNCTION batch_internal.schedule_retry(caller regrole, batch bigint, schedule text)
	RETURNS bigint
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN batch_internal.schedule_retry(caller, batch::text, schedule);

CREATE FUNCTION batch_internal.unschedule_retry(caller regrole, batch text) RETURNS bigint
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN batch_internal.cron_unschedule(
		format('pgbatch_retry_%s', batch_internal.schedule_batch(caller, batch)), NULL);

CREATE FUNCTION batch_internal.unschedule_retry(caller regrole, batch bigint) RETURNS bigint
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN batch_internal.unschedule_retry(caller, batch::text);

CREATE FUNCTION batch_internal.schedule_run(caller regrole, schedule text, max_seconds float8)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM batch_internal.require_role(caller, 'pgbatch_operator', 'schedule runs');
	IF max_seconds IS NULL OR NOT (max_seconds > 0 AND max_seconds <= 3600) THEN
		RAISE EXCEPTION 'max_seconds must be from 0 to 3600, not %', max_seconds
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Keep it below the interval of the schedule, so that runs do not pile up.';
	END IF;
	RETURN batch_internal.cron_schedule(caller, 'pgbatch_run', schedule,
										format('SELECT batch.run(max_seconds => %s)', max_seconds));
END
$$;

CREATE FUNCTION batch_internal.unschedule_run(caller regrole) RETURNS bigint
	LANGUAGE sql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
	RETURN batch_internal.cron_unschedule('pgbatch_run', pg_get_userbyid(caller));

-- The schedule, if the role may act on it; the same error if it is missing.
CREATE FUNCTION batch_internal.schedule(caller regrole, name text) RETURNS batch.schedules
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s batch.schedules;
BEGIN
	SELECT * INTO s FROM batch.schedules x WHERE x.name = schedule.name FOR UPDATE;
	IF NOT FOUND OR NOT batch_internal.can_act(caller, s.owner) THEN
		RAISE EXCEPTION 'scheduled submission "%" does not exist', name
			USING ERRCODE = 'undefined_object';
	END IF;
	RETURN s;
END
$$;

CREATE FUNCTION batch_internal.schedule_submit(caller regrole, name text, schedule text,
	pipeline text, query text)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sid integer;
BEGIN
	PERFORM batch_internal.require_role(caller, 'pgbatch_operator', 'schedule submissions');
	IF name IS NULL OR btrim(name) = '' OR query IS NULL OR btrim(query) = '' THEN
		RAISE EXCEPTION 'a scheduled submission needs a name and a query'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT EXISTS (SELECT FROM batch.pipelines p WHERE p.name = schedule_submit.pipeline) THEN
		RAISE EXCEPTION 'pipeline "%" does not exist', pipeline
			USING ERRCODE = 'undefined_object';
	END IF;
	SELECT s.id INTO sid FROM batch.schedules s WHERE s.name = schedule_submit.name FOR UPDATE;
	IF FOUND THEN
		IF NOT EXISTS (SELECT FROM batch.schedules s
					   WHERE s.id = sid AND batch_internal.can_act(caller, s.owner)) THEN
			RAISE EXCEPTION 'scheduled submission "%" already exists', name
				USING ERRCODE = 'duplicate_object';
		END IF;
		UPDATE batch.schedules s
		SET pipeline = schedule_submit.pipeline, schedule = schedule_submit.schedule,
			query = schedule_submit.query
		WHERE s.id = sid;
	ELSE
		INSERT INTO batch.schedules (name, pipeline, schedule, query, owner)
		VALUES (name, pipeline, schedule, query, pg_get_userbyid(caller))
		RETURNING id INTO sid;
	END IF;
	RETURN batch_internal.cron_schedule(caller, format('pgbatch_submit_%s', sid), schedule,
										format('SELECT batch.run_schedule(%s)', sid));
END
$$;

CREATE FUNCTION batch_internal.unschedule_submit(caller regrole, name text) RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s batch.schedules := batch_internal.schedule(caller, name);
	n bigint;
BEGIN
	n := batch_internal.cron_unschedule(format('pgbatch_submit_%s', s.id), NULL);
	DELETE FROM batch.schedules x WHERE x.id = s.id;
	RETURN n;
END
$$;

/*
 * One run of a scheduled submission (what its pg_cron job calls): runs its
 * query as its owner, who alone may run it, and submits the rows as a new
 * batch; returns the batch id, or NULL when the query returned no rows.
 */
CREATE FUNCTION batch_internal.run_schedule(caller regrole, schedule_id integer)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s batch.schedules;
	rows jsonb;
	items jsonb;
	bid bigint;
BEGIN
	SELECT * INTO s FROM batch.schedules x WHERE x.id = schedule_id FOR UPDATE;
	IF NOT FOUND OR NOT batch_internal.can_see(caller, s.owner) THEN
		RAISE EXCEPTION 'scheduled submission % does not exist', schedule_id
			USING ERRCODE = 'undefined_object';
	END IF;
	IF s.owner <> pg_get_userbyid(caller) THEN
		RAISE EXCEPTION 'scheduled submission % belongs to role "%"', schedule_id, s.owner
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Its query runs with the privileges of its owner, so only its owner may run it.',
				  HINT = format('Its pg_cron job runs it as %I; to run it by hand, SET ROLE %I first.', s.owner, s.owner);
	END IF;
	rows := batch_internal.query_rows(caller, s.query);
	SELECT coalesce(jsonb_agg(CASE WHEN (SELECT count(*) FROM jsonb_object_keys(r.j)) = 1 AND r.j ? 'item'
								   THEN r.j -> 'item' ELSE r.j END ORDER BY r.n), '[]')
	INTO items
	FROM jsonb_array_elements(rows) WITH ORDINALITY AS r(j, n);
	IF jsonb_array_length(items) > 0 THEN
		bid := batch_internal.submit(caller, s.pipeline, items,
									 format('%s %s', s.name, to_char(clock_timestamp(), 'YYYY-MM-DD HH24:MI:SS.US')));
	END IF;
	UPDATE batch.schedules x SET last_run_at = clock_timestamp(), last_batch_id = coalesce(bid, x.last_batch_id)
	WHERE x.id = s.id;
	RETURN bid;
END
$$;

/* ------------------------------------------------------------------------
 * Maintenance (admins)
 * ------------------------------------------------------------------------ */

-- Takes back running items whose executor is gone or whose lease ran out.
CREATE FUNCTION batch_internal.reclaim(caller regrole) RETURNS bigint
	LANGUAGE c VOLATILE STRICT
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'pgbatch_reclaim_1_4';

/*
 * Purges, in one short transaction, up to 'chunk' rows of the attempt
 * history and outputs of the oldest batch that has been finished longer
 * than pgbatch.retention; marks the batch purged once nothing is left.
 * Returns how many rows went (0: nothing to purge).
 */
CREATE FUNCTION batch_internal.purge_step(caller regrole, chunk integer)
 RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	keep interval := (batch_internal.limits()).retention;
	bid bigint;
	n bigint;
	m bigint;
BEGIN
	IF keep <= interval '0' THEN
		RETURN 0;
	END IF;
	SELECT p.id INTO bid
	FROM batch.progress p
	JOIN batch.batches b ON b.id = p.id
	WHERE b.purged_at IS NULL
	  AND p.pending + p.running = 0
	  AND coalesce(p.finished_at, b.cancelled_at, b.created_at) < now() - keep
	ORDER BY p.id
	LIMIT 1;
	IF NOT FOUND THEN
		RETURN 0;
	END IF;

	DELETE FROM batch.attempts a
	WHERE a.ctid = ANY (ARRAY(SELECT x.ctid FROM batch.attempts x WHERE x.batch_id = bid LIMIT chunk));
	GET DIAGNOSTICS n = ROW_COUNT;
	IF n < chunk THEN
		DELETE FROM batch.outputs o
		WHERE o.ctid = ANY (ARRAY(SELECT x.ctid FROM batch.items i
								  JOIN batch.outputs x ON x.item_id = i.id
								  WHERE i.batch_id = bid LIMIT chunk - n));
		GET DIAGNOSTICS m = ROW_COUNT;
		n := n + m;
	END IF;
	IF n < chunk THEN
		UPDATE batch.batches b SET purged_at = clock_timestamp() WHERE b.id = bid;
		INSERT INTO batch.events (batch_id, level, event, message, detail, actor)
		VALUES (bid, 'info', 'purged',
				format('attempt history and outputs purged: the batch finished more than %s ago', keep),
				jsonb_build_object('retention', keep::text), pg_get_userbyid(caller));
		n := n + 1;
	END IF;
	RETURN n;
END
$$;

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

/*
 * Keeps batch.counters honest, in one short transaction: drops the rows of
 * batches that are gone, folds the per-backend rows of batches idle for a
 * minute into one, and checks up to 'max_batches' finished batches against
 * their items, correcting (and logging) any difference.  Returns how many
 * batches it touched.
 */
CREATE FUNCTION batch_internal.counters_step(caller regrole, max_batches integer)
 RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint := 0;
	m bigint;
	cur record;
	cnt record;
BEGIN
	DELETE FROM batch.counters k
	WHERE NOT EXISTS (SELECT FROM batch.batches b WHERE b.id = k.batch_id);
	GET DIAGNOSTICS m = ROW_COUNT;
	n := n + m;

	-- one row per idle batch; the shards are backend ids, so 0 is free
	WITH idle AS (
		SELECT k.batch_id FROM batch.counters k
		GROUP BY k.batch_id
		HAVING count(*) > 1 AND max(k.updated_at) < now() - interval '1 minute'
		LIMIT 1000
	), gone AS (
		DELETE FROM batch.counters k USING idle
		WHERE k.batch_id = idle.batch_id
		RETURNING k.*
	)
	INSERT INTO batch.counters (batch_id, shard, pending, retrying, running, completed,
								failed, cancelled, started_at, updated_at)
	SELECT g.batch_id, 0, sum(g.pending), sum(g.retrying), sum(g.running), sum(g.completed),
		   sum(g.failed), sum(g.cancelled), min(g.started_at), max(g.updated_at)
	FROM gone g GROUP BY g.batch_id;
	GET DIAGNOSTICS m = ROW_COUNT;
	n := n + m;

	FOR cur IN
		SELECT p.id, p.pending, p.retrying, p.running, p.completed, p.failed, p.cancelled
		FROM batch.progress p
		JOIN batch.batches x ON x.id = p.id
		WHERE p.pending + p.running = 0
		  AND (x.counted_at IS NULL OR x.counted_at < p.finished_at)
		ORDER BY p.id
		LIMIT max_batches
		FOR UPDATE OF x SKIP LOCKED
	LOOP
		cnt := batch_internal.item_counts(cur.id);
		IF (cnt.pending, cnt.retrying, cnt.running, cnt.completed, cnt.failed, cnt.cancelled)
		   IS DISTINCT FROM (cur.pending - cur.retrying, cur.retrying, cur.running, cur.completed,
							 cur.failed, cur.cancelled) THEN
			-- recount with every writer of these counters done, then rewrite them
			LOCK TABLE batch.counters IN EXCLUSIVE MODE;
			cnt := batch_internal.item_counts(cur.id);
			WITH gone AS (
				DELETE FROM batch.counters k WHERE k.batch_id = cur.id
				RETURNING k.started_at, k.updated_at
			)
			INSERT INTO batch.counters (batch_id, shard, pending, retrying, running, completed,
										failed, cancelled, started_at, updated_at)
			SELECT cur.id, 0, cnt.pending, cnt.retrying, cnt.running, cnt.completed, cnt.failed,
				   cnt.cancelled, min(g.started_at), coalesce(max(g.updated_at), now())
			FROM gone g;
			INSERT INTO batch.events (batch_id, level, event, message, detail, actor)
			VALUES (cur.id, 'warning', 'counters_corrected',
					'the counters of the batch did not match its items and were corrected',
					jsonb_build_object('was', to_jsonb(cur) - 'id', 'now', to_jsonb(cnt)), pg_get_userbyid(caller));
		END IF;
		UPDATE batch.batches x SET counted_at = clock_timestamp() WHERE x.id = cur.id;
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

/*
 * One step of maintenance in the current transaction: 'reclaim' takes back
 * running items whose executor is gone or whose lease ran out, 'purge'
 * purges up to 'chunk' rows of the history of batches finished longer than
 * pgbatch.retention ago, 'counters' keeps the counters honest.  Returns how
 * many rows or batches it touched (0: nothing left to do).
 */
CREATE FUNCTION batch_internal.maintenance_step(caller regrole, step text, chunk integer)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM batch_internal.require_role(caller, 'pgbatch_admin', 'run maintenance');
	IF chunk IS NULL OR chunk < 1 THEN
		RAISE EXCEPTION 'chunk must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	-- the launcher learns at commit that this database has the extension (a
	-- database pg_upgrade carried over is not in its registry)
	PERFORM batch_internal.wake_launcher();
	CASE step
	WHEN 'reclaim' THEN RETURN batch_internal.reclaim(caller);
	WHEN 'purge' THEN RETURN batch_internal.purge_step(caller, chunk);
	WHEN 'counters' THEN RETURN batch_internal.counters_step(caller, 20);
	ELSE
		RAISE EXCEPTION 'unknown maintenance step "%"', step
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'The steps are reclaim, purge and counters.';
	END CASE;
END
$$;

CREATE FUNCTION batch.maintenance_step(step text, chunk integer DEFAULT 10000) RETURNS bigint
	LANGUAGE c
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.maintenance_step(text, integer) IS
	'one step of batch.maintenance() in the current transaction (reclaim, purge or counters); admins';

CREATE OR REPLACE PROCEDURE batch.maintenance(max_seconds float8 DEFAULT 50, chunk integer DEFAULT 10000)
	LANGUAGE plpgsql
AS $$
-- no SET search_path here (a procedure with one cannot commit): every name is qualified
DECLARE
	deadline timestamptz := pg_catalog.clock_timestamp() OPERATOR(pg_catalog.+) pg_catalog.make_interval(secs => max_seconds);
	reclaimed bigint;
	purged bigint := 0;
	n bigint;
	counted bigint;
BEGIN
	reclaimed := batch.maintenance_step('reclaim', chunk);
	COMMIT;
	LOOP
		n := batch.maintenance_step('purge', chunk);
		COMMIT;
		purged := purged OPERATOR(pg_catalog.+) n;
		EXIT WHEN n OPERATOR(pg_catalog.=) 0
			OR pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>) deadline;
	END LOOP;
	counted := 0;
	LOOP
		n := batch.maintenance_step('counters', chunk);
		COMMIT;
		counted := counted OPERATOR(pg_catalog.+) n;
		EXIT WHEN n OPERATOR(pg_catalog.=) 0
			OR pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>) deadline;
	END LOOP;
	RAISE NOTICE 'pgbatch maintenance: % items taken back, % rows purged, % counter rows and batches checked',
		reclaimed, purged, counted;
END
$$;

CREATE FUNCTION batch_internal.schedule_maintenance(caller regrole, schedule text)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM batch_internal.require_role(caller, 'pgbatch_admin', 'schedule maintenance');
	PERFORM batch_internal.require_cron('pgbatch_maintenance', schedule, 'CALL batch.maintenance()');
	-- one job, whichever admin scheduled it last
	PERFORM batch_internal.cron_unschedule('pgbatch_maintenance', NULL);
	RETURN batch_internal.cron_schedule(caller, 'pgbatch_maintenance', schedule,
										'CALL batch.maintenance()');
END
$$;

CREATE FUNCTION batch_internal.unschedule_maintenance(caller regrole) RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM batch_internal.require_role(caller, 'pgbatch_admin', 'stop maintenance');
	RETURN batch_internal.cron_unschedule('pgbatch_maintenance', NULL);
END
$$;

/* ------------------------------------------------------------------------
 * The public functions become gates (same names, arguments and defaults)
 * ------------------------------------------------------------------------ */

CREATE OR REPLACE FUNCTION batch.create_pipeline(name text, stages jsonb, retry jsonb DEFAULT '{}',
	required text[] DEFAULT '{}') RETURNS integer
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.drop_pipeline(name text) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.set_stage_cost(pipeline text, stage text, tokens text,
	price_per_1k_tokens numeric DEFAULT NULL) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.submit(pipeline text, items jsonb, name text DEFAULT NULL)
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.add_items(batch bigint, items jsonb) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.add_items(batch text, items jsonb) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.run(batch bigint, max_items bigint DEFAULT NULL,
	max_seconds float8 DEFAULT NULL,
	OUT stages_run bigint, OUT items_completed bigint, OUT retries_scheduled bigint,
	OUT items_failed bigint, OUT next_due timestamptz) RETURNS record
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.run(batch text DEFAULT NULL, max_items bigint DEFAULT NULL,
	max_seconds float8 DEFAULT NULL,
	OUT stages_run bigint, OUT items_completed bigint, OUT retries_scheduled bigint,
	OUT items_failed bigint, OUT next_due timestamptz) RETURNS record
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
-- retry_failed and rerun_stage gain wait (block on the batch's lock)
DROP FUNCTION batch.retry_failed(text, integer, float8, text[], text);
DROP FUNCTION batch.retry_failed(bigint, integer, float8, text[], text);
CREATE FUNCTION batch.retry_failed(batch bigint, max_retries integer DEFAULT NULL,
	backoff_factor float8 DEFAULT NULL, error_codes text[] DEFAULT NULL, stage text DEFAULT NULL,
	wait boolean DEFAULT false)
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE FUNCTION batch.retry_failed(batch text, max_retries integer DEFAULT NULL,
	backoff_factor float8 DEFAULT NULL, error_codes text[] DEFAULT NULL, stage text DEFAULT NULL,
	wait boolean DEFAULT false)
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.retry_item(item_id bigint) RETURNS boolean
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.update_item(item_id bigint, payload jsonb) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.cancel(batch bigint) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.cancel(batch text) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.set_owner(batch text, owner name) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.set_owner(batch bigint, owner name) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
DROP FUNCTION batch.rerun_stage(text, text);
DROP FUNCTION batch.rerun_stage(bigint, text);
CREATE FUNCTION batch.rerun_stage(batch bigint, stage text, wait boolean DEFAULT false)
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE FUNCTION batch.rerun_stage(batch text, stage text, wait boolean DEFAULT false)
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
DROP FUNCTION batch.create_endpoint(text, text, jsonb, integer, integer, interval, boolean);
CREATE FUNCTION batch.create_endpoint(name text, base_url text, headers jsonb DEFAULT '{}',
	max_concurrency integer DEFAULT 8, rate_limit integer DEFAULT NULL,
	timeout interval DEFAULT '1 min', follow_redirects boolean DEFAULT false,
	tls jsonb DEFAULT NULL, burst integer DEFAULT 1, tokens_per_minute integer DEFAULT NULL,
	proxy text DEFAULT NULL) RETURNS integer
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
DROP FUNCTION batch.alter_endpoint(text, text, jsonb, integer, integer, interval, boolean);
CREATE FUNCTION batch.alter_endpoint(name text, base_url text DEFAULT NULL,
	headers jsonb DEFAULT NULL, max_concurrency integer DEFAULT NULL,
	rate_limit integer DEFAULT NULL, timeout interval DEFAULT NULL,
	follow_redirects boolean DEFAULT NULL, tls jsonb DEFAULT NULL,
	burst integer DEFAULT NULL, tokens_per_minute integer DEFAULT NULL,
	proxy text DEFAULT NULL) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.drop_endpoint(name text) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.schedule_retry(batch text, schedule text DEFAULT '*/5 * * * *')
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.schedule_retry(batch bigint, schedule text DEFAULT '*/5 * * * *')
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.unschedule_retry(batch text) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.unschedule_retry(batch bigint) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.schedule_run(schedule text DEFAULT '* * * * *',
	max_seconds float8 DEFAULT 50) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.unschedule_run() RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.schedule_submit(name text, schedule text, pipeline text, query text)
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.unschedule_submit(name text) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.run_schedule(schedule_id integer) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.schedule_maintenance(schedule text DEFAULT '* * * * *')
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
CREATE OR REPLACE FUNCTION batch.unschedule_maintenance() RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';

/* ------------------------------------------------------------------------
 * Gone: helpers that acted for a role they did not know for sure
 * ------------------------------------------------------------------------ */

DROP TRIGGER batches_owner ON batch.batches;
DROP FUNCTION batch._check_owner();
DROP FUNCTION batch._run(bigint, bigint, float8);
DROP FUNCTION batch._requeue(bigint, bigint, integer, float8, text[], text, boolean);
DROP FUNCTION batch._caller();
DROP FUNCTION batch._caller_can_act(name);
DROP FUNCTION batch._caller_batch(text);
DROP FUNCTION batch._cron_schedule(text, text, text);
DROP FUNCTION batch._cron_unschedule(text);
DROP FUNCTION IF EXISTS batch._run_schedule(integer);
DROP FUNCTION batch._require_act(bigint, name);
DROP FUNCTION batch._is_member(name);
DROP FUNCTION batch._stage_function(text);
DROP FUNCTION batch._reclaim();
DROP FUNCTION batch._purge_step(integer);
DROP FUNCTION batch._counters_step(integer);


/* ------------------------------------------------------------------------
 * What \df+ and \d+ say: every public function and relation explained
 * ------------------------------------------------------------------------ */

-- every column of every table and view
COMMENT ON COLUMN batch.attempts.id IS 'Attempt id.';
COMMENT ON COLUMN batch.attempts.batch_id IS 'The batch of the item attempted (batch.batches.id).';
COMMENT ON COLUMN batch.attempts.item_id IS 'The item attempted (batch.items.id).';
COMMENT ON COLUMN batch.attempts.stage IS 'The name of the stage attempted.';
COMMENT ON COLUMN batch.attempts.attempt IS 'Attempt number of this item at this stage, counted from 1. Re-queuing the item (retry_failed, retry_item, rerun_stage) starts the count again.';
COMMENT ON COLUMN batch.attempts.outcome IS 'What the attempt led to: completed (the stage succeeded), retry (a transient error, the item will be retried) or failed (the item failed).';
COMMENT ON COLUMN batch.attempts.error_code IS 'Error code of a failed attempt (see Error codes in the user guide); NULL when the attempt completed.';
COMMENT ON COLUMN batch.attempts.message IS 'Error message of a failed attempt; for HTTP it names the status, method and path, never the base URL. NULL when the attempt completed.';
COMMENT ON COLUMN batch.attempts.started_at IS 'When the attempt began.';
COMMENT ON COLUMN batch.attempts.finished_at IS 'When the attempt ended; finished_at minus started_at is its duration.';
COMMENT ON COLUMN batch.attempts.http_status IS 'HTTP status code of the response. NULL for SQL stages and for requests that got no answer.';
COMMENT ON COLUMN batch.attempts.response_size IS 'Size of the HTTP response body in bytes (0 when nothing came back). NULL for SQL stages.';
COMMENT ON COLUMN batch.attempts.response_sha256 IS 'SHA-256 of the HTTP response body as hex, taken after the endpoint''s secrets were masked in it. NULL for SQL stages and empty bodies.';
COMMENT ON COLUMN batch.attempts.response_body IS 'The body of a response that did not succeed (its first 4 kB, secrets masked); NULL for a success, whose body is the stage output.';
COMMENT ON COLUMN batch.batches.id IS 'Batch id.';
COMMENT ON COLUMN batch.batches.name IS 'Batch name, unique in the database; batch_<id> unless batch.submit() was given one.';
COMMENT ON COLUMN batch.batches.pipeline_id IS 'The pipeline the batch runs (batch.pipelines.id).';
COMMENT ON COLUMN batch.batches.owner IS 'The role the batch belongs to: its members see and act on the batch, and stage functions run as this role.';
COMMENT ON COLUMN batch.batches.created_at IS 'When the batch was submitted.';
COMMENT ON COLUMN batch.batches.cancelled_at IS 'When batch.cancel() cancelled the batch; NULL if it is not cancelled.';
COMMENT ON COLUMN batch.batches.cancelled_by IS 'The role that cancelled the batch; NULL if it is not cancelled.';
COMMENT ON COLUMN batch.batches.purged_at IS 'When maintenance purged the batch''s attempt history and outputs (pgbatch.retention); NULL if it was not purged.';
COMMENT ON COLUMN batch.batches.counted_at IS 'When maintenance last checked the counters of the finished batch against its items; NULL until then.';
COMMENT ON COLUMN batch.batches.announced_at IS 'When the end of the batch was last announced to listeners (event batch_finished); NULL if never.';
COMMENT ON COLUMN batch.costs.batch_id IS 'Batch id.';
COMMENT ON COLUMN batch.costs.batch IS 'Batch name.';
COMMENT ON COLUMN batch.costs.stage IS 'A stage of the batch''s pipeline that has a usage path (set with batch.set_stage_cost()).';
COMMENT ON COLUMN batch.costs.price_per_1k_tokens IS 'The stage''s price of 1,000 tokens, in the currency of your choice; NULL when no price is set.';
COMMENT ON COLUMN batch.costs.tokens IS 'Tokens reported by the stage''s current outputs in the batch: the sum of the numbers at the usage path. Outputs without a number there count 0.';
COMMENT ON COLUMN batch.costs.cost IS 'Cost of the tokens: tokens times price_per_1k_tokens divided by 1000, rounded to 6 decimals. NULL when the stage has no price.';
COMMENT ON COLUMN batch.costs.retried_tokens IS 'The part of tokens from outputs of item stages that had failed attempts first (outcome retry or failed): what the retries finally bought.';
COMMENT ON COLUMN batch.costs.retried_cost IS 'Cost of retried_tokens, rounded to 6 decimals; NULL when the stage has no price.';
COMMENT ON COLUMN batch.costs.retry_failed_calls IS 'Number of batch.retry_failed() calls on the batch, scheduled ones included, that re-queued at least one item. retry_item and rerun_stage do not count.';
COMMENT ON COLUMN batch.costs.saved_tokens IS 'Tokens those retry_failed calls saved against rerunning the whole batch: for each call, the tokens of this stage''s outputs that existed at the call and still exist, summed over the calls.';
COMMENT ON COLUMN batch.costs.saved_cost IS 'Cost of saved_tokens, rounded to 6 decimals; NULL when the stage has no price.';
COMMENT ON COLUMN batch.counters.batch_id IS 'The batch counted (batch.batches.id).';
COMMENT ON COLUMN batch.counters.shard IS 'Backend id of the session whose changes this row adds up, so that concurrent sessions never update one row; 0 for a row that maintenance folded or rebuilt.';
COMMENT ON COLUMN batch.counters.pending IS 'Net change made by this shard in the batch''s items waiting for a first attempt at their stage (status pending, attempt 0). A shard''s value may be negative; the sum over the batch''s shards is the count.';
COMMENT ON COLUMN batch.counters.retrying IS 'Net change made by this shard in the batch''s items waiting out a backoff before a retry (status pending, attempt above 0). Sum over the batch''s shards for the count.';
COMMENT ON COLUMN batch.counters.running IS 'Net change made by this shard in the batch''s items with an HTTP request out (status running). Sum over the batch''s shards for the count.';
COMMENT ON COLUMN batch.counters.completed IS 'Net change made by this shard in the batch''s completed items. Sum over the batch''s shards for the count.';
COMMENT ON COLUMN batch.counters.failed IS 'Net change made by this shard in the batch''s failed items. Sum over the batch''s shards for the count.';
COMMENT ON COLUMN batch.counters.cancelled IS 'Net change made by this shard in the batch''s cancelled items. Sum over the batch''s shards for the count.';
COMMENT ON COLUMN batch.counters.started_at IS 'When this shard first recorded an item of the batch as attempted (running, retrying, completed, or failed after an attempt); NULL if it has not.';
COMMENT ON COLUMN batch.counters.updated_at IS 'When this shard row last changed.';
COMMENT ON COLUMN batch.endpoint_status.id IS 'Endpoint id.';
COMMENT ON COLUMN batch.endpoint_status.name IS 'Endpoint name.';
COMMENT ON COLUMN batch.endpoint_status.base_url IS 'Base URL to which each stage''s path is appended.';
COMMENT ON COLUMN batch.endpoint_status.max_concurrency IS 'Most requests in flight at once, all executors together.';
COMMENT ON COLUMN batch.endpoint_status.rate_limit IS 'Most requests per minute, all executors together; NULL for no limit.';
COMMENT ON COLUMN batch.endpoint_status.timeout IS 'Longest a whole request may take; when it elapses the attempt fails with the transient error timeout.';
COMMENT ON COLUMN batch.endpoint_status.in_flight IS 'Requests in flight now, all executors together. Live state from shared memory: 0 when pgbatch is not in shared_preload_libraries.';
COMMENT ON COLUMN batch.endpoint_status.paused_until IS 'When the pause that a Retry-After header put on the endpoint ends; NULL when it is not paused.';
COMMENT ON COLUMN batch.endpoint_status.circuit IS 'State of the circuit breaker: closed (requests flow), open (no requests until the cooldown ends) or half-open (one probe request decides).';
COMMENT ON COLUMN batch.endpoint_status.consecutive_failures IS 'Transient failures in a row; any answer that is not a transient error resets it to 0.';
COMMENT ON COLUMN batch.endpoint_status.requests IS 'Requests sent to the endpoint since the server started.';
COMMENT ON COLUMN batch.endpoint_status.failures IS 'How many of those requests failed, transient and permanent failures alike.';
COMMENT ON COLUMN batch.endpoints.id IS 'Endpoint id.';
COMMENT ON COLUMN batch.endpoints.name IS 'Endpoint name, unique; the name a stage''s "http": {"endpoint": ...} gives.';
COMMENT ON COLUMN batch.endpoints.base_url IS 'http:// or https:// URL, without a trailing slash, to which each stage''s path is appended. Every reader sees it, so it carries no credentials.';
COMMENT ON COLUMN batch.endpoints.headers IS 'HTTP headers sent with every request, as a JSON object of header name to value. They hold secrets: only admins can read them.';
COMMENT ON COLUMN batch.endpoints.max_concurrency IS 'Most requests in flight at once, all executors together (1 to 10000).';
COMMENT ON COLUMN batch.endpoints.rate_limit IS 'Requests per minute across all executors; NULL for no limit.';
COMMENT ON COLUMN batch.endpoints.timeout IS 'Longest a whole request may take, at most 1 hour; when it elapses the attempt fails with the transient error timeout.';
COMMENT ON COLUMN batch.endpoints.follow_redirects IS 'Whether 3xx redirects are followed. When false, a 3xx answer fails the item with a permanent error such as http_302.';
COMMENT ON COLUMN batch.endpoints.created_at IS 'When the endpoint was created.';
COMMENT ON COLUMN batch.endpoints.created_by IS 'The role that created the endpoint: its members and admins may alter, drop and grant it.';
COMMENT ON COLUMN batch.endpoints.tls IS 'TLS settings: ca (PEM, or a file path set by an admin), client_cert and client_key (PEM; the key is secret), pinned_public_key (sha256//...), proxy_ca (the CAs of an https:// proxy, as ca); {} for the system''s trust store. Verification is always on.';
COMMENT ON COLUMN batch.endpoints.tokens_per_minute IS 'Most LLM tokens per minute, all executors together: each request reserves an estimate (body bytes / 4 plus its max_tokens) and its response''s reported usage replaces it; NULL for no limit.';
COMMENT ON COLUMN batch.endpoints.proxy IS 'The proxy requests go through (http://, https://, socks5:// or socks5h://host:port, with an optional user:password@, which only admins read back); NULL for none. Proxy settings of the server''s environment are never used.';
COMMENT ON COLUMN batch.endpoints.burst IS 'Requests that may go out at once after a quiet spell; past it they are spaced evenly at rate_limit (1: strictly even).';
COMMENT ON COLUMN batch.errors.batch_id IS 'Batch id.';
COMMENT ON COLUMN batch.errors.batch IS 'Batch name.';
COMMENT ON COLUMN batch.errors.stage IS 'The stage the items failed at.';
COMMENT ON COLUMN batch.errors.error_code IS 'The error code the items failed with (see Error codes in the user guide).';
COMMENT ON COLUMN batch.errors.items IS 'How many items of the batch are failed now with this stage and error code.';
COMMENT ON COLUMN batch.errors.first_seen IS 'When the earliest of these items failed.';
COMMENT ON COLUMN batch.errors.last_seen IS 'When the latest of these items failed.';
COMMENT ON COLUMN batch.errors.sample_error IS 'The error message of the latest of these items.';
COMMENT ON COLUMN batch.events.id IS 'Event id.';
COMMENT ON COLUMN batch.events.batch_id IS 'The batch the event concerns; NULL for an event that concerns no batch.';
COMMENT ON COLUMN batch.events.item_id IS 'The item the event concerns (item_updated, item_retried); NULL for events about a whole batch.';
COMMENT ON COLUMN batch.events.level IS 'Severity: info, warning or error.';
COMMENT ON COLUMN batch.events.event IS 'What happened: submitted, items_added, retry_failed, item_retried, item_updated, stage_rerun, cancelled, owner_changed, items_reclaimed, purged or counters_corrected.';
COMMENT ON COLUMN batch.events.message IS 'What happened, in words.';
COMMENT ON COLUMN batch.events.detail IS 'The particulars as JSON, such as the item count and the filters of a retry_failed call; NULL when there are none.';
COMMENT ON COLUMN batch.events.actor IS 'The role that did it: the role that called the function, or the role of the executor or maintenance job that acted.';
COMMENT ON COLUMN batch.events.created_at IS 'When it happened.';
COMMENT ON COLUMN batch.items.id IS 'Item id.';
COMMENT ON COLUMN batch.items.batch_id IS 'The batch the item belongs to (batch.batches.id).';
COMMENT ON COLUMN batch.items.key IS 'The payload''s "key" member, unique within the batch: an element whose key is already there is skipped. NULL when the payload has none.';
COMMENT ON COLUMN batch.items.payload IS 'The item: the JSON object submitted, or the one batch.update_item() put in its place. JSON null when the element was larger than pgbatch.max_payload_size.';
COMMENT ON COLUMN batch.items.status IS 'Where the item is: pending (waiting for a first attempt or a retry), running (an HTTP request is out for it), completed (every stage done), failed (in the review queue) or cancelled.';
COMMENT ON COLUMN batch.items.stage IS 'The stage the item is at: the next to run while pending, the one in flight while running, the one it failed or was cancelled at, or the last one once completed.';
COMMENT ON COLUMN batch.items.attempt IS 'Attempts made so far at the current stage.';
COMMENT ON COLUMN batch.items.next_due IS 'When a pending item is due for its next attempt; after a transient error, the failed attempt''s end plus the backoff. An item that goes on to its next stage, or is taken back from a stopped executor, keeps the due time it had, so it comes before the items due after it. Not meaningful for other statuses.';
COMMENT ON COLUMN batch.items.error_code IS 'Error code of the last failed attempt at the current stage (see Error codes in the user guide), kept while the item waits for a retry. NULL when there is none.';
COMMENT ON COLUMN batch.items.error_message IS 'Error message of the last failed attempt at the current stage; NULL when there is none.';
COMMENT ON COLUMN batch.items.max_retries IS 'Per-item override of the stage''s max_retries, set by batch.retry_failed(); NULL to use the stage''s.';
COMMENT ON COLUMN batch.items.backoff_factor IS 'Per-item override of the stage''s backoff_factor, set by batch.retry_failed(); NULL to use the stage''s.';
COMMENT ON COLUMN batch.items.created_at IS 'When the item was added, by batch.submit() or batch.add_items().';
COMMENT ON COLUMN batch.items.updated_at IS 'When the item''s row last changed.';
COMMENT ON COLUMN batch.items.finished_at IS 'When the item became completed, failed or cancelled; NULL while it is pending or running.';
COMMENT ON COLUMN batch.items.claimed_by IS 'Process id of the executor (or batch.run() session) that holds the item while its HTTP request is out; NULL when the item is not running.';
COMMENT ON COLUMN batch.items.lease_until IS 'When the hold on a running item ends: after that, an executor or maintenance takes the item back with error code interrupted. NULL when the item is not running.';
COMMENT ON COLUMN batch.log.batch_id IS 'Batch id.';
COMMENT ON COLUMN batch.log.item_id IS 'The item; NULL for events about a whole batch.';
COMMENT ON COLUMN batch.log.stage IS 'The stage attempted; NULL for events.';
COMMENT ON COLUMN batch.log.attempt IS 'Attempt number at that stage, from 1; NULL for events.';
COMMENT ON COLUMN batch.log.level IS 'Severity: info, warning or error. An attempt is info when it completed, warning when it will be retried and error when it failed the item.';
COMMENT ON COLUMN batch.log.event IS 'For an attempt, stage_ followed by its outcome (stage_completed, stage_retry or stage_failed); for an event, its name from batch.events.';
COMMENT ON COLUMN batch.log.error_code IS 'The attempt''s error code; NULL for completed attempts and for events.';
COMMENT ON COLUMN batch.log.message IS 'The attempt''s error message; for an event, what happened followed by "(by <role>)".';
COMMENT ON COLUMN batch.log.started_at IS 'When the attempt began, or when the event happened.';
COMMENT ON COLUMN batch.log.finished_at IS 'When the attempt ended, or when the event happened.';
COMMENT ON COLUMN batch.log.duration_ms IS 'The attempt''s duration in milliseconds (finished_at minus started_at, 3 decimals); NULL for events.';
COMMENT ON COLUMN batch.log.http_status IS 'HTTP status of the response, for HTTP attempts that got an answer; NULL otherwise.';
COMMENT ON COLUMN batch.metrics.metric IS 'Metric family: pgbatch_items, pgbatch_failed_items, pgbatch_attempts_total, pgbatch_attempt_duration_seconds, or pgbatch_endpoint_ followed by in_flight, requests_total, failures_total, paused, paused_seconds, circuit_open or consecutive_failures. The attempt metrics cover batches not finished or finished within the last hour.';
COMMENT ON COLUMN batch.metrics.kind IS 'Prometheus metric type: gauge or counter.';
COMMENT ON COLUMN batch.metrics.batch IS 'Label: batch name; NULL for the endpoint metrics.';
COMMENT ON COLUMN batch.metrics.stage IS 'Label: stage name, for pgbatch_failed_items, pgbatch_attempts_total and pgbatch_attempt_duration_seconds; NULL otherwise.';
COMMENT ON COLUMN batch.metrics.endpoint IS 'Label: endpoint name, for the pgbatch_endpoint_ metrics; NULL otherwise.';
COMMENT ON COLUMN batch.metrics.state IS 'Label for pgbatch_items: pending (waiting for a first attempt), retrying, running, completed, failed or cancelled; NULL otherwise.';
COMMENT ON COLUMN batch.metrics.outcome IS 'Label for pgbatch_attempts_total: completed, retry or failed; NULL otherwise.';
COMMENT ON COLUMN batch.metrics.code IS 'Label for pgbatch_failed_items: the error code; NULL otherwise.';
COMMENT ON COLUMN batch.metrics.quantile IS 'Label for pgbatch_attempt_duration_seconds: 0.5, 0.9 or 0.99, over the attempts that ended in the last 5 minutes; NULL otherwise.';
COMMENT ON COLUMN batch.metrics.value IS 'The value: a count of items, attempts or requests, seconds for pgbatch_attempt_duration_seconds and pgbatch_endpoint_paused_seconds, or 1 or 0 for pgbatch_endpoint_paused and pgbatch_endpoint_circuit_open.';
COMMENT ON COLUMN batch.outputs.item_id IS 'The item (batch.items.id).';
COMMENT ON COLUMN batch.outputs.stage IS 'The name of the completed stage; it keys this output in the outputs passed to later stages.';
COMMENT ON COLUMN batch.outputs.output IS 'What the stage returned: the SQL stage function''s result or the JSON body of the HTTP response. JSON null for an SQL NULL or an empty body.';
COMMENT ON COLUMN batch.outputs.created_at IS 'When the stage completed and its output was recorded.';
COMMENT ON COLUMN batch.pipelines.id IS 'Pipeline id.';
COMMENT ON COLUMN batch.pipelines.name IS 'Pipeline name, unique in the database.';
COMMENT ON COLUMN batch.pipelines.definition IS 'The stages as given to batch.create_pipeline(), a JSON array; batch.stages holds them resolved.';
COMMENT ON COLUMN batch.pipelines.retry IS 'The pipeline''s retry policy (max_retries, backoff_base, backoff_factor, backoff_max, jitter) merged over the defaults, with intervals in seconds such as "2 s". Each stage''s effective policy is in batch.stages.';
COMMENT ON COLUMN batch.pipelines.required IS 'Keys every item must have, not JSON null and not blank; an item without one is stored as failed with error code invalid_input. Empty for none.';
COMMENT ON COLUMN batch.pipelines.created_at IS 'When the pipeline was created.';
COMMENT ON COLUMN batch.pipelines.created_by IS 'The role that created the pipeline; its members and admins may use it without a grant.';
COMMENT ON COLUMN batch.progress.id IS 'Batch id.';
COMMENT ON COLUMN batch.progress.name IS 'Batch name.';
COMMENT ON COLUMN batch.progress.pipeline IS 'Pipeline name.';
COMMENT ON COLUMN batch.progress.status IS 'Batch status: queued (no item attempted yet), running, completed (finished, none failed), partial (finished, some failed), failed (finished, none completed) or cancelled (cancelled, or finished with every item cancelled).';
COMMENT ON COLUMN batch.progress.total IS 'Items in the batch, in every state.';
COMMENT ON COLUMN batch.progress.pending IS 'Items waiting for an attempt, retrying ones included.';
COMMENT ON COLUMN batch.progress.running IS 'Items with an HTTP request out; items at SQL stages never show as running.';
COMMENT ON COLUMN batch.progress.retrying IS 'Items waiting out a backoff before a retry, a part of pending.';
COMMENT ON COLUMN batch.progress.completed IS 'Items that completed every stage.';
COMMENT ON COLUMN batch.progress.failed IS 'Failed items, those in the review queue.';
COMMENT ON COLUMN batch.progress.cancelled IS 'Cancelled items.';
COMMENT ON COLUMN batch.progress.completion_ratio IS 'Share of the items completed: completed divided by total, rounded to 4 decimals. NULL for a batch without items.';
COMMENT ON COLUMN batch.progress.created_at IS 'When the batch was submitted.';
COMMENT ON COLUMN batch.progress.started_at IS 'When an item of the batch was first recorded as attempted; NULL while the batch is queued.';
COMMENT ON COLUMN batch.progress.finished_at IS 'When nothing was left waiting or running: the last counter change, or the cancellation if later. NULL until then, and again while a retry or rerun is under way.';
COMMENT ON COLUMN batch.progress.owner IS 'The role the batch belongs to.';
COMMENT ON COLUMN batch.review_queue.batch_id IS 'Batch id.';
COMMENT ON COLUMN batch.review_queue.item_id IS 'Item id, for batch.update_item() and batch.retry_item().';
COMMENT ON COLUMN batch.review_queue.key IS 'The item''s key; NULL if it has none.';
COMMENT ON COLUMN batch.review_queue.stage IS 'The stage the item failed at, where a retry resumes.';
COMMENT ON COLUMN batch.review_queue.error_code IS 'The error code the item failed with.';
COMMENT ON COLUMN batch.review_queue.error IS 'The error message the item failed with. What an HTTP API answered is in batch.attempts.response_body.';
COMMENT ON COLUMN batch.review_queue.attempts IS 'Attempts made at that stage (0 for invalid_input).';
COMMENT ON COLUMN batch.review_queue.payload IS 'The item''s payload.';
COMMENT ON COLUMN batch.review_queue.failed_at IS 'When the item failed.';
COMMENT ON COLUMN batch.schedules.id IS 'Scheduled submission id; its pg_cron job is named pgbatch_submit_<id>.';
COMMENT ON COLUMN batch.schedules.name IS 'Name of the scheduled submission, unique; each batch it creates is named "<name> <timestamp>".';
COMMENT ON COLUMN batch.schedules.pipeline IS 'Name of the pipeline each run submits to.';
COMMENT ON COLUMN batch.schedules.schedule IS 'When the job runs, as a pg_cron schedule such as ''*/5 * * * *''.';
COMMENT ON COLUMN batch.schedules.query IS 'The SQL query whose rows become the items of a new batch, run as the owner. Each row''s columns become the item''s keys; a single column named item gives the item as is.';
COMMENT ON COLUMN batch.schedules.owner IS 'The role that scheduled the submission: the query runs as this role, which alone may run it, and it owns the batches created.';
COMMENT ON COLUMN batch.schedules.created_at IS 'When the submission was first scheduled.';
COMMENT ON COLUMN batch.schedules.last_run_at IS 'When the job last ran; NULL if it never has.';
COMMENT ON COLUMN batch.schedules.last_batch_id IS 'The batch created by the latest run that returned rows; a run without rows keeps it. NULL until a run has created one.';
COMMENT ON COLUMN batch.stages.pipeline_id IS 'The pipeline (batch.pipelines.id).';
COMMENT ON COLUMN batch.stages.position IS 'Order of the stage in its pipeline, from 1.';
COMMENT ON COLUMN batch.stages.name IS 'Stage name, unique within the pipeline; it keys the stage''s output in the outputs passed to later stages.';
COMMENT ON COLUMN batch.stages.kind IS 'Kind of stage: sql (calls a function in the database) or http (sends a request to an endpoint).';
COMMENT ON COLUMN batch.stages.func IS 'SQL stage: the stage function. HTTP stage: the optional function that builds the request body.';
COMMENT ON COLUMN batch.stages.timeout IS 'Longest one call of the stage or body function may run; NULL means pgbatch.stage_timeout. For an HTTP stage it bounds the body function only, and the endpoint''s timeout bounds the request.';
COMMENT ON COLUMN batch.stages.max_retries IS 'Retries allowed after the first attempt; a transient error on attempt max_retries + 1 fails the item.';
COMMENT ON COLUMN batch.stages.backoff_base IS 'Delay before the first retry.';
COMMENT ON COLUMN batch.stages.backoff_factor IS 'How many times longer each further retry waits than the one before (1 to 100).';
COMMENT ON COLUMN batch.stages.backoff_max IS 'Longest delay before any retry.';
COMMENT ON COLUMN batch.stages.jitter IS 'Fraction, from 0 to 1, by which each delay varies uniformly either way.';
COMMENT ON COLUMN batch.stages.endpoint_id IS 'The endpoint an HTTP stage calls (batch.endpoints.id); NULL for a SQL stage.';
COMMENT ON COLUMN batch.stages.method IS 'Request method of an HTTP stage: GET, POST, PUT, PATCH or DELETE. NULL for a SQL stage.';
COMMENT ON COLUMN batch.stages.path IS 'Path of an HTTP stage, appended to the endpoint''s base_url; it may hold a query string. NULL for a SQL stage.';
COMMENT ON COLUMN batch.stages.usage_path IS 'Where the stage output reports the tokens it used, e.g. {usage,total_tokens}; NULL if it does not.';
COMMENT ON COLUMN batch.stages.price_per_1k_tokens IS 'The price of 1,000 of those tokens, in the currency of your choice; NULL if not set.';
COMMENT ON COLUMN batch.stages.func_pin IS 'Fingerprint of the stage (or body) function as it was when the pipeline was created or last refreshed.';
COMMENT ON COLUMN batch.usage_grants.object_kind IS 'What is granted: endpoint or pipeline.';
COMMENT ON COLUMN batch.usage_grants.object_id IS 'The endpoint (batch.endpoints.id) or pipeline (batch.pipelines.id).';
COMMENT ON COLUMN batch.usage_grants.grantee IS 'The role granted use, and so its members.';
COMMENT ON COLUMN batch.usage_grants.granted_by IS 'The role that granted it.';
COMMENT ON COLUMN batch.usage_grants.granted_at IS 'When it was granted.';
COMMENT ON COLUMN batch.workers.pid IS 'Process id of the executor (pg_stat_activity.pid).';
COMMENT ON COLUMN batch.workers.worker IS 'Executor number within the database, from 0.';
COMMENT ON COLUMN batch.workers.started_at IS 'When the executor started.';
COMMENT ON COLUMN batch.workers.in_flight IS 'HTTP requests the executor has in flight now.';
COMMENT ON COLUMN batch.workers.requests IS 'HTTP requests the executor has sent since it started.';

COMMENT ON FUNCTION batch.create_pipeline(text, jsonb, jsonb, text[]) IS
	'creates a pipeline: ordered SQL and HTTP stages, a retry policy, required item keys; returns its id (admins)';
COMMENT ON FUNCTION batch.drop_pipeline(text) IS
	'drops a pipeline no batch uses (admins)';
COMMENT ON FUNCTION batch.set_stage_cost(text, text, text, numeric) IS
	'says where a stage''s output reports its token usage, and the price per 1,000 tokens (admins)';
COMMENT ON FUNCTION batch.submit(text, jsonb, text) IS
	'submits a JSON array of items as a new batch of the pipeline, owned by the caller; returns the batch id';
COMMENT ON FUNCTION batch.add_items(bigint, jsonb) IS
	'adds a JSON array of items to a batch; returns how many were inserted';
COMMENT ON FUNCTION batch.add_items(text, jsonb) IS
	'adds a JSON array of items to a batch (by name); returns how many were inserted';
COMMENT ON FUNCTION batch.run(bigint, bigint, float8) IS
	'runs a batch''s due work in this session, within limits; returns what it did and when the next item is due';
COMMENT ON FUNCTION batch.run(text, bigint, float8) IS
	'runs the due work of a batch (by name), or of every batch the caller may act on, in this session';
COMMENT ON FUNCTION batch.retry_failed(bigint, integer, float8, text[], text, boolean) IS
	're-queues the failed items of a batch at the stage where they failed, outputs kept; under the batch''s advisory lock (wait: block until another call holding it is done, instead of returning 0)';
COMMENT ON FUNCTION batch.retry_failed(text, integer, float8, text[], text, boolean) IS
	're-queues the failed items of a batch (by name) at the stage where they failed, outputs kept';
COMMENT ON FUNCTION batch.retry_item(bigint) IS
	're-queues one failed item at its stage; true if it was';
COMMENT ON FUNCTION batch.update_item(bigint, jsonb) IS
	'replaces the payload of a pending, failed or cancelled item (validated)';
COMMENT ON FUNCTION batch.cancel(bigint) IS
	'cancels a batch: its waiting items become cancelled; returns how many';
COMMENT ON FUNCTION batch.cancel(text) IS
	'cancels a batch (by name): its waiting items become cancelled; returns how many';
COMMENT ON FUNCTION batch.set_owner(text, name) IS
	'gives a batch (by name) to a role the caller is a member of; its stages then run as that role';
COMMENT ON FUNCTION batch.set_owner(bigint, name) IS
	'gives a batch to a role the caller is a member of; its stages then run as that role';
COMMENT ON FUNCTION batch.rerun_stage(bigint, text, boolean) IS
	're-queues a batch''s items from a stage on, dropping that stage''s and later outputs; earlier outputs kept (wait: block on the batch''s lock instead of returning 0)';
COMMENT ON FUNCTION batch.rerun_stage(text, text, boolean) IS
	're-queues a batch''s (by name) items from a stage on, dropping that stage''s and later outputs';
COMMENT ON FUNCTION batch.create_endpoint(text, text, jsonb, integer, integer, interval, boolean, jsonb, integer, integer, text) IS
	'creates an HTTP endpoint: base URL, secret headers, concurrency, rate limit and burst, timeout, TLS trust, tokens per minute, proxy; returns its id';
COMMENT ON FUNCTION batch.alter_endpoint(text, text, jsonb, integer, integer, interval, boolean, jsonb, integer, integer, text) IS
	'changes the settings given (NULL keeps one) of an endpoint of the caller''s role; headers are replaced, never read; tls keys given replace those stored; proxy '''' removes the proxy';
COMMENT ON FUNCTION batch.drop_endpoint(text) IS
	'drops an endpoint no pipeline uses, freeing its shared-memory slot';
COMMENT ON FUNCTION batch.schedule_retry(text, text) IS
	'retries a batch''s failed items on a cron schedule: a pg_cron job of the caller; returns the job id';
COMMENT ON FUNCTION batch.schedule_retry(bigint, text) IS
	'retries a batch''s failed items on a cron schedule: a pg_cron job of the caller; returns the job id';
COMMENT ON FUNCTION batch.unschedule_retry(text) IS
	'removes the scheduled retries of a batch; returns how many jobs went';
COMMENT ON FUNCTION batch.unschedule_retry(bigint) IS
	'removes the scheduled retries of a batch; returns how many jobs went';
COMMENT ON FUNCTION batch.schedule_run(text, float8) IS
	'runs batch.run() on a cron schedule as the caller (for databases without executors); returns the job id';
COMMENT ON FUNCTION batch.unschedule_run() IS
	'removes the caller''s scheduled runs; returns how many jobs went';
COMMENT ON FUNCTION batch.schedule_submit(text, text, text, text) IS
	'submits the rows of the caller''s query as a new batch on a cron schedule; returns the job id';
COMMENT ON FUNCTION batch.unschedule_submit(text) IS
	'removes a scheduled submission and its job; returns how many jobs went';
COMMENT ON FUNCTION batch.run_schedule(integer) IS
	'one run of a scheduled submission (what its job calls), as its owner only; returns the new batch id or NULL';
COMMENT ON FUNCTION batch.schedule_maintenance(text) IS
	'runs batch.maintenance() on a cron schedule as the calling admin; returns the job id';
COMMENT ON FUNCTION batch.unschedule_maintenance() IS
	'removes the maintenance job; returns how many jobs went (admins)';
COMMENT ON PROCEDURE batch.maintenance(float8, integer) IS
	'takes back orphaned items, purges history past pgbatch.retention, keeps counters honest; commits as it goes (admins)';

COMMENT ON TABLE batch.pipelines IS 'pipelines: ordered stages and the retry policy they share';
COMMENT ON TABLE batch.stages IS 'the stages of each pipeline, with their resolved retry policy';
COMMENT ON TABLE batch.batches IS 'batches: one run of a pipeline over a set of items, owned by a role';
COMMENT ON TABLE batch.items IS 'items: one JSON payload each, with its stage, state, attempts and last error';
COMMENT ON TABLE batch.outputs IS 'the output of every stage an item completed';
COMMENT ON TABLE batch.attempts IS 'every attempt of every stage of every item';
COMMENT ON TABLE batch.events IS 'what happened to batches and endpoints besides attempts, and who did it';
COMMENT ON TABLE batch.counters IS 'items by state per batch, kept by a trigger per backend (shard); not dumped: a restore rebuilds it';
COMMENT ON TABLE batch.endpoints IS 'HTTP endpoints: base URL, secret headers (admins read them) and limits';
COMMENT ON TABLE batch.schedules IS 'scheduled submissions: a query whose rows become a batch on a cron schedule';
COMMENT ON VIEW batch.progress IS 'per batch: status and items by state, from the counters (constant time)';
COMMENT ON VIEW batch.errors IS 'failed items per batch, stage and error code, with a sample message';
COMMENT ON VIEW batch.log IS 'every attempt and batch event, as log lines';
COMMENT ON VIEW batch.review_queue IS 'the failed items, with their payload and last error';
COMMENT ON VIEW batch.endpoint_status IS 'per endpoint: settings and the live state shared by the executors';
COMMENT ON VIEW batch.workers IS 'the running executors of this database';
COMMENT ON VIEW batch.costs IS 'tokens and cost per batch and stage, and what retries cost and retry_failed saved';
COMMENT ON VIEW batch.metrics IS 'counters and gauges for Prometheus (doc/prometheus-queries.yml)';

/* ------------------------------------------------------------------------
 * Backups that restore
 * ------------------------------------------------------------------------ */

-- the identity sequences go into a dump with the tables they number, so
-- that a restored database goes on with new ids
SELECT pg_catalog.pg_extension_config_dump('batch.pipelines_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('batch.items_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('batch.attempts_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('batch.events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('batch.endpoints_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('batch.schedules_id_seq', '');

/*
 * The counters are derived from the items: restoring the items rebuilds
 * them (the counting trigger fires on the restore's COPY), so a dump leaves
 * them out; dumped too, a restore would count every item twice.  Dropping
 * the table from the extension and adding it back takes it off the list of
 * configuration tables.
 */
ALTER EXTENSION pgbatch DROP TABLE batch.counters;
ALTER EXTENSION pgbatch ADD TABLE batch.counters;

/* ------------------------------------------------------------------------
 * Privileges: reading through row-level security, writing through the API
 * ------------------------------------------------------------------------ */

DROP POLICY batches_insert ON batch.batches;
DROP POLICY batches_update ON batch.batches;
DROP POLICY batches_delete ON batch.batches;
DROP POLICY items_insert ON batch.items;
DROP POLICY items_update ON batch.items;
DROP POLICY items_delete ON batch.items;
DROP POLICY outputs_insert ON batch.outputs;
DROP POLICY outputs_update ON batch.outputs;
DROP POLICY outputs_delete ON batch.outputs;
DROP POLICY attempts_insert ON batch.attempts;
DROP POLICY attempts_delete ON batch.attempts;
DROP POLICY events_insert ON batch.events;
DROP POLICY events_delete ON batch.events;
DROP POLICY counters_insert ON batch.counters;
DROP POLICY counters_update ON batch.counters;
DROP POLICY counters_delete ON batch.counters;
DROP POLICY schedules_change ON batch.schedules;
DROP POLICY endpoints_insert ON batch.endpoints;
DROP POLICY endpoints_update ON batch.endpoints;
DROP POLICY endpoints_delete ON batch.endpoints;

-- the helpers that moved to batch_internal: triggers, policies and views
-- call them there
DROP TRIGGER items_count_insert ON batch.items;
DROP TRIGGER items_count_update ON batch.items;
DROP TRIGGER items_count_delete ON batch.items;
CREATE TRIGGER items_count_insert AFTER INSERT ON batch.items
	REFERENCING NEW TABLE AS new_items
	FOR EACH STATEMENT EXECUTE FUNCTION batch_internal.count_items();
CREATE TRIGGER items_count_update AFTER UPDATE ON batch.items
	REFERENCING OLD TABLE AS old_items NEW TABLE AS new_items
	FOR EACH STATEMENT EXECUTE FUNCTION batch_internal.count_items();
CREATE TRIGGER items_count_delete AFTER DELETE ON batch.items
	REFERENCING OLD TABLE AS old_items
	FOR EACH STATEMENT EXECUTE FUNCTION batch_internal.count_items();
DROP TRIGGER pipelines_limit ON batch.pipelines;
DROP TRIGGER stages_limit ON batch.stages;
CREATE TRIGGER pipelines_limit BEFORE INSERT ON batch.pipelines
	FOR EACH ROW EXECUTE FUNCTION batch_internal.check_pipeline_limits();
CREATE TRIGGER stages_limit BEFORE INSERT ON batch.stages
	FOR EACH ROW EXECUTE FUNCTION batch_internal.check_pipeline_limits();
DROP TRIGGER batches_finished ON batch.batches;
CREATE TRIGGER batches_finished BEFORE UPDATE OF counted_at ON batch.batches
	FOR EACH ROW WHEN (NEW.counted_at IS NOT NULL)
	EXECUTE FUNCTION batch_internal.announce_finished();

ALTER POLICY batches_see ON batch.batches USING (batch_internal.current_can_see(owner));
ALTER POLICY schedules_see ON batch.schedules USING (batch_internal.current_can_see(owner));

-- the batch status rule is the C one (batch_internal.batch_status)
CREATE OR REPLACE VIEW batch.progress WITH (security_invoker = true) AS
SELECT b.id, b.name, p.name AS pipeline,
	   batch_internal.batch_status(b.cancelled_at IS NOT NULL, c.pending, c.retrying, c.running,
								   c.completed, c.failed, c.cancelled, c.started_at IS NOT NULL) AS status,
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

CREATE OR REPLACE VIEW batch.endpoint_status AS
SELECT e.id, e.name, e.base_url, e.max_concurrency, e.rate_limit, e.timeout,
	   coalesce(s.in_flight, 0) AS in_flight,
	   CASE WHEN s.paused_until > now() THEN s.paused_until END AS paused_until,
	   coalesce(s.circuit, 'closed') AS circuit,
	   coalesce(s.consecutive_failures, 0) AS consecutive_failures,
	   coalesce(s.requests, 0) AS requests,
	   coalesce(s.failures, 0) AS failures,
	   e.burst,
	   coalesce(s.rate_factor, 1) AS rate_factor,
	   e.tokens_per_minute,
	   coalesce(s.tokens_used, 0) AS tokens_used,
	   s.requests_left AS provider_requests_left,
	   s.tokens_left AS provider_tokens_left,
	   regexp_replace(e.proxy, '^([a-zA-Z0-9]+://)[^/@]*@', '\1') AS proxy
FROM batch.endpoints e
LEFT JOIN batch_internal.endpoint_state() s ON s.endpoint_id = e.id;
COMMENT ON COLUMN batch.endpoint_status.burst IS 'Requests that may go out at once after a quiet spell; past it they are spaced evenly at rate_limit.';
COMMENT ON COLUMN batch.endpoint_status.rate_factor IS 'The share of rate_limit, tokens_per_minute and max_concurrency in use now: a 429 halves it (down to 1/64), each success gives 1/64 back, up to 1.';
COMMENT ON COLUMN batch.endpoint_status.tokens_per_minute IS 'Most LLM tokens per minute, all executors together; NULL for no limit.';
COMMENT ON COLUMN batch.endpoint_status.tokens_used IS 'LLM tokens the endpoint''s responses reported (usage.total_tokens and the like) since the server started.';
COMMENT ON COLUMN batch.endpoint_status.provider_requests_left IS 'Requests the provider''s rate-limit headers last said were left, less those sent since; NULL when it did not say or its window has ended.';
COMMENT ON COLUMN batch.endpoint_status.provider_tokens_left IS 'Tokens the provider''s rate-limit headers last said were left, less the estimates of requests sent since; NULL when it did not say or its window has ended.';
COMMENT ON COLUMN batch.endpoint_status.proxy IS 'The proxy requests go through, without its user name and password; NULL for none.';

CREATE OR REPLACE VIEW batch.workers AS
SELECT w.pid, w.worker, w.started_at, w.in_flight, w.requests
FROM batch_internal.workers() w;

DROP FUNCTION batch._batch_id(bigint);
DROP FUNCTION batch._batch_id(text);
DROP FUNCTION batch._can_see(name);
DROP FUNCTION batch._can_act(name);
DROP FUNCTION batch._limits();
DROP FUNCTION batch._max_payload_size();
DROP FUNCTION batch._invalid_reason(jsonb, text[], integer);
DROP FUNCTION batch._url_check(text);
DROP FUNCTION batch._wake_launcher();
DROP FUNCTION batch._endpoint_state();
DROP FUNCTION batch._workers();
DROP FUNCTION batch._count_items();
DROP FUNCTION batch._announce_finished();
DROP FUNCTION batch._check_pipeline_limits();
DROP FUNCTION batch._insert_items(bigint, jsonb);
-- left by the rename-and-wrap of an earlier 1.1 -> 1.2 script
DROP FUNCTION IF EXISTS batch._insert_items_unchecked(bigint, jsonb);
DROP FUNCTION batch._retry_policy(jsonb, jsonb, text);
DROP FUNCTION batch._require_cron(text, text, text);
DROP FUNCTION batch._check_endpoint(text, text, jsonb, integer, integer, interval);
DROP FUNCTION IF EXISTS batch._check_endpoint_settings(text, text, jsonb, integer, integer, interval);
DROP FUNCTION batch._http_stage(jsonb, text);

-- per-batch priority among an owner's batches (issue 12)
ALTER TABLE batch.batches ADD COLUMN priority integer NOT NULL DEFAULT 0;
COMMENT ON COLUMN batch.batches.priority IS 'Among the batches of one owner, those of a higher priority run first (batch.set_priority()); owners still take turns. 0 by default.';

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

CREATE FUNCTION batch.set_priority(batch bigint, priority integer) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.set_priority(bigint,integer) IS
	'sets the batch''s priority (-1000 to 1000, default 0) among its owner''s batches: higher runs first';

CREATE FUNCTION batch.set_priority(batch text, priority integer) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.set_priority(text,integer) IS
	'sets the batch''s (by name) priority (-1000 to 1000, default 0) among its owner''s batches: higher runs first';

REVOKE ALL ON FUNCTION batch.set_priority(bigint, integer), batch.set_priority(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION batch.set_priority(bigint, integer), batch.set_priority(text, integer)
	TO pgbatch_operator;


/*
 * The hot/cold layout (issue 12): the state of unfinished items moves to the
 * narrow batch.queue, which carries the partial indexes that batch.items had,
 * so that the item rows' state changes become HOT updates.
 */
/*
 * The queue: one narrow row per item, a copy of the item's state columns
 * kept by the statement triggers on batch.items (batch_internal.queue_items).
 * The claims, the due times, the leases and the review queue read it through
 * its partial indexes, which hold only unfinished work: an item leaves them
 * when it completes or is cancelled, and the item rows stay free of them.
 * Finished items keep their row, so that the table's statistics, which the
 * plans of the claims rest on, never describe an empty queue between two
 * batches.  Autovacuum visits it after a fixed number of dead rows,
 * whatever its size.  A state change cannot be a HOT update here (the state
 * is what the partial indexes select on), but with a fillfactor of 30 its
 * new versions have room on the row's own page, for an item's row changes
 * at least twice in quick succession (claimed, then finished): an update
 * that must move its row to another page first writes a row lock to the
 * WAL (per HTTP item, measured: 1.8 such locks with 100, 0.8 with 50, none
 * with 30).
 */
CREATE TABLE batch.queue (
	item_id		bigint PRIMARY KEY,
	batch_id	bigint NOT NULL,
	status		text NOT NULL
		CHECK (status IN ('pending', 'running', 'completed', 'failed', 'cancelled')),
	stage		text NOT NULL,
	next_due	timestamptz NOT NULL,
	error_code	text
) WITH (fillfactor = 30,
		autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 20000,
		autovacuum_vacuum_insert_scale_factor = 0, autovacuum_vacuum_insert_threshold = 100000,
		autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 20000);

-- Due work, per batch; no index across batches: what reads across batches
-- goes batch by batch (src/claim.h, PGB_ACTIVE_BATCHES), so that no plan can
-- walk other batches' due items for one batch.
CREATE INDEX queue_due_batch_idx ON batch.queue (batch_id, next_due, item_id)
	WHERE status = 'pending';
-- Failed items: keeps retry_failed() and the review queue O(failed).
CREATE INDEX queue_failed_idx ON batch.queue (batch_id, stage, error_code)
	WHERE status = 'failed';
-- Items a worker holds (leases).
CREATE INDEX queue_running_idx ON batch.queue (batch_id)
	WHERE status = 'running';

COMMENT ON TABLE batch.queue IS
	'a narrow copy of every item''s state, kept by triggers on batch.items, whose partial indexes the claims and the review queue read';
COMMENT ON COLUMN batch.queue.item_id IS 'The item (batch.items.id).';
COMMENT ON COLUMN batch.queue.batch_id IS 'The item''s batch (batch.batches.id).';
COMMENT ON COLUMN batch.queue.status IS 'The item''s status, as in batch.items.status.';
COMMENT ON COLUMN batch.queue.stage IS 'The item''s stage, as in batch.items.stage.';
COMMENT ON COLUMN batch.queue.next_due IS 'The item''s due time, as in batch.items.next_due.';
COMMENT ON COLUMN batch.queue.error_code IS 'The item''s last error code, as in batch.items.error_code.';

/*
 * The copy must hold every item: no write to batch.items may commit between
 * it and the triggers below, or that item would have no queue row and never
 * be claimed.  (DROP POLICY above already holds a stronger lock; this says
 * why it must be held here.)
 */
LOCK TABLE batch.items IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO batch.queue (item_id, batch_id, status, stage, next_due, error_code)
SELECT i.id, i.batch_id, i.status, i.stage, i.next_due, i.error_code
FROM batch.items i;

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

DROP INDEX batch.items_due_batch_idx;
DROP INDEX batch.items_due_idx;
DROP INDEX batch.items_failed_idx;
DROP INDEX batch.items_running_idx;
-- new pages keep room for HOT updates; existing ones as they are rewritten
ALTER TABLE batch.items SET (fillfactor = 50);

ALTER TABLE batch.queue ENABLE ROW LEVEL SECURITY;
CREATE POLICY queue_see ON batch.queue FOR SELECT
	USING (batch_id IN (SELECT b.id FROM batch.batches b));
GRANT SELECT ON batch.queue TO pgbatch_admin, pgbatch_reader;

CREATE OR REPLACE VIEW batch.errors WITH (security_invoker = true) AS
SELECT i.batch_id, b.name AS batch, i.stage, i.error_code,
	   count(*) AS items,
	   min(i.finished_at) AS first_seen,
	   max(i.finished_at) AS last_seen,
	   (array_agg(i.error_message ORDER BY i.finished_at DESC, i.id))[1] AS sample_error
FROM batch.queue q
JOIN batch.items i ON i.id = q.item_id
JOIN batch.batches b ON b.id = i.batch_id
WHERE q.status = 'failed'
GROUP BY i.batch_id, b.name, i.stage, i.error_code;
CREATE OR REPLACE VIEW batch.review_queue WITH (security_invoker = true) AS
SELECT i.batch_id, i.id AS item_id, i.key, i.stage, i.error_code,
	   i.error_message AS error, i.attempt AS attempts, i.payload,
	   i.finished_at AS failed_at
FROM batch.queue q
JOIN batch.items i ON i.id = q.item_id
WHERE q.status = 'failed';

REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON ALL TABLES IN SCHEMA batch
	FROM PUBLIC, pgbatch_reader, pgbatch_operator, pgbatch_admin, pgbatch_monitor;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA batch
	FROM PUBLIC, pgbatch_reader, pgbatch_operator, pgbatch_admin, pgbatch_monitor;

-- helpers: nobody but the extension's owner, except the ones the policies
-- and views call for every reader
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA batch_internal FROM PUBLIC;
GRANT EXECUTE ON FUNCTION batch_internal.current_can_see(name), batch_internal.endpoint_state(),
	batch_internal.workers(),
	batch_internal.batch_status(boolean, bigint, bigint, bigint, bigint, bigint, bigint, boolean)
	TO pgbatch_reader;

REVOKE ALL ON batch.usage_grants FROM PUBLIC;
GRANT SELECT ON batch.usage_grants TO pgbatch_admin;
REVOKE ALL ON FUNCTION batch.grant_endpoint(text, name), batch.revoke_endpoint(text, name),
	batch.grant_pipeline(text, name), batch.revoke_pipeline(text, name) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION batch.grant_endpoint(text, name), batch.revoke_endpoint(text, name)
	TO pgbatch_operator;
GRANT EXECUTE ON FUNCTION batch.grant_pipeline(text, name), batch.revoke_pipeline(text, name)
	TO pgbatch_admin;
REVOKE ALL ON FUNCTION batch.refresh_pipeline(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION batch.refresh_pipeline(text) TO pgbatch_admin;
REVOKE ALL ON FUNCTION batch.maintenance_step(text, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION batch.maintenance_step(text, integer) TO pgbatch_admin;
-- create_endpoint and alter_endpoint were made anew (their tls argument)
REVOKE ALL ON FUNCTION
	batch.create_endpoint(text, text, jsonb, integer, integer, interval, boolean, jsonb, integer, integer, text),
	batch.alter_endpoint(text, text, jsonb, integer, integer, interval, boolean, jsonb, integer, integer, text)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	batch.create_endpoint(text, text, jsonb, integer, integer, interval, boolean, jsonb, integer, integer, text),
	batch.alter_endpoint(text, text, jsonb, integer, integer, interval, boolean, jsonb, integer, integer, text)
	TO pgbatch_admin;
GRANT EXECUTE ON FUNCTION
	batch.create_endpoint(text, text, jsonb, integer, integer, interval, boolean, jsonb, integer, integer, text),
	batch.alter_endpoint(text, text, jsonb, integer, integer, interval, boolean, jsonb, integer, integer, text),
	batch.drop_endpoint(text)
	TO pgbatch_operator;

-- batch.health: whether executors serve each database, and if not why not
CREATE FUNCTION batch_internal.health(OUT database name, OUT state text,
	OUT executors integer, OUT wanted integer, OUT since timestamptz,
	OUT started bigint, OUT reason text, OUT hint text)
	RETURNS SETOF record
	LANGUAGE c VOLATILE
	SET search_path = pg_catalog, pg_temp
	AS 'MODULE_PATHNAME', 'pgbatch_health';

CREATE VIEW batch.health AS
SELECT h.database, h.state, h.executors, h.wanted, h.since, h.started, h.reason, h.hint
FROM batch_internal.health() h;
COMMENT ON VIEW batch.health IS
	'per database of the cluster: whether pgbatch executors serve it, how many, since when, and if not, why not and what to do';
COMMENT ON COLUMN batch.health.database IS 'The database (templates are left out).';
COMMENT ON COLUMN batch.health.state IS 'serving (executors claim its work), starting (the launcher is starting them), paused (executors run but claim nothing new: the kill switch, pg_restore) or not served (no executor will run its items; see reason).';
COMMENT ON COLUMN batch.health.executors IS 'Executors running for the database now.';
COMMENT ON COLUMN batch.health.wanted IS 'Executors the launcher keeps running for it (pgbatch.workers), 0 when it is not served.';
COMMENT ON COLUMN batch.health.since IS 'When the longest-running of its executors started: served since then.';
COMMENT ON COLUMN batch.health.started IS 'Executors the launcher started for it since the server started: more than wanted means some exited and were started again.';
COMMENT ON COLUMN batch.health.reason IS 'Why it is not served, or served by fewer executors than wanted, or paused; NULL when all is well.';
COMMENT ON COLUMN batch.health.hint IS 'What to do about the reason.';
REVOKE ALL ON FUNCTION batch_internal.health() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION batch_internal.health() TO pgbatch_reader;
GRANT SELECT ON batch.health TO pgbatch_reader;

-- register this database with the launcher at commit (its registry of the
-- databases with the extension is new in 1.4)
SELECT batch_internal.wake_launcher();

-- retry_failed and rerun_stage were made anew (their wait argument)
REVOKE ALL ON FUNCTION
	batch.retry_failed(bigint, integer, float8, text[], text, boolean),
	batch.retry_failed(text, integer, float8, text[], text, boolean),
	batch.rerun_stage(bigint, text, boolean),
	batch.rerun_stage(text, text, boolean)
	FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	batch.retry_failed(bigint, integer, float8, text[], text, boolean),
	batch.retry_failed(text, integer, float8, text[], text, boolean),
	batch.rerun_stage(bigint, text, boolean),
	batch.rerun_stage(text, text, boolean)
	TO pgbatch_operator;

-- BI without glue: costs for readers (numbers only; the batches they see),
-- stage lists for readers, attempts and completions per minute, results
ALTER VIEW batch.costs RESET (security_invoker);
CREATE OR REPLACE VIEW batch.costs WITH (security_barrier = true) AS
WITH calls AS (
	SELECT e.batch_id, e.created_at
	FROM batch.events e
	WHERE e.event = 'retry_failed' AND coalesce((e.detail ->> 'items')::bigint, 0) > 0
), used AS (
	SELECT i.batch_id, o.stage, o.item_id, o.created_at,
		   CASE WHEN jsonb_typeof(o.output #> s.usage_path) = 'number'
				THEN (o.output #>> s.usage_path)::numeric END AS tokens,
		   EXISTS (SELECT FROM batch.attempts a
				   WHERE a.item_id = o.item_id AND a.stage = o.stage
					 AND a.outcome <> 'completed') AS retried
	FROM batch.outputs o
	JOIN batch.items i ON i.id = o.item_id
	JOIN batch.batches b ON b.id = i.batch_id
	JOIN batch.stages s ON s.pipeline_id = b.pipeline_id AND s.name = o.stage
	WHERE s.usage_path IS NOT NULL AND batch_internal.current_can_see(b.owner)
)
SELECT b.id AS batch_id, b.name AS batch, s.name AS stage, s.price_per_1k_tokens,
	   coalesce(sum(u.tokens), 0) AS tokens,
	   round(coalesce(sum(u.tokens), 0) * s.price_per_1k_tokens / 1000, 6) AS cost,
	   coalesce(sum(u.tokens) FILTER (WHERE u.retried), 0) AS retried_tokens,
	   round(coalesce(sum(u.tokens) FILTER (WHERE u.retried), 0) * s.price_per_1k_tokens / 1000, 6) AS retried_cost,
	   (SELECT count(*) FROM calls c WHERE c.batch_id = b.id) AS retry_failed_calls,
	   coalesce((SELECT sum(u2.tokens) FROM used u2 JOIN calls c ON c.batch_id = u2.batch_id
				 WHERE u2.batch_id = b.id AND u2.stage = s.name AND u2.created_at < c.created_at), 0)
		   AS saved_tokens,
	   round(coalesce((SELECT sum(u2.tokens) FROM used u2 JOIN calls c ON c.batch_id = u2.batch_id
					   WHERE u2.batch_id = b.id AND u2.stage = s.name AND u2.created_at < c.created_at), 0)
			 * s.price_per_1k_tokens / 1000, 6) AS saved_cost
FROM batch.batches b
JOIN batch.stages s ON s.pipeline_id = b.pipeline_id
LEFT JOIN used u ON u.batch_id = b.id AND u.stage = s.name
WHERE s.usage_path IS NOT NULL AND batch_internal.current_can_see(b.owner)
GROUP BY b.id, b.name, s.name, s.position, s.price_per_1k_tokens;

/*
 * Attempts per minute, batch, stage and outcome, and the items that
 * completed (their last stage's completed attempts): a progress-over-time
 * series for any pipeline, without naming its last stage.
 */
CREATE VIEW batch.throughput WITH (security_invoker = true) AS
SELECT date_trunc('minute', a.finished_at) AS minute, a.batch_id, b.name AS batch,
	   a.stage, a.outcome, count(*) AS attempts,
	   count(*) FILTER (WHERE a.outcome = 'completed' AND s.position = last.position) AS items_completed
FROM batch.attempts a
JOIN batch.batches b ON b.id = a.batch_id
JOIN batch.stages s ON s.pipeline_id = b.pipeline_id AND s.name = a.stage
JOIN (SELECT st.pipeline_id, max(st.position) AS position FROM batch.stages st
	  GROUP BY st.pipeline_id) last ON last.pipeline_id = b.pipeline_id
GROUP BY 1, a.batch_id, b.name, a.stage, a.outcome;
COMMENT ON VIEW batch.throughput IS
	'attempts per minute, batch, stage and outcome, and the items completed in that minute';
COMMENT ON COLUMN batch.throughput.minute IS 'The minute the attempts finished in.';
COMMENT ON COLUMN batch.throughput.batch_id IS 'Batch id.';
COMMENT ON COLUMN batch.throughput.batch IS 'Batch name.';
COMMENT ON COLUMN batch.throughput.stage IS 'The stage attempted.';
COMMENT ON COLUMN batch.throughput.outcome IS 'completed, retry (a transient error, retried later) or failed.';
COMMENT ON COLUMN batch.throughput.attempts IS 'Attempts of that stage with that outcome that finished in that minute.';
COMMENT ON COLUMN batch.throughput.items_completed IS 'Items that completed in that minute: the completed attempts of the pipeline''s last stage (0 on the rows of other stages and outcomes).';

-- Every stage output of every item, with the item's key: a batch's results.
CREATE VIEW batch.results WITH (security_invoker = true) AS
SELECT i.batch_id, b.name AS batch, i.id AS item_id, i.key, o.stage, o.output,
	   o.created_at
FROM batch.outputs o
JOIN batch.items i ON i.id = o.item_id
JOIN batch.batches b ON b.id = i.batch_id;
COMMENT ON VIEW batch.results IS
	'the output of every completed stage of every item, with the item''s key and its batch';
COMMENT ON COLUMN batch.results.batch_id IS 'Batch id.';
COMMENT ON COLUMN batch.results.batch IS 'Batch name.';
COMMENT ON COLUMN batch.results.item_id IS 'Item id.';
COMMENT ON COLUMN batch.results.key IS 'The item''s key; NULL if it has none.';
COMMENT ON COLUMN batch.results.stage IS 'The stage that produced the output.';
COMMENT ON COLUMN batch.results.output IS 'What the stage returned (a SQL stage''s result, an HTTP stage''s parsed answer).';
COMMENT ON COLUMN batch.results.created_at IS 'When the stage completed.';
REVOKE SELECT ON batch.costs, batch.stages FROM pgbatch_operator;
GRANT SELECT ON batch.costs, batch.stages, batch.throughput TO pgbatch_reader;
GRANT SELECT ON batch.results TO pgbatch_operator;
