/*
 * The service framework end to end: build/tests/helpers/testsvc runs as
 * real processes against the stack's nats-server; this test talks to them
 * with plain nats.c requests and checks what a caller sees (envelopes,
 * headers, discovery documents, JetStream contents), never the framework's
 * own view of itself.
 */
#include "common/events.h"
#include "common/service.h"
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

#define SECRET "it-secret-0123456789abcdefghijklmnopqrstuv"

/* ------------------------------------------------------------ harness bits */

static natsConnection *nc;

#define MAX_PROCS 4
typedef struct proc {
    pid_t pid;
    char name[128];
    char id[64];
    char log[512];
} proc;
static proc procs[MAX_PROCS];
static int nprocs;

static void setup(void)
{
    natsStatus s = natsConnection_ConnectTo(&nc, th_env("ANALYTICS_NATS_URL"));
    ck_assert_msg(s == NATS_OK, "connect: %s", natsStatus_GetText(s));
}

static void teardown(void)
{
    for (int i = 0; i < nprocs; i++)
        th_kill(procs[i].pid);
    nprocs = 0;
    natsConnection_Destroy(nc);
    nc = NULL;
    nats_CloseAndWait(2000);
}

static bool log_has(const proc *p, const char *needle)
{
    return th_log_has(p->log, needle);
}

static bool wait_log(const proc *p, const char *needle, int timeout_ms)
{
    return th_wait_log(p->log, needle, timeout_ms);
}

/* Start testsvc named name with extra "K=V" entries (NULL-terminated, may be
 * NULL) and wait until it serves; fills the instance id from its log. */
static proc *start_svc(const char *name, const char *const *extra)
{
    ck_assert_int_lt(nprocs, MAX_PROCS);
    proc *p = &procs[nprocs++];
    memset(p, 0, sizeof(*p));
    snprintf(p->name, sizeof(p->name), "%s", name);
    snprintf(p->log, sizeof(p->log), "%s/%s-%d.log", th_env("ANALYTICS_STACK_DIR"), name, nprocs);
    static char env[16][512];
    int n = 0;
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_TESTSVC_NAME=%s", name);
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_JWT_SECRET=%s", SECRET);
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_LOG_LEVEL=debug");
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_HTTP_ADDR=127.0.0.1:0");
    for (int i = 0; extra && extra[i] && n < 15; i++)
        snprintf(env[n++], sizeof(env[0]), "%s", extra[i]);
    char *envp[17];
    for (int i = 0; i < n; i++)
        envp[i] = env[i];
    envp[n] = NULL;
    char *argv[] = {"testsvc", NULL};
    p->pid = th_spawn(th_bin("tests/helpers/testsvc"), argv, envp, p->log);
    ck_assert_msg(wait_log(p, "\"msg\":\"started ", 20000), "%s did not start; see %s", name,
                  p->log);
    char *s = th_read_file(p->log);
    char *at = strstr(s, "(id ");
    ck_assert_ptr_nonnull(at);
    sscanf(at + 4, "%63[A-Za-z0-9]", p->id);
    free(s);
    ck_assert_int_eq(strlen(p->id), 22);
    return p;
}

/* The HTTP port p logged at start ("... (port N)"), 0 when none. */
static int http_port_of(const proc *p)
{
    char *s = th_read_file(p->log);
    const char *at = strstr(s, "/healthz /readyz /metrics on ");
    int port = 0;
    if (at) {
        const char *pp = strstr(at, "(port ");
        if (pp)
            port = atoi(pp + 6);
    }
    free(s);
    return port;
}

/* SIGTERM p and return its exit status (as waitpid) or -1 on timeout. */
static int stop_svc(proc *p, int timeout_ms)
{
    kill(p->pid, SIGTERM);
    int st = 0;
    if (th_wait(p->pid, timeout_ms, &st, NULL) != 0)
        return -1;
    p->pid = 0;
    return st;
}

/* HS256 token for sub/tid (tid NULL: none) with scope (may be NULL) and the
 * roles ["analyst"], expiring exp_in seconds from now; signed with secret.
 * Caller frees. */
static char *token_with(const char *secret, const char *sub, const char *tid, const char *scope,
                        long exp_in)
{
    return th_bearer(secret, sub, tid, scope, "[\"analyst\"]", exp_in);
}

static char *token(const char *sub, const char *tid)
{
    return token_with(SECRET, sub, tid, NULL, 3600);
}

/* A request with headers {k, v, ..., NULL} (may be NULL). Returns the reply
 * or NULL, with *st the request's status. */
static natsMsg *request(const char *subject, const char *body, const char *const *headers,
                        int64_t timeout_ms, natsStatus *st)
{
    natsMsg *m = NULL, *reply = NULL;
    ck_assert(natsMsg_Create(&m, subject, NULL, body, body ? (int)strlen(body) : 0) == NATS_OK);
    for (int i = 0; headers && headers[i]; i += 2)
        ck_assert(natsMsgHeader_Set(m, headers[i], headers[i + 1]) == NATS_OK);
    natsStatus s = natsConnection_RequestMsg(&reply, nc, m, timeout_ms);
    natsMsg_Destroy(m);
    if (st)
        *st = s;
    return s == NATS_OK ? reply : NULL;
}

static char *subject_of(const proc *p, const char *verb)
{
    static char s[256];
    snprintf(s, sizeof(s), "analytics.%s.%s", p->name, verb);
    return s;
}

static const char *header(natsMsg *m, const char *k)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, k, &v) == NATS_OK ? v : NULL;
}

static cJSON *json_of(natsMsg *m)
{
    cJSON *j = cJSON_ParseWithLength(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
    ck_assert_msg(j != NULL, "reply is not JSON: %.*s", natsMsg_GetDataLength(m),
                  natsMsg_GetData(m));
    return j;
}

static const char *jstr(const cJSON *o, const char *path)
{
    /* "a.b.c" */
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    const cJSON *cur = o;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok; tok = strtok_r(NULL, ".", &save))
        cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
    return cJSON_IsString(cur) ? cur->valuestring : NULL;
}

static const cJSON *jget(const cJSON *o, const char *path)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", path);
    const cJSON *cur = o;
    for (char *save = NULL, *tok = strtok_r(buf, ".", &save); tok; tok = strtok_r(NULL, ".", &save))
        cur = cJSON_GetObjectItemCaseSensitive(cur, tok);
    return cur;
}

/* Check an error reply: envelope code, HTTP header, message header. */
static void assert_error(natsMsg *m, const char *code, const char *http)
{
    ck_assert_ptr_nonnull(m);
    cJSON *j = json_of(m);
    ck_assert_msg(jstr(j, "error.code") && strcmp(jstr(j, "error.code"), code) == 0,
                  "expected %s, got %.*s", code, natsMsg_GetDataLength(m), natsMsg_GetData(m));
    ck_assert_ptr_nonnull(jstr(j, "error.message"));
    ck_assert(cJSON_IsObject(jget(j, "error.details")));
    ck_assert_ptr_null(jget(j, "data"));
    ck_assert_str_eq(header(m, "Nats-Service-Error-Code"), http);
    ck_assert_str_eq(header(m, "Nats-Service-Error"), jstr(j, "error.message"));
    cJSON_Delete(j);
}

/* Publish to subject with a fresh inbox and collect up to max replies for
 * wait_ms. Returns the count; replies go to out (caller destroys). */
static int collect(const char *subject, const char *body, int max, int wait_ms, natsMsg **out)
{
    natsInbox *inbox = NULL;
    natsSubscription *sub = NULL;
    ck_assert(natsInbox_Create(&inbox) == NATS_OK);
    ck_assert(natsConnection_SubscribeSync(&sub, nc, inbox) == NATS_OK);
    ck_assert(natsConnection_PublishRequestString(nc, subject, inbox, body ? body : "") == NATS_OK);
    int n = 0;
    int64_t deadline = th_now_ms() + wait_ms;
    while (n < max) {
        int64_t left = deadline - th_now_ms();
        if (left <= 0 || natsSubscription_NextMsg(&out[n], sub, left) != NATS_OK)
            break;
        n++;
    }
    natsSubscription_Destroy(sub);
    natsInbox_Destroy(inbox);
    return n;
}

static cJSON *srv_one(const char *subject)
{
    natsStatus st;
    natsMsg *m = request(subject, "", NULL, 3000, &st);
    ck_assert_msg(m != NULL, "%s: %s", subject, natsStatus_GetText(st));
    cJSON *j = json_of(m);
    natsMsg_Destroy(m);
    return j;
}

static const cJSON *endpoint_named(const cJSON *doc, const char *name)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(doc, "endpoints"))
    {
        if (jstr(e, "name") && strcmp(jstr(e, "name"), name) == 0)
            return e;
    }
    return NULL;
}

static double jnum(const cJSON *o, const char *path)
{
    const cJSON *v = jget(o, path);
    ck_assert_msg(cJSON_IsNumber(v), "%s is not a number", path);
    return v->valuedouble;
}

/* ------------------------------------------------------------------ tests */

START_TEST(test_service_echo_replies_data_envelope_and_echoes_correlation_id)
{
    char *name = th_unique("echo");
    proc *p = start_svc(name, NULL);
    char *auth = token("u1", "t1");
    const char *h[] = {"Authorization", auth, "Correlation-Id", "corr-abc.123", NULL};
    natsStatus st;
    natsMsg *m = request(subject_of(p, "echo"), "{\"a\":1,\"s\":\"x\"}", h, 3000, &st);
    ck_assert_msg(m != NULL, "echo: %s", natsStatus_GetText(st));
    ck_assert_ptr_null(header(m, "Nats-Service-Error-Code"));
    ck_assert_str_eq(header(m, "Correlation-Id"), "corr-abc.123");
    cJSON *j = json_of(m);
    ck_assert_ptr_null(jget(j, "error"));
    ck_assert_int_eq((int)jnum(j, "data.echo.a"), 1);
    ck_assert_str_eq(jstr(j, "data.echo.s"), "x");
    ck_assert_str_eq(jstr(j, "data.instance"), p->id);
    ck_assert_str_eq(jstr(j, "data.user"), "u1");
    cJSON_Delete(j);
    natsMsg_Destroy(m);

    /* no correlation id: one is made up, sent back, and is what the handler saw */
    const char *h2[] = {"Authorization", auth, NULL};
    m = request(subject_of(p, "whoami"), NULL, h2, 3000, &st);
    ck_assert_ptr_nonnull(m);
    const char *corr = header(m, "Correlation-Id");
    ck_assert_ptr_nonnull(corr);
    ck_assert_int_ge(strlen(corr), 16);
    j = json_of(m);
    ck_assert_str_eq(jstr(j, "data.correlationId"), corr);
    ck_assert_str_eq(jstr(j, "data.tenant"), "t1");
    ck_assert_str_eq(cJSON_GetArrayItem(jget(j, "data.roles"), 0)->valuestring, "analyst");
    cJSON_Delete(j);
    /* ... and it is on the log line of that request */
    char needle[200];
    snprintf(needle, sizeof(needle), "\"correlationId\":\"%s\"", corr);
    ck_assert(wait_log(p, needle, 2000));
    natsMsg_Destroy(m);

    /* X-Correlation-Id is accepted too; an empty body echoes null */
    const char *h3[] = {"Authorization", auth, "X-Correlation-Id", "from-gateway", NULL};
    m = request(subject_of(p, "echo"), "", h3, 3000, &st);
    ck_assert_str_eq(header(m, "Correlation-Id"), "from-gateway");
    j = json_of(m);
    ck_assert(cJSON_IsNull(jget(j, "data.echo")));
    cJSON_Delete(j);
    natsMsg_Destroy(m);

    ck_assert_int_eq(stop_svc(p, 10000), 0);
    free(auth);
    free(name);
}
END_TEST

START_TEST(test_service_rejects_missing_bad_and_foreign_credentials)
{
    char *name = th_unique("auth");
    proc *p = start_svc(name, NULL);
    natsStatus st;

    /* no token */
    natsMsg *m = request(subject_of(p, "echo"), "{}", NULL, 3000, &st);
    assert_error(m, "unauthenticated", "401");
    natsMsg_Destroy(m);

    /* signed with another secret */
    char *forged = token_with("not-the-secret-0123456789abcdefghijklmn", "u1", "t1", NULL, 3600);
    const char *h1[] = {"Authorization", forged, NULL};
    m = request(subject_of(p, "echo"), "{}", h1, 3000, &st);
    assert_error(m, "unauthenticated", "401");
    natsMsg_Destroy(m);

    /* expired */
    char *expired = token_with(SECRET, "u1", "t1", NULL, -3600);
    const char *h2[] = {"Authorization", expired, NULL};
    m = request(subject_of(p, "echo"), "{}", h2, 3000, &st);
    assert_error(m, "unauthenticated", "401");
    cJSON *j = json_of(m);
    ck_assert_ptr_nonnull(strstr(jstr(j, "error.message"), "expired"));
    cJSON_Delete(j);
    natsMsg_Destroy(m);

    /* another tenant: 403 naming the field; own tenant fine */
    char *t1 = token("u1", "t1");
    const char *h3[] = {"Authorization", t1, NULL};
    m = request(subject_of(p, "tenant-get"), "{\"tenantId\":\"t2\"}", h3, 3000, &st);
    assert_error(m, "permission_denied", "403");
    j = json_of(m);
    ck_assert_str_eq(jstr(j, "error.details.field"), "tenantId");
    cJSON_Delete(j);
    natsMsg_Destroy(m);
    m = request(subject_of(p, "tenant-get"), "{\"tenantId\":\"t1\"}", h3, 3000, &st);
    j = json_of(m);
    ck_assert_str_eq(jstr(j, "data.name"), "tenant t1");
    cJSON_Delete(j);
    natsMsg_Destroy(m);

    /* a platform admin may read any tenant */
    char *admin = token_with(SECRET, "ops", NULL, "platform:admin", 3600);
    const char *h4[] = {"Authorization", admin, NULL};
    m = request(subject_of(p, "tenant-get"), "{\"tenantId\":\"t2\"}", h4, 3000, &st);
    j = json_of(m);
    ck_assert_str_eq(jstr(j, "data.tenantId"), "t2");
    cJSON_Delete(j);
    natsMsg_Destroy(m);

    /* malformed JSON, with good credentials: 400 before the handler */
    m = request(subject_of(p, "tenant-get"), "{\"tenantId\":", h3, 3000, &st);
    assert_error(m, "invalid_argument", "400");
    natsMsg_Destroy(m);
    m = request(subject_of(p, "echo"), "{} trailing", h3, 3000, &st);
    assert_error(m, "invalid_argument", "400");
    natsMsg_Destroy(m);

    /* a handler's own error, with its field */
    m = request(subject_of(p, "fail"),
                "{\"code\":\"not_found\",\"message\":\"no such export\",\"field\":\"id\"}", h3,
                3000, &st);
    assert_error(m, "not_found", "404");
    j = json_of(m);
    ck_assert_str_eq(jstr(j, "error.message"), "no such export");
    ck_assert_str_eq(jstr(j, "error.details.field"), "id");
    cJSON_Delete(j);
    natsMsg_Destroy(m);
    /* every status maps to its number */
    const char *codes[][2] = {{"already_exists", "409"},
                              {"failed_precondition", "422"},
                              {"resource_exhausted", "429"},
                              {"unavailable", "503"},
                              {"permission_denied", "403"}};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        char body[128];
        snprintf(body, sizeof(body), "{\"code\":\"%s\"}", codes[i][0]);
        m = request(subject_of(p, "fail"), body, h3, 3000, &st);
        assert_error(m, codes[i][0], codes[i][1]);
        natsMsg_Destroy(m);
    }
    /* internal errors keep their details in the log, not in the reply */
    m = request(subject_of(p, "fail"),
                "{\"code\":\"internal\",\"message\":\"db password=hunter2\"}", h3, 3000, &st);
    assert_error(m, "internal", "500");
    j = json_of(m);
    ck_assert_ptr_null(strstr(jstr(j, "error.message"), "hunter2"));
    ck_assert_ptr_nonnull(strstr(jstr(j, "error.message"), header(m, "Correlation-Id")));
    cJSON_Delete(j);
    natsMsg_Destroy(m);
    ck_assert(wait_log(p, "db password=hunter2", 2000));

    ck_assert_int_eq(stop_svc(p, 10000), 0);
    free(admin);
    free(t1);
    free(expired);
    free(forged);
    free(name);
}
END_TEST

START_TEST(test_service_discovery_answers_adr32_shapes_and_exact_stats)
{
    char *name = th_unique("disc");
    proc *p = start_svc(name, NULL);
    char subj[256];

    /* PING with and without the name and id */
    natsMsg *replies[64];
    int n = collect("$SRV.PING", NULL, 64, 1000, replies);
    int ours = 0;
    for (int i = 0; i < n; i++) {
        cJSON *j = json_of(replies[i]);
        if (jstr(j, "name") && strcmp(jstr(j, "name"), name) == 0) {
            ours++;
            ck_assert_str_eq(jstr(j, "type"), "io.nats.micro.v1.ping_response");
            ck_assert_str_eq(jstr(j, "id"), p->id);
            ck_assert_str_eq(jstr(j, "version"), "1.2.3");
            ck_assert(cJSON_IsObject(jget(j, "metadata")));
        }
        cJSON_Delete(j);
        natsMsg_Destroy(replies[i]);
    }
    ck_assert_int_eq(ours, 1);
    snprintf(subj, sizeof(subj), "$SRV.PING.%s", name);
    n = collect(subj, NULL, 8, 500, replies);
    ck_assert_int_eq(n, 1);
    natsMsg_Destroy(replies[0]);
    snprintf(subj, sizeof(subj), "$SRV.PING.%s.%s", name, p->id);
    cJSON *ping = srv_one(subj);
    ck_assert_str_eq(jstr(ping, "id"), p->id);
    cJSON_Delete(ping);
    snprintf(subj, sizeof(subj), "$SRV.PING.%s.NOSUCHID", name);
    n = collect(subj, NULL, 8, 300, replies);
    ck_assert_int_eq(n, 0);

    /* INFO */
    snprintf(subj, sizeof(subj), "$SRV.INFO.%s", name);
    cJSON *info = srv_one(subj);
    ck_assert_str_eq(jstr(info, "type"), "io.nats.micro.v1.info_response");
    ck_assert_str_eq(jstr(info, "name"), name);
    ck_assert_str_eq(jstr(info, "id"), p->id);
    ck_assert_str_eq(jstr(info, "description"), "test service of the framework");
    ck_assert_int_eq(cJSON_GetArraySize(jget(info, "endpoints")), 8);
    const cJSON *echo = endpoint_named(info, "echo");
    ck_assert_ptr_nonnull(echo);
    char want[256];
    snprintf(want, sizeof(want), "analytics.%s.echo", name);
    ck_assert_str_eq(jstr(echo, "subject"), want);
    ck_assert_str_eq(jstr(echo, "queue_group"), name);
    ck_assert_str_eq(jstr(echo, "metadata.auth"), "bearer");
    ck_assert_str_eq(jstr(endpoint_named(info, "slow"), "metadata.auth"), "none");
    ck_assert_str_eq(jstr(endpoint_named(info, "sleepy"), "metadata.timeout_ms"), "300");
    cJSON_Delete(info);

    /* Make a known set of requests, then STATS must count exactly those. */
    char *auth = token("u1", "t1");
    const char *h[] = {"Authorization", auth, NULL};
    natsStatus st;
    for (int i = 0; i < 3; i++)
        natsMsg_Destroy(request(subject_of(p, "echo"), "{}", h, 3000, &st));
    natsMsg_Destroy(request(subject_of(p, "echo"), "{}", NULL, 3000, &st)); /* 401 */
    natsMsg_Destroy(request(subject_of(p, "echo"), "{bad", h, 3000, &st));  /* 400 */
    natsMsg_Destroy(request(subject_of(p, "fail"), "{\"code\":\"not_found\",\"message\":\"gone\"}",
                            h, 3000, &st));
    natsMsg_Destroy(request(subject_of(p, "fail"), "{\"code\":\"already_exists\"}", h, 3000, &st));
    natsMsg_Destroy(request(subject_of(p, "slow"), "{\"ms\":50}", NULL, 3000, &st));

    snprintf(subj, sizeof(subj), "$SRV.STATS.%s.%s", name, p->id);
    cJSON *stats = srv_one(subj);
    ck_assert_str_eq(jstr(stats, "type"), "io.nats.micro.v1.stats_response");
    ck_assert_str_eq(jstr(stats, "version"), "1.2.3");
    const char *started = jstr(stats, "started");
    ck_assert_ptr_nonnull(started);
    ck_assert_int_eq((int)strlen(started), 30); /* 2026-01-02T03:04:05.123456789Z */
    ck_assert(started[4] == '-' && started[10] == 'T' && started[29] == 'Z');
    const cJSON *e = endpoint_named(stats, "echo");
    ck_assert_int_eq((int)jnum(e, "num_requests"), 5);
    ck_assert_int_eq((int)jnum(e, "num_errors"), 2);
    ck_assert_ptr_nonnull(strstr(jstr(e, "last_error"), "400:"));
    ck_assert_str_eq(jstr(e, "queue_group"), name);
    double total = jnum(e, "processing_time"), avg = jnum(e, "average_processing_time");
    ck_assert(total > 0);
    ck_assert_int_eq((long long)avg, (long long)total / 5);
    e = endpoint_named(stats, "fail");
    ck_assert_int_eq((int)jnum(e, "num_requests"), 2);
    ck_assert_int_eq((int)jnum(e, "num_errors"), 2);
    ck_assert_str_eq(jstr(e, "last_error"), "409:failed"); /* testsvc's default message */
    e = endpoint_named(stats, "slow");
    ck_assert_int_eq((int)jnum(e, "num_requests"), 1);
    ck_assert_int_eq((int)jnum(e, "num_errors"), 0);
    ck_assert_str_eq(jstr(e, "last_error"), "");
    ck_assert(jnum(e, "processing_time") >= 50e6); /* nanoseconds: it slept 50 ms */
    e = endpoint_named(stats, "whoami");
    ck_assert_int_eq((int)jnum(e, "num_requests"), 0);
    ck_assert_int_eq((int)jnum(e, "average_processing_time"), 0);
    cJSON_Delete(stats);
    /* discovery requests are not counted as endpoint requests, and the
     * unnamed form answers the same document */
    n = collect("$SRV.STATS", NULL, 64, 1000, replies);
    ours = 0;
    for (int i = 0; i < n; i++) {
        cJSON *j = json_of(replies[i]);
        if (jstr(j, "name") && strcmp(jstr(j, "name"), name) == 0) {
            ours++;
            ck_assert_int_eq((int)jnum(endpoint_named(j, "echo"), "num_requests"), 5);
        }
        cJSON_Delete(j);
        natsMsg_Destroy(replies[i]);
    }
    ck_assert_int_eq(ours, 1);
    ck_assert_int_eq(stop_svc(p, 10000), 0);
    free(auth);
    free(name);
}
END_TEST

START_TEST(test_service_replicas_share_the_queue_group)
{
    char *name = th_unique("qg");
    proc *a = start_svc(name, NULL);
    proc *b = start_svc(name, NULL);
    char *auth = token("u1", "t1");
    char subj[256];
    snprintf(subj, sizeof(subj), "$SRV.PING.%s", name);
    natsMsg *pings[8];
    int n = collect(subj, NULL, 8, 500, pings);
    ck_assert_int_eq(n, 2);
    for (int i = 0; i < n; i++)
        natsMsg_Destroy(pings[i]);

    /* 200 requests, each with its own reply subject under one inbox */
    enum { N = 200 };
    natsInbox *inbox = NULL;
    natsSubscription *sub = NULL;
    ck_assert(natsInbox_Create(&inbox) == NATS_OK);
    char wildcard[256];
    snprintf(wildcard, sizeof(wildcard), "%s.*", inbox);
    ck_assert(natsConnection_SubscribeSync(&sub, nc, wildcard) == NATS_OK);
    for (int i = 0; i < N; i++) {
        char reply[256], body[64];
        snprintf(reply, sizeof(reply), "%s.%d", inbox, i);
        snprintf(body, sizeof(body), "{\"i\":%d}", i);
        natsMsg *m = NULL;
        ck_assert(natsMsg_Create(&m, subject_of(a, "echo"), reply, body, (int)strlen(body)) ==
                  NATS_OK);
        natsMsgHeader_Set(m, "Authorization", auth);
        ck_assert(natsConnection_PublishMsg(nc, m) == NATS_OK);
        natsMsg_Destroy(m);
    }
    int seen[N] = {0}, by_a = 0, by_b = 0, total = 0;
    int64_t deadline = th_now_ms() + 15000;
    for (;;) {
        /* after the 200th, wait a little more to catch any duplicate */
        int64_t left = total < N ? deadline - th_now_ms() : 500;
        natsMsg *m = NULL;
        if (left <= 0 || natsSubscription_NextMsg(&m, sub, left) != NATS_OK)
            break;
        total++;
        cJSON *j = json_of(m);
        int i = (int)jnum(j, "data.echo.i");
        ck_assert(i >= 0 && i < N);
        char expect_subject[256];
        snprintf(expect_subject, sizeof(expect_subject), "%s.%d", inbox, i);
        ck_assert_str_eq(natsMsg_GetSubject(m), expect_subject);
        seen[i]++;
        const char *inst = jstr(j, "data.instance");
        if (strcmp(inst, a->id) == 0)
            by_a++;
        else if (strcmp(inst, b->id) == 0)
            by_b++;
        else
            ck_abort_msg("answered by unknown instance %s", inst);
        cJSON_Delete(j);
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    natsInbox_Destroy(inbox);
    ck_assert_int_eq(total, N);
    for (int i = 0; i < N; i++)
        ck_assert_msg(seen[i] == 1, "request %d answered %d times", i, seen[i]);
    ck_assert_msg(by_a > 0 && by_b > 0, "one replica took everything: %d / %d", by_a, by_b);
    ck_assert_int_eq(by_a + by_b, N);

    /* each instance's STATS agree with what the callers saw */
    snprintf(subj, sizeof(subj), "$SRV.STATS.%s.%s", name, a->id);
    cJSON *sa = srv_one(subj);
    snprintf(subj, sizeof(subj), "$SRV.STATS.%s.%s", name, b->id);
    cJSON *sb = srv_one(subj);
    ck_assert_int_eq((int)jnum(endpoint_named(sa, "echo"), "num_requests"), by_a);
    ck_assert_int_eq((int)jnum(endpoint_named(sb, "echo"), "num_requests"), by_b);
    cJSON_Delete(sa);
    cJSON_Delete(sb);
    ck_assert_int_eq(stop_svc(a, 10000), 0);
    ck_assert_int_eq(stop_svc(b, 10000), 0);
    free(auth);
    free(name);
}
END_TEST

START_TEST(test_service_sigterm_finishes_inflight_and_hands_new_requests_to_replica)
{
    char *name = th_unique("drain");
    proc *a = start_svc(name, NULL);
    /* a slow request lands on a, the only instance */
    natsInbox *inbox = NULL;
    natsSubscription *slow_sub = NULL;
    ck_assert(natsInbox_Create(&inbox) == NATS_OK);
    ck_assert(natsConnection_SubscribeSync(&slow_sub, nc, inbox) == NATS_OK);
    int64_t sent = th_now_ms();
    ck_assert(natsConnection_PublishRequestString(nc, subject_of(a, "slow"), inbox,
                                                  "{\"ms\":2000}") == NATS_OK);
    ck_assert(natsConnection_Flush(nc) == NATS_OK);
    th_sleep_ms(200);
    proc *b = start_svc(name, NULL);

    kill(a->pid, SIGTERM);
    ck_assert_msg(wait_log(a, "draining: no longer taking requests, 1 in flight", 5000),
                  "a did not report draining with the slow request in flight");

    /* new requests all go to b */
    char *auth = token("u1", "t1");
    const char *h[] = {"Authorization", auth, NULL};
    for (int i = 0; i < 20; i++) {
        natsStatus st;
        natsMsg *m = request(subject_of(a, "echo"), "{}", h, 3000, &st);
        ck_assert_msg(m != NULL, "request %d after SIGTERM: %s", i, natsStatus_GetText(st));
        cJSON *j = json_of(m);
        ck_assert_str_eq(jstr(j, "data.instance"), b->id);
        cJSON_Delete(j);
        natsMsg_Destroy(m);
    }
    /* the slow one still gets its answer, from a, after its full 2 s */
    natsMsg *m = NULL;
    ck_assert(natsSubscription_NextMsg(&m, slow_sub, 10000) == NATS_OK);
    ck_assert_int_ge(th_now_ms() - sent, 1900);
    cJSON *j = json_of(m);
    ck_assert_str_eq(jstr(j, "data.instance"), a->id);
    ck_assert_int_eq((int)jnum(j, "data.slept"), 2000);
    cJSON_Delete(j);
    natsMsg_Destroy(m);
    natsSubscription_Destroy(slow_sub);
    natsInbox_Destroy(inbox);

    int st = stop_svc(a, 10000); /* already terminating: just reap */
    ck_assert_msg(st >= 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "a exited with %d", st);
    ck_assert(log_has(a, "exit callback ran"));

    /* with b gone too, nobody takes the request */
    ck_assert_int_eq(stop_svc(b, 10000), 0);
    natsStatus rs;
    m = request(subject_of(b, "echo"), "{}", h, 1000, &rs);
    ck_assert_ptr_null(m);
    ck_assert_msg(rs == NATS_NO_RESPONDERS || rs == NATS_TIMEOUT, "got %s", natsStatus_GetText(rs));
    free(auth);
    free(name);
}
END_TEST

START_TEST(test_service_drain_timeout_answers_waiting_callers)
{
    char *name = th_unique("draint");
    const char *env[] = {"ANALYTICS_DRAIN_TIMEOUT=500ms", "ANALYTICS_REQUEST_TIMEOUT=60s", NULL};
    proc *a = start_svc(name, env);
    natsInbox *inbox = NULL;
    natsSubscription *sub = NULL;
    ck_assert(natsInbox_Create(&inbox) == NATS_OK);
    ck_assert(natsConnection_SubscribeSync(&sub, nc, inbox) == NATS_OK);
    ck_assert(natsConnection_PublishRequestString(nc, subject_of(a, "slow"), inbox,
                                                  "{\"ms\":5000}") == NATS_OK);
    ck_assert(natsConnection_Flush(nc) == NATS_OK);
    th_sleep_ms(200);
    int64_t t0 = th_now_ms();
    kill(a->pid, SIGTERM);
    /* the caller is told at the drain timeout, not left hanging */
    natsMsg *m = NULL;
    ck_assert(natsSubscription_NextMsg(&m, sub, 5000) == NATS_OK);
    ck_assert_int_lt(th_now_ms() - t0, 2500);
    assert_error(m, "unavailable", "503");
    natsMsg_Destroy(m);
    /* the handler cannot be interrupted: the process ends with 1, no cleanup */
    int st = 0;
    ck_assert_int_eq(th_wait(a->pid, 5000, &st, NULL), 0);
    a->pid = 0;
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
    ck_assert(log_has(a, "handlers still running"));
    ck_assert(!log_has(a, "exit callback ran"));
    natsSubscription_Destroy(sub);
    natsInbox_Destroy(inbox);
    free(name);
}
END_TEST

START_TEST(test_service_request_timeout_replies_unavailable_at_the_deadline)
{
    char *name = th_unique("tmo");
    const char *env[] = {"ANALYTICS_REQUEST_TIMEOUT=700ms", NULL};
    proc *p = start_svc(name, env);
    natsStatus st;

    /* endpoint timeout (300 ms) */
    int64_t t0 = th_now_ms();
    natsMsg *m = request(subject_of(p, "sleepy"), "{\"ms\":3000}", NULL, 5000, &st);
    int64_t took = th_now_ms() - t0;
    assert_error(m, "unavailable", "503");
    ck_assert_msg(took >= 280 && took < 1500, "answered after %lld ms", (long long)took);
    natsMsg_Destroy(m);

    /* default timeout from ANALYTICS_REQUEST_TIMEOUT */
    t0 = th_now_ms();
    m = request(subject_of(p, "slow"), "{\"ms\":3000}", NULL, 5000, &st);
    took = th_now_ms() - t0;
    assert_error(m, "unavailable", "503");
    ck_assert_msg(took >= 680 && took < 2000, "answered after %lld ms", (long long)took);
    natsMsg_Destroy(m);

    /* two workers are still sleeping; others answer at once */
    char *auth = token("u1", "t1");
    const char *h[] = {"Authorization", auth, NULL};
    t0 = th_now_ms();
    m = request(subject_of(p, "echo"), "{}", h, 3000, &st);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_lt(th_now_ms() - t0, 500);
    natsMsg_Destroy(m);

    /* the late results are dropped (logged), never sent as a second reply */
    ck_assert(wait_log(p, "result dropped", 5000));
    char subj[256];
    snprintf(subj, sizeof(subj), "$SRV.STATS.%s.%s", name, p->id);
    cJSON *stats = srv_one(subj);
    ck_assert_int_eq((int)jnum(endpoint_named(stats, "sleepy"), "num_requests"), 1);
    ck_assert_int_eq((int)jnum(endpoint_named(stats, "sleepy"), "num_errors"), 1);
    ck_assert_ptr_nonnull(strstr(jstr(endpoint_named(stats, "sleepy"), "last_error"), "503:"));
    ck_assert_int_eq((int)jnum(endpoint_named(stats, "slow"), "num_requests"), 1);
    cJSON_Delete(stats);
    ck_assert_int_eq(stop_svc(p, 10000), 0);
    free(auth);
    free(name);
}
END_TEST

START_TEST(test_service_slow_request_does_not_block_others)
{
    char *name = th_unique("par");
    proc *p = start_svc(name, NULL);
    natsInbox *inbox = NULL;
    natsSubscription *sub = NULL;
    ck_assert(natsInbox_Create(&inbox) == NATS_OK);
    ck_assert(natsConnection_SubscribeSync(&sub, nc, inbox) == NATS_OK);
    /* three slow requests on the same endpoint run side by side */
    int64_t t0 = th_now_ms();
    for (int i = 0; i < 3; i++)
        ck_assert(natsConnection_PublishRequestString(nc, subject_of(p, "slow"), inbox,
                                                      "{\"ms\":1000}") == NATS_OK);
    natsConnection_Flush(nc);
    th_sleep_ms(100);
    natsStatus st;
    natsMsg *m = request(subject_of(p, "slow"), "{\"ms\":0}", NULL, 3000, &st);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_lt(th_now_ms() - t0, 700);
    natsMsg_Destroy(m);
    for (int i = 0; i < 3; i++) {
        ck_assert(natsSubscription_NextMsg(&m, sub, 5000) == NATS_OK);
        natsMsg_Destroy(m);
    }
    ck_assert_int_lt(th_now_ms() - t0, 2500); /* not 3 x 1 s one after the other */
    ck_assert(log_has(p, "\"msg\":\"sleeping 1000 ms\""));
    natsSubscription_Destroy(sub);
    natsInbox_Destroy(inbox);
    ck_assert_int_eq(stop_svc(p, 10000), 0);
    free(name);
}
END_TEST

START_TEST(test_service_call_forwards_identity_and_decodes_envelopes)
{
    char *name = th_unique("call");
    proc *p = start_svc(name, NULL);
    char *auth = token("u7", "t7");
    const char *h[] = {"Authorization", auth, "Correlation-Id", "chain-1", NULL};
    natsStatus st;

    /* proxy -> whoami: the downstream call carries the caller's token and id */
    natsMsg *m = request(subject_of(p, "proxy"), "{\"verb\":\"whoami\"}", h, 5000, &st);
    ck_assert_ptr_nonnull(m);
    cJSON *j = json_of(m);
    ck_assert_str_eq(jstr(j, "data.via"), p->id);
    ck_assert_str_eq(jstr(j, "data.reply.user"), "u7");
    ck_assert_str_eq(jstr(j, "data.reply.tenant"), "t7");
    ck_assert_str_eq(jstr(j, "data.reply.correlationId"), "chain-1");
    cJSON_Delete(j);
    natsMsg_Destroy(m);

    /* a downstream error comes back as that error */
    m = request(subject_of(p, "proxy"),
                "{\"verb\":\"fail\",\"body\":{\"code\":\"not_found\",\"message\":\"nope\","
                "\"field\":\"metricId\"}}",
                h, 5000, &st);
    assert_error(m, "not_found", "404");
    j = json_of(m);
    ck_assert_str_eq(jstr(j, "error.message"), "nope");
    ck_assert_str_eq(jstr(j, "error.details.field"), "metricId");
    cJSON_Delete(j);
    natsMsg_Destroy(m);

    /* nobody listening downstream: unavailable */
    m = request(subject_of(p, "proxy"), "{\"verb\":\"nosuchverb\"}", h, 5000, &st);
    assert_error(m, "unavailable", "503");
    natsMsg_Destroy(m);

    /* an_service_call from here, on the same envelopes */
    cJSON *body = cJSON_Parse("{\"x\":[1,2]}");
    cJSON *data = NULL;
    an_error err;
    ck_assert_int_eq(
        an_service_call(nc, subject_of(p, "echo"), body, auth, "c-9", 3000, &data, &err), AN_OK);
    ck_assert_int_eq(cJSON_GetArraySize(jget(data, "echo.x")), 2);
    cJSON_Delete(data);
    ck_assert_int_eq(
        an_service_call(nc, subject_of(p, "echo"), body, NULL, NULL, 3000, &data, &err),
        AN_UNAUTHENTICATED);
    ck_assert_ptr_null(data);
    cJSON *fail = cJSON_Parse("{\"code\":\"failed_precondition\",\"message\":\"version "
                              "conflict\",\"field\":\"version\"}");
    ck_assert_int_eq(
        an_service_call(nc, subject_of(p, "fail"), fail, auth, NULL, 3000, &data, &err),
        AN_FAILED_PRECONDITION);
    ck_assert_str_eq(err.message, "version conflict");
    ck_assert_str_eq(err.field, "version");
    ck_assert_int_eq(
        an_service_call(nc, "analytics.nobody.home", NULL, NULL, NULL, 1000, &data, &err),
        AN_UNAVAILABLE);
    cJSON_Delete(fail);
    cJSON_Delete(body);
    ck_assert_int_eq(stop_svc(p, 10000), 0);
    free(auth);
    free(name);
}
END_TEST

START_TEST(test_service_trusted_headers_only_in_dev_mode)
{
    char *name = th_unique("dev");
    const char *env[] = {"ANALYTICS_AUTH_TRUSTED_HEADERS=true", "ANALYTICS_JWT_SECRET=", NULL};
    proc *dev = start_svc(name, env);
    ck_assert(log_has(dev, "never use this in production"));
    const char *h[] = {"X-User-Id",     "dev-user", "X-Tenant-Id", "t3", "X-Roles",
                       "editor,viewer", "X-Scopes", "a:b",         NULL};
    natsStatus st;
    natsMsg *m = request(subject_of(dev, "whoami"), NULL, h, 3000, &st);
    cJSON *j = json_of(m);
    ck_assert_str_eq(jstr(j, "data.user"), "dev-user");
    ck_assert_str_eq(jstr(j, "data.tenant"), "t3");
    ck_assert_int_eq(cJSON_GetArraySize(jget(j, "data.roles")), 2);
    ck_assert_str_eq(cJSON_GetArrayItem(jget(j, "data.roles"), 1)->valuestring, "viewer");
    ck_assert_str_eq(cJSON_GetArrayItem(jget(j, "data.scopes"), 0)->valuestring, "a:b");
    ck_assert(cJSON_IsTrue(jget(j, "data.trusted")));
    cJSON_Delete(j);
    natsMsg_Destroy(m);
    /* the identity travels on through a service-to-service call */
    m = request(subject_of(dev, "proxy"), "{\"verb\":\"whoami\"}", h, 3000, &st);
    j = json_of(m);
    ck_assert_str_eq(jstr(j, "data.reply.user"), "dev-user");
    ck_assert_str_eq(jstr(j, "data.reply.tenant"), "t3");
    ck_assert_int_eq(cJSON_GetArraySize(jget(j, "data.reply.roles")), 2);
    cJSON_Delete(j);
    natsMsg_Destroy(m);
    ck_assert_int_eq(stop_svc(dev, 10000), 0);

    /* the same headers on a normal instance: 401 */
    char *name2 = th_unique("prod");
    proc *prod = start_svc(name2, NULL);
    m = request(subject_of(prod, "whoami"), NULL, h, 3000, &st);
    assert_error(m, "unauthenticated", "401");
    natsMsg_Destroy(m);
    ck_assert_int_eq(stop_svc(prod, 10000), 0);
    free(name2);
    free(name);
}
END_TEST

START_TEST(test_service_bad_config_exits_2_naming_the_variable)
{
    char *name = th_unique("cfg");
    char log[512];
    snprintf(log, sizeof(log), "%s/%s.log", th_env("ANALYTICS_STACK_DIR"), name);
    char *env[] = {"ANALYTICS_WORKERS=999", NULL};
    char *argv[] = {"testsvc", NULL};
    pid_t pid = th_spawn(th_bin("tests/helpers/testsvc"), argv, env, log);
    int st = 0;
    ck_assert_int_eq(th_wait(pid, 10000, &st, NULL), 0);
    ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2);
    char *out = th_read_file(log);
    ck_assert_ptr_nonnull(strstr(out, "ANALYTICS_WORKERS=999 is out of range"));
    free(out);
    free(name);
}
END_TEST

/* ------------------------------------------------------------------ events */

static uint64_t subject_count(jsCtx *js, const char *stream, const char *subject)
{
    jsOptions o;
    jsOptions_Init(&o);
    o.Stream.Info.SubjectsFilter = subject;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    ck_assert(js_GetStreamInfo(&si, js, stream, &o, &jerr) == NATS_OK);
    uint64_t n = 0;
    if (si->State.Subjects)
        for (int i = 0; i < si->State.Subjects->Count; i++)
            if (strcmp(si->State.Subjects->List[i].Subject, subject) == 0)
                n = si->State.Subjects->List[i].Msgs;
    jsStreamInfo_Destroy(si);
    return n;
}

START_TEST(test_events_stored_once_per_msg_id_with_envelope)
{
    char *agg = th_unique("ev");
    an_events *ev = NULL;
    an_error err;
    ck_assert_msg(an_events_open(nc, NULL, &ev, &err) == AN_OK, "%s", err.message);
    ck_assert_str_eq(an_events_stream(ev), AN_EVENTS_STREAM);
    cJSON *data = cJSON_Parse("{\"jobId\":\"j1\",\"rows\":42}");
    char id[256];
    snprintf(id, sizeof(id), "%s.completed:j1", agg);
    an_event e = {agg, "completed", id, "t1", "corr-ev-1", data, 0};
    an_events_ack a1, a2;
    ck_assert_msg(an_events_publish(ev, &e, &a1, &err) == AN_OK, "%s", err.message);
    ck_assert(!a1.duplicate);
    ck_assert_msg(an_events_publish(ev, &e, &a2, &err) == AN_OK, "%s", err.message);
    ck_assert(a2.duplicate);
    ck_assert_int_eq(a2.seq, a1.seq);

    char subject[256];
    snprintf(subject, sizeof(subject), "analytics.%s.completed.v1", agg);
    jsCtx *js = NULL;
    ck_assert(natsConnection_JetStream(&js, nc, NULL) == NATS_OK);
    ck_assert_int_eq(subject_count(js, AN_EVENTS_STREAM, subject), 1);

    /* read it back through a consumer of our own */
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Config.DeliverPolicy = js_DeliverAll;
    so.Config.AckPolicy = js_AckNone;
    ck_assert(js_SubscribeSync(&sub, js, subject, NULL, &so, &jerr) == NATS_OK);
    natsMsg *m = NULL;
    ck_assert(natsSubscription_NextMsg(&m, sub, 3000) == NATS_OK);
    ck_assert_str_eq(header(m, "Nats-Msg-Id"), id);
    ck_assert_str_eq(header(m, "Correlation-Id"), "corr-ev-1");
    cJSON *j = json_of(m);
    ck_assert_str_eq(jstr(j, "id"), id);
    char type[256];
    snprintf(type, sizeof(type), "%s.completed", agg);
    ck_assert_str_eq(jstr(j, "type"), type);
    ck_assert_str_eq(jstr(j, "tenantId"), "t1");
    ck_assert_str_eq(jstr(j, "correlationId"), "corr-ev-1");
    ck_assert_str_eq(jstr(j, "data.jobId"), "j1");
    ck_assert_int_eq((int)jnum(j, "data.rows"), 42);
    const char *at = jstr(j, "occurredAt");
    ck_assert(at && strlen(at) == 24 && at[10] == 'T' && at[23] == 'Z');
    cJSON_Delete(j);
    natsMsg_Destroy(m);
    ck_assert(natsSubscription_NextMsg(&m, sub, 500) == NATS_TIMEOUT); /* no second copy */

    /* another id is another event */
    snprintf(id, sizeof(id), "%s.completed:j2", agg);
    e.tenant_id = NULL;
    ck_assert_int_eq(an_events_publish(ev, &e, &a2, &err), AN_OK);
    ck_assert(!a2.duplicate && a2.seq > a1.seq);
    ck_assert_int_eq(subject_count(js, AN_EVENTS_STREAM, subject), 2);
    ck_assert(natsSubscription_NextMsg(&m, sub, 3000) == NATS_OK);
    j = json_of(m);
    ck_assert(cJSON_IsNull(jget(j, "tenantId")));
    cJSON_Delete(j);
    natsMsg_Destroy(m);

    /* bad input is refused before anything is sent */
    an_event bad = {"Bad.Agg", "completed", "x", NULL, NULL, NULL, 0};
    ck_assert_int_eq(an_events_publish(ev, &bad, NULL, &err), AN_INVALID_ARGUMENT);
    an_event noid = {agg, "completed", "", NULL, NULL, NULL, 0};
    ck_assert_int_eq(an_events_publish(ev, &noid, NULL, &err), AN_INVALID_ARGUMENT);

    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    cJSON_Delete(data);
    an_events_close(ev);
    free(agg);
}
END_TEST

START_TEST(test_events_published_by_a_service_carry_caller_tenant_and_correlation)
{
    char *name = th_unique("pub");
    proc *p = start_svc(name, NULL);
    char *agg = th_unique("svcev");
    char *auth = token("u1", "t5");
    const char *h[] = {"Authorization", auth, "Correlation-Id", "pub-corr", NULL};
    char body[512];
    snprintf(body, sizeof(body),
             "{\"aggregate\":\"%s\",\"event\":\"failed\",\"id\":\"%s.failed:job9\","
             "\"data\":{\"jobId\":\"job9\"}}",
             agg, agg);
    natsStatus st;
    for (int i = 0; i < 2; i++) {
        natsMsg *m = request(subject_of(p, "publish"), body, h, 10000, &st);
        ck_assert_ptr_nonnull(m);
        cJSON *j = json_of(m);
        ck_assert_msg(cJSON_IsBool(jget(j, "data.duplicate")), "%.*s", natsMsg_GetDataLength(m),
                      natsMsg_GetData(m));
        ck_assert(cJSON_IsTrue(jget(j, "data.duplicate")) == (i == 1));
        cJSON_Delete(j);
        natsMsg_Destroy(m);
    }
    char subject[256];
    snprintf(subject, sizeof(subject), "analytics.%s.failed.v1", agg);
    jsCtx *js = NULL;
    ck_assert(natsConnection_JetStream(&js, nc, NULL) == NATS_OK);
    ck_assert_int_eq(subject_count(js, AN_EVENTS_STREAM, subject), 1);
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    ck_assert(js_GetStreamInfo(&si, js, AN_EVENTS_STREAM, NULL, &jerr) == NATS_OK);
    ck_assert_int_ge(si->Config->Duplicates, 3600LL * 1000000000LL);
    jsStreamInfo_Destroy(si);

    natsSubscription *sub = NULL;
    ck_assert(js_SubscribeSync(&sub, js, subject, NULL, NULL, &jerr) == NATS_OK);
    natsMsg *m = NULL;
    ck_assert(natsSubscription_NextMsg(&m, sub, 3000) == NATS_OK);
    cJSON *j = json_of(m);
    ck_assert_str_eq(jstr(j, "tenantId"), "t5");
    ck_assert_str_eq(jstr(j, "correlationId"), "pub-corr");
    ck_assert_str_eq(jstr(j, "data.jobId"), "job9");
    cJSON_Delete(j);
    natsMsg_Destroy(m);
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    jsCtx_Destroy(js);
    ck_assert_int_eq(stop_svc(p, 10000), 0);
    free(auth);
    free(agg);
    free(name);
}
END_TEST

START_TEST(test_events_stream_created_when_missing_and_extended_when_present)
{
    char *u = th_unique("evs");
    char stream[160], ours[200], other[200];
    snprintf(stream, sizeof(stream), "S_%s", u);
    snprintf(ours, sizeof(ours), "evtest.%s.*.v1", u);
    snprintf(other, sizeof(other), "evtest.%s.legacy", u);
    jsCtx *js = NULL;
    ck_assert(natsConnection_JetStream(&js, nc, NULL) == NATS_OK);

    /* present with another subject and a 2-minute window: extended, rest kept */
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[] = {other};
    cfg.Name = stream;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_MemoryStorage;
    cfg.MaxMsgs = 12345;
    cfg.Duplicates = 120LL * 1000000000LL;
    jsErrCode jerr = 0;
    ck_assert(js_AddStream(NULL, js, &cfg, NULL, &jerr) == NATS_OK);

    an_events_opts o = {.stream = stream, .subjects = ours, .duplicate_window_ms = 600000};
    an_events *ev = NULL;
    an_error err;
    ck_assert_msg(an_events_open(nc, &o, &ev, &err) == AN_OK, "%s", err.message);
    jsStreamInfo *si = NULL;
    ck_assert(js_GetStreamInfo(&si, js, stream, NULL, &jerr) == NATS_OK);
    ck_assert_int_eq(si->Config->SubjectsLen, 2);
    ck_assert_str_eq(si->Config->Subjects[0], other);
    ck_assert_str_eq(si->Config->Subjects[1], ours);
    ck_assert_int_eq(si->Config->Duplicates, 600LL * 1000000000LL);
    ck_assert_int_eq(si->Config->MaxMsgs, 12345);
    ck_assert_int_eq(si->Config->Storage, js_MemoryStorage);
    jsStreamInfo_Destroy(si);
    an_events_close(ev);
    /* opening again leaves it alone */
    ck_assert_int_eq(an_events_open(nc, &o, &ev, &err), AN_OK);
    an_events_close(ev);
    ck_assert(js_DeleteStream(js, stream, NULL, &jerr) == NATS_OK);

    /* missing: created with our subjects and window */
    ck_assert_msg(an_events_open(nc, &o, &ev, &err) == AN_OK, "%s", err.message);
    ck_assert(js_GetStreamInfo(&si, js, stream, NULL, &jerr) == NATS_OK);
    ck_assert_int_eq(si->Config->SubjectsLen, 1);
    ck_assert_str_eq(si->Config->Subjects[0], ours);
    ck_assert_int_eq(si->Config->Duplicates, 600LL * 1000000000LL);
    ck_assert_int_eq(si->Config->Storage, js_FileStorage);
    jsStreamInfo_Destroy(si);
    an_events_close(ev);

    /* subjects another stream owns: a clear failure, not a crash */
    char clash[160];
    snprintf(clash, sizeof(clash), "C_%s", u);
    an_events_opts o2 = {.stream = clash, .subjects = ours};
    ck_assert_int_eq(an_events_open(nc, &o2, &ev, &err), AN_FAILED_PRECONDITION);
    ck_assert_ptr_null(ev);
    ck_assert(js_DeleteStream(js, stream, NULL, &jerr) == NATS_OK);
    jsCtx_Destroy(js);
    free(u);
}
END_TEST

START_TEST(test_service_http_metrics_count_requests_and_readyz_follows_drain)
{
    char *name = th_unique("ops");
    proc *p = start_svc(name, NULL);
    int port = http_port_of(p);
    ck_assert_int_gt(port, 0);
    char *tok = token("u1", "t1");
    const char *h[] = {"Authorization", tok, NULL};
    natsStatus st;
    for (int i = 0; i < 3; i++)
        natsMsg_Destroy(request(subject_of(p, "echo"), "{}", h, 3000, &st));
    natsMsg_Destroy(request(subject_of(p, "echo"), "{}", NULL, 3000, &st)); /* 401 */

    char cmd[512];
    snprintf(cmd, sizeof(cmd), "curl -s http://127.0.0.1:%d/metrics", port);
    char *m = th_run(cmd, NULL);
    char want[512];
    snprintf(want, sizeof(want),
             "analytics_requests_total{service=\"%s\",endpoint=\"echo\",code=\"ok\"} 3\n", name);
    ck_assert_msg(strstr(m, want), "no %s in %s", want, m);
    snprintf(want, sizeof(want),
             "analytics_requests_total{service=\"%s\",endpoint=\"echo\","
             "code=\"unauthenticated\"} 1\n",
             name);
    ck_assert_msg(strstr(m, want), "no %s in %s", want, m);
    snprintf(want, sizeof(want),
             "analytics_request_duration_seconds_count{service=\"%s\",endpoint=\"echo\"} 4\n",
             name);
    ck_assert_msg(strstr(m, want), "no %s in %s", want, m);
    free(m);

    snprintf(cmd, sizeof(cmd), "curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/readyz",
             port);
    char *code = th_run(cmd, NULL);
    ck_assert_str_eq(code, "200");
    free(code);
    snprintf(cmd, sizeof(cmd),
             "curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/healthz", port);
    code = th_run(cmd, NULL);
    ck_assert_str_eq(code, "200");
    free(code);
    free(tok);

    /* After SIGTERM the port is closed: the process is gone, exit 0. */
    int rc = stop_svc(p, 10000);
    ck_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
    snprintf(cmd, sizeof(cmd),
             "curl -s -o /dev/null -w '%%{http_code}' http://127.0.0.1:%d/healthz", port);
    code = th_run(cmd, NULL);
    ck_assert_str_eq(code, "000");
    free(code);
    free(name);
}
END_TEST

START_TEST(test_service_readyz_503_names_the_unreachable_dependency)
{
    char *name = th_unique("unready");
    const char *env[] = {"ANALYTICS_CLICKHOUSE_URL=http://127.0.0.1:1",
                         "ANALYTICS_REDIS_URL=redis://127.0.0.1:1/0", NULL};
    proc *p = start_svc(name, env);
    int port = http_port_of(p);
    ck_assert_int_gt(port, 0);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "curl -s -w ' %%{http_code}' http://127.0.0.1:%d/readyz", port);
    char *out = th_run(cmd, NULL);
    ck_assert_msg(strstr(out, " 503") && strstr(out, "\"clickhouse\":\"clickhouse http") &&
                      strstr(out, "connect"),
                  "%s", out);
    ck_assert_msg(strstr(out, "\"nats\":\"ok\""), "%s", out);
    ck_assert_msg(strstr(out, "\"redis\":\""), "%s", out);
    free(out);
    int rc = stop_svc(p, 10000);
    ck_assert(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
    free(name);
}
END_TEST

Suite *service_suite(void)
{
    Suite *s = suite_create("service");
    TCase *tc = tcase_create("framework");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_service_echo_replies_data_envelope_and_echoes_correlation_id);
    tcase_add_test(tc, test_service_rejects_missing_bad_and_foreign_credentials);
    tcase_add_test(tc, test_service_discovery_answers_adr32_shapes_and_exact_stats);
    tcase_add_test(tc, test_service_replicas_share_the_queue_group);
    tcase_add_test(tc, test_service_sigterm_finishes_inflight_and_hands_new_requests_to_replica);
    tcase_add_test(tc, test_service_drain_timeout_answers_waiting_callers);
    tcase_add_test(tc, test_service_request_timeout_replies_unavailable_at_the_deadline);
    tcase_add_test(tc, test_service_slow_request_does_not_block_others);
    tcase_add_test(tc, test_service_call_forwards_identity_and_decodes_envelopes);
    tcase_add_test(tc, test_service_trusted_headers_only_in_dev_mode);
    tcase_add_test(tc, test_service_bad_config_exits_2_naming_the_variable);
    tcase_add_test(tc, test_service_http_metrics_count_requests_and_readyz_follows_drain);
    tcase_add_test(tc, test_service_readyz_503_names_the_unreachable_dependency);
    suite_add_tcase(s, tc);

    TCase *te = tcase_create("events");
    tcase_add_checked_fixture(te, setup, teardown);
    tcase_set_timeout(te, 60);
    tcase_add_test(te, test_events_stored_once_per_msg_id_with_envelope);
    tcase_add_test(te, test_events_published_by_a_service_carry_caller_tenant_and_correlation);
    tcase_add_test(te, test_events_stream_created_when_missing_and_extended_when_present);
    suite_add_tcase(s, te);
    return s;
}
