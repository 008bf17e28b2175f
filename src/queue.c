/*-------------------------------------------------------------------------
 *
 * queue.c
 *		The statement trigger that keeps batch.queue, the narrow copy of
 *		every item's state (status, stage, due time, error code) whose
 *		partial indexes the claims and the review queue read, in step with
 *		batch.items.
 *
 *		Inserted and deleted items are copied or removed from the
 *		statement's transition table in one statement each.  Changed items
 *		update their queue rows in place, chunk by chunk, from arrays read
 *		off the transition table: a plain UPDATE through the queue's
 *		primary key, which writes no row lock before its new version (an
 *		upsert does), and on the table's fillfactor the new version finds
 *		room on its own page.  Rows whose copied columns did not change are
 *		left alone.
 *
 * IDENTIFICATION
 *		src/queue.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "executor/tuptable.h"
#include "utils/datum.h"
#include "utils/memutils.h"
#include "utils/tuplestore.h"

#include "util.h"

PG_FUNCTION_INFO_V1(pgbatch_queue_items_1_4);

/*
 * Changed items per UPDATE: an executor's chunk goes in one, and a change of
 * a whole batch (cancel, rerun_stage) in arrays of bounded size.
 */
#define PGB_QUEUE_CHUNK 10000

/* The queue rows of a chunk of changed items, written in place. */
#define QUEUE_UPDATE \
	"UPDATE batch.queue q SET status = u.status, stage = u.stage," \
	" next_due = u.next_due, error_code = u.error_code" \
	" FROM (SELECT unnest($1) AS item_id, unnest($2) AS status," \
	"  unnest($3) AS stage, unnest($4) AS next_due," \
	"  unnest($5) AS error_code) u" \
	" WHERE q.item_id = u.item_id" \
	" AND (q.status, q.stage, q.next_due, q.error_code)" \
	"  IS DISTINCT FROM (u.status, u.stage, u.next_due, u.error_code)"

static SPIPlanPtr update_plan = NULL;

/* The copied columns of batch.items, by attribute number. */
typedef struct QueueAtts
{
	AttrNumber	id;
	AttrNumber	status;
	AttrNumber	stage;
	AttrNumber	next_due;
	AttrNumber	error_code;
} QueueAtts;

/* A chunk of changed items, as the columns of QUEUE_UPDATE. */
typedef struct QueueChunk
{
	PgbColumn	id;
	PgbColumn	status;
	PgbColumn	stage;
	PgbColumn	next_due;
	PgbColumn	error_code;
} QueueChunk;

/*
 * chunk_init
 *		Empty columns, in the current memory context.
 */
static void
chunk_init(QueueChunk *c)
{
	pgb_column_init(&c->id, INT8OID);
	pgb_column_init(&c->status, TEXTOID);
	pgb_column_init(&c->stage, TEXTOID);
	pgb_column_init(&c->next_due, TIMESTAMPTZOID);
	pgb_column_init(&c->error_code, TEXTOID);
}

/*
 * add_text
 *		Adds a text attribute of the slot's row, copied: the row goes when
 *		the slot moves on.
 */
static void
add_text(PgbColumn *col, TupleTableSlot *slot, AttrNumber att)
{
	bool		isnull;
	Datum		v = slot_getattr(slot, att, &isnull);

	pgb_column_add(col, isnull ? (Datum) 0 : datumCopy(v, false, -1), isnull);
}

/*
 * flush_chunk
 *		Writes a chunk's queue rows, each found by the queue's primary key.
 *		One generic plan serves every chunk, planned (and run) with
 *		sequential scans off (pgb_execute_keyed): from statistics taken
 *		while the queue held a few rows, a plan would read the queue whole
 *		for every chunk instead, however large it has grown since.  The
 *		caller is connected to SPI.
 */
static void
flush_chunk(QueueChunk *c)
{
	Datum		args[5];
	int			ret;

	if (c->id.n == 0)
		return;
	if (update_plan == NULL)
	{
		Oid			argtypes[5] = {INT8ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
		TIMESTAMPTZARRAYOID, TEXTARRAYOID};

		update_plan = pgb_prepare_opts(QUEUE_UPDATE, 5, argtypes,
									   CURSOR_OPT_GENERIC_PLAN);
	}
	args[0] = pgb_column_array(&c->id);
	args[1] = pgb_column_array(&c->status);
	args[2] = pgb_column_array(&c->stage);
	args[3] = pgb_column_array(&c->next_due);
	args[4] = pgb_column_array(&c->error_code);
	ret = pgb_execute_keyed(update_plan, args, NULL, false, 0);
	if (ret != SPI_OK_UPDATE)
		elog(ERROR, "pgbatch: updating the queue failed: %s",
			 SPI_result_code_string(ret));
}

/*
 * update_rows
 *		Writes the new state of every changed item into its queue row, in
 *		chunks of PGB_QUEUE_CHUNK, each built in a memory context of its
 *		own.  The caller is connected to SPI.
 */
static void
update_rows(Tuplestorestate *ts, TupleDesc desc, const QueueAtts *a)
{
	TupleTableSlot *slot = MakeSingleTupleTableSlot(desc, &TTSOpsMinimalTuple);
	MemoryContext chunkcxt = AllocSetContextCreate(CurrentMemoryContext,
												   "pgbatch queue chunk",
												   ALLOCSET_DEFAULT_SIZES);
	MemoryContext oldcxt = MemoryContextSwitchTo(chunkcxt);
	QueueChunk	c;

	chunk_init(&c);
	tuplestore_rescan(ts);
	while (tuplestore_gettupleslot(ts, true, false, slot))
	{
		bool		isnull;

		pgb_column_add(&c.id, slot_getattr(slot, a->id, &isnull), false);
		add_text(&c.status, slot, a->status);
		add_text(&c.stage, slot, a->stage);
		pgb_column_add(&c.next_due, slot_getattr(slot, a->next_due, &isnull), isnull);
		add_text(&c.error_code, slot, a->error_code);
		if (c.id.n == PGB_QUEUE_CHUNK)
		{
			flush_chunk(&c);
			MemoryContextReset(chunkcxt);
			chunk_init(&c);
		}
	}
	flush_chunk(&c);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(chunkcxt);
	ExecDropSingleTupleTableSlot(slot);
}

/*
 * pgbatch_queue_items_1_4
 *		batch_internal.queue_items(): AFTER INSERT, UPDATE or DELETE ... FOR
 *		EACH STATEMENT on batch.items, with the transition tables new_items
 *		(insert, update) and old_items (delete).
 */
Datum
pgbatch_queue_items_1_4(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	TupleDesc	desc;
	QueueAtts	a;
	int			ret;

	if (!CALLED_AS_TRIGGER(fcinfo) ||
		!TRIGGER_FIRED_FOR_STATEMENT(trigdata->tg_event) ||
		!TRIGGER_FIRED_AFTER(trigdata->tg_event))
		elog(ERROR, "pgbatch_queue_items: must be fired AFTER ... FOR EACH STATEMENT");

	desc = RelationGetDescr(trigdata->tg_relation);
	a.id = SPI_fnumber(desc, "id");
	a.status = SPI_fnumber(desc, "status");
	a.stage = SPI_fnumber(desc, "stage");
	a.next_due = SPI_fnumber(desc, "next_due");
	a.error_code = SPI_fnumber(desc, "error_code");
	if (a.id <= 0 || a.status <= 0 || a.stage <= 0 || a.next_due <= 0 || a.error_code <= 0)
		elog(ERROR, "pgbatch_queue_items: batch.items lacks a column batch.queue copies");

	SPI_connect();
	if (TRIGGER_FIRED_BY_UPDATE(trigdata->tg_event))
	{
		if (trigdata->tg_newtable == NULL)
			elog(ERROR, "pgbatch_queue_items: the update trigger has no new table");
		update_rows(trigdata->tg_newtable, desc, &a);
	}
	else
	{
		/* the whole statement's rows at once, read as a relation */
		if (SPI_register_trigger_data(trigdata) != SPI_OK_TD_REGISTER)
			elog(ERROR, "pgbatch_queue_items: registering the transition tables failed");
		if (TRIGGER_FIRED_BY_INSERT(trigdata->tg_event))
			ret = SPI_execute("INSERT INTO batch.queue"
							  " (item_id, batch_id, status, stage, next_due, error_code)"
							  " SELECT n.id, n.batch_id, n.status, n.stage, n.next_due, n.error_code"
							  " FROM new_items n", false, 0);
		else
			ret = SPI_execute("DELETE FROM batch.queue q"
							  " WHERE q.item_id = ANY (ARRAY(SELECT o.id FROM old_items o))",
							  false, 0);
		if (ret != SPI_OK_INSERT && ret != SPI_OK_DELETE)
			elog(ERROR, "pgbatch: keeping the queue failed: %s",
				 SPI_result_code_string(ret));
	}
	SPI_finish();
	return PointerGetDatum(NULL);
}
