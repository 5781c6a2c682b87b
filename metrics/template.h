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
#include "metrics/metric.h"

/* AN_INVALID_ARGUMENT (field "query") when ClickHouse refuses the bound
 * template or its result lacks `value` (a number), `bucket` (a DateTime,
 * with {{bucket}}) or the dimension columns (with {{dimensions}}).
 * reader: a client of the readonly reader user. */
an_status metrics_template_describe(an_ch *reader, const metric_def *d, an_error *err);

/* True for ClickHouse number types, also Nullable ones. */
bool metrics_template_numeric_type(const char *type);

#endif
