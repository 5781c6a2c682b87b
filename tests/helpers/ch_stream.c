/*
 * ch_stream - stream N rows of system.numbers through an_ch_query and check
 * them, so a test can read this process's peak RSS (wait4 ru_maxrss) and see
 * that it does not grow with N.
 *
 *   ch_stream ROWS
 *
 * Connects as the stack's reader user (ANALYTICS_CLICKHOUSE_URL,
 * ANALYTICS_CLICKHOUSE_READER_USER/PASSWORD). Prints "rows=N sum=S bad=B"
 * and exits 0 when every row was as expected, 1 otherwise.
 */
#include "common/ch.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t rows, sum, bad;
} tally;

static an_status on_row(void *ud, const an_ch_row *row, an_error *err)
{
    (void)err;
    tally *t = ud;
    uint64_t n = strtoull(row->fields[0], NULL, 10);
    char want[32];
    snprintf(want, sizeof(want), "n%" PRIu64, n);
    if (n != row->index || row->ncols != 3 || strcmp(row->fields[1], want) != 0 ||
        row->lens[2] != 40)
        t->bad++;
    t->rows++;
    t->sum += n;
    return AN_OK;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s ROWS\n", argv[0]);
        return 2;
    }
    unsigned long long n = strtoull(argv[1], NULL, 10);
    an_ch_options o = {.url = getenv("ANALYTICS_CLICKHOUSE_URL"),
                       .user = getenv("ANALYTICS_CLICKHOUSE_READER_USER"),
                       .password = getenv("ANALYTICS_CLICKHOUSE_READER_PASSWORD")};
    an_ch *ch;
    an_error err;
    if (an_ch_new(&o, &ch, &err) != AN_OK) {
        fprintf(stderr, "an_ch_new: %s\n", err.message);
        return 1;
    }
    char sql[256];
    snprintf(sql, sizeof(sql),
             "SELECT number, concat('n', toString(number)), "
             "'a constant text forty bytes long........' FROM system.numbers LIMIT %llu",
             n);
    tally t = {0, 0, 0};
    an_status st = an_ch_query(ch, sql, NULL, on_row, &t, &err);
    an_ch_free(ch);
    printf("rows=%" PRIu64 " sum=%" PRIu64 " bad=%" PRIu64 "\n", t.rows, t.sum, t.bad);
    if (st != AN_OK) {
        fprintf(stderr, "an_ch_query: %s: %s\n", an_status_code(st), err.message);
        return 1;
    }
    return t.bad == 0 && t.rows == n ? 0 : 1;
}
