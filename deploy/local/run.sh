#!/usr/bin/env bash
# The main-job command (README): on a fresh Debian bookworm, as root,
#
#   deploy/local/run.sh            install, build, start the stack and the
#                                  services, show what runs, stop everything
#   deploy/local/run.sh --keep     the same, but keep it all running until
#                                  Ctrl-C (prints how to reach it)
#
# Steps: stack.sh install (apt-get what is missing), make, stack.sh start
# (nats-server, redis-server, clickhouse-server on loopback ports of their own
# under a temp dir, ClickHouse migrations applied), start every service binary
# that exists under build/bin/, show servers, schema, migrations, services and
# their /healthz, run the demo steps that exist (deploy/local/demo.d/*.sh, in
# name order, each with the stack env, RUN_STACK_DIR, RUN_BUILD_DIR and
# RUN_KEEP (1 with --keep: what they print may be used afterwards); a
# service's pid and http address are in $RUN_STACK_DIR/services/NAME.pid and
# NAME.addr), then stop everything - also on error
# or Ctrl-C.
#
# Environment: BUILD (default build), RUN_SERVICE_WAIT_S (default 15: how long
# a service may take to answer /healthz).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
BUILD=${BUILD:-build}
WAIT_S=${RUN_SERVICE_WAIT_S:-15}
SERVICES="ingest metrics dashboards reports exports cohorts alerts"

KEEP=0
case "${1:-}" in
"") ;;
--keep) KEEP=1 ;;
-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
*) echo "usage: $0 [--keep]" >&2; exit 2 ;;
esac

section() { printf '\n== %s ==\n' "$*"; }
note() { printf '  %s\n' "$*"; }

STACK=""
declare -A PIDS=() PORTS=()
FAILED=0

cleanup() {
    local rc=$? name pid i st
    trap - EXIT INT TERM
    if [ ${#PIDS[@]} -gt 0 ]; then
        section "Stopping"
        # SIGTERM first: the services drain (finish or hand back work) and exit 0.
        for name in "${!PIDS[@]}"; do
            kill -TERM "${PIDS[$name]}" 2>/dev/null || true
        done
        for name in "${!PIDS[@]}"; do
            pid=${PIDS[$name]}
            for ((i = 0; i < 150; i++)); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            if kill -0 "$pid" 2>/dev/null; then
                note "$name did not stop in 15 s after SIGTERM, killing it"
                kill -KILL "$pid" 2>/dev/null || true
            fi
            st=0
            wait "$pid" 2>/dev/null || st=$?
            note "$name stopped (exit $st)"
        done
    fi
    if [ -n "$STACK" ]; then
        ./deploy/local/stack.sh stop "$STACK" || true
        if [ $KEEP -eq 0 ] && [ $rc -eq 0 ] && [ $FAILED -eq 0 ]; then
            rm -rf "$STACK"
        else
            note "state and logs kept in $STACK"
        fi
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

ch_admin() { # SQL -> stdout (pretty formats for people)
    curl -sS --max-time 30 -H "X-ClickHouse-User: $ANALYTICS_CLICKHOUSE_ADMIN_USER" \
        -H "X-ClickHouse-Key: $ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD" \
        --data-binary "$1" "$ANALYTICS_CLICKHOUSE_URL/"
}

# ---------------------------------------------------------------------------
section "Packages"
if [ "$(id -u)" -ne 0 ]; then
    note "not root: installing only works when nothing is missing"
fi
./deploy/local/stack.sh install
note "all runtime and build packages present"

section "Build"
LOG="${TMPDIR:-/tmp}/analytics-run-build.$$.log"
if ! make -j"$(nproc)" BUILD="$BUILD" all >"$LOG" 2>&1; then
    tail -40 "$LOG"
    echo "build failed (full log: $LOG)" >&2
    exit 1
fi
rm -f "$LOG"
built=()
for name in $SERVICES; do
    [ -x "$BUILD/bin/$name" ] && built+=("$name")
done
note "built into $BUILD/: libanalytics.a, tests/run_tests, ${#built[@]} of 7 services${built[*]:+ (${built[*]})}"

section "Stack"
# The dir is made here, not by stack.sh, so that an interrupt during the
# start still lets cleanup stop what already runs.
STACK=$(mktemp -d /tmp/analytics-stack.XXXXXX)
./deploy/local/stack.sh start "$STACK" >/dev/null
# shellcheck disable=SC1091
. "$STACK/env"
note "state dir   $STACK"
note "nats        $ANALYTICS_NATS_URL (JetStream on; monitoring $ANALYTICS_NATS_MONITOR_URL)"
note "redis       $ANALYTICS_REDIS_URL (AOF on)"
note "clickhouse  $ANALYTICS_CLICKHOUSE_URL (http), tcp port $ANALYTICS_CLICKHOUSE_TCP_PORT, version $(ch_admin 'SELECT version()')"
note "clickhouse users: $ANALYTICS_CLICKHOUSE_ADMIN_USER (admin, migrations)," \
    "$ANALYTICS_CLICKHOUSE_USER (writes both tiers)," \
    "$ANALYTICS_CLICKHOUSE_READER_USER (readonly, analytics only)," \
    "$ANALYTICS_CLICKHOUSE_AUDIT_USER (readonly, analytics_audit only)"

section "Schema"
ch_admin "SELECT database, name, engine, rows FROM system.tables
ANY LEFT JOIN (SELECT database, table AS name, sum(rows) AS rows FROM system.parts
               WHERE active GROUP BY database, table) USING (database, name)
WHERE database IN ('analytics', 'analytics_audit') ORDER BY database, name
FORMAT PrettyCompactNoEscapes" | sed 's/^/  /'
printf '\n  migrations (deploy/clickhouse/migrate.sh status):\n'
./deploy/clickhouse/migrate.sh status | sed 's/^/    /'

# ---------------------------------------------------------------------------
section "Services"
# Shared by the services of this run; appended to the stack env so that
# `--keep` users who source it can mint tokens the services accept.
JWT_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
HMAC_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
cat >>"$STACK/env" <<ENV
# added by deploy/local/run.sh for the services it starts
export ANALYTICS_JWT_SECRET=$JWT_SECRET
export ANALYTICS_INGEST_HMAC_KEY=$HMAC_KEY
export ANALYTICS_LOG_LEVEL=\${ANALYTICS_LOG_LEVEL:-info}
ENV
# shellcheck disable=SC1091
. "$STACK/env"
mkdir -p "$STACK/services"
for name in $SERVICES; do
    bin="$BUILD/bin/$name"
    if [ ! -x "$bin" ]; then
        note "$(printf '%-11s' "$name") not built yet ($bin does not exist)"
        continue
    fi
    port=$(free_port)
    extra=()
    if [ "$name" = exports ]; then
        # exports read as analytics_exporter: the reader's rules, time for big files
        extra=(ANALYTICS_CLICKHOUSE_READER_USER="$ANALYTICS_CLICKHOUSE_EXPORTER_USER"
            ANALYTICS_CLICKHOUSE_READER_PASSWORD="$ANALYTICS_CLICKHOUSE_EXPORTER_PASSWORD")
    fi
    env "${extra[@]}" ANALYTICS_HTTP_ADDR="127.0.0.1:$port" "$bin" </dev/null >>"$STACK/services/$name.log" 2>&1 &
    PIDS[$name]=$!
    PORTS[$name]=$port
    # for the demo steps: which pid and address each service has
    echo "${PIDS[$name]}" >"$STACK/services/$name.pid"
    echo "127.0.0.1:$port" >"$STACK/services/$name.addr"
    note "$(printf '%-11s' "$name") started, pid ${PIDS[$name]}, http 127.0.0.1:$port, log $STACK/services/$name.log"
done
if [ ${#PIDS[@]} -eq 0 ]; then
    note "no service binary exists yet: nothing to start"
fi

if [ ${#PIDS[@]} -gt 0 ]; then
    section "Health"
    for name in $SERVICES; do
        [ -n "${PIDS[$name]:-}" ] || continue
        url="http://127.0.0.1:${PORTS[$name]}/healthz"
        code=000
        for ((i = 0; i < WAIT_S * 10; i++)); do
            if ! kill -0 "${PIDS[$name]}" 2>/dev/null; then
                code=exited
                break
            fi
            code=$(curl -s -o "$STACK/services/$name.healthz" -w '%{http_code}' --max-time 2 "$url" || true)
            [ "$code" = 200 ] && break
            sleep 0.1
        done
        if [ "$code" = 200 ]; then
            note "$(printf '%-11s' "$name") GET $url -> 200 $(head -c 200 "$STACK/services/$name.healthz")"
        elif [ "$code" = exited ]; then
            note "$(printf '%-11s' "$name") EXITED before answering; last log lines:"
            tail -5 "$STACK/services/$name.log" | sed 's/^/      /'
            unset "PIDS[$name]"
            FAILED=1
        else
            note "$(printf '%-11s' "$name") GET $url -> $code after ${WAIT_S}s; last log lines:"
            tail -5 "$STACK/services/$name.log" | sed 's/^/      /'
            FAILED=1
        fi
    done
fi

# ---------------------------------------------------------------------------
section "Demo"
steps=()
if [ -d deploy/local/demo.d ]; then
    for s in deploy/local/demo.d/*.sh; do
        [ -e "$s" ] && steps+=("$s")
    done
fi
if [ ${#steps[@]} -eq 0 ]; then
    note "no demo steps yet (deploy/local/demo.d/*.sh): no sample traffic is published"
fi
passed=0
for s in "${steps[@]}"; do
    printf '\n-- %s\n' "$(basename "$s" .sh)"
    if ! RUN_STACK_DIR="$STACK" RUN_BUILD_DIR="$BUILD" RUN_KEEP="$KEEP" bash "$s" 2>&1 | sed 's/^/  /'; then
        note "step $(basename "$s") FAILED"
        FAILED=1
    else
        passed=$((passed + 1))
    fi
done

# ---------------------------------------------------------------------------
if [ $KEEP -eq 1 ]; then
    section "Running (Ctrl-C stops everything)"
    note "reach the stack from another shell:  . $STACK/env"
    note "ClickHouse as the reader:  curl -sS -H \"X-ClickHouse-User: \$ANALYTICS_CLICKHOUSE_READER_USER\" -H \"X-ClickHouse-Key: \$ANALYTICS_CLICKHOUSE_READER_PASSWORD\" --data-binary 'SELECT count() FROM analytics.events' \"\$ANALYTICS_CLICKHOUSE_URL/\""
    note "tests against it:          ANALYTICS_BUILD_DIR=$ROOT/$BUILD $BUILD/tests/run_tests integration"
    note "logs:                      $STACK/services/*.log, $STACK/{nats,redis,ch}/"
    # A non-interactive shell's background jobs ignore SIGINT: Ctrl-C reaches
    # this shell only, which ends the wait and goes on to stop everything.
    sleep infinity &
    sleeper=$!
    trap 'kill $sleeper 2>/dev/null || true' INT TERM
    wait $sleeper 2>/dev/null || true
    trap 'exit 130' INT
    trap 'exit 143' TERM
fi

section "Result"
if [ $FAILED -ne 0 ]; then
    note "something failed (see above)"
    exit 1
fi
note "ok: stack up, ${#built[@]} of 7 services built, ${#PIDS[@]} running and healthy, schema at" \
    "$(./deploy/clickhouse/migrate.sh status | grep -c '^applied') migrations, $passed of" \
    "${#steps[@]} demo steps passed"
