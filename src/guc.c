/*-------------------------------------------------------------------------
 *
 * guc.c
 *		The pgbatch.* configuration parameters.
 *
 * IDENTIFICATION
 *		src/guc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/varlena.h"

#include "guc.h"
#include "pgbatch.h"

/* Largest item payload accepted, in bytes (jsonb binary size). */
int			pgb_max_payload_size = 1024 * 1024;

/* How many due items an executor claims and records per round trip. */
int			pgb_claim_batch_size = 100;

/* Background workers: see pgb_define_gucs() for what each means. */
int			pgb_workers = 2;
int			pgb_max_http_in_flight = 64;
int			pgb_poll_interval_ms = 5000;
int			pgb_lease_duration_s = 300;
bool		pgb_enabled = true;
char	   *pgb_databases = NULL;
int			pgb_max_endpoints = 256;
int			pgb_max_response_size = 16 * 1024 * 1024;
int			pgb_circuit_threshold = 10;
int			pgb_circuit_cooldown_ms = 30000;

/* Security and limits: see pgb_define_gucs(). */
char	   *pgb_allowed_hosts = NULL;
int			pgb_retention_s = 30 * 86400;
int			pgb_max_items_per_call = 100000;
int			pgb_max_pipelines = 1000;
int			pgb_max_stages = 32;
int			pgb_max_endpoints_per_role = 100;
int			pgb_stage_timeout_ms = 300000;

/*
 * pgb_define_gucs
 *		Registers the pgbatch.* parameters and reserves the prefix.  The
 *		hooks of pgbatch.allowed_hosts (security.c's) come from the caller,
 *		so that this file depends on no other.
 */
void
pgb_define_gucs(GucStringCheckHook allowed_hosts_check,
				GucStringAssignHook allowed_hosts_assign)
{
	DefineCustomIntVariable("pgbatch.max_payload_size",
							"Largest item payload pgbatch accepts.",
							"Larger items are stored as failed with error code invalid_input.",
							&pgb_max_payload_size,
							1024 * 1024,
							64,
							256 * 1024 * 1024,
							PGC_SUSET,
							GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pgbatch.claim_batch_size",
							"How many due items an executor, or batch.run(), claims at a time.",
							"Outcomes are recorded in the same chunks.",
							&pgb_claim_batch_size,
							100,
							1,
							10000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pgbatch.workers",
							"Executor workers per database (pgbatch must be in shared_preload_libraries).",
							"Takes effect at reload; the launcher starts or stops executors to match.",
							&pgb_workers,
							2, 0, PGB_MAX_SLOTS,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pgbatch.max_http_in_flight",
							"Largest number of HTTP requests one executor, or one batch.run() session, has in flight.",
							NULL,
							&pgb_max_http_in_flight,
							64, 1, 10000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pgbatch.poll_interval",
							"Longest time an idle executor waits before it looks for due work.",
							"Executors are woken at once when work is queued; this bounds the wait otherwise.",
							&pgb_poll_interval_ms,
							5000, 10, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pgbatch.lease_duration",
							"How long an executor holds a running item before another may take it back.",
							"An HTTP item is held for the longer of this and its endpoint's timeout plus a minute, by an executor or by batch.run().",
							&pgb_lease_duration_s,
							300, 10, 86400,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("pgbatch.enabled",
							 "Lets executors claim new work (the kill switch).",
							 "When off, executors finish what is in flight and claim nothing new.",
							 &pgb_enabled,
							 true,
							 PGC_SIGHUP, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("pgbatch.databases",
							   "Databases where executors run (comma-separated); empty means every database with the extension.",
							   NULL,
							   &pgb_databases,
							   "",
							   PGC_SIGHUP, 0,
							   NULL, NULL, NULL);

	/* a postmaster-level setting can only be defined while preloading */
	if (process_shared_preload_libraries_in_progress)
		DefineCustomIntVariable("pgbatch.max_endpoints",
							"Endpoints whose limits shared memory can track, all databases together.",
							NULL,
							&pgb_max_endpoints,
							256, 8, 100000,
							PGC_POSTMASTER, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pgbatch.max_response_size",
							"Largest HTTP response body accepted.",
							"A larger response fails its item with error code response_too_large.",
							&pgb_max_response_size,
							16 * 1024 * 1024, 1024, 1024 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pgbatch.circuit_threshold",
							"Consecutive transient failures that open an endpoint's circuit breaker (0: never).",
							NULL,
							&pgb_circuit_threshold,
							10, 0, 100000,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pgbatch.circuit_cooldown",
							"How long an open circuit waits before it sends a probe request.",
							NULL,
							&pgb_circuit_cooldown_ms,
							30000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomStringVariable("pgbatch.allowed_hosts",
							   "Hosts that HTTP stages may call (comma-separated host, *.domain, host:port, [v6addr]:port patterns); empty means any host.",
							   "Endpoints outside the list cannot be created or used, and redirects cannot leave it.",
							   &pgb_allowed_hosts,
							   "",
							   PGC_SUSET, GUC_LIST_INPUT,
							   allowed_hosts_check, allowed_hosts_assign, NULL);

	DefineCustomIntVariable("pgbatch.retention",
							"How long the attempt history and outputs of a finished batch are kept (0: forever).",
							"batch.maintenance() purges them once a batch has been finished this long.",
							&pgb_retention_s,
							30 * 86400, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pgbatch.max_items_per_call",
							"Most items one call of batch.submit() or batch.add_items() accepts.",
							NULL,
							&pgb_max_items_per_call,
							100000, 1, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pgbatch.max_pipelines",
							"Most pipelines a database may hold.",
							NULL,
							&pgb_max_pipelines,
							1000, 1, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pgbatch.max_stages",
							"Most stages one pipeline may have.",
							NULL,
							&pgb_max_stages,
							32, 1, 1000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pgbatch.max_endpoints_per_role",
							"Most endpoints one role may create.",
							NULL,
							&pgb_max_endpoints_per_role,
							100, 1, 100000,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("pgbatch.stage_timeout",
							"Longest a stage function, or an HTTP stage's body function, may run when its stage sets no timeout (0: no limit).",
							"A stage that overruns it fails its attempt with the transient error timeout.",
							&pgb_stage_timeout_ms,
							300000, 0, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("pgbatch");
}

/*
 * pgb_database_named
 *		Whether executors may run in the database 'name' by pgbatch.databases
 *		(empty: in every database).  The one reading of that setting, for
 *		the launcher and for batch.health.  Sets *valid to false, and
 *		returns false, when the setting is not a list of names.
 */
bool
pgb_database_named(const char *name, bool *valid)
{
	char	   *copy;
	List	   *names = NIL;
	ListCell   *lc;
	bool		named = false;

	*valid = true;
	if (pgb_databases == NULL || pgb_databases[0] == '\0')
		return true;
	copy = pstrdup(pgb_databases);
	if (!SplitIdentifierString(copy, ',', &names))
	{
		*valid = false;
		return false;
	}
	foreach(lc, names)
		if (strcmp((char *) lfirst(lc), name) == 0)
			named = true;
	list_free(names);
	pfree(copy);
	return named;
}
