/*
 * testsvc - a service built on the framework, for the `service` integration
 * suite. Its name comes from ANALYTICS_TESTSVC_NAME (default "testsvc") so
 * every test can run its own isolated instances.
 *
 *   echo        {"echo": <body>, "instance": <id>, "user": <sub>}
 *   whoami      the caller's auth context and correlation id
 *   tenant-get  {"tenantId": T} -> require_tenant(T) -> {"tenantId": T, "name": ...}
 *   fail        {"code": "not_found", "message": "...", "field": "..."} -> that error
 *   slow        (no auth) {"ms": N} -> sleeps N ms -> {"slept": N, "instance": <id>}
 *   sleepy      (no auth, 300 ms timeout) the same as slow
 *   proxy       {"verb": V, "body": B} -> an_request_call(analytics.<name>.V, B)
 *   publish     {"aggregate", "event", "id", "data"} -> an_events_publish
 */
#include "common/auth.h"
#include "common/events.h"
#include "common/log.h"
#include "common/service.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>

typedef struct testsvc_ctx {
    char *greeting;
    int64_t max_sleep_ms;
} testsvc_ctx;

static const an_config_var vars[] = {
    {"ANALYTICS_TESTSVC_GREETING", AN_CFG_STRING, "hello", 0, 0, 0, offsetof(testsvc_ctx, greeting),
     "logged at start"},
    {"ANALYTICS_TESTSVC_MAX_SLEEP", AN_CFG_DURATION, "60s", 0, 600000, 0,
     offsetof(testsvc_ctx, max_sleep_ms), "longest sleep of slow/sleepy"},
    {0},
};

static const char *body_string(const an_request *req, const char *field)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(req->body, field);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static cJSON *string_array(char **items, size_t n)
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; i < n; i++)
        cJSON_AddItemToArray(a, cJSON_CreateString(items[i]));
    return a;
}

static an_status handle_echo(an_request *req, cJSON **data, an_error *err)
{
    (void)err;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddItemToObject(d, "echo",
                          req->body ? cJSON_Duplicate(req->body, 1) : cJSON_CreateNull());
    cJSON_AddStringToObject(d, "instance", an_service_id(req->svc));
    cJSON_AddStringToObject(d, "user", req->auth->user ? req->auth->user : "");
    *data = d;
    return AN_OK;
}

static an_status handle_whoami(an_request *req, cJSON **data, an_error *err)
{
    (void)err;
    const an_auth *a = req->auth;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "user", a->user ? a->user : "");
    if (a->tenant)
        cJSON_AddStringToObject(d, "tenant", a->tenant);
    else
        cJSON_AddNullToObject(d, "tenant");
    cJSON_AddItemToObject(d, "roles", string_array(a->roles, a->nroles));
    cJSON_AddItemToObject(d, "scopes", string_array(a->scopes, a->nscopes));
    cJSON_AddBoolToObject(d, "platformAdmin", an_auth_is_platform_admin(a));
    cJSON_AddBoolToObject(d, "trusted", a->trusted);
    cJSON_AddStringToObject(d, "correlationId", req->correlation_id);
    cJSON_AddStringToObject(d, "instance", an_service_id(req->svc));
    *data = d;
    return AN_OK;
}

static an_status handle_tenant_get(an_request *req, cJSON **data, an_error *err)
{
    const char *tenant = body_string(req, "tenantId");
    if (!tenant)
        return an_error_field(err, AN_INVALID_ARGUMENT, "tenantId", "tenantId is required");
    an_status s = an_auth_require_tenant(req->auth, tenant, err);
    if (s != AN_OK)
        return s;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "tenantId", tenant);
    char name[300];
    snprintf(name, sizeof(name), "tenant %s", tenant);
    cJSON_AddStringToObject(d, "name", name);
    *data = d;
    return AN_OK;
}

static an_status handle_fail(an_request *req, cJSON **data, an_error *err)
{
    *data = cJSON_CreateString("must be discarded by the framework");
    const char *code = body_string(req, "code");
    const char *message = body_string(req, "message");
    const char *field = body_string(req, "field");
    an_status s = an_status_from_code(code ? code : "internal");
    if (field)
        return an_error_field(err, s, field, "%s", message ? message : "failed");
    return an_error_set(err, s, "%s", message ? message : "failed");
}

static an_status sleep_for(an_request *req, cJSON **data, an_error *err)
{
    const testsvc_ctx *ctx = req->ctx;
    const cJSON *ms = cJSON_GetObjectItemCaseSensitive(req->body, "ms");
    if (!cJSON_IsNumber(ms) || ms->valuedouble < 0 || ms->valuedouble > (double)ctx->max_sleep_ms)
        return an_error_field(err, AN_INVALID_ARGUMENT, "ms", "ms must be 0..%lld",
                              (long long)ctx->max_sleep_ms);
    long n = (long)ms->valuedouble;
    an_request_log(req, AN_LOG_DEBUG, "sleeping %ld ms", n);
    struct timespec ts = {n / 1000, (n % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0)
        ;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "slept", (double)n);
    cJSON_AddStringToObject(d, "instance", an_service_id(req->svc));
    *data = d;
    return AN_OK;
}

static an_status handle_proxy(an_request *req, cJSON **data, an_error *err)
{
    const char *verb = body_string(req, "verb");
    if (!verb)
        return an_error_field(err, AN_INVALID_ARGUMENT, "verb", "verb is required");
    char subject[256];
    snprintf(subject, sizeof(subject), "analytics.%s.%s", an_service_name(req->svc), verb);
    cJSON *reply = NULL;
    an_status s = an_request_call(req, subject, cJSON_GetObjectItemCaseSensitive(req->body, "body"),
                                  0, &reply, err);
    if (s != AN_OK)
        return s;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddStringToObject(d, "via", an_service_id(req->svc));
    cJSON_AddItemToObject(d, "reply", reply);
    *data = d;
    return AN_OK;
}

static an_status handle_publish(an_request *req, cJSON **data, an_error *err)
{
    an_event e = {
        .aggregate = body_string(req, "aggregate"),
        .name = body_string(req, "event"),
        .id = body_string(req, "id"),
        .tenant_id = req->auth->tenant,
        .correlation_id = req->correlation_id,
        .data = cJSON_GetObjectItemCaseSensitive(req->body, "data"),
    };
    an_events_ack ack;
    an_status s = an_events_publish(an_service_events(req->svc), &e, &ack, err);
    if (s != AN_OK)
        return s;
    cJSON *d = cJSON_CreateObject();
    cJSON_AddNumberToObject(d, "seq", (double)ack.seq);
    cJSON_AddBoolToObject(d, "duplicate", ack.duplicate);
    cJSON_AddStringToObject(d, "stream", an_events_stream(an_service_events(req->svc)));
    *data = d;
    return AN_OK;
}

static an_status testsvc_init(an_service *svc, void *ctx, an_error *err)
{
    (void)err;
    const testsvc_ctx *c = ctx;
    an_info("%s from %s (instance %s)", c->greeting, an_service_name(svc), an_service_id(svc));
    return AN_OK;
}

static void testsvc_exit(an_service *svc, void *ctx)
{
    (void)ctx;
    an_info("exit callback ran (instance %s)", an_service_id(svc));
}

static const an_endpoint endpoints[] = {
    {"echo", handle_echo, 0, 0, "echo the body"},
    {"whoami", handle_whoami, 0, 0, "the caller's identity"},
    {"tenant-get", handle_tenant_get, 0, 0, "read a tenant (tenant-scoped)"},
    {"fail", handle_fail, 0, 0, "fail with the error asked for"},
    {"slow", sleep_for, AN_EP_PUBLIC, 0, "sleep ms milliseconds"},
    {"sleepy", sleep_for, AN_EP_PUBLIC, 300, "sleep, with a 300 ms timeout"},
    {"proxy", handle_proxy, 0, 0, "call another endpoint on behalf of the caller"},
    {"publish", handle_publish, 0, 0, "publish an event"},
    {0},
};

int main(int argc, char **argv)
{
    /* Die with the test that started us, even when it fails half-way. */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* The name must be known before the framework reads its config. */
    const char *name = getenv("ANALYTICS_TESTSVC_NAME");
    an_service_def def = {
        .name = name && *name ? name : "testsvc",
        .version = "1.2.3",
        .description = "test service of the framework",
        .config = vars,
        .ctx_size = sizeof(testsvc_ctx),
        .endpoints = endpoints,
        .init = testsvc_init,
        .exit = testsvc_exit,
        .workers = 4,
        .events = true,
        .deps = AN_DEP_CLICKHOUSE | AN_DEP_REDIS,
    };
    return an_service_main(&def, argc, argv);
}
