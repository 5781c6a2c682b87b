/*
 * jsdrain - the transport alone: a durable pull consumer that acks every
 * message as soon as it arrives and does nothing else, for bench/ingest.sh.
 *
 *   jsdrain STREAM SUBJECT COUNT
 *
 * Creates the file-storage stream STREAM on SUBJECT (e.g. "floor.>") and on
 * it a durable pull consumer with ingest's settings (explicit acks, 60 s ack
 * wait, 500,000 acks pending at most), prints "jsdrain: ready" on stdout,
 * then fetches (2,000 messages a request) and acks each message until COUNT
 * were taken, flushes the acks, deletes the stream and prints
 *
 *   jsdrain: drained=N seconds=S cpu_s=C
 *
 * seconds runs from the first message to the last ack flushed; cpu_s is
 * this process's CPU. What it measures: how fast JetStream on this machine
 * stores, delivers and takes the acks of the events, with no parsing, no
 * rows and no ClickHouse - the ceiling of anything that consumes them.
 * Needs ANALYTICS_NATS_URL. Exit status: 0 when COUNT were drained, 1 on an
 * error or when no message came for 30 s, 2 on bad usage.
 */
#include "common/timeutil.h"

#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FETCH      2000
#define IDLE_LIMIT 30000 /* ms without a message before giving up */

static int fail(const char *what, natsStatus s, jsErrCode jerr)
{
    fprintf(stderr, "jsdrain: %s: %s (JetStream error %d)\n", what, natsStatus_GetText(s),
            (int)jerr);
    return 1;
}

/* Take count messages from sub, acking each; 0 or an exit status. */
static int drain(natsConnection *nc, natsSubscription *sub, long count, double *seconds)
{
    long got = 0;
    int64_t t0 = 0, idle_since = an_time_mono_ms();
    while (got < count) {
        natsMsgList list;
        jsErrCode jerr = 0;
        int want = count - got < FETCH ? (int)(count - got) : FETCH;
        natsStatus s = natsSubscription_Fetch(&list, sub, want, 1000, &jerr);
        if (s == NATS_TIMEOUT) {
            if (an_time_mono_ms() - idle_since >= IDLE_LIMIT) {
                fprintf(stderr, "jsdrain: no message for %d s, %ld of %ld taken\n",
                        IDLE_LIMIT / 1000, got, count);
                return 1;
            }
            continue;
        }
        if (s != NATS_OK)
            return fail("fetching", s, jerr);
        if (!t0)
            t0 = an_time_mono_ms();
        idle_since = an_time_mono_ms();
        for (int i = 0; i < list.Count; i++) {
            s = natsMsg_Ack(list.Msgs[i], NULL);
            if (s != NATS_OK) {
                natsMsgList_Destroy(&list);
                return fail("acking", s, 0);
            }
        }
        got += list.Count;
        natsMsgList_Destroy(&list);
    }
    natsStatus s = natsConnection_FlushTimeout(nc, 10000);
    if (s != NATS_OK)
        return fail("flushing the acks", s, 0);
    *seconds = (double)(an_time_mono_ms() - t0) / 1000.0;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 4 || atol(argv[3]) <= 0) {
        fprintf(stderr, "usage: jsdrain STREAM SUBJECT COUNT\n");
        return 2;
    }
    const char *stream = argv[1], *subject = argv[2], *url = getenv("ANALYTICS_NATS_URL");
    long count = atol(argv[3]);
    if (!url || !*url) {
        fprintf(stderr, "jsdrain: ANALYTICS_NATS_URL is not set\n");
        return 2;
    }
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    int rc = 1;
    natsStatus s = natsConnection_ConnectTo(&nc, url);
    if (s != NATS_OK) {
        rc = fail("connecting", s, 0);
        goto out;
    }
    if ((s = natsConnection_JetStream(&js, nc, NULL)) != NATS_OK) {
        rc = fail("JetStream context", s, 0);
        goto out;
    }
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    sc.Name = stream;
    sc.Subjects = &subject;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    if ((s = js_AddStream(NULL, js, &sc, NULL, &jerr)) != NATS_OK) {
        rc = fail("creating the stream", s, jerr);
        goto out;
    }
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Config.AckPolicy = js_AckExplicit;
    so.Config.AckWait = (int64_t)60 * 1000 * 1000 * 1000;
    so.Config.MaxAckPending = 500000;
    so.Config.MaxDeliver = -1;
    so.Stream = stream;
    if ((s = js_PullSubscribe(&sub, js, subject, "jsdrain", NULL, &so, &jerr)) != NATS_OK) {
        rc = fail("subscribing", s, jerr);
        goto out;
    }
    printf("jsdrain: ready\n");
    fflush(stdout);
    double seconds = 0;
    rc = drain(nc, sub, count, &seconds);
    if (rc == 0)
        printf("jsdrain: drained=%ld seconds=%.3f cpu_s=%.2f\n", count, seconds, an_time_cpu_s());
out:
    if (sub)
        natsSubscription_Destroy(sub);
    if (js) {
        js_DeleteStream(js, stream, NULL, NULL);
        jsCtx_Destroy(js);
    }
    natsConnection_Destroy(nc);
    nats_CloseAndWait(2000); /* threads done: nothing in flight at exit */
    return rc;
}
