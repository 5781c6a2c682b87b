/*
 * store.c - export jobs in ClickHouse (analytics.export_jobs, see
 * deploy/clickhouse/migrations/0002_records.sql): every change is an INSERT
 * of the whole record with a higher version; reads use FINAL and filter
 * deleted in WHERE.
 *
 * Mapping: spec holds {"query", "params", "correlationId"}; file_path the
 * storage key; finished_at is completedAt; createdAt comes from the id (a
 * ULID carries its creation time in ms), the DateTime columns are seconds.
 *
 * Versions (see EXPORTS_TERMINAL_VERSION_BIT): a queued/running row gets
 * max(previous + 1, now ms); a completed/failed/cancelled row gets that plus
 * 2^42. Progress rows written by a worker after a cancel (the worker notices
 * the cancel a moment later) therefore never win over the cancelled row,
 * without any cross-process ordering.
 */
#include "exports/exports.h"

#include "common/sql.h"
#include "common/timeutil.h"
#include "common/ulid.h"

#include <stdlib.h>
#include <string.h>

static const char *JOB_COLUMNS =
    "tenant_id, id, requested_by, format, status, spec, attempts, row_count, byte_count, "
    "file_path, error_code, error, toUnixTimestamp(created_at), toUnixTimestamp(updated_at), "
    "toUnixTimestamp(started_at), toUnixTimestamp(finished_at), toUnixTimestamp(expires_at), "
    "version";
#define JOB_NCOLS 18

bool exports_status_terminal(const char *s)
{
    return s && (strcmp(s, EXPORTS_STATUS_COMPLETED) == 0 ||
                 strcmp(s, EXPORTS_STATUS_FAILED) == 0 || strcmp(s, EXPORTS_STATUS_CANCELLED) == 0);
}

bool exports_status_valid(const char *s)
{
    return s && (strcmp(s, EXPORTS_STATUS_QUEUED) == 0 || strcmp(s, EXPORTS_STATUS_RUNNING) == 0 ||
                 exports_status_terminal(s));
}

void exports_job_clear(exports_job *j)
{
    if (!j)
        return;
    free(j->tenant_id);
    free(j->id);
    free(j->requested_by);
    free(j->status);
    free(j->query);
    free(j->params);
    free(j->correlation_id);
    free(j->file_key);
    free(j->error_code);
    free(j->error);
    memset(j, 0, sizeof(*j));
}

void exports_jobs_free(exports_job *jobs, size_t n)
{
    for (size_t i = 0; jobs && i < n; i++)
        exports_job_clear(&jobs[i]);
    free(jobs);
}

static const char *nz(const char *s)
{
    return s ? s : "";
}

an_status exports_store_put(an_ch *ch, exports_job *j, an_error *err)
{
    static const an_ch_column cols[] = {
        {"tenant_id", AN_CH_STRING},    {"id", AN_CH_STRING},
        {"requested_by", AN_CH_STRING}, {"format", AN_CH_STRING},
        {"status", AN_CH_STRING},       {"spec", AN_CH_STRING},
        {"attempts", AN_CH_UINT32},     {"row_count", AN_CH_UINT64},
        {"byte_count", AN_CH_UINT64},   {"file_path", AN_CH_STRING},
        {"error_code", AN_CH_STRING},   {"error", AN_CH_STRING},
        {"created_at", AN_CH_DATETIME}, {"updated_at", AN_CH_DATETIME},
        {"started_at", AN_CH_DATETIME}, {"finished_at", AN_CH_DATETIME},
        {"expires_at", AN_CH_DATETIME}, {"version", AN_CH_UINT64},
        {"deleted", AN_CH_UINT8},
    };
    int64_t now = an_time_now_ms();
    bool terminal = exports_status_terminal(j->status);
    uint64_t prev = j->version;
    if (!terminal && prev >= EXPORTS_TERMINAL_VERSION_BIT)
        return an_error_set(err, AN_FAILED_PRECONDITION, "export %s is already %s", j->id,
                            j->status);
    uint64_t v = (uint64_t)now;
    if (terminal)
        v += EXPORTS_TERMINAL_VERSION_BIT;
    if (v <= prev)
        v = prev + 1;
    j->updated_at = now;

    cJSON *spec = cJSON_CreateObject();
    cJSON_AddStringToObject(spec, "query", nz(j->query));
    cJSON *params = cJSON_Parse(j->params ? j->params : "{}");
    cJSON_AddItemToObject(spec, "params", params ? params : cJSON_CreateObject());
    if (j->correlation_id)
        cJSON_AddStringToObject(spec, "correlationId", j->correlation_id);
    char *spec_text = cJSON_PrintUnformatted(spec);
    cJSON_Delete(spec);

    an_ch_batch *b = NULL;
    an_status s = an_ch_batch_new("analytics.export_jobs", cols, sizeof(cols) / sizeof(cols[0]),
                                  AN_CH_FORMAT_TSV, &b, err);
    if (s == AN_OK) {
        an_ch_batch_add_cstr(b, nz(j->tenant_id));
        an_ch_batch_add_cstr(b, nz(j->id));
        an_ch_batch_add_cstr(b, nz(j->requested_by));
        an_ch_batch_add_cstr(b, exports_format_name(j->format));
        an_ch_batch_add_cstr(b, nz(j->status));
        an_ch_batch_add_cstr(b, spec_text);
        an_ch_batch_add_uint(b, j->attempts);
        an_ch_batch_add_uint(b, j->rows);
        an_ch_batch_add_uint(b, j->bytes);
        an_ch_batch_add_cstr(b, nz(j->file_key));
        an_ch_batch_add_cstr(b, nz(j->error_code));
        an_ch_batch_add_cstr(b, nz(j->error));
        an_ch_batch_add_datetime(b, j->created_at / 1000);
        an_ch_batch_add_datetime(b, j->updated_at / 1000);
        an_ch_batch_add_datetime(b, j->started_at / 1000);
        an_ch_batch_add_datetime(b, j->finished_at / 1000);
        an_ch_batch_add_datetime(b, j->expires_at / 1000);
        an_ch_batch_add_uint(b, v);
        an_ch_batch_add_uint(b, 0);
        s = an_ch_batch_end_row(b, err);
    }
    if (s == AN_OK)
        s = an_ch_insert(ch, b, NULL, 0, err);
    if (s == AN_OK)
        j->version = v;
    an_ch_batch_free(b);
    free(spec_text);
    return s;
}

/* ------------------------------------------------------------------ reads */

typedef struct read_ctx {
    exports_job *jobs;
    size_t n, cap;
} read_ctx;

static char *field_dup(const an_ch_row *r, size_t i)
{
    const char *v = r->fields[i];
    return strndup(v ? v : "", v ? r->lens[i] : 0);
}

static int64_t field_i64(const an_ch_row *r, size_t i)
{
    return r->fields[i] ? strtoll(r->fields[i], NULL, 10) : 0;
}

static uint64_t field_u64(const an_ch_row *r, size_t i)
{
    return r->fields[i] ? strtoull(r->fields[i], NULL, 10) : 0;
}

static an_status on_job_row(void *ud, const an_ch_row *r, an_error *err)
{
    read_ctx *c = ud;
    if (r->ncols != JOB_NCOLS)
        return an_error_set(err, AN_INTERNAL, "export_jobs: %zu columns", r->ncols);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 8;
        c->jobs = realloc(c->jobs, c->cap * sizeof(*c->jobs));
        if (!c->jobs)
            abort();
    }
    exports_job *j = &c->jobs[c->n++];
    memset(j, 0, sizeof(*j));
    j->tenant_id = field_dup(r, 0);
    j->id = field_dup(r, 1);
    j->requested_by = field_dup(r, 2);
    if (exports_format_parse(r->fields[3], &j->format) != 0)
        j->format = EXPORTS_CSV;
    j->status = field_dup(r, 4);
    cJSON *spec = cJSON_Parse(r->fields[5] ? r->fields[5] : "");
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(spec, "query");
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(spec, "params");
    const cJSON *cid = cJSON_GetObjectItemCaseSensitive(spec, "correlationId");
    j->query = strdup(cJSON_IsString(q) ? q->valuestring : "");
    j->params = cJSON_IsObject(f) ? cJSON_PrintUnformatted(f) : strdup("{}");
    j->correlation_id = cJSON_IsString(cid) ? strdup(cid->valuestring) : NULL;
    cJSON_Delete(spec);
    j->attempts = (uint32_t)field_u64(r, 6);
    j->rows = field_u64(r, 7);
    j->bytes = field_u64(r, 8);
    j->file_key = field_dup(r, 9);
    j->error_code = field_dup(r, 10);
    j->error = field_dup(r, 11);
    an_ulid u;
    j->created_at =
        an_ulid_parse(j->id, &u, NULL) == AN_OK ? an_ulid_time_ms(&u) : field_i64(r, 12) * 1000;
    j->updated_at = field_i64(r, 13) * 1000;
    j->started_at = field_i64(r, 14) * 1000;
    j->finished_at = field_i64(r, 15) * 1000;
    j->expires_at = field_i64(r, 16) * 1000;
    j->version = field_u64(r, 17);
    return AN_OK;
}

an_status exports_store_get(an_ch *ch, const char *tenant_id, const char *id, exports_job *out,
                            an_error *err)
{
    an_buf q = AN_BUF_INIT;
    an_buf_addf(&q, "SELECT %s FROM analytics.export_jobs FINAL WHERE tenant_id = ", JOB_COLUMNS);
    an_sql_quote_str(&q, tenant_id);
    an_buf_adds(&q, " AND id = ");
    an_sql_quote_str(&q, id);
    an_buf_adds(&q, " AND deleted = 0 LIMIT 1");
    read_ctx c = {0};
    an_status s = an_ch_query(ch, an_buf_str(&q), NULL, on_job_row, &c, err);
    an_buf_free(&q);
    if (s == AN_OK && c.n == 0)
        s = an_error_field(err, AN_NOT_FOUND, "id", "export %s not found", id);
    if (s == AN_OK) {
        *out = c.jobs[0];
        c.jobs[0] = (exports_job){0};
    }
    exports_jobs_free(c.jobs, c.n);
    return s;
}

an_status exports_store_list(an_ch *ch, const exports_list_query *lq, exports_job **out, size_t *n,
                             bool *more, an_error *err)
{
    an_buf q = AN_BUF_INIT;
    an_buf_addf(&q, "SELECT %s FROM analytics.export_jobs FINAL WHERE tenant_id = ", JOB_COLUMNS);
    an_sql_quote_str(&q, lq->tenant_id);
    an_buf_adds(&q, " AND deleted = 0");
    if (lq->requested_by) {
        an_buf_adds(&q, " AND requested_by = ");
        an_sql_quote_str(&q, lq->requested_by);
    }
    if (lq->status) {
        an_buf_adds(&q, " AND status = ");
        an_sql_quote_str(&q, lq->status);
    }
    if (lq->before_id) {
        an_buf_adds(&q, " AND id < ");
        an_sql_quote_str(&q, lq->before_id);
    }
    an_buf_adds(&q, " ORDER BY id DESC LIMIT ");
    an_sql_int64(&q, lq->limit + 1);
    read_ctx c = {0};
    an_status s = an_ch_query(ch, an_buf_str(&q), NULL, on_job_row, &c, err);
    an_buf_free(&q);
    if (s != AN_OK) {
        exports_jobs_free(c.jobs, c.n);
        return s;
    }
    *more = c.n > (size_t)lq->limit;
    if (*more) {
        exports_job_clear(&c.jobs[c.n - 1]);
        c.n--;
    }
    *out = c.jobs;
    *n = c.n;
    return AN_OK;
}
