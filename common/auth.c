#include "common/auth.h"

#include "common/crypto.h"

#include <cjson/cJSON.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_TOKEN_LEN 16384 /* bytes; a sane JWT is well under 2 KB */
#define MAX_ID_LEN    256   /* tid and sub are ids, not documents */

struct an_auth_verifier {
    unsigned char *secret; /* HS256 key, NULL when not configured */
    size_t secret_len;
    char *pem; /* RS256 public key (PEM), NULL when not configured */
    size_t pem_len;
    bool trusted_headers;
    int64_t leeway_s;
    char *audience, *issuer; /* NULL: not checked */
};

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        abort(); /* as an_buf: no sane recovery from OOM in a service */
    return p;
}

/* ---------------------------------------------------------------- verifier */

static bool pem_is_rsa_public_key(const char *pem)
{
    BIO *bio = BIO_new_mem_buf(pem, -1);
    if (!bio)
        return false;
    EVP_PKEY *key = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
    BIO_free(bio);
    if (!key)
        return false;
    bool ok = EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA;
    EVP_PKEY_free(key);
    return ok;
}

an_status an_auth_verifier_new(const an_auth_config *cfg, an_auth_verifier **out, an_error *err)
{
    *out = NULL;
    an_auth_verifier *v = calloc(1, sizeof(*v));
    if (!v)
        return an_error_set(err, AN_INTERNAL, "out of memory");
    v->trusted_headers = cfg->trusted_headers;
    v->leeway_s = cfg->leeway_s < 0 ? 0 : cfg->leeway_s;
    v->audience = cfg->audience && *cfg->audience ? xstrdup(cfg->audience) : NULL;
    v->issuer = cfg->issuer && *cfg->issuer ? xstrdup(cfg->issuer) : NULL;
    if (cfg->hs256_secret && *cfg->hs256_secret) {
        size_t n = strlen(cfg->hs256_secret);
        if (n < AN_AUTH_HS256_MIN_SECRET) {
            an_auth_verifier_free(v);
            return an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_JWT_SECRET",
                                  "ANALYTICS_JWT_SECRET is too short: %zu bytes, HS256 needs "
                                  "at least %d",
                                  n, AN_AUTH_HS256_MIN_SECRET);
        }
        v->secret = (unsigned char *)xstrdup(cfg->hs256_secret);
        v->secret_len = n;
    }
    if (cfg->rs256_public_pem && *cfg->rs256_public_pem) {
        if (!pem_is_rsa_public_key(cfg->rs256_public_pem)) {
            an_auth_verifier_free(v);
            return an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_JWT_PUBLIC_KEY_FILE",
                                  "ANALYTICS_JWT_PUBLIC_KEY_FILE does not hold an RSA public key "
                                  "in PEM (-----BEGIN PUBLIC KEY-----)");
        }
        v->pem = xstrdup(cfg->rs256_public_pem);
        v->pem_len = strlen(v->pem);
    }
    *out = v;
    return AN_OK;
}

void an_auth_verifier_free(an_auth_verifier *v)
{
    if (!v)
        return;
    if (v->secret) {
        OPENSSL_cleanse(v->secret, v->secret_len);
        free(v->secret);
    }
    free(v->pem);
    free(v->audience);
    free(v->issuer);
    free(v);
}

bool an_auth_verifier_usable(const an_auth_verifier *v)
{
    return v && (v->secret || v->pem || v->trusted_headers);
}

/* ------------------------------------------------------------- the context */

static void free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

void an_auth_clear(an_auth *a)
{
    if (!a)
        return;
    free(a->tenant);
    free(a->user);
    free_list(a->roles, a->nroles);
    free_list(a->scopes, a->nscopes);
    free(a->authorization);
    memset(a, 0, sizeof(*a));
}

static char **copy_list(char *const *src, size_t n)
{
    if (!n)
        return NULL;
    char **dst = calloc(n, sizeof(*dst));
    if (!dst)
        abort();
    for (size_t i = 0; i < n; i++)
        dst[i] = xstrdup(src[i]);
    return dst;
}

void an_auth_copy(an_auth *dst, const an_auth *src)
{
    memset(dst, 0, sizeof(*dst));
    dst->authenticated = src->authenticated;
    dst->trusted = src->trusted;
    dst->tenant = src->tenant ? xstrdup(src->tenant) : NULL;
    dst->user = src->user ? xstrdup(src->user) : NULL;
    dst->roles = copy_list(src->roles, src->nroles);
    dst->nroles = src->nroles;
    dst->scopes = copy_list(src->scopes, src->nscopes);
    dst->nscopes = src->nscopes;
    dst->expires_at = src->expires_at;
    dst->authorization = src->authorization ? xstrdup(src->authorization) : NULL;
}

static void list_add(char ***list, size_t *n, const char *s, size_t len)
{
    char **p = realloc(*list, (*n + 1) * sizeof(**list));
    if (!p)
        abort();
    *list = p;
    p[*n] = strndup(s, len);
    if (!p[*n])
        abort();
    (*n)++;
}

/* Split s on any of seps, skipping empty items and surrounding spaces. */
static void split_into(const char *s, const char *seps, char ***list, size_t *n)
{
    while (s && *s) {
        size_t skip = strspn(s, seps);
        s += skip;
        while (*s == ' ')
            s++;
        size_t len = strcspn(s, seps);
        size_t trimmed = len;
        while (trimmed && s[trimmed - 1] == ' ')
            trimmed--;
        if (trimmed)
            list_add(list, n, s, trimmed);
        s += len;
    }
}

static bool in_list(char *const *list, size_t n, const char *s)
{
    if (!s)
        return false;
    for (size_t i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0)
            return true;
    return false;
}

bool an_auth_has_role(const an_auth *a, const char *role)
{
    return a && a->authenticated && in_list(a->roles, a->nroles, role);
}

bool an_auth_has_scope(const an_auth *a, const char *scope)
{
    return a && a->authenticated && in_list(a->scopes, a->nscopes, scope);
}

bool an_auth_is_platform_admin(const an_auth *a)
{
    return an_auth_has_scope(a, AN_AUTH_SCOPE_PLATFORM_ADMIN);
}

an_status an_auth_require_tenant(const an_auth *a, const char *tenant_id, an_error *err)
{
    if (!a || !a->authenticated)
        return an_error_set(err, AN_UNAUTHENTICATED, "authentication required");
    if (an_auth_is_platform_admin(a))
        return AN_OK;
    if (!tenant_id || !*tenant_id)
        return an_error_field(err, AN_PERMISSION_DENIED, "tenantId",
                              "platform-wide data needs the %s scope",
                              AN_AUTH_SCOPE_PLATFORM_ADMIN);
    if (a->tenant && strcmp(a->tenant, tenant_id) == 0)
        return AN_OK;
    return an_error_field(err, AN_PERMISSION_DENIED, "tenantId",
                          "tenant %s is not the caller's tenant", tenant_id);
}

/* ------------------------------------------------------------------ tokens */

/* The alg named by a token's header, or NULL when the header is unreadable. */
static char *token_alg(const char *token, size_t head_len)
{
    an_buf json = AN_BUF_INIT;
    if (an_crypto_b64url_decode(token, head_len, &json, NULL) != AN_OK) {
        an_buf_free(&json);
        return NULL;
    }
    cJSON *head = cJSON_ParseWithLength(an_buf_str(&json), json.len);
    an_buf_free(&json);
    char *alg = NULL;
    const cJSON *a = cJSON_GetObjectItemCaseSensitive(head, "alg");
    if (cJSON_IsString(a))
        alg = xstrdup(a->valuestring);
    cJSON_Delete(head);
    return alg;
}

static an_status unauth(an_auth *out, an_error *err, const char *why)
{
    an_auth_clear(out);
    return an_error_set(err, AN_UNAUTHENTICATED, "invalid token: %s", why);
}

static an_status read_claims(const an_auth_verifier *v, const cJSON *claims, an_auth *out,
                             an_error *err)
{
    time_t now = time(NULL);
    const cJSON *exp = cJSON_GetObjectItemCaseSensitive(claims, "exp");
    if (!cJSON_IsNumber(exp))
        return unauth(out, err, "no exp claim");
    if ((double)now > exp->valuedouble + (double)v->leeway_s)
        return unauth(out, err, "expired");
    const cJSON *nbf = cJSON_GetObjectItemCaseSensitive(claims, "nbf");
    if (nbf && !cJSON_IsNumber(nbf))
        return unauth(out, err, "nbf is not a number");
    if (nbf && (double)now + (double)v->leeway_s < nbf->valuedouble)
        return unauth(out, err, "not valid yet (nbf)");
    out->expires_at = (int64_t)exp->valuedouble;
    if (v->issuer) {
        const cJSON *iss = cJSON_GetObjectItemCaseSensitive(claims, "iss");
        if (!cJSON_IsString(iss) || strcmp(iss->valuestring, v->issuer) != 0)
            return unauth(out, err, "not issued by the expected issuer (iss)");
    }
    if (v->audience) {
        const cJSON *aud = cJSON_GetObjectItemCaseSensitive(claims, "aud"), *a;
        bool ok = cJSON_IsString(aud) && strcmp(aud->valuestring, v->audience) == 0;
        if (cJSON_IsArray(aud))
            cJSON_ArrayForEach(a, aud) ok =
                ok || (cJSON_IsString(a) && strcmp(a->valuestring, v->audience) == 0);
        if (!ok)
            return unauth(out, err, "not meant for this audience (aud)");
    }

    const cJSON *sub = cJSON_GetObjectItemCaseSensitive(claims, "sub");
    if (!cJSON_IsString(sub) || !*sub->valuestring || strlen(sub->valuestring) > MAX_ID_LEN)
        return unauth(out, err, "sub claim missing or not a short string");
    out->user = xstrdup(sub->valuestring);

    const cJSON *tid = cJSON_GetObjectItemCaseSensitive(claims, "tid");
    if (tid && !cJSON_IsNull(tid)) {
        if (!cJSON_IsString(tid) || strlen(tid->valuestring) > MAX_ID_LEN)
            return unauth(out, err, "tid claim is not a short string");
        if (*tid->valuestring)
            out->tenant = xstrdup(tid->valuestring);
    }

    const cJSON *roles = cJSON_GetObjectItemCaseSensitive(claims, "roles");
    if (roles && !cJSON_IsNull(roles)) {
        if (!cJSON_IsArray(roles))
            return unauth(out, err, "roles claim is not an array");
        const cJSON *r;
        cJSON_ArrayForEach(r, roles)
        {
            if (!cJSON_IsString(r))
                return unauth(out, err, "roles claim holds a non-string");
            list_add(&out->roles, &out->nroles, r->valuestring, strlen(r->valuestring));
        }
    }

    const cJSON *scope = cJSON_GetObjectItemCaseSensitive(claims, "scope");
    if (cJSON_IsString(scope)) {
        split_into(scope->valuestring, " ", &out->scopes, &out->nscopes);
    } else if (cJSON_IsArray(scope)) {
        const cJSON *s;
        cJSON_ArrayForEach(s, scope)
        {
            if (!cJSON_IsString(s))
                return unauth(out, err, "scope claim holds a non-string");
            list_add(&out->scopes, &out->nscopes, s->valuestring, strlen(s->valuestring));
        }
    } else if (scope && !cJSON_IsNull(scope)) {
        return unauth(out, err, "scope claim is neither a string nor an array");
    }
    out->authenticated = true;
    return AN_OK;
}

an_status an_auth_verify_token(const an_auth_verifier *v, const char *token, an_auth *out,
                               an_error *err)
{
    an_auth_clear(out);
    if (!token || !*token)
        return unauth(out, err, "empty");
    size_t len = strlen(token);
    if (len > MAX_TOKEN_LEN)
        return unauth(out, err, "too long");
    const char *dot1 = strchr(token, '.');
    const char *dot2 = dot1 ? strchr(dot1 + 1, '.') : NULL;
    if (!dot1 || !dot2 || strchr(dot2 + 1, '.'))
        return unauth(out, err, "not a compact JWS (header.payload.signature)");

    /* Pick the key from the header's alg before libjwt sees the token: libjwt
     * 1.10 would happily check an HS256 token with the RSA public key as the
     * HMAC secret. */
    char *alg = token_alg(token, (size_t)(dot1 - token));
    if (!alg)
        return unauth(out, err, "unreadable header");
    jwt_alg_t want;
    const unsigned char *key;
    int key_len;
    if (strcmp(alg, "HS256") == 0 && v && v->secret) {
        want = JWT_ALG_HS256;
        key = v->secret;
        key_len = (int)v->secret_len;
    } else if (strcmp(alg, "RS256") == 0 && v && v->pem) {
        want = JWT_ALG_RS256;
        key = (const unsigned char *)v->pem;
        key_len = (int)v->pem_len;
    } else {
        an_status s = an_error_set(err, AN_UNAUTHENTICATED,
                                   "invalid token: algorithm %.16s is not accepted", alg);
        free(alg);
        return s;
    }
    free(alg);

    jwt_t *jwt = NULL;
    if (jwt_decode(&jwt, token, key, key_len) != 0 || !jwt)
        return unauth(out, err, "bad signature or malformed");
    if (jwt_get_alg(jwt) != want) {
        jwt_free(jwt);
        return unauth(out, err, "algorithm mismatch");
    }
    char *grants = jwt_get_grants_json(jwt, NULL);
    jwt_free(jwt);
    cJSON *claims = grants ? cJSON_Parse(grants) : NULL;
    free(grants);
    if (!cJSON_IsObject(claims)) {
        cJSON_Delete(claims);
        return unauth(out, err, "claims are not a JSON object");
    }
    an_status s = read_claims(v, claims, out, err);
    cJSON_Delete(claims);
    return s;
}

an_status an_auth_from_headers(const an_auth_verifier *v, an_auth_header_fn get, void *ud,
                               an_auth *out, an_error *err)
{
    an_auth_clear(out);
    const char *authz = get(ud, "Authorization");
    if (authz && *authz) {
        if (strncasecmp(authz, "Bearer ", 7) != 0)
            return an_error_set(err, AN_UNAUTHENTICATED,
                                "Authorization header must be \"Bearer <token>\"");
        const char *token = authz + 7;
        while (*token == ' ')
            token++;
        an_status s = an_auth_verify_token(v, token, out, err);
        if (s == AN_OK)
            out->authorization = xstrdup(authz);
        return s;
    }
    if (v && v->trusted_headers) {
        const char *user = get(ud, "X-User-Id");
        if (user && *user) {
            out->authenticated = true;
            out->trusted = true;
            out->user = xstrdup(user);
            const char *tenant = get(ud, "X-Tenant-Id");
            if (tenant && *tenant)
                out->tenant = xstrdup(tenant);
            split_into(get(ud, "X-Roles"), ",", &out->roles, &out->nroles);
            split_into(get(ud, "X-Scopes"), " ,", &out->scopes, &out->nscopes);
            return AN_OK;
        }
    }
    return an_error_set(err, AN_UNAUTHENTICATED, "missing Authorization header");
}
