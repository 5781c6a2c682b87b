#include "common/status.h"

#include <stdio.h>
#include <string.h>

static const struct {
    an_status status;
    const char *code;
    int http;
} table[] = {
    {AN_OK, "ok", 200},
    {AN_INVALID_ARGUMENT, "invalid_argument", 400},
    {AN_UNAUTHENTICATED, "unauthenticated", 401},
    {AN_PERMISSION_DENIED, "permission_denied", 403},
    {AN_NOT_FOUND, "not_found", 404},
    {AN_ALREADY_EXISTS, "already_exists", 409},
    {AN_FAILED_PRECONDITION, "failed_precondition", 422},
    {AN_RESOURCE_EXHAUSTED, "resource_exhausted", 429},
    {AN_UNAVAILABLE, "unavailable", 503},
    {AN_INTERNAL, "internal", 500},
};

#define NTABLE (sizeof(table) / sizeof(table[0]))

const char *an_status_code(an_status s)
{
    for (size_t i = 0; i < NTABLE; i++)
        if (table[i].status == s)
            return table[i].code;
    return "internal";
}

const char *an_error_public_message(an_status s, const char *message, const char *ref, char *buf,
                                    size_t n)
{
    if (s != AN_INTERNAL)
        return message;
    snprintf(buf, n, "internal error (%s)", ref);
    return buf;
}

int an_status_http(an_status s)
{
    for (size_t i = 0; i < NTABLE; i++)
        if (table[i].status == s)
            return table[i].http;
    return 500;
}

an_status an_status_from_code(const char *code)
{
    if (code)
        for (size_t i = 0; i < NTABLE; i++)
            if (strcmp(table[i].code, code) == 0)
                return table[i].status;
    return AN_INTERNAL;
}

void an_error_clear(an_error *err)
{
    if (!err)
        return;
    err->code = AN_OK;
    err->message[0] = '\0';
    err->field[0] = '\0';
}

an_status an_error_vset(an_error *err, an_status code, const char *fmt, va_list ap)
{
    if (!err)
        return code;
    err->code = code;
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    err->field[0] = '\0';
    return code;
}

an_status an_error_set(an_error *err, an_status code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    an_error_vset(err, code, fmt, ap);
    va_end(ap);
    return code;
}

an_status an_error_field(an_error *err, an_status code, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    an_error_vset(err, code, fmt, ap);
    va_end(ap);
    if (err)
        snprintf(err->field, sizeof(err->field), "%s", field ? field : "");
    return code;
}
