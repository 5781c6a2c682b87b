#!/usr/bin/env bash
# Local stack: nats-server (JetStream), redis-server and clickhouse-server on
# loopback ports of their own, all state under one temp dir.
#
#   stack.sh install          apt-get install whatever is missing
#   stack.sh start [DIR]      start the three servers, wait, apply migrations,
#                             write DIR/env (source it to reach the stack)
#   stack.sh stop DIR         stop them cleanly
#
# DIR defaults to a fresh mktemp dir; its path is printed on stdout last.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

PKGS_RUNTIME="nats-server redis-server clickhouse-server clickhouse-client python3 python3-yaml python3-openpyxl curl ca-certificates"
PKGS_BUILD="build-essential pkg-config libnats-dev libhiredis-dev libcjson-dev libuv1-dev \
libcurl4-openssl-dev libssl-dev libjwt-dev libxlsxwriter-dev check libsubunit-dev clang-format cppcheck \
libcairo2-dev"

log() { printf '[stack] %s\n' "$*" >&2; }

cmd_install() {
    local missing=()
    for p in $PKGS_RUNTIME $PKGS_BUILD "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    install_s3rver
}

# s3rver (npm), an S3-compatible server for the exports tests; pinned, in a
# cache dir outside the repository (ANALYTICS_S3RVER_DIR overrides it).
S3RVER_VERSION=3.7.1
S3RVER_DIR=${ANALYTICS_S3RVER_DIR:-/var/cache/analytics/s3rver}

install_s3rver() {
    [ -x "$S3RVER_DIR/node_modules/.bin/s3rver" ] && return 0
    if ! command -v npm >/dev/null 2>&1; then
        log "npm is missing: installing nodejs and npm"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >/dev/null
        apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    log "installing s3rver $S3RVER_VERSION into $S3RVER_DIR"
    mkdir -p "$S3RVER_DIR"
    npm install --prefix "$S3RVER_DIR" --no-audit --no-fund --loglevel=error \
        "s3rver@$S3RVER_VERSION" >/dev/null
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for() { # name timeout_s command...
    local name=$1 t=$2; shift 2
    local i=0
    until "$@" >/dev/null 2>&1; do
        i=$((i + 1))
        if [ $i -gt $((t * 10)) ]; then
            log "$name did not come up in ${t}s"
            return 1
        fi
        sleep 0.1
    done
}

write_clickhouse_config() {
    local dir=$1 http=$2 tcp=$3
    mkdir -p "$dir/ch/data" "$dir/ch/tmp" "$dir/ch/user_files" "$dir/ch/format_schemas"
    cat >"$dir/ch/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <logger>
        <level>warning</level>
        <log>$dir/ch/server.log</log>
        <errorlog>$dir/ch/server.err.log</errorlog>
        <size>100M</size>
        <count>2</count>
    </logger>
    <http_port>$http</http_port>
    <tcp_port>$tcp</tcp_port>
    <listen_host>127.0.0.1</listen_host>
    <max_connections>1024</max_connections>
    <keep_alive_timeout>30</keep_alive_timeout>
    <max_concurrent_queries>100</max_concurrent_queries>
    <uncompressed_cache_size>1073741824</uncompressed_cache_size>
    <mark_cache_size>1073741824</mark_cache_size>
    <path>$dir/ch/data/</path>
    <tmp_path>$dir/ch/tmp/</tmp_path>
    <user_files_path>$dir/ch/user_files/</user_files_path>
    <format_schema_path>$dir/ch/format_schemas/</format_schema_path>
    <users_config>$dir/ch/users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <timezone>UTC</timezone>
    <mlock_executable>false</mlock_executable>
    <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
    <max_session_timeout>3600</max_session_timeout>
    <default_session_timeout>60</default_session_timeout>
    <merge_tree>
        <parts_to_delay_insert>300</parts_to_delay_insert>
        <parts_to_throw_insert>600</parts_to_throw_insert>
    </merge_tree>
</yandex>
XML
    # Users: default (admin, migrations), a writer, a readonly reader
    # limited to the hot tier, an audit reader limited to the audit tier.
    cat >"$dir/ch/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
    <profiles>
        <default>
            <max_memory_usage>4000000000</max_memory_usage>
            <use_uncompressed_cache>0</use_uncompressed_cache>
            <load_balancing>random</load_balancing>
        </default>
        <writer>
            <max_memory_usage>4000000000</max_memory_usage>
            <!-- no max_partitions_per_insert_block: 18.16 does not know it and
                 then refuses every query of the user ("Unknown setting"). -->
        </writer>
        <reader>
            <!-- 1, not 2: readonly=2 would let the reader change settings per
                 query and use table functions (url(), remote(), file()). -->
            <readonly>1</readonly>
            <max_memory_usage>2000000000</max_memory_usage>
            <max_execution_time>30</max_execution_time>
            <max_result_rows>1000000000</max_result_rows>
        </reader>
        <exporter>
            <!-- the reader's rules, with time for long exports (a 5M-row xlsx
                 streams for over 30 s: the result is read as fast as the
                 writer can compress it) -->
            <readonly>1</readonly>
            <max_memory_usage>2000000000</max_memory_usage>
            <max_execution_time>900</max_execution_time>
            <max_result_rows>1000000000</max_result_rows>
        </exporter>
        <audit>
            <!-- readonly=1 as well: the audit tier is read, never queried with
                 per-query settings or table functions. -->
            <readonly>1</readonly>
            <max_memory_usage>2000000000</max_memory_usage>
            <max_execution_time>60</max_execution_time>
        </audit>
    </profiles>
    <users>
        <default>
            <password>${AN_CH_ADMIN_PASSWORD}</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>default</profile>
            <quota>default</quota>
        </default>
        <analytics_writer>
            <password>${AN_CH_WRITER_PASSWORD}</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>writer</profile>
            <quota>default</quota>
            <allow_databases>
                <database>analytics</database>
                <database>analytics_audit</database>
            </allow_databases>
        </analytics_writer>
        <analytics_reader>
            <password>${AN_CH_READER_PASSWORD}</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>reader</profile>
            <quota>default</quota>
            <allow_databases>
                <database>analytics</database>
            </allow_databases>
        </analytics_reader>
        <analytics_exporter>
            <password>${AN_CH_EXPORTER_PASSWORD}</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>exporter</profile>
            <quota>default</quota>
            <allow_databases>
                <database>analytics</database>
            </allow_databases>
        </analytics_exporter>
        <analytics_audit>
            <password>${AN_CH_AUDIT_PASSWORD}</password>
            <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
            <profile>audit</profile>
            <quota>default</quota>
            <allow_databases>
                <database>analytics_audit</database>
            </allow_databases>
        </analytics_audit>
    </users>
    <quotas>
        <default>
            <interval>
                <duration>3600</duration>
                <queries>0</queries>
                <errors>0</errors>
                <result_rows>0</result_rows>
                <read_rows>0</read_rows>
                <execution_time>0</execution_time>
            </interval>
        </default>
    </quotas>
</yandex>
XML
}

cmd_start() {
    local dir=${1:-}
    if [ -z "$dir" ]; then
        dir=$(mktemp -d /tmp/analytics-stack.XXXXXX)
    fi
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)

    local nats_port nats_mon redis_port ch_http ch_tcp
    nats_port=$(free_port); nats_mon=$(free_port); redis_port=$(free_port)
    ch_http=$(free_port); ch_tcp=$(free_port)
    export AN_CH_ADMIN_PASSWORD AN_CH_WRITER_PASSWORD AN_CH_READER_PASSWORD AN_CH_AUDIT_PASSWORD AN_CH_EXPORTER_PASSWORD
    AN_CH_ADMIN_PASSWORD=admin-$RANDOM$RANDOM
    AN_CH_WRITER_PASSWORD=writer-$RANDOM$RANDOM
    AN_CH_READER_PASSWORD=reader-$RANDOM$RANDOM
    AN_CH_EXPORTER_PASSWORD=exporter-$RANDOM$RANDOM
    AN_CH_AUDIT_PASSWORD=audit-$RANDOM$RANDOM

    log "state in $dir"
    # nats-server with JetStream
    mkdir -p "$dir/nats"
    nats-server -a 127.0.0.1 -p "$nats_port" -m "$nats_mon" -js -sd "$dir/nats" \
        -l "$dir/nats/server.log" -P "$dir/nats/pid" </dev/null >>"$dir/nats/stdout.log" 2>&1 &
    # (its stdout must not be the caller's: `D=$(stack.sh start)` would wait for it)
    # redis-server, AOF on so a restart loses no queued job
    mkdir -p "$dir/redis"
    redis-server --bind 127.0.0.1 --port "$redis_port" --dir "$dir/redis" \
        --appendonly yes --appendfsync everysec --save "" --daemonize yes \
        --pidfile "$dir/redis/pid" --logfile "$dir/redis/server.log"
    # clickhouse-server
    write_clickhouse_config "$dir" "$ch_http" "$ch_tcp"
    clickhouse-server --config-file="$dir/ch/config.xml" --pid-file="$dir/ch/pid" --daemon \
        >"$dir/ch/stdout.log" 2>&1 || { log "clickhouse-server failed to start"; cat "$dir/ch/stdout.log" >&2; }

    cat >"$dir/env" <<ENV
export ANALYTICS_STACK_DIR=$dir
export ANALYTICS_NATS_URL=nats://127.0.0.1:$nats_port
export ANALYTICS_NATS_MONITOR_URL=http://127.0.0.1:$nats_mon
export ANALYTICS_REDIS_URL=redis://127.0.0.1:$redis_port/0
export ANALYTICS_CLICKHOUSE_URL=http://127.0.0.1:$ch_http
export ANALYTICS_CLICKHOUSE_TCP_PORT=$ch_tcp
export ANALYTICS_CLICKHOUSE_USER=analytics_writer
export ANALYTICS_CLICKHOUSE_PASSWORD=$AN_CH_WRITER_PASSWORD
export ANALYTICS_CLICKHOUSE_ADMIN_USER=default
export ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD=$AN_CH_ADMIN_PASSWORD
export ANALYTICS_CLICKHOUSE_READER_USER=analytics_reader
export ANALYTICS_CLICKHOUSE_READER_PASSWORD=$AN_CH_READER_PASSWORD
export ANALYTICS_CLICKHOUSE_EXPORTER_USER=analytics_exporter
export ANALYTICS_CLICKHOUSE_EXPORTER_PASSWORD=$AN_CH_EXPORTER_PASSWORD
export ANALYTICS_CLICKHOUSE_AUDIT_USER=analytics_audit
export ANALYTICS_CLICKHOUSE_AUDIT_PASSWORD=$AN_CH_AUDIT_PASSWORD
ENV

    wait_for nats-server 20 curl -sf "http://127.0.0.1:$nats_mon/healthz" || { cmd_stop "$dir"; return 1; }
    wait_for redis-server 20 redis-cli -p "$redis_port" ping || { cmd_stop "$dir"; return 1; }
    wait_for clickhouse-server 90 curl -sf "http://127.0.0.1:$ch_http/ping" || {
        tail -20 "$dir/ch/server.err.log" >&2 || true; cmd_stop "$dir"; return 1; }
    log "nats :$nats_port  redis :$redis_port  clickhouse http :$ch_http tcp :$ch_tcp"

    # shellcheck disable=SC1091
    . "$dir/env"
    "$ROOT/deploy/clickhouse/migrate.sh" >&2 || { cmd_stop "$dir"; return 1; }
    echo "$dir"
}

stop_pid() { # name pidfile timeout_s
    local name=$1 pidfile=$2 t=$3 pid i=0
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile" 2>/dev/null || true)
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt $((t * 10)) ]; then
            log "$name did not stop in ${t}s, killing"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    rm -f "$pidfile"
}

cmd_stop() {
    local dir=${1:?stack dir}
    stop_pid clickhouse-server "$dir/ch/pid" 30
    stop_pid redis-server "$dir/redis/pid" 10
    stop_pid nats-server "$dir/nats/pid" 10
    log "stopped ($dir)"
}

case "${1:-}" in
install) shift; cmd_install "$@" ;;
start) shift; cmd_start "$@" ;;
stop) shift; cmd_stop "$@" ;;
*) echo "usage: $0 install|start [DIR]|stop DIR" >&2; exit 2 ;;
esac
