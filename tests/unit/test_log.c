#include "common/log.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Each test runs in its own forked process (Check's default), so the
 * logger's globals start fresh; output goes to a temp file read back here. */
static char log_path[64];
static int log_fd = -1;

static void setup(void)
{
    snprintf(log_path, sizeof(log_path), "/tmp/an-test-log-XXXXXX");
    log_fd = mkstemp(log_path);
    ck_assert_int_ge(log_fd, 0);
    /* O_APPEND so concurrent writers never overwrite each other */
    ck_assert_int_eq(fcntl(log_fd, F_SETFL, O_APPEND), 0);
    an_log_set_fd(log_fd);
}

static void teardown(void)
{
    an_log_set_fd(2);
    if (log_fd >= 0)
        close(log_fd);
    unlink(log_path);
}

/* The whole file; caller frees. */
static char *slurp(void)
{
    struct stat st;
    ck_assert_int_eq(fstat(log_fd, &st), 0);
    char *s = malloc((size_t)st.st_size + 1);
    ck_assert_int_eq(pread(log_fd, s, (size_t)st.st_size, 0), st.st_size);
    s[st.st_size] = '\0';
    return s;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* Parse the only line written so far; fails unless there is exactly one. */
static cJSON *only_line(void)
{
    char *s = slurp();
    ck_assert_msg(count_lines(s) == 1, "expected one line, got: %s", s);
    ck_assert_int_eq(s[strlen(s) - 1], '\n');
    cJSON *j = cJSON_Parse(s);
    ck_assert_msg(j != NULL, "not JSON: %s", s);
    free(s);
    return j;
}

static const char *str_field(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

START_TEST(test_log_line_is_json_with_ts_level_service_msg)
{
    an_log_init("metrics", AN_LOG_INFO);
    time_t before = time(NULL);
    an_info("started %d workers", 4);
    time_t after = time(NULL);
    cJSON *j = only_line();
    ck_assert_str_eq(str_field(j, "level"), "info");
    ck_assert_str_eq(str_field(j, "service"), "metrics");
    ck_assert_str_eq(str_field(j, "msg"), "started 4 workers");
    ck_assert_ptr_null(cJSON_GetObjectItem(j, "tenant"));
    ck_assert_ptr_null(cJSON_GetObjectItem(j, "correlationId"));
    const char *ts = str_field(j, "ts");
    ck_assert_ptr_nonnull(ts);
    /* 2026-11-27T23:41:56.123Z, UTC, within the call's second */
    ck_assert_uint_eq(strlen(ts), 24);
    struct tm tm = {0};
    int msec = -1;
    ck_assert_int_eq(sscanf(ts, "%4d-%2d-%2dT%2d:%2d:%2d.%3dZ", &tm.tm_year, &tm.tm_mon,
                            &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &msec),
                     7);
    ck_assert_int_eq(ts[23], 'Z');
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    ck_assert_int_ge(t, before);
    ck_assert_int_le(t, after);
    ck_assert(msec >= 0 && msec <= 999);
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_log_tenant_and_correlation_id_only_when_given)
{
    an_log_init("ingest", AN_LOG_DEBUG);
    an_log_ctx(AN_LOG_WARN, "t1", "c-42", "x");
    cJSON *j = only_line();
    ck_assert_str_eq(str_field(j, "tenant"), "t1");
    ck_assert_str_eq(str_field(j, "correlationId"), "c-42");
    ck_assert_str_eq(str_field(j, "level"), "warn");
    cJSON_Delete(j);

    ck_assert_int_eq(ftruncate(log_fd, 0), 0);
    an_log_ctx(AN_LOG_ERROR, "t2", NULL, "y");
    j = only_line();
    ck_assert_str_eq(str_field(j, "tenant"), "t2");
    ck_assert_ptr_null(cJSON_GetObjectItem(j, "correlationId"));
    ck_assert_str_eq(str_field(j, "level"), "error");
    cJSON_Delete(j);

    /* empty strings count as not given */
    ck_assert_int_eq(ftruncate(log_fd, 0), 0);
    an_log_ctx(AN_LOG_INFO, "", "", "z");
    j = only_line();
    ck_assert_ptr_null(cJSON_GetObjectItem(j, "tenant"));
    ck_assert_ptr_null(cJSON_GetObjectItem(j, "correlationId"));
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_log_drops_lines_below_the_minimum_level)
{
    an_log_init("svc", AN_LOG_WARN);
    ck_assert_int_eq(an_log_get_level(), AN_LOG_WARN);
    an_debug("d");
    an_info("i");
    an_warn("w");
    an_errorf("e");
    char *s = slurp();
    ck_assert_int_eq(count_lines(s), 2);
    ck_assert_ptr_null(strstr(s, "\"msg\":\"d\""));
    ck_assert_ptr_null(strstr(s, "\"msg\":\"i\""));
    ck_assert_ptr_nonnull(strstr(s, "\"msg\":\"w\""));
    ck_assert_ptr_nonnull(strstr(s, "\"msg\":\"e\""));
    free(s);

    an_log_set_level(AN_LOG_DEBUG);
    an_debug("now visible");
    s = slurp();
    ck_assert_int_eq(count_lines(s), 3);
    ck_assert_ptr_nonnull(strstr(s, "\"level\":\"debug\""));
    free(s);
}
END_TEST

START_TEST(test_log_escapes_quotes_newlines_and_controls_in_one_line)
{
    an_log_init("we\"ird\nsvc", AN_LOG_INFO);
    const char *msg = "said \"hi\"\nsecond line\\ tab\there \x01 caf\xc3\xa9";
    an_log_ctx(AN_LOG_INFO, "ten\"ant", "cid\r\n", "%s", msg);
    cJSON *j = only_line(); /* exactly one physical line despite the newlines */
    ck_assert_str_eq(str_field(j, "msg"), msg);
    ck_assert_str_eq(str_field(j, "service"), "we\"ird\nsvc");
    ck_assert_str_eq(str_field(j, "tenant"), "ten\"ant");
    ck_assert_str_eq(str_field(j, "correlationId"), "cid\r\n");
    cJSON_Delete(j);
}
END_TEST

START_TEST(test_log_level_names_parse_and_print)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++) {
        an_log_level l;
        ck_assert_int_eq(an_log_level_parse(names[i], &l), 0);
        ck_assert_int_eq(l, i);
        ck_assert_str_eq(an_log_level_name(l), names[i]);
    }
    an_log_level l = AN_LOG_DEBUG;
    ck_assert_int_eq(an_log_level_parse("warning", &l), 0);
    ck_assert_int_eq(l, AN_LOG_WARN);
    ck_assert_int_eq(an_log_level_parse("verbose", &l), -1);
    ck_assert_int_eq(an_log_level_parse("INFO", &l), -1);
    ck_assert_int_eq(an_log_level_parse(NULL, &l), -1);
}
END_TEST

START_TEST(test_log_default_service_name_and_long_name_truncated)
{
    an_log_init(NULL, AN_LOG_INFO);
    an_info("a");
    cJSON *j = only_line();
    ck_assert_str_eq(str_field(j, "service"), "analytics");
    cJSON_Delete(j);

    char longname[100];
    memset(longname, 's', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    an_log_init(longname, AN_LOG_INFO);
    ck_assert_int_eq(ftruncate(log_fd, 0), 0);
    an_info("b");
    j = only_line();
    ck_assert_uint_eq(strlen(str_field(j, "service")), 63);
    ck_assert_int_eq(strncmp(str_field(j, "service"), longname, 63), 0);
    cJSON_Delete(j);
}
END_TEST

static void *log_many(void *arg)
{
    int id = (int)(long)arg;
    for (int i = 0; i < 500; i++)
        an_log_ctx(AN_LOG_INFO, "tenant", NULL, "thread %d line %d %s", id, i,
                   "padding padding padding padding padding padding padding padding");
    return NULL;
}

START_TEST(test_log_concurrent_lines_never_interleave)
{
    an_log_init("svc", AN_LOG_INFO);
    pthread_t th[4];
    for (long i = 0; i < 4; i++)
        ck_assert_int_eq(pthread_create(&th[i], NULL, log_many, (void *)i), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    char *s = slurp();
    ck_assert_int_eq(count_lines(s), 2000);
    int per_thread[4] = {0};
    char *save = NULL;
    for (char *line = strtok_r(s, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        cJSON *j = cJSON_Parse(line);
        ck_assert_msg(j != NULL, "garbled line: %s", line);
        int id, n;
        ck_assert_int_eq(sscanf(str_field(j, "msg"), "thread %d line %d", &id, &n), 2);
        ck_assert(id >= 0 && id < 4);
        per_thread[id]++;
        cJSON_Delete(j);
    }
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(per_thread[i], 500);
    free(s);
}
END_TEST

Suite *log_suite(void)
{
    Suite *s = suite_create("log");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_log_line_is_json_with_ts_level_service_msg);
    tcase_add_test(tc, test_log_tenant_and_correlation_id_only_when_given);
    tcase_add_test(tc, test_log_drops_lines_below_the_minimum_level);
    tcase_add_test(tc, test_log_escapes_quotes_newlines_and_controls_in_one_line);
    tcase_add_test(tc, test_log_level_names_parse_and_print);
    tcase_add_test(tc, test_log_default_service_name_and_long_name_truncated);
    tcase_add_test(tc, test_log_concurrent_lines_never_interleave);
    suite_add_tcase(s, tc);
    return s;
}
