/*
 * api.c - the endpoints of analytics.dashboards.* (docs/api.md, docs/dashboards.md).
 * Every handler works in the caller's tenant (a platform admin may name
 * another with "tenantId"); a dashboard of another tenant is simply not
 * found. Changes are optimistic: "version" (when given) must be the stored
 * version, else failed_precondition; each change writes version + 1.
 */
#include "common/buf.h"
#include "common/chart.h"
#include "common/timeutil.h"
#include "common/ulid.h"
#include "dashboards/dash.h"

#include <math.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *str_of(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static dash_ctx *ctx_of(const an_request *req)
{
    return req->ctx;
}

static an_status tenant_of(const an_request *req, const char **tenant, an_error *err)
{
    const char *t = str_of(req->body, "tenantId");
    if (!t)
        t = req->auth->tenant;
    if (!t || !*t)
        return an_error_field(err, AN_INVALID_ARGUMENT, "tenantId",
                              "the caller has no tenant: tenantId is required");
    an_status st = an_auth_require_tenant(req->auth, t, err);
    if (st == AN_OK)
        *tenant = t;
    return st;
}

/* The tenant and dashboard id (body.id, a ULID) a request names. */
static an_status target_of(const an_request *req, const char **tenant, const char **id,
                           an_error *err)
{
    an_status st = tenant_of(req, tenant, err);
    if (st != AN_OK)
        return st;
    *id = str_of(req->body, "id");
    if (!*id || !an_ulid_valid(*id))
        return an_error_field(err, AN_INVALID_ARGUMENT, "id", "id must be a dashboard id (ULID)");
    return AN_OK;
}

/* Load the dashboard named by body.id for viewing. */
static an_status load(const an_request *req, dash **out, an_error *err)
{
    *out = NULL;
    const char *tenant, *id;
    an_status st = target_of(req, &tenant, &id, err);
    if (st != AN_OK)
        return st;
    dash *d;
    st = dash_store_get(ctx_of(req), tenant, id, &d, err);
    if (st != AN_OK)
        return st;
    if (!dash_can_view(ctx_of(req), req->auth, d)) {
        dash_free(d);
        return an_error_set(err, AN_PERMISSION_DENIED, "you may not see dashboard %s", id);
    }
    *out = d;
    return AN_OK;
}

/* Load for a change: view and edit rights, expected version. */
static an_status load_for_edit(const an_request *req, dash **out, an_error *err)
{
    an_status st = load(req, out, err);
    if (st != AN_OK)
        return st;
    dash *d = *out;
    if (!dash_can_edit(ctx_of(req), req->auth, d)) {
        *out = NULL;
        an_error_set(err, AN_PERMISSION_DENIED,
                     "only the creator and tenant admins may change dashboard %s", d->id);
        dash_free(d);
        return AN_PERMISSION_DENIED;
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req->body, "version");
    if (v && (!cJSON_IsNumber(v) || (uint64_t)v->valuedouble != d->version)) {
        *out = NULL;
        an_error_field(err, AN_FAILED_PRECONDITION, "version",
                       "dashboard %s is at version %llu, not the one given", d->id,
                       (unsigned long long)d->version);
        dash_free(d);
        return AN_FAILED_PRECONDITION;
    }
    return AN_OK;
}

static an_status save(const an_request *req, dash *d, cJSON **data, an_error *err)
{
    d->version++;
    d->updated_at = time(NULL);
    an_status st = dash_store_put(ctx_of(req), d, err);
    if (st == AN_OK)
        *data = dash_to_json(d, true);
    return st;
}

static an_status check_name(const char *name, an_error *err)
{
    if (!name || !*name || strlen(name) > DASH_MAX_NAME)
        return an_error_field(err, AN_INVALID_ARGUMENT, "name",
                              "name is required, at most %d bytes", DASH_MAX_NAME);
    return AN_OK;
}

static an_status check_description(const cJSON *body, an_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "description");
    if (v && (!cJSON_IsString(v) || strlen(v->valuestring) > 4000))
        return an_error_field(err, AN_INVALID_ARGUMENT, "description",
                              "description must be a string of at most 4000 bytes");
    return AN_OK;
}

/* Does widget w keep the metric of old (same id checked by the caller)? A
 * widget that keeps its metric may keep a deprecated one. */
static bool keeps_metric(const cJSON *old, const cJSON *w)
{
    const char *ma = str_of(old, "metricId"), *mb = str_of(w, "metricId");
    return ma && mb && !strcmp(ma, mb);
}

static bool widget_id_taken(const cJSON *widgets, const char *id, const cJSON *except)
{
    const cJSON *w;
    cJSON_ArrayForEach(w, widgets)
    {
        const char *wid = str_of(w, "id");
        if (w != except && wid && id && !strcmp(wid, id))
            return true;
    }
    return false;
}

/* Validate every widget of arr (new ones) of a dashboard of tenant into a
 * new array *out. */
static an_status widgets_parse(const an_request *req, const char *tenant, const cJSON *arr,
                               const cJSON *old, cJSON **out, an_error *err)
{
    *out = cJSON_CreateArray();
    if (!arr)
        return AN_OK;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > DASH_MAX_WIDGETS)
        return an_error_field(err, AN_INVALID_ARGUMENT, "widgets",
                              "widgets must be an array of at most %d widgets", DASH_MAX_WIDGETS);
    const cJSON *w;
    int i = 0;
    cJSON_ArrayForEach(w, arr)
    {
        cJSON *nw = cJSON_Duplicate(w, 1);
        /* a widget that keeps the metric it had may keep a deprecated one */
        bool is_new = true;
        const cJSON *o;
        cJSON_ArrayForEach(o, old)
        {
            const char *a = str_of(o, "id"), *b = str_of(w, "id");
            if (a && b && !strcmp(a, b) && keeps_metric(o, w))
                is_new = false;
        }
        an_status st = dash_widget_validate(ctx_of(req), req, tenant, nw, is_new, err);
        if (st == AN_OK && widget_id_taken(*out, str_of(nw, "id"), NULL))
            st = an_error_field(err, AN_INVALID_ARGUMENT, "id", "widget id %s is used twice",
                                str_of(nw, "id"));
        if (st != AN_OK) {
            cJSON_Delete(nw);
            if (err) {
                char f[AN_ERROR_FIELD_MAX + 32];
                snprintf(f, sizeof(f), "widgets[%d].%s", i, err->field);
                snprintf(err->field, sizeof(err->field), "%.*s", (int)sizeof(err->field) - 1, f);
            }
            return st;
        }
        cJSON_AddItemToArray(*out, nw);
        i++;
    }
    return AN_OK;
}

static an_status handle_create(an_request *req, cJSON **data, an_error *err)
{
    const char *tenant;
    an_status st = tenant_of(req, &tenant, err);
    if (st != AN_OK)
        return st;
    const char *name = str_of(req->body, "name");
    if ((st = check_name(name, err)) != AN_OK || (st = check_description(req->body, err)) != AN_OK)
        return st;
    dash *d = calloc(1, sizeof(*d));
    char id[AN_ULID_STRLEN];
    st = an_ulid_new_str(id, err);
    if (st == AN_OK)
        st = dash_acl_parse(cJSON_GetObjectItemCaseSensitive(req->body, "accessControl"), &d->acl,
                            err);
    if (st == AN_OK)
        st = widgets_parse(req, tenant, cJSON_GetObjectItemCaseSensitive(req->body, "widgets"),
                           NULL, &d->widgets, err);
    if (st == AN_OK) {
        const char *desc = str_of(req->body, "description");
        d->tenant = strdup(tenant);
        d->id = strdup(id);
        d->name = strdup(name);
        d->description = strdup(desc ? desc : "");
        d->created_by = strdup(req->auth->user ? req->auth->user : "");
        d->created_at = time(NULL);
        d->version = 0;
        st = save(req, d, data, err);
    }
    dash_free(d);
    return st;
}

static an_status handle_get(an_request *req, cJSON **data, an_error *err)
{
    dash *d;
    an_status st = load(req, &d, err);
    if (st != AN_OK)
        return st;
    *data = dash_to_json(d, true);
    dash_free(d);
    return AN_OK;
}

typedef struct list_state {
    const an_request *req;
    cJSON *arr;
} list_state;

static void list_one(void *ud, dash *d)
{
    list_state *ls = ud;
    if (dash_can_view(ctx_of(ls->req), ls->req->auth, d)) {
        cJSON *j = dash_to_json(d, false);
        cJSON_AddNumberToObject(j, "widgetCount", cJSON_GetArraySize(d->widgets));
        cJSON_AddItemToArray(ls->arr, j);
    }
    dash_free(d);
}

static an_status handle_list(an_request *req, cJSON **data, an_error *err)
{
    const char *tenant;
    an_status st = tenant_of(req, &tenant, err);
    if (st != AN_OK)
        return st;
    cJSON *out = cJSON_CreateObject();
    list_state ls = {req, cJSON_AddArrayToObject(out, "dashboards")};
    st = dash_store_each(ctx_of(req), tenant, list_one, &ls, err);
    if (st != AN_OK) {
        cJSON_Delete(out);
        return st;
    }
    cJSON_AddNumberToObject(out, "count", cJSON_GetArraySize(ls.arr));
    *data = out;
    return AN_OK;
}

static an_status handle_update(an_request *req, cJSON **data, an_error *err)
{
    dash *d;
    an_status st = load_for_edit(req, &d, err);
    if (st != AN_OK)
        return st;
    const cJSON *b = req->body;
    if (cJSON_GetObjectItemCaseSensitive(b, "name")) {
        const char *name = str_of(b, "name");
        if ((st = check_name(name, err)) == AN_OK) {
            free(d->name);
            d->name = strdup(name);
        }
    }
    if (st == AN_OK && (st = check_description(b, err)) == AN_OK && str_of(b, "description")) {
        free(d->description);
        d->description = strdup(str_of(b, "description"));
    }
    const cJSON *acl = cJSON_GetObjectItemCaseSensitive(b, "accessControl");
    if (st == AN_OK && acl) {
        /* load_for_edit checked dash_can_edit, which also covers access. */
        cJSON *na = NULL;
        if ((st = dash_acl_parse(acl, &na, err)) == AN_OK) {
            cJSON_Delete(d->acl);
            d->acl = na;
        } else {
            cJSON_Delete(na);
        }
    }
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(b, "widgets");
    if (st == AN_OK && ws) {
        cJSON *nw = NULL;
        st = widgets_parse(req, d->tenant, ws, d->widgets, &nw, err);
        if (st == AN_OK) {
            cJSON_Delete(d->widgets);
            d->widgets = nw;
        } else {
            cJSON_Delete(nw);
        }
    }
    if (st == AN_OK)
        st = save(req, d, data, err);
    dash_free(d);
    return st;
}

static an_status handle_delete(an_request *req, cJSON **data, an_error *err)
{
    dash *d;
    an_status st = load_for_edit(req, &d, err);
    if (st != AN_OK)
        return st;
    d->deleted = true;
    cJSON *ignored = NULL;
    st = save(req, d, &ignored, err);
    cJSON_Delete(ignored);
    if (st == AN_OK) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", d->id);
        cJSON_AddBoolToObject(o, "deleted", true);
        cJSON_AddNumberToObject(o, "version", (double)d->version);
        *data = o;
    }
    dash_free(d);
    return st;
}

static int widget_index(const dash *d, const char *id)
{
    int i = 0;
    const cJSON *w;
    cJSON_ArrayForEach(w, d->widgets)
    {
        const char *wid = str_of(w, "id");
        if (id && wid && !strcmp(id, wid))
            return i;
        i++;
    }
    return -1;
}

static an_status handle_add_widget(an_request *req, cJSON **data, an_error *err)
{
    dash *d;
    an_status st = load_for_edit(req, &d, err);
    if (st != AN_OK)
        return st;
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(req->body, "widget");
    cJSON *nw = w ? cJSON_Duplicate(w, 1) : NULL;
    if (cJSON_GetArraySize(d->widgets) >= DASH_MAX_WIDGETS)
        st = an_error_field(err, AN_FAILED_PRECONDITION, "widget",
                            "a dashboard holds at most %d widgets", DASH_MAX_WIDGETS);
    else if (!nw)
        st = an_error_field(err, AN_INVALID_ARGUMENT, "widget", "widget is required");
    else
        st = dash_widget_validate(ctx_of(req), req, d->tenant, nw, true, err);
    if (st == AN_OK && widget_index(d, str_of(nw, "id")) >= 0)
        st = an_error_field(err, AN_ALREADY_EXISTS, "widget.id", "widget id %s exists",
                            str_of(nw, "id"));
    if (st == AN_OK) {
        const cJSON *at = cJSON_GetObjectItemCaseSensitive(req->body, "index");
        int n = cJSON_GetArraySize(d->widgets);
        int pos = cJSON_IsNumber(at) && at->valuedouble >= 0 && at->valuedouble < n
                      ? (int)at->valuedouble
                      : n;
        /* rebuilt rather than cJSON_InsertItemInArray, which drops the
         * item on Debian's cJSON 1.7.15 */
        cJSON *arr = cJSON_CreateArray();
        for (int k = 0; k <= n; k++) {
            if (k == pos)
                cJSON_AddItemToArray(arr, nw);
            if (k < n)
                cJSON_AddItemToArray(arr, cJSON_Duplicate(cJSON_GetArrayItem(d->widgets, k), 1));
        }
        cJSON_Delete(d->widgets);
        d->widgets = arr;
        nw = NULL;
        st = save(req, d, data, err);
    }
    cJSON_Delete(nw);
    dash_free(d);
    return st;
}

static an_status handle_update_widget(an_request *req, cJSON **data, an_error *err)
{
    dash *d;
    an_status st = load_for_edit(req, &d, err);
    if (st != AN_OK)
        return st;
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(req->body, "widget");
    int i = widget_index(d, str_of(w, "id"));
    cJSON *nw = NULL;
    if (!cJSON_IsObject(w) || !str_of(w, "id"))
        st = an_error_field(err, AN_INVALID_ARGUMENT, "widget.id", "widget with an id is required");
    else if (i < 0)
        st = an_error_field(err, AN_NOT_FOUND, "widget.id", "widget %s not found", str_of(w, "id"));
    if (st == AN_OK) {
        bool is_new = !keeps_metric(cJSON_GetArrayItem(d->widgets, i), w);
        nw = cJSON_Duplicate(w, 1);
        st = dash_widget_validate(ctx_of(req), req, d->tenant, nw, is_new, err);
    }
    if (st == AN_OK) {
        cJSON_ReplaceItemInArray(d->widgets, i, nw);
        nw = NULL;
        st = save(req, d, data, err);
    }
    cJSON_Delete(nw);
    dash_free(d);
    return st;
}

static an_status handle_remove_widget(an_request *req, cJSON **data, an_error *err)
{
    dash *d;
    an_status st = load_for_edit(req, &d, err);
    if (st != AN_OK)
        return st;
    int i = widget_index(d, str_of(req->body, "widgetId"));
    if (i < 0)
        st = an_error_field(err, AN_NOT_FOUND, "widgetId", "widget not found");
    else {
        cJSON_DeleteItemFromArray(d->widgets, i);
        st = save(req, d, data, err);
    }
    dash_free(d);
    return st;
}

static an_status handle_reorder(an_request *req, cJSON **data, an_error *err)
{
    dash *d;
    an_status st = load_for_edit(req, &d, err);
    if (st != AN_OK)
        return st;
    const cJSON *order = cJSON_GetObjectItemCaseSensitive(req->body, "order");
    int n = cJSON_GetArraySize(d->widgets);
    if (!cJSON_IsArray(order) || cJSON_GetArraySize(order) != n)
        st = an_error_field(err, AN_INVALID_ARGUMENT, "order",
                            "order must list every widget id of the dashboard once");
    cJSON *nw = cJSON_CreateArray();
    const cJSON *it;
    cJSON_ArrayForEach(it, order)
    {
        if (st != AN_OK)
            break;
        int i = cJSON_IsString(it) ? widget_index(d, it->valuestring) : -1;
        if (i < 0 || widget_id_taken(nw, it->valuestring, NULL)) {
            st = an_error_field(err, AN_INVALID_ARGUMENT, "order",
                                "order must list every widget id of the dashboard once");
            break;
        }
        cJSON_AddItemToArray(nw, cJSON_Duplicate(cJSON_GetArrayItem(d->widgets, i), 1));
    }
    if (st == AN_OK) {
        cJSON_Delete(d->widgets);
        d->widgets = nw;
        nw = NULL;
        st = save(req, d, data, err);
    }
    cJSON_Delete(nw);
    dash_free(d);
    return st;
}

static bool has_widget_error(const cJSON *r)
{
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItemCaseSensitive(r, "widgets"))
    {
        if (cJSON_GetObjectItemCaseSensitive(w, "error"))
            return true;
    }
    return false;
}

/* Render (all widgets, or one) through the cache. extra (may be NULL) is
 * added to the key: how the result was post-processed (format, size). */
static an_status render_cached(an_request *req, const dash *d, const cJSON *params,
                               const char *widget, const cJSON *extra,
                               an_status (*post)(const an_request *, cJSON *, const cJSON *,
                                                 an_error *),
                               cJSON **data, an_error *err)
{
    dash_ctx *c = ctx_of(req);
    cJSON *keyp = cJSON_Duplicate(params, 1);
    if (extra)
        cJSON_AddItemToObject(keyp, "render", cJSON_Duplicate(extra, 1));
    char key[512];
    dash_cache_key(d, widget, keyp, key, sizeof(key));
    cJSON_Delete(keyp);
    bool no_cache = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(req->body, "noCache"));
    char *hit = NULL;
    if (!no_cache && dash_cache_get(c, key, &hit) == AN_OK) {
        cJSON *r = cJSON_Parse(hit);
        free(hit);
        if (r) {
            an_prom_counter_inc(c->cache_hits);
            cJSON_ReplaceItemInObjectCaseSensitive(r, "cached", cJSON_CreateTrue());
            *data = r;
            return AN_OK;
        }
    }
    an_prom_counter_inc(c->cache_misses);
    cJSON *r = NULL;
    an_status st = dash_render(c, req, d, params, widget, &r, err);
    if (st == AN_OK && post)
        st = post(req, r, extra, err);
    if (st != AN_OK) {
        cJSON_Delete(r);
        return st;
    }
    cJSON_AddBoolToObject(r, "cached", false);
    if (!has_widget_error(r)) {
        char *s = cJSON_PrintUnformatted(r);
        dash_cache_put(c, key, s);
        free(s);
    }
    *data = r;
    return AN_OK;
}

static an_status handle_render(an_request *req, cJSON **data, an_error *err)
{
    cJSON *params = NULL;
    an_status st = dash_params_parse(req->body, &params, err);
    dash *d = NULL;
    if (st == AN_OK)
        st = load(req, &d, err);
    if (st == AN_OK)
        st = render_cached(req, d, params, NULL, NULL, NULL, data, err);
    cJSON_Delete(params);
    dash_free(d);
    return st;
}

/* ---- render-widget as a picture */

static const double *values_of(const cJSON *arr, size_t *n)
{
    *n = (size_t)cJSON_GetArraySize(arr);
    double *v = calloc(*n + 1, sizeof(*v));
    size_t i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        v[i++] = cJSON_IsNumber(it) ? it->valuedouble : 0;
    }
    return v;
}

/* Short x labels: "2026-11-27T00:00:00Z" -> "11-27" (day+), "27 14h" (hour). */
static char *short_label(const char *s, const char *granularity)
{
    char buf[32];
    if (strlen(s) >= 16 && s[4] == '-' && s[10] == 'T') {
        if (granularity && !strcmp(granularity, "hour"))
            snprintf(buf, sizeof(buf), "%.2s %.2sh", s + 8, s + 11);
        else if (granularity && !strcmp(granularity, "month"))
            snprintf(buf, sizeof(buf), "%.7s", s);
        else
            snprintf(buf, sizeof(buf), "%.5s", s + 5);
        return strdup(buf);
    }
    return strdup(s);
}

static an_status png_post(const an_request *req, cJSON *r, const cJSON *extra, an_error *err)
{
    (void)req;
    cJSON *w = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(r, "widgets"), 0);
    if (cJSON_GetObjectItemCaseSensitive(w, "error"))
        return AN_OK; /* the widget's error is the answer */
    const char *type = str_of(w, "type");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(w, "data");
    int width = (int)cJSON_GetObjectItemCaseSensitive(extra, "width")->valuedouble;
    int height = (int)cJSON_GetObjectItemCaseSensitive(extra, "height")->valuedouble;
    an_chart ch = {0};
    ch.title = str_of(w, "title") ? str_of(w, "title") : str_of(w, "metricId");
    ch.unit = str_of(data, "unit");
    char sub[96];
    const char *f = str_of(w, "from") ? str_of(w, "from") : "";
    const char *t = str_of(w, "to") ? str_of(w, "to") : "";
    /* "2026-11-26T00:00:00Z" -> "2026-11-26 00:00" */
    snprintf(sub, sizeof(sub), "%.10s %.5s  to  %.10s %.5s UTC", f, strlen(f) > 11 ? f + 11 : "", t,
             strlen(t) > 11 ? t + 11 : "");
    ch.subtitle = sub;
    size_t nl = 0, ns = 0;
    char **labels = NULL;
    an_chart_series *series = NULL;
    if (!strcmp(type, "line") || !strcmp(type, "bar")) {
        ch.type = !strcmp(type, "line") ? AN_CHART_LINE : AN_CHART_BAR;
        const cJSON *bk = cJSON_GetObjectItemCaseSensitive(data, "buckets");
        nl = (size_t)cJSON_GetArraySize(bk);
        labels = calloc(nl + 1, sizeof(*labels));
        for (size_t i = 0; i < nl; i++)
            labels[i] = short_label(cJSON_GetArrayItem(bk, (int)i)->valuestring,
                                    str_of(data, "granularity"));
        const cJSON *ss = cJSON_GetObjectItemCaseSensitive(data, "series");
        ns = (size_t)cJSON_GetArraySize(ss);
        series = calloc(ns + 1, sizeof(*series));
        for (size_t i = 0; i < ns; i++) {
            const cJSON *s = cJSON_GetArrayItem(ss, (int)i);
            series[i].name = str_of(s, "name");
            series[i].values =
                values_of(cJSON_GetObjectItemCaseSensitive(s, "values"), &series[i].n);
        }
    } else if (!strcmp(type, "pie")) {
        ch.type = AN_CHART_PIE;
        const cJSON *sl = cJSON_GetObjectItemCaseSensitive(data, "slices");
        nl = (size_t)cJSON_GetArraySize(sl);
        labels = calloc(nl + 1, sizeof(*labels));
        ns = 1;
        series = calloc(2, sizeof(*series));
        double *v = calloc(nl + 1, sizeof(*v));
        for (size_t i = 0; i < nl; i++) {
            const cJSON *s = cJSON_GetArrayItem(sl, (int)i);
            labels[i] = strdup(str_of(s, "name") ? str_of(s, "name") : "");
            v[i] = cJSON_GetObjectItemCaseSensitive(s, "value")->valuedouble;
        }
        series[0].name = ch.title;
        series[0].values = v;
        series[0].n = nl;
    } else if (!strcmp(type, "bignumber")) {
        ch.type = AN_CHART_BIGNUMBER;
        ch.value = cJSON_GetObjectItemCaseSensitive(data, "value")->valuedouble;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(data, "previous");
        ch.has_previous = cJSON_IsNumber(p);
        ch.previous = ch.has_previous ? p->valuedouble : 0;
    } else {
        return an_error_field(err, AN_INVALID_ARGUMENT, "format",
                              "png is drawn for line, bar, pie and bignumber widgets, not %s",
                              type);
    }
    ch.labels = (const char *const *)labels;
    ch.nlabels = nl;
    ch.series = series;
    ch.nseries = ns;
    an_buf png;
    an_buf_init(&png);
    an_status st = an_chart_png(&ch, width, height, &png, err);
    if (st == AN_OK) {
        size_t cap = 4 * ((png.len + 2) / 3) + 1;
        char *b64 = malloc(cap);
        EVP_EncodeBlock((unsigned char *)b64, (const unsigned char *)png.data, (int)png.len);
        cJSON *img = cJSON_AddObjectToObject(w, "image");
        cJSON_AddStringToObject(img, "contentType", "image/png");
        cJSON_AddNumberToObject(img, "width", width);
        cJSON_AddNumberToObject(img, "height", height);
        cJSON_AddNumberToObject(img, "bytes", (double)png.len);
        cJSON_AddStringToObject(img, "base64", b64);
        free(b64);
    }
    an_buf_free(&png);
    for (size_t i = 0; i < nl; i++)
        free(labels[i]);
    free(labels);
    for (size_t i = 0; i < ns; i++)
        free((void *)series[i].values);
    free(series);
    return st;
}

static an_status handle_render_widget(an_request *req, cJSON **data, an_error *err)
{
    const char *wid = str_of(req->body, "widgetId");
    if (!wid)
        return an_error_field(err, AN_INVALID_ARGUMENT, "widgetId", "widgetId is required");
    const char *format = str_of(req->body, "format");
    if (!format)
        format = "json";
    if (strcmp(format, "json") && strcmp(format, "png"))
        return an_error_field(err, AN_INVALID_ARGUMENT, "format", "format must be json or png");
    cJSON *extra = NULL;
    if (!strcmp(format, "png")) {
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(req->body, "width");
        const cJSON *h = cJSON_GetObjectItemCaseSensitive(req->body, "height");
        if ((w && (!cJSON_IsNumber(w) || w->valuedouble < 200 || w->valuedouble > 4000)) ||
            (h && (!cJSON_IsNumber(h) || h->valuedouble < 150 || h->valuedouble > 4000)))
            return an_error_field(err, AN_INVALID_ARGUMENT, w ? "width" : "height",
                                  "width must be 200..4000 and height 150..4000");
        extra = cJSON_CreateObject();
        cJSON_AddStringToObject(extra, "format", "png");
        cJSON_AddNumberToObject(extra, "width", w ? (int)w->valuedouble : 800);
        cJSON_AddNumberToObject(extra, "height", h ? (int)h->valuedouble : 400);
    }
    cJSON *params = NULL;
    an_status st = dash_params_parse(req->body, &params, err);
    dash *d = NULL;
    if (st == AN_OK)
        st = load(req, &d, err);
    cJSON *r = NULL;
    if (st == AN_OK)
        st = render_cached(req, d, params, wid, extra, extra ? png_post : NULL, &r, err);
    if (st == AN_OK) {
        /* the reply is the one widget, with the dashboard's id and version */
        cJSON *w = cJSON_DetachItemFromArray(cJSON_GetObjectItemCaseSensitive(r, "widgets"), 0);
        cJSON_AddStringToObject(w, "dashboardId", d->id);
        cJSON_AddNumberToObject(w, "version", (double)d->version);
        cJSON_AddItemToObject(w, "cached",
                              cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(r, "cached"), 0));
        *data = w;
    }
    cJSON_Delete(r);
    cJSON_Delete(extra);
    cJSON_Delete(params);
    dash_free(d);
    return st;
}

/* Every change runs under the dashboard's write lock (cache.c), so two
 * replicas cannot both pass the version check and write version + 1. */
static an_status locked(an_request *req, cJSON **data, an_error *err,
                        an_status (*fn)(an_request *, cJSON **, an_error *))
{
    const char *tenant, *id;
    an_status st = target_of(req, &tenant, &id, err);
    if (st != AN_OK)
        return st;
    char token[40];
    int64_t wait = an_request_remaining_ms(req) / 2;
    st = dash_lock(ctx_of(req), tenant, id, wait > 5000 ? 5000 : wait, token, err);
    if (st != AN_OK)
        return st;
    st = fn(req, data, err);
    dash_unlock(ctx_of(req), tenant, id, token);
    return st;
}

#define LOCKED(fn)                                                                                 \
    static an_status fn##_locked(an_request *req, cJSON **data, an_error *err)                     \
    {                                                                                              \
        return locked(req, data, err, fn);                                                         \
    }
LOCKED(handle_update)
LOCKED(handle_delete)
LOCKED(handle_add_widget)
LOCKED(handle_update_widget)
LOCKED(handle_remove_widget)
LOCKED(handle_reorder)

const an_endpoint dash_endpoints[] = {
    {"create", handle_create, 0, 0,
     "create a dashboard {name, description?, widgets?, accessControl?}"},
    {"get", handle_get, 0, 0, "read one dashboard {id}"},
    {"list", handle_list, 0, 0, "the dashboards the caller may see"},
    {"update", handle_update_locked, 0, 0,
     "change name/description/widgets/accessControl {id, version}"},
    {"delete", handle_delete_locked, 0, 0, "soft-delete a dashboard {id, version?}"},
    {"add-widget", handle_add_widget_locked, 0, 0, "add a widget {id, widget, index?}"},
    {"update-widget", handle_update_widget_locked, 0, 0, "replace a widget {id, widget}"},
    {"remove-widget", handle_remove_widget_locked, 0, 0, "remove a widget {id, widgetId}"},
    {"reorder-widgets", handle_reorder_locked, 0, 0, "reorder widgets {id, order: [widget ids]}"},
    {"render", handle_render, 0, 0, "every widget's data {id, from/to|last, granularity, filters}"},
    {"render-widget", handle_render_widget, 0, 0,
     "one widget's data, or its PNG {id, widgetId, format: json|png, width, height}"},
    {0},
};
