/*
 * discovery.c - the NATS service-discovery protocol (ADR-32) for an
 * an_service: $SRV.PING, $SRV.INFO, $SRV.STATS, each also as
 * $SRV.<verb>.<name> and $SRV.<verb>.<name>.<id>. Plain subscriptions (no
 * queue group): every instance answers.
 *
 * The documents are written by hand rather than with cJSON so that the
 * nanosecond counters stay exact 64-bit integers (cJSON stores doubles and
 * prints large ones in exponent form, which Go's int64 decoding rejects).
 */
#include "common/service_int.h"

#include "common/log.h"

#include <string.h>

enum verb { PING, INFO, STATS };

static const char *verb_names[] = {"PING", "INFO", "STATS"};
static const char *type_names[] = {"io.nats.micro.v1.ping_response",
                                   "io.nats.micro.v1.info_response",
                                   "io.nats.micro.v1.stats_response"};

static void add_str(an_buf *b, const char *key, const char *val)
{
    an_buf_addf(b, "\"%s\":\"", key);
    an_buf_add_json_escaped(b, val ? val : "", val ? strlen(val) : 0);
    an_buf_addc(b, '"');
}

static void add_common(an_buf *b, const an_service *svc, enum verb v)
{
    add_str(b, "type", type_names[v]);
    an_buf_addc(b, ',');
    add_str(b, "name", svc->def->name);
    an_buf_addc(b, ',');
    add_str(b, "id", svc->id);
    an_buf_addc(b, ',');
    add_str(b, "version", svc->def->version);
    an_buf_adds(b, ",\"metadata\":{}");
}

static void add_endpoint_head(an_buf *b, const an_service *svc, const an_ep *ep)
{
    add_str(b, "name", ep->def->name);
    an_buf_addc(b, ',');
    add_str(b, "subject", ep->subject);
    an_buf_addc(b, ',');
    add_str(b, "queue_group", svc->def->name);
}

static void build(an_buf *b, an_service *svc, enum verb v)
{
    an_buf_addc(b, '{');
    add_common(b, svc, v);
    if (v == INFO) {
        an_buf_addc(b, ',');
        add_str(b, "description", svc->def->description);
        an_buf_adds(b, ",\"endpoints\":[");
        for (size_t i = 0; i < svc->neps; i++) {
            const an_ep *ep = &svc->eps[i];
            an_buf_adds(b, i ? ",{" : "{");
            add_endpoint_head(b, svc, ep);
            an_buf_adds(b, ",\"metadata\":{");
            add_str(b, "auth", (ep->def->flags & AN_EP_PUBLIC) ? "none" : "bearer");
            an_buf_addf(b, ",\"timeout_ms\":\"%lld\"", (long long)ep->timeout_ms);
            if (ep->def->description) {
                an_buf_addc(b, ',');
                add_str(b, "description", ep->def->description);
            }
            an_buf_adds(b, "}}");
        }
        an_buf_addc(b, ']');
    } else if (v == STATS) {
        an_buf_adds(b, ",\"endpoints\":[");
        for (size_t i = 0; i < svc->neps; i++) {
            an_endpoint_stats st;
            an_service_endpoint_stats(svc, i, &st);
            an_buf_adds(b, i ? ",{" : "{");
            add_endpoint_head(b, svc, &svc->eps[i]);
            an_buf_addf(b, ",\"num_requests\":%llu,\"num_errors\":%llu,",
                        (unsigned long long)st.num_requests, (unsigned long long)st.num_errors);
            add_str(b, "last_error", st.last_error);
            an_buf_addf(b, ",\"processing_time\":%lld,\"average_processing_time\":%lld}",
                        (long long)st.processing_time_ns, (long long)st.average_processing_time_ns);
        }
        an_buf_adds(b, "],");
        add_str(b, "started", svc->started);
    }
    an_buf_addc(b, '}');
}

static void on_srv(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    an_service *svc = closure;
    const char *subject = natsMsg_GetSubject(msg);
    const char *reply = natsMsg_GetReply(msg);
    enum verb v = PING;
    if (strncmp(subject, "$SRV.INFO", 9) == 0)
        v = INFO;
    else if (strncmp(subject, "$SRV.STATS", 10) == 0)
        v = STATS;
    if (reply && *reply) {
        an_buf b = AN_BUF_INIT;
        build(&b, svc, v);
        natsStatus s = natsConnection_Publish(nc, reply, b.data, (int)b.len);
        if (s != NATS_OK)
            an_warn("%s: reply failed: %s", subject, natsStatus_GetText(s));
        an_buf_free(&b);
    }
    natsMsg_Destroy(msg);
}

natsStatus an_srv_subscribe(an_service *svc)
{
    natsStatus s = NATS_OK;
    size_t n = 0;
    for (int v = PING; v <= STATS && s == NATS_OK; v++) {
        char subj[3][256];
        snprintf(subj[0], sizeof(subj[0]), "$SRV.%s", verb_names[v]);
        snprintf(subj[1], sizeof(subj[1]), "$SRV.%s.%s", verb_names[v], svc->def->name);
        snprintf(subj[2], sizeof(subj[2]), "$SRV.%s.%s.%s", verb_names[v], svc->def->name, svc->id);
        for (int k = 0; k < 3 && s == NATS_OK; k++)
            s = natsConnection_Subscribe(&svc->srv_subs[n++], svc->nc, subj[k], on_srv, svc);
    }
    return s;
}

void an_srv_unsubscribe(an_service *svc)
{
    for (size_t i = 0; i < AN_SRV_SUBS; i++) {
        if (svc->srv_subs[i]) {
            natsSubscription_Unsubscribe(svc->srv_subs[i]);
            natsSubscription_Destroy(svc->srv_subs[i]);
            svc->srv_subs[i] = NULL;
        }
    }
}
