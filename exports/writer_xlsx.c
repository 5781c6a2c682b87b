/*
 * writer_xlsx.c - Excel workbooks with libxlsxwriter in constant-memory
 * mode: each row is written to a temporary file as soon as the next row
 * starts, so memory does not grow with the row count (the temporary files
 * go to opts.tmpdir; the zip is built at close).
 *
 * Cells are typed from the ClickHouse column types:
 *   integers, floats, decimals  numbers (integers beyond +-2^53, which a
 *                               double cannot hold exactly, as text)
 *   Date / DateTime             Excel dates with the number formats
 *                               yyyy-mm-dd / yyyy-mm-dd hh:mm:ss (UTC)
 *   Bool                        numbers 1 / 0
 *   everything else             text (inline strings), never formulas, so a
 *                               cell starting with '=' stays text
 * SQL NULL, ClickHouse's zero dates and nan/inf give a blank cell (nan and
 * inf as the text "nan"/"inf"). Text longer than Excel's 32,767 characters
 * is cut there. Every worksheet starts with a bold header row (frozen);
 * after opts.xlsx_rows_per_sheet data rows (1,048,575 by default: Excel's
 * 1,048,576 rows minus the header) the next row starts a new sheet,
 * "Sheet2", "Sheet3", ...
 */
#include "exports/writer_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <xlsxwriter.h>

#define XLSX_MAX_CHARS 32767

typedef struct xlsx_state {
    lxw_workbook *wb;
    lxw_worksheet *ws;
    lxw_format *bold;
    lxw_format *date;
    lxw_format *datetime;
    int sheets;
    uint64_t sheet_rows; /* data rows in the current sheet */
    an_buf tmp;
} xlsx_state;

static an_status lxw_fail(an_error *err, const char *what, lxw_error e)
{
    return an_error_set(err, AN_INTERNAL, "xlsx %s: %s", what, lxw_strerror(e));
}

an_status exports_xlsx_open(exports_writer *w, an_error *err)
{
    xlsx_state *x = calloc(1, sizeof(*x));
    if (!x)
        abort();
    lxw_workbook_options o = {0};
    o.constant_memory = LXW_TRUE;
    o.tmpdir = (char *)w->opts.tmpdir;
    x->wb = workbook_new_opt(w->path, &o);
    if (!x->wb) {
        free(x);
        return an_error_set(err, AN_INTERNAL, "xlsx: cannot create %s", w->path);
    }
    x->bold = workbook_add_format(x->wb);
    format_set_bold(x->bold);
    x->date = workbook_add_format(x->wb);
    format_set_num_format(x->date, "yyyy-mm-dd");
    x->datetime = workbook_add_format(x->wb);
    format_set_num_format(x->datetime, "yyyy-mm-dd hh:mm:ss");
    w->impl = x;
    return AN_OK;
}

/* Append s as at most XLSX_MAX_CHARS characters of valid UTF-8 to tmp. */
static const char *xlsx_text(xlsx_state *x, const char *s, size_t n)
{
    an_buf_reset(&x->tmp);
    exports_utf8_sanitize(&x->tmp, s, n);
    size_t chars = 0;
    for (size_t i = 0; i < x->tmp.len; i++) {
        if (((unsigned char)x->tmp.data[i] & 0xC0) != 0x80 && ++chars > XLSX_MAX_CHARS) {
            an_buf_setlen(&x->tmp, i);
            break;
        }
    }
    return an_buf_str(&x->tmp);
}

static an_status new_sheet(exports_writer *w, an_error *err)
{
    xlsx_state *x = w->impl;
    char name[32];
    snprintf(name, sizeof(name), "Sheet%d", ++x->sheets);
    x->ws = workbook_add_worksheet(x->wb, name);
    if (!x->ws)
        return an_error_set(err, AN_INTERNAL, "xlsx: cannot add worksheet %s", name);
    x->sheet_rows = 0;
    if (w->ncols == 0)
        return AN_OK;
    worksheet_freeze_panes(x->ws, 1, 0);
    for (size_t i = 0; i < w->ncols && i < LXW_COL_MAX; i++) {
        lxw_error e = worksheet_write_string(
            x->ws, 0, (lxw_col_t)i, xlsx_text(x, w->names[i], strlen(w->names[i])), x->bold);
        if (e != LXW_NO_ERROR)
            return lxw_fail(err, "header", e);
    }
    return AN_OK;
}

static an_status xlsx_begin(exports_writer *w, an_error *err)
{
    if (w->ncols > LXW_COL_MAX)
        return an_error_set(err, AN_INVALID_ARGUMENT,
                            "xlsx holds at most %d columns; the query returns %zu", LXW_COL_MAX,
                            w->ncols);
    return new_sheet(w, err);
}

static lxw_error write_cell(exports_writer *w, lxw_row_t r, lxw_col_t c, exports_coltype t,
                            const char *v, size_t n)
{
    xlsx_state *x = w->impl;
    switch (t) {
    case EXPORTS_COL_INT: {
        char *end;
        errno = 0;
        double d;
        if (v[0] == '-') {
            long long ll = strtoll(v, &end, 10);
            d = (double)ll;
            if (errno == 0 && end == v + n && ll >= -(1LL << 53))
                return worksheet_write_number(x->ws, r, c, d, NULL);
        } else {
            unsigned long long ull = strtoull(v, &end, 10);
            d = (double)ull;
            if (errno == 0 && end == v + n && ull <= (1ULL << 53))
                return worksheet_write_number(x->ws, r, c, d, NULL);
        }
        return worksheet_write_string(x->ws, r, c, xlsx_text(x, v, n), NULL);
    }
    case EXPORTS_COL_FLOAT: {
        char *end;
        double d = strtod(v, &end);
        if (end == v + n && isfinite(d))
            return worksheet_write_number(x->ws, r, c, d, NULL);
        return worksheet_write_string(x->ws, r, c, xlsx_text(x, v, n), NULL);
    }
    case EXPORTS_COL_BOOL:
        return worksheet_write_number(
            x->ws, r, c, (n == 4 && memcmp(v, "true", 4) == 0) || (n == 1 && v[0] == '1'), NULL);
    case EXPORTS_COL_DATE: {
        int64_t days;
        if (!exports_parse_date(v, n, &days))
            return LXW_NO_ERROR; /* zero date: blank */
        /* Excel's serial day 25569 is 1970-01-01 (1900 date system). */
        return worksheet_write_number(x->ws, r, c, (double)(days + 25569), x->date);
    }
    case EXPORTS_COL_DATETIME: {
        int64_t secs;
        if (!exports_parse_datetime(v, n, &secs))
            return LXW_NO_ERROR;
        return worksheet_write_number(x->ws, r, c, (double)secs / 86400.0 + 25569.0, x->datetime);
    }
    default:
        return worksheet_write_string(x->ws, r, c, xlsx_text(x, v, n), NULL);
    }
}

static an_status xlsx_row(exports_writer *w, const char *const *fields, const size_t *lens,
                          an_error *err)
{
    xlsx_state *x = w->impl;
    if (x->sheet_rows >= w->opts.xlsx_rows_per_sheet) {
        an_status s = new_sheet(w, err);
        if (s != AN_OK)
            return s;
    }
    lxw_row_t r = (lxw_row_t)(x->sheet_rows + 1);
    for (size_t i = 0; i < w->ncols; i++) {
        if (!fields[i] || lens[i] == 0)
            continue;
        lxw_error e = write_cell(w, r, (lxw_col_t)i, w->types[i], fields[i], lens[i]);
        if (e != LXW_NO_ERROR)
            return lxw_fail(err, "cell", e);
    }
    x->sheet_rows++;
    /* What the rows cost on disk is unknown until the zip is built: count the
     * input bytes as progress. */
    for (size_t i = 0; i < w->ncols; i++)
        w->bytes += (fields[i] ? lens[i] : 0) + 1;
    return AN_OK;
}

static an_status xlsx_finish(exports_writer *w, an_error *err)
{
    xlsx_state *x = w->impl;
    lxw_error e = workbook_close(x->wb);
    x->wb = NULL;
    an_buf_free(&x->tmp);
    free(x);
    w->impl = NULL;
    if (e != LXW_NO_ERROR)
        return lxw_fail(err, "close", e);
    return AN_OK;
}

static void xlsx_discard(exports_writer *w)
{
    xlsx_state *x = w->impl;
    if (!x)
        return;
    /* Free without packaging (workbook_close would zip every row written
     * so far only to have the file deleted). */
    if (x->wb)
        lxw_workbook_free(x->wb);
    an_buf_free(&x->tmp);
    free(x);
    w->impl = NULL;
}

const writer_ops exports_xlsx_ops = {xlsx_begin, xlsx_row, xlsx_finish, xlsx_discard};
