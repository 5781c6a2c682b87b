/*
 * service.h - the NATS service framework every analytics binary is built on
 * (DESIGN.md 3: request/reply, errors, discovery, operability).
 *
 * A service is one table of endpoints and one definition:
 *
 *   static an_status handle_get(an_request *req, cJSON **data, an_error *err);
 *
 *   static const an_endpoint endpoints[] = {
 *       {"get", handle_get, 0, 0, "read one export job"},
 *       {"create", handle_create, 0, 30000, "start an export"},  // 30 s timeout
 *       {0},
 *   };
 *   static const an_service_def def = {
 *       .name = "exports", .version = "0.1.0", .description = "export jobs",
 *       .config = export_vars, .ctx_size = sizeof(export_ctx),
 *       .endpoints = endpoints, .init = exports_init, .exit = exports_exit,
 *       .events = true,
 *   };
 *   int main(int argc, char **argv) { return an_service_main(&def, argc, argv); }
 *
 * an_service_main() then does everything:
 *   - `--help` prints the shared variables (an_service_config) and the
 *     service's own table; `--version` prints "<name> <version>".
 *   - Config from ANALYTICS_*: a bad value stops the program with exit code
 *     2 and a log line naming the variable. Logging is set up (log.h).
 *   - NATS connection named "<name>-<id>", reconnecting forever; a missing
 *     server at start is retried for ANALYTICS_NATS_CONNECT_TIMEOUT.
 *   - def->events: the JetStream events stream is ensured (events.h).
 *   - def->init(svc, ctx) runs (ctx: the service's struct, def->ctx_size
 *     bytes, its config table already loaded into it).
 *   - Each endpoint is a queue subscription on `analytics.<name>.<verb>` in
 *     queue group `<name>`, so replicas share the load; `$SRV` discovery
 *     (NATS ADR-32) is answered on plain subscriptions by every instance.
 *   - Requests run on a pool of worker threads (ANALYTICS_WORKERS), so a slow
 *     request does not hold up the others.
 *   - On SIGTERM or SIGINT: drain. The endpoint subscriptions are removed
 *     (new requests go to the other replicas), requests already received
 *     are finished (bounded by ANALYTICS_DRAIN_TIMEOUT; past it the callers
 *     still waiting get `unavailable`), def->exit runs, NATS is flushed, and
 *     the function returns 0. It returns 1 when start-up fails. When
 *     handlers are still running at the end of the drain timeout, def->exit
 *     is not called (those handlers still use ctx) and the process ends at
 *     once with _exit(1).
 *
 * Per request, before the handler runs:
 *   - the correlation id is taken from the `Correlation-Id` (or
 *     `X-Correlation-Id`) header, or generated; it is echoed in the reply's
 *     `Correlation-Id` header and on every log line of the request;
 *   - the caller is authenticated from the headers (auth.h) unless the
 *     endpoint has AN_EP_PUBLIC: failure replies `unauthenticated` (401);
 *   - the body is parsed as JSON when not empty: malformed JSON replies
 *     `invalid_argument` (400).
 *
 * Replies: on AN_OK `{"data": <data>}` (data may be NULL: `{"data":null}`);
 * otherwise `{"error": {"code": "not_found", "message": "...",
 * "details": {"field": "..."}}}` (details is `{}` without a field) with the
 * headers `Nats-Service-Error-Code: 404` and `Nats-Service-Error: <message>`.
 * The message of an AN_INTERNAL error is logged, not sent: the caller gets
 * "internal error (correlation id <id>)".
 *
 * Request timeouts: a request not answered within its endpoint's timeout
 * (an_endpoint.timeout_ms, else ANALYTICS_REQUEST_TIMEOUT) gets an
 * `unavailable` (503) reply at the deadline; the handler is not interrupted
 * (C cannot do that safely) and its late result is dropped. A request
 * still queued at its deadline is answered the same way and never run.
 * When more than ANALYTICS_MAX_PENDING requests wait for a worker, new
 * ones are refused with `resource_exhausted` (429).
 *
 * Discovery: `$SRV.PING|INFO|STATS`, `$SRV.<verb>.<name>` and
 * `$SRV.<verb>.<name>.<id>` answer io.nats.micro.v1.{ping,info,stats}_response
 * documents. STATS counts every request that got an outcome: num_requests,
 * num_errors (every non-OK reply, including 401/400/timeouts), last_error
 * ("<http code>:<message>"), processing_time and average_processing_time
 * in nanoseconds (received to reply), and `started` (RFC 3339, UTC).
 *
 * Hooks for /metrics and /readyz (http.h, wired in an_service_main):
 * an_service_endpoint_stats() reads the counters and
 * an_service_add_ready_check() adds a dependency to /readyz.
 */
#ifndef AN_SERVICE_H
#define AN_SERVICE_H

#include "common/auth.h"
#include "common/buf.h"
#include "common/config.h"
#include "common/events.h"
#include "common/http.h"
#include "common/log.h"
#include "common/prom.h"
#include "common/status.h"

#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct an_service an_service;
typedef struct an_request an_request;

/* ------------------------------------------------------------ definitions */

/* A handler. On AN_OK it may set *data (the framework owns and frees it);
 * on failure it fills err (an_error_set) and returns its status. It runs
 * on a worker thread, possibly concurrently with other handlers. */
typedef an_status (*an_handler_fn)(an_request *req, cJSON **data, an_error *err);

enum {
    AN_EP_PUBLIC = 1 << 0, /* no authentication required; req->auth is filled
                              when valid credentials are sent, else anonymous */
};

typedef struct an_endpoint {
    const char *name;        /* the verb: subject analytics.<service>.<name>; [A-Za-z0-9_-] */
    an_handler_fn handler;   /* required */
    unsigned flags;          /* AN_EP_* */
    int64_t timeout_ms;      /* 0: ANALYTICS_REQUEST_TIMEOUT */
    const char *description; /* for $SRV.INFO metadata; may be NULL */
} an_endpoint;

typedef struct an_service_def {
    const char *name;             /* the service kind: [A-Za-z0-9_-], e.g. "metrics" */
    const char *version;          /* SemVer, e.g. "0.1.0" */
    const char *description;      /* one line, for --help and $SRV.INFO */
    const an_config_var *config;  /* the service's own ANALYTICS_* table into ctx; may be NULL */
    size_t ctx_size;              /* bytes of the service's context struct; may be 0 */
    const an_endpoint *endpoints; /* ends with {0} */
    /* Runs once connected, before any subscription. Fail to stop the start. */
    an_status (*init)(an_service *svc, void *ctx, an_error *err);
    /* Runs after the drain, when no handler is running any more. */
    void (*exit)(an_service *svc, void *ctx);
    int workers;   /* default worker threads; 0: 4. ANALYTICS_WORKERS overrides */
    bool events;   /* open the JetStream events publisher at start (an_service_events) */
    unsigned deps; /* AN_DEP_*: servers /readyz checks besides NATS */
} an_service_def;

/* Dependencies a service declares in an_service_def.deps: /readyz then pings
 * them (ClickHouse /ping as ANALYTICS_CLICKHOUSE_USER, Redis PING). */
enum {
    AN_DEP_CLICKHOUSE = 1 << 0,
    AN_DEP_REDIS = 1 << 1,
};

/* The variables every service shares, parsed before the service's own. */
typedef struct an_service_config {
    char *nats_url;             /* ANALYTICS_NATS_URL */
    char *clickhouse_url;       /* ANALYTICS_CLICKHOUSE_URL, http://host:port */
    char *clickhouse_user;      /* ANALYTICS_CLICKHOUSE_USER */
    char *clickhouse_password;  /* ANALYTICS_CLICKHOUSE_PASSWORD */
    char *redis_url;            /* ANALYTICS_REDIS_URL, redis://host:port/db */
    char *http_addr;            /* ANALYTICS_HTTP_ADDR, host:port of /healthz /readyz /metrics */
    char *log_level;            /* ANALYTICS_LOG_LEVEL */
    char *jwt_secret;           /* ANALYTICS_JWT_SECRET (HS256) */
    char *jwt_public_key_file;  /* ANALYTICS_JWT_PUBLIC_KEY_FILE (RS256, PEM) */
    int64_t jwt_leeway_ms;      /* ANALYTICS_JWT_LEEWAY */
    char *jwt_audience;         /* ANALYTICS_JWT_AUDIENCE */
    char *jwt_issuer;           /* ANALYTICS_JWT_ISSUER */
    bool auth_trusted_headers;  /* ANALYTICS_AUTH_TRUSTED_HEADERS (local dev only) */
    int64_t request_timeout_ms; /* ANALYTICS_REQUEST_TIMEOUT */
    int64_t drain_timeout_ms;   /* ANALYTICS_DRAIN_TIMEOUT */
    int64_t nats_connect_timeout_ms; /* ANALYTICS_NATS_CONNECT_TIMEOUT */
    long long workers;               /* ANALYTICS_WORKERS; 0: the service's default */
    long long max_pending;           /* ANALYTICS_MAX_PENDING */
} an_service_config;

/* The shared table (ends with {0}), offsets into an_service_config. */
extern const an_config_var an_service_config_vars[];

/* ---------------------------------------------------------------- running */

/* Run the service until SIGTERM/SIGINT; see the top of this file. Returns
 * the process exit code: 0 after a clean drain, 1 on a start-up failure,
 * 2 on bad usage or configuration (an incomplete drain ends the process
 * with _exit(1)). */
int an_service_main(const an_service_def *def, int argc, char **argv);

/* Accessors, valid for the life of the service (from init to exit). */
const char *an_service_name(const an_service *svc);
const char *an_service_id(const an_service *svc); /* unique per instance */
const an_service_config *an_service_get_config(const an_service *svc);
void *an_service_ctx(const an_service *svc);
natsConnection *an_service_conn(const an_service *svc);
an_events *an_service_events(const an_service *svc); /* NULL unless def->events */
bool an_service_draining(const an_service *svc);

/* ---------------------------------------------------------------- request */

/* What a handler gets. Everything is owned by the framework and valid until
 * the handler returns; copy what must outlive it. */
struct an_request {
    an_service *svc;
    void *ctx; /* the service's context, as an_service_ctx() */
    const an_endpoint *endpoint;
    const char *subject; /* analytics.<service>.<verb> */
    const cJSON *body;   /* parsed JSON body; NULL when the body is empty */
    const char *raw;     /* the body as received (not NUL-terminated) */
    size_t raw_len;
    const an_auth *auth;        /* never NULL; anonymous only on AN_EP_PUBLIC endpoints */
    const char *correlation_id; /* never NULL */
    int64_t deadline_ms;        /* CLOCK_MONOTONIC ms after which the caller has its answer */
    natsMsg *msg;               /* the request message (headers: an_request_header) */
};

/* The value of a request header (first value; name matched
 * case-insensitively), or NULL. */
const char *an_request_header(const an_request *req, const char *name);

/* Milliseconds left before the request's deadline (0 when passed). Bound
 * downstream work (ClickHouse queries, calls) with it. */
int64_t an_request_remaining_ms(const an_request *req);

/* Log a line about this request: the caller's tenant and the correlation id
 * are added to it (log.h). */
void an_request_log(const an_request *req, an_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ------------------------------------------------------ calling a service */

/* Send a request to another service and decode its envelope: AN_OK with
 * *data = the reply's "data" (caller frees with cJSON_Delete; may be a
 * JSON null), or the reply's error as status + err (message and field).
 * body may be NULL (empty request). No reply within timeout_ms, or nobody
 * listening, gives AN_UNAVAILABLE. authorization (the whole header value,
 * "Bearer ...") and correlation_id may be NULL. */
an_status an_service_call(natsConnection *nc, const char *subject, const cJSON *body,
                          const char *authorization, const char *correlation_id, int64_t timeout_ms,
                          cJSON **data, an_error *err);

/* The same on behalf of a request: forwards its Authorization header and
 * correlation id, and waits at most until the request's own deadline. */
an_status an_request_call(const an_request *req, const char *subject, const cJSON *body,
                          int64_t timeout_ms, cJSON **data, an_error *err);

/* ------------------------------------------------ hooks for /metrics, /readyz */

typedef struct an_endpoint_stats {
    const char *name;    /* valid for the life of the service */
    const char *subject; /* idem */
    uint64_t num_requests;
    uint64_t num_errors;
    int64_t processing_time_ns;
    int64_t average_processing_time_ns;
    char last_error[AN_ERROR_MSG_MAX + 16]; /* "" when none */
} an_endpoint_stats;

/* A consistent snapshot of endpoint i's counters. */
an_status an_service_endpoint_stats(an_service *svc, size_t i, an_endpoint_stats *out);

/* A readiness check: AN_OK when the dependency is usable, else an error
 * saying why. Called from the thread that asks for readiness. */
typedef an_status (*an_ready_fn)(void *ud, an_error *err);

#define AN_SERVICE_MAX_READY_CHECKS 16

/* Add a check (name is copied). AN_RESOURCE_EXHAUSTED past the maximum. */
an_status an_service_add_ready_check(an_service *svc, const char *name, an_ready_fn fn, void *ud);

/* ------------------------------------------------------ operations (HTTP) */

/* The service's Prometheus registry, rendered on /metrics. Valid from init
 * to exit; add the service's own metrics to it (prom.h). The framework
 * keeps analytics_requests_total{service,endpoint,code} and
 * analytics_request_duration_seconds{service,endpoint} in it. */
an_prom_registry *an_service_metrics(const an_service *svc);

/* Serve every path under prefix on the HTTP port with fn (http.h), e.g. the
 * signed download links of exports. Call from init only (the server starts
 * after init); prefix is borrowed and must outlive the service. */
an_status an_service_add_http_route(an_service *svc, const char *prefix, an_http_handler fn,
                                    void *arg, an_error *err);

/* The bound HTTP port (useful with ANALYTICS_HTTP_ADDR=127.0.0.1:0), 0 when off. */
int an_service_http_port(const an_service *svc);

#endif
