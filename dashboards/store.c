/*
 * store.c - dashboards in analytics.dashboards (0002_records.sql):
 * ReplacingMergeTree(version), one row per version, a tombstone row
 * (deleted = 1) for a delete. Reads use FINAL with WHERE (never PREWHERE on
 * deleted, which would resurrect the previous version). The widgets and the
 * access control are JSON strings. One an_ch per worker, from a small pool.
 */
#include "common/ch.h"
#include "common/sql.h"
#include "dashboards/dash.h"

#include <stdlib.h>
#include <string.h>

static an_status ch_take(dash_ctx *c, an_ch **out, an_error *err)
{
    pthread_mutex_lock(&c->mu);
    an_ch *ch = c->n_ch > 0 ? c->ch_pool[--c->n_ch] : NULL;
    pthread_mutex_unlock(&c->mu);
    if (ch) {
        *out = ch;
        return AN_OK;
    }
    an_ch_options o = {.url = c->cfg->clickhouse_url,
                       .user = c->cfg->clickhouse_user,
                       .password = c->cfg->clickhouse_password,
                       .database = "analytics",
                       .query_timeout_ms = 10000,
                       .max_retries = 2};
    return an_ch_new(&o, out, err);
}

static void ch_give(dash_ctx *c, an_ch *ch)
{
    pthread_mutex_lock(&c->mu);
    if (c->n_ch < DASH_POOL_MAX) {
        c->ch_pool[c->n_ch++] = ch;
        ch = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    an_ch_free(ch);
}

void dash_store_close(dash_ctx *c)
{
    for (int i = 0; i < c->n_ch; i++)
        an_ch_free(c->ch_pool[i]);
    c->n_ch = 0;
}

void dash_free(dash *d)
{
    if (!d)
        return;
    free(d->tenant);
    free(d->id);
    free(d->name);
    free(d->description);
    free(d->created_by);
    cJSON_Delete(d->widgets);
    cJSON_Delete(d->acl);
    free(d);
}

static char *fmt_time(int64_t s, char *buf, size_t n)
{
    time_t t = (time_t)s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

cJSON *dash_to_json(const dash *d, bool with_widgets)
{
    char tb[32];
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", d->id);
    cJSON_AddStringToObject(j, "tenantId", d->tenant);
    cJSON_AddStringToObject(j, "name", d->name);
    cJSON_AddStringToObject(j, "description", d->description ? d->description : "");
    if (with_widgets)
        cJSON_AddItemToObject(j, "widgets", cJSON_Duplicate(d->widgets, 1));
    cJSON_AddItemToObject(j, "accessControl", cJSON_Duplicate(d->acl, 1));
    cJSON_AddStringToObject(j, "createdBy", d->created_by);
    cJSON_AddStringToObject(j, "createdAt", fmt_time(d->created_at, tb, sizeof(tb)));
    cJSON_AddStringToObject(j, "updatedAt", fmt_time(d->updated_at, tb, sizeof(tb)));
    cJSON_AddNumberToObject(j, "version", (double)d->version);
    return j;
}

/* Columns: id name description owner_id widgets acl created_at updated_at version */
#define COLS                                                                                       \
    "tenant_id, id, name, description, owner_id, widgets, acl, toUnixTimestamp(created_at), "      \
    "toUnixTimestamp(updated_at), version"

/* Where the rows of a query go, one record at a time (fn owns it). */
typedef struct rows {
    void (*fn)(void *ud, dash *d);
    void *ud;
} rows;

static an_status on_row(void *ud, const an_ch_row *r, an_error *err)
{
    const rows *rs = ud;
    if (r->ncols != 10)
        return an_error_set(err, AN_INTERNAL, "dashboards row has %zu columns", r->ncols);
    dash *d = calloc(1, sizeof(*d));
    d->tenant = strdup(r->fields[0]);
    d->id = strdup(r->fields[1]);
    d->name = strdup(r->fields[2]);
    d->description = strdup(r->fields[3]);
    d->created_by = strdup(r->fields[4]);
    d->widgets = cJSON_Parse(r->fields[5]);
    d->acl = cJSON_Parse(r->fields[6]);
    if (!cJSON_IsArray(d->widgets)) {
        cJSON_Delete(d->widgets);
        d->widgets = cJSON_CreateArray();
    }
    if (!cJSON_IsObject(d->acl)) {
        cJSON_Delete(d->acl);
        d->acl = NULL;
        dash_acl_parse(NULL, &d->acl, NULL);
    }
    d->created_at = strtoll(r->fields[7], NULL, 10);
    d->updated_at = strtoll(r->fields[8], NULL, 10);
    d->version = strtoull(r->fields[9], NULL, 10);
    rs->fn(rs->ud, d);
    return AN_OK;
}

static an_status query(dash_ctx *c, const char *sql, void (*fn)(void *ud, dash *d), void *ud,
                       an_error *err)
{
    rows rs = {fn, ud};
    an_ch *ch;
    an_status st = ch_take(c, &ch, err);
    if (st != AN_OK)
        return st;
    st = an_ch_query(ch, sql, NULL, on_row, &rs, err);
    if (st == AN_OK || st == AN_INVALID_ARGUMENT || st == AN_NOT_FOUND)
        ch_give(c, ch);
    else
        an_ch_free(ch); /* connection state unknown */
    if (st == AN_INVALID_ARGUMENT || st == AN_NOT_FOUND)
        st = an_error_set(err, AN_INTERNAL, "dashboards query: %s", err ? err->message : "");
    return st;
}

/* The record as cached in Redis: every column, compact. */
static char *record_json(const dash *d)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "t", d->tenant);
    cJSON_AddStringToObject(j, "i", d->id);
    cJSON_AddStringToObject(j, "n", d->name);
    cJSON_AddStringToObject(j, "d", d->description ? d->description : "");
    cJSON_AddStringToObject(j, "c", d->created_by);
    cJSON_AddItemToObject(j, "w", cJSON_Duplicate(d->widgets, 1));
    cJSON_AddItemToObject(j, "a", cJSON_Duplicate(d->acl, 1));
    cJSON_AddNumberToObject(j, "ca", (double)d->created_at);
    cJSON_AddNumberToObject(j, "ua", (double)d->updated_at);
    cJSON_AddNumberToObject(j, "v", (double)d->version);
    cJSON_AddBoolToObject(j, "x", d->deleted);
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return s;
}

static dash *record_parse(const char *s, const char *tenant, const char *id)
{
    cJSON *j = cJSON_Parse(s);
    const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "t"));
    const char *i = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "i"));
    const char *n = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "n"));
    const char *de = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "d"));
    const char *c = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(j, "c"));
    cJSON *w = cJSON_GetObjectItemCaseSensitive(j, "w");
    cJSON *a = cJSON_GetObjectItemCaseSensitive(j, "a");
    cJSON *v = cJSON_GetObjectItemCaseSensitive(j, "v");
    if (!t || !i || !n || !de || !c || !cJSON_IsArray(w) || !cJSON_IsObject(a) ||
        !cJSON_IsNumber(v) || strcmp(t, tenant) || strcmp(i, id)) {
        cJSON_Delete(j);
        return NULL;
    }
    dash *d = calloc(1, sizeof(*d));
    d->tenant = strdup(t);
    d->id = strdup(i);
    d->name = strdup(n);
    d->description = strdup(de);
    d->created_by = strdup(c);
    d->widgets = cJSON_DetachItemViaPointer(j, w);
    d->acl = cJSON_DetachItemViaPointer(j, a);
    d->created_at = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j, "ca"));
    d->updated_at = (int64_t)cJSON_GetNumberValue(cJSON_GetObjectItemCaseSensitive(j, "ua"));
    d->version = (uint64_t)v->valuedouble;
    d->deleted = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "x"));
    cJSON_Delete(j);
    return d;
}

/* A query's first record into *(dash **)ud; the others are dropped. */
static void keep_first(void *ud, dash *d)
{
    dash **first = ud;
    if (*first)
        dash_free(d);
    else
        *first = d;
}

an_status dash_store_get(dash_ctx *c, const char *tenant, const char *id, dash **out, an_error *err)
{
    *out = NULL;
    char *cached = NULL;
    if (dash_record_cache_get(c, tenant, id, &cached) == AN_OK) {
        dash *d = record_parse(cached, tenant, id);
        free(cached);
        if (d && d->deleted) {
            dash_free(d);
            return an_error_field(err, AN_NOT_FOUND, "id", "dashboard %s not found", id);
        }
        if (d) {
            *out = d;
            return AN_OK;
        }
    }
    an_buf q;
    an_buf_init(&q);
    an_buf_adds(&q, "SELECT " COLS " FROM analytics.dashboards FINAL WHERE tenant_id = ");
    an_sql_quote_str(&q, tenant);
    an_buf_adds(&q, " AND id = ");
    an_sql_quote_str(&q, id);
    an_buf_adds(&q, " AND deleted = 0");
    dash *first = NULL;
    an_status st = query(c, an_buf_str(&q), keep_first, &first, err);
    an_buf_free(&q);
    if (st != AN_OK) {
        dash_free(first);
        return st;
    }
    if (!first)
        return an_error_field(err, AN_NOT_FOUND, "id", "dashboard %s not found", id);
    *out = first;
    char *json = record_json(*out);
    dash_record_cache_put(c, tenant, id, (*out)->version, json);
    free(json);
    return AN_OK;
}

an_status dash_store_each(dash_ctx *c, const char *tenant, void (*fn)(void *ud, dash *d), void *ud,
                          an_error *err)
{
    an_buf q;
    an_buf_init(&q);
    an_buf_adds(&q, "SELECT " COLS " FROM analytics.dashboards FINAL WHERE tenant_id = ");
    an_sql_quote_str(&q, tenant);
    an_buf_adds(&q, " AND deleted = 0 ORDER BY id DESC LIMIT 10000");
    an_status st = query(c, an_buf_str(&q), fn, ud, err);
    an_buf_free(&q);
    return st;
}

an_status dash_store_put(dash_ctx *c, const dash *d, an_error *err)
{
    static const an_ch_column cols[] = {
        {"tenant_id", AN_CH_STRING},    {"id", AN_CH_STRING},
        {"name", AN_CH_STRING},         {"description", AN_CH_STRING},
        {"owner_id", AN_CH_STRING},     {"widgets", AN_CH_STRING},
        {"acl", AN_CH_STRING},          {"created_at", AN_CH_DATETIME},
        {"updated_at", AN_CH_DATETIME}, {"version", AN_CH_UINT64},
        {"deleted", AN_CH_UINT8},
    };
    an_ch_batch *b = NULL;
    an_status st = an_ch_batch_new("analytics.dashboards", cols, sizeof(cols) / sizeof(cols[0]),
                                   AN_CH_FORMAT_TSV, &b, err);
    if (st != AN_OK)
        return st;
    char *w = cJSON_PrintUnformatted(d->widgets);
    char *a = cJSON_PrintUnformatted(d->acl);
    an_ch_batch_add_cstr(b, d->tenant);
    an_ch_batch_add_cstr(b, d->id);
    an_ch_batch_add_cstr(b, d->name);
    an_ch_batch_add_cstr(b, d->description ? d->description : "");
    an_ch_batch_add_cstr(b, d->created_by);
    an_ch_batch_add_cstr(b, w);
    an_ch_batch_add_cstr(b, a);
    an_ch_batch_add_datetime(b, d->created_at);
    an_ch_batch_add_datetime(b, d->updated_at);
    an_ch_batch_add_uint(b, d->version);
    an_ch_batch_add_uint(b, d->deleted ? 1 : 0);
    free(w);
    free(a);
    st = an_ch_batch_end_row(b, err);
    an_ch *ch = NULL;
    if (st == AN_OK) {
        dash_record_cache_del(c, d->tenant, d->id);
        st = ch_take(c, &ch, err);
    }
    if (st == AN_OK) {
        st = an_ch_insert(ch, b, NULL, 0, err);
        if (st == AN_OK)
            ch_give(c, ch);
        else
            an_ch_free(ch);
    }
    an_ch_batch_free(b);
    if (st == AN_OK) {
        char *json = record_json(d);
        dash_record_cache_put(c, d->tenant, d->id, d->version, json);
        free(json);
    }
    return st;
}
