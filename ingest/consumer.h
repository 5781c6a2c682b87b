/*
 * consumer.h - the firehose on the JetStream side: the stream that captures
 * the domain events, and the durable pull consumer every ingest replica
 * shares.
 *
 * ingest_consumer_open():
 *   - the stream (ANALYTICS_INGEST_STREAM, default ANALYTICS_FIREHOSE) is
 *     created when missing, or updated when its subjects or limits differ
 *     from the configuration (file storage, limits retention, discard old,
 *     max age / bytes / messages, duplicate window, replicas). The stream is
 *     ingest's own: its configuration is authoritative;
 *   - the durable pull consumer (ANALYTICS_INGEST_CONSUMER, default
 *     "ingest") is created when missing (deliver all, explicit acks, ack
 *     wait, max ack pending, unlimited redeliveries), else updated to the
 *     configured ack wait and max ack pending. Created on a stream that
 *     holds messages, its description records the last sequence: see
 *     ingest_consumer_maybe_stored_through();
 *   - a pull subscription is bound to it. Replicas bound to the same
 *     consumer get disjoint messages; a message not acked within the ack
 *     wait goes to whoever fetches next.
 * Acks are explicit, one per message: AckAll would let one replica's ack
 * cover another replica's messages still in flight.
 *
 * Thread-safety: fetch from one thread; ack/progress/nak and info from any.
 */
#ifndef INGEST_CONSUMER_H
#define INGEST_CONSUMER_H

#include "common/status.h"

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct ingest_consumer_config {
    const char *stream;
    const char *subjects; /* comma-separated */
    const char *consumer;
    int64_t max_age_ms; /* 0: unlimited */
    int64_t max_bytes;  /* 0: unlimited */
    int64_t max_msgs;   /* 0: unlimited */
    int64_t duplicate_window_ms;
    int replicas;
    int64_t ack_wait_ms;
    int64_t max_ack_pending;
} ingest_consumer_config;

typedef struct ingest_consumer ingest_consumer;

/* nc is borrowed and must outlive the consumer. The config's strings are
 * copied. AN_UNAVAILABLE when JetStream does not answer,
 * AN_FAILED_PRECONDITION when the server refuses the configuration. */
an_status ingest_consumer_open(natsConnection *nc, const ingest_consumer_config *cfg,
                               ingest_consumer **out, an_error *err);

/* Unsubscribe locally (the durable consumer stays on the server) and free. */
void ingest_consumer_close(ingest_consumer *c);

/* Up to max messages and about max_bytes of them (0: no byte limit),
 * waiting at most timeout_ms for the first. With more_requests, pull
 * requests are opened so that up to 2 x max messages are on their way (they
 * keep coming after the call returns; the next call takes them); without,
 * only messages already received are taken (timeout_ms 0: no wait). AN_OK
 * with list->Count >= 0; the caller destroys the list (natsMsgList_Destroy).
 * Other errors: AN_UNAVAILABLE. */
an_status ingest_consumer_fetch(ingest_consumer *c, int max, int64_t max_bytes, int64_t timeout_ms,
                                bool more_requests, natsMsgList *list, an_error *err);

/* Re-create the stream/consumer and the subscription (after a server lost
 * them, or errors that persist). */
an_status ingest_consumer_reopen(ingest_consumer *c, an_error *err);

/* The consumer's state on the server: messages not yet delivered to any
 * replica (lag) and messages delivered but not acked. Also reads again the
 * mark of ingest_consumer_maybe_stored_through() (ingest calls this every
 * 2 s), in case another replica created the consumer again. */
an_status ingest_consumer_info(ingest_consumer *c, uint64_t *num_pending, int64_t *num_ack_pending,
                               an_error *err);

/* Stream sequence and delivery count from a message's JetStream ack
 * subject, without allocating (nats.c's natsMsg_GetMetaData copies every
 * token): "$JS.ACK.<stream>.<consumer>.<delivered>.<stream seq>.<consumer
 * seq>.<time>.<pending>", or the form with domain and account hash in
 * front (12 tokens or more). False when reply has neither form. */
bool ingest_consumer_reply_meta(const char *reply, uint64_t *stream_seq, uint64_t *delivered);

/* Stream sequences up to this one (0: none) may be stored already even on
 * their first delivery: the consumer was created on a stream that held
 * them (deleted and created again, or renamed), so an earlier consumer may
 * have delivered them; or NATS reconnected to another server process, and
 * a restarted nats-server may have lost the consumer's latest state. All
 * (UINT64_MAX) while that is being found out, and while the consumer that
 * went away under this replica has not been read again (another replica
 * may have created it with a mark this one does not know yet). Ingest
 * looks them up like redeliveries. Call it from the thread that fetches. */
uint64_t ingest_consumer_maybe_stored_through(ingest_consumer *c);

/* What ingest tells JetStream about a message. */
typedef enum {
    INGEST_REPLY_ACK,      /* "+ACK" */
    INGEST_REPLY_PROGRESS, /* "+WPI": work in progress, restart the ack wait */
    INGEST_REPLY_NAK,      /* "-NAK": redeliver now */
    INGEST_REPLY_KINDS
} ingest_reply;

/* Send kind for a message given its ack subject. Fire and forget: false
 * only when nats.c refused it (the connection closed, or down with its
 * reconnect buffer full); the message then comes back after the ack wait. */
bool ingest_consumer_reply(ingest_consumer *c, const char *reply, ingest_reply kind);
/* Skip in-progress notes while this is false (NATS down): queued, they
 * would fill nats.c's reconnect buffer ahead of the acks. */
bool ingest_consumer_connected(ingest_consumer *c);

#endif
