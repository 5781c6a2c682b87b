/*
 * metrics_query: query results against values computed by hand on a small
 * seeded dataset (counts, distinct actors, ratios; per day, hour, week and
 * month; with dimensions and every filter operator), empty buckets (zero
 * vs null), platform metrics across tenants, the result cache, and the
 * limits (rows and time: resource_exhausted, never a cut answer).
 *
 * The dataset (every event has the property run = <this run's marker>):
 *
 *   tenant A  2025-03-03 10:05 u1 course.viewed       course.id=c1 country=FR
 *             2025-03-03 10:20 u1 course.viewed       course.id=c2 country=FR
 *             2025-03-03 10:40 u2 course.viewed       course.id=c1 country=DE
 *             2025-03-03 11:10 u3 course.viewed       course.id=c1 country=FR
 *             2025-03-03 11:30 u1 enrollment.created  course.id=c1 country=FR price=30
 *             2025-03-03 11:45 u2 enrollment.created  course.id=c1 country=DE price=50
 * coupon=SPRING 2025-03-04 09:00 u2 course.viewed       course.id=c2 country=DE 2025-03-04 09:30 u4
 * course.viewed       course.id=c2 country=US 2025-03-04 09:50 u4 enrollment.created  course.id=c2
 * country=US price=20 (nothing on 2025-03-05) 2025-03-06 14:00 u1 course.viewed       course.id=c1
 * country=FR tenant B  2025-03-03 10:00 u9 course.viewed       course.id=c1 country=FR 2025-03-03
 * 10:10 u9 course.viewed       course.id=c1 country=FR 2025-03-03 10:15 u8 enrollment.created
 * course.id=c1 country=FR price=99 2025-03-04 12:00 u9 course.viewed       country=BR
 */
#include "tests/helpers/metrics_fixture.h"

static mf_proc svc;
static char *A, *B, *RUN;
static char *m_views, *m_uniq, *m_conv, *m_revenue, *m_platform;

#define VIEWS_TEMPLATE                                                                             \
    "SELECT {{bucket}} AS bucket{{dimensions}}, count() AS value FROM {{events}} WHERE "           \
    "{{time_range}} AND event_name = 'course.viewed' AND {{filters}} GROUP BY bucket{{group_by}}"
#define UNIQ_TEMPLATE                                                                              \
    "SELECT {{bucket}} AS bucket{{dimensions}}, uniqExact(actor_id) AS value FROM {{events}} "     \
    "WHERE {{time_range}} AND {{filters}} GROUP BY bucket{{group_by}}"
#define CONV_TEMPLATE                                                                              \
    "SELECT {{bucket}} AS bucket{{dimensions}}, countIf(event_name = 'enrollment.created') / "     \
    "countIf(event_name = 'course.viewed') AS value FROM {{events}} WHERE {{time_range}} AND "     \
    "{{filters}} GROUP BY bucket{{group_by}}"
#define REVENUE_TEMPLATE                                                                           \
    "SELECT {{bucket}} AS bucket, sum(toFloat64OrZero(prop_values[indexOf(prop_keys, "             \
    "'price')])) AS value FROM {{events}} WHERE {{time_range}} AND event_name = "                  \
    "'enrollment.created' AND {{filters}} GROUP BY bucket"
#define ALL_TEMPLATE                                                                               \
    "SELECT {{bucket}} AS bucket{{dimensions}}, count() AS value FROM {{events}} WHERE "           \
    "{{time_range}} AND {{filters}} GROUP BY bucket{{group_by}}"

static char *ev(const char *tenant, const char *name, const char *when, const char *actor,
                const char *props)
{
    char *p = mf_fmt("%s;run=%s", props, RUN);
    char *row = mf_event(tenant, name, when, actor, p);
    free(p);
    return row;
}

static void seed(void)
{
    char *rows[] = {
        ev(A, "course.viewed", "2025-03-03 10:05:00", "u1", "course.id=c1;country=FR"),
        ev(A, "course.viewed", "2025-03-03 10:20:00", "u1", "course.id=c2;country=FR"),
        ev(A, "course.viewed", "2025-03-03 10:40:00", "u2", "course.id=c1;country=DE"),
        ev(A, "course.viewed", "2025-03-03 11:10:00", "u3", "course.id=c1;country=FR"),
        ev(A, "enrollment.created", "2025-03-03 11:30:00", "u1",
           "course.id=c1;country=FR;price=30"),
        ev(A, "enrollment.created", "2025-03-03 11:45:00", "u2",
           "course.id=c1;country=DE;price=50;coupon=SPRING"),
        ev(A, "course.viewed", "2025-03-04 09:00:00", "u2", "course.id=c2;country=DE"),
        ev(A, "course.viewed", "2025-03-04 09:30:00", "u4", "course.id=c2;country=US"),
        ev(A, "enrollment.created", "2025-03-04 09:50:00", "u4",
           "course.id=c2;country=US;price=20"),
        ev(A, "course.viewed", "2025-03-06 14:00:00", "u1", "course.id=c1;country=FR"),
        ev(B, "course.viewed", "2025-03-03 10:00:00", "u9", "course.id=c1;country=FR"),
        ev(B, "course.viewed", "2025-03-03 10:10:00", "u9", "course.id=c1;country=FR"),
        ev(B, "enrollment.created", "2025-03-03 10:15:00", "u8",
           "course.id=c1;country=FR;price=99"),
        ev(B, "course.viewed", "2025-03-04 12:00:00", "u9", "country=BR"),
        NULL,
    };
    mf_insert_events(rows);
}

static char *define(const char *tenant, const char *scope, const char *name, const char *unit,
                    const char *tpl)
{
    char *n = th_unique(name);
    char *body = mf_fmt("{\"name\":\"%s\",\"unit\":\"%s\",\"query\":\"%s\"%s}", n, unit, tpl,
                        tenant ? "" : ",\"tenantId\":null");
    char *id = mf_create(tenant, scope, body);
    free(body);
    free(n);
    return id;
}

static void suite_setup(void)
{
    mf_kill_all();
    A = th_unique("tA");
    B = th_unique("tB");
    RUN = th_unique("run");
    seed();
    const char *extra[] = {"ANALYTICS_METRICS_SCHEDULER=false",
                           "ANALYTICS_METRICS_MATERIALIZE_WORKERS=0",
                           "ANALYTICS_METRICS_MAX_ROWS=50",
                           "ANALYTICS_METRICS_CACHE_TTL=30s",
                           "ANALYTICS_METRICS_REDIS_PREFIX=an:test:mq",
                           "ANALYTICS_METRICS_COLUMNS_REFRESH=200ms",
                           NULL};
    mf_start(&svc, "metrics-query", extra);
    mf_connect();
    m_views = define(A, NULL, "views", "count", VIEWS_TEMPLATE);
    m_uniq = define(A, NULL, "actives", "count", UNIQ_TEMPLATE);
    m_conv = define(A, NULL, "conversion", "ratio", CONV_TEMPLATE);
    m_revenue = define(A, NULL, "revenue", "microUSD", REVENUE_TEMPLATE);
    m_platform = define(NULL, "platform:admin", "platform events", "count", ALL_TEMPLATE);
    mf_disconnect();
}

static void suite_teardown(void)
{
    mf_stop(&svc, 20000);
    mf_kill_all();
}

/* Query metric id as tenant with extra members (a JSON fragment starting
 * with ',' or ""); the reply (free it). */
static cJSON *q(const char *tenant, const char *scope, const char *id, const char *from,
                const char *to, const char *extra)
{
    return mf_callf("query", tenant, scope, "{\"metricId\":\"%s\",\"from\":\"%s\",\"to\":\"%s\"%s}",
                    id, from, to, extra);
}

/* Query and compare the rows with want (a JSON array). */
static void expect(const char *tenant, const char *id, const char *from, const char *to,
                   const char *extra, const char *want)
{
    cJSON *r = q(tenant, NULL, id, from, to, extra);
    mf_expect_rows(mf_data(r), want);
    cJSON_Delete(r);
}

#define D1 "2025-03-03T00:00:00Z"
#define D5 "2025-03-07T00:00:00Z"
#define B1 "\"2025-03-03T00:00:00.000Z\""
#define B2 "\"2025-03-04T00:00:00.000Z\""
#define B3 "\"2025-03-05T00:00:00.000Z\""
#define B4 "\"2025-03-06T00:00:00.000Z\""

START_TEST(test_metrics_query_counts_per_day_with_empty_days_as_zero)
{
    cJSON *r = q(A, NULL, m_views, D1, D5, ",\"granularity\":\"day\",\"cache\":false");
    cJSON *d = mf_data(r);
    mf_expect_rows(d, "[[" B1 ",4],[" B2 ",2],[" B3 ",0],[" B4 ",1]]");
    ck_assert_str_eq(mf_str(d, "metricId"), m_views);
    ck_assert_str_eq(mf_str(d, "unit"), "count");
    ck_assert_str_eq(mf_str(d, "granularity"), "day");
    ck_assert_str_eq(mf_str(d, "fill"), "zero");
    ck_assert_str_eq(mf_str(d, "source"), "live");
    ck_assert_str_eq(mf_str(d, "from"), "2025-03-03T00:00:00.000Z");
    ck_assert_str_eq(mf_str(d, "to"), "2025-03-07T00:00:00.000Z");
    char *cols = mf_print(cJSON_GetObjectItem(d, "columns"));
    ck_assert_str_eq(cols, "[{\"name\":\"bucket\",\"type\":\"time\"},{\"name\":\"value\",\"type\":"
                           "\"number\"}]");
    free(cols);
    cJSON_Delete(r);
    /* tenant B's own metric would see B's; A's metric is A's data only */
    expect(A, m_views, D1, D5, ",\"granularity\":\"day\",\"fill\":\"none\"",
           "[[" B1 ",4],[" B2 ",2],[" B4 ",1]]");
    expect(A, m_views, D1, D5, ",\"granularity\":\"day\",\"fill\":\"null\"",
           "[[" B1 ",4],[" B2 ",2],[" B3 ",null],[" B4 ",1]]");
}
END_TEST

START_TEST(test_metrics_query_per_hour_week_and_month)
{
    expect(A, m_views, "2025-03-03T10:00:00Z", "2025-03-03T12:00:00Z", ",\"granularity\":\"hour\"",
           "[[\"2025-03-03T10:00:00.000Z\",3],[\"2025-03-03T11:00:00.000Z\",1]]");
    /* a range inside buckets is widened to whole buckets */
    expect(A, m_views, "2025-03-03T10:30:00Z", "2025-03-03T11:15:00Z", ",\"granularity\":\"hour\"",
           "[[\"2025-03-03T10:00:00.000Z\",3],[\"2025-03-03T11:00:00.000Z\",1]]");
    expect(A, m_views, D1, D5, ",\"granularity\":\"week\"", "[[" B1 ",7]]");
    expect(A, m_views, D1, D5, ",\"granularity\":\"month\"", "[[\"2025-03-01T00:00:00.000Z\",7]]");
    expect(A, m_uniq, D1, D5, ",\"granularity\":\"day\"",
           "[[" B1 ",3],[" B2 ",2],[" B3 ",0],[" B4 ",1]]");
    expect(A, m_uniq, "2025-03-03T10:00:00Z", "2025-03-03T12:00:00Z", ",\"granularity\":\"hour\"",
           "[[\"2025-03-03T10:00:00.000Z\",2],[\"2025-03-03T11:00:00.000Z\",3]]");
}
END_TEST

START_TEST(test_metrics_query_dimensions_fill_every_combination)
{
    expect(A, m_views, D1, D5, ",\"granularity\":\"day\",\"dimensions\":[\"properties.country\"]",
           "[[" B1 ",\"DE\",1],[" B1 ",\"FR\",3],[" B1 ",\"US\",0],"
           "[" B2 ",\"DE\",1],[" B2 ",\"FR\",0],[" B2 ",\"US\",1],"
           "[" B3 ",\"DE\",0],[" B3 ",\"FR\",0],[" B3 ",\"US\",0],"
           "[" B4 ",\"DE\",0],[" B4 ",\"FR\",1],[" B4 ",\"US\",0]]");
    cJSON *r =
        q(A, NULL, m_uniq, D1, "2025-03-05T00:00:00Z",
          ",\"granularity\":\"day\",\"dimensions\":[\"event_name\",\"properties.course.id\"]");
    cJSON *d = mf_data(r);
    mf_expect_rows(d, "[[" B1 ",\"course.viewed\",\"c1\",3],[" B1 ",\"course.viewed\",\"c2\",1],"
                      "[" B1 ",\"enrollment.created\",\"c1\",2],[" B1 ",\"enrollment.created\","
                      "\"c2\",0],"
                      "[" B2 ",\"course.viewed\",\"c1\",0],[" B2 ",\"course.viewed\",\"c2\",2],"
                      "[" B2 ",\"enrollment.created\",\"c1\",0],[" B2 ",\"enrollment.created\","
                      "\"c2\",1]]");
    char *cols = mf_print(cJSON_GetObjectItem(d, "columns"));
    ck_assert_str_eq(cols, "[{\"name\":\"bucket\",\"type\":\"time\"},{\"name\":\"event_name\","
                           "\"type\":\"string\"},{\"name\":\"properties.course.id\",\"type\":"
                           "\"string\"},{\"name\":\"value\",\"type\":\"number\"}]");
    free(cols);
    cJSON_Delete(r);
}
END_TEST

/* The service's /metrics value of a series without labels, or -1. */
static double svc_gauge(const char *name)
{
    int port = th_log_port(svc.log);
    ck_assert_int_gt(port, 0);
    return th_metric(port, name);
}

/* Query now and then (the list is read again by a live query once it is
 * older than the refresh) until the service counts `want` property columns. */
static int seen_calls;

static bool columns_seen(double want)
{
    for (int i = 0; i < 50; i++) {
        /* a filter never asked before: a live query, not a cached answer */
        char *extra = mf_fmt(",\"filters\":[{\"field\":\"event_name\",\"op\":\"neq\","
                             "\"value\":\"%s-%d\"}]",
                             RUN, seen_calls++);
        cJSON_Delete(q(A, NULL, m_views, D1, D5, extra));
        free(extra);
        if (svc_gauge("analytics_metrics_property_columns") == want)
            return true;
        usleep(100 * 1000);
    }
    return false;
}

/* A property column (deploy/clickhouse/property-column.sh) is found without
 * a restart and used for dimensions and filters with the same answers;
 * dropped again, queries go back to the arrays (the first one that names
 * the gone column reads the list again and runs once more). */
START_TEST(test_metrics_query_property_columns_give_the_same_answers)
{
    char *col = th_unique("p_country");
    for (char *c = col; *c; c++)
        if (*c == '-')
            *c = '_';
    /* what an earlier failed run of this test left (one column per path counts) */
    char *left = th_ch("SELECT name FROM system.columns WHERE database = 'analytics' AND "
                       "table = 'events' AND name LIKE 'p\\_country\\_%'");
    for (char *save = NULL, *name = strtok_r(left, "\n", &save); name;
         name = strtok_r(NULL, "\n", &save)) {
        char *sql = mf_fmt("ALTER TABLE analytics.events DROP COLUMN %s", name);
        free(th_ch(sql));
        free(sql);
    }
    free(left);
    /* other property columns there may be (not in a fresh stack) */
    char *others = th_ch("SELECT uniqExact(default_expression) FROM system.columns WHERE "
                         "database = 'analytics' AND table = 'events' AND default_kind = "
                         "'MATERIALIZED' AND type = 'String' AND default_expression LIKE "
                         "'prop\\_values[indexOf(prop\\_keys, %'");
    double before = atof(others);
    free(others);
    ck_assert(columns_seen(before));
    char *add = mf_fmt("ALTER TABLE analytics.events ADD COLUMN %s String MATERIALIZED "
                       "prop_values[indexOf(prop_keys, 'country')]",
                       col);
    free(th_ch(add));
    free(add);
    ck_assert_msg(columns_seen(before + 1), "the service did not pick the column up");
    const char *want =
        "[[" B1 ",\"FR\",3],[" B1 ",\"US\",0],[" B2 ",\"FR\",0],[" B2 ",\"US\",1],[" B3
        ",\"FR\",0],[" B3 ",\"US\",0],[" B4 ",\"FR\",1],[" B4 ",\"US\",0]]";
    const char *extra = ",\"granularity\":\"day\",\"dimensions\":[\"properties.country\"],"
                        "\"filters\":[{\"field\":\"properties.country\",\"op\":\"in\","
                        "\"value\":[\"FR\",\"US\"]}]";
    expect(A, m_views, D1, D5, extra, want);
    /* dropped: the same question, asked anew (values in another order: not
     * the cached answer) */
    char *drop = mf_fmt("ALTER TABLE analytics.events DROP COLUMN %s", col);
    free(th_ch(drop));
    free(drop);
    expect(A, m_views, D1, D5,
           ",\"granularity\":\"day\",\"dimensions\":[\"properties.country\"],"
           "\"filters\":[{\"field\":\"properties.country\",\"op\":\"in\","
           "\"value\":[\"US\",\"FR\"]}]",
           want);
    ck_assert(columns_seen(before));
    free(col);
}
END_TEST

START_TEST(test_metrics_query_ratio_leaves_empty_buckets_null)
{
    cJSON *r = q(A, NULL, m_conv, D1, D5, ",\"granularity\":\"day\"");
    ck_assert_str_eq(mf_str(mf_data(r), "fill"), "null");
    mf_expect_rows(mf_data(r), "[[" B1 ",0.5],[" B2 ",0.5],[" B3 ",null],[" B4 ",0]]");
    cJSON_Delete(r);
    /* per country: 1/3 for FR on day 1; a group without views is null, not inf */
    expect(A, m_conv, D1, "2025-03-05T00:00:00Z",
           ",\"granularity\":\"day\",\"dimensions\":[\"properties.country\"]",
           "[[" B1 ",\"DE\",1],[" B1 ",\"FR\",0.3333333333333333],[" B1 ",\"US\",null],"
           "[" B2 ",\"DE\",0],[" B2 ",\"FR\",null],[" B2 ",\"US\",1]]");
}
END_TEST

START_TEST(test_metrics_query_each_filter_operator)
{
    const char *day = ",\"granularity\":\"day\",\"filters\":[";
    struct {
        const char *filter;
        const char *want;
    } cases[] = {
        {"{\"field\":\"properties.country\",\"op\":\"eq\",\"value\":\"FR\"}",
         "[[" B1 ",3],[" B2 ",0],[" B3 ",0],[" B4 ",1]]"},
        {"{\"field\":\"properties.country\",\"op\":\"neq\",\"value\":\"FR\"}",
         "[[" B1 ",1],[" B2 ",2],[" B3 ",0],[" B4 ",0]]"},
        {"{\"field\":\"properties.course.id\",\"op\":\"in\",\"value\":[\"c2\"]}",
         "[[" B1 ",1],[" B2 ",2],[" B3 ",0],[" B4 ",0]]"},
        {"{\"field\":\"properties.country\",\"op\":\"not_in\",\"value\":[\"FR\",\"DE\"]}",
         "[[" B1 ",0],[" B2 ",1],[" B3 ",0],[" B4 ",0]]"},
        {"{\"field\":\"properties.country\",\"op\":\"contains\",\"value\":\"U\"}",
         "[[" B1 ",0],[" B2 ",1],[" B3 ",0],[" B4 ",0]]"},
        {"{\"field\":\"actor_id\",\"op\":\"eq\",\"value\":\"u1\"}",
         "[[" B1 ",2],[" B2 ",0],[" B3 ",0],[" B4 ",1]]"},
        {"{\"field\":\"properties.country\",\"op\":\"gt\",\"value\":\"E\"}",
         "[[" B1 ",3],[" B2 ",1],[" B3 ",0],[" B4 ",1]]"},
        {"{\"field\":\"properties.course.id\",\"op\":\"is_set\",\"value\":false}",
         "[[" B1 ",0],[" B2 ",0],[" B3 ",0],[" B4 ",0]]"},
        {"{\"field\":\"properties.country\",\"op\":\"eq\",\"value\":\"FR\"},{\"field\":"
         "\"properties.course.id\",\"op\":\"eq\",\"value\":\"c1\"}",
         "[[" B1 ",2],[" B2 ",0],[" B3 ",0],[" B4 ",1]]"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *extra = mf_fmt("%s%s]", day, cases[i].filter);
        expect(A, m_views, D1, D5, extra, cases[i].want);
        free(extra);
    }
    /* numbers compare numerically; is_set finds a property */
    const char *rev[][2] = {
        {"{\"field\":\"properties.price\",\"op\":\"gt\",\"value\":25}", "[[" B1 ",80],[" B2 ",0]]"},
        {"{\"field\":\"properties.price\",\"op\":\"gte\",\"value\":50}",
         "[[" B1 ",50],[" B2 ",0]]"},
        {"{\"field\":\"properties.price\",\"op\":\"lt\",\"value\":30}", "[[" B1 ",0],[" B2 ",20]]"},
        {"{\"field\":\"properties.price\",\"op\":\"lte\",\"value\":30}",
         "[[" B1 ",30],[" B2 ",20]]"},
        {"{\"field\":\"properties.price\",\"op\":\"in\",\"value\":[20,50]}",
         "[[" B1 ",50],[" B2 ",20]]"},
        {"{\"field\":\"properties.price\",\"op\":\"eq\",\"value\":30.0}",
         "[[" B1 ",30],[" B2 ",0]]"},
        {"{\"field\":\"properties.coupon\",\"op\":\"is_set\"}", "[[" B1 ",50],[" B2 ",0]]"},
    };
    for (size_t i = 0; i < sizeof(rev) / sizeof(rev[0]); i++) {
        char *extra = mf_fmt("%s%s]", day, rev[i][0]);
        expect(A, m_revenue, D1, "2025-03-05T00:00:00Z", extra, rev[i][1]);
        free(extra);
    }
}
END_TEST

/* Ingest's hourly rollup (migration 0003, fed by a materialized view on
 * every insert into analytics.events, the seeding included). */
START_TEST(test_metrics_query_from_the_hourly_rollup)
{
    char *count_id = define(A, NULL, "rollup events", "count",
                            "SELECT {{bucket:hour}} AS bucket{{dimensions}}, countMerge(events) AS "
                            "value FROM {{events_hourly}} WHERE {{time_range:hour}} AND "
                            "{{filters}} GROUP BY bucket{{group_by}}");
    char *actors_id = define(A, NULL, "rollup actors", "count",
                             "SELECT {{bucket:hour}} AS bucket, uniqIfMerge(actors) AS value FROM "
                             "{{events_hourly}} WHERE {{time_range:hour}} GROUP BY bucket");
    expect(A, count_id, D1, D5, ",\"granularity\":\"day\"",
           "[[" B1 ",6],[" B2 ",3],[" B3 ",0],[" B4 ",1]]");
    expect(A, count_id, D1, "2025-03-05T00:00:00Z",
           ",\"granularity\":\"day\",\"dimensions\":[\"event_name\"]",
           "[[" B1 ",\"course.viewed\",4],[" B1 ",\"enrollment.created\",2],"
           "[" B2 ",\"course.viewed\",2],[" B2 ",\"enrollment.created\",1]]");
    expect(A, count_id, "2025-03-03T10:00:00Z", "2025-03-03T12:00:00Z",
           ",\"granularity\":\"hour\",\"filters\":[{\"field\":\"event_name\",\"op\":\"eq\","
           "\"value\":\"course.viewed\"}]",
           "[[\"2025-03-03T10:00:00.000Z\",3],[\"2025-03-03T11:00:00.000Z\",1]]");
    expect(A, actors_id, D1, D5, ",\"granularity\":\"day\"",
           "[[" B1 ",3],[" B2 ",2],[" B3 ",0],[" B4 ",1]]");
    /* the rollup is bound to the tenant like the events: B's own rows only */
    char *b_id = define(B, NULL, "rollup events", "count",
                        "SELECT {{bucket:hour}} AS bucket, countMerge(events) AS value FROM "
                        "{{events_hourly}} WHERE {{time_range:hour}} GROUP BY bucket");
    expect(B, b_id, D1, "2025-03-05T00:00:00Z", ",\"granularity\":\"day\"",
           "[[" B1 ",3],[" B2 ",1]]");
    /* a property does not exist in the rollup: ClickHouse says so */
    cJSON *r = q(A, NULL, count_id, D1, D5,
                 ",\"granularity\":\"day\",\"dimensions\":[\"properties.country\"]");
    mf_expect_error(r, "invalid_argument", NULL);
    cJSON_Delete(r);
    free(count_id);
    free(actors_id);
    free(b_id);
}
END_TEST

START_TEST(test_metrics_query_refuses_what_the_template_cannot_do)
{
    struct {
        const char *id_extra;
        const char *code, *field;
    } cases[] = {
        {",\"granularity\":\"fortnight\"", "invalid_argument", "granularity"},
        {",\"dimensions\":[\"tenant_id\"]", "invalid_argument", "dimensions[0]"},
        {",\"filters\":[{\"field\":\"event_name\",\"op\":\"like\",\"value\":\"x\"}]",
         "invalid_argument", "filters[0].op"},
        {",\"fill\":\"maybe\"", "invalid_argument", "fill"},
        {",\"source\":\"cache\"", "invalid_argument", "source"},
        {",\"source\":\"materialized\"", "failed_precondition", "source"},
        {",\"granularty\":\"day\"", "invalid_argument", "granularty"},
        {",\"breakdown\":\"tenant\"", "invalid_argument", "breakdown"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cJSON *r = q(A, NULL, m_views, D1, D5, cases[i].id_extra);
        mf_expect_error(r, cases[i].code, cases[i].field);
        cJSON_Delete(r);
    }
    /* the revenue template has no {{dimensions}}: refused, not ignored */
    cJSON *r = q(A, NULL, m_revenue, D1, D5, ",\"dimensions\":[\"event_name\"]");
    mf_expect_error(r, "invalid_argument", "dimensions");
    cJSON_Delete(r);
    r = mf_callf("query", A, NULL, "{\"metricId\":\"%s\",\"granularity\":\"day\"}", m_views);
    mf_expect_error(r, "invalid_argument", "from");
    cJSON_Delete(r);
    r = mf_call("query", A, NULL, "{\"metricId\":\"nope\"}");
    mf_expect_error(r, "invalid_argument", "metricId");
    cJSON_Delete(r);
    r = mf_call("query", A, NULL, "{\"metricId\":\"01ARZ3NDEKTSV4RRFFQ69G5FAV\"}");
    mf_expect_error(r, "not_found", "metricId");
    cJSON_Delete(r);
}
END_TEST

START_TEST(test_metrics_query_platform_metric_is_per_tenant_unless_admin)
{
    char *run = mf_fmt(",\"granularity\":\"day\",\"filters\":[{\"field\":\"properties.run\","
                       "\"op\":\"eq\",\"value\":\"%s\"}]",
                       RUN);
    const char *to = "2025-03-05T00:00:00Z";
    /* each tenant sees its own events through the platform metric */
    expect(A, m_platform, D1, to, run, "[[" B1 ",6],[" B2 ",3]]");
    expect(B, m_platform, D1, to, run, "[[" B1 ",3],[" B2 ",1]]");
    /* across tenants only with platform:admin */
    char *all = mf_fmt("%s,\"allTenants\":true,\"breakdown\":\"tenant\"", run);
    cJSON *r = q(A, NULL, m_platform, D1, to, all);
    mf_expect_error(r, "permission_denied", "allTenants");
    cJSON_Delete(r);
    r = q(A, "platform:admin", m_platform, D1, to, all); /* admin scope with a tenant: allowed */
    cJSON_Delete(r);
    r = q(NULL, "platform:admin", m_platform, D1, to, all);
    cJSON *d = mf_data(r);
    const char *first = strcmp(A, B) < 0 ? A : B, *second = strcmp(A, B) < 0 ? B : A;
    int fa = first == A ? 6 : 3, fb = first == A ? 3 : 1, sa = first == A ? 3 : 6,
        sb = first == A ? 1 : 3;
    char *want =
        mf_fmt("[[" B1 ",\"%s\",%d],[" B1 ",\"%s\",%d],[" B2 ",\"%s\",%d],[" B2 ",\"%s\",%d]]",
               first, fa, second, sa, first, fb, second, sb);
    mf_expect_rows(d, want);
    ck_assert_str_eq(mf_str(cJSON_GetArrayItem(cJSON_GetObjectItem(d, "columns"), 1), "name"),
                     "tenantId");
    ck_assert_str_eq(mf_str(cJSON_GetObjectItem(d, "scope"), "breakdown"), "tenant");
    cJSON_Delete(r);
    char *total = mf_fmt("%s,\"allTenants\":true", run);
    r = q(NULL, "platform:admin", m_platform, D1, to, total);
    mf_expect_rows(mf_data(r), "[[" B1 ",9],[" B2 ",4]]");
    cJSON_Delete(r);
    /* the admin may look at one tenant too */
    char *one = mf_fmt("%s,\"tenantId\":\"%s\"", run, B);
    r = q(NULL, "platform:admin", m_platform, D1, to, one);
    mf_expect_rows(mf_data(r), "[[" B1 ",3],[" B2 ",1]]");
    cJSON_Delete(r);
    /* a tenant's metric never aggregates across tenants */
    r = q(NULL, "platform:admin", m_views, D1, to, ",\"allTenants\":true");
    mf_expect_error(r, "invalid_argument", "allTenants");
    cJSON_Delete(r);
    /* a caller without a tenant must say whose data */
    r = q(NULL, "platform:admin", m_platform, D1, to, "");
    mf_expect_error(r, "invalid_argument", "tenantId");
    cJSON_Delete(r);
    free(one);
    free(total);
    free(want);
    free(all);
    free(run);
}
END_TEST

START_TEST(test_metrics_query_cache_is_per_tenant_and_version)
{
    char *run = mf_fmt(",\"granularity\":\"day\",\"filters\":[{\"field\":\"properties.run\","
                       "\"op\":\"eq\",\"value\":\"%s\"}]",
                       RUN);
    const char *to = "2025-03-06T00:00:00Z"; /* parameters no other test asks */
    cJSON *r1 = q(A, NULL, m_platform, D1, to, run);
    mf_expect_rows(mf_data(r1), "[[" B1 ",6],[" B2 ",3],[" B3 ",0]]");
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(mf_data(r1), "cached")));
    cJSON *r2 = q(A, NULL, m_platform, D1, to, run);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(mf_data(r2), "cached")));
    ck_assert(cJSON_Compare(cJSON_GetObjectItem(mf_data(r1), "rows"),
                            cJSON_GetObjectItem(mf_data(r2), "rows"), 1));
    /* the key names the tenant; B's identical query is not served A's rows */
    char *cmd = mf_fmt("--scan --pattern 'an:test:mq:result:%s:%s:*'", A, m_platform);
    char *keys = th_redis(cmd);
    ck_assert_msg(strlen(keys) > 10, "no cache key for tenant A: %s", keys);
    cJSON *rb = q(B, NULL, m_platform, D1, to, run);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(mf_data(rb), "cached")));
    mf_expect_rows(mf_data(rb), "[[" B1 ",3],[" B2 ",1],[" B3 ",0]]");
    cJSON *rb2 = q(B, NULL, m_platform, D1, to, run);
    ck_assert(cJSON_IsTrue(cJSON_GetObjectItem(mf_data(rb2), "cached")));
    mf_expect_rows(mf_data(rb2), "[[" B1 ",3],[" B2 ",1],[" B3 ",0]]");
    /* cache: false asks ClickHouse */
    char *nocache = mf_fmt("%s,\"cache\":false", run);
    cJSON *r3 = q(A, NULL, m_platform, D1, to, nocache);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(mf_data(r3), "cached")));

    /* a new version of the metric is a new cache entry */
    cJSON *g = mf_callf("get", NULL, "platform:admin", "{\"id\":\"%s\"}", m_platform);
    cJSON *u = mf_callf("update", NULL, "platform:admin",
                        "{\"id\":\"%s\",\"expectedVersion\":%.0f,\"description\":{\"en\":\"all "
                        "events\"}}",
                        m_platform, mf_num(mf_data(g), "version"));
    mf_data(u);
    cJSON *r4 = q(A, NULL, m_platform, D1, to, run);
    ck_assert(cJSON_IsFalse(cJSON_GetObjectItem(mf_data(r4), "cached")));
    ck_assert(mf_num(mf_data(r4), "version") == mf_num(mf_data(u), "version"));
    free(nocache);
    free(cmd);
    free(keys);
    free(run);
    cJSON_Delete(r1);
    cJSON_Delete(r2);
    cJSON_Delete(rb);
    cJSON_Delete(rb2);
    cJSON_Delete(r3);
    cJSON_Delete(g);
    cJSON_Delete(u);
    cJSON_Delete(r4);
}
END_TEST

START_TEST(test_metrics_query_too_many_rows_is_resource_exhausted)
{
    /* 1440 minute buckets > 50 rows: refused before running */
    cJSON *r = q(A, NULL, m_views, D1, "2025-03-04T00:00:00Z", ",\"granularity\":\"minute\"");
    mf_expect_error(r, "resource_exhausted", NULL);
    cJSON_Delete(r);
    /* 20 days x 3 countries = 60 filled rows > 50 */
    r = q(A, NULL, m_views, D1, "2025-03-23T00:00:00Z",
          ",\"granularity\":\"day\",\"dimensions\":[\"properties.country\"]");
    mf_expect_error(r, "resource_exhausted", NULL);
    cJSON_Delete(r);
    /* 17 days x 3 = 51 > 50; 16 x 3 = 48 fits */
    r = q(A, NULL, m_views, D1, "2025-03-20T00:00:00Z",
          ",\"granularity\":\"day\",\"dimensions\":[\"properties.country\"]");
    mf_expect_error(r, "resource_exhausted", NULL);
    cJSON_Delete(r);
    r = q(A, NULL, m_views, D1, "2025-03-19T00:00:00Z",
          ",\"granularity\":\"day\",\"dimensions\":[\"properties.country\"]");
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(mf_data(r), "rows")), 48);
    cJSON_Delete(r);

    /* 60 raw rows from ClickHouse > 50: refused, not cut to 50 */
    char *t = th_unique("tC");
    char *rows[61];
    for (int i = 0; i < 60; i++) {
        char when[32];
        snprintf(when, sizeof(when), "2025-03-03 12:%02d:00", i);
        rows[i] = mf_event(t, "x.happened", when, "u", NULL);
    }
    rows[60] = NULL;
    mf_insert_events(rows);
    char *id = define(t, NULL, "one row per event", "count",
                      "SELECT 1 AS value FROM {{events}} WHERE {{filters}}");
    r = mf_callf("query", t, NULL, "{\"metricId\":\"%s\"}", id);
    mf_expect_error(r, "resource_exhausted", NULL);
    cJSON_Delete(r);
    /* and the same with a narrower filter fits */
    r = mf_callf("query", t, NULL,
                 "{\"metricId\":\"%s\",\"filters\":[{\"field\":\"event_name\",\"op\":\"eq\","
                 "\"value\":\"none\"}]}",
                 id);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(mf_data(r), "rows")), 0);
    cJSON_Delete(r);
    free(id);
    free(t);
}
END_TEST

/* ------------------------------------------------------------- time limit */

static mf_proc slow;
static char *slow_tenant;

static void slow_setup(void)
{
    mf_kill_all();
    slow_tenant = th_unique("tS");
    char *rows[41];
    for (int i = 0; i < 40; i++) {
        char when[32];
        snprintf(when, sizeof(when), "2025-03-03 12:%02d:00", i);
        rows[i] = mf_event(slow_tenant, "x.happened", when, "u", NULL);
    }
    rows[40] = NULL;
    mf_insert_events(rows);
    const char *extra[] = {
        "ANALYTICS_METRICS_SCHEDULER=false",         "ANALYTICS_METRICS_MATERIALIZE_WORKERS=0",
        "ANALYTICS_METRICS_QUERY_TIMEOUT=300ms",     "ANALYTICS_REQUEST_TIMEOUT=5s",
        "ANALYTICS_METRICS_REDIS_PREFIX=an:test:mq", NULL};
    mf_start(&slow, "metrics-slow", extra);
}

static void slow_teardown(void)
{
    mf_stop(&slow, 20000);
    mf_kill_all();
}

START_TEST(test_metrics_query_too_slow_is_resource_exhausted)
{
    /* about 1 s of work over 40 rows, against a 300 ms limit */
    char *id = define(slow_tenant, NULL, "slow", "count",
                      "SELECT sum(arraySum(range(2400000 + toUInt32(length(event_id))))) AS "
                      "value FROM {{events}}");
    int64_t t0 = th_now_ms();
    cJSON *r = mf_callf("query", slow_tenant, NULL, "{\"metricId\":\"%s\"}", id);
    int64_t took = th_now_ms() - t0;
    mf_expect_error(r, "resource_exhausted", NULL);
    const char *msg = mf_str(cJSON_GetObjectItem(r, "error"), "message");
    ck_assert_msg(strstr(msg, "300 ms") != NULL, "%s", msg);
    ck_assert_msg(took < 3000, "answered after %lld ms", (long long)took);
    cJSON_Delete(r);
    free(id);
}
END_TEST

/* ClickHouse 18.16 goes on with a query whose HTTP client went away: one
 * that metrics gave up on is killed, not left to run to the reader
 * profile's 30 s while the tenant sends more. Here a query of about 20 s
 * (a sum over 25 million numbers for each of 80 events, one per month: a
 * block each, so the kill takes effect between them) is gone from
 * system.processes within 3 s of the resource_exhausted answer. */
START_TEST(test_metrics_query_given_up_is_stopped_in_clickhouse)
{
    char *t = th_unique("tK");
    char *sql;
    ck_assert(
        asprintf(&sql,
                 "INSERT INTO analytics.events (tenant_id, event_id, event_name, occurred_at) "
                 "SELECT '%s', toString(number), 'x.happened', addMonths(toDateTime("
                 "'2019-01-15 12:00:00'), number) FROM numbers(80)",
                 t) > 0);
    free(th_ch(sql));
    free(sql);
    char *id = define(t, NULL, "heavy", "count",
                      "SELECT sum(arraySum(range(25000000 + toUInt32(length(event_id))))) AS "
                      "value FROM {{events}}");
    cJSON *r = mf_callf("query", t, NULL, "{\"metricId\":\"%s\"}", id);
    mf_expect_error(r, "resource_exhausted", NULL);
    cJSON_Delete(r);
    ck_assert(asprintf(&sql,
                       "SELECT count() FROM system.processes WHERE user = '%s' "
                       "AND position(query, '%s') > 0",
                       th_env("ANALYTICS_CLICKHOUSE_READER_USER"), t) > 0);
    long long running = -1;
    for (int i = 0; i < 30 && running != 0; i++) {
        char *n = th_ch(sql);
        running = atoll(n);
        free(n);
        if (running)
            usleep(100 * 1000);
    }
    ck_assert_msg(running == 0, "the query still runs in ClickHouse 3 s after metrics gave up");
    free(sql);
    free(id);
    free(t);
}
END_TEST

Suite *metrics_query_suite(void)
{
    Suite *s = suite_create("metrics_query");
    TCase *tc = tcase_create("results");
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, mf_connect, mf_disconnect);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_metrics_query_counts_per_day_with_empty_days_as_zero);
    tcase_add_test(tc, test_metrics_query_per_hour_week_and_month);
    tcase_add_test(tc, test_metrics_query_dimensions_fill_every_combination);
    tcase_add_test(tc, test_metrics_query_property_columns_give_the_same_answers);
    tcase_add_test(tc, test_metrics_query_ratio_leaves_empty_buckets_null);
    tcase_add_test(tc, test_metrics_query_each_filter_operator);
    tcase_add_test(tc, test_metrics_query_from_the_hourly_rollup);
    tcase_add_test(tc, test_metrics_query_refuses_what_the_template_cannot_do);
    tcase_add_test(tc, test_metrics_query_platform_metric_is_per_tenant_unless_admin);
    tcase_add_test(tc, test_metrics_query_cache_is_per_tenant_and_version);
    tcase_add_test(tc, test_metrics_query_too_many_rows_is_resource_exhausted);
    suite_add_tcase(s, tc);

    tc = tcase_create("time_limit");
    tcase_add_unchecked_fixture(tc, slow_setup, slow_teardown);
    tcase_add_checked_fixture(tc, mf_connect, mf_disconnect);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_metrics_query_too_slow_is_resource_exhausted);
    tcase_add_test(tc, test_metrics_query_given_up_is_stopped_in_clickhouse);
    suite_add_tcase(s, tc);
    return s;
}
