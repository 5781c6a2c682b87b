#include "common/auth.h"
#include "common/status.h"

#include <check.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define SECRET       "test-secret-0123456789abcdefghijklmnop" /* >= 32 bytes */
#define OTHER_SECRET "another-secret-0123456789abcdefghijklm"

/* One RSA key pair for the whole suite (generated in the unchecked fixture,
 * i.e. once in the parent process; the forked tests inherit it). */
static char *rsa_private_pem;
static char *rsa_public_pem;
static char *other_private_pem; /* a second pair: "signed by somebody else" */

static char *bio_string(BIO *bio)
{
    char *data;
    long n = BIO_get_mem_data(bio, &data);
    char *s = strndup(data, (size_t)n);
    BIO_free(bio);
    return s;
}

static void gen_pair(char **priv, char **pub)
{
    EVP_PKEY *key = EVP_RSA_gen(2048);
    ck_assert_ptr_nonnull(key);
    BIO *b = BIO_new(BIO_s_mem());
    ck_assert(PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL) == 1);
    *priv = bio_string(b);
    if (pub) {
        b = BIO_new(BIO_s_mem());
        ck_assert(PEM_write_bio_PUBKEY(b, key) == 1);
        *pub = bio_string(b);
    }
    EVP_PKEY_free(key);
}

static void keys_setup(void)
{
    gen_pair(&rsa_private_pem, &rsa_public_pem);
    gen_pair(&other_private_pem, NULL);
}

static void keys_teardown(void)
{
    free(rsa_private_pem);
    free(rsa_public_pem);
    free(other_private_pem);
}

/* Sign claims (a JSON object) with alg and key. The caller frees. */
static char *sign(jwt_alg_t alg, const char *key, const char *claims)
{
    jwt_t *jwt = NULL;
    ck_assert_int_eq(jwt_new(&jwt), 0);
    ck_assert_int_eq(jwt_add_grants_json(jwt, claims), 0);
    ck_assert_int_eq(jwt_set_alg(jwt, alg, (const unsigned char *)key, key ? (int)strlen(key) : 0),
                     0);
    char *tok = jwt_encode_str(jwt);
    jwt_free(jwt);
    ck_assert_ptr_nonnull(tok);
    return tok;
}

/* Claims valid for an hour, plus extra members (",..." or ""). */
static char *claims(const char *extra)
{
    char *s;
    ck_assert(asprintf(&s, "{\"sub\":\"u1\",\"tid\":\"t1\",\"exp\":%lld%s}",
                       (long long)time(NULL) + 3600, extra) > 0);
    return s;
}

static an_auth_verifier *verifier(const char *secret, const char *pem, bool trusted)
{
    an_auth_config cfg = {secret, pem, trusted, 30};
    an_auth_verifier *v = NULL;
    an_error err;
    ck_assert_msg(an_auth_verifier_new(&cfg, &v, &err) == AN_OK, "%s", err.message);
    return v;
}

/* Expect token to be rejected with 401 by v. */
static void assert_rejected(an_auth_verifier *v, const char *token, const char *why)
{
    an_auth a = {0};
    an_error err;
    an_error_clear(&err);
    an_status s = an_auth_verify_token(v, token, &a, &err);
    ck_assert_msg(s == AN_UNAUTHENTICATED, "%s: accepted (status %d)", why, s);
    ck_assert_int_eq(err.code, AN_UNAUTHENTICATED);
    ck_assert_msg(!a.authenticated && !a.user && !a.tenant, "%s: context not anonymous", why);
    ck_assert_msg(!token || !*token || !strstr(err.message, token), "%s: message leaks the token",
                  why);
}

/* A header table for an_auth_from_headers: {name, value, name, value, ..., NULL}. */
static const char *lookup(void *ud, const char *name)
{
    const char **h = ud;
    for (size_t i = 0; h[i]; i += 2)
        if (strcasecmp(h[i], name) == 0)
            return h[i + 1];
    return NULL;
}

START_TEST(test_auth_hs256_token_accepted_with_claims)
{
    an_auth_verifier *v = verifier(SECRET, NULL, false);
    char *c = claims(",\"roles\":[\"analyst\",\"editor\"],\"scope\":\"dashboards:read "
                     "metrics:write\"");
    char *tok = sign(JWT_ALG_HS256, SECRET, c);
    an_auth a = {0};
    an_error err;
    ck_assert_int_eq(an_auth_verify_token(v, tok, &a, &err), AN_OK);
    ck_assert(a.authenticated);
    ck_assert(!a.trusted);
    ck_assert_str_eq(a.user, "u1");
    ck_assert_str_eq(a.tenant, "t1");
    ck_assert_uint_eq(a.nroles, 2);
    ck_assert(an_auth_has_role(&a, "analyst"));
    ck_assert(an_auth_has_role(&a, "editor"));
    ck_assert(!an_auth_has_role(&a, "admin"));
    ck_assert_uint_eq(a.nscopes, 2);
    ck_assert(an_auth_has_scope(&a, "metrics:write"));
    ck_assert(!an_auth_is_platform_admin(&a));
    ck_assert_int_gt(a.expires_at, time(NULL));
    an_auth_clear(&a);
    ck_assert(!a.authenticated);
    free(tok);
    free(c);
    an_auth_verifier_free(v);
}
END_TEST

START_TEST(test_auth_rs256_token_accepted_and_scope_array_grants_platform_admin)
{
    an_auth_verifier *v = verifier(NULL, rsa_public_pem, false);
    char *tok = sign(JWT_ALG_RS256, rsa_private_pem,
                     "{\"sub\":\"ops\",\"exp\":4102444800,\"scope\":[\"platform:admin\"]}");
    an_auth a = {0};
    an_error err;
    ck_assert_msg(an_auth_verify_token(v, tok, &a, &err) == AN_OK, "%s", err.message);
    ck_assert_str_eq(a.user, "ops");
    ck_assert_ptr_null(a.tenant);
    ck_assert(an_auth_is_platform_admin(&a));
    /* a platform admin may act on any tenant and on platform-wide data */
    ck_assert_int_eq(an_auth_require_tenant(&a, "t9", &err), AN_OK);
    ck_assert_int_eq(an_auth_require_tenant(&a, NULL, &err), AN_OK);
    an_auth_clear(&a);
    free(tok);
    an_auth_verifier_free(v);
}
END_TEST

START_TEST(test_auth_both_keys_configured_each_alg_uses_its_own)
{
    an_auth_verifier *v = verifier(SECRET, rsa_public_pem, false);
    char *c = claims("");
    char *hs = sign(JWT_ALG_HS256, SECRET, c);
    char *rs = sign(JWT_ALG_RS256, rsa_private_pem, c);
    an_auth a = {0};
    an_error err;
    ck_assert_int_eq(an_auth_verify_token(v, hs, &a, &err), AN_OK);
    ck_assert_int_eq(an_auth_verify_token(v, rs, &a, &err), AN_OK);
    an_auth_clear(&a);
    /* HS256 signed with the public key as HMAC secret: key confusion */
    char *confused = sign(JWT_ALG_HS256, rsa_public_pem, c);
    assert_rejected(v, confused, "HS256 signed with the RSA public key");
    free(confused);
    free(hs);
    free(rs);
    free(c);
    an_auth_verifier_free(v);
}
END_TEST

START_TEST(test_auth_bad_signature_rejected)
{
    an_auth_verifier *hs = verifier(SECRET, NULL, false);
    an_auth_verifier *rs = verifier(NULL, rsa_public_pem, false);
    char *c = claims("");
    char *wrong_secret = sign(JWT_ALG_HS256, OTHER_SECRET, c);
    assert_rejected(hs, wrong_secret, "HS256 with another secret");
    char *wrong_key = sign(JWT_ALG_RS256, other_private_pem, c);
    assert_rejected(rs, wrong_key, "RS256 with another key");

    /* Tamper with the payload of a good token: swap in another tenant. */
    char *good = sign(JWT_ALG_HS256, SECRET, c);
    char *other;
    ck_assert(asprintf(&other, "{\"sub\":\"u1\",\"tid\":\"t2\",\"exp\":%lld}",
                       (long long)time(NULL) + 3600) > 0);
    char *forged_src = sign(JWT_ALG_HS256, OTHER_SECRET, other);
    char *g1 = strchr(good, '.'), *g2 = strrchr(good, '.');
    char *f1 = strchr(forged_src, '.'), *f2 = strrchr(forged_src, '.');
    char *tampered;
    ck_assert(asprintf(&tampered, "%.*s%.*s%s", (int)(g1 - good), good, (int)(f2 - f1), f1, g2) >
              0);
    assert_rejected(hs, tampered, "payload swapped");
    /* the good one still passes: the rejections above are about the signature */
    an_auth a = {0};
    an_error err;
    ck_assert_int_eq(an_auth_verify_token(hs, good, &a, &err), AN_OK);
    an_auth_clear(&a);
    free(tampered);
    free(forged_src);
    free(other);
    free(good);
    free(wrong_key);
    free(wrong_secret);
    free(c);
    an_auth_verifier_free(hs);
    an_auth_verifier_free(rs);
}
END_TEST

START_TEST(test_auth_expired_and_not_yet_valid_rejected_with_leeway)
{
    an_auth_verifier *v = verifier(SECRET, NULL, false);
    long long now = (long long)time(NULL);
    char buf[256];
    snprintf(buf, sizeof(buf), "{\"sub\":\"u1\",\"tid\":\"t1\",\"exp\":%lld}", now - 3600);
    char *expired = sign(JWT_ALG_HS256, SECRET, buf);
    assert_rejected(v, expired, "expired an hour ago");
    an_error err;
    an_auth a = {0};
    an_auth_verify_token(v, expired, &a, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "expired"));

    snprintf(buf, sizeof(buf), "{\"sub\":\"u1\",\"exp\":%lld}", now - 10);
    char *just_expired = sign(JWT_ALG_HS256, SECRET, buf);
    ck_assert_msg(an_auth_verify_token(v, just_expired, &a, &err) == AN_OK,
                  "10 s late is within the 30 s leeway: %s", err.message);
    an_auth_clear(&a);

    snprintf(buf, sizeof(buf), "{\"sub\":\"u1\",\"exp\":%lld,\"nbf\":%lld}", now + 7200,
             now + 3600);
    char *future = sign(JWT_ALG_HS256, SECRET, buf);
    assert_rejected(v, future, "nbf in an hour");

    char *no_exp = sign(JWT_ALG_HS256, SECRET, "{\"sub\":\"u1\",\"tid\":\"t1\"}");
    assert_rejected(v, no_exp, "no exp");
    free(no_exp);
    free(future);
    free(just_expired);
    free(expired);
    an_auth_verifier_free(v);
}
END_TEST

START_TEST(test_auth_alg_none_rejected)
{
    char *c = claims("");
    char *none = sign(JWT_ALG_NONE, NULL, c);
    an_auth_verifier *hs = verifier(SECRET, NULL, false);
    an_auth_verifier *rs = verifier(NULL, rsa_public_pem, false);
    an_auth_verifier *nokey = verifier(NULL, NULL, false);
    assert_rejected(hs, none, "alg none, HS256 configured");
    assert_rejected(rs, none, "alg none, RS256 configured");
    assert_rejected(nokey, none, "alg none, no key");
    an_auth a = {0};
    an_error err;
    an_auth_verify_token(hs, none, &a, &err);
    ck_assert_ptr_nonnull(strstr(err.message, "none is not accepted"));
    /* "none" with a forged signature appended */
    char *withsig;
    ck_assert(asprintf(&withsig, "%sAAAA", none) > 0);
    assert_rejected(hs, withsig, "alg none with a signature");
    free(withsig);
    free(none);
    free(c);
    an_auth_verifier_free(hs);
    an_auth_verifier_free(rs);
    an_auth_verifier_free(nokey);
}
END_TEST

START_TEST(test_auth_alg_mismatch_rejected)
{
    char *c = claims("");
    an_auth_verifier *rs_only = verifier(NULL, rsa_public_pem, false);
    char *hs = sign(JWT_ALG_HS256, SECRET, c);
    assert_rejected(rs_only, hs, "HS256 token with RS256 config");
    char *confused = sign(JWT_ALG_HS256, rsa_public_pem, c);
    assert_rejected(rs_only, confused, "HS256 signed with the public key, RS256 config");
    an_auth_verifier *hs_only = verifier(SECRET, NULL, false);
    char *rs = sign(JWT_ALG_RS256, rsa_private_pem, c);
    assert_rejected(hs_only, rs, "RS256 token with HS256 config");
    char *hs384 = sign(JWT_ALG_HS384, SECRET, c);
    assert_rejected(hs_only, hs384, "HS384 is not accepted");
    free(hs384);
    free(rs);
    free(confused);
    free(hs);
    free(c);
    an_auth_verifier_free(rs_only);
    an_auth_verifier_free(hs_only);
}
END_TEST

START_TEST(test_auth_malformed_tokens_and_headers_rejected)
{
    an_auth_verifier *v = verifier(SECRET, NULL, false);
    static const char *bad[] = {"",
                                "abc",
                                "a.b",
                                "a.b.c.d",
                                "!!!.???.***",
                                "eyJhbGciOiJIUzI1NiJ9.e30.",
                                "eyJhbGciOiJIUzI1NiJ9..sig",
                                "e30.e30.e30"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_rejected(v, bad[i], bad[i]);

    /* wrong claim types */
    char *c = claims(",\"roles\":\"admin\"");
    char *t = sign(JWT_ALG_HS256, SECRET, c);
    assert_rejected(v, t, "roles as a string");
    free(t);
    free(c);
    t = sign(JWT_ALG_HS256, SECRET, "{\"tid\":\"t1\",\"exp\":4102444800}");
    assert_rejected(v, t, "no sub");
    free(t);

    /* the header itself */
    c = claims("");
    t = sign(JWT_ALG_HS256, SECRET, c);
    char bearer_ok[2048], basic[2048];
    snprintf(bearer_ok, sizeof(bearer_ok), "Bearer %s", t);
    snprintf(basic, sizeof(basic), "Basic %s", t);
    const char *cases[][2] = {{"Authorization", basic},
                              {"Authorization", "Bearer"},
                              {"Authorization", "Bearer "},
                              {"Authorization", t}, /* no scheme */
                              {"Authorization", "Bearer not-a-token"}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *h[] = {cases[i][0], cases[i][1], NULL};
        an_auth a = {0};
        an_error err;
        ck_assert_msg(an_auth_from_headers(v, lookup, h, &a, &err) == AN_UNAUTHENTICATED,
                      "header %s accepted", cases[i][1]);
        ck_assert(!a.authenticated);
    }
    const char *none[] = {NULL};
    an_auth a = {0};
    an_error err;
    ck_assert_int_eq(an_auth_from_headers(v, lookup, none, &a, &err), AN_UNAUTHENTICATED);
    ck_assert_str_eq(err.message, "missing Authorization header");
    /* and the well-formed header passes, the raw value kept for forwarding */
    const char *ok[] = {"authorization", bearer_ok, NULL};
    ck_assert_int_eq(an_auth_from_headers(v, lookup, ok, &a, &err), AN_OK);
    ck_assert_str_eq(a.authorization, bearer_ok);
    an_auth_clear(&a);
    free(t);
    free(c);
    an_auth_verifier_free(v);
}
END_TEST

START_TEST(test_auth_require_tenant_allows_own_tenant_only)
{
    an_auth_verifier *v = verifier(SECRET, NULL, false);
    char *c = claims("");
    char *t = sign(JWT_ALG_HS256, SECRET, c);
    an_auth a = {0};
    an_error err;
    ck_assert_int_eq(an_auth_verify_token(v, t, &a, &err), AN_OK);
    ck_assert_int_eq(an_auth_require_tenant(&a, "t1", &err), AN_OK);
    an_error_clear(&err);
    ck_assert_int_eq(an_auth_require_tenant(&a, "t2", &err), AN_PERMISSION_DENIED);
    ck_assert_int_eq(err.code, AN_PERMISSION_DENIED);
    ck_assert_str_eq(err.field, "tenantId");
    ck_assert_int_eq(an_auth_require_tenant(&a, NULL, &err), AN_PERMISSION_DENIED);
    ck_assert_int_eq(an_auth_require_tenant(&a, "", &err), AN_PERMISSION_DENIED);
    /* a token without tid has no tenant at all */
    char *no_tid = sign(JWT_ALG_HS256, SECRET, "{\"sub\":\"u\",\"exp\":4102444800}");
    ck_assert_int_eq(an_auth_verify_token(v, no_tid, &a, &err), AN_OK);
    ck_assert_int_eq(an_auth_require_tenant(&a, "t1", &err), AN_PERMISSION_DENIED);
    an_auth_clear(&a);
    /* anonymous */
    ck_assert_int_eq(an_auth_require_tenant(&a, "t1", &err), AN_UNAUTHENTICATED);
    ck_assert_int_eq(an_auth_require_tenant(NULL, "t1", &err), AN_UNAUTHENTICATED);
    free(no_tid);
    free(t);
    free(c);
    an_auth_verifier_free(v);
}
END_TEST

START_TEST(test_auth_trusted_headers_only_when_enabled)
{
    const char *h[] = {"X-User-Id",       "dev",      "X-Tenant-Id",        "t7", "X-Roles",
                       "analyst, editor", "X-Scopes", "a:b platform:admin", NULL};
    an_auth_verifier *off = verifier(SECRET, NULL, false);
    an_auth a = {0};
    an_error err;
    ck_assert_int_eq(an_auth_from_headers(off, lookup, h, &a, &err), AN_UNAUTHENTICATED);
    ck_assert(!a.authenticated);

    an_auth_verifier *on = verifier(NULL, NULL, true);
    ck_assert(an_auth_verifier_usable(on));
    ck_assert_int_eq(an_auth_from_headers(on, lookup, h, &a, &err), AN_OK);
    ck_assert(a.authenticated);
    ck_assert(a.trusted);
    ck_assert_str_eq(a.user, "dev");
    ck_assert_str_eq(a.tenant, "t7");
    ck_assert_uint_eq(a.nroles, 2);
    ck_assert(an_auth_has_role(&a, "editor"));
    ck_assert(an_auth_is_platform_admin(&a));
    an_auth copy;
    an_auth_copy(&copy, &a);
    an_auth_clear(&a);
    ck_assert_str_eq(copy.tenant, "t7");
    ck_assert(an_auth_has_scope(&copy, "a:b"));
    an_auth_clear(&copy);

    /* a bad bearer token is not rescued by the X-* headers */
    const char *both[] = {"Authorization", "Bearer x.y.z", "X-User-Id", "dev", NULL};
    ck_assert_int_eq(an_auth_from_headers(on, lookup, both, &a, &err), AN_UNAUTHENTICATED);
    /* no X-User-Id: no identity */
    const char *tenant_only[] = {"X-Tenant-Id", "t7", NULL};
    ck_assert_int_eq(an_auth_from_headers(on, lookup, tenant_only, &a, &err), AN_UNAUTHENTICATED);
    ck_assert(an_auth_verifier_usable(off));
    an_auth_verifier_free(on);
    an_auth_verifier_free(off);
}
END_TEST

/* With ANALYTICS_JWT_AUDIENCE / _ISSUER set, a token signed with the same
 * key but minted for another service (aud) or by another issuer is
 * refused; aud may be a string or an array. Unset, neither is looked at. */
START_TEST(test_auth_audience_and_issuer_checked_when_configured)
{
    an_auth_config cfg = {SECRET, NULL, false, 30, "analytics", "https://id.example"};
    an_auth_verifier *v = NULL;
    ck_assert_int_eq(an_auth_verifier_new(&cfg, &v, NULL), AN_OK);
    const char *good[] = {",\"aud\":\"analytics\",\"iss\":\"https://id.example\"",
                          ",\"aud\":[\"lms\",\"analytics\"],\"iss\":\"https://id.example\""};
    for (size_t i = 0; i < 2; i++) {
        char *c = claims(good[i]), *tok = sign(JWT_ALG_HS256, SECRET, c);
        an_auth a = {0};
        an_error err;
        ck_assert_msg(an_auth_verify_token(v, tok, &a, &err) == AN_OK, "%s: %s", good[i],
                      err.message);
        an_auth_clear(&a);
        free(tok);
        free(c);
    }
    const char *bad[] = {"", ",\"aud\":\"lms\",\"iss\":\"https://id.example\"",
                         ",\"aud\":[\"lms\"],\"iss\":\"https://id.example\"",
                         ",\"aud\":\"analytics\"",
                         ",\"aud\":\"analytics\",\"iss\":\"https://other.example\""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char *c = claims(bad[i]), *tok = sign(JWT_ALG_HS256, SECRET, c);
        assert_rejected(v, tok, bad[i]);
        free(tok);
        free(c);
    }
    an_auth_verifier_free(v);
    /* not configured: a token without either is fine */
    v = verifier(SECRET, NULL, false);
    char *c = claims(",\"aud\":\"lms\""), *tok = sign(JWT_ALG_HS256, SECRET, c);
    an_auth a = {0};
    ck_assert_int_eq(an_auth_verify_token(v, tok, &a, NULL), AN_OK);
    an_auth_clear(&a);
    free(tok);
    free(c);
    an_auth_verifier_free(v);
}
END_TEST

START_TEST(test_auth_verifier_rejects_weak_or_wrong_keys)
{
    an_auth_config short_secret = {"too-short", NULL, false, 30};
    an_auth_verifier *v = NULL;
    an_error err;
    ck_assert_int_eq(an_auth_verifier_new(&short_secret, &v, &err), AN_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "ANALYTICS_JWT_SECRET");
    ck_assert_ptr_null(v);
    an_auth_config not_pem = {NULL, "hello", false, 30};
    ck_assert_int_eq(an_auth_verifier_new(&not_pem, &v, &err), AN_INVALID_ARGUMENT);
    ck_assert_str_eq(err.field, "ANALYTICS_JWT_PUBLIC_KEY_FILE");
    an_auth_config private_pem = {NULL, rsa_private_pem, false, 30};
    ck_assert_int_eq(an_auth_verifier_new(&private_pem, &v, &err), AN_INVALID_ARGUMENT);
    an_auth_config nothing = {NULL, NULL, false, 30};
    ck_assert_int_eq(an_auth_verifier_new(&nothing, &v, &err), AN_OK);
    ck_assert(!an_auth_verifier_usable(v));
    an_auth_verifier_free(v);
    an_auth_verifier_free(NULL);
}
END_TEST

Suite *auth_suite(void)
{
    Suite *s = suite_create("auth");
    TCase *tc = tcase_create("jwt");
    tcase_add_unchecked_fixture(tc, keys_setup, keys_teardown);
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, test_auth_hs256_token_accepted_with_claims);
    tcase_add_test(tc, test_auth_rs256_token_accepted_and_scope_array_grants_platform_admin);
    tcase_add_test(tc, test_auth_both_keys_configured_each_alg_uses_its_own);
    tcase_add_test(tc, test_auth_bad_signature_rejected);
    tcase_add_test(tc, test_auth_expired_and_not_yet_valid_rejected_with_leeway);
    tcase_add_test(tc, test_auth_alg_none_rejected);
    tcase_add_test(tc, test_auth_alg_mismatch_rejected);
    tcase_add_test(tc, test_auth_malformed_tokens_and_headers_rejected);
    tcase_add_test(tc, test_auth_require_tenant_allows_own_tenant_only);
    tcase_add_test(tc, test_auth_trusted_headers_only_when_enabled);
    tcase_add_test(tc, test_auth_verifier_rejects_weak_or_wrong_keys);
    tcase_add_test(tc, test_auth_audience_and_issuer_checked_when_configured);
    suite_add_tcase(s, tc);
    return s;
}
