/*
 * metrics.h - ingest's series in the service's Prometheus registry (/metrics).
 *
 *   analytics_ingest_messages_total{delivery="first|redelivery"}  messages fetched
 *   analytics_ingest_lookups_total                     messages that came needing a look-up
 *                                                      before insert (redelivered, maybe
 *                                                      stored: see consumer.h); not the
 *                                                      rows looked up again after a failed
 *                                                      write attempt
 *   analytics_ingest_events_total                      valid events taken in
 *   analytics_ingest_rejects_total{reason}             messages dead-lettered, by reason
 *   analytics_ingest_rows_written_total{tier}          rows inserted (hot, audit, dead_letter)
 *   analytics_ingest_duplicates_skipped_total{tier}    rows found stored already (redeliveries)
 *   analytics_ingest_pii_removed_total                 PII keys removed or hashed
 *   analytics_ingest_pii_masked_total                  PII-looking values masked
 *   analytics_ingest_insert_failures_total             failed write attempts (ClickHouse)
 *   analytics_ingest_acks_total                        messages acked
 *   analytics_ingest_unsent_replies_total{kind}        acks, in-progress, NAKs nats.c refused
 *                                                      (kind ack, in_progress, nak)
 *   analytics_ingest_batch_messages                    histogram: messages per batch
 *   analytics_ingest_batch_write_seconds               histogram: write of a batch, all
 *                                                      tiers, retries included
 *   analytics_ingest_batch_latency_seconds             histogram: first message of a
 *                                                      batch fetched -> batch acked
 *   analytics_ingest_consumer_pending_messages         consumer lag: stream messages not
 *                                                      yet delivered (num_pending)
 *   analytics_ingest_consumer_ack_pending_messages     delivered, not yet acked (all replicas)
 *   analytics_ingest_held_messages                     messages this replica holds unacked
 *   analytics_ingest_clickhouse_up                     1 when the last write attempt worked
 */
#ifndef INGEST_METRICS_H
#define INGEST_METRICS_H

#include "common/prom.h"
#include "ingest/batch.h"
#include "ingest/consumer.h"
#include "ingest/envelope.h"

typedef struct ingest_metrics {
    an_prom_counter *messages_first, *messages_redelivered;
    an_prom_counter *lookups;
    an_prom_counter *events;
    an_prom_counter *rejects[INGEST_REASON_COUNT];
    an_prom_counter *rows[INGEST_TIERS];
    an_prom_counter *skipped[INGEST_TIERS];
    an_prom_counter *pii_removed, *pii_masked;
    an_prom_counter *insert_failures;
    an_prom_counter *acks;
    an_prom_counter *unsent[INGEST_REPLY_KINDS];
    an_prom_histogram *batch_messages, *batch_write_seconds, *batch_latency_seconds;
    an_prom_gauge *pending, *ack_pending, *held, *clickhouse_up;
} ingest_metrics;

/* Register every series in reg (the pointers live as long as reg). */
an_status ingest_metrics_init(ingest_metrics *m, an_prom_registry *reg, an_error *err);

#endif
