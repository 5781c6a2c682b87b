/*
 * config.h - configuration from ANALYTICS_* environment variables, described
 * by one typed table (after Fluent Bit's config_map) that also prints --help.
 *
 *   typedef struct { char *nats_url; long long batch; int64_t flush_ms; } my_cfg;
 *   static const an_config_var vars[] = {
 *       {"ANALYTICS_NATS_URL", AN_CFG_STRING, "nats://127.0.0.1:4222", 0, 0,
 *        AN_CFG_REQUIRED, offsetof(my_cfg, nats_url), "NATS server URL"},
 *       {"ANALYTICS_INGEST_BATCH_ROWS", AN_CFG_INT, "50000", 1, 1000000, 0,
 *        offsetof(my_cfg, batch), "rows per ClickHouse insert"},
 *       {0}};
 *
 * Field types by an_config_type:
 *   AN_CFG_STRING   char *      (heap copy, freed by an_config_free; NULL when unset
 *                                and no default)
 *   AN_CFG_INT      long long   (decimal, checked against [min, max] when min < max)
 *   AN_CFG_BOOL     bool        (true/false/1/0/yes/no/on/off)
 *   AN_CFG_DURATION int64_t     milliseconds; accepts "250ms", "5s", "2m", "1h" or a
 *                                bare number of milliseconds; bounds in ms
 *   AN_CFG_SIZE     int64_t     bytes; accepts "512", "64k", "64KB", "16MiB", "1G"; bounds in bytes
 */
#ifndef AN_CONFIG_H
#define AN_CONFIG_H

#include "common/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum an_config_type {
    AN_CFG_STRING = 1,
    AN_CFG_INT,
    AN_CFG_BOOL,
    AN_CFG_DURATION,
    AN_CFG_SIZE,
} an_config_type;

enum {
    AN_CFG_REQUIRED = 1 << 0, /* must be set (or have a default) */
    AN_CFG_SECRET = 1 << 1,   /* never printed, not even its default */
};

typedef struct an_config_var {
    const char *name;        /* environment variable, ANALYTICS_* */
    an_config_type type;     /* how the text is parsed, and the field's C type */
    const char *def;         /* default as text; NULL: none */
    long long min, max;      /* inclusive bounds for numeric types when min < max */
    unsigned flags;          /* AN_CFG_REQUIRED | AN_CFG_SECRET */
    size_t offset;           /* offsetof(ctx type, field) */
    const char *description; /* one line for --help */
} an_config_var;

/* Parse every variable of the table (ending with a {0} sentinel) from the
 * environment into ctx. On the first bad value returns AN_INVALID_ARGUMENT
 * with a message naming the variable, the value and what was expected, and
 * err->field set to the variable name. Strings already set are kept so
 * an_config_free can release them. */
an_status an_config_load(const an_config_var *vars, void *ctx, an_error *err);

/* Free the strings an_config_load allocated in ctx. */
void an_config_free(const an_config_var *vars, void *ctx);

/* Print the table as help text: name, type, default, bounds, description. */
void an_config_print_help(FILE *out, const an_config_var *vars);

/* Parse one value as the table would; for tests and for callers that take
 * the same syntax elsewhere. out points to a field of the type's C type. */
an_status an_config_parse_value(const an_config_var *var, const char *text, void *out,
                                an_error *err);

#endif
