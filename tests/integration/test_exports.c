/*
 * The exports service end to end: build/bin/exports runs as real processes
 * against the stack's nats-server, redis-server and clickhouse-server (and
 * an s3rver for S3). The tests talk to it over NATS like a caller, download
 * the files with curl, and check them against ClickHouse with independent
 * readers (tests/integration/exports_check.py: Python's csv and json
 * modules, openpyxl), and the events in JetStream with nats.c.
 */
#include "common/sql.h"
#include "tests/harness.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SECRET      "exports-it-secret-0123456789abcdefghijklmn"
#define LINK_SECRET "exports-it-link-secret-0123456789abcdefghij"
#define QUERY                                                                                      \
    "SELECT event_id, event_name, occurred_at, toDate(occurred_at) AS day, "                       \
    "toUInt32(occurred_ms) AS ms, properties FROM {{events}} ORDER BY event_id"

static natsConnection *nc;
static pid_t procs[4];
static int nprocs;
static char dir[512]; /* this test's scratch dir */

/* th_spawn, plus: the child dies with the test process. A failed assertion
 * ends the test process without its teardown, and a service left running
 * would answer the next test's requests. */
static pid_t spawn(const char *path, char *const argv[], char *const env[], const char *log)
{
    pid_t parent = getpid();
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(1);
        for (char *const *e = env; e && *e; e++)
            putenv(*e);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            close(fd);
        }
        execv(path, argv);
        _exit(127);
    }
    ck_assert_int_lt(nprocs, 4);
    procs[nprocs++] = pid;
    return pid;
}

static void kill_procs(void)
{
    for (int i = 0; i < nprocs; i++)
        if (procs[i] > 0)
            th_kill(procs[i]);
    nprocs = 0;
}

static void setup(void)
{
    ck_assert(natsConnection_ConnectTo(&nc, th_env("ANALYTICS_NATS_URL")) == NATS_OK);
    char *u = th_unique("exports");
    snprintf(dir, sizeof(dir), "%s/%s", th_env("ANALYTICS_STACK_DIR"), u);
    free(u);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
}

static void teardown(void)
{
    kill_procs();
    natsConnection_Destroy(nc);
    nc = NULL;
    nats_CloseAndWait(2000);
}

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    va_start(ap, f);
    char *s;
    ck_assert(vasprintf(&s, f, ap) > 0);
    va_end(ap);
    return s;
}

/* Start an exports instance with the test's defaults plus extra "K=V"
 * (NULL-terminated). Returns its pid; its log is dir/<name>.log. */
static pid_t start_exports(const char *name, const char *const *extra)
{
    static char env[24][600];
    int n = 0;
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_JWT_SECRET=%s", SECRET);
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_HTTP_ADDR=127.0.0.1:0");
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_LOG_LEVEL=debug");
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_EXPORTS_DIR=%s/files", dir);
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_EXPORTS_LINK_SECRET=%s", LINK_SECRET);
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_EXPORTS_QUEUE=q%s", strrchr(dir, '/') + 1);
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_EXPORTS_BACKOFF=200ms");
    for (int i = 0; extra && extra[i] && n < 23; i++)
        snprintf(env[n++], sizeof(env[0]), "%s", extra[i]);
    char *envp[25];
    for (int i = 0; i < n; i++)
        envp[i] = env[i];
    envp[n] = NULL;
    char *log = fmt("%s/%s.log", dir, name);
    char *argv[] = {"exports", NULL};
    pid_t pid = spawn(th_bin("bin/exports"), argv, envp, log);
    ck_assert_msg(th_wait_log(log, "\"msg\":\"started exports", 20000), "exports did not start: %s",
                  log);
    free(log);
    return pid;
}

/* Call analytics.exports.<verb> as user of tenant; returns the parsed
 * reply (caller frees) and its "data" or "error" through the pointers. */
static cJSON *call(const char *tenant, const char *user, const char *verb, const char *body,
                   const cJSON **data, const cJSON **error)
{
    char *subject = fmt("analytics.exports.%s", verb);
    char *auth = th_bearer(SECRET, user, tenant, NULL, NULL, 3600);
    cJSON *o = th_request(nc, subject, auth, body, 15000);
    if (data)
        *data = cJSON_GetObjectItemCaseSensitive(o, "data");
    if (error)
        *error = cJSON_GetObjectItemCaseSensitive(o, "error");
    free(auth);
    free(subject);
    return o;
}

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double num_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    return cJSON_IsNumber(v) ? v->valuedouble : -1;
}

/* Create a job; returns its id (caller frees). */
static char *create(const char *tenant, const char *user, const char *query, const char *format,
                    const char *filters)
{
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "query", query);
    cJSON_AddStringToObject(b, "format", format);
    if (filters)
        cJSON_AddItemToObject(b, "filters", cJSON_Parse(filters));
    char *body = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    const cJSON *data, *error;
    cJSON *r = call(tenant, user, "create", body, &data, &error);
    ck_assert_msg(data && !error, "create: %s", body);
    ck_assert_str_eq(str_of(data, "status"), "queued");
    ck_assert_str_eq(str_of(data, "tenantId"), tenant);
    ck_assert_str_eq(str_of(data, "requestedBy"), user);
    ck_assert_str_eq(str_of(data, "format"), format);
    char *id = strdup(str_of(data, "id"));
    cJSON_Delete(r);
    free(body);
    return id;
}

/* get the job; caller frees the returned reply, *job is its data. */
static cJSON *get(const char *tenant, const char *id, const cJSON **job)
{
    char *body = fmt("{\"id\":\"%s\"}", id);
    const cJSON *err;
    cJSON *r = call(tenant, "someone", "get", body, job, &err);
    ck_assert_msg(*job && !err, "get %s failed", id);
    free(body);
    return r;
}

/* Poll until the job has one of the statuses (space-separated). */
static cJSON *wait_status(const char *tenant, const char *id, const char *statuses, int timeout_ms,
                          const cJSON **job)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        cJSON *r = get(tenant, id, job);
        const char *st = str_of(*job, "status");
        if (st && strstr(statuses, st))
            return r;
        if (th_now_ms() > deadline) {
            char *s = cJSON_PrintUnformatted(*job);
            ck_abort_msg("job %s did not reach %s in %d ms: %s", id, statuses, timeout_ms, s);
        }
        cJSON_Delete(r);
        th_sleep_ms(100);
    }
}

static long http_get(const char *url, const char *out_path)
{
    char *cmd = fmt("curl -sS -o '%s' -w '%%{http_code}' '%s'", out_path, url);
    char *res = th_run(cmd, NULL);
    long code = atol(res);
    free(res);
    free(cmd);
    return code;
}

/* Insert the tenant's sample events: values that need quoting, unicode and
 * formula-looking text. Returns how many. */
static int insert_events(const char *tenant, int n)
{
    static const char *props[] = {
        "plain",
        "comma, separated",
        "say \"hello\"",
        "two\nlines\r\nand CRLF",
        "Zoë – 東京 – 🎓",
        "=HYPERLINK(\"http://evil\",\"click\")",
        "+1 555 0100",
        "-3",
        "@SUM(A1:A9)",
        "\ttab first",
        "",
        "back\\slash",
    };
    an_buf q = AN_BUF_INIT;
    an_buf_adds(&q, "INSERT INTO analytics.events (tenant_id, event_id, event_name, occurred_at, "
                    "occurred_ms, actor_type, actor_id, actor_key_id, correlation_id, properties, "
                    "prop_keys, prop_values) VALUES ");
    size_t np = sizeof(props) / sizeof(props[0]);
    for (int i = 0; i < n; i++) {
        char id[64];
        snprintf(id, sizeof(id), "ev-%06d", i);
        an_buf_adds(&q, i ? ",(" : "(");
        an_sql_quote_str(&q, tenant);
        an_buf_adds(&q, ",");
        an_sql_quote_str(&q, id);
        an_buf_addf(&q, ",'%s',toDateTime(%d),%d,'user','a','k','',",
                    i % 3 ? "lesson.viewed" : "course.enrolled", 1704067200 + i * 61, i % 1000);
        an_sql_quote_str(&q, props[(size_t)i % np]);
        an_buf_adds(&q, ",[],[])");
    }
    free(th_ch(q.data));
    an_buf_free(&q);
    return n;
}

/* The query's rows for tenant as ClickHouse has them (JSONCompact) in a
 * file; returns its path (caller frees). sql uses `events` for the table. */
static char *expected(const char *tenant, const char *select_from_events_where)
{
    an_buf q = AN_BUF_INIT;
    an_buf_adds(&q, "SELECT event_id, event_name, occurred_at, toDate(occurred_at) AS day, "
                    "toUInt32(occurred_ms) AS ms, properties FROM analytics.events WHERE "
                    "tenant_id = ");
    an_sql_quote_str(&q, tenant);
    an_buf_addf(&q, " %s ORDER BY event_id FORMAT JSONCompact", select_from_events_where);
    char *body = th_ch(q.data);
    an_buf_free(&q);
    char *path = fmt("%s/expected-%ld.json", dir, random());
    FILE *f = fopen(path, "w");
    fputs(body, f);
    fclose(f);
    free(body);
    return path;
}

static const char *check_script(void)
{
    static char path[1024];
    const char *b = getenv("ANALYTICS_BUILD_DIR");
    if (b) {
        snprintf(path, sizeof(path), "%s/../tests/integration/exports_check.py", b);
        if (access(path, R_OK) == 0)
            return path;
    }
    return "tests/integration/exports_check.py";
}

/* Run the independent check of file against the expected rows. */
static void check_file(const char *format, const char *file, const char *exp, int sheet_rows)
{
    char *cmd = fmt("/usr/bin/python3 '%s' %s '%s' '%s' %d 2>&1", check_script(), format, file, exp,
                    sheet_rows);
    int rc = -1;
    char *out = th_run(cmd, &rc);
    ck_assert_msg(rc == 0, "%s check of %s: %s", format, file, out);
    free(out);
    free(cmd);
}

/* How many events on subject carry data.jobId == id in the events stream. */
static int count_events(const char *subject, const char *id)
{
    jsCtx *js = NULL;
    ck_assert(natsConnection_JetStream(&js, nc, NULL) == NATS_OK);
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "ANALYTICS_EVENTS";
    so.Config.DeliverPolicy = js_DeliverAll;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    ck_assert(js_SubscribeSync(&sub, js, subject, NULL, &so, &jerr) == NATS_OK);
    int n = 0;
    for (;;) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, sub, 500) != NATS_OK)
            break;
        cJSON *o = cJSON_ParseWithLength(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(o, "data");
        const char *jid = str_of(d, "jobId");
        if (jid && strcmp(jid, id) == 0)
            n++;
        cJSON_Delete(o);
        natsMsg_Destroy(m);
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    return n;
}

/* ------------------------------------------------------------------ tests */

START_TEST(test_each_format_matches_clickhouse_with_quoting)
{
    char *tenant = th_unique("t_fmt");
    insert_events(tenant, 240);
    start_exports("a", (const char *[]){"ANALYTICS_EXPORTS_XLSX_ROWS_PER_SHEET=100", NULL});
    const char *formats[] = {"csv", "json", "xlsx"};
    char *ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = create(tenant, "ann", QUERY, formats[i], NULL);
    char *exp = expected(tenant, "");
    for (int i = 0; i < 3; i++) {
        const cJSON *job;
        cJSON *r = wait_status(tenant, ids[i], "completed failed", 30000, &job);
        ck_assert_str_eq(str_of(job, "status"), "completed");
        const cJSON *prog = cJSON_GetObjectItemCaseSensitive(job, "progress");
        ck_assert_int_eq((int)num_of(prog, "rows"), 240);
        ck_assert_ptr_nonnull(str_of(job, "completedAt"));
        const char *url = str_of(job, "outputUrl");
        ck_assert_ptr_nonnull(url);
        char *file = fmt("%s/download.%s", dir, formats[i]);
        ck_assert_int_eq(http_get(url, file), 200);
        struct stat st;
        ck_assert_int_eq(stat(file, &st), 0);
        ck_assert_int_eq((long)st.st_size, (long)num_of(prog, "bytes"));
        check_file(formats[i], file, exp, 100);
        ck_assert_int_eq(count_events("analytics.export.completed.v1", ids[i]), 1);
        free(file);
        cJSON_Delete(r);
        free(ids[i]);
    }
    free(exp);
    free(tenant);
}
END_TEST

START_TEST(test_template_filters_and_time_range_narrow_the_rows)
{
    char *tenant = th_unique("t_filt");
    insert_events(tenant, 60); /* one a minute from 2024-01-01 00:00:00 UTC */
    start_exports("a", NULL);
    const char *tpl = "SELECT event_id, event_name, occurred_at, toDate(occurred_at) AS day, "
                      "toUInt32(occurred_ms) AS ms, properties FROM {{events}} "
                      "WHERE {{time_range}} AND {{filters}} ORDER BY event_id";
    cJSON *b = cJSON_CreateObject();
    cJSON_AddStringToObject(b, "query", tpl);
    cJSON_AddStringToObject(b, "format", "csv");
    cJSON_AddStringToObject(b, "from", "2024-01-01T00:10:00Z");
    cJSON_AddStringToObject(b, "to", "2024-01-01T00:40:00Z");
    cJSON_AddItemToObject(
        b, "filters",
        cJSON_Parse("[{\"field\":\"event_name\",\"op\":\"eq\",\"value\":\"course.enrolled\"}]"));
    char *body = cJSON_PrintUnformatted(b);
    cJSON_Delete(b);
    const cJSON *data, *error;
    cJSON *r = call(tenant, "ann", "create", body, &data, &error);
    ck_assert_msg(data && !error, "create: %s", body);
    char *id = strdup(str_of(data, "id"));
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(data, "filters")), 1);
    ck_assert_str_eq(str_of(cJSON_GetObjectItemCaseSensitive(data, "parameters"), "from"),
                     "2024-01-01T00:10:00Z");
    cJSON_Delete(r);
    const cJSON *job;
    r = wait_status(tenant, id, "completed failed", 30000, &job);
    ck_assert_str_eq(str_of(job, "status"), "completed");
    char *file = fmt("%s/filtered.csv", dir);
    ck_assert_int_eq(http_get(str_of(job, "outputUrl"), file), 200);
    char *exp = expected(tenant, "AND event_name = 'course.enrolled' AND occurred_at >= "
                                 "toDateTime('2024-01-01 00:10:00') AND occurred_at < "
                                 "toDateTime('2024-01-01 00:40:00')");
    check_file("csv", file, exp, 0);
    /* 00:10 .. 00:39 holds minutes 10..39 of 61-second steps; every third is enrolled */
    ck_assert_int_gt((int)num_of(cJSON_GetObjectItemCaseSensitive(job, "progress"), "rows"), 5);
    cJSON_Delete(r);
    /* a filter field that is not a column or property path never reaches SQL */
    cJSON *bad = call(tenant, "ann", "create",
                      "{\"query\":\"SELECT event_id FROM {{events}} WHERE {{filters}}\","
                      "\"format\":\"csv\",\"filters\":[{\"field\":\"x) OR (1\",\"op\":\"eq\","
                      "\"value\":1}]}",
                      &data, &error);
    ck_assert_str_eq(str_of(error, "code"), "invalid_argument");
    cJSON_Delete(bad);
    /* filters for a template without {{filters}} are refused, not ignored */
    bad = call(tenant, "ann", "create",
               "{\"query\":\"SELECT event_id FROM {{events}}\",\"format\":\"csv\","
               "\"filters\":[{\"field\":\"event_name\",\"op\":\"eq\",\"value\":\"x\"}]}",
               &data, &error);
    ck_assert_str_eq(str_of(error, "code"), "invalid_argument");
    cJSON_Delete(bad);
    free(exp);
    free(file);
    free(body);
    free(id);
    free(tenant);
}
END_TEST

START_TEST(test_signed_link_refused_when_altered_or_expired)
{
    char *tenant = th_unique("t_link");
    insert_events(tenant, 10);
    start_exports("a", (const char *[]){"ANALYTICS_EXPORTS_URL_TTL=3s", NULL});
    char *id = create(tenant, "ann", QUERY, "csv", NULL);
    const cJSON *job;
    cJSON *r = wait_status(tenant, id, "completed failed", 30000, &job);
    char *url = strdup(str_of(job, "outputUrl"));
    cJSON_Delete(r);
    char *file = fmt("%s/link.csv", dir);
    ck_assert_int_eq(http_get(url, file), 200);
    /* altered signature */
    char *bad = strdup(url);
    char *sig = strstr(bad, "sig=") + 4;
    sig[0] = sig[0] == 'A' ? 'B' : 'A';
    ck_assert_int_eq(http_get(bad, file), 403);
    /* a later expiry with the same signature */
    char *later = strdup(url);
    char *exp = strstr(later, "exp=") + 4;
    exp[0] = (char)(exp[0] + 1);
    ck_assert_int_eq(http_get(later, file), 403);
    /* the same signature on another file */
    char *other = strdup(url);
    char *k = strstr(other, "/downloads/") + strlen("/downloads/");
    k[20] = k[20] == 'A' ? 'B' : 'A';
    ck_assert_int_eq(http_get(other, file), 403);
    /* no signature at all */
    char *bare = strdup(url);
    *strchr(bare, '?') = '\0';
    ck_assert_int_eq(http_get(bare, file), 403);
    /* expired: a fresh get gives a fresh link */
    th_sleep_ms(4000);
    ck_assert_int_eq(http_get(url, file), 410);
    r = get(tenant, id, &job);
    ck_assert_int_eq(http_get(str_of(job, "outputUrl"), file), 200);
    cJSON_Delete(r);
    free(bare);
    free(other);
    free(later);
    free(bad);
    free(file);
    free(url);
    free(id);
    free(tenant);
}
END_TEST

START_TEST(test_cancel_running_and_queued_jobs)
{
    char *tenant = th_unique("t_cancel");
    insert_events(tenant, 400);
    /* one worker, throttled: the first job runs for ~8 s, the second waits */
    pid_t pid = start_exports("a", (const char *[]){"ANALYTICS_EXPORTS_WORKERS=1",
                                                    "ANALYTICS_EXPORTS_ROWS_PER_SECOND=50", NULL});
    (void)pid;
    char *running = create(tenant, "ann", QUERY, "csv", NULL);
    char *queued = create(tenant, "ann", QUERY, "json", NULL);
    const cJSON *job;
    cJSON *r = wait_status(tenant, running, "running", 15000, &job);
    cJSON_Delete(r);
    th_sleep_ms(500);
    const cJSON *data, *error;
    char *body = fmt("{\"id\":\"%s\"}", queued);
    r = call(tenant, "ann", "cancel", body, &data, &error);
    ck_assert_msg(data && !error, "cancel queued");
    ck_assert_str_eq(str_of(data, "status"), "cancelled");
    cJSON_Delete(r);
    free(body);
    body = fmt("{\"id\":\"%s\"}", running);
    r = call(tenant, "ann", "cancel", body, &data, &error);
    ck_assert_msg(data && !error, "cancel running");
    ck_assert_str_eq(str_of(data, "status"), "cancelled");
    ck_assert_ptr_nonnull(str_of(data, "completedAt"));
    cJSON_Delete(r);
    /* a second cancel: the state forbids it */
    r = call(tenant, "ann", "cancel", body, &data, &error);
    ck_assert_str_eq(str_of(error, "code"), "failed_precondition");
    cJSON_Delete(r);
    free(body);
    /* the worker stops: no file, no completed event; the queued job never runs */
    char *log = fmt("%s/a.log", dir);
    char *needle = fmt("export %s cancelled", running);
    ck_assert_msg(th_wait_log(log, needle, 10000), "worker did not stop %s", running);
    th_sleep_ms(1500);
    for (int i = 0; i < 2; i++) {
        const char *id = i ? queued : running;
        r = get(tenant, id, &job);
        ck_assert_str_eq(str_of(job, "status"), "cancelled");
        ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(job, "outputUrl")));
        cJSON_Delete(r);
        char *f = fmt("%s/files/%s.%s", dir, id, i ? "ndjson" : "csv");
        ck_assert_int_ne(access(f, F_OK), 0);
        free(f);
        ck_assert_int_eq(count_events("analytics.export.completed.v1", id), 0);
    }
    char *started = fmt("export %s started", queued);
    char *s = th_read_file(log);
    ck_assert_ptr_null(strstr(s, started));
    free(s);
    free(started);
    free(needle);
    free(log);
    free(running);
    free(queued);
    free(tenant);
}
END_TEST

START_TEST(test_tenant_isolation_of_jobs_and_queries)
{
    char *ta = th_unique("t_iso_a");
    char *tb = th_unique("t_iso_b");
    insert_events(ta, 30);
    insert_events(tb, 50);
    start_exports("a", NULL);
    /* the query of A sees only A's rows, however it is written */
    char *id = create(ta, "ann",
                      "SELECT count() AS n, uniqExact(tenant_id) AS tenants, "
                      "any(tenant_id) AS t FROM {{events}}",
                      "json", NULL);
    const cJSON *job;
    cJSON *r = wait_status(ta, id, "completed failed", 30000, &job);
    char *file = fmt("%s/iso.ndjson", dir);
    ck_assert_int_eq(http_get(str_of(job, "outputUrl"), file), 200);
    cJSON_Delete(r);
    char *body = th_read_file(file);
    char *want = fmt("{\"n\":30,\"tenants\":1,\"t\":\"%s\"}\n", ta);
    ck_assert_str_eq(body, want);
    free(want);
    free(body);
    /* B cannot see A's job */
    const cJSON *data, *error;
    char *q = fmt("{\"id\":\"%s\"}", id);
    r = call(tb, "bob", "get", q, &data, &error);
    ck_assert_str_eq(str_of(error, "code"), "not_found");
    cJSON_Delete(r);
    r = call(tb, "bob", "cancel", q, &data, &error);
    ck_assert_str_eq(str_of(error, "code"), "not_found");
    cJSON_Delete(r);
    r = call(tb, "bob", "list", "{}", &data, &error);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(data, "items")), 0);
    cJSON_Delete(r);
    /* B cannot act as A */
    char *as_a =
        fmt("{\"tenantId\":\"%s\",\"query\":\"SELECT 1 FROM {{events}}\",\"format\":\"csv\"}", ta);
    r = call(tb, "bob", "create", as_a, &data, &error);
    ck_assert_str_eq(str_of(error, "code"), "permission_denied");
    cJSON_Delete(r);
    char *get_as_a = fmt("{\"tenantId\":\"%s\",\"id\":\"%s\"}", ta, id);
    r = call(tb, "bob", "get", get_as_a, &data, &error);
    ck_assert_str_eq(str_of(error, "code"), "permission_denied");
    cJSON_Delete(r);
    /* templates that name the physical table or another database are refused */
    const char *evil[] = {
        "SELECT * FROM analytics.events",
        "SELECT * FROM {{events}} WHERE tenant_id = 'x' UNION ALL SELECT * FROM "
        "analytics_audit.events",
        "SELECT * FROM system.tables",
        "SELECT * FROM {{events}} SETTINGS max_execution_time = 1000",
    };
    for (size_t i = 0; i < sizeof(evil) / sizeof(evil[0]); i++) {
        cJSON *b = cJSON_CreateObject();
        cJSON_AddStringToObject(b, "query", evil[i]);
        cJSON_AddStringToObject(b, "format", "csv");
        char *s = cJSON_PrintUnformatted(b);
        r = call(ta, "ann", "create", s, &data, &error);
        ck_assert_msg(error, "accepted: %s", evil[i]);
        ck_assert_str_eq(str_of(error, "code"), "invalid_argument");
        cJSON_Delete(r);
        free(s);
        cJSON_Delete(b);
    }
    free(get_as_a);
    free(as_a);
    free(q);
    free(file);
    free(id);
    free(ta);
    free(tb);
}
END_TEST

START_TEST(test_list_by_requester_and_status_paged)
{
    char *tenant = th_unique("t_list");
    insert_events(tenant, 5);
    start_exports("a", (const char *[]){"ANALYTICS_EXPORTS_MAX_ACTIVE_PER_TENANT=10", NULL});
    char *ids[5];
    for (int i = 0; i < 5; i++)
        ids[i] = create(tenant, i < 3 ? "ann" : "bob", QUERY, "csv", NULL);
    for (int i = 0; i < 5; i++) {
        const cJSON *job;
        cJSON_Delete(wait_status(tenant, ids[i], "completed", 30000, &job));
    }
    /* ann's completed jobs, two per page, newest first */
    const cJSON *data, *error;
    cJSON *r =
        call(tenant, "x", "list",
             "{\"requestedBy\":\"ann\",\"status\":\"completed\",\"pageSize\":2}", &data, &error);
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(data, "items");
    ck_assert_int_eq(cJSON_GetArraySize(items), 2);
    ck_assert_str_eq(str_of(cJSON_GetArrayItem(items, 0), "id"), ids[2]);
    ck_assert_str_eq(str_of(cJSON_GetArrayItem(items, 1), "id"), ids[1]);
    char *next = fmt("{\"requestedBy\":\"ann\",\"status\":\"completed\",\"pageSize\":2,"
                     "\"pageToken\":\"%s\"}",
                     str_of(data, "nextPageToken"));
    cJSON_Delete(r);
    r = call(tenant, "x", "list", next, &data, &error);
    items = cJSON_GetObjectItemCaseSensitive(data, "items");
    ck_assert_int_eq(cJSON_GetArraySize(items), 1);
    ck_assert_str_eq(str_of(cJSON_GetArrayItem(items, 0), "id"), ids[0]);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(data, "nextPageToken")));
    cJSON_Delete(r);
    r = call(tenant, "x", "list", "{\"status\":\"queued\"}", &data, &error);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(data, "items")), 0);
    cJSON_Delete(r);
    r = call(tenant, "x", "list", "{\"requestedBy\":\"bob\"}", &data, &error);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(data, "items")), 2);
    cJSON_Delete(r);
    r = call(tenant, "x", "list", "{\"status\":\"done\"}", &data, &error);
    ck_assert_str_eq(str_of(error, "code"), "invalid_argument");
    cJSON_Delete(r);
    free(next);
    for (int i = 0; i < 5; i++)
        free(ids[i]);
    free(tenant);
}
END_TEST

START_TEST(test_query_error_fails_the_job_with_clickhouse_message)
{
    char *tenant = th_unique("t_qerr");
    insert_events(tenant, 3);
    start_exports("a", NULL);
    char *id = create(tenant, "ann", "SELECT no_such_column FROM {{events}}", "csv", NULL);
    const cJSON *job;
    cJSON *r = wait_status(tenant, id, "completed failed", 30000, &job);
    ck_assert_str_eq(str_of(job, "status"), "failed");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(job, "error");
    ck_assert_str_eq(str_of(e, "code"), "invalid_argument");
    ck_assert_msg(strstr(str_of(e, "message"), "no_such_column"), "%s", str_of(e, "message"));
    ck_assert_int_eq((int)num_of(job, "attempts"), 1); /* not retried: it cannot succeed */
    cJSON_Delete(r);
    ck_assert_int_eq(count_events("analytics.export.failed.v1", id), 1);
    ck_assert_int_eq(count_events("analytics.export.completed.v1", id), 0);
    free(id);
    free(tenant);
}
END_TEST

/* A failure inside the service (here the spool directory replaced by a
 * file, so no spool file can be made) fails the job without showing the
 * tenant the service's paths: the record and the event say "internal
 * error" with the ids to find it in the log, which has the detail. */
START_TEST(test_internal_failure_keeps_its_detail_in_the_log)
{
    char *tenant = th_unique("t_ierr");
    insert_events(tenant, 3);
    char *spool = fmt("%s/spool", dir);
    char *setting = fmt("ANALYTICS_EXPORTS_SPOOL_DIR=%s", spool);
    start_exports("a", (const char *[]){setting, "ANALYTICS_EXPORTS_MAX_ATTEMPTS=1", NULL});
    ck_assert_int_eq(rmdir(spool), 0);
    FILE *f = fopen(spool, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);
    char *id = create(tenant, "ann", "SELECT event_id FROM {{events}}", "csv", NULL);
    const cJSON *job;
    cJSON *r = wait_status(tenant, id, "completed failed", 30000, &job);
    ck_assert_str_eq(str_of(job, "status"), "failed");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(job, "error");
    ck_assert_str_eq(str_of(e, "code"), "internal");
    const char *msg = str_of(e, "message");
    ck_assert_msg(strstr(msg, "internal error") && strstr(msg, id) && !strstr(msg, spool), "%s",
                  msg);
    cJSON_Delete(r);
    char *log = fmt("%s/a.log", dir);
    char *text = th_read_file(log);
    ck_assert_msg(strstr(text, spool) != NULL, "the detail is not in the log %s", log);
    free(text);
    free(log);
    free(id);
    free(setting);
    free(spool);
    free(tenant);
}
END_TEST

/* Local files are deleted once past ANALYTICS_EXPORTS_RETENTION (and an
 * hour's slack): the disk does not fill with expired exports. A fresh file
 * stays, and so does what is not an export's (a subdirectory). */
START_TEST(test_files_past_the_retention_are_deleted)
{
    char *tenant = th_unique("t_sweep");
    insert_events(tenant, 3);
    start_exports("a", (const char *[]){"ANALYTICS_EXPORTS_RETENTION=1h",
                                        "ANALYTICS_EXPORTS_SWEEP_INTERVAL=200ms", NULL});
    char *ids[2];
    char *paths[2];
    for (int i = 0; i < 2; i++) {
        ids[i] = create(tenant, "ann", "SELECT event_id FROM {{events}}", "csv", NULL);
        const cJSON *job;
        cJSON *r = wait_status(tenant, ids[i], "completed failed", 30000, &job);
        ck_assert_str_eq(str_of(job, "status"), "completed");
        cJSON_Delete(r);
        paths[i] = fmt("%s/files/%s.csv", dir, ids[i]);
        ck_assert_msg(access(paths[i], F_OK) == 0, "no %s", paths[i]);
    }
    char *sub = fmt("%s/files/keep.d", dir);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    /* the first was written 2 h 1 min ago, past 1 h and the slack */
    struct timespec old[2] = {{time(NULL) - 7260, 0}, {time(NULL) - 7260, 0}};
    ck_assert_int_eq(utimensat(AT_FDCWD, paths[0], old, 0), 0);
    ck_assert_int_eq(utimensat(AT_FDCWD, sub, old, 0), 0);
    for (int i = 0; i < 50 && access(paths[0], F_OK) == 0; i++)
        usleep(100 * 1000);
    ck_assert_msg(access(paths[0], F_OK) != 0, "%s was not deleted", paths[0]);
    ck_assert_msg(access(paths[1], F_OK) == 0, "%s, fresh, was deleted", paths[1]);
    ck_assert_int_eq(access(sub, F_OK), 0);
    for (int i = 0; i < 2; i++) {
        free(ids[i]);
        free(paths[i]);
    }
    free(sub);
    free(tenant);
}
END_TEST

/* A query whose file would pass ANALYTICS_EXPORTS_MAX_BYTES fails
 * resource_exhausted (not retried) and leaves no file: one tenant's export
 * cannot fill the disk every tenant's files share. */
START_TEST(test_a_file_larger_than_the_byte_limit_fails_the_job)
{
    char *tenant = th_unique("t_big");
    insert_events(tenant, 200);
    start_exports("a", (const char *[]){"ANALYTICS_EXPORTS_MAX_BYTES=2KiB", NULL});
    char *id = create(tenant, "ann", "SELECT event_id, event_name FROM {{events}}", "csv", NULL);
    const cJSON *job;
    cJSON *r = wait_status(tenant, id, "completed failed", 30000, &job);
    ck_assert_str_eq(str_of(job, "status"), "failed");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(job, "error");
    ck_assert_str_eq(str_of(e, "code"), "resource_exhausted");
    ck_assert_msg(strstr(str_of(e, "message"), "ANALYTICS_EXPORTS_MAX_BYTES"), "%s",
                  str_of(e, "message"));
    ck_assert_int_eq((int)num_of(job, "attempts"), 1);
    cJSON_Delete(r);
    char *path = fmt("%s/files/%s.csv", dir, id);
    ck_assert_msg(access(path, F_OK) != 0, "%s exists", path);
    /* the same query under the limit completes */
    char *small = create(tenant, "ann", "SELECT event_id FROM {{events}} LIMIT 10", "csv", NULL);
    r = wait_status(tenant, small, "completed failed", 30000, &job);
    ck_assert_str_eq(str_of(job, "status"), "completed");
    cJSON_Delete(r);
    free(small);
    free(path);
    free(id);
    free(tenant);
}
END_TEST

START_TEST(test_per_tenant_limit_on_active_jobs)
{
    char *tenant = th_unique("t_limit");
    start_exports("a", (const char *[]){"ANALYTICS_EXPORTS_WORKERS=0",
                                        "ANALYTICS_EXPORTS_MAX_ACTIVE_PER_TENANT=2", NULL});
    char *a = create(tenant, "ann", QUERY, "csv", NULL);
    char *b = create(tenant, "ann", QUERY, "csv", NULL);
    const cJSON *data, *error;
    const char *body = "{\"query\":\"SELECT 1 FROM {{events}}\",\"format\":\"csv\"}";
    cJSON *r = call(tenant, "ann", "create", body, &data, &error);
    ck_assert_str_eq(str_of(error, "code"), "resource_exhausted");
    cJSON_Delete(r);
    /* another tenant is not affected */
    char *other = th_unique("t_limit_other");
    free(create(other, "bob", QUERY, "csv", NULL));
    /* cancelling one frees a slot */
    char *c = fmt("{\"id\":\"%s\"}", a);
    cJSON_Delete(call(tenant, "ann", "cancel", c, &data, &error));
    free(create(tenant, "ann", QUERY, "csv", NULL));
    /* bad requests say which field */
    r = call(tenant, "ann", "create", "{\"query\":\"SELECT 1 FROM {{events}}\",\"format\":\"pdf\"}",
             &data, &error);
    ck_assert_str_eq(str_of(cJSON_GetObjectItemCaseSensitive(error, "details"), "field"), "format");
    cJSON_Delete(r);
    free(c);
    free(other);
    free(a);
    free(b);
    free(tenant);
}
END_TEST

START_TEST(test_worker_killed_mid_job_is_completed_once)
{
    char *tenant = th_unique("t_kill");
    insert_events(tenant, 1500);
    const char *cfg[] = {"ANALYTICS_EXPORTS_WORKERS=1", "ANALYTICS_EXPORTS_VISIBILITY=3s",
                         "ANALYTICS_EXPORTS_ROWS_PER_SECOND=500", NULL};
    pid_t a = start_exports("a", cfg);
    char *id = create(tenant, "ann", QUERY, "csv", NULL);
    char *log = fmt("%s/a.log", dir);
    char *started = fmt("export %s started", id);
    ck_assert(th_wait_log(log, started, 15000));
    th_sleep_ms(1200); /* about 600 of 1500 rows written */
    kill(a, SIGKILL);
    th_wait(a, 5000, NULL, NULL);
    procs[0] = 0;
    an_buf q = AN_BUF_INIT;
    an_buf_adds(&q, "SELECT status FROM analytics.export_jobs FINAL WHERE id = ");
    an_sql_quote_str(&q, id);
    char *st = th_ch(q.data);
    ck_assert_str_eq(st, "running\n");
    free(st);
    an_buf_free(&q);
    const cJSON *job;
    cJSON *r;
    /* another replica reclaims it after the visibility timeout */
    start_exports("b", cfg);
    r = wait_status(tenant, id, "completed failed", 40000, &job);
    ck_assert_str_eq(str_of(job, "status"), "completed");
    ck_assert_int_eq((int)num_of(job, "attempts"), 2);
    ck_assert_int_eq((int)num_of(cJSON_GetObjectItemCaseSensitive(job, "progress"), "rows"), 1500);
    char *file = fmt("%s/killed.csv", dir);
    ck_assert_int_eq(http_get(str_of(job, "outputUrl"), file), 200);
    cJSON_Delete(r);
    char *exp = expected(tenant, "");
    check_file("csv", file, exp, 0);
    ck_assert_int_eq(count_events("analytics.export.completed.v1", id), 1);
    char *blog = fmt("%s/b.log", dir);
    char *s = th_read_file(blog);
    ck_assert_msg(strstr(s, "delivery 2"), "b did not reclaim the entry: %s", blog);
    free(s);
    free(blog);
    free(exp);
    free(file);
    free(started);
    free(log);
    free(id);
    free(tenant);
}
END_TEST

/* ------------------------------------------------------------------- S3 */

static const char *s3rver_bin(void)
{
    static char path[1024];
    const char *d = getenv("ANALYTICS_S3RVER_DIR");
    snprintf(path, sizeof(path), "%s/node_modules/.bin/s3rver",
             d && *d ? d : "/var/cache/analytics/s3rver");
    return path;
}

START_TEST(test_s3_upload_and_presigned_url)
{
    ck_assert_msg(access(s3rver_bin(), X_OK) == 0,
                  "%s missing: deploy/local/stack.sh install puts it there", s3rver_bin());
    char *port_s = th_run("python3 -c 'import socket; s=socket.socket(); "
                          "s.bind((\"127.0.0.1\",0)); print(s.getsockname()[1])'",
                          NULL);
    int port = atoi(port_s);
    free(port_s);
    char *data = fmt("%s/s3data", dir);
    mkdir(data, 0755);
    char *p = fmt("%d", port);
    char *argv[] = {"s3rver",     "-d", data, "-a", "127.0.0.1", "-p", p, "--configure-bucket",
                    "exports-it", NULL};
    char *s3log = fmt("%s/s3rver.log", dir);
    spawn(s3rver_bin(), argv, NULL, s3log);
    char *ping = fmt("curl -s -o /dev/null http://127.0.0.1:%d/", port);
    ck_assert_msg(th_eventually(ping, 20000) == 0, "s3rver did not start: %s", s3log);

    char *tenant = th_unique("t_s3");
    insert_events(tenant, 120);
    char *ep = fmt("ANALYTICS_EXPORTS_S3_ENDPOINT=http://127.0.0.1:%d", port);
    start_exports("a", (const char *[]){"ANALYTICS_EXPORTS_STORAGE=s3", ep,
                                        "ANALYTICS_EXPORTS_S3_BUCKET=exports-it",
                                        "ANALYTICS_EXPORTS_S3_ACCESS_KEY_ID=S3RVER",
                                        "ANALYTICS_EXPORTS_S3_SECRET_ACCESS_KEY=S3RVER",
                                        "ANALYTICS_EXPORTS_URL_TTL=10m", NULL});
    char *id = create(tenant, "ann", QUERY, "csv", NULL);
    const cJSON *job;
    cJSON *r = wait_status(tenant, id, "completed failed", 30000, &job);
    ck_assert_msg(strcmp(str_of(job, "status"), "completed") == 0, "%s",
                  cJSON_PrintUnformatted(job));
    const char *url = str_of(job, "outputUrl");
    char *prefix = fmt("http://127.0.0.1:%d/exports-it/exports/%s.csv?X-Amz-Algorithm=", port, id);
    ck_assert_msg(strncmp(url, prefix, strlen(prefix)) == 0, "%s", url);
    ck_assert_ptr_nonnull(strstr(url, "X-Amz-Expires=600&"));
    char *file = fmt("%s/s3.csv", dir);
    ck_assert_int_eq(http_get(url, file), 200);
    char *exp = expected(tenant, "");
    check_file("csv", file, exp, 0);
    /* s3rver 3.7 parses V4 signatures without verifying them: the
     * signature is recomputed independently (Python's hmac), and the store
     * refuses a URL with an unknown key or one past its expiry. */
    char *cmd = fmt("/usr/bin/python3 '%s' presign '%s' S3RVER 2>&1", check_script(), url);
    int rc = -1;
    char *out = th_run(cmd, &rc);
    ck_assert_msg(rc == 0, "presigned URL: %s", out);
    free(out);
    free(cmd);
    char *bad = strdup(url);
    char *cred = strstr(bad, "X-Amz-Credential=") + 17;
    cred[0] = 'X';
    ck_assert_int_eq(http_get(bad, file), 403);
    free(bad);
    bad = strdup(url);
    char *year = strstr(bad, "X-Amz-Date=") + 11;
    year[3] = (char)(year[3] - 1); /* a year earlier: expired */
    ck_assert_int_eq(http_get(bad, file), 403);
    ck_assert_int_eq(count_events("analytics.export.completed.v1", id), 1);
    cJSON_Delete(r);
    free(bad);
    free(exp);
    free(file);
    free(prefix);
    free(id);
    free(ep);
    free(tenant);
    free(ping);
    free(s3log);
    free(p);
    free(data);
}
END_TEST

Suite *exports_suite(void)
{
    Suite *s = suite_create("exports");
    TCase *tc = tcase_create("exports");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_each_format_matches_clickhouse_with_quoting);
    tcase_add_test(tc, test_template_filters_and_time_range_narrow_the_rows);
    tcase_add_test(tc, test_signed_link_refused_when_altered_or_expired);
    tcase_add_test(tc, test_cancel_running_and_queued_jobs);
    tcase_add_test(tc, test_tenant_isolation_of_jobs_and_queries);
    tcase_add_test(tc, test_list_by_requester_and_status_paged);
    tcase_add_test(tc, test_query_error_fails_the_job_with_clickhouse_message);
    tcase_add_test(tc, test_internal_failure_keeps_its_detail_in_the_log);
    tcase_add_test(tc, test_files_past_the_retention_are_deleted);
    tcase_add_test(tc, test_a_file_larger_than_the_byte_limit_fails_the_job);
    tcase_add_test(tc, test_per_tenant_limit_on_active_jobs);
    tcase_add_test(tc, test_worker_killed_mid_job_is_completed_once);
    tcase_add_test(tc, test_s3_upload_and_presigned_url);
    suite_add_tcase(s, tc);
    return s;
}
