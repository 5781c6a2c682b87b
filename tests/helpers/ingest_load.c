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
 * event of ten). Asynchronous publishes with up to 4000 in flight, each
 * with Nats-Msg-Id = the event id. Prints one line:
 *   published N events in S s (R/s), P payload bytes
 * Exit status 0 when every publish was acknowledged by the stream.
 */
#include <inttypes.h>
#include <nats/nats.h>
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

static int failures;

static void on_ack_error(jsCtx *js, jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)closure;
    if (failures++ < 5)
        fprintf(stderr, "ingest_load: publish failed: %s\n", pae->ErrText ? pae->ErrText : "?");
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
    jsCtx *js = NULL;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4000;
    jo.PublishAsync.ErrHandler = on_ack_error;
    if (natsConnection_ConnectTo(&nc, url ? url : NATS_DEFAULT_URL) != NATS_OK ||
        natsConnection_JetStream(&js, nc, &jo) != NATS_OK) {
        fprintf(stderr, "ingest_load: cannot connect to %s\n", url ? url : NATS_DEFAULT_URL);
        return 1;
    }
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
        natsMsg *m = NULL;
        natsMsg_Create(&m, subject, NULL, body, len);
        natsMsgHeader_Set(m, "Nats-Msg-Id", id);
        natsStatus s = js_PublishMsgAsync(js, &m, NULL);
        if (s != NATS_OK) {
            natsMsg_Destroy(m);
            fprintf(stderr, "ingest_load: publish %ld: %s\n", i, natsStatus_GetText(s));
            failures++;
            break;
        }
        bytes += (uint64_t)len;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    natsStatus s = js_PublishAsyncComplete(js, &po);
    double dt = now_s() - t0;
    if (s != NATS_OK) {
        fprintf(stderr, "ingest_load: waiting for the acks: %s\n", natsStatus_GetText(s));
        failures++;
    }
    printf("published %ld events in %.3f s (%.0f/s), %" PRIu64 " payload bytes\n", n, dt,
           dt > 0 ? (double)n / dt : 0.0, bytes);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    /* waits for nats.c's threads: the last ack callback frees its message
     * after it has woken js_PublishAsyncComplete, so one still running at
     * exit leaks it; on a loaded machine (ASan, a ClickHouse restarting)
     * that took more than the 2 s waited before */
    if (nats_CloseAndWait(10000) != NATS_OK)
        fprintf(stderr, "ingest_load: nats.c's threads did not end within 10 s\n");
    return failures ? 1 : 0;
}
