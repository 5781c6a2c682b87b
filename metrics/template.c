#include "metrics/template.h"

#include "common/buf.h"
#include "common/template.h"
#include "common/timeutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool metrics_template_numeric_type(const char *type)
{
    static const char *const prefixes[] = {"UInt", "Int", "Float", "Decimal", NULL};
    if (strncmp(type, "Nullable(", 9) == 0)
        type += 9;
    for (const char *const *p = prefixes; *p; p++)
        if (strncmp(type, *p, strlen(*p)) == 0)
            return true;
    return false;
}

void metrics_template_locate_columns(const an_ch_row *row, size_t ndims,
                                     metrics_result_columns *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t c = 0; c < row->ncols; c++) {
        const char *name = row->names[c];
        if (strcmp(name, "value") == 0) {
            out->value_col = c;
            out->has_value = true;
        } else if (strcmp(name, "bucket") == 0) {
            out->bucket_col = c;
            out->has_bucket = true;
        } else if (strcmp(name, AN_TEMPLATE_TENANT_ALIAS) == 0) {
            out->tenant_col = c;
            out->has_tenant = true;
        } else if (strncmp(name, "dim_", 4) == 0) {
            char *end;
            unsigned long k = strtoul(name + 4, &end, 10);
            if (*end == '\0' && end != name + 4 && k < ndims && k < AN_TEMPLATE_MAX_DIMENSIONS) {
                out->dim_col[k] = c;
                out->ndims_found++;
            }
        }
    }
}

typedef struct described {
    bool value_ok, has_value, has_bucket, bucket_ok;
    size_t dims;
    char value_type[64], bucket_type[64];
} described;

static an_status on_column(void *ud, const an_ch_row *row, an_error *err)
{
    (void)err;
    described *d = ud;
    if (row->ncols < 2 || !row->fields[0] || !row->fields[1])
        return AN_OK;
    const char *name = row->fields[0], *type = row->fields[1];
    if (strcmp(name, "value") == 0) {
        d->has_value = true;
        d->value_ok = metrics_template_numeric_type(type);
        snprintf(d->value_type, sizeof(d->value_type), "%s", type);
    } else if (strcmp(name, "bucket") == 0) {
        d->has_bucket = true;
        d->bucket_ok = strncmp(type, "DateTime", 8) == 0;
        snprintf(d->bucket_type, sizeof(d->bucket_type), "%s", type);
    } else if (strncmp(name, "dim_", 4) == 0) {
        d->dims++;
    }
    return AN_OK;
}

an_status metrics_template_describe(an_ch *reader, const metric_def *d, an_error *err)
{
    unsigned used = 0;
    an_status s = an_template_scan(d->query, strlen(d->query), &used, err);
    if (s != AN_OK)
        return s;
    /* Sample parameters: a day of data, the materialized dimensions (or
     * one), one filter. */
    char dim[] = "event_name";
    char *one[] = {dim};
    an_template_value v = {.kind = AN_TEMPLATE_STRING, .s = (char *)"x"};
    an_template_filter f = {
        .field = (char *)"event_name", .op = AN_TEMPLATE_EQ, .values = &v, .nvalues = 1};
    int64_t now = an_time_now_ms();
    an_template_params p = {.has_range = true, .from_ms = now - AN_TIME_MS_PER_DAY, .to_ms = now};
    if (used & AN_TEMPLATE_USES_BUCKET)
        p.granularity = d->schedule ? d->mat.granularity : AN_TEMPLATE_DAY;
    if (used & AN_TEMPLATE_USES_DIMENSIONS) {
        p.dimensions = d->schedule && d->mat.ndimensions ? d->mat.dimensions : one;
        p.ndimensions = d->schedule && d->mat.ndimensions ? d->mat.ndimensions : 1;
    }
    if (used & AN_TEMPLATE_USES_FILTERS) {
        p.filters = &f;
        p.nfilters = 1;
    }
    an_template_scope scope = {.tenant_id = d->tenant_id, .all_tenants = d->tenant_id == NULL};
    an_buf sql = AN_BUF_INIT;
    an_buf_adds(&sql, "DESCRIBE TABLE (");
    if ((s = an_template_bind(d->query, strlen(d->query), &p, &scope, &sql, err)) != AN_OK) {
        an_buf_free(&sql);
        return s;
    }
    an_buf_addc(&sql, ')');
    described got = {0};
    an_error e;
    an_error_clear(&e);
    s = an_ch_query(reader, an_buf_str(&sql), NULL, on_column, &got, &e);
    an_buf_free(&sql);
    if (s == AN_INVALID_ARGUMENT || s == AN_NOT_FOUND || s == AN_PERMISSION_DENIED)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query", "query: ClickHouse refuses it: %s",
                              e.message);
    if (s != AN_OK)
        return an_error_set(err, s, "checking the template: %s", e.message);
    if (!got.has_value)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                              "query: the template must return a column named value");
    if (!got.value_ok)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                              "query: the value column must be a number, not %s", got.value_type);
    if ((used & AN_TEMPLATE_USES_BUCKET) && !got.has_bucket)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                              "query: a template with {{bucket}} must return it as a column named "
                              "bucket ({{bucket}} AS bucket)");
    if (got.has_bucket && !got.bucket_ok)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                              "query: the bucket column must be a DateTime ({{bucket}}), not %s",
                              got.bucket_type);
    if (got.dims != p.ndimensions)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                              "query: the template must return {{dimensions}} as columns (put "
                              "{{dimensions}} in its SELECT list)");
    return AN_OK;
}
