/*
 * metrics/metric.c: the MetricDefinition record - validation of create and
 * update bodies field by field, the stored spec read back unchanged, the
 * materialization key and hash, and which units fill empty buckets with 0.
 */
#include "metrics/metric.h"
#include "metrics/template.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TPL                                                                                        \
    "SELECT {{bucket}} AS bucket{{dimensions}}, count() AS value FROM {{events}} WHERE "           \
    "{{time_range}} AND {{filters}} GROUP BY bucket{{group_by}}"

static an_status apply(metric_def *d, const char *json, bool create, an_error *err)
{
    cJSON *j = cJSON_Parse(json);
    ck_assert_msg(j != NULL, "bad test JSON %s", json);
    static const char *const skip[] = {"tenantId", NULL};
    an_status s = metrics_def_apply(d, j, create, skip, err);
    cJSON_Delete(j);
    return s;
}

START_TEST(test_metrics_def_create_fills_defaults_and_keeps_fields)
{
    metric_def d;
    memset(&d, 0, sizeof(d));
    an_error err = {0};
    ck_assert_int_eq(apply(&d,
                           "{\"name\":\"Signups\",\"unit\":\"count\",\"query\":\"" TPL
                           "\",\"schedule\":\"@hourly\",\"materialize\":{\"granularity\":\"hour\","
                           "\"dimensions\":[\"event_name\"],\"lookback\":4}}",
                           true, &err),
                     AN_OK);
    ck_assert_str_eq(d.name, "Signups");
    ck_assert_str_eq(d.status, "active");
    ck_assert_str_eq(d.schedule, "@hourly");
    ck_assert_int_eq(d.mat.granularity, AN_TEMPLATE_HOUR);
    ck_assert_int_eq(d.mat.lookback, 4);
    ck_assert_uint_eq(d.mat.ndimensions, 1);
    ck_assert(cJSON_IsObject(d.description));
    /* update: only what is given changes; null removes the schedule */
    ck_assert_int_eq(apply(&d, "{\"status\":\"deprecated\",\"schedule\":null}", false, &err),
                     AN_OK);
    ck_assert_str_eq(d.status, "deprecated");
    ck_assert_ptr_null(d.schedule);
    ck_assert_str_eq(d.name, "Signups");
    metrics_def_free(&d);
    metrics_def_free(NULL);
}
END_TEST

START_TEST(test_metrics_def_refuses_each_bad_field_by_name)
{
    struct {
        const char *json;
        const char *field;
    } cases[] = {
        {"{\"unit\":\"count\",\"query\":\"SELECT 1 AS value\"}", "name"},
        {"{\"name\":\" padded\",\"unit\":\"count\",\"query\":\"SELECT 1 AS value\"}", "name"},
        {"{\"name\":\"x\",\"query\":\"SELECT 1 AS value\"}", "unit"},
        {"{\"name\":\"x\",\"unit\":\"count\"}", "query"},
        {"{\"name\":\"x\",\"unit\":\"count\",\"query\":\"\"}", "query"},
        {"{\"name\":\"x\",\"unit\":\"count\",\"query\":\"DROP TABLE t\"}", "query"},
        {"{\"name\":\"x\",\"unit\":\"count\",\"query\":\"SELECT {{bucket}} AS bucket, 1 AS value "
         "FROM {{events}} GROUP BY bucket\"}",
         "query"}, /* {{bucket}} without {{time_range}} */
        {"{\"name\":\"x\",\"unit\":\"count\",\"query\":\"SELECT 1 AS value\",\"description\":{"
         "\"en\":\"a\",\"en\":\"b\"}}",
         "description.en"},
        {"{\"name\":\"x\",\"unit\":\"count\",\"query\":\"SELECT 1 AS value\",\"description\":{"
         "\"e1\":\"a\"}}",
         "description.e1"},
        {"{\"name\":\"x\",\"unit\":\"count\",\"query\":\"SELECT 1 AS value\",\"status\":\"gone\"}",
         "status"},
        {"{\"name\":\"x\",\"unit\":\"count\",\"query\":\"SELECT 1 AS value\",\"schedule\":\"0 0 30 "
         "2 *\"}",
         "schedule"},
        {"{\"name\":\"x\",\"unit\":\"count\",\"query\":\"" TPL "\",\"schedule\":\"@daily\","
         "\"materialize\":{\"lookback\":2.5}}",
         "materialize.lookback"},
        {"{\"name\":\"x\",\"unit\":\"count\",\"query\":\"" TPL "\",\"schedule\":\"@daily\","
         "\"materialize\":{\"every\":1}}",
         "materialize.every"},
        {"{\"name\":\"x\",\"unit\":\"count\",\"query\":\"" TPL "\",\"schedule\":\"@daily\","
         "\"materialize\":{\"dimensions\":[\"event_name\",\"event_name\"]}}",
         "materialize.dimensions[1]"},
        {"{\"name\":\"x\",\"unit\":\"count\",\"query\":\"SELECT 1 AS value\",\"extra\":1}",
         "extra"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        metric_def d;
        memset(&d, 0, sizeof(d));
        an_error err = {0};
        ck_assert_msg(apply(&d, cases[i].json, true, &err) == AN_INVALID_ARGUMENT, "accepted %s",
                      cases[i].json);
        ck_assert_msg(strcmp(err.field, cases[i].field) == 0, "%s: field %s, want %s (%s)",
                      cases[i].json, err.field, cases[i].field, err.message);
        metrics_def_free(&d);
    }
}
END_TEST

START_TEST(test_metrics_def_spec_reads_back_unchanged)
{
    metric_def d;
    memset(&d, 0, sizeof(d));
    an_error err = {0};
    ck_assert_int_eq(
        apply(&d,
              "{\"name\":\"n\",\"unit\":\"ratio\",\"query\":\"" TPL
              "\",\"description\":{\"fr\":\"taux \\\"é\\\"\"},\"schedule\":\"*/5 * * "
              "* *\",\"materialize\":{\"dimensions\":[\"properties.b\",\"event_name\"]}"
              "}",
              true, &err),
        AN_OK);
    snprintf(d.id, sizeof(d.id), "01ARZ3NDEKTSV4RRFFQ69G5FAV");
    d.tenant_id = strdup("t1");
    d.created_by = strdup("u");
    d.version = 42;
    char *spec = metrics_def_spec_json(&d);
    char *desc = cJSON_PrintUnformatted(d.description);
    metric_def back;
    ck_assert_int_eq(
        metrics_def_from_columns("t1", d.id, "n", desc, spec, "u", 1000, 2000, 42, &back, &err),
        AN_OK);
    cJSON *a = metrics_def_to_json(&d), *b = metrics_def_to_json(&back);
    cJSON_ReplaceItemInObject(a, "createdAt", cJSON_CreateString("x"));
    cJSON_ReplaceItemInObject(a, "updatedAt", cJSON_CreateString("x"));
    cJSON_ReplaceItemInObject(b, "createdAt", cJSON_CreateString("x"));
    cJSON_ReplaceItemInObject(b, "updatedAt", cJSON_CreateString("x"));
    char *sa = cJSON_PrintUnformatted(a), *sb = cJSON_PrintUnformatted(b);
    ck_assert_str_eq(sa, sb);
    /* the materialization key sorts the dimensions; the hash ignores the name */
    char *key = metrics_def_dimensions_key(&back);
    ck_assert_str_eq(key, "[\"event_name\",\"properties.b\"]");
    char h1[65], h2[65];
    metrics_def_spec_hash(&d, h1);
    free(back.name);
    back.name = strdup("renamed");
    metrics_def_spec_hash(&back, h2);
    ck_assert_str_eq(h1, h2);
    free(back.query);
    back.query = strdup("SELECT 1 AS value");
    metrics_def_spec_hash(&back, h2);
    ck_assert_str_ne(h1, h2);
    /* a platform metric reads back with tenant NULL */
    metric_def p;
    ck_assert_int_eq(metrics_def_from_columns("", d.id, "n", desc, spec, "u", 0, 0, 1, &p, &err),
                     AN_OK);
    ck_assert_ptr_null(p.tenant_id);
    metrics_def_free(&p);
    ck_assert_int_eq(
        metrics_def_from_columns("", d.id, "n", desc, "{\"query\":1}", "u", 0, 0, 1, &p, &err),
        AN_INTERNAL);
    metrics_def_free(&p);
    free(key);
    free(sa);
    free(sb);
    free(spec);
    free(desc);
    cJSON_Delete(a);
    cJSON_Delete(b);
    metrics_def_free(&back);
    metrics_def_free(&d);
}
END_TEST

START_TEST(test_metrics_def_platform_schedule_needs_dimensions)
{
    metric_def d;
    memset(&d, 0, sizeof(d));
    an_error err = {0};
    ck_assert_int_eq(apply(&d,
                           "{\"name\":\"n\",\"unit\":\"count\",\"schedule\":\"@daily\",\"query\":"
                           "\"SELECT {{bucket}} AS bucket, count() AS value FROM {{events}} WHERE "
                           "{{time_range}} GROUP BY bucket\"}",
                           true, &err),
                     AN_OK);
    d.tenant_id = strdup("t1");
    ck_assert_int_eq(metrics_def_check_owner(&d, &err), AN_OK);
    free(d.tenant_id);
    d.tenant_id = NULL;
    ck_assert_int_eq(metrics_def_check_owner(&d, &err), AN_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "schedule");
    metrics_def_free(&d);
}
END_TEST

START_TEST(test_metrics_def_units_and_types)
{
    ck_assert(metrics_unit_fills_zero("count"));
    ck_assert(metrics_unit_fills_zero("bytes"));
    ck_assert(metrics_unit_fills_zero("microUSD"));
    ck_assert(!metrics_unit_fills_zero("ratio"));
    ck_assert(!metrics_unit_fills_zero("seconds"));
    ck_assert(metrics_template_numeric_type("UInt64"));
    ck_assert(metrics_template_numeric_type("Nullable(Float64)"));
    ck_assert(metrics_template_numeric_type("Decimal(9, 2)"));
    ck_assert(!metrics_template_numeric_type("String"));
    ck_assert(!metrics_template_numeric_type("DateTime"));
    ck_assert(!metrics_template_numeric_type("Nullable(String)"));
}
END_TEST

Suite *metrics_def_suite(void)
{
    Suite *s = suite_create("metrics_def");
    TCase *tc = tcase_create("record");
    tcase_add_test(tc, test_metrics_def_create_fills_defaults_and_keeps_fields);
    tcase_add_test(tc, test_metrics_def_refuses_each_bad_field_by_name);
    tcase_add_test(tc, test_metrics_def_spec_reads_back_unchanged);
    tcase_add_test(tc, test_metrics_def_platform_schedule_needs_dimensions);
    tcase_add_test(tc, test_metrics_def_units_and_types);
    suite_add_tcase(s, tc);
    return s;
}
