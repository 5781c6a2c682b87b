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

#include "common/sql.h"

#include <string.h>

static bool formula_like(const char *s, size_t n)
{
    return n > 0 && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' ||
                     s[0] == '\r');
}

void exports_csv_field(an_buf *out, const char *s, size_t n, bool neutralise)
{
    bool formula = neutralise && formula_like(s, n);
    bool quote = false, ascii = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x80)
            ascii = false;
        else if (c == ',' || c == '"' || c == '\r' || c == '\n')
            quote = true;
    }
    if (!formula && !quote && ascii) { /* the common case: as it is */
        an_buf_add(out, s, n);
        return;
    }
    /* One pass straight into out: at most 3 bytes per input byte (U+FFFD
     * for a bad one, "" for a quote) plus the quotes and the apostrophe. */
    an_buf_grow(out, 3 * n + 4);
    char *p = out->data + out->len;
    if (quote)
        *p++ = '"';
    if (formula)
        *p++ = '\'';
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        if (u[i] < 0x80) {
            if (u[i] == '"')
                *p++ = '"';
            *p++ = (char)u[i++];
            continue;
        }
        size_t k = an_sql_utf8_seq_len(u + i, n - i);
        if (k) {
            memcpy(p, s + i, k);
            p += k;
            i += k;
        } else {
            memcpy(p, "\xEF\xBF\xBD", 3); /* U+FFFD */
            p += 3;
            i++;
        }
    }
    if (quote)
        *p++ = '"';
    out->len = (size_t)(p - out->data);
    out->data[out->len] = '\0';
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
