/*
 * lease_contender - contends for one lease, for the lease integration tests.
 *
 *   lease_contender KEY TTL_MS RUN_MS LOG MODE
 *
 * MODE share: for RUN_MS, try to acquire KEY; when held, keep it 100-300 ms
 *             (renewing when a third of the TTL is used), release it, pause
 *             0-50 ms, try again.
 * MODE hog:   acquire, then hold and renew until RUN_MS passes or killed.
 *
 * Appends to LOG, one write per line, CLOCK_MONOTONIC microseconds:
 *   ACQ <t> <deadline>     got it at t; believes it holds it until deadline
 *   RENEW <t> <deadline>   renewed (sent at t); new deadline
 *   END <t> <why>          stopped believing at t (release | lost | expired)
 * A holder killed with SIGKILL has no END: its belief ended at its last
 * deadline. Uses $ANALYTICS_REDIS_URL.
 */
#include "common/lease.h"
#include "common/redis.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int log_fd;

static long long mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* an_lease's local deadline, in microseconds */
static long long deadline_us(const an_lease *l)
{
    return (long long)l->valid_until_ms * 1000;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s KEY TTL_MS RUN_MS LOG share|hog\n", argv[0]);
        return 2;
    }
    const char *key = argv[1];
    int ttl = atoi(argv[2]);
    long long end = mono_us() + atoll(argv[3]) * 1000;
    int hog = strcmp(argv[5], "hog") == 0;
    log_fd = open(argv[4], O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (log_fd < 0) {
        perror(argv[4]);
        return 1;
    }
    srand((unsigned)getpid() ^ (unsigned)mono_us());
    an_error err;
    redisContext *c = NULL;
    const char *url = getenv("ANALYTICS_REDIS_URL");

    while (mono_us() < end) {
        if (an_redis_ensure(&c, url, 1000, &err) != AN_OK) {
            fprintf(stderr, "connect: %s\n", err.message);
            sleep_ms(50);
            continue;
        }
        an_lease l;
        an_status s = an_lease_acquire(c, &l, key, ttl, &err);
        if (s != AN_OK) {
            if (s != AN_ALREADY_EXISTS)
                fprintf(stderr, "acquire: %s\n", err.message);
            sleep_ms(5);
            continue;
        }
        dprintf(log_fd, "ACQ %lld %lld\n", mono_us(), deadline_us(&l));
        long long hold_until = hog ? end : mono_us() + (100 + rand() % 201) * 1000LL;
        const char *why = "release";
        while (mono_us() < hold_until) {
            sleep_ms(10);
            if (an_lease_remaining_ms(&l) < ttl * 2 / 3) {
                long long sent = mono_us(), before = deadline_us(&l);
                s = an_lease_renew(c, &l, &err);
                if (s == AN_OK) {
                    dprintf(log_fd, "RENEW %lld %lld\n", sent, deadline_us(&l));
                } else if (s == AN_FAILED_PRECONDITION) {
                    dprintf(log_fd, "END %lld lost\n", sent < before ? sent : before);
                    why = NULL;
                    break;
                }
            }
            if (!an_lease_held(&l)) {
                dprintf(log_fd, "END %lld expired\n", deadline_us(&l));
                why = NULL;
                break;
            }
        }
        if (why) {
            dprintf(log_fd, "END %lld %s\n", mono_us(), why);
            an_lease_release(c, &l, NULL);
        }
        sleep_ms(rand() % 51);
    }
    if (c)
        redisFree(c);
    close(log_fd);
    return 0;
}
