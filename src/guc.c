/*-------------------------------------------------------------------------
 *
 * guc.c
 *		The pgbatch.* configuration parameters.
 *
 * src/guc.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/guc.h"

#include "pgbatch.h"

/* Largest item payload accepted, in bytes (jsonb binary size). */
int			pgb_max_payload_size = 1024 * 1024;

/* How many due items an executor claims and records per round trip. */
int			pgb_claim_batch_size = 100;

/*
 * pgb_define_gucs
 *		Registers the pgbatch.* parameters and reserves the prefix.
 */
void
pgb_define_gucs(void)
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
							"How many due items an executor claims at a time.",
							"Outcomes are recorded in the same chunks.",
							&pgb_claim_batch_size,
							100,
							1,
							10000,
							PGC_USERSET,
							0,
							NULL, NULL, NULL);

	MarkGUCPrefixReserved("pgbatch");
}
