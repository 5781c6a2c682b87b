#include "common/config.h"
#include "common/status.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *url;
    long long batch;
    bool verbose;
    int64_t flush_ms;
    int64_t max_bytes;
} cfg;

static const an_config_var vars[] = {
    {"ANALYTICS_T_URL", AN_CFG_STRING, "nats://127.0.0.1:4222", 0, 0, AN_CFG_REQUIRED,
     offsetof(cfg, url), "NATS URL"},
    {"ANALYTICS_T_BATCH", AN_CFG_INT, "100", 1, 1000, 0, offsetof(cfg, batch), "batch rows"},
    {"ANALYTICS_T_VERBOSE", AN_CFG_BOOL, "false", 0, 0, 0, offsetof(cfg, verbose), "verbose"},
    {"ANALYTICS_T_FLUSH", AN_CFG_DURATION, "1s", 1, 60000, 0, offsetof(cfg, flush_ms), "flush"},
    {"ANALYTICS_T_MAX", AN_CFG_SIZE, "1MiB", 0, 0, 0, offsetof(cfg, max_bytes), "max bytes"},
    {0},
};

static void clear_env(void)
{
    for (const an_config_var *v = vars; v->name; v++)
        unsetenv(v->name);
}

START_TEST(test_config_defaults_apply_when_unset)
{
    clear_env();
    cfg c = {0};
    an_error err;
    ck_assert_int_eq(an_config_load(vars, &c, &err), AN_OK);
    ck_assert_str_eq(c.url, "nats://127.0.0.1:4222");
    ck_assert_int_eq(c.batch, 100);
    ck_assert(!c.verbose);
    ck_assert_int_eq(c.flush_ms, 1000);
    ck_assert_int_eq(c.max_bytes, 1024 * 1024);
    an_config_free(vars, &c);
    ck_assert_ptr_null(c.url);
}
END_TEST

START_TEST(test_config_env_overrides_and_units_parse)
{
    clear_env();
    setenv("ANALYTICS_T_URL", "nats://10.0.0.1:4222", 1);
    setenv("ANALYTICS_T_BATCH", "1000", 1);
    setenv("ANALYTICS_T_VERBOSE", "yes", 1);
    setenv("ANALYTICS_T_FLUSH", "250ms", 1);
    setenv("ANALYTICS_T_MAX", "64KB", 1);
    cfg c = {0};
    an_error err;
    ck_assert_int_eq(an_config_load(vars, &c, &err), AN_OK);
    ck_assert_str_eq(c.url, "nats://10.0.0.1:4222");
    ck_assert_int_eq(c.batch, 1000);
    ck_assert(c.verbose);
    ck_assert_int_eq(c.flush_ms, 250);
    ck_assert_int_eq(c.max_bytes, 64 * 1024);
    an_config_free(vars, &c);
    clear_env();
}
END_TEST

START_TEST(test_config_out_of_range_names_the_variable)
{
    clear_env();
    setenv("ANALYTICS_T_BATCH", "1001", 1);
    cfg c = {0};
    an_error err;
    ck_assert_int_eq(an_config_load(vars, &c, &err), AN_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "ANALYTICS_T_BATCH");
    ck_assert_ptr_nonnull(strstr(err.message, "ANALYTICS_T_BATCH=1001"));
    ck_assert_ptr_nonnull(strstr(err.message, "between 1 and 1000"));
    an_config_free(vars, &c);
    clear_env();
}
END_TEST

START_TEST(test_config_malformed_values_fail_fast)
{
    static const char *cases[][2] = {
        {"ANALYTICS_T_BATCH", "12abc"},   {"ANALYTICS_T_BATCH", "x"},
        {"ANALYTICS_T_VERBOSE", "maybe"}, {"ANALYTICS_T_FLUSH", "5 days"},
        {"ANALYTICS_T_FLUSH", "-1s"},     {"ANALYTICS_T_MAX", "12XB"},
        {"ANALYTICS_T_FLUSH", "0"},       {"ANALYTICS_T_BATCH", "99999999999999999999999"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        clear_env();
        setenv(cases[i][0], cases[i][1], 1);
        cfg c = {0};
        an_error err;
        ck_assert_msg(an_config_load(vars, &c, &err) == AN_INVALID_ARGUMENT, "%s=%s accepted",
                      cases[i][0], cases[i][1]);
        ck_assert_str_eq(err.field, cases[i][0]);
        an_config_free(vars, &c);
    }
    clear_env();
}
END_TEST

START_TEST(test_config_required_without_default_fails)
{
    static const an_config_var req[] = {
        {"ANALYTICS_T_SECRET", AN_CFG_STRING, NULL, 0, 0, AN_CFG_REQUIRED | AN_CFG_SECRET,
         offsetof(cfg, url), "a secret"},
        {0},
    };
    unsetenv("ANALYTICS_T_SECRET");
    cfg c = {0};
    an_error err;
    ck_assert_int_eq(an_config_load(req, &c, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "ANALYTICS_T_SECRET is required"));
}
END_TEST

START_TEST(test_status_codes_map_to_wire_and_http)
{
    ck_assert_str_eq(an_status_code(AN_NOT_FOUND), "not_found");
    ck_assert_int_eq(an_status_http(AN_NOT_FOUND), 404);
    ck_assert_int_eq(an_status_http(AN_UNAUTHENTICATED), 401);
    ck_assert_int_eq(an_status_http(AN_PERMISSION_DENIED), 403);
    ck_assert_int_eq(an_status_http(AN_RESOURCE_EXHAUSTED), 429);
    ck_assert_int_eq(an_status_http(AN_UNAVAILABLE), 503);
    ck_assert_int_eq(an_status_from_code("failed_precondition"), AN_FAILED_PRECONDITION);
    ck_assert_int_eq(an_status_from_code("bogus"), AN_INTERNAL);
    an_error err;
    ck_assert_int_eq(an_error_field(&err, AN_INVALID_ARGUMENT, "name", "too long: %d", 300),
                     AN_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "name");
    ck_assert_str_eq(err.message, "too long: 300");
}
END_TEST

Suite *config_suite(void)
{
    Suite *s = suite_create("config");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_config_defaults_apply_when_unset);
    tcase_add_test(tc, test_config_env_overrides_and_units_parse);
    tcase_add_test(tc, test_config_out_of_range_names_the_variable);
    tcase_add_test(tc, test_config_malformed_values_fail_fast);
    tcase_add_test(tc, test_config_required_without_default_fails);
    tcase_add_test(tc, test_status_codes_map_to_wire_and_http);
    suite_add_tcase(s, tc);
    return s;
}
