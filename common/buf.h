/*
 * buf.h - a growable byte buffer (after git's strbuf).
 *
 * An an_buf is always NUL-terminated after its len bytes, so buf.data can be
 * used as a C string when the content is text. Initialise with AN_BUF_INIT
 * or an_buf_init(); release with an_buf_free(). Allocation failure aborts
 * the process (there is no sane recovery from OOM in a service).
 */
#ifndef AN_BUF_H
#define AN_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct an_buf {
    char *data; /* NUL-terminated; NULL only before the first write */
    size_t len; /* bytes used, not counting the NUL */
    size_t cap; /* bytes allocated */
} an_buf;

#define AN_BUF_INIT                                                                                \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void an_buf_init(an_buf *b);
/* Free the storage and reset to empty. b may be NULL. */
void an_buf_free(an_buf *b);
/* Empty the buffer, keeping its storage. */
void an_buf_reset(an_buf *b);
/* Append s percent-encoded: RFC 3986 unreserved characters (A-Z a-z 0-9
 * - _ . ~) kept, and '/' too when keep_slash; every other byte as %XX
 * (uppercase). For URL parameters and S3 paths. */
void an_buf_add_uri_encoded(an_buf *b, const char *s, size_t n, bool keep_slash);
/* Append s[0..n) percent-decoded (%XX in either case), '+' as a space when
 * plus_is_space (form and query-string encoding). False on a bad escape or
 * %00 (a NUL would cut the text short), with b holding what was decoded
 * before it. */
bool an_buf_add_uri_decoded(an_buf *b, const char *s, size_t n, bool plus_is_space);
/* Append v in decimal, zero-padded to at least min_digits (up to 20),
 * without printf (hot paths: TSV rows, JSON numbers). */
void an_buf_add_u64(an_buf *b, uint64_t v, int min_digits);
/* Cut the buffer back to its first len bytes (len <= b->len), e.g. to drop
 * what was appended since a mark. */
void an_buf_setlen(an_buf *b, size_t len);
/* Make room for n more bytes. */
void an_buf_grow(an_buf *b, size_t n);
void an_buf_add(an_buf *b, const void *data, size_t n);
void an_buf_adds(an_buf *b, const char *s);
void an_buf_addc(an_buf *b, char c);
void an_buf_addf(an_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void an_buf_vaddf(an_buf *b, const char *fmt, va_list ap);
/* Append s as the inside of a JSON string (escaped, without the quotes). */
void an_buf_add_json_escaped(an_buf *b, const char *s, size_t n);
/* The content as a C string ("" when empty); never NULL. */
const char *an_buf_str(const an_buf *b);
/* Hand the storage over: the caller now owns the returned string and must
 * free(3) it; b is reset to empty. Never NULL. */
char *an_buf_detach(an_buf *b, size_t *len);

#endif
