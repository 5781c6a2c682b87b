#!/usr/bin/env bash
# Metric query latency: analytics.metrics.query through the service (NATS,
# auth, definition cache, template binding, ClickHouse as the readonly
# reader, bucket filling, JSON) next to the very SQL it runs, sent directly
# with clickhouse-client in the same run; and the cached answer. Needs the
# stack's env (bench/run.sh metrics sources it: `make bench-metrics`).
#
#   bench/metrics.sh            BENCH_EVENTS (default 10000000), BENCH_N (default 50)
#
# Seeds BENCH_EVENTS events with one INSERT ... SELECT FROM system.numbers as
# the admin (10 tenants, skewed: bench_t0 holds about a third; 12 event types;
# 50,000 actors per tenant; 90 days; four properties), which also fills the
# hourly rollup when migration 0003 exists. Three metrics of bench_t0:
#   dau     distinct actors per day over 90 days
#   bytype  events per hour by event_name over 7 days (from the rollup
#           when it exists, else from the events)
#   ratio   payment.succeeded / payment.started per day by plan tier, 30 days
# Ends with one line: bench metrics: overhead_p50_ms=X cached_p50_ms=X and
# p50/p95/p99 per metric (service, direct SQL, cached). overhead is the
# largest of the three p50(service) - p50(direct); cached the largest cached p50.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${ANALYTICS_BUILD_DIR:-$ROOT/build}"
N_EVENTS=${BENCH_EVENTS:-10000000}
N=${BENCH_N:-50}
TENANT=bench_t0
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bench-metrics.XXXXXX")
SVC_PID=""
cleanup() {
    if [ -n "$SVC_PID" ]; then
        kill -TERM "$SVC_PID" 2>/dev/null || true
        wait "$SVC_PID" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

admin() {
    curl -sS --fail-with-body --max-time 900 -H "X-ClickHouse-User: $ANALYTICS_CLICKHOUSE_ADMIN_USER" \
        -H "X-ClickHouse-Key: $ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD" --data-binary "$1" \
        "$ANALYTICS_CLICKHOUSE_URL/"
}
ms() { echo $(($(date +%s%N) / 1000000)); }

# ---------------------------------------------------------------- seeding
echo "seeding $N_EVENTS events (INSERT ... SELECT FROM system.numbers as the admin)"
t0=$(ms)
admin "INSERT INTO analytics.events (tenant_id, event_id, event_name, occurred_at, occurred_ms,
    actor_type, actor_id, actor_key_id, correlation_id, properties, prop_keys, prop_values)
SELECT
    concat('bench_t', toString(t)) AS tenant_id,
    concat('bev-', toString(number)) AS event_id,
    ['course.viewed', 'lesson.started', 'lesson.completed', 'quiz.submitted',
     'enrollment.created', 'payment.started', 'payment.succeeded', 'payment.failed',
     'user.login', 'user.signed_up', 'discussion.posted', 'certificate.issued']
        [1 + intHash32(number + 1) % 12] AS event_name,
    toDateTime(toUInt32(now()) - intHash64(number) % (90 * 86400)) AS occurred_at,
    number % 1000 AS occurred_ms,
    'user' AS actor_type,
    lower(hex(intHash64(t * 1000003 + intHash32(number + 7) % 50000))) AS actor_id,
    'k1' AS actor_key_id,
    '' AS correlation_id,
    concat('{\"course\":{\"id\":\"c', toString(number % 300), '\"},\"plan\":{\"tier\":\"',
           ['free', 'pro', 'team'][1 + number % 3], '\"}}') AS properties,
    ['course.id', 'plan.tier', 'country', 'amount'] AS prop_keys,
    [concat('c', toString(number % 300)), ['free', 'pro', 'team'][1 + number % 3],
     ['FR', 'DE', 'US', 'BR', 'IN', 'GB'][1 + number % 6], toString(number % 200)] AS prop_values
FROM (SELECT number, toUInt32(pow(intHash32(number + 3) / 4294967295., 2) * 10) AS t
      FROM system.numbers LIMIT $N_EVENTS)"
seed_ms=$(($(ms) - t0))
echo "  $(admin "SELECT count() FROM analytics.events WHERE startsWith(tenant_id, 'bench_t')") rows in ${seed_ms} ms;" \
    "$TENANT has $(admin "SELECT count() FROM analytics.events WHERE tenant_id = '$TENANT'")"
rollup=$(admin "SELECT count() FROM system.tables WHERE database = 'analytics' AND name = 'events_hourly'")

# ---------------------------------------------------------------- service
export ANALYTICS_JWT_SECRET=${ANALYTICS_JWT_SECRET:-bench-secret-0123456789abcdefghijklmnop}
ANALYTICS_HTTP_ADDR=127.0.0.1:0 ANALYTICS_LOG_LEVEL=warn ANALYTICS_METRICS_SCHEDULER=false \
    ANALYTICS_METRICS_MATERIALIZE_WORKERS=0 ANALYTICS_METRICS_REDIS_PREFIX=an:bench:metrics \
    "$BUILD/bin/metrics" >"$WORK/metrics.log" 2>&1 &
SVC_PID=$!
for ((i = 0; i < 100; i++)); do
    "$BUILD/tests/helpers/svc_call" -t "$TENANT" analytics.metrics.list '{"pageSize":1}' \
        >/dev/null 2>&1 && break
    sleep 0.1
done

day=$(($(date -u +%s) / 86400 * 86400))
hour=$(($(date -u +%s) / 3600 * 3600))
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }

DAU_TPL="SELECT {{bucket}} AS bucket, uniq(actor_id) AS value FROM {{events}} WHERE {{time_range}} GROUP BY bucket"
DAU_P="{\"from\":\"$(iso $((day - 90 * 86400)))\",\"to\":\"$(iso $day)\",\"granularity\":\"day\"}"
if [ "$rollup" = 1 ]; then
    BYTYPE_TPL="SELECT {{bucket:hour}} AS bucket{{dimensions}}, countMerge(events) AS value FROM {{events_hourly}} WHERE {{time_range:hour}} AND {{filters}} GROUP BY bucket{{group_by}}"
    bytype_from="the hourly rollup"
else
    BYTYPE_TPL="SELECT {{bucket}} AS bucket{{dimensions}}, count() AS value FROM {{events}} WHERE {{time_range}} AND {{filters}} GROUP BY bucket{{group_by}}"
    bytype_from="the events (no rollup table)"
fi
BYTYPE_P="{\"from\":\"$(iso $((hour - 7 * 86400)))\",\"to\":\"$(iso $hour)\",\"granularity\":\"hour\",\"dimensions\":[\"event_name\"]}"
RATIO_TPL="SELECT {{bucket}} AS bucket{{dimensions}}, countIf(event_name = 'payment.succeeded') / countIf(event_name = 'payment.started') AS value FROM {{events}} WHERE {{time_range}} AND event_name IN ('payment.started', 'payment.succeeded') AND {{filters}} GROUP BY bucket{{group_by}}"
RATIO_P="{\"from\":\"$(iso $((day - 30 * 86400)))\",\"to\":\"$(iso $day)\",\"granularity\":\"day\",\"dimensions\":[\"properties.plan.tier\"]}"

# p50 p95 p99 (ms) of a file of milliseconds, one per line
percentiles() {
    sort -n "$1" | awk '{v[NR] = $1} END {
        n = NR; i50 = int(0.50 * (n - 1) + 1.5); i95 = int(0.95 * (n - 1) + 1.5); i99 = int(0.99 * (n - 1) + 1.5)
        if (i50 > n) i50 = n; if (i95 > n) i95 = n; if (i99 > n) i99 = n
        printf "%.2f %.2f %.2f\n", v[i50], v[i95], v[i99] }'
}
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p" <<<"$2"; }

summary=""
overhead=0
cached_max=0
run_metric() { # KEY TITLE UNIT TEMPLATE PARAMS
    local key=$1 title=$2 unit=$3 tpl=$4 params=$5 out live cached
    # the direct SQL runs in rounds of 5 between the service's rounds of 5
    local direct="clickhouse-client --port $ANALYTICS_CLICKHOUSE_TCP_PORT"
    direct+=" --user $ANALYTICS_CLICKHOUSE_READER_USER --password $ANALYTICS_CLICKHOUSE_READER_PASSWORD"
    direct+=" --multiquery --time <$WORK/$key.sql >/dev/null 2>>$WORK/$key.times"
    : >"$WORK/$key.times"
    out=$("$BUILD/bench/metrics_bench" -t "$TENANT" -n "$N" -k 5 -u "$unit" -p "$params" \
        -o "$WORK/$key.sql" -d "$direct" "bench $key" "$tpl")
    live=$(grep '^live ' <<<"$out")
    cached=$(grep '^cached ' <<<"$out")
    awk '/^[0-9.]+$/ {printf "%.3f\n", $1 * 1000}' "$WORK/$key.times" >"$WORK/$key.ms"
    read -r d50 d95 d99 < <(percentiles "$WORK/$key.ms")
    local s50 s95 s99 c50 c95 c99 rows
    s50=$(field p50_ms "$live"); s95=$(field p95_ms "$live"); s99=$(field p99_ms "$live")
    rows=$(field rows "$live")
    c50=$(field p50_ms "$cached"); c95=$(field p95_ms "$cached"); c99=$(field p99_ms "$cached")
    local ov
    ov=$(awk -v a="$s50" -v b="$d50" 'BEGIN {printf "%.2f", a - b}')
    printf '%-7s %s (%s rows, %d runs each)\n' "$key" "$title" "$rows" "$N"
    printf '        service  p50 %8s ms  p95 %8s ms  p99 %8s ms\n' "$s50" "$s95" "$s99"
    printf '        direct   p50 %8s ms  p95 %8s ms  p99 %8s ms   (clickhouse-client --time, same SQL)\n' "$d50" "$d95" "$d99"
    printf '        cached   p50 %8s ms  p95 %8s ms  p99 %8s ms\n' "$c50" "$c95" "$c99"
    printf '        overhead p50 %s ms\n' "$ov"
    overhead=$(awk -v a="$overhead" -v b="$ov" 'BEGIN {print (b > a ? b : a)}')
    cached_max=$(awk -v a="$cached_max" -v b="$c50" 'BEGIN {print (b > a ? b : a)}')
    summary+=" ${key}_p50_ms=$s50 ${key}_p95_ms=$s95 ${key}_p99_ms=$s99"
    summary+=" ${key}_sql_p50_ms=$d50 ${key}_sql_p95_ms=$d95 ${key}_sql_p99_ms=$d99"
    summary+=" ${key}_cached_p50_ms=$c50"
}

echo "queries of $TENANT, $N runs each: the service with \"cache\": false and the same SQL direct"
echo "(clickhouse-client --time, which excludes its start), alternating rounds of 5; then cached"
run_metric dau "daily active users by day, 90 days" count "$DAU_TPL" "$DAU_P"
run_metric bytype "events by type per hour, 7 days, from $bytype_from" count "$BYTYPE_TPL" "$BYTYPE_P"
run_metric ratio "payment success ratio by plan tier per day, 30 days" ratio "$RATIO_TPL" "$RATIO_P"

echo "bench metrics: overhead_p50_ms=$overhead cached_p50_ms=$cached_max$summary events=$N_EVENTS seed_ms=$seed_ms"
