/*
 * sql.h - the one way values and names get into ClickHouse SQL.
 *
 * Every value that reaches a query is written by one of the an_sql_* value
 * functions below; every name (dimension, column, alias) is first checked
 * against a strict pattern. Nothing here ever concatenates caller text into
 * SQL unescaped.
 *
 *   an_buf q = AN_BUF_INIT;
 *   an_buf_adds(&q, "SELECT count() FROM t WHERE name = ");
 *   an_sql_quote(&q, name, name_len);         // 'it\'s'
 *   an_buf_adds(&q, " AND n > ");
 *   an_sql_int64(&q, -5);                     // (-5)
 *
 * The output is valid for ClickHouse 18.16 and current releases. All
 * functions append to an an_buf the caller owns (see buf.h).
 */
#ifndef AN_SQL_H
#define AN_SQL_H

#include "common/buf.h"
#include "common/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AN_SQL_IDENT_MAX      64  /* bytes in an identifier */
#define AN_SQL_PATH_MAX       255 /* bytes in a property path */
#define AN_SQL_PATH_DEPTH_MAX 8   /* segments in a property path */

/* Append s[0..n) as a ClickHouse string literal in single quotes. Safe for
 * any bytes: backslash and quote are escaped, \n \t \r are written as such,
 * NUL and every other control byte (and DEL) as \xNN, and bytes that are not
 * part of valid UTF-8 as \xNN too, so the output is always printable UTF-8
 * and the server decodes exactly the n input bytes. s may be NULL when n is 0. */
void an_sql_quote(an_buf *out, const char *s, size_t n);

/* an_sql_quote of a NUL-terminated string (NULL gives ''). */
void an_sql_quote_str(an_buf *out, const char *s);

/* Append an integer literal. Negative values are parenthesised, "(-5)", so
 * that text before them can never turn "- -5" into a "--" comment. */
void an_sql_int64(an_buf *out, int64_t v);
void an_sql_uint64(an_buf *out, uint64_t v);

/* Append a Float64 literal that round-trips exactly ("0.1", "1e+20", "2.0";
 * negative values parenthesised). NaN and infinities are refused with
 * AN_INVALID_ARGUMENT and nothing is appended. */
an_status an_sql_double(an_buf *out, double v, an_error *err);

/* True when s matches [A-Za-z_][A-Za-z0-9_]{0,63}. NULL is not valid. */
bool an_sql_ident_valid(const char *s);

/* True when s is 1..AN_SQL_PATH_DEPTH_MAX identifiers (an_sql_ident_valid)
 * joined by single dots, at most AN_SQL_PATH_MAX bytes: "course.id". */
bool an_sql_property_path_valid(const char *s);

/* Check an identifier; on failure fill err naming field (e.g. "dimension")
 * and return AN_INVALID_ARGUMENT. */
an_status an_sql_ident_check(const char *field, const char *s, an_error *err);

/* Check a property path the same way. */
an_status an_sql_property_path_check(const char *field, const char *s, an_error *err);

/* Append a checked identifier in backquotes (`name`), so that names that are
 * also keywords stay names. Returns AN_INVALID_ARGUMENT (field "identifier")
 * and appends nothing when s is not an_sql_ident_valid. */
an_status an_sql_ident(an_buf *out, const char *s, an_error *err);

/* True when s is "database.table" with both parts an_sql_ident_valid. */
bool an_sql_table_name_valid(const char *s);

/* Length of the valid UTF-8 sequence (2..4 bytes) starting at s[0] (a byte
 * >= 0x80), or 0 when it is not one: RFC 3629, no overlong forms, no
 * surrogates, nothing above U+10FFFF. avail: bytes readable at s. */
size_t an_sql_utf8_seq_len(const unsigned char *s, size_t avail);

#endif
