/*-------------------------------------------------------------------------
 *
 * health.c
 *		batch.health: per database, whether executors serve it, how many,
 *		since when, and if not, why not and what to do.  Read from shared
 *		memory (the launcher's and the executors' flags, the executor
 *		slots) and from the settings; the one place that turns them into a
 *		state, so that the view, submit's WARNING and the command-line
 *		tool all say the same.
 *
 *		The states:
 *		  serving     executors are attached and claim work;
 *		  starting    the launcher is starting them (a database registered
 *		              a moment ago);
 *		  paused      executors are attached but claim nothing new (the
 *		              kill switch, pg_restore loading the database);
 *		  not served  no executor will run its items; 'reason' says why.
 *		A database served by fewer executors than pgbatch.workers is
 *		'serving' with a reason.
 *
 * IDENTIFICATION
 *		src/health.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "catalog/pg_database.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "guc.h"
#include "pgbatch.h"
#include "shmem.h"

PG_FUNCTION_INFO_V1(pgbatch_health);

#define HEALTH_COLUMNS	8

/* What shared memory says of one database. */
typedef struct DbSeen
{
	bool		registered;
	bool		dropping;
	bool		old_schema;
	bool		restoring;
	bool		out_of_slots;
	int			unstarted;
	int64		starts;
	int			executors;		/* attached */
	int			reserved;		/* slots taken, not attached yet */
	TimestampTz since;			/* the earliest attached executor's start */
} DbSeen;

/*
 * db_seen
 *		Reads the flags and the executor slots of one database.
 */
static void
db_seen(Oid dboid, DbSeen *seen)
{
	PgbDbFlags *f;
	int			i;

	memset(seen, 0, sizeof(DbSeen));
	LWLockAcquire(pgb_shared->lock, LW_SHARED);
	f = pgb_db_flags_find(dboid, false);
	if (f)
	{
		seen->registered = f->registered;
		seen->dropping = f->dropping;
		seen->old_schema = f->old_schema;
		seen->restoring = f->restoring;
		seen->out_of_slots = f->out_of_slots;
		seen->unstarted = f->unstarted;
		seen->starts = f->starts;
	}
	for (i = 0; i < PGB_MAX_SLOTS; i++)
	{
		PgbWorkerSlot *slot = &pgb_shared->slots[i];

		if (!slot->in_use || slot->dboid != dboid)
			continue;
		if (slot->pid == 0)
			seen->reserved++;
		else
		{
			seen->executors++;
			if (seen->since == 0 || slot->started_at < seen->since)
				seen->since = slot->started_at;
		}
	}
	LWLockRelease(pgb_shared->lock);
}

/*
 * health_row
 *		The state, the executors wanted, the reason and the hint of one
 *		database (reason and hint NULL when there is nothing to say).  'current': the database of this
 *		session, which this call registers (at commit) if it was not.
 */
static void
health_row(const char *name, bool connectable, bool current, DbSeen *seen,
		   const char **state, int *wanted, char **reason, char **hint)
{
	bool		valid;

	*wanted = 0;
	*state = "not served";
	*reason = NULL;
	*hint = NULL;
	if (pgb_shared == NULL)
	{
		*reason = pstrdup("pgbatch is not in shared_preload_libraries");
		*hint = pstrdup("Add pgbatch to shared_preload_libraries in postgresql.conf and restart the server; until then only batch.run() runs items, in its own session.");
		return;
	}
	if (pgb_shared->launcher_pid == 0)
	{
		*reason = pstrdup("the pgbatch launcher is not running");
		*hint = psprintf("It needs a background worker slot of its own: see the server log, and raise max_worker_processes (now %d) if it says there were too many background workers.",
						 max_worker_processes);
		return;
	}
	if (!connectable)
	{
		*reason = pstrdup("the database does not allow connections");
		return;
	}
	if (!pgb_database_named(name, &valid))
	{
		*reason = valid ? pstrdup("pgbatch.databases does not name this database")
			: pstrdup("pgbatch.databases is not a comma-separated list of database names");
		*hint = pstrdup("Name it in pgbatch.databases (or empty that setting) and reload the configuration.");
		return;
	}
	if (seen->dropping)
	{
		*reason = pstrdup("the database is being dropped");
		return;
	}
	if (!seen->registered && !current)
	{
		*reason = pstrdup("the extension is not installed here, or has not been used since this database was copied or upgraded");
		*hint = pstrdup("Run CREATE EXTENSION pgbatch in this database, or any pgbatch command there if it has the extension.");
		return;
	}
	*wanted = pgb_workers;
	if (seen->old_schema)
	{
		*reason = psprintf("the extension's schema is older than its library (%s): the executors stay idle",
						   PGB_VERSION);
		*hint = pstrdup("Run ALTER EXTENSION pgbatch UPDATE in this database.");
		return;
	}
	if (seen->unstarted > 0 && seen->out_of_slots)
	{
		*reason = psprintf("%d of %d executors could not start: pgbatch's %d executor slots are all in use",
						   seen->unstarted, pgb_workers, PGB_MAX_SLOTS);
		*hint = pstrdup("Lower pgbatch.workers, or serve fewer databases (pgbatch.databases).");
	}
	else if (seen->unstarted > 0)
	{
		*reason = psprintf("%d of %d executors could not start: max_worker_processes (%d) is exhausted",
						   seen->unstarted, pgb_workers, max_worker_processes);
		*hint = pstrdup("Raise max_worker_processes and restart the server, or lower pgbatch.workers; doc/runbook.md gives the sizing rule.");
	}
	if (seen->executors == 0)
	{
		/* reserved slots, or a registration not yet acted on: coming */
		if (seen->unstarted == 0)
			*state = "starting";
		return;
	}
	if (!pgb_enabled)
	{
		*state = "paused";
		*reason = pstrdup("pgbatch.enabled is off (the kill switch): the executors claim no new work");
		*hint = pstrdup("Set pgbatch.enabled = on and reload the configuration.");
		return;
	}
	if (seen->restoring)
	{
		*state = "paused";
		*reason = pstrdup("pg_restore is loading this database: the executors wait for it to finish");
		return;
	}
	*state = "serving";
}

/*
 * pgbatch_health
 *		batch_internal.health(): one row per database of the cluster
 *		(templates left out): database, state, executors, wanted, since,
 *		started, reason, hint.  Registers the current database at commit if it was
 *		not registered (it has the extension: this function is in it).
 */
Datum
pgbatch_health(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	InitMaterializedSRF(fcinfo, 0);
	pgb_register_at_commit();

	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		Datum		values[HEALTH_COLUMNS];
		bool		nulls[HEALTH_COLUMNS];
		DbSeen		seen;
		const char *state;
		char	   *reason;
		char	   *hint;
		int			wanted;
		bool		current = (db->oid == MyDatabaseId);

		if (db->datistemplate)
			continue;
		memset(nulls, 0, sizeof(nulls));
		if (pgb_shared)
			db_seen(db->oid, &seen);
		else
			memset(&seen, 0, sizeof(seen));
		health_row(NameStr(db->datname), db->datallowconn, current, &seen,
				   &state, &wanted, &reason, &hint);

		values[0] = NameGetDatum(&db->datname);
		values[1] = CStringGetTextDatum(state);
		values[2] = Int32GetDatum(seen.executors);
		values[3] = Int32GetDatum(wanted);
		values[4] = TimestampTzGetDatum(seen.since);
		nulls[4] = (seen.since == 0);
		values[5] = Int64GetDatum(seen.starts);
		values[6] = reason ? CStringGetTextDatum(reason) : (Datum) 0;
		nulls[6] = (reason == NULL);
		values[7] = hint ? CStringGetTextDatum(hint) : (Datum) 0;
		nulls[7] = (hint == NULL);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	PG_RETURN_VOID();
}
