/*
 * events.h - publishing the product's own events with JetStream
 * (DESIGN.md 3, "Events"), so a consumer that is down misses nothing.
 *
 * Subjects are `analytics.<aggregate>.<event>.v1` (analytics.export.completed.v1,
 * analytics.alert.triggered.v1, ...). They are captured by one stream,
 * AN_EVENTS_STREAM, whose subjects are AN_EVENTS_SUBJECTS; these never
 * overlap the request subjects `analytics.<service>.<verb>` (three tokens).
 *
 * Exactly-once storage: every event carries an idempotency key chosen by
 * the caller, sent as `Nats-Msg-Id` (e.g. "export.completed:<jobId>"). The
 * stream drops a second message with the same id within its duplicate window
 * (default 1 hour, long enough to cover a job retried after a crash), and a
 * publish that timed out is retried with the same id, so a retry never
 * stores the event twice.
 *
 * Payload of an_events_publish() (the same envelope as incoming domain
 * events, so the ingest firehose can store ours too):
 *   {"id": "<idempotency key>", "type": "<aggregate>.<event>",
 *    "tenantId": "t1" | null, "occurredAt": "2026-01-02T03:04:05.678Z",
 *    "correlationId": "..." | null, "data": {...}}
 * The message also carries a `Correlation-Id` header when one is given.
 *
 * Thread-safety: an an_events may be used from any number of threads.
 */
#ifndef AN_EVENTS_H
#define AN_EVENTS_H

#include "common/status.h"

#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

#define AN_EVENTS_STREAM   "ANALYTICS_EVENTS"
#define AN_EVENTS_SUBJECTS "analytics.*.*.v1"

typedef struct an_events_opts {
    const char *stream;          /* NULL: AN_EVENTS_STREAM */
    const char *subjects;        /* NULL: AN_EVENTS_SUBJECTS */
    int64_t duplicate_window_ms; /* 0: 1 hour */
    int64_t max_age_ms;          /* retention when the stream is created; 0: 30 days */
    int64_t publish_timeout_ms;  /* wait for the PubAck, per attempt; 0: 5 s */
    int attempts;                /* publish attempts on timeout; 0: 4 */
} an_events_opts;

typedef struct an_events an_events;

/* A NATS or JetStream failure as an_status: AN_UNAVAILABLE when the server
 * is away or has no JetStream (timeout, no responders, connection closed),
 * AN_FAILED_PRECONDITION otherwise; the message says what was being done,
 * the NATS status, the JetStream error code and the library's last error. */
an_status an_events_nats_error(an_error *err, natsStatus s, jsErrCode jerr, const char *what);

/* Open a publisher on nc (borrowed: it must outlive the publisher) and make
 * sure the stream exists:
 *   - missing: created (file storage, limits retention, max age, the
 *     duplicate window);
 *   - present: left alone when it already captures the subjects with a
 *     duplicate window at least as long; otherwise updated to add the
 *     subjects and lengthen the window (its other settings are kept).
 * Fails with AN_UNAVAILABLE when JetStream does not answer and
 * AN_FAILED_PRECONDITION when the stream cannot be made to fit (e.g. another
 * stream already captures these subjects). opts may be NULL.
 * Close with an_events_close(). */
an_status an_events_open(natsConnection *nc, const an_events_opts *opts, an_events **out,
                         an_error *err);
void an_events_close(an_events *ev);

/* What the stream said about a stored event. */
typedef struct an_events_ack {
    uint64_t seq;   /* stream sequence of the stored message */
    bool duplicate; /* the id was already stored: this publish stored nothing */
} an_events_ack;

/* One event of the product. Strings are borrowed for the call. */
typedef struct an_event {
    const char *aggregate;      /* "export": [a-z0-9_-]+ */
    const char *name;           /* "completed": [a-z0-9_-]+ */
    const char *id;             /* idempotency key, required: Nats-Msg-Id and "id" */
    const char *tenant_id;      /* NULL: a platform event ("tenantId": null) */
    const char *correlation_id; /* NULL: none */
    const cJSON *data;          /* the event's own fields; NULL gives {} */
    int64_t occurred_at_ms;     /* unix ms; 0: now */
} an_event;

/* Publish e on analytics.<aggregate>.<name>.v1 and wait for the stream's
 * acknowledgement (the event is durable when this returns AN_OK). ack may be
 * NULL. AN_INVALID_ARGUMENT for a bad name or missing id, AN_UNAVAILABLE
 * when no acknowledgement came after every attempt. */
an_status an_events_publish(an_events *ev, const an_event *e, an_events_ack *ack, an_error *err);

/* The same with a ready payload on any subject the stream captures. */
an_status an_events_publish_raw(an_events *ev, const char *subject, const char *msg_id,
                                const char *correlation_id, const void *data, size_t len,
                                an_events_ack *ack, an_error *err);

/* The stream this publisher writes to. */
const char *an_events_stream(const an_events *ev);

#endif
