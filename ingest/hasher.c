#include "ingest/hasher.h"

#include <openssl/evp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_SLOTS 4096 /* power of two */
#define CACHE_INPUT 64   /* longer inputs are not cached */
#define BLOCK       64   /* SHA-256 block size */

typedef struct cache_slot {
    uint8_t len; /* 0: empty (an empty input is not cached) */
    char input[CACHE_INPUT];
    char hex[AN_CRYPTO_SHA256_HEX];
} cache_slot;

struct ingest_hasher {
    EVP_MD_CTX *inner; /* SHA-256 state after the ipad block */
    EVP_MD_CTX *outer; /* after the opad block */
    EVP_MD_CTX *work;
    cache_slot *cache;
    uint64_t computed, cached;
};

an_status ingest_hasher_new(const void *key, size_t key_len, ingest_hasher **out, an_error *err)
{
    unsigned char k[BLOCK] = {0}, pad[BLOCK];
    if (key_len > BLOCK) {
        an_status s = an_crypto_sha256(key, key_len, k, err);
        if (s != AN_OK)
            return s;
    } else if (key_len) {
        memcpy(k, key, key_len);
    }
    ingest_hasher *h = calloc(1, sizeof(*h));
    if (!h)
        abort();
    h->cache = calloc(CACHE_SLOTS, sizeof(cache_slot));
    h->inner = EVP_MD_CTX_new();
    h->outer = EVP_MD_CTX_new();
    h->work = EVP_MD_CTX_new();
    if (!h->cache || !h->inner || !h->outer || !h->work)
        abort();
    bool ok = EVP_DigestInit_ex(h->inner, EVP_sha256(), NULL) == 1;
    for (int i = 0; i < BLOCK; i++)
        pad[i] = k[i] ^ 0x36;
    ok = ok && EVP_DigestUpdate(h->inner, pad, BLOCK) == 1;
    ok = ok && EVP_DigestInit_ex(h->outer, EVP_sha256(), NULL) == 1;
    for (int i = 0; i < BLOCK; i++)
        pad[i] = k[i] ^ 0x5c;
    ok = ok && EVP_DigestUpdate(h->outer, pad, BLOCK) == 1;
    memset(k, 0, sizeof(k));
    memset(pad, 0, sizeof(pad));
    if (!ok) {
        ingest_hasher_free(h);
        return an_error_set(err, AN_INTERNAL, "hmac: OpenSSL SHA-256 set-up failed");
    }
    *out = h;
    return AN_OK;
}

void ingest_hasher_free(ingest_hasher *h)
{
    if (!h)
        return;
    EVP_MD_CTX_free(h->inner);
    EVP_MD_CTX_free(h->outer);
    EVP_MD_CTX_free(h->work);
    free(h->cache);
    free(h);
}

static uint32_t fnv1a(const void *data, size_t n)
{
    const unsigned char *p = data;
    uint32_t x = 2166136261u;
    for (size_t i = 0; i < n; i++)
        x = (x ^ p[i]) * 16777619u;
    return x;
}

static void compute(ingest_hasher *h, const void *data, size_t n, char out[AN_CRYPTO_SHA256_HEX])
{
    unsigned char ih[32], oh[32];
    unsigned int len = 0;
    /* These cannot fail on a copied, initialised SHA-256 context; a failure
     * would be a broken OpenSSL, where aborting beats storing a wrong hash. */
    if (EVP_MD_CTX_copy_ex(h->work, h->inner) != 1 || EVP_DigestUpdate(h->work, data, n) != 1 ||
        EVP_DigestFinal_ex(h->work, ih, &len) != 1 || EVP_MD_CTX_copy_ex(h->work, h->outer) != 1 ||
        EVP_DigestUpdate(h->work, ih, 32) != 1 || EVP_DigestFinal_ex(h->work, oh, &len) != 1)
        abort();
    an_crypto_hex(oh, 32, out);
    h->computed++;
}

void ingest_hasher_hex(ingest_hasher *h, const void *data, size_t n, char out[AN_CRYPTO_SHA256_HEX])
{
    if (n == 0 || n > CACHE_INPUT) {
        compute(h, data, n, out);
        return;
    }
    cache_slot *s = &h->cache[fnv1a(data, n) & (CACHE_SLOTS - 1)];
    if (s->len == n && memcmp(s->input, data, n) == 0) {
        memcpy(out, s->hex, AN_CRYPTO_SHA256_HEX);
        h->cached++;
        return;
    }
    compute(h, data, n, out);
    s->len = (uint8_t)n;
    memcpy(s->input, data, n);
    memcpy(s->hex, out, AN_CRYPTO_SHA256_HEX);
}

void ingest_hasher_stats(const ingest_hasher *h, uint64_t *computed, uint64_t *cached)
{
    *computed = h->computed;
    *cached = h->cached;
}
