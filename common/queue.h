/*
 * queue.h - an at-least-once job queue on Redis Streams with a consumer group.
 *
 *   an_queue_options o;
 *   an_queue_options_init(&o);           // then override what you need
 *   o.visibility_ms = 60000;
 *   an_queue *q;
 *   if (an_queue_open(&q, redis_url, "exports", &o, &err) != AN_OK) ...
 *   an_queue_push(q, body, len, &(an_queue_meta){.tenant = tid}, &job_id, &err);
 *
 *   // worker loop
 *   an_queue_job *job;
 *   if (an_queue_take(q, 1000, &job, &err) == AN_OK && job) {
 *       if (do_the_work(job) == AN_OK)     // durable: the record is in ClickHouse
 *           an_queue_ack(q, job, &err);
 *       else
 *           an_queue_fail(q, job, "why", NULL, &err);
 *       an_queue_job_free(job);
 *   }
 *
 * Keys (prefix "an" by default, name e.g. "exports"):
 *   <prefix>:<name>          the stream; consumer group <name>
 *   <prefix>:<name>:delayed  ZSET of retries waiting for their backoff (score: due
 *                            time in ms, Redis clock; member: the job's fields)
 *   <prefix>:<name>:dead     dead-letter stream
 *
 * Semantics:
 * - At least once. Ack only after the work is durable. A job whose consumer
 *   dies (or stalls) is reclaimed by another consumer's take (XAUTOCLAIM) once
 *   it has been idle for visibility_ms; its delivery_count then grows. A
 *   handler may therefore run twice for one job: make it idempotent, keyed
 *   on job->id, which is stable across deliveries and retries.
 * - Long jobs call an_queue_extend() well within visibility_ms (e.g. every
 *   visibility/3); it resets the idle time so the job is not stolen, and
 *   tells the handler when it was stolen anyway.
 * - an_queue_fail() schedules a retry after an exponential backoff with
 *   jitter: base * 2^(attempt-1), capped at backoff_max_ms, then multiplied
 *   by a uniform factor in [1 - jitter, 1]. After max_attempts attempts the
 *   job goes to the dead-letter stream with its reason, attempt count,
 *   stable id, last entry id, consumer and payload. Attempts also count
 *   deliveries lost to dead consumers, so a job that crashes every worker
 *   ends in the dead-letter stream too. Attempts and the stable id live in
 *   the job's own fields, so they survive any consumer crash.
 * - Retries are moved back into the stream by take (atomically, in a Lua
 *   script), so at least one consumer must be taking for them to run. A
 *   retry may start up to ~100 ms after its due time: a blocked take wakes
 *   on Redis's timer (hz 10).
 * - Nothing in Redis is the only copy of a record: the payload should
 *   reference a record kept elsewhere (e.g. the export job in ClickHouse).
 *
 * Entry fields: payload (opaque bytes), id (stable job id; absent on the first
 * delivery of a job pushed without one: the entry id is the job id), tenant,
 * cid (correlation id), attempts (attempts before this entry, absent = 0),
 * last_error. Dead-letter entries add reason, entry, consumer, failed_at (ms).
 *
 * Threads: an an_queue owns one Redis connection (hiredis 0.14, not
 * thread-safe): use one an_queue per thread. Several handles (threads or
 * processes) on the same name and prefix share the work. After a connection
 * error a call returns AN_UNAVAILABLE and the next call reconnects.
 */
#ifndef AN_QUEUE_H
#define AN_QUEUE_H

#include "common/status.h"

#include <stddef.h>
#include <stdint.h>

typedef struct an_queue an_queue;

typedef struct an_queue_options {
    const char *prefix;   /* key prefix; default "an" */
    const char *consumer; /* this consumer's name, unique per live handle; NULL:
                             "<hostname>-<pid>-<random>" */
    int visibility_ms;    /* idle time after which a taken job is reclaimed; 30000 */
    int max_attempts;     /* attempts before the dead-letter stream; 5 */
    int backoff_base_ms;  /* first retry delay; 1000 */
    int backoff_max_ms;   /* cap of the retry delay; 300000 */
    double jitter;        /* fraction in [0, 1] removed at random from a delay; 0.2 */
    int timeout_ms;       /* connect timeout and per-command reply timeout; 5000 */
} an_queue_options;

/* Optional fields of a pushed job; every member may be NULL. */
typedef struct an_queue_meta {
    const char *job_id;         /* stable id (e.g. the job record's id); NULL: entry id */
    const char *tenant;         /* for logs and the dead-letter stream */
    const char *correlation_id; /* idem */
} an_queue_meta;

/* A taken job. Owned by the caller: an_queue_job_free(). */
typedef struct an_queue_job {
    char *id;       /* stable job id, the same across reclaims and retries */
    char *entry_id; /* stream entry of this delivery */
    char *payload;  /* payload_len bytes, plus a NUL for convenience */
    size_t payload_len;
    char *tenant;         /* NULL when not given */
    char *correlation_id; /* NULL when not given */
    char *last_error;     /* reason of the previous failed attempt; NULL on the first */
    int delivery_count;   /* deliveries of this entry: 2 and more means reclaimed */
    int attempt;          /* 1-based attempt number across retries and reclaims */
} an_queue_job;

/* Queue sizes, for /metrics. */
typedef struct an_queue_stats {
    long long waiting; /* in the stream, not yet taken */
    long long pending; /* taken, not yet acked or failed */
    long long delayed; /* failed, waiting for their retry */
    long long dead;    /* in the dead-letter stream */
} an_queue_stats;

/* Fill o with the defaults above. */
void an_queue_options_init(an_queue_options *o);

/* Connect (see redis.h for the URL) and make sure the stream and its
 * consumer group exist (the group reads from the start of the stream, so
 * jobs pushed before any consumer existed are not lost). name: letters,
 * digits, '_', '-', '.'. opts NULL: defaults. On success *out is a handle
 * the caller closes with an_queue_close(). AN_INVALID_ARGUMENT for bad
 * options or URL, AN_UNAVAILABLE when Redis cannot be reached. */
an_status an_queue_open(an_queue **out, const char *redis_url, const char *name,
                        const an_queue_options *opts, an_error *err);

/* Close the connection and free the handle. q may be NULL. Jobs taken and
 * not acked stay pending and are reclaimed after the visibility timeout;
 * use an_queue_release() to hand them back sooner. */
void an_queue_close(an_queue *q);

/* Add a job. payload: len opaque bytes (may be 0). meta may be NULL. When
 * job_id is not NULL, *job_id receives the job's stable id (meta->job_id or
 * the new entry id); the caller frees it. */
an_status an_queue_push(an_queue *q, const void *payload, size_t len, const an_queue_meta *meta,
                        char **job_id, an_error *err);

/* Take one job, waiting up to block_ms (0: do not wait) for one. Due retries
 * are first moved back into the stream, then jobs idle longer than the
 * visibility timeout are reclaimed, then new jobs are read. On AN_OK *out
 * is the job (free with an_queue_job_free) or NULL when none came in time. */
an_status an_queue_take(an_queue *q, int block_ms, an_queue_job **out, an_error *err);

/* The work of job is durable: remove it from the queue (XACK + XDEL).
 * Acking a job another consumer already acked is harmless (AN_OK). */
an_status an_queue_ack(an_queue *q, const an_queue_job *job, an_error *err);

/* Heartbeat of a long job: reset its idle time so no one reclaims it.
 * AN_FAILED_PRECONDITION when it is no longer ours (reclaimed by another
 * consumer after the visibility timeout, or already acked): stop working
 * on it; its result may still be written, handlers are idempotent. */
an_status an_queue_extend(an_queue *q, const an_queue_job *job, an_error *err);

/* The attempt failed: retry after the backoff, or dead-letter it when this
 * was attempt max_attempts. *retry_in_ms (may be NULL) gets the backoff
 * delay, or -1 when the job went to the dead-letter stream.
 * AN_FAILED_PRECONDITION when the job is no longer ours (nothing done). */
an_status an_queue_fail(an_queue *q, const an_queue_job *job, const char *reason,
                        int64_t *retry_in_ms, an_error *err);

/* The job can never succeed (e.g. a malformed payload): dead-letter it now
 * with reason. AN_FAILED_PRECONDITION when it is no longer ours. */
an_status an_queue_bury(an_queue *q, const an_queue_job *job, const char *reason, an_error *err);

/* Hand an unfinished job back without counting this attempt (for a drain
 * on SIGTERM): it is re-added to the stream for another consumer at once.
 * AN_FAILED_PRECONDITION when it is no longer ours. */
an_status an_queue_release(an_queue *q, const an_queue_job *job, an_error *err);

/* Move one dead-letter entry (its entry id in the dead stream) back into
 * the queue with a fresh attempt count, for an operator after a fix.
 * AN_NOT_FOUND when there is no such dead-letter entry. */
an_status an_queue_requeue_dead(an_queue *q, const char *dead_entry_id, an_error *err);

/* Delete consumers of the group that have no pending job and have been idle
 * for longer than idle_ms (dead replicas leave their names behind), except
 * this handle's own. *removed (may be NULL) gets how many. */
an_status an_queue_prune_consumers(an_queue *q, int64_t idle_ms, int *removed, an_error *err);

/* Sizes of the queue, read atomically. */
an_status an_queue_stats_get(an_queue *q, an_queue_stats *out, an_error *err);

/* Free a job. job may be NULL. */
void an_queue_job_free(an_queue_job *job);

#endif
