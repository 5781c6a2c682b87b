/*
 * cache.c - render results in Redis, under
 *   analytics:dashboards:render:<tenant>:<dashboard id>:<version>:<widget|*>:<sha256 of params>
 * with a TTL (ANALYTICS_DASHBOARDS_CACHE_TTL). The version in the key makes
 * every update of a dashboard miss the old entries, which then expire.
 * The params hash is taken over the canonical (unformatted, as received after
 * normalisation) render parameters. Redis being down only costs speed.
 *
 * It also keeps the dashboard records themselves (read-through, written
 * after every change), under analytics:dashboards:record:<tenant>:<id>, so
 * a cached render needs no ClickHouse query. A record is only replaced by a
 * higher version (a Lua script compares), so a replica filling the cache
 * from an older read cannot bring a revoked access back; a change deletes
 * the entry before writing ClickHouse, so a failed refill only costs a miss.
 */
#include "common/crypto.h"
#include "common/redis.h"
#include "common/timeutil.h"
#include "dashboards/dash.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void dash_cache_key(const dash *d, const char *widget, const cJSON *params, char *out, size_t n)
{
    char *p = params ? cJSON_PrintUnformatted(params) : NULL;
    char hex[AN_CRYPTO_SHA256_HEX];
    const char *s = p ? p : "{}";
    if (an_crypto_sha256_hex(s, strlen(s), hex, NULL) != AN_OK)
        snprintf(hex, sizeof(hex), "nohash");
    free(p);
    snprintf(out, n, "analytics:dashboards:render:%s:%s:%llu:%s:%s", d->tenant, d->id,
             (unsigned long long)d->version, widget ? widget : "*", hex);
}

static redisContext *take(dash_ctx *c)
{
    pthread_mutex_lock(&c->mu);
    redisContext *r = c->n_redis > 0 ? c->redis_pool[--c->n_redis] : NULL;
    pthread_mutex_unlock(&c->mu);
    an_error err = {0};
    if (an_redis_ensure(&r, c->cfg->redis_url, 500, &err) != AN_OK) {
        an_warn("render cache: redis: %s", err.message);
        return NULL;
    }
    return r;
}

static void give(dash_ctx *c, redisContext *r)
{
    if (!r)
        return;
    if (r->err) {
        redisFree(r);
        return;
    }
    pthread_mutex_lock(&c->mu);
    if (c->n_redis < DASH_POOL_MAX) {
        c->redis_pool[c->n_redis++] = r;
        r = NULL;
    }
    pthread_mutex_unlock(&c->mu);
    if (r)
        redisFree(r);
}

/* GET key on a pooled connection: AN_OK with *json (the caller frees), or
 * AN_NOT_FOUND when absent or Redis failed (logged as "<what>: ..." when
 * what is not NULL). */
static an_status get_str(dash_ctx *c, const char *key, const char *what, char **json)
{
    redisContext *r = take(c);
    if (!r)
        return AN_NOT_FOUND;
    const char *argv[] = {"GET", key};
    redisReply *rep = NULL;
    an_error err = {0};
    an_status st = an_redis_argv(r, 2, argv, NULL, &rep, &err);
    if (st == AN_OK && rep->type == REDIS_REPLY_STRING)
        *json = strndup(rep->str, rep->len);
    else if (st != AN_OK && what)
        an_warn("%s: %s", what, err.message);
    freeReplyObject(rep);
    give(c, r);
    return *json ? AN_OK : AN_NOT_FOUND;
}

/* Run a command on a pooled connection, best effort: a failure is only
 * logged, as "<what>: ...". */
static void run_best_effort(dash_ctx *c, const char *what, int argc, const char **argv)
{
    redisContext *r = take(c);
    if (!r)
        return;
    redisReply *rep = NULL;
    an_error err = {0};
    if (an_redis_argv(r, argc, argv, NULL, &rep, &err) != AN_OK)
        an_warn("%s: %s", what, err.message);
    freeReplyObject(rep);
    give(c, r);
}

an_status dash_cache_get(dash_ctx *c, const char *key, char **json)
{
    *json = NULL;
    if (c->cache_ttl_ms <= 0 || !c->cfg->redis_url)
        return AN_NOT_FOUND;
    return get_str(c, key, "render cache get", json);
}

void dash_cache_put(dash_ctx *c, const char *key, const char *json)
{
    if (c->cache_ttl_ms <= 0 || !c->cfg->redis_url)
        return;
    char ttl[32];
    snprintf(ttl, sizeof(ttl), "%lld", (long long)c->cache_ttl_ms);
    const char *argv[] = {"SET", key, json, "PX", ttl};
    run_best_effort(c, "render cache put", 5, argv);
}

/* SET key json PX ttl unless the stored record has a version >= version. */
static const an_redis_script set_if_newer = {
    "dashboards record set-if-newer",
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur then\n"
    "  local ok, doc = pcall(cjson.decode, cur)\n"
    "  if ok and tonumber(doc.v) and tonumber(doc.v) >= tonumber(ARGV[2]) then return 0 end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])\n"
    "return 1\n",
};

static void record_key(const char *tenant, const char *id, char *out, size_t n)
{
    snprintf(out, n, "analytics:dashboards:record:%s:%s", tenant, id);
}

an_status dash_record_cache_get(dash_ctx *c, const char *tenant, const char *id, char **json)
{
    *json = NULL;
    if (!c->cfg->redis_url || c->record_ttl_ms <= 0)
        return AN_NOT_FOUND;
    char key[300];
    record_key(tenant, id, key, sizeof(key));
    return get_str(c, key, NULL, json);
}

void dash_record_cache_put(dash_ctx *c, const char *tenant, const char *id, uint64_t version,
                           const char *json)
{
    if (!c->cfg->redis_url || c->record_ttl_ms <= 0)
        return;
    char key[300], ver[32], ttl[32];
    record_key(tenant, id, key, sizeof(key));
    snprintf(ver, sizeof(ver), "%llu", (unsigned long long)version);
    snprintf(ttl, sizeof(ttl), "%lld", (long long)c->record_ttl_ms);
    redisContext *r = take(c);
    if (!r)
        return;
    const char *args[] = {key, json, ver, ttl};
    redisReply *rep = NULL;
    an_error err = {0};
    if (an_redis_eval(r, &set_if_newer, 1, 4, args, NULL, &rep, &err) != AN_OK)
        an_warn("record cache put: %s", err.message);
    freeReplyObject(rep);
    give(c, r);
}

void dash_record_cache_del(dash_ctx *c, const char *tenant, const char *id)
{
    if (!c->cfg->redis_url || c->record_ttl_ms <= 0)
        return;
    char key[300];
    record_key(tenant, id, key, sizeof(key));
    const char *argv[] = {"DEL", key};
    run_best_effort(c, "record cache del", 2, argv);
}

static const an_redis_script unlock_script = {
    "dashboards lock release",
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end\n"
    "return 0\n",
};

an_status dash_lock(dash_ctx *c, const char *tenant, const char *id, int64_t wait_ms,
                    char token[40], an_error *err)
{
    token[0] = 0;
    if (!c->cfg->redis_url)
        return AN_OK;
    unsigned char rnd[16];
    an_status st = an_crypto_random(rnd, sizeof(rnd), err);
    if (st != AN_OK)
        return st;
    an_crypto_hex(rnd, sizeof(rnd), token);
    char key[300];
    snprintf(key, sizeof(key), "analytics:dashboards:lock:%s:%s", tenant, id);
    int64_t until = an_time_mono_ms() + wait_ms;
    for (;;) {
        redisContext *r = take(c);
        if (!r) {
            token[0] = 0;
            return an_error_set(err, AN_UNAVAILABLE, "dashboard lock: redis unavailable");
        }
        const char *argv[] = {"SET", key, token, "NX", "PX", "15000"};
        redisReply *rep = NULL;
        an_error e = {0};
        st = an_redis_argv(r, 6, argv, NULL, &rep, &e);
        bool got = st == AN_OK && rep->type == REDIS_REPLY_STATUS;
        freeReplyObject(rep);
        give(c, r);
        if (st != AN_OK) {
            token[0] = 0;
            return an_error_set(err, AN_UNAVAILABLE, "dashboard lock: %s", e.message);
        }
        if (got)
            return AN_OK;
        if (an_time_mono_ms() >= until) {
            token[0] = 0;
            return an_error_set(err, AN_FAILED_PRECONDITION,
                                "dashboard %s is being changed by another request; retry", id);
        }
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
}

void dash_unlock(dash_ctx *c, const char *tenant, const char *id, const char *token)
{
    if (!token || !*token)
        return;
    char key[300];
    snprintf(key, sizeof(key), "analytics:dashboards:lock:%s:%s", tenant, id);
    redisContext *r = take(c);
    if (!r)
        return; /* expires by itself */
    const char *args[] = {key, token};
    redisReply *rep = NULL;
    an_error err = {0};
    if (an_redis_eval(r, &unlock_script, 1, 2, args, NULL, &rep, &err) != AN_OK)
        an_warn("dashboard unlock: %s", err.message);
    freeReplyObject(rep);
    give(c, r);
}

void dash_cache_close(dash_ctx *c)
{
    for (int i = 0; i < c->n_redis; i++)
        redisFree(c->redis_pool[i]);
    c->n_redis = 0;
}
