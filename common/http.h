/*
 * http.h - the small HTTP/1.1 server every service runs for operators:
 * /healthz, /readyz, /metrics, plus routes a service adds (the exports
 * service streams multi-GB files through it).
 *
 *   an_http_server *http;
 *   an_http_server_new(cfg.http_addr, registry, NULL, &http, &err);
 *   an_http_check_add(http, "nats", check_nats, nc, &err);
 *   an_http_route_add(http, "/downloads/", serve_download, ctx, &err);
 *   an_http_start(http, &err);           // binds, then serves from its own thread
 *   ...
 *   an_http_server_free(http);           // stops: closes every connection, joins
 *
 * Threads: the server runs a libuv loop in a thread of its own. Route
 * handlers and readiness checks run on the libuv thread pool (so they may
 * block briefly, e.g. ping a server or read a database), never on the loop
 * thread. The pool is libuv's process-wide one (UV_THREADPOOL_SIZE, 4 by
 * default). The loop thread blocks all signals, so SIGPIPE from a vanished
 * client turns into EPIPE and SIGTERM still reaches the service's thread.
 *
 * Built-in endpoints (exact paths; the query string is ignored):
 *   /healthz  200 "ok\n" while the process runs.
 *   /readyz   runs every registered check in parallel; 200 and
 *             {"status":"ready","checks":{"nats":"ok",...}} when all pass,
 *             else 503 and {"status":"not_ready","checks":{"redis":"<reason>",...}}.
 *             A check still running after readyz_timeout_ms counts as failed
 *             ("timed out"); a check whose previous run has not finished is
 *             not started twice (it fails with "previous check still running").
 *   /metrics  the registry rendered in Prometheus text format 0.0.4
 *             (404 when the server was made without a registry).
 *
 * Protocol: GET and HEAD only (405 with "Allow: GET, HEAD" otherwise);
 * HTTP/1.0 and 1.1; one request per connection ("Connection: close");
 * request line and headers at most AN_HTTP_MAX_HEADER bytes (431 beyond),
 * at most 64 headers; malformed requests get 400, other versions 505,
 * unknown paths 404. A client that does not finish its headers within
 * header_timeout_ms, or stops reading a response for idle_timeout_ms, is
 * disconnected.
 */
#ifndef AN_HTTP_H
#define AN_HTTP_H

#include "common/prom.h"
#include "common/status.h"

#include <stddef.h>

#define AN_HTTP_MAX_HEADER 8192

typedef struct an_http_server an_http_server;
typedef struct an_http_response an_http_response;

typedef struct an_http_options {
    int readyz_timeout_ms; /* answer /readyz within this; 0: 2000 */
    int header_timeout_ms; /* to receive the request head; 0: 10000 */
    int idle_timeout_ms;   /* without write progress while answering; 0: 60000 */
    int max_connections;   /* more are accepted and closed at once; 0: 256 */
} an_http_options;

typedef struct an_http_header {
    const char *name; /* as sent; compare case-insensitively */
    const char *value;
} an_http_header;

/* What a handler sees. Every string is valid until the handler returns. */
typedef struct an_http_request {
    const char *method; /* "GET" or "HEAD" */
    const char *path;   /* raw (not percent-decoded), without the query: "/downloads/abc" */
    const char *query;  /* raw text after '?', "" when none */
    const char *prefix; /* the route prefix that matched */
    const an_http_header *headers;
    size_t nheaders;
} an_http_request;

/* Runs on the thread pool. It must answer through exactly one of the
 * an_http_respond* functions (a handler that answers nothing yields 500).
 * For HEAD the server sends the headers of the answer without its body. */
typedef void (*an_http_handler)(const an_http_request *req, an_http_response *res, void *arg);

/* A readiness check, run on the thread pool. Return 0 when ready; else
 * write a short reason (NUL-terminated, at most reason_size bytes) and
 * return non-zero. It must return in bounded time: give clients a timeout. */
typedef int (*an_http_check_fn)(void *arg, char *reason, size_t reason_size);

/* Make a server for addr "host:port" ("127.0.0.1:9090", "0.0.0.0:0",
 * "[::1]:8080", ":9090" for all IPv4 interfaces; port 0 picks a free one).
 * metrics (may be NULL) is borrowed: it must outlive the server. opts may
 * be NULL. Nothing is bound until an_http_start. */
an_status an_http_server_new(const char *addr, an_prom_registry *metrics,
                             const an_http_options *opts, an_http_server **out, an_error *err);

/* Register a readiness check (name copied; at most 16). Before start only
 * (AN_FAILED_PRECONDITION after). */
an_status an_http_check_add(an_http_server *s, const char *name, an_http_check_fn fn, void *arg,
                            an_error *err);

/* Route every path starting with prefix ("/downloads/") to fn; the longest
 * matching prefix wins; the built-in paths cannot be overridden. At most
 * 16 routes; before start only. */
an_status an_http_route_add(an_http_server *s, const char *prefix, an_http_handler fn, void *arg,
                            an_error *err);

/* Bind, listen and start the server thread. Bind errors (address in use,
 * bad host) are returned here, with AN_UNAVAILABLE or AN_INVALID_ARGUMENT. */
an_status an_http_start(an_http_server *s, an_error *err);

/* The bound port after a successful start (useful with port 0), else 0. */
int an_http_port(const an_http_server *s);

/* Stop: close the listener and every connection (in-flight answers are cut
 * off), wait for running handlers and checks to return, join the thread.
 * Idempotent; call from any thread but the server's (not from a handler). */
void an_http_stop(an_http_server *s);

/* Stop if needed and free. s may be NULL. */
void an_http_server_free(an_http_server *s);

/* ---- for handlers ------------------------------------------------------- */

/* The value of a request header (case-insensitive name), or NULL. */
const char *an_http_request_header(const an_http_request *req, const char *name);

/* Append the percent-decoded value of query parameter key ('+' is a space)
 * to out. AN_NOT_FOUND when absent, AN_INVALID_ARGUMENT on a bad escape. */
an_status an_http_query_param(const an_http_request *req, const char *key, an_buf *out);

/* Answer with a copy of body[0..len). content_type NULL: text/plain. */
void an_http_respond(an_http_response *res, int status, const char *content_type, const void *body,
                     size_t len);

/* Answer status with a short text body (a newline is appended). */
void an_http_respond_text(an_http_response *res, int status, const char *text);

/* Answer 200 with the file at path, streamed in chunks (never read whole
 * into memory). Honours a single "Range: bytes=..." (206, or 416 when
 * unsatisfiable) unless If-Range is present; sends Accept-Ranges: bytes.
 * download_name (may be NULL) becomes Content-Disposition: attachment,
 * with characters outside [A-Za-z0-9._-] replaced by '_'. On error nothing
 * is answered: AN_NOT_FOUND if the file is missing, AN_PERMISSION_DENIED,
 * AN_INVALID_ARGUMENT if it is not a regular file; the handler then
 * answers itself (e.g. 404). The file is opened before the call returns, so
 * it may be unlinked right after. */
an_status an_http_respond_file(an_http_response *res, const char *path, const char *content_type,
                               const char *download_name, an_error *err);

/* Add a header to the answer (e.g. Cache-Control). Names must be tokens,
 * values free of CR/LF; others are ignored. Content-Length, Connection,
 * Content-Type and Transfer-Encoding are set by the server: ignored here. */
void an_http_response_header(an_http_response *res, const char *name, const char *value);

#endif
