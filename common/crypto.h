/*
 * crypto.h - the few primitives the services need, on OpenSSL libcrypto:
 * SHA-256, HMAC-SHA-256 (keyed hashing of actor ids, signed download links),
 * constant-time comparison, CSPRNG bytes, hex, and unpadded base64url.
 *
 * All functions are thread-safe. Outputs go to caller-provided arrays or
 * are appended to a caller's an_buf; nothing here allocates for the caller.
 */
#ifndef AN_CRYPTO_H
#define AN_CRYPTO_H

#include "common/buf.h"
#include "common/status.h"

#include <stdbool.h>
#include <stddef.h>

#define AN_CRYPTO_SHA256_LEN 32 /* bytes of a SHA-256 digest or HMAC-SHA-256 tag */
#define AN_CRYPTO_SHA256_HEX 65 /* lowercase hex of one, plus the NUL */

/* SHA-256 of data[0..n). out receives 32 bytes. */
an_status an_crypto_sha256(const void *data, size_t n, unsigned char out[AN_CRYPTO_SHA256_LEN],
                           an_error *err);
/* Same, as 64 lowercase hex digits plus NUL. */
an_status an_crypto_sha256_hex(const void *data, size_t n, char out[AN_CRYPTO_SHA256_HEX],
                               an_error *err);

/* HMAC-SHA-256 of data under key (any length, including 0). */
an_status an_crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t n,
                                unsigned char out[AN_CRYPTO_SHA256_LEN], an_error *err);
/* Same, as 64 lowercase hex digits plus NUL. */
an_status an_crypto_hmac_sha256_hex(const void *key, size_t key_len, const void *data, size_t n,
                                    char out[AN_CRYPTO_SHA256_HEX], an_error *err);

/* Compare n bytes in time independent of their content (CRYPTO_memcmp).
 * Use it for every comparison of a secret-derived value (tags, tokens). */
bool an_crypto_equal(const void *a, const void *b, size_t n);

/* Compare two NUL-terminated strings without an early exit on the first
 * differing byte. Only the lengths may leak through timing, which is fine
 * for fixed-length encodings (hex or base64url of a tag). NULL equals nothing. */
bool an_crypto_str_equal(const char *a, const char *b);

/* Fill out with n bytes from OpenSSL's CSPRNG. */
an_status an_crypto_random(void *out, size_t n, an_error *err);

/* Write 2n lowercase hex digits and a NUL to out (which has 2n + 1 bytes). */
void an_crypto_hex(const void *data, size_t n, char *out);

/* The value of one hex digit (0-9, a-f, A-F), or -1 when c is not one. */
int an_crypto_hex_value(char c);

/* Append the base64url encoding of data (RFC 4648 section 5: '-' and '_',
 * no '=' padding) to out. */
void an_crypto_b64url_encode(const void *data, size_t n, an_buf *out);

/* Decode len characters of unpadded base64url and append the bytes to out.
 * Strict, so that one byte string has exactly one accepted encoding (a
 * signature cannot be altered into another valid text): rejects '=',
 * characters outside [A-Za-z0-9_-], a length of 4k+1, and non-zero unused
 * bits in the last character. On error out is left as it was. */
an_status an_crypto_b64url_decode(const char *s, size_t len, an_buf *out, an_error *err);

#endif
