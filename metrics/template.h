/*
 * template.h - what a metric's template must give, checked when it is
 * saved: beyond common/template's checker (metric.c), the template is
 * expanded with sample parameters, bound to the owner's tenant and described
 * by ClickHouse as the reader (DESCRIBE TABLE (...): analysed, not run), so
 * unknown columns and functions and a missing `value` column are refused at
 * create and update instead of at the first query.
 */
#ifndef METRICS_TEMPLATE_H
#define METRICS_TEMPLATE_H

#include "common/ch.h"
#include "common/status.h"
#include "common/template.h"
#include "metrics/metric.h"

#include <stdbool.h>
#include <stddef.h>

/* AN_INVALID_ARGUMENT (field "query") when ClickHouse refuses the bound
 * template or its result lacks `value` (a number), `bucket` (a DateTime,
 * with {{bucket}}) or the dimension columns (with {{dimensions}}).
 * reader: a client of the readonly reader user. */
an_status metrics_template_describe(an_ch *reader, const metric_def *d, an_error *err);

/* True for ClickHouse number types, also Nullable ones. */
bool metrics_template_numeric_type(const char *type);

/* Where a template's result has its named columns. */
typedef struct metrics_result_columns {
    bool has_value, has_bucket, has_tenant;
    size_t value_col, bucket_col, tenant_col; /* valid when has_* */
    /* dim_<k> for k < ndims; ndims_found counts the dim_<k> columns seen
     * (a name given twice counts twice), a missing one leaves dim_col[k] 0 */
    size_t dim_col[AN_TEMPLATE_MAX_DIMENSIONS];
    size_t ndims_found;
} metrics_result_columns;

/* Locate value, bucket, AN_TEMPLATE_TENANT_ALIAS and dim_0..dim_<ndims-1>
 * among row's column names (a name given twice: its last column). Other
 * columns, and dim_<k> with k >= ndims, are ignored. The callers check what
 * they need and word the errors. */
void metrics_template_locate_columns(const an_ch_row *row, size_t ndims,
                                     metrics_result_columns *out);

#endif
