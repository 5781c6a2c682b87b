#include "common/ulid.h"

#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool in_alphabet(char c)
{
    return c && strchr("0123456789ABCDEFGHJKMNPQRSTVWXYZ", c) != NULL;
}

START_TEST(test_ulid_text_is_26_crockford_chars_with_current_time)
{
    int64_t before = wall_ms();
    char s[AN_ULID_STRLEN];
    ck_assert_int_eq(an_ulid_new_str(s, NULL), AN_OK);
    int64_t after = wall_ms();
    ck_assert_uint_eq(strlen(s), 26);
    for (int i = 0; i < 26; i++)
        ck_assert_msg(in_alphabet(s[i]), "bad char %c in %s", s[i], s);
    ck_assert(s[0] >= '0' && s[0] <= '7');
    an_ulid id;
    ck_assert_int_eq(an_ulid_parse(s, &id, NULL), AN_OK);
    ck_assert_int_ge(an_ulid_time_ms(&id), before);
    ck_assert_int_le(an_ulid_time_ms(&id), after);
    char again[AN_ULID_STRLEN];
    an_ulid_format(&id, again);
    ck_assert_str_eq(again, s);
}
END_TEST

START_TEST(test_ulid_spec_example_decodes_to_its_timestamp)
{
    /* the example of the ULID spec: timestamp part 01ARYZ6S41 = 1469918176385 */
    an_ulid id;
    ck_assert_int_eq(an_ulid_parse("01ARYZ6S41TSV4RRFFQ69G5FAV", &id, NULL), AN_OK);
    ck_assert_int_eq(an_ulid_time_ms(&id), 1469918176385LL);
    char s[AN_ULID_STRLEN];
    an_ulid_format(&id, s);
    ck_assert_str_eq(s, "01ARYZ6S41TSV4RRFFQ69G5FAV");
    /* lowercase is accepted and comes back uppercase */
    ck_assert_int_eq(an_ulid_parse("01aryz6s41tsv4rrffq69g5fav", &id, NULL), AN_OK);
    an_ulid_format(&id, s);
    ck_assert_str_eq(s, "01ARYZ6S41TSV4RRFFQ69G5FAV");
    /* the extremes */
    ck_assert_int_eq(an_ulid_parse("7ZZZZZZZZZZZZZZZZZZZZZZZZZ", &id, NULL), AN_OK);
    for (int i = 0; i < 16; i++)
        ck_assert_int_eq(id.b[i], 0xff);
    ck_assert_int_eq(an_ulid_time_ms(&id), AN_ULID_MAX_MS);
    ck_assert_int_eq(an_ulid_parse("00000000000000000000000000", &id, NULL), AN_OK);
    ck_assert_int_eq(an_ulid_time_ms(&id), 0);
}
END_TEST

START_TEST(test_ulid_10000_in_a_tight_loop_strictly_increase)
{
    enum { N = 10000 };
    char(*ids)[AN_ULID_STRLEN] = malloc(sizeof(*ids) * N);
    an_ulid *bin = malloc(sizeof(*bin) * N);
    for (int i = 0; i < N; i++) {
        if (an_ulid_new(&bin[i], NULL) != AN_OK)
            ck_abort_msg("an_ulid_new failed at %d", i);
        an_ulid_format(&bin[i], ids[i]);
    }
    int same_ms = 0;
    for (int i = 1; i < N; i++) {
        if (strcmp(ids[i - 1], ids[i]) >= 0)
            ck_abort_msg("not increasing at %d: %s then %s", i, ids[i - 1], ids[i]);
        if (an_ulid_compare(&bin[i - 1], &bin[i]) >= 0)
            ck_abort_msg("binary order differs at %d", i);
        same_ms += an_ulid_time_ms(&bin[i - 1]) == an_ulid_time_ms(&bin[i]);
    }
    /* the loop is fast enough that most ids share a millisecond with the
     * previous one, so the monotonic path really was exercised */
    ck_assert_int_gt(same_ms, N / 2);
    free(ids);
    free(bin);
}
END_TEST

START_TEST(test_ulid_next_increments_within_a_millisecond)
{
    an_ulid prev, next;
    ck_assert_int_eq(an_ulid_next(NULL, 1000, &prev, NULL), AN_OK);
    ck_assert_int_eq(an_ulid_time_ms(&prev), 1000);

    /* same ms: exactly prev + 1 */
    ck_assert_int_eq(an_ulid_next(&prev, 1000, &next, NULL), AN_OK);
    ck_assert_int_eq(an_ulid_time_ms(&next), 1000);
    ck_assert_int_gt(an_ulid_compare(&next, &prev), 0);
    an_ulid expect = prev;
    for (int i = 15; i >= 0 && ++expect.b[i] == 0; i--)
        ;
    ck_assert_int_eq(an_ulid_compare(&next, &expect), 0);

    /* clock stepped back: still after prev, keeping prev's time */
    ck_assert_int_eq(an_ulid_next(&prev, 400, &next, NULL), AN_OK);
    ck_assert_int_gt(an_ulid_compare(&next, &prev), 0);
    ck_assert_int_eq(an_ulid_time_ms(&next), 1000);

    /* later ms: fresh randomness at the new time */
    ck_assert_int_eq(an_ulid_next(&prev, 1001, &next, NULL), AN_OK);
    ck_assert_int_eq(an_ulid_time_ms(&next), 1001);

    /* randomness exhausted within a ms: carries into the timestamp */
    an_ulid full;
    ck_assert_int_eq(an_ulid_min_at(5000, &full, NULL), AN_OK);
    memset(full.b + 6, 0xff, 10);
    ck_assert_int_eq(an_ulid_next(&full, 5000, &next, NULL), AN_OK);
    ck_assert_int_eq(an_ulid_time_ms(&next), 5001);
    ck_assert_int_gt(an_ulid_compare(&next, &full), 0);

    /* the very last id has no successor */
    an_ulid last;
    memset(last.b, 0xff, 16);
    an_error err;
    ck_assert_int_eq(an_ulid_next(&last, AN_ULID_MAX_MS, &next, &err), AN_RESOURCE_EXHAUSTED);
    /* timestamps outside 48 bits */
    ck_assert_int_eq(an_ulid_next(NULL, -1, &next, NULL), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_ulid_next(NULL, AN_ULID_MAX_MS + 1, &next, NULL), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_ulid_min_at(-5, &next, NULL), AN_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_ulid_min_at_bounds_every_id_of_that_millisecond)
{
    an_ulid lo, hi, id;
    ck_assert_int_eq(an_ulid_min_at(1469918176385LL, &lo, NULL), AN_OK);
    char s[AN_ULID_STRLEN];
    an_ulid_format(&lo, s);
    ck_assert_str_eq(s, "01ARYZ6S410000000000000000");
    ck_assert_int_eq(an_ulid_min_at(1469918176386LL, &hi, NULL), AN_OK);
    ck_assert_int_eq(an_ulid_parse("01ARYZ6S41TSV4RRFFQ69G5FAV", &id, NULL), AN_OK);
    ck_assert_int_le(an_ulid_compare(&lo, &id), 0);
    ck_assert_int_lt(an_ulid_compare(&id, &hi), 0);
}
END_TEST

START_TEST(test_ulid_parse_rejects_bad_input)
{
    static const char *bad[] = {
        "",
        "01ARYZ6S41TSV4RRFFQ69G5FA",   /* 25 */
        "01ARYZ6S41TSV4RRFFQ69G5FAVX", /* 27 */
        "01ARYZ6S41TSV4RRFFQ69G5FAI",  /* I */
        "01ARYZ6S41TSV4RRFFQ69G5FAL",  /* L */
        "01ARYZ6S41TSV4RRFFQ69G5FAO",  /* O */
        "01ARYZ6S41TSV4RRFFQ69G5FAU",  /* U */
        "01ARYZ6S41TSV4RRFFQ69G5FA-",
        "01ARYZ6S41TSV4RRFFQ69G5FA ",
        " 01ARYZ6S41TSV4RRFFQ69G5FA",
        "81ARYZ6S41TSV4RRFFQ69G5FAV", /* > 128 bits */
        "ZZZZZZZZZZZZZZZZZZZZZZZZZZ",
        "01ARYZ6S41TSV4RRFFQ69G5F\xc3\xa9",
        "01ARYZ6S41-SV4RRFFQ69G5FAV",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        an_ulid id;
        memset(&id, 0xab, sizeof(id));
        an_error err;
        an_error_clear(&err);
        ck_assert_msg(an_ulid_parse(bad[i], &id, &err) == AN_INVALID_ARGUMENT, "accepted '%s'",
                      bad[i]);
        ck_assert_int_eq(id.b[0], 0xab); /* untouched */
        ck_assert_ptr_nonnull(strstr(err.message, "ulid"));
        ck_assert(!an_ulid_valid(bad[i]));
    }
    ck_assert(!an_ulid_valid(NULL));
    ck_assert(an_ulid_valid("01ARYZ6S41TSV4RRFFQ69G5FAV"));
}
END_TEST

enum { THREADS = 4, PER_THREAD = 5000 };

static void *gen_many(void *arg)
{
    an_ulid *out = arg;
    for (int i = 0; i < PER_THREAD; i++)
        if (an_ulid_new(&out[i], NULL) != AN_OK)
            return (void *)1;
    return NULL;
}

static int cmp_ulid(const void *a, const void *b)
{
    return an_ulid_compare(a, b);
}

START_TEST(test_ulid_unique_and_ordered_per_thread_across_threads)
{
    an_ulid *all = malloc(sizeof(*all) * THREADS * PER_THREAD);
    pthread_t th[THREADS];
    for (int t = 0; t < THREADS; t++)
        ck_assert_int_eq(pthread_create(&th[t], NULL, gen_many, all + t * PER_THREAD), 0);
    for (int t = 0; t < THREADS; t++) {
        void *r;
        pthread_join(th[t], &r);
        ck_assert_ptr_null(r);
    }
    /* each thread saw its own ids increase */
    for (int t = 0; t < THREADS; t++)
        for (int i = 1; i < PER_THREAD; i++)
            if (an_ulid_compare(&all[t * PER_THREAD + i - 1], &all[t * PER_THREAD + i]) >= 0)
                ck_abort_msg("thread %d: not increasing at %d", t, i);
    /* and no id was handed out twice */
    qsort(all, THREADS * PER_THREAD, sizeof(*all), cmp_ulid);
    for (int i = 1; i < THREADS * PER_THREAD; i++)
        if (an_ulid_compare(&all[i - 1], &all[i]) == 0)
            ck_abort_msg("duplicate id at %d", i);
    free(all);
}
END_TEST

Suite *ulid_suite(void)
{
    Suite *s = suite_create("ulid");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_ulid_text_is_26_crockford_chars_with_current_time);
    tcase_add_test(tc, test_ulid_spec_example_decodes_to_its_timestamp);
    tcase_add_test(tc, test_ulid_10000_in_a_tight_loop_strictly_increase);
    tcase_add_test(tc, test_ulid_next_increments_within_a_millisecond);
    tcase_add_test(tc, test_ulid_min_at_bounds_every_id_of_that_millisecond);
    tcase_add_test(tc, test_ulid_parse_rejects_bad_input);
    tcase_add_test(tc, test_ulid_unique_and_ordered_per_thread_across_threads);
    suite_add_tcase(s, tc);
    return s;
}
