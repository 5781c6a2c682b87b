#include "common/prom.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const double an_prom_latency_buckets[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
const size_t an_prom_latency_buckets_n =
    sizeof(an_prom_latency_buckets) / sizeof(an_prom_latency_buckets[0]);

#define MAX_LABELS  16
#define MAX_BUCKETS 64

typedef enum { T_COUNTER, T_GAUGE, T_HISTOGRAM } metric_type;

static const char *type_name[] = {"counter", "gauge", "histogram"};

typedef struct series {
    struct series *next;
    char **values;    /* nlabels copies */
    char *label_text; /* rendered: a="x",b="y" (no braces), "" without labels */
} series;

struct an_prom_counter {
    series s;               /* first: a series* points at its metric */
    _Atomic uint64_t whole; /* integral increments */
    _Atomic uint64_t frac;  /* bits of a double: the other increments */
};

struct an_prom_gauge {
    series s;
    _Atomic uint64_t bits; /* bits of a double */
};

struct an_prom_histogram {
    series s;
    const double *bounds; /* the family's buckets, which outlive the series */
    size_t nbounds;
    pthread_mutex_t lock; /* observe and render see buckets, sum and count together */
    uint64_t *counts;     /* per bucket (not cumulative), nbuckets + 1 for +Inf */
    double sum;
    uint64_t count;
};

typedef struct family {
    struct family *next;
    char *name, *help;
    metric_type type;
    char **label_names;
    size_t nlabels;
    double *buckets; /* histograms */
    size_t nbuckets;
    series *first, **tail;
} family;

struct an_prom_registry {
    pthread_mutex_t lock; /* the lists; never taken on the update paths */
    family *first, **tail;
};

/* ---- doubles in atomics ------------------------------------------------- */

static uint64_t to_bits(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof(b));
    return b;
}

static double from_bits(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof(v));
    return v;
}

static void atomic_add_double(_Atomic uint64_t *a, double v)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    while (!atomic_compare_exchange_weak_explicit(a, &old, to_bits(from_bits(old) + v),
                                                  memory_order_relaxed, memory_order_relaxed))
        ;
}

/* ---- validation --------------------------------------------------------- */

static bool valid_name(const char *s, bool colon)
{
    if (!s || !*s)
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
                  (colon && c == ':') || (p != s && c >= '0' && c <= '9');
        if (!ok)
            return false;
    }
    return true;
}

static an_status check_labels(const char *name, metric_type type, const char *const *labels,
                              size_t *n, an_error *err)
{
    size_t k = 0;
    for (; labels && labels[k]; k += 2) {
        const char *ln = labels[k];
        if (!labels[k + 1])
            return an_error_set(err, AN_INVALID_ARGUMENT, "metric %s: label %s has no value", name,
                                ln);
        if (!valid_name(ln, false) || strncmp(ln, "__", 2) == 0)
            return an_error_set(err, AN_INVALID_ARGUMENT, "metric %s: invalid label name '%s'",
                                name, ln);
        if (type == T_HISTOGRAM && strcmp(ln, "le") == 0)
            return an_error_set(err, AN_INVALID_ARGUMENT,
                                "metric %s: label 'le' is reserved in histograms", name);
        for (size_t j = 0; j < k; j += 2)
            if (strcmp(labels[j], ln) == 0)
                return an_error_set(err, AN_INVALID_ARGUMENT, "metric %s: label %s given twice",
                                    name, ln);
        if (k / 2 >= MAX_LABELS)
            return an_error_set(err, AN_INVALID_ARGUMENT, "metric %s: more than %d labels", name,
                                MAX_LABELS);
    }
    *n = k / 2;
    return AN_OK;
}

/* ---- text --------------------------------------------------------------- */

/* Shortest text that reads back as the same double; integers without a dot. */
static void add_double(an_buf *b, double v)
{
    if (isnan(v)) {
        an_buf_adds(b, "NaN");
        return;
    }
    if (isinf(v)) {
        an_buf_adds(b, v > 0 ? "+Inf" : "-Inf");
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        an_buf_addf(b, "%.0f", v);
        return;
    }
    char tmp[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    an_buf_adds(b, tmp);
}

static void add_escaped(an_buf *b, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            an_buf_adds(b, "\\\\");
        else if (*s == '\n')
            an_buf_adds(b, "\\n");
        else if (quote && *s == '"')
            an_buf_adds(b, "\\\"");
        else
            an_buf_addc(b, *s);
    }
}

/* ---- registry ----------------------------------------------------------- */

an_prom_registry *an_prom_registry_new(void)
{
    an_prom_registry *r = calloc(1, sizeof(*r));
    if (!r)
        abort();
    pthread_mutex_init(&r->lock, NULL);
    r->tail = &r->first;
    return r;
}

static void free_series(family *f, series *s)
{
    for (size_t i = 0; i < f->nlabels; i++)
        free(s->values[i]);
    free(s->values);
    free(s->label_text);
    if (f->type == T_HISTOGRAM) {
        an_prom_histogram *h = (an_prom_histogram *)s;
        pthread_mutex_destroy(&h->lock);
        free(h->counts);
    }
    free(s);
}

void an_prom_registry_free(an_prom_registry *r)
{
    if (!r)
        return;
    for (family *f = r->first, *fn; f; f = fn) {
        fn = f->next;
        for (series *s = f->first, *sn; s; s = sn) {
            sn = s->next;
            free_series(f, s);
        }
        for (size_t i = 0; i < f->nlabels; i++)
            free(f->label_names[i]);
        free(f->label_names);
        free(f->buckets);
        free(f->name);
        free(f->help);
        free(f);
    }
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d)
        abort();
    return d;
}

static void *zalloc(size_t n)
{
    void *p = calloc(1, n);
    if (!p)
        abort();
    return p;
}

/* Under r->lock: the family of name, checked against type, labels and
 * buckets, created when missing. */
static an_status find_family(an_prom_registry *r, const char *name, const char *help,
                             metric_type type, const char *const *labels, size_t nlabels,
                             const double *buckets, size_t nbuckets, family **out, an_error *err)
{
    for (family *f = r->first; f; f = f->next) {
        if (strcmp(f->name, name) != 0)
            continue;
        if (f->type != type)
            return an_error_set(err, AN_ALREADY_EXISTS, "metric %s is already a %s", name,
                                type_name[f->type]);
        bool same = f->nlabels == nlabels;
        for (size_t i = 0; same && i < nlabels; i++)
            same = strcmp(f->label_names[i], labels[2 * i]) == 0;
        if (!same)
            return an_error_set(err, AN_INVALID_ARGUMENT,
                                "metric %s: label names differ from its first registration", name);
        if (type == T_HISTOGRAM &&
            (f->nbuckets != nbuckets || memcmp(f->buckets, buckets, nbuckets * sizeof(double))))
            return an_error_set(err, AN_INVALID_ARGUMENT,
                                "metric %s: buckets differ from its first registration", name);
        *out = f;
        return AN_OK;
    }
    family *f = zalloc(sizeof(*f));
    f->name = xstrdup(name);
    f->help = xstrdup(help ? help : "");
    f->type = type;
    f->nlabels = nlabels;
    f->label_names = zalloc((nlabels ? nlabels : 1) * sizeof(char *));
    for (size_t i = 0; i < nlabels; i++)
        f->label_names[i] = xstrdup(labels[2 * i]);
    if (type == T_HISTOGRAM) {
        f->nbuckets = nbuckets;
        f->buckets = zalloc((nbuckets ? nbuckets : 1) * sizeof(double));
        memcpy(f->buckets, buckets, nbuckets * sizeof(double));
    }
    f->tail = &f->first;
    *r->tail = f;
    r->tail = &f->next;
    *out = f;
    return AN_OK;
}

static series *find_series(family *f, const char *const *labels)
{
    for (series *s = f->first; s; s = s->next) {
        size_t i = 0;
        while (i < f->nlabels && strcmp(s->values[i], labels[2 * i + 1]) == 0)
            i++;
        if (i == f->nlabels)
            return s;
    }
    return NULL;
}

static series *new_series(family *f, const char *const *labels)
{
    size_t size = f->type == T_COUNTER ? sizeof(an_prom_counter)
                  : f->type == T_GAUGE ? sizeof(an_prom_gauge)
                                       : sizeof(an_prom_histogram);
    series *s = zalloc(size);
    s->values = zalloc((f->nlabels ? f->nlabels : 1) * sizeof(char *));
    an_buf text = AN_BUF_INIT;
    for (size_t i = 0; i < f->nlabels; i++) {
        s->values[i] = xstrdup(labels[2 * i + 1]);
        an_buf_addf(&text, "%s%s=\"", i ? "," : "", f->label_names[i]);
        add_escaped(&text, s->values[i], true);
        an_buf_addc(&text, '"');
    }
    s->label_text = an_buf_detach(&text, NULL);
    if (f->type == T_HISTOGRAM) {
        an_prom_histogram *h = (an_prom_histogram *)s;
        pthread_mutex_init(&h->lock, NULL);
        h->bounds = f->buckets;
        h->nbounds = f->nbuckets;
        h->counts = zalloc((f->nbuckets + 1) * sizeof(uint64_t));
    }
    *f->tail = s;
    f->tail = &s->next;
    return s;
}

static an_status get_series(an_prom_registry *r, const char *name, const char *help,
                            metric_type type, const double *buckets, size_t nbuckets,
                            const char *const *labels, series **out, an_error *err)
{
    if (!valid_name(name, true))
        return an_error_set(err, AN_INVALID_ARGUMENT, "invalid metric name '%s'",
                            name ? name : "(null)");
    size_t nlabels = 0;
    an_status st = check_labels(name, type, labels, &nlabels, err);
    if (st != AN_OK)
        return st;
    pthread_mutex_lock(&r->lock);
    family *f = NULL;
    st = find_family(r, name, help, type, labels, nlabels, buckets, nbuckets, &f, err);
    if (st == AN_OK) {
        series *s = find_series(f, labels);
        *out = s ? s : new_series(f, labels);
    }
    pthread_mutex_unlock(&r->lock);
    return st;
}

an_status an_prom_counter_get(an_prom_registry *r, const char *name, const char *help,
                              const char *const *labels, an_prom_counter **out, an_error *err)
{
    series *s;
    an_status st = get_series(r, name, help, T_COUNTER, NULL, 0, labels, &s, err);
    if (st == AN_OK)
        *out = (an_prom_counter *)s;
    return st;
}

an_status an_prom_gauge_get(an_prom_registry *r, const char *name, const char *help,
                            const char *const *labels, an_prom_gauge **out, an_error *err)
{
    series *s;
    an_status st = get_series(r, name, help, T_GAUGE, NULL, 0, labels, &s, err);
    if (st == AN_OK)
        *out = (an_prom_gauge *)s;
    return st;
}

an_status an_prom_histogram_get(an_prom_registry *r, const char *name, const char *help,
                                const double *buckets, size_t nbuckets, const char *const *labels,
                                an_prom_histogram **out, an_error *err)
{
    if (!buckets || nbuckets == 0) {
        buckets = an_prom_latency_buckets;
        nbuckets = an_prom_latency_buckets_n;
    }
    if (isinf(buckets[nbuckets - 1]) && buckets[nbuckets - 1] > 0)
        nbuckets--; /* +Inf is always there */
    if (nbuckets > MAX_BUCKETS)
        return an_error_set(err, AN_INVALID_ARGUMENT, "histogram %s: more than %d buckets",
                            name ? name : "(null)", MAX_BUCKETS);
    for (size_t i = 0; i < nbuckets; i++)
        if (!isfinite(buckets[i]) || (i > 0 && !(buckets[i] > buckets[i - 1])))
            return an_error_set(err, AN_INVALID_ARGUMENT,
                                "histogram %s: buckets must be finite and strictly increasing",
                                name ? name : "(null)");
    series *s;
    an_status st = get_series(r, name, help, T_HISTOGRAM, buckets, nbuckets, labels, &s, err);
    if (st == AN_OK)
        *out = (an_prom_histogram *)s;
    return st;
}

/* ---- updates ------------------------------------------------------------ */

void an_prom_counter_inc(an_prom_counter *c)
{
    atomic_fetch_add_explicit(&c->whole, 1, memory_order_relaxed);
}

void an_prom_counter_add(an_prom_counter *c, double v)
{
    if (!(v > 0))
        return;                                  /* negative, zero or NaN */
    if (v == floor(v) && v < 9007199254740992.0) /* 2^53: exact in a double */
        atomic_fetch_add_explicit(&c->whole, (uint64_t)v, memory_order_relaxed);
    else
        atomic_add_double(&c->frac, v);
}

double an_prom_counter_value(const an_prom_counter *c)
{
    uint64_t w = atomic_load_explicit(&c->whole, memory_order_relaxed);
    uint64_t f = atomic_load_explicit(&c->frac, memory_order_relaxed);
    return (double)w + from_bits(f);
}

void an_prom_gauge_set(an_prom_gauge *g, double v)
{
    atomic_store_explicit(&g->bits, to_bits(v), memory_order_relaxed);
}

void an_prom_gauge_add(an_prom_gauge *g, double v)
{
    atomic_add_double(&g->bits, v);
}

void an_prom_gauge_inc(an_prom_gauge *g)
{
    atomic_add_double(&g->bits, 1);
}

void an_prom_gauge_dec(an_prom_gauge *g)
{
    atomic_add_double(&g->bits, -1);
}

double an_prom_gauge_value(const an_prom_gauge *g)
{
    return from_bits(atomic_load_explicit(&g->bits, memory_order_relaxed));
}

void an_prom_histogram_observe(an_prom_histogram *h, double v)
{
    if (isnan(v))
        return;
    /* binary search: the first bound >= v, or nbounds for +Inf */
    size_t lo = 0, hi = h->nbounds;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (h->bounds[mid] >= v)
            hi = mid;
        else
            lo = mid + 1;
    }
    pthread_mutex_lock(&h->lock);
    h->counts[lo]++;
    h->count++;
    h->sum += v;
    pthread_mutex_unlock(&h->lock);
}

uint64_t an_prom_histogram_count(an_prom_histogram *h)
{
    pthread_mutex_lock(&h->lock);
    uint64_t n = h->count;
    pthread_mutex_unlock(&h->lock);
    return n;
}

double an_prom_histogram_sum(an_prom_histogram *h)
{
    pthread_mutex_lock(&h->lock);
    double s = h->sum;
    pthread_mutex_unlock(&h->lock);
    return s;
}

/* ---- rendering ---------------------------------------------------------- */

static void add_sample(an_buf *b, const char *name, const char *suffix, const char *labels,
                       const char *extra, double v)
{
    an_buf_adds(b, name);
    an_buf_adds(b, suffix);
    if (*labels || extra) {
        an_buf_addc(b, '{');
        an_buf_adds(b, labels);
        if (extra) {
            if (*labels)
                an_buf_addc(b, ',');
            an_buf_adds(b, extra);
        }
        an_buf_addc(b, '}');
    }
    an_buf_addc(b, ' ');
    add_double(b, v);
    an_buf_addc(b, '\n');
}

static void render_histogram(an_buf *b, const family *f, an_prom_histogram *h)
{
    uint64_t counts[MAX_BUCKETS + 1];
    pthread_mutex_lock(&h->lock);
    memcpy(counts, h->counts, (f->nbuckets + 1) * sizeof(uint64_t));
    uint64_t count = h->count;
    double sum = h->sum;
    pthread_mutex_unlock(&h->lock);

    uint64_t cum = 0;
    an_buf le = AN_BUF_INIT;
    for (size_t i = 0; i <= f->nbuckets; i++) {
        cum += counts[i];
        an_buf_reset(&le);
        an_buf_adds(&le, "le=\"");
        if (i < f->nbuckets)
            add_double(&le, f->buckets[i]);
        else
            an_buf_adds(&le, "+Inf");
        an_buf_addc(&le, '"');
        add_sample(b, f->name, "_bucket", h->s.label_text, an_buf_str(&le), (double)cum);
    }
    an_buf_free(&le);
    add_sample(b, f->name, "_sum", h->s.label_text, NULL, sum);
    add_sample(b, f->name, "_count", h->s.label_text, NULL, (double)count);
}

void an_prom_render(an_prom_registry *r, an_buf *out)
{
    pthread_mutex_lock(&r->lock);
    for (const family *f = r->first; f; f = f->next) {
        if (*f->help) {
            an_buf_addf(out, "# HELP %s ", f->name);
            add_escaped(out, f->help, false);
            an_buf_addc(out, '\n');
        }
        an_buf_addf(out, "# TYPE %s %s\n", f->name, type_name[f->type]);
        for (series *s = f->first; s; s = s->next) {
            if (f->type == T_COUNTER)
                add_sample(out, f->name, "", s->label_text, NULL,
                           an_prom_counter_value((an_prom_counter *)s));
            else if (f->type == T_GAUGE)
                add_sample(out, f->name, "", s->label_text, NULL,
                           an_prom_gauge_value((an_prom_gauge *)s));
            else
                render_histogram(out, f, (an_prom_histogram *)s);
        }
    }
    pthread_mutex_unlock(&r->lock);
}
