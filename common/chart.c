/*
 * chart.c - see chart.h.
 */
#include "common/chart.h"

#include <cairo/cairo.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

static const double palette[10][3] = {
    {0.122, 0.467, 0.706}, {1.000, 0.498, 0.055}, {0.173, 0.627, 0.173}, {0.839, 0.153, 0.157},
    {0.580, 0.404, 0.741}, {0.549, 0.337, 0.294}, {0.890, 0.467, 0.761}, {0.498, 0.498, 0.498},
    {0.737, 0.741, 0.133}, {0.090, 0.745, 0.812},
};

#define LEGEND_MAX 12

static void color(cairo_t *cr, size_t i)
{
    const double *p = palette[i % 10];
    cairo_set_source_rgb(cr, p[0], p[1], p[2]);
}

static void group_thousands(long long v, char *out, size_t n)
{
    char digits[32];
    snprintf(digits, sizeof(digits), "%lld", v < 0 ? -v : v);
    size_t len = strlen(digits), o = 0;
    if (v < 0 && o + 1 < n)
        out[o++] = '-';
    for (size_t i = 0; i < len && o + 2 < n; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            out[o++] = ',';
        out[o++] = digits[i];
    }
    out[o] = 0;
}

void an_chart_format_number(double v, char *out, size_t n)
{
    double a = fabs(v);
    if (!isfinite(v))
        snprintf(out, n, "-");
    else if (a >= 1e9)
        snprintf(out, n, "%.3gB", v / 1e9);
    else if (a >= 1e6)
        snprintf(out, n, "%.3gM", v / 1e6);
    else if (a >= 1e5)
        snprintf(out, n, "%.4gk", v / 1e3);
    else if (a == floor(a))
        group_thousands((long long)v, out, n);
    else
        snprintf(out, n, "%.3g", v);
}

/* A "nice" step so that [lo, hi] splits into about `ticks` parts. */
static double nice_step(double span, int ticks)
{
    if (span <= 0)
        return 1;
    double raw = span / ticks;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    double nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
    return nf * mag;
}

static double text_width(cairo_t *cr, const char *s)
{
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    return e.x_advance;
}

static void text_at(cairo_t *cr, double x, double y, const char *s, double align)
{
    cairo_move_to(cr, x - text_width(cr, s) * align, y);
    cairo_show_text(cr, s);
}

/* A label cut to fit max_w pixels, ending in "..." when cut. */
static void fit(cairo_t *cr, const char *s, double max_w, char *out, size_t n)
{
    snprintf(out, n, "%s", s ? s : "");
    if (text_width(cr, out) <= max_w)
        return;
    size_t len = strlen(out);
    while (len > 0) {
        len--;
        while (len > 0 && ((unsigned char)out[len] & 0xC0) == 0x80)
            len--; /* cut at a UTF-8 character boundary */
        if (len + 4 > n)
            continue;
        memcpy(out + len, "...", 4);
        if (text_width(cr, out) <= max_w)
            return;
    }
    snprintf(out, n, "...");
}

static void header(cairo_t *cr, const an_chart *c, int w, double *top)
{
    double fs = w >= 600 ? 20 : 15;
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, fs);
    cairo_set_source_rgb(cr, 0.13, 0.13, 0.13);
    char buf[256];
    fit(cr, c->title ? c->title : "", w - 32, buf, sizeof(buf));
    text_at(cr, 16, 12 + fs, buf, 0);
    *top = 12 + fs + 8;
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    if (c->subtitle && *c->subtitle) {
        cairo_set_font_size(cr, fs * 0.62);
        cairo_set_source_rgb(cr, 0.42, 0.42, 0.42);
        fit(cr, c->subtitle, w - 32, buf, sizeof(buf));
        text_at(cr, 16, *top + fs * 0.62, buf, 0);
        *top += fs * 0.62 + 10;
    }
}

/* Legend entries (swatch + text) from x, top down; returns its width. */
static void legend(cairo_t *cr, double x, double y, double max_w, const char *const *names,
                   const double *vals, double total, size_t n, double fs)
{
    cairo_set_font_size(cr, fs);
    size_t shown = n > LEGEND_MAX ? LEGEND_MAX - 1 : n;
    for (size_t i = 0; i < shown; i++) {
        color(cr, i);
        cairo_rectangle(cr, x, y + i * (fs + 8) - fs + 2, fs - 2, fs - 2);
        cairo_fill(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        char line[256], num[32], buf[256];
        if (vals) {
            an_chart_format_number(vals[i], num, sizeof(num));
            snprintf(line, sizeof(line), "%s  %s (%.1f%%)", names[i] ? names[i] : "", num,
                     total > 0 ? vals[i] / total * 100 : 0);
        } else {
            snprintf(line, sizeof(line), "%s", names[i] ? names[i] : "");
        }
        fit(cr, line, max_w - fs - 4, buf, sizeof(buf));
        text_at(cr, x + fs + 4, y + i * (fs + 8), buf, 0);
    }
    if (n > shown) {
        char more[32];
        snprintf(more, sizeof(more), "+%zu more", n - shown);
        cairo_set_source_rgb(cr, 0.4, 0.4, 0.4);
        text_at(cr, x + fs + 4, y + shown * (fs + 8), more, 0);
    }
}

static void no_data(cairo_t *cr, int w, int h)
{
    cairo_set_font_size(cr, 16);
    cairo_set_source_rgb(cr, 0.5, 0.5, 0.5);
    text_at(cr, w / 2.0, h / 2.0, "no data", 0.5);
}

static void draw_xy(cairo_t *cr, const an_chart *c, int w, int h, double top)
{
    double fs = w >= 600 ? 12 : 10;
    cairo_set_font_size(cr, fs);
    size_t nl = c->nlabels;
    bool any = false;
    double lo = 0, hi = 0;
    for (size_t s = 0; s < c->nseries; s++)
        for (size_t i = 0; i < c->series[s].n; i++) {
            double v = c->series[s].values[i];
            if (!isfinite(v))
                continue;
            if (!any || v < lo)
                lo = any ? fmin(lo, v) : fmin(0, v);
            if (!any || v > hi)
                hi = any ? fmax(hi, v) : fmax(0, v);
            any = true;
        }
    if (!any || nl == 0) {
        no_data(cr, w, h);
        return;
    }
    if (hi == lo)
        hi = lo + 1;
    double step = nice_step(hi - lo, 5);
    double ymin = floor(lo / step) * step, ymax = ceil(hi / step) * step;
    /* left margin: widest tick label */
    double lw = 0;
    char num[32];
    for (double t = ymin; t <= ymax + step / 2; t += step) {
        an_chart_format_number(t, num, sizeof(num));
        lw = fmax(lw, text_width(cr, num));
    }
    bool with_legend = c->nseries > 1;
    double legend_w = with_legend ? fmin(w * 0.28, 200) : 0;
    double x0 = 16 + lw + 8 + (c->unit && *c->unit ? fs + 6 : 0);
    double x1 = w - 16 - legend_w;
    double y0 = h - 16 - fs - 8; /* plot bottom */
    double y1 = top + 8;         /* plot top */
    if (c->unit && *c->unit) {
        cairo_save(cr);
        cairo_set_source_rgb(cr, 0.35, 0.35, 0.35);
        cairo_move_to(cr, 16 + fs, (y0 + y1) / 2 + text_width(cr, c->unit) / 2);
        cairo_rotate(cr, -M_PI / 2);
        cairo_show_text(cr, c->unit);
        cairo_restore(cr);
    }
    /* grid and y ticks */
    cairo_set_line_width(cr, 1);
    for (double t = ymin; t <= ymax + step / 2; t += step) {
        double y = y0 - (t - ymin) / (ymax - ymin) * (y0 - y1);
        cairo_set_source_rgb(cr, 0.88, 0.88, 0.88);
        cairo_move_to(cr, x0, floor(y) + 0.5);
        cairo_line_to(cr, x1, floor(y) + 0.5);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
        an_chart_format_number(fabs(t) < step / 1e6 ? 0 : t, num, sizeof(num));
        text_at(cr, x0 - 6, y + fs / 3, num, 1);
    }
    /* axes */
    cairo_set_source_rgb(cr, 0.25, 0.25, 0.25);
    cairo_move_to(cr, floor(x0) + 0.5, y1);
    cairo_line_to(cr, floor(x0) + 0.5, floor(y0) + 0.5);
    cairo_line_to(cr, x1, floor(y0) + 0.5);
    cairo_stroke(cr);
    /* x labels, thinned out so they do not overlap */
    double slot = (x1 - x0) / nl;
    double maxlw = 0;
    for (size_t i = 0; i < nl; i++)
        maxlw = fmax(maxlw, text_width(cr, c->labels[i] ? c->labels[i] : ""));
    size_t every = 1;
    while (every < nl && maxlw + 8 > slot * every)
        every++;
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    for (size_t i = 0; i < nl; i += every) {
        double x = x0 + slot * (i + 0.5);
        text_at(cr, x, y0 + fs + 6, c->labels[i] ? c->labels[i] : "", 0.5);
        cairo_move_to(cr, floor(x) + 0.5, y0);
        cairo_line_to(cr, floor(x) + 0.5, y0 + 4);
        cairo_stroke(cr);
    }
    double zero_y = y0 - (0 - ymin) / (ymax - ymin) * (y0 - y1);
    size_t ns = c->nseries;
    for (size_t s = 0; s < ns; s++) {
        const an_chart_series *se = &c->series[s];
        color(cr, s);
        if (c->type == AN_CHART_BAR) {
            double group = slot * 0.8, bw = group / ns;
            for (size_t i = 0; i < se->n && i < nl; i++) {
                if (!isfinite(se->values[i]))
                    continue;
                double y = y0 - (se->values[i] - ymin) / (ymax - ymin) * (y0 - y1);
                double x = x0 + slot * i + slot * 0.1 + bw * s;
                cairo_rectangle(cr, x, fmin(y, zero_y), fmax(bw - 1, 1), fabs(zero_y - y));
                cairo_fill(cr);
            }
        } else {
            cairo_set_line_width(cr, 2.5);
            bool pen = false;
            for (size_t i = 0; i < se->n && i < nl; i++) {
                if (!isfinite(se->values[i])) {
                    pen = false;
                    continue;
                }
                double x = x0 + slot * (i + 0.5);
                double y = y0 - (se->values[i] - ymin) / (ymax - ymin) * (y0 - y1);
                if (pen)
                    cairo_line_to(cr, x, y);
                else
                    cairo_move_to(cr, x, y);
                pen = true;
            }
            cairo_stroke(cr);
            if (nl <= 40)
                for (size_t i = 0; i < se->n && i < nl; i++) {
                    if (!isfinite(se->values[i]))
                        continue;
                    double x = x0 + slot * (i + 0.5);
                    double y = y0 - (se->values[i] - ymin) / (ymax - ymin) * (y0 - y1);
                    cairo_arc(cr, x, y, 3, 0, 2 * M_PI);
                    cairo_fill(cr);
                }
        }
    }
    if (with_legend) {
        const char *names[LEGEND_MAX] = {0};
        size_t n = ns > LEGEND_MAX ? LEGEND_MAX : ns;
        for (size_t i = 0; i < n; i++)
            names[i] = c->series[i].name;
        legend(cr, x1 + 16, y1 + fs, legend_w - 16, names, NULL, 0, ns, fs);
    }
}

static void draw_pie(cairo_t *cr, const an_chart *c, int w, int h, double top)
{
    const an_chart_series *se = c->nseries ? &c->series[0] : NULL;
    size_t n = se ? se->n : 0;
    double total = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(se->values[i]))
            total += se->values[i];
    if (n == 0 || total <= 0) {
        no_data(cr, w, h);
        return;
    }
    double legend_w = fmin(w * 0.45, 320);
    double r = fmin((w - legend_w - 48) / 2.0, (h - top - 24) / 2.0);
    double cx = 24 + r, cy = top + 8 + r;
    double a = -M_PI / 2;
    for (size_t i = 0; i < n; i++) {
        double v = isfinite(se->values[i]) ? se->values[i] : 0;
        double da = v / total * 2 * M_PI;
        color(cr, i < LEGEND_MAX - 1 || n <= LEGEND_MAX ? i : LEGEND_MAX - 1);
        cairo_move_to(cr, cx, cy);
        cairo_arc(cr, cx, cy, r, a, a + da);
        cairo_close_path(cr);
        cairo_fill_preserve(cr);
        cairo_set_source_rgb(cr, 1, 1, 1);
        cairo_set_line_width(cr, 1.5);
        cairo_stroke(cr);
        a += da;
    }
    double fs = w >= 600 ? 13 : 10;
    const char *names[LEGEND_MAX] = {0};
    double vals[LEGEND_MAX] = {0};
    size_t k = n > LEGEND_MAX ? LEGEND_MAX : n;
    for (size_t i = 0; i < k; i++) {
        names[i] = i < c->nlabels ? c->labels[i] : "";
        vals[i] = se->values[i];
    }
    legend(cr, w - legend_w, top + 8 + fs, legend_w - 16, names, vals, total, n, fs);
}

static void draw_bignumber(cairo_t *cr, const an_chart *c, int w, int h, double top)
{
    char num[48], line[160];
    /* the big number in full (grouped) when it is whole and fits */
    if (c->value == floor(c->value) && fabs(c->value) < 1e12)
        group_thousands((long long)c->value, num, sizeof(num));
    else
        an_chart_format_number(c->value, num, sizeof(num));
    double fs = fmin(h * 0.28, w / 8.0);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, fs);
    cairo_set_source_rgb(cr, 0.13, 0.13, 0.13);
    double cy = top + (h - top) * 0.5;
    text_at(cr, w / 2.0, cy, num, 0.5);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    double sfs = fmax(fs * 0.22, 12);
    cairo_set_font_size(cr, sfs);
    if (c->unit && *c->unit) {
        cairo_set_source_rgb(cr, 0.4, 0.4, 0.4);
        text_at(cr, w / 2.0, cy + sfs * 1.9, c->unit, 0.5);
    }
    if (c->has_previous) {
        char prev[48];
        an_chart_format_number(c->previous, prev, sizeof(prev));
        if (c->previous != 0) {
            double pct = (c->value - c->previous) / fabs(c->previous) * 100;
            snprintf(line, sizeof(line), "%s%.*f%%  vs %s in the previous period",
                     pct >= 0 ? "+" : "-", fabs(pct) < 1 ? 2 : 1, fabs(pct), prev);
            if (pct >= 0)
                cairo_set_source_rgb(cr, 0.1, 0.55, 0.2);
            else
                cairo_set_source_rgb(cr, 0.8, 0.15, 0.15);
        } else {
            snprintf(line, sizeof(line), "vs %s in the previous period", prev);
            cairo_set_source_rgb(cr, 0.4, 0.4, 0.4);
        }
        text_at(cr, w / 2.0, cy + sfs * 3.6, line, 0.5);
    }
}

static cairo_status_t write_png(void *closure, const unsigned char *data, unsigned int len)
{
    an_buf_add(closure, data, len);
    return CAIRO_STATUS_SUCCESS;
}

an_status an_chart_png(const an_chart *c, int width, int height, an_buf *out, an_error *err)
{
    if (width < AN_CHART_MIN_WIDTH || width > AN_CHART_MAX_WIDTH || height < AN_CHART_MIN_HEIGHT ||
        height > AN_CHART_MAX_HEIGHT)
        return an_error_set(err, AN_INVALID_ARGUMENT, "chart size %dx%d out of bounds", width,
                            height);
    if (c->type > AN_CHART_BIGNUMBER)
        return an_error_set(err, AN_INVALID_ARGUMENT, "unknown chart type %d", (int)c->type);
    for (size_t s = 0; s < c->nseries; s++) {
        if (c->series[s].n > c->nlabels && c->type != AN_CHART_BIGNUMBER)
            return an_error_set(err, AN_INVALID_ARGUMENT,
                                "series %zu has %zu values for %zu labels", s, c->series[s].n,
                                c->nlabels);
        if (c->type == AN_CHART_PIE)
            for (size_t i = 0; i < c->series[s].n; i++)
                if (c->series[s].values[i] < 0)
                    return an_error_set(err, AN_INVALID_ARGUMENT, "a pie slice is negative");
    }
    cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    if (cairo_surface_status(sf) != CAIRO_STATUS_SUCCESS) {
        cairo_surface_destroy(sf);
        return an_error_set(err, AN_INTERNAL, "cairo surface: %s",
                            cairo_status_to_string(cairo_surface_status(sf)));
    }
    cairo_t *cr = cairo_create(sf);
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    double top;
    header(cr, c, width, &top);
    switch (c->type) {
    case AN_CHART_LINE:
    case AN_CHART_BAR:
        draw_xy(cr, c, width, height, top);
        break;
    case AN_CHART_PIE:
        draw_pie(cr, c, width, height, top);
        break;
    case AN_CHART_BIGNUMBER:
        draw_bignumber(cr, c, width, height, top);
        break;
    }
    cairo_status_t cs = cairo_status(cr);
    cairo_destroy(cr);
    size_t before = out->len;
    if (cs == CAIRO_STATUS_SUCCESS)
        cs = cairo_surface_write_to_png_stream(sf, write_png, out);
    cairo_surface_destroy(sf);
    if (cs != CAIRO_STATUS_SUCCESS) {
        an_buf_setlen(out, before);
        return an_error_set(err, AN_INTERNAL, "cairo: %s", cairo_status_to_string(cs));
    }
    return AN_OK;
}
