#include "ingest/consumer.h"

#include "common/events.h"
#include "common/log.h"

#include "common/timeutil.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NS_PER_MS 1000000LL

#define MAX_REQUESTS  2    /* pull requests kept open at once (pipelining) */
#define REQUEST_LIFE  1000 /* ms a pull request waits at the server */
#define REQUEST_GRACE 2000 /* ms after which an unanswered request is forgotten */

/* A pull request sent and not finished yet. */
typedef struct pull_request {
    uint64_t id;       /* its reply subject is <inbox>.<id> */
    int credit;        /* messages it may still bring */
    int64_t forget_at; /* monotonic ms: no end status came (lost on a reconnect) */
} pull_request;

struct ingest_consumer {
    natsConnection *nc; /* borrowed */
    jsCtx *js;
    natsSubscription *sub; /* synchronous, on <inbox>.* */
    char inbox[128];
    char next_subject[512]; /* $JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer> */
    uint64_t next_id;
    pull_request reqs[MAX_REQUESTS];
    int nreqs;
    ingest_consumer_config cfg;
    char *stream, *consumer, *subjects_text;
    char *split;           /* subjects_text with NULs between the subjects */
    const char **subjects; /* points into split */
    int nsubjects;
    /* Stream sequences up to this one may be stored already although the
     * consumer delivers them for the first time: it was created on a stream
     * that held them (recorded in its description for every replica). */
    _Atomic uint64_t maybe_stored_through;
    /* The same after a reconnect (the fetcher's thread only): nats-server
     * may have restarted with an older consumer state (a crash loses what
     * it had not flushed) and deliver stored messages again as new. Up to
     * the stream's last sequence once the reconnect was seen; everything
     * while that is not known yet (unsure). A reconnect to the very server
     * process it left (same server id: a network blip) needs none of it. */
    natsStatistics *stats;
    uint64_t reconnects_seen, reconnect_mark;
    bool unsure;
    char server_id[128]; /* of the server connected to when last looked */
    /* Where every replica records the server it last saw (see
     * adopt_server_mark); NULL when the bucket could not be opened. */
    kvStore *kv;
    char kv_key[256];
    /* The consumer went away under this replica (its pull requests were
     * refused), or may have while it was cut off: another replica may
     * create it again, with a mark of its own, before this one reads it.
     * Every message is looked up until this replica has read the
     * consumer's mark itself (fetcher's thread). */
    bool mark_stale;
};

static char *xstrdup(const char *s)
{
    char *p = strdup(s ? s : "");
    if (!p)
        abort();
    return p;
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
           want->Duplicates != have->Duplicates || want->Discard != have->Discard ||
           want->Replicas != (have->Replicas > 0 ? have->Replicas : 1);
}

/* A single nats-server takes any replica count into the stream's
 * configuration and keeps one copy: count the copies it reports (the
 * leader and its peers) and say when they are fewer. */
static void check_replicas(const ingest_consumer *c, const jsStreamInfo *si, int64_t want)
{
    if (!si || want <= 1)
        return;
    int64_t have = 1 + (si->Cluster ? si->Cluster->ReplicasLen : 0);
    if (have < want)
        an_warn("JetStream stream %s has %lld replica(s), not the %lld of "
                "ANALYTICS_INGEST_STREAM_REPLICAS (more than 1 needs clustered JetStream)",
                c->stream, (long long)have, (long long)want);
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
            if (s == NATS_OK)
                check_replicas(c, si, want.Replicas);
            jsStreamInfo_Destroy(si);
            if (s == NATS_OK) {
                an_info("created JetStream stream %s capturing %s", c->stream, c->subjects_text);
                return AN_OK;
            }
            if (round == 0) /* another replica may have created it meanwhile */
                continue;
            return an_events_nats_error(err, s, aerr, "creating the firehose stream");
        }
        if (s != NATS_OK)
            return an_events_nats_error(err, s, jerr, "reading the firehose stream");
        bool differs = stream_differs(&want, si->Config);
        if (!differs)
            check_replicas(c, si, want.Replicas);
        /* what JetStream cannot change on an existing stream */
        if (si->Config->Storage != want.Storage || si->Config->Retention != want.Retention)
            an_warn("JetStream stream %s was made with %s storage and %s retention; ingest "
                    "expects file storage and limits retention (not changed: delete the stream "
                    "to have ingest create it)",
                    c->stream, si->Config->Storage == js_FileStorage ? "file" : "memory",
                    si->Config->Retention == js_LimitsPolicy     ? "limits"
                    : si->Config->Retention == js_InterestPolicy ? "interest"
                                                                 : "work-queue");
        jsStreamInfo_Destroy(si);
        if (!differs)
            return AN_OK;
        jsStreamInfo *updated = NULL;
        s = js_UpdateStream(&updated, c->js, &want, NULL, &jerr);
        if (s == NATS_OK)
            check_replicas(c, updated, want.Replicas);
        jsStreamInfo_Destroy(updated);
        if (s != NATS_OK)
            return an_events_nats_error(err, s, jerr, "updating the firehose stream");
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

/* A consumer created on a stream that already holds messages (deleted and
 * created again, or a new ANALYTICS_INGEST_CONSUMER name) delivers them all
 * as first deliveries, yet an earlier consumer may have stored them. Its
 * description records the stream's last sequence at creation, so every
 * replica looks those messages up before inserting them, like redeliveries. */
#define MAYBE_STORED_MARK "; stream seq <= "

/* nats.c's count of reconnects of the connection. */
static uint64_t reconnects(ingest_consumer *c)
{
    uint64_t n = 0;
    if (natsConnection_GetStats(c->nc, c->stats) == NATS_OK)
        natsStatistics_GetCounts(c->stats, NULL, NULL, NULL, NULL, &n);
    return n;
}

/* Take the mark from the consumer's description (0: none). */
static void read_mark(ingest_consumer *c, const jsConsumerInfo *ci)
{
    const char *d = ci->Config ? ci->Config->Description : NULL;
    const char *at = d ? strstr(d, MAYBE_STORED_MARK) : NULL;
    atomic_store(&c->maybe_stored_through,
                 at ? strtoull(at + strlen(MAYBE_STORED_MARK), NULL, 10) : 0);
}

/* The id of the server the connection is on now ("" when not known). A
 * nats-server makes a new one each time it starts. */
static void server_id(ingest_consumer *c, char out[sizeof(c->server_id)])
{
    if (natsConnection_GetConnectedServerId(c->nc, out, sizeof(c->server_id)) != NATS_OK)
        out[0] = '\0';
}

/* ------------------------------------------------ the server last seen */

/* A nats-server that crashed may come back with an older state of the
 * consumer than it had acknowledged (it writes that state a little after
 * the acks) and deliver stored messages again as new. A replica connected
 * at the time sees the server id change (note_reconnects); one starting
 * afterwards could not tell. So every replica records, in a JetStream
 * key-value bucket, the server id it works with and the stream's last
 * sequence when that server was first seen: "<server id> <seq>". A replica
 * that finds another id (or none) takes the stream's last sequence as the
 * mark up to which first deliveries are looked up and records it; one
 * that finds its own server's id takes the mark recorded with it (another
 * replica may have seen the change first). Any reading taken after the
 * restart covers every message that came again, so a later, larger mark
 * overwriting a smaller one only looks up more. */
#define KV_BUCKET "ANALYTICS_INGEST"

static void open_kv(ingest_consumer *c)
{
    /* key: "<stream>.<consumer>.server", other characters than a key takes as '_' */
    size_t n =
        (size_t)snprintf(c->kv_key, sizeof(c->kv_key), "%s.%s.server", c->stream, c->consumer);
    for (size_t i = 0; i < n && i < sizeof(c->kv_key); i++) {
        char ch = c->kv_key[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_' || ch == '.'))
            c->kv_key[i] = '_';
    }
    kvConfig kc;
    kvConfig_Init(&kc);
    kc.Bucket = KV_BUCKET;
    kc.Description = "analytics ingest: the nats-server each consumer was last seen on";
    kc.History = 1;
    kc.MaxValueSize = 1024;
    kc.StorageType = js_FileStorage;
    kc.Replicas = c->cfg.replicas > 0 ? (int)c->cfg.replicas : 1;
    natsStatus s = js_CreateKeyValue(&c->kv, c->js, &kc);
    if (s != NATS_OK) /* there already, with another configuration */
        s = js_KeyValue(&c->kv, c->js, KV_BUCKET);
    if (s != NATS_OK) {
        c->kv = NULL;
        an_warn("cannot open the JetStream key-value bucket %s (%s): every start looks up what "
                "the stream holds so far",
                KV_BUCKET, natsStatus_GetText(s));
    }
}

/* The stream's last sequence (0: it holds nothing). */
static an_status stream_last_seq(ingest_consumer *c, uint64_t *last, an_error *err)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, c->js, c->stream, NULL, &jerr);
    if (s != NATS_OK)
        return an_events_nats_error(err, s, jerr, "reading the firehose stream");
    *last = si->State.Msgs ? si->State.LastSeq : 0;
    jsStreamInfo_Destroy(si);
    return AN_OK;
}

/* The mark recorded with server id, or set one (and say so when loud):
 * see above. */
static an_status adopt_server_mark(ingest_consumer *c, const char *id, bool loud, an_error *err)
{
    size_t idn = strlen(id);
    kvEntry *e = NULL;
    if (c->kv && idn && kvStore_Get(&e, c->kv, c->kv_key) == NATS_OK) {
        const char *v = kvEntry_ValueString(e);
        bool ours = v && strncmp(v, id, idn) == 0 && v[idn] == ' ';
        uint64_t mark = ours ? strtoull(v + idn + 1, NULL, 10) : 0;
        kvEntry_Destroy(e);
        if (ours) {
            if (mark > c->reconnect_mark)
                c->reconnect_mark = mark;
            return AN_OK;
        }
    }
    uint64_t last;
    an_status st = stream_last_seq(c, &last, err);
    if (st != AN_OK)
        return st;
    if (last > c->reconnect_mark)
        c->reconnect_mark = last;
    if (c->kv && idn) {
        char v[sizeof(c->server_id) + 24];
        snprintf(v, sizeof(v), "%s %llu", id, (unsigned long long)c->reconnect_mark);
        if (kvStore_PutString(NULL, c->kv, c->kv_key, v) != NATS_OK)
            an_warn("cannot record the nats-server in %s: the next start looks up again",
                    KV_BUCKET);
    }
    if (loud && last)
        an_warn("nats-server %s is not the one ingest last recorded for consumer %s (it may "
                "have restarted with an older consumer state): messages up to stream seq %llu "
                "are looked up in ClickHouse before they are inserted",
                idn ? id : "(unknown)", c->consumer, (unsigned long long)last);
    return AN_OK;
}

/* After fetching: a reconnect since the last call makes every message up to
 * the stream's last sequence (read now, so it covers what was just fetched)
 * one to look up; until that is read, every message is. Not when the
 * connection came back to the same server process: its consumer state
 * never went away. */
static void note_reconnects(ingest_consumer *c)
{
    uint64_t n = reconnects(c);
    if (n == c->reconnects_seen && !c->unsure)
        return;
    c->unsure = true;
    c->reconnects_seen = n;
    if (natsConnection_Status(c->nc) != NATS_CONN_STATUS_CONNECTED)
        return;
    char id[sizeof(c->server_id)];
    server_id(c, id);
    bool same = id[0] && strcmp(id, c->server_id) == 0;
    if (reconnects(c) != n)
        return; /* reconnected again meanwhile: the id may be of either server */
    if (same) {
        /* its pull requests may now reach a consumer another replica
         * created while this one was away (the 409 went to the lost
         * connection): the consumer's mark is read again (reread_mark) */
        c->unsure = false;
        c->mark_stale = true;
        an_info("reconnected to NATS, to the same nats-server (%s): its consumer state is "
                "intact, nothing to look up",
                id);
        return;
    }
    if (adopt_server_mark(c, id, false, NULL) != AN_OK || reconnects(c) != n)
        return; /* again on the next call (or reconnected again meanwhile) */
    memcpy(c->server_id, id, sizeof(id));
    c->unsure = false;
    an_warn("reconnected to NATS: messages up to stream seq %llu are looked up in ClickHouse "
            "before they are inserted (a restarted nats-server may deliver stored ones again as "
            "new)",
            (unsigned long long)c->reconnect_mark);
}

/* After fetching (and note_reconnects), while the mark is stale: read the
 * consumer's (once it exists again). */
static void reread_mark(ingest_consumer *c)
{
    if (!c->mark_stale || natsConnection_Status(c->nc) != NATS_CONN_STATUS_CONNECTED)
        return;
    jsConsumerInfo *ci = NULL;
    if (js_GetConsumerInfo(&ci, c->js, c->stream, c->consumer, NULL, NULL) != NATS_OK)
        return; /* not there yet, or NATS away: again on the next call */
    read_mark(c, ci);
    jsConsumerInfo_Destroy(ci);
    c->mark_stale = false;
    an_info("consumer %s is there again: read its mark (stream seq <= %llu looked up)", c->consumer,
            (unsigned long long)atomic_load(&c->maybe_stored_through));
}

static an_status ensure_consumer(ingest_consumer *c, an_error *err)
{
    jsConsumerConfig want;
    consumer_config(c, &want);
    char description[192];
    for (int round = 0; round < 2; round++) {
        jsConsumerInfo *ci = NULL;
        jsErrCode jerr = 0;
        natsStatus s = js_GetConsumerInfo(&ci, c->js, c->stream, c->consumer, NULL, &jerr);
        if (s == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr) {
            uint64_t last;
            an_status st = stream_last_seq(c, &last, err);
            if (st != AN_OK)
                return st;
            if (last) {
                snprintf(description, sizeof(description),
                         "%s" MAYBE_STORED_MARK "%llu may be stored already: looked up",
                         want.Description, (unsigned long long)last);
                want.Description = description;
            }
            jsErrCode aerr = 0;
            s = js_AddConsumer(&ci, c->js, c->stream, &want, NULL, &aerr);
            if (s == NATS_OK) {
                read_mark(c, ci);
                jsConsumerInfo_Destroy(ci);
                if (last)
                    an_warn("created durable pull consumer %s on %s, which holds messages up to "
                            "seq %llu: an earlier consumer may have stored them, so they are "
                            "looked up in ClickHouse before they are inserted",
                            c->consumer, c->stream, (unsigned long long)last);
                else
                    an_info("created durable pull consumer %s on %s", c->consumer, c->stream);
                return AN_OK;
            }
            jsConsumerInfo_Destroy(ci);
            if (round == 0)
                continue;
            return an_events_nats_error(err, s, aerr, "creating the ingest consumer");
        }
        if (s != NATS_OK)
            return an_events_nats_error(err, s, jerr, "reading the ingest consumer");
        bool differs =
            ci->Config->AckWait != want.AckWait || ci->Config->MaxAckPending != want.MaxAckPending;
        bool push = ci->Config->DeliverSubject && *ci->Config->DeliverSubject;
        read_mark(c, ci);
        if (differs && ci->Config->Description) { /* the update keeps the mark */
            snprintf(description, sizeof(description), "%s", ci->Config->Description);
            want.Description = description;
        }
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

/* ingest speaks the pull protocol itself (ADR-13) instead of through
 * natsSubscription_Fetch: nats.c 3.4.1 corrupted its heap under our load
 * (a double free in natsMsgList_Destroy after fetches), and doing it here
 * lets two requests stay open so messages flow while a batch is built.
 * Messages come on a plain synchronous subscription to <inbox>.*: data
 * messages carry their $JS.ACK subject as reply, the server's status
 * messages (404 no messages, 408 expired, 409 ...) carry none and arrive
 * on the reply subject of the request they end. */
static an_status subscribe(ingest_consumer *c, an_error *err)
{
    natsInbox *inbox = NULL;
    natsStatus s = natsInbox_Create(&inbox);
    if (s == NATS_OK) {
        snprintf(c->inbox, sizeof(c->inbox), "%s", (const char *)inbox);
        natsInbox_Destroy(inbox);
        char subject[160];
        snprintf(subject, sizeof(subject), "%s.*", c->inbox);
        s = natsConnection_SubscribeSync(&c->sub, c->nc, subject);
    }
    if (s != NATS_OK)
        return an_events_nats_error(err, s, 0, "subscribing to the pull inbox");
    /* bounded by the requests' credit, not by nats.c's limits */
    natsSubscription_SetPendingLimits(c->sub, -1, -1);
    snprintf(c->next_subject, sizeof(c->next_subject), "$JS.API.CONSUMER.MSG.NEXT.%s.%s", c->stream,
             c->consumer);
    c->nreqs = 0;
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
    if (natsStatistics_Create(&c->stats) != NATS_OK)
        abort();
    c->reconnects_seen = reconnects(c);
    server_id(c, c->server_id);
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
    /* JetStream API calls on the fetcher's thread (the reconnect mark, a
     * re-bind) must not hold it near the ack wait: a quarter of it, within
     * 1-5 s */
    jsOptions jo;
    jsOptions_Init(&jo);
    int64_t quarter = cfg->ack_wait_ms / 4;
    jo.Wait = quarter < 1000 ? 1000 : quarter > 5000 ? 5000 : quarter;
    natsStatus s = natsConnection_JetStream(&c->js, nc, &jo);
    an_status st = s == NATS_OK ? AN_OK : an_events_nats_error(err, s, 0, "JetStream context");
    if (st == AN_OK)
        st = ensure_stream(c, err);
    if (st == AN_OK)
        st = ensure_consumer(c, err);
    if (st == AN_OK) {
        open_kv(c);
        st = adopt_server_mark(c, c->server_id, true, err);
    }
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
    if (c->sub) {
        /* what the open requests still bring goes back at once (NAK)
         * instead of waiting out the ack wait */
        natsMsg *m = NULL;
        int64_t until = an_time_mono_ms() + 100;
        while (c->nreqs && an_time_mono_ms() < until &&
               natsSubscription_NextMsg(&m, c->sub, 20) == NATS_OK) {
            const char *reply = natsMsg_GetReply(m);
            if (reply && strncmp(reply, "$JS.ACK.", 8) == 0)
                ingest_consumer_reply(c, reply, INGEST_REPLY_NAK);
            natsMsg_Destroy(m);
        }
        natsSubscription_Unsubscribe(c->sub);
    }
    natsSubscription_Destroy(c->sub);
    kvStore_Destroy(c->kv);
    jsCtx_Destroy(c->js);
    free(c->subjects);
    free(c->split);
    free(c->stream);
    free(c->consumer);
    free(c->subjects_text);
    natsStatistics_Destroy(c->stats);
    free(c);
}

an_status ingest_consumer_reopen(ingest_consumer *c, an_error *err)
{
    if (c->sub)
        natsSubscription_Unsubscribe(c->sub);
    natsSubscription_Destroy(c->sub);
    c->sub = NULL;
    an_status st = ensure_stream(c, err);
    if (st == AN_OK)
        st = ensure_consumer(c, err);
    if (st == AN_OK)
        c->mark_stale = false; /* ensure_consumer read it */
    if (st == AN_OK)
        st = subscribe(c, err);
    return st;
}

static int credit(const ingest_consumer *c)
{
    int n = 0;
    for (int i = 0; i < c->nreqs; i++)
        n += c->reqs[i].credit;
    return n;
}

static void drop_request(ingest_consumer *c, int i)
{
    c->reqs[i] = c->reqs[--c->nreqs];
}

/* Open pull requests until MAX_REQUESTS are open or they may bring 2 x max
 * messages. None while the connection is down: nats.c would buffer them and
 * send them all at the reconnect, each bringing up to max messages at once. */
static natsStatus top_up(ingest_consumer *c, int max, int64_t max_bytes, int64_t now)
{
    for (int i = 0; i < c->nreqs;)
        if (now >= c->reqs[i].forget_at)
            drop_request(c, i);
        else
            i++;
    if (natsConnection_Status(c->nc) != NATS_CONN_STATUS_CONNECTED)
        return NATS_OK;
    while (c->nreqs < MAX_REQUESTS && credit(c) < 2 * max) {
        pull_request *r = &c->reqs[c->nreqs];
        r->id = ++c->next_id;
        r->credit = max;
        r->forget_at = now + REQUEST_LIFE + REQUEST_GRACE;
        char reply[192], body[160];
        snprintf(reply, sizeof(reply), "%s.%llu", c->inbox, (unsigned long long)r->id);
        int n = max_bytes > 0 ? snprintf(body, sizeof(body),
                                         "{\"batch\":%d,\"expires\":%lld,\"max_bytes\":%lld}", max,
                                         (long long)REQUEST_LIFE * NS_PER_MS, (long long)max_bytes)
                              : snprintf(body, sizeof(body), "{\"batch\":%d,\"expires\":%lld}", max,
                                         (long long)REQUEST_LIFE * NS_PER_MS);
        natsStatus s = natsConnection_PublishRequest(c->nc, c->next_subject, reply, body, n);
        if (s != NATS_OK)
            return s;
        c->nreqs++;
    }
    return NATS_OK;
}

/* A status message ended the request it answers (or was a heartbeat).
 * Returns an error for the statuses that mean the consumer is gone. */
static an_status on_status(ingest_consumer *c, natsMsg *m, an_error *err)
{
    const char *code = NULL, *desc = NULL;
    natsMsgHeader_Get(m, "Status", &code);
    natsMsgHeader_Get(m, "Description", &desc);
    if (code && strcmp(code, "100") == 0)
        return AN_OK; /* idle heartbeat */
    const char *subject = natsMsg_GetSubject(m);
    const char *dot = subject ? strrchr(subject, '.') : NULL;
    uint64_t id = dot ? strtoull(dot + 1, NULL, 10) : 0;
    for (int i = 0; i < c->nreqs; i++)
        if (c->reqs[i].id == id) {
            drop_request(c, i);
            break;
        }
    if (code && strcmp(code, "409") == 0 && desc &&
        (strstr(desc, "Consumer Deleted") || strstr(desc, "Consumer is push based"))) {
        c->mark_stale = true;
        return an_error_set(err, AN_UNAVAILABLE, "pull request refused: 409 %s", desc);
    }
    if (code && strcmp(code, "503") == 0) { /* no responders: no such consumer (or no JetStream) */
        c->mark_stale = true;
        return an_error_set(err, AN_UNAVAILABLE, "JetStream is not available (503)");
    }
    return AN_OK;
}

an_status ingest_consumer_fetch(ingest_consumer *c, int max, int64_t max_bytes, int64_t timeout_ms,
                                bool more_requests, natsMsgList *list, an_error *err)
{
    memset(list, 0, sizeof(*list));
    if (!c->sub)
        return an_error_set(err, AN_UNAVAILABLE, "not subscribed to the ingest consumer");
    if (max < 1)
        max = 1;
    /* two requests may each bring max_bytes / 2: about max_bytes in all;
     * but never less than the largest message the server takes (its
     * max_payload, with room for subject and headers), which would otherwise
     * be refused by every request ("409 Message Size Exceeds MaxBytes") and
     * block the stream */
    int64_t least = (int64_t)natsConnection_GetMaxPayload(c->nc) + 65536;
    int64_t per_request = max_bytes > 0 ? (max_bytes / 2 > least ? max_bytes / 2 : least) : 0;
    int64_t now = an_time_mono_ms(), deadline = now + (timeout_ms > 0 ? timeout_ms : 0);
    natsStatus s = more_requests ? top_up(c, max, per_request, now) : NATS_OK;
    if (s != NATS_OK)
        return an_events_nats_error(err, s, 0, "sending a pull request");
    natsMsg **msgs = malloc((size_t)max * sizeof(natsMsg *));
    if (!msgs)
        abort();
    int count = 0;
    an_status st = AN_OK;
    while (count < max) {
        now = an_time_mono_ms();
        /* with messages in hand, take only what is queued already */
        int64_t wait = count ? 0 : deadline - now;
        if (wait < 0)
            break;
        natsMsg *m = NULL;
        s = natsSubscription_NextMsg(&m, c->sub, wait);
        if (s == NATS_TIMEOUT)
            break;
        if (s != NATS_OK) {
            st = an_events_nats_error(err, s, 0, "reading pulled messages");
            break;
        }
        const char *reply = natsMsg_GetReply(m);
        if (reply && strncmp(reply, "$JS.ACK.", 8) == 0) {
            msgs[count++] = m;
            /* the server fills the oldest request first */
            if (c->nreqs && --c->reqs[0].credit <= 0)
                drop_request(c, 0);
            continue;
        }
        st = on_status(c, m, err);
        natsMsg_Destroy(m);
        if (st != AN_OK)
            break;
        s = more_requests ? top_up(c, max, per_request, an_time_mono_ms()) : NATS_OK;
        if (s != NATS_OK) {
            st = an_events_nats_error(err, s, 0, "sending a pull request");
            break;
        }
    }
    note_reconnects(c);
    reread_mark(c);
    if (count) {
        list->Msgs = msgs;
        list->Count = count;
        return AN_OK; /* an error after messages comes again on the next call */
    }
    free(msgs);
    return st;
}

an_status ingest_consumer_info(ingest_consumer *c, uint64_t *num_pending, int64_t *num_ack_pending,
                               an_error *err)
{
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetConsumerInfo(&ci, c->js, c->stream, c->consumer, NULL, &jerr);
    if (s != NATS_OK)
        return an_events_nats_error(err, s, jerr, "reading the ingest consumer");
    *num_pending = ci->NumPending;
    *num_ack_pending = ci->NumAckPending;
    /* another replica may have created the consumer again meanwhile (this
     * one's pull requests then go to the new consumer without an error) */
    read_mark(c, ci);
    jsConsumerInfo_Destroy(ci);
    return AN_OK;
}

uint64_t ingest_consumer_maybe_stored_through(ingest_consumer *c)
{
    if (c->unsure || c->mark_stale)
        return UINT64_MAX;
    uint64_t mark = atomic_load_explicit(&c->maybe_stored_through, memory_order_relaxed);
    return mark > c->reconnect_mark ? mark : c->reconnect_mark;
}

bool ingest_consumer_reply(ingest_consumer *c, const char *reply, ingest_reply kind)
{
    static const char *const what[INGEST_REPLY_KINDS] = {"+ACK", "+WPI", "-NAK"};
    if (!reply || !*reply)
        return true;
    return natsConnection_Publish(c->nc, reply, what[kind], 4) == NATS_OK;
}

bool ingest_consumer_connected(ingest_consumer *c)
{
    return natsConnection_Status(c->nc) == NATS_CONN_STATUS_CONNECTED;
}

/* The unsigned decimal token [s, e), or false. */
static bool token_u64(const char *s, const char *e, uint64_t *out)
{
    if (s == e || e - s > 20)
        return false;
    uint64_t v = 0;
    for (; s < e; s++) {
        uint64_t d = (uint64_t)(*s - '0');
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = v;
    return true;
}

bool ingest_consumer_reply_meta(const char *reply, uint64_t *stream_seq, uint64_t *delivered)
{
    static const char prefix[] = "$JS.ACK.";
    if (!reply || strncmp(reply, prefix, sizeof(prefix) - 1) != 0)
        return false;
    const char *tok[16];
    size_t len[16], n = 0;
    for (const char *p = reply + sizeof(prefix) - 1;;) {
        const char *dot = strchr(p, '.');
        const char *end = dot ? dot : p + strlen(p);
        if (n == 16)
            return false;
        tok[n] = p;
        len[n++] = (size_t)(end - p);
        if (!dot)
            break;
        p = dot + 1;
    }
    size_t at = n == 7 ? 2 : n >= 9 ? 4 : SIZE_MAX; /* delivered count, then stream seq */
    return at != SIZE_MAX && token_u64(tok[at], tok[at] + len[at], delivered) &&
           token_u64(tok[at + 1], tok[at + 1] + len[at + 1], stream_seq);
}
