#!/usr/bin/env bash
# ClickHouse insert throughput: the common batch insert (common/ch.h, TSV and
# RowBinary) against clickhouse-client on the same rows. Needs the stack's
# env (bench/run.sh chinsert sources it).
#
#   bench/chinsert.sh [ROWS]        default 1000000; CHINSERT_BATCH, CHINSERT_REPEAT
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="${ANALYTICS_BUILD_DIR:-$ROOT/build}/bench/chinsert"
exec "$BIN" "${1:-1000000}"
