#include "common/buf.h"

#include "common/crypto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void an_buf_init(an_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void an_buf_free(an_buf *b)
{
    if (!b)
        return;
    free(b->data);
    an_buf_init(b);
}

void an_buf_reset(an_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void an_buf_setlen(an_buf *b, size_t len)
{
    if (len > b->len)
        abort();
    b->len = len;
    if (b->data)
        b->data[len] = '\0';
}

void an_buf_grow(an_buf *b, size_t n)
{
    if (b->len + n + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p) {
        fputs("an_buf: out of memory\n", stderr);
        abort();
    }
    b->data = p;
    b->cap = cap;
    /* keep the promise of buf.h even when nothing is appended after a grow */
    b->data[b->len] = '\0';
}

void an_buf_add(an_buf *b, const void *data, size_t n)
{
    an_buf_grow(b, n);
    if (n)
        memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void an_buf_adds(an_buf *b, const char *s)
{
    an_buf_add(b, s, strlen(s));
}

void an_buf_addc(an_buf *b, char c)
{
    an_buf_add(b, &c, 1);
}

void an_buf_vaddf(an_buf *b, const char *fmt, va_list ap)
{
    va_list cp;
    va_copy(cp, ap);
    int n = vsnprintf(NULL, 0, fmt, cp);
    va_end(cp);
    if (n < 0)
        return;
    an_buf_grow(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
}

void an_buf_addf(an_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    an_buf_vaddf(b, fmt, ap);
    va_end(ap);
}

void an_buf_add_json_escaped(an_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    an_buf_grow(b, n);
    size_t run = 0; /* start of the bytes not yet copied, which need no escape */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        an_buf_add(b, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"':
            an_buf_add(b, "\\\"", 2);
            break;
        case '\\':
            an_buf_add(b, "\\\\", 2);
            break;
        case '\n':
            an_buf_add(b, "\\n", 2);
            break;
        case '\r':
            an_buf_add(b, "\\r", 2);
            break;
        case '\t':
            an_buf_add(b, "\\t", 2);
            break;
        case '\b':
            an_buf_add(b, "\\b", 2);
            break;
        case '\f':
            an_buf_add(b, "\\f", 2);
            break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            an_buf_add(b, u, 6);
        }
        }
    }
    an_buf_add(b, s + run, n - run);
}

void an_buf_add_uri_encoded(an_buf *b, const char *s, size_t n, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    an_buf_grow(b, 3 * n);
    char *o = b->data + b->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
            c == '-' || c == '_' || c == '.' || c == '~' || (keep_slash && c == '/')) {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
}

bool an_buf_add_uri_decoded(an_buf *b, const char *s, size_t n, bool plus_is_space)
{
    an_buf_grow(b, n);
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            int hi = i + 1 < n ? an_crypto_hex_value(s[i + 1]) : -1;
            int lo = i + 2 < n ? an_crypto_hex_value(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                b->data[b->len] = '\0';
                return false;
            }
            c = (char)(hi * 16 + lo);
            i += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        b->data[b->len++] = c;
    }
    b->data[b->len] = '\0';
    return true;
}

void an_buf_add_u64(an_buf *b, uint64_t v, int min_digits)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n < min_digits && n < (int)sizeof(tmp))
        tmp[n++] = '0';
    an_buf_grow(b, (size_t)n);
    char *p = b->data + b->len;
    for (int i = n - 1; i >= 0; i--)
        *p++ = tmp[i];
    b->len += (size_t)n;
    b->data[b->len] = '\0';
}

const char *an_buf_str(const an_buf *b)
{
    return b->data ? b->data : "";
}

char *an_buf_detach(an_buf *b, size_t *len)
{
    if (!b->data)
        an_buf_grow(b, 0);
    char *p = b->data;
    if (len)
        *len = b->len;
    an_buf_init(b);
    return p;
}
