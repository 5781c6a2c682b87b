#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *type_name(an_config_type t)
{
    switch (t) {
    case AN_CFG_STRING:
        return "string";
    case AN_CFG_INT:
        return "int";
    case AN_CFG_BOOL:
        return "bool";
    case AN_CFG_DURATION:
        return "duration";
    case AN_CFG_SIZE:
        return "size";
    }
    return "?";
}

static int parse_ll(const char *s, long long *out, char **end)
{
    errno = 0;
    long long v = strtoll(s, end, 10);
    if (errno || *end == s)
        return -1;
    *out = v;
    return 0;
}

/* Multiply with overflow check; returns -1 on overflow. */
static int mul_ll(long long a, long long m, long long *out)
{
    if (a > 0 && a > INT64_MAX / m)
        return -1;
    if (a < 0 && a < INT64_MIN / m)
        return -1;
    *out = a * m;
    return 0;
}

static int parse_duration(const char *s, long long *ms)
{
    char *end;
    long long v;
    if (parse_ll(s, &v, &end) < 0 || v < 0)
        return -1;
    long long mult;
    if (*end == '\0' || strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "m") == 0)
        mult = 60000;
    else if (strcmp(end, "h") == 0)
        mult = 3600000;
    else
        return -1;
    return mul_ll(v, mult, ms);
}

static int parse_size(const char *s, long long *bytes)
{
    char *end;
    long long v;
    if (parse_ll(s, &v, &end) < 0 || v < 0)
        return -1;
    long long mult = 1;
    if (*end) {
        char u = (char)tolower((unsigned char)*end);
        const char *rest = end + 1;
        switch (u) {
        case 'k':
            mult = 1024LL;
            break;
        case 'm':
            mult = 1024LL * 1024;
            break;
        case 'g':
            mult = 1024LL * 1024 * 1024;
            break;
        case 'b':
            mult = 1;
            rest = end + 1;
            break;
        default:
            return -1;
        }
        if (u != 'b' && *rest) {
            if (strcasecmp(rest, "b") != 0 && strcasecmp(rest, "ib") != 0)
                return -1;
        } else if (u == 'b' && *rest) {
            return -1;
        }
    }
    return mul_ll(v, mult, bytes);
}

static int parse_bool(const char *s, bool *out)
{
    static const char *yes[] = {"1", "true", "yes", "on"};
    static const char *no[] = {"0", "false", "no", "off"};
    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

static an_status check_bounds(const an_config_var *v, const char *text, long long x, an_error *err)
{
    if (v->min < v->max && (x < v->min || x > v->max))
        return an_error_field(err, AN_INVALID_ARGUMENT, v->name,
                              "%s=%s is out of range: must be between %lld and %lld%s", v->name,
                              (v->flags & AN_CFG_SECRET) ? "***" : text, v->min, v->max,
                              v->type == AN_CFG_DURATION ? " ms"
                              : v->type == AN_CFG_SIZE   ? " bytes"
                                                         : "");
    return AN_OK;
}

an_status an_config_parse_value(const an_config_var *v, const char *text, void *out, an_error *err)
{
    const char *shown = (v->flags & AN_CFG_SECRET) ? "***" : text;
    long long x;
    char *end;
    switch (v->type) {
    case AN_CFG_STRING: {
        char *copy = strdup(text);
        if (!copy)
            return an_error_set(err, AN_INTERNAL, "out of memory");
        free(*(char **)out);
        *(char **)out = copy;
        return AN_OK;
    }
    case AN_CFG_INT:
        if (parse_ll(text, &x, &end) < 0 || *end)
            return an_error_field(err, AN_INVALID_ARGUMENT, v->name, "%s=%s is not an integer",
                                  v->name, shown);
        if (check_bounds(v, text, x, err) != AN_OK)
            return AN_INVALID_ARGUMENT;
        *(long long *)out = x;
        return AN_OK;
    case AN_CFG_BOOL:
        if (parse_bool(text, (bool *)out) < 0)
            return an_error_field(err, AN_INVALID_ARGUMENT, v->name,
                                  "%s=%s is not a boolean (true/false/1/0/yes/no/on/off)", v->name,
                                  shown);
        return AN_OK;
    case AN_CFG_DURATION:
        if (parse_duration(text, &x) < 0)
            return an_error_field(err, AN_INVALID_ARGUMENT, v->name,
                                  "%s=%s is not a duration (e.g. 250ms, 5s, 2m, 1h)", v->name,
                                  shown);
        if (check_bounds(v, text, x, err) != AN_OK)
            return AN_INVALID_ARGUMENT;
        *(int64_t *)out = x;
        return AN_OK;
    case AN_CFG_SIZE:
        if (parse_size(text, &x) < 0)
            return an_error_field(err, AN_INVALID_ARGUMENT, v->name,
                                  "%s=%s is not a size (e.g. 512, 64KB, 16MiB, 1G)", v->name,
                                  shown);
        if (check_bounds(v, text, x, err) != AN_OK)
            return AN_INVALID_ARGUMENT;
        *(int64_t *)out = x;
        return AN_OK;
    }
    return an_error_field(err, AN_INTERNAL, v->name, "%s: unknown config type", v->name);
}

an_status an_config_load(const an_config_var *vars, void *ctx, an_error *err)
{
    for (const an_config_var *v = vars; v->name; v++) {
        void *field = (char *)ctx + v->offset;
        const char *text = getenv(v->name);
        if (text && !*text)
            text = NULL;
        if (!text)
            text = v->def;
        if (!text) {
            if (v->flags & AN_CFG_REQUIRED)
                return an_error_field(err, AN_INVALID_ARGUMENT, v->name, "%s is required (%s)",
                                      v->name, v->description);
            continue;
        }
        an_status s = an_config_parse_value(v, text, field, err);
        if (s != AN_OK)
            return s;
    }
    return AN_OK;
}

void an_config_free(const an_config_var *vars, void *ctx)
{
    for (const an_config_var *v = vars; v->name; v++) {
        if (v->type == AN_CFG_STRING) {
            char **p = (char **)((char *)ctx + v->offset);
            free(*p);
            *p = NULL;
        }
    }
}

void an_config_print_help(FILE *out, const an_config_var *vars)
{
    for (const an_config_var *v = vars; v->name; v++) {
        fprintf(out, "  %-40s %-8s", v->name, type_name(v->type));
        if (v->flags & AN_CFG_SECRET)
            fprintf(out, " (secret)");
        else if (v->def)
            fprintf(out, " default: %s", *v->def ? v->def : "\"\"");
        if (v->flags & AN_CFG_REQUIRED)
            fprintf(out, " (required)");
        if (v->min < v->max)
            fprintf(out, " range: %lld..%lld%s", v->min, v->max,
                    v->type == AN_CFG_DURATION ? " ms"
                    : v->type == AN_CFG_SIZE   ? " bytes"
                                               : "");
        fprintf(out, "\n      %s\n", v->description);
    }
}
