/*
 * shapes.c - the data of each widget type, from a metrics query reply
 * {metricId, unit, granularity, columns, rows} (docs/metrics.md). The time
 * column is the one named "bucket" (or "time"/"ts"), the value column
 * "value"; every other column is a dimension. Shapes (docs/dashboards.md):
 *   line, bar  {unit, granularity, buckets:[t...], series:[{name, dims, values:[...]}]}
 *   pie        {unit, total, slices:[{name, value, share}]}  (largest first)
 *   table      {columns, rows, page, pageSize, totalRows}
 *   bignumber  {unit, value, previous, change, changePct}
 *   map        {unit, values:{"FR": n, ...}, unknown}  (ISO 3166-1 alpha-2, first dimension)
 *   text       {body}
 */
#include "common/buf.h"
#include "dashboards/dash.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const types[] = {"line",      "bar", "pie",  "table",
                                    "bignumber", "map", "text", NULL};

bool dash_type_valid(const char *type)
{
    for (int i = 0; type && types[i]; i++)
        if (strcmp(type, types[i]) == 0)
            return true;
    return false;
}

bool dash_type_needs_metric(const char *type)
{
    return dash_type_valid(type) && strcmp(type, "text") != 0;
}

typedef struct cols {
    int time, value;
    int dims[8];
    int ndims;
} cols;

static an_status find_cols(const cJSON *reply, cols *c, an_error *err)
{
    const cJSON *columns = cJSON_GetObjectItemCaseSensitive(reply, "columns");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(reply, "rows");
    if (!cJSON_IsArray(columns) || !cJSON_IsArray(rows))
        return an_error_set(err, AN_INTERNAL, "metrics reply without columns/rows");
    memset(c, 0, sizeof(*c));
    c->time = c->value = -1;
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, columns)
    {
        const char *name = cJSON_IsString(it) ? it->valuestring
                           : cJSON_IsString(cJSON_GetObjectItemCaseSensitive(it, "name"))
                               ? cJSON_GetObjectItemCaseSensitive(it, "name")->valuestring
                               : "";
        if (c->time < 0 &&
            (!strcmp(name, "bucket") || !strcmp(name, "time") || !strcmp(name, "ts")))
            c->time = i;
        else if (c->value < 0 && !strcmp(name, "value"))
            c->value = i;
        else if (c->ndims < 8)
            c->dims[c->ndims++] = i;
        i++;
    }
    if (c->value < 0)
        return an_error_set(err, AN_INTERNAL, "metrics reply has no value column");
    return AN_OK;
}

static double num_at(const cJSON *row, int i)
{
    const cJSON *v = cJSON_GetArrayItem(row, i);
    if (cJSON_IsNumber(v))
        return v->valuedouble;
    if (cJSON_IsString(v))
        return strtod(v->valuestring, NULL);
    return 0;
}

static void str_at(const cJSON *row, int i, an_buf *out)
{
    const cJSON *v = cJSON_GetArrayItem(row, i);
    if (cJSON_IsString(v))
        an_buf_adds(out, v->valuestring);
    else if (cJSON_IsNumber(v))
        an_buf_addf(out, "%.15g", v->valuedouble);
    else if (cJSON_IsBool(v))
        an_buf_adds(out, cJSON_IsTrue(v) ? "true" : "false");
}

/* The series name of a row: its dimension values joined by " / ", or "total". */
static void series_name(const cJSON *row, const cols *c, an_buf *out)
{
    an_buf_reset(out);
    for (int k = 0; k < c->ndims; k++) {
        if (k)
            an_buf_adds(out, " / ");
        str_at(row, c->dims[k], out);
    }
    if (c->ndims == 0)
        an_buf_adds(out, "total");
}

static int index_of(cJSON *arr, const char *s)
{
    int i = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, arr)
    {
        if (strcmp(it->valuestring, s) == 0)
            return i;
        i++;
    }
    return -1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add_unit(cJSON *out, const cJSON *reply)
{
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(reply, "unit");
    cJSON_AddStringToObject(out, "unit", cJSON_IsString(u) ? u->valuestring : "");
}

static an_status shape_series(const cJSON *reply, const cols *c, cJSON *out, an_error *err)
{
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(reply, "rows");
    if (c->time < 0)
        return an_error_set(err, AN_INTERNAL, "metrics reply has no bucket column");
    /* sorted distinct buckets */
    int n = cJSON_GetArraySize(rows);
    char **bk = calloc((size_t)n + 1, sizeof(*bk));
    int nb = 0;
    an_buf s;
    an_buf_init(&s);
    const cJSON *row;
    cJSON_ArrayForEach(row, rows)
    {
        an_buf_reset(&s);
        str_at(row, c->time, &s);
        bk[nb++] = strdup(an_buf_str(&s));
    }
    qsort(bk, (size_t)nb, sizeof(*bk), cmp_str);
    cJSON *buckets = cJSON_CreateArray();
    for (int i = 0; i < nb; i++)
        if (i == 0 || strcmp(bk[i], bk[i - 1]) != 0)
            cJSON_AddItemToArray(buckets, cJSON_CreateString(bk[i]));
    for (int i = 0; i < nb; i++)
        free(bk[i]);
    free(bk);
    int nbuckets = cJSON_GetArraySize(buckets);
    cJSON *names = cJSON_CreateArray();
    cJSON *series = cJSON_CreateArray();
    an_buf t;
    an_buf_init(&t);
    cJSON_ArrayForEach(row, rows)
    {
        series_name(row, c, &s);
        int si = index_of(names, an_buf_str(&s));
        cJSON *ser;
        if (si < 0) {
            cJSON_AddItemToArray(names, cJSON_CreateString(an_buf_str(&s)));
            ser = cJSON_CreateObject();
            cJSON_AddStringToObject(ser, "name", an_buf_str(&s));
            cJSON *dims = cJSON_AddArrayToObject(ser, "dims");
            for (int k = 0; k < c->ndims; k++) {
                an_buf_reset(&t);
                str_at(row, c->dims[k], &t);
                cJSON_AddItemToArray(dims, cJSON_CreateString(an_buf_str(&t)));
            }
            cJSON *vals = cJSON_AddArrayToObject(ser, "values");
            for (int i = 0; i < nbuckets; i++)
                cJSON_AddItemToArray(vals, cJSON_CreateNumber(0));
            cJSON_AddItemToArray(series, ser);
        } else {
            ser = cJSON_GetArrayItem(series, si);
        }
        an_buf_reset(&t);
        str_at(row, c->time, &t);
        int bi = index_of(buckets, an_buf_str(&t));
        cJSON *v = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(ser, "values"), bi);
        cJSON_SetNumberValue(v, v->valuedouble + num_at(row, c->value));
    }
    an_buf_free(&s);
    an_buf_free(&t);
    cJSON_Delete(names);
    cJSON_AddItemToObject(out, "buckets", buckets);
    cJSON_AddItemToObject(out, "series", series);
    return AN_OK;
}

typedef struct slice {
    char *name;
    double value;
} slice;

static int cmp_slice(const void *a, const void *b)
{
    const slice *x = a, *y = b;
    if (x->value != y->value)
        return x->value < y->value ? 1 : -1;
    return strcmp(x->name, y->name);
}

static an_status shape_pie(const cJSON *reply, const cols *c, cJSON *out)
{
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(reply, "rows");
    int n = cJSON_GetArraySize(rows);
    slice *sl = calloc((size_t)n + 1, sizeof(*sl));
    int ns = 0;
    double total = 0;
    an_buf s;
    an_buf_init(&s);
    const cJSON *row;
    cJSON_ArrayForEach(row, rows)
    {
        series_name(row, c, &s);
        int i;
        for (i = 0; i < ns; i++)
            if (strcmp(sl[i].name, an_buf_str(&s)) == 0)
                break;
        if (i == ns)
            sl[ns++].name = strdup(an_buf_str(&s));
        double v = num_at(row, c->value);
        sl[i].value += v;
        total += v;
    }
    an_buf_free(&s);
    qsort(sl, (size_t)ns, sizeof(*sl), cmp_slice);
    cJSON_AddNumberToObject(out, "total", total);
    cJSON *arr = cJSON_AddArrayToObject(out, "slices");
    for (int i = 0; i < ns; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", sl[i].name);
        cJSON_AddNumberToObject(o, "value", sl[i].value);
        cJSON_AddNumberToObject(o, "share", total != 0 ? sl[i].value / total : 0);
        cJSON_AddItemToArray(arr, o);
        free(sl[i].name);
    }
    free(sl);
    return AN_OK;
}

static int int_param(const cJSON *params, const cJSON *widget, const char *name, int def, int lo,
                     int hi)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(params, name);
    if (!cJSON_IsNumber(v))
        v = cJSON_GetObjectItemCaseSensitive(widget, name);
    int r = cJSON_IsNumber(v) ? (int)v->valuedouble : def;
    return r < lo ? lo : r > hi ? hi : r;
}

static an_status shape_table(const cJSON *widget, const cJSON *reply, const cJSON *params,
                             cJSON *out)
{
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(reply, "rows");
    int total = cJSON_GetArraySize(rows);
    int page = int_param(params, widget, "page", 1, 1, 1000000);
    int size = int_param(params, widget, "pageSize", 50, 1, 1000);
    cJSON_AddItemToObject(out, "columns",
                          cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(reply, "columns"), 1));
    cJSON *arr = cJSON_AddArrayToObject(out, "rows");
    long first = (long)(page - 1) * size;
    for (long i = first; i < total && i < first + size; i++)
        cJSON_AddItemToArray(arr, cJSON_Duplicate(cJSON_GetArrayItem(rows, (int)i), 1));
    cJSON_AddNumberToObject(out, "page", page);
    cJSON_AddNumberToObject(out, "pageSize", size);
    cJSON_AddNumberToObject(out, "totalRows", total);
    return AN_OK;
}

static double sum_values(const cJSON *reply, const cols *c)
{
    double s = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(reply, "rows"))
    {
        s += num_at(row, c->value);
    }
    return s;
}

static an_status shape_bignumber(const cJSON *reply, const cJSON *prev, const cols *c, cJSON *out,
                                 an_error *err)
{
    double v = sum_values(reply, c);
    cJSON_AddNumberToObject(out, "value", v);
    if (prev) {
        cols pc;
        an_status st = find_cols(prev, &pc, err);
        if (st != AN_OK)
            return st;
        double p = sum_values(prev, &pc);
        cJSON_AddNumberToObject(out, "previous", p);
        cJSON_AddNumberToObject(out, "change", v - p);
        if (p != 0)
            cJSON_AddNumberToObject(out, "changePct", round((v - p) / fabs(p) * 10000) / 100);
        else
            cJSON_AddNullToObject(out, "changePct");
    } else {
        cJSON_AddNullToObject(out, "previous");
        cJSON_AddNullToObject(out, "change");
        cJSON_AddNullToObject(out, "changePct");
    }
    return AN_OK;
}

static an_status shape_map(const cJSON *reply, const cols *c, cJSON *out, an_error *err)
{
    if (c->ndims < 1)
        return an_error_set(err, AN_FAILED_PRECONDITION,
                            "a map widget needs a country dimension (ISO 3166-1 alpha-2)");
    cJSON *values = cJSON_AddObjectToObject(out, "values");
    double unknown = 0;
    an_buf s;
    an_buf_init(&s);
    const cJSON *row;
    cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(reply, "rows"))
    {
        an_buf_reset(&s);
        str_at(row, c->dims[0], &s);
        const char *k = an_buf_str(&s);
        double v = num_at(row, c->value);
        if (strlen(k) != 2 || !isalpha((unsigned char)k[0]) || !isalpha((unsigned char)k[1])) {
            unknown += v;
            continue;
        }
        char code[3] = {(char)toupper((unsigned char)k[0]), (char)toupper((unsigned char)k[1]), 0};
        cJSON *cur = cJSON_GetObjectItemCaseSensitive(values, code);
        if (cur)
            cJSON_SetNumberValue(cur, cur->valuedouble + v);
        else
            cJSON_AddNumberToObject(values, code, v);
    }
    an_buf_free(&s);
    cJSON_AddNumberToObject(out, "unknown", unknown);
    return AN_OK;
}

an_status dash_shape(const char *type, const cJSON *widget, const cJSON *reply, const cJSON *prev,
                     const cJSON *params, cJSON **out, an_error *err)
{
    *out = NULL;
    cJSON *o = cJSON_CreateObject();
    an_status st = AN_OK;
    if (strcmp(type, "text") == 0) {
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(widget, "body");
        cJSON_AddStringToObject(o, "body", cJSON_IsString(b) ? b->valuestring : "");
        *out = o;
        return AN_OK;
    }
    cols c;
    st = find_cols(reply, &c, err);
    if (st == AN_OK) {
        if (strcmp(type, "table") != 0)
            add_unit(o, reply);
        const cJSON *g = cJSON_GetObjectItemCaseSensitive(reply, "granularity");
        if (cJSON_IsString(g) && (!strcmp(type, "line") || !strcmp(type, "bar")))
            cJSON_AddStringToObject(o, "granularity", g->valuestring);
        if (!strcmp(type, "line") || !strcmp(type, "bar"))
            st = shape_series(reply, &c, o, err);
        else if (!strcmp(type, "pie"))
            st = shape_pie(reply, &c, o);
        else if (!strcmp(type, "table"))
            st = shape_table(widget, reply, params, o);
        else if (!strcmp(type, "bignumber"))
            st = shape_bignumber(reply, prev, &c, o, err);
        else if (!strcmp(type, "map"))
            st = shape_map(reply, &c, o, err);
        else
            st = an_error_set(err, AN_INVALID_ARGUMENT, "unknown widget type %s", type);
    }
    if (st != AN_OK) {
        cJSON_Delete(o);
        return st;
    }
    *out = o;
    return AN_OK;
}
