#include "common/buf.h"
#include "common/crypto.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static void fill(unsigned char *p, unsigned char v, size_t n)
{
    memset(p, v, n);
}

START_TEST(test_sha256_matches_nist_vectors)
{
    static const struct {
        const char *msg;
        const char *hex;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmno"
         "pqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char hex[AN_CRYPTO_SHA256_HEX];
        ck_assert_int_eq(an_crypto_sha256_hex(v[i].msg, strlen(v[i].msg), hex, NULL), AN_OK);
        ck_assert_str_eq(hex, v[i].hex);
    }
    /* One million 'a' (NIST long message). */
    size_t n = 1000000;
    char *m = malloc(n);
    memset(m, 'a', n);
    char hex[AN_CRYPTO_SHA256_HEX];
    ck_assert_int_eq(an_crypto_sha256_hex(m, n, hex, NULL), AN_OK);
    ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    free(m);
}
END_TEST

START_TEST(test_hmac_sha256_matches_rfc4231_vectors)
{
    unsigned char key[131], data[152];
    char hex[AN_CRYPTO_SHA256_HEX];

    /* Test case 1 */
    fill(key, 0x0b, 20);
    ck_assert_int_eq(an_crypto_hmac_sha256_hex(key, 20, "Hi There", 8, hex, NULL), AN_OK);
    ck_assert_str_eq(hex, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");

    /* Test case 2: a key shorter than the output */
    const char *d2 = "what do ya want for nothing?";
    ck_assert_int_eq(an_crypto_hmac_sha256_hex("Jefe", 4, d2, strlen(d2), hex, NULL), AN_OK);
    ck_assert_str_eq(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    /* Test case 3 */
    fill(key, 0xaa, 20);
    fill(data, 0xdd, 50);
    ck_assert_int_eq(an_crypto_hmac_sha256_hex(key, 20, data, 50, hex, NULL), AN_OK);
    ck_assert_str_eq(hex, "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");

    /* Test case 4 */
    for (int i = 0; i < 25; i++)
        key[i] = (unsigned char)(i + 1);
    fill(data, 0xcd, 50);
    ck_assert_int_eq(an_crypto_hmac_sha256_hex(key, 25, data, 50, hex, NULL), AN_OK);
    ck_assert_str_eq(hex, "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");

    /* Test case 5: truncated to 128 bits */
    unsigned char raw[AN_CRYPTO_SHA256_LEN];
    fill(key, 0x0c, 20);
    ck_assert_int_eq(an_crypto_hmac_sha256(key, 20, "Test With Truncation", 20, raw, NULL), AN_OK);
    char trunc[33];
    an_crypto_hex(raw, 16, trunc);
    ck_assert_str_eq(trunc, "a3b6167473100ee06e0c796c2955552b");

    /* Test case 6: a key larger than the block size */
    fill(key, 0xaa, 131);
    const char *d6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    ck_assert_int_eq(an_crypto_hmac_sha256_hex(key, 131, d6, strlen(d6), hex, NULL), AN_OK);
    ck_assert_str_eq(hex, "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");

    /* Test case 7: key and data larger than the block size */
    const char *d7 = "This is a test using a larger than block-size key and a larger than "
                     "block-size data. The key needs to be hashed before being used by the "
                     "HMAC algorithm.";
    ck_assert_int_eq(an_crypto_hmac_sha256_hex(key, 131, d7, strlen(d7), hex, NULL), AN_OK);
    ck_assert_str_eq(hex, "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");
}
END_TEST

START_TEST(test_hmac_accepts_empty_key_and_empty_data)
{
    char hex[AN_CRYPTO_SHA256_HEX];
    /* HMAC-SHA256("", "") is a well-known constant. */
    ck_assert_int_eq(an_crypto_hmac_sha256_hex(NULL, 0, NULL, 0, hex, NULL), AN_OK);
    ck_assert_str_eq(hex, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}
END_TEST

START_TEST(test_constant_time_compare_tells_equal_from_different)
{
    ck_assert(an_crypto_equal("abcdef", "abcdef", 6));
    ck_assert(!an_crypto_equal("abcdef", "abcdeg", 6));
    ck_assert(!an_crypto_equal("xbcdef", "abcdef", 6));
    ck_assert(an_crypto_equal("a", "b", 0));
    ck_assert(an_crypto_str_equal("sig123", "sig123"));
    ck_assert(!an_crypto_str_equal("sig123", "sig12"));
    ck_assert(!an_crypto_str_equal("sig123", "sig124"));
    ck_assert(!an_crypto_str_equal(NULL, "x"));
    ck_assert(!an_crypto_str_equal("x", NULL));
    ck_assert(an_crypto_str_equal("", ""));
}
END_TEST

START_TEST(test_random_bytes_differ_between_calls)
{
    unsigned char a[32], b[32], zero[32] = {0};
    ck_assert_int_eq(an_crypto_random(a, sizeof(a), NULL), AN_OK);
    ck_assert_int_eq(an_crypto_random(b, sizeof(b), NULL), AN_OK);
    ck_assert(memcmp(a, b, sizeof(a)) != 0);
    ck_assert(memcmp(a, zero, sizeof(a)) != 0);
}
END_TEST

START_TEST(test_b64url_matches_rfc4648_vectors_without_padding)
{
    static const char *v[][2] = {
        {"", ""},           {"f", "Zg"},          {"fo", "Zm8"},         {"foo", "Zm9v"},
        {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        an_buf b = AN_BUF_INIT;
        an_crypto_b64url_encode(v[i][0], strlen(v[i][0]), &b);
        ck_assert_str_eq(an_buf_str(&b), v[i][1]);
        an_buf d = AN_BUF_INIT;
        ck_assert_int_eq(an_crypto_b64url_decode(v[i][1], strlen(v[i][1]), &d, NULL), AN_OK);
        ck_assert_uint_eq(d.len, strlen(v[i][0]));
        ck_assert_str_eq(an_buf_str(&d), v[i][0]);
        an_buf_free(&b);
        an_buf_free(&d);
    }
    /* The URL-safe alphabet: 0xfb 0xff is "+/8=" in standard base64. */
    an_buf b = AN_BUF_INIT;
    an_crypto_b64url_encode("\xfb\xff", 2, &b);
    ck_assert_str_eq(an_buf_str(&b), "-_8");
    an_buf_free(&b);
}
END_TEST

START_TEST(test_b64url_round_trips_every_length)
{
    unsigned char data[100];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (unsigned char)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof(data); n++) {
        an_buf e = AN_BUF_INIT, d = AN_BUF_INIT;
        an_crypto_b64url_encode(data, n, &e);
        ck_assert_uint_eq(e.len, (n * 4 + 2) / 3);
        ck_assert_ptr_null(strchr(an_buf_str(&e), '='));
        ck_assert_int_eq(an_crypto_b64url_decode(e.data, e.len, &d, NULL), AN_OK);
        ck_assert_uint_eq(d.len, n);
        ck_assert(n == 0 || memcmp(d.data, data, n) == 0);
        an_buf_free(&e);
        an_buf_free(&d);
    }
}
END_TEST

START_TEST(test_b64url_decode_rejects_padding_bad_chars_and_noncanonical)
{
    /* "Zh", "Zm9" and "Zm9vYmF" leave non-zero unused bits ("Zg", "Zm8", "Zm9vYmE" are
     * the canonical forms); "Z" and "Zm9vY" have an impossible length. */
    static const char *bad[] = {"Zg==",   "Zm8=", "Z",    "Zm9vY", "Zh",   "Zm9",
                                "Zm9v+w", "Zm/v", "Zm 9", "Zm9\n", "Zm9=", "Zm9vYmF"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        an_buf d = AN_BUF_INIT;
        an_buf_adds(&d, "keep");
        an_error err;
        size_t len = strlen(bad[i]);
        ck_assert_msg(an_crypto_b64url_decode(bad[i], len, &d, &err) == AN_INVALID_ARGUMENT,
                      "accepted '%s'", bad[i]);
        ck_assert_str_eq(an_buf_str(&d), "keep");
        an_buf_free(&d);
    }
    /* An embedded NUL is a bad character, not an end of input. */
    an_buf d = AN_BUF_INIT;
    ck_assert_int_eq(an_crypto_b64url_decode("Zm\0v", 4, &d, NULL), AN_INVALID_ARGUMENT);
    ck_assert_uint_eq(d.len, 0);
    an_buf_free(&d);
}
END_TEST

Suite *crypto_suite(void)
{
    Suite *s = suite_create("crypto");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_sha256_matches_nist_vectors);
    tcase_add_test(tc, test_hmac_sha256_matches_rfc4231_vectors);
    tcase_add_test(tc, test_hmac_accepts_empty_key_and_empty_data);
    tcase_add_test(tc, test_constant_time_compare_tells_equal_from_different);
    tcase_add_test(tc, test_random_bytes_differ_between_calls);
    tcase_add_test(tc, test_b64url_matches_rfc4648_vectors_without_padding);
    tcase_add_test(tc, test_b64url_round_trips_every_length);
    tcase_add_test(tc, test_b64url_decode_rejects_padding_bad_chars_and_noncanonical);
    suite_add_tcase(s, tc);
    return s;
}
