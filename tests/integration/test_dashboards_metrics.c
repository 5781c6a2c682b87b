/*
 * test_dashboards_metrics.c - dashboards against the REAL metrics service
 * (build/bin/metrics, branch metrics) on the local stack: metric
 * definitions created over NATS with SQL templates, dashboards validating
 * and rendering through them, values checked against ClickHouse.
 *
 * Seeded events (tenant T): user.signed_up on D2 (the day before yesterday,
 * UTC): FR x1, US x4; on D1 (yesterday): FR x3, DE x2 (property country).
 */
#include "tests/harness.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SECRET "dashm-secret-0123456789abcdefghijklmnopqrstuv"

static natsConnection *nc;
static pid_t metrics_pid, dash_pid;
static char tenant[64];
static long long day1, day2;
static char dir[512];
static char m_signups[40], m_flat[40], m_old[40]; /* metric ids */

/* Request subject as alice; returns the envelope, *code "ok" or the error code. */
static cJSON *req(const char *subject, const char *body, const char **code)
{
    char *a = th_bearer(SECRET, "alice", tenant, NULL, "[\"analyst\"]", 3600);
    cJSON *env = th_request(nc, subject, a, body, 20000);
    free(a);
    static char cb[64];
    const cJSON *e = cJSON_GetObjectItem(env, "error");
    snprintf(cb, sizeof(cb), "%s", e ? cJSON_GetStringValue(cJSON_GetObjectItem(e, "code")) : "ok");
    *code = cb;
    return env;
}

static cJSON *ok(cJSON *env, const char *code)
{
    if (strcmp(code, "ok") != 0)
        ck_abort_msg("expected ok, got %s", cJSON_PrintUnformatted(env));
    return cJSON_GetObjectItem(env, "data");
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

static void create_metric(const char *name, const char *query, char *id_out)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "name", name);
    cJSON_AddStringToObject(b, "query", query);
    cJSON_AddStringToObject(b, "unit", "count");
    char *body = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    const char *code;
    cJSON *env = req("analytics.metrics.create", body, &code);
    free(body);
    snprintf(id_out, 40, "%s", cJSON_GetStringValue(cJSON_GetObjectItem(ok(env, code), "id")));
    cJSON_Delete(env);
}

static void suite_setup(void)
{
    char *t = th_unique("dm");
    snprintf(tenant, sizeof(tenant), "%s", t);
    free(t);
    long long now = time(NULL);
    day1 = now - now % 86400 - 86400;
    day2 = day1 - 86400;
    snprintf(dir, sizeof(dir), "%s", th_env("ANALYTICS_STACK_DIR"));
    char *sql;
    ck_assert(
        asprintf(&sql,
                 "INSERT INTO analytics.events (tenant_id, event_id, event_name, occurred_at, "
                 "prop_keys, prop_values) SELECT '%s', concat(toString(n), '-', toString(k)), "
                 "'user.signed_up', toDateTime(r.1), ['country'], [r.2] FROM (SELECT "
                 "arrayJoin([(%lld,'FR',1),(%lld,'US',4),(%lld,'FR',3),(%lld,'DE',2)]) AS r, "
                 "rowNumberInAllBlocks() AS n) ARRAY JOIN range(r.3) AS k",
                 tenant, day2 + 3600, day2 + 7200, day1 + 3600, day1 + 10800) > 0);
    free(th_ch(sql));
    free(sql);
    char log[700];
    static char env[8][300];
    snprintf(env[0], sizeof(env[0]), "ANALYTICS_JWT_SECRET=%s", SECRET);
    snprintf(env[1], sizeof(env[1]), "ANALYTICS_HTTP_ADDR=127.0.0.1:0");
    snprintf(env[2], sizeof(env[2]), "ANALYTICS_METRICS_SCHEDULER=false");
    snprintf(env[3], sizeof(env[3]), "ANALYTICS_METRICS_MATERIALIZE_WORKERS=0");
    snprintf(env[4], sizeof(env[4]), "ANALYTICS_METRICS_CACHE_TTL=0");
    char *envp[] = {env[0], env[1], env[2], env[3], env[4], NULL};
    char *argv[] = {"metrics", NULL};
    snprintf(log, sizeof(log), "%s/metrics-%s.log", dir, tenant);
    metrics_pid = th_spawn(th_bin("bin/metrics"), argv, envp, log);
    ck_assert_msg(th_wait_log(log, "\"msg\":\"started ", 20000), "metrics did not start, see %s",
                  log);
    /* generous: under ASan on a busy machine a first metrics query is slow */
    snprintf(env[5], sizeof(env[5]), "ANALYTICS_DASHBOARDS_VALIDATE_TIMEOUT=20s");
    snprintf(env[6], sizeof(env[6]), "ANALYTICS_DASHBOARDS_WIDGET_TIMEOUT=20s");
    char *envd[] = {env[0], env[1], env[5], env[6], NULL};
    char *argvd[] = {"dashboards", NULL};
    snprintf(log, sizeof(log), "%s/dashboards-%s.log", dir, tenant);
    dash_pid = th_spawn(th_bin("bin/dashboards"), argvd, envd, log);
    ck_assert_msg(th_wait_log(log, "\"msg\":\"started ", 20000), "dashboards did not start, see %s",
                  log);
    /* The metrics are made in a child process: this fixture runs in the
     * runner itself, and a NATS connection there (library threads) would be
     * inherited half-dead by every test forked after it. */
    int fds[2];
    ck_assert(pipe(fds) == 0);
    pid_t pid = fork();
    ck_assert(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        ck_assert(natsConnection_ConnectTo(&nc, th_env("ANALYTICS_NATS_URL")) == NATS_OK);
        create_metric("signups",
                      "SELECT {{bucket}} AS bucket{{dimensions}}, count() AS value FROM "
                      "{{events}} WHERE {{time_range}} AND event_name = 'user.signed_up' "
                      "AND {{filters}} GROUP BY bucket{{group_by}}",
                      m_signups);
        create_metric("signups flat",
                      "SELECT {{bucket}} AS bucket, count() AS value FROM {{events}} "
                      "WHERE {{time_range}} AND event_name = 'user.signed_up' GROUP "
                      "BY bucket",
                      m_flat);
        create_metric("old signups",
                      "SELECT {{bucket}} AS bucket, count() AS value FROM {{events}} "
                      "WHERE {{time_range}} GROUP BY bucket",
                      m_old);
        char body[200];
        snprintf(body, sizeof(body), "{\"id\":\"%s\"}", m_old);
        const char *code;
        cJSON *env2 = req("analytics.metrics.deprecate", body, &code);
        ok(env2, code);
        cJSON_Delete(env2);
        natsConnection_Destroy(nc);
        nc = NULL;
        char ids[200];
        int n = snprintf(ids, sizeof(ids), "%s %s %s", m_signups, m_flat, m_old);
        _exit(write(fds[1], ids, (size_t)n) == n ? 0 : 1);
    }
    close(fds[1]);
    char ids[200] = {0};
    ssize_t got = read(fds[0], ids, sizeof(ids) - 1);
    close(fds[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    ck_assert_msg(got > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "creating the metrics failed");
    ck_assert_int_eq(sscanf(ids, "%39s %39s %39s", m_signups, m_flat, m_old), 3);
}

static void suite_teardown(void)
{
    int st = -1;
    if (dash_pid > 0)
        kill(dash_pid, SIGTERM);
    if (dash_pid > 0 && th_wait(dash_pid, 15000, &st, NULL) != 0)
        th_kill(dash_pid);
    if (metrics_pid > 0) {
        kill(metrics_pid, SIGTERM);
        if (th_wait(metrics_pid, 15000, NULL, NULL) != 0)
            th_kill(metrics_pid);
    }
    dash_pid = metrics_pid = 0;
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "dashboards did not exit cleanly (%d)",
                  st);
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

static const cJSON *widget_of(const cJSON *r, const char *id)
{
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItem(r, "widgets"))
    {
        if (!strcmp(cJSON_GetStringValue(cJSON_GetObjectItem(w, "id")), id))
            return w;
    }
    ck_abort_msg("no widget %s", id);
    return NULL;
}

static long long ch_count(const char *country, long long from, long long to)
{
    char q[600];
    snprintf(q, sizeof(q),
             "SELECT count() FROM analytics.events WHERE tenant_id = '%s' AND event_name = "
             "'user.signed_up' AND occurred_at >= toDateTime(%lld) AND occurred_at < "
             "toDateTime(%lld) %s%s%s",
             tenant, from, to, country ? "AND prop_values[indexOf(prop_keys,'country')] = '" : "",
             country ? country : "", country ? "'" : "");
    return th_ch_count(q);
}

START_TEST(render_through_the_real_metrics_service)
{
    char body[2048];
    snprintf(body, sizeof(body),
             "{\"name\":\"real\",\"widgets\":["
             "{\"id\":\"line\",\"type\":\"line\",\"metricId\":\"%s\",\"dimensions\":[\"properties."
             "country\"]},"
             "{\"id\":\"pie\",\"type\":\"pie\",\"metricId\":\"%s\",\"dimensions\":[\"properties."
             "country\"]},"
             "{\"id\":\"big\",\"type\":\"bignumber\",\"metricId\":\"%s\"},"
             "{\"id\":\"map\",\"type\":\"map\",\"metricId\":\"%s\",\"dimensions\":[\"properties."
             "country\"]}]}",
             m_signups, m_signups, m_flat, m_signups);
    const char *code;
    cJSON *env = req("analytics.dashboards.create", body, &code);
    char id[40];
    snprintf(id, sizeof(id), "%s", cJSON_GetStringValue(cJSON_GetObjectItem(ok(env, code), "id")));
    cJSON_Delete(env);
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"from\":\"%s\",\"to\":\"%s\"}", id, iso(day2),
             iso(day1 + 86400));
    env = req("analytics.dashboards.render", body, &code);
    cJSON *r = ok(env, code);
    const cJSON *line = cJSON_GetObjectItem(widget_of(r, "line"), "data");
    ck_assert_msg(line, "line: %s", cJSON_PrintUnformatted(widget_of(r, "line")));
    const cJSON *bk = cJSON_GetObjectItem(line, "buckets");
    ck_assert_int_eq(cJSON_GetArraySize(bk), 2);
    int n = 0;
    const cJSON *s;
    cJSON_ArrayForEach(s, cJSON_GetObjectItem(line, "series"))
    {
        const char *c = cJSON_GetStringValue(cJSON_GetObjectItem(s, "name"));
        const cJSON *v = cJSON_GetObjectItem(s, "values");
        ck_assert_int_eq((long long)cJSON_GetArrayItem(v, 0)->valuedouble, ch_count(c, day2, day1));
        ck_assert_int_eq((long long)cJSON_GetArrayItem(v, 1)->valuedouble,
                         ch_count(c, day1, day1 + 86400));
        n++;
    }
    ck_assert_int_eq(n, 3);
    const cJSON *pie = cJSON_GetObjectItem(widget_of(r, "pie"), "data");
    ck_assert_int_eq((int)cJSON_GetObjectItem(pie, "total")->valuedouble,
                     (int)ch_count(NULL, day2, day1 + 86400));
    const cJSON *big = cJSON_GetObjectItem(widget_of(r, "big"), "data");
    ck_assert_int_eq((int)cJSON_GetObjectItem(big, "value")->valuedouble, 10);
    ck_assert_int_eq((int)cJSON_GetObjectItem(big, "previous")->valuedouble, 0);
    const cJSON *map =
        cJSON_GetObjectItem(cJSON_GetObjectItem(widget_of(r, "map"), "data"), "values");
    ck_assert_int_eq((int)cJSON_GetObjectItem(map, "US")->valuedouble, 4);
    ck_assert_int_eq((int)cJSON_GetObjectItem(map, "DE")->valuedouble, 2);
    cJSON_Delete(env);
    /* the PNG of the line, from the real data */
    snprintf(
        body, sizeof(body),
        "{\"id\":\"%s\",\"widgetId\":\"line\",\"format\":\"png\",\"from\":\"%s\",\"to\":\"%s\"}",
        id, iso(day2), iso(day1 + 86400));
    env = req("analytics.dashboards.render-widget", body, &code);
    const cJSON *img = cJSON_GetObjectItem(ok(env, code), "image");
    ck_assert_int_eq((int)cJSON_GetObjectItem(img, "width")->valuedouble, 800);
    ck_assert(strlen(cJSON_GetStringValue(cJSON_GetObjectItem(img, "base64"))) > 1000);
    char path[700];
    snprintf(path, sizeof(path), "%s/real-line.png.b64", dir);
    FILE *f = fopen(path, "w");
    fputs(cJSON_GetStringValue(cJSON_GetObjectItem(img, "base64")), f);
    fclose(f);
    char cmd[1600];
    snprintf(cmd, sizeof(cmd),
             "base64 -d %s | python3 -c 'import sys,struct; d=sys.stdin.buffer.read(); "
             "assert d[:8]==b\"\\x89PNG\\r\\n\\x1a\\n\"; print(*struct.unpack(\">II\", d[16:24]))'",
             path);
    int rc = 0;
    char *out = th_run(cmd, &rc);
    ck_assert_int_eq(rc, 0);
    ck_assert_str_eq(out, "800 400\n");
    free(out);
    cJSON_Delete(env);
}
END_TEST

/* A range that does not start on a bucket boundary (here 24 h from 06:00
 * of day1): metrics widens it to whole days (day1 and the day after), and
 * the bignumber's previous period is the two whole days before day1 - the
 * day holding `from` is not counted in both. */
START_TEST(bignumber_previous_period_does_not_overlap_a_widened_range)
{
    char body[1024];
    snprintf(body, sizeof(body),
             "{\"name\":\"big\",\"widgets\":[{\"id\":\"big\",\"type\":\"bignumber\","
             "\"metricId\":\"%s\"}]}",
             m_flat);
    const char *code;
    cJSON *env = req("analytics.dashboards.create", body, &code);
    char id[40];
    snprintf(id, sizeof(id), "%s", cJSON_GetStringValue(cJSON_GetObjectItem(ok(env, code), "id")));
    cJSON_Delete(env);
    long long from = day1 + 6 * 3600, to = from + 86400;
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"from\":\"%s\",\"to\":\"%s\"}", id, iso(from),
             iso(to));
    env = req("analytics.dashboards.render", body, &code);
    const cJSON *big = cJSON_GetObjectItem(widget_of(ok(env, code), "big"), "data");
    long long now_days = ch_count(NULL, day1, day1 + 2 * 86400);
    long long before = ch_count(NULL, day1 - 2 * 86400, day1);
    ck_assert_int_gt(now_days, 0);
    ck_assert_int_gt(before, 0);
    ck_assert_int_eq((long long)cJSON_GetObjectItem(big, "value")->valuedouble, now_days);
    ck_assert_int_eq((long long)cJSON_GetObjectItem(big, "previous")->valuedouble, before);
    cJSON_Delete(env);
}
END_TEST

/* Request subject with the token auth; returns the envelope, *code as req(). */
static cJSON *req_as(const char *auth, const char *subject, const char *body, const char **code)
{
    cJSON *env = th_request(nc, subject, auth, body, 20000);
    static char cb[64];
    const cJSON *e = cJSON_GetObjectItem(env, "error");
    snprintf(cb, sizeof(cb), "%s", e ? cJSON_GetStringValue(cJSON_GetObjectItem(e, "code")) : "ok");
    *code = cb;
    return env;
}

static void id_of(cJSON *env, const char *code, char out[40])
{
    snprintf(out, 40, "%s", cJSON_GetStringValue(cJSON_GetObjectItem(ok(env, code), "id")));
    cJSON_Delete(env);
}

/* A platform admin sees every tenant's metrics, but a dashboard's widgets
 * read only its own tenant's events: another tenant's metric is refused on
 * it, and a platform metric renders the dashboard tenant's numbers even
 * for an admin whose token names another tenant (a render is cached for
 * the dashboard's viewers, who then got that other tenant's numbers). */
START_TEST(an_admin_cannot_put_another_tenants_numbers_on_a_dashboard)
{
    char *other = th_unique("dmo");
    char *admin = th_bearer(SECRET, "root", other, "platform:admin", "[\"analyst\"]", 3600);
    char *bob = th_bearer(SECRET, "bob", other, NULL, "[\"analyst\"]", 3600);
    const char *q = "SELECT {{bucket}} AS bucket, count() AS value FROM {{events}} WHERE "
                    "{{time_range}} AND event_name = 'user.signed_up' GROUP BY bucket";
    char body[2048], m_other[40], m_platform[40], dash_id[40];
    snprintf(body, sizeof(body), "{\"name\":\"bob's signups\",\"query\":\"%s\",\"unit\":\"count\"}",
             q);
    const char *code;
    cJSON *env = req_as(bob, "analytics.metrics.create", body, &code);
    id_of(env, code, m_other);
    snprintf(body, sizeof(body),
             "{\"tenantId\":null,\"name\":\"all signups\",\"query\":\"%s\",\"unit\":\"count\"}", q);
    env = req_as(admin, "analytics.metrics.create", body, &code);
    id_of(env, code, m_platform);

    snprintf(body, sizeof(body),
             "{\"tenantId\":\"%s\",\"name\":\"mixed\",\"widgets\":[{\"id\":\"w\",\"type\":"
             "\"bignumber\",\"metricId\":\"%s\"}]}",
             tenant, m_other);
    env = req_as(admin, "analytics.dashboards.create", body, &code);
    ck_assert_str_eq(code, "invalid_argument");
    char *text = cJSON_PrintUnformatted(env);
    ck_assert_msg(strstr(text, "belongs to another tenant"), "%s", text);
    free(text);
    cJSON_Delete(env);

    snprintf(body, sizeof(body),
             "{\"tenantId\":\"%s\",\"name\":\"platform\",\"accessControl\":{\"allowedRoles\":["
             "\"analyst\"]},\"widgets\":[{\"id\":\"w\",\"type\":"
             "\"bignumber\",\"metricId\":\"%s\"}]}",
             tenant, m_platform);
    env = req_as(admin, "analytics.dashboards.create", body, &code);
    id_of(env, code, dash_id);
    /* the admin's render first (it fills the cache), then the tenant's viewer */
    snprintf(body, sizeof(body),
             "{\"tenantId\":\"%s\",\"id\":\"%s\",\"from\":\"%s\",\"to\":\"%s\"}", tenant, dash_id,
             iso(day2), iso(day1 + 86400));
    env = req_as(admin, "analytics.dashboards.render", body, &code);
    const cJSON *big = cJSON_GetObjectItem(widget_of(ok(env, code), "w"), "data");
    ck_assert_ptr_nonnull(big);
    ck_assert_int_eq((int)cJSON_GetObjectItem(big, "value")->valuedouble, 10);
    cJSON_Delete(env);
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"from\":\"%s\",\"to\":\"%s\"}", dash_id,
             iso(day2), iso(day1 + 86400));
    env = req("analytics.dashboards.render", body, &code);
    big = cJSON_GetObjectItem(widget_of(ok(env, code), "w"), "data");
    ck_assert_int_eq((int)cJSON_GetObjectItem(big, "value")->valuedouble, 10);
    cJSON_Delete(env);
    free(admin);
    free(bob);
    free(other);
}
END_TEST

START_TEST(validation_asks_the_real_metrics_service)
{
    char body[1024];
    const char *code;
    /* deprecated: refused on a new widget */
    snprintf(body, sizeof(body),
             "{\"name\":\"x\",\"widgets\":[{\"type\":\"line\",\"metricId\":\"%s\"}]}", m_old);
    cJSON *env = req("analytics.dashboards.create", body, &code);
    ck_assert_str_eq(code, "failed_precondition");
    cJSON_Delete(env);
    /* a template without {{dimensions}}: the dimension is refused by metrics */
    snprintf(body, sizeof(body),
             "{\"name\":\"x\",\"widgets\":[{\"type\":\"line\",\"metricId\":\"%s\","
             "\"dimensions\":[\"properties.country\"]}]}",
             m_flat);
    env = req("analytics.dashboards.create", body, &code);
    ck_assert_str_eq(code, "invalid_argument");
    ck_assert_str_eq(
        cJSON_GetStringValue(cJSON_GetObjectItem(
            cJSON_GetObjectItem(cJSON_GetObjectItem(env, "error"), "details"), "field")),
        "widgets[0].dimensions");
    cJSON_Delete(env);
    /* unknown metric id (a well-formed ULID) */
    snprintf(body, sizeof(body),
             "{\"name\":\"x\",\"widgets\":[{\"type\":\"line\",\"metricId\":"
             "\"01ARZ3NDEKTSV4RRFFQ69G5FAV\"}]}");
    env = req("analytics.dashboards.create", body, &code);
    ck_assert_str_eq(code, "invalid_argument");
    cJSON_Delete(env);
    /* a filter on the metric that has {{filters}}: accepted, and applied */
    snprintf(
        body, sizeof(body),
        "{\"name\":\"x\",\"widgets\":[{\"id\":\"b\",\"type\":\"bignumber\",\"metricId\":\"%s\","
        "\"filters\":[{\"field\":\"properties.country\",\"op\":\"in\",\"value\":[\"FR\",\"DE\"]}]}]"
        "}",
        m_signups);
    env = req("analytics.dashboards.create", body, &code);
    char id[40];
    snprintf(id, sizeof(id), "%s", cJSON_GetStringValue(cJSON_GetObjectItem(ok(env, code), "id")));
    cJSON_Delete(env);
    snprintf(body, sizeof(body), "{\"id\":\"%s\",\"from\":\"%s\",\"to\":\"%s\"}", id, iso(day2),
             iso(day1 + 86400));
    env = req("analytics.dashboards.render", body, &code);
    const cJSON *big = cJSON_GetObjectItem(widget_of(ok(env, code), "b"), "data");
    ck_assert_int_eq(
        (int)cJSON_GetObjectItem(big, "value")->valuedouble,
        (int)(ch_count("FR", day2, day1 + 86400) + ch_count("DE", day2, day1 + 86400)));
    ck_assert_int_eq((int)cJSON_GetObjectItem(big, "value")->valuedouble, 6);
    cJSON_Delete(env);
}
END_TEST

Suite *dashboards_metrics_suite(void)
{
    Suite *s = suite_create("dashboards_metrics");
    TCase *tc = tcase_create("real_metrics");
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, render_through_the_real_metrics_service);
    tcase_add_test(tc, validation_asks_the_real_metrics_service);
    tcase_add_test(tc, bignumber_previous_period_does_not_overlap_a_widened_range);
    tcase_add_test(tc, an_admin_cannot_put_another_tenants_numbers_on_a_dashboard);
    suite_add_tcase(s, tc);
    return s;
}
