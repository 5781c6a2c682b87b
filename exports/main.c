/*
 * exports - export jobs: a tenant asks for the result of a query as a csv,
 * xlsx or json file; workers produce it in the background from a Redis
 * queue; the caller gets a download URL (docs/exports.md).
 *
 * Wiring only: the configuration table, the endpoints (api.c), init (storage,
 * links, workers) and exit.
 */
#include "exports/exports.h"

#include "common/crypto.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG(f) offsetof(exports_ctx, cfg.f)

static const an_config_var exports_vars[] = {
    {"ANALYTICS_CLICKHOUSE_READER_USER", AN_CFG_STRING, "analytics_reader", 0, 0, 0,
     CFG(reader_user), "ClickHouse user the export queries run as (readonly, hot tier only)"},
    {"ANALYTICS_CLICKHOUSE_READER_PASSWORD", AN_CFG_STRING, "", 0, 0, AN_CFG_SECRET,
     CFG(reader_password), "its password"},
    {"ANALYTICS_EXPORTS_STORAGE", AN_CFG_STRING, "local", 0, 0, 0, CFG(storage),
     "where finished files go: local (a directory, served on the HTTP port) or s3"},
    {"ANALYTICS_EXPORTS_DIR", AN_CFG_STRING, "/tmp/analytics-exports", 0, 0, 0, CFG(dir),
     "local storage: the directory of finished files (shared by the replicas)"},
    {"ANALYTICS_EXPORTS_SPOOL_DIR", AN_CFG_STRING, "", 0, 0, 0, CFG(spool_dir),
     "where files are written while they are produced; empty: <dir>/.spool (local) or /tmp"},
    {"ANALYTICS_EXPORTS_PUBLIC_URL", AN_CFG_STRING, "", 0, 0, 0, CFG(public_url),
     "local storage: base URL of download links; empty: http://127.0.0.1:<http port>"},
    {"ANALYTICS_EXPORTS_LINK_SECRET", AN_CFG_STRING, "", 0, 0, AN_CFG_SECRET, CFG(link_secret),
     "local storage: HMAC key of download links (>= 32 bytes; empty: random per process)"},
    {"ANALYTICS_EXPORTS_URL_TTL", AN_CFG_DURATION, "1h", 1000, 604800000LL, 0, CFG(url_ttl_ms),
     "how long an outputUrl works (S3 presigned URLs: at most 7 days)"},
    {"ANALYTICS_EXPORTS_RETENTION", AN_CFG_DURATION, "168h", 60000, 31622400000LL, 0,
     CFG(retention_ms),
     "how long a finished file is offered (expiresAt); local files are "
     "deleted after it (S3: the bucket's lifecycle rule)"},
    {"ANALYTICS_EXPORTS_SWEEP_INTERVAL", AN_CFG_DURATION, "10m", 100, 86400000, 0,
     CFG(sweep_interval_ms), "how often a replica deletes the local files past the retention"},
    {"ANALYTICS_EXPORTS_S3_ENDPOINT", AN_CFG_STRING, "", 0, 0, 0, CFG(s3_endpoint),
     "s3 storage: http(s)://host[:port] of the S3-compatible server (path-style URLs)"},
    {"ANALYTICS_EXPORTS_S3_REGION", AN_CFG_STRING, "us-east-1", 0, 0, 0, CFG(s3_region),
     "s3 storage: signing region"},
    {"ANALYTICS_EXPORTS_S3_BUCKET", AN_CFG_STRING, "", 0, 0, 0, CFG(s3_bucket),
     "s3 storage: bucket"},
    {"ANALYTICS_EXPORTS_S3_ACCESS_KEY_ID", AN_CFG_STRING, "", 0, 0, 0, CFG(s3_access_key),
     "s3 storage: access key id"},
    {"ANALYTICS_EXPORTS_S3_SECRET_ACCESS_KEY", AN_CFG_STRING, "", 0, 0, AN_CFG_SECRET,
     CFG(s3_secret_key), "s3 storage: secret access key"},
    {"ANALYTICS_EXPORTS_S3_PREFIX", AN_CFG_STRING, "exports/", 0, 0, 0, CFG(s3_prefix),
     "s3 storage: prefix of object keys"},
    {"ANALYTICS_EXPORTS_QUEUE", AN_CFG_STRING, "exports", 0, 0, 0, CFG(queue_name),
     "Redis queue (stream an:<name>) shared by the replicas"},
    {"ANALYTICS_EXPORTS_WORKERS", AN_CFG_INT, "2", 0, 64, 0, CFG(workers),
     "export worker threads per replica (0: this replica only answers requests)"},
    {"ANALYTICS_EXPORTS_MAX_ACTIVE_PER_TENANT", AN_CFG_INT, "5", 1, 1000, 0,
     CFG(max_active_per_tenant), "queued + running exports a tenant may have at once"},
    {"ANALYTICS_EXPORTS_VISIBILITY", AN_CFG_DURATION, "60s", 1000, 3600000, 0, CFG(visibility_ms),
     "a job whose worker stopped heartbeating is reclaimed after this"},
    {"ANALYTICS_EXPORTS_MAX_ATTEMPTS", AN_CFG_INT, "3", 1, 100, 0, CFG(max_attempts),
     "attempts before a job fails for good (errors that a retry can fix)"},
    {"ANALYTICS_EXPORTS_BACKOFF", AN_CFG_DURATION, "2s", 10, 3600000, 0, CFG(backoff_ms),
     "delay before the first retry (doubles each time, with jitter)"},
    {"ANALYTICS_EXPORTS_ROWS_PER_SECOND", AN_CFG_INT, "0", 0, 100000000, 0, CFG(rows_per_second),
     "throttle of one job's rows per second (0: none)"},
    {"ANALYTICS_EXPORTS_MAX_BYTES", AN_CFG_SIZE, "5GiB", 0, 1LL << 50, 0, CFG(max_bytes),
     "largest file of one job; a query that makes more fails resource_exhausted (0: no limit)"},
    {"ANALYTICS_EXPORTS_XLSX_ROWS_PER_SHEET", AN_CFG_INT, "1048575", 1, 1048575, 0,
     CFG(xlsx_rows_per_sheet), "xlsx: data rows per worksheet before the next one starts"},
    {"ANALYTICS_EXPORTS_QUERY_TIMEOUT", AN_CFG_DURATION, "1h", 1000, 86400000, 0,
     CFG(query_timeout_ms),
     "client-side limit of one export query (the server's profile also "
     "limits it)"},
    {0},
};

static an_status exports_init(an_service *svc, void *p, an_error *err)
{
    exports_ctx *x = p;
    x->svc = svc;
    exports_coord_init(x);
    exports_config *c = &x->cfg;
    bool local = strcmp(c->storage, "local") == 0;
    if (!local && strcmp(c->storage, "s3") != 0)
        return an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_EXPORTS_STORAGE",
                              "ANALYTICS_EXPORTS_STORAGE=%s: must be local or s3", c->storage);
    if (!*c->spool_dir) {
        free(c->spool_dir);
        an_buf b = AN_BUF_INIT;
        if (local)
            an_buf_addf(&b, "%s/.spool", c->dir);
        else
            an_buf_adds(&b, getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
        c->spool_dir = an_buf_detach(&b, NULL);
    }
    an_status s;
    if (local) {
        unsigned char rnd[32];
        const void *secret = c->link_secret;
        size_t len = strlen(c->link_secret);
        if (len == 0) {
            if (an_crypto_random(rnd, sizeof(rnd), err) != AN_OK)
                return err->code;
            secret = rnd;
            len = sizeof(rnd);
            an_warn("ANALYTICS_EXPORTS_LINK_SECRET is not set: download links are signed with a "
                    "random key and work only on this instance until it restarts");
        }
        s = exports_links_new(secret, len, c->dir, &x->links, err);
        if (s == AN_OK)
            s = exports_storage_local_new(c->dir, x->links, &x->storage, err);
        if (s == AN_OK && *c->public_url)
            exports_links_set_base(x->links, c->public_url);
        if (s == AN_OK)
            s = an_service_add_http_route(svc, EXPORTS_LINK_PREFIX, exports_links_serve, x->links,
                                          err);
    } else {
        exports_s3_config sc = {.endpoint = c->s3_endpoint,
                                .region = c->s3_region,
                                .bucket = c->s3_bucket,
                                .access_key = c->s3_access_key,
                                .secret_key = c->s3_secret_key,
                                .timeout_ms = 0};
        s = exports_storage_s3_new(&sc, &x->storage, err);
    }
    x->key_prefix = !local && c->s3_prefix ? c->s3_prefix : "";
    if (s != AN_OK)
        return s;
    if (mkdir(c->spool_dir, 0750) != 0 && access(c->spool_dir, W_OK) != 0)
        return an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_EXPORTS_SPOOL_DIR",
                              "spool directory %s is not writable", c->spool_dir);

    an_prom_registry *reg = an_service_metrics(svc);
    const char *help = "Export jobs that reached a terminal state.";
    an_prom_counter_get(reg, "analytics_exports_jobs_total", help,
                        AN_PROM_LABELS("status", "completed"), &x->jobs_completed, NULL);
    an_prom_counter_get(reg, "analytics_exports_jobs_total", help,
                        AN_PROM_LABELS("status", "failed"), &x->jobs_failed, NULL);
    an_prom_counter_get(reg, "analytics_exports_jobs_total", help,
                        AN_PROM_LABELS("status", "cancelled"), &x->jobs_cancelled, NULL);
    an_prom_counter_get(reg, "analytics_exports_rows_total", "Rows written to export files.", NULL,
                        &x->rows_total, NULL);
    an_prom_counter_get(reg, "analytics_exports_files_deleted_total",
                        "Stored files deleted past ANALYTICS_EXPORTS_RETENTION (local storage).",
                        NULL, &x->files_swept, NULL);
    an_prom_counter_get(reg, "analytics_exports_bytes_total", "Bytes of finished export files.",
                        NULL, &x->bytes_total, NULL);
    an_info("storage %s (%s), spool %s", c->storage, local ? c->dir : c->s3_endpoint, c->spool_dir);
    return exports_workers_start(x, err);
}

static void exports_exit(an_service *svc, void *p)
{
    (void)svc;
    exports_ctx *x = p;
    exports_workers_stop(x);
    exports_storage_free(x->storage);
    exports_links_free(x->links);
}

static const an_service_def def = {
    .name = "exports",
    .version = "0.1.0",
    .description = "export jobs: query results as csv, xlsx or json files with download URLs",
    .config = exports_vars,
    .ctx_size = sizeof(exports_ctx),
    .endpoints = exports_endpoints,
    .init = exports_init,
    .exit = exports_exit,
    .events = true,
    .deps = AN_DEP_CLICKHOUSE | AN_DEP_REDIS,
};

int main(int argc, char **argv)
{
    return an_service_main(&def, argc, argv);
}
