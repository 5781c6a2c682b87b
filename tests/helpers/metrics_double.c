/*
 * metrics_double - a stand-in for the `metrics` service, for the dashboards
 * tests and bench while the real one is being built: a real NATS service on
 * the framework that answers <prefix>.get and <prefix>.query from real
 * ClickHouse queries over analytics.events of the caller's tenant.
 * Its name (subjects analytics.<name>.get|query) comes from
 * ANALYTICS_METRICS_DOUBLE_NAME (default "metrics").
 *
 * Catalog (ids are fixed names):
 *   events      count of every event                  dims country, plan, event_name   active
 *   signups     count of user.signed_up               dims country, plan               active
 *   revenue     sum of property amount of order.paid  dims country, plan               active
 *   old_signups count of user.signed_up               dims country                     deprecated
 *   draft       (never answers data)                                                   draft
 *   slow        like events, after ANALYTICS_METRICS_DOUBLE_SLOW_MS when the range
 *               is longer than one hour (so that dashboards' one-hour validation
 *               probe passes)                                                          active
 *   broken      query fails with internal                                              active
 * country and plan are the properties.country and properties.plan dimensions.
 *
 * The shapes follow the real metrics service (branch metrics, common/template.h,
 * metrics/query.h), reduced to what dashboards uses:
 *   get   {id} -> {id, name, status, unit}
 *   query {metricId, from, to, granularity, dimensions, filters: [{field, op, value}]}
 *         -> {metricId, unit, granularity, from, to,
 *             columns: [{name: "bucket", type: "time"}, {name: <dim>, type: "string"}...,
 *                       {name: "value", type: "number"}],
 *             rows: [["2026-11-27T00:00:00.000Z", dim values..., value], ...]}
 *         a dimension or filter field the metric does not have: invalid_argument
 *         with field "dimensions[i]" / "filters[i].field". Buckets without rows
 *         are not filled in (the real service fills them).
 */
#include "common/ch.h"
#include "common/service.h"
#include "common/sql.h"
#include "common/timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <signal.h>
#include <time.h>

typedef struct dbl_ctx {
    int64_t slow_ms;
    const an_service_config *cfg;
} dbl_ctx;

static const an_config_var vars[] = {
    {"ANALYTICS_METRICS_DOUBLE_SLOW_MS", AN_CFG_DURATION, "10s", 0, 600000, 0,
     offsetof(dbl_ctx, slow_ms), "how long the `slow` metric waits"},
    {0},
};

typedef struct metric {
    const char *id, *status, *unit, *event, *value_expr;
    const char *dims[4];
} metric;

static const metric catalog[] = {
    {"events",
     "active",
     "events",
     NULL,
     "count()",
     {"properties.country", "properties.plan", "event_name", NULL}},
    {"signups",
     "active",
     "users",
     "user.signed_up",
     "count()",
     {"properties.country", "properties.plan", NULL}},
    {"revenue",
     "active",
     "EUR",
     "order.paid",
     "sum(toFloat64OrZero(prop_values[indexOf(prop_keys, 'amount')]))",
     {"properties.country", "properties.plan", NULL}},
    {"old_signups",
     "deprecated",
     "users",
     "user.signed_up",
     "count()",
     {"properties.country", NULL}},
    {"draft", "draft", "users", NULL, "count()", {NULL}},
    {"slow", "active", "events", NULL, "count()", {"properties.country", "properties.plan", NULL}},
    {"broken", "active", "events", NULL, "count()", {"properties.country", NULL}},
    {NULL},
};

static const metric *find(const char *id)
{
    for (int i = 0; id && catalog[i].id; i++)
        if (!strcmp(catalog[i].id, id))
            return &catalog[i];
    return NULL;
}

static const char *str_of(const cJSON *o, const char *n)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, n);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static an_status handle_get(an_request *req, cJSON **data, an_error *err)
{
    const metric *m = find(str_of(req->body, "id"));
    if (!m)
        return an_error_field(err, AN_NOT_FOUND, "id", "metric not found");
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", m->id);
    cJSON_AddStringToObject(o, "name", m->id);
    cJSON_AddStringToObject(o, "status", m->status);
    cJSON_AddStringToObject(o, "unit", m->unit);
    *data = o;
    return AN_OK;
}

static bool allowed(const metric *m, const char *d)
{
    for (int i = 0; m->dims[i]; i++)
        if (!strcmp(m->dims[i], d))
            return true;
    return false;
}

static void dim_expr(an_buf *q, const char *d)
{
    if (!strcmp(d, "event_name"))
        an_buf_adds(q, "event_name");
    else {
        an_buf_adds(q, "prop_values[indexOf(prop_keys, ");
        an_sql_quote_str(q, d + strlen("properties."));
        an_buf_adds(q, ")]");
    }
}

static void value_lit(an_buf *q, const cJSON *v)
{
    if (cJSON_IsString(v))
        an_sql_quote_str(q, v->valuestring);
    else {
        char b[64];
        snprintf(b, sizeof(b), "%.15g", v->valuedouble);
        an_sql_quote_str(q, b);
    }
}

typedef struct acc {
    cJSON *rows;
    int ndims;
} acc;

static an_status on_row(void *ud, const an_ch_row *r, an_error *err)
{
    (void)err;
    acc *a = ud;
    cJSON *row = cJSON_CreateArray();
    time_t t = (time_t)strtoll(r->fields[0], NULL, 10);
    struct tm tm;
    gmtime_r(&t, &tm);
    char b[40];
    strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S.000Z", &tm);
    cJSON_AddItemToArray(row, cJSON_CreateString(b));
    for (int i = 0; i < a->ndims; i++)
        cJSON_AddItemToArray(row, cJSON_CreateString(r->fields[1 + i]));
    cJSON_AddItemToArray(row, cJSON_CreateNumber(strtod(r->fields[1 + a->ndims], NULL)));
    cJSON_AddItemToArray(a->rows, row);
    return AN_OK;
}

static cJSON *column(const char *name, const char *type)
{
    cJSON *c = cJSON_CreateObject();
    cJSON_AddStringToObject(c, "name", name);
    cJSON_AddStringToObject(c, "type", type);
    return c;
}

static an_status handle_query(an_request *req, cJSON **data, an_error *err)
{
    dbl_ctx *c = req->ctx;
    const metric *m = find(str_of(req->body, "metricId"));
    if (!m)
        return an_error_field(err, AN_NOT_FOUND, "metricId", "metric not found");
    if (!strcmp(m->id, "broken"))
        return an_error_set(err, AN_INTERNAL, "metric broken: its query fails");
    if (!strcmp(m->status, "draft"))
        return an_error_set(err, AN_FAILED_PRECONDITION, "metric draft is not active");
    int64_t from, to;
    if (!str_of(req->body, "from") ||
        an_time_parse(str_of(req->body, "from"), &from, err) != AN_OK || !str_of(req->body, "to") ||
        an_time_parse(str_of(req->body, "to"), &to, err) != AN_OK)
        return an_error_field(err, AN_INVALID_ARGUMENT, "from", "from/to must be RFC 3339");
    if (!strcmp(m->id, "slow") && to - from > 3600000) {
        struct timespec ts = {c->slow_ms / 1000, (c->slow_ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
    }
    if (!req->auth->tenant)
        return an_error_field(err, AN_INVALID_ARGUMENT, "tenantId", "no tenant");
    const char *g = str_of(req->body, "granularity");
    const char *fn = !g || !strcmp(g, "day") ? "toStartOfDay"
                     : !strcmp(g, "hour")    ? "toStartOfHour"
                     : !strcmp(g, "week")    ? "toMonday"
                     : !strcmp(g, "month")   ? "toStartOfMonth"
                                             : NULL;
    if (!fn)
        return an_error_field(err, AN_INVALID_ARGUMENT, "granularity", "bad granularity");
    const cJSON *dims = cJSON_GetObjectItemCaseSensitive(req->body, "dimensions");
    const cJSON *it;
    int nd = 0;
    cJSON_ArrayForEach(it, dims)
    {
        if (!cJSON_IsString(it) || !allowed(m, it->valuestring)) {
            char f[32];
            snprintf(f, sizeof(f), "dimensions[%d]", nd);
            return an_error_field(err, AN_INVALID_ARGUMENT, f, "%s: not a dimension of %s", f,
                                  m->id);
        }
        nd++;
    }
    an_buf q;
    an_buf_init(&q);
    /* toMonday/toStartOfMonth give a Date: toDateTime for the timestamp */
    an_buf_addf(&q, "SELECT toUnixTimestamp(toDateTime(%s(occurred_at))) AS bucket", fn);
    int i = 0;
    cJSON_ArrayForEach(it, dims)
    {
        an_buf_adds(&q, ", ");
        dim_expr(&q, it->valuestring);
        an_buf_addf(&q, " AS d%d", i++);
    }
    an_buf_addf(&q, ", %s AS value FROM analytics.events WHERE tenant_id = ", m->value_expr);
    an_sql_quote_str(&q, req->auth->tenant);
    if (m->event) {
        an_buf_adds(&q, " AND event_name = ");
        an_sql_quote_str(&q, m->event);
    }
    an_buf_addf(&q, " AND occurred_at >= toDateTime(%lld) AND occurred_at < toDateTime(%lld)",
                (long long)(from / 1000), (long long)(to / 1000));
    cJSON_ArrayForEach(it, cJSON_GetObjectItemCaseSensitive(req->body, "filters"))
    {
        const char *d = str_of(it, "field"), *op = str_of(it, "op");
        if (!d || !allowed(m, d) || !op ||
            (strcmp(op, "eq") && strcmp(op, "neq") && strcmp(op, "in") && strcmp(op, "not_in"))) {
            an_buf_free(&q);
            return an_error_field(err, AN_INVALID_ARGUMENT, "filters[0].field",
                                  "filter: field or op this double does not handle");
        }
        an_buf_adds(&q, " AND ");
        dim_expr(&q, d);
        if (!strcmp(op, "eq") || !strcmp(op, "neq")) {
            an_buf_adds(&q, !strcmp(op, "eq") ? " = " : " != ");
            value_lit(&q, cJSON_GetObjectItemCaseSensitive(it, "value"));
        } else {
            an_buf_adds(&q, !strcmp(op, "in") ? " IN (" : " NOT IN (");
            const cJSON *v;
            int k = 0;
            cJSON_ArrayForEach(v, cJSON_GetObjectItemCaseSensitive(it, "value"))
            {
                if (k++)
                    an_buf_adds(&q, ", ");
                value_lit(&q, v);
            }
            an_buf_adds(&q, ")");
        }
    }
    an_buf_adds(&q, " GROUP BY bucket");
    for (i = 0; i < nd; i++)
        an_buf_addf(&q, ", d%d", i);
    an_buf_adds(&q, " ORDER BY bucket");
    for (i = 0; i < nd; i++)
        an_buf_addf(&q, ", d%d", i);
    an_buf_adds(&q, " LIMIT 100000");
    an_ch_options o = {.url = c->cfg->clickhouse_url,
                       .user = c->cfg->clickhouse_user,
                       .password = c->cfg->clickhouse_password,
                       .query_timeout_ms = 30000};
    an_ch *ch = NULL;
    acc a = {cJSON_CreateArray(), nd};
    an_status st = an_ch_new(&o, &ch, err);
    if (st == AN_OK)
        st = an_ch_query(ch, an_buf_str(&q), NULL, on_row, &a, err);
    an_ch_free(ch);
    an_buf_free(&q);
    if (st != AN_OK) {
        cJSON_Delete(a.rows);
        return st;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON_AddStringToObject(out, "metricId", m->id);
    cJSON_AddStringToObject(out, "unit", m->unit);
    cJSON_AddStringToObject(out, "granularity", g ? g : "day");
    cJSON *cols = cJSON_AddArrayToObject(out, "columns");
    cJSON_AddItemToArray(cols, column("bucket", "time"));
    cJSON_ArrayForEach(it, dims)
    {
        cJSON_AddItemToArray(cols, column(it->valuestring, "string"));
    }
    cJSON_AddItemToArray(cols, column("value", "number"));
    cJSON_AddStringToObject(out, "from", str_of(req->body, "from"));
    cJSON_AddStringToObject(out, "to", str_of(req->body, "to"));
    cJSON_AddItemToObject(out, "rows", a.rows);
    *data = out;
    return AN_OK;
}

static an_status dbl_init(an_service *svc, void *ctx, an_error *err)
{
    (void)err;
    ((dbl_ctx *)ctx)->cfg = an_service_get_config(svc);
    return AN_OK;
}

int main(int argc, char **argv)
{
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the test runner */
    static const an_endpoint eps[] = {
        {"get", handle_get, 0, 0, "a metric definition"},
        {"query", handle_query, 0, 60000, "a metric's values"},
        {0},
    };
    const char *name = getenv("ANALYTICS_METRICS_DOUBLE_NAME");
    an_service_def def = {
        .name = name && *name ? name : "metrics",
        .version = "0.0.1",
        .description = "test double of the metrics service (tests/helpers/metrics_double.c)",
        .config = vars,
        .ctx_size = sizeof(dbl_ctx),
        .endpoints = eps,
        .init = dbl_init,
        .workers = 8,
    };
    return an_service_main(&def, argc, argv);
}
