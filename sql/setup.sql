--
-- setup: install pgbatch and the stage functions the other tests use.
--
CREATE EXTENSION pgbatch;

-- the extension's objects live in schema batch, which it owns
SELECT extrelocatable, nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
WHERE extname = 'pgbatch';

CREATE SCHEMA app;
GRANT USAGE ON SCHEMA app TO PUBLIC;

-- Every successful stage call, so tests can count how often a stage ran.
CREATE TABLE app.calls (topic text, stage text, outputs jsonb);
GRANT INSERT, SELECT ON app.calls TO PUBLIC;

-- Injected faults: topic + stage -> kind of error, raised 'times' times
-- (NULL: always).  The count lives in a sequence because a failing stage's
-- writes are rolled back with its subtransaction.
CREATE TABLE app.faults (topic text, stage text, kind text, times integer, hits regclass);
GRANT SELECT ON app.faults TO PUBLIC;

CREATE SEQUENCE app.fault_ids;
CREATE FUNCTION app.add_fault(topic text, stage text, kind text, times integer DEFAULT NULL)
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
	seq text := format('app.hits_%s', nextval('app.fault_ids'));
BEGIN
	EXECUTE format('CREATE SEQUENCE %s', seq);
	EXECUTE format('GRANT USAGE ON SEQUENCE %s TO PUBLIC', seq);
	INSERT INTO app.faults VALUES (topic, stage, kind, times, seq::regclass);
END $$;

CREATE FUNCTION app.maybe_fail(p jsonb, stage text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
	f app.faults;
BEGIN
	FOR f IN SELECT * FROM app.faults WHERE topic = p->>'topic' AND faults.stage = maybe_fail.stage LOOP
		IF f.times IS NULL OR nextval(f.hits) <= f.times THEN
			CASE f.kind
			WHEN 'transient' THEN RAISE EXCEPTION 'upstream busy' USING ERRCODE = 'PB001';
			WHEN 'permanent' THEN RAISE EXCEPTION 'topic "%" is not allowed', p->>'topic';
			WHEN 'deadlock' THEN RAISE EXCEPTION 'simulated deadlock' USING ERRCODE = 'deadlock_detected';
			WHEN 'serialization' THEN RAISE EXCEPTION 'simulated conflict' USING ERRCODE = 'serialization_failure';
			WHEN 'lock' THEN RAISE EXCEPTION 'simulated lock timeout' USING ERRCODE = 'lock_not_available';
			WHEN 'resources' THEN RAISE EXCEPTION 'simulated disk full' USING ERRCODE = 'disk_full';
			WHEN 'division' THEN PERFORM 1 / 0;
			WHEN 'sleep' THEN PERFORM pg_sleep(2);
			END CASE;
		END IF;
	END LOOP;
END $$;

CREATE FUNCTION app.outline(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM app.maybe_fail(p, 'outline');
	INSERT INTO app.calls VALUES (p->>'topic', 'outline', o);
	RETURN jsonb_build_object('outline', 'outline of ' || (p->>'topic'));
END $$;

CREATE FUNCTION app.draft(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM app.maybe_fail(p, 'draft');
	INSERT INTO app.calls VALUES (p->>'topic', 'draft', o);
	RETURN jsonb_build_object('draft', (o->'outline'->>'outline') || ', drafted');
END $$;

CREATE FUNCTION app.seo(p jsonb, o jsonb) RETURNS jsonb LANGUAGE plpgsql AS $$
BEGIN
	PERFORM app.maybe_fail(p, 'seo');
	INSERT INTO app.calls VALUES (p->>'topic', 'seo', o);
	RETURN jsonb_build_object('title', initcap(p->>'topic'), 'words', length(o->'draft'->>'draft'));
END $$;

-- functions that are not valid stages
CREATE FUNCTION app.wrong_return(p jsonb, o jsonb) RETURNS text LANGUAGE sql AS $$ SELECT 'x' $$;
CREATE FUNCTION app.one_arg(p jsonb) RETURNS jsonb LANGUAGE sql AS $$ SELECT p $$;
CREATE FUNCTION app.many(p jsonb, o jsonb) RETURNS SETOF jsonb LANGUAGE sql AS $$ SELECT p $$;
