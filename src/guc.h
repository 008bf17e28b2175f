/*-------------------------------------------------------------------------
 *
 * guc.h
 *		The pgbatch.* configuration parameters (guc.c).  guc.c depends on
 *		no other file of pgbatch: the hooks of pgbatch.allowed_hosts are
 *		handed to pgb_define_gucs() by _PG_init.
 *
 * IDENTIFICATION
 *		src/guc.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_GUC_H
#define PGB_GUC_H

#include "utils/guc.h"

extern int	pgb_max_payload_size;
extern int	pgb_claim_batch_size;
extern int	pgb_workers;
extern int	pgb_max_http_in_flight;
extern int	pgb_poll_interval_ms;
extern int	pgb_lease_duration_s;
extern bool pgb_enabled;
extern char *pgb_databases;
extern int	pgb_max_endpoints;
extern int	pgb_max_response_size;
extern int	pgb_circuit_threshold;
extern int	pgb_circuit_cooldown_ms;
extern char *pgb_allowed_hosts;
extern int	pgb_retention_s;
extern int	pgb_max_items_per_call;
extern int	pgb_max_pipelines;
extern int	pgb_max_stages;
extern int	pgb_max_endpoints_per_role;
extern int	pgb_stage_timeout_ms;

extern void pgb_define_gucs(GucStringCheckHook allowed_hosts_check,
							GucStringAssignHook allowed_hosts_assign);
extern bool pgb_database_named(const char *name, bool *valid);

#endif							/* PGB_GUC_H */
