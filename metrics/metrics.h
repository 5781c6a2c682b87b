/*
 * metrics.h - the metrics service's context, shared by its files: the
 * configuration (main.c's table) and the running state. See
 * docs/metrics.md for what the service does.
 */
#ifndef METRICS_METRICS_H
#define METRICS_METRICS_H

#include "common/prom.h"
#include "common/service.h"
#include "metrics/conn.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct metrics_materializer metrics_materializer;
typedef struct metrics_columns metrics_columns;

typedef struct metrics_ctx {
    /* configuration (main.c) */
    char *reader_user, *reader_password;
    long long max_rows, preview_max_rows;
    int64_t query_timeout_ms;
    int64_t cache_ttl_ms, def_cache_ttl_ms;
    char *redis_prefix;
    bool scheduler;
    int64_t scheduler_interval_ms, schedule_refresh_ms, tick_catchup_ms;
    long long mat_workers, job_max_attempts;
    char *queue_name;
    int64_t job_visibility_ms, mat_timeout_ms, test_pause_ms;
    int64_t columns_refresh_ms;

    /* running state */
    an_service *svc;
    metrics_conns *conns;
    metrics_materializer *mat;
    metrics_columns *columns; /* materialized property columns (columns.h) */
    an_prom_counter *queries_live, *queries_materialized, *queries_cached;
    an_prom_counter *cache_errors;
    an_prom_counter *runs_ok, *runs_failed, *ticks_claimed;
    an_prom_gauge *queue_waiting, *queue_pending, *queue_delayed, *queue_dead;
    an_prom_gauge *property_columns;
    an_prom_histogram *query_seconds;
} metrics_ctx;

#endif
