/*-------------------------------------------------------------------------
 *
 * llm_tokens.c
 *		LLM tokens of a request, for an endpoint's tokens_per_minute and the
 *		provider's token headers.  Before a request goes, its tokens are
 *		estimated: a token for every 4 bytes of its body, plus the most it
 *		asks the model to write (max_tokens, max_completion_tokens,
 *		max_output_tokens or maxOutputTokens), since providers count that
 *		too.  After its answer, the usage the response reports replaces the
 *		estimate: usage.total_tokens (OpenAI and its kind),
 *		usage.input_tokens + usage.output_tokens (Anthropic), or
 *		usageMetadata.totalTokenCount (Gemini).
 *
 * IDENTIFICATION
 *		src/llm_tokens.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "fmgr.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "llm_tokens.h"

/* the bytes of a body that make one token, roughly, in English and JSON */
#define PGB_BYTES_PER_TOKEN	4

/*
 * output_limit
 *		The largest "key": number in the body for one of the names of the
 *		output limit, or 0.  A plain text scan: the body is our own JSON,
 *		where a key inside a string would have its quotes escaped.
 */
static int64
output_limit(const char *body)
{
	static const char *const keys[] = {
		"\"max_tokens\"", "\"max_completion_tokens\"",
		"\"max_output_tokens\"", "\"maxOutputTokens\""
	};
	int64		most = 0;
	int			k;

	for (k = 0; k < lengthof(keys); k++)
	{
		const char *p = body;
		size_t		len = strlen(keys[k]);

		while ((p = strstr(p, keys[k])) != NULL)
		{
			const char *v = p + len;

			p += len;
			if (p - len > body && p[-len - 1] == '\\')
				continue;
			while (*v == ' ')
				v++;
			if (*v++ != ':')
				continue;
			while (*v == ' ')
				v++;
			if (isdigit((unsigned char) *v))
			{
				double		n = strtod(v, NULL);

				if (n > most && n < 1e12)
					most = (int64) n;
			}
		}
	}
	return most;
}

/*
 * pgb_estimate_tokens
 *		The tokens a request with this body may use; 0 for no body.
 */
int64
pgb_estimate_tokens(const char *body)
{
	if (body == NULL)
		return 0;
	return (int64) ((strlen(body) + PGB_BYTES_PER_TOKEN - 1) / PGB_BYTES_PER_TOKEN) +
		output_limit(body);
}

/*
 * number_at
 *		The number at obj.key (or obj.key.key2), or -1.
 */
static double
number_at(JsonbContainer *obj, const char *key, const char *key2)
{
	JsonbValue	v;
	JsonbValue *found = getKeyJsonValueFromContainer(obj, key, strlen(key), &v);

	if (found == NULL)
		return -1;
	if (key2 != NULL)
	{
		if (found->type != jbvBinary || !JsonContainerIsObject(found->val.binary.data))
			return -1;
		return number_at(found->val.binary.data, key2, NULL);
	}
	if (found->type != jbvNumeric || numeric_is_nan(found->val.numeric))
		return -1;
	/* through text: a number beyond double's range is a huge value, no error */
	return strtod(DatumGetCString(DirectFunctionCall1(numeric_out,
													  NumericGetDatum(found->val.numeric))),
				  NULL);
}

/*
 * pgb_reported_tokens
 *		The tokens a response says its request used, or -1 if it does not.
 */
int64
pgb_reported_tokens(Jsonb *response)
{
	double		n;
	double		in;
	double		out;

	if (response == NULL || !JB_ROOT_IS_OBJECT(response))
		return -1;
	n = number_at(&response->root, "usage", "total_tokens");
	if (n < 0)
	{
		in = number_at(&response->root, "usage", "input_tokens");
		out = number_at(&response->root, "usage", "output_tokens");
		if (in >= 0 && out >= 0)
			n = in + out;
	}
	if (n < 0)
		n = number_at(&response->root, "usageMetadata", "totalTokenCount");
	if (n < 0 || n > 1e15)
		return -1;
	return (int64) n;
}
