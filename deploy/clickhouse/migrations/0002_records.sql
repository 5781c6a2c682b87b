-- 0002_records: the aggregates' own records.
--
-- Every record table is ReplacingMergeTree(version) with a `deleted` flag:
--   * a change is an INSERT of the whole record with a higher version
--     (writers use max(previous version + 1, now in ms));
--   * a delete is an INSERT of the record with deleted = 1 (a tombstone);
--   * readers use FINAL and filter deleted in WHERE, never in PREWHERE:
--       SELECT ... FROM analytics.dashboards FINAL
--       WHERE tenant_id = '...' AND id = '...' AND deleted = 0
--     (PREWHERE runs before FINAL picks the latest version, so a PREWHERE on
--     deleted would resurrect the previous version of a deleted record).
-- The sorting key is the record's identity and always starts with tenant_id.
-- Free-form parts of a record live in a JSON `spec` (or named JSON) String.
-- Timestamps are DateTime (UTC, seconds); ids are ULIDs.
-- See 0001_events.sql for the conventions every migration follows.

CREATE TABLE IF NOT EXISTS analytics.metric_definitions
(
    tenant_id   String COMMENT 'owner tenant; empty for platform metrics',
    id          String COMMENT 'metric id (ULID)',
    name        String COMMENT 'unique per tenant among live records',
    description String,
    spec        String COMMENT 'JSON: SQL template, dimensions, granularities, schedule, ...',
    created_by  String COMMENT 'sub of the creator',
    created_at  DateTime,
    updated_at  DateTime,
    version     UInt64 COMMENT 'the row with the highest version per key wins',
    deleted     UInt8 DEFAULT 0 COMMENT '1 = tombstone'
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, id);

-- Materialised metric values: one row per tenant/metric/granularity/bucket/
-- dimensions; recomputing a bucket inserts the same key with a higher
-- version, so a re-run of a schedule tick is idempotent.
CREATE TABLE IF NOT EXISTS analytics.metric_values
(
    tenant_id   String COMMENT 'owner tenant; empty for platform metrics',
    metric_id   String,
    granularity String COMMENT 'fifteen_minutes, hour, day, week, month',
    bucket      DateTime COMMENT 'start of the bucket, UTC',
    dimensions  String COMMENT 'canonical key of the dimension values: JSON object, keys sorted, {} for none',
    value       Float64,
    computed_at DateTime,
    version     UInt64,
    deleted     UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant_id, metric_id, granularity, bucket, dimensions);

CREATE TABLE IF NOT EXISTS analytics.dashboards
(
    tenant_id   String,
    id          String,
    name        String,
    description String,
    owner_id    String COMMENT 'sub of the owner',
    widgets     String COMMENT 'JSON array of widgets (metric binding, type, layout)',
    acl         String COMMENT 'JSON access control: who may view and edit',
    created_at  DateTime,
    updated_at  DateTime,
    version     UInt64,
    deleted     UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, id);

CREATE TABLE IF NOT EXISTS analytics.export_jobs
(
    tenant_id    String,
    id           String,
    requested_by String COMMENT 'sub of the requester',
    format       String COMMENT 'csv, xlsx, json',
    status       String COMMENT 'queued, running, completed, failed, cancelled',
    spec         String COMMENT 'JSON: what to export (query template or metric, parameters)',
    attempts     UInt32,
    row_count    UInt64,
    byte_count   UInt64,
    file_path    String COMMENT 'where the file is stored; the download URL is derived from it',
    error_code   String,
    error        String,
    created_at   DateTime,
    updated_at   DateTime,
    started_at   DateTime COMMENT '0 (1970-01-01) until started',
    finished_at  DateTime COMMENT '0 (1970-01-01) until finished',
    expires_at   DateTime COMMENT 'when the file and its URL expire',
    version      UInt64,
    deleted      UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, id);

CREATE TABLE IF NOT EXISTS analytics.report_definitions
(
    tenant_id   String,
    id          String,
    name        String,
    owner_id    String,
    schedule    String COMMENT 'cron expression',
    timezone    String COMMENT 'IANA zone the schedule runs in, e.g. UTC',
    format      String COMMENT 'csv, xlsx, pdf',
    enabled     UInt8 DEFAULT 1,
    spec        String COMMENT 'JSON: content (metrics, templates, parameters) and delivery (recipients)',
    created_at  DateTime,
    updated_at  DateTime,
    version     UInt64,
    deleted     UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, id);

-- One row per (report, schedule tick); the service derives the id from the
-- report id and the tick, so a tick fired twice is still one run.
CREATE TABLE IF NOT EXISTS analytics.report_runs
(
    tenant_id     String,
    report_id     String,
    id            String,
    scheduled_for DateTime COMMENT 'the schedule tick this run is for, UTC',
    status        String COMMENT 'pending, rendering, sent, failed',
    format        String,
    file_path     String,
    byte_count    UInt64,
    error         String,
    started_at    DateTime,
    finished_at   DateTime,
    created_at    DateTime,
    updated_at    DateTime,
    version       UInt64,
    deleted       UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, report_id, id);

CREATE TABLE IF NOT EXISTS analytics.cohorts
(
    tenant_id          String,
    id                 String,
    name               String,
    description        String,
    spec               String COMMENT 'JSON definition, e.g. enrolled in course X during Q1',
    created_by         String,
    last_evaluation_id String COMMENT 'evaluation whose members are current, empty before the first',
    last_evaluated_at  DateTime,
    member_count       UInt64,
    created_at         DateTime,
    updated_at         DateTime,
    version            UInt64,
    deleted            UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, id);

-- Members found by one evaluation of a cohort (actor ids are the hot tier's
-- keyed hashes). An evaluation writes its own evaluation_id; the cohort
-- record says which evaluation is current. A retried insert collapses.
CREATE TABLE IF NOT EXISTS analytics.cohort_members
(
    tenant_id     String,
    cohort_id     String,
    evaluation_id String,
    actor_id      String COMMENT 'keyed hash, as analytics.events.actor_id',
    evaluated_at  DateTime COMMENT 'time of the evaluation (same for all its rows)',
    version       UInt64,
    deleted       UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(evaluated_at)
ORDER BY (tenant_id, cohort_id, evaluation_id, actor_id);

CREATE TABLE IF NOT EXISTS analytics.alert_rules
(
    tenant_id   String,
    id          String,
    name        String,
    metric_id   String,
    enabled     UInt8 DEFAULT 1,
    spec        String COMMENT 'JSON detector: kind (threshold, zscore, ...), parameters, notification',
    created_by  String,
    created_at  DateTime,
    updated_at  DateTime,
    version     UInt64,
    deleted     UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, id);

-- One row per (rule, evaluated bucket); the id is derived from both so a
-- re-evaluation updates the same alert instead of raising a second one.
CREATE TABLE IF NOT EXISTS analytics.alert_events
(
    tenant_id    String,
    rule_id      String,
    id           String,
    metric_id    String,
    state        String COMMENT 'triggered, acknowledged, resolved',
    severity     String COMMENT 'info, warning, critical',
    bucket       DateTime COMMENT 'the metric bucket that triggered it',
    value        Float64 COMMENT 'observed value',
    expected     Float64 COMMENT 'value the detector expected',
    details      String COMMENT 'JSON: detector output (score, bounds, dimensions)',
    triggered_at DateTime,
    resolved_at  DateTime COMMENT '0 (1970-01-01) while not resolved',
    created_at   DateTime,
    updated_at   DateTime,
    version      UInt64,
    deleted      UInt8 DEFAULT 0
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant_id, rule_id, id);
