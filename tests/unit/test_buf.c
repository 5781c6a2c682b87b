#include "common/buf.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

START_TEST(test_buf_empty_reads_as_empty_string)
{
    an_buf b = AN_BUF_INIT;
    ck_assert_ptr_null(b.data);
    ck_assert_str_eq(an_buf_str(&b), "");
    an_buf_grow(&b, 100);
    ck_assert_ptr_nonnull(b.data);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_uint_ge(b.cap, 101);
    /* grown but never written: still "" (the NUL promise of buf.h) */
    ck_assert_str_eq(an_buf_str(&b), "");
    an_buf_free(&b);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.cap, 0);
    an_buf_free(NULL);
}
END_TEST

START_TEST(test_buf_appends_bytes_strings_chars_and_formats)
{
    an_buf b;
    an_buf_init(&b);
    an_buf_add(&b, "ab\0cd", 5);
    ck_assert_uint_eq(b.len, 5);
    ck_assert_int_eq(memcmp(b.data, "ab\0cd", 6), 0); /* includes the trailing NUL */
    an_buf_reset(&b);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_str_eq(an_buf_str(&b), "");
    an_buf_adds(&b, "x=");
    an_buf_addf(&b, "%d,%s,%.2f", 42, "y", 1.5);
    an_buf_addc(&b, '!');
    an_buf_add(&b, NULL, 0);
    an_buf_addf(&b, "%s", "");
    ck_assert_str_eq(an_buf_str(&b), "x=42,y,1.50!");
    ck_assert_uint_eq(b.len, strlen("x=42,y,1.50!"));
    an_buf_free(&b);
}
END_TEST

START_TEST(test_buf_grows_through_many_doublings_keeping_content)
{
    an_buf b = AN_BUF_INIT;
    for (int i = 0; i < 100000; i++)
        an_buf_addc(&b, (char)('a' + i % 26));
    ck_assert_uint_eq(b.len, 100000);
    ck_assert_uint_gt(b.cap, b.len);
    for (int i = 0; i < 100000; i++)
        ck_assert_int_eq(b.data[i], 'a' + i % 26);
    ck_assert_int_eq(b.data[b.len], '\0');
    /* one formatted append larger than the current capacity */
    an_buf_reset(&b);
    char big[70000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    an_buf_addf(&b, "<%s>", big);
    ck_assert_uint_eq(b.len, sizeof(big) + 1);
    ck_assert_int_eq(b.data[0], '<');
    ck_assert_int_eq(b.data[b.len - 1], '>');
    an_buf_free(&b);
}
END_TEST

START_TEST(test_buf_json_escaping_covers_quotes_backslash_and_controls)
{
    an_buf b = AN_BUF_INIT;
    const char in[] = "a\"b\\c\nd\re\tf\bg\fh\x01i\x1fj\x7f\xc3\xa9";
    an_buf_add_json_escaped(&b, in, sizeof(in) - 1);
    ck_assert_str_eq(an_buf_str(&b), "a\\\"b\\\\c\\nd\\re\\tf\\bg\\fh\\u0001i\\u001fj\x7f\xc3\xa9");
    /* an embedded NUL is data, escaped like any control character */
    an_buf_reset(&b);
    an_buf_add_json_escaped(&b, "x\0y", 3);
    ck_assert_str_eq(an_buf_str(&b), "x\\u0000y");
    an_buf_free(&b);
}
END_TEST

START_TEST(test_buf_detach_hands_over_storage)
{
    an_buf b = AN_BUF_INIT;
    an_buf_adds(&b, "hello");
    size_t len = 0;
    char *s = an_buf_detach(&b, &len);
    ck_assert_str_eq(s, "hello");
    ck_assert_uint_eq(len, 5);
    ck_assert_ptr_null(b.data);
    ck_assert_uint_eq(b.len, 0);
    free(s);
    /* detaching an untouched buffer still gives a string the caller frees */
    s = an_buf_detach(&b, &len);
    ck_assert_ptr_nonnull(s);
    ck_assert_str_eq(s, "");
    ck_assert_uint_eq(len, 0);
    free(s);
    s = an_buf_detach(&b, NULL);
    ck_assert_str_eq(s, "");
    free(s);
}
END_TEST

START_TEST(test_buf_uri_decoding_round_trips_and_refuses_bad_escapes)
{
    an_buf b = AN_BUF_INIT;
    const char *raw = "a b/c+d%\xe2\x82\xac~";
    an_buf_add_uri_encoded(&b, raw, strlen(raw), false);
    ck_assert_str_eq(an_buf_str(&b), "a%20b%2Fc%2Bd%25%E2%82%AC~");
    an_buf enc = b;
    an_buf_init(&b);
    ck_assert(an_buf_add_uri_decoded(&b, enc.data, enc.len, true));
    ck_assert_str_eq(an_buf_str(&b), raw);
    an_buf_free(&enc);

    an_buf_reset(&b); /* '+' is a space only in form encoding; hex in either case */
    ck_assert(an_buf_add_uri_decoded(&b, "x+y%2b%2Bz%e2%82%ac", 19, true));
    ck_assert_str_eq(an_buf_str(&b), "x y++z\xe2\x82\xac");
    an_buf_reset(&b);
    ck_assert(an_buf_add_uri_decoded(&b, "x+y", 3, false));
    ck_assert_str_eq(an_buf_str(&b), "x+y");

    static const char *const bad[] = {"%", "a%4", "%zz", "%4g", "a%00b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        an_buf_reset(&b);
        ck_assert_msg(!an_buf_add_uri_decoded(&b, bad[i], strlen(bad[i]), true), "%s", bad[i]);
    }
    an_buf_free(&b);
}
END_TEST

Suite *buf_suite(void)
{
    Suite *s = suite_create("buf");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_buf_empty_reads_as_empty_string);
    tcase_add_test(tc, test_buf_appends_bytes_strings_chars_and_formats);
    tcase_add_test(tc, test_buf_grows_through_many_doublings_keeping_content);
    tcase_add_test(tc, test_buf_json_escaping_covers_quotes_backslash_and_controls);
    tcase_add_test(tc, test_buf_detach_hands_over_storage);
    tcase_add_test(tc, test_buf_uri_decoding_round_trips_and_refuses_bad_escapes);
    suite_add_tcase(s, tc);
    return s;
}
