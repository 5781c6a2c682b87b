/*
 * svc_call - send one request to a service over NATS as a given tenant,
 * user and scope, print the reply body on stdout (for the demo steps and
 * the benchmarks; the integration tests use nats.c directly).
 *
 *   svc_call [-t TENANT] [-u USER] [-s SCOPE] [-w TIMEOUT_MS] SUBJECT [JSON]
 *
 * -t "" sends a token without a tenant; -w defaults to 15000 ms. The
 * caller's JWT (HS256, 1 hour) is signed with ANALYTICS_JWT_SECRET; NATS is
 * ANALYTICS_NATS_URL. Exit 0 when the reply is {"data": ...}, 1 on an error
 * reply (the Nats-Service-Error-Code header), 2 when no reply came, the
 * token could not be made or the arguments are wrong.
 */
#include <jwt.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    const char *tenant = "demo", *user = "demo-user", *scope = NULL;
    long timeout = 15000;
    int opt;
    while ((opt = getopt(argc, argv, "t:u:s:w:")) != -1) {
        switch (opt) {
        case 't':
            tenant = optarg;
            break;
        case 'u':
            user = optarg;
            break;
        case 's':
            scope = optarg;
            break;
        case 'w':
            timeout = atol(optarg);
            break;
        default:
            fprintf(stderr, "usage: svc_call [-t TENANT] [-u USER] [-s SCOPE] [-w MS] SUBJECT "
                            "[JSON]\n");
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "svc_call: no subject\n");
        return 2;
    }
    const char *subject = argv[optind];
    const char *body = optind + 1 < argc ? argv[optind + 1] : "";
    const char *secret = getenv("ANALYTICS_JWT_SECRET");
    const char *url = getenv("ANALYTICS_NATS_URL");
    if (!secret || !url) {
        fprintf(stderr, "svc_call: ANALYTICS_JWT_SECRET and ANALYTICS_NATS_URL must be set\n");
        return 2;
    }
    jwt_t *jwt = NULL;
    if (jwt_new(&jwt) != 0)
        return 2;
    jwt_add_grant(jwt, "sub", user);
    if (*tenant)
        jwt_add_grant(jwt, "tid", tenant);
    if (scope)
        jwt_add_grant(jwt, "scope", scope);
    jwt_add_grant_int(jwt, "exp", (long)time(NULL) + 3600);
    jwt_set_alg(jwt, JWT_ALG_HS256, (const unsigned char *)secret, (int)strlen(secret));
    char *token = jwt_encode_str(jwt);
    jwt_free(jwt);
    if (!token)
        return 2;
    char auth[4096];
    snprintf(auth, sizeof(auth), "Bearer %s", token);
    free(token);

    natsConnection *nc = NULL;
    natsMsg *m = NULL, *reply = NULL;
    int rc = 2;
    if (natsConnection_ConnectTo(&nc, url) != NATS_OK) {
        fprintf(stderr, "svc_call: cannot connect to %s\n", url);
        return 2;
    }
    natsStatus s = natsMsg_Create(&m, subject, NULL, body, (int)strlen(body));
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, "Authorization", auth);
    if (s == NATS_OK)
        s = natsConnection_RequestMsg(&reply, nc, m, timeout);
    if (s == NATS_OK) {
        int len = natsMsg_GetDataLength(reply);
        fwrite(natsMsg_GetData(reply), 1, (size_t)len, stdout);
        fputc('\n', stdout);
        const char *code = NULL;
        rc = natsMsgHeader_Get(reply, "Nats-Service-Error-Code", &code) == NATS_OK ? 1 : 0;
    } else {
        fprintf(stderr, "svc_call: %s: %s\n", subject, natsStatus_GetText(s));
    }
    natsMsg_Destroy(reply);
    natsMsg_Destroy(m);
    natsConnection_Destroy(nc);
    /* waits for nats.c's threads: an ack callback still running at exit leaks */
    nats_CloseAndWait(2000);
    return rc;
}
