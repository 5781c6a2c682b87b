#include "common/redis.h"
#include "common/status.h"

#include <check.h>
#include <string.h>

static an_redis_url parse_ok(const char *url)
{
    an_redis_url u;
    an_error err;
    an_error_clear(&err);
    an_status s = an_redis_url_parse(url, &u, &err);
    ck_assert_msg(s == AN_OK, "%s: %s", url, err.message);
    return u;
}

static an_error parse_bad(const char *url)
{
    an_redis_url u;
    an_error err;
    an_error_clear(&err);
    ck_assert_msg(an_redis_url_parse(url, &u, &err) == AN_INVALID_ARGUMENT, "%s was accepted",
                  url ? url : "(null)");
    ck_assert_int_eq(err.code, AN_INVALID_ARGUMENT);
    return err;
}

START_TEST(test_redis_url_host_port_db)
{
    an_redis_url u = parse_ok("redis://127.0.0.1:6380/3");
    ck_assert_str_eq(u.host, "127.0.0.1");
    ck_assert_int_eq(u.port, 6380);
    ck_assert_int_eq(u.db, 3);
    ck_assert_str_eq(u.user, "");
    ck_assert_str_eq(u.password, "");
}
END_TEST

START_TEST(test_redis_url_defaults_port_6379_and_db_0)
{
    an_redis_url u = parse_ok("redis://cache.internal");
    ck_assert_str_eq(u.host, "cache.internal");
    ck_assert_int_eq(u.port, 6379);
    ck_assert_int_eq(u.db, 0);
    u = parse_ok("redis://cache.internal/");
    ck_assert_int_eq(u.db, 0);
    u = parse_ok("REDIS://h:1/15");
    ck_assert_int_eq(u.port, 1);
    ck_assert_int_eq(u.db, 15);
}
END_TEST

START_TEST(test_redis_url_password_only_both_spellings)
{
    an_redis_url u = parse_ok("redis://:s3cret@h:6379/0");
    ck_assert_str_eq(u.user, "");
    ck_assert_str_eq(u.password, "s3cret");
    /* like redis-cli: userinfo without ':' is the password */
    u = parse_ok("redis://s3cret@h:6379/0");
    ck_assert_str_eq(u.user, "");
    ck_assert_str_eq(u.password, "s3cret");
}
END_TEST

START_TEST(test_redis_url_user_and_password_percent_decoded)
{
    an_redis_url u = parse_ok("redis://svc%2Dmetrics:p%40ss%3Aw%2Fd@10.0.0.5:7000/2");
    ck_assert_str_eq(u.user, "svc-metrics");
    ck_assert_str_eq(u.password, "p@ss:w/d");
    ck_assert_str_eq(u.host, "10.0.0.5");
    ck_assert_int_eq(u.port, 7000);
    ck_assert_int_eq(u.db, 2);
}
END_TEST

START_TEST(test_redis_url_unescaped_at_in_password_uses_last_at)
{
    an_redis_url u = parse_ok("redis://:a@b@h:1/0");
    ck_assert_str_eq(u.password, "a@b");
    ck_assert_str_eq(u.host, "h");
}
END_TEST

START_TEST(test_redis_url_ipv6_in_brackets)
{
    an_redis_url u = parse_ok("redis://[::1]:6390/4");
    ck_assert_str_eq(u.host, "::1");
    ck_assert_int_eq(u.port, 6390);
    ck_assert_int_eq(u.db, 4);
    u = parse_ok("redis://[fe80::1]");
    ck_assert_str_eq(u.host, "fe80::1");
    ck_assert_int_eq(u.port, 6379);
}
END_TEST

START_TEST(test_redis_url_rediss_is_refused_naming_tls)
{
    an_error err = parse_bad("rediss://h:6380/0");
    ck_assert_ptr_nonnull(strstr(err.message, "TLS"));
}
END_TEST

START_TEST(test_redis_url_wrong_scheme_and_empty_are_refused)
{
    an_error err = parse_bad("http://h:6379");
    ck_assert_ptr_nonnull(strstr(err.message, "redis://"));
    parse_bad("h:6379");
    parse_bad("");
    parse_bad(NULL);
    err = parse_bad("unix:///run/redis.sock");
    ck_assert_ptr_nonnull(strstr(err.message, "unix"));
}
END_TEST

START_TEST(test_redis_url_bad_port_db_host_are_refused)
{
    an_error err = parse_bad("redis://h:0/0");
    ck_assert_ptr_nonnull(strstr(err.message, "port"));
    parse_bad("redis://h:65536/0");
    parse_bad("redis://h:/0");
    parse_bad("redis://h:63x9/0");
    parse_bad("redis://h:-1/0");
    err = parse_bad("redis://h:6379/x");
    ck_assert_ptr_nonnull(strstr(err.message, "database"));
    parse_bad("redis://h:6379/-1");
    parse_bad("redis://h:6379/1/2");
    err = parse_bad("redis://:6379/0");
    ck_assert_ptr_nonnull(strstr(err.message, "host"));
    parse_bad("redis://");
    parse_bad("redis://[::1:6379/0");
    parse_bad("redis://[::1]x/0");
    parse_bad("redis://h:6379/0?timeout=5");
    parse_bad("redis://user:@h:6379/0");
}
END_TEST

START_TEST(test_redis_url_bad_percent_escape_is_refused)
{
    parse_bad("redis://:abc%zz@h/0");
    parse_bad("redis://:abc%4@h/0");
    parse_bad("redis://:abc%00def@h/0");
}
END_TEST

START_TEST(test_redis_url_errors_never_show_the_password)
{
    an_error err = parse_bad("redis://admin:hunter2@h:99999/0");
    ck_assert_ptr_null(strstr(err.message, "hunter2"));
    ck_assert_ptr_nonnull(strstr(err.message, "admin:***@h:99999"));
    char shown[128];
    an_redis_url_redact("redis://:hunter2@h:6379/0", shown, sizeof(shown));
    ck_assert_str_eq(shown, "redis://:***@h:6379/0");
    an_redis_url_redact("redis://h:6379/0", shown, sizeof(shown));
    ck_assert_str_eq(shown, "redis://h:6379/0");
}
END_TEST

START_TEST(test_redis_connect_refused_port_is_unavailable)
{
    redisContext *c = (redisContext *)1;
    an_error err;
    /* port 1 on loopback: nothing listens there */
    ck_assert_int_eq(an_redis_connect(&c, "redis://127.0.0.1:1/0", 500, &err), AN_UNAVAILABLE);
    ck_assert_ptr_null(c);
    ck_assert_ptr_nonnull(strstr(err.message, "127.0.0.1:1"));
    ck_assert_int_eq(an_redis_connect(&c, "redis://127.0.0.1:1/0", 0, &err), AN_INVALID_ARGUMENT);
}
END_TEST

Suite *redis_url_suite(void)
{
    Suite *s = suite_create("redis_url");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, test_redis_url_host_port_db);
    tcase_add_test(tc, test_redis_url_defaults_port_6379_and_db_0);
    tcase_add_test(tc, test_redis_url_password_only_both_spellings);
    tcase_add_test(tc, test_redis_url_user_and_password_percent_decoded);
    tcase_add_test(tc, test_redis_url_unescaped_at_in_password_uses_last_at);
    tcase_add_test(tc, test_redis_url_ipv6_in_brackets);
    tcase_add_test(tc, test_redis_url_rediss_is_refused_naming_tls);
    tcase_add_test(tc, test_redis_url_wrong_scheme_and_empty_are_refused);
    tcase_add_test(tc, test_redis_url_bad_port_db_host_are_refused);
    tcase_add_test(tc, test_redis_url_bad_percent_escape_is_refused);
    tcase_add_test(tc, test_redis_url_errors_never_show_the_password);
    tcase_add_test(tc, test_redis_connect_refused_port_is_unavailable);
    suite_add_tcase(s, tc);
    return s;
}
