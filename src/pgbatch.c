/*-------------------------------------------------------------------------
 *
 * pgbatch.c
 *		Module entry point of pgbatch, and the small SQL-callable helpers
 *		the extension script uses (limits, stage function lookup).
 *
 * IDENTIFICATION
 *		src/pgbatch.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/pg_proc.h"
#include "funcapi.h"
#include "catalog/pg_type.h"
#include "miscadmin.h"
#include "parser/parse_func.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"

#include "guc.h"
#include "launcher.h"
#include "security.h"
#include "shmem.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

PG_FUNCTION_INFO_V1(pgbatch_max_payload_size);
PG_FUNCTION_INFO_V1(pgbatch_stage_function);
PG_FUNCTION_INFO_V1(pgbatch_stage_function_1_4);
PG_FUNCTION_INFO_V1(pgbatch_limits);

/*
 * _PG_init
 *		Module load: define the configuration parameters, the commit-time
 *		wake-ups, and, when preloaded, the shared memory and the launcher.
 */
void
_PG_init(void)
{
	pgb_define_gucs(pgb_check_allowed_hosts, pgb_assign_allowed_hosts);
	pgb_register_xact_callback();
	if (process_shared_preload_libraries_in_progress)
	{
		pgb_shmem_init();
		pgb_register_launcher();
	}
}

/*
 * pgbatch_max_payload_size
 *		batch._max_payload_size(): the pgbatch.max_payload_size setting in
 *		bytes.  Calling it also makes sure the module (and so the GUC) is
 *		loaded in this backend.
 */
Datum
pgbatch_max_payload_size(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(pgb_max_payload_size);
}

/*
 * pgbatch_limits
 *		batch._limits(): the limits the SQL functions enforce, as one row
 *		(max_items_per_call, max_pipelines, max_stages, retention).  Like
 *		batch._max_payload_size(), calling it loads the module.
 */
Datum
pgbatch_limits(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[4];
	bool		nulls[4] = {false, false, false, false};
	Interval   *retention;

	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "pgbatch: batch._limits() must return a row");
	tupdesc = BlessTupleDesc(tupdesc);
	values[0] = Int32GetDatum(pgb_max_items_per_call);
	values[1] = Int32GetDatum(pgb_max_pipelines);
	values[2] = Int32GetDatum(pgb_max_stages);
	retention = (Interval *) palloc0(sizeof(Interval));
	retention->time = (int64) pgb_retention_s * USECS_PER_SEC;
	values[3] = IntervalPGetDatum(retention);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(tupdesc, values, nulls)));
}

/*
 * stage_function
 *		Resolves the name of a SQL stage to the function
 *		name(jsonb, jsonb) RETURNS jsonb that 'role' may execute, or raises
 *		an error that says what is wrong with it.
 */
static Oid
stage_function(const char *fn, Oid role)
{
	Oid			argtypes[2] = {JSONBOID, JSONBOID};
	List	   *names;
	Oid			funcid;
	AclResult	aclresult;

	names = stringToQualifiedNameList(fn);
	funcid = LookupFuncName(names, 2, argtypes, true);
	if (!OidIsValid(funcid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("stage function %s(jsonb, jsonb) does not exist", fn),
				 errhint("A SQL stage is a function f(payload jsonb, outputs jsonb) RETURNS jsonb; name it with its schema.")));

	if (get_func_prokind(funcid) != PROKIND_FUNCTION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("stage function %s(jsonb, jsonb) is not a plain function", fn),
				 errdetail("Procedures, aggregates and window functions cannot be stages.")));

	if (get_func_rettype(funcid) != JSONBOID || get_func_retset(funcid))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("stage function %s(jsonb, jsonb) must return jsonb", fn),
				 errdetail("It returns %s%s.",
						   get_func_retset(funcid) ? "SETOF " : "",
						   format_type_be(get_func_rettype(funcid)))));

	aclresult = pg_proc_aclcheck(funcid, role, ACL_EXECUTE);
	if (aclresult != ACLCHECK_OK)
		aclcheck_error(aclresult, OBJECT_FUNCTION, get_func_name(funcid));

	return funcid;
}

/*
 * pgbatch_stage_function
 *		batch._stage_function(name) of pgbatch 1.0 to 1.3: stage_function()
 *		for the current user.
 */
Datum
pgbatch_stage_function(PG_FUNCTION_ARGS)
{
	PG_RETURN_OID(stage_function(text_to_cstring(PG_GETARG_TEXT_PP(0)), GetUserId()));
}

/*
 * pgbatch_stage_function_1_4
 *		batch_internal.stage_function(role, name): stage_function() for the
 *		role an implementation acts for (see gate.c).
 */
Datum
pgbatch_stage_function_1_4(PG_FUNCTION_ARGS)
{
	PG_RETURN_OID(stage_function(text_to_cstring(PG_GETARG_TEXT_PP(1)), PG_GETARG_OID(0)));
}
