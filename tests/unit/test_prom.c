#include "common/buf.h"
#include "common/prom.h"

#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static char *render(an_prom_registry *r)
{
    an_buf b = AN_BUF_INIT;
    an_prom_render(r, &b);
    return an_buf_detach(&b, NULL);
}

/* Compare rendered text line by line, so a failure names the first bad line. */
static void assert_lines(const char *got, const char *const *want)
{
    const char *p = got;
    size_t i = 0;
    for (; want[i]; i++) {
        const char *nl = strchr(p, '\n');
        ck_assert_msg(nl != NULL, "line %zu missing, want '%s'\nfull output:\n%s", i + 1, want[i],
                      got);
        ck_assert_msg(strlen(want[i]) == (size_t)(nl - p) && strncmp(p, want[i], nl - p) == 0,
                      "line %zu: got '%.*s', want '%s'", i + 1, (int)(nl - p), p, want[i]);
        p = nl + 1;
    }
    ck_assert_msg(*p == '\0', "extra output after line %zu: %s", i, p);
}

START_TEST(test_prom_renders_counter_gauge_histogram_in_text_format)
{
    an_prom_registry *r = an_prom_registry_new();
    an_error err;
    an_prom_counter *c1, *c2;
    an_prom_gauge *g;
    an_prom_histogram *h;
    ck_assert_int_eq(an_prom_counter_get(r, "analytics_requests_total", "Requests handled.",
                                         AN_PROM_LABELS("endpoint", "create", "code", "ok"), &c1,
                                         &err),
                     AN_OK);
    ck_assert_int_eq(an_prom_counter_get(r, "analytics_requests_total", NULL,
                                         AN_PROM_LABELS("endpoint", "get", "code", "not_found"),
                                         &c2, &err),
                     AN_OK);
    ck_assert_int_eq(an_prom_gauge_get(r, "analytics_queue_depth", "Jobs waiting.", NULL, &g, &err),
                     AN_OK);
    static const double b[] = {0.1, 0.5, 2.5};
    ck_assert_int_eq(an_prom_histogram_get(r, "analytics_request_seconds", "Latency.", b, 3,
                                           AN_PROM_LABELS("endpoint", "create"), &h, &err),
                     AN_OK);
    an_prom_counter_inc(c1);
    an_prom_counter_inc(c1);
    an_prom_counter_add(c1, 3);
    an_prom_counter_add(c2, 0.5);
    an_prom_gauge_set(g, 7);
    an_prom_gauge_dec(g);
    an_prom_gauge_add(g, -2.5);
    an_prom_histogram_observe(h, 0.05);
    an_prom_histogram_observe(h, 0.1); /* on a bound: counts in that bucket (le) */
    an_prom_histogram_observe(h, 0.3);
    an_prom_histogram_observe(h, 10);
    char *out = render(r);
    static const char *want[] = {
        "# HELP analytics_requests_total Requests handled.",
        "# TYPE analytics_requests_total counter",
        "analytics_requests_total{endpoint=\"create\",code=\"ok\"} 5",
        "analytics_requests_total{endpoint=\"get\",code=\"not_found\"} 0.5",
        "# HELP analytics_queue_depth Jobs waiting.",
        "# TYPE analytics_queue_depth gauge",
        "analytics_queue_depth 3.5",
        "# HELP analytics_request_seconds Latency.",
        "# TYPE analytics_request_seconds histogram",
        "analytics_request_seconds_bucket{endpoint=\"create\",le=\"0.1\"} 2",
        "analytics_request_seconds_bucket{endpoint=\"create\",le=\"0.5\"} 3",
        "analytics_request_seconds_bucket{endpoint=\"create\",le=\"2.5\"} 3",
        "analytics_request_seconds_bucket{endpoint=\"create\",le=\"+Inf\"} 4",
        "analytics_request_seconds_sum{endpoint=\"create\"} 10.45",
        "analytics_request_seconds_count{endpoint=\"create\"} 4",
        NULL,
    };
    assert_lines(out, want);
    free(out);
    an_prom_registry_free(r);
}
END_TEST

START_TEST(test_prom_default_buckets_and_unlabelled_histogram)
{
    an_prom_registry *r = an_prom_registry_new();
    an_prom_histogram *h;
    ck_assert_int_eq(an_prom_histogram_get(r, "lat_seconds", "", NULL, 0, NULL, &h, NULL), AN_OK);
    an_prom_histogram_observe(h, 0.007);
    an_prom_histogram_observe(h, NAN); /* ignored */
    char *out = render(r);
    static const char *want[] = {
        "# TYPE lat_seconds histogram",
        "lat_seconds_bucket{le=\"0.005\"} 0",
        "lat_seconds_bucket{le=\"0.01\"} 1",
        "lat_seconds_bucket{le=\"0.025\"} 1",
        "lat_seconds_bucket{le=\"0.05\"} 1",
        "lat_seconds_bucket{le=\"0.1\"} 1",
        "lat_seconds_bucket{le=\"0.25\"} 1",
        "lat_seconds_bucket{le=\"0.5\"} 1",
        "lat_seconds_bucket{le=\"1\"} 1",
        "lat_seconds_bucket{le=\"2.5\"} 1",
        "lat_seconds_bucket{le=\"5\"} 1",
        "lat_seconds_bucket{le=\"10\"} 1",
        "lat_seconds_bucket{le=\"+Inf\"} 1",
        "lat_seconds_sum 0.007",
        "lat_seconds_count 1",
        NULL,
    };
    assert_lines(out, want);
    free(out);
    ck_assert_uint_eq(an_prom_histogram_count(h), 1);
    ck_assert(an_prom_histogram_sum(h) == 0.007);
    an_prom_registry_free(r);
}
END_TEST

START_TEST(test_prom_escapes_label_values_and_help)
{
    an_prom_registry *r = an_prom_registry_new();
    an_prom_gauge *g;
    ck_assert_int_eq(an_prom_gauge_get(r, "x", "Line one\nback\\slash \"quoted\"",
                                       AN_PROM_LABELS("path", "C:\\dir\n\"q\""), &g, NULL),
                     AN_OK);
    an_prom_gauge_set(g, -1e-7);
    char *out = render(r);
    static const char *want[] = {
        "# HELP x Line one\\nback\\\\slash \"quoted\"",
        "# TYPE x gauge",
        "x{path=\"C:\\\\dir\\n\\\"q\\\"\"} -1e-07",
        NULL,
    };
    assert_lines(out, want);
    free(out);

    /* special values */
    an_prom_gauge_set(g, INFINITY);
    out = render(r);
    ck_assert_ptr_nonnull(strstr(out, "} +Inf\n"));
    free(out);
    an_prom_gauge_set(g, -INFINITY);
    out = render(r);
    ck_assert_ptr_nonnull(strstr(out, "} -Inf\n"));
    free(out);
    an_prom_gauge_set(g, NAN);
    out = render(r);
    ck_assert_ptr_nonnull(strstr(out, "} NaN\n"));
    free(out);
    an_prom_registry_free(r);
}
END_TEST

START_TEST(test_prom_same_name_and_labels_give_the_same_object)
{
    an_prom_registry *r = an_prom_registry_new();
    an_prom_counter *a, *b, *c;
    ck_assert_int_eq(an_prom_counter_get(r, "hits_total", "h", AN_PROM_LABELS("k", "v"), &a, NULL),
                     AN_OK);
    ck_assert_int_eq(an_prom_counter_get(r, "hits_total", "h", AN_PROM_LABELS("k", "v"), &b, NULL),
                     AN_OK);
    ck_assert_int_eq(an_prom_counter_get(r, "hits_total", "h", AN_PROM_LABELS("k", "w"), &c, NULL),
                     AN_OK);
    ck_assert_ptr_eq(a, b);
    ck_assert_ptr_ne(a, c);
    an_prom_counter_inc(a);
    an_prom_counter_inc(b);
    ck_assert(an_prom_counter_value(a) == 2);
    ck_assert(an_prom_counter_value(c) == 0);
    an_prom_histogram *h1, *h2;
    ck_assert_int_eq(an_prom_histogram_get(r, "h_seconds", "", NULL, 0, NULL, &h1, NULL), AN_OK);
    ck_assert_int_eq(an_prom_histogram_get(r, "h_seconds", "", an_prom_latency_buckets,
                                           an_prom_latency_buckets_n, NULL, &h2, NULL),
                     AN_OK);
    ck_assert_ptr_eq(h1, h2);
    /* one family, rendered once */
    char *out = render(r);
    char *first = strstr(out, "# TYPE hits_total");
    ck_assert_ptr_nonnull(first);
    ck_assert_ptr_null(strstr(first + 1, "# TYPE hits_total"));
    free(out);
    an_prom_registry_free(r);
}
END_TEST

START_TEST(test_prom_rejects_bad_names_labels_and_conflicts)
{
    an_prom_registry *r = an_prom_registry_new();
    an_prom_counter *c;
    an_prom_gauge *g;
    an_prom_histogram *h;
    an_error err;
    ck_assert_int_eq(an_prom_counter_get(r, "9lives", "", NULL, &c, &err), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_prom_counter_get(r, "a-b", "", NULL, &c, &err), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_prom_counter_get(r, "", "", NULL, &c, &err), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_prom_counter_get(r, NULL, "", NULL, &c, &err), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_prom_counter_get(r, "ns:sub_total", "", NULL, &c, &err), AN_OK);
    ck_assert_int_eq(an_prom_counter_get(r, "x", "", AN_PROM_LABELS("a:b", "v"), &c, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_prom_counter_get(r, "x", "", AN_PROM_LABELS("__name", "v"), &c, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_prom_counter_get(r, "x", "", AN_PROM_LABELS("1a", "v"), &c, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_prom_counter_get(r, "x", "", AN_PROM_LABELS("a", "1", "a", "2"), &c, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_prom_counter_get(r, "x", "", AN_PROM_LABELS("a"), &c, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_int_eq(
        an_prom_histogram_get(r, "hh", "", NULL, 0, AN_PROM_LABELS("le", "1"), &h, &err),
        AN_INVALID_ARGUMENT);
    /* "le" is fine outside histograms */
    ck_assert_int_eq(an_prom_gauge_get(r, "gg", "", AN_PROM_LABELS("le", "1"), &g, &err), AN_OK);

    /* same name, other type */
    ck_assert_int_eq(an_prom_counter_get(r, "things", "", AN_PROM_LABELS("a", "1"), &c, &err),
                     AN_OK);
    ck_assert_int_eq(an_prom_gauge_get(r, "things", "", AN_PROM_LABELS("a", "1"), &g, &err),
                     AN_ALREADY_EXISTS);
    ck_assert_ptr_nonnull(strstr(err.message, "already a counter"));
    /* same name, other label names */
    ck_assert_int_eq(an_prom_counter_get(r, "things", "", AN_PROM_LABELS("b", "1"), &c, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_prom_counter_get(r, "things", "", NULL, &c, &err), AN_INVALID_ARGUMENT);

    /* buckets */
    static const double unsorted[] = {1, 0.5}, dup[] = {1, 1}, withinf[] = {1, INFINITY},
                        nan_b[] = {NAN};
    ck_assert_int_eq(an_prom_histogram_get(r, "h1", "", unsorted, 2, NULL, &h, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_prom_histogram_get(r, "h1", "", dup, 2, NULL, &h, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_prom_histogram_get(r, "h1", "", nan_b, 1, NULL, &h, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_prom_histogram_get(r, "h1", "", withinf, 2, NULL, &h, &err), AN_OK);
    static const double other[] = {2};
    ck_assert_int_eq(an_prom_histogram_get(r, "h1", "", other, 1, NULL, &h, &err),
                     AN_INVALID_ARGUMENT);
    char *out = render(r);
    ck_assert_ptr_nonnull(strstr(out, "h1_bucket{le=\"1\"} 0\nh1_bucket{le=\"+Inf\"} 0\n"));
    free(out);
    an_prom_registry_free(r);
}
END_TEST

START_TEST(test_prom_counters_ignore_negative_and_keep_fractions)
{
    an_prom_registry *r = an_prom_registry_new();
    an_prom_counter *c;
    ck_assert_int_eq(an_prom_counter_get(r, "c_total", "", NULL, &c, NULL), AN_OK);
    an_prom_counter_add(c, -5);
    an_prom_counter_add(c, NAN);
    ck_assert(an_prom_counter_value(c) == 0);
    an_prom_counter_add(c, 0.25);
    an_prom_counter_add(c, 0.25);
    an_prom_counter_add(c, 1e6);
    ck_assert(an_prom_counter_value(c) == 1000000.5);
    an_prom_registry_free(r);
}
END_TEST

enum { THREADS = 8, ITERS = 100000 };

typedef struct {
    an_prom_registry *r;
    an_prom_counter *shared;
    an_prom_gauge *gauge;
    an_prom_histogram *hist;
} conc_ctx;

static void *hammer(void *arg)
{
    conc_ctx *x = arg;
    /* every thread also looks the series up itself: it must get the same one */
    an_prom_counter *mine;
    if (an_prom_counter_get(x->r, "conc_total", "", AN_PROM_LABELS("k", "v"), &mine, NULL) != AN_OK)
        return (void *)1;
    for (int i = 0; i < ITERS; i++) {
        an_prom_counter_inc(i % 2 ? mine : x->shared);
        an_prom_gauge_inc(x->gauge);
        an_prom_histogram_observe(x->hist, (i % 4) * 0.5); /* 0, .5, 1, 1.5 */
        if (i % 1000 == 0) {
            an_buf b = AN_BUF_INIT; /* render concurrently with the updates */
            an_prom_render(x->r, &b);
            an_buf_free(&b);
        }
    }
    return NULL;
}

START_TEST(test_prom_concurrent_updates_sum_exactly)
{
    conc_ctx x = {an_prom_registry_new(), NULL, NULL, NULL};
    static const double b[] = {0.5, 1};
    ck_assert_int_eq(
        an_prom_counter_get(x.r, "conc_total", "", AN_PROM_LABELS("k", "v"), &x.shared, NULL),
        AN_OK);
    ck_assert_int_eq(an_prom_gauge_get(x.r, "conc_gauge", "", NULL, &x.gauge, NULL), AN_OK);
    ck_assert_int_eq(an_prom_histogram_get(x.r, "conc_seconds", "", b, 2, NULL, &x.hist, NULL),
                     AN_OK);
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, &x), 0);
    for (int i = 0; i < THREADS; i++) {
        void *res;
        pthread_join(th[i], &res);
        ck_assert_ptr_null(res);
    }
    ck_assert(an_prom_counter_value(x.shared) == (double)THREADS * ITERS);
    ck_assert(an_prom_gauge_value(x.gauge) == (double)THREADS * ITERS);
    ck_assert_uint_eq(an_prom_histogram_count(x.hist), (uint64_t)THREADS * ITERS);
    /* (0 + .5 + 1 + 1.5) per 4 observations; all exact in binary */
    ck_assert(an_prom_histogram_sum(x.hist) == 0.75 * THREADS * ITERS);
    char *out = render(x.r);
    ck_assert_ptr_nonnull(strstr(out, "conc_total{k=\"v\"} 800000\n"));
    ck_assert_ptr_nonnull(strstr(out, "conc_seconds_bucket{le=\"0.5\"} 400000\n"));
    ck_assert_ptr_nonnull(strstr(out, "conc_seconds_bucket{le=\"1\"} 600000\n"));
    ck_assert_ptr_nonnull(strstr(out, "conc_seconds_bucket{le=\"+Inf\"} 800000\n"));
    ck_assert_ptr_nonnull(strstr(out, "conc_seconds_count 800000\n"));
    free(out);
    an_prom_registry_free(x.r);
}
END_TEST

Suite *prom_suite(void)
{
    Suite *s = suite_create("prom");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_prom_renders_counter_gauge_histogram_in_text_format);
    tcase_add_test(tc, test_prom_default_buckets_and_unlabelled_histogram);
    tcase_add_test(tc, test_prom_escapes_label_values_and_help);
    tcase_add_test(tc, test_prom_same_name_and_labels_give_the_same_object);
    tcase_add_test(tc, test_prom_rejects_bad_names_labels_and_conflicts);
    tcase_add_test(tc, test_prom_counters_ignore_negative_and_keep_fractions);
    tcase_add_test(tc, test_prom_concurrent_updates_sum_exactly);
    suite_add_tcase(s, tc);
    return s;
}
