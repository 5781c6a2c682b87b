#include "metrics/conn.h"

#include "common/redis.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define REDIS_TIMEOUT_MS 2000

/* A stack of idle connections of one kind. */
typedef struct pool {
    pthread_mutex_t mu;
    void **idle;
    size_t n, cap;
} pool;

struct metrics_conns {
    char *ch_url, *writer_user, *writer_password, *reader_user, *reader_password, *redis_url;
    int reader_timeout_ms;
    pool writers, readers, redis;
};

static void pool_init(pool *p)
{
    pthread_mutex_init(&p->mu, NULL);
    p->idle = NULL;
    p->n = p->cap = 0;
}

static void *pool_pop(pool *p)
{
    void *x = NULL;
    pthread_mutex_lock(&p->mu);
    if (p->n > 0)
        x = p->idle[--p->n];
    pthread_mutex_unlock(&p->mu);
    return x;
}

static void pool_push(pool *p, void *x)
{
    pthread_mutex_lock(&p->mu);
    if (p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 8;
        void **bigger = realloc(p->idle, cap * sizeof(void *));
        if (!bigger)
            abort();
        p->idle = bigger;
        p->cap = cap;
    }
    p->idle[p->n++] = x;
    pthread_mutex_unlock(&p->mu);
}

static void pool_destroy(pool *p, void (*destroy)(void *))
{
    for (size_t i = 0; i < p->n; i++)
        destroy(p->idle[i]);
    free(p->idle);
    pthread_mutex_destroy(&p->mu);
}

static void ch_destroy(void *x)
{
    an_ch_free(x);
}

static void redis_destroy(void *x)
{
    redisFree(x);
}

an_status metrics_conns_new(const metrics_conns_config *cfg, metrics_conns **out, an_error *err)
{
    if (!cfg->clickhouse_url || !*cfg->clickhouse_url || !cfg->redis_url || !*cfg->redis_url)
        return an_error_set(err, AN_INVALID_ARGUMENT,
                            "metrics needs ANALYTICS_CLICKHOUSE_URL and ANALYTICS_REDIS_URL");
    metrics_conns *c = calloc(1, sizeof(*c));
    c->ch_url = strdup(cfg->clickhouse_url);
    c->writer_user = strdup(cfg->writer_user ? cfg->writer_user : "default");
    c->writer_password = strdup(cfg->writer_password ? cfg->writer_password : "");
    c->reader_user = strdup(cfg->reader_user ? cfg->reader_user : "default");
    c->reader_password = strdup(cfg->reader_password ? cfg->reader_password : "");
    c->redis_url = strdup(cfg->redis_url);
    c->reader_timeout_ms = cfg->reader_timeout_ms;
    pool_init(&c->writers);
    pool_init(&c->readers);
    pool_init(&c->redis);
    *out = c;
    return AN_OK;
}

void metrics_conns_free(metrics_conns *c)
{
    if (!c)
        return;
    pool_destroy(&c->writers, ch_destroy);
    pool_destroy(&c->readers, ch_destroy);
    pool_destroy(&c->redis, redis_destroy);
    free(c->ch_url);
    free(c->writer_user);
    free(c->writer_password);
    free(c->reader_user);
    free(c->reader_password);
    free(c->redis_url);
    free(c);
}

an_status metrics_writer_take(metrics_conns *c, an_ch **out, an_error *err)
{
    if ((*out = pool_pop(&c->writers)) != NULL)
        return AN_OK;
    an_ch_options o = {.url = c->ch_url,
                       .user = c->writer_user,
                       .password = c->writer_password,
                       .database = "analytics",
                       .query_timeout_ms = 60000};
    return an_ch_new(&o, out, err);
}

void metrics_writer_put(metrics_conns *c, an_ch *ch)
{
    if (ch)
        pool_push(&c->writers, ch);
}

an_status metrics_reader_take(metrics_conns *c, an_ch **out, an_error *err)
{
    if ((*out = pool_pop(&c->readers)) != NULL)
        return AN_OK;
    /* No retries after a timeout (the client never retries those) and few
     * on connection errors: a query's time is the caller's. */
    an_ch_options o = {.url = c->ch_url,
                       .user = c->reader_user,
                       .password = c->reader_password,
                       .database = "analytics",
                       .query_timeout_ms = c->reader_timeout_ms,
                       .max_retries = 1};
    return an_ch_new(&o, out, err);
}

void metrics_reader_put(metrics_conns *c, an_ch *ch)
{
    if (ch)
        pool_push(&c->readers, ch);
}

an_status metrics_redis_take(metrics_conns *c, redisContext **out, an_error *err)
{
    redisContext *r = pool_pop(&c->redis);
    an_status s = an_redis_ensure(&r, c->redis_url, REDIS_TIMEOUT_MS, err);
    *out = s == AN_OK ? r : NULL;
    return s;
}

void metrics_redis_put(metrics_conns *c, redisContext *r)
{
    if (!r)
        return;
    if (r->err) {
        redisFree(r);
        return;
    }
    pool_push(&c->redis, r);
}

int metrics_reader_timeout_ms(const metrics_conns *c)
{
    return c->reader_timeout_ms;
}

const char *metrics_redis_url(const metrics_conns *c)
{
    return c->redis_url;
}
