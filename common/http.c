#include "common/http.h"

#include "common/buf.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#define MAX_CHECKS  16
#define MAX_ROUTES  16
#define MAX_HEADERS 64
#define CHUNK_SIZE  (256 * 1024) /* bytes of a file in flight per connection */
#define LINGER_MS   2000         /* after answering, wait this long for the client's FIN */

typedef struct check {
    char *name;
    an_http_check_fn fn;
    void *arg;
    atomic_int busy; /* a run of this check is on the pool */
} check;

typedef struct route {
    char *prefix;
    size_t len;
    an_http_handler fn;
    void *arg;
} route;

struct an_http_response {
    int status; /* 0: not answered yet */
    char content_type[128];
    an_buf headers; /* extra header lines, each ending in CRLF */
    an_buf body;    /* a buffer answer */
    int fd;         /* a file answer: open fd, else -1 */
    int64_t size;   /* the file's size */
    char download_name[256];
};

typedef enum {
    C_READING, /* receiving the request head */
    C_WORKING, /* a handler or the readiness checks are running */
    C_WRITING, /* sending the answer */
    C_DRAINING /* answered: FIN sent, reading until the client's FIN */
} conn_state;

typedef struct conn conn;
typedef struct readyz_run readyz_run;

struct conn {
    an_http_server *srv;
    conn *prev, *next;
    uv_tcp_t tcp;
    uv_timer_t timer;
    int refs; /* open handles (tcp, timer) + work or fs requests in flight */
    bool closing;
    bool work_pending;
    conn_state state;
    char rbuf[AN_HTTP_MAX_HEADER + 1];
    size_t rlen;
    an_http_request req;
    an_http_header headers[MAX_HEADERS];
    const route *route;
    bool head_only;
    an_http_response res;
    an_buf head;
    uv_write_t wreq;
    uv_shutdown_t sreq;
    uv_work_t work;
    uv_fs_t fsreq;
    char *chunk;
    size_t chunk_len;  /* bytes of chunk being written */
    int64_t off, left; /* file position and bytes still to send */
};

typedef struct readyz_item {
    uv_work_t work;
    readyz_run *run;
    check *chk;
    int rc;
    bool done;
    char reason[256];
} readyz_item;

struct readyz_run {
    an_http_server *srv;
    readyz_run *prev, *next;
    conn *c; /* NULL once answered */
    uv_timer_t timer;
    int pending; /* items on the pool + the timer until its close callback */
    bool answered;
    size_t n;
    readyz_item items[];
};

struct an_http_server {
    char *host;
    int port;
    an_prom_registry *metrics;
    an_http_options opts;
    check checks[MAX_CHECKS];
    size_t nchecks;
    route routes[MAX_ROUTES];
    size_t nroutes;
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_async_t stop_async;
    pthread_t thread;
    bool started, stopped;
    atomic_int bound_port;
    conn *conns;
    int nconns;
    readyz_run *runs;
    char drain[4096]; /* discarded input while draining; loop thread only */
};

/* ---- small helpers ------------------------------------------------------ */

static const struct {
    int status;
    const char *text;
} reasons[] = {
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {304, "Not Modified"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {409, "Conflict"},
    {410, "Gone"},
    {416, "Range Not Satisfiable"},
    {422, "Unprocessable Content"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {503, "Service Unavailable"},
    {505, "HTTP Version Not Supported"},
};

static const char *reason_phrase(int status)
{
    for (size_t i = 0; i < sizeof(reasons) / sizeof(reasons[0]); i++)
        if (reasons[i].status == status)
            return reasons[i].text;
    return "Status";
}

static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

/* ---- response ----------------------------------------------------------- */

static void response_clear(an_http_response *res)
{
    if (res->fd >= 0)
        close(res->fd);
    res->fd = -1;
    res->size = 0;
    res->status = 0;
    res->content_type[0] = '\0';
    res->download_name[0] = '\0';
    an_buf_reset(&res->headers);
    an_buf_reset(&res->body);
}

void an_http_respond(an_http_response *res, int status, const char *content_type, const void *body,
                     size_t len)
{
    response_clear(res);
    res->status = status;
    snprintf(res->content_type, sizeof(res->content_type), "%s",
             content_type ? content_type : "text/plain; charset=utf-8");
    if (len)
        an_buf_add(&res->body, body, len);
}

void an_http_respond_text(an_http_response *res, int status, const char *text)
{
    response_clear(res);
    res->status = status;
    snprintf(res->content_type, sizeof(res->content_type), "text/plain; charset=utf-8");
    an_buf_adds(&res->body, text ? text : "");
    an_buf_addc(&res->body, '\n');
}

an_status an_http_respond_file(an_http_response *res, const char *path, const char *content_type,
                               const char *download_name, an_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        return an_error_set(err,
                            e == ENOENT || e == ENOTDIR ? AN_NOT_FOUND
                            : e == EACCES               ? AN_PERMISSION_DENIED
                                                        : AN_INTERNAL,
                            "open %s: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return an_error_set(err, AN_INVALID_ARGUMENT, "%s is not a regular file", path);
    }
    response_clear(res);
    res->status = 200;
    res->fd = fd;
    res->size = st.st_size;
    snprintf(res->content_type, sizeof(res->content_type), "%s",
             content_type ? content_type : "application/octet-stream");
    if (download_name) {
        size_t i = 0;
        for (; i < sizeof(res->download_name) - 1 && download_name[i]; i++) {
            char ch = download_name[i];
            bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-';
            res->download_name[i] = ok ? ch : '_';
        }
        res->download_name[i] = '\0';
    }
    return AN_OK;
}

void an_http_response_header(an_http_response *res, const char *name, const char *value)
{
    static const char *managed[] = {"content-length", "connection", "content-type",
                                    "transfer-encoding"};
    if (!name || !*name || !value)
        return;
    for (const char *p = name; *p; p++)
        if (!is_tchar((unsigned char)*p))
            return;
    for (const char *p = value; *p; p++)
        if (*p == '\r' || *p == '\n')
            return;
    for (size_t i = 0; i < sizeof(managed) / sizeof(managed[0]); i++)
        if (strcasecmp(name, managed[i]) == 0)
            return;
    an_buf_addf(&res->headers, "%s: %s\r\n", name, value);
}

/* ---- request helpers ---------------------------------------------------- */

const char *an_http_request_header(const an_http_request *req, const char *name)
{
    for (size_t i = 0; i < req->nheaders; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

static an_status url_decode(const char *s, size_t len, an_buf *out)
{
    return an_buf_add_uri_decoded(out, s, len, true) ? AN_OK : AN_INVALID_ARGUMENT;
}

an_status an_http_query_param(const an_http_request *req, const char *key, an_buf *out)
{
    const char *q = req->query ? req->query : "";
    an_buf k = AN_BUF_INIT;
    an_status st = AN_NOT_FOUND;
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        const char *eq = memchr(q, '=', len);
        size_t klen = eq ? (size_t)(eq - q) : len;
        an_buf_reset(&k);
        if (url_decode(q, klen, &k) == AN_OK && strcmp(an_buf_str(&k), key) == 0) {
            size_t keep = out->len;
            st = eq ? url_decode(eq + 1, len - klen - 1, out) : AN_OK;
            if (st != AN_OK)
                an_buf_setlen(out, keep);
            break;
        }
        q += len;
        if (*q == '&')
            q++;
    }
    an_buf_free(&k);
    return st;
}

/* ---- connections -------------------------------------------------------- */

static void maybe_free_conn(conn *c)
{
    if (c->refs > 0)
        return;
    response_clear(&c->res);
    an_buf_free(&c->res.headers);
    an_buf_free(&c->res.body);
    an_buf_free(&c->head);
    free(c->chunk);
    free(c);
}

static void on_conn_handle_closed(uv_handle_t *h)
{
    conn *c = h->data;
    c->refs--;
    maybe_free_conn(c);
}

static void close_conn(conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    an_http_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    /* Pending writes and the shutdown get UV_ECANCELED before the close
     * callbacks run, so the conn outlives them. */
    uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_timer(uv_timer_t *t)
{
    close_conn(t->data); /* header timeout, idle answer, or linger over */
}

static void arm_timer(conn *c, int ms)
{
    uv_timer_start(&c->timer, on_timer, (uint64_t)ms, 0);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    conn *c = h->data;
    (void)suggested;
    if (c->state == C_READING) {
        buf->base = c->rbuf + c->rlen;
        buf->len = AN_HTTP_MAX_HEADER - c->rlen;
    } else {
        buf->base = c->srv->drain;
        buf->len = sizeof(c->srv->drain);
    }
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    conn *c = req->data;
    if (status < 0)
        close_conn(c);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);

/* The answer is out: send FIN, then read until the client's FIN (or the
 * linger timer) so unread input cannot make close() send a RST that would
 * destroy the answer in flight. */
static void finish(conn *c)
{
    c->state = C_DRAINING;
    if (c->res.fd >= 0) {
        close(c->res.fd);
        c->res.fd = -1;
    }
    arm_timer(c, LINGER_MS);
    c->sreq.data = c;
    if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        close_conn(c);
}

static void stream_next(conn *c);

static void on_chunk_written(uv_write_t *w, int status)
{
    conn *c = w->data;
    if (status < 0) {
        close_conn(c);
        return;
    }
    c->off += (int64_t)c->chunk_len;
    c->left -= (int64_t)c->chunk_len;
    arm_timer(c, c->srv->opts.idle_timeout_ms);
    if (c->left > 0)
        stream_next(c);
    else
        finish(c);
}

static void on_file_read(uv_fs_t *req)
{
    conn *c = req->data;
    ssize_t n = req->result;
    uv_fs_req_cleanup(req);
    c->refs--;
    if (c->closing) {
        maybe_free_conn(c);
        return;
    }
    if (n <= 0) {
        /* the file shrank or failed under us: cut the answer short */
        an_warn("http: reading the file for %s: %s", c->req.path,
                n < 0 ? uv_strerror((int)n) : "unexpected end of file");
        close_conn(c);
        return;
    }
    c->chunk_len = (size_t)n;
    uv_buf_t b = uv_buf_init(c->chunk, (unsigned)n);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_chunk_written) != 0)
        close_conn(c);
}

static void stream_next(conn *c)
{
    size_t n = c->left < CHUNK_SIZE ? (size_t)c->left : CHUNK_SIZE;
    if (!c->chunk) {
        c->chunk = malloc(CHUNK_SIZE);
        if (!c->chunk) {
            close_conn(c);
            return;
        }
    }
    uv_buf_t b = uv_buf_init(c->chunk, (unsigned)n);
    c->fsreq.data = c;
    c->refs++;
    if (uv_fs_read(&c->srv->loop, &c->fsreq, c->res.fd, &b, 1, c->off, on_file_read) != 0) {
        c->refs--;
        close_conn(c);
    }
}

static void on_head_written(uv_write_t *w, int status)
{
    conn *c = w->data;
    if (status < 0) {
        close_conn(c);
        return;
    }
    if (c->res.fd >= 0 && !c->head_only && c->left > 0)
        stream_next(c);
    else
        finish(c);
}

/* A single byte range against a file of size bytes: 1 with [*a, *b]
 * satisfiable, -1 unsatisfiable (416), 0 to ignore the header (malformed,
 * several ranges or another unit: the whole file is sent, as RFC 9110 allows). */
static int parse_range(const char *s, int64_t size, int64_t *a, int64_t *b)
{
    if (strncasecmp(s, "bytes=", 6) != 0 || strchr(s, ','))
        return 0;
    const char *p = s + 6;
    int64_t first = -1, last = -1;
    int digits = 0;
    if (*p >= '0' && *p <= '9') {
        first = 0;
        for (; *p >= '0' && *p <= '9'; p++)
            if (++digits > 18)
                return 0;
            else
                first = first * 10 + (*p - '0');
    }
    if (*p++ != '-')
        return 0;
    digits = 0;
    if (*p >= '0' && *p <= '9') {
        last = 0;
        for (; *p >= '0' && *p <= '9'; p++)
            if (++digits > 18)
                return 0;
            else
                last = last * 10 + (*p - '0');
    }
    if (*p != '\0')
        return 0;
    if (first < 0) { /* suffix: the last N bytes */
        if (last < 0)
            return 0;
        if (last == 0 || size == 0)
            return -1;
        *a = last >= size ? 0 : size - last;
        *b = size - 1;
        return 1;
    }
    if (last >= 0 && last < first)
        return 0;
    if (first >= size)
        return -1;
    *a = first;
    *b = last < 0 || last >= size ? size - 1 : last;
    return 1;
}

static void send_response(conn *c)
{
    an_http_response *res = &c->res;
    if (res->status == 0)
        an_http_respond_text(res, 500, "handler did not answer");
    int status = res->status;
    int64_t len = (int64_t)res->body.len;
    bool file = res->fd >= 0;
    an_buf *h = &c->head;
    an_buf_reset(h);
    if (file) {
        int64_t a = 0, b = res->size - 1;
        const char *range = an_http_request_header(&c->req, "Range");
        int r = range && !an_http_request_header(&c->req, "If-Range")
                    ? parse_range(range, res->size, &a, &b)
                    : 0;
        if (r < 0) {
            char cr[64];
            snprintf(cr, sizeof(cr), "bytes */%lld", (long long)res->size);
            an_http_respond_text(res, 416, "range not satisfiable");
            an_http_response_header(res, "Content-Range", cr);
            status = 416;
            len = (int64_t)res->body.len;
            file = false;
        } else {
            if (r > 0) {
                status = 206;
                an_buf_addf(h, "Content-Range: bytes %lld-%lld/%lld\r\n", (long long)a,
                            (long long)b, (long long)res->size);
            }
            c->off = a;
            c->left = res->size > 0 ? b - a + 1 : 0;
            len = c->left;
            an_buf_adds(h, "Accept-Ranges: bytes\r\n");
            if (res->download_name[0])
                an_buf_addf(h, "Content-Disposition: attachment; filename=\"%s\"\r\n",
                            res->download_name);
        }
    }
    /* status line first: build the rest, then prepend */
    an_buf full = AN_BUF_INIT;
    an_buf_addf(&full, "HTTP/1.1 %d %s\r\n", status, reason_phrase(status));
    if (res->content_type[0])
        an_buf_addf(&full, "Content-Type: %s\r\n", res->content_type);
    an_buf_addf(&full, "Content-Length: %lld\r\n", (long long)len);
    an_buf_add(&full, h->data ? h->data : "", h->len);
    an_buf_add(&full, res->headers.data ? res->headers.data : "", res->headers.len);
    an_buf_adds(&full, "Connection: close\r\n\r\n");
    an_buf_free(h);
    *h = full;

    uv_buf_t bufs[2];
    unsigned n = 0;
    bufs[n++] = uv_buf_init(h->data, (unsigned)h->len);
    if (!file && !c->head_only && res->body.len)
        bufs[n++] = uv_buf_init(res->body.data, (unsigned)res->body.len);
    c->state = C_WRITING;
    arm_timer(c, c->srv->opts.idle_timeout_ms);
    c->wreq.data = c;
    if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, n, on_head_written) != 0)
        close_conn(c);
}

static void answer(conn *c, int status, const char *text)
{
    an_http_respond_text(&c->res, status, text);
    send_response(c);
}

/* ---- request parsing ---------------------------------------------------- */

/* Length of the head (through its empty line) if complete, else 0. */
static size_t head_length(const conn *c)
{
    for (size_t i = 0; i < c->rlen; i++) {
        if (c->rbuf[i] != '\n')
            continue;
        if (i + 1 < c->rlen && c->rbuf[i + 1] == '\n')
            return i + 2;
        if (i + 2 < c->rlen && c->rbuf[i + 1] == '\r' && c->rbuf[i + 2] == '\n')
            return i + 3;
    }
    return 0;
}

/* Cut the line at p (ending in LF or CRLF) in place; returns the next line. */
static char *cut_line(char *p, char *end)
{
    char *lf = memchr(p, '\n', (size_t)(end - p));
    if (!lf)
        return NULL;
    char *e = lf;
    if (e > p && e[-1] == '\r')
        e--;
    *e = '\0';
    return lf + 1;
}

/* 0 when the head parsed, else the status to answer with. */
static int parse_head(conn *c, size_t head_len)
{
    char *p = c->rbuf, *end = c->rbuf + head_len;
    if (memchr(p, '\0', head_len))
        return 400;
    while (p < end && (*p == '\r' || *p == '\n')) /* tolerate leading empty lines */
        p++;
    char *line = p;
    char *next = cut_line(p, end);
    if (!next || !*line)
        return 400;

    char *sp1 = strchr(line, ' ');
    if (!sp1 || sp1 == line || sp1 - line > 16)
        return 400;
    *sp1 = '\0';
    for (char *m = line; *m; m++)
        if (!is_tchar((unsigned char)*m))
            return 400;
    char *target = sp1 + 1;
    char *sp2 = strchr(target, ' ');
    if (!sp2)
        return 400;
    *sp2 = '\0';
    const char *version = sp2 + 1;
    if (target[0] != '/')
        return 400;
    for (char *t = target; *t; t++)
        if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f)
            return 400;
    if (strncmp(version, "HTTP/", 5) != 0 || !(version[5] >= '0' && version[5] <= '9') ||
        version[6] != '.' || !(version[7] >= '0' && version[7] <= '9') || version[8] != '\0')
        return 400;
    if (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0)
        return 505;

    c->req.method = line;
    char *q = strchr(target, '?');
    if (q) {
        *q = '\0';
        c->req.query = q + 1;
    } else {
        c->req.query = "";
    }
    c->req.path = target;

    size_t n = 0;
    for (p = next; p < end;) {
        char *h = p;
        p = cut_line(p, end);
        if (!p)
            return 400;
        if (*h == '\0')
            break; /* the empty line */
        if (*h == ' ' || *h == '\t')
            return 400; /* obsolete line folding */
        char *colon = strchr(h, ':');
        if (!colon || colon == h)
            return 400;
        for (char *k = h; k < colon; k++)
            if (!is_tchar((unsigned char)*k))
                return 400;
        *colon = '\0';
        char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        char *ve = v + strlen(v);
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            *--ve = '\0';
        for (char *k = v; *k; k++)
            if (((unsigned char)*k < 0x20 && *k != '\t') || (unsigned char)*k == 0x7f)
                return 400;
        if (n == MAX_HEADERS)
            return 431;
        c->headers[n].name = h;
        c->headers[n].value = v;
        n++;
    }
    c->req.headers = c->headers;
    c->req.nheaders = n;
    return 0;
}

/* ---- readiness ---------------------------------------------------------- */

static void maybe_free_run(readyz_run *run)
{
    if (run->pending > 0)
        return;
    an_http_server *s = run->srv;
    if (run->prev)
        run->prev->next = run->next;
    else
        s->runs = run->next;
    if (run->next)
        run->next->prev = run->prev;
    free(run);
}

static void on_run_timer_closed(uv_handle_t *h)
{
    readyz_run *run = h->data;
    run->pending--;
    maybe_free_run(run);
}

static void answer_readyz(readyz_run *run)
{
    if (run->answered)
        return;
    run->answered = true;
    uv_close((uv_handle_t *)&run->timer, on_run_timer_closed);
    conn *c = run->c;
    run->c = NULL;

    bool ready = true;
    an_buf checks = AN_BUF_INIT;
    for (size_t i = 0; i < run->n; i++) {
        readyz_item *it = &run->items[i];
        const char *what;
        char timed_out[64];
        if (!it->done) {
            snprintf(timed_out, sizeof(timed_out), "timed out after %d ms",
                     run->srv->opts.readyz_timeout_ms);
            what = timed_out;
            ready = false;
        } else if (it->rc != 0) {
            what = it->reason[0] ? it->reason : "not ready";
            ready = false;
        } else {
            what = "ok";
        }
        an_buf_adds(&checks, i ? ",\"" : "\"");
        an_buf_add_json_escaped(&checks, it->chk->name, strlen(it->chk->name));
        an_buf_adds(&checks, "\":\"");
        an_buf_add_json_escaped(&checks, what, strlen(what));
        an_buf_addc(&checks, '"');
    }
    c->refs--;
    if (c->closing) {
        an_buf_free(&checks);
        maybe_free_conn(c);
        return;
    }
    an_buf body = AN_BUF_INIT;
    an_buf_addf(&body, "{\"status\":\"%s\",\"checks\":{%s}}\n", ready ? "ready" : "not_ready",
                an_buf_str(&checks));
    an_http_respond(&c->res, ready ? 200 : 503, "application/json", body.data, body.len);
    an_buf_free(&body);
    an_buf_free(&checks);
    send_response(c);
}

static void run_check(uv_work_t *w)
{
    readyz_item *it = w->data;
    it->reason[0] = '\0';
    it->rc = it->chk->fn(it->chk->arg, it->reason, sizeof(it->reason));
    it->reason[sizeof(it->reason) - 1] = '\0';
    atomic_store(&it->chk->busy, 0);
}

static void after_check(uv_work_t *w, int status)
{
    readyz_item *it = w->data;
    readyz_run *run = it->run;
    if (status == UV_ECANCELED) {
        atomic_store(&it->chk->busy, 0);
        it->rc = 1;
        snprintf(it->reason, sizeof(it->reason), "cancelled");
    }
    it->done = true;
    run->pending--;
    bool all = true;
    for (size_t i = 0; i < run->n; i++)
        all = all && run->items[i].done;
    if (all)
        answer_readyz(run);
    maybe_free_run(run);
}

static void on_readyz_timeout(uv_timer_t *t)
{
    answer_readyz(t->data);
}

static void start_readyz(conn *c)
{
    an_http_server *s = c->srv;
    readyz_run *run = calloc(1, sizeof(*run) + s->nchecks * sizeof(readyz_item));
    if (!run) {
        answer(c, 500, "out of memory");
        return;
    }
    run->srv = s;
    run->c = c;
    run->n = s->nchecks;
    run->next = s->runs;
    if (s->runs)
        s->runs->prev = run;
    s->runs = run;
    c->refs++;
    c->state = C_WORKING;
    uv_timer_stop(&c->timer);
    uv_timer_init(&s->loop, &run->timer);
    run->timer.data = run;
    run->pending = 1; /* the timer */
    bool all_done = true;
    for (size_t i = 0; i < run->n; i++) {
        readyz_item *it = &run->items[i];
        it->run = run;
        it->chk = &s->checks[i];
        it->work.data = it;
        if (atomic_exchange(&it->chk->busy, 1)) {
            it->done = true;
            it->rc = 1;
            snprintf(it->reason, sizeof(it->reason), "previous check still running");
            continue;
        }
        if (uv_queue_work(&s->loop, &it->work, run_check, after_check) != 0) {
            atomic_store(&it->chk->busy, 0);
            it->done = true;
            it->rc = 1;
            snprintf(it->reason, sizeof(it->reason), "could not schedule the check");
            continue;
        }
        run->pending++;
        all_done = false;
    }
    if (all_done)
        answer_readyz(run);
    else
        uv_timer_start(&run->timer, on_readyz_timeout, (uint64_t)s->opts.readyz_timeout_ms, 0);
}

/* ---- dispatch ----------------------------------------------------------- */

static void run_handler(uv_work_t *w)
{
    conn *c = w->data;
    c->route->fn(&c->req, &c->res, c->route->arg);
}

static void after_handler(uv_work_t *w, int status)
{
    conn *c = w->data;
    c->refs--;
    c->work_pending = false;
    if (c->closing) {
        maybe_free_conn(c);
        return;
    }
    if (status == UV_ECANCELED) {
        close_conn(c);
        return;
    }
    send_response(c);
}

static void dispatch(conn *c, size_t head_len)
{
    an_http_server *s = c->srv;
    int bad = parse_head(c, head_len);
    if (bad) {
        c->req.nheaders = 0;
        answer(c, bad,
               bad == 431   ? "request header fields too large"
               : bad == 505 ? "HTTP version not supported"
                            : "bad request");
        return;
    }
    bool get = strcmp(c->req.method, "GET") == 0;
    c->head_only = strcmp(c->req.method, "HEAD") == 0;
    if (!get && !c->head_only) {
        an_http_respond_text(&c->res, 405, "method not allowed");
        an_http_response_header(&c->res, "Allow", "GET, HEAD");
        send_response(c);
        return;
    }
    const char *path = c->req.path;
    if (strcmp(path, "/healthz") == 0) {
        answer(c, 200, "ok");
        return;
    }
    if (strcmp(path, "/readyz") == 0) {
        start_readyz(c);
        return;
    }
    if (strcmp(path, "/metrics") == 0) {
        if (!s->metrics) {
            answer(c, 404, "no metrics");
            return;
        }
        an_http_respond(&c->res, 200, AN_PROM_CONTENT_TYPE, NULL, 0);
        an_prom_render(s->metrics, &c->res.body);
        send_response(c);
        return;
    }
    const route *best = NULL;
    for (size_t i = 0; i < s->nroutes; i++)
        if (strncmp(path, s->routes[i].prefix, s->routes[i].len) == 0 &&
            (!best || s->routes[i].len > best->len))
            best = &s->routes[i];
    if (!best) {
        answer(c, 404, "not found");
        return;
    }
    c->route = best;
    c->req.prefix = best->prefix;
    c->state = C_WORKING;
    uv_timer_stop(&c->timer);
    c->work.data = c;
    c->refs++;
    c->work_pending = true;
    if (uv_queue_work(&s->loop, &c->work, run_handler, after_handler) != 0) {
        c->refs--;
        c->work_pending = false;
        answer(c, 503, "busy");
    }
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    conn *c = stream->data;
    (void)buf;
    if (c->closing)
        return;
    if (nread < 0) {
        close_conn(c); /* EOF or error: while reading the head, or done draining */
        return;
    }
    if (nread == 0 || c->state != C_READING)
        return; /* draining: input is discarded */
    c->rlen += (size_t)nread;
    size_t head_len = head_length(c);
    if (head_len == 0) {
        if (c->rlen >= AN_HTTP_MAX_HEADER) {
            uv_read_stop(stream);
            answer(c, 431, "request header fields too large");
        }
        return;
    }
    uv_read_stop(stream);
    dispatch(c, head_len);
}

static void on_connection(uv_stream_t *server, int status)
{
    an_http_server *s = server->data;
    if (status < 0) {
        an_warn("http: accept: %s", uv_strerror(status));
        return;
    }
    conn *c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->srv = s;
    c->res.fd = -1;
    c->state = C_READING;
    uv_tcp_init(&s->loop, &c->tcp);
    uv_timer_init(&s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->refs = 2;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 || s->nconns > s->opts.max_connections) {
        close_conn(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    arm_timer(c, s->opts.header_timeout_ms);
    if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
        close_conn(c);
}

/* ---- lifecycle ---------------------------------------------------------- */

static void on_stop(uv_async_t *a)
{
    an_http_server *s = a->data;
    uv_close((uv_handle_t *)&s->listener, NULL);
    uv_close((uv_handle_t *)&s->stop_async, NULL);
    for (conn *c = s->conns, *next; c; c = next) {
        next = c->next;
        if (c->work_pending)
            uv_cancel((uv_req_t *)&c->work); /* only if not started yet */
        close_conn(c);
    }
    for (readyz_run *run = s->runs, *next; run; run = next) {
        next = run->next;
        for (size_t i = 0; i < run->n; i++)
            if (!run->items[i].done)
                uv_cancel((uv_req_t *)&run->items[i].work);
        answer_readyz(run); /* its conn is closing: nothing is sent */
    }
    /* uv_run returns once the running handlers and checks have returned */
}

static void *loop_main(void *arg)
{
    an_http_server *s = arg;
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return NULL;
}

an_status an_http_server_new(const char *addr, an_prom_registry *metrics,
                             const an_http_options *opts, an_http_server **out, an_error *err)
{
    const char *colon = addr ? strrchr(addr, ':') : NULL;
    if (!colon)
        return an_error_set(err, AN_INVALID_ARGUMENT, "http: address '%s' is not host:port",
                            addr ? addr : "(null)");
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end || errno || port < 0 || port > 65535)
        return an_error_set(err, AN_INVALID_ARGUMENT, "http: bad port in address '%s'", addr);
    const char *h = addr;
    size_t hlen = (size_t)(colon - addr);
    if (hlen >= 2 && h[0] == '[' && h[hlen - 1] == ']') {
        h++;
        hlen -= 2;
    }
    an_http_server *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->host = hlen ? strndup(h, hlen) : xstrdup("0.0.0.0");
    if (!s->host)
        abort();
    s->port = (int)port;
    s->metrics = metrics;
    if (opts)
        s->opts = *opts;
    if (s->opts.readyz_timeout_ms <= 0)
        s->opts.readyz_timeout_ms = 2000;
    if (s->opts.header_timeout_ms <= 0)
        s->opts.header_timeout_ms = 10000;
    if (s->opts.idle_timeout_ms <= 0)
        s->opts.idle_timeout_ms = 60000;
    if (s->opts.max_connections <= 0)
        s->opts.max_connections = 256;
    *out = s;
    return AN_OK;
}

an_status an_http_check_add(an_http_server *s, const char *name, an_http_check_fn fn, void *arg,
                            an_error *err)
{
    if (s->started)
        return an_error_set(err, AN_FAILED_PRECONDITION, "http: add checks before start");
    if (!name || !*name || !fn)
        return an_error_set(err, AN_INVALID_ARGUMENT, "http: a check needs a name and a function");
    if (s->nchecks == MAX_CHECKS)
        return an_error_set(err, AN_RESOURCE_EXHAUSTED, "http: more than %d checks", MAX_CHECKS);
    for (size_t i = 0; i < s->nchecks; i++)
        if (strcmp(s->checks[i].name, name) == 0)
            return an_error_set(err, AN_ALREADY_EXISTS, "http: check %s exists", name);
    check *c = &s->checks[s->nchecks++];
    c->name = xstrdup(name);
    c->fn = fn;
    c->arg = arg;
    atomic_init(&c->busy, 0);
    return AN_OK;
}

an_status an_http_route_add(an_http_server *s, const char *prefix, an_http_handler fn, void *arg,
                            an_error *err)
{
    if (s->started)
        return an_error_set(err, AN_FAILED_PRECONDITION, "http: add routes before start");
    if (!prefix || prefix[0] != '/' || !fn)
        return an_error_set(err, AN_INVALID_ARGUMENT,
                            "http: a route needs a prefix starting with '/' and a handler");
    if (s->nroutes == MAX_ROUTES)
        return an_error_set(err, AN_RESOURCE_EXHAUSTED, "http: more than %d routes", MAX_ROUTES);
    for (size_t i = 0; i < s->nroutes; i++)
        if (strcmp(s->routes[i].prefix, prefix) == 0)
            return an_error_set(err, AN_ALREADY_EXISTS, "http: route %s exists", prefix);
    route *r = &s->routes[s->nroutes++];
    r->prefix = xstrdup(prefix);
    r->len = strlen(prefix);
    r->fn = fn;
    r->arg = arg;
    return AN_OK;
}

an_status an_http_start(an_http_server *s, an_error *err)
{
    if (s->started)
        return an_error_set(err, AN_FAILED_PRECONDITION, "http: already started");
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int gr = getaddrinfo(s->host, NULL, &hints, &ai);
    if (gr != 0 || !ai)
        return an_error_set(err, AN_INVALID_ARGUMENT, "http: cannot resolve '%s': %s", s->host,
                            gai_strerror(gr));
    struct sockaddr_storage sa;
    memset(&sa, 0, sizeof(sa));
    memcpy(&sa, ai->ai_addr, ai->ai_addrlen);
    freeaddrinfo(ai);
    if (sa.ss_family == AF_INET)
        ((struct sockaddr_in *)&sa)->sin_port = htons((uint16_t)s->port);
    else
        ((struct sockaddr_in6 *)&sa)->sin6_port = htons((uint16_t)s->port);

    int r = uv_loop_init(&s->loop);
    if (r != 0)
        return an_error_set(err, AN_INTERNAL, "http: uv_loop_init: %s", uv_strerror(r));
    uv_tcp_init(&s->loop, &s->listener);
    s->listener.data = s;
    const char *step = "bind";
    r = uv_tcp_bind(&s->listener, (const struct sockaddr *)&sa, 0);
    if (r == 0) {
        step = "listen";
        r = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
    }
    if (r == 0) {
        struct sockaddr_storage bound;
        int blen = sizeof(bound);
        step = "getsockname";
        r = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &blen);
        if (r == 0)
            atomic_store(&s->bound_port, ntohs(bound.ss_family == AF_INET
                                                   ? ((struct sockaddr_in *)&bound)->sin_port
                                                   : ((struct sockaddr_in6 *)&bound)->sin6_port));
    }
    if (r == 0) {
        step = "async";
        r = uv_async_init(&s->loop, &s->stop_async, on_stop);
        s->stop_async.data = s;
    }
    if (r != 0) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        goto fail_closed;
    }

    /* The server thread starts with every signal blocked (inherited mask). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int pr = pthread_create(&s->thread, NULL, loop_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (pr != 0) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        uv_close((uv_handle_t *)&s->stop_async, NULL);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
        atomic_store(&s->bound_port, 0);
        return an_error_set(err, AN_INTERNAL, "http: pthread_create: %s", strerror(pr));
    }
    s->started = true;
    an_info("http: listening on %s:%d", s->host, atomic_load(&s->bound_port));
    return AN_OK;

fail_closed:
    uv_run(&s->loop, UV_RUN_DEFAULT); /* let the close callbacks run */
    uv_loop_close(&s->loop);
    atomic_store(&s->bound_port, 0);
    return an_error_set(err, r == UV_EADDRINUSE || r == UV_EACCES ? AN_UNAVAILABLE : AN_INTERNAL,
                        "http: %s %s:%d: %s", step, s->host, s->port, uv_strerror(r));
}

int an_http_port(const an_http_server *s)
{
    return s ? atomic_load(&((an_http_server *)s)->bound_port) : 0;
}

void an_http_stop(an_http_server *s)
{
    if (!s || !s->started || s->stopped)
        return;
    uv_async_send(&s->stop_async);
    pthread_join(s->thread, NULL);
    int r = uv_loop_close(&s->loop);
    if (r != 0)
        an_warn("http: loop not fully closed at stop: %s", uv_strerror(r));
    s->stopped = true;
    atomic_store(&s->bound_port, 0);
}

void an_http_server_free(an_http_server *s)
{
    if (!s)
        return;
    an_http_stop(s);
    for (size_t i = 0; i < s->nchecks; i++)
        free(s->checks[i].name);
    for (size_t i = 0; i < s->nroutes; i++)
        free(s->routes[i].prefix);
    free(s->host);
    free(s);
}
