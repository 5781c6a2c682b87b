/*
 * dashboards - dashboards and widgets with access control, rendered from
 * metrics over NATS (docs/dashboards.md). Wiring only; see dash.h for the
 * files of each concern.
 */
#include "dashboards/dash.h"

#include <stddef.h>

static const an_config_var vars[] = {
    {"ANALYTICS_DASHBOARDS_WIDGET_TIMEOUT", AN_CFG_DURATION, "5s", 10, 120000, 0,
     offsetof(dash_ctx, widget_timeout_ms), "longest wait for one widget's data from metrics"},
    {"ANALYTICS_DASHBOARDS_VALIDATE_TIMEOUT", AN_CFG_DURATION, "3s", 10, 60000, 0,
     offsetof(dash_ctx, validate_timeout_ms), "longest wait for metrics when checking a widget"},
    {"ANALYTICS_DASHBOARDS_CACHE_TTL", AN_CFG_DURATION, "60s", 0, 86400000, 0,
     offsetof(dash_ctx, cache_ttl_ms), "how long a render result stays in Redis; 0: no cache"},
    {"ANALYTICS_DASHBOARDS_RECORD_CACHE_TTL", AN_CFG_DURATION, "5m", 0, 86400000, 0,
     offsetof(dash_ctx, record_ttl_ms), "how long a dashboard record stays in Redis; 0: off"},
    {"ANALYTICS_DASHBOARDS_TENANT_ADMIN_ROLE", AN_CFG_STRING, "tenant-admin", 0, 0, 0,
     offsetof(dash_ctx, tenant_admin_role), "the role that sees and changes every dashboard"},
    {"ANALYTICS_DASHBOARDS_METRICS_PREFIX", AN_CFG_STRING, "analytics.metrics", 0, 0, 0,
     offsetof(dash_ctx, metrics_prefix), "subject prefix of the metrics service (.get, .query)"},
    {0},
};

static an_status dash_init(an_service *svc, void *ctxp, an_error *err)
{
    dash_ctx *c = ctxp;
    c->svc = svc;
    c->cfg = an_service_get_config(svc);
    pthread_mutex_init(&c->mu, NULL);
    if (!c->cfg->clickhouse_url || !*c->cfg->clickhouse_url)
        return an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_CLICKHOUSE_URL",
                              "dashboards needs ClickHouse (ANALYTICS_CLICKHOUSE_URL)");
    an_prom_registry *reg = an_service_metrics(svc);
    an_status st = an_prom_counter_get(reg, "analytics_dashboards_render_cache_total",
                                       "Render cache lookups by result.",
                                       AN_PROM_LABELS("result", "hit"), &c->cache_hits, err);
    if (st == AN_OK)
        st = an_prom_counter_get(reg, "analytics_dashboards_render_cache_total",
                                 "Render cache lookups by result.",
                                 AN_PROM_LABELS("result", "miss"), &c->cache_misses, err);
    if (st == AN_OK)
        st = an_prom_counter_get(reg, "analytics_dashboards_widget_errors_total",
                                 "Widgets rendered with an error.", NULL, &c->widget_errors, err);
    return st;
}

static void dash_exit(an_service *svc, void *ctxp)
{
    (void)svc;
    dash_ctx *c = ctxp;
    dash_store_close(c);
    dash_cache_close(c);
    pthread_mutex_destroy(&c->mu);
}

static const an_service_def def = {
    .name = "dashboards",
    .version = "0.1.0",
    .description = "dashboards and widgets with access control, rendered from metrics",
    .config = vars,
    .ctx_size = sizeof(dash_ctx),
    .endpoints = dash_endpoints,
    .init = dash_init,
    .exit = dash_exit,
    .workers = 4,
    .deps = AN_DEP_CLICKHOUSE | AN_DEP_REDIS,
};

int main(int argc, char **argv)
{
    return an_service_main(&def, argc, argv);
}
