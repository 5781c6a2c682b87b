#include "ingest/metrics.h"

static const double batch_buckets[] = {1,    10,    100,   500,   1000,  2000,
                                       5000, 10000, 20000, 50000, 100000};
static const double second_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                        1,     2.5,  5,     10,   30,  60,   300};

an_status ingest_metrics_init(ingest_metrics *m, an_prom_registry *r, an_error *err)
{
    an_status s = AN_OK;
#define C(field, name, help, labels)                                                               \
    if (s == AN_OK)                                                                                \
        s = an_prom_counter_get(r, name, help, labels, &m->field, err);
#define G(field, name, help)                                                                       \
    if (s == AN_OK)                                                                                \
        s = an_prom_gauge_get(r, name, help, NULL, &m->field, err);
#define H(field, name, help, b)                                                                    \
    if (s == AN_OK)                                                                                \
        s = an_prom_histogram_get(r, name, help, b, sizeof(b) / sizeof(b[0]), NULL, &m->field, err);
    static const char msgs_help[] = "JetStream messages fetched from the firehose.";
    C(messages_first, "analytics_ingest_messages_total", msgs_help,
      AN_PROM_LABELS("delivery", "first"));
    C(messages_redelivered, "analytics_ingest_messages_total", msgs_help,
      AN_PROM_LABELS("delivery", "redelivery"));
    C(lookups, "analytics_ingest_lookups_total",
      "Messages that came needing a look-up in ClickHouse before their insert: redelivered, or "
      "delivered first after a consumer or nats-server lost track of what it sent (a batch "
      "whose write attempt failed looks up all its rows again, not counted here).",
      NULL);
    C(events, "analytics_ingest_events_total", "Valid events taken in.", NULL);
    for (int i = 0; i < INGEST_REASON_COUNT; i++) {
        C(rejects[i], "analytics_ingest_rejects_total",
          "Messages written to the dead-letter table, by reason.",
          AN_PROM_LABELS("reason", ingest_reason_name((ingest_reason)i)));
    }
    for (int t = 0; t < INGEST_TIERS; t++) {
        C(rows[t], "analytics_ingest_rows_written_total", "Rows inserted into ClickHouse, by tier.",
          AN_PROM_LABELS("tier", ingest_tier_name((ingest_tier)t)));
        C(skipped[t], "analytics_ingest_duplicates_skipped_total",
          "Rows of redelivered messages found stored already and not inserted again.",
          AN_PROM_LABELS("tier", ingest_tier_name((ingest_tier)t)));
    }
    C(pii_removed, "analytics_ingest_pii_removed_total",
      "Properties under a PII key removed or hashed.", NULL);
    C(pii_masked, "analytics_ingest_pii_masked_total",
      "E-mail, phone and IP values masked in properties.", NULL);
    C(insert_failures, "analytics_ingest_insert_failures_total",
      "Failed attempts to write a batch (the batch is retried).", NULL);
    C(acks, "analytics_ingest_acks_total", "Messages acked after their rows were stored.", NULL);
    static const char *const kinds[INGEST_REPLY_KINDS] = {"ack", "in_progress", "nak"};
    for (int k = 0; k < INGEST_REPLY_KINDS; k++) {
        C(unsent[k], "analytics_ingest_unsent_replies_total",
          "Acks, in-progress and NAKs that could not be sent (NATS down, its reconnect buffer "
          "full); those messages come back after the ack wait and are looked up.",
          AN_PROM_LABELS("kind", kinds[k]));
    }
    H(batch_messages, "analytics_ingest_batch_messages", "Messages per written batch.",
      batch_buckets);
    H(batch_write_seconds, "analytics_ingest_batch_write_seconds",
      "Time to write a batch to every tier, retries included.", second_buckets);
    H(batch_latency_seconds, "analytics_ingest_batch_latency_seconds",
      "From the first message of a batch fetched to the batch acked.", second_buckets);
    G(pending, "analytics_ingest_consumer_pending_messages",
      "Consumer lag: stream messages not yet delivered to any replica (num_pending).");
    G(ack_pending, "analytics_ingest_consumer_ack_pending_messages",
      "Messages delivered to the replicas and not acked yet (num_ack_pending).");
    G(held, "analytics_ingest_held_messages", "Messages this replica holds unacked.");
    G(clickhouse_up, "analytics_ingest_clickhouse_up",
      "1 when the last write to ClickHouse worked, 0 while it fails.");
#undef C
#undef G
#undef H
    return s;
}
