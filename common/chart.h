/*
 * chart.h - charts as pictures (PNG), drawn with cairo, for e-mails and
 * reports: line, bar (grouped), pie, and big number.
 *
 *   const char *days[] = {"11-25", "11-26", "11-27"};
 *   double fr[] = {3, 5, 4}, de[] = {1, 2, 6};
 *   an_chart_series s[] = {{"FR", fr, 3}, {"DE", de, 3}};
 *   an_chart c = {.type = AN_CHART_LINE, .title = "Signups", .unit = "users",
 *                 .labels = days, .nlabels = 3, .series = s, .nseries = 2};
 *   an_buf png; an_buf_init(&png);
 *   an_chart_png(&c, 800, 400, &png, &err);   // png.data, png.len: a PNG file
 *
 * Layout: title (and subtitle) at the top; line and bar charts have a y axis
 * with "nice" ticks (1, 2, 2.5, 5 x 10^k) and horizontal grid lines, x labels
 * under the plot (thinned out when they would overlap), and a legend on the
 * right when there is more than one series; a pie has its legend (name,
 * value, share) on the right; a big number shows the value, and with a
 * previous value the change in percent (green up, red down). Series beyond
 * the palette's 10 colours reuse colours; at most 12 legend entries are
 * listed (the rest summed up as "+N more"). Fonts: cairo's "sans-serif"
 * toy font, so no font files are needed beyond what fontconfig finds.
 *
 * Thread-safety: an_chart_png may run concurrently on any number of threads
 * (each call has its own surface).
 */
#ifndef AN_CHART_H
#define AN_CHART_H

#include "common/buf.h"
#include "common/status.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum an_chart_type {
    AN_CHART_LINE = 0,
    AN_CHART_BAR,
    AN_CHART_PIE,
    AN_CHART_BIGNUMBER,
} an_chart_type;

typedef struct an_chart_series {
    const char *name;     /* legend text; NULL: "" */
    const double *values; /* n values, one per label (NaN: no point) */
    size_t n;
} an_chart_series;

/* Everything is borrowed for the duration of the call. */
typedef struct an_chart {
    an_chart_type type;
    const char *title;    /* may be NULL */
    const char *subtitle; /* may be NULL, e.g. the time range */
    const char *unit;     /* y axis / value unit; may be NULL */
    /* line, bar: x categories; pie: the slice names (series[0].values are their values) */
    const char *const *labels;
    size_t nlabels;
    const an_chart_series *series;
    size_t nseries;
    /* bignumber */
    double value;
    double previous;
    bool has_previous;
} an_chart;

#define AN_CHART_MIN_WIDTH  200
#define AN_CHART_MAX_WIDTH  4000
#define AN_CHART_MIN_HEIGHT 150
#define AN_CHART_MAX_HEIGHT 4000

/* Draw c on a width x height white canvas and append the PNG file to out
 * (the caller's buffer). AN_INVALID_ARGUMENT for a size out of bounds, an
 * unknown type, a series longer than the labels, or a pie with a negative
 * value; AN_INTERNAL when cairo fails. Empty data draws the frame with
 * "no data". */
an_status an_chart_png(const an_chart *c, int width, int height, an_buf *out, an_error *err);

/* Format v compactly for labels: 1234 -> "1,234", 1500000 -> "1.5M",
 * 0.25 -> "0.25". out gets at most n bytes (NUL included). */
void an_chart_format_number(double v, char *out, size_t n);

#endif
