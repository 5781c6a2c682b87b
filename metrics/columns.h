/*
 * columns.h - the materialized property columns of analytics.events, as
 * the metrics service knows them: read from system.columns at the first
 * query and again when older than ANALYTICS_METRICS_COLUMNS_REFRESH, so an
 * operator's ALTER TABLE ... ADD COLUMN (deploy/clickhouse/property-column.sh)
 * is used without a restart. A dimension or filter on properties.<path>
 * then reads the column instead of the two arrays (common/template.h,
 * an_template_column): same values, fewer bytes.
 */
#ifndef METRICS_COLUMNS_H
#define METRICS_COLUMNS_H

#include "common/prom.h"
#include "common/template.h"
#include "metrics/conn.h"

#include <stddef.h>
#include <stdint.h>

typedef struct metrics_columns metrics_columns;

/* refresh_ms 0: never read, no property column is used. gauge (may be
 * NULL) is set to the number of columns after each read. NULL when out of
 * memory. */
metrics_columns *metrics_columns_new(int64_t refresh_ms, an_prom_gauge *gauge);
void metrics_columns_free(metrics_columns *c);

/* A copy of the current list in *out (free() it; NULL when empty), read
 * again first when it is stale. A failed read keeps the last list (and
 * is logged): queries then use the arrays for paths it lacks. */
void metrics_columns_get(metrics_columns *c, metrics_conns *conns, an_template_column **out,
                         size_t *n);

/* Read the list again at the next metrics_columns_get (a query named a
 * column that is gone). */
void metrics_columns_invalidate(metrics_columns *c);

#endif
