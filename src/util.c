/*-------------------------------------------------------------------------
 *
 * util.c
 *		Helpers shared by the pgbatch sources: growable Datum columns that
 *		become SQL arrays (so a chunk of outcomes is recorded with one
 *		unnest() statement), saved SPI plans, and small jsonb helpers.
 *
 * IDENTIFICATION
 *		src/util.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "util.h"

/*
 * pgb_column_init
 *		Prepares an empty column of the given element type in the current
 *		memory context.
 */
void
pgb_column_init(PgbColumn *col, Oid elemtype)
{
	col->elemtype = elemtype;
	get_typlenbyvalalign(elemtype, &col->typlen, &col->typbyval, &col->typalign);
	col->n = 0;
	col->cap = 16;
	col->values = palloc(sizeof(Datum) * col->cap);
	col->nulls = palloc(sizeof(bool) * col->cap);
}

/*
 * pgb_column_add
 *		Appends a value (or a NULL) to a column.  By-reference values are
 *		not copied: they must live as long as the column.
 */
void
pgb_column_add(PgbColumn *col, Datum value, bool isnull)
{
	if (col->n == col->cap)
	{
		col->cap *= 2;
		col->values = repalloc(col->values, sizeof(Datum) * col->cap);
		col->nulls = repalloc(col->nulls, sizeof(bool) * col->cap);
	}
	col->values[col->n] = isnull ? (Datum) 0 : value;
	col->nulls[col->n] = isnull;
	col->n++;
}

/*
 * pgb_column_array
 *		The column as a one-dimensional SQL array Datum.
 */
Datum
pgb_column_array(PgbColumn *col)
{
	int			dims[1];
	int			lbs[1];

	dims[0] = col->n;
	lbs[0] = 1;
	return PointerGetDatum(construct_md_array(col->values, col->nulls, 1,
											  dims, lbs, col->elemtype,
											  col->typlen, col->typbyval,
											  col->typalign));
}

/*
 * pgb_prepare
 *		Prepares a statement and keeps the plan for the life of the backend.
 *		Callers cache the result in a static variable; plan invalidation
 *		(for instance after the extension is dropped and re-created) is
 *		handled by SPI, which re-plans saved plans from their source text.
 */
SPIPlanPtr
pgb_prepare(const char *sql, int nargs, Oid *argtypes)
{
	return pgb_prepare_opts(sql, nargs, argtypes, 0);
}

/*
 * pgb_prepare_opts
 *		pgb_prepare() with cursor options: CURSOR_OPT_CUSTOM_PLAN for
 *		statements whose best plan depends on how big batch.items has grown,
 *		so that a plan made while it was small is never kept;
 *		CURSOR_OPT_GENERIC_PLAN for those whose custom plans go wrong on a
 *		batch the statistics do not know yet (claim.c).
 */
SPIPlanPtr
pgb_prepare_opts(const char *sql, int nargs, Oid *argtypes, int options)
{
	SPIPlanPtr	plan = SPI_prepare_cursor(sql, nargs, argtypes, options);

	if (plan == NULL)
		elog(ERROR, "pgbatch: SPI_prepare failed: %s",
			 SPI_result_code_string(SPI_result));
	if (SPI_keepplan(plan) != 0)
		elog(ERROR, "pgbatch: SPI_keepplan failed");
	return plan;
}

/*
 * pgb_execute
 *		SPI_execute_plan() that leaves the caller in the memory context it
 *		was in.  SPI returns to its own procedure context, which lives until
 *		SPI_finish(); whatever the caller allocates after a query would pile
 *		up there instead of in the per-chunk context it means to reset.
 */
int
pgb_execute(SPIPlanPtr plan, Datum *args, const char *nulls, bool read_only,
			long tcount)
{
	MemoryContext cxt = CurrentMemoryContext;
	int			ret = SPI_execute_plan(plan, args, nulls, read_only, tcount);

	MemoryContextSwitchTo(cxt);
	return ret;
}

/*
 * pgb_execute_keyed
 *		pgb_execute() for a statement that reads only rows it finds by key
 *		or through a partial index of unfinished work: a claim, a due time,
 *		the outputs or the state of given items, the leases.  It runs with
 *		sequential scans, hash and merge joins and materialization disabled
 *		(for the statement only), and so does any planning the plan cache
 *		does for it then: a plan made from statistics taken while the tables
 *		held a few rows would read them whole instead (a claim joining the
 *		queue and the items, each read whole: 21 s for a chunk of 100 among
 *		20,000 items; an update of a chunk's items by hashing the whole
 *		primary key of batch.items: test/t/025_plans.pl), and a generic plan
 *		would stay so as the tables grow, until the next ANALYZE.  None of
 *		these statements reads more than a chunk's rows, for which a nested
 *		loop probing an index once per row is always the way.
 */
int
pgb_execute_keyed(SPIPlanPtr plan, Datum *args, const char *nulls, bool read_only,
				  long tcount)
{
	static const char *const off[] = {
		"enable_seqscan", "enable_hashjoin", "enable_mergejoin", "enable_material"
	};
	int			nestlevel = NewGUCNestLevel();
	int			ret;
	int			i;

	for (i = 0; i < lengthof(off); i++)
		(void) set_config_option(off[i], "off", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
	ret = pgb_execute(plan, args, nulls, read_only, tcount);
	AtEOXact_GUC(true, nestlevel);
	return ret;
}

/*
 * pgb_jsonb_constant
 *		The jsonb for a constant literal ("{}", "null"), parsed once per
 *		backend and kept in TopMemoryContext.  Callers must not modify it.
 */
Jsonb *
pgb_jsonb_constant(const char *literal)
{
	static Jsonb *empty_object = NULL;
	static Jsonb *null_value = NULL;
	Jsonb	  **slot;

	if (strcmp(literal, "{}") == 0)
		slot = &empty_object;
	else if (strcmp(literal, "null") == 0)
		slot = &null_value;
	else
		elog(ERROR, "pgbatch: no cached jsonb constant for %s", literal);

	if (*slot == NULL)
	{
		MemoryContext oldcxt = MemoryContextSwitchTo(TopMemoryContext);

		*slot = DatumGetJsonbPCopy(DirectFunctionCall1(jsonb_in,
													   CStringGetDatum(literal)));
		MemoryContextSwitchTo(oldcxt);
	}
	return *slot;
}

/*
 * pgb_text_datum
 *		A text Datum for a C string, or (Datum) 0 for NULL.
 */
Datum
pgb_text_datum(const char *s)
{
	return s ? CStringGetTextDatum(s) : (Datum) 0;
}

/*
 * pgb_jsonb_set_key
 *		obj || {key: value}, where obj may be NULL (an empty object).
 */
Jsonb *
pgb_jsonb_set_key(Jsonb *obj, const char *key, Jsonb *value)
{
	Datum		path[1];
	ArrayType  *patharr;

	if (obj == NULL)
		obj = pgb_jsonb_constant("{}");
	path[0] = CStringGetTextDatum(key);
	patharr = construct_array(path, 1, TEXTOID, -1, false, TYPALIGN_INT);
	return DatumGetJsonbP(DirectFunctionCall4(jsonb_set,
											  JsonbPGetDatum(obj),
											  PointerGetDatum(patharr),
											  JsonbPGetDatum(value),
											  BoolGetDatum(true)));
}
