/*
 * ulid.h - ULIDs (https://github.com/ulid/spec): 128-bit ids that sort by
 * creation time, written as 26 characters of Crockford base32.
 *
 *   01ARYZ6S41TSV4RRFFQ69G5FAV
 *   |--------||--------------|
 *    48-bit ms   80 random bits (CSPRNG: OpenSSL RAND_bytes, an_crypto_random)
 *    timestamp
 *
 * an_ulid_new is monotonic across the process and thread-safe: an id made
 * in the same millisecond as the previous one (or while the wall clock has
 * stepped back) is the previous id plus one, so ids made by one process
 * always sort in creation order. When the 80 random bits are exhausted
 * within one millisecond (2^80 ids) the increment carries into the
 * timestamp, which stays strictly increasing instead of failing.
 *
 * The text form is uppercase. Parsing accepts lowercase too (the spec says
 * case-insensitive) but rejects I, L, O and U rather than reading them as
 * 1, 1, 0 (they never occur in an id we made), and rejects a first
 * character above '7' (more than 128 bits).
 */
#ifndef AN_ULID_H
#define AN_ULID_H

#include "common/status.h"

#include <stdbool.h>
#include <stdint.h>

#define AN_ULID_LEN    26               /* characters of the text form */
#define AN_ULID_STRLEN 27               /* the text form plus its NUL */
#define AN_ULID_MAX_MS 0xFFFFFFFFFFFFLL /* largest 48-bit timestamp (year 10889) */

/* The binary form: big-endian, bytes 0..5 the timestamp, 6..15 randomness.
 * memcmp order equals time order equals text order. Plain value type. */
typedef struct an_ulid {
    unsigned char b[16];
} an_ulid;

/* A new id for the current wall-clock time, monotonic as described above.
 * Fails only if the system CSPRNG fails or the clock is outside
 * 1970..year 10889. */
an_status an_ulid_new(an_ulid *out, an_error *err);

/* Same, written as text into out (26 characters and a NUL). */
an_status an_ulid_new_str(char out[AN_ULID_STRLEN], an_error *err);

/* The monotonic rule as a function (no global state): the id that follows
 * prev (NULL: none) at time now_ms. When now_ms is later than prev's time
 * the result is fresh randomness at now_ms; otherwise it is prev + 1.
 * AN_INVALID_ARGUMENT if now_ms is outside 0..AN_ULID_MAX_MS,
 * AN_RESOURCE_EXHAUSTED if prev is the largest possible id. */
an_status an_ulid_next(const an_ulid *prev, int64_t now_ms, an_ulid *out, an_error *err);

/* The smallest id of millisecond ms (randomness all zero): a lower bound
 * for "ids created at or after ms". AN_INVALID_ARGUMENT outside the range. */
an_status an_ulid_min_at(int64_t ms, an_ulid *out, an_error *err);

/* Write the 26-character uppercase text and a NUL. */
void an_ulid_format(const an_ulid *id, char out[AN_ULID_STRLEN]);

/* Parse a NUL-terminated 26-character ULID (see above for what is accepted).
 * On error out is untouched. */
an_status an_ulid_parse(const char *s, an_ulid *out, an_error *err);

/* True when an_ulid_parse would accept s. */
bool an_ulid_valid(const char *s);

/* The creation time in epoch milliseconds. */
int64_t an_ulid_time_ms(const an_ulid *id);

/* <0, 0, >0 like memcmp; the order is creation order. */
int an_ulid_compare(const an_ulid *a, const an_ulid *b);

#endif
