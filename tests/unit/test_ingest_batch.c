/*
 * ingest_batch - which messages of a batch are streamed, and the ack-only
 * copy of a message delivered again while its first copy is in the batch.
 */
#include "ingest/batch.h"
#include "common/timeutil.h"

#include <check.h>
#include <string.h>

/* A batch as the store leaves it once its INSERTs are open (the stream
 * handles are only looked at, never used, by the batch). */
static char fake_stream;
static void open_streams(ingest_batch *b)
{
    b->stream[INGEST_TIER_HOT] = (struct an_ch_stream *)&fake_stream;
    b->stream[INGEST_TIER_AUDIT] = (struct an_ch_stream *)&fake_stream;
}

static void free_batch(ingest_batch *b)
{
    b->stream[INGEST_TIER_HOT] = b->stream[INGEST_TIER_AUDIT] = NULL;
    ingest_batch_free(b);
}

static ingest_event event(const char *id)
{
    ingest_event ev;
    memset(&ev, 0, sizeof(ev));
    ev.id = id;
    ev.id_len = strlen(id);
    ev.type = "course.enrolled";
    ev.type_len = strlen(ev.type);
    ev.tenant = "t1";
    ev.tenant_len = 2;
    ev.actor_type = "user";
    ev.actor_type_len = 4;
    ev.occurred_ms = 1700000000123;
    ev.properties = "{}";
    ev.properties_len = 2;
    return ev;
}

static ingest_msg_info info(uint64_t seq, uint64_t delivered, const char *reply)
{
    ingest_msg_info m = {.subject = "events.courses.enrolled",
                         .reply = reply,
                         .raw = "{}",
                         .raw_len = 2,
                         .stream_seq = seq,
                         .delivered = delivered,
                         .received_ms = 1700000000500};
    return m;
}

/* A batch with its INSERTs open holding e1 (seq 100, first delivery) and e2
 * (seq 101, second delivery). */
static ingest_batch *streaming_batch(void)
{
    ingest_batch *b;
    an_error err;
    ck_assert_int_eq(ingest_batch_new(&b, &err), AN_OK);
    open_streams(b);
    ck_assert(ingest_batch_streaming(b));
    ingest_event e1 = event("e1"), e2 = event("e2");
    ingest_msg_info m1 = info(100, 1, "$JS.ACK.a"), m2 = info(101, 2, "$JS.ACK.b");
    ck_assert_int_eq(ingest_batch_add_event(b, &m1, &e1, "k1", &err), AN_OK);
    ck_assert_int_eq(ingest_batch_add_event(b, &m2, &e2, "k1", &err), AN_OK);
    return b;
}

START_TEST(test_batch_streams_first_deliveries_and_buffers_redeliveries)
{
    int64_t before = an_time_mono_ms();
    ingest_batch *b = streaming_batch();
    /* the redelivery marks when the last message to look up came */
    ck_assert(b->lookup_ms >= before && b->lookup_ms <= an_time_mono_ms());
    ck_assert(b->msgs[0].streamed);
    ck_assert(!b->msgs[1].streamed);
    ck_assert_uint_eq(b->streamed, 1);
    /* the first delivery's rows went to the live builders, the redelivery's
     * stay in the batch for the look-up */
    ck_assert_uint_eq(an_ch_batch_rows(b->live[INGEST_TIER_HOT]), 1);
    ck_assert_uint_eq(an_ch_batch_rows(b->live[INGEST_TIER_AUDIT]), 1);
    ck_assert_uint_eq(an_ch_batch_rows(b->rows[INGEST_TIER_HOT]), 1);
    ck_assert_uint_eq(an_ch_batch_rows(b->rows[INGEST_TIER_AUDIT]), 1);
    free_batch(b);
}
END_TEST

/* A copy of a streamed message must be NAKed with it when the stream fails:
 * acking the copy would settle the message in JetStream with no row stored. */
START_TEST(test_ack_only_copy_shares_the_fate_of_the_first_copy)
{
    ingest_batch *b = streaming_batch();
    ingest_msg_info again1 = info(100, 2, "$JS.ACK.c"), again2 = info(101, 3, "$JS.ACK.d");
    ck_assert(ingest_batch_has_seq(b, 100));
    ck_assert(ingest_batch_has_seq(b, 101));
    ck_assert(!ingest_batch_has_seq(b, 102));
    ingest_batch_add_ack_only(b, &again1);
    ingest_batch_add_ack_only(b, &again2);
    ck_assert_uint_eq(b->n, 4);
    ck_assert(b->msgs[2].streamed);  /* a copy of the streamed one */
    ck_assert(!b->msgs[3].streamed); /* a copy of the buffered one */
    ck_assert_str_eq(ingest_msg_reply(b, &b->msgs[2]), "$JS.ACK.c");
    ck_assert_uint_eq(b->streamed, 1); /* rows streamed: still one */
    ck_assert_uint_eq(an_ch_batch_rows(b->live[INGEST_TIER_HOT]), 1);
    free_batch(b);
}
END_TEST

Suite *ingest_batch_suite(void)
{
    Suite *s = suite_create("ingest_batch");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_batch_streams_first_deliveries_and_buffers_redeliveries);
    tcase_add_test(tc, test_ack_only_copy_shares_the_fate_of_the_first_copy);
    suite_add_tcase(s, tc);
    return s;
}
