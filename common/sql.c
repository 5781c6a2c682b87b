#include "common/sql.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

size_t an_sql_utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (avail < len || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
    return len;
}

void an_sql_quote(an_buf *out, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    const unsigned char *p = (const unsigned char *)s;
    an_buf_grow(out, n + 2);
    an_buf_addc(out, '\'');
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c >= 0x80) {
            size_t len = an_sql_utf8_seq_len(p + i, n - i);
            if (len) {
                an_buf_add(out, p + i, len);
                i += len;
                continue;
            }
        }
        switch (c) {
        case '\\':
            an_buf_add(out, "\\\\", 2);
            break;
        case '\'':
            an_buf_add(out, "\\'", 2);
            break;
        case '\n':
            an_buf_add(out, "\\n", 2);
            break;
        case '\t':
            an_buf_add(out, "\\t", 2);
            break;
        case '\r':
            an_buf_add(out, "\\r", 2);
            break;
        default:
            if (c < 0x20 || c >= 0x7F) {
                char esc[4] = {'\\', 'x', hex[c >> 4], hex[c & 0xF]};
                an_buf_add(out, esc, 4);
            } else {
                an_buf_addc(out, (char)c);
            }
        }
        i++;
    }
    an_buf_addc(out, '\'');
}

void an_sql_quote_str(an_buf *out, const char *s)
{
    an_sql_quote(out, s, s ? strlen(s) : 0);
}

void an_sql_int64(an_buf *out, int64_t v)
{
    if (v < 0)
        an_buf_addf(out, "(%" PRId64 ")", v);
    else
        an_buf_addf(out, "%" PRId64, v);
}

void an_sql_uint64(an_buf *out, uint64_t v)
{
    an_buf_addf(out, "%" PRIu64, v);
}

an_status an_sql_double(an_buf *out, double v, an_error *err)
{
    if (!isfinite(v))
        return an_error_set(err, AN_INVALID_ARGUMENT,
                            "number: NaN and infinity cannot be used in a query");
    char tmp[40];
    /* The shortest precision that reads back as the same double. */
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    /* Keep it a Float64 on the server: "2" would be read as UInt8. */
    if (!strpbrk(tmp, ".e"))
        strcat(tmp, ".0");
    if (tmp[0] == '-')
        an_buf_addf(out, "(%s)", tmp);
    else
        an_buf_adds(out, tmp);
    return AN_OK;
}

/* Length of the identifier at s (stops at the first non-identifier byte), or
 * 0 when s does not start with one or it is longer than AN_SQL_IDENT_MAX. */
static size_t ident_span(const char *s)
{
    size_t i = 0;
    if (!((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return 0;
    for (i = 1; (s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
                (s[i] >= '0' && s[i] <= '9') || s[i] == '_';
         i++)
        if (i >= AN_SQL_IDENT_MAX)
            return 0;
    return i;
}

bool an_sql_ident_valid(const char *s)
{
    if (!s)
        return false;
    size_t n = ident_span(s);
    return n > 0 && s[n] == '\0';
}

bool an_sql_property_path_valid(const char *s)
{
    if (!s || strlen(s) > AN_SQL_PATH_MAX)
        return false;
    int depth = 0;
    for (;;) {
        size_t n = ident_span(s);
        if (n == 0 || ++depth > AN_SQL_PATH_DEPTH_MAX)
            return false;
        s += n;
        if (*s == '\0')
            return true;
        if (*s != '.')
            return false;
        s++;
    }
}

bool an_sql_table_name_valid(const char *s)
{
    if (!s)
        return false;
    size_t n = ident_span(s);
    if (n == 0 || s[n] != '.')
        return false;
    return an_sql_ident_valid(s + n + 1);
}

/* A short printable rendering of untrusted text for an error message. */
static void preview(char *dst, size_t cap, const char *s)
{
    size_t j = 0, n = strlen(s);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (i == 40 || j + 5 >= cap) {
            snprintf(dst + j, cap - j, "...");
            return;
        }
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\')
            dst[j++] = (char)c;
        else
            j += (size_t)snprintf(dst + j, cap - j, "\\x%02X", c);
    }
    dst[j] = '\0';
}

an_status an_sql_ident_check(const char *field, const char *s, an_error *err)
{
    if (an_sql_ident_valid(s))
        return AN_OK;
    char p[64];
    preview(p, sizeof(p), s ? s : "");
    return an_error_field(err, AN_INVALID_ARGUMENT, field,
                          "%s: \"%s\" is not a valid name (letters, digits and _, starting "
                          "with a letter or _, at most %d bytes)",
                          field, p, AN_SQL_IDENT_MAX);
}

an_status an_sql_property_path_check(const char *field, const char *s, an_error *err)
{
    if (an_sql_property_path_valid(s))
        return AN_OK;
    char p[64];
    preview(p, sizeof(p), s ? s : "");
    return an_error_field(err, AN_INVALID_ARGUMENT, field,
                          "%s: \"%s\" is not a valid property path (names of letters, digits "
                          "and _ joined by dots, at most %d of them and %d bytes)",
                          field, p, AN_SQL_PATH_DEPTH_MAX, AN_SQL_PATH_MAX);
}

an_status an_sql_ident(an_buf *out, const char *s, an_error *err)
{
    an_status st = an_sql_ident_check("identifier", s, err);
    if (st != AN_OK)
        return st;
    an_buf_addc(out, '`');
    an_buf_adds(out, s);
    an_buf_addc(out, '`');
    return AN_OK;
}
