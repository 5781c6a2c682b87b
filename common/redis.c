#include "common/redis.h"

#include "common/crypto.h"

#include <ctype.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

/* ---- URL ------------------------------------------------------------- */

/* Start and end of the password inside url, when it has one. */
static int find_password(const char *url, const char **start, const char **end)
{
    const char *p = strstr(url, "://");
    if (!p)
        return 0;
    p += 3;
    const char *at = strrchr(p, '@');
    if (!at)
        return 0;
    const char *colon = memchr(p, ':', (size_t)(at - p));
    *start = colon ? colon + 1 : p;
    *end = at;
    return *end > *start;
}

void an_redis_url_redact(const char *url, char *dst, size_t n)
{
    if (n == 0)
        return;
    if (!url) {
        snprintf(dst, n, "(null)");
        return;
    }
    const char *s, *e;
    if (find_password(url, &s, &e))
        snprintf(dst, n, "%.*s***%s", (int)(s - url), url, e);
    else
        snprintf(dst, n, "%s", url);
}

/* Percent-decode src[0..len) into dst (size n); '+' stays '+' (URL
 * userinfo is not form-encoded). -1 on a bad escape or %00, or when it
 * does not fit. */
static int pct_decode(const char *src, size_t len, char *dst, size_t n)
{
    an_buf b = AN_BUF_INIT;
    bool ok = an_buf_add_uri_decoded(&b, src, len, false) && b.len < n;
    if (ok)
        memcpy(dst, b.data, b.len + 1);
    an_buf_free(&b);
    return ok ? 0 : -1;
}

static an_status bad_url(an_error *err, const char *url, const char *why)
{
    char shown[600];
    an_redis_url_redact(url, shown, sizeof(shown));
    return an_error_set(err, AN_INVALID_ARGUMENT, "redis URL \"%s\": %s", shown, why);
}

/* Parse a decimal number of at most 9 digits in [lo, hi]; -1 when it is not one. */
static long parse_num(const char *s, size_t len, long lo, long hi)
{
    if (len == 0 || len > 9)
        return -1;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v < lo || v > hi ? -1 : v;
}

an_status an_redis_url_parse(const char *url, an_redis_url *out, an_error *err)
{
    memset(out, 0, sizeof(*out));
    if (!url || !*url)
        return an_error_set(err, AN_INVALID_ARGUMENT,
                            "redis URL is empty: expected redis://host:port/db");
    if (strncasecmp(url, "rediss://", 9) == 0)
        return bad_url(err, url,
                       "TLS (rediss://) is not supported: hiredis 0.14 has no TLS; "
                       "use redis:// on a trusted network or a TLS sidecar");
    if (strncasecmp(url, "unix://", 7) == 0)
        return bad_url(err, url, "unix sockets are not supported: use redis://host:port");
    if (strncasecmp(url, "redis://", 8) != 0)
        return bad_url(err, url, "must start with redis:// (redis://[:password@]host:port/db)");

    const char *p = url + 8;
    if (strpbrk(p, "?#"))
        return bad_url(err, url, "query parameters and fragments are not supported");

    /* userinfo: up to the last '@', so an unescaped '@' or '/' in a password still works */
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        const char *pw = colon ? colon + 1 : p;
        if (colon && pct_decode(p, (size_t)(colon - p), out->user, sizeof(out->user)) < 0)
            return bad_url(err, url, "user name: bad %-escape or too long");
        if (pct_decode(pw, (size_t)(at - pw), out->password, sizeof(out->password)) < 0)
            return bad_url(err, url, "password: bad %-escape or too long");
        if (out->user[0] && !out->password[0])
            return bad_url(err, url, "a user name needs a password (redis://user:password@host)");
        p = at + 1;
    }

    /* host */
    const char *host_end;
    const char *after;
    if (*p == '[') {
        host_end = strchr(p, ']');
        if (!host_end)
            return bad_url(err, url, "IPv6 address without closing ']'");
        p++;
        after = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/");
        after = host_end;
    }
    size_t hlen = (size_t)(host_end - p);
    if (hlen == 0)
        return bad_url(err, url, "host is missing");
    if (hlen >= sizeof(out->host))
        return bad_url(err, url, "host name is too long");
    for (size_t i = 0; i < hlen; i++)
        if (isspace((unsigned char)p[i]) || p[i] == '@')
            return bad_url(err, url, "host contains an invalid character");
    memcpy(out->host, p, hlen);
    out->host[hlen] = '\0';

    /* port */
    out->port = AN_REDIS_DEFAULT_PORT;
    p = after;
    if (*p == ':') {
        p++;
        size_t plen = strcspn(p, "/");
        long port = parse_num(p, plen, 1, 65535);
        if (port < 0)
            return bad_url(err, url, "port must be a number between 1 and 65535");
        out->port = (int)port;
        p += plen;
    } else if (*p && *p != '/') {
        return bad_url(err, url, "unexpected text after the host");
    }

    /* db */
    if (*p == '/') {
        p++;
        size_t dlen = strlen(p);
        if (dlen > 0) {
            long db = parse_num(p, dlen, 0, AN_REDIS_MAX_DB);
            if (db < 0)
                return bad_url(err, url, "database must be a number (redis://host:port/0)");
            out->db = (int)db;
        }
    }
    return AN_OK;
}

/* ---- commands -------------------------------------------------------- */

static an_status io_error(redisContext *c, an_error *err, const char *what)
{
    return an_error_set(err, AN_UNAVAILABLE, "redis %s: %s", what,
                        c && c->err ? c->errstr : "no reply");
}

an_status an_redis_argv(redisContext *c, int argc, const char **argv, const size_t *lens,
                        redisReply **out, an_error *err)
{
    *out = NULL;
    if (!c || c->err)
        return io_error(c, err, argc > 0 ? argv[0] : "command");
    redisReply *r = redisCommandArgv(c, argc, argv, lens);
    if (!r)
        return io_error(c, err, argv[0]);
    if (r->type == REDIS_REPLY_ERROR) {
        an_error_set(err, AN_INTERNAL, "redis %s: %s", argv[0], r->str);
        freeReplyObject(r);
        return AN_INTERNAL;
    }
    *out = r;
    return AN_OK;
}

an_status an_redis_ping(redisContext *c, an_error *err)
{
    const char *argv[] = {"PING"};
    redisReply *r;
    an_status s = an_redis_argv(c, 1, argv, NULL, &r, err);
    if (s != AN_OK) {
        if (err && strstr(err->message, "NOAUTH"))
            err->code = s = AN_UNAVAILABLE;
        return s;
    }
    int ok = r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    freeReplyObject(r);
    return ok ? AN_OK : an_error_set(err, AN_UNAVAILABLE, "redis PING: unexpected reply");
}

/* ---- connect ---------------------------------------------------------- */

static struct timeval ms_to_tv(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    return tv;
}

an_status an_redis_connect(redisContext **out, const char *url, int timeout_ms, an_error *err)
{
    *out = NULL;
    an_redis_url u;
    an_status s = an_redis_url_parse(url, &u, err);
    if (s != AN_OK)
        return s;
    if (timeout_ms <= 0)
        return an_error_set(err, AN_INVALID_ARGUMENT, "redis timeout must be > 0 ms");

    redisContext *c = redisConnectWithTimeout(u.host, u.port, ms_to_tv(timeout_ms));
    if (!c)
        return an_error_set(err, AN_UNAVAILABLE, "redis %s:%d: cannot allocate a context", u.host,
                            u.port);
    if (c->err) {
        an_error_set(err, AN_UNAVAILABLE, "redis %s:%d: %s", u.host, u.port, c->errstr);
        redisFree(c);
        return AN_UNAVAILABLE;
    }
    if (redisSetTimeout(c, ms_to_tv(timeout_ms)) != REDIS_OK ||
        redisEnableKeepAlive(c) != REDIS_OK) {
        an_error_set(err, AN_UNAVAILABLE, "redis %s:%d: %s", u.host, u.port, c->errstr);
        redisFree(c);
        return AN_UNAVAILABLE;
    }

    redisReply *r = NULL;
    if (u.password[0]) {
        /* AUTH user password (ACL, Redis 6+) or AUTH password */
        const char *argv[] = {"AUTH", u.user, u.password};
        if (!u.user[0])
            argv[1] = u.password;
        s = an_redis_argv(c, u.user[0] ? 3 : 2, argv, NULL, &r, err);
        freeReplyObject(r);
        if (s != AN_OK) {
            char m[AN_ERROR_MSG_MAX];
            snprintf(m, sizeof(m), "%s", err ? err->message : "");
            an_error_set(err, AN_UNAVAILABLE, "redis %s:%d: authentication%s%s failed: %s", u.host,
                         u.port, u.user[0] ? " as " : "", u.user, m);
            redisFree(c);
            return AN_UNAVAILABLE;
        }
    }
    if (u.db != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%d", u.db);
        s = an_redis_argv(c, 2, (const char *[]){"SELECT", db}, NULL, &r, err);
        freeReplyObject(r);
        if (s != AN_OK) {
            char m[AN_ERROR_MSG_MAX];
            snprintf(m, sizeof(m), "%s", err ? err->message : "");
            /* an error reply means the server refuses this db number: a config mistake */
            s = s == AN_INTERNAL ? AN_INVALID_ARGUMENT : s;
            an_error_set(err, s, "redis %s:%d: cannot select database %d: %s", u.host, u.port, u.db,
                         m);
            redisFree(c);
            return s;
        }
    }
    s = an_redis_ping(c, err);
    if (s != AN_OK) {
        if (err && strstr(err->message, "NOAUTH")) {
            an_error_set(err, AN_UNAVAILABLE,
                         "redis %s:%d requires a password: put it in the URL "
                         "(redis://:password@host:port/db)",
                         u.host, u.port);
        }
        redisFree(c);
        return AN_UNAVAILABLE;
    }
    *out = c;
    return AN_OK;
}

an_status an_redis_ensure(redisContext **c, const char *url, int timeout_ms, an_error *err)
{
    if (*c && !(*c)->err)
        return AN_OK;
    if (*c) {
        redisFree(*c);
        *c = NULL;
    }
    return an_redis_connect(c, url, timeout_ms, err);
}

/* ---- scripts ---------------------------------------------------------- */

/* SHA-1 of a script's source, hex: computed once per script (scripts are
 * static; their source pointer identifies them). */
#define SHA_CACHE 32
static pthread_mutex_t sha_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    const char *source;
    char hex[41];
} sha_cache[SHA_CACHE];

static void script_sha(const char *source, char hex[41])
{
    pthread_mutex_lock(&sha_lock);
    int i = 0;
    while (i < SHA_CACHE && sha_cache[i].source && sha_cache[i].source != source)
        i++;
    if (i < SHA_CACHE && sha_cache[i].source == source) {
        memcpy(hex, sha_cache[i].hex, 41);
        pthread_mutex_unlock(&sha_lock);
        return;
    }
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    EVP_Digest(source, strlen(source), md, &n, EVP_sha1(), NULL);
    an_crypto_hex(md, 20, hex);
    if (i < SHA_CACHE) {
        sha_cache[i].source = source;
        memcpy(sha_cache[i].hex, hex, 41);
    }
    pthread_mutex_unlock(&sha_lock);
}

an_status an_redis_eval(redisContext *c, const an_redis_script *s, int nkeys, int nargs,
                        const char *const *args, const size_t *lens, redisReply **out,
                        an_error *err)
{
    *out = NULL;
    if (nargs < nkeys || nkeys < 0)
        return an_error_set(err, AN_INTERNAL, "redis script %s: %d keys but %d arguments", s->name,
                            nkeys, nargs);
    int argc = nargs + 3;
    const char **argv = malloc(sizeof(*argv) * (size_t)argc);
    size_t *alen = malloc(sizeof(*alen) * (size_t)argc);
    if (!argv || !alen) {
        free(argv);
        free(alen);
        return an_error_set(err, AN_INTERNAL, "out of memory");
    }
    char sha[41], nk[16];
    script_sha(s->source, sha);
    snprintf(nk, sizeof(nk), "%d", nkeys);
    argv[0] = "EVALSHA";
    argv[1] = sha;
    argv[2] = nk;
    for (int i = 0; i < 3; i++)
        alen[i] = strlen(argv[i]);
    for (int i = 0; i < nargs; i++) {
        argv[3 + i] = args[i];
        alen[3 + i] = lens ? lens[i] : strlen(args[i]);
    }

    an_status st = AN_OK;
    redisReply *r = NULL;
    if (!c || c->err) {
        st = io_error(c, err, s->name);
        goto done;
    }
    r = redisCommandArgv(c, argc, argv, alen);
    if (r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        argv[0] = "EVAL";
        argv[1] = s->source;
        alen[0] = 4;
        alen[1] = strlen(s->source);
        r = redisCommandArgv(c, argc, argv, alen);
    }
    if (!r) {
        st = io_error(c, err, s->name);
    } else if (r->type == REDIS_REPLY_ERROR) {
        st = an_error_set(err, AN_INTERNAL, "redis script %s: %s", s->name, r->str);
        freeReplyObject(r);
    } else {
        *out = r;
    }
done:
    free(argv);
    free(alen);
    return st;
}
