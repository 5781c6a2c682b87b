/*
 * service.c - lifecycle and request dispatch of the NATS service framework
 * (see service.h for the contract; service_call.c calls other services,
 * discovery.c answers $SRV).
 *
 * Threads: nats.c delivers messages on its global delivery thread; the
 * request callback only queues a job. ANALYTICS_WORKERS workers run the
 * jobs. A watchdog thread answers the jobs whose deadline passed. The main
 * thread waits for a signal, then drains. A job is answered exactly once:
 * whoever sets job->replied under mu (worker, watchdog, overload or drain)
 * sends the reply and counts it.
 */
#include "common/service_int.h"

#include "common/log.h"
#include "common/timeutil.h"

#include <errno.h>
#include <openssl/rand.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>
#include <unistd.h>

#define NS_PER_MS 1000000LL

struct an_job {
    an_job *next_q;      /* pending queue */
    an_job *prev, *next; /* outstanding list */
    an_ep *ep;
    natsMsg *msg;
    int64_t received_ns;
    int64_t deadline_ns;
    bool replied; /* under svc->mu */
    bool started; /* a worker runs it; under svc->mu */
    char correlation_id[AN_CORRELATION_MAX + 1];
};

/* ------------------------------------------------------- shared config */

#define CFG(f) offsetof(an_service_config, f)
const an_config_var an_service_config_vars[] = {
    {"ANALYTICS_NATS_URL", AN_CFG_STRING, "nats://127.0.0.1:4222", 0, 0, AN_CFG_REQUIRED,
     CFG(nats_url), "NATS server URL(s), comma-separated"},
    {"ANALYTICS_CLICKHOUSE_URL", AN_CFG_STRING, "http://127.0.0.1:8123", 0, 0, 0,
     CFG(clickhouse_url), "ClickHouse HTTP interface, http://host:port"},
    {"ANALYTICS_CLICKHOUSE_USER", AN_CFG_STRING, "default", 0, 0, 0, CFG(clickhouse_user),
     "ClickHouse user"},
    {"ANALYTICS_CLICKHOUSE_PASSWORD", AN_CFG_STRING, "", 0, 0, AN_CFG_SECRET,
     CFG(clickhouse_password), "ClickHouse password"},
    {"ANALYTICS_REDIS_URL", AN_CFG_STRING, "redis://127.0.0.1:6379/0", 0, 0, 0, CFG(redis_url),
     "Redis URL, redis://host:port/db"},
    {"ANALYTICS_HTTP_ADDR", AN_CFG_STRING, "0.0.0.0:8080", 0, 0, 0, CFG(http_addr),
     "host:port of /healthz, /readyz and /metrics"},
    {"ANALYTICS_LOG_LEVEL", AN_CFG_STRING, "info", 0, 0, 0, CFG(log_level),
     "debug, info, warn or error"},
    {"ANALYTICS_JWT_SECRET", AN_CFG_STRING, NULL, 0, 0, AN_CFG_SECRET, CFG(jwt_secret),
     "HS256 key of the callers' JWTs (at least 32 bytes)"},
    {"ANALYTICS_JWT_PUBLIC_KEY_FILE", AN_CFG_STRING, NULL, 0, 0, 0, CFG(jwt_public_key_file),
     "PEM file of the RSA public key of the callers' RS256 JWTs"},
    {"ANALYTICS_JWT_LEEWAY", AN_CFG_DURATION, "30s", 0, 300000, 0, CFG(jwt_leeway_ms),
     "clock skew allowed on the tokens' exp and nbf"},
    {"ANALYTICS_JWT_AUDIENCE", AN_CFG_STRING, "", 0, 0, 0, CFG(jwt_audience),
     "when set, a token's aud claim must hold it (tokens minted for other services are "
     "refused); empty: not checked"},
    {"ANALYTICS_JWT_ISSUER", AN_CFG_STRING, "", 0, 0, 0, CFG(jwt_issuer),
     "when set, a token's iss claim must equal it; empty: not checked"},
    {"ANALYTICS_AUTH_TRUSTED_HEADERS", AN_CFG_BOOL, "false", 0, 0, 0, CFG(auth_trusted_headers),
     "LOCAL DEVELOPMENT ONLY: take identity from X-User-Id/X-Tenant-Id/X-Roles/X-Scopes"},
    {"ANALYTICS_REQUEST_TIMEOUT", AN_CFG_DURATION, "10s", 10, 600000, 0, CFG(request_timeout_ms),
     "default deadline of a request; past it the caller gets 503"},
    {"ANALYTICS_DRAIN_TIMEOUT", AN_CFG_DURATION, "20s", 0, 600000, 0, CFG(drain_timeout_ms),
     "how long SIGTERM waits for requests in flight"},
    {"ANALYTICS_NATS_CONNECT_TIMEOUT", AN_CFG_DURATION, "30s", 0, 600000, 0,
     CFG(nats_connect_timeout_ms), "how long to retry the first NATS connection"},
    {"ANALYTICS_WORKERS", AN_CFG_INT, "0", 0, 256, 0, CFG(workers),
     "request worker threads; 0: the service's default"},
    {"ANALYTICS_MAX_PENDING", AN_CFG_INT, "1000", 1, 1000000, 0, CFG(max_pending),
     "requests waiting for a worker before new ones get 429"},
    {0},
};
#undef CFG

/* ---------------------------------------------------------------- helpers */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        abort(); /* as an_buf: no sane recovery from OOM in a service */
    return p;
}

/* n random base62 characters, NUL-terminated (out has n + 1 bytes). */
static void random_id(char *out, size_t n)
{
    static const char alphabet[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    unsigned char raw[64];
    if (n > sizeof(raw))
        n = sizeof(raw);
    if (RAND_bytes(raw, (int)n) != 1) {
        /* Should not happen; ids need to be unique, not secret. */
        for (size_t i = 0; i < n; i++)
            raw[i] = (unsigned char)(random() & 0xff);
    }
    for (size_t i = 0; i < n; i++)
        out[i] = alphabet[raw[i] % 62];
    out[n] = '\0';
}

static bool name_ok(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '_'))
            return false;
    return true;
}

/* MAJOR.MINOR.PATCH with an optional -pre / +build suffix. */
static bool semver_ok(const char *s)
{
    if (!s)
        return false;
    for (int part = 0; part < 3; part++) {
        if (*s < '0' || *s > '9')
            return false;
        if (*s == '0' && s[1] >= '0' && s[1] <= '9')
            return false;
        while (*s >= '0' && *s <= '9')
            s++;
        if (part < 2 && *s++ != '.')
            return false;
    }
    if (*s == '\0')
        return true;
    if (*s != '-' && *s != '+')
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '-' || *s == '.' || *s == '+'))
            return false;
    return true;
}

static void rfc3339_now(char *out, size_t n)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    snprintf(out, n, "%04d-%02d-%02dT%02d:%02d:%02d.%09ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
             tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, ts.tv_nsec);
}

/* Absolute CLOCK_MONOTONIC time for pthread_cond_timedwait. */
static struct timespec abs_mono(int64_t at_ns)
{
    struct timespec ts = {(time_t)(at_ns / 1000000000LL), (long)(at_ns % 1000000000LL)};
    return ts;
}

const char *an_msg_header(natsMsg *m, const char *name)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(m, name, &v) == NATS_OK)
        return v;
    const char **keys = NULL;
    int n = 0;
    if (natsMsgHeader_Keys(m, &keys, &n) != NATS_OK)
        return NULL;
    v = NULL;
    for (int i = 0; i < n && !v; i++)
        if (strcasecmp(keys[i], name) == 0 && natsMsgHeader_Get(m, keys[i], &v) != NATS_OK)
            v = NULL;
    free((void *)keys);
    return v;
}

static const char *auth_header_fn(void *ud, const char *name)
{
    return an_msg_header(ud, name);
}

static bool correlation_ok(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        if (n >= AN_CORRELATION_MAX ||
            !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.' || c == ':'))
            return false;
    }
    return n > 0;
}

/* The caller's correlation id when it is sane, else a fresh one. */
static void pick_correlation_id(natsMsg *m, char *out)
{
    const char *c = an_msg_header(m, "Correlation-Id");
    if (!c || !*c)
        c = an_msg_header(m, "X-Correlation-Id");
    if (c && correlation_ok(c))
        snprintf(out, AN_CORRELATION_MAX + 1, "%s", c);
    else
        random_id(out, 26);
}

/* --------------------------------------------------------------- replies */

/* A header value may not hold CR or LF; keep it on one short line. */
static void header_safe(char *dst, size_t n, const char *src)
{
    size_t i = 0;
    for (; src[i] && i + 1 < n; i++)
        dst[i] = (src[i] == '\r' || src[i] == '\n') ? ' ' : src[i];
    dst[i] = '\0';
}

static void publish_reply(an_service *svc, const char *reply, const char *correlation_id,
                          an_status st, const cJSON *data, const an_error *err)
{
    an_buf b = AN_BUF_INIT;
    char pub[AN_ERROR_MSG_MAX + 64];
    const char *message = NULL;
    if (st == AN_OK) {
        char *d = data ? cJSON_PrintUnformatted(data) : NULL;
        an_buf_adds(&b, "{\"data\":");
        an_buf_adds(&b, d ? d : "null");
        an_buf_addc(&b, '}');
        free(d);
    } else {
        char ref[AN_ERROR_MSG_MAX];
        snprintf(ref, sizeof(ref), "correlation id %s", correlation_id);
        message = an_error_public_message(err->code, err->message, ref, pub, sizeof(pub));
        an_buf_adds(&b, "{\"error\":{\"code\":\"");
        an_buf_adds(&b, an_status_code(st));
        an_buf_adds(&b, "\",\"message\":\"");
        an_buf_add_json_escaped(&b, message, strlen(message));
        an_buf_adds(&b, "\",\"details\":{");
        if (err->field[0]) {
            an_buf_adds(&b, "\"field\":\"");
            an_buf_add_json_escaped(&b, err->field, strlen(err->field));
            an_buf_addc(&b, '"');
        }
        an_buf_adds(&b, "}}}");
    }
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, reply, NULL, b.data, (int)b.len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Correlation-Id", correlation_id);
    if (s == NATS_OK && st != AN_OK) {
        char code[16], text[512];
        snprintf(code, sizeof(code), "%d", an_status_http(st));
        header_safe(text, sizeof(text), message);
        s = natsMsgHeader_Set(m, "Nats-Service-Error-Code", code);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, "Nats-Service-Error", text);
    }
    if (s == NATS_OK)
        s = natsConnection_PublishMsg(svc->nc, m);
    if (s != NATS_OK)
        an_log_ctx(AN_LOG_WARN, NULL, correlation_id, "reply to %s failed: %s", reply,
                   natsStatus_GetText(s));
    natsMsg_Destroy(m);
    an_buf_free(&b);
}

/* Count an outcome. Caller holds svc->mu. */
static void account_locked(an_ep *ep, an_status st, const an_error *err, int64_t dur_ns)
{
    ep->num_requests++;
    ep->processing_ns += dur_ns;
    if (st != AN_OK) {
        ep->num_errors++;
        snprintf(ep->last_error, sizeof(ep->last_error), "%d:%s", an_status_http(st), err->message);
    }
}

static void log_outcome(const an_ep *ep, const char *tenant, const char *correlation_id,
                        an_status st, const an_error *err, int64_t dur_ns)
{
    double ms = (double)dur_ns / 1e6;
    if (st == AN_OK)
        an_log_ctx(AN_LOG_DEBUG, tenant, correlation_id, "%s: ok in %.1f ms", ep->subject, ms);
    else
        an_log_ctx(an_status_http(st) >= 500 ? AN_LOG_ERROR : AN_LOG_INFO, tenant, correlation_id,
                   "%s: %s in %.1f ms: %s%s%s", ep->subject, an_status_code(st), ms, err->message,
                   err->field[0] ? " field=" : "", err->field);
}

/* Answer a request with its outcome: observe, reply, log. Called without
 * the lock, after the job was marked replied and counted under it; used for
 * run jobs and for the ones not run (timeout, overload, shutdown). */
static void answer_request(an_service *svc, an_ep *ep, const char *reply,
                           const char *correlation_id, const char *tenant, an_status st,
                           cJSON *data, const an_error *err, int64_t dur_ns)
{
    an_svc_ops_observe(ep, st, dur_ns);
    if (reply && *reply)
        publish_reply(svc, reply, correlation_id, st, data, err);
    log_outcome(ep, tenant, correlation_id, st, err, dur_ns);
}

/* ------------------------------------------------------------------- jobs */

static void outstanding_add_locked(an_service *svc, an_job *j)
{
    j->prev = NULL;
    j->next = svc->outstanding;
    if (svc->outstanding)
        svc->outstanding->prev = j;
    svc->outstanding = j;
    svc->noutstanding++;
}

static void outstanding_remove_locked(an_service *svc, an_job *j)
{
    if (j->prev)
        j->prev->next = j->next;
    else
        svc->outstanding = j->next;
    if (j->next)
        j->next->prev = j->prev;
    svc->noutstanding--;
    if (svc->noutstanding == 0)
        pthread_cond_broadcast(&svc->idle_cv);
}

static void job_free(an_job *j)
{
    natsMsg_Destroy(j->msg);
    free(j);
}

/* Everything a timed-out or refused job needs to be answered outside the lock. */
typedef struct unrun {
    an_ep *ep;
    char *reply;
    char correlation_id[AN_CORRELATION_MAX + 1];
    int64_t dur_ns;
    an_error err; /* what it is answered with (also what was counted) */
} unrun;

static void on_request(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    an_ep *ep = closure;
    an_service *svc = ep->svc;
    an_job *j = xcalloc(1, sizeof(*j));
    j->ep = ep;
    j->msg = msg;
    j->received_ns = an_mono_ns();
    j->deadline_ns = j->received_ns + ep->timeout_ms * NS_PER_MS;
    pick_correlation_id(msg, j->correlation_id);

    pthread_mutex_lock(&svc->mu);
    if (svc->queued >= (size_t)svc->cfg.max_pending) {
        an_error err;
        an_error_set(&err, AN_RESOURCE_EXHAUSTED, "%s is overloaded (%zu requests waiting)",
                     svc->def->name, svc->queued);
        account_locked(ep, AN_RESOURCE_EXHAUSTED, &err, 0);
        pthread_mutex_unlock(&svc->mu);
        answer_request(svc, ep, natsMsg_GetReply(msg), j->correlation_id, NULL,
                       AN_RESOURCE_EXHAUSTED, NULL, &err, 0);
        job_free(j);
        return;
    }
    outstanding_add_locked(svc, j);
    if (svc->queue_tail)
        svc->queue_tail->next_q = j;
    else
        svc->queue_head = j;
    svc->queue_tail = j;
    svc->queued++;
    pthread_cond_signal(&svc->work_cv);
    if (j->deadline_ns < svc->wd_wake_ns)
        pthread_cond_signal(&svc->wd_cv);
    pthread_mutex_unlock(&svc->mu);
}

/* Is the body empty or only white space? */
static bool blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r' && p[i] != '\n')
            return false;
    return true;
}

static an_status parse_body(const char *raw, size_t len, cJSON **body, an_error *err)
{
    *body = NULL;
    if (blank(raw, len))
        return AN_OK;
    const char *end = NULL;
    cJSON *j = cJSON_ParseWithLengthOpts(raw, len, &end, false);
    if (!j || !blank(end, len - (size_t)(end - raw))) {
        cJSON_Delete(j);
        return an_error_set(err, AN_INVALID_ARGUMENT, "request body is not valid JSON");
    }
    *body = j;
    return AN_OK;
}

static void run_job(an_service *svc, an_job *j)
{
    an_ep *ep = j->ep;
    an_auth auth = {0};
    an_error err;
    an_error_clear(&err);
    cJSON *body = NULL, *data = NULL;
    const char *raw = natsMsg_GetData(j->msg);
    size_t raw_len = (size_t)natsMsg_GetDataLength(j->msg);

    an_status st = an_auth_from_headers(svc->verifier, auth_header_fn, j->msg, &auth, &err);
    if (st != AN_OK && (ep->def->flags & AN_EP_PUBLIC)) {
        an_auth_clear(&auth);
        an_error_clear(&err);
        st = AN_OK;
    }
    if (st == AN_OK)
        st = parse_body(raw ? raw : "", raw ? raw_len : 0, &body, &err);
    if (st == AN_OK) {
        an_request req = {
            .svc = svc,
            .ctx = svc->ctx,
            .endpoint = ep->def,
            .subject = ep->subject,
            .body = body,
            .raw = raw ? raw : "",
            .raw_len = raw ? raw_len : 0,
            .auth = &auth,
            .correlation_id = j->correlation_id,
            .deadline_ms = j->deadline_ns / NS_PER_MS,
            .msg = j->msg,
        };
        st = ep->def->handler(&req, &data, &err);
        if (st != AN_OK) {
            cJSON_Delete(data);
            data = NULL;
        }
    }
    if (st != AN_OK) {
        err.code = st; /* the returned status wins over what err says */
        if (!err.message[0])
            snprintf(err.message, sizeof(err.message), "%s", an_status_code(st));
    }

    int64_t dur = an_mono_ns() - j->received_ns;
    pthread_mutex_lock(&svc->mu);
    bool mine = !j->replied;
    if (mine) {
        j->replied = true;
        account_locked(ep, st, &err, dur);
    }
    pthread_mutex_unlock(&svc->mu);
    if (mine) {
        answer_request(svc, ep, natsMsg_GetReply(j->msg), j->correlation_id, auth.tenant, st, data,
                       &err, dur);
    } else {
        an_log_ctx(AN_LOG_WARN, auth.tenant, j->correlation_id,
                   "%s: finished after its deadline (%.1f ms); result dropped", ep->subject,
                   (double)dur / 1e6);
    }
    cJSON_Delete(data);
    cJSON_Delete(body);
    an_auth_clear(&auth);

    pthread_mutex_lock(&svc->mu);
    outstanding_remove_locked(svc, j);
    pthread_mutex_unlock(&svc->mu);
    job_free(j);
}

static void *worker_main(void *arg)
{
    an_service *svc = arg;
    pthread_mutex_lock(&svc->mu);
    for (;;) {
        while (!svc->queue_head && !svc->stop_workers)
            pthread_cond_wait(&svc->work_cv, &svc->mu);
        an_job *j = svc->queue_head;
        if (!j)
            break; /* stopping and nothing left */
        svc->queue_head = j->next_q;
        if (!svc->queue_head)
            svc->queue_tail = NULL;
        svc->queued--;
        if (j->replied) { /* answered while it waited: never run it */
            outstanding_remove_locked(svc, j);
            pthread_mutex_unlock(&svc->mu);
            job_free(j);
            pthread_mutex_lock(&svc->mu);
            continue;
        }
        j->started = true;
        pthread_mutex_unlock(&svc->mu);
        run_job(svc, j);
        pthread_mutex_lock(&svc->mu);
    }
    pthread_mutex_unlock(&svc->mu);
    return NULL;
}

/* Mark every outstanding job past its deadline (or all of them when
 * all is true) as answered and count it; hand back what is needed to
 * answer them outside the lock. Caller holds svc->mu. */
static unrun *collect_unreplied_locked(an_service *svc, int64_t now, bool all, size_t *count,
                                       int64_t *next_deadline)
{
    unrun *out = NULL;
    size_t n = 0;
    for (an_job *j = svc->outstanding; j; j = j->next) {
        if (j->replied)
            continue;
        if (!all && j->deadline_ns > now) {
            if (next_deadline && j->deadline_ns < *next_deadline)
                *next_deadline = j->deadline_ns;
            continue;
        }
        j->replied = true;
        out = realloc(out, (n + 1) * sizeof(*out));
        if (!out)
            abort();
        unrun *u = &out[n++];
        u->ep = j->ep;
        const char *reply = natsMsg_GetReply(j->msg);
        u->reply = reply ? strdup(reply) : NULL;
        snprintf(u->correlation_id, sizeof(u->correlation_id), "%s", j->correlation_id);
        u->dur_ns = now - j->received_ns;
        if (all)
            an_error_set(&u->err, AN_UNAVAILABLE, "%s is shutting down", svc->def->name);
        else
            an_error_set(&u->err, AN_UNAVAILABLE, "%s: no reply within %lld ms", j->ep->subject,
                         (long long)j->ep->timeout_ms);
        account_locked(j->ep, AN_UNAVAILABLE, &u->err, u->dur_ns);
    }
    *count = n;
    return out;
}

static void answer_unrun(an_service *svc, unrun *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        answer_request(svc, list[i].ep, list[i].reply, list[i].correlation_id, NULL, AN_UNAVAILABLE,
                       NULL, &list[i].err, list[i].dur_ns);
        free(list[i].reply);
    }
    free(list);
}

static void *watchdog_main(void *arg)
{
    an_service *svc = arg;
    pthread_mutex_lock(&svc->mu);
    while (!svc->stop_watchdog) {
        int64_t now = an_mono_ns();
        int64_t next = now + 1000 * NS_PER_MS;
        size_t n = 0;
        unrun *expired = collect_unreplied_locked(svc, now, false, &n, &next);
        if (n) {
            pthread_mutex_unlock(&svc->mu);
            answer_unrun(svc, expired, n);
            pthread_mutex_lock(&svc->mu);
            continue;
        }
        svc->wd_wake_ns = next;
        struct timespec ts = abs_mono(next);
        pthread_cond_timedwait(&svc->wd_cv, &svc->mu, &ts);
    }
    pthread_mutex_unlock(&svc->mu);
    return NULL;
}

/* -------------------------------------------------------------- lifecycle */

static void on_disconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    const an_service *svc = closure;
    if (!atomic_load(&svc->draining)) /* closing at the end of a drain is no loss */
        an_warn("NATS connection lost; reconnecting");
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    (void)closure;
    an_info("NATS connection re-established");
}

/* nats.c calls this on its callback thread after every other connection
 * callback; service_free() waits for it so none of them runs on freed memory. */
static void on_closed(natsConnection *nc, void *closure)
{
    (void)nc;
    an_service *svc = closure;
    pthread_mutex_lock(&svc->mu);
    svc->nats_closed = true;
    pthread_cond_broadcast(&svc->closed_cv);
    pthread_mutex_unlock(&svc->mu);
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure)
{
    (void)nc;
    (void)closure;
    an_errorf("NATS asynchronous error on %s: %s",
              sub ? natsSubscription_GetSubject(sub) : "the connection", natsStatus_GetText(err));
}

/* SIGTERM/SIGINT arrived while blocked (before wait_for_stop runs)? */
static bool stop_signal_pending(void)
{
    sigset_t p;
    sigpending(&p);
    return sigismember(&p, SIGTERM) == 1 || sigismember(&p, SIGINT) == 1;
}

static an_status connect_nats(an_service *svc, an_error *err)
{
    natsOptions *opts = NULL;
    char name[128];
    snprintf(name, sizeof(name), "%s-%s", svc->def->name, svc->id);
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(opts, svc->cfg.nats_url);
    if (s == NATS_OK)
        s = natsOptions_SetName(opts, name);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(opts, -1); /* forever */
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(opts, 1000);
    if (s == NATS_OK)
        s = natsOptions_SetRetryOnFailedConnect(opts, true, NULL, NULL);
    if (s == NATS_OK)
        s = natsOptions_UseGlobalMessageDelivery(opts, true);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(opts, on_disconnected, svc);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(opts, on_reconnected, svc);
    if (s == NATS_OK)
        s = natsOptions_SetClosedCB(opts, on_closed, svc);
    if (s == NATS_OK)
        s = natsOptions_SetErrorHandler(opts, on_async_error, svc);
    if (s != NATS_OK) {
        natsOptions_Destroy(opts);
        return an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_NATS_URL",
                              "ANALYTICS_NATS_URL=%s: %s", svc->cfg.nats_url,
                              natsStatus_GetText(s));
    }
    s = natsConnection_Connect(&svc->nc, opts);
    natsOptions_Destroy(opts);
    if (s == NATS_NOT_YET_CONNECTED) {
        an_warn("NATS at %s not reachable yet; retrying for %lld ms", svc->cfg.nats_url,
                (long long)svc->cfg.nats_connect_timeout_ms);
        int64_t deadline = an_mono_ns() + svc->cfg.nats_connect_timeout_ms * NS_PER_MS;
        while (natsConnection_Status(svc->nc) != NATS_CONN_STATUS_CONNECTED &&
               an_mono_ns() < deadline && !stop_signal_pending())
            nats_Sleep(100);
        if (natsConnection_Status(svc->nc) == NATS_CONN_STATUS_CONNECTED)
            s = NATS_OK;
    }
    if (s != NATS_OK) /* a retrying svc->nc is closed by service_free() */
        return an_error_set(err, AN_UNAVAILABLE, "cannot connect to NATS at %s: %s",
                            svc->cfg.nats_url, natsStatus_GetText(s));
    return AN_OK;
}

static an_status start_threads(an_service *svc, an_error *err)
{
    int n = (int)svc->cfg.workers;
    if (n <= 0)
        n = svc->def->workers > 0 ? svc->def->workers : 4;
    svc->workers = xcalloc((size_t)n, sizeof(pthread_t));
    for (int i = 0; i < n; i++) {
        if (pthread_create(&svc->workers[i], NULL, worker_main, svc) != 0)
            return an_error_set(err, AN_INTERNAL, "cannot start worker thread: %s",
                                strerror(errno));
        svc->nworkers++;
    }
    if (pthread_create(&svc->watchdog, NULL, watchdog_main, svc) != 0)
        return an_error_set(err, AN_INTERNAL, "cannot start watchdog thread");
    svc->watchdog_started = true;
    return AN_OK;
}

static void stop_watchdog(an_service *svc)
{
    if (!svc->watchdog_started)
        return;
    pthread_mutex_lock(&svc->mu);
    svc->stop_watchdog = true;
    pthread_cond_signal(&svc->wd_cv);
    pthread_mutex_unlock(&svc->mu);
    pthread_join(svc->watchdog, NULL);
    svc->watchdog_started = false;
}

/* Join the workers once they have emptied the queue. */
static void stop_workers(an_service *svc)
{
    pthread_mutex_lock(&svc->mu);
    svc->stop_workers = true;
    pthread_cond_broadcast(&svc->work_cv);
    pthread_mutex_unlock(&svc->mu);
    for (int i = 0; i < svc->nworkers; i++)
        pthread_join(svc->workers[i], NULL);
    svc->nworkers = 0;
}

static an_status subscribe_endpoints(an_service *svc, an_error *err)
{
    for (size_t i = 0; i < svc->neps; i++) {
        an_ep *ep = &svc->eps[i];
        natsStatus s = natsConnection_QueueSubscribe(&ep->sub, svc->nc, ep->subject, svc->def->name,
                                                     on_request, ep);
        if (s != NATS_OK)
            return an_error_set(err, AN_UNAVAILABLE, "subscribe %s: %s", ep->subject,
                                natsStatus_GetText(s));
        /* Queue depth is bounded by ANALYTICS_MAX_PENDING, not by nats.c. */
        natsSubscription_SetPendingLimits(ep->sub, -1, -1);
    }
    natsStatus s = an_srv_subscribe(svc);
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(svc->nc, 5000);
    if (s != NATS_OK)
        return an_error_set(err, AN_UNAVAILABLE, "subscribe $SRV: %s", natsStatus_GetText(s));
    return AN_OK;
}

/* Stop taking requests, let the ones received finish, answer what is left.
 * Returns the number of handlers still running at the end. */
static size_t drain(an_service *svc)
{
    atomic_store(&svc->draining, true);
    int64_t deadline = an_mono_ns() + svc->cfg.drain_timeout_ms * NS_PER_MS;
    for (size_t i = 0; i < svc->neps; i++)
        if (svc->eps[i].sub)
            natsSubscription_DrainTimeout(svc->eps[i].sub, svc->cfg.drain_timeout_ms + 1);
    an_srv_unsubscribe(svc);
    /* Once the server has the UNSUBs, new requests go to the other replicas. */
    natsConnection_FlushTimeout(svc->nc, 2000);
    pthread_mutex_lock(&svc->mu);
    size_t inflight = svc->noutstanding;
    pthread_mutex_unlock(&svc->mu);
    an_info("draining: no longer taking requests, %zu in flight", inflight);

    for (size_t i = 0; i < svc->neps; i++) {
        if (!svc->eps[i].sub)
            continue;
        int64_t left_ms = (deadline - an_mono_ns()) / NS_PER_MS;
        natsSubscription_WaitForDrainCompletion(svc->eps[i].sub, left_ms > 0 ? left_ms : 1);
    }
    pthread_mutex_lock(&svc->mu);
    while (svc->noutstanding > 0 && an_mono_ns() < deadline) {
        struct timespec ts = abs_mono(deadline);
        pthread_cond_timedwait(&svc->idle_cv, &svc->mu, &ts);
    }
    size_t n = 0;
    unrun *left = collect_unreplied_locked(svc, an_mono_ns(), true, &n, NULL);
    size_t running = 0; /* handlers that have not returned */
    for (an_job *j = svc->outstanding; j; j = j->next)
        running += j->started;
    pthread_mutex_unlock(&svc->mu);
    if (n) {
        an_warn("drain timeout: answering %zu requests with unavailable", n);
        answer_unrun(svc, left, n);
    } else {
        free(left);
    }
    stop_watchdog(svc);
    if (running == 0)
        stop_workers(svc);
    return running;
}

/* ------------------------------------------------------------------- main */

static void usage(const an_service_def *def, FILE *out)
{
    fprintf(out, "%s %s - %s\n\n", def->name, def->version,
            def->description ? def->description : "");
    fprintf(out, "usage: %s [--help | --version]\n\n", def->name);
    fprintf(out, "Serves NATS requests on analytics.%s.<verb> (queue group %s):\n", def->name,
            def->name);
    for (const an_endpoint *e = def->endpoints; e && e->name; e++)
        fprintf(out, "  %-24s %s%s\n", e->name, e->description ? e->description : "",
                (e->flags & AN_EP_PUBLIC) ? " (no auth)" : "");
    fprintf(out, "\nConfiguration (environment), shared by every service:\n");
    an_config_print_help(out, an_service_config_vars);
    if (def->config && def->config->name) {
        fprintf(out, "\nConfiguration of %s:\n", def->name);
        an_config_print_help(out, def->config);
    }
}

static an_status check_def(const an_service_def *def, an_error *err)
{
    if (!name_ok(def->name))
        return an_error_set(err, AN_INVALID_ARGUMENT,
                            "service name \"%s\" must match "
                            "[A-Za-z0-9_-]+",
                            def->name ? def->name : "");
    if (!semver_ok(def->version))
        return an_error_set(err, AN_INVALID_ARGUMENT, "service version \"%s\" is not SemVer",
                            def->version ? def->version : "");
    if (!def->endpoints || !def->endpoints[0].name)
        return an_error_set(err, AN_INVALID_ARGUMENT, "service %s has no endpoint", def->name);
    for (const an_endpoint *e = def->endpoints; e->name; e++) {
        if (!name_ok(e->name) || !e->handler || e->timeout_ms < 0)
            return an_error_set(err, AN_INVALID_ARGUMENT,
                                "endpoint \"%s\": name must match [A-Za-z0-9_-]+, with a "
                                "handler and a timeout >= 0",
                                e->name);
        for (const an_endpoint *o = def->endpoints; o != e; o++)
            if (strcmp(o->name, e->name) == 0)
                return an_error_set(err, AN_INVALID_ARGUMENT, "endpoint \"%s\" twice", e->name);
    }
    return AN_OK;
}

static char *read_file(const char *path, an_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_JWT_PUBLIC_KEY_FILE",
                       "ANALYTICS_JWT_PUBLIC_KEY_FILE=%s: %s", path, strerror(errno));
        return NULL;
    }
    an_buf b = AN_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0 && b.len < 1 << 20)
        an_buf_add(&b, chunk, n);
    fclose(f);
    return an_buf_detach(&b, NULL);
}

static an_status make_verifier(an_service *svc, an_error *err)
{
    an_service_config *c = &svc->cfg;
    char *pem = NULL;
    if (c->jwt_public_key_file && *c->jwt_public_key_file) {
        pem = read_file(c->jwt_public_key_file, err);
        if (!pem)
            return AN_INVALID_ARGUMENT;
    }
    an_auth_config ac = {c->jwt_secret,           pem,
                         c->auth_trusted_headers, c->jwt_leeway_ms / 1000,
                         c->jwt_audience,         c->jwt_issuer};
    an_status s = an_auth_verifier_new(&ac, &svc->verifier, err);
    free(pem);
    if (s != AN_OK)
        return s;
    bool needs_auth = false;
    for (const an_endpoint *e = svc->def->endpoints; e->name; e++)
        if (!(e->flags & AN_EP_PUBLIC))
            needs_auth = true;
    if (needs_auth && !an_auth_verifier_usable(svc->verifier))
        return an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_JWT_SECRET",
                              "set ANALYTICS_JWT_SECRET (HS256) or ANALYTICS_JWT_PUBLIC_KEY_FILE "
                              "(RS256) so callers can be authenticated (or "
                              "ANALYTICS_AUTH_TRUSTED_HEADERS=true in local development)");
    if (c->auth_trusted_headers)
        an_warn("ANALYTICS_AUTH_TRUSTED_HEADERS is on: identity is taken from X-* headers "
                "without verification; never use this in production");
    return AN_OK;
}

static an_status load_config(an_service *svc, an_error *err)
{
    an_status s = an_config_load(an_service_config_vars, &svc->cfg, err);
    if (s != AN_OK)
        return s;
    an_log_level lvl;
    if (an_log_level_parse(svc->cfg.log_level, &lvl) != 0)
        return an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_LOG_LEVEL",
                              "ANALYTICS_LOG_LEVEL=%s: expected debug, info, warn or error",
                              svc->cfg.log_level);
    an_log_set_level(lvl);
    if (svc->def->config) {
        s = an_config_load(svc->def->config, svc->ctx, err);
        if (s != AN_OK)
            return s;
    }
    return make_verifier(svc, err);
}

static an_service *service_new(const an_service_def *def)
{
    an_service *svc = xcalloc(1, sizeof(*svc));
    svc->def = def;
    svc->ctx = xcalloc(1, def->ctx_size);
    random_id(svc->id, AN_SERVICE_ID_LEN);
    pthread_mutex_init(&svc->mu, NULL);
    an_time_cond_init_mono(&svc->work_cv);
    an_time_cond_init_mono(&svc->idle_cv);
    an_time_cond_init_mono(&svc->wd_cv);
    an_time_cond_init_mono(&svc->closed_cv);
    svc->wd_wake_ns = INT64_MAX;
    size_t n = 0;
    while (def->endpoints[n].name)
        n++;
    svc->eps = xcalloc(n, sizeof(an_ep));
    svc->neps = n;
    return svc;
}

static void service_free(an_service *svc)
{
    an_svc_ops_free(svc);
    for (size_t i = 0; i < svc->neps; i++)
        natsSubscription_Destroy(svc->eps[i].sub);
    an_srv_unsubscribe(svc);
    an_events_close(svc->events);
    if (svc->nc) {
        natsConnection_Close(svc->nc);
        pthread_mutex_lock(&svc->mu);
        int64_t deadline = an_mono_ns() + 5000 * NS_PER_MS;
        while (!svc->nats_closed && an_mono_ns() < deadline) {
            struct timespec ts = abs_mono(deadline);
            pthread_cond_timedwait(&svc->closed_cv, &svc->mu, &ts);
        }
        pthread_mutex_unlock(&svc->mu);
        natsConnection_Destroy(svc->nc);
    }
    an_auth_verifier_free(svc->verifier);
    if (svc->def->config)
        an_config_free(svc->def->config, svc->ctx);
    an_config_free(an_service_config_vars, &svc->cfg);
    pthread_mutex_destroy(&svc->mu);
    pthread_cond_destroy(&svc->work_cv);
    pthread_cond_destroy(&svc->idle_cv);
    pthread_cond_destroy(&svc->wd_cv);
    pthread_cond_destroy(&svc->closed_cv);
    free(svc->workers);
    free(svc->eps);
    free(svc->ctx);
    free(svc);
}

static an_status service_start(an_service *svc, bool *init_done, an_error *err)
{
    for (size_t i = 0; i < svc->neps; i++) {
        an_ep *ep = &svc->eps[i];
        ep->svc = svc;
        ep->def = &svc->def->endpoints[i];
        snprintf(ep->subject, sizeof(ep->subject), "analytics.%s.%s", svc->def->name,
                 ep->def->name);
        ep->timeout_ms =
            ep->def->timeout_ms > 0 ? ep->def->timeout_ms : svc->cfg.request_timeout_ms;
    }
    rfc3339_now(svc->started, sizeof(svc->started));
    an_status s = an_svc_ops_init(svc, err);
    if (s != AN_OK)
        return s;
    s = connect_nats(svc, err);
    if (s != AN_OK)
        return s;
    if (svc->def->events) {
        s = an_events_open(svc->nc, NULL, &svc->events, err);
        if (s != AN_OK)
            return s;
    }
    if (svc->def->init) {
        s = svc->def->init(svc, svc->ctx, err);
        if (s != AN_OK)
            return s;
    }
    *init_done = true;
    s = start_threads(svc, err);
    if (s != AN_OK)
        return s;
    s = subscribe_endpoints(svc, err);
    if (s != AN_OK)
        return s;
    return an_svc_ops_start(svc, err);
}

/* Wait for SIGTERM/SIGINT (blocked in every thread, see below). */
static void wait_for_stop(const sigset_t *set)
{
    int sig;
    while ((sig = sigwaitinfo(set, NULL)) < 0)
        ; /* EINTR */
    an_info("got %s", sig == SIGTERM ? "SIGTERM" : "SIGINT");
}

int an_service_main(const an_service_def *def, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(def, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0 || strcmp(argv[i], "-V") == 0) {
            printf("%s %s\n", def->name, def->version);
            return 0;
        }
        fprintf(stderr, "%s: unknown argument %s\n\n", def->name, argv[i]);
        usage(def, stderr);
        return 2;
    }
    an_error err;
    an_error_clear(&err);
    if (check_def(def, &err) != AN_OK) {
        fprintf(stderr, "%s: %s\n", def->name ? def->name : "service", err.message);
        return 2;
    }
    an_log_init(def->name, AN_LOG_INFO);
    an_service *svc = service_new(def);
    if (load_config(svc, &err) != AN_OK) {
        an_errorf("bad configuration: %s", err.message);
        service_free(svc);
        return 2;
    }

    /* Block the stop signals before any thread exists, so every thread
     * inherits the mask and only wait_for_stop() receives them. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    bool init_done = false;
    an_status s = service_start(svc, &init_done, &err);
    if (s != AN_OK) {
        an_errorf("start failed: %s", err.message);
        an_srv_unsubscribe(svc);
        stop_watchdog(svc);
        stop_workers(svc);
        if (init_done && def->exit)
            def->exit(svc, svc->ctx);
        service_free(svc);
        nats_CloseAndWait(2000);
        return 1;
    }
    an_info("started %s %s (id %s) on analytics.%s.*, %d workers", def->name, def->version, svc->id,
            def->name, svc->nworkers);

    wait_for_stop(&set);
    size_t stuck = drain(svc);
    an_svc_ops_stop(svc);
    if (stuck) {
        /* The handlers still use ctx and the connection: leave them be and
         * let the process end take everything down. */
        an_errorf("drain timeout: %zu handlers still running; exiting without cleanup", stuck);
        natsConnection_FlushTimeout(svc->nc, 1000);
        _exit(1); /* no atexit work either: those threads may still touch anything */
    }
    if (def->exit)
        def->exit(svc, svc->ctx);
    natsConnection_FlushTimeout(svc->nc, 2000);
    service_free(svc);
    nats_CloseAndWait(2000);
    an_info("stopped");
    return 0;
}

/* -------------------------------------------------------------- accessors */

const char *an_service_name(const an_service *svc)
{
    return svc->def->name;
}

const char *an_service_id(const an_service *svc)
{
    return svc->id;
}

const an_service_config *an_service_get_config(const an_service *svc)
{
    return &svc->cfg;
}

void *an_service_ctx(const an_service *svc)
{
    return svc->ctx;
}

natsConnection *an_service_conn(const an_service *svc)
{
    return svc->nc;
}

an_events *an_service_events(const an_service *svc)
{
    return svc->events;
}

bool an_service_draining(const an_service *svc)
{
    return atomic_load(&svc->draining);
}

const char *an_request_header(const an_request *req, const char *name)
{
    return an_msg_header(req->msg, name);
}

int64_t an_request_remaining_ms(const an_request *req)
{
    int64_t left = req->deadline_ms - an_mono_ns() / NS_PER_MS;
    return left > 0 ? left : 0;
}

void an_request_log(const an_request *req, an_log_level level, const char *fmt, ...)
{
    if (level < an_log_get_level())
        return;
    an_buf msg = AN_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    an_buf_vaddf(&msg, fmt, ap);
    va_end(ap);
    an_log_ctx(level, req->auth ? req->auth->tenant : NULL, req->correlation_id, "%s",
               an_buf_str(&msg));
    an_buf_free(&msg);
}

/* ------------------------------------------------------------------ hooks */

an_status an_service_endpoint_stats(an_service *svc, size_t i, an_endpoint_stats *out)
{
    if (i >= svc->neps)
        return AN_NOT_FOUND;
    const an_ep *ep = &svc->eps[i];
    pthread_mutex_lock(&svc->mu);
    out->name = ep->def->name;
    out->subject = ep->subject;
    out->num_requests = ep->num_requests;
    out->num_errors = ep->num_errors;
    out->processing_time_ns = ep->processing_ns;
    out->average_processing_time_ns =
        ep->num_requests ? ep->processing_ns / (int64_t)ep->num_requests : 0;
    snprintf(out->last_error, sizeof(out->last_error), "%s", ep->last_error);
    pthread_mutex_unlock(&svc->mu);
    return AN_OK;
}

an_status an_service_add_ready_check(an_service *svc, const char *name, an_ready_fn fn, void *ud)
{
    pthread_mutex_lock(&svc->mu);
    if (svc->nchecks >= AN_SERVICE_MAX_READY_CHECKS) {
        pthread_mutex_unlock(&svc->mu);
        return AN_RESOURCE_EXHAUSTED;
    }
    an_ready_check *c = &svc->checks[svc->nchecks++];
    snprintf(c->name, sizeof(c->name), "%s", name);
    c->fn = fn;
    c->ud = ud;
    pthread_mutex_unlock(&svc->mu);
    return AN_OK;
}
