/*
 * src/sql/schema.sql
 *
 * The roles, the two schemas and the tables of pgbatch: pipelines and their
 * stages, endpoints, batches, items with their outputs and attempts, events,
 * the maintained counters, schedules and use grants.  What each column
 * holds is in its COMMENT (psql: \d+ batch.items).
 */

/*
 * Roles.  Roles are cluster-wide, so a second database that installs the
 * extension finds them already there.  Each role is a member of the one
 * before: reader < operator < admin; monitor reads every batch.
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
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'pgbatch_monitor') THEN
		CREATE ROLE pgbatch_monitor NOLOGIN;
	END IF;
	IF NOT pg_catalog.pg_has_role('pgbatch_operator', 'pgbatch_reader', 'MEMBER') THEN
		GRANT pgbatch_reader TO pgbatch_operator;
	END IF;
	IF NOT pg_catalog.pg_has_role('pgbatch_admin', 'pgbatch_operator', 'MEMBER') THEN
		GRANT pgbatch_operator TO pgbatch_admin;
	END IF;
	IF NOT pg_catalog.pg_has_role('pgbatch_monitor', 'pgbatch_reader', 'MEMBER') THEN
		GRANT pgbatch_reader TO pgbatch_monitor;
	END IF;
END
$roles$;

/*
 * The schema batch (created by CREATE EXTENSION, from the control file)
 * holds the API: tables and views to read, functions to call.  The schema
 * batch_internal holds the implementations and helpers, for the extension's
 * owner alone.
 */
REVOKE ALL ON SCHEMA batch FROM PUBLIC;
GRANT USAGE ON SCHEMA batch TO pgbatch_reader;

CREATE SCHEMA batch_internal;
REVOKE ALL ON SCHEMA batch_internal FROM PUBLIC;
COMMENT ON SCHEMA batch_internal IS
	'pgbatch''s implementations and helpers: executable by the extension''s owner only';

/* ------------------------------------------------------------------------
 * Pipelines, their stages and the endpoints HTTP stages call
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

-- An HTTP endpoint: base URL, secret headers and the limits all executors share.
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
	created_by			name NOT NULL DEFAULT current_user,
	tls					jsonb NOT NULL DEFAULT '{}',
	burst				integer NOT NULL DEFAULT 1 CHECK (burst BETWEEN 1 AND 10000),
	tokens_per_minute	integer CHECK (tokens_per_minute BETWEEN 1 AND 1000000000),
	proxy				text
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
	endpoint_id		integer REFERENCES batch.endpoints,
	method			text CHECK (method IN ('GET', 'POST', 'PUT', 'PATCH', 'DELETE')),
	path			text,
	usage_path		text[],
	price_per_1k_tokens numeric CHECK (price_per_1k_tokens >= 0),
	func_pin		text,
	PRIMARY KEY (pipeline_id, position),
	UNIQUE (pipeline_id, name),
	CONSTRAINT stages_http_check CHECK
		((kind = 'http') = (endpoint_id IS NOT NULL AND method IS NOT NULL AND path IS NOT NULL))
);

/* ------------------------------------------------------------------------
 * Batches, items, their outputs and attempts, events
 * ------------------------------------------------------------------------ */

CREATE SEQUENCE batch.batches_id_seq;

-- A batch: a run of one pipeline over a set of items, owned by a role.
CREATE TABLE batch.batches (
	id				bigint PRIMARY KEY DEFAULT nextval('batch.batches_id_seq'),
	name			text NOT NULL UNIQUE,
	pipeline_id		integer NOT NULL REFERENCES batch.pipelines,
	owner			name NOT NULL DEFAULT current_user,
	created_at		timestamptz NOT NULL DEFAULT now(),
	cancelled_at	timestamptz,
	cancelled_by	name,
	purged_at		timestamptz,
	counted_at		timestamptz,
	announced_at	timestamptz,
	priority		integer NOT NULL DEFAULT 0
);
ALTER SEQUENCE batch.batches_id_seq OWNED BY batch.batches.id;

/*
 * An item: its public row.  Stage outputs live in batch.outputs and the
 * attempt history in batch.attempts.  Only columns that never change once
 * the item exists (id, batch_id) or change rarely (key) are indexed here, so
 * that a state change (claim, outcome, retry) is a HOT update: the new row
 * version goes to the same page and no index is touched.  fillfactor 50
 * keeps room on each page for a new version of every row on it: one
 * statement changes items that were submitted together, and so lie on the
 * same pages, and the versions it replaces cannot be pruned before it
 * commits.
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
	finished_at		timestamptz,
	claimed_by		integer,
	lease_until		timestamptz
) WITH (fillfactor = 50);

-- Dedupe by caller-given key within a batch.
CREATE UNIQUE INDEX items_key_idx ON batch.items (batch_id, key)
	WHERE key IS NOT NULL;
-- All items of a batch (cancel, purge, the counters' recount).
CREATE INDEX items_batch_idx ON batch.items (batch_id);

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
	id				bigint GENERATED ALWAYS AS IDENTITY (CACHE 100) PRIMARY KEY,
	batch_id		bigint NOT NULL,
	item_id			bigint NOT NULL,
	stage			text NOT NULL,
	attempt			integer NOT NULL,
	outcome			text NOT NULL CHECK (outcome IN ('completed', 'retry', 'failed')),
	error_code		text,
	message			text,
	started_at		timestamptz NOT NULL,
	finished_at		timestamptz NOT NULL,
	http_status		smallint,
	response_size	integer,
	response_sha256	text,
	response_body	text
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

/* ------------------------------------------------------------------------
 * Schedules and use grants
 * ------------------------------------------------------------------------ */

-- A scheduled submission: a query whose rows become a batch on a cron schedule.
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

-- Who may use an endpoint or a pipeline besides its creator's role and admins.
CREATE TABLE batch.usage_grants (
	object_kind		text NOT NULL CHECK (object_kind IN ('endpoint', 'pipeline')),
	object_id		integer NOT NULL,
	grantee			name NOT NULL,
	granted_by		name NOT NULL,
	granted_at		timestamptz NOT NULL DEFAULT now(),
	PRIMARY KEY (object_kind, object_id, grantee)
);

/*
 * What pg_dump saves: every table and sequence but batch.counters and
 * batch.queue, which restoring the items rebuilds (their triggers fire on
 * the restore's COPY; dumped too, a restore would count every item twice
 * and fail on the queue's primary key).
 */
SELECT pg_catalog.pg_extension_config_dump('batch.pipelines', '');
SELECT pg_catalog.pg_extension_config_dump('batch.pipelines_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('batch.endpoints', '');
SELECT pg_catalog.pg_extension_config_dump('batch.endpoints_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('batch.stages', '');
SELECT pg_catalog.pg_extension_config_dump('batch.batches', '');
SELECT pg_catalog.pg_extension_config_dump('batch.batches_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('batch.items', '');
SELECT pg_catalog.pg_extension_config_dump('batch.items_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('batch.outputs', '');
SELECT pg_catalog.pg_extension_config_dump('batch.attempts', '');
SELECT pg_catalog.pg_extension_config_dump('batch.attempts_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('batch.events', '');
SELECT pg_catalog.pg_extension_config_dump('batch.events_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('batch.schedules', '');
SELECT pg_catalog.pg_extension_config_dump('batch.schedules_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('batch.usage_grants', '');

/* ------------------------------------------------------------------------
 * What \d+ says
 * ------------------------------------------------------------------------ */

COMMENT ON TABLE batch.pipelines IS
	'pipelines: ordered stages and the retry policy they share';
COMMENT ON COLUMN batch.pipelines.id IS 'Pipeline id.';
COMMENT ON COLUMN batch.pipelines.name IS 'Pipeline name, unique in the database.';
COMMENT ON COLUMN batch.pipelines.definition IS 'The stages as given to batch.create_pipeline(), a JSON array; batch.stages holds them resolved.';
COMMENT ON COLUMN batch.pipelines.retry IS 'The pipeline''s retry policy (max_retries, backoff_base, backoff_factor, backoff_max, jitter) merged over the defaults, with intervals in seconds such as "2 s". Each stage''s effective policy is in batch.stages.';
COMMENT ON COLUMN batch.pipelines.required IS 'Keys every item must have, not JSON null and not blank; an item without one is stored as failed with error code invalid_input. Empty for none.';
COMMENT ON COLUMN batch.pipelines.created_at IS 'When the pipeline was created.';
COMMENT ON COLUMN batch.pipelines.created_by IS 'The role that created the pipeline; its members and admins may use it without a grant.';

COMMENT ON TABLE batch.endpoints IS
	'HTTP endpoints: base URL, secret headers (admins read them) and limits';
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

COMMENT ON TABLE batch.stages IS
	'the stages of each pipeline, with their resolved retry policy';
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

COMMENT ON TABLE batch.batches IS
	'batches: one run of a pipeline over a set of items, owned by a role';
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
COMMENT ON COLUMN batch.batches.priority IS 'Among the batches of one owner, those of a higher priority run first (batch.set_priority()); owners still take turns. 0 by default.';

COMMENT ON TABLE batch.items IS
	'items: one JSON payload each, with its stage, state, attempts and last error';
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

COMMENT ON TABLE batch.queue IS
	'a narrow copy of every item''s state, kept by triggers on batch.items, whose partial indexes the claims and the review queue read';
COMMENT ON COLUMN batch.queue.item_id IS 'The item (batch.items.id).';
COMMENT ON COLUMN batch.queue.batch_id IS 'The item''s batch (batch.batches.id).';
COMMENT ON COLUMN batch.queue.status IS 'The item''s status, as in batch.items.status.';
COMMENT ON COLUMN batch.queue.stage IS 'The item''s stage, as in batch.items.stage.';
COMMENT ON COLUMN batch.queue.next_due IS 'The item''s due time, as in batch.items.next_due.';
COMMENT ON COLUMN batch.queue.error_code IS 'The item''s last error code, as in batch.items.error_code.';

COMMENT ON TABLE batch.outputs IS
	'the output of every stage an item completed';
COMMENT ON COLUMN batch.outputs.item_id IS 'The item (batch.items.id).';
COMMENT ON COLUMN batch.outputs.stage IS 'The name of the completed stage; it keys this output in the outputs passed to later stages.';
COMMENT ON COLUMN batch.outputs.output IS 'What the stage returned: the SQL stage function''s result or the JSON body of the HTTP response. JSON null for an SQL NULL or an empty body.';
COMMENT ON COLUMN batch.outputs.created_at IS 'When the stage completed and its output was recorded.';

COMMENT ON TABLE batch.attempts IS
	'every attempt of every stage of every item';
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

COMMENT ON TABLE batch.events IS
	'what happened to batches and endpoints besides attempts, and who did it';
COMMENT ON COLUMN batch.events.id IS 'Event id.';
COMMENT ON COLUMN batch.events.batch_id IS 'The batch the event concerns; NULL for an event that concerns no batch.';
COMMENT ON COLUMN batch.events.item_id IS 'The item the event concerns (item_updated, item_retried); NULL for events about a whole batch.';
COMMENT ON COLUMN batch.events.level IS 'Severity: info, warning or error.';
COMMENT ON COLUMN batch.events.event IS 'What happened: submitted, items_added, retry_failed, item_retried, item_updated, stage_rerun, cancelled, owner_changed, items_reclaimed, purged or counters_corrected.';
COMMENT ON COLUMN batch.events.message IS 'What happened, in words.';
COMMENT ON COLUMN batch.events.detail IS 'The particulars as JSON, such as the item count and the filters of a retry_failed call; NULL when there are none.';
COMMENT ON COLUMN batch.events.actor IS 'The role that did it: the role that called the function, or the role of the executor or maintenance job that acted.';
COMMENT ON COLUMN batch.events.created_at IS 'When it happened.';

COMMENT ON TABLE batch.counters IS
	'items by state per batch, kept by a trigger per backend (shard); not dumped: a restore rebuilds it';
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

COMMENT ON TABLE batch.schedules IS
	'scheduled submissions: a query whose rows become a batch on a cron schedule';
COMMENT ON COLUMN batch.schedules.id IS 'Scheduled submission id; its pg_cron job is named pgbatch_submit_<id>.';
COMMENT ON COLUMN batch.schedules.name IS 'Name of the scheduled submission, unique; each batch it creates is named "<name> <timestamp>".';
COMMENT ON COLUMN batch.schedules.pipeline IS 'Name of the pipeline each run submits to.';
COMMENT ON COLUMN batch.schedules.schedule IS 'When the job runs, as a pg_cron schedule such as ''*/5 * * * *''.';
COMMENT ON COLUMN batch.schedules.query IS 'The SQL query whose rows become the items of a new batch, run as the owner. Each row''s columns become the item''s keys; a single column named item gives the item as is.';
COMMENT ON COLUMN batch.schedules.owner IS 'The role that scheduled the submission: the query runs as this role, which alone may run it, and it owns the batches created.';
COMMENT ON COLUMN batch.schedules.created_at IS 'When the submission was first scheduled.';
COMMENT ON COLUMN batch.schedules.last_run_at IS 'When the job last ran; NULL if it never has.';
COMMENT ON COLUMN batch.schedules.last_batch_id IS 'The batch created by the latest run that returned rows; a run without rows keeps it. NULL until a run has created one.';

COMMENT ON TABLE batch.usage_grants IS
	'who may use an endpoint or a pipeline besides the members of its creator''s role and admins; read by admins';
COMMENT ON COLUMN batch.usage_grants.object_kind IS 'What is granted: endpoint or pipeline.';
COMMENT ON COLUMN batch.usage_grants.object_id IS 'The endpoint (batch.endpoints.id) or pipeline (batch.pipelines.id).';
COMMENT ON COLUMN batch.usage_grants.grantee IS 'The role granted use, and so its members.';
COMMENT ON COLUMN batch.usage_grants.granted_by IS 'The role that granted it.';
COMMENT ON COLUMN batch.usage_grants.granted_at IS 'When it was granted.';
