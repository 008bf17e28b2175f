/*
 * src/sql/schedules.sql
 *
 * Scheduling through pg_cron: retries, runs, submissions from a query and
 * maintenance on a cron schedule.  Every job runs as the role that scheduled
 * it.
 */

-- Runs a role's own query as that role; its rows as a JSON array of objects.
CREATE FUNCTION batch_internal.query_rows(role regrole, query text) RETURNS jsonb
	LANGUAGE c VOLATILE STRICT
	AS 'MODULE_PATHNAME', 'pgbatch_query_rows';

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
 * The public functions (gates: src/gate.c)
 * ------------------------------------------------------------------------ */

CREATE FUNCTION batch.schedule_retry(batch text, schedule text DEFAULT '*/5 * * * *')
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.schedule_retry(text,text) IS
	'retries a batch''s failed items on a cron schedule: a pg_cron job of the caller; returns the job id';

CREATE FUNCTION batch.schedule_retry(batch bigint, schedule text DEFAULT '*/5 * * * *')
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.schedule_retry(bigint,text) IS
	'retries a batch''s failed items on a cron schedule: a pg_cron job of the caller; returns the job id';

CREATE FUNCTION batch.unschedule_retry(batch text) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.unschedule_retry(text) IS
	'removes the scheduled retries of a batch; returns how many jobs went';

CREATE FUNCTION batch.unschedule_retry(batch bigint) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.unschedule_retry(bigint) IS
	'removes the scheduled retries of a batch; returns how many jobs went';

CREATE FUNCTION batch.schedule_run(schedule text DEFAULT '* * * * *',
	max_seconds float8 DEFAULT 50) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.schedule_run(text,double precision) IS
	'runs batch.run() on a cron schedule as the caller (for databases without executors); returns the job id';

CREATE FUNCTION batch.unschedule_run() RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.unschedule_run() IS
	'removes the caller''s scheduled runs; returns how many jobs went';

CREATE FUNCTION batch.schedule_submit(name text, schedule text, pipeline text, query text)
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.schedule_submit(text,text,text,text) IS
	'submits the rows of the caller''s query as a new batch on a cron schedule; returns the job id';

CREATE FUNCTION batch.unschedule_submit(name text) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.unschedule_submit(text) IS
	'removes a scheduled submission and its job; returns how many jobs went';

CREATE FUNCTION batch.run_schedule(schedule_id integer) RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.run_schedule(integer) IS
	'one run of a scheduled submission (what its job calls), as its owner only; returns the new batch id or NULL';

CREATE FUNCTION batch.schedule_maintenance(schedule text DEFAULT '* * * * *')
	RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.schedule_maintenance(text) IS
	'runs batch.maintenance() on a cron schedule as the calling admin; returns the job id';

CREATE FUNCTION batch.unschedule_maintenance() RETURNS bigint
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.unschedule_maintenance() IS
	'removes the maintenance job; returns how many jobs went (admins)';
