/*
 * coord.c - what replicas agree on through Redis, and the per-thread
 * clients of the request handlers.
 *
 * Keys (queue name Q, "exports" by default):
 *   an:Q                      the job stream (common/queue.h)
 *   an:Q:final:<job id>       the terminal state claimed for the job:
 *                             completed, failed or cancelled (SET NX, 30 days).
 *                             The first claim wins; a cancel that finds
 *                             "completed" is refused, a worker that finds
 *                             "cancelled" stops. Workers poll it while they run.
 *   an:Q:active:<tenant>      ZSET of the tenant's queued and running jobs
 *                             (score: when the slot lapses, so a slot lost by
 *                             a crash frees itself after AN_SLOT_TTL_MS).
 * Redis is never the only copy: the record in ClickHouse says what a job is;
 * these keys only order concurrent writers.
 */
#include "exports/exports.h"

#include "common/queue.h"
#include "common/redis.h"
#include "common/timeutil.h"

#include <stdlib.h>
#include <string.h>

#define AN_FINAL_TTL_S   (30 * 86400)
#define AN_SLOT_TTL_MS   (6LL * 3600 * 1000)
#define AN_REDIS_TIMEOUT 5000

/* -------------------------------------------------- per-thread clients */

typedef struct thread_clients {
    an_ch *ch;
    redisContext *rc;
    an_queue *q;
} thread_clients;

static void thread_clients_free(void *p)
{
    thread_clients *t = p;
    if (!t)
        return;
    an_ch_free(t->ch);
    if (t->rc)
        redisFree(t->rc);
    an_queue_close(t->q);
    free(t);
}

static thread_clients *clients(exports_ctx *x)
{
    thread_clients *t = pthread_getspecific(x->tls);
    if (!t) {
        t = calloc(1, sizeof(*t));
        if (!t)
            abort();
        pthread_setspecific(x->tls, t);
    }
    return t;
}

void exports_coord_init(exports_ctx *x)
{
    pthread_key_create(&x->tls, thread_clients_free);
    snprintf(x->active_key_prefix, sizeof(x->active_key_prefix),
             "an:%s:active:", x->cfg.queue_name);
}

an_ch *exports_ctx_ch(exports_ctx *x, an_error *err)
{
    thread_clients *t = clients(x);
    if (!t->ch) {
        const an_service_config *sc = an_service_get_config(x->svc);
        an_ch_options o = {.url = sc->clickhouse_url,
                           .user = sc->clickhouse_user,
                           .password = sc->clickhouse_password,
                           .query_timeout_ms = 10000,
                           .max_retries = 2};
        if (an_ch_new(&o, &t->ch, err) != AN_OK)
            return NULL;
    }
    return t->ch;
}

redisContext *exports_ctx_redis(exports_ctx *x, an_error *err)
{
    thread_clients *t = clients(x);
    const an_service_config *sc = an_service_get_config(x->svc);
    if (an_redis_ensure(&t->rc, sc->redis_url, AN_REDIS_TIMEOUT, err) != AN_OK)
        return NULL;
    return t->rc;
}

an_status exports_ctx_queue_push(exports_ctx *x, const exports_job *j, an_error *err)
{
    thread_clients *t = clients(x);
    const an_service_config *sc = an_service_get_config(x->svc);
    if (!t->q) {
        an_queue_options o;
        an_queue_options_init(&o);
        an_status s = an_queue_open(&t->q, sc->redis_url, x->cfg.queue_name, &o, err);
        if (s != AN_OK)
            return s;
    }
    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "tenantId", j->tenant_id);
    cJSON_AddStringToObject(p, "id", j->id);
    char *payload = cJSON_PrintUnformatted(p);
    cJSON_Delete(p);
    an_queue_meta meta = {
        .job_id = j->id, .tenant = j->tenant_id, .correlation_id = j->correlation_id};
    an_status s = an_queue_push(t->q, payload, strlen(payload), &meta, NULL, err);
    free(payload);
    return s;
}

/* ----------------------------------------------------------------- keys */

void exports_key_final(const exports_ctx *x, const char *id, char *out, size_t n)
{
    snprintf(out, n, "an:%s:final:%s", x->cfg.queue_name, id);
}

static const char *state_const(const char *s, size_t n)
{
    static const char *states[] = {EXPORTS_STATUS_COMPLETED, EXPORTS_STATUS_FAILED,
                                   EXPORTS_STATUS_CANCELLED};
    for (size_t i = 0; i < 3; i++)
        if (strlen(states[i]) == n && memcmp(states[i], s, n) == 0)
            return states[i];
    return "unknown";
}

an_status exports_claim_final(exports_ctx *x, redisContext *c, const char *id, const char *state,
                              const char **other, an_error *err)
{
    char key[256], ttl[32];
    exports_key_final(x, id, key, sizeof(key));
    snprintf(ttl, sizeof(ttl), "%d", AN_FINAL_TTL_S);
    const char *set[] = {"SET", key, state, "NX", "EX", ttl};
    redisReply *r = NULL;
    an_status s = an_redis_argv(c, 6, set, NULL, &r, err);
    if (s != AN_OK)
        return s;
    bool claimed = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (claimed)
        return AN_OK;
    const char *get[] = {"GET", key};
    s = an_redis_argv(c, 2, get, NULL, &r, err);
    if (s != AN_OK)
        return s;
    const char *was = r->type == REDIS_REPLY_STRING ? state_const(r->str, (size_t)r->len) : NULL;
    freeReplyObject(r);
    if (!was) /* expired between SET and GET: try once more */
        return exports_claim_final(x, c, id, state, other, err);
    if (strcmp(was, state) == 0)
        return AN_OK;
    if (other)
        *other = was;
    return an_error_set(err, AN_ALREADY_EXISTS, "export %s is already %s", id, was);
}

const char *exports_final_state(exports_ctx *x, redisContext *c, const char *id, an_error *err)
{
    char key[256];
    exports_key_final(x, id, key, sizeof(key));
    const char *get[] = {"GET", key};
    redisReply *r = NULL;
    if (an_redis_argv(c, 2, get, NULL, &r, err) != AN_OK)
        return NULL;
    const char *was = r->type == REDIS_REPLY_STRING ? state_const(r->str, (size_t)r->len) : NULL;
    freeReplyObject(r);
    return was;
}

/* ---------------------------------------------------------------- slots */

static const an_redis_script slot_take = {
    "exports_slot_take",
    "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])\n"
    "local exp_at = tonumber(ARGV[1]) + tonumber(ARGV[2])\n"
    "if redis.call('ZSCORE', KEYS[1], ARGV[4]) then\n"
    "  redis.call('ZADD', KEYS[1], exp_at, ARGV[4]) return 1 end\n"
    "if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end\n"
    "redis.call('ZADD', KEYS[1], exp_at, ARGV[4])\n"
    "redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "return 1\n",
};

an_status exports_slot_take(exports_ctx *x, redisContext *c, const char *tenant, const char *id,
                            an_error *err)
{
    an_buf key = AN_BUF_INIT;
    an_buf_adds(&key, x->active_key_prefix);
    an_buf_adds(&key, tenant);
    char now[32], ttl[32], limit[32];
    snprintf(now, sizeof(now), "%lld", (long long)an_time_now_ms());
    snprintf(ttl, sizeof(ttl), "%lld", (long long)AN_SLOT_TTL_MS);
    snprintf(limit, sizeof(limit), "%lld", x->cfg.max_active_per_tenant);
    const char *args[] = {key.data, now, ttl, limit, id};
    size_t lens[] = {key.len, strlen(now), strlen(ttl), strlen(limit), strlen(id)};
    redisReply *r = NULL;
    an_status s = an_redis_eval(c, &slot_take, 1, 5, args, lens, &r, err);
    an_buf_free(&key);
    if (s != AN_OK)
        return s;
    bool ok = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (!ok)
        return an_error_set(err, AN_RESOURCE_EXHAUSTED,
                            "this tenant already has %lld exports queued or running; wait for "
                            "one to finish or cancel one",
                            x->cfg.max_active_per_tenant);
    return AN_OK;
}

void exports_slot_release(exports_ctx *x, redisContext *c, const char *tenant, const char *id)
{
    if (!c)
        return;
    an_buf key = AN_BUF_INIT;
    an_buf_adds(&key, x->active_key_prefix);
    an_buf_adds(&key, tenant);
    const char *argv[] = {"ZREM", key.data, id};
    size_t lens[] = {4, key.len, strlen(id)};
    redisReply *r = NULL;
    if (an_redis_argv(c, 3, argv, lens, &r, NULL) == AN_OK)
        freeReplyObject(r);
    an_buf_free(&key);
}
