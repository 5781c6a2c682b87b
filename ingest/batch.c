#include "ingest/batch.h"
#include "ingest/tiers.h"

#include "common/crypto.h"
#include "common/timeutil.h"

#include <stdlib.h>
#include <string.h>

/* analytics_audit.dead_letters (the event tiers: tiers.h) */
static const an_ch_column dead_cols[] = {
    {"received_at", AN_CH_DATETIME}, {"received_ms", AN_CH_UINT16}, {"subject", AN_CH_STRING},
    {"stream_seq", AN_CH_UINT64},    {"reason", AN_CH_STRING},      {"detail", AN_CH_STRING},
    {"tenant_id", AN_CH_STRING},     {"event_id", AN_CH_STRING},    {"headers", AN_CH_STRING},
    {"raw", AN_CH_STRING},
};

static const struct {
    const char *table, *name;
    const an_ch_column *cols;
    size_t ncols;
} tiers[INGEST_TIERS] = {
    {"analytics.events", "hot", hot_cols, sizeof(hot_cols) / sizeof(hot_cols[0])},
    {"analytics_audit.events", "audit", audit_cols, sizeof(audit_cols) / sizeof(audit_cols[0])},
    {"analytics_audit.dead_letters", "dead_letter", dead_cols,
     sizeof(dead_cols) / sizeof(dead_cols[0])},
};

const char *ingest_tier_table(ingest_tier t)
{
    return tiers[t].table;
}

const char *ingest_tier_name(ingest_tier t)
{
    return tiers[t].name;
}

#define NO_REPLY UINT32_MAX

an_status ingest_batch_new(ingest_batch **out, an_error *err)
{
    ingest_batch *b = calloc(1, sizeof(*b));
    if (!b)
        abort();
    for (int t = 0; t < INGEST_TIERS; t++) {
        an_status s = an_ch_batch_new(tiers[t].table, tiers[t].cols, tiers[t].ncols,
                                      AN_CH_FORMAT_ROWBINARY, &b->rows[t], err);
        if (s != AN_OK) {
            ingest_batch_free(b);
            return s;
        }
    }
    for (int t = 0; t < 2; t++) {
        an_status s = an_ch_batch_new(tiers[t].table, tiers[t].cols, tiers[t].ncols,
                                      AN_CH_FORMAT_ROWBINARY, &b->live[t], err);
        if (s != AN_OK) {
            ingest_batch_free(b);
            return s;
        }
    }
    *out = b;
    return AN_OK;
}

void ingest_batch_free(ingest_batch *b)
{
    if (!b)
        return;
    for (int t = 0; t < INGEST_TIERS; t++)
        an_ch_batch_free(b->rows[t]);
    for (int t = 0; t < 2; t++)
        an_ch_batch_free(b->live[t]);
    free(b->msgs);
    free(b->seqs);
    an_buf_free(&b->arena);
    free(b);
}

void ingest_batch_reset(ingest_batch *b)
{
    for (int t = 0; t < INGEST_TIERS; t++) {
        an_ch_batch_reset(b->rows[t]);
        b->written[t] = b->uncertain[t] = false;
        b->skipped[t] = 0;
    }
    for (int t = 0; t < 2; t++)
        an_ch_batch_reset(b->live[t]);
    b->stream_tried = b->stream_failed = false;
    b->n = b->events = b->dead = b->redelivered = b->streamed = 0;
    if (b->seqs)
        memset(b->seqs, 0, b->seqs_cap * sizeof(uint32_t));
    an_buf_reset(&b->arena);
    b->opened_ms = b->progress_ms = b->lookup_ms = 0;
    b->attempts = 0;
    b->serial = 0;
}

size_t ingest_batch_bytes(const ingest_batch *b)
{
    size_t n = b->arena.len + b->n * sizeof(ingest_msg);
    for (int t = 0; t < INGEST_TIERS; t++)
        n += an_ch_batch_bytes(b->rows[t]);
    for (int t = 0; t < 2; t++)
        n += an_ch_batch_bytes(b->live[t]);
    return n;
}

static size_t seq_slot(uint64_t seq, size_t cap)
{
    seq *= 0x9e3779b97f4a7c15ull;
    return (size_t)(seq >> 32) & (cap - 1);
}

/* The first message of b with stream sequence seq, or NULL. */
static const ingest_msg *find_seq(const ingest_batch *b, uint64_t seq)
{
    if (!seq || !b->seqs)
        return NULL;
    for (size_t h = seq_slot(seq, b->seqs_cap); b->seqs[h]; h = (h + 1) & (b->seqs_cap - 1))
        if (b->msgs[b->seqs[h] - 1].stream_seq == seq)
            return &b->msgs[b->seqs[h] - 1];
    return NULL;
}

bool ingest_batch_has_seq(const ingest_batch *b, uint64_t seq)
{
    return find_seq(b, seq) != NULL;
}

/* Remember message i by its stream sequence (kept under half full). */
static void index_seq(ingest_batch *b, size_t i)
{
    uint64_t seq = b->msgs[i].stream_seq;
    if (!seq)
        return;
    if ((i + 1) * 2 > b->seqs_cap) {
        size_t cap = b->seqs_cap ? b->seqs_cap * 2 : 2048;
        while ((i + 1) * 2 > cap)
            cap *= 2;
        free(b->seqs);
        b->seqs = calloc(cap, sizeof(uint32_t));
        if (!b->seqs)
            abort();
        b->seqs_cap = cap;
        for (size_t j = 0; j < i; j++) /* rebuild with the messages before i */
            if (b->msgs[j].stream_seq) {
                size_t h = seq_slot(b->msgs[j].stream_seq, cap);
                while (b->seqs[h])
                    h = (h + 1) & (cap - 1);
                b->seqs[h] = (uint32_t)j + 1;
            }
    }
    size_t h = seq_slot(seq, b->seqs_cap);
    while (b->seqs[h])
        h = (h + 1) & (b->seqs_cap - 1);
    b->seqs[h] = (uint32_t)i + 1;
}

static ingest_msg *new_msg(ingest_batch *b, const ingest_msg_info *m)
{
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 1024;
        b->msgs = realloc(b->msgs, b->cap * sizeof(ingest_msg));
        if (!b->msgs)
            abort();
    }
    ingest_msg *g = &b->msgs[b->n];
    memset(g, 0, sizeof(*g));
    g->stream_seq = m->stream_seq;
    g->redelivered = m->delivered > 1 || m->maybe_stored;
    if (g->redelivered)
        b->lookup_ms = an_time_mono_ms();
    if (m->reply) {
        g->reply_off = (uint32_t)b->arena.len;
        an_buf_add(&b->arena, m->reply, strlen(m->reply) + 1);
    } else {
        g->reply_off = NO_REPLY;
    }
    for (int t = 0; t < INGEST_TIERS; t++)
        g->start[t] = g->end[t] = (uint32_t)an_ch_batch_bytes(b->rows[t]);
    return g;
}

/* The message's row in tier t is complete. */
static an_status end_row(ingest_batch *b, ingest_msg *g, ingest_tier t, an_error *err)
{
    if (g->streamed && t != INGEST_TIER_DEAD) /* (only events stream; the test bounds live[]) */
        return an_ch_batch_end_row(b->live[t], err);
    an_status s = an_ch_batch_end_row(b->rows[t], err);
    g->end[t] = (uint32_t)an_ch_batch_bytes(b->rows[t]);
    return s;
}

/* Forget a message whose row could not be built (the builder dropped the
 * row already): take its strings back out of the arena. */
static void drop_msg(ingest_batch *b, size_t arena_mark)
{
    an_buf_setlen(&b->arena, arena_mark);
}

an_status ingest_batch_add_event(ingest_batch *b, const ingest_msg_info *m, const ingest_event *ev,
                                 const char *key_id, an_error *err)
{
    size_t mark = b->arena.len;
    ingest_msg *g = new_msg(b, m);
    g->occurred_s = ev->occurred_ms / 1000;
    g->streamed = ingest_batch_streaming(b) && !g->redelivered;
    if (!g->streamed) { /* the identity, for look-ups */
        g->key_off = (uint32_t)b->arena.len;
        g->tenant_len = (uint16_t)ev->tenant_len;
        g->id_len = (uint16_t)ev->id_len;
        g->name_len = (uint16_t)ev->type_len;
        an_buf_add(&b->arena, ev->tenant, ev->tenant_len);
        an_buf_addc(&b->arena, '\0');
        an_buf_add(&b->arena, ev->id, ev->id_len);
        an_buf_addc(&b->arena, '\0');
        an_buf_add(&b->arena, ev->type, ev->type_len);
        an_buf_addc(&b->arena, '\0');
    }

    an_ch_batch *h = g->streamed ? b->live[INGEST_TIER_HOT] : b->rows[INGEST_TIER_HOT];
    an_ch_batch_add_str(h, ev->tenant, ev->tenant_len);
    an_ch_batch_add_str(h, ev->id, ev->id_len);
    an_ch_batch_add_str(h, ev->type, ev->type_len);
    an_ch_batch_add_datetime(h, g->occurred_s);
    an_ch_batch_add_uint(h, (uint64_t)(ev->occurred_ms % 1000));
    an_ch_batch_add_datetime(h, m->received_ms / 1000);
    an_ch_batch_add_str(h, ev->actor_type, ev->actor_type_len);
    an_ch_batch_add_str(h, ev->actor_id, strlen(ev->actor_id));
    an_ch_batch_add_cstr(h, ev->actor_id[0] ? key_id : "");
    an_ch_batch_add_str(h, ev->correlation_id, ev->correlation_id_len);
    an_ch_batch_add_str(h, ev->properties, ev->properties_len);
    an_ch_batch_add_str_array(h, ev->prop_keys, ev->prop_key_lens, ev->nprops);
    an_ch_batch_add_str_array(h, ev->prop_values, ev->prop_value_lens, ev->nprops);
    an_status s = end_row(b, g, INGEST_TIER_HOT, err);
    if (s != AN_OK) {
        drop_msg(b, mark);
        return s;
    }

    an_ch_batch *a = g->streamed ? b->live[INGEST_TIER_AUDIT] : b->rows[INGEST_TIER_AUDIT];
    an_ch_batch_add_str(a, ev->tenant, ev->tenant_len);
    an_ch_batch_add_str(a, ev->id, ev->id_len);
    an_ch_batch_add_str(a, ev->type, ev->type_len);
    an_ch_batch_add_cstr(a, m->subject);
    an_ch_batch_add_datetime(a, g->occurred_s);
    an_ch_batch_add_uint(a, (uint64_t)(ev->occurred_ms % 1000));
    an_ch_batch_add_datetime(a, m->received_ms / 1000);
    an_ch_batch_add_uint(a, m->stream_seq);
    an_ch_batch_add_str(a, m->raw, m->raw_len);
    s = end_row(b, g, INGEST_TIER_AUDIT, err);
    if (s != AN_OK)
        abort(); /* same types as the hot row, which was accepted */

    index_seq(b, b->n);
    b->n++;
    b->events++;
    b->redelivered += g->redelivered;
    b->streamed += g->streamed;
    return AN_OK;
}

an_status ingest_batch_add_dead(ingest_batch *b, const ingest_msg_info *m, const ingest_reject *rej,
                                const char *headers_json, an_error *err)
{
    size_t mark = b->arena.len;
    ingest_msg *g = new_msg(b, m);
    g->dead = true;
    g->key_off = (uint32_t)b->arena.len;
    size_t sl = strlen(m->subject);
    g->subject_len = (uint16_t)(sl > UINT16_MAX ? UINT16_MAX : sl);
    an_buf_add(&b->arena, m->subject, g->subject_len);
    an_buf_addc(&b->arena, '\0');
    /* SHA-256 of the raw bytes, hex: a look-up matches a stored row by
     * subject, stream sequence and this, as sequences start again with a new
     * stream (none when it cannot be computed: never found, so a redelivered
     * dead letter may be written twice, never lost) */
    char digest[AN_CRYPTO_SHA256_HEX];
    if (an_crypto_sha256_hex(m->raw, m->raw_len, digest, NULL) != AN_OK)
        digest[0] = '\0';
    an_buf_add(&b->arena, digest, strlen(digest) + 1);

    an_ch_batch *d = b->rows[INGEST_TIER_DEAD];
    an_ch_batch_add_datetime(d, m->received_ms / 1000);
    an_ch_batch_add_uint(d, (uint64_t)(m->received_ms % 1000));
    an_ch_batch_add_cstr(d, m->subject);
    an_ch_batch_add_uint(d, m->stream_seq);
    an_ch_batch_add_cstr(d, ingest_reason_name(rej->reason));
    an_ch_batch_add_cstr(d, rej->detail);
    an_ch_batch_add_cstr(d, rej->tenant);
    an_ch_batch_add_cstr(d, rej->id);
    an_ch_batch_add_cstr(d, headers_json ? headers_json : "{}");
    an_ch_batch_add_str(d, m->raw, m->raw_len);
    an_status s = end_row(b, g, INGEST_TIER_DEAD, err);
    if (s != AN_OK) {
        drop_msg(b, mark);
        return s;
    }
    index_seq(b, b->n);
    b->n++;
    b->dead++;
    b->redelivered += g->redelivered;
    return AN_OK;
}

void ingest_batch_add_ack_only(ingest_batch *b, const ingest_msg_info *m)
{
    const ingest_msg *first = find_seq(b, m->stream_seq);
    bool streamed = first && first->streamed;
    ingest_msg *g = new_msg(b, m); /* no row in any tier: start == end */
    /* acked or NAKed with the copy that holds the rows: acking either copy
     * settles the message in JetStream */
    g->streamed = streamed;
    b->n++;
}
