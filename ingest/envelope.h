/*
 * envelope.h - one domain event envelope (DESIGN.md 3) in, one validated,
 * PII-free event out, or the reason it is rejected.
 *
 *   {"id": "01J...", "type": "enrollment.created", "tenantId": "t1",
 *    "occurredAt": "2026-01-02T03:04:05.678Z", "correlationId": "c1",
 *    "actor": {"type": "user", "id": "u42"}, "data": {...}}
 *
 * One pass over the bytes with a strict JSON scanner (RFC 8259: UTF-8
 * checked, no trailing garbage, \u escapes with surrogate pairs) that
 * validates the envelope and writes the hot tier's view of `data` as it
 * goes: PII keys removed or hashed at any depth (pii.h), PII-looking strings
 * masked, and every leaf flattened into (dotted path, value text) pairs.
 *
 * Rules (a violation rejects the event with the reason in brackets):
 *   - the message is at most max_event_bytes                  [too_large]
 *   - valid JSON whose top level is an object                 [invalid_json]
 *   - id, type, tenantId and occurredAt are present           [missing_field]
 *   - id and tenantId: strings of 1..128 characters of [A-Za-z0-9_.:-];
 *     tenantId may be null (a platform event, stored with tenant "");
 *     type: 1..128 of [A-Za-z0-9_.:-]; correlationId: null or a string
 *     of at most 256 bytes without control characters; actor: null or an
 *     object whose type (null or string <= 64) and id (null, string <= 256
 *     or integer) are well-typed; data: null or an object; no field of the
 *     envelope twice                                          [invalid_field]
 *   - occurredAt: RFC 3339 (timeutil.h) with an offset, after
 *     1970-01-01, at most max_past before now and max_future after it
 *                                                             [bad_timestamp]
 *   - data nests at most max_depth objects/arrays (data itself is 1)
 *                                                             [too_deep]
 *   - data has at most max_properties keys, counted at every depth
 *                                                             [too_many_properties]
 * Other top-level fields are allowed and ignored (the audit tier keeps them).
 *
 * Flattening: objects recurse with "a.b.c" paths; an array is one leaf whose
 * value is its (PII-filtered) JSON text; strings are stored unescaped,
 * numbers as written, booleans as "true"/"false"; a null is kept in the JSON
 * but has no leaf.
 */
#ifndef INGEST_ENVELOPE_H
#define INGEST_ENVELOPE_H

#include "common/crypto.h"
#include "common/status.h"
#include "ingest/hasher.h"
#include "ingest/pii.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum ingest_reason {
    INGEST_REASON_INVALID_JSON = 0,
    INGEST_REASON_TOO_LARGE,
    INGEST_REASON_MISSING_FIELD,
    INGEST_REASON_INVALID_FIELD,
    INGEST_REASON_BAD_TIMESTAMP,
    INGEST_REASON_TOO_DEEP,
    INGEST_REASON_TOO_MANY_PROPERTIES,
    INGEST_REASON_COUNT
} ingest_reason;

/* "invalid_json", "too_large", ... (the dead-letter reason and metric label). */
const char *ingest_reason_name(ingest_reason r);

typedef struct ingest_limits {
    size_t max_event_bytes;
    int max_depth;
    int max_properties;
    int64_t max_past_ms;   /* 0: no limit besides 1970 */
    int64_t max_future_ms; /* 0: no limit besides DateTime's end (2106) */
} ingest_limits;

#define INGEST_ID_MAX    128
#define INGEST_ACTOR_MAX 256

/* A valid event. Every pointer is into the raw message or the parser's
 * buffers, valid until the next ingest_envelope_parse on the same parser.
 * correlation_id and actor_type are free text stored in the hot tier: their
 * PII-looking parts are masked like the strings of data (counted in masked). */
typedef struct ingest_event {
    const char *id, *type, *tenant, *correlation_id, *actor_type;
    size_t id_len, type_len, tenant_len, correlation_id_len, actor_type_len;
    char actor_id[AN_CRYPTO_SHA256_HEX]; /* HMAC hex; "" without actor.id */
    int64_t occurred_ms;
    const char *properties; /* PII-free JSON object */
    size_t properties_len;
    size_t nprops; /* leaves */
    const char *const *prop_keys;
    const size_t *prop_key_lens;
    const char *const *prop_values;
    const size_t *prop_value_lens;
    size_t masked;   /* PII-looking values masked */
    size_t pii_keys; /* PII keys removed or hashed */
} ingest_event;

/* Why an event was rejected. tenant and id are filled when they were read
 * before the failure and are well-formed, else "". */
typedef struct ingest_reject {
    ingest_reason reason;
    char detail[240];
    char tenant[INGEST_ID_MAX + 1];
    char id[INGEST_ID_MAX + 1];
} ingest_reject;

typedef struct ingest_parser ingest_parser;

/* rules and hasher are borrowed (they must outlive the parser); the hasher
 * is used from the parser's thread only. */
ingest_parser *ingest_parser_new(const ingest_limits *limits, const ingest_pii_rules *rules,
                                 ingest_hasher *hasher);
void ingest_parser_free(ingest_parser *p);

/* Parse one message of len bytes (need not be NUL-terminated). now_ms is
 * the wall clock used for the occurredAt window. True with *ev filled, or
 * false with *rej filled. */
bool ingest_envelope_parse(ingest_parser *p, const char *raw, size_t len, int64_t now_ms,
                           ingest_event *ev, ingest_reject *rej);

#endif
