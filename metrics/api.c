#include "metrics/api.h"

#include "common/auth.h"
#include "common/crypto.h"
#include "common/lease.h"
#include "common/timeutil.h"
#include "common/ulid.h"
#include "metrics/cache.h"
#include "metrics/metric.h"
#include "metrics/metrics.h"
#include "metrics/query.h"
#include "metrics/store.h"
#include "metrics/template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define LOCK_TTL_MS  15000
#define LOCK_WAIT_MS 3000
#define PAGE_DEFAULT 50
#define PAGE_MAX     200

/* ---------------------------------------------------------------- helpers */

static bool in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

/* Refuse members of body that are not in allowed: a typo ("dimension")
 * must not be silently ignored. */
static an_status only_members(const cJSON *body, const char *const *allowed, an_error *err)
{
    if (body && !cJSON_IsObject(body))
        return an_error_set(err, AN_INVALID_ARGUMENT, "expected a JSON object");
    const cJSON *e;
    cJSON_ArrayForEach(e, body)
    {
        if (!in_list(e->string, allowed))
            return an_error_field(err, AN_INVALID_ARGUMENT, e->string, "%.64s: unknown field",
                                  e->string);
    }
    return AN_OK;
}

/* A required metric id member (a ULID). */
static an_status id_member(const cJSON *body, const char *name, const char **out, an_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, name);
    if (!v)
        return an_error_field(err, AN_INVALID_ARGUMENT, name, "%s: is required", name);
    if (!cJSON_IsString(v) || !an_ulid_valid(v->valuestring))
        return an_error_field(err, AN_INVALID_ARGUMENT, name, "%s: not a metric id (a ULID)", name);
    *out = v->valuestring;
    return AN_OK;
}

/* "tenantId" of a body: *present, and *tenant (NULL for a JSON null). */
static an_status tenant_member(const cJSON *body, bool *present, const char **tenant, an_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "tenantId");
    *present = v != NULL;
    *tenant = NULL;
    if (!v || cJSON_IsNull(v))
        return AN_OK;
    if (!cJSON_IsString(v) || !*v->valuestring || strlen(v->valuestring) > 128)
        return an_error_field(err, AN_INVALID_ARGUMENT, "tenantId",
                              "tenantId: expected a tenant id (1..128 bytes) or null");
    *tenant = v->valuestring;
    return AN_OK;
}

/* May the caller see d? Platform metrics are visible to everyone. */
static bool visible(const an_auth *a, const metric_def *d)
{
    return !d->tenant_id || an_auth_require_tenant(a, d->tenant_id, NULL) == AN_OK;
}

static an_status not_found(const char *id, an_error *err)
{
    return an_error_field(err, AN_NOT_FOUND, "id", "metric %s not found", id);
}

/* The definition of id, from the Redis cache or ClickHouse (fresh: always
 * ClickHouse, for changes). Remembered in the cache either way. held: a
 * Redis connection the caller holds (and keeps), or NULL to take one from
 * the pool for the call. */
static an_status load_def(metrics_ctx *ctx, const char *id, bool fresh, redisContext *held,
                          metric_def *out, an_error *err)
{
    redisContext *r = held;
    an_error ce;
    an_error_clear(&ce);
    bool have_redis = held || metrics_redis_take(ctx->conns, &r, &ce) == AN_OK;
    if (have_redis && !fresh) {
        bool hit = false;
        if (metrics_cache_def_get(r, ctx->redis_prefix, id, out, &hit, &ce) == AN_OK && hit) {
            if (!held)
                metrics_redis_put(ctx->conns, r);
            return AN_OK;
        }
    }
    an_ch *ch = NULL;
    an_status s = metrics_writer_take(ctx->conns, &ch, err);
    if (s == AN_OK) {
        s = metrics_store_get(ch, id, out, err);
        metrics_writer_put(ctx->conns, ch);
    }
    if (s == AN_OK && have_redis && ctx->def_cache_ttl_ms > 0 &&
        metrics_cache_def_put(r, ctx->redis_prefix, out, ctx->def_cache_ttl_ms, &ce) != AN_OK)
        have_redis = false;
    if (!have_redis) {
        an_warn("definition cache: %s", ce.message);
        an_prom_counter_inc(ctx->cache_errors);
    }
    if (!held)
        metrics_redis_put(ctx->conns, r);
    return s;
}

/* Take a short lock on key (a Redis lease), waiting a little for it. */
static an_status lock_take(redisContext *r, an_lease *l, const char *key, an_error *err)
{
    int64_t until = an_time_mono_ms() + LOCK_WAIT_MS;
    for (;;) {
        an_status s = an_lease_acquire(r, l, key, LOCK_TTL_MS, err);
        if (s != AN_ALREADY_EXISTS)
            return s;
        if (an_time_mono_ms() >= until)
            return an_error_set(err, AN_UNAVAILABLE,
                                "the metric is being changed by another request; retry");
        struct timespec ts = {0, 20 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static char *name_lock_key(const metrics_ctx *ctx, const char *tenant, const char *name)
{
    an_buf b = AN_BUF_INIT;
    an_buf_adds(&b, tenant ? tenant : "");
    an_buf_addc(&b, '\0');
    an_buf_adds(&b, name);
    char hash[AN_CRYPTO_SHA256_HEX];
    an_crypto_sha256_hex(b.data, b.len, hash, NULL);
    an_buf_free(&b);
    char *k;
    if (asprintf(&k, "%s:lock:name:%s", ctx->redis_prefix, hash) < 0)
        abort();
    return k;
}

/* Under the name lock: refuse a name another live metric of the tenant
 * has, then write d. */
static an_status put_unique(metrics_ctx *ctx, redisContext *r, const metric_def *d, bool check_name,
                            an_error *err)
{
    an_lease l;
    memset(&l, 0, sizeof(l));
    char *key = name_lock_key(ctx, d->tenant_id, d->name);
    an_status s = check_name ? lock_take(r, &l, key, err) : AN_OK;
    an_ch *ch = NULL;
    if (s == AN_OK)
        s = metrics_writer_take(ctx->conns, &ch, err);
    if (s == AN_OK && check_name) {
        bool taken = false;
        s = metrics_store_name_taken(ch, d->tenant_id, d->name, d->id, &taken, err);
        if (s == AN_OK && taken)
            s = an_error_field(err, AN_ALREADY_EXISTS, "name",
                               "name: a metric named \"%s\" already exists%s", d->name,
                               d->tenant_id ? " in this tenant" : " among platform metrics");
    }
    if (s == AN_OK)
        s = metrics_store_put(ch, d, err);
    metrics_writer_put(ctx->conns, ch);
    if (check_name && an_lease_held(&l))
        an_lease_release(r, &l, NULL);
    free(key);
    if (s == AN_OK && ctx->def_cache_ttl_ms > 0) {
        an_error ce;
        an_error_clear(&ce);
        if (metrics_cache_def_put(r, ctx->redis_prefix, d, ctx->def_cache_ttl_ms, &ce) != AN_OK)
            an_warn("definition cache: %s", ce.message);
    }
    return s;
}

static an_status describe(metrics_ctx *ctx, const metric_def *d, an_error *err)
{
    an_ch *ch = NULL;
    an_status s = metrics_reader_take(ctx->conns, &ch, err);
    if (s != AN_OK)
        return s;
    s = metrics_template_describe(ch, d, err);
    metrics_reader_put(ctx->conns, ch);
    return s;
}

/* ----------------------------------------------------------------- create */

an_status metrics_handle_create(an_request *req, cJSON **data, an_error *err)
{
    metrics_ctx *ctx = req->ctx;
    const cJSON *body = req->body;
    if (!cJSON_IsObject(body))
        return an_error_set(err, AN_INVALID_ARGUMENT, "expected a JSON object");
    bool given;
    const char *tenant;
    an_status s = tenant_member(body, &given, &tenant, err);
    if (s != AN_OK)
        return s;
    if (!given)
        tenant = req->auth->tenant; /* the caller's; none: a platform metric */
    if ((s = an_auth_require_tenant(req->auth, tenant, err)) != AN_OK)
        return s;

    metric_def d;
    memset(&d, 0, sizeof(d));
    static const char *const skip[] = {"tenantId", NULL};
    if ((s = metrics_def_apply(&d, body, true, skip, err)) != AN_OK)
        goto done;
    d.tenant_id = tenant ? strdup(tenant) : NULL;
    if ((s = metrics_def_check_owner(&d, err)) != AN_OK || (s = describe(ctx, &d, err)) != AN_OK)
        goto done;
    if ((s = an_ulid_new_str(d.id, err)) != AN_OK)
        goto done;
    int64_t now = an_time_now_ms();
    d.created_by = strdup(req->auth->user ? req->auth->user : "");
    d.created_at_ms = d.updated_at_ms = now - now % 1000; /* stored in whole seconds */
    d.version = (uint64_t)now;

    redisContext *r = NULL;
    if ((s = metrics_redis_take(ctx->conns, &r, err)) == AN_OK)
        s = put_unique(ctx, r, &d, true, err);
    metrics_redis_put(ctx->conns, r);
    if (s == AN_OK) {
        an_request_log(req, AN_LOG_INFO, "metric %s created (%s)", d.id, d.name);
        *data = metrics_def_to_json(&d);
    }
done:
    metrics_def_free(&d);
    return s;
}

/* -------------------------------------------------------------------- get */

an_status metrics_handle_get(an_request *req, cJSON **data, an_error *err)
{
    metrics_ctx *ctx = req->ctx;
    static const char *const allowed[] = {"id", NULL};
    const char *id = NULL;
    an_status s = only_members(req->body, allowed, err);
    if (s == AN_OK)
        s = id_member(req->body, "id", &id, err);
    if (s != AN_OK)
        return s;
    metric_def d;
    if ((s = load_def(ctx, id, false, NULL, &d, err)) != AN_OK)
        return s;
    if (visible(req->auth, &d))
        *data = metrics_def_to_json(&d);
    else
        s = not_found(id, err);
    metrics_def_free(&d);
    return s;
}

/* ------------------------------------------------------------------- list */

an_status metrics_handle_list(an_request *req, cJSON **data, an_error *err)
{
    metrics_ctx *ctx = req->ctx;
    const cJSON *body = req->body;
    static const char *const allowed[] = {"status",   "pageSize",        "pageToken",
                                          "tenantId", "includePlatform", NULL};
    an_status s = only_members(body, allowed, err);
    if (s != AN_OK)
        return s;
    store_list_opts o = {.include_platform = true, .limit = PAGE_DEFAULT};
    bool given;
    if ((s = tenant_member(body, &given, &o.tenant, err)) != AN_OK)
        return s;
    if (!given)
        o.tenant = req->auth->tenant;
    /* platform metrics (tenant NULL) are readable by everyone */
    if (o.tenant && (s = an_auth_require_tenant(req->auth, o.tenant, err)) != AN_OK)
        return s;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "status");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v) ||
            (strcmp(v->valuestring, "active") != 0 && strcmp(v->valuestring, "deprecated") != 0))
            return an_error_field(err, AN_INVALID_ARGUMENT, "status",
                                  "status: expected active or deprecated");
        o.status = v->valuestring;
    }
    v = cJSON_GetObjectItemCaseSensitive(body, "pageSize");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsNumber(v) || v->valuedouble != (double)v->valueint || v->valueint < 1 ||
            v->valueint > PAGE_MAX)
            return an_error_field(err, AN_INVALID_ARGUMENT, "pageSize",
                                  "pageSize: expected a whole number, 1..%d", PAGE_MAX);
        o.limit = (size_t)v->valueint;
    }
    v = cJSON_GetObjectItemCaseSensitive(body, "pageToken");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsString(v) || !an_ulid_valid(v->valuestring))
            return an_error_field(err, AN_INVALID_ARGUMENT, "pageToken",
                                  "pageToken: not a token from a previous page");
        o.after_id = v->valuestring;
    }
    v = cJSON_GetObjectItemCaseSensitive(body, "includePlatform");
    if (v && !cJSON_IsNull(v)) {
        if (!cJSON_IsBool(v))
            return an_error_field(err, AN_INVALID_ARGUMENT, "includePlatform",
                                  "includePlatform: expected a boolean");
        o.include_platform = cJSON_IsTrue(v);
    }
    size_t want = o.limit;
    o.limit = want + 1; /* one more says whether there is a next page */
    an_ch *ch = NULL;
    metric_def *defs = NULL;
    size_t n = 0;
    if ((s = metrics_writer_take(ctx->conns, &ch, err)) == AN_OK) {
        s = metrics_store_list(ch, &o, &defs, &n, err);
        metrics_writer_put(ctx->conns, ch);
    }
    if (s != AN_OK)
        return s;
    cJSON *d = cJSON_CreateObject();
    cJSON *items = cJSON_AddArrayToObject(d, "items");
    for (size_t i = 0; i < n && i < want; i++)
        cJSON_AddItemToArray(items, metrics_def_to_json(&defs[i]));
    if (n > want)
        cJSON_AddStringToObject(d, "nextPageToken", defs[want - 1].id);
    else
        cJSON_AddNullToObject(d, "nextPageToken");
    for (size_t i = 0; i < n; i++)
        metrics_def_free(&defs[i]);
    free(defs);
    *data = d;
    return AN_OK;
}

/* ------------------------------------------------------ update, deprecate */

/* Change a metric under its lock: fresh record, visibility, expected
 * version, the change (body's fields, or deprecation), checks, write. */
static an_status change(an_request *req, bool deprecate, cJSON **data, an_error *err)
{
    metrics_ctx *ctx = req->ctx;
    const cJSON *body = req->body;
    if (!cJSON_IsObject(body))
        return an_error_set(err, AN_INVALID_ARGUMENT, "expected a JSON object");
    const char *id = NULL;
    an_status s = id_member(body, "id", &id, err);
    if (s != AN_OK)
        return s;
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(body, "expectedVersion");
    if (ev && !cJSON_IsNumber(ev))
        return an_error_field(err, AN_INVALID_ARGUMENT, "expectedVersion",
                              "expectedVersion: expected the version number read last");
    if (!ev && !deprecate)
        return an_error_field(err, AN_INVALID_ARGUMENT, "expectedVersion",
                              "expectedVersion: is required (the version read last)");
    if (deprecate) {
        static const char *const allowed[] = {"id", "expectedVersion", NULL};
        if ((s = only_members(body, allowed, err)) != AN_OK)
            return s;
    }

    redisContext *r = NULL;
    if ((s = metrics_redis_take(ctx->conns, &r, err)) != AN_OK)
        return s;
    an_lease lock;
    memset(&lock, 0, sizeof(lock));
    char *lock_key;
    if (asprintf(&lock_key, "%s:lock:metric:%s", ctx->redis_prefix, id) < 0)
        abort();
    metric_def cur, next;
    memset(&cur, 0, sizeof(cur));
    memset(&next, 0, sizeof(next));
    /* who may change it, before the lock: a caller who may not would
     * otherwise hold the owner's updates off (a metric's tenant never
     * changes, so the fresh definition read under the lock needs no
     * second check) */
    if ((s = load_def(ctx, id, false, r, &cur, err)) != AN_OK)
        goto out;
    s = visible(req->auth, &cur) ? an_auth_require_tenant(req->auth, cur.tenant_id, err)
                                 : not_found(id, err);
    metrics_def_free(&cur);
    memset(&cur, 0, sizeof(cur));
    if (s != AN_OK)
        goto out;
    if ((s = lock_take(r, &lock, lock_key, err)) != AN_OK)
        goto out;
    if ((s = load_def(ctx, id, true, r, &cur, err)) != AN_OK)
        goto out;
    if (ev && (uint64_t)ev->valuedouble != cur.version) {
        s = an_error_field(err, AN_FAILED_PRECONDITION, "expectedVersion",
                           "version conflict: the metric is at version %llu, not %.0f",
                           (unsigned long long)cur.version, ev->valuedouble);
        goto out;
    }
    if (deprecate && strcmp(cur.status, "deprecated") == 0) {
        *data = metrics_def_to_json(&cur); /* already: nothing to write */
        goto out;
    }
    metrics_def_copy(&next, &cur);
    if (deprecate) {
        free(next.status);
        next.status = strdup("deprecated");
    } else {
        static const char *const skip[] = {"id", "expectedVersion", NULL};
        if ((s = metrics_def_apply(&next, body, false, skip, err)) != AN_OK ||
            (s = metrics_def_check_owner(&next, err)) != AN_OK)
            goto out;
        /* what the template runs with changed: ClickHouse checks it again */
        if (cJSON_GetObjectItemCaseSensitive(body, "query") ||
            cJSON_GetObjectItemCaseSensitive(body, "schedule") ||
            cJSON_GetObjectItemCaseSensitive(body, "materialize"))
            if ((s = describe(ctx, &next, err)) != AN_OK)
                goto out;
    }
    int64_t now = an_time_now_ms();
    next.updated_at_ms = now - now % 1000;
    next.version = (uint64_t)now > cur.version ? (uint64_t)now : cur.version + 1;
    s = put_unique(ctx, r, &next, strcmp(next.name, cur.name) != 0, err);
    if (s == AN_OK) {
        an_request_log(req, AN_LOG_INFO, "metric %s %s, version %llu", id,
                       deprecate ? "deprecated" : "updated", (unsigned long long)next.version);
        *data = metrics_def_to_json(&next);
    }
out:
    if (an_lease_held(&lock))
        an_lease_release(r, &lock, NULL);
    metrics_redis_put(ctx->conns, r);
    free(lock_key);
    metrics_def_free(&cur);
    metrics_def_free(&next);
    return s;
}

an_status metrics_handle_update(an_request *req, cJSON **data, an_error *err)
{
    return change(req, false, data, err);
}

an_status metrics_handle_deprecate(an_request *req, cJSON **data, an_error *err)
{
    return change(req, true, data, err);
}

/* ------------------------------------------------------------------ query */

/* Whose events a query reads: q->tenant, or every tenant. */
static an_status query_scope(const an_request *req, const cJSON *body, const metric_def *d,
                             query_request *q, an_error *err)
{
    bool given;
    const char *tenant;
    an_status s = tenant_member(body, &given, &tenant, err);
    if (s != AN_OK)
        return s;
    const cJSON *all = cJSON_GetObjectItemCaseSensitive(body, "allTenants");
    if (all && !cJSON_IsNull(all) && !cJSON_IsBool(all))
        return an_error_field(err, AN_INVALID_ARGUMENT, "allTenants",
                              "allTenants: expected a boolean");
    const cJSON *br = cJSON_GetObjectItemCaseSensitive(body, "breakdown");
    q->all_tenants = cJSON_IsTrue(all);
    if (q->all_tenants) {
        if (!an_auth_is_platform_admin(req->auth))
            return an_error_field(err, AN_PERMISSION_DENIED, "allTenants",
                                  "allTenants: only the platform:admin scope queries across "
                                  "tenants");
        if (d->tenant_id)
            return an_error_field(err, AN_INVALID_ARGUMENT, "allTenants",
                                  "allTenants: only platform metrics aggregate across tenants");
        if (given)
            return an_error_field(err, AN_INVALID_ARGUMENT, "tenantId",
                                  "tenantId: give tenantId or allTenants, not both");
        if (br && !cJSON_IsNull(br)) {
            if (!cJSON_IsString(br) ||
                (strcmp(br->valuestring, "tenant") && strcmp(br->valuestring, "total")))
                return an_error_field(err, AN_INVALID_ARGUMENT, "breakdown",
                                      "breakdown: expected tenant or total");
            q->per_tenant = strcmp(br->valuestring, "tenant") == 0;
        }
        q->params->tenant_dimension = q->per_tenant;
        q->tenant = NULL;
        return AN_OK;
    }
    if (br && !cJSON_IsNull(br))
        return an_error_field(err, AN_INVALID_ARGUMENT, "breakdown",
                              "breakdown: only with allTenants");
    if (given && !tenant)
        return an_error_field(err, AN_INVALID_ARGUMENT, "tenantId",
                              "tenantId: a query reads one tenant's events (or allTenants)");
    if (d->tenant_id) {
        /* a tenant's metric reads only its owner's events */
        if (given && strcmp(tenant, d->tenant_id) != 0)
            return an_error_field(err, AN_INVALID_ARGUMENT, "tenantId",
                                  "tenantId: a tenant's metric reads only its own tenant's events");
        q->tenant = d->tenant_id;
    } else {
        q->tenant = given ? tenant : req->auth->tenant;
        if (!q->tenant)
            return an_error_field(err, AN_INVALID_ARGUMENT, "tenantId",
                                  "tenantId: the caller has no tenant: give tenantId or "
                                  "allTenants");
    }
    return an_auth_require_tenant(req->auth, q->tenant, err);
}

an_status metrics_handle_query(an_request *req, cJSON **data, an_error *err)
{
    metrics_ctx *ctx = req->ctx;
    const cJSON *body = req->body;
    static const char *const allowed[] = {
        "metricId", "from",  "to",       "granularity", "dimensions", "filters", "fill",
        "source",   "cache", "tenantId", "allTenants",  "breakdown",  NULL,
    };
    const char *id = NULL;
    an_status s = only_members(body, allowed, err);
    if (s == AN_OK)
        s = id_member(body, "metricId", &id, err);
    if (s != AN_OK)
        return s;
    an_template_params params;
    if ((s = an_template_params_from_json(body, &params, err)) != AN_OK)
        return s;
    query_request q;
    memset(&q, 0, sizeof(q));
    q.params = &params;
    q.max_rows = (size_t)ctx->max_rows;
    metric_def d;
    memset(&d, 0, sizeof(d));
    if ((s = metrics_query_options(body, &q, err)) != AN_OK)
        goto out;
    if ((s = load_def(ctx, id, false, NULL, &d, err)) != AN_OK) {
        if (s == AN_NOT_FOUND)
            an_error_field(err, AN_NOT_FOUND, "metricId", "metric %s not found", id);
        goto out;
    }
    if (!visible(req->auth, &d)) {
        s = an_error_field(err, AN_NOT_FOUND, "metricId", "metric %s not found", id);
        goto out;
    }
    if ((s = query_scope(req, body, &d, &q, err)) != AN_OK)
        goto out;
    q.def = &d;
    s = metrics_query_run(ctx, &q, data, err);
out:
    metrics_def_free(&d);
    an_template_params_free(&params);
    return s;
}

/* ---------------------------------------------------------------- preview */

an_status metrics_handle_preview(an_request *req, cJSON **data, an_error *err)
{
    metrics_ctx *ctx = req->ctx;
    const cJSON *body = req->body;
    static const char *const allowed[] = {"query",       "unit",       "from",    "to",
                                          "granularity", "dimensions", "filters", "fill",
                                          "limit",       "tenantId",   NULL};
    an_status s = only_members(body, allowed, err);
    if (s != AN_OK)
        return s;
    if (!body)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query", "query: is required");
    bool given;
    const char *tenant;
    if ((s = tenant_member(body, &given, &tenant, err)) != AN_OK)
        return s;
    if (!given)
        tenant = req->auth->tenant;
    if (!tenant)
        return an_error_field(err, AN_INVALID_ARGUMENT, "tenantId",
                              "tenantId: a preview reads one tenant's events");
    if ((s = an_auth_require_tenant(req->auth, tenant, err)) != AN_OK)
        return s;
    size_t limit = 20;
    const cJSON *lv = cJSON_GetObjectItemCaseSensitive(body, "limit");
    if (lv && !cJSON_IsNull(lv)) {
        if (!cJSON_IsNumber(lv) || lv->valuedouble != (double)lv->valueint || lv->valueint < 1 ||
            lv->valueint > ctx->preview_max_rows)
            return an_error_field(err, AN_INVALID_ARGUMENT, "limit",
                                  "limit: expected a whole number, 1..%lld", ctx->preview_max_rows);
        limit = (size_t)lv->valueint;
    }
    if (!cJSON_GetObjectItemCaseSensitive(body, "query"))
        return an_error_field(err, AN_INVALID_ARGUMENT, "query", "query: is required");

    /* A transient metric: the template and unit checked as for create. */
    metric_def d;
    memset(&d, 0, sizeof(d));
    an_template_params params;
    memset(&params, 0, sizeof(params));
    cJSON *only = cJSON_CreateObject();
    cJSON_AddItemToObject(only, "query",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(body, "query"), 1));
    const cJSON *unit = cJSON_GetObjectItemCaseSensitive(body, "unit");
    cJSON_AddItemToObject(only, "unit",
                          unit ? cJSON_Duplicate(unit, 1) : cJSON_CreateString("count"));
    cJSON_AddStringToObject(only, "name", "preview");
    s = metrics_def_apply(&d, only, true, NULL, err);
    cJSON_Delete(only);
    if (s != AN_OK)
        goto out;
    d.tenant_id = strdup(tenant);
    if ((s = an_template_params_from_json(body, &params, err)) != AN_OK)
        goto out;
    query_request q;
    memset(&q, 0, sizeof(q));
    if ((s = metrics_query_options(body, &q, err)) != AN_OK)
        goto out;
    q.def = &d;
    q.params = &params;
    q.tenant = tenant;
    q.preview = true;
    q.use_cache = false;
    q.source = QUERY_SOURCE_LIVE;
    q.max_rows = limit;
    s = metrics_query_run(ctx, &q, data, err);
out:
    metrics_def_free(&d);
    an_template_params_free(&params);
    return s;
}
