/*
 * The exports writers: csv quoting and formula neutralisation, UTF-8
 * clean-up, the exact bytes of csv and NDJSON files, and xlsx workbooks
 * opened by an independent reader (openpyxl, Debian's python3-openpyxl)
 * with their cell types and the sheet split.
 */
#include "exports/exports.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *csv1(const char *s, bool neutralise)
{
    an_buf b = AN_BUF_INIT;
    exports_csv_field(&b, s, strlen(s), neutralise);
    return an_buf_detach(&b, NULL);
}

#define CSV_EQ(in, neut, want)                                                                     \
    do {                                                                                           \
        char *got_ = csv1(in, neut);                                                               \
        ck_assert_str_eq(got_, want);                                                              \
        free(got_);                                                                                \
    } while (0)

START_TEST(test_csv_quotes_commas_quotes_and_line_breaks)
{
    CSV_EQ("plain", true, "plain");
    CSV_EQ("a,b", true, "\"a,b\"");
    CSV_EQ("say \"hi\"", true, "\"say \"\"hi\"\"\"");
    CSV_EQ("two\nlines", true, "\"two\nlines\"");
    CSV_EQ("cr\rlf", true, "\"cr\rlf\"");
    CSV_EQ("", true, "");
}
END_TEST

START_TEST(test_csv_neutralises_formula_looking_text)
{
    CSV_EQ("=1+1", true, "'=1+1");
    CSV_EQ("+33 1 23", true, "'+33 1 23");
    CSV_EQ("-2", true, "'-2");
    CSV_EQ("@SUM(A1)", true, "'@SUM(A1)");
    CSV_EQ("\tx", true, "'\tx");
    CSV_EQ("=HYPERLINK(\"http://x\",\"y\")", true, "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"");
    /* numbers are written as they are */
    CSV_EQ("-2", false, "-2");
    CSV_EQ("a=b", true, "a=b");
}
END_TEST

START_TEST(test_csv_keeps_unicode_and_replaces_invalid_utf8)
{
    CSV_EQ("Zoë, 東京 🎓", true, "\"Zoë, 東京 🎓\"");
    CSV_EQ("bad\xff byte", true, "bad\xEF\xBF\xBD byte");
    CSV_EQ("\xC0\xAF", true, "\xEF\xBF\xBD\xEF\xBF\xBD");                 /* overlong '/' */
    CSV_EQ("\xED\xA0\x80", true, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"); /* surrogate */
    CSV_EQ("cut\xE2\x82", true, "cut\xEF\xBF\xBD\xEF\xBF\xBD");
}
END_TEST

START_TEST(test_coltype_from_clickhouse_types)
{
    ck_assert_int_eq(exports_coltype_of("UInt64"), EXPORTS_COL_INT);
    ck_assert_int_eq(exports_coltype_of("Nullable(Int8)"), EXPORTS_COL_INT);
    ck_assert_int_eq(exports_coltype_of("Float64"), EXPORTS_COL_FLOAT);
    ck_assert_int_eq(exports_coltype_of("Decimal(10, 2)"), EXPORTS_COL_FLOAT);
    ck_assert_int_eq(exports_coltype_of("Date"), EXPORTS_COL_DATE);
    ck_assert_int_eq(exports_coltype_of("DateTime"), EXPORTS_COL_DATETIME);
    ck_assert_int_eq(exports_coltype_of("DateTime('UTC')"), EXPORTS_COL_DATETIME);
    ck_assert_int_eq(exports_coltype_of("LowCardinality(Nullable(String))"), EXPORTS_COL_STRING);
    ck_assert_int_eq(exports_coltype_of("Array(String)"), EXPORTS_COL_STRING);
    ck_assert_int_eq(exports_coltype_of("DateTime64(3)"), EXPORTS_COL_STRING);
}
END_TEST

/* ------------------------------------------------------------ whole files */

static const char *names[] = {"name", "n", "note", "day", "at", "x"};
static const char *types[] = {"String", "Int64", "Nullable(String)", "Date", "DateTime", "Float64"};

typedef struct {
    const char *f[6];
} trow;

static const trow rows[] = {
    {{"alice, \"the\" first", "-5", NULL, "2024-02-29", "2024-02-29 13:14:15", "1.5"}},
    {{"=cmd|' /C calc'!A0", "9007199254740993", "line1\nline2", "0000-00-00", "0000-00-00 00:00:00",
      "nan"}},
    {{"Zoë 東京", "0", "", "1970-01-01", "1970-01-01 00:00:00", "-0.25"}},
};

static char *tmp_path(const char *ext)
{
    char *p;
    ck_assert(asprintf(&p, "/tmp/exports_writer_%d_%ld.%s", (int)getpid(), random(), ext) > 0);
    return p;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc(1, (size_t)len + 1);
    ck_assert_uint_eq(fread(s, 1, (size_t)len, f), (size_t)len);
    fclose(f);
    if (n)
        *n = (size_t)len;
    return s;
}

static void write_file(exports_format fmt, const char *path, uint64_t per_sheet, size_t repeat)
{
    exports_writer_opts o = {.tmpdir = "/tmp", .xlsx_rows_per_sheet = per_sheet};
    exports_writer *w = NULL;
    an_error err;
    ck_assert_int_eq(exports_writer_open(fmt, path, &o, &w, &err), AN_OK);
    ck_assert_int_eq(exports_writer_columns(w, 6, names, types, &err), AN_OK);
    for (size_t k = 0; k < repeat; k++) {
        for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
            size_t lens[6];
            for (int c = 0; c < 6; c++)
                lens[c] = rows[i].f[c] ? strlen(rows[i].f[c]) : 0;
            ck_assert_int_eq(exports_writer_row(w, rows[i].f, lens, &err), AN_OK);
        }
    }
    uint64_t bytes = 0;
    ck_assert_int_eq(exports_writer_close(w, &bytes, &err), AN_OK);
    ck_assert_uint_eq(exports_writer_rows(w), 3 * repeat);
    size_t n = 0;
    free(slurp(path, &n));
    ck_assert_uint_eq(bytes, n);
    exports_writer_free(w);
}

START_TEST(test_csv_file_bytes)
{
    char *path = tmp_path("csv");
    write_file(EXPORTS_CSV, path, 0, 1);
    char *s = slurp(path, NULL);
    ck_assert_str_eq(s, "name,n,note,day,at,x\r\n"
                        "\"alice, \"\"the\"\" first\",-5,,2024-02-29,2024-02-29 13:14:15,1.5\r\n"
                        "'=cmd|' /C calc'!A0,9007199254740993,\"line1\nline2\",0000-00-00,"
                        "0000-00-00 00:00:00,nan\r\n"
                        "Zoë 東京,0,,1970-01-01,1970-01-01 00:00:00,-0.25\r\n");
    free(s);
    unlink(path);
    free(path);
}
END_TEST

START_TEST(test_json_file_is_ndjson_with_typed_values)
{
    char *path = tmp_path("ndjson");
    write_file(EXPORTS_JSON, path, 0, 1);
    char *s = slurp(path, NULL);
    ck_assert_str_eq(
        s, "{\"name\":\"alice, \\\"the\\\" first\",\"n\":-5,\"note\":null,\"day\":\"2024-02-29\","
           "\"at\":\"2024-02-29T13:14:15Z\",\"x\":1.5}\n"
           "{\"name\":\"=cmd|' /C calc'!A0\",\"n\":9007199254740993,\"note\":\"line1\\nline2\","
           "\"day\":\"0000-00-00\",\"at\":\"0000-00-00 00:00:00\",\"x\":null}\n"
           "{\"name\":\"Zoë 東京\",\"n\":0,\"note\":\"\",\"day\":\"1970-01-01\","
           "\"at\":\"1970-01-01T00:00:00Z\",\"x\":-0.25}\n");
    /* every line is one JSON object */
    char *save = NULL;
    int lines = 0;
    for (char *l = strtok_r(s, "\n", &save); l; l = strtok_r(NULL, "\n", &save), lines++) {
        cJSON *o = cJSON_Parse(l);
        ck_assert_msg(cJSON_IsObject(o), "not an object: %s", l);
        ck_assert_int_eq(cJSON_GetArraySize(o), 6);
        cJSON_Delete(o);
    }
    ck_assert_int_eq(lines, 3);
    free(s);
    unlink(path);
    free(path);
}
END_TEST

START_TEST(test_empty_result_without_columns_gives_an_empty_file)
{
    char *path = tmp_path("csv");
    exports_writer *w = NULL;
    ck_assert_int_eq(exports_writer_open(EXPORTS_CSV, path, NULL, &w, NULL), AN_OK);
    uint64_t bytes = 1;
    ck_assert_int_eq(exports_writer_close(w, &bytes, NULL), AN_OK);
    ck_assert_uint_eq(bytes, 0);
    exports_writer_free(w);
    unlink(path);
    free(path);
}
END_TEST

/* Run python on the workbook; returns its stdout (caller frees). */
static char *openpyxl_dump(const char *path)
{
    char *cmd;
    ck_assert(asprintf(&cmd,
                       "/usr/bin/python3 - '%s' <<'EOF'\n"
                       "import sys, openpyxl\n"
                       "wb = openpyxl.load_workbook(sys.argv[1], read_only=True)\n"
                       "for ws in wb.worksheets:\n"
                       "    print('sheet', ws.title)\n"
                       "    for row in ws.iter_rows():\n"
                       "        print('|'.join('%%s:%%r' %% (c.data_type, c.value) for c in row))\n"
                       "EOF",
                       path) > 0);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    an_buf out = AN_BUF_INIT;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof(buf), p)) > 0)
        an_buf_add(&out, buf, n);
    ck_assert_int_eq(pclose(p), 0);
    free(cmd);
    return an_buf_detach(&out, NULL);
}

START_TEST(test_xlsx_cells_are_typed_and_sheets_split)
{
    char *path = tmp_path("xlsx");
    write_file(EXPORTS_XLSX, path, 4, 3); /* 9 data rows, 4 per sheet: 3 sheets */
    char *dump = openpyxl_dump(path);
    const char *header = "s:'name'|s:'n'|s:'note'|s:'day'|s:'at'|s:'x'\n";
    const char *r1 = "s:'alice, \"the\" first'|n:-5|n:None|d:datetime.datetime(2024, 2, 29, 0, 0)|"
                     "d:datetime.datetime(2024, 2, 29, 13, 14, 15)|n:1.5\n";
    /* text stays text (never a formula); 2^53 + 1 does not fit a double: text */
    const char *r2 = "s:\"=cmd|' /C calc'!A0\"|s:'9007199254740993'|s:'line1\\nline2'|n:None|"
                     "n:None|s:'nan'\n";
    const char *r3 = "s:'Zoë 東京'|n:0|n:None|d:datetime.datetime(1970, 1, 1, 0, 0)|"
                     "d:datetime.datetime(1970, 1, 1, 0, 0)|n:-0.25\n";
    an_buf want = AN_BUF_INIT;
    an_buf_addf(&want, "sheet Sheet1\n%s%s%s%s%s", header, r1, r2, r3, r1);
    an_buf_addf(&want, "sheet Sheet2\n%s%s%s%s%s", header, r2, r3, r1, r2);
    an_buf_addf(&want, "sheet Sheet3\n%s%s", header, r3);
    ck_assert_str_eq(dump, want.data);
    an_buf_free(&want);
    free(dump);
    unlink(path);
    free(path);
}
END_TEST

START_TEST(test_xlsx_discarded_midway_leaves_no_file)
{
    char *path = tmp_path("xlsx");
    exports_writer *w = NULL;
    ck_assert_int_eq(exports_writer_open(EXPORTS_XLSX, path, NULL, &w, NULL), AN_OK);
    ck_assert_int_eq(exports_writer_columns(w, 6, names, types, NULL), AN_OK);
    for (int i = 0; i < 1000; i++) {
        size_t lens[6];
        for (int c = 0; c < 6; c++)
            lens[c] = rows[0].f[c] ? strlen(rows[0].f[c]) : 0;
        ck_assert_int_eq(exports_writer_row(w, rows[0].f, lens, NULL), AN_OK);
    }
    exports_writer_free(w); /* a failed or cancelled export */
    ck_assert_int_ne(access(path, F_OK), 0);
    free(path);
}
END_TEST

Suite *exports_writers_suite(void)
{
    Suite *s = suite_create("exports_writers");
    TCase *tc = tcase_create("writers");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_csv_quotes_commas_quotes_and_line_breaks);
    tcase_add_test(tc, test_csv_neutralises_formula_looking_text);
    tcase_add_test(tc, test_csv_keeps_unicode_and_replaces_invalid_utf8);
    tcase_add_test(tc, test_coltype_from_clickhouse_types);
    tcase_add_test(tc, test_csv_file_bytes);
    tcase_add_test(tc, test_json_file_is_ndjson_with_typed_values);
    tcase_add_test(tc, test_empty_result_without_columns_gives_an_empty_file);
    tcase_add_test(tc, test_xlsx_cells_are_typed_and_sheets_split);
    tcase_add_test(tc, test_xlsx_discarded_midway_leaves_no_file);
    suite_add_tcase(s, tc);
    return s;
}
