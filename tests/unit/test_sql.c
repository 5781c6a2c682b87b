#include "common/buf.h"
#include "common/sql.h"
#include "common/status.h"

#include <check.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Quote n bytes and return the literal (static storage for the test). */
static const char *quoted(const char *s, size_t n)
{
    static an_buf b = AN_BUF_INIT;
    an_buf_reset(&b);
    an_sql_quote(&b, s, n);
    return an_buf_str(&b);
}

/* Decode a literal the way ClickHouse does for the escapes an_sql_quote
 * writes; returns the byte count. Fails the test on anything unexpected. */
static size_t decode(const char *lit, char *out)
{
    size_t n = strlen(lit), j = 0;
    ck_assert_msg(n >= 2 && lit[0] == '\'' && lit[n - 1] == '\'', "not quoted: %s", lit);
    for (size_t i = 1; i < n - 1; i++) {
        char c = lit[i];
        ck_assert_msg(c != '\'', "bare quote inside %s", lit);
        ck_assert_msg((unsigned char)c >= 0x20 && c != 0x7F, "raw control byte in %s", lit);
        if (c != '\\') {
            out[j++] = c;
            continue;
        }
        c = lit[++i];
        switch (c) {
        case '\\':
            out[j++] = '\\';
            break;
        case '\'':
            out[j++] = '\'';
            break;
        case 'n':
            out[j++] = '\n';
            break;
        case 't':
            out[j++] = '\t';
            break;
        case 'r':
            out[j++] = '\r';
            break;
        case 'x': {
            char h[3] = {lit[i + 1], lit[i + 2], 0};
            out[j++] = (char)strtol(h, NULL, 16);
            i += 2;
            break;
        }
        default:
            ck_abort_msg("unexpected escape \\%c in %s", c, lit);
        }
    }
    return j;
}

START_TEST(test_sql_quote_plain_text_is_wrapped_in_single_quotes)
{
    ck_assert_str_eq(quoted("abc", 3), "'abc'");
    ck_assert_str_eq(quoted("", 0), "''");
    ck_assert_str_eq(quoted(NULL, 0), "''");
}
END_TEST

START_TEST(test_sql_quote_escapes_backslash_and_quote)
{
    ck_assert_str_eq(quoted("it's", 4), "'it\\'s'");
    ck_assert_str_eq(quoted("a\\b", 3), "'a\\\\b'");
    /* The classic breakout: a trailing backslash must not eat the closing quote. */
    ck_assert_str_eq(quoted("x\\", 2), "'x\\\\'");
    ck_assert_str_eq(quoted("\\'", 2), "'\\\\\\''");
    ck_assert_str_eq(quoted("'; DROP TABLE events; --", 24), "'\\'; DROP TABLE events; --'");
}
END_TEST

START_TEST(test_sql_quote_writes_nul_and_control_bytes_as_hex)
{
    ck_assert_str_eq(quoted("a\0b", 3), "'a\\x00b'");
    ck_assert_str_eq(quoted("\n\t\r", 3), "'\\n\\t\\r'");
    ck_assert_str_eq(quoted("\x01\x1f\x7f", 3), "'\\x01\\x1F\\x7F'");
    ck_assert_str_eq(quoted("\x1b[31m", 5), "'\\x1B[31m'");
}
END_TEST

START_TEST(test_sql_quote_keeps_valid_utf8_and_hex_escapes_invalid_bytes)
{
    ck_assert_str_eq(quoted("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14),
                     "'caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80'");
    /* a truncated 4-byte sequence at the end is escaped byte by byte */
    ck_assert_str_eq(quoted("\xf0\x9f\x98", 3), "'\\xF0\\x9F\\x98'");
    /* lone continuation, truncated sequence, overlong '/', surrogate, > U+10FFFF */
    ck_assert_str_eq(quoted("\x80", 1), "'\\x80'");
    ck_assert_str_eq(quoted("\xc3", 1), "'\\xC3'");
    ck_assert_str_eq(quoted("\xc0\xaf", 2), "'\\xC0\\xAF'");
    ck_assert_str_eq(quoted("\xed\xa0\x80", 3), "'\\xED\\xA0\\x80'");
    ck_assert_str_eq(quoted("\xf4\x90\x80\x80", 4), "'\\xF4\\x90\\x80\\x80'");
    /* An invalid lead byte cannot swallow the quote after it. */
    ck_assert_str_eq(quoted("\xe2'", 2), "'\\xE2\\''");
    ck_assert_str_eq(quoted("\xff\\", 2), "'\\xFF\\\\'");
}
END_TEST

START_TEST(test_sql_quote_round_trips_every_byte_value)
{
    char in[512], out[2048];
    for (int i = 0; i < 256; i++) {
        in[2 * i] = (char)i;
        in[2 * i + 1] = (char)(255 - i);
    }
    const char *lit = quoted(in, sizeof(in));
    ck_assert_uint_eq(decode(lit, out), sizeof(in));
    ck_assert_int_eq(memcmp(in, out, sizeof(in)), 0);
}
END_TEST

START_TEST(test_sql_quote_long_string_is_complete)
{
    size_t n = 1 << 20;
    char *s = malloc(n);
    for (size_t i = 0; i < n; i++)
        s[i] = (i % 1000 == 999) ? '\'' : 'a';
    an_buf b = AN_BUF_INIT;
    an_sql_quote(&b, s, n);
    ck_assert_uint_eq(b.len, n + 2 + n / 1000);
    char *d = malloc(b.len);
    ck_assert_uint_eq(decode(b.data, d), n);
    ck_assert_int_eq(memcmp(s, d, n), 0);
    free(d);
    free(s);
    an_buf_free(&b);
}
END_TEST

START_TEST(test_sql_quote_appends_after_existing_content)
{
    an_buf b = AN_BUF_INIT;
    an_buf_adds(&b, "x = ");
    an_sql_quote_str(&b, "o'k");
    an_buf_adds(&b, " AND y = ");
    an_sql_quote_str(&b, NULL);
    ck_assert_str_eq(an_buf_str(&b), "x = 'o\\'k' AND y = ''");
    an_buf_free(&b);
}
END_TEST

START_TEST(test_sql_numbers_cannot_form_a_comment)
{
    an_buf b = AN_BUF_INIT;
    an_buf_adds(&b, "x-");
    an_sql_int64(&b, -5);
    ck_assert_str_eq(an_buf_str(&b), "x-(-5)");
    an_buf_reset(&b);
    an_sql_int64(&b, INT64_MIN);
    an_buf_addc(&b, ' ');
    an_sql_int64(&b, 42);
    an_buf_addc(&b, ' ');
    an_sql_uint64(&b, UINT64_MAX);
    ck_assert_str_eq(an_buf_str(&b), "(-9223372036854775808) 42 18446744073709551615");
    an_buf_free(&b);
}
END_TEST

START_TEST(test_sql_double_round_trips_and_refuses_nan_and_infinity)
{
    an_buf b = AN_BUF_INIT;
    an_error err;
    ck_assert_int_eq(an_sql_double(&b, 0.1, &err), AN_OK);
    ck_assert_str_eq(an_buf_str(&b), "0.1");
    an_buf_reset(&b);
    ck_assert_int_eq(an_sql_double(&b, 2.0, &err), AN_OK);
    ck_assert_str_eq(an_buf_str(&b), "2.0");
    an_buf_reset(&b);
    ck_assert_int_eq(an_sql_double(&b, -1.5, &err), AN_OK);
    ck_assert_str_eq(an_buf_str(&b), "(-1.5)");
    an_buf_reset(&b);
    ck_assert_int_eq(an_sql_double(&b, 1e20, &err), AN_OK);
    ck_assert_str_eq(an_buf_str(&b), "1e+20");
    an_buf_reset(&b);
    double third = 1.0 / 3.0;
    ck_assert_int_eq(an_sql_double(&b, third, &err), AN_OK);
    ck_assert(strtod(an_buf_str(&b), NULL) == third);
    an_buf_reset(&b);
    ck_assert_int_eq(an_sql_double(&b, NAN, &err), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_sql_double(&b, INFINITY, &err), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_sql_double(&b, -INFINITY, &err), AN_INVALID_ARGUMENT);
    ck_assert_uint_eq(b.len, 0);
    ck_assert_ptr_nonnull(strstr(err.message, "NaN"));
    an_buf_free(&b);
}
END_TEST

START_TEST(test_sql_ident_valid_accepts_only_the_strict_pattern)
{
    ck_assert(an_sql_ident_valid("a"));
    ck_assert(an_sql_ident_valid("_"));
    ck_assert(an_sql_ident_valid("event_name"));
    ck_assert(an_sql_ident_valid("Col9_x"));
    char max[65];
    memset(max, 'a', 64);
    max[64] = '\0';
    ck_assert(an_sql_ident_valid(max));

    char over[66];
    memset(over, 'a', 65);
    over[65] = '\0';
    ck_assert(!an_sql_ident_valid(over));
    ck_assert(!an_sql_ident_valid(NULL));
    ck_assert(!an_sql_ident_valid(""));
    ck_assert(!an_sql_ident_valid("9a"));
    ck_assert(!an_sql_ident_valid("a b"));
    ck_assert(!an_sql_ident_valid("a-b"));
    ck_assert(!an_sql_ident_valid("a.b"));
    ck_assert(!an_sql_ident_valid("a`b"));
    ck_assert(!an_sql_ident_valid("a'"));
    ck_assert(!an_sql_ident_valid("x;DROP"));
    ck_assert(!an_sql_ident_valid("caf\xc3\xa9"));
    ck_assert(!an_sql_ident_valid("a\n"));
}
END_TEST

START_TEST(test_sql_property_path_valid_bounds_depth_and_length)
{
    ck_assert(an_sql_property_path_valid("course"));
    ck_assert(an_sql_property_path_valid("course.id"));
    ck_assert(an_sql_property_path_valid("a.b.c.d.e.f.g.h")); /* 8 segments */
    ck_assert(!an_sql_property_path_valid("a.b.c.d.e.f.g.h.i"));
    ck_assert(!an_sql_property_path_valid(NULL));
    ck_assert(!an_sql_property_path_valid(""));
    ck_assert(!an_sql_property_path_valid("."));
    ck_assert(!an_sql_property_path_valid("a."));
    ck_assert(!an_sql_property_path_valid(".a"));
    ck_assert(!an_sql_property_path_valid("a..b"));
    ck_assert(!an_sql_property_path_valid("a.1b"));
    ck_assert(!an_sql_property_path_valid("a.b'"));
    ck_assert(!an_sql_property_path_valid("a.b c"));
    ck_assert(!an_sql_property_path_valid("a/b"));
    /* 4 segments of 64 bytes + 3 dots = 259 > 255 */
    char p[300];
    memset(p, 'x', sizeof(p));
    p[64] = p[129] = p[194] = '.';
    p[259] = '\0';
    ck_assert(!an_sql_property_path_valid(p));
    p[255 - 1] = '\0'; /* 4th segment 59 bytes: 254 in all */
    ck_assert(an_sql_property_path_valid(p));
}
END_TEST

START_TEST(test_sql_ident_check_names_the_field)
{
    an_error err;
    ck_assert_int_eq(an_sql_ident_check("dimension", "ok_name", &err), AN_OK);
    ck_assert_int_eq(an_sql_ident_check("dimension", "bad name\"", &err), AN_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "dimension");
    ck_assert_ptr_nonnull(strstr(err.message, "dimension"));
    ck_assert_ptr_nonnull(strstr(err.message, "bad name\\x22"));
    ck_assert_int_eq(an_sql_property_path_check("path", "a..b", &err), AN_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "path");
    ck_assert_int_eq(an_sql_property_path_check("path", "a.b", &err), AN_OK);
}
END_TEST

START_TEST(test_sql_ident_emits_backquoted_names_only_when_valid)
{
    an_buf b = AN_BUF_INIT;
    an_error err;
    ck_assert_int_eq(an_sql_ident(&b, "from", &err), AN_OK);
    ck_assert_str_eq(an_buf_str(&b), "`from`");
    ck_assert_int_eq(an_sql_ident(&b, "a`; DROP", &err), AN_INVALID_ARGUMENT);
    ck_assert_str_eq(an_buf_str(&b), "`from`");
    an_buf_free(&b);
}
END_TEST

START_TEST(test_sql_table_name_valid_wants_database_and_table)
{
    ck_assert(an_sql_table_name_valid("analytics.events"));
    ck_assert(!an_sql_table_name_valid("events"));
    ck_assert(!an_sql_table_name_valid("a.b.c"));
    ck_assert(!an_sql_table_name_valid(".events"));
    ck_assert(!an_sql_table_name_valid("analytics."));
    ck_assert(!an_sql_table_name_valid(NULL));
}
END_TEST

Suite *sql_suite(void)
{
    Suite *s = suite_create("sql");
    TCase *tc = tcase_create("sql");
    tcase_add_test(tc, test_sql_quote_plain_text_is_wrapped_in_single_quotes);
    tcase_add_test(tc, test_sql_quote_escapes_backslash_and_quote);
    tcase_add_test(tc, test_sql_quote_writes_nul_and_control_bytes_as_hex);
    tcase_add_test(tc, test_sql_quote_keeps_valid_utf8_and_hex_escapes_invalid_bytes);
    tcase_add_test(tc, test_sql_quote_round_trips_every_byte_value);
    tcase_add_test(tc, test_sql_quote_long_string_is_complete);
    tcase_add_test(tc, test_sql_quote_appends_after_existing_content);
    tcase_add_test(tc, test_sql_numbers_cannot_form_a_comment);
    tcase_add_test(tc, test_sql_double_round_trips_and_refuses_nan_and_infinity);
    tcase_add_test(tc, test_sql_ident_valid_accepts_only_the_strict_pattern);
    tcase_add_test(tc, test_sql_property_path_valid_bounds_depth_and_length);
    tcase_add_test(tc, test_sql_ident_check_names_the_field);
    tcase_add_test(tc, test_sql_ident_emits_backquoted_names_only_when_valid);
    tcase_add_test(tc, test_sql_table_name_valid_wants_database_and_table);
    suite_add_tcase(s, tc);
    return s;
}
