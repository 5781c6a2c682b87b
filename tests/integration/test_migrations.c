/*
 * Integration tests of the ClickHouse schema (deploy/clickhouse/migrations)
 * and its runner (deploy/clickhouse/migrate.sh), against the local stack's
 * clickhouse-server, after stack.sh start applied the migrations.
 *
 * Runs from the repository root (deploy/local/test.sh does): the runner is
 * invoked by its relative path.
 */
#include "tests/harness.h"

#include <check.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIGRATE "deploy/clickhouse/migrate.sh"

/* ------------------------------------------------------------------------ */
/* helpers */

static char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));
static char *fmt(const char *f, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, f);
    int n = vasprintf(&s, f, ap);
    va_end(ap);
    ck_assert_msg(n >= 0, "out of memory");
    return s;
}

static char *as_reader(const char *sql, long *code)
{
    return th_ch_as(th_env("ANALYTICS_CLICKHOUSE_READER_USER"),
                    th_env("ANALYTICS_CLICKHOUSE_READER_PASSWORD"), sql, code);
}

static char *as_audit(const char *sql, long *code)
{
    return th_ch_as(th_env("ANALYTICS_CLICKHOUSE_AUDIT_USER"),
                    th_env("ANALYTICS_CLICKHOUSE_AUDIT_PASSWORD"), sql, code);
}

static char *as_writer(const char *sql, long *code)
{
    return th_ch_as(th_env("ANALYTICS_CLICKHOUSE_USER"), th_env("ANALYTICS_CLICKHOUSE_PASSWORD"),
                    sql, code);
}

/* Runs SQL as the writer and fails the test unless ClickHouse said 200. */
static void writer_ok(const char *sql)
{
    long code = 0;
    char *out = as_writer(sql, &code);
    ck_assert_msg(code == 200, "writer got %ld for %s: %s", code, sql, out);
    free(out);
}

static void write_file(const char *path, const char *content)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    fputs(content, f);
    fclose(f);
}

/* Number of migration files in the repository. */
static long count_migration_files(void)
{
    char *out = th_run("ls deploy/clickhouse/migrations/[0-9][0-9][0-9][0-9]_*.sql | wc -l", NULL);
    long n = strtol(out, NULL, 10);
    free(out);
    ck_assert_msg(n >= 2, "expected the migration files under deploy/clickhouse/migrations");
    return n;
}

/* ------------------------------------------------------------------------ */
/* the schema */

typedef struct {
    const char *table;   /* database.table */
    const char *columns; /* "name Type, name Type, ..." that must exist */
} expected_table;

static const expected_table expected[] = {
    {"analytics.events",
     "tenant_id String, event_id String, event_name String, occurred_at DateTime, "
     "occurred_ms UInt16, ingested_at DateTime, actor_type String, actor_id String, "
     "actor_key_id String, correlation_id String, properties String, "
     "prop_keys Array(String), prop_values Array(String)"},
    {"analytics_audit.events", "tenant_id String, event_id String, event_name String, "
                               "subject String, occurred_at DateTime, occurred_ms UInt16, "
                               "received_at DateTime, stream_seq UInt64, payload String"},
    {"analytics_audit.dead_letters",
     "received_at DateTime, received_ms UInt16, subject String, stream_seq UInt64, "
     "reason String, detail String, tenant_id String, event_id String, headers String, "
     "raw String"},
    {"analytics.schema_migrations", "version UInt32, name String, checksum String, "
                                    "statements UInt32, applied_at DateTime"},
    {"analytics.metric_definitions",
     "tenant_id String, id String, name String, spec String, created_at DateTime, "
     "updated_at DateTime, version UInt64, deleted UInt8"},
    {"analytics.metric_values",
     "tenant_id String, metric_id String, granularity String, bucket DateTime, "
     "dimensions String, value Float64, computed_at DateTime, version UInt64, deleted UInt8"},
    {"analytics.dashboards", "tenant_id String, id String, name String, owner_id String, "
                             "widgets String, acl String, created_at DateTime, "
                             "updated_at DateTime, version UInt64, deleted UInt8"},
    {"analytics.export_jobs",
     "tenant_id String, id String, requested_by String, format String, status String, "
     "spec String, attempts UInt32, row_count UInt64, file_path String, error String, "
     "created_at DateTime, updated_at DateTime, version UInt64, deleted UInt8"},
    {"analytics.report_definitions",
     "tenant_id String, id String, name String, schedule String, format String, "
     "spec String, created_at DateTime, updated_at DateTime, version UInt64, deleted UInt8"},
    {"analytics.report_runs",
     "tenant_id String, report_id String, id String, scheduled_for DateTime, status String, "
     "file_path String, created_at DateTime, updated_at DateTime, version UInt64, "
     "deleted UInt8"},
    {"analytics.cohorts", "tenant_id String, id String, name String, spec String, "
                          "last_evaluation_id String, member_count UInt64, "
                          "created_at DateTime, updated_at DateTime, version UInt64, "
                          "deleted UInt8"},
    {"analytics.cohort_members", "tenant_id String, cohort_id String, evaluation_id String, "
                                 "actor_id String, evaluated_at DateTime, version UInt64, "
                                 "deleted UInt8"},
    {"analytics.alert_rules", "tenant_id String, id String, name String, metric_id String, "
                              "enabled UInt8, spec String, created_at DateTime, "
                              "updated_at DateTime, version UInt64, deleted UInt8"},
    {"analytics.alert_events",
     "tenant_id String, rule_id String, id String, metric_id String, state String, "
     "bucket DateTime, value Float64, details String, triggered_at DateTime, "
     "created_at DateTime, updated_at DateTime, version UInt64, deleted UInt8"},
    {NULL, NULL},
};

START_TEST(test_migrations_create_both_databases_and_every_table_with_its_columns)
{
    char *dbs = th_ch("SELECT name FROM system.databases WHERE name LIKE 'analytics%' "
                      "ORDER BY name");
    ck_assert_str_eq(dbs, "analytics\nanalytics_audit\n");
    free(dbs);

    /* "\ndb.table.column Type\n" lines of both databases */
    char *cols = th_ch("SELECT concat(database, '.', table, '.', name, ' ', type) "
                       "FROM system.columns WHERE database IN ('analytics', 'analytics_audit')");
    char *all = fmt("\n%s", cols);
    free(cols);
    int checked = 0;
    for (const expected_table *t = expected; t->table; t++) {
        char *list = strdup(t->columns);
        char *save = NULL;
        for (char *c = strtok_r(list, ",", &save); c; c = strtok_r(NULL, ",", &save)) {
            while (*c == ' ')
                c++;
            char *line = fmt("\n%s.%s\n", t->table, c);
            ck_assert_msg(strstr(all, line) != NULL, "missing column %s.%s", t->table, c);
            free(line);
            checked++;
        }
        free(list);
    }
    ck_assert_int_gt(checked, 100);
    free(all);
}
END_TEST

START_TEST(test_event_tables_dedup_key_and_partition_come_from_the_envelope)
{
    /* Copies of one redelivered event must meet in one partition with one key. */
    char *hot = th_ch("SELECT engine, partition_key, sorting_key FROM system.tables "
                      "WHERE database = 'analytics' AND name = 'events'");
    ck_assert_str_eq(hot, "ReplacingMergeTree\ttoYYYYMM(occurred_at)\t"
                          "tenant_id, event_name, occurred_at, event_id\n");
    free(hot);
    char *audit = th_ch("SELECT engine, partition_key, sorting_key FROM system.tables "
                        "WHERE database = 'analytics_audit' AND name = 'events'");
    ck_assert_str_eq(
        audit, "ReplacingMergeTree\ttoYYYYMM(occurred_at)\ttenant_id, occurred_at, event_id\n");
    free(audit);
}
END_TEST

START_TEST(test_record_tables_replace_on_version_and_start_their_key_with_tenant)
{
    static const char *records[] = {
        "metric_definitions", "metric_values", "dashboards", "export_jobs",
        "report_definitions", "report_runs",   "cohorts",    "cohort_members",
        "alert_rules",        "alert_events",  NULL};
    for (const char **r = records; *r; r++) {
        char *sql = fmt("SELECT engine_full, sorting_key FROM system.tables "
                        "WHERE database = 'analytics' AND name = '%s'",
                        *r);
        char *out = th_ch(sql);
        ck_assert_msg(strncmp(out, "ReplacingMergeTree(version)", 27) == 0, "%s engine: %s", *r,
                      out);
        ck_assert_msg(strstr(out, "\ttenant_id, ") != NULL, "%s key must start with tenant_id: %s",
                      *r, out);
        free(out);
        free(sql);
    }
}
END_TEST

/* ------------------------------------------------------------------------ */
/* the runner */

#define LEDGER_ROWS                                                                                \
    "SELECT version, name, checksum, statements, applied_at, duration_ms, applied_by "             \
    "FROM analytics.schema_migrations ORDER BY version, applied_at"

START_TEST(test_migrate_again_applies_nothing_and_changes_nothing)
{
    long files = count_migration_files();
    ck_assert_int_eq(th_ch_count("SELECT count() FROM analytics.schema_migrations FINAL"), files);
    char *rows_before = th_ch(LEDGER_ROWS);
    char *cols_before = th_ch("SELECT database, table, name, type FROM system.columns "
                              "WHERE database LIKE 'analytics%' ORDER BY database, table, name");

    int rc = -1;
    char *out = th_run(MIGRATE " 2>&1", &rc);
    ck_assert_msg(rc == 0, "migrate.sh exited %d: %s", rc, out);
    ck_assert_msg(strstr(out, "nothing to do") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "applied 0") == NULL, "applied something again: %s", out);
    free(out);

    char *rows_after = th_ch(LEDGER_ROWS);
    char *cols_after = th_ch("SELECT database, table, name, type FROM system.columns "
                             "WHERE database LIKE 'analytics%' ORDER BY database, table, name");
    ck_assert_str_eq(rows_after, rows_before);
    ck_assert_str_eq(cols_after, cols_before);

    out = th_run(MIGRATE " status 2>&1", &rc);
    ck_assert_msg(rc == 0, "status exited %d: %s", rc, out);
    ck_assert_msg(strstr(out, "applied  0001_events") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "pending") == NULL && strstr(out, "CHANGED") == NULL, "%s", out);
    free(out);
    free(rows_before);
    free(rows_after);
    free(cols_before);
    free(cols_after);
}
END_TEST

START_TEST(test_migrate_refuses_to_run_when_an_applied_file_changed)
{
    char dir[] = "/tmp/an-mig-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *cmd = fmt("cp deploy/clickhouse/migrations/*.sql %s/ && "
                    "printf -- '-- an edit after it was applied\\n' >> %s/0001_events.sql",
                    dir, dir);
    int rc = -1;
    free(th_run(cmd, &rc));
    free(cmd);
    ck_assert_int_eq(rc, 0);
    char *rows_before = th_ch(LEDGER_ROWS);

    cmd = fmt("ANALYTICS_MIGRATIONS_DIR=%s " MIGRATE " 2>&1", dir);
    char *out = th_run(cmd, &rc);
    free(cmd);
    ck_assert_msg(rc == 1, "migrate.sh exited %d: %s", rc, out);
    ck_assert_msg(strstr(out, "0001_events.sql was applied with checksum") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "refusing to run") != NULL, "%s", out);
    free(out);

    cmd = fmt("ANALYTICS_MIGRATIONS_DIR=%s " MIGRATE " status 2>&1", dir);
    out = th_run(cmd, &rc);
    free(cmd);
    ck_assert_msg(rc == 1, "status exited %d: %s", rc, out);
    ck_assert_msg(strstr(out, "CHANGED  0001_events") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "applied  0002_records") != NULL, "%s", out);
    free(out);

    char *rows_after = th_ch(LEDGER_ROWS);
    ck_assert_str_eq(rows_after, rows_before);
    free(rows_before);
    free(rows_after);
    cmd = fmt("rm -rf %s", dir);
    free(th_run(cmd, NULL));
    free(cmd);
}
END_TEST

/* With a bookkeeping table of its own, the runner starts from nothing:
 * applies every file in order, then only a new one, never a failed one. */
START_TEST(test_migrate_applies_only_missing_migrations_in_order_and_never_a_failed_one)
{
    long files = count_migration_files();
    char dir[] = "/tmp/an-mig-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *ledger = th_unique("ledger");
    char *made = th_unique("made_by_test");
    char *cmd = fmt("cp deploy/clickhouse/migrations/*.sql %s/", dir);
    int rc = -1;
    free(th_run(cmd, &rc));
    free(cmd);
    ck_assert_int_eq(rc, 0);
    char *env =
        fmt("ANALYTICS_MIGRATIONS_DIR=%s ANALYTICS_MIGRATIONS_TABLE=analytics.%s", dir, ledger);

    /* nothing recorded yet: all pending */
    cmd = fmt("%s " MIGRATE " status 2>&1 | grep -c '^pending '", env);
    char *out = th_run(cmd, &rc);
    free(cmd);
    ck_assert_int_eq(strtol(out, NULL, 10), files);
    free(out);

    /* all applied, in file order (the statements are idempotent, so this is
     * harmless on the already migrated database) */
    cmd = fmt("%s " MIGRATE " 2>&1", env);
    out = th_run(cmd, &rc);
    ck_assert_msg(rc == 0, "migrate.sh exited %d: %s", rc, out);
    char *first = strstr(out, "applied 0001_events");
    char *second = strstr(out, "applied 0002_records");
    ck_assert_msg(first && second && first < second, "%s", out);
    free(out);
    char *sql = fmt("SELECT count() FROM analytics.%s FINAL", ledger);
    ck_assert_int_eq(th_ch_count(sql), files);

    /* a new migration: only it is applied */
    char *path = fmt("%s/9000_%s.sql", dir, made);
    char *body = fmt("-- made by test_migrations\n"
                     "CREATE TABLE IF NOT EXISTS analytics.%s (a String)\n"
                     "ENGINE = MergeTree() ORDER BY a;\n",
                     made);
    write_file(path, body);
    free(path);
    free(body);
    out = th_run(cmd, &rc);
    ck_assert_msg(rc == 0, "migrate.sh exited %d: %s", rc, out);
    ck_assert_msg(strstr(out, "applied 9000_") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "applied 0001") == NULL, "%s", out);
    free(out);
    ck_assert_int_eq(th_ch_count(sql), files + 1);

    /* ALTER ADD COLUMN has no IF NOT EXISTS on 18.16: @ignore-error makes a
     * second, identical ALTER count as done */
    path = fmt("%s/9001_add_b.sql", dir);
    body = fmt("ALTER TABLE analytics.%s ADD COLUMN b UInt8;\n"
               "-- @ignore-error 44\n"
               "ALTER TABLE analytics.%s ADD COLUMN b UInt8;\n",
               made, made);
    write_file(path, body);
    free(path);
    free(body);
    out = th_run(cmd, &rc);
    ck_assert_msg(rc == 0, "migrate.sh exited %d: %s", rc, out);
    ck_assert_msg(strstr(out, "ignored error 44") != NULL, "%s", out);
    free(out);
    char *colsql = fmt("SELECT count() FROM system.columns WHERE database = 'analytics' "
                       "AND table = '%s' AND name = 'b'",
                       made);
    ck_assert_int_eq(th_ch_count(colsql), 1);
    free(colsql);

    /* a failing statement stops the run and leaves the migration pending */
    path = fmt("%s/9002_fails.sql", dir);
    write_file(path, "SELECT 1;\nSELECT throwIf(1);\n");
    free(path);
    out = th_run(cmd, &rc);
    ck_assert_msg(rc == 1, "migrate.sh exited %d: %s", rc, out);
    ck_assert_msg(strstr(out, "9002_fails: statement 2 of 2 failed") != NULL, "%s", out);
    free(out);
    ck_assert_int_eq(th_ch_count(sql), files + 2);
    free(cmd);
    cmd = fmt("%s " MIGRATE " status 2>&1", env);
    out = th_run(cmd, &rc);
    ck_assert_msg(strstr(out, "pending  9002_fails") != NULL, "%s", out);
    ck_assert_msg(strstr(out, "applied  9001_add_b") != NULL, "%s", out);
    free(out);

    free(sql);
    sql = fmt("DROP TABLE analytics.%s", made);
    free(th_ch(sql));
    free(sql);
    sql = fmt("DROP TABLE analytics.%s", ledger);
    free(th_ch(sql));
    free(sql);
    free(cmd);
    cmd = fmt("rm -rf %s", dir);
    free(th_run(cmd, NULL));
    free(cmd);
    free(env);
    free(ledger);
    free(made);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* users and tiers */

/* One hot-tier row of tenant `tenant`, event `id`, occurred at `at`. */
static char *hot_insert(const char *tenant, const char *id, const char *at)
{
    return fmt("INSERT INTO analytics.events (tenant_id, event_id, event_name, occurred_at, "
               "occurred_ms, actor_type, actor_id, actor_key_id, correlation_id, properties, "
               "prop_keys, prop_values) VALUES ('%s', '%s', 'course.enrolled', '%s', 250, "
               "'user', 'a1b2c3', 'k1', 'corr-1', '{\"course\":{\"id\":\"c42\"}}', "
               "['course.id'], ['c42'])",
               tenant, id, at);
}

START_TEST(test_reader_reads_hot_tier_only_and_cannot_write_or_use_table_functions)
{
    char *tenant = th_unique("tenant");
    long code = 0;

    char *out = as_reader("SELECT count() FROM analytics.events", &code);
    ck_assert_msg(code == 200, "reader on analytics.events: %ld %s", code, out);
    free(out);

    out = as_reader("SELECT count() FROM analytics_audit.events", &code);
    ck_assert_msg(code != 200 && strstr(out, "analytics_audit") != NULL,
                  "reader on the audit tier: %ld %s", code, out);
    free(out);

    char *ins = hot_insert(tenant, "e1", "2015-02-01 00:00:00");
    out = as_reader(ins, &code);
    ck_assert_msg(code != 200 && strstr(out, "readonly") != NULL, "reader insert: %ld %s", code,
                  out);
    free(out);
    free(ins);
    char *sql = fmt("SELECT count() FROM analytics.events WHERE tenant_id = '%s'", tenant);
    ck_assert_int_eq(th_ch_count(sql), 0);
    free(sql);

    out = as_reader("SELECT * FROM numbers(3)", &code);
    ck_assert_msg(code != 200 && strstr(out, "Table functions are forbidden") != NULL,
                  "reader table function: %ld %s", code, out);
    free(out);

    out =
        as_reader("SELECT count() FROM analytics.events SETTINGS max_execution_time = 3600", &code);
    ck_assert_msg(code != 200 && strstr(out, "readonly") != NULL, "reader setting: %ld %s", code,
                  out);
    free(out);
    free(tenant);
}
END_TEST

START_TEST(test_audit_user_reads_audit_tier_only)
{
    long code = 0;
    char *out = as_audit("SELECT count() FROM analytics_audit.events", &code);
    ck_assert_msg(code == 200, "audit on its tier: %ld %s", code, out);
    free(out);
    out = as_audit("SELECT count() FROM analytics_audit.dead_letters", &code);
    ck_assert_msg(code == 200, "audit on dead letters: %ld %s", code, out);
    free(out);
    out = as_audit("SELECT count() FROM analytics.events", &code);
    ck_assert_msg(code != 200 && strstr(out, "analytics") != NULL, "audit on hot tier: %ld %s",
                  code, out);
    free(out);
    out = as_audit("SELECT count() FROM analytics.dashboards", &code);
    ck_assert_msg(code != 200, "audit on records: %ld %s", code, out);
    free(out);
}
END_TEST

START_TEST(test_writer_inserts_into_both_tiers_and_each_reader_sees_its_own)
{
    char *tenant = th_unique("tenant");
    char *sql = hot_insert(tenant, "evt-1", "2015-03-04 05:06:07");
    writer_ok(sql);
    free(sql);
    sql = fmt("INSERT INTO analytics_audit.events (tenant_id, event_id, event_name, subject, "
              "occurred_at, occurred_ms, received_at, stream_seq, payload) VALUES "
              "('%s', 'evt-1', 'course.enrolled', 'events.courses.enrolled', "
              "'2015-03-04 05:06:07', 250, now(), 17, "
              "'{\"id\":\"evt-1\",\"actor\":{\"id\":\"alice@example.com\"}}')",
              tenant);
    writer_ok(sql);
    free(sql);
    sql = fmt("INSERT INTO analytics_audit.dead_letters (received_at, received_ms, subject, "
              "stream_seq, reason, detail, tenant_id, event_id, headers, raw) VALUES "
              "(now(), 5, 'events.x', 18, 'invalid_json', 'unexpected end', '%s', '', '{}', "
              "'{\"id\":')",
              tenant);
    writer_ok(sql);
    free(sql);

    long code = 0;
    sql = fmt("SELECT event_id, actor_id, prop_values[indexOf(prop_keys, 'course.id')], "
              "toUInt64(occurred_at) * 1000 + occurred_ms FROM analytics.events "
              "WHERE tenant_id = '%s'",
              tenant);
    char *out = as_reader(sql, &code);
    ck_assert_msg(code == 200, "%s", out);
    ck_assert_str_eq(out, "evt-1\ta1b2c3\tc42\t1425445567250\n");
    free(out);
    free(sql);

    sql = fmt("SELECT visitParamExtractString(visitParamExtractRaw(payload, 'actor'), 'id') "
              "FROM analytics_audit.events WHERE tenant_id = '%s'",
              tenant);
    out = as_audit(sql, &code);
    ck_assert_msg(code == 200, "%s", out);
    ck_assert_str_eq(out, "alice@example.com\n");
    free(out);
    free(sql);

    sql =
        fmt("SELECT reason, raw FROM analytics_audit.dead_letters WHERE tenant_id = '%s'", tenant);
    out = as_audit(sql, &code);
    ck_assert_msg(code == 200, "%s", out);
    ck_assert_str_eq(out, "invalid_json\t{\"id\":\n");
    free(out);
    free(sql);
    free(tenant);
}
END_TEST

START_TEST(test_redelivered_event_counts_once_with_final_and_after_merge)
{
    char *tenant = th_unique("tenant");
    /* the same event written twice, as after a crash between insert and ack;
     * occurred in a month no other test writes to */
    char *sql = hot_insert(tenant, "evt-dup", "2014-06-15 12:00:00");
    writer_ok(sql);
    writer_ok(sql);
    free(sql);
    sql = hot_insert(tenant, "evt-other", "2014-06-15 12:00:01");
    writer_ok(sql);
    free(sql);

    sql = fmt("SELECT count() FROM analytics.events FINAL WHERE tenant_id = '%s'", tenant);
    ck_assert_int_eq(th_ch_count(sql), 2);
    free(sql);
    sql = fmt("SELECT uniqExact(event_id) FROM analytics.events WHERE tenant_id = '%s'", tenant);
    ck_assert_int_eq(th_ch_count(sql), 2);
    free(sql);

    free(th_ch("OPTIMIZE TABLE analytics.events PARTITION 201406 FINAL"));
    sql = fmt("SELECT count() FROM analytics.events WHERE tenant_id = '%s'", tenant);
    ck_assert_int_eq(th_ch_count(sql), 2);
    free(sql);
    free(tenant);
}
END_TEST

START_TEST(test_record_final_returns_latest_version_and_hides_deleted)
{
    char *tenant = th_unique("tenant");
    static const char *cols = "INSERT INTO analytics.dashboards (tenant_id, id, name, description, "
                              "owner_id, widgets, acl, created_at, updated_at, version, deleted) ";
    /* one insert per version: separate parts, so FINAL (not a merge) must pick */
    const char *rows[] = {
        "('%s', 'A', 'first', '', 'u1', '[]', '{}', now(), now(), 1, 0)",
        "('%s', 'A', 'second', '', 'u1', '[{\"metric\":\"m1\"}]', '{}', now(), now(), 2, 0)",
        "('%s', 'B', 'doomed', '', 'u1', '[]', '{}', now(), now(), 1, 0)",
        "('%s', 'B', 'doomed', '', 'u1', '[]', '{}', now(), now(), 2, 1)",
        /* a late writer with an older version does not win */
        "('%s', 'A', 'stale', '', 'u1', '[]', '{}', now(), now(), 1, 0)",
        NULL,
    };
    for (const char **r = rows; *r; r++) {
        char *values = fmt(*r, tenant);
        char *sql = fmt("%sVALUES %s", cols, values);
        writer_ok(sql);
        free(sql);
        free(values);
    }

    long code = 0;
    char *sql = fmt("SELECT id, name, widgets FROM analytics.dashboards FINAL "
                    "WHERE tenant_id = '%s' AND deleted = 0 ORDER BY id",
                    tenant);
    char *out = as_reader(sql, &code);
    ck_assert_msg(code == 200, "%s", out);
    ck_assert_str_eq(out, "A\tsecond\t[{\"metric\":\"m1\"}]\n");
    free(out);
    free(sql);

    /* metric values: recomputing a bucket replaces its value */
    sql = fmt("INSERT INTO analytics.metric_values (tenant_id, metric_id, granularity, bucket, "
              "dimensions, value, computed_at, version) VALUES "
              "('%s', 'm1', 'hour', '2015-01-01 10:00:00', '{}', 3, now(), 1)",
              tenant);
    writer_ok(sql);
    free(sql);
    sql = fmt("INSERT INTO analytics.metric_values (tenant_id, metric_id, granularity, bucket, "
              "dimensions, value, computed_at, version) VALUES "
              "('%s', 'm1', 'hour', '2015-01-01 10:00:00', '{}', 5, now(), 2)",
              tenant);
    writer_ok(sql);
    free(sql);
    sql = fmt("SELECT count(), sum(value) FROM analytics.metric_values FINAL "
              "WHERE tenant_id = '%s' AND metric_id = 'm1' AND deleted = 0",
              tenant);
    out = as_reader(sql, &code);
    ck_assert_msg(code == 200, "%s", out);
    ck_assert_str_eq(out, "1\t5\n");
    free(out);
    free(sql);
    free(tenant);
}
END_TEST

Suite *migrations_suite(void)
{
    Suite *s = suite_create("migrations");
    TCase *schema = tcase_create("schema");
    tcase_set_timeout(schema, 60);
    tcase_add_test(schema, test_migrations_create_both_databases_and_every_table_with_its_columns);
    tcase_add_test(schema, test_event_tables_dedup_key_and_partition_come_from_the_envelope);
    tcase_add_test(schema, test_record_tables_replace_on_version_and_start_their_key_with_tenant);
    suite_add_tcase(s, schema);

    TCase *runner = tcase_create("runner");
    tcase_set_timeout(runner, 120);
    tcase_add_test(runner, test_migrate_again_applies_nothing_and_changes_nothing);
    tcase_add_test(runner, test_migrate_refuses_to_run_when_an_applied_file_changed);
    tcase_add_test(runner,
                   test_migrate_applies_only_missing_migrations_in_order_and_never_a_failed_one);
    suite_add_tcase(s, runner);

    TCase *access = tcase_create("access");
    tcase_set_timeout(access, 60);
    tcase_add_test(access, test_reader_reads_hot_tier_only_and_cannot_write_or_use_table_functions);
    tcase_add_test(access, test_audit_user_reads_audit_tier_only);
    tcase_add_test(access, test_writer_inserts_into_both_tiers_and_each_reader_sees_its_own);
    tcase_add_test(access, test_redelivered_event_counts_once_with_final_and_after_merge);
    tcase_add_test(access, test_record_final_returns_latest_version_and_hides_deleted);
    suite_add_tcase(s, access);
    return s;
}
