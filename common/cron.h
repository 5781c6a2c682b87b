// cron.h - five-field cron expressions and their next fire time, in UTC.
// (Line comments here because the syntax contains the characters "*/".)
//
//   minute hour day-of-month month day-of-week
//   0-59   0-23 1-31         1-12  0-7 (0 and 7 are Sunday)
//
// Each field is a comma-separated list of
//   *            every value
//   N            one value; months JAN..DEC and days SUN..SAT (any case)
//                are accepted wherever a number is
//   N-M          an inclusive range (no wrap-around: FRI-MON is an error)
//   */S, N-M/S   every S-th value of the range, starting at its first value
//   N/S          N-max/S (an extension many crons have)
// and these macros stand for a whole expression:
//   @yearly @annually "0 0 1 1 *"    @monthly "0 0 1 * *"   @weekly "0 0 * * 0"
//   @daily @midnight  "0 0 * * *"    @hourly  "0 * * * *"
//
// Day matching follows Vixie cron (and cronie): when day-of-month and
// day-of-week are both restricted, a day matches if EITHER matches
// ("0 0 13 * 5" fires on every 13th and every Friday). A field counts as
// unrestricted when it starts with '*', including "*/2"; then both must
// match ("0 0 */2 * 1" is odd-numbered days that are Mondays), as in Vixie.
//
// Not supported (rejected with a message): seconds or year fields, ?, L, W,
// #, @reboot, time zones other than UTC. An expression that can never fire
// (e.g. "0 0 30 2 *") is rejected at parse time.
#ifndef AN_CRON_H
#define AN_CRON_H

#include "common/status.h"

#include <stdbool.h>
#include <stdint.h>

/* A parsed expression: one bit per allowed value. Plain value type. */
typedef struct an_cron {
    uint64_t minutes; /* bit m: minute m, 0..59 */
    uint32_t hours;   /* bit h: hour h, 0..23 */
    uint32_t days;    /* bit d: day of month d, 1..31 */
    uint16_t months;  /* bit m: month m, 1..12 */
    uint8_t weekdays; /* bit w: 0 = Sunday .. 6 = Saturday (7 folded onto 0) */
    bool dom_star;    /* day-of-month field started with '*' */
    bool dow_star;    /* day-of-week field started with '*' */
} an_cron;

/* Parse expr. On error returns AN_INVALID_ARGUMENT with err->field naming
 * the cron field ("minute", "hour", "day-of-month", "month",
 * "day-of-week", or "expression" for the whole) and a message quoting the
 * offending part. out is written only on success. */
an_status an_cron_parse(const char *expr, an_cron *out, an_error *err);

/* The first fire time strictly after after_s (epoch seconds, UTC), always a
 * whole minute. AN_INVALID_ARGUMENT when after_s is outside years
 * 0000..9999; AN_NOT_FOUND when the schedule fires never (impossible for
 * a value from an_cron_parse). */
an_status an_cron_next(const an_cron *c, int64_t after_s, int64_t *next_s, an_error *err);

/* True when the minute containing epoch_s is a fire time. */
bool an_cron_matches(const an_cron *c, int64_t epoch_s);

#endif
