#include "tests/harness.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jwt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

const char *th_env(const char *name)
{
    const char *v = getenv(name);
    if (!v || !*v)
        ck_abort_msg("%s is not set: run the integration tests inside the local stack "
                     "(deploy/local/test.sh)",
                     name);
    return v;
}

char *th_unique(const char *prefix)
{
    static unsigned n;
    char *s;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    unsigned r = (unsigned)(ts.tv_nsec ^ (getpid() << 8)) & 0xffffff;
    if (asprintf(&s, "%s_%d_%u_%06x", prefix, (int)getpid(), n++, r) < 0)
        ck_abort_msg("out of memory");
    return s;
}

const char *th_bin(const char *rel)
{
    static char path[1024];
    const char *b = getenv("ANALYTICS_BUILD_DIR");
    snprintf(path, sizeof(path), "%s/%s", b && *b ? b : "build", rel);
    return path;
}

pid_t th_spawn(const char *path, char *const argv[], char *const extra_env[], const char *log_path)
{
    pid_t pid = fork();
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    if (pid == 0) {
        if (extra_env)
            for (char *const *e = extra_env; *e; e++)
                putenv(*e);
        if (log_path) {
            int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
            if (fd >= 0) {
                dup2(fd, 1);
                dup2(fd, 2);
                close(fd);
            }
        }
        setpgid(0, 0);
        execv(path, argv);
        fprintf(stderr, "exec %s: %s\n", path, strerror(errno));
        _exit(127);
    }
    return pid;
}

int th_wait(pid_t pid, int timeout_ms, int *status, long *maxrss_kb)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        struct rusage ru;
        int st;
        pid_t r = wait4(pid, &st, WNOHANG, &ru);
        if (r == pid) {
            if (status)
                *status = st;
            if (maxrss_kb)
                *maxrss_kb = ru.ru_maxrss;
            return 0;
        }
        if (r < 0)
            return -1;
        if (th_now_ms() >= deadline)
            return -1;
        th_sleep_ms(10);
    }
}

void th_kill(pid_t pid)
{
    if (pid <= 0)
        return;
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

char *th_run(const char *cmd, int *exit_code)
{
    FILE *p = popen(cmd, "r");
    ck_assert_msg(p != NULL, "popen %s: %s", cmd, strerror(errno));
    size_t cap = 4096, len = 0;
    char *out = malloc(cap);
    ck_assert_msg(out != NULL, "out of memory");
    size_t n;
    while ((n = fread(out + len, 1, cap - len - 1, p)) > 0) {
        len += n;
        if (cap - len < 2) {
            cap *= 2;
            char *bigger = realloc(out, cap);
            ck_assert_msg(bigger != NULL, "out of memory");
            out = bigger;
        }
    }
    out[len] = '\0';
    int st = pclose(p);
    if (exit_code)
        *exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    return out;
}

/* Write sql to a temp file so no shell quoting is involved. */
static char *write_temp(const char *content)
{
    char *path = strdup("/tmp/an-test-XXXXXX");
    int fd = mkstemp(path);
    ck_assert_msg(fd >= 0, "mkstemp: %s", strerror(errno));
    size_t len = strlen(content);
    ck_assert_msg(write(fd, content, len) == (ssize_t)len, "write temp");
    close(fd);
    return path;
}

char *th_ch_as(const char *user, const char *password, const char *sql, long *http_code)
{
    char *sqlfile = write_temp(sql);
    char *cmd;
    ck_assert(asprintf(&cmd,
                       "curl -s -o /dev/stdout -w '\\n%%{http_code}' --data-binary @%s "
                       "-H 'X-ClickHouse-User: %s' -H 'X-ClickHouse-Key: %s' '%s/'",
                       sqlfile, user, password, th_env("ANALYTICS_CLICKHOUSE_URL")) > 0);
    char *out = th_run(cmd, NULL);
    free(cmd);
    unlink(sqlfile);
    free(sqlfile);
    char *nl = strrchr(out, '\n');
    long code = 0;
    if (nl) {
        code = strtol(nl + 1, NULL, 10);
        *nl = '\0';
    }
    if (http_code)
        *http_code = code;
    return out;
}

char *th_ch(const char *sql)
{
    long code;
    char *out = th_ch_as(th_env("ANALYTICS_CLICKHOUSE_ADMIN_USER"),
                         getenv("ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD")
                             ? getenv("ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD")
                             : "",
                         sql, &code);
    ck_assert_msg(code == 200, "ClickHouse said %ld to %s: %s", code, sql, out);
    return out;
}

long long th_ch_count(const char *sql)
{
    char *out = th_ch(sql);
    long long v = strtoll(out, NULL, 10);
    free(out);
    return v;
}

char *th_redis(const char *args)
{
    const char *url = th_env("ANALYTICS_REDIS_URL");
    char *cmd;
    ck_assert(asprintf(&cmd, "redis-cli -u '%s' %s", url, args) > 0);
    char *out = th_run(cmd, NULL);
    free(cmd);
    return out;
}

int64_t th_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void th_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

int th_eventually(const char *cond_cmd, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        int st = system(cond_cmd);
        if (st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0)
            return 0;
        if (th_now_ms() >= deadline)
            return -1;
        th_sleep_ms(100);
    }
}

char *th_read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return strdup("");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = calloc(1, (size_t)n + 1);
    ck_assert_ptr_nonnull(s);
    if (n > 0 && fread(s, 1, (size_t)n, f) != (size_t)n)
        s[0] = '\0';
    fclose(f);
    return s;
}

bool th_log_has(const char *path, const char *needle)
{
    char *s = th_read_file(path);
    bool yes = strstr(s, needle) != NULL;
    free(s);
    return yes;
}

bool th_wait_log(const char *path, const char *needle, int timeout_ms)
{
    int64_t deadline = th_now_ms() + timeout_ms;
    while (th_now_ms() < deadline) {
        if (th_log_has(path, needle))
            return true;
        th_sleep_ms(20);
    }
    return false;
}

int th_log_port(const char *path)
{
    char *s = th_read_file(path);
    const char *at = strstr(s, "(port ");
    int port = at ? atoi(at + 6) : 0;
    free(s);
    return port;
}

double th_metric(int port, const char *series)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "curl -s --max-time 5 http://127.0.0.1:%d/metrics", port);
    char *out = th_run(cmd, NULL);
    double v = -1;
    size_t n = strlen(series);
    for (char *line = out; line && *line;) {
        char *nl = strchr(line, '\n');
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            v = strtod(line + n + 1, NULL);
        line = nl ? nl + 1 : NULL;
    }
    free(out);
    return v;
}

char *th_bearer(const char *secret, const char *sub, const char *tid, const char *scope,
                const char *roles_json, long ttl_s)
{
    jwt_t *jwt = NULL;
    ck_assert_int_eq(jwt_new(&jwt), 0);
    if (sub)
        jwt_add_grant(jwt, "sub", sub);
    if (tid)
        jwt_add_grant(jwt, "tid", tid);
    if (scope)
        jwt_add_grant(jwt, "scope", scope);
    if (roles_json) {
        char *grants;
        ck_assert(asprintf(&grants, "{\"roles\":%s}", roles_json) > 0);
        ck_assert_msg(jwt_add_grants_json(jwt, grants) == 0, "bad roles %s", roles_json);
        free(grants);
    }
    jwt_add_grant_int(jwt, "exp", (long)time(NULL) + ttl_s);
    jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret));
    char *t = jwt_encode_str(jwt);
    jwt_free(jwt);
    ck_assert_ptr_nonnull(t);
    char *bearer;
    ck_assert(asprintf(&bearer, "Bearer %s", t) > 0);
    free(t);
    return bearer;
}

cJSON *th_request(natsConnection *nc, const char *subject, const char *auth, const char *body,
                  int64_t timeout_ms)
{
    natsMsg *m = NULL, *reply = NULL;
    ck_assert(natsMsg_Create(&m, subject, NULL, body, body ? (int)strlen(body) : 0) == NATS_OK);
    if (auth)
        ck_assert(natsMsgHeader_Set(m, "Authorization", auth) == NATS_OK);
    natsStatus s = natsConnection_RequestMsg(&reply, nc, m, timeout_ms);
    natsMsg_Destroy(m);
    ck_assert_msg(s == NATS_OK, "%s: no reply (%s)", subject, natsStatus_GetText(s));
    cJSON *j = cJSON_ParseWithLength(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply));
    ck_assert_msg(j != NULL, "%s: reply is not JSON: %.*s", subject, natsMsg_GetDataLength(reply),
                  natsMsg_GetData(reply));
    natsMsg_Destroy(reply);
    return j;
}

/* ------------------------------------------------------------ TCP proxy */

#define PROXY_MAX_CONNS 64

typedef struct proxy_conn {
    th_proxy *p;
    int client, server; /* -1 once closed */
    int running;        /* copy threads still running */
} proxy_conn;

struct th_proxy {
    int lfd, port, target;
    pthread_t acceptor;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    proxy_conn *conns[PROXY_MAX_CONNS];
    int threads;          /* copy threads running, all connections */
    int64_t refuse_until; /* th_now_ms(): connections closed at once until then */
};

typedef struct proxy_dir {
    proxy_conn *c;
    bool to_server;
} proxy_dir;

static void proxy_shut(proxy_conn *c)
{
    shutdown(c->client, SHUT_RDWR);
    shutdown(c->server, SHUT_RDWR);
}

static void *proxy_copy(void *arg)
{
    proxy_dir *d = arg;
    proxy_conn *c = d->c;
    int from = d->to_server ? c->client : c->server, to = d->to_server ? c->server : c->client;
    free(d);
    char buf[65536];
    for (;;) {
        ssize_t n = read(from, buf, sizeof(buf));
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = send(to, buf + off, (size_t)(n - off), MSG_NOSIGNAL);
            if (w <= 0)
                goto done;
            off += w;
        }
    }
done:;
    th_proxy *p = c->p;
    pthread_mutex_lock(&p->mu);
    proxy_shut(c); /* one way ended: end the other too */
    if (--c->running == 0) {
        close(c->client);
        close(c->server);
        for (int i = 0; i < PROXY_MAX_CONNS; i++)
            if (p->conns[i] == c)
                p->conns[i] = NULL;
        free(c);
    }
    p->threads--;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int loopback_socket(int port, bool listen_on)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    int rc = listen_on ? bind(fd, (struct sockaddr *)&a, sizeof(a))
                       : connect(fd, (struct sockaddr *)&a, sizeof(a));
    if (rc == 0 && listen_on)
        rc = listen(fd, 16);
    if (rc != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static void *proxy_accept(void *arg)
{
    th_proxy *p = arg;
    for (;;) {
        int cfd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL; /* shut down by th_proxy_stop */
        }
        pthread_mutex_lock(&p->mu);
        bool refuse = th_now_ms() < p->refuse_until;
        pthread_mutex_unlock(&p->mu);
        int sfd = refuse ? -1 : loopback_socket(p->target, false);
        if (sfd < 0) { /* down, or the server is: the client sees its connection closed */
            close(cfd);
            continue;
        }
        proxy_conn *c = calloc(1, sizeof(*c));
        if (!c)
            abort();
        *c = (proxy_conn){.p = p, .client = cfd, .server = sfd, .running = 2};
        pthread_mutex_lock(&p->mu);
        bool cut = th_now_ms() < p->refuse_until; /* while connecting */
        int slot = -1;
        for (int i = 0; i < PROXY_MAX_CONNS && slot < 0 && !cut; i++)
            if (!p->conns[i])
                slot = i;
        if (slot < 0) {
            pthread_mutex_unlock(&p->mu);
            close(cfd);
            close(sfd);
            free(c);
            continue;
        }
        p->conns[slot] = c;
        p->threads += 2;
        for (int dir = 0; dir < 2; dir++) {
            proxy_dir *d = malloc(sizeof(*d));
            if (!d)
                abort();
            *d = (proxy_dir){.c = c, .to_server = dir == 0};
            pthread_t t;
            pthread_attr_t at;
            pthread_attr_init(&at);
            pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
            if (pthread_create(&t, &at, proxy_copy, d) != 0)
                abort();
            pthread_attr_destroy(&at);
        }
        pthread_mutex_unlock(&p->mu);
    }
}

th_proxy *th_proxy_start(int target_port)
{
    th_proxy *p = calloc(1, sizeof(*p));
    ck_assert_ptr_nonnull(p);
    p->target = target_port;
    p->lfd = loopback_socket(0, true);
    ck_assert_msg(p->lfd >= 0, "proxy: cannot listen: %s", strerror(errno));
    struct sockaddr_in a;
    socklen_t alen = sizeof(a);
    ck_assert_int_eq(getsockname(p->lfd, (struct sockaddr *)&a, &alen), 0);
    p->port = ntohs(a.sin_port);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    ck_assert_int_eq(pthread_create(&p->acceptor, NULL, proxy_accept, p), 0);
    return p;
}

int th_proxy_port(const th_proxy *p)
{
    return p->port;
}

int th_proxy_cut(th_proxy *p, int down_ms)
{
    int n = 0;
    pthread_mutex_lock(&p->mu);
    p->refuse_until = th_now_ms() + down_ms;
    for (int i = 0; i < PROXY_MAX_CONNS; i++)
        if (p->conns[i]) {
            proxy_shut(p->conns[i]);
            n++;
        }
    pthread_mutex_unlock(&p->mu);
    return n;
}

void th_proxy_stop(th_proxy *p)
{
    if (!p)
        return;
    shutdown(p->lfd, SHUT_RDWR);
    pthread_join(p->acceptor, NULL);
    close(p->lfd);
    th_proxy_cut(p, 0);
    pthread_mutex_lock(&p->mu);
    while (p->threads > 0)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}
