/*-------------------------------------------------------------------------
 *
 * gate.c
 *		The trust boundary of pgbatch.  Only the extension's owner writes
 *		pgbatch's tables; every public function that changes anything is
 *		this gate, declared LANGUAGE c with the symbol pgbatch_gate.  The
 *		gate takes the role in effect for the call (GetUserId(): the
 *		session's role from psql, the batch owner inside a stage, the job's
 *		role under pg_cron, the owner of a SECURITY DEFINER function that
 *		calls it) and calls the implementation batch_internal.<same name>
 *		with that role as a first argument of type regrole, followed by the
 *		call's own arguments.  Implementations are SECURITY DEFINER
 *		functions of the extension's owner with a fixed search_path,
 *		executable by nobody else, and decide every authorization for that
 *		role alone.
 *
 *		Also here: running a role's own SQL as that role from inside an
 *		implementation (a scheduled submission's query).
 *
 * IDENTIFICATION
 *		src/gate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_proc.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

PG_FUNCTION_INFO_V1(pgbatch_gate);
PG_FUNCTION_INFO_V1(pgbatch_query_rows);

#define PGB_INTERNAL_SCHEMA "batch_internal"

/* What a gate remembers between calls: its implementation. */
typedef struct PgbGate
{
	FmgrInfo	impl;
	int			nargs;			/* the gate's own arguments */
} PgbGate;

/*
 * gate_lookup
 *		Finds the implementation of the gate function 'gate_oid':
 *		batch_internal.<its name>(regrole, <its argument types>), and sets
 *		up a call of it in the gate's memory context.
 */
static PgbGate *
gate_lookup(FmgrInfo *flinfo)
{
	HeapTuple	tup;
	Form_pg_proc proc;
	Oid			argtypes[FUNC_MAX_ARGS];
	Oid			impl_oid;
	PgbGate    *gate;
	int			i;

	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(flinfo->fn_oid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "pgbatch: cache lookup failed for function %u", flinfo->fn_oid);
	proc = (Form_pg_proc) GETSTRUCT(tup);
	if (proc->pronargs + 1 > FUNC_MAX_ARGS)
		elog(ERROR, "pgbatch: gate %s has too many arguments", NameStr(proc->proname));
	argtypes[0] = REGROLEOID;
	for (i = 0; i < proc->pronargs; i++)
		argtypes[i + 1] = proc->proargtypes.values[i];
	/* by catalog, not by name lookup: the caller has no USAGE on the schema */
	impl_oid = GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid,
							   NameGetDatum(&proc->proname),
							   PointerGetDatum(buildoidvector(argtypes, proc->pronargs + 1)),
							   ObjectIdGetDatum(get_namespace_oid(PGB_INTERNAL_SCHEMA, false)));
	if (!OidIsValid(impl_oid))
		elog(ERROR, "pgbatch: function %s has no implementation in schema %s",
			 NameStr(proc->proname), PGB_INTERNAL_SCHEMA);

	gate = MemoryContextAllocZero(flinfo->fn_mcxt, sizeof(PgbGate));
	gate->nargs = proc->pronargs;
	ReleaseSysCache(tup);
	fmgr_info_cxt(impl_oid, &gate->impl, flinfo->fn_mcxt);
	return gate;
}

/*
 * pgbatch_gate
 *		Every public function of pgbatch that writes: calls its
 *		implementation with the role in effect as the first argument (see
 *		the file header).  The implementation is called through fmgr, which
 *		does not check EXECUTE: the caller needs EXECUTE on the gate only.
 *		Set-returning and composite results pass through unchanged.
 */
Datum
pgbatch_gate(PG_FUNCTION_ARGS)
{
	PgbGate    *gate = (PgbGate *) fcinfo->flinfo->fn_extra;
	LOCAL_FCINFO(inner, FUNC_MAX_ARGS);
	Datum		result;
	int			i;

	if (gate == NULL)
	{
		gate = gate_lookup(fcinfo->flinfo);
		fcinfo->flinfo->fn_extra = gate;
	}

	InitFunctionCallInfoData(*inner, &gate->impl, gate->nargs + 1,
							 fcinfo->fncollation, fcinfo->context, fcinfo->resultinfo);
	inner->args[0].value = ObjectIdGetDatum(GetUserId());
	inner->args[0].isnull = false;
	for (i = 0; i < gate->nargs; i++)
		inner->args[i + 1] = fcinfo->args[i];

	result = FunctionCallInvoke(inner);
	fcinfo->isnull = inner->isnull;
	return result;
}

/*
 * pgbatch_query_rows
 *		batch_internal.query_rows(role regrole, query text) RETURNS jsonb:
 *		runs a role's own query as that role and returns its rows as a JSON
 *		array of objects (column name -> value).  Like a stage function, the
 *		query runs in a security-restricted operation (no SET ROLE, no
 *		temporary objects), with search_path = pg_catalog, pg_temp, and
 *		every setting it changes rolled back.  Only implementations call
 *		it, after checking that the role in effect is that role.
 */
Datum
pgbatch_query_rows(PG_FUNCTION_ARGS)
{
	Oid			role = PG_GETARG_OID(0);
	char	   *query = text_to_cstring(PG_GETARG_TEXT_PP(1));
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	JsonbParseState *state = NULL;
	JsonbValue *res;
	Portal		portal;
	SPIParseOpenOptions options;
	MemoryContext callercxt = CurrentMemoryContext;

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	SPI_connect();
	SetUserIdAndSecContext(role, save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	save_nestlevel = NewGUCNestLevel();
	(void) set_config_option("search_path", "pg_catalog, pg_temp", PGC_USERSET,
							 PGC_S_SESSION, GUC_ACTION_SAVE, true, 0, false);

	memset(&options, 0, sizeof(options));
	portal = SPI_cursor_parse_open(NULL, query, &options);
	pushJsonbValue(&state, WJB_BEGIN_ARRAY, NULL);
	for (;;)
	{
		uint64		i;

		SPI_cursor_fetch(portal, true, 100);
		if (SPI_processed == 0)
			break;
		for (i = 0; i < SPI_processed; i++)
		{
			HeapTupleHeader row;
			text	   *json;
			Jsonb	   *jb;
			JsonbValue	elem;

			row = SPI_returntuple(SPI_tuptable->vals[i], SPI_tuptable->tupdesc);
			json = DatumGetTextPP(DirectFunctionCall1(row_to_json, PointerGetDatum(row)));
			jb = DatumGetJsonbP(DirectFunctionCall1(jsonb_in,
													CStringGetDatum(text_to_cstring(json))));
			elem.type = jbvBinary;
			elem.val.binary.data = &jb->root;
			elem.val.binary.len = VARSIZE(jb) - VARHDRSZ;
			pushJsonbValue(&state, WJB_ELEM, &elem);
		}
		SPI_freetuptable(SPI_tuptable);
	}
	SPI_cursor_close(portal);

	AtEOXact_GUC(false, save_nestlevel);
	SetUserIdAndSecContext(save_userid, save_sec_context);

	res = pushJsonbValue(&state, WJB_END_ARRAY, NULL);
	MemoryContextSwitchTo(callercxt);
	{
		Jsonb	   *out = JsonbValueToJsonb(res);

		SPI_finish();
		PG_RETURN_JSONB_P(out);
	}
}
