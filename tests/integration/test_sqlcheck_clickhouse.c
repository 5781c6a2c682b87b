/*
 * sqlcheck against the real ClickHouse of the local stack: templates bound
 * for tenant A and run as the readonly analytics_reader user return exactly
 * tenant A's numbers (computed by hand below) and never a row of tenant B;
 * the quoting survives the server's decoder byte for byte; and the hostile
 * templates the checker refuses are ones ClickHouse's parser accepts.
 */
#include "common/buf.h"
#include "common/sql.h"
#include "common/sqlcheck.h"
#include "common/status.h"
#include "tests/harness.h"
#include "tests/sqlcheck_cases.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TENANT_A "acme"
/* Tenant B's id needs quoting: a quoting bug would show as a wrong count. */
#define TENANT_B "b'ob\\"

static char *base;                      /* unique prefix of this run's tables */
static char ev_phys[128], hr_phys[128]; /* analytics.<base>_ev, analytics.<base>_hr */
static an_sqlcheck_table tables[3];

/* --------------------------------------------------------------- fixture */

static void create_tables(void)
{
    base = th_unique("sqlck");
    snprintf(ev_phys, sizeof(ev_phys), "analytics.%s_ev", base);
    snprintf(hr_phys, sizeof(hr_phys), "analytics.%s_hr", base);
    tables[0] = (an_sqlcheck_table){"events", ev_phys, "tenant_id"};
    tables[1] = (an_sqlcheck_table){"events_hourly", hr_phys, "tenant_id"};
    tables[2] = (an_sqlcheck_table){NULL, NULL, NULL};

    free(th_ch("CREATE DATABASE IF NOT EXISTS analytics"));
    an_buf q = AN_BUF_INIT;
    an_buf_addf(&q,
                "CREATE TABLE %s (tenant_id String, event_name String, ts DateTime, "
                "actor_id String, prop_keys Array(String), prop_values Array(String)) "
                "ENGINE = MergeTree ORDER BY (tenant_id, ts)",
                ev_phys);
    free(th_ch(q.data));
    an_buf_reset(&q);
    an_buf_addf(&q,
                "CREATE TABLE %s (tenant_id String, hour DateTime, n UInt64) "
                "ENGINE = MergeTree ORDER BY (tenant_id, hour)",
                hr_phys);
    free(th_ch(q.data));

    /* Tenant A: 5 events of 3 actors. Tenant B: 7 events, sharing the actor
     * ids a1 and a2 so that a join leaking across tenants changes counts. */
    an_buf_reset(&q);
    an_buf_addf(&q, "INSERT INTO %s VALUES ", ev_phys);
    static const char *const rows[][6] = {
        {TENANT_A, "enrolled", "2024-01-01 10:00:00", "a1", "['course']", "['c1']"},
        {TENANT_A, "paid", "2024-01-01 11:00:00", "a1", "['course','amount']", "['c1','10']"},
        {TENANT_A, "enrolled", "2024-01-02 09:00:00", "a2", "['course']", "['c2']"},
        {TENANT_A, "enrolled", "2024-01-02 12:00:00", "a3", "['course']", "['c1']"},
        {TENANT_A, "viewed", "2024-01-03 08:00:00", "a3", "['page']", "['home']"},
        {TENANT_B, "enrolled", "2024-01-01 10:00:00", "b1", "['course']", "['c1']"},
        {TENANT_B, "paid", "2024-01-01 10:30:00", "b1", "['course','amount']", "['c1','99']"},
        {TENANT_B, "paid", "2024-01-02 10:00:00", "a1", "['course','amount']", "['c9','5']"},
        {TENANT_B, "paid", "2024-01-02 11:00:00", "a2", "['course']", "['c2']"},
        {TENANT_B, "enrolled", "2024-01-04 10:00:00", "b2", "['course']", "['c3']"},
        {TENANT_B, "enrolled", "2024-01-05 10:00:00", "b3", "['course']", "['c3']"},
        {TENANT_B, "viewed", "2024-01-05 11:00:00", "b3", "['page']", "['pricing']"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        an_buf_adds(&q, i ? ", (" : "(");
        an_sql_quote_str(&q, rows[i][0]);
        an_buf_addc(&q, ',');
        an_sql_quote_str(&q, rows[i][1]);
        an_buf_addc(&q, ',');
        an_sql_quote_str(&q, rows[i][2]);
        an_buf_addc(&q, ',');
        an_sql_quote_str(&q, rows[i][3]);
        an_buf_addf(&q, ",%s,%s)", rows[i][4], rows[i][5]);
    }
    free(th_ch(q.data));
    an_buf_reset(&q);
    an_buf_addf(&q,
                "INSERT INTO %s VALUES ('" TENANT_A "', '2024-01-01 10:00:00', 2), "
                "('" TENANT_A "', '2024-01-02 09:00:00', 1), "
                "('b\\'ob\\\\', '2024-01-02 12:00:00', 50), "
                "('b\\'ob\\\\', '2024-01-03 08:00:00', 7)",
                hr_phys);
    free(th_ch(q.data));
    an_buf_free(&q);
}

static void drop_tables(void)
{
    an_buf q = AN_BUF_INIT;
    an_buf_addf(&q, "DROP TABLE IF EXISTS %s", ev_phys);
    free(th_ch(q.data));
    an_buf_reset(&q);
    an_buf_addf(&q, "DROP TABLE IF EXISTS %s", hr_phys);
    free(th_ch(q.data));
    an_buf_free(&q);
    free(base);
    base = NULL;
}

/* --------------------------------------------------------------- helpers */

/* Bind sql for tenant (NULL: all tenants), run it as analytics_reader and
 * return the TSV body; the query must succeed. */
static char *run_bound_opt(const char *sql, const char *tenant, bool no_pushdown, an_buf *bound)
{
    an_sqlcheck_opts o = {0};
    o.tables = tables;
    o.tenant_id = tenant;
    o.all_tenants = tenant == NULL;
    o.no_pushdown = no_pushdown;
    an_buf q = AN_BUF_INIT;
    an_error err = {0};
    an_status st = an_sqlcheck_bind(sql, strlen(sql), &o, &q, &err);
    ck_assert_msg(st == AN_OK, "refused %s: %s", sql, err.message);
    long code = 0;
    char *body = th_ch_as(th_env("ANALYTICS_CLICKHOUSE_READER_USER"),
                          th_env("ANALYTICS_CLICKHOUSE_READER_PASSWORD"), q.data, &code);
    ck_assert_msg(code == 200, "ClickHouse said %ld to\n  %s\n  (bound: %s)\n  %s", code, sql,
                  q.data, body);
    if (bound)
        an_buf_add(bound, q.data, q.len);
    an_buf_free(&q);
    return body;
}

static char *run_bound(const char *sql, const char *tenant)
{
    return run_bound_opt(sql, tenant, false, NULL);
}

/* Sort the lines of a TSV body (UNION ALL has no defined order). */
static int cmp_lines(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static char *sorted_lines(const char *body)
{
    char *copy = strdup(body), *lines[256] = {0};
    size_t n = 0;
    for (char *save = NULL, *l = strtok_r(copy, "\n", &save); l && n < 256;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    qsort(lines, n, sizeof(lines[0]), cmp_lines);
    an_buf b = AN_BUF_INIT;
    for (size_t i = 0; i < n; i++)
        an_buf_addf(&b, "%s\n", lines[i]);
    free(copy);
    return an_buf_detach(&b, NULL);
}

/* Values only tenant B has: none may appear in tenant A's results. */
static void assert_no_tenant_b(const char *sql, const char *body)
{
    static const char *const b_only[] = {"b'ob",    "b\\'ob",     "b1",         "b2",
                                         "b3",      "99",         "c3",         "c9",
                                         "pricing", "2024-01-04", "2024-01-05", NULL};
    for (const char *const *v = b_only; *v; v++)
        ck_assert_msg(strstr(body, *v) == NULL, "tenant B's %s leaked through %s:\n%s", *v, sql,
                      body);
}

/* Tenant A's results of legit_cases[], by hand from the rows above. */
static const char *const legit_expected[] = {
    /* count by day of 'enrolled': 01-01 a1; 01-02 a2, a3 */
    "2024-01-01\t1\n2024-01-02\t2\n",
    /* unique actors a1 a2 a3 */
    "3\n",
    /* paid / enrolled = 1 / 3 */
    "0.3333333333333333\n",
    /* a1 paid; a1 has 2 events (B's a1 payment would make it 4) */
    "a1\t2\n",
    /* (course,c1) rows 1 2 4; (amount,10) row 2; (course,c2) row 3; (page,home) row 5 */
    "amount\t10\t1\ncourse\tc1\t3\ncourse\tc2\t1\npage\thome\t1\n",
    /* UNION ALL, sorted by the test */
    "enrolled\t3\npaid\t1\n",
    /* events of paying actors: a1's two */
    "2\n",
    /* since 2024-01-02: rows 3 4 5 */
    "3\n",
    "5\n",
    "5\n",
    "5\t1\n",
    /* A's hourly rows */
    "2024-01-01 10:00:00\t2\n2024-01-02 09:00:00\t1\n",
    /* last event per actor, latest first */
    "a3\t2024-01-03 08:00:00\na2\t2024-01-02 09:00:00\na1\t2024-01-01 11:00:00\n",
    "1\t[2,4]\n",
    /* per-actor counts 2 1 2 */
    "1.6666666666666667\n",
    /* WITH TOTALS: an empty line, then the totals row */
    "enrolled\t3\npaid\t1\nviewed\t1\n\n\t5\n",
    /* A's events whose hour start is one of A's hourly rows: rows 1 and 3 (B's hours
     * 01-02 12:00 and 01-03 08:00 would add rows 4 and 5) */
    "2\n",
    "acme\t5\n",
    /* self join on actor: a1 2x2, a2 1x1, a3 2x2 pairs, by the left side's name */
    "enrolled\t5\npaid\t2\nviewed\t2\n",
    "5\tenr\n",
};

/* ----------------------------------------------------------------- tests */

START_TEST(test_sqlcheck_clickhouse_legit_templates_return_tenant_a_numbers)
{
    ck_assert_uint_eq(sizeof(legit_expected) / sizeof(legit_expected[0]),
                      sizeof(legit_cases) / sizeof(legit_cases[0]));
    for (size_t i = 0; i < sizeof(legit_cases) / sizeof(legit_cases[0]); i++) {
        const legit_case *c = &legit_cases[i];
        char *body = run_bound(c->sql, TENANT_A);
        if (strstr(c->sql, "UNION ALL")) {
            char *s = sorted_lines(body);
            free(body);
            body = s;
        }
        ck_assert_msg(strcmp(body, legit_expected[i]) == 0,
                      "#%zu (%s): %s\n  got:\n%s\n  want:\n%s", i, c->why, c->sql, body,
                      legit_expected[i]);
        assert_no_tenant_b(c->sql, body);
        free(body);
    }
}
END_TEST

/* Accepted templates that try hard to reach other rows: joins, IN, UNION,
 * aliases that shadow table names, filters on the tenant column. */
static const struct {
    const char *sql;
    const char *want; /* exact TSV for tenant A, or NULL: only "no B" */
} tricky[] = {
    {"SELECT * FROM events", NULL},
    {"SELECT count() FROM events WHERE tenant_id != 'acme'", "0\n"},
    {"SELECT count() FROM events WHERE tenant_id = 'b\\'ob\\\\' OR 1 = 1", "5\n"},
    {"SELECT groupUniqArray(tenant_id) FROM events", "['acme']\n"},
    {"SELECT tenant_id, count() FROM events GROUP BY tenant_id", "acme\t5\n"},
    {"SELECT count() FROM events AS a ALL INNER JOIN events AS b USING actor_id", "9\n"},
    {"SELECT a.actor_id, b.tenant_id FROM events AS a ALL LEFT JOIN events AS b USING actor_id "
     "ORDER BY a.actor_id",
     NULL},
    {"SELECT count() FROM events WHERE actor_id IN (SELECT actor_id FROM events "
     "WHERE event_name = 'paid')",
     "2\n"},
    {"SELECT count() FROM events WHERE actor_id GLOBAL IN (SELECT actor_id FROM events)", "5\n"},
    {"SELECT tenant_id FROM events UNION ALL SELECT tenant_id FROM events_hourly", NULL},
    {"SELECT count() FROM (SELECT tenant_id FROM events UNION ALL SELECT tenant_id FROM "
     "events_hourly)",
     "7\n"},
    {"SELECT count() FROM events AS events_hourly", "5\n"},
    {"SELECT sum(n) FROM events_hourly AS events", "3\n"},
    {"SELECT sum(events.n) FROM events_hourly AS events", "3\n"},
    {"SELECT count() FROM (SELECT * FROM events) AS events", "5\n"},
    {"SELECT x.tenant_id, count() FROM events AS x GROUP BY x.tenant_id", "acme\t5\n"},
    {"SELECT count() AS events FROM events ORDER BY events", "5\n"},
    {"SELECT pv FROM events ARRAY JOIN prop_values AS pv WHERE pv IN ('99', 'c3', 'c9') ", ""},
    {"WITH 'b\\'ob\\\\' AS t SELECT count() FROM events WHERE tenant_id = t OR 1", "5\n"},
    {"SELECT (SELECT count() FROM events) + (SELECT count() FROM events_hourly)", "7\n"},
    {"SELECT count() FROM events WHERE toStartOfHour(ts) IN (SELECT hour FROM events_hourly)",
     "2\n"},
    {"SELECT count() FROM events AS `tenant`", "5\n"},
    {"SELECT count() FROM events -- ; SELECT count() FROM events_hourly\n", "5\n"},
};

START_TEST(test_sqlcheck_clickhouse_tricky_templates_never_show_tenant_b)
{
    for (size_t i = 0; i < sizeof(tricky) / sizeof(tricky[0]); i++) {
        char *body = run_bound(tricky[i].sql, TENANT_A);
        if (strstr(tricky[i].sql, "UNION ALL") && !strstr(tricky[i].sql, "count()")) {
            ck_assert_msg(strcmp(body, "acme\nacme\nacme\nacme\nacme\nacme\nacme\n") == 0,
                          "%s:\n%s", tricky[i].sql, body);
        }
        if (tricky[i].want)
            ck_assert_msg(strcmp(body, tricky[i].want) == 0, "%s\n  got:\n%s\n  want:\n%s",
                          tricky[i].sql, body, tricky[i].want);
        assert_no_tenant_b(tricky[i].sql, body);
        free(body);
    }
    /* SELECT * returns A's five rows, and the tenant column says so. */
    char *body = run_bound("SELECT tenant_id FROM events", TENANT_A);
    ck_assert_str_eq(body, "acme\nacme\nacme\nacme\nacme\n");
    free(body);
}
END_TEST

/* Pushdown (conditions copied into the bound subquery) never changes a
 * result: every template runs with and without it, for tenant A, tenant
 * B and all tenants, and the answers are compared. Some of these are
 * copied, some must not be (an alias shadowing the column, OR, rand). */
static const char *const pushdown_templates[] = {
    "SELECT event_name, count() FROM events WHERE ts >= toDateTime('2024-01-02 00:00:00') AND "
    "event_name != 'viewed' GROUP BY event_name ORDER BY event_name",
    "SELECT toStartOfDay(ts) AS ts, count() FROM events WHERE ts < toDateTime('2024-01-01 "
    "10:30:00') GROUP BY ts ORDER BY ts",
    "SELECT toStartOfDay(ts) ts, count() FROM events WHERE ts < toDateTime('2024-01-01 "
    "10:30:00') GROUP BY ts ORDER BY ts",
    "SELECT count() FROM events AS e WHERE e.actor_id IN ('a1', 'a3') AND "
    "prop_values[indexOf(prop_keys, 'course')] = 'c1'",
    "SELECT count() FROM events WHERE event_name = 'enrolled' OR actor_id = 'a1'",
    "SELECT count() FROM events WHERE ts BETWEEN toDateTime('2024-01-01 00:00:00') AND "
    "toDateTime('2024-01-02 10:00:00') AND event_name = 'enrolled'",
    "SELECT count() FROM events WHERE CASE WHEN event_name = 'paid' AND actor_id = 'a1' THEN 1 "
    "ELSE 0 END = 0 AND ts < toDateTime('2024-01-03 00:00:00')",
    "SELECT count() FROM events WHERE NOT event_name = 'viewed' AND has(prop_keys, 'course')",
    "SELECT sum(n) FROM events_hourly WHERE hour >= toDateTime('2024-01-02 00:00:00')",
    "SELECT count() FROM events WHERE tenant_id = 'b\\'ob\\\\' AND 1 = 1",
    "SELECT count() FROM events WHERE ifNull(toFloat64OrNull(prop_values[indexOf(prop_keys, "
    "'amount')]), 0) > 6 AND event_name = 'paid'",
    "SELECT actor_id, count() AS n FROM events WHERE event_name IN ('paid', 'viewed') GROUP BY "
    "actor_id ORDER BY actor_id",
    "SELECT count() FROM events WHERE actor_id IN (SELECT actor_id FROM events WHERE "
    "event_name = 'paid') AND event_name = 'enrolled'",
    "SELECT (SELECT count() FROM events WHERE event_name = 'paid') / (SELECT count() FROM "
    "events WHERE event_name = 'enrolled')",
};

START_TEST(test_sqlcheck_clickhouse_pushdown_never_changes_a_result)
{
    static const char *const tenants[] = {TENANT_A, TENANT_B, NULL};
    int copied = 0;
    for (size_t i = 0; i < sizeof(pushdown_templates) / sizeof(pushdown_templates[0]); i++) {
        for (size_t t = 0; t < 3; t++) {
            const char *sql = pushdown_templates[i];
            an_buf with = AN_BUF_INIT, without = AN_BUF_INIT;
            char *a = run_bound_opt(sql, tenants[t], false, &with);
            char *b = run_bound_opt(sql, tenants[t], true, &without);
            ck_assert_msg(strcmp(a, b) == 0, "%s (tenant %s)\n  with pushdown:\n%s  without:\n%s",
                          sql, tenants[t] ? tenants[t] : "(all)", a, b);
            if (t == 0 && with.len != without.len)
                copied++;
            free(a);
            free(b);
            an_buf_free(&with);
            an_buf_free(&without);
        }
    }
    /* the list exercises the copy: most of its templates are copied */
    ck_assert_int_ge(copied, 10);
    /* In the shadowing templates WHERE reads the alias (the day), not the
     * column: both of tenant A's events of 2024-01-01 count, also the one
     * at 11:00 that a copied `ts < 10:30` would have dropped. */
    for (size_t i = 1; i <= 2; i++) {
        char *shadow = run_bound(pushdown_templates[i], TENANT_A);
        ck_assert_str_eq(shadow, "2024-01-01 00:00:00\t2\n");
        free(shadow);
    }
}
END_TEST

START_TEST(test_sqlcheck_clickhouse_binds_a_tenant_id_that_needs_quoting)
{
    char *body = run_bound("SELECT count(), uniqExact(actor_id) FROM events", TENANT_B);
    ck_assert_str_eq(body, "7\t5\n");
    free(body);
    body = run_bound("SELECT sum(n) FROM events_hourly", TENANT_B);
    ck_assert_str_eq(body, "57\n");
    free(body);
    /* A tenant that does not exist sees nothing, whatever the template. */
    body = run_bound("SELECT count() FROM events", "acme' OR '1'='1");
    ck_assert_str_eq(body, "0\n");
    free(body);
}
END_TEST

START_TEST(test_sqlcheck_clickhouse_all_tenants_reads_every_tenant_of_allowed_tables)
{
    char *body = run_bound("SELECT tenant_id, count() FROM events GROUP BY tenant_id "
                           "ORDER BY tenant_id",
                           NULL);
    ck_assert_str_eq(body, "acme\t5\nb\\'ob\\\\\t7\n");
    free(body);
}
END_TEST

START_TEST(test_sqlcheck_clickhouse_quote_round_trips_every_byte)
{
    char in[512];
    for (int i = 0; i < 256; i++) {
        in[2 * i] = (char)i;
        in[2 * i + 1] = (char)(255 - i);
    }
    an_buf q = AN_BUF_INIT;
    an_buf_adds(&q, "SELECT hex(");
    an_sql_quote(&q, in, sizeof(in));
    an_buf_adds(&q, "), length(");
    an_sql_quote(&q, in, sizeof(in));
    an_buf_adds(&q, ")");
    long code = 0;
    char *body = th_ch_as(th_env("ANALYTICS_CLICKHOUSE_READER_USER"),
                          th_env("ANALYTICS_CLICKHOUSE_READER_PASSWORD"), q.data, &code);
    ck_assert_msg(code == 200, "%s", body);
    an_buf want = AN_BUF_INIT;
    for (size_t i = 0; i < sizeof(in); i++)
        an_buf_addf(&want, "%02X", (unsigned char)in[i]);
    an_buf_adds(&want, "\t512\n");
    ck_assert_str_eq(body, want.data);
    free(body);
    an_buf_free(&want);
    an_buf_free(&q);

    /* Numbers as the server reads them. */
    an_buf_adds(&q, "SELECT 3-");
    an_sql_int64(&q, -5);
    an_buf_adds(&q, ", toTypeName(");
    an_sql_double(&q, 2.0, NULL);
    an_buf_adds(&q, "), ");
    an_sql_double(&q, -0.1, NULL);
    body = th_ch(q.data);
    ck_assert_str_eq(body, "8\tFloat64\t-0.1\n");
    free(body);
    an_buf_free(&q);
}
END_TEST

/* The refused templates are real attacks: ClickHouse's own parser takes
 * them (they fail later if at all, e.g. on an unknown table). */
START_TEST(test_sqlcheck_clickhouse_parser_accepts_the_refused_templates)
{
    int sent = 0, ran = 0;
    for (size_t i = 0; i < sizeof(hostile_cases) / sizeof(hostile_cases[0]); i++) {
        const hostile_case *c = &hostile_cases[i];
        if (c->ch != CH_PARSES)
            continue;
        long code = 0;
        char *body = th_ch_as(th_env("ANALYTICS_CLICKHOUSE_ADMIN_USER"),
                              th_env("ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD"), c->sql, &code);
        ck_assert_msg(strstr(body, "Syntax error") == NULL && strstr(body, "Code: 62") == NULL,
                      "#%zu (%s) is not even valid SQL for ClickHouse: %s\n%s", i, c->why, c->sql,
                      body);
        sent++;
        ran += code == 200;
        free(body);
    }
    ck_assert_int_ge(sent, 60);
    /* Some run to completion against the real server: system tables,
     * SETTINGS, FORMAT, table functions. */
    ck_assert_int_ge(ran, 10);
}
END_TEST

/* FINAL moves into the bound subquery and works there: on the migrated
 * analytics.events (a ReplacingMergeTree), two copies of one event of a
 * fresh tenant count once with FINAL (twice without, until a merge). */
START_TEST(test_sqlcheck_clickhouse_final_on_the_migrated_events_table)
{
    char *tenant = th_unique("tenant");
    char *other = th_unique("tenant");
    an_buf q = AN_BUF_INIT;
    an_buf_adds(&q, "INSERT INTO analytics.events (tenant_id, event_id, event_name, occurred_at, "
                    "actor_id) VALUES ");
    const char *rows[][2] = {{tenant, "e1"}, {tenant, "e1"}, {tenant, "e2"}, {other, "e1"}};
    for (int i = 0; i < 4; i++) {
        an_buf_adds(&q, i ? ", (" : "(");
        an_sql_quote_str(&q, rows[i][0]);
        an_buf_adds(&q, ", ");
        an_sql_quote_str(&q, rows[i][1]);
        an_buf_adds(&q, ", 'course.enrolled', '2024-03-01 10:00:00', 'a1')");
    }
    /* Two inserts, so the copies sit in different parts until a merge. */
    free(th_ch(q.data));
    free(th_ch(q.data));
    an_buf_free(&q);

    static const an_sqlcheck_table real[] = {
        {"events", "analytics.events", "tenant_id"},
        {NULL, NULL, NULL},
    };
    const char *with_final = "SELECT count(), uniqExact(event_id) FROM events FINAL";
    const char *without = "SELECT count() FROM events AS e WHERE e.event_name = 'course.enrolled'";
    an_sqlcheck_opts o = {0};
    o.tables = real;
    o.tenant_id = tenant;
    an_buf b1 = AN_BUF_INIT, b2 = AN_BUF_INIT;
    an_error err;
    ck_assert_int_eq(an_sqlcheck_bind(with_final, strlen(with_final), &o, &b1, &err), AN_OK);
    ck_assert_int_eq(an_sqlcheck_bind(without, strlen(without), &o, &b2, &err), AN_OK);
    ck_assert_ptr_nonnull(strstr(b1.data, "FROM analytics.events FINAL WHERE"));
    long code = 0;
    char *body = th_ch_as(th_env("ANALYTICS_CLICKHOUSE_READER_USER"),
                          th_env("ANALYTICS_CLICKHOUSE_READER_PASSWORD"), b1.data, &code);
    ck_assert_msg(code == 200, "%s: %s", b1.data, body);
    ck_assert_str_eq(body, "2\t2\n");
    free(body);
    body = th_ch_as(th_env("ANALYTICS_CLICKHOUSE_READER_USER"),
                    th_env("ANALYTICS_CLICKHOUSE_READER_PASSWORD"), b2.data, &code);
    ck_assert_msg(code == 200, "%s: %s", b2.data, body);
    /* 6 before a merge, fewer after one; never the other tenant's 2 more. */
    long n = strtol(body, NULL, 10);
    ck_assert_msg(n >= 2 && n <= 6, "%s -> %s", b2.data, body);
    free(body);
    an_buf_free(&b1);
    an_buf_free(&b2);
    free(tenant);
    free(other);
}
END_TEST

Suite *sqlcheck_clickhouse_suite(void)
{
    Suite *s = suite_create("sqlcheck_clickhouse");
    TCase *tc = tcase_create("sqlcheck_clickhouse");
    tcase_set_timeout(tc, 120);
    tcase_add_unchecked_fixture(tc, create_tables, drop_tables);
    tcase_add_test(tc, test_sqlcheck_clickhouse_legit_templates_return_tenant_a_numbers);
    tcase_add_test(tc, test_sqlcheck_clickhouse_tricky_templates_never_show_tenant_b);
    tcase_add_test(tc, test_sqlcheck_clickhouse_binds_a_tenant_id_that_needs_quoting);
    tcase_add_test(tc, test_sqlcheck_clickhouse_pushdown_never_changes_a_result);
    tcase_add_test(tc, test_sqlcheck_clickhouse_all_tenants_reads_every_tenant_of_allowed_tables);
    tcase_add_test(tc, test_sqlcheck_clickhouse_quote_round_trips_every_byte);
    tcase_add_test(tc, test_sqlcheck_clickhouse_parser_accepts_the_refused_templates);
    tcase_add_test(tc, test_sqlcheck_clickhouse_final_on_the_migrated_events_table);
    suite_add_tcase(s, tc);
    return s;
}
