/*
 * cache.c - render results in Redis, under
 *   analytics:dashboards:render:<tenant>:<dashboard id>:<version>:<widget|*>:<sha256 of params>
 * with a TTL (ANALYTICS_DASHBOARDS_CACHE_TTL). The version in the key makes
 * every update of a dashboard miss the old entries, which then expire.
 * The params hash is taken over the canonical (unformatted, as received after
 * normalisation) render parameters. Redis being down only costs speed.
 */
#include "common/crypto.h"
#include "common/redis.h"
#include "dashboards/dash.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

an_status dash_cache_get(dash_ctx *c, const char *key, char **json)
{
    *json = NULL;
    if (c->cache_ttl_ms <= 0 || !c->cfg->redis_url)
        return AN_NOT_FOUND;
    redisContext *r = take(c);
    if (!r)
        return AN_NOT_FOUND;
    const char *argv[] = {"GET", key};
    redisReply *rep = NULL;
    an_error err = {0};
    an_status st = an_redis_argv(r, 2, argv, NULL, &rep, &err);
    if (st == AN_OK && rep->type == REDIS_REPLY_STRING) {
        *json = strndup(rep->str, rep->len);
    } else {
        if (st != AN_OK)
            an_warn("render cache get: %s", err.message);
        st = AN_NOT_FOUND;
    }
    freeReplyObject(rep);
    give(c, r);
    return *json ? AN_OK : AN_NOT_FOUND;
}

void dash_cache_put(dash_ctx *c, const char *key, const char *json)
{
    if (c->cache_ttl_ms <= 0 || !c->cfg->redis_url)
        return;
    redisContext *r = take(c);
    if (!r)
        return;
    char ttl[32];
    snprintf(ttl, sizeof(ttl), "%lld", (long long)c->cache_ttl_ms);
    const char *argv[] = {"SET", key, json, "PX", ttl};
    redisReply *rep = NULL;
    an_error err = {0};
    if (an_redis_argv(r, 5, argv, NULL, &rep, &err) != AN_OK)
        an_warn("render cache put: %s", err.message);
    freeReplyObject(rep);
    give(c, r);
}

void dash_cache_close(dash_ctx *c)
{
    for (int i = 0; i < c->n_redis; i++)
        redisFree(c->redis_pool[i]);
    c->n_redis = 0;
}
