#!/usr/bin/env bash
# End-to-end ingest throughput (issue 3): NATS JetStream in, ClickHouse out.
# Run by `make bench-ingest` (bench/run.sh ingest), which builds, starts a
# stack of its own and sources its env.
#
#   bench/ingest.sh [EVENTS]        default $BENCH_EVENTS or 1000000
#
# 1. starts build/bin/ingest with the stack env (a fresh
#    ANALYTICS_INGEST_HMAC_KEY) and waits for its `ingest ready` log line;
# 2. makes EVENTS sample events (bench/eventgen --pregenerate, occurredAt =
#    when each is made; not timed, like the rows of step 4), then publishes
#    them to the firehose as fast as JetStream acknowledges them and polls ClickHouse
#    every 200 ms until all are queryable in analytics.events, counted the
#    dedup-correct way (uniqExact(event_id), see 0001_events.sql); the rate is
#    EVENTS / (time of the last poll - time of the first publish);
# 3. reads ingest's peak RSS (VmHWM) and CPU (utime + stime) before stopping it;
# 4. inserts the same events, as hot-tier rows generated beforehand
#    (eventgen --tsv, same seed), straight into a scratch copy of
#    analytics.events with clickhouse-client, timing only the insert (best of
#    BENCH_RAW_REPEAT runs): the raw rate ClickHouse takes on this machine,
#    raw_insert_per_s. Ingest writes every event twice (hot and audit tier),
#    so the same is done for the audit rows too and the rate of both, one
#    after the other, is printed beside it (not part of the last line);
# 5. publishes the same events again, on subjects of their own, into a stream
#    of their own, taken by bench/jsdrain, which acks each message at once and
#    does nothing else: the rate of the transport alone (JetStream storing,
#    delivering and taking acks, no ClickHouse), the ceiling of any consumer
#    on this machine; printed beside the others (not part of the last line).
#
# Ends with exactly one line:
#   bench ingest: events_per_s=N raw_insert_per_s=N ratio=R peak_rss_mb=M cpu_s=S
# Goals (issue 3): events_per_s >= 100000, ratio >= 0.5, peak_rss_mb < 150.
#
# Environment: BENCH_EVENTS, BENCH_SEED (1), BENCH_PUBLISHER (lean: eventgen
# --lean, the cheaper publisher, so the generator takes less of the 2 cores
# from the system under test; js: js_PublishAsync), BENCH_MSG_ID (0: no
# Nats-Msg-Id header; 1: one per event, which costs nats-server its duplicate
# tracking), BENCH_PREGENERATE (1; 0: eventgen makes each event just before
# publishing it, inside the timed window), BENCH_TIMEOUT_S (600),
# BENCH_RAW_REPEAT (2), BENCH_TRANSPORT (1; 0 skips step 5), BENCH_KEEP=1
# keeps the work dir (logs, metrics, rows file).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD_DIR=${ANALYTICS_BUILD_DIR:-$ROOT/build}
N=${1:-${BENCH_EVENTS:-1000000}}
SEED=${BENCH_SEED:-1}
PUBLISHER=${BENCH_PUBLISHER:-lean}
MSG_ID=${BENCH_MSG_ID:-0}
PREGENERATE=${BENCH_PREGENERATE:-1}
TIMEOUT_S=${BENCH_TIMEOUT_S:-600}
RAW_REPEAT=${BENCH_RAW_REPEAT:-2}
INGEST="$BUILD_DIR/bin/ingest"
EVENTGEN="$BUILD_DIR/bench/eventgen"
: "${ANALYTICS_CLICKHOUSE_URL:?run through bench/run.sh ingest (needs the stack env)}"

say() { printf '[bench ingest] %s\n' "$*" >&2; }

if [ ! -x "$INGEST" ]; then
    say "$INGEST is not built (the ingest service, issue 3): nothing to measure"
    exit 2
fi
[ -x "$EVENTGEN" ] || { say "$EVENTGEN is not built"; exit 2; }
case "$N" in '' | *[!0-9]* | 0) say "EVENTS must be a positive number, not '$N'"; exit 2 ;; esac

WORK=$(mktemp -d "${ANALYTICS_STACK_DIR:-${TMPDIR:-/tmp}}/bench-ingest.XXXXXX")
IPID=""
GPID=""
DPID=""
cleanup() {
    local rc=$?
    if [ -n "$GPID" ]; then kill "$GPID" 2>/dev/null || true; fi
    if [ -n "$DPID" ]; then kill "$DPID" 2>/dev/null || true; fi
    if [ -n "$IPID" ] && kill -0 "$IPID" 2>/dev/null; then
        kill -TERM "$IPID" 2>/dev/null || true
        for _ in $(seq 1 150); do kill -0 "$IPID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$IPID" 2>/dev/null || true
    fi
    rm -f "$WORK/rows.tsv" "$WORK/audit.tsv"
    if [ "${BENCH_KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then
        say "logs in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT

ch() { # SQL -> TabSeparated on stdout, as the ClickHouse admin
    curl -sS --fail-with-body --max-time 60 \
        -H "X-ClickHouse-User: $ANALYTICS_CLICKHOUSE_ADMIN_USER" \
        -H "X-ClickHouse-Key: $ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD" \
        --data-binary "$1" "$ANALYTICS_CLICKHOUSE_URL/"
}
now_ns() { date +%s%N; }
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
# utime + stime of a process, in clock ticks (the comm field may hold spaces)
cpu_ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
clk_tck=$(getconf CLK_TCK)
# busy ticks of the whole machine (all cores): total minus idle and iowait
machine_busy() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat; }
pid_of() { cat "$ANALYTICS_STACK_DIR/$1/pid" 2>/dev/null || echo ""; }
ticks_or_0() { if [ -n "$1" ] && [ -r "/proc/$1/stat" ]; then cpu_ticks "$1"; else echo 0; fi; }
secs() { awk -v t="$1" -v c="$clk_tck" 'BEGIN {printf "%.1f", t / c}'; }
# PID LOG PATTERN NAME: wait (at most 300 s) until LOG has a line matching PATTERN
wait_ready() {
    for ((i = 0; ; i++)); do
        grep -qs "$3" "$2" && return 0
        if ! kill -0 "$1" 2>/dev/null || [ $i -ge 30000 ]; then
            say "$4 did not get ready:"; cat "$2" >&2; exit 1
        fi
        sleep 0.01
    done
}
# dedup-correct count: redelivered copies of an event share its event_id
COUNT_EXACT="SELECT uniqExact(event_id) FROM analytics.events"

# ---- 1. ingest ---------------------------------------------------------------
export ANALYTICS_INGEST_HMAC_KEY=${ANALYTICS_INGEST_HMAC_KEY:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}
export ANALYTICS_LOG_LEVEL=${ANALYTICS_LOG_LEVEL:-info}
start_ingest() { # LOG: start ingest, wait for its ready line; sets IPID, HTTP_ADDR
    HTTP_ADDR="127.0.0.1:$(free_port)"
    ANALYTICS_HTTP_ADDR=$HTTP_ADDR "$INGEST" </dev/null >"$1" 2>&1 &
    IPID=$!
    say "ingest pid $IPID, http $HTTP_ADDR, log $1"
    for ((i = 0; i < 300; i++)); do
        grep -q 'ingest ready' "$1" && return 0
        if ! kill -0 "$IPID" 2>/dev/null; then
            say "ingest exited before it was ready:"; tail -20 "$1" >&2; exit 1
        fi
        sleep 0.1
    done
    say "no 'ingest ready' in 30 s:"; tail -20 "$1" >&2; exit 1
}
stop_ingest() { # SIGTERM, wait up to 30 s; sets st to its exit status
    kill -TERM "$IPID" 2>/dev/null || true
    st=0
    for _ in $(seq 1 300); do kill -0 "$IPID" 2>/dev/null || break; sleep 0.1; done
    wait "$IPID" || st=$?
    IPID=""
}
start_ingest "$WORK/ingest.log"
base=$(ch "$COUNT_EXACT")
want=$((base + N))
cpu_ready=$(cpu_ticks "$IPID")

# ---- 2. publish and wait until every event is queryable ----------------------
pub_args=(--publish "$N" --seed "$SEED" --window 0 --quiet)
[ "$PUBLISHER" = lean ] && pub_args+=(--lean)
[ "$MSG_ID" = 1 ] || pub_args+=(--no-msg-id)
# the events are made before the clock starts; eventgen waits for SIGUSR1
[ "$PREGENERATE" = 1 ] && pub_args+=(--pregenerate --wait-signal)
"$EVENTGEN" "${pub_args[@]}" 2>"$WORK/publish.log" &
GPID=$!
if [ "$PREGENERATE" = 1 ]; then
    say "making $N events (eventgen ${pub_args[*]}), not timed"
    wait_ready "$GPID" "$WORK/publish.log" '^eventgen: generated=' eventgen
fi
say "publishing $N events, waiting until analytics.events holds $want"
load_before=$(cut -d' ' -f1 /proc/loadavg)
NATS_PID=$(pid_of nats)
CH_PID=$(pid_of ch)
c0_nats=$(ticks_or_0 "$NATS_PID")
c0_ch=$(ticks_or_0 "$CH_PID")
c0_ingest=$(cpu_ticks "$IPID")
c0_machine=$(machine_busy)
t0=$(now_ns)
[ "$PREGENERATE" = 1 ] && kill -USR1 "$GPID"
t_done=""
seen=$base
last_progress=$t0
while :; do
    c=$(ch "SELECT count() FROM analytics.events" || echo 0)
    if [ "$c" -ge "$want" ]; then
        exact=$(ch "$COUNT_EXACT" || echo 0)
        if [ "$exact" -ge "$want" ]; then
            t_done=$(now_ns)
            c1_nats=$(ticks_or_0 "$NATS_PID")
            c1_ch=$(ticks_or_0 "$CH_PID")
            c1_ingest=$(cpu_ticks "$IPID")
            c1_machine=$(machine_busy)
            seen=$exact
            break
        fi
    fi
    now=$(now_ns)
    if [ "$c" -gt "$seen" ]; then
        seen=$c
        last_progress=$now
    fi
    if ! kill -0 "$IPID" 2>/dev/null; then
        say "ingest died at $seen of $want rows:"; tail -20 "$WORK/ingest.log" >&2; exit 1
    fi
    if [ $(((now - t0) / 1000000000)) -ge "$TIMEOUT_S" ]; then
        say "timeout after ${TIMEOUT_S}s: $seen of $want rows (last progress $(((now - last_progress) / 1000000)) ms ago)"
        tail -5 "$WORK/publish.log" >&2
        exit 1
    fi
    sleep 0.2
done
pub_rc=0
wait "$GPID" || pub_rc=$?
GPID=""
pub_line=$(grep '^eventgen: published=' "$WORK/publish.log" | tail -1 || true)
gen_s=$(sed -n 's/^eventgen: generated=.* seconds=\([0-9.]*\).*/\1/p' "$WORK/publish.log")
if [ $pub_rc -ne 0 ]; then
    say "eventgen failed ($pub_rc):"; cat "$WORK/publish.log" >&2; exit 1
fi
e2e_ms=$(((t_done - t0) / 1000000))
events_per_s=$((N * 1000 / (e2e_ms > 0 ? e2e_ms : 1)))
pub_rate=$(sed -n 's/.*events_per_s=\([0-9]*\).*/\1/p' <<<"$pub_line")
# Where the cores went between the first publish and the last poll. eventgen
# reports its own CPU (it ends before the last poll); "rest" is everything
# else on the machine: the polls, and other users' processes.
gen_cpu=$(sed -n 's/.*cpu_s=\([0-9.]*\).*/\1/p' <<<"$pub_line")
gen_ticks=$(awk -v s="${gen_cpu:-0}" -v c="$clk_tck" 'BEGIN {printf "%d", s * c}')
d_ch=$((c1_ch - c0_ch))
d_nats=$((c1_nats - c0_nats))
d_ingest=$((c1_ingest - c0_ingest))
d_rest=$((c1_machine - c0_machine - d_ch - d_nats - d_ingest - gen_ticks))
[ $d_rest -ge 0 ] || d_rest=0
cores=$(nproc)
cpu_line="clickhouse $(secs $d_ch), nats-server $(secs $d_nats), ingest $(secs $d_ingest), eventgen ${gen_cpu:-?}, rest $(secs $d_rest) of $cores x $(awk -v m="$e2e_ms" 'BEGIN {printf "%.1f", m / 1000}') s (load average $load_before before)"

# ---- 3. ingest's footprint ----------------------------------------------------
peak_rss_kb=$(awk '/^VmHWM:/ {print $2}' "/proc/$IPID/status")
cpu_end=$(cpu_ticks "$IPID")
curl -s --max-time 5 "http://$HTTP_ADDR/metrics" >"$WORK/metrics.txt" || true
sleep 1 # the audit tier of the last batch
audit=$(ch "SELECT uniqExact(event_id) FROM analytics_audit.events")
dead=$(ch "SELECT count() FROM analytics_audit.dead_letters")
dups=$(ch "SELECT count() - uniqExact(event_id) FROM analytics.events")
# ingested_at has whole seconds: +500 ms is the middle of its second
lat=$(ch "SELECT arrayStringConcat(arrayMap(x -> toString(round(x / 1000, 2)), quantiles(0.5, 0.95, 0.99)(
    toUInt64(ingested_at) * 1000 + 500 - (toUInt64(occurred_at) * 1000 + occurred_ms))), ' / ')
    FROM analytics.events" || echo "?")
stop_ingest

# ---- 3b. optional: how fast ingest drains a backlog --------------------------------
# (BENCH_BACKLOG=1) The same number of other events (seed + 1) published
# while ingest is stopped, then ingest started: no publisher competes for
# the cores, so this is ingest's own pace through JetStream into ClickHouse.
backlog_line=""
if [ "${BENCH_BACKLOG:-0}" = 1 ]; then
    bl_args=(--publish "$N" --seed "$((SEED + 1))" --window 0 --quiet)
    [ "$PUBLISHER" = lean ] && bl_args+=(--lean)
    [ "$MSG_ID" = 1 ] || bl_args+=(--no-msg-id)
    say "backlog: publishing $N more events while ingest is stopped"
    "$EVENTGEN" "${bl_args[@]}" 2>"$WORK/backlog-publish.log" || {
        say "backlog publish failed:"; cat "$WORK/backlog-publish.log" >&2; exit 1; }
    bl_want=$(($(ch "$COUNT_EXACT") + N))
    b0_ch=$(ticks_or_0 "$CH_PID")
    b0_nats=$(ticks_or_0 "$NATS_PID")
    b0_machine=$(machine_busy)
    tb0=$(now_ns)
    start_ingest "$WORK/ingest-backlog.log"
    cb0=$(cpu_ticks "$IPID")
    while :; do
        if [ "$(ch "SELECT count() FROM analytics.events" || echo 0)" -ge "$bl_want" ] &&
            [ "$(ch "$COUNT_EXACT" || echo 0)" -ge "$bl_want" ]; then
            break
        fi
        kill -0 "$IPID" 2>/dev/null || { say "ingest died draining the backlog"; exit 1; }
        [ $((($(now_ns) - tb0) / 1000000000)) -lt "$TIMEOUT_S" ] || { say "backlog: timeout"; exit 1; }
        sleep 0.2
    done
    bl_ms=$((($(now_ns) - tb0) / 1000000))
    b_ingest=$(($(cpu_ticks "$IPID") - cb0))
    b_ch=$(($(ticks_or_0 "$CH_PID") - b0_ch))
    b_nats=$(($(ticks_or_0 "$NATS_PID") - b0_nats))
    b_rest=$(($(machine_busy) - b0_machine - b_ch - b_nats - b_ingest))
    [ $b_rest -ge 0 ] || b_rest=0
    bl_cpu=$(secs $b_ingest)
    bl_rss=$(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$IPID/status")
    stop_ingest
    backlog_line="$((N * 1000 / (bl_ms > 0 ? bl_ms : 1))) events/s  ($N queued events queryable $bl_ms ms after ingest started; peak RSS $bl_rss MB)
                   CPU seconds: clickhouse $(secs $b_ch), nats-server $(secs $b_nats), ingest $bl_cpu, rest $(secs $b_rest) of $(nproc) x $(awk -v m="$bl_ms" 'BEGIN {printf "%.1f", m / 1000}') s"
fi

# ---- 4. the raw insert rate -----------------------------------------------------
# let the merges of ingest's parts finish, so the raw insert gets the same quiet machine
for _ in $(seq 1 60); do
    [ "$(ch 'SELECT count() FROM system.merges')" = 0 ] && break
    sleep 0.5
done
say "generating the same $N events as hot-tier and audit-tier rows (eventgen --tsv, not timed)"
"$EVENTGEN" --tsv "$N" --seed "$SEED" --window 0 >"$WORK/rows.tsv"
"$EVENTGEN" --tsv "$N" --seed "$SEED" --window 0 --tier audit >"$WORK/audit.tsv"
rows_mb=$(($(stat -c %s "$WORK/rows.tsv") / 1048576))
audit_mb=$(($(stat -c %s "$WORK/audit.tsv") / 1048576))
CLIENT=(clickhouse-client --host 127.0.0.1 --port "$ANALYTICS_CLICKHOUSE_TCP_PORT"
    --user "$ANALYTICS_CLICKHOUSE_ADMIN_USER" --password "$ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD")
raw_insert() { # TABLE (copy of) FILE -> "ms ticks": the best of RAW_REPEAT, ClickHouse's CPU in it
    local scratch=$1 like=$2 file=$3 best=0 best_ticks=0 ms got r c0
    for ((r = 1; r <= RAW_REPEAT; r++)); do
        ch "DROP TABLE IF EXISTS $scratch" >/dev/null
        ch "CREATE TABLE $scratch AS $like" >/dev/null
        c0=$(ticks_or_0 "$CH_PID")
        t1=$(now_ns)
        "${CLIENT[@]}" --query "INSERT INTO $scratch FORMAT TabSeparated" <"$file"
        ms=$((($(now_ns) - t1) / 1000000))
        c0=$(($(ticks_or_0 "$CH_PID") - c0))
        got=$(ch "SELECT count() FROM $scratch")
        [ "$got" = "$N" ] || { say "raw insert into $scratch stored $got of $N rows"; exit 1; }
        say "raw insert into a copy of $like, run $r: $N rows in $ms ms, ClickHouse CPU $(secs $c0) s"
        if [ $best -eq 0 ] || [ "$ms" -lt $best ]; then best=$ms best_ticks=$c0; fi
    done
    ch "DROP TABLE IF EXISTS $scratch" >/dev/null
    echo "$best $best_ticks"
}
raw_hot=$(raw_insert analytics.bench_raw_events analytics.events "$WORK/rows.tsv")
raw_audit=$(raw_insert analytics_audit.bench_raw_events analytics_audit.events "$WORK/audit.tsv")
read -r best_ms hot_ticks <<<"$raw_hot"
read -r audit_ms audit_ticks <<<"$raw_audit"
raw_per_s=$((N * 1000 / (best_ms > 0 ? best_ms : 1)))
both_ms=$((best_ms + audit_ms))
raw_both_per_s=$((N * 1000 / (both_ms > 0 ? both_ms : 1)))

# ---- 5. the transport alone -------------------------------------------------------
# The same events (made beforehand, published the same way, on subjects of
# their own) into a stream of their own, taken by bench/jsdrain: a durable
# pull consumer with ingest's settings that acks each message at once and
# does nothing else. No parsing, no rows, no ClickHouse: how fast JetStream
# alone stores, delivers and takes the acks on this machine, the ceiling of
# any consumer (BENCH_TRANSPORT=0 skips it).
transport_line=""
JSDRAIN="$BUILD_DIR/bench/jsdrain"
if [ "${BENCH_TRANSPORT:-1}" = 1 ] && [ -x "$JSDRAIN" ]; then
    say "transport alone: $N events published to a stream of their own, acked at once by bench/jsdrain"
    "$JSDRAIN" BENCH_TRANSPORT 'benchtransport.>' "$N" >"$WORK/jsdrain.log" 2>&1 &
    DPID=$!
    wait_ready "$DPID" "$WORK/jsdrain.log" '^jsdrain: ready' jsdrain
    tr_args=("${pub_args[@]}" --prefix benchtransport)
    "$EVENTGEN" "${tr_args[@]}" 2>"$WORK/transport-publish.log" &
    GPID=$!
    if [ "$PREGENERATE" = 1 ]; then
        wait_ready "$GPID" "$WORK/transport-publish.log" '^eventgen: generated=' eventgen
    fi
    d0_nats=$(ticks_or_0 "$NATS_PID")
    td0=$(now_ns)
    [ "$PREGENERATE" = 1 ] && kill -USR1 "$GPID"
    drc=0
    wait "$DPID" || drc=$?
    DPID=""
    td1=$(now_ns)
    d_nats_tr=$(($(ticks_or_0 "$NATS_PID") - d0_nats))
    wait "$GPID" || { say "eventgen failed:"; cat "$WORK/transport-publish.log" >&2; exit 1; }
    GPID=""
    [ $drc -eq 0 ] || { say "jsdrain failed ($drc):"; cat "$WORK/jsdrain.log" >&2; exit 1; }
    tr_ms=$(((td1 - td0) / 1000000))
    tr_per_s=$((N * 1000 / (tr_ms > 0 ? tr_ms : 1)))
    tr_drain_cpu=$(sed -n 's/^jsdrain: drained=.* cpu_s=\([0-9.]*\).*/\1/p' "$WORK/jsdrain.log")
    tr_gen_cpu=$(sed -n 's/^eventgen: published=.* cpu_s=\([0-9.]*\).*/\1/p' "$WORK/transport-publish.log")
    transport_line="$tr_per_s events/s  ($N events published and acked by a consumer doing nothing else, $tr_ms ms after the first publish; ingest reaches $(awk -v a="$events_per_s" -v b="$tr_per_s" 'BEGIN {printf "%.2f", b ? a / b : 0}') of it)
                   CPU seconds: nats-server $(secs $d_nats_tr), jsdrain ${tr_drain_cpu:-?}, eventgen ${tr_gen_cpu:-?}"
fi

# ---- summary ---------------------------------------------------------------------
ratio=$(awk -v a="$events_per_s" -v b="$raw_per_s" 'BEGIN {printf "%.2f", b ? a / b : 0}')
peak_rss_mb=$(awk -v k="$peak_rss_kb" 'BEGIN {printf "%.1f", k / 1024}')
cpu_s=$(awk -v t="$cpu_end" -v c="$clk_tck" 'BEGIN {printf "%.2f", t / c}')
cpu_run_s=$(awk -v t="$cpu_end" -v r="$cpu_ready" -v c="$clk_tck" 'BEGIN {printf "%.2f", (t - r) / c}')
verdict() { if awk "BEGIN {exit !($1)}"; then echo met; else echo "NOT met"; fi; }
cat <<EOF

ingest bench: $N events, seed $SEED, ${PUBLISHER} publisher, Nats-Msg-Id $([ "$MSG_ID" = 1 ] && echo on || echo off), events made $([ "$PREGENERATE" = 1 ] && echo "before the clock starts" || echo "while publishing")
  end to end       $events_per_s events/s  ($N events queryable in analytics.events $e2e_ms ms after the first publish)
  publish          ${pub_rate:-?} events/s acknowledged by JetStream  (${pub_line#eventgen: })
  CPU seconds      $cpu_line
  latency          p50 / p95 / p99 = $lat s  (occurredAt -> ingested_at; includes queueing behind the backlog${gen_s:+ and the $gen_s s it took to make the events})
  tiers            hot $seen, audit $audit, dead letters $dead, duplicate rows in hot tier $dups (collapse at merge)
  ingest           peak RSS $peak_rss_mb MB, CPU $cpu_s s (of which $cpu_run_s s during the run), exit status $st after SIGTERM
${backlog_line:+  backlog drain    $backlog_line
}  raw insert       $raw_per_s rows/s  (clickhouse-client, TabSeparated, ${rows_mb} MB, best of $RAW_REPEAT into a copy of analytics.events)
  raw, both tiers  $raw_both_per_s events/s  (the hot rows, then the audit rows, ${audit_mb} MB, into copies: $best_ms + $audit_ms ms, ClickHouse CPU $(secs $((hot_ticks + audit_ticks))) s; ingest reaches $(awk -v a="$events_per_s" -v b="$raw_both_per_s" 'BEGIN {printf "%.2f", b ? a / b : 0}') of it)
${transport_line:+  transport alone  $transport_line
}  goals            >= 100000 events/s: $(verdict "$events_per_s >= 100000"); ratio >= 0.5: $(verdict "$ratio >= 0.5"); RSS < 150 MB: $(verdict "$peak_rss_mb < 150")
EOF
if [ -s "$WORK/metrics.txt" ]; then
    echo "  ingest /metrics at the end (events, rows, batches):"
    grep -v '^#' "$WORK/metrics.txt" | grep -Ei 'event|row|batch|reject|lag' |
        grep -v -e '_bucket{' -e '^[a-z_]*rejects_total{.*} 0$' | head -25 | sed 's/^/    /'
fi
echo "bench ingest: events_per_s=$events_per_s raw_insert_per_s=$raw_per_s ratio=$ratio peak_rss_mb=$peak_rss_mb cpu_s=$cpu_s"
