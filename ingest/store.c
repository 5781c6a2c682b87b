#include "ingest/store.h"

#include "common/log.h"
#include "common/sql.h"
#include "common/timeutil.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define LOOKUP_CHUNK 500  /* messages per look-up query (keeps the SQL < 64 KiB) */
#define HASH_SLOTS   1024 /* > 2 * LOOKUP_CHUNK, power of two */

/* One ClickHouse connection and the scratch of the writes made on it. */
typedef struct conn {
    an_ch *ch;
    const char *instance;   /* the store's */
    int64_t max_wait_ms;    /* for INSERTs still running elsewhere */
    bool processes_refused; /* system.processes cannot be read: warned once */
    an_buf sql;
    an_buf body;
    uint8_t *present; /* per message of the batch being written */
    size_t present_cap;
} conn;

/* The hot tier is written on a second connection by a helper thread while
 * the writer thread writes the audit tier: ClickHouse parses, sorts and
 * compresses each INSERT on one core, so two at once use two. */
typedef struct job {
    ingest_batch *b;
    ingest_tier t;
    an_status st;
    an_error err;
    ingest_write_report rep;
} job;

struct ingest_store {
    conn main, side;
    conn streams[2 * INGEST_STORE_STREAM_SLOTS]; /* slot s: hot 2s, audit 2s + 1 */
    char *instance;
    _Atomic uint64_t serial;
    bool crash_between_tiers;
    pthread_t helper;
    bool helper_started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    job *pending; /* posted to the helper */
    bool job_done, quit;
};

static an_status write_tier(conn *c, ingest_batch *b, ingest_tier t, ingest_write_report *rep,
                            an_error *err);

static void *helper_main(void *arg)
{
    ingest_store *st = arg;
    pthread_mutex_lock(&st->mu);
    for (;;) {
        while (!st->pending && !st->quit)
            pthread_cond_wait(&st->cv, &st->mu);
        if (st->quit)
            break;
        job *j = st->pending;
        pthread_mutex_unlock(&st->mu);
        int64_t t0 = an_time_mono_ms();
        j->st = write_tier(&st->side, j->b, j->t, &j->rep, &j->err);
        j->rep.ms[j->t] = an_time_mono_ms() - t0;
        pthread_mutex_lock(&st->mu);
        st->pending = NULL;
        st->job_done = true;
        pthread_cond_broadcast(&st->cv);
    }
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

/* The writer logs failed attempts itself (rate-limited): the client's own
 * retries are only worth a debug line. */
static void on_retry(void *ud, int attempt, int delay_ms, const char *reason)
{
    (void)ud;
    an_debug("clickhouse: retry %d in %d ms: %s", attempt, delay_ms, reason);
}

static an_status conn_open(conn *c, const ingest_store_options *o, an_error *err)
{
    an_ch_options co = {
        .url = o->url,
        .user = o->user,
        .password = o->password,
        .query_timeout_ms = o->insert_timeout_ms > 0 ? o->insert_timeout_ms : 120000,
        .max_retries = 2, /* quick ones; the pipeline backs off for longer outages */
        .backoff_base_ms = 50,
        .backoff_max_ms = 500,
        .on_retry = on_retry,
    };
    return an_ch_new(&co, &c->ch, err);
}

static void conn_close(conn *c)
{
    an_ch_free(c->ch);
    an_buf_free(&c->sql);
    an_buf_free(&c->body);
    free(c->present);
}

an_status ingest_store_new(const ingest_store_options *o, ingest_store **out, an_error *err)
{
    ingest_store *st = calloc(1, sizeof(*st));
    if (!st)
        abort();
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    st->crash_between_tiers = o->crash_between_tiers;
    st->instance = strdup(o->instance && *o->instance ? o->instance : "x");
    if (!st->instance)
        abort();
    conn *all[2 + 2 * INGEST_STORE_STREAM_SLOTS] = {&st->main, &st->side};
    for (int i = 0; i < 2 * INGEST_STORE_STREAM_SLOTS; i++)
        all[2 + i] = &st->streams[i];
    an_status s = AN_OK;
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        all[i]->instance = st->instance;
        all[i]->max_wait_ms = o->insert_timeout_ms > 0 ? o->insert_timeout_ms : 120000;
        if (s == AN_OK)
            s = conn_open(all[i], o, err);
    }
    if (s == AN_OK) {
        if (pthread_create(&st->helper, NULL, helper_main, st) != 0)
            s = an_error_set(err, AN_INTERNAL, "cannot start the store's helper thread");
        else
            st->helper_started = true;
    }
    if (s != AN_OK) {
        ingest_store_free(st);
        return s;
    }
    *out = st;
    return AN_OK;
}

void ingest_store_set_deadline(ingest_store *st, int64_t deadline_ms)
{
    an_ch_set_deadline(st->main.ch, deadline_ms);
    an_ch_set_deadline(st->side.ch, deadline_ms);
    for (int i = 0; i < 2 * INGEST_STORE_STREAM_SLOTS; i++)
        an_ch_set_deadline(st->streams[i].ch, deadline_ms);
}

void ingest_store_free(ingest_store *st)
{
    if (!st)
        return;
    if (st->helper_started) {
        pthread_mutex_lock(&st->mu);
        st->quit = true;
        pthread_cond_broadcast(&st->cv);
        pthread_mutex_unlock(&st->mu);
        pthread_join(st->helper, NULL);
    }
    conn_close(&st->main);
    conn_close(&st->side);
    for (int i = 0; i < 2 * INGEST_STORE_STREAM_SLOTS; i++)
        conn_close(&st->streams[i]);
    free(st->instance);
    pthread_mutex_destroy(&st->mu);
    pthread_cond_destroy(&st->cv);
    free(st);
}

/* ------------------------------------------------------------- look-ups */

typedef struct lookup {
    const ingest_batch *b;
    const size_t *idx; /* messages of this chunk */
    size_t n;
    int32_t slots[HASH_SLOTS]; /* position in idx + 1, 0: empty */
    uint8_t *present;
    size_t found;
} lookup;

static uint32_t hash2(const char *a, size_t an, const char *b, size_t bn)
{
    uint32_t x = 2166136261u;
    for (size_t i = 0; i < an; i++)
        x = (x ^ (unsigned char)a[i]) * 16777619u;
    x = (x ^ 0xff) * 16777619u;
    for (size_t i = 0; i < bn; i++)
        x = (x ^ (unsigned char)b[i]) * 16777619u;
    return x;
}

#define KEY_BUF 96 /* "<stream seq>:<SHA-256 hex>" of a dead letter */

/* Keys of a message: (tenant, id) for events, (subject, "<seq>:<SHA-256 of
 * raw>") for dead letters. */
static void msg_key(const ingest_batch *b, const ingest_msg *m, const char **k1, size_t *n1,
                    const char **k2, size_t *n2, char *seqbuf)
{
    if (m->dead) {
        *k1 = ingest_msg_subject(b, m);
        *n1 = m->subject_len;
        *n2 = (size_t)snprintf(seqbuf, KEY_BUF, "%" PRIu64 ":%s", m->stream_seq,
                               ingest_msg_raw_sha256(b, m));
        *k2 = seqbuf;
    } else {
        *k1 = ingest_msg_tenant(b, m);
        *n1 = m->tenant_len;
        *k2 = ingest_msg_id(b, m);
        *n2 = m->id_len;
    }
}

static void lookup_index(lookup *l)
{
    memset(l->slots, 0, sizeof(l->slots));
    for (size_t i = 0; i < l->n; i++) {
        const char *k1, *k2;
        size_t n1, n2;
        char seq[KEY_BUF];
        msg_key(l->b, &l->b->msgs[l->idx[i]], &k1, &n1, &k2, &n2, seq);
        uint32_t h = hash2(k1, n1, k2, n2) & (HASH_SLOTS - 1);
        while (l->slots[h])
            h = (h + 1) & (HASH_SLOTS - 1);
        l->slots[h] = (int32_t)i + 1;
    }
}

/* Does the stored event row (tenant, id, event_name, occurred_at seconds)
 * have m's identity? Its key is the table's sorting key: two events of one
 * tenant may share an id (a producer's aggregate id) and differ in type or
 * time, and neither is the other. */
static bool same_event(const ingest_batch *b, const ingest_msg *m, const an_ch_row *row)
{
    if (row->ncols < 4 || !row->fields[2] || !row->fields[3])
        return false;
    char sec[24];
    int n = snprintf(sec, sizeof(sec), "%lld", (long long)m->occurred_s);
    return row->lens[2] == m->name_len &&
           memcmp(row->fields[2], ingest_msg_name(b, m), m->name_len) == 0 &&
           row->lens[3] == (size_t)n && memcmp(row->fields[3], sec, (size_t)n) == 0;
}

/* A stored (key1, key2) came back: mark every message of the chunk with it. */
static an_status on_stored(void *ud, const an_ch_row *row, an_error *err)
{
    (void)err;
    lookup *l = ud;
    if (row->ncols < 2 || !row->fields[0] || !row->fields[1])
        return AN_OK;
    const char *r1 = row->fields[0], *r2 = row->fields[1];
    size_t rn1 = row->lens[0], rn2 = row->lens[1];
    uint32_t h = hash2(r1, rn1, r2, rn2) & (HASH_SLOTS - 1);
    while (l->slots[h]) {
        size_t i = (size_t)l->slots[h] - 1;
        const char *k1, *k2;
        size_t n1, n2;
        char seq[KEY_BUF];
        const ingest_msg *m = &l->b->msgs[l->idx[i]];
        msg_key(l->b, m, &k1, &n1, &k2, &n2, seq);
        if (n1 == rn1 && n2 == rn2 && memcmp(k1, r1, n1) == 0 && memcmp(k2, r2, n2) == 0 &&
            (m->dead || same_event(l->b, m, row)) && !l->present[l->idx[i]]) {
            l->present[l->idx[i]] = 1;
            l->found++;
        }
        h = (h + 1) & (HASH_SLOTS - 1);
    }
    return AN_OK;
}

static void chunk_sql(an_buf *sql, ingest_tier t, const lookup *l)
{
    const ingest_batch *b = l->b;
    an_buf_reset(sql);
    if (t == INGEST_TIER_DEAD) {
        /* the raw bytes too: stream sequences start again with a new stream */
        an_buf_addf(
            sql,
            "SELECT subject, concat(toString(stream_seq), ':', lower(hex(SHA256(raw)))) FROM %s "
            "WHERE stream_seq IN (",
            ingest_tier_table(t));
        for (size_t i = 0; i < l->n; i++) {
            if (i)
                an_buf_addc(sql, ',');
            an_sql_uint64(sql, b->msgs[l->idx[i]].stream_seq);
        }
        an_buf_addc(sql, ')');
        return;
    }
    /* (tenant_id, event_id) by the primary key: the tenant prefix and the
     * occurred_at range narrow the granules, the partition key prunes; the
     * type and the second complete the identity (same_event) */
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    an_buf_addf(sql,
                "SELECT tenant_id, event_id, event_name, toUInt32(occurred_at) FROM %s "
                "WHERE tenant_id IN (",
                ingest_tier_table(t));
    size_t first = sql->len;
    for (size_t i = 0; i < l->n; i++) {
        const ingest_msg *m = &b->msgs[l->idx[i]];
        const char *tenant = ingest_msg_tenant(b, m);
        lo = m->occurred_s < lo ? m->occurred_s : lo;
        hi = m->occurred_s > hi ? m->occurred_s : hi;
        /* distinct tenants only: a chunk usually holds few */
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) {
            const ingest_msg *o = &b->msgs[l->idx[j]];
            seen = o->tenant_len == m->tenant_len &&
                   memcmp(ingest_msg_tenant(b, o), tenant, m->tenant_len) == 0;
        }
        if (seen)
            continue;
        if (sql->len > first)
            an_buf_addc(sql, ',');
        an_sql_quote(sql, tenant, m->tenant_len);
    }
    an_buf_adds(sql, ") AND event_id IN (");
    for (size_t i = 0; i < l->n; i++) {
        const ingest_msg *m = &b->msgs[l->idx[i]];
        if (i)
            an_buf_addc(sql, ',');
        an_sql_quote(sql, ingest_msg_id(b, m), m->id_len);
    }
    an_buf_adds(sql, ") AND occurred_at >= toDateTime(");
    an_sql_int64(sql, lo);
    an_buf_adds(sql, ") AND occurred_at <= toDateTime(");
    an_sql_int64(sql, hi);
    an_buf_addc(sql, ')');
}

/* Which of the messages idx[0..n) already have their row in tier t: sets
 * c->present[i]. Returns how many were found through *found. */
static an_status look_up(conn *st, const ingest_batch *b, ingest_tier t, const size_t *idx,
                         size_t n, size_t *found, an_error *err)
{
    lookup *l = malloc(sizeof(*l));
    if (!l)
        abort();
    l->b = b;
    l->present = st->present;
    l->found = 0;
    an_status s = AN_OK;
    for (size_t off = 0; off < n && s == AN_OK; off += LOOKUP_CHUNK) {
        l->idx = idx + off;
        l->n = n - off < LOOKUP_CHUNK ? n - off : LOOKUP_CHUNK;
        lookup_index(l);
        chunk_sql(&st->sql, t, l);
        s = an_ch_query(st->ch, st->sql.data, NULL, on_stored, l, err);
    }
    *found = l->found;
    free(l);
    return s;
}

/* --------------------------------------------------------------- writes */

/* query_id of an INSERT: "ingest-<instance>-<batch>-<tier>-<attempt>". */
static void query_id(char *out, size_t n, const conn *c, const ingest_batch *b, ingest_tier t)
{
    snprintf(out, n, "ingest-%s-%llu-%d-%d", c->instance, (unsigned long long)b->serial, (int)t,
             b->attempts);
}

static an_status count_rows(void *ud, const an_ch_row *row, an_error *err)
{
    (void)err;
    if (row->ncols > 0 && row->fields[0])
        *(long long *)ud = atoll(row->fields[0]);
    return AN_OK;
}

/* Wait until no ingest INSERT into tier t's table that may hold rows of b
 * is still running: one that started before the last of b's messages to
 * look up was fetched (its earlier holder sent it, then died or gave it
 * up), or an earlier attempt of this same batch and tier (failed on the
 * client side, maybe not on the server). */
static an_status wait_for_inserts(conn *c, const ingest_batch *b, ingest_tier t, an_error *err)
{
    int64_t start = an_time_mono_ms(), logged = 0;
    int64_t cut = b->lookup_ms > b->opened_ms ? b->lookup_ms : b->opened_ms;
    for (;;) {
        double age = (double)(an_time_mono_ms() - cut) / 1000.0;
        char own[160];
        snprintf(own, sizeof(own), "ingest-%s-%llu-%d-", c->instance, (unsigned long long)b->serial,
                 (int)t);
        an_buf_reset(&c->sql);
        an_buf_adds(&c->sql, "SELECT count() FROM system.processes WHERE "
                             "startsWith(query_id, 'ingest-') AND startsWith(query, ");
        char prefix[128];
        snprintf(prefix, sizeof(prefix), "INSERT INTO %s ", ingest_tier_table(t));
        an_sql_quote_str(&c->sql, prefix);
        an_buf_adds(&c->sql, ") AND (elapsed >= ");
        an_error e;
        an_sql_double(&c->sql, age, &e);
        an_buf_adds(&c->sql, " OR startsWith(query_id, ");
        an_sql_quote_str(&c->sql, own);
        an_buf_adds(&c->sql, "))");
        long long running = 0;
        if (c->processes_refused)
            return AN_OK;
        an_status st = an_ch_query(c->ch, c->sql.data, NULL, count_rows, &running, &e);
        bool never = st == AN_PERMISSION_DENIED || st == AN_UNAUTHENTICATED || st == AN_NOT_FOUND ||
                     st == AN_INVALID_ARGUMENT;
        if (st != AN_OK && !never) {
            /* ClickHouse is away, overloaded or failing: this attempt fails,
             * the next one waits (going on without could count twice) */
            if (err)
                *err = e;
            return st;
        }
        if (st != AN_OK) { /* not allowed to read it: say so once, go on without */
            if (!c->processes_refused)
                an_warn("cannot read system.processes (%s): look-ups of redelivered messages "
                        "rely on the ack wait alone",
                        e.message);
            c->processes_refused = true;
            return AN_OK;
        }
        int64_t waited = an_time_mono_ms() - start;
        if (running == 0)
            return AN_OK;
        if (waited >= c->max_wait_ms) {
            an_warn("%lld earlier INSERTs into %s still run after %lld ms; looking up anyway",
                    running, ingest_tier_table(t), (long long)waited);
            return AN_OK;
        }
        if (waited - logged >= 5000) {
            an_info("waiting for %lld earlier INSERTs into %s to finish before looking up "
                    "redelivered rows",
                    running, ingest_tier_table(t));
            logged = waited;
        }
        usleep(100 * 1000);
    }
}

static an_status write_tier(conn *st, ingest_batch *b, ingest_tier t, ingest_write_report *rep,
                            an_error *err)
{
    an_ch_batch *rows = b->rows[t];
    if (an_ch_batch_rows(rows) == 0)
        return AN_OK;
    /* Which messages to look up: all after an uncertain attempt, else the
     * redelivered ones. */
    size_t *idx = NULL, n = 0;
    if (b->uncertain[t] || b->redelivered) {
        idx = malloc(b->n * sizeof(size_t));
        if (!idx)
            abort();
        for (size_t i = 0; i < b->n; i++) {
            const ingest_msg *m = &b->msgs[i];
            if (m->end[t] != m->start[t] && (b->uncertain[t] || m->redelivered))
                idx[n++] = i;
        }
    }
    size_t found = 0;
    if (n) {
        if (st->present_cap < b->n) {
            free(st->present);
            st->present_cap = b->cap;
            st->present = malloc(st->present_cap);
            if (!st->present)
                abort();
        }
        memset(st->present, 0, b->n);
        an_status s = wait_for_inserts(st, b, t, err);
        if (s == AN_OK)
            s = look_up(st, b, t, idx, n, &found, err);
        rep->looked_up += n;
        if (s != AN_OK) {
            free(idx);
            return s;
        }
    }
    free(idx);
    an_status s;
    size_t sent = an_ch_batch_rows(rows);
    char qid[160];
    query_id(qid, sizeof(qid), st, b, t);
    an_ch_setting qs = {"query_id", qid};
    an_ch_settings settings = {.extra = &qs, .n_extra = 1};
    if (found == 0) {
        s = an_ch_insert(st->ch, rows, &settings, 0, err);
    } else {
        size_t len;
        const char *data = an_ch_batch_data(rows, &len);
        an_buf_reset(&st->body);
        sent = 0;
        for (size_t i = 0; i < b->n; i++) {
            const ingest_msg *m = &b->msgs[i];
            if (m->end[t] == m->start[t] || st->present[i])
                continue;
            an_buf_add(&st->body, data + m->start[t], m->end[t] - m->start[t]);
            sent++;
        }
        s = sent ? an_ch_insert_raw(st->ch, an_ch_batch_statement(rows), st->body.data,
                                    st->body.len, &settings, 0, err)
                 : AN_OK;
    }
    if (s == AN_OK) {
        rep->rows[t] += sent;
        rep->skipped[t] += found;
        b->skipped[t] += found;
    }
    return s;
}

/* Write tier t on connection c, keeping b's state for the next attempt. */
static an_status write_one(conn *c, ingest_batch *b, ingest_tier t, ingest_write_report *rep,
                           an_error *err)
{
    int64_t t0 = an_time_mono_ms();
    an_status s = write_tier(c, b, t, rep, err);
    rep->ms[t] = an_time_mono_ms() - t0;
    if (s != AN_OK) {
        b->uncertain[t] = true;
        rep->failed_tier = t;
        return s;
    }
    b->written[t] = true;
    return AN_OK;
}

/* The batch's number in query ids, once (the fetcher's thread or the writer's). */
static void assign_serial(ingest_store *st, ingest_batch *b)
{
    if (!b->serial)
        b->serial = atomic_fetch_add(&st->serial, 1) + 1;
}

/* Testing only (ANALYTICS_INGEST_TEST_CRASH=between_tiers): die once the
 * audit tier is written. */
static void crash_hook(const ingest_store *st, ingest_tier written)
{
    if (!st->crash_between_tiers)
        return;
    an_errorf("ANALYTICS_INGEST_TEST_CRASH=between_tiers: exiting after writing %s",
              ingest_tier_table(written));
    _exit(70);
}

an_status ingest_store_write(ingest_store *st, ingest_batch *b, ingest_write_report *rep,
                             an_error *err)
{
    memset(rep, 0, sizeof(*rep));
    b->attempts++;
    assign_serial(st, b);
    bool hot = !b->written[INGEST_TIER_HOT] && an_ch_batch_rows(b->rows[INGEST_TIER_HOT]);
    bool audit = !b->written[INGEST_TIER_AUDIT] && an_ch_batch_rows(b->rows[INGEST_TIER_AUDIT]);
    job j = {.b = b, .t = INGEST_TIER_HOT};
    bool side = hot && audit && !st->crash_between_tiers;
    if (side) {
        pthread_mutex_lock(&st->mu);
        st->job_done = false;
        st->pending = &j;
        pthread_cond_broadcast(&st->cv);
        pthread_mutex_unlock(&st->mu);
    }
    an_status s = AN_OK;
    static const ingest_tier order[] = {INGEST_TIER_AUDIT, INGEST_TIER_HOT, INGEST_TIER_DEAD};
    for (size_t i = 0; i < sizeof(order) / sizeof(order[0]) && s == AN_OK; i++) {
        ingest_tier t = order[i];
        if (b->written[t] || (side && t == INGEST_TIER_HOT))
            continue;
        if (an_ch_batch_rows(b->rows[t]) == 0) {
            b->written[t] = true;
            continue;
        }
        s = write_one(&st->main, b, t, rep, err);
        if (s == AN_OK)
            crash_hook(st, t);
    }
    if (side) {
        pthread_mutex_lock(&st->mu);
        while (!st->job_done)
            pthread_cond_wait(&st->cv, &st->mu);
        pthread_mutex_unlock(&st->mu);
        rep->rows[INGEST_TIER_HOT] += j.rep.rows[INGEST_TIER_HOT];
        rep->skipped[INGEST_TIER_HOT] += j.rep.skipped[INGEST_TIER_HOT];
        rep->looked_up += j.rep.looked_up;
        rep->ms[INGEST_TIER_HOT] = j.rep.ms[INGEST_TIER_HOT];
        if (j.st != AN_OK) {
            b->uncertain[INGEST_TIER_HOT] = true;
            if (s == AN_OK) {
                rep->failed_tier = INGEST_TIER_HOT;
                if (err)
                    *err = j.err;
                s = j.st;
            }
        } else {
            b->written[INGEST_TIER_HOT] = true;
        }
    }
    return s;
}

/* ------------------------------------------------------------ streaming */

/* End b's open INSERTs (abandon: break them off), audit first; the first
 * error wins. Each answer is awaited for the insert timeout, or until the
 * store's deadline. */
static an_status stream_end(ingest_store *st, ingest_batch *b, bool abandon, an_error *err)
{
    an_status s = AN_OK;
    static const ingest_tier order[] = {INGEST_TIER_AUDIT, INGEST_TIER_HOT};
    for (int i = 0; i < 2; i++) {
        ingest_tier t = order[i];
        if (!b->stream[t])
            continue;
        an_error e;
        an_status r = an_ch_stream_finish(b->stream[t], abandon || s != AN_OK ? 0 : -1, &e);
        b->stream[t] = NULL;
        if (r != AN_OK && s == AN_OK) {
            s = r;
            if (err)
                *err = e;
        }
        if (s == AN_OK && !abandon)
            crash_hook(st, t);
    }
    return s;
}

an_status ingest_store_stream_open(ingest_store *st, ingest_batch *b, an_error *err)
{
    b->stream_tried = true;
    if (b->slot < 0 || b->slot >= INGEST_STORE_STREAM_SLOTS)
        return an_error_set(err, AN_INTERNAL, "batch slot %d has no stream connections", b->slot);
    assign_serial(st, b);
    an_status s = AN_OK;
    for (int t = 0; t < 2 && s == AN_OK; t++) {
        conn *c = &st->streams[2 * b->slot + t];
        char qid[160];
        query_id(qid, sizeof(qid), c, b, (ingest_tier)t); /* attempt 0 */
        an_ch_setting qs = {"query_id", qid};
        an_ch_settings settings = {.extra = &qs, .n_extra = 1};
        s = an_ch_stream_start(c->ch, b->live[t], &settings, &b->stream[t], err);
    }
    if (s != AN_OK)
        stream_end(st, b, true, NULL);
    return s;
}

void ingest_store_stream_give_up(ingest_batch *b)
{
    an_ch_batch_reset(b->live[INGEST_TIER_HOT]);
    an_ch_batch_reset(b->live[INGEST_TIER_AUDIT]);
    b->stream_failed = true;
}

an_status ingest_store_stream_send(ingest_batch *b, size_t min_bytes, int timeout_ms, an_error *err)
{
    for (int t = 0; t < 2 && ingest_batch_streaming(b); t++) {
        if (an_ch_batch_rows(b->live[t]) == 0 || an_ch_batch_bytes(b->live[t]) < min_bytes)
            continue;
        an_status s = an_ch_stream_send(b->stream[t], b->live[t], timeout_ms, err);
        if (s == AN_RESOURCE_EXHAUSTED)
            return s;
        if (s != AN_OK) {
            ingest_store_stream_give_up(b);
            return s;
        }
    }
    return AN_OK;
}

an_status ingest_store_stream_close(ingest_store *st, ingest_batch *b, an_error *err)
{
    if (!b->stream[INGEST_TIER_HOT] && !b->stream[INGEST_TIER_AUDIT])
        return AN_OK;
    bool abandon = b->stream_failed;
    an_status s = stream_end(st, b, abandon, err);
    if (abandon && s == AN_OK) /* broken off on purpose: still not confirmed */
        s = an_error_set(err, AN_UNAVAILABLE, "streaming insert given up");
    if (s != AN_OK)
        b->stream_failed = true;
    return s;
}
