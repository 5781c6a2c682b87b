#!/usr/bin/env bash
# Demo step (run by deploy/local/run.sh with the stack env): sample traffic of
# a learning platform through ingest into ClickHouse.
#
# Publishes DEMO_EVENTS (default 20000) events from bench/eventgen (5 tenants,
# ~30 event types, a week of history, PII in some payloads) to the firehose,
# waits until all are in analytics.events, then shows what a user would look
# at: counts per tenant and event type (as the readonly reader), one event in
# the hot tier next to the same event in the audit tier (PII scrubbed vs.
# kept), the dead letters, the rollups if they exist, and ingest's /metrics.
# Shows only what exists; without a running ingest it says so and stops.
#
# Environment (from run.sh): RUN_STACK_DIR, RUN_BUILD_DIR, the stack env.
# Optional: DEMO_EVENTS, DEMO_SEED (default 1), DEMO_WAIT_S (default 120).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT"
STACK=${RUN_STACK_DIR:?run by deploy/local/run.sh}
BUILD=${RUN_BUILD_DIR:-build}
N=${DEMO_EVENTS:-20000}
SEED=${DEMO_SEED:-1}
WAIT_S=${DEMO_WAIT_S:-120}
EVENTGEN="$BUILD/bench/eventgen"
SVC="$STACK/services"

if [ ! -x "$BUILD/bin/ingest" ]; then
    echo "ingest is not built yet ($BUILD/bin/ingest does not exist): no sample traffic published"
    exit 0
fi
pid=$(cat "$SVC/ingest.pid" 2>/dev/null || true)
if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; then
    echo "ingest is built but not running (see the Health section above): no sample traffic published"
    exit 0
fi
if [ ! -x "$EVENTGEN" ]; then
    echo "$EVENTGEN is not built: no sample traffic published"
    exit 1
fi
addr=$(cat "$SVC/ingest.addr" 2>/dev/null || true)

q() { # USER PASSWORD SQL -> the server's answer (FORMAT in the SQL)
    curl -sS --max-time 30 -H "X-ClickHouse-User: $1" -H "X-ClickHouse-Key: $2" \
        --data-binary "$3" "$ANALYTICS_CLICKHOUSE_URL/"
}
reader() { q "$ANALYTICS_CLICKHOUSE_READER_USER" "$ANALYTICS_CLICKHOUSE_READER_PASSWORD" "$1"; }
audit() { q "$ANALYTICS_CLICKHOUSE_AUDIT_USER" "$ANALYTICS_CLICKHOUSE_AUDIT_PASSWORD" "$1"; }
admin() { q "$ANALYTICS_CLICKHOUSE_ADMIN_USER" "$ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD" "$1"; }
indent() { sed 's/^/    /'; }
ms() { echo $(($(date +%s%N) / 1000000)); }

# ingest creates the stream and its consumer at start; it says so in its log
for ((i = 0; i < 150; i++)); do
    grep -q 'ingest ready' "$SVC/ingest.log" 2>/dev/null && break
    sleep 0.1
done
if ! grep -q 'ingest ready' "$SVC/ingest.log" 2>/dev/null; then
    echo "ingest did not log 'ingest ready' within 15 s; last log lines:"
    tail -5 "$SVC/ingest.log" | indent
    exit 1
fi

base=$(admin "SELECT uniqExact(event_id) FROM analytics.events")
echo "publishing $N sample events to events.<service>.<type> (bench/eventgen --seed $SEED, a week of history)"
t0=$(ms)
"$EVENTGEN" --publish "$N" --seed "$SEED" --window 7d --quiet 2>&1 | sed 's/^eventgen: /  eventgen: /'
want=$((base + N))
got=$base
while :; do
    got=$(admin "SELECT uniqExact(event_id) FROM analytics.events")
    [ "$got" -ge "$want" ] && break
    if [ $(($(ms) - t0)) -gt $((WAIT_S * 1000)) ]; then
        echo "only $((got - base)) of $N events reached analytics.events in ${WAIT_S}s; ingest log:"
        tail -5 "$SVC/ingest.log" | indent
        exit 1
    fi
    sleep 0.2
done
echo "all $N events queryable in analytics.events $(($(ms) - t0)) ms after the first publish"

printf '\nper tenant (hot tier, as the readonly %s user):\n' "$ANALYTICS_CLICKHOUSE_READER_USER"
reader "SELECT tenant_id, count() AS events, uniqExact(actor_id) AS actors,
    uniqExact(event_name) AS types, min(occurred_at) AS first, max(occurred_at) AS last
FROM analytics.events GROUP BY tenant_id ORDER BY events DESC FORMAT PrettyCompactNoEscapes" | indent

types=$(reader "SELECT uniqExact(event_name) FROM analytics.events")
printf '\nper event type (the 12 most frequent of %s):\n' "$types"
reader "SELECT event_name, count() AS events, uniqExact(tenant_id) AS tenants,
    round(avg(length(properties))) AS avg_props_bytes
FROM analytics.events GROUP BY event_name ORDER BY events DESC LIMIT 12
FORMAT PrettyCompactNoEscapes" | indent

# One event with PII keys (data.user.email, .name, .phone, data.ip) and one
# with PII inside free text, each in both tiers.
or_none() { # stdin, or "(no row)" when empty
    local out
    out=$(cat)
    if [ -n "$out" ]; then printf '%s\n' "$out"; else echo "(no row)"; fi
}
show_pair() { # TITLE EVENT_ID
    printf '\n%s\n  hot tier (analytics.events, readable by the reader):\n' "$1"
    reader "SELECT event_id, tenant_id, event_name, occurred_at, actor_type, actor_id,
        actor_key_id, properties, prop_keys, prop_values
    FROM analytics.events WHERE event_id = '$2' LIMIT 1 FORMAT Vertical" | or_none | indent
    printf '  audit tier (analytics_audit.events, readable only by %s):\n' \
        "$ANALYTICS_CLICKHOUSE_AUDIT_USER"
    audit "SELECT event_id, subject, stream_seq, payload FROM analytics_audit.events
    WHERE event_id = '$2' LIMIT 1 FORMAT Vertical" | or_none | indent
}
id=$(reader "SELECT event_id FROM analytics.events WHERE event_name = 'user.signed_up'
    ORDER BY occurred_at DESC LIMIT 1")
if [ -n "$id" ]; then
    show_pair "a user.signed_up event (PII under data.user and data.ip):" "$id"
fi
id=$(audit "SELECT event_id FROM analytics_audit.events
    WHERE event_name IN ('discussion.posted', 'discussion.replied', 'review.submitted')
      AND position(payload, '@') > 0 ORDER BY occurred_at DESC LIMIT 1")
if [ -n "$id" ]; then
    show_pair "a post with an e-mail address inside its free text:" "$id"
fi
reveal=$(reader "SELECT countIf(position(properties, '@') > 0) FROM analytics.events")
echo "hot-tier rows whose properties still contain an '@': $reveal"

printf '\ndead letters (analytics_audit.dead_letters): '
dl=$(audit "SELECT count() FROM analytics_audit.dead_letters")
echo "$dl"
if [ "$dl" != 0 ]; then
    audit "SELECT reason, count() AS messages, any(detail) AS example FROM analytics_audit.dead_letters
    GROUP BY reason ORDER BY messages DESC FORMAT PrettyCompactNoEscapes" | indent
fi

# Rollups: whatever aggregate tables the migrations made in analytics.
rollups=$(admin "SELECT name FROM system.tables WHERE database = 'analytics'
    AND (engine LIKE '%AggregatingMergeTree' OR engine LIKE '%SummingMergeTree') ORDER BY name")
if [ -z "$rollups" ]; then
    printf '\nrollups: none in the schema yet\n'
fi
for t in $rollups; do
    # Merge what parts hold for each key (they may not be merged yet):
    # AggregateFunction(f, ...) columns through fMerge, numbers summed (a
    # SummingMergeTree's counters), every other column is part of the key.
    keys="" vals="" first=""
    while IFS=$'\t' read -r c ty; do
        case "$ty" in
        AggregateFunction\(*)
            fn=${ty#AggregateFunction(}
            fn=${fn%%[,)]*}
            vals+=", ${fn%%(*}Merge($c) AS $c"
            first=${first:-$c} ;;
        UInt* | Int* | Float*) vals+=", sum($c) AS $c"; first=${first:-$c} ;;
        *) keys+="${keys:+, }$c" ;;
        esac
    done < <(admin "SELECT name, type FROM system.columns WHERE database = 'analytics'
        AND table = '$t' FORMAT TabSeparated")
    printf '\nrollup analytics.%s (%s rows in parts), the 8 biggest keys:\n' "$t" \
        "$(admin "SELECT count() FROM analytics.$t")"
    if [ -n "$keys" ] && [ -n "$first" ]; then
        reader "SELECT ${keys}${vals} FROM analytics.$t GROUP BY ${keys} ORDER BY $first DESC
            LIMIT 8 FORMAT PrettyCompactNoEscapes" | indent
    else
        reader "SELECT * FROM analytics.$t LIMIT 8 FORMAT PrettyCompactNoEscapes" | indent
    fi
done

# The hourly rollup of ingest (0003_ingest_rollups) read the way a dashboard
# would, and checked against the table it summarises.
if [[ " $(echo "$rollups" | tr '\n' ' ') " == *" events_hourly "* ]]; then
    printf '\nfrom the rollup: events and distinct actors per tenant and day (the last 2 days, as the reader):\n'
    reader "SELECT tenant_id, toDate(hour) AS day, countMerge(events) AS events,
        uniqIfMerge(actors) AS actors FROM analytics.events_hourly
    WHERE hour >= toStartOfDay(now()) - 86400 GROUP BY tenant_id, day
    ORDER BY day DESC, events DESC FORMAT PrettyCompactNoEscapes" | indent
    echo "  events counted by the rollup: $(reader "SELECT countMerge(events) FROM analytics.events_hourly")," \
        "rows in analytics.events: $(reader "SELECT count() FROM analytics.events")"
fi

if [ -n "$addr" ]; then
    printf '\ningest /metrics (http://%s/metrics), lines about events:\n' "$addr"
    curl -s --max-time 5 "http://$addr/metrics" | grep -v '^#' |
        grep -Ei 'event|row|reject|dead|batch|lag|ack' | grep -v '_bucket{' | head -40 | indent || true
fi

if [ "${RUN_KEEP:-0}" = 1 ]; then
    printf '\nfor a steady trickle of live events (from another shell, after . %s/env):\n' "$STACK"
    echo "    $EVENTGEN --publish 0 --rate 50 --window 0"
fi
