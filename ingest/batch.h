/*
 * batch.h - the rows of a batch of JetStream messages, built in ClickHouse's
 * RowBinary format for the three tables ingest writes, and what is needed to
 * ack each message once the rows are stored.
 *
 *   analytics.events              hot tier, one row per valid event (PII-free)
 *   analytics_audit.events        audit tier, one row per valid event (raw payload)
 *   analytics_audit.dead_letters  one row per rejected message
 *
 * Per message the batch keeps the byte range of its row in each table's body,
 * its identity (tenant and event id, or subject and stream sequence for a
 * dead letter) and its JetStream ack subject. That lets the store send a
 * body without the rows that turned out to be stored already (a redelivery,
 * or a retry after an insert whose outcome was unknown) and lets the
 * pipeline ack every message after the rows are confirmed.
 *
 * Streaming: while the store has INSERTs open for the batch (the pipeline
 * opens them with its first message), the hot and audit rows of messages
 * delivered for the first time go into live[] instead, which the pipeline
 * hands to those INSERTs as they fill; the batch keeps only their ack
 * subjects. Redelivered messages and dead letters always stay in rows[]:
 * they may be stored already and are looked up before they are written.
 *
 * A batch is filled by one thread, then handed over; not thread-safe.
 */
#ifndef INGEST_BATCH_H
#define INGEST_BATCH_H

#include "common/buf.h"
#include "common/ch.h"
#include "ingest/envelope.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum ingest_tier {
    INGEST_TIER_HOT = 0,
    INGEST_TIER_AUDIT,
    INGEST_TIER_DEAD,
    INGEST_TIERS
} ingest_tier;

/* Table of a tier and its short name ("hot", "audit", "dead_letter"). */
const char *ingest_tier_table(ingest_tier t);
const char *ingest_tier_name(ingest_tier t);

typedef struct ingest_msg {
    uint64_t stream_seq;
    int64_t occurred_s;   /* events: occurred_at, for the primary-key range of look-ups */
    uint32_t reply_off;   /* ack subject in the arena, NUL-terminated */
    uint32_t key_off;     /* events: tenant, NUL, id, NUL, type, NUL; dead letters: subject,
                             NUL, SHA-256 of the raw bytes in hex, NUL */
    uint16_t tenant_len;  /* events */
    uint16_t id_len;      /* events */
    uint16_t name_len;    /* events: the type (event_name) */
    uint16_t subject_len; /* dead letters */
    bool dead;            /* a dead letter (one row in INGEST_TIER_DEAD), else an event
                             (one row in HOT and one in AUDIT) */
    bool redelivered;     /* JetStream delivered it before (or maybe_stored): looked up */
    bool streamed;        /* its hot and audit rows went to the batch's streaming INSERTs */
    uint32_t start[INGEST_TIERS], end[INGEST_TIERS]; /* byte range of its row per tier */
} ingest_msg;

typedef struct ingest_batch {
    an_ch_batch *rows[INGEST_TIERS];
    an_ch_batch *live[2]; /* HOT and AUDIT rows for the streaming INSERTs */
    ingest_msg *msgs;
    size_t n, cap;
    an_buf arena;        /* ack subjects and identities */
    size_t events, dead; /* messages of each kind */
    size_t redelivered;  /* messages delivered more than once */
    size_t streamed;     /* messages whose rows went to the streaming INSERTs */
    int64_t opened_ms;   /* monotonic ms of the first message; 0 when empty */
    int64_t progress_ms; /* monotonic ms of the last "in progress" sent for it */
    int64_t lookup_ms;   /* monotonic ms the last message to look up came; 0: none */
    /* write state, kept by the store across attempts */
    bool written[INGEST_TIERS];
    bool uncertain[INGEST_TIERS]; /* an attempt failed: rows may be stored already */
    size_t skipped[INGEST_TIERS]; /* rows left out because they were stored already */
    int attempts;
    uint64_t serial; /* set by the store at the first attempt, for query ids */
    /* streaming INSERTs, kept by the store (see ingest_store_stream_open) */
    int slot;                       /* which of the store's stream connections are its own */
    struct an_ch_stream *stream[2]; /* HOT, AUDIT; NULL when not open */
    bool stream_tried;              /* one attempt to open them per batch */
    bool stream_failed;             /* the streamed messages are not (all) stored: NAK them */
    /* stream sequences of the batch's messages (open addressing, index + 1) */
    uint32_t *seqs;
    size_t seqs_cap;
} ingest_batch;

/* Create an empty batch (RowBinary builders for the three tables). */
an_status ingest_batch_new(ingest_batch **out, an_error *err);
void ingest_batch_free(ingest_batch *b);
/* Empty it for reuse (storage is kept). */
void ingest_batch_reset(ingest_batch *b);

/* What every message brings. */
typedef struct ingest_msg_info {
    const char *subject;
    const char *reply; /* JetStream ack subject; may be NULL (then no ack) */
    const char *raw;
    size_t raw_len;
    uint64_t stream_seq;
    uint64_t delivered;  /* JetStream delivery count, 1 the first time */
    bool maybe_stored;   /* first delivery that an earlier consumer may have stored */
    int64_t received_ms; /* wall clock */
} ingest_msg_info;

/* Append the hot and audit rows of a valid event. key_id: the HMAC key id. */
an_status ingest_batch_add_event(ingest_batch *b, const ingest_msg_info *m, const ingest_event *ev,
                                 const char *key_id, an_error *err);

/* Append the dead-letter row of a rejected message. headers_json: the NATS
 * headers as a JSON object ("{}" when none). */
an_status ingest_batch_add_dead(ingest_batch *b, const ingest_msg_info *m, const ingest_reject *rej,
                                const char *headers_json, an_error *err);

/* True when the batch already holds the message of stream sequence seq (a
 * second delivery of it came while the first is still here). */
bool ingest_batch_has_seq(const ingest_batch *b, uint64_t seq);

/* Keep only the ack subject of a message whose rows the batch holds already
 * (ingest_batch_has_seq): nothing is written, and it shares the fate of the
 * first copy (streamed: NAKed with it when the streaming INSERT failed). */
void ingest_batch_add_ack_only(ingest_batch *b, const ingest_msg_info *m);

/* Bytes the batch holds: rows of every tier, ack subjects, identities (for
 * the size-based flush, which bounds ingest's memory). */
size_t ingest_batch_bytes(const ingest_batch *b);

/* New events go to live[]: the streaming INSERTs are open and working. */
static inline bool ingest_batch_streaming(const ingest_batch *b)
{
    return b->stream[0] && !b->stream_failed;
}

static inline const char *ingest_msg_reply(const ingest_batch *b, const ingest_msg *m)
{
    return b->arena.data + m->reply_off;
}
static inline const char *ingest_msg_tenant(const ingest_batch *b, const ingest_msg *m)
{
    return b->arena.data + m->key_off;
}
static inline const char *ingest_msg_id(const ingest_batch *b, const ingest_msg *m)
{
    return b->arena.data + m->key_off + m->tenant_len + 1;
}
static inline const char *ingest_msg_name(const ingest_batch *b, const ingest_msg *m)
{
    return b->arena.data + m->key_off + m->tenant_len + 1 + m->id_len + 1;
}
static inline const char *ingest_msg_subject(const ingest_batch *b, const ingest_msg *m)
{
    return b->arena.data + m->key_off;
}

/* Dead letters: SHA-256 of the message's raw bytes, 64 lowercase hex digits. */
static inline const char *ingest_msg_raw_sha256(const ingest_batch *b, const ingest_msg *m)
{
    return b->arena.data + m->key_off + m->subject_len + 1;
}

#endif
