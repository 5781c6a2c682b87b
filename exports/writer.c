/*
 * writer.c - the writer interface: column types, UTF-8 clean-up, buffered
 * output, and the dispatch to the format (writer_csv.c, writer_json.c,
 * writer_xlsx.c). Memory is bounded by the longest row: a text writer
 * flushes its buffer every AN_WRITER_FLUSH bytes.
 */
#include "exports/writer_int.h"

#include "common/sql.h"
#include "common/timeutil.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define AN_WRITER_FLUSH (256 * 1024)

const char *exports_format_name(exports_format f)
{
    switch (f) {
    case EXPORTS_XLSX:
        return "xlsx";
    case EXPORTS_JSON:
        return "json";
    default:
        return "csv";
    }
}

int exports_format_parse(const char *s, exports_format *out)
{
    if (!s)
        return -1;
    if (strcmp(s, "csv") == 0)
        *out = EXPORTS_CSV;
    else if (strcmp(s, "xlsx") == 0)
        *out = EXPORTS_XLSX;
    else if (strcmp(s, "json") == 0)
        *out = EXPORTS_JSON;
    else
        return -1;
    return 0;
}

const char *exports_format_ext(exports_format f)
{
    switch (f) {
    case EXPORTS_XLSX:
        return "xlsx";
    case EXPORTS_JSON:
        return "ndjson";
    default:
        return "csv";
    }
}

const char *exports_format_content_type(exports_format f)
{
    switch (f) {
    case EXPORTS_XLSX:
        return "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet";
    case EXPORTS_JSON:
        return "application/x-ndjson";
    default:
        return "text/csv; charset=utf-8";
    }
}

/* ------------------------------------------------------------ column types */

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

exports_coltype exports_coltype_of(const char *t)
{
    if (!t)
        return EXPORTS_COL_STRING;
    /* Unwrap Nullable(...) and LowCardinality(...), possibly nested. */
    for (;;) {
        if (starts(t, "Nullable("))
            t += strlen("Nullable(");
        else if (starts(t, "LowCardinality("))
            t += strlen("LowCardinality(");
        else
            break;
    }
    if (starts(t, "Int") || starts(t, "UInt"))
        return EXPORTS_COL_INT;
    if (starts(t, "Float") || starts(t, "Decimal"))
        return EXPORTS_COL_FLOAT;
    if (starts(t, "Bool"))
        return EXPORTS_COL_BOOL;
    if (starts(t, "DateTime64"))
        return EXPORTS_COL_STRING; /* sub-second text: kept as written */
    if (starts(t, "DateTime"))
        return EXPORTS_COL_DATETIME;
    if (starts(t, "Date"))
        return EXPORTS_COL_DATE; /* Date, Date32 */
    return EXPORTS_COL_STRING;
}

/* ----------------------------------------------------------------- UTF-8 */

void exports_utf8_sanitize(an_buf *out, const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        size_t k = p[i] < 0x80 ? 1 : an_sql_utf8_seq_len(p + i, n - i);
        if (k) {
            i += k;
            continue;
        }
        an_buf_add(out, s + run, i - run);
        an_buf_adds(out, "\xEF\xBF\xBD"); /* U+FFFD */
        i++;
        run = i;
    }
    an_buf_add(out, s + run, n - run);
}

/* ------------------------------------------------------------ dates */

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

bool exports_parse_date(const char *s, size_t n, int64_t *days)
{
    int y, m, d;
    if (n != 10 || s[4] != '-' || s[7] != '-' || !digits(s, 4, &y) || !digits(s + 5, 2, &m) ||
        !digits(s + 8, 2, &d))
        return false;
    if (y == 0 || m < 1 || m > 12 || d < 1 || d > an_time_days_in_month(y, m))
        return false; /* 0000-00-00 is ClickHouse's zero value */
    *days = an_time_days_from_civil(y, m, d);
    return true;
}

bool exports_parse_datetime(const char *s, size_t n, int64_t *epoch_s)
{
    int64_t days;
    int hh, mi, ss;
    if (n != 19 || s[10] != ' ' || s[13] != ':' || s[16] != ':' ||
        !exports_parse_date(s, 10, &days) || !digits(s + 11, 2, &hh) || !digits(s + 14, 2, &mi) ||
        !digits(s + 17, 2, &ss) || hh > 23 || mi > 59 || ss > 59)
        return false;
    *epoch_s = days * 86400 + hh * 3600 + mi * 60 + ss;
    return true;
}

/* ------------------------------------------------------------ the writer */

an_status exports_writer_flush(exports_writer *w, size_t min, an_error *err)
{
    if (w->out.len == 0 || w->out.len < min)
        return AN_OK;
    size_t off = 0;
    while (off < w->out.len) {
        ssize_t k = write(w->fd, w->out.data + off, w->out.len - off);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            return an_error_set(err, AN_INTERNAL, "write %s: %s", w->path, strerror(errno));
        }
        off += (size_t)k;
    }
    w->bytes += w->out.len;
    an_buf_reset(&w->out);
    return AN_OK;
}

an_status exports_writer_open(exports_format f, const char *path, const exports_writer_opts *opts,
                              exports_writer **out, an_error *err)
{
    exports_writer *w = calloc(1, sizeof(*w));
    if (!w)
        abort();
    w->format = f;
    w->path = strdup(path);
    w->fd = -1;
    if (opts)
        w->opts = *opts;
    if (w->opts.xlsx_rows_per_sheet == 0 || w->opts.xlsx_rows_per_sheet > 1048575)
        w->opts.xlsx_rows_per_sheet = 1048575;
    an_status s = AN_OK;
    switch (f) {
    case EXPORTS_XLSX:
        w->ops = &exports_xlsx_ops;
        s = exports_xlsx_open(w, err);
        break;
    case EXPORTS_JSON:
        w->ops = &exports_json_ops;
        break;
    default:
        w->ops = &exports_csv_ops;
        break;
    }
    if (s == AN_OK && f != EXPORTS_XLSX) {
        w->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
        if (w->fd < 0)
            s = an_error_set(err, AN_INTERNAL, "create %s: %s", path, strerror(errno));
    }
    if (s != AN_OK) {
        exports_writer_free(w);
        return s;
    }
    *out = w;
    return AN_OK;
}

an_status exports_writer_columns(exports_writer *w, size_t ncols, const char *const *names,
                                 const char *const *types, an_error *err)
{
    if (w->columns_done)
        return AN_OK;
    if (ncols == 0)
        return an_error_set(err, AN_INVALID_ARGUMENT, "the query returns no columns");
    w->ncols = ncols;
    w->names = calloc(ncols, sizeof(char *));
    w->types = calloc(ncols, sizeof(exports_coltype));
    if (!w->names || !w->types)
        abort();
    for (size_t i = 0; i < ncols; i++) {
        w->names[i] = strdup(names && names[i] ? names[i] : "");
        w->types[i] = exports_coltype_of(types ? types[i] : NULL);
    }
    w->columns_done = true;
    return w->ops->begin(w, err);
}

an_status exports_writer_row(exports_writer *w, const char *const *fields, const size_t *lens,
                             an_error *err)
{
    if (!w->columns_done)
        return an_error_set(err, AN_INTERNAL, "exports_writer_row before the columns");
    an_status s = w->ops->row(w, fields, lens, err);
    if (s == AN_OK)
        w->rows++;
    return s;
}

uint64_t exports_writer_rows(const exports_writer *w)
{
    return w->rows;
}

uint64_t exports_writer_bytes(const exports_writer *w)
{
    return w->bytes + w->out.len;
}

an_status exports_writer_close(exports_writer *w, uint64_t *bytes, an_error *err)
{
    an_status s = AN_OK;
    if (!w->columns_done) {
        /* No row and no column list: an empty file of the format. */
        w->columns_done = true;
        s = w->ops->begin(w, err);
    }
    if (s == AN_OK)
        s = w->ops->finish(w, err);
    w->finished = true;
    if (s == AN_OK && w->fd >= 0) {
        if (fsync(w->fd) != 0 || close(w->fd) != 0)
            s = an_error_set(err, AN_INTERNAL, "close %s: %s", w->path, strerror(errno));
        w->fd = -1;
    }
    if (s == AN_OK) {
        struct stat st;
        if (stat(w->path, &st) != 0)
            return an_error_set(err, AN_INTERNAL, "stat %s: %s", w->path, strerror(errno));
        w->bytes = (uint64_t)st.st_size;
        if (bytes)
            *bytes = w->bytes;
    }
    return s;
}

void exports_writer_free(exports_writer *w)
{
    if (!w)
        return;
    if (!w->finished && w->ops && w->ops->discard)
        w->ops->discard(w);
    if (w->fd >= 0)
        close(w->fd);
    for (size_t i = 0; i < w->ncols; i++)
        free(w->names[i]);
    free(w->names);
    free(w->types);
    an_buf_free(&w->out);
    free(w->path);
    free(w);
}
