/*
 * query.h - running a metric: the template bound to the tenant and run as
 * the readonly ClickHouse reader (or the materialized values read back),
 * the rows checked against the limits, time buckets filled and sorted, the
 * reply built and cached.
 *
 * Reply data:
 *   {"metricId", "version", "unit", "granularity" (or null), "from", "to",
 *    "fill": "zero" | "null" | "none",
 *    "columns": [{"name": "bucket", "type": "time"},
 *                {"name": "<dimension>", "type": "string"}, ...,
 *                {"name": "value", "type": "number"}],
 *    "rows": [["2026-01-01T00:00:00.000Z", "FR", 12], ...],
 *    "source": "live" | "materialized", "cached": bool,
 *    "scope": {"tenantId": "t1"} | {"allTenants": true, "breakdown": "tenant" | "total"}}
 * A per-tenant breakdown adds the column {"name": "tenantId", "type": "string"}
 * before the dimensions.
 *
 * Limits: more rows than the maximum, before or after filling, or a query
 * longer than the timeout is AN_RESOURCE_EXHAUSTED, never a shorter answer.
 * The preview alone returns at most its limit with "truncated": true.
 */
#ifndef METRICS_QUERY_H
#define METRICS_QUERY_H

#include "common/status.h"
#include "common/template.h"
#include "metrics/metric.h"
#include "metrics/metrics.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum query_fill {
    QUERY_FILL_DEFAULT = 0, /* zero for count, bytes, microUSD; null otherwise */
    QUERY_FILL_ZERO,
    QUERY_FILL_NULL,
    QUERY_FILL_NONE, /* empty buckets are left out */
} query_fill;

typedef enum query_source {
    QUERY_SOURCE_AUTO = 0, /* materialized values when they cover the request, else live */
    QUERY_SOURCE_LIVE,
    QUERY_SOURCE_MATERIALIZED, /* refused (failed_precondition) when they do not */
} query_source;

typedef struct query_request {
    const metric_def *def;      /* the metric; for a preview a transient one (id "") */
    an_template_params *params; /* from the request; the range is aligned in place */
    const char *tenant;         /* whose events; NULL with all_tenants */
    bool all_tenants;           /* platform metric, platform admin */
    bool per_tenant;            /* with all_tenants: one row set per tenant */
    query_fill fill;
    query_source source;
    bool use_cache;
    bool preview;    /* rows limited to max_rows with "truncated", never cached */
    size_t max_rows; /* rows of the answer */
} query_request;

/* Parse "fill", "source" and "cache" of a query body into q (defaults when
 * absent). AN_INVALID_ARGUMENT names the field. */
an_status metrics_query_options(const cJSON *body, query_request *q, an_error *err);

/* Run q and build the reply data (*out, the caller's). */
an_status metrics_query_run(metrics_ctx *ctx, query_request *q, cJSON **out, an_error *err);

#endif
