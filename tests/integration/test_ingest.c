/*
 * ingest end to end: build/bin/ingest runs as real processes against the
 * stack's nats-server and clickhouse-server. The tests publish with plain
 * nats.c JetStream calls (or the ingest_load helper) and check what a user
 * of the tables would see, through curl as the ClickHouse admin, reader and
 * audit users - never ingest's own view of itself, except its /metrics when
 * a test is about what the metrics say.
 *
 * Every test has its own stream, consumer, subjects and tenants, so tests do
 * not see each other's events; the tables are shared.
 *
 * Suites: ingest (columns, PII, hashing, dead letters, replicas, metrics)
 * and ingest_recovery (ClickHouse stopped and restarted, crashes between
 * insert and ack, kill -9 mid-stream).
 */
#include "common/crypto.h"
#include "common/timeutil.h"
#include "ingest/pii.h"
#include "tests/harness.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define HMAC_KEY  "ingest-test-hmac-key-0123456789abcdef"
#define HMAC_KEY2 "a-rotated-ingest-test-key-987654321"

/* ------------------------------------------------------------ harness bits */

static natsConnection *nc;
static jsCtx *js;

typedef struct proc {
    pid_t pid;
    char log[512];
    int port;
} proc;

#define MAX_PROCS 4
static proc procs[MAX_PROCS];
static int nprocs;

/* Per test: names of its own */
static char *stream, *consumer, *prefix, *tenant;

static void recover_stack(void);

static void setup(void)
{
    recover_stack(); /* what an earlier failed test may have left behind */
    natsStatus s = natsConnection_ConnectTo(&nc, th_env("ANALYTICS_NATS_URL"));
    ck_assert_msg(s == NATS_OK, "connect: %s", natsStatus_GetText(s));
    ck_assert(natsConnection_JetStream(&js, nc, NULL) == NATS_OK);
    stream = th_unique("TI");
    consumer = th_unique("ci");
    prefix = th_unique("ti");
    tenant = th_unique("tenant");
}

static void teardown(void)
{
    for (int i = 0; i < nprocs; i++)
        if (procs[i].pid > 0)
            th_kill(procs[i].pid);
    nprocs = 0;
    js_DeleteStream(js, stream, NULL, NULL);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_CloseAndWait(2000);
    free(stream);
    free(consumer);
    free(prefix);
    free(tenant);
}

/* The pids this process spawned, for the runner's clean-up after a failed
 * test (a failing check ends the test's process before its teardown). */
static void remember_pid(pid_t pid)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/ingest-test.pids", th_env("ANALYTICS_STACK_DIR"));
    FILE *f = fopen(path, "a");
    if (f) {
        fprintf(f, "%d\n", (int)pid);
        fclose(f);
    }
}

static bool log_has(const proc *p, const char *needle)
{
    return th_log_has(p->log, needle);
}

/* Start ingest on this test's stream/consumer/subjects with extra "K=V"
 * settings (NULL-terminated, may be NULL); wait for "ingest ready". */
static proc *start_ingest(const char *const *extra)
{
    ck_assert_int_lt(nprocs, MAX_PROCS);
    proc *p = &procs[nprocs++];
    memset(p, 0, sizeof(*p));
    snprintf(p->log, sizeof(p->log), "%s/%s-%d.log", th_env("ANALYTICS_STACK_DIR"), prefix, nprocs);
    static char env[24][1024];
    int n = 0;
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_INGEST_STREAM=%s", stream);
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_INGEST_CONSUMER=%s", consumer);
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_INGEST_SUBJECTS=%s.>", prefix);
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_INGEST_HMAC_KEY=%s", HMAC_KEY);
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_INGEST_HMAC_KEY_ID=k1");
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_INGEST_BATCH_AGE=200ms");
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_HTTP_ADDR=127.0.0.1:0");
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_LOG_LEVEL=info");
    for (int i = 0; extra && extra[i] && n < 23; i++)
        snprintf(env[n++], sizeof(env[0]), "%s", extra[i]);
    char *envp[24];
    for (int i = 0; i < n; i++)
        envp[i] = env[i];
    envp[n] = NULL;
    char *argv[] = {"ingest", NULL};
    p->pid = th_spawn(th_bin("bin/ingest"), argv, envp, p->log);
    remember_pid(p->pid);
    th_wait_log(p->log, "(port ", 30000);
    char *s = th_read_file(p->log);
    ck_assert_msg(strstr(s, "ingest ready") != NULL, "ingest did not start; see %s:\n%s", p->log,
                  s);
    free(s);
    p->port = th_log_port(p->log);
    ck_assert_int_gt(p->port, 0);
    return p;
}

/* SIGTERM p, return its exit status (as waitpid) or -1 on timeout. */
static int stop_ingest(proc *p, int timeout_ms)
{
    kill(p->pid, SIGTERM);
    int st = 0;
    if (th_wait(p->pid, timeout_ms, &st, NULL) != 0)
        return -1;
    p->pid = 0;
    return st;
}

/* The value of one series on p's /metrics (exact series text), -1 if absent. */
static double metric(const proc *p, const char *series)
{
    return th_metric(p->port, series);
}

static void iso_ago(int64_t ms_ago, char out[AN_TIME_ISO_LEN])
{
    ck_assert_int_eq(an_time_format_iso(an_time_now_ms() - ms_ago, out, NULL), AN_OK);
}

/* Publish body on <prefix>.<sub>, waiting for the stream's ack. Returns the
 * stream sequence. headers: {k, v, ..., NULL} or NULL. */
static uint64_t publish_h(const char *sub, const char *body, size_t len, const char *const *headers)
{
    char subject[256];
    snprintf(subject, sizeof(subject), "%s.%s", prefix, sub);
    natsMsg *m = NULL;
    ck_assert(natsMsg_Create(&m, subject, NULL, body, (int)len) == NATS_OK);
    for (int i = 0; headers && headers[i]; i += 2)
        natsMsgHeader_Set(m, headers[i], headers[i + 1]);
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_PublishMsg(&pa, js, m, NULL, &jerr);
    natsMsg_Destroy(m);
    ck_assert_msg(s == NATS_OK, "publish on %s: %s (%d)", subject, natsStatus_GetText(s), jerr);
    uint64_t seq = pa->Sequence;
    jsPubAck_Destroy(pa);
    return seq;
}

static uint64_t publish(const char *sub, const char *body)
{
    return publish_h(sub, body, strlen(body), NULL);
}

/* An envelope for this test's tenant (tenant_suffix appended, may be ""). */
static char *event_json(const char *id, const char *type, const char *tenant_suffix,
                        const char *actor_id, const char *data)
{
    char when[AN_TIME_ISO_LEN];
    iso_ago(60000, when);
    char *s;
    ck_assert(asprintf(&s,
                       "{\"id\":\"%s\",\"type\":\"%s\",\"tenantId\":\"%s%s\",\"occurredAt\":\"%s\","
                       "\"correlationId\":\"corr-%s\",\"actor\":{\"type\":\"user\",\"id\":\"%s\"},"
                       "\"data\":%s}",
                       id, type, tenant, tenant_suffix, when, id, actor_id, data) > 0);
    return s;
}

/* An envelope of exactly len bytes (a long string in data), NUL-terminated. Free it. */
static char *big_event(const char *id, size_t len)
{
    char *big = malloc(len + 1);
    ck_assert_ptr_nonnull(big);
    int head = snprintf(big, len,
                        "{\"id\":\"%s\",\"type\":\"x\",\"tenantId\":\"%s\",\"data\":{\"blob\":\"",
                        id, tenant);
    memset(big + head, 'z', len - (size_t)head - 3);
    memcpy(big + len - 3, "\"}}", 3);
    big[len] = '\0';
    return big;
}

/* Poll a scalar query until it gives want (or timeout); returns the last value. */
static long long wait_count(const char *sql, long long want, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    long long v = -1;
    for (;;) {
        v = th_ch_count(sql);
        if (v == want || th_now_ms() >= deadline)
            return v;
        th_sleep_ms(100);
    }
}

static char *sqlf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sqlf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s;
    ck_assert(vasprintf(&s, fmt, ap) > 0);
    va_end(ap);
    return s;
}

static long long count_q(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long long count_q(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s;
    ck_assert(vasprintf(&s, fmt, ap) > 0);
    va_end(ap);
    long long v = th_ch_count(s);
    free(s);
    return v;
}

/* Rows of a query as a cJSON array (FORMAT JSONEachRow, one object a line). */
static cJSON *rows_as(const char *user, const char *password, const char *sql)
{
    char *full = sqlf("%s FORMAT JSONEachRow", sql);
    long code = 0;
    char *out = th_ch_as(user, password, full, &code);
    ck_assert_msg(code == 200, "ClickHouse said %ld to %s: %s", code, full, out);
    free(full);
    cJSON *arr = cJSON_CreateArray();
    for (char *line = out; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl)
            *nl = '\0';
        if (*line) {
            cJSON *o = cJSON_Parse(line);
            ck_assert_msg(o != NULL, "bad JSON row: %s", line);
            cJSON_AddItemToArray(arr, o);
        }
        line = nl ? nl + 1 : NULL;
    }
    free(out);
    return arr;
}

static cJSON *rows(const char *sql)
{
    return rows_as(th_env("ANALYTICS_CLICKHOUSE_ADMIN_USER"),
                   getenv("ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD"), sql);
}

static const char *str_of(const cJSON *o, const char *k)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    ck_assert_msg(cJSON_IsString(v), "field %s missing", k);
    return v->valuestring;
}

static char *hmac_hex(const char *key, const char *s)
{
    char *out = malloc(AN_CRYPTO_SHA256_HEX);
    ck_assert_int_eq(an_crypto_hmac_sha256_hex(key, strlen(key), s, strlen(s), out, NULL), AN_OK);
    return out;
}

/* ------------------------------------------------------- ClickHouse up/down */

static pid_t ch_pid(void)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/ch/pid", th_env("ANALYTICS_STACK_DIR"));
    char *s = th_read_file(path);
    pid_t pid = (pid_t)atoi(s);
    free(s);
    return pid;
}

/* The server at <$url_env><path> answers 2xx: up (or up again). */
static bool answers(const char *url_env, const char *path)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "curl -sf --max-time 2 '%s%s' >/dev/null 2>&1", th_env(url_env),
             path);
    return system(cmd) == 0;
}

/* Poll answers() every 100 ms for up to timeout_ms: 0 when it answered. */
static int wait_answers(const char *url_env, const char *path, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    while (!answers(url_env, path)) {
        if (th_now_ms() >= deadline)
            return -1;
        th_sleep_ms(100);
    }
    return 0;
}

static bool ch_alive(void)
{
    return answers("ANALYTICS_CLICKHOUSE_URL", "/ping");
}

/* Send sig to a server (not our child) and wait up to timeout_ms for it to
 * be gone. */
static void kill_and_wait(pid_t pid, int sig, int timeout_ms, const char *what)
{
    ck_assert_msg(pid > 0, "no %s pid", what);
    ck_assert_int_eq(kill(pid, sig), 0);
    int64_t deadline = th_now_ms() + timeout_ms;
    while (kill(pid, 0) == 0 && th_now_ms() < deadline)
        th_sleep_ms(50);
    ck_assert_msg(kill(pid, 0) != 0, "%s did not stop", what);
}

static void ch_signal(int sig)
{
    kill_and_wait(ch_pid(), sig, 60000, "ClickHouse");
}

static void ch_stop(void)
{
    ch_signal(SIGTERM);
}

/* Start the stack's ClickHouse again, as stack.sh does; wait for /ping. */
static int ch_start(void)
{
    const char *d = getenv("ANALYTICS_STACK_DIR");
    if (!d)
        return -1;
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "clickhouse-server --config-file=%s/ch/config.xml --pid-file=%s/ch/pid --daemon "
             ">>%s/ch/stdout.log 2>&1",
             d, d, d);
    if (system(cmd) != 0)
        return -1;
    return wait_answers("ANALYTICS_CLICKHOUSE_URL", "/ping", 90000);
}

/* ---- the stack's nats-server, restarted --------------------------------------
 * Its command line and executable are saved in the stack dir before it is
 * stopped, so it (or recover_stack after a failed test) starts it again
 * exactly as stack.sh did: same ports, same JetStream store. */

static bool nats_alive(void)
{
    return answers("ANALYTICS_NATS_MONITOR_URL", "/healthz");
}

static int nats_start(void)
{
    const char *d = getenv("ANALYTICS_STACK_DIR");
    if (!d)
        return -1;
    char path[512], exe[512], log[512];
    snprintf(path, sizeof(path), "%s/nats/exe", d);
    char *e = th_read_file(path);
    snprintf(path, sizeof(path), "%s/nats/cmdline", d);
    FILE *f = fopen(path, "rb");
    if (!e || !f) {
        free(e);
        if (f)
            fclose(f);
        return -1;
    }
    snprintf(exe, sizeof(exe), "%s", e);
    free(e);
    static char args[4096];
    size_t n = fread(args, 1, sizeof(args) - 1, f);
    fclose(f);
    args[n] = '\0';
    char *argv[64];
    int argc = 0;
    for (size_t i = 0; i < n && argc < 63; i += strlen(args + i) + 1)
        argv[argc++] = args + i;
    argv[argc] = NULL;
    snprintf(log, sizeof(log), "%s/nats/stdout.log", d);
    th_spawn(exe, argv, NULL, log); /* a daemon: init reaps it once this process is gone */
    return wait_answers("ANALYTICS_NATS_MONITOR_URL", "/healthz", 20000);
}

/* Stop nats-server with SIGTERM (JetStream's files stay). */
static void nats_stop(void)
{
    const char *d = th_env("ANALYTICS_STACK_DIR");
    char path[512], proc_path[64];
    snprintf(path, sizeof(path), "%s/nats/pid", d);
    char *s = th_read_file(path);
    ck_assert_ptr_nonnull(s);
    pid_t pid = (pid_t)atoi(s);
    free(s);
    ck_assert_int_gt(pid, 0);
    snprintf(proc_path, sizeof(proc_path), "/proc/%d/exe", (int)pid);
    char exe[512];
    ssize_t len = readlink(proc_path, exe, sizeof(exe) - 1);
    ck_assert_int_gt(len, 0);
    snprintf(path, sizeof(path), "%s/nats/exe", d);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fwrite(exe, 1, (size_t)len, f);
    fclose(f);
    char cmd[1024]; /* the arguments, NUL-separated */
    snprintf(cmd, sizeof(cmd), "cp /proc/%d/cmdline %s/nats/cmdline", (int)pid, d);
    ck_assert_int_eq(system(cmd), 0);

    kill_and_wait(pid, SIGTERM, 30000, "nats-server");
}

/* nats_start() in a test: also wait until JetStream has the test's stream
 * back (it answers /healthz before, and publishes then fail). */
static void nats_back(void)
{
    ck_assert_msg(nats_start() == 0, "nats-server did not start again");
    int64_t deadline = th_now_ms() + 20000;
    for (;;) {
        jsStreamInfo *si = NULL;
        natsStatus s = js_GetStreamInfo(&si, js, stream, NULL, NULL);
        jsStreamInfo_Destroy(si);
        if (s == NATS_OK)
            return;
        ck_assert_msg(th_now_ms() < deadline, "JetStream did not come back: %s",
                      natsStatus_GetText(s));
        th_sleep_ms(100);
    }
}

/* nats_stop(), down for down_ms, nats_back(). */
static void nats_restart(int down_ms)
{
    nats_stop();
    th_sleep_ms(down_ms);
    nats_back();
}

/* Runs in the runner process after a test case: whatever a failed test left
 * behind - ClickHouse stopped, ingest processes running - is put right so
 * the suites after it are not affected. */
static void recover_stack(void)
{
    const char *d = getenv("ANALYTICS_STACK_DIR");
    if (!d)
        return;
    char path[512];
    snprintf(path, sizeof(path), "%s/ingest-test.pids", d);
    FILE *f = fopen(path, "r");
    if (f) {
        int pid;
        while (fscanf(f, "%d", &pid) == 1)
            if (pid > 0 && kill(pid, 0) == 0)
                kill(pid, SIGKILL);
        fclose(f);
        unlink(path);
    }
    if (!ch_alive() && ch_start() != 0)
        fprintf(stderr, "test_ingest: could not restart ClickHouse\n");
    if (!nats_alive() && nats_start() != 0)
        fprintf(stderr, "test_ingest: could not restart nats-server\n");
}

/* ================================================================= tests */

START_TEST(test_events_arrive_in_both_tiers_with_the_right_columns)
{
    proc *p = start_ingest(NULL);
    char when[AN_TIME_ISO_LEN];
    ck_assert_int_eq(an_time_format_iso(an_time_now_ms() - 3600000 - 877, when, NULL), AN_OK);
    char *ev1;
    ck_assert(asprintf(&ev1,
                       "{\"id\":\"e-1\",\"type\":\"enrollment.created\",\"tenantId\":\"%s\","
                       "\"occurredAt\":\"%s\",\"correlationId\":\"corr-1\","
                       "\"actor\":{\"type\":\"user\",\"id\":\"u-1\"},"
                       "\"data\":{\"courseId\":\"c-9\",\"score\":7,\"paid\":true,"
                       "\"plan\":{\"tier\":\"pro\",\"seats\":3},\"tags\":[\"a\",\"b\"]}}",
                       tenant, when) > 0);
    char *ev2 = event_json("e-2", "lesson.completed", "", "u-2", "{\"lessonId\":\"l-1\"}");
    char *ev3 = event_json("e-3", "lesson.completed", "", "u-1", "{}");
    uint64_t seq1 = publish("courses.enrollment.created", ev1);
    publish("courses.lesson.completed", ev2);
    publish("courses.lesson.completed", ev3);

    char *q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id = '%s'", tenant);
    ck_assert_int_eq(wait_count(q, 3, 20000), 3);
    free(q);

    /* hot tier: every column */
    q = sqlf("SELECT tenant_id, event_id, event_name, toString(occurred_at) AS at, occurred_ms, "
             "actor_type, actor_id, actor_key_id, correlation_id, properties, prop_keys, "
             "prop_values, toUInt32(ingested_at) AS ing FROM analytics.events "
             "WHERE tenant_id = '%s' AND event_id = 'e-1'",
             tenant);
    cJSON *r = rows(q);
    free(q);
    ck_assert_int_eq(cJSON_GetArraySize(r), 1);
    cJSON *row = cJSON_GetArrayItem(r, 0);
    ck_assert_str_eq(str_of(row, "event_name"), "enrollment.created");
    char want_at[AN_TIME_CH_LEN];
    int64_t at_ms;
    ck_assert_int_eq(an_time_parse(when, &at_ms, NULL), AN_OK);
    an_time_format_ch(at_ms, want_at, NULL);
    ck_assert_str_eq(str_of(row, "at"), want_at);
    ck_assert_int_eq(cJSON_GetObjectItem(row, "occurred_ms")->valueint, (int)(at_ms % 1000));
    ck_assert_str_eq(str_of(row, "actor_type"), "user");
    char *h = hmac_hex(HMAC_KEY, "u-1");
    ck_assert_str_eq(str_of(row, "actor_id"), h);
    ck_assert_str_eq(str_of(row, "actor_key_id"), "k1");
    ck_assert_str_eq(str_of(row, "correlation_id"), "corr-1");
    ck_assert_str_eq(str_of(row, "properties"),
                     "{\"courseId\":\"c-9\",\"score\":7,\"paid\":true,\"plan\":{\"tier\":\"pro\","
                     "\"seats\":3},\"tags\":[\"a\",\"b\"]}");
    char *keys = cJSON_PrintUnformatted(cJSON_GetObjectItem(row, "prop_keys"));
    char *vals = cJSON_PrintUnformatted(cJSON_GetObjectItem(row, "prop_values"));
    ck_assert_str_eq(keys,
                     "[\"courseId\",\"score\",\"paid\",\"plan.tier\",\"plan.seats\",\"tags\"]");
    ck_assert_str_eq(vals, "[\"c-9\",\"7\",\"true\",\"pro\",\"3\",\"[\\\"a\\\",\\\"b\\\"]\"]");
    int64_t ing = (int64_t)cJSON_GetObjectItem(row, "ing")->valuedouble;
    ck_assert_msg(ing >= an_time_now_ms() / 1000 - 120 && ing <= an_time_now_ms() / 1000 + 5,
                  "ingested_at %lld is not now", (long long)ing);
    free(keys);
    free(vals);
    cJSON_Delete(r);

    /* a property path is queryable the way metrics filter on it */
    ck_assert_int_eq(count_q("SELECT count() FROM analytics.events WHERE tenant_id = '%s' AND "
                             "prop_values[indexOf(prop_keys, 'plan.tier')] = 'pro'",
                             tenant),
                     1);

    /* audit tier, read as the audit user: the exact bytes, subject and sequence */
    q = sqlf("SELECT event_id, event_name, subject, stream_seq, payload, toString(occurred_at) AS "
             "at FROM analytics_audit.events WHERE tenant_id = '%s' ORDER BY event_id",
             tenant);
    r = rows_as(th_env("ANALYTICS_CLICKHOUSE_AUDIT_USER"),
                th_env("ANALYTICS_CLICKHOUSE_AUDIT_PASSWORD"), q);
    free(q);
    ck_assert_int_eq(cJSON_GetArraySize(r), 3);
    row = cJSON_GetArrayItem(r, 0);
    ck_assert_str_eq(str_of(row, "event_id"), "e-1");
    ck_assert_str_eq(str_of(row, "payload"), ev1);
    char subj[256];
    snprintf(subj, sizeof(subj), "%s.courses.enrollment.created", prefix);
    ck_assert_str_eq(str_of(row, "subject"), subj);
    ck_assert_str_eq(str_of(row, "stream_seq"), "1"); /* UInt64 is quoted in JSON */
    ck_assert_uint_eq(seq1, 1);
    ck_assert_str_eq(str_of(row, "at"), want_at);
    cJSON_Delete(r);

    /* the audit tier is the audit user's only: the reader cannot see it */
    long code = 0;
    char *out = th_ch_as(th_env("ANALYTICS_CLICKHOUSE_READER_USER"),
                         th_env("ANALYTICS_CLICKHOUSE_READER_PASSWORD"),
                         "SELECT count() FROM analytics_audit.events", &code);
    ck_assert_msg(code != 200, "the reader read the audit tier: %s", out);
    free(out);

    /* the hourly rollup counts them, with distinct actors */
    q = sqlf("SELECT event_name, countMerge(events) AS n, uniqIfMerge(actors) AS a FROM "
             "analytics.events_hourly WHERE tenant_id = '%s' GROUP BY event_name ORDER BY "
             "event_name",
             tenant);
    r = rows(q);
    free(q);
    ck_assert_int_eq(cJSON_GetArraySize(r), 2);
    ck_assert_str_eq(str_of(cJSON_GetArrayItem(r, 0), "event_name"), "enrollment.created");
    ck_assert_str_eq(str_of(cJSON_GetArrayItem(r, 0), "n"), "1");
    ck_assert_str_eq(str_of(cJSON_GetArrayItem(r, 1), "n"), "2");
    ck_assert_str_eq(str_of(cJSON_GetArrayItem(r, 1), "a"), "2");
    cJSON_Delete(r);

    /* /metrics */
    ck_assert_double_eq(metric(p, "analytics_ingest_events_total"), 3);
    ck_assert_double_eq(metric(p, "analytics_ingest_rows_written_total{tier=\"hot\"}"), 3);
    ck_assert_double_eq(metric(p, "analytics_ingest_rows_written_total{tier=\"audit\"}"), 3);
    ck_assert_double_eq(metric(p, "analytics_ingest_acks_total"), 3);
    ck_assert(metric(p, "analytics_ingest_batch_messages_count") >= 1);
    ck_assert(metric(p, "analytics_ingest_batch_write_seconds_count") >= 1);
    ck_assert_double_eq(metric(p, "analytics_ingest_consumer_pending_messages"), 0);

    /* the status endpoint over NATS says the same */
    natsMsg *reply = NULL;
    ck_assert(natsConnection_RequestString(&reply, nc, "analytics.ingest.status", "", 5000) ==
              NATS_OK);
    cJSON *st = cJSON_Parse(natsMsg_GetData(reply));
    ck_assert_ptr_nonnull(st);
    cJSON *d = cJSON_GetObjectItem(st, "data");
    ck_assert_str_eq(str_of(d, "stream"), stream);
    ck_assert_str_eq(str_of(d, "consumer"), consumer);
    ck_assert_double_eq(cJSON_GetObjectItem(d, "events")->valuedouble, 3);
    ck_assert_double_eq(
        cJSON_GetObjectItem(cJSON_GetObjectItem(d, "rowsWritten"), "hot")->valuedouble, 3);
    cJSON_Delete(st);
    natsMsg_Destroy(reply);
    ck_assert_int_eq(stop_ingest(p, 30000), 0);
    free(h);
    free(ev1);
    free(ev2);
    free(ev3);
}
END_TEST

START_TEST(test_no_pii_key_or_pii_looking_value_reaches_the_hot_tier)
{
    start_ingest((const char *const[]){
        "ANALYTICS_INGEST_PII_KEYS=" INGEST_PII_DEFAULT_KEYS ",recoveryCode:hash", NULL});
    const char *pii[] = {"ann.lee@example.com",
                         "Ann",
                         "Lee",
                         "+44 20 7946 0958",
                         "(555) 123-4567",
                         "192.168.10.20",
                         "2001:db8::7",
                         "12 Baker Street",
                         "u-secret-actor-77",
                         "bob@corp.example.org",
                         "s3cr3t-code",
                         "carol@example.net",
                         "10.9.8.7",
                         "+15551234567"};
    char *ev = event_json(
        "p-1", "user.updated", "", "u-secret-actor-77",
        "{\"email\":\"ann.lee@example.com\",\"profile\":{\"firstName\":\"Ann\","
        "\"last_name\":\"Lee\",\"address\":{\"street\":\"12 Baker Street\"},\"level\":3},"
        "\"contact\":\"call +44 20 7946 0958 or (555) 123-4567\","
        "\"session\":{\"client\":{\"ip\":\"192.168.10.20\"},\"note\":\"from 192.168.10.20 and "
        "2001:db8::7\"},\"invited\":[{\"mail\":\"x@y.io\",\"role\":\"tutor\"},"
        "\"bob@corp.example.org\"],\"bob@corp.example.org\":1,\"recoveryCode\":\"s3cr3t-code\","
        "\"courseId\":\"c-1\"}");
    publish("users.user.updated", ev);
    /* the envelope's own free text is stored in the hot tier too */
    char when[AN_TIME_ISO_LEN], *ev2;
    iso_ago(60000, when);
    ck_assert(asprintf(&ev2,
                       "{\"id\":\"p-2\",\"type\":\"user.updated\",\"tenantId\":\"%s\","
                       "\"occurredAt\":\"%s\",\"correlationId\":\"req by carol@example.net from "
                       "10.9.8.7\",\"actor\":{\"type\":\"svc tel:+15551234567\",\"id\":\"u-2\"},"
                       "\"data\":{\"k\":1}}",
                       tenant, when) > 0);
    publish("users.user.updated", ev2);
    free(ev2);
    char *q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id = '%s'", tenant);
    ck_assert_int_eq(wait_count(q, 2, 20000), 2);
    free(q);

    /* every column of the stored hot rows, as text */
    q = sqlf("SELECT * FROM analytics.events WHERE tenant_id = '%s' FORMAT TabSeparated", tenant);
    char *hot = th_ch(q);
    free(q);
    for (size_t i = 0; i < sizeof(pii) / sizeof(pii[0]); i++)
        ck_assert_msg(strstr(hot, pii[i]) == NULL, "\"%s\" reached the hot tier: %s", pii[i], hot);
    /* what is not PII stays, masks show where values were */
    ck_assert_msg(strstr(hot, "c-1") && strstr(hot, "\"level\":3") && strstr(hot, "tutor"), "%s",
                  hot);
    ck_assert_msg(strstr(hot, "call [phone] or [phone]") != NULL, "%s", hot);
    ck_assert_msg(strstr(hot, "from [ip] and [ip]") != NULL, "%s", hot);
    ck_assert_msg(strstr(hot, "\"[email]\"") != NULL, "%s", hot);
    ck_assert_msg(strstr(hot, "req by [email] from [ip]") && strstr(hot, "svc tel:[phone]"), "%s",
                  hot);
    /* recoveryCode is configured to be hashed: present, as the HMAC */
    char *code_hash = hmac_hex(HMAC_KEY, "s3cr3t-code");
    ck_assert_msg(strstr(hot, code_hash) != NULL, "recoveryCode not hashed: %s", hot);
    free(code_hash);
    free(hot);
    /* the same checks in SQL over the arrays metrics use */
    ck_assert_int_eq(count_q("SELECT count() FROM analytics.events WHERE tenant_id = '%s' AND "
                             "(has(prop_keys, 'email') OR has(prop_keys, 'profile.firstName') OR "
                             "has(prop_keys, 'session.client.ip') OR "
                             "arrayExists(v -> position(v, '@example.com') > 0, prop_values))",
                             tenant),
                     0);

    /* the audit tier has it all (so the checks above could have failed) */
    q = sqlf("SELECT payload FROM analytics_audit.events WHERE tenant_id = '%s' FORMAT "
             "TabSeparatedRaw",
             tenant);
    char *audit = th_ch(q);
    free(q);
    for (size_t i = 0; i < sizeof(pii) / sizeof(pii[0]); i++)
        ck_assert_msg(strstr(audit, pii[i]) != NULL, "\"%s\" missing from the audit tier", pii[i]);
    free(audit);
    free(ev);
}
END_TEST

START_TEST(test_same_actor_hashes_the_same_way_and_rotation_shows_the_key_id)
{
    proc *p = start_ingest(NULL);
    char *a = event_json("h-1", "lesson.completed", "", "u-77", "{}");
    char *b = event_json("h-2", "quiz.submitted", "-other", "u-77", "{}");
    char *c = event_json("h-3", "lesson.completed", "", "u-78", "{}");
    publish("courses.lesson.completed", a);
    publish("courses.quiz.submitted", b);
    publish("courses.lesson.completed", c);
    char *q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id IN ('%s', '%s-other')",
                   tenant, tenant);
    ck_assert_int_eq(wait_count(q, 3, 20000), 3);
    free(q);
    ck_assert_int_eq(stop_ingest(p, 30000), 0);

    /* a restarted ingest with a rotated key: new hashes, new key id */
    const char *rot[] = {"ANALYTICS_INGEST_HMAC_KEY=" HMAC_KEY2, "ANALYTICS_INGEST_HMAC_KEY_ID=k2",
                         NULL};
    proc *p2 = start_ingest(rot);
    char *d = event_json("h-4", "lesson.completed", "", "u-77", "{}");
    publish("courses.lesson.completed", d);
    q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id = '%s'", tenant);
    ck_assert_int_eq(wait_count(q, 3, 20000), 3);
    free(q);

    q = sqlf("SELECT event_id, actor_id, actor_key_id FROM analytics.events WHERE tenant_id IN "
             "('%s', '%s-other') ORDER BY event_id",
             tenant, tenant);
    cJSON *r = rows(q);
    free(q);
    ck_assert_int_eq(cJSON_GetArraySize(r), 4);
    const char *h1 = str_of(cJSON_GetArrayItem(r, 0), "actor_id");
    const char *h2 = str_of(cJSON_GetArrayItem(r, 1), "actor_id");
    const char *h3 = str_of(cJSON_GetArrayItem(r, 2), "actor_id");
    const char *h4 = str_of(cJSON_GetArrayItem(r, 3), "actor_id");
    char *want = hmac_hex(HMAC_KEY, "u-77");
    char *want2 = hmac_hex(HMAC_KEY2, "u-77");
    ck_assert_str_eq(h1, want); /* same actor, other event type and tenant: same hash */
    ck_assert_str_eq(h2, want);
    ck_assert_str_ne(h3, want); /* another actor */
    ck_assert_int_eq((int)strlen(h3), 64);
    ck_assert_str_eq(h4, want2); /* rotated key */
    ck_assert_str_eq(str_of(cJSON_GetArrayItem(r, 0), "actor_key_id"), "k1");
    ck_assert_str_eq(str_of(cJSON_GetArrayItem(r, 3), "actor_key_id"), "k2");
    cJSON_Delete(r);
    ck_assert_int_eq(stop_ingest(p2, 30000), 0);
    free(want);
    free(want2);
    free(a);
    free(b);
    free(c);
    free(d);
}
END_TEST

/* Wait up to timeout_ms until the consumer has delivered everything and
 * ack_pending of it is unacked; fails the test with what otherwise. */
static void wait_consumer(int64_t ack_pending, int timeout_ms, const char *what)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        jsConsumerInfo *ci = NULL;
        ck_assert(js_GetConsumerInfo(&ci, js, stream, consumer, NULL, NULL) == NATS_OK);
        bool there = ci->NumPending == 0 && ci->NumAckPending == ack_pending;
        jsConsumerInfo_Destroy(ci);
        if (there)
            return;
        ck_assert_msg(th_now_ms() < deadline, "%s", what);
        th_sleep_ms(200);
    }
}

/* Wait until the consumer has nothing undelivered and nothing unacked. */
static void wait_consumer_settled(const char *what)
{
    wait_consumer(0, 20000, what);
}

START_TEST(test_bad_events_are_dead_lettered_with_their_reason_between_good_ones)
{
    proc *p = start_ingest((const char *const[]){"ANALYTICS_INGEST_MAX_EVENT_BYTES=4096", NULL});
    char *good[5];
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof(id), "g-%d", i);
        good[i] = event_json(id, "lesson.completed", "", "u-1", "{\"n\":1}");
    }
    char when[AN_TIME_ISO_LEN];
    iso_ago(1000, when);
    const char *malformed = "{\"id\":\"b-1\",\"type\":\"x\",\"tenantId\":";
    char *no_tenant, *bad_time, *big;
    ck_assert(asprintf(&no_tenant,
                       "{\"id\":\"b-2\",\"type\":\"lesson.completed\",\"occurredAt\":"
                       "\"%s\",\"data\":{}}",
                       when) > 0);
    ck_assert(asprintf(&bad_time,
                       "{\"id\":\"b-3\",\"type\":\"lesson.completed\",\"tenantId\":\"%s\","
                       "\"occurredAt\":\"31/12/2025 10:00\",\"data\":{}}",
                       tenant) > 0);
    size_t big_len = 10000;
    big = big_event("b-4", big_len);

    publish("courses.lesson.completed", good[0]);
    uint64_t s_mal = publish_h("courses.lesson.completed", malformed, strlen(malformed),
                               (const char *const[]){"Correlation-Id", "corr-bad-1", NULL});
    publish("courses.lesson.completed", good[1]);
    uint64_t s_tenant = publish("courses.lesson.completed", no_tenant);
    publish("courses.lesson.completed", good[2]);
    uint64_t s_time = publish("courses.lesson.completed", bad_time);
    publish("courses.lesson.completed", good[3]);
    uint64_t s_big = publish_h("courses.lesson.completed", big, big_len, NULL);
    publish("courses.lesson.completed", good[4]);

    char *q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id = '%s'", tenant);
    ck_assert_int_eq(wait_count(q, 5, 20000), 5);
    free(q);
    q = sqlf("SELECT count() FROM analytics_audit.dead_letters WHERE subject LIKE '%s.%%'", prefix);
    ck_assert_int_eq(wait_count(q, 4, 20000), 4);
    free(q);

    q = sqlf("SELECT stream_seq, reason, detail, tenant_id, event_id, headers, raw, "
             "length(raw) AS len FROM analytics_audit.dead_letters WHERE subject LIKE '%s.%%' "
             "ORDER BY stream_seq",
             prefix);
    cJSON *r = rows_as(th_env("ANALYTICS_CLICKHOUSE_AUDIT_USER"),
                       th_env("ANALYTICS_CLICKHOUSE_AUDIT_PASSWORD"), q);
    free(q);
    ck_assert_int_eq(cJSON_GetArraySize(r), 4);
    struct {
        uint64_t seq;
        const char *reason, *detail_part, *raw, *tenant, *id;
    } want[] = {
        {s_mal, "invalid_json", "end of input", malformed, "", "b-1"},
        {s_tenant, "missing_field", "tenantId", no_tenant, "", "b-2"},
        {s_time, "bad_timestamp", "occurredAt", bad_time, tenant, "b-3"},
        {s_big, "too_large", "limit is 4096", NULL, "", ""},
    };
    for (int i = 0; i < 4; i++) {
        cJSON *row = cJSON_GetArrayItem(r, i);
        char seq[32];
        snprintf(seq, sizeof(seq), "%llu", (unsigned long long)want[i].seq);
        ck_assert_str_eq(str_of(row, "stream_seq"), seq);
        ck_assert_str_eq(str_of(row, "reason"), want[i].reason);
        ck_assert_msg(strstr(str_of(row, "detail"), want[i].detail_part) != NULL,
                      "%s: detail \"%s\"", want[i].reason, str_of(row, "detail"));
        if (want[i].raw)
            ck_assert_str_eq(str_of(row, "raw"), want[i].raw);
        ck_assert_str_eq(str_of(row, "tenant_id"), want[i].tenant);
        ck_assert_str_eq(str_of(row, "event_id"), want[i].id);
    }
    ck_assert_str_eq(str_of(cJSON_GetArrayItem(r, 3), "len"), "10000"); /* UInt64: quoted */
    ck_assert_msg(strstr(str_of(cJSON_GetArrayItem(r, 0), "headers"), "corr-bad-1") != NULL,
                  "headers: %s", str_of(cJSON_GetArrayItem(r, 0), "headers"));
    cJSON_Delete(r);

    /* the good ones are the five around them, none of the bad ones leaked in */
    ck_assert_int_eq(count_q("SELECT count() FROM analytics.events WHERE tenant_id = '%s' AND "
                             "event_id LIKE 'g-%%'",
                             tenant),
                     5);
    ck_assert_int_eq(count_q("SELECT count() FROM analytics.events WHERE event_id = 'b-3' AND "
                             "tenant_id = '%s'",
                             tenant),
                     0);
    ck_assert_double_eq(metric(p, "analytics_ingest_rejects_total{reason=\"invalid_json\"}"), 1);
    ck_assert_double_eq(metric(p, "analytics_ingest_rejects_total{reason=\"missing_field\"}"), 1);
    ck_assert_double_eq(metric(p, "analytics_ingest_rejects_total{reason=\"bad_timestamp\"}"), 1);
    ck_assert_double_eq(metric(p, "analytics_ingest_rejects_total{reason=\"too_large\"}"), 1);
    ck_assert_double_eq(metric(p, "analytics_ingest_rows_written_total{tier=\"dead_letter\"}"), 4);
    wait_consumer_settled("messages still unacked"); /* every message was acked */
    for (int i = 0; i < 5; i++)
        free(good[i]);
    free(no_tenant);
    free(bad_time);
    free(big);
}
END_TEST

/* A message larger than what a pull request may bring while the batch is
 * nearly full (here ANALYTICS_INGEST_BATCH_BYTES=1MiB, a 700 KB event) is
 * still delivered: dead-lettered as too large, between good events that
 * are stored. */
START_TEST(test_a_message_larger_than_the_batch_byte_budget_is_still_delivered)
{
    proc *p = start_ingest((const char *const[]){"ANALYTICS_INGEST_BATCH_BYTES=1MiB", NULL});
    size_t big_len = 700000;
    char *big = big_event("big-1", big_len);
    char *good[4];
    for (int i = 0; i < 4; i++) {
        char id[16];
        snprintf(id, sizeof(id), "g-%d", i);
        good[i] = event_json(id, "lesson.completed", "", "u-1", "{\"n\":1}");
    }
    publish("courses.lesson.completed", good[0]);
    publish("courses.lesson.completed", good[1]);
    uint64_t s_big = publish_h("courses.lesson.completed", big, big_len, NULL);
    publish("courses.lesson.completed", good[2]);
    publish("courses.lesson.completed", good[3]);

    char *q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id = '%s'", tenant);
    ck_assert_int_eq(wait_count(q, 4, 20000), 4);
    free(q);
    q = sqlf("SELECT count() FROM analytics_audit.dead_letters WHERE subject LIKE '%s.%%' AND "
             "stream_seq = %llu AND reason = 'too_large' AND length(raw) = %zu",
             prefix, (unsigned long long)s_big, big_len);
    ck_assert_int_eq(wait_count(q, 1, 20000), 1);
    free(q);
    ck_assert_double_eq(metric(p, "analytics_ingest_rejects_total{reason=\"too_large\"}"), 1);
    wait_consumer_settled("the large message was not acked");
    for (int i = 0; i < 4; i++)
        free(good[i]);
    free(big);
    ck_assert_int_eq(stop_ingest(p, 30000), 0);
}
END_TEST

/* Run ingest_load: n events on <prefix>.*, tenant prefix tp, 3 tenants. */
static void load(long n, const char *tp, const char *run)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s -n %ld -s %s -p %s -t 3 -r %s",
             th_bin("tests/helpers/ingest_load"), n, prefix, tp, run);
    int rc = -1;
    char *out = th_run(cmd, &rc);
    ck_assert_msg(rc == 0, "ingest_load failed: %s", out);
    free(out);
}

START_TEST(test_two_replicas_split_the_stream_without_overlap)
{
    const char *small[] = {"ANALYTICS_INGEST_FETCH=50", "ANALYTICS_INGEST_BATCH_ROWS=250",
                           "ANALYTICS_INGEST_BATCH_AGE=100ms", NULL};
    proc *a = start_ingest(small);
    proc *b = start_ingest(small);
    const long n = 6000;
    load(n, tenant, "rep");
    char *q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id LIKE '%s-%%'", tenant);
    ck_assert_int_eq(wait_count(q, n, 60000), n);
    free(q);
    th_sleep_ms(500); /* nothing more arrives */
    ck_assert_int_eq(
        count_q("SELECT count() FROM analytics.events WHERE tenant_id LIKE '%s-%%'", tenant), n);
    ck_assert_int_eq(count_q("SELECT uniqExact(event_id) FROM analytics.events WHERE tenant_id "
                             "LIKE '%s-%%'",
                             tenant),
                     n);
    ck_assert_int_eq(count_q("SELECT count() FROM analytics_audit.events WHERE tenant_id LIKE "
                             "'%s-%%'",
                             tenant),
                     n);
    double fa = metric(a, "analytics_ingest_messages_total{delivery=\"first\"}");
    double fb = metric(b, "analytics_ingest_messages_total{delivery=\"first\"}");
    ck_assert_msg(fa > 0 && fb > 0, "one replica got nothing: %.0f and %.0f", fa, fb);
    ck_assert_msg(fa + fb == n, "replicas saw %.0f + %.0f messages for %ld events", fa, fb, n);
    ck_assert_double_eq(metric(a, "analytics_ingest_messages_total{delivery=\"redelivery\"}"), 0);
    ck_assert_double_eq(metric(b, "analytics_ingest_messages_total{delivery=\"redelivery\"}"), 0);
    ck_assert_double_eq(metric(a, "analytics_ingest_rows_written_total{tier=\"hot\"}") +
                            metric(b, "analytics_ingest_rows_written_total{tier=\"hot\"}"),
                        n);
    ck_assert_int_eq(stop_ingest(a, 30000), 0);
    ck_assert_int_eq(stop_ingest(b, 30000), 0);
}
END_TEST

/* A replica count changed in the configuration is applied to the existing
 * stream; a single nats-server keeps 1 replica, and ingest says so instead
 * of leaving the operator to believe the stream is replicated. */
START_TEST(test_stream_replicas_are_applied_or_the_shortfall_is_logged)
{
    proc *p = start_ingest(NULL);
    ck_assert(!log_has(p, "replica(s), not the"));
    ck_assert_int_eq(stop_ingest(p, 30000), 0);
    proc *p2 = start_ingest((const char *const[]){"ANALYTICS_INGEST_STREAM_REPLICAS=3", NULL});
    ck_assert(log_has(p2, "updated JetStream stream"));
    ck_assert_msg(log_has(p2, "has 1 replica(s), not the 3 of ANALYTICS_INGEST_STREAM_REPLICAS"),
                  "no warning in %s", p2->log);
    ck_assert_int_eq(stop_ingest(p2, 30000), 0);
}
END_TEST

START_TEST(test_bad_configuration_stops_ingest_with_a_clear_message)
{
    char log[512];
    snprintf(log, sizeof(log), "%s/%s-badcfg.log", th_env("ANALYTICS_STACK_DIR"), prefix);
    char *argv[] = {"ingest", NULL};
    char *env1[] = {"ANALYTICS_INGEST_HMAC_KEY=short", "ANALYTICS_HTTP_ADDR=127.0.0.1:0", NULL};
    pid_t pid = th_spawn(th_bin("bin/ingest"), argv, env1, log);
    int st = 0;
    ck_assert_int_eq(th_wait(pid, 20000, &st, NULL), 0);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) != 0);
    char *s = th_read_file(log);
    ck_assert_msg(strstr(s, "ANALYTICS_INGEST_HMAC_KEY must be at least 16 bytes") != NULL, "%s",
                  s);
    free(s);
}
END_TEST

/* ============================================================ recovery */

static long long events_of(const char *table, const char *tp, bool final)
{
    return count_q("SELECT count() FROM %s%s WHERE tenant_id LIKE '%s-%%'", table,
                   final ? " FINAL" : "", tp);
}

/* Every way of counting the tenant's events says n. */
static void assert_counted_once(const char *tp, long long n)
{
    ck_assert_int_eq(events_of("analytics.events", tp, false), n);
    ck_assert_int_eq(events_of("analytics.events", tp, true), n);
    ck_assert_int_eq(count_q("SELECT uniqExact(tenant_id, event_id) FROM analytics.events WHERE "
                             "tenant_id LIKE '%s-%%'",
                             tp),
                     n);
    ck_assert_int_eq(events_of("analytics_audit.events", tp, false), n);
    ck_assert_int_eq(count_q("SELECT countMerge(events) FROM analytics.events_hourly WHERE "
                             "tenant_id LIKE '%s-%%'",
                             tp),
                     n);
}

START_TEST(test_clickhouse_stopped_mid_stream_loses_nothing_and_counts_nothing_twice)
{
    proc *p = start_ingest((const char *const[]){"ANALYTICS_INGEST_RETRY_MAX=1s",
                                                 "ANALYTICS_INGEST_ACK_WAIT=6s", NULL});
    load(2000, tenant, "before");
    char *q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id LIKE '%s-%%'", tenant);
    ck_assert_int_eq(wait_count(q, 2000, 30000), 2000);

    ch_stop();
    load(3000, tenant, "during"); /* JetStream takes them while ClickHouse is down */
    /* ingest holds them unacked and says ClickHouse is down */
    int64_t deadline = th_now_ms() + 20000;
    while (metric(p, "analytics_ingest_clickhouse_up") != 0 && th_now_ms() < deadline)
        th_sleep_ms(100);
    ck_assert_double_eq(metric(p, "analytics_ingest_clickhouse_up"), 0);
    th_sleep_ms(7000); /* longer than the ack wait: held messages must not be redelivered */
    ck_assert(metric(p, "analytics_ingest_insert_failures_total") >= 1);
    ck_assert(metric(p, "analytics_ingest_held_messages") > 0);
    jsConsumerInfo *ci = NULL;
    ck_assert(js_GetConsumerInfo(&ci, js, stream, consumer, NULL, NULL) == NATS_OK);
    ck_assert_msg(ci->NumAckPending + (int64_t)ci->NumPending == 3000,
                  "unacked %lld + undelivered %llu, want 3000", (long long)ci->NumAckPending,
                  (unsigned long long)ci->NumPending);
    ck_assert_int_eq(ci->NumRedelivered, 0);
    jsConsumerInfo_Destroy(ci);

    ck_assert_int_eq(ch_start(), 0);
    ck_assert_int_eq(wait_count(q, 5000, 60000), 5000);
    th_sleep_ms(1000);
    assert_counted_once(tenant, 5000);
    ck_assert_double_eq(metric(p, "analytics_ingest_clickhouse_up"), 1);
    ck_assert_double_eq(metric(p, "analytics_ingest_acks_total"), 5000);
    ck_assert_double_eq(metric(p, "analytics_ingest_messages_total{delivery=\"redelivery\"}"), 0);
    free(q);
    ck_assert_int_eq(stop_ingest(p, 30000), 0);
}
END_TEST

/* Wait until p's batch has its INSERTs open in ClickHouse (they have taken
 * rows) while nothing is acked yet. */
static void wait_streaming_insert(const proc *p)
{
    int64_t deadline = th_now_ms() + 20000;
    while (count_q("SELECT count() FROM system.processes WHERE query_id LIKE 'ingest-%%-0' AND "
                   "startsWith(query, 'INSERT INTO analytics.events ')") == 0 &&
           th_now_ms() < deadline)
        th_sleep_ms(50);
    ck_assert_msg(th_now_ms() < deadline, "no streaming INSERT seen");
    ck_assert_double_eq(metric(p, "analytics_ingest_acks_total"), 0);
}

/* ClickHouse dies while a batch streams into it: the streamed events were
 * not kept by ingest, so they go back to JetStream and come again; the ones
 * ClickHouse took before it went are found stored, none is counted twice. */
START_TEST(test_clickhouse_stopped_during_a_streaming_insert_counts_every_event_once)
{
    proc *p = start_ingest((const char *const[]){"ANALYTICS_INGEST_BATCH_AGE=5s",
                                                 "ANALYTICS_INGEST_RETRY_MAX=1s",
                                                 "ANALYTICS_INGEST_ACK_WAIT=6s", NULL});
    load(3000, tenant, "streaming");
    wait_streaming_insert(p);
    ch_signal(SIGKILL);
    ck_assert_int_eq(ch_start(), 0);
    char *q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id LIKE '%s-%%'", tenant);
    ck_assert_int_eq(wait_count(q, 3000, 60000), 3000);
    free(q);
    th_sleep_ms(1000);
    assert_counted_once(tenant, 3000);
    ck_assert_int_eq(events_of("analytics_audit.events", tenant, true), 3000);
    ck_assert(metric(p, "analytics_ingest_insert_failures_total") >= 1);
    ck_assert_msg(metric(p, "analytics_ingest_messages_total{delivery=\"redelivery\"}") > 0,
                  "the streamed events did not come back");
    int64_t deadline = th_now_ms() + 20000;
    while (metric(p, "analytics_ingest_acks_total") < 3000 && th_now_ms() < deadline)
        th_sleep_ms(100);
    ck_assert_double_eq(metric(p, "analytics_ingest_acks_total"), 3000);
    ck_assert_double_eq(metric(p, "analytics_ingest_clickhouse_up"), 1);
    ck_assert_int_eq(stop_ingest(p, 30000), 0);
}
END_TEST

/* A batch that fills longer than the ack wait and the insert timeout (a
 * slow trickle with a long ANALYTICS_INGEST_BATCH_AGE): ingest keeps its
 * messages from redelivery while it fills, so JetStream hands none of them
 * out again, and its streaming INSERTs are not timed out while they are
 * open. */
START_TEST(test_a_batch_filling_longer_than_the_ack_wait_is_not_redelivered)
{
    proc *p = start_ingest((const char *const[]){"ANALYTICS_INGEST_BATCH_AGE=7s",
                                                 "ANALYTICS_INGEST_ACK_WAIT=2s",
                                                 "ANALYTICS_INGEST_INSERT_TIMEOUT=2s", NULL});
    load(500, tenant, "trickle");
    char *q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id LIKE '%s-%%'", tenant);
    th_sleep_ms(4000); /* two ack waits: the batch is still open */
    ck_assert_int_eq(th_ch_count(q), 0);
    ck_assert_int_eq(wait_count(q, 500, 30000), 500);
    free(q);
    th_sleep_ms(1000);
    assert_counted_once(tenant, 500);
    ck_assert_double_eq(metric(p, "analytics_ingest_messages_total{delivery=\"redelivery\"}"), 0);
    ck_assert_double_eq(metric(p, "analytics_ingest_acks_total"), 500);
    ck_assert_double_eq(metric(p, "analytics_ingest_insert_failures_total"), 0);
    jsConsumerInfo *ci = NULL;
    ck_assert(js_GetConsumerInfo(&ci, js, stream, consumer, NULL, NULL) == NATS_OK);
    ck_assert_int_eq(ci->NumRedelivered, 0);
    jsConsumerInfo_Destroy(ci);
    ck_assert_int_eq(stop_ingest(p, 30000), 0);
}
END_TEST

/* SIGTERM while ClickHouse hangs (SIGSTOP) under an open streaming INSERT:
 * ingest gives up at ANALYTICS_DRAIN_TIMEOUT, not at the insert timeout,
 * hands the events back and exits 0; they are stored once afterwards. */
START_TEST(test_sigterm_while_clickhouse_hangs_exits_within_the_drain_timeout)
{
    proc *p = start_ingest((const char *const[]){
        "ANALYTICS_INGEST_BATCH_AGE=3s", "ANALYTICS_INGEST_ACK_WAIT=10s",
        "ANALYTICS_INGEST_INSERT_TIMEOUT=60s", "ANALYTICS_DRAIN_TIMEOUT=3s", NULL});
    load(2000, tenant, "hang");
    wait_streaming_insert(p);
    pid_t chp = ch_pid();
    ck_assert_int_eq(kill(chp, SIGSTOP), 0);
    int64_t t0 = th_now_ms();
    int st = stop_ingest(p, 30000);
    int64_t took = th_now_ms() - t0;
    kill(chp, SIGCONT);
    ck_assert_msg(st != -1, "ingest still runs 30 s after SIGTERM");
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "exit status %d", st);
    ck_assert_msg(took < 7000, "ingest took %lld ms to stop", (long long)took);
    ck_assert(log_has(p, "back to JetStream"));
    ck_assert_int_eq(wait_answers("ANALYTICS_CLICKHOUSE_URL", "/ping", 30000), 0);

    proc *p2 = start_ingest(NULL);
    char *q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id LIKE '%s-%%'", tenant);
    ck_assert_int_eq(wait_count(q, 2000, 60000), 2000);
    free(q);
    wait_consumer_settled("events left unacked after the restart");
    assert_counted_once(tenant, 2000);
    ck_assert_int_eq(stop_ingest(p2, 30000), 0);
}
END_TEST

/* nats-server restarts while ingest has a batch in flight: JetStream keeps
 * the stream and the consumer's state on disk; acks lost with the
 * connection bring those events again, and ingest finds them stored. Events
 * published after the restart arrive too, and each event is counted once. */
START_TEST(test_nats_server_restarted_mid_stream_counts_every_event_once)
{
    proc *p = start_ingest((const char *const[]){"ANALYTICS_INGEST_BATCH_AGE=3s",
                                                 "ANALYTICS_INGEST_ACK_WAIT=4s", NULL});
    load(3000, tenant, "before");
    wait_streaming_insert(p);

    nats_restart(1500);
    load(2000, tenant, "after");
    char *q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id LIKE '%s-%%'", tenant);
    ck_assert_int_eq(wait_count(q, 5000, 60000), 5000);
    free(q);
    th_sleep_ms(5000); /* an ack wait more: no late duplicate arrives */
    assert_counted_once(tenant, 5000);
    ck_assert_int_eq(events_of("analytics_audit.events", tenant, true), 5000);
    ck_assert_msg(kill(p->pid, 0) == 0, "ingest died with nats-server");
    wait_consumer_settled("events left unacked after the restart");
    ck_assert_int_eq(stop_ingest(p, 30000), 0);
}
END_TEST

/* nats-server is down while ingest writes what it holds and acks more than
 * nats.c's 8 MiB reconnect buffer takes: the acks it could not send are
 * counted, and those events come back after the ack wait and are found
 * stored. */
START_TEST(test_acks_refused_while_nats_is_down_are_counted_and_nothing_counts_twice)
{
    /* two batches of 50,000: all that ingest holds while ClickHouse is down */
    proc *p = start_ingest(
        (const char *const[]){"ANALYTICS_INGEST_RETRY_MAX=1s", "ANALYTICS_INGEST_ACK_WAIT=6s",
                              "ANALYTICS_INGEST_BATCH_ROWS=50000", "ANALYTICS_INGEST_BATCH_AGE=10s",
                              "ANALYTICS_INGEST_BATCH_BYTES=200MiB", NULL});
    ch_stop();
    const long n = 100000; /* about 11 MB of acks */
    load(n, tenant, "unsent");
    wait_consumer(n, 30000, "ingest did not take every event without acking it");
    nats_stop();
    ck_assert_int_eq(ch_start(), 0);
    char *q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id LIKE '%s-%%'", tenant);
    ck_assert_int_eq(wait_count(q, n, 60000), n);
    int64_t deadline = th_now_ms() + 30000;
    while (metric(p, "analytics_ingest_held_messages") > 0 && th_now_ms() < deadline)
        th_sleep_ms(100);
    ck_assert_double_eq(metric(p, "analytics_ingest_held_messages"), 0);
    double unsent = metric(p, "analytics_ingest_unsent_replies_total{kind=\"ack\"}");
    ck_assert_msg(unsent > 0 && unsent < n, "%.0f acks unsent of %ld", unsent, n);
    ck_assert_double_eq(metric(p, "analytics_ingest_acks_total"), n - unsent);

    nats_back();
    wait_consumer_settled(
        "the events whose acks were lost were not acked"); /* after the ack wait */
    th_sleep_ms(1000);
    ck_assert_int_eq(th_ch_count(q), n);
    free(q);
    assert_counted_once(tenant, n);
    /* at least those whose ack was refused came again, and were found */
    double skipped = metric(p, "analytics_ingest_duplicates_skipped_total{tier=\"hot\"}");
    ck_assert_msg(skipped >= unsent, "%.0f found stored, %.0f acks refused", skipped, unsent);
    ck_assert_int_eq(stop_ingest(p, 30000), 0);
}
END_TEST

/* Publish n events of run for the tenant, wait until the hot tier holds
 * total of the tenant's. */
static void load_stored(long n, const char *run, long total)
{
    load(n, tenant, run);
    char *q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id LIKE '%s-%%'", tenant);
    ck_assert_int_eq(wait_count(q, total, 30000), total);
    free(q);
}

/* JetStream delivered the tenant's n stored events again as new, and m
 * more were published: p found the n stored, and every count says n + m. */
static void assert_found_again(const proc *p, long n, long m)
{
    wait_consumer_settled("the stream was not delivered again"); /* all delivered, acked */
    assert_counted_once(tenant, n + m);
    ck_assert_double_eq(metric(p, "analytics_ingest_duplicates_skipped_total{tier=\"hot\"}"), n);
}

/* Stop nats-server, remove the consumer's state file (what a crash loses
 * when it had not flushed it), start it again. */
static void nats_back_without_consumer_state(void)
{
    nats_stop();
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "rm -f %s/nats/jetstream/*/streams/%s/obs/%s/o.dat",
             th_env("ANALYTICS_STACK_DIR"), stream, consumer);
    ck_assert_int_eq(system(cmd), 0);
    nats_back();
}

/* nats-server restarts without the consumer's latest state (a crash loses
 * what it had not flushed; here the state file is removed while it is
 * down): it delivers stored, acked events again as new. Ingest saw the
 * reconnect, so it looks them up instead of inserting them again. */
START_TEST(test_nats_server_back_without_the_consumer_state_counts_every_event_once)
{
    proc *p = start_ingest(NULL);
    load_stored(2000, "stored", 2000);
    wait_consumer_settled("the events were not acked");

    nats_back_without_consumer_state();
    load_stored(500, "after", 2500);
    assert_found_again(p, 2000, 500);
    ck_assert_double_ge(metric(p, "analytics_ingest_lookups_total"), 2000);
    ck_assert_int_eq(stop_ingest(p, 30000), 0);
}
END_TEST

/* The same while no ingest ran: the replica that starts afterwards finds
 * another nats-server than the one recorded in the key-value bucket, so it
 * looks the stored events up too. A plain restart on the same server then
 * looks nothing up. */
START_TEST(test_nats_server_back_without_the_consumer_state_while_ingest_was_down)
{
    proc *p = start_ingest(NULL);
    load_stored(2000, "stored", 2000);
    wait_consumer_settled("the events were not acked");
    ck_assert_int_eq(stop_ingest(p, 30000), 0);

    nats_back_without_consumer_state();
    proc *p2 = start_ingest(NULL);
    ck_assert(log_has(p2, "is not the one ingest last recorded"));
    load_stored(500, "after", 2500);
    assert_found_again(p2, 2000, 500);
    ck_assert_int_eq(stop_ingest(p2, 30000), 0);

    proc *p3 = start_ingest(NULL);
    ck_assert(!log_has(p3, "is not the one ingest last recorded"));
    load_stored(100, "later", 2600);
    wait_consumer_settled("the last events were not acked");
    ck_assert_double_eq(metric(p3, "analytics_ingest_lookups_total"), 0);
    assert_counted_once(tenant, 2600);
    ck_assert_int_eq(stop_ingest(p3, 30000), 0);
}
END_TEST

/* A network blip: ingest's connection drops while the same nats-server
 * stays up (a proxy between them cuts it and refuses connections for 3 s,
 * while 1,000 events are published). The server kept the consumer's state,
 * so what it delivers first after the reconnect is new: nothing is looked
 * up in ClickHouse, and every event is stored once. */
START_TEST(test_a_network_blip_to_the_same_nats_server_looks_nothing_up)
{
    const char *url = th_env("ANALYTICS_NATS_URL");
    const char *colon = strrchr(url, ':');
    ck_assert_ptr_nonnull(colon);
    th_proxy *px = th_proxy_start(atoi(colon + 1));
    char via[128];
    snprintf(via, sizeof(via), "ANALYTICS_NATS_URL=nats://127.0.0.1:%d", th_proxy_port(px));
    proc *p = start_ingest((const char *const[]){via, NULL});
    load_stored(1000, "before", 1000);
    wait_consumer_settled("the events were not acked");

    ck_assert_int_ge(th_proxy_cut(px, 3000), 1);
    load(1000, tenant, "during"); /* a backlog for the reconnect */
    load_stored(500, "after", 2500);
    wait_consumer_settled("the events were not all acked");
    assert_counted_once(tenant, 2500);
    ck_assert_double_eq(metric(p, "analytics_ingest_lookups_total"), 0);
    ck_assert_msg(log_has(p, "to the same nats-server") &&
                      !log_has(p, "are looked up in ClickHouse"),
                  "ingest did not see itself back on the same nats-server; see %s", p->log);
    ck_assert_int_eq(stop_ingest(p, 30000), 0);
    th_proxy_stop(px);
}
END_TEST

/* The durable consumer is deleted (or ANALYTICS_INGEST_CONSUMER renamed)
 * while the stream still holds events ingest stored: the new consumer
 * delivers them all again as first deliveries. They are looked up, not
 * inserted again; events published after it are stored as usual. */
START_TEST(test_consumer_created_again_on_a_full_stream_counts_every_event_once)
{
    proc *p = start_ingest(NULL);
    load_stored(1500, "old", 1500);
    ck_assert_int_eq(stop_ingest(p, 30000), 0);
    jsErrCode jerr = 0;
    ck_assert_int_eq(js_DeleteConsumer(js, stream, consumer, NULL, &jerr), NATS_OK);

    proc *p2 = start_ingest(NULL);
    ck_assert(log_has(p2, "an earlier consumer may have stored them"));
    load_stored(500, "new", 2000);
    assert_found_again(p2, 1500, 500);
    ck_assert_double_eq(metric(p2, "analytics_ingest_acks_total"), 2000);

    /* a restart keeps the consumer and its mark: nothing comes again */
    ck_assert_int_eq(stop_ingest(p2, 30000), 0);
    proc *p3 = start_ingest(NULL);
    ck_assert(!log_has(p3, "created durable pull consumer"));
    load_stored(100, "later", 2100);
    assert_counted_once(tenant, 2100);
    ck_assert_int_eq(stop_ingest(p3, 30000), 0);
}
END_TEST

/* Two events of one tenant share an id but not their type (a producer's
 * aggregate id, order.created then order.cancelled). The second comes after
 * its consumer was created again on the full stream, so it is looked up:
 * the first's row must not be taken for it. */
START_TEST(test_a_look_up_tells_apart_events_that_share_an_id)
{
    proc *p = start_ingest(NULL);
    /* a minute apart: the audit tier's key has no type, so equal seconds would collapse */
    char t1[AN_TIME_ISO_LEN], t2[AN_TIME_ISO_LEN], *created, *cancelled;
    iso_ago(120000, t1);
    iso_ago(60000, t2);
    ck_assert(asprintf(&created,
                       "{\"id\":\"order-7\",\"type\":\"order.created\",\"tenantId\":\"%s\","
                       "\"occurredAt\":\"%s\",\"data\":{\"total\":30}}",
                       tenant, t1) > 0);
    ck_assert(asprintf(&cancelled,
                       "{\"id\":\"order-7\",\"type\":\"order.cancelled\",\"tenantId\":\"%s\","
                       "\"occurredAt\":\"%s\",\"data\":{\"reason\":\"late\"}}",
                       tenant, t2) > 0);
    publish("shop.order.created", created);
    char *q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id = '%s'", tenant);
    ck_assert_int_eq(wait_count(q, 1, 20000), 1);
    ck_assert_int_eq(stop_ingest(p, 30000), 0);

    publish("shop.order.cancelled", cancelled);
    jsErrCode jerr = 0;
    ck_assert_int_eq(js_DeleteConsumer(js, stream, consumer, NULL, &jerr), NATS_OK);
    proc *p2 = start_ingest(NULL);
    wait_consumer_settled("the stream was not delivered again");
    ck_assert_double_eq(metric(p2, "analytics_ingest_duplicates_skipped_total{tier=\"hot\"}"), 1);
    ck_assert_int_eq(wait_count(q, 2, 5000), 2);
    ck_assert_int_eq(count_q("SELECT count() FROM analytics.events WHERE tenant_id = '%s' AND "
                             "event_id = 'order-7' AND event_name = 'order.cancelled'",
                             tenant),
                     1);
    ck_assert_int_eq(count_q("SELECT count() FROM analytics_audit.events WHERE tenant_id = '%s' "
                             "AND event_id = 'order-7'",
                             tenant),
                     2);
    ck_assert_int_eq(stop_ingest(p2, 30000), 0);
    free(q);
    free(created);
    free(cancelled);
}
END_TEST

/* The durable consumer is deleted under a running replica, and another
 * replica creates it again with its mark: the new consumer delivers the
 * stored events to both as first deliveries. The running one looks them up
 * too: until it has read the new consumer's mark itself, it looks up every
 * message. */
START_TEST(test_consumer_created_again_by_another_replica_counts_every_event_once)
{
    proc *p1 = start_ingest(NULL);
    load_stored(1500, "old", 1500);
    wait_consumer_settled("the events were not acked");
    jsErrCode jerr = 0;
    ck_assert_int_eq(js_DeleteConsumer(js, stream, consumer, NULL, &jerr), NATS_OK);
    ck_assert_msg(th_wait_log(p1->log, "fetch failed", 10000), "see %s", p1->log);

    /* one message per fetch: the first replica gets its share too */
    proc *p2 = start_ingest((const char *const[]){"ANALYTICS_INGEST_FETCH=1", NULL});
    ck_assert(log_has(p2, "an earlier consumer may have stored them"));
    load_stored(500, "new", 2000);
    wait_consumer_settled("the stream was not delivered again");
    assert_counted_once(tenant, 2000);
    const char *skipped = "analytics_ingest_duplicates_skipped_total{tier=\"hot\"}";
    ck_assert_double_eq(metric(p1, skipped) + metric(p2, skipped), 1500);
    ck_assert_int_eq(stop_ingest(p1, 30000), 0);
    ck_assert_int_eq(stop_ingest(p2, 30000), 0);
}
END_TEST

/* The stream is deleted and created again, so its sequences start again.
 * A dead letter of the new stream that is looked up (here redelivered
 * after a kill -9) must not be taken for the old stream's dead letter with
 * the same subject and sequence: it is matched by its raw bytes too. */
START_TEST(test_a_dead_letter_of_a_new_stream_is_not_taken_for_an_old_one)
{
    proc *p = start_ingest(NULL);
    const char *bad_old = "{\"id\":\"old-stream\",\"type\":";
    ck_assert_int_eq(publish("courses.lesson.completed", bad_old), 1);
    char *q =
        sqlf("SELECT count() FROM analytics_audit.dead_letters WHERE subject LIKE '%s.%%'", prefix);
    ck_assert_int_eq(wait_count(q, 1, 20000), 1);
    ck_assert_int_eq(stop_ingest(p, 30000), 0);
    jsErrCode jerr = 0;
    ck_assert_int_eq(js_DeleteStream(js, stream, NULL, &jerr), NATS_OK);

    /* a new stream (made by ingest); its first message is held, then
     * ingest is killed before it wrote it */
    proc *p2 = start_ingest((const char *const[]){"ANALYTICS_INGEST_BATCH_AGE=30s",
                                                  "ANALYTICS_INGEST_ACK_WAIT=2s", NULL});
    const char *bad_new = "{\"id\":\"new-stream\",\"type\":";
    ck_assert_int_eq(publish("courses.lesson.completed", bad_new), 1);
    int64_t deadline = th_now_ms() + 10000;
    while (metric(p2, "analytics_ingest_messages_total{delivery=\"first\"}") < 1) {
        ck_assert_msg(th_now_ms() < deadline, "ingest did not take the message");
        th_sleep_ms(50);
    }
    th_kill(p2->pid);
    p2->pid = 0;

    proc *p3 = start_ingest((const char *const[]){"ANALYTICS_INGEST_ACK_WAIT=2s", NULL});
    ck_assert_int_eq(wait_count(q, 2, 20000), 2);
    free(q);
    wait_consumer_settled("the dead letter was not acked");
    ck_assert_double_eq(metric(p3, "analytics_ingest_lookups_total"), 1);
    q = sqlf("SELECT count() FROM analytics_audit.dead_letters WHERE subject LIKE '%s.%%' AND "
             "stream_seq = 1 AND raw = '%s'",
             prefix, bad_new);
    ck_assert_int_eq(count_q("%s", q), 1);
    free(q);
    ck_assert_int_eq(stop_ingest(p3, 30000), 0);
}
END_TEST

/* ingest exits at the test hook; the restarted one gets the unacked
 * messages again and must not store them twice. */
static void crash_and_recover(const char *hook, long n, const char *skipped_series)
{
    char crash[64];
    snprintf(crash, sizeof(crash), "ANALYTICS_INGEST_TEST_CRASH=%s", hook);
    const char *env[] = {crash, "ANALYTICS_INGEST_ACK_WAIT=2s", "ANALYTICS_INGEST_BATCH_AGE=500ms",
                         NULL};
    proc *p = start_ingest(env);
    publish("courses.broken", "{\"not\": \"an event\""); /* a dead letter in the batch */
    load(n, tenant, hook);
    int st = 0;
    ck_assert_msg(th_wait(p->pid, 30000, &st, NULL) == 0, "ingest did not exit at the hook");
    p->pid = 0;
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 70, "exit status %d", st);
    ck_assert(log_has(p, "ANALYTICS_INGEST_TEST_CRASH"));
    /* it did write before dying, and nothing was acked */
    long long stored = events_of("analytics_audit.events", tenant, false);
    ck_assert_msg(stored > 0, "nothing was written before the crash");
    jsConsumerInfo *ci = NULL;
    ck_assert(js_GetConsumerInfo(&ci, js, stream, consumer, NULL, NULL) == NATS_OK);
    ck_assert_int_eq((long long)ci->AckFloor.Stream, 0);
    jsConsumerInfo_Destroy(ci);

    proc *p2 = start_ingest((const char *const[]){"ANALYTICS_INGEST_ACK_WAIT=2s", NULL});
    char *q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id LIKE '%s-%%'", tenant);
    ck_assert_int_eq(wait_count(q, n, 60000), n);
    free(q);
    th_sleep_ms(3000); /* an ack wait more: no late duplicate arrives */
    assert_counted_once(tenant, n);
    ck_assert_int_eq(count_q("SELECT count() FROM analytics_audit.dead_letters WHERE subject = "
                             "'%s.courses.broken'",
                             prefix),
                     1);
    ck_assert_msg(metric(p2, "analytics_ingest_messages_total{delivery=\"redelivery\"}") > 0,
                  "the restarted ingest got no redelivery");
    ck_assert_msg(metric(p2, skipped_series) > 0, "%s is 0: nothing was found stored",
                  skipped_series);
    ck_assert_int_eq(stop_ingest(p2, 30000), 0);
}

START_TEST(test_crash_after_insert_before_ack_counts_nothing_twice)
{
    crash_and_recover("after_insert", 3000,
                      "analytics_ingest_duplicates_skipped_total{tier=\"hot\"}");
}
END_TEST

START_TEST(test_crash_between_tiers_writes_the_missing_tier_once)
{
    crash_and_recover("between_tiers", 1500,
                      "analytics_ingest_duplicates_skipped_total{tier=\"audit\"}");
    /* the hot tier was written only after the restart: it skipped nothing */
}
END_TEST

START_TEST(test_kill_9_mid_stream_and_restart_counts_every_event_once)
{
    const char *env[] = {"ANALYTICS_INGEST_ACK_WAIT=2s", "ANALYTICS_INGEST_BATCH_ROWS=2000",
                         "ANALYTICS_INGEST_FETCH=500", NULL};
    proc *p = start_ingest(env);
    const long n = 20000;
    /* publish in the background, kill ingest while it takes them in */
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "%s -n %ld -s %s -p %s -t 3 -r k9 >/dev/null 2>&1 &",
             th_bin("tests/helpers/ingest_load"), n, prefix, tenant);
    ck_assert_int_eq(system(cmd), 0);
    char *q = sqlf("SELECT count() FROM analytics.events WHERE tenant_id LIKE '%s-%%'", tenant);
    int64_t deadline = th_now_ms() + 30000;
    while (th_ch_count(q) < 2000 && th_now_ms() < deadline)
        th_sleep_ms(20);
    kill(p->pid, SIGKILL);
    int st;
    th_wait(p->pid, 10000, &st, NULL);
    p->pid = 0;
    long long at_kill = th_ch_count(q);
    ck_assert_msg(at_kill > 0 && at_kill < n, "killed with %lld of %ld stored", at_kill, n);

    proc *p2 = start_ingest(env);
    ck_assert_int_eq(wait_count(q, n, 90000), n);
    free(q);
    th_sleep_ms(3000);
    assert_counted_once(tenant, n);
    ck_assert_int_eq(stop_ingest(p2, 30000), 0);
}
END_TEST

Suite *ingest_suite(void)
{
    Suite *s = suite_create("ingest");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_unchecked_fixture(tc, NULL, recover_stack);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_events_arrive_in_both_tiers_with_the_right_columns);
    tcase_add_test(tc, test_no_pii_key_or_pii_looking_value_reaches_the_hot_tier);
    tcase_add_test(tc, test_same_actor_hashes_the_same_way_and_rotation_shows_the_key_id);
    tcase_add_test(tc, test_bad_events_are_dead_lettered_with_their_reason_between_good_ones);
    tcase_add_test(tc, test_a_message_larger_than_the_batch_byte_budget_is_still_delivered);
    tcase_add_test(tc, test_two_replicas_split_the_stream_without_overlap);
    tcase_add_test(tc, test_bad_configuration_stops_ingest_with_a_clear_message);
    tcase_add_test(tc, test_stream_replicas_are_applied_or_the_shortfall_is_logged);
    suite_add_tcase(s, tc);
    return s;
}

Suite *ingest_recovery_suite(void)
{
    Suite *s = suite_create("ingest_recovery");
    TCase *tc = tcase_create("recovery");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_unchecked_fixture(tc, NULL, recover_stack);
    tcase_set_timeout(tc, 180);
    tcase_add_test(tc, test_clickhouse_stopped_mid_stream_loses_nothing_and_counts_nothing_twice);
    tcase_add_test(tc, test_clickhouse_stopped_during_a_streaming_insert_counts_every_event_once);
    tcase_add_test(tc, test_crash_after_insert_before_ack_counts_nothing_twice);
    tcase_add_test(tc, test_crash_between_tiers_writes_the_missing_tier_once);
    tcase_add_test(tc, test_kill_9_mid_stream_and_restart_counts_every_event_once);
    tcase_add_test(tc, test_nats_server_restarted_mid_stream_counts_every_event_once);
    tcase_add_test(tc, test_consumer_created_again_on_a_full_stream_counts_every_event_once);
    tcase_add_test(tc, test_consumer_created_again_by_another_replica_counts_every_event_once);
    tcase_add_test(tc, test_a_look_up_tells_apart_events_that_share_an_id);
    tcase_add_test(tc, test_a_dead_letter_of_a_new_stream_is_not_taken_for_an_old_one);
    tcase_add_test(tc, test_a_batch_filling_longer_than_the_ack_wait_is_not_redelivered);
    tcase_add_test(tc, test_sigterm_while_clickhouse_hangs_exits_within_the_drain_timeout);
    tcase_add_test(tc, test_nats_server_back_without_the_consumer_state_counts_every_event_once);
    tcase_add_test(tc, test_nats_server_back_without_the_consumer_state_while_ingest_was_down);
    tcase_add_test(tc, test_a_network_blip_to_the_same_nats_server_looks_nothing_up);
    tcase_add_test(tc, test_acks_refused_while_nats_is_down_are_counted_and_nothing_counts_twice);
    suite_add_tcase(s, tc);
    return s;
}
