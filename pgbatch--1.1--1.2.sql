/* pgbatch--1.1--1.2.sql
 *
 * A database shared by several teams, and scheduling through pg_cron:
 * row-level security on every batch table (a role sees and acts on the
 * batches of the roles it is a member of; pgbatch_admin on all, the new
 * pgbatch_monitor sees all), column privileges that keep payloads and
 * outputs from readers and endpoint headers from everyone but admins,
 * limits on what one call may create, the SSRF guard on endpoints, the
 * pg_cron jobs (scheduled retries, submissions, runs, and maintenance), and
 * the maintenance itself: leases, retention, counters.
 */

-- complain if script is sourced in psql, rather than via ALTER EXTENSION
\echo Use "ALTER EXTENSION pgbatch UPDATE TO '1.2'" to load this file. \quit

DO $roles$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgbatch_monitor') THEN
		CREATE ROLE pgbatch_monitor NOLOGIN;
	END IF;
	IF NOT pg_catalog.pg_has_role('pgbatch_monitor', 'pgbatch_reader', 'MEMBER') THEN
		GRANT pgbatch_reader TO pgbatch_monitor;
	END IF;
END
$roles$;

/* ------------------------------------------------------------------------
 * C helpers
 * ------------------------------------------------------------------------ */

-- Does the current user see batches owned by this role?  (member, admin, monitor)
CREATE FUNCTION batch._can_see(owner name) RETURNS boolean
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_can_see';

-- May the current user act on batches owned by this role?  (member, admin)
CREATE FUNCTION batch._can_act(owner name) RETURNS boolean
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_can_act';

-- Is the current user a member of this role?  (being an admin is not enough)
CREATE FUNCTION batch._is_member(role name) RETURNS boolean
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_is_member';

-- The calling role (after SET ROLE, before SECURITY DEFINER): whom a schedule function acts for.
CREATE FUNCTION batch._caller() RETURNS name
	LANGUAGE c STABLE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_caller';

-- batch._can_act() for the calling role.
CREATE FUNCTION batch._caller_can_act(owner name) RETURNS boolean
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_caller_can_act';

-- NULL if HTTP stages may call the URL (pgbatch.allowed_hosts), else why not.
CREATE FUNCTION batch._url_check(url text) RETURNS text
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_url_check';

-- The limits that the SQL functions enforce.
CREATE FUNCTION batch._limits(OUT max_items_per_call integer, OUT max_pipelines integer,
	OUT max_stages integer, OUT retention interval)
	LANGUAGE c STABLE PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_limits';

-- Takes back running items whose executor is gone or whose lease ran out.
CREATE FUNCTION batch._reclaim() RETURNS bigint
	LANGUAGE c VOLATILE
	AS 'MODULE_PATHNAME', 'pgbatch_reclaim';

/* ------------------------------------------------------------------------
 * Tables
 * ------------------------------------------------------------------------ */

-- The items of one batch: retention, recounts, and cascading deletes.
CREATE INDEX items_batch_idx ON batch.items (batch_id);

ALTER TABLE batch.batches
	ADD COLUMN purged_at timestamptz,
	ADD COLUMN counted_at timestamptz;
COMMENT ON COLUMN batch.batches.purged_at IS
	'when maintenance purged the attempt history and outputs (pgbatch.retention)';
COMMENT ON COLUMN batch.batches.counted_at IS
	'when maintenance last checked the counters of the finished batch against its items';

-- A submission on a schedule: each run turns the rows of a query into a batch.
CREATE TABLE batch.schedules (
	id				integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	name			text NOT NULL UNIQUE CHECK (btrim(name) <> ''),
	pipeline		text NOT NULL,
	schedule		text NOT NULL,
	query			text NOT NULL,
	owner			name NOT NULL DEFAULT current_user,
	created_at		timestamptz NOT NULL DEFAULT now(),
	last_run_at		timestamptz,
	last_batch_id	bigint
);
SELECT pg_catalog.pg_extension_config_dump('batch.schedules', '');

/* ------------------------------------------------------------------------
 * Row-level security.  The tables belong to the extension's owner (a
 * superuser), and so do the background workers' sessions: both bypass it.
 * A batch is seen by the members of its owner role, admins and monitors,
 * and acted on by the members and admins; every other table follows its
 * batch.
 * ------------------------------------------------------------------------ */

ALTER TABLE batch.batches ENABLE ROW LEVEL SECURITY;
CREATE POLICY batches_see ON batch.batches FOR SELECT
	USING (batch._can_see(owner));
CREATE POLICY batches_insert ON batch.batches FOR INSERT
	WITH CHECK (batch._can_act(owner));
CREATE POLICY batches_update ON batch.batches FOR UPDATE
	USING (batch._can_act(owner)) WITH CHECK (batch._can_act(owner));
CREATE POLICY batches_delete ON batch.batches FOR DELETE
	USING (batch._can_act(owner));

ALTER TABLE batch.items ENABLE ROW LEVEL SECURITY;
CREATE POLICY items_see ON batch.items FOR SELECT
	USING (batch_id IN (SELECT b.id FROM batch.batches b));
CREATE POLICY items_insert ON batch.items FOR INSERT
	WITH CHECK (batch_id IN (SELECT b.id FROM batch.batches b WHERE batch._can_act(b.owner)));
CREATE POLICY items_update ON batch.items FOR UPDATE
	USING (batch_id IN (SELECT b.id FROM batch.batches b WHERE batch._can_act(b.owner)))
	WITH CHECK (batch_id IN (SELECT b.id FROM batch.batches b WHERE batch._can_act(b.owner)));
CREATE POLICY items_delete ON batch.items FOR DELETE
	USING (batch_id IN (SELECT b.id FROM batch.batches b WHERE batch._can_act(b.owner)));

ALTER TABLE batch.outputs ENABLE ROW LEVEL SECURITY;
CREATE POLICY outputs_see ON batch.outputs FOR SELECT
	USING (EXISTS (SELECT FROM batch.items i WHERE i.id = item_id));
CREATE POLICY outputs_insert ON batch.outputs FOR INSERT
	WITH CHECK (EXISTS (SELECT FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id
						WHERE i.id = item_id AND batch._can_act(b.owner)));
CREATE POLICY outputs_update ON batch.outputs FOR UPDATE
	USING (EXISTS (SELECT FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id
				   WHERE i.id = item_id AND batch._can_act(b.owner)));
CREATE POLICY outputs_delete ON batch.outputs FOR DELETE
	USING (EXISTS (SELECT FROM batch.items i JOIN batch.batches b ON b.id = i.batch_id
				   WHERE i.id = item_id AND batch._can_act(b.owner)));

ALTER TABLE batch.attempts ENABLE ROW LEVEL SECURITY;
CREATE POLICY attempts_see ON batch.attempts FOR SELECT
	USING (batch_id IN (SELECT b.id FROM batch.batches b));
CREATE POLICY attempts_insert ON batch.attempts FOR INSERT
	WITH CHECK (batch_id IN (SELECT b.id FROM batch.batches b WHERE batch._can_act(b.owner)));
CREATE POLICY attempts_delete ON batch.attempts FOR DELETE
	USING (batch_id IN (SELECT b.id FROM batch.batches b WHERE batch._can_act(b.owner)));

-- events without a batch (maintenance, endpoints) are for everyone who reads
ALTER TABLE batch.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY events_see ON batch.events FOR SELECT
	USING (batch_id IS NULL OR batch_id IN (SELECT b.id FROM batch.batches b));
CREATE POLICY events_insert ON batch.events FOR INSERT
	WITH CHECK (actor = current_user AND
				(batch_id IS NULL AND pg_has_role('pgbatch_admin', 'MEMBER') OR
				 batch_id IN (SELECT b.id FROM batch.batches b WHERE batch._can_act(b.owner))));
CREATE POLICY events_delete ON batch.events FOR DELETE
	USING (batch_id IS NULL AND pg_has_role('pgbatch_admin', 'MEMBER') OR
		   batch_id IN (SELECT b.id FROM batch.batches b WHERE batch._can_act(b.owner)));

ALTER TABLE batch.counters ENABLE ROW LEVEL SECURITY;
CREATE POLICY counters_see ON batch.counters FOR SELECT
	USING (batch_id IN (SELECT b.id FROM batch.batches b));
CREATE POLICY counters_insert ON batch.counters FOR INSERT
	WITH CHECK (batch_id IN (SELECT b.id FROM batch.batches b WHERE batch._can_act(b.owner)));
CREATE POLICY counters_update ON batch.counters FOR UPDATE
	USING (batch_id IN (SELECT b.id FROM batch.batches b WHERE batch._can_act(b.owner)));
CREATE POLICY counters_delete ON batch.counters FOR DELETE
	USING (batch_id IN (SELECT b.id FROM batch.batches b WHERE batch._can_act(b.owner)));

ALTER TABLE batch.schedules ENABLE ROW LEVEL SECURITY;
CREATE POLICY schedules_see ON batch.schedules FOR SELECT
	USING (batch._can_see(owner));
CREATE POLICY schedules_change ON batch.schedules FOR UPDATE
	USING (batch._can_act(owner)) WITH CHECK (batch._can_act(owner));

-- Endpoints are shared: everyone sees them (never the headers); their
-- creator's role and admins change them.
ALTER TABLE batch.endpoints ENABLE ROW LEVEL SECURITY;
CREATE POLICY endpoints_see ON batch.endpoints FOR SELECT
	USING (true);
CREATE POLICY endpoints_insert ON batch.endpoints FOR INSERT
	WITH CHECK (batch._can_act(created_by));
CREATE POLICY endpoints_update ON batch.endpoints FOR UPDATE
	USING (batch._can_act(created_by)) WITH CHECK (batch._can_act(created_by));
CREATE POLICY endpoints_delete ON batch.endpoints FOR DELETE
	USING (batch._can_act(created_by));

-- The views run with the privileges, and under the policies, of whoever reads them.
ALTER VIEW batch.progress SET (security_invoker = true);
ALTER VIEW batch.errors SET (security_invoker = true);
ALTER VIEW batch.log SET (security_invoker = true);
ALTER VIEW batch.review_queue SET (security_invoker = true);

/* ------------------------------------------------------------------------
 * Owners
 * ------------------------------------------------------------------------ */

-- Raises an error unless the current user may act on the batch.
CREATE FUNCTION batch._require_act(batch_id bigint, owner name) RETURNS void
	LANGUAGE plpgsql STABLE
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT batch._can_act(owner) THEN
		RAISE EXCEPTION 'permission denied for batch %', batch_id
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The batch belongs to role %I.', owner),
				  HINT = 'Only members of the owning role and of pgbatch_admin may act on a batch.';
	END IF;
END
$$;

/*
 * A batch can only belong to a role its submitter (or whoever changes its
 * owner) is a member of: stage functions run as the owner, so anything
 * else would let a role run code with privileges it does not have.
 */
CREATE FUNCTION batch._check_owner() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT batch._is_member(NEW.owner) THEN
		RAISE EXCEPTION 'permission denied to give a batch to role "%"', NEW.owner
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = 'Stage functions run as the batch''s owner, so a batch can only belong to a role you are a member of.';
	END IF;
	RETURN NEW;
END
$$;

CREATE TRIGGER batches_owner BEFORE INSERT OR UPDATE OF owner ON batch.batches
	FOR EACH ROW EXECUTE FUNCTION batch._check_owner();

/*
 * The id of a batch the current user may act on, by name or id.  A batch
 * it cannot see does not exist for it; one it sees but may not act on (a
 * monitor's view of another team's batch) is refused.
 */
CREATE OR REPLACE FUNCTION batch._batch_id(batch text) RETURNS bigint
	LANGUAGE plpgsql STABLE STRICT
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bid bigint;
BEGIN
	SELECT x.id INTO bid FROM batch.batches x WHERE x.name = _batch_id.batch;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'batch "%" does not exist', batch
			USING ERRCODE = 'undefined_object',
				  HINT = 'See batch.progress for the batches there are.';
	END IF;
	RETURN batch._batch_id(bid);
END
$$;

CREATE OR REPLACE FUNCTION batch._batch_id(batch bigint) RETURNS bigint
	LANGUAGE plpgsql STABLE STRICT
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	b record;
BEGIN
	SELECT x.id, x.owner INTO b FROM batch.batches x WHERE x.id = _batch_id.batch;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'batch % does not exist', batch
			USING ERRCODE = 'undefined_object',
				  HINT = 'See batch.progress for the batches there are.';
	END IF;
	PERFORM batch._require_act(b.id, b.owner);
	RETURN b.id;
END
$$;

/*
 * Gives a batch to another role the caller is a member of, typically a
 * team's role, so that the team's members see and act on it and its stage
 * functions run with the team's privileges.
 */
CREATE FUNCTION batch.set_owner(batch text, owner name) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bid bigint := batch._batch_id(batch);
BEGIN
	IF NOT EXISTS (SELECT FROM pg_roles r WHERE r.rolname = set_owner.owner) THEN
		RAISE EXCEPTION 'role "%" does not exist', owner USING ERRCODE = 'undefined_object';
	END IF;
	UPDATE batch.batches b SET owner = set_owner.owner WHERE b.id = bid;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'permission denied for batch "%"', batch
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	INSERT INTO batch.events (batch_id, level, event, message, detail)
	VALUES (bid, 'info', 'owner_changed', format('batch given to role %I', owner),
			jsonb_build_object('owner', owner));
END
$$;

/* ------------------------------------------------------------------------
 * Limits and checks
 * ------------------------------------------------------------------------ */

/*
 * The limits on pipelines (pgbatch.max_pipelines) and their stages
 * (pgbatch.max_stages), checked as create_pipeline() inserts them.
 */
CREATE FUNCTION batch._check_pipeline_limits() RETURNS trigger
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	lim record := batch._limits();
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

CREATE TRIGGER pipelines_limit BEFORE INSERT ON batch.pipelines
	FOR EACH ROW EXECUTE FUNCTION batch._check_pipeline_limits();
CREATE TRIGGER stages_limit BEFORE INSERT ON batch.stages
	FOR EACH ROW EXECUTE FUNCTION batch._check_pipeline_limits();

-- Inserts the elements of a JSON array as items of a batch, now at most
-- pgbatch.max_items_per_call of them; see submit().
CREATE OR REPLACE FUNCTION batch._insert_items(target bigint, items jsonb,
	OUT inserted bigint, OUT invalid bigint, OUT duplicates bigint)
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	req text[];
	first_stage text;
	max_size integer := batch._max_payload_size();
	given bigint;
	lim integer := (batch._limits()).max_items_per_call;
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
	IF given > lim THEN
		RAISE EXCEPTION 'too many items in one call: %, the limit is %', given, lim
			USING ERRCODE = 'program_limit_exceeded',
				  HINT = 'Submit them in parts with batch.add_items(), or have a superuser raise pgbatch.max_items_per_call.';
	END IF;

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
 * Checks an endpoint's settings, and that its base URL is inside
 * pgbatch.allowed_hosts; raises an error naming what is wrong (never a
 * header's value).
 */
CREATE OR REPLACE FUNCTION batch._check_endpoint(name text, base_url text, headers jsonb,
	max_concurrency integer, rate_limit integer, timeout interval)
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
	why := batch._url_check(base_url);
	IF why IS NOT NULL THEN
		RAISE EXCEPTION 'base_url of endpoint "%" is not allowed: %', name, why
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'A superuser decides which hosts HTTP stages may call, with pgbatch.allowed_hosts.';
	END IF;
END
$$;

/*
 * Changes the given settings of an endpoint (NULL keeps a setting).  Headers
 * are replaced, never read: only admins can read them back.
 */
CREATE OR REPLACE FUNCTION batch.alter_endpoint(name text, base_url text DEFAULT NULL,
	headers jsonb DEFAULT NULL, max_concurrency integer DEFAULT NULL,
	rate_limit integer DEFAULT NULL, timeout interval DEFAULT NULL,
	follow_redirects boolean DEFAULT NULL)
	RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e record;
BEGIN
	SELECT x.id, x.name, x.base_url, x.max_concurrency, x.rate_limit, x.timeout,
		   x.follow_redirects, x.created_by
	INTO e FROM batch.endpoints x WHERE x.name = alter_endpoint.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'endpoint "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT batch._can_act(e.created_by) THEN
		RAISE EXCEPTION 'permission denied for endpoint "%"', name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The endpoint belongs to role %I.', e.created_by),
				  HINT = 'Only members of that role and of pgbatch_admin may change it.';
	END IF;
	e.base_url := rtrim(coalesce(base_url, e.base_url), '/');
	e.max_concurrency := coalesce(max_concurrency, e.max_concurrency);
	e.rate_limit := coalesce(rate_limit, e.rate_limit);
	e.timeout := coalesce(timeout, e.timeout);
	e.follow_redirects := coalesce(follow_redirects, e.follow_redirects);
	PERFORM batch._check_endpoint(e.name, e.base_url, coalesce(headers, '{}'),
								  e.max_concurrency, e.rate_limit, e.timeout);
	UPDATE batch.endpoints x
	SET base_url = e.base_url, max_concurrency = e.max_concurrency,
		rate_limit = e.rate_limit, timeout = e.timeout, follow_redirects = e.follow_redirects
	WHERE x.id = e.id;
	IF headers IS NOT NULL THEN
		UPDATE batch.endpoints x SET headers = alter_endpoint.headers WHERE x.id = e.id;
	END IF;
END
$$;

-- Drops an endpoint that no pipeline uses.
CREATE OR REPLACE FUNCTION batch.drop_endpoint(name text) RETURNS void
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	e record;
BEGIN
	SELECT x.id, x.created_by INTO e FROM batch.endpoints x WHERE x.name = drop_endpoint.name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'endpoint "%" does not exist', name USING ERRCODE = 'undefined_object';
	END IF;
	IF NOT batch._can_act(e.created_by) THEN
		RAISE EXCEPTION 'permission denied for endpoint "%"', name
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The endpoint belongs to role %I.', e.created_by);
	END IF;
	IF EXISTS (SELECT FROM batch.stages s WHERE s.endpoint_id = e.id) THEN
		RAISE EXCEPTION 'endpoint "%" is used by pipelines', name
			USING ERRCODE = 'dependent_objects_still_exist',
				  HINT = 'Drop the pipelines that call it first.';
	END IF;
	DELETE FROM batch.endpoints x WHERE x.id = e.id;
END
$$;

/* ------------------------------------------------------------------------
 * Scheduling through pg_cron
 * ------------------------------------------------------------------------ */

/*
 * Raises an error saying why pg_cron cannot schedule a job from this
 * database, and what to do, unless it can.  The job is named in the hint:
 * the call that schedules it, or (command NULL) the one that removes it.
 */
CREATE FUNCTION batch._require_cron(job_name text, schedule text, command text)
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
 * Schedules (or reschedules) a named pg_cron job in this database that runs
 * as the calling role (current_user outside SECURITY DEFINER functions).
 * Runs as the extension's owner because pg_cron lets only superusers name
 * the role of a job; it is not granted to anyone and is called only by the
 * schedule functions below, which check that the caller may do what the
 * job does.
 */
CREATE FUNCTION batch._cron_schedule(job_name text, schedule text, command text)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	PERFORM batch._require_cron(job_name, schedule, command);
	IF schedule IS NULL OR btrim(schedule) = '' THEN
		RAISE EXCEPTION 'schedule must not be empty'
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Give a cron schedule such as ''*/5 * * * *''.';
	END IF;
	IF NOT (SELECT r.rolcanlogin FROM pg_roles r WHERE r.rolname = batch._caller()) THEN
		RAISE EXCEPTION 'role "%" cannot log in, so pg_cron cannot run its jobs', batch._caller()
			USING ERRCODE = 'invalid_authorization_specification',
				  HINT = 'Jobs run as the role that schedules them: schedule as a role with LOGIN (RESET ROLE first).';
	END IF;
	RETURN cron.schedule_in_database(job_name, schedule, command, current_database(),
									 batch._caller()::text, true);
END
$$;

-- Removes the pg_cron jobs of this database with that name; returns how many.
CREATE FUNCTION batch._cron_unschedule(job_name text) RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	n bigint := 0;
	jid bigint;
BEGIN
	PERFORM batch._require_cron(job_name, NULL, NULL);
	FOR jid IN SELECT j.jobid FROM cron.job j
			   WHERE j.jobname = job_name AND j.database = current_database() LOOP
		PERFORM cron.unschedule(jid);
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

/*
 * The id of a batch the calling role may act on, for the SECURITY
 * DEFINER schedule functions; an error otherwise (the same one whether the
 * batch is missing or someone else's).
 */
CREATE FUNCTION batch._caller_batch(batch text) RETURNS bigint
	LANGUAGE plpgsql STABLE SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	b record;
BEGIN
	SELECT x.id, x.owner INTO b FROM batch.batches x
	WHERE x.name = _caller_batch.batch
	   OR (_caller_batch.batch ~ '^[0-9]{1,18}$' AND x.id = _caller_batch.batch::bigint)
	ORDER BY x.name = _caller_batch.batch DESC
	LIMIT 1;
	IF NOT FOUND OR NOT batch._caller_can_act(b.owner) THEN
		RAISE EXCEPTION 'batch "%" does not exist', batch
			USING ERRCODE = 'undefined_object',
				  HINT = 'See batch.progress for the batches you may act on.';
	END IF;
	RETURN b.id;
END
$$;

/*
 * Retries the failed items of a batch on a schedule: a pg_cron job named
 * pgbatch_retry_<batch id> that calls batch.retry_failed(<batch id>), as the
 * role that scheduled it.  Overlapping runs are harmless: retry_failed takes
 * the batch's advisory lock.  Returns the job id.
 */
CREATE FUNCTION batch.schedule_retry(batch text, schedule text DEFAULT '*/5 * * * *')
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	bid bigint := batch._caller_batch(batch);
BEGIN
	RETURN batch._cron_schedule(format('pgbatch_retry_%s', bid), schedule,
								format('SELECT batch.retry_failed(%s::bigint)', bid));
END
$$;

CREATE FUNCTION batch.schedule_retry(batch bigint, schedule text DEFAULT '*/5 * * * *')
	RETURNS bigint
	LANGUAGE sql
	SET search_path = pg_catalog, pg_temp
	RETURN batch.schedule_retry(batch::text, schedule);

-- Stops the scheduled retries of a batch; returns how many jobs were removed.
CREATE FUNCTION batch.unschedule_retry(batch text) RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	RETURN batch._cron_unschedule(format('pgbatch_retry_%s', batch._caller_batch(batch)));
END
$$;

CREATE FUNCTION batch.unschedule_retry(batch bigint) RETURNS bigint
	LANGUAGE sql
	SET search_path = pg_catalog, pg_temp
	RETURN batch.unschedule_retry(batch::text);

/*
 * Runs due work without background workers: a pg_cron job named pgbatch_run
 * (per role) that calls batch.run(max_seconds => ...) on the schedule, as
 * the role that scheduled it, over the batches it may act on.
 */
CREATE FUNCTION batch.schedule_run(schedule text DEFAULT '* * * * *',
	max_seconds float8 DEFAULT 50)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT pg_has_role(batch._caller(), 'pgbatch_operator', 'MEMBER') THEN
		RAISE EXCEPTION 'permission denied to schedule runs'
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Runs are scheduled by members of pgbatch_operator.';
	END IF;
	IF max_seconds IS NULL OR NOT (max_seconds > 0 AND max_seconds <= 3600) THEN
		RAISE EXCEPTION 'max_seconds must be from 0 to 3600, not %', max_seconds
			USING ERRCODE = 'invalid_parameter_value',
				  HINT = 'Keep it below the interval of the schedule, so that runs do not pile up.';
	END IF;
	RETURN batch._cron_schedule('pgbatch_run', schedule,
								format('SELECT batch.run(max_seconds => %s)', max_seconds));
END
$$;

-- Stops the scheduled runs of the calling role.
CREATE FUNCTION batch.unschedule_run() RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	jid bigint;
	n bigint := 0;
BEGIN
	PERFORM batch._require_cron('pgbatch_run', NULL, NULL);
	FOR jid IN SELECT j.jobid FROM cron.job j
			   WHERE j.jobname = 'pgbatch_run' AND j.database = current_database()
				 AND j.username = batch._caller() LOOP
		PERFORM cron.unschedule(jid);
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

/*
 * Submits a batch on a schedule: each run of the pg_cron job
 * pgbatch_submit_<id> turns the rows of 'query' (run as the role that
 * scheduled it) into the items of a new batch of 'pipeline', named
 * "<name> <timestamp>".  Each row's columns become the item's keys; a
 * query with a single column named "item" gives the items as they are.
 * Returns the job id.
 */
CREATE FUNCTION batch.schedule_submit(name text, schedule text, pipeline text, query text)
	RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	sid integer;
	who name := batch._caller();
BEGIN
	IF NOT pg_has_role(who, 'pgbatch_operator', 'MEMBER') THEN
		RAISE EXCEPTION 'permission denied to schedule submissions'
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Submissions are scheduled by members of pgbatch_operator.';
	END IF;
	IF name IS NULL OR btrim(name) = '' OR query IS NULL OR btrim(query) = '' THEN
		RAISE EXCEPTION 'a scheduled submission needs a name and a query'
			USING ERRCODE = 'invalid_parameter_value';
	END IF;
	IF NOT EXISTS (SELECT FROM batch.pipelines p WHERE p.name = schedule_submit.pipeline) THEN
		RAISE EXCEPTION 'pipeline "%" does not exist', pipeline
			USING ERRCODE = 'undefined_object';
	END IF;
	SELECT s.id INTO sid FROM batch.schedules s WHERE s.name = schedule_submit.name;
	IF FOUND THEN
		IF NOT EXISTS (SELECT FROM batch.schedules s
					   WHERE s.id = sid AND batch._caller_can_act(s.owner)) THEN
			RAISE EXCEPTION 'scheduled submission "%" already exists', name
				USING ERRCODE = 'duplicate_object';
		END IF;
		UPDATE batch.schedules s
		SET pipeline = schedule_submit.pipeline, schedule = schedule_submit.schedule,
			query = schedule_submit.query
		WHERE s.id = sid;
	ELSE
		INSERT INTO batch.schedules (name, pipeline, schedule, query, owner)
		VALUES (name, pipeline, schedule, query, who)
		RETURNING id INTO sid;
	END IF;
	RETURN batch._cron_schedule(format('pgbatch_submit_%s', sid), schedule,
								format('SELECT batch.run_schedule(%s)', sid));
END
$$;

-- Removes a scheduled submission and its pg_cron job.
CREATE FUNCTION batch.unschedule_submit(name text) RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s record;
	n bigint;
BEGIN
	SELECT x.id, x.owner INTO s FROM batch.schedules x WHERE x.name = unschedule_submit.name;
	IF NOT FOUND OR NOT batch._caller_can_act(s.owner) THEN
		RAISE EXCEPTION 'scheduled submission "%" does not exist', name
			USING ERRCODE = 'undefined_object';
	END IF;
	n := batch._cron_unschedule(format('pgbatch_submit_%s', s.id));
	DELETE FROM batch.schedules x WHERE x.id = s.id;
	RETURN n;
END
$$;

/*
 * One run of a scheduled submission (what its pg_cron job calls): runs its
 * query and submits the rows as a new batch; returns the batch id, or NULL
 * when the query returned no rows.
 */
CREATE FUNCTION batch.run_schedule(schedule_id integer) RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	s batch.schedules;
	cur refcursor;
	r record;
	j jsonb;
	items jsonb[] := '{}';
	bid bigint;
BEGIN
	SELECT * INTO s FROM batch.schedules x WHERE x.id = schedule_id;
	IF NOT FOUND OR NOT batch._can_act(s.owner) THEN
		RAISE EXCEPTION 'scheduled submission % does not exist', schedule_id
			USING ERRCODE = 'undefined_object';
	END IF;
	OPEN cur FOR EXECUTE s.query;
	LOOP
		FETCH cur INTO r;
		EXIT WHEN NOT FOUND;
		j := to_jsonb(r);
		IF (SELECT count(*) FROM jsonb_object_keys(j)) = 1 AND j ? 'item' THEN
			j := j -> 'item';
		END IF;
		items := items || j;
	END LOOP;
	CLOSE cur;
	IF cardinality(items) > 0 THEN
		bid := batch.submit(s.pipeline, to_jsonb(items),
							format('%s %s', s.name, to_char(clock_timestamp(), 'YYYY-MM-DD HH24:MI:SS.US')));
	END IF;
	UPDATE batch.schedules x SET last_run_at = clock_timestamp(), last_batch_id = coalesce(bid, x.last_batch_id)
	WHERE x.id = s.id;
	RETURN bid;
END
$$;

/* ------------------------------------------------------------------------
 * Maintenance
 * ------------------------------------------------------------------------ */

/*
 * Purges, in one short transaction, up to 'chunk' rows of the attempt
 * history and outputs of the oldest batch that has been finished longer
 * than pgbatch.retention; marks the batch purged once nothing is left.
 * Returns how many rows went (0: nothing to purge).
 */
CREATE FUNCTION batch._purge_step(chunk integer) RETURNS bigint
	LANGUAGE plpgsql
	SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	keep interval := (batch._limits()).retention;
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
		INSERT INTO batch.events (batch_id, level, event, message, detail)
		VALUES (bid, 'info', 'purged',
				format('attempt history and outputs purged: the batch finished more than %s ago', keep),
				jsonb_build_object('retention', keep::text));
		n := n + 1;
	END IF;
	RETURN n;
END
$$;

/*
 * Keeps batch.counters honest, in one short transaction: drops the rows of
 * batches that are gone, folds the per-backend rows of batches idle for a
 * minute into one, and checks up to 'max_batches' finished batches against
 * their items, correcting (and logging) any difference.  Returns how many
 * batches it touched.
 */
CREATE FUNCTION batch._counters_step(max_batches integer DEFAULT 20) RETURNS bigint
	LANGUAGE plpgsql
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
		SELECT count(*) FILTER (WHERE i.status = 'pending' AND i.attempt = 0) AS pending,
			   count(*) FILTER (WHERE i.status = 'pending' AND i.attempt > 0) AS retrying,
			   count(*) FILTER (WHERE i.status = 'running') AS running,
			   count(*) FILTER (WHERE i.status = 'completed') AS completed,
			   count(*) FILTER (WHERE i.status = 'failed') AS failed,
			   count(*) FILTER (WHERE i.status = 'cancelled') AS cancelled
		INTO cnt FROM batch.items i WHERE i.batch_id = cur.id;
		IF (cnt.pending, cnt.retrying, cnt.running, cnt.completed, cnt.failed, cnt.cancelled)
		   IS DISTINCT FROM (cur.pending - cur.retrying, cur.retrying, cur.running, cur.completed,
							 cur.failed, cur.cancelled) THEN
			-- recount with every writer of these counters done, then rewrite them
			LOCK TABLE batch.counters IN EXCLUSIVE MODE;
			SELECT count(*) FILTER (WHERE i.status = 'pending' AND i.attempt = 0) AS pending,
				   count(*) FILTER (WHERE i.status = 'pending' AND i.attempt > 0) AS retrying,
				   count(*) FILTER (WHERE i.status = 'running') AS running,
				   count(*) FILTER (WHERE i.status = 'completed') AS completed,
				   count(*) FILTER (WHERE i.status = 'failed') AS failed,
				   count(*) FILTER (WHERE i.status = 'cancelled') AS cancelled
			INTO cnt FROM batch.items i WHERE i.batch_id = cur.id;
			WITH gone AS (
				DELETE FROM batch.counters k WHERE k.batch_id = cur.id
				RETURNING k.started_at, k.updated_at
			)
			INSERT INTO batch.counters (batch_id, shard, pending, retrying, running, completed,
										failed, cancelled, started_at, updated_at)
			SELECT cur.id, 0, cnt.pending, cnt.retrying, cnt.running, cnt.completed, cnt.failed,
				   cnt.cancelled, min(g.started_at), coalesce(max(g.updated_at), now())
			FROM gone g;
			INSERT INTO batch.events (batch_id, level, event, message, detail)
			VALUES (cur.id, 'warning', 'counters_corrected',
					'the counters of the batch did not match its items and were corrected',
					jsonb_build_object('was', to_jsonb(cur) - 'id', 'now', to_jsonb(cnt)));
		END IF;
		UPDATE batch.batches x SET counted_at = clock_timestamp() WHERE x.id = cur.id;
		n := n + 1;
	END LOOP;
	RETURN n;
END
$$;

/*
 * The maintenance job: takes back running items whose executor is gone or
 * whose lease ran out, purges the attempt history and outputs of batches
 * finished longer than pgbatch.retention ago (in chunks, each committed on
 * its own, so no lock is held for long), and keeps the counters honest.
 * Stops purging after max_seconds.  CALL it outside a transaction block; it
 * commits as it goes.  batch.schedule_maintenance() runs it with pg_cron.
 */
CREATE PROCEDURE batch.maintenance(max_seconds float8 DEFAULT 50, chunk integer DEFAULT 10000)
	LANGUAGE plpgsql
AS $$
-- no SET search_path here (a procedure with one cannot commit): every name is qualified
DECLARE
	deadline timestamptz := pg_catalog.clock_timestamp() + pg_catalog.make_interval(secs => max_seconds);
	reclaimed bigint;
	purged bigint := 0;
	n bigint;
	counted bigint;
BEGIN
	IF chunk IS NULL OR chunk OPERATOR(pg_catalog.<) 1 THEN
		RAISE EXCEPTION 'chunk must be at least 1' USING ERRCODE = 'invalid_parameter_value';
	END IF;
	reclaimed := batch._reclaim();
	COMMIT;
	LOOP
		n := batch._purge_step(chunk);
		COMMIT;
		purged := purged OPERATOR(pg_catalog.+) n;
		EXIT WHEN n OPERATOR(pg_catalog.=) 0
			OR pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>) deadline;
	END LOOP;
	counted := 0;
	LOOP
		n := batch._counters_step();
		COMMIT;
		counted := counted OPERATOR(pg_catalog.+) n;
		EXIT WHEN n OPERATOR(pg_catalog.=) 0
			OR pg_catalog.clock_timestamp() OPERATOR(pg_catalog.>) deadline;
	END LOOP;
	RAISE NOTICE 'pgbatch maintenance: % items taken back, % rows purged, % counter rows and batches checked',
		reclaimed, purged, counted;
END
$$;

/*
 * Runs batch.maintenance() on a schedule: one pg_cron job named
 * pgbatch_maintenance, as the admin who scheduled it.
 */
CREATE FUNCTION batch.schedule_maintenance(schedule text DEFAULT '* * * * *') RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT pg_has_role(batch._caller(), 'pgbatch_admin', 'MEMBER') THEN
		RAISE EXCEPTION 'permission denied to schedule maintenance'
			USING ERRCODE = 'insufficient_privilege',
				  HINT = 'Maintenance is scheduled by members of pgbatch_admin.';
	END IF;
	PERFORM batch._require_cron('pgbatch_maintenance', schedule, 'CALL batch.maintenance()');
	-- one job, whichever admin scheduled it last
	PERFORM batch._cron_unschedule('pgbatch_maintenance');
	RETURN batch._cron_schedule('pgbatch_maintenance', schedule, 'CALL batch.maintenance()');
END
$$;

-- Stops the maintenance job.
CREATE FUNCTION batch.unschedule_maintenance() RETURNS bigint
	LANGUAGE plpgsql SECURITY DEFINER
	SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT pg_has_role(batch._caller(), 'pgbatch_admin', 'MEMBER') THEN
		RAISE EXCEPTION 'permission denied to stop maintenance'
			USING ERRCODE = 'insufficient_privilege';
	END IF;
	RETURN batch._cron_unschedule('pgbatch_maintenance');
END
$$;

/* ------------------------------------------------------------------------
 * Privileges.  Table privileges are by column: readers never get payloads,
 * outputs or response bodies; operators cannot choose a batch's owner or an
 * event's actor; only admins read endpoint headers.
 * ------------------------------------------------------------------------ */

REVOKE ALL ON batch.schedules FROM PUBLIC;
REVOKE ALL ON FUNCTION
	batch._require_act(bigint, name), batch._is_member(name), batch._check_owner(), batch.set_owner(text, name),
	batch._can_see(name), batch._can_act(name), batch._caller(), batch._caller_can_act(name),
	batch._url_check(text), batch._limits(), batch._reclaim(),
	batch._check_pipeline_limits(), batch._insert_items(bigint, jsonb),
	batch._check_endpoint(text, text, jsonb, integer, integer, interval),
	batch._require_cron(text, text, text), batch._cron_schedule(text, text, text),
	batch._cron_unschedule(text), batch._caller_batch(text),
	batch.schedule_retry(text, text), batch.schedule_retry(bigint, text),
	batch.unschedule_retry(text), batch.unschedule_retry(bigint),
	batch.schedule_run(text, float8), batch.unschedule_run(),
	batch.schedule_submit(text, text, text, text), batch.unschedule_submit(text),
	batch.run_schedule(integer),
	batch._purge_step(integer), batch._counters_step(integer),
	batch.schedule_maintenance(text), batch.unschedule_maintenance()
	FROM PUBLIC;
REVOKE ALL ON PROCEDURE batch.maintenance(float8, integer) FROM PUBLIC;

-- start over from the 1.0 and 1.1 table grants
REVOKE ALL ON batch.batches, batch.items, batch.outputs, batch.counters, batch.attempts,
	batch.events, batch.pipelines, batch.stages, batch.endpoints
	FROM pgbatch_reader, pgbatch_operator, pgbatch_admin;

-- the policies and the security-invoker views call these for every reader
GRANT EXECUTE ON FUNCTION batch._can_see(name), batch._can_act(name), batch._limits()
	TO pgbatch_reader;

-- readers: progress, errors and the log of the batches they see
GRANT SELECT ON batch.batches, batch.counters TO pgbatch_reader;
GRANT SELECT (id, name) ON batch.pipelines TO pgbatch_reader;
GRANT SELECT (id, batch_id, key, status, stage, attempt, next_due, error_code, error_message,
			  created_at, updated_at, finished_at) ON batch.items TO pgbatch_reader;
GRANT SELECT (id, batch_id, item_id, stage, attempt, outcome, error_code, message,
			  started_at, finished_at, http_status, response_size, response_sha256)
	ON batch.attempts TO pgbatch_reader;
GRANT SELECT (id, batch_id, item_id, level, event, message, actor, created_at)
	ON batch.events TO pgbatch_reader;
GRANT SELECT (id, name, base_url, max_concurrency, rate_limit, timeout, follow_redirects,
			  created_at, created_by) ON batch.endpoints TO pgbatch_reader;
GRANT SELECT (id, name, pipeline, schedule, owner, created_at, last_run_at, last_batch_id)
	ON batch.schedules TO pgbatch_reader;

-- operators: everything about their own batches
GRANT SELECT ON batch.pipelines, batch.stages, batch.items, batch.outputs, batch.attempts,
	batch.events, batch.schedules TO pgbatch_operator;
GRANT INSERT (id, name, pipeline_id) ON batch.batches TO pgbatch_operator;
GRANT UPDATE (owner, cancelled_at, cancelled_by) ON batch.batches TO pgbatch_operator;
GRANT INSERT (batch_id, key, payload, status, stage, attempt, next_due, error_code,
			  error_message, finished_at) ON batch.items TO pgbatch_operator;
GRANT UPDATE (key, payload, status, stage, attempt, next_due, error_code, error_message,
			  max_retries, backoff_factor, updated_at, finished_at, claimed_by, lease_until)
	ON batch.items TO pgbatch_operator;
GRANT INSERT, UPDATE ON batch.outputs, batch.counters TO pgbatch_operator;
GRANT INSERT (batch_id, item_id, stage, attempt, outcome, error_code, message, started_at,
			  finished_at, http_status, response_size, response_sha256, response_body)
	ON batch.attempts TO pgbatch_operator;
GRANT INSERT (batch_id, item_id, level, event, message, detail) ON batch.events TO pgbatch_operator;
GRANT UPDATE (last_run_at, last_batch_id) ON batch.schedules TO pgbatch_operator;
GRANT INSERT (name, base_url, headers, max_concurrency, rate_limit, timeout, follow_redirects)
	ON batch.endpoints TO pgbatch_operator;
GRANT UPDATE (base_url, headers, max_concurrency, rate_limit, timeout, follow_redirects)
	ON batch.endpoints TO pgbatch_operator;
GRANT DELETE ON batch.endpoints TO pgbatch_operator;
GRANT EXECUTE ON FUNCTION
	batch._require_act(bigint, name), batch._is_member(name), batch._check_owner(), batch.set_owner(text, name),
	batch._caller(), batch._caller_can_act(name), batch._url_check(text),
	batch._insert_items(bigint, jsonb),
	batch._check_endpoint(text, text, jsonb, integer, integer, interval),
	batch._require_cron(text, text, text), batch._caller_batch(text),
	batch.create_endpoint(text, text, jsonb, integer, integer, interval, boolean),
	batch.alter_endpoint(text, text, jsonb, integer, integer, interval, boolean),
	batch.drop_endpoint(text),
	batch.schedule_retry(text, text), batch.schedule_retry(bigint, text),
	batch.unschedule_retry(text), batch.unschedule_retry(bigint),
	batch.schedule_run(text, float8), batch.unschedule_run(),
	batch.schedule_submit(text, text, text, text), batch.unschedule_submit(text),
	batch.run_schedule(integer)
	TO pgbatch_operator;

-- admins: all batches (through the policies), pipelines, endpoint headers, maintenance
GRANT SELECT, INSERT, UPDATE, DELETE ON batch.batches, batch.items, batch.outputs,
	batch.counters, batch.attempts, batch.events, batch.pipelines, batch.stages,
	batch.endpoints, batch.schedules TO pgbatch_admin;
GRANT EXECUTE ON FUNCTION
	batch._check_pipeline_limits(), batch._reclaim(), batch._purge_step(integer), batch._counters_step(integer),
	batch.schedule_maintenance(text), batch.unschedule_maintenance()
	TO pgbatch_admin;
GRANT EXECUTE ON PROCEDURE batch.maintenance(float8, integer) TO pgbatch_admin;
