/*
 * api.c - the endpoints on analytics.exports.*: create, get, list, cancel.
 *
 * Every verb acts on the caller's tenant (the JWT's tid); a platform admin
 * may name another with "tenantId". Jobs are visible to every user of their
 * tenant; list filters by requester and status. See docs/exports.md for
 * the requests and replies.
 */
#include "exports/exports.h"

#include "common/sql.h"
#include "common/timeutil.h"
#include "common/ulid.h"

#include <stdlib.h>
#include <string.h>

#define MAX_QUERY_BYTES 65536
#define MAX_PAGE_SIZE   100
#define DEF_PAGE_SIZE   20

/* ------------------------------------------------------------ shared bits */

static const char *tenant_of(const an_request *req, an_error *err)
{
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(req->body, "tenantId");
    const char *tenant = req->auth->tenant;
    if (t && !cJSON_IsNull(t)) {
        if (!cJSON_IsString(t) || !*t->valuestring) {
            an_error_field(err, AN_INVALID_ARGUMENT, "tenantId", "tenantId: must be a string");
            return NULL;
        }
        tenant = t->valuestring;
    }
    if (!tenant || !*tenant) {
        an_error_field(err, AN_PERMISSION_DENIED, "tenantId",
                       "exports belong to a tenant: the caller has none (send tenantId)");
        return NULL;
    }
    if (an_auth_require_tenant(req->auth, tenant, err) != AN_OK)
        return NULL;
    return tenant;
}

/* Refuse keys other than the allowed ones (a typo should not pass). */
static an_status only_keys(const cJSON *body, const char *const *keys, an_error *err)
{
    if (body && !cJSON_IsObject(body))
        return an_error_set(err, AN_INVALID_ARGUMENT, "the request body must be a JSON object");
    for (const cJSON *k = body ? body->child : NULL; k; k = k->next) {
        bool ok = false;
        for (size_t i = 0; keys[i]; i++)
            ok = ok || strcmp(keys[i], k->string) == 0;
        if (!ok)
            return an_error_field(err, AN_INVALID_ARGUMENT, k->string, "%s: unknown field",
                                  k->string);
    }
    return AN_OK;
}

static const char *id_of(const an_request *req, an_error *err)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(req->body, "id");
    if (!cJSON_IsString(id) || !an_ulid_valid(id->valuestring)) {
        an_error_field(err, AN_INVALID_ARGUMENT, "id", "id: must be an export id (a ULID)");
        return NULL;
    }
    return id->valuestring;
}

/* The job a get or cancel names ({id, tenantId?}, nothing else), checked,
 * and a ClickHouse client to read it with. */
static an_status job_ref(an_request *req, const char **tenant, const char **id, an_ch **ch,
                         an_error *err)
{
    static const char *const keys[] = {"id", "tenantId", NULL};
    if (only_keys(req->body, keys, err) != AN_OK)
        return err->code;
    *tenant = tenant_of(req, err);
    *id = *tenant ? id_of(req, err) : NULL;
    if (!*id)
        return err->code;
    *ch = exports_ctx_ch(req->ctx, err);
    return *ch ? AN_OK : err->code;
}

/* A cancel of an export that has reached status (or another claimed it). */
static an_status not_cancellable(const char *id, const char *status, an_error *err)
{
    return an_error_set(err, AN_FAILED_PRECONDITION,
                        "export %s is %s: only queued or running exports can be cancelled", id,
                        status);
}

static void add_time(cJSON *o, const char *name, int64_t ms)
{
    char ts[AN_TIME_ISO_LEN];
    if (ms > 0 && an_time_format_iso(ms, ts, NULL) == AN_OK)
        cJSON_AddStringToObject(o, name, ts);
    else
        cJSON_AddNullToObject(o, name);
}

an_status exports_output_url(exports_ctx *x, const exports_job *j, an_buf *out, an_error *err)
{
    if (strcmp(j->status, EXPORTS_STATUS_COMPLETED) != 0 || !j->file_key || !*j->file_key)
        return an_error_set(err, AN_FAILED_PRECONDITION, "export %s has no file", j->id);
    int64_t now = an_time_now_ms();
    if (j->expires_at > 0 && now >= j->expires_at)
        return an_error_set(err, AN_FAILED_PRECONDITION, "the file of export %s expired", j->id);
    int64_t until = now + x->cfg.url_ttl_ms;
    if (j->expires_at > 0 && until > j->expires_at)
        until = j->expires_at;
    if (x->links && !*x->cfg.public_url) {
        char base[64];
        snprintf(base, sizeof(base), "http://127.0.0.1:%d", an_service_http_port(x->svc));
        exports_links_set_base(x->links, base);
    }
    return x->storage->ops->url(x->storage, j->file_key, until / 1000, out, err);
}

cJSON *exports_job_json(exports_ctx *x, const exports_job *j)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", j->id);
    cJSON_AddStringToObject(o, "tenantId", j->tenant_id);
    cJSON_AddStringToObject(o, "requestedBy", j->requested_by);
    cJSON_AddStringToObject(o, "query", j->query);
    cJSON_AddStringToObject(o, "format", exports_format_name(j->format));
    cJSON *params = cJSON_Parse(j->params ? j->params : "{}");
    cJSON *f = cJSON_DetachItemFromObjectCaseSensitive(params, "filters");
    cJSON_AddItemToObject(o, "filters", f ? f : cJSON_CreateArray());
    cJSON_AddItemToObject(o, "parameters", params ? params : cJSON_CreateObject());
    cJSON_AddStringToObject(o, "status", j->status);
    an_buf url = AN_BUF_INIT;
    if (x && exports_output_url(x, j, &url, NULL) == AN_OK)
        cJSON_AddStringToObject(o, "outputUrl", an_buf_str(&url));
    else
        cJSON_AddNullToObject(o, "outputUrl");
    an_buf_free(&url);
    add_time(o, "createdAt", j->created_at);
    add_time(o, "startedAt", j->started_at);
    add_time(o, "completedAt", exports_status_terminal(j->status) ? j->finished_at : 0);
    add_time(o, "expiresAt", strcmp(j->status, EXPORTS_STATUS_COMPLETED) == 0 ? j->expires_at : 0);
    cJSON *p = cJSON_AddObjectToObject(o, "progress");
    cJSON_AddNumberToObject(p, "rows", (double)j->rows);
    cJSON_AddNumberToObject(p, "bytes", (double)j->bytes);
    cJSON_AddNumberToObject(o, "attempts", j->attempts);
    if (j->error_code && *j->error_code) {
        cJSON *e = cJSON_AddObjectToObject(o, "error");
        cJSON_AddStringToObject(e, "code", j->error_code);
        cJSON_AddStringToObject(e, "message", j->error ? j->error : "");
    } else {
        cJSON_AddNullToObject(o, "error");
    }
    return o;
}

/* ----------------------------------------------------------------- create */

static an_status handle_create(an_request *req, cJSON **data, an_error *err)
{
    exports_ctx *x = req->ctx;
    static const char *const keys[] = {"query",       "format",     "filters",  "from", "to",
                                       "granularity", "dimensions", "tenantId", NULL};
    if (only_keys(req->body, keys, err) != AN_OK)
        return err->code;
    const char *tenant = tenant_of(req, err);
    if (!tenant)
        return err->code;
    const cJSON *q = cJSON_GetObjectItemCaseSensitive(req->body, "query");
    const cJSON *fmt = cJSON_GetObjectItemCaseSensitive(req->body, "format");
    if (!cJSON_IsString(q) || !*q->valuestring)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                              "query: required, a SQL template over {{events}}");
    if (strlen(q->valuestring) > MAX_QUERY_BYTES)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query", "query: at most %d bytes",
                              MAX_QUERY_BYTES);
    exports_format f;
    if (!cJSON_IsString(fmt) || exports_format_parse(fmt->valuestring, &f) != 0)
        return an_error_field(err, AN_INVALID_ARGUMENT, "format",
                              "format: must be csv, xlsx or json");
    char *canonical = NULL;
    if (exports_params_check(req->body, &canonical, err) != AN_OK)
        return err->code;
    /* The template is checked and bound now, so a bad one never queues. */
    an_buf bound = AN_BUF_INIT;
    an_status s = exports_bind_query(tenant, q->valuestring, canonical, &bound, err);
    an_buf_free(&bound);
    if (s != AN_OK) {
        free(canonical);
        return s;
    }

    exports_job j = {0};
    char id[AN_ULID_STRLEN];
    an_ulid u;
    if (an_ulid_new(&u, err) != AN_OK) {
        free(canonical);
        return err->code;
    }
    an_ulid_format(&u, id);
    j.tenant_id = strdup(tenant);
    j.id = strdup(id);
    j.requested_by = strdup(req->auth->user ? req->auth->user : "");
    j.format = f;
    j.status = strdup(EXPORTS_STATUS_QUEUED);
    j.query = strdup(q->valuestring);
    j.params = canonical;
    j.correlation_id = strdup(req->correlation_id);
    j.file_key = strdup("");
    j.error_code = strdup("");
    j.error = strdup("");
    j.created_at = an_ulid_time_ms(&u);

    an_ch *ch = exports_ctx_ch(x, err);
    struct redisContext *rc = ch ? exports_ctx_redis(x, err) : NULL;
    if (!ch || !rc) {
        exports_job_clear(&j);
        return err->code ? err->code : AN_UNAVAILABLE;
    }
    s = exports_slot_take(x, rc, tenant, j.id, err);
    if (s == AN_OK)
        s = exports_store_put(ch, &j, err);
    if (s == AN_OK) {
        s = exports_ctx_queue_push(x, &j, err);
        if (s != AN_OK) {
            /* Not queued: the record says so rather than waiting forever. */
            an_error e2;
            const char *other = NULL;
            if (exports_claim_final(x, rc, j.id, EXPORTS_STATUS_FAILED, &other, &e2) == AN_OK) {
                free(j.status);
                j.status = strdup(EXPORTS_STATUS_FAILED);
                free(j.error_code);
                j.error_code = strdup("unavailable");
                free(j.error);
                j.error = strdup("the job could not be queued");
                j.finished_at = an_time_now_ms();
                exports_store_put(ch, &j, NULL);
            }
        }
    }
    if (s != AN_OK) {
        if (s != AN_RESOURCE_EXHAUSTED)
            exports_slot_release(x, exports_ctx_redis(x, NULL), tenant, j.id);
        exports_job_clear(&j);
        return s;
    }
    an_request_log(req, AN_LOG_INFO, "export %s queued (%s)", j.id, exports_format_name(f));
    *data = exports_job_json(x, &j);
    exports_job_clear(&j);
    return AN_OK;
}

/* ------------------------------------------------------------------- get */

static an_status handle_get(an_request *req, cJSON **data, an_error *err)
{
    exports_ctx *x = req->ctx;
    const char *tenant = NULL, *id = NULL;
    an_ch *ch = NULL;
    if (job_ref(req, &tenant, &id, &ch, err) != AN_OK)
        return err->code;
    exports_job j = {0};
    an_status s = exports_store_get(ch, tenant, id, &j, err);
    if (s != AN_OK)
        return s;
    *data = exports_job_json(x, &j);
    exports_job_clear(&j);
    return AN_OK;
}

/* ------------------------------------------------------------------ list */

static an_status handle_list(an_request *req, cJSON **data, an_error *err)
{
    exports_ctx *x = req->ctx;
    static const char *const keys[] = {"requestedBy", "status",   "pageSize",
                                       "pageToken",   "tenantId", NULL};
    if (only_keys(req->body, keys, err) != AN_OK)
        return err->code;
    const char *tenant = tenant_of(req, err);
    if (!tenant)
        return err->code;
    exports_list_query lq = {.tenant_id = tenant, .limit = DEF_PAGE_SIZE};
    const cJSON *by = cJSON_GetObjectItemCaseSensitive(req->body, "requestedBy");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(req->body, "status");
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(req->body, "pageSize");
    const cJSON *pt = cJSON_GetObjectItemCaseSensitive(req->body, "pageToken");
    if (by && !cJSON_IsNull(by)) {
        if (!cJSON_IsString(by))
            return an_error_field(err, AN_INVALID_ARGUMENT, "requestedBy",
                                  "requestedBy: must be a string (a user id)");
        lq.requested_by = by->valuestring;
    }
    if (st && !cJSON_IsNull(st)) {
        if (!cJSON_IsString(st) || !exports_status_valid(st->valuestring))
            return an_error_field(err, AN_INVALID_ARGUMENT, "status",
                                  "status: must be queued, running, completed, failed or "
                                  "cancelled");
        lq.status = st->valuestring;
    }
    if (ps && !cJSON_IsNull(ps)) {
        if (!cJSON_IsNumber(ps) || ps->valuedouble < 1 || ps->valuedouble > MAX_PAGE_SIZE ||
            ps->valuedouble != (int)ps->valuedouble)
            return an_error_field(err, AN_INVALID_ARGUMENT, "pageSize",
                                  "pageSize: an integer from 1 to %d", MAX_PAGE_SIZE);
        lq.limit = (int)ps->valuedouble;
    }
    if (pt && !cJSON_IsNull(pt) && !(cJSON_IsString(pt) && !*pt->valuestring)) {
        if (!cJSON_IsString(pt) || !an_ulid_valid(pt->valuestring))
            return an_error_field(err, AN_INVALID_ARGUMENT, "pageToken",
                                  "pageToken: must be the nextPageToken of a previous page");
        lq.before_id = pt->valuestring;
    }
    an_ch *ch = exports_ctx_ch(x, err);
    if (!ch)
        return err->code;
    exports_job *jobs = NULL;
    size_t n = 0;
    bool more = false;
    an_status s = exports_store_list(ch, &lq, &jobs, &n, &more, err);
    if (s != AN_OK)
        return s;
    cJSON *o = cJSON_CreateObject();
    cJSON *items = cJSON_AddArrayToObject(o, "items");
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(items, exports_job_json(x, &jobs[i]));
    if (more && n > 0)
        cJSON_AddStringToObject(o, "nextPageToken", jobs[n - 1].id);
    else
        cJSON_AddNullToObject(o, "nextPageToken");
    exports_jobs_free(jobs, n);
    *data = o;
    return AN_OK;
}

/* ---------------------------------------------------------------- cancel */

static an_status handle_cancel(an_request *req, cJSON **data, an_error *err)
{
    exports_ctx *x = req->ctx;
    const char *tenant = NULL, *id = NULL;
    an_ch *ch = NULL;
    if (job_ref(req, &tenant, &id, &ch, err) != AN_OK)
        return err->code;
    struct redisContext *rc = exports_ctx_redis(x, err);
    if (!rc)
        return err->code;
    exports_job j = {0};
    an_status s = exports_store_get(ch, tenant, id, &j, err);
    if (s != AN_OK)
        return s;
    if (exports_status_terminal(j.status)) {
        s = not_cancellable(id, j.status, err);
        exports_job_clear(&j);
        return s;
    }
    const char *other = NULL;
    s = exports_claim_final(x, rc, id, EXPORTS_STATUS_CANCELLED, &other, err);
    if (s == AN_ALREADY_EXISTS)
        s = not_cancellable(id, other, err);
    if (s == AN_OK) {
        /* The worker running it (if any) sees the claim within ~200 ms and
         * stops; this record wins over its last progress rows (store.c). */
        free(j.status);
        j.status = strdup(EXPORTS_STATUS_CANCELLED);
        j.finished_at = an_time_now_ms();
        s = exports_store_put(ch, &j, err);
        exports_slot_release(x, rc, tenant, id);
    }
    if (s == AN_OK) {
        an_request_log(req, AN_LOG_INFO, "export %s cancelled", id);
        *data = exports_job_json(x, &j);
    }
    exports_job_clear(&j);
    return s;
}

const an_endpoint exports_endpoints[] = {
    {"create", handle_create, 0, 0, "start an export job: {query, format, filters, from, to, ...}"},
    {"get", handle_get, 0, 0, "one export job with its progress and outputUrl: {id}"},
    {"list", handle_list, 0, 0, "the tenant's export jobs, newest first, paged"},
    {"cancel", handle_cancel, 0, 0, "cancel a queued or running export: {id}"},
    {0},
};
