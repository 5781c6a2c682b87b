#include "metrics/store.h"

#include "common/buf.h"
#include "common/sql.h"
#include "common/timeutil.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ definitions */

static const an_ch_column def_cols[] = {
    {"tenant_id", AN_CH_STRING},    {"id", AN_CH_STRING},           {"name", AN_CH_STRING},
    {"description", AN_CH_STRING},  {"spec", AN_CH_STRING},         {"created_by", AN_CH_STRING},
    {"created_at", AN_CH_DATETIME}, {"updated_at", AN_CH_DATETIME}, {"version", AN_CH_UINT64},
    {"deleted", AN_CH_UINT8},
};

an_status metrics_store_put(an_ch *ch, const metric_def *d, an_error *err)
{
    an_ch_batch *b = NULL;
    an_status s =
        an_ch_batch_new("analytics.metric_definitions", def_cols,
                        sizeof(def_cols) / sizeof(def_cols[0]), AN_CH_FORMAT_TSV, &b, err);
    if (s != AN_OK)
        return s;
    char *desc = cJSON_PrintUnformatted(d->description);
    char *spec = metrics_def_spec_json(d);
    an_ch_batch_add_cstr(b, d->tenant_id ? d->tenant_id : "");
    an_ch_batch_add_cstr(b, d->id);
    an_ch_batch_add_cstr(b, d->name);
    an_ch_batch_add_cstr(b, desc ? desc : "{}");
    an_ch_batch_add_cstr(b, spec);
    an_ch_batch_add_cstr(b, d->created_by ? d->created_by : "");
    an_ch_batch_add_datetime(b, an_time_floor_div(d->created_at_ms, 1000));
    an_ch_batch_add_datetime(b, an_time_floor_div(d->updated_at_ms, 1000));
    an_ch_batch_add_uint(b, d->version);
    an_ch_batch_add_uint(b, 0);
    s = an_ch_batch_end_row(b, err);
    if (s == AN_OK)
        s = an_ch_insert(ch, b, NULL, 0, err);
    free(desc);
    free(spec);
    an_ch_batch_free(b);
    return s;
}

#define DEF_SELECT                                                                                 \
    "SELECT tenant_id, id, name, description, spec, created_by, toUnixTimestamp(created_at), "     \
    "toUnixTimestamp(updated_at), version FROM analytics.metric_definitions FINAL WHERE "          \
    "deleted = 0"

typedef struct defs {
    metric_def *v;
    size_t n, cap;
} defs;

static an_status on_def(void *ud, const an_ch_row *row, an_error *err)
{
    defs *d = ud;
    if (row->ncols != 9)
        return an_error_set(err, AN_INTERNAL, "metric_definitions: %zu columns", row->ncols);
    if (d->n == d->cap) {
        d->cap = d->cap ? d->cap * 2 : 16;
        metric_def *bigger = realloc(d->v, d->cap * sizeof(*d->v));
        if (!bigger)
            abort();
        d->v = bigger;
    }
    const char *const *f = row->fields;
    for (size_t i = 0; i < 9; i++)
        if (!f[i])
            return an_error_set(err, AN_INTERNAL, "metric_definitions: NULL in column %zu", i);
    an_status s = metrics_def_from_columns(
        f[0], f[1], f[2], f[3], f[4], f[5], strtoll(f[6], NULL, 10) * 1000,
        strtoll(f[7], NULL, 10) * 1000, strtoull(f[8], NULL, 10), &d->v[d->n], err);
    if (s == AN_OK)
        d->n++;
    return s;
}

static void defs_free(defs *d)
{
    for (size_t i = 0; i < d->n; i++)
        metrics_def_free(&d->v[i]);
    free(d->v);
}

static an_status query_defs(an_ch *ch, const char *sql, metric_def **out, size_t *n, an_error *err)
{
    defs d = {0};
    an_status s = an_ch_query(ch, sql, NULL, on_def, &d, err);
    if (s != AN_OK) {
        defs_free(&d);
        return s;
    }
    *out = d.v;
    *n = d.n;
    return AN_OK;
}

an_status metrics_store_get(an_ch *ch, const char *id, metric_def *out, an_error *err)
{
    an_buf q = AN_BUF_INIT;
    an_buf_adds(&q, DEF_SELECT " AND id = ");
    an_sql_quote_str(&q, id);
    metric_def *v = NULL;
    size_t n = 0;
    an_status s = query_defs(ch, an_buf_str(&q), &v, &n, err);
    an_buf_free(&q);
    if (s != AN_OK)
        return s;
    if (n == 0) {
        free(v);
        return an_error_field(err, AN_NOT_FOUND, "id", "metric %s not found", id);
    }
    *out = v[0];
    for (size_t i = 1; i < n; i++) /* an id is unique; be safe anyway */
        metrics_def_free(&v[i]);
    free(v);
    return AN_OK;
}

an_status metrics_store_name_taken(an_ch *ch, const char *tenant, const char *name,
                                   const char *except_id, bool *taken, an_error *err)
{
    an_buf q = AN_BUF_INIT;
    an_buf_adds(&q, "SELECT count() FROM analytics.metric_definitions FINAL WHERE deleted = 0 "
                    "AND tenant_id = ");
    an_sql_quote_str(&q, tenant ? tenant : "");
    an_buf_adds(&q, " AND name = ");
    an_sql_quote_str(&q, name);
    if (except_id) {
        an_buf_adds(&q, " AND id != ");
        an_sql_quote_str(&q, except_id);
    }
    an_buf out = AN_BUF_INIT;
    an_status s = an_ch_query_buf(ch, an_buf_str(&q), NULL, NULL, &out, err);
    if (s == AN_OK)
        *taken = strtoull(an_buf_str(&out), NULL, 10) > 0;
    an_buf_free(&q);
    an_buf_free(&out);
    return s;
}

an_status metrics_store_list(an_ch *ch, const store_list_opts *o, metric_def **out, size_t *n,
                             an_error *err)
{
    an_buf q = AN_BUF_INIT;
    an_buf_adds(&q, DEF_SELECT " AND tenant_id IN (");
    an_sql_quote_str(&q, o->tenant ? o->tenant : "");
    if (o->tenant && o->include_platform)
        an_buf_adds(&q, ", ''");
    an_buf_addc(&q, ')');
    if (o->status) {
        an_buf_adds(&q, " AND visitParamExtractString(spec, 'status') = ");
        an_sql_quote_str(&q, o->status);
    }
    if (o->after_id) {
        an_buf_adds(&q, " AND id > ");
        an_sql_quote_str(&q, o->after_id);
    }
    an_buf_adds(&q, " ORDER BY id LIMIT ");
    an_sql_uint64(&q, o->limit);
    an_status s = query_defs(ch, an_buf_str(&q), out, n, err);
    an_buf_free(&q);
    return s;
}

an_status metrics_store_scheduled(an_ch *ch, metric_def **out, size_t *n, an_error *err)
{
    return query_defs(ch,
                      DEF_SELECT " AND visitParamExtractString(spec, 'schedule') != '' AND "
                                 "visitParamExtractString(spec, 'status') = 'active' ORDER BY id",
                      out, n, err);
}

/* ----------------------------------------------------------- materialized */

static const an_ch_column value_cols[] = {
    {"tenant_id", AN_CH_STRING},     {"metric_id", AN_CH_STRING},  {"granularity", AN_CH_STRING},
    {"bucket", AN_CH_DATETIME},      {"dimensions", AN_CH_STRING}, {"value", AN_CH_FLOAT64},
    {"computed_at", AN_CH_DATETIME}, {"version", AN_CH_UINT64},    {"deleted", AN_CH_UINT8},
};

an_status metrics_store_values_put(an_ch *ch, const char *metric_id, an_template_granularity g,
                                   const store_value *v, size_t n, int64_t computed_at_ms,
                                   an_error *err)
{
    if (n == 0)
        return AN_OK;
    an_ch_batch *b = NULL;
    an_status s =
        an_ch_batch_new("analytics.metric_values", value_cols,
                        sizeof(value_cols) / sizeof(value_cols[0]), AN_CH_FORMAT_TSV, &b, err);
    if (s != AN_OK)
        return s;
    for (size_t i = 0; i < n && s == AN_OK; i++) {
        an_ch_batch_add_cstr(b, v[i].tenant_id);
        an_ch_batch_add_cstr(b, metric_id);
        an_ch_batch_add_cstr(b, an_template_granularity_name(g));
        an_ch_batch_add_datetime(b, an_time_floor_div(v[i].bucket_ms, 1000));
        an_ch_batch_add_cstr(b, v[i].dimensions);
        an_ch_batch_add_float(b, v[i].value);
        an_ch_batch_add_datetime(b, an_time_floor_div(computed_at_ms, 1000));
        an_ch_batch_add_uint(b, (uint64_t)computed_at_ms);
        an_ch_batch_add_uint(b, v[i].deleted ? 1 : 0);
        s = an_ch_batch_end_row(b, err);
    }
    /* A re-run inserts the same keys with a higher version: safe to retry. */
    if (s == AN_OK)
        s = an_ch_insert(ch, b, NULL, AN_CH_INSERT_IDEMPOTENT, err);
    an_ch_batch_free(b);
    return s;
}

typedef struct values_ctx {
    store_value_fn fn;
    void *ud;
} values_ctx;

static an_status on_value(void *ud, const an_ch_row *row, an_error *err)
{
    values_ctx *x = ud;
    if (row->ncols != 4 || !row->fields[0] || !row->fields[1] || !row->fields[2] || !row->fields[3])
        return an_error_set(err, AN_INTERNAL, "metric_values: unexpected row");
    return x->fn(x->ud, row->fields[0], strtoll(row->fields[1], NULL, 10) * 1000, row->fields[2],
                 row->fields[3], err);
}

/* Run SELECT tenant_id, bucket (s), dimensions, value over the live
 * metric_values of q's metric, granularity and [from, to), of q's tenant
 * (or every tenant but the total), LIMIT q->limit. keys: '' for value, of
 * every tenant, no LIMIT (q's tenant, every_tenant and limit unused). */
static an_status select_values(an_ch *ch, const store_values_query *q, bool keys, store_value_fn fn,
                               void *ud, an_error *err)
{
    an_buf sql = AN_BUF_INIT;
    an_buf_adds(&sql, "SELECT tenant_id, toUnixTimestamp(bucket), dimensions, ");
    an_buf_adds(&sql, keys ? "''" : "value");
    an_buf_adds(&sql, " FROM analytics.metric_values FINAL WHERE metric_id = ");
    an_sql_quote_str(&sql, q->metric_id);
    an_buf_adds(&sql, " AND granularity = ");
    an_sql_quote_str(&sql, an_template_granularity_name(q->granularity));
    if (!keys && q->every_tenant) {
        an_buf_adds(&sql, " AND tenant_id != ''");
    } else if (!keys) {
        an_buf_adds(&sql, " AND tenant_id = ");
        an_sql_quote_str(&sql, q->tenant ? q->tenant : "");
    }
    an_buf_adds(&sql, " AND bucket >= toDateTime(");
    an_sql_int64(&sql, an_time_floor_div(q->from_ms, 1000));
    an_buf_adds(&sql, ") AND bucket < toDateTime(");
    an_sql_int64(&sql, an_time_floor_div(q->to_ms, 1000));
    an_buf_adds(&sql, ") AND deleted = 0");
    if (!keys) {
        an_buf_adds(&sql, " LIMIT ");
        an_sql_uint64(&sql, q->limit);
    }
    values_ctx x = {fn, ud};
    an_status s = an_ch_query(ch, an_buf_str(&sql), NULL, on_value, &x, err);
    an_buf_free(&sql);
    return s;
}

an_status metrics_store_values_read(an_ch *reader, const store_values_query *q, store_value_fn fn,
                                    void *ud, an_error *err)
{
    return select_values(reader, q, false, fn, ud, err);
}

an_status metrics_store_values_keys(an_ch *ch, const char *metric_id, an_template_granularity g,
                                    int64_t from_ms, int64_t to_ms, store_value_fn fn, void *ud,
                                    an_error *err)
{
    store_values_query q = {
        .metric_id = metric_id, .granularity = g, .from_ms = from_ms, .to_ms = to_ms};
    return select_values(ch, &q, true, fn, ud, err);
}

static const an_ch_column run_cols[] = {
    {"tenant_id", AN_CH_STRING},    {"metric_id", AN_CH_STRING},
    {"tick", AN_CH_DATETIME},       {"spec_hash", AN_CH_STRING},
    {"version", AN_CH_UINT64},      {"granularity", AN_CH_STRING},
    {"dimensions", AN_CH_STRING},   {"window_from", AN_CH_DATETIME},
    {"window_to", AN_CH_DATETIME},  {"status", AN_CH_STRING},
    {"rows", AN_CH_UINT64},         {"replica", AN_CH_STRING},
    {"job_id", AN_CH_STRING},       {"attempt", AN_CH_UINT32},
    {"started_at", AN_CH_DATETIME}, {"finished_at", AN_CH_DATETIME},
};

an_status metrics_store_run_put(an_ch *ch, const store_run *r, an_error *err)
{
    an_ch_batch *b = NULL;
    an_status s =
        an_ch_batch_new("analytics.metric_runs", run_cols, sizeof(run_cols) / sizeof(run_cols[0]),
                        AN_CH_FORMAT_TSV, &b, err);
    if (s != AN_OK)
        return s;
    an_ch_batch_add_cstr(b, r->tenant_id);
    an_ch_batch_add_cstr(b, r->metric_id);
    an_ch_batch_add_datetime(b, an_time_floor_div(r->tick_ms, 1000));
    an_ch_batch_add_cstr(b, r->spec_hash);
    an_ch_batch_add_uint(b, r->version);
    an_ch_batch_add_cstr(b, an_template_granularity_name(r->granularity));
    an_ch_batch_add_cstr(b, r->dimensions);
    an_ch_batch_add_datetime(b, an_time_floor_div(r->window_from_ms, 1000));
    an_ch_batch_add_datetime(b, an_time_floor_div(r->window_to_ms, 1000));
    an_ch_batch_add_cstr(b, "ok");
    an_ch_batch_add_uint(b, r->rows);
    an_ch_batch_add_cstr(b, r->replica);
    an_ch_batch_add_cstr(b, r->job_id);
    an_ch_batch_add_uint(b, (uint64_t)(r->attempt > 0 ? r->attempt : 0));
    an_ch_batch_add_datetime(b, an_time_floor_div(r->started_ms, 1000));
    an_ch_batch_add_datetime(b, an_time_floor_div(r->finished_ms, 1000));
    s = an_ch_batch_end_row(b, err);
    /* Not retried when the outcome is unknown: a run row is only written
     * once (a duplicate would be harmless for coverage, but the log says
     * "once per tick"). */
    if (s == AN_OK)
        s = an_ch_insert(ch, b, NULL, 0, err);
    an_ch_batch_free(b);
    return s;
}

an_status metrics_store_run_exists(an_ch *ch, const char *metric_id, int64_t tick_ms, bool *exists,
                                   an_error *err)
{
    an_buf q = AN_BUF_INIT, out = AN_BUF_INIT;
    an_buf_adds(&q, "SELECT count() FROM analytics.metric_runs WHERE metric_id = ");
    an_sql_quote_str(&q, metric_id);
    an_buf_adds(&q, " AND tick = toDateTime(");
    an_sql_int64(&q, an_time_floor_div(tick_ms, 1000));
    an_buf_adds(&q, ") AND status = 'ok'");
    an_status s = an_ch_query_buf(ch, an_buf_str(&q), NULL, NULL, &out, err);
    if (s == AN_OK)
        *exists = strtoull(an_buf_str(&out), NULL, 10) > 0;
    an_buf_free(&q);
    an_buf_free(&out);
    return s;
}

typedef struct windows {
    int64_t (*w)[2];
    size_t n, cap;
} windows;

static an_status on_window(void *ud, const an_ch_row *row, an_error *err)
{
    windows *x = ud;
    if (row->ncols != 2 || !row->fields[0] || !row->fields[1])
        return an_error_set(err, AN_INTERNAL, "metric_runs: unexpected row");
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 16;
        int64_t(*bigger)[2] = realloc(x->w, x->cap * sizeof(*x->w));
        if (!bigger)
            abort();
        x->w = bigger;
    }
    x->w[x->n][0] = strtoll(row->fields[0], NULL, 10) * 1000;
    x->w[x->n][1] = strtoll(row->fields[1], NULL, 10) * 1000;
    x->n++;
    return AN_OK;
}

an_status metrics_store_coverage(an_ch *reader, const char *owner, const char *metric_id,
                                 const char *spec_hash, an_template_granularity g,
                                 const char *dimensions, int64_t from_ms, int64_t to_ms,
                                 bool *covered, an_error *err)
{
    *covered = false;
    an_buf sql = AN_BUF_INIT;
    /* Sorted by start: one pass merges the windows. */
    an_buf_adds(&sql, "SELECT DISTINCT toUnixTimestamp(window_from) AS f, "
                      "toUnixTimestamp(window_to) AS t FROM analytics.metric_runs WHERE "
                      "tenant_id = ");
    an_sql_quote_str(&sql, owner);
    an_buf_adds(&sql, " AND metric_id = ");
    an_sql_quote_str(&sql, metric_id);
    an_buf_adds(&sql, " AND spec_hash = ");
    an_sql_quote_str(&sql, spec_hash);
    an_buf_adds(&sql, " AND granularity = ");
    an_sql_quote_str(&sql, an_template_granularity_name(g));
    an_buf_adds(&sql, " AND dimensions = ");
    an_sql_quote_str(&sql, dimensions);
    an_buf_adds(&sql, " AND status = 'ok' AND window_to > toDateTime(");
    an_sql_int64(&sql, an_time_floor_div(from_ms, 1000));
    an_buf_adds(&sql, ") AND window_from < toDateTime(");
    an_sql_int64(&sql, an_time_floor_div(to_ms + 999, 1000));
    an_buf_adds(&sql, ") ORDER BY f LIMIT 100000");
    windows w = {0};
    an_status s = an_ch_query(reader, an_buf_str(&sql), NULL, on_window, &w, err);
    an_buf_free(&sql);
    if (s == AN_OK) {
        int64_t reach = from_ms; /* [from, reach) is covered */
        for (size_t i = 0; i < w.n && reach < to_ms; i++) {
            if (w.w[i][0] > reach)
                break; /* a gap */
            if (w.w[i][1] > reach)
                reach = w.w[i][1];
        }
        *covered = reach >= to_ms;
    }
    free(w.w);
    return s;
}
