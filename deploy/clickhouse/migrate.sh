#!/usr/bin/env bash
# ClickHouse schema migrations.
#
#   migrate.sh [up]      apply the pending migrations, in order (default)
#   migrate.sh status    list applied, pending and changed migrations
#   migrate.sh split F   print the statements of file F as the runner sends them
#                        (separated by a line "-- ;;"; for checking a new file)
#
# Environment: ANALYTICS_CLICKHOUSE_URL (http://host:port),
# ANALYTICS_CLICKHOUSE_ADMIN_USER / ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD (a user
# allowed to run DDL), optional ANALYTICS_MIGRATIONS_DIR (default: the
# migrations/ folder next to this script), optional ANALYTICS_MIGRATIONS_TABLE
# (default analytics.schema_migrations; the tests use a table of their own).
#
# Migrations are files migrations/NNNN_name.sql (NNNN: 4 digits, name:
# [a-z0-9_]). Each holds statements ended by `;` at the end of a line (a `;`
# inside a string, a quoted identifier or a comment does not count). A line
# `-- @ignore-error CODE[,CODE]` inside a statement's section makes those
# ClickHouse error codes count as success for that statement (for DDL that
# has no IF NOT EXISTS on 18.16, e.g. ALTER ... ADD COLUMN: code 44).
#
# Bookkeeping: analytics.schema_migrations (ReplacingMergeTree, read with
# FINAL) holds one row per applied version with the file's SHA-256. A version
# is recorded only after all its statements succeeded. Before applying
# anything the runner compares the checksums of applied files and refuses to
# run when one changed: an applied migration is never edited, a new one is added.
#
# Running twice applies nothing the second time. Running concurrently: runners
# on one host are serialised by flock(1); runners on different hosts may both
# apply the same pending migration, which is harmless because every statement
# is idempotent (IF NOT EXISTS, or @ignore-error) and the two records of that
# version collapse into one. In Kubernetes run it as a single Job anyway.
#
# Exit status: 0 done (or status: nothing changed), 1 a statement failed or an
# applied file changed, 2 usage or configuration error.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
MIGRATIONS_DIR=${ANALYTICS_MIGRATIONS_DIR:-$HERE/migrations}
TABLE=${ANALYTICS_MIGRATIONS_TABLE:-analytics.schema_migrations}

say() { printf 'migrate: %s\n' "$*"; }
die() { printf 'migrate: error: %s\n' "$1" >&2; exit "${2:-1}"; }

[[ $TABLE =~ ^([a-z_][a-z0-9_]*)\.[a-z_][a-z0-9_]*$ ]] ||
    die "ANALYTICS_MIGRATIONS_TABLE must be database.table in [a-z0-9_]: $TABLE" 2
TABLE_DB=${BASH_REMATCH[1]}
TABLE_NAME=${TABLE#*.}

TMP=$(mktemp -d "${TMPDIR:-/tmp}/analytics-migrate.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# ---------------------------------------------------------------------------
# Splitting a file into statements

# Writes each statement of $1 to $2.N (N = 1, 2, ...) and its ignored error
# codes to $2.N.ignore; prints the number of statements. Scans character by
# character so that `;`, quotes and comment markers inside strings ('...'),
# quoted identifiers ("..." and `...`) and comments (-- and /* */) are not
# taken for what they are outside them.
split_statements() {
    awk -v out="$2" '
    function flush(   t) {
        t = stmt
        gsub(/^[ \t\r\n]+|[ \t\r\n]+$/, "", t)
        if (has_code) {
            n++
            printf "%s\n", t > (out "." n)
            close(out "." n)
            printf "%s\n", ignore > (out "." n ".ignore")
            close(out "." n ".ignore")
        }
        stmt = ""; ignore = ""; has_code = 0
    }
    BEGIN { err = 0; n = 0; stmt = ""; ignore = ""; has_code = 0; q = ""; block = 0 }
    {
        line = $0
        sub(/\r$/, "", line)
        if (q == "" && !block && match(line, /^[ \t]*--[ \t]*@ignore-error[ \t]+/)) {
            codes = substr(line, RLENGTH + 1)
            gsub(/[ \t]/, "", codes)
            if (codes !~ /^[0-9]+(,[0-9]+)*$/) {
                printf "line %d: bad @ignore-error list: %s\n", NR, codes > "/dev/stderr"
                err = 1
                exit 3
            }
            ignore = ignore (ignore == "" ? "" : ",") codes
            next
        }
        last = 0       # position of the last code character (not comment, not blank)
        lastc = ""
        len = length(line)
        for (i = 1; i <= len; i++) {
            c = substr(line, i, 1)
            if (block) {
                if (c == "*" && substr(line, i + 1, 1) == "/") { block = 0; i++ }
                continue
            }
            if (q != "") {
                if (c == "\\") { i++; continue }
                if (c == q) q = ""
                last = i; lastc = c
                continue
            }
            if (c == "-" && substr(line, i + 1, 1) == "-") break
            if (c == "/" && substr(line, i + 1, 1) == "*") { block = 1; i++; continue }
            if (c == "'"'"'" || c == "\"" || c == "`") q = c
            if (c !~ /[ \t]/) {
                if (lastc == ";") {
                    printf "line %d: code after `;` on the same line (one statement per line end)\n", NR > "/dev/stderr"
                    err = 1
                    exit 3
                }
                last = i; lastc = c
                if (c != ";") has_code = 1
            }
        }
        if (q == "" && !block && lastc == ";") {
            stmt = stmt substr(line, 1, last - 1) "\n"
            flush()
        } else {
            stmt = stmt line "\n"
        }
    }
    END {
        if (err) exit 3
        if (q != "") { printf "unterminated %s quote at end of file\n", q > "/dev/stderr"; exit 3 }
        if (block) { printf "unterminated /* comment at end of file\n" > "/dev/stderr"; exit 3 }
        flush()
        print n
    }' "$1"
}

# ---------------------------------------------------------------------------
# Talking to ClickHouse (credentials in a header file, not on the command line)

ch_init() {
    CH_URL=${ANALYTICS_CLICKHOUSE_URL:-}
    [ -n "$CH_URL" ] || die "ANALYTICS_CLICKHOUSE_URL is not set (source the stack env)" 2
    CH_URL=${CH_URL%/}
    local user=${ANALYTICS_CLICKHOUSE_ADMIN_USER:-default}
    (umask 077 && printf 'X-ClickHouse-User: %s\nX-ClickHouse-Key: %s\n' \
        "$user" "${ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD:-}" >"$TMP/headers")
}

# ch_file FILE: run the SQL in FILE; the body goes to $TMP/out; returns 0 on
# HTTP 200, else 1 with the server's message in $TMP/out.
ch_file() {
    local code
    code=$(curl -sS -o "$TMP/out" -w '%{http_code}' --max-time 300 -H @"$TMP/headers" \
        --data-binary @"$1" "$CH_URL/" 2>"$TMP/curl.err") || {
        cp "$TMP/curl.err" "$TMP/out"
        return 1
    }
    [ "$code" = 200 ]
}

# ch SQL: run one statement given as a string; prints the body.
ch() {
    printf '%s' "$1" >"$TMP/q.sql"
    if ! ch_file "$TMP/q.sql"; then
        die "ClickHouse refused: $1: $(head -c 600 "$TMP/out")"
    fi
    cat "$TMP/out"
}

error_code() { # the N of "Code: N," in a ClickHouse error body
    sed -n 's/^Code: \([0-9][0-9]*\),.*/\1/p' "$1" | head -1
}

bootstrap() {
    ch "SELECT 1" >/dev/null
    ch "CREATE DATABASE IF NOT EXISTS $TABLE_DB" >/dev/null
    ch "CREATE TABLE IF NOT EXISTS $TABLE
(
    version     UInt32 COMMENT 'NNNN of the file name',
    name        String COMMENT 'file name without .sql',
    checksum    String COMMENT 'SHA-256 of the file as applied',
    statements  UInt32,
    applied_at  DateTime,
    duration_ms UInt32,
    applied_by  String COMMENT 'host and user that ran migrate.sh'
)
ENGINE = ReplacingMergeTree()
ORDER BY version" >/dev/null
}

# ---------------------------------------------------------------------------
# The two sides: files on disk, records in ClickHouse

# Fills FILES (version -> path), VERSIONS (sorted). Fails on a bad name or a
# version used twice.
load_files() {
    declare -gA FILES=()
    VERSIONS=()
    [ -d "$MIGRATIONS_DIR" ] || die "no migrations folder: $MIGRATIONS_DIR" 2
    local f base v
    for f in "$MIGRATIONS_DIR"/*.sql; do
        [ -e "$f" ] || continue
        base=$(basename "$f" .sql)
        [[ $base =~ ^([0-9]{4})_[a-z0-9_]+$ ]] ||
            die "bad migration file name: $(basename "$f") (want NNNN_name.sql, name in [a-z0-9_])" 2
        v=$((10#${BASH_REMATCH[1]}))
        [ -z "${FILES[$v]:-}" ] || die "version $v used twice: $(basename "${FILES[$v]}") and $(basename "$f")" 2
        FILES[$v]=$f
    done
    mapfile -t VERSIONS < <(printf '%s\n' "${!FILES[@]}" | sort -n | sed '/^$/d')
}

# Fills APPLIED_SUM, APPLIED_NAME, APPLIED_AT (version -> value).
load_applied() {
    declare -gA APPLIED_SUM=() APPLIED_NAME=() APPLIED_AT=()
    local v name sum at rows
    rows=$(ch "SELECT version, name, checksum, applied_at FROM $TABLE FINAL ORDER BY version FORMAT TabSeparated")
    while IFS=$'\t' read -r v name sum at; do
        [ -n "$v" ] || continue
        APPLIED_SUM[$v]=$sum
        APPLIED_NAME[$v]=$name
        APPLIED_AT[$v]=$at
    done <<<"$rows"
}

checksum() { sha256sum "$1" | cut -d' ' -f1; }

# Prints one line per applied file whose checksum changed; returns 1 if any.
check_changed() {
    local v sum bad=0
    for v in "${!APPLIED_SUM[@]}"; do
        [ -n "${FILES[$v]:-}" ] || continue
        sum=$(checksum "${FILES[$v]}")
        if [ "$sum" != "${APPLIED_SUM[$v]}" ]; then
            printf 'migrate: error: %s was applied with checksum %s but the file now has %s\n' \
                "$(basename "${FILES[$v]}")" "${APPLIED_SUM[$v]:0:16}" "${sum:0:16}" >&2
            bad=1
        fi
    done
    return $bad
}

# ---------------------------------------------------------------------------
# Commands

apply_one() { # version
    local v=$1 f=${FILES[$1]} name n i t0 ms code ignore sum
    name=$(basename "$f" .sql)
    sum=$(checksum "$f")
    rm -f "$TMP"/stmt.*
    n=$(split_statements "$f" "$TMP/stmt") || die "cannot split $name" 1
    t0=$(date +%s%3N)
    for ((i = 1; i <= n; i++)); do
        if ch_file "$TMP/stmt.$i"; then
            continue
        fi
        code=$(error_code "$TMP/out")
        ignore=$(cat "$TMP/stmt.$i.ignore")
        if [ -n "$code" ] && [[ ",$ignore," == *",$code,"* ]]; then
            say "  $name: statement $i: ignored error $code (already done)"
            continue
        fi
        printf 'migrate: error: %s: statement %d of %d failed:\n%s\n--\n%s\n' \
            "$name" "$i" "$n" "$(head -c 400 "$TMP/stmt.$i")" "$(head -c 800 "$TMP/out")" >&2
        die "stopped; $name is not recorded, fix it and run again (statements are idempotent)"
    done
    ms=$(($(date +%s%3N) - t0))
    ch "INSERT INTO $TABLE (version, name, checksum, statements, applied_at, duration_ms, applied_by)
VALUES ($v, '$name', '$sum', $n, now(), $ms, '$(whoami 2>/dev/null | tr -cd 'A-Za-z0-9_.-')@$(hostname 2>/dev/null | tr -cd 'A-Za-z0-9_.-')')" >/dev/null
    say "applied $name ($n statements, ${ms} ms)"
}

cmd_up() {
    ch_init
    load_files
    # Serialise runners on this host (same ClickHouse URL).
    if command -v flock >/dev/null 2>&1; then
        local lock
        # (in the stack dir when there is one, so the lock goes away with it)
        lock="${ANALYTICS_STACK_DIR:-${TMPDIR:-/tmp}}/analytics-migrate.$(printf '%s' "$CH_URL" | sha256sum | cut -c1-16).lock"
        exec 9>"$lock"
        flock -w 120 9 || die "another migrate.sh holds $lock for more than 120 s"
    fi
    bootstrap
    load_applied
    check_changed || die "refusing to run: applied migrations changed (add a new migration instead)"
    local v pending=() done_now=0
    for v in "${!APPLIED_SUM[@]}"; do
        [ -n "${FILES[$v]:-}" ] ||
            say "warning: version $v (${APPLIED_NAME[$v]}) is applied but has no file here"
    done
    for v in "${VERSIONS[@]}"; do
        [ -n "${APPLIED_SUM[$v]:-}" ] || pending+=("$v")
    done
    if [ ${#pending[@]} -eq 0 ]; then
        say "up to date: ${#APPLIED_SUM[@]} migrations applied, nothing to do ($CH_URL)"
        return 0
    fi
    say "${#pending[@]} pending of ${#VERSIONS[@]} ($CH_URL)"
    for v in "${pending[@]}"; do
        apply_one "$v"
        done_now=$((done_now + 1))
    done
    say "done: applied $done_now, schema at version $(printf '%04d' "${VERSIONS[-1]}")"
}

cmd_status() {
    ch_init
    load_files
    # No DDL here: without the bookkeeping table everything is pending.
    local exists
    exists=$(ch "SELECT count() FROM system.tables WHERE database = '$TABLE_DB' AND name = '$TABLE_NAME'")
    declare -gA APPLIED_SUM=() APPLIED_NAME=() APPLIED_AT=()
    [ "$exists" = 1 ] && load_applied
    local v all changed=0 sum
    mapfile -t all < <(printf '%s\n' "${VERSIONS[@]}" "${!APPLIED_SUM[@]}" | sed '/^$/d' | sort -nu)
    for v in "${all[@]}"; do
        if [ -z "${APPLIED_SUM[$v]:-}" ]; then
            printf 'pending  %s\n' "$(basename "${FILES[$v]}" .sql)"
        elif [ -z "${FILES[$v]:-}" ]; then
            printf 'applied  %-28s %s  (no file here)\n' "${APPLIED_NAME[$v]}" "${APPLIED_AT[$v]}"
        else
            sum=$(checksum "${FILES[$v]}")
            if [ "$sum" = "${APPLIED_SUM[$v]}" ]; then
                printf 'applied  %-28s %s  sha256 %s\n' "${APPLIED_NAME[$v]}" "${APPLIED_AT[$v]}" "${sum:0:12}"
            else
                printf 'CHANGED  %-28s %s  applied %s, file now %s\n' "${APPLIED_NAME[$v]}" \
                    "${APPLIED_AT[$v]}" "${APPLIED_SUM[$v]:0:12}" "${sum:0:12}"
                changed=1
            fi
        fi
    done
    return $changed
}

cmd_split() {
    local f=${1:?file} n i
    n=$(split_statements "$f" "$TMP/stmt") || die "cannot split $f"
    for ((i = 1; i <= n; i++)); do
        [ "$i" -gt 1 ] && printf -- '-- ;;\n'
        cat "$TMP/stmt.$i"
        if [ -s "$TMP/stmt.$i.ignore" ] && [ "$(cat "$TMP/stmt.$i.ignore")" != "" ]; then
            printf -- '-- (ignored error codes: %s)\n' "$(cat "$TMP/stmt.$i.ignore")"
        fi
    done
}

case "${1:-up}" in
up) cmd_up ;;
status) cmd_status ;;
split) shift; cmd_split "$@" ;;
-h | --help | help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' ;;
*) echo "usage: $0 [up|status|split FILE|help]" >&2; exit 2 ;;
esac
