/*
 * service_call.c - calling another service over NATS request/reply and
 * decoding its reply envelope (see service.h, "calling a service").
 */
#include "common/service_int.h"

#include <stdlib.h>
#include <string.h>

static an_status status_from_http(int code)
{
    for (int s = AN_OK; s <= AN_INTERNAL; s++)
        if (an_status_http((an_status)s) == code)
            return (an_status)s;
    return code >= 500 ? AN_INTERNAL : AN_INVALID_ARGUMENT;
}

/* ---------------------------------------------------- calling a service */

/* Decode a reply envelope (see service.h). */
static an_status decode_reply(natsMsg *reply, const char *subject, cJSON **data, an_error *err)
{
    const char *code_hdr = an_msg_header(reply, "Nats-Service-Error-Code");
    const char *raw = natsMsg_GetData(reply);
    int len = natsMsg_GetDataLength(reply);
    cJSON *doc = (raw && len > 0) ? cJSON_ParseWithLength(raw, (size_t)len) : NULL;
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
    if (cJSON_IsObject(e)) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(e, "code");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
        const cJSON *details = cJSON_GetObjectItemCaseSensitive(e, "details");
        const cJSON *field = cJSON_GetObjectItemCaseSensitive(details, "field");
        an_status st = cJSON_IsString(code) ? an_status_from_code(code->valuestring) : AN_INTERNAL;
        if (st == AN_OK)
            st = AN_INTERNAL;
        const char *text = cJSON_IsString(msg) ? msg->valuestring : an_status_code(st);
        if (cJSON_IsString(field))
            an_error_field(err, st, field->valuestring, "%s", text);
        else
            an_error_set(err, st, "%s", text);
        cJSON_Delete(doc);
        return st;
    }
    if (code_hdr) {
        const char *text = an_msg_header(reply, "Nats-Service-Error");
        an_status st = status_from_http(atoi(code_hdr));
        if (st == AN_OK)
            st = AN_INTERNAL;
        cJSON_Delete(doc);
        return an_error_set(err, st, "%s: %s", subject, text ? text : code_hdr);
    }
    cJSON *d = cJSON_DetachItemFromObjectCaseSensitive(doc, "data");
    cJSON_Delete(doc);
    if (!d)
        return an_error_set(err, AN_INTERNAL, "%s: the reply is not a {\"data\":...} envelope",
                            subject);
    *data = d;
    return AN_OK;
}

static an_status call(natsConnection *nc, const char *subject, const cJSON *body,
                      const an_auth *trusted, const char *authorization, const char *correlation_id,
                      int64_t timeout_ms, cJSON **data, an_error *err)
{
    *data = NULL;
    char *payload = body ? cJSON_PrintUnformatted(body) : NULL;
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, payload, payload ? (int)strlen(payload) : 0);
    free(payload);
    if (s == NATS_OK && authorization)
        s = natsMsgHeader_Set(m, "Authorization", authorization);
    if (s == NATS_OK && correlation_id)
        s = natsMsgHeader_Set(m, "Correlation-Id", correlation_id);
    if (s == NATS_OK && trusted) {
        /* Local-dev identity travels on as it came in. */
        an_buf v = AN_BUF_INIT;
        s = natsMsgHeader_Set(m, "X-User-Id", trusted->user);
        if (s == NATS_OK && trusted->tenant)
            s = natsMsgHeader_Set(m, "X-Tenant-Id", trusted->tenant);
        for (size_t i = 0; i < trusted->nroles; i++)
            an_buf_addf(&v, "%s%s", i ? "," : "", trusted->roles[i]);
        if (s == NATS_OK && v.len)
            s = natsMsgHeader_Set(m, "X-Roles", v.data);
        an_buf_reset(&v);
        for (size_t i = 0; i < trusted->nscopes; i++)
            an_buf_addf(&v, "%s%s", i ? " " : "", trusted->scopes[i]);
        if (s == NATS_OK && v.len)
            s = natsMsgHeader_Set(m, "X-Scopes", v.data);
        an_buf_free(&v);
    }
    if (s != NATS_OK) {
        natsMsg_Destroy(m);
        return an_error_set(err, AN_INTERNAL, "%s: cannot build the request: %s", subject,
                            natsStatus_GetText(s));
    }
    natsMsg *reply = NULL;
    s = natsConnection_RequestMsg(&reply, nc, m, timeout_ms);
    natsMsg_Destroy(m);
    if (s == NATS_TIMEOUT)
        return an_error_set(err, AN_UNAVAILABLE, "%s: no reply within %lld ms", subject,
                            (long long)timeout_ms);
    if (s == NATS_NO_RESPONDERS)
        return an_error_set(err, AN_UNAVAILABLE, "%s: no service is listening", subject);
    if (s != NATS_OK)
        return an_error_set(err, AN_UNAVAILABLE, "%s: %s", subject, natsStatus_GetText(s));
    an_status st = decode_reply(reply, subject, data, err);
    natsMsg_Destroy(reply);
    return st;
}

an_status an_service_call(natsConnection *nc, const char *subject, const cJSON *body,
                          const char *authorization, const char *correlation_id, int64_t timeout_ms,
                          cJSON **data, an_error *err)
{
    return call(nc, subject, body, NULL, authorization, correlation_id, timeout_ms, data, err);
}

an_status an_request_call(const an_request *req, const char *subject, const cJSON *body,
                          int64_t timeout_ms, cJSON **data, an_error *err)
{
    *data = NULL;
    int64_t left = an_request_remaining_ms(req);
    if (left <= 0)
        return an_error_set(err, AN_UNAVAILABLE, "%s: the request's deadline has passed", subject);
    if (timeout_ms <= 0 || timeout_ms > left)
        timeout_ms = left;
    const an_auth *a = req->auth;
    return call(req->svc->nc, subject, body, (a->authenticated && a->trusted) ? a : NULL,
                a->authorization, req->correlation_id, timeout_ms, data, err);
}
