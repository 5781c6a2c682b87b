/*
 * store.h - writing a batch to ClickHouse so that each event is stored once.
 *
 * ingest_store_write() makes one attempt at every tier of the batch not yet
 * written (hot, audit, dead letters; one INSERT each on a kept-alive
 * connection). A tier is looked up before its insert when some of its rows
 * may be stored already:
 *   - messages JetStream redelivers (delivery count > 1): a previous holder
 *     may have inserted them and died before its ack reached the server;
 *   - every message of a tier whose previous attempt failed, because a
 *     failed insert's outcome can be unknown (connection lost after the
 *     body was sent, a materialized view failing after the table took the
 *     rows).
 * The look-up reads (tenant_id, event_id) pairs by the tables' primary key
 * (dead letters: subject and stream_seq) and the insert then carries only
 * the rows not found. A look-up is only true once the INSERTs that may hold
 * those rows have finished, and ClickHouse finishes an INSERT whose client
 * died: every INSERT of ingest has the query_id
 * "ingest-<instance>-<batch>-<tier>-<attempt>", and before a look-up the
 * store waits (up to the insert timeout) until system.processes shows no
 * ingest INSERT into that table that started before the batch's first
 * message was fetched, nor an earlier attempt of the same batch. See
 * docs/ingest.md for the whole exactly-once design.
 *
 * Not thread-safe: one store per writer thread.
 */
#ifndef INGEST_STORE_H
#define INGEST_STORE_H

#include "common/ch.h"
#include "common/status.h"
#include "ingest/batch.h"

#include <stdbool.h>

typedef struct ingest_store ingest_store;

typedef struct ingest_store_options {
    const char *url, *user, *password;
    const char *instance;     /* this replica's id, in the query_id of its INSERTs */
    int insert_timeout_ms;    /* one INSERT, client side */
    bool crash_between_tiers; /* testing only: _exit(70) after the first tier is written */
} ingest_store_options;

an_status ingest_store_new(const ingest_store_options *o, ingest_store **out, an_error *err);
void ingest_store_free(ingest_store *st);

/* Per attempt, for metrics and logs. */
typedef struct ingest_write_report {
    size_t rows[INGEST_TIERS];    /* rows inserted by this attempt */
    size_t skipped[INGEST_TIERS]; /* rows found stored already and left out */
    size_t looked_up;             /* messages looked up */
    int64_t ms[INGEST_TIERS];     /* time spent on each tier (look-up and insert) */
    ingest_tier failed_tier;      /* on failure */
} ingest_write_report;

/* One attempt; AN_OK when every tier of b is written (b->written[] all
 * true). On failure b keeps which tiers are done and which are uncertain,
 * for the next attempt; err says what failed. */
an_status ingest_store_write(ingest_store *st, ingest_batch *b, ingest_write_report *rep,
                             an_error *err);

/* ClickHouse answers /ping. */
an_status ingest_store_ping(ingest_store *st, an_error *err);

#endif
