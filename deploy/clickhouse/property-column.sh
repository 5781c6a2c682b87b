#!/usr/bin/env bash
# Materialized property columns of analytics.events: for the property
# paths dashboards and metrics group or filter by most, a String column
# that ClickHouse fills as rows are inserted with
#   prop_values[indexOf(prop_keys, '<path>')]
# so a query reads one short column instead of the two arrays. The metrics
# service finds these columns in system.columns by that exact expression
# (ANALYTICS_METRICS_COLUMNS_REFRESH) and uses them for
# `properties.<path>` dimensions and filters; results are the same with or
# without them.
#
#   property-column.sh add PATH [PATH...]    add one column per path (idempotent)
#   property-column.sh drop PATH [PATH...]   drop them again
#   property-column.sh list                  the property columns there are
#
# PATH is a property path as metrics write it without "properties.", e.g.
# country or course.id; the column is named p_<path with . as __>.
# Rows stored before the column existed compute it when read (as fast as
# before); merges and new inserts store it. To store it in old parts at
# once (heavy: rewrites the table), run OPTIMIZE TABLE analytics.events FINAL.
#
# Environment: ANALYTICS_CLICKHOUSE_URL, ANALYTICS_CLICKHOUSE_ADMIN_USER /
# ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD (a user allowed to run DDL).
# Exit status: 0 done, 1 ClickHouse refused, 2 usage.
set -euo pipefail

usage() { sed -n '12,15p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
: "${ANALYTICS_CLICKHOUSE_URL:?ANALYTICS_CLICKHOUSE_URL is not set}"
ch() {
    curl -sS --fail-with-body --max-time 300 \
        -H "X-ClickHouse-User: ${ANALYTICS_CLICKHOUSE_ADMIN_USER:-default}" \
        -H "X-ClickHouse-Key: ${ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD:-}" \
        --data-binary "$1" "$ANALYTICS_CLICKHOUSE_URL/"
}
column_of() { printf 'p_%s' "${1//./__}"; }
check_path() {
    [[ "$1" =~ ^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*){0,7}$ ]] || {
        echo "property-column.sh: '$1' is not a property path (names of [A-Za-z0-9_] joined by '.')" >&2
        exit 2
    }
}
exists() {
    [ "$(ch "SELECT count() FROM system.columns WHERE database = 'analytics' AND table = 'events' AND name = '$1'")" != 0 ]
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
add)
    [ $# -gt 0 ] || usage
    for p in "$@"; do check_path "$p"; done
    for p in "$@"; do
        col=$(column_of "$p")
        if exists "$col"; then
            echo "analytics.events.$col (properties.$p) is there already"
            continue
        fi
        ch "ALTER TABLE analytics.events ADD COLUMN $col String MATERIALIZED prop_values[indexOf(prop_keys, '$p')]" >/dev/null
        echo "analytics.events.$col now holds properties.$p"
    done
    ;;
drop)
    [ $# -gt 0 ] || usage
    for p in "$@"; do check_path "$p"; done
    for p in "$@"; do
        col=$(column_of "$p")
        if exists "$col"; then
            ch "ALTER TABLE analytics.events DROP COLUMN $col" >/dev/null
            echo "analytics.events.$col dropped"
        fi
    done
    ;;
list)
    ch "SELECT name, default_expression FROM system.columns WHERE database = 'analytics' AND table = 'events' AND default_kind = 'MATERIALIZED' ORDER BY name"
    ;;
*) usage ;;
esac
