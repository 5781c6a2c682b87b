/*
 * service_ops.c - the operations side of a service: its Prometheus registry
 * and the HTTP endpoints /healthz, /readyz and /metrics (http.h) on
 * ANALYTICS_HTTP_ADDR.
 *
 * Every service gets, without writing a line:
 *   analytics_service_info{service,version,instance}        gauge, 1
 *   analytics_requests_total{service,endpoint,code}         counter
 *   analytics_request_duration_seconds{service,endpoint}    histogram
 * and /readyz answers one line per dependency: NATS (connected, not
 * draining), ClickHouse and Redis when the service declares them
 * (an_service_def.deps), and every check added with an_service_add_ready_check.
 */
#include "common/service_int.h"

#include "common/ch.h"
#include "common/http.h"
#include "common/redis.h"
#include "common/prom.h"

#include <stdio.h>
#include <string.h>

an_prom_registry *an_service_metrics(const an_service *svc)
{
    return svc->prom;
}

int an_service_http_port(const an_service *svc)
{
    return svc->http ? an_http_port(svc->http) : 0;
}

/* Get every series of every endpoint now, so a request only does atomic
 * adds (no registry lookup on the hot path). */
static an_status resolve_series(an_service *svc, an_error *err)
{
    for (size_t i = 0; i < svc->neps; i++) {
        an_ep *ep = &svc->eps[i];
        const char *name = ep->def->name;
        for (int st = AN_OK; st <= AN_INTERNAL; st++) {
            an_status s =
                an_prom_counter_get(svc->prom, "analytics_requests_total",
                                    "Requests answered, by endpoint and outcome code.",
                                    AN_PROM_LABELS("service", svc->def->name, "endpoint", name,
                                                   "code", an_status_code((an_status)st)),
                                    &ep->requests_by_status[st], err);
            if (s != AN_OK)
                return s;
        }
        an_status s = an_prom_histogram_get(
            svc->prom, "analytics_request_duration_seconds",
            "Time from receiving a request to replying.", NULL, 0,
            AN_PROM_LABELS("service", svc->def->name, "endpoint", name), &ep->duration, err);
        if (s != AN_OK)
            return s;
    }
    return AN_OK;
}

void an_svc_ops_observe(an_ep *ep, an_status st, int64_t dur_ns)
{
    if (st >= AN_OK && st <= AN_INTERNAL && ep->requests_by_status[st])
        an_prom_counter_inc(ep->requests_by_status[st]);
    if (ep->duration)
        an_prom_histogram_observe(ep->duration, (double)dur_ns / 1e9);
}

/* /readyz shows one line per dependency: "nats" (connected, not draining)
 * and every check added with an_service_add_ready_check. */
static int nats_check(void *arg, char *reason, size_t reason_size)
{
    an_service *svc = arg;
    if (atomic_load(&svc->draining)) {
        snprintf(reason, reason_size, "draining");
        return 1;
    }
    if (natsConnection_Status(svc->nc) != NATS_CONN_STATUS_CONNECTED) {
        snprintf(reason, reason_size, "not connected");
        return 1;
    }
    return 0;
}

static int dep_check(void *arg, char *reason, size_t reason_size)
{
    const an_ops_check *c = arg;
    const an_ready_check *rc = &c->svc->checks[c->index];
    an_error err;
    an_error_clear(&err);
    if (rc->fn(rc->ud, &err) == AN_OK)
        return 0;
    snprintf(reason, reason_size, "%s", err.message);
    return 1;
}

/* ClickHouse is ready when /ping answers. One connection, used only by
 * readiness probes (serialised: an_ch is not thread-safe). */
static an_status ch_ready(void *ud, an_error *err)
{
    an_service *svc = ud;
    pthread_mutex_lock(&svc->ops_mu);
    an_status s = AN_OK;
    if (!svc->ready_ch) {
        an_ch_options o = {
            .url = svc->cfg.clickhouse_url,
            .user = svc->cfg.clickhouse_user,
            .password = svc->cfg.clickhouse_password,
            .connect_timeout_ms = 1000,
            .query_timeout_ms = 2000,
            .max_retries = -1,
        };
        s = an_ch_new(&o, &svc->ready_ch, err);
    }
    if (s == AN_OK)
        s = an_ch_ping(svc->ready_ch, err);
    pthread_mutex_unlock(&svc->ops_mu);
    return s;
}

/* Redis is ready when PING answers; the probe connection is re-made after
 * an error (an_redis_ensure). */
static an_status redis_ready(void *ud, an_error *err)
{
    an_service *svc = ud;
    pthread_mutex_lock(&svc->ops_mu);
    an_status s = an_redis_ensure(&svc->ready_redis, svc->cfg.redis_url, 1000, err);
    if (s == AN_OK)
        s = an_redis_ping(svc->ready_redis, err);
    pthread_mutex_unlock(&svc->ops_mu);
    return s;
}

an_status an_svc_ops_init(an_service *svc, an_error *err)
{
    pthread_mutex_init(&svc->ops_mu, NULL);
    svc->ops_mu_init = true;
    svc->prom = an_prom_registry_new();
    if (!svc->prom)
        return an_error_set(err, AN_INTERNAL, "out of memory");
    an_prom_gauge *info = NULL;
    an_status s = an_prom_gauge_get(svc->prom, "analytics_service_info",
                                    "The running service: name, version and instance id.",
                                    AN_PROM_LABELS("service", svc->def->name, "version",
                                                   svc->def->version, "instance", svc->id),
                                    &info, err);
    if (s != AN_OK)
        return s;
    an_prom_gauge_set(info, 1);
    s = resolve_series(svc, err);
    if (s != AN_OK)
        return s;
    if (svc->def->deps & AN_DEP_CLICKHOUSE)
        s = an_service_add_ready_check(svc, "clickhouse", ch_ready, svc);
    if (s == AN_OK && (svc->def->deps & AN_DEP_REDIS))
        s = an_service_add_ready_check(svc, "redis", redis_ready, svc);
    return s == AN_OK ? AN_OK : an_error_set(err, s, "too many readiness checks");
}

an_status an_svc_ops_start(an_service *svc, an_error *err)
{
    const char *addr = svc->cfg.http_addr;
    if (!addr || !*addr || strcmp(addr, "off") == 0) {
        an_info("HTTP endpoints off (ANALYTICS_HTTP_ADDR empty)");
        return AN_OK;
    }
    an_status s = an_http_server_new(addr, svc->prom, NULL, &svc->http, err);
    if (s == AN_OK)
        s = an_http_check_add(svc->http, "nats", nats_check, svc, err);
    /* The checks were all added in init (or before): no lock needed now. */
    for (size_t i = 0; s == AN_OK && i < svc->nchecks; i++) {
        svc->ops_checks[i].svc = svc;
        svc->ops_checks[i].index = i;
        s = an_http_check_add(svc->http, svc->checks[i].name, dep_check, &svc->ops_checks[i], err);
    }
    for (size_t i = 0; s == AN_OK && i < svc->nroutes; i++)
        s = an_http_route_add(svc->http, svc->routes[i].prefix, svc->routes[i].fn,
                              svc->routes[i].arg, err);
    if (s == AN_OK)
        s = an_http_start(svc->http, err);
    if (s != AN_OK) {
        an_http_server_free(svc->http);
        svc->http = NULL;
        return an_error_set(err, s, "ANALYTICS_HTTP_ADDR=%s: %s", addr, err ? err->message : "");
    }
    an_info("HTTP /healthz /readyz /metrics on %s (port %d)", addr, an_http_port(svc->http));
    return AN_OK;
}

an_status an_service_add_http_route(an_service *svc, const char *prefix, an_http_handler fn,
                                    void *arg, an_error *err)
{
    if (svc->http)
        return an_error_set(err, AN_FAILED_PRECONDITION,
                            "HTTP routes must be added in init, before the server starts");
    if (svc->nroutes >= AN_SERVICE_MAX_ROUTES)
        return an_error_set(err, AN_RESOURCE_EXHAUSTED, "too many HTTP routes (max %d)",
                            AN_SERVICE_MAX_ROUTES);
    svc->routes[svc->nroutes].prefix = prefix;
    svc->routes[svc->nroutes].fn = fn;
    svc->routes[svc->nroutes].arg = arg;
    svc->nroutes++;
    return AN_OK;
}

void an_svc_ops_stop(an_service *svc)
{
    if (svc->http) {
        an_http_stop(svc->http);
        an_http_server_free(svc->http);
        svc->http = NULL;
    }
}

void an_svc_ops_free(an_service *svc)
{
    an_svc_ops_stop(svc);
    an_prom_registry_free(svc->prom);
    svc->prom = NULL;
    an_ch_free(svc->ready_ch);
    svc->ready_ch = NULL;
    if (svc->ready_redis)
        redisFree(svc->ready_redis);
    svc->ready_redis = NULL;
    if (svc->ops_mu_init)
        pthread_mutex_destroy(&svc->ops_mu);
    svc->ops_mu_init = false;
}
