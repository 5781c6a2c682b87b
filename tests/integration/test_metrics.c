/*
 * metrics: the record's life cycle end to end. build/bin/metrics runs as a
 * real process against the stack; the tests talk to it over NATS with JWTs
 * and check what a caller sees and what ClickHouse holds (through curl as
 * the admin), never the service's view of itself.
 */
#include "tests/helpers/metrics_fixture.h"

#include <pthread.h>

static mf_proc svc;

static void suite_setup(void)
{
    mf_kill_all();
    const char *extra[] = {"ANALYTICS_METRICS_SCHEDULER=false",
                           "ANALYTICS_METRICS_MATERIALIZE_WORKERS=0",
                           "ANALYTICS_METRICS_REDIS_PREFIX=an:test:metrics", NULL};
    mf_start(&svc, "metrics-crud", extra);
}

static void suite_teardown(void)
{
    mf_stop(&svc, 20000);
    mf_kill_all();
}

#define DAU_TEMPLATE                                                                               \
    "SELECT {{bucket}} AS bucket{{dimensions}}, uniq(actor_id) AS value FROM {{events}} WHERE "    \
    "{{time_range}} AND {{filters}} GROUP BY bucket{{group_by}}"

/* A valid create body named name (JSON-escaped by the caller if needed). */
static char *body_named(const char *name)
{
    return mf_fmt("{\"name\":\"%s\",\"description\":{\"en\":\"Daily active users\",\"fr\":"
                  "\"Utilisateurs actifs\"},\"unit\":\"count\",\"query\":\"%s\"}",
                  name, DAU_TEMPLATE);
}

START_TEST(test_metrics_create_get_list_round_trip)
{
    char *tenant = th_unique("t");
    char *body = body_named("Daily active users");
    cJSON *r = mf_call("create", tenant, NULL, body);
    cJSON *d = mf_data(r);
    const char *id = mf_str(d, "id");
    ck_assert_msg(id && strlen(id) == 26, "id %s", id ? id : "(none)");
    ck_assert_str_eq(mf_str(d, "tenantId"), tenant);
    ck_assert_str_eq(mf_str(d, "name"), "Daily active users");
    ck_assert_str_eq(mf_str(cJSON_GetObjectItem(d, "description"), "fr"), "Utilisateurs actifs");
    ck_assert_str_eq(mf_str(d, "query"), DAU_TEMPLATE);
    ck_assert_str_eq(mf_str(d, "unit"), "count");
    ck_assert_str_eq(mf_str(d, "status"), "active");
    ck_assert_str_eq(mf_str(d, "createdBy"), "test-user");
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(d, "schedule")));
    double version = mf_num(d, "version");
    ck_assert(version > 0);

    /* ClickHouse holds it, under the tenant */
    char *sql =
        mf_fmt("SELECT tenant_id, name, visitParamExtractString(spec, 'unit'), version FROM "
               "analytics.metric_definitions FINAL WHERE id = '%s' AND deleted = 0",
               id);
    char *row = th_ch(sql);
    char *want = mf_fmt("%s\tDaily active users\tcount\t%.0f\n", tenant, version);
    ck_assert_str_eq(row, want);

    cJSON *g = mf_callf("get", tenant, NULL, "{\"id\":\"%s\"}", id);
    cJSON *gd = mf_data(g);
    ck_assert(cJSON_Compare(gd, d, 1));

    cJSON *l = mf_call("list", tenant, NULL, "{\"includePlatform\":false}");
    cJSON *items = cJSON_GetObjectItem(mf_data(l), "items");
    ck_assert_int_eq(cJSON_GetArraySize(items), 1);
    ck_assert_str_eq(mf_str(cJSON_GetArrayItem(items, 0), "id"), id);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(mf_data(l), "nextPageToken")));
    free(sql);
    free(row);
    free(want);
    free(body);
    free(tenant);
    cJSON_Delete(r);
    cJSON_Delete(g);
    cJSON_Delete(l);
}
END_TEST

/* Each bad field is named in the error. */
START_TEST(test_metrics_create_names_each_bad_field)
{
    char *tenant = th_unique("t");
    char longname[300];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    static const char ok_q[] = "SELECT count() AS value FROM {{events}}";
    struct {
        char *body;
        const char *code, *field;
    } cases[] = {
        {mf_fmt("{\"unit\":\"count\",\"query\":\"%s\"}", ok_q), "invalid_argument", "name"},
        {mf_fmt("{\"name\":\"\",\"unit\":\"count\",\"query\":\"%s\"}", ok_q), "invalid_argument",
         "name"},
        {mf_fmt("{\"name\":\"a\\u0001b\",\"unit\":\"count\",\"query\":\"%s\"}", ok_q),
         "invalid_argument", "name"},
        {mf_fmt("{\"name\":\"%s\",\"unit\":\"count\",\"query\":\"%s\"}", longname, ok_q),
         "invalid_argument", "name"},
        {mf_fmt("{\"name\":7,\"unit\":\"count\",\"query\":\"%s\"}", ok_q), "invalid_argument",
         "name"},
        {mf_fmt("{\"name\":\"x\",\"description\":\"text\",\"unit\":\"count\",\"query\":\"%s\"}",
                ok_q),
         "invalid_argument", "description"},
        {mf_fmt("{\"name\":\"x\",\"description\":{\"english\":\"t\"},\"unit\":\"count\","
                "\"query\":\"%s\"}",
                ok_q),
         "invalid_argument", "description.english"},
        {mf_fmt("{\"name\":\"x\",\"description\":{\"en\":3},\"unit\":\"count\",\"query\":\"%s\"}",
                ok_q),
         "invalid_argument", "description.en"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"count\"}"), "invalid_argument", "query"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"count\",\"query\":42}"), "invalid_argument", "query"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"count\",\"query\":\"SELECT count() AS value FROM "
                "analytics.events\"}"),
         "invalid_argument", "query"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"count\",\"query\":\"SELECT count() AS value FROM "
                "{{tenants}}\"}"),
         "invalid_argument", "query"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"count\",\"query\":\"SELECT sum(no_such_column) AS "
                "value FROM {{events}}\"}"),
         "invalid_argument", "query"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"count\",\"query\":\"SELECT count() AS n FROM "
                "{{events}}\"}"),
         "invalid_argument", "query"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"count\",\"query\":\"SELECT event_name AS value FROM "
                "{{events}}\"}"),
         "invalid_argument", "query"},
        {mf_fmt("{\"name\":\"x\",\"query\":\"%s\"}", ok_q), "invalid_argument", "unit"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"percent\",\"query\":\"%s\"}", ok_q), "invalid_argument",
         "unit"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"count\",\"status\":\"archived\",\"query\":\"%s\"}",
                ok_q),
         "invalid_argument", "status"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"count\",\"schedule\":\"61 * * * *\",\"query\":\"%s\"}",
                DAU_TEMPLATE),
         "invalid_argument", "schedule"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"count\",\"schedule\":\"@hourly\",\"query\":\"%s\"}",
                ok_q),
         "invalid_argument", "schedule"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"count\",\"schedule\":\"@hourly\",\"materialize\":{"
                "\"granularity\":\"fortnight\"},\"query\":\"%s\"}",
                DAU_TEMPLATE),
         "invalid_argument", "materialize.granularity"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"count\",\"schedule\":\"@hourly\",\"materialize\":{"
                "\"lookback\":0},\"query\":\"%s\"}",
                DAU_TEMPLATE),
         "invalid_argument", "materialize.lookback"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"count\",\"schedule\":\"@hourly\",\"materialize\":{"
                "\"dimensions\":[\"tenant_id\"]},\"query\":\"%s\"}",
                DAU_TEMPLATE),
         "invalid_argument", "materialize.dimensions[0]"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"count\",\"owner\":\"me\",\"query\":\"%s\"}", ok_q),
         "invalid_argument", "owner"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"count\",\"tenantId\":\"someone-else\",\"query\":"
                "\"%s\"}",
                ok_q),
         "permission_denied", "tenantId"},
        {mf_fmt("{\"name\":\"x\",\"unit\":\"count\",\"tenantId\":null,\"query\":\"%s\"}", ok_q),
         "permission_denied", "tenantId"},
        {mf_fmt("[1,2]"), "invalid_argument", NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *r = mf_call("create", tenant, NULL, cases[i].body);
        mf_expect_error(r, cases[i].code, cases[i].field);
        cJSON_Delete(r);
        free(cases[i].body);
    }
    /* nothing was written for this tenant */
    char *sql =
        mf_fmt("SELECT count() FROM analytics.metric_definitions WHERE tenant_id = '%s'", tenant);
    ck_assert_int_eq(th_ch_count(sql), 0);
    free(sql);
    free(tenant);
}
END_TEST

START_TEST(test_metrics_name_is_unique_per_tenant)
{
    char *t1 = th_unique("t"), *t2 = th_unique("t");
    char *b = body_named("Signups");
    char *id = mf_create(t1, NULL, b);
    cJSON *r = mf_call("create", t1, NULL, b);
    mf_expect_error(r, "already_exists", "name");
    cJSON_Delete(r);
    char *other = mf_create(t2, NULL, b); /* another tenant: fine */
    ck_assert_str_ne(other, id);

    /* renaming another metric onto the name is refused too */
    char *b2 = body_named("Logins");
    char *id2 = mf_create(t1, NULL, b2);
    cJSON *g = mf_callf("get", t1, NULL, "{\"id\":\"%s\"}", id2);
    char *up = mf_fmt("{\"id\":\"%s\",\"expectedVersion\":%.0f,\"name\":\"Signups\"}", id2,
                      mf_num(mf_data(g), "version"));
    r = mf_call("update", t1, NULL, up);
    mf_expect_error(r, "already_exists", "name");
    cJSON_Delete(r);
    char *sql = mf_fmt("SELECT count() FROM analytics.metric_definitions FINAL WHERE tenant_id = "
                       "'%s' AND name = 'Signups' AND deleted = 0",
                       t1);
    ck_assert_int_eq(th_ch_count(sql), 1);

    /* concurrent creates of one name: exactly one wins */
    free(sql);
    cJSON_Delete(g);
    free(up);
    free(b);
    free(b2);
    free(id);
    free(id2);
    free(other);
    free(t1);
    free(t2);
}
END_TEST

typedef struct racer {
    const char *verb, *tenant, *body;
    cJSON *reply;
} racer;

static void *race(void *arg)
{
    racer *r = arg;
    r->reply = mf_call(r->verb, r->tenant, NULL, r->body);
    return NULL;
}

/* Two callers at once; returns how many got data. */
static int run_pair(racer *a, racer *b)
{
    pthread_t ta, tb;
    pthread_create(&ta, NULL, race, a);
    pthread_create(&tb, NULL, race, b);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    return (cJSON_GetObjectItem(a->reply, "data") != NULL) +
           (cJSON_GetObjectItem(b->reply, "data") != NULL);
}

START_TEST(test_metrics_concurrent_creates_of_one_name_one_wins)
{
    char *t = th_unique("t");
    char *b = body_named("Raced");
    racer x = {"create", t, b, NULL}, y = {"create", t, b, NULL};
    ck_assert_int_eq(run_pair(&x, &y), 1);
    mf_expect_error(cJSON_GetObjectItem(x.reply, "data") ? y.reply : x.reply, "already_exists",
                    "name");
    char *sql = mf_fmt("SELECT count() FROM analytics.metric_definitions FINAL WHERE tenant_id = "
                       "'%s' AND deleted = 0",
                       t);
    ck_assert_int_eq(th_ch_count(sql), 1);
    free(sql);
    cJSON_Delete(x.reply);
    cJSON_Delete(y.reply);
    free(b);
    free(t);
}
END_TEST

START_TEST(test_metrics_update_is_versioned)
{
    char *t = th_unique("t");
    char *b = body_named("Versioned");
    cJSON *c = mf_call("create", t, NULL, b);
    const char *id = mf_str(mf_data(c), "id");
    double v1 = mf_num(mf_data(c), "version");

    char *up = mf_fmt("{\"id\":\"%s\",\"expectedVersion\":%.0f,\"name\":\"Renamed\","
                      "\"description\":{\"en\":\"new\"},\"unit\":\"count\"}",
                      id, v1);
    cJSON *u = mf_call("update", t, NULL, up);
    cJSON *ud = mf_data(u);
    double v2 = mf_num(ud, "version");
    ck_assert(v2 > v1);
    ck_assert_str_eq(mf_str(ud, "name"), "Renamed");
    ck_assert_str_eq(mf_str(cJSON_GetObjectItem(ud, "description"), "en"), "new");
    ck_assert_str_eq(mf_str(ud, "query"), DAU_TEMPLATE); /* untouched fields stay */

    /* the same expected version again: a conflict, nothing written */
    cJSON *again = mf_call("update", t, NULL, up);
    mf_expect_error(again, "failed_precondition", "expectedVersion");
    char *missing = mf_fmt("{\"id\":\"%s\",\"name\":\"X\"}", id);
    cJSON *m = mf_call("update", t, NULL, missing);
    mf_expect_error(m, "invalid_argument", "expectedVersion");
    char *bad = mf_fmt("{\"id\":\"%s\",\"expectedVersion\":%.0f,\"unit\":\"furlongs\"}", id, v2);
    cJSON *bu = mf_call("update", t, NULL, bad);
    mf_expect_error(bu, "invalid_argument", "unit");
    cJSON *nf =
        mf_call("update", t, NULL, "{\"id\":\"01ARZ3NDEKTSV4RRFFQ69G5FAV\",\"expectedVersion\":1}");
    mf_expect_error(nf, "not_found", "id");

    cJSON *g = mf_callf("get", t, NULL, "{\"id\":\"%s\"}", id);
    ck_assert_str_eq(mf_str(mf_data(g), "name"), "Renamed");
    ck_assert(mf_num(mf_data(g), "version") == v2);
    /* the definition cache holds the latest version ("<version>\n<record>") */
    char *key = mf_fmt("GET an:test:metrics:def:%s", id);
    char *cached = th_redis(key);
    char *prefix = mf_fmt("%.0f\n{", v2);
    ck_assert_msg(strncmp(cached, prefix, strlen(prefix)) == 0, "cached: %.80s", cached);
    ck_assert_msg(strstr(cached, "\"name\":\"Renamed\"") != NULL, "cached: %s", cached);
    free(key);
    free(cached);
    free(prefix);
    /* ClickHouse: the latest version wins (older rows may be merged away) */
    char *sql = mf_fmt("SELECT count(), max(version) FROM analytics.metric_definitions FINAL WHERE "
                       "id = '%s'",
                       id);
    char *row = th_ch(sql), *want = mf_fmt("1\t%.0f\n", v2);
    ck_assert_str_eq(row, want);

    /* two updates from the same version at once: one wins, one conflicts */
    char *u1 = mf_fmt("{\"id\":\"%s\",\"expectedVersion\":%.0f,\"name\":\"A\"}", id, v2);
    char *u2 = mf_fmt("{\"id\":\"%s\",\"expectedVersion\":%.0f,\"name\":\"B\"}", id, v2);
    racer x = {"update", t, u1, NULL}, y = {"update", t, u2, NULL};
    ck_assert_int_eq(run_pair(&x, &y), 1);
    mf_expect_error(cJSON_GetObjectItem(x.reply, "data") ? y.reply : x.reply, "failed_precondition",
                    "expectedVersion");
    cJSON_Delete(x.reply);
    cJSON_Delete(y.reply);
    free(u1);
    free(u2);
    free(sql);
    free(row);
    free(want);
    free(missing);
    free(bad);
    free(up);
    free(b);
    free(t);
    cJSON_Delete(c);
    cJSON_Delete(u);
    cJSON_Delete(again);
    cJSON_Delete(m);
    cJSON_Delete(bu);
    cJSON_Delete(nf);
    cJSON_Delete(g);
}
END_TEST

START_TEST(test_metrics_deprecated_stays_queryable_and_listed_by_status)
{
    char *t = th_unique("t");
    char *b1 = body_named("Old"), *b2 = body_named("Current");
    char *old = mf_create(t, NULL, b1), *cur = mf_create(t, NULL, b2);
    cJSON *d = mf_callf("deprecate", t, NULL, "{\"id\":\"%s\"}", old);
    ck_assert_str_eq(mf_str(mf_data(d), "status"), "deprecated");
    /* deprecating again is harmless */
    cJSON *d2 = mf_callf("deprecate", t, NULL, "{\"id\":\"%s\"}", old);
    ck_assert_str_eq(mf_str(mf_data(d2), "status"), "deprecated");
    ck_assert(mf_num(mf_data(d2), "version") == mf_num(mf_data(d), "version"));

    cJSON *la = mf_call("list", t, NULL, "{\"status\":\"active\",\"includePlatform\":false}");
    cJSON *items = cJSON_GetObjectItem(mf_data(la), "items");
    ck_assert_int_eq(cJSON_GetArraySize(items), 1);
    ck_assert_str_eq(mf_str(cJSON_GetArrayItem(items, 0), "id"), cur);
    cJSON *ld = mf_call("list", t, NULL, "{\"status\":\"deprecated\",\"includePlatform\":false}");
    items = cJSON_GetObjectItem(mf_data(ld), "items");
    ck_assert_int_eq(cJSON_GetArraySize(items), 1);
    ck_assert_str_eq(mf_str(cJSON_GetArrayItem(items, 0), "id"), old);
    cJSON *bad = mf_call("list", t, NULL, "{\"status\":\"gone\"}");
    mf_expect_error(bad, "invalid_argument", "status");

    char *q = mf_fmt("{\"metricId\":\"%s\",\"from\":\"2025-01-01T00:00:00Z\",\"to\":"
                     "\"2025-01-03T00:00:00Z\",\"granularity\":\"day\"}",
                     old);
    cJSON *qr = mf_call("query", t, NULL, q);
    mf_expect_rows(mf_data(qr),
                   "[[\"2025-01-01T00:00:00.000Z\",0],[\"2025-01-02T00:00:00.000Z\",0]]");
    free(q);
    free(b1);
    free(b2);
    free(old);
    free(cur);
    free(t);
    cJSON_Delete(d);
    cJSON_Delete(d2);
    cJSON_Delete(la);
    cJSON_Delete(ld);
    cJSON_Delete(bad);
    cJSON_Delete(qr);
}
END_TEST

START_TEST(test_metrics_list_pages_through_everything_once)
{
    char *t = th_unique("t");
    char *ids[5];
    for (int i = 0; i < 5; i++) {
        char name[32];
        snprintf(name, sizeof(name), "m%d", i);
        char *b = body_named(name);
        ids[i] = mf_create(t, NULL, b);
        free(b);
    }
    char *token = NULL;
    int seen = 0, pages = 0;
    for (;;) {
        char *body = token ? mf_fmt("{\"pageSize\":2,\"includePlatform\":false,\"pageToken\":"
                                    "\"%s\"}",
                                    token)
                           : mf_fmt("{\"pageSize\":2,\"includePlatform\":false}");
        cJSON *r = mf_call("list", t, NULL, body);
        cJSON *items = cJSON_GetObjectItem(mf_data(r), "items");
        const cJSON *it;
        cJSON_ArrayForEach(it, items)
        {
            ck_assert_str_eq(mf_str(it, "id"), ids[seen]); /* in id order, no repeats */
            seen++;
        }
        pages++;
        free(token);
        const char *next = mf_str(mf_data(r), "nextPageToken");
        token = next ? strdup(next) : NULL;
        cJSON_Delete(r);
        free(body);
        if (!token)
            break;
        ck_assert_int_lt(pages, 5);
    }
    ck_assert_int_eq(seen, 5);
    ck_assert_int_eq(pages, 3);
    cJSON *bad = mf_call("list", t, NULL, "{\"pageSize\":0}");
    mf_expect_error(bad, "invalid_argument", "pageSize");
    cJSON *bad2 = mf_call("list", t, NULL, "{\"pageToken\":\"x' OR 1=1\"}");
    mf_expect_error(bad2, "invalid_argument", "pageToken");
    cJSON_Delete(bad);
    cJSON_Delete(bad2);
    for (int i = 0; i < 5; i++)
        free(ids[i]);
    free(t);
}
END_TEST

START_TEST(test_metrics_platform_metric_needs_the_admin_scope)
{
    char *t = th_unique("t");
    char *name = th_unique("Platform events");
    char *b = mf_fmt("{\"name\":\"%s\",\"unit\":\"count\",\"tenantId\":null,\"query\":\"SELECT "
                     "count() AS value FROM {{events}}\"}",
                     name);
    cJSON *r = mf_call("create", t, NULL, b);
    mf_expect_error(r, "permission_denied", "tenantId");
    /* a scheduled platform metric is materialized per tenant: it needs {{dimensions}} */
    cJSON *ns = mf_callf("create", NULL, "platform:admin",
                         "{\"name\":\"%s x\",\"unit\":\"count\",\"tenantId\":null,\"schedule\":"
                         "\"@hourly\",\"query\":\"SELECT {{bucket}} AS bucket, count() AS value "
                         "FROM {{events}} WHERE {{time_range}} GROUP BY bucket\"}",
                         name);
    mf_expect_error(ns, "invalid_argument", "schedule");
    cJSON_Delete(ns);
    cJSON *a = mf_call("create", NULL, "platform:admin", b);
    cJSON *ad = mf_data(a);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(ad, "tenantId")));
    const char *id = mf_str(ad, "id");
    char *sql =
        mf_fmt("SELECT count() FROM analytics.metric_definitions FINAL WHERE tenant_id = '' "
               "AND id = '%s'",
               id);
    ck_assert_int_eq(th_ch_count(sql), 1);

    /* every tenant sees it, none may change it */
    cJSON *g = mf_callf("get", t, NULL, "{\"id\":\"%s\"}", id);
    ck_assert_str_eq(mf_str(mf_data(g), "name"), name);
    cJSON *l = mf_call("list", t, NULL, "{\"pageSize\":200}");
    bool listed = false;
    const cJSON *it;
    cJSON_ArrayForEach(it, cJSON_GetObjectItem(mf_data(l), "items")) listed |=
        strcmp(mf_str(it, "id"), id) == 0;
    ck_assert(listed);
    char *mine = th_unique("mine");
    char *up = mf_fmt("{\"id\":\"%s\",\"expectedVersion\":%.0f,\"name\":\"%s\"}", id,
                      mf_num(ad, "version"), mine);
    cJSON *u = mf_call("update", t, NULL, up);
    mf_expect_error(u, "permission_denied", "tenantId");
    cJSON *dep = mf_callf("deprecate", t, NULL, "{\"id\":\"%s\"}", id);
    mf_expect_error(dep, "permission_denied", "tenantId");
    cJSON *ua = mf_call("update", NULL, "platform:admin", up);
    ck_assert_str_eq(mf_str(mf_data(ua), "name"), mine);
    free(mine);
    free(sql);
    free(up);
    free(b);
    free(name);
    free(t);
    cJSON_Delete(r);
    cJSON_Delete(a);
    cJSON_Delete(g);
    cJSON_Delete(l);
    cJSON_Delete(u);
    cJSON_Delete(dep);
    cJSON_Delete(ua);
}
END_TEST

START_TEST(test_metrics_another_tenant_sees_nothing)
{
    char *t1 = th_unique("t"), *t2 = th_unique("t");
    char *b = body_named("Private");
    char *id = mf_create(t1, NULL, b);
    char *get = mf_fmt("{\"id\":\"%s\"}", id);
    cJSON *g = mf_call("get", t2, NULL, get);
    mf_expect_error(g, "not_found", "id");
    char *up = mf_fmt("{\"id\":\"%s\",\"expectedVersion\":1,\"name\":\"stolen\"}", id);
    cJSON *u = mf_call("update", t2, NULL, up);
    mf_expect_error(u, "not_found", "id");
    cJSON *d = mf_call("deprecate", t2, NULL, get);
    mf_expect_error(d, "not_found", "id");
    cJSON *l = mf_call("list", t2, NULL, "{\"includePlatform\":false}");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(mf_data(l), "items")), 0);
    char *other = mf_fmt("{\"tenantId\":\"%s\"}", t1);
    cJSON *lo = mf_call("list", t2, NULL, other);
    mf_expect_error(lo, "permission_denied", "tenantId");
    /* the platform admin may read it */
    cJSON *ga = mf_call("get", NULL, "platform:admin", get);
    ck_assert_str_eq(mf_str(mf_data(ga), "tenantId"), t1);
    cJSON *g1 = mf_call("get", t1, NULL, get);
    ck_assert_str_eq(mf_str(mf_data(g1), "name"), "Private");
    free(other);
    free(up);
    free(get);
    free(b);
    free(id);
    free(t1);
    free(t2);
    cJSON_Delete(g);
    cJSON_Delete(u);
    cJSON_Delete(d);
    cJSON_Delete(l);
    cJSON_Delete(lo);
    cJSON_Delete(ga);
    cJSON_Delete(g1);
}
END_TEST

START_TEST(test_metrics_preview_runs_an_unsaved_template_on_a_few_rows)
{
    char *t = th_unique("t");
    char *rows[] = {
        mf_event(t, "course.viewed", "2025-02-01 10:00:00", "u1", NULL),
        mf_event(t, "course.viewed", "2025-02-01 11:00:00", "u2", NULL),
        mf_event(t, "course.viewed", "2025-02-02 10:00:00", "u1", NULL),
        mf_event(t, "course.viewed", "2025-02-03 10:00:00", "u3", NULL),
        NULL,
    };
    mf_insert_events(rows);
    const char *tpl = "SELECT {{bucket}} AS bucket, count() AS value FROM {{events}} WHERE "
                      "{{time_range}} GROUP BY bucket";
    char *b = mf_fmt("{\"query\":\"%s\",\"granularity\":\"day\",\"from\":\"2025-02-01T00:00:00Z\","
                     "\"to\":\"2025-02-04T00:00:00Z\",\"limit\":2}",
                     tpl);
    cJSON *r = mf_call("preview", t, NULL, b);
    cJSON *d = mf_data(r);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(d, "truncated")));
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(d, "metricId")));
    mf_expect_rows(d, "[[\"2025-02-01T00:00:00.000Z\",2],[\"2025-02-02T00:00:00.000Z\",1]]");
    char *b2 = mf_fmt("{\"query\":\"%s\",\"granularity\":\"day\",\"from\":\"2025-02-01T00:00:00Z\","
                      "\"to\":\"2025-02-04T00:00:00Z\",\"limit\":5}",
                      tpl);
    cJSON *r2 = mf_call("preview", t, NULL, b2);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(mf_data(r2), "truncated")));
    mf_expect_rows(mf_data(r2),
                   "[[\"2025-02-01T00:00:00.000Z\",2],[\"2025-02-02T00:00:00.000Z\",1],"
                   "[\"2025-02-03T00:00:00.000Z\",1]]");
    cJSON *e1 = mf_call("preview", t, NULL, "{\"granularity\":\"day\"}");
    mf_expect_error(e1, "invalid_argument", "query");
    cJSON *e2 = mf_call("preview", t, NULL,
                        "{\"query\":\"SELECT count() AS value FROM analytics.events\"}");
    mf_expect_error(e2, "invalid_argument", "query");
    cJSON *e3 = mf_call("preview", t, NULL,
                        "{\"query\":\"SELECT count() AS value FROM {{events}}\",\"limit\":1000}");
    mf_expect_error(e3, "invalid_argument", "limit");
    free(b);
    free(b2);
    free(t);
    cJSON_Delete(r);
    cJSON_Delete(r2);
    cJSON_Delete(e1);
    cJSON_Delete(e2);
    cJSON_Delete(e3);
}
END_TEST

Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("records");
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, mf_connect, mf_disconnect);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_metrics_create_get_list_round_trip);
    tcase_add_test(tc, test_metrics_create_names_each_bad_field);
    tcase_add_test(tc, test_metrics_name_is_unique_per_tenant);
    tcase_add_test(tc, test_metrics_concurrent_creates_of_one_name_one_wins);
    tcase_add_test(tc, test_metrics_update_is_versioned);
    tcase_add_test(tc, test_metrics_deprecated_stays_queryable_and_listed_by_status);
    tcase_add_test(tc, test_metrics_list_pages_through_everything_once);
    tcase_add_test(tc, test_metrics_platform_metric_needs_the_admin_scope);
    tcase_add_test(tc, test_metrics_another_tenant_sees_nothing);
    tcase_add_test(tc, test_metrics_preview_runs_an_unsaved_template_on_a_few_rows);
    suite_add_tcase(s, tc);
    return s;
}
