#!/usr/bin/env bash
# Demo step (run by deploy/local/run.sh with the stack env, after the sample
# traffic of 10-ingest.sh): export jobs of the sample traffic through the
# exports service, as a user of the busiest tenant would.
#
# Creates a csv export (events per type) and a json export (the tenant's
# latest raw events, NDJSON) over NATS (analytics.exports.create), follows
# each job with analytics.exports.get until it completes, prints its
# download URL (a signed link served by the exports HTTP port), downloads
# it with curl and shows its first lines; then lists the tenant's jobs.
#
# Environment (from run.sh): RUN_STACK_DIR, RUN_BUILD_DIR, the stack env
# (ANALYTICS_NATS_URL, ANALYTICS_JWT_SECRET, ...). Optional: DEMO_WAIT_S
# (default 60).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT"
STACK=${RUN_STACK_DIR:?run by deploy/local/run.sh}
BUILD=${RUN_BUILD_DIR:-build}
WAIT_S=${DEMO_WAIT_S:-60}
CALL="$BUILD/tests/helpers/svc_call"

if [ ! -x "$BUILD/bin/exports" ]; then
    echo "exports is not built yet ($BUILD/bin/exports does not exist)"
    exit 0
fi
if [ ! -x "$CALL" ]; then
    echo "$CALL is not built"
    exit 1
fi
indent() { sed 's/^/    /'; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
reader() {
    curl -sS --max-time 30 -H "X-ClickHouse-User: $ANALYTICS_CLICKHOUSE_READER_USER" \
        -H "X-ClickHouse-Key: $ANALYTICS_CLICKHOUSE_READER_PASSWORD" --data-binary "$1" \
        "$ANALYTICS_CLICKHOUSE_URL/"
}

tenant=$(reader "SELECT tenant_id FROM analytics.events GROUP BY tenant_id ORDER BY count() DESC LIMIT 1")
if [ -z "$tenant" ]; then
    tenant=demo
    echo "no sample traffic in analytics.events: the exports below are empty (header only)"
fi
total=$(reader "SELECT count() FROM analytics.events WHERE tenant_id = '$tenant'")
echo "tenant $tenant ($total events), user analyst-1"

export_one() { # FORMAT QUERY TITLE
    local format=$1 query=$2 title=$3 body reply id status url t0 file
    printf '\n%s (%s)\n' "$title" "$format"
    body=$(python3 -c 'import json,sys; print(json.dumps({"query": sys.argv[1], "format": sys.argv[2]}))' \
        "$query" "$format")
    echo "  analytics.exports.create $body"
    if ! reply=$("$CALL" -t "$tenant" -u analyst-1 analytics.exports.create "$body"); then
        echo "  create failed: $reply"
        return 1
    fi
    id=$(json "d['data']['id']" <<<"$reply")
    echo "  -> job $id queued"
    t0=$(date +%s%N)
    while :; do
        reply=$("$CALL" -t "$tenant" -u analyst-1 analytics.exports.get "{\"id\":\"$id\"}")
        status=$(json "d['data']['status']" <<<"$reply")
        case $status in completed | failed | cancelled) break ;; esac
        if [ $((($(date +%s%N) - t0) / 1000000000)) -gt "$WAIT_S" ]; then
            echo "  still $status after ${WAIT_S}s"
            return 1
        fi
        sleep 0.2
    done
    echo "  -> $status in $((($(date +%s%N) - t0) / 1000000)) ms:" \
        "$(json "'%d rows, %d bytes, attempt %d' % (d['data']['progress']['rows'], d['data']['progress']['bytes'], d['data']['attempts'])" <<<"$reply")"
    if [ "$status" != completed ]; then
        json "d['data']['error']" <<<"$reply" | indent
        return 1
    fi
    url=$(json "d['data']['outputUrl']" <<<"$reply")
    echo "  outputUrl: $url"
    [ "${RUN_KEEP:-0}" = 1 ] || echo "  (served by the exports service of this run: gone when it stops; run.sh --keep keeps it)"
    file="$STACK/demo-export.$format"
    curl -sS -o "$file" -w '  GET outputUrl -> %{http_code}, %{size_download} bytes, %{content_type}\n' "$url"
    echo "  first lines of the file:"
    head -6 "$file" | cut -c1-220 | indent
}

failed=0
export_one csv "SELECT event_name, count() AS events, uniqExact(actor_id) AS actors,
    min(occurred_at) AS first_seen, max(occurred_at) AS last_seen
FROM {{events}} GROUP BY event_name ORDER BY events DESC" "events per type" || failed=1
export_one json "SELECT occurred_at, event_name, actor_type, properties
FROM {{events}} ORDER BY occurred_at DESC LIMIT 1000" "the latest 1000 events" || failed=1

printf '\nanalytics.exports.list (the tenant'"'"'s jobs, newest first):\n'
"$CALL" -t "$tenant" -u analyst-1 analytics.exports.list '{"pageSize":5}' |
    python3 -c 'import json,sys
for j in json.load(sys.stdin)["data"]["items"]:
    print("%s %-9s %-4s %6d rows  by %s" % (j["id"], j["status"], j["format"], j["progress"]["rows"], j["requestedBy"]))' |
    indent
exit $failed
