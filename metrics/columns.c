/*
 * columns.c - see columns.h.
 */
#include "metrics/columns.h"

#include "common/ch.h"
#include "common/log.h"
#include "common/timeutil.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COLUMNS 256

struct metrics_columns {
    pthread_mutex_t mu;
    int64_t refresh_ms;
    an_prom_gauge *gauge;
    int64_t read_at; /* monotonic ms of the last attempt; 0: never */
    an_template_column *list;
    size_t n;
};

metrics_columns *metrics_columns_new(int64_t refresh_ms, an_prom_gauge *gauge)
{
    metrics_columns *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    pthread_mutex_init(&c->mu, NULL);
    c->refresh_ms = refresh_ms;
    c->gauge = gauge;
    return c;
}

void metrics_columns_free(metrics_columns *c)
{
    if (!c)
        return;
    pthread_mutex_destroy(&c->mu);
    free(c->list);
    free(c);
}

typedef struct reading {
    an_template_column *list;
    size_t n;
} reading;

static an_status on_column(void *ud, const an_ch_row *row, an_error *err)
{
    (void)err;
    reading *r = ud;
    an_template_column col;
    if (row->ncols < 2 || !row->fields[0] || !row->fields[1] || r->n >= MAX_COLUMNS)
        return AN_OK;
    if (!an_template_column_parse(row->fields[0], row->fields[1], &col))
        return AN_OK;
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->list[i].path, col.path) == 0)
            return AN_OK; /* two columns for one path: the first (by name) */
    r->list[r->n++] = col;
    return AN_OK;
}

static void refresh(metrics_columns *c, metrics_conns *conns)
{
    reading r = {calloc(MAX_COLUMNS, sizeof(an_template_column)), 0};
    an_ch *ch = NULL;
    an_error err = {0};
    an_status s = r.list ? metrics_reader_take(conns, &ch, &err) : AN_INTERNAL;
    if (s == AN_OK) {
        s = an_ch_query(ch,
                        "SELECT name, default_expression FROM system.columns WHERE database = "
                        "'analytics' AND table = 'events' AND default_kind = 'MATERIALIZED' "
                        "AND type = 'String' ORDER BY name",
                        NULL, on_column, &r, &err);
        metrics_reader_put(conns, ch);
    }
    if (s != AN_OK) {
        an_warn("property columns: could not read system.columns (%s); keeping %zu known",
                err.message[0] ? err.message : "out of memory", c->n);
        free(r.list);
        return;
    }
    if (r.n != c->n)
        an_info("property columns: %zu materialized propert%s of analytics.events", r.n,
                r.n == 1 ? "y" : "ies");
    free(c->list);
    c->list = r.list;
    c->n = r.n;
    if (c->gauge)
        an_prom_gauge_set(c->gauge, (double)r.n);
}

void metrics_columns_get(metrics_columns *c, metrics_conns *conns, an_template_column **out,
                         size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!c || c->refresh_ms <= 0)
        return;
    pthread_mutex_lock(&c->mu);
    int64_t now = an_time_mono_ms();
    if (c->read_at == 0 || now - c->read_at >= c->refresh_ms) {
        c->read_at = now;
        refresh(c, conns);
    }
    if (c->n > 0 && (*out = malloc(c->n * sizeof(**out))) != NULL) {
        memcpy(*out, c->list, c->n * sizeof(**out));
        *n = c->n;
    }
    pthread_mutex_unlock(&c->mu);
}

void metrics_columns_invalidate(metrics_columns *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    c->read_at = 0;
    pthread_mutex_unlock(&c->mu);
}
