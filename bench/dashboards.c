/*
 * bench/dashboards - render latency of a 12-widget dashboard, cold and
 * cached, through the running dashboards service (bench/dashboards.sh
 * starts it, the metrics service and seeds the events).
 *
 *   build/bench/dashboards TENANT RUNS
 * Env: ANALYTICS_NATS_URL, ANALYTICS_JWT_SECRET (tokens are minted here).
 * Cold renders pass "noCache": true (every widget asks metrics, which asks
 * ClickHouse); cached renders repeat one request whose result is in Redis.
 * Prints the percentiles and, last, one line
 *   bench dashboards: cold_p50_ms=X cold_p95_ms=X cached_p50_ms=X
 */
#include "common/timeutil.h"

#include <cjson/cJSON.h>
#include <jwt.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static natsConnection *nc;
static char *bearer;

static cJSON *call(const char *verb, const char *body, double *ms)
{
    char subject[128];
    snprintf(subject, sizeof(subject), "analytics.dashboards.%s", verb);
    natsMsg *m = NULL, *reply = NULL;
    natsMsg_Create(&m, subject, NULL, body, (int)strlen(body));
    natsMsgHeader_Set(m, "Authorization", bearer);
    int64_t t0 = an_time_mono_ms();
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    natsStatus s = natsConnection_RequestMsg(&reply, nc, m, 30000);
    clock_gettime(CLOCK_MONOTONIC, &b);
    (void)t0;
    natsMsg_Destroy(m);
    if (ms)
        *ms = (double)(b.tv_sec - a.tv_sec) * 1000 + (double)(b.tv_nsec - a.tv_nsec) / 1e6;
    if (s != NATS_OK) {
        fprintf(stderr, "%s: %s\n", verb, natsStatus_GetText(s));
        exit(1);
    }
    cJSON *env =
        cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    if (!env || !cJSON_GetObjectItem(env, "data")) {
        fprintf(stderr, "%s: %.*s\n", verb, natsMsg_GetDataLength(reply), natsMsg_GetData(reply));
        exit(1);
    }
    natsMsg_Destroy(reply);
    return env;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof(*v), cmp);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i];
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s TENANT RUNS\n", argv[0]);
        return 2;
    }
    const char *tenant = argv[1];
    int runs = atoi(argv[2]);
    if (runs < 2)
        runs = 2;
    const char *secret = getenv("ANALYTICS_JWT_SECRET");
    if (natsConnection_ConnectTo(&nc, getenv("ANALYTICS_NATS_URL")) != NATS_OK || !secret) {
        fprintf(stderr, "need ANALYTICS_NATS_URL and ANALYTICS_JWT_SECRET\n");
        return 1;
    }
    jwt_t *jwt = NULL;
    jwt_new(&jwt);
    jwt_add_grant(jwt, "sub", "bench");
    jwt_add_grant(jwt, "tid", tenant);
    jwt_add_grant_int(jwt, "exp", (long)time(NULL) + 3600);
    jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret));
    char *t = jwt_encode_str(jwt);
    jwt_free(jwt);
    if (asprintf(&bearer, "Bearer %s", t) < 0)
        return 1;
    free(t);

    /* 12 widgets: every type that reads metrics, over the last 7 days */
    const char *widgets =
        "["
        "{\"type\":\"line\",\"title\":\"Events by "
        "country\",\"metricId\":\"%1$s\",\"dimensions\":[\"properties.country\"]},"
        "{\"type\":\"line\",\"title\":\"Signups by "
        "plan\",\"metricId\":\"%2$s\",\"dimensions\":[\"properties.plan\"]},"
        "{\"type\":\"bar\",\"title\":\"Revenue by "
        "country\",\"metricId\":\"%3$s\",\"dimensions\":[\"properties.country\"]},"
        "{\"type\":\"bar\",\"title\":\"Events by "
        "type\",\"metricId\":\"%1$s\",\"dimensions\":[\"event_name\"]},"
        "{\"type\":\"pie\",\"title\":\"Signup "
        "share\",\"metricId\":\"%2$s\",\"dimensions\":[\"properties.country\"]},"
        "{\"type\":\"pie\",\"title\":\"Plan "
        "share\",\"metricId\":\"%1$s\",\"dimensions\":[\"properties.plan\"]},"
        "{\"type\":\"bignumber\",\"title\":\"Signups\",\"metricId\":\"%2$s\"},"
        "{\"type\":\"bignumber\",\"title\":\"Revenue\",\"metricId\":\"%3$s\"},"
        "{\"type\":\"table\",\"title\":\"Events by country and "
        "plan\",\"metricId\":\"%1$s\",\"dimensions\":[\"properties.country\",\"properties.plan\"]"
        "},"
        "{\"type\":\"map\",\"title\":\"Signups "
        "map\",\"metricId\":\"%2$s\",\"dimensions\":[\"properties.country\"]},"
        "{\"type\":\"line\",\"title\":\"Events "
        "hourly\",\"metricId\":\"%1$s\",\"granularity\":\"hour\",\"timeRange\":"
        "{\"last\":\"2d\"}},"
        "{\"type\":\"bar\",\"title\":\"Revenue by "
        "plan\",\"metricId\":\"%3$s\",\"dimensions\":[\"properties.plan\"]}"
        "]";
    /* metric ids: the real service's (BENCH_METRIC_*) or the double's names */
    const char *me = getenv("BENCH_METRIC_EVENTS"), *ms = getenv("BENCH_METRIC_SIGNUPS"),
               *mr = getenv("BENCH_METRIC_REVENUE");
    char *ws = NULL, *body;
    if (asprintf(&ws, widgets, me && *me ? me : "events", ms && *ms ? ms : "signups",
                 mr && *mr ? mr : "revenue") < 0 ||
        asprintf(&body, "{\"name\":\"bench\",\"widgets\":%s}", ws) < 0)
        return 1;
    free(ws);
    cJSON *env = call("create", body, NULL);
    free(body);
    char id[64];
    snprintf(id, sizeof(id), "%s",
             cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetObjectItem(env, "data"), "id")));
    cJSON_Delete(env);

    char cold_body[256], warm_body[256];
    snprintf(cold_body, sizeof(cold_body), "{\"id\":\"%s\",\"noCache\":true}", id);
    snprintf(warm_body, sizeof(warm_body), "{\"id\":\"%s\"}", id);
    double *cold = calloc((size_t)runs, sizeof(double));
    double *warm = calloc((size_t)runs, sizeof(double));
    /* one check that the widgets rendered without errors */
    env = call("render", cold_body, NULL);
    int errors = 0;
    const cJSON *w;
    cJSON_ArrayForEach(w, cJSON_GetObjectItem(cJSON_GetObjectItem(env, "data"), "widgets"))
    {
        if (cJSON_GetObjectItem(w, "error")) {
            char *s = cJSON_PrintUnformatted(w);
            fprintf(stderr, "widget error: %s\n", s);
            free(s);
            errors++;
        }
    }
    cJSON_Delete(env);
    int cold_failed = 0; /* cold renders with at least one widget error */
    for (int i = 0; i < runs; i++) {
        env = call("render", cold_body, &cold[i]);
        cJSON_ArrayForEach(w, cJSON_GetObjectItem(cJSON_GetObjectItem(env, "data"), "widgets"))
        {
            if (cJSON_GetObjectItem(w, "error")) {
                cold_failed++;
                break;
            }
        }
        cJSON_Delete(env);
    }
    cJSON_Delete(call("render", warm_body, NULL)); /* fills the cache */
    for (int i = 0; i < runs; i++) {
        env = call("render", warm_body, &warm[i]);
        if (!cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(env, "data"), "cached")))
            fprintf(stderr, "render %d was not served from the cache\n", i);
        cJSON_Delete(env);
    }
    double c50 = pct(cold, runs, 0.5), c95 = pct(cold, runs, 0.95), cmax = cold[runs - 1];
    double w50 = pct(warm, runs, 0.5), w95 = pct(warm, runs, 0.95);
    printf("12 widgets, %d renders each; widget errors in the check render: %d; cold renders "
           "with a widget error: %d\n",
           runs, errors, cold_failed);
    printf("cold   p50 %.1f ms  p95 %.1f ms  max %.1f ms\n", c50, c95, cmax);
    printf("cached p50 %.2f ms  p95 %.2f ms\n", w50, w95);
    printf("bench dashboards: cold_p50_ms=%.1f cold_p95_ms=%.1f cached_p50_ms=%.2f\n", c50, c95,
           w50);
    free(cold);
    free(warm);
    free(bearer);
    natsConnection_Destroy(nc);
    return errors ? 1 : 0;
}
