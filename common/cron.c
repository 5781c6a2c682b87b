#include "common/cron.h"

#include "common/timeutil.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* ---- parsing ------------------------------------------------------------ */

typedef struct field_spec {
    const char *name;         /* for error messages and err->field */
    int min, max;             /* accepted numeric values */
    const char *const *names; /* symbolic values for min, min+1, ...; NULL: none */
} field_spec;

static const char *const month_names[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL",
                                          "AUG", "SEP", "OCT", "NOV", "DEC", NULL};
static const char *const dow_names[] = {"SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT", NULL};

static const field_spec specs[5] = {
    {"minute", 0, 59, NULL},          {"hour", 0, 23, NULL},
    {"day-of-month", 1, 31, NULL},    {"month", 1, 12, month_names},
    {"day-of-week", 0, 7, dow_names},
};

static const struct {
    const char *name;
    const char *expr;
} macros[] = {
    {"@yearly", "0 0 1 1 *"}, {"@annually", "0 0 1 1 *"}, {"@monthly", "0 0 1 * *"},
    {"@weekly", "0 0 * * 0"}, {"@daily", "0 0 * * *"},    {"@midnight", "0 0 * * *"},
    {"@hourly", "0 * * * *"},
};

static an_status field_error(an_error *err, const field_spec *f, const char *text, size_t len,
                             const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static an_status field_error(an_error *err, const field_spec *f, const char *text, size_t len,
                             const char *fmt, ...)
{
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return an_error_field(err, AN_INVALID_ARGUMENT, f->name, "cron %s field '%.*s': %s", f->name,
                          (int)(len > 64 ? 64 : len), text, what);
}

/* A number or a name at *p (advanced past it); -1 when there is neither. */
static int read_value(const field_spec *f, const char **p, const char *end)
{
    const char *s = *p;
    if (s < end && isdigit((unsigned char)*s)) {
        int v = 0, n = 0;
        while (s < end && isdigit((unsigned char)*s)) {
            if (++n > 3)
                return -2; /* absurdly long: out of range anyway */
            v = v * 10 + (*s++ - '0');
        }
        *p = s;
        return v;
    }
    if (f->names && end - s >= 3) {
        for (int i = 0; f->names[i]; i++) {
            if (strncasecmp(s, f->names[i], 3) == 0 &&
                (end - s == 3 || !isalpha((unsigned char)s[3]))) {
                *p = s + 3;
                return f->min + i;
            }
        }
    }
    return -1;
}

/* One field of text[0..len) into a bitmask. */
static an_status parse_field(const field_spec *f, const char *text, size_t len, uint64_t *bits,
                             bool *star, an_error *err)
{
    const char *p = text, *end = text + len;
    uint64_t mask = 0;
    *star = len > 0 && text[0] == '*';
    for (;;) {
        int lo, hi, step = 1;
        bool range = false;
        if (p < end && *p == '*') {
            p++;
            lo = f->min;
            hi = f->max;
            range = true;
        } else {
            lo = read_value(f, &p, end);
            if (lo == -1)
                return field_error(err, f, text, len, "%s",
                                   p < end && *p != ',' ? "expected a number, a name or '*'"
                                                        : "empty list item");
            if (lo < f->min || lo > f->max)
                return field_error(err, f, text, len, "value out of range %d-%d", f->min, f->max);
            hi = lo;
            if (p < end && *p == '-') {
                p++;
                hi = read_value(f, &p, end);
                if (hi == -1)
                    return field_error(err, f, text, len, "%s", "expected a value after '-'");
                if (hi < f->min || hi > f->max)
                    return field_error(err, f, text, len, "range end out of range %d-%d", f->min,
                                       f->max);
                if (hi < lo)
                    return field_error(err, f, text, len, "%s",
                                       "range goes backwards (no wrap-around)");
                range = true;
            }
        }
        if (p < end && *p == '/') {
            p++;
            if (p >= end || !isdigit((unsigned char)*p))
                return field_error(err, f, text, len, "%s", "expected a step after '/'");
            step = 0;
            int n = 0;
            while (p < end && isdigit((unsigned char)*p)) {
                if (++n > 3)
                    return field_error(err, f, text, len, "%s", "step too large");
                step = step * 10 + (*p++ - '0');
            }
            if (step == 0)
                return field_error(err, f, text, len, "%s", "step must be at least 1");
            if (!range)
                hi = f->max; /* N/S means N-max/S */
        }
        for (int v = lo; v <= hi; v += step)
            mask |= 1ULL << v;
        if (p == end)
            break;
        if (*p != ',')
            return field_error(err, f, text, len, "unexpected character '%c'", *p);
        p++;
        if (p == end)
            return field_error(err, f, text, len, "%s", "empty list item");
    }
    *bits = mask;
    return AN_OK;
}

an_status an_cron_parse(const char *expr, an_cron *out, an_error *err)
{
    if (!expr)
        return an_error_field(err, AN_INVALID_ARGUMENT, "expression", "cron: missing expression");
    while (*expr == ' ' || *expr == '\t')
        expr++;
    size_t elen = strlen(expr);
    while (elen > 0 && (expr[elen - 1] == ' ' || expr[elen - 1] == '\t'))
        elen--;
    if (elen > 0 && expr[0] == '@') {
        for (size_t i = 0; i < sizeof(macros) / sizeof(macros[0]); i++)
            if (strlen(macros[i].name) == elen && strncasecmp(expr, macros[i].name, elen) == 0)
                return an_cron_parse(macros[i].expr, out, err);
        return an_error_field(err, AN_INVALID_ARGUMENT, "expression",
                              "cron: unknown macro '%.*s' (known: @yearly @annually @monthly "
                              "@weekly @daily @midnight @hourly)",
                              (int)(elen > 32 ? 32 : elen), expr);
    }

    const char *start[6];
    size_t len[6];
    int n = 0;
    for (size_t i = 0; i < elen;) {
        if (expr[i] == ' ' || expr[i] == '\t') {
            i++;
            continue;
        }
        size_t j = i;
        while (j < elen && expr[j] != ' ' && expr[j] != '\t')
            j++;
        if (n < 6) {
            start[n] = expr + i;
            len[n] = j - i;
        }
        n++;
        i = j;
    }
    if (n != 5)
        return an_error_field(err, AN_INVALID_ARGUMENT, "expression",
                              "cron: expected 5 fields (minute hour day-of-month month "
                              "day-of-week), got %d in '%.*s'",
                              n, (int)(elen > 64 ? 64 : elen), expr);

    an_cron c;
    memset(&c, 0, sizeof(c));
    uint64_t bits[5];
    bool star[5];
    for (int i = 0; i < 5; i++) {
        an_status s = parse_field(&specs[i], start[i], len[i], &bits[i], &star[i], err);
        if (s != AN_OK)
            return s;
    }
    c.minutes = bits[0];
    c.hours = (uint32_t)bits[1];
    c.days = (uint32_t)bits[2];
    c.months = (uint16_t)bits[3];
    c.weekdays = (uint8_t)((bits[4] | bits[4] >> 7) & 0x7f); /* 7 is Sunday too */
    c.dom_star = star[2];
    c.dow_star = star[4];

    /* The calendar repeats every 400 years, so a schedule that does not fire
     * within one cycle never does. */
    int64_t next;
    if (an_cron_next(&c, 0, &next, NULL) != AN_OK)
        return an_error_field(err, AN_INVALID_ARGUMENT, "day-of-month",
                              "cron: '%.*s' never fires (no such day in the selected months)",
                              (int)(elen > 64 ? 64 : elen), expr);
    *out = c;
    return AN_OK;
}

/* ---- matching ----------------------------------------------------------- */

static bool day_matches(const an_cron *c, int64_t days, int mday)
{
    bool dom = c->days >> mday & 1;
    bool dow = c->weekdays >> an_time_weekday(days) & 1;
    return (c->dom_star || c->dow_star) ? dom && dow : dom || dow;
}

bool an_cron_matches(const an_cron *c, int64_t epoch_s)
{
    int64_t days = an_time_floor_div(epoch_s, 86400);
    int64_t sod = epoch_s - days * 86400;
    int month, mday;
    an_time_civil_from_days(days, NULL, &month, &mday);
    return (c->months >> month & 1) && day_matches(c, days, mday) &&
           (c->hours >> (sod / 3600) & 1) && (c->minutes >> (sod / 60 % 60) & 1);
}

/* First set bit at or above from, or -1. */
static int next_bit(uint64_t bits, int from, int max)
{
    for (int v = from; v <= max; v++)
        if (bits >> v & 1)
            return v;
    return -1;
}

an_status an_cron_next(const an_cron *c, int64_t after_s, int64_t *next_s, an_error *err)
{
    const int64_t min_s = AN_TIME_MIN_MS / 1000, max_s = AN_TIME_MAX_MS / 1000;
    if (after_s < min_s || after_s > max_s)
        return an_error_set(err, AN_INVALID_ARGUMENT,
                            "cron: time %lld s is outside years 0000..9999", (long long)after_s);
    /* the next whole minute strictly after */
    int64_t t = an_time_floor_div(after_s, 60) * 60 + 60;
    int64_t days = an_time_floor_div(t, 86400);
    int64_t sod = t - days * 86400;
    int hour = (int)(sod / 3600), minute = (int)(sod / 60 % 60);
    const int64_t limit = days + 146097; /* one Gregorian cycle: 400 years */
    int64_t year;
    int month, mday;
    an_time_civil_from_days(days, &year, &month, &mday);

    while (days <= limit) {
        if (!(c->months >> month & 1)) {
            /* jump to the first day of the next month */
            year += month == 12;
            month = month == 12 ? 1 : month + 1;
            mday = 1;
            days = an_time_days_from_civil(year, month, 1);
            hour = minute = 0;
            continue;
        }
        if (!day_matches(c, days, mday)) {
            an_time_civil_from_days(++days, &year, &month, &mday);
            hour = minute = 0;
            continue;
        }
        int h = next_bit(c->hours, hour, 23);
        if (h < 0) {
            an_time_civil_from_days(++days, &year, &month, &mday);
            hour = minute = 0;
            continue;
        }
        if (h != hour) {
            hour = h;
            minute = 0;
        }
        int m = next_bit(c->minutes, minute, 59);
        if (m < 0) {
            minute = 0;
            if (++hour > 23) {
                an_time_civil_from_days(++days, &year, &month, &mday);
                hour = 0;
            }
            continue;
        }
        int64_t r = days * 86400 + hour * 3600 + m * 60;
        if (r > max_s)
            break;
        *next_s = r;
        return AN_OK;
    }
    return an_error_set(err, AN_NOT_FOUND, "cron: no fire time within 400 years");
}
