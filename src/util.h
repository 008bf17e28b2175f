/*-------------------------------------------------------------------------
 *
 * util.h
 *		Helpers shared by the pgbatch sources (util.c): growable Datum
 *		columns that become SQL arrays, saved SPI plans, jsonb helpers.
 *
 * IDENTIFICATION
 *		src/util.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGB_UTIL_H
#define PGB_UTIL_H

#include "executor/spi.h"
#include "utils/jsonb.h"

/* A growable column of Datums, turned into a SQL array for unnest(). */
typedef struct PgbColumn
{
	Oid			elemtype;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			n;
	int			cap;
	Datum	   *values;
	bool	   *nulls;
} PgbColumn;

extern void pgb_column_init(PgbColumn *col, Oid elemtype);
extern void pgb_column_add(PgbColumn *col, Datum value, bool isnull);
extern Datum pgb_column_array(PgbColumn *col);
extern SPIPlanPtr pgb_prepare(const char *sql, int nargs, Oid *argtypes);
extern SPIPlanPtr pgb_prepare_opts(const char *sql, int nargs, Oid *argtypes,
								   int options);
extern int	pgb_execute(SPIPlanPtr plan, Datum *args, const char *nulls,
						bool read_only, long tcount);
extern int	pgb_execute_keyed(SPIPlanPtr plan, Datum *args, const char *nulls,
							  bool read_only, long tcount);
extern Jsonb *pgb_jsonb_constant(const char *literal);
extern Datum pgb_text_datum(const char *s);
extern Jsonb *pgb_jsonb_set_key(Jsonb *obj, const char *key, Jsonb *value);

#endif							/* PGB_UTIL_H */
