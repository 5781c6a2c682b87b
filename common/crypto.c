#include "common/crypto.h"

#include <limits.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <string.h>

an_status an_crypto_sha256(const void *data, size_t n, unsigned char out[AN_CRYPTO_SHA256_LEN],
                           an_error *err)
{
    unsigned int len = 0;
    static const unsigned char empty;
    if (EVP_Digest(data ? data : &empty, n, out, &len, EVP_sha256(), NULL) != 1 ||
        len != AN_CRYPTO_SHA256_LEN)
        return an_error_set(err, AN_INTERNAL, "sha256: OpenSSL EVP_Digest failed");
    return AN_OK;
}

an_status an_crypto_sha256_hex(const void *data, size_t n, char out[AN_CRYPTO_SHA256_HEX],
                               an_error *err)
{
    unsigned char md[AN_CRYPTO_SHA256_LEN];
    an_status s = an_crypto_sha256(data, n, md, err);
    if (s == AN_OK)
        an_crypto_hex(md, sizeof(md), out);
    return s;
}

an_status an_crypto_hmac_sha256(const void *key, size_t key_len, const void *data, size_t n,
                                unsigned char out[AN_CRYPTO_SHA256_LEN], an_error *err)
{
    /* OpenSSL 3 refuses a NULL key even with length 0; an empty key is legal HMAC. */
    static const unsigned char empty;
    if (key_len > INT_MAX)
        return an_error_set(err, AN_INVALID_ARGUMENT, "hmac: key too long");
    unsigned int len = 0;
    if (!HMAC(EVP_sha256(), key_len ? key : &empty, (int)key_len,
              data ? (const unsigned char *)data : &empty, n, out, &len) ||
        len != AN_CRYPTO_SHA256_LEN)
        return an_error_set(err, AN_INTERNAL, "hmac: OpenSSL HMAC failed");
    return AN_OK;
}

an_status an_crypto_hmac_sha256_hex(const void *key, size_t key_len, const void *data, size_t n,
                                    char out[AN_CRYPTO_SHA256_HEX], an_error *err)
{
    unsigned char md[AN_CRYPTO_SHA256_LEN];
    an_status s = an_crypto_hmac_sha256(key, key_len, data, n, md, err);
    if (s == AN_OK)
        an_crypto_hex(md, sizeof(md), out);
    return s;
}

bool an_crypto_equal(const void *a, const void *b, size_t n)
{
    return n == 0 || CRYPTO_memcmp(a, b, n) == 0;
}

bool an_crypto_str_equal(const char *a, const char *b)
{
    if (!a || !b)
        return false;
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return false;
    return an_crypto_equal(a, b, la);
}

an_status an_crypto_random(void *out, size_t n, an_error *err)
{
    unsigned char *p = out;
    while (n > 0) {
        int chunk = n > INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(p, chunk) != 1)
            return an_error_set(err, AN_INTERNAL, "random: OpenSSL RAND_bytes failed");
        p += chunk;
        n -= (size_t)chunk;
    }
    return AN_OK;
}

void an_crypto_hex(const void *data, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[p[i] >> 4];
        out[2 * i + 1] = digits[p[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- base64url ---------------------------------------------------------- */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void an_crypto_b64url_encode(const void *data, size_t n, an_buf *out)
{
    const unsigned char *p = data;
    an_buf_grow(out, (n + 2) / 3 * 4);
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8 | p[i + 2];
        char q[4] = {b64url[v >> 18], b64url[(v >> 12) & 63], b64url[(v >> 6) & 63],
                     b64url[v & 63]};
        an_buf_add(out, q, 4);
    }
    if (n - i == 1) {
        unsigned v = (unsigned)p[i] << 16;
        char q[2] = {b64url[v >> 18], b64url[(v >> 12) & 63]};
        an_buf_add(out, q, 2);
    } else if (n - i == 2) {
        unsigned v = (unsigned)p[i] << 16 | (unsigned)p[i + 1] << 8;
        char q[3] = {b64url[v >> 18], b64url[(v >> 12) & 63], b64url[(v >> 6) & 63]};
        an_buf_add(out, q, 3);
    }
}

static int b64url_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '-')
        return 62;
    if (c == '_')
        return 63;
    return -1;
}

an_status an_crypto_b64url_decode(const char *s, size_t len, an_buf *out, an_error *err)
{
    if (len % 4 == 1)
        return an_error_set(err, AN_INVALID_ARGUMENT,
                            "base64url: length %zu is not a valid unpadded length", len);
    size_t start = out->len;
    an_buf_grow(out, len / 4 * 3 + 2);
    unsigned acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64url_value((unsigned char)s[i]);
        if (v < 0) {
            an_buf_setlen(out, start);
            return an_error_set(err, AN_INVALID_ARGUMENT,
                                "base64url: invalid character at offset %zu", i);
        }
        acc = (acc << 6 | (unsigned)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            an_buf_addc(out, (char)((acc >> bits) & 0xff));
        }
    }
    /* The 2 or 4 bits left over must be zero, else two texts decode alike. */
    if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) {
        an_buf_setlen(out, start);
        return an_error_set(err, AN_INVALID_ARGUMENT, "base64url: non-canonical last character");
    }
    return AN_OK;
}

int an_crypto_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}
