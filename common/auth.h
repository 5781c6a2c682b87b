/*
 * auth.h - who is calling: the auth context of a request, built from its
 * NATS headers.
 *
 * Normal mode: the caller sends `Authorization: Bearer <JWT>`. The token is
 * verified with libjwt:
 *   - alg HS256 with ANALYTICS_JWT_SECRET (at least 32 bytes), and/or
 *     alg RS256 with the PEM public key of ANALYTICS_JWT_PUBLIC_KEY_FILE.
 *     The token's header picks the algorithm; an algorithm whose key is not
 *     configured is rejected, so an HS256 token is never checked against the
 *     RS256 public key (the classic key-confusion attack), and alg "none" is
 *     always rejected.
 *   - `exp` is required; `exp` and `nbf` are checked with a leeway
 *     (ANALYTICS_JWT_LEEWAY, default 30 s) for clock skew.
 *   - claims: `sub` (user, required), `tid` (tenant; absent on platform
 *     tokens), `roles` (array of strings), `scope` (a space-separated string
 *     or an array of strings). A claim of the wrong type rejects the token.
 * Any failure is AN_UNAUTHENTICATED (401) with a message saying why; the
 * message never contains the token.
 *
 * The scope AN_AUTH_SCOPE_PLATFORM_ADMIN ("platform:admin") makes the
 * caller a platform admin: it may act on any tenant and on platform-wide
 * data (tenant NULL). Roles are per-tenant and interpreted by services.
 *
 * Trusted-header mode (ANALYTICS_AUTH_TRUSTED_HEADERS=true, local
 * development only, off by default): when no Authorization header is sent,
 * identity is taken as-is from `X-User-Id` (required), `X-Tenant-Id`,
 * `X-Roles` (comma-separated) and `X-Scopes` (space- or comma-separated).
 * An Authorization header, when present, is still verified.
 *
 * Thread-safety: a verifier is immutable after creation and may be shared
 * by any number of threads.
 */
#ifndef AN_AUTH_H
#define AN_AUTH_H

#include "common/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AN_AUTH_SCOPE_PLATFORM_ADMIN "platform:admin"
#define AN_AUTH_HS256_MIN_SECRET     32 /* bytes; RFC 7518 3.2: key >= hash size */

/* The identity of a caller. Every string is owned by the struct and freed
 * by an_auth_clear(). A zeroed struct is a valid anonymous context. */
typedef struct an_auth {
    bool authenticated; /* false: anonymous (public endpoint, no credentials) */
    bool trusted;       /* identity came from X-* headers, not a verified token */
    char *tenant;       /* `tid`; NULL when the caller has no tenant */
    char *user;         /* `sub` */
    char **roles;       /* `roles`, nroles entries */
    size_t nroles;
    char **scopes; /* `scope`, split on spaces, nscopes entries */
    size_t nscopes;
    int64_t expires_at;  /* `exp`, unix seconds; 0 in trusted mode */
    char *authorization; /* the Authorization header as received ("Bearer ..."),
                            to forward on service-to-service calls; NULL if none */
} an_auth;

typedef struct an_auth_config {
    const char *hs256_secret;     /* NULL or "": HS256 not accepted */
    const char *rs256_public_pem; /* PEM text of the public key; NULL: RS256 not accepted */
    bool trusted_headers;         /* local-dev mode, see above */
    int64_t leeway_s;             /* clock skew allowed on exp/nbf */
    const char *audience;         /* NULL or "": any; else the aud claim (a string or an
                                     array) must hold it */
    const char *issuer;           /* NULL or "": any; else the iss claim must equal it */
} an_auth_config;

typedef struct an_auth_verifier an_auth_verifier;

/* Build a verifier; copies what it needs from cfg. Fails (AN_INVALID_ARGUMENT)
 * when the secret is shorter than AN_AUTH_HS256_MIN_SECRET or the PEM is not
 * a public key. A verifier with no key accepts no token (every request that
 * needs auth gets 401) unless trusted headers are on. Free with
 * an_auth_verifier_free(). */
an_status an_auth_verifier_new(const an_auth_config *cfg, an_auth_verifier **out, an_error *err);
void an_auth_verifier_free(an_auth_verifier *v);

/* True when the verifier can authenticate anybody (a key or trusted headers). */
bool an_auth_verifier_usable(const an_auth_verifier *v);

/* Verify a compact JWT (without the "Bearer " prefix) and fill out, which is
 * cleared first. On failure out is left anonymous and AN_UNAUTHENTICATED is
 * returned. */
an_status an_auth_verify_token(const an_auth_verifier *v, const char *token, an_auth *out,
                               an_error *err);

/* How a caller's headers are looked up: return the value of header name
 * (matched case-insensitively) or NULL. */
typedef const char *(*an_auth_header_fn)(void *ud, const char *name);

/* Authenticate a request from its headers (see the modes above). No
 * credentials at all gives AN_UNAUTHENTICATED "missing Authorization
 * header" with out anonymous; callers serving public endpoints may ignore
 * that. out is cleared first. */
an_status an_auth_from_headers(const an_auth_verifier *v, an_auth_header_fn get, void *ud,
                               an_auth *out, an_error *err);

/* Release the strings of a (and leave it anonymous). a may be NULL. */
void an_auth_clear(an_auth *a);

/* Deep copy src into dst (dst is overwritten, not cleared first). */
void an_auth_copy(an_auth *dst, const an_auth *src);

bool an_auth_has_role(const an_auth *a, const char *role);
bool an_auth_has_scope(const an_auth *a, const char *scope);
bool an_auth_is_platform_admin(const an_auth *a);

/* May the caller act on tenant_id? AN_OK when it is the caller's own tenant
 * or the caller is a platform admin; tenant_id NULL or "" means platform-wide
 * data, allowed only to platform admins. AN_UNAUTHENTICATED for an anonymous
 * caller, AN_PERMISSION_DENIED (403, field "tenantId") otherwise. */
an_status an_auth_require_tenant(const an_auth *a, const char *tenant_id, an_error *err);

#endif
