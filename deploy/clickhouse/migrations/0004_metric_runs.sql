-- 0004_metric_runs: the log of metric materializations.
--
-- One row per completed run of a metric's schedule tick (metrics service,
-- docs/metrics.md "Materialization"). Append-only (plain MergeTree, no
-- collapsing), so a tick that ran twice would show two rows: the tests count
-- them to prove "once per tick".
--
-- It is also the coverage record of analytics.metric_values: a query reads
-- materialized values only when the `ok` runs of the metric's current
-- computation (spec_hash: SHA-256 of the template and the materialization
-- settings) cover the whole requested range at the requested granularity and
-- dimensions:
--   SELECT window_from, window_to FROM analytics.metric_runs
--   WHERE tenant_id = 't1' AND metric_id = '...' AND spec_hash = '...'
--     AND granularity = 'day' AND dimensions = '[]' AND status = 'ok'
--     AND window_to > toDateTime(F) AND window_from < toDateTime(T)
-- Values are written before their run row, so a run row always means the
-- values of its window are in analytics.metric_values.
--
-- analytics.metric_values (0002) holds the values: tenant_id is the tenant
-- whose events a value covers (for a platform metric: one row per tenant,
-- and the all-tenant total under tenant_id ''), version the time it was
-- computed in ms (a recomputation of a bucket replaces it).
-- See 0001_events.sql for the conventions every migration follows.

CREATE TABLE IF NOT EXISTS analytics.metric_runs
(
    tenant_id   String COMMENT 'owner tenant of the metric; empty for platform metrics',
    metric_id   String,
    tick        DateTime COMMENT 'the schedule tick this run is for, UTC',
    spec_hash   String COMMENT 'SHA-256 (hex) of the template and materialization settings used',
    version     UInt64 COMMENT 'version of the metric definition used',
    granularity String COMMENT 'minute, hour, day, week, month',
    dimensions  String COMMENT 'JSON array of the dimension names, as materialized',
    window_from DateTime COMMENT 'start of the first bucket computed, UTC',
    window_to   DateTime COMMENT 'end of the last bucket computed (exclusive), UTC',
    status      String COMMENT 'ok',
    rows        UInt64 COMMENT 'metric_values rows written',
    replica     String COMMENT 'id of the metrics instance that ran it',
    job_id      String COMMENT 'id of the queue job',
    attempt     UInt32 COMMENT 'attempt number of the job (2+ after a crash or failure)',
    started_at  DateTime,
    finished_at DateTime
)
ENGINE = MergeTree()
PARTITION BY toYYYYMM(tick)
ORDER BY (tenant_id, metric_id, tick);
