/*
 * queue_worker - one consumer of an an_queue, for the queue integration tests.
 *
 *   queue_worker MODE PREFIX NAME CONSUMER VISIBILITY_MS MARKER [WORK_MS]
 *
 * Takes one job (waiting up to 10 s) from queue NAME under key prefix PREFIX
 * of $ANALYTICS_REDIS_URL as consumer CONSUMER, appends
 *   "taken <job id> <delivery count> <attempt> <monotonic ms>"
 * to the file MARKER, then by MODE:
 *   complete   writes the result and acks
 *   hang       sleeps until killed (a consumer that dies mid-job)
 *   heartbeat  works WORK_MS, calling an_queue_extend every VISIBILITY_MS/4,
 *              then writes the result and acks; exits 4 when it lost the job
 * The result is the Redis string <PREFIX>:<NAME>:result:<job id> =
 * "<consumer> <delivery count> <attempt>"; then "acked" goes to MARKER.
 * Exit 0 when done, 3 when no job came, 1 on errors.
 */
#include "common/queue.h"
#include "common/redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void mark(const char *path, const char *line)
{
    FILE *f = fopen(path, "a");
    if (!f) {
        perror(path);
        exit(1);
    }
    fprintf(f, "%s\n", line);
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc < 7) {
        fprintf(stderr,
                "usage: %s complete|hang|heartbeat PREFIX NAME CONSUMER VISIBILITY_MS "
                "MARKER [WORK_MS]\n",
                argv[0]);
        return 2;
    }
    const char *mode = argv[1], *marker = argv[6];
    const char *url = getenv("ANALYTICS_REDIS_URL");
    int work_ms = argc > 7 ? atoi(argv[7]) : 0;
    an_queue_options o;
    an_queue_options_init(&o);
    o.prefix = argv[2];
    o.consumer = argv[4];
    o.visibility_ms = atoi(argv[5]);
    an_error err;
    an_queue *q;
    if (an_queue_open(&q, url, argv[3], &o, &err) != AN_OK) {
        fprintf(stderr, "open: %s\n", err.message);
        return 1;
    }
    an_queue_job *job = NULL;
    if (an_queue_take(q, 10000, &job, &err) != AN_OK) {
        fprintf(stderr, "take: %s\n", err.message);
        return 1;
    }
    if (!job) {
        an_queue_close(q);
        return 3;
    }
    char line[640];
    snprintf(line, sizeof(line), "taken %s %d %d %lld", job->id, job->delivery_count, job->attempt,
             mono_ms());
    mark(marker, line);

    if (strcmp(mode, "hang") == 0)
        for (;;)
            pause();
    if (strcmp(mode, "heartbeat") == 0) {
        long long end = mono_ms() + work_ms;
        while (mono_ms() < end) {
            sleep_ms(o.visibility_ms / 4);
            if (an_queue_extend(q, job, &err) != AN_OK) {
                snprintf(line, sizeof(line), "lost %s", err.message);
                mark(marker, line);
                return 4;
            }
        }
    }

    redisContext *c;
    if (an_redis_connect(&c, url, 2000, &err) != AN_OK) {
        fprintf(stderr, "connect: %s\n", err.message);
        return 1;
    }
    char key[512], val[256];
    snprintf(key, sizeof(key), "%s:%s:result:%s", argv[2], argv[3], job->id);
    snprintf(val, sizeof(val), "%s %d %d", argv[4], job->delivery_count, job->attempt);
    redisReply *r;
    if (an_redis_argv(c, 3, (const char *[]){"SET", key, val}, NULL, &r, &err) != AN_OK) {
        fprintf(stderr, "SET: %s\n", err.message);
        return 1;
    }
    freeReplyObject(r);
    redisFree(c);
    if (an_queue_ack(q, job, &err) != AN_OK) {
        fprintf(stderr, "ack: %s\n", err.message);
        return 1;
    }
    mark(marker, "acked");
    an_queue_job_free(job);
    an_queue_close(q);
    return 0;
}
