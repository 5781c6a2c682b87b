/*
 * tiers.h - the columns ingest writes to both event tiers, in RowBinary
 * order: shared by ingest (batch.c) and bench/eventgen (--tsv), which must
 * produce the very same rows. The RowBinary layout must match the tables
 * exactly; the client checks it against DESCRIBE TABLE before the first
 * insert. Header-only (static arrays): bench binaries link libanalytics
 * alone, not ingest's modules.
 */
#ifndef INGEST_TIERS_H
#define INGEST_TIERS_H

#include "common/ch.h"

/* analytics.events */
static const an_ch_column hot_cols[] = {
    {"tenant_id", AN_CH_STRING},         {"event_id", AN_CH_STRING},
    {"event_name", AN_CH_STRING},        {"occurred_at", AN_CH_DATETIME},
    {"occurred_ms", AN_CH_UINT16},       {"ingested_at", AN_CH_DATETIME},
    {"actor_type", AN_CH_STRING},        {"actor_id", AN_CH_STRING},
    {"actor_key_id", AN_CH_STRING},      {"correlation_id", AN_CH_STRING},
    {"properties", AN_CH_STRING},        {"prop_keys", AN_CH_ARRAY_STRING},
    {"prop_values", AN_CH_ARRAY_STRING},
};

/* analytics_audit.events */
static const an_ch_column audit_cols[] = {
    {"tenant_id", AN_CH_STRING},     {"event_id", AN_CH_STRING},      {"event_name", AN_CH_STRING},
    {"subject", AN_CH_STRING},       {"occurred_at", AN_CH_DATETIME}, {"occurred_ms", AN_CH_UINT16},
    {"received_at", AN_CH_DATETIME}, {"stream_seq", AN_CH_UINT64},    {"payload", AN_CH_STRING},
};

#endif
