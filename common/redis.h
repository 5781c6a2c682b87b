/*
 * redis.h - connecting to Redis from a URL, and the few calls every Redis
 * user of libanalytics needs (commands with error mapping, Lua scripts by
 * SHA with a fallback to EVAL).
 *
 * URL:  redis://[[user]:password@]host[:port][/db]
 *   - port defaults to 6379, db to 0; host may be a name, an IPv4 address
 *     or an IPv6 address in brackets ([::1]);
 *   - user and password are percent-decoded (%40 for '@'); like redis-cli,
 *     "redis://secret@host" means password "secret" without a user;
 *   - rediss:// (TLS), unix:// and query parameters are refused with a
 *     clear message: hiredis 0.14 has no TLS.
 * Messages never repeat the password: URLs in errors are shown redacted.
 *
 * Threads: a redisContext (hiredis 0.14) is NOT thread-safe. Use one context
 * per thread (or guard it with a mutex). After any AN_UNAVAILABLE from these
 * calls the context is broken (c->err != 0): call an_redis_ensure() before
 * the next command to reconnect (it redoes AUTH and SELECT).
 */
#ifndef AN_REDIS_H
#define AN_REDIS_H

#include "common/status.h"

#include <hiredis/hiredis.h>
#include <stddef.h>

#define AN_REDIS_DEFAULT_PORT 6379
#define AN_REDIS_HOST_MAX     256
#define AN_REDIS_USER_MAX     128
#define AN_REDIS_PASSWORD_MAX 512
#define AN_REDIS_MAX_DB       1000000 /* sanity bound; the server's limit is `databases` */

/* A parsed URL. Plain value type, no heap. Empty user/password: not given. */
typedef struct an_redis_url {
    char host[AN_REDIS_HOST_MAX]; /* without IPv6 brackets */
    int port;
    int db;
    char user[AN_REDIS_USER_MAX];
    char password[AN_REDIS_PASSWORD_MAX];
} an_redis_url;

/* Parse url into *out. AN_INVALID_ARGUMENT with a message naming what is
 * wrong (the URL shown with its password redacted) when it is malformed. */
an_status an_redis_url_parse(const char *url, an_redis_url *out, an_error *err);

/* Write url into dst (size n, always NUL-terminated when n > 0) with the
 * password replaced by "***", for logs and messages. */
void an_redis_url_redact(const char *url, char *dst, size_t n);

/* Connect to the Redis of url: TCP connect within timeout_ms, the same
 * timeout for every later command's reply (socket timeout), TCP keepalive,
 * AUTH when the URL carries a password, SELECT when db != 0, then PING.
 * On success *out is a new context the caller frees with redisFree().
 * Errors: AN_INVALID_ARGUMENT (bad URL, or a db the server refuses),
 * AN_UNAVAILABLE (cannot connect, timeout, AUTH refused, NOAUTH: the
 * server wants a password the URL lacks). *out is NULL on failure. */
an_status an_redis_connect(redisContext **out, const char *url, int timeout_ms, an_error *err);

/* Make *c usable: when it is NULL or broken (c->err set after an I/O
 * error) free it and connect again as an_redis_connect does; otherwise do
 * nothing. *c is NULL after a failed reconnect. */
an_status an_redis_ensure(redisContext **c, const char *url, int timeout_ms, an_error *err);

/* Run one command given as an argument vector (binary-safe; lens may be
 * NULL for NUL-terminated strings). On AN_OK *out is the reply, freed by
 * the caller with freeReplyObject(); it is never an error reply.
 * AN_UNAVAILABLE: I/O error or timeout (the context is now broken);
 * AN_INTERNAL: Redis answered with an error (its text is in err).
 * *out is NULL on failure. */
an_status an_redis_argv(redisContext *c, int argc, const char **argv, const size_t *lens,
                        redisReply **out, an_error *err);

/* PING; AN_OK when Redis answered PONG (for /readyz). */
an_status an_redis_ping(redisContext *c, an_error *err);

/* A Lua script run with EVALSHA, falling back to EVAL (which caches it)
 * when the server does not know it yet (NOSCRIPT, e.g. after a restart).
 * Define them as static constants: {"name", "lua source"}. */
typedef struct an_redis_script {
    const char *name;   /* for error messages */
    const char *source; /* the Lua body */
} an_redis_script;

/* Run script s. args[0..nargs) holds ALL the arguments: the nkeys keys
 * first, then the other arguments, so nargs = nkeys + number of ARGV (as
 * EVAL wants; lens may be NULL). Passing only the ARGV count as nargs drops
 * arguments (three services were bitten). Reply and errors as
 * an_redis_argv; an error raised by the script gives AN_INTERNAL with the
 * script's name in the message. */
an_status an_redis_eval(redisContext *c, const an_redis_script *s, int nkeys, int nargs,
                        const char *const *args, const size_t *lens, redisReply **out,
                        an_error *err);

#endif
