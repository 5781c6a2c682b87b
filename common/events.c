#include "common/events.h"
#include "common/timeutil.h"

#include "common/log.h"

#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define NS_PER_MS 1000000LL

struct an_events {
    natsConnection *nc; /* borrowed */
    jsCtx *js;
    char *stream;
    char *subjects;
    int64_t dup_window_ms;
    int64_t max_age_ms;
    int64_t timeout_ms;
    int attempts;
};

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        abort();
    return p;
}

an_status an_events_nats_error(an_error *err, natsStatus s, jsErrCode jerr, const char *what)
{
    an_status code = (s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS || s == NATS_CONNECTION_CLOSED ||
                      s == NATS_CONNECTION_DISCONNECTED || jerr == JSNotEnabledErr)
                         ? AN_UNAVAILABLE
                         : AN_FAILED_PRECONDITION;
    const char *last = nats_GetLastError(NULL);
    return an_error_set(err, code, "%s: %s (jetstream error %d)%s%s", what, natsStatus_GetText(s),
                        (int)jerr, last ? ": " : "", last ? last : "");
}

/* ------------------------------------------------------------- the stream */

static bool has_subject(const jsStreamConfig *c, const char *subject)
{
    for (int i = 0; i < c->SubjectsLen; i++)
        if (c->Subjects[i] && strcmp(c->Subjects[i], subject) == 0)
            return true;
    return false;
}

static an_status create_stream(an_events *ev, an_error *err)
{
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[] = {ev->subjects};
    cfg.Name = ev->stream;
    cfg.Description = "events published by the analytics services";
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Retention = js_LimitsPolicy;
    cfg.MaxAge = ev->max_age_ms * NS_PER_MS;
    cfg.Duplicates = ev->dup_window_ms * NS_PER_MS;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(&si, ev->js, &cfg, NULL, &jerr);
    jsStreamInfo_Destroy(si);
    if (s == NATS_OK) {
        an_info("created JetStream stream %s capturing %s", ev->stream, ev->subjects);
        return AN_OK;
    }
    return an_events_nats_error(err, s, jerr, "creating the events stream");
}

/* Add our subjects and lengthen the duplicate window of an existing stream,
 * keeping everything else it was configured with. */
static an_status update_stream(an_events *ev, jsStreamInfo *si, an_error *err)
{
    jsStreamConfig *c = si->Config;
    const char **orig = c->Subjects;
    int orig_len = c->SubjectsLen;
    int64_t orig_dup = c->Duplicates;
    const char **subjects = calloc((size_t)orig_len + 1, sizeof(*subjects));
    if (!subjects)
        abort();
    int n = 0;
    for (int i = 0; i < orig_len; i++)
        subjects[n++] = orig[i];
    if (!has_subject(c, ev->subjects))
        subjects[n++] = ev->subjects;
    c->Subjects = subjects;
    c->SubjectsLen = n;
    if (c->Duplicates < ev->dup_window_ms * NS_PER_MS)
        c->Duplicates = ev->dup_window_ms * NS_PER_MS;
    jsStreamInfo *updated = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_UpdateStream(&updated, ev->js, c, NULL, &jerr);
    jsStreamInfo_Destroy(updated);
    c->Subjects = orig; /* si owns the original array: give it back before it is freed */
    c->SubjectsLen = orig_len;
    c->Duplicates = orig_dup;
    free(subjects);
    if (s != NATS_OK)
        return an_events_nats_error(err, s, jerr, "updating the events stream");
    an_info("updated JetStream stream %s to capture %s with a %lld ms duplicate window", ev->stream,
            ev->subjects, (long long)ev->dup_window_ms);
    return AN_OK;
}

static an_status ensure_stream(an_events *ev, an_error *err)
{
    for (int round = 0; round < 2; round++) {
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetStreamInfo(&si, ev->js, ev->stream, NULL, &jerr);
        if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
            an_error tmp;
            an_status st = create_stream(ev, &tmp);
            if (st == AN_OK)
                return AN_OK;
            /* Another replica may have created it meanwhile: look again. */
            if (round == 0)
                continue;
            if (err)
                *err = tmp;
            return st;
        }
        if (s != NATS_OK)
            return an_events_nats_error(err, s, jerr, "reading the events stream");
        an_status st = AN_OK;
        if (!has_subject(si->Config, ev->subjects) ||
            si->Config->Duplicates < ev->dup_window_ms * NS_PER_MS)
            st = update_stream(ev, si, err);
        jsStreamInfo_Destroy(si);
        return st;
    }
    return an_error_set(err, AN_UNAVAILABLE, "events stream %s: gave up", ev->stream);
}

an_status an_events_open(natsConnection *nc, const an_events_opts *opts, an_events **out,
                         an_error *err)
{
    *out = NULL;
    an_events_opts o = {0};
    if (opts)
        o = *opts;
    an_events *ev = calloc(1, sizeof(*ev));
    if (!ev)
        abort();
    ev->nc = nc;
    ev->stream = xstrdup(o.stream && *o.stream ? o.stream : AN_EVENTS_STREAM);
    ev->subjects = xstrdup(o.subjects && *o.subjects ? o.subjects : AN_EVENTS_SUBJECTS);
    ev->dup_window_ms = o.duplicate_window_ms > 0 ? o.duplicate_window_ms : 3600 * 1000LL;
    ev->max_age_ms = o.max_age_ms > 0 ? o.max_age_ms : 30 * 24 * 3600 * 1000LL;
    ev->timeout_ms = o.publish_timeout_ms > 0 ? o.publish_timeout_ms : 5000;
    ev->attempts = o.attempts > 0 ? o.attempts : 4;

    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = ev->timeout_ms;
    natsStatus s = natsConnection_JetStream(&ev->js, nc, &jo);
    if (s != NATS_OK) {
        an_status st = an_events_nats_error(err, s, 0, "JetStream context");
        an_events_close(ev);
        return st;
    }
    an_status st = ensure_stream(ev, err);
    if (st != AN_OK) {
        an_events_close(ev);
        return st;
    }
    *out = ev;
    return AN_OK;
}

void an_events_close(an_events *ev)
{
    if (!ev)
        return;
    jsCtx_Destroy(ev->js);
    free(ev->stream);
    free(ev->subjects);
    free(ev);
}

const char *an_events_stream(const an_events *ev)
{
    return ev->stream;
}

/* ------------------------------------------------------------- publishing */

an_status an_events_publish_raw(an_events *ev, const char *subject, const char *msg_id,
                                const char *correlation_id, const void *data, size_t len,
                                an_events_ack *ack, an_error *err)
{
    if (!msg_id || !*msg_id)
        return an_error_field(err, AN_INVALID_ARGUMENT, "id",
                              "an event needs an idempotency key (Nats-Msg-Id)");
    if (len > (size_t)INT32_MAX)
        return an_error_set(err, AN_INVALID_ARGUMENT, "event payload too large");
    natsStatus s = NATS_OK;
    jsErrCode jerr = 0;
    int64_t backoff_ms = 100;
    for (int attempt = 1; attempt <= ev->attempts; attempt++) {
        natsMsg *m = NULL;
        s = natsMsg_Create(&m, subject, NULL, data, (int)len);
        if (s == NATS_OK && correlation_id && *correlation_id)
            s = natsMsgHeader_Set(m, "Correlation-Id", correlation_id);
        if (s != NATS_OK) {
            natsMsg_Destroy(m);
            return an_events_nats_error(err, s, 0, "building the event message");
        }
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MsgId = msg_id; /* sent as Nats-Msg-Id; the same on every attempt */
        po.MaxWait = ev->timeout_ms;
        jsPubAck *pa = NULL;
        jerr = 0;
        s = js_PublishMsg(&pa, ev->js, m, &po, &jerr);
        natsMsg_Destroy(m);
        if (s == NATS_OK) {
            if (ack) {
                ack->seq = pa->Sequence;
                ack->duplicate = pa->Duplicate;
            }
            jsPubAck_Destroy(pa);
            return AN_OK;
        }
        jsPubAck_Destroy(pa);
        bool retry = s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS;
        if (!retry || attempt == ev->attempts)
            break;
        an_warn("publish %s (id %s): %s, attempt %d of %d, retrying", subject, msg_id,
                natsStatus_GetText(s), attempt, ev->attempts);
        nats_Sleep(backoff_ms);
        backoff_ms *= 2;
    }
    return an_events_nats_error(err, s, jerr, "publishing the event");
}

static bool token_ok(const char *s)
{
    if (!s || !*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' || *s == '-'))
            return false;
    return true;
}

an_status an_events_publish(an_events *ev, const an_event *e, an_events_ack *ack, an_error *err)
{
    if (!token_ok(e->aggregate))
        return an_error_field(err, AN_INVALID_ARGUMENT, "aggregate",
                              "event aggregate must match [a-z0-9_-]+");
    if (!token_ok(e->name))
        return an_error_field(err, AN_INVALID_ARGUMENT, "name",
                              "event name must match [a-z0-9_-]+");
    if (!e->id || !*e->id)
        return an_error_field(err, AN_INVALID_ARGUMENT, "id", "an event needs an idempotency key");
    int64_t at = e->occurred_at_ms > 0 ? e->occurred_at_ms : an_time_now_ms();
    char ts[AN_TIME_ISO_LEN], type[160], subject[192];
    if (an_time_format_iso(at, ts, NULL) != AN_OK)
        return an_error_field(err, AN_INVALID_ARGUMENT, "occurred_at_ms",
                              "event time %lld is outside the years 0000-9999", (long long)at);
    snprintf(type, sizeof(type), "%s.%s", e->aggregate, e->name);
    snprintf(subject, sizeof(subject), "analytics.%s.%s.v1", e->aggregate, e->name);

    cJSON *p = cJSON_CreateObject();
    cJSON_AddStringToObject(p, "id", e->id);
    cJSON_AddStringToObject(p, "type", type);
    if (e->tenant_id)
        cJSON_AddStringToObject(p, "tenantId", e->tenant_id);
    else
        cJSON_AddNullToObject(p, "tenantId");
    cJSON_AddStringToObject(p, "occurredAt", ts);
    if (e->correlation_id)
        cJSON_AddStringToObject(p, "correlationId", e->correlation_id);
    else
        cJSON_AddNullToObject(p, "correlationId");
    cJSON *data = e->data ? cJSON_Duplicate(e->data, 1) : cJSON_CreateObject();
    cJSON_AddItemToObject(p, "data", data);
    char *json = cJSON_PrintUnformatted(p);
    cJSON_Delete(p);
    if (!json)
        return an_error_set(err, AN_INTERNAL, "could not serialise the event");
    an_status st =
        an_events_publish_raw(ev, subject, e->id, e->correlation_id, json, strlen(json), ack, err);
    free(json);
    return st;
}
