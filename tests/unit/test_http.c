/*
 * The HTTP server, started in-process on 127.0.0.1 port 0 and spoken to
 * through raw sockets (exact bytes, malformed requests) and the curl
 * program (an independent client, for the big download). It needs no
 * stack server, so it is a unit suite.
 */
#include "common/buf.h"
#include "common/http.h"
#include "common/log.h"
#include "common/prom.h"
#include "tests/harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- a raw client ------------------------------------------------------- */

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_msg(connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0, "connect: %s",
                  strerror(errno));
    return fd;
}

static void send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, data, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return; /* the server may have answered and closed already */
        data += w;
        len -= (size_t)w;
    }
}

/* Read until EOF (the server closes after each answer) or timeout_ms of
 * silence; returns what came, NUL-terminated. *eof says whether EOF came. */
static char *read_all(int fd, int timeout_ms, bool *eof)
{
    an_buf b = AN_BUF_INIT;
    char tmp[65536];
    *eof = false;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int r = poll(&p, 1, timeout_ms);
        if (r <= 0)
            break;
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n == 0) {
            *eof = true;
            break;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            *eof = true; /* reset counts as closed */
            break;
        }
        an_buf_add(&b, tmp, (size_t)n);
    }
    return an_buf_detach(&b, NULL);
}

static char *raw(int port, const char *req, size_t len)
{
    int fd = connect_to(port);
    send_all(fd, req, len);
    bool eof;
    char *out = read_all(fd, 5000, &eof);
    close(fd);
    ck_assert_msg(eof, "server did not close after answering: %s", out);
    return out;
}

static char *get(int port, const char *path)
{
    char req[1024];
    snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: t\r\nUser-Agent: test\r\n\r\n", path);
    return raw(port, req, strlen(req));
}

static int status_of(const char *resp)
{
    int st = 0;
    if (sscanf(resp, "HTTP/1.1 %d ", &st) != 1)
        return -1;
    return st;
}

/* Value of a response header (static buffer), or NULL. */
static const char *header_of(const char *resp, const char *name)
{
    static char val[512];
    const char *end = strstr(resp, "\r\n\r\n");
    size_t nlen = strlen(name);
    for (const char *p = strstr(resp, "\r\n"); p && p < end; p = strstr(p + 2, "\r\n")) {
        const char *h = p + 2;
        if (strncasecmp(h, name, nlen) == 0 && h[nlen] == ':') {
            const char *v = h + nlen + 1;
            while (*v == ' ')
                v++;
            const char *e = strstr(v, "\r\n");
            snprintf(val, sizeof(val), "%.*s", (int)(e - v), v);
            return val;
        }
    }
    return NULL;
}

static const char *body_of(const char *resp)
{
    const char *p = strstr(resp, "\r\n\r\n");
    return p ? p + 4 : NULL;
}

/* ---- fixtures ----------------------------------------------------------- */

static an_http_server *start(an_prom_registry *reg, const an_http_options *opts,
                             void (*setup)(an_http_server *))
{
    an_http_server *s;
    an_error err;
    an_log_init("test", AN_LOG_WARN); /* no "listening on" line per test */
    ck_assert_int_eq(an_http_server_new("127.0.0.1:0", reg, opts, &s, &err), AN_OK);
    if (setup)
        setup(s);
    ck_assert_msg(an_http_start(s, &err) == AN_OK, "start: %s", err.message);
    ck_assert_int_gt(an_http_port(s), 0);
    return s;
}

/* ---- healthz, 404, 405, HEAD -------------------------------------------- */

START_TEST(test_http_healthz_answers_ok)
{
    an_http_server *s = start(NULL, NULL, NULL);
    int port = an_http_port(s);
    char *r = get(port, "/healthz");
    ck_assert_int_eq(status_of(r), 200);
    ck_assert_str_eq(body_of(r), "ok\n");
    ck_assert_str_eq(header_of(r, "Content-Length"), "3");
    ck_assert_str_eq(header_of(r, "Connection"), "close");
    free(r);
    r = get(port, "/healthz?verbose=1");
    ck_assert_int_eq(status_of(r), 200);
    free(r);

    /* an independent client agrees */
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "curl -s -w ' %%{http_code}' http://127.0.0.1:%d/healthz", port);
    int code;
    char *out = th_run(cmd, &code);
    ck_assert_int_eq(code, 0);
    ck_assert_str_eq(out, "ok\n 200");
    free(out);
    an_http_server_free(s);
}
END_TEST

START_TEST(test_http_unknown_path_404_and_other_methods_405)
{
    an_http_server *s = start(NULL, NULL, NULL);
    int port = an_http_port(s);
    char *r = get(port, "/nope");
    ck_assert_int_eq(status_of(r), 404);
    free(r);
    r = get(port, "/healthzz");
    ck_assert_int_eq(status_of(r), 404);
    free(r);
    static const char *methods[] = {"POST", "PUT", "DELETE", "OPTIONS", "PATCH", "BREW"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req),
                 "%s /healthz HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello", methods[i]);
        r = raw(port, req, strlen(req));
        ck_assert_msg(status_of(r) == 405, "%s: %s", methods[i], r);
        ck_assert_str_eq(header_of(r, "Allow"), "GET, HEAD");
        free(r);
    }
    /* HEAD: the headers of the GET answer, without its body */
    const char *head = "HEAD /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    r = raw(port, head, strlen(head));
    ck_assert_int_eq(status_of(r), 200);
    ck_assert_str_eq(header_of(r, "Content-Length"), "3");
    ck_assert_str_eq(body_of(r), "");
    free(r);
    /* HTTP/1.0 is fine */
    const char *h10 = "GET /healthz HTTP/1.0\r\n\r\n";
    r = raw(port, h10, strlen(h10));
    ck_assert_int_eq(status_of(r), 200);
    free(r);
    an_http_server_free(s);
}
END_TEST

START_TEST(test_http_malformed_requests_get_400)
{
    an_http_server *s = start(NULL, NULL, NULL);
    int port = an_http_port(s);
    static const struct {
        const char *req;
        size_t len; /* 0: strlen */
        int status;
    } v[] = {
        {"GARBAGE\r\n\r\n", 0, 400},
        {"GET\r\n\r\n", 0, 400},
        {"GET /healthz\r\n\r\n", 0, 400},
        {"GET healthz HTTP/1.1\r\n\r\n", 0, 400},
        {"GET http://x/healthz HTTP/1.1\r\n\r\n", 0, 400},
        {"GET /healthz HTTP/1.1 extra\r\n\r\n", 0, 400},
        {"GET /healthz HTTP/1.1x\r\n\r\n", 0, 400},
        {"GET /healthz FTP/1.1\r\n\r\n", 0, 400},
        {"GET /health\x01z HTTP/1.1\r\n\r\n", 0, 400},
        {"GET /healthz HTTP/1.1\r\nNo colon here\r\n\r\n", 0, 400},
        {"GET /healthz HTTP/1.1\r\nBad Name: x\r\n\r\n", 0, 400},
        {"GET /healthz HTTP/1.1\r\n: empty name\r\n\r\n", 0, 400},
        {"GET /healthz HTTP/1.1\r\nX: a\r\n folded\r\n\r\n", 0, 400},
        {"GET /healthz HTTP/1.1\r\nX: a\x01b\r\n\r\n", 0, 400},
        {"GET /healthz HTTP/1.1\r\nX: a\0b\r\n\r\n", 33, 400},
        {"G\xc3\x89T /healthz HTTP/1.1\r\n\r\n", 0, 400},
        {"GET /healthz HTTP/2.0\r\n\r\n", 0, 505},
        {"GET /healthz HTTP/0.9\r\n\r\n", 0, 505},
        /* tolerated: bare LF line ends and a leading empty line */
        {"GET /healthz HTTP/1.1\nHost: t\n\n", 0, 200},
        {"\r\nGET /healthz HTTP/1.1\r\n\r\n", 0, 200},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        size_t len = v[i].len ? v[i].len : strlen(v[i].req);
        char *r = raw(port, v[i].req, len);
        ck_assert_msg(status_of(r) == v[i].status, "case %zu: want %d, got: %s", i, v[i].status, r);
        free(r);
    }
    /* the server is still fine afterwards */
    char *r = get(port, "/healthz");
    ck_assert_int_eq(status_of(r), 200);
    free(r);
    an_http_server_free(s);
}
END_TEST

START_TEST(test_http_oversized_head_gets_431)
{
    an_http_server *s = start(NULL, NULL, NULL);
    int port = an_http_port(s);
    an_buf req = AN_BUF_INIT;
    an_buf_adds(&req, "GET /healthz HTTP/1.1\r\nX-Big: ");
    for (int i = 0; i < 10000; i++)
        an_buf_addc(&req, 'a');
    an_buf_adds(&req, "\r\n\r\n");
    char *r = raw(port, req.data, req.len);
    ck_assert_int_eq(status_of(r), 431);
    free(r);
    an_buf_free(&req);
    /* too many headers */
    an_buf_adds(&req, "GET /healthz HTTP/1.1\r\n");
    for (int i = 0; i < 70; i++)
        an_buf_addf(&req, "X-H%d: v\r\n", i);
    an_buf_adds(&req, "\r\n");
    r = raw(port, req.data, req.len);
    ck_assert_int_eq(status_of(r), 431);
    free(r);
    an_buf_free(&req);
    an_http_server_free(s);
}
END_TEST

START_TEST(test_http_slow_client_is_disconnected_after_header_timeout)
{
    an_http_options o = {.header_timeout_ms = 300};
    an_http_server *s = start(NULL, &o, NULL);
    int fd = connect_to(an_http_port(s));
    send_all(fd, "GET /heal", 9);
    int64_t t0 = th_now_ms();
    bool eof;
    char *r = read_all(fd, 3000, &eof);
    int64_t waited = th_now_ms() - t0;
    ck_assert(eof);
    ck_assert_str_eq(r, "");
    ck_assert_int_ge(waited, 250);
    ck_assert_int_lt(waited, 2000);
    free(r);
    close(fd);
    an_http_server_free(s);
}
END_TEST

/* ---- readyz ------------------------------------------------------------- */

typedef struct {
    atomic_int ready;
    atomic_int sleep_ms;
    atomic_int calls;
} probe;

static int probe_check(void *arg, char *reason, size_t n)
{
    probe *p = arg;
    atomic_fetch_add(&p->calls, 1);
    int ms = atomic_load(&p->sleep_ms);
    if (ms)
        th_sleep_ms(ms);
    if (atomic_load(&p->ready))
        return 0;
    snprintf(reason, n, "dial tcp 127.0.0.1:9000: connection \"refused\"");
    return -1;
}

static int always_ok(void *arg, char *reason, size_t n)
{
    (void)arg;
    (void)reason;
    (void)n;
    return 0;
}

static probe the_probe;

static void add_checks(an_http_server *s)
{
    ck_assert_int_eq(an_http_check_add(s, "clickhouse", probe_check, &the_probe, NULL), AN_OK);
    ck_assert_int_eq(an_http_check_add(s, "nats", always_ok, NULL, NULL), AN_OK);
    ck_assert_int_eq(an_http_check_add(s, "nats", always_ok, NULL, NULL), AN_ALREADY_EXISTS);
}

/* GET /readyz; returns the status and parsed body (caller deletes). */
static int readyz(int port, cJSON **json)
{
    char *r = get(port, "/readyz");
    int st = status_of(r);
    ck_assert_str_eq(header_of(r, "Content-Type"), "application/json");
    *json = cJSON_Parse(body_of(r));
    ck_assert_msg(*json != NULL, "not JSON: %s", r);
    free(r);
    return st;
}

static const char *jstr(const cJSON *j, const char *a, const char *b)
{
    const cJSON *x = cJSON_GetObjectItemCaseSensitive(j, a);
    if (b)
        x = cJSON_GetObjectItemCaseSensitive(x, b);
    return cJSON_IsString(x) ? x->valuestring : NULL;
}

START_TEST(test_http_readyz_flips_between_200_and_503_with_reasons)
{
    atomic_store(&the_probe.ready, 1);
    an_http_server *s = start(NULL, NULL, add_checks);
    int port = an_http_port(s);
    cJSON *j;
    ck_assert_int_eq(readyz(port, &j), 200);
    ck_assert_str_eq(jstr(j, "status", NULL), "ready");
    ck_assert_str_eq(jstr(j, "checks", "clickhouse"), "ok");
    ck_assert_str_eq(jstr(j, "checks", "nats"), "ok");
    cJSON_Delete(j);

    atomic_store(&the_probe.ready, 0);
    ck_assert_int_eq(readyz(port, &j), 503);
    ck_assert_str_eq(jstr(j, "status", NULL), "not_ready");
    ck_assert_str_eq(jstr(j, "checks", "clickhouse"),
                     "dial tcp 127.0.0.1:9000: connection \"refused\"");
    ck_assert_str_eq(jstr(j, "checks", "nats"), "ok");
    cJSON_Delete(j);

    atomic_store(&the_probe.ready, 1);
    ck_assert_int_eq(readyz(port, &j), 200);
    cJSON_Delete(j);
    /* every probe ran the check (no caching) */
    ck_assert_int_eq(atomic_load(&the_probe.calls), 3);
    /* adding checks after start is refused */
    ck_assert_int_eq(an_http_check_add(s, "late", always_ok, NULL, NULL), AN_FAILED_PRECONDITION);
    an_http_server_free(s);
}
END_TEST

START_TEST(test_http_readyz_times_out_a_hanging_check)
{
    atomic_store(&the_probe.ready, 1);
    atomic_store(&the_probe.sleep_ms, 1500);
    an_http_options o = {.readyz_timeout_ms = 200};
    an_http_server *s = start(NULL, &o, add_checks);
    int port = an_http_port(s);
    int64_t t0 = th_now_ms();
    cJSON *j;
    ck_assert_int_eq(readyz(port, &j), 503);
    ck_assert_int_lt(th_now_ms() - t0, 1000);
    ck_assert_str_eq(jstr(j, "checks", "clickhouse"), "timed out after 200 ms");
    ck_assert_str_eq(jstr(j, "checks", "nats"), "ok");
    cJSON_Delete(j);
    /* the first run is still sleeping: it is not started a second time */
    ck_assert_int_eq(readyz(port, &j), 503);
    ck_assert_str_eq(jstr(j, "checks", "clickhouse"), "previous check still running");
    cJSON_Delete(j);
    ck_assert_int_eq(atomic_load(&the_probe.calls), 1);
    /* once it has returned, probes work again */
    atomic_store(&the_probe.sleep_ms, 0);
    th_sleep_ms(1600);
    ck_assert_int_eq(readyz(port, &j), 200);
    cJSON_Delete(j);
    an_http_server_free(s);
}
END_TEST

START_TEST(test_http_readyz_without_checks_is_ready)
{
    an_http_server *s = start(NULL, NULL, NULL);
    char *r = get(an_http_port(s), "/readyz");
    ck_assert_int_eq(status_of(r), 200);
    ck_assert_str_eq(body_of(r), "{\"status\":\"ready\",\"checks\":{}}\n");
    free(r);
    an_http_server_free(s);
}
END_TEST

/* ---- metrics ------------------------------------------------------------ */

START_TEST(test_http_metrics_renders_the_registry)
{
    an_prom_registry *reg = an_prom_registry_new();
    an_prom_counter *c;
    an_prom_histogram *h;
    ck_assert_int_eq(an_prom_counter_get(reg, "analytics_test_total", "Test counter.",
                                         AN_PROM_LABELS("kind", "x"), &c, NULL),
                     AN_OK);
    ck_assert_int_eq(
        an_prom_histogram_get(reg, "analytics_test_seconds", "Latency.", NULL, 0, NULL, &h, NULL),
        AN_OK);
    an_prom_counter_add(c, 3);
    an_prom_histogram_observe(h, 0.02);
    an_http_server *s = start(reg, NULL, NULL);
    char *r = get(an_http_port(s), "/metrics");
    ck_assert_int_eq(status_of(r), 200);
    ck_assert_str_eq(header_of(r, "Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
    const char *body = body_of(r);
    ck_assert_ptr_nonnull(strstr(body, "# HELP analytics_test_total Test counter.\n"));
    ck_assert_ptr_nonnull(strstr(body, "# TYPE analytics_test_total counter\n"));
    ck_assert_ptr_nonnull(strstr(body, "\nanalytics_test_total{kind=\"x\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(body, "\nanalytics_test_seconds_bucket{le=\"0.025\"} 1\n"));
    ck_assert_ptr_nonnull(strstr(body, "\nanalytics_test_seconds_count 1\n"));
    ck_assert_int_eq(atoi(header_of(r, "Content-Length")), (int)strlen(body));
    free(r);
    /* live values: a later scrape sees later increments */
    an_prom_counter_inc(c);
    r = get(an_http_port(s), "/metrics");
    ck_assert_ptr_nonnull(strstr(r, "\nanalytics_test_total{kind=\"x\"} 4\n"));
    free(r);
    an_http_server_free(s);
    an_prom_registry_free(reg);

    /* without a registry there is no /metrics */
    s = start(NULL, NULL, NULL);
    r = get(an_http_port(s), "/metrics");
    ck_assert_int_eq(status_of(r), 404);
    free(r);
    an_http_server_free(s);
}
END_TEST

/* ---- routes ------------------------------------------------------------- */

static char file_path[64];

static void serve_file(const an_http_request *req, an_http_response *res, void *arg)
{
    (void)arg;
    an_error err;
    if (strcmp(req->path + strlen(req->prefix), "big.bin") != 0) {
        an_http_respond_text(res, 404, "no such file");
        return;
    }
    if (an_http_respond_file(res, file_path, "application/octet-stream", "export 2026/11.bin",
                             &err) != AN_OK)
        an_http_respond_text(res, 500, err.message);
}

static void echo(const an_http_request *req, an_http_response *res, void *arg)
{
    an_buf b = AN_BUF_INIT;
    an_buf sig = AN_BUF_INIT;
    an_status st = an_http_query_param(req, "sig", &sig);
    an_buf_addf(&b, "%s|%s|%s|%s|%s|%d|%s", (const char *)arg, req->method, req->path, req->prefix,
                req->query, (int)st, an_buf_str(&sig));
    const char *ua = an_http_request_header(req, "user-agent");
    an_buf_addf(&b, "|%s", ua ? ua : "-");
    an_http_respond(res, 200, "text/plain", b.data, b.len);
    an_http_response_header(res, "Cache-Control", "no-store");
    an_http_response_header(res, "X-Bad", "a\r\nInjected: yes");
    an_http_response_header(res, "Content-Length", "999");
    an_buf_free(&b);
    an_buf_free(&sig);
}

static void silent(const an_http_request *req, an_http_response *res, void *arg)
{
    (void)req;
    (void)res;
    (void)arg;
}

static void add_routes(an_http_server *s)
{
    ck_assert_int_eq(an_http_route_add(s, "/files/", serve_file, NULL, NULL), AN_OK);
    ck_assert_int_eq(an_http_route_add(s, "/api/", echo, "short", NULL), AN_OK);
    ck_assert_int_eq(an_http_route_add(s, "/api/v2/", echo, "long", NULL), AN_OK);
    ck_assert_int_eq(an_http_route_add(s, "/silent", silent, NULL, NULL), AN_OK);
    ck_assert_int_eq(an_http_route_add(s, "/api/", echo, NULL, NULL), AN_ALREADY_EXISTS);
    ck_assert_int_eq(an_http_route_add(s, "nope", echo, NULL, NULL), AN_INVALID_ARGUMENT);
}

START_TEST(test_http_routes_match_longest_prefix_and_see_the_request)
{
    an_http_server *s = start(NULL, NULL, add_routes);
    int port = an_http_port(s);
    char *r = get(port, "/api/items?sig=a%2Bb+c&x=1");
    ck_assert_int_eq(status_of(r), 200);
    ck_assert_str_eq(body_of(r), "short|GET|/api/items|/api/|sig=a%2Bb+c&x=1|0|a+b c|test");
    ck_assert_str_eq(header_of(r, "Cache-Control"), "no-store");
    ck_assert_ptr_null(header_of(r, "X-Bad"));
    ck_assert_ptr_null(header_of(r, "Injected"));
    ck_assert_int_eq(atoi(header_of(r, "Content-Length")), (int)strlen(body_of(r)));
    free(r);
    r = get(port, "/api/v2/items");
    ck_assert_str_eq(body_of(r), "long|GET|/api/v2/items|/api/v2/||4||test");
    free(r);
    r = get(port, "/api/x?sig=%zz");
    ck_assert_str_eq(body_of(r), "short|GET|/api/x|/api/|sig=%zz|1||test");
    free(r);
    r = get(port, "/silent");
    ck_assert_int_eq(status_of(r), 500);
    free(r);
    r = get(port, "/files/other");
    ck_assert_int_eq(status_of(r), 404);
    free(r);
    ck_assert_int_eq(an_http_route_add(s, "/late/", echo, NULL, NULL), AN_FAILED_PRECONDITION);
    an_http_server_free(s);
}
END_TEST

/* Write a file of n pseudo-random bytes (the same for a given n). */
static void make_file(size_t n)
{
    snprintf(file_path, sizeof(file_path), "/tmp/an-test-http-XXXXXX");
    int fd = mkstemp(file_path);
    ck_assert_int_ge(fd, 0);
    static unsigned char buf[1 << 20];
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (size_t done = 0; done < n;) {
        for (size_t i = 0; i < sizeof(buf); i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (unsigned char)x;
        }
        size_t k = n - done < sizeof(buf) ? n - done : sizeof(buf);
        ck_assert_int_eq(write(fd, buf, k), (ssize_t)k);
        done += k;
    }
    close(fd);
}

static long status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    ck_assert_ptr_nonnull(f);
    char line[256];
    long v = -1;
    size_t n = strlen(field);
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    fclose(f);
    return v;
}

static char *sha256_of(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "sha256sum '%s' | cut -c1-64", path);
    int code;
    char *out = th_run(cmd, &code);
    ck_assert_int_eq(code, 0);
    return out;
}

START_TEST(test_http_file_route_streams_50mb_without_holding_it_in_memory)
{
    const size_t size = 50u << 20;
    make_file(size);
    an_http_server *s = start(NULL, NULL, add_routes);
    int port = an_http_port(s);

    /* reset the peak-RSS counter, then download with curl */
    FILE *cr = fopen("/proc/self/clear_refs", "w");
    ck_assert_ptr_nonnull(cr);
    ck_assert_int_eq(fputs("5", cr) >= 0, 1);
    fclose(cr);
    long rss_before = status_kb("VmRSS");
    char out_path[] = "/tmp/an-test-http-dl-XXXXXX";
    int ofd = mkstemp(out_path);
    ck_assert_int_ge(ofd, 0);
    close(ofd);
    char cmd[512];
    snprintf(cmd, sizeof(cmd),
             "curl -s -D - -o '%s' -w 'code=%%{http_code} size=%%{size_download}' "
             "http://127.0.0.1:%d/files/big.bin",
             out_path, port);
    int code;
    char *res = th_run(cmd, &code);
    long peak = status_kb("VmHWM");
    /* hash, then remove both 50 MB files before any assertion can exit */
    char *want = sha256_of(file_path), *got = sha256_of(out_path);
    unlink(out_path);
    unlink(file_path);
    ck_assert_int_eq(code, 0);
    ck_assert_msg(strstr(res, "code=200 size=52428800") != NULL, "curl said: %s", res);
    ck_assert_ptr_nonnull(strstr(res, "Content-Length: 52428800\r\n"));
    ck_assert_ptr_nonnull(strstr(res, "Accept-Ranges: bytes\r\n"));
    ck_assert_ptr_nonnull(
        strstr(res, "Content-Disposition: attachment; filename=\"export_2026_11.bin\"\r\n"));
    free(res);
    ck_assert_str_eq(got, want);
    free(want);
    free(got);
    /* the server process never held the file: its peak grew by far less than 50 MB */
    ck_assert_msg(peak - rss_before < 16 * 1024, "RSS grew by %ld kB during the download",
                  peak - rss_before);
    an_http_server_free(s);
}
END_TEST

START_TEST(test_http_file_route_serves_ranges_and_head)
{
    make_file(1000);
    FILE *f = fopen(file_path, "rb");
    unsigned char content[1000];
    ck_assert_int_eq(fread(content, 1, sizeof(content), f), 1000);
    fclose(f);
    an_http_server *s = start(NULL, NULL, add_routes);
    int port = an_http_port(s);
    static const struct {
        const char *range;
        int status;
        int from, len;
        const char *content_range;
    } v[] = {
        {"bytes=100-199", 206, 100, 100, "bytes 100-199/1000"},
        {"bytes=990-", 206, 990, 10, "bytes 990-999/1000"},
        {"bytes=-10", 206, 990, 10, "bytes 990-999/1000"},
        {"bytes=-5000", 206, 0, 1000, "bytes 0-999/1000"},
        {"bytes=500-99999", 206, 500, 500, "bytes 500-999/1000"},
        {"bytes=0-0", 206, 0, 1, "bytes 0-0/1000"},
        {"bytes=1000-", 416, 0, 0, "bytes */1000"},
        {"bytes=-0", 416, 0, 0, "bytes */1000"},
        {"bytes=5-1", 200, 0, 1000, NULL},     /* invalid: ignored */
        {"bytes=0-1,5-6", 200, 0, 1000, NULL}, /* several: whole file */
        {"items=0-1", 200, 0, 1000, NULL},     /* other unit */
        {"bytes=abc", 200, 0, 1000, NULL},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char req[256];
        snprintf(req, sizeof(req), "GET /files/big.bin HTTP/1.1\r\nRange: %s\r\n\r\n", v[i].range);
        int fd = connect_to(port);
        send_all(fd, req, strlen(req));
        bool eof;
        char *r = read_all(fd, 5000, &eof);
        close(fd);
        ck_assert_msg(status_of(r) == v[i].status, "%s: %s", v[i].range, r);
        if (v[i].content_range)
            ck_assert_str_eq(header_of(r, "Content-Range"), v[i].content_range);
        else
            ck_assert_ptr_null(header_of(r, "Content-Range"));
        if (v[i].status != 416) {
            ck_assert_int_eq(atoi(header_of(r, "Content-Length")), v[i].len);
            const char *body = body_of(r);
            ck_assert_msg(memcmp(body, content + v[i].from, (size_t)v[i].len) == 0,
                          "%s: wrong bytes", v[i].range);
        }
        free(r);
    }
    /* If-Range: the whole file (we cannot validate it) */
    const char *ifr = "GET /files/big.bin HTTP/1.1\r\nRange: bytes=0-9\r\nIf-Range: x\r\n\r\n";
    char *r = raw(port, ifr, strlen(ifr));
    ck_assert_int_eq(status_of(r), 200);
    free(r);
    /* HEAD: headers of the whole file, no body */
    const char *head = "HEAD /files/big.bin HTTP/1.1\r\n\r\n";
    r = raw(port, head, strlen(head));
    ck_assert_int_eq(status_of(r), 200);
    ck_assert_str_eq(header_of(r, "Content-Length"), "1000");
    ck_assert_str_eq(body_of(r), "");
    free(r);
    /* curl's own range request agrees */
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "curl -s -r 10-19 http://127.0.0.1:%d/files/big.bin | od -An -tu1",
             port);
    char *out = th_run(cmd, NULL);
    an_buf want = AN_BUF_INIT;
    for (int i = 10; i < 20; i++)
        an_buf_addf(&want, " %d", content[i]);
    char *norm = malloc(strlen(out) + 1);
    size_t k = 0;
    for (char *p = out; *p; p++) /* collapse od's spacing */
        if (*p != '\n' && !(*p == ' ' && (k == 0 || norm[k - 1] == ' ')))
            norm[k++] = *p;
    norm[k] = '\0';
    an_buf norm_want = AN_BUF_INIT;
    for (int i = 10; i < 20; i++)
        an_buf_addf(&norm_want, "%s%d", i > 10 ? " " : "", content[i]);
    ck_assert_str_eq(norm, an_buf_str(&norm_want));
    free(norm);
    free(out);
    an_buf_free(&want);
    an_buf_free(&norm_want);
    unlink(file_path);
    an_http_server_free(s);
}
END_TEST

START_TEST(test_http_client_vanishing_mid_download_leaves_the_server_healthy)
{
    make_file(20u << 20);
    an_http_server *s = start(NULL, NULL, add_routes);
    int port = an_http_port(s);
    for (int round = 0; round < 3; round++) {
        int fd = connect_to(port);
        const char *req = "GET /files/big.bin HTTP/1.1\r\n\r\n";
        send_all(fd, req, strlen(req));
        char buf[65536];
        size_t got = 0;
        while (got < (1u << 20)) {
            ssize_t n = recv(fd, buf, sizeof(buf), 0);
            ck_assert_int_gt(n, 0);
            got += (size_t)n;
        }
        /* RST instead of FIN: the server's next write fails at once */
        struct linger lg = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
        close(fd);
    }
    th_sleep_ms(200);
    char *r = get(port, "/healthz"); /* still alive: no SIGPIPE, no stuck loop */
    ck_assert_int_eq(status_of(r), 200);
    free(r);
    unlink(file_path);
    an_http_server_free(s);
}
END_TEST

START_TEST(test_http_client_that_stops_reading_is_cut_off_after_idle_timeout)
{
    make_file(20u << 20);
    an_http_options o = {.idle_timeout_ms = 300};
    an_http_server *s = start(NULL, &o, add_routes);
    int fd = connect_to(an_http_port(s));
    int small = 64 * 1024; /* small kernel buffers, so the server's writes stall soon */
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
    const char *req = "GET /files/big.bin HTTP/1.1\r\n\r\n";
    send_all(fd, req, strlen(req));
    th_sleep_ms(1500); /* read nothing for far longer than the idle timeout */
    size_t total = 0;
    char buf[65536];
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 3000) <= 0)
            ck_abort_msg("the server neither sent nor closed (got %zu bytes)", total);
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n <= 0)
            break; /* closed (FIN or reset) */
        total += (size_t)n;
    }
    close(fd);
    ck_assert_msg(total < (20u << 20), "received all %zu bytes despite the timeout", total);
    unlink(file_path);
    an_http_server_free(s);
}
END_TEST

/* ---- lifecycle ---------------------------------------------------------- */

static void slow(const an_http_request *req, an_http_response *res, void *arg)
{
    (void)req;
    (void)arg;
    th_sleep_ms(300);
    an_http_respond_text(res, 200, "slow");
}

static void add_slow(an_http_server *s)
{
    ck_assert_int_eq(an_http_route_add(s, "/slow", slow, NULL, NULL), AN_OK);
}

START_TEST(test_http_stop_closes_open_connections_and_returns)
{
    an_http_server *s = start(NULL, NULL, add_slow);
    int port = an_http_port(s);
    int idle = connect_to(port);    /* sends nothing */
    int partial = connect_to(port); /* sends half a head */
    send_all(partial, "GET /hea", 8);
    int busy = connect_to(port); /* in a handler during stop */
    send_all(busy, "GET /slow HTTP/1.1\r\n\r\n", 22);
    th_sleep_ms(100);
    int64_t t0 = th_now_ms();
    an_http_stop(s);
    ck_assert_int_lt(th_now_ms() - t0, 2000);
    ck_assert_int_eq(an_http_port(s), 0);
    bool eof;
    char *r = read_all(idle, 2000, &eof);
    ck_assert(eof);
    free(r);
    r = read_all(partial, 2000, &eof);
    ck_assert(eof);
    free(r);
    r = read_all(busy, 2000, &eof);
    ck_assert(eof);
    free(r);
    close(idle);
    close(partial);
    close(busy);
    /* nobody listens any more */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_ne(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(fd);
    an_http_stop(s); /* idempotent */
    an_http_server_free(s);
    an_http_server_free(NULL);
}
END_TEST

START_TEST(test_http_bad_address_and_port_in_use_fail_at_start)
{
    an_http_server *s;
    an_error err;
    ck_assert_int_eq(an_http_server_new("nohostport", NULL, NULL, &s, &err), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_http_server_new("127.0.0.1:99999", NULL, NULL, &s, &err),
                     AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_http_server_new("127.0.0.1:-1", NULL, NULL, &s, &err), AN_INVALID_ARGUMENT);
    ck_assert_int_eq(an_http_server_new("127.0.0.1:", NULL, NULL, &s, &err), AN_INVALID_ARGUMENT);

    an_http_server *a = start(NULL, NULL, NULL);
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", an_http_port(a));
    ck_assert_int_eq(an_http_server_new(addr, NULL, NULL, &s, &err), AN_OK);
    ck_assert_int_eq(an_http_start(s, &err), AN_UNAVAILABLE);
    ck_assert_ptr_nonnull(strstr(err.message, addr));
    ck_assert_int_eq(an_http_port(s), 0);
    an_http_server_free(s);
    an_http_server_free(a);

    /* IPv6 loopback in brackets, when the machine has it */
    ck_assert_int_eq(an_http_server_new("[::1]:0", NULL, NULL, &s, &err), AN_OK);
    if (an_http_start(s, &err) == AN_OK) {
        char cmd[128];
        snprintf(cmd, sizeof(cmd), "curl -s -g http://[::1]:%d/healthz", an_http_port(s));
        char *out = th_run(cmd, NULL);
        ck_assert_str_eq(out, "ok\n");
        free(out);
    }
    an_http_server_free(s);
}
END_TEST

typedef struct {
    int port;
    int ok;
} hammer_arg;

static void *hammer(void *p)
{
    hammer_arg *h = p;
    for (int i = 0; i < 25; i++) {
        int fd = connect_to(h->port);
        const char *req =
            i % 2 ? "GET /healthz HTTP/1.1\r\n\r\n" : "GET /api/x?sig=1 HTTP/1.1\r\n\r\n";
        send_all(fd, req, strlen(req));
        bool eof;
        char *r = read_all(fd, 5000, &eof);
        close(fd);
        h->ok += eof && status_of(r) == 200;
        free(r);
    }
    return NULL;
}

START_TEST(test_http_serves_concurrent_clients)
{
    an_http_server *s = start(NULL, NULL, add_routes);
    pthread_t th[8];
    hammer_arg args[8];
    for (int i = 0; i < 8; i++) {
        args[i].port = an_http_port(s);
        args[i].ok = 0;
        ck_assert_int_eq(pthread_create(&th[i], NULL, hammer, &args[i]), 0);
    }
    int ok = 0;
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        ok += args[i].ok;
    }
    ck_assert_int_eq(ok, 200);
    an_http_server_free(s);
}
END_TEST

Suite *http_suite(void)
{
    Suite *s = suite_create("http");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_http_healthz_answers_ok);
    tcase_add_test(tc, test_http_unknown_path_404_and_other_methods_405);
    tcase_add_test(tc, test_http_malformed_requests_get_400);
    tcase_add_test(tc, test_http_oversized_head_gets_431);
    tcase_add_test(tc, test_http_slow_client_is_disconnected_after_header_timeout);
    tcase_add_test(tc, test_http_readyz_flips_between_200_and_503_with_reasons);
    tcase_add_test(tc, test_http_readyz_times_out_a_hanging_check);
    tcase_add_test(tc, test_http_readyz_without_checks_is_ready);
    tcase_add_test(tc, test_http_metrics_renders_the_registry);
    tcase_add_test(tc, test_http_routes_match_longest_prefix_and_see_the_request);
    tcase_add_test(tc, test_http_file_route_streams_50mb_without_holding_it_in_memory);
    tcase_add_test(tc, test_http_file_route_serves_ranges_and_head);
    tcase_add_test(tc, test_http_client_vanishing_mid_download_leaves_the_server_healthy);
    tcase_add_test(tc, test_http_client_that_stops_reading_is_cut_off_after_idle_timeout);
    tcase_add_test(tc, test_http_stop_closes_open_connections_and_returns);
    tcase_add_test(tc, test_http_bad_address_and_port_in_use_fail_at_start);
    tcase_add_test(tc, test_http_serves_concurrent_clients);
    suite_add_tcase(s, tc);
    return s;
}
