/*
 * metrics_isolation: a tenant never sees another tenant's rows, through any
 * template, dimension, filter, property path or request field - hostile
 * ones included. Tenant V (the victim) has 13 events carrying a secret;
 * tenant X (the attacker) has 2 events. Every attack is made by X and must
 * either be refused or answer with X's data only; where a template is
 * legal, the same template run by V shows what a leak would have looked
 * like (13), so a pass is not a template that reads nothing at all.
 */
#include "tests/helpers/metrics_fixture.h"

static mf_proc svc;
static char *V, *X, *SECRET, *platform_id, *victim_metric;

#define ALL_TEMPLATE                                                                               \
    "SELECT {{bucket}} AS bucket{{dimensions}}, count() AS value FROM {{events}} WHERE "           \
    "{{time_range}} AND {{filters}} GROUP BY bucket{{group_by}}"
#define RANGE "\"from\":\"2025-04-01T00:00:00Z\",\"to\":\"2025-04-02T00:00:00Z\""

static void suite_setup(void)
{
    mf_kill_all();
    V = th_unique("victim");
    X = th_unique("attacker");
    SECRET = th_unique("TOPSECRET");
    char *rows[16];
    int n = 0;
    for (int i = 0; i < 13; i++) {
        char when[32], props[256];
        snprintf(when, sizeof(when), "2025-04-01 10:%02d:00", i);
        snprintf(props, sizeof(props), "secret=%s;country=FR", SECRET);
        rows[n++] = mf_event(V, "secret.event", when, "victim-user", props);
    }
    rows[n++] = mf_event(X, "x.evt", "2025-04-01 11:00:00", "x-user", "secret=mine;country=DE");
    rows[n++] = mf_event(X, "x.evt", "2025-04-01 11:30:00", "x-user", "secret=mine;country=DE");
    rows[n] = NULL;
    mf_insert_events(rows);
    const char *extra[] = {"ANALYTICS_METRICS_SCHEDULER=false",
                           "ANALYTICS_METRICS_MATERIALIZE_WORKERS=0",
                           "ANALYTICS_METRICS_REDIS_PREFIX=an:test:iso", NULL};
    mf_start(&svc, "metrics-isolation", extra);
    mf_connect();
    char *name = th_unique("all events");
    char *body = mf_fmt("{\"name\":\"%s\",\"unit\":\"count\",\"tenantId\":null,\"query\":\"%s\"}",
                        name, ALL_TEMPLATE);
    platform_id = mf_create(NULL, "platform:admin", body);
    free(body);
    body = mf_fmt("{\"name\":\"victim's\",\"unit\":\"count\",\"query\":\"%s\"}", ALL_TEMPLATE);
    victim_metric = mf_create(V, NULL, body);
    free(body);
    free(name);
    mf_disconnect();
}

static void suite_teardown(void)
{
    mf_stop(&svc, 20000);
    mf_kill_all();
}

/* The reply must not carry the victim's secret, nor its id in data (an
 * error may repeat the tenant id the attacker itself sent). */
static void no_leak(const cJSON *reply)
{
    char *s = mf_print(reply);
    ck_assert_msg(strstr(s, SECRET) == NULL, "leaked the secret: %s", s);
    free(s);
    s = mf_print(cJSON_GetObjectItem(reply, "data"));
    ck_assert_msg(!s || strstr(s, V) == NULL, "leaked the victim's id: %s", s);
    free(s);
}

/* Preview tpl as tenant; the reply (free it). */
static cJSON *preview(const char *tenant, const char *tpl)
{
    char *t = mf_json_str(tpl);
    cJSON *r = mf_callf("preview", tenant, NULL, "{\"query\":%s," RANGE "}", t);
    free(t);
    return r;
}

/* Templates the checker must refuse. */
START_TEST(test_metrics_isolation_hostile_templates_are_refused)
{
    static const char *const refused[] = {
        /* 1 */ "SELECT count() AS value FROM analytics.events",
        /* 2 */ "SELECT count() AS value FROM `analytics`.`events`",
        /* 3 */ "SELECT count() AS value FROM \"analytics\".events",
        /* 4 */
        "SELECT count() AS value FROM {{events}} UNION ALL SELECT count() AS value FROM "
        "analytics.events",
        /* 5 */ "SELECT count() AS value FROM {{events}}; SELECT count() FROM analytics.events",
        /* 6 */
        "SELECT count() AS value FROM {{events}} AS e JOIN analytics.events AS v ON "
        "e.event_id = v.event_id",
        /* 7 */ "SELECT count() AS value FROM (SELECT * FROM analytics.events)",
        /* 8 */
        "SELECT count() AS value FROM {{events}} WHERE event_id IN (SELECT event_id FROM "
        "analytics.events)",
        /* 9 */ "SELECT count() AS value FROM remote('127.0.0.1', analytics, events)",
        /* 10 */ "SELECT count() AS value FROM merge(analytics, '^events$')",
        /* 11 */ "SELECT count() AS value FROM system.parts",
        /* 12 */
        "SELECT count() AS value FROM {{events}} -- hidden\n UNION ALL SELECT count() "
        "FROM analytics.events",
        /* 13 */ "SELECT count() AS value FROM {{events}} SETTINGS readonly = 0",
        /* 14 */ "SELECT 'v' AS tenant_id, count() AS value FROM {{events}}",
        /* 15 */ "WITH 'v' AS tenant_id SELECT count() AS value FROM {{events}}",
        /* 16 */ "SELECT count() AS value FROM {{events}} PREWHERE tenant_id != ''",
        /* 17 */ "SELECT count() AS value FROM {{events}} ARRAY JOIN [1] AS tenant_id",
        /* 18 */ "SELECT arrayCount(tenant_id -> 1, [1]) AS value FROM {{events}}",
        /* 19 */
        "SELECT count() AS value FROM {{events}} WHERE {{time_range:occurred_at) OR "
        "(1}}",
        /* 20 */ "SELECT count() AS value FROM {{events}} WHERE {evil}",
        /* 21 */ "SELECT count() AS value FROM url('http://127.0.0.1/', CSV, 'a String')",
        /* 22 */ "SELECT count() AS value FROM {{events}} INTO OUTFILE '/tmp/x'",
        /* 23 */ "SELECT count() AS value FROM analytics_audit.events",
        /* 24 */ "SELECT count() AS value FROM metric_definitions",
        /* 25 */ "SELECT count() AS value FROM {{events}} WHERE event_id IN analytics.events",
        /* 26 */ "SELECT joinGet('analytics.events', 'tenant_id', 1) AS value",
        /* 27 */ "SELECT count() AS value FROM {{events}} UNION DISTINCT SELECT 1",
    };
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        cJSON *r = preview(X, refused[i]);
        no_leak(r);
        cJSON *e = cJSON_GetObjectItem(r, "error");
        char *s = mf_print(r);
        ck_assert_msg(e != NULL, "case %zu accepted: %s -> %s", i + 1, refused[i], s);
        ck_assert_msg(strcmp(mf_str(e, "code"), "invalid_argument") == 0, "case %zu: %s", i + 1, s);
        free(s);
        cJSON_Delete(r);
        /* and none can be saved either */
        char *t = mf_json_str(refused[i]);
        r = mf_callf("create", X, NULL, "{\"name\":\"attack %zu\",\"unit\":\"count\",\"query\":%s}",
                     i, t);
        mf_expect_error(r, "invalid_argument", "query");
        cJSON_Delete(r);
        free(t);
    }
}
END_TEST

/* Legal templates that try to reach the victim through the tenant column
 * or the relation's internal name: the bound relation holds X's rows only. */
START_TEST(test_metrics_isolation_legal_templates_see_only_the_callers_rows)
{
    char *by_id = mf_fmt("SELECT count() AS value FROM {{events}} WHERE tenant_id = '%s'", V);
    char *or_all =
        mf_fmt("SELECT count() AS value FROM {{events}} WHERE tenant_id = '%s' OR 1 = 1", V);
    char *secret =
        mf_fmt("SELECT count() AS value FROM {{events}} WHERE has(prop_values, '%s')", SECRET);
    struct {
        const char *tpl;
        int as_x, as_v; /* expected counts for the attacker and (control) the victim */
    } cases[] = {
        {by_id, 0, 13},
        {or_all, 2, 13},
        {"SELECT count() AS value FROM {{events}} AS e WHERE e.tenant_id != ''", 2, 13},
        {"SELECT count() AS value FROM {{events}} FINAL", 2, 13},
        {"SELECT count() AS value FROM events_relation", 2, 13},
        {secret, 0, 13},
        {"SELECT count() AS value FROM {{events}} WHERE event_id IN (SELECT event_id FROM "
         "{{events}})",
         2, 13},
        {"SELECT count() AS value FROM (SELECT * FROM {{events}} UNION ALL SELECT * FROM "
         "{{events}})",
         4, 26},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *r = preview(X, cases[i].tpl);
        no_leak(r);
        char *want = mf_fmt("[[%d]]", cases[i].as_x);
        mf_expect_rows(mf_data(r), want);
        free(want);
        cJSON_Delete(r);
        r = preview(V, cases[i].tpl);
        want = mf_fmt("[[%d]]", cases[i].as_v);
        mf_expect_rows(mf_data(r), want);
        free(want);
        cJSON_Delete(r);
    }
    free(by_id);
    free(or_all);
    free(secret);
}
END_TEST

/* Query the platform metric as X with extra request members. */
static cJSON *query_platform(const char *tenant, const char *scope, const char *extra)
{
    return mf_callf("query", tenant, scope,
                    "{\"metricId\":\"%s\"," RANGE ",\"granularity\":\"day\"%s}", platform_id,
                    extra);
}

START_TEST(test_metrics_isolation_hostile_dimensions_and_filters)
{
    struct {
        const char *extra;
        const char *field; /* refused naming this field, or NULL: answered */
        const char *want;  /* rows when answered */
    } cases[] = {
        {",\"dimensions\":[\"tenant_id\"]", "dimensions[0]", NULL},
        {",\"dimensions\":[\"properties.x') OR 1=1 --\"]", "dimensions[0]", NULL},
        {",\"dimensions\":[\"properties.a.b.c.d.e.f.g.h.i\"]", "dimensions[0]", NULL},
        {",\"dimensions\":[\"prop_values\"]", "dimensions[0]", NULL},
        {",\"dimensions\":[\"properties.`x`\"]", "dimensions[0]", NULL},
        {",\"dimensions\":[\"properties.caf\\u00e9\"]", "dimensions[0]", NULL},
        {",\"filters\":[{\"field\":\"tenant_id\",\"op\":\"neq\",\"value\":\"\"}]",
         "filters[0].field", NULL},
        {",\"filters\":[{\"field\":\"properties.x' OR '1'='1\",\"op\":\"is_set\"}]",
         "filters[0].field", NULL},
        {",\"filters\":[{\"field\":\"event_name\",\"op\":\"eq; DROP\",\"value\":\"x\"}]",
         "filters[0].op", NULL},
        {",\"filters\":[{\"field\":\"event_name\",\"op\":\"eq\",\"value\":\"' OR tenant_id != '"
         "\"}]",
         NULL, "[[\"2025-04-01T00:00:00.000Z\",0]]"},
        {",\"filters\":[{\"field\":\"event_name\",\"op\":\"eq\",\"value\":\"x\\\\' OR 1=1 --\"}]",
         NULL, "[[\"2025-04-01T00:00:00.000Z\",0]]"},
        {",\"filters\":[{\"field\":\"event_name\",\"op\":\"in\",\"value\":[\"a') OR ('1'='1\"]}]",
         NULL, "[[\"2025-04-01T00:00:00.000Z\",0]]"},
        {",\"filters\":[{\"field\":\"event_name\",\"op\":\"contains\",\"value\":\"%' OR "
         "'1'='1\"}]",
         NULL, "[[\"2025-04-01T00:00:00.000Z\",0]]"},
        {",\"filters\":[{\"field\":\"event_name\",\"op\":\"neq\",\"value\":\"x.evt\"}]", NULL,
         "[[\"2025-04-01T00:00:00.000Z\",0]]"},
        {",\"dimensions\":[\"properties.secret\",\"event_name\"]", NULL,
         "[[\"2025-04-01T00:00:00.000Z\",\"mine\",\"x.evt\",2]]"},
        {",\"dimensions\":[\"actor_id\"]", NULL, "[[\"2025-04-01T00:00:00.000Z\",\"x-user\",2]]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *r = query_platform(X, NULL, cases[i].extra);
        no_leak(r);
        if (cases[i].field)
            mf_expect_error(r, "invalid_argument", cases[i].field);
        else
            mf_expect_rows(mf_data(r), cases[i].want);
        cJSON_Delete(r);
    }
    /* the victim's secret as a filter value finds nothing for X */
    char *f = mf_fmt(",\"filters\":[{\"field\":\"properties.secret\",\"op\":\"eq\",\"value\":"
                     "\"%s\"}]",
                     SECRET);
    cJSON *r = query_platform(X, NULL, f);
    mf_expect_rows(mf_data(r), "[[\"2025-04-01T00:00:00.000Z\",0]]");
    cJSON_Delete(r);
    r = query_platform(V, NULL, f); /* control */
    mf_expect_rows(mf_data(r), "[[\"2025-04-01T00:00:00.000Z\",13]]");
    cJSON_Delete(r);
    free(f);
}
END_TEST

START_TEST(test_metrics_isolation_request_fields_cannot_borrow_a_tenant)
{
    char *as_v = mf_fmt(",\"tenantId\":\"%s\"", V);
    cJSON *r = query_platform(X, NULL, as_v);
    mf_expect_error(r, "permission_denied", "tenantId");
    no_leak(r);
    cJSON_Delete(r);
    r = query_platform(X, NULL, ",\"allTenants\":true");
    mf_expect_error(r, "permission_denied", "allTenants");
    cJSON_Delete(r);
    r = query_platform(X, NULL, ",\"allTenants\":true,\"breakdown\":\"tenant\"");
    mf_expect_error(r, "permission_denied", "allTenants");
    cJSON_Delete(r);
    /* the victim's own metric: invisible */
    r = mf_callf("query", X, NULL, "{\"metricId\":\"%s\"," RANGE ",\"granularity\":\"day\"}",
                 victim_metric);
    mf_expect_error(r, "not_found", "metricId");
    no_leak(r);
    cJSON_Delete(r);
    r = mf_callf("get", X, NULL, "{\"id\":\"%s\"}", victim_metric);
    mf_expect_error(r, "not_found", "id");
    no_leak(r);
    cJSON_Delete(r);
    r = mf_callf("preview", X, NULL, "{\"query\":\"SELECT count() AS value FROM {{events}}\"%s}",
                 as_v);
    mf_expect_error(r, "permission_denied", "tenantId");
    cJSON_Delete(r);
    r = mf_callf("list", X, NULL, "{\"tenantId\":\"%s\"}", V);
    mf_expect_error(r, "permission_denied", "tenantId");
    cJSON_Delete(r);
    r = mf_callf("create", X, NULL,
                 "{\"name\":\"planted\",\"unit\":\"count\",\"query\":\"SELECT count() AS value "
                 "FROM {{events}}\"%s}",
                 as_v);
    mf_expect_error(r, "permission_denied", "tenantId");
    cJSON_Delete(r);
    /* a token without a tenant (and no admin scope) reads no tenant's data */
    r = query_platform(NULL, NULL, "");
    mf_expect_error(r, "invalid_argument", "tenantId");
    cJSON_Delete(r);
    r = query_platform(NULL, NULL, as_v);
    mf_expect_error(r, "permission_denied", "tenantId");
    cJSON_Delete(r);
    free(as_v);
}
END_TEST

/* X-Tenant-Id is not trusted when trusted headers are off (the default):
 * a token for X with a forged header still reads X's rows. */
START_TEST(test_metrics_isolation_forged_identity_headers_are_ignored)
{
    char *auth = mf_token("x-user", X, NULL);
    char *body = mf_fmt("{\"metricId\":\"%s\"," RANGE ",\"granularity\":\"day\",\"cache\":false}",
                        platform_id);
    natsMsg *m = NULL, *reply = NULL;
    ck_assert(natsMsg_Create(&m, "analytics.metrics.query", NULL, body, (int)strlen(body)) ==
              NATS_OK);
    natsMsgHeader_Set(m, "Authorization", auth);
    natsMsgHeader_Set(m, "X-Tenant-Id", V);
    natsMsgHeader_Set(m, "X-Scopes", "platform:admin");
    ck_assert(natsConnection_RequestMsg(&reply, mf_nc, m, 20000) == NATS_OK);
    cJSON *r = cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    no_leak(r);
    mf_expect_rows(mf_data(r), "[[\"2025-04-01T00:00:00.000Z\",2]]");
    ck_assert_str_eq(mf_str(cJSON_GetObjectItem(mf_data(r), "scope"), "tenantId"), X);
    cJSON_Delete(r);
    natsMsg_Destroy(reply);
    /* and without a token at all: unauthenticated */
    natsMsgHeader_Delete(m, "Authorization");
    ck_assert(natsConnection_RequestMsg(&reply, mf_nc, m, 20000) == NATS_OK);
    r = cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    mf_expect_error(r, "unauthenticated", NULL);
    cJSON_Delete(r);
    natsMsg_Destroy(reply);
    natsMsg_Destroy(m);
    free(body);
    free(auth);
}
END_TEST

/* The result cache never serves one tenant's answer to another. */
START_TEST(test_metrics_isolation_cache_keys_are_per_tenant)
{
    cJSON *rv = query_platform(V, NULL, ",\"fill\":\"null\"");
    mf_expect_rows(mf_data(rv), "[[\"2025-04-01T00:00:00.000Z\",13]]");
    cJSON *rv2 = query_platform(V, NULL, ",\"fill\":\"null\"");
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(mf_data(rv2), "cached")));
    cJSON *rx = query_platform(X, NULL, ",\"fill\":\"null\"");
    no_leak(rx);
    mf_expect_rows(mf_data(rx), "[[\"2025-04-01T00:00:00.000Z\",2]]");
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(mf_data(rx), "cached")));
    cJSON_Delete(rv);
    cJSON_Delete(rv2);
    cJSON_Delete(rx);
}
END_TEST

Suite *metrics_isolation_suite(void)
{
    Suite *s = suite_create("metrics_isolation");
    TCase *tc = tcase_create("attacks");
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, mf_connect, mf_disconnect);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_metrics_isolation_hostile_templates_are_refused);
    tcase_add_test(tc, test_metrics_isolation_legal_templates_see_only_the_callers_rows);
    tcase_add_test(tc, test_metrics_isolation_hostile_dimensions_and_filters);
    tcase_add_test(tc, test_metrics_isolation_request_fields_cannot_borrow_a_tenant);
    tcase_add_test(tc, test_metrics_isolation_forged_identity_headers_are_ignored);
    tcase_add_test(tc, test_metrics_isolation_cache_keys_are_per_tenant);
    suite_add_tcase(s, tc);
    return s;
}
