/*
 * conn.h - the service's connections, shared by request workers, the
 * scheduler and the materialization workers: pools of ClickHouse clients
 * (writer: records; reader: templates and materialized values, readonly)
 * and of Redis contexts. An an_ch or a redisContext serves one thread at a
 * time, so a thread takes one from its pool for the length of a task and
 * gives it back; a broken Redis context is dropped on release and a new
 * one is made on the next take.
 */
#ifndef METRICS_CONN_H
#define METRICS_CONN_H

#include "common/ch.h"
#include "common/status.h"

#include <hiredis/hiredis.h>

typedef struct metrics_conns metrics_conns;

typedef struct metrics_conns_config {
    const char *clickhouse_url;
    const char *writer_user, *writer_password;
    const char *reader_user, *reader_password;
    int reader_timeout_ms; /* client-side limit of one template query */
    const char *redis_url;
} metrics_conns_config;

/* Copies the strings of cfg. Connects lazily. Free with metrics_conns_free
 * once every taken connection is back. */
an_status metrics_conns_new(const metrics_conns_config *cfg, metrics_conns **out, an_error *err);
void metrics_conns_free(metrics_conns *c);

/* Take a client; give it back with the matching put. */
an_status metrics_writer_take(metrics_conns *c, an_ch **out, an_error *err);
void metrics_writer_put(metrics_conns *c, an_ch *ch);
an_status metrics_reader_take(metrics_conns *c, an_ch **out, an_error *err);
void metrics_reader_put(metrics_conns *c, an_ch *ch);

/* A Redis context, connected (reconnected when it broke). */
an_status metrics_redis_take(metrics_conns *c, redisContext **out, an_error *err);
void metrics_redis_put(metrics_conns *c, redisContext *r);

/* The reader's client-side timeout (ms), as configured. */
int metrics_reader_timeout_ms(const metrics_conns *c);

const char *metrics_redis_url(const metrics_conns *c);

#endif
