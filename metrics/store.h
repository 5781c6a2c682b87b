/*
 * store.h - metrics' records in ClickHouse: analytics.metric_definitions
 * (ReplacingMergeTree(version), read with FINAL ... WHERE deleted = 0),
 * analytics.metric_values (materialized values) and analytics.metric_runs
 * (the log of materializations, which is also their coverage record).
 *
 * Every function takes the caller's an_ch (metrics/conn.h): the writer for
 * records and values, the reader where noted. Every value in SQL goes
 * through common/sql quoting.
 */
#ifndef METRICS_STORE_H
#define METRICS_STORE_H

#include "common/ch.h"
#include "common/status.h"
#include "common/template.h"
#include "metrics/metric.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Write a version of d (its version, updated_at already set by the caller). */
an_status metrics_store_put(an_ch *ch, const metric_def *d, an_error *err);

/* The live record with this id, whoever owns it (the caller checks who
 * may see it). AN_NOT_FOUND when there is none. */
an_status metrics_store_get(an_ch *ch, const char *id, metric_def *out, an_error *err);

/* Is name used by another live metric of tenant (NULL: platform metrics)
 * than except_id (may be NULL)? */
an_status metrics_store_name_taken(an_ch *ch, const char *tenant, const char *name,
                                   const char *except_id, bool *taken, an_error *err);

typedef struct store_list_opts {
    const char *tenant;    /* whose metrics; NULL: platform metrics only */
    bool include_platform; /* also the platform metrics (tenant != NULL) */
    const char *status;    /* "active", "deprecated" or NULL for both */
    const char *after_id;  /* page token: ids greater than this; NULL: from the start */
    size_t limit;          /* at most this many */
} store_list_opts;

/* Metrics by id, ascending. *out (n entries) is freed by the caller with
 * metrics_def_free on each and free(). */
an_status metrics_store_list(an_ch *ch, const store_list_opts *o, metric_def **out, size_t *n,
                             an_error *err);

/* Every live, active metric with a schedule (for the scheduler). */
an_status metrics_store_scheduled(an_ch *ch, metric_def **out, size_t *n, an_error *err);

/* ----------------------------------------------------------- materialized */

typedef struct store_value {
    const char *tenant_id; /* whose events; "" for a platform metric's total */
    int64_t bucket_ms;
    const char *dimensions; /* canonical JSON object, keys sorted, {} for none */
    double value;           /* NaN for "no value" */
    bool deleted;           /* a tombstone: the key has no value any more */
} store_value;

/* Insert values of one metric and granularity (one INSERT). */
an_status metrics_store_values_put(an_ch *ch, const char *metric_id, an_template_granularity g,
                                   const store_value *v, size_t n, int64_t computed_at_ms,
                                   an_error *err);

/* A materialized row as read back. Strings valid during the callback. */
typedef an_status (*store_value_fn)(void *ud, const char *tenant_id, int64_t bucket_ms,
                                    const char *dimensions, const char *value, an_error *err);

typedef struct store_values_query {
    const char *metric_id;
    an_template_granularity granularity;
    int64_t from_ms, to_ms; /* buckets in [from, to) */
    const char *tenant;     /* values of this tenant ("" = a platform metric's total) */
    bool every_tenant;      /* instead: the values of every tenant but the total */
    size_t limit;           /* LIMIT limit (the caller asks for one more than it takes) */
} store_values_query;

/* Read values (run as the reader). value is ClickHouse's text of the Float64
 * ("nan" for no value). */
an_status metrics_store_values_read(an_ch *reader, const store_values_query *q, store_value_fn fn,
                                    void *ud, an_error *err);

/* The live keys of a metric's values at granularity g in [from, to) (value
 * is "" in the callback), for tombstoning the keys a recomputation no
 * longer produces (after a template change, say). */
an_status metrics_store_values_keys(an_ch *ch, const char *metric_id, an_template_granularity g,
                                    int64_t from_ms, int64_t to_ms, store_value_fn fn, void *ud,
                                    an_error *err);

typedef struct store_run {
    const char *tenant_id; /* owner; "" for platform metrics */
    const char *metric_id;
    int64_t tick_ms;
    const char *spec_hash;
    uint64_t version;
    an_template_granularity granularity;
    const char *dimensions; /* metrics_def_dimensions_key */
    int64_t window_from_ms, window_to_ms;
    uint64_t rows;
    const char *replica, *job_id;
    int attempt;
    int64_t started_ms, finished_ms;
} store_run;

/* Log a completed run (status ok). */
an_status metrics_store_run_put(an_ch *ch, const store_run *r, an_error *err);

/* Has the tick of metric_id already run (an ok row in the log)? A job
 * redelivered after its worker logged the run but died before the ack is
 * then acknowledged without running again. */
an_status metrics_store_run_exists(an_ch *ch, const char *metric_id, int64_t tick_ms, bool *exists,
                                   an_error *err);

/* Do the ok runs of (owner, metric, spec_hash, granularity, dimensions)
 * cover [from, to) without a gap? (run as the reader) */
an_status metrics_store_coverage(an_ch *reader, const char *owner, const char *metric_id,
                                 const char *spec_hash, an_template_granularity g,
                                 const char *dimensions, int64_t from_ms, int64_t to_ms,
                                 bool *covered, an_error *err);

#endif
