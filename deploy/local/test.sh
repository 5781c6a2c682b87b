#!/usr/bin/env bash
# The test command (README): installs what is missing, builds, starts a local
# stack of its own, runs every unit and integration test, stops the stack.
#
#   deploy/local/test.sh [unit|integration|all] [SUITE...]
#   BUILD=build-asan SAN=1 deploy/local/test.sh     (what `make asan` runs)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
BUILD=${BUILD:-build}
SAN=${SAN:-}

./deploy/local/stack.sh install
make -j"$(nproc)" BUILD="$BUILD" SAN="$SAN" all >"${TMPDIR:-/tmp}/analytics-build.log" 2>&1 || {
    tail -40 "${TMPDIR:-/tmp}/analytics-build.log"; echo "build failed" >&2; exit 1; }
echo "[test] built into $BUILD" >&2
make -s lint >&2 || { echo "lint failed: run make format, fix cppcheck findings" >&2; exit 1; }
echo "[test] clang-format and cppcheck clean" >&2

STACK=$(./deploy/local/stack.sh start)
# Stop the stack quietly on any exit, so Check's counts stay the last line.
trap './deploy/local/stack.sh stop "$STACK" 2>/dev/null' EXIT
# shellcheck disable=SC1091
. "$STACK/env"
export ANALYTICS_BUILD_DIR="$ROOT/$BUILD"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:halt_on_error=1:exitcode=23${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$ROOT/tests/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
if [ -n "$SAN" ]; then
    export CK_TIMEOUT_MULTIPLIER=${CK_TIMEOUT_MULTIPLIER:-3}
fi

set +e
"$BUILD/tests/run_tests" "${@:-all}" 2>&1 | tee "$STACK/tests.log"
rc=${PIPESTATUS[0]}
set -e
./deploy/local/stack.sh stop "$STACK" 2>/dev/null
trap - EXIT
# Repeat Check's summary as the closing line (the tests' logs come before it).
summary=$(grep -E '^[0-9]+%: Checks: ' "$STACK/tests.log" | tail -1 || true)
# The stack's data (GBs after the big tests) goes, unless kept for a look.
if [ "$rc" -eq 0 ] && [ -z "${KEEP_STACK:-}" ]; then rm -rf "$STACK"; else echo "[test] stack data kept in $STACK" >&2; fi
echo "${summary:-no Check summary: the runner failed to start (exit $rc)}"
exit "$rc"
