/*
 * common/template: placeholders expanded with checked and quoted values,
 * request parameters validated field by field, and every expansion bound to
 * the tenant by the checker.
 */
#include "common/buf.h"
#include "common/status.h"
#include "common/template.h"
#include "common/timeutil.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DAY_MS AN_TIME_MS_PER_DAY

static int64_t t(const char *iso)
{
    int64_t ms = 0;
    ck_assert_msg(an_time_parse(iso, &ms, NULL) == AN_OK, "bad time %s", iso);
    return ms;
}

/* Parse a JSON request into params; the status, err filled. */
static an_status params(const char *json, an_template_params *p, an_error *err)
{
    cJSON *j = cJSON_Parse(json);
    ck_assert_msg(j != NULL, "bad test JSON %s", json);
    an_status s = an_template_params_from_json(j, p, err);
    cJSON_Delete(j);
    return s;
}

/* Expand tpl with the request json; the expansion (free it) or NULL with err. */
static char *expand(const char *tpl, const char *json, an_error *err)
{
    an_template_params p;
    an_status s = params(json, &p, err);
    ck_assert_msg(s == AN_OK, "params %s: %s", json, err->message);
    an_buf out = AN_BUF_INIT;
    s = an_template_expand(tpl, strlen(tpl), &p, &out, err);
    an_template_params_free(&p);
    if (s != AN_OK) {
        an_buf_free(&out);
        return NULL;
    }
    return an_buf_detach(&out, NULL);
}

static void expect_expansion(const char *tpl, const char *json, const char *want)
{
    an_error err = {0};
    char *got = expand(tpl, json, &err);
    ck_assert_msg(got != NULL, "refused %s with %s: %s", tpl, json, err.message);
    ck_assert_str_eq(got, want);
    free(got);
}

static void expect_param_error(const char *json, const char *field)
{
    an_template_params p;
    an_error err = {0};
    an_status s = params(json, &p, &err);
    ck_assert_msg(s == AN_INVALID_ARGUMENT, "accepted %s", json);
    ck_assert_msg(strcmp(err.field, field) == 0, "%s: field %s, want %s (%s)", json, err.field,
                  field, err.message);
    ck_assert_ptr_null(p.dimensions);
    ck_assert_ptr_null(p.filters);
}

/* ------------------------------------------------------------ granularity */

START_TEST(test_template_buckets_floor_and_step_in_utc)
{
    int64_t x = t("2024-02-29T13:47:12.345Z"); /* a Thursday */
    ck_assert_int_eq(an_template_bucket_floor(x, AN_TEMPLATE_MINUTE), t("2024-02-29T13:47:00Z"));
    ck_assert_int_eq(an_template_bucket_floor(x, AN_TEMPLATE_HOUR), t("2024-02-29T13:00:00Z"));
    ck_assert_int_eq(an_template_bucket_floor(x, AN_TEMPLATE_DAY), t("2024-02-29T00:00:00Z"));
    ck_assert_int_eq(an_template_bucket_floor(x, AN_TEMPLATE_WEEK), t("2024-02-26T00:00:00Z"));
    ck_assert_int_eq(an_template_bucket_floor(x, AN_TEMPLATE_MONTH), t("2024-02-01T00:00:00Z"));
    /* a Monday is its own week; a Sunday belongs to the week before */
    ck_assert_int_eq(an_template_bucket_floor(t("2024-03-04T00:00:00Z"), AN_TEMPLATE_WEEK),
                     t("2024-03-04T00:00:00Z"));
    ck_assert_int_eq(an_template_bucket_floor(t("2024-03-03T23:59:59Z"), AN_TEMPLATE_WEEK),
                     t("2024-02-26T00:00:00Z"));
    /* before 1970 */
    ck_assert_int_eq(an_template_bucket_floor(-1, AN_TEMPLATE_DAY), -DAY_MS);
    ck_assert_int_eq(an_template_bucket_next(t("2024-02-01T00:00:00Z"), AN_TEMPLATE_MONTH),
                     t("2024-03-01T00:00:00Z"));
    ck_assert_int_eq(an_template_bucket_next(t("2024-12-01T00:00:00Z"), AN_TEMPLATE_MONTH),
                     t("2025-01-01T00:00:00Z"));
    ck_assert_int_eq(an_template_bucket_next(t("2024-02-26T00:00:00Z"), AN_TEMPLATE_WEEK),
                     t("2024-03-04T00:00:00Z"));
    an_template_granularity g;
    ck_assert_int_eq(an_template_granularity_parse("granularity", "week", &g, NULL), AN_OK);
    ck_assert_int_eq(g, AN_TEMPLATE_WEEK);
    an_error err = {0};
    ck_assert_int_eq(an_template_granularity_parse("granularity", "fortnight", &g, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "granularity");
}
END_TEST

/* ----------------------------------------------------------- placeholders */

START_TEST(test_template_expands_every_placeholder)
{
    expect_expansion(
        "SELECT {{bucket}} AS bucket{{dimensions}}, count() AS value FROM {{events}} "
        "WHERE {{time_range}} AND {{filters}} GROUP BY bucket{{group_by}}",
        "{\"from\":\"2024-01-01T00:00:00Z\",\"to\":\"2024-01-03T00:00:00Z\","
        "\"granularity\":\"day\",\"dimensions\":[\"event_name\",\"properties.course.id\"],"
        "\"filters\":[{\"field\":\"actor_type\",\"op\":\"eq\",\"value\":\"user\"}]}",
        "SELECT toStartOfDay(occurred_at, 'UTC') AS bucket, event_name AS dim_0, "
        "prop_values[indexOf(prop_keys, 'course.id')] AS dim_1, count() AS value FROM "
        "events_relation "
        "WHERE (occurred_at >= toDateTime(1704067200) AND occurred_at < toDateTime(1704240000)) "
        "AND ((actor_type = 'user')) GROUP BY bucket, dim_0, dim_1");
}
END_TEST

START_TEST(test_template_empty_dimensions_and_filters_expand_to_neutral_sql)
{
    expect_expansion(
        "SELECT {{bucket}} AS b{{dimensions}}, 1 AS value FROM {{events}} WHERE "
        "{{filters}} GROUP BY b{{group_by}}",
        "{\"granularity\":\"hour\"}",
        "SELECT toStartOfHour(occurred_at, 'UTC') AS b, 1 AS value FROM events_relation WHERE "
        "1 GROUP BY b");
}
END_TEST

START_TEST(test_template_week_and_month_buckets_are_utc_datetimes)
{
    expect_expansion("SELECT {{bucket}}", "{\"granularity\":\"week\"}",
                     "SELECT toDateTime(toMonday(occurred_at, 'UTC'), 'UTC')");
    expect_expansion("SELECT {{bucket}}", "{\"granularity\":\"month\"}",
                     "SELECT toDateTime(toStartOfMonth(occurred_at, 'UTC'), 'UTC')");
    expect_expansion("SELECT {{bucket}}", "{\"granularity\":\"minute\"}",
                     "SELECT toStartOfMinute(occurred_at, 'UTC')");
}
END_TEST

START_TEST(test_template_column_argument_names_the_time_column)
{
    expect_expansion(
        "SELECT {{ bucket:hour }} FROM {{events_hourly}} WHERE {{time_range:h.hour}}",
        "{\"granularity\":\"day\",\"from\":\"1970-01-01T00:00:10Z\","
        "\"to\":\"1970-01-01T00:00:20.5Z\"}",
        "SELECT toStartOfDay(hour, 'UTC') FROM events_hourly_relation WHERE (h.hour >= "
        "toDateTime(10) AND h.hour < toDateTime(21))");
}
END_TEST

START_TEST(test_template_placeholders_in_strings_and_comments_are_left_alone)
{
    expect_expansion(
        "SELECT '{{filters}}', `{{x}}` -- {{nope}}\n/* {{no}} */ FROM {{events}}", "{}",
        "SELECT '{{filters}}', `{{x}}` -- {{nope}}\n/* {{no}} */ FROM events_relation");
    expect_expansion("SELECT 'it\\'s {{filters}}' FROM {{events}}", "{}",
                     "SELECT 'it\\'s {{filters}}' FROM events_relation");
}
END_TEST

START_TEST(test_template_refuses_malformed_placeholders)
{
    const char *bad[] = {
        "SELECT {{tenant}} FROM {{events}}",
        "SELECT {{events FROM x",
        "SELECT {{bucket:1x}} FROM {{events}}",
        "SELECT {{filters:x}} FROM {{events}}",
        "SELECT {{bucket:a.b.c}} FROM {{events}}",
        "SELECT {{}} FROM {{events}}",
        "SELECT {{ev{{ents}} FROM x",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        unsigned used;
        an_error err = {0};
        ck_assert_msg(an_template_scan(bad[i], strlen(bad[i]), &used, &err) == AN_INVALID_ARGUMENT,
                      "accepted %s", bad[i]);
        ck_assert_str_eq(err.field, "query");
    }
}
END_TEST

START_TEST(test_template_refuses_parameters_the_template_cannot_honour)
{
    const char *plain = "SELECT count() AS value FROM {{events}}";
    an_error err = {0};
    ck_assert_ptr_null(expand(plain, "{\"dimensions\":[\"event_name\"]}", &err));
    ck_assert_str_eq(err.field, "dimensions");
    ck_assert_ptr_null(expand(
        plain, "{\"filters\":[{\"field\":\"event_name\",\"op\":\"eq\",\"value\":\"x\"}]}", &err));
    ck_assert_str_eq(err.field, "filters");
    ck_assert_ptr_null(expand(plain, "{\"granularity\":\"day\"}", &err));
    ck_assert_str_eq(err.field, "granularity");
    ck_assert_ptr_null(expand("SELECT {{bucket}} FROM {{events}}", "{}", &err));
    ck_assert_str_eq(err.field, "granularity");
    ck_assert_ptr_null(expand("SELECT 1 FROM {{events}} WHERE {{time_range}}", "{}", &err));
    ck_assert_str_eq(err.field, "from");
    /* {{dimensions}} without {{group_by}} cannot take dimensions */
    ck_assert_ptr_null(expand("SELECT 1{{dimensions}} FROM {{events}}",
                              "{\"dimensions\":[\"event_name\"]}", &err));
    ck_assert_str_eq(err.field, "dimensions");
}
END_TEST

/* ---------------------------------------------------------------- filters */

static void expect_filter(const char *filter_json, const char *want)
{
    char json[2048], wanted[2048];
    snprintf(json, sizeof(json), "{\"filters\":[%s]}", filter_json);
    snprintf(wanted, sizeof(wanted), "WHERE (%s)", want);
    expect_expansion("WHERE {{filters}}", json, wanted);
}

START_TEST(test_template_renders_each_filter_operator)
{
    expect_filter("{\"field\":\"event_name\",\"op\":\"eq\",\"value\":\"a\"}", "(event_name = 'a')");
    expect_filter("{\"field\":\"event_name\",\"op\":\"neq\",\"value\":\"a\"}",
                  "NOT (event_name = 'a')");
    expect_filter("{\"field\":\"actor_type\",\"op\":\"in\",\"value\":[\"a\",\"b\"]}",
                  "(actor_type IN ('a', 'b'))");
    expect_filter("{\"field\":\"actor_type\",\"op\":\"not_in\",\"value\":[\"a\"]}",
                  "NOT (actor_type IN ('a'))");
    expect_filter("{\"field\":\"actor_type\",\"op\":\"not-in\",\"value\":[\"a\"]}",
                  "NOT (actor_type IN ('a'))");
    expect_filter("{\"field\":\"properties.price\",\"op\":\"gt\",\"value\":10}",
                  "(ifNull(toFloat64OrNull(prop_values[indexOf(prop_keys, 'price')]) > 10.0, 0))");
    expect_filter("{\"field\":\"properties.price\",\"op\":\"gte\",\"value\":-2.5}",
                  "(ifNull(toFloat64OrNull(prop_values[indexOf(prop_keys, 'price')]) >= (-2.5), "
                  "0))");
    expect_filter("{\"field\":\"properties.day\",\"op\":\"lt\",\"value\":\"2024-02\"}",
                  "(prop_values[indexOf(prop_keys, 'day')] < '2024-02')");
    expect_filter("{\"field\":\"properties.n\",\"op\":\"lte\",\"value\":3}",
                  "(ifNull(toFloat64OrNull(prop_values[indexOf(prop_keys, 'n')]) <= 3.0, 0))");
    expect_filter("{\"field\":\"properties.n\",\"op\":\"in\",\"value\":[1,2]}",
                  "(ifNull(toFloat64OrNull(prop_values[indexOf(prop_keys, 'n')]) IN (1.0, 2.0), "
                  "0))");
    expect_filter("{\"field\":\"properties.n\",\"op\":\"neq\",\"value\":1}",
                  "NOT (ifNull(toFloat64OrNull(prop_values[indexOf(prop_keys, 'n')]) = 1.0, 0))");
    expect_filter("{\"field\":\"properties.title\",\"op\":\"contains\",\"value\":\"C\"}",
                  "position(prop_values[indexOf(prop_keys, 'title')], 'C') > 0");
    expect_filter("{\"field\":\"properties.coupon\",\"op\":\"is_set\"}",
                  "has(prop_keys, 'coupon')");
    expect_filter("{\"field\":\"properties.coupon\",\"op\":\"is-set\",\"value\":false}",
                  "NOT has(prop_keys, 'coupon')");
    expect_filter("{\"field\":\"actor_id\",\"op\":\"is_set\",\"value\":true}", "(actor_id != '')");
    expect_filter("{\"field\":\"properties.paid\",\"op\":\"eq\",\"value\":true}",
                  "(prop_values[indexOf(prop_keys, 'paid')] = 'true')");
}
END_TEST

START_TEST(test_template_quotes_hostile_values)
{
    expect_filter("{\"field\":\"event_name\",\"op\":\"eq\",\"value\":\"x' OR 1=1 --\"}",
                  "(event_name = 'x\\' OR 1=1 --')");
    expect_filter("{\"field\":\"event_name\",\"op\":\"in\",\"value\":[\"a\\\\\",\"') OR ('\"]}",
                  "(event_name IN ('a\\\\', '\\') OR (\\''))");
    expect_filter("{\"field\":\"event_name\",\"op\":\"contains\",\"value\":\"\\n\\u0000x\"}",
                  "position(event_name, '\\n') > 0");
}
END_TEST

START_TEST(test_template_params_name_the_bad_field)
{
    expect_param_error("{\"from\":\"yesterday\",\"to\":\"2024-01-01T00:00:00Z\"}", "from");
    expect_param_error("{\"from\":\"2024-01-01T00:00:00Z\"}", "to");
    expect_param_error("{\"to\":\"2024-01-01T00:00:00Z\"}", "from");
    expect_param_error("{\"from\":\"2024-01-02T00:00:00Z\",\"to\":\"2024-01-01T00:00:00Z\"}", "to");
    expect_param_error("{\"from\":5,\"to\":\"2024-01-01T00:00:00Z\"}", "from");
    expect_param_error("{\"granularity\":\"fortnight\"}", "granularity");
    expect_param_error("{\"granularity\":3}", "granularity");
    expect_param_error("{\"dimensions\":\"event_name\"}", "dimensions");
    expect_param_error("{\"dimensions\":[\"event_name\",\"tenant_id\"]}", "dimensions[1]");
    expect_param_error("{\"dimensions\":[\"properties.a;b\"]}", "dimensions[0]");
    expect_param_error("{\"dimensions\":[\"properties.\"]}", "dimensions[0]");
    expect_param_error("{\"dimensions\":[\"event_name\",\"event_name\"]}", "dimensions[1]");
    expect_param_error("{\"dimensions\":[1]}", "dimensions[0]");
    expect_param_error("{\"dimensions\":[\"a\",\"b\",\"c\",\"d\",\"e\",\"f\",\"g\",\"h\",\"i\"]}",
                       "dimensions");
    expect_param_error("{\"filters\":{}}", "filters");
    expect_param_error("{\"filters\":[3]}", "filters[0]");
    expect_param_error("{\"filters\":[{\"op\":\"eq\",\"value\":\"x\"}]}", "filters[0].field");
    expect_param_error("{\"filters\":[{\"field\":\"prop_keys\",\"op\":\"eq\",\"value\":\"x\"}]}",
                       "filters[0].field");
    expect_param_error("{\"filters\":[{\"field\":\"event_name\",\"op\":\"like\",\"value\":\"x\"}]}",
                       "filters[0].op");
    expect_param_error("{\"filters\":[{\"field\":\"event_name\",\"op\":\"eq\"}]}",
                       "filters[0].value");
    expect_param_error("{\"filters\":[{\"field\":\"event_name\",\"op\":\"eq\",\"value\":[1]}]}",
                       "filters[0].value");
    expect_param_error("{\"filters\":[{\"field\":\"event_name\",\"op\":\"in\",\"value\":[]}]}",
                       "filters[0].value");
    expect_param_error(
        "{\"filters\":[{\"field\":\"event_name\",\"op\":\"in\",\"value\":[\"a\",1]}]}",
        "filters[0].value[1]");
    expect_param_error("{\"filters\":[{\"field\":\"event_name\",\"op\":\"contains\",\"value\":3}]}",
                       "filters[0].value");
    expect_param_error(
        "{\"filters\":[{\"field\":\"event_name\",\"op\":\"is_set\",\"value\":\"yes\"}]}",
        "filters[0].value");
    expect_param_error("{\"filters\":[{\"field\":\"event_name\",\"op\":\"gt\",\"value\":true}]}",
                       "filters[0].value");
    /* the second filter is the bad one: the first one's strings are freed too */
    expect_param_error("{\"filters\":[{\"field\":\"event_name\",\"op\":\"eq\",\"value\":\"x\"},"
                       "{\"field\":\"event_name\",\"op\":\"in\",\"value\":[\"a\",true]}]}",
                       "filters[1].value[1]");
}
END_TEST

START_TEST(test_template_params_refuse_long_values)
{
    char *big = malloc(AN_TEMPLATE_MAX_VALUE + 2);
    memset(big, 'x', AN_TEMPLATE_MAX_VALUE + 1);
    big[AN_TEMPLATE_MAX_VALUE + 1] = '\0';
    char *json;
    ck_assert(asprintf(&json,
                       "{\"filters\":[{\"field\":\"event_name\",\"op\":\"eq\",\"value\":\"%s\"}]}",
                       big) > 0);
    expect_param_error(json, "filters[0].value");
    free(json);
    free(big);
}
END_TEST

/* ---------------------------------------------------------------- binding */

START_TEST(test_template_property_columns_are_read_instead_of_the_arrays)
{
    an_template_column c;
    ck_assert(
        an_template_column_parse("p_country", "prop_values[indexOf(prop_keys, 'country')]", &c));
    ck_assert_str_eq(c.path, "country");
    ck_assert_str_eq(c.column, "p_country");
    ck_assert(an_template_column_parse("p_course__id",
                                       "prop_values[indexOf(prop_keys, 'course.id')]", &c));
    ck_assert_str_eq(c.path, "course.id");
    /* anything but the exact expression is not a property column */
    static const char *const not_ones[][2] = {
        {"p", "prop_values[indexOf(prop_keys, 'a')] "},
        {"p", "lower(prop_values[indexOf(prop_keys, 'a')])"},
        {"p", "prop_values[indexOf(prop_keys, 'a\\'b')]"},
        {"p", "prop_values[indexOf(prop_keys, '')]"},
        {"p", "prop_values[indexOf(prop_keys, 'a')] || 'x'"},
        {"p", "prop_keys[indexOf(prop_values, 'a')]"},
        {"p-x", "prop_values[indexOf(prop_keys, 'a')]"},
        {"", "prop_values[indexOf(prop_keys, 'a')]"},
    };
    for (size_t i = 0; i < sizeof(not_ones) / sizeof(not_ones[0]); i++)
        ck_assert_msg(!an_template_column_parse(not_ones[i][0], not_ones[i][1], &c), "#%zu", i);

    const char *tpl = "SELECT {{bucket}} AS bucket{{dimensions}}, count() AS value FROM "
                      "{{events}} WHERE {{time_range}} AND {{filters}} GROUP BY "
                      "bucket{{group_by}}";
    an_template_params p;
    an_error err = {0};
    ck_assert_int_eq(
        params("{\"granularity\":\"day\",\"from\":\"2024-01-01T00:00:00Z\","
               "\"to\":\"2024-01-02T00:00:00Z\",\"dimensions\":[\"properties.country\","
               "\"properties.plan\"],\"filters\":[{\"field\":\"properties.country\","
               "\"op\":\"eq\",\"value\":\"FR\"}]}",
               &p, &err),
        AN_OK);
    an_template_column cols[2];
    ck_assert(an_template_column_parse("p_country", "prop_values[indexOf(prop_keys, 'country')]",
                                       &cols[0]));
    ck_assert(an_template_column_parse("p_x", "prop_values[indexOf(prop_keys, 'x')]", &cols[1]));
    an_template_scope scope = {.tenant_id = "t1", .columns = cols, .ncolumns = 2};
    an_buf out = AN_BUF_INIT;
    ck_assert_msg(an_template_bind(tpl, strlen(tpl), &p, &scope, &out, &err) == AN_OK, "%s",
                  err.message);
    const char *q = an_buf_str(&out);
    ck_assert_msg(strstr(q, "(SELECT *, `p_country`, `p_x` FROM analytics.events WHERE "
                            "analytics.events.tenant_id = 't1'") != NULL,
                  "%s", q);
    ck_assert_msg(strstr(q, ", `p_country` AS dim_0, prop_values[indexOf(prop_keys, 'plan')] AS "
                            "dim_1") != NULL,
                  "%s", q);
    ck_assert_msg(strstr(q, "(`p_country` = 'FR')") != NULL, "%s", q);
    an_buf_free(&out);
    an_template_params_free(&p);
}
END_TEST

START_TEST(test_template_bind_puts_every_table_behind_the_tenant)
{
    const char *tpl =
        "SELECT {{bucket}} AS bucket{{dimensions}}, countMerge(events) AS value "
        "FROM {{events_hourly}} WHERE {{time_range:hour}} GROUP BY bucket{{group_by}}";
    an_template_params p;
    an_error err = {0};
    ck_assert_int_eq(params("{\"granularity\":\"day\",\"from\":\"2024-01-01T00:00:00Z\","
                            "\"to\":\"2024-01-02T00:00:00Z\",\"dimensions\":[\"event_name\"]}",
                            &p, &err),
                     AN_OK);
    an_buf out = AN_BUF_INIT;
    an_template_scope scope = {.tenant_id = "t'1"};
    ck_assert_msg(an_template_bind(tpl, strlen(tpl), &p, &scope, &out, &err) == AN_OK, "%s",
                  err.message);
    ck_assert_msg(strstr(an_buf_str(&out),
                         "FROM (SELECT * FROM analytics.events_hourly WHERE "
                         "analytics.events_hourly.tenant_id = 't\\'1' AND ((hour >= "
                         "toDateTime(1704067200) AND hour < toDateTime(1704153600))))") != NULL,
                  "%s", an_buf_str(&out));

    /* all tenants, per tenant: the tenant column is the first dimension */
    an_buf_reset(&out);
    p.tenant_dimension = true;
    an_template_scope all = {.all_tenants = true};
    ck_assert_int_eq(an_template_bind(tpl, strlen(tpl), &p, &all, &out, &err), AN_OK);
    ck_assert_msg(strstr(an_buf_str(&out), ", tenant_id AS dim_tenant, event_name AS dim_0") &&
                      strstr(an_buf_str(&out), "GROUP BY bucket, dim_tenant, dim_0") &&
                      strstr(an_buf_str(&out), "FROM (SELECT * FROM analytics.events_hourly WHERE "
                                               "((hour >= toDateTime(1704067200) AND "
                                               "hour < toDateTime(1704153600))))"),
                  "%s", an_buf_str(&out));
    an_template_params_free(&p);
    an_buf_free(&out);
}
END_TEST

START_TEST(test_template_bind_refuses_what_the_checker_refuses)
{
    const char *bad[] = {
        "SELECT count() FROM analytics.events",
        "SELECT count() FROM {{events}}; DROP TABLE analytics.events",
        "SELECT count() FROM system.tables",
        "SELECT count() FROM {{events}} SETTINGS readonly = 0",
        "SELECT * FROM url('http://x', CSV, 'a String')",
        "SELECT count() FROM {{events}} WHERE tenant_id = 'other' OR 1",
        "SELECT {not_a_placeholder} FROM {{events}}",
        "INSERT INTO events SELECT * FROM {{events}}",
    };
    an_template_params p = {0};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        an_buf out = AN_BUF_INIT;
        an_error err = {0};
        an_template_scope scope = {.tenant_id = "t1"};
        an_status s = an_template_bind(bad[i], strlen(bad[i]), &p, &scope, &out, &err);
        if (i == 5) {
            /* legal: the tenant column inside the bound relation is still t1's */
            ck_assert_int_eq(s, AN_OK);
            ck_assert_ptr_nonnull(strstr(an_buf_str(&out), "analytics.events.tenant_id = 't1'"));
        } else {
            ck_assert_msg(s == AN_INVALID_ARGUMENT, "accepted %s: %s", bad[i], an_buf_str(&out));
            ck_assert_str_eq(err.field, "query");
            ck_assert_uint_eq(out.len, 0);
        }
        an_buf_free(&out);
    }
}
END_TEST

START_TEST(test_template_check_validates_a_saved_template)
{
    const char *good[] = {
        "SELECT {{bucket}} AS bucket{{dimensions}}, uniq(actor_id) AS value FROM {{events}} "
        "WHERE {{time_range}} AND {{filters}} GROUP BY bucket{{group_by}}",
        "SELECT count() AS value FROM {{events}}",
        "SELECT {{bucket:hour}} AS bucket, countMerge(events) AS value FROM {{events_hourly}} "
        "WHERE {{time_range:hour}} GROUP BY bucket",
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        an_error err = {0};
        ck_assert_msg(an_template_check(good[i], strlen(good[i]), &err) == AN_OK, "%s: %s", good[i],
                      err.message);
    }
    const char *bad[] = {
        "SELECT 1{{dimensions}} FROM {{events}}",
        "SELECT count() FROM {{events}} FORMAT JSON",
        "SELECT count() FROM metric_definitions",
        "",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        an_error err = {0};
        ck_assert_msg(an_template_check(bad[i], strlen(bad[i]), &err) == AN_INVALID_ARGUMENT,
                      "accepted %s", bad[i]);
        ck_assert_str_eq(err.field, "query");
    }
}
END_TEST

Suite *template_suite(void)
{
    Suite *s = suite_create("template");
    TCase *tc = tcase_create("granularity");
    tcase_add_test(tc, test_template_buckets_floor_and_step_in_utc);
    suite_add_tcase(s, tc);

    tc = tcase_create("placeholders");
    tcase_add_test(tc, test_template_expands_every_placeholder);
    tcase_add_test(tc, test_template_empty_dimensions_and_filters_expand_to_neutral_sql);
    tcase_add_test(tc, test_template_week_and_month_buckets_are_utc_datetimes);
    tcase_add_test(tc, test_template_column_argument_names_the_time_column);
    tcase_add_test(tc, test_template_placeholders_in_strings_and_comments_are_left_alone);
    tcase_add_test(tc, test_template_refuses_malformed_placeholders);
    tcase_add_test(tc, test_template_refuses_parameters_the_template_cannot_honour);
    suite_add_tcase(s, tc);

    tc = tcase_create("filters");
    tcase_add_test(tc, test_template_renders_each_filter_operator);
    tcase_add_test(tc, test_template_quotes_hostile_values);
    tcase_add_test(tc, test_template_params_name_the_bad_field);
    tcase_add_test(tc, test_template_params_refuse_long_values);
    suite_add_tcase(s, tc);

    tc = tcase_create("binding");
    tcase_add_test(tc, test_template_bind_puts_every_table_behind_the_tenant);
    tcase_add_test(tc, test_template_property_columns_are_read_instead_of_the_arrays);
    tcase_add_test(tc, test_template_bind_refuses_what_the_checker_refuses);
    tcase_add_test(tc, test_template_check_validates_a_saved_template);
    suite_add_tcase(s, tc);
    return s;
}
