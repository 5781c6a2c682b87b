#include "metrics/cache.h"

#include "common/buf.h"
#include "common/crypto.h"
#include "common/redis.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* KEYS[1] the key; ARGV[1] version; ARGV[2] value; ARGV[3] ttl ms. Writes
 * unless the cached version is newer. Versions are below 2^53 (they are
 * milliseconds), so Lua's doubles compare them exactly. */
static const an_redis_script set_if_newer = {
    "metrics def cache",
    "local cur = redis.call('GET', KEYS[1])\n"
    "if cur then\n"
    "  local v = tonumber(string.match(cur, '^(%d+)'))\n"
    "  if v and v > tonumber(ARGV[1]) then return 0 end\n"
    "end\n"
    "redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])\n"
    "return 1\n",
};

static char *def_key(const char *prefix, const char *id)
{
    char *k;
    if (asprintf(&k, "%s:def:%s", prefix, id) < 0)
        abort();
    return k;
}

an_status metrics_cache_def_get(redisContext *r, const char *prefix, const char *id,
                                metric_def *out, bool *hit, an_error *err)
{
    *hit = false;
    char *key = def_key(prefix, id);
    const char *argv[] = {"GET", key};
    redisReply *rep = NULL;
    an_status s = an_redis_argv(r, 2, argv, NULL, &rep, err);
    free(key);
    if (s != AN_OK)
        return s;
    if (rep->type == REDIS_REPLY_STRING) {
        const char *nl = memchr(rep->str, '\n', rep->len);
        cJSON *j = nl ? cJSON_Parse(nl + 1) : NULL;
        const char *f[6] = {0};
        static const char *const names[] = {"tenant_id",   "id",   "name",
                                            "description", "spec", "created_by"};
        for (int i = 0; i < 6 && j; i++) {
            const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, names[i]);
            f[i] = cJSON_IsString(v) ? v->valuestring : NULL;
        }
        const cJSON *ca = cJSON_GetObjectItemCaseSensitive(j, "created_at");
        const cJSON *ua = cJSON_GetObjectItemCaseSensitive(j, "updated_at");
        const cJSON *ver = cJSON_GetObjectItemCaseSensitive(j, "version");
        bool ok = j && cJSON_IsNumber(ca) && cJSON_IsNumber(ua) && cJSON_IsString(ver);
        for (int i = 0; i < 6; i++)
            ok = ok && f[i];
        /* A malformed entry is a miss (it is overwritten on the next put). */
        if (ok &&
            metrics_def_from_columns(f[0], f[1], f[2], f[3], f[4], f[5], (int64_t)ca->valuedouble,
                                     (int64_t)ua->valuedouble, strtoull(ver->valuestring, NULL, 10),
                                     out, NULL) == AN_OK)
            *hit = strcmp(out->id, id) == 0;
        if (ok && !*hit && out->name)
            metrics_def_free(out);
        cJSON_Delete(j);
    }
    freeReplyObject(rep);
    return AN_OK;
}

an_status metrics_cache_def_put(redisContext *r, const char *prefix, const metric_def *d,
                                int64_t ttl_ms, an_error *err)
{
    cJSON *j = cJSON_CreateObject();
    char *desc = cJSON_PrintUnformatted(d->description);
    char *spec = metrics_def_spec_json(d);
    char ver[32], ttl[32];
    snprintf(ver, sizeof(ver), "%" PRIu64, d->version);
    snprintf(ttl, sizeof(ttl), "%" PRId64, ttl_ms);
    cJSON_AddStringToObject(j, "tenant_id", d->tenant_id ? d->tenant_id : "");
    cJSON_AddStringToObject(j, "id", d->id);
    cJSON_AddStringToObject(j, "name", d->name);
    cJSON_AddStringToObject(j, "description", desc ? desc : "{}");
    cJSON_AddStringToObject(j, "spec", spec);
    cJSON_AddStringToObject(j, "created_by", d->created_by ? d->created_by : "");
    cJSON_AddNumberToObject(j, "created_at", (double)d->created_at_ms);
    cJSON_AddNumberToObject(j, "updated_at", (double)d->updated_at_ms);
    cJSON_AddStringToObject(j, "version", ver);
    char *body = cJSON_PrintUnformatted(j);
    an_buf value = AN_BUF_INIT;
    an_buf_addf(&value, "%s\n%s", ver, body);
    char *key = def_key(prefix, d->id);
    const char *args[] = {key, ver, an_buf_str(&value), ttl};
    redisReply *rep = NULL;
    an_status s = an_redis_eval(r, &set_if_newer, 1, 4, args, NULL, &rep, err);
    freeReplyObject(rep);
    free(key);
    an_buf_free(&value);
    free(body);
    free(desc);
    free(spec);
    cJSON_Delete(j);
    return s;
}

char *metrics_cache_result_key(const char *prefix, const char *tenant, const char *metric_id,
                               uint64_t version, const char *params)
{
    char hash[AN_CRYPTO_SHA256_HEX];
    an_crypto_sha256_hex(params, strlen(params), hash, NULL);
    /* The tenant is written as is: the other parts have fixed shapes (ULID,
     * digits, 64 hex), so a key reads back unambiguously from the right
     * even when a tenant id holds ':'. */
    char *k;
    if (asprintf(&k, "%s:result:%s:%s:%" PRIu64 ":%s", prefix, tenant ? tenant : "*", metric_id,
                 version, hash) < 0)
        abort();
    return k;
}

an_status metrics_cache_result_get(redisContext *r, const char *key, char **json, an_error *err)
{
    *json = NULL;
    const char *argv[] = {"GET", key};
    redisReply *rep = NULL;
    an_status s = an_redis_argv(r, 2, argv, NULL, &rep, err);
    if (s != AN_OK)
        return s;
    if (rep->type == REDIS_REPLY_STRING)
        *json = strndup(rep->str, rep->len);
    freeReplyObject(rep);
    return AN_OK;
}

an_status metrics_cache_result_put(redisContext *r, const char *key, const char *json,
                                   int64_t ttl_ms, an_error *err)
{
    char ttl[32];
    snprintf(ttl, sizeof(ttl), "%" PRId64, ttl_ms);
    const char *argv[] = {"SET", key, json, "PX", ttl};
    redisReply *rep = NULL;
    an_status s = an_redis_argv(r, 5, argv, NULL, &rep, err);
    freeReplyObject(rep);
    return s;
}
