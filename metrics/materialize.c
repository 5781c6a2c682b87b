#include "metrics/materialize.h"

#include "common/buf.h"
#include "common/cron.h"
#include "common/lease.h"
#include "common/log.h"
#include "common/queue.h"
#include "common/sql.h"
#include "common/template.h"
#include "common/timeutil.h"
#include "metrics/columns.h"
#include "metrics/metric.h"
#include "metrics/store.h"
#include "metrics/template.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Rows one materialization may produce: more is a failure, not a cut. */
#define MAX_VALUES 1000000

/* Per metric: the last tick this replica has dealt with (claimed or seen
 * claimed). */
typedef struct seen {
    char id[AN_ULID_STRLEN];
    int64_t last_tick_ms;
} seen;

struct metrics_materializer {
    metrics_ctx *ctx;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool stop;
    bool sched_started;
    pthread_t sched;
    pthread_t *workers;
    size_t nworkers;
    /* scheduler state (its thread only) */
    metric_def *defs;
    size_t ndefs;
    int64_t refreshed_ms;
    seen *seen;
    size_t nseen, capseen;
};

static bool stopping(metrics_materializer *m)
{
    pthread_mutex_lock(&m->mu);
    bool s = m->stop;
    pthread_mutex_unlock(&m->mu);
    return s;
}

/* Sleep up to ms, less when stopping. */
static void nap(metrics_materializer *m, int64_t ms)
{
    int64_t deadline = an_time_mono_ms() + ms;
    pthread_mutex_lock(&m->mu);
    while (!m->stop) {
        if (an_time_cond_wait_until(&m->cv, &m->mu, deadline) == ETIMEDOUT)
            break;
    }
    pthread_mutex_unlock(&m->mu);
}

/* ------------------------------------------------------------- scheduler */

static seen *seen_for(metrics_materializer *m, const char *id, int64_t initial)
{
    for (size_t i = 0; i < m->nseen; i++)
        if (strcmp(m->seen[i].id, id) == 0)
            return &m->seen[i];
    if (m->nseen == m->capseen) {
        m->capseen = m->capseen ? m->capseen * 2 : 32;
        seen *bigger = realloc(m->seen, m->capseen * sizeof(*bigger));
        if (!bigger)
            abort();
        m->seen = bigger;
    }
    seen *s = &m->seen[m->nseen++];
    snprintf(s->id, sizeof(s->id), "%s", id);
    s->last_tick_ms = initial;
    return s;
}

static void free_defs(metrics_materializer *m)
{
    for (size_t i = 0; i < m->ndefs; i++)
        metrics_def_free(&m->defs[i]);
    free(m->defs);
    m->defs = NULL;
    m->ndefs = 0;
}

static void refresh(metrics_materializer *m)
{
    metrics_ctx *ctx = m->ctx;
    an_ch *ch = NULL;
    an_error e;
    an_error_clear(&e);
    metric_def *defs = NULL;
    size_t n = 0;
    an_status s = metrics_writer_take(ctx->conns, &ch, &e);
    if (s == AN_OK) {
        s = metrics_store_scheduled(ch, &defs, &n, &e);
        metrics_writer_put(ctx->conns, ch);
    }
    if (s != AN_OK) {
        an_warn("scheduler: reading the scheduled metrics: %s", e.message);
        return; /* keep the old list */
    }
    free_defs(m);
    m->defs = defs;
    m->ndefs = n;
    m->refreshed_ms = an_time_mono_ms();
}

/* Claim tick of d once across replicas and push its job. AN_OK: done with
 * the tick (claimed here or elsewhere); otherwise retry later. */
static an_status fire(metrics_materializer *m, redisContext *r, an_queue *q, const metric_def *d,
                      int64_t tick_ms)
{
    metrics_ctx *ctx = m->ctx;
    char key[AN_LEASE_KEY_MAX];
    snprintf(key, sizeof(key), "%s:tick:%s:%" PRId64, ctx->redis_prefix, d->id, tick_ms / 1000);
    an_error e;
    an_error_clear(&e);
    /* The claim outlives the catch-up window, so no replica fires it again. */
    int ttl = (int)(2 * ctx->tick_catchup_ms + 3600000);
    an_status s = an_lease_claim_once(r, key, ttl, &e);
    if (s == AN_ALREADY_EXISTS)
        return AN_OK;
    if (s != AN_OK) {
        an_warn("scheduler: claiming %s: %s", key, e.message);
        return s;
    }
    char payload[256], job_id[128];
    snprintf(payload, sizeof(payload), "{\"metricId\":\"%s\",\"tick\":%" PRId64 "}", d->id,
             tick_ms);
    snprintf(job_id, sizeof(job_id), "%s:%" PRId64, d->id, tick_ms / 1000);
    an_queue_meta meta = {.job_id = job_id, .tenant = d->tenant_id};
    s = an_queue_push(q, payload, strlen(payload), &meta, NULL, &e);
    if (s != AN_OK) {
        /* The tick is claimed but has no job: it is lost (logged loudly).
         * The window between the two calls is one round trip. */
        an_errorf("scheduler: tick %s of metric %s claimed but not queued: %s", key, d->id,
                  e.message);
        return AN_OK;
    }
    an_prom_counter_inc(ctx->ticks_claimed);
    char iso[AN_TIME_ISO_LEN];
    an_time_format_iso(tick_ms, iso, NULL);
    an_log_ctx(AN_LOG_INFO, d->tenant_id, NULL, "scheduler: tick %s of metric %s queued", iso,
               d->id);
    return AN_OK;
}

static void schedule_once(metrics_materializer *m, redisContext *r, an_queue *q)
{
    metrics_ctx *ctx = m->ctx;
    int64_t now = an_time_now_ms();
    for (size_t i = 0; i < m->ndefs; i++) {
        const metric_def *d = &m->defs[i];
        an_cron c;
        if (!d->schedule || an_cron_parse(d->schedule, &c, NULL) != AN_OK)
            continue;
        seen *sn = seen_for(m, d->id, now - ctx->tick_catchup_ms);
        int64_t after = sn->last_tick_ms;
        if (after < now - ctx->tick_catchup_ms)
            after = now - ctx->tick_catchup_ms;
        /* no tick from before the metric existed */
        if (after < d->created_at_ms - 1000)
            after = d->created_at_ms - 1000;
        int64_t next_s;
        while (an_cron_next(&c, an_time_floor_div(after, 1000), &next_s, NULL) == AN_OK &&
               next_s * 1000 <= now) {
            if (fire(m, r, q, d, next_s * 1000) != AN_OK)
                break;
            after = sn->last_tick_ms = next_s * 1000;
        }
    }
}

static void *scheduler_main(void *arg)
{
    metrics_materializer *m = arg;
    metrics_ctx *ctx = m->ctx;
    an_queue *q = NULL;
    redisContext *r = NULL;
    while (!stopping(m)) {
        an_error e;
        an_error_clear(&e);
        if (!q) {
            an_queue_options o;
            an_queue_options_init(&o);
            if (an_queue_open(&q, metrics_redis_url(ctx->conns), ctx->queue_name, &o, &e) !=
                AN_OK) {
                an_warn("scheduler: queue %s: %s", ctx->queue_name, e.message);
                q = NULL;
                nap(m, ctx->scheduler_interval_ms);
                continue;
            }
        }
        if (!m->refreshed_ms || an_time_mono_ms() - m->refreshed_ms >= ctx->schedule_refresh_ms)
            refresh(m);
        if (metrics_redis_take(ctx->conns, &r, &e) == AN_OK)
            schedule_once(m, r, q);
        else
            an_warn("scheduler: redis: %s", e.message);
        an_queue_stats st;
        if (an_queue_stats_get(q, &st, NULL) == AN_OK) {
            an_prom_gauge_set(ctx->queue_waiting, (double)st.waiting);
            an_prom_gauge_set(ctx->queue_pending, (double)st.pending);
            an_prom_gauge_set(ctx->queue_delayed, (double)st.delayed);
            an_prom_gauge_set(ctx->queue_dead, (double)st.dead);
        }
        metrics_redis_put(ctx->conns, r);
        r = NULL;
        nap(m, ctx->scheduler_interval_ms);
    }
    an_queue_close(q);
    free_defs(m);
    return NULL;
}

/* --------------------------------------------------------------- workers */

/* A dimension's name and its column in the template's result. */
typedef struct dim_at {
    const char *name;
    size_t col;
} dim_at;

typedef struct collect {
    const metric_def *d;
    const char *tenant; /* fixed tenant of the rows, or NULL: from dim_tenant */
    store_value *v;
    size_t n, cap;
    char **strings; /* tenant ids and dimension JSON the rows point to */
    size_t nstr, capstr;
    bool located;
    size_t bucket_col, value_col, tenant_col;
    /* the dimensions in name order (canonical JSON), with their result columns */
    dim_at dims[AN_TEMPLATE_MAX_DIMENSIONS];
    int64_t from_ms, to_ms;
} collect;

static const char *keep(collect *c, char *s)
{
    if (c->nstr == c->capstr) {
        c->capstr = c->capstr ? c->capstr * 2 : 256;
        char **bigger = realloc(c->strings, c->capstr * sizeof(char *));
        if (!bigger)
            abort();
        c->strings = bigger;
    }
    c->strings[c->nstr++] = s;
    return s;
}

/* A new slot at the end of c->v. */
static store_value *add_value(collect *c)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 256;
        store_value *bigger = realloc(c->v, c->cap * sizeof(*bigger));
        if (!bigger)
            abort();
        c->v = bigger;
    }
    return &c->v[c->n++];
}

/* The dimensions of d in name order, with their result columns. */
static void sort_dimensions(collect *c, const metrics_result_columns *rc)
{
    const metric_def *d = c->d;
    for (size_t k = 0; k < d->mat.ndimensions; k++) {
        c->dims[k].name = d->mat.dimensions[k];
        c->dims[k].col = rc->dim_col[k];
    }
    for (size_t a = 1; a < d->mat.ndimensions; a++) /* insertion sort, at most 8 */
        for (size_t k = a; k > 0 && strcmp(c->dims[k - 1].name, c->dims[k].name) > 0; k--) {
            dim_at t = c->dims[k];
            c->dims[k] = c->dims[k - 1];
            c->dims[k - 1] = t;
        }
}

static void collect_free(collect *c)
{
    for (size_t i = 0; i < c->nstr; i++)
        free(c->strings[i]);
    free(c->strings);
    free(c->v);
}

static an_status on_row(void *ud, const an_ch_row *row, an_error *err)
{
    collect *c = ud;
    const metric_def *d = c->d;
    if (!c->located) {
        metrics_result_columns rc;
        metrics_template_locate_columns(row, d->mat.ndimensions, &rc);
        if (!rc.has_bucket || !rc.has_value || !(c->tenant != NULL || rc.has_tenant) ||
            rc.ndims_found != d->mat.ndimensions)
            return an_error_set(err, AN_INVALID_ARGUMENT,
                                "the template's result lacks bucket, value or a dimension");
        c->bucket_col = rc.bucket_col;
        c->value_col = rc.value_col;
        c->tenant_col = rc.tenant_col;
        sort_dimensions(c, &rc);
        c->located = true;
    }
    if (c->n >= MAX_VALUES)
        return an_error_set(err, AN_RESOURCE_EXHAUSTED, "more than %d values in one window",
                            MAX_VALUES);
    int64_t bucket;
    const char *bt = row->fields[c->bucket_col];
    if (!bt || an_time_parse_ch(bt, &bucket, NULL) != AN_OK)
        return an_error_set(err, AN_INVALID_ARGUMENT, "bucket \"%.40s\" is not a DateTime",
                            bt ? bt : "NULL");
    bucket = an_template_bucket_floor(bucket, d->mat.granularity);
    if (bucket < c->from_ms || bucket >= c->to_ms)
        return AN_OK;
    /* canonical dimensions: a JSON object with the names sorted */
    cJSON *o = cJSON_CreateObject();
    for (size_t k = 0; k < d->mat.ndimensions; k++) {
        const char *val = row->fields[c->dims[k].col];
        cJSON_AddStringToObject(o, c->dims[k].name, val ? val : "");
    }
    store_value *sv = add_value(c);
    sv->deleted = false;
    sv->bucket_ms = bucket;
    sv->dimensions = keep(c, cJSON_PrintUnformatted(o));
    cJSON_Delete(o);
    if (c->tenant) { /* fixed: outlives c */
        sv->tenant_id = c->tenant;
    } else {
        const char *tv = row->fields[c->tenant_col];
        sv->tenant_id = keep(c, strdup(tv ? tv : ""));
    }
    const char *val = row->fields[c->value_col];
    char *end = NULL;
    sv->value = val ? strtod(val, &end) : NAN;
    if (val && (end == val || *end))
        return an_error_set(err, AN_INVALID_ARGUMENT, "value \"%.40s\" is not a number", val);
    return AN_OK;
}

/* Run the template over the window for one scope into c. */
static an_status compute(an_ch *reader, const metric_def *d, an_template_params *p,
                         const an_template_scope *scope, collect *c, an_error *err)
{
    an_buf sql = AN_BUF_INIT;
    an_buf_adds(&sql, "SELECT * FROM (");
    an_status s = an_template_bind(d->query, strlen(d->query), p, scope, &sql, err);
    if (s == AN_OK) {
        an_buf_adds(&sql, ") LIMIT ");
        an_sql_uint64(&sql, MAX_VALUES + 1);
        c->located = false;
        s = an_ch_query(reader, an_buf_str(&sql), NULL, on_row, c, err);
    }
    an_buf_free(&sql);
    return s;
}

/* --------------------------------------------- tombstones for stale keys */

typedef struct stale {
    collect *c;
    char **keys; /* "tenant\x1f bucket \x1f dimensions" of the new values, sorted */
    size_t n;
    size_t added;
} stale;

static char *value_key(const char *tenant, int64_t bucket_ms, const char *dims)
{
    char *k;
    if (asprintf(&k, "%s\x1f%" PRId64 "\x1f%s", tenant, bucket_ms, dims) < 0)
        abort();
    return k;
}

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static an_status on_existing(void *ud, const char *tenant_id, int64_t bucket_ms,
                             const char *dimensions, const char *value, an_error *err)
{
    (void)value;
    (void)err;
    stale *st = ud;
    char *k = value_key(tenant_id, bucket_ms, dimensions);
    bool found = st->n && bsearch(&k, st->keys, st->n, sizeof(char *), cmp_key) != NULL;
    free(k);
    if (found)
        return AN_OK;
    /* a key the recomputation no longer produces: tombstone it */
    collect *c = st->c;
    store_value *sv = add_value(c);
    sv->tenant_id = keep(c, strdup(tenant_id));
    sv->bucket_ms = bucket_ms;
    sv->dimensions = keep(c, strdup(dimensions));
    sv->value = NAN;
    sv->deleted = true;
    st->added++;
    return AN_OK;
}

/* Add to c tombstones for the live values of [from, to) it does not
 * rewrite (after a template or dimension change they would be read as the
 * new computation's); *added says how many. */
static an_status tombstone_stale(an_ch *writer, const metric_def *d, collect *c, size_t *added,
                                 an_error *err)
{
    stale st = {.c = c};
    size_t n = c->n;
    st.keys = calloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++)
        st.keys[i] = value_key(c->v[i].tenant_id, c->v[i].bucket_ms, c->v[i].dimensions);
    if (n > 1)
        qsort(st.keys, n, sizeof(char *), cmp_key);
    st.n = n;
    an_status s = metrics_store_values_keys(writer, d->id, d->mat.granularity, c->from_ms, c->to_ms,
                                            on_existing, &st, err);
    for (size_t i = 0; i < n; i++)
        free(st.keys[i]);
    free(st.keys);
    *added = st.added;
    return s;
}

typedef struct worker {
    metrics_materializer *m;
    int index;
    an_queue *q;
    an_ch *reader, *writer;
} worker;

/* Outcome of one job. */
typedef enum job_outcome { JOB_DONE, JOB_RETRY, JOB_BURY, JOB_HANDED_BACK, JOB_LOST } job_outcome;

/* The test pause, heartbeating the job; JOB_DONE to go on writing. */
static job_outcome pause_for_tests(worker *w, const an_queue_job *job)
{
    metrics_ctx *ctx = w->m->ctx;
    int64_t until = an_time_mono_ms() + ctx->test_pause_ms;
    int64_t beat = ctx->job_visibility_ms / 3 > 0 ? ctx->job_visibility_ms / 3 : 100;
    while (an_time_mono_ms() < until) {
        if (stopping(w->m))
            return JOB_HANDED_BACK;
        int64_t left = until - an_time_mono_ms();
        nap(w->m, left < beat ? left : beat);
        if (an_queue_extend(w->q, job, NULL) == AN_FAILED_PRECONDITION)
            return JOB_LOST;
    }
    return JOB_DONE;
}

static job_outcome run_job(worker *w, const an_queue_job *job, char *why, size_t why_len)
{
    metrics_ctx *ctx = w->m->ctx;
    an_error e;
    an_error_clear(&e);
    int64_t started = an_time_now_ms();
    cJSON *pj = cJSON_Parse(job->payload);
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(pj, "metricId");
    const cJSON *jtick = cJSON_GetObjectItemCaseSensitive(pj, "tick");
    if (!cJSON_IsString(jid) || !cJSON_IsNumber(jtick)) {
        cJSON_Delete(pj);
        snprintf(why, why_len, "malformed job payload");
        return JOB_BURY;
    }
    char id[AN_ULID_STRLEN];
    snprintf(id, sizeof(id), "%s", jid->valuestring);
    int64_t tick = (int64_t)jtick->valuedouble;
    cJSON_Delete(pj);

    metric_def d;
    an_status s = metrics_store_get(w->writer, id, &d, &e);
    if (s == AN_NOT_FOUND) {
        an_info("materialize: metric %s is gone; tick dropped", id);
        return JOB_DONE;
    }
    if (s != AN_OK) {
        snprintf(why, why_len, "reading metric %s: %.400s", id, e.message);
        return JOB_RETRY;
    }
    job_outcome out = JOB_DONE;
    if (!d.schedule || strcmp(d.status, "active") != 0) {
        an_info("materialize: metric %s is no longer scheduled; tick dropped", id);
        metrics_def_free(&d);
        return JOB_DONE;
    }
    bool ran = false;
    if ((s = metrics_store_run_exists(w->writer, id, tick, &ran, &e)) != AN_OK || ran) {
        metrics_def_free(&d);
        if (s != AN_OK) {
            snprintf(why, why_len, "reading the run log: %.400s", e.message);
            return JOB_RETRY;
        }
        an_info("materialize: tick of metric %s already ran (job %s redelivered)", id, job->id);
        return JOB_DONE;
    }
    char iso[AN_TIME_ISO_LEN];
    an_time_format_iso(tick, iso, NULL);
    an_log_ctx(AN_LOG_INFO, d.tenant_id, job->correlation_id,
               "materializing metric %s tick %s (job %s, attempt %d)", id, iso, job->id,
               job->attempt);

    /* The lookback complete buckets before the one holding the tick. */
    an_template_granularity g = d.mat.granularity;
    int64_t to = an_template_bucket_floor(tick, g), from = to;
    for (int i = 0; i < d.mat.lookback; i++)
        from = an_template_bucket_floor(from - 1, g);
    an_template_params p = {.has_range = true,
                            .from_ms = from,
                            .to_ms = to,
                            .granularity = g,
                            .dimensions = d.mat.dimensions,
                            .ndimensions = d.mat.ndimensions};
    collect c = {.d = &d, .from_ms = from, .to_ms = to};
    an_template_column *cols = NULL;
    size_t ncols = 0;
    metrics_columns_get(ctx->columns, ctx->conns, &cols, &ncols);
    if (d.tenant_id) {
        an_template_scope sc = {.tenant_id = d.tenant_id, .columns = cols, .ncolumns = ncols};
        c.tenant = d.tenant_id;
        s = compute(w->reader, &d, &p, &sc, &c, &e);
    } else {
        an_template_scope all = {.all_tenants = true, .columns = cols, .ncolumns = ncols};
        p.tenant_dimension = true;
        s = compute(w->reader, &d, &p, &all, &c, &e);
        if (s == AN_OK) {
            p.tenant_dimension = false;
            c.tenant = "";
            s = compute(w->reader, &d, &p, &all, &c, &e);
        }
    }
    free(cols);
    if (s != AN_OK) {
        snprintf(why, why_len, "computing: %.400s", e.message);
        out = s == AN_UNAVAILABLE || s == AN_INTERNAL ? JOB_RETRY : JOB_BURY;
        goto done;
    }
    if (ctx->test_pause_ms > 0 && (out = pause_for_tests(w, job)) != JOB_DONE)
        goto done;
    /* Still ours? (a reclaimed job is finished by its new owner) */
    if (an_queue_extend(w->q, job, NULL) == AN_FAILED_PRECONDITION) {
        out = JOB_LOST;
        goto done;
    }
    size_t values = c.n, tombstones = 0;
    if ((s = tombstone_stale(w->writer, &d, &c, &tombstones, &e)) != AN_OK) {
        snprintf(why, why_len, "reading the window's values: %.400s", e.message);
        out = JOB_RETRY;
        goto done;
    }
    int64_t now = an_time_now_ms();
    if ((s = metrics_store_values_put(w->writer, d.id, g, c.v, c.n, now, &e)) != AN_OK) {
        snprintf(why, why_len, "writing values: %.400s", e.message);
        out = JOB_RETRY;
        goto done;
    }
    char hash[65];
    metrics_def_spec_hash(&d, hash);
    char *dims = metrics_def_dimensions_key(&d);
    store_run run = {.tenant_id = d.tenant_id ? d.tenant_id : "",
                     .metric_id = d.id,
                     .tick_ms = tick,
                     .spec_hash = hash,
                     .version = d.version,
                     .granularity = g,
                     .dimensions = dims,
                     .window_from_ms = from,
                     .window_to_ms = to,
                     .rows = values,
                     .replica = an_service_id(ctx->svc),
                     .job_id = job->id,
                     .attempt = job->attempt,
                     .started_ms = started,
                     .finished_ms = an_time_now_ms()};
    s = metrics_store_run_put(w->writer, &run, &e);
    free(dims);
    if (s != AN_OK) {
        snprintf(why, why_len, "logging the run: %.400s", e.message);
        out = JOB_RETRY;
        goto done;
    }
    an_log_ctx(AN_LOG_INFO, d.tenant_id, job->correlation_id,
               "materialized metric %s tick %s: %zu values, %zu stale ones removed", id, iso,
               values, tombstones);
done:
    collect_free(&c);
    metrics_def_free(&d);
    return out;
}

static an_status worker_connect(worker *w, an_error *err)
{
    metrics_ctx *ctx = w->m->ctx;
    const an_service_config *sc = an_service_get_config(ctx->svc);
    an_status s = AN_OK;
    if (!w->q) {
        an_queue_options o;
        an_queue_options_init(&o);
        char consumer[128];
        snprintf(consumer, sizeof(consumer), "%s-w%d", an_service_id(ctx->svc), w->index);
        o.consumer = consumer;
        o.visibility_ms = (int)ctx->job_visibility_ms;
        o.max_attempts = (int)ctx->job_max_attempts;
        o.backoff_base_ms = 1000;
        o.backoff_max_ms = 60000;
        if ((s = an_queue_open(&w->q, metrics_redis_url(ctx->conns), ctx->queue_name, &o, err)) !=
            AN_OK)
            w->q = NULL;
    }
    if (s == AN_OK && !w->reader) {
        an_ch_options o = {.url = sc->clickhouse_url,
                           .user = ctx->reader_user,
                           .password = ctx->reader_password,
                           .database = "analytics",
                           .query_timeout_ms = (int)ctx->mat_timeout_ms};
        s = an_ch_new(&o, &w->reader, err);
    }
    if (s == AN_OK && !w->writer)
        s = metrics_writer_take(ctx->conns, &w->writer, err);
    return s;
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    metrics_ctx *ctx = w->m->ctx;
    while (!stopping(w->m)) {
        an_error e;
        an_error_clear(&e);
        if (worker_connect(w, &e) != AN_OK) {
            an_warn("materialize: %s", e.message);
            nap(w->m, 1000);
            continue;
        }
        an_queue_job *job = NULL;
        if (an_queue_take(w->q, 1000, &job, &e) != AN_OK) {
            an_warn("materialize: taking a job: %s", e.message);
            nap(w->m, 500);
            continue;
        }
        if (!job)
            continue;
        char why[AN_ERROR_MSG_MAX] = "";
        job_outcome out = run_job(w, job, why, sizeof(why));
        an_error_clear(&e);
        switch (out) {
        case JOB_DONE:
            an_prom_counter_inc(ctx->runs_ok);
            if (an_queue_ack(w->q, job, &e) != AN_OK)
                an_warn("materialize: ack %s: %s", job->id, e.message);
            break;
        case JOB_RETRY:
        case JOB_BURY:
            an_prom_counter_inc(ctx->runs_failed);
            an_log_ctx(AN_LOG_WARN, job->tenant, job->correlation_id,
                       "materialize: job %s attempt %d failed: %s", job->id, job->attempt, why);
            if ((out == JOB_RETRY ? an_queue_fail(w->q, job, why, NULL, &e)
                                  : an_queue_bury(w->q, job, why, &e)) != AN_OK)
                an_warn("materialize: job %s: %s", job->id, e.message);
            break;
        case JOB_HANDED_BACK:
            an_info("materialize: stopping: job %s handed back", job->id);
            if (an_queue_release(w->q, job, &e) != AN_OK)
                an_warn("materialize: handing back %s: %s", job->id, e.message);
            break;
        case JOB_LOST:
            an_info("materialize: job %s was reclaimed by another replica", job->id);
            break;
        }
        an_queue_job_free(job);
    }
    an_queue_close(w->q);
    an_ch_free(w->reader);
    metrics_writer_put(ctx->conns, w->writer);
    free(w);
    return NULL;
}

/* ----------------------------------------------------------- start, stop */

an_status metrics_materializer_start(metrics_ctx *ctx, an_error *err)
{
    metrics_materializer *m = calloc(1, sizeof(*m));
    m->ctx = ctx;
    pthread_mutex_init(&m->mu, NULL);
    an_time_cond_init_mono(&m->cv);
    ctx->mat = m;
    if (ctx->scheduler) {
        if (pthread_create(&m->sched, NULL, scheduler_main, m) != 0)
            return an_error_set(err, AN_INTERNAL, "cannot start the scheduler thread");
        m->sched_started = true;
    }
    m->workers = calloc((size_t)ctx->mat_workers + 1, sizeof(pthread_t));
    for (long long i = 0; i < ctx->mat_workers; i++) {
        worker *w = calloc(1, sizeof(*w));
        w->m = m;
        w->index = (int)i;
        if (pthread_create(&m->workers[i], NULL, worker_main, w) != 0) {
            free(w);
            return an_error_set(err, AN_INTERNAL, "cannot start a materialization worker");
        }
        m->nworkers++;
    }
    an_info("materializer: scheduler %s, %zu workers on queue %s", ctx->scheduler ? "on" : "off",
            m->nworkers, ctx->queue_name);
    return AN_OK;
}

void metrics_materializer_stop(metrics_ctx *ctx)
{
    metrics_materializer *m = ctx->mat;
    if (!m)
        return;
    pthread_mutex_lock(&m->mu);
    m->stop = true;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    if (m->sched_started)
        pthread_join(m->sched, NULL);
    for (size_t i = 0; i < m->nworkers; i++)
        pthread_join(m->workers[i], NULL);
    free(m->workers);
    free(m->seen);
    pthread_cond_destroy(&m->cv);
    pthread_mutex_destroy(&m->mu);
    free(m);
    ctx->mat = NULL;
}
