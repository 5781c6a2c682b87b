/*
 * metrics_bench - latency of analytics.metrics.query for one metric, and the
 * exact SQL the service runs for it, for bench/metrics.sh.
 *
 *   metrics_bench -t TENANT -n N [-k BATCH] -u UNIT -p PARAMS_JSON -o SQL_FILE
 *                 [-d DIRECT_CMD] NAME TEMPLATE
 *
 * Creates the metric NAME (TEMPLATE, UNIT) for TENANT over NATS, writes to
 * SQL_FILE the statement the service runs for PARAMS_JSON (common/template's
 * binding for TENANT, wrapped as metrics/query.c wraps it), BATCH times
 * (default 5), then:
 *   - 3 warm-up queries, then N queries with "cache": false (ClickHouse
 *     every time) in rounds of BATCH, running the shell command DIRECT_CMD
 *     after each round (bench/metrics.sh: clickhouse-client on SQL_FILE), so
 *     the service and the direct SQL see the same load over the run; prints
 *     "live p50_ms=.. p95_ms=.. p99_ms=.. rows=..";
 *   - N queries with the cache on (after one that fills it): prints
 *     "cached p50_ms=.. p95_ms=.. p99_ms=..".
 * PARAMS_JSON holds from/to (whole buckets, so the service's alignment
 * changes nothing), granularity, dimensions, filters.
 * Needs ANALYTICS_NATS_URL, ANALYTICS_JWT_SECRET; ANALYTICS_METRICS_MAX_ROWS
 * (default 10000) must match the service's.
 */
#include "common/buf.h"
#include "common/sql.h"
#include "common/template.h"

#include <cjson/cJSON.h>
#include <jwt.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double *v, int n, double p)
{
    int i = (int)(p * (n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static natsConnection *nc;
static char auth[4096];

/* One request; the reply body (free it) or NULL. */
static char *call(const char *subject, const char *body)
{
    natsMsg *m = NULL, *reply = NULL;
    char *out = NULL;
    if (natsMsg_Create(&m, subject, NULL, body, (int)strlen(body)) == NATS_OK &&
        natsMsgHeader_Set(m, "Authorization", auth) == NATS_OK &&
        natsConnection_RequestMsg(&reply, nc, m, 60000) == NATS_OK)
        out = strndup(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    natsMsg_Destroy(reply);
    natsMsg_Destroy(m);
    return out;
}

static int ok_reply(const char *r)
{
    return r && strncmp(r, "{\"data\":", 8) == 0;
}

/* n timed queries of body; fills ms[] (sorted when sort); returns rows of
 * the last answer or -1. */
static int measure(const char *body, int n, double *ms, int sort)
{
    int rows = -1;
    for (int i = 0; i < n; i++) {
        double t0 = now_ms();
        char *r = call("analytics.metrics.query", body);
        ms[i] = now_ms() - t0;
        if (!ok_reply(r)) {
            fprintf(stderr, "metrics_bench: query failed: %s\n", r ? r : "(no reply)");
            free(r);
            return -1;
        }
        if (i == n - 1) {
            cJSON *j = cJSON_Parse(r);
            rows = cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "data"), "rows"));
            cJSON_Delete(j);
        }
        free(r);
    }
    if (sort)
        qsort(ms, (size_t)n, sizeof(double), cmp_double);
    return rows;
}

int main(int argc, char **argv)
{
    const char *tenant = NULL, *unit = "count", *params = "{}", *sql_file = NULL, *direct = NULL;
    int n = 50, batch = 5, opt;
    while ((opt = getopt(argc, argv, "t:n:k:u:p:o:d:")) != -1) {
        switch (opt) {
        case 't':
            tenant = optarg;
            break;
        case 'n':
            n = atoi(optarg);
            break;
        case 'u':
            unit = optarg;
            break;
        case 'p':
            params = optarg;
            break;
        case 'o':
            sql_file = optarg;
            break;
        case 'k':
            batch = atoi(optarg);
            break;
        case 'd':
            direct = optarg;
            break;
        default:
            return 2;
        }
    }
    if (!tenant || !sql_file || optind + 2 != argc || n < 1 || batch < 1) {
        fprintf(stderr, "usage: metrics_bench -t TENANT -n N -u UNIT -p PARAMS_JSON -o SQL_FILE "
                        "NAME TEMPLATE\n");
        return 2;
    }
    const char *name = argv[optind], *tpl = argv[optind + 1];
    const char *secret = getenv("ANALYTICS_JWT_SECRET"), *url = getenv("ANALYTICS_NATS_URL");
    const char *max_rows_s = getenv("ANALYTICS_METRICS_MAX_ROWS");
    long max_rows = max_rows_s ? atol(max_rows_s) : 10000;
    if (!secret || !url) {
        fprintf(stderr, "metrics_bench: ANALYTICS_JWT_SECRET and ANALYTICS_NATS_URL must be set\n");
        return 2;
    }
    jwt_t *jwt = NULL;
    jwt_new(&jwt);
    jwt_add_grant(jwt, "sub", "bench");
    jwt_add_grant(jwt, "tid", tenant);
    jwt_add_grant_int(jwt, "exp", (long)time(NULL) + 7200);
    jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret));
    char *token = jwt_encode_str(jwt);
    jwt_free(jwt);
    snprintf(auth, sizeof(auth), "Bearer %s", token);
    free(token);
    if (natsConnection_ConnectTo(&nc, url) != NATS_OK) {
        fprintf(stderr, "metrics_bench: cannot connect to %s\n", url);
        return 2;
    }

    /* the metric */
    cJSON *c = cJSON_CreateObject();
    char uniq[96];
    snprintf(uniq, sizeof(uniq), "%s %ld", name, (long)time(NULL));
    cJSON_AddStringToObject(c, "name", uniq);
    cJSON_AddStringToObject(c, "unit", unit);
    cJSON_AddStringToObject(c, "query", tpl);
    char *cb = cJSON_PrintUnformatted(c);
    cJSON_Delete(c);
    char *r = call("analytics.metrics.create", cb);
    free(cb);
    if (!ok_reply(r)) {
        fprintf(stderr, "metrics_bench: create failed: %s\n", r ? r : "(no reply)");
        return 1;
    }
    cJSON *cr = cJSON_Parse(r);
    free(r);
    char id[64];
    snprintf(id, sizeof(id), "%s",
             cJSON_GetObjectItem(cJSON_GetObjectItem(cr, "data"), "id")->valuestring);
    cJSON_Delete(cr);

    cJSON *p = cJSON_Parse(params);
    if (!p) {
        fprintf(stderr, "metrics_bench: bad params JSON\n");
        return 2;
    }
    cJSON_AddStringToObject(p, "metricId", id);
    cJSON_AddBoolToObject(p, "cache", 0);
    char *live_body = cJSON_PrintUnformatted(p);
    cJSON_ReplaceItemInObject(p, "cache", cJSON_CreateBool(1));
    char *cached_body = cJSON_PrintUnformatted(p);

    /* the SQL the service runs, as metrics/query.c builds it */
    an_template_params tp;
    an_error err = {0};
    if (an_template_params_from_json(p, &tp, &err) != AN_OK) {
        fprintf(stderr, "metrics_bench: params: %s\n", err.message);
        return 2;
    }
    an_template_scope scope = {.tenant_id = tenant};
    an_buf sql = AN_BUF_INIT;
    an_buf_adds(&sql, "SELECT * FROM (");
    if (an_template_bind(tpl, strlen(tpl), &tp, &scope, &sql, &err) != AN_OK) {
        fprintf(stderr, "metrics_bench: bind: %s\n", err.message);
        return 2;
    }
    an_buf_adds(&sql, ") LIMIT ");
    an_sql_int64(&sql, max_rows + 1);
    FILE *f = fopen(sql_file, "w");
    if (!f)
        return 2;
    for (int i = 0; i < batch; i++)
        fprintf(f, "%s FORMAT TabSeparatedWithNamesAndTypes;\n", an_buf_str(&sql));
    fclose(f);

    double *ms = calloc((size_t)n + (size_t)batch, sizeof(double));
    double warm[3];
    if (measure(live_body, 3, warm, 1) < 0)
        return 1;
    int rows = 0, done = 0;
    while (done < n) {
        int k = n - done < batch ? n - done : batch;
        if ((rows = measure(live_body, k, ms + done, 0)) < 0)
            return 1;
        done += k;
        if (direct && system(direct) != 0) {
            fprintf(stderr, "metrics_bench: %s failed\n", direct);
            return 1;
        }
    }
    qsort(ms, (size_t)n, sizeof(double), cmp_double);
    printf("live p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f rows=%d\n", pct(ms, n, 0.5), pct(ms, n, 0.95),
           pct(ms, n, 0.99), rows);
    if (measure(cached_body, 1, warm, 1) < 0 || measure(cached_body, n, ms, 1) < 0)
        return 1;
    printf("cached p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f\n", pct(ms, n, 0.5), pct(ms, n, 0.95),
           pct(ms, n, 0.99));
    an_buf_free(&sql);
    an_template_params_free(&tp);
    cJSON_Delete(p);
    free(live_body);
    free(cached_body);
    free(ms);
    natsConnection_Destroy(nc);
    /* waits for nats.c's threads: an ack callback still running at exit leaks */
    nats_CloseAndWait(2000);
    return 0;
}
