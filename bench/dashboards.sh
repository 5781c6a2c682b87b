#!/usr/bin/env bash
# Render latency of a 12-widget dashboard over 10,000,000 events, cold and
# cached (issue 6). Needs the stack's env (`make bench-dashboards` =
# bench/run.sh dashboards sources it).
#
#   bench/dashboards.sh [EVENTS] [RUNS]     default 10000000 events, 30 renders each
#
# Seeds EVENTS events for one tenant over the last 30 days with one
# INSERT ... SELECT FROM system.numbers as the ClickHouse admin, starts the
# metrics service and dashboards, then runs build/bench/dashboards.
# Metrics: BENCH_METRICS=real (the default when build/bin/metrics exists)
# starts the metrics service with its result cache off
# (ANALYTICS_METRICS_CACHE_TTL=0, so cold renders are cold) and creates three
# metric definitions over NATS (tests/helpers/svc_call): events,
# signups, orders (as "revenue"); BENCH_METRICS=double uses
# tests/helpers/metrics_double instead (the same catalog, its own SQL).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
B="${ANALYTICS_BUILD_DIR:-$ROOT/build}"
EVENTS=${1:-10000000}
RUNS=${2:-30}
TENANT=bench-$$
: "${ANALYTICS_STACK_DIR:?run through bench/run.sh dashboards}"
export ANALYTICS_JWT_SECRET=${ANALYTICS_JWT_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}

ch_admin() {
    curl -sS --fail-with-body --max-time 600 -H "X-ClickHouse-User: $ANALYTICS_CLICKHOUSE_ADMIN_USER" \
        -H "X-ClickHouse-Key: $ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD" --data-binary "$1" "$ANALYTICS_CLICKHOUSE_URL/"
}

# Property columns (deploy/clickhouse/property-column.sh): what an operator
# does for the properties dashboards group by most. BENCH_PROPERTY_COLUMNS
# (default "country plan"; "" for none) names them; they are added before
# the seed, so its rows store them as ingest's rows would.
PROPERTY_COLUMNS=${BENCH_PROPERTY_COLUMNS-country plan}
if [ -n "$PROPERTY_COLUMNS" ]; then
    # shellcheck disable=SC2086
    "$ROOT/deploy/clickhouse/property-column.sh" add $PROPERTY_COLUMNS
fi
echo "property columns: ${PROPERTY_COLUMNS:-none}"
echo "seeding $EVENTS events for tenant $TENANT (30 days, 4 event types, 8 countries, 3 plans)"
t0=$(date +%s.%N)
ch_admin "INSERT INTO analytics.events (tenant_id, event_id, event_name, occurred_at, actor_type, actor_id, prop_keys, prop_values)
SELECT '$TENANT', toString(number),
       ['page.viewed', 'page.viewed', 'user.signed_up', 'order.paid'][number % 4 + 1],
       toDateTime(toUInt32(now()) - intDiv(number * 2592000, $EVENTS)),
       'user', toString(number % 50000),
       ['country', 'plan', 'amount'],
       [['FR', 'DE', 'US', 'GB', 'ES', 'IT', 'BR', 'JP'][number % 8 + 1],
        ['free', 'pro', 'team'][intDiv(number, 8) % 3 + 1],
        toString((number % 100) / 4)]
FROM system.numbers LIMIT $EVENTS"
t1=$(date +%s.%N)
echo "seeded in $(echo "$t1 - $t0" | bc) s; rows: $(ch_admin "SELECT count() FROM analytics.events WHERE tenant_id = '$TENANT'")"

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
wait_started() {
    for _ in $(seq 1 200); do grep -q '"msg":"started ' "$1" && return 0; sleep 0.1; done
    echo "$1: did not start" >&2; tail -5 "$1" >&2; return 1
}
LOG="$ANALYTICS_STACK_DIR"
MODE=${BENCH_METRICS:-$([ -x "$B/bin/metrics" ] && echo real || echo double)}
if [ "$MODE" = real ]; then
    ANALYTICS_HTTP_ADDR=127.0.0.1:0 ANALYTICS_LOG_LEVEL=info ANALYTICS_METRICS_CACHE_TTL=0 \
        ANALYTICS_METRICS_SCHEDULER=false ANALYTICS_METRICS_MATERIALIZE_WORKERS=0 \
        "$B/bin/metrics" >"$LOG/bench-metrics.log" 2>&1 &
    PIDS+=($!)
    PREFIX=analytics.metrics
else
    ANALYTICS_METRICS_DOUBLE_NAME=benchmetrics ANALYTICS_HTTP_ADDR=127.0.0.1:0 ANALYTICS_LOG_LEVEL=info \
        "$B/tests/helpers/metrics_double" >"$LOG/bench-metrics.log" 2>&1 &
    PIDS+=($!)
    PREFIX=analytics.benchmetrics
fi
ANALYTICS_DASHBOARDS_METRICS_PREFIX=$PREFIX ANALYTICS_HTTP_ADDR=127.0.0.1:0 \
    ANALYTICS_LOG_LEVEL=info ANALYTICS_WORKERS=4 ANALYTICS_DASHBOARDS_WIDGET_TIMEOUT=20s \
    ANALYTICS_REQUEST_TIMEOUT=30s "$B/bin/dashboards" >"$LOG/bench-dashboards.log" 2>&1 &
PIDS+=($!)
echo "metrics ($MODE) and dashboards starting"
wait_started "$LOG/bench-metrics.log"
wait_started "$LOG/bench-dashboards.log"
if [ "$MODE" = real ]; then
    mk() { # name, template -> id
        local body
        body=$(python3 -c 'import json,sys; print(json.dumps({"name": sys.argv[1], "query": sys.argv[2], "unit": "count"}))' "$1" "$2")
        "$B/tests/helpers/svc_call" -t "$TENANT" -u bench analytics.metrics.create "$body" |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["id"])'
    }
    T="{{events}} WHERE {{time_range}}"
    export BENCH_METRIC_EVENTS BENCH_METRIC_SIGNUPS BENCH_METRIC_REVENUE
    BENCH_METRIC_EVENTS=$(mk events "SELECT {{bucket}} AS bucket{{dimensions}}, count() AS value FROM $T AND {{filters}} GROUP BY bucket{{group_by}}")
    BENCH_METRIC_SIGNUPS=$(mk signups "SELECT {{bucket}} AS bucket{{dimensions}}, count() AS value FROM $T AND event_name = 'user.signed_up' AND {{filters}} GROUP BY bucket{{group_by}}")
    BENCH_METRIC_REVENUE=$(mk orders "SELECT {{bucket}} AS bucket{{dimensions}}, count() AS value FROM $T AND event_name = 'order.paid' AND {{filters}} GROUP BY bucket{{group_by}}")
    echo "metrics created: events=$BENCH_METRIC_EVENTS signups=$BENCH_METRIC_SIGNUPS orders=$BENCH_METRIC_REVENUE"
fi
"$B/bench/dashboards" "$TENANT" "$RUNS"
