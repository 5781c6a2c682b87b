/*
 * store.h - writing a batch to ClickHouse so that each event is stored once.
 *
 * ingest_store_write() makes one attempt at every tier of the batch not yet
 * written (hot, audit, dead letters; one INSERT each on a kept-alive
 * connection). A tier is looked up before its insert when some of its rows
 * may be stored already:
 *   - messages JetStream redelivers (delivery count > 1): a previous holder
 *     may have inserted them and died before its ack reached the server;
 *   - every message of a tier whose previous attempt failed, because a
 *     failed insert's outcome can be unknown (connection lost after the
 *     body was sent, a materialized view failing after the table took the
 *     rows).
 * The look-up reads (tenant_id, event_id) pairs by the tables' primary key
 * (dead letters: subject and stream_seq) and the insert then carries only
 * the rows not found. A look-up is only true once the INSERTs that may hold
 * those rows have finished, and ClickHouse finishes an INSERT whose client
 * died: every INSERT of ingest has the query_id
 * "ingest-<instance>-<batch>-<tier>-<attempt>", and before a look-up the
 * store waits (up to the insert timeout) until system.processes shows no
 * ingest INSERT into that table that started before the batch's first
 * message was fetched, nor an earlier attempt of the same batch. See
 * docs/ingest.md for the whole exactly-once design.
 *
 * Streaming (ingest_store_stream_*): the hot and audit rows of events
 * delivered for the first time go to two INSERTs opened with the batch's
 * first message and fed while the batch fills, so a batch of any size is
 * one part per table in ClickHouse and costs this process only its ack
 * subjects. Those rows are not kept: when a streaming INSERT fails, its
 * messages are handed back to JetStream (NAK), and their redelivery goes
 * the looked-up way above. Streaming INSERTs have the query_id
 * "ingest-<instance>-<batch>-<tier>-0".
 *
 * ingest_store_write and ingest_store_stream_close run on the writer
 * thread; ingest_store_stream_open and _send on the thread filling the
 * batch (each batch is used by one thread at a time).
 */
#ifndef INGEST_STORE_H
#define INGEST_STORE_H

#include "common/ch.h"
#include "common/status.h"
#include "ingest/batch.h"

#include <stdbool.h>

typedef struct ingest_store ingest_store;

typedef struct ingest_store_options {
    const char *url, *user, *password;
    const char *instance;     /* this replica's id, in the query_id of its INSERTs */
    int insert_timeout_ms;    /* one INSERT, client side */
    bool crash_between_tiers; /* testing only: _exit(70) after the first tier is written */
} ingest_store_options;

an_status ingest_store_new(const ingest_store_options *o, ingest_store **out, an_error *err);
void ingest_store_free(ingest_store *st);

/* From now on every request and wait of the store ends by deadline_ms
 * (monotonic; ingest's drain timeout on SIGTERM): what ClickHouse has not
 * confirmed by then fails, a streaming insert is broken off. Any thread. */
void ingest_store_set_deadline(ingest_store *st, int64_t deadline_ms);

/* Per attempt, for metrics and logs. */
typedef struct ingest_write_report {
    size_t rows[INGEST_TIERS];    /* rows inserted by this attempt */
    size_t skipped[INGEST_TIERS]; /* rows found stored already and left out */
    size_t looked_up;             /* messages looked up */
    int64_t ms[INGEST_TIERS];     /* time spent on each tier (look-up and insert) */
    ingest_tier failed_tier;      /* on failure */
} ingest_write_report;

/* One attempt; AN_OK when every tier of b is written (b->written[] all
 * true). On failure b keeps which tiers are done and which are uncertain,
 * for the next attempt; err says what failed. */
an_status ingest_store_write(ingest_store *st, ingest_batch *b, ingest_write_report *rep,
                             an_error *err);

/* Batches that may stream at once (one filling, one being written): batch
 * slot s (b->slot) has the store's stream connections 2s and 2s + 1. */
#define INGEST_STORE_STREAM_SLOTS 2

/* Open the streaming INSERTs of b (hot and audit) on its slot's
 * connections; on success ingest_batch_streaming(b). Fails, with nothing
 * sent, when ClickHouse cannot be reached: b then fills the buffered way. */
an_status ingest_store_stream_open(ingest_store *st, ingest_batch *b, an_error *err);

/* Hand the live rows of b over to its INSERTs once a tier holds at least
 * min_bytes of them (0: whatever there is). Waits at most timeout_ms for
 * an INSERT still sending the previous hand-over: AN_RESOURCE_EXHAUSTED
 * then (nothing lost, call again). Any other error: an INSERT failed and
 * streaming is given up (ingest_store_stream_give_up). */
an_status ingest_store_stream_send(ingest_batch *b, size_t min_bytes, int timeout_ms,
                                   an_error *err);

/* Stop streaming b: its live rows are dropped, b->stream_failed is set.
 * Later messages of b go the buffered way; the streamed ones will be NAKed
 * and the INSERTs are broken off at close. */
void ingest_store_stream_give_up(ingest_batch *b);

/* End b's streaming INSERTs and wait for ClickHouse to confirm them (audit
 * first, then hot). On failure b->stream_failed is set. No-op without. */
an_status ingest_store_stream_close(ingest_store *st, ingest_batch *b, an_error *err);

#endif
