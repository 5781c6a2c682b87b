/*
 * chinsert - insert throughput of the common ClickHouse batch insert
 * (common/ch.h) against clickhouse-client, on the same rows in the same run.
 *
 *   chinsert [ROWS]          (default 1000000)
 *
 * Environment: the local stack's (ANALYTICS_CLICKHOUSE_URL, _TCP_PORT,
 * _ADMIN_USER, _ADMIN_PASSWORD); CHINSERT_BATCH rows per INSERT (default
 * 100000); CHINSERT_REPEAT runs of each contender, best kept (default 2);
 * CHINSERT_KEEP_TSV=1 keeps the TabSeparated file of the rows.
 *
 * Rows are event-like (~380 bytes as TSV: tenant, ULID-ish id, event name,
 * two timestamps, actor, correlation id, a JSON properties string, key/value
 * arrays) and are generated up front; what is timed is what a caller pays:
 * building the batches (escaping) and sending them. clickhouse-client gets
 * the same rows as a TabSeparated file on stdin (written before its timing
 * starts) and sends them over the native TCP protocol.
 *
 * Prints one line per contender and ends with exactly one line
 *   bench chinsert: rows_per_s=N client_rows_per_s=N ratio=R
 * where rows_per_s is the common insert in its default format (RowBinary,
 * the faster one here; the TSV figure is printed above it) and ratio is
 * rows_per_s / client_rows_per_s.
 */
#include "common/buf.h"
#include "common/ch.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct event {
    char tenant[16];
    char id[32];
    const char *name;
    int64_t occurred, received;
    const char *actor_type;
    char actor_hash[68];
    char corr[40];
    char props[200];
    size_t props_len;
    const char *keys[4];
    char vals[4][40];
    int nprops;
} event;

static const an_ch_column cols[] = {
    {"tenant_id", AN_CH_STRING},         {"event_id", AN_CH_STRING},
    {"event_name", AN_CH_STRING},        {"occurred_at", AN_CH_DATETIME},
    {"received_at", AN_CH_DATETIME},     {"actor_type", AN_CH_STRING},
    {"actor_hash", AN_CH_STRING},        {"correlation_id", AN_CH_STRING},
    {"properties", AN_CH_STRING},        {"prop_keys", AN_CH_ARRAY_STRING},
    {"prop_values", AN_CH_ARRAY_STRING},
};
#define NCOLS (sizeof(cols) / sizeof(cols[0]))

#define TABLE_DDL                                                                                  \
    "(tenant_id String, event_id String, event_name String, occurred_at DateTime, "                \
    "received_at DateTime, actor_type String, actor_hash String, correlation_id String, "          \
    "properties String, prop_keys Array(String), prop_values Array(String)) "                      \
    "ENGINE = MergeTree PARTITION BY toYYYYMM(occurred_at) "                                       \
    "ORDER BY (tenant_id, event_name, occurred_at)"

static uint64_t rng = 0x853c49e6748fea9bULL;
static uint64_t rnd(void)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1DULL;
}

static void hex(char *out, size_t n)
{
    static const char h[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++)
        out[i] = h[rnd() & 15];
    out[n] = '\0';
}

static void make_event(event *e, uint64_t i)
{
    static const char *names[] = {"course.enrollment.created",
                                  "course.lesson.completed",
                                  "payment.succeeded",
                                  "user.login",
                                  "quiz.submitted",
                                  "certificate.issued"};
    static const char *sources[] = {"web", "ios", "android", "api"};
    static const char *currencies[] = {"EUR", "USD", "GBP"};
    snprintf(e->tenant, sizeof(e->tenant), "tenant-%04" PRIu64, rnd() % 200);
    static const char b32[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    snprintf(e->id, sizeof(e->id), "01J%010" PRIu64, i);
    for (int k = 13; k < 26; k++)
        e->id[k] = b32[rnd() & 31];
    e->id[26] = '\0';
    e->name = names[rnd() % 6];
    e->occurred = 1735689600 + (int64_t)(i * 3) + (int64_t)(rnd() % 60);
    e->received = e->occurred + (int64_t)(rnd() % 5);
    e->actor_type = rnd() % 10 ? "user" : "system";
    hex(e->actor_hash, 64);
    hex(e->corr, 36);
    e->corr[8] = e->corr[13] = e->corr[18] = e->corr[23] = '-';
    unsigned course = (unsigned)(rnd() % 5000);
    unsigned amount = (unsigned)(rnd() % 100000);
    const char *src = sources[rnd() % 4], *cur = currencies[rnd() % 3];
    /* a note with a tab and a quote now and then, so escaping is exercised */
    const char *note = rnd() % 20 ? "ok" : "multi\tline \"note\"";
    int n = snprintf(e->props, sizeof(e->props),
                     "{\"courseId\":\"crs_%05u\",\"amount\":%u,\"currency\":\"%s\","
                     "\"source\":\"%s\",\"note\":\"%s\"}",
                     course, amount, cur, src, note);
    e->props_len = (size_t)n;
    e->keys[0] = "courseId";
    e->keys[1] = "amount";
    e->keys[2] = "currency";
    e->keys[3] = "source";
    snprintf(e->vals[0], sizeof(e->vals[0]), "crs_%05u", course);
    snprintf(e->vals[1], sizeof(e->vals[1]), "%u", amount);
    snprintf(e->vals[2], sizeof(e->vals[2]), "%s", cur);
    snprintf(e->vals[3], sizeof(e->vals[3]), "%s", src);
    e->nprops = 4;
}

static void add_event(an_ch_batch *b, const event *e)
{
    const char *vals[4] = {e->vals[0], e->vals[1], e->vals[2], e->vals[3]};
    an_ch_batch_add_cstr(b, e->tenant);
    an_ch_batch_add_str(b, e->id, 26);
    an_ch_batch_add_cstr(b, e->name);
    an_ch_batch_add_datetime(b, e->occurred);
    an_ch_batch_add_datetime(b, e->received);
    an_ch_batch_add_cstr(b, e->actor_type);
    an_ch_batch_add_str(b, e->actor_hash, 64);
    an_ch_batch_add_str(b, e->corr, 36);
    an_ch_batch_add_str(b, e->props, e->props_len);
    an_ch_batch_add_str_array(b, e->keys, NULL, (size_t)e->nprops);
    an_ch_batch_add_str_array(b, vals, NULL, (size_t)e->nprops);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what, const an_error *err)
{
    fprintf(stderr, "chinsert: %s: %s\n", what, err ? err->message : strerror(errno));
    exit(1);
}

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        fprintf(stderr, "chinsert: %s is not set (run through bench/run.sh chinsert)\n", name);
        exit(2);
    }
    return v;
}

static void exec_sql(an_ch *ch, const char *fmt, const char *arg)
{
    char sql[1024];
    snprintf(sql, sizeof(sql), fmt, arg);
    an_error err;
    if (an_ch_exec(ch, sql, NULL, &err) != AN_OK)
        die(sql, &err);
}

static uint64_t count_rows(an_ch *ch, const char *table)
{
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count() FROM %s", table);
    an_buf out = AN_BUF_INIT;
    an_error err;
    if (an_ch_query_buf(ch, sql, NULL, NULL, &out, &err) != AN_OK)
        die(sql, &err);
    uint64_t n = strtoull(an_buf_str(&out), NULL, 10);
    an_buf_free(&out);
    return n;
}

/* Let the merges of the previous run finish: on two cores they would eat
 * into the next contender's time. */
static void wait_quiet(an_ch *ch)
{
    for (int i = 0; i < 600; i++) {
        an_buf out = AN_BUF_INIT;
        an_error err;
        if (an_ch_query_buf(ch, "SELECT count() FROM system.merges", NULL, NULL, &out, &err) !=
            AN_OK)
            die("system.merges", &err);
        long busy = strtol(an_buf_str(&out), NULL, 10);
        an_buf_free(&out);
        if (busy == 0)
            break;
        usleep(100 * 1000);
    }
    sync(); /* nor should the write-back of its parts (or of the TSV file) */
    usleep(300 * 1000);
}

static void fresh_table(an_ch *ch, const char *table)
{
    exec_sql(ch, "DROP TABLE IF EXISTS %s", table);
    char ddl[1024];
    snprintf(ddl, sizeof(ddl), "CREATE TABLE %s " TABLE_DDL, table);
    exec_sql(ch, "%s", ddl);
    wait_quiet(ch);
}

/* The common batch insert: build batches of batch_rows and send each. */
static double run_common(an_ch *ch, const char *table, an_ch_format fmt, const event *ev, size_t n,
                         size_t batch_rows, size_t *bytes)
{
    fresh_table(ch, table);
    an_ch_batch *b;
    an_error err;
    if (an_ch_batch_new(table, cols, NCOLS, fmt, &b, &err) != AN_OK)
        die("batch", &err);
    *bytes = 0;
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        add_event(b, &ev[i]);
        if (an_ch_batch_end_row(b, &err) != AN_OK)
            die("row", &err);
        if (an_ch_batch_rows(b) >= batch_rows || i + 1 == n) {
            *bytes += an_ch_batch_bytes(b);
            if (an_ch_insert(ch, b, NULL, 0, &err) != AN_OK)
                die("insert", &err);
            an_ch_batch_reset(b);
        }
    }
    double dt = now_s() - t0;
    an_ch_batch_free(b);
    uint64_t got = count_rows(ch, table);
    if (got != n) {
        fprintf(stderr, "chinsert: %s holds %" PRIu64 " rows, expected %zu\n", table, got, n);
        exit(1);
    }
    return dt;
}

/* Only the client side of run_common: building the same batches, no I/O. */
static double build_only(an_ch_format fmt, const event *ev, size_t n, size_t batch_rows)
{
    an_ch_batch *b;
    an_error err;
    if (an_ch_batch_new("t", cols, NCOLS, fmt, &b, &err) != AN_OK)
        die("batch", &err);
    double t0 = now_s();
    for (size_t i = 0; i < n; i++) {
        add_event(b, &ev[i]);
        an_ch_batch_end_row(b, NULL);
        if (an_ch_batch_rows(b) >= batch_rows)
            an_ch_batch_reset(b);
    }
    double dt = now_s() - t0;
    an_ch_batch_free(b);
    return dt;
}

/* clickhouse-client --query "INSERT ... FORMAT TabSeparated" < tsv_path */
static double run_client(an_ch *ch, const char *table, const char *tsv_path, size_t n)
{
    fresh_table(ch, table);
    char query[256];
    snprintf(query, sizeof(query), "INSERT INTO %s FORMAT TabSeparated", table);
    char *argv[] = {"clickhouse-client",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    (char *)env("ANALYTICS_CLICKHOUSE_TCP_PORT"),
                    "--user",
                    (char *)env("ANALYTICS_CLICKHOUSE_ADMIN_USER"),
                    "--password",
                    (char *)env("ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD"),
                    "--query",
                    query,
                    NULL};
    double t0 = now_s();
    pid_t pid = fork();
    if (pid < 0)
        die("fork", NULL);
    if (pid == 0) {
        int fd = open(tsv_path, O_RDONLY);
        if (fd < 0 || dup2(fd, 0) < 0)
            _exit(126);
        close(fd);
        execvp(argv[0], argv);
        _exit(127);
    }
    int st;
    struct rusage ru;
    while (wait4(pid, &st, 0, &ru) < 0 && errno == EINTR)
        ;
    double dt = now_s() - t0;
    printf("    clickhouse-client used %.2f s user + %.2f s sys CPU\n",
           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6,
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "chinsert: clickhouse-client failed (status %d)\n", st);
        exit(1);
    }
    uint64_t got = count_rows(ch, table);
    if (got != n) {
        fprintf(stderr, "chinsert: %s holds %" PRIu64 " rows, expected %zu\n", table, got, n);
        exit(1);
    }
    return dt;
}

/* The same rows as one TabSeparated file, for clickhouse-client. */
static size_t write_tsv(const event *ev, size_t n, const char *path)
{
    an_ch_batch *b;
    an_error err;
    if (an_ch_batch_new("t", cols, NCOLS, AN_CH_FORMAT_TSV, &b, &err) != AN_OK)
        die("batch", &err);
    FILE *f = fopen(path, "w");
    if (!f)
        die(path, NULL);
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        add_event(b, &ev[i]);
        an_ch_batch_end_row(b, NULL);
        if (an_ch_batch_rows(b) == 100000 || i + 1 == n) {
            size_t len;
            const char *d = an_ch_batch_data(b, &len);
            if (fwrite(d, 1, len, f) != len)
                die(path, NULL);
            total += len;
            an_ch_batch_reset(b);
        }
    }
    if (fclose(f) != 0)
        die(path, NULL);
    an_ch_batch_free(b);
    return total;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 1000000;
    size_t batch_rows =
        getenv("CHINSERT_BATCH") ? strtoull(getenv("CHINSERT_BATCH"), NULL, 10) : 100000;
    int repeat = getenv("CHINSERT_REPEAT") ? atoi(getenv("CHINSERT_REPEAT")) : 2;
    if (n == 0 || batch_rows == 0 || repeat < 1) {
        fprintf(stderr, "usage: chinsert [ROWS]  (CHINSERT_BATCH, CHINSERT_REPEAT > 0)\n");
        return 2;
    }
    an_ch_options o = {.url = env("ANALYTICS_CLICKHOUSE_URL"),
                       .user = env("ANALYTICS_CLICKHOUSE_ADMIN_USER"),
                       .password = env("ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD")};
    an_ch *ch;
    an_error err;
    if (an_ch_new(&o, &ch, &err) != AN_OK)
        die("connect", &err);
    if (an_ch_ping(ch, &err) != AN_OK)
        die("ping", &err);
    exec_sql(ch, "CREATE DATABASE IF NOT EXISTS %s", "analytics");

    event *ev = malloc(n * sizeof(*ev));
    if (!ev)
        die("malloc", NULL);
    for (size_t i = 0; i < n; i++)
        make_event(&ev[i], i);
    char tsv_path[] = "/tmp/chinsert-XXXXXX";
    int fd = mkstemp(tsv_path);
    if (fd < 0)
        die("mkstemp", NULL);
    close(fd);
    size_t tsv_bytes = write_tsv(ev, n, tsv_path);
    printf("chinsert: %zu rows, %.0f bytes/row as TSV, batches of %zu rows, best of %d\n", n,
           (double)tsv_bytes / (double)n, batch_rows, repeat);

    char table[64];
    snprintf(table, sizeof(table), "analytics.bench_chinsert_%d", (int)getpid());
    double best_tsv = 1e9, best_rb = 1e9, best_cli = 1e9;
    size_t rb_bytes = 0, tb;
    for (int r = 0; r < repeat; r++) {
        double t = run_common(ch, table, AN_CH_FORMAT_TSV, ev, n, batch_rows, &tb);
        printf("  run %d: common TSV        %.3f s  %.0f rows/s\n", r + 1, t, (double)n / t);
        best_tsv = t < best_tsv ? t : best_tsv;
        t = run_common(ch, table, AN_CH_FORMAT_ROWBINARY, ev, n, batch_rows, &rb_bytes);
        printf("  run %d: common RowBinary  %.3f s  %.0f rows/s\n", r + 1, t, (double)n / t);
        best_rb = t < best_rb ? t : best_rb;
        t = run_client(ch, table, tsv_path, n);
        printf("  run %d: clickhouse-client %.3f s  %.0f rows/s\n", r + 1, t, (double)n / t);
        best_cli = t < best_cli ? t : best_cli;
    }
    exec_sql(ch, "DROP TABLE IF EXISTS %s", table);
    printf("of which building the batches: TSV %.3f s, RowBinary %.3f s\n",
           build_only(AN_CH_FORMAT_TSV, ev, n, batch_rows),
           build_only(AN_CH_FORMAT_ROWBINARY, ev, n, batch_rows));
    if (getenv("CHINSERT_KEEP_TSV"))
        printf("rows kept in %s\n", tsv_path);
    else
        unlink(tsv_path);
    free(ev);
    an_ch_free(ch);

    double tsv_rps = (double)n / best_tsv, rb_rps = (double)n / best_rb,
           cli_rps = (double)n / best_cli;
    printf("common insert TSV:        %.0f rows/s (%.0f MB/s of body)\n", tsv_rps,
           (double)tsv_bytes / best_tsv / 1e6);
    printf("common insert RowBinary:  %.0f rows/s (%.0f MB/s of body, %.0f bytes/row)\n", rb_rps,
           (double)rb_bytes / best_rb / 1e6, (double)rb_bytes / (double)n);
    printf("clickhouse-client TSV:    %.0f rows/s\n", cli_rps);
    printf("bench chinsert: rows_per_s=%.0f client_rows_per_s=%.0f ratio=%.2f\n", rb_rps, cli_rps,
           rb_rps / cli_rps);
    return 0;
}
