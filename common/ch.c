/*
 * ch.c - ClickHouse HTTP client (see ch.h for the contract, ch_int.h for
 * the pieces the unit tests reach).
 *
 * Sections: text helpers (escaping, URL), exceptions and their mapping,
 * the streaming result parser, the transport (one curl easy handle, retry
 * loop), the public requests, the batch builder.
 */
#include "common/ch.h"
#include "common/ch_int.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/timeutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RESULT_FORMAT   "TabSeparatedWithNamesAndTypes"
#define ERRBODY_MAX     AN_CH_EXCEPTION_MAX
#define CURL_BUFSIZE    (256 * 1024)
#define DEFAULT_BUF_MAX ((size_t)64 * 1024 * 1024)

/* ======================================================================
 * Text helpers
 * ====================================================================== */

/* 1 for bytes that need a backslash in a TSV field. */
static const unsigned char tsv_special[256] = {
    [0] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1, ['\\'] = 1,
};
/* The same inside a quoted array element, plus the quote. */
static const unsigned char quoted_special[256] = {
    [0] = 1, ['\t'] = 1, ['\n'] = 1, ['\r'] = 1, ['\\'] = 1, ['\''] = 1,
};

static char escape_letter(unsigned char c)
{
    switch (c) {
    case 0:
        return '0';
    case '\t':
        return 't';
    case '\n':
        return 'n';
    case '\r':
        return 'r';
    default:
        return (char)c; /* \\ and \' */
    }
}

/* Copy runs of plain bytes with one memcpy; worst case doubles the size,
 * so grow once up front and write through a raw pointer. */
static void escape_with(an_buf *out, const char *s, size_t len, const unsigned char *special)
{
    an_buf_grow(out, 2 * len);
    char *o = out->data + out->len;
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        const unsigned char *run = p;
        while (p < end && !special[*p])
            p++;
        memcpy(o, run, (size_t)(p - run));
        o += p - run;
        if (p < end) {
            *o++ = '\\';
            *o++ = escape_letter(*p);
            p++;
        }
    }
    out->len = (size_t)(o - out->data);
    out->data[out->len] = '\0';
}

void an_ch_tsv_escape(an_buf *out, const char *s, size_t len)
{
    escape_with(out, s, len, tsv_special);
}

void an_ch_tsv_quote(an_buf *out, const char *s, size_t len)
{
    an_buf_addc(out, '\'');
    escape_with(out, s, len, quoted_special);
    an_buf_addc(out, '\'');
}

size_t an_ch_tsv_unescape(char *dst, const char *src, size_t len)
{
    char *o = dst;
    const char *p = src, *end = src + len;
    while (p < end) {
        const char *bs = memchr(p, '\\', (size_t)(end - p));
        if (!bs) {
            memmove(o, p, (size_t)(end - p));
            o += end - p;
            break;
        }
        memmove(o, p, (size_t)(bs - p));
        o += bs - p;
        p = bs + 1;
        if (p == end) { /* a lone trailing backslash: keep it */
            *o++ = '\\';
            break;
        }
        char c = *p++;
        switch (c) {
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
        case '0':
            *o++ = '\0';
            break;
        case 'a':
            *o++ = '\a';
            break;
        case 'v':
            *o++ = '\v';
            break;
        case 'x':
            if (end - p >= 2 && an_crypto_hex_value(p[0]) >= 0 && an_crypto_hex_value(p[1]) >= 0) {
                *o++ = (char)(an_crypto_hex_value(p[0]) * 16 + an_crypto_hex_value(p[1]));
                p += 2;
            } else {
                *o++ = 'x';
            }
            break;
        default:
            *o++ = c;
            break;
        }
    }
    return (size_t)(o - dst);
}

static bool is_ident(const char *s)
{
    if (!s || !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || *s == '_'))
        return false;
    for (s++; *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') ||
              *s == '_'))
            return false;
    return true;
}

static void add_param_u64(an_buf *out, const char *name, uint64_t v)
{
    an_buf_addf(out, "%s=%" PRIu64 "&", name, v);
}

an_status an_ch_build_params(an_buf *out, const char *database, const an_ch_settings *s,
                             an_error *err)
{
    if (database && *database) {
        an_buf_adds(out, "database=");
        an_buf_add_uri_encoded(out, database, strlen(database), false);
        an_buf_addc(out, '&');
    }
    if (!s)
        return AN_OK;
    if (s->readonly < 0 || s->readonly > 2)
        return an_error_field(err, AN_INVALID_ARGUMENT, "readonly", "readonly must be 0, 1 or 2");
    if (s->max_execution_time < 0)
        return an_error_field(err, AN_INVALID_ARGUMENT, "max_execution_time",
                              "max_execution_time must not be negative");
    for (size_t i = 0; i < s->n_extra; i++) {
        const an_ch_setting *x = &s->extra[i];
        if (!is_ident(x->name) || !x->value)
            return an_error_field(err, AN_INVALID_ARGUMENT, "settings",
                                  "bad ClickHouse setting name \"%s\"", x->name ? x->name : "");
        if (strcmp(x->name, "readonly") == 0 || strcmp(x->name, "query") == 0)
            return an_error_field(err, AN_INVALID_ARGUMENT, "settings",
                                  "setting \"%s\" is not allowed in extra", x->name);
    }
    if (s->max_execution_time > 0)
        add_param_u64(out, "max_execution_time", (uint64_t)s->max_execution_time);
    if (s->max_result_rows > 0) {
        add_param_u64(out, "max_result_rows", s->max_result_rows);
        an_buf_adds(out, "result_overflow_mode=throw&");
    }
    if (s->max_memory_usage > 0)
        add_param_u64(out, "max_memory_usage", s->max_memory_usage);
    for (size_t i = 0; i < s->n_extra; i++) {
        an_buf_adds(out, s->extra[i].name);
        an_buf_addc(out, '=');
        an_buf_add_uri_encoded(out, s->extra[i].value, strlen(s->extra[i].value), false);
        an_buf_addc(out, '&');
    }
    /* Last: once readonly is applied, the server refuses any later setting. */
    if (s->readonly > 0)
        add_param_u64(out, "readonly", (uint64_t)s->readonly);
    return AN_OK;
}

/* ======================================================================
 * Exceptions
 * ====================================================================== */

static const char OLD_MARK[] = ", e.displayText() = ";
static const char NEW_MARK[] = ". DB::Exception";

/* Length of "Code: N" at text (digits included), 0 when absent. */
static size_t code_prefix(const char *t, size_t len)
{
    if (len < 7 || memcmp(t, "Code: ", 6) != 0)
        return 0;
    size_t i = 6;
    while (i < len && i < 16 && t[i] >= '0' && t[i] <= '9')
        i++;
    return i > 6 ? i : 0;
}

bool an_ch_looks_like_exception(const char *t, size_t len)
{
    size_t i = code_prefix(t, len);
    if (!i)
        return false;
    if (len - i >= sizeof(OLD_MARK) - 1 && memcmp(t + i, OLD_MARK, sizeof(OLD_MARK) - 1) == 0)
        return true;
    return len - i >= sizeof(NEW_MARK) - 1 && memcmp(t + i, NEW_MARK, sizeof(NEW_MARK) - 1) == 0;
}

an_status an_ch_status_for_code(int code)
{
    switch (code) {
    /* the query or its data is wrong */
    case 6:
    case 8:
    case 10:
    case 16:
    case 20:
    case 21:
    case 22:
    case 25:
    case 26:
    case 27:
    case 32:
    case 33:
    case 34:
    case 35:
    case 36:
    case 37:
    case 38:
    case 41:
    case 42:
    case 43:
    case 44:
    case 45:
    case 46:
    case 47:
    case 50:
    case 51:
    case 52:
    case 53:
    case 62:
    case 63:
    case 69:
    case 70:
    case 72:
    case 73:
    case 115:
    case 117:
    case 130:
    case 179:
    case 184:
    case 215:
    case 352:
    case 386:
        return AN_INVALID_ARGUMENT;
    case 60:
    case 81: /* unknown table, unknown database */
        return AN_NOT_FOUND;
    case 57:
    case 82: /* table, database already exists */
        return AN_ALREADY_EXISTS;
    case 164:
    case 291:
    case 452:
    case 497: /* readonly, db access denied, constraint, access */
        return AN_PERMISSION_DENIED;
    /* limits: rows, timeout, too slow, columns, depth, quota, concurrency,
     * memory, parts, limit, bytes, rows-or-bytes */
    case 158:
    case 159:
    case 160:
    case 161:
    case 162:
    case 201:
    case 202:
    case 241:
    case 252:
    case 290:
    case 307:
    case 396:
        return AN_RESOURCE_EXHAUSTED;
    case 209:
    case 210:
    case 242: /* socket timeout, network error, replica read-only */
        return AN_UNAVAILABLE;
    /* 192/193/194/516 (authentication) and everything else */
    default:
        return AN_INTERNAL;
    }
}

static bool is_auth_code(int code)
{
    return code == 192 || code == 193 || code == 194 || code == 516 || code == 195;
}

an_status an_ch_exception_to_error(const char *text, size_t len, int *code, an_error *err)
{
    *code = 0;
    if (!an_ch_looks_like_exception(text, len))
        return an_error_set(err, AN_INTERNAL, "clickhouse: unexpected response: %.*s",
                            (int)(len > 200 ? 200 : len), text);
    size_t i = code_prefix(text, len);
    *code = (int)strtol(text + 6, NULL, 10);
    const char *m = text + i, *end = text + len;
    if ((size_t)(end - m) >= sizeof(OLD_MARK) - 1 &&
        memcmp(m, OLD_MARK, sizeof(OLD_MARK) - 1) == 0) {
        m += sizeof(OLD_MARK) - 1;
        /* cut ", e.what() = DB::Exception" */
        for (const char *w = end - 13; end - m >= 13 && w > m; w--)
            if (memcmp(w, ", e.what() = ", 13) == 0) {
                end = w;
                break;
            }
    } else {
        m += 2; /* ". " */
    }
    if ((size_t)(end - m) >= 15 && memcmp(m, "DB::Exception: ", 15) == 0)
        m += 15;
    while (end > m && (end[-1] == '\n' || end[-1] == '\r' || end[-1] == ' '))
        end--;
    an_status st = an_ch_status_for_code(*code);
    if (is_auth_code(*code))
        return an_error_set(err, st, "clickhouse: authentication failed (code %d): %.*s", *code,
                            (int)(end - m), m);
    return an_error_set(err, st, "clickhouse code %d: %.*s", *code, (int)(end - m), m);
}

/* ======================================================================
 * Streaming result parser
 * ====================================================================== */

void an_ch_parser_init(an_ch_parser *p, an_ch_row_fn fn, void *ud, an_error *err)
{
    memset(p, 0, sizeof(*p));
    p->fn = fn;
    p->ud = ud;
    p->err = err;
}

static void free_strv(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void an_ch_parser_free(an_ch_parser *p)
{
    if (!p)
        return;
    free_strv(p->names, p->names ? p->ncols : 0);
    free_strv(p->types, p->types ? p->ncols : 0);
    an_buf_free(&p->partial);
    an_buf_free(&p->rowbuf);
    an_buf_free(&p->held);
    an_buf_free(&p->exception);
    free(p->fields);
    free(p->lens);
    free(p->raw);
    memset(p, 0, sizeof(*p));
}

/* Split and decode one line into p->fields/p->lens; returns the field count. */
static size_t split_line(an_ch_parser *p, const char *line, size_t len)
{
    /* Decoded fields never grow, plus one NUL each: 2*len+2 bounds it, and
     * growing once keeps the field pointers stable while we fill them. */
    an_buf_reset(&p->rowbuf);
    an_buf_grow(&p->rowbuf, 2 * len + 2);
    char *o = p->rowbuf.data;
    size_t n = 0;
    const char *s = line, *end = line + len;
    for (;;) {
        const char *tab = memchr(s, '\t', (size_t)(end - s));
        const char *fend = tab ? tab : end;
        if (n == p->fcap) {
            p->fcap = p->fcap ? 2 * p->fcap : 16;
            p->fields = realloc(p->fields, p->fcap * sizeof(*p->fields));
            p->lens = realloc(p->lens, p->fcap * sizeof(*p->lens));
            if (!p->fields || !p->lens) {
                fputs("an_ch: out of memory\n", stderr);
                abort();
            }
        }
        if (p->raw && n < p->ncols && p->raw[n]) {
            size_t dl = (size_t)(fend - s);
            memcpy(o, s, dl);
            o[dl] = '\0';
            p->fields[n] = o;
            p->lens[n] = dl;
            o += dl + 1;
        } else if (fend - s == 2 && s[0] == '\\' && s[1] == 'N') {
            p->fields[n] = NULL;
            p->lens[n] = 0;
        } else {
            size_t dl = an_ch_tsv_unescape(o, s, (size_t)(fend - s));
            o[dl] = '\0';
            p->fields[n] = o;
            p->lens[n] = dl;
            o += dl + 1;
        }
        n++;
        if (!tab)
            break;
        s = tab + 1;
    }
    return n;
}

static char **copy_fields(an_ch_parser *p, size_t n)
{
    char **v = calloc(n, sizeof(*v));
    if (!v)
        abort();
    for (size_t i = 0; i < n; i++) {
        v[i] = strdup(p->fields[i] ? p->fields[i] : "");
        if (!v[i])
            abort();
    }
    return v;
}

static void add_exception(an_ch_parser *p, const char *line, size_t len)
{
    size_t room = AN_CH_EXCEPTION_MAX - p->exception.len;
    if (len + 1 > room)
        len = room > 1 ? room - 1 : 0;
    an_buf_add(&p->exception, line, len);
    if (room > 0)
        an_buf_addc(&p->exception, '\n');
}

static an_status bad_body(an_ch_parser *p, const char *what, size_t got)
{
    p->st = an_error_set(p->err, AN_INTERNAL,
                         "clickhouse: malformed result at row %" PRIu64 ": %s (%zu fields, %zu "
                         "columns)",
                         p->rows, what, got, p->ncols);
    return p->st;
}

static an_status deliver(an_ch_parser *p)
{
    an_ch_row row = {p->ncols,
                     (const char *const *)p->fields,
                     p->lens,
                     (const char *const *)p->names,
                     (const char *const *)p->types,
                     p->rows};
    p->rows++;
    an_status st = p->fn ? p->fn(p->ud, &row, p->err) : AN_OK;
    if (st != AN_OK) {
        if (p->err && (p->err->code != st || !p->err->message[0]))
            an_error_set(p->err, st, "clickhouse: query stopped by the row callback (%s)",
                         an_status_code(st));
        p->st = st;
    }
    return st;
}

/* Find "Code: N, e.displayText() = " (or the new form) inside a line. */
static const char *find_exception(const char *line, size_t len)
{
    for (const char *s = line; (s = memmem(s, len - (size_t)(s - line), "Code: ", 6)); s++)
        if (an_ch_looks_like_exception(s, len - (size_t)(s - line)))
            return s;
    return NULL;
}

/* True for the last line of an exception text: ", e.what() = X" (up to 20.x)
 * or a trailing "(version X)" (21.x and later). */
static bool exception_ends(const char *line, size_t len)
{
    if (memmem(line, len, ", e.what() = ", 13))
        return true;
    if (len < 11 || line[len - 1] != ')')
        return false;
    for (size_t i = len - 1; i-- > 0;)
        if (line[i] == '(')
            return len - i > 9 && memcmp(line + i, "(version ", 9) == 0;
    return false;
}

static an_status process_line(an_ch_parser *p, const char *line, size_t len);

/* The held lines were data after all: hand the first over as is (it was held
 * for looking like an exception) and run the rest through the usual path. */
static an_status release_held(an_ch_parser *p)
{
    an_buf held = p->held;
    an_buf_init(&p->held);
    p->holding = false;
    p->held_complete = false;
    const char *s = held.data, *end = held.data + held.len;
    an_status st = AN_OK;
    bool first = true;
    while (st == AN_OK && s < end) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        size_t l = (size_t)(nl - s);
        if (first) {
            size_t n = split_line(p, s, l);
            st = n == p->ncols ? deliver(p) : bad_body(p, "wrong field count", n);
            first = false;
        } else {
            st = process_line(p, s, l);
        }
        s = nl + 1;
    }
    an_buf_free(&held);
    return st;
}

static an_status process_line(an_ch_parser *p, const char *line, size_t len)
{
    if (p->in_exception) {
        add_exception(p, line, len);
        return AN_OK;
    }
    if (p->holding) {
        if (p->held_complete) {
            /* Something follows a complete exception text: it was data. */
            an_status st = release_held(p);
            return st != AN_OK ? st : process_line(p, line, len);
        }
        an_buf_add(&p->held, line, len);
        an_buf_addc(&p->held, '\n');
        p->held_complete = exception_ends(line, len);
        /* No exception is that long: it was data. */
        return p->held.len > AN_CH_EXCEPTION_MAX ? release_held(p) : AN_OK;
    }
    bool exc = an_ch_looks_like_exception(line, len);
    size_t n = split_line(p, line, len);
    if (p->phase == 0) {
        if (exc) {
            p->in_exception = true;
            add_exception(p, line, len);
            return AN_OK;
        }
        p->ncols = n;
        p->names = copy_fields(p, n);
        p->phase = 1;
        return AN_OK;
    }
    if (p->phase == 1) {
        if (exc || n != p->ncols) {
            if (!exc)
                return bad_body(p, "types line", n);
            p->in_exception = true;
            add_exception(p, line, len);
            return AN_OK;
        }
        p->types = copy_fields(p, n);
        /* Composite values are written as literals ('a\'b' inside [...]),
         * not TSV-escaped: hand them over as they are. */
        p->raw = calloc(n, sizeof(*p->raw));
        if (!p->raw)
            abort();
        for (size_t i = 0; i < n; i++)
            p->raw[i] = strncmp(p->types[i], "Array(", 6) == 0 ||
                        strncmp(p->types[i], "Tuple(", 6) == 0 ||
                        strncmp(p->types[i], "Map(", 4) == 0;
        p->phase = 2;
        return AN_OK;
    }
    if (exc) {
        if (n != p->ncols) {
            p->in_exception = true;
            add_exception(p, line, len);
        } else {
            /* A well-formed row that reads like an exception: only the end
             * of the body can tell. Hold it (bounded) until then. */
            p->holding = true;
            p->held_complete = exception_ends(line, len);
            an_buf_add(&p->held, line, len);
            an_buf_addc(&p->held, '\n');
        }
        return AN_OK;
    }
    if (n != p->ncols) {
        /* The server failed in the middle of a row and appended its exception. */
        const char *e = find_exception(line, len);
        if (!e)
            return bad_body(p, "wrong field count", n);
        p->in_exception = true;
        add_exception(p, e, len - (size_t)(e - line));
        return AN_OK;
    }
    return deliver(p);
}

an_status an_ch_parser_feed(an_ch_parser *p, const char *data, size_t len)
{
    if (p->st != AN_OK)
        return p->st;
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        if (!nl) {
            an_buf_add(&p->partial, data, len);
            break;
        }
        size_t l = (size_t)(nl - data);
        an_status st;
        if (p->partial.len) {
            an_buf_add(&p->partial, data, l);
            st = process_line(p, p->partial.data, p->partial.len);
            an_buf_reset(&p->partial);
        } else {
            st = process_line(p, data, l);
        }
        if (st != AN_OK)
            return st;
        data = nl + 1;
        len -= l + 1;
    }
    return AN_OK;
}

an_status an_ch_parser_finish(an_ch_parser *p, int *code)
{
    *code = 0;
    if (p->st != AN_OK)
        return p->st;
    if (p->partial.len) {
        /* Every row and every exception ends with a newline; a body that
         * does not was cut short, unless the cut piece is an exception. */
        an_buf last = p->partial;
        an_buf_init(&p->partial);
        if (!p->in_exception && !p->holding && p->phase == 2 &&
            !find_exception(last.data, last.len)) {
            an_buf_free(&last);
            return bad_body(p, "body ends in the middle of a row", 0);
        }
        an_status st = process_line(p, last.data, last.len);
        an_buf_free(&last);
        if (st != AN_OK)
            return st;
    }
    if (p->holding) {
        p->in_exception = true;
        an_buf_add(&p->exception, p->held.data, p->held.len);
        an_buf_reset(&p->held);
        p->holding = false;
    }
    if (p->in_exception) {
        p->st = an_ch_exception_to_error(p->exception.data, p->exception.len, code, p->err);
        return p->st;
    }
    if (p->phase == 1)
        return bad_body(p, "no types line", 0);
    return AN_OK;
}

/* ======================================================================
 * Transport
 * ====================================================================== */

typedef enum body_mode { BODY_PARSE, BODY_BUFFER, BODY_DISCARD } body_mode;

typedef struct request {
    body_mode mode;
    an_ch_parser *parser; /* BODY_PARSE */
    an_buf *out;          /* BODY_BUFFER */
    size_t out_max;
    an_buf errbody; /* non-200 body, or a 200 body of exec/insert */
    long http;
    bool sent;      /* the request went out on a connection */
    bool started;   /* a response byte arrived */
    an_status stop; /* why the write callback aborted */
} request;

struct an_ch {
    CURL *curl;
    struct curl_slist *headers;
    char *base; /* url without trailing '/' */
    char *database;
    int connect_timeout_ms, query_timeout_ms, max_retries, backoff_base_ms, backoff_max_ms;
    size_t max_buffer_bytes;
    an_ch_retry_fn on_retry;
    void *on_retry_ud;
    int last_code;
    bool last_timed_out;      /* the last request got no (whole) answer in time */
    _Atomic int64_t deadline; /* monotonic ms every request is broken off at; 0: none */
    an_ch_stats stats;
    uint64_t rng;
    an_buf url, sql, scratch;
    request *req;
    char errbuf[CURL_ERROR_SIZE];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void init_curl(void)
{
    curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *ud)
{
    (void)ptr;
    an_ch *ch = ud;
    ch->req->started = true;
    return size * nmemb;
}

static bool past_deadline(an_ch *ch)
{
    int64_t d = atomic_load(&ch->deadline);
    return d && an_time_mono_ms() >= d;
}

/* Breaks a plain request off at ch's deadline (curl calls this at least
 * about once a second, also while it waits for the answer). */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return past_deadline(ud) ? 1 : 0;
}

static int on_prereq(void *ud, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port)
{
    (void)conn_primary_ip, (void)conn_local_ip, (void)conn_primary_port, (void)conn_local_port;
    an_ch *ch = ud;
    ch->req->sent = true;
    return CURL_PREREQFUNC_OK;
}

static void add_bounded(an_buf *b, const char *p, size_t n, size_t max)
{
    if (b->len >= max)
        return;
    an_buf_add(b, p, n > max - b->len ? max - b->len : n);
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
    an_ch *ch = ud;
    request *r = ch->req;
    size_t n = size * nmemb;
    r->started = true;
    if (!r->http)
        curl_easy_getinfo(ch->curl, CURLINFO_RESPONSE_CODE, &r->http);
    if (r->http != 200) {
        add_bounded(&r->errbody, ptr, n, ERRBODY_MAX);
        return n;
    }
    switch (r->mode) {
    case BODY_PARSE: {
        an_status st = an_ch_parser_feed(r->parser, ptr, n);
        if (st != AN_OK) {
            r->stop = st;
            return 0;
        }
        break;
    }
    case BODY_BUFFER:
        if (r->out->len + n > r->out_max) {
            r->stop = AN_RESOURCE_EXHAUSTED;
            return 0;
        }
        an_buf_add(r->out, ptr, n);
        break;
    case BODY_DISCARD:
        add_bounded(&r->errbody, ptr, n, ERRBODY_MAX);
        break;
    }
    return n;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static uint64_t next_rand(an_ch *ch)
{
    /* xorshift64*: jitter only, no need for more */
    ch->rng ^= ch->rng >> 12;
    ch->rng ^= ch->rng << 25;
    ch->rng ^= ch->rng >> 27;
    return ch->rng * 0x2545F4914F6CDD1DULL;
}

/* Delay before retry number attempt (0-based): in [b/2, b], b = base * 2^attempt. */
static int backoff_ms(an_ch *ch, int attempt)
{
    int64_t b = ch->backoff_base_ms;
    for (int i = 0; i < attempt && b < ch->backoff_max_ms; i++)
        b *= 2;
    if (b > ch->backoff_max_ms)
        b = ch->backoff_max_ms;
    int64_t half = b / 2;
    return (int)(b - half + (int64_t)(next_rand(ch) % (uint64_t)(half + 1)));
}

/* Map a non-200 response without exception text. */
static an_status http_status_error(long http, an_error *err, const char *body)
{
    an_status st = http == 401                                 ? AN_INTERNAL
                   : http == 403                               ? AN_PERMISSION_DENIED
                   : http == 404                               ? AN_NOT_FOUND
                   : http == 400                               ? AN_INVALID_ARGUMENT
                   : http == 502 || http == 503 || http == 504 ? AN_UNAVAILABLE
                                                               : AN_INTERNAL;
    return an_error_set(err, st, "clickhouse: HTTP %ld: %.200s", http, body);
}

/* The exception at the end of a 200 body of exec/insert/query_buf, or NULL:
 * the body's last line must end an exception text (see exception_ends) and
 * the exception starts at the nearest line above it that starts like one. */
const char *an_ch_trailing_exception(const char *b, size_t len)
{
    while (len > 0 && b[len - 1] == '\n')
        len--;
    if (len == 0)
        return NULL;
    const char *end = b + len, *last = end;
    while (last > b && last[-1] != '\n')
        last--;
    if (!exception_ends(last, (size_t)(end - last)))
        return NULL;
    const char *floor = len > AN_CH_EXCEPTION_MAX ? end - AN_CH_EXCEPTION_MAX : b;
    for (const char *s = last; s >= floor; s--)
        if ((s == b || s[-1] == '\n') && an_ch_looks_like_exception(s, (size_t)(end - s)))
            return s;
    return NULL;
}

/* Forget the outcome of the previous request (an_ch_last_exception_code,
 * an_ch_last_timed_out): every request starts with this. */
static void clear_last(an_ch *ch)
{
    ch->last_code = 0;
    ch->last_timed_out = false;
}

/* The error of a non-200 answer: its exception text, else its HTTP status. */
static an_status response_error(an_ch *ch, const request *r, an_error *err)
{
    int code = 0;
    an_status st;
    if (an_ch_looks_like_exception(r->errbody.data ? r->errbody.data : "", r->errbody.len))
        st = an_ch_exception_to_error(r->errbody.data, r->errbody.len, &code, err);
    else
        st = http_status_error(r->http, err, an_buf_str(&r->errbody));
    ch->last_code = code;
    return st;
}

static void count_connects(an_ch *ch)
{
    long n = 0;
    curl_easy_getinfo(ch->curl, CURLINFO_NUM_CONNECTS, &n);
    ch->stats.connects += (uint64_t)n;
}

/*
 * Run one request with the retry rule of ch.h. method_get: GET, else POST
 * body/len. retry_after_send: the request may be repeated when the
 * connection broke before any response byte (reads, idempotent inserts).
 */
static an_status perform(an_ch *ch, request *r, bool method_get, const char *body, size_t len,
                         bool retry_after_send, an_error *err)
{
    CURL *c = ch->curl;
    clear_last(ch);
    curl_easy_setopt(c, CURLOPT_URL, ch->url.data);
    if (method_get) {
        curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    } else {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    ch->req = r;
    CURLcode rc;
    for (int attempt = 0;; attempt++) {
        if (past_deadline(ch)) {
            ch->req = NULL;
            return an_error_set(err, AN_UNAVAILABLE, "clickhouse: the caller's deadline passed%s",
                                attempt ? " (while retrying)" : "");
        }
        r->sent = r->started = false;
        r->http = 0;
        r->stop = AN_OK;
        an_buf_reset(&r->errbody);
        ch->errbuf[0] = '\0';
        rc = curl_easy_perform(c);
        count_connects(ch);
        if (rc == CURLE_OK)
            break;
        const char *why = ch->errbuf[0] ? ch->errbuf : curl_easy_strerror(rc);
        if (rc == CURLE_ABORTED_BY_CALLBACK && past_deadline(ch)) {
            ch->req = NULL;
            ch->last_timed_out = r->sent;
            return an_error_set(err, AN_UNAVAILABLE,
                                "clickhouse: broken off at the caller's deadline%s",
                                r->sent ? "; the query may still run on the server" : "");
        }
        if (r->stop != AN_OK) {
            ch->req = NULL;
            if (r->mode == BODY_BUFFER && r->stop == AN_RESOURCE_EXHAUSTED)
                return an_error_set(err, AN_RESOURCE_EXHAUSTED,
                                    "clickhouse: result larger than %zu bytes", r->out_max);
            return r->stop; /* the parser or the callback filled err */
        }
        if (r->started) {
            ch->req = NULL;
            if (r->mode == BODY_PARSE && (r->parser->in_exception || r->parser->holding)) {
                /* A newer server breaks the stream after its exception text. */
                int code;
                an_status st = an_ch_parser_finish(r->parser, &code);
                ch->last_code = code;
                return st;
            }
            ch->last_timed_out = rc == CURLE_OPERATION_TIMEDOUT;
            return an_error_set(err, AN_UNAVAILABLE,
                                "clickhouse: transfer broken after the response started: %s", why);
        }
        bool before_send = !r->sent;
        bool retryable = before_send || (retry_after_send && rc != CURLE_OPERATION_TIMEDOUT);
        if (!retryable || attempt >= ch->max_retries) {
            ch->req = NULL;
            if (!before_send && rc == CURLE_OPERATION_TIMEDOUT) {
                ch->last_timed_out = true;
                return an_error_set(err, AN_UNAVAILABLE,
                                    "clickhouse: no response within %d ms (%s); the query may "
                                    "still run on the server",
                                    ch->query_timeout_ms, why);
            }
            if (!before_send && !retry_after_send)
                return an_error_set(err, AN_UNAVAILABLE,
                                    "clickhouse: connection lost before the response (%s); the "
                                    "request may have been executed, not retried",
                                    why);
            return an_error_set(err, AN_UNAVAILABLE, "clickhouse %s: %s (after %d retries)",
                                ch->base, why, attempt);
        }
        int delay = backoff_ms(ch, attempt);
        if (ch->on_retry)
            ch->on_retry(ch->on_retry_ud, attempt + 1, delay, why);
        else
            an_warn("clickhouse %s: %s; retry %d/%d in %d ms", ch->base, why, attempt + 1,
                    ch->max_retries, delay);
        ch->stats.retries++;
        sleep_ms(delay);
    }
    ch->req = NULL;
    ch->stats.requests++;
    if (!r->http) /* no body: the write callback never ran */
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->http);
    return r->http != 200 ? response_error(ch, r, err) : AN_OK;
}

/* Base URL + "/?" + database and settings parameters, into ch->url. */
static an_status start_url(an_ch *ch, const an_ch_settings *s, an_error *err)
{
    an_buf_reset(&ch->url);
    an_buf_adds(&ch->url, ch->base);
    an_buf_adds(&ch->url, "/?");
    return an_ch_build_params(&ch->url, ch->database, s, err);
}

/* sql without trailing blanks and ';', then "\nFORMAT fmt" (the newline ends a
 * trailing -- comment). */
static an_status sql_with_format(an_ch *ch, const char *sql, const char *fmt, an_error *err)
{
    if (!sql)
        return an_error_field(err, AN_INVALID_ARGUMENT, "sql", "sql is NULL");
    size_t n = strlen(sql);
    while (n > 0 && (sql[n - 1] == ';' || sql[n - 1] == ' ' || sql[n - 1] == '\n' ||
                     sql[n - 1] == '\t' || sql[n - 1] == '\r'))
        n--;
    if (n == 0)
        return an_error_field(err, AN_INVALID_ARGUMENT, "sql", "empty query");
    an_buf_reset(&ch->sql);
    an_buf_add(&ch->sql, sql, n);
    if (fmt) {
        an_buf_adds(&ch->sql, "\nFORMAT ");
        an_buf_adds(&ch->sql, fmt);
    }
    return AN_OK;
}

/* ======================================================================
 * Public: lifecycle and requests
 * ====================================================================== */

static bool has_ctl(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return true;
    return false;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        abort();
    return p;
}

static struct curl_slist *add_header(struct curl_slist *l, const char *fmt, const char *v)
{
    char *h;
    if (asprintf(&h, fmt, v) < 0)
        abort();
    struct curl_slist *n = curl_slist_append(l, h);
    free(h);
    if (!n)
        abort();
    return n;
}

an_status an_ch_new(const an_ch_options *opt, an_ch **out, an_error *err)
{
    *out = NULL;
    if (!opt || !opt->url || strncmp(opt->url, "http://", 7) != 0 || !opt->url[7])
        return an_error_field(err, AN_INVALID_ARGUMENT, "url",
                              "clickhouse url must look like http://host:port");
    const char *user = opt->user ? opt->user : "default";
    const char *pass = opt->password ? opt->password : "";
    if (has_ctl(user) || has_ctl(pass) || has_ctl(opt->url))
        return an_error_field(err, AN_INVALID_ARGUMENT, "user",
                              "clickhouse url, user and password must not hold control "
                              "characters");
    if (opt->database && *opt->database && !is_ident(opt->database))
        return an_error_field(err, AN_INVALID_ARGUMENT, "database", "bad database name \"%s\"",
                              opt->database);
    pthread_once(&curl_once, init_curl);
    if (curl_init_rc != CURLE_OK)
        return an_error_set(err, AN_INTERNAL, "curl_global_init: %s",
                            curl_easy_strerror(curl_init_rc));

    an_ch *ch = calloc(1, sizeof(*ch));
    if (!ch)
        abort();
    ch->curl = curl_easy_init();
    if (!ch->curl) {
        free(ch);
        return an_error_set(err, AN_INTERNAL, "curl_easy_init failed");
    }
    ch->base = xstrdup(opt->url);
    size_t bl = strlen(ch->base);
    while (bl > 7 && ch->base[bl - 1] == '/')
        ch->base[--bl] = '\0';
    ch->database = opt->database && *opt->database ? xstrdup(opt->database) : NULL;
    ch->connect_timeout_ms = opt->connect_timeout_ms > 0 ? opt->connect_timeout_ms : 2000;
    ch->query_timeout_ms = opt->query_timeout_ms == 0 ? 300000 : opt->query_timeout_ms;
    ch->max_retries = opt->max_retries == 0 ? 3 : opt->max_retries < 0 ? 0 : opt->max_retries;
    ch->backoff_base_ms = opt->backoff_base_ms > 0 ? opt->backoff_base_ms : 100;
    ch->backoff_max_ms = opt->backoff_max_ms > 0 ? opt->backoff_max_ms : 5000;
    if (ch->backoff_max_ms < ch->backoff_base_ms)
        ch->backoff_max_ms = ch->backoff_base_ms;
    ch->max_buffer_bytes = opt->max_buffer_bytes ? opt->max_buffer_bytes : DEFAULT_BUF_MAX;
    ch->on_retry = opt->on_retry;
    ch->on_retry_ud = opt->on_retry_ud;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ch->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)ch;
    if (!ch->rng)
        ch->rng = 0x9E3779B97F4A7C15ULL;

    ch->headers = add_header(NULL, "X-ClickHouse-User: %s", user);
    ch->headers = add_header(ch->headers, "X-ClickHouse-Key: %s", pass);
    /* No 100-continue round trip before large bodies. */
    ch->headers = add_header(ch->headers, "Expect:%s", "");
    ch->headers = add_header(ch->headers, "Content-Type: %s", "text/plain; charset=UTF-8");

    CURL *c = ch->curl;
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, ch->headers);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "libanalytics-ch/1");
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)ch->connect_timeout_ms);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                     ch->query_timeout_ms > 0 ? (long)ch->query_timeout_ms : 0L);
    curl_easy_setopt(c, CURLOPT_BUFFERSIZE, (long)CURL_BUFSIZE);
    curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, (long)(512 * 1024));
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, ch->errbuf);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, ch);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, ch);
    curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, on_prereq);
    curl_easy_setopt(c, CURLOPT_PREREQDATA, ch);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, ch);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    *out = ch;
    return AN_OK;
}

void an_ch_free(an_ch *ch)
{
    if (!ch)
        return;
    curl_easy_cleanup(ch->curl);
    curl_slist_free_all(ch->headers);
    free(ch->base);
    free(ch->database);
    an_buf_free(&ch->url);
    an_buf_free(&ch->sql);
    an_buf_free(&ch->scratch);
    free(ch);
}

int an_ch_last_exception_code(const an_ch *ch)
{
    return ch ? ch->last_code : 0;
}

bool an_ch_last_timed_out(const an_ch *ch)
{
    return ch ? ch->last_timed_out : false;
}

void an_ch_get_stats(const an_ch *ch, an_ch_stats *out)
{
    *out = ch->stats;
}

void an_ch_set_deadline(an_ch *ch, int64_t deadline_ms)
{
    atomic_store(&ch->deadline, deadline_ms);
}

an_status an_ch_ping(an_ch *ch, an_error *err)
{
    an_buf_reset(&ch->url);
    an_buf_adds(&ch->url, ch->base);
    an_buf_adds(&ch->url, "/ping");
    an_buf_reset(&ch->scratch);
    request r = {.mode = BODY_BUFFER, .out = &ch->scratch, .out_max = 4096};
    an_status st = perform(ch, &r, true, NULL, 0, true, err);
    an_buf_free(&r.errbody);
    if (st != AN_OK)
        return st;
    if (strncmp(an_buf_str(&ch->scratch), "Ok.", 3) != 0)
        return an_error_set(err, AN_UNAVAILABLE, "clickhouse: /ping answered \"%.64s\"",
                            an_buf_str(&ch->scratch));
    return AN_OK;
}

an_status an_ch_query(an_ch *ch, const char *sql, const an_ch_settings *settings, an_ch_row_fn fn,
                      void *ud, an_error *err)
{
    an_error scratch;
    if (!err)
        err = &scratch;
    an_error_clear(err);
    clear_last(ch);
    an_status st = sql_with_format(ch, sql, RESULT_FORMAT, err);
    if (st == AN_OK)
        st = start_url(ch, settings, err);
    if (st != AN_OK)
        return st;
    an_ch_parser parser;
    an_ch_parser_init(&parser, fn, ud, err);
    request r = {.mode = BODY_PARSE, .parser = &parser};
    st = perform(ch, &r, false, ch->sql.data, ch->sql.len, true, err);
    if (st == AN_OK) {
        int code;
        st = an_ch_parser_finish(&parser, &code);
        ch->last_code = code;
    }
    ch->stats.rows += parser.rows;
    an_ch_parser_free(&parser);
    an_buf_free(&r.errbody);
    if (st == AN_OK)
        an_error_clear(err);
    return st;
}

static bool is_format_name(const char *f)
{
    if (!f || !*f)
        return false;
    for (; *f; f++)
        if (!((*f >= 'A' && *f <= 'Z') || (*f >= 'a' && *f <= 'z') || (*f >= '0' && *f <= '9')))
            return false;
    return true;
}

an_status an_ch_query_buf(an_ch *ch, const char *sql, const char *format,
                          const an_ch_settings *settings, an_buf *out, an_error *err)
{
    clear_last(ch);
    if (!format)
        format = "TabSeparated";
    if (!is_format_name(format))
        return an_error_field(err, AN_INVALID_ARGUMENT, "format", "bad format name \"%s\"", format);
    an_status st = sql_with_format(ch, sql, format, err);
    if (st == AN_OK)
        st = start_url(ch, settings, err);
    if (st != AN_OK)
        return st;
    size_t start = out->len;
    request r = {.mode = BODY_BUFFER, .out = out, .out_max = start + ch->max_buffer_bytes};
    st = perform(ch, &r, false, ch->sql.data, ch->sql.len, true, err);
    an_buf_free(&r.errbody);
    if (st != AN_OK)
        return st;
    const char *e =
        out->data ? an_ch_trailing_exception(out->data + start, out->len - start) : NULL;
    if (e) {
        int code;
        st = an_ch_exception_to_error(e, (size_t)(out->data + out->len - e), &code, err);
        ch->last_code = code;
        return st;
    }
    return AN_OK;
}

/* A 200 answer to exec/insert has an empty body, unless the server failed late. */
static an_status check_quiet_body(an_ch *ch, request *r, an_error *err)
{
    const char *e =
        r->errbody.len ? an_ch_trailing_exception(r->errbody.data, r->errbody.len) : NULL;
    if (!e)
        return AN_OK;
    int code;
    an_status st =
        an_ch_exception_to_error(e, (size_t)(r->errbody.data + r->errbody.len - e), &code, err);
    ch->last_code = code;
    return st;
}

an_status an_ch_exec(an_ch *ch, const char *sql, const an_ch_settings *settings, an_error *err)
{
    clear_last(ch);
    an_status st = sql_with_format(ch, sql, NULL, err);
    if (st == AN_OK)
        st = start_url(ch, settings, err);
    if (st != AN_OK)
        return st;
    request r = {.mode = BODY_DISCARD};
    st = perform(ch, &r, false, ch->sql.data, ch->sql.len, false, err);
    if (st == AN_OK)
        st = check_quiet_body(ch, &r, err);
    an_buf_free(&r.errbody);
    return st;
}

/* ch->url for an INSERT: the statement goes in the query parameter, the
 * body carries the data. */
static an_status insert_url(an_ch *ch, const char *statement, const an_ch_settings *settings,
                            an_error *err)
{
    an_status st = start_url(ch, settings, err);
    if (st == AN_OK) {
        an_buf_adds(&ch->url, "query=");
        an_buf_add_uri_encoded(&ch->url, statement, strlen(statement), false);
    }
    return st;
}

an_status an_ch_insert_raw(an_ch *ch, const char *statement, const void *data, size_t len,
                           const an_ch_settings *settings, unsigned flags, an_error *err)
{
    clear_last(ch);
    if (!statement || !*statement)
        return an_error_field(err, AN_INVALID_ARGUMENT, "statement", "empty insert statement");
    an_status st = insert_url(ch, statement, settings, err);
    if (st != AN_OK)
        return st;
    request r = {.mode = BODY_DISCARD};
    st = perform(ch, &r, false, data, len, (flags & AN_CH_INSERT_IDEMPOTENT) != 0, err);
    if (st == AN_OK)
        st = check_quiet_body(ch, &r, err);
    an_buf_free(&r.errbody);
    return st;
}

/* ======================================================================
 * Batch builder
 * ====================================================================== */

struct an_ch_batch {
    an_ch_format format;
    char *table;
    char *statement;
    bool checked; /* RowBinary: declared types matched the table's */
    char **names;
    int *types;
    size_t ncols;
    an_buf data;
    size_t rows;
    size_t row_start; /* offset of the row being built */
    size_t col;       /* next column of the row being built */
    bool bad;
    char bad_msg[200];
};

static const char *type_name(int t)
{
    static const char *n[] = {"?",       "String",  "Int8",   "Int16",    "Int32",
                              "Int64",   "UInt8",   "UInt16", "UInt32",   "UInt64",
                              "Float32", "Float64", "Date",   "DateTime", "Array(String)"};
    t &= ~AN_CH_NULLABLE;
    return t > 0 && t <= AN_CH_ARRAY_STRING ? n[t] : "?";
}

static bool valid_table(const char *t)
{
    if (!t || !*t)
        return false;
    const char *dot = strchr(t, '.');
    if (!dot)
        return is_ident(t);
    if (strchr(dot + 1, '.'))
        return false;
    char db[256];
    size_t n = (size_t)(dot - t);
    if (n == 0 || n >= sizeof(db))
        return false;
    memcpy(db, t, n);
    db[n] = '\0';
    return is_ident(db) && is_ident(dot + 1);
}

an_status an_ch_batch_new(const char *table, const an_ch_column *cols, size_t ncols,
                          an_ch_format format, an_ch_batch **out, an_error *err)
{
    *out = NULL;
    if (!valid_table(table))
        return an_error_field(err, AN_INVALID_ARGUMENT, "table", "bad table name \"%s\"",
                              table ? table : "");
    if (ncols == 0 || !cols)
        return an_error_field(err, AN_INVALID_ARGUMENT, "columns", "no columns");
    if (format != AN_CH_FORMAT_TSV && format != AN_CH_FORMAT_ROWBINARY)
        return an_error_field(err, AN_INVALID_ARGUMENT, "format", "unknown batch format");
    for (size_t i = 0; i < ncols; i++) {
        int t = cols[i].type & ~AN_CH_NULLABLE;
        if (!is_ident(cols[i].name))
            return an_error_field(err, AN_INVALID_ARGUMENT, "columns", "bad column name \"%s\"",
                                  cols[i].name ? cols[i].name : "");
        if (t < AN_CH_STRING || t > AN_CH_ARRAY_STRING || (cols[i].type & ~0x1ff))
            return an_error_field(err, AN_INVALID_ARGUMENT, "columns", "column %s: unknown type %d",
                                  cols[i].name, cols[i].type);
        if (t == AN_CH_ARRAY_STRING && (cols[i].type & AN_CH_NULLABLE))
            return an_error_field(err, AN_INVALID_ARGUMENT, "columns",
                                  "column %s: an Array cannot be Nullable", cols[i].name);
    }
    an_ch_batch *b = calloc(1, sizeof(*b));
    if (!b)
        abort();
    b->names = calloc(ncols, sizeof(*b->names));
    b->types = calloc(ncols, sizeof(*b->types));
    if (!b->names || !b->types)
        abort();
    b->format = format;
    b->table = xstrdup(table);
    b->ncols = ncols;
    an_buf st = AN_BUF_INIT;
    an_buf_addf(&st, "INSERT INTO %s (", table);
    for (size_t i = 0; i < ncols; i++) {
        b->names[i] = xstrdup(cols[i].name);
        b->types[i] = cols[i].type;
        an_buf_addf(&st, "%s%s", i ? ", " : "", cols[i].name);
    }
    an_buf_addf(&st, ") FORMAT %s", format == AN_CH_FORMAT_TSV ? "TabSeparated" : "RowBinary");
    b->statement = an_buf_detach(&st, NULL);
    *out = b;
    return AN_OK;
}

void an_ch_batch_free(an_ch_batch *b)
{
    if (!b)
        return;
    free_strv(b->names, b->ncols);
    free(b->types);
    free(b->table);
    free(b->statement);
    an_buf_free(&b->data);
    free(b);
}

__attribute__((format(printf, 2, 3))) static void mark_bad(an_ch_batch *b, const char *fmt, ...)
{
    if (b->bad)
        return;
    b->bad = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(b->bad_msg, sizeof(b->bad_msg), fmt, ap);
    va_end(ap);
}

/* Start the next field: returns its column type (with the nullable bit), or
 * 0 when the row is already bad or full. Writes the TSV separator and, for a
 * RowBinary Nullable, the not-null marker when not_null. */
static int next_field(an_ch_batch *b, bool not_null)
{
    if (b->bad)
        return 0;
    if (b->col >= b->ncols) {
        mark_bad(b, "more than %zu fields in the row", b->ncols);
        return 0;
    }
    int t = b->types[b->col];
    if (b->format == AN_CH_FORMAT_TSV) {
        if (b->col > 0)
            an_buf_addc(&b->data, '\t');
    } else if ((t & AN_CH_NULLABLE) && not_null) {
        an_buf_addc(&b->data, 0);
    }
    b->col++;
    return t;
}

static void wrong_kind(an_ch_batch *b, int t, const char *what)
{
    mark_bad(b, "column %s (%s): %s does not fit", b->names[b->col - 1], type_name(t), what);
}

static void put_varint(an_buf *o, uint64_t v)
{
    char tmp[10];
    size_t n = 0;
    do {
        unsigned char byte = v & 0x7f;
        v >>= 7;
        if (v)
            byte |= 0x80;
        tmp[n++] = (char)byte;
    } while (v);
    an_buf_add(o, tmp, n);
}

static void put_le(an_buf *o, uint64_t v, size_t width)
{
    char tmp[8];
    for (size_t i = 0; i < width; i++)
        tmp[i] = (char)(v >> (8 * i));
    an_buf_add(o, tmp, width);
}

void an_ch_batch_add_str(an_ch_batch *b, const char *s, size_t len)
{
    int t = next_field(b, true);
    if (!t)
        return;
    if ((t & ~AN_CH_NULLABLE) != AN_CH_STRING) {
        wrong_kind(b, t, "a string");
        return;
    }
    if (b->format == AN_CH_FORMAT_TSV) {
        an_ch_tsv_escape(&b->data, s, len);
    } else {
        put_varint(&b->data, len);
        an_buf_add(&b->data, s, len);
    }
}

void an_ch_batch_add_cstr(an_ch_batch *b, const char *s)
{
    if (!s)
        an_ch_batch_add_null(b);
    else
        an_ch_batch_add_str(b, s, strlen(s));
}

void an_ch_batch_add_null(an_ch_batch *b)
{
    int t = next_field(b, false);
    if (!t)
        return;
    if (!(t & AN_CH_NULLABLE)) {
        wrong_kind(b, t, "NULL");
        return;
    }
    if (b->format == AN_CH_FORMAT_TSV)
        an_buf_add(&b->data, "\\N", 2);
    else
        an_buf_addc(&b->data, 1);
}

/* Range and width of an integer column; false for a non-integer type. */
static bool int_range(int t, int64_t *min, uint64_t *max, size_t *width)
{
    switch (t & ~AN_CH_NULLABLE) {
    case AN_CH_INT8:
        *min = INT8_MIN, *max = INT8_MAX, *width = 1;
        return true;
    case AN_CH_INT16:
        *min = INT16_MIN, *max = INT16_MAX, *width = 2;
        return true;
    case AN_CH_INT32:
        *min = INT32_MIN, *max = INT32_MAX, *width = 4;
        return true;
    case AN_CH_INT64:
        *min = INT64_MIN, *max = INT64_MAX, *width = 8;
        return true;
    case AN_CH_UINT8:
        *min = 0, *max = UINT8_MAX, *width = 1;
        return true;
    case AN_CH_UINT16:
        *min = 0, *max = UINT16_MAX, *width = 2;
        return true;
    case AN_CH_UINT32:
        *min = 0, *max = UINT32_MAX, *width = 4;
        return true;
    case AN_CH_UINT64:
        *min = 0, *max = UINT64_MAX, *width = 8;
        return true;
    default:
        return false;
    }
}

static void put_float(an_ch_batch *b, int t, double v)
{
    bool f32 = (t & ~AN_CH_NULLABLE) == AN_CH_FLOAT32;
    if (b->format == AN_CH_FORMAT_TSV) {
        if (isnan(v))
            an_buf_adds(&b->data, "nan");
        else if (isinf(v))
            an_buf_adds(&b->data, v < 0 ? "-inf" : "inf");
        else
            an_buf_addf(&b->data, f32 ? "%.9g" : "%.17g", v);
    } else if (f32) {
        float f = (float)v;
        uint32_t u;
        memcpy(&u, &f, 4);
        put_le(&b->data, u, 4);
    } else {
        uint64_t u;
        memcpy(&u, &v, 8);
        put_le(&b->data, u, 8);
    }
}

static bool is_float_type(int t)
{
    t &= ~AN_CH_NULLABLE;
    return t == AN_CH_FLOAT32 || t == AN_CH_FLOAT64;
}

/* neg: v is the magnitude of a negative number. */
static void put_integer(an_ch_batch *b, bool neg, uint64_t mag)
{
    int t = next_field(b, true);
    if (!t)
        return;
    if (is_float_type(t)) {
        put_float(b, t, neg ? -(double)mag : (double)mag);
        return;
    }
    int64_t min;
    uint64_t max;
    size_t width;
    if (!int_range(t, &min, &max, &width)) {
        wrong_kind(b, t, "an integer");
        return;
    }
    if (neg ? mag > (uint64_t)(-(min + 1)) + 1 : mag > max) {
        mark_bad(b, "column %s (%s): %s%" PRIu64 " is out of range", b->names[b->col - 1],
                 type_name(t), neg ? "-" : "", mag);
        return;
    }
    if (b->format == AN_CH_FORMAT_TSV) {
        if (neg)
            an_buf_addc(&b->data, '-');
        an_buf_add_u64(&b->data, mag, 1);
    } else {
        put_le(&b->data, neg ? (uint64_t)0 - mag : mag, width);
    }
}

void an_ch_batch_add_int(an_ch_batch *b, int64_t v)
{
    if (v < 0)
        put_integer(b, true, (uint64_t)0 - (uint64_t)v);
    else
        put_integer(b, false, (uint64_t)v);
}

void an_ch_batch_add_uint(an_ch_batch *b, uint64_t v)
{
    put_integer(b, false, v);
}

void an_ch_batch_add_float(an_ch_batch *b, double v)
{
    int t = next_field(b, true);
    if (!t)
        return;
    if (!is_float_type(t)) {
        wrong_kind(b, t, "a float");
        return;
    }
    put_float(b, t, v);
}

void an_ch_batch_add_datetime(an_ch_batch *b, int64_t unix_seconds)
{
    int t = next_field(b, true);
    if (!t)
        return;
    if ((t & ~AN_CH_NULLABLE) != AN_CH_DATETIME) {
        wrong_kind(b, t, "a DateTime");
        return;
    }
    if (unix_seconds < 0 || unix_seconds > (int64_t)UINT32_MAX) {
        mark_bad(b, "column %s: time %" PRId64 " is outside DateTime's range", b->names[b->col - 1],
                 unix_seconds);
        return;
    }
    if (b->format == AN_CH_FORMAT_TSV)
        /* Exactly 10 digits is read as a unix time whatever the server's
         * time zone, where "YYYY-MM-DD hh:mm:ss" would be read in it. */
        an_buf_add_u64(&b->data, (uint64_t)unix_seconds, 10);
    else
        put_le(&b->data, (uint64_t)unix_seconds, 4);
}

void an_ch_batch_add_date(an_ch_batch *b, int64_t unix_seconds)
{
    int t = next_field(b, true);
    if (!t)
        return;
    if ((t & ~AN_CH_NULLABLE) != AN_CH_DATE) {
        wrong_kind(b, t, "a Date");
        return;
    }
    int64_t days = unix_seconds >= 0 ? unix_seconds / 86400 : -1;
    if (days < 0 || days > UINT16_MAX) {
        mark_bad(b, "column %s: time %" PRId64 " is outside Date's range", b->names[b->col - 1],
                 unix_seconds);
        return;
    }
    if (b->format == AN_CH_FORMAT_TSV) {
        int64_t y;
        int m, d;
        an_time_civil_from_days(days, &y, &m, &d);
        an_buf_addf(&b->data, "%04d-%02d-%02d", (int)y, m, d);
    } else {
        put_le(&b->data, (uint64_t)days, 2);
    }
}

void an_ch_batch_add_str_array(an_ch_batch *b, const char *const *items, const size_t *lens,
                               size_t n)
{
    int t = next_field(b, true);
    if (!t)
        return;
    if ((t & ~AN_CH_NULLABLE) != AN_CH_ARRAY_STRING) {
        wrong_kind(b, t, "an array of strings");
        return;
    }
    if (b->format == AN_CH_FORMAT_TSV) {
        an_buf_addc(&b->data, '[');
        for (size_t i = 0; i < n; i++) {
            if (i)
                an_buf_addc(&b->data, ',');
            an_ch_tsv_quote(&b->data, items[i], lens ? lens[i] : strlen(items[i]));
        }
        an_buf_addc(&b->data, ']');
    } else {
        put_varint(&b->data, n);
        for (size_t i = 0; i < n; i++) {
            size_t l = lens ? lens[i] : strlen(items[i]);
            put_varint(&b->data, l);
            an_buf_add(&b->data, items[i], l);
        }
    }
}

an_status an_ch_batch_end_row(an_ch_batch *b, an_error *err)
{
    if (!b->bad && b->col != b->ncols)
        mark_bad(b, "row has %zu fields, the batch has %zu columns", b->col, b->ncols);
    if (b->bad) {
        an_buf_setlen(&b->data, b->row_start);
        b->col = 0;
        b->bad = false;
        return an_error_set(err, AN_INVALID_ARGUMENT, "batch row dropped: %s", b->bad_msg);
    }
    if (b->format == AN_CH_FORMAT_TSV)
        an_buf_addc(&b->data, '\n');
    b->rows++;
    b->row_start = b->data.len;
    b->col = 0;
    return AN_OK;
}

size_t an_ch_batch_rows(const an_ch_batch *b)
{
    return b->rows;
}

size_t an_ch_batch_bytes(const an_ch_batch *b)
{
    return b->row_start;
}

const char *an_ch_batch_data(const an_ch_batch *b, size_t *len)
{
    *len = b->row_start;
    return b->data.data ? b->data.data : "";
}

const char *an_ch_batch_statement(const an_ch_batch *b)
{
    return b->statement;
}

void an_ch_batch_reset(an_ch_batch *b)
{
    an_buf_reset(&b->data);
    b->rows = 0;
    b->row_start = 0;
    b->col = 0;
    b->bad = false;
}

/* If the type text [t, t+n) is w...")", narrow it to the inside. */
static bool unwrap(const char **t, size_t *n, const char *w)
{
    size_t wl = strlen(w);
    if (*n <= wl || strncmp(*t, w, wl) != 0 || (*t)[*n - 1] != ')')
        return false;
    *t += wl;
    *n -= wl + 1;
    return true;
}

/* Does the table's type t (from DESCRIBE TABLE) have the binary layout of
 * the declared type? LowCardinality does not change RowBinary's layout. */
static bool same_layout(int declared, const char *t)
{
    size_t n = strlen(t);
    unwrap(&t, &n, "LowCardinality(");
    if ((declared & AN_CH_NULLABLE) && !unwrap(&t, &n, "Nullable("))
        return false;
    int base = declared & ~AN_CH_NULLABLE;
    if (base == AN_CH_ARRAY_STRING) {
        if (!unwrap(&t, &n, "Array("))
            return false;
        unwrap(&t, &n, "LowCardinality(");
        return n == 6 && strncmp(t, "String", 6) == 0;
    }
    if (base == AN_CH_DATETIME && n > 9 && strncmp(t, "DateTime(", 9) == 0)
        return true; /* DateTime('Europe/Paris') is a UInt32 as well */
    const char *want = type_name(base);
    return strlen(want) == n && strncmp(t, want, n) == 0;
}

typedef struct {
    an_ch_batch *b;
    bool *seen;
    char msg[200];
} schema_check;

static an_status check_column(void *ud, const an_ch_row *row, an_error *err)
{
    (void)err;
    schema_check *c = ud;
    if (row->ncols < 2 || !row->fields[0] || !row->fields[1])
        return AN_OK;
    for (size_t i = 0; i < c->b->ncols; i++) {
        if (strcmp(c->b->names[i], row->fields[0]) != 0)
            continue;
        c->seen[i] = true;
        if (!same_layout(c->b->types[i], row->fields[1]) && !c->msg[0])
            snprintf(c->msg, sizeof(c->msg), "column %s is %s in %s, the batch declares %s%s%s",
                     c->b->names[i], row->fields[1], c->b->table,
                     (c->b->types[i] & AN_CH_NULLABLE) ? "Nullable(" : "",
                     type_name(c->b->types[i]), (c->b->types[i] & AN_CH_NULLABLE) ? ")" : "");
    }
    return AN_OK;
}

/* RowBinary has no field separators: a declared type narrower or wider than
 * the column's would shift every following byte. Check once per batch (a
 * TSV batch needs no check). */
static an_status check_schema(an_ch *ch, an_ch_batch *b, an_error *err)
{
    if (b->format != AN_CH_FORMAT_ROWBINARY || b->checked)
        return AN_OK;
    char sql[400];
    snprintf(sql, sizeof(sql), "DESCRIBE TABLE %s", b->table);
    schema_check c = {b, calloc(b->ncols, sizeof(bool)), ""};
    if (!c.seen)
        abort();
    an_status st = an_ch_query(ch, sql, NULL, check_column, &c, err);
    if (st == AN_OK && c.msg[0])
        st = an_error_field(err, AN_INVALID_ARGUMENT, "columns", "%s", c.msg);
    for (size_t i = 0; st == AN_OK && i < b->ncols; i++)
        if (!c.seen[i])
            st = an_error_field(err, AN_INVALID_ARGUMENT, "columns", "%s has no column %s",
                                b->table, b->names[i]);
    free(c.seen);
    if (st == AN_OK)
        b->checked = true;
    return st;
}

an_status an_ch_insert(an_ch *ch, an_ch_batch *b, const an_ch_settings *settings, unsigned flags,
                       an_error *err)
{
    clear_last(ch);
    if (b->rows == 0)
        return AN_OK;
    an_status st = check_schema(ch, b, err);
    if (st != AN_OK)
        return st;
    return an_ch_insert_raw(ch, b->statement, b->data.data, b->row_start, settings, flags, err);
}

/* ======================================================================
 * Streaming insert
 * ====================================================================== */

/*
 * The request runs in a thread of the stream: curl_easy_perform pulls the
 * body through on_stream_read, which takes the rows the caller handed over
 * (two buffers swapped, no copy) and blocks while there are none. The body
 * goes out with chunked transfer encoding; ClickHouse parses it as it
 * arrives and answers when the last chunk is in.
 */
struct an_ch_stream {
    an_ch *ch;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    an_buf pending; /* handed over, not yet taken by curl */
    an_buf sending; /* taken by curl, sent up to off */
    size_t off;
    bool ended;             /* the caller has no more rows */
    bool aborting;          /* the caller gives up: break the request */
    int64_t answer_by;      /* monotonic ms: no answer by then breaks it; 0: none */
    const char *broken_off; /* why on_stream_progress broke it off; NULL: it did not */
    bool connected;         /* the request is about to go out on a new connection */
    bool done;              /* curl_easy_perform returned */
    an_status st;           /* when done */
    an_error err;
    uint64_t bytes; /* body bytes given to curl */
    request req;
    struct curl_slist *headers;
};

static int on_stream_prereq(void *ud, char *conn_primary_ip, char *conn_local_ip,
                            int conn_primary_port, int conn_local_port)
{
    (void)conn_primary_ip, (void)conn_local_ip, (void)conn_primary_port, (void)conn_local_port;
    an_ch_stream *s = ud;
    s->req.sent = true;
    pthread_mutex_lock(&s->mu);
    s->connected = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return CURL_PREREQFUNC_OK;
}

/* Breaks the request off when the caller gave up, also while curl waits
 * on a server that stopped reading, or when the answer is late (curl calls
 * this about once a second while it waits). */
static int on_stream_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                              curl_off_t ulnow)
{
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    an_ch_stream *s = ud;
    pthread_mutex_lock(&s->mu);
    if (!s->aborting && s->answer_by && an_time_mono_ms() >= s->answer_by)
        s->broken_off = "got no answer in time after its end";
    else if (!s->aborting && past_deadline(s->ch))
        s->broken_off = "broken off at the caller's deadline";
    s->aborting = s->aborting || s->broken_off;
    bool stop = s->aborting;
    pthread_mutex_unlock(&s->mu);
    return stop ? 1 : 0;
}

static size_t on_stream_read(char *dst, size_t size, size_t nitems, void *ud)
{
    an_ch_stream *s = ud;
    if (s->off == s->sending.len) {
        pthread_mutex_lock(&s->mu);
        while (!s->pending.len && !s->ended && !s->aborting)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->aborting) {
            pthread_mutex_unlock(&s->mu);
            return CURL_READFUNC_ABORT;
        }
        an_buf tmp = s->sending;
        s->sending = s->pending;
        s->pending = tmp;
        an_buf_reset(&s->pending);
        s->off = 0;
        pthread_cond_broadcast(&s->cv); /* room for the next hand-over */
        pthread_mutex_unlock(&s->mu);
        if (!s->sending.len)
            return 0; /* ended: the last chunk */
    }
    size_t n = size * nitems, left = s->sending.len - s->off;
    if (n > left)
        n = left;
    memcpy(dst, s->sending.data + s->off, n);
    s->off += n;
    s->bytes += n;
    return n;
}

/* Switch ch's handle to the streaming request of s, or back (s NULL). A new
 * connection each time: a kept-alive one that the server closed meanwhile
 * would fail after rows were taken, which cannot be sent again. The query
 * timeout counts from the end of the body (on_stream_progress), not from
 * the start: the body takes as long as its caller builds it. */
static void stream_options(an_ch *ch, an_ch_stream *s)
{
    CURL *c = ch->curl;
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                     !s && ch->query_timeout_ms > 0 ? (long)ch->query_timeout_ms : 0L);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, s ? on_stream_read : NULL);
    curl_easy_setopt(c, CURLOPT_READDATA, s);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, s ? s->headers : ch->headers);
    curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, s ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_FORBID_REUSE, s ? 1L : 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, s ? on_stream_progress : on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, s ? (void *)s : (void *)ch);
    if (s) {
        curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, on_stream_prereq);
        curl_easy_setopt(c, CURLOPT_PREREQDATA, s);
    } else {
        curl_easy_setopt(c, CURLOPT_PREREQFUNCTION, on_prereq);
        curl_easy_setopt(c, CURLOPT_PREREQDATA, ch);
    }
}

static void *stream_main(void *arg)
{
    an_ch_stream *s = arg;
    an_ch *ch = s->ch;
    CURL *c = ch->curl;
    curl_easy_setopt(c, CURLOPT_URL, ch->url.data);
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, NULL);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)-1);
    stream_options(ch, s);
    ch->req = &s->req;
    ch->errbuf[0] = '\0';
    CURLcode rc = curl_easy_perform(c);
    ch->req = NULL;
    count_connects(ch);
    ch->stats.requests++;
    stream_options(ch, NULL);

    request *r = &s->req;
    an_status st = AN_OK;
    an_error err = {0};
    if (!r->http)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->http);
    if (r->http && r->http != 200) {
        st = response_error(ch, r, &err);
    } else if (rc != CURLE_OK) {
        const char *why = ch->errbuf[0] ? ch->errbuf : curl_easy_strerror(rc);
        st = s->broken_off
                 ? an_error_set(&err, AN_UNAVAILABLE,
                                "clickhouse: streaming insert %s; rows sent may be stored",
                                s->broken_off)
             : s->aborting ? an_error_set(&err, AN_UNAVAILABLE, "clickhouse: insert abandoned")
             : r->sent     ? an_error_set(&err, AN_UNAVAILABLE,
                                          "clickhouse: streaming insert broken after %" PRIu64
                                          " bytes (%s); rows sent may be stored",
                                          s->bytes, why)
                           : an_error_set(&err, AN_UNAVAILABLE, "clickhouse %s: %s", ch->base, why);
    } else {
        st = check_quiet_body(ch, r, &err);
    }
    pthread_mutex_lock(&s->mu);
    s->st = st;
    s->err = err;
    s->done = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

static void stream_free(an_ch_stream *s)
{
    an_buf_free(&s->pending);
    an_buf_free(&s->sending);
    an_buf_free(&s->req.errbody);
    curl_slist_free_all(s->headers);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

an_status an_ch_stream_start(an_ch *ch, an_ch_batch *b, const an_ch_settings *settings,
                             an_ch_stream **out, an_error *err)
{
    *out = NULL;
    clear_last(ch);
    an_status st = check_schema(ch, b, err);
    if (st == AN_OK)
        st = insert_url(ch, b->statement, settings, err);
    if (st != AN_OK)
        return st;
    an_ch_stream *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->ch = ch;
    s->req.mode = BODY_DISCARD;
    pthread_mutex_init(&s->mu, NULL);
    an_time_cond_init_mono(&s->cv);
    for (struct curl_slist *h = ch->headers; h; h = h->next)
        s->headers = add_header(s->headers, "%s", h->data);
    s->headers = add_header(s->headers, "%s", "Transfer-Encoding: chunked");
    if (pthread_create(&s->thread, NULL, stream_main, s) != 0) {
        stream_free(s);
        return an_error_set(err, AN_INTERNAL, "cannot start the thread of a streaming insert");
    }
    pthread_mutex_lock(&s->mu);
    while (!s->connected && !s->done)
        pthread_cond_wait(&s->cv, &s->mu);
    bool failed = s->done;
    pthread_mutex_unlock(&s->mu);
    if (failed) { /* nothing was sent */
        pthread_join(s->thread, NULL);
        st = s->st != AN_OK ? s->st : AN_UNAVAILABLE;
        if (err)
            *err = s->err;
        stream_free(s);
        return st;
    }
    *out = s;
    return AN_OK;
}

an_status an_ch_stream_send(an_ch_stream *s, an_ch_batch *b, int timeout_ms, an_error *err)
{
    if (b->bad || b->col != 0)
        return an_error_set(err, AN_INTERNAL, "streaming insert: a row of %s is half built",
                            b->table);
    int64_t until = an_time_mono_ms() + timeout_ms;
    pthread_mutex_lock(&s->mu);
    while (s->pending.len && !s->done)
        if (an_time_cond_wait_until(&s->cv, &s->mu, until) == ETIMEDOUT)
            break;
    an_status st = AN_OK;
    if (s->done) {
        st = s->st != AN_OK ? s->st : AN_INTERNAL;
        if (err)
            *err = s->err;
    } else if (s->pending.len) {
        st = an_error_set(err, AN_RESOURCE_EXHAUSTED,
                          "clickhouse: streaming insert into %s takes no rows for %d ms", b->table,
                          timeout_ms);
    } else if (b->rows) {
        an_buf tmp = s->pending; /* empty, its storage goes back to the batch */
        s->pending = b->data;
        b->data = tmp;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (st == AN_OK)
        an_ch_batch_reset(b);
    return st;
}

an_status an_ch_stream_finish(an_ch_stream *s, int wait_ms, an_error *err)
{
    if (!s)
        return AN_OK;
    if (wait_ms < 0) /* the query timeout; none (< 0): wait as long as it takes */
        wait_ms = s->ch->query_timeout_ms;
    pthread_mutex_lock(&s->mu);
    if (wait_ms == 0)
        s->aborting = true;
    else if (wait_ms > 0)
        s->answer_by = an_time_mono_ms() + wait_ms;
    s->ended = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    an_status st = s->st;
    if (st != AN_OK && err)
        *err = s->err;
    stream_free(s);
    return st;
}
