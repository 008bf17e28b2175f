/*-------------------------------------------------------------------------
 *
 * stage_sql.c
 *		Runs one SQL stage of one item: the stage function is called in its
 *		own subtransaction, as the batch's owner, under the stage's timeout.
 *		An error it raises is caught, rolled back, named and classified as
 *		transient (worth a retry) or permanent; the executor goes on with
 *		the next item either way.
 *
 * IDENTIFICATION
 *		src/stage_sql.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "storage/latch.h"
#include "storage/lock.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/guc.h"
#include "utils/resowner.h"
#include "utils/syscache.h"
#include "utils/timeout.h"

#include "claim.h"
#include "pgbatch.h"
#include "pipeline.h"
#include "stage_sql.h"
#include "util.h"

typedef struct PgbErrName
{
	const char *name;
	const char *sqlstate;
} PgbErrName;

static const PgbErrName pgb_errnames[] = {
#include "errnames.h"
	{NULL, NULL}
};

/*
 * A stage call prepared once per run: the expression f($1, $2), planned so
 * that a simple SQL-language function is inlined, and compiled so that the
 * function's own caches (PL/pgSQL plans, ...) survive from item to item.
 */
typedef struct PgbStageCall
{
	ExprState  *state;
	ExprContext *econtext;
	ParamListInfo params;
} PgbStageCall;

/* The timeout that bounds one stage call, registered on first use. */
static TimeoutId stage_timeout_id = MAX_TIMEOUTS;
static volatile sig_atomic_t stage_timeout_fired = false;

/*
 * stage_timeout_handler
 *		Timer callback: cancel the running stage like a statement timeout
 *		does, and remember that it was us.
 */
static void
stage_timeout_handler(void)
{
	stage_timeout_fired = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

/*
 * release_stage_locks
 *		In a background executor, releases the session-level advisory locks
 *		a stage took (a subtransaction's end does not release them): the
 *		executor's session is nobody's, and a lock left in it would block
 *		other sessions for as long as the executor lives.  In batch.run()
 *		the session is the caller's, who holds its own locks there.
 */
static void
release_stage_locks(void)
{
	if (IsBackgroundWorker)
		LockReleaseSession(USER_LOCKMETHOD);
}

/*
 * pgb_sqlstate_name
 *		The condition name of a SQLSTATE ("serialization_failure"), or the
 *		five-character code itself for codes the server does not name.  The
 *		result is static or palloc'd in the current context.
 */
const char *
pgb_sqlstate_name(int sqlerrcode)
{
	const char *code = unpack_sql_state(sqlerrcode);
	const PgbErrName *e;

	if (sqlerrcode == PGB_ERRCODE_RETRY)
		return "retry_requested";
	for (e = pgb_errnames; e->name != NULL; e++)
		if (strcmp(e->sqlstate, code) == 0)
			return e->name;
	return pstrdup(code);
}

/*
 * pgb_sqlstate_is_transient
 *		Whether an error a stage raised is worth retrying: serialization
 *		failures and deadlocks (class 40), lock_not_available, connection
 *		failures (class 08), insufficient resources (class 53), and the
 *		pgbatch code PB001 with which a stage asks for a retry.  A stage
 *		timeout is handled by the caller.
 */
bool
pgb_sqlstate_is_transient(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_TRANSACTION_ROLLBACK:
		case ERRCODE_CONNECTION_EXCEPTION:
		case ERRCODE_INSUFFICIENT_RESOURCES:
			return true;
		default:
			break;
	}
	return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
		sqlerrcode == PGB_ERRCODE_RETRY;
}

/*
 * check_stage_callable
 *		Raises an error if the stage function is gone, the batch owner may
 *		not execute it, or another role changed it since the pipeline was
 *		created (see batch_internal.stage_trusted).  Runs inside the stage's
 *		subtransaction, so the error becomes the item's (permanent) error.
 */
static void
check_stage_callable(PgbBatchInfo *batch, PgbStage *stage)
{
	if (!OidIsValid(batch->owner))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\" that owns the batch does not exist",
						batch->owner_name)));
	if (!OidIsValid(stage->func) ||
		!SearchSysCacheExists1(PROCOID, ObjectIdGetDatum(stage->func)))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_FUNCTION),
				 errmsg("the function of stage \"%s\" no longer exists", stage->name)));
	if (pg_proc_aclcheck(stage->func, batch->owner, ACL_EXECUTE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not execute the function of stage \"%s\"",
						batch->owner_name, stage->name)));
	if (!stage->func_trusted)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("the function of stage \"%s\" changed since its pipeline was created",
						stage->name),
				 errdetail("Its owner is neither role \"%s\" nor a superuser, so it runs only as approved.",
						   batch->owner_name),
				 errhint("An admin who has reviewed it approves it with batch.refresh_pipeline().")));
}

/*
 * stage_call_prepare
 *		Builds the prepared call of a stage's function in the pipeline's
 *		memory context.  Runs as the batch owner, so that the EXECUTE checks
 *		made while inlining and compiling are the owner's.
 */
static PgbStageCall *
stage_call_prepare(PgbPipeline *pipeline, PgbStage *stage)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(pipeline->mcxt);
	PgbStageCall *call = palloc0(sizeof(PgbStageCall));
	List	   *args = NIL;
	Expr	   *expr;
	int			i;

	for (i = 1; i <= 2; i++)
	{
		Param	   *param = makeNode(Param);

		param->paramkind = PARAM_EXTERN;
		param->paramid = i;
		param->paramtype = JSONBOID;
		param->paramtypmod = -1;
		param->paramcollid = InvalidOid;
		param->location = -1;
		args = lappend(args, param);
	}
	expr = (Expr *) makeFuncExpr(stage->func, JSONBOID, args, InvalidOid,
								 InvalidOid, COERCE_EXPLICIT_CALL);
	expr = expression_planner(expr);

	call->params = makeParamList(2);
	call->params->numParams = 2;
	for (i = 0; i < 2; i++)
	{
		call->params->params[i].ptype = JSONBOID;
		call->params->params[i].pflags = PARAM_FLAG_CONST;
		call->params->params[i].isnull = false;
	}
	call->state = ExecInitExprWithParams(expr, call->params);
	call->econtext = CreateStandaloneExprContext();
	call->econtext->ecxt_param_list_info = call->params;
	MemoryContextSwitchTo(oldcxt);
	return call;
}

/*
 * pgb_release_stage_calls
 *		Frees the expression contexts of a pipeline's prepared stage calls.
 */
void
pgb_release_stage_calls(PgbPipeline *pipeline)
{
	int			i;

	for (i = 0; i < pipeline->nstages; i++)
		if (pipeline->stages[i].call != NULL)
		{
			FreeExprContext(pipeline->stages[i].call->econtext, true);
			pipeline->stages[i].call = NULL;
		}
}

/*
 * pgb_run_sql_stage
 *		Calls the stage function f(payload, outputs) for one item.  On
 *		success *output is the result (JSON null for SQL NULL) and the
 *		subtransaction's work stays in the current transaction.  On error
 *		the subtransaction is rolled back and *error_code and *message say
 *		what happened.  Errors that must stop the whole statement (a query
 *		cancel or statement_timeout that is not this stage's own timeout)
 *		are re-thrown.  Results are allocated in the caller's memory context.
 */
PgbStageResult
pgb_run_sql_stage(PgbBatchInfo *batch, PgbStage *stage, PgbWorkItem *item,
				  Jsonb **output, char **error_code, char **message)
{
	MemoryContext callercxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	Oid			save_userid;
	int			save_sec_context;
	int			save_nestlevel;
	volatile PgbStageResult result = PGB_STAGE_PERMANENT;
	ErrorData  *edata;
	bool		timed_out;

	*output = NULL;
	*error_code = NULL;
	*message = NULL;

	if (stage->timeout_ms > 0 && stage_timeout_id == MAX_TIMEOUTS)
		stage_timeout_id = RegisterTimeout(USER_TIMEOUT, stage_timeout_handler);

	GetUserIdAndSecContext(&save_userid, &save_sec_context);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(callercxt);

	PG_TRY();
	{
		Datum		res;
		bool		isnull;
		PgbStageCall *call;

		check_stage_callable(batch, stage);
		if (item->outputs == NULL)
			item->outputs = pgb_jsonb_constant("{}");

		/*
		 * As the owner, in a security-restricted operation (no SET ROLE, no
		 * temporary objects left behind), with every setting it changes
		 * rolled back afterwards: like index expressions run by VACUUM.
		 */
		SetUserIdAndSecContext(batch->owner,
							   save_sec_context | SECURITY_LOCAL_USERID_CHANGE |
							   SECURITY_RESTRICTED_OPERATION);
		save_nestlevel = NewGUCNestLevel();
		if (stage->call == NULL)
			stage->call = stage_call_prepare(batch->pipeline, stage);
		call = stage->call;
		call->params->params[0].value = JsonbPGetDatum(item->payload);
		call->params->params[1].value = JsonbPGetDatum(item->outputs);

		stage_timeout_fired = false;
		if (stage->timeout_ms > 0)
			enable_timeout_after(stage_timeout_id, stage->timeout_ms);

		res = ExecEvalExprSwitchContext(call->state, call->econtext, &isnull);

		if (stage->timeout_ms > 0)
			disable_timeout(stage_timeout_id, false);
		AtEOXact_GUC(false, save_nestlevel);
		SetUserIdAndSecContext(save_userid, save_sec_context);

		/* copy the result out before the subtransaction's memory is gone */
		MemoryContextSwitchTo(callercxt);
		if (isnull)
			*output = pgb_jsonb_constant("null");
		else
			*output = DatumGetJsonbPCopy(res);
		ResetExprContext(call->econtext);

		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(callercxt);
		CurrentResourceOwner = oldowner;
		release_stage_locks();

		/* a timer that fired after the function returned cancels nothing */
		if (stage_timeout_fired)
		{
			stage_timeout_fired = false;
			QueryCancelPending = false;
		}
		result = PGB_STAGE_OK;
	}
	PG_CATCH();
	{
		if (stage->timeout_ms > 0)
			disable_timeout(stage_timeout_id, false);
		timed_out = stage_timeout_fired;
		stage_timeout_fired = false;

		MemoryContextSwitchTo(callercxt);
		edata = CopyErrorData();
		FlushErrorState();

		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(callercxt);
		CurrentResourceOwner = oldowner;
		SetUserIdAndSecContext(save_userid, save_sec_context);
		release_stage_locks();
		if (stage->call != NULL)
			ResetExprContext(stage->call->econtext);

		if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED && timed_out)
		{
			*error_code = pstrdup("timeout");
			*message = psprintf("stage \"%s\" did not finish within its timeout of %d ms",
								stage->name, stage->timeout_ms);
			result = PGB_STAGE_TRANSIENT;
		}
		else if (edata->sqlerrcode == ERRCODE_QUERY_CANCELED)
		{
			/* the user's cancel or statement_timeout: stop the whole run */
			ReThrowError(edata);
		}
		else
		{
			*error_code = (char *) pgb_sqlstate_name(edata->sqlerrcode);
			*message = edata->message ? pstrdup(edata->message) : pstrdup("unknown error");
			result = pgb_sqlstate_is_transient(edata->sqlerrcode)
				? PGB_STAGE_TRANSIENT : PGB_STAGE_PERMANENT;
		}
		FreeErrorData(edata);
	}
	PG_END_TRY();

	return result;
}
