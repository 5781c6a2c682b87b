/*
 * an_redis_connect against real servers: the stack's Redis (SELECT, PING,
 * reconnect after the connection is cut) and a redis-server of its own
 * started with a password and an ACL user (AUTH both ways, NOAUTH).
 */
#include "common/redis.h"
#include "tests/harness.h"

#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The stack's URL with another db number. */
static char *url_with_db(int db)
{
    const char *url = th_env("ANALYTICS_REDIS_URL");
    const char *slash = strrchr(url, '/');
    ck_assert(slash && slash > url + 8);
    char *u;
    ck_assert(asprintf(&u, "%.*s/%d", (int)(slash - url), url, db) > 0);
    return u;
}

static redisReply *cmd(redisContext *c, const char *a, const char *b, const char *d)
{
    const char *argv[] = {a, b, d};
    int argc = d ? 3 : b ? 2 : 1;
    redisReply *r;
    an_error err;
    ck_assert_msg(an_redis_argv(c, argc, argv, NULL, &r, &err) == AN_OK, "%s", err.message);
    return r;
}

START_TEST(test_redis_connect_selects_the_db_of_the_url)
{
    char *url = url_with_db(5);
    char *key = th_unique("an:test:redis");
    redisContext *c;
    an_error err;
    ck_assert_int_eq(an_redis_connect(&c, url, 2000, &err), AN_OK);
    ck_assert_int_eq(an_redis_ping(c, &err), AN_OK);
    freeReplyObject(cmd(c, "SET", key, "in-db-5"));

    char *args, *out;
    ck_assert(asprintf(&args, "-n 5 GET %s", key) > 0);
    out = th_redis(args); /* -n after -u: redis-cli selects db 5 */
    ck_assert_str_eq(out, "in-db-5\n");
    free(out);
    free(args);
    ck_assert(asprintf(&args, "EXISTS %s", key) > 0);
    out = th_redis(args); /* the stack URL's db 0 */
    ck_assert_str_eq(out, "0\n");
    free(out);
    free(args);
    freeReplyObject(cmd(c, "DEL", key, NULL));
    redisFree(c);
    free(key);
    free(url);
}
END_TEST

START_TEST(test_redis_connect_db_out_of_range_is_invalid_argument)
{
    char *url = url_with_db(99999);
    redisContext *c;
    an_error err;
    ck_assert_int_eq(an_redis_connect(&c, url, 2000, &err), AN_INVALID_ARGUMENT);
    ck_assert_ptr_null(c);
    ck_assert_msg(strstr(err.message, "database 99999"), "%s", err.message);
    free(url);
}
END_TEST

START_TEST(test_redis_ensure_reconnects_after_the_connection_is_cut)
{
    char *url = url_with_db(6);
    char *key = th_unique("an:test:redis");
    redisContext *c = NULL;
    an_error err;
    ck_assert_int_eq(an_redis_ensure(&c, url, 2000, &err), AN_OK);
    freeReplyObject(cmd(c, "SET", key, "v"));
    redisContext *before = c;
    ck_assert_int_eq(an_redis_ensure(&c, url, 2000, &err), AN_OK);
    ck_assert_ptr_eq(c, before); /* healthy: kept */

    redisReply *id = cmd(c, "CLIENT", "ID", NULL);
    char *args;
    ck_assert(asprintf(&args, "CLIENT KILL ID %lld", id->integer) > 0);
    freeReplyObject(id);
    char *out = th_redis(args);
    ck_assert_str_eq(out, "1\n");
    free(out);
    free(args);

    const char *get[] = {"GET", key};
    redisReply *r;
    ck_assert_int_eq(an_redis_argv(c, 2, get, NULL, &r, &err), AN_UNAVAILABLE);
    ck_assert_ptr_null(r);
    ck_assert(c->err != 0);
    ck_assert_int_eq(an_redis_ensure(&c, url, 2000, &err), AN_OK);
    r = cmd(c, "GET", key, NULL); /* db 6 selected again */
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    ck_assert_str_eq(r->str, "v");
    freeReplyObject(r);
    freeReplyObject(cmd(c, "DEL", key, NULL));
    redisFree(c);
    free(key);
    free(url);
}
END_TEST

START_TEST(test_redis_password_given_to_a_server_without_one_fails_without_echoing_it)
{
    const char *url = th_env("ANALYTICS_REDIS_URL");
    char *u;
    ck_assert(asprintf(&u, "redis://:topsecret@%s", url + 8) > 0);
    redisContext *c;
    an_error err;
    ck_assert_int_eq(an_redis_connect(&c, u, 2000, &err), AN_UNAVAILABLE);
    ck_assert_msg(strstr(err.message, "authentication"), "%s", err.message);
    ck_assert_ptr_null(strstr(err.message, "topsecret"));
    free(u);
}
END_TEST

/* A redis-server of our own with a password, on a free loopback port. */
static int free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert(bind(s, (struct sockaddr *)&a, sizeof(a)) == 0);
    socklen_t len = sizeof(a);
    ck_assert(getsockname(s, (struct sockaddr *)&a, &len) == 0);
    close(s);
    return ntohs(a.sin_port);
}

START_TEST(test_redis_auth_with_password_and_acl_user)
{
    int port = free_port();
    char ports[16], dir[] = "/tmp/an-redis-auth-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(ports, sizeof(ports), "%d", port);
    char *argv[] = {(char *)"redis-server",
                    (char *)"--bind",
                    (char *)"127.0.0.1",
                    (char *)"--port",
                    ports,
                    (char *)"--requirepass",
                    (char *)"s3cr@t",
                    (char *)"--save",
                    (char *)"",
                    (char *)"--appendonly",
                    (char *)"no",
                    (char *)"--dir",
                    dir,
                    NULL};
    pid_t srv = th_spawn("/usr/bin/redis-server", argv, NULL, "/dev/null");
    char *cond;
    ck_assert(asprintf(&cond,
                       "redis-cli -p %d -a 's3cr@t' --no-auth-warning ping 2>/dev/null |"
                       " grep -q PONG",
                       port) > 0);
    ck_assert_msg(th_eventually(cond, 5000) == 0, "redis-server on %d did not start", port);
    free(cond);

    redisContext *c;
    an_error err;
    char url[256];
    snprintf(url, sizeof(url), "redis://127.0.0.1:%d/0", port);
    ck_assert_int_eq(an_redis_connect(&c, url, 2000, &err), AN_UNAVAILABLE);
    ck_assert_msg(strstr(err.message, "requires a password"), "%s", err.message);

    snprintf(url, sizeof(url), "redis://:wrong@127.0.0.1:%d/0", port);
    ck_assert_int_eq(an_redis_connect(&c, url, 2000, &err), AN_UNAVAILABLE);
    ck_assert_msg(strstr(err.message, "authentication"), "%s", err.message);

    /* '@' percent-encoded, and raw */
    snprintf(url, sizeof(url), "redis://:s3cr%%40t@127.0.0.1:%d/2", port);
    ck_assert_int_eq(an_redis_connect(&c, url, 2000, &err), AN_OK);
    const char *setuser[] = {"ACL", "SETUSER", "svc", "on", ">svc:pw", "~*", "+@all"};
    redisReply *r;
    ck_assert_int_eq(an_redis_argv(c, 7, setuser, NULL, &r, &err), AN_OK);
    freeReplyObject(r);
    redisFree(c);
    snprintf(url, sizeof(url), "redis://:s3cr@t@127.0.0.1:%d", port);
    ck_assert_int_eq(an_redis_connect(&c, url, 2000, &err), AN_OK);
    redisFree(c);

    snprintf(url, sizeof(url), "redis://svc:svc%%3Apw@127.0.0.1:%d/0", port);
    ck_assert_int_eq(an_redis_connect(&c, url, 2000, &err), AN_OK);
    r = cmd(c, "ACL", "WHOAMI", NULL);
    ck_assert_str_eq(r->str, "svc");
    freeReplyObject(r);
    redisFree(c);
    snprintf(url, sizeof(url), "redis://svc:nope@127.0.0.1:%d/0", port);
    ck_assert_int_eq(an_redis_connect(&c, url, 2000, &err), AN_UNAVAILABLE);
    ck_assert_msg(strstr(err.message, "as svc"), "%s", err.message);

    th_kill(srv);
    char *rm;
    ck_assert(asprintf(&rm, "rm -rf %s", dir) > 0);
    free(th_run(rm, NULL));
    free(rm);
}
END_TEST

Suite *redis_suite(void)
{
    Suite *s = suite_create("redis");
    TCase *tc = tcase_create("connect");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_redis_connect_selects_the_db_of_the_url);
    tcase_add_test(tc, test_redis_connect_db_out_of_range_is_invalid_argument);
    tcase_add_test(tc, test_redis_ensure_reconnects_after_the_connection_is_cut);
    tcase_add_test(tc, test_redis_password_given_to_a_server_without_one_fails_without_echoing_it);
    tcase_add_test(tc, test_redis_auth_with_password_and_acl_user);
    suite_add_tcase(s, tc);
    return s;
}
