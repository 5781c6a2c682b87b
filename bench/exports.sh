#!/usr/bin/env bash
# Export throughput and memory: csv, xlsx and json exports of 100k, 1M and
# 5M event rows through the exports service (NATS create, Redis queue,
# ClickHouse as the readonly reader, writer, local storage), against
# `clickhouse-client --format CSV` of the same query in the same run. Needs
# the stack's env (bench/run.sh exports sources it: `make bench-exports`).
#
#   bench/exports.sh                 sizes from BENCH_EXPORTS_SIZES
#   BENCH_EXPORTS_SIZES="100000 1000000" bench/exports.sh
#
# Each (format, size) runs in a fresh exports process with one worker, so
# its peak RSS (VmHWM) is that export's. rows/s is the worker's own time
# from taking the job to the event being stored (its log line), the
# client's is the wall time of clickhouse-client writing the CSV to a file.
# Ends with one line:
#   bench exports: csv_rows_per_s=N csv_ratio=R xlsx_rows_per_s=N json_rows_per_s=N rss_growth=G
# (rates at the largest size; csv_ratio = csv rate / clickhouse-client rate;
# G = the largest over the formats of peak RSS at the largest size / at the
# smallest).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="${ANALYTICS_BUILD_DIR:-$ROOT/build}"
SIZES=${BENCH_EXPORTS_SIZES:-"100000 1000000 5000000"}
STACK=${ANALYTICS_STACK_DIR:?run through bench/run.sh (needs the stack env)}
WORK="$STACK/bench-exports"
mkdir -p "$WORK"
export ANALYTICS_JWT_SECRET=${ANALYTICS_JWT_SECRET:-bench-secret-0123456789abcdefghijklmnop}
TENANT=bench
CALL="$BUILD/tests/helpers/svc_call"
max=0
for n in $SIZES; do [ "$n" -gt "$max" ] && max=$n; done
min=$max
for n in $SIZES; do [ "$n" -lt "$min" ] && min=$n; done

admin() {
    curl -sS --max-time 600 -H "X-ClickHouse-User: $ANALYTICS_CLICKHOUSE_ADMIN_USER" \
        -H "X-ClickHouse-Key: $ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD" --data-binary "$1" \
        "$ANALYTICS_CLICKHOUSE_URL/"
}
ms() { echo $(($(date +%s%N) / 1000000)); }

have=$(admin "SELECT count() FROM analytics.events WHERE tenant_id = '$TENANT'")
if [ "$have" -lt "$max" ]; then
    echo "loading $max event rows for tenant $TENANT ..."
    t0=$(ms)
    admin "INSERT INTO analytics.events (tenant_id, event_id, event_name, occurred_at,
        occurred_ms, actor_type, actor_id, actor_key_id, correlation_id, properties, prop_keys,
        prop_values)
    SELECT '$TENANT', concat('ev-', toString(number)),
        ['course.enrolled', 'lesson.viewed', 'quiz.submitted', 'payment.completed'][number % 4 + 1],
        toDateTime(1704067200 + intDiv(number, 10)), number % 1000, 'user',
        lower(hex(SHA256(toString(number % 50000)))), 'k1', '',
        concat('{\"course\":{\"id\":\"c-', toString(number % 300), '\"},\"score\":',
               toString(number % 100), ',\"title\":\"Lesson ', toString(number % 977),
               ', part \\\\\"', toString(number % 7), '\\\\\"\"}'),
        ['course.id', 'score'], [concat('c-', toString(number % 300)), toString(number % 100)]
    FROM system.numbers LIMIT $max"
    echo "  loaded in $(($(ms) - t0)) ms"
fi

COLS="event_id, event_name, occurred_at, occurred_ms, actor_id, properties"
echo "query: SELECT $COLS FROM {{events}} LIMIT <rows>   (tenant $TENANT)"
echo

# --- clickhouse-client, the same query as the reader ---
declare -A CLIENT
for n in $SIZES; do
    t0=$(ms)
    clickhouse-client --host 127.0.0.1 --port "$ANALYTICS_CLICKHOUSE_TCP_PORT" \
        --user "$ANALYTICS_CLICKHOUSE_READER_USER" --password "$ANALYTICS_CLICKHOUSE_READER_PASSWORD" \
        --query "SELECT $COLS FROM (SELECT * FROM analytics.events WHERE tenant_id = '$TENANT') LIMIT $n FORMAT CSV" \
        >"$WORK/client.csv"
    dt=$(($(ms) - t0))
    CLIENT[$n]=$((n * 1000 / (dt > 0 ? dt : 1)))
    printf 'clickhouse-client  %-4s %8d rows %8d ms %9d rows/s  %6d MB\n' csv "$n" "$dt" \
        "${CLIENT[$n]}" $(($(stat -c %s "$WORK/client.csv") / 1000000))
done
rm -f "$WORK/client.csv"
echo

# --- the exports service ---
declare -A RATE RSS
run_one() { # FORMAT ROWS
    local f=$1 n=$2 log pid port body reply id line dt hwm size
    log="$WORK/exports-$f-$n.log"
    rm -rf "$WORK/files"
    ANALYTICS_CLICKHOUSE_READER_USER="$ANALYTICS_CLICKHOUSE_EXPORTER_USER" \
        ANALYTICS_CLICKHOUSE_READER_PASSWORD="$ANALYTICS_CLICKHOUSE_EXPORTER_PASSWORD" \
        ANALYTICS_HTTP_ADDR=127.0.0.1:0 ANALYTICS_EXPORTS_DIR="$WORK/files" \
        ANALYTICS_EXPORTS_QUEUE="bench-$f-$n-$$" ANALYTICS_EXPORTS_WORKERS=1 \
        ANALYTICS_EXPORTS_MAX_ACTIVE_PER_TENANT=100 ANALYTICS_LOG_LEVEL=info \
        "$BUILD/bin/exports" >"$log" 2>&1 &
    pid=$!
    for ((i = 0; i < 100; i++)); do
        grep -q '"msg":"started exports' "$log" 2>/dev/null && break
        sleep 0.1
    done
    body="{\"query\":\"SELECT $COLS FROM {{events}} LIMIT $n\",\"format\":\"$f\"}"
    reply=$("$CALL" -t "$TENANT" -u bench analytics.exports.create "$body")
    id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["id"])' <<<"$reply")
    line=""
    for ((i = 0; i < 6000; i++)); do
        line=$(grep -E "export $id (completed: [0-9]+ rows|failed)" "$log" | tail -1 || true)
        [ -n "$line" ] && break
        sleep 0.1
    done
    hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
    kill -TERM "$pid"
    wait "$pid" || true
    if ! grep -q "export $id completed" <<<"$line"; then
        echo "  $f $n: FAILED: $(grep -o '"msg":"export [^"]*' "$log" | tail -2)"
        RATE[$f.$n]=0
        RSS[$f.$n]=$hwm
        return 0
    fi
    dt=$(sed -E 's/.* in ([0-9]+) ms.*/\1/' <<<"$line")
    size=$(sed -E 's/.*rows, ([0-9]+) bytes.*/\1/' <<<"$line")
    RATE[$f.$n]=$((n * 1000 / (dt > 0 ? dt : 1)))
    RSS[$f.$n]=$hwm
    printf 'exports            %-4s %8d rows %8d ms %9d rows/s  %6d MB  peak RSS %6d KB\n' "$f" "$n" \
        "$dt" "${RATE[$f.$n]}" $((size / 1000000)) "$hwm"
}
for f in csv xlsx json; do
    for n in $SIZES; do
        run_one "$f" "$n"
    done
done
rm -rf "$WORK/files"

growth=$(python3 - "$min" "$max" "${RSS[csv.$min]}" "${RSS[csv.$max]}" "${RSS[xlsx.$min]}" \
    "${RSS[xlsx.$max]}" "${RSS[json.$min]}" "${RSS[json.$max]}" <<'EOF'
import sys
v = [float(x) for x in sys.argv[3:]]
print("%.2f" % max(v[1] / v[0], v[3] / v[2], v[5] / v[4]))
EOF
)
ratio=$(python3 -c "print('%.2f' % (${RATE[csv.$max]} / max(1, ${CLIENT[$max]})))")
echo
echo "sizes: $SIZES (rates at $max rows; rss_growth: peak RSS at $max / at $min rows)"
echo "bench exports: csv_rows_per_s=${RATE[csv.$max]} csv_ratio=$ratio" \
    "xlsx_rows_per_s=${RATE[xlsx.$max]} json_rows_per_s=${RATE[json.$max]} rss_growth=$growth"
