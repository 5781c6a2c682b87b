/*
 * render.c - widget validation against metrics, and rendering: every widget
 * of a dashboard asks metrics for its data (analytics.metrics.query) on its
 * own thread, each bounded by ANALYTICS_DASHBOARDS_WIDGET_TIMEOUT and by the
 * render request's own deadline. A widget whose call fails carries its own
 * error; the render fails as a whole (unavailable) only when every widget
 * that needs metrics failed with unavailable (metrics down).
 */
#include "common/sql.h"
#include "common/template.h"
#include "common/timeutil.h"
#include "common/ulid.h"
#include "dashboards/dash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *str_of(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static const char *const granularities[] = {"hour", "day", "week", "month", NULL};

static bool granularity_valid(const char *g)
{
    for (int i = 0; g && granularities[i]; i++)
        if (!strcmp(g, granularities[i]))
            return true;
    return false;
}

/* "<N>h" or "<N>d", 1 hour .. 800 days -> ms; -1 when malformed. */
static int64_t parse_last(const char *s)
{
    char *end;
    long long n = s ? strtoll(s, &end, 10) : 0;
    if (!s || end == s || n <= 0 || (strcmp(end, "h") && strcmp(end, "d")))
        return -1;
    int64_t ms = n * (strcmp(end, "h") == 0 ? 3600000LL : 86400000LL);
    return ms > 800LL * 86400000 ? -1 : ms;
}

static void replace(cJSON *o, const char *name, cJSON *v)
{
    if (cJSON_GetObjectItemCaseSensitive(o, name))
        cJSON_ReplaceItemInObjectCaseSensitive(o, name, v);
    else
        cJSON_AddItemToObject(o, name, v);
}

/* Check a time range {last} or {from, to} (field names the field). */
static an_status time_range_check(const cJSON *tr, const char *field, an_error *err)
{
    if (!cJSON_IsObject(tr))
        return an_error_field(err, AN_INVALID_ARGUMENT, field,
                              "%s must be {\"last\": \"7d\"} or {\"from\", \"to\"}", field);
    const char *last = str_of(tr, "last"), *from = str_of(tr, "from"), *to = str_of(tr, "to");
    if (last) {
        if (parse_last(last) < 0)
            return an_error_field(err, AN_INVALID_ARGUMENT, field,
                                  "%s.last must be <N>h or <N>d (at most 800 days)", field);
        return AN_OK;
    }
    int64_t f, t;
    if (!from || !to || an_time_parse(from, &f, NULL) != AN_OK ||
        an_time_parse(to, &t, NULL) != AN_OK || f >= t)
        return an_error_field(err, AN_INVALID_ARGUMENT, field,
                              "%s needs RFC 3339 from < to, or last", field);
    return AN_OK;
}

/* A dimension or filter field, as metrics' template language names them
 * (common/template.h): a column of the events relation (event_name,
 * actor_type, actor_id) or properties.<path>. Dashboards word their own
 * error, so the template's is not kept. */
static bool field_valid(const char *f)
{
    return an_template_field_check("field", f, NULL) == AN_OK;
}

static bool op_is(const char *op, const char *const *set)
{
    for (int i = 0; set[i]; i++)
        if (!strcmp(op, set[i]))
            return true;
    return false;
}

/* Filters: [{field, op, value}] in metrics' form (common/template.h):
 * eq neq gt gte lt lte contains with a string or number (eq/neq also a
 * boolean), in not_in with 1..1000 strings or numbers, is_set with a
 * boolean (default true). Returns a normalised copy in *out. */
static an_status filters_check(const cJSON *in, const char *field, cJSON **out, an_error *err)
{
    static const char *const scalar[] = {"eq", "neq", "gt", "gte", "lt", "lte", "contains", NULL};
    *out = cJSON_CreateArray();
    if (!in || cJSON_IsNull(in))
        return AN_OK;
    if (!cJSON_IsArray(in) || cJSON_GetArraySize(in) > DASH_MAX_FILTERS)
        return an_error_field(err, AN_INVALID_ARGUMENT, field,
                              "%s must be an array of at most %d filters", field, DASH_MAX_FILTERS);
    const cJSON *f;
    cJSON_ArrayForEach(f, in)
    {
        const char *name = str_of(f, "field");
        const char *op = str_of(f, "op");
        if (!op)
            op = "eq";
        if (!field_valid(name))
            return an_error_field(err, AN_INVALID_ARGUMENT, field,
                                  "%s: every filter needs a field: event_name, actor_type, "
                                  "actor_id or properties.<path>",
                                  field);
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(f, "value");
        bool ok;
        if (op_is(op, scalar)) {
            ok = cJSON_IsString(v) || cJSON_IsNumber(v) ||
                 (cJSON_IsBool(v) && (!strcmp(op, "eq") || !strcmp(op, "neq")));
            if (ok && cJSON_IsString(v) && strlen(v->valuestring) > 1024)
                ok = false;
        } else if (!strcmp(op, "in") || !strcmp(op, "not_in")) {
            ok = cJSON_IsArray(v) && cJSON_GetArraySize(v) > 0 && cJSON_GetArraySize(v) <= 1000;
            const cJSON *x;
            cJSON_ArrayForEach(x, v)
            {
                ok = ok && (cJSON_IsString(x) || cJSON_IsNumber(x));
            }
        } else if (!strcmp(op, "is_set")) {
            ok = !v || cJSON_IsBool(v);
        } else {
            return an_error_field(err, AN_INVALID_ARGUMENT, field,
                                  "%s: op must be eq, neq, gt, gte, lt, lte, contains, in, not_in "
                                  "or is_set",
                                  field);
        }
        if (!ok)
            return an_error_field(err, AN_INVALID_ARGUMENT, field, "%s: %s needs %s", field, op,
                                  !strcmp(op, "is_set") ? "a boolean value or none"
                                  : op_is(op, scalar)   ? "a string or number value"
                                                      : "a value of 1 to 1000 strings or numbers");
        cJSON *nf = cJSON_CreateObject();
        cJSON_AddStringToObject(nf, "field", name);
        cJSON_AddStringToObject(nf, "op", op);
        cJSON_AddItemToObject(nf, "value", v ? cJSON_Duplicate(v, 1) : cJSON_CreateTrue());
        cJSON_AddItemToArray(*out, nf);
    }
    return AN_OK;
}

static void fmt_ms(int64_t ms, char *out, size_t n);

static an_status metrics_call(dash_ctx *c, const an_request *req, const char *verb,
                              const cJSON *body, int64_t timeout_ms, cJSON **data, an_error *err)
{
    char subject[256];
    snprintf(subject, sizeof(subject), "%s.%s", c->metrics_prefix, verb);
    return an_request_call(req, subject, body, timeout_ms, data, err);
}

an_status dash_widget_validate(dash_ctx *c, const an_request *req, const char *tenant, cJSON *w,
                               bool new_widget, an_error *err)
{
    if (!cJSON_IsObject(w))
        return an_error_field(err, AN_INVALID_ARGUMENT, "widget", "a widget must be an object");
    const char *type = str_of(w, "type");
    if (!dash_type_valid(type))
        return an_error_field(err, AN_INVALID_ARGUMENT, "type",
                              "type must be line, bar, pie, table, bignumber, map or text");
    const char *id = str_of(w, "id");
    if (!id || !*id) {
        char buf[AN_ULID_STRLEN];
        an_status st = an_ulid_new_str(buf, err);
        if (st != AN_OK)
            return st;
        replace(w, "id", cJSON_CreateString(buf));
    } else if (strlen(id) > 64 || (!an_sql_ident_valid(id) && !an_ulid_valid(id))) {
        return an_error_field(err, AN_INVALID_ARGUMENT, "id",
                              "widget id must be a short identifier");
    }
    const char *title = str_of(w, "title");
    if (cJSON_GetObjectItemCaseSensitive(w, "title") && (!title || strlen(title) > DASH_MAX_NAME))
        return an_error_field(err, AN_INVALID_ARGUMENT, "title",
                              "title must be a string of at most %d bytes", DASH_MAX_NAME);
    const cJSON *pos = cJSON_GetObjectItemCaseSensitive(w, "position");
    if (pos) {
        static const char *const k[] = {"x", "y", "w", "h"};
        for (int i = 0; i < 4; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(pos, k[i]);
            if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 1000)
                return an_error_field(err, AN_INVALID_ARGUMENT, "position",
                                      "position needs x, y, w, h numbers in 0..1000");
        }
    }
    if (!strcmp(type, "text")) {
        const char *body = str_of(w, "body");
        if (!body || strlen(body) > 65536)
            return an_error_field(err, AN_INVALID_ARGUMENT, "body",
                                  "a text widget needs a markdown body of at most 64 KiB");
        return AN_OK;
    }
    const char *metric = str_of(w, "metricId");
    if (!metric || !*metric || strlen(metric) > 64)
        return an_error_field(err, AN_INVALID_ARGUMENT, "metricId", "metricId is required");
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(w, "dimensions");
    if (dims && (!cJSON_IsArray(dims) || cJSON_GetArraySize(dims) > DASH_MAX_DIMENSIONS))
        return an_error_field(err, AN_INVALID_ARGUMENT, "dimensions",
                              "dimensions must be an array of at most %d names",
                              DASH_MAX_DIMENSIONS);
    const cJSON *it;
    cJSON_ArrayForEach(it, dims)
    {
        if (!cJSON_IsString(it) || !field_valid(it->valuestring))
            return an_error_field(err, AN_INVALID_ARGUMENT, "dimensions",
                                  "a dimension is event_name, actor_type, actor_id or "
                                  "properties.<path>");
    }
    if (!strcmp(type, "map") && cJSON_GetArraySize(dims) < 1)
        return an_error_field(err, AN_INVALID_ARGUMENT, "dimensions",
                              "a map widget needs a country dimension first");
    const char *g = str_of(w, "granularity");
    if (cJSON_GetObjectItemCaseSensitive(w, "granularity") && !granularity_valid(g))
        return an_error_field(err, AN_INVALID_ARGUMENT, "granularity",
                              "granularity must be hour, day, week or month");
    if (!g)
        replace(w, "granularity", cJSON_CreateString("day"));
    const cJSON *tr = cJSON_GetObjectItemCaseSensitive(w, "timeRange");
    if (tr) {
        an_status st = time_range_check(tr, "timeRange", err);
        if (st != AN_OK)
            return st;
    } else {
        cJSON *d = cJSON_CreateObject();
        cJSON_AddStringToObject(d, "last", "7d");
        cJSON_AddItemToObject(w, "timeRange", d);
    }
    const cJSON *ps = cJSON_GetObjectItemCaseSensitive(w, "pageSize");
    if (ps && (!cJSON_IsNumber(ps) || ps->valuedouble < 1 || ps->valuedouble > 1000))
        return an_error_field(err, AN_INVALID_ARGUMENT, "pageSize", "pageSize must be 1..1000");

    /* the metric: exists, active (or deprecated on a widget that had it) */
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "id", metric);
    cJSON *m = NULL;
    an_error cerr = {0};
    an_status st = metrics_call(c, req, "get", body, c->validate_timeout_ms, &m, &cerr);
    cJSON_Delete(body);
    if (st == AN_NOT_FOUND || st == AN_PERMISSION_DENIED)
        return an_error_field(err, AN_INVALID_ARGUMENT, "metricId", "metric %s not found", metric);
    if (st != AN_OK)
        return an_error_field(err, st, "metricId", "checking metric %s: %s", metric, cerr.message);
    /* a platform admin sees every tenant's metrics; the dashboard's viewers
     * must only ever get their own tenant's numbers */
    const char *owner = str_of(m, "tenantId");
    if (owner && strcmp(owner, tenant) != 0) {
        cJSON_Delete(m);
        return an_error_field(err, AN_INVALID_ARGUMENT, "metricId",
                              "metric %s belongs to another tenant", metric);
    }
    const char *status = str_of(m, "status");
    bool deprecated = (status && !strcmp(status, "deprecated")) ||
                      cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "deprecated"));
    bool active = !deprecated && (!status || !strcmp(status, "active"));
    if (deprecated && new_widget) {
        cJSON_Delete(m);
        return an_error_field(err, AN_FAILED_PRECONDITION, "metricId",
                              "metric %s is deprecated: it cannot be put on a new widget", metric);
    }
    if (!active && !deprecated) {
        an_error_field(err, AN_FAILED_PRECONDITION, "metricId",
                       "metric %s is not active (status %s)", metric, status);
        cJSON_Delete(m); /* status points into m */
        return AN_FAILED_PRECONDITION;
    }
    cJSON_Delete(m);
    cJSON *nf = NULL;
    st = filters_check(cJSON_GetObjectItemCaseSensitive(w, "filters"), "filters", &nf, err);
    if (st != AN_OK) {
        cJSON_Delete(nf);
        return st;
    }
    replace(w, "filters", nf);
    if (!dims)
        cJSON_AddItemToObject(w, "dimensions", cJSON_CreateArray());
    /* Whether the metric can be broken down by these dimensions and
     * filtered so is the metric's business (its template must use
     * {{dimensions}} and {{filters}}): ask it, on the last hour. */
    cJSON *probe = cJSON_CreateObject();
    char fb[40], tb[40];
    int64_t now = an_time_now_ms();
    fmt_ms(now - now % 3600000 - 3600000, fb, sizeof(fb));
    fmt_ms(now - now % 3600000, tb, sizeof(tb));
    cJSON_AddStringToObject(probe, "metricId", metric);
    cJSON_AddStringToObject(probe, "from", fb);
    cJSON_AddStringToObject(probe, "to", tb);
    cJSON_AddStringToObject(probe, "granularity", "hour");
    cJSON_AddItemToObject(probe, "dimensions",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(w, "dimensions"), 1));
    cJSON_AddItemToObject(probe, "filters",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(w, "filters"), 1));
    cJSON *res = NULL;
    memset(&cerr, 0, sizeof(cerr));
    st = metrics_call(c, req, "query", probe, c->validate_timeout_ms, &res, &cerr);
    cJSON_Delete(probe);
    cJSON_Delete(res);
    if (st == AN_INVALID_ARGUMENT) {
        const char *f = !strncmp(cerr.field, "filters", 7) ? "filters" : "dimensions";
        return an_error_field(err, AN_INVALID_ARGUMENT, f, "metric %s refuses the %s: %s", metric,
                              f, cerr.message);
    }
    if (st == AN_UNAVAILABLE)
        return an_error_field(err, st, "metricId", "checking metric %s: %s", metric, cerr.message);
    /* other failures (a limit, an internal error) are the data's, not the widget's */
    return AN_OK;
}

/* ------------------------------------------------------------- rendering */

typedef struct job {
    dash_ctx *c;
    const an_request *req;
    const cJSON *widget;
    const cJSON *params;
    const char *tenant;     /* the dashboard's: whose events every widget reads */
    int64_t from_ms, to_ms; /* resolved range */
    int64_t timeout_ms;
    pthread_t th;
    bool started;
    an_status st;
    an_error err;
    cJSON *data;
} job;

static void fmt_ms(int64_t ms, char *out, size_t n)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Resolve the range: params {from,to} or {last} override the widget's. */
static an_status resolve_range(const cJSON *w, const cJSON *params, int64_t now_ms, int64_t *from,
                               int64_t *to, an_error *err)
{
    const cJSON *src = params;
    if (!str_of(params, "last") && !str_of(params, "from"))
        src = cJSON_GetObjectItemCaseSensitive(w, "timeRange");
    const char *last = str_of(src, "last");
    if (last) {
        int64_t span = parse_last(last);
        if (span < 0)
            return an_error_field(err, AN_INVALID_ARGUMENT, "last", "last must be <N>h or <N>d");
        *to = now_ms - now_ms % 60000; /* whole minutes: repeatable within a minute */
        *from = *to - span;
        return AN_OK;
    }
    const char *f = str_of(src, "from"), *t = str_of(src, "to");
    if (!f || !t || an_time_parse(f, from, NULL) != AN_OK || an_time_parse(t, to, NULL) != AN_OK ||
        *from >= *to)
        return an_error_field(err, AN_INVALID_ARGUMENT, "from",
                              "from/to must be RFC 3339, from < to");
    return AN_OK;
}

/* The widget's filters, with those of the render replacing the widget's on
 * the same field and added otherwise. A metric whose template cannot
 * filter refuses them: that widget then carries the error. */
static cJSON *merged_filters(const cJSON *w, const cJSON *params)
{
    const cJSON *mine = cJSON_GetObjectItemCaseSensitive(w, "filters");
    const cJSON *over = cJSON_GetObjectItemCaseSensitive(params, "filters");
    cJSON *out = cJSON_CreateArray();
    const cJSON *f, *g;
    cJSON_ArrayForEach(f, mine)
    {
        bool overridden = false;
        cJSON_ArrayForEach(g, over)
        {
            const char *a = str_of(f, "field"), *b = str_of(g, "field");
            if (a && b && !strcmp(a, b))
                overridden = true;
        }
        if (!overridden)
            cJSON_AddItemToArray(out, cJSON_Duplicate(f, 1));
    }
    cJSON_ArrayForEach(g, over)
    {
        cJSON_AddItemToArray(out, cJSON_Duplicate(g, 1));
    }
    return out;
}

/* The granularity a widget's query asks for: the render's, else the widget's, else day. */
static const char *granularity_of(const job *j)
{
    const char *g = str_of(j->params, "granularity");
    if (!g)
        g = str_of(j->widget, "granularity");
    return g ? g : "day";
}

static cJSON *query_body(const job *j, int64_t from, int64_t to)
{
    char fb[40], tb[40];
    fmt_ms(from, fb, sizeof(fb));
    fmt_ms(to, tb, sizeof(tb));
    const cJSON *w = j->widget;
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "metricId", str_of(w, "metricId"));
    /* the dashboard's tenant, not the caller's: a platform admin's render
     * is cached for the tenant's viewers */
    cJSON_AddStringToObject(b, "tenantId", j->tenant);
    cJSON_AddStringToObject(b, "from", fb);
    cJSON_AddStringToObject(b, "to", tb);
    cJSON_AddStringToObject(b, "granularity", granularity_of(j));
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(w, "dimensions");
    cJSON_AddItemToObject(b, "dimensions", dims ? cJSON_Duplicate(dims, 1) : cJSON_CreateArray());
    cJSON_AddItemToObject(b, "filters", merged_filters(w, j->params));
    return b;
}

void dash_previous_period(int64_t from_ms, int64_t to_ms, const char *granularity,
                          int64_t *prev_from, int64_t *prev_to)
{
    an_template_granularity g;
    if (an_template_granularity_parse("granularity", granularity, &g, NULL) != AN_OK) {
        *prev_to = from_ms;
        *prev_from = from_ms - (to_ms - from_ms);
        return;
    }
    /* step back bucket by bucket: months differ in length */
    int64_t from = an_template_bucket_floor(from_ms, g), prev = from;
    for (int64_t x = from; x < to_ms; x = an_template_bucket_next(x, g))
        prev = an_template_bucket_floor(prev - 1, g);
    *prev_from = prev;
    *prev_to = from;
}

static void *run_job(void *arg)
{
    job *j = arg;
    const char *type = str_of(j->widget, "type");
    cJSON *reply = NULL, *prev = NULL;
    int64_t t0 = an_time_mono_ms();
    cJSON *b = query_body(j, j->from_ms, j->to_ms);
    j->st = metrics_call(j->c, j->req, "query", b, j->timeout_ms, &reply, &j->err);
    cJSON_Delete(b);
    if (j->st == AN_OK && !strcmp(type, "bignumber")) {
        int64_t left = j->timeout_ms - (an_time_mono_ms() - t0);
        int64_t prev_from, prev_to;
        dash_previous_period(j->from_ms, j->to_ms, granularity_of(j), &prev_from, &prev_to);
        b = query_body(j, prev_from, prev_to);
        j->st = left > 0 ? metrics_call(j->c, j->req, "query", b, left, &prev, &j->err)
                         : an_error_set(&j->err, AN_UNAVAILABLE, "widget timed out");
        cJSON_Delete(b);
    }
    if (j->st == AN_OK)
        j->st = dash_shape(type, j->widget, reply, prev, j->params, &j->data, &j->err);
    cJSON_Delete(reply);
    cJSON_Delete(prev);
    return NULL;
}

an_status dash_render(dash_ctx *c, const an_request *req, const dash *d, const cJSON *params,
                      const char *only_widget, cJSON **out, an_error *err)
{
    *out = NULL;
    int n = cJSON_GetArraySize(d->widgets);
    job *jobs = calloc((size_t)n + 1, sizeof(*jobs));
    int64_t now = an_time_now_ms();
    int64_t timeout = c->widget_timeout_ms;
    int64_t left = an_request_remaining_ms(req) - 50; /* time to build the reply */
    if (left < timeout)
        timeout = left > 1 ? left : 1;
    an_status st = AN_OK;
    int found = 0;
    for (int i = 0; i < n && st == AN_OK; i++) {
        job *j = &jobs[i];
        j->c = c;
        j->req = req;
        j->widget = cJSON_GetArrayItem(d->widgets, i);
        j->params = params;
        j->tenant = d->tenant;
        j->timeout_ms = timeout;
        const char *id = str_of(j->widget, "id");
        if (only_widget && (!id || strcmp(id, only_widget)))
            continue;
        found++;
        const char *type = str_of(j->widget, "type");
        if (!dash_type_needs_metric(type)) {
            j->st = dash_shape(type, j->widget, NULL, NULL, params, &j->data, &j->err);
            continue;
        }
        st = resolve_range(j->widget, params, now, &j->from_ms, &j->to_ms, err);
        if (st == AN_OK && pthread_create(&j->th, NULL, run_job, j) == 0)
            j->started = true;
        else if (st == AN_OK)
            run_job(j);
    }
    for (int i = 0; i < n; i++)
        if (jobs[i].started)
            pthread_join(jobs[i].th, NULL);
    if (st == AN_OK && only_widget && !found)
        st = an_error_field(err, AN_NOT_FOUND, "widgetId", "widget %s not found", only_widget);
    int metric_widgets = 0, unavailable = 0;
    cJSON *ws = cJSON_CreateArray();
    for (int i = 0; i < n && st == AN_OK; i++) {
        job *j = &jobs[i];
        const char *id = str_of(j->widget, "id");
        if (only_widget && (!id || strcmp(id, only_widget)))
            continue;
        const char *type = str_of(j->widget, "type");
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "id", id ? id : "");
        cJSON_AddStringToObject(o, "type", type ? type : "");
        const char *title = str_of(j->widget, "title");
        if (title)
            cJSON_AddStringToObject(o, "title", title);
        if (dash_type_needs_metric(type)) {
            metric_widgets++;
            char fb[40], tb[40];
            fmt_ms(j->from_ms, fb, sizeof(fb));
            fmt_ms(j->to_ms, tb, sizeof(tb));
            cJSON_AddStringToObject(o, "metricId", str_of(j->widget, "metricId"));
            cJSON_AddStringToObject(o, "from", fb);
            cJSON_AddStringToObject(o, "to", tb);
        }
        if (j->st == AN_OK) {
            cJSON_AddItemToObject(o, "data", j->data);
            j->data = NULL;
        } else {
            if (j->st == AN_UNAVAILABLE)
                unavailable++;
            an_prom_counter_inc(c->widget_errors);
            cJSON *e = cJSON_AddObjectToObject(o, "error");
            cJSON_AddStringToObject(e, "code", an_status_code(j->st));
            cJSON_AddStringToObject(e, "message",
                                    j->st == AN_INTERNAL ? "internal error" : j->err.message);
            if (j->st == AN_INTERNAL)
                an_request_log(req, AN_LOG_ERROR, "widget %s: %s", id ? id : "?", j->err.message);
        }
        cJSON_AddItemToArray(ws, o);
    }
    for (int i = 0; i < n; i++)
        cJSON_Delete(jobs[i].data);
    free(jobs);
    if (st == AN_OK && metric_widgets > 0 && unavailable == metric_widgets)
        st = an_error_set(err, AN_UNAVAILABLE,
                          "metrics did not answer for any widget (within %lld ms)",
                          (long long)timeout);
    if (st != AN_OK) {
        cJSON_Delete(ws);
        return st;
    }
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "dashboardId", d->id);
    cJSON_AddNumberToObject(r, "version", (double)d->version);
    char nb[40];
    fmt_ms(now, nb, sizeof(nb));
    cJSON_AddStringToObject(r, "renderedAt", nb);
    cJSON_AddItemToObject(r, "widgets", ws);
    *out = r;
    return AN_OK;
}

/* Check the render parameters ({from,to}|{last}, granularity, filters,
 * page, pageSize) and return a normalised copy (the cache key's input). */
an_status dash_params_parse(const cJSON *body, cJSON **out, an_error *err)
{
    *out = cJSON_CreateObject();
    const char *last = str_of(body, "last");
    if (last) {
        if (parse_last(last) < 0)
            return an_error_field(err, AN_INVALID_ARGUMENT, "last", "last must be <N>h or <N>d");
        cJSON_AddStringToObject(*out, "last", last);
    } else if (cJSON_GetObjectItemCaseSensitive(body, "from") ||
               cJSON_GetObjectItemCaseSensitive(body, "to")) {
        an_status st = time_range_check(body, "from", err);
        if (st != AN_OK)
            return st;
        cJSON_AddStringToObject(*out, "from", str_of(body, "from"));
        cJSON_AddStringToObject(*out, "to", str_of(body, "to"));
    }
    const char *g = str_of(body, "granularity");
    if (cJSON_GetObjectItemCaseSensitive(body, "granularity")) {
        if (!granularity_valid(g))
            return an_error_field(err, AN_INVALID_ARGUMENT, "granularity",
                                  "granularity must be hour, day, week or month");
        cJSON_AddStringToObject(*out, "granularity", g);
    }
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(body, "filters");
    if (f) {
        cJSON *nf = NULL;
        an_status st = filters_check(f, "filters", &nf, err);
        if (st != AN_OK) {
            cJSON_Delete(nf);
            return st;
        }
        cJSON_AddItemToObject(*out, "filters", nf);
    }
    static const char *const ints[] = {"page", "pageSize"};
    for (int i = 0; i < 2; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, ints[i]);
        if (!v)
            continue;
        if (!cJSON_IsNumber(v) || v->valuedouble < 1 || v->valuedouble > 1000000)
            return an_error_field(err, AN_INVALID_ARGUMENT, ints[i], "%s must be a positive number",
                                  ints[i]);
        cJSON_AddNumberToObject(*out, ints[i], (int)v->valuedouble);
    }
    return AN_OK;
}
