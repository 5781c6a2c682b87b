/*
 * The job queue against the stack's real redis-server. Outcomes are checked
 * with redis-cli (XLEN, XPENDING, XRANGE, ZCARD), not through the queue's
 * own API; consumers that die are separate processes
 * (tests/helpers/queue_worker) killed with SIGKILL.
 */
#include "common/queue.h"
#include "tests/harness.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define NAME "jobs"

/* Output of a redis-cli command built from a format; the caller frees it. */
static char *redis_f(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *redis_f(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd;
    ck_assert(vasprintf(&cmd, fmt, ap) > 0);
    va_end(ap);
    char *out = th_redis(cmd);
    free(cmd);
    return out;
}

/* The first number redis-cli prints for a command. */
static long long redis_n(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static long long redis_n(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *cmd;
    ck_assert(vasprintf(&cmd, fmt, ap) > 0);
    va_end(ap);
    char *out = th_redis(cmd);
    char *end;
    long long v = strtoll(out, &end, 10);
    ck_assert_msg(end != out, "redis-cli %s: not a number: %s", cmd, out);
    free(out);
    free(cmd);
    return v;
}

/* The value after the line `field` in redis-cli's output of one stream
 * entry or hash (alternating lines); NULL when absent. Free it. */
static char *value_after(const char *out, const char *field)
{
    const char *p = out;
    while (p && *p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (len == strlen(field) && strncmp(p, field, len) == 0 && nl) {
            const char *v = nl + 1, *vend = strchr(v, '\n');
            return strndup(v, vend ? (size_t)(vend - v) : strlen(v));
        }
        p = nl ? nl + 1 : NULL;
    }
    return NULL;
}

typedef struct {
    char *prefix;
    char stream[256], delayed[256], dead[256];
    an_queue_options o;
} fixture;

static void fixture_init(fixture *f, int visibility_ms)
{
    f->prefix = th_unique("an:test");
    snprintf(f->stream, sizeof(f->stream), "%s:%s", f->prefix, NAME);
    snprintf(f->delayed, sizeof(f->delayed), "%s:%s:delayed", f->prefix, NAME);
    snprintf(f->dead, sizeof(f->dead), "%s:%s:dead", f->prefix, NAME);
    an_queue_options_init(&f->o);
    f->o.prefix = f->prefix;
    f->o.visibility_ms = visibility_ms;
}

static an_queue *open_as(fixture *f, const char *consumer)
{
    an_queue_options o = f->o;
    o.consumer = consumer;
    an_queue *q;
    an_error err;
    ck_assert_msg(an_queue_open(&q, th_env("ANALYTICS_REDIS_URL"), NAME, &o, &err) == AN_OK, "%s",
                  err.message);
    return q;
}

static void fixture_free(fixture *f)
{
    char *out = redis_f("DEL %s %s %s", f->stream, f->delayed, f->dead);
    free(out);
    free(f->prefix);
}

static char *temp_path(const char *tag)
{
    char *p;
    ck_assert(asprintf(&p, "/tmp/an-queue-%s-%d-%lld", tag, (int)getpid(), (long long)th_now_ms()) >
              0);
    unlink(p);
    return p;
}

static pid_t spawn_worker(fixture *f, const char *mode, const char *consumer, const char *marker,
                          int work_ms)
{
    char vis[16], work[16];
    snprintf(vis, sizeof(vis), "%d", f->o.visibility_ms);
    snprintf(work, sizeof(work), "%d", work_ms);
    char *argv[] = {
        (char *)"queue_worker", (char *)mode, f->prefix, (char *)NAME, (char *)consumer, vis,
        (char *)marker,         work,         NULL};
    return th_spawn(th_bin("tests/helpers/queue_worker"), argv, NULL, NULL);
}

static void wait_for_line(const char *path, const char *word)
{
    char *cond;
    ck_assert(asprintf(&cond, "grep -q '^%s' %s 2>/dev/null", word, path) > 0);
    ck_assert_msg(th_eventually(cond, 10000) == 0, "no '%s' in %s", word, path);
    free(cond);
}

static void wait_exit0(pid_t pid)
{
    int st;
    ck_assert_msg(th_wait(pid, 15000, &st, NULL) == 0, "worker %d did not finish", (int)pid);
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker exited with status %d", st);
}

/* ---- round trip -------------------------------------------------------- */

START_TEST(test_queue_push_take_ack_round_trip)
{
    fixture f;
    fixture_init(&f, 5000);
    an_queue *q = open_as(&f, "c1");
    an_error err;
    const char bin[] = {'a', '\0', 'b', '\xff', '\n'};
    char *id1, *id2;
    an_queue_meta meta = {.job_id = "export-01", .tenant = "t1", .correlation_id = "corr-9"};
    ck_assert_int_eq(an_queue_push(q, bin, sizeof(bin), &meta, &id1, &err), AN_OK);
    ck_assert_str_eq(id1, "export-01");
    ck_assert_int_eq(an_queue_push(q, "plain", 5, NULL, &id2, &err), AN_OK);
    ck_assert_ptr_nonnull(strchr(id2, '-')); /* a stream entry id */
    ck_assert_int_eq(redis_n("XLEN %s", f.stream), 2);
    ck_assert_int_eq(redis_n("XPENDING %s %s", f.stream, NAME), 0);

    an_queue_job *j;
    ck_assert_int_eq(an_queue_take(q, 1000, &j, &err), AN_OK);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(j->id, "export-01");
    ck_assert_uint_eq(j->payload_len, sizeof(bin));
    ck_assert(memcmp(j->payload, bin, sizeof(bin)) == 0);
    ck_assert_str_eq(j->tenant, "t1");
    ck_assert_str_eq(j->correlation_id, "corr-9");
    ck_assert_ptr_null(j->last_error);
    ck_assert_int_eq(j->delivery_count, 1);
    ck_assert_int_eq(j->attempt, 1);
    /* taken: pending for consumer c1, still in the stream */
    char *out = redis_f("XPENDING %s %s", f.stream, NAME);
    ck_assert_msg(strncmp(out, "1\n", 2) == 0 && strstr(out, "\nc1\n"), "XPENDING: %s", out);
    free(out);
    an_queue_stats st;
    ck_assert_int_eq(an_queue_stats_get(q, &st, &err), AN_OK);
    ck_assert_int_eq(st.waiting, 1);
    ck_assert_int_eq(st.pending, 1);

    ck_assert_int_eq(an_queue_ack(q, j, &err), AN_OK);
    ck_assert_int_eq(redis_n("XPENDING %s %s", f.stream, NAME), 0);
    ck_assert_int_eq(redis_n("XLEN %s", f.stream), 1); /* acked entries are deleted */
    an_queue_job_free(j);

    ck_assert_int_eq(an_queue_take(q, 1000, &j, &err), AN_OK);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(j->id, id2);
    ck_assert_str_eq(j->entry_id, id2);
    ck_assert_str_eq(j->payload, "plain");
    ck_assert_ptr_null(j->tenant);
    ck_assert_int_eq(an_queue_ack(q, j, &err), AN_OK);
    ck_assert_int_eq(an_queue_ack(q, j, &err), AN_OK); /* twice: harmless */
    an_queue_job_free(j);
    ck_assert_int_eq(redis_n("XLEN %s", f.stream), 0);
    ck_assert_int_eq(redis_n("XPENDING %s %s", f.stream, NAME), 0);

    /* empty queue: take waits about block_ms and returns no job */
    int64_t t0 = th_now_ms();
    ck_assert_int_eq(an_queue_take(q, 300, &j, &err), AN_OK);
    int64_t waited = th_now_ms() - t0;
    ck_assert_ptr_null(j);
    ck_assert_msg(waited >= 290 && waited < 1500, "waited %lld ms", (long long)waited);
    ck_assert_int_eq(an_queue_stats_get(q, &st, &err), AN_OK);
    ck_assert(st.waiting == 0 && st.pending == 0 && st.delayed == 0 && st.dead == 0);
    free(id1);
    free(id2);
    an_queue_close(q);
    fixture_free(&f);
}
END_TEST

START_TEST(test_queue_blocked_take_wakes_up_for_a_new_job)
{
    fixture f;
    fixture_init(&f, 5000);
    an_queue *q = open_as(&f, "waiter");
    an_error err;
    /* a separate process pushes while we block */
    char *cmd;
    ck_assert(asprintf(&cmd,
                       "(sleep 0.3; redis-cli -u '%s' XADD %s '*' payload late) "
                       ">/dev/null 2>&1 &",
                       th_env("ANALYTICS_REDIS_URL"), f.stream) > 0);
    ck_assert_int_eq(system(cmd), 0);
    free(cmd);
    int64_t t0 = th_now_ms();
    an_queue_job *j;
    ck_assert_int_eq(an_queue_take(q, 5000, &j, &err), AN_OK);
    int64_t took = th_now_ms() - t0;
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(j->payload, "late");
    ck_assert_msg(took >= 250 && took < 2000, "took %lld ms", (long long)took);
    ck_assert_int_eq(an_queue_ack(q, j, &err), AN_OK);
    an_queue_job_free(j);
    an_queue_close(q);
    fixture_free(&f);
}
END_TEST

/* ---- consumers that die ---------------------------------------------- */

START_TEST(test_queue_killed_consumer_job_is_reclaimed_and_completed)
{
    fixture f;
    fixture_init(&f, 500);
    an_queue *q = open_as(&f, "producer");
    an_error err;
    char *id;
    ck_assert_int_eq(an_queue_push(q, "work", 4, NULL, &id, &err), AN_OK);
    char *marker = temp_path("reclaim");

    pid_t doomed = spawn_worker(&f, "hang", "doomed", marker, 0);
    wait_for_line(marker, "taken");
    char *out = redis_f("XPENDING %s %s", f.stream, NAME);
    ck_assert_msg(strstr(out, "\ndoomed\n") != NULL, "XPENDING: %s", out);
    free(out);
    th_kill(doomed);

    pid_t rescuer = spawn_worker(&f, "complete", "rescuer", marker, 0);
    wait_exit0(rescuer);

    /* two takes: the doomed one, then the rescuer's after the visibility timeout */
    FILE *m = fopen(marker, "r");
    ck_assert_ptr_nonnull(m);
    char id_a[128], id_b[128], acked[16];
    int del_a, att_a, del_b, att_b;
    long long t_a, t_b;
    ck_assert_int_eq(fscanf(m, "taken %127s %d %d %lld\n", id_a, &del_a, &att_a, &t_a), 4);
    ck_assert_int_eq(fscanf(m, "taken %127s %d %d %lld\n", id_b, &del_b, &att_b, &t_b), 4);
    ck_assert_int_eq(fscanf(m, "%15s", acked), 1);
    fclose(m);
    ck_assert_str_eq(id_a, id);
    ck_assert_str_eq(id_b, id);
    ck_assert_int_eq(del_a, 1);
    ck_assert_int_eq(att_a, 1);
    ck_assert_int_eq(del_b, 2); /* delivered twice */
    ck_assert_int_eq(att_b, 2);
    ck_assert_str_eq(acked, "acked");
    ck_assert_msg(t_b - t_a >= 500, "reclaimed %lld ms after the take, before the timeout",
                  t_b - t_a);
    ck_assert_msg(t_b - t_a < 3000, "reclaimed only %lld ms after the take", t_b - t_a);

    out = redis_f("GET %s:%s:result:%s", f.prefix, NAME, id);
    ck_assert_str_eq(out, "rescuer 2 2\n");
    free(out);
    ck_assert_int_eq(redis_n("XPENDING %s %s", f.stream, NAME), 0);
    ck_assert_int_eq(redis_n("XLEN %s", f.stream), 0);
    out = redis_f("DEL %s:%s:result:%s", f.prefix, NAME, id);
    free(out);
    unlink(marker);
    free(marker);
    free(id);
    an_queue_close(q);
    fixture_free(&f);
}
END_TEST

START_TEST(test_queue_heartbeating_long_job_is_not_reclaimed)
{
    fixture f;
    fixture_init(&f, 600);
    an_queue *q = open_as(&f, "thief");
    an_error err;
    char *id;
    ck_assert_int_eq(an_queue_push(q, "long", 4, NULL, &id, &err), AN_OK);
    char *marker = temp_path("heartbeat");
    /* works 3 visibility timeouts, extending every timeout/4 */
    pid_t busy = spawn_worker(&f, "heartbeat", "busy", marker, 1800);
    wait_for_line(marker, "taken");

    int st, takes = 0;
    while (th_wait(busy, 0, &st, NULL) != 0) {
        an_queue_job *j;
        ck_assert_int_eq(an_queue_take(q, 150, &j, &err), AN_OK);
        ck_assert_msg(j == NULL, "job %s stolen from a live, heartbeating consumer (delivery %d)",
                      j->id, j->delivery_count);
        takes++;
    }
    ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "worker exited with %d", st);
    ck_assert_int_ge(takes, 5);
    char *out = redis_f("GET %s:%s:result:%s", f.prefix, NAME, id);
    ck_assert_str_eq(out, "busy 1 1\n");
    free(out);
    ck_assert_int_eq(redis_n("XPENDING %s %s", f.stream, NAME), 0);
    ck_assert_int_eq(redis_n("XLEN %s", f.stream), 0);
    out = redis_f("DEL %s:%s:result:%s", f.prefix, NAME, id);
    free(out);
    unlink(marker);
    free(marker);
    free(id);
    an_queue_close(q);
    fixture_free(&f);
}
END_TEST

START_TEST(test_queue_job_whose_consumers_always_die_ends_in_dead_letter)
{
    fixture f;
    fixture_init(&f, 300);
    f.o.max_attempts = 2;
    an_queue *a = open_as(&f, "first"), *b = open_as(&f, "second"), *c = open_as(&f, "third");
    an_error err;
    char *id;
    ck_assert_int_eq(an_queue_push(a, "poison", 6, NULL, &id, &err), AN_OK);
    an_queue_job *j;
    ck_assert_int_eq(an_queue_take(a, 1000, &j, &err), AN_OK);
    ck_assert_ptr_nonnull(j);
    an_queue_job_free(j); /* "first" dies without ack */
    ck_assert_int_eq(an_queue_take(b, 2000, &j, &err), AN_OK);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(j->attempt, 2);
    ck_assert_int_eq(j->delivery_count, 2);
    an_queue_job_free(j); /* "second" dies too */
    th_sleep_ms(350);
    ck_assert_int_eq(an_queue_take(c, 300, &j, &err), AN_OK);
    ck_assert_ptr_null(j); /* two attempts spent: not handed out a third time */

    ck_assert_int_eq(redis_n("XLEN %s", f.dead), 1);
    ck_assert_int_eq(redis_n("XPENDING %s %s", f.stream, NAME), 0);
    ck_assert_int_eq(redis_n("XLEN %s", f.stream), 0);
    char *out = redis_f("XRANGE %s - +", f.dead);
    char *reason = value_after(out, "reason"), *attempts = value_after(out, "attempts");
    char *jid = value_after(out, "id"), *payload = value_after(out, "payload");
    ck_assert_ptr_nonnull(reason);
    ck_assert_msg(strstr(reason, "visibility timeout") != NULL, "reason: %s", reason);
    ck_assert_str_eq(attempts, "2");
    ck_assert_str_eq(jid, id);
    ck_assert_str_eq(payload, "poison");
    free(reason);
    free(attempts);
    free(jid);
    free(payload);
    free(out);
    free(id);
    an_queue_close(a);
    an_queue_close(b);
    an_queue_close(c);
    fixture_free(&f);
}
END_TEST

/* ---- failures, retries, dead letters ---------------------------------- */

START_TEST(test_queue_failing_job_retries_with_growing_backoff_then_dead_letters)
{
    fixture f;
    fixture_init(&f, 5000);
    f.o.max_attempts = 4;
    f.o.backoff_base_ms = 400;
    f.o.backoff_max_ms = 10000;
    f.o.jitter = 0.2;
    an_queue *q = open_as(&f, "flaky");
    an_error err;
    char *id;
    an_queue_meta meta = {.tenant = "t7"};
    ck_assert_int_eq(an_queue_push(q, "doomed", 6, &meta, &id, &err), AN_OK);

    int64_t at[4], delay[4];
    for (int i = 0; i < 4; i++) {
        an_queue_job *j;
        ck_assert_int_eq(an_queue_take(q, 3000, &j, &err), AN_OK);
        at[i] = th_now_ms();
        ck_assert_msg(j != NULL, "attempt %d never came", i + 1);
        ck_assert_str_eq(j->id, id); /* stable across retries */
        ck_assert_int_eq(j->attempt, i + 1);
        ck_assert_int_eq(j->delivery_count, 1);
        ck_assert_str_eq(j->payload, "doomed");
        ck_assert_str_eq(j->tenant, "t7");
        if (i == 0) {
            ck_assert_ptr_null(j->last_error);
        } else {
            char want[32];
            snprintf(want, sizeof(want), "boom %d", i);
            ck_assert_str_eq(j->last_error, want);
        }
        char reason[32];
        snprintf(reason, sizeof(reason), "boom %d", i + 1);
        ck_assert_int_eq(an_queue_fail(q, j, reason, &delay[i], &err), AN_OK);
        an_queue_job_free(j);
        if (i < 3) {
            /* nominal 400, 800, 1600 ms, minus up to 20% jitter */
            int64_t nominal = 400LL << i;
            ck_assert_msg(delay[i] >= nominal * 8 / 10 && delay[i] <= nominal,
                          "retry %d in %lld ms, nominal %lld", i + 1, (long long)delay[i],
                          (long long)nominal);
            ck_assert_int_eq(redis_n("ZCARD %s", f.delayed), 1);
            ck_assert_int_eq(redis_n("XLEN %s", f.stream), 0);
            ck_assert_int_eq(redis_n("XPENDING %s %s", f.stream, NAME), 0);
        } else {
            ck_assert_int_eq(delay[i], -1); /* dead-lettered */
        }
    }
    /* The backoffs double (x1.6 at least, with the jitter), and each retry ran
     * after its backoff, late by at most LATE_MS: Redis ends a blocking read
     * on its timer (hz 10, so up to 100 ms late), plus scheduling on a busy
     * machine. With backoffs of 320 ms and more the measured gaps grow too. */
    enum { LATE_MS = 200 };
    for (int i = 0; i < 3; i++) {
        int64_t gap = at[i + 1] - at[i];
        ck_assert_msg(gap >= delay[i] - 5 && gap <= delay[i] + LATE_MS,
                      "gap %d: %lld ms for a %lld ms backoff", i + 1, (long long)gap,
                      (long long)delay[i]);
        if (i > 0) {
            int64_t prev = at[i] - at[i - 1];
            ck_assert_msg(delay[i] * 10 >= delay[i - 1] * 16, "backoff %lld ms after %lld ms",
                          (long long)delay[i], (long long)delay[i - 1]);
            ck_assert_msg(gap > prev, "gap %lld ms after %lld ms: not growing", (long long)gap,
                          (long long)prev);
        }
    }

    ck_assert_int_eq(redis_n("XLEN %s", f.dead), 1);
    ck_assert_int_eq(redis_n("ZCARD %s", f.delayed), 0);
    ck_assert_int_eq(redis_n("XLEN %s", f.stream), 0);
    ck_assert_int_eq(redis_n("XPENDING %s %s", f.stream, NAME), 0);
    char *out = redis_f("XRANGE %s - +", f.dead);
    char *reason = value_after(out, "reason"), *attempts = value_after(out, "attempts");
    char *jid = value_after(out, "id"), *tenant = value_after(out, "tenant");
    char *consumer = value_after(out, "consumer");
    ck_assert_str_eq(reason, "boom 4");
    ck_assert_str_eq(attempts, "4");
    ck_assert_str_eq(jid, id);
    ck_assert_str_eq(tenant, "t7");
    ck_assert_str_eq(consumer, "flaky");
    free(reason);
    free(attempts);
    free(jid);
    free(tenant);
    free(consumer);
    free(out);
    an_queue_stats st;
    ck_assert_int_eq(an_queue_stats_get(q, &st, &err), AN_OK);
    ck_assert(st.waiting == 0 && st.pending == 0 && st.delayed == 0 && st.dead == 1);
    free(id);
    an_queue_close(q);
    fixture_free(&f);
}
END_TEST

START_TEST(test_queue_retry_delays_are_jittered_within_bounds)
{
    fixture f;
    fixture_init(&f, 5000);
    f.o.backoff_base_ms = 10000;
    f.o.jitter = 0.5;
    an_queue *q = open_as(&f, "c1");
    an_error err;
    int64_t delay[8];
    int distinct = 0;
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(an_queue_push(q, "j", 1, NULL, NULL, &err), AN_OK);
    for (int i = 0; i < 8; i++) {
        an_queue_job *j;
        ck_assert_int_eq(an_queue_take(q, 1000, &j, &err), AN_OK);
        ck_assert_ptr_nonnull(j);
        ck_assert_int_eq(an_queue_fail(q, j, "x", &delay[i], &err), AN_OK);
        an_queue_job_free(j);
        ck_assert_msg(delay[i] >= 5000 && delay[i] <= 10000, "delay %lld ms", (long long)delay[i]);
        distinct += i > 0 && delay[i] != delay[0];
    }
    ck_assert_msg(distinct > 0, "8 retries with the same delay: no jitter");
    ck_assert_int_eq(redis_n("ZCARD %s", f.delayed), 8);
    /* none is due yet: a take hands out nothing */
    an_queue_job *j;
    ck_assert_int_eq(an_queue_take(q, 100, &j, &err), AN_OK);
    ck_assert_ptr_null(j);
    an_queue_stats st;
    ck_assert_int_eq(an_queue_stats_get(q, &st, &err), AN_OK);
    ck_assert_int_eq(st.delayed, 8);
    ck_assert_int_eq(st.waiting + st.pending + st.dead, 0);
    an_queue_close(q);
    fixture_free(&f);
}
END_TEST

START_TEST(test_queue_bury_dead_letters_at_once_and_requeue_brings_it_back)
{
    fixture f;
    fixture_init(&f, 5000);
    an_queue *q = open_as(&f, "c1");
    an_error err;
    char *id;
    ck_assert_int_eq(an_queue_push(q, "{bad json", 9, NULL, &id, &err), AN_OK);
    an_queue_job *j;
    ck_assert_int_eq(an_queue_take(q, 1000, &j, &err), AN_OK);
    ck_assert_int_eq(an_queue_bury(q, j, "malformed payload", &err), AN_OK);
    an_queue_job_free(j);
    ck_assert_int_eq(redis_n("XLEN %s", f.stream), 0);
    ck_assert_int_eq(redis_n("ZCARD %s", f.delayed), 0);
    char *out = redis_f("XRANGE %s - +", f.dead);
    char *reason = value_after(out, "reason"), *attempts = value_after(out, "attempts");
    ck_assert_str_eq(reason, "malformed payload");
    ck_assert_str_eq(attempts, "1");
    char dead_id[64];
    ck_assert_int_eq(sscanf(out, "%63s", dead_id), 1);
    free(reason);
    free(attempts);
    free(out);

    ck_assert_int_eq(an_queue_requeue_dead(q, "0-1", &err), AN_NOT_FOUND);
    ck_assert_int_eq(an_queue_requeue_dead(q, dead_id, &err), AN_OK);
    ck_assert_int_eq(redis_n("XLEN %s", f.dead), 0);
    ck_assert_int_eq(an_queue_take(q, 1000, &j, &err), AN_OK);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(j->id, id);
    ck_assert_int_eq(j->attempt, 1); /* a fresh start */
    ck_assert_str_eq(j->payload, "{bad json");
    ck_assert_int_eq(an_queue_ack(q, j, &err), AN_OK);
    an_queue_job_free(j);
    ck_assert_int_eq(redis_n("XLEN %s", f.stream), 0);
    free(id);
    an_queue_close(q);
    fixture_free(&f);
}
END_TEST

/* ---- ownership -------------------------------------------------------- */

START_TEST(test_queue_stale_consumer_cannot_fail_or_extend_a_reclaimed_job)
{
    fixture f;
    fixture_init(&f, 300);
    an_queue *slow = open_as(&f, "slow"), *fast = open_as(&f, "fast");
    an_error err;
    ck_assert_int_eq(an_queue_push(slow, "x", 1, NULL, NULL, &err), AN_OK);
    an_queue_job *js, *jf;
    ck_assert_int_eq(an_queue_take(slow, 1000, &js, &err), AN_OK);
    ck_assert_ptr_nonnull(js);
    ck_assert_int_eq(an_queue_take(fast, 2000, &jf, &err), AN_OK); /* after 300 ms idle */
    ck_assert_ptr_nonnull(jf);
    ck_assert_int_eq(jf->delivery_count, 2);

    ck_assert_int_eq(an_queue_extend(slow, js, &err), AN_FAILED_PRECONDITION);
    ck_assert_msg(strstr(err.message, "fast") != NULL, "%s", err.message);
    ck_assert_int_eq(an_queue_fail(slow, js, "too late", NULL, &err), AN_FAILED_PRECONDITION);
    ck_assert_int_eq(redis_n("ZCARD %s", f.delayed), 0);
    char *out = redis_f("XPENDING %s %s", f.stream, NAME);
    ck_assert_msg(strncmp(out, "1\n", 2) == 0 && strstr(out, "\nfast\n"), "XPENDING: %s", out);
    free(out);

    ck_assert_int_eq(an_queue_extend(fast, jf, &err), AN_OK);
    ck_assert_int_eq(an_queue_ack(fast, jf, &err), AN_OK);
    ck_assert_int_eq(an_queue_extend(fast, jf, &err), AN_FAILED_PRECONDITION);
    ck_assert_int_eq(redis_n("XLEN %s", f.stream), 0);
    an_queue_job_free(js);
    an_queue_job_free(jf);
    an_queue_close(slow);
    an_queue_close(fast);
    fixture_free(&f);
}
END_TEST

START_TEST(test_queue_release_hands_job_back_without_spending_an_attempt)
{
    fixture f;
    fixture_init(&f, 5000);
    an_queue *a = open_as(&f, "draining"), *b = open_as(&f, "other");
    an_error err;
    char *id;
    ck_assert_int_eq(an_queue_push(a, "half done", 9, NULL, &id, &err), AN_OK);
    an_queue_job *j;
    ck_assert_int_eq(an_queue_take(a, 1000, &j, &err), AN_OK);
    ck_assert_int_eq(an_queue_release(a, j, &err), AN_OK);
    ck_assert_int_eq(an_queue_extend(a, j, &err), AN_FAILED_PRECONDITION);
    an_queue_job_free(j);
    ck_assert_int_eq(redis_n("XPENDING %s %s", f.stream, NAME), 0);
    ck_assert_int_eq(redis_n("XLEN %s", f.stream), 1);

    /* no waiting for the visibility timeout */
    ck_assert_int_eq(an_queue_take(b, 0, &j, &err), AN_OK);
    ck_assert_ptr_nonnull(j);
    ck_assert_str_eq(j->id, id);
    ck_assert_int_eq(j->attempt, 1);
    ck_assert_int_eq(an_queue_ack(b, j, &err), AN_OK);
    an_queue_job_free(j);

    /* "draining" has nothing pending and goes away: pruning drops it, not "other" */
    an_queue_close(a);
    th_sleep_ms(50);
    int removed = -1;
    ck_assert_int_eq(an_queue_prune_consumers(b, 10, &removed, &err), AN_OK);
    ck_assert_int_eq(removed, 1);
    char *out = redis_f("XINFO CONSUMERS %s %s", f.stream, NAME);
    ck_assert_msg(strstr(out, "other") && !strstr(out, "draining"), "%s", out);
    free(out);
    free(id);
    an_queue_close(b);
    fixture_free(&f);
}
END_TEST

/* ---- robustness ------------------------------------------------------- */

START_TEST(test_queue_recovers_when_the_stream_is_deleted)
{
    fixture f;
    fixture_init(&f, 5000);
    an_queue *q = open_as(&f, "c1");
    an_error err;
    char *out = redis_f("DEL %s", f.stream); /* e.g. FLUSHDB by an operator */
    free(out);
    ck_assert_int_eq(an_queue_push(q, "after", 5, NULL, NULL, &err), AN_OK);
    an_queue_job *j;
    ck_assert_int_eq(an_queue_take(q, 1000, &j, &err), AN_OK);
    ck_assert_msg(j != NULL, "job pushed after the group vanished was lost");
    ck_assert_str_eq(j->payload, "after");
    ck_assert_int_eq(an_queue_ack(q, j, &err), AN_OK);
    an_queue_job_free(j);
    an_queue_close(q);
    fixture_free(&f);
}
END_TEST

START_TEST(test_queue_reconnects_after_the_connection_is_killed)
{
    fixture f;
    fixture_init(&f, 5000);
    an_queue *q = open_as(&f, "victim");
    an_error err;
    ck_assert_int_eq(an_queue_push(q, "one", 3, NULL, NULL, &err), AN_OK);
    /* find the queue's own connection by its name and cut it */
    char *out = redis_f("CLIENT LIST");
    char *at = strstr(out, "name=an-queue:" NAME ":victim ");
    ck_assert_msg(at != NULL, "no named connection in %s", out);
    while (at > out && at[-1] != '\n')
        at--;
    long long cid;
    ck_assert_int_eq(sscanf(at, "id=%lld", &cid), 1);
    free(out);
    ck_assert_int_eq(redis_n("CLIENT KILL ID %lld", cid), 1);
    /* the first call may see the dead connection; the next reconnects */
    an_status s = an_queue_push(q, "two", 3, NULL, NULL, &err);
    if (s != AN_OK) {
        ck_assert_int_eq(s, AN_UNAVAILABLE);
        ck_assert_int_eq(an_queue_push(q, "two", 3, NULL, NULL, &err), AN_OK);
    }
    ck_assert_int_eq(redis_n("XLEN %s", f.stream), 2);
    an_queue_close(q);
    fixture_free(&f);
}
END_TEST

START_TEST(test_queue_open_rejects_bad_options)
{
    an_queue_options o;
    an_queue_options_init(&o);
    an_queue *q = (an_queue *)1;
    an_error err;
    const char *url = th_env("ANALYTICS_REDIS_URL");
    ck_assert_int_eq(an_queue_open(&q, url, "has space", &o, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_null(q);
    ck_assert_int_eq(an_queue_open(&q, url, "x:dead", &o, &err), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_queue_open(&q, url, "", &o, &err), AN_INVALID_ARGUMENT);
    o.visibility_ms = 0;
    ck_assert_int_eq(an_queue_open(&q, url, "ok", &o, &err), AN_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "visibility_ms");
    an_queue_options_init(&o);
    o.jitter = 1.5;
    ck_assert_int_eq(an_queue_open(&q, url, "ok", &o, &err), AN_INVALID_ARGUMENT);
    an_queue_options_init(&o);
    ck_assert_int_eq(an_queue_open(&q, "rediss://h/0", "ok", &o, &err), AN_INVALID_ARGUMENT);
    o.timeout_ms = 300;
    ck_assert_int_eq(an_queue_open(&q, "redis://127.0.0.1:1/0", "ok", &o, &err), AN_UNAVAILABLE);
    ck_assert_ptr_null(q);
}
END_TEST

Suite *queue_suite(void)
{
    Suite *s = suite_create("queue");
    TCase *tc = tcase_create("queue");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_queue_push_take_ack_round_trip);
    tcase_add_test(tc, test_queue_blocked_take_wakes_up_for_a_new_job);
    tcase_add_test(tc, test_queue_killed_consumer_job_is_reclaimed_and_completed);
    tcase_add_test(tc, test_queue_heartbeating_long_job_is_not_reclaimed);
    tcase_add_test(tc, test_queue_job_whose_consumers_always_die_ends_in_dead_letter);
    tcase_add_test(tc, test_queue_failing_job_retries_with_growing_backoff_then_dead_letters);
    tcase_add_test(tc, test_queue_retry_delays_are_jittered_within_bounds);
    tcase_add_test(tc, test_queue_bury_dead_letters_at_once_and_requeue_brings_it_back);
    tcase_add_test(tc, test_queue_stale_consumer_cannot_fail_or_extend_a_reclaimed_job);
    tcase_add_test(tc, test_queue_release_hands_job_back_without_spending_an_attempt);
    tcase_add_test(tc, test_queue_recovers_when_the_stream_is_deleted);
    tcase_add_test(tc, test_queue_reconnects_after_the_connection_is_killed);
    tcase_add_test(tc, test_queue_open_rejects_bad_options);
    suite_add_tcase(s, tc);
    return s;
}
