#include "common/timeutil.h"

#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* ---- calendar ----------------------------------------------------------- */

bool an_time_is_leap(int64_t y)
{
    return y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
}

int an_time_days_in_month(int64_t y, int m)
{
    static const int dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m < 1 || m > 12)
        return 0;
    return m == 2 && an_time_is_leap(y) ? 29 : dim[m - 1];
}

int64_t an_time_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q;
}

int64_t an_time_floor_mod(int64_t a, int64_t b)
{
    return a - an_time_floor_div(a, b) * b;
}

/* Hinnant, "chrono-Compatible Low-Level Date Algorithms": years start on
 * March 1 so the leap day is the last day of its year; 400-year eras. */
int64_t an_time_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = an_time_floor_div(y, 400);
    int64_t yoe = y - era * 400;                                   /* [0, 399] */
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

void an_time_civil_from_days(int64_t z, int64_t *year, int *month, int *day)
{
    z += 719468;
    int64_t era = an_time_floor_div(z, 146097);
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int d = (int)(doy - (153 * mp + 2) / 5 + 1);
    int m = (int)(mp < 10 ? mp + 3 : mp - 9);
    if (year)
        *year = yoe + era * 400 + (m <= 2);
    if (month)
        *month = m;
    if (day)
        *day = d;
}

int an_time_weekday(int64_t days)
{
    /* 1970-01-01 was a Thursday */
    return (int)an_time_floor_mod(days + 4, 7);
}

/* ---- clocks ------------------------------------------------------------- */

static int64_t clock_ms(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t an_time_now_ms(void)
{
    return clock_ms(CLOCK_REALTIME);
}

int64_t an_time_mono_ms(void)
{
    return clock_ms(CLOCK_MONOTONIC);
}

double an_time_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* ---- parsing ------------------------------------------------------------ */

typedef struct cursor {
    const char *s;
    size_t len, pos;
} cursor;

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* Exactly n digits, or -1. */
static int digits(cursor *c, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (c->pos >= c->len || !is_digit(c->s[c->pos]))
            return -1;
        v = v * 10 + (c->s[c->pos++] - '0');
    }
    return v;
}

static bool accept(cursor *c, char ch)
{
    if (c->pos < c->len && c->s[c->pos] == ch) {
        c->pos++;
        return true;
    }
    return false;
}

static an_status bad(an_error *err, const cursor *c, const char *what)
{
    return an_error_set(err, AN_INVALID_ARGUMENT, "timestamp '%.*s': %s at offset %zu",
                        (int)(c->len > 64 ? 64 : c->len), c->s, what, c->pos);
}

/* YYYY-MM-DD into a day number; validates the calendar date. */
static an_status parse_date(cursor *c, int64_t *days, an_error *err)
{
    int y = digits(c, 4);
    if (y < 0)
        return bad(err, c, "expected a 4-digit year");
    if (!accept(c, '-'))
        return bad(err, c, "expected '-' after the year");
    int m = digits(c, 2);
    if (m < 0)
        return bad(err, c, "expected a 2-digit month");
    if (m < 1 || m > 12)
        return bad(err, c, "month must be 01..12");
    if (!accept(c, '-'))
        return bad(err, c, "expected '-' after the month");
    int d = digits(c, 2);
    if (d < 0)
        return bad(err, c, "expected a 2-digit day");
    if (d < 1 || d > an_time_days_in_month(y, m))
        return bad(err, c, "no such day in that month");
    *days = an_time_days_from_civil(y, m, d);
    return AN_OK;
}

/* HH:MM:SS into ms of the day. */
static an_status parse_hms(cursor *c, int64_t *ms, an_error *err)
{
    int h = digits(c, 2);
    if (h < 0)
        return bad(err, c, "expected a 2-digit hour");
    if (h > 23)
        return bad(err, c, "hour must be 00..23");
    if (!accept(c, ':'))
        return bad(err, c, "expected ':' after the hour");
    int mi = digits(c, 2);
    if (mi < 0)
        return bad(err, c, "expected 2-digit minutes");
    if (mi > 59)
        return bad(err, c, "minutes must be 00..59");
    if (!accept(c, ':'))
        return bad(err, c, "expected ':' and seconds after the minutes");
    int sec = digits(c, 2);
    if (sec < 0)
        return bad(err, c, "expected 2-digit seconds");
    if (sec > 59)
        return bad(err, c, "seconds must be 00..59 (leap seconds are not supported)");
    *ms = ((int64_t)h * 3600 + mi * 60 + sec) * 1000;
    return AN_OK;
}

static an_status parse(const char *s, size_t len, bool date_alone, int64_t *ms, an_error *err)
{
    cursor c = {s ? s : "", s ? len : 0, 0};
    int64_t days;
    an_status st = parse_date(&c, &days, err);
    if (st != AN_OK)
        return st;
    int64_t t = days * AN_TIME_MS_PER_DAY;
    if (c.pos == c.len && date_alone) {
        *ms = t; /* date alone: midnight UTC; always within range */
        return AN_OK;
    }
    if (c.pos == c.len)
        return bad(err, &c, "a date alone: expected 'T', the time and its offset");
    if (!accept(&c, 'T') && !accept(&c, 't') && !accept(&c, ' '))
        return bad(err, &c, "expected 'T' between date and time");
    int64_t tod;
    if ((st = parse_hms(&c, &tod, err)) != AN_OK)
        return st;
    t += tod;
    if (accept(&c, '.')) {
        int n = 0, frac = 0;
        while (c.pos < c.len && is_digit(c.s[c.pos])) {
            if (++n > 9)
                return bad(err, &c, "more than 9 fractional digits");
            if (n <= 3)
                frac = frac * 10 + (c.s[c.pos] - '0');
            c.pos++;
        }
        if (n == 0)
            return bad(err, &c, "expected digits after '.'");
        for (int i = n; i < 3; i++)
            frac *= 10;
        t += frac;
    }
    if (c.pos == c.len)
        return bad(err, &c, "missing UTC offset (Z or +HH:MM)");
    if (accept(&c, 'Z') || accept(&c, 'z')) {
        /* UTC */
    } else if (c.s[c.pos] == '+' || c.s[c.pos] == '-') {
        int sign = c.s[c.pos++] == '-' ? -1 : 1;
        int oh = digits(&c, 2);
        if (oh < 0)
            return bad(err, &c, "expected a 2-digit offset hour");
        if (oh > 23)
            return bad(err, &c, "offset hour must be 00..23");
        accept(&c, ':'); /* +HH:MM and +HHMM */
        int om = digits(&c, 2);
        if (om < 0)
            return bad(err, &c, "expected 2-digit offset minutes");
        if (om > 59)
            return bad(err, &c, "offset minutes must be 00..59");
        /* local = UTC + offset, so UTC = local - offset */
        t -= sign * ((int64_t)oh * 3600 + om * 60) * 1000;
    } else {
        return bad(err, &c, "expected 'Z' or an offset like +02:00");
    }
    if (c.pos != c.len)
        return bad(err, &c, "unexpected text after the offset");
    if (t < AN_TIME_MIN_MS || t > AN_TIME_MAX_MS)
        return bad(err, &c, "outside years 0000..9999 once converted to UTC");
    *ms = t;
    return AN_OK;
}

an_status an_time_parse_n(const char *s, size_t len, int64_t *ms, an_error *err)
{
    return parse(s, len, true, ms, err);
}

an_status an_time_parse_instant_n(const char *s, size_t len, int64_t *ms, an_error *err)
{
    return parse(s, len, false, ms, err);
}

an_status an_time_parse(const char *s, int64_t *ms, an_error *err)
{
    return an_time_parse_n(s, s ? strlen(s) : 0, ms, err);
}

an_status an_time_parse_ch(const char *s, int64_t *ms, an_error *err)
{
    size_t len = s ? strlen(s) : 0;
    if (len == 10 && strcmp(s, "0000-00-00") == 0) {
        *ms = 0;
        return AN_OK;
    }
    if (len == 19 && strcmp(s, "0000-00-00 00:00:00") == 0) {
        *ms = 0;
        return AN_OK;
    }
    cursor c = {s ? s : "", len, 0};
    int64_t days, tod = 0;
    an_status st = parse_date(&c, &days, err);
    if (st != AN_OK)
        return st;
    if (c.pos < c.len) {
        if (!accept(&c, ' '))
            return bad(err, &c, "expected ' ' between date and time");
        if ((st = parse_hms(&c, &tod, err)) != AN_OK)
            return st;
        if (c.pos != c.len)
            return bad(err, &c, "unexpected text after the time");
    }
    *ms = days * AN_TIME_MS_PER_DAY + tod;
    return AN_OK;
}

/* ---- formatting --------------------------------------------------------- */

typedef struct civil {
    int64_t year;
    int month, day, hour, minute, second, milli;
} civil;

static an_status split(int64_t ms, civil *cv, an_error *err)
{
    if (ms < AN_TIME_MIN_MS || ms > AN_TIME_MAX_MS)
        return an_error_set(err, AN_INVALID_ARGUMENT,
                            "timestamp %lld ms is outside years 0000..9999", (long long)ms);
    int64_t days = an_time_floor_div(ms, AN_TIME_MS_PER_DAY);
    int64_t rem = ms - days * AN_TIME_MS_PER_DAY;
    an_time_civil_from_days(days, &cv->year, &cv->month, &cv->day);
    cv->hour = (int)(rem / 3600000);
    cv->minute = (int)(rem / 60000 % 60);
    cv->second = (int)(rem / 1000 % 60);
    cv->milli = (int)(rem % 1000);
    return AN_OK;
}

an_status an_time_format_iso(int64_t ms, char out[AN_TIME_ISO_LEN], an_error *err)
{
    civil cv;
    out[0] = '\0';
    an_status st = split(ms, &cv, err);
    if (st != AN_OK)
        return st;
    snprintf(out, AN_TIME_ISO_LEN, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", (int)cv.year, cv.month,
             cv.day, cv.hour, cv.minute, cv.second, cv.milli);
    return AN_OK;
}

an_status an_time_format_ch(int64_t ms, char out[AN_TIME_CH_LEN], an_error *err)
{
    civil cv;
    out[0] = '\0';
    an_status st = split(ms, &cv, err);
    if (st != AN_OK)
        return st;
    snprintf(out, AN_TIME_CH_LEN, "%04d-%02d-%02d %02d:%02d:%02d", (int)cv.year, cv.month, cv.day,
             cv.hour, cv.minute, cv.second);
    return AN_OK;
}

void an_time_cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
}

int an_time_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_ms)
{
    struct timespec ts = {(time_t)(deadline_ms / 1000), (long)(deadline_ms % 1000) * 1000000L};
    return pthread_cond_timedwait(cv, mu, &ts);
}
