/*
 * status.h - status codes and error context shared by every module.
 *
 * Every fallible function of libanalytics returns an an_status (AN_OK == 0)
 * and hands results back through out-parameters. When the caller passes an
 * an_error, the failing function fills it with a message a user can act on;
 * the error envelope of a reply is built from it (see service.h).
 */
#ifndef AN_STATUS_H
#define AN_STATUS_H

#include <stdarg.h>
#include <stddef.h>

typedef enum an_status {
    AN_OK = 0,              /* success */
    AN_INVALID_ARGUMENT,    /* bad input from the caller (400) */
    AN_UNAUTHENTICATED,     /* no or bad credentials (401) */
    AN_PERMISSION_DENIED,   /* authenticated but not allowed (403) */
    AN_NOT_FOUND,           /* the thing does not exist, or is not visible (404) */
    AN_ALREADY_EXISTS,      /* create of something that exists (409) */
    AN_FAILED_PRECONDITION, /* state forbids it, e.g. version conflict (422) */
    AN_RESOURCE_EXHAUSTED,  /* a limit was hit: rows, time, memory, quota (429) */
    AN_UNAVAILABLE,         /* a dependency is down or timed out; retry later (503) */
    AN_INTERNAL,            /* a bug or an unexpected failure (500) */
} an_status;

#define AN_ERROR_MSG_MAX   512
#define AN_ERROR_FIELD_MAX 128

/* Error context: a status, a human-readable message and, for invalid
 * input, the name of the offending field. Plain value type, no heap. */
typedef struct an_error {
    an_status code;
    char message[AN_ERROR_MSG_MAX];
    char field[AN_ERROR_FIELD_MAX]; /* "" when not about one field */
} an_error;

/* The wire code of a status: "invalid_argument", "unauthenticated", ...
 * AN_OK gives "ok". Never NULL. */
const char *an_status_code(an_status s);

/* What a caller may be told of an error of status s: its message, except
 * for AN_INTERNAL, whose detail (paths, hosts, ...) stays in the logs: then
 * "internal error (<ref>)", written into buf (ref names what to look for in
 * the logs, e.g. "correlation id <id>"). */
const char *an_error_public_message(an_status s, const char *message, const char *ref, char *buf,
                                    size_t n);

/* The HTTP-like number of a status for Nats-Service-Error-Code (200 for OK). */
int an_status_http(an_status s);

/* Parse a wire code back ("not_found" -> AN_NOT_FOUND); AN_INTERNAL when unknown. */
an_status an_status_from_code(const char *code);

/* Clear an error context (code AN_OK, empty strings). err may be NULL. */
void an_error_clear(an_error *err);

/* Fill err (which may be NULL) and return code, so error paths stay one line:
 *     return an_error_set(err, AN_INVALID_ARGUMENT, "name: must not be empty");
 */
an_status an_error_set(an_error *err, an_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Same, naming the offending field (copied into err->field). */
an_status an_error_field(an_error *err, an_status code, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

an_status an_error_vset(an_error *err, an_status code, const char *fmt, va_list ap);

#endif
