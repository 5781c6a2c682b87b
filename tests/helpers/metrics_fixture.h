/*
 * metrics_fixture.h - shared by the metrics integration suites (included by
 * each; static functions): metrics service processes, callers' tokens,
 * requests over NATS, and seeding analytics.events through curl as the
 * ClickHouse admin (the tests check ClickHouse and Redis independently of
 * the service, through tests/harness.h).
 *
 * Processes: mf_start() spawns build/bin/metrics with the stack's env plus
 * the suite's settings (a queue and Redis prefix of its own), waits until
 * it serves, and remembers its pid in a file of the stack dir so that
 * mf_kill_all() (an unchecked teardown) kills what a failed test left.
 */
#ifndef METRICS_FIXTURE_H
#define METRICS_FIXTURE_H

#include "tests/harness.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MF_SECRET "metrics-test-secret-0123456789abcdefghijkl"
#define MF_UNUSED __attribute__((unused))

typedef struct mf_proc {
    pid_t pid;
    char log[512];
    char id[64]; /* service instance id, from its log */
} mf_proc;

static natsConnection *mf_nc;

MF_UNUSED static char *mf_fmt(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    ck_assert(vasprintf(&s, fmt, ap) >= 0);
    va_end(ap);
    return s;
}

MF_UNUSED static bool mf_log_has(const mf_proc *p, const char *needle)
{
    return th_log_has(p->log, needle);
}

MF_UNUSED static bool mf_wait_log(const mf_proc *p, const char *needle, int timeout_ms)
{
    return th_wait_log(p->log, needle, timeout_ms);
}

static const char *mf_pids_file(void)
{
    static char path[512];
    snprintf(path, sizeof(path), "%s/metrics-test.pids", th_env("ANALYTICS_STACK_DIR"));
    return path;
}

/* Start a metrics instance with extra "K=V" settings (NULL-terminated, may
 * be NULL). name tags its log file. */
MF_UNUSED static void mf_start(mf_proc *p, const char *name, const char *const *extra)
{
    memset(p, 0, sizeof(*p));
    char *u = th_unique(name);
    snprintf(p->log, sizeof(p->log), "%s/%s.log", th_env("ANALYTICS_STACK_DIR"), u);
    free(u);
    static char env[32][512];
    int n = 0;
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_JWT_SECRET=%s", MF_SECRET);
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_HTTP_ADDR=127.0.0.1:0");
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_LOG_LEVEL=info");
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_CLICKHOUSE_READER_USER=%s",
             th_env("ANALYTICS_CLICKHOUSE_READER_USER"));
    snprintf(env[n++], sizeof(env[0]), "ANALYTICS_CLICKHOUSE_READER_PASSWORD=%s",
             th_env("ANALYTICS_CLICKHOUSE_READER_PASSWORD"));
    for (int i = 0; extra && extra[i] && n < 31; i++)
        snprintf(env[n++], sizeof(env[0]), "%s", extra[i]);
    char *envp[33];
    for (int i = 0; i < n; i++)
        envp[i] = env[i];
    envp[n] = NULL;
    char *argv[] = {"metrics", NULL};
    p->pid = th_spawn(th_bin("bin/metrics"), argv, envp, p->log);
    FILE *f = fopen(mf_pids_file(), "a");
    if (f) {
        fprintf(f, "%d\n", (int)p->pid);
        fclose(f);
    }
    ck_assert_msg(mf_wait_log(p, "\"msg\":\"started metrics", 30000),
                  "metrics did not start; see %s", p->log);
    char *s = th_read_file(p->log);
    const char *at = strstr(s, "(id ");
    ck_assert_ptr_nonnull(at);
    sscanf(at + 4, "%63[A-Za-z0-9]", p->id);
    free(s);
}

/* SIGTERM and wait; returns the exit status (as waitpid) or -1. */
MF_UNUSED static int mf_stop(mf_proc *p, int timeout_ms)
{
    if (p->pid <= 0)
        return 0;
    kill(p->pid, SIGTERM);
    int st = 0;
    if (th_wait(p->pid, timeout_ms, &st, NULL) != 0) {
        th_kill(p->pid);
        st = -1;
    }
    p->pid = 0;
    return st;
}

/* Kill every instance the suite started (unchecked teardown). */
MF_UNUSED static void mf_kill_all(void)
{
    FILE *f = fopen(mf_pids_file(), "r");
    if (!f)
        return;
    int pid;
    while (fscanf(f, "%d", &pid) == 1)
        if (pid > 0 && kill(pid, 0) == 0) {
            kill(pid, SIGKILL);
            waitpid(pid, NULL, WNOHANG);
        }
    fclose(f);
    unlink(mf_pids_file());
}

/* ----------------------------------------------------------------- calls */

MF_UNUSED static void mf_connect(void)
{
    natsStatus s = natsConnection_ConnectTo(&mf_nc, th_env("ANALYTICS_NATS_URL"));
    ck_assert_msg(s == NATS_OK, "connect: %s", natsStatus_GetText(s));
}

MF_UNUSED static void mf_disconnect(void)
{
    natsConnection_Destroy(mf_nc);
    mf_nc = NULL;
    nats_CloseAndWait(2000);
}

/* "Bearer <HS256 JWT>" for sub, tenant (NULL: none), scope (NULL: none). */
MF_UNUSED static char *mf_token(const char *sub, const char *tenant, const char *scope)
{
    return th_bearer(MF_SECRET, sub, tenant, scope, NULL, 3600);
}

/* Request analytics.metrics.<verb> as (tenant, scope); the parsed reply
 * envelope ({"data"} or {"error"}), never NULL. */
MF_UNUSED static cJSON *mf_call(const char *verb, const char *tenant, const char *scope,
                                const char *body)
{
    char subject[128];
    snprintf(subject, sizeof(subject), "analytics.metrics.%s", verb);
    char *auth = mf_token("test-user", tenant, scope);
    cJSON *j = th_request(mf_nc, subject, auth, body, 20000);
    free(auth);
    return j;
}

/* mf_call with a printf-formatted body. */
MF_UNUSED __attribute__((format(printf, 4, 5))) static cJSON *
mf_callf(const char *verb, const char *tenant, const char *scope, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *body = NULL;
    ck_assert(vasprintf(&body, fmt, ap) >= 0);
    va_end(ap);
    cJSON *r = mf_call(verb, tenant, scope, body);
    free(body);
    return r;
}

MF_UNUSED static char *mf_print(const cJSON *j)
{
    return cJSON_PrintUnformatted(j);
}

/* The "data" of a reply that must have succeeded (owned by reply). */
MF_UNUSED static cJSON *mf_data(cJSON *reply)
{
    cJSON *d = cJSON_GetObjectItemCaseSensitive(reply, "data");
    if (!d) {
        char *s = mf_print(reply);
        ck_abort_msg("expected data, got %s", s);
    }
    return d;
}

/* Assert the reply is an error with code and (when not NULL) field. */
MF_UNUSED static void mf_expect_error(cJSON *reply, const char *code, const char *field)
{
    cJSON *e = cJSON_GetObjectItemCaseSensitive(reply, "error");
    char *s = mf_print(reply);
    ck_assert_msg(e != NULL, "expected error %s, got %s", code, s);
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(e, "code");
    ck_assert_msg(cJSON_IsString(c) && strcmp(c->valuestring, code) == 0, "expected %s, got %s",
                  code, s);
    if (field) {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(e, "details"), "field");
        ck_assert_msg(cJSON_IsString(f) && strcmp(f->valuestring, field) == 0,
                      "expected field %s, got %s", field, s);
    }
    free(s);
}

MF_UNUSED static const char *mf_str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

MF_UNUSED static double mf_num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    ck_assert_msg(cJSON_IsNumber(v), "%s is not a number", name);
    return v->valuedouble;
}

/* Create a metric from a JSON body as (tenant, scope); its id (free it). */
MF_UNUSED static char *mf_create(const char *tenant, const char *scope, const char *body)
{
    cJSON *r = mf_call("create", tenant, scope, body);
    char *id = strdup(mf_str(mf_data(r), "id"));
    cJSON_Delete(r);
    return id;
}

/* A JSON string literal of s (quotes included; free it). */
MF_UNUSED static char *mf_json_str(const char *s)
{
    cJSON *j = cJSON_CreateString(s);
    char *out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

/* Compare a query's rows with the expected JSON array text (exactly, after
 * parsing both). */
MF_UNUSED static void mf_expect_rows(const cJSON *data, const char *want_json)
{
    cJSON *want = cJSON_Parse(want_json);
    ck_assert_msg(want != NULL, "bad expected JSON %s", want_json);
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(data, "rows");
    char *got = mf_print(rows), *w = mf_print(want);
    ck_assert_msg(cJSON_Compare(rows, want, 1), "rows\n  got  %s\n  want %s", got, w);
    free(got);
    free(w);
    cJSON_Delete(want);
}

/* ---------------------------------------------------------------- seeding */

/* One event row for analytics.events as a VALUES tuple; props: "k=v;k=v". */
MF_UNUSED static char *mf_event(const char *tenant, const char *name, const char *when,
                                const char *actor, const char *props)
{
    static unsigned seq;
    char keys[1024] = "", vals[1024] = "";
    char *copy = strdup(props ? props : "");
    char *save = NULL;
    for (char *kv = strtok_r(copy, ";", &save); kv; kv = strtok_r(NULL, ";", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq)
            continue;
        *eq = '\0';
        size_t kl = strlen(keys), vl = strlen(vals);
        snprintf(keys + kl, sizeof(keys) - kl, "%s'%s'", kl ? "," : "", kv);
        snprintf(vals + vl, sizeof(vals) - vl, "%s'%s'", vl ? "," : "", eq + 1);
    }
    free(copy);
    char *u = th_unique("ev");
    char *row = mf_fmt("('%s', '%s-%u', '%s', toDateTime('%s', 'UTC'), 0, 'user', '%s', 'k1', '', "
                       "'{}', [%s], [%s])",
                       tenant, u, seq++, name, when, actor, keys, vals);
    free(u);
    return row;
}

/* Insert the rows (each from mf_event, freed here), NULL-terminated. */
MF_UNUSED static void mf_insert_events(char **rows)
{
    size_t len = 0;
    for (char **r = rows; *r; r++)
        len += strlen(*r) + 2;
    char *values = calloc(1, len + 1);
    for (char **r = rows; *r; r++) {
        if (r != rows)
            strcat(values, ", ");
        strcat(values, *r);
        free(*r);
    }
    char *sql =
        mf_fmt("INSERT INTO analytics.events (tenant_id, event_id, event_name, occurred_at, "
               "occurred_ms, actor_type, actor_id, actor_key_id, correlation_id, "
               "properties, prop_keys, prop_values) VALUES %s",
               values);
    free(th_ch(sql));
    free(sql);
    free(values);
}

#endif
