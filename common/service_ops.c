/*
 * service_ops.c - the operations side of a service: its Prometheus registry
 * and the HTTP endpoints /healthz, /readyz and /metrics (http.h) on
 * ANALYTICS_HTTP_ADDR.
 *
 * Every service gets, without writing a line:
 *   analytics_service_info{service,version,instance}        gauge, 1
 *   analytics_requests_total{service,endpoint,code}         counter
 *   analytics_request_duration_seconds{service,endpoint}    histogram
 * and /readyz runs an_service_ready() (NATS, draining, the checks added with
 * an_service_add_ready_check: ClickHouse and Redis when configured).
 */
#include "common/service_int.h"

#include "common/http.h"
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

void an_svc_ops_observe(an_service *svc, const char *endpoint, an_status st, int64_t dur_ns)
{
    if (!svc->prom)
        return;
    an_prom_counter *c = NULL;
    if (an_prom_counter_get(svc->prom, "analytics_requests_total",
                            "Requests answered, by endpoint and outcome code.",
                            AN_PROM_LABELS("service", svc->def->name, "endpoint", endpoint, "code",
                                           an_status_code(st)),
                            &c, NULL) == AN_OK)
        an_prom_counter_inc(c);
    an_prom_histogram *h = NULL;
    if (an_prom_histogram_get(svc->prom, "analytics_request_duration_seconds",
                              "Time from receiving a request to replying.", NULL, 0,
                              AN_PROM_LABELS("service", svc->def->name, "endpoint", endpoint), &h,
                              NULL) == AN_OK)
        an_prom_histogram_observe(h, (double)dur_ns / 1e9);
}

static int ready_check(void *arg, char *reason, size_t reason_size)
{
    an_service *svc = arg;
    an_buf report = AN_BUF_INIT;
    an_status s = an_service_ready(svc, &report);
    if (s != AN_OK)
        snprintf(reason, reason_size, "%s", an_buf_str(&report));
    an_buf_free(&report);
    return s == AN_OK ? 0 : 1;
}

an_status an_svc_ops_init(an_service *svc, an_error *err)
{
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
    return AN_OK;
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
        s = an_http_check_add(svc->http, "service", ready_check, svc, err);
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
}
