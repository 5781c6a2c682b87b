/*
 * worker.c - the export workers: ANALYTICS_EXPORTS_WORKERS threads per
 * replica, each with its own queue handle, ClickHouse clients and Redis
 * connection, taking jobs from the Redis stream (common/queue.h).
 *
 * One job, from the top:
 *   1. read the record; a terminal one (done by an earlier delivery that
 *      died before its ack) only gets its event published again (the
 *      Nats-Msg-Id makes that a no-op) and is acked;
 *   2. write it running (attempt, startedAt);
 *   3. stream the bound query, as the readonly reader user, row by row into
 *      the writer, which writes a spool file: memory is one row plus the
 *      writer's buffer. Every ~200 ms the worker checks for a cancel (the
 *      claimed terminal state in Redis), heartbeats the queue entry (every
 *      visibility/3) and, every 2 s, writes the progress (rows, bytes);
 *   4. hand the file to the storage (rename into the directory, or S3 PUT),
 *      claim "completed" in Redis (refused when a cancel came first), write
 *      the completed record, publish analytics.export.completed.v1 with
 *      Nats-Msg-Id export.completed:<id>, then ack.
 * A crash anywhere leaves the entry pending: after the visibility timeout
 * another worker reclaims it and starts again from step 1, from scratch
 * (a new spool file; the storage key is the job id, so the file is replaced).
 *
 * Failures: a query the server refuses (syntax, unknown column, a limit)
 * fails the job at once with ClickHouse's message: retrying cannot help.
 * Anything else (server unreachable, S3 errors, NATS) is retried with the
 * queue's backoff; when the attempts are spent the job fails and
 * analytics.export.failed.v1 is published once (export.failed:<id>).
 * On SIGTERM a running job is handed back to the queue (not counted as an
 * attempt) and its record set back to queued.
 */
#include "exports/exports.h"

#include "common/events.h"
#include "common/log.h"
#include "common/queue.h"
#include "common/redis.h"
#include "common/timeutil.h"

#include <dirent.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct exports_worker {
    exports_ctx *x;
    int index;
    pthread_t thread;
    atomic_bool stop;
    an_queue *q;
    an_ch *reader; /* the export queries */
    an_ch *ch;     /* the records */
    redisContext *rc;
};

/* Why a running export stopped early. */
typedef enum stop_reason {
    RUN_ON = 0,
    RUN_CANCELLED,
    RUN_STOLEN,   /* the entry was reclaimed by another worker */
    RUN_DRAINING, /* SIGTERM */
} stop_reason;

typedef struct run_state {
    exports_worker *w;
    exports_job *job;
    const an_queue_job *qjob;
    exports_writer *out;
    stop_reason stop;
    int64_t started_ms;
    int64_t next_check_ms;
    int64_t next_extend_ms;
    int64_t next_progress_ms;
} run_state;

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static redisContext *redis_of(exports_worker *w)
{
    const an_service_config *sc = an_service_get_config(w->x->svc);
    an_error err;
    if (an_redis_ensure(&w->rc, sc->redis_url, 5000, &err) != AN_OK) {
        an_warn("exports worker %d: redis: %s", w->index, err.message);
        return NULL;
    }
    return w->rc;
}

/* ------------------------------------------------------------ the events */

static an_status publish(exports_worker *w, const exports_job *j, an_error *err)
{
    an_events *ev = an_service_events(w->x->svc);
    if (!ev)
        return AN_OK;
    bool ok = strcmp(j->status, EXPORTS_STATUS_COMPLETED) == 0;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "jobId", j->id);
    cJSON_AddStringToObject(d, "requestedBy", j->requested_by);
    cJSON_AddStringToObject(d, "format", exports_format_name(j->format));
    cJSON_AddStringToObject(d, "status", j->status);
    cJSON_AddNumberToObject(d, "rows", (double)j->rows);
    cJSON_AddNumberToObject(d, "bytes", (double)j->bytes);
    cJSON_AddNumberToObject(d, "attempts", j->attempts);
    if (ok) {
        an_buf url = AN_BUF_INIT;
        if (exports_output_url(w->x, j, &url, NULL) == AN_OK)
            cJSON_AddStringToObject(d, "outputUrl", an_buf_str(&url));
        else
            cJSON_AddNullToObject(d, "outputUrl");
        an_buf_free(&url);
    } else {
        cJSON_AddStringToObject(d, "errorCode", j->error_code ? j->error_code : "internal");
        cJSON_AddStringToObject(d, "errorMessage", j->error ? j->error : "");
    }
    char ts[AN_TIME_ISO_LEN];
    if (an_time_format_iso(j->finished_at, ts, NULL) == AN_OK)
        cJSON_AddStringToObject(d, "completedAt", ts);
    char id[128];
    snprintf(id, sizeof(id), "export.%s:%s", ok ? "completed" : "failed", j->id);
    an_event e = {.aggregate = "export",
                  .name = ok ? "completed" : "failed",
                  .id = id,
                  .tenant_id = j->tenant_id,
                  .correlation_id = j->correlation_id,
                  .data = d,
                  .occurred_at_ms = j->finished_at};
    an_events_ack ack = {0};
    an_status s = an_events_publish(ev, &e, &ack, err);
    cJSON_Delete(d);
    if (s == AN_OK)
        an_log_ctx(AN_LOG_INFO, j->tenant_id, j->correlation_id,
                   "export %s %s: event %s stored (seq %llu%s)", j->id, j->status, id,
                   (unsigned long long)ack.seq, ack.duplicate ? ", duplicate dropped" : "");
    return s;
}

/* ------------------------------------------------------------ the run */

static void check_progress(run_state *r)
{
    exports_worker *w = r->w;
    exports_ctx *x = w->x;
    int64_t now = an_time_mono_ms();
    if (atomic_load(&w->stop)) {
        r->stop = RUN_DRAINING;
        return;
    }
    if (now < r->next_check_ms)
        return;
    r->next_check_ms = now + 200;
    redisContext *c = redis_of(w);
    if (c) {
        const char *final = exports_final_state(x, c, r->job->id, NULL);
        if (final && strcmp(final, EXPORTS_STATUS_CANCELLED) == 0) {
            r->stop = RUN_CANCELLED;
            return;
        }
    }
    if (now >= r->next_extend_ms) {
        r->next_extend_ms = now + x->cfg.visibility_ms / 3;
        an_error err;
        if (an_queue_extend(w->q, r->qjob, &err) == AN_FAILED_PRECONDITION) {
            r->stop = RUN_STOLEN;
            return;
        }
    }
    if (r->out && now >= r->next_progress_ms) {
        r->next_progress_ms = now + 2000;
        r->job->rows = exports_writer_rows(r->out);
        r->job->bytes = exports_writer_bytes(r->out);
        an_error err;
        if (exports_store_put(w->ch, r->job, &err) != AN_OK)
            an_log_ctx(AN_LOG_WARN, r->job->tenant_id, r->job->correlation_id,
                       "export %s: progress not saved: %s", r->job->id, err.message);
    }
}

static an_status on_row(void *ud, const an_ch_row *row, an_error *err)
{
    run_state *r = ud;
    exports_writer *out = r->out;
    if (exports_writer_rows(out) == 0) {
        an_status s = exports_writer_columns(out, row->ncols, row->names, row->types, err);
        if (s != AN_OK)
            return s;
    }
    an_status s = exports_writer_row(out, row->fields, row->lens, err);
    if (s != AN_OK)
        return s;
    int64_t max = r->w->x->cfg.max_bytes;
    if (max > 0 && exports_writer_bytes(out) > (uint64_t)max)
        return an_error_set(err, AN_RESOURCE_EXHAUSTED,
                            "the file passed %lld bytes (ANALYTICS_EXPORTS_MAX_BYTES) at row "
                            "%llu: narrow the query or export it in parts",
                            (long long)max, (unsigned long long)exports_writer_rows(out));
    if ((exports_writer_rows(out) & 1023) == 0) {
        check_progress(r);
        if (r->stop != RUN_ON)
            return an_error_set(err, AN_FAILED_PRECONDITION, "export stopped");
    }
    long long rate = r->w->x->cfg.rows_per_second;
    if (rate > 0) {
        /* Throttle: never ahead of rate rows per second since the start. */
        int64_t due = r->started_ms + (int64_t)(exports_writer_rows(out) * 1000 / (uint64_t)rate);
        int64_t now = an_time_mono_ms();
        while (due > now && r->stop == RUN_ON) {
            sleep_ms(due - now > 50 ? 50 : due - now);
            now = an_time_mono_ms();
            r->next_check_ms = 0;
            check_progress(r);
        }
        if (r->stop != RUN_ON)
            return an_error_set(err, AN_FAILED_PRECONDITION, "export stopped");
    }
    return AN_OK;
}

/* Column names and types of an empty result, so an empty export still has
 * its header. */
static an_status empty_header(exports_worker *w, const char *sql, exports_writer *out,
                              an_error *err)
{
    an_buf q = AN_BUF_INIT, body = AN_BUF_INIT;
    an_buf_addf(&q, "SELECT * FROM (%s) LIMIT 0", sql);
    an_status s =
        an_ch_query_buf(w->reader, q.data, "TabSeparatedWithNamesAndTypes", NULL, &body, err);
    an_buf_free(&q);
    if (s != AN_OK) {
        an_buf_free(&body);
        return s;
    }
    char *lines[2] = {NULL, NULL};
    char *save = NULL;
    lines[0] = strtok_r(body.data, "\n", &save);
    lines[1] = lines[0] ? strtok_r(NULL, "\n", &save) : NULL;
    size_t n = 0;
    char *names[1024], *types[1024];
    if (lines[0] && lines[1]) {
        char *s1 = NULL, *s2 = NULL;
        for (char *a = strtok_r(lines[0], "\t", &s1), *b = strtok_r(lines[1], "\t", &s2);
             a && b && n < 1024; a = strtok_r(NULL, "\t", &s1), b = strtok_r(NULL, "\t", &s2)) {
            a[an_ch_tsv_unescape(a, a, strlen(a))] = '\0';
            b[an_ch_tsv_unescape(b, b, strlen(b))] = '\0';
            names[n] = a;
            types[n] = b;
            n++;
        }
    }
    if (n > 0)
        s = exports_writer_columns(out, n, (const char *const *)names, (const char *const *)types,
                                   err);
    an_buf_free(&body);
    return s;
}

/* A ClickHouse refusal that no retry can fix. */
static bool permanent(an_status s)
{
    return s == AN_INVALID_ARGUMENT || s == AN_NOT_FOUND || s == AN_PERMISSION_DENIED ||
           s == AN_RESOURCE_EXHAUSTED;
}

/* What the job's record and event say of an error (status s, text msg):
 * like the services' replies, an internal one's text (paths of the spool,
 * ...) stays in the log. */
static const char *public_message(an_status s, const exports_job *j, const char *msg, char *buf,
                                  size_t n)
{
    char ref[256];
    snprintf(ref, sizeof(ref), "export %s; correlation id %s", j->id,
             j->correlation_id ? j->correlation_id : "none");
    return an_error_public_message(s, msg, ref, buf, n);
}

static void finish_failed(exports_worker *w, exports_job *j, const char *code, const char *msg)
{
    exports_ctx *x = w->x;
    redisContext *c = redis_of(w);
    const char *other = NULL;
    an_error err;
    if (c && exports_claim_final(x, c, j->id, EXPORTS_STATUS_FAILED, &other, &err) ==
                 AN_ALREADY_EXISTS) {
        an_log_ctx(AN_LOG_INFO, j->tenant_id, j->correlation_id,
                   "export %s: not marked failed, it is already %s", j->id, other);
        return;
    }
    free(j->status);
    j->status = strdup(EXPORTS_STATUS_FAILED);
    free(j->error_code);
    j->error_code = strdup(code);
    free(j->error);
    j->error = strdup(msg);
    j->finished_at = an_time_now_ms();
    if (exports_store_put(w->ch, j, &err) != AN_OK)
        an_log_ctx(AN_LOG_ERROR, j->tenant_id, j->correlation_id,
                   "export %s: failed record not saved: %s", j->id, err.message);
    if (publish(w, j, &err) != AN_OK)
        an_log_ctx(AN_LOG_ERROR, j->tenant_id, j->correlation_id,
                   "export %s: failed event not published: %s", j->id, err.message);
    exports_slot_release(x, c, j->tenant_id, j->id);
    an_prom_counter_inc(x->jobs_failed);
    an_log_ctx(AN_LOG_WARN, j->tenant_id, j->correlation_id, "export %s failed: %s: %s", j->id,
               code, msg);
}

/* Fail j for good with status s: the record and event get what a caller
 * may read, the log keeps the detail when that is not it. */
static void fail_job(exports_worker *w, exports_job *j, an_status s, const char *detail)
{
    char pub[256];
    const char *msg = public_message(s, j, detail, pub, sizeof(pub));
    if (msg != detail)
        an_log_ctx(AN_LOG_WARN, j->tenant_id, j->correlation_id, "export %s: %s", j->id, detail);
    finish_failed(w, j, an_status_code(s), msg);
}

static void mark_cancelled(exports_worker *w, exports_job *j)
{
    if (strcmp(j->status, EXPORTS_STATUS_CANCELLED) == 0)
        return;
    free(j->status);
    j->status = strdup(EXPORTS_STATUS_CANCELLED);
    j->finished_at = an_time_now_ms();
    an_error err;
    if (exports_store_put(w->ch, j, &err) != AN_OK)
        an_log_ctx(AN_LOG_WARN, j->tenant_id, j->correlation_id,
                   "export %s: cancelled record not saved: %s", j->id, err.message);
    exports_slot_release(w->x, redis_of(w), j->tenant_id, j->id);
    an_log_ctx(AN_LOG_INFO, j->tenant_id, j->correlation_id, "export %s cancelled", j->id);
}

/* Run the export; on AN_OK the record is completed and the event stored. */
static an_status run(exports_worker *w, const an_queue_job *qj, exports_job *j, stop_reason *why,
                     an_error *err)
{
    exports_ctx *x = w->x;
    free(j->status);
    j->status = strdup(EXPORTS_STATUS_RUNNING);
    j->attempts = (uint32_t)qj->attempt;
    j->started_at = an_time_now_ms();
    j->rows = j->bytes = 0;
    free(j->error_code);
    j->error_code = strdup("");
    free(j->error);
    j->error = strdup("");
    an_status s = exports_store_put(w->ch, j, err);
    if (s != AN_OK)
        return s;

    an_buf sql = AN_BUF_INIT, spool = AN_BUF_INIT, key = AN_BUF_INIT;
    s = exports_bind_query(j->tenant_id, j->query, j->params, &sql, err);
    an_buf_addf(&spool, "%s/%s.%d.%s.part", x->cfg.spool_dir, j->id, qj->attempt,
                exports_format_ext(j->format));
    exports_writer_opts wo = {.tmpdir = x->cfg.spool_dir,
                              .xlsx_rows_per_sheet = (uint64_t)x->cfg.xlsx_rows_per_sheet};
    run_state r = {.w = w, .job = j, .qjob = qj};
    r.started_ms = an_time_mono_ms();
    r.next_extend_ms = r.started_ms + x->cfg.visibility_ms / 3;
    r.next_progress_ms = r.started_ms + 2000;
    if (s == AN_OK)
        s = exports_writer_open(j->format, spool.data, &wo, &r.out, err);
    if (s == AN_OK) {
        s = an_ch_query(w->reader, sql.data, NULL, on_row, &r, err);
        *why = r.stop;
        if (s == AN_OK && exports_writer_rows(r.out) == 0)
            s = empty_header(w, sql.data, r.out, err);
        uint64_t bytes = 0;
        if (s == AN_OK)
            s = exports_writer_close(r.out, &bytes, err);
        j->rows = exports_writer_rows(r.out);
        j->bytes = bytes;
    }
    exports_writer_free(r.out);
    r.out = NULL;
    if (s == AN_OK) {
        /* A cancel that came during the last rows wins over the finish. */
        check_progress(&r);
        r.next_check_ms = 0;
        check_progress(&r);
        *why = r.stop;
        if (r.stop != RUN_ON)
            s = an_error_set(err, AN_FAILED_PRECONDITION, "export stopped");
    }
    if (s == AN_OK) {
        an_buf_adds(&key, x->key_prefix);
        an_buf_addf(&key, "%s.%s", j->id, exports_format_ext(j->format));
        s = x->storage->ops->put(x->storage, spool.data, key.data,
                                 exports_format_content_type(j->format), err);
    }
    unlink(spool.data); /* gone already after a successful put */
    if (s == AN_OK) {
        redisContext *c = redis_of(w);
        const char *other = NULL;
        s = c ? exports_claim_final(x, c, j->id, EXPORTS_STATUS_COMPLETED, &other, err)
              : an_error_set(err, AN_UNAVAILABLE, "redis unreachable");
        if (s == AN_ALREADY_EXISTS && other && strcmp(other, EXPORTS_STATUS_CANCELLED) == 0) {
            *why = RUN_CANCELLED;
            s = an_error_set(err, AN_FAILED_PRECONDITION, "cancelled");
        }
    }
    if (s == AN_OK) {
        free(j->status);
        j->status = strdup(EXPORTS_STATUS_COMPLETED);
        free(j->file_key);
        j->file_key = strdup(key.data);
        j->finished_at = an_time_now_ms();
        j->expires_at = j->finished_at + x->cfg.retention_ms;
        s = exports_store_put(w->ch, j, err);
    }
    if (s == AN_OK)
        s = publish(w, j, err);
    an_buf_free(&sql);
    an_buf_free(&spool);
    an_buf_free(&key);
    return s;
}

static void handle(exports_worker *w, an_queue_job *qj)
{
    exports_ctx *x = w->x;
    an_error err;
    an_error_clear(&err);
    char pub[256];
    cJSON *p = cJSON_ParseWithLength(qj->payload, qj->payload_len);
    const cJSON *tid = cJSON_GetObjectItemCaseSensitive(p, "tenantId");
    const cJSON *jid = cJSON_GetObjectItemCaseSensitive(p, "id");
    if (!cJSON_IsString(tid) || !cJSON_IsString(jid)) {
        an_queue_bury(w->q, qj, "payload is not {tenantId, id}", NULL);
        cJSON_Delete(p);
        return;
    }
    exports_job j = {0};
    an_status s = exports_store_get(w->ch, tid->valuestring, jid->valuestring, &j, &err);
    cJSON_Delete(p);
    if (s == AN_NOT_FOUND) {
        an_queue_bury(w->q, qj, "no export record", NULL);
        return;
    }
    if (s != AN_OK) {
        an_queue_fail(w->q, qj, err.message, NULL, NULL);
        return;
    }
    redisContext *c = redis_of(w);
    const char *final = c ? exports_final_state(x, c, j.id, NULL) : NULL;

    if (exports_status_terminal(j.status) ||
        (final && strcmp(final, EXPORTS_STATUS_CANCELLED) == 0)) {
        /* Done before (or cancelled while queued): make sure the record and
         * the event say so, then let the entry go. */
        if (final && strcmp(final, EXPORTS_STATUS_CANCELLED) == 0)
            mark_cancelled(w, &j);
        else if (strcmp(j.status, EXPORTS_STATUS_CANCELLED) != 0 && publish(w, &j, &err) != AN_OK) {
            an_queue_fail(w->q, qj, err.message, NULL, NULL);
            exports_job_clear(&j);
            return;
        }
        an_queue_ack(w->q, qj, NULL);
        exports_job_clear(&j);
        return;
    }
    if (final && strcmp(final, EXPORTS_STATUS_FAILED) == 0) {
        /* failed was claimed, but the record not written before a crash */
        finish_failed(w, &j, "internal", "the export failed");
        an_queue_ack(w->q, qj, NULL);
        exports_job_clear(&j);
        return;
    }

    an_log_ctx(AN_LOG_INFO, j.tenant_id, j.correlation_id,
               "export %s started (attempt %d, delivery %d, %s)", j.id, qj->attempt,
               qj->delivery_count, exports_format_name(j.format));
    stop_reason why = RUN_ON;
    int64_t t0 = an_time_mono_ms();
    s = run(w, qj, &j, &why, &err);
    if (s == AN_OK) {
        an_queue_ack(w->q, qj, NULL);
        exports_slot_release(x, redis_of(w), j.tenant_id, j.id);
        an_prom_counter_inc(x->jobs_completed);
        an_prom_counter_add(x->rows_total, (double)j.rows);
        an_prom_counter_add(x->bytes_total, (double)j.bytes);
        an_log_ctx(AN_LOG_INFO, j.tenant_id, j.correlation_id,
                   "export %s completed: %llu rows, %llu bytes in %lld ms", j.id,
                   (unsigned long long)j.rows, (unsigned long long)j.bytes,
                   (long long)(an_time_mono_ms() - t0));
    } else if (why == RUN_CANCELLED) {
        mark_cancelled(w, &j);
        an_queue_ack(w->q, qj, NULL);
        an_prom_counter_inc(x->jobs_cancelled);
    } else if (why == RUN_STOLEN) {
        an_log_ctx(AN_LOG_WARN, j.tenant_id, j.correlation_id,
                   "export %s: reclaimed by another worker, stopping", j.id);
    } else if (why == RUN_DRAINING) {
        free(j.status);
        j.status = strdup(EXPORTS_STATUS_QUEUED);
        exports_store_put(w->ch, &j, NULL);
        an_queue_release(w->q, qj, NULL);
        an_log_ctx(AN_LOG_INFO, j.tenant_id, j.correlation_id,
                   "export %s handed back to the queue (shutting down)", j.id);
    } else if (permanent(s)) {
        fail_job(w, &j, s, err.message);
        an_queue_ack(w->q, qj, NULL);
    } else {
        int64_t retry_in = 0;
        an_error qerr;
        if (an_queue_fail(w->q, qj, err.message, &retry_in, &qerr) == AN_OK && retry_in < 0) {
            fail_job(w, &j, s, err.message);
        } else {
            free(j.status);
            j.status = strdup(EXPORTS_STATUS_QUEUED);
            free(j.error_code);
            j.error_code = strdup(an_status_code(s));
            free(j.error);
            j.error = strdup(public_message(s, &j, err.message, pub, sizeof(pub)));
            exports_store_put(w->ch, &j, NULL);
            an_log_ctx(AN_LOG_WARN, j.tenant_id, j.correlation_id,
                       "export %s attempt %d failed (%s), retry in %lld ms", j.id, qj->attempt,
                       err.message, (long long)retry_in);
        }
    }
    exports_job_clear(&j);
}

/* Delete the stored files past the retention, once per sweep interval in
 * this replica (the worker that moves next_sweep_ms on does it). A file's
 * time is when it was written, a little before its job's finishedAt: an
 * hour's slack keeps it until its expiresAt, beyond which no link works. */
static void maybe_sweep(exports_worker *w)
{
    exports_ctx *x = w->x;
    if (!x->storage->ops->sweep)
        return;
    int64_t now = an_time_mono_ms(), next = atomic_load(&x->next_sweep_ms);
    if (now < next ||
        !atomic_compare_exchange_strong(&x->next_sweep_ms, &next, now + x->cfg.sweep_interval_ms))
        return;
    int64_t cutoff = an_time_now_ms() - x->cfg.retention_ms - 3600000LL;
    size_t n = x->storage->ops->sweep(x->storage, cutoff);
    if (n) {
        an_prom_counter_add(x->files_swept, (double)n);
        an_info("exports: deleted %zu files past the retention", n);
    }
}

static void *worker_main(void *arg)
{
    exports_worker *w = arg;
    while (!atomic_load(&w->stop) && !an_service_draining(w->x->svc)) {
        maybe_sweep(w);
        an_queue_job *qj = NULL;
        an_error err;
        an_status s = an_queue_take(w->q, 1000, &qj, &err);
        if (s != AN_OK) {
            an_warn("exports worker %d: take: %s", w->index, err.message);
            sleep_ms(1000);
            continue;
        }
        if (!qj)
            continue;
        handle(w, qj);
        an_queue_job_free(qj);
    }
    return NULL;
}

/* ------------------------------------------------------------ start/stop */

static void worker_free(exports_worker *w)
{
    if (!w)
        return;
    an_queue_close(w->q);
    an_ch_free(w->reader);
    an_ch_free(w->ch);
    if (w->rc)
        redisFree(w->rc);
    free(w);
}

/* Spool files of workers that died (kill -9, a crashed node) are left
 * behind; the reclaimed job writes a new one. Remove those untouched for an
 * hour: a live export writes its file continuously (the spool dir may be
 * shared by replicas). */
static void sweep_spool(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    time_t now = time(NULL);
    int removed = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        size_t n = strlen(e->d_name);
        if (n < 6 || strcmp(e->d_name + n - 5, ".part") != 0)
            continue;
        an_buf p = AN_BUF_INIT;
        an_buf_addf(&p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p.data, &st) == 0 && now - st.st_mtime > 3600 && unlink(p.data) == 0)
            removed++;
        an_buf_free(&p);
    }
    closedir(d);
    if (removed)
        an_info("removed %d abandoned spool files from %s", removed, dir);
}

an_status exports_workers_start(exports_ctx *x, an_error *err)
{
    sweep_spool(x->cfg.spool_dir);
    const an_service_config *sc = an_service_get_config(x->svc);
    x->nworkers = (size_t)x->cfg.workers;
    x->workers = calloc(x->nworkers ? x->nworkers : 1, sizeof(*x->workers));
    if (!x->workers)
        abort();
    for (size_t i = 0; i < x->nworkers; i++) {
        exports_worker *w = calloc(1, sizeof(*w));
        if (!w)
            abort();
        w->x = x;
        w->index = (int)i;
        an_queue_options qo;
        an_queue_options_init(&qo);
        qo.visibility_ms = (int)x->cfg.visibility_ms;
        qo.max_attempts = (int)x->cfg.max_attempts;
        qo.backoff_base_ms = (int)x->cfg.backoff_ms;
        an_ch_options ro = {.url = sc->clickhouse_url,
                            .user = x->cfg.reader_user,
                            .password = x->cfg.reader_password,
                            .query_timeout_ms = (int)x->cfg.query_timeout_ms};
        an_ch_options wo = {.url = sc->clickhouse_url,
                            .user = sc->clickhouse_user,
                            .password = sc->clickhouse_password,
                            .query_timeout_ms = 30000};
        an_status s = an_queue_open(&w->q, sc->redis_url, x->cfg.queue_name, &qo, err);
        if (s == AN_OK)
            s = an_ch_new(&ro, &w->reader, err);
        if (s == AN_OK)
            s = an_ch_new(&wo, &w->ch, err);
        if (s == AN_OK && pthread_create(&w->thread, NULL, worker_main, w) != 0)
            s = an_error_set(err, AN_INTERNAL, "cannot start worker thread");
        if (s != AN_OK) {
            worker_free(w);
            return s;
        }
        x->workers[i] = w;
    }
    an_info("%zu export workers on queue %s (visibility %lld ms, %lld attempts)", x->nworkers,
            x->cfg.queue_name, (long long)x->cfg.visibility_ms, x->cfg.max_attempts);
    return AN_OK;
}

void exports_workers_stop(exports_ctx *x)
{
    for (size_t i = 0; i < x->nworkers; i++)
        if (x->workers[i])
            atomic_store(&x->workers[i]->stop, true);
    for (size_t i = 0; i < x->nworkers; i++) {
        if (!x->workers[i])
            continue;
        pthread_join(x->workers[i]->thread, NULL);
        worker_free(x->workers[i]);
    }
    free(x->workers);
    x->workers = NULL;
    x->nworkers = 0;
}
