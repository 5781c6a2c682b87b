#include "ingest/consumer.h"

#include "common/log.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_MS 1000000LL

struct ingest_consumer {
    natsConnection *nc; /* borrowed */
    jsCtx *js;
    natsSubscription *sub;
    ingest_consumer_config cfg;
    char *stream, *consumer, *subjects_text;
    char *split;           /* subjects_text with NULs between the subjects */
    const char **subjects; /* points into split */
    int nsubjects;
};

static char *xstrdup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p)
        abort();
    return p;
}

static an_status nats_error(an_error *err, natsStatus s, jsErrCode jerr, const char *what)
{
    an_status code = (s == NATS_TIMEOUT || s == NATS_NO_RESPONDERS || s == NATS_CONNECTION_CLOSED ||
                      s == NATS_CONNECTION_DISCONNECTED || jerr == JSNotEnabledErr)
                         ? AN_UNAVAILABLE
                         : AN_FAILED_PRECONDITION;
    const char *last = nats_GetLastError(NULL);
    return an_error_set(err, code, "%s: %s (jetstream error %d)%s%s", what, natsStatus_GetText(s),
                        (int)jerr, last ? ": " : "", last ? last : "");
}

/* ------------------------------------------------------------- stream */

static void stream_config(const ingest_consumer *c, jsStreamConfig *cfg)
{
    jsStreamConfig_Init(cfg);
    cfg->Name = c->stream;
    cfg->Description = "firehose of domain events, read by analytics ingest";
    cfg->Subjects = c->subjects;
    cfg->SubjectsLen = c->nsubjects;
    cfg->Storage = js_FileStorage;
    cfg->Retention = js_LimitsPolicy;
    cfg->Discard = js_DiscardOld;
    cfg->MaxAge = c->cfg.max_age_ms * NS_PER_MS;
    cfg->MaxBytes = c->cfg.max_bytes > 0 ? c->cfg.max_bytes : -1;
    cfg->MaxMsgs = c->cfg.max_msgs > 0 ? c->cfg.max_msgs : -1;
    cfg->Duplicates = c->cfg.duplicate_window_ms * NS_PER_MS;
    cfg->Replicas = c->cfg.replicas > 0 ? c->cfg.replicas : 1;
}

static bool same_subjects(const jsStreamConfig *a, const jsStreamConfig *b)
{
    if (a->SubjectsLen != b->SubjectsLen)
        return false;
    for (int i = 0; i < a->SubjectsLen; i++) {
        bool found = false;
        for (int j = 0; j < b->SubjectsLen && !found; j++)
            found = strcmp(a->Subjects[i], b->Subjects[j]) == 0;
        if (!found)
            return false;
    }
    return true;
}

static bool stream_differs(const jsStreamConfig *want, const jsStreamConfig *have)
{
    return !same_subjects(want, have) || want->MaxAge != have->MaxAge ||
           want->MaxBytes != have->MaxBytes || want->MaxMsgs != have->MaxMsgs ||
           want->Duplicates != have->Duplicates || want->Discard != have->Discard;
}

static an_status ensure_stream(ingest_consumer *c, an_error *err)
{
    jsStreamConfig want;
    stream_config(c, &want);
    for (int round = 0; round < 2; round++) {
        jsStreamInfo *si = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetStreamInfo(&si, c->js, c->stream, NULL, &jerr);
        if (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr) {
            jsErrCode aerr = 0;
            s = js_AddStream(&si, c->js, &want, NULL, &aerr);
            jsStreamInfo_Destroy(si);
            if (s == NATS_OK) {
                an_info("created JetStream stream %s capturing %s", c->stream, c->subjects_text);
                return AN_OK;
            }
            if (round == 0) /* another replica may have created it meanwhile */
                continue;
            return nats_error(err, s, aerr, "creating the firehose stream");
        }
        if (s != NATS_OK)
            return nats_error(err, s, jerr, "reading the firehose stream");
        bool differs = stream_differs(&want, si->Config);
        jsStreamInfo_Destroy(si);
        if (!differs)
            return AN_OK;
        jsStreamInfo *updated = NULL;
        s = js_UpdateStream(&updated, c->js, &want, NULL, &jerr);
        jsStreamInfo_Destroy(updated);
        if (s != NATS_OK)
            return nats_error(err, s, jerr, "updating the firehose stream");
        an_info("updated JetStream stream %s to capture %s with the configured limits", c->stream,
                c->subjects_text);
        return AN_OK;
    }
    return an_error_set(err, AN_UNAVAILABLE, "firehose stream %s: gave up", c->stream);
}

/* ----------------------------------------------------------- consumer */

static void consumer_config(const ingest_consumer *c, jsConsumerConfig *cc)
{
    jsConsumerConfig_Init(cc);
    cc->Durable = c->consumer;
    cc->Description = "analytics ingest (shared by every replica)";
    cc->DeliverPolicy = js_DeliverAll;
    cc->AckPolicy = js_AckExplicit;
    cc->AckWait = c->cfg.ack_wait_ms * NS_PER_MS;
    cc->MaxDeliver = -1; /* never give up a message: bad ones are dead-lettered and acked */
    cc->MaxAckPending = c->cfg.max_ack_pending;
    cc->ReplayPolicy = js_ReplayInstant;
}

static an_status ensure_consumer(ingest_consumer *c, an_error *err)
{
    jsConsumerConfig want;
    consumer_config(c, &want);
    for (int round = 0; round < 2; round++) {
        jsConsumerInfo *ci = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetConsumerInfo(&ci, c->js, c->stream, c->consumer, NULL, &jerr);
        if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr) {
            jsErrCode aerr = 0;
            s = js_AddConsumer(&ci, c->js, c->stream, &want, NULL, &aerr);
            jsConsumerInfo_Destroy(ci);
            if (s == NATS_OK) {
                an_info("created durable pull consumer %s on %s", c->consumer, c->stream);
                return AN_OK;
            }
            if (round == 0)
                continue;
            return nats_error(err, s, aerr, "creating the ingest consumer");
        }
        if (s != NATS_OK)
            return nats_error(err, s, jerr, "reading the ingest consumer");
        bool differs =
            ci->Config->AckWait != want.AckWait || ci->Config->MaxAckPending != want.MaxAckPending;
        bool push = ci->Config->DeliverSubject && *ci->Config->DeliverSubject;
        jsConsumerInfo_Destroy(ci);
        if (push)
            return an_error_set(err, AN_FAILED_PRECONDITION,
                                "consumer %s on %s is a push consumer; ingest needs a pull "
                                "consumer (delete it or choose ANALYTICS_INGEST_CONSUMER)",
                                c->consumer, c->stream);
        if (!differs)
            return AN_OK;
        jsConsumerInfo *updated = NULL;
        s = js_UpdateConsumer(&updated, c->js, c->stream, &want, NULL, &jerr);
        jsConsumerInfo_Destroy(updated);
        if (s != NATS_OK) /* an older server may refuse: run with what exists */
            an_warn("could not update consumer %s to ack wait %lld ms / max ack pending %lld: %s",
                    c->consumer, (long long)c->cfg.ack_wait_ms, (long long)c->cfg.max_ack_pending,
                    natsStatus_GetText(s));
        else
            an_info("updated consumer %s: ack wait %lld ms, max ack pending %lld", c->consumer,
                    (long long)c->cfg.ack_wait_ms, (long long)c->cfg.max_ack_pending);
        return AN_OK;
    }
    return an_error_set(err, AN_UNAVAILABLE, "consumer %s: gave up", c->consumer);
}

static an_status subscribe(ingest_consumer *c, an_error *err)
{
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = c->stream;
    so.Consumer = c->consumer;
    jsErrCode jerr = 0;
    natsStatus s = js_PullSubscribe(&c->sub, c->js, c->subjects[0], c->consumer, NULL, &so, &jerr);
    if (s != NATS_OK)
        return nats_error(err, s, jerr, "binding to the ingest consumer");
    /* The fetched messages wait here until the fetch returns: no limit
     * beyond the fetch size, which bounds them already. */
    natsSubscription_SetPendingLimits(c->sub, -1, -1);
    return AN_OK;
}

an_status ingest_consumer_open(natsConnection *nc, const ingest_consumer_config *cfg,
                               ingest_consumer **out, an_error *err)
{
    ingest_consumer *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->nc = nc;
    c->cfg = *cfg;
    c->stream = xstrdup(cfg->stream);
    c->consumer = xstrdup(cfg->consumer);
    c->subjects_text = xstrdup(cfg->subjects);
    c->cfg.stream = c->stream;
    c->cfg.consumer = c->consumer;
    c->cfg.subjects = c->subjects_text;
    /* split "a, b,c" into a second copy, NUL-separated */
    c->split = xstrdup(cfg->subjects);
    int n = 1;
    for (char *p = c->split; *p; p++)
        n += *p == ',';
    c->subjects = calloc((size_t)n + 1, sizeof(char *));
    if (!c->subjects)
        abort();
    char *save = NULL;
    for (char *tok = strtok_r(c->split, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save))
        c->subjects[c->nsubjects++] = tok;
    if (c->nsubjects == 0) {
        ingest_consumer_close(c);
        return an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_INGEST_SUBJECTS",
                              "ANALYTICS_INGEST_SUBJECTS has no subject");
    }
    natsStatus s = natsConnection_JetStream(&c->js, nc, NULL);
    an_status st = s == NATS_OK ? AN_OK : nats_error(err, s, 0, "JetStream context");
    if (st == AN_OK)
        st = ensure_stream(c, err);
    if (st == AN_OK)
        st = ensure_consumer(c, err);
    if (st == AN_OK)
        st = subscribe(c, err);
    if (st != AN_OK) {
        ingest_consumer_close(c);
        return st;
    }
    *out = c;
    return AN_OK;
}

void ingest_consumer_close(ingest_consumer *c)
{
    if (!c)
        return;
    /* Destroy without Unsubscribe: since nats.c 3.4 that never deletes the
     * consumer, and ours was created by ensure_consumer anyway. */
    natsSubscription_Destroy(c->sub);
    jsCtx_Destroy(c->js);
    free(c->subjects);
    free(c->split);
    free(c->stream);
    free(c->consumer);
    free(c->subjects_text);
    free(c);
}

an_status ingest_consumer_reopen(ingest_consumer *c, an_error *err)
{
    natsSubscription_Destroy(c->sub);
    c->sub = NULL;
    an_status st = ensure_stream(c, err);
    if (st == AN_OK)
        st = ensure_consumer(c, err);
    if (st == AN_OK)
        st = subscribe(c, err);
    return st;
}

/* One pull request: batch messages at most, max_bytes (0: no limit), either
 * no_wait or waiting up to timeout_ms. */
static natsStatus pull(ingest_consumer *c, natsMsgList *list, int batch, int64_t max_bytes,
                       bool no_wait, int64_t timeout_ms)
{
    jsFetchRequest req;
    jsFetchRequest_Init(&req);
    req.Batch = batch;
    req.MaxBytes = max_bytes;
    req.NoWait = no_wait;
    if (!no_wait)
        req.Expires = (timeout_ms > 0 ? timeout_ms : 1) * NS_PER_MS;
    return natsSubscription_FetchRequest(list, c->sub, &req);
}

an_status ingest_consumer_fetch(ingest_consumer *c, int max, int64_t max_bytes, int64_t timeout_ms,
                                natsMsgList *list, an_error *err)
{
    memset(list, 0, sizeof(*list));
    if (!c->sub)
        return an_error_set(err, AN_UNAVAILABLE, "not subscribed to the ingest consumer");
    /* As natsSubscription_Fetch does: take what is there at once, and only
     * when nothing is, wait for messages; plus the byte budget. */
    natsStatus s = pull(c, list, max, max_bytes, true, 0);
    if (list->Count == 0 && (s == NATS_OK || s == NATS_NOT_FOUND || s == NATS_TIMEOUT))
        s = pull(c, list, max, max_bytes, false, timeout_ms);
    if (list->Count == 0 && s == NATS_ERR && max_bytes > 0) {
        /* a 409: the next message alone is larger than the budget; take it alone */
        s = pull(c, list, 1, 0, true, 0);
    }
    if (list->Count > 0 || s == NATS_OK || s == NATS_TIMEOUT || s == NATS_NOT_FOUND)
        return AN_OK;
    an_status st = nats_error(err, s, 0, "fetching from the ingest consumer");
    return st == AN_FAILED_PRECONDITION ? AN_UNAVAILABLE : st;
}

an_status ingest_consumer_info(ingest_consumer *c, uint64_t *num_pending, int64_t *num_ack_pending,
                               an_error *err)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, c->js, c->stream, c->consumer, NULL, &jerr);
    if (s != NATS_OK)
        return nats_error(err, s, jerr, "reading the ingest consumer");
    *num_pending = ci->NumPending;
    *num_ack_pending = ci->NumAckPending;
    jsConsumerInfo_Destroy(ci);
    return AN_OK;
}

static void send(ingest_consumer *c, const char *reply, const char *what)
{
    if (reply && *reply)
        natsConnection_Publish(c->nc, reply, what, (int)strlen(what));
}

void ingest_consumer_ack(ingest_consumer *c, const char *reply)
{
    send(c, reply, "+ACK");
}

void ingest_consumer_progress(ingest_consumer *c, const char *reply)
{
    send(c, reply, "+WPI");
}

void ingest_consumer_nak(ingest_consumer *c, const char *reply)
{
    send(c, reply, "-NAK");
}
