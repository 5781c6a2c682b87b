#include "common/cron.h"
#include "common/timeutil.h"

#include <check.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static int64_t at(const char *iso)
{
    int64_t ms;
    an_error err;
    ck_assert_msg(an_time_parse(iso, &ms, &err) == AN_OK, "%s: %s", iso, err.message);
    return ms / 1000;
}

/* Rotating buffers so one message can show several times. */
static const char *iso(int64_t s)
{
    static char out[4][AN_TIME_ISO_LEN];
    static int n;
    char *o = out[n++ % 4];
    ck_assert_int_eq(an_time_format_iso(s * 1000, o, NULL), AN_OK);
    return o;
}

static an_cron parse_ok(const char *expr)
{
    an_cron c;
    an_error err;
    an_error_clear(&err);
    ck_assert_msg(an_cron_parse(expr, &c, &err) == AN_OK, "'%s' rejected: %s", expr, err.message);
    return c;
}

/* Next fire of expr after the given ISO time, as ISO text. */
static const char *next_after(const char *expr, const char *after)
{
    an_cron c = parse_ok(expr);
    int64_t next;
    an_error err;
    ck_assert_msg(an_cron_next(&c, at(after), &next, &err) == AN_OK, "%s after %s: %s", expr, after,
                  err.message);
    return iso(next);
}

START_TEST(test_cron_next_fires_for_common_expressions)
{
    static const char *v[][3] = {
        /* expression, after, expected next */
        {"* * * * *", "2026-11-27T23:41:56Z", "2026-11-27T23:42:00.000Z"},
        {"* * * * *", "2026-11-27T23:42:00Z", "2026-11-27T23:43:00.000Z"}, /* strictly after */
        {"*/15 * * * *", "2026-11-27T23:41:56Z", "2026-11-27T23:45:00.000Z"},
        {"*/15 * * * *", "2026-11-27T23:45:00Z", "2026-11-28T00:00:00.000Z"},
        {"0 * * * *", "2026-11-27T23:41:56Z", "2026-11-28T00:00:00.000Z"},
        {"30 9 * * *", "2026-11-27T09:30:00Z", "2026-11-28T09:30:00.000Z"},
        {"30 9 * * *", "2026-11-27T09:29:59Z", "2026-11-27T09:30:00.000Z"},
        {"1-10/2 * * * *", "2026-11-27T10:03:00Z", "2026-11-27T10:05:00.000Z"},
        {"1-10/2 * * * *", "2026-11-27T10:09:00Z", "2026-11-27T11:01:00.000Z"},
        {"5/20 * * * *", "2026-11-27T10:26:00Z", "2026-11-27T10:45:00.000Z"},
        {"0,30 8-10 * * *", "2026-11-27T10:30:00Z", "2026-11-28T08:00:00.000Z"},
        {"0 */6 * * *", "2026-11-27T13:00:00Z", "2026-11-27T18:00:00.000Z"},
        /* month ends */
        {"0 0 31 * *", "2026-11-27T00:00:00Z", "2026-12-31T00:00:00.000Z"},
        {"0 0 31 * *", "2026-12-31T00:00:00Z", "2027-01-31T00:00:00.000Z"},
        {"0 0 31 * *", "2027-01-31T00:00:00Z", "2027-03-31T00:00:00.000Z"}, /* skips Feb */
        {"0 0 30 * *", "2027-01-30T12:00:00Z", "2027-03-30T00:00:00.000Z"},
        {"59 23 31 12 *", "2026-12-31T23:59:00Z", "2027-12-31T23:59:00.000Z"},
        {"0 0 1 * *", "2026-12-15T00:00:00Z", "2027-01-01T00:00:00.000Z"},
        /* Feb 29 only in leap years; 2100 is not one */
        {"0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00.000Z"},
        {"0 0 29 2 *", "2028-02-29T00:00:00Z", "2032-02-29T00:00:00.000Z"},
        {"0 0 29 2 *", "2096-03-01T00:00:00Z", "2104-02-29T00:00:00.000Z"},
        {"0 12 28-29 2 *", "2027-02-28T12:00:00Z", "2028-02-28T12:00:00.000Z"},
        /* day of week: 2026-11-27 is a Friday */
        {"0 0 * * 1", "2026-11-27T00:00:00Z", "2026-11-30T00:00:00.000Z"},
        {"0 0 * * MON-FRI", "2026-11-27T12:00:00Z", "2026-11-30T00:00:00.000Z"},
        {"0 0 * * 0", "2026-11-27T12:00:00Z", "2026-11-29T00:00:00.000Z"},
        {"0 0 * * 7", "2026-11-27T12:00:00Z", "2026-11-29T00:00:00.000Z"},
        {"0 0 * * sun", "2026-11-27T12:00:00Z", "2026-11-29T00:00:00.000Z"},
        {"0 0 * * 5-7", "2026-11-27T12:00:00Z", "2026-11-28T00:00:00.000Z"},
        {"0 9 * JAN-MAR MON-FRI", "2026-11-27T12:00:00Z", "2027-01-01T09:00:00.000Z"},
        {"0 9 * jul *", "2026-11-27T12:00:00Z", "2027-07-01T09:00:00.000Z"},
        /* both day fields restricted: either matches (13th or any Friday) */
        {"0 12 13 * 5", "2026-11-27T23:00:00Z", "2026-12-04T12:00:00.000Z"},
        {"0 12 13 * 5", "2026-12-11T12:00:00Z", "2026-12-13T12:00:00.000Z"},
        {"0 0 1 * 1", "2026-12-01T00:00:00Z", "2026-12-07T00:00:00.000Z"},
        {"0 0 1 * MON", "2026-12-28T00:00:00Z", "2027-01-01T00:00:00.000Z"},
        /* a '*'-led field is unrestricted: both must match (Vixie) */
        {"0 0 */2 * 1", "2026-11-27T00:00:00Z", "2026-12-07T00:00:00.000Z"},
        {"0 0 1 * */7", "2026-11-27T00:00:00Z", "2027-08-01T00:00:00.000Z"}, /* a Sunday 1st */
        /* macros */
        {"@hourly", "2026-11-27T23:41:56Z", "2026-11-28T00:00:00.000Z"},
        {"@daily", "2026-11-27T23:41:56Z", "2026-11-28T00:00:00.000Z"},
        {"@midnight", "2026-11-27T00:00:00Z", "2026-11-28T00:00:00.000Z"},
        {"@weekly", "2026-11-27T23:41:56Z", "2026-11-29T00:00:00.000Z"},
        {"@monthly", "2026-11-27T23:41:56Z", "2026-12-01T00:00:00.000Z"},
        {"@yearly", "2026-11-27T23:41:56Z", "2027-01-01T00:00:00.000Z"},
        {"@ANNUALLY", "2026-11-27T23:41:56Z", "2027-01-01T00:00:00.000Z"},
        /* before 1970 */
        {"* * * * *", "1969-12-31T23:59:30Z", "1970-01-01T00:00:00.000Z"},
        {"0 0 1 1 *", "1969-06-01T00:00:00Z", "1970-01-01T00:00:00.000Z"},
        /* whitespace around and between fields */
        {"  0\t0   1 1 *  ", "2026-06-01T00:00:00Z", "2027-01-01T00:00:00.000Z"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        ck_assert_msg(strcmp(next_after(v[i][0], v[i][1]), v[i][2]) == 0,
                      "'%s' after %s: got %s, want %s", v[i][0], v[i][1],
                      next_after(v[i][0], v[i][1]), v[i][2]);
}
END_TEST

START_TEST(test_cron_fields_parse_into_the_right_values)
{
    an_cron c = parse_ok("1-10/2 */6 1,15,31 JAN,jun-AUG 1-5");
    ck_assert_uint_eq(c.minutes,
                      (1ULL << 1) | (1ULL << 3) | (1ULL << 5) | (1ULL << 7) | (1ULL << 9));
    ck_assert_uint_eq(c.hours, (1u << 0) | (1u << 6) | (1u << 12) | (1u << 18));
    ck_assert_uint_eq(c.days, (1u << 1) | (1u << 15) | (1u << 31));
    ck_assert_uint_eq(c.months, (1u << 1) | (1u << 6) | (1u << 7) | (1u << 8));
    ck_assert_uint_eq(c.weekdays, 0x3e);
    ck_assert(!c.dom_star && !c.dow_star);
    c = parse_ok("* * * * *");
    ck_assert_uint_eq(c.minutes, (1ULL << 60) - 1);
    ck_assert_uint_eq(c.hours, (1u << 24) - 1);
    ck_assert_uint_eq(c.days, 0xfffffffeu);
    ck_assert_uint_eq(c.months, 0x1ffe);
    ck_assert_uint_eq(c.weekdays, 0x7f);
    ck_assert(c.dom_star && c.dow_star);
    /* 7 and 0 are both Sunday */
    ck_assert_uint_eq(parse_ok("0 0 * * 7").weekdays, 1);
    ck_assert_uint_eq(parse_ok("0 0 * * 0,7").weekdays, 1);
    ck_assert_uint_eq(parse_ok("0 0 * * SAT-SAT").weekdays, 1u << 6);
    /* a step larger than the range keeps the first value */
    ck_assert_uint_eq(parse_ok("*/100 * * * *").minutes, 1);
    ck_assert(parse_ok("0 0 */2 * *").dom_star);
}
END_TEST

START_TEST(test_cron_rejects_bad_expressions_naming_the_field)
{
    static const char *v[][2] = {
        {"", "expression"},
        {"* * * *", "expression"},
        {"* * * * * *", "expression"},
        {"0 0 1 1 * 2027", "expression"},
        {"@reboot", "expression"},
        {"@every 5m", "expression"},
        {"60 * * * *", "minute"},
        {"-1 * * * *", "minute"},
        {"*/0 * * * *", "minute"},
        {"5-1 * * * *", "minute"},
        {"1,,2 * * * *", "minute"},
        {"1, * * * *", "minute"},
        {",1 * * * *", "minute"},
        {"*/ * * * *", "minute"},
        {"1- * * * *", "minute"},
        {"a * * * *", "minute"},
        {"JAN * * * *", "minute"},
        {"1.5 * * * *", "minute"},
        {"99999 * * * *", "minute"},
        {"*/99999 * * * *", "minute"},
        {"0 24 * * *", "hour"},
        {"0 * 0 * *", "day-of-month"},
        {"0 * 32 * *", "day-of-month"},
        {"0 * L * *", "day-of-month"},
        {"0 * ? * *", "day-of-month"},
        {"0 * 15W * *", "day-of-month"},
        {"0 0 1 13 *", "month"},
        {"0 0 1 0 *", "month"},
        {"0 0 1 JANUARY *", "month"},
        {"0 0 1 DEC-JAN *", "month"},
        {"0 0 * * 8", "day-of-week"},
        {"0 0 * * FRI-MON", "day-of-week"},
        {"0 0 * * MON#2", "day-of-week"},
        {"0 0 * * MONDAY", "day-of-week"},
        /* valid syntax, but the day never exists */
        {"0 0 30 2 *", "day-of-month"},
        {"0 0 31 4,6,9,11 *", "day-of-month"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        an_cron c;
        memset(&c, 0xab, sizeof(c));
        an_error err;
        an_error_clear(&err);
        ck_assert_msg(an_cron_parse(v[i][0], &c, &err) == AN_INVALID_ARGUMENT, "accepted '%s'",
                      v[i][0]);
        ck_assert_msg(strcmp(err.field, v[i][1]) == 0, "'%s': field '%s', want '%s' (%s)", v[i][0],
                      err.field, v[i][1], err.message);
        ck_assert_uint_eq(c.months, 0xabab); /* untouched */
    }
    an_error err;
    an_cron c;
    ck_assert_int_eq(an_cron_parse("0 25 * * *", &c, &err), AN_INVALID_ARGUMENT);
    ck_assert_str_eq(err.message, "cron hour field '25': value out of range 0-23");
    ck_assert_int_eq(an_cron_parse(NULL, &c, &err), AN_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_cron_dom_or_dow_rule_over_a_year)
{
    /* "0 0 13 * 5": every 13th and every Friday of 2027, nothing else */
    an_cron c = parse_ok("0 0 13 * 5");
    int64_t t = at("2026-12-31T23:59:59Z"), end = at("2028-01-01T00:00:00Z");
    int fires = 0;
    for (;;) {
        int64_t next;
        ck_assert_int_eq(an_cron_next(&c, t, &next, NULL), AN_OK);
        if (next >= end)
            break;
        time_t tt = (time_t)next;
        struct tm tm;
        gmtime_r(&tt, &tm);
        ck_assert_msg(tm.tm_mday == 13 || tm.tm_wday == 5, "fired on %s", iso(next));
        ck_assert_int_eq(tm.tm_hour, 0);
        ck_assert_int_eq(tm.tm_min, 0);
        fires++;
        t = next;
    }
    /* 2027 starts on a Friday: 53 Fridays, 12 thirteenths, Aug 13 counted once */
    ck_assert_int_eq(fires, 64);
}
END_TEST

/* Oracle for the search: minute by minute with libc's calendar, matching the
 * parsed bitmasks by the documented rule. */
static bool oracle_match(const an_cron *c, int64_t s)
{
    time_t tt = (time_t)s;
    struct tm tm;
    gmtime_r(&tt, &tm);
    bool dom = c->days >> tm.tm_mday & 1, dow = c->weekdays >> tm.tm_wday & 1;
    bool day = (c->dom_star || c->dow_star) ? dom && dow : dom || dow;
    return (c->months >> (tm.tm_mon + 1) & 1) && day && (c->hours >> tm.tm_hour & 1) &&
           (c->minutes >> tm.tm_min & 1);
}

START_TEST(test_cron_next_agrees_with_minute_by_minute_search)
{
    static const char *exprs[] = {
        "* * * * *",    "*/7 * * * *",      "13 * * * *",     "0 0 * * *",        "59 23 * * *",
        "0 12 * * 1-5", "*/5 9-17 * * 1-5", "0 0 1,15 * *",   "0 0 31 * *",       "0 0 30 * *",
        "0 0 29 * *",   "0 0 L1 * *",       "0 0 13 * 5",     "0 0 */3 * 2",      "15 3 1 * 0",
        "0 0 * * 6,0",  "0 0 1 * *",        "30 1 28-31 * *", "0 */4 * 2 *",      "0 0 * * */2",
        "0 0 1-7 * 1",  "45 23 31 12 *",    "0 0 29 2 1",     "*/20 */5 */5 * *",
    };
    int64_t starts[] = {at("2026-11-27T23:41:56Z"), at("2027-02-27T12:00:00Z"),
                        at("2028-02-28T23:59:00Z"), at("2026-12-31T23:59:59Z"),
                        at("1999-12-31T23:00:00Z")};
    for (size_t e = 0; e < sizeof(exprs) / sizeof(exprs[0]); e++) {
        an_cron c;
        if (an_cron_parse(exprs[e], &c, NULL) != AN_OK)
            continue; /* "0 0 L1 * *" is deliberately invalid: skipped */
        for (size_t k = 0; k < sizeof(starts) / sizeof(starts[0]); k++) {
            int64_t next;
            ck_assert_int_eq(an_cron_next(&c, starts[k], &next, NULL), AN_OK);
            if (next <= starts[k] || next % 60 != 0 || !oracle_match(&c, next))
                ck_abort_msg("'%s' after %s: %s is not a fire time", exprs[e], iso(starts[k]),
                             iso(next));
            if (!an_cron_matches(&c, next))
                ck_abort_msg("an_cron_matches disagrees for '%s' at %s", exprs[e], iso(next));
            /* nothing fires in between (bounded: 400 days of minutes) */
            int64_t from = (starts[k] / 60 + 1) * 60;
            for (int64_t s = from; s < next && s < from + 400LL * 86400; s += 60)
                if (oracle_match(&c, s))
                    ck_abort_msg("'%s' after %s: skipped %s, returned %s", exprs[e], iso(starts[k]),
                                 iso(s), iso(next));
        }
    }
}
END_TEST

START_TEST(test_cron_next_rejects_times_outside_the_calendar)
{
    an_cron c = parse_ok("* * * * *");
    int64_t next = 7;
    ck_assert_int_eq(an_cron_next(&c, INT64_MAX, &next, NULL), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_cron_next(&c, INT64_MIN, &next, NULL), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(next, 7);
    /* a hand-made value that never fires */
    an_cron never = parse_ok("0 0 1 * *");
    never.days = 1u << 30;
    never.months = 1u << 2;
    ck_assert_int_eq(an_cron_next(&never, 0, &next, NULL), AN_NOT_FOUND);
}
END_TEST

Suite *cron_suite(void)
{
    Suite *s = suite_create("cron");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_cron_next_fires_for_common_expressions);
    tcase_add_test(tc, test_cron_fields_parse_into_the_right_values);
    tcase_add_test(tc, test_cron_rejects_bad_expressions_naming_the_field);
    tcase_add_test(tc, test_cron_dom_or_dow_rule_over_a_year);
    tcase_add_test(tc, test_cron_next_agrees_with_minute_by_minute_search);
    tcase_add_test(tc, test_cron_next_rejects_times_outside_the_calendar);
    suite_add_tcase(s, tc);
    return s;
}
