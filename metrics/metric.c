#include "metrics/metric.h"

#include "common/buf.h"
#include "common/cron.h"
#include "common/crypto.h"
#include "common/timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const units[] = {"count", "ratio", "seconds", "bytes", "microUSD", NULL};
static const char *const statuses[] = {"active", "deprecated", NULL};

/* The record's members a create or update body may carry. */
static const char *const record_fields[] = {"name",   "description", "query",       "unit",
                                            "status", "schedule",    "materialize", NULL};

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

void metrics_def_free(metric_def *d)
{
    if (!d)
        return;
    free(d->tenant_id);
    free(d->name);
    cJSON_Delete(d->description);
    free(d->query);
    free(d->unit);
    free(d->status);
    free(d->schedule);
    free_strings(d->mat.dimensions, d->mat.ndimensions);
    free(d->created_by);
    memset(d, 0, sizeof(*d));
}

void metrics_def_copy(metric_def *dst, const metric_def *src)
{
    *dst = *src;
    dst->tenant_id = dup_or_null(src->tenant_id);
    dst->name = dup_or_null(src->name);
    dst->description = src->description ? cJSON_Duplicate(src->description, 1) : NULL;
    dst->query = dup_or_null(src->query);
    dst->unit = dup_or_null(src->unit);
    dst->status = dup_or_null(src->status);
    dst->schedule = dup_or_null(src->schedule);
    dst->created_by = dup_or_null(src->created_by);
    dst->mat.dimensions = NULL;
    if (src->mat.ndimensions) {
        dst->mat.dimensions = calloc(src->mat.ndimensions, sizeof(char *));
        for (size_t i = 0; i < src->mat.ndimensions; i++)
            dst->mat.dimensions[i] = strdup(src->mat.dimensions[i]);
    }
}

static bool in_list(const char *s, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

bool metrics_unit_fills_zero(const char *unit)
{
    return unit && (strcmp(unit, "count") == 0 || strcmp(unit, "bytes") == 0 ||
                    strcmp(unit, "microUSD") == 0);
}

/* ------------------------------------------------------------ validation */

/* Printable text: no control characters (tabs and newlines allowed when
 * multiline). cJSON has already refused invalid UTF-8 escapes. */
static bool text_ok(const char *s, bool multiline)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == 0x7f)
            return false;
        if (*p < 0x20 && !(multiline && (*p == '\n' || *p == '\t' || *p == '\r')))
            return false;
    }
    return true;
}

/* BCP 47-ish locale: 2-3 letters, then -subtags of 2-8 letters/digits. */
static bool locale_ok(const char *s)
{
    size_t n = 0;
    while (s[n] >= 'a' && s[n] <= 'z')
        n++;
    if (n < 2 || n > 3)
        return false;
    s += n;
    while (*s == '-') {
        s++;
        n = 0;
        while ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
               (s[n] >= '0' && s[n] <= '9'))
            n++;
        if (n < 2 || n > 8)
            return false;
        s += n;
    }
    return *s == '\0';
}

static an_status set_name(metric_def *d, const cJSON *v, an_error *err)
{
    if (!cJSON_IsString(v))
        return an_error_field(err, AN_INVALID_ARGUMENT, "name", "name: expected a string");
    const char *s = v->valuestring;
    size_t n = strlen(s);
    if (n == 0 || s[0] == ' ' || s[n - 1] == ' ')
        return an_error_field(err, AN_INVALID_ARGUMENT, "name",
                              "name: must not be empty nor start or end with a space");
    if (n > METRIC_NAME_MAX)
        return an_error_field(err, AN_INVALID_ARGUMENT, "name", "name: longer than %d bytes",
                              METRIC_NAME_MAX);
    if (!text_ok(s, false))
        return an_error_field(err, AN_INVALID_ARGUMENT, "name",
                              "name: must not contain control characters");
    free(d->name);
    d->name = strdup(s);
    return AN_OK;
}

static an_status set_description(metric_def *d, const cJSON *v, an_error *err)
{
    if (cJSON_IsNull(v)) {
        cJSON_Delete(d->description);
        d->description = cJSON_CreateObject();
        return AN_OK;
    }
    if (!cJSON_IsObject(v))
        return an_error_field(err, AN_INVALID_ARGUMENT, "description",
                              "description: expected an object of locale -> text, e.g. "
                              "{\"en\": \"...\"}");
    if (cJSON_GetArraySize(v) > METRIC_LOCALES_MAX)
        return an_error_field(err, AN_INVALID_ARGUMENT, "description",
                              "description: more than %d locales", METRIC_LOCALES_MAX);
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        char field[96];
        snprintf(field, sizeof(field), "description.%.64s", e->string);
        if (!locale_ok(e->string))
            return an_error_field(err, AN_INVALID_ARGUMENT, field,
                                  "%s: not a locale tag (e.g. en, fr, pt-BR)", field);
        if (!cJSON_IsString(e))
            return an_error_field(err, AN_INVALID_ARGUMENT, field, "%s: expected a string", field);
        if (strlen(e->valuestring) > METRIC_DESCRIPTION_MAX)
            return an_error_field(err, AN_INVALID_ARGUMENT, field, "%s: longer than %d bytes",
                                  field, METRIC_DESCRIPTION_MAX);
        if (!text_ok(e->valuestring, true))
            return an_error_field(err, AN_INVALID_ARGUMENT, field,
                                  "%s: must not contain control characters", field);
        for (const cJSON *o = v->child; o != e; o = o->next)
            if (strcmp(o->string, e->string) == 0)
                return an_error_field(err, AN_INVALID_ARGUMENT, field, "%s: given twice", field);
    }
    cJSON_Delete(d->description);
    d->description = cJSON_Duplicate(v, 1);
    return AN_OK;
}

static an_status set_query(metric_def *d, const cJSON *v, an_error *err)
{
    if (!cJSON_IsString(v))
        return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                              "query: expected the SQL template as a string");
    size_t n = strlen(v->valuestring);
    if (n == 0)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query", "query: must not be empty");
    if (n > METRIC_QUERY_MAX)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query", "query: longer than %d bytes",
                              METRIC_QUERY_MAX);
    an_status s = an_template_check(v->valuestring, n, err);
    if (s != AN_OK)
        return s;
    unsigned used = 0;
    an_template_scan(v->valuestring, n, &used, NULL);
    if ((used & AN_TEMPLATE_USES_BUCKET) && !(used & AN_TEMPLATE_USES_TIME_RANGE))
        return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                              "query: a template with {{bucket}} must restrict the time with "
                              "{{time_range}}");
    free(d->query);
    d->query = strdup(v->valuestring);
    return AN_OK;
}

static an_status set_enum(char **dst, const char *field, const cJSON *v, const char *const *allowed,
                          const char *expected, an_error *err)
{
    if (!cJSON_IsString(v) || !in_list(v->valuestring, allowed))
        return an_error_field(err, AN_INVALID_ARGUMENT, field, "%s: expected %s", field, expected);
    free(*dst);
    *dst = strdup(v->valuestring);
    return AN_OK;
}

static an_status set_schedule(metric_def *d, const cJSON *v, an_error *err)
{
    if (cJSON_IsNull(v)) {
        free(d->schedule);
        d->schedule = NULL;
        return AN_OK;
    }
    if (!cJSON_IsString(v))
        return an_error_field(err, AN_INVALID_ARGUMENT, "schedule",
                              "schedule: expected a cron expression or null");
    an_cron c;
    an_error e;
    an_error_clear(&e);
    if (an_cron_parse(v->valuestring, &c, &e) != AN_OK)
        return an_error_field(err, AN_INVALID_ARGUMENT, "schedule", "schedule: %s", e.message);
    free(d->schedule);
    d->schedule = strdup(v->valuestring);
    return AN_OK;
}

static void mat_defaults(metric_materialize *m)
{
    free_strings(m->dimensions, m->ndimensions);
    memset(m, 0, sizeof(*m));
    m->granularity = AN_TEMPLATE_DAY;
    m->lookback = 2;
}

static an_status set_materialize(metric_def *d, const cJSON *v, an_error *err)
{
    mat_defaults(&d->mat);
    if (cJSON_IsNull(v))
        return AN_OK;
    if (!cJSON_IsObject(v))
        return an_error_field(err, AN_INVALID_ARGUMENT, "materialize",
                              "materialize: expected {granularity, dimensions, lookback} or null");
    const cJSON *e;
    cJSON_ArrayForEach(e, v)
    {
        if (strcmp(e->string, "granularity") != 0 && strcmp(e->string, "dimensions") != 0 &&
            strcmp(e->string, "lookback") != 0) {
            char field[96];
            snprintf(field, sizeof(field), "materialize.%.64s", e->string);
            return an_error_field(err, AN_INVALID_ARGUMENT, field, "%s: unknown member", field);
        }
    }
    const cJSON *g = cJSON_GetObjectItemCaseSensitive(v, "granularity");
    if (g) {
        an_status s = an_template_granularity_parse("materialize.granularity",
                                                    cJSON_IsString(g) ? g->valuestring : NULL,
                                                    &d->mat.granularity, err);
        if (s != AN_OK)
            return s;
    }
    const cJSON *lb = cJSON_GetObjectItemCaseSensitive(v, "lookback");
    if (lb) {
        if (!cJSON_IsNumber(lb) || lb->valuedouble != (double)(int)lb->valuedouble ||
            lb->valueint < 1 || lb->valueint > METRIC_LOOKBACK_MAX)
            return an_error_field(err, AN_INVALID_ARGUMENT, "materialize.lookback",
                                  "materialize.lookback: expected a whole number of buckets, "
                                  "1..%d",
                                  METRIC_LOOKBACK_MAX);
        d->mat.lookback = lb->valueint;
    }
    return an_template_dimensions_from_json(cJSON_GetObjectItemCaseSensitive(v, "dimensions"),
                                            "materialize.dimensions", &d->mat.dimensions,
                                            &d->mat.ndimensions, err);
}

/* A schedule needs a template that can be computed per bucket and window. */
static an_status check_schedulable(const metric_def *d, an_error *err)
{
    if (!d->schedule)
        return AN_OK;
    unsigned used = 0;
    an_template_scan(d->query, strlen(d->query), &used, NULL);
    if (!(used & AN_TEMPLATE_USES_BUCKET) || !(used & AN_TEMPLATE_USES_TIME_RANGE))
        return an_error_field(err, AN_INVALID_ARGUMENT, "schedule",
                              "schedule: a materialized metric's template needs {{bucket}} and "
                              "{{time_range}}");
    if (d->mat.ndimensions && !(used & AN_TEMPLATE_USES_DIMENSIONS))
        return an_error_field(err, AN_INVALID_ARGUMENT, "materialize.dimensions",
                              "materialize.dimensions: the template has no {{dimensions}} and "
                              "{{group_by}}");
    return AN_OK;
}

an_status metrics_def_check_owner(const metric_def *d, an_error *err)
{
    if (d->tenant_id || !d->schedule)
        return AN_OK;
    unsigned used = 0;
    an_template_scan(d->query, strlen(d->query), &used, NULL);
    if (!(used & AN_TEMPLATE_USES_DIMENSIONS))
        return an_error_field(err, AN_INVALID_ARGUMENT, "schedule",
                              "schedule: a platform metric is materialized per tenant: its "
                              "template needs {{dimensions}} and {{group_by}}");
    return AN_OK;
}

an_status metrics_def_apply(metric_def *d, const cJSON *body, bool create, const char *const *skip,
                            an_error *err)
{
    if (!cJSON_IsObject(body))
        return an_error_set(err, AN_INVALID_ARGUMENT, "expected a JSON object");
    const cJSON *e;
    cJSON_ArrayForEach(e, body)
    {
        if (!in_list(e->string, record_fields) && !(skip && in_list(e->string, skip)))
            return an_error_field(err, AN_INVALID_ARGUMENT, e->string, "%.64s: unknown field",
                                  e->string);
    }
    if (create) {
        if (!d->description)
            d->description = cJSON_CreateObject();
        if (!d->status)
            d->status = strdup("active");
        mat_defaults(&d->mat);
        static const char *const required[] = {"name", "query", "unit", NULL};
        for (const char *const *r = required; *r; r++)
            if (!cJSON_GetObjectItemCaseSensitive(body, *r))
                return an_error_field(err, AN_INVALID_ARGUMENT, *r, "%s: is required", *r);
    }
    an_status s = AN_OK;
    const cJSON *v;
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "name")) && (s = set_name(d, v, err)) != AN_OK)
        return s;
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "description")) &&
        (s = set_description(d, v, err)) != AN_OK)
        return s;
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "query")) &&
        (s = set_query(d, v, err)) != AN_OK)
        return s;
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "unit")) &&
        (s = set_enum(&d->unit, "unit", v, units, "count, ratio, seconds, bytes or microUSD",
                      err)) != AN_OK)
        return s;
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "status")) &&
        (s = set_enum(&d->status, "status", v, statuses, "active or deprecated", err)) != AN_OK)
        return s;
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "schedule")) &&
        (s = set_schedule(d, v, err)) != AN_OK)
        return s;
    if ((v = cJSON_GetObjectItemCaseSensitive(body, "materialize")) &&
        (s = set_materialize(d, v, err)) != AN_OK)
        return s;
    return check_schedulable(d, err);
}

/* ------------------------------------------------------------ JSON forms */

static void add_time(cJSON *o, const char *name, int64_t ms)
{
    char iso[AN_TIME_ISO_LEN];
    if (an_time_format_iso(ms, iso, NULL) == AN_OK)
        cJSON_AddStringToObject(o, name, iso);
    else
        cJSON_AddNullToObject(o, name);
}

static cJSON *strings_json(char **v, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(v[i]));
    return a;
}

static cJSON *mat_json(const metric_def *d)
{
    if (!d->schedule)
        return cJSON_CreateNull();
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "granularity", an_template_granularity_name(d->mat.granularity));
    cJSON_AddItemToObject(m, "dimensions", strings_json(d->mat.dimensions, d->mat.ndimensions));
    cJSON_AddNumberToObject(m, "lookback", d->mat.lookback);
    return m;
}

cJSON *metrics_def_to_json(const metric_def *d)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "id", d->id);
    if (d->tenant_id)
        cJSON_AddStringToObject(o, "tenantId", d->tenant_id);
    else
        cJSON_AddNullToObject(o, "tenantId");
    cJSON_AddStringToObject(o, "name", d->name ? d->name : "");
    cJSON_AddItemToObject(o, "description",
                          d->description ? cJSON_Duplicate(d->description, 1)
                                         : cJSON_CreateObject());
    cJSON_AddStringToObject(o, "query", d->query ? d->query : "");
    cJSON_AddStringToObject(o, "unit", d->unit ? d->unit : "");
    cJSON_AddStringToObject(o, "status", d->status ? d->status : "");
    if (d->schedule)
        cJSON_AddStringToObject(o, "schedule", d->schedule);
    else
        cJSON_AddNullToObject(o, "schedule");
    cJSON_AddItemToObject(o, "materialize", mat_json(d));
    cJSON_AddNumberToObject(o, "version", (double)d->version);
    cJSON_AddStringToObject(o, "createdBy", d->created_by ? d->created_by : "");
    add_time(o, "createdAt", d->created_at_ms);
    add_time(o, "updatedAt", d->updated_at_ms);
    return o;
}

char *metrics_def_spec_json(const metric_def *d)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "query", d->query ? d->query : "");
    cJSON_AddStringToObject(o, "unit", d->unit ? d->unit : "");
    cJSON_AddStringToObject(o, "status", d->status ? d->status : "");
    cJSON_AddStringToObject(o, "schedule", d->schedule ? d->schedule : "");
    cJSON *m = cJSON_CreateObject();
    cJSON_AddStringToObject(m, "granularity", an_template_granularity_name(d->mat.granularity));
    cJSON_AddItemToObject(m, "dimensions", strings_json(d->mat.dimensions, d->mat.ndimensions));
    cJSON_AddNumberToObject(m, "lookback", d->mat.lookback);
    cJSON_AddItemToObject(o, "materialize", m);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static const char *spec_string(const cJSON *spec, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(spec, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

an_status metrics_def_from_columns(const char *tenant_id, const char *id, const char *name,
                                   const char *description, const char *spec,
                                   const char *created_by, int64_t created_at_ms,
                                   int64_t updated_at_ms, uint64_t version, metric_def *out,
                                   an_error *err)
{
    memset(out, 0, sizeof(*out));
    cJSON *sp = cJSON_Parse(spec);
    const char *q = spec_string(sp, "query"), *unit = spec_string(sp, "unit"),
               *status = spec_string(sp, "status"), *sched = spec_string(sp, "schedule");
    if (!sp || !q || !unit || !status || !sched || strlen(id) >= sizeof(out->id)) {
        cJSON_Delete(sp);
        return an_error_set(err, AN_INTERNAL, "metric %s: stored spec is malformed", id);
    }
    snprintf(out->id, sizeof(out->id), "%s", id);
    out->tenant_id = *tenant_id ? strdup(tenant_id) : NULL;
    out->name = strdup(name);
    out->description = cJSON_Parse(description);
    if (!cJSON_IsObject(out->description)) {
        cJSON_Delete(out->description);
        out->description = cJSON_CreateObject();
    }
    out->query = strdup(q);
    out->unit = strdup(unit);
    out->status = strdup(status);
    out->schedule = *sched ? strdup(sched) : NULL;
    mat_defaults(&out->mat);
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(sp, "materialize");
    if (cJSON_IsObject(m)) {
        const char *g = spec_string(m, "granularity");
        if (g)
            an_template_granularity_parse("granularity", g, &out->mat.granularity, NULL);
        const cJSON *lb = cJSON_GetObjectItemCaseSensitive(m, "lookback");
        if (cJSON_IsNumber(lb) && lb->valueint >= 1)
            out->mat.lookback = lb->valueint;
        const cJSON *dims = cJSON_GetObjectItemCaseSensitive(m, "dimensions");
        int n = cJSON_IsArray(dims) ? cJSON_GetArraySize(dims) : 0;
        out->mat.dimensions = calloc((size_t)n + 1, sizeof(char *));
        const cJSON *e;
        cJSON_ArrayForEach(e, dims)
        {
            if (cJSON_IsString(e))
                out->mat.dimensions[out->mat.ndimensions++] = strdup(e->valuestring);
        }
    }
    out->created_by = strdup(created_by);
    out->created_at_ms = created_at_ms;
    out->updated_at_ms = updated_at_ms;
    out->version = version;
    cJSON_Delete(sp);
    return AN_OK;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

char *metrics_def_dimensions_key(const metric_def *d)
{
    size_t n = d->mat.ndimensions;
    char **sorted = calloc(n + 1, sizeof(char *));
    if (n > 0) {
        memcpy(sorted, d->mat.dimensions, n * sizeof(char *));
        qsort(sorted, n, sizeof(char *), cmp_str);
    }
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(sorted[i]));
    char *s = cJSON_PrintUnformatted(a);
    cJSON_Delete(a);
    free(sorted);
    return s;
}

void metrics_def_spec_hash(const metric_def *d, char out[65])
{
    an_buf b = AN_BUF_INIT;
    char *dims = metrics_def_dimensions_key(d);
    /* not the lookback: a longer or shorter window computes the same values */
    an_buf_addf(&b, "v1\n%s\n%s\n", an_template_granularity_name(d->mat.granularity), dims);
    an_buf_adds(&b, d->query ? d->query : "");
    an_crypto_sha256_hex(b.data, b.len, out, NULL);
    free(dims);
    an_buf_free(&b);
}
