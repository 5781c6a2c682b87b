#include "common/lease.h"
#include "common/crypto.h"
#include "common/timeutil.h"

#include "common/redis.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Only the holder (same token) extends or deletes. */
static const an_redis_script renew_script = {
    "lease_renew",
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
    "end\n"
    "return 0\n",
};

static const an_redis_script release_script = {
    "lease_release",
    "if redis.call('GET', KEYS[1]) == ARGV[1] then\n"
    "  return redis.call('DEL', KEYS[1])\n"
    "end\n"
    "return 0\n",
};

/* The latest local time at which we may still believe we hold it, for a
 * TTL that Redis started no earlier than sent_ms. */
static int64_t deadline(int64_t sent_ms, int ttl_ms)
{
    return sent_ms + ttl_ms - (ttl_ms / 100 + 2);
}

static void new_token(char *dst, size_t n)
{
    unsigned char rnd[16];
    if (an_crypto_random(rnd, sizeof(rnd), NULL) != AN_OK) {
        /* not expected from OpenSSL's CSPRNG; still be unique */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        memcpy(rnd, &ts, sizeof(ts) < sizeof(rnd) ? sizeof(ts) : sizeof(rnd));
    }
    char host[64] = "host";
    gethostname(host, sizeof(host));
    host[sizeof(host) - 1] = '\0';
    char hex[33];
    an_crypto_hex(rnd, sizeof(rnd), hex);
    snprintf(dst, n, "%s:%d:%s", host, (int)getpid(), hex);
}

static an_status check_args(const char *key, int ttl_ms, an_error *err)
{
    if (!key || !*key)
        return an_error_field(err, AN_INVALID_ARGUMENT, "key", "lease key must not be empty");
    if (strlen(key) >= AN_LEASE_KEY_MAX)
        return an_error_field(err, AN_INVALID_ARGUMENT, "key", "lease key is longer than %d bytes",
                              AN_LEASE_KEY_MAX - 1);
    if (ttl_ms <= 0)
        return an_error_field(err, AN_INVALID_ARGUMENT, "ttl_ms", "lease TTL must be > 0 ms");
    return AN_OK;
}

an_status an_lease_acquire(redisContext *c, an_lease *l, const char *key, int ttl_ms, an_error *err)
{
    memset(l, 0, sizeof(*l));
    an_status s = check_args(key, ttl_ms, err);
    if (s != AN_OK)
        return s;
    snprintf(l->key, sizeof(l->key), "%s", key);
    new_token(l->token, sizeof(l->token));
    l->ttl_ms = ttl_ms;

    char ttl[16];
    snprintf(ttl, sizeof(ttl), "%d", ttl_ms);
    const char *argv[] = {"SET", l->key, l->token, "NX", "PX", ttl};
    redisReply *r;
    int64_t sent = an_time_mono_ms();
    s = an_redis_argv(c, 6, argv, NULL, &r, err);
    if (s != AN_OK)
        return s;
    int ok = r->type == REDIS_REPLY_STATUS; /* "OK"; nil when the key exists */
    freeReplyObject(r);
    if (!ok)
        return an_error_set(err, AN_ALREADY_EXISTS, "lease %s is held by another owner", key);
    l->valid_until_ms = deadline(sent, ttl_ms);
    return AN_OK;
}

an_status an_lease_renew(redisContext *c, an_lease *l, an_error *err)
{
    if (!l->token[0])
        return an_error_set(err, AN_FAILED_PRECONDITION, "lease %s: never acquired", l->key);
    char ttl[16];
    snprintf(ttl, sizeof(ttl), "%d", l->ttl_ms);
    const char *args[] = {l->key, l->token, ttl};
    redisReply *r;
    int64_t sent = an_time_mono_ms();
    an_status s = an_redis_eval(c, &renew_script, 1, 3, args, NULL, &r, err);
    if (s != AN_OK)
        return s; /* unknown outcome: keep the old local deadline */
    int ok = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (!ok) {
        l->valid_until_ms = 0;
        return an_error_set(err, AN_FAILED_PRECONDITION,
                            "lease %s lost: it expired or another owner took it", l->key);
    }
    l->valid_until_ms = deadline(sent, l->ttl_ms);
    return AN_OK;
}

an_status an_lease_release(redisContext *c, an_lease *l, an_error *err)
{
    if (!l->token[0])
        return an_error_set(err, AN_FAILED_PRECONDITION, "lease %s: never acquired", l->key);
    const char *args[] = {l->key, l->token};
    redisReply *r;
    /* stop believing first: once the DEL is sent another owner may get it */
    l->valid_until_ms = 0;
    an_status s = an_redis_eval(c, &release_script, 1, 2, args, NULL, &r, err);
    if (s != AN_OK)
        return s;
    int ok = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    if (!ok)
        return an_error_set(err, AN_FAILED_PRECONDITION,
                            "lease %s was not held by this owner; nothing released", l->key);
    return AN_OK;
}

int64_t an_lease_remaining_ms(const an_lease *l)
{
    if (!l || l->valid_until_ms == 0)
        return 0;
    int64_t left = l->valid_until_ms - an_time_mono_ms();
    return left > 0 ? left : 0;
}

bool an_lease_held(const an_lease *l)
{
    return an_lease_remaining_ms(l) > 0;
}

an_status an_lease_claim_once(redisContext *c, const char *key, int ttl_ms, an_error *err)
{
    an_status s = check_args(key, ttl_ms, err);
    if (s != AN_OK)
        return s;
    char ttl[16], token[AN_LEASE_TOKEN_MAX];
    snprintf(ttl, sizeof(ttl), "%d", ttl_ms);
    new_token(token, sizeof(token)); /* who claimed it, for operators */
    const char *argv[] = {"SET", key, token, "NX", "PX", ttl};
    redisReply *r;
    s = an_redis_argv(c, 6, argv, NULL, &r, err);
    if (s != AN_OK)
        return s;
    int ok = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    return ok ? AN_OK : an_error_set(err, AN_ALREADY_EXISTS, "%s was already claimed", key);
}
