/*
 * timeutil.h - calendar arithmetic, RFC 3339 parsing and formatting, in UTC.
 *
 * Timestamps are int64 milliseconds since 1970-01-01T00:00:00Z (negative
 * before), ignoring leap seconds like POSIX time. The conversions use
 * Howard Hinnant's days-from-civil algorithms: exact for every date, no
 * timegm/TZ/locale, no global state, thread-safe. (The header is not named
 * time.h to stay clear of the system header; its prefix is an_time_.)
 *
 * Accepted by an_time_parse (decisions, not accidents):
 *   2026-11-27T23:41:56Z           'T', 't' or ' ' between date and time
 *   2026-11-27T23:41:56.123456789Z  1 to 9 fractional digits, truncated to ms
 *   2026-11-27T23:41:56+02:00       offsets +HH:MM, -HH:MM, +HHMM, -HHMM, Z, z;
 *                                   -00:00 is taken as UTC
 *   2026-11-27                      a date alone means its midnight UTC
 * Rejected:
 *   a date-time without an offset (local time is ambiguous on a server),
 *   hour 24 (24:00:00 is legal ISO 8601 but not RFC 3339; write the next day),
 *   second 60 (leap seconds cannot be represented in POSIX time),
 *   missing seconds (23:41Z), a '.' without digits, more than 9 digits,
 *   invalid calendar dates (02-30, 2023-02-29, month 13), 5-digit years,
 *   basic format (20261127T234156Z), leading/trailing spaces, anything after
 *   the offset, and results outside [AN_TIME_MIN_MS, AN_TIME_MAX_MS].
 */
#ifndef AN_TIMEUTIL_H
#define AN_TIMEUTIL_H

#include "common/status.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AN_TIME_ISO_LEN 25 /* "YYYY-MM-DDTHH:MM:SS.mmmZ" plus NUL */
#define AN_TIME_CH_LEN  20 /* "YYYY-MM-DD HH:MM:SS" plus NUL */

/* The formattable range: 0000-01-01T00:00:00.000Z .. 9999-12-31T23:59:59.999Z. */
#define AN_TIME_MIN_MS (-62167219200000LL)
#define AN_TIME_MAX_MS 253402300799999LL

#define AN_TIME_MS_PER_DAY 86400000LL

/* ---- calendar ----------------------------------------------------------- */

bool an_time_is_leap(int64_t year);
/* 28..31; 0 when month is not 1..12. */
int an_time_days_in_month(int64_t year, int month);
/* Days since 1970-01-01 of a proleptic Gregorian date (month 1..12, day 1..31).
 * The day is not validated: it counts on, so 2026-02-31 gives 2026-03-03. */
int64_t an_time_days_from_civil(int64_t year, int month, int day);
/* The inverse; any of the out pointers may be NULL. */
void an_time_civil_from_days(int64_t days, int64_t *year, int *month, int *day);
/* Day of the week of a day number: 0 = Sunday .. 6 = Saturday. */
int an_time_weekday(int64_t days);

/* Floor division and its non-negative remainder, for splitting negative
 * timestamps (-1 ms is 1969-12-31T23:59:59.999Z, not 1970-01-01). */
int64_t an_time_floor_div(int64_t a, int64_t b);
int64_t an_time_floor_mod(int64_t a, int64_t b);

/* ---- clocks ------------------------------------------------------------- */

/* Wall clock (CLOCK_REALTIME) in epoch ms. */
int64_t an_time_now_ms(void);
/* Monotonic clock in ms, for measuring durations and deadlines. */
int64_t an_time_mono_ms(void);
/* CPU time this process used so far (user + system), in seconds. */
double an_time_cpu_s(void);

/* Initialise cv so that pthread_cond_timedwait takes CLOCK_MONOTONIC
 * deadlines (an_time_mono_ms and friends), not wall-clock ones. */
void an_time_cond_init_mono(pthread_cond_t *cv);
/* pthread_cond_timedwait on such a cv (mu held) until the monotonic time
 * deadline_ms (an_time_mono_ms); its return value (ETIMEDOUT when it ran out). */
int an_time_cond_wait_until(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t deadline_ms);

/* ---- text --------------------------------------------------------------- */

/* Parse an RFC 3339 timestamp (see the top of this file) into epoch ms.
 * On error *ms is untouched and err says what is wrong and where. */
an_status an_time_parse(const char *s, int64_t *ms, an_error *err);
/* Same for exactly len bytes (need not be NUL-terminated; a NUL inside fails). */
an_status an_time_parse_n(const char *s, size_t len, int64_t *ms, an_error *err);
/* Same, but an instant: a date alone is refused (a time and an offset are
 * required), e.g. when an event happened. */
an_status an_time_parse_instant_n(const char *s, size_t len, int64_t *ms, an_error *err);

/* Parse ClickHouse DateTime text "YYYY-MM-DD HH:MM:SS" or Date "YYYY-MM-DD"
 * as UTC (the caller makes sure the value was rendered in UTC: a server or
 * column timezone of UTC, or toUnixTimestamp). ClickHouse 18 writes the zero
 * value as "0000-00-00 00:00:00" / "0000-00-00": both parse to 0. */
an_status an_time_parse_ch(const char *s, int64_t *ms, an_error *err);

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" (24 chars). AN_INVALID_ARGUMENT outside
 * [AN_TIME_MIN_MS, AN_TIME_MAX_MS], leaving out as "". */
an_status an_time_format_iso(int64_t ms, char out[AN_TIME_ISO_LEN], an_error *err);

/* ClickHouse DateTime text "YYYY-MM-DD HH:MM:SS" in UTC (19 chars); the
 * milliseconds are floored away. Same range rule as an_time_format_iso. */
an_status an_time_format_ch(int64_t ms, char out[AN_TIME_CH_LEN], an_error *err);

#endif
