/*
 * writer_int.h - what the format writers (writer_*.c) share with writer.c.
 */
#ifndef AN_EXPORTS_WRITER_INT_H
#define AN_EXPORTS_WRITER_INT_H

#include "exports/exports.h"

#include <stdio.h>

typedef struct writer_ops {
    /* After the columns are known: write the header (csv) or set up sheets. */
    an_status (*begin)(exports_writer *w, an_error *err);
    an_status (*row)(exports_writer *w, const char *const *fields, const size_t *lens,
                     an_error *err);
    an_status (*finish)(exports_writer *w, an_error *err);
    void (*discard)(exports_writer *w); /* free the format's state without finishing */
} writer_ops;

struct exports_writer {
    const writer_ops *ops;
    exports_format format;
    char *path;
    exports_writer_opts opts;
    size_t ncols;
    char **names;
    exports_coltype *types;
    bool columns_done;
    bool finished;
    uint64_t rows;
    uint64_t bytes; /* written to the file so far */
    /* text formats: buffered output to fd */
    int fd;
    an_buf out;
    void *impl; /* xlsx state */
};

extern const writer_ops exports_csv_ops;
extern const writer_ops exports_json_ops;
extern const writer_ops exports_xlsx_ops;

/* Text formats: write out's content to the file when it holds at least
 * min bytes (0: always), counting bytes. */
an_status exports_writer_flush(exports_writer *w, size_t min, an_error *err);

/* Create the xlsx state (writer_xlsx.c); called by exports_writer_open. */
an_status exports_xlsx_open(exports_writer *w, an_error *err);

/* Parse ClickHouse Date / DateTime text; false for the zero value or junk. */
bool exports_parse_date(const char *s, size_t n, int64_t *days);
bool exports_parse_datetime(const char *s, size_t n, int64_t *epoch_s);

#endif
