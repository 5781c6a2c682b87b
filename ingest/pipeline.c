#include "ingest/pipeline.h"

#include "common/log.h"
#include "common/timeutil.h"
#include "ingest/hasher.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Batches: one filling while the other is written. A third would only
 * buffer jitter; the memory is better spent on larger batches, which cost
 * ClickHouse less per row (fewer parts to write and merge). */
#define POOL INGEST_STORE_STREAM_SLOTS

/* Rows handed to a streaming INSERT at a time (per tier). */
#define STREAM_CHUNK ((size_t)1 << 20)

struct ingest_pipeline {
    ingest_pipeline_options o;
    char *key, *key_id;
    ingest_metrics *m;

    /* the fetcher's */
    natsMsg **parked; /* pulled while no batch was free (the writer is behind) */
    int nparked, parked_cap;
    int64_t parked_progress_ms;
    ingest_hasher *hasher;
    ingest_parser *parser;
    an_buf headers;
    /* the writer's */
    ingest_store *store;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* any state change below */
    ingest_batch *pool[POOL];
    ingest_batch *free_list[POOL];
    int nfree;
    ingest_batch *ready[POOL]; /* FIFO */
    int rhead, rcount;
    ingest_batch *writing;
    bool stopping, fetcher_done, writer_done;
    int64_t stop_deadline; /* monotonic ms */
    size_t held;           /* messages in ready and writing */

    _Atomic int64_t last_fetch_ok;      /* monotonic ms */
    _Atomic int64_t writes_failing;     /* monotonic ms of the first failure in a row, 0: none */
    char write_error[AN_ERROR_MSG_MAX]; /* under mu */
    pthread_t fetcher, writer, monitor;
    bool started[3];
};

/* Wait on cv until the monotonic time deadline_ms (mu held). */
static void wait_until(ingest_pipeline *p, int64_t deadline_ms)
{
    an_time_cond_wait_until(&p->cv, &p->mu, deadline_ms);
}

/* ------------------------------------------------------------- the pool */

/* A free batch for the fetcher, waiting at most wait_ms; NULL on timeout or
 * once stopping. */
static ingest_batch *take_free(ingest_pipeline *p, int64_t wait_ms)
{
    int64_t until = an_time_mono_ms() + wait_ms;
    pthread_mutex_lock(&p->mu);
    while (p->nfree == 0 && !p->stopping && an_time_mono_ms() < until)
        wait_until(p, until);
    ingest_batch *b = p->stopping || p->nfree == 0 ? NULL : p->free_list[--p->nfree];
    pthread_mutex_unlock(&p->mu);
    return b;
}

static void submit(ingest_pipeline *p, ingest_batch *b)
{
    pthread_mutex_lock(&p->mu);
    p->ready[(p->rhead + p->rcount++) % POOL] = b;
    p->held += b->n;
    an_prom_gauge_set(p->m->held, (double)p->held);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static void give_back(ingest_pipeline *p, ingest_batch *b)
{
    pthread_mutex_lock(&p->mu);
    if (p->writing == b) {
        p->writing = NULL;
        p->held -= b->n;
        an_prom_gauge_set(p->m->held, (double)p->held);
    }
    ingest_batch_reset(b);
    p->free_list[p->nfree++] = b;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* ---------------------------------------------------------- the fetcher */

static void headers_json(natsMsg *msg, an_buf *out)
{
    an_buf_reset(out);
    an_buf_addc(out, '{');
    const char **keys = NULL;
    int n = 0;
    if (natsMsgHeader_Keys(msg, &keys, &n) == NATS_OK) {
        for (int i = 0; i < n; i++) {
            const char **vals = NULL;
            int nv = 0;
            if (natsMsgHeader_Values(msg, keys[i], &vals, &nv) != NATS_OK)
                continue;
            if (out->len > 1)
                an_buf_addc(out, ',');
            an_buf_addc(out, '"');
            an_buf_add_json_escaped(out, keys[i], strlen(keys[i]));
            an_buf_adds(out, nv == 1 ? "\":" : "\":[");
            for (int j = 0; j < nv; j++) {
                an_buf_adds(out, j ? ",\"" : "\"");
                an_buf_add_json_escaped(out, vals[j], strlen(vals[j]));
                an_buf_addc(out, '"');
            }
            if (nv != 1)
                an_buf_addc(out, ']');
            free((void *)vals);
        }
        free((void *)keys);
    }
    an_buf_addc(out, '}');
}

static void take_in(ingest_pipeline *p, ingest_batch *b, natsMsg *msg, int64_t wall_ms)
{
    ingest_msg_info info = {
        .subject = natsMsg_GetSubject(msg),
        .reply = natsMsg_GetReply(msg),
        .raw = natsMsg_GetData(msg),
        .raw_len = (size_t)natsMsg_GetDataLength(msg),
        .delivered = 1,
        .received_ms = wall_ms,
    };
    if (!info.raw)
        info.raw = "";
    jsMsgMetaData *meta = NULL;
    if (!ingest_consumer_reply_meta(info.reply, &info.stream_seq, &info.delivered) &&
        natsMsg_GetMetaData(&meta, msg) == NATS_OK) { /* a form not known here */
        info.stream_seq = meta->Sequence.Stream;
        info.delivered = meta->NumDelivered;
        jsMsgMetaData_Destroy(meta);
    }
    info.maybe_stored = info.delivered == 1 && info.stream_seq &&
                        info.stream_seq <= ingest_consumer_maybe_stored_through(p->o.consumer);
    bool look_up = info.delivered > 1 || info.maybe_stored;
    an_prom_counter_inc(info.delivered > 1 ? p->m->messages_redelivered : p->m->messages_first);
    if (look_up && ingest_batch_has_seq(b, info.stream_seq)) {
        /* delivered again while its first copy waits in this very batch
         * (the ack wait ran out under load, or a restarted nats-server sent
         * it again as new): ack both, write once */
        ingest_batch_add_ack_only(b, &info);
        an_debug("seq %llu came again while in the batch: acked once more, written once",
                 (unsigned long long)info.stream_seq);
        return;
    }
    if (look_up)
        an_prom_counter_inc(p->m->lookups);

    ingest_event ev;
    ingest_reject rej;
    an_error err;
    if (p->o.stream_inserts && !b->stream_tried && info.delivered == 1 && !info.maybe_stored) {
        if (ingest_store_stream_open(p->store, b, &err) != AN_OK)
            an_debug("batch without streaming: %s", err.message);
    }
    if (ingest_envelope_parse(p->parser, info.raw, info.raw_len, wall_ms, &ev, &rej)) {
        if (ingest_batch_add_event(b, &info, &ev, p->key_id, &err) == AN_OK) {
            an_prom_counter_inc(p->m->events);
            if (ev.pii_keys)
                an_prom_counter_add(p->m->pii_removed, (double)ev.pii_keys);
            if (ev.masked)
                an_prom_counter_add(p->m->pii_masked, (double)ev.masked);
            return;
        }
        /* not expected: every field was validated; keep the message anyway */
        rej.reason = INGEST_REASON_INVALID_FIELD;
        snprintf(rej.detail, sizeof(rej.detail), "%.200s", err.message);
        snprintf(rej.tenant, sizeof(rej.tenant), "%.*s", (int)ev.tenant_len, ev.tenant);
        snprintf(rej.id, sizeof(rej.id), "%.*s", (int)ev.id_len, ev.id);
    }
    headers_json(msg, &p->headers);
    if (ingest_batch_add_dead(b, &info, &rej, p->headers.data, &err) != AN_OK) {
        /* cannot happen (strings and integers only); never ack it unstored */
        an_errorf("cannot build the dead-letter row of %s seq %llu: %s", info.subject,
                  (unsigned long long)info.stream_seq, err.message);
        return;
    }
    an_prom_counter_inc(p->m->rejects[rej.reason]);
    an_log_ctx(AN_LOG_DEBUG, rej.tenant[0] ? rej.tenant : NULL, NULL,
               "dead-lettered %s seq %llu: %s: %s", info.subject,
               (unsigned long long)info.stream_seq, ingest_reason_name(rej.reason), rej.detail);
}

static bool is_stopping(ingest_pipeline *p)
{
    pthread_mutex_lock(&p->mu);
    bool s = p->stopping;
    pthread_mutex_unlock(&p->mu);
    return s;
}

/* Tell JetStream what became of a message. What nats.c refuses (NATS down
 * with its reconnect buffer full) is counted: that message comes back after
 * the ack wait and is looked up. */
static bool reply(ingest_pipeline *p, const char *subject, ingest_reply kind)
{
    if (ingest_consumer_reply(p->o.consumer, subject, kind))
        return true;
    an_prom_counter_inc(p->m->unsent[kind]);
    return false;
}

/* While every batch waits for the writer, messages that the open pull
 * requests still bring must not sit unseen in the subscription past the ack
 * wait (JetStream would hand them to another replica while this one still
 * has them): park them here and keep them alive. */
static void park(ingest_pipeline *p)
{
    natsMsgList list;
    an_error err;
    if (ingest_consumer_fetch(p->o.consumer, 2 * p->o.fetch + 16, 0, 0, false, &list, &err) ==
            AN_OK &&
        list.Count > 0) {
        if (p->nparked + list.Count > p->parked_cap) {
            p->parked_cap = (p->nparked + list.Count) * 2;
            p->parked = realloc(p->parked, (size_t)p->parked_cap * sizeof(natsMsg *));
            if (!p->parked)
                abort();
        }
        if (!p->nparked)
            p->parked_progress_ms = an_time_mono_ms();
        memcpy(p->parked + p->nparked, list.Msgs, (size_t)list.Count * sizeof(natsMsg *));
        p->nparked += list.Count;
        free(list.Msgs); /* the messages are ours now */
    }
    int64_t now = an_time_mono_ms();
    if (p->nparked && now - p->parked_progress_ms >= p->o.ack_wait_ms / 3 &&
        ingest_consumer_connected(p->o.consumer)) {
        for (int i = 0; i < p->nparked; i++)
            reply(p, natsMsg_GetReply(p->parked[i]), INGEST_REPLY_PROGRESS);
        p->parked_progress_ms = now;
    }
}

/* The parked messages go first into the batch that became free. */
static void release_parked(ingest_pipeline *p, ingest_batch *b)
{
    if (!p->nparked)
        return;
    int64_t wall = an_time_now_ms();
    b->opened_ms = an_time_mono_ms();
    b->progress_ms = p->parked_progress_ms; /* their ack wait restarted then */
    for (int i = 0; i < p->nparked; i++) {
        take_in(p, b, p->parked[i], wall);
        natsMsg_Destroy(p->parked[i]);
    }
    p->nparked = 0;
}

/* Restart the ack wait of b's messages once a third of it has passed since
 * the last restart (or since b opened), so that JetStream does not hand them
 * to another replica while this one holds them: a batch filling longer than
 * the ack wait, or waiting for a slow or stopped ClickHouse. Messages taken
 * in later were delivered at most a third of the ack wait before (the
 * longest the fetcher waits: a fetch waits at most a sixth, handing rows to
 * a streaming INSERT a third), so they are kept alive in time too. While
 * NATS is down nothing is sent (the acks need nats.c's reconnect buffer
 * more); the first tick after the reconnect sends it. */
static void keep_batch_alive(ingest_pipeline *p, ingest_batch *b, int64_t now)
{
    int64_t since = b->progress_ms ? b->progress_ms : b->opened_ms;
    if (!b->n || now - since < p->o.ack_wait_ms / 3)
        return;
    for (size_t j = 0; j < b->n; j++) {
        if (j % 1024 == 0 && !ingest_consumer_connected(p->o.consumer))
            return; /* down (again): all of them on the next tick */
        if (b->msgs[j].reply_off != UINT32_MAX)
            reply(p, ingest_msg_reply(b, &b->msgs[j]), INGEST_REPLY_PROGRESS);
    }
    b->progress_ms = now;
    an_debug("kept %zu held messages from redelivery (held %lld ms)", b->n,
             (long long)(now - b->opened_ms));
}

/* Hand b's live rows to its streaming INSERTs once a tier holds min_bytes.
 * ClickHouse slower than the fetcher makes this wait: for at most a third
 * of the ack wait (b is kept alive meanwhile), then the INSERTs are given
 * up and their messages will be NAKed. */
static void stream_send(ingest_pipeline *p, ingest_batch *b, size_t min_bytes)
{
    int64_t start = an_time_mono_ms(), limit = p->o.ack_wait_ms / 3;
    while (ingest_batch_streaming(b)) {
        an_error err;
        an_status s = ingest_store_stream_send(b, min_bytes, 200, &err);
        if (s == AN_OK)
            return;
        if (s != AN_RESOURCE_EXHAUSTED) {
            an_warn("streaming insert failed; its %zu messages go back to JetStream: %s",
                    b->streamed, err.message);
            return;
        }
        int64_t now = an_time_mono_ms(), waited = now - start;
        keep_batch_alive(p, b, now);
        if (waited >= limit || (is_stopping(p) && waited >= 1000)) {
            if (waited >= limit)
                an_warn("ClickHouse took no rows for %lld ms: giving up the streaming insert of "
                        "%zu messages (they go back to JetStream)",
                        (long long)limit, b->streamed);
            ingest_store_stream_give_up(b);
        }
    }
}

static void *fetcher_main(void *arg)
{
    ingest_pipeline *p = arg;
    const ingest_pipeline_options *o = &p->o;
    int64_t failing_since = 0, last_log = 0, last_reopen = 0;
    ingest_batch *b = NULL;
    while (!is_stopping(p)) {
        if (!b) {
            b = take_free(p, 200);
            if (!b) {
                park(p);
                continue;
            }
            release_parked(p, b);
        }
        int64_t now = an_time_mono_ms();
        int64_t timeout = b->n ? b->opened_ms + o->batch_age_ms - now : 500;
        int64_t most = o->ack_wait_ms / 6 < 500 ? o->ack_wait_ms / 6 : 500;
        timeout = timeout < 1 ? 1 : timeout > most ? most : timeout;
        size_t room = b->n < o->batch_rows ? o->batch_rows - b->n : 1;
        int want = (size_t)o->fetch < room ? o->fetch : (int)room;
        natsMsgList list;
        an_error err;
        /* fetched bytes become about twice as many in rows: keep the batch
         * near batch_bytes even when the events are large */
        int64_t room_bytes = (int64_t)o->batch_bytes - (int64_t)ingest_batch_bytes(b);
        int64_t max_bytes = room_bytes / 2 < (1 << 20) ? (1 << 20) : room_bytes / 2;
        an_status st =
            ingest_consumer_fetch(o->consumer, want, max_bytes, timeout, true, &list, &err);
        now = an_time_mono_ms();
        if (st != AN_OK) {
            if (!failing_since)
                failing_since = now;
            if (now - last_log >= 10000) {
                an_warn("fetch failed (for %lld ms): %s", (long long)(now - failing_since),
                        err.message);
                last_log = now;
            }
            if (now - failing_since >= 5000 && now - last_reopen >= 5000) {
                last_reopen = now;
                if (ingest_consumer_reopen(o->consumer, &err) == AN_OK)
                    an_info("re-bound to the ingest consumer");
                else
                    an_warn("re-binding to the ingest consumer failed: %s", err.message);
            }
            usleep(200 * 1000);
        } else {
            if (failing_since)
                an_info("fetching works again");
            failing_since = 0;
            atomic_store(&p->last_fetch_ok, now);
        }
        if (list.Count > 0) {
            int64_t wall = an_time_now_ms();
            if (b->n == 0)
                b->opened_ms = now;
            for (int i = 0; i < list.Count; i++)
                take_in(p, b, list.Msgs[i], wall);
        }
        /* All at once: nats.c hands each destroyed message to its garbage
         * collector thread and wakes it when idle - once per message if
         * destroyed one by one between parses. */
        natsMsgList_Destroy(&list);
        bool full = b->n >= o->batch_rows || ingest_batch_bytes(b) >= o->batch_bytes;
        bool old = b->n && an_time_mono_ms() >= b->opened_ms + o->batch_age_ms;
        stream_send(p, b, full || old ? 0 : STREAM_CHUNK);
        keep_batch_alive(p, b, an_time_mono_ms());
        if (full || old) {
            submit(p, b);
            b = NULL;
        }
    }
    if (b && p->nparked)
        release_parked(p, b);
    for (int i = 0; i < p->nparked; i++) { /* no batch to put them in: hand them back */
        reply(p, natsMsg_GetReply(p->parked[i]), INGEST_REPLY_NAK);
        natsMsg_Destroy(p->parked[i]);
    }
    p->nparked = 0;
    if (b && b->n) {
        stream_send(p, b, 0);
        submit(p, b);
    } else if (b) {
        give_back(p, b);
    }
    pthread_mutex_lock(&p->mu);
    p->fetcher_done = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ----------------------------------------------------------- the writer */

/* A write to ClickHouse failed: metrics, readiness, the error for /readyz. */
static void note_write_failure(ingest_pipeline *p, const char *message)
{
    an_prom_counter_inc(p->m->insert_failures);
    an_prom_gauge_set(p->m->clickhouse_up, 0);
    int64_t none = 0;
    atomic_compare_exchange_strong(&p->writes_failing, &none, an_time_mono_ms());
    pthread_mutex_lock(&p->mu);
    snprintf(p->write_error, sizeof(p->write_error), "%s", message);
    pthread_mutex_unlock(&p->mu);
}

/* End b's streaming INSERTs; when they failed, their messages are NAKed
 * with the batch (the rows are not kept here) and come back redelivered. */
static void close_streams(ingest_pipeline *p, ingest_batch *b)
{
    an_error err;
    if (ingest_store_stream_close(p->store, b, &err) == AN_OK) {
        if (b->streamed) {
            an_prom_counter_add(p->m->rows[INGEST_TIER_HOT], (double)b->streamed);
            an_prom_counter_add(p->m->rows[INGEST_TIER_AUDIT], (double)b->streamed);
        }
        return;
    }
    note_write_failure(p, err.message);
    an_warn("streaming insert of %zu events failed; they go back to JetStream (NAK) and will "
            "be looked up when redelivered: %s",
            b->streamed, err.message);
}

static void ack_all(ingest_pipeline *p, ingest_batch *b, bool ok)
{
    size_t acked = 0;
    for (size_t i = 0; i < b->n; i++) {
        const ingest_msg *m = &b->msgs[i];
        if (m->reply_off == UINT32_MAX)
            continue;
        if (ok && !(m->streamed && b->stream_failed)) {
            acked += reply(p, ingest_msg_reply(b, m), INGEST_REPLY_ACK);
        } else {
            reply(p, ingest_msg_reply(b, m), INGEST_REPLY_NAK);
        }
    }
    if (acked)
        an_prom_counter_add(p->m->acks, (double)acked);
}

/* Write b, retrying with backoff until it works or the stop deadline passed. */
static bool write_batch(ingest_pipeline *p, ingest_batch *b)
{
    const ingest_pipeline_options *o = &p->o;
    int64_t start = an_time_mono_ms(), delay = 100, last_log = 0;
    for (;;) {
        ingest_write_report rep;
        an_error err;
        an_status st = ingest_store_write(p->store, b, &rep, &err);
        for (int t = 0; t < INGEST_TIERS; t++) {
            if (rep.rows[t])
                an_prom_counter_add(p->m->rows[t], (double)rep.rows[t]);
            if (rep.skipped[t])
                an_prom_counter_add(p->m->skipped[t], (double)rep.skipped[t]);
        }
        if (st == AN_OK) {
            if (!b->stream_failed) { /* the whole batch is stored */
                atomic_store(&p->writes_failing, 0);
                an_prom_gauge_set(p->m->clickhouse_up, 1);
            }
            an_debug("wrote %zu messages: audit %lld ms, hot %lld ms, dead letters %lld ms", b->n,
                     (long long)rep.ms[INGEST_TIER_AUDIT], (long long)rep.ms[INGEST_TIER_HOT],
                     (long long)rep.ms[INGEST_TIER_DEAD]);
            if (b->attempts > 1)
                an_info("batch of %zu messages written after %d attempts (%lld ms)", b->n,
                        b->attempts, (long long)(an_time_mono_ms() - start));
            size_t skipped = b->skipped[0] + b->skipped[1] + b->skipped[2];
            if (skipped)
                an_info("%zu rows of redelivered messages were stored already and were not "
                        "written again",
                        skipped);
            return true;
        }
        note_write_failure(p, err.message);
        int64_t now = an_time_mono_ms();
        if (now - last_log >= 10000 || b->attempts == 1) {
            an_warn("writing %s failed (attempt %d for a batch of %zu messages, retrying in %lld "
                    "ms; the messages stay unacked): %s",
                    ingest_tier_table(rep.failed_tier), b->attempts, b->n, (long long)delay,
                    err.message);
            last_log = now;
        }
        pthread_mutex_lock(&p->mu);
        if (p->stopping && now >= p->stop_deadline) {
            pthread_mutex_unlock(&p->mu);
            return false;
        }
        int64_t until = now + delay;
        if (p->stopping && until > p->stop_deadline)
            until = p->stop_deadline;
        while (an_time_mono_ms() < until) {
            wait_until(p, until);
            if (p->stopping && an_time_mono_ms() >= p->stop_deadline)
                break;
        }
        pthread_mutex_unlock(&p->mu);
        delay = delay * 2 > o->retry_max_ms ? o->retry_max_ms : delay * 2;
    }
}

static void *writer_main(void *arg)
{
    ingest_pipeline *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->rcount == 0 && !p->fetcher_done)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->rcount == 0) {
            pthread_mutex_unlock(&p->mu);
            break;
        }
        ingest_batch *b = p->ready[p->rhead];
        p->rhead = (p->rhead + 1) % POOL;
        p->rcount--;
        p->writing = b;
        pthread_mutex_unlock(&p->mu);

        int64_t t0 = an_time_mono_ms();
        close_streams(p, b);
        bool ok = write_batch(p, b);
        int64_t t1 = an_time_mono_ms();
        if (ok && p->o.crash_after_insert) {
            an_errorf("ANALYTICS_INGEST_TEST_CRASH=after_insert: exiting after the insert of %zu "
                      "messages, before their acks",
                      b->n);
            _exit(70);
        }
        ack_all(p, b, ok);
        if (ok) {
            an_prom_histogram_observe(p->m->batch_messages, (double)b->n);
            an_prom_histogram_observe(p->m->batch_write_seconds, (double)(t1 - t0) / 1000.0);
            an_prom_histogram_observe(p->m->batch_latency_seconds,
                                      (double)(an_time_mono_ms() - b->opened_ms) / 1000.0);
            an_debug("batch: %zu events, %zu dead letters, written in %lld ms", b->events, b->dead,
                     (long long)(t1 - t0));
        } else {
            an_warn("stopping: handed %zu unwritten messages back to JetStream (NAK)", b->n);
        }
        give_back(p, b);
    }
    pthread_mutex_lock(&p->mu);
    p->writer_done = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---------------------------------------------------------- the monitor */

/* Restart the ack wait of the batches the writer holds (ClickHouse slow or
 * down); the fetcher keeps its own batch alive. */
static void keep_alive(ingest_pipeline *p, int64_t now)
{
    for (int i = 0; i < p->rcount; i++)
        keep_batch_alive(p, p->ready[(p->rhead + i) % POOL], now);
    if (p->writing)
        keep_batch_alive(p, p->writing, now);
}

static void *monitor_main(void *arg)
{
    ingest_pipeline *p = arg;
    int64_t last_info = 0;
    pthread_mutex_lock(&p->mu);
    while (!p->writer_done) {
        int64_t now = an_time_mono_ms();
        keep_alive(p, now);
        if (now - last_info >= 2000) {
            last_info = now;
            pthread_mutex_unlock(&p->mu);
            uint64_t pending = 0;
            int64_t ack_pending = 0;
            an_error err;
            if (ingest_consumer_info(p->o.consumer, &pending, &ack_pending, &err) == AN_OK) {
                an_prom_gauge_set(p->m->pending, (double)pending);
                an_prom_gauge_set(p->m->ack_pending, (double)ack_pending);
            }
            pthread_mutex_lock(&p->mu);
            continue;
        }
        wait_until(p, now + 1000);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ------------------------------------------------------------ lifecycle */

static void free_pipeline(ingest_pipeline *p)
{
    for (int i = 0; i < POOL; i++)
        ingest_batch_free(p->pool[i]);
    ingest_store_free(p->store);
    free(p->parked);
    ingest_parser_free(p->parser);
    ingest_hasher_free(p->hasher);
    an_buf_free(&p->headers);
    free(p->key);
    free(p->key_id);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}

an_status ingest_pipeline_start(const ingest_pipeline_options *o, ingest_pipeline **out,
                                an_error *err)
{
    ingest_pipeline *p = calloc(1, sizeof(*p));
    if (!p)
        abort();
    p->o = *o;
    p->m = o->metrics;
    p->key = malloc(o->hmac_key_len + 1);
    p->key_id = strdup(o->hmac_key_id ? o->hmac_key_id : "");
    if (!p->key || !p->key_id)
        abort();
    memcpy(p->key, o->hmac_key, o->hmac_key_len);
    p->key[o->hmac_key_len] = '\0';
    p->o.hmac_key = p->key;
    p->o.hmac_key_id = p->key_id;
    pthread_mutex_init(&p->mu, NULL);
    an_time_cond_init_mono(&p->cv);
    atomic_store(&p->last_fetch_ok, an_time_mono_ms());

    an_status s = ingest_hasher_new(p->key, o->hmac_key_len, &p->hasher, err);
    if (s == AN_OK)
        s = ingest_store_new(&o->store, &p->store, err);
    for (int i = 0; s == AN_OK && i < POOL; i++) {
        s = ingest_batch_new(&p->pool[i], err);
        if (s == AN_OK) {
            p->pool[i]->slot = i; /* its own stream connections in the store */
            p->free_list[p->nfree++] = p->pool[i];
        }
    }
    if (s != AN_OK) {
        free_pipeline(p);
        return s;
    }
    p->parser = ingest_parser_new(&o->limits, o->rules, p->hasher);
    an_prom_gauge_set(p->m->clickhouse_up, 1);

    void *(*mains[3])(void *) = {writer_main, monitor_main, fetcher_main};
    pthread_t *tids[3] = {&p->writer, &p->monitor, &p->fetcher};
    for (int i = 0; i < 3; i++) {
        if (pthread_create(tids[i], NULL, mains[i], p) != 0) {
            an_error_set(err, AN_INTERNAL, "cannot start the ingest threads");
            ingest_pipeline_stop(p);
            return AN_INTERNAL;
        }
        p->started[i] = true;
    }
    *out = p;
    return AN_OK;
}

void ingest_pipeline_stop(ingest_pipeline *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    p->stop_deadline = an_time_mono_ms() + p->o.stop_timeout_ms;
    ingest_store_set_deadline(p->store, p->stop_deadline);
    if (!p->started[2])
        p->fetcher_done = true;
    if (!p->started[0])
        p->writer_done = true;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    /* fetcher first (it hands its last batch over), then the writer drains
     * the queue, then the monitor sees the writer done */
    if (p->started[2])
        pthread_join(p->fetcher, NULL);
    if (p->started[0])
        pthread_join(p->writer, NULL);
    if (p->started[1])
        pthread_join(p->monitor, NULL);
    free_pipeline(p);
}

an_status ingest_pipeline_ready(ingest_pipeline *p, an_error *err)
{
    int64_t now = an_time_mono_ms();
    int64_t age = now - atomic_load(&p->last_fetch_ok);
    if (age > 10000)
        return an_error_set(err, AN_UNAVAILABLE, "no successful fetch from JetStream for %lld s",
                            (long long)(age / 1000));
    int64_t failing = atomic_load(&p->writes_failing);
    if (failing && now - failing > 30000) {
        char msg[AN_ERROR_MSG_MAX];
        pthread_mutex_lock(&p->mu);
        snprintf(msg, sizeof(msg), "%s", p->write_error);
        pthread_mutex_unlock(&p->mu);
        return an_error_set(err, AN_UNAVAILABLE,
                            "writing to ClickHouse has failed for %lld s: %.300s",
                            (long long)((now - failing) / 1000), msg);
    }
    return AN_OK;
}
