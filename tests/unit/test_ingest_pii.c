/* ingest/pii and ingest/hasher: PII key rules, value masking, keyed hashes. */
#include "common/buf.h"
#include "common/crypto.h"
#include "ingest/hasher.h"
#include "ingest/pii.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

static char *masked(const char *s)
{
    an_buf b = AN_BUF_INIT;
    if (ingest_pii_mask(s, strlen(s), &b) == 0)
        an_buf_adds(&b, s); /* unchanged */
    return an_buf_detach(&b, NULL);
}

#define ck_mask(in, want)                                                                          \
    do {                                                                                           \
        char *got_ = masked(in);                                                                   \
        ck_assert_msg(strcmp(got_, want) == 0, "mask(\"%s\") = \"%s\", want \"%s\"", in, got_,     \
                      want);                                                                       \
        free(got_);                                                                                \
    } while (0)

START_TEST(test_pii_keys_match_normalised_at_any_spelling)
{
    ingest_pii_rules *r;
    ck_assert_int_eq(ingest_pii_rules_new(INGEST_PII_DEFAULT_KEYS, INGEST_PII_REMOVE, &r, NULL),
                     AN_OK);
    const char *pii[] = {"email",
                         "Email",
                         "userEmail",
                         "billing_email",
                         "first_name",
                         "firstName",
                         "LastName",
                         "phone",
                         "mobilePhone",
                         "ip",
                         "ipAddress",
                         "address",
                         "homeAddress",
                         "dateOfBirth",
                         "name",
                         "customerName",
                         "studentFirstName",
                         "billing_last_name",
                         "passport_number",
                         "credit_card_number",
                         "new_password",
                         "cardholder_name",
                         "cvv"};
    for (size_t i = 0; i < sizeof(pii) / sizeof(pii[0]); i++)
        ck_assert_msg(ingest_pii_key_action(r, pii[i], strlen(pii[i])) == INGEST_PII_REMOVE,
                      "%s should be a PII key", pii[i]);
    const char *fine[] = {"courseId", "courseName", "membership", "zipper",       "score",
                          "names",    "ipsum",      "title",      "type",         "id",
                          "fileName", "eventName",  "lessonName", "passwordReset"};
    for (size_t i = 0; i < sizeof(fine) / sizeof(fine[0]); i++)
        ck_assert_msg(ingest_pii_key_action(r, fine[i], strlen(fine[i])) == INGEST_PII_KEEP,
                      "%s should not be a PII key", fine[i]);
    ingest_pii_rules_free(r);
}

START_TEST(test_pii_rules_take_per_key_actions_and_reject_bad_ones)
{
    ingest_pii_rules *r;
    ck_assert_int_eq(
        ingest_pii_rules_new("email:hash, name ,*secret:remove,,", INGEST_PII_HASH, &r, NULL),
        AN_OK);
    ck_assert_uint_eq(ingest_pii_rules_count(r), 3);
    ck_assert_int_eq(ingest_pii_key_action(r, "e-mail", 6), INGEST_PII_HASH);
    ck_assert_int_eq(ingest_pii_key_action(r, "Name", 4), INGEST_PII_HASH);
    ck_assert_int_eq(ingest_pii_key_action(r, "apiSecret", 9), INGEST_PII_REMOVE);
    ck_assert_int_eq(ingest_pii_key_action(r, "other", 5), INGEST_PII_KEEP);
    ingest_pii_rules_free(r);

    an_error err;
    ck_assert_int_eq(ingest_pii_rules_new("email:encrypt", INGEST_PII_REMOVE, &r, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "ANALYTICS_INGEST_PII_KEYS");
    ck_assert_ptr_nonnull(strstr(err.message, "remove or hash"));
}

START_TEST(test_mask_replaces_emails_anywhere_in_a_string)
{
    ck_mask("bob@example.com", "[email]");
    ck_mask("write to Bob.Smith+news@mail.example.co.uk.", "write to [email].");
    ck_mask("a@b.c and x@y.org", "a@b.c and [email]");
    ck_mask("mailto:ann@uni.edu", "mailto:[email]");
    ck_mask("user@localhost", "user@localhost");
    ck_mask("@handle", "@handle");
}

START_TEST(test_mask_replaces_ip_addresses)
{
    ck_mask("10.0.0.1", "[ip]");
    ck_mask("from 192.168.1.20:8080 today", "from [ip]:8080 today");
    ck_mask("2001:db8::1", "[ip]");
    ck_mask("client fe80::1ff:fe23:4567:890a here", "client [ip] here");
    ck_mask("::1", "[ip]");
    ck_mask("256.1.1.1", "256.1.1.1");
    ck_mask("12:30:45", "12:30:45");
    ck_mask("1.2.3", "1.2.3");
    /* after a label and a colon; an address that ends a clause */
    ck_mask("ip:10.0.0.1", "ip:[ip]");
    ck_mask("from 2001:db8::1: reset", "from [ip]: reset");
    ck_mask("peer=fe80::1:", "peer=[ip]:");
    ck_mask("at:10:30:45", "at:10:30:45");
}

START_TEST(test_mask_replaces_phone_numbers_but_not_dates_or_ids)
{
    ck_mask("+49 30 1234567", "[phone]");
    ck_mask("call +1 (555) 123-4567 now", "call [phone] now");
    ck_mask("(555) 123-4567", "[phone]");
    ck_mask("555.123.4567", "[phone]");
    ck_mask("tel: 020 7946 0958", "tel: [phone]");
    ck_mask("tel:+15551234567", "tel:[phone]");
    ck_mask("Phone:555-123-4567", "Phone:[phone]");
    ck_mask("06 12 34 56 78", "[phone]");
    ck_mask("(01) 23 45 67 89", "[phone]");
    ck_mask("call 06.12.34.56.78 today", "call [phone] today");
    /* not phones */
    ck_mask("2026-11-27 10:00:00", "2026-11-27 10:00:00");
    ck_mask("2026-11-27T23:41:56Z", "2026-11-27T23:41:56Z");
    ck_mask("123e4567-e89b-12d3-a456-426614174000", "123e4567-e89b-12d3-a456-426614174000");
    ck_mask("id-555-123-4567", "id-555-123-4567");
    ck_mask("order 12345678901", "order 12345678901");
    ck_mask("score 98.5", "score 98.5");
    ck_mask("+12", "+12");
    ck_mask("01J9ZQ3V5X8KD2M4N6P8R0T2W4", "01J9ZQ3V5X8KD2M4N6P8R0T2W4");
    ck_mask("10 20 30 40 50", "10 20 30 40 50");
    ck_mask("version:1.2.3", "version:1.2.3");
}

START_TEST(test_mask_leaves_plain_text_alone)
{
    ck_mask("", "");
    ck_mask("Introduction to Databases", "Introduction to Databases");
    ck_mask("course-42 lesson 7", "course-42 lesson 7");
    an_buf out = AN_BUF_INIT;
    ck_assert_uint_eq(ingest_pii_mask("hello world", 11, &out), 0);
    ck_assert_uint_eq(out.len, 0); /* nothing to mask: nothing appended */
    ck_assert_uint_eq(ingest_pii_mask("hi a@b.io", 9, &out), 1);
    an_buf_free(&out);
}

START_TEST(test_hasher_equals_hmac_sha256_and_caches)
{
    const char *keys[] = {"k", "a-longer-secret-key-for-ingest-0123456789",
                          "0123456789012345678901234567890123456789012345678901234567890123456789"};
    for (size_t k = 0; k < 3; k++) {
        ingest_hasher *h;
        ck_assert_int_eq(ingest_hasher_new(keys[k], strlen(keys[k]), &h, NULL), AN_OK);
        const char *inputs[] = {"", "u42", "user-0000000001", "u42"};
        for (size_t i = 0; i < 4; i++) {
            char got[AN_CRYPTO_SHA256_HEX], want[AN_CRYPTO_SHA256_HEX];
            ingest_hasher_hex(h, inputs[i], strlen(inputs[i]), got);
            ck_assert_int_eq(an_crypto_hmac_sha256_hex(keys[k], strlen(keys[k]), inputs[i],
                                                       strlen(inputs[i]), want, NULL),
                             AN_OK);
            ck_assert_str_eq(got, want);
        }
        uint64_t computed, cached;
        ingest_hasher_stats(h, &computed, &cached);
        ck_assert_uint_eq(computed, 3);
        ck_assert_uint_eq(cached, 1);
        ingest_hasher_free(h);
    }
}

Suite *ingest_pii_suite(void)
{
    Suite *s = suite_create("ingest_pii");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_pii_keys_match_normalised_at_any_spelling);
    tcase_add_test(tc, test_pii_rules_take_per_key_actions_and_reject_bad_ones);
    tcase_add_test(tc, test_mask_replaces_emails_anywhere_in_a_string);
    tcase_add_test(tc, test_mask_replaces_ip_addresses);
    tcase_add_test(tc, test_mask_replaces_phone_numbers_but_not_dates_or_ids);
    tcase_add_test(tc, test_mask_leaves_plain_text_alone);
    tcase_add_test(tc, test_hasher_equals_hmac_sha256_and_caches);
    suite_add_tcase(s, tc);
    return s;
}
