/*
 * ch_int.h - internals of the ClickHouse client shared with its unit tests:
 * TSV escaping, the incremental result parser, exception parsing, the code
 * to status mapping and the URL parameters of settings. Not a public API.
 */
#ifndef AN_CH_INT_H
#define AN_CH_INT_H

#include "common/buf.h"
#include "common/ch.h"
#include "common/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exception text kept at most (the rest of a longer one is dropped). */
#define AN_CH_EXCEPTION_MAX (64 * 1024)

/* Append s escaped for a TabSeparated field: \\ \t \n \r and NUL become
 * backslash sequences, everything else is copied. */
void an_ch_tsv_escape(an_buf *out, const char *s, size_t len);

/* Append s as a single-quoted string literal (the element syntax of arrays
 * in TabSeparated): 'it\'s' with \\ \' \t \n \r \0 escaped. */
void an_ch_tsv_quote(an_buf *out, const char *s, size_t len);

/* True when text starts like a ClickHouse exception: "Code: N, e.displayText() = "
 * (up to 20.x) or "Code: N. DB::Exception" (20.x and later). */
bool an_ch_looks_like_exception(const char *text, size_t len);

/* Parse an exception text: *code gets N and err (may be NULL) gets the
 * mapped status and "clickhouse code N: <message>" with the DB::Exception
 * prefix and the e.what() suffix removed. Returns the mapped status, or
 * AN_INTERNAL with *code = 0 when text is not an exception. */
an_status an_ch_exception_to_error(const char *text, size_t len, int *code, an_error *err);

/* Where the exception appended to a raw 200 body (exec, insert, query_buf)
 * starts, or NULL: the last line must end an exception text (", e.what() =
 * ..." or "(version ...)") and the nearest line above it starting with
 * "Code: N" begins it. */
const char *an_ch_trailing_exception(const char *body, size_t len);

/* The an_status of a ClickHouse error code (see ch.h). */
an_status an_ch_status_for_code(int code);

/* Append the URL parameters of database (may be NULL) and settings (may be
 * NULL) to out, each as "name=value&" URL-encoded, readonly last.
 * AN_INVALID_ARGUMENT for a bad setting name or readonly value. */
an_status an_ch_build_params(an_buf *out, const char *database, const an_ch_settings *s,
                             an_error *err);

/* ---- incremental TabSeparatedWithNamesAndTypes parser ------------------- */

typedef struct an_ch_parser {
    an_ch_row_fn fn;
    void *ud;
    an_error *err; /* handed to fn; filled on a malformed body */
    int phase;     /* 0: expects names, 1: types, 2: rows */
    size_t ncols;
    char **names, **types;
    bool *raw;      /* per column: a composite literal, not unescaped */
    an_buf partial; /* an incomplete line carried to the next chunk */
    an_buf rowbuf;  /* decoded fields of the current line, NUL-separated */
    const char **fields;
    size_t *lens;
    size_t fcap;
    an_buf held; /* lines held back: they may be an exception */
    bool holding;
    bool held_complete; /* the held lines end like an exception does */
    bool in_exception;
    an_buf exception; /* text of a detected exception */
    uint64_t rows;    /* rows handed to fn */
    an_status st;     /* first failure: fn's status or AN_INTERNAL */
} an_ch_parser;

void an_ch_parser_init(an_ch_parser *p, an_ch_row_fn fn, void *ud, an_error *err);

/* Consume len bytes of the body. Returns AN_OK to go on, else the status
 * that stopped it (the callback's, or AN_INTERNAL for a malformed body). */
an_status an_ch_parser_feed(an_ch_parser *p, const char *data, size_t len);

/* The body ended. Returns AN_OK, or the status of a trailing exception
 * (*code gets its number, err its message), or AN_INTERNAL for a malformed
 * end. */
an_status an_ch_parser_finish(an_ch_parser *p, int *code);

void an_ch_parser_free(an_ch_parser *p);

#endif
