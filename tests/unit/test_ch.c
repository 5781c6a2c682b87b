#include "common/buf.h"
#include "common/ch.h"
#include "common/ch_int.h"
#include "common/status.h"

#include <check.h>
#include <stdlib.h>
#include <string.h>

/* ---- escaping ------------------------------------------------------------ */

START_TEST(test_ch_tsv_escape_escapes_tab_newline_backslash_cr_nul)
{
    an_buf b = AN_BUF_INIT;
    static const char in[] = "a\tb\nc\\d\re\0f'g";
    an_ch_tsv_escape(&b, in, sizeof(in) - 1);
    ck_assert_str_eq(b.data, "a\\tb\\nc\\\\d\\re\\0f'g");
    an_buf_free(&b);
}
END_TEST

START_TEST(test_ch_tsv_quote_escapes_quote_inside_array_element)
{
    an_buf b = AN_BUF_INIT;
    an_ch_tsv_quote(&b, "it's\ta\\b", 8);
    ck_assert_str_eq(b.data, "'it\\'s\\ta\\\\b'");
    an_buf_free(&b);
}
END_TEST

START_TEST(test_ch_tsv_unescape_decodes_every_sequence)
{
    static const char in[] = "a\\tb\\nc\\\\d\\re\\0f\\'g\\x41\\bh\\fi\\zq";
    char out[sizeof(in)];
    size_t n = an_ch_tsv_unescape(out, in, sizeof(in) - 1);
    static const char want[] = "a\tb\nc\\d\re\0f'gA\bh\fizq";
    ck_assert_uint_eq(n, sizeof(want) - 1);
    ck_assert(memcmp(out, want, n) == 0);
}
END_TEST

START_TEST(test_ch_tsv_escape_then_unescape_round_trips_random_bytes)
{
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        char in[64];
        size_t len = (size_t)(rand_r(&seed) % 64);
        for (size_t i = 0; i < len; i++)
            in[i] = (char)(rand_r(&seed) % 256);
        an_buf b = AN_BUF_INIT;
        an_ch_tsv_escape(&b, in, len);
        ck_assert_ptr_null(memchr(an_buf_str(&b), '\t', b.len));
        ck_assert_ptr_null(memchr(an_buf_str(&b), '\n', b.len));
        char out[64];
        size_t n = an_ch_tsv_unescape(out, an_buf_str(&b), b.len);
        ck_assert_uint_eq(n, len);
        ck_assert(memcmp(in, out, len) == 0);
        an_buf_free(&b);
    }
}
END_TEST

START_TEST(test_ch_url_encode_keeps_unreserved_only)
{
    an_buf b = AN_BUF_INIT;
    an_buf_add_uri_encoded(&b, "a b&c=d/é~_-.", strlen("a b&c=d/é~_-."), false);
    ck_assert_str_eq(b.data, "a%20b%26c%3Dd%2F%C3%A9~_-.");
    an_buf_free(&b);
}
END_TEST

/* ---- exceptions ---------------------------------------------------------- */

START_TEST(test_ch_exception_old_format_keeps_message_and_code)
{
    static const char t[] = "Code: 62, e.displayText() = DB::Exception: Syntax error: failed at "
                            "position 1: SELEC 1\n. Expected one of: SELECT, e.what() = "
                            "DB::Exception\n";
    an_error err;
    int code = -1;
    ck_assert(an_ch_looks_like_exception(t, sizeof(t) - 1));
    ck_assert_int_eq(an_ch_exception_to_error(t, sizeof(t) - 1, &code, &err), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(code, 62);
    ck_assert_int_eq(err.code, AN_INVALID_ARGUMENT);
    ck_assert_str_eq(err.message, "clickhouse code 62: Syntax error: failed at position 1: "
                                  "SELEC 1\n. Expected one of: SELECT");
}
END_TEST

START_TEST(test_ch_exception_new_format_is_understood)
{
    static const char t[] = "Code: 60. DB::Exception: Table default.x doesn't exist. "
                            "(UNKNOWN_TABLE) (version 23.8.1.1)\n";
    an_error err;
    int code;
    ck_assert_int_eq(an_ch_exception_to_error(t, sizeof(t) - 1, &code, &err), AN_NOT_FOUND);
    ck_assert_int_eq(code, 60);
    ck_assert_str_eq(err.message, "clickhouse code 60: Table default.x doesn't exist. "
                                  "(UNKNOWN_TABLE) (version 23.8.1.1)");
}
END_TEST

START_TEST(test_ch_exception_auth_failure_is_internal_and_says_so)
{
    static const char t[] = "Code: 193, e.displayText() = DB::Exception: Wrong password for "
                            "user default, e.what() = DB::Exception";
    an_error err;
    int code;
    ck_assert_int_eq(an_ch_exception_to_error(t, sizeof(t) - 1, &code, &err), AN_INTERNAL);
    ck_assert_int_eq(code, 193);
    ck_assert_ptr_nonnull(strstr(err.message, "authentication failed"));
    ck_assert_ptr_nonnull(strstr(err.message, "Wrong password for user default"));
}
END_TEST

START_TEST(test_ch_exception_lookalikes_are_not_exceptions)
{
    static const char *no[] = {"Code: ",
                               "Code: x, e.displayText() = ",
                               "Code: 12 foo",
                               "Codex: 1, e.displayText() = ",
                               "code: 1, e.displayText() = ",
                               "Code: 62, displayText",
                               "1\tCode: 62, e.displayText() = "};
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        ck_assert_msg(!an_ch_looks_like_exception(no[i], strlen(no[i])), "%s", no[i]);
    int code = 7;
    an_error err;
    ck_assert_int_eq(an_ch_exception_to_error("oops", 4, &code, &err), AN_INTERNAL);
    ck_assert_int_eq(code, 0);
}
END_TEST

START_TEST(test_ch_trailing_exception_only_at_the_end_of_a_raw_body)
{
    static const char exc[] = "Code: 396, e.displayText() = DB::Exception: Limit for result "
                              "exceeded, e.what() = DB::Exception\n";
    an_buf b = AN_BUF_INIT;
    an_buf_adds(&b, "1,\"a\"\n2,\"b\"\n");
    size_t data_len = b.len;
    ck_assert_ptr_null(an_ch_trailing_exception(b.data, b.len));
    an_buf_adds(&b, exc);
    ck_assert_ptr_eq(an_ch_trailing_exception(b.data, b.len), b.data + data_len);
    /* the same text followed by more data is data */
    an_buf_adds(&b, "3,\"c\"\n");
    ck_assert_ptr_null(an_ch_trailing_exception(b.data, b.len));
    /* a multi-line exception starts at its Code: line */
    an_buf_reset(&b);
    an_buf_adds(&b, "x\nCode: 62. DB::Exception: Syntax error\nnear here. (SYNTAX_ERROR) "
                    "(version 23.8.1.1)\n");
    ck_assert_ptr_eq(an_ch_trailing_exception(b.data, b.len), b.data + 2);
    an_buf_free(&b);
}
END_TEST

START_TEST(test_ch_codes_map_to_statuses)
{
    static const struct {
        int code;
        an_status st;
    } m[] = {
        {62, AN_INVALID_ARGUMENT},
        {47, AN_INVALID_ARGUMENT},
        {46, AN_INVALID_ARGUMENT},
        {53, AN_INVALID_ARGUMENT},
        {43, AN_INVALID_ARGUMENT},
        {27, AN_INVALID_ARGUMENT},
        {60, AN_NOT_FOUND},
        {81, AN_NOT_FOUND},
        {57, AN_ALREADY_EXISTS},
        {164, AN_PERMISSION_DENIED},
        {291, AN_PERMISSION_DENIED},
        {497, AN_PERMISSION_DENIED},
        {159, AN_RESOURCE_EXHAUSTED},
        {158, AN_RESOURCE_EXHAUSTED},
        {396, AN_RESOURCE_EXHAUSTED},
        {241, AN_RESOURCE_EXHAUSTED},
        {307, AN_RESOURCE_EXHAUSTED},
        {202, AN_RESOURCE_EXHAUSTED},
        {192, AN_INTERNAL},
        {193, AN_INTERNAL},
        {194, AN_INTERNAL},
        {516, AN_INTERNAL},
        {210, AN_UNAVAILABLE},
        {395, AN_INTERNAL},
        {49, AN_INTERNAL},
        {0, AN_INTERNAL},
    };
    for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++)
        ck_assert_msg(an_ch_status_for_code(m[i].code) == m[i].st, "code %d -> %s", m[i].code,
                      an_status_code(an_ch_status_for_code(m[i].code)));
}
END_TEST

/* ---- settings -------------------------------------------------------------- */

START_TEST(test_ch_params_send_only_set_values_with_readonly_last)
{
    an_ch_setting extra[] = {{"log_queries", "1"}, {"query_id", "a b&c"}};
    an_ch_settings s = {.readonly = 1,
                        .max_execution_time = 30,
                        .max_result_rows = 1000,
                        .max_memory_usage = 2000000000ULL,
                        .extra = extra,
                        .n_extra = 2};
    an_buf b = AN_BUF_INIT;
    ck_assert_int_eq(an_ch_build_params(&b, "analytics", &s, NULL), AN_OK);
    ck_assert_str_eq(b.data, "database=analytics&max_execution_time=30&max_result_rows=1000&"
                             "result_overflow_mode=throw&max_memory_usage=2000000000&"
                             "log_queries=1&query_id=a%20b%26c&readonly=1&");
    an_buf_free(&b);
}
END_TEST

START_TEST(test_ch_params_zero_settings_send_nothing)
{
    an_ch_settings zero = {0};
    an_buf b = AN_BUF_INIT;
    ck_assert_int_eq(an_ch_build_params(&b, NULL, &zero, NULL), AN_OK);
    ck_assert_str_eq(an_buf_str(&b), "");
    ck_assert_int_eq(an_ch_build_params(&b, NULL, NULL, NULL), AN_OK);
    ck_assert_str_eq(an_buf_str(&b), "");
    an_buf_free(&b);
}
END_TEST

START_TEST(test_ch_params_reject_bad_names_and_values)
{
    an_ch_setting bad_name[] = {{"max_threads&readonly", "0"}};
    an_ch_setting sneaky[] = {{"readonly", "0"}};
    an_ch_setting null_value[] = {{"max_threads", NULL}};
    an_ch_settings cases[] = {
        {.extra = bad_name, .n_extra = 1},   {.extra = sneaky, .n_extra = 1},
        {.extra = null_value, .n_extra = 1}, {.readonly = 3},
        {.max_execution_time = -1},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        an_buf b = AN_BUF_INIT;
        an_error err;
        ck_assert_msg(an_ch_build_params(&b, NULL, &cases[i], &err) == AN_INVALID_ARGUMENT,
                      "case %zu accepted", i);
        an_buf_free(&b);
    }
}
END_TEST

/* ---- the streaming parser ------------------------------------------------ */

typedef struct {
    an_buf log; /* "f1|f2\n" per row, NULL as <NULL> */
    int rows;
    int stop_at; /* -1: never */
} collect;

static an_status collect_row(void *ud, const an_ch_row *row, an_error *err)
{
    collect *c = ud;
    if (c->rows == c->stop_at)
        return an_error_set(err, AN_RESOURCE_EXHAUSTED, "enough");
    for (size_t i = 0; i < row->ncols; i++) {
        if (i)
            an_buf_addc(&c->log, '|');
        if (row->fields[i])
            an_buf_add(&c->log, row->fields[i], row->lens[i]);
        else
            an_buf_adds(&c->log, "<NULL>");
    }
    an_buf_addc(&c->log, '\n');
    ck_assert_uint_eq(row->index, (uint64_t)c->rows);
    c->rows++;
    return AN_OK;
}

/* Feed body in pieces of chunk bytes (0: all at once); returns finish's status. */
static an_status parse(const char *body, size_t len, size_t chunk, collect *c, int *code,
                       an_error *err)
{
    an_ch_parser p;
    an_ch_parser_init(&p, collect_row, c, err);
    an_status st = AN_OK;
    for (size_t off = 0; off < len && st == AN_OK;) {
        size_t n = chunk && len - off > chunk ? chunk : len - off;
        st = an_ch_parser_feed(&p, body + off, n);
        off += n;
    }
    if (st == AN_OK)
        st = an_ch_parser_finish(&p, code);
    if (st == AN_OK) {
        ck_assert_uint_eq(p.ncols, 3);
        ck_assert_str_eq(p.names[1], "b");
        ck_assert_str_eq(p.types[2], "Nullable(String)");
    }
    an_ch_parser_free(&p);
    return st;
}

static const char BODY[] = "a\tb\tc\n"
                           "UInt64\tString\tNullable(String)\n"
                           "1\tx\\ty\t\\N\n"
                           "2\tline\\nbreak\t\\\\N\n"
                           "3\t\tback\\\\slash\n";
static const char WANT[] = "1|x\ty|<NULL>\n2|line\nbreak|\\N\n3||back\\slash\n";

START_TEST(test_ch_parser_decodes_rows_whatever_the_chunking)
{
    for (size_t chunk = 0; chunk <= sizeof(BODY); chunk++) {
        collect c = {AN_BUF_INIT, 0, -1};
        int code = -1;
        an_error err;
        ck_assert_int_eq(parse(BODY, sizeof(BODY) - 1, chunk, &c, &code, &err), AN_OK);
        ck_assert_int_eq(code, 0);
        ck_assert_int_eq(c.rows, 3);
        ck_assert_str_eq(c.log.data, WANT);
        an_buf_free(&c.log);
    }
}
END_TEST

START_TEST(test_ch_parser_detects_exception_after_rows)
{
    an_buf body = AN_BUF_INIT;
    an_buf_adds(&body, BODY);
    an_buf_adds(&body, "Code: 395, e.displayText() = DB::Exception: Value passed to 'throwIf' "
                       "function is non zero, e.what() = DB::Exception\n");
    for (size_t chunk = 0; chunk < 40; chunk += 7) {
        collect c = {AN_BUF_INIT, 0, -1};
        int code = 0;
        an_error err;
        ck_assert_int_eq(parse(body.data, body.len, chunk, &c, &code, &err), AN_INTERNAL);
        ck_assert_int_eq(code, 395);
        ck_assert_int_eq(c.rows, 3);
        ck_assert_ptr_nonnull(strstr(err.message, "throwIf"));
        an_buf_free(&c.log);
    }
    an_buf_free(&body);
}
END_TEST

START_TEST(test_ch_parser_detects_exception_glued_to_a_partial_row)
{
    static const char body[] = "a\tb\tc\nUInt64\tString\tString\n1\tx\ty\n2\tpartCode: 241, "
                               "e.displayText() = DB::Exception: Memory limit (for query) "
                               "exceeded, e.what() = DB::Exception\n";
    collect c = {AN_BUF_INIT, 0, -1};
    int code = 0;
    an_error err;
    ck_assert_int_eq(parse(body, sizeof(body) - 1, 5, &c, &code, &err), AN_RESOURCE_EXHAUSTED);
    ck_assert_int_eq(code, 241);
    ck_assert_int_eq(c.rows, 1);
    ck_assert_ptr_nonnull(strstr(err.message, "Memory limit"));
    an_buf_free(&c.log);
}
END_TEST

START_TEST(test_ch_parser_exception_without_header)
{
    static const char body[] = "Code: 396, e.displayText() = DB::Exception: Limit for result "
                               "exceeded, max rows: 10.00, e.what() = DB::Exception\n";
    collect c = {AN_BUF_INIT, 0, -1};
    int code = 0;
    an_error err;
    ck_assert_int_eq(parse(body, sizeof(body) - 1, 0, &c, &code, &err), AN_RESOURCE_EXHAUSTED);
    ck_assert_int_eq(code, 396);
    ck_assert_int_eq(c.rows, 0);
    an_buf_free(&c.log);
}
END_TEST

/* One column: the data itself can read like an exception. Such a row is held
 * and handed over once a later line shows the "exception" was complete and
 * data goes on; only as the very last line is it taken for the exception. */
START_TEST(test_ch_parser_one_column_exception_lookalike_rows_stay_data)
{
    static const char exc[] = "Code: 60, e.displayText() = DB::Exception: Table x doesn't "
                              "exist., e.what() = DB::Exception";
    an_buf body = AN_BUF_INIT;
    an_buf_addf(&body, "msg\nString\nfirst\n%s\nlast\n", exc);
    an_ch_parser p;
    collect c = {AN_BUF_INIT, 0, -1};
    an_error err;
    int code = -1;
    an_ch_parser_init(&p, collect_row, &c, &err);
    ck_assert_int_eq(an_ch_parser_feed(&p, body.data, body.len), AN_OK);
    ck_assert_int_eq(an_ch_parser_finish(&p, &code), AN_OK);
    ck_assert_int_eq(code, 0);
    ck_assert_int_eq(c.rows, 3);
    an_buf want = AN_BUF_INIT;
    an_buf_addf(&want, "first\n%s\nlast\n", exc);
    ck_assert_str_eq(c.log.data, want.data);
    an_ch_parser_free(&p);

    /* The same text as the last line: the server's exception. */
    an_buf_reset(&body);
    an_buf_reset(&c.log);
    c.rows = 0;
    an_buf_addf(&body, "msg\nString\nfirst\n%s\n", exc);
    an_ch_parser_init(&p, collect_row, &c, &err);
    ck_assert_int_eq(an_ch_parser_feed(&p, body.data, body.len), AN_OK);
    ck_assert_int_eq(an_ch_parser_finish(&p, &code), AN_NOT_FOUND);
    ck_assert_int_eq(code, 60);
    ck_assert_int_eq(c.rows, 1);
    an_ch_parser_free(&p);
    an_buf_free(&want);
    an_buf_free(&body);
    an_buf_free(&c.log);
}
END_TEST

START_TEST(test_ch_parser_multiline_exception_is_kept_whole)
{
    static const char body[] = "n\nUInt64\n1\nCode: 62, e.displayText() = DB::Exception: "
                               "Syntax error\nsecond line, e.what() = DB::Exception\n";
    collect c = {AN_BUF_INIT, 0, -1};
    an_error err;
    int code;
    an_ch_parser p;
    an_ch_parser_init(&p, collect_row, &c, &err);
    ck_assert_int_eq(an_ch_parser_feed(&p, body, sizeof(body) - 1), AN_OK);
    ck_assert_int_eq(an_ch_parser_finish(&p, &code), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(c.rows, 1);
    ck_assert_str_eq(err.message, "clickhouse code 62: Syntax error\nsecond line");
    an_ch_parser_free(&p);
    an_buf_free(&c.log);
}
END_TEST

START_TEST(test_ch_parser_hands_arrays_as_literals)
{
    static const char body[] = "a\ts\nArray(String)\tString\n['it\\'s','t\\tx','\\\\']\tit\\'s\n";
    an_ch_parser p;
    collect c = {AN_BUF_INIT, 0, -1};
    an_error err;
    int code;
    an_ch_parser_init(&p, collect_row, &c, &err);
    ck_assert_int_eq(an_ch_parser_feed(&p, body, sizeof(body) - 1), AN_OK);
    ck_assert_int_eq(an_ch_parser_finish(&p, &code), AN_OK);
    /* the array as the server wrote it; the string decoded */
    ck_assert_str_eq(c.log.data, "['it\\'s','t\\tx','\\\\']|it's\n");
    an_ch_parser_free(&p);
    an_buf_free(&c.log);
}
END_TEST

START_TEST(test_ch_parser_callback_status_stops_and_is_returned)
{
    collect c = {AN_BUF_INIT, 0, 1};
    an_error err;
    int code;
    ck_assert_int_eq(parse(BODY, sizeof(BODY) - 1, 0, &c, &code, &err), AN_RESOURCE_EXHAUSTED);
    ck_assert_int_eq(c.rows, 1);
    ck_assert_str_eq(err.message, "enough");
    an_buf_free(&c.log);
}
END_TEST

START_TEST(test_ch_parser_rejects_malformed_rows)
{
    static const char *bodies[] = {
        "a\tb\nUInt8\tUInt8\n1\t2\n3\n",  /* too few fields */
        "a\tb\nUInt8\n",                  /* types do not match names */
        "a\tb\nUInt8\tUInt8\n1\t2\n3\t4", /* cut in the middle of a row */
    };
    for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        an_ch_parser p;
        an_error err;
        int code = 0;
        an_ch_parser_init(&p, NULL, NULL, &err);
        an_status st = an_ch_parser_feed(&p, bodies[i], strlen(bodies[i]));
        if (st == AN_OK)
            st = an_ch_parser_finish(&p, &code);
        ck_assert_msg(st == AN_INTERNAL, "body %zu: %s", i, an_status_code(st));
        ck_assert_ptr_nonnull(strstr(err.message, "malformed"));
        an_ch_parser_free(&p);
    }
}
END_TEST

START_TEST(test_ch_parser_memory_is_bounded_by_longest_row)
{
    /* 100k rows fed in 4 KiB chunks: the parser's buffers stay row-sized. */
    an_ch_parser p;
    an_ch_parser_init(&p, NULL, NULL, NULL);
    ck_assert_int_eq(an_ch_parser_feed(&p, "n\ts\nUInt64\tString\n", 18), AN_OK);
    an_buf chunk = AN_BUF_INIT;
    for (int i = 0; i < 100000; i++) {
        an_buf_addf(&chunk, "%d\tsome text of a row\n", i);
        if (chunk.len > 4096) {
            ck_assert_int_eq(an_ch_parser_feed(&p, chunk.data, 4096), AN_OK);
            memmove(chunk.data, chunk.data + 4096, chunk.len - 4096);
            chunk.len -= 4096;
        }
    }
    ck_assert_int_eq(an_ch_parser_feed(&p, chunk.data, chunk.len), AN_OK);
    int code;
    ck_assert_int_eq(an_ch_parser_finish(&p, &code), AN_OK);
    ck_assert_uint_eq(p.rows, 100000);
    ck_assert_uint_lt(p.partial.cap, 256);
    ck_assert_uint_lt(p.rowbuf.cap, 256);
    an_ch_parser_free(&p);
    an_buf_free(&chunk);
}
END_TEST

/* ---- the batch builder ---------------------------------------------------- */

static const an_ch_column COLS[] = {
    {"tenant", AN_CH_STRING},     {"n", AN_CH_INT32},
    {"u", AN_CH_UINT64},          {"f", AN_CH_FLOAT64},
    {"at", AN_CH_DATETIME},       {"day", AN_CH_DATE},
    {"keys", AN_CH_ARRAY_STRING}, {"note", AN_CH_STRING | AN_CH_NULLABLE},
};
#define NCOLS (sizeof(COLS) / sizeof(COLS[0]))

static void add_sample_row(an_ch_batch *b, const char *note)
{
    static const char *keys[] = {"it's", "tab\there"};
    an_ch_batch_add_cstr(b, "t\\1\n");
    an_ch_batch_add_int(b, -42);
    an_ch_batch_add_uint(b, 18446744073709551615ULL);
    an_ch_batch_add_float(b, 0.5);
    an_ch_batch_add_datetime(b, 59);
    an_ch_batch_add_date(b, 1700000000);
    an_ch_batch_add_str_array(b, keys, NULL, 2);
    an_ch_batch_add_cstr(b, note);
}

START_TEST(test_ch_batch_tsv_rows_are_escaped_and_typed)
{
    an_ch_batch *b;
    ck_assert_int_eq(an_ch_batch_new("analytics.t", COLS, NCOLS, AN_CH_FORMAT_TSV, &b, NULL),
                     AN_OK);
    ck_assert_str_eq(an_ch_batch_statement(b), "INSERT INTO analytics.t (tenant, n, u, f, at, "
                                               "day, keys, note) FORMAT TabSeparated");
    add_sample_row(b, NULL);
    ck_assert_int_eq(an_ch_batch_end_row(b, NULL), AN_OK);
    add_sample_row(b, "x");
    ck_assert_int_eq(an_ch_batch_end_row(b, NULL), AN_OK);
    size_t len;
    const char *d = an_ch_batch_data(b, &len);
    static const char want[] = "t\\\\1\\n\t-42\t18446744073709551615\t0.5\t0000000059\t2023-11-14\t"
                               "['it\\'s','tab\\there']\t\\N\n"
                               "t\\\\1\\n\t-42\t18446744073709551615\t0.5\t0000000059\t2023-11-14\t"
                               "['it\\'s','tab\\there']\tx\n";
    ck_assert_uint_eq(len, sizeof(want) - 1);
    ck_assert(memcmp(d, want, len) == 0);
    ck_assert_uint_eq(an_ch_batch_rows(b), 2);
    ck_assert_uint_eq(an_ch_batch_bytes(b), len);
    an_ch_batch_reset(b);
    ck_assert_uint_eq(an_ch_batch_rows(b), 0);
    ck_assert_uint_eq(an_ch_batch_bytes(b), 0);
    an_ch_batch_free(b);
}
END_TEST

START_TEST(test_ch_batch_rowbinary_layout)
{
    static const an_ch_column cols[] = {{"s", AN_CH_STRING},
                                        {"i", AN_CH_INT16},
                                        {"t", AN_CH_DATETIME},
                                        {"a", AN_CH_ARRAY_STRING},
                                        {"n", AN_CH_UINT8 | AN_CH_NULLABLE},
                                        {"d", AN_CH_DATE}};
    an_ch_batch *b;
    ck_assert_int_eq(an_ch_batch_new("t", cols, 6, AN_CH_FORMAT_ROWBINARY, &b, NULL), AN_OK);
    static const char *items[] = {"ab", ""};
    an_ch_batch_add_str(b, "xyz", 3);
    an_ch_batch_add_int(b, -2);
    an_ch_batch_add_datetime(b, 0x01020304);
    an_ch_batch_add_str_array(b, items, NULL, 2);
    an_ch_batch_add_null(b);
    an_ch_batch_add_date(b, 86400 * 3 + 5);
    ck_assert_int_eq(an_ch_batch_end_row(b, NULL), AN_OK);
    an_ch_batch_add_str(b, "", 0);
    an_ch_batch_add_int(b, 300);
    an_ch_batch_add_datetime(b, 1);
    an_ch_batch_add_str_array(b, NULL, NULL, 0);
    an_ch_batch_add_uint(b, 7);
    an_ch_batch_add_date(b, 0);
    ck_assert_int_eq(an_ch_batch_end_row(b, NULL), AN_OK);
    static const unsigned char want[] = {
        3, 'x',  'y',  'z', 0xfe, 0xff, 4, 3, 2, 1, 2, 2, 'a', 'b', 0, 1, 3, 0, /* row 1 */
        0, 0x2c, 0x01, 1,   0,    0,    0, 0, 0, 7, 0, 0,                       /* row 2 */
    };
    size_t len;
    const char *d = an_ch_batch_data(b, &len);
    ck_assert_uint_eq(len, sizeof(want));
    ck_assert(memcmp(d, want, len) == 0);
    ck_assert_str_eq(an_ch_batch_statement(b), "INSERT INTO t (s, i, t, a, n, d) FORMAT RowBinary");
    an_ch_batch_free(b);
}
END_TEST

START_TEST(test_ch_batch_bad_row_is_dropped_and_names_the_column)
{
    an_ch_batch *b;
    ck_assert_int_eq(an_ch_batch_new("t", COLS, NCOLS, AN_CH_FORMAT_TSV, &b, NULL), AN_OK);
    add_sample_row(b, "ok");
    ck_assert_int_eq(an_ch_batch_end_row(b, NULL), AN_OK);
    size_t good;
    an_ch_batch_data(b, &good);

    an_error err;
    /* a string into Int32 */
    an_ch_batch_add_cstr(b, "t");
    an_ch_batch_add_cstr(b, "12");
    ck_assert_int_eq(an_ch_batch_end_row(b, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "column n (Int32)"));
    /* out of range */
    an_ch_batch_add_cstr(b, "t");
    an_ch_batch_add_int(b, 1LL << 40);
    ck_assert_int_eq(an_ch_batch_end_row(b, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "out of range"));
    /* negative into UInt64 */
    an_ch_batch_add_cstr(b, "t");
    an_ch_batch_add_int(b, 1);
    an_ch_batch_add_int(b, -1);
    ck_assert_int_eq(an_ch_batch_end_row(b, &err), AN_INVALID_ARGUMENT);
    /* NULL into a non-Nullable column */
    an_ch_batch_add_null(b);
    ck_assert_int_eq(an_ch_batch_end_row(b, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "NULL"));
    /* too few, too many fields */
    an_ch_batch_add_cstr(b, "t");
    ck_assert_int_eq(an_ch_batch_end_row(b, &err), AN_INVALID_ARGUMENT);
    add_sample_row(b, "x");
    an_ch_batch_add_cstr(b, "one more");
    ck_assert_int_eq(an_ch_batch_end_row(b, &err), AN_INVALID_ARGUMENT);

    size_t len;
    an_ch_batch_data(b, &len);
    ck_assert_uint_eq(len, good);
    ck_assert_uint_eq(an_ch_batch_rows(b), 1);
    /* and the batch goes on */
    add_sample_row(b, "y");
    ck_assert_int_eq(an_ch_batch_end_row(b, NULL), AN_OK);
    ck_assert_uint_eq(an_ch_batch_rows(b), 2);
    an_ch_batch_free(b);
}
END_TEST

START_TEST(test_ch_batch_rejects_bad_names)
{
    an_ch_batch *b = (an_ch_batch *)1;
    an_error err;
    static const an_ch_column bad_col[] = {{"a b", AN_CH_STRING}};
    static const an_ch_column bad_type[] = {{"a", 99}};
    ck_assert_int_eq(an_ch_batch_new("t; DROP", COLS, NCOLS, AN_CH_FORMAT_TSV, &b, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_ptr_null(b);
    ck_assert_int_eq(an_ch_batch_new("a.b.c", COLS, NCOLS, AN_CH_FORMAT_TSV, &b, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_ch_batch_new("t", bad_col, 1, AN_CH_FORMAT_TSV, &b, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_ch_batch_new("t", bad_type, 1, AN_CH_FORMAT_TSV, &b, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_ch_batch_new("t", COLS, 0, AN_CH_FORMAT_TSV, &b, &err),
                     AN_INVALID_ARGUMENT);
}
END_TEST

START_TEST(test_ch_new_rejects_bad_options)
{
    an_ch *ch = (an_ch *)1;
    an_error err;
    an_ch_options o = {.url = "ftp://x"};
    ck_assert_int_eq(an_ch_new(&o, &ch, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_null(ch);
    an_ch_options o2 = {.url = "http://127.0.0.1:1", .password = "a\r\nX-Evil: 1"};
    ck_assert_int_eq(an_ch_new(&o2, &ch, &err), AN_INVALID_ARGUMENT);
    an_ch_options o3 = {.url = "http://127.0.0.1:1", .database = "a-b"};
    ck_assert_int_eq(an_ch_new(&o3, &ch, &err), AN_INVALID_ARGUMENT);
    an_ch_free(NULL);
    an_ch_batch_free(NULL);
}
END_TEST

Suite *ch_suite(void)
{
    Suite *s = suite_create("ch");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_ch_tsv_escape_escapes_tab_newline_backslash_cr_nul);
    tcase_add_test(tc, test_ch_tsv_quote_escapes_quote_inside_array_element);
    tcase_add_test(tc, test_ch_tsv_unescape_decodes_every_sequence);
    tcase_add_test(tc, test_ch_tsv_escape_then_unescape_round_trips_random_bytes);
    tcase_add_test(tc, test_ch_url_encode_keeps_unreserved_only);
    tcase_add_test(tc, test_ch_exception_old_format_keeps_message_and_code);
    tcase_add_test(tc, test_ch_exception_new_format_is_understood);
    tcase_add_test(tc, test_ch_exception_auth_failure_is_internal_and_says_so);
    tcase_add_test(tc, test_ch_exception_lookalikes_are_not_exceptions);
    tcase_add_test(tc, test_ch_trailing_exception_only_at_the_end_of_a_raw_body);
    tcase_add_test(tc, test_ch_codes_map_to_statuses);
    tcase_add_test(tc, test_ch_params_send_only_set_values_with_readonly_last);
    tcase_add_test(tc, test_ch_params_zero_settings_send_nothing);
    tcase_add_test(tc, test_ch_params_reject_bad_names_and_values);
    tcase_add_test(tc, test_ch_parser_decodes_rows_whatever_the_chunking);
    tcase_add_test(tc, test_ch_parser_detects_exception_after_rows);
    tcase_add_test(tc, test_ch_parser_detects_exception_glued_to_a_partial_row);
    tcase_add_test(tc, test_ch_parser_exception_without_header);
    tcase_add_test(tc, test_ch_parser_one_column_exception_lookalike_rows_stay_data);
    tcase_add_test(tc, test_ch_parser_multiline_exception_is_kept_whole);
    tcase_add_test(tc, test_ch_parser_hands_arrays_as_literals);
    tcase_add_test(tc, test_ch_parser_callback_status_stops_and_is_returned);
    tcase_add_test(tc, test_ch_parser_rejects_malformed_rows);
    tcase_add_test(tc, test_ch_parser_memory_is_bounded_by_longest_row);
    tcase_add_test(tc, test_ch_batch_tsv_rows_are_escaped_and_typed);
    tcase_add_test(tc, test_ch_batch_rowbinary_layout);
    tcase_add_test(tc, test_ch_batch_bad_row_is_dropped_and_names_the_column);
    tcase_add_test(tc, test_ch_batch_rejects_bad_names);
    tcase_add_test(tc, test_ch_new_rejects_bad_options);
    suite_add_tcase(s, tc);
    return s;
}
