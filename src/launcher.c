/*-------------------------------------------------------------------------
 *
 * launcher.c
 *		The pgbatch launcher: a background worker registered when pgbatch is
 *		in shared_preload_libraries.  It lists the databases (or those named
 *		in pgbatch.databases), keeps pgbatch.workers executors running in
 *		each that has the extension, starts them again when they exit, and
 *		stops the surplus when the setting goes down.  When every executor
 *		of a database has been held up in stages for a while (a team's slow
 *		stage functions), it starts an extra executor there, which serves
 *		only the owners nobody serves, so that one owner cannot keep the
 *		others waiting; extras exit once idle.  Executors are started only
 *		in databases registered as having the extension (registry.c): none
 *		is spent looking into a database without it, but once, where there
 *		is no registry file yet: then one executor looks into each.  A
 *		database being dropped is left alone.  What it could not start, and
 *		why, is kept in the database's shared flags for batch.health.
 *
 * IDENTIFICATION
 *		src/launcher.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <signal.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/varlena.h"

#include "guc.h"
#include "launcher.h"
#include "pgbatch.h"
#include "registry.h"
#include "shmem.h"

/* the least time between two starts of the same executor */
#define RESTART_DELAY_MS		1000
/* how often to look for held-up executors while any runs stages */
#define HELD_UP_CHECK_MS		200
/* how often to list the databases and their executors when not woken */
#define RECONCILE_MS			10000

typedef struct LauncherDb
{
	Oid			oid;
	char		name[NAMEDATALEN];
	bool		servable;		/* connectable, not a template, and named by
								 * pgbatch.databases if that is set */
} LauncherDb;

/* the databases served at the last reconcile, and their executor count */
static LauncherDb served[PGB_MAX_DBS];
static int	served_want[PGB_MAX_DBS];
static int	nserved = 0;

/* no registry file was found: look into every database once */
static bool look_into_all = false;

/* per slot: the launcher's handle and when it last started that slot */
static BackgroundWorkerHandle *handles[PGB_MAX_SLOTS];
static TimestampTz started_at[PGB_MAX_SLOTS];

/*
 * list_databases
 *		Every database, each marked with whether executors may run there:
 *		connectable, not a template, and named by pgbatch.databases when
 *		that is set (when it is not a list, none is: a WARNING says so).
 */
static List *
list_databases(void)
{
	List	   *result = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;
	MemoryContext cxt = CurrentMemoryContext;
	bool		valid = true;

	(void) pgb_database_named("", &valid);
	if (!valid)
		ereport(WARNING,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("pgbatch.databases is not a comma-separated list of database names"),
				 errdetail("No database is served until it is.")));

	StartTransactionCommand();
	(void) GetTransactionSnapshot();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while (HeapTupleIsValid(tup = heap_getnext(scan, ForwardScanDirection)))
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);
		MemoryContext oldcxt;
		LauncherDb *entry;

		oldcxt = MemoryContextSwitchTo(cxt);
		entry = palloc(sizeof(LauncherDb));
		entry->oid = db->oid;
		strlcpy(entry->name, NameStr(db->datname), NAMEDATALEN);
		entry->servable = db->datallowconn && !db->datistemplate &&
			pgb_database_named(entry->name, &valid);
		result = lappend(result, entry);
		MemoryContextSwitchTo(oldcxt);
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	MemoryContextSwitchTo(cxt);
	return result;
}

/*
 * start_executor
 *		Reserves slot i for executor number 'worker' of a database (an extra
 *		one, or one of pgbatch.workers) and asks the postmaster to start it;
 *		false if no background worker slot was free (max_worker_processes).
 */
static bool
start_executor(int i, LauncherDb *db, int worker, bool extra)
{
	BackgroundWorker bgw;
	PgbWorkerSlot *slot = &pgb_shared->slots[i];
	MemoryContext oldcxt;
	bool		registered;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(bgw.bgw_library_name, "pgbatch", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "pgbatch_executor_main", BGW_MAXLEN);
	snprintf(bgw.bgw_name, BGW_MAXLEN, "pgbatch executor %d for database %s",
			 worker, db->name);
	strlcpy(bgw.bgw_type, "pgbatch executor", BGW_MAXLEN);
	bgw.bgw_main_arg = Int32GetDatum(i);
	memcpy(bgw.bgw_extra, &db->oid, sizeof(Oid));
	bgw.bgw_notify_pid = MyProcPid;

	LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
	slot->in_use = true;
	slot->dboid = db->oid;
	slot->worker = worker;
	slot->pid = 0;
	slot->latch = NULL;
	slot->extra = extra;
	slot->busy_owner = InvalidOid;
	LWLockRelease(pgb_shared->lock);

	started_at[i] = GetCurrentTimestamp();
	/* the handle outlives this loop's memory */
	oldcxt = MemoryContextSwitchTo(TopMemoryContext);
	registered = RegisterDynamicBackgroundWorker(&bgw, &handles[i]);
	MemoryContextSwitchTo(oldcxt);
	if (!registered)
	{
		LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
		slot->in_use = false;
		LWLockRelease(pgb_shared->lock);
		handles[i] = NULL;
		return false;
	}
	LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
	{
		PgbDbFlags *f = pgb_db_flags_find(db->oid, false);

		if (f)
			f->starts++;
	}
	LWLockRelease(pgb_shared->lock);
	return true;
}

/*
 * forget_dead_slots
 *		Frees the slots of executors that stopped before they attached (an
 *		executor that attached frees its own slot when it exits).
 */
static void
forget_dead_slots(void)
{
	int			i;

	for (i = 0; i < PGB_MAX_SLOTS; i++)
	{
		pid_t		pid;

		if (handles[i] == NULL)
			continue;
		if (GetBackgroundWorkerPid(handles[i], &pid) == BGWH_STOPPED)
		{
			LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
			if (pgb_shared->slots[i].pid == 0)
				pgb_shared->slots[i].in_use = false;
			LWLockRelease(pgb_shared->lock);
			pfree(handles[i]);
			handles[i] = NULL;
		}
	}
}

/*
 * forget_dropped_databases
 *		Clears the flags of databases that no longer exist, but for those
 *		registered since 'listed_at' (created after the list was read).
 */
static void
forget_dropped_databases(List *dbs, TimestampTz listed_at)
{
	int			i;

	LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
	for (i = 0; i < PGB_MAX_DBS; i++)
	{
		PgbDbFlags *f = &pgb_shared->dbs[i];
		ListCell   *lc;
		bool		exists = false;

		if (f->dboid == InvalidOid)
			continue;
		foreach(lc, dbs)
			if (((LauncherDb *) lfirst(lc))->oid == f->dboid)
				exists = true;
		if (!exists && f->registered_at < listed_at)
			memset(f, 0, sizeof(PgbDbFlags));
	}
	LWLockRelease(pgb_shared->lock);
}

/*
 * start_extra_if_held_up
 *		Starts an extra executor for a database whose executors (extras
 *		included) are all held up in stages (pgb_held_up), unless it has
 *		pgbatch.workers extras already.
 */
static void
start_extra_if_held_up(LauncherDb *db, int want, TimestampTz now)
{
	int			extras;
	int			i;
	PgbDbFlags *f;
	bool		gone;

	/* not a database being dropped, or whose extension went */
	LWLockAcquire(pgb_shared->lock, LW_SHARED);
	f = pgb_db_flags_find(db->oid, false);
	gone = f == NULL || f->dropping || !f->registered;
	LWLockRelease(pgb_shared->lock);
	if (gone || !pgb_held_up(db->oid, NULL, now, &extras) || extras >= pgb_workers)
		return;
	for (i = 0; i < PGB_MAX_SLOTS; i++)
		if (!pgb_shared->slots[i].in_use && handles[i] == NULL)
		{
			(void) start_executor(i, db, want + extras, true);
			return;
		}
}

/*
 * reconcile_db
 *		Starts the executors a database lacks (one, while it is registered
 *		only tentatively), stops the surplus, or all when it is not to be
 *		served; records in its flags how many it could not start, and why.
 */
static void
reconcile_db(LauncherDb *db, TimestampTz now)
{
	bool		running[PGB_MAX_SLOTS];
	int			want = pgb_workers;
	int			unstarted = 0;
	bool		out_of_slots = false;
	int			w;
	int			i;
	bool		skip;
	bool		tentative;
	PgbDbFlags *f;

	memset(running, 0, sizeof(running));
	LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
	f = pgb_db_flags_find(db->oid, false);
	skip = !db->servable || f == NULL || !f->registered || f->dropping;
	tentative = f != NULL && f->tentative;
	for (i = 0; i < PGB_MAX_SLOTS; i++)
	{
		PgbWorkerSlot *slot = &pgb_shared->slots[i];

		if (!slot->in_use || slot->dboid != db->oid)
			continue;
		if (slot->worker < PGB_MAX_SLOTS && !slot->extra)
			running[slot->worker] = true;
		if (((slot->worker >= want && !slot->extra) || skip) && slot->pid != 0)
			kill(slot->pid, SIGTERM);
	}
	LWLockRelease(pgb_shared->lock);
	if (skip)
		return;
	/* a database only thought to have the extension: one looks */
	if (tentative)
		want = 1;

	for (w = 0; w < want; w++)
	{
		int			free_slot = -1;
		bool		any_free = false;

		if (running[w])
			continue;
		for (i = 0; i < PGB_MAX_SLOTS && free_slot < 0; i++)
			if (!pgb_shared->slots[i].in_use && handles[i] == NULL)
			{
				any_free = true;
				if (TimestampDifferenceExceeds(started_at[i], now, RESTART_DELAY_MS))
					free_slot = i;
			}
		if (free_slot >= 0 && start_executor(free_slot, db, w, false))
			continue;
		/* a slot just freed is used again after RESTART_DELAY_MS */
		if (free_slot < 0 && any_free)
			continue;
		unstarted++;
		out_of_slots = out_of_slots || !any_free;
	}
	LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
	f = pgb_db_flags_find(db->oid, false);
	if (f)
	{
		/* said once when it happens, not at every reconcile */
		if (unstarted > f->unstarted)
			ereport(WARNING,
					(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
					 errmsg("pgbatch could not start %d of the %d executors of database \"%s\"",
							unstarted, want, db->name),
					 out_of_slots ?
					 errdetail("pgbatch's %d executor slots are all in use.", PGB_MAX_SLOTS) :
					 errdetail("All %d background worker processes (max_worker_processes) are in use.",
							   max_worker_processes),
					 errhint("Raise max_worker_processes, or lower pgbatch.workers; batch.health shows the databases left without executors.")));
		f->unstarted = unstarted;
		f->out_of_slots = out_of_slots;
	}
	LWLockRelease(pgb_shared->lock);
	if (nserved < PGB_MAX_DBS)
	{
		served[nserved] = *db;
		served_want[nserved++] = want;
	}
}

/*
 * reconcile
 *		Reconciles every database's executors (reconcile_db): first those
 *		registered tentatively, whose one executor only looks (and where
 *		there is no extension, exits at once), then the others; without a
 *		registry file, first registers every database tentatively.  Then
 *		writes the registry if the registered databases changed.
 */
static void
reconcile(void)
{
	TimestampTz now = GetCurrentTimestamp();
	List	   *dbs = list_databases();
	ListCell   *lc;
	bool	   *looks = palloc0(sizeof(bool) * Max(list_length(dbs), 1));
	int			n;

	forget_dead_slots();
	forget_dropped_databases(dbs, now);
	nserved = 0;
	n = 0;
	foreach(lc, dbs)
	{
		LauncherDb *db = (LauncherDb *) lfirst(lc);
		PgbDbFlags *f;

		LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
		f = pgb_db_flags_find(db->oid, look_into_all && db->servable);
		if (f && look_into_all && db->servable && !f->registered && f->starts == 0)
			f->registered = f->tentative = true;
		looks[n++] = f != NULL && f->tentative;
		LWLockRelease(pgb_shared->lock);
	}
	for (int pass = 0; pass < 2; pass++)
	{
		n = 0;
		foreach(lc, dbs)
		{
			if (looks[n++] == (pass == 0))
				reconcile_db((LauncherDb *) lfirst(lc), now);
		}
	}
	list_free_deep(dbs);
	pfree(looks);
	look_into_all = false;
	pgb_registry_save();
}

/*
 * check_held_up
 *		Starts an extra executor in each served database whose executors
 *		are all held up (from shared memory alone: cheap enough for every
 *		HELD_UP_CHECK_MS).
 */
static void
check_held_up(void)
{
	TimestampTz now = GetCurrentTimestamp();
	int			i;

	forget_dead_slots();
	for (i = 0; i < nserved; i++)
		start_extra_if_held_up(&served[i], served_want[i], now);
}

/*
 * launcher_exit
 *		before_shmem_exit callback: forget the launcher's latch.
 */
static void
launcher_exit(int code, Datum arg)
{
	LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
	pgb_shared->launcher_pid = 0;
	pgb_shared->launcher_latch = NULL;
	LWLockRelease(pgb_shared->lock);
}

/*
 * pgbatch_launcher_main
 *		Entry point of the launcher.
 */
void
pgbatch_launcher_main(Datum main_arg)
{
	MemoryContext loopcxt;
	TimestampTz next_reconcile = 0;

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnection(NULL, NULL, 0);

	LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
	pgb_shared->launcher_pid = MyProcPid;
	pgb_shared->launcher_latch = MyLatch;
	LWLockRelease(pgb_shared->lock);
	before_shmem_exit(launcher_exit, (Datum) 0);
	look_into_all = !pgb_registry_load();

	loopcxt = AllocSetContextCreate(TopMemoryContext, "pgbatch launcher loop",
									ALLOCSET_DEFAULT_SIZES);
	for (;;)
	{
		MemoryContext oldcxt;
		int			rc;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
			next_reconcile = 0;
		}

		/* the databases and their executors: when woken, else every 10 s */
		if (GetCurrentTimestamp() >= next_reconcile)
		{
			MemoryContextReset(loopcxt);
			oldcxt = MemoryContextSwitchTo(loopcxt);
			reconcile();
			MemoryContextSwitchTo(oldcxt);
			next_reconcile = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), RECONCILE_MS);
		}
		check_held_up();

		rc = WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
					   HELD_UP_CHECK_MS, PG_WAIT_EXTENSION);
		if (rc & WL_LATCH_SET)
		{
			ResetLatch(MyLatch);
			next_reconcile = 0;
		}
	}
}

/*
 * pgb_register_launcher
 *		Registers the launcher; called from _PG_init while preloading.
 */
void
pgb_register_launcher(void)
{
	BackgroundWorker bgw;

	memset(&bgw, 0, sizeof(bgw));
	bgw.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	bgw.bgw_start_time = BgWorkerStart_RecoveryFinished;
	bgw.bgw_restart_time = 5;
	strlcpy(bgw.bgw_library_name, "pgbatch", BGW_MAXLEN);
	strlcpy(bgw.bgw_function_name, "pgbatch_launcher_main", BGW_MAXLEN);
	strlcpy(bgw.bgw_name, "pgbatch launcher", BGW_MAXLEN);
	strlcpy(bgw.bgw_type, "pgbatch launcher", BGW_MAXLEN);
	RegisterBackgroundWorker(&bgw);
}
