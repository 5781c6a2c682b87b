#!/usr/bin/env bash
# Run one benchmark against a local stack of its own (what `make bench-NAME` runs):
# installs what is missing, builds, starts the stack, sources its env, runs
# bench/NAME.sh, stops the stack whatever happens.
#
#   bench/run.sh NAME [ARGS...]      e.g. bench/run.sh chinsert 1000000
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
NAME=${1:?usage: bench/run.sh NAME [ARGS...]}
shift
if [ ! -x "bench/$NAME.sh" ]; then
    echo "bench/run.sh: no bench/$NAME.sh" >&2
    exit 2
fi
BUILD=${BUILD:-build}

./deploy/local/stack.sh install
make -j"$(nproc)" BUILD="$BUILD" all >"${TMPDIR:-/tmp}/analytics-bench-build.log" 2>&1 || {
    tail -40 "${TMPDIR:-/tmp}/analytics-bench-build.log"; echo "build failed" >&2; exit 1; }

STACK=$(./deploy/local/stack.sh start)
trap './deploy/local/stack.sh stop "$STACK" 2>/dev/null' EXIT
# shellcheck disable=SC1091
. "$STACK/env"
export ANALYTICS_BUILD_DIR="$ROOT/$BUILD"
set +e
"bench/$NAME.sh" "$@" 2>&1 | tee "$STACK/bench.log"
rc=${PIPESTATUS[0]}
set -e
./deploy/local/stack.sh stop "$STACK" 2>/dev/null
trap - EXIT
# The result line closes the output, so runs can be compared by their last line.
line=$(grep -E "^bench $NAME: " "$STACK/bench.log" | tail -1 || true)
[ -n "${KEEP_STACK:-}" ] || rm -rf "$STACK"
echo "${line:-bench $NAME: failed (exit $rc)}"
exit "$rc"
