#include "common/log.h"
#include "common/timeutil.h"

#include "common/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static char service_name[64] = "analytics";
static an_log_level min_level = AN_LOG_INFO;
static int log_fd = 2;

static const char *names[] = {"debug", "info", "warn", "error"};

void an_log_init(const char *service, an_log_level level)
{
    snprintf(service_name, sizeof(service_name), "%s", service ? service : "analytics");
    min_level = level;
}

void an_log_set_level(an_log_level level)
{
    min_level = level;
}

an_log_level an_log_get_level(void)
{
    return min_level;
}

void an_log_set_fd(int fd)
{
    log_fd = fd;
}

const char *an_log_level_name(an_log_level l)
{
    return (l >= AN_LOG_DEBUG && l <= AN_LOG_ERROR) ? names[l] : "info";
}

int an_log_level_parse(const char *s, an_log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (s && strcmp(s, names[i]) == 0) {
            *out = (an_log_level)i;
            return 0;
        }
    }
    if (s && strcmp(s, "warning") == 0) {
        *out = AN_LOG_WARN;
        return 0;
    }
    return -1;
}

static void add_field(an_buf *b, const char *key, const char *val)
{
    an_buf_addf(b, ",\"%s\":\"", key);
    an_buf_add_json_escaped(b, val, strlen(val));
    an_buf_addc(b, '"');
}

void an_log_ctx(an_log_level level, const char *tenant, const char *correlation_id, const char *fmt,
                ...)
{
    if (level < min_level)
        return;
    char ts[AN_TIME_ISO_LEN];
    an_time_format_iso(an_time_now_ms(), ts, NULL);

    an_buf msg = AN_BUF_INIT;
    va_list ap;
    va_start(ap, fmt);
    an_buf_vaddf(&msg, fmt, ap);
    va_end(ap);

    an_buf line = AN_BUF_INIT;
    an_buf_addf(&line, "{\"ts\":\"%s\"", ts);
    add_field(&line, "level", an_log_level_name(level));
    add_field(&line, "service", service_name);
    add_field(&line, "msg", an_buf_str(&msg));
    if (tenant && *tenant)
        add_field(&line, "tenant", tenant);
    if (correlation_id && *correlation_id)
        add_field(&line, "correlationId", correlation_id);
    an_buf_adds(&line, "}\n");
    ssize_t w = write(log_fd, line.data, line.len);
    (void)w;
    an_buf_free(&msg);
    an_buf_free(&line);
}
