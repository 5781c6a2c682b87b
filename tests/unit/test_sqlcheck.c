#include "common/buf.h"
#include "common/sqlcheck.h"
#include "common/status.h"
#include "tests/sqlcheck_cases.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_HOSTILE (sizeof(hostile_cases) / sizeof(hostile_cases[0]))
#define N_LEGIT   (sizeof(legit_cases) / sizeof(legit_cases[0]))

static const an_sqlcheck_table tables[] = {
    {"events", "analytics.events", "tenant_id"},
    {"events_hourly", "analytics.events_hourly", "tenant_id"},
    {NULL, NULL, NULL},
};

#define BOUND_EVENTS "(SELECT * FROM analytics.events WHERE analytics.events.tenant_id = 'T1')"
#define BOUND_HOURLY                                                                               \
    "(SELECT * FROM analytics.events_hourly WHERE analytics.events_hourly.tenant_id = 'T1')"
/* The bound events relation with conditions copied into it (pushdown). */
#define BOUND_EVENTS_AND(conds)                                                                    \
    "(SELECT * FROM analytics.events WHERE analytics.events.tenant_id = 'T1' AND " conds ")"

static an_sqlcheck_opts opts_for(const char *tenant)
{
    an_sqlcheck_opts o = {0};
    o.tables = tables;
    o.tenant_id = tenant;
    return o;
}

/* Platform-admin options: every tenant of the tables. */
static an_sqlcheck_opts opts_all(void)
{
    an_sqlcheck_opts o = {0};
    o.tables = tables;
    o.all_tenants = true;
    return o;
}

/* Bind sql for tenant T1; returns the status, the output in *out (freed by
 * the caller with an_buf_free). */
static an_status bind(const char *sql, an_buf *out, an_error *err)
{
    an_sqlcheck_opts o = opts_for("T1");
    return an_sqlcheck_bind(sql, strlen(sql), &o, out, err);
}

/* Bind with o and compare with the exact expected text. */
static void expect_rewrite_opts(const an_sqlcheck_opts *o, const char *sql, const char *want)
{
    an_buf out = AN_BUF_INIT;
    an_error err = {0};
    an_status st = an_sqlcheck_bind(sql, strlen(sql), o, &out, &err);
    ck_assert_msg(st == AN_OK, "refused %s: %s", sql, err.message);
    ck_assert_str_eq(an_buf_str(&out), want);
    an_buf_free(&out);
}

/* Bind for tenant T1 and compare with the exact expected text. */
static void expect_rewrite(const char *sql, const char *want)
{
    an_sqlcheck_opts o = opts_for("T1");
    expect_rewrite_opts(&o, sql, want);
}

/* Copy of q with the inside of every string literal and quoted name
 * replaced by 'x' (the quotes stay). Free it. */
static char *blank_quotes(const char *bound)
{
    char *q = strdup(bound);
    for (char *p = q; *p; p++) {
        char quote = *p;
        if (quote != '\'' && quote != '`' && quote != '"')
            continue;
        for (p++; *p; p++) {
            if (quote == '\'' && *p == '\\' && p[1]) {
                *p++ = 'x';
                *p = 'x';
            } else if (*p == quote && p[1] == quote) {
                *p++ = 'x';
                *p = 'x';
            } else if (*p == quote) {
                break;
            } else {
                *p = 'x';
            }
        }
        if (!*p)
            break;
    }
    return q;
}

/* In a bound query every FROM and JOIN (outside string literals) is
 * followed by a subquery, or is ours: "(SELECT * FROM analytics.<table>".
 * IN is followed by a list, a subquery, a function call or our bound
 * relation, never by a name (which would be a table). */
static void assert_every_from_is_bound(const char *bound)
{
    char *q = blank_quotes(bound);
    for (const char *p = strstr(q, " IN "); p; p = strstr(p + 1, " IN ")) {
        const char *e = p + 4;
        if (*e == '`' || *e == '"') {
            e = strchr(e + 1, *e);
            ck_assert_ptr_nonnull(e);
            e++;
        } else if (*e == '_' || ((*e | 0x20) >= 'a' && (*e | 0x20) <= 'z')) {
            while (*e == '_' || (*e >= '0' && *e <= '9') ||
                   ((*e | 0x20) >= 'a' && (*e | 0x20) <= 'z'))
                e++;
        } else {
            continue;
        }
        while (*e == ' ')
            e++;
        ck_assert_msg(*e == '(', "name after IN in %s", bound);
    }
    static const char *const kws[] = {"FROM ", "JOIN ", NULL};
    for (const char *const *kw = kws; *kw; kw++) {
        for (const char *p = strstr(q, *kw); p; p = strstr(p + 1, *kw)) {
            const char *next = p + strlen(*kw);
            char before = p > q ? p[-1] : ' ';
            if (before == '_' || (before >= '0' && before <= '9') ||
                ((before | 0x20) >= 'a' && (before | 0x20) <= 'z'))
                continue; /* part of a longer name: xFROM */
            if (**kw == 'F' && next[0] >= '0' && next[0] <= '9')
                continue; /* SUBSTRING(s FROM 1 FOR 3) */
            if (**kw == 'J' && p - q >= 6 && strncmp(p - 6, "ARRAY ", 6) == 0)
                continue; /* ARRAY JOIN takes arrays, not tables */
            int ok = next[0] == '(' || strncmp(next, "analytics.events ", 17) == 0 ||
                     strncmp(next, "analytics.events_hourly ", 24) == 0;
            ck_assert_msg(ok, "unbound %s in %s", *kw, bound);
            if (next[0] != '(')
                ck_assert_msg(p - q >= 10 && strncmp(p - 10, "(SELECT * ", 10) == 0, "not ours: %s",
                              bound);
        }
    }
    free(q);
}

/* ------------------------------------------------------------ hostile */

START_TEST(test_sqlcheck_refuses_hostile_template)
{
    const hostile_case *c = &hostile_cases[_i];
    size_t len = c->len ? c->len : strlen(c->sql);
    an_sqlcheck_opts o = opts_for("T1");
    an_buf out = AN_BUF_INIT;
    an_buf_adds(&out, "keep");
    an_error err = {0};
    an_status st = an_sqlcheck_bind(c->sql, len, &o, &out, &err);
    ck_assert_msg(st == AN_INVALID_ARGUMENT, "#%d (%s) accepted: %s -> %s", _i, c->why, c->sql,
                  an_buf_str(&out));
    ck_assert_msg(strstr(err.message, c->reason) != NULL,
                  "#%d (%s): %s\n  refused for another reason: %s\n  expected: %s", _i, c->why,
                  c->sql, err.message, c->reason);
    ck_assert_str_eq(err.field, "sql");
    ck_assert_msg(strstr(err.message, "offset") != NULL, "no position in %s", err.message);
    ck_assert_str_eq(an_buf_str(&out), "keep");
    /* The check-only entry point agrees. */
    ck_assert_int_eq(an_sqlcheck_check(c->sql, len, &o, NULL), AN_INVALID_ARGUMENT);
    an_buf_free(&out);
}
END_TEST

START_TEST(test_sqlcheck_hostile_list_is_long_enough)
{
    ck_assert_uint_ge(N_HOSTILE, 60);
    ck_assert_uint_ge(N_LEGIT, 15);
}
END_TEST

/* ---------------------------------------------------------- legitimate */

START_TEST(test_sqlcheck_accepts_legitimate_template)
{
    const legit_case *c = &legit_cases[_i];
    an_buf out = AN_BUF_INIT;
    an_error err = {0};
    an_status st = bind(c->sql, &out, &err);
    ck_assert_msg(st == AN_OK, "#%d (%s) refused: %s\n  %s", _i, c->why, c->sql, err.message);
    const char *q = an_buf_str(&out);
    ck_assert_msg(strstr(q, "tenant_id = 'T1'") != NULL, "no binding in %s", q);
    assert_every_from_is_bound(q);
    ck_assert_msg(strstr(q, "/*") == NULL, "comment left in %s", q);
    ck_assert_msg(q[out.len - 1] != ';', "semicolon left in %s", q);
    an_sqlcheck_opts o = {0};
    o.tables = tables;
    ck_assert_int_eq(an_sqlcheck_check(c->sql, strlen(c->sql), &o, NULL), AN_OK);
    an_buf_free(&out);
}
END_TEST

START_TEST(test_sqlcheck_rewrites_table_to_bound_subquery_keeping_alias)
{
    expect_rewrite("SELECT count() FROM events", "SELECT count() FROM " BOUND_EVENTS " AS events");
    expect_rewrite("SELECT e.actor_id FROM events AS e WHERE e.event_name = 'x'",
                   "SELECT e.actor_id FROM " BOUND_EVENTS_AND(
                       "(event_name = 'x')") " AS e WHERE e.event_name = 'x'");
    expect_rewrite("SELECT e.actor_id FROM events e",
                   "SELECT e.actor_id FROM " BOUND_EVENTS " AS e");
    expect_rewrite("SELECT 1 FROM `events`", "SELECT 1 FROM " BOUND_EVENTS " AS `events`");
}
END_TEST

/* Pushdown: which WHERE conditions are copied into the bound subquery.
 * want is the copied part after the tenant condition, NULL when nothing
 * may be copied. */
static const struct {
    const char *sql;
    const char *want;
} pushdown_cases[] = {
    /* copied: AND lists of conditions on columns, literals, pure functions */
    {"SELECT count() FROM events WHERE ts >= toDateTime(100) AND event_name = 'x'",
     "(ts >= toDateTime(100)) AND (event_name = 'x')"},
    {"SELECT count() FROM events WHERE (ts >= toDateTime(1) AND ts < toDateTime(2)) AND 1",
     "((ts >= toDateTime(1) AND ts < toDateTime(2)))"},
    {"SELECT count() FROM events AS e WHERE e.event_name IN ('a', 'b') AND NOT e.x LIKE 'y%'",
     "(event_name IN ('a', 'b')) AND (NOT x LIKE 'y%')"},
    {"SELECT count() FROM events WHERE prop_values[indexOf(prop_keys, 'c')] = 'FR'",
     "(prop_values[indexOf(prop_keys, 'c')] = 'FR')"},
    {"SELECT count() FROM events WHERE ifNull(toFloat64OrNull(v), 0) > 1.5 AND has(k, 'a')",
     "(ifNull(toFloat64OrNull(v), 0) > 1.5) AND (has(k, 'a'))"},
    {"SELECT count() FROM events WHERE x BETWEEN 1 AND 5 AND y = 2",
     "(x BETWEEN 1 AND 5) AND (y = 2)"},
    {"SELECT count() FROM events WHERE CASE WHEN a AND b THEN 1 ELSE 0 END = 1 AND c = 2",
     "(CASE WHEN a AND b THEN 1 ELSE 0 END = 1) AND (c = 2)"},
    {"SELECT count() FROM events WHERE a = 1 AND (b = 2 OR c = 3) GROUP BY d",
     "(a = 1) AND ((b = 2 OR c = 3))"},
    {"SELECT count() FROM events WHERE a = 1 AND lower(b) = 'x' AND rand() > 0",
     "(a = 1) AND (lower(b) = 'x')"},
    {"SELECT (SELECT count() FROM events WHERE a = 1) AS n", "(a = 1)"},
    {"SELECT a FROM events WHERE a = 1 ORDER BY a LIMIT 3", "(a = 1)"},
    {"SELECT count() FROM events WHERE `a` = 1 AND events.b = 2", "(`a` = 1) AND (b = 2)"},
    /* nothing copied */
    {"SELECT count() FROM events WHERE a = 1 OR b = 2", NULL},
    {"SELECT count() FROM events WHERE a = 1 AND b = 2 OR c = 3", NULL},
    {"SELECT count() FROM events WHERE a = 1 ? 1 : 0", NULL},
    {"SELECT count() FROM events WHERE rand() % 2 = 0", NULL},
    {"SELECT count() FROM events WHERE rowNumberInAllBlocks() < 5", NULL},
    {"SELECT count() FROM events WHERE arrayExists(x -> x = 'a', k)", NULL},
    {"SELECT toStartOfDay(ts) AS ts, count() FROM events WHERE ts > toDateTime(0) GROUP BY ts",
     NULL},
    {"SELECT toStartOfDay(ts) ts, count() FROM events WHERE ts > toDateTime(0) GROUP BY ts", NULL},
    {"WITH 5 AS n SELECT count() FROM events WHERE a > n", NULL},
    {"SELECT e.other ts, count() FROM events AS e WHERE ts > 1 GROUP BY ts", NULL},
    {"SELECT CASE WHEN a THEN b ELSE c END ts FROM events WHERE ts > 1", NULL},
    {"SELECT count() FROM events WHERE a IN (SELECT a FROM events)", NULL},
    {"SELECT count() FROM events WHERE a IN events_hourly", NULL},
    {"SELECT count() FROM events WHERE a IN (1, x + 1)", NULL},
    {"SELECT count() FROM events WHERE a GLOBAL IN (1, 2)", NULL},
    {"SELECT count() FROM events WHERE CAST(a AS UInt8) = 1", NULL},
    {"SELECT count() FROM events FINAL WHERE a = 1", NULL},
    {"SELECT count() FROM events AS e WHERE other.a = 1", NULL},
    {"SELECT count() FROM events WHERE 1", NULL},
    {"SELECT count() FROM events ARRAY JOIN k AS kk WHERE kk = 'a'", NULL},
    {"SELECT count() FROM (SELECT * FROM events) WHERE a = 1", NULL},
    {"SELECT count() FROM events WHERE a = (SELECT max(a) FROM events_hourly)", NULL},
};

START_TEST(test_sqlcheck_copies_safe_where_conditions_into_the_bound_subquery)
{
    for (size_t i = 0; i < sizeof(pushdown_cases) / sizeof(pushdown_cases[0]); i++) {
        const char *sql = pushdown_cases[i].sql, *want = pushdown_cases[i].want;
        an_buf out = AN_BUF_INIT, plain = AN_BUF_INIT;
        an_error err = {0};
        ck_assert_msg(bind(sql, &out, &err) == AN_OK, "refused %s: %s", sql, err.message);
        an_sqlcheck_opts o = opts_for("T1");
        o.no_pushdown = true;
        ck_assert_int_eq(an_sqlcheck_bind(sql, strlen(sql), &o, &plain, &err), AN_OK);
        const char *q = an_buf_str(&out);
        if (!want) {
            ck_assert_msg(strcmp(q, an_buf_str(&plain)) == 0, "#%zu copied something: %s", i, q);
        } else {
            char expect[512];
            snprintf(expect, sizeof(expect),
                     "(SELECT * FROM analytics.events WHERE analytics.events.tenant_id = 'T1' "
                     "AND %s)",
                     want);
            ck_assert_msg(strstr(q, expect) != NULL, "#%zu: %s\n  want %s", i, q, expect);
            /* the outer query is unchanged: only the subquery grew */
            ck_assert_uint_eq(out.len, plain.len + strlen(" AND ") + strlen(want));
        }
        an_buf_free(&out);
        an_buf_free(&plain);
    }
}
END_TEST

START_TEST(test_sqlcheck_pushdown_for_all_tenants_and_options)
{
    an_sqlcheck_opts o = opts_all();
    const char *sql = "SELECT count() FROM events WHERE a = 1";
    expect_rewrite_opts(&o, sql,
                        "SELECT count() FROM (SELECT * FROM analytics.events WHERE (a = 1)) AS "
                        "events WHERE a = 1");
    o.no_pushdown = true;
    expect_rewrite_opts(
        &o, sql, "SELECT count() FROM (SELECT * FROM analytics.events) AS events WHERE a = 1");
    /* a join: the WHERE is the join's, nothing moves */
    expect_rewrite("SELECT 1 FROM events AS a ANY LEFT JOIN events_hourly AS b USING (x) WHERE "
                   "a.y = 1",
                   "SELECT 1 FROM " BOUND_EVENTS " AS a ANY LEFT JOIN " BOUND_HOURLY
                   " AS b USING (x) WHERE a.y = 1");
    expect_rewrite("SELECT 1 FROM events_hourly, events WHERE y = 1",
                   "SELECT 1 FROM " BOUND_HOURLY " AS events_hourly, " BOUND_EVENTS
                   " AS events WHERE y = 1");
    /* a comment inside a copied condition never reaches the copy */
    expect_rewrite("SELECT 1 FROM events WHERE a = /* ) OR 1 = 1 -- */ 1",
                   "SELECT 1 FROM " BOUND_EVENTS_AND("(a = 1)") " AS events WHERE a = 1");
}
END_TEST

START_TEST(test_sqlcheck_rewrites_every_reference_of_joins_unions_and_subqueries)
{
    expect_rewrite("SELECT a.x FROM events AS a ANY LEFT JOIN events_hourly AS b USING (actor_id)",
                   "SELECT a.x FROM " BOUND_EVENTS " AS a ANY LEFT JOIN " BOUND_HOURLY
                   " AS b USING (actor_id)");
    expect_rewrite("SELECT 1 FROM events UNION ALL SELECT 2 FROM events_hourly",
                   "SELECT 1 FROM " BOUND_EVENTS " AS events UNION ALL SELECT 2 FROM " BOUND_HOURLY
                   " AS events_hourly");
    expect_rewrite("SELECT (SELECT count() FROM events) / (SELECT count() FROM events_hourly)",
                   "SELECT (SELECT count() FROM " BOUND_EVENTS
                   " AS events) / (SELECT count() FROM " BOUND_HOURLY " AS events_hourly)");
    expect_rewrite("SELECT k FROM events ARRAY JOIN prop_keys AS k",
                   "SELECT k FROM " BOUND_EVENTS " AS events ARRAY JOIN prop_keys AS k");
}
END_TEST

START_TEST(test_sqlcheck_rewrites_in_with_a_bare_table_to_a_bound_subquery)
{
    expect_rewrite("SELECT 1 FROM events WHERE actor_id IN events_hourly",
                   "SELECT 1 FROM " BOUND_EVENTS " AS events WHERE actor_id IN " BOUND_HOURLY);
    expect_rewrite(
        "SELECT 1 FROM events WHERE actor_id GLOBAL NOT IN (SELECT actor_id FROM events)",
        "SELECT 1 FROM " BOUND_EVENTS " AS events WHERE actor_id GLOBAL NOT IN (SELECT "
        "actor_id FROM " BOUND_EVENTS " AS events)");
    expect_rewrite("SELECT 1 FROM events WHERE event_name IN ('a', 'b')",
                   "SELECT 1 FROM " BOUND_EVENTS_AND(
                       "(event_name IN ('a', 'b'))") " AS events WHERE event_name IN ('a', 'b')");
}
END_TEST

START_TEST(test_sqlcheck_moves_final_and_sample_into_the_bound_subquery)
{
    expect_rewrite(
        "SELECT count() FROM events AS e FINAL SAMPLE 1/10 OFFSET 1/2 WHERE e.x = 1",
        "SELECT count() FROM (SELECT * FROM analytics.events FINAL SAMPLE 1 / 10 OFFSET 1 / 2 "
        "WHERE analytics.events.tenant_id = 'T1') AS e WHERE e.x = 1");
    expect_rewrite("SELECT count() FROM events FINAL",
                   "SELECT count() FROM (SELECT * FROM analytics.events FINAL WHERE "
                   "analytics.events.tenant_id = 'T1') AS events");
}
END_TEST

START_TEST(test_sqlcheck_drops_comments_and_keeps_tokens_apart)
{
    expect_rewrite("SELECT/* a */count()--b\nFROM events;",
                   "SELECT count() FROM " BOUND_EVENTS " AS events");
    /* A comment between two minus signs must not glue them into "--". */
    expect_rewrite("SELECT 1 -/**/-1 FROM events", "SELECT 1 - -1 FROM " BOUND_EVENTS " AS events");
    /* Comment markers inside strings are data. */
    expect_rewrite("SELECT '--x /* y */' FROM events",
                   "SELECT '--x /* y */' FROM " BOUND_EVENTS " AS events");
}
END_TEST

START_TEST(test_sqlcheck_mysql_style_executable_comments_are_only_comments)
{
    /* ClickHouse ignores a slash-star-bang comment like any other; it is dropped. */
    expect_rewrite("SELECT count() /*! , (SELECT 1 FROM system.one) */ FROM events",
                   "SELECT count() FROM " BOUND_EVENTS " AS events");
}
END_TEST

START_TEST(test_sqlcheck_reads_numbers_in_their_clickhouse_forms)
{
    expect_rewrite("SELECT 0x1F, 0xff.8p1, 1e-3, 1.5E+2, 1., t.1.2, -7 FROM events AS t",
                   "SELECT 0x1F, 0xff.8p1, 1e-3, 1.5E+2, 1., t.1.2, -7 FROM " BOUND_EVENTS " AS t");
}
END_TEST

START_TEST(test_sqlcheck_quotes_the_tenant_id)
{
    an_sqlcheck_opts o = opts_for("it's\\ \n");
    an_buf out = AN_BUF_INIT;
    an_error err;
    const char *sql = "SELECT 1 FROM events";
    ck_assert_int_eq(an_sqlcheck_bind(sql, strlen(sql), &o, &out, &err), AN_OK);
    ck_assert_str_eq(an_buf_str(&out), "SELECT 1 FROM (SELECT * FROM analytics.events WHERE "
                                       "analytics.events.tenant_id = 'it\\'s\\\\ \\n') AS events");
    an_buf_free(&out);
    /* An explicit length may carry a NUL. */
    o.tenant_id = "a\0b";
    o.tenant_id_len = 3;
    ck_assert_int_eq(an_sqlcheck_bind(sql, strlen(sql), &o, &out, &err), AN_OK);
    ck_assert_ptr_nonnull(strstr(an_buf_str(&out), "tenant_id = 'a\\x00b')"));
    an_buf_free(&out);
}
END_TEST

START_TEST(test_sqlcheck_all_tenants_reads_allowed_tables_without_condition)
{
    an_sqlcheck_opts o = opts_all();
    expect_rewrite_opts(&o, "SELECT tenant_id, count() FROM events GROUP BY tenant_id",
                        "SELECT tenant_id, count() FROM (SELECT * FROM analytics.events) AS "
                        "events GROUP BY tenant_id");
    an_buf out = AN_BUF_INIT;
    an_error err;
    const char *sql = "SELECT count() FROM system.one";
    ck_assert_int_eq(an_sqlcheck_bind(sql, strlen(sql), &o, &out, &err), AN_INVALID_ARGUMENT);
    sql = "SELECT count() FROM other_table";
    ck_assert_int_eq(an_sqlcheck_bind(sql, strlen(sql), &o, &out, &err), AN_INVALID_ARGUMENT);
    ck_assert_uint_eq(out.len, 0);
}
END_TEST

START_TEST(test_sqlcheck_needs_exactly_one_of_tenant_and_all_tenants)
{
    const char *sql = "SELECT 1 FROM events";
    an_buf out = AN_BUF_INIT;
    an_error err;
    an_sqlcheck_opts o = {0};
    o.tables = tables;
    ck_assert_int_eq(an_sqlcheck_bind(sql, strlen(sql), &o, &out, &err), AN_INTERNAL);
    o.tenant_id = "T1";
    o.all_tenants = true;
    ck_assert_int_eq(an_sqlcheck_bind(sql, strlen(sql), &o, &out, &err), AN_INTERNAL);
    o.all_tenants = false;
    o.tenant_id = "";
    ck_assert_int_eq(an_sqlcheck_bind(sql, strlen(sql), &o, &out, &err), AN_INTERNAL);
    ck_assert_ptr_nonnull(strstr(err.message, "empty tenant"));
    ck_assert_uint_eq(out.len, 0);
    /* The check-only entry point needs no tenant. */
    o.tenant_id = NULL;
    ck_assert_int_eq(an_sqlcheck_check(sql, strlen(sql), &o, &err), AN_OK);
}
END_TEST

START_TEST(test_sqlcheck_refuses_bad_table_lists)
{
    const char *sql = "SELECT 1 FROM events";
    an_error err;
    static const an_sqlcheck_table no_db[] = {{"events", "events", "tenant_id"}, {0}};
    static const an_sqlcheck_table bad_col[] = {{"events", "analytics.events", "t id"}, {0}};
    static const an_sqlcheck_table bad_name[] = {{"ev-ents", "analytics.events", "t"}, {0}};
    static const an_sqlcheck_table twice[] = {
        {"events", "analytics.a", "t"}, {"events", "analytics.b", "t"}, {0}};
    static const an_sqlcheck_table sys[] = {{"system", "analytics.a", "t"}, {0}};
    static const an_sqlcheck_table empty[] = {{0}};
    const an_sqlcheck_table *bad[] = {no_db, bad_col, bad_name, twice, sys, empty, NULL};
    for (int i = 0; i < 7; i++) {
        an_sqlcheck_opts o = {0};
        o.tables = bad[i];
        o.tenant_id = "T1";
        ck_assert_int_eq(an_sqlcheck_check(sql, strlen(sql), &o, &err), AN_INTERNAL);
    }
}
END_TEST

START_TEST(test_sqlcheck_error_says_what_and_where)
{
    an_buf out = AN_BUF_INIT;
    an_error err;
    ck_assert_int_eq(bind("SELECT * FROM other_table", &out, &err), AN_INVALID_ARGUMENT);
    ck_assert_str_eq(err.message, "sql: table other_table is not allowed: use one of events, "
                                  "events_hourly (at offset 14 near \"other_table\")");
    ck_assert_int_eq(bind("SELECT 1 FROM events WHERE x = 'a", &out, &err), AN_INVALID_ARGUMENT);
    ck_assert_str_eq(err.message, "sql: string literal is not closed (at offset 31)");
    ck_assert_int_eq(bind("SELECT (1", &out, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "at the end, offset 9"));
    an_buf_free(&out);
}
END_TEST

START_TEST(test_sqlcheck_enforces_size_token_depth_and_name_limits)
{
    an_sqlcheck_opts o = opts_for("T1");
    an_error err;
    an_buf sql = AN_BUF_INIT;

    /* bytes */
    an_buf_adds(&sql, "SELECT 1 FROM events WHERE event_name = '");
    while (sql.len < AN_SQLCHECK_MAX_BYTES)
        an_buf_addc(&sql, 'x');
    an_buf_adds(&sql, "'");
    ck_assert_int_eq(an_sqlcheck_check(sql.data, sql.len, &o, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "the limit is 65536"));
    o.max_bytes = sql.len;
    ck_assert_int_eq(an_sqlcheck_check(sql.data, sql.len, &o, &err), AN_OK);
    o.max_bytes = 0;

    /* tokens: 1 + 1 + 2 * 5000 */
    an_buf_reset(&sql);
    an_buf_adds(&sql, "SELECT 0");
    for (int i = 0; i < 5000; i++)
        an_buf_adds(&sql, "+1");
    ck_assert_int_eq(an_sqlcheck_check(sql.data, sql.len, &o, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "too many tokens"));
    o.max_tokens = 20000;
    ck_assert_int_eq(an_sqlcheck_check(sql.data, sql.len, &o, &err), AN_OK);
    o.max_tokens = 0;

    /* depth */
    an_buf_reset(&sql);
    an_buf_adds(&sql, "SELECT ");
    for (int i = 0; i < 33; i++)
        an_buf_addc(&sql, '(');
    an_buf_addc(&sql, '1');
    for (int i = 0; i < 33; i++)
        an_buf_addc(&sql, ')');
    ck_assert_int_eq(an_sqlcheck_check(sql.data, sql.len, &o, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "nested deeper than 32"));
    o.max_depth = 40;
    ck_assert_int_eq(an_sqlcheck_check(sql.data, sql.len, &o, &err), AN_OK);
    o.max_depth = 0;

    /* names: 255 bytes fine, 256 refused, bare or quoted */
    char name[300];
    memset(name, 'a', sizeof(name));
    name[255] = '\0';
    an_buf_reset(&sql);
    an_buf_addf(&sql, "SELECT 1 AS %s, 2 AS `%s`", name, name);
    ck_assert_int_eq(an_sqlcheck_check(sql.data, sql.len, &o, &err), AN_OK);
    name[255] = 'a';
    name[256] = '\0';
    an_buf_reset(&sql);
    an_buf_addf(&sql, "SELECT 1 AS %s", name);
    ck_assert_int_eq(an_sqlcheck_check(sql.data, sql.len, &o, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "identifier too long"));
    an_buf_reset(&sql);
    an_buf_addf(&sql, "SELECT 1 AS `%s`", name);
    ck_assert_int_eq(an_sqlcheck_check(sql.data, sql.len, &o, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "identifier too long"));
    an_buf_free(&sql);
}
END_TEST

START_TEST(test_sqlcheck_appends_to_existing_output)
{
    an_buf out = AN_BUF_INIT;
    an_error err;
    an_buf_adds(&out, "-- q1\n");
    ck_assert_int_eq(bind("SELECT 1 FROM events", &out, &err), AN_OK);
    ck_assert_str_eq(an_buf_str(&out), "-- q1\nSELECT 1 FROM " BOUND_EVENTS " AS events");
    an_buf_free(&out);
}
END_TEST

START_TEST(test_sqlcheck_accepts_keywords_as_aliases_and_in_strings)
{
    expect_rewrite("SELECT 1 AS `from`, 2 AS \"join\" FROM events",
                   "SELECT 1 AS `from`, 2 AS \"join\" FROM " BOUND_EVENTS " AS events");
    expect_rewrite("SELECT count() AS \"Active users\" FROM events WHERE event_name = 'it''s'",
                   "SELECT count() AS \"Active users\" FROM " BOUND_EVENTS_AND(
                       "(event_name = 'it''s')") " AS events WHERE event_name = 'it''s'");
    expect_rewrite("SELECT 'caf\xc3\xa9', `\xc3\xa9t\xc3\xa9` FROM events AS `\xc3\xa9t\xc3\xa9`",
                   "SELECT 'caf\xc3\xa9', `\xc3\xa9t\xc3\xa9` FROM " BOUND_EVENTS
                   " AS `\xc3\xa9t\xc3\xa9`");
}
END_TEST

/* ------------------------------------------------------------ mutation */

static unsigned long long rng_state = 0x9E3779B97F4A7C15ull;

static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

/* Words a mutation may insert: structure, names, and what attacks use. */
static const char *const dict[] = {
    "FROM",        "JOIN",     "ALL INNER JOIN",
    "ARRAY JOIN",  "LEFT",     "IN",
    "GLOBAL IN",   "NOT",      ",",
    "(",           ")",        "[",
    "]",           ".",        ";",
    "AS",          "SELECT",   "WITH",
    "UNION ALL",   "WHERE",    "ON",
    "USING",       "FINAL",    "SAMPLE",
    "1/10",        "events",   "events_hourly",
    "other_table", "system",   "tenant_id",
    "x",           "`events`", "\"other_table\"",
    "'s'",         "'",        "--",
    "/*",          "*/",       "->",
    "=",           "1",        "count()",
    "in(",         "dictGet(", "numbers(",
    "e",           "e.x",      "#",
    "\\",          "''",       "`",
    "\n",
};

/* Templates to mutate: the legitimate ones without SUBSTRING/EXTRACT (whose
 * FROM is not a table) plus a few hostile ones. */
static const char *const seeds[] = {
    "SELECT count() FROM events AS e WHERE e.x IN (SELECT x FROM events_hourly) GROUP BY e.y",
    "SELECT a.x, b.y FROM events AS a ALL INNER JOIN events_hourly AS b USING (x) WHERE a.z = 1",
    "SELECT k FROM events ARRAY JOIN keys AS k, vals AS v UNION ALL SELECT 1 FROM events_hourly",
    "WITH 1 AS one SELECT (SELECT count() FROM events) / (SELECT count() FROM events_hourly)",
    "SELECT x FROM events WHERE y IN events_hourly AND z GLOBAL NOT IN (1, 2) LIMIT 1 BY x",
    "SELECT arrayMap(a -> a * 2, [1, 2]) FROM (SELECT * FROM events) AS t FINAL",
    "SELECT * FROM events, other_table",
    "SELECT * FROM events WHERE x IN other_table",
};

START_TEST(test_sqlcheck_mutated_templates_never_leave_a_table_unbound)
{
    an_sqlcheck_opts o = opts_for("T1");
    int accepted = 0, iters = 40000;
    /* Longer hunts: AN_SQLCHECK_MUTATIONS=5000000 AN_SQLCHECK_SEED=7 */
    if (getenv("AN_SQLCHECK_MUTATIONS"))
        iters = atoi(getenv("AN_SQLCHECK_MUTATIONS"));
    if (getenv("AN_SQLCHECK_SEED"))
        rng_state += strtoull(getenv("AN_SQLCHECK_SEED"), NULL, 10) * 0x2545F4914F6CDD1Dull;
    for (int iter = 0; iter < iters; iter++) {
        /* split a seed into words, mutate 1..4 times, join */
        char *copy = strdup(seeds[rnd(sizeof(seeds) / sizeof(seeds[0]))]);
        const char *words[96];
        int n = 0;
        for (char *save = NULL, *wd = strtok_r(copy, " ", &save); wd && n < 64;
             wd = strtok_r(NULL, " ", &save))
            words[n++] = wd;
        for (int m = 1 + (int)rnd(4); m > 0; m--) {
            unsigned op = rnd(4), at = rnd((unsigned)n + 1);
            if (op == 0 && n > 1) { /* delete */
                if (at >= (unsigned)n)
                    at = (unsigned)n - 1;
                memmove(&words[at], &words[at + 1], (size_t)(n - (int)at - 1) * sizeof(words[0]));
                n--;
            } else if (op == 1 && n < 90) { /* insert */
                memmove(&words[at + 1], &words[at], (size_t)(n - (int)at) * sizeof(words[0]));
                words[at] = dict[rnd(sizeof(dict) / sizeof(dict[0]))];
                n++;
            } else if (op == 2 && n > 1) { /* swap neighbours */
                if (at + 1 >= (unsigned)n)
                    at = (unsigned)n - 2;
                const char *t = words[at];
                words[at] = words[at + 1];
                words[at + 1] = t;
            } else if (n > 0) { /* replace */
                words[at < (unsigned)n ? at : (unsigned)n - 1] =
                    dict[rnd(sizeof(dict) / sizeof(dict[0]))];
            }
        }
        an_buf sql = AN_BUF_INIT;
        for (int i = 0; i < n; i++)
            an_buf_addf(&sql, "%s%s", i ? (rnd(8) ? " " : "") : "", words[i]);
        an_buf out = AN_BUF_INIT;
        an_error err;
        an_status st = an_sqlcheck_bind(an_buf_str(&sql), sql.len, &o, &out, &err);
        ck_assert_msg(st == AN_OK || st == AN_INVALID_ARGUMENT, "%s: status %d", sql.data, st);
        if (st == AN_OK) {
            accepted++;
            assert_every_from_is_bound(an_buf_str(&out));
        } else {
            ck_assert_uint_eq(out.len, 0);
            ck_assert_str_eq(err.field, "sql");
        }
        an_buf_free(&out);
        an_buf_free(&sql);
        free(copy);
    }
    /* The mutations must not all be trivially refused. */
    ck_assert_int_gt(accepted, iters / 40);
}
END_TEST

Suite *sqlcheck_suite(void)
{
    Suite *s = suite_create("sqlcheck");
    TCase *tc = tcase_create("hostile");
    tcase_add_loop_test(tc, test_sqlcheck_refuses_hostile_template, 0, (int)N_HOSTILE);
    tcase_add_test(tc, test_sqlcheck_hostile_list_is_long_enough);
    suite_add_tcase(s, tc);

    tc = tcase_create("legitimate");
    tcase_add_loop_test(tc, test_sqlcheck_accepts_legitimate_template, 0, (int)N_LEGIT);
    tcase_add_test(tc, test_sqlcheck_rewrites_table_to_bound_subquery_keeping_alias);
    tcase_add_test(tc, test_sqlcheck_rewrites_every_reference_of_joins_unions_and_subqueries);
    tcase_add_test(tc, test_sqlcheck_copies_safe_where_conditions_into_the_bound_subquery);
    tcase_add_test(tc, test_sqlcheck_pushdown_for_all_tenants_and_options);
    tcase_add_test(tc, test_sqlcheck_rewrites_in_with_a_bare_table_to_a_bound_subquery);
    tcase_add_test(tc, test_sqlcheck_moves_final_and_sample_into_the_bound_subquery);
    tcase_add_test(tc, test_sqlcheck_drops_comments_and_keeps_tokens_apart);
    tcase_add_test(tc, test_sqlcheck_accepts_keywords_as_aliases_and_in_strings);
    tcase_add_test(tc, test_sqlcheck_appends_to_existing_output);
    tcase_add_test(tc, test_sqlcheck_mysql_style_executable_comments_are_only_comments);
    tcase_add_test(tc, test_sqlcheck_reads_numbers_in_their_clickhouse_forms);
    suite_add_tcase(s, tc);

    tc = tcase_create("mutation");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_sqlcheck_mutated_templates_never_leave_a_table_unbound);
    suite_add_tcase(s, tc);

    tc = tcase_create("options");
    tcase_add_test(tc, test_sqlcheck_quotes_the_tenant_id);
    tcase_add_test(tc, test_sqlcheck_all_tenants_reads_allowed_tables_without_condition);
    tcase_add_test(tc, test_sqlcheck_needs_exactly_one_of_tenant_and_all_tenants);
    tcase_add_test(tc, test_sqlcheck_refuses_bad_table_lists);
    tcase_add_test(tc, test_sqlcheck_error_says_what_and_where);
    tcase_add_test(tc, test_sqlcheck_enforces_size_token_depth_and_name_limits);
    suite_add_tcase(s, tc);
    return s;
}
