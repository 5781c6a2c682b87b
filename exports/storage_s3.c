/*
 * storage_s3.c - finished files in an S3-compatible object store (AWS S3,
 * MinIO, Ceph, s3rver, ...): one PUT per file signed with AWS Signature
 * Version 4 (header form, the body's SHA-256 in x-amz-content-sha256), and
 * outputUrl a presigned GET URL (query form, UNSIGNED-PAYLOAD) valid for the
 * configured expiry (S3 accepts at most 7 days).
 *
 * URLs are path-style, <endpoint>/<bucket>/<key>, which every S3-compatible
 * server accepts. A single PUT carries at most 5 GiB on AWS (multipart
 * upload is not implemented: a larger file fails the job with a message
 * saying so).
 *
 * The signer is a set of pure functions (exports_sigv4_*) checked against
 * AWS's published test vectors in tests/unit/test_exports_sigv4.c.
 */
#include "exports/exports.h"

#include "common/crypto.h"
#include "common/timeutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define S3_MAX_PUT (5ULL * 1024 * 1024 * 1024)

/* ---------------------------------------------------------------- SigV4 */

typedef struct kv {
    char *k;
    char *v;
} kv;

static int kv_cmp(const void *a, const void *b)
{
    const kv *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : strcmp(x->v, y->v);
}

/* Canonical query: the pieces of query (already encoded) sorted by name,
 * then value; "name" alone becomes "name=". */
static void canonical_query(an_buf *out, const char *query)
{
    size_t cap = 1;
    for (const char *p = query; *p; p++)
        cap += *p == '&';
    kv *items = calloc(cap, sizeof(kv));
    if (!items)
        abort();
    size_t n = 0;
    for (const char *p = query; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        if (len) {
            const char *eq = memchr(p, '=', len);
            items[n].k = strndup(p, eq ? (size_t)(eq - p) : len);
            items[n].v = eq ? strndup(eq + 1, len - (size_t)(eq - p) - 1) : strdup("");
            n++;
        }
        p = amp ? amp + 1 : NULL;
    }
    qsort(items, n, sizeof(kv), kv_cmp);
    for (size_t i = 0; i < n; i++) {
        an_buf_addf(out, "%s%s=%s", i ? "&" : "", items[i].k, items[i].v);
        free(items[i].k);
        free(items[i].v);
    }
    free(items);
}

/* Header value as SigV4 wants it: trimmed, inner runs of spaces made one. */
static void trimmed(an_buf *out, const char *v)
{
    while (*v == ' ' || *v == '\t')
        v++;
    size_t start = out->len;
    bool space = false;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = true;
            continue;
        }
        if (space && out->len > start)
            an_buf_addc(out, ' ');
        space = false;
        an_buf_addc(out, *v);
    }
}

static void hmac(const void *key, size_t klen, const char *msg, unsigned char out[32])
{
    an_crypto_hmac_sha256(key, klen, msg, strlen(msg), out, NULL);
}

an_status exports_sigv4_sign(const exports_sigv4_request *r, an_buf *canonical,
                             an_buf *string_to_sign, an_buf *authorization, char signature[65],
                             an_error *err)
{
    if (!r->amz_date || strlen(r->amz_date) != 16)
        return an_error_set(err, AN_INVALID_ARGUMENT, "sigv4: amz_date must be YYYYMMDDTHHMMSSZ");
    /* headers: lowercased names, sorted */
    kv *h = calloc(r->nheaders ? r->nheaders : 1, sizeof(kv));
    if (!h)
        abort();
    for (size_t i = 0; i < r->nheaders; i++) {
        h[i].k = strdup(r->headers[i].name);
        for (char *p = h[i].k; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
        an_buf v = AN_BUF_INIT;
        trimmed(&v, r->headers[i].value);
        h[i].v = an_buf_detach(&v, NULL);
    }
    qsort(h, r->nheaders, sizeof(kv), kv_cmp);

    an_buf creq = AN_BUF_INIT, signed_headers = AN_BUF_INIT;
    an_buf_addf(&creq, "%s\n%s\n", r->method, r->path);
    canonical_query(&creq, r->query ? r->query : "");
    an_buf_addc(&creq, '\n');
    for (size_t i = 0; i < r->nheaders; i++) {
        /* a repeated header joins its values with ',' */
        if (i && strcmp(h[i].k, h[i - 1].k) == 0) {
            creq.len--; /* drop the '\n' */
            an_buf_addf(&creq, ",%s\n", h[i].v);
            continue;
        }
        an_buf_addf(&creq, "%s:%s\n", h[i].k, h[i].v);
        an_buf_addf(&signed_headers, "%s%s", signed_headers.len ? ";" : "", h[i].k);
    }
    an_buf_addf(&creq, "\n%s\n%s", an_buf_str(&signed_headers), r->payload_hash);
    for (size_t i = 0; i < r->nheaders; i++) {
        free(h[i].k);
        free(h[i].v);
    }
    free(h);

    char date[9];
    memcpy(date, r->amz_date, 8);
    date[8] = '\0';
    char creq_hash[AN_CRYPTO_SHA256_HEX];
    an_crypto_sha256_hex(creq.data, creq.len, creq_hash, NULL);
    an_buf sts = AN_BUF_INIT;
    an_buf_addf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", r->amz_date, date,
                r->region, r->service, creq_hash);

    an_buf k = AN_BUF_INIT;
    an_buf_addf(&k, "AWS4%s", r->secret_key);
    unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
    hmac(k.data, k.len, date, k1);
    hmac(k1, 32, r->region, k2);
    hmac(k2, 32, r->service, k3);
    hmac(k3, 32, "aws4_request", k4);
    an_crypto_hmac_sha256(k4, 32, sts.data, sts.len, sig, NULL);
    an_crypto_hex(sig, 32, signature);
    memset(k.data, 0, k.len);
    an_buf_free(&k);

    if (authorization)
        an_buf_addf(authorization,
                    "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, "
                    "Signature=%s",
                    r->access_key, date, r->region, r->service, an_buf_str(&signed_headers),
                    signature);
    if (canonical)
        an_buf_add(canonical, creq.data, creq.len);
    if (string_to_sign)
        an_buf_add(string_to_sign, sts.data, sts.len);
    an_buf_free(&creq);
    an_buf_free(&sts);
    an_buf_free(&signed_headers);
    return AN_OK;
}

an_status exports_sigv4_presign(const exports_sigv4_request *r, const char *host, int64_t expires_s,
                                an_buf *out, an_error *err)
{
    if (expires_s < 1 || expires_s > 604800)
        return an_error_set(err, AN_INVALID_ARGUMENT,
                            "presigned URLs last 1 s to 7 days, not %lld s", (long long)expires_s);
    if (!r->amz_date || strlen(r->amz_date) != 16)
        return an_error_set(err, AN_INVALID_ARGUMENT, "sigv4: amz_date must be YYYYMMDDTHHMMSSZ");
    an_buf cred = AN_BUF_INIT, q = AN_BUF_INIT;
    an_buf_addf(&cred, "%s/%.8s/%s/%s/aws4_request", r->access_key, r->amz_date, r->region,
                r->service);
    an_buf_adds(&q, "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
    an_buf_add_uri_encoded(&q, cred.data, cred.len, false);
    an_buf_addf(&q, "&X-Amz-Date=%s&X-Amz-Expires=%lld&X-Amz-SignedHeaders=host", r->amz_date,
                (long long)expires_s);
    exports_sigv4_header hh = {"host", host};
    exports_sigv4_request p = *r;
    p.query = q.data;
    p.headers = &hh;
    p.nheaders = 1;
    p.payload_hash = "UNSIGNED-PAYLOAD";
    char sig[65];
    an_status s = exports_sigv4_sign(&p, NULL, NULL, NULL, sig, err);
    if (s == AN_OK)
        an_buf_addf(out, "%s&X-Amz-Signature=%s", q.data, sig);
    an_buf_free(&cred);
    an_buf_free(&q);
    return s;
}

/* ------------------------------------------------------------- the store */

typedef struct s3_storage {
    exports_storage base;
    char *scheme_host; /* "http://127.0.0.1:4568" (no trailing '/') */
    char *host;        /* "127.0.0.1:4568": the Host header as curl sends it */
    char *base_path;   /* path of the endpoint, "" or "/prefix" */
    char *region, *bucket, *access_key, *secret_key;
    int timeout_ms;
} s3_storage;

static void amz_now(char out[17])
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

/* "/<base>/<bucket>/<encoded key>" */
static void object_path(const s3_storage *s, const char *key, an_buf *out)
{
    an_buf_addf(out, "%s/", s->base_path);
    an_buf_add_uri_encoded(out, s->bucket, strlen(s->bucket), false);
    an_buf_addc(out, '/');
    an_buf_add_uri_encoded(out, key, strlen(key), true);
}

static an_status file_sha256(const char *path, char hex[65], uint64_t *size, an_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return an_error_set(err, AN_INTERNAL, "open %s: %s", path, strerror(errno));
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    char buf[1 << 16];
    size_t n;
    uint64_t total = 0;
    while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
        EVP_DigestUpdate(md, buf, n);
        total += n;
    }
    bool bad = ferror(f);
    fclose(f);
    unsigned char d[32];
    unsigned int dl = 0;
    EVP_DigestFinal_ex(md, d, &dl);
    EVP_MD_CTX_free(md);
    if (bad)
        return an_error_set(err, AN_INTERNAL, "read %s", path);
    an_crypto_hex(d, 32, hex);
    *size = total;
    return AN_OK;
}

static size_t sink(char *p, size_t sz, size_t n, void *ud)
{
    an_buf *b = ud;
    if (b->len < 2048)
        an_buf_add(b, p, sz * n);
    return sz * n;
}

static an_status s3_put(exports_storage *st, const char *path, const char *key,
                        const char *content_type, an_error *err)
{
    s3_storage *s = (s3_storage *)st;
    char hash[65];
    uint64_t size = 0;
    an_status rc = file_sha256(path, hash, &size, err);
    if (rc != AN_OK)
        return rc;
    if (size > S3_MAX_PUT)
        return an_error_set(err, AN_RESOURCE_EXHAUSTED,
                            "the file is %llu bytes; one S3 PUT takes at most 5 GiB and "
                            "multipart upload is not implemented",
                            (unsigned long long)size);
    char date[17];
    amz_now(date);
    an_buf opath = AN_BUF_INIT, auth = AN_BUF_INIT, url = AN_BUF_INIT, body = AN_BUF_INIT;
    object_path(s, key, &opath);
    exports_sigv4_header hs[] = {{"host", s->host},
                                 {"content-type", content_type},
                                 {"x-amz-content-sha256", hash},
                                 {"x-amz-date", date}};
    exports_sigv4_request r = {.method = "PUT",
                               .path = opath.data,
                               .query = "",
                               .headers = hs,
                               .nheaders = 4,
                               .payload_hash = hash,
                               .region = s->region,
                               .service = "s3",
                               .amz_date = date,
                               .access_key = s->access_key,
                               .secret_key = s->secret_key};
    char sig[65];
    exports_sigv4_sign(&r, NULL, NULL, &auth, sig, NULL);
    an_buf_addf(&url, "%s%s", s->scheme_host, opath.data);

    FILE *f = fopen(path, "rb");
    if (!f) {
        rc = an_error_set(err, AN_INTERNAL, "open %s: %s", path, strerror(errno));
        goto out;
    }
    CURL *c = curl_easy_init();
    struct curl_slist *hl = NULL;
    char line[512];
    snprintf(line, sizeof(line), "Content-Type: %s", content_type);
    hl = curl_slist_append(hl, line);
    snprintf(line, sizeof(line), "x-amz-content-sha256: %s", hash);
    hl = curl_slist_append(hl, line);
    snprintf(line, sizeof(line), "x-amz-date: %s", date);
    hl = curl_slist_append(hl, line);
    an_buf ah = AN_BUF_INIT;
    an_buf_addf(&ah, "Authorization: %s", auth.data);
    hl = curl_slist_append(hl, ah.data);
    an_buf_free(&ah);
    hl = curl_slist_append(hl, "Expect:");
    curl_easy_setopt(c, CURLOPT_URL, url.data);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_READDATA, f);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, (curl_off_t)size);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
    if (s->timeout_ms > 0)
        curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)s->timeout_ms);
    CURLcode cc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(hl);
    curl_easy_cleanup(c);
    fclose(f);
    if (cc != CURLE_OK)
        rc = an_error_set(err, AN_UNAVAILABLE, "S3 PUT %s: %s", url.data, curl_easy_strerror(cc));
    else if (code < 200 || code > 299)
        rc = an_error_set(err, code >= 500 || code == 429 ? AN_UNAVAILABLE : AN_INTERNAL,
                          "S3 PUT %s: HTTP %ld: %.300s", url.data, code, an_buf_str(&body));
    if (rc == AN_OK)
        unlink(path);
out:
    an_buf_free(&opath);
    an_buf_free(&auth);
    an_buf_free(&url);
    an_buf_free(&body);
    return rc;
}

static an_status s3_url(exports_storage *st, const char *key, int64_t expires_at, an_buf *out,
                        an_error *err)
{
    s3_storage *s = (s3_storage *)st;
    char date[17];
    amz_now(date);
    int64_t ttl = expires_at - an_time_now_ms() / 1000;
    if (ttl > 604800)
        ttl = 604800;
    if (ttl < 1)
        ttl = 1;
    an_buf opath = AN_BUF_INIT, q = AN_BUF_INIT;
    object_path(s, key, &opath);
    exports_sigv4_request r = {.method = "GET",
                               .path = opath.data,
                               .region = s->region,
                               .service = "s3",
                               .amz_date = date,
                               .access_key = s->access_key,
                               .secret_key = s->secret_key};
    an_status rc = exports_sigv4_presign(&r, s->host, ttl, &q, err);
    if (rc == AN_OK)
        an_buf_addf(out, "%s%s?%s", s->scheme_host, opath.data, q.data);
    an_buf_free(&opath);
    an_buf_free(&q);
    return rc;
}

static void s3_free(exports_storage *st)
{
    s3_storage *s = (s3_storage *)st;
    free(s->scheme_host);
    free(s->host);
    free(s->base_path);
    free(s->region);
    free(s->bucket);
    free(s->access_key);
    if (s->secret_key)
        memset(s->secret_key, 0, strlen(s->secret_key));
    free(s->secret_key);
    free(s);
}

static const exports_storage_ops s3_ops = {"s3", s3_put, s3_url, NULL, s3_free};

an_status exports_storage_s3_new(const exports_s3_config *cfg, exports_storage **out, an_error *err)
{
    const char *e = cfg->endpoint;
    if (!e || (strncmp(e, "http://", 7) != 0 && strncmp(e, "https://", 8) != 0))
        return an_error_set(err, AN_INVALID_ARGUMENT,
                            "ANALYTICS_EXPORTS_S3_ENDPOINT: must be http://host[:port] or "
                            "https://host[:port]");
    if (!cfg->bucket || !*cfg->bucket || !cfg->access_key || !*cfg->access_key ||
        !cfg->secret_key || !*cfg->secret_key)
        return an_error_set(err, AN_INVALID_ARGUMENT,
                            "S3 storage needs ANALYTICS_EXPORTS_S3_BUCKET, _ACCESS_KEY_ID and "
                            "_SECRET_ACCESS_KEY");
    const char *h = strstr(e, "://") + 3;
    const char *slash = strchr(h, '/');
    size_t hl = slash ? (size_t)(slash - h) : strlen(h);
    if (hl == 0)
        return an_error_set(err, AN_INVALID_ARGUMENT, "ANALYTICS_EXPORTS_S3_ENDPOINT: no host");
    s3_storage *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    s->base.ops = &s3_ops;
    s->scheme_host = strndup(e, (size_t)(h - e) + hl);
    s->host = strndup(h, hl);
    s->base_path = strdup(slash ? slash : "");
    size_t bl = strlen(s->base_path);
    while (bl > 0 && s->base_path[bl - 1] == '/')
        s->base_path[--bl] = '\0';
    s->region = strdup(cfg->region && *cfg->region ? cfg->region : "us-east-1");
    s->bucket = strdup(cfg->bucket);
    s->access_key = strdup(cfg->access_key);
    s->secret_key = strdup(cfg->secret_key);
    s->timeout_ms = cfg->timeout_ms;
    *out = &s->base;
    return AN_OK;
}
