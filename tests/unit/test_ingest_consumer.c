/*
 * ingest_consumer_reply_meta - delivery count and stream sequence read from
 * the JetStream ack subject, both forms, and what is not one.
 */
#include "ingest/consumer.h"

#include <check.h>

START_TEST(test_reply_meta_reads_both_ack_subject_forms)
{
    uint64_t seq = 0, dc = 0;
    ck_assert(ingest_consumer_reply_meta(
        "$JS.ACK.ANALYTICS_FIREHOSE.ingest.3.1234567.89.1732761234567890123.42", &seq, &dc));
    ck_assert_uint_eq(dc, 3);
    ck_assert_uint_eq(seq, 1234567);
    ck_assert(ingest_consumer_reply_meta("$JS.ACK.hub.ACCHASH.ANALYTICS_FIREHOSE.ingest.1."
                                         "18446744073709551615.5.1732761234567890123."
                                         "0.xyz",
                                         &seq, &dc));
    ck_assert_uint_eq(dc, 1);
    ck_assert_uint_eq(seq, UINT64_MAX);
}
END_TEST

START_TEST(test_reply_meta_refuses_what_is_not_an_ack_subject)
{
    uint64_t seq = 7, dc = 9;
    static const char *bad[] = {
        NULL,
        "",
        "_INBOX.abc.1",
        "$JS.ACK.S.C.1.2.3.4", /* too few tokens */
        "$JS.ACK.S.C.x.2.3.4.5",
        "$JS.ACK.S.C.1.-2.3.4.5",
        "$JS.ACK.S.C.1..3.4.5",
        "$JS.ACK.S.C.1.18446744073709551616.3.4.5", /* > UINT64_MAX */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!ingest_consumer_reply_meta(bad[i], &seq, &dc), "%s",
                      bad[i] ? bad[i] : "NULL");
    ck_assert_uint_eq(seq, 7); /* untouched */
}
END_TEST

Suite *ingest_consumer_suite(void)
{
    Suite *s = suite_create("ingest_consumer");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_reply_meta_reads_both_ack_subject_forms);
    tcase_add_test(tc, test_reply_meta_refuses_what_is_not_an_ack_subject);
    suite_add_tcase(s, tc);
    return s;
}
