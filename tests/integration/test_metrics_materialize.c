/*
 * metrics_materialize: scheduled materialization with real replicas, real
 * cron ticks, the Redis queue and ClickHouse.
 *
 *   - two replicas: every tick of a schedule is computed exactly once
 *     (analytics.metric_runs is append-only: a second run of a tick would
 *     be a second row), the values equal the events, and a query over a
 *     covered range is answered from them ("source": "materialized") with
 *     the same rows as the live query;
 *   - a replica killed in the middle of a materialization: another replica
 *     takes the job over and finishes it, once.
 *
 * To not wait minutes for ticks, a metric's creation time is moved a few
 * minutes back (a new version of its record, written as the ClickHouse
 * admin): the scheduler then fires the ticks it missed within its catch-up
 * window (3 minutes here) - real ticks of the cron expression - and the
 * first test also waits for one tick that happens while it runs.
 */
#include "tests/helpers/metrics_fixture.h"

#include "common/timeutil.h"

#define EVERY_MINUTE_TEMPLATE                                                                      \
    "SELECT {{bucket}} AS bucket{{dimensions}}, count() AS value FROM {{events}} WHERE "           \
    "{{time_range}} AND {{filters}} GROUP BY bucket{{group_by}}"

static void suite_setup(void)
{
    mf_kill_all();
    /* Scheduled metrics left active by earlier runs would be ticked by these
     * replicas too: deprecate them (a new version of each record). */
    free(th_ch("INSERT INTO analytics.metric_definitions SELECT tenant_id, id, name, description, "
               "replaceOne(spec, '\"status\":\"active\"', '\"status\":\"deprecated\"'), "
               "created_by, created_at, updated_at, version + 1, deleted FROM "
               "analytics.metric_definitions FINAL WHERE deleted = 0 AND "
               "visitParamExtractString(spec, 'schedule') != '' AND "
               "visitParamExtractString(spec, 'status') = 'active'"));
}

static void suite_teardown(void)
{
    mf_kill_all();
}

/* Settings of one test's replicas: a queue and key prefix of its own. */
typedef struct cluster {
    char queue[128], prefix[128];
} cluster;

static void cluster_init(cluster *c)
{
    char *u = th_unique("mq");
    snprintf(c->queue, sizeof(c->queue), "%s", u);
    snprintf(c->prefix, sizeof(c->prefix), "an:test:%s", u);
    free(u);
}

static void start_replica(mf_proc *p, const cluster *c, const char *name, bool scheduler,
                          const char *pause)
{
    char q[256], pre[256], sched[64], ps[64];
    snprintf(q, sizeof(q), "ANALYTICS_METRICS_QUEUE=%s", c->queue);
    snprintf(pre, sizeof(pre), "ANALYTICS_METRICS_REDIS_PREFIX=%s", c->prefix);
    snprintf(sched, sizeof(sched), "ANALYTICS_METRICS_SCHEDULER=%s", scheduler ? "true" : "false");
    snprintf(ps, sizeof(ps), "ANALYTICS_METRICS_TEST_PAUSE=%s", pause ? pause : "0");
    const char *extra[] = {q,
                           pre,
                           sched,
                           ps,
                           "ANALYTICS_METRICS_SCHEDULER_INTERVAL=200ms",
                           "ANALYTICS_METRICS_SCHEDULE_REFRESH=500ms",
                           "ANALYTICS_METRICS_TICK_CATCHUP=3m",
                           "ANALYTICS_METRICS_JOB_VISIBILITY=3s",
                           "ANALYTICS_METRICS_MATERIALIZE_WORKERS=1",
                           NULL};
    mf_start(p, name, extra);
}

/* Move the metric's creation 5 minutes back (a new version of the record). */
static void backdate(const char *id)
{
    char *sql = mf_fmt("INSERT INTO analytics.metric_definitions SELECT tenant_id, id, name, "
                       "description, spec, created_by, created_at - 300, updated_at, version + 1, "
                       "deleted FROM analytics.metric_definitions FINAL WHERE id = '%s'",
                       id);
    free(th_ch(sql));
    free(sql);
}

static long long runs_of(const char *id)
{
    char *sql = mf_fmt("SELECT count() FROM analytics.metric_runs WHERE metric_id = '%s'", id);
    long long n = th_ch_count(sql);
    free(sql);
    return n;
}

/* Ticks of id that ran more than once (must be 0). */
static long long ticks_run_twice(const char *id)
{
    char *sql = mf_fmt("SELECT count() FROM (SELECT tick FROM analytics.metric_runs WHERE "
                       "metric_id = '%s' GROUP BY tick HAVING count() > 1)",
                       id);
    long long n = th_ch_count(sql);
    free(sql);
    return n;
}

/* Seed events at the minutes before now: k events at minute now-k, k=1..6,
 * and one in the current minute. Returns the start of the current minute (s). */
static int64_t seed_recent(const char *tenant)
{
    int64_t now_s = (int64_t)time(NULL);
    int64_t minute = now_s - now_s % 60;
    char *rows[32];
    int n = 0;
    for (int k = 1; k <= 6; k++)
        for (int i = 0; i < k; i++) {
            char when[AN_TIME_CH_LEN];
            an_time_format_ch((minute - 60 * k + 5 * i) * 1000, when, NULL);
            rows[n++] = mf_event(tenant, i % 2 ? "b.evt" : "a.evt", when, "u", NULL);
        }
    char when[AN_TIME_CH_LEN];
    an_time_format_ch(minute * 1000, when, NULL);
    rows[n++] = mf_event(tenant, "a.evt", when, "u", NULL);
    rows[n] = NULL;
    mf_insert_events(rows);
    return minute;
}

static void deprecate(const char *tenant, const char *scope, const char *id)
{
    cJSON *r = mf_callf("deprecate", tenant, scope, "{\"id\":\"%s\"}", id);
    mf_data(r);
    cJSON_Delete(r);
}

START_TEST(test_metrics_materialize_two_replicas_run_each_tick_once)
{
    cluster c = {"", ""};
    cluster_init(&c);
    char *t = th_unique("tm");
    int64_t minute = seed_recent(t);
    mf_proc r1, r2;
    start_replica(&r1, &c, "metrics-r1", true, NULL);
    start_replica(&r2, &c, "metrics-r2", true, NULL);
    int64_t started_s = (int64_t)time(NULL);

    char *name = th_unique("per minute");
    char *body = mf_fmt("{\"name\":\"%s\",\"unit\":\"count\",\"schedule\":\"* * * * *\","
                        "\"materialize\":{\"granularity\":\"minute\",\"lookback\":5},"
                        "\"query\":\"%s\"}",
                        name, EVERY_MINUTE_TEMPLATE);
    char *id = mf_create(t, NULL, body);
    free(body);
    /* a platform metric too: values per tenant and the total */
    char *pname = th_unique("platform per minute");
    body = mf_fmt("{\"name\":\"%s\",\"unit\":\"count\",\"tenantId\":null,\"schedule\":\"* * * * "
                  "*\",\"materialize\":{\"granularity\":\"minute\",\"lookback\":5,\"dimensions\":["
                  "\"event_name\"]},\"query\":\"%s\"}",
                  pname, EVERY_MINUTE_TEMPLATE);
    char *pid = mf_create(NULL, "platform:admin", body);
    free(body);
    /* a value an older computation left (say, before the template changed)
     * in the windows about to be recomputed: it must be removed, not read */
    char *stale = mf_fmt("INSERT INTO analytics.metric_values (tenant_id, metric_id, granularity, "
                         "bucket, dimensions, value, computed_at, version) VALUES ('%s', '%s', "
                         "'minute', toDateTime(%lld), '{\"stale\":\"x\"}', 99, now(), 1)",
                         t, id, (long long)(minute - 120));
    free(th_ch(stale));
    free(stale);
    backdate(id);
    backdate(pid);

    /* the missed ticks of the last 3 minutes, then one that happens now */
    char *sql = mf_fmt("SELECT count() FROM analytics.metric_runs WHERE metric_id = '%s' AND tick "
                       ">= toDateTime(%lld)",
                       id, (long long)started_s);
    int64_t until = th_now_ms() + 100000;
    while (th_now_ms() < until && (th_ch_count(sql) < 1 || runs_of(pid) < runs_of(id)))
        th_sleep_ms(500);
    ck_assert_msg(th_ch_count(sql) >= 1, "no live tick ran; logs %s %s", r1.log, r2.log);
    th_sleep_ms(1500); /* a second run of a tick would have shown by now */
    long long runs = runs_of(id);
    ck_assert_msg(runs >= 3, "only %lld runs", runs);
    ck_assert_int_eq(ticks_run_twice(id), 0);
    ck_assert_int_eq(ticks_run_twice(pid), 0);
    /* each tick was claimed once in Redis, and each claimed tick ran */
    char *cmd = mf_fmt("--scan --pattern '%s:tick:%s:*' | wc -l", c.prefix, id);
    char *claims = th_redis(cmd);
    long long runs_now = runs_of(id);
    ck_assert_msg(atoll(claims) == runs_now || atoll(claims) == runs_now + 1,
                  "%s claims for %lld runs", claims, runs_now);

    /* the values are the events: k events at minute now-k */
    char *vsql = mf_fmt("SELECT toUnixTimestamp(bucket), value FROM analytics.metric_values FINAL "
                        "WHERE tenant_id = '%s' AND metric_id = '%s' AND granularity = 'minute' "
                        "AND bucket < toDateTime(%lld) AND deleted = 0 ORDER BY bucket",
                        t, id, (long long)minute);
    char *vals = th_ch(vsql);
    int lines = 0;
    for (char *line = vals; line && *line; lines++) {
        long long b = 0;
        double v = -1;
        sscanf(line, "%lld\t%lf", &b, &v);
        int k = (int)((minute - b) / 60);
        ck_assert_msg(k >= 1 && k <= 6 && v == k, "bucket %lld (minute-%d) holds %g", b, k, v);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    ck_assert_msg(lines >= 3, "values: %s", vals);
    char *ssql = mf_fmt("SELECT count() FROM analytics.metric_values FINAL WHERE metric_id = '%s' "
                        "AND dimensions = '{\"stale\":\"x\"}' AND deleted = 0",
                        id);
    ck_assert_int_eq(th_ch_count(ssql), 0);
    free(ssql);

    /* a covered range is answered from the materialized values, same rows */
    char fr[AN_TIME_ISO_LEN], to[AN_TIME_ISO_LEN];
    an_time_format_iso((minute - 180) * 1000, fr, NULL);
    an_time_format_iso((minute - 60) * 1000, to, NULL);
    cJSON *m = mf_callf("query", t, NULL,
                        "{\"metricId\":\"%s\",\"from\":\"%s\",\"to\":\"%s\",\"granularity\":"
                        "\"minute\",\"source\":\"materialized\"}",
                        id, fr, to);
    cJSON *l = mf_callf("query", t, NULL,
                        "{\"metricId\":\"%s\",\"from\":\"%s\",\"to\":\"%s\",\"granularity\":"
                        "\"minute\",\"source\":\"live\"}",
                        id, fr, to);
    cJSON *a = mf_callf("query", t, NULL,
                        "{\"metricId\":\"%s\",\"from\":\"%s\",\"to\":\"%s\",\"granularity\":"
                        "\"minute\",\"cache\":false}",
                        id, fr, to);
    ck_assert_str_eq(mf_str(mf_data(m), "source"), "materialized");
    ck_assert_str_eq(mf_str(mf_data(l), "source"), "live");
    ck_assert_str_eq(mf_str(mf_data(a), "source"), "materialized"); /* auto picks it */
    char b2[AN_TIME_ISO_LEN];
    an_time_format_iso((minute - 120) * 1000, b2, NULL);
    char *want_rows = mf_fmt("[[\"%s\",3],[\"%s\",2]]", fr, b2);
    mf_expect_rows(mf_data(m), want_rows);
    free(want_rows);
    ck_assert(cJSON_Compare(cJSON_GetObjectItem(mf_data(m), "rows"),
                            cJSON_GetObjectItem(mf_data(l), "rows"), 1));
    /* a filter cannot be answered from materialized values */
    cJSON *f = mf_callf("query", t, NULL,
                        "{\"metricId\":\"%s\",\"from\":\"%s\",\"to\":\"%s\",\"granularity\":"
                        "\"minute\",\"cache\":false,\"filters\":[{\"field\":\"event_name\",\"op\":"
                        "\"eq\",\"value\":\"a.evt\"}]}",
                        id, fr, to);
    ck_assert_str_eq(mf_str(mf_data(f), "source"), "live");

    /* the platform metric: per tenant, by event_name, materialized = live */
    cJSON *pm = mf_callf("query", t, NULL,
                         "{\"metricId\":\"%s\",\"from\":\"%s\",\"to\":\"%s\",\"granularity\":"
                         "\"minute\",\"dimensions\":[\"event_name\"],\"source\":\"materialized\"}",
                         pid, fr, to);
    cJSON *pl = mf_callf("query", t, NULL,
                         "{\"metricId\":\"%s\",\"from\":\"%s\",\"to\":\"%s\",\"granularity\":"
                         "\"minute\",\"dimensions\":[\"event_name\"],\"source\":\"live\"}",
                         pid, fr, to);
    ck_assert(cJSON_Compare(cJSON_GetObjectItem(mf_data(pm), "rows"),
                            cJSON_GetObjectItem(mf_data(pl), "rows"), 1));
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(mf_data(pm), "rows")), 4);
    char *tsql = mf_fmt("SELECT count() FROM analytics.metric_values FINAL WHERE metric_id = '%s' "
                        "AND tenant_id = '' AND deleted = 0",
                        pid);
    ck_assert_msg(th_ch_count(tsql) > 0, "no all-tenant total was materialized");

    /* a job delivered again after its tick ran (a worker that logged the run
     * and died before its ack): acknowledged, not run twice */
    char *last = mf_fmt("SELECT toUnixTimestamp(max(tick)) FROM analytics.metric_runs WHERE "
                        "metric_id = '%s'",
                        id);
    long long tick_s = th_ch_count(last);
    long long before = runs_of(id);
    char *xadd = mf_fmt("XADD an:%s '*' payload '{\"metricId\":\"%s\",\"tick\":%lld000}' id "
                        "'%s:%lld'",
                        c.queue, id, tick_s, id, tick_s);
    free(th_redis(xadd));
    ck_assert_msg(mf_wait_log(&r1, "already ran", 10000) || mf_wait_log(&r2, "already ran", 1000),
                  "the redelivered job was not recognised; logs %s %s", r1.log, r2.log);
    ck_assert_int_eq(ticks_run_twice(id), 0);
    ck_assert_int_le(runs_of(id) - before, 1); /* at most a new live tick */
    free(last);
    free(xadd);

    deprecate(t, NULL, id);
    deprecate(NULL, "platform:admin", pid);
    ck_assert_int_eq(mf_stop(&r1, 20000), 0);
    ck_assert_int_eq(mf_stop(&r2, 20000), 0);
    cJSON_Delete(m);
    cJSON_Delete(l);
    cJSON_Delete(a);
    cJSON_Delete(f);
    cJSON_Delete(pm);
    cJSON_Delete(pl);
    free(tsql);
    free(vals);
    free(vsql);
    free(claims);
    free(cmd);
    free(sql);
    free(name);
    free(pname);
    free(id);
    free(pid);
    free(t);
}
END_TEST

START_TEST(test_metrics_materialize_killed_replica_is_taken_over)
{
    cluster c = {"", ""};
    cluster_init(&c);
    char *t = th_unique("tk");
    seed_recent(t);
    mf_proc r1, r2;
    /* r1 fires the ticks and pauses 60 s on its first job, heartbeating */
    start_replica(&r1, &c, "metrics-k1", true, "60s");
    char *name = th_unique("killed");
    char *body = mf_fmt("{\"name\":\"%s\",\"unit\":\"count\",\"schedule\":\"* * * * *\","
                        "\"materialize\":{\"granularity\":\"minute\",\"lookback\":3},"
                        "\"query\":\"%s\"}",
                        name, EVERY_MINUTE_TEMPLATE);
    char *id = mf_create(t, NULL, body);
    backdate(id);
    char *needle = mf_fmt("materializing metric %s tick ", id);
    ck_assert_msg(mf_wait_log(&r1, needle, 20000), "r1 did not start a job; see %s", r1.log);
    th_sleep_ms(200);
    char *log = th_read_file(r1.log);
    char tick[32] = "";
    sscanf(strstr(log, needle) + strlen(needle), "%31[0-9TZ:.-]", tick);
    free(log);
    int64_t tick_ms = 0;
    ck_assert_msg(an_time_parse(tick, &tick_ms, NULL) == AN_OK, "tick %s", tick);
    ck_assert_int_eq(runs_of(id), 0); /* paused: nothing written yet */

    kill(r1.pid, SIGKILL); /* mid-materialization */
    th_wait(r1.pid, 5000, NULL, NULL);
    r1.pid = 0;
    start_replica(&r2, &c, "metrics-k2", false, NULL);

    char *sql = mf_fmt("SELECT count() FROM analytics.metric_runs WHERE metric_id = '%s' AND tick "
                       "= toDateTime(%lld)",
                       id, (long long)(tick_ms / 1000));
    int64_t until = th_now_ms() + 30000;
    while (th_now_ms() < until && th_ch_count(sql) < 1)
        th_sleep_ms(200);
    ck_assert_msg(th_ch_count(sql) == 1, "the killed job was not finished; see %s", r2.log);
    th_sleep_ms(1000);
    ck_assert_int_eq(th_ch_count(sql), 1);
    ck_assert_int_eq(ticks_run_twice(id), 0);
    char *who = mf_fmt("SELECT replica, attempt FROM analytics.metric_runs WHERE metric_id = '%s' "
                       "AND tick = toDateTime(%lld)",
                       id, (long long)(tick_ms / 1000));
    char *row = th_ch(who);
    char *want = mf_fmt("%s\t2\n", r2.id);
    ck_assert_str_eq(row, want);
    ck_assert(mf_log_has(&r2, "materialized metric"));
    /* the window's values are there */
    char *vsql = mf_fmt("SELECT count() FROM analytics.metric_values FINAL WHERE metric_id = '%s' "
                        "AND bucket >= toDateTime(%lld) AND bucket < toDateTime(%lld)",
                        id, (long long)(tick_ms / 1000 - 180), (long long)(tick_ms / 1000));
    ck_assert_int_eq(th_ch_count(vsql), 3);

    deprecate(t, NULL, id);
    ck_assert_int_eq(mf_stop(&r2, 20000), 0);
    free(vsql);
    free(who);
    free(row);
    free(want);
    free(sql);
    free(needle);
    free(body);
    free(name);
    free(id);
    free(t);
}
END_TEST

Suite *metrics_materialize_suite(void)
{
    Suite *s = suite_create("metrics_materialize");
    TCase *tc = tcase_create("schedules");
    tcase_add_unchecked_fixture(tc, suite_setup, suite_teardown);
    tcase_add_checked_fixture(tc, mf_connect, mf_disconnect);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_metrics_materialize_two_replicas_run_each_tick_once);
    tcase_add_test(tc, test_metrics_materialize_killed_replica_is_taken_over);
    suite_add_tcase(s, tc);
    return s;
}
