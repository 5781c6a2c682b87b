/*
 * clickhouse - the ClickHouse client (common/ch.h) against the stack's real
 * clickhouse-server. Outcomes are checked through curl (tests/harness.h),
 * not through the client under test.
 */
#include "common/ch.h"
#include "common/timeutil.h"
#include "tests/harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- helpers --------------------------------------------------------------- */

typedef enum { AS_ADMIN, AS_WRITER, AS_READER, AS_AUDIT } who;

static an_ch *connect_as(who w, const char *database)
{
    static const char *vars[][2] = {
        {"ANALYTICS_CLICKHOUSE_ADMIN_USER", "ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD"},
        {"ANALYTICS_CLICKHOUSE_USER", "ANALYTICS_CLICKHOUSE_PASSWORD"},
        {"ANALYTICS_CLICKHOUSE_READER_USER", "ANALYTICS_CLICKHOUSE_READER_PASSWORD"},
        {"ANALYTICS_CLICKHOUSE_AUDIT_USER", "ANALYTICS_CLICKHOUSE_AUDIT_PASSWORD"},
    };
    an_ch_options o = {.url = th_env("ANALYTICS_CLICKHOUSE_URL"),
                       .user = th_env(vars[w][0]),
                       .password = th_env(vars[w][1]),
                       .database = database};
    an_ch *ch;
    an_error err;
    ck_assert_msg(an_ch_new(&o, &ch, &err) == AN_OK, "an_ch_new: %s", err.message);
    return ch;
}

static void setup(void)
{
    /* The migrations create it; until they land, the tests do. */
    free(th_ch("CREATE DATABASE IF NOT EXISTS analytics"));
}

static char *new_table(const char *columns)
{
    char *name = th_unique("analytics.ch_test");
    char *sql;
    ck_assert(asprintf(&sql, "CREATE TABLE %s (%s) ENGINE = MergeTree ORDER BY tuple()", name,
                       columns) > 0);
    free(th_ch(sql));
    free(sql);
    return name;
}

static void drop_table(char *name)
{
    char *sql;
    ck_assert(asprintf(&sql, "DROP TABLE IF EXISTS %s", name) > 0);
    free(th_ch(sql));
    free(sql);
    free(name);
}

/* A port on which nothing listens. */
static int dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    socklen_t l = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &l);
    close(fd);
    return ntohs(a.sin_port);
}

/* ---- inserts --------------------------------------------------------------- */

#define EV_COLS                                                                                    \
    "id UInt64, tenant String, name String, at DateTime, day Date, props String, "                 \
    "keys Array(String), vals Array(String), amount Float64, delta Int32, note Nullable(String)"

static const an_ch_column ev_cols[] = {
    {"id", AN_CH_UINT64},
    {"tenant", AN_CH_STRING},
    {"name", AN_CH_STRING},
    {"at", AN_CH_DATETIME},
    {"day", AN_CH_DATE},
    {"props", AN_CH_STRING},
    {"keys", AN_CH_ARRAY_STRING},
    {"vals", AN_CH_ARRAY_STRING},
    {"amount", AN_CH_FLOAT64},
    {"delta", AN_CH_INT32},
    {"note", AN_CH_STRING | AN_CH_NULLABLE},
};
#define EV_NCOLS (sizeof(ev_cols) / sizeof(ev_cols[0]))

/* Expected aggregates, computed while building the rows. */
typedef struct {
    uint64_t rows, sum_id, props_bytes, nulls, special_chars, sum_mod1000;
    int64_t sum_delta;
} ev_sums;

static void add_event(an_ch_batch *b, uint64_t id, ev_sums *s)
{
    char tenant[32], props[160], amount_s[32];
    snprintf(tenant, sizeof(tenant), "tenant-%" PRIu64, id % 37);
    /* every 1000th row carries the characters TSV must escape */
    const char *name = id % 1000 == 7 ? "odd\tname\nwith\\specials'" : "course.enrolled";
    int pl = snprintf(props, sizeof(props),
                      "{\"courseId\":\"c-%" PRIu64 "\",\"amount\":%" PRIu64 ",\"src\":\"web\"}",
                      id % 977, id % 1000);
    snprintf(amount_s, sizeof(amount_s), "%" PRIu64, id % 1000);
    const char *keys[] = {"courseId", "amount"};
    const char *vals[] = {props + 13, amount_s};
    size_t vlens[] = {(size_t)pl - 13, strlen(amount_s)};
    int64_t at = 1700000000 + (int64_t)(id % 86400);
    an_ch_batch_add_uint(b, id);
    an_ch_batch_add_cstr(b, tenant);
    an_ch_batch_add_cstr(b, name);
    an_ch_batch_add_datetime(b, at);
    an_ch_batch_add_date(b, at);
    an_ch_batch_add_str(b, props, (size_t)pl);
    an_ch_batch_add_str_array(b, keys, NULL, 2);
    an_ch_batch_add_str_array(b, vals, vlens, 2);
    an_ch_batch_add_float(b, (double)(id % 1000) / 4);
    an_ch_batch_add_int(b, (int64_t)(id % 100) - 50);
    an_ch_batch_add_cstr(b, id % 10 == 0 ? NULL : "n");
    ck_assert_int_eq(an_ch_batch_end_row(b, NULL), AN_OK);
    s->rows++;
    s->sum_id += id;
    s->props_bytes += (uint64_t)pl;
    s->nulls += id % 10 == 0;
    s->special_chars += id % 1000 == 7 ? 4 : 0;
    s->sum_delta += (int64_t)(id % 100) - 50;
    s->sum_mod1000 += id % 1000;
}

static void check_events(const char *table, const ev_sums *s)
{
    char sql[1024];
    snprintf(sql, sizeof(sql),
             "SELECT count(), sum(id), sum(length(props)), countIf(note IS NULL), "
             "sum(length(name) - length(replaceRegexpAll(name, '[\\t\\n\\\\\\\\\\']', ''))), "
             "sum(delta), sum(amount * 4), uniqExact(tenant), "
             "countIf(at != toDateTime(1700000000 + id %% 86400)), "
             "countIf(day != toDate(at)), countIf(vals[2] != toString(id %% 1000)), "
             "countIf(keys != ['courseId', 'amount']) FROM %s",
             table);
    char *out = th_ch(sql);
    uint64_t cnt, sid, pb, nulls, spec, sumamt4, tenants, badat, badday, badvals, badkeys;
    int64_t sdelta;
    ck_assert_msg(sscanf(out,
                         "%" SCNu64 "\t%" SCNu64 "\t%" SCNu64 "\t%" SCNu64 "\t%" SCNu64 "\t%" SCNd64
                         "\t%" SCNu64 "\t%" SCNu64 "\t%" SCNu64 "\t%" SCNu64 "\t%" SCNu64
                         "\t%" SCNu64,
                         &cnt, &sid, &pb, &nulls, &spec, &sdelta, &sumamt4, &tenants, &badat,
                         &badday, &badvals, &badkeys) == 12,
                  "unexpected: %s", out);
    ck_assert_uint_eq(cnt, s->rows);
    ck_assert_uint_eq(sid, s->sum_id);
    ck_assert_uint_eq(pb, s->props_bytes);
    ck_assert_uint_eq(nulls, s->nulls);
    ck_assert_uint_eq(spec, s->special_chars);
    ck_assert_int_eq(sdelta, s->sum_delta);
    ck_assert_uint_eq(sumamt4, s->sum_mod1000);
    ck_assert_uint_eq(tenants, 37);
    ck_assert_uint_eq(badat + badday + badvals + badkeys, 0);
    free(out);
    /* one escaped row, byte for byte */
    snprintf(sql, sizeof(sql),
             "SELECT hex(name), props, keys, note FROM %s WHERE id = 1007 FORMAT TabSeparated",
             table);
    out = th_ch(sql);
    ck_assert_str_eq(out, "6F6464096E616D650A776974685C7370656369616C7327\t"
                          "{\"courseId\":\"c-30\",\"amount\":7,\"src\":\"web\"}\t"
                          "['courseId','amount']\tn\n");
    free(out);
}

static void insert_events(an_ch *ch, const char *table, an_ch_format fmt, uint64_t from,
                          uint64_t to, ev_sums *s)
{
    an_ch_batch *b;
    an_error err;
    ck_assert_int_eq(an_ch_batch_new(table, ev_cols, EV_NCOLS, fmt, &b, &err), AN_OK);
    for (uint64_t id = from; id < to; id++) {
        add_event(b, id, s);
        if (an_ch_batch_rows(b) >= 100000 || an_ch_batch_bytes(b) >= (16u << 20)) {
            ck_assert_msg(an_ch_insert(ch, b, NULL, 0, &err) == AN_OK, "insert: %s", err.message);
            an_ch_batch_reset(b);
        }
    }
    ck_assert_msg(an_ch_insert(ch, b, NULL, 0, &err) == AN_OK, "insert: %s", err.message);
    an_ch_batch_free(b);
}

START_TEST(test_clickhouse_million_rows_in_batches_are_all_there)
{
    char *table = new_table(EV_COLS);
    an_ch *ch = connect_as(AS_WRITER, NULL);
    ev_sums s = {0};
    /* half as TabSeparated, half as RowBinary, into one table */
    insert_events(ch, table, AN_CH_FORMAT_TSV, 0, 500000, &s);
    insert_events(ch, table, AN_CH_FORMAT_ROWBINARY, 500000, 1000000, &s);
    ck_assert_uint_eq(s.rows, 1000000);
    check_events(table, &s);
    an_ch_stats st;
    an_ch_get_stats(ch, &st);
    ck_assert_uint_eq(st.connects, 1); /* 10+ inserts, one kept-alive connection */
    an_ch_free(ch);
    drop_table(table);
}
END_TEST

/* A RowBinary batch of EV_COLS rows for table and a streaming INSERT of it
 * opened on ch. */
static an_ch_stream *ev_stream(an_ch *ch, const char *table, an_ch_batch **b)
{
    an_error err;
    ck_assert_int_eq(an_ch_batch_new(table, ev_cols, EV_NCOLS, AN_CH_FORMAT_ROWBINARY, b, &err),
                     AN_OK);
    an_ch_stream *s;
    ck_assert_msg(an_ch_stream_start(ch, *b, NULL, &s, &err) == AN_OK, "%s", err.message);
    return s;
}

/* A streaming insert: 300k rows handed over in 1 MiB pieces while the
 * request runs are one part, all there; the client kept no more than a
 * piece; an error of the server (a bad row) comes back from finish; a
 * server that cannot be reached fails start with nothing sent. */
START_TEST(test_clickhouse_streaming_insert_sends_while_building)
{
    char *table = new_table(EV_COLS);
    an_ch *ch = connect_as(AS_WRITER, NULL);
    an_error err;
    an_ch_batch *b;
    an_ch_stream *s = ev_stream(ch, table, &b);
    ev_sums sums = {0};
    size_t most = 0, sends = 0;
    for (uint64_t id = 0; id < 300000; id++) {
        add_event(b, id, &sums);
        if (an_ch_batch_bytes(b) >= (1u << 20)) {
            most = an_ch_batch_bytes(b) > most ? an_ch_batch_bytes(b) : most;
            an_status st;
            while ((st = an_ch_stream_send(s, b, 100, &err)) == AN_RESOURCE_EXHAUSTED)
                ;
            ck_assert_msg(st == AN_OK, "%s", err.message);
            ck_assert_uint_eq(an_ch_batch_rows(b), 0);
            sends++;
        }
    }
    ck_assert_int_eq(an_ch_stream_send(s, b, 10000, &err), AN_OK);
    ck_assert_msg(an_ch_stream_finish(s, -1, &err) == AN_OK, "%s", err.message);
    ck_assert_uint_gt(sends, 20);
    ck_assert_uint_lt(most, (1u << 20) + 4096);
    check_events(table, &sums);
    char parts[300];
    snprintf(parts, sizeof(parts),
             "SELECT count() FROM system.parts WHERE active AND database = 'analytics' AND "
             "table = '%s'",
             strchr(table, '.') + 1);
    ck_assert_int_eq(th_ch_count(parts), 1);
    /* the connection is usable for plain requests afterwards */
    ck_assert_int_eq(an_ch_ping(ch, &err), AN_OK);

    /* a user who may not insert: the server's refusal comes back from finish */
    an_ch *ro = connect_as(AS_READER, NULL);
    ck_assert_int_eq(an_ch_stream_start(ro, b, NULL, &s, &err), AN_OK);
    add_event(b, 1, &sums);
    ck_assert_int_eq(an_ch_stream_send(s, b, 10000, &err), AN_OK);
    ck_assert_int_ne(an_ch_stream_finish(s, -1, &err), AN_OK);
    ck_assert_msg(strstr(err.message, "eadonly") || strstr(err.message, "ermission") ||
                      strstr(err.message, "not enough privileges"),
                  "%s", err.message);
    ck_assert_int_eq(an_ch_last_exception_code(ro) != 0, 1);
    an_ch_free(ro);
    char sql[300];
    snprintf(sql, sizeof(sql), "SELECT count() FROM %s", table);
    ck_assert_int_eq(th_ch_count(sql), 300000);

    /* abandoned: what was sent may be stored, the call returns */
    ck_assert_int_eq(an_ch_stream_start(ch, b, NULL, &s, &err), AN_OK);
    ck_assert_int_ne(an_ch_stream_finish(s, 0, &err), AN_OK);

    an_ch_batch_free(b);
    an_ch_free(ch);

    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", dead_port());
    an_ch_options o = {.url = url, .max_retries = -1};
    ck_assert_int_eq(an_ch_new(&o, &ch, &err), AN_OK);
    ck_assert_int_eq(an_ch_batch_new(table, ev_cols, EV_NCOLS, AN_CH_FORMAT_TSV, &b, &err), AN_OK);
    ck_assert_int_eq(an_ch_stream_start(ch, b, NULL, &s, &err), AN_UNAVAILABLE);
    ck_assert_ptr_null(s);
    an_ch_batch_free(b);
    an_ch_free(ch);
    drop_table(table);
}
END_TEST

/* A client of a server that accepts connections and never answers (the
 * kernel takes the request; nobody reads it); *fd is its socket. */
static an_ch *silent_server(int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(*fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(*fd, 4), 0);
    socklen_t l = sizeof(a);
    getsockname(*fd, (struct sockaddr *)&a, &l);
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", ntohs(a.sin_port));
    an_ch_options so = {.url = url, .query_timeout_ms = 60000, .max_retries = -1};
    an_ch *ch;
    an_error err;
    ck_assert_int_eq(an_ch_new(&so, &ch, &err), AN_OK);
    return ch;
}

/* The query timeout of a streaming insert counts from the end of its body:
 * a body built over longer than it is fine; a server that takes the body
 * and never answers is given up that long after the end. */
START_TEST(test_clickhouse_streaming_insert_timeout_counts_from_the_end_of_the_body)
{
    char *table = new_table(EV_COLS);
    an_ch_options o = {.url = th_env("ANALYTICS_CLICKHOUSE_URL"),
                       .user = th_env("ANALYTICS_CLICKHOUSE_ADMIN_USER"),
                       .password = th_env("ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD"),
                       .query_timeout_ms = 1000};
    an_ch *ch;
    an_error err;
    ck_assert_int_eq(an_ch_new(&o, &ch, &err), AN_OK);
    an_ch_batch *b;
    an_ch_stream *s = ev_stream(ch, table, &b);
    ev_sums sums = {0};
    for (uint64_t id = 0; id < 3; id++) { /* 2.5 s of body, 1 s of query timeout */
        add_event(b, id, &sums);
        ck_assert_msg(an_ch_stream_send(s, b, 1000, &err) == AN_OK, "%s", err.message);
        if (id < 2)
            th_sleep_ms(1250);
    }
    ck_assert_msg(an_ch_stream_finish(s, -1, &err) == AN_OK, "%s", err.message);
    char sql[300];
    snprintf(sql, sizeof(sql), "SELECT count() * 10 + sum(id) FROM %s", table);
    ck_assert_int_eq(th_ch_count(sql), 3 * 10 + 0 + 1 + 2);

    /* a server that takes the request and never answers */
    int fd;
    an_ch *silent = silent_server(&fd);
    ck_assert_int_eq(an_ch_stream_start(silent, b, NULL, &s, &err), AN_OK);
    add_event(b, 7, &sums);
    ck_assert_int_eq(an_ch_stream_send(s, b, 1000, &err), AN_OK);
    int64_t t0 = th_now_ms();
    ck_assert_int_eq(an_ch_stream_finish(s, 1500, &err), AN_UNAVAILABLE);
    int64_t took = th_now_ms() - t0;
    ck_assert_msg(took >= 1400 && took < 4000, "gave up after %lld ms", (long long)took);
    ck_assert_msg(strstr(err.message, "no answer") != NULL, "%s", err.message);
    close(fd);
    an_ch_free(silent);
    an_ch_batch_free(b);
    an_ch_free(ch);
    drop_table(table);
}
END_TEST

/* A deadline breaks off what runs when it passes, a plain query as well as
 * a streaming insert waiting for its answer (ingest's SIGTERM drain), and
 * later requests fail at once. */
START_TEST(test_clickhouse_deadline_breaks_off_running_requests)
{
    int fd;
    an_ch *ch = silent_server(&fd);
    an_error err;
    an_ch_set_deadline(ch, an_time_mono_ms() + 1500);
    int64_t t0 = th_now_ms();
    ck_assert_int_eq(an_ch_query(ch, "SELECT 1", NULL, NULL, NULL, &err), AN_UNAVAILABLE);
    int64_t took = th_now_ms() - t0;
    ck_assert_msg(took >= 1400 && took < 4000, "broken off after %lld ms", (long long)took);
    ck_assert_msg(strstr(err.message, "deadline") != NULL, "%s", err.message);
    t0 = th_now_ms();
    ck_assert_int_eq(an_ch_ping(ch, &err), AN_UNAVAILABLE);
    ck_assert_int_lt(th_now_ms() - t0, 500);

    an_ch_set_deadline(ch, 0);
    an_ch_batch *b; /* TSV: no DESCRIBE of the table first */
    ck_assert_int_eq(
        an_ch_batch_new("analytics.nowhere", ev_cols, EV_NCOLS, AN_CH_FORMAT_TSV, &b, &err), AN_OK);
    an_ch_stream *s;
    ck_assert_int_eq(an_ch_stream_start(ch, b, NULL, &s, &err), AN_OK);
    ev_sums sums = {0};
    add_event(b, 1, &sums);
    ck_assert_int_eq(an_ch_stream_send(s, b, 1000, &err), AN_OK);
    an_ch_set_deadline(ch, an_time_mono_ms() + 1500);
    t0 = th_now_ms();
    ck_assert_int_eq(an_ch_stream_finish(s, -1, &err), AN_UNAVAILABLE);
    took = th_now_ms() - t0;
    ck_assert_msg(took >= 1400 && took < 4000, "broken off after %lld ms", (long long)took);
    ck_assert_msg(strstr(err.message, "deadline") != NULL, "%s", err.message);
    close(fd);
    an_ch_batch_free(b);
    an_ch_free(ch);
}
END_TEST

START_TEST(test_clickhouse_rowbinary_batch_with_wrong_types_is_refused_before_sending)
{
    char *table = new_table("id UInt64, name String, at DateTime('UTC'), "
                            "tags Array(String), note Nullable(String)");
    an_ch *ch = connect_as(AS_WRITER, NULL);
    an_error err;
    static const an_ch_column good[] = {{"id", AN_CH_UINT64},
                                        {"name", AN_CH_STRING},
                                        {"at", AN_CH_DATETIME},
                                        {"tags", AN_CH_ARRAY_STRING},
                                        {"note", AN_CH_STRING | AN_CH_NULLABLE}};
    static const an_ch_column narrow[] = {{"id", AN_CH_UINT32}, {"name", AN_CH_STRING}};
    static const an_ch_column missing[] = {{"id", AN_CH_UINT64}, {"nope", AN_CH_STRING}};
    static const char *tags[] = {"a", "b"};
    an_ch_batch *b;

    ck_assert_int_eq(an_ch_batch_new(table, good, 5, AN_CH_FORMAT_ROWBINARY, &b, &err), AN_OK);
    an_ch_batch_add_uint(b, 1ULL << 40);
    an_ch_batch_add_cstr(b, "x");
    an_ch_batch_add_datetime(b, 1700000000);
    an_ch_batch_add_str_array(b, tags, NULL, 2);
    an_ch_batch_add_null(b);
    ck_assert_int_eq(an_ch_batch_end_row(b, &err), AN_OK);
    ck_assert_msg(an_ch_insert(ch, b, NULL, 0, &err) == AN_OK, "%s", err.message);
    an_ch_batch_free(b);

    ck_assert_int_eq(an_ch_batch_new(table, narrow, 2, AN_CH_FORMAT_ROWBINARY, &b, &err), AN_OK);
    an_ch_batch_add_uint(b, 2);
    an_ch_batch_add_cstr(b, "y");
    ck_assert_int_eq(an_ch_batch_end_row(b, &err), AN_OK);
    ck_assert_int_eq(an_ch_insert(ch, b, NULL, 0, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "column id is UInt64"));
    an_ch_batch_free(b);

    ck_assert_int_eq(an_ch_batch_new(table, missing, 2, AN_CH_FORMAT_ROWBINARY, &b, &err), AN_OK);
    an_ch_batch_add_uint(b, 3);
    an_ch_batch_add_cstr(b, "z");
    ck_assert_int_eq(an_ch_batch_end_row(b, &err), AN_OK);
    ck_assert_int_eq(an_ch_insert(ch, b, NULL, 0, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "no column nope"));
    an_ch_batch_free(b);

    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT id, name, toUInt32(at), tags, isNull(note) FROM %s FORMAT TabSeparated",
             table);
    char *out = th_ch(sql);
    ck_assert_str_eq(out, "1099511627776\tx\t1700000000\t['a','b']\t1\n");
    free(out);
    an_ch_free(ch);
    drop_table(table);
}
END_TEST

START_TEST(test_clickhouse_bad_insert_data_is_invalid_argument)
{
    char *table = new_table("id UInt64, at DateTime");
    an_ch *ch = connect_as(AS_WRITER, NULL);
    char stmt[256];
    snprintf(stmt, sizeof(stmt), "INSERT INTO %s (id, at) FORMAT TabSeparated", table);
    static const char data[] = "1\t0000000001\nnot-a-number\t0000000002\n";
    an_error err;
    ck_assert_int_eq(an_ch_insert_raw(ch, stmt, data, sizeof(data) - 1, NULL, 0, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_int_ne(an_ch_last_exception_code(ch), 0);
    ck_assert_ptr_nonnull(strstr(err.message, "clickhouse code"));
    char sql[256];
    snprintf(sql, sizeof(sql), "SELECT count() FROM %s", table);
    ck_assert_int_eq(th_ch_count(sql), 0); /* the whole block is refused */
    an_ch_free(ch);
    drop_table(table);
}
END_TEST

/* ---- queries ----------------------------------------------------------------- */

typedef struct {
    uint64_t rows, sum;
    an_buf first; /* the first row, fields joined by '|' */
    uint64_t stop_after;
} sink;

static an_status sink_row(void *ud, const an_ch_row *row, an_error *err)
{
    sink *k = ud;
    if (k->stop_after && k->rows == k->stop_after)
        return an_error_set(err, AN_FAILED_PRECONDITION, "enough rows");
    if (k->rows == 0) {
        for (size_t i = 0; i < row->ncols; i++)
            an_buf_addf(&k->first, "%s%s:%s=%s", i ? "|" : "", row->names[i], row->types[i],
                        row->fields[i] ? row->fields[i] : "NULL");
    }
    k->rows++;
    k->sum += row->fields[0] ? strtoull(row->fields[0], NULL, 10) : 0;
    return AN_OK;
}

START_TEST(test_clickhouse_query_hands_unescaped_fields_names_and_types)
{
    an_ch *ch = connect_as(AS_READER, "analytics");
    sink k = {0, 0, AN_BUF_INIT, 0};
    an_error err;
    ck_assert_msg(an_ch_query(ch,
                              "SELECT toUInt8(7) AS n, 'tab\\there\\nnl\\\\bs' AS s, "
                              "CAST(NULL AS Nullable(String)) AS z, ['a''b'] AS arr -- comment;",
                              NULL, sink_row, &k, &err) == AN_OK,
                  "%s", err.message);
    ck_assert_uint_eq(k.rows, 1);
    ck_assert_str_eq(k.first.data, "n:UInt8=7|s:String=tab\there\nnl\\bs|"
                                   "z:Nullable(String)=NULL|arr:Array(String)=['a\\'b']");
    an_buf_free(&k.first);
    an_ch_free(ch);
}
END_TEST

static long child_maxrss(const char *rows, char **out)
{
    char log[] = "/tmp/ch_stream-XXXXXX";
    int fd = mkstemp(log);
    ck_assert_int_ge(fd, 0);
    close(fd);
    char *argv[] = {"ch_stream", (char *)rows, NULL};
    pid_t pid = th_spawn(th_bin("tests/helpers/ch_stream"), argv, NULL, log);
    int status;
    long rss;
    ck_assert_msg(th_wait(pid, 240000, &status, &rss) == 0, "ch_stream %s timed out", rows);
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "cat %s", log);
    *out = th_run(cmd, NULL);
    unlink(log);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "ch_stream %s failed: %s", rows,
                  *out);
    return rss;
}

START_TEST(test_clickhouse_large_result_streams_in_bounded_memory)
{
    char *small, *big;
    long rss_small = child_maxrss("500000", &small);
    long rss_big = child_maxrss("5000000", &big);
    ck_assert_str_eq(small, "rows=500000 sum=124999750000 bad=0\n");
    ck_assert_str_eq(big, "rows=5000000 sum=12499997500000 bad=0\n");
    fprintf(stderr, "ch_stream peak RSS: 500k rows %ld KiB, 5M rows %ld KiB\n", rss_small, rss_big);
    /* 10x the rows (about 330 MB of TSV), same memory give or take 2 MiB */
    ck_assert_msg(rss_big <= rss_small + 2048, "RSS grew from %ld to %ld KiB", rss_small, rss_big);
    free(small);
    free(big);
}
END_TEST

START_TEST(test_clickhouse_callback_can_stop_a_query_and_the_client_goes_on)
{
    an_ch *ch = connect_as(AS_ADMIN, NULL);
    sink k = {0, 0, AN_BUF_INIT, 10};
    an_error err;
    int64_t t0 = th_now_ms();
    ck_assert_int_eq(an_ch_query(ch, "SELECT number FROM system.numbers", NULL, sink_row, &k, &err),
                     AN_FAILED_PRECONDITION);
    ck_assert_int_lt(th_now_ms() - t0, 5000); /* an endless query, stopped */
    ck_assert_str_eq(err.message, "enough rows");
    ck_assert_uint_eq(k.rows, 10);
    an_buf_reset(&k.first);
    sink k2 = {0, 0, AN_BUF_INIT, 0};
    ck_assert_int_eq(an_ch_query(ch, "SELECT 42", NULL, sink_row, &k2, &err), AN_OK);
    ck_assert_uint_eq(k2.sum, 42);
    an_buf_free(&k.first);
    an_buf_free(&k2.first);
    an_ch_free(ch);
}
END_TEST

START_TEST(test_clickhouse_query_buf_exec_and_ping)
{
    an_ch *ch = connect_as(AS_ADMIN, NULL);
    an_error err;
    ck_assert_int_eq(an_ch_ping(ch, &err), AN_OK);
    char *table = th_unique("analytics.ch_exec");
    char sql[256];
    snprintf(sql, sizeof(sql), "CREATE TABLE %s (x UInt32) ENGINE = Memory", table);
    ck_assert_msg(an_ch_exec(ch, sql, NULL, &err) == AN_OK, "%s", err.message);
    snprintf(sql, sizeof(sql), "INSERT INTO %s SELECT number FROM system.numbers LIMIT 5", table);
    ck_assert_msg(an_ch_exec(ch, sql, NULL, &err) == AN_OK, "%s", err.message);
    snprintf(sql, sizeof(sql), "SELECT sum(x) FROM %s", table);
    ck_assert_int_eq(th_ch_count(sql), 10);
    an_buf out = AN_BUF_INIT;
    snprintf(sql, sizeof(sql), "SELECT x FROM %s ORDER BY x", table);
    ck_assert_int_eq(an_ch_query_buf(ch, sql, "CSV", NULL, &out, &err), AN_OK);
    ck_assert_str_eq(out.data, "0\n1\n2\n3\n4\n");
    an_buf_reset(&out);
    ck_assert_int_eq(an_ch_query_buf(ch, "SELECT 1 AS one", "JSONEachRow", NULL, &out, &err),
                     AN_OK);
    ck_assert_str_eq(out.data, "{\"one\":1}\n");
    /* creating it again: already exists */
    snprintf(sql, sizeof(sql), "CREATE TABLE %s (x UInt32) ENGINE = Memory", table);
    ck_assert_int_eq(an_ch_exec(ch, sql, NULL, &err), AN_ALREADY_EXISTS);
    ck_assert_int_eq(an_ch_last_exception_code(ch), 57);
    snprintf(sql, sizeof(sql), "DROP TABLE %s", table);
    ck_assert_int_eq(an_ch_exec(ch, sql, NULL, &err), AN_OK);
    ck_assert_int_eq(an_ch_last_exception_code(ch), 0);
    an_buf_free(&out);
    free(table);
    an_ch_free(ch);

    /* a result larger than max_buffer_bytes */
    an_ch_options o = {.url = th_env("ANALYTICS_CLICKHOUSE_URL"),
                       .user = th_env("ANALYTICS_CLICKHOUSE_ADMIN_USER"),
                       .password = th_env("ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD"),
                       .max_buffer_bytes = 1000};
    ck_assert_int_eq(an_ch_new(&o, &ch, &err), AN_OK);
    ck_assert_int_eq(an_ch_query_buf(ch, "SELECT number FROM system.numbers LIMIT 100000", NULL,
                                     NULL, &out, &err),
                     AN_RESOURCE_EXHAUSTED);
    an_buf_free(&out);
    an_ch_free(ch);
}
END_TEST

START_TEST(test_clickhouse_connection_is_kept_alive)
{
    an_ch *ch = connect_as(AS_ADMIN, NULL);
    char *marker = th_unique("keepalive");
    an_ch_setting log_q[] = {{"log_queries", "1"}};
    an_ch_settings s = {.extra = log_q, .n_extra = 1};
    an_error err;
    for (int i = 0; i < 20; i++) {
        char sql[128];
        snprintf(sql, sizeof(sql), "SELECT '%s', %d", marker, i);
        sink k = {0, 0, AN_BUF_INIT, 0};
        ck_assert_msg(an_ch_query(ch, sql, &s, sink_row, &k, &err) == AN_OK, "%s", err.message);
        an_buf_free(&k.first);
    }
    an_ch_stats st;
    an_ch_get_stats(ch, &st);
    ck_assert_uint_eq(st.connects, 1);
    ck_assert_uint_eq(st.requests, 20);
    /* the server saw all 20 queries come from one client port (its query
     * log is flushed every few seconds) */
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT count(), uniqExact(port) FROM system.query_log WHERE type = 1 AND "
             "query LIKE '%%%s%%' AND query NOT LIKE '%%query_log%%'",
             marker);
    char *out = NULL;
    for (int64_t deadline = th_now_ms() + 30000; th_now_ms() < deadline; th_sleep_ms(500)) {
        free(th_ch("SYSTEM FLUSH LOGS"));
        free(out);
        out = th_ch(sql);
        if (strncmp(out, "20\t", 3) == 0)
            break;
    }
    ck_assert_str_eq(out, "20\t1\n");
    free(out);
    free(marker);
    an_ch_free(ch);
}
END_TEST

/* ---- server errors ------------------------------------------------------------ */

START_TEST(test_clickhouse_server_errors_map_to_statuses_with_messages)
{
    an_ch *admin = connect_as(AS_ADMIN, "analytics");
    an_error err;
    sink k = {0, 0, AN_BUF_INIT, 0};

    ck_assert_int_eq(an_ch_query(admin, "SELEC 1", NULL, sink_row, &k, &err), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_ch_last_exception_code(admin), 62);
    ck_assert_ptr_nonnull(strstr(err.message, "Syntax error"));

    ck_assert_int_eq(
        an_ch_query(admin, "SELECT nosuchcolumn FROM system.one", NULL, sink_row, &k, &err),
        AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_ch_last_exception_code(admin), 47);

    ck_assert_int_eq(
        an_ch_query(admin, "SELECT * FROM no_such_table_here", NULL, sink_row, &k, &err),
        AN_NOT_FOUND);
    ck_assert_int_eq(an_ch_last_exception_code(admin), 60);
    ck_assert_ptr_nonnull(strstr(err.message, "no_such_table_here"));

    an_ch_settings slow = {.max_execution_time = 1};
    ck_assert_int_eq(
        an_ch_query(admin, "SELECT count() FROM system.numbers", &slow, sink_row, &k, &err),
        AN_RESOURCE_EXHAUSTED);
    ck_assert_int_eq(an_ch_last_exception_code(admin), 159);

    an_ch_settings mem = {.max_memory_usage = 10000000};
    ck_assert_int_eq(an_ch_query(admin,
                                 "SELECT groupArray(number) FROM (SELECT number FROM "
                                 "system.numbers LIMIT 10000000)",
                                 &mem, sink_row, &k, &err),
                     AN_RESOURCE_EXHAUSTED);
    ck_assert_int_eq(an_ch_last_exception_code(admin), 241);
    ck_assert_uint_eq(k.rows, 0);

    /* and the same connection still works */
    ck_assert_int_eq(an_ch_query(admin, "SELECT 5", NULL, sink_row, &k, &err), AN_OK);
    ck_assert_int_eq(an_ch_last_exception_code(admin), 0);
    ck_assert_uint_eq(k.sum, 5);
    an_buf_free(&k.first);
    an_ch_free(admin);
}
END_TEST

START_TEST(test_clickhouse_exception_mid_stream_is_detected)
{
    static const char sql[] =
        "SELECT number, throwIf(number = 900000) FROM system.numbers LIMIT 1000000";
    /* independently: the server really answers 200 and fails in the body */
    long http;
    char *raw = th_ch_as(th_env("ANALYTICS_CLICKHOUSE_ADMIN_USER"),
                         th_env("ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD"), sql, &http);
    ck_assert_int_eq(http, 200);
    ck_assert_ptr_nonnull(strstr(raw + strlen(raw) - 300, "\nCode: 395"));
    free(raw);

    an_ch *ch = connect_as(AS_ADMIN, NULL);
    sink k = {0, 0, AN_BUF_INIT, 0};
    an_error err;
    ck_assert_int_eq(an_ch_query(ch, sql, NULL, sink_row, &k, &err), AN_INTERNAL);
    ck_assert_int_eq(an_ch_last_exception_code(ch), 395);
    ck_assert_ptr_nonnull(strstr(err.message, "throwIf"));
    ck_assert_uint_gt(k.rows, 100000); /* rows came before the failure */
    ck_assert_uint_le(k.rows, 900000);

    /* a result-size limit hit after a million rows were streamed */
    an_ch_settings lim = {.max_result_rows = 1000000};
    sink k2 = {0, 0, AN_BUF_INIT, 0};
    ck_assert_int_eq(an_ch_query(ch, "SELECT number FROM system.numbers LIMIT 3000000", &lim,
                                 sink_row, &k2, &err),
                     AN_RESOURCE_EXHAUSTED);
    ck_assert_int_eq(an_ch_last_exception_code(ch), 396);
    ck_assert_uint_gt(k2.rows, 500000);
    ck_assert_uint_lt(k2.rows, 3000000);

    /* query_buf sees it too */
    an_buf out = AN_BUF_INIT;
    ck_assert_int_eq(an_ch_query_buf(ch, sql, NULL, NULL, &out, &err), AN_INTERNAL);
    ck_assert_int_eq(an_ch_last_exception_code(ch), 395);
    an_buf_free(&out);
    an_buf_free(&k.first);
    an_buf_free(&k2.first);
    an_ch_free(ch);
}
END_TEST

START_TEST(test_clickhouse_reader_is_confined)
{
    char *table = new_table("x UInt8");
    an_ch *r = connect_as(AS_READER, "analytics");
    an_error err;
    sink k = {0, 0, AN_BUF_INIT, 0};
    char sql[256];

    /* it may read the hot tier with its profile's limits */
    snprintf(sql, sizeof(sql), "SELECT count() FROM %s", table);
    ck_assert_msg(an_ch_query(r, sql, NULL, sink_row, &k, &err) == AN_OK, "%s", err.message);

    /* no insert */
    snprintf(sql, sizeof(sql), "INSERT INTO %s (x) FORMAT TabSeparated", table);
    ck_assert_int_eq(an_ch_insert_raw(r, sql, "1\n", 2, NULL, 0, &err), AN_PERMISSION_DENIED);
    ck_assert_int_eq(an_ch_last_exception_code(r), 164);
    /* no table function */
    ck_assert_int_eq(an_ch_query(r, "SELECT * FROM numbers(3)", NULL, sink_row, &k, &err),
                     AN_PERMISSION_DENIED);
    ck_assert_ptr_nonnull(strstr(err.message, "Table functions are forbidden"));
    /* no audit tier */
    ck_assert_int_eq(
        an_ch_query(r, "SELECT * FROM analytics_audit.events", NULL, sink_row, &k, &err),
        AN_PERMISSION_DENIED);
    ck_assert_int_eq(an_ch_last_exception_code(r), 291);
    /* no per-query setting, not even a stricter one */
    an_ch_settings s = {.max_result_rows = 10};
    ck_assert_int_eq(an_ch_query(r, "SELECT 1", &s, sink_row, &k, &err), AN_PERMISSION_DENIED);
    ck_assert_int_eq(an_ch_last_exception_code(r), 164);
    an_ch_free(r);

    snprintf(sql, sizeof(sql), "SELECT count() FROM %s", table);
    ck_assert_int_eq(th_ch_count(sql), 0);
    an_buf_free(&k.first);
    drop_table(table);
}
END_TEST

START_TEST(test_clickhouse_wrong_password_is_internal_with_code)
{
    an_ch_options o = {.url = th_env("ANALYTICS_CLICKHOUSE_URL"),
                       .user = th_env("ANALYTICS_CLICKHOUSE_USER"),
                       .password = "not-the-password"};
    an_ch *ch;
    an_error err;
    ck_assert_int_eq(an_ch_new(&o, &ch, &err), AN_OK);
    ck_assert_int_eq(an_ch_exec(ch, "SELECT 1", NULL, &err), AN_INTERNAL);
    ck_assert_int_eq(an_ch_last_exception_code(ch), 193);
    ck_assert_ptr_nonnull(strstr(err.message, "authentication failed"));
    an_ch_stats st;
    an_ch_get_stats(ch, &st);
    ck_assert_uint_eq(st.retries, 0); /* an answer from the server is final */
    an_ch_free(ch);
}
END_TEST

/* ---- connection errors and retries -------------------------------------------- */

typedef struct {
    int n;
    int delay[16];
    int64_t at[16];
} retries;

static void record_retry(void *ud, int attempt, int delay_ms, const char *reason)
{
    (void)reason;
    retries *r = ud;
    ck_assert_int_eq(attempt, r->n + 1);
    if (r->n < 16) {
        r->delay[r->n] = delay_ms;
        r->at[r->n] = th_now_ms();
    }
    r->n++;
}

START_TEST(test_clickhouse_connection_refused_is_unavailable_after_growing_retries)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", dead_port());
    retries rec = {0};
    an_ch_options o = {.url = url,
                       .max_retries = 4,
                       .backoff_base_ms = 50,
                       .backoff_max_ms = 1000,
                       .on_retry = record_retry,
                       .on_retry_ud = &rec};
    an_ch *ch;
    an_error err;
    ck_assert_int_eq(an_ch_new(&o, &ch, &err), AN_OK);
    int64_t t0 = th_now_ms();
    ck_assert_int_eq(an_ch_exec(ch, "CREATE TABLE x (a UInt8) ENGINE = Memory", NULL, &err),
                     AN_UNAVAILABLE);
    int64_t elapsed = th_now_ms() - t0;
    ck_assert_ptr_nonnull(strstr(err.message, "after 4 retries"));
    ck_assert_int_eq(an_ch_last_exception_code(ch), 0);
    ck_assert_int_eq(rec.n, 4);
    int sum = 0;
    for (int i = 0; i < 4; i++) {
        int b = 50 << i; /* delay i is within [b/2, b] */
        ck_assert_msg(rec.delay[i] >= b / 2 && rec.delay[i] <= b, "delay %d = %d", i, rec.delay[i]);
        if (i > 0) {
            ck_assert_int_ge(rec.delay[i], rec.delay[i - 1]);
            /* the time between attempts really was the announced delay */
            ck_assert_int_ge(rec.at[i] - rec.at[i - 1], rec.delay[i - 1]);
        }
        sum += rec.delay[i];
    }
    ck_assert_int_ge(elapsed, sum);
    ck_assert_int_lt(elapsed, sum + 2000);
    an_ch_stats st;
    an_ch_get_stats(ch, &st);
    ck_assert_uint_eq(st.retries, 4);
    memset(&rec, 0, sizeof(rec));
    ck_assert_int_eq(an_ch_ping(ch, &err), AN_UNAVAILABLE);
    ck_assert_int_eq(rec.n, 4);
    an_ch_free(ch);
}
END_TEST

/* A server that accepts, reads the request head and hangs up without a byte
 * of answer: the outcome of what was sent is unknown. */
typedef struct {
    int fd, port;
    volatile int stop;
    int accepted;
    int64_t at[16];
    pthread_t thread;
} hangup_server;

static void *hangup_loop(void *arg)
{
    hangup_server *s = arg;
    while (!s->stop) {
        struct pollfd p = {s->fd, POLLIN, 0};
        if (poll(&p, 1, 20) <= 0)
            continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            continue;
        if (s->accepted < 16)
            s->at[s->accepted] = th_now_ms();
        s->accepted++;
        char buf[4096];
        size_t got = 0;
        while (got < sizeof(buf) - 1) {
            ssize_t n = read(c, buf + got, sizeof(buf) - 1 - got);
            if (n <= 0)
                break;
            got += (size_t)n;
            buf[got] = '\0';
            if (strstr(buf, "\r\n\r\n"))
                break;
        }
        close(c);
    }
    return NULL;
}

static void hangup_start(hangup_server *s)
{
    memset(s, 0, sizeof(*s));
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(s->fd, (struct sockaddr *)&a, sizeof(a)), 0);
    ck_assert_int_eq(listen(s->fd, 16), 0);
    socklen_t l = sizeof(a);
    getsockname(s->fd, (struct sockaddr *)&a, &l);
    s->port = ntohs(a.sin_port);
    ck_assert_int_eq(pthread_create(&s->thread, NULL, hangup_loop, s), 0);
}

static void hangup_stop(hangup_server *s)
{
    s->stop = 1;
    pthread_join(s->thread, NULL);
    close(s->fd);
}

static an_ch *connect_hangup(const hangup_server *s, retries *rec)
{
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", s->port);
    an_ch_options o = {.url = url,
                       .max_retries = 3,
                       .backoff_base_ms = 40,
                       .on_retry = record_retry,
                       .on_retry_ud = rec};
    an_ch *ch;
    an_error err;
    ck_assert_int_eq(an_ch_new(&o, &ch, &err), AN_OK);
    return ch;
}

START_TEST(test_clickhouse_reads_are_retried_after_a_hangup_inserts_are_not)
{
    hangup_server s;
    hangup_start(&s);
    an_error err;

    /* a read: retried, the server sees 1 + 3 connections with growing gaps */
    retries rec = {0};
    an_ch *ch = connect_hangup(&s, &rec);
    sink k = {0, 0, AN_BUF_INIT, 0};
    ck_assert_int_eq(an_ch_query(ch, "SELECT 1", NULL, sink_row, &k, &err), AN_UNAVAILABLE);
    ck_assert_int_eq(s.accepted, 4);
    ck_assert_int_eq(rec.n, 3);
    for (int i = 1; i < 3; i++)
        ck_assert_int_ge(s.at[i + 1] - s.at[i], s.at[i] - s.at[i - 1] - 5);
    ck_assert_int_ge(s.at[3] - s.at[0], rec.delay[0] + rec.delay[1] + rec.delay[2]);
    an_ch_free(ch);

    /* an insert whose outcome is unknown: sent once, never repeated */
    s.accepted = 0;
    retries rec2 = {0};
    ch = connect_hangup(&s, &rec2);
    ck_assert_int_eq(
        an_ch_insert_raw(ch, "INSERT INTO t (x) FORMAT TabSeparated", "1\n", 2, NULL, 0, &err),
        AN_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(err.message, "may have been executed"));
    ck_assert_int_eq(s.accepted, 1);
    ck_assert_int_eq(rec2.n, 0);
    /* nor a command */
    ck_assert_int_eq(an_ch_exec(ch, "DROP TABLE t", NULL, &err), AN_UNAVAILABLE);
    ck_assert_int_eq(s.accepted, 2);

    /* unless the caller says the insert is idempotent */
    s.accepted = 0;
    ck_assert_int_eq(an_ch_insert_raw(ch, "INSERT INTO t (x) FORMAT TabSeparated", "1\n", 2, NULL,
                                      AN_CH_INSERT_IDEMPOTENT, &err),
                     AN_UNAVAILABLE);
    ck_assert_int_eq(s.accepted, 4);
    an_ch_free(ch);
    an_buf_free(&k.first);
    hangup_stop(&s);
}
END_TEST

Suite *clickhouse_suite(void)
{
    Suite *s = suite_create("clickhouse");
    TCase *tc = tcase_create("server");
    tcase_add_unchecked_fixture(tc, setup, NULL);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_clickhouse_million_rows_in_batches_are_all_there);
    tcase_add_test(tc, test_clickhouse_streaming_insert_timeout_counts_from_the_end_of_the_body);
    tcase_add_test(tc, test_clickhouse_deadline_breaks_off_running_requests);
    tcase_add_test(tc, test_clickhouse_rowbinary_batch_with_wrong_types_is_refused_before_sending);
    tcase_add_test(tc, test_clickhouse_streaming_insert_sends_while_building);
    tcase_add_test(tc, test_clickhouse_bad_insert_data_is_invalid_argument);
    tcase_add_test(tc, test_clickhouse_query_hands_unescaped_fields_names_and_types);
    tcase_add_test(tc, test_clickhouse_large_result_streams_in_bounded_memory);
    tcase_add_test(tc, test_clickhouse_callback_can_stop_a_query_and_the_client_goes_on);
    tcase_add_test(tc, test_clickhouse_query_buf_exec_and_ping);
    tcase_add_test(tc, test_clickhouse_connection_is_kept_alive);
    tcase_add_test(tc, test_clickhouse_server_errors_map_to_statuses_with_messages);
    tcase_add_test(tc, test_clickhouse_exception_mid_stream_is_detected);
    tcase_add_test(tc, test_clickhouse_reader_is_confined);
    tcase_add_test(tc, test_clickhouse_wrong_password_is_internal_with_code);
    tcase_add_test(tc, test_clickhouse_connection_refused_is_unavailable_after_growing_retries);
    tcase_add_test(tc, test_clickhouse_reads_are_retried_after_a_hangup_inserts_are_not);
    suite_add_tcase(s, tc);
    return s;
}
