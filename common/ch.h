/*
 * ch.h - ClickHouse HTTP client on libcurl.
 *
 * An an_ch is one connection to one server: a curl easy handle that keeps
 * its TCP connection alive between requests. It is NOT thread-safe: use one
 * an_ch per thread (they are cheap). Every request is synchronous.
 *
 *   an_ch_options o = {.url = "http://127.0.0.1:8123", .user = "analytics_writer",
 *                      .password = pw, .database = "analytics"};
 *   an_ch *ch;
 *   if (an_ch_new(&o, &ch, &err) != AN_OK) ...
 *   an_ch_query(ch, "SELECT tenant_id, count() FROM events GROUP BY tenant_id",
 *               NULL, on_row, &ctx, &err);
 *   an_ch_free(ch);
 *
 * Credentials travel in the X-ClickHouse-User / X-ClickHouse-Key headers,
 * never in the URL. SQL of queries and commands travels in the POST body;
 * an INSERT's statement travels in the `query=` URL parameter and its data in
 * the body (sent straight from the caller's memory, no copy).
 *
 * Errors. A server exception is mapped to an an_status, its text is kept in
 * err->message ("ClickHouse code 60: DB::Exception: Table x doesn't exist.")
 * and its numeric code is returned by an_ch_last_exception_code():
 *   syntax, unknown identifier/function/setting, type and parse errors  -> AN_INVALID_ARGUMENT
 *   unknown table or database                                           -> AN_NOT_FOUND
 *   table/database already exists                                       -> AN_ALREADY_EXISTS
 *   readonly mode, access denied to a database, setting constraints     -> AN_PERMISSION_DENIED
 *   limits: timeout (159), rows/bytes (158, 396, 307), memory (241),
 *           too slow (160), quota (201), too many queries/parts         -> AN_RESOURCE_EXHAUSTED
 *   authentication failed (192, 193, 194, 516)                          -> AN_INTERNAL
 *   anything else                                                       -> AN_INTERNAL
 * Bad ClickHouse credentials are a deployment fault of this service, not a
 * fault of whoever called it, so they are AN_INTERNAL (a 500), not
 * AN_UNAUTHENTICATED (which would tell the end user to log in again); the
 * message says "authentication failed" and the code is kept.
 * Connection refused/reset, a client-side timeout or a broken transfer are
 * AN_UNAVAILABLE (an_ch_last_exception_code() is then 0).
 *
 * Exceptions after the 200 status. ClickHouse streams results: when a query
 * fails after the first bytes were sent (e.g. a limit hit at row 1,000,000),
 * the status is already 200 and the exception text is appended to the body.
 * The client detects it and returns the mapped status; rows handed to the
 * callback before the failure stay handed (see an_ch_query).
 *
 * Retries. Only connection errors are retried, with exponential backoff and
 * jitter (delay of retry k in [b/2, b] with b = backoff_base_ms * 2^k, capped
 * at backoff_max_ms, so delays never shrink):
 *   - the TCP connection could not be made (refused, unreachable, connect
 *     timeout): the server saw nothing, every request is retried;
 *   - the connection broke after the request was sent but before any response
 *     byte arrived: retried only for reads (an_ch_query*, an_ch_ping) and for
 *     inserts flagged AN_CH_INSERT_IDEMPOTENT; never for an_ch_exec nor other
 *     inserts, whose outcome is then unknown (AN_UNAVAILABLE, message says so);
 *   - never once a response started (a server exception is final; a stream
 *     broken midway cannot be replayed) and never after a client timeout
 *     (the query may still run on the server).
 * An insert is idempotent when the table deduplicates identical blocks
 * (Replicated*MergeTree) or the caller tolerates duplicates.
 */
#ifndef AN_CH_H
#define AN_CH_H

#include "common/buf.h"
#include "common/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct an_ch an_ch;

/* Called before each retry (for logs and tests): attempt is 1 for the first
 * retry, delay_ms the sleep about to happen, reason curl's error text. */
typedef void (*an_ch_retry_fn)(void *ud, int attempt, int delay_ms, const char *reason);

typedef struct an_ch_options {
    const char *url;         /* "http://host:port" (required; a trailing '/' is fine) */
    const char *user;        /* NULL: "default" */
    const char *password;    /* NULL: "" */
    const char *database;    /* default database of every request; NULL: the user's */
    int connect_timeout_ms;  /* 0: 2000 */
    int query_timeout_ms;    /* whole request, client side (a streaming insert: from the
                              * end of its body); 0: 300000; < 0: none */
    int max_retries;         /* retries on connection errors; 0: 3; < 0: none */
    int backoff_base_ms;     /* delay before the first retry; 0: 100 */
    int backoff_max_ms;      /* cap of one delay; 0: 5000 */
    size_t max_buffer_bytes; /* limit of an_ch_query_buf results; 0: 64 MiB */
    an_ch_retry_fn on_retry; /* NULL: log a warning line */
    void *on_retry_ud;
} an_ch_options;

/* Counters since an_ch_new, for metrics and tests. */
typedef struct an_ch_stats {
    uint64_t requests; /* requests that got an HTTP response */
    uint64_t connects; /* TCP connections opened (1 when keep-alive works) */
    uint64_t retries;  /* retries after connection errors */
    uint64_t rows;     /* rows handed to row callbacks */
} an_ch_stats;

/* Open a client. Copies every string of opt; does not connect yet (use
 * an_ch_ping to check readiness). *out is freed with an_ch_free. */
an_status an_ch_new(const an_ch_options *opt, an_ch **out, an_error *err);

/* Close the connection and free everything. ch may be NULL. */
void an_ch_free(an_ch *ch);

/* ClickHouse code of the last request's exception; 0 when the last request
 * succeeded or failed without a server exception. */
int an_ch_last_exception_code(const an_ch *ch);

/* Whether the last request failed because no answer, or no whole answer, came
 * within the query timeout after it was sent (curl's timeout; the error is then
 * AN_UNAVAILABLE and the query may still run on the server). False when it
 * succeeded, failed otherwise, or ch is NULL. */
bool an_ch_last_timed_out(const an_ch *ch);

void an_ch_get_stats(const an_ch *ch, an_ch_stats *out);

/* From any thread: every request of ch, the one running included (plain or
 * streaming), is broken off at deadline_ms (monotonic, an_time_mono_ms;
 * within about a second) and fails with AN_UNAVAILABLE; a request sent may
 * still run on the server. 0: none. For a shutdown that must end in time. */
void an_ch_set_deadline(an_ch *ch, int64_t deadline_ms);

/* GET /ping: AN_OK when the server answers "Ok.". Retried like a read. */
an_status an_ch_ping(an_ch *ch, an_error *err);

/* ---- per-query settings ------------------------------------------------ */

typedef struct an_ch_setting {
    const char *name;  /* [A-Za-z_][A-Za-z0-9_]* */
    const char *value; /* URL-encoded by the client */
} an_ch_setting;

/* Settings of one request, sent as URL parameters. Zero means "not sent":
 * the server then applies the user's profile. A user whose profile has
 * readonly=1 (the stack's analytics_reader) may not change ANY setting, so a
 * caller using it passes NULL or an all-zero struct and relies on the limits
 * of its profile. readonly is sent last, because settings after it would be
 * refused by the server. max_result_rows is sent with
 * result_overflow_mode=throw, so hitting it fails the query
 * (AN_RESOURCE_EXHAUSTED) rather than silently truncating. extra holds other
 * URL parameters (settings such as log_queries, or query_id). */
typedef struct an_ch_settings {
    int readonly;              /* 1 or 2; 0: not sent */
    int max_execution_time;    /* seconds; 0: not sent */
    uint64_t max_result_rows;  /* 0: not sent */
    uint64_t max_memory_usage; /* bytes; 0: not sent */
    const an_ch_setting *extra;
    size_t n_extra;
} an_ch_settings;

/* ---- queries ------------------------------------------------------------ */

/* One result row, valid only during the callback. fields[i] is the unescaped
 * value of column i, NUL-terminated (binary values may contain NULs: use
 * lens[i]); fields[i] is NULL for a SQL NULL. Array, Tuple and Map values
 * come in ClickHouse's literal syntax, as the server writes them, e.g.
 * ['it\'s','b'] (quoted elements keep their backslash escapes). names and
 * types are the result's column names and ClickHouse types. */
typedef struct an_ch_row {
    size_t ncols;
    const char *const *fields;
    const size_t *lens;
    const char *const *names;
    const char *const *types;
    uint64_t index; /* 0-based row number */
} an_ch_row;

/* Row callback: return AN_OK to go on. Any other status stops the query: the
 * transfer is aborted and an_ch_query returns that status (the callback may
 * fill err, which is the caller's err or a scratch one, to say why). */
typedef an_status (*an_ch_row_fn)(void *ud, const an_ch_row *row, an_error *err);

/* Run a SELECT (or SHOW/DESCRIBE/EXISTS) and stream its rows to fn, parsed
 * incrementally as they arrive: memory is bounded by the longest row, not by
 * the result. The client appends "FORMAT TabSeparatedWithNamesAndTypes"
 * itself (the header gives the column count, which tells rows from a
 * mid-stream exception): sql must not have a FORMAT clause (a trailing ';' is
 * dropped). settings may be NULL. On a server error after some rows were
 * already handed to fn, the return value is the error; the caller must treat
 * the rows it saw as incomplete. A row that starts like a ClickHouse
 * exception ("Code: N, e.displayText() = ...") is held back until the next
 * line shows it was data; only when such a row is the very last of the result
 * is it taken for the server's exception. */
an_status an_ch_query(an_ch *ch, const char *sql, const an_ch_settings *settings, an_ch_row_fn fn,
                      void *ud, an_error *err);

/* Run a query for a small result and append its raw body to out, in format
 * (NULL: "TabSeparated"; e.g. "JSON", "CSVWithNames"). The client appends
 * "FORMAT <format>". Fails with AN_RESOURCE_EXHAUSTED when the body exceeds
 * max_buffer_bytes. out is the caller's (an_buf_free it); on error its content
 * is unspecified. */
an_status an_ch_query_buf(an_ch *ch, const char *sql, const char *format,
                          const an_ch_settings *settings, an_buf *out, an_error *err);

/* Run a statement that returns no rows (CREATE, DROP, ALTER, INSERT ...
 * SELECT, OPTIMIZE, SYSTEM ...). Not retried once sent (see above). */
an_status an_ch_exec(an_ch *ch, const char *sql, const an_ch_settings *settings, an_error *err);

/* ---- batched inserts --------------------------------------------------- */

/* Column types a batch can hold. OR AN_CH_NULLABLE for Nullable(T). */
typedef enum an_ch_type {
    AN_CH_STRING = 1, /* String, FixedString read as text, LowCardinality(String) */
    AN_CH_INT8,
    AN_CH_INT16,
    AN_CH_INT32,
    AN_CH_INT64,
    AN_CH_UINT8,
    AN_CH_UINT16,
    AN_CH_UINT32,
    AN_CH_UINT64,
    AN_CH_FLOAT32,
    AN_CH_FLOAT64,
    AN_CH_DATE,         /* Date (from unix seconds, UTC day) */
    AN_CH_DATETIME,     /* DateTime (unix seconds) */
    AN_CH_ARRAY_STRING, /* Array(String) */
} an_ch_type;
#define AN_CH_NULLABLE 0x100

typedef struct an_ch_column {
    const char *name; /* [A-Za-z_][A-Za-z0-9_]* */
    int type;         /* an_ch_type, optionally | AN_CH_NULLABLE */
} an_ch_column;

/* Wire format of a batch. Both carry the same rows; RowBinary needs the
 * declared types to match the table's exactly (Int32 is 4 bytes; checked, see
 * an_ch_insert), TSV lets the server convert. Measured on ClickHouse 18.16
 * (bench/chinsert, 1M event rows of ~350 bytes, batches of 100k rows, 2
 * cores): RowBinary about 540k rows/s, TSV about 475k rows/s,
 * clickhouse-client (native protocol) about 320k rows/s; RowBinary's body is
 * 10% smaller and 30% cheaper to build. Prefer it for high-volume tables. */
typedef enum an_ch_format {
    AN_CH_FORMAT_TSV = 0,   /* "INSERT ... FORMAT TabSeparated" */
    AN_CH_FORMAT_ROWBINARY, /* "INSERT ... FORMAT RowBinary" */
} an_ch_format;

typedef struct an_ch_batch an_ch_batch;

/* A batch of rows for one table, built in memory in the wire format. table
 * is "name" or "db.name"; the column list is copied. Free with
 * an_ch_batch_free. */
an_status an_ch_batch_new(const char *table, const an_ch_column *cols, size_t ncols,
                          an_ch_format format, an_ch_batch **out, an_error *err);
void an_ch_batch_free(an_ch_batch *b);

/* Append the next field of the current row. A value whose kind does not fit
 * the column (a string for an Int32, a negative number for a UInt64, a NULL
 * for a non-Nullable column, one field too many) marks the row bad:
 * an_ch_batch_end_row then drops it and says which column. Integers convert
 * to any integer or float column they fit in; a float only to a float
 * column. */
void an_ch_batch_add_str(an_ch_batch *b, const char *s, size_t len);
void an_ch_batch_add_cstr(an_ch_batch *b, const char *s); /* NULL: SQL NULL */
void an_ch_batch_add_int(an_ch_batch *b, int64_t v);
void an_ch_batch_add_uint(an_ch_batch *b, uint64_t v);
void an_ch_batch_add_float(an_ch_batch *b, double v);
void an_ch_batch_add_datetime(an_ch_batch *b, int64_t unix_seconds);
void an_ch_batch_add_date(an_ch_batch *b, int64_t unix_seconds);
/* n strings; lens may be NULL (then each item is a C string). */
void an_ch_batch_add_str_array(an_ch_batch *b, const char *const *items, const size_t *lens,
                               size_t n);
void an_ch_batch_add_null(an_ch_batch *b);

/* Close the current row. AN_INVALID_ARGUMENT (row dropped, batch otherwise
 * intact) when it has too few fields or a bad one. */
an_status an_ch_batch_end_row(an_ch_batch *b, an_error *err);

/* Complete rows, and bytes of the body: flush when either reaches your limit. */
size_t an_ch_batch_rows(const an_ch_batch *b);
size_t an_ch_batch_bytes(const an_ch_batch *b);
/* The body (complete rows only), owned by the batch, valid until the next change. */
const char *an_ch_batch_data(const an_ch_batch *b, size_t *len);
/* The statement: "INSERT INTO t (a, b) FORMAT TabSeparated". */
const char *an_ch_batch_statement(const an_ch_batch *b);
/* Drop every row, keep the storage for the next batch. */
void an_ch_batch_reset(an_ch_batch *b);

#define AN_CH_INSERT_IDEMPOTENT 1u /* may be retried when its outcome is unknown */

/* Send the batch's complete rows in one INSERT. The batch is left as is
 * (an_ch_batch_reset it after success). An empty batch is a no-op. Before
 * the first insert of a RowBinary batch, the declared column types are
 * checked against DESCRIBE TABLE (one extra query per batch object):
 * AN_INVALID_ARGUMENT names the first column whose binary layout differs. */
an_status an_ch_insert(an_ch *ch, an_ch_batch *b, const an_ch_settings *settings, unsigned flags,
                       an_error *err);

/* Send data of len bytes as the body of statement ("INSERT INTO t (a) FORMAT
 * CSV"); data is sent from the caller's memory and not kept. */
an_status an_ch_insert_raw(an_ch *ch, const char *statement, const void *data, size_t len,
                           const an_ch_settings *settings, unsigned flags, an_error *err);

/* Decode one TabSeparated field (no tab or newline inside) into dst, which
 * must hold len bytes (dst may be src: decoding never grows); returns the
 * decoded length. Understands \b \f \n \r \t \0 \a \v \xHH and \c for
 * any other c. Does not treat \N (NULL). */
size_t an_ch_tsv_unescape(char *dst, const char *src, size_t len);

/*
 * Streaming insert: one INSERT whose body is sent while it is being built,
 * so a large insert (one part in ClickHouse, where many small ones would
 * each cost a part to write and later to merge) needs no more memory on
 * this side than the rows of one hand-over.
 *
 *   an_ch_stream *s;
 *   an_ch_stream_start(ch, rows, &settings, &s, &err);  // connects
 *   ... add rows to `rows` ...; an_ch_stream_send(s, rows, 1000, &err);  // hands them over
 *   an_ch_stream_finish(s, -1, &err);                   // ClickHouse's answer
 *
 * The request runs on ch in a thread of the stream: ch must not be used
 * otherwise until an_ch_stream_finish returned. It goes out on a new
 * connection with chunked transfer encoding and is never retried: rows
 * handed over are not kept. Until start returns AN_OK nothing was sent;
 * afterwards a failure means some of the rows sent may be stored (the
 * server may have inserted what it received), the caller must be able to
 * tell (ingest looks redelivered events up).
 */
typedef struct an_ch_stream an_ch_stream;

/* Check the batch's declared columns (RowBinary, as an_ch_insert does) and
 * open the INSERT of its statement; returns once the request is about to go
 * out on a connection, or with the error of connecting (nothing sent). */
an_status an_ch_stream_start(an_ch *ch, an_ch_batch *b, const an_ch_settings *settings,
                             an_ch_stream **out, an_error *err);

/* Hand the complete rows of b over (no copy: b's storage is swapped) and
 * reset b. Waits up to timeout_ms while the previous hand-over is not sent
 * yet: AN_RESOURCE_EXHAUSTED when it still is not (b untouched, try again),
 * the request's error once it failed. */
an_status an_ch_stream_send(an_ch_stream *s, an_ch_batch *b, int timeout_ms, an_error *err);

/* End the body and wait up to wait_ms for the answer (< 0: the client's
 * query timeout, which for a streaming insert counts from here, however
 * long the body took; 0: break the request off at once). A request broken
 * off, at once or for want of an answer, fails, and the rows sent may be
 * stored all the same. Frees s; NULL: AN_OK. */
an_status an_ch_stream_finish(an_ch_stream *s, int wait_ms, an_error *err);

#endif
