/*
 * writer_csv.c - CSV as RFC 4180 says: a header row of column names, fields
 * separated by ',', records ended by CRLF, a field quoted with '"' (quotes
 * doubled) when it holds ',', '"', CR or LF. UTF-8 without a BOM; bytes that
 * are not valid UTF-8 become U+FFFD. SQL NULL is an empty field.
 *
 * Formula injection: a spreadsheet runs a cell that starts with = + - @ (and
 * TAB or CR, which some strip first) as a formula. Text cells (String-like
 * columns) starting with one of them get a leading apostrophe, as OWASP
 * recommends; numbers, dates and column names of numeric type are written
 * as they are (a negative number stays a number).
 */
#include "exports/writer_int.h"

#include <string.h>

static bool needs_quotes(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == ',' || c == '"' || c == '\r' || c == '\n')
            return true;
    }
    return false;
}

static bool formula_like(const char *s, size_t n)
{
    return n > 0 && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' ||
                     s[0] == '\r');
}

/* True when s can be written as is: ASCII without a character that needs
 * quoting (the common case, kept free of copies). */
static bool plain(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80 || c == ',' || c == '"' || c == '\r' || c == '\n')
            return false;
    }
    return true;
}

void exports_csv_field(an_buf *out, const char *s, size_t n, bool neutralise)
{
    bool formula = neutralise && formula_like(s, n);
    if (!formula && plain(s, n)) {
        an_buf_add(out, s, n);
        return;
    }
    an_buf clean = AN_BUF_INIT;
    if (formula)
        an_buf_addc(&clean, '\'');
    exports_utf8_sanitize(&clean, s, n);
    if (!needs_quotes(clean.data, clean.len)) {
        an_buf_add(out, clean.data, clean.len);
        an_buf_free(&clean);
        return;
    }
    an_buf_addc(out, '"');
    size_t run = 0;
    for (size_t i = 0; i < clean.len; i++) {
        if (clean.data[i] == '"') {
            an_buf_add(out, clean.data + run, i + 1 - run);
            an_buf_addc(out, '"');
            run = i + 1;
        }
    }
    an_buf_add(out, clean.data + run, clean.len - run);
    an_buf_addc(out, '"');
    an_buf_free(&clean);
}

static an_status csv_begin(exports_writer *w, an_error *err)
{
    if (w->ncols == 0)
        return AN_OK;
    for (size_t i = 0; i < w->ncols; i++) {
        if (i)
            an_buf_addc(&w->out, ',');
        exports_csv_field(&w->out, w->names[i], strlen(w->names[i]), true);
    }
    an_buf_adds(&w->out, "\r\n");
    return exports_writer_flush(w, 64 * 1024, err);
}

static an_status csv_row(exports_writer *w, const char *const *fields, const size_t *lens,
                         an_error *err)
{
    for (size_t i = 0; i < w->ncols; i++) {
        if (i)
            an_buf_addc(&w->out, ',');
        if (!fields[i])
            continue;
        exports_csv_field(&w->out, fields[i], lens[i], w->types[i] == EXPORTS_COL_STRING);
    }
    an_buf_adds(&w->out, "\r\n");
    return exports_writer_flush(w, 256 * 1024, err);
}

static an_status csv_finish(exports_writer *w, an_error *err)
{
    return exports_writer_flush(w, 0, err);
}

const writer_ops exports_csv_ops = {csv_begin, csv_row, csv_finish, NULL};
