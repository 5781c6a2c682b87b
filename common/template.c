#include "common/template.h"

#include "common/sql.h"
#include "common/timeutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The names the placeholders expand to. Not "events": the rollup has a
 * column of that name (countMerge(events)), and the checker refuses a
 * table's name used as a value. */
#define EVENTS_RELATION        "events_relation"
#define EVENTS_HOURLY_RELATION "events_hourly_relation"

const an_sqlcheck_table an_template_tables[] = {
    {EVENTS_RELATION, "analytics.events", "tenant_id"},
    {EVENTS_HOURLY_RELATION, "analytics.events_hourly", "tenant_id"},
    {NULL, NULL, NULL},
};

/* Columns of the events relation a dimension or filter may name. tenant_id
 * is not one of them: the tenant is the service's business. */
static const char *const field_columns[] = {"event_name", "actor_type", "actor_id", NULL};

#define PROPERTY_PREFIX     "properties."
#define PROPERTY_PREFIX_LEN (sizeof(PROPERTY_PREFIX) - 1)

/* ----------------------------------------------------------- granularity */

static const char *const gran_names[] = {"none", "minute", "hour", "day", "week", "month"};

const char *an_template_granularity_name(an_template_granularity g)
{
    return (unsigned)g < sizeof(gran_names) / sizeof(gran_names[0]) ? gran_names[g] : "none";
}

an_status an_template_granularity_parse(const char *field, const char *s,
                                        an_template_granularity *out, an_error *err)
{
    for (int g = AN_TEMPLATE_MINUTE; g <= AN_TEMPLATE_MONTH; g++)
        if (s && strcmp(s, gran_names[g]) == 0) {
            *out = (an_template_granularity)g;
            return AN_OK;
        }
    return an_error_field(err, AN_INVALID_ARGUMENT, field,
                          "%s: expected minute, hour, day, week or month", field);
}

int64_t an_template_bucket_floor(int64_t ms, an_template_granularity g)
{
    int64_t days = an_time_floor_div(ms, AN_TIME_MS_PER_DAY);
    int64_t y;
    int m;
    switch (g) {
    case AN_TEMPLATE_MINUTE:
        return an_time_floor_div(ms, 60000) * 60000;
    case AN_TEMPLATE_HOUR:
        return an_time_floor_div(ms, 3600000) * 3600000;
    case AN_TEMPLATE_DAY:
        return days * AN_TIME_MS_PER_DAY;
    case AN_TEMPLATE_WEEK: /* weekday 0 = Sunday; Monday starts the week */
        return (days - (an_time_weekday(days) + 6) % 7) * AN_TIME_MS_PER_DAY;
    case AN_TEMPLATE_MONTH:
        an_time_civil_from_days(days, &y, &m, NULL);
        return an_time_days_from_civil(y, m, 1) * AN_TIME_MS_PER_DAY;
    default:
        return ms;
    }
}

int64_t an_template_bucket_next(int64_t bucket_ms, an_template_granularity g)
{
    int64_t y;
    int m;
    switch (g) {
    case AN_TEMPLATE_MINUTE:
        return bucket_ms + 60000;
    case AN_TEMPLATE_HOUR:
        return bucket_ms + 3600000;
    case AN_TEMPLATE_DAY:
        return bucket_ms + AN_TIME_MS_PER_DAY;
    case AN_TEMPLATE_WEEK:
        return bucket_ms + 7 * AN_TIME_MS_PER_DAY;
    case AN_TEMPLATE_MONTH:
        an_time_civil_from_days(an_time_floor_div(bucket_ms, AN_TIME_MS_PER_DAY), &y, &m, NULL);
        return an_time_days_from_civil(m == 12 ? y + 1 : y, m == 12 ? 1 : m + 1, 1) *
               AN_TIME_MS_PER_DAY;
    default:
        return bucket_ms;
    }
}

/* --------------------------------------------------------------- filters */

static const struct {
    const char *name;
    an_template_op op;
} op_names[] = {
    {"eq", AN_TEMPLATE_EQ},         {"neq", AN_TEMPLATE_NEQ},
    {"in", AN_TEMPLATE_IN},         {"not_in", AN_TEMPLATE_NOT_IN},
    {"not-in", AN_TEMPLATE_NOT_IN}, {"gt", AN_TEMPLATE_GT},
    {"gte", AN_TEMPLATE_GTE},       {"lt", AN_TEMPLATE_LT},
    {"lte", AN_TEMPLATE_LTE},       {"contains", AN_TEMPLATE_CONTAINS},
    {"is_set", AN_TEMPLATE_IS_SET}, {"is-set", AN_TEMPLATE_IS_SET},
};

const char *an_template_op_name(an_template_op op)
{
    for (size_t i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
        if (op_names[i].op == op)
            return op_names[i].name;
    return "?";
}

static void value_free(an_template_value *v)
{
    if (v)
        free(v->s);
}

void an_template_params_free(an_template_params *p)
{
    if (!p)
        return;
    for (size_t i = 0; i < p->ndimensions; i++)
        free(p->dimensions[i]);
    free(p->dimensions);
    for (size_t i = 0; i < p->nfilters; i++) {
        an_template_filter *f = &p->filters[i];
        free(f->field);
        for (size_t j = 0; j < f->nvalues; j++)
            value_free(&f->values[j]);
        free(f->values);
    }
    free(p->filters);
    memset(p, 0, sizeof(*p));
}

an_status an_template_field_check(const char *field, const char *name, an_error *err)
{
    if (!name || !*name)
        return an_error_field(err, AN_INVALID_ARGUMENT, field, "%s: must not be empty", field);
    for (const char *const *c = field_columns; *c; c++)
        if (strcmp(name, *c) == 0)
            return AN_OK;
    if (strncmp(name, PROPERTY_PREFIX, PROPERTY_PREFIX_LEN) == 0) {
        if (an_sql_property_path_valid(name + PROPERTY_PREFIX_LEN))
            return AN_OK;
        return an_error_field(err, AN_INVALID_ARGUMENT, field,
                              "%s: a property path is up to %d names ([A-Za-z_][A-Za-z0-9_]*) "
                              "joined by '.' after \"properties.\"",
                              field, AN_SQL_PATH_DEPTH_MAX);
    }
    return an_error_field(err, AN_INVALID_ARGUMENT, field,
                          "%s: expected event_name, actor_type, actor_id or properties.<path>",
                          field);
}

/* The materialized column of property path, or NULL. */
static const char *column_of(const an_template_scope *sc, const char *path)
{
    for (size_t i = 0; sc && i < sc->ncolumns; i++)
        if (strcmp(sc->columns[i].path, path) == 0)
            return sc->columns[i].column;
    return NULL;
}

static an_status field_sql(an_buf *out, const char *name, const an_template_scope *sc,
                           an_error *err)
{
    an_status s = an_template_field_check("field", name, err);
    if (s != AN_OK)
        return s;
    if (strncmp(name, PROPERTY_PREFIX, PROPERTY_PREFIX_LEN) != 0) {
        an_buf_adds(out, name);
        return AN_OK;
    }
    const char *col = column_of(sc, name + PROPERTY_PREFIX_LEN);
    if (col) {
        an_buf_addc(out, '`');
        an_buf_adds(out, col);
        an_buf_addc(out, '`');
        return AN_OK;
    }
    an_buf_adds(out, "prop_values[indexOf(prop_keys, ");
    an_sql_quote_str(out, name + PROPERTY_PREFIX_LEN);
    an_buf_adds(out, ")]");
    return AN_OK;
}

bool an_template_column_parse(const char *name, const char *expr, an_template_column *out)
{
    static const char head[] = "prop_values[indexOf(prop_keys, '", tail[] = "')]";
    size_t n = strlen(name), e = strlen(expr);
    if (n == 0 || n >= sizeof(out->column) || !an_sql_ident_valid(name))
        return false;
    if (e <= sizeof(head) - 1 + sizeof(tail) - 1 || strncmp(expr, head, sizeof(head) - 1) != 0 ||
        strcmp(expr + e - (sizeof(tail) - 1), tail) != 0)
        return false;
    size_t plen = e - (sizeof(head) - 1) - (sizeof(tail) - 1);
    if (plen >= sizeof(out->path))
        return false;
    char path[AN_TEMPLATE_COLUMN_MAX + sizeof(PROPERTY_PREFIX)];
    snprintf(path, sizeof(path), "%s%.*s", PROPERTY_PREFIX, (int)plen, expr + sizeof(head) - 1);
    /* a valid path has no quote or backslash: the literal needed no escape */
    if (an_template_field_check("column", path, NULL) != AN_OK)
        return false;
    memcpy(out->path, path + PROPERTY_PREFIX_LEN, plen);
    out->path[plen] = '\0';
    memcpy(out->column, name, n + 1);
    return true;
}

/* Names of the JSON members, for messages: "filters[2].value". */
static void member_name(char *dst, size_t n, const char *array, size_t i, const char *member)
{
    if (member)
        snprintf(dst, n, "%s[%zu].%s", array, i, member);
    else
        snprintf(dst, n, "%s[%zu]", array, i);
}

an_status an_template_dimensions_from_json(const cJSON *arr, const char *field, char ***out,
                                           size_t *n, an_error *err)
{
    if (!arr || cJSON_IsNull(arr))
        return AN_OK;
    int len = cJSON_IsArray(arr) ? cJSON_GetArraySize(arr) : -1;
    if (len < 0 || len > AN_TEMPLATE_MAX_DIMENSIONS)
        return an_error_field(err, AN_INVALID_ARGUMENT, field,
                              "%s: expected an array of at most %d names", field,
                              AN_TEMPLATE_MAX_DIMENSIONS);
    *out = calloc((size_t)len + 1, sizeof(char *));
    const cJSON *e;
    cJSON_ArrayForEach(e, arr)
    {
        char name[64];
        member_name(name, sizeof(name), field, *n, NULL);
        if (!cJSON_IsString(e))
            return an_error_field(err, AN_INVALID_ARGUMENT, name, "%s: expected a string", name);
        an_status s = an_template_field_check(name, e->valuestring, err);
        if (s != AN_OK)
            return s;
        for (size_t k = 0; k < *n; k++)
            if (strcmp((*out)[k], e->valuestring) == 0)
                return an_error_field(err, AN_INVALID_ARGUMENT, name,
                                      "%s: %s is already a dimension", name, e->valuestring);
        (*out)[(*n)++] = strdup(e->valuestring);
    }
    return AN_OK;
}

static an_status value_from_json(const cJSON *j, const char *field, an_template_value *out,
                                 an_error *err)
{
    memset(out, 0, sizeof(*out));
    if (cJSON_IsString(j)) {
        size_t n = strlen(j->valuestring);
        if (n > AN_TEMPLATE_MAX_VALUE)
            return an_error_field(err, AN_INVALID_ARGUMENT, field, "%s: longer than %d bytes",
                                  field, AN_TEMPLATE_MAX_VALUE);
        out->kind = AN_TEMPLATE_STRING;
        out->s = strdup(j->valuestring);
        return AN_OK;
    }
    if (cJSON_IsNumber(j)) {
        if (!isfinite(j->valuedouble))
            return an_error_field(err, AN_INVALID_ARGUMENT, field, "%s: must be finite", field);
        out->kind = AN_TEMPLATE_NUMBER;
        out->n = j->valuedouble;
        return AN_OK;
    }
    if (cJSON_IsBool(j)) {
        out->kind = AN_TEMPLATE_BOOL;
        out->b = cJSON_IsTrue(j);
        return AN_OK;
    }
    return an_error_field(err, AN_INVALID_ARGUMENT, field,
                          "%s: expected a string, a number or a boolean", field);
}

static an_status filter_from_json(const cJSON *j, size_t i, an_template_filter *f, an_error *err)
{
    char field[64];
    member_name(field, sizeof(field), "filters", i, NULL);
    if (!cJSON_IsObject(j))
        return an_error_field(err, AN_INVALID_ARGUMENT, field,
                              "%s: expected an object {field, op, value}", field);
    const cJSON *jf = cJSON_GetObjectItemCaseSensitive(j, "field");
    const cJSON *jop = cJSON_GetObjectItemCaseSensitive(j, "op");
    const cJSON *jv = cJSON_GetObjectItemCaseSensitive(j, "value");

    member_name(field, sizeof(field), "filters", i, "field");
    if (!cJSON_IsString(jf))
        return an_error_field(err, AN_INVALID_ARGUMENT, field, "%s: expected a string", field);
    an_status s = an_template_field_check(field, jf->valuestring, err);
    if (s != AN_OK)
        return s;
    f->field = strdup(jf->valuestring);

    member_name(field, sizeof(field), "filters", i, "op");
    if (!cJSON_IsString(jop))
        return an_error_field(err, AN_INVALID_ARGUMENT, field, "%s: expected a string", field);
    for (size_t k = 0; k < sizeof(op_names) / sizeof(op_names[0]); k++)
        if (strcmp(jop->valuestring, op_names[k].name) == 0)
            f->op = op_names[k].op;
    if (!f->op)
        return an_error_field(err, AN_INVALID_ARGUMENT, field,
                              "%s: expected eq, neq, in, not_in, gt, gte, lt, lte, contains or "
                              "is_set",
                              field);

    member_name(field, sizeof(field), "filters", i, "value");
    if (f->op == AN_TEMPLATE_IN || f->op == AN_TEMPLATE_NOT_IN) {
        int n = cJSON_IsArray(jv) ? cJSON_GetArraySize(jv) : -1;
        if (n < 1 || n > AN_TEMPLATE_MAX_IN_VALUES)
            return an_error_field(err, AN_INVALID_ARGUMENT, field,
                                  "%s: %s needs an array of 1 to %d values", field,
                                  jop->valuestring, AN_TEMPLATE_MAX_IN_VALUES);
        f->values = calloc((size_t)n, sizeof(*f->values));
        const cJSON *e;
        cJSON_ArrayForEach(e, jv)
        {
            char ef[80];
            snprintf(ef, sizeof(ef), "%s[%zu]", field, f->nvalues);
            if ((s = value_from_json(e, ef, &f->values[f->nvalues], err)) != AN_OK)
                return s;
            f->nvalues++;
            an_template_kind k = f->values[f->nvalues - 1].kind;
            if (k == AN_TEMPLATE_BOOL)
                return an_error_field(err, AN_INVALID_ARGUMENT, ef,
                                      "%s: in and not_in take strings or numbers", ef);
            if (k != f->values[0].kind)
                return an_error_field(err, AN_INVALID_ARGUMENT, ef,
                                      "%s: all values must be strings or all numbers", ef);
        }
        return AN_OK;
    }
    f->values = calloc(1, sizeof(*f->values));
    if (f->op == AN_TEMPLATE_IS_SET && !jv) {
        f->values[0].kind = AN_TEMPLATE_BOOL;
        f->values[0].b = true;
        f->nvalues = 1;
        return AN_OK;
    }
    if (!jv)
        return an_error_field(err, AN_INVALID_ARGUMENT, field, "%s: is required", field);
    if ((s = value_from_json(jv, field, &f->values[0], err)) != AN_OK)
        return s;
    f->nvalues = 1;
    an_template_kind k = f->values[0].kind;
    switch (f->op) {
    case AN_TEMPLATE_IS_SET:
        if (k != AN_TEMPLATE_BOOL)
            return an_error_field(err, AN_INVALID_ARGUMENT, field, "%s: is_set takes true or false",
                                  field);
        break;
    case AN_TEMPLATE_CONTAINS:
        if (k != AN_TEMPLATE_STRING || !*f->values[0].s)
            return an_error_field(err, AN_INVALID_ARGUMENT, field,
                                  "%s: contains takes a non-empty string", field);
        break;
    case AN_TEMPLATE_GT:
    case AN_TEMPLATE_GTE:
    case AN_TEMPLATE_LT:
    case AN_TEMPLATE_LTE:
        if (k == AN_TEMPLATE_BOOL)
            return an_error_field(err, AN_INVALID_ARGUMENT, field,
                                  "%s: %s takes a string or a number", field, jop->valuestring);
        break;
    default:
        break;
    }
    return AN_OK;
}

static an_status time_from_json(const cJSON *obj, const char *name, bool *present, int64_t *ms,
                                an_error *err)
{
    const cJSON *j = cJSON_GetObjectItemCaseSensitive(obj, name);
    *present = j != NULL && !cJSON_IsNull(j);
    if (!*present)
        return AN_OK;
    an_error e;
    an_error_clear(&e);
    if (!cJSON_IsString(j))
        return an_error_field(err, AN_INVALID_ARGUMENT, name,
                              "%s: expected an RFC 3339 timestamp string", name);
    if (an_time_parse(j->valuestring, ms, &e) != AN_OK)
        return an_error_field(err, AN_INVALID_ARGUMENT, name, "%s: %s", name, e.message);
    return AN_OK;
}

static an_status params_from_json(const cJSON *obj, an_template_params *out, an_error *err)
{
    an_status s;
    bool has_from, has_to;
    if ((s = time_from_json(obj, "from", &has_from, &out->from_ms, err)) != AN_OK ||
        (s = time_from_json(obj, "to", &has_to, &out->to_ms, err)) != AN_OK)
        return s;
    if (has_from != has_to)
        return an_error_field(err, AN_INVALID_ARGUMENT, has_from ? "to" : "from",
                              "%s: from and to go together", has_from ? "to" : "from");
    if (has_from && out->from_ms >= out->to_ms)
        return an_error_field(err, AN_INVALID_ARGUMENT, "to", "to: must be after from");
    out->has_range = has_from;

    const cJSON *g = cJSON_GetObjectItemCaseSensitive(obj, "granularity");
    if (g && !cJSON_IsNull(g)) {
        if (!cJSON_IsString(g))
            return an_error_field(err, AN_INVALID_ARGUMENT, "granularity",
                                  "granularity: expected minute, hour, day, week or month");
        if ((s = an_template_granularity_parse("granularity", g->valuestring, &out->granularity,
                                               err)) != AN_OK)
            return s;
    }

    if ((s = an_template_dimensions_from_json(cJSON_GetObjectItemCaseSensitive(obj, "dimensions"),
                                              "dimensions", &out->dimensions, &out->ndimensions,
                                              err)) != AN_OK)
        return s;

    const cJSON *f = cJSON_GetObjectItemCaseSensitive(obj, "filters");
    if (f && !cJSON_IsNull(f)) {
        int n = cJSON_IsArray(f) ? cJSON_GetArraySize(f) : -1;
        if (n < 0 || n > AN_TEMPLATE_MAX_FILTERS)
            return an_error_field(err, AN_INVALID_ARGUMENT, "filters",
                                  "filters: expected an array of at most %d filters",
                                  AN_TEMPLATE_MAX_FILTERS);
        out->filters = calloc((size_t)n + 1, sizeof(*out->filters));
        const cJSON *e;
        cJSON_ArrayForEach(e, f)
        {
            /* counted before parsing, so a half-built filter is freed too */
            an_template_filter *fl = &out->filters[out->nfilters++];
            if ((s = filter_from_json(e, out->nfilters - 1, fl, err)) != AN_OK)
                return s;
        }
    }
    return AN_OK;
}

an_status an_template_params_from_json(const cJSON *obj, an_template_params *out, an_error *err)
{
    memset(out, 0, sizeof(*out));
    if (obj && !cJSON_IsObject(obj))
        return an_error_set(err, AN_INVALID_ARGUMENT, "expected a JSON object");
    an_status s = params_from_json(obj, out, err);
    if (s != AN_OK)
        an_template_params_free(out);
    return s;
}

/* ------------------------------------------------------------- rendering */

static an_status render_value(an_buf *out, const an_template_value *v, an_error *err)
{
    switch (v->kind) {
    case AN_TEMPLATE_STRING:
        an_sql_quote_str(out, v->s);
        return AN_OK;
    case AN_TEMPLATE_NUMBER:
        return an_sql_double(out, v->n, err);
    case AN_TEMPLATE_BOOL:
        an_buf_adds(out, v->b ? "'true'" : "'false'");
        return AN_OK;
    }
    return an_error_set(err, AN_INTERNAL, "template: bad value kind");
}

static const char *compare_op(an_template_op op)
{
    switch (op) {
    case AN_TEMPLATE_EQ:
    case AN_TEMPLATE_NEQ: /* negated around the comparison */
        return " = ";
    case AN_TEMPLATE_GT:
        return " > ";
    case AN_TEMPLATE_GTE:
        return " >= ";
    case AN_TEMPLATE_LT:
        return " < ";
    case AN_TEMPLATE_LTE:
        return " <= ";
    case AN_TEMPLATE_IN:
    case AN_TEMPLATE_NOT_IN:
        return " IN ";
    default:
        return " = ";
    }
}

static an_status render_filter(an_buf *out, const an_template_filter *f,
                               const an_template_scope *sc, an_error *err)
{
    an_status s;
    const char *name = f->field;
    bool property = strncmp(name, PROPERTY_PREFIX, PROPERTY_PREFIX_LEN) == 0;
    const an_template_value *v = &f->values[0];
    bool negate = f->op == AN_TEMPLATE_NEQ || f->op == AN_TEMPLATE_NOT_IN;

    if (f->op == AN_TEMPLATE_IS_SET) {
        if (!v->b)
            an_buf_adds(out, "NOT ");
        if (property) {
            an_buf_adds(out, "has(prop_keys, ");
            an_sql_quote_str(out, name + PROPERTY_PREFIX_LEN);
            an_buf_addc(out, ')');
            return AN_OK;
        }
        an_buf_addc(out, '(');
        if ((s = field_sql(out, name, sc, err)) != AN_OK)
            return s;
        an_buf_adds(out, " != '')");
        return AN_OK;
    }
    if (f->op == AN_TEMPLATE_CONTAINS) {
        an_buf_adds(out, "position(");
        if ((s = field_sql(out, name, sc, err)) != AN_OK)
            return s;
        an_buf_adds(out, ", ");
        an_sql_quote_str(out, v->s);
        an_buf_adds(out, ") > 0");
        return AN_OK;
    }
    /* Numbers compare numerically: ifNull(toFloat64OrNull(x) op n, 0), so
     * a text that is no number never matches (and always matches when
     * negated). */
    bool numeric = v->kind == AN_TEMPLATE_NUMBER;
    if (negate)
        an_buf_adds(out, "NOT ");
    an_buf_addc(out, '(');
    if (numeric)
        an_buf_adds(out, "ifNull(toFloat64OrNull(");
    if ((s = field_sql(out, name, sc, err)) != AN_OK)
        return s;
    if (numeric)
        an_buf_addc(out, ')');
    an_buf_adds(out, compare_op(f->op));
    if (f->op == AN_TEMPLATE_IN || f->op == AN_TEMPLATE_NOT_IN) {
        an_buf_addc(out, '(');
        for (size_t i = 0; i < f->nvalues; i++) {
            if (i)
                an_buf_adds(out, ", ");
            if ((s = render_value(out, &f->values[i], err)) != AN_OK)
                return s;
        }
        an_buf_addc(out, ')');
    } else if ((s = render_value(out, v, err)) != AN_OK) {
        return s;
    }
    if (numeric)
        an_buf_adds(out, ", 0)");
    an_buf_addc(out, ')');
    return AN_OK;
}

/* ---------------------------------------------------------- placeholders */

typedef enum ph_kind {
    PH_EVENTS,
    PH_EVENTS_HOURLY,
    PH_BUCKET,
    PH_TIME_RANGE,
    PH_DIMENSIONS,
    PH_GROUP_BY,
    PH_FILTERS,
} ph_kind;

static const struct {
    const char *name;
    ph_kind kind;
    unsigned bit;
    bool takes_column;
} placeholders[] = {
    {"events", PH_EVENTS, AN_TEMPLATE_USES_EVENTS, false},
    {"events_hourly", PH_EVENTS_HOURLY, AN_TEMPLATE_USES_EVENTS_HOURLY, false},
    {"bucket", PH_BUCKET, AN_TEMPLATE_USES_BUCKET, true},
    {"time_range", PH_TIME_RANGE, AN_TEMPLATE_USES_TIME_RANGE, true},
    {"dimensions", PH_DIMENSIONS, AN_TEMPLATE_USES_DIMENSIONS, false},
    {"group_by", PH_GROUP_BY, AN_TEMPLATE_USES_GROUP_BY, false},
    {"filters", PH_FILTERS, AN_TEMPLATE_USES_FILTERS, false},
};

typedef struct placeholder {
    ph_kind kind;
    unsigned bit;
    char column[2 * AN_SQL_IDENT_MAX + 2]; /* "" or name or qualifier.name */
} placeholder;

/* A column argument: name or qualifier.name, each an_sql_ident_valid. */
static bool column_arg_valid(const char *s)
{
    char part[AN_SQL_IDENT_MAX + 2];
    const char *dot = strchr(s, '.');
    if (!dot)
        return an_sql_ident_valid(s);
    size_t n = (size_t)(dot - s);
    if (n == 0 || n > AN_SQL_IDENT_MAX || strchr(dot + 1, '.'))
        return false;
    memcpy(part, s, n);
    part[n] = '\0';
    return an_sql_ident_valid(part) && an_sql_ident_valid(dot + 1);
}

/* Parse the placeholder whose "{{" is at tpl[i]; on success *end is the
 * offset after its "}}". */
static an_status parse_placeholder(const char *tpl, size_t len, size_t i, placeholder *ph,
                                   size_t *end, an_error *err)
{
    size_t j = i + 2, close = 0;
    for (size_t k = j; k + 1 < len; k++) {
        if (tpl[k] == '}' && tpl[k + 1] == '}') {
            close = k;
            break;
        }
        if (tpl[k] == '\n' || tpl[k] == '{' || k - j > 200)
            break;
    }
    if (!close)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                              "query: placeholder at byte %zu is not closed with }}", i);
    char inner[256];
    size_t a = j, b = close;
    while (a < b && (tpl[a] == ' ' || tpl[a] == '\t'))
        a++;
    while (b > a && (tpl[b - 1] == ' ' || tpl[b - 1] == '\t'))
        b--;
    if (b - a >= sizeof(inner))
        b = a + sizeof(inner) - 1;
    memcpy(inner, tpl + a, b - a);
    inner[b - a] = '\0';
    char *colon = strchr(inner, ':');
    if (colon)
        *colon = '\0';
    for (size_t k = 0; k < sizeof(placeholders) / sizeof(placeholders[0]); k++) {
        if (strcmp(inner, placeholders[k].name) != 0)
            continue;
        ph->kind = placeholders[k].kind;
        ph->bit = placeholders[k].bit;
        ph->column[0] = '\0';
        if (colon) {
            if (!placeholders[k].takes_column || !column_arg_valid(colon + 1))
                return an_error_field(
                    err, AN_INVALID_ARGUMENT, "query",
                    placeholders[k].takes_column
                        ? "query: {{%s:...}} at byte %zu needs a column name, as in {{%s:hour}}"
                        : "query: {{%s}} at byte %zu takes no argument%s",
                    placeholders[k].name, i,
                    placeholders[k].takes_column ? placeholders[k].name : "");
            snprintf(ph->column, sizeof(ph->column), "%s", colon + 1);
        }
        *end = close + 2;
        return AN_OK;
    }
    return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                          "query: unknown placeholder {{%.64s}} at byte %zu (known: events, "
                          "events_hourly, bucket, time_range, dimensions, group_by, filters)",
                          inner, i);
}

/* Length of the string literal, quoted name or comment starting at tpl[i]
 * (0 when none starts there), following ClickHouse's lexer: backslash
 * escapes and doubled quotes inside quotes, -- to the end of the line,
 * block comments. An unterminated one runs to the end (the checker
 * refuses it later). */
static size_t skip_opaque(const char *tpl, size_t len, size_t i)
{
    char c = tpl[i];
    if (c == '\'' || c == '"' || c == '`') {
        size_t k = i + 1;
        while (k < len) {
            if (tpl[k] == '\\') {
                k += 2;
                continue;
            }
            if (tpl[k] == c) {
                if (k + 1 < len && tpl[k + 1] == c) {
                    k += 2;
                    continue;
                }
                return k + 1 - i;
            }
            k++;
        }
        return len - i;
    }
    if (c == '-' && i + 1 < len && tpl[i + 1] == '-') {
        size_t k = i;
        while (k < len && tpl[k] != '\n')
            k++;
        return k - i;
    }
    if (c == '/' && i + 1 < len && tpl[i + 1] == '*') {
        const char *e = NULL;
        for (size_t k = i + 2; k + 1 < len; k++)
            if (tpl[k] == '*' && tpl[k + 1] == '/') {
                e = tpl + k + 2;
                break;
            }
        return e ? (size_t)(e - (tpl + i)) : len - i;
    }
    return 0;
}

/* Walk tpl; for each placeholder call fn (when not NULL). */
typedef an_status (*ph_fn)(void *ud, const placeholder *ph, an_error *err);

static an_status walk(const char *tpl, size_t len, an_buf *out, unsigned *used, ph_fn fn, void *ud,
                      an_error *err)
{
    size_t i = 0, copied = 0;
    an_status s;
    if (used)
        *used = 0;
    while (i < len) {
        size_t skip = skip_opaque(tpl, len, i);
        if (skip) {
            i += skip;
            continue;
        }
        if (tpl[i] == '{' && i + 1 < len && tpl[i + 1] == '{') {
            placeholder ph;
            size_t end = i + 2;
            if ((s = parse_placeholder(tpl, len, i, &ph, &end, err)) != AN_OK)
                return s;
            if (used)
                *used |= ph.bit;
            if (out)
                an_buf_add(out, tpl + copied, i - copied);
            if (fn && (s = fn(ud, &ph, err)) != AN_OK)
                return s;
            i = copied = end;
            continue;
        }
        i++;
    }
    if (out)
        an_buf_add(out, tpl + copied, len - copied);
    return AN_OK;
}

an_status an_template_scan(const char *tpl, size_t len, unsigned *used, an_error *err)
{
    return walk(tpl, len, NULL, used, NULL, NULL, err);
}

typedef struct expand_ctx {
    const an_template_params *p;
    const an_template_scope *scope; /* NULL: no property columns */
    an_buf *out;
} expand_ctx;

static const char *bucket_function(an_template_granularity g)
{
    switch (g) {
    case AN_TEMPLATE_MINUTE:
        return "toStartOfMinute";
    case AN_TEMPLATE_HOUR:
        return "toStartOfHour";
    case AN_TEMPLATE_DAY:
        return "toStartOfDay";
    case AN_TEMPLATE_WEEK:
        return "toMonday";
    case AN_TEMPLATE_MONTH:
        return "toStartOfMonth";
    default:
        return NULL;
    }
}

static an_status expand_one(void *ud, const placeholder *ph, an_error *err)
{
    expand_ctx *x = ud;
    const an_template_params *p = x->p;
    an_buf *o = x->out;
    const char *col = ph->column[0] ? ph->column : "occurred_at";
    an_status s;
    switch (ph->kind) {
    case PH_EVENTS:
        an_buf_adds(o, EVENTS_RELATION);
        return AN_OK;
    case PH_EVENTS_HOURLY:
        an_buf_adds(o, EVENTS_HOURLY_RELATION);
        return AN_OK;
    case PH_BUCKET: {
        const char *fn = bucket_function(p->granularity);
        if (!fn)
            return an_error_field(err, AN_INVALID_ARGUMENT, "granularity",
                                  "granularity: required by the template ({{bucket}})");
        /* Week and month functions return a Date: make every bucket a
         * DateTime in UTC, whatever the server's time zone. */
        bool date = p->granularity == AN_TEMPLATE_WEEK || p->granularity == AN_TEMPLATE_MONTH;
        if (date)
            an_buf_adds(o, "toDateTime(");
        an_buf_addf(o, "%s(%s, 'UTC')", fn, col);
        if (date)
            an_buf_adds(o, ", 'UTC')");
        return AN_OK;
    }
    case PH_TIME_RANGE:
        if (!p->has_range)
            return an_error_field(err, AN_INVALID_ARGUMENT, "from",
                                  "from: required by the template ({{time_range}})");
        an_buf_addf(o, "(%s >= toDateTime(", col);
        an_sql_int64(o, an_time_floor_div(p->from_ms, 1000));
        an_buf_addf(o, ") AND %s < toDateTime(", col);
        /* [from, to) in whole seconds: a to with milliseconds includes its second */
        an_sql_int64(o, an_time_floor_div(p->to_ms + 999, 1000));
        an_buf_adds(o, "))");
        return AN_OK;
    case PH_DIMENSIONS:
        if (p->tenant_dimension)
            an_buf_adds(o, ", tenant_id AS " AN_TEMPLATE_TENANT_ALIAS);
        for (size_t i = 0; i < p->ndimensions; i++) {
            an_buf_adds(o, ", ");
            if ((s = field_sql(o, p->dimensions[i], x->scope, err)) != AN_OK)
                return s;
            an_buf_addf(o, " AS dim_%zu", i);
        }
        return AN_OK;
    case PH_GROUP_BY:
        if (p->tenant_dimension)
            an_buf_adds(o, ", " AN_TEMPLATE_TENANT_ALIAS);
        for (size_t i = 0; i < p->ndimensions; i++)
            an_buf_addf(o, ", dim_%zu", i);
        return AN_OK;
    case PH_FILTERS:
        if (p->nfilters == 0) {
            an_buf_addc(o, '1');
            return AN_OK;
        }
        an_buf_addc(o, '(');
        for (size_t i = 0; i < p->nfilters; i++) {
            if (i)
                an_buf_adds(o, " AND ");
            if ((s = render_filter(o, &p->filters[i], x->scope, err)) != AN_OK)
                return s;
        }
        an_buf_addc(o, ')');
        return AN_OK;
    }
    return an_error_set(err, AN_INTERNAL, "template: unknown placeholder kind");
}

static an_status expand(const char *tpl, size_t len, const an_template_params *p,
                        const an_template_scope *scope, an_buf *out, an_error *err);

an_status an_template_expand(const char *tpl, size_t len, const an_template_params *p, an_buf *out,
                             an_error *err)
{
    return expand(tpl, len, p, NULL, out, err);
}

static an_status expand(const char *tpl, size_t len, const an_template_params *p,
                        const an_template_scope *scope, an_buf *out, an_error *err)
{
    unsigned used = 0;
    an_status s = an_template_scan(tpl, len, &used, err);
    if (s != AN_OK)
        return s;
    bool dims = p->ndimensions > 0 || p->tenant_dimension;
    unsigned both = AN_TEMPLATE_USES_DIMENSIONS | AN_TEMPLATE_USES_GROUP_BY;
    if (dims && (used & both) != both)
        return an_error_field(err, AN_INVALID_ARGUMENT, "dimensions",
                              p->ndimensions ? "dimensions: the metric's template has no "
                                               "{{dimensions}} and {{group_by}}"
                                             : "dimensions: a per-tenant breakdown needs a "
                                               "template with {{dimensions}} and {{group_by}}");
    if (p->nfilters > 0 && !(used & AN_TEMPLATE_USES_FILTERS))
        return an_error_field(err, AN_INVALID_ARGUMENT, "filters",
                              "filters: the metric's template has no {{filters}}");
    if (p->granularity != AN_TEMPLATE_GRAN_NONE && !(used & AN_TEMPLATE_USES_BUCKET))
        return an_error_field(err, AN_INVALID_ARGUMENT, "granularity",
                              "granularity: the metric's template has no {{bucket}}");
    an_buf tmp = AN_BUF_INIT;
    expand_ctx x = {p, scope, &tmp};
    s = walk(tpl, len, &tmp, NULL, expand_one, &x, err);
    if (s == AN_OK)
        an_buf_add(out, tmp.data ? tmp.data : "", tmp.len);
    an_buf_free(&tmp);
    return s;
}

/* The checker's refusal, about the request's "query" field. Its offsets
 * are in the expanded text. */
static void as_query_error(an_error *err)
{
    if (!err)
        return;
    snprintf(err->field, sizeof(err->field), "query");
    if (strncmp(err->message, "sql: ", 5) == 0) {
        char m[AN_ERROR_MSG_MAX];
        snprintf(m, sizeof(m), "query: %s", err->message + 5);
        memcpy(err->message, m, sizeof(m));
    }
}

an_status an_template_bind(const char *tpl, size_t len, const an_template_params *p,
                           const an_template_scope *scope, an_buf *out, an_error *err)
{
    if (!scope || (scope->all_tenants == (scope->tenant_id != NULL)))
        return an_error_set(err, AN_INTERNAL, "template: give exactly one of tenant and all");
    an_buf sql = AN_BUF_INIT, extra = AN_BUF_INIT;
    an_status s = expand(tpl, len, p, scope, &sql, err);
    /* the bound events relation passes the property columns on */
    an_sqlcheck_table tables[sizeof(an_template_tables) / sizeof(an_template_tables[0])];
    memcpy(tables, an_template_tables, sizeof(tables));
    for (size_t i = 0; i < scope->ncolumns; i++) {
        if (!an_sql_ident_valid(scope->columns[i].column))
            continue;
        an_buf_addf(&extra, "%s`%s`", extra.len ? ", " : "", scope->columns[i].column);
    }
    for (size_t i = 0; extra.len && tables[i].name; i++)
        if (strcmp(tables[i].name, EVENTS_RELATION) == 0)
            tables[i].extra_columns = an_buf_str(&extra);
    if (s == AN_OK) {
        an_sqlcheck_opts o = {
            .tables = tables,
            .tenant_id = scope->tenant_id,
            .tenant_id_len = scope->tenant_id ? strlen(scope->tenant_id) : 0,
            .all_tenants = scope->all_tenants,
        };
        s = an_sqlcheck_bind(an_buf_str(&sql), sql.len, &o, out, err);
        if (s == AN_INVALID_ARGUMENT)
            as_query_error(err);
    }
    an_buf_free(&sql);
    an_buf_free(&extra);
    return s;
}

an_status an_template_check(const char *tpl, size_t len, an_error *err)
{
    unsigned used = 0;
    an_status s = an_template_scan(tpl, len, &used, err);
    if (s != AN_OK)
        return s;
    unsigned both = AN_TEMPLATE_USES_DIMENSIONS | AN_TEMPLATE_USES_GROUP_BY;
    if ((used & both) && (used & both) != both)
        return an_error_field(err, AN_INVALID_ARGUMENT, "query",
                              "query: {{dimensions}} and {{group_by}} go together");
    /* Sample parameters: every placeholder gets something to expand to. */
    char dim[] = "properties.sample.path";
    char *dims[] = {dim};
    an_template_value v = {.kind = AN_TEMPLATE_STRING, .s = (char *)"sample"};
    an_template_filter f = {
        .field = (char *)"event_name", .op = AN_TEMPLATE_EQ, .values = &v, .nvalues = 1};
    an_template_params p = {
        .has_range = true,
        .from_ms = 0,
        .to_ms = AN_TIME_MS_PER_DAY,
        .granularity = (used & AN_TEMPLATE_USES_BUCKET) ? AN_TEMPLATE_DAY : AN_TEMPLATE_GRAN_NONE,
    };
    if (used & both) {
        p.dimensions = dims;
        p.ndimensions = 1;
    }
    if (used & AN_TEMPLATE_USES_FILTERS) {
        p.filters = &f;
        p.nfilters = 1;
    }
    an_buf sql = AN_BUF_INIT;
    s = an_template_expand(tpl, len, &p, &sql, err);
    if (s == AN_OK) {
        an_sqlcheck_opts o = {.tables = an_template_tables};
        s = an_sqlcheck_check(an_buf_str(&sql), sql.len, &o, err);
        if (s == AN_INVALID_ARGUMENT)
            as_query_error(err);
    }
    an_buf_free(&sql);
    return s;
}
