/*
 * test_dashboards.c - the dashboards service against the real local stack:
 * ClickHouse (dashboards stored, events seeded), Redis (render cache), NATS.
 * Widget data comes from tests/helpers/metrics_double (a real NATS service
 * answering metrics.get/query from ClickHouse over the seeded events; see
 * its header), started under its own name; dashboards is pointed at it with
 * ANALYTICS_DASHBOARDS_METRICS_PREFIX.
 *
 * Seeded events (tenant T, at fixed hours of the two previous UTC days D1 =
 * yesterday, D2 = the day before):
 *   user.signed_up  D2: FR x1 (pro), US x4 (free)   D1: FR x3 (pro), DE x2 (free)
 *   order.paid      D1: FR amount 10.5, DE amount 4.5
 * and tenant T2 has user.signed_up D1: FR x7 (must never show up for T).
 * Every expected number is also computed from ClickHouse by the test.
 */
#include "tests/harness.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#define SECRET "dash-secret-0123456789abcdefghijklmnopqrstuv"

static natsConnection *nc;
static pid_t dbl_pid, dash_pid;
static char tenant[64], tenant2[64], dbl_name[64];
static long long day1, day2; /* unix seconds of 00:00 UTC of D1, D2 */
static char log_dir[512];

/* ------------------------------------------------------------- helpers */

static char *token(const char *sub, const char *tid, const char *roles_json)
{
    return th_bearer(SECRET, sub, tid, NULL, roles_json ? roles_json : "[]", 3600);
}

typedef struct who {
    const char *sub;
    const char *tid; /* NULL: tenant T */
    const char *roles;
} who;

static const who ALICE = {"alice", NULL, "[\"analyst\"]"};     /* creator */
static const who BOB = {"bob", NULL, "[\"sales\"]"};           /* allowed role */
static const who CAROL = {"carol", NULL, "[]"};                /* allowed user */
static const who ADMIN = {"root", NULL, "[\"tenant-admin\"]"}; /* tenant admin */
static const who DAVE = {"dave", NULL, "[\"analyst\"]"};       /* other user */
static const who EVE = {"eve", "T2", "[\"tenant-admin\"]"};    /* other tenant */

/* Call analytics.dashboards.<verb> as w; returns the parsed reply envelope
 * (caller frees) and sets *code to "ok" or the error code. */
static cJSON *call_ms(const who *w, const char *verb, const char *body, int64_t timeout_ms,
                      const char **code)
{
    char subject[128];
    snprintf(subject, sizeof(subject), "analytics.dashboards.%s", verb);
    char *auth =
        token(w->sub, w->tid ? (strcmp(w->tid, "T2") ? w->tid : tenant2) : tenant, w->roles);
    cJSON *env = th_request(nc, subject, auth, body, timeout_ms);
    free(auth);
    static char codebuf[64];
    const cJSON *e = cJSON_GetObjectItem(env, "error");
    snprintf(codebuf, sizeof(codebuf), "%s",
             e ? cJSON_GetStringValue(cJSON_GetObjectItem(e, "code")) : "ok");
    *code = codebuf;
    return env;
}

static cJSON *call(const who *w, const char *verb, const char *body, const char **code)
{
    return call_ms(w, verb, body, 20000, code);
}

/* The data of a successful call (fails the test otherwise); caller frees env. */
static cJSON *ok(cJSON *env, const char *code)
{
    if (strcmp(code, "ok") != 0) {
        char *s = cJSON_PrintUnformatted(env);
        ck_abort_msg("expected ok, got %s", s);
    }
    return cJSON_GetObjectItem(env, "data");
}

static const char *err_field(const cJSON *env)
{
    return cJSON_GetStringValue(cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(env, "error"), "details"), "field"));
}

static void expect(const who *w, const char *verb, const char *body, const char *want)
{
    const char *code;
    cJSON *env = call(w, verb, body, &code);
    char *s = cJSON_PrintUnformatted(env);
    ck_assert_msg(!strcmp(code, want), "%s as %s: want %s, got %s", verb, w->sub, want, s);
    free(s);
    cJSON_Delete(env);
}

static char *iso(long long t)
{
    static char b[4][40];
    static int k;
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    char *o = b[k++ % 4];
    strftime(o, 40, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return o;
}

static const char *metrics_dims_widgets(void)
{
    return "["
           "{\"id\":\"line1\",\"type\":\"line\",\"title\":\"Signups by country\","
           "\"metricId\":\"signups\",\"dimensions\":[\"properties.country\"],\"granularity\":"
           "\"day\"},"
           "{\"id\":\"pie1\",\"type\":\"pie\",\"title\":\"Signup share\",\"metricId\":\"signups\","
           "\"dimensions\":[\"properties.country\"]},"
           "{\"id\":\"big1\",\"type\":\"bignumber\",\"title\":\"Signups\",\"metricId\":\"signups\"}"
           ","
           "{\"id\":\"tab1\",\"type\":\"table\",\"title\":\"Signups by "
           "plan\",\"metricId\":\"signups\","
           "\"dimensions\":[\"properties.plan\"],\"pageSize\":2},"
           "{\"id\":\"map1\",\"type\":\"map\",\"title\":\"Where\",\"metricId\":\"signups\","
           "\"dimensions\":[\"properties.country\"]},"
           "{\"id\":\"bar1\",\"type\":\"bar\",\"title\":\"Revenue\",\"metricId\":\"revenue\","
           "\"dimensions\":[\"properties.country\"]},"
           "{\"id\":\"txt1\",\"type\":\"text\",\"body\":\"# Hello\\nnotes\"}"
           "]";
}

/* Create a dashboard as alice with the ACL of the matrix; returns its id. */
static char *create_dash(const char *widgets)
{
    char *body;
    ck_assert(
        asprintf(&body,
                 "{\"name\":\"Growth\",\"description\":\"d\",\"widgets\":%s,"
                 "\"accessControl\":{\"allowedRoles\":[\"sales\"],\"allowedUsers\":[\"carol\"]}}",
                 widgets) > 0);
    const char *code;
    cJSON *env = call(&ALICE, "create", body, &code);
    free(body);
    cJSON *d = ok(env, code);
    char *id = strdup(cJSON_GetStringValue(cJSON_GetObjectItem(d, "id")));
    cJSON_Delete(env);
    return id;
}

static void seed_events(void)
{
    char *sql;
    /* (tenant, name, time, country, plan, amount) */
    ck_assert(
        asprintf(
            &sql,
            "INSERT INTO analytics.events (tenant_id, event_id, event_name, occurred_at, "
            "prop_keys, prop_values) "
            "SELECT t, concat(t, toString(n), toString(k)), name, toDateTime(at), "
            "['country','plan','amount'], [c, p, a] "
            "FROM (SELECT arrayJoin(["
            "('%s','user.signed_up',%lld,'FR','pro','',1),"
            "('%s','user.signed_up',%lld,'US','free','',4),"
            "('%s','user.signed_up',%lld,'FR','pro','',3),"
            "('%s','user.signed_up',%lld,'DE','free','',2),"
            "('%s','order.paid',%lld,'FR','pro','10.5',1),"
            "('%s','order.paid',%lld,'DE','free','4.5',1),"
            "('%s','user.signed_up',%lld,'FR','pro','',7)"
            "]) AS r, r.1 AS t, r.2 AS name, r.3 AS at, r.4 AS c, r.5 AS p, r.6 AS a, r.7 AS cnt, "
            "rowNumberInAllBlocks() AS n) ARRAY JOIN range(cnt) AS k",
            tenant, day2 + 3600, tenant, day2 + 7200, tenant, day1 + 3600, tenant, day1 + 10800,
            tenant, day1 + 4000, tenant, day1 + 5000, tenant2, day1 + 3600) > 0);
    char *out = th_ch(sql);
    free(out);
    free(sql);
    char q[256];
    snprintf(q, sizeof(q), "SELECT count() FROM analytics.events WHERE tenant_id = '%s'", tenant);
    ck_assert_int_eq(th_ch_count(q), 12);
}

static pid_t start_double(const char *log)
{
    static char env[6][256];
    snprintf(env[0], sizeof(env[0]), "ANALYTICS_METRICS_DOUBLE_NAME=%s", dbl_name);
    snprintf(env[1], sizeof(env[1]), "ANALYTICS_JWT_SECRET=%s", SECRET);
    snprintf(env[2], sizeof(env[2]), "ANALYTICS_HTTP_ADDR=127.0.0.1:0");
    snprintf(env[3], sizeof(env[3]), "ANALYTICS_METRICS_DOUBLE_SLOW_MS=8000");
    char *envp[] = {env[0], env[1], env[2], env[3], NULL};
    char *argv[] = {"metrics_double", NULL};
    pid_t p = th_spawn(th_bin("tests/helpers/metrics_double"), argv, envp, log);
    ck_assert_msg(th_wait_log(log, "\"msg\":\"started ", 20000),
                  "metrics_double did not start, see %s", log);
    return p;
}

static void suite_setup(void)
{
    char *t = th_unique("dt");
    snprintf(tenant, sizeof(tenant), "%s", t);
    free(t);
    t = th_unique("dt2");
    snprintf(tenant2, sizeof(tenant2), "%s", t);
    free(t);
    t = th_unique("mdbl");
    for (char *p = t; *p; p++)
        if (*p == '.' || *p == ' ')
            *p = '_';
    snprintf(dbl_name, sizeof(dbl_name), "%s", t);
    free(t);
    long long now = time(NULL);
    day1 = now - now % 86400 - 86400;
    day2 = day1 - 86400;
    snprintf(log_dir, sizeof(log_dir), "%s", th_env("ANALYTICS_STACK_DIR"));
    seed_events();
    char log[600];
    snprintf(log, sizeof(log), "%s/metrics_double-%s.log", log_dir, dbl_name);
    dbl_pid = start_double(log);
    snprintf(log, sizeof(log), "%s/dashboards-%s.log", log_dir, dbl_name);
    static char env[8][256];
    snprintf(env[0], sizeof(env[0]), "ANALYTICS_DASHBOARDS_METRICS_PREFIX=analytics.%s", dbl_name);
    snprintf(env[1], sizeof(env[1]), "ANALYTICS_JWT_SECRET=%s", SECRET);
    snprintf(env[2], sizeof(env[2]), "ANALYTICS_HTTP_ADDR=127.0.0.1:0");
    snprintf(env[3], sizeof(env[3]), "ANALYTICS_DASHBOARDS_WIDGET_TIMEOUT=1500ms");
    snprintf(env[4], sizeof(env[4]), "ANALYTICS_LOG_LEVEL=debug");
    snprintf(env[5], sizeof(env[5]), "ANALYTICS_WORKERS=8");
    char *envp[] = {env[0], env[1], env[2], env[3], env[4], env[5], NULL};
    char *argv[] = {"dashboards", NULL};
    dash_pid = th_spawn(th_bin("bin/dashboards"), argv, envp, log);
    ck_assert_msg(th_wait_log(log, "\"msg\":\"started ", 20000), "dashboards did not start, see %s",
                  log);
}

static void suite_teardown(void)
{
    int st = -1;
    if (dash_pid > 0)
        kill(dash_pid, SIGTERM);
    if (dash_pid > 0 && th_wait(dash_pid, 15000, &st, NULL) != 0)
        th_kill(dash_pid);
    if (dbl_pid > 0)
        th_kill(dbl_pid);
    dash_pid = dbl_pid = 0;
    /* a clean drain exits 0; under ASan a leak or an error makes it non-zero */
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
                  "dashboards did not exit cleanly (status %d), see %s/dashboards-%s.log", st,
                  log_dir, dbl_name);
}

static void setup(void)
{
    ck_assert(natsConnection_ConnectTo(&nc, th_env("ANALYTICS_NATS_URL")) == NATS_OK);
}

static void teardown(void)
{
    natsConnection_Destroy(nc);
    nc = NULL;
}

static double num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItem(o, name);
    ck_assert_msg(cJSON_IsNumber(v), "%s is not a number", name);
    return v->valuedouble;
}

static const cJSON *widget_of(const cJSON *render, const char *id)
{
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItem(render, "widgets"))
    {
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(w, "id")), id))
            return w;
    }
    ck_abort_msg("widget %s not in the render", id);
    return NULL;
}

static long long ch_signups(const char *extra)
{
    char q[600];
    snprintf(q, sizeof(q),
             "SELECT count() FROM analytics.events WHERE tenant_id = '%s' AND event_name = "
             "'user.signed_up' AND occurred_at >= toDateTime(%lld) AND occurred_at < "
             "toDateTime(%lld) %s",
             tenant, day2, day1 + 86400, extra ? extra : "");
    return th_ch_count(q);
}

/* -------------------------------------------------------------- tests */

START_TEST(crud_create_get_list_update_delete)
{
    char *id = create_dash(metrics_dims_widgets());
    const char *code;
    char body[512];
    snprintf(body, sizeof(body), "{\"id\":\"%s\"}", id);
    cJSON *env = call(&ALICE, "get", body, &code);
    cJSON *d = ok(env, code);
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(d, "name")), "Growth");
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(d, "createdBy")), "alice");
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(d, "tenantId")), tenant);
    ck_assert_int_eq((int)num(d, "version"), 1);
    const cJSON *ws = cJSON_GetObjectItem(d, "widgets");
    ck_assert_int_eq(cJSON_GetArraySize(ws), 7);
    ck_assert_str_eq(
        cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(ws, 0), "granularity")), "day");
    cJSON_Delete(env);
    /* the row is in ClickHouse */
    char q[300];
    snprintf(q, sizeof(q),
             "SELECT count() FROM analytics.dashboards FINAL WHERE tenant_id='%s' AND id='%s' AND "
             "deleted=0",
             tenant, id);
    ck_assert_int_eq(th_ch_count(q), 1);
    /* update with a stale version: refused */
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"version\":7,\"name\":\"X\"}", id);
    env = call(&ALICE, "update", body, &code);
    ck_assert_str_eq(code, "failed_precondition");
    ck_assert_str_eq(err_field(env), "version");
    cJSON_Delete(env);
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"version\":1,\"name\":\"Growth 2\"}", id);
    env = call(&ALICE, "update", body, &code);
    d = ok(env, code);
    ck_assert_int_eq((int)num(d, "version"), 2);
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(d, "name")), "Growth 2");
    cJSON_Delete(env);
    /* the record cache in Redis holds the new version */
    char rk[300];
    snprintf(rk, sizeof(rk), "GET analytics:dashboards:record:%s:%s", tenant, id);
    char *rec = th_redis(rk);
    ck_assert_msg(strstr(rec, "\"v\":2") && strstr(rec, "Growth 2"), "record cache: %s", rec);
    free(rec);
    /* list shows it, with a widget count */
    env = call(&ALICE, "list", "{}", &code);
    d = ok(env, code);
    bool seen = false;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(d, "dashboards"))
    {
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(it, "id")), id)) {
            seen = true;
            ck_assert_int_eq((int)num(it, "widgetCount"), 7);
            ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(it, "name")), "Growth 2");
        }
    }
    ck_assert(seen);
    cJSON_Delete(env);
    /* soft delete: gone from get and list, tombstone row kept */
    snprintf(body, sizeof(body), "{\"id\":\"%s\"}", id);
    expect(&ALICE, "delete", body, "ok");
    expect(&ALICE, "get", body, "not_found");
    env = call(&ALICE, "list", "{}", &code);
    d = ok(env, code);
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(d, "dashboards"))
    {
        ck_assert_str_ne(cJSON_GetStringValue(cJSON_GetObjectItem(it, "id")), id);
    }
    cJSON_Delete(env);
    snprintf(
        q, sizeof(q),
        "SELECT count() FROM analytics.dashboards WHERE tenant_id='%s' AND id='%s' AND deleted=1",
        tenant, id);
    ck_assert_int_eq(th_ch_count(q), 1);
    free(id);
}
END_TEST

static void expect_create_error(const char *widgets, const char *want, const char *field)
{
    char *body;
    ck_assert(asprintf(&body, "{\"name\":\"bad\",\"widgets\":%s}", widgets) > 0);
    const char *code;
    cJSON *env = call(&ALICE, "create", body, &code);
    char *s = cJSON_PrintUnformatted(env);
    ck_assert_msg(!strcmp(code, want), "%s: want %s, got %s", widgets, want, s);
    if (field)
        ck_assert_msg(err_field(env) && !strcmp(err_field(env), field), "field: want %s, got %s",
                      field, s);
    free(s);
    free(body);
    cJSON_Delete(env);
}

START_TEST(validation_errors)
{
    expect(&ALICE, "create", "{\"name\":\"\"}", "invalid_argument");
    expect_create_error("[{\"type\":\"line\",\"metricId\":\"nope\"}]", "invalid_argument",
                        "widgets[0].metricId");
    expect_create_error("[{\"type\":\"line\",\"metricId\":\"signups\",\"dimensions\":[\"city\"]}]",
                        "invalid_argument", "widgets[0].dimensions");
    expect_create_error("[{\"type\":\"line\",\"metricId\":\"signups\",\"filters\":[{\"field\":"
                        "\"properties.country\",\"op\":\"like\",\"value\":\"F%\"}]}]",
                        "invalid_argument", "widgets[0].filters");
    /* a well-formed dimension the metric does not have: metrics says no */
    expect_create_error("[{\"type\":\"line\",\"metricId\":\"signups\",\"dimensions\":"
                        "[\"properties.city\"]}]",
                        "invalid_argument", "widgets[0].dimensions");
    expect_create_error("[{\"type\":\"line\",\"metricId\":\"signups\",\"filters\":[{\"field\":"
                        "\"city\",\"op\":\"eq\",\"value\":\"x\"}]}]",
                        "invalid_argument", "widgets[0].filters");
    expect_create_error("[{\"type\":\"line\",\"metricId\":\"signups\",\"filters\":[{\"field\":"
                        "\"properties.city\",\"op\":\"eq\",\"value\":\"x\"}]}]",
                        "invalid_argument", "widgets[0].filters");
    expect_create_error("[{\"type\":\"line\",\"metricId\":\"signups\",\"filters\":[{\"field\":"
                        "\"properties.country\",\"op\":\"in\",\"value\":[]}]}]",
                        "invalid_argument", "widgets[0].filters");
    expect_create_error("[{\"type\":\"line\",\"metricId\":\"signups\",\"filters\":[{\"field\":"
                        "\"properties.country\",\"op\":\"eq\",\"value\":[\"FR\"]}]}]",
                        "invalid_argument", "widgets[0].filters");
    expect_create_error("[{\"type\":\"line\",\"metricId\":\"old_signups\"}]", "failed_precondition",
                        "widgets[0].metricId");
    expect_create_error("[{\"type\":\"line\",\"metricId\":\"draft\"}]", "failed_precondition",
                        "widgets[0].metricId");
    expect_create_error("[{\"type\":\"gauge\",\"metricId\":\"signups\"}]", "invalid_argument",
                        "widgets[0].type");
    expect_create_error("[{\"type\":\"text\"}]", "invalid_argument", "widgets[0].body");
    expect_create_error("[{\"type\":\"map\",\"metricId\":\"signups\"}]", "invalid_argument",
                        "widgets[0].dimensions");
    expect_create_error("[{\"type\":\"line\",\"metricId\":\"signups\",\"granularity\":\"minute\"}]",
                        "invalid_argument", "widgets[0].granularity");
    expect_create_error(
        "[{\"type\":\"line\",\"metricId\":\"signups\",\"timeRange\":{\"last\":\"7w\"}}]",
        "invalid_argument", "widgets[0].timeRange");
    /* nothing of these was stored */
    char q[300];
    snprintf(q, sizeof(q),
             "SELECT count() FROM analytics.dashboards WHERE tenant_id='%s' AND name='bad'",
             tenant);
    ck_assert_int_eq(th_ch_count(q), 0);
}
END_TEST

START_TEST(widget_operations)
{
    char *id = create_dash("[{\"id\":\"a\",\"type\":\"text\",\"body\":\"A\"},"
                           "{\"id\":\"b\",\"type\":\"bignumber\",\"metricId\":\"signups\"}]");
    char body[1024];
    const char *code;
    /* add: deprecated metric refused, a good one appended at index 1 */
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"widget\":{\"type\":\"line\",\"metricId\":\"old_signups\"}}", id);
    expect(&ALICE, "add-widget", body, "failed_precondition");
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"index\":1,\"widget\":{\"id\":\"c\",\"type\":\"pie\",\"metricId\":"
             "\"signups\",\"dimensions\":[\"properties.plan\"]}}",
             id);
    cJSON *env = call(&ALICE, "add-widget", body, &code);
    cJSON *d = ok(env, code);
    ck_assert_int_eq((int)num(d, "version"), 2);
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(
                         cJSON_GetArrayItem(cJSON_GetObjectItem(d, "widgets"), 1), "id")),
                     "c");
    cJSON_Delete(env);
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"widget\":{\"id\":\"c\",\"type\":\"text\",\"body\":\"dup\"}}", id);
    expect(&ALICE, "add-widget", body, "already_exists");
    /* update: bad dimension refused; a good change kept */
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"widget\":{\"id\":\"c\",\"type\":\"pie\",\"metricId\":\"signups\","
             "\"dimensions\":[\"city\"]}}",
             id);
    expect(&ALICE, "update-widget", body, "invalid_argument");
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"widget\":{\"id\":\"zz\",\"type\":\"text\",\"body\":\"x\"}}", id);
    expect(&ALICE, "update-widget", body, "not_found");
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"widget\":{\"id\":\"c\",\"type\":\"bar\",\"metricId\":\"signups\","
             "\"dimensions\":[\"properties.country\"],\"title\":\"T\"}}",
             id);
    env = call(&ALICE, "update-widget", body, &code);
    d = ok(env, code);
    const cJSON *w = cJSON_GetArrayItem(cJSON_GetObjectItem(d, "widgets"), 1);
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(w, "type")), "bar");
    ck_assert_int_eq((int)num(d, "version"), 3);
    cJSON_Delete(env);
    /* reorder: must be a permutation */
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"order\":[\"a\",\"b\"]}", id);
    expect(&ALICE, "reorder-widgets", body, "invalid_argument");
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"order\":[\"a\",\"a\",\"b\"]}", id);
    expect(&ALICE, "reorder-widgets", body, "invalid_argument");
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"order\":[\"b\",\"c\",\"a\"]}", id);
    expect(&ALICE, "reorder-widgets", body, "ok");
    /* remove */
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"widgetId\":\"c\"}", id);
    expect(&ALICE, "remove-widget", body, "ok");
    expect(&ALICE, "remove-widget", body, "not_found");
    snprintf(body, sizeof(body), "{\"id\":\"%s\"}", id);
    env = call(&ALICE, "get", body, &code);
    d = ok(env, code);
    const cJSON *ws = cJSON_GetObjectItem(d, "widgets");
    ck_assert_int_eq(cJSON_GetArraySize(ws), 2);
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(ws, 0), "id")),
                     "b");
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(ws, 1), "id")),
                     "a");
    ck_assert_int_eq((int)num(d, "version"), 5);
    cJSON_Delete(env);
    free(id);
}
END_TEST

static bool list_has(const who *w, const char *id)
{
    const char *code;
    cJSON *env = call(w, "list", "{}", &code);
    cJSON *d = ok(env, code);
    bool seen = false;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(d, "dashboards"))
    {
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(it, "id")), id))
            seen = true;
    }
    cJSON_Delete(env);
    return seen;
}

START_TEST(access_control_matrix)
{
    char *id = create_dash("[{\"id\":\"t\",\"type\":\"text\",\"body\":\"hi\"}]");
    char body[512], upd[512];
    snprintf(body, sizeof(body), "{\"id\":\"%s\"}", id);
    snprintf(upd, sizeof(upd), "{\"id\":\"%s\",\"description\":\"changed\"}", id);
    struct {
        const who *w;
        const char *view, *update;
        bool listed;
    } m[] = {
        {&ALICE, "ok", "ok", true},
        {&BOB, "ok", "permission_denied", true},
        {&CAROL, "ok", "permission_denied", true},
        {&ADMIN, "ok", "ok", true},
        {&DAVE, "permission_denied", "permission_denied", false},
        {&EVE, "not_found", "not_found", false},
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
        expect(m[i].w, "get", body, m[i].view);
        expect(m[i].w, "render", body, m[i].view);
        expect(m[i].w, "update", upd, m[i].update);
        ck_assert_msg(list_has(m[i].w, id) == m[i].listed, "list as %s", m[i].w->sub);
    }
    /* another tenant naming ours explicitly is denied, not served */
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"tenantId\":\"%s\"}", id, tenant);
    expect(&EVE, "get", body, "permission_denied");
    /* access changes: creator and tenant admin only */
    snprintf(upd, sizeof(upd), "{\"id\":\"%s\",\"accessControl\":{\"allowedUsers\":[\"dave\"]}}",
             id);
    expect(&BOB, "update", upd, "permission_denied");
    expect(&ADMIN, "update", upd, "ok");
    snprintf(body, sizeof(body), "{\"id\":\"%s\"}", id);
    expect(&DAVE, "get", body, "ok");
    expect(&BOB, "get", body, "permission_denied");
    ck_assert(!list_has(&BOB, id));
    free(id);
}
END_TEST

START_TEST(render_values_match_clickhouse)
{
    char *id = create_dash(metrics_dims_widgets());
    char body[1024];
    const char *code;
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"from\":\"%s\",\"to\":\"%s\",\"noCache\":true}",
             id, iso(day2), iso(day1 + 86400));
    cJSON *env = call(&BOB, "render", body, &code);
    cJSON *r = ok(env, code);
    /* line: series by country over the two days */
    const cJSON *line = cJSON_GetObjectItem(widget_of(r, "line1"), "data");
    ck_assert_ptr_nonnull(line);
    const cJSON *bk = cJSON_GetObjectItem(line, "buckets");
    ck_assert_int_eq(cJSON_GetArraySize(bk), 2);
    /* metrics writes 2026-11-26T00:00:00.000Z: compare up to the seconds */
    ck_assert_int_eq(strncmp(cJSON_GetStringValue(cJSON_GetArrayItem(bk, 0)), iso(day2), 19), 0);
    ck_assert_int_eq(strncmp(cJSON_GetStringValue(cJSON_GetArrayItem(bk, 1)), iso(day1), 19), 0);
    const cJSON *s;
    int nseries = 0;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(line, "series"))
    {
        const char *c = cJSON_GetStringValue(cJSON_GetObjectItem(s, "name"));
        char extra[200];
        for (int k = 0; k < 2; k++) {
            long long t0 = k == 0 ? day2 : day1;
            snprintf(extra, sizeof(extra),
                     "AND prop_values[indexOf(prop_keys,'country')] = '%s' AND "
                     "toStartOfDay(occurred_at) = toDateTime(%lld)",
                     c, t0);
            ck_assert_int_eq(
                (long long)cJSON_GetArrayItem(cJSON_GetObjectItem(s, "values"), k)->valuedouble,
                ch_signups(extra));
        }
        nseries++;
    }
    ck_assert_int_eq(nseries, 3); /* FR, US, DE; T2's data never shows */
    /* pie: shares of the countries */
    const cJSON *pie = cJSON_GetObjectItem(widget_of(r, "pie1"), "data");
    ck_assert_int_eq((int)num(pie, "total"), (int)ch_signups(NULL));
    ck_assert_int_eq((int)num(pie, "total"), 10);
    const cJSON *first = cJSON_GetArrayItem(cJSON_GetObjectItem(pie, "slices"), 0);
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(first, "name")),
                     "FR"); /* FR 4 = US 4: by name */
    ck_assert_double_eq_tol(num(first, "share"), 0.4, 1e-9);
    /* bignumber: value over the range, previous period (the two days before) */
    const cJSON *big = cJSON_GetObjectItem(widget_of(r, "big1"), "data");
    ck_assert_int_eq((int)num(big, "value"), 10);
    ck_assert_int_eq((int)num(big, "previous"), 0);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(big, "changePct")));
    /* table: paging of 2 rows per page, total rows = bucket x plan groups */
    const cJSON *tab = cJSON_GetObjectItem(widget_of(r, "tab1"), "data");
    ck_assert_int_eq((int)num(tab, "totalRows"), 4);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(tab, "rows")), 2);
    /* map: ISO codes */
    const cJSON *map =
        cJSON_GetObjectItem(cJSON_GetObjectItem(widget_of(r, "map1"), "data"), "values");
    ck_assert_int_eq((int)num(map, "FR"),
                     (int)ch_signups("AND prop_values[indexOf(prop_keys,'country')]='FR'"));
    ck_assert_int_eq((int)num(map, "FR"), 4);
    ck_assert_int_eq((int)num(map, "US"), 4);
    ck_assert_int_eq((int)num(map, "DE"), 2);
    /* bar: revenue per country on D1 */
    const cJSON *bar = cJSON_GetObjectItem(widget_of(r, "bar1"), "data");
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(bar, "unit")), "EUR");
    double total = 0;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(bar, "series"))
    {
        const cJSON *v;
        cJSON_ArrayForEach(v, cJSON_GetObjectItem(s, "values"))
        {
            total += v->valuedouble;
        }
    }
    ck_assert_double_eq_tol(total, 15.0, 1e-9);
    /* text */
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(
                         cJSON_GetObjectItem(widget_of(r, "txt1"), "data"), "body")),
                     "# Hello\nnotes");
    cJSON_Delete(env);

    /* overrides: only D1, only FR (filter on country; widgets without it ignore nothing) */
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"from\":\"%s\",\"to\":\"%s\",\"filters\":[{\"field\":\"properties."
             "country\","
             "\"op\":\"eq\",\"value\":\"FR\"}],\"noCache\":true}",
             id, iso(day1), iso(day1 + 86400));
    env = call(&BOB, "render", body, &code);
    r = ok(env, code);
    line = cJSON_GetObjectItem(widget_of(r, "line1"), "data");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(line, "buckets")), 1);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(line, "series")), 1);
    ck_assert_int_eq((int)cJSON_GetArrayItem(
                         cJSON_GetObjectItem(
                             cJSON_GetArrayItem(cJSON_GetObjectItem(line, "series"), 0), "values"),
                         0)
                         ->valuedouble,
                     3);
    big = cJSON_GetObjectItem(widget_of(r, "big1"), "data");
    ck_assert_int_eq((int)num(big, "value"), 3);
    ck_assert_int_eq((int)num(big, "previous"), 1); /* FR on D2 */
    ck_assert_double_eq_tol(num(big, "changePct"), 200.0, 1e-9);
    cJSON_Delete(env);
    free(id);
}
END_TEST

START_TEST(render_cache_by_version_and_params)
{
    char *id = create_dash("[{\"id\":\"big\",\"type\":\"bignumber\",\"metricId\":\"signups\"}]");
    char body[512];
    const char *code;
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"from\":\"%s\",\"to\":\"%s\"}", id, iso(day2),
             iso(day1 + 86400));
    cJSON *env = call(&ALICE, "render", body, &code);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(ok(env, code), "cached")));
    cJSON_Delete(env);
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "--scan --pattern 'analytics:dashboards:render:%s:%s:1:*'", tenant,
             id);
    char *keys = th_redis(cmd);
    ck_assert_msg(strstr(keys, id) != NULL, "no cache key: %s", keys);
    free(keys);
    env = call(&ALICE, "render", body, &code);
    cJSON *r = ok(env, code);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(r, "cached")));
    ck_assert_int_eq((int)num(cJSON_GetObjectItem(widget_of(r, "big"), "data"), "value"), 10);
    cJSON_Delete(env);
    /* other parameters: a miss */
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"from\":\"%s\",\"to\":\"%s\"}", id, iso(day1),
             iso(day1 + 86400));
    env = call(&ALICE, "render", body, &code);
    r = ok(env, code);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(r, "cached")));
    ck_assert_int_eq((int)num(cJSON_GetObjectItem(widget_of(r, "big"), "data"), "value"), 5);
    cJSON_Delete(env);
    /* a new version: a miss */
    char upd[300];
    snprintf(upd, sizeof(upd), "{\"id\":\"%s\",\"name\":\"renamed\"}", id);
    expect(&ALICE, "update", upd, "ok");
    env = call(&ALICE, "render", body, &code);
    r = ok(env, code);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(r, "cached")));
    ck_assert_int_eq((int)num(r, "version"), 2);
    cJSON_Delete(env);
    free(id);
}
END_TEST

START_TEST(failing_and_slow_widgets_carry_their_own_error)
{
    char *id = create_dash("[{\"id\":\"good\",\"type\":\"bignumber\",\"metricId\":\"signups\"},"
                           "{\"id\":\"bad\",\"type\":\"line\",\"metricId\":\"broken\"},"
                           "{\"id\":\"late\",\"type\":\"line\",\"metricId\":\"slow\"}]");
    char body[512];
    const char *code;
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"from\":\"%s\",\"to\":\"%s\"}", id, iso(day2),
             iso(day1 + 86400));
    int64_t t0 = th_now_ms();
    cJSON *env = call(&ALICE, "render", body, &code);
    int64_t took = th_now_ms() - t0;
    cJSON *r = ok(env, code);
    ck_assert_msg(took < 4000, "render took %lld ms with a 1.5 s widget timeout", (long long)took);
    ck_assert_int_eq((int)num(cJSON_GetObjectItem(widget_of(r, "good"), "data"), "value"), 10);
    const cJSON *e = cJSON_GetObjectItem(widget_of(r, "bad"), "error");
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(e, "code")), "internal");
    ck_assert_ptr_null(cJSON_GetObjectItem(widget_of(r, "bad"), "data"));
    e = cJSON_GetObjectItem(widget_of(r, "late"), "error");
    ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(e, "code")), "unavailable");
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(r, "cached")));
    cJSON_Delete(env);
    /* a partial result is not cached */
    env = call(&ALICE, "render", body, &code);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(ok(env, code), "cached")));
    cJSON_Delete(env);
    /* every widget hung: unavailable within the timeout, not a hang */
    char *id2 = create_dash("[{\"id\":\"l1\",\"type\":\"line\",\"metricId\":\"slow\"},"
                            "{\"id\":\"l2\",\"type\":\"bignumber\",\"metricId\":\"slow\"}]");
    snprintf(body, sizeof(body), "{\"id\":\"%s\"}", id2);
    t0 = th_now_ms();
    env = call(&ALICE, "render", body, &code);
    took = th_now_ms() - t0;
    ck_assert_str_eq(code, "unavailable");
    ck_assert_msg(took >= 1400 && took < 4000, "took %lld ms", (long long)took);
    cJSON_Delete(env);
    free(id);
    free(id2);
}
END_TEST

/* Decode a PNG with python3's zlib/struct (independent of cairo): prints
 * "W H distinct_colours non_white_fraction". */
static char *png_info(const char *path)
{
    char *cmd = NULL;
    ck_assert(
        asprintf(
            &cmd,
            "python3 - '%s' <<'EOF'\n"
            "import sys, struct, zlib\n"
            "d = open(sys.argv[1], 'rb').read()\n"
            "assert d[:8] == b'\\x89PNG\\r\\n\\x1a\\n', 'not a PNG'\n"
            "i = 8; idat = b''; w = h = 0\n"
            "while i < len(d):\n"
            "    n, t = struct.unpack('>I4s', d[i:i+8]); c = d[i+8:i+8+n]\n"
            "    if t == b'IHDR': w, h, bd, ct = struct.unpack('>IIBB', c[:10]); assert bd == 8\n"
            "    if t == b'IDAT': idat += c\n"
            "    i += 12 + n\n"
            "raw = zlib.decompress(idat); bpp = {2: 3, 6: 4}[ct]; stride = w * bpp\n"
            "prev = bytearray(stride); px = set(); nonwhite = 0; p = 0\n"
            "for y in range(h):\n"
            "    f = raw[p]; line = bytearray(raw[p+1:p+1+stride]); p += 1 + stride\n"
            "    for x in range(stride):\n"
            "        a = line[x-bpp] if x >= bpp else 0; b = prev[x]; c = prev[x-bpp] if x >= bpp "
            "else 0\n"
            "        if f == 1: line[x] = (line[x] + a) & 255\n"
            "        elif f == 2: line[x] = (line[x] + b) & 255\n"
            "        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255\n"
            "        elif f == 4:\n"
            "            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)\n"
            "            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else "
            "c)) & 255\n"
            "    prev = line\n"
            "    for x in range(0, stride, bpp):\n"
            "        q = bytes(line[x:x+3]); px.add(q); nonwhite += q != b'\\xff\\xff\\xff'\n"
            "print(w, h, len(px), round(nonwhite / (w * h), 4))\n"
            "EOF",
            path) > 0);
    int rc = 0;
    char *out = th_run(cmd, &rc);
    free(cmd);
    ck_assert_msg(rc == 0, "png decode failed: %s", out);
    return out;
}

START_TEST(render_widget_png_decodes)
{
    char *id = create_dash(metrics_dims_widgets());
    char body[1024];
    const char *code;
    const char *ids[] = {"line1", "bar1", "pie1", "big1"};
    for (int i = 0; i < 4; i++) {
        snprintf(body, sizeof(body),
                 "{\"id\":\"%s\",\"widgetId\":\"%s\",\"format\":\"png\",\"width\":800,\"height\":"
                 "400,\"from\":\"%s\",\"to\":\"%s\"}",
                 id, ids[i], iso(day2), iso(day1 + 86400));
        cJSON *env = call(&CAROL, "render-widget", body, &code);
        cJSON *w = ok(env, code);
        const cJSON *img = cJSON_GetObjectItem(w, "image");
        ck_assert_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(img, "contentType")),
                         "image/png");
        const char *b64 = cJSON_GetStringValue(cJSON_GetObjectItem(img, "base64"));
        ck_assert_ptr_nonnull(b64);
        char path[700], cmd[1600];
        snprintf(path, sizeof(path), "%s/widget-%s.png", log_dir, ids[i]);
        char b64path[720];
        snprintf(b64path, sizeof(b64path), "%s.b64", path);
        FILE *f = fopen(b64path, "w");
        ck_assert_ptr_nonnull(f);
        fputs(b64, f);
        fclose(f);
        snprintf(cmd, sizeof(cmd), "base64 -d '%s' > '%s'", b64path, path);
        int rc = 0;
        free(th_run(cmd, &rc));
        ck_assert_int_eq(rc, 0);
        char *info = png_info(path);
        int pw = 0, ph = 0, colours = 0;
        double nonwhite = 0;
        ck_assert_int_eq(sscanf(info, "%d %d %d %lf", &pw, &ph, &colours, &nonwhite), 4);
        ck_assert_int_eq(pw, 800);
        ck_assert_int_eq(ph, 400);
        ck_assert_msg(colours > 10 && nonwhite > 0.01 && nonwhite < 0.9,
                      "%s looks blank or flooded: %s", ids[i], info);
        free(info);
        cJSON_Delete(env);
    }
    /* a table has no picture; an unknown widget is not found */
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"widgetId\":\"tab1\",\"format\":\"png\"}", id);
    expect(&CAROL, "render-widget", body, "invalid_argument");
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"widgetId\":\"nope\"}", id);
    expect(&CAROL, "render-widget", body, "not_found");
    /* json form of one widget */
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"widgetId\":\"map1\",\"from\":\"%s\",\"to\":\"%s\"}", id, iso(day2),
             iso(day1 + 86400));
    cJSON *env = call(&CAROL, "render-widget", body, &code);
    ck_assert_int_eq(
        (int)num(cJSON_GetObjectItem(cJSON_GetObjectItem(ok(env, code), "data"), "values"), "US"),
        4);
    cJSON_Delete(env);
    free(id);
}
END_TEST

typedef struct racer {
    char body[256];
    char *auth;
    char code[64];
    pthread_t th;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    natsMsg *m = NULL, *reply = NULL;
    natsMsg_Create(&m, "analytics.dashboards.update", NULL, r->body, (int)strlen(r->body));
    natsMsgHeader_Set(m, "Authorization", r->auth);
    snprintf(r->code, sizeof(r->code), "no reply");
    if (natsConnection_RequestMsg(&reply, nc, m, 20000) == NATS_OK) {
        cJSON *env =
            cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
        const cJSON *e = cJSON_GetObjectItem(env, "error");
        snprintf(r->code, sizeof(r->code), "%s",
                 e ? cJSON_GetStringValue(cJSON_GetObjectItem(e, "code")) : "ok");
        cJSON_Delete(env);
        natsMsg_Destroy(reply);
    }
    natsMsg_Destroy(m);
    return NULL;
}

START_TEST(concurrent_updates_of_one_version_one_wins)
{
    char *id = create_dash("[{\"id\":\"t\",\"type\":\"text\",\"body\":\"x\"}]");
    enum { N = 6 };
    racer r[N] = {0};
    for (int i = 0; i < N; i++) {
        snprintf(r[i].body, sizeof(r[i].body),
                 "{\"id\":\"%s\",\"version\":1,\"name\":\"racer %d\"}", id, i);
        r[i].auth = token("alice", tenant, ALICE.roles);
    }
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(pthread_create(&r[i].th, NULL, race, &r[i]), 0);
    int wins = 0, conflicts = 0;
    const char *winner = NULL;
    for (int i = 0; i < N; i++) {
        pthread_join(r[i].th, NULL);
        free(r[i].auth);
        if (!strcmp(r[i].code, "ok")) {
            wins++;
            winner = r[i].body;
        } else if (!strcmp(r[i].code, "failed_precondition")) {
            conflicts++;
        }
    }
    ck_assert_int_eq(wins, 1);
    ck_assert_int_eq(conflicts, N - 1);
    /* the stored record is version 2 with the winner's name */
    const char *code;
    char body[256];
    snprintf(body, sizeof(body), "{\"id\":\"%s\"}", id);
    cJSON *env = call(&ALICE, "get", body, &code);
    cJSON *d = ok(env, code);
    ck_assert_int_eq((int)num(d, "version"), 2);
    ck_assert_ptr_nonnull(strstr(winner, cJSON_GetStringValue(cJSON_GetObjectItem(d, "name"))));
    cJSON_Delete(env);
    char q[300];
    snprintf(
        q, sizeof(q),
        "SELECT count() FROM analytics.dashboards WHERE tenant_id='%s' AND id='%s' AND version=2",
        tenant, id);
    ck_assert_int_eq(th_ch_count(q), 1);
    free(id);
}
END_TEST

/* Last: stops the metrics double. */
START_TEST(metrics_down_is_unavailable_fast)
{
    char *id = create_dash("[{\"id\":\"g\",\"type\":\"bignumber\",\"metricId\":\"signups\"}]");
    kill(dbl_pid, SIGKILL);
    th_sleep_ms(300);
    char body[512];
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"noCache\":true}", id);
    const char *code;
    int64_t t0 = th_now_ms();
    cJSON *env = call(&ALICE, "render", body, &code);
    int64_t took = th_now_ms() - t0;
    ck_assert_str_eq(code, "unavailable");
    ck_assert_msg(took < 3000, "took %lld ms", (long long)took);
    cJSON_Delete(env);
    /* validation needs metrics too: unavailable, not a crash or a hang */
    snprintf(body, sizeof(body),
             "{\"id\":\"%s\",\"widget\":{\"type\":\"line\",\"metricId\":\"signups\"}}", id);
    expect(&ALICE, "add-widget", body, "unavailable");
    /* the text-only parts still work */
    snprintf(body, sizeof(body), "{\"id\":\"%s\"}", id);
    expect(&ALICE, "get", body, "ok");
    free(id);
}
END_TEST

Suite *dashboards_suite(void)
{
    Suite *s = suite_create("dashboards");
    TCase *tc = tcase_create("service");
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, crud_create_get_list_update_delete);
    tcase_add_test(tc, validation_errors);
    tcase_add_test(tc, widget_operations);
    tcase_add_test(tc, access_control_matrix);
    tcase_add_test(tc, render_values_match_clickhouse);
    tcase_add_test(tc, render_cache_by_version_and_params);
    tcase_add_test(tc, failing_and_slow_widgets_carry_their_own_error);
    tcase_add_test(tc, render_widget_png_decodes);
    tcase_add_test(tc, concurrent_updates_of_one_version_one_wins);
    tcase_add_test(tc, metrics_down_is_unavailable_fast);
    suite_add_tcase(s, tc);
    return s;
}
