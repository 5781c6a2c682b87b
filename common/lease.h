/*
 * lease.h - a lease (expiring lock) in Redis, for "one replica does this"
 * (a cron schedule firing once per tick however many replicas run), and
 * idempotency keys ("once per (schedule, tick)").
 *
 *   an_lease l;
 *   if (an_lease_acquire(c, &l, "an:lease:sched:42", 10000, &err) == AN_OK) {
 *       while (work left) {
 *           if (an_lease_remaining_ms(&l) < 3000 && an_lease_renew(c, &l, &err) != AN_OK)
 *               break;                        // lost it: stop working now
 *           ... a step shorter than the remaining time ...
 *       }
 *       an_lease_release(c, &l, NULL);
 *   }
 *
 * In Redis the lease is a key holding a random owner token, set with
 * SET NX PX. Renew (PEXPIRE) and release (DEL) run as Lua scripts that first
 * compare the token, so only the holder renews or releases.
 *
 * The holder also keeps a local deadline: the monotonic time just BEFORE the
 * SET/renew was sent, plus the TTL, minus a drift margin (1% + 2 ms). Redis
 * starts the TTL later than that, so when the local deadline passes the key
 * may still exist, never the reverse: as long as an_lease_remaining_ms() > 0
 * no other owner can hold the lease (assuming clocks that run at the same
 * rate, as on one host or with NTP). A holder that cannot reach Redis
 * therefore loses the lease locally at its deadline. Keep renewing well
 * before that (e.g. every ttl/3).
 *
 * An an_lease is a plain value (no heap): nothing to free. Functions use the
 * caller's redisContext (see redis.h: one per thread).
 */
#ifndef AN_LEASE_H
#define AN_LEASE_H

#include "common/status.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

#define AN_LEASE_KEY_MAX   256
#define AN_LEASE_TOKEN_MAX 128

typedef struct an_lease {
    char key[AN_LEASE_KEY_MAX];     /* the Redis key */
    char token[AN_LEASE_TOKEN_MAX]; /* "<host>:<pid>:<32 hex random>", new on each acquire */
    int ttl_ms;                     /* time to live set on acquire and on each renew */
    int64_t valid_until_ms;         /* local deadline, CLOCK_MONOTONIC ms; 0 when not held */
} an_lease;

/* Try to take the lease key for ttl_ms (> 0). AN_OK: held (l describes
 * it). AN_ALREADY_EXISTS: another owner holds it (l is left not held).
 * AN_INVALID_ARGUMENT: empty or too long key, ttl_ms <= 0.
 * AN_UNAVAILABLE: Redis unreachable (l not held). */
an_status an_lease_acquire(redisContext *c, an_lease *l, const char *key, int ttl_ms,
                           an_error *err);

/* Extend the lease to ttl_ms from now, only if l still holds it. AN_OK:
 * still held, deadline moved. AN_FAILED_PRECONDITION: lost (expired or
 * taken by another owner); l is now not held. AN_UNAVAILABLE: Redis
 * unreachable; l keeps its old deadline, after which it is lost. */
an_status an_lease_renew(redisContext *c, an_lease *l, an_error *err);

/* Give the lease up, only if l holds it (a non-holder's release deletes
 * nothing). AN_OK: released. AN_FAILED_PRECONDITION: it was not ours
 * (expired or taken by another owner); nothing changed in Redis. l is not
 * held afterwards in both cases. AN_UNAVAILABLE: Redis unreachable. */
an_status an_lease_release(redisContext *c, an_lease *l, an_error *err);

/* Milliseconds left of the local deadline; 0 when not held or expired. */
int64_t an_lease_remaining_ms(const an_lease *l);

/* True while an_lease_remaining_ms(l) > 0. */
bool an_lease_held(const an_lease *l);

/* An idempotency key: SET key NX PX ttl_ms. AN_OK the first time the key is
 * claimed (do the work), AN_ALREADY_EXISTS while it exists (someone did or
 * is doing it; skip). Use a key naming the unit of work, e.g.
 * "an:once:report:<schedule id>:<tick unix seconds>", and a TTL longer than
 * the window in which a duplicate could occur. */
an_status an_lease_claim_once(redisContext *c, const char *key, int ttl_ms, an_error *err);

#endif
