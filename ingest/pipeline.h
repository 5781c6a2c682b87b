/*
 * pipeline.h - the threads that move messages from JetStream to ClickHouse.
 *
 *   fetcher   pulls up to `fetch` messages at a time, validates and
 *             transforms each (envelope.h) into the rows of the current
 *             batch (batch.h), and hands the batch over when it holds
 *             batch_rows messages, batch_bytes bytes or is batch_age old
 *   writer    writes each batch to every tier (store.h), retrying with
 *             exponential backoff while ClickHouse fails, then acks every
 *             message of the batch - never before both tiers confirmed
 *   monitor   every second: keeps the held messages from being redelivered
 *             ("+WPI" once a third of the ack wait passed) and reads the
 *             consumer's lag for /metrics
 *
 * With stream_inserts, the fetcher opens a batch's two INSERTs (hot,
 * audit) with its first message and hands them the rows of new events every
 * STREAM_CHUNK bytes; the writer then only ends them, writes what the batch
 * holds in memory (redelivered messages, dead letters) and acks. A batch is
 * then one part per table whatever its size, and memory holds only ack
 * subjects for those events (store.h).
 *
 * Memory is bounded by a pool of two batches (one filling, one being
 * written), each of at most batch_rows messages and batch_bytes bytes: when
 * ClickHouse is down the fetcher stops fetching once both are full, and the
 * rest stays in JetStream.
 */
#ifndef INGEST_PIPELINE_H
#define INGEST_PIPELINE_H

#include "common/status.h"
#include "ingest/consumer.h"
#include "ingest/envelope.h"
#include "ingest/metrics.h"
#include "ingest/pii.h"
#include "ingest/store.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct ingest_pipeline_options {
    ingest_consumer *consumer; /* borrowed */
    ingest_store_options store;
    ingest_limits limits;
    const ingest_pii_rules *rules; /* borrowed */
    const char *hmac_key;          /* copied */
    size_t hmac_key_len;
    const char *hmac_key_id; /* copied */
    int fetch;               /* messages per fetch */
    size_t batch_rows;
    int64_t batch_age_ms;
    size_t batch_bytes;
    int64_t ack_wait_ms;
    int64_t retry_max_ms;    /* cap of the backoff between write attempts */
    int64_t stop_timeout_ms; /* how long stop may spend flushing */
    bool stream_inserts;     /* feed new events to INSERTs open while the batch fills */
    bool crash_after_insert; /* testing only: _exit(70) after a write, before the acks */
    ingest_metrics *metrics; /* borrowed */
} ingest_pipeline_options;

typedef struct ingest_pipeline ingest_pipeline;

/* Start the threads. */
an_status ingest_pipeline_start(const ingest_pipeline_options *o, ingest_pipeline **out,
                                an_error *err);

/* Stop fetching, write and ack what is held (for at most stop_timeout_ms;
 * what cannot be written by then is handed back with a NAK), join, free. */
void ingest_pipeline_stop(ingest_pipeline *p);

/* Usable: fetching works (the last fetch succeeded within 10 s) and writing
 * has not been failing for more than 30 s. */
an_status ingest_pipeline_ready(ingest_pipeline *p, an_error *err);

#endif
