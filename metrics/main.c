/*
 * metrics - metric definitions, safe tenant-scoped queries over their SQL
 * templates, scheduled materialization. See docs/metrics.md.
 *
 * Wiring only: the configuration table, the endpoints, and the start and
 * stop of the connections (conn.c) and the materializer (materialize.c).
 */
#include "common/service.h"
#include "metrics/api.h"
#include "metrics/columns.h"
#include "metrics/conn.h"
#include "metrics/materialize.h"
#include "metrics/metrics.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define V(field) offsetof(metrics_ctx, field)
static const an_config_var metrics_vars[] = {
    {"ANALYTICS_CLICKHOUSE_READER_USER", AN_CFG_STRING, "analytics_reader", 0, 0, AN_CFG_REQUIRED,
     V(reader_user), "readonly ClickHouse user that runs templates (hot tier only)"},
    {"ANALYTICS_CLICKHOUSE_READER_PASSWORD", AN_CFG_STRING, "", 0, 0, AN_CFG_SECRET,
     V(reader_password), "its password"},
    {"ANALYTICS_METRICS_MAX_ROWS", AN_CFG_INT, "10000", 1, 1000000, 0, V(max_rows),
     "most rows of a query's answer (after filling); more is resource_exhausted"},
    {"ANALYTICS_METRICS_QUERY_TIMEOUT", AN_CFG_DURATION, "8s", 100, 300000, 0, V(query_timeout_ms),
     "client-side limit of one template query (below ANALYTICS_REQUEST_TIMEOUT)"},
    {"ANALYTICS_METRICS_PREVIEW_MAX_ROWS", AN_CFG_INT, "100", 1, 10000, 0, V(preview_max_rows),
     "largest limit of a preview"},
    {"ANALYTICS_METRICS_CACHE_TTL", AN_CFG_DURATION, "60s", 0, 86400000, 0, V(cache_ttl_ms),
     "how long a query's answer is cached in Redis; 0: no result cache"},
    {"ANALYTICS_METRICS_DEF_CACHE_TTL", AN_CFG_DURATION, "5m", 0, 86400000, 0, V(def_cache_ttl_ms),
     "how long a definition stays in the Redis cache; 0: none"},
    {"ANALYTICS_METRICS_REDIS_PREFIX", AN_CFG_STRING, "an:metrics", 0, 0, AN_CFG_REQUIRED,
     V(redis_prefix), "prefix of the Redis keys (caches, locks, tick claims)"},
    {"ANALYTICS_METRICS_SCHEDULER", AN_CFG_BOOL, "true", 0, 0, 0, V(scheduler),
     "run the schedule ticker in this replica (ticks still fire once overall)"},
    {"ANALYTICS_METRICS_SCHEDULER_INTERVAL", AN_CFG_DURATION, "5s", 100, 60000, 0,
     V(scheduler_interval_ms), "how often the scheduler looks for due ticks"},
    {"ANALYTICS_METRICS_SCHEDULE_REFRESH", AN_CFG_DURATION, "30s", 100, 3600000, 0,
     V(schedule_refresh_ms), "how often the list of scheduled metrics is re-read"},
    {"ANALYTICS_METRICS_TICK_CATCHUP", AN_CFG_DURATION, "10m", 60000, 86400000, 0,
     V(tick_catchup_ms), "ticks missed (no replica running) are fired up to this late"},
    {"ANALYTICS_METRICS_MATERIALIZE_WORKERS", AN_CFG_INT, "1", 0, 32, 0, V(mat_workers),
     "materialization worker threads in this replica; 0: none"},
    {"ANALYTICS_METRICS_QUEUE", AN_CFG_STRING, "metrics-materialize", 0, 0, AN_CFG_REQUIRED,
     V(queue_name), "Redis Streams queue of materialization jobs"},
    {"ANALYTICS_METRICS_JOB_VISIBILITY", AN_CFG_DURATION, "60s", 1000, 3600000, 0,
     V(job_visibility_ms), "a job silent this long is taken over by another replica"},
    {"ANALYTICS_METRICS_JOB_MAX_ATTEMPTS", AN_CFG_INT, "5", 1, 100, 0, V(job_max_attempts),
     "attempts of a job before its dead-letter stream"},
    {"ANALYTICS_METRICS_MATERIALIZE_TIMEOUT", AN_CFG_DURATION, "120s", 1000, 3600000, 0,
     V(mat_timeout_ms), "client-side limit of one materialization query"},
    {"ANALYTICS_METRICS_COLUMNS_REFRESH", AN_CFG_DURATION, "60s", 0, 86400000, 0,
     V(columns_refresh_ms),
     "how often the materialized property columns of analytics.events are re-read; 0: never "
     "use them"},
    {"ANALYTICS_METRICS_TEST_PAUSE", AN_CFG_DURATION, "0", 0, 600000, 0, V(test_pause_ms),
     "testing only: pause between computing a materialization and writing it"},
    {0},
};
#undef V

static const an_endpoint endpoints[] = {
    {"create", metrics_handle_create, 0, 0, "define a metric (SQL template, unit, schedule)"},
    {"get", metrics_handle_get, 0, 0, "read one metric definition"},
    {"list", metrics_handle_list, 0, 0, "list metrics, filtered by status, paged"},
    {"update", metrics_handle_update, 0, 0, "change a metric (expected version)"},
    {"deprecate", metrics_handle_deprecate, 0, 0, "deprecate a metric (stays queryable)"},
    {"query", metrics_handle_query, 0, 0, "metric values over a time range, by dimensions"},
    {"preview", metrics_handle_preview, 0, 0, "run an unsaved template, few rows"},
    {0},
};

static an_status init_metrics(metrics_ctx *c, an_error *err)
{
    an_prom_registry *reg = an_service_metrics(c->svc);
    an_status s;
    if ((s = an_prom_counter_get(reg, "analytics_metrics_queries_total", "Metric queries answered.",
                                 AN_PROM_LABELS("source", "live"), &c->queries_live, err)) !=
            AN_OK ||
        (s = an_prom_counter_get(reg, "analytics_metrics_queries_total", NULL,
                                 AN_PROM_LABELS("source", "materialized"), &c->queries_materialized,
                                 err)) != AN_OK ||
        (s = an_prom_counter_get(reg, "analytics_metrics_queries_total", NULL,
                                 AN_PROM_LABELS("source", "cache"), &c->queries_cached, err)) !=
            AN_OK ||
        (s = an_prom_counter_get(reg, "analytics_metrics_cache_errors_total",
                                 "Redis cache reads or writes that failed.", NULL, &c->cache_errors,
                                 err)) != AN_OK ||
        (s = an_prom_counter_get(reg, "analytics_metrics_materializations_total",
                                 "Materialization jobs by outcome.",
                                 AN_PROM_LABELS("outcome", "ok"), &c->runs_ok, err)) != AN_OK ||
        (s = an_prom_counter_get(reg, "analytics_metrics_materializations_total", NULL,
                                 AN_PROM_LABELS("outcome", "failed"), &c->runs_failed, err)) !=
            AN_OK ||
        (s = an_prom_counter_get(reg, "analytics_metrics_ticks_total",
                                 "Schedule ticks claimed and queued by this replica.", NULL,
                                 &c->ticks_claimed, err)) != AN_OK)
        return s;
    if ((s = an_prom_gauge_get(reg, "analytics_metrics_property_columns",
                               "Materialized property columns of analytics.events in use "
                               "(as last read).",
                               NULL, &c->property_columns, err)) != AN_OK)
        return s;
    static const char *const states[] = {"waiting", "pending", "delayed", "dead"};
    an_prom_gauge **gauges[] = {&c->queue_waiting, &c->queue_pending, &c->queue_delayed,
                                &c->queue_dead};
    for (int i = 0; i < 4; i++)
        if ((s = an_prom_gauge_get(reg, "analytics_metrics_queue_jobs",
                                   "Materialization jobs in the Redis queue by state (updated by "
                                   "the scheduler).",
                                   AN_PROM_LABELS("state", states[i]), gauges[i], err)) != AN_OK)
            return s;
    return an_prom_histogram_get(reg, "analytics_metrics_query_seconds",
                                 "Time to compute an answer (ClickHouse and filling), cache "
                                 "hits excluded.",
                                 NULL, 0, NULL, &c->query_seconds, err);
}

static an_status metrics_init(an_service *svc, void *ctx, an_error *err)
{
    metrics_ctx *c = ctx;
    c->svc = svc;
    const an_service_config *sc = an_service_get_config(svc);
    if (c->query_timeout_ms + 500 > sc->request_timeout_ms)
        return an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_METRICS_QUERY_TIMEOUT",
                              "ANALYTICS_METRICS_QUERY_TIMEOUT must be at least 500ms below "
                              "ANALYTICS_REQUEST_TIMEOUT, so a slow query is answered "
                              "resource_exhausted before the request's deadline");
    metrics_conns_config cc = {
        .clickhouse_url = sc->clickhouse_url,
        .writer_user = sc->clickhouse_user,
        .writer_password = sc->clickhouse_password,
        .reader_user = c->reader_user,
        .reader_password = c->reader_password,
        .reader_timeout_ms = (int)c->query_timeout_ms,
        .redis_url = sc->redis_url,
    };
    an_status s = metrics_conns_new(&cc, &c->conns, err);
    if (s == AN_OK)
        s = init_metrics(c, err);
    if (s == AN_OK &&
        !(c->columns = metrics_columns_new(c->columns_refresh_ms, c->property_columns)))
        s = an_error_set(err, AN_INTERNAL, "out of memory");
    if (s == AN_OK)
        s = metrics_materializer_start(c, err);
    if (s != AN_OK) {
        metrics_materializer_stop(c);
        metrics_conns_free(c->conns);
        c->conns = NULL;
        metrics_columns_free(c->columns);
        c->columns = NULL;
    }
    return s;
}

static void metrics_exit(an_service *svc, void *ctx)
{
    (void)svc;
    metrics_ctx *c = ctx;
    metrics_materializer_stop(c);
    metrics_conns_free(c->conns);
    c->conns = NULL;
    metrics_columns_free(c->columns);
    c->columns = NULL;
}

static const an_service_def def = {
    .name = "metrics",
    .version = "0.1.0",
    .description = "metric definitions, tenant-scoped metric queries, scheduled materialization",
    .config = metrics_vars,
    .ctx_size = sizeof(metrics_ctx),
    .endpoints = endpoints,
    .init = metrics_init,
    .exit = metrics_exit,
    .workers = 8,
    .deps = AN_DEP_CLICKHOUSE | AN_DEP_REDIS,
};

int main(int argc, char **argv)
{
    return an_service_main(&def, argc, argv);
}
