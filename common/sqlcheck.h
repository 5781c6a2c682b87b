/*
 * sqlcheck.h - check a SQL template written by a tenant (metrics, reports,
 * exports) and bind every table it reads to the caller's tenant.
 *
 * The template is tokenized the way ClickHouse's lexer does it (bare and
 * quoted identifiers, string literals with escapes, numbers, operators,
 * -- and block comments) and walked with a small model of the SELECT
 * grammar. It must be exactly one SELECT (or WITH ... SELECT, UNION ALL of
 * them), optionally followed by one ';'. Every table reference (after FROM,
 * JOIN, a comma in FROM, or IN) must be a bare name from the caller's table
 * list; it is replaced by a tenant-bound subquery:
 *
 *   SELECT count() FROM events AS e WHERE e.event_name = 'x'
 *   ->
 *   SELECT count() FROM (SELECT * FROM analytics.events
 *       WHERE analytics.events.tenant_id = 'T') AS e WHERE e.event_name = 'x'
 *
 * so the template author never writes the tenant condition; FINAL and
 * SAMPLE move into the subquery, `x IN events` becomes `x IN (SELECT ...)`.
 * Refused, with AN_INVALID_ARGUMENT (field "sql") and a message naming what
 * and where (byte offset and token):
 *   - any other statement, a second one, EXPLAIN, SET, USE, SHOW, ...;
 *   - database-qualified or unlisted tables, table functions, the system,
 *     information_schema and default databases and the tables' own
 *     databases named anywhere (also `quoted`);
 *   - SETTINGS, FORMAT, INTO OUTFILE, PREWHERE (not valid on a subquery),
 *     INTERSECT/EXCEPT, UNION other than UNION ALL, WITH name AS (subquery);
 *   - functions that read outside the bound relation or the server's state
 *     (dictGet*, joinGet, file, url, remote, mysql, s3, merge, numbers,
 *     getSetting, hostName, sleep, in/notIn/globalIn(...), ...);
 *   - a bare name where ClickHouse could read it as a table: x IN (t),
 *     x IN (a, t), an allowed table's name used as a value;
 *   - aliases, lambda parameters and table aliases named like a tenant
 *     column (on servers that propagate WITH aliases into subqueries they
 *     could stand in for the column), unquoted keywords as names (AS from),
 *     '.' that does not join two names;
 *   - # comments, nested block comments, escapes or dots inside quoted
 *     names, characters ClickHouse does not accept or reads differently
 *     across versions ($, {, non-ASCII outside quotes, NUL), unbalanced
 *     brackets, and inputs over the limits below.
 * When unsure whether ClickHouse reads something as a table, it refuses.
 *
 * The output is rebuilt from the tokens: comments become a single space and
 * never reach the server, so what runs is exactly what was checked.
 *
 * Pushdown. ClickHouse 18.16 does not move the outer WHERE into the bound
 * subquery, so the tenant's whole table would be read. When a bound table
 * is the only table of its FROM and a WHERE follows it, the top-level AND
 * conditions of that WHERE that mean the same inside the subquery (literals,
 * pure row functions, names no alias redefines; never a name after IN, never
 * a subquery) are copied into it too, after the tenant condition:
 *
 *   SELECT count() FROM events WHERE event_name = 'x' AND y > 1 OR ...
 *   (an OR at the top: nothing is copied)
 *   SELECT count() FROM events AS e WHERE e.event_name = 'x' AND f(y)
 *   -> ... FROM (SELECT * FROM analytics.events WHERE
 *       analytics.events.tenant_id = 'T' AND (event_name = 'x')) AS e
 *       WHERE e.event_name = 'x' AND f(y)
 *
 * The outer WHERE is kept, so results never change; the rules are in
 * sqlcheck.c.
 */
#ifndef AN_SQLCHECK_H
#define AN_SQLCHECK_H

#include "common/buf.h"
#include "common/status.h"

#include <stdbool.h>
#include <stddef.h>

/* One table a template may read. */
typedef struct an_sqlcheck_table {
    const char *name;          /* name used in templates, e.g. "events" (an_sql_ident_valid) */
    const char *physical;      /* "database.table" it stands for, e.g. "analytics.events" */
    const char *tenant_column; /* String column holding the tenant id, e.g. "tenant_id" */
    /* NULL, or columns SELECT * leaves out that the bound subquery must
     * also pass on (MATERIALIZED ones), as "`a`, `b`": names of
     * [A-Za-z0-9_] in backquotes, comma-separated. */
    const char *extra_columns;
} an_sqlcheck_table;

/* Limits on the template; 0 takes the default. */
#define AN_SQLCHECK_MAX_BYTES  65536 /* bytes of template */
#define AN_SQLCHECK_MAX_TOKENS 8192  /* tokens (comments and spaces not counted) */
#define AN_SQLCHECK_MAX_DEPTH  32    /* nesting of ( and [ */
#define AN_SQLCHECK_MAX_NAME   255   /* bytes in one identifier (bare or quoted) */

typedef struct an_sqlcheck_opts {
    /* The tables a template may read, ending with an entry whose name is
     * NULL. Names are compared exactly (ClickHouse table names are case
     * sensitive). */
    const an_sqlcheck_table *tables;
    /* The tenant every table is bound to (any bytes; quoted with
     * an_sql_quote). Exactly one of tenant_id and all_tenants must be set. */
    const char *tenant_id;
    size_t tenant_id_len;
    /* Platform-admin queries: tables are read without a tenant condition
     * (still only the listed tables). */
    bool all_tenants;
    /* Do not copy WHERE conditions into the bound subqueries (see
     * "Pushdown" above); for tests that compare both forms. */
    bool no_pushdown;
    size_t max_bytes;  /* 0: AN_SQLCHECK_MAX_BYTES */
    size_t max_tokens; /* 0: AN_SQLCHECK_MAX_TOKENS */
    int max_depth;     /* 0: AN_SQLCHECK_MAX_DEPTH */
} an_sqlcheck_opts;

/* Check sql[0..len) and append the tenant-bound query (no trailing ';') to
 * out, which the caller owns. On failure out is left untouched and err says
 * what is wrong:
 * AN_INVALID_ARGUMENT for the template, AN_INTERNAL for a bad opts (table
 * list, tenant). */
an_status an_sqlcheck_bind(const char *sql, size_t len, const an_sqlcheck_opts *opts, an_buf *out,
                           an_error *err);

/* Check only, e.g. when a metric is saved and no tenant is at hand yet:
 * the same rules as an_sqlcheck_bind. tenant fields of opts are ignored. */
an_status an_sqlcheck_check(const char *sql, size_t len, const an_sqlcheck_opts *opts,
                            an_error *err);

#endif
