/*
 * ingest_load - publish domain events to JetStream as fast as it can, for
 * the ingest tests and for measuring ingest by hand (the real benchmark is
 * bench/ingest).
 *
 *   ingest_load -n 100000 -s events -p tload -t 5 [-r RUN] [-u NATS_URL]
 *
 * Publishes n envelopes on <s>.<service>.<type> (a few event types of a
 * learning platform), tenants <p>-0 .. <p>-(t-1), ids <run>-<i>, actors
 * u<i % 5000>, data of about 300 bytes (an e-mail and a phone number in one
 * event of ten). Up to 4000 publishes in flight, each with Nats-Msg-Id =
 * the event id, their JetStream acks counted on an inbox of its own (not
 * nats.c's js_PublishMsgAsync, whose last ack callback may still be freeing
 * its message when the program exits, which ASan reports). Prints one line:
 *   published N events in S s (R/s), P payload bytes
 * Exit status 0 when every publish was acknowledged by the stream.
 */
#include <inttypes.h>
#include <nats/nats.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The acks of the publishes in flight. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static long inflight;
static _Atomic long failures;

static void on_ack(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub, (void)closure;
    const char *data = natsMsg_GetData(msg);
    int len = natsMsg_GetDataLength(msg);
    const char *status = NULL;
    bool bad = natsMsgHeader_Get(msg, "Status", &status) == NATS_OK || len == 0 ||
               (data && strstr(data, "\"error\"") != NULL);
    pthread_mutex_lock(&mu);
    if (bad && atomic_fetch_add(&failures, 1) < 5)
        fprintf(stderr, "ingest_load: publish failed: %.*s%s\n", len > 200 ? 200 : len,
                data ? data : "", status ? status : "");
    inflight--;
    pthread_cond_broadcast(&cv);
    pthread_mutex_unlock(&mu);
    natsMsg_Destroy(msg);
}

/* Wait until at most most publishes are in flight; false after 60 s. */
static bool settle(long most)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 60;
    pthread_mutex_lock(&mu);
    int rc = 0;
    while (inflight > most && rc == 0)
        rc = pthread_cond_timedwait(&cv, &mu, &until);
    bool ok = inflight <= most;
    pthread_mutex_unlock(&mu);
    return ok;
}

int main(int argc, char **argv)
{
    long n = 1000;
    const char *prefix = "events", *tenant = "tload", *url = getenv("ANALYTICS_NATS_URL");
    long tenants = 3;
    char run[64];
    snprintf(run, sizeof(run), "r%ld", (long)getpid());
    int opt;
    while ((opt = getopt(argc, argv, "n:s:p:t:r:u:")) != -1) {
        switch (opt) {
        case 'n':
            n = atol(optarg);
            break;
        case 's':
            prefix = optarg;
            break;
        case 'p':
            tenant = optarg;
            break;
        case 't':
            tenants = atol(optarg) > 0 ? atol(optarg) : 1;
            break;
        case 'r':
            snprintf(run, sizeof(run), "%s", optarg);
            break;
        case 'u':
            url = optarg;
            break;
        default:
            fprintf(stderr, "usage: ingest_load [-n N] [-s SUBJECT_PREFIX] [-p TENANT_PREFIX] "
                            "[-t TENANTS] [-r RUN] [-u NATS_URL]\n");
            return 2;
        }
    }
    natsConnection *nc = NULL;
    natsSubscription *acks = NULL;
    char inbox[64], reply[96];
    snprintf(inbox, sizeof(inbox), "_INBOX.ingest_load.%ld", (long)getpid());
    snprintf(reply, sizeof(reply), "%s.*", inbox);
    if (natsConnection_ConnectTo(&nc, url ? url : NATS_DEFAULT_URL) != NATS_OK ||
        natsConnection_Subscribe(&acks, nc, reply, on_ack, NULL) != NATS_OK) {
        fprintf(stderr, "ingest_load: cannot connect to %s\n", url ? url : NATS_DEFAULT_URL);
        return 1;
    }
    natsSubscription_SetPendingLimits(acks, -1, -1);
    static const char *types[][2] = {
        {"courses", "enrollment.created"}, {"courses", "lesson.completed"},
        {"courses", "quiz.submitted"},     {"payments", "payment.succeeded"},
        {"users", "user.logged_in"},       {"courses", "certificate.issued"},
    };
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
    double t0 = now_s();
    uint64_t bytes = 0;
    char subject[256], body[2048], id[128];
    for (long i = 0; i < n; i++) {
        int k = (int)(i % 6);
        snprintf(subject, sizeof(subject), "%s.%s.%s", prefix, types[k][0], types[k][1]);
        snprintf(id, sizeof(id), "%s-%ld", run, i);
        const char *pii = i % 10 == 0 ? ",\"email\":\"student@example.com\",\"contact\":\"call "
                                        "+44 20 7946 0958\""
                                      : "";
        int len = snprintf(
            body, sizeof(body),
            "{\"id\":\"%s\",\"type\":\"%s\",\"tenantId\":\"%s-%ld\",\"occurredAt\":\"%s.%03ldZ\","
            "\"correlationId\":\"corr-%ld\",\"actor\":{\"type\":\"user\",\"id\":\"u%ld\"},"
            "\"data\":{\"courseId\":\"course-%ld\",\"lessonId\":\"lesson-%ld\",\"score\":%ld,"
            "\"durationMs\":%ld,\"device\":{\"os\":\"linux\",\"browser\":\"firefox\","
            "\"screen\":\"1920x1080\"},\"tags\":[\"intro\",\"week-%ld\"],\"locale\":\"en-GB\","
            "\"referrer\":\"https://learn.example.org/catalog/course-%ld\"%s}}",
            id, types[k][1], tenant, i % tenants, when, i % 1000, i % 997, i % 5000, i % 120,
            i % 40, i % 101, 1000 + i % 90000, i % 12, i % 120, pii);
        if (!settle(3999)) {
            fprintf(stderr, "ingest_load: no ack for 60 s\n");
            failures++;
            break;
        }
        snprintf(reply, sizeof(reply), "%s.%ld", inbox, i);
        natsMsg *m = NULL;
        natsMsg_Create(&m, subject, reply, body, len);
        natsMsgHeader_Set(m, "Nats-Msg-Id", id);
        pthread_mutex_lock(&mu);
        inflight++;
        pthread_mutex_unlock(&mu);
        natsStatus s = natsConnection_PublishMsg(nc, m);
        natsMsg_Destroy(m);
        if (s != NATS_OK) {
            fprintf(stderr, "ingest_load: publish %ld: %s\n", i, natsStatus_GetText(s));
            failures++;
            break;
        }
        bytes += (uint64_t)len;
    }
    natsConnection_Flush(nc);
    bool all = failures == 0 && settle(0);
    double dt = now_s() - t0;
    if (failures == 0 && !all) {
        pthread_mutex_lock(&mu);
        fprintf(stderr, "ingest_load: waiting for the acks: %ld missing after 60 s\n", inflight);
        pthread_mutex_unlock(&mu);
        failures++;
    }
    printf("published %ld events in %.3f s (%.0f/s), %" PRIu64 " payload bytes\n", n, dt,
           dt > 0 ? (double)n / dt : 0.0, bytes);
    /* no ack callback may run (and hand its message to nats.c's garbage
     * collector) once the library shuts down: that message would leak */
    if (natsSubscription_Drain(acks) != NATS_OK ||
        natsSubscription_WaitForDrainCompletion(acks, 10000) != NATS_OK)
        fprintf(stderr, "ingest_load: the ack subscription did not drain\n");
    natsSubscription_Destroy(acks);
    natsConnection_Destroy(nc);
    if (nats_CloseAndWait(10000) != NATS_OK)
        fprintf(stderr, "ingest_load: nats.c's threads did not end within 10 s\n");
    return failures ? 1 : 0;
}
