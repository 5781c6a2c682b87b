/*
 * hasher.h - the keyed hash of the hot tier: HMAC-SHA-256 under the secret
 * ANALYTICS_INGEST_HMAC_KEY, as 64 lowercase hex digits, for actor ids and
 * for the values of PII keys configured to be hashed.
 *
 * The HMAC pads are hashed once at creation, so one hash costs two SHA-256
 * compressions of the input instead of a full HMAC set-up, and recent
 * inputs (actors repeat) are answered from a small cache. The result is
 * byte-for-byte an_crypto_hmac_sha256_hex() of the same key and input.
 *
 * Not thread-safe: one hasher per thread.
 */
#ifndef INGEST_HASHER_H
#define INGEST_HASHER_H

#include "common/crypto.h"
#include "common/status.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ingest_hasher ingest_hasher;

/* key is copied. Free with ingest_hasher_free. */
an_status ingest_hasher_new(const void *key, size_t key_len, ingest_hasher **out, an_error *err);
void ingest_hasher_free(ingest_hasher *h);

/* HMAC-SHA-256(key, data) as hex plus NUL. */
void ingest_hasher_hex(ingest_hasher *h, const void *data, size_t n,
                       char out[AN_CRYPTO_SHA256_HEX]);

/* Hashes computed and answered from the cache, for tests and metrics. */
void ingest_hasher_stats(const ingest_hasher *h, uint64_t *computed, uint64_t *cached);

#endif
