/*
 * The lease against the stack's real redis-server: two processes contending
 * (tests/helpers/lease_contender), a holder killed with SIGKILL, and the
 * compare-and-set rules of renew and release checked with redis-cli.
 */
#include "common/lease.h"
#include "common/redis.h"
#include "tests/harness.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TTL_MS 600

typedef struct {
    long long from, to; /* microseconds, CLOCK_MONOTONIC */
} interval;

typedef struct {
    interval iv[4096];
    int n;
    int renewals;
    int open; /* the last interval has no END: the process was killed */
} belief;

static redisContext *connect_stack(void)
{
    redisContext *c;
    an_error err;
    ck_assert_msg(an_redis_connect(&c, th_env("ANALYTICS_REDIS_URL"), 2000, &err) == AN_OK, "%s",
                  err.message);
    return c;
}

/* Read a contender's log into the intervals in which it believed it held the lease. */
static void read_belief(const char *path, belief *b)
{
    memset(b, 0, sizeof(*b));
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "no log %s", path);
    char kind[16], why[32];
    long long t, d = 0, last_deadline = 0;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        if (sscanf(line, "ACQ %lld %lld", &t, &d) == 2) {
            ck_assert_msg(!b->open, "ACQ while holding in %s", path);
            ck_assert_int_lt(b->n, 4096);
            b->iv[b->n].from = t;
            b->open = 1;
            last_deadline = d;
        } else if (sscanf(line, "RENEW %lld %lld", &t, &d) == 2) {
            ck_assert_msg(b->open, "RENEW while not holding in %s", path);
            last_deadline = d;
            b->renewals++;
        } else if (sscanf(line, "%15s %lld %31s", kind, &t, why) == 3 && strcmp(kind, "END") == 0) {
            ck_assert_msg(b->open, "END while not holding in %s", path);
            ck_assert_msg(t <= last_deadline, "%s believed past its deadline", path);
            b->iv[b->n++].to = t;
            b->open = 0;
        } else {
            ck_abort_msg("bad line in %s: %s", path, line);
        }
    }
    fclose(f);
    if (b->open) /* killed while holding: it believed until its last deadline */
        b->iv[b->n++].to = last_deadline;
}

static void assert_disjoint(const belief *a, const belief *b)
{
    for (int i = 0; i < a->n; i++)
        for (int j = 0; j < b->n; j++) {
            const interval *x = &a->iv[i], *y = &b->iv[j];
            ck_assert_msg(x->to <= y->from || y->to <= x->from,
                          "both believed they held the lease: [%lld, %lld] and [%lld, %lld] us",
                          x->from, x->to, y->from, y->to);
        }
}

static char *log_path(const char *tag)
{
    char *p;
    ck_assert(asprintf(&p, "/tmp/an-lease-%s-%d-%lld.log", tag, (int)getpid(),
                       (long long)th_now_ms()) > 0);
    unlink(p);
    return p;
}

static pid_t spawn_contender(const char *key, int run_ms, const char *log, const char *mode)
{
    char ttl[16], run[16];
    snprintf(ttl, sizeof(ttl), "%d", TTL_MS);
    snprintf(run, sizeof(run), "%d", run_ms);
    char *argv[] = {
        (char *)"lease_contender", (char *)key, ttl, run, (char *)log, (char *)mode, NULL};
    return th_spawn(th_bin("tests/helpers/lease_contender"), argv, NULL, NULL);
}

static void wait_ok(pid_t pid)
{
    int st;
    ck_assert_msg(th_wait(pid, 15000, &st, NULL) == 0, "contender %d did not finish", (int)pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "contender exited with %d", st);
}

START_TEST(test_lease_two_contenders_never_hold_it_at_once)
{
    char *key = th_unique("an:test:lease");
    char *la = log_path("a"), *lb = log_path("b");
    pid_t a = spawn_contender(key, 3000, la, "share");
    pid_t b = spawn_contender(key, 3000, lb, "share");
    wait_ok(a);
    wait_ok(b);

    static belief ba, bb;
    read_belief(la, &ba);
    read_belief(lb, &bb);
    /* the lease moved back and forth, and was renewed by its holders */
    ck_assert_msg(ba.n >= 2 && bb.n >= 2, "intervals: a %d, b %d", ba.n, bb.n);
    ck_assert_msg(ba.renewals + bb.renewals >= 2, "renewals: %d", ba.renewals + bb.renewals);
    ck_assert(!ba.open && !bb.open);
    assert_disjoint(&ba, &bb);
    /* both released at the end: nobody holds the key */
    char *cmd;
    ck_assert(asprintf(&cmd, "EXISTS %s", key) > 0);
    char *out = th_redis(cmd);
    ck_assert_str_eq(out, "0\n");
    free(out);
    free(cmd);
    unlink(la);
    unlink(lb);
    free(la);
    free(lb);
    free(key);
}
END_TEST

START_TEST(test_lease_moves_to_the_other_after_holder_is_killed)
{
    char *key = th_unique("an:test:lease");
    char *la = log_path("hog"), *lb = log_path("waiter");
    pid_t a = spawn_contender(key, 20000, la, "hog");
    ck_assert_msg(th_wait_log(la, "ACQ", 5000), "hog never got the lease");
    pid_t b = spawn_contender(key, 4000, lb, "share");
    th_sleep_ms(3 * TTL_MS); /* the hog renews: the waiter must get nothing */
    static belief bb, ba;
    read_belief(lb, &bb);
    ck_assert_msg(bb.n == 0, "the waiter got the lease while the hog renewed it");

    int64_t killed_ms = th_now_ms();
    th_kill(a);
    wait_ok(b);
    read_belief(la, &ba);
    read_belief(lb, &bb);
    ck_assert_int_eq(ba.n, 1);
    ck_assert_msg(ba.open, "the hog logged an END before it was killed");
    ck_assert_msg(ba.renewals >= 3, "the hog renewed %d times", ba.renewals);
    ck_assert_msg(bb.n >= 1, "the lease never moved to the waiter");
    assert_disjoint(&ba, &bb);
    /* it moved once the TTL ran out, not much later */
    long long took_ms = bb.iv[0].from / 1000 - killed_ms;
    ck_assert_msg(took_ms <= TTL_MS + 300, "the waiter got it %lld ms after the kill", took_ms);
    unlink(la);
    unlink(lb);
    free(la);
    free(lb);
    free(key);
}
END_TEST

START_TEST(test_lease_release_by_non_holder_deletes_nothing)
{
    redisContext *c = connect_stack();
    char *key = th_unique("an:test:lease");
    an_lease holder, other;
    an_error err;
    ck_assert_int_eq(an_lease_acquire(c, &holder, key, 5000, &err), AN_OK);
    ck_assert(an_lease_held(&holder));
    ck_assert_int_eq(an_lease_acquire(c, &other, key, 5000, &err), AN_ALREADY_EXISTS);
    ck_assert(!an_lease_held(&other));

    /* a stale handle of the same key with another token, as a second replica has */
    other = holder;
    snprintf(other.token, sizeof(other.token), "somebody-else");
    ck_assert_int_eq(an_lease_release(c, &other, &err), AN_FAILED_PRECONDITION);
    ck_assert_int_eq(an_lease_renew(c, &other, &err), AN_FAILED_PRECONDITION);

    char *cmd;
    ck_assert(asprintf(&cmd, "GET %s", key) > 0);
    char *out = th_redis(cmd);
    char expect[AN_LEASE_TOKEN_MAX + 2];
    snprintf(expect, sizeof(expect), "%s\n", holder.token);
    ck_assert_str_eq(out, expect); /* still the holder's */
    free(out);

    ck_assert_int_eq(an_lease_release(c, &holder, &err), AN_OK);
    ck_assert(!an_lease_held(&holder));
    out = th_redis(cmd);
    ck_assert_str_eq(out, "\n"); /* gone */
    free(out);
    free(cmd);
    free(key);
    redisFree(c);
}
END_TEST

START_TEST(test_lease_renew_after_expiry_fails_and_reports_loss)
{
    redisContext *c = connect_stack();
    char *key = th_unique("an:test:lease");
    an_lease l, next;
    an_error err;
    ck_assert_int_eq(an_lease_acquire(c, &l, key, 200, &err), AN_OK);
    ck_assert_int_le(an_lease_remaining_ms(&l), 200);
    ck_assert_int_eq(an_lease_renew(c, &l, &err), AN_OK);
    th_sleep_ms(350);
    ck_assert(!an_lease_held(&l)); /* the local deadline passed */
    ck_assert_int_eq(an_lease_renew(c, &l, &err), AN_FAILED_PRECONDITION);
    ck_assert_ptr_nonnull(strstr(err.message, "lost"));

    /* expired and taken by another: the old holder cannot renew or release it */
    ck_assert_int_eq(an_lease_acquire(c, &l, key, 200, &err), AN_OK);
    th_sleep_ms(350);
    ck_assert_int_eq(an_lease_acquire(c, &next, key, 5000, &err), AN_OK);
    ck_assert_int_eq(an_lease_renew(c, &l, &err), AN_FAILED_PRECONDITION);
    ck_assert_int_eq(an_lease_release(c, &l, &err), AN_FAILED_PRECONDITION);
    char *cmd;
    ck_assert(asprintf(&cmd, "PTTL %s", key) > 0);
    char *out = th_redis(cmd);
    long pttl = strtol(out, NULL, 10);
    ck_assert_msg(pttl > 4000 && pttl <= 5000, "PTTL %ld: the new holder's TTL was touched", pttl);
    free(out);
    free(cmd);
    an_lease_release(c, &next, NULL);
    free(key);
    redisFree(c);
}
END_TEST

START_TEST(test_lease_renew_extends_the_ttl_in_redis)
{
    redisContext *c = connect_stack();
    char *key = th_unique("an:test:lease");
    an_lease l;
    an_error err;
    ck_assert_int_eq(an_lease_acquire(c, &l, key, 1000, &err), AN_OK);
    th_sleep_ms(600);
    ck_assert_int_eq(an_lease_renew(c, &l, &err), AN_OK);
    ck_assert_int_gt(an_lease_remaining_ms(&l), 900);
    char *cmd;
    ck_assert(asprintf(&cmd, "PTTL %s", key) > 0);
    char *out = th_redis(cmd);
    long pttl = strtol(out, NULL, 10);
    ck_assert_msg(pttl > 800, "PTTL %ld after renew", pttl);
    free(out);
    free(cmd);
    an_lease_release(c, &l, NULL);
    free(key);
    redisFree(c);
}
END_TEST

START_TEST(test_lease_claim_once_only_first_caller_wins)
{
    redisContext *c = connect_stack();
    char *key = th_unique("an:test:once:sched42:1700000000");
    an_error err;
    ck_assert_int_eq(an_lease_claim_once(c, key, 300, &err), AN_OK);
    ck_assert_int_eq(an_lease_claim_once(c, key, 300, &err), AN_ALREADY_EXISTS);
    char *cmd;
    ck_assert(asprintf(&cmd, "EXISTS %s", key) > 0);
    char *out = th_redis(cmd);
    ck_assert_str_eq(out, "1\n");
    free(out);
    th_sleep_ms(400); /* after the TTL the key is gone and a new claim wins */
    out = th_redis(cmd);
    ck_assert_str_eq(out, "0\n");
    free(out);
    ck_assert_int_eq(an_lease_claim_once(c, key, 300, &err), AN_OK);
    ck_assert_int_eq(an_lease_claim_once(c, "", 300, &err), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_lease_claim_once(c, key, 0, &err), AN_INVALID_ARGUMENT);
    free(cmd);
    free(key);
    redisFree(c);
}
END_TEST

Suite *lease_suite(void)
{
    Suite *s = suite_create("lease");
    TCase *tc = tcase_create("lease");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_lease_two_contenders_never_hold_it_at_once);
    tcase_add_test(tc, test_lease_moves_to_the_other_after_holder_is_killed);
    tcase_add_test(tc, test_lease_release_by_non_holder_deletes_nothing);
    tcase_add_test(tc, test_lease_renew_after_expiry_fails_and_reports_loss);
    tcase_add_test(tc, test_lease_renew_extends_the_ttl_in_redis);
    tcase_add_test(tc, test_lease_claim_once_only_first_caller_wins);
    suite_add_tcase(s, tc);
    return s;
}
