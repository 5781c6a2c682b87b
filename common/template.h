/*
 * template.h - the SQL template language of metrics, reports, exports and
 * cohorts: placeholders a tenant writes in a SELECT, expanded by the service
 * with values it validated and quoted, then checked and bound to the
 * caller's tenant by common/sqlcheck. docs/metrics.md has the user's guide.
 *
 *   SELECT {{bucket}} AS bucket{{dimensions}}, uniq(actor_id) AS value
 *   FROM {{events}}
 *   WHERE {{time_range}} AND {{filters}}
 *   GROUP BY bucket{{group_by}}
 *
 * Placeholders (`{{name}}` or `{{name:column}}`, spaces allowed inside the
 * braces; only in SQL code: inside string literals, quoted names and
 * comments they are left alone):
 *
 *   {{events}}            the hot-tier events relation, bound to the tenant
 *   {{events_hourly}}     the hourly rollup (migration 0003: tenant_id,
 *                         event_name, hour, events = countState(),
 *                         actors = uniqIfState(actor_id, actor_id != ''))
 *   {{bucket}}            start of the time bucket of occurred_at at the
 *   {{bucket:col}}        requested granularity, a DateTime in UTC, e.g.
 *                         toStartOfDay(occurred_at, 'UTC'); `col` names
 *                         another DateTime column (`hour` of the rollup)
 *   {{time_range}}        (occurred_at >= toDateTime(F) AND occurred_at <
 *   {{time_range:col}}    toDateTime(T)): the requested [from, to)
 *   {{dimensions}}        ", <expr> AS dim_0, <expr> AS dim_1 ..." for the
 *                         requested dimensions, each with a leading comma;
 *                         nothing when none
 *   {{group_by}}          ", dim_0, dim_1 ..." the same aliases, for GROUP BY
 *   {{filters}}           "(<cond> AND <cond> ...)" for the requested
 *                         filters; "1" when none
 *
 * The tenant is never a placeholder: every table the expanded SQL reads is
 * replaced by a subquery restricted to the caller's tenant (sqlcheck.h), and
 * the template itself must pass the checker. A placeholder a template does
 * not use while the request needs it (a dimension requested from a template
 * without {{dimensions}}) is refused, never silently ignored.
 *
 * Dimensions and filter fields name either a column of the events relation
 * (event_name, actor_type, actor_id) or a property path written
 * `properties.<path>` (e.g. properties.course.id), read as
 * prop_values[indexOf(prop_keys, '<path>')] (the empty string when the
 * event has no such property). Paths are checked by
 * an_sql_property_path_valid; every value goes through an_sql_quote or
 * an_sql_double.
 *
 * Filters: {field, op, value}, op one of
 *   eq neq          value: string, number or boolean
 *   in not_in       value: a non-empty array of strings, or of numbers
 *   gt gte lt lte   value: string (compared as text) or number
 *   contains        value: string (case-sensitive substring)
 *   is_set          value: boolean (default true): the property exists /
 *                   the column is not empty
 * ("not-in" and "is-set" are accepted as spellings of not_in and is_set.)
 * A string compares as text; a missing property is the empty string. A
 * number compares numerically with toFloat64OrNull(field): a value that is
 * not a number never matches eq, in, gt, gte, lt, lte and always matches
 * neq and not_in.
 *
 * Granularities: minute, hour, day, week (weeks start on Monday), month; all
 * buckets are in UTC.
 */
#ifndef AN_TEMPLATE_H
#define AN_TEMPLATE_H

#include "common/buf.h"
#include "common/sqlcheck.h"
#include "common/status.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits of one request's parameters. */
#define AN_TEMPLATE_MAX_DIMENSIONS 8
#define AN_TEMPLATE_MAX_FILTERS    32
#define AN_TEMPLATE_MAX_IN_VALUES  1000
#define AN_TEMPLATE_MAX_VALUE      1024 /* bytes of one string value */

/* The SQL alias of dimension i is "dim_<i>"; the tenant breakdown's is this. */
#define AN_TEMPLATE_TENANT_ALIAS "dim_tenant"

typedef enum an_template_granularity {
    AN_TEMPLATE_GRAN_NONE = 0, /* no time buckets */
    AN_TEMPLATE_MINUTE,
    AN_TEMPLATE_HOUR,
    AN_TEMPLATE_DAY,
    AN_TEMPLATE_WEEK, /* starting on Monday */
    AN_TEMPLATE_MONTH,
} an_template_granularity;

/* "minute" .. "month"; "none" for AN_TEMPLATE_GRAN_NONE. */
const char *an_template_granularity_name(an_template_granularity g);

/* Parse a granularity name (not "none"). AN_INVALID_ARGUMENT naming field
 * (e.g. "granularity") otherwise. */
an_status an_template_granularity_parse(const char *field, const char *s,
                                        an_template_granularity *out, an_error *err);

/* Start (epoch ms, UTC) of the bucket of granularity g holding ms, and the
 * start of the bucket after the one starting at bucket_ms. g must not be
 * AN_TEMPLATE_GRAN_NONE (ms is returned unchanged then). */
int64_t an_template_bucket_floor(int64_t ms, an_template_granularity g);
int64_t an_template_bucket_next(int64_t bucket_ms, an_template_granularity g);

typedef enum an_template_op {
    AN_TEMPLATE_EQ = 1,
    AN_TEMPLATE_NEQ,
    AN_TEMPLATE_IN,
    AN_TEMPLATE_NOT_IN,
    AN_TEMPLATE_GT,
    AN_TEMPLATE_GTE,
    AN_TEMPLATE_LT,
    AN_TEMPLATE_LTE,
    AN_TEMPLATE_CONTAINS,
    AN_TEMPLATE_IS_SET,
} an_template_op;

/* "eq", "not_in", ... */
const char *an_template_op_name(an_template_op op);

typedef enum an_template_kind {
    AN_TEMPLATE_STRING = 1,
    AN_TEMPLATE_NUMBER,
    AN_TEMPLATE_BOOL,
} an_template_kind;

typedef struct an_template_value {
    an_template_kind kind;
    char *s;  /* STRING: heap copy (may contain no NUL) */
    double n; /* NUMBER: finite */
    bool b;   /* BOOL */
} an_template_value;

typedef struct an_template_filter {
    char *field; /* a dimension name (see the top of this file) */
    an_template_op op;
    an_template_value *values; /* 1 value, or 1..AN_TEMPLATE_MAX_IN_VALUES for in/not_in */
    size_t nvalues;
} an_template_filter;

/* What a request asks of a template. Every string is owned by the struct:
 * an_template_params_free() releases them. A zeroed struct asks for
 * nothing (no range, no buckets, no dimensions, no filters). */
typedef struct an_template_params {
    bool has_range;
    int64_t from_ms, to_ms; /* [from, to), epoch ms; from < to */
    an_template_granularity granularity;
    char **dimensions; /* ndimensions names, in the order of the result */
    size_t ndimensions;
    an_template_filter *filters;
    size_t nfilters;
    /* Platform-wide queries broken down per tenant: the tenant column is
     * the first dimension, aliased AN_TEMPLATE_TENANT_ALIAS. */
    bool tenant_dimension;
} an_template_params;

void an_template_params_free(an_template_params *p);

/* Read "from", "to" (RFC 3339), "granularity", "dimensions" (array of
 * names) and "filters" (array of {field, op, value}) of a request body
 * (other members are ignored; obj may be NULL). Everything is validated
 * here: AN_INVALID_ARGUMENT names the field ("from", "dimensions[1]",
 * "filters[0].value", ...) and the reason. out is zeroed first and freed on
 * failure. */
an_status an_template_params_from_json(const cJSON *obj, an_template_params *out, an_error *err);

/* Is name a dimension or filter field this language accepts? On failure
 * AN_INVALID_ARGUMENT naming field (the request's field, e.g.
 * "dimensions[0]"). */
an_status an_template_field_check(const char *field, const char *name, an_error *err);

/* Parse a JSON array of dimension names (at most AN_TEMPLATE_MAX_DIMENSIONS,
 * each passing an_template_field_check, none twice) into a fresh
 * NULL-terminated *out of strdup'd names, counting them in *n; *out and *n
 * must start NULL and 0. arr NULL or JSON null: nothing is given. On
 * failure AN_INVALID_ARGUMENT names field ("dimensions") or one element
 * ("dimensions[1]"); *out and *n then hold the names parsed so far. The
 * caller frees each (*out)[i] and *out, on success and on failure. */
an_status an_template_dimensions_from_json(const cJSON *arr, const char *field, char ***out,
                                           size_t *n, an_error *err);

/* Which placeholders a template uses (bits of an_template_info.used). */
enum {
    AN_TEMPLATE_USES_EVENTS = 1 << 0,
    AN_TEMPLATE_USES_EVENTS_HOURLY = 1 << 1,
    AN_TEMPLATE_USES_BUCKET = 1 << 2,
    AN_TEMPLATE_USES_TIME_RANGE = 1 << 3,
    AN_TEMPLATE_USES_DIMENSIONS = 1 << 4,
    AN_TEMPLATE_USES_GROUP_BY = 1 << 5,
    AN_TEMPLATE_USES_FILTERS = 1 << 6,
};

/* Scan a template without expanding it: which placeholders it uses, and
 * whether they are well formed (known names, valid column arguments,
 * closed braces). AN_INVALID_ARGUMENT (field "query") otherwise. */
an_status an_template_scan(const char *tpl, size_t len, unsigned *used, an_error *err);

/* Expand the placeholders of tpl[0..len) with p, appending to out (the
 * caller's). The result still names bare tables: it must go through
 * an_template_bind (or an_sqlcheck_bind) before it runs. Refused with
 * AN_INVALID_ARGUMENT: a malformed template (field "query"); parameters
 * the template cannot honour (field "granularity", "from", "dimensions" or
 * "filters": e.g. dimensions requested from a template without
 * {{dimensions}} and {{group_by}}); a placeholder that needs a parameter
 * the request lacks ({{bucket}} without a granularity, {{time_range}}
 * without from/to). On failure out is left as it was. */
an_status an_template_expand(const char *tpl, size_t len, const an_template_params *p, an_buf *out,
                             an_error *err);

/* The tables templates may read ({{events}}, {{events_hourly}}), for
 * an_sqlcheck_opts.tables; ends with a NULL name. */
extern const an_sqlcheck_table an_template_tables[];

/* Who the expanded SQL is bound to: one tenant (any bytes), or every tenant
 * (platform-admin queries of platform metrics only; the caller checks that). */
typedef struct an_template_scope {
    const char *tenant_id; /* NULL with all_tenants */
    bool all_tenants;
    /* Materialized property columns of analytics.events (may be NULL):
     * a dimension or filter on properties.<path> reads the column instead
     * of searching the arrays. */
    const struct an_template_column *columns;
    size_t ncolumns;
} an_template_scope;

/* A property path with a column of analytics.events that holds exactly
 * prop_values[indexOf(prop_keys, '<path>')], computed by ClickHouse as
 * rows are inserted (ALTER TABLE ... ADD COLUMN c String MATERIALIZED
 * ...; deploy/clickhouse/property-column.sh). Same values, one short
 * column to read instead of two arrays. */
#define AN_TEMPLATE_COLUMN_MAX 128
typedef struct an_template_column {
    char path[AN_TEMPLATE_COLUMN_MAX];   /* "country", "course.id" (without "properties.") */
    char column[AN_TEMPLATE_COLUMN_MAX]; /* [A-Za-z0-9_]+ */
} an_template_column;

/* Is the column `name` with this MATERIALIZED expression (as ClickHouse
 * reports it in system.columns.default_expression) a property column?
 * Fills *out when it is. Only the exact expression above counts. */
bool an_template_column_parse(const char *name, const char *expr, an_template_column *out);

/* Expand tpl with p and bind it to scope: the SQL that may run, appended to
 * out. Errors as an_template_expand, and the checker's refusals
 * (AN_INVALID_ARGUMENT, field "query"). On failure out is left as it was. */
an_status an_template_bind(const char *tpl, size_t len, const an_template_params *p,
                           const an_template_scope *scope, an_buf *out, an_error *err);

/* Check a template as it is saved: placeholders well formed, and its
 * expansion with sample parameters (every placeholder it uses given a
 * value) accepted by the checker. AN_INVALID_ARGUMENT, field "query". */
an_status an_template_check(const char *tpl, size_t len, an_error *err);

#endif
