#include "common/timeutil.h"

#include <check.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Expected values below were computed independently (Python datetime). */

static int64_t parse_ok(const char *s)
{
    int64_t ms = 0;
    an_error err;
    an_error_clear(&err);
    ck_assert_msg(an_time_parse(s, &ms, &err) == AN_OK, "'%s' rejected: %s", s, err.message);
    return ms;
}

static const char *iso(int64_t ms)
{
    static char out[AN_TIME_ISO_LEN];
    ck_assert_int_eq(an_time_format_iso(ms, out, NULL), AN_OK);
    return out;
}

START_TEST(test_time_parses_utc_offsets_and_fractions)
{
    static const struct {
        const char *in;
        long long ms;
    } v[] = {
        {"1970-01-01T00:00:00Z", 0},
        {"2026-11-27T23:41:56Z", 1795822916000LL},
        {"2026-11-27t23:41:56z", 1795822916000LL},
        {"2026-11-27 23:41:56Z", 1795822916000LL},
        {"2026-11-27T23:41:56+00:00", 1795822916000LL},
        {"2026-11-27T23:41:56-00:00", 1795822916000LL},
        {"2026-11-27T23:41:56+02:00", 1795815716000LL},
        {"2026-11-27T23:41:56+0200", 1795815716000LL},
        {"2026-11-27T23:41:56-05:30", 1795842716000LL},
        {"2026-11-27T23:41:56-0530", 1795842716000LL},
        {"2026-11-27T23:41:56.1Z", 1795822916100LL},
        {"2026-11-27T23:41:56.12Z", 1795822916120LL},
        {"2026-11-27T23:41:56.123Z", 1795822916123LL},
        {"2026-11-27T23:41:56.1239Z", 1795822916123LL},      /* truncated, not rounded */
        {"2026-11-27T23:41:56.999999999Z", 1795822916999LL}, /* 9 digits */
        {"2026-11-27T23:41:56.000000001+02:00", 1795815716000LL},
        {"2000-02-29T12:00:00Z", 951825600000LL},
        {"1900-03-01T00:00:00Z", -2203891200000LL},
        {"1969-07-20T20:17:40Z", -14182940000LL},
        {"1969-12-31T23:59:59.999Z", -1},
        {"2038-01-19T03:14:08Z", 2147483648000LL},
        {"9999-12-31T23:59:59.999Z", AN_TIME_MAX_MS},
        {"0000-01-01T00:00:00Z", AN_TIME_MIN_MS},
        /* offsets that cross a day and a year */
        {"2026-12-31T23:30:00-01:00", 1798763400000LL},
        {"2027-01-01T00:30:00+01:00", 1798759800000LL},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        ck_assert_msg(parse_ok(v[i].in) == v[i].ms, "%s -> %lld, want %lld", v[i].in,
                      (long long)parse_ok(v[i].in), v[i].ms);
    ck_assert_str_eq(iso(parse_ok("2026-12-31T23:30:00-01:00")), "2027-01-01T00:30:00.000Z");
    ck_assert_str_eq(iso(parse_ok("2027-01-01T00:30:00+01:00")), "2026-12-31T23:30:00.000Z");
    ck_assert_str_eq(iso(parse_ok("2026-03-01T00:00:00+14:00")), "2026-02-28T10:00:00.000Z");
    ck_assert_str_eq(iso(parse_ok("2024-02-28T23:00:00-01:00")), "2024-02-29T00:00:00.000Z");
}
END_TEST

START_TEST(test_time_date_only_means_midnight_utc)
{
    ck_assert_int_eq(parse_ok("2026-11-27"), 1795822916000LL - (23 * 3600 + 41 * 60 + 56) * 1000);
    ck_assert_int_eq(parse_ok("1970-01-01"), 0);
    ck_assert_int_eq(parse_ok("2024-02-29"), parse_ok("2024-02-29T00:00:00Z"));
}
END_TEST

START_TEST(test_time_leap_years_follow_the_gregorian_rule)
{
    ck_assert(an_time_is_leap(2024));
    ck_assert(an_time_is_leap(2000));
    ck_assert(an_time_is_leap(1600));
    ck_assert(!an_time_is_leap(1900));
    ck_assert(!an_time_is_leap(2100));
    ck_assert(!an_time_is_leap(2023));
    ck_assert_int_eq(an_time_days_in_month(2024, 2), 29);
    ck_assert_int_eq(an_time_days_in_month(2100, 2), 28);
    ck_assert_int_eq(an_time_days_in_month(2026, 4), 30);
    ck_assert_int_eq(an_time_days_in_month(2026, 12), 31);
    ck_assert_int_eq(an_time_days_in_month(2026, 13), 0);
    int64_t ms;
    ck_assert_int_eq(an_time_parse("2000-02-29T00:00:00Z", &ms, NULL), AN_OK);
    ck_assert_int_eq(an_time_parse("2024-02-29", &ms, NULL), AN_OK);
    ck_assert_int_eq(an_time_parse("1900-02-29T00:00:00Z", &ms, NULL), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_time_parse("2100-02-29", &ms, NULL), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_time_parse("2023-02-29T00:00:00Z", &ms, NULL), AN_INVALID_ARGUMENT);
    /* the day after Feb 28 is Mar 1 in a common year, Feb 29 in a leap year */
    ck_assert_str_eq(iso(parse_ok("2023-02-28") + AN_TIME_MS_PER_DAY), "2023-03-01T00:00:00.000Z");
    ck_assert_str_eq(iso(parse_ok("2024-02-28") + AN_TIME_MS_PER_DAY), "2024-02-29T00:00:00.000Z");
}
END_TEST

START_TEST(test_time_rejects_invalid_dates_times_and_garbage)
{
    static const char *bad[] = {
        "",
        "2026",
        "2026-11",
        "2026-13-01T00:00:00Z",
        "2026-00-10T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-04-31",
        "2026-11-00",
        "2026-11-27T24:00:00Z", /* hour 24: decided against */
        "2026-11-27T23:60:00Z",
        "2026-11-27T23:59:60Z", /* leap second */
        "2026-11-27T23:41:56",  /* no offset */
        "2026-11-27T23:41Z",    /* no seconds */
        "2026-11-27T23:41:56.Z",
        "2026-11-27T23:41:56.1234567890Z", /* 10 digits */
        "2026-11-27T23:41:56,123Z",
        "2026-11-27T23:41:56+2:00",
        "2026-11-27T23:41:56+02",
        "2026-11-27T23:41:56+24:00",
        "2026-11-27T23:41:56+02:60",
        "2026-11-27T23:41:56+02:0",
        "2026-11-27T23:41:56ZZ",
        "2026-11-27T23:41:56Z ",
        " 2026-11-27T23:41:56Z",
        "2026-11-27X23:41:56Z",
        "2026-11-27T",
        "2026-1-27",
        "20261127T234156Z",
        "+2026-11-27T23:41:56Z",
        "12026-11-27T23:41:56Z",
        "-001-01-01T00:00:00Z",
        "9999-12-31T23:59:59-01:00", /* past year 9999 in UTC */
        "0000-01-01T00:00:00+00:01", /* before year 0 in UTC */
        "abc",
        "2026-11-27T2a:41:56Z",
        "２０２６-11-27",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms = 12345;
        an_error err;
        an_error_clear(&err);
        ck_assert_msg(an_time_parse(bad[i], &ms, &err) == AN_INVALID_ARGUMENT, "accepted '%s'",
                      bad[i]);
        ck_assert_int_eq(ms, 12345);
        ck_assert_msg(strstr(err.message, "timestamp") != NULL, "message: %s", err.message);
    }
    int64_t ms;
    ck_assert_int_eq(an_time_parse(NULL, &ms, NULL), AN_INVALID_ARGUMENT);
    /* an embedded NUL is not an end of input */
    ck_assert_int_eq(an_time_parse_n("2026-11-27\0T00:00:00Z", 21, &ms, NULL), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_time_parse_n("2026-11-27T00:00:00Zjunk", 20, &ms, NULL), AN_OK);
}
END_TEST

START_TEST(test_time_error_message_says_what_and_where)
{
    int64_t ms;
    an_error err;
    ck_assert_int_eq(an_time_parse("2026-02-30T00:00:00Z", &ms, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "no such day"));
    ck_assert_int_eq(an_time_parse("2026-11-27T23:41:56", &ms, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "missing UTC offset"));
    ck_assert_ptr_nonnull(strstr(err.message, "offset 19"));
}
END_TEST

START_TEST(test_time_formats_iso_and_clickhouse_text)
{
    char out[AN_TIME_ISO_LEN], ch[AN_TIME_CH_LEN];
    ck_assert_int_eq(an_time_format_iso(0, out, NULL), AN_OK);
    ck_assert_str_eq(out, "1970-01-01T00:00:00.000Z");
    ck_assert_int_eq(an_time_format_iso(1795822916123LL, out, NULL), AN_OK);
    ck_assert_str_eq(out, "2026-11-27T23:41:56.123Z");
    ck_assert_int_eq(an_time_format_ch(1795822916999LL, ch, NULL), AN_OK);
    ck_assert_str_eq(ch, "2026-11-27 23:41:56"); /* floored */
    /* negative: floor toward the past, never "1970-01-01" or negative fields */
    ck_assert_int_eq(an_time_format_iso(-1, out, NULL), AN_OK);
    ck_assert_str_eq(out, "1969-12-31T23:59:59.999Z");
    ck_assert_int_eq(an_time_format_ch(-1, ch, NULL), AN_OK);
    ck_assert_str_eq(ch, "1969-12-31 23:59:59");
    ck_assert_int_eq(an_time_format_iso(-14182940000LL, out, NULL), AN_OK);
    ck_assert_str_eq(out, "1969-07-20T20:17:40.000Z");
    ck_assert_int_eq(an_time_format_iso(AN_TIME_MAX_MS, out, NULL), AN_OK);
    ck_assert_str_eq(out, "9999-12-31T23:59:59.999Z");
    ck_assert_int_eq(an_time_format_iso(AN_TIME_MIN_MS, out, NULL), AN_OK);
    ck_assert_str_eq(out, "0000-01-01T00:00:00.000Z");
    an_error err;
    ck_assert_int_eq(an_time_format_iso(AN_TIME_MAX_MS + 1, out, &err), AN_INVALID_ARGUMENT);
    ck_assert_str_eq(out, "");
    ck_assert_int_eq(an_time_format_ch(AN_TIME_MIN_MS - 1, ch, NULL), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_time_format_iso(INT64_MIN, out, NULL), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_time_format_iso(INT64_MAX, out, NULL), AN_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_time_round_trips_format_then_parse)
{
    /* edges, then a deterministic spread over the whole range */
    int64_t edge[] = {
        0, -1, 1, 999, -999, 951782400000LL, 951868799999LL, AN_TIME_MIN_MS, AN_TIME_MAX_MS};
    for (size_t i = 0; i < sizeof(edge) / sizeof(edge[0]); i++)
        ck_assert_int_eq(parse_ok(iso(edge[i])), edge[i]);
    uint64_t x = 88172645463325252ULL;
    uint64_t span = (uint64_t)(AN_TIME_MAX_MS - AN_TIME_MIN_MS) + 1;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int64_t ms = AN_TIME_MIN_MS + (int64_t)(x % span);
        char out[AN_TIME_ISO_LEN], ch[AN_TIME_CH_LEN];
        int64_t back = 0, back_ch = 0;
        /* plain ifs: a passing ck_assert costs a syscall in Check's fork mode */
        if (an_time_format_iso(ms, out, NULL) != AN_OK ||
            an_time_parse(out, &back, NULL) != AN_OK || back != ms)
            ck_abort_msg("%lld -> '%s' -> %lld", (long long)ms, out, (long long)back);
        if (an_time_format_ch(ms, ch, NULL) != AN_OK ||
            an_time_parse_ch(ch, &back_ch, NULL) != AN_OK ||
            back_ch != an_time_floor_div(ms, 1000) * 1000)
            ck_abort_msg("%lld -> '%s' -> %lld", (long long)ms, ch, (long long)back_ch);
    }
}
END_TEST

START_TEST(test_time_civil_conversion_agrees_with_libc_for_every_day)
{
    /* 1600-01-01 .. about 2500: every day compared with glibc's gmtime_r/timegm */
    for (int64_t days = -135140; days <= 193000; days++) {
        time_t t = (time_t)(days * 86400);
        struct tm tm;
        if (!gmtime_r(&t, &tm))
            ck_abort_msg("gmtime_r failed for day %lld", (long long)days);
        int64_t y;
        int m, d;
        an_time_civil_from_days(days, &y, &m, &d);
        if (y != tm.tm_year + 1900 || m != tm.tm_mon + 1 || d != tm.tm_mday ||
            an_time_weekday(days) != tm.tm_wday || an_time_days_from_civil(y, m, d) != days)
            ck_abort_msg("day %lld: got %lld-%02d-%02d wd %d, libc %d-%02d-%02d wd %d",
                         (long long)days, (long long)y, m, d, an_time_weekday(days),
                         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_wday);
    }
}
END_TEST

START_TEST(test_time_parses_clickhouse_datetime_text)
{
    int64_t ms;
    ck_assert_int_eq(an_time_parse_ch("2026-11-27 23:41:56", &ms, NULL), AN_OK);
    ck_assert_int_eq(ms, 1795822916000LL);
    ck_assert_int_eq(an_time_parse_ch("2026-11-27", &ms, NULL), AN_OK);
    ck_assert_int_eq(ms, 1795737600000LL);
    ms = 5;
    ck_assert_int_eq(an_time_parse_ch("0000-00-00 00:00:00", &ms, NULL), AN_OK);
    ck_assert_int_eq(ms, 0);
    ms = 5;
    ck_assert_int_eq(an_time_parse_ch("0000-00-00", &ms, NULL), AN_OK);
    ck_assert_int_eq(ms, 0);
    static const char *bad[] = {"2026-11-27T23:41:56",
                                "2026-11-27 23:41:56Z",
                                "2026-11-27 23:41",
                                "2026-02-30 00:00:00",
                                "",
                                "x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(an_time_parse_ch(bad[i], &ms, NULL) == AN_INVALID_ARGUMENT, "accepted '%s'",
                      bad[i]);
}
END_TEST

START_TEST(test_time_floor_division_and_clocks)
{
    ck_assert_int_eq(an_time_floor_div(-1, 1000), -1);
    ck_assert_int_eq(an_time_floor_mod(-1, 1000), 999);
    ck_assert_int_eq(an_time_floor_div(-1000, 1000), -1);
    ck_assert_int_eq(an_time_floor_mod(-1000, 1000), 0);
    ck_assert_int_eq(an_time_floor_div(1999, 1000), 1);
    int64_t now = an_time_now_ms();
    ck_assert_int_ge(now / 1000, (int64_t)time(NULL) - 1);
    ck_assert_int_le(now / 1000, (int64_t)time(NULL));
    int64_t a = an_time_mono_ms();
    int64_t b = an_time_mono_ms();
    ck_assert_int_ge(b, a);
}
END_TEST

Suite *timeutil_suite(void)
{
    Suite *s = suite_create("timeutil");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_time_parses_utc_offsets_and_fractions);
    tcase_add_test(tc, test_time_date_only_means_midnight_utc);
    tcase_add_test(tc, test_time_leap_years_follow_the_gregorian_rule);
    tcase_add_test(tc, test_time_rejects_invalid_dates_times_and_garbage);
    tcase_add_test(tc, test_time_error_message_says_what_and_where);
    tcase_add_test(tc, test_time_formats_iso_and_clickhouse_text);
    tcase_add_test(tc, test_time_round_trips_format_then_parse);
    tcase_add_test(tc, test_time_civil_conversion_agrees_with_libc_for_every_day);
    tcase_add_test(tc, test_time_parses_clickhouse_datetime_text);
    tcase_add_test(tc, test_time_floor_division_and_clocks);
    suite_add_tcase(s, tc);
    return s;
}
