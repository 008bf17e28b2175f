/*
 * src/sql/security.sql
 *
 * Who may do what.  Every public function that writes is a gate (src/gate.c)
 * that calls its implementation in batch_internal with the role in effect for
 * the call; the implementations decide every authorization for that role with
 * the helpers here, which rest on the same C functions as the row-level
 * security policies at the end of this file (reads).  See doc/security.md.
 */

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

-- Does the current role see batches owned by 'owner'?  (the read policies)
CREATE FUNCTION batch_internal.current_can_see(owner name) RETURNS boolean
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_can_see';

-- NULL if HTTP stages may call the URL (pgbatch.allowed_hosts), else why not.
CREATE FUNCTION batch_internal.url_check(url text) RETURNS text
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_url_check';

-- NULL if endpoints may send through the proxy (pgbatch.allowed_hosts), else why not.
CREATE FUNCTION batch_internal.proxy_check(url text) RETURNS text
	LANGUAGE c STABLE STRICT PARALLEL SAFE
	AS 'MODULE_PATHNAME', 'pgbatch_proxy_check';

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

/* ------------------------------------------------------------------------
 * Reading: row-level security (nobody but the extension's owner writes)
 * ------------------------------------------------------------------------ */

-- a role sees the batches of the roles it is a member of (admins and
-- pgbatch_monitor see every batch), and what belongs to them
ALTER TABLE batch.batches ENABLE ROW LEVEL SECURITY;
CREATE POLICY batches_see ON batch.batches FOR SELECT
	USING (batch_internal.current_can_see(owner));
ALTER TABLE batch.items ENABLE ROW LEVEL SECURITY;
CREATE POLICY items_see ON batch.items FOR SELECT
	USING (batch_id IN (SELECT b.id FROM batch.batches b));
ALTER TABLE batch.queue ENABLE ROW LEVEL SECURITY;
CREATE POLICY queue_see ON batch.queue FOR SELECT
	USING (batch_id IN (SELECT b.id FROM batch.batches b));
ALTER TABLE batch.outputs ENABLE ROW LEVEL SECURITY;
CREATE POLICY outputs_see ON batch.outputs FOR SELECT
	USING (EXISTS (SELECT FROM batch.items i WHERE i.id = item_id));
ALTER TABLE batch.attempts ENABLE ROW LEVEL SECURITY;
CREATE POLICY attempts_see ON batch.attempts FOR SELECT
	USING (batch_id IN (SELECT b.id FROM batch.batches b));
ALTER TABLE batch.events ENABLE ROW LEVEL SECURITY;
CREATE POLICY events_see ON batch.events FOR SELECT
	USING (batch_id IS NULL OR batch_id IN (SELECT b.id FROM batch.batches b));
ALTER TABLE batch.counters ENABLE ROW LEVEL SECURITY;
CREATE POLICY counters_see ON batch.counters FOR SELECT
	USING (batch_id IN (SELECT b.id FROM batch.batches b));
ALTER TABLE batch.schedules ENABLE ROW LEVEL SECURITY;
CREATE POLICY schedules_see ON batch.schedules FOR SELECT
	USING (batch_internal.current_can_see(owner));
ALTER TABLE batch.endpoints ENABLE ROW LEVEL SECURITY;
CREATE POLICY endpoints_see ON batch.endpoints FOR SELECT USING (true);
