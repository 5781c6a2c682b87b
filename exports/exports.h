/*
 * exports.h - the modules of the exports service, shared between its files
 * (and the unit tests). Not part of libanalytics: nothing outside exports/
 * and its tests includes it.
 *
 *   main.c          wiring: config table, endpoints, init/exit
 *   api.c           the NATS endpoints create/get/list/cancel
 *   store.c         export jobs in ClickHouse (analytics.export_jobs)
 *   worker.c        queue consumers: query -> writer -> storage -> event
 *   writer_*.c      csv, xlsx, json (NDJSON) writers behind exports_writer
 *   storage_*.c     local directory and S3-compatible object stores
 *   links.c         HMAC-signed expiring download links for local files
 *
 * A job moves queued -> running -> completed | failed, or to cancelled
 * from queued or running. Exactly one terminal state is ever reached: it is
 * claimed in Redis first (SET NX, see worker.c), and terminal rows are
 * written with a version above every non-terminal one (store.c), so a late
 * progress update can never hide them.
 */
#ifndef AN_EXPORTS_H
#define AN_EXPORTS_H

#include "common/buf.h"
#include "common/ch.h"
#include "common/service.h"
#include "common/status.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------- the model */

typedef enum exports_format {
    EXPORTS_CSV = 0,
    EXPORTS_XLSX,
    EXPORTS_JSON,
} exports_format;

/* "csv", "xlsx", "json"; parse returns -1 when unknown. */
const char *exports_format_name(exports_format f);
int exports_format_parse(const char *s, exports_format *out);
const char *exports_format_ext(exports_format f);          /* "csv", "xlsx", "ndjson" */
const char *exports_format_content_type(exports_format f); /* MIME type of the file */

#define EXPORTS_STATUS_QUEUED    "queued"
#define EXPORTS_STATUS_RUNNING   "running"
#define EXPORTS_STATUS_COMPLETED "completed"
#define EXPORTS_STATUS_FAILED    "failed"
#define EXPORTS_STATUS_CANCELLED "cancelled"

bool exports_status_terminal(const char *status);
bool exports_status_valid(const char *status);

/* One export job, as stored. Strings are heap copies owned by the struct
 * (exports_job_clear frees them); times are epoch ms, 0 when not set. */
typedef struct exports_job {
    char *tenant_id;
    char *id; /* ULID */
    char *requested_by;
    exports_format format;
    char *status;
    char *query;          /* the template as the caller sent it */
    char *params;         /* JSON object: the template's parameters (filters, from, to,
                             granularity, dimensions), "{}" when none */
    char *correlation_id; /* of the create request; carried into the events */
    uint32_t attempts;
    uint64_t rows;
    uint64_t bytes;
    char *file_key; /* storage key of the finished file, "" before */
    char *error_code;
    char *error;
    int64_t created_at;
    int64_t updated_at;
    int64_t started_at;
    int64_t finished_at;
    int64_t expires_at; /* when the file and its URL expire (completed jobs) */
    uint64_t version;
} exports_job;

void exports_job_clear(exports_job *j);

/* ------------------------------------------------------------- store.c */

/* Versions: non-terminal rows use max(previous + 1, now in ms); terminal rows
 * add EXPORTS_TERMINAL_VERSION_BIT, so ReplacingMergeTree and FINAL always keep
 * a terminal row over any queued/running row, whatever order they were written
 * in by different processes. */
#define EXPORTS_TERMINAL_VERSION_BIT (1ULL << 42)

/* Write j as a new version of its record (INSERT; j->version is set here). */
an_status exports_store_put(an_ch *ch, exports_job *j, an_error *err);

/* Read job id of tenant_id. AN_NOT_FOUND when there is none (or deleted). */
an_status exports_store_get(an_ch *ch, const char *tenant_id, const char *id, exports_job *out,
                            an_error *err);

typedef struct exports_list_query {
    const char *tenant_id;
    const char *requested_by; /* NULL: any */
    const char *status;       /* NULL: any */
    const char *before_id;    /* page token: ids strictly below; NULL: first page */
    int limit;
} exports_list_query;

/* Jobs of a tenant, newest first. *out is an array of *n jobs the caller
 * frees with exports_jobs_free. Fetches limit + 1 rows: *more tells whether
 * another page exists. */
an_status exports_store_list(an_ch *ch, const exports_list_query *q, exports_job **out, size_t *n,
                             bool *more, an_error *err);
void exports_jobs_free(exports_job *jobs, size_t n);

/* ------------------------------------------------------------ writers */

/* How a column's values are written, from its ClickHouse type. */
typedef enum exports_coltype {
    EXPORTS_COL_STRING = 0, /* String, FixedString, Enum, UUID, arrays, anything else */
    EXPORTS_COL_INT,        /* (U)Int8..64 */
    EXPORTS_COL_FLOAT,      /* Float32/64, Decimal */
    EXPORTS_COL_BOOL,       /* Bool (current servers) */
    EXPORTS_COL_DATE,       /* Date */
    EXPORTS_COL_DATETIME,   /* DateTime, DateTime('zone') */
} exports_coltype;

/* The kind of a ClickHouse type name; Nullable(T) and LowCardinality(T) are
 * unwrapped. */
exports_coltype exports_coltype_of(const char *ch_type);

typedef struct exports_writer exports_writer;

typedef struct exports_writer_opts {
    const char *tmpdir;           /* xlsx scratch files; NULL: the file's dir */
    uint64_t xlsx_rows_per_sheet; /* data rows per worksheet; 0: 1,048,575 */
} exports_writer_opts;

/* Create path and write the format's preamble. The file is the caller's to
 * move or delete after exports_writer_close. */
an_status exports_writer_open(exports_format f, const char *path, const exports_writer_opts *opts,
                              exports_writer **out, an_error *err);

/* Column names and ClickHouse types, once, before the first row (called by
 * exports_writer_row on the first row when not called before). */
an_status exports_writer_columns(exports_writer *w, size_t ncols, const char *const *names,
                                 const char *const *types, an_error *err);

/* One row: fields[i] (lens[i] bytes, NULL for SQL NULL) of column i. */
an_status exports_writer_row(exports_writer *w, const char *const *fields, const size_t *lens,
                             an_error *err);

/* Rows written so far. */
uint64_t exports_writer_rows(const exports_writer *w);

/* Bytes written so far (exact for csv/json; for xlsx an estimate until
 * close, then the file's size). */
uint64_t exports_writer_bytes(const exports_writer *w);

/* Finish the file (flush, close; xlsx builds the zip here). *bytes (may be
 * NULL) gets the file's size. */
an_status exports_writer_close(exports_writer *w, uint64_t *bytes, an_error *err);

/* Free; closes without finishing when exports_writer_close was not called.
 * w may be NULL. */
void exports_writer_free(exports_writer *w);

/* Low-level pieces, exposed for the unit tests. */
/* Append s[0..n) as one CSV field: valid UTF-8 (bad bytes become U+FFFD),
 * RFC 4180 quoting, and, when neutralise, a leading ' before = + - @ TAB CR. */
void exports_csv_field(an_buf *out, const char *s, size_t n, bool neutralise);
/* Append s[0..n) as valid UTF-8, replacing bad sequences with U+FFFD. */
void exports_utf8_sanitize(an_buf *out, const char *s, size_t n);

/* ------------------------------------------------------------ storage */

typedef struct exports_storage exports_storage;

typedef struct exports_storage_ops {
    const char *name; /* "local", "s3" */
    /* Store the finished file at path under key (the local file is consumed:
     * moved or deleted). */
    an_status (*put)(exports_storage *st, const char *path, const char *key,
                     const char *content_type, an_error *err);
    /* A URL that downloads key until expires_at (unix seconds). */
    an_status (*url)(exports_storage *st, const char *key, int64_t expires_at, an_buf *out,
                     an_error *err);
    /* Delete the files stored before cutoff_ms (epoch ms), and temporary
     * ones left by a crash; returns how many went. NULL: the store expires
     * them itself (an S3 bucket's lifecycle rule). */
    size_t (*sweep)(exports_storage *st, int64_t cutoff_ms);
    void (*free)(exports_storage *st);
} exports_storage_ops;

struct exports_storage {
    const exports_storage_ops *ops;
};

/* Local directory: files at dir/key; URLs are signed links on base_url
 * (e.g. "http://127.0.0.1:8080"), served by exports_links_serve. */
typedef struct exports_links exports_links;
an_status exports_storage_local_new(const char *dir, exports_links *links, exports_storage **out,
                                    an_error *err);

typedef struct exports_s3_config {
    const char *endpoint; /* "http://127.0.0.1:4568" or "https://s3.eu-west-1.amazonaws.com" */
    const char *region;
    const char *bucket;
    const char *access_key;
    const char *secret_key;
    int timeout_ms; /* whole upload; 0: none */
} exports_s3_config;

/* S3-compatible store, path-style URLs (endpoint/bucket/key). */
an_status exports_storage_s3_new(const exports_s3_config *cfg, exports_storage **out,
                                 an_error *err);

void exports_storage_free(exports_storage *st);

/* ---- AWS Signature Version 4 (storage_s3.c), pure functions ---------------- */

typedef struct exports_sigv4_header {
    const char *name; /* any case; lowercased and sorted by the signer */
    const char *value;
} exports_sigv4_header;

typedef struct exports_sigv4_request {
    const char *method;
    const char *path;  /* absolute, already URI-encoded as sent ("/bucket/a%20b.csv") */
    const char *query; /* raw query string without '?', "" when none (any order) */
    const exports_sigv4_header *headers; /* must include host (and x-amz-date for headers) */
    size_t nheaders;
    const char *payload_hash; /* hex SHA-256 of the body, or "UNSIGNED-PAYLOAD" */
    const char *region;
    const char *service;    /* "s3" */
    const char *amz_date;   /* "20130524T000000Z" */
    const char *access_key; /* key id */
    const char *secret_key;
} exports_sigv4_request;

/* The signature of r. canonical and string_to_sign (may be NULL) receive the
 * intermediate texts; authorization (may be NULL) the whole header value
 * "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...";
 * signature the 64 hex digits and a NUL. */
an_status exports_sigv4_sign(const exports_sigv4_request *r, an_buf *canonical,
                             an_buf *string_to_sign, an_buf *authorization, char signature[65],
                             an_error *err);

/* The query string of a presigned URL (X-Amz-Algorithm ... X-Amz-Signature)
 * for method on host/path, valid expires_s seconds from amz_date; appended
 * to out (without '?'). r->query, r->headers and r->payload_hash are ignored
 * (only host is signed, payload UNSIGNED-PAYLOAD). */
an_status exports_sigv4_presign(const exports_sigv4_request *r, const char *host, int64_t expires_s,
                                an_buf *out, an_error *err);

/* (SigV4's percent-encoding of paths and query values is common's
 * an_buf_add_uri_encoded, buf.h.) */

/* ------------------------------------------------------------ links.c */

/* Signed links: path prefix + key, query exp=<unix s>&sig=<base64url HMAC-SHA-256
 * of "<key>\n<exp>">. */
#define EXPORTS_LINK_PREFIX "/downloads/"

/* secret is copied (at least 32 bytes); base_url may be NULL until known
 * (exports_links_set_base). dir is where keys live. */
an_status exports_links_new(const void *secret, size_t secret_len, const char *dir,
                            exports_links **out, an_error *err);
void exports_links_set_base(exports_links *l, const char *base_url);
void exports_links_free(exports_links *l);

/* Append the full URL of key valid until expires_at (unix seconds). */
void exports_links_url(const exports_links *l, const char *key, int64_t expires_at, an_buf *out);

/* Check a request for key with the raw query (exp and sig). AN_OK when the
 * signature matches and now_s < exp; AN_PERMISSION_DENIED (altered or bad)
 * or AN_FAILED_PRECONDITION (expired) otherwise. */
an_status exports_links_verify(const exports_links *l, const char *key, const char *query,
                               int64_t now_s, an_error *err);

/* The HTTP route handler (arg: the exports_links). */
void exports_links_serve(const an_http_request *req, an_http_response *res, void *arg);

/* True when key is a storage key this service makes: [A-Za-z0-9._-]+, no "..". */
bool exports_key_valid(const char *key);

/* ------------------------------------------------------------ the service */

typedef struct exports_config {
    char *reader_user;
    char *reader_password;
    char *storage;      /* "local" | "s3" */
    char *dir;          /* local storage */
    char *spool_dir;    /* where files are written before storage.put */
    char *public_url;   /* base of local links; "" = http://127.0.0.1:<http port> */
    char *link_secret;  /* HMAC key of local links */
    int64_t url_ttl_ms; /* validity of outputUrl */
    int64_t retention_ms;
    int64_t sweep_interval_ms; /* how often expired files are deleted */
    char *s3_endpoint;
    char *s3_region;
    char *s3_bucket;
    char *s3_access_key;
    char *s3_secret_key;
    char *s3_prefix;
    char *queue_name;
    long long workers;
    long long max_active_per_tenant;
    int64_t visibility_ms;
    long long max_attempts;
    int64_t backoff_ms;
    long long rows_per_second;
    int64_t max_bytes; /* of one job's file; 0: no limit */
    long long xlsx_rows_per_sheet;
    int64_t query_timeout_ms;
} exports_config;

typedef struct exports_worker exports_worker;

/* The service's context (an_service_def.ctx): config first, then state. */
typedef struct exports_ctx {
    exports_config cfg;
    an_service *svc;
    exports_storage *storage;
    exports_links *links;   /* local storage only */
    const char *key_prefix; /* of storage keys: cfg.s3_prefix with s3, "" local */
    exports_worker **workers;
    size_t nworkers;
    char active_key_prefix[128];     /* "an:<queue>:active:" (per-tenant active sets) */
    an_prom_counter *jobs_completed; /* analytics_exports_jobs_total{status} */
    an_prom_counter *jobs_failed;
    an_prom_counter *jobs_cancelled;
    an_prom_counter *rows_total;   /* analytics_exports_rows_total */
    an_prom_counter *bytes_total;  /* analytics_exports_bytes_total */
    pthread_key_t tls;             /* per-thread ClickHouse and Redis clients of the handlers */
    _Atomic int64_t next_sweep_ms; /* monotonic; the worker that moves it on sweeps */
    an_prom_counter *files_swept;  /* analytics_exports_files_deleted_total */
} exports_ctx;

/* Set up the per-thread clients' key and the Redis key prefixes (init). */
void exports_coord_init(exports_ctx *x);

/* Per-thread clients of request handlers (created on first use). */
an_ch *exports_ctx_ch(exports_ctx *x, an_error *err);
struct redisContext;
struct redisContext *exports_ctx_redis(exports_ctx *x, an_error *err);
an_status exports_ctx_queue_push(exports_ctx *x, const exports_job *j, an_error *err);

/* Redis key of the claimed terminal state of a job. */
void exports_key_final(const exports_ctx *x, const char *id, char *out, size_t n);

/* The claimed terminal state of id (a static string), or NULL when none
 * (or Redis failed: err says so). */
const char *exports_final_state(exports_ctx *x, struct redisContext *c, const char *id,
                                an_error *err);

/* Claim the terminal state of job id (SET NX): AN_OK when claimed now or
 * already claimed with the same state; AN_ALREADY_EXISTS with *other (a
 * static string) the state claimed before. */
an_status exports_claim_final(exports_ctx *x, struct redisContext *c, const char *id,
                              const char *state, const char **other, an_error *err);

/* Per-tenant slots of active (queued or running) jobs. */
an_status exports_slot_take(exports_ctx *x, struct redisContext *c, const char *tenant,
                            const char *id, an_error *err);
void exports_slot_release(exports_ctx *x, struct redisContext *c, const char *tenant,
                          const char *id);

/* Bind a job's template with its parameters (params_json, an object) to
 * the tenant (common/template.h): the SQL that runs, appended to out. */
an_status exports_bind_query(const char *tenant_id, const char *query, const char *params_json,
                             an_buf *out, an_error *err);
/* Validate the template parameters of a create request body; *canonical
 * (may be NULL) gets the JSON object that is stored with the job. */
an_status exports_params_check(const cJSON *body, char **canonical, an_error *err);

/* The job as the API shows it (outputUrl when completed and not expired). */
cJSON *exports_job_json(exports_ctx *x, const exports_job *j);
/* The download URL of a completed job (appended to out). */
an_status exports_output_url(exports_ctx *x, const exports_job *j, an_buf *out, an_error *err);

/* Endpoints (api.c). */
extern const an_endpoint exports_endpoints[];

/* Workers (worker.c). */
an_status exports_workers_start(exports_ctx *x, an_error *err);
void exports_workers_stop(exports_ctx *x);

#endif
