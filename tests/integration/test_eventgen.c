/*
 * eventgen - the sample-traffic generator (bench/eventgen) as a user runs it:
 * its JSON envelopes are valid and varied, a seed reproduces the same bytes,
 * its TabSeparated rows load into a copy of analytics.events, and --publish
 * lands every event in a JetStream stream (checked through the stream, not
 * through eventgen's own report).
 */
#include "common/timeutil.h"
#include "common/ulid.h"
#include "tests/harness.h"

#include <check.h>
#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define END     "2026-03-01T00:00:00Z"
#define END_MS  1772323200000LL
#define WEEK_MS (7 * 86400000LL)

/* ---- helpers --------------------------------------------------------------- */

static char *eventgen(const char *args, int *rc)
{
    char *cmd;
    ck_assert(asprintf(&cmd, "%s %s", th_bin("bench/eventgen"), args) > 0);
    char *out = th_run(cmd, rc);
    free(cmd);
    return out;
}

/* Split text into lines in place; returns the count (at most max). */
static int split_lines(char *text, char **lines, int max)
{
    int n = 0;
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l && n < max;
         l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    return n;
}

static const char *str_at(const cJSON *obj, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* Does any string in the tree contain needle, or any key equal key? */
static bool tree_has(const cJSON *node, const char *key, const char *needle)
{
    for (const cJSON *c = node ? node->child : NULL; c; c = c->next) {
        if (key && c->string && strcmp(c->string, key) == 0)
            return true;
        if (needle && cJSON_IsString(c) && strstr(c->valuestring, needle))
            return true;
        if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && tree_has(c, key, needle))
            return true;
    }
    return false;
}

/* A "+<digit>" or "(<digit>" phone-looking run inside a longer text. */
static bool text_has_phone(const char *s)
{
    for (const char *p = s; *p; p++)
        if ((*p == '+' || *p == '(') && p[1] >= '0' && p[1] <= '9' && p != s)
            return true;
    return false;
}

static bool texts_have_phone(const cJSON *node)
{
    for (const cJSON *c = node ? node->child : NULL; c; c = c->next) {
        if (cJSON_IsString(c) && strchr(c->valuestring, ' ') && strlen(c->valuestring) > 30 &&
            text_has_phone(c->valuestring))
            return true;
        if ((cJSON_IsObject(c) || cJSON_IsArray(c)) && texts_have_phone(c))
            return true;
    }
    return false;
}

typedef struct seen {
    char names[64][64];
    int count[64];
    int n;
} seen;

static void seen_add(seen *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->names[i], name) == 0) {
            s->count[i]++;
            return;
        }
    ck_assert_int_lt(s->n, 64);
    snprintf(s->names[s->n], sizeof(s->names[0]), "%s", name);
    s->count[s->n++] = 1;
}

/* ---- envelopes ------------------------------------------------------------- */

START_TEST(test_eventgen_json_envelopes_are_valid_varied_and_carry_pii)
{
    int rc;
    char *out = eventgen("--json 1000 --seed 7 --end " END, &rc);
    ck_assert_int_eq(rc, 0);
    static char *lines[2000];
    int n = split_lines(out, lines, 2000);
    ck_assert_int_eq(n, 1000);

    seen tenants = {0}, types = {0};
    int with_user_email = 0, with_billing_address = 0, with_ip = 0, text_email = 0;
    int text_phone = 0, service_actors = 0, nested_arrays = 0, booleans = 0;
    long total_bytes = 0;
    int64_t prev_ms = 0;
    for (int i = 0; i < n; i++) {
        size_t len = strlen(lines[i]);
        total_bytes += (long)len;
        ck_assert_msg(len >= 250 && len <= 700, "line %d is %zu bytes: %s", i, len, lines[i]);
        cJSON *ev = cJSON_Parse(lines[i]);
        ck_assert_msg(ev != NULL, "line %d is not JSON: %s", i, lines[i]);

        const char *id = str_at(ev, "id"), *type = str_at(ev, "type");
        const char *tenant = str_at(ev, "tenantId"), *occurred = str_at(ev, "occurredAt");
        const char *corr = str_at(ev, "correlationId");
        ck_assert_msg(id && type && tenant && occurred && corr, "line %d lacks a field: %s", i,
                      lines[i]);
        an_ulid ulid;
        ck_assert_msg(an_ulid_parse(id, &ulid, NULL) == AN_OK, "bad ULID %s", id);
        int64_t ms;
        an_error err;
        ck_assert_msg(an_time_parse(occurred, &ms, &err) == AN_OK, "occurredAt %s: %s", occurred,
                      err.message);
        ck_assert_msg(ms >= END_MS - WEEK_MS && ms < END_MS, "occurredAt %s outside the window",
                      occurred);
        ck_assert_int_ge(ms, prev_ms); /* spread over the window in event order */
        prev_ms = ms;
        ck_assert_int_eq(an_ulid_time_ms(&ulid), ms);
        ck_assert_msg(strchr(type, '.') && type[0] >= 'a' && type[0] <= 'z', "type %s", type);
        ck_assert_int_eq(strlen(corr), 36);

        const cJSON *actor = cJSON_GetObjectItemCaseSensitive(ev, "actor");
        ck_assert(cJSON_IsObject(actor));
        const char *atype = str_at(actor, "type"), *aid = str_at(actor, "id");
        ck_assert(atype && aid && *aid);
        ck_assert_msg(strcmp(atype, "user") == 0 || strcmp(atype, "service") == 0, "actor %s",
                      atype);
        service_actors += strcmp(atype, "service") == 0;

        const cJSON *data = cJSON_GetObjectItemCaseSensitive(ev, "data");
        ck_assert_msg(cJSON_IsObject(data) && data->child, "data of line %d", i);
        const cJSON *user = cJSON_GetObjectItemCaseSensitive(data, "user");
        const char *email = user ? str_at(user, "email") : NULL;
        with_user_email += email && strchr(email, '@');
        const cJSON *billing = cJSON_GetObjectItemCaseSensitive(data, "billing");
        with_billing_address +=
            billing && cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(billing, "address"));
        with_ip += tree_has(data, "ip", NULL);
        /* PII-looking values inside free text */
        const char *text[] = {str_at(data, "body"), str_at(data, "comment"),
                              str_at(data, "feedback"), str_at(data, "note")};
        for (size_t k = 0; k < 4; k++)
            text_email += text[k] && strchr(text[k], '@') != NULL;
        text_phone += texts_have_phone(data);
        for (const cJSON *c = data->child; c; c = c->next) {
            nested_arrays += cJSON_IsArray(c) && c->child && cJSON_IsObject(c->child);
            booleans += cJSON_IsBool(c);
        }
        seen_add(&tenants, tenant);
        seen_add(&types, type);
        cJSON_Delete(ev);
    }
    long avg = total_bytes / n;
    ck_assert_msg(avg >= 300 && avg <= 600, "average envelope %ld bytes", avg);
    ck_assert_int_eq(tenants.n, 5);
    int most = 0, least = n;
    for (int i = 0; i < tenants.n; i++) {
        most = tenants.count[i] > most ? tenants.count[i] : most;
        least = tenants.count[i] < least ? tenants.count[i] : least;
    }
    ck_assert_msg(most >= 3 * least, "tenant volume not skewed: %d vs %d", most, least);
    ck_assert_msg(types.n >= 25, "only %d event types", types.n);
    ck_assert_msg(with_user_email > 0 && with_billing_address > 0 && with_ip > 0,
                  "PII missing: user.email %d, billing.address %d, ip %d", with_user_email,
                  with_billing_address, with_ip);
    ck_assert_msg(text_email > 0 && text_phone > 0,
                  "no PII inside free text: %d e-mails, %d phones", text_email, text_phone);
    ck_assert_int_gt(service_actors, 0);
    ck_assert_int_gt(nested_arrays, 0);
    ck_assert_int_gt(booleans, 0);
    free(out);
}
END_TEST

START_TEST(test_eventgen_same_seed_gives_same_bytes_in_every_mode)
{
    int rc1, rc2, rc3;
    char *a = eventgen("--json 1000 --seed 42 --end " END, &rc1);
    char *b = eventgen("--json 1000 --seed 42 --end " END, &rc2);
    char *c = eventgen("--json 1000 --seed 43 --end " END, &rc3);
    ck_assert_int_eq(rc1 | rc2 | rc3, 0);
    ck_assert_int_gt(strlen(a), 300000);
    ck_assert_msg(strcmp(a, b) == 0, "same seed, different output");
    ck_assert_msg(strcmp(a, c) != 0, "different seeds, same output");

    /* --tsv describes the same events: ids and tenants in the same order */
    char *tsv = eventgen("--tsv 1000 --seed 42 --end " END, &rc1);
    ck_assert_int_eq(rc1, 0);
    static char *jl[1100], *tl[1100];
    static char hashes[1000][65], actors[1000][40];
    ck_assert_int_eq(split_lines(a, jl, 1100), 1000);
    ck_assert_int_eq(split_lines(tsv, tl, 1100), 1000);
    for (int i = 0; i < 1000; i++) {
        cJSON *ev = cJSON_Parse(jl[i]);
        ck_assert(ev != NULL);
        char want[128];
        snprintf(want, sizeof(want), "%s\t%s\t%s\t", str_at(ev, "tenantId"), str_at(ev, "id"),
                 str_at(ev, "type"));
        ck_assert_msg(strncmp(tl[i], want, strlen(want)) == 0, "row %d: %.80s, want %s", i, tl[i],
                      want);
        /* actor_id (8th column) is a keyed hash: one per actor, distinct actors differ */
        const char *f = tl[i];
        for (int k = 0; k < 7; k++)
            f = strchr(f, '\t') + 1;
        snprintf(hashes[i], sizeof(hashes[i]), "%.64s", f);
        snprintf(actors[i], sizeof(actors[i]), "%s",
                 str_at(cJSON_GetObjectItemCaseSensitive(ev, "actor"), "id"));
        for (int j = 0; j < i; j++)
            ck_assert_msg((strcmp(actors[i], actors[j]) == 0) ==
                              (strcmp(hashes[i], hashes[j]) == 0),
                          "actors %s/%s hash to %s/%s", actors[i], actors[j], hashes[i], hashes[j]);
        cJSON_Delete(ev);
    }
    free(a);
    free(b);
    free(c);
    free(tsv);
}
END_TEST

START_TEST(test_eventgen_tsv_rows_load_into_a_copy_of_the_hot_tier)
{
    char *table = th_unique("analytics.evgen");
    char *sql, *cmd;
    ck_assert(asprintf(&sql, "CREATE TABLE %s AS analytics.events", table) > 0);
    free(th_ch(sql));
    free(sql);
    ck_assert(asprintf(&cmd,
                       "%s --tsv 2000 --seed 5 --hmac-key k --key-id kid7 | curl -sS -f "
                       "-H 'X-ClickHouse-User: %s' -H 'X-ClickHouse-Key: %s' --data-binary @- "
                       "'%s/?query=INSERT%%20INTO%%20%s%%20FORMAT%%20TabSeparated'",
                       th_bin("bench/eventgen"), th_env("ANALYTICS_CLICKHOUSE_ADMIN_USER"),
                       th_env("ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD"),
                       th_env("ANALYTICS_CLICKHOUSE_URL"), table) > 0);
    int rc;
    char *out = th_run(cmd, &rc);
    ck_assert_msg(rc == 0, "insert failed: %s", out);
    free(out);
    free(cmd);

    ck_assert(
        asprintf(&sql,
                 "SELECT count(), uniqExact(event_id), uniqExact(tenant_id), "
                 "uniqExact(event_name), countIf(length(actor_id) = 64), "
                 "countIf(actor_key_id = 'kid7'), "
                 "countIf(length(prop_keys) = length(prop_values) AND length(prop_keys) > 0), "
                 "countIf(has(prop_keys, 'billing.address.city')) > 0, "
                 "countIf(has(prop_keys, 'user.email')) > 0 FROM %s",
                 table) > 0);
    char *res = th_ch(sql);
    free(sql);
    ck_assert_str_eq(res, "2000\t2000\t5\t33\t2000\t2000\t2000\t1\t1\n");
    free(res);

    /* zipfian activity: a few users act far more often than the rest */
    ck_assert(asprintf(&sql,
                       "SELECT count() FROM %s WHERE actor_type = 'user' GROUP BY actor_id "
                       "ORDER BY count() DESC LIMIT 1",
                       table) > 0);
    res = th_ch(sql);
    free(sql);
    long top = atol(res);
    ck_assert_msg(top >= 10, "most active user has only %ld of 2000 events", top);
    free(res);

    ck_assert(asprintf(&sql, "DROP TABLE %s", table) > 0);
    free(th_ch(sql));
    free(sql);
    free(table);
}
END_TEST

START_TEST(test_eventgen_rate_limit_paces_the_events)
{
    int64_t t0 = th_now_ms(), wall0 = an_time_now_ms();
    int rc;
    char *out = eventgen("--json 200 --rate 500 --window 0", &rc);
    int64_t took = th_now_ms() - t0;
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(took >= 350 && took < 10000, "200 events at 500/s took %lld ms", (long long)took);
    /* --window 0: occurredAt is the time each event was made */
    static char *lines[300];
    ck_assert_int_eq(split_lines(out, lines, 300), 200);
    cJSON *first = cJSON_Parse(lines[0]), *last = cJSON_Parse(lines[199]);
    int64_t f, l;
    ck_assert(an_time_parse(str_at(first, "occurredAt"), &f, NULL) == AN_OK);
    ck_assert(an_time_parse(str_at(last, "occurredAt"), &l, NULL) == AN_OK);
    ck_assert_msg(f >= wall0 - 1000 && l <= an_time_now_ms() + 1000 && l - f >= 300,
                  "occurredAt %lld..%lld, run from %lld", (long long)f, (long long)l,
                  (long long)wall0);
    cJSON_Delete(first);
    cJSON_Delete(last);
    free(out);
}
END_TEST

/* ---- publishing ------------------------------------------------------------ */

static natsConnection *nc;
static jsCtx *js;

static void nats_setup(void)
{
    ck_assert_int_eq(natsConnection_ConnectTo(&nc, th_env("ANALYTICS_NATS_URL")), NATS_OK);
    ck_assert_int_eq(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
}

static void nats_teardown(void)
{
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    js = NULL;
    nc = NULL;
    /* waits for nats.c's threads: an ack callback still running at exit leaks */
    nats_CloseAndWait(2000);
}

/* A memory stream capturing <prefix>.>, named after prefix; returns its name. */
static char *add_stream(const char *prefix)
{
    char *stream = strdup(prefix);
    for (char *p = stream; *p; p++)
        *p = *p == '.' ? '_' : *p;
    char subj[128];
    snprintf(subj, sizeof(subj), "%s.>", prefix);
    const char *subjects[] = {subj};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = stream;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_MemoryStorage;
    jsErrCode jerr = 0;
    ck_assert_int_eq(js_AddStream(NULL, js, &cfg, NULL, &jerr), NATS_OK);
    return stream;
}

/* How many messages the stream holds. */
static uint64_t stream_msgs(const char *stream)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    ck_assert_int_eq(js_GetStreamInfo(&si, js, stream, NULL, &jerr), NATS_OK);
    uint64_t n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return n;
}

/* _i: 0 = js_PublishAsync (the default), 1 = --lean (core protocol); 2 and 3:
 * the same with every event made before the first publish (bit 2) */
static const char *const publishers[] = {"", "--lean", "--pregenerate", "--lean --pregenerate"};

START_TEST(test_eventgen_publish_lands_every_event_in_the_stream)
{
    const char *how = publishers[_i];
    char *prefix = th_unique("evgen");
    char *stream = add_stream(prefix);
    jsErrCode jerr = 0;

    char args[512];
    snprintf(args, sizeof(args), "--publish 1000 --seed 3 --prefix %s --max-pending 64 %s 2>&1",
             prefix, how);
    int rc;
    char *out = eventgen(args, &rc);
    ck_assert_msg(rc == 0, "eventgen failed: %s", out);
    ck_assert_msg(strstr(out, "published=1000 acked=1000 duplicates=0 errors=0"), "report: %s",
                  out);
    free(out);

    ck_assert_int_eq(stream_msgs(stream), 1000);

    /* subject events-style: <prefix>.<service>.<type>, Nats-Msg-Id = envelope id */
    for (uint64_t seq = 1; seq <= 1000; seq += 111) {
        natsMsg *m = NULL;
        ck_assert_int_eq(js_GetMsg(&m, js, stream, seq, NULL, &jerr), NATS_OK);
        cJSON *ev = cJSON_ParseWithLength(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m));
        ck_assert(ev != NULL);
        const char *type = str_at(ev, "type"), *s = natsMsg_GetSubject(m);
        size_t pl = strlen(prefix), tl = strlen(type), sl = strlen(s);
        ck_assert_msg(strncmp(s, prefix, pl) == 0 && s[pl] == '.' && sl > pl + tl + 2 &&
                          strcmp(s + sl - tl, type) == 0 && s[sl - tl - 1] == '.',
                      "subject %s for type %s", s, type);
        const char *msgid = NULL;
        ck_assert_int_eq(natsMsgHeader_Get(m, "Nats-Msg-Id", &msgid), NATS_OK);
        ck_assert_str_eq(msgid, str_at(ev, "id"));
        cJSON_Delete(ev);
        natsMsg_Destroy(m);
    }

    /* the same seed again, once made on the fly and once made up front:
     * JetStream drops the copies by Nats-Msg-Id, so both made the same ids */
    snprintf(args, sizeof(args), "--publish 1000 --seed 3 --prefix %s --end " END " %s 2>&1",
             prefix, how);
    out = eventgen(args, &rc);
    ck_assert_msg(rc == 0, "eventgen failed: %s", out);
    free(out);
    snprintf(args, sizeof(args), "--publish 1000 --seed 3 --prefix %s --end " END " %s 2>&1",
             prefix, publishers[_i ^ 2]);
    out = eventgen(args, &rc);
    ck_assert_msg(rc == 0 && strstr(out, "acked=1000 duplicates=1000"), "rerun: %s", out);
    free(out);
    ck_assert_int_eq(stream_msgs(stream), 2000);

    ck_assert_int_eq(js_DeleteStream(js, stream, NULL, &jerr), NATS_OK);
    free(stream);
    free(prefix);
}
END_TEST

/* --wait-signal: the events are made, then nothing is published until
 * SIGUSR1 (how bench/ingest.sh starts its clock after the making) */
START_TEST(test_eventgen_pregenerated_events_wait_for_the_signal)
{
    char *prefix = th_unique("evgen_go");
    char *stream = add_stream(prefix);
    jsErrCode jerr = 0;

    char *log = th_unique("/tmp/evgen-go");
    char *argv[] = {(char *)th_bin("bench/eventgen"),
                    "--publish",
                    "500",
                    "--prefix",
                    prefix,
                    "--lean",
                    "--pregenerate",
                    "--wait-signal",
                    NULL};
    pid_t pid = th_spawn(argv[0], argv, NULL, log);
    ck_assert_msg(th_wait_log(log, "eventgen: generated=500 ", 20000), "no generated line");
    th_sleep_ms(300);
    ck_assert_int_eq(stream_msgs(stream), 0); /* made, not sent */

    ck_assert_int_eq(kill(pid, SIGUSR1), 0);
    int status = -1;
    ck_assert_int_eq(th_wait(pid, 20000, &status, NULL), 0);
    ck_assert_int_eq(status, 0);
    ck_assert(th_log_has(log, "published=500 acked=500 duplicates=0 errors=0"));
    ck_assert_int_eq(stream_msgs(stream), 500);

    /* SIGTERM while it waits: it stops, publishing nothing */
    unlink(log);
    pid = th_spawn(argv[0], argv, NULL, log);
    ck_assert_msg(th_wait_log(log, "eventgen: generated=500 ", 20000), "no generated line");
    ck_assert_int_eq(kill(pid, SIGTERM), 0);
    ck_assert_msg(th_wait(pid, 10000, &status, NULL) == 0, "eventgen ignored SIGTERM");
    ck_assert(th_log_has(log, "published=0 "));
    ck_assert_int_eq(stream_msgs(stream), 500);

    ck_assert_int_eq(js_DeleteStream(js, stream, NULL, &jerr), NATS_OK);
    unlink(log);
    free(log);
    free(stream);
    free(prefix);
}
END_TEST

START_TEST(test_eventgen_publish_without_a_stream_fails_and_says_why)
{
    char *prefix = th_unique("evgen_nostream");
    char args[256];
    snprintf(args, sizeof(args), "--publish 100000 --prefix %s %s 2>&1", prefix, publishers[_i]);
    int64_t t0 = th_now_ms();
    int rc;
    char *out = eventgen(args, &rc);
    ck_assert_msg(rc == 1, "exit status %d: %s", rc, out);
    ck_assert_msg(th_now_ms() - t0 < 20000, "took %lld ms to give up",
                  (long long)(th_now_ms() - t0));
    ck_assert_msg(strstr(out, "publishes failed, first: no JetStream stream captures"),
                  "output: %s", out);
    free(out);
    free(prefix);
}
END_TEST

START_TEST(test_eventgen_rejects_bad_usage)
{
    int rc;
    char *out = eventgen("--json 10 --tsv 10 2>&1", &rc);
    ck_assert_int_eq(rc, 2);
    free(out);
    out = eventgen("--json 0 2>&1", &rc);
    ck_assert_int_eq(rc, 2);
    free(out);
    out = eventgen("--json 5 --window 3 weeks 2>&1", &rc);
    ck_assert_int_eq(rc, 2);
    free(out);
    out = eventgen("--tsv 5 --tier cold 2>&1", &rc);
    ck_assert_int_eq(rc, 2);
    free(out);
    out = eventgen("--json 5 --pregenerate 2>&1", &rc); /* a --publish option */
    ck_assert_int_eq(rc, 2);
    free(out);
    out = eventgen("--publish 0 --pregenerate 2>&1", &rc); /* endless: cannot be made first */
    ck_assert_int_eq(rc, 2);
    free(out);
    out = eventgen("--json 5 --end yesterday 2>&1", &rc);
    ck_assert_int_eq(rc, 2);
    ck_assert_ptr_nonnull(strstr(out, "--end"));
    free(out);
}
END_TEST

START_TEST(test_eventgen_audit_tsv_rows_load_into_a_copy_of_the_audit_tier)
{
    char *table = th_unique("analytics_audit.evgen");
    char *sql, *cmd;
    ck_assert(asprintf(&sql, "CREATE TABLE %s AS analytics_audit.events", table) > 0);
    free(th_ch(sql));
    free(sql);
    ck_assert(asprintf(&cmd,
                       "%s --tsv 1000 --seed 5 --tier audit --prefix evt | curl -sS -f "
                       "-H 'X-ClickHouse-User: %s' -H 'X-ClickHouse-Key: %s' --data-binary @- "
                       "'%s/?query=INSERT%%20INTO%%20%s%%20FORMAT%%20TabSeparated'",
                       th_bin("bench/eventgen"), th_env("ANALYTICS_CLICKHOUSE_ADMIN_USER"),
                       th_env("ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD"),
                       th_env("ANALYTICS_CLICKHOUSE_URL"), table) > 0);
    int rc;
    char *out = th_run(cmd, &rc);
    ck_assert_msg(rc == 0, "insert failed: %s", out);
    free(out);
    free(cmd);
    /* the payload is the envelope itself: its id, type and tenant match the columns */
    ck_assert(asprintf(&sql,
                       "SELECT count(), uniqExact(event_id), "
                       "countIf(visitParamExtractString(payload, 'id') = event_id AND "
                       "visitParamExtractString(payload, 'type') = event_name AND "
                       "visitParamExtractString(payload, 'tenantId') = tenant_id), "
                       "countIf(subject = concat('evt.', splitByChar('.', subject)[2], '.', "
                       "event_name)), max(stream_seq) FROM %s",
                       table) > 0);
    char *res = th_ch(sql);
    free(sql);
    ck_assert_str_eq(res, "1000\t1000\t1000\t1000\t1000\n");
    free(res);
    ck_assert(asprintf(&sql, "DROP TABLE %s", table) > 0);
    free(th_ch(sql));
    free(sql);
    free(table);
}
END_TEST

Suite *eventgen_suite(void)
{
    Suite *s = suite_create("eventgen");
    TCase *tc = tcase_create("generate");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_eventgen_json_envelopes_are_valid_varied_and_carry_pii);
    tcase_add_test(tc, test_eventgen_same_seed_gives_same_bytes_in_every_mode);
    tcase_add_test(tc, test_eventgen_tsv_rows_load_into_a_copy_of_the_hot_tier);
    tcase_add_test(tc, test_eventgen_audit_tsv_rows_load_into_a_copy_of_the_audit_tier);
    tcase_add_test(tc, test_eventgen_rate_limit_paces_the_events);
    tcase_add_test(tc, test_eventgen_rejects_bad_usage);
    suite_add_tcase(s, tc);
    TCase *pub = tcase_create("publish");
    tcase_set_timeout(pub, 60);
    tcase_add_checked_fixture(pub, nats_setup, nats_teardown);
    tcase_add_loop_test(pub, test_eventgen_publish_lands_every_event_in_the_stream, 0, 4);
    tcase_add_test(pub, test_eventgen_pregenerated_events_wait_for_the_signal);
    tcase_add_loop_test(pub, test_eventgen_publish_without_a_stream_fails_and_says_why, 0, 2);
    suite_add_tcase(s, pub);
    return s;
}
