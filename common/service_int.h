/*
 * service_int.h - internals shared by the files of the service module
 * (service.c: lifecycle, dispatch, calls; discovery.c: the $SRV protocol).
 * Not part of the public API.
 */
#ifndef AN_SERVICE_INT_H
#define AN_SERVICE_INT_H

#include "common/service.h"

#include "common/http.h"
#include "common/prom.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>

#define AN_SERVICE_ID_LEN     22 /* like a NATS nuid: 22 base62 characters */
#define AN_CORRELATION_MAX    128
#define AN_SERVICE_MAX_ROUTES 8
#define AN_SRV_SUBS           9 /* PING/INFO/STATS x (all, name, name.id) */

/* One endpoint at run time. The counters are guarded by an_service.mu. */
typedef struct an_ep {
    an_service *svc;
    const an_endpoint *def;
    char subject[256];
    natsSubscription *sub;
    int64_t timeout_ms;
    uint64_t num_requests;
    uint64_t num_errors;
    int64_t processing_ns;
    char last_error[AN_ERROR_MSG_MAX + 16];
    /* Prometheus series of this endpoint, resolved once (service_ops.c). */
    an_prom_counter *requests_by_status[AN_INTERNAL + 1];
    an_prom_histogram *duration;
} an_ep;

typedef struct an_job an_job;

typedef struct an_ops_check {
    an_service *svc;
    size_t index; /* into an_service.checks */
} an_ops_check;

typedef struct an_ready_check {
    char name[64];
    an_ready_fn fn;
    void *ud;
} an_ready_check;

struct an_service {
    const an_service_def *def;
    an_service_config cfg;
    void *ctx;
    char id[AN_SERVICE_ID_LEN + 1];
    char started[48]; /* RFC 3339, UTC */
    natsConnection *nc;
    an_events *events;
    an_auth_verifier *verifier;
    an_ep *eps;
    size_t neps;
    natsSubscription *srv_subs[AN_SRV_SUBS];

    /* Everything below is guarded by mu. */
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* a job was queued, or the workers must stop */
    pthread_cond_t idle_cv; /* outstanding became empty */
    pthread_cond_t wd_cv;   /* the watchdog should look again */
    an_job *queue_head, *queue_tail;
    size_t queued;
    an_job *outstanding; /* every job not yet freed, queued or running */
    size_t noutstanding;
    bool stop_workers;
    bool stop_watchdog;
    int64_t wd_wake_ns;
    pthread_t *workers;
    int nworkers;
    pthread_t watchdog;
    bool watchdog_started;
    bool nats_closed;         /* the connection's closed callback has run */
    pthread_cond_t closed_cv; /* signalled with nats_closed */
    an_ready_check checks[AN_SERVICE_MAX_READY_CHECKS];
    size_t nchecks;

    /* Operations (service_ops.c): metrics registry, HTTP server, routes. */
    an_prom_registry *prom;
    an_http_server *http;
    struct {
        const char *prefix;
        an_http_handler fn;
        void *arg;
    } routes[AN_SERVICE_MAX_ROUTES];
    size_t nroutes;
    an_ops_check ops_checks[AN_SERVICE_MAX_READY_CHECKS];
    pthread_mutex_t ops_mu; /* guards the readiness clients below */
    bool ops_mu_init;
    struct an_ch *ready_ch;           /* ClickHouse readiness probe connection */
    struct redisContext *ready_redis; /* Redis readiness probe connection */

    atomic_bool draining;
};

static inline int64_t an_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* First value of header name, matched case-insensitively (nats.c 3.x keys
 * are case-sensitive, callers are not all careful); NULL when absent. */
const char *an_msg_header(natsMsg *m, const char *name);

/* discovery.c: subscribe to / leave the $SRV subjects. */
natsStatus an_srv_subscribe(an_service *svc);
void an_srv_unsubscribe(an_service *svc);

/* service_ops.c */
an_status an_svc_ops_init(an_service *svc, an_error *err);  /* registry; before init */
an_status an_svc_ops_start(an_service *svc, an_error *err); /* HTTP; after start */
void an_svc_ops_observe(an_ep *ep, an_status st, int64_t dur_ns);
void an_svc_ops_stop(an_service *svc); /* stop HTTP; idempotent */
void an_svc_ops_free(an_service *svc); /* stop and free the registry */

#endif
