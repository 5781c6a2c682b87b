/*
 * metric.h - the MetricDefinition record: validation of what callers send,
 * its JSON form on the wire and its form in ClickHouse.
 *
 *   {"id": ULID, "tenantId": "t1" | null, "name": "...",
 *    "description": {"en": "...", "fr": "..."}, "query": "<SQL template>",
 *    "unit": "count" | "ratio" | "seconds" | "bytes" | "microUSD",
 *    "status": "active" | "deprecated", "schedule": "<cron>" | null,
 *    "materialize": {"granularity": "day", "dimensions": [], "lookback": 2} | null,
 *    "version": N, "createdBy": "...", "createdAt": RFC 3339, "updatedAt": RFC 3339}
 *
 * tenantId null is a platform metric. In ClickHouse (analytics.metric_definitions)
 * name, description (its JSON) and the audit fields have columns of their
 * own; query, unit, status, schedule and materialize live in the JSON spec.
 */
#ifndef METRICS_METRIC_H
#define METRICS_METRIC_H

#include "common/status.h"
#include "common/template.h"
#include "common/ulid.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

#define METRIC_NAME_MAX        200   /* bytes */
#define METRIC_QUERY_MAX       65536 /* bytes of template */
#define METRIC_DESCRIPTION_MAX 4000  /* bytes of one locale's text */
#define METRIC_LOCALES_MAX     32
#define METRIC_LOOKBACK_MAX    1000 /* buckets recomputed per tick */

/* How a scheduled metric is materialized: at each tick the `lookback`
 * complete buckets before the tick are recomputed. */
typedef struct metric_materialize {
    an_template_granularity granularity;
    char **dimensions; /* as given */
    size_t ndimensions;
    int lookback;
} metric_materialize;

typedef struct metric_def {
    char id[AN_ULID_STRLEN];
    char *tenant_id; /* NULL: platform metric */
    char *name;
    cJSON *description; /* object: locale -> text */
    char *query;
    char *unit;
    char *status;
    char *schedule; /* NULL: not scheduled (then materialize is unused) */
    metric_materialize mat;
    char *created_by;
    int64_t created_at_ms, updated_at_ms;
    uint64_t version;
} metric_def;

/* Release what d holds; d may be NULL. */
void metrics_def_free(metric_def *d);

/* Deep copy. */
void metrics_def_copy(metric_def *dst, const metric_def *src);

/* Apply the fields of a create (create = true: name, query and unit
 * required) or update body to d, validating each: AN_INVALID_ARGUMENT names
 * the field. Members other than the record's fields and `skip` (a
 * NULL-terminated list of request members the caller handles, e.g.
 * "tenantId", "id", "expectedVersion") are refused. On failure d may be
 * partly changed: apply to a copy. The template is checked with
 * an_template_check here; ClickHouse checks are the caller's. */
an_status metrics_def_apply(metric_def *d, const cJSON *body, bool create, const char *const *skip,
                            an_error *err);

/* The wire form (a new object the caller owns). */
cJSON *metrics_def_to_json(const metric_def *d);

/* The spec column: {"query","unit","status","schedule","materialize"}. Free it. */
char *metrics_def_spec_json(const metric_def *d);

/* Rebuild a record from its columns (tenant_id "" is a platform metric).
 * AN_INTERNAL when the stored JSON is not what metrics_def_spec_json writes. */
an_status metrics_def_from_columns(const char *tenant_id, const char *id, const char *name,
                                   const char *description, const char *spec,
                                   const char *created_by, int64_t created_at_ms,
                                   int64_t updated_at_ms, uint64_t version, metric_def *out,
                                   an_error *err);

/* The metric's materialized dimension names as a JSON array, sorted (the
 * key of a materialization). Free it. */
char *metrics_def_dimensions_key(const metric_def *d);

/* SHA-256 (hex) of what materialized values depend on: the template and
 * the materialization settings. */
void metrics_def_spec_hash(const metric_def *d, char out[65]);

/* Checks that need the owner (d->tenant_id set): a scheduled platform
 * metric is materialized per tenant, so its template needs {{dimensions}}
 * and {{group_by}}. AN_INVALID_ARGUMENT, field "schedule". */
an_status metrics_def_check_owner(const metric_def *d, an_error *err);

/* True for "count", "bytes", "microUSD": an empty bucket is 0. The others
 * (ratio, seconds: averages and rates) leave it null. */
bool metrics_unit_fills_zero(const char *unit);

#endif
