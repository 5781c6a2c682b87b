#!/usr/bin/env bash
# Demo step (run by deploy/local/run.sh with the stack env, after
# 10-ingest.sh has published the sample traffic): metrics defined over the
# sample events through NATS requests to the metrics service, and their
# query results.
#
#   - metrics of the busiest tenant: daily active users, payment
#     success rate (a ratio), enrollments per day by source (a dimension),
#     lessons completed per day from ingest's hourly rollup;
#   - a platform metric, queried by the tenant (its own events) and by a
#     platform admin across tenants (per-tenant rows);
#   - the same query twice (the second from the Redis result cache), a
#     hostile template refused, a template that names another tenant still
#     seeing only the caller's rows.
# Without sample traffic (no ingest) it seeds a few thousand events directly
# as the ClickHouse admin, and says so.
#
# Environment (from run.sh): RUN_STACK_DIR, RUN_BUILD_DIR, the stack env
# (ANALYTICS_NATS_URL, ANALYTICS_JWT_SECRET, ...).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
cd "$ROOT"
BUILD=${RUN_BUILD_DIR:-build}
CALL="$BUILD/tests/helpers/svc_call"

if [ ! -x "$BUILD/bin/metrics" ]; then
    echo "metrics is not built yet ($BUILD/bin/metrics does not exist)"
    exit 0
fi
if [ ! -x "$CALL" ]; then
    echo "$CALL is not built"
    exit 1
fi
# The service answers once it runs (run.sh started it with the stack env).
up=0
for ((i = 0; i < 100; i++)); do
    if "$CALL" -t demo analytics.metrics.list '{"pageSize":1}' >/dev/null 2>&1; then
        up=1
        break
    fi
    sleep 0.1
done
if [ $up -eq 0 ]; then
    echo "metrics does not answer on analytics.metrics.* (see the Health section above)"
    exit 1
fi

q() { # USER PASSWORD SQL
    curl -sS --max-time 60 -H "X-ClickHouse-User: $1" -H "X-ClickHouse-Key: $2" \
        --data-binary "$3" "$ANALYTICS_CLICKHOUSE_URL/"
}
reader() { q "$ANALYTICS_CLICKHOUSE_READER_USER" "$ANALYTICS_CLICKHOUSE_READER_PASSWORD" "$1"; }
admin() { q "$ANALYTICS_CLICKHOUSE_ADMIN_USER" "$ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD" "$1"; }
indent() { sed 's/^/    /'; }

events=$(reader "SELECT count() FROM analytics.events")
if [ "$events" = 0 ]; then
    echo "no sample traffic in analytics.events (ingest did not publish any):" \
        "seeding 3000 events of 3 tenants directly as the ClickHouse admin"
    admin "INSERT INTO analytics.events (tenant_id, event_id, event_name, occurred_at, occurred_ms,
        actor_type, actor_id, actor_key_id, correlation_id, properties, prop_keys, prop_values)
    SELECT ['acme-academy', 'globex-university', 'initech-learning'][1 + number % 3],
        concat('demo-', toString(number)),
        ['lesson.completed', 'enrollment.created', 'payment.succeeded', 'payment.failed',
         'user.logged_in'][1 + intHash32(number) % 5],
        toDateTime(toUInt32(now()) - intHash64(number) % (7 * 86400)), 0, 'user',
        lower(hex(intHash64(number % 300))), 'k1', '', '{}', ['source'],
        [['web', 'mobile', 'partner'][1 + intHash32(number + 1) % 3]]
    FROM system.numbers LIMIT 3000"
fi
tenant=$(reader "SELECT tenant_id FROM analytics.events WHERE tenant_id != ''
    GROUP BY tenant_id ORDER BY count() DESC LIMIT 1")
echo "sample events: $(reader "SELECT count() FROM analytics.events") in" \
    "$(reader "SELECT uniqExact(tenant_id) FROM analytics.events") tenants; the busiest is $tenant"

# Print a query's reply as a table (at most MAX rows), with its source.
show() { # MAX < reply JSON
    python3 -c '
import json, sys
limit = int(sys.argv[1])
r = json.load(sys.stdin)
if "error" in r:
    e = r["error"]; print("error %s: %s" % (e["code"], e["message"])); sys.exit(0)
d = r["data"]
cols = [c["name"] for c in d["columns"]]
rows = [[("null" if v is None else (("%.4g" % v) if isinstance(v, float) else str(v))) for v in row] for row in d["rows"]]
rows = [[c[:10] + " " + c[11:16] if i == 0 and cols[0] == "bucket" else c for i, c in enumerate(row)] for row in rows]
w = [max([len(c)] + [len(row[i]) for row in rows]) for i, c in enumerate(cols)]
print("  ".join(c.ljust(w[i]) for i, c in enumerate(cols)))
for row in rows[:limit]:
    print("  ".join(v.ljust(w[i]) for i, v in enumerate(row)))
if len(rows) > limit:
    print("... %d rows in all" % len(rows))
print("(%s rows, unit %s, granularity %s, fill %s, source %s, cached %s)" % (len(rows), d["unit"], d["granularity"] or "none", d["fill"], d["source"], str(d["cached"]).lower()))
' "$1"
}
id_of() { python3 -c 'import json,sys; print(json.load(sys.stdin)["data"]["id"])'; }
create() { # TENANT SCOPE BODY -> id
    local out
    if ! out=$("$CALL" -t "$1" ${2:+-s "$2"} analytics.metrics.create "$3"); then
        echo "create failed: $out" >&2
        return 1
    fi
    id_of <<<"$out"
}
# A request whose answer is shown, error or not.
ask() { "$CALL" "$@" || true; }
json() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }

day=$(($(date -u +%s) / 86400 * 86400))
from=$(date -u -d "@$((day - 6 * 86400))" +%Y-%m-%dT%H:%M:%SZ)
to=$(date -u -d "@$((day + 86400))" +%Y-%m-%dT%H:%M:%SZ)
stamp=$(date -u +%H%M%S)

DAU="SELECT {{bucket}} AS bucket{{dimensions}}, uniq(actor_id) AS value FROM {{events}} WHERE {{time_range}} AND {{filters}} GROUP BY bucket{{group_by}}"
RATE="SELECT {{bucket}} AS bucket{{dimensions}}, countIf(event_name = 'payment.succeeded') / countIf(event_name IN ('payment.succeeded', 'payment.failed')) AS value FROM {{events}} WHERE {{time_range}} AND event_name IN ('payment.succeeded', 'payment.failed') AND {{filters}} GROUP BY bucket{{group_by}}"
COUNT="SELECT {{bucket}} AS bucket{{dimensions}}, count() AS value FROM {{events}} WHERE {{time_range}} AND {{filters}} GROUP BY bucket{{group_by}}"

printf '\ncreating metrics for %s (analytics.metrics.create, as a user of that tenant):\n' "$tenant"
dau=$(create "$tenant" "" "{\"name\":\"Daily active users $stamp\",\"description\":{\"en\":\"Distinct actors with any event\"},\"unit\":\"count\",\"query\":$(json "$DAU")}")
echo "  daily active users      $dau"
rate=$(create "$tenant" "" "{\"name\":\"Payment success rate $stamp\",\"description\":{\"en\":\"Succeeded / (succeeded + failed)\"},\"unit\":\"ratio\",\"query\":$(json "$RATE")}")
echo "  payment success rate    $rate"
cnt=$(create "$tenant" "" "{\"name\":\"Events $stamp\",\"unit\":\"count\",\"query\":$(json "$COUNT"),\"schedule\":\"*/5 * * * *\",\"materialize\":{\"granularity\":\"hour\",\"lookback\":3}}")
echo "  events (scheduled)      $cnt   materialized every 5 minutes, hourly buckets"
rollup=$(reader "SELECT count() FROM system.tables WHERE database = 'analytics' AND name = 'events_hourly'" 2>/dev/null || echo 0)
if [ "$rollup" = 1 ]; then
    ROLLUP="SELECT {{bucket:hour}} AS bucket{{dimensions}}, countMerge(events) AS value FROM {{events_hourly}} WHERE {{time_range:hour}} AND {{filters}} GROUP BY bucket{{group_by}}"
    hourly=$(create "$tenant" "" "{\"name\":\"Events from the rollup $stamp\",\"unit\":\"count\",\"query\":$(json "$ROLLUP")}")
    echo "  events (hourly rollup)  $hourly   reads analytics.events_hourly, not the events"
fi
platform=$(create "" "platform:admin" "{\"name\":\"Platform events $stamp\",\"tenantId\":null,\"unit\":\"count\",\"query\":$(json "$COUNT")}")
echo "  platform events         $platform   (tenantId null, created with platform:admin)"

range="\"from\":\"$from\",\"to\":\"$to\",\"granularity\":\"day\""
printf '\ndaily active users of %s, last 7 days:\n' "$tenant"
ask -t "$tenant" analytics.metrics.query "{\"metricId\":\"$dau\",$range}" | show 10 | indent
printf '\npayment success rate per day (a ratio: days without payments are null):\n'
ask -t "$tenant" analytics.metrics.query "{\"metricId\":\"$rate\",$range}" | show 10 | indent
printf '\nenrollments per day by source (filter event_name = enrollment.created, dimension properties.source):\n'
ask -t "$tenant" analytics.metrics.query "{\"metricId\":\"$cnt\",$range,\"dimensions\":[\"properties.source\"],\"filters\":[{\"field\":\"event_name\",\"op\":\"eq\",\"value\":\"enrollment.created\"}]}" | show 12 | indent

if [ -n "${hourly:-}" ]; then
    printf '\nlessons completed per day, from the hourly rollup (filter event_name = lesson.completed):\n'
    ask -t "$tenant" analytics.metrics.query "{\"metricId\":\"$hourly\",$range,\"filters\":[{\"field\":\"event_name\",\"op\":\"eq\",\"value\":\"lesson.completed\"}]}" | show 7 | indent
fi

printf '\nthe platform metric, by %s (its own events only):\n' "$tenant"
ask -t "$tenant" analytics.metrics.query "{\"metricId\":\"$platform\",$range}" | show 7 | indent
printf '  the same with allTenants, without platform:admin:\n'
ask -t "$tenant" analytics.metrics.query "{\"metricId\":\"$platform\",$range,\"allTenants\":true}" | show 3 | indent
printf '  by a platform admin across tenants, per tenant (today and yesterday):\n'
ask -t "" -s platform:admin analytics.metrics.query "{\"metricId\":\"$platform\",\"from\":\"$(date -u -d "@$((day - 86400))" +%Y-%m-%dT%H:%M:%SZ)\",\"to\":\"$to\",\"granularity\":\"day\",\"allTenants\":true,\"breakdown\":\"tenant\"}" | show 12 | indent

printf '\nthe same query twice (the second answer comes from the Redis result cache):\n'
for i in 1 2; do
    t0=$(date +%s%N)
    out=$(ask -t "$tenant" analytics.metrics.query "{\"metricId\":\"$dau\",\"from\":\"$from\",\"to\":\"$to\",\"granularity\":\"hour\"}")
    t1=$(date +%s%N)
    python3 -c 'import json,sys; d=json.load(sys.stdin)["data"]; print("  %d hourly rows, source %s, cached %s" % (len(d["rows"]), d["source"], str(d["cached"]).lower()), end="")' <<<"$out"
    echo ", $(((t1 - t0) / 1000000)) ms with the client's start"
done

printf '\ntenant isolation, as %s:\n' "$tenant"
printf '  a template reading analytics.events directly (analytics.metrics.preview):\n'
ask -t "$tenant" analytics.metrics.preview "{\"query\":\"SELECT count() AS value FROM analytics.events\"}" | show 1 | indent
other=$(reader "SELECT tenant_id FROM analytics.events WHERE tenant_id NOT IN ('', '$tenant') LIMIT 1")
if [ -n "$other" ]; then
    printf '  a template asking for %s'"'"'s rows (WHERE tenant_id = '"'"'%s'"'"'): the bound relation holds only %s'"'"'s\n' "$other" "$other" "$tenant"
    ask -t "$tenant" analytics.metrics.preview "{\"query\":\"SELECT count() AS value FROM {{events}} WHERE tenant_id = '$other'\"}" | show 1 | indent
fi
printf '  another tenant asking for the daily active users metric of %s:\n' "$tenant"
ask -t "${other:-someone-else}" analytics.metrics.query "{\"metricId\":\"$dau\",$range}" | show 1 | indent

printf '\nthe definitions in ClickHouse (analytics.metric_definitions FINAL):\n'
reader "SELECT if(tenant_id = '', '(platform)', tenant_id) AS tenant, id, name,
    visitParamExtractString(spec, 'unit') AS unit, visitParamExtractString(spec, 'schedule') AS schedule, version
FROM analytics.metric_definitions FINAL WHERE deleted = 0 AND endsWith(name, '$stamp')
ORDER BY id FORMAT PrettyCompactNoEscapes" | indent
echo "the scheduled metric is materialized on its next tick (every 5 minutes) into analytics.metric_values;"
echo "analytics.metric_runs logs each run (run.sh --keep, then: . $RUN_STACK_DIR/env)"
