/*
 * log.h - one JSON object per line on stderr.
 *
 *   {"ts":"2026-11-27T23:41:56.123Z","level":"info","service":"metrics",
 *    "msg":"...","tenant":"t1","correlationId":"..."}
 *
 * tenant and correlationId appear only when known. Thread-safe: each line
 * is written with one write(2).
 */
#ifndef AN_LOG_H
#define AN_LOG_H

typedef enum an_log_level {
    AN_LOG_DEBUG = 0,
    AN_LOG_INFO,
    AN_LOG_WARN,
    AN_LOG_ERROR,
} an_log_level;

/* Set the service name put on every line (copied) and the minimum level. */
void an_log_init(const char *service, an_log_level min_level);
void an_log_set_level(an_log_level min_level);
an_log_level an_log_get_level(void);

/* Parse "debug" | "info" | "warn" | "error"; returns 0 on success, -1 otherwise. */
int an_log_level_parse(const char *s, an_log_level *out);
const char *an_log_level_name(an_log_level l);

/* Log with tenant and correlation id (either may be NULL). */
void an_log_ctx(an_log_level level, const char *tenant, const char *correlation_id, const char *fmt,
                ...) __attribute__((format(printf, 4, 5)));

#define an_debug(...)  an_log_ctx(AN_LOG_DEBUG, NULL, NULL, __VA_ARGS__)
#define an_info(...)   an_log_ctx(AN_LOG_INFO, NULL, NULL, __VA_ARGS__)
#define an_warn(...)   an_log_ctx(AN_LOG_WARN, NULL, NULL, __VA_ARGS__)
#define an_errorf(...) an_log_ctx(AN_LOG_ERROR, NULL, NULL, __VA_ARGS__)

/* Redirect output to fd (default 2); for tests. */
void an_log_set_fd(int fd);

#endif
