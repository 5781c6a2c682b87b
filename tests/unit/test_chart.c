/*
 * test_chart.c - common/chart: PNGs of every chart type, decoded with an
 * independent decoder (python3's zlib and struct, not cairo or libpng):
 * right size, not blank, not flooded; bad input refused.
 */
#include "common/chart.h"
#include "tests/harness.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *DECODER =
    "import sys, struct, zlib\n"
    "d = open(sys.argv[1], 'rb').read()\n"
    "assert d[:8] == b'\\x89PNG\\r\\n\\x1a\\n', 'not a PNG'\n"
    "i = 8; idat = b''; w = h = 0\n"
    "while i < len(d):\n"
    "    n, t = struct.unpack('>I4s', d[i:i+8]); c = d[i+8:i+8+n]\n"
    "    assert zlib.crc32(d[i+4:i+8+n]) == struct.unpack('>I', d[i+8+n:i+12+n])[0], 'bad crc'\n"
    "    if t == b'IHDR': w, h, bd, ct = struct.unpack('>IIBB', c[:10]); assert bd == 8\n"
    "    if t == b'IDAT': idat += c\n"
    "    i += 12 + n\n"
    "raw = zlib.decompress(idat); bpp = {2: 3, 6: 4}[ct]; stride = w * bpp\n"
    "prev = bytearray(stride); px = set(); nonwhite = 0; p = 0\n"
    "for y in range(h):\n"
    "    f = raw[p]; line = bytearray(raw[p+1:p+1+stride]); p += 1 + stride\n"
    "    for x in range(stride):\n"
    "        a = line[x-bpp] if x >= bpp else 0; b = prev[x]; c = prev[x-bpp] if x >= bpp else 0\n"
    "        if f == 1: line[x] = (line[x] + a) & 255\n"
    "        elif f == 2: line[x] = (line[x] + b) & 255\n"
    "        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255\n"
    "        elif f == 4:\n"
    "            pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)\n"
    "            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & "
    "255\n"
    "    prev = line\n"
    "    for x in range(0, stride, bpp):\n"
    "        q = bytes(line[x:x+3]); px.add(q); nonwhite += q != b'\\xff\\xff\\xff'\n"
    "print(w, h, len(px), round(nonwhite / (w * h), 4))\n";

typedef struct png_facts {
    int w, h, colours;
    double nonwhite;
} png_facts;

static png_facts decode(const an_buf *png, const char *name)
{
    char dir[] = "/tmp/an-chart-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256], py[256];
    snprintf(path, sizeof(path), "%s/%s.png", dir, name);
    snprintf(py, sizeof(py), "%s/dec.py", dir);
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    fwrite(png->data, 1, png->len, f);
    fclose(f);
    f = fopen(py, "w");
    fputs(DECODER, f);
    fclose(f);
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "python3 %s %s 2>&1; rm -rf %s", py, path, dir);
    int rc = 0;
    char *out = th_run(cmd, &rc);
    png_facts p = {0};
    ck_assert_msg(rc == 0 && sscanf(out, "%d %d %d %lf", &p.w, &p.h, &p.colours, &p.nonwhite) == 4,
                  "decode %s: %s", name, out);
    free(out);
    return p;
}

static const char *days[] = {"11-21", "11-22", "11-23", "11-24", "11-25", "11-26", "11-27"};
static const double fr[] = {3, 5, 4, 8, 6, 9, 12}, de[] = {1, 2, 6, 2, 3, 1, 4},
                    us[] = {7, 6, 5, 4, 3, 2, 1};

static void check_chart(const an_chart *c, int w, int h, const char *name)
{
    an_buf png;
    an_buf_init(&png);
    an_error err = {0};
    ck_assert_msg(an_chart_png(c, w, h, &png, &err) == AN_OK, "%s", err.message);
    png_facts p = decode(&png, name);
    ck_assert_int_eq(p.w, w);
    ck_assert_int_eq(p.h, h);
    /* text is anti-aliased and every series has its colour: many colours */
    ck_assert_msg(p.colours > 20, "%s: only %d colours", name, p.colours);
    ck_assert_msg(p.nonwhite > 0.01 && p.nonwhite < 0.8, "%s: %.3f of the pixels drawn", name,
                  p.nonwhite);
    an_buf_free(&png);
}

START_TEST(line_chart_decodes_at_800x400)
{
    an_chart_series s[] = {{"FR", fr, 7}, {"DE", de, 7}, {"US", us, 7}};
    an_chart c = {.type = AN_CHART_LINE,
                  .title = "Signups",
                  .subtitle = "last 7 days",
                  .unit = "users",
                  .labels = days,
                  .nlabels = 7,
                  .series = s,
                  .nseries = 3};
    check_chart(&c, 800, 400, "line");
}
END_TEST

START_TEST(bar_chart_decodes_at_other_sizes)
{
    an_chart_series s[] = {{"FR", fr, 7}, {"DE", de, 7}};
    an_chart c = {.type = AN_CHART_BAR,
                  .title = "Revenue",
                  .unit = "EUR",
                  .labels = days,
                  .nlabels = 7,
                  .series = s,
                  .nseries = 2};
    check_chart(&c, 800, 400, "bar");
    check_chart(&c, 300, 200, "bar-small");
}
END_TEST

START_TEST(pie_chart_decodes)
{
    const char *names[] = {"FR", "DE", "US"};
    double v[] = {4, 2, 4};
    an_chart_series s[] = {{"share", v, 3}};
    an_chart c = {.type = AN_CHART_PIE,
                  .title = "Share",
                  .labels = names,
                  .nlabels = 3,
                  .series = s,
                  .nseries = 1};
    check_chart(&c, 800, 400, "pie");
}
END_TEST

START_TEST(bignumber_decodes)
{
    an_chart c = {.type = AN_CHART_BIGNUMBER,
                  .title = "Signups",
                  .unit = "users",
                  .value = 1234567,
                  .previous = 1000000,
                  .has_previous = true};
    check_chart(&c, 800, 400, "big");
}
END_TEST

START_TEST(empty_data_draws_a_frame_not_a_failure)
{
    an_chart c = {.type = AN_CHART_LINE, .title = "Nothing yet"};
    an_buf png;
    an_buf_init(&png);
    ck_assert_int_eq(an_chart_png(&c, 400, 200, &png, NULL), AN_OK);
    png_facts p = decode(&png, "empty");
    ck_assert_int_eq(p.w, 400);
    ck_assert(p.nonwhite > 0.001);
    an_buf_free(&png);
}
END_TEST

START_TEST(bad_input_is_refused)
{
    an_buf png;
    an_buf_init(&png);
    an_error err = {0};
    an_chart c = {.type = AN_CHART_BIGNUMBER, .value = 1};
    ck_assert_int_eq(an_chart_png(&c, 10, 400, &png, &err), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_chart_png(&c, 800, 5000, &png, &err), AN_INVALID_ARGUMENT);
    double neg[] = {1, -2};
    const char *n2[] = {"a", "b"};
    an_chart_series s[] = {{"x", neg, 2}};
    an_chart pie = {.type = AN_CHART_PIE, .labels = n2, .nlabels = 2, .series = s, .nseries = 1};
    ck_assert_int_eq(an_chart_png(&pie, 800, 400, &png, &err), AN_INVALID_ARGUMENT);
    an_chart line = {.type = AN_CHART_LINE, .labels = n2, .nlabels = 1, .series = s, .nseries = 1};
    ck_assert_int_eq(an_chart_png(&line, 800, 400, &png, &err), AN_INVALID_ARGUMENT);
    ck_assert_uint_eq(png.len, 0);
    an_buf_free(&png);
}
END_TEST

START_TEST(numbers_are_formatted_compactly)
{
    char b[32];
    an_chart_format_number(1234, b, sizeof(b));
    ck_assert_str_eq(b, "1,234");
    an_chart_format_number(1500000, b, sizeof(b));
    ck_assert_str_eq(b, "1.5M");
    an_chart_format_number(0.25, b, sizeof(b));
    ck_assert_str_eq(b, "0.25");
    an_chart_format_number(-1234, b, sizeof(b));
    ck_assert_str_eq(b, "-1,234");
    an_chart_format_number(NAN, b, sizeof(b));
    ck_assert_str_eq(b, "-");
}
END_TEST

Suite *chart_suite(void)
{
    Suite *s = suite_create("chart");
    TCase *tc = tcase_create("png");
    tcase_set_timeout(tc, 120); /* the pure-python decoder is slow */
    tcase_add_test(tc, line_chart_decodes_at_800x400);
    tcase_add_test(tc, bar_chart_decodes_at_other_sizes);
    tcase_add_test(tc, pie_chart_decodes);
    tcase_add_test(tc, bignumber_decodes);
    tcase_add_test(tc, empty_data_draws_a_frame_not_a_failure);
    tcase_add_test(tc, bad_input_is_refused);
    tcase_add_test(tc, numbers_are_formatted_compactly);
    suite_add_tcase(s, tc);
    return s;
}
