/* ingest/envelope: validation, PII filtering and flattening of one event. */
#include "common/crypto.h"
#include "common/timeutil.h"
#include "ingest/envelope.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define KEY "unit-test-hmac-key-0123456789"

static ingest_pii_rules *rules;
static ingest_hasher *hasher;
static ingest_parser *parser;
static int64_t now_ms;

static void setup_with(const ingest_limits *lim)
{
    ck_assert_int_eq(ingest_pii_rules_new(INGEST_PII_DEFAULT_KEYS ",secretCode:hash",
                                          INGEST_PII_REMOVE, &rules, NULL),
                     AN_OK);
    ck_assert_int_eq(ingest_hasher_new(KEY, strlen(KEY), &hasher, NULL), AN_OK);
    parser = ingest_parser_new(lim, rules, hasher);
    ck_assert_int_eq(an_time_parse("2026-03-01T12:00:00Z", &now_ms, NULL), AN_OK);
}

static void setup(void)
{
    ingest_limits lim = {.max_event_bytes = 4096,
                         .max_depth = 4,
                         .max_properties = 20,
                         .max_past_ms = 30LL * 86400000,
                         .max_future_ms = 86400000};
    setup_with(&lim);
}

static void teardown(void)
{
    ingest_parser_free(parser);
    ingest_hasher_free(hasher);
    ingest_pii_rules_free(rules);
}

static bool parse(const char *json, ingest_event *ev, ingest_reject *rej)
{
    return ingest_envelope_parse(parser, json, strlen(json), now_ms, ev, rej);
}

/* The value of leaf key k, or NULL (returned string is static). */
static const char *prop(const ingest_event *ev, const char *k)
{
    static char v[1024];
    for (size_t i = 0; i < ev->nprops; i++)
        if (ev->prop_key_lens[i] == strlen(k) && memcmp(ev->prop_keys[i], k, strlen(k)) == 0) {
            snprintf(v, sizeof(v), "%.*s", (int)ev->prop_value_lens[i], ev->prop_values[i]);
            return v;
        }
    return NULL;
}

static char *props_json(const ingest_event *ev)
{
    char *s = malloc(ev->properties_len + 1);
    memcpy(s, ev->properties, ev->properties_len);
    s[ev->properties_len] = '\0';
    return s;
}

#define ENV(extra)                                                                                 \
    "{\"id\":\"evt-1\",\"type\":\"enrollment.created\",\"tenantId\":\"t1\","                       \
    "\"occurredAt\":\"2026-03-01T11:59:58.250Z\"" extra "}"

START_TEST(test_valid_event_gives_every_column)
{
    ingest_event ev;
    ingest_reject rej;
    const char *json =
        ENV(",\"correlationId\":\"c-9\",\"actor\":{\"type\":\"user\",\"id\":\"u42\"},"
            "\"data\":{\"courseId\":\"c1\",\"price\":12.5,\"paid\":true,"
            "\"nothing\":null,\"meta\":{\"source\":\"web\",\"n\":3}}");
    ck_assert_msg(parse(json, &ev, &rej), "rejected: %s %s", ingest_reason_name(rej.reason),
                  rej.detail);
    ck_assert_int_eq((int)ev.id_len, 5);
    ck_assert(memcmp(ev.id, "evt-1", 5) == 0);
    ck_assert(memcmp(ev.type, "enrollment.created", ev.type_len) == 0);
    ck_assert(memcmp(ev.tenant, "t1", ev.tenant_len) == 0 && ev.tenant_len == 2);
    ck_assert(memcmp(ev.correlation_id, "c-9", 3) == 0);
    ck_assert(memcmp(ev.actor_type, "user", 4) == 0);
    char want[AN_CRYPTO_SHA256_HEX];
    an_crypto_hmac_sha256_hex(KEY, strlen(KEY), "u42", 3, want, NULL);
    ck_assert_str_eq(ev.actor_id, want);
    int64_t ms;
    an_time_parse("2026-03-01T11:59:58.250Z", &ms, NULL);
    ck_assert_int_eq(ev.occurred_ms, ms);
    char *pj = props_json(&ev);
    ck_assert_str_eq(pj, "{\"courseId\":\"c1\",\"price\":12.5,\"paid\":true,\"nothing\":null,"
                         "\"meta\":{\"source\":\"web\",\"n\":3}}");
    free(pj);
    ck_assert_uint_eq(ev.nprops, 5);
    ck_assert_str_eq(prop(&ev, "courseId"), "c1");
    ck_assert_str_eq(prop(&ev, "price"), "12.5");
    ck_assert_str_eq(prop(&ev, "paid"), "true");
    ck_assert_str_eq(prop(&ev, "meta.source"), "web");
    ck_assert_str_eq(prop(&ev, "meta.n"), "3");
    ck_assert_ptr_null(prop(&ev, "nothing"));
}

START_TEST(test_pii_keys_removed_hashed_and_values_masked_at_any_depth)
{
    ingest_event ev;
    ingest_reject rej;
    const char *json =
        ENV(",\"data\":{\"email\":\"a@b.io\",\"student\":{\"firstName\":\"Ann\",\"id\":\"s1\","
            "\"contact\":{\"phone\":\"+44 20 7946 0958\",\"note\":\"mail me at ann@uni.edu\"}},"
            "\"secretCode\":\"XYZ\",\"attendees\":[{\"name\":\"Bo\",\"role\":\"tutor\"},"
            "\"10.1.2.3\"],\"from\":\"+1 555 123 4567\"}");
    ck_assert_msg(parse(json, &ev, &rej), "rejected: %s", rej.detail);
    char *pj = props_json(&ev);
    char hex[AN_CRYPTO_SHA256_HEX];
    an_crypto_hmac_sha256_hex(KEY, strlen(KEY), "XYZ", 3, hex, NULL);
    char want[1024];
    snprintf(want, sizeof(want),
             "{\"student\":{\"id\":\"s1\",\"contact\":{\"note\":\"mail me at [email]\"}},"
             "\"secretCode\":\"%s\",\"attendees\":[{\"role\":\"tutor\"},\"[ip]\"],"
             "\"from\":\"[phone]\"}",
             hex);
    ck_assert_str_eq(pj, want);
    free(pj);
    ck_assert_str_eq(prop(&ev, "student.contact.note"), "mail me at [email]");
    ck_assert_str_eq(prop(&ev, "secretCode"), hex);
    ck_assert_str_eq(prop(&ev, "attendees"), "[{\"role\":\"tutor\"},\"[ip]\"]");
    ck_assert_ptr_null(prop(&ev, "email"));
    ck_assert_ptr_null(prop(&ev, "student.firstName"));
    ck_assert_uint_eq(ev.pii_keys, 5); /* email, firstName, phone, secretCode, name */
    ck_assert_uint_eq(ev.masked, 3);
}

START_TEST(test_escapes_are_decoded_and_reescaped_as_valid_json)
{
    ingest_event ev;
    ingest_reject rej;
    const char *json = ENV(",\"data\":{\"t\\u00e9xt\":\"line\\nquote\\\" \\u00e9 \\ud83d\\ude00 "
                           "\\/ tab\\t\",\"raw\":\"caf\xc3\xa9\"}");
    ck_assert_msg(parse(json, &ev, &rej), "rejected: %s", rej.detail);
    ck_assert_str_eq(prop(&ev, "t\xc3\xa9xt"), "line\nquote\" \xc3\xa9 \xf0\x9f\x98\x80 / tab\t");
    ck_assert_str_eq(prop(&ev, "raw"), "caf\xc3\xa9");
    char *pj = props_json(&ev);
    cJSON *j = cJSON_Parse(pj);
    ck_assert_msg(j != NULL, "not JSON: %s", pj);
    ck_assert_str_eq(cJSON_GetObjectItem(j, "raw")->valuestring, "caf\xc3\xa9");
    cJSON_Delete(j);
    free(pj);
}

START_TEST(test_platform_event_and_minimal_event_are_accepted)
{
    ingest_event ev;
    ingest_reject rej;
    ck_assert(parse("{\"id\":\"e\",\"type\":\"x\",\"tenantId\":null,"
                    "\"occurredAt\":\"2026-03-01T12:00:00+01:00\",\"extra\":[1,{\"a\":2}]}",
                    &ev, &rej));
    ck_assert_uint_eq(ev.tenant_len, 0);
    ck_assert_str_eq(ev.actor_id, "");
    ck_assert_uint_eq(ev.properties_len, 2);
    ck_assert(memcmp(ev.properties, "{}", 2) == 0);
    ck_assert_uint_eq(ev.nprops, 0);
    ck_assert(
        parse(ENV(",\"actor\":{\"type\":\"service\",\"id\":12345},\"data\":null"), &ev, &rej));
    char want[AN_CRYPTO_SHA256_HEX];
    an_crypto_hmac_sha256_hex(KEY, strlen(KEY), "12345", 5, want, NULL);
    ck_assert_str_eq(ev.actor_id, want);
}

static void expect_reject(const char *json, ingest_reason reason, const char *detail_part)
{
    ingest_event ev;
    ingest_reject rej;
    ck_assert_msg(!parse(json, &ev, &rej), "accepted: %s", json);
    ck_assert_msg(rej.reason == reason, "%s: reason %s (%s), want %s", json,
                  ingest_reason_name(rej.reason), rej.detail, ingest_reason_name(reason));
    if (detail_part)
        ck_assert_msg(strstr(rej.detail, detail_part) != NULL, "%s: detail \"%s\" lacks \"%s\"",
                      json, rej.detail, detail_part);
}

START_TEST(test_malformed_json_is_invalid_json)
{
    expect_reject("", INGEST_REASON_INVALID_JSON, NULL);
    expect_reject("{\"id\":\"e\",", INGEST_REASON_INVALID_JSON, "end of input");
    expect_reject("{\"id\":\"e\"} x", INGEST_REASON_INVALID_JSON, "after");
    expect_reject("[1,2]", INGEST_REASON_INVALID_JSON, "object");
    expect_reject("{\"id\":\"e\\q\"}", INGEST_REASON_INVALID_JSON, "escape");
    expect_reject("{\"id\":\"\xff\"}", INGEST_REASON_INVALID_JSON, "UTF-8");
    expect_reject("{\"id\":\"\\ud800\"}", INGEST_REASON_INVALID_JSON, "surrogate");
    expect_reject(ENV(",\"data\":{\"a\":01}"), INGEST_REASON_INVALID_JSON, NULL);
    expect_reject(ENV(",\"data\":{\"a\":tru}"), INGEST_REASON_INVALID_JSON, NULL);
    expect_reject(ENV(",\"data\":{\"a\":\"x\nnewline\"}"), INGEST_REASON_INVALID_JSON, "control");
    expect_reject("not json at all", INGEST_REASON_INVALID_JSON, NULL);
}

START_TEST(test_missing_and_mistyped_fields_are_named)
{
    expect_reject("{\"id\":\"e\",\"type\":\"x\",\"occurredAt\":\"2026-03-01T12:00:00Z\"}",
                  INGEST_REASON_MISSING_FIELD, "tenantId");
    expect_reject("{\"type\":\"x\",\"tenantId\":\"t\",\"occurredAt\":\"2026-03-01T12:00:00Z\"}",
                  INGEST_REASON_MISSING_FIELD, "id");
    expect_reject("{\"id\":\"e\",\"tenantId\":\"t\",\"occurredAt\":\"2026-03-01T12:00:00Z\"}",
                  INGEST_REASON_MISSING_FIELD, "type");
    expect_reject("{\"id\":\"e\",\"type\":\"x\",\"tenantId\":\"t\"}", INGEST_REASON_MISSING_FIELD,
                  "occurredAt");
    expect_reject("{\"id\":\"e\",\"type\":\"x\",\"tenantId\":\"\",\"occurredAt\":\"2026-03-01\"}",
                  INGEST_REASON_INVALID_FIELD, "tenantId");
    expect_reject(
        "{\"id\":\"e\",\"type\":\"x\",\"tenantId\":\"t'1\",\"occurredAt\":\"2026-03-01\"}",
        INGEST_REASON_INVALID_FIELD, "tenantId");
    expect_reject("{\"id\":7,\"type\":\"x\",\"tenantId\":\"t\",\"occurredAt\":\"2026-03-01\"}",
                  INGEST_REASON_INVALID_FIELD, "id must be a string");
    expect_reject(ENV(",\"data\":[1]"), INGEST_REASON_INVALID_FIELD, "data");
    expect_reject(ENV(",\"actor\":\"u1\""), INGEST_REASON_INVALID_FIELD, "actor");
    expect_reject(ENV(",\"actor\":{\"id\":1.5}"), INGEST_REASON_INVALID_FIELD, "actor.id");
    expect_reject(ENV(",\"tenantId\":\"t2\""), INGEST_REASON_INVALID_FIELD, "twice");
    expect_reject(ENV(",\"correlationId\":5"), INGEST_REASON_INVALID_FIELD, "correlationId");
}

START_TEST(test_bad_timestamps_are_rejected)
{
    const char *bad[] = {
        "2026-03-01T12:00:00",  "2026-13-01T00:00:00Z", "yesterday", "1969-12-31T23:59:59Z",
        "2025-01-01T00:00:00Z", "2026-03-03T12:00:00Z", "2026-03-02"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char json[256];
        snprintf(json, sizeof(json),
                 "{\"id\":\"e\",\"type\":\"x\",\"tenantId\":\"t\",\"occurredAt\":\"%s\"}", bad[i]);
        expect_reject(json, INGEST_REASON_BAD_TIMESTAMP, "occurredAt");
    }
    expect_reject("{\"id\":\"e\",\"type\":\"x\",\"tenantId\":\"t\",\"occurredAt\":1700000000}",
                  INGEST_REASON_BAD_TIMESTAMP, "RFC 3339");
}

START_TEST(test_limits_give_too_large_too_deep_too_many)
{
    char big[5000];
    memset(big, 'x', sizeof(big));
    memcpy(big, "{\"id\":\"", 7);
    big[sizeof(big) - 3] = '"';
    big[sizeof(big) - 2] = '}';
    big[sizeof(big) - 1] = '\0';
    expect_reject(big, INGEST_REASON_TOO_LARGE, "limit is 4096");
    expect_reject(ENV(",\"data\":{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}"), INGEST_REASON_TOO_DEEP,
                  "deeper than 4");
    expect_reject(ENV(",\"data\":{\"a\":[[[[1]]]]}"), INGEST_REASON_TOO_DEEP, NULL);
    expect_reject(ENV(",\"data\":{\"email\":{\"a\":{\"b\":{\"c\":{}}}}}"), INGEST_REASON_TOO_DEEP,
                  NULL);
    char many[2048] = ENV(",\"data\":{");
    many[strlen(many) - 1] = '\0';
    for (int i = 0; i < 21; i++)
        snprintf(many + strlen(many), sizeof(many) - strlen(many), "%s\"k%d\":%d", i ? "," : "", i,
                 i);
    strcat(many, "}}");
    expect_reject(many, INGEST_REASON_TOO_MANY_PROPERTIES, "more than 20");
    /* at the limits: accepted */
    ingest_event ev;
    ingest_reject rej;
    ck_assert(parse(ENV(",\"data\":{\"a\":{\"b\":{\"c\":{\"d\":1}}}}"), &ev, &rej));
    ck_assert_str_eq(prop(&ev, "a.b.c.d"), "1");
}

START_TEST(test_reject_keeps_tenant_and_id_read_before_the_failure)
{
    ingest_event ev;
    ingest_reject rej;
    ck_assert(!parse("{\"id\":\"evt-9\",\"tenantId\":\"t7\",\"type\":\"x\",\"occurredAt\":\"no\"}",
                     &ev, &rej));
    ck_assert_str_eq(rej.tenant, "t7");
    ck_assert_str_eq(rej.id, "evt-9");
    ck_assert(!parse("{\"id\":\"evt-9\",\"tenantId\":\"bad tenant\"}", &ev, &rej));
    ck_assert_str_eq(rej.tenant, "");
    ck_assert_str_eq(rej.id, "evt-9");
}

START_TEST(test_parser_is_reusable_and_events_do_not_leak_into_each_other)
{
    ingest_event ev;
    ingest_reject rej;
    ck_assert(parse(ENV(",\"data\":{\"a\":\"\\u0041\",\"b\":[1,2]}"), &ev, &rej));
    ck_assert_str_eq(prop(&ev, "a"), "A");
    ck_assert(!parse("{", &ev, &rej));
    ck_assert(parse(ENV(",\"data\":{\"c\":\"z\"}"), &ev, &rej));
    ck_assert_uint_eq(ev.nprops, 1);
    ck_assert_str_eq(prop(&ev, "c"), "z");
    ck_assert_ptr_null(prop(&ev, "a"));
}

Suite *ingest_envelope_suite(void)
{
    Suite *s = suite_create("ingest_envelope");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_valid_event_gives_every_column);
    tcase_add_test(tc, test_pii_keys_removed_hashed_and_values_masked_at_any_depth);
    tcase_add_test(tc, test_escapes_are_decoded_and_reescaped_as_valid_json);
    tcase_add_test(tc, test_platform_event_and_minimal_event_are_accepted);
    tcase_add_test(tc, test_malformed_json_is_invalid_json);
    tcase_add_test(tc, test_missing_and_mistyped_fields_are_named);
    tcase_add_test(tc, test_bad_timestamps_are_rejected);
    tcase_add_test(tc, test_limits_give_too_large_too_deep_too_many);
    tcase_add_test(tc, test_reject_keeps_tenant_and_id_read_before_the_failure);
    tcase_add_test(tc, test_parser_is_reusable_and_events_do_not_leak_into_each_other);
    suite_add_tcase(s, tc);
    return s;
}
