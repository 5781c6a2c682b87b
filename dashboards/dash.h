/*
 * dash.h - internals shared by the files of the dashboards service (not a
 * public API of libanalytics). One file per concern:
 *   api.c     the endpoint handlers (request parsing, replies)
 *   store.c   dashboards in ClickHouse (analytics.dashboards, versioned rows)
 *   access.c  who may see, change, and change the access of a dashboard
 *   render.c  widget data from metrics over NATS, in parallel, with timeouts
 *   shapes.c  metrics rows -> the data of each widget type
 *   cache.c   the render cache in Redis
 *   main.c    wiring (config, endpoints, init/exit)
 */
#ifndef AN_DASH_H
#define AN_DASH_H

#include "common/auth.h"
#include "common/service.h"
#include "common/status.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#define DASH_MAX_WIDGETS    50
#define DASH_MAX_NAME       200
#define DASH_MAX_DIMENSIONS 4
#define DASH_MAX_FILTERS    16
#define DASH_POOL_MAX       16

/* The service's context (config table of main.c fills the first fields). */
typedef struct dash_ctx {
    int64_t widget_timeout_ms;   /* ANALYTICS_DASHBOARDS_WIDGET_TIMEOUT */
    int64_t cache_ttl_ms;        /* ANALYTICS_DASHBOARDS_CACHE_TTL; 0: no cache */
    char *tenant_admin_role;     /* ANALYTICS_DASHBOARDS_TENANT_ADMIN_ROLE */
    char *metrics_prefix;        /* ANALYTICS_DASHBOARDS_METRICS_PREFIX, "analytics.metrics" */
    int64_t validate_timeout_ms; /* ANALYTICS_DASHBOARDS_VALIDATE_TIMEOUT */
    int64_t record_ttl_ms;       /* ANALYTICS_DASHBOARDS_RECORD_CACHE_TTL; 0: off */
    /* set by init */
    an_service *svc;
    const an_service_config *cfg;
    pthread_mutex_t mu; /* guards the pools */
    void *ch_pool[DASH_POOL_MAX];
    int n_ch;
    void *redis_pool[DASH_POOL_MAX];
    int n_redis;
    an_prom_counter *cache_hits;
    an_prom_counter *cache_misses;
    an_prom_counter *widget_errors;
} dash_ctx;

/* A dashboard as stored. Strings and JSON are owned by the struct. */
typedef struct dash {
    char *tenant;
    char *id;
    char *name;
    char *description;
    char *created_by;
    cJSON *widgets;     /* array */
    cJSON *acl;         /* {"allowedRoles":[...],"allowedUsers":[...]} */
    int64_t created_at; /* unix seconds */
    int64_t updated_at;
    uint64_t version;
    bool deleted;
} dash;

void dash_free(dash *d);
/* The API shape: {id, tenantId, name, description, widgets, accessControl,
 * createdBy, createdAt, updatedAt, version}; without "widgets" (and without
 * copying them) when with_widgets is false, as list shows dashboards. */
cJSON *dash_to_json(const dash *d, bool with_widgets);

/* ---- store.c */
an_status dash_store_get(dash_ctx *c, const char *tenant, const char *id, dash **out,
                         an_error *err);
/* Hand every live dashboard of tenant to fn, newest first, one at a time
 * (fn owns d and frees it: a list never holds every record's widgets). */
an_status dash_store_each(dash_ctx *c, const char *tenant, void (*fn)(void *ud, dash *d), void *ud,
                          an_error *err);
/* Write d as a new row (its version must be higher than the stored one). */
an_status dash_store_put(dash_ctx *c, const dash *d, an_error *err);
void dash_store_close(dash_ctx *c);

/* ---- access.c */
bool dash_is_tenant_admin(const dash_ctx *c, const an_auth *a);
bool dash_can_view(const dash_ctx *c, const an_auth *a, const dash *d);
/* Change name, widgets, accessControl, delete: the creator and tenant
 * admins. */
bool dash_can_edit(const dash_ctx *c, const an_auth *a, const dash *d);
/* Validate and normalise an accessControl object into a new one. */
an_status dash_acl_parse(const cJSON *in, cJSON **out, an_error *err);

/* ---- render.c */
/* Check a widget of a dashboard of tenant (normalised in place: defaults
 * filled, id set when missing): its metric must be the tenant's or a
 * platform metric, even for a platform admin who may see others.
 * new_widget: a deprecated metric is refused. */
an_status dash_widget_validate(dash_ctx *c, const an_request *req, const char *tenant, cJSON *w,
                               bool new_widget, an_error *err);
/* Render widgets (all when only_widget is NULL) with the overrides of
 * params ({from,to,granularity,filters,page,pageSize}). *out:
 * {"dashboardId","version","widgets":[{id,type,title,data|error}],...}. */
an_status dash_render(dash_ctx *c, const an_request *req, const dash *d, const cJSON *params,
                      const char *only_widget, cJSON **out, an_error *err);

/* The period a bignumber compares [from_ms, to_ms) with. metrics widens a
 * range to whole buckets of granularity (hour, day, week, month): the
 * previous period is as many whole buckets, ending where the widened range
 * begins. Another granularity: the same length just before from_ms. */
void dash_previous_period(int64_t from_ms, int64_t to_ms, const char *granularity,
                          int64_t *prev_from, int64_t *prev_to);

/* Check the render parameters ({from,to}|{last}, granularity, filters,
 * page, pageSize) into a normalised copy *out (always set; caller frees). */
an_status dash_params_parse(const cJSON *body, cJSON **out, an_error *err);

/* ---- shapes.c */
/* Turn a metrics query reply into the data of widget type. prev is the
 * reply for the previous period (bignumber only; may be NULL). */
an_status dash_shape(const char *type, const cJSON *widget, const cJSON *reply, const cJSON *prev,
                     const cJSON *params, cJSON **out, an_error *err);
bool dash_type_valid(const char *type);
bool dash_type_needs_metric(const char *type);

/* ---- cache.c */
/* The key of a render: tenant, dashboard id and version, and a hash of the
 * canonical parameters. */
void dash_cache_key(const dash *d, const char *widget, const cJSON *params, char *out, size_t n);
/* AN_OK and *json (caller frees) on a hit, AN_NOT_FOUND on a miss; Redis
 * trouble is a miss (logged), never an error of the render. */
an_status dash_cache_get(dash_ctx *c, const char *key, char **json);
void dash_cache_put(dash_ctx *c, const char *key, const char *json);
void dash_cache_close(dash_ctx *c);
/* The record cache (see cache.c): get gives the JSON of dash_record_json. */
an_status dash_record_cache_get(dash_ctx *c, const char *tenant, const char *id, char **json);
void dash_record_cache_put(dash_ctx *c, const char *tenant, const char *id, uint64_t version,
                           const char *json);
void dash_record_cache_del(dash_ctx *c, const char *tenant, const char *id);
/* A per-dashboard write lock in Redis (SET NX PX 15 s, released by token),
 * so that the version check and the write of a change are atomic across
 * replicas. Waits up to wait_ms: AN_FAILED_PRECONDITION when still held,
 * AN_UNAVAILABLE when Redis fails; AN_OK without locking when no Redis is
 * configured. token receives the holder's token ("" when none). */
an_status dash_lock(dash_ctx *c, const char *tenant, const char *id, int64_t wait_ms,
                    char token[40], an_error *err);
void dash_unlock(dash_ctx *c, const char *tenant, const char *id, const char *token);

/* ---- api.c */
extern const an_endpoint dash_endpoints[];

#endif
