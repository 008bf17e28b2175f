/*-------------------------------------------------------------------------
 *
 * validate.c
 *		Input validation at the door: why a submitted element cannot become
 *		a runnable item (not a JSON object, over pgbatch.max_payload_size,
 *		a required key missing or blank).  Called once per element by
 *		batch.submit() and batch.add_items(), so it is C.
 *
 * IDENTIFICATION
 *		src/validate.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/detoast.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "parser/scansup.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"

#include "guc.h"

PG_FUNCTION_INFO_V1(pgbatch_invalid_reason);

/*
 * is_blank
 *		Whether a JSON value counts as blank for a required key: JSON null,
 *		or a string of nothing but white space.
 */
static bool
is_blank(JsonbValue *v)
{
	int			i;

	if (v->type == jbvNull)
		return true;
	if (v->type != jbvString)
		return false;
	for (i = 0; i < v->val.string.len; i++)
		if (!scanner_isspace(v->val.string.val[i]))
			return false;
	return true;
}

/*
 * pgbatch_invalid_reason
 *		batch._invalid_reason(e jsonb, required text[], max_size integer):
 *		NULL when e can become a runnable item, otherwise a sentence saying
 *		why not.  The size is the element's jsonb size, as pg_column_size()
 *		reports it.
 */
Datum
pgbatch_invalid_reason(PG_FUNCTION_ARGS)
{
	Jsonb	   *jb;
	Size		size;
	int32		max_size = PG_ARGISNULL(2) ? pgb_max_payload_size : PG_GETARG_INT32(2);
	StringInfoData missing;
	int			nmissing = 0;

	if (PG_ARGISNULL(0))
		PG_RETURN_TEXT_P(cstring_to_text("item must be a JSON object, not SQL NULL"));

	size = toast_datum_size(PG_GETARG_DATUM(0));
	jb = PG_GETARG_JSONB_P(0);
	if (!JB_ROOT_IS_OBJECT(jb))
	{
		text	   *type = DatumGetTextPP(DirectFunctionCall1(jsonb_typeof,
															  JsonbPGetDatum(jb)));

		PG_RETURN_TEXT_P(cstring_to_text(psprintf("item must be a JSON object, not %s",
												  text_to_cstring(type))));
	}
	if (size > (Size) max_size)
		PG_RETURN_TEXT_P(cstring_to_text(psprintf("item is %zu bytes, over the limit of %d bytes (pgbatch.max_payload_size)",
												  size, max_size)));

	if (PG_ARGISNULL(1))
		PG_RETURN_NULL();

	initStringInfo(&missing);
	{
		ArrayType  *required = PG_GETARG_ARRAYTYPE_P(1);
		Datum	   *keys;
		bool	   *nulls;
		int			nkeys;
		int			i;

		deconstruct_array(required, TEXTOID, -1, false, TYPALIGN_INT,
						  &keys, &nulls, &nkeys);
		for (i = 0; i < nkeys; i++)
		{
			text	   *key;
			JsonbValue *v;

			if (nulls[i])
				continue;
			key = DatumGetTextPP(keys[i]);
			v = getKeyJsonValueFromContainer(&jb->root, VARDATA_ANY(key),
											 VARSIZE_ANY_EXHDR(key), NULL);
			if (v == NULL || is_blank(v))
			{
				appendStringInfo(&missing, "%s\"%s\"", nmissing > 0 ? ", " : "",
								 text_to_cstring(key));
				nmissing++;
			}
		}
	}
	if (nmissing == 0)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(psprintf("required key%s %s missing or blank",
											  nmissing > 1 ? "s" : "", missing.data)));
}
