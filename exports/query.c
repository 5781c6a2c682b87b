/*
 * query.c - from a job's query template and filters to the SQL that runs.
 *
 * The template is checked and tenant-bound by common/sqlcheck (the same
 * checker as metrics): it may read only `events` (analytics.events of the
 * caller's tenant), one SELECT, no table functions, no SETTINGS or FORMAT.
 *
 * Filters narrow the template's result rows. Each is {"column", "op",
 * "value"}: column a plain identifier naming a result column, op one of
 * eq ne lt lte gt gte in contains, value a string, number or boolean (an
 * array of them for in). They become a WHERE around the bound template,
 *     SELECT * FROM (<bound template>) WHERE `col` = 'v' AND ...
 * with every value quoted by common/sql. At most 32 filters and 1000 values
 * in one `in`.
 */
#include "exports/exports.h"

#include "common/sql.h"
#include "common/sqlcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILTERS   32
#define MAX_IN_VALUES 1000

static const an_sqlcheck_table tables[] = {
    {"events", "analytics.events", "tenant_id"},
    {NULL, NULL, NULL},
};

static const struct {
    const char *name;
    const char *sql;
} ops[] = {
    {"eq", "="}, {"ne", "!="},  {"lt", "<"},  {"lte", "<="},
    {"gt", ">"}, {"gte", ">="}, {"in", "IN"}, {"contains", NULL},
};

static int op_index(const char *s)
{
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++)
        if (s && strcmp(ops[i].name, s) == 0)
            return (int)i;
    return -1;
}

static an_status value_sql(an_buf *out, const cJSON *v, const char *field, an_error *err)
{
    if (cJSON_IsString(v)) {
        an_sql_quote_str(out, v->valuestring);
        return AN_OK;
    }
    if (cJSON_IsBool(v)) {
        an_buf_addc(out, cJSON_IsTrue(v) ? '1' : '0');
        return AN_OK;
    }
    if (cJSON_IsNumber(v)) {
        double d = v->valuedouble;
        if (d == floor(d) && fabs(d) < 9007199254740992.0) {
            an_sql_int64(out, (int64_t)d);
            return AN_OK;
        }
        if (an_sql_double(out, d, err) != AN_OK)
            return an_error_field(err, AN_INVALID_ARGUMENT, field, "%s: not a finite number",
                                  field);
        return AN_OK;
    }
    return an_error_field(err, AN_INVALID_ARGUMENT, field,
                          "%s: must be a string, a number or a boolean", field);
}

/* Append the WHERE condition of filter f (index i) to out; validates. */
static an_status filter_sql(an_buf *out, const cJSON *f, int i, an_error *err)
{
    char field[64];
    snprintf(field, sizeof(field), "filters[%d]", i);
    if (!cJSON_IsObject(f))
        return an_error_field(err, AN_INVALID_ARGUMENT, field,
                              "%s: must be an object {column, op, value}", field);
    const cJSON *col = cJSON_GetObjectItemCaseSensitive(f, "column");
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(f, "op");
    const cJSON *val = cJSON_GetObjectItemCaseSensitive(f, "value");
    for (const cJSON *k = f->child; k; k = k->next)
        if (strcmp(k->string, "column") && strcmp(k->string, "op") && strcmp(k->string, "value"))
            return an_error_field(err, AN_INVALID_ARGUMENT, field, "%s: unknown key %s", field,
                                  k->string);
    if (!cJSON_IsString(col) || !an_sql_ident_valid(col->valuestring))
        return an_error_field(err, AN_INVALID_ARGUMENT, field,
                              "%s.column: must name a result column ([A-Za-z_][A-Za-z0-9_]*)",
                              field);
    int oi = cJSON_IsString(op) ? op_index(op->valuestring) : -1;
    if (oi < 0)
        return an_error_field(err, AN_INVALID_ARGUMENT, field,
                              "%s.op: must be one of eq, ne, lt, lte, gt, gte, in, contains",
                              field);
    if (!val)
        return an_error_field(err, AN_INVALID_ARGUMENT, field, "%s.value: required", field);
    an_buf_addc(out, '(');
    if (strcmp(ops[oi].name, "contains") == 0) {
        if (!cJSON_IsString(val))
            return an_error_field(err, AN_INVALID_ARGUMENT, field,
                                  "%s.value: contains takes a string", field);
        an_buf_adds(out, "position(toString(");
        an_sql_ident(out, col->valuestring, NULL);
        an_buf_adds(out, "), ");
        an_sql_quote_str(out, val->valuestring);
        an_buf_adds(out, ") > 0)");
        return AN_OK;
    }
    an_sql_ident(out, col->valuestring, NULL);
    an_buf_addf(out, " %s ", ops[oi].sql);
    if (strcmp(ops[oi].name, "in") == 0) {
        int n = cJSON_GetArraySize(val);
        if (!cJSON_IsArray(val) || n == 0 || n > MAX_IN_VALUES)
            return an_error_field(err, AN_INVALID_ARGUMENT, field,
                                  "%s.value: in takes an array of 1 to %d values", field,
                                  MAX_IN_VALUES);
        an_buf_addc(out, '(');
        int k = 0;
        for (const cJSON *v = val->child; v; v = v->next, k++) {
            if (k)
                an_buf_adds(out, ", ");
            an_status s = value_sql(out, v, field, err);
            if (s != AN_OK)
                return s;
        }
        an_buf_adds(out, "))");
        return AN_OK;
    }
    an_status s = value_sql(out, val, field, err);
    if (s != AN_OK)
        return s;
    an_buf_addc(out, ')');
    return AN_OK;
}

static an_status filters_where(const cJSON *filters, an_buf *out, an_error *err)
{
    if (!filters || cJSON_IsNull(filters))
        return AN_OK;
    if (!cJSON_IsArray(filters))
        return an_error_field(err, AN_INVALID_ARGUMENT, "filters",
                              "filters: must be an array of {column, op, value}");
    int n = cJSON_GetArraySize(filters);
    if (n > MAX_FILTERS)
        return an_error_field(err, AN_INVALID_ARGUMENT, "filters", "filters: at most %d",
                              MAX_FILTERS);
    int i = 0;
    for (const cJSON *f = filters->child; f; f = f->next, i++) {
        an_buf_adds(out, i ? " AND " : " WHERE ");
        an_status s = filter_sql(out, f, i, err);
        if (s != AN_OK)
            return s;
    }
    return AN_OK;
}

an_status exports_filters_check(const cJSON *filters, char **canonical, an_error *err)
{
    an_buf tmp = AN_BUF_INIT;
    an_status s = filters_where(filters, &tmp, err);
    an_buf_free(&tmp);
    if (s != AN_OK)
        return s;
    if (canonical)
        *canonical =
            filters && cJSON_IsArray(filters) ? cJSON_PrintUnformatted(filters) : strdup("[]");
    return AN_OK;
}

an_status exports_bind_query(const char *tenant_id, const char *query, const char *filters_json,
                             an_buf *out, an_error *err)
{
    an_sqlcheck_opts o = {
        .tables = tables, .tenant_id = tenant_id, .tenant_id_len = strlen(tenant_id)};
    an_buf bound = AN_BUF_INIT;
    an_status s = an_sqlcheck_bind(query, strlen(query), &o, &bound, err);
    if (s != AN_OK) {
        an_buf_free(&bound);
        if (err && s == AN_INVALID_ARGUMENT)
            snprintf(err->field, sizeof(err->field), "query"); /* the API's name of it */
        return s;
    }
    cJSON *filters = filters_json ? cJSON_Parse(filters_json) : NULL;
    an_buf where = AN_BUF_INIT;
    s = filters_where(filters, &where, err);
    cJSON_Delete(filters);
    if (s == AN_OK) {
        if (where.len) {
            an_buf_adds(out, "SELECT * FROM (");
            an_buf_add(out, bound.data, bound.len);
            an_buf_addc(out, ')');
            an_buf_add(out, where.data, where.len);
        } else {
            an_buf_add(out, bound.data, bound.len);
        }
    }
    an_buf_free(&where);
    an_buf_free(&bound);
    return s;
}
