/*
 * writer_json.c - NDJSON (https://github.com/ndjson/ndjson-spec): one JSON
 * object per line, "\n" after each, keys the column names in query order.
 * Chosen over one JSON array because it is written and read row by row: a
 * consumer can stream a 5 GB export without holding it, and a truncated
 * download is detectable line by line.
 *
 * Values: integers and decimals as JSON numbers (64-bit integers exactly as
 * ClickHouse wrote them: readers that parse numbers as doubles lose
 * precision above 2^53); nan and inf as null; Bool as true/false; Date as
 * "YYYY-MM-DD"; DateTime as RFC 3339 UTC "YYYY-MM-DDTHH:MM:SSZ" (the server
 * renders DateTime in UTC, the stack's timezone); everything else, arrays
 * included (in ClickHouse's literal syntax), as a string; SQL NULL as null.
 * Strings are valid UTF-8 (bad bytes become U+FFFD).
 */
#include "exports/writer_int.h"

#include <string.h>

typedef struct json_state {
    char **keys; /* "\"name\":" per column, rendered once */
    size_t *klen;
    an_buf tmp;
} json_state;

static void json_string(an_buf *out, an_buf *tmp, const char *s, size_t n)
{
    bool plain = true;
    for (size_t i = 0; i < n && plain; i++) {
        unsigned char c = (unsigned char)s[i];
        plain = c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
    }
    if (plain) { /* the common case: no escape, no copy */
        an_buf_grow(out, n + 2);
        out->data[out->len++] = '"';
        memcpy(out->data + out->len, s, n);
        out->len += n;
        out->data[out->len++] = '"';
        out->data[out->len] = '\0';
        return;
    }
    an_buf_reset(tmp);
    exports_utf8_sanitize(tmp, s, n);
    an_buf_addc(out, '"');
    an_buf_add_json_escaped(out, tmp->data ? tmp->data : "", tmp->len);
    an_buf_addc(out, '"');
}

/* A JSON number as ClickHouse writes numbers: -?digits[.digits][e[+-]digits]. */
static bool json_number(const char *s, size_t n)
{
    size_t i = 0;
    if (i < n && s[i] == '-')
        i++;
    size_t d = i;
    while (i < n && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i == d || (s[d] == '0' && i - d > 1))
        return false;
    if (i < n && s[i] == '.') {
        size_t f = ++i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == f)
            return false;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-'))
            i++;
        size_t e = i;
        while (i < n && s[i] >= '0' && s[i] <= '9')
            i++;
        if (i == e)
            return false;
    }
    return i == n;
}

static void json_free(exports_writer *w)
{
    json_state *j = w->impl;
    if (!j)
        return;
    for (size_t i = 0; i < w->ncols; i++)
        free(j->keys[i]);
    free(j->keys);
    free(j->klen);
    an_buf_free(&j->tmp);
    free(j);
    w->impl = NULL;
}

static an_status json_begin(exports_writer *w, an_error *err)
{
    (void)err;
    json_state *j = calloc(1, sizeof(*j));
    if (!j)
        abort();
    j->keys = calloc(w->ncols ? w->ncols : 1, sizeof(char *));
    j->klen = calloc(w->ncols ? w->ncols : 1, sizeof(size_t));
    if (!j->keys || !j->klen)
        abort();
    for (size_t i = 0; i < w->ncols; i++) {
        an_buf k = AN_BUF_INIT;
        json_string(&k, &j->tmp, w->names[i], strlen(w->names[i]));
        an_buf_addc(&k, ':');
        j->keys[i] = an_buf_detach(&k, &j->klen[i]);
    }
    w->impl = j;
    return AN_OK;
}

static an_status json_row(exports_writer *w, const char *const *fields, const size_t *lens,
                          an_error *err)
{
    json_state *js = w->impl;
    an_buf *tmp = &js->tmp;
    an_buf_addc(&w->out, '{');
    for (size_t i = 0; i < w->ncols; i++) {
        if (i)
            an_buf_addc(&w->out, ',');
        an_buf_add(&w->out, js->keys[i], js->klen[i]);
        const char *v = fields[i];
        size_t n = v ? lens[i] : 0;
        if (!v) {
            an_buf_adds(&w->out, "null");
            continue;
        }
        switch (w->types[i]) {
        case EXPORTS_COL_INT:
        case EXPORTS_COL_FLOAT:
            if (json_number(v, n))
                an_buf_add(&w->out, v, n);
            else if (w->types[i] == EXPORTS_COL_FLOAT)
                an_buf_adds(&w->out, "null"); /* nan, inf, -inf */
            else
                json_string(&w->out, tmp, v, n);
            break;
        case EXPORTS_COL_BOOL:
            an_buf_adds(&w->out, (n == 4 && memcmp(v, "true", 4) == 0) || (n == 1 && v[0] == '1')
                                     ? "true"
                                     : "false");
            break;
        case EXPORTS_COL_DATETIME: {
            int64_t t;
            if (exports_parse_datetime(v, n, &t)) {
                an_buf_addc(&w->out, '"');
                an_buf_add(&w->out, v, 10);
                an_buf_addc(&w->out, 'T');
                an_buf_add(&w->out, v + 11, 8);
                an_buf_adds(&w->out, "Z\"");
            } else {
                json_string(&w->out, tmp, v, n);
            }
            break;
        }
        default:
            json_string(&w->out, tmp, v, n);
            break;
        }
    }
    an_buf_adds(&w->out, "}\n");
    return exports_writer_flush(w, 256 * 1024, err);
}

static an_status json_finish(exports_writer *w, an_error *err)
{
    json_free(w);
    return exports_writer_flush(w, 0, err);
}

const writer_ops exports_json_ops = {json_begin, json_row, json_finish, json_free};
