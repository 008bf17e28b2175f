/*-------------------------------------------------------------------------
 *
 * executor_main.c
 *		The executor: a background worker that runs a database's batches.
 *
 *		The launcher (launcher.c) starts pgbatch.workers executors in each
 *		database that has the extension, each in a shared-memory slot of
 *		its own (shmem.c).  An executor connects to its database as the
 *		bootstrap superuser, with a search_path no role can capture, and
 *		loops:
 *
 *		1. It waits, on one WaitEventSet, for its latch (set when work is
 *		   queued at commit, or when an endpoint frees a slot), for the
 *		   sockets of its HTTP requests in flight (http.c) and for the
 *		   earliest timer: libcurl's, the next poll, the next due item.
 *		2. It collects the requests that finished.
 *		3. In one short transaction it records those results (stage_http.c),
 *		   takes back items whose executor is gone or whose lease ran out
 *		   (executor 0 only, reclaim.c), and claims due items, taking turns
 *		   between owners and batches (claim_fair below), to run them
 *		   (item_exec.c): SQL stages run right there; HTTP stages are
 *		   recorded as running under this executor's lease.
 *		4. After that transaction commits, the claimed requests go to the
 *		   HTTP transport, which sends them as their endpoints' shared
 *		   limits let them go (endpoint.c).
 *
 *		No transaction is open while a request is in flight.  An error is
 *		caught, reported and survived after a pause: the transaction rolls
 *		back, its requests are dropped unsent, and the results not yet
 *		recorded wait for the next try.  The executor stays idle while the
 *		database's pgbatch is older than this library, or a pg_restore is
 *		loading it, and exits when the extension is dropped (the launcher
 *		starts it again after CREATE EXTENSION).  At exit its transfers are
 *		abandoned and the endpoint slots it held are given back; the items
 *		it held are taken back by the others.
 *
 *		An extra executor, which the launcher starts when every executor of
 *		the database is held up in slow stages, claims only the items of
 *		owners no other executor serves, and exits once it has had nothing
 *		to do for PGB_EXTRA_IDLE_MS.
 *
 *		batch.run() runs the same item path in a session (session_run.c);
 *		the two share no state but what is passed in a PgbExecState.
 *
 * IDENTIFICATION
 *		src/executor_main.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <curl/curl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "access/xact.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/backend_status.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "claim.h"
#include "endpoint.h"
#include "events.h"
#include "executor_main.h"
#include "guc.h"
#include "http.h"
#include "item_exec.h"
#include "pgbatch.h"
#include "reclaim.h"
#include "shmem.h"
#include "stage_http.h"
#include "util.h"


/*
 * How often executor 0 of a database looks for running items whose lease ran
 * out; it looks at once when another executor has exited.
 */
#define RECLAIM_INTERVAL_MS	30000

/*
 * How long a background executor runs claimed items before it records them,
 * commits and claims again (taking turns between owners): stages that take
 * long leave the executor to the next owner's items between two of them.
 */
#define PGB_SLICE_MS	500
/* an extra executor with nothing to do for this long exits */
#define PGB_EXTRA_IDLE_MS	5000

/*
 * The executor process's own state, across its transactions.  (Each
 * transaction's work has its own PgbExecState; nothing here is shared with
 * batch.run().)
 */
typedef struct PgbExecutorProcess
{
	/* finished requests waiting to be recorded, kept across a failed transaction */
	PgbHttpRequest *results;
	/* the executor state of the transaction in progress (its prepared requests) */
	PgbExecState *current;
	/* the extension in its database is at this library's version */
	bool		schema_current;
} PgbExecutorProcess;

static PgbExecutorProcess executor = {NULL, NULL, false};

static SPIPlanPtr active_plan = NULL;
static SPIPlanPtr due_plan = NULL;

/* when this executor last ran items (an extra one exits when idle) */
static TimestampTz worked_at = 0;


/*
 * owner_busy_elsewhere
 *		True if another executor of this database runs stages of the role
 *		now (read without the lock: a hint for taking turns, nothing more).
 */
static bool
owner_busy_elsewhere(Oid owner)
{
	PgbWorkerSlot *mine = pgb_my_slot();
	int			i;

	if (!OidIsValid(owner))
		return false;
	for (i = 0; i < PGB_MAX_SLOTS; i++)
	{
		PgbWorkerSlot *slot = &pgb_shared->slots[i];

		if (slot != mine && slot->in_use && slot->dboid == MyDatabaseId &&
			slot->busy_owner == owner)
			return true;
	}
	return false;
}

/*
 * claim_fair
 *		Claims up to 'limit' due items and executes them, taking turns
 *		between the owners of the batches that have waiting items (starting
 *		after the owner this executor served last, and with the owners no
 *		other executor is serving), then between each owner's batches, so
 *		that neither a huge batch nor one team's slow stages starve the
 *		others.  Within an owner's turn, batches of a higher priority come
 *		first, and a lower one gets items only when the higher ones had
 *		fewer due than their share.  Stops starting items after its time
 *		slice (PGB_SLICE_MS).
 *		Returns how many items it ran; *more says whether it should claim
 *		again at once.
 */
static int
claim_fair(PgbExecState *ex, int limit, bool *more)
{
	static Oid	last_owner = InvalidOid;
	PgbWorkerSlot *mine = pgb_my_slot();
	int64	   *batches;
	Oid		   *owners;
	int32	   *priorities;
	bool	   *busy;
	int			nbatches;
	int			claimed = 0;
	int			per_batch;
	int			start = 0;
	int			pass;
	uint64		k;

	if (active_plan == NULL)
		active_plan = pgb_prepare("SELECT a.batch_id, b.owner::text, b.priority FROM "
								  PGB_ACTIVE_BATCHES
								  " JOIN batch.batches b ON b.id = a.batch_id"
								  " ORDER BY b.owner, b.priority DESC, a.batch_id",
								  0, NULL);
	if (pgb_execute(active_plan, NULL, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "pgbatch: listing batches with waiting items failed");
	nbatches = (int) SPI_processed;
	batches = palloc(sizeof(int64) * Max(nbatches, 1));
	owners = palloc(sizeof(Oid) * Max(nbatches, 1));
	priorities = palloc(sizeof(int32) * Max(nbatches, 1));
	busy = palloc(sizeof(bool) * Max(nbatches, 1));
	for (k = 0; k < SPI_processed; k++)
	{
		bool		isnull;

		batches[k] = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[k],
												 SPI_tuptable->tupdesc, 1, &isnull));
		owners[k] = get_role_oid(SPI_getvalue(SPI_tuptable->vals[k],
											  SPI_tuptable->tupdesc, 2), true);
		priorities[k] = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[k],
													SPI_tuptable->tupdesc, 3, &isnull));
		busy[k] = owner_busy_elsewhere(owners[k]);
		/* start with the first batch of the owner after the one served last */
		if (start == 0 && k > 0 && owners[k - 1] == last_owner && owners[k] != last_owner)
			start = (int) k;
	}
	SPI_freetuptable(SPI_tuptable);
	*more = false;
	if (nbatches == 0)
		return 0;

	ex->slice_end = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), PGB_SLICE_MS);
	ex->sliced = false;
	per_batch = Max((limit + nbatches - 1) / nbatches, 10);

	/* first the owners no other executor serves, then the others */
	for (pass = 0; pass < 2 && claimed < limit && !ex->sliced; pass++)
	{
		int			i;
		int			full = -1;	/* a batch that had its whole share due */

		for (i = 0; i < nbatches && claimed < limit && !ex->sliced; i++)
		{
			int			b = (start + i) % nbatches;
			PgbClaimCursor cursor = {DT_NOBEGIN, 0};
			PgbWorkItem *items;
			int			want = Min(per_batch, limit - claimed);
			int			n;

			if (busy[b] != (pass == 1))
				continue;
			/* an extra executor is there for the owners nobody serves */
			if (busy[b] && mine->extra)
				continue;
			/* the owner's batches of a higher priority had enough */
			if (full >= 0 && owners[full] == owners[b] &&
				priorities[full] > priorities[b])
				continue;
			n = pgb_claim_locked(batches[b], InvalidOid, GetCurrentTimestamp(),
								 want, &cursor, &items);
			if (n > 0)
			{
				mine->busy_since = GetCurrentTimestamp();
				mine->busy_owner = owners[b];
				pgb_execute_claimed(ex, items, n);
				mine->busy_owner = InvalidOid;
				last_owner = owners[b];
				worked_at = GetCurrentTimestamp();
			}
			if (n == want || ex->sliced)
				*more = true;
			if (n == want)
				full = b;
			claimed += n;
		}
	}
	return claimed;
}

/*
 * next_due_later
 *		When the next item that is not due yet becomes due (0 if none).
 */
static TimestampTz
next_due_later(void)
{
	Datum		args[1];
	TimestampTz result = 0;
	bool		isnull;
	Datum		d;

	if (due_plan == NULL)
	{
		Oid			argtypes[1] = {TIMESTAMPTZOID};

		due_plan = pgb_prepare("SELECT min(d.next_due) FROM " PGB_ACTIVE_BATCHES
							   " CROSS JOIN LATERAL (SELECT q.next_due FROM batch.queue q"
							   "  WHERE q.batch_id = a.batch_id AND q.status = 'pending'"
							   "  AND q.next_due > $1 ORDER BY q.next_due LIMIT 1) d",
							   1, argtypes);
	}
	args[0] = TimestampTzGetDatum(GetCurrentTimestamp());
	if (pgb_execute_keyed(due_plan, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "pgbatch: reading the next due time failed");
	if (SPI_processed == 1)
	{
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		if (!isnull)
			result = DatumGetTimestampTz(d);
	}
	SPI_freetuptable(SPI_tuptable);
	return result;
}

/*
 * executor_cleanup
 *		before_shmem_exit callback: abandon the transfers, free libcurl, and
 *		give back the endpoint slots this executor held (before its own slot
 *		goes, see pgb_slot_attach).
 */
static void
executor_cleanup(int code, Datum arg)
{
	pgb_http_free_list(executor.results);
	executor.results = NULL;
	pgb_http_shutdown();
	curl_global_cleanup();
	pgb_endpoint_release_all();
}

/*
 * check_schema_version
 *		True if the database's pgbatch is at the version this library is
 *		built for.  If not (the library was updated and ALTER EXTENSION
 *		pgbatch UPDATE has not run yet), the executors stay idle instead of
 *		failing on objects they do not know, and executor 0 says so once.
 *		Once current, a version stays current (there is no downgrade).
 */
static bool
check_schema_version(void)
{
	static bool warned = false;
	char	   *version = NULL;

	if (SPI_execute("SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'pgbatch'",
					true, 1) != SPI_OK_SELECT)
		elog(ERROR, "pgbatch: reading the extension's version failed");
	if (SPI_processed == 1)
		version = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	SPI_freetuptable(SPI_tuptable);
	if (version != NULL && strcmp(version, PGB_VERSION) == 0)
		return true;
	if (!warned && pgb_my_slot()->worker == 0)
		ereport(LOG,
				(errmsg("pgbatch in database \"%s\" is at version %s, older than its library (%s): its executors stay idle",
						get_database_name(MyDatabaseId), version ? version : "?", PGB_VERSION),
				 errhint("Run ALTER EXTENSION pgbatch UPDATE in that database.")));
	warned = true;
	return false;
}

/*
 * restore_in_progress
 *		True while a pg_restore session is connected to this database: its
 *		data is loading, table by table, and items may be there before
 *		their attempts, outputs or sequences are.  The executors take no
 *		work until it has gone (executor 0 says so once per restore), and
 *		then resume the restored batches: items restored as running are
 *		taken back like those of any executor that is gone.  Looked up at
 *		most once a second (it copies every backend's status).
 */
static bool
restore_in_progress(void)
{
	static bool said = false;
	static bool restoring = false;
	static TimestampTz checked_at = 0;
	TimestampTz now = GetCurrentTimestamp();
	int			n;
	int			i;

	if (checked_at != 0 && !TimestampDifferenceExceeds(checked_at, now, 1000))
		return restoring;
	checked_at = now;
	restoring = false;
	n = pgstat_fetch_stat_numbackends();
	for (i = 1; i <= n; i++)
	{
		PgBackendStatus *be = &pgstat_fetch_stat_local_beentry(i)->backendStatus;

		if (be->st_databaseid == MyDatabaseId && be->st_procpid != MyProcPid &&
			strcmp(be->st_appname, "pg_restore") == 0)
		{
			if (!said && pgb_my_slot()->worker == 0)
				ereport(LOG,
						(errmsg("pgbatch: pg_restore is loading database \"%s\": its executors wait for it to finish",
								get_database_name(MyDatabaseId))));
			said = true;
			restoring = true;
			return true;
		}
	}
	said = false;
	return false;
}

/*
 * report_state
 *		Tells the launcher and batch.health what this executor found in its
 *		database (the extension, the schema older than the library,
 *		pg_restore loading it), in the database's shared flags; writes them
 *		only on a change.
 */
static void
report_state(bool old_schema, bool restoring)
{
	static int	reported = -1;
	int			state = (old_schema ? 1 : 0) | (restoring ? 2 : 0);
	PgbDbFlags *f;
	bool		confirmed = false;

	if (state == reported)
		return;
	LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
	f = pgb_db_flags_find(MyDatabaseId, true);
	if (f)
	{
		confirmed = f->tentative;
		f->registered = true;
		f->tentative = false;
		f->old_schema = old_schema;
		f->restoring = restoring;
	}
	LWLockRelease(pgb_shared->lock);
	/* the launcher starts the others, and writes its registry */
	if (confirmed && pgb_shared->launcher_latch)
		SetLatch(pgb_shared->launcher_latch);
	reported = state;
}

/* What one loop of the executor asks of its transaction. */
typedef struct IterationPlan
{
	bool		reclaim;
	int			claim_limit;	/* 0: do not claim */
} IterationPlan;

/*
 * run_transaction
 *		One short transaction: record results, take back orphans, claim and
 *		execute.  Sets *more (claim again at once) and *next_due; returns
 *		false if the extension is gone from this database.  After commit,
 *		the requests of the items it claimed go to the HTTP layer.
 */
static bool
run_transaction(IterationPlan *plan, bool *more, TimestampTz *next_due)
{
	PgbExecState ex;
	bool		present;
	bool		working;		/* present, and at this library's version */
	bool		restoring;

	*more = false;
	*next_due = 0;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	pgstat_report_activity(STATE_RUNNING, "pgbatch executor: recording and claiming");

	present = OidIsValid(get_extension_oid("pgbatch", true));
	if (present && !executor.schema_current)
		executor.schema_current = check_schema_version();
	working = present && executor.schema_current;
	if (present && !working)
		report_state(true, false);
	if (working)
	{
		pgb_my_slot()->busy_owner = InvalidOid; /* after an error, too */
		pgb_exec_init(&ex, CurrentMemoryContext, true);
		executor.current = &ex;
		ex.http.lease_until = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														  (int64) pgb_lease_duration_s * 1000);
		/*
		 * The results go into the tables with the first chunk claimed, in
		 * one statement, or on their own before anything reads what they
		 * change (a reclaim, the next due time).
		 */
		pgb_exec_carry(&ex, executor.results);
		pgb_http_pump();
		restoring = restore_in_progress();
		report_state(false, restoring);
		if (plan->reclaim && !restoring)
		{
			pgb_exec_flush_carried(&ex);
			pgb_reclaim(GetUserId());
		}
		if (plan->claim_limit > 0 && !restoring)
		{
			(void) claim_fair(&ex, plan->claim_limit, more);
			pgb_exec_flush_carried(&ex);
			/* items deferred for a busy endpoint wait for its requests to end */
			if (ex.stats.items_deferred > 0)
				*more = false;
			if (!*more)
				*next_due = next_due_later();
		}
		pgb_exec_flush_carried(&ex);
		/* a retry or a resume scheduled here is due before the next poll */
		if (ex.stats.earliest_due > 0 &&
			(*next_due == 0 || ex.stats.earliest_due < *next_due))
			*next_due = ex.stats.earliest_due;
		pgb_exec_done(&ex);
		pgb_http_pump();
	}

	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	pgstat_report_stat(false);
	pgstat_report_activity(STATE_IDLE, NULL);

	/* committed: the results are recorded, the claimed requests may go */
	executor.current = NULL;
	pgb_http_free_list(executor.results);
	executor.results = NULL;
	if (working)
		pgb_http_enqueue(ex.http.prepared);

	/* ends that two executors' transactions may have hidden from each other */
	if (working && pgb_missed_ends_pending())
	{
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, "pgbatch executor: announcing batch ends");
		pgb_announce_missed_ends();
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	return present;
}

/*
 * executor_malloc_settings
 *		Keeps the memory an iteration frees for the next one.  With glibc's
 *		defaults, the blocks a chunk's statements and libcurl's handles take
 *		and free went back to the kernel and were faulted in again by the
 *		next iteration: 1.0 page fault an HTTP item on an executor that had
 *		run for a while, against 0.2 with these settings (minflt in
 *		/proc/PID/stat, batches of 40,000).
 *		Up to 16 MB of free heap stays with the process, and a block of 4 MB
 *		or more is still mapped and unmapped on its own, so the resident size
 *		keeps following the work in flight.
 */
static void
executor_malloc_settings(void)
{
#ifdef __GLIBC__
	mallopt(M_MMAP_THRESHOLD, 4 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 16 * 1024 * 1024);
#endif
}

/*
 * pgbatch_executor_main
 *		Entry point of an executor worker: bgw_main_arg is its shared-memory
 *		slot, bgw_extra its database's OID.
 */
void
pgbatch_executor_main(Datum main_arg)
{
	int			slot = DatumGetInt32(main_arg);
	Oid			dboid;
	MemoryContext loopcxt;
	TimestampTz next_claim = 0;
	TimestampTz next_reclaim = 0;
	bool		claim_wanted = true;
	int			failures = 0;
	uint32		exits_seen = 0;
	volatile uint32 exits_now = 0;

	memcpy(&dboid, MyBgworkerEntry->bgw_extra, sizeof(Oid));
	executor_malloc_settings();

	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();

	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);

	/*
	 * Nothing a role creates in a schema on the default path may capture a
	 * name this superuser session resolves; stage functions see the same
	 * path as under batch.run().
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	pgb_slot_attach(slot, dboid);
	pgstat_report_appname("pgbatch executor");

	loopcxt = AllocSetContextCreate(TopMemoryContext, "pgbatch executor loop",
									ALLOCSET_DEFAULT_SIZES);
	worked_at = GetCurrentTimestamp();
	pgb_http_init();
	before_shmem_exit(executor_cleanup, (Datum) 0);

	for (;;)
	{
		TimestampTz now;
		TimestampTz dispatch_at;
		IterationPlan plan = {false, 0};
		PgbHttpRequest *req;
		long		timeout_ms;
		int			capacity;

		MemoryContextSwitchTo(loopcxt);
		now = GetCurrentTimestamp();

		/*
		 * An extra executor that has had nothing to do for a while goes,
		 * unless the others are still held up (it would be started again).
		 */
		if (pgb_my_slot()->extra && pgb_http_busy() == 0 && executor.results == NULL &&
			TimestampDifferenceExceeds(worked_at, now, PGB_EXTRA_IDLE_MS) &&
			!pgb_held_up(MyDatabaseId, pgb_my_slot(), now, NULL))
			proc_exit(0);

		/* send what the endpoints let go; wait for the rest */
		dispatch_at = pgb_http_dispatch();
		capacity = pgb_max_http_in_flight * 2 - pgb_http_busy();

		timeout_ms = pgb_poll_interval_ms;
		if (pgb_enabled && capacity > 0)
		{
			if (claim_wanted)
				timeout_ms = 0;
			else if (next_claim > 0)
				timeout_ms = Min(timeout_ms, Max(0, (next_claim - now) / 1000));
		}
		if (dispatch_at > 0)
			timeout_ms = Min(timeout_ms, Max(1, (dispatch_at - now) / 1000));
		/* results to record, also requests a dispatch ended at once */
		if (executor.results != NULL || pgb_http_has_done())
			timeout_ms = 0;
		if (pgb_my_slot()->worker == 0)
			timeout_ms = Min(timeout_ms, Max(0, (next_reclaim - now) / 1000));

		if (pgb_http_wait(timeout_ms))
		{
			ResetLatch(MyLatch);
			claim_wanted = true;
		}
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/* finished requests wait in 'results' until they are recorded */
		while ((req = pgb_http_take_done()) != NULL)
		{
			req->next = executor.results;
			executor.results = req;
			/* a request slot is free again: look for more work */
			claim_wanted = true;
			if (req->state == PGB_HTTP_DONE && !req->aborted)
				pgb_my_slot()->requests++;
		}
		/* their places go to waiting requests now, not after the recording */
		if (executor.results != NULL)
			(void) pgb_http_dispatch();
		pgb_my_slot()->in_flight = pgb_http_in_flight();

		now = GetCurrentTimestamp();
		if (pgb_my_slot()->worker == 0 &&
			(now >= next_reclaim ||
			 pg_atomic_read_u32(&pgb_shared->exits) != exits_seen))
			plan.reclaim = true;
		capacity = pgb_max_http_in_flight * 2 - pgb_http_busy();
		if (pgb_enabled && capacity > 0 &&
			(claim_wanted || (next_claim > 0 && now >= next_claim)))
			plan.claim_limit = Min(capacity, pgb_claim_batch_size);
		if (executor.results == NULL && !plan.reclaim && plan.claim_limit == 0)
			continue;

		MemoryContextReset(loopcxt);
		exits_now = pg_atomic_read_u32(&pgb_shared->exits);
		PG_TRY();
		{
			MemoryContext oldcxt = MemoryContextSwitchTo(loopcxt);
			bool		more;
			TimestampTz next_due;

			if (!run_transaction(&plan, &more, &next_due))
			{
				/* DROP EXTENSION (or never installed): stop until told */
				LWLockAcquire(pgb_shared->lock, LW_EXCLUSIVE);
				{
					PgbDbFlags *f = pgb_db_flags_find(MyDatabaseId, true);

					if (f)
						f->registered = f->tentative = false;
				}
				LWLockRelease(pgb_shared->lock);
				MemoryContextSwitchTo(oldcxt);
				proc_exit(0);
			}
			MemoryContextSwitchTo(oldcxt);

			if (plan.reclaim)
			{
				exits_seen = exits_now;
				next_reclaim = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														   RECLAIM_INTERVAL_MS);
			}
			if (plan.claim_limit > 0)
			{
				claim_wanted = more;
				next_claim = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
														 pgb_poll_interval_ms);
			}
			if (next_due > 0 && (next_claim == 0 || next_due < next_claim))
				next_claim = next_due;
			failures = 0;
		}
		PG_CATCH();
		{
			/* report, roll back, and carry on after a pause */
			MemoryContextSwitchTo(loopcxt);
			EmitErrorReport();
			FlushErrorState();
			AbortCurrentTransaction();
			pgstat_report_activity(STATE_IDLE, NULL);
			/* the claim rolled back: its requests must not go */
			if (executor.current)
				pgb_http_free_list(executor.current->http.prepared);
			executor.current = NULL;
			failures++;
			if (failures >= 5)
			{
				/* results that cannot be recorded: their leases will run out */
				pgb_http_free_list(executor.results);
				executor.results = NULL;
			}
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 Min(1000L * failures, 10000L), PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
		PG_END_TRY();
	}
}
