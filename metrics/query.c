#include "metrics/query.h"

#include "common/buf.h"
#include "common/log.h"
#include "common/sql.h"
#include "common/timeutil.h"
#include "common/ulid.h"
#include "metrics/cache.h"
#include "metrics/columns.h"
#include "metrics/store.h"
#include "metrics/template.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ the table */

typedef struct qrow {
    int64_t bucket; /* epoch ms; 0 without buckets */
    char **dims;    /* ndims strings */
    bool has_value;
    double value;
} qrow;

typedef struct qtable {
    size_t ndims; /* the tenant (per-tenant breakdown) first, then the requested ones */
    bool has_bucket;
    an_template_granularity g;
    int64_t from_ms, to_ms;
    qrow *rows;
    size_t n, cap;
    size_t limit; /* rows accepted from the source; one more is resource_exhausted */
    /* live results: column positions, found on the first row */
    bool located;
    size_t bucket_col, value_col, dim_col[AN_TEMPLATE_MAX_DIMENSIONS + 1];
    const query_request *q;
} qtable;

static void qtable_free(qtable *t)
{
    for (size_t i = 0; i < t->n; i++) {
        for (size_t k = 0; k < t->ndims; k++)
            free(t->rows[i].dims[k]);
        free(t->rows[i].dims);
    }
    free(t->rows);
    t->rows = NULL;
    t->n = t->cap = 0;
}

static qrow *qtable_add(qtable *t)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        qrow *bigger = realloc(t->rows, t->cap * sizeof(*bigger));
        if (!bigger)
            abort();
        t->rows = bigger;
    }
    qrow *r = &t->rows[t->n++];
    memset(r, 0, sizeof(*r));
    r->dims = calloc(t->ndims + 1, sizeof(char *));
    return r;
}

static an_status too_many_rows(const qtable *t, an_error *err)
{
    return an_error_set(err, AN_RESOURCE_EXHAUSTED,
                        "the result has more than %zu rows (ANALYTICS_METRICS_MAX_ROWS): narrow "
                        "the time range, use a coarser granularity or fewer dimensions",
                        t->limit);
}

/* "nan", "inf", NULL: no value. Anything else must be a number. */
static an_status parse_value(const char *s, qrow *r, an_error *err)
{
    if (!s)
        return AN_OK;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0')
        return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                              "query: the value column must be a number, got \"%.40s\"", s);
    if (isfinite(v)) {
        r->has_value = true;
        r->value = v;
    }
    return AN_OK;
}

/* A bucket inside the requested range, floored to the granularity (a
 * template that writes {{bucket}} AS bucket gives them aligned already).
 * false: outside, the row is not part of the answer. */
static bool take_bucket(const qtable *t, int64_t ms, int64_t *out)
{
    *out = an_template_bucket_floor(ms, t->g);
    return *out >= t->from_ms && *out < t->to_ms;
}

static an_status locate_columns(qtable *t, const an_ch_row *row, an_error *err)
{
    const query_request *q = t->q;
    metrics_result_columns rc;
    metrics_template_locate_columns(row, q->params->ndimensions, &rc);
    if (t->has_bucket && rc.has_bucket && strncmp(row->types[rc.bucket_col], "DateTime", 8) != 0)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                              "query: the bucket column is %s, not a DateTime: write "
                              "{{bucket}} AS bucket",
                              row->types[rc.bucket_col]);
    t->value_col = rc.value_col;
    t->bucket_col = rc.bucket_col;
    size_t off = q->per_tenant ? 1 : 0, found_dims = rc.ndims_found;
    if (q->per_tenant && rc.has_tenant) {
        t->dim_col[0] = rc.tenant_col;
        found_dims++;
    }
    for (size_t i = 0; i < q->params->ndimensions; i++)
        t->dim_col[i + off] = rc.dim_col[i];
    if (!rc.has_value)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                              "query: the template must return a column named value");
    if (t->has_bucket && !rc.has_bucket)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                              "query: a template with {{bucket}} must return it as a column "
                              "named bucket ({{bucket}} AS bucket)");
    if (found_dims != t->ndims)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                              "query: the template must return {{dimensions}} as columns (put "
                              "{{dimensions}} in its SELECT list)");
    t->located = true;
    return AN_OK;
}

static an_status on_live_row(void *ud, const an_ch_row *row, an_error *err)
{
    qtable *t = ud;
    an_status s;
    if (!t->located && (s = locate_columns(t, row, err)) != AN_OK)
        return s;
    int64_t bucket = 0;
    if (t->has_bucket) {
        int64_t ms;
        const char *b = row->fields[t->bucket_col];
        if (!b || an_time_parse_ch(b, &ms, NULL) != AN_OK)
            return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                                  "query: bucket \"%.40s\" is not a DateTime", b ? b : "NULL");
        if (!take_bucket(t, ms, &bucket))
            return AN_OK;
    }
    if (t->n >= t->limit)
        return too_many_rows(t, err);
    qrow *r = qtable_add(t);
    r->bucket = bucket;
    for (size_t k = 0; k < t->ndims; k++) {
        const char *v = row->fields[t->dim_col[k]];
        r->dims[k] = strdup(v ? v : "");
    }
    return parse_value(row->fields[t->value_col], r, err);
}

typedef struct mat_ctx {
    qtable *t;
    const char *const *names; /* the requested dimensions */
    size_t nnames;
} mat_ctx;

static an_status on_mat_row(void *ud, const char *tenant_id, int64_t bucket_ms,
                            const char *dimensions, const char *value, an_error *err)
{
    mat_ctx *m = ud;
    qtable *t = m->t;
    int64_t bucket;
    if (!take_bucket(t, bucket_ms, &bucket))
        return AN_OK;
    if (t->n >= t->limit)
        return too_many_rows(t, err);
    cJSON *j = cJSON_Parse(dimensions);
    qrow *r = qtable_add(t);
    r->bucket = bucket;
    size_t k = 0;
    if (t->q->per_tenant)
        r->dims[k++] = strdup(tenant_id);
    for (size_t i = 0; i < m->nnames; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, m->names[i]);
        r->dims[k++] = strdup(cJSON_IsString(v) ? v->valuestring : "");
    }
    cJSON_Delete(j);
    return parse_value(value, r, err);
}

/* ---------------------------------------------------------- fill and sort */

static int cmp_dims(const qrow *a, const qrow *b, size_t ndims)
{
    for (size_t k = 0; k < ndims; k++) {
        int c = strcmp(a->dims[k], b->dims[k]);
        if (c)
            return c;
    }
    return 0;
}

/* Comparators for qsort_r; ud points to the number of dimensions. */
static int cmp_bucket_dims(const void *x, const void *y, void *ud)
{
    const qrow *a = x, *b = y;
    if (a->bucket != b->bucket)
        return a->bucket < b->bucket ? -1 : 1;
    return cmp_dims(a, b, *(const size_t *)ud);
}

static int cmp_dims_bucket(const void *x, const void *y, void *ud)
{
    const qrow *a = x, *b = y;
    int c = cmp_dims(a, b, *(const size_t *)ud);
    if (c)
        return c;
    return a->bucket < b->bucket ? -1 : a->bucket > b->bucket;
}

static void sort_rows(qtable *t, int (*cmp)(const void *, const void *, void *))
{
    if (t->n > 1) /* (qsort of a NULL array is undefined, even when empty) */
        qsort_r(t->rows, t->n, sizeof(qrow), cmp, &t->ndims);
}

static size_t bucket_count(int64_t from, int64_t to, an_template_granularity g, size_t cap)
{
    size_t n = 0;
    for (int64_t b = from; b < to && n <= cap; b = an_template_bucket_next(b, g))
        n++;
    return n;
}

/* Add the missing (dimensions, bucket) rows: each dimension combination
 * seen gets every bucket of the range. Without dimensions the one
 * combination always exists, so an empty result becomes a row of empty
 * buckets. */
static an_status fill_buckets(qtable *t, bool zero, size_t max_rows, an_error *err)
{
    size_t nb = bucket_count(t->from_ms, t->to_ms, t->g, max_rows);
    sort_rows(t, cmp_dims_bucket);
    size_t combos = 0;
    for (size_t i = 0; i < t->n; i++)
        if (i == 0 || cmp_dims(&t->rows[i - 1], &t->rows[i], t->ndims) != 0)
            combos++;
    if (t->ndims == 0)
        combos = 1;
    if (combos > 0 && nb > max_rows / combos)
        return an_error_set(err, AN_RESOURCE_EXHAUSTED,
                            "filled, the result would have %zu dimension combinations x %zu "
                            "buckets, more than %zu rows (ANALYTICS_METRICS_MAX_ROWS): narrow the "
                            "time range, use a coarser granularity or fewer dimensions",
                            combos, nb, max_rows);
    size_t n0 = t->n, i = 0;
    for (size_t c = 0; c < combos; c++) {
        size_t first = i; /* rows of this combination: [first, i) */
        while (i < n0 && (i == first || cmp_dims(&t->rows[first], &t->rows[i], t->ndims) == 0))
            i++;
        size_t j = first;
        for (int64_t b = t->from_ms; b < t->to_ms; b = an_template_bucket_next(b, t->g)) {
            while (j < i && t->rows[j].bucket < b)
                j++;
            if (j < i && t->rows[j].bucket == b)
                continue;
            /* t->rows may move: copy the dims before adding */
            size_t src = first < n0 ? first : 0;
            qrow *r = qtable_add(t);
            for (size_t k = 0; k < t->ndims; k++)
                r->dims[k] = strdup(t->rows[src].dims[k]);
            r->bucket = b;
            r->has_value = zero;
            r->value = 0;
        }
    }
    return AN_OK;
}

/* -------------------------------------------------------------- the reply */

/* The reply is written as JSON text directly (an answer can hold 10,000
 * rows: no tree of cJSON items to build and print, and the text is what
 * the cache stores). */

static void json_str(an_buf *b, const char *s)
{
    an_buf_addc(b, '"');
    an_buf_add_json_escaped(b, s, strlen(s));
    an_buf_addc(b, '"');
}

/* The shortest of %.15g and %.17g that reads back exactly; integers as
 * integers. v is finite. */
static void json_number(an_buf *b, double v)
{
    if (v == floor(v) && fabs(v) < 9007199254740992.0) {
        an_buf_addf(b, "%" PRId64, (int64_t)v);
        return;
    }
    char tmp[40];
    snprintf(tmp, sizeof(tmp), "%.15g", v);
    if (strtod(tmp, NULL) != v)
        snprintf(tmp, sizeof(tmp), "%.17g", v);
    an_buf_adds(b, tmp);
}

static void json_time_or_null(an_buf *b, bool present, int64_t ms)
{
    char iso[AN_TIME_ISO_LEN];
    if (present && an_time_format_iso(ms, iso, NULL) == AN_OK)
        json_str(b, iso);
    else
        an_buf_adds(b, "null");
}

static void json_column(an_buf *b, bool first, const char *name, const char *type)
{
    an_buf_adds(b, first ? "{\"name\":" : ",{\"name\":");
    json_str(b, name);
    an_buf_adds(b, ",\"type\":");
    json_str(b, type);
    an_buf_addc(b, '}');
}

static const char *fill_name(query_fill f)
{
    switch (f) {
    case QUERY_FILL_ZERO:
        return "zero";
    case QUERY_FILL_NULL:
        return "null";
    default:
        return "none";
    }
}

/* The reply data as JSON text (free it). "cached" comes first, so a cache
 * hit can flip it in the stored text (cache_lookup). */
static char *reply_json(const query_request *q, const qtable *t, query_fill fill,
                        const char *source, size_t nrows, bool truncated)
{
    const metric_def *d = q->def;
    const an_template_params *p = q->params;
    an_buf b = AN_BUF_INIT;
    an_buf_grow(&b, 256 + nrows * 48);
    an_buf_adds(&b, "{\"cached\":false,\"metricId\":");
    if (*d->id)
        json_str(&b, d->id);
    else
        an_buf_adds(&b, "null");
    an_buf_addf(&b, ",\"version\":%" PRIu64 ",\"unit\":", d->version);
    json_str(&b, d->unit);
    an_buf_adds(&b, ",\"granularity\":");
    if (t->has_bucket)
        json_str(&b, an_template_granularity_name(t->g));
    else
        an_buf_adds(&b, "null");
    an_buf_adds(&b, ",\"from\":");
    json_time_or_null(&b, p->has_range, p->from_ms);
    an_buf_adds(&b, ",\"to\":");
    json_time_or_null(&b, p->has_range, p->to_ms);
    an_buf_adds(&b, ",\"fill\":");
    json_str(&b, fill_name(fill));

    an_buf_adds(&b, ",\"columns\":[");
    bool first = true;
    if (t->has_bucket) {
        json_column(&b, first, "bucket", "time");
        first = false;
    }
    if (q->per_tenant) {
        json_column(&b, first, "tenantId", "string");
        first = false;
    }
    for (size_t i = 0; i < p->ndimensions; i++) {
        json_column(&b, first, p->dimensions[i], "string");
        first = false;
    }
    json_column(&b, first, "value", "number");

    an_buf_adds(&b, "],\"rows\":[");
    for (size_t i = 0; i < nrows; i++) {
        const qrow *r = &t->rows[i];
        an_buf_adds(&b, i ? ",[" : "[");
        if (t->has_bucket) {
            char iso[AN_TIME_ISO_LEN];
            an_time_format_iso(r->bucket, iso, NULL);
            an_buf_addc(&b, '"');
            an_buf_adds(&b, iso);
            an_buf_adds(&b, "\",");
        }
        for (size_t k = 0; k < t->ndims; k++) {
            json_str(&b, r->dims[k]);
            an_buf_addc(&b, ',');
        }
        if (r->has_value)
            json_number(&b, r->value);
        else
            an_buf_adds(&b, "null");
        an_buf_addc(&b, ']');
    }
    an_buf_adds(&b, "],\"source\":");
    json_str(&b, source);
    if (q->preview)
        an_buf_adds(&b, truncated ? ",\"truncated\":true" : ",\"truncated\":false");
    an_buf_adds(&b, ",\"scope\":{");
    if (q->all_tenants) {
        an_buf_adds(&b, "\"allTenants\":true,\"breakdown\":");
        json_str(&b, q->per_tenant ? "tenant" : "total");
    } else {
        an_buf_adds(&b, "\"tenantId\":");
        json_str(&b, q->tenant);
    }
    an_buf_adds(&b, "}}");
    return an_buf_detach(&b, NULL);
}

/* ---------------------------------------------------------------- options */

an_status metrics_query_options(const cJSON *body, query_request *q, an_error *err)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(body, "fill");
    q->fill = QUERY_FILL_DEFAULT;
    if (f && !cJSON_IsNull(f)) {
        const char *s = cJSON_IsString(f) ? f->valuestring : "";
        if (strcmp(s, "zero") == 0)
            q->fill = QUERY_FILL_ZERO;
        else if (strcmp(s, "null") == 0)
            q->fill = QUERY_FILL_NULL;
        else if (strcmp(s, "none") == 0)
            q->fill = QUERY_FILL_NONE;
        else
            return an_error_field(err, AN_INVALID_ARGUMENT, "fill",
                                  "fill: expected zero, null or none");
    }
    const cJSON *src = cJSON_GetObjectItemCaseSensitive(body, "source");
    q->source = QUERY_SOURCE_AUTO;
    if (src && !cJSON_IsNull(src)) {
        const char *s = cJSON_IsString(src) ? src->valuestring : "";
        if (strcmp(s, "auto") == 0)
            q->source = QUERY_SOURCE_AUTO;
        else if (strcmp(s, "live") == 0)
            q->source = QUERY_SOURCE_LIVE;
        else if (strcmp(s, "materialized") == 0)
            q->source = QUERY_SOURCE_MATERIALIZED;
        else
            return an_error_field(err, AN_INVALID_ARGUMENT, "source",
                                  "source: expected auto, live or materialized");
    }
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(body, "cache");
    q->use_cache = true;
    if (c && !cJSON_IsNull(c)) {
        if (!cJSON_IsBool(c))
            return an_error_field(err, AN_INVALID_ARGUMENT, "cache", "cache: expected a boolean");
        q->use_cache = cJSON_IsTrue(c);
    }
    return AN_OK;
}

/* ------------------------------------------------------------ the sources */

/* The canonical text of what a cached answer depends on besides the tenant
 * and the metric version. */
static char *canonical_params(const query_request *q, query_fill fill)
{
    const an_template_params *p = q->params;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "g", an_template_granularity_name(p->granularity));
    cJSON_AddNumberToObject(o, "from", p->has_range ? (double)p->from_ms : -1);
    cJSON_AddNumberToObject(o, "to", p->has_range ? (double)p->to_ms : -1);
    cJSON *dims = cJSON_AddArrayToObject(o, "d");
    for (size_t i = 0; i < p->ndimensions; i++)
        cJSON_AddItemToArray(dims, cJSON_CreateString(p->dimensions[i]));
    cJSON *fs = cJSON_AddArrayToObject(o, "f");
    for (size_t i = 0; i < p->nfilters; i++) {
        const an_template_filter *f = &p->filters[i];
        cJSON *e = cJSON_CreateArray();
        cJSON_AddItemToArray(e, cJSON_CreateString(f->field));
        cJSON_AddItemToArray(e, cJSON_CreateString(an_template_op_name(f->op)));
        for (size_t k = 0; k < f->nvalues; k++) {
            const an_template_value *v = &f->values[k];
            cJSON_AddItemToArray(e, v->kind == AN_TEMPLATE_STRING   ? cJSON_CreateString(v->s)
                                    : v->kind == AN_TEMPLATE_NUMBER ? cJSON_CreateNumber(v->n)
                                                                    : cJSON_CreateBool(v->b));
        }
        cJSON_AddItemToArray(fs, e);
    }
    cJSON_AddBoolToObject(o, "all", q->all_tenants);
    cJSON_AddBoolToObject(o, "per", q->per_tenant);
    cJSON_AddStringToObject(o, "fill", fill_name(fill));
    cJSON_AddNumberToObject(o, "src", q->source);
    char *s = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return s;
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Do the request's dimensions equal the materialized ones (as sets)? */
static bool same_dimensions(const metric_def *d, const an_template_params *p)
{
    if (d->mat.ndimensions != p->ndimensions)
        return false;
    size_t n = p->ndimensions;
    if (n == 0)
        return true;
    char **a = calloc(n, sizeof(char *)), **b = calloc(n, sizeof(char *));
    memcpy(a, d->mat.dimensions, n * sizeof(char *));
    memcpy(b, p->dimensions, n * sizeof(char *));
    qsort(a, n, sizeof(char *), cmp_cstr);
    qsort(b, n, sizeof(char *), cmp_cstr);
    bool same = true;
    for (size_t i = 0; i < n && same; i++)
        same = strcmp(a[i], b[i]) == 0;
    free(a);
    free(b);
    return same;
}

/* Could materialized values answer q (before looking at their coverage)? */
static bool materializable(const query_request *q)
{
    const metric_def *d = q->def;
    const an_template_params *p = q->params;
    return !q->preview && d->schedule && p->has_range && p->nfilters == 0 &&
           p->granularity == d->mat.granularity && same_dimensions(d, p);
}

/* ClickHouse's codes for a column that is not there (any more). */
#define CH_UNKNOWN_IDENTIFIER 47
#define CH_NO_SUCH_COLUMN     16

/* ClickHouse goes on with a query whose HTTP client gave up (18.16 notices
 * no disconnect) until the reader profile's max_execution_time: stop it,
 * as the writer (the readonly reader may not KILL). Best effort. */
static void kill_query(metrics_ctx *ctx, const char *qid)
{
    if (!qid[0])
        return;
    an_ch *w = NULL;
    an_error e;
    an_error_clear(&e);
    an_buf sql = AN_BUF_INIT;
    an_buf_adds(&sql, "KILL QUERY WHERE query_id = ");
    an_sql_quote(&sql, qid, strlen(qid));
    an_buf_adds(&sql, " ASYNC");
    if (metrics_writer_take(ctx->conns, &w, &e) == AN_OK) {
        if (an_ch_exec(w, an_buf_str(&sql), NULL, &e) != AN_OK)
            an_warn("could not stop query %s in ClickHouse: %s", qid, e.message);
        metrics_writer_put(ctx->conns, w);
    } else {
        an_warn("could not stop query %s in ClickHouse: %s", qid, e.message);
    }
    an_buf_free(&sql);
}

static an_status run_live_once(metrics_ctx *ctx, const query_request *q, qtable *t,
                               const an_template_column *cols, size_t ncols, int *code,
                               an_error *err)
{
    an_template_scope scope = {.tenant_id = q->all_tenants ? NULL : q->tenant,
                               .all_tenants = q->all_tenants,
                               .columns = cols,
                               .ncolumns = ncols};
    an_buf sql = AN_BUF_INIT;
    an_buf_adds(&sql, "SELECT * FROM (");
    an_status s =
        an_template_bind(q->def->query, strlen(q->def->query), q->params, &scope, &sql, err);
    if (s != AN_OK) {
        an_buf_free(&sql);
        return s;
    }
    an_buf_addc(&sql, ')');
    if (q->preview && t->has_bucket) {
        /* a cut preview shows the first rows, not any rows */
        an_buf_adds(&sql, " ORDER BY bucket");
        if (q->per_tenant)
            an_buf_adds(&sql, ", " AN_TEMPLATE_TENANT_ALIAS);
        for (size_t i = 0; i < q->params->ndimensions; i++)
            an_buf_addf(&sql, ", dim_%zu", i);
    }
    /* One row more than accepted: seeing it means the answer would be cut. */
    an_buf_adds(&sql, " LIMIT ");
    an_sql_uint64(&sql, t->limit + 1);
    an_ch *ch = NULL;
    if ((s = metrics_reader_take(ctx->conns, &ch, err)) != AN_OK) {
        an_buf_free(&sql);
        return s;
    }
    /* a query_id (not a setting: the readonly reader may send it), so that
     * a query given up on is stopped in ClickHouse too */
    char qid[8 + AN_ULID_STRLEN] = "metrics-";
    if (an_ulid_new_str(qid + 8, NULL) != AN_OK)
        qid[0] = '\0';
    an_ch_setting qs = {"query_id", qid};
    an_ch_settings set = {.extra = &qs, .n_extra = qid[0] ? 1 : 0};
    s = an_ch_query(ch, an_buf_str(&sql), &set, on_live_row, t, err);
    *code = an_ch_last_exception_code(ch);
    bool timed_out = s == AN_UNAVAILABLE && an_ch_last_timed_out(ch);
    metrics_reader_put(ctx->conns, ch);
    if (timed_out) {
        kill_query(ctx, qid);
        s = an_error_set(err, AN_RESOURCE_EXHAUSTED,
                         "the query ran longer than %d ms (ANALYTICS_METRICS_QUERY_TIMEOUT)",
                         metrics_reader_timeout_ms(ctx->conns));
    }
    an_buf_free(&sql);
    return s;
}

/* A property column dropped since the list was read fails the query before
 * any row: read the list again and run once more. */
static an_status run_live(metrics_ctx *ctx, const query_request *q, qtable *t, an_error *err)
{
    an_status s = AN_OK;
    for (int attempt = 0; attempt < 2; attempt++) {
        an_template_column *cols = NULL;
        size_t ncols = 0;
        int code = 0;
        metrics_columns_get(ctx->columns, ctx->conns, &cols, &ncols);
        s = run_live_once(ctx, q, t, cols, ncols, &code, err);
        free(cols);
        if (s == AN_OK || ncols == 0 || t->n > 0 ||
            (code != CH_UNKNOWN_IDENTIFIER && code != CH_NO_SUCH_COLUMN))
            break;
        metrics_columns_invalidate(ctx->columns);
    }
    return s;
}

static an_status run_materialized(metrics_ctx *ctx, const query_request *q, qtable *t,
                                  an_error *err)
{
    an_ch *ch = NULL;
    an_status s = metrics_reader_take(ctx->conns, &ch, err);
    if (s != AN_OK)
        return s;
    store_values_query vq = {
        .metric_id = q->def->id,
        .granularity = q->params->granularity,
        .from_ms = t->from_ms,
        .to_ms = t->to_ms,
        .tenant = q->all_tenants ? "" : q->tenant,
        .every_tenant = q->all_tenants && q->per_tenant,
        .limit = t->limit + 1,
    };
    mat_ctx m = {t, (const char *const *)q->params->dimensions, q->params->ndimensions};
    s = metrics_store_values_read(ch, &vq, on_mat_row, &m, err);
    metrics_reader_put(ctx->conns, ch);
    return s;
}

/* Materialized values answer q when they are allowed to and their runs
 * cover the range; *use says so. */
static an_status pick_source(metrics_ctx *ctx, const query_request *q, bool *use, an_error *err)
{
    *use = false;
    if (q->source == QUERY_SOURCE_LIVE)
        return AN_OK;
    if (!materializable(q)) {
        if (q->source == QUERY_SOURCE_MATERIALIZED)
            return an_error_field(
                err, AN_FAILED_PRECONDITION, "source",
                "source: the metric is not materialized for these parameters (it needs a "
                "schedule, its materialize granularity and dimensions, and no filters)");
        return AN_OK;
    }
    char hash[65];
    metrics_def_spec_hash(q->def, hash);
    char *dims = metrics_def_dimensions_key(q->def);
    an_ch *ch = NULL;
    an_status s = metrics_reader_take(ctx->conns, &ch, err);
    if (s == AN_OK) {
        s = metrics_store_coverage(ch, q->def->tenant_id ? q->def->tenant_id : "", q->def->id, hash,
                                   q->params->granularity, dims, q->params->from_ms,
                                   q->params->to_ms, use, err);
        metrics_reader_put(ctx->conns, ch);
    }
    free(dims);
    if (s == AN_OK && !*use && q->source == QUERY_SOURCE_MATERIALIZED)
        return an_error_field(err, AN_FAILED_PRECONDITION, "source",
                              "source: materialized values do not cover the requested range yet");
    return s;
}

/* ------------------------------------------------------------------- run */

static void cache_store(metrics_ctx *ctx, const char *key, const char *json)
{
    redisContext *r = NULL;
    an_error e;
    an_error_clear(&e);
    if (metrics_redis_take(ctx->conns, &r, &e) != AN_OK ||
        metrics_cache_result_put(r, key, json, ctx->cache_ttl_ms, &e) != AN_OK) {
        an_warn("result cache: %s", e.message);
        an_prom_counter_inc(ctx->cache_errors);
    }
    metrics_redis_put(ctx->conns, r);
}

#define CACHED_FALSE "{\"cached\":false"

/* A cached answer as a raw JSON item (printed as is, not parsed and
 * printed again: a large answer costs a copy, not a parse), with its
 * leading "cached" member set to true; NULL on a miss. */
static cJSON *cache_lookup(metrics_ctx *ctx, const char *key)
{
    redisContext *r = NULL;
    an_error e;
    an_error_clear(&e);
    char *json = NULL;
    if (metrics_redis_take(ctx->conns, &r, &e) != AN_OK ||
        metrics_cache_result_get(r, key, &json, &e) != AN_OK) {
        an_warn("result cache: %s", e.message);
        an_prom_counter_inc(ctx->cache_errors);
    }
    metrics_redis_put(ctx->conns, r);
    cJSON *data = NULL;
    size_t n = sizeof(CACHED_FALSE) - 1;
    if (json && strncmp(json, CACHED_FALSE, n) == 0) {
        an_buf b = AN_BUF_INIT;
        an_buf_adds(&b, "{\"cached\":true");
        an_buf_adds(&b, json + n);
        data = cJSON_CreateRaw(an_buf_str(&b));
        an_buf_free(&b);
    }
    free(json);
    return data;
}

/* Default granularity, aligned range, and the size check before running. */
static an_status prepare(const query_request *q, qtable *t, an_error *err)
{
    an_template_params *p = q->params;
    unsigned used = 0;
    an_status s = an_template_scan(q->def->query, strlen(q->def->query), &used, err);
    if (s != AN_OK)
        return s;
    if ((used & AN_TEMPLATE_USES_BUCKET) && p->granularity == AN_TEMPLATE_GRAN_NONE)
        p->granularity = q->def->schedule ? q->def->mat.granularity : AN_TEMPLATE_DAY;
    t->has_bucket = p->granularity != AN_TEMPLATE_GRAN_NONE;
    t->g = p->granularity;
    if (t->has_bucket && !p->has_range)
        return an_error_field(err, AN_INVALID_ARGUMENT, "from",
                              "from: a time range (from, to) is required with a granularity");
    if (t->has_bucket) {
        /* whole buckets: from down, to up to a bucket boundary */
        p->from_ms = an_template_bucket_floor(p->from_ms, t->g);
        int64_t last = an_template_bucket_floor(p->to_ms, t->g);
        p->to_ms = last == p->to_ms ? last : an_template_bucket_next(last, t->g);
        size_t nb = bucket_count(p->from_ms, p->to_ms, t->g, q->max_rows);
        if (nb > q->max_rows && !q->preview)
            return an_error_set(err, AN_RESOURCE_EXHAUSTED,
                                "the range holds more %s buckets than %zu rows "
                                "(ANALYTICS_METRICS_MAX_ROWS): narrow the range or use a coarser "
                                "granularity",
                                an_template_granularity_name(t->g), q->max_rows);
    }
    t->from_ms = p->has_range ? p->from_ms : INT64_MIN;
    t->to_ms = p->has_range ? p->to_ms : INT64_MAX;
    t->ndims = p->ndimensions + (q->per_tenant ? 1 : 0);
    t->limit = q->max_rows;
    t->q = q;
    return AN_OK;
}

an_status metrics_query_run(metrics_ctx *ctx, query_request *q, cJSON **out, an_error *err)
{
    qtable t;
    memset(&t, 0, sizeof(t));
    an_status s = prepare(q, &t, err);
    if (s != AN_OK)
        return s;
    query_fill fill = q->fill;
    if (fill == QUERY_FILL_DEFAULT)
        fill = metrics_unit_fills_zero(q->def->unit) ? QUERY_FILL_ZERO : QUERY_FILL_NULL;
    if (!t.has_bucket)
        fill = QUERY_FILL_NONE;

    char *key = NULL;
    if (q->use_cache && !q->preview && ctx->cache_ttl_ms > 0) {
        char *params = canonical_params(q, fill);
        key = metrics_cache_result_key(ctx->redis_prefix, q->all_tenants ? NULL : q->tenant,
                                       q->def->id, q->def->version, params);
        free(params);
        if ((*out = cache_lookup(ctx, key)) != NULL) {
            an_prom_counter_inc(ctx->queries_cached);
            free(key);
            return AN_OK;
        }
    }

    bool materialized = false;
    int64_t t0 = an_time_mono_ms();
    if ((s = pick_source(ctx, q, &materialized, err)) == AN_OK) {
        if (materialized)
            s = run_materialized(ctx, q, &t, err);
        else
            s = run_live(ctx, q, &t, err);
    }
    bool truncated = false;
    if (s == AN_RESOURCE_EXHAUSTED && q->preview && t.n >= t.limit) {
        /* a preview is a sample: its first rows, said to be cut */
        s = AN_OK;
        truncated = true;
        an_error_clear(err);
    }
    if (s == AN_OK && fill != QUERY_FILL_NONE && !truncated) {
        an_error fe;
        an_error_clear(&fe);
        an_status fs = fill_buckets(&t, fill == QUERY_FILL_ZERO, q->max_rows, &fe);
        if (fs == AN_RESOURCE_EXHAUSTED && q->preview)
            truncated = true; /* not filled: the filled sample would not fit */
        else if (fs != AN_OK)
            s = an_error_set(err, fs, "%s", fe.message);
    }
    if (s == AN_OK) {
        sort_rows(&t, cmp_bucket_dims);
        size_t n = t.n;
        if (q->preview && n > q->max_rows) {
            n = q->max_rows;
            truncated = true;
        }
        char *json = reply_json(q, &t, fill, materialized ? "materialized" : "live", n, truncated);
        an_prom_counter_inc(materialized ? ctx->queries_materialized : ctx->queries_live);
        an_prom_histogram_observe(ctx->query_seconds, (double)(an_time_mono_ms() - t0) / 1000.0);
        if (key)
            cache_store(ctx, key, json);
        *out = cJSON_CreateRaw(json);
        free(json);
    }
    qtable_free(&t);
    free(key);
    return s;
}
