/*
 * Signed download links of the exports service: a link works until its
 * expiry, and any change to its key, expiry or signature is refused.
 */
#include "exports/exports.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

#define SECRET "links-secret-0123456789abcdefghijklmnopq"

static exports_links *links(void)
{
    exports_links *l = NULL;
    ck_assert_int_eq(exports_links_new(SECRET, strlen(SECRET), "/tmp", &l, NULL), AN_OK);
    exports_links_set_base(l, "http://127.0.0.1:8080/");
    return l;
}

/* The query part of url (after '?'), copied; the key goes to key. */
static char *split(const char *url, char *key, size_t n)
{
    const char *p = strstr(url, EXPORTS_LINK_PREFIX);
    ck_assert_ptr_nonnull(p);
    p += strlen(EXPORTS_LINK_PREFIX);
    const char *q = strchr(p, '?');
    ck_assert_ptr_nonnull(q);
    snprintf(key, n, "%.*s", (int)(q - p), p);
    return strdup(q + 1);
}

START_TEST(test_link_works_until_it_expires)
{
    exports_links *l = links();
    an_buf url = AN_BUF_INIT;
    exports_links_url(l, "01HX.csv", 2000000000, &url);
    const char *want = "http://127.0.0.1:8080/downloads/01HX.csv?exp=2000000000&sig=";
    ck_assert_msg(strncmp(url.data, want, strlen(want)) == 0, "%s", url.data);
    ck_assert_uint_eq(url.len, strlen(want) + 43); /* base64url of 32 bytes */
    char key[64];
    char *q = split(url.data, key, sizeof(key));
    ck_assert_str_eq(key, "01HX.csv");
    ck_assert_int_eq(exports_links_verify(l, key, q, 1999999999, NULL), AN_OK);
    ck_assert_int_eq(exports_links_verify(l, key, q, 2000000000, NULL), AN_FAILED_PRECONDITION);
    free(q);
    an_buf_free(&url);
    exports_links_free(l);
}
END_TEST

START_TEST(test_altered_links_are_refused)
{
    exports_links *l = links();
    an_buf url = AN_BUF_INIT;
    exports_links_url(l, "01HX.csv", 2000000000, &url);
    char key[64];
    char *q = split(url.data, key, sizeof(key));
    /* another file */
    ck_assert_int_eq(exports_links_verify(l, "01HY.csv", q, 1000, NULL), AN_PERMISSION_DENIED);
    /* a later expiry */
    char *later = strdup(q);
    later[4] = '3';
    ck_assert_int_eq(exports_links_verify(l, key, later, 1000, NULL), AN_PERMISSION_DENIED);
    /* one character of the signature */
    char *bad = strdup(q);
    char *sig = strstr(bad, "sig=") + 4;
    sig[5] = sig[5] == 'A' ? 'B' : 'A';
    ck_assert_int_eq(exports_links_verify(l, key, bad, 1000, NULL), AN_PERMISSION_DENIED);
    /* missing parts, junk, leading zeros */
    ck_assert_int_eq(exports_links_verify(l, key, "exp=2000000000", 1000, NULL),
                     AN_PERMISSION_DENIED);
    ck_assert_int_eq(exports_links_verify(l, key, "", 1000, NULL), AN_PERMISSION_DENIED);
    char *zero;
    ck_assert(asprintf(&zero, "exp=02000000000&%s", strstr(q, "sig=")) > 0);
    ck_assert_int_eq(exports_links_verify(l, key, zero, 1000, NULL), AN_PERMISSION_DENIED);
    /* another secret */
    exports_links *other = NULL;
    ck_assert_int_eq(
        exports_links_new("another-secret-0123456789abcdefghijklm", 37, "/tmp", &other, NULL),
        AN_OK);
    ck_assert_int_eq(exports_links_verify(other, key, q, 1000, NULL), AN_PERMISSION_DENIED);
    exports_links_free(other);
    free(zero);
    free(bad);
    free(later);
    free(q);
    an_buf_free(&url);
    exports_links_free(l);
}
END_TEST

START_TEST(test_keys_cannot_leave_the_directory)
{
    ck_assert(exports_key_valid("01HX.csv"));
    ck_assert(exports_key_valid("01HX.ndjson"));
    ck_assert(!exports_key_valid("../etc/passwd"));
    ck_assert(!exports_key_valid("a/b.csv"));
    ck_assert(!exports_key_valid(".hidden"));
    ck_assert(!exports_key_valid("a..b"));
    ck_assert(!exports_key_valid("a%2Fb"));
    ck_assert(!exports_key_valid(""));
    exports_links *l = links();
    ck_assert_int_eq(exports_links_verify(l, "../x", "exp=1&sig=x", 0, NULL), AN_PERMISSION_DENIED);
    exports_links_free(l);
}
END_TEST

START_TEST(test_short_secrets_are_refused)
{
    exports_links *l = NULL;
    ck_assert_int_eq(exports_links_new("short", 5, "/tmp", &l, NULL), AN_INVALID_ARGUMENT);
    ck_assert_ptr_null(l);
}
END_TEST

Suite *exports_links_suite(void)
{
    Suite *s = suite_create("exports_links");
    TCase *tc = tcase_create("links");
    tcase_add_test(tc, test_link_works_until_it_expires);
    tcase_add_test(tc, test_altered_links_are_refused);
    tcase_add_test(tc, test_keys_cannot_leave_the_directory);
    tcase_add_test(tc, test_short_secrets_are_refused);
    suite_add_tcase(s, tc);
    return s;
}
