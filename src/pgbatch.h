/*-------------------------------------------------------------------------
 *
 * pgbatch.h
 *		Shared declarations of the pgbatch extension: GUCs, the in-memory
 *		form of pipelines and claimed items, the executor's outcome buffers,
 *		and the functions each source file offers the others.
 *
 * src/pgbatch.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef PGBATCH_H
#define PGBATCH_H

#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "utils/hsearch.h"
#include "storage/latch.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "utils/jsonb.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

/* First key of every advisory lock pgbatch takes ('PGBA'); the second is a batch id. */
#define PGB_LOCK_CLASS		1346847297

/* Custom SQLSTATE a stage raises to ask for a retry (transient). */
#define PGB_ERRCODE_RETRY	MAKE_SQLSTATE('P','B','0','0','1')

/* Item states, as stored in batch.items.status. */
#define PGB_PENDING		"pending"
#define PGB_RUNNING		"running"
#define PGB_COMPLETED	"completed"
#define PGB_FAILED		"failed"
#define PGB_CANCELLED	"cancelled"

/* guc.c */
extern int	pgb_max_payload_size;
extern int	pgb_claim_batch_size;
extern int	pgb_workers;
extern int	pgb_max_http_in_flight;
extern int	pgb_poll_interval_ms;
extern int	pgb_lease_duration_s;
extern bool pgb_enabled;
extern char *pgb_databases;
extern int	pgb_max_endpoints;
extern int	pgb_max_response_size;
extern int	pgb_circuit_threshold;
extern int	pgb_circuit_cooldown_ms;
extern char *pgb_allowed_hosts;
extern int	pgb_retention_s;
extern int	pgb_max_items_per_call;
extern int	pgb_max_pipelines;
extern int	pgb_max_stages;
extern int	pgb_max_endpoints_per_role;
extern int	pgb_stage_timeout_ms;
extern void pgb_define_gucs(void);

/* events.c */
typedef struct PgbBatchCounts
{
	int64		pending;		/* waiting for a first attempt */
	int64		retrying;
	int64		running;
	int64		completed;
	int64		failed;
	int64		cancelled;
} PgbBatchCounts;

extern bool pgb_batch_events(int64 batch_id, const PgbBatchCounts *before,
							 const PgbBatchCounts *after, int64 failed_now, bool started,
							 bool cancelled, TimestampTz now);
extern void pgb_endpoint_event(int32 endpoint_id, const char *name, bool paused,
							   const char *reason, TimestampTz until);

/* maintenance.c */
extern int64 pgb_reclaim(Oid actor);

/* security.c */
typedef enum PgbUrlVerdict
{
	PGB_URL_ALLOWED,
	PGB_URL_DENIED,				/* outside pgbatch.allowed_hosts */
	PGB_URL_INVALID				/* not an http(s) URL with a host */
} PgbUrlVerdict;

extern bool pgb_may_act(Oid user, const char *owner);
extern bool pgb_may_see(Oid user, const char *owner);
extern bool pgb_is_admin(Oid user);
extern void pgb_require_update(void);
extern void pgb_require_batch(Oid role, int64 batch_id);
extern const char *pgb_header_problem(const char *name, const char *value);
extern bool pgb_check_allowed_hosts(char **newval, void **extra, GucSource source);
extern void pgb_assign_allowed_hosts(const char *newval, void *extra);
extern PgbUrlVerdict pgb_url_verdict(const char *url, char *hostbuf, size_t hostsize,
									 int *port);

/* Shared memory (shmem.c), present when pgbatch is preloaded. */
#define PGB_MAX_SLOTS	64		/* executor workers, all databases */
#define PGB_MAX_DBS		64		/* databases with remembered flags */

typedef struct PgbWorkerSlot
{
	bool		in_use;			/* reserved by the launcher or attached */
	Oid			dboid;
	int			worker;			/* number within its database */
	pid_t		pid;			/* 0 until the executor attaches */
	Latch	   *latch;
	TimestampTz started_at;
	int32		in_flight;		/* HTTP requests in flight */
	int64		requests;		/* HTTP requests finished */
	Oid			busy_owner;		/* owner whose stages it runs now, or 0 */
} PgbWorkerSlot;

typedef struct PgbDbFlags
{
	Oid			dboid;
	bool		no_extension;	/* an executor found no pgbatch there */
	bool		has_extension;	/* an executor found pgbatch there */
	bool		dropping;		/* DROP DATABASE in progress */
	TimestampTz checked_at;
} PgbDbFlags;

typedef enum PgbCircuit
{
	PGB_CIRCUIT_CLOSED,
	PGB_CIRCUIT_OPEN,			/* half-open once open_until has passed */
	PGB_CIRCUIT_PROBING			/* one probe request in flight */
} PgbCircuit;

typedef struct PgbEndpointState
{
	Oid			dboid;
	int32		endpoint_id;
	int32		max_concurrency;
	int32		rate_limit;		/* per minute; 0 = none */
	int32		in_flight;
	double		tokens;
	TimestampTz refilled_at;
	TimestampTz paused_until;	/* Retry-After */
	PgbCircuit	circuit;
	TimestampTz open_until;
	int32		consecutive_failures;
	bool		waiters;		/* some executor waits for a free slot */
	int64		requests;
	int64		failures;
} PgbEndpointState;

typedef struct PgbShared
{
	LWLock	   *lock;
	pid_t		launcher_pid;
	Latch	   *launcher_latch;
	PgbDbFlags	dbs[PGB_MAX_DBS];
	pg_atomic_uint32 exits;		/* executors that have exited, ever */
	int			nendpoints;
	PgbEndpointState *endpoints;	/* pgb_max_endpoints, after the slots */
	PgbWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} PgbShared;

extern PgbShared *pgb_shared;
extern void pgb_shmem_init(void);
extern void pgb_register_xact_callback(void);
extern void pgb_wake_on_commit(void);
extern PgbDbFlags *pgb_db_flags_find(Oid dboid, bool create);
extern void pgb_db_flags_clear(Oid dboid);
extern void pgb_slot_attach(int index, Oid dboid);
extern PgbWorkerSlot *pgb_my_slot(void);
extern Datum pgb_live_executor_pids(Oid dboid);
extern void pgb_wake_executors(Oid dboid);

/* endpoint.c: limits shared by all executors */
typedef enum PgbEndpointVerdict
{
	PGB_EP_GO,					/* send now: a slot and a token are taken */
	PGB_EP_WAIT,				/* at its concurrency or rate limit */
	PGB_EP_PAUSED				/* Retry-After or open circuit until *until */
} PgbEndpointVerdict;

typedef enum PgbEndpointResult
{
	PGB_EPR_SUCCESS,
	PGB_EPR_TRANSIENT,
	PGB_EPR_PERMANENT,
	PGB_EPR_NOT_SENT
} PgbEndpointResult;

extern int	pgb_endpoint_index(Oid dboid, int32 endpoint_id, int max_concurrency,
							   int rate_limit);
extern PgbEndpointVerdict pgb_endpoint_acquire(int index, TimestampTz now,
											   TimestampTz *until);
typedef enum PgbCircuitChange
{
	PGB_CIRCUIT_UNCHANGED,
	PGB_CIRCUIT_OPENED,
	PGB_CIRCUIT_CLOSED_AGAIN
} PgbCircuitChange;

extern PgbCircuitChange pgb_endpoint_release(int index, PgbEndpointResult result,
								 double retry_after_s, TimestampTz now);
extern void pgb_endpoint_release_all(void);

/* A stage's retry policy, with intervals in milliseconds. */
typedef struct PgbRetryPolicy
{
	int			max_retries;
	double		backoff_base_ms;
	double		backoff_factor;
	double		backoff_max_ms;
	double		jitter;
} PgbRetryPolicy;

typedef enum PgbStageKind
{
	PGB_STAGE_SQL,
	PGB_STAGE_HTTP
} PgbStageKind;

/* One stage of a pipeline, as the executor needs it. */
typedef struct PgbStage
{
	char	   *name;
	int			position;		/* 0-based */
	PgbStageKind kind;
	Oid			func;			/* SQL stage function, or InvalidOid */
	bool		func_trusted;	/* it may run as the batch owner (see
								 * batch_internal.stage_trusted) */
	int			timeout_ms;		/* 0 = no timeout */
	PgbRetryPolicy policy;
	struct PgbStageCall *call;	/* prepared call of func, built on first use */
	/* HTTP stage: func, if valid, builds the request body */
	int32		endpoint_id;
	char	   *method;
	char	   *path;
	bool		endpoint_allowed;	/* the batch owner may use the endpoint */
} PgbStage;

typedef struct PgbPipeline
{
	int32		id;
	int			nstages;
	PgbStage   *stages;
	MemoryContext mcxt;			/* where the stages and their calls live */
} PgbPipeline;

/* What the executor knows of a batch while it runs its items. */
typedef struct PgbBatchInfo
{
	int64		id;				/* hash key */
	PgbPipeline *pipeline;
	Oid			owner;			/* role stage functions run as */
	char	   *owner_name;
} PgbBatchInfo;

/* An item claimed for execution. */
typedef struct PgbWorkItem
{
	int64		id;
	int64		batch_id;
	char	   *stage;
	int			attempt;		/* attempts made before this claim */
	Jsonb	   *payload;
	Jsonb	   *outputs;		/* earlier stages' outputs, or NULL if none */
	bool		need_outputs;	/* set by the executor: load outputs */
	char	   *error_code;		/* last error, or NULL */
	int			max_retries;	/* per-item override, or -1 */
	double		backoff_factor; /* per-item override, or 0 */
} PgbWorkItem;

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

/* The outcomes of a chunk of work, recorded together in one round trip each. */
typedef struct PgbRecord
{
	/* item state after the chunk */
	PgbColumn	item_id;
	PgbColumn	item_status;
	PgbColumn	item_stage;
	PgbColumn	item_attempt;
	PgbColumn	item_next_due;
	PgbColumn	item_error_code;
	PgbColumn	item_error;
	PgbColumn	item_finished_at;
	PgbColumn	item_claimed_by;
	PgbColumn	item_lease_until;
	/* stage outputs */
	PgbColumn	out_item_id;
	PgbColumn	out_stage;
	PgbColumn	out_output;
	/* attempt history */
	PgbColumn	att_batch_id;
	PgbColumn	att_item_id;
	PgbColumn	att_stage;
	PgbColumn	att_attempt;
	PgbColumn	att_outcome;
	PgbColumn	att_error_code;
	PgbColumn	att_message;
	PgbColumn	att_started_at;
	PgbColumn	att_finished_at;
	PgbColumn	att_http_status;
	PgbColumn	att_response_size;
	PgbColumn	att_response_sha256;
	PgbColumn	att_response_body;
} PgbRecord;

struct PgbHttpRequest;

/* What the executor did, for batch.run()'s result. */
typedef struct PgbRunStats
{
	int64		stages_run;
	int64		items_completed;
	int64		retries_scheduled;
	int64		items_failed;
	int64		requests_prepared;
	int64		items_deferred; /* left for later: their endpoint is busy */
} PgbRunStats;

/* An executor's state for one transaction's worth of work (executor.c). */
typedef struct PgbExecutor
{
	HTAB	   *cache;			/* batch id -> PgbBatchInfo */
	MemoryContext cachecxt;
	bool		background;		/* a background executor: prepares HTTP stages */
	bool		session_http;	/* batch.run() with no executors: sends them
								 * itself, in its transaction */
	TimestampTz lease_until;	/* for items handed to the HTTP layer */
	struct PgbHttpRequest *prepared;	/* requests to send once the claim
										 * commits */
	TimestampTz earliest_due;	/* soonest retry or resume it scheduled, or 0 */
	TimestampTz slice_end;		/* stop starting items after this, or 0 */
	bool		sliced;			/* items were left for the next claim */
	PgbRunStats stats;
} PgbExecutor;

/*
 * How long a background executor runs claimed items before it records them,
 * commits and claims again (taking turns between owners): stages that take
 * long leave the executor to the next owner's items between two of them.
 */
#define PGB_SLICE_MS	500

/* Result of running one stage once. */
typedef enum PgbStageResult
{
	PGB_STAGE_OK,
	PGB_STAGE_TRANSIENT,
	PGB_STAGE_PERMANENT
} PgbStageResult;

/* util.c */
extern void pgb_column_init(PgbColumn *col, Oid elemtype);
extern void pgb_column_add(PgbColumn *col, Datum value, bool isnull);
extern Datum pgb_column_array(PgbColumn *col);
extern SPIPlanPtr pgb_prepare(const char *sql, int nargs, Oid *argtypes);
extern SPIPlanPtr pgb_prepare_opts(const char *sql, int nargs, Oid *argtypes,
								   int options);
extern int	pgb_execute(SPIPlanPtr plan, Datum *args, const char *nulls,
						bool read_only, long tcount);
extern Jsonb *pgb_jsonb_constant(const char *literal);
extern Datum pgb_text_datum(const char *s);
extern Jsonb *pgb_jsonb_set_key(Jsonb *obj, const char *key, Jsonb *value);

/* pipeline.c */
extern PgbBatchInfo *pgb_batch_info(HTAB *cache, MemoryContext cachecxt,
									 int64 batch_id);
extern HTAB *pgb_batch_cache_create(MemoryContext mcxt);
extern void pgb_release_batch_cache(HTAB *cache);
extern PgbStage *pgb_find_stage(PgbPipeline *pipeline, const char *name);

/*
 * Where an in-transaction claim scan resumes: the (next_due, id) of the last
 * item claimed.  The rows an executor has already updated in its open
 * transaction stay in the due-items index until it commits, so each claim
 * starts after the previous one instead of walking them again.
 */
typedef struct PgbClaimCursor
{
	TimestampTz next_due;
	int64		id;
} PgbClaimCursor;

/* executor.c */
extern void pgb_executor_init(PgbExecutor *ex, MemoryContext cachecxt, bool background);
extern void pgb_executor_done(PgbExecutor *ex);
extern void pgb_execute_claimed(PgbExecutor *ex, PgbWorkItem *items, int nitems);
extern void pgb_record_attempt(PgbRecord *rec, int64 batch_id, int64 item_id,
							   const char *stage, int attempt, const char *outcome,
							   const char *error_code, const char *message,
							   TimestampTz started, TimestampTz finished);
extern void pgb_record_item(PgbRecord *rec, int64 item_id, const char *status,
							const char *stage, int attempt, TimestampTz next_due,
							const char *error_code, const char *message,
							TimestampTz finished_at);
extern const char *pgb_record_failure(PgbExecutor *ex, PgbRecord *rec, int64 item_id,
									  const char *stage, int attempt,
									  const PgbRetryPolicy *policy, bool transient,
									  const char *error_code, const char *message,
									  TimestampTz finished, TimestampTz not_before);
extern void pgb_record_stage_error(PgbExecutor *ex, PgbRecord *rec, int64 batch_id,
								   int64 item_id, const char *stage, int attempt,
								   const PgbRetryPolicy *policy, bool transient,
								   const char *error_code, const char *message,
								   TimestampTz started, TimestampTz finished,
								   TimestampTz not_before);

/* launcher.c */
extern void pgb_register_launcher(void);

/* worker.c */
extern void pgb_session_http_begin(MemoryContext cxt);
extern void pgb_session_http(PgbExecutor *ex, TimestampTz deadline);
extern void pgb_session_http_end(void);
extern bool pgb_executors_serve(Oid dboid);
extern bool pgb_prepare_http(PgbExecutor *ex, PgbBatchInfo *info, PgbStage *stage,
							 PgbWorkItem *it, int attempt, PgbRecord *rec);

/* claim.c */
extern int	pgb_claim_locked(int64 batch_id, Oid actor, TimestampTz now, int limit,
							 PgbClaimCursor *cursor, PgbWorkItem **items);
extern void pgb_load_outputs(PgbWorkItem *items, int nitems);
extern void pgb_record_init(PgbRecord *rec);
extern void pgb_record_flush(PgbRecord *rec, TimestampTz now);
extern TimestampTz pgb_next_due(int64 batch_id, Oid actor, bool *found);

/* stage_sql.c */
extern PgbStageResult pgb_run_sql_stage(PgbBatchInfo *batch, PgbStage *stage,
										PgbWorkItem *item, Jsonb **output,
										char **error_code, char **message);
extern void pgb_release_stage_calls(PgbPipeline *pipeline);
extern const char *pgb_sqlstate_name(int sqlerrcode);
extern bool pgb_sqlstate_is_transient(int sqlerrcode);

/* http.c: an HTTP request of an executor; all of it is malloc'd */
typedef enum PgbHttpState
{
	PGB_HTTP_WAITING,			/* for its endpoint's limits */
	PGB_HTTP_IN_FLIGHT,
	PGB_HTTP_DONE,				/* finished, successfully or not */
	PGB_HTTP_RELEASED			/* not sent: endpoint paused */
} PgbHttpState;

typedef struct PgbHttpRequest
{
	/* what it is for */
	int64		item_id;
	int64		batch_id;
	char	   *stage;
	int			stage_position;
	int			attempt;
	int			max_retries;
	double		backoff_factor; /* per-item override, or 0 */
	int			endpoint_index; /* in shared memory */
	PgbRetryPolicy policy;
	char	   *next_stage;		/* NULL if this is the last stage */
	/* the request */
	char	   *url;
	char		method[8];
	char	   *body;
	struct curl_slist *headers;
	int			nsecrets;		/* the first ones are the endpoint's own */
	long		timeout_ms;
	bool		follow_redirects;
	void	   *easy;			/* CURL * while in flight */
	/* what came back */
	PgbHttpState state;
	int			result;			/* CURLcode */
	long		status;
	char	   *resp;
	size_t		resp_len;
	size_t		resp_cap;
	bool		too_large;
	double		retry_after_s;	/* < 0: no Retry-After */
	char		errbuf[256];
	char	   *error_code;		/* NULL: success; else points to error_buf */
	char		error_buf[32];
	bool		transient;
	bool		aborted;		/* abandoned at shutdown: does not count */
	bool		reserved;		/* counted in its endpoint's local load */
	int32		endpoint_id;
	PgbCircuitChange circuit_change;	/* what its outcome did to the circuit */
	bool		host_denied;	/* the SSRF guard refused a connection */
	bool		cross_origin;	/* a redirect left the endpoint's origin */
	char		denied_host[256];	/* ... to this host */
	int			denied_port;
	char		origin_host[256];	/* the endpoint's host and port */
	int			origin_port;
	TimestampTz started_at;
	TimestampTz finished_at;
	TimestampTz release_until;	/* PGB_HTTP_RELEASED: when to try again */
	struct PgbHttpRequest *next;
} PgbHttpRequest;

extern void pgb_http_init(void);
extern void pgb_http_shutdown(void);
extern void pgb_http_enqueue(PgbHttpRequest *req);
extern void pgb_http_release_waiting(void);
extern TimestampTz pgb_http_dispatch(void);
extern bool pgb_http_wait(long timeout_ms);
extern PgbHttpRequest *pgb_http_take_done(void);
extern void pgb_http_request_free(PgbHttpRequest *req);
extern void pgb_http_classify(PgbHttpRequest *req);
extern void pgb_http_redact(PgbHttpRequest *req);

/* the shortest word of a header value that pgb_http_redact masks */
#define PGB_SECRET_MIN	4
extern int	pgb_http_busy(void);
extern int	pgb_http_endpoint_load(int endpoint_index);
extern void pgb_http_reserve(PgbHttpRequest *req);
extern int	pgb_http_in_flight(void);

/* retry.c */
extern double pgb_backoff_ms(const PgbRetryPolicy *policy, int retry);

#endif							/* PGBATCH_H */
