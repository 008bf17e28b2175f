/*
 * src/sql/endpoints.sql
 *
 * Endpoints: the HTTP services that HTTP stages call, their secret headers
 * and the limits all executors share; who may use them.
 */

-- Forgets an endpoint's shared-memory slot once it is dropped.
CREATE FUNCTION batch_internal.forget_endpoint(endpoint_id integer) RETURNS void
	LANGUAGE c VOLATILE STRICT
	AS 'MODULE_PATHNAME', 'pgbatch_forget_endpoint';

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
 * The public functions (gates: src/gate.c)
 * ------------------------------------------------------------------------ */

CREATE FUNCTION batch.grant_endpoint(endpoint text, grantee name) RETURNS boolean
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.grant_endpoint(text,name) IS
	'lets a role (and its members) use an endpoint: submit to pipelines whose requests carry its headers';

CREATE FUNCTION batch.revoke_endpoint(endpoint text, grantee name) RETURNS boolean
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.revoke_endpoint(text,name) IS
	'takes back batch.grant_endpoint(); requests not yet sent fail with insufficient_privilege';

CREATE FUNCTION batch.create_endpoint(name text, base_url text, headers jsonb DEFAULT '{}',
	max_concurrency integer DEFAULT 8, rate_limit integer DEFAULT NULL,
	timeout interval DEFAULT '1 min', follow_redirects boolean DEFAULT false,
	tls jsonb DEFAULT NULL, burst integer DEFAULT 1, tokens_per_minute integer DEFAULT NULL,
	proxy text DEFAULT NULL) RETURNS integer
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.create_endpoint(text,text,jsonb,integer,integer,interval,boolean,jsonb,integer,integer,text) IS
	'creates an HTTP endpoint: base URL, secret headers, concurrency, rate limit and burst, timeout, TLS trust, tokens per minute, proxy; returns its id';

CREATE FUNCTION batch.alter_endpoint(name text, base_url text DEFAULT NULL,
	headers jsonb DEFAULT NULL, max_concurrency integer DEFAULT NULL,
	rate_limit integer DEFAULT NULL, timeout interval DEFAULT NULL,
	follow_redirects boolean DEFAULT NULL, tls jsonb DEFAULT NULL,
	burst integer DEFAULT NULL, tokens_per_minute integer DEFAULT NULL,
	proxy text DEFAULT NULL) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.alter_endpoint(text,text,jsonb,integer,integer,interval,boolean,jsonb,integer,integer,text) IS
	'changes the settings given (NULL keeps one) of an endpoint of the caller''s role; headers are replaced, never read; tls keys given replace those stored; proxy '''' removes the proxy';

CREATE FUNCTION batch.drop_endpoint(name text) RETURNS void
	LANGUAGE c SET search_path = pg_catalog, pg_temp AS 'MODULE_PATHNAME', 'pgbatch_gate';
COMMENT ON FUNCTION batch.drop_endpoint(text) IS
	'drops an endpoint no pipeline uses, freeing its shared-memory slot';
