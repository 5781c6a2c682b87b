#include "ingest/envelope.h"

#include "common/buf.h"
#include "common/crypto.h"
#include "common/sql.h"
#include "common/timeutil.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SKIP_DEPTH_MAX 128          /* nesting bound of fields outside data */
#define DATETIME_MAX_S 4294967295LL /* ClickHouse DateTime is a UInt32 */

static const char *const reason_names[INGEST_REASON_COUNT] = {
    "invalid_json",  "too_large", "missing_field",       "invalid_field",
    "bad_timestamp", "too_deep",  "too_many_properties",
};

const char *ingest_reason_name(ingest_reason r)
{
    return (unsigned)r < INGEST_REASON_COUNT ? reason_names[r] : "unknown";
}

/* Where a leaf's value text lives (the buffers move while they grow). */
enum { V_PTR = 0, V_FLAT, V_OUT };

typedef struct leaf {
    size_t koff, klen; /* in flat */
    int vsrc;
    const char *vptr; /* V_PTR */
    size_t voff, vlen;
} leaf;

struct ingest_parser {
    ingest_limits lim;
    const ingest_pii_rules *rules;
    ingest_hasher *hasher;

    /* the message being parsed */
    const char *s, *end, *base;
    bool failed;
    ingest_reason reason;
    char detail[240];

    char *scratch; /* decoded strings; reserved up front so pointers stay put */
    size_t scratch_len, scratch_cap;
    an_buf out;          /* properties JSON */
    an_buf flat;         /* leaf paths and values that are not views */
    an_buf path;         /* dotted path of the value being read */
    an_buf tmp;          /* masking */
    an_buf corr_masked;  /* correlationId, when it held PII-looking parts */
    an_buf actor_masked; /* actor.type, the same */
    leaf *leaves;
    size_t nleaves, leaves_cap;
    const char **kptr, **vptr;
    size_t *klen, *vlen;
    size_t ptr_cap;
    int props;
    size_t masked, pii_keys;
};

ingest_parser *ingest_parser_new(const ingest_limits *limits, const ingest_pii_rules *rules,
                                 ingest_hasher *hasher)
{
    ingest_parser *p = calloc(1, sizeof(*p));
    if (!p)
        abort();
    p->lim = *limits;
    p->rules = rules;
    p->hasher = hasher;
    return p;
}

void ingest_parser_free(ingest_parser *p)
{
    if (!p)
        return;
    free(p->scratch);
    an_buf_free(&p->out);
    an_buf_free(&p->flat);
    an_buf_free(&p->path);
    an_buf_free(&p->tmp);
    an_buf_free(&p->corr_masked);
    an_buf_free(&p->actor_masked);
    free(p->leaves);
    free(p->kptr);
    free(p->vptr);
    free(p->klen);
    free(p->vlen);
    free(p);
}

static void *xrealloc(void *ptr, size_t n)
{
    void *q = realloc(ptr, n);
    if (!q)
        abort();
    return q;
}

__attribute__((format(printf, 3, 4))) static bool fail(ingest_parser *p, ingest_reason r,
                                                       const char *fmt, ...)
{
    if (!p->failed) {
        p->failed = true;
        p->reason = r;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->detail, sizeof(p->detail), fmt, ap);
        va_end(ap);
    }
    return false;
}

static bool syntax(ingest_parser *p, const char *what)
{
    if (p->s >= p->end)
        return fail(p, INGEST_REASON_INVALID_JSON, "unexpected end of input, expected %s", what);
    return fail(p, INGEST_REASON_INVALID_JSON, "%s expected at byte %zu", what,
                (size_t)(p->s - p->base));
}

/* ------------------------------------------------------------ scanning */

static inline void ws(ingest_parser *p)
{
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\n' || *p->s == '\r' || *p->s == '\t'))
        p->s++;
}

static inline bool peek(ingest_parser *p, char c)
{
    return p->s < p->end && *p->s == c;
}

static bool hex4(const char *s, uint32_t *v)
{
    uint32_t x = 0;
    for (int i = 0; i < 4; i++) {
        int h = an_crypto_hex_value(s[i]);
        if (h < 0)
            return false;
        x = (x << 4) | (uint32_t)h;
    }
    *v = x;
    return true;
}

static size_t put_utf8(char *o, uint32_t cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* Read the string at p->s (on its opening quote). *out and *len: the decoded
 * bytes, a view of the input when it has no escape, else in scratch (which
 * was reserved for the whole message, so earlier views stay valid). */
static bool string(ingest_parser *p, const char **out, size_t *len)
{
    if (!peek(p, '"'))
        return syntax(p, "a string");
    const char *s = ++p->s, *end = p->end;
    /* fast path: plain ASCII up to the closing quote */
    while (s < end) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80)
            break;
        s++;
    }
    bool escaped = false;
    const char *start = p->s;
    char *o = NULL;
    for (;;) {
        if (s >= end) {
            p->s = s;
            return fail(p, INGEST_REASON_INVALID_JSON, "unterminated string");
        }
        unsigned char c = (unsigned char)*s;
        if (c == '"')
            break;
        if (c < 0x20) {
            p->s = s;
            return fail(p, INGEST_REASON_INVALID_JSON, "control character in a string");
        }
        if (c >= 0x80) {
            size_t n = an_sql_utf8_seq_len((const unsigned char *)s, (size_t)(end - s));
            if (!n) {
                p->s = s;
                return fail(p, INGEST_REASON_INVALID_JSON, "invalid UTF-8 in a string");
            }
            if (escaped) {
                memcpy(o, s, n);
                o += n;
            }
            s += n;
            continue;
        }
        if (c != '\\') {
            if (escaped)
                *o++ = (char)c;
            s++;
            continue;
        }
        if (!escaped) {
            escaped = true;
            o = p->scratch + p->scratch_len;
            memcpy(o, start, (size_t)(s - start));
            o += s - start;
        }
        if (s + 1 >= end) {
            p->s = s;
            return fail(p, INGEST_REASON_INVALID_JSON, "unterminated string");
        }
        char e = s[1];
        s += 2;
        switch (e) {
        case '"':
        case '\\':
        case '/':
            *o++ = e;
            break;
        case 'b':
            *o++ = '\b';
            break;
        case 'f':
            *o++ = '\f';
            break;
        case 'n':
            *o++ = '\n';
            break;
        case 'r':
            *o++ = '\r';
            break;
        case 't':
            *o++ = '\t';
            break;
        case 'u': {
            uint32_t cp, lo;
            if (end - s < 4 || !hex4(s, &cp)) {
                p->s = s;
                return fail(p, INGEST_REASON_INVALID_JSON, "bad \\u escape");
            }
            s += 4;
            if (cp >= 0xd800 && cp <= 0xdbff) {
                if (end - s < 6 || s[0] != '\\' || s[1] != 'u' || !hex4(s + 2, &lo) ||
                    lo < 0xdc00 || lo > 0xdfff) {
                    p->s = s;
                    return fail(p, INGEST_REASON_INVALID_JSON, "unpaired surrogate in \\u escape");
                }
                s += 6;
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            } else if (cp >= 0xdc00 && cp <= 0xdfff) {
                p->s = s;
                return fail(p, INGEST_REASON_INVALID_JSON, "unpaired surrogate in \\u escape");
            }
            o += put_utf8(o, cp);
            break;
        }
        default:
            p->s = s - 1;
            return fail(p, INGEST_REASON_INVALID_JSON, "bad escape \\%c", e);
        }
    }
    if (escaped) {
        *out = p->scratch + p->scratch_len;
        *len = (size_t)(o - *out);
        p->scratch_len += *len;
    } else {
        *out = start;
        *len = (size_t)(s - start);
    }
    p->s = s + 1;
    return true;
}

/* A number per RFC 8259; *out and *len: its text. */
static bool number(ingest_parser *p, const char **out, size_t *len)
{
    const char *s = p->s, *end = p->end;
    if (s < end && *s == '-')
        s++;
    if (s >= end)
        return syntax(p, "a number");
    if (*s == '0') {
        s++;
    } else if (*s >= '1' && *s <= '9') {
        while (s < end && *s >= '0' && *s <= '9')
            s++;
    } else {
        return syntax(p, "a value");
    }
    if (s < end && *s == '.') {
        s++;
        if (s >= end || *s < '0' || *s > '9')
            return fail(p, INGEST_REASON_INVALID_JSON, "digit expected after '.'");
        while (s < end && *s >= '0' && *s <= '9')
            s++;
    }
    if (s < end && (*s == 'e' || *s == 'E')) {
        s++;
        if (s < end && (*s == '+' || *s == '-'))
            s++;
        if (s >= end || *s < '0' || *s > '9')
            return fail(p, INGEST_REASON_INVALID_JSON, "digit expected in exponent");
        while (s < end && *s >= '0' && *s <= '9')
            s++;
    }
    *out = p->s;
    *len = (size_t)(s - p->s);
    p->s = s;
    return true;
}

static bool literal(ingest_parser *p, const char *word, size_t n)
{
    if ((size_t)(p->end - p->s) < n || memcmp(p->s, word, n) != 0)
        return syntax(p, "a value");
    p->s += n;
    return true;
}

/* Validate and skip any value; depth counts the enclosing containers. */
static bool skip_value(ingest_parser *p, int depth, int max_depth)
{
    ws(p);
    if (p->s >= p->end)
        return syntax(p, "a value");
    const char *v;
    size_t n;
    switch (*p->s) {
    case '"':
        return string(p, &v, &n);
    case 't':
        return literal(p, "true", 4);
    case 'f':
        return literal(p, "false", 5);
    case 'n':
        return literal(p, "null", 4);
    case '{':
    case '[': {
        char close = *p->s == '{' ? '}' : ']';
        bool obj = close == '}';
        if (depth + 1 > max_depth)
            return fail(p, INGEST_REASON_TOO_DEEP, "nested deeper than %d levels", max_depth);
        p->s++;
        ws(p);
        if (peek(p, close)) {
            p->s++;
            return true;
        }
        for (;;) {
            if (obj) {
                ws(p);
                if (!string(p, &v, &n))
                    return false;
                ws(p);
                if (!peek(p, ':'))
                    return syntax(p, "':'");
                p->s++;
            }
            if (!skip_value(p, depth + 1, max_depth))
                return false;
            ws(p);
            if (peek(p, ',')) {
                p->s++;
                continue;
            }
            if (peek(p, close)) {
                p->s++;
                return true;
            }
            return syntax(p, obj ? "',' or '}'" : "',' or ']'");
        }
    }
    default:
        return number(p, &v, &n);
    }
}

/* ------------------------------------------------------------- output */

/* an_buf_add and an_buf_addc without the call per byte run: the hot path
 * of building the properties JSON. Keeps an_buf's NUL terminator. */
static inline void put(an_buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap)
        an_buf_grow(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static inline void putc1(an_buf *b, char c)
{
    if (b->len + 2 > b->cap)
        an_buf_grow(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}

/* Append s as a JSON string (with quotes), escaping what JSON requires. */
static void out_string(an_buf *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    putc1(o, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(o, s + run, i - run);
        run = i + 1;
        switch (c) {
        case '"':
            put(o, "\\\"", 2);
            break;
        case '\\':
            put(o, "\\\\", 2);
            break;
        case '\n':
            put(o, "\\n", 2);
            break;
        case '\r':
            put(o, "\\r", 2);
            break;
        case '\t':
            put(o, "\\t", 2);
            break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(o, u, 6);
        }
        }
    }
    put(o, s + run, n - run);
    putc1(o, '"');
}

static leaf *new_leaf(ingest_parser *p)
{
    if (p->nleaves == p->leaves_cap) {
        p->leaves_cap = p->leaves_cap ? p->leaves_cap * 2 : 32;
        p->leaves = xrealloc(p->leaves, p->leaves_cap * sizeof(leaf));
    }
    leaf *l = &p->leaves[p->nleaves++];
    l->koff = p->flat.len;
    l->klen = p->path.len;
    put(&p->flat, p->path.data ? p->path.data : "", p->path.len);
    return l;
}

static void leaf_ptr(ingest_parser *p, const char *v, size_t n)
{
    leaf *l = new_leaf(p);
    l->vsrc = V_PTR;
    l->vptr = v;
    l->vlen = n;
}

static void leaf_flat(ingest_parser *p, const char *v, size_t n)
{
    leaf *l = new_leaf(p);
    l->vsrc = V_FLAT;
    l->voff = p->flat.len;
    l->vlen = n;
    put(&p->flat, v, n);
}

static void leaf_out(ingest_parser *p, size_t off, size_t n)
{
    leaf *l = new_leaf(p);
    l->vsrc = V_OUT;
    l->voff = off;
    l->vlen = n;
}

/* A string value of data: masked, written to the JSON, recorded as a leaf. */
static void emit_string(ingest_parser *p, const char *v, size_t n, bool record)
{
    an_buf_reset(&p->tmp);
    size_t m = ingest_pii_mask(v, n, &p->tmp); /* writes only when it masks */
    if (m) {
        p->masked += m;
        v = p->tmp.data;
        n = p->tmp.len;
    }
    out_string(&p->out, v, n);
    if (!record)
        return;
    if (m)
        leaf_flat(p, v, n);
    else
        leaf_ptr(p, v, n);
}

/* ---------------------------------------------------------- transform */

static bool t_value(ingest_parser *p, int depth, bool record);

/* The value of a PII key to be hashed: its text (a string unescaped, other
 * scalars as written, a container as its raw JSON) becomes an HMAC. */
static bool hash_value(ingest_parser *p, int depth, bool record)
{
    ws(p);
    const char *v = p->s;
    size_t n;
    if (peek(p, '"')) {
        if (!string(p, &v, &n))
            return false;
    } else if (peek(p, 'n')) {
        if (!literal(p, "null", 4))
            return false;
        put(&p->out, "null", 4);
        return true;
    } else {
        if (!skip_value(p, depth, p->lim.max_depth))
            return false;
        n = (size_t)(p->s - v);
    }
    char hex[AN_CRYPTO_SHA256_HEX];
    ingest_hasher_hex(p->hasher, v, n, hex);
    out_string(&p->out, hex, 64);
    if (record)
        leaf_flat(p, hex, 64);
    return true;
}

static bool t_object(ingest_parser *p, int depth, bool record)
{
    if (depth > p->lim.max_depth)
        return fail(p, INGEST_REASON_TOO_DEEP, "data nests deeper than %d levels",
                    p->lim.max_depth);
    p->s++; /* '{' */
    putc1(&p->out, '{');
    bool first = true;
    ws(p);
    if (peek(p, '}')) {
        p->s++;
        putc1(&p->out, '}');
        return true;
    }
    for (;;) {
        ws(p);
        const char *k;
        size_t kn;
        if (!string(p, &k, &kn))
            return false;
        ws(p);
        if (!peek(p, ':'))
            return syntax(p, "':'");
        p->s++;
        if (++p->props > p->lim.max_properties)
            return fail(p, INGEST_REASON_TOO_MANY_PROPERTIES, "data has more than %d properties",
                        p->lim.max_properties);
        ingest_pii_action act = ingest_pii_key_action(p->rules, k, kn);
        if (act == INGEST_PII_REMOVE) {
            p->pii_keys++;
            if (!skip_value(p, depth, p->lim.max_depth))
                return false;
        } else {
            if (!first)
                putc1(&p->out, ',');
            first = false;
            /* the key itself may hold an address */
            an_buf_reset(&p->tmp);
            size_t m = ingest_pii_mask(k, kn, &p->tmp);
            if (m) {
                p->masked += m;
                k = p->tmp.data;
                kn = p->tmp.len;
            }
            out_string(&p->out, k, kn);
            putc1(&p->out, ':');
            size_t path_len = p->path.len;
            if (record) {
                if (path_len)
                    putc1(&p->path, '.');
                put(&p->path, k, kn);
            }
            bool ok;
            if (act == INGEST_PII_HASH) {
                p->pii_keys++;
                ok = hash_value(p, depth, record);
            } else {
                ok = t_value(p, depth, record);
            }
            if (!ok)
                return false;
            if (record) {
                p->path.len = path_len;
                if (p->path.data)
                    p->path.data[path_len] = '\0';
            }
        }
        ws(p);
        if (peek(p, ',')) {
            p->s++;
            continue;
        }
        if (peek(p, '}')) {
            p->s++;
            putc1(&p->out, '}');
            return true;
        }
        return syntax(p, "',' or '}'");
    }
}

static bool t_array(ingest_parser *p, int depth)
{
    if (depth > p->lim.max_depth)
        return fail(p, INGEST_REASON_TOO_DEEP, "data nests deeper than %d levels",
                    p->lim.max_depth);
    p->s++; /* '[' */
    putc1(&p->out, '[');
    ws(p);
    if (peek(p, ']')) {
        p->s++;
        putc1(&p->out, ']');
        return true;
    }
    for (bool first = true;; first = false) {
        if (!first)
            putc1(&p->out, ',');
        if (!t_value(p, depth, false))
            return false;
        ws(p);
        if (peek(p, ',')) {
            p->s++;
            continue;
        }
        if (peek(p, ']')) {
            p->s++;
            putc1(&p->out, ']');
            return true;
        }
        return syntax(p, "',' or ']'");
    }
}

/* A value inside data; depth is that of its container. record: leaves are
 * recorded (false inside arrays, which are one leaf). */
/* A true/false literal: copied to the output and, when record, a leaf. */
static bool bool_leaf(ingest_parser *p, const char *lit, size_t n, bool record)
{
    if (!literal(p, lit, n))
        return false;
    put(&p->out, lit, n);
    if (record)
        leaf_ptr(p, lit, n);
    return true;
}

static bool t_value(ingest_parser *p, int depth, bool record)
{
    ws(p);
    if (p->s >= p->end)
        return syntax(p, "a value");
    const char *v;
    size_t n;
    switch (*p->s) {
    case '"':
        if (!string(p, &v, &n))
            return false;
        emit_string(p, v, n, record);
        return true;
    case '{':
        return t_object(p, depth + 1, record);
    case '[': {
        size_t start = p->out.len;
        if (!t_array(p, depth + 1))
            return false;
        if (record)
            leaf_out(p, start, p->out.len - start);
        return true;
    }
    case 't':
        return bool_leaf(p, "true", 4, record);
    case 'f':
        return bool_leaf(p, "false", 5, record);
    case 'n':
        if (!literal(p, "null", 4))
            return false;
        put(&p->out, "null", 4);
        return true;
    default:
        if (!number(p, &v, &n))
            return false;
        put(&p->out, v, n);
        if (record)
            leaf_ptr(p, v, n);
        return true;
    }
}

/* ---------------------------------------------------------- envelope */

static inline bool id_char(unsigned char c)
{
    return (unsigned)((c | 0x20) - 'a') < 26 || (unsigned)(c - '0') < 10 || c == '_' || c == '.' ||
           c == ':' || c == '-';
}

static bool id_chars(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!id_char((unsigned char)s[i]))
            return false;
    return true;
}

static bool no_controls(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return true;
}

enum { F_ID = 1, F_TYPE = 2, F_TENANT = 4, F_OCCURRED = 8, F_CORR = 16, F_ACTOR = 32, F_DATA = 64 };

typedef struct fields {
    unsigned seen;
    const char *occurred;
    size_t occurred_len;
} fields;

/* A field that must be a string of 1..max of [A-Za-z0-9_.:-]; null_ok: or null. */
static bool id_field(ingest_parser *p, const char *name, bool null_ok, const char **v, size_t *n,
                     bool *is_null)
{
    ws(p);
    if (null_ok && peek(p, 'n')) {
        *is_null = true;
        *v = "";
        *n = 0;
        return literal(p, "null", 4);
    }
    if (!peek(p, '"')) {
        if (!skip_value(p, 1, SKIP_DEPTH_MAX))
            return false;
        return fail(p, INGEST_REASON_INVALID_FIELD, "%s must be a string%s", name,
                    null_ok ? " or null" : "");
    }
    if (!string(p, v, n))
        return false;
    if (*n == 0 || *n > INGEST_ID_MAX || !id_chars(*v, *n))
        return fail(p, INGEST_REASON_INVALID_FIELD,
                    "%s must be 1 to %d characters of [A-Za-z0-9_.:-]", name, INGEST_ID_MAX);
    return true;
}

/* A free-text field of the envelope: null or a string of at most max bytes
 * without control characters. It is stored in the hot tier, so it is masked
 * like a string of data (into masked, which must stay put until the row is
 * built). */
static bool text_field(ingest_parser *p, const char *name, size_t max, an_buf *masked,
                       const char **v, size_t *n)
{
    ws(p);
    *v = "";
    *n = 0;
    if (peek(p, 'n'))
        return literal(p, "null", 4);
    if (!peek(p, '"')) {
        if (!skip_value(p, 1, SKIP_DEPTH_MAX))
            return false;
        return fail(p, INGEST_REASON_INVALID_FIELD, "%s must be a string or null", name);
    }
    if (!string(p, v, n))
        return false;
    if (*n > max || !no_controls(*v, *n))
        return fail(p, INGEST_REASON_INVALID_FIELD,
                    "%s must be at most %zu bytes without control characters", name, max);
    an_buf_reset(masked);
    size_t m = ingest_pii_mask(*v, *n, masked); /* writes only when it masks */
    if (m) {
        p->masked += m;
        *v = masked->data;
        *n = masked->len;
    }
    return true;
}

static bool actor(ingest_parser *p, ingest_event *ev)
{
    ws(p);
    if (peek(p, 'n'))
        return literal(p, "null", 4);
    if (!peek(p, '{')) {
        if (!skip_value(p, 1, SKIP_DEPTH_MAX))
            return false;
        return fail(p, INGEST_REASON_INVALID_FIELD, "actor must be an object or null");
    }
    p->s++;
    ws(p);
    if (peek(p, '}')) {
        p->s++;
        return true;
    }
    bool seen_type = false, seen_id = false;
    for (;;) {
        ws(p);
        const char *k;
        size_t kn;
        if (!string(p, &k, &kn))
            return false;
        ws(p);
        if (!peek(p, ':'))
            return syntax(p, "':'");
        p->s++;
        if (kn == 4 && memcmp(k, "type", 4) == 0) {
            if (seen_type)
                return fail(p, INGEST_REASON_INVALID_FIELD, "actor.type appears twice");
            seen_type = true;
            if (!text_field(p, "actor.type", 64, &p->actor_masked, &ev->actor_type,
                            &ev->actor_type_len))
                return false;
        } else if (kn == 2 && memcmp(k, "id", 2) == 0) {
            if (seen_id)
                return fail(p, INGEST_REASON_INVALID_FIELD, "actor.id appears twice");
            seen_id = true;
            ws(p);
            const char *v = NULL;
            size_t n = 0;
            if (peek(p, 'n')) {
                if (!literal(p, "null", 4))
                    return false;
            } else if (peek(p, '"')) {
                if (!string(p, &v, &n))
                    return false;
                if (n == 0 || n > INGEST_ACTOR_MAX)
                    return fail(p, INGEST_REASON_INVALID_FIELD, "actor.id must be 1 to %d bytes",
                                INGEST_ACTOR_MAX);
            } else if (peek(p, '-') || (p->s < p->end && *p->s >= '0' && *p->s <= '9')) {
                if (!number(p, &v, &n))
                    return false;
                for (size_t i = 0; i < n; i++)
                    if (v[i] == '.' || v[i] == 'e' || v[i] == 'E')
                        return fail(p, INGEST_REASON_INVALID_FIELD,
                                    "actor.id must be a string or an integer");
            } else {
                if (!skip_value(p, 1, SKIP_DEPTH_MAX))
                    return false;
                return fail(p, INGEST_REASON_INVALID_FIELD,
                            "actor.id must be a string or an integer");
            }
            if (v)
                ingest_hasher_hex(p->hasher, v, n, ev->actor_id);
        } else if (!skip_value(p, 1, SKIP_DEPTH_MAX)) {
            return false;
        }
        ws(p);
        if (peek(p, ',')) {
            p->s++;
            continue;
        }
        if (peek(p, '}')) {
            p->s++;
            return true;
        }
        return syntax(p, "',' or '}'");
    }
}

static bool data(ingest_parser *p)
{
    ws(p);
    if (peek(p, 'n'))
        return literal(p, "null", 4);
    if (!peek(p, '{')) {
        if (!skip_value(p, 1, SKIP_DEPTH_MAX))
            return false;
        return fail(p, INGEST_REASON_INVALID_FIELD, "data must be an object or null");
    }
    an_buf_reset(&p->out);
    return t_object(p, 1, true);
}

static bool member(ingest_parser *p, const char *k, size_t kn, fields *f, ingest_event *ev)
{
#define KEY(lit) (kn == sizeof(lit) - 1 && memcmp(k, lit, kn) == 0)
    unsigned bit = KEY("id")              ? F_ID
                   : KEY("type")          ? F_TYPE
                   : KEY("tenantId")      ? F_TENANT
                   : KEY("occurredAt")    ? F_OCCURRED
                   : KEY("correlationId") ? F_CORR
                   : KEY("actor")         ? F_ACTOR
                   : KEY("data")          ? F_DATA
                                          : 0;
#undef KEY
    if (!bit)
        return skip_value(p, 1, SKIP_DEPTH_MAX);
    if (f->seen & bit)
        return fail(p, INGEST_REASON_INVALID_FIELD, "%.*s appears twice", (int)kn, k);
    f->seen |= bit;
    bool is_null = false;
    switch (bit) {
    case F_ID:
        return id_field(p, "id", false, &ev->id, &ev->id_len, &is_null);
    case F_TYPE:
        return id_field(p, "type", false, &ev->type, &ev->type_len, &is_null);
    case F_TENANT: /* null: a platform event, stored with tenant "" */
        return id_field(p, "tenantId", true, &ev->tenant, &ev->tenant_len, &is_null);
    case F_OCCURRED:
        ws(p);
        if (!peek(p, '"')) {
            if (!skip_value(p, 1, SKIP_DEPTH_MAX))
                return false;
            return fail(p, INGEST_REASON_BAD_TIMESTAMP, "occurredAt must be an RFC 3339 string");
        }
        return string(p, &f->occurred, &f->occurred_len);
    case F_CORR:
        return text_field(p, "correlationId", 256, &p->corr_masked, &ev->correlation_id,
                          &ev->correlation_id_len);
    case F_ACTOR:
        return actor(p, ev);
    default:
        return data(p);
    }
}

static void copy_id(char *dst, const char *s, size_t n)
{
    if (n == 0 || n > INGEST_ID_MAX || !id_chars(s, n)) {
        dst[0] = '\0';
        return;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

static bool envelope(ingest_parser *p, int64_t now_ms, ingest_event *ev)
{
    fields f = {0};
    ws(p);
    if (!peek(p, '{')) {
        if (!skip_value(p, 0, SKIP_DEPTH_MAX))
            return false;
        ws(p);
        if (p->s != p->end)
            return fail(p, INGEST_REASON_INVALID_JSON, "unexpected data after the JSON value");
        return fail(p, INGEST_REASON_INVALID_JSON, "the event must be a JSON object");
    }
    p->s++;
    ws(p);
    if (peek(p, '}')) {
        p->s++;
    } else {
        for (;;) {
            ws(p);
            const char *k;
            size_t kn;
            if (!string(p, &k, &kn))
                return false;
            ws(p);
            if (!peek(p, ':'))
                return syntax(p, "':'");
            p->s++;
            if (!member(p, k, kn, &f, ev))
                return false;
            ws(p);
            if (peek(p, ',')) {
                p->s++;
                continue;
            }
            if (peek(p, '}')) {
                p->s++;
                break;
            }
            return syntax(p, "',' or '}'");
        }
    }
    ws(p);
    if (p->s != p->end)
        return fail(p, INGEST_REASON_INVALID_JSON, "unexpected data after the JSON object");

    static const struct {
        unsigned bit;
        const char *name;
    } required[] = {
        {F_ID, "id"}, {F_TYPE, "type"}, {F_TENANT, "tenantId"}, {F_OCCURRED, "occurredAt"}};
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
        if (!(f.seen & required[i].bit))
            return fail(p, INGEST_REASON_MISSING_FIELD, "%s is required", required[i].name);

    an_error err;
    int64_t ms;
    if (an_time_parse_instant_n(f.occurred, f.occurred_len, &ms, &err) != AN_OK)
        return fail(p, INGEST_REASON_BAD_TIMESTAMP, "occurredAt \"%.*s\": %s",
                    (int)(f.occurred_len > 64 ? 64 : f.occurred_len), f.occurred, err.message);
    if (ms < 0 || ms / 1000 > DATETIME_MAX_S)
        return fail(p, INGEST_REASON_BAD_TIMESTAMP,
                    "occurredAt %.*s is outside 1970-01-01 .. 2106-02-07", (int)f.occurred_len,
                    f.occurred);
    if (p->lim.max_past_ms > 0 && now_ms - ms > p->lim.max_past_ms)
        return fail(p, INGEST_REASON_BAD_TIMESTAMP,
                    "occurredAt %.*s is more than %lld s in the past", (int)f.occurred_len,
                    f.occurred, (long long)(p->lim.max_past_ms / 1000));
    if (p->lim.max_future_ms > 0 && ms - now_ms > p->lim.max_future_ms)
        return fail(p, INGEST_REASON_BAD_TIMESTAMP,
                    "occurredAt %.*s is more than %lld s in the future", (int)f.occurred_len,
                    f.occurred, (long long)(p->lim.max_future_ms / 1000));
    ev->occurred_ms = ms;
    if (!(f.seen & F_DATA) || p->out.len == 0) {
        an_buf_reset(&p->out);
        put(&p->out, "{}", 2);
    }
    return true;
}

static void finish_leaves(ingest_parser *p, ingest_event *ev)
{
    if (p->nleaves > p->ptr_cap) {
        p->ptr_cap = p->nleaves * 2;
        p->kptr = xrealloc(p->kptr, p->ptr_cap * sizeof(char *));
        p->vptr = xrealloc(p->vptr, p->ptr_cap * sizeof(char *));
        p->klen = xrealloc(p->klen, p->ptr_cap * sizeof(size_t));
        p->vlen = xrealloc(p->vlen, p->ptr_cap * sizeof(size_t));
    }
    for (size_t i = 0; i < p->nleaves; i++) {
        const leaf *l = &p->leaves[i];
        p->kptr[i] = p->flat.data + l->koff;
        p->klen[i] = l->klen;
        p->vptr[i] = l->vsrc == V_PTR    ? l->vptr
                     : l->vsrc == V_FLAT ? p->flat.data + l->voff
                                         : p->out.data + l->voff;
        p->vlen[i] = l->vlen;
    }
    ev->nprops = p->nleaves;
    ev->prop_keys = p->kptr;
    ev->prop_key_lens = p->klen;
    ev->prop_values = p->vptr;
    ev->prop_value_lens = p->vlen;
}

bool ingest_envelope_parse(ingest_parser *p, const char *raw, size_t len, int64_t now_ms,
                           ingest_event *ev, ingest_reject *rej)
{
    memset(ev, 0, sizeof(*ev));
    ev->id = ev->type = ev->tenant = ev->correlation_id = ev->actor_type = "";
    p->failed = false;
    p->detail[0] = '\0';
    if (len > p->lim.max_event_bytes) {
        rej->reason = INGEST_REASON_TOO_LARGE;
        snprintf(rej->detail, sizeof(rej->detail), "event is %zu bytes, the limit is %zu", len,
                 p->lim.max_event_bytes);
        rej->tenant[0] = rej->id[0] = '\0';
        return false;
    }
    if (p->scratch_cap < len + 16) {
        free(p->scratch);
        p->scratch_cap = len + 16 > 4096 ? len + 16 : 4096;
        p->scratch = malloc(p->scratch_cap);
        if (!p->scratch)
            abort();
    }
    p->scratch_len = 0;
    an_buf_reset(&p->out);
    an_buf_reset(&p->flat);
    an_buf_reset(&p->path);
    p->nleaves = 0;
    p->props = 0;
    p->masked = p->pii_keys = 0;
    p->s = p->base = raw;
    p->end = raw + len;

    if (!envelope(p, now_ms, ev)) {
        rej->reason = p->reason;
        snprintf(rej->detail, sizeof(rej->detail), "%s", p->detail);
        copy_id(rej->tenant, ev->tenant, ev->tenant_len);
        copy_id(rej->id, ev->id, ev->id_len);
        return false;
    }
    ev->properties = p->out.data;
    ev->properties_len = p->out.len;
    ev->masked = p->masked;
    ev->pii_keys = p->pii_keys;
    finish_leaves(p, ev);
    return true;
}
