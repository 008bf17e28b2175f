/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		pgbatch's shared memory: the launcher, one slot per executor worker,
 *		per-database flags, and the live state of every endpoint (requests
 *		in flight, rate-limit tokens, Retry-After pause, circuit breaker),
 *		which all executors of a database share so that an endpoint's
 *		limits hold across them.  Also the wake-ups that go with it: at
 *		commit, a transaction that queued work sets the latches of its
 *		database's executors; CREATE EXTENSION registers the database and
 *		wakes the launcher; DROP DATABASE first stops the database's
 *		executors.
 *
 * IDENTIFICATION
 *		src/shmem.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

#include "guc.h"
#include "pgbatch.h"
#include "shmem.h"
#include "util.h"

PG_FUNCTION_INFO_V1(pgbatch_wake_launcher);
PG_FUNCTION_INFO_V1(pgbatch_workers);

PgbShared  *pgb_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static ProcessUtility_hook_type prev_process_utility_hook = NULL;

/* this transaction queued work, or installed the extension */
static bool wake_executors_at_commit = false;
static bool wake_launcher_at_commit = false;

/* this backend's executor slot, if it is an executor */
static int	my_slot = -1;

/*
 * pgb_shmem_size
 *		Bytes of shared memory pgbatch needs.
 */
static Size
pgb_shmem_size(void)
{
	Size		size = offsetof(PgbShared, slots);

	size = add_size(size, mul_size(PGB_MAX_SLOTS, sizeof(PgbWorkerSlot)));
	size = add_size(size, mul_size(pgb_max_endpoints, sizeof(PgbEndpointState)));
	return size;
}

/*
 * pgb_shmem_request
 *		shmem_request_hook: reserve our memory and our lock.
 */
static void
pgb_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(pgb_shmem_size());
	RequestNamedLWLockTranche("pgbatch", 1);
}

/*
 * pgb_shmem_startup
 *		shmem_startup_hook: create or attach to the shared state.
 */
static void
pgb_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pgb_shared = ShmemInitStruct("pgbatch", pgb_shmem_size(), &found);
	if (!found)
	{
		memset(pgb_shared, 0, pgb_shmem_size());
		pgb_shared->lock = &(GetNamedLWLockTranche("pgbatch"))->lock;
		pg_atomic_init_u32(&pgb_shared->exits, 0);
		pgb_shared->nendpoints = 0;
		pgb_shared->endpoints = (PgbEndpointState *) &pgb_shared->slots[PGB_MAX_SLOTS];
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * pgb_xact_callback
 *		At commit, wake whom the transaction asked to wake.
 */
static void
pgb_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (pgb_shared == NULL)
				break;
			if (wake_launcher_at_commit)
				pgb_register_database();
			if (wake_executors_at_commit)
				pgb_wake_executors(MyDatabaseId);
			break;
		default:
			break;
	}
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_PARALLEL_COMMIT ||
		event == XACT_EVENT_ABORT || event == XACT_EVENT_PARALLEL_ABORT)
	{
		wake_executors_at_commit = false;
		wake_launcher_at_commit = false;
	}
}

/*
 * pgb_wake_executors
 *		Sets the latches of a database's executors (but our own).  Read
 *		without the lock: a stale latch pointer only costs a spurious wake.
 */
void
pgb_wake_executors(Oid dboid)
{
	int			i;

	for (i = 0; i < PGB_MAX_SLOTS; i++)
	{
		PgbWorkerSlot *slot = &pgb_shared->slots[i];
		Latch	   *latch = slot->latch;

		if (slot->in_use && slot->dboid == dboid && latch && latch != MyLatch)
			SetLatch(latch);
	}
}

/*
 * pgb_wake_on_commit
 *		Ask for this database's executors to be woken when the current
 *		transaction commits (it made items due).
 */
void
pgb_wake_on_commit(void)
{
	wake_executors_at_commit = true;
}

/*
 * pgbatch_wake_launcher
 *		batch_internal.wake_launcher(), at the end of the extension's
 *		scripts: at commit, register this database (pgb_register_database),
 *		so that the launcher starts its executors.
 */
Datum
pgbatch_wake_launcher(PG_FUNCTION_ARGS)
{
	wake_launcher_at_commit = true;
	PG_RETURN_VOID();
}

/*
 * pgb_db_flags_find
 *		The flags entry of a database, creating it if 'create'; NULL if there
 *		is none (or no room).  Caller holds the lock.
 */
PgbDbFlags *
pgb_db_flags_find(Oid dboid, bool create)
{
	int			i;
	PgbDbFlags *free_entry = NULL;

	for (i = 0; i < PGB_MAX_DBS; i++)
	{
		PgbDbFlags *f = &pgb_shared->dbs[i];

		if (f->dboid == dboid)
			return f;
		if (f->dboid == InvalidOid && free_entry == NULL)
			free_entry = f;
	}
	if (create && free_entry)
	{
		memset(free_entry, 0, sizeof(PgbDbFlags));
		free_entry->dboid = dboid;
		return free_entry;
	}
	return NULL;
}

/*
 * pgb_register_database
 *		Records that this database has the extension, and wakes the launcher
 *		if that is news to it: it then starts the database's executors and
 *		writes its registry file (registry.c).  Called at commit, when the
 *		extension was created or updated or a call showed it is there.
 */
void
pgb_register_database(void)
{
	PgbDbFlags *f;
	bool		news = false;

	if (pgb_shared == NULL || !OidIsValid(MyDatabaseId))
		return;
	LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
	f = pgb_db_flags_find(MyDatabaseId, true);
	if (f)
	{
		news = !f->registered || f->tentative;
		f->registered = true;
		f->tentative = false;
		f->registered_at = GetCurrentTimestamp();
	}
	LWLockRelease(pgb_shared->lock);
	if (news && pgb_shared->launcher_latch)
		SetLatch(pgb_shared->launcher_latch);
}

/*
 * pgb_register_at_commit
 *		Asks for pgb_register_database() at the commit of this transaction,
 *		if the database is not registered already.
 */
void
pgb_register_at_commit(void)
{
	PgbDbFlags *f;

	if (pgb_shared == NULL)
		return;
	LWLockAcquire(pgb_shared->lock, LW_SHARED);
	f = pgb_db_flags_find(MyDatabaseId, false);
	if (f == NULL || !f->registered)
		wake_launcher_at_commit = true;
	LWLockRelease(pgb_shared->lock);
}

/*
 * stop_database_executors
 *		Tells the executors of a database to exit and waits (up to 10 s) for
 *		them to be gone; the launcher starts no new ones while 'dropping'.
 */
static void
stop_database_executors(Oid dboid)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), 10000);
	PgbDbFlags *f;

	LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
	f = pgb_db_flags_find(dboid, true);
	if (f)
		f->dropping = true;
	LWLockRelease(pgb_shared->lock);

	for (;;)
	{
		int			live = 0;
		int			i;

		LWLockAcquire(pgb_shared->lock, LW_SHARED);
		for (i = 0; i < PGB_MAX_SLOTS; i++)
		{
			PgbWorkerSlot *slot = &pgb_shared->slots[i];

			if (slot->in_use && slot->dboid == dboid && slot->pid != 0)
			{
				kill(slot->pid, SIGTERM);
				live++;
			}
		}
		LWLockRelease(pgb_shared->lock);
		if (live == 0 || GetCurrentTimestamp() >= deadline)
			break;
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 50, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
}

/*
 * pgb_process_utility
 *		ProcessUtility_hook: DROP DATABASE stops that database's executors
 *		first, so that it neither waits for them nor fails because they are
 *		connected.
 */
static void
pgb_process_utility(PlannedStmt *pstmt, const char *queryString,
					bool readOnlyTree, ProcessUtilityContext context,
					ParamListInfo params, QueryEnvironment *queryEnv,
					DestReceiver *dest, QueryCompletion *qc)
{
	Oid			dropping = InvalidOid;

	if (pgb_shared && IsA(pstmt->utilityStmt, DropdbStmt))
	{
		DropdbStmt *stmt = (DropdbStmt *) pstmt->utilityStmt;

		dropping = get_database_oid(stmt->dbname, true);
		if (OidIsValid(dropping))
			stop_database_executors(dropping);
	}

	PG_TRY();
	{
		if (prev_process_utility_hook)
			prev_process_utility_hook(pstmt, queryString, readOnlyTree, context,
									  params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_CATCH();
	{
		/*
		 * The drop failed: let the launcher start the executors again.  (Once
		 * a database is gone, the launcher forgets its flags.)
		 */
		if (OidIsValid(dropping))
		{
			PgbDbFlags *f;

			LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
			f = pgb_db_flags_find(dropping, false);
			if (f)
				f->dropping = false;
			LWLockRelease(pgb_shared->lock);
			if (pgb_shared->launcher_latch)
				SetLatch(pgb_shared->launcher_latch);
		}
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/*
 * pgb_shmem_init
 *		Installs the hooks; called from _PG_init when pgbatch is preloaded.
 */
void
pgb_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pgb_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pgb_shmem_startup;
	prev_process_utility_hook = ProcessUtility_hook;
	ProcessUtility_hook = pgb_process_utility;
}

/*
 * pgb_register_xact_callback
 *		The commit-time wake-ups; registered in every backend that loads
 *		pgbatch (they do nothing without the shared memory).
 */
void
pgb_register_xact_callback(void)
{
	RegisterXactCallback(pgb_xact_callback, NULL);
}

/*
 * release_slot
 *		before_shmem_exit callback of an executor: give back its slot, and
 *		wake the others, which take back the items it held.  (The executor
 *		gives back its endpoint requests in flight first, in a callback
 *		registered after this one.)
 */
static void
release_slot(int code, Datum arg)
{
	PgbWorkerSlot *slot;
	Oid			dboid;

	if (my_slot < 0 || pgb_shared == NULL)
		return;
	LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
	slot = &pgb_shared->slots[my_slot];
	dboid = slot->dboid;
	slot->pid = 0;
	slot->latch = NULL;
	slot->in_use = false;
	LWLockRelease(pgb_shared->lock);
	my_slot = -1;

	/* the items it held can be taken back now: tell the others */
	pg_atomic_fetch_add_u32(&pgb_shared->exits, 1);
	pgb_wake_executors(dboid);
}

/*
 * pgb_slot_attach
 *		An executor takes the slot the launcher reserved for it.
 */
void
pgb_slot_attach(int index, Oid dboid)
{
	PgbWorkerSlot *slot;

	if (index < 0 || index >= PGB_MAX_SLOTS)
		elog(ERROR, "pgbatch: executor slot %d out of range", index);
	LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
	slot = &pgb_shared->slots[index];
	slot->in_use = true;
	slot->dboid = dboid;
	slot->pid = MyProcPid;
	slot->latch = MyLatch;
	slot->started_at = GetCurrentTimestamp();
	slot->in_flight = 0;
	slot->requests = 0;
	slot->busy_owner = InvalidOid;
	LWLockRelease(pgb_shared->lock);
	my_slot = index;
	before_shmem_exit(release_slot, (Datum) 0);
}

/*
 * pgb_held_up
 *		True if every executor of a database (but 'except', if given) has
 *		been in its current chunk of stages for more than PGB_HELD_UP_MS:
 *		then an extra executor serves the other owners (launcher.c).  Sets
 *		*extras, if given, to how many extra executors it has.
 */
bool
pgb_held_up(Oid dboid, PgbWorkerSlot *except, TimestampTz now, int *extras)
{
	int			executors = 0;
	int			held = 0;
	int			nextra = 0;
	int			i;

	LWLockAcquire(pgb_shared->lock, LW_SHARED);
	for (i = 0; i < PGB_MAX_SLOTS; i++)
	{
		PgbWorkerSlot *slot = &pgb_shared->slots[i];

		if (!slot->in_use || slot->dboid != dboid || slot == except)
			continue;
		executors++;
		if (slot->extra)
			nextra++;
		if (slot->pid != 0 && OidIsValid(slot->busy_owner) &&
			TimestampDifferenceExceeds(slot->busy_since, now, PGB_HELD_UP_MS))
			held++;
	}
	LWLockRelease(pgb_shared->lock);
	if (extras)
		*extras = nextra;
	return executors > 0 && held == executors;
}

/*
 * pgb_my_slot
 *		This executor's slot (NULL in other backends).
 */
PgbWorkerSlot *
pgb_my_slot(void)
{
	return my_slot >= 0 ? &pgb_shared->slots[my_slot] : NULL;
}

/*
 * pgb_live_executor_pids
 *		The pids of the executors attached for a database, as an int4 array
 *		Datum; used to tell orphaned 'running' items from held ones.
 */
Datum
pgb_live_executor_pids(Oid dboid)
{
	PgbColumn	pids;
	int			i;

	pgb_column_init(&pids, INT4OID);
	if (pgb_shared)
	{
		LWLockAcquire(pgb_shared->lock, LW_SHARED);
		for (i = 0; i < PGB_MAX_SLOTS; i++)
		{
			PgbWorkerSlot *slot = &pgb_shared->slots[i];

			if (slot->in_use && slot->dboid == dboid && slot->pid != 0)
				pgb_column_add(&pids, Int32GetDatum(slot->pid), false);
		}
		LWLockRelease(pgb_shared->lock);
	}
	return pgb_column_array(&pids);
}

/*
 * pgb_executors_serve
 *		True if executors run (or are being started) for the database: then
 *		they send the HTTP requests, not batch.run().
 */
bool
pgb_executors_serve(Oid dboid)
{
	bool		found = false;
	int			i;

	if (pgb_shared == NULL)
		return false;
	LWLockAcquire(pgb_shared->lock, LW_SHARED);
	for (i = 0; i < PGB_MAX_SLOTS && !found; i++)
		found = pgb_shared->slots[i].in_use && pgb_shared->slots[i].dboid == dboid;
	LWLockRelease(pgb_shared->lock);
	return found;
}

/*
 * pgbatch_workers
 *		batch._workers(): the executors attached for this database.
 */
Datum
pgbatch_workers(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (pgb_shared == NULL)
		PG_RETURN_VOID();

	LWLockAcquire(pgb_shared->lock, LW_SHARED);
	for (i = 0; i < PGB_MAX_SLOTS; i++)
	{
		PgbWorkerSlot *slot = &pgb_shared->slots[i];
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		if (!slot->in_use || slot->dboid != MyDatabaseId || slot->pid == 0)
			continue;
		values[0] = Int32GetDatum(slot->pid);
		values[1] = Int32GetDatum(slot->worker);
		values[2] = TimestampTzGetDatum(slot->started_at);
		values[3] = Int32GetDatum(slot->in_flight);
		values[4] = Int64GetDatum(slot->requests);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(pgb_shared->lock);
	PG_RETURN_VOID();
}
