-- 0003_ingest_rollups: per tenant, event and hour, the number of events and
-- of distinct actors, kept up to date by a materialized view on the hot tier,
-- so dashboards read a few rows per hour instead of scanning events.
--
-- Read it merged (parts are combined in the background, so a group can
-- still be split over several rows):
--   SELECT hour, countMerge(events) AS events, uniqIfMerge(actors) AS actors
--   FROM analytics.events_hourly
--   WHERE tenant_id = 't1' AND event_name = 'enrollment.created'
--     AND hour >= toDateTime('2026-01-01 00:00:00')
--   GROUP BY hour ORDER BY hour
-- actors counts distinct actor_id hashes (events without an actor are not
-- counted); uniq is HyperLogLog-like: exact for small sets, ~1% beyond.
--
-- Exactly once. A materialized view runs on every INSERT into
-- analytics.events, so a row inserted twice would be counted twice here even
-- though ReplacingMergeTree later collapses it in the table itself. ingest
-- therefore never inserts a row that is already stored: before inserting
-- redelivered messages, or a batch whose previous insert attempt failed
-- with an unknown outcome, it looks their (tenant_id, event_id) up and
-- leaves out the ones found (docs/ingest.md, "Exactly once"). The view is
-- only as exact as that rule: rows written into analytics.events by anything
-- else than ingest must follow it too.
--
-- The view sees only rows inserted after it exists; to fill it for older
-- events, run once (per month, to bound memory):
--   INSERT INTO analytics.events_hourly SELECT tenant_id, event_name,
--     toStartOfHour(occurred_at), countState(), uniqIfState(actor_id, actor_id != '')
--   FROM analytics.events FINAL WHERE toYYYYMM(occurred_at) = 202601
--   GROUP BY tenant_id, event_name, toStartOfHour(occurred_at)
-- (before the view exists, or for months it has not seen).
-- See 0001_events.sql for the conventions every migration follows.

CREATE TABLE IF NOT EXISTS analytics.events_hourly
(
    tenant_id  String COMMENT 'tenant of the events; empty for platform-level events',
    event_name String COMMENT 'eventName (the envelope type)',
    hour       DateTime COMMENT 'toStartOfHour(occurred_at), UTC',
    events     AggregateFunction(count) COMMENT 'countMerge: number of events',
    actors     AggregateFunction(uniqIf, String, UInt8) COMMENT 'uniqIfMerge: distinct actor_id'
)
ENGINE = AggregatingMergeTree()
PARTITION BY toYYYYMM(hour)
ORDER BY (tenant_id, event_name, hour);

CREATE MATERIALIZED VIEW IF NOT EXISTS analytics.events_hourly_mv TO analytics.events_hourly
AS SELECT
    tenant_id,
    event_name,
    toStartOfHour(occurred_at) AS hour,
    countState() AS events,
    uniqIfState(actor_id, actor_id != '') AS actors
FROM analytics.events
GROUP BY tenant_id, event_name, hour;
