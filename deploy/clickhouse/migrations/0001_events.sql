-- 0001_events: the two databases and the event tables of both tiers.
--
-- Conventions for every migration (see deploy/clickhouse/migrate.sh):
--   * one statement per section, ended by `;` at the end of a line;
--   * every statement idempotent (IF NOT EXISTS), because a run that died
--     half-way re-runs the whole file; where ClickHouse 18.16 has no
--     IF NOT EXISTS (ALTER ... ADD COLUMN), put `-- @ignore-error 44` on a
--     line of that statement's section;
--   * SQL that runs on ClickHouse 18.16 and on a current one: no DateTime64,
--     no JSON type, no TTL, no LowCardinality, no CODEC, new MergeTree syntax;
--   * never edit an applied file: migrate.sh refuses to run when a checksum changed.

CREATE DATABASE IF NOT EXISTS analytics;

CREATE DATABASE IF NOT EXISTS analytics_audit;

-- Hot tier: one row per domain event, PII-free, append-only.
--
-- Exactly-once effect. JetStream redelivers a message whose ack was lost
-- (crash after the insert, before the ack), so the same event can be written
-- twice. Three layers keep it from being counted twice:
--   1. ingest checks, for redelivered messages only (delivery count > 1),
--      which of them are already stored, with a primary-key lookup on
--      (tenant_id, event_name, occurred_at, event_id) - all four come from
--      the envelope, so a redelivery has the same key - and skips those;
--   2. ReplacingMergeTree: rows with equal sorting key in one partition
--      collapse into one at merge time. The key and the partition
--      (toYYYYMM(occurred_at)) use only fields of the envelope, never
--      ingested_at, so copies of one event always meet. This is the backstop
--      for the race layer 1 cannot see (two replicas inserting the same
--      redelivered event at once);
--   3. a query that must be exact before merges ran reads `FROM analytics.events
--      FINAL` or counts uniqExact(event_id) instead of count().
-- ClickHouse 18.16 has no insert-block deduplication for non-replicated
-- tables (and no insert_deduplication_token), and a redelivered batch is not
-- byte-identical anyway, so block dedup is not relied on.
-- The collapse only ever removes identical copies of one event: events stay
-- append-only (no UPDATE, no DELETE).
CREATE TABLE IF NOT EXISTS analytics.events
(
    tenant_id      String COMMENT 'tenantId of the envelope; empty for platform-level events',
    event_id       String COMMENT 'id of the envelope; identity of the event (dedup key)',
    event_name     String COMMENT 'type of the envelope, e.g. course.enrolled',
    occurred_at    DateTime COMMENT 'occurredAt, UTC, whole seconds',
    occurred_ms    UInt16 COMMENT 'millisecond part of occurredAt, 0..999',
    ingested_at    DateTime DEFAULT now() COMMENT 'when ingest wrote the row (differs between copies)',
    actor_type     String COMMENT 'actor.type, e.g. user, service',
    actor_id       String COMMENT 'HMAC-SHA-256 of actor.id (hex); never the raw id',
    actor_key_id   String COMMENT 'id of the HMAC key that produced actor_id (key rotation)',
    correlation_id String COMMENT 'correlationId of the envelope',
    properties     String COMMENT 'data of the envelope as PII-free JSON',
    prop_keys      Array(String) COMMENT 'dotted paths of the leaves of properties, e.g. course.id',
    prop_values    Array(String) COMMENT 'the leaf values as text, same order as prop_keys'
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, event_name, occurred_at, event_id);

-- Audit tier: the full original envelope (with PII), readable only by the
-- analytics_audit ClickHouse user. Same dedup design as analytics.events:
-- key and partition from the envelope only, so redelivered copies collapse.
CREATE TABLE IF NOT EXISTS analytics_audit.events
(
    tenant_id   String COMMENT 'tenantId of the envelope; empty for platform-level events',
    event_id    String COMMENT 'id of the envelope',
    event_name  String COMMENT 'type of the envelope',
    subject     String COMMENT 'NATS subject the event arrived on',
    occurred_at DateTime COMMENT 'occurredAt, UTC, whole seconds',
    occurred_ms UInt16 COMMENT 'millisecond part of occurredAt, 0..999',
    received_at DateTime COMMENT 'when ingest received the message, UTC',
    stream_seq  UInt64 COMMENT 'JetStream stream sequence of the message, 0 when unknown',
    payload     String COMMENT 'the envelope JSON exactly as received (full PII)'
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (tenant_id, occurred_at, event_id);

-- Messages ingest could not turn into an event (bad JSON, missing fields,
-- too large, ...). Raw bytes kept as received; may hold PII, hence the audit
-- tier. A redelivered bad message can appear twice: stream_seq tells copies apart.
CREATE TABLE IF NOT EXISTS analytics_audit.dead_letters
(
    received_at DateTime COMMENT 'when ingest received the message, UTC',
    received_ms UInt16 COMMENT 'millisecond part of received_at, 0..999',
    subject     String COMMENT 'NATS subject of the message',
    stream_seq  UInt64 COMMENT 'JetStream stream sequence, 0 when unknown',
    reason      String COMMENT 'short machine-readable code: invalid_json, missing_field, too_large, ...',
    detail      String COMMENT 'human-readable error detail',
    tenant_id   String COMMENT 'tenantId when it could be read, else empty',
    event_id    String COMMENT 'id when it could be read, else empty',
    headers     String COMMENT 'NATS headers as a JSON object, {} when none',
    raw         String COMMENT 'the message body, bytes as received'
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(received_at)
ORDER BY (received_at, subject, stream_seq);
