--
-- One current definition per object: the install script of the current
-- version (built from src/sql/) and an install of 1.0 updated step by step
-- with the upgrade scripts must define the same catalog: functions, views,
-- tables and columns, constraints, indexes, triggers, policies, sequences,
-- privileges, comments, extension members and what pg_dump saves.
--
SET client_min_messages = warning;

CREATE TABLE public.pgb_catalog (install text, kind text, object text, definition text);

-- privileges as sorted text, so that the order of GRANTs does not matter
-- (a default, NULL, is written out as what it means)
CREATE FUNCTION public.pgb_acl(acl aclitem[]) RETURNS text
LANGUAGE sql AS $$
SELECT string_agg(x.grantee::regrole::text || ':' || x.privilege_type
				  || CASE WHEN x.is_grantable THEN '*' ELSE '' END, ','
				  ORDER BY x.grantee::regrole::text, x.privilege_type)
FROM aclexplode(acl) x
$$;

-- every object of the extension, as (kind, object, definition)
CREATE FUNCTION public.pgb_describe() RETURNS TABLE (kind text, object text, definition text)
LANGUAGE sql AS $$
WITH ns AS (
	SELECT oid FROM pg_namespace WHERE nspname IN ('batch', 'batch_internal')
)
SELECT 'schema', n.nspname::text,
	   concat_ws(' | ', public.pgb_acl(coalesce(n.nspacl, acldefault('n', n.nspowner))), obj_description(n.oid, 'pg_namespace'))
FROM pg_namespace n WHERE n.oid IN (SELECT oid FROM ns)
UNION ALL
SELECT 'function', p.oid::regprocedure::text,
	   concat_ws(' | ', p.prokind, l.lanname, p.prosecdef, p.provolatile, p.proisstrict, p.proparallel,
				 pg_get_function_arguments(p.oid), pg_get_function_result(p.oid), p.proconfig::text,
				 md5(p.prosrc), p.probin, md5(coalesce(pg_get_function_sqlbody(p.oid), '')),
				 public.pgb_acl(coalesce(p.proacl, acldefault('f', p.proowner))), obj_description(p.oid, 'pg_proc'))
FROM pg_proc p JOIN pg_language l ON l.oid = p.prolang
WHERE p.pronamespace IN (SELECT oid FROM ns)
UNION ALL
SELECT 'relation', c.oid::regclass::text,
	   concat_ws(' | ', c.relkind, c.relpersistence, c.reloptions::text, c.relrowsecurity, c.relforcerowsecurity,
				 CASE WHEN c.relkind = 'v' THEN md5(pg_get_viewdef(c.oid)) END,
				 public.pgb_acl(coalesce(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's'::"char" ELSE 'r'::"char" END, c.relowner))), obj_description(c.oid, 'pg_class'))
FROM pg_class c WHERE c.relnamespace IN (SELECT oid FROM ns) AND c.relkind IN ('r', 'v', 'S', 'm', 'p')
UNION ALL
SELECT 'column', c.oid::regclass::text || '.' || a.attname,
	   concat_ws(' | ', rank() OVER (PARTITION BY c.oid ORDER BY a.attnum), format_type(a.atttypid, a.atttypmod),
				 a.attnotnull, pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated, a.attcollation,
				 public.pgb_acl(a.attacl), col_description(c.oid, a.attnum))
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
WHERE c.relnamespace IN (SELECT oid FROM ns) AND c.relkind IN ('r', 'v') AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', co.conrelid::regclass::text || '.' || co.conname, pg_get_constraintdef(co.oid)
FROM pg_constraint co WHERE co.connamespace IN (SELECT oid FROM ns)
UNION ALL
SELECT 'index', i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace IN (SELECT oid FROM ns)
UNION ALL
SELECT 'trigger', t.tgrelid::regclass::text || '.' || t.tgname, pg_get_triggerdef(t.oid)
FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
WHERE c.relnamespace IN (SELECT oid FROM ns) AND NOT t.tgisinternal
UNION ALL
SELECT 'policy', p.schemaname || '.' || p.tablename || '.' || p.policyname,
	   concat_ws(' | ', p.permissive, p.roles::text, p.cmd, p.qual, p.with_check)
FROM pg_policies p WHERE p.schemaname = 'batch'
UNION ALL
SELECT 'sequence', s.seqrelid::regclass::text,
	   concat_ws(' | ', s.seqtypid::regtype, s.seqstart, s.seqincrement, s.seqmax, s.seqmin, s.seqcache, s.seqcycle)
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid WHERE c.relnamespace IN (SELECT oid FROM ns)
UNION ALL
SELECT 'dumped', x.tab::regclass::text, coalesce(e.extcondition[x.n], '')
FROM pg_extension e, unnest(e.extconfig) WITH ORDINALITY x(tab, n) WHERE e.extname = 'pgbatch'
UNION ALL
SELECT 'member', pg_describe_object(d.classid, d.objid, d.objsubid), ''
FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
WHERE e.extname = 'pgbatch' AND d.deptype = 'e'
$$;

-- 1.0, updated step by step
DROP EXTENSION pgbatch CASCADE;
CREATE EXTENSION pgbatch VERSION '1.0';
ALTER EXTENSION pgbatch UPDATE TO '1.1';
ALTER EXTENSION pgbatch UPDATE TO '1.2';
ALTER EXTENSION pgbatch UPDATE TO '1.3';
ALTER EXTENSION pgbatch UPDATE TO '1.4';
INSERT INTO public.pgb_catalog SELECT 'updated', d.* FROM public.pgb_describe() d;

-- the current version's install script
DROP EXTENSION pgbatch CASCADE;
CREATE EXTENSION pgbatch;
INSERT INTO public.pgb_catalog SELECT 'fresh', d.* FROM public.pgb_describe() d;
RESET client_min_messages;

SELECT extversion FROM pg_extension WHERE extname = 'pgbatch';

-- what was compared
SELECT kind, count(*) FROM public.pgb_catalog WHERE install = 'fresh' GROUP BY kind ORDER BY kind;

-- identical: no object differs
(SELECT kind, object, definition FROM public.pgb_catalog WHERE install = 'updated'
 EXCEPT SELECT kind, object, definition FROM public.pgb_catalog WHERE install = 'fresh')
UNION ALL
(SELECT kind, object, definition FROM public.pgb_catalog WHERE install = 'fresh'
 EXCEPT SELECT kind, object, definition FROM public.pgb_catalog WHERE install = 'updated')
ORDER BY 1, 2, 3;

DROP FUNCTION public.pgb_describe();
DROP FUNCTION public.pgb_acl(aclitem[]);
DROP TABLE public.pgb_catalog;
