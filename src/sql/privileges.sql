/*
 * src/sql/privileges.sql
 *
 * Privileges, in one place.  No role but the extension's owner writes a
 * pgbatch table: every change goes through the API.  Readers read through
 * row-level security (security.sql); operators run batches; admins also
 * manage pipelines, endpoints and maintenance.  Nobody else executes an
 * implementation in batch_internal, except the five helpers the read
 * policies and views call for whoever reads them.
 */

-- functions
REVOKE ALL ON ALL ROUTINES IN SCHEMA batch, batch_internal FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
	batch_internal.batch_status(boolean,bigint,bigint,bigint,bigint,bigint,bigint,boolean),
	batch_internal.current_can_see(name),
	batch_internal.endpoint_state(),
	batch_internal.health(),
	batch_internal.workers()
	TO pgbatch_reader;
GRANT EXECUTE ON FUNCTION
	batch.add_items(bigint,jsonb),
	batch.add_items(text,jsonb),
	batch.alter_endpoint(text,text,jsonb,integer,integer,interval,boolean,jsonb,integer,integer,text),
	batch.cancel(bigint),
	batch.cancel(text),
	batch.create_endpoint(text,text,jsonb,integer,integer,interval,boolean,jsonb,integer,integer,text),
	batch.drop_endpoint(text),
	batch.grant_endpoint(text,name),
	batch.rerun_stage(bigint,text,boolean),
	batch.rerun_stage(text,text,boolean),
	batch.retry_failed(bigint,integer,double precision,text[],text,boolean),
	batch.retry_failed(text,integer,double precision,text[],text,boolean),
	batch.retry_item(bigint),
	batch.revoke_endpoint(text,name),
	batch.run(bigint,bigint,double precision),
	batch.run(text,bigint,double precision),
	batch.run_schedule(integer),
	batch.schedule_retry(bigint,text),
	batch.schedule_retry(text,text),
	batch.schedule_run(text,double precision),
	batch.schedule_submit(text,text,text,text),
	batch.set_owner(bigint,name),
	batch.set_owner(text,name),
	batch.set_priority(bigint,integer),
	batch.set_priority(text,integer),
	batch.submit(text,jsonb,text),
	batch.unschedule_retry(bigint),
	batch.unschedule_retry(text),
	batch.unschedule_run(),
	batch.unschedule_submit(text),
	batch.update_item(bigint,jsonb)
	TO pgbatch_operator;
GRANT EXECUTE ON FUNCTION
	batch.alter_endpoint(text,text,jsonb,integer,integer,interval,boolean,jsonb,integer,integer,text),
	batch.create_endpoint(text,text,jsonb,integer,integer,interval,boolean,jsonb,integer,integer,text),
	batch.create_pipeline(text,jsonb,jsonb,text[]),
	batch.drop_endpoint(text),
	batch.drop_pipeline(text),
	batch.grant_pipeline(text,name),
	batch.maintenance_step(text,integer),
	batch.refresh_pipeline(text),
	batch.revoke_pipeline(text,name),
	batch.schedule_maintenance(text),
	batch.set_stage_cost(text,text,text,numeric),
	batch.unschedule_maintenance()
	TO pgbatch_admin;
GRANT EXECUTE ON PROCEDURE batch.maintenance(double precision,integer) TO pgbatch_admin;

-- tables and views: reading only
GRANT SELECT ON batch.attempts, batch.batches, batch.counters, batch.endpoints, batch.events, batch.items, batch.outputs, batch.pipelines, batch.queue, batch.schedules, batch.stages, batch.usage_grants TO pgbatch_admin;
GRANT SELECT ON batch.attempts, batch.events, batch.items, batch.outputs, batch.pipelines, batch.results, batch.review_queue, batch.schedules TO pgbatch_operator;
GRANT SELECT ON batch.batches, batch.counters, batch.costs, batch.endpoint_status, batch.errors, batch.health, batch.log, batch.metrics, batch.progress, batch.queue, batch.stages, batch.throughput, batch.workers TO pgbatch_reader;

-- the columns readers see: an endpoint's headers and a schedule's query are not among them
GRANT SELECT (id, batch_id, item_id, stage, attempt, outcome, error_code, message, started_at, finished_at, http_status, response_size, response_sha256) ON batch.attempts TO pgbatch_reader;
GRANT SELECT (id, name, base_url, max_concurrency, rate_limit, timeout, follow_redirects, created_at, created_by, burst, tokens_per_minute) ON batch.endpoints TO pgbatch_reader;
GRANT SELECT (id, batch_id, item_id, level, event, message, actor, created_at) ON batch.events TO pgbatch_reader;
GRANT SELECT (id, batch_id, key, status, stage, attempt, next_due, error_code, error_message, created_at, updated_at, finished_at) ON batch.items TO pgbatch_reader;
GRANT SELECT (id, name) ON batch.pipelines TO pgbatch_reader;
GRANT SELECT (id, name, pipeline, schedule, owner, created_at, last_run_at, last_batch_id) ON batch.schedules TO pgbatch_reader;

-- wake the launcher at commit, so that the executors of this database start
SELECT batch_internal.wake_launcher();
