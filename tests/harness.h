/*
 * harness.h - helpers shared by the integration tests: the local stack's
 * coordinates, child processes, and an independent path to ClickHouse and
 * Redis (curl and redis-cli) so tests check outcomes without trusting the
 * code under test.
 *
 * Every function that cannot do its job fails the current test (ck_abort).
 * Returned strings are heap-allocated: the caller frees them.
 */
#ifndef AN_TEST_HARNESS_H
#define AN_TEST_HARNESS_H

#include <cjson/cJSON.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Value of a stack variable (ANALYTICS_NATS_URL, ...); fails the test when unset. */
const char *th_env(const char *name);

/* A name unique to this process and call: "<prefix>_<pid>_<n>_<random>". Free it. */
char *th_unique(const char *prefix);

/* Path of a built program, e.g. th_bin("tests/helpers/testsvc") ->
 * "<build dir>/tests/helpers/testsvc" (build dir: $ANALYTICS_BUILD_DIR or "build").
 * Returns a static buffer, valid until the next call. */
const char *th_bin(const char *rel);

/* Start a program with the current environment plus extra "K=V" entries
 * (NULL-terminated, may be NULL). Its stdout and stderr go to log_path when
 * not NULL (appended), else are inherited. Returns the pid. */
pid_t th_spawn(const char *path, char *const argv[], char *const extra_env[], const char *log_path);

/* Wait up to timeout_ms for pid to exit. Returns 0 and sets *status (as
 * waitpid) and *maxrss_kb (may be NULL) when it did, -1 on timeout. */
int th_wait(pid_t pid, int timeout_ms, int *status, long *maxrss_kb);

/* SIGKILL and reap; harmless when already gone. */
void th_kill(pid_t pid);

/* Run a shell command, return its stdout (trailing newline kept); *exit_code
 * gets the exit status (may be NULL). */
char *th_run(const char *cmd, int *exit_code);

/* Run SQL as the ClickHouse admin user through curl; returns the body
 * (TabSeparated unless the SQL says FORMAT). Fails the test on a server error. */
char *th_ch(const char *sql);

/* Run SQL as the given ClickHouse user/password; returns the body and sets
 * *http_code (the HTTP status). Does not fail on a server error. */
char *th_ch_as(const char *user, const char *password, const char *sql, long *http_code);

/* First number of a scalar query's result, e.g. th_ch_count("SELECT count() FROM t"). */
long long th_ch_count(const char *sql);

/* Run a redis-cli command against the stack's Redis; returns its raw output. */
char *th_redis(const char *args);

int64_t th_now_ms(void);
void th_sleep_ms(int ms);

/* Poll cond_cmd (a shell command) until it exits 0 or timeout_ms passes;
 * returns 0 when it did. */
int th_eventually(const char *cond_cmd, int timeout_ms);

/* The whole file at path; "" when it cannot be read. Free it. */
char *th_read_file(const char *path);

/* Whether the file at path (a process's log) contains needle. */
bool th_log_has(const char *path, const char *needle);

/* Poll the file at path every 20 ms until it contains needle or timeout_ms
 * passes; returns whether it did. */
bool th_wait_log(const char *path, const char *needle, int timeout_ms);

/* The HTTP port a service logged at start ("... (port N)") in its log at
 * path, 0 when none. */
int th_log_port(const char *path);

/* The value of one series (its exact text, labels included) on
 * http://127.0.0.1:port/metrics, -1 when absent. */
double th_metric(int port, const char *series);

/* "Bearer <HS256 JWT>" signed with secret, with the claims sub, tid, scope
 * and roles (roles_json: a JSON array text, e.g. "[\"analyst\"]"); a NULL
 * claim is omitted. exp is now + ttl_s (negative: already expired). Free it. */
char *th_bearer(const char *secret, const char *sub, const char *tid, const char *scope,
                const char *roles_json, long ttl_s);

/* Request subject over nc with body (NULL: empty) and the Authorization
 * header auth (NULL: none); returns the parsed JSON reply (cJSON_Delete it).
 * Fails the test when no reply comes within timeout_ms or it is not JSON. */
cJSON *th_request(natsConnection *nc, const char *subject, const char *auth, const char *body,
                  int64_t timeout_ms);

/* A TCP proxy on a loopback port of its own to 127.0.0.1:target_port, for
 * tests that break a client's connection while the server stays up (a
 * network blip). Connections are copied both ways by threads of the test
 * process. */
typedef struct th_proxy th_proxy;
th_proxy *th_proxy_start(int target_port);
int th_proxy_port(const th_proxy *p);
/* Close every connection open now, and for down_ms every new one at once;
 * then connect again as usual (the client reconnects through the proxy,
 * which keeps listening). Returns how many were open. */
int th_proxy_cut(th_proxy *p, int down_ms);
/* Cut, stop listening, free. NULL is fine. */
void th_proxy_stop(th_proxy *p);

#endif
