/*
 * prom.h - a thread-safe Prometheus metrics registry, rendered in the text
 * exposition format 0.0.4 (served by http.h on /metrics).
 *
 *   an_prom_registry *reg = an_prom_registry_new();
 *   an_prom_counter *req;
 *   an_prom_counter_get(reg, "analytics_requests_total", "Requests handled.",
 *                       AN_PROM_LABELS("endpoint", "create", "code", "ok"), &req, &err);
 *   an_prom_counter_inc(req);                      // fast path: one atomic add
 *
 * A metric family is a name, a help text, a type and a fixed list of label
 * names; each distinct list of label values is one series. Getting the
 * same name and label values again returns the same object, so a caller
 * may look a series up per request, but keeping the pointer is cheaper
 * (a get takes the registry lock and compares strings).
 *
 * Rules, checked by the get functions (AN_INVALID_ARGUMENT otherwise):
 *   metric names match [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 *   [a-zA-Z_][a-zA-Z0-9_]* not starting with "__"; "le" is reserved in
 *   histograms; label names are unique within a series; every series of a
 *   family has the same label names in the same order; a histogram's
 *   buckets are finite and strictly increasing (+Inf is implied).
 * A name already registered with another type gives AN_ALREADY_EXISTS.
 * Label values may be any string: they are escaped when rendered.
 *
 * Series are never removed: do not put unbounded values (ids, tenants of an
 * open platform) in labels.
 *
 * Ownership: the registry owns every family and series; the pointers the
 * get functions hand out are valid until an_prom_registry_free. Updates
 * (inc/add/set/observe) are safe from any thread at any time, including
 * while the registry renders.
 */
#ifndef AN_PROM_H
#define AN_PROM_H

#include "common/buf.h"
#include "common/status.h"

#include <stddef.h>
#include <stdint.h>

typedef struct an_prom_registry an_prom_registry;
typedef struct an_prom_counter an_prom_counter;
typedef struct an_prom_gauge an_prom_gauge;
typedef struct an_prom_histogram an_prom_histogram;

/* Label name/value pairs as a NULL-terminated array of strings:
 *   AN_PROM_LABELS("endpoint", "create", "code", "ok")
 * Pass NULL for a series without labels. The strings are copied. */
#define AN_PROM_LABELS(...) ((const char *const[]){__VA_ARGS__, NULL})

/* Upper bounds in seconds suited to request latencies (the Prometheus
 * client default): 5 ms .. 10 s. */
extern const double an_prom_latency_buckets[];
extern const size_t an_prom_latency_buckets_n;

/* The content type of an_prom_render's output, for the HTTP answer. */
#define AN_PROM_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

an_prom_registry *an_prom_registry_new(void);
/* Free the registry and every metric in it. r may be NULL. */
void an_prom_registry_free(an_prom_registry *r);

/* Find or create. help is used when the family is created (NULL: none). */
an_status an_prom_counter_get(an_prom_registry *r, const char *name, const char *help,
                              const char *const *labels, an_prom_counter **out, an_error *err);
an_status an_prom_gauge_get(an_prom_registry *r, const char *name, const char *help,
                            const char *const *labels, an_prom_gauge **out, an_error *err);
/* buckets: finite, strictly increasing upper bounds; NULL (nbuckets 0) for
 * an_prom_latency_buckets. A trailing +Inf is accepted and dropped. Every
 * series of a family must use the same buckets (AN_INVALID_ARGUMENT if not). */
an_status an_prom_histogram_get(an_prom_registry *r, const char *name, const char *help,
                                const double *buckets, size_t nbuckets, const char *const *labels,
                                an_prom_histogram **out, an_error *err);

/* Counters only go up: a negative or NaN increment is ignored. Integral
 * increments are exact up to 2^64; others accumulate as a double. */
void an_prom_counter_inc(an_prom_counter *c);
void an_prom_counter_add(an_prom_counter *c, double v);
double an_prom_counter_value(const an_prom_counter *c);

void an_prom_gauge_set(an_prom_gauge *g, double v);
void an_prom_gauge_add(an_prom_gauge *g, double v); /* v may be negative */
void an_prom_gauge_inc(an_prom_gauge *g);
void an_prom_gauge_dec(an_prom_gauge *g);
double an_prom_gauge_value(const an_prom_gauge *g);

/* Count v in the first bucket whose bound is >= v (NaN is ignored). */
void an_prom_histogram_observe(an_prom_histogram *h, double v);
uint64_t an_prom_histogram_count(an_prom_histogram *h);
double an_prom_histogram_sum(an_prom_histogram *h);

/* Append the exposition text of every family, in registration order, to
 * out. A histogram's buckets, sum and count are read as one snapshot. */
void an_prom_render(an_prom_registry *r, an_buf *out);

#endif
