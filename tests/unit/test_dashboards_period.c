/* The previous period of a bignumber (dash_previous_period): whole buckets
 * as metrics widens the range, never overlapping it. */
#include "common/timeutil.h"
#include "dashboards/dash.h"

#include <check.h>

#define H  3600000LL
#define DY (24 * H)

/* epoch ms of a UTC date at hour h */
static int64_t at(int y, int m, int d, int h)
{
    return an_time_days_from_civil(y, m, d) * DY + h * H;
}

/* dash_previous_period(from, to, g) gives [want_from, want_to). */
static void expect_previous(int64_t from, int64_t to, const char *g, int64_t want_from,
                            int64_t want_to)
{
    int64_t pf, pt;
    dash_previous_period(from, to, g, &pf, &pt);
    ck_assert_int_eq(pt, want_to);
    ck_assert_int_eq(pf, want_from);
}

START_TEST(test_a_range_from_mid_day_compares_with_the_whole_days_before_it)
{
    /* 24 h from 06:00: metrics reads two whole days, so do the two before */
    expect_previous(at(2026, 11, 20, 6), at(2026, 11, 21, 6), "day", at(2026, 11, 18, 0),
                    at(2026, 11, 20, 0));
    /* aligned: the same length just before */
    expect_previous(at(2026, 11, 20, 0), at(2026, 11, 27, 0), "day", at(2026, 11, 13, 0),
                    at(2026, 11, 20, 0));
    expect_previous(at(2026, 11, 20, 6) + 1800000, at(2026, 11, 20, 8), "hour", at(2026, 11, 20, 4),
                    at(2026, 11, 20, 6));
}
END_TEST

START_TEST(test_a_month_compares_with_the_month_before_whatever_their_lengths)
{
    /* March (31 days) after February (28): one month back, not 31 days */
    expect_previous(at(2026, 3, 1, 0), at(2026, 3, 31, 12), "month", at(2026, 2, 1, 0),
                    at(2026, 3, 1, 0));
    /* December and November, across a year: two months back */
    expect_previous(at(2025, 11, 15, 0), at(2026, 1, 1, 0), "month", at(2025, 9, 1, 0),
                    at(2025, 11, 1, 0));
}
END_TEST

START_TEST(test_weeks_start_on_monday)
{
    /* Wednesday 2026-11-25 .. Friday 2026-11-27: the week of Monday 11-23 */
    expect_previous(at(2026, 11, 25, 0), at(2026, 11, 27, 0), "week", at(2026, 11, 16, 0),
                    at(2026, 11, 23, 0));
}
END_TEST

Suite *dashboards_period_suite(void)
{
    Suite *s = suite_create("dashboards_period");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_a_range_from_mid_day_compares_with_the_whole_days_before_it);
    tcase_add_test(tc, test_a_month_compares_with_the_month_before_whatever_their_lengths);
    tcase_add_test(tc, test_weeks_start_on_monday);
    suite_add_tcase(s, tc);
    return s;
}
