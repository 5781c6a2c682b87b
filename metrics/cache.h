/*
 * cache.h - Redis caches of the metrics service. Nothing here is the only
 * copy of anything: a miss or a Redis failure falls back to ClickHouse, and
 * a failed write is logged and forgotten.
 *
 *   <prefix>:def:<metric id>      the latest definition seen, as
 *                                 "<version>\n<record JSON>"; written only by
 *                                 a newer version (a Lua compare-and-set), so a
 *                                 reader that loaded an old version from
 *                                 ClickHouse cannot overwrite a newer one
 *   <prefix>:result:<tenant>:<metric id>:<version>:<sha256 of the parameters>
 *                                 a query's reply data, short TTL; <tenant> is
 *                                 the tenant whose data it holds ("*" for a
 *                                 cross-tenant platform-admin query), always in
 *                                 the key; a new metric version is a new key
 */
#ifndef METRICS_CACHE_H
#define METRICS_CACHE_H

#include "common/status.h"
#include "metrics/metric.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

/* The cached definition of id: AN_OK with *hit and out filled on a hit. */
an_status metrics_cache_def_get(redisContext *r, const char *prefix, const char *id,
                                metric_def *out, bool *hit, an_error *err);

/* Remember d unless a newer version is cached. ttl_ms > 0. */
an_status metrics_cache_def_put(redisContext *r, const char *prefix, const metric_def *d,
                                int64_t ttl_ms, an_error *err);

/* The result key (free it). tenant NULL: every tenant ("*"). params: the
 * canonical text of the query's parameters (any bytes). */
char *metrics_cache_result_key(const char *prefix, const char *tenant, const char *metric_id,
                               uint64_t version, const char *params);

/* A cached result: *json (free it) or NULL on a miss. */
an_status metrics_cache_result_get(redisContext *r, const char *key, char **json, an_error *err);
an_status metrics_cache_result_put(redisContext *r, const char *key, const char *json,
                                   int64_t ttl_ms, an_error *err);

#endif
