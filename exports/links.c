/*
 * links.c - download links for files in the local directory, served on the
 * service's HTTP port:
 *
 *   <base>/downloads/<key>?exp=<unix seconds>&sig=<base64url(HMAC-SHA-256(
 *       secret, "<key>\n<exp>"))>
 *
 * The key names the file (a job id and an extension, nothing else: no '/',
 * no ".."); the signature binds the key and the expiry, so a link cannot be
 * pointed at another file or made to last longer. Verification recomputes
 * the tag and compares in constant time; an expired link gets 410 Gone, a
 * bad or altered one 403. Replicas that serve each other's links share the
 * secret (ANALYTICS_EXPORTS_LINK_SECRET) and the directory.
 */
#include "exports/exports.h"

#include "common/crypto.h"
#include "common/timeutil.h"

#include <stdlib.h>
#include <string.h>

struct exports_links {
    unsigned char *secret;
    size_t secret_len;
    char *dir;
    char *base;
    pthread_mutex_t mu; /* base is set once the HTTP port is known */
};

bool exports_key_valid(const char *key)
{
    if (!key || !*key || strlen(key) > 200 || key[0] == '.' || strstr(key, ".."))
        return false;
    for (const char *p = key; *p; p++) {
        char c = *p;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

an_status exports_links_new(const void *secret, size_t secret_len, const char *dir,
                            exports_links **out, an_error *err)
{
    if (secret_len < 32)
        return an_error_set(err, AN_INVALID_ARGUMENT,
                            "the link secret must be at least 32 bytes (has %zu)", secret_len);
    exports_links *l = calloc(1, sizeof(*l));
    if (!l)
        abort();
    l->secret = malloc(secret_len);
    if (!l->secret)
        abort();
    memcpy(l->secret, secret, secret_len);
    l->secret_len = secret_len;
    l->dir = strdup(dir);
    pthread_mutex_init(&l->mu, NULL);
    *out = l;
    return AN_OK;
}

void exports_links_set_base(exports_links *l, const char *base_url)
{
    pthread_mutex_lock(&l->mu);
    free(l->base);
    l->base = strdup(base_url);
    size_t n = strlen(l->base);
    while (n > 0 && l->base[n - 1] == '/')
        l->base[--n] = '\0';
    pthread_mutex_unlock(&l->mu);
}

void exports_links_free(exports_links *l)
{
    if (!l)
        return;
    if (l->secret)
        memset(l->secret, 0, l->secret_len);
    free(l->secret);
    free(l->dir);
    free(l->base);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static void tag(const exports_links *l, const char *key, long long exp, an_buf *out)
{
    char msg[320];
    int n = snprintf(msg, sizeof(msg), "%s\n%lld", key, exp);
    unsigned char mac[AN_CRYPTO_SHA256_LEN];
    an_crypto_hmac_sha256(l->secret, l->secret_len, msg, (size_t)n, mac, NULL);
    an_crypto_b64url_encode(mac, sizeof(mac), out);
}

void exports_links_url(const exports_links *l, const char *key, int64_t expires_at, an_buf *out)
{
    exports_links *m = (exports_links *)l;
    pthread_mutex_lock(&m->mu);
    an_buf_adds(out, l->base ? l->base : "");
    pthread_mutex_unlock(&m->mu);
    an_buf_addf(out, "%s%s?exp=%lld&sig=", EXPORTS_LINK_PREFIX, key, (long long)expires_at);
    tag(l, key, (long long)expires_at, out);
}

/* The value of parameter name in a raw query (no decoding needed: both
 * parameters are digits and base64url). */
static bool param(const char *query, const char *name, char *out, size_t n)
{
    size_t len = strlen(name);
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t seg = amp ? (size_t)(amp - p) : strlen(p);
        if (seg > len && strncmp(p, name, len) == 0 && p[len] == '=') {
            size_t vlen = seg - len - 1;
            if (vlen >= n)
                return false;
            memcpy(out, p + len + 1, vlen);
            out[vlen] = '\0';
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}

an_status exports_links_verify(const exports_links *l, const char *key, const char *query,
                               int64_t now_s, an_error *err)
{
    char exp_s[32], sig[128];
    if (!exports_key_valid(key) || !param(query, "exp", exp_s, sizeof(exp_s)) ||
        !param(query, "sig", sig, sizeof(sig)))
        return an_error_set(err, AN_PERMISSION_DENIED, "not a signed download link");
    char *end;
    long long exp = strtoll(exp_s, &end, 10);
    if (*end || end == exp_s || exp_s[0] == '+' || exp_s[0] == '-' || (exp_s[0] == '0' && exp_s[1]))
        return an_error_set(err, AN_PERMISSION_DENIED, "bad link expiry");
    an_buf want = AN_BUF_INIT;
    tag(l, key, exp, &want);
    bool ok = an_crypto_str_equal(want.data, sig);
    an_buf_free(&want);
    if (!ok)
        return an_error_set(err, AN_PERMISSION_DENIED, "bad link signature");
    if (now_s >= exp)
        return an_error_set(err, AN_FAILED_PRECONDITION, "the link expired");
    return AN_OK;
}

void exports_links_serve(const an_http_request *req, an_http_response *res, void *arg)
{
    exports_links *l = arg;
    const char *key = req->path + strlen(req->prefix);
    an_error err;
    an_error_clear(&err);
    an_status s = exports_links_verify(l, key, req->query, an_time_now_ms() / 1000, &err);
    if (s == AN_FAILED_PRECONDITION) {
        an_http_respond_text(res, 410, "this download link has expired: ask for a new one");
        return;
    }
    if (s != AN_OK) {
        an_http_respond_text(res, 403, "forbidden: not a valid download link");
        return;
    }
    an_buf path = AN_BUF_INIT;
    an_buf_addf(&path, "%s/%s", l->dir, key);
    const char *dot = strrchr(key, '.');
    const char *ctype = "application/octet-stream";
    exports_format f;
    if (dot && exports_format_parse(strcmp(dot + 1, "ndjson") == 0 ? "json" : dot + 1, &f) == 0)
        ctype = exports_format_content_type(f);
    an_buf name = AN_BUF_INIT;
    an_buf_addf(&name, "export-%s", key);
    an_http_response_header(res, "Cache-Control", "private, no-store");
    s = an_http_respond_file(res, an_buf_str(&path), ctype, an_buf_str(&name), &err);
    if (s == AN_NOT_FOUND)
        an_http_respond_text(res, 404, "the file of this export no longer exists");
    else if (s != AN_OK)
        an_http_respond_text(res, 500, "cannot read the file");
    an_buf_free(&path);
    an_buf_free(&name);
}
