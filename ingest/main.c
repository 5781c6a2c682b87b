/*
 * ingest - the firehose of domain events into ClickHouse: JetStream in, a
 * PII-free hot tier and a full audit tier out, dead letters for what cannot
 * be stored, each event counted once. See docs/ingest.md.
 *
 * Wiring only: the configuration table, the service definition, and
 * start/stop of the consumer (consumer.c) and the pipeline (pipeline.c).
 */
#include "common/service.h"
#include "ingest/consumer.h"
#include "ingest/metrics.h"
#include "ingest/pii.h"
#include "ingest/pipeline.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

typedef struct ingest_ctx {
    /* configuration (the table below) */
    char *subjects, *stream, *consumer_name;
    int64_t stream_max_age_ms, stream_max_bytes;
    long long stream_max_msgs, stream_replicas;
    int64_t duplicate_window_ms, ack_wait_ms;
    long long max_ack_pending, fetch, batch_rows;
    int64_t batch_age_ms, batch_bytes, max_event_bytes;
    long long max_depth, max_properties;
    int64_t max_past_ms, max_future_ms, retry_max_ms, insert_timeout_ms;
    char *hmac_key, *hmac_key_id, *pii_keys, *pii_action, *test_crash;
    bool stream_inserts;
    /* running state */
    ingest_metrics metrics;
    ingest_pii_rules *rules;
    ingest_consumer *consumer;
    ingest_pipeline *pipeline;
} ingest_ctx;

#define V(field) offsetof(ingest_ctx, field)
static const an_config_var ingest_vars[] = {
    {"ANALYTICS_INGEST_SUBJECTS", AN_CFG_STRING, "events.>", 0, 0, AN_CFG_REQUIRED, V(subjects),
     "firehose subjects captured by the stream, comma-separated"},
    {"ANALYTICS_INGEST_STREAM", AN_CFG_STRING, "ANALYTICS_FIREHOSE", 0, 0, AN_CFG_REQUIRED,
     V(stream), "JetStream stream of the firehose (created or updated at start)"},
    {"ANALYTICS_INGEST_CONSUMER", AN_CFG_STRING, "ingest", 0, 0, AN_CFG_REQUIRED, V(consumer_name),
     "durable pull consumer shared by every replica"},
    {"ANALYTICS_INGEST_STREAM_MAX_AGE", AN_CFG_DURATION, "168h", 60000, 87600LL * 3600000, 0,
     V(stream_max_age_ms), "stream retention: messages older than this are dropped"},
    {"ANALYTICS_INGEST_STREAM_MAX_BYTES", AN_CFG_SIZE, "0", 0, 0, 0, V(stream_max_bytes),
     "stream size limit, oldest dropped first; 0: none"},
    {"ANALYTICS_INGEST_STREAM_MAX_MSGS", AN_CFG_INT, "0", 0, 1000000000000LL, 0, V(stream_max_msgs),
     "stream message limit, oldest dropped first; 0: none"},
    {"ANALYTICS_INGEST_STREAM_REPLICAS", AN_CFG_INT, "1", 1, 5, 0, V(stream_replicas),
     "stream replicas (clustered JetStream)"},
    {"ANALYTICS_INGEST_DUPLICATE_WINDOW", AN_CFG_DURATION, "2m", 1000, 86400000, 0,
     V(duplicate_window_ms), "window in which a repeated Nats-Msg-Id is not stored again"},
    {"ANALYTICS_INGEST_ACK_WAIT", AN_CFG_DURATION, "60s", 1000, 3600000, 0, V(ack_wait_ms),
     "unacked messages are redelivered after this (held ones are kept alive)"},
    {"ANALYTICS_INGEST_MAX_ACK_PENDING", AN_CFG_INT, "500000", 1, 10000000, 0, V(max_ack_pending),
     "unacked messages over all replicas before delivery pauses"},
    {"ANALYTICS_INGEST_FETCH", AN_CFG_INT, "2000", 1, 100000, 0, V(fetch),
     "messages per JetStream fetch"},
    {"ANALYTICS_INGEST_BATCH_ROWS", AN_CFG_INT, "200000", 1, 1000000, 0, V(batch_rows),
     "flush a batch at this many messages"},
    {"ANALYTICS_INGEST_BATCH_AGE", AN_CFG_DURATION, "1s", 1, 600000, 0, V(batch_age_ms),
     "flush a batch when its first message is this old"},
    {"ANALYTICS_INGEST_BATCH_BYTES", AN_CFG_SIZE, "40MiB", 65536, 1LL << 31, 0, V(batch_bytes),
     "flush a batch at this many bytes held in memory (rows not streamed, ack subjects)"},
    {"ANALYTICS_INGEST_STREAM_INSERTS", AN_CFG_BOOL, "true", 0, 0, 0, V(stream_inserts),
     "send new events to INSERTs open while the batch fills (one part per batch, any size)"},
    {"ANALYTICS_INGEST_MAX_EVENT_BYTES", AN_CFG_SIZE, "64KiB", 256, 8LL << 20, 0,
     V(max_event_bytes), "larger events are dead-lettered (too_large)"},
    {"ANALYTICS_INGEST_MAX_DEPTH", AN_CFG_INT, "10", 1, 64, 0, V(max_depth),
     "deepest nesting of data (data itself is 1; too_deep)"},
    {"ANALYTICS_INGEST_MAX_PROPERTIES", AN_CFG_INT, "500", 1, 100000, 0, V(max_properties),
     "most keys in data, at every depth (too_many_properties)"},
    {"ANALYTICS_INGEST_MAX_PAST", AN_CFG_DURATION, "8760h", 0, 1000LL * 8760 * 3600000, 0,
     V(max_past_ms), "occurredAt at most this far in the past; 0: any (bad_timestamp)"},
    {"ANALYTICS_INGEST_MAX_FUTURE", AN_CFG_DURATION, "24h", 0, 87600LL * 3600000, 0,
     V(max_future_ms), "occurredAt at most this far in the future; 0: any (bad_timestamp)"},
    {"ANALYTICS_INGEST_HMAC_KEY", AN_CFG_STRING, NULL, 0, 0, AN_CFG_REQUIRED | AN_CFG_SECRET,
     V(hmac_key), "secret of the actor id and PII hashes (HMAC-SHA-256), 16+ bytes"},
    {"ANALYTICS_INGEST_HMAC_KEY_ID", AN_CFG_STRING, "k1", 0, 0, AN_CFG_REQUIRED, V(hmac_key_id),
     "id of that key, stored with each hash (rotation)"},
    {"ANALYTICS_INGEST_PII_KEYS", AN_CFG_STRING, INGEST_PII_DEFAULT_KEYS, 0, 0, 0, V(pii_keys),
     "PII property keys at any depth: key, *suffix, key:remove, key:hash"},
    {"ANALYTICS_INGEST_PII_ACTION", AN_CFG_STRING, "remove", 0, 0, AN_CFG_REQUIRED, V(pii_action),
     "what happens to a PII key without its own action: remove or hash"},
    {"ANALYTICS_INGEST_RETRY_MAX", AN_CFG_DURATION, "5s", 100, 600000, 0, V(retry_max_ms),
     "longest pause between attempts to write a batch while ClickHouse fails"},
    {"ANALYTICS_INGEST_INSERT_TIMEOUT", AN_CFG_DURATION, "120s", 1000, 3600000, 0,
     V(insert_timeout_ms),
     "client-side limit of one INSERT (streaming: its answer after the body)"},
    {"ANALYTICS_INGEST_TEST_CRASH", AN_CFG_STRING, "", 0, 0, 0, V(test_crash),
     "testing only: after_insert or between_tiers makes ingest _exit(70) there"},
    {0},
};
#undef V

static an_status pipeline_ready(void *ud, an_error *err)
{
    ingest_ctx *c = ud;
    return c->pipeline ? ingest_pipeline_ready(c->pipeline, err)
                       : an_error_set(err, AN_UNAVAILABLE, "not started");
}

static an_status check_config(ingest_ctx *c, ingest_pii_action *act, an_error *err)
{
    if (strlen(c->hmac_key) < 16)
        return an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_INGEST_HMAC_KEY",
                              "ANALYTICS_INGEST_HMAC_KEY must be at least 16 bytes");
    if (strcmp(c->pii_action, "remove") == 0)
        *act = INGEST_PII_REMOVE;
    else if (strcmp(c->pii_action, "hash") == 0)
        *act = INGEST_PII_HASH;
    else
        return an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_INGEST_PII_ACTION",
                              "ANALYTICS_INGEST_PII_ACTION=%s: expected remove or hash",
                              c->pii_action);
    if (*c->test_crash && strcmp(c->test_crash, "after_insert") != 0 &&
        strcmp(c->test_crash, "between_tiers") != 0)
        return an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_INGEST_TEST_CRASH",
                              "ANALYTICS_INGEST_TEST_CRASH=%s: expected after_insert or "
                              "between_tiers",
                              c->test_crash);
    if (!strchr(c->stream, '.') && !strchr(c->consumer_name, '.'))
        return AN_OK;
    return an_error_set(
        err, AN_INVALID_ARGUMENT,
        "ANALYTICS_INGEST_STREAM and ANALYTICS_INGEST_CONSUMER may not contain '.'");
}

static an_status ingest_init(an_service *svc, void *ctx, an_error *err)
{
    ingest_ctx *c = ctx;
    const an_service_config *sc = an_service_get_config(svc);
    ingest_pii_action act = INGEST_PII_REMOVE;
    an_status s = check_config(c, &act, err);
    if (s == AN_OK && (!sc->clickhouse_url || !*sc->clickhouse_url))
        s = an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_CLICKHOUSE_URL",
                           "ingest needs ANALYTICS_CLICKHOUSE_URL");
    if (s == AN_OK)
        s = ingest_pii_rules_new(c->pii_keys, act, &c->rules, err);
    if (s == AN_OK)
        s = ingest_metrics_init(&c->metrics, an_service_metrics(svc), err);
    if (s != AN_OK)
        return s;

    ingest_consumer_config cc = {
        .stream = c->stream,
        .subjects = c->subjects,
        .consumer = c->consumer_name,
        .max_age_ms = c->stream_max_age_ms,
        .max_bytes = c->stream_max_bytes,
        .max_msgs = c->stream_max_msgs,
        .duplicate_window_ms = c->duplicate_window_ms,
        .replicas = (int)c->stream_replicas,
        .ack_wait_ms = c->ack_wait_ms,
        .max_ack_pending = c->max_ack_pending,
    };
    s = ingest_consumer_open(an_service_conn(svc), &cc, &c->consumer, err);
    if (s != AN_OK)
        return s;

    ingest_pipeline_options po = {
        .consumer = c->consumer,
        .store = {.url = sc->clickhouse_url,
                  .user = sc->clickhouse_user,
                  .password = sc->clickhouse_password,
                  .instance = an_service_id(svc),
                  .insert_timeout_ms = (int)c->insert_timeout_ms,
                  .crash_between_tiers = strcmp(c->test_crash, "between_tiers") == 0},
        .limits = {.max_event_bytes = (size_t)c->max_event_bytes,
                   .max_depth = (int)c->max_depth,
                   .max_properties = (int)c->max_properties,
                   .max_past_ms = c->max_past_ms,
                   .max_future_ms = c->max_future_ms},
        .rules = c->rules,
        .hmac_key = c->hmac_key,
        .hmac_key_len = strlen(c->hmac_key),
        .hmac_key_id = c->hmac_key_id,
        .fetch = (int)c->fetch,
        .batch_rows = (size_t)c->batch_rows,
        .batch_age_ms = c->batch_age_ms,
        .batch_bytes = (size_t)c->batch_bytes,
        .ack_wait_ms = c->ack_wait_ms,
        .retry_max_ms = c->retry_max_ms,
        .stop_timeout_ms = sc->drain_timeout_ms,
        .stream_inserts = c->stream_inserts,
        .crash_after_insert = strcmp(c->test_crash, "after_insert") == 0,
        .metrics = &c->metrics,
    };
    s = ingest_pipeline_start(&po, &c->pipeline, err);
    if (s == AN_OK)
        s = an_service_add_ready_check(svc, "jetstream", pipeline_ready, c);
    if (s != AN_OK)
        return s;
    if (*c->test_crash)
        an_warn("ANALYTICS_INGEST_TEST_CRASH=%s: this process will exit on purpose", c->test_crash);
    an_info("ingest ready: consuming %s from stream %s with consumer %s (batches of %lld "
            "messages or %lld ms, %zu PII keys, hash key id %s)",
            c->subjects, c->stream, c->consumer_name, c->batch_rows, (long long)c->batch_age_ms,
            ingest_pii_rules_count(c->rules), c->hmac_key_id);
    return AN_OK;
}

static void ingest_exit(an_service *svc, void *ctx)
{
    (void)svc;
    ingest_ctx *c = ctx;
    /* pipeline first: it acks through the consumer's connection */
    ingest_pipeline_stop(c->pipeline);
    c->pipeline = NULL;
    ingest_consumer_close(c->consumer);
    c->consumer = NULL;
    ingest_pii_rules_free(c->rules);
    c->rules = NULL;
}

/* analytics.ingest.status: the counters of this replica (no tenant data). */
static an_status handle_status(an_request *req, cJSON **data, an_error *err)
{
    (void)err;
    ingest_ctx *c = req->ctx;
    const ingest_metrics *m = &c->metrics;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "instance", an_service_id(req->svc));
    cJSON_AddStringToObject(d, "stream", c->stream);
    cJSON_AddStringToObject(d, "consumer", c->consumer_name);
    cJSON_AddNumberToObject(d, "messages",
                            an_prom_counter_value(m->messages_first) +
                                an_prom_counter_value(m->messages_redelivered));
    cJSON_AddNumberToObject(d, "redelivered", an_prom_counter_value(m->messages_redelivered));
    cJSON_AddNumberToObject(d, "events", an_prom_counter_value(m->events));
    cJSON *rej = cJSON_AddObjectToObject(d, "rejects");
    for (int i = 0; i < INGEST_REASON_COUNT; i++)
        cJSON_AddNumberToObject(rej, ingest_reason_name((ingest_reason)i),
                                an_prom_counter_value(m->rejects[i]));
    cJSON *rows = cJSON_AddObjectToObject(d, "rowsWritten");
    for (int t = 0; t < INGEST_TIERS; t++)
        cJSON_AddNumberToObject(rows, ingest_tier_name((ingest_tier)t),
                                an_prom_counter_value(m->rows[t]));
    cJSON_AddNumberToObject(d, "acked", an_prom_counter_value(m->acks));
    cJSON_AddNumberToObject(d, "held", an_prom_gauge_value(m->held));
    cJSON_AddNumberToObject(d, "consumerPending", an_prom_gauge_value(m->pending));
    cJSON_AddNumberToObject(d, "consumerAckPending", an_prom_gauge_value(m->ack_pending));
    *data = d;
    return AN_OK;
}

static const an_endpoint endpoints[] = {
    {"status", handle_status, AN_EP_PUBLIC, 0, "counters of this ingest replica"},
    {0},
};

static const an_service_def def = {
    .name = "ingest",
    .version = "0.1.0",
    .description = "domain events from JetStream into ClickHouse (PII-free hot tier, audit tier)",
    .config = ingest_vars,
    .ctx_size = sizeof(ingest_ctx),
    .endpoints = endpoints,
    .init = ingest_init,
    .exit = ingest_exit,
    .workers = 1,
    .deps = AN_DEP_CLICKHOUSE,
};

int main(int argc, char **argv)
{
    return an_service_main(&def, argc, argv);
}
