#include "common/queue.h"
#include "common/timeutil.h"

#include "common/log.h"
#include "common/redis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

struct an_queue {
    redisContext *c;
    char *url;
    char *stream;  /* <prefix>:<name> */
    char *delayed; /* <prefix>:<name>:delayed */
    char *dead;    /* <prefix>:<name>:dead */
    char *group;   /* <name> */
    char *consumer;
    an_queue_options o;
    char cursor[64]; /* XAUTOCLAIM scan position, so a long PEL is scanned in turns */
    uint64_t rng;    /* jitter */
    int poll_ms;     /* longest block before looking for due retries and stuck jobs */
};

/* ---- Lua -------------------------------------------------------------- */

/* Helpers shared by the scripts. A job's fields are a flat array
 * {k1, v1, k2, v2, ...} as XRANGE returns them. */
#define LUA_PRELUDE                                                                                \
    "local function field(f, name)\n"                                                              \
    "  for i = 1, #f, 2 do if f[i] == name then return f[i + 1] end end\n"                         \
    "  return nil\n"                                                                               \
    "end\n"                                                                                        \
    "local function now_ms()\n"                                                                    \
    "  local t = redis.call('TIME')\n"                                                             \
    "  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"                         \
    "end\n"                                                                                        \
    "-- the fields a job carries into its next entry: all but the bookkeeping, plus\n"             \
    "-- its stable id (the first entry's id when it was pushed without one)\n"                     \
    "local bookkeeping = {attempts = true, last_error = true, reason = true, entry = true,\n"      \
    "                     consumer = true, failed_at = true}\n"                                    \
    "local function carry(f, entry, attempts)\n"                                                   \
    "  local out, has_id = {}, false\n"                                                            \
    "  for i = 1, #f, 2 do\n"                                                                      \
    "    if not bookkeeping[f[i]] then\n"                                                          \
    "      out[#out + 1] = f[i]; out[#out + 1] = f[i + 1]\n"                                       \
    "      if f[i] == 'id' then has_id = true end\n"                                               \
    "    end\n"                                                                                    \
    "  end\n"                                                                                      \
    "  if not has_id then out[#out + 1] = 'id'; out[#out + 1] = entry end\n"                       \
    "  out[#out + 1] = 'attempts'; out[#out + 1] = tostring(attempts)\n"                           \
    "  return out\n"                                                                               \
    "end\n"                                                                                        \
    "local function done(stream, group, entry)\n"                                                  \
    "  local n = redis.call('XACK', stream, group, entry)\n"                                       \
    "  redis.call('XDEL', stream, entry)\n"                                                        \
    "  return n\n"                                                                                 \
    "end\n"                                                                                        \
    "local function bury(stream, dead, group, consumer, entry, f, attempts, reason)\n"             \
    "  local d = carry(f, entry, attempts)\n"                                                      \
    "  d[#d + 1] = 'reason'; d[#d + 1] = reason\n"                                                 \
    "  d[#d + 1] = 'entry'; d[#d + 1] = entry\n"                                                   \
    "  d[#d + 1] = 'consumer'; d[#d + 1] = consumer\n"                                             \
    "  d[#d + 1] = 'failed_at'; d[#d + 1] = tostring(now_ms())\n"                                  \
    "  redis.call('XADD', dead, '*', unpack(d))\n"                                                 \
    "  done(stream, group, entry)\n"                                                               \
    "end\n"                                                                                        \
    "-- owner and deliveries of a pending entry, nil when it is not pending\n"                     \
    "local function pending(stream, group, entry)\n"                                               \
    "  local p = redis.call('XPENDING', stream, group, entry, entry, 1)\n"                         \
    "  if #p == 0 then return nil end\n"                                                           \
    "  return p[1][2], p[1][4]\n"                                                                  \
    "end\n"

/* KEYS: stream, delayed, dead. ARGV: group, consumer, visibility_ms,
 * max_attempts, cursor. Moves due retries into the stream, then reclaims
 * one job idle longer than the visibility timeout (dead-lettering those
 * whose attempts are spent). Returns {cursor, next_due_ms (-1: none),
 * promoted, buried[, entry, fields, deliveries]}. */
static const an_redis_script take_script = {
    "queue_take",
    LUA_PRELUDE
    "local now = now_ms()\n"
    "local due = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 100)\n"
    "for _, m in ipairs(due) do\n"
    "  redis.call('XADD', KEYS[1], '*', unpack(cmsgpack.unpack(m)))\n"
    "  redis.call('ZREM', KEYS[2], m)\n"
    "end\n"
    "local next_due = -1\n"
    "local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')\n"
    "if #first > 0 then next_due = math.max(0, tonumber(first[2]) - now) end\n"
    "local cursor, maxa, buried = ARGV[5], tonumber(ARGV[4]), 0\n"
    "for round = 1, 10 do\n"
    "  local r = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], cursor,\n"
    "                       'COUNT', 1)\n"
    "  cursor = r[1]\n"
    "  for _, e in ipairs(r[2]) do\n"
    "    if type(e) == 'table' then\n"
    "      local id, f = e[1], e[2]\n"
    "      local _, deliveries = pending(KEYS[1], ARGV[1], id)\n"
    "      -- attempts spent: earlier ones, and the deliveries of this entry that died\n"
    "      local spent = tonumber(field(f, 'attempts') or '0') + deliveries - 1\n"
    "      if spent >= maxa then\n"
    "        bury(KEYS[1], KEYS[3], ARGV[1], ARGV[2], id, f, spent,\n"
    "             'visibility timeout expired ' .. (deliveries - 1) ..\n"
    "             ' time(s): the consumer died or stalled')\n"
    "        buried = buried + 1\n"
    "      else\n"
    "        return {cursor, next_due, #due, buried, id, f, deliveries}\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  if cursor == '0-0' then break end\n"
    "end\n"
    "return {cursor, next_due, #due, buried}\n",
};

/* KEYS: stream, delayed, dead. ARGV: group, consumer, entry, reason,
 * max_attempts, backoff_base_ms, backoff_max_ms, jitter, random in [0,1),
 * mode (retry | bury | release). Returns {'gone'}, {'stolen', owner},
 * {'retry', delay_ms, attempt}, {'dead', attempt} or {'released'}. */
static const an_redis_script fail_script = {
    "queue_fail",
    LUA_PRELUDE "local owner, deliveries = pending(KEYS[1], ARGV[1], ARGV[3])\n"
                "if not owner then return {'gone'} end\n"
                "if owner ~= ARGV[2] then return {'stolen', owner} end\n"
                "local r = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])\n"
                "if #r == 0 then done(KEYS[1], ARGV[1], ARGV[3]); return {'gone'} end\n"
                "local f = r[1][2]\n"
                "local attempt = tonumber(field(f, 'attempts') or '0') + deliveries\n"
                "local mode = ARGV[10]\n"
                "if mode == 'release' then\n"
                "  local out = carry(f, ARGV[3], attempt - 1)\n"
                "  local le = field(f, 'last_error')\n"
                "  if le then out[#out + 1] = 'last_error'; out[#out + 1] = le end\n"
                "  redis.call('XADD', KEYS[1], '*', unpack(out))\n"
                "  done(KEYS[1], ARGV[1], ARGV[3])\n"
                "  return {'released'}\n"
                "end\n"
                "if mode == 'retry' and attempt < tonumber(ARGV[5]) then\n"
                "  local delay = tonumber(ARGV[6]) * 2 ^ math.min(attempt - 1, 40)\n"
                "  delay = math.min(tonumber(ARGV[7]), delay)\n"
                "  delay = math.floor(delay * (1 - tonumber(ARGV[8]) * tonumber(ARGV[9])))\n"
                "  local out = carry(f, ARGV[3], attempt)\n"
                "  out[#out + 1] = 'last_error'; out[#out + 1] = ARGV[4]\n"
                "  redis.call('ZADD', KEYS[2], now_ms() + delay, cmsgpack.pack(out))\n"
                "  done(KEYS[1], ARGV[1], ARGV[3])\n"
                "  return {'retry', delay, attempt}\n"
                "end\n"
                "bury(KEYS[1], KEYS[3], ARGV[1], ARGV[2], ARGV[3], f, attempt, ARGV[4])\n"
                "return {'dead', attempt}\n",
};

/* KEYS: stream. ARGV: group, consumer, entry. Resets the idle time of an
 * entry we own (JUSTID: the delivery count stays). */
static const an_redis_script extend_script = {
    "queue_extend",
    LUA_PRELUDE "local owner = pending(KEYS[1], ARGV[1], ARGV[3])\n"
                "if not owner then return {'gone'} end\n"
                "if owner ~= ARGV[2] then return {'stolen', owner} end\n"
                "redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')\n"
                "return {'ok'}\n",
};

/* KEYS: stream. ARGV: group, entry. */
static const an_redis_script ack_script = {
    "queue_ack",
    LUA_PRELUDE "return done(KEYS[1], ARGV[1], ARGV[2])\n",
};

/* KEYS: stream, dead. ARGV: dead entry id. */
static const an_redis_script requeue_script = {
    "queue_requeue_dead",
    LUA_PRELUDE "local r = redis.call('XRANGE', KEYS[2], ARGV[1], ARGV[1])\n"
                "if #r == 0 then return 0 end\n"
                "redis.call('XADD', KEYS[1], '*', unpack(carry(r[1][2], ARGV[1], 0)))\n"
                "redis.call('XDEL', KEYS[2], ARGV[1])\n"
                "return 1\n",
};

/* KEYS: stream. ARGV: group, own consumer name, idle_ms. */
static const an_redis_script prune_script = {
    "queue_prune_consumers",
    "local n = 0\n"
    "for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do\n"
    "  local info = {}\n"
    "  for i = 1, #c, 2 do info[c[i]] = c[i + 1] end\n"
    "  if info.name ~= ARGV[2] and info.pending == 0 and info.idle > tonumber(ARGV[3]) then\n"
    "    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], info.name)\n"
    "    n = n + 1\n"
    "  end\n"
    "end\n"
    "return n\n",
};

/* KEYS: stream, delayed, dead. ARGV: group. {waiting, pending, delayed, dead}. */
static const an_redis_script stats_script = {
    "queue_stats",
    "local len = redis.call('XLEN', KEYS[1])\n"
    "local pend = 0\n"
    "local p = redis.pcall('XPENDING', KEYS[1], ARGV[1])\n"
    "if type(p) == 'table' and not p.err then pend = p[1] end\n"
    "return {math.max(0, len - pend), pend, redis.call('ZCARD', KEYS[2]),\n"
    "        redis.call('XLEN', KEYS[3])}\n",
};

/* ---- helpers ---------------------------------------------------------- */

static char *xstrdup(const char *s)
{
    char *d = strdup(s);
    if (!d) {
        fputs("an_queue: out of memory\n", stderr);
        abort();
    }
    return d;
}

static char *xmemdup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (!d) {
        fputs("an_queue: out of memory\n", stderr);
        abort();
    }
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static char *xprintf(const char *fmt, const char *a, const char *b)
{
    char *s;
    if (asprintf(&s, fmt, a, b) < 0) {
        fputs("an_queue: out of memory\n", stderr);
        abort();
    }
    return s;
}

/* splitmix64: a uniform double in [0, 1) for the jitter */
static double rand01(an_queue *q)
{
    uint64_t z = (q->rng += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

/* Letters, digits, '_', '-', '.', and ':' when colon is set (prefixes only:
 * a queue named "x:dead" would collide with the dead-letter stream of "x"). */
static int valid_name(const char *s, int colon)
{
    if (!s || !*s || strlen(s) > 200)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '-' || *s == '.' || (colon && *s == ':')))
            return 0;
    return 1;
}

static an_status connect_q(an_queue *q, an_error *err)
{
    if (q->c && !q->c->err)
        return AN_OK;
    an_status s = an_redis_ensure(&q->c, q->url, q->o.timeout_ms, err);
    if (s != AN_OK)
        return s;
    /* name the connection so CLIENT LIST tells operators who is who */
    char name[256];
    snprintf(name, sizeof(name), "an-queue:%s:%s", q->group, q->consumer);
    for (char *p = name; *p; p++)
        if (*p < '!' || *p > '~') /* Redis refuses spaces and control characters */
            *p = '_';
    const char *argv[] = {"CLIENT", "SETNAME", name};
    redisReply *r;
    if (an_redis_argv(q->c, 3, argv, NULL, &r, NULL) == AN_OK)
        freeReplyObject(r);
    return AN_OK;
}

static int is_nogroup(const an_error *err)
{
    return err && strstr(err->message, "NOGROUP") != NULL;
}

/* The group reads from "0": jobs pushed before the first consumer are kept. */
static an_status create_group(an_queue *q, an_error *err)
{
    const char *argv[] = {"XGROUP", "CREATE", q->stream, q->group, "0", "MKSTREAM"};
    redisReply *r;
    an_error e;
    an_status s = an_redis_argv(q->c, 6, argv, NULL, &r, &e);
    if (s == AN_OK) {
        freeReplyObject(r);
        return AN_OK;
    }
    if (s == AN_INTERNAL && strstr(e.message, "BUSYGROUP"))
        return AN_OK; /* another handle created it */
    if (err)
        *err = e;
    return s;
}

/* ---- open / close ----------------------------------------------------- */

void an_queue_options_init(an_queue_options *o)
{
    memset(o, 0, sizeof(*o));
    o->prefix = "an";
    o->consumer = NULL;
    o->visibility_ms = 30000;
    o->max_attempts = 5;
    o->backoff_base_ms = 1000;
    o->backoff_max_ms = 300000;
    o->jitter = 0.2;
    o->timeout_ms = 5000;
}

static an_status check_options(const char *name, const an_queue_options *o, an_error *err)
{
    if (!valid_name(name, 0))
        return an_error_field(err, AN_INVALID_ARGUMENT, "name",
                              "queue name \"%s\": use letters, digits, '_', '-', '.'",
                              name ? name : "(null)");
    if (!valid_name(o->prefix, 1))
        return an_error_field(err, AN_INVALID_ARGUMENT, "prefix",
                              "queue key prefix \"%s\": use letters, digits, '_', '-', '.', ':'",
                              o->prefix ? o->prefix : "(null)");
    if (o->consumer && !*o->consumer)
        return an_error_field(err, AN_INVALID_ARGUMENT, "consumer", "consumer name is empty");
    if (o->visibility_ms <= 0)
        return an_error_field(err, AN_INVALID_ARGUMENT, "visibility_ms", "must be > 0");
    if (o->max_attempts <= 0)
        return an_error_field(err, AN_INVALID_ARGUMENT, "max_attempts", "must be >= 1");
    if (o->backoff_base_ms < 0 || o->backoff_max_ms < o->backoff_base_ms)
        return an_error_field(err, AN_INVALID_ARGUMENT, "backoff_ms",
                              "need 0 <= backoff_base_ms <= backoff_max_ms");
    if (!(o->jitter >= 0.0 && o->jitter <= 1.0))
        return an_error_field(err, AN_INVALID_ARGUMENT, "jitter", "must be within [0, 1]");
    if (o->timeout_ms <= 0)
        return an_error_field(err, AN_INVALID_ARGUMENT, "timeout_ms", "must be > 0");
    return AN_OK;
}

an_status an_queue_open(an_queue **out, const char *redis_url, const char *name,
                        const an_queue_options *opts, an_error *err)
{
    *out = NULL;
    an_queue_options o;
    if (opts)
        o = *opts;
    else
        an_queue_options_init(&o);
    if (!o.prefix)
        o.prefix = "an";
    an_status s = check_options(name, &o, err);
    if (s != AN_OK)
        return s;
    if (!redis_url)
        return an_error_set(err, AN_INVALID_ARGUMENT, "redis URL is missing");

    an_queue *q = calloc(1, sizeof(*q));
    if (!q)
        return an_error_set(err, AN_INTERNAL, "out of memory");
    q->o = o;
    q->url = xstrdup(redis_url);
    q->stream = xprintf("%s:%s", o.prefix, name);
    q->delayed = xprintf("%s:%s:delayed", o.prefix, name);
    q->dead = xprintf("%s:%s:dead", o.prefix, name);
    q->group = xstrdup(name);
    if (getrandom(&q->rng, sizeof(q->rng), 0) != (ssize_t)sizeof(q->rng))
        q->rng = (uint64_t)an_time_mono_ms() ^ ((uint64_t)getpid() << 32);
    if (o.consumer) {
        q->consumer = xstrdup(o.consumer);
    } else {
        char host[64] = "host";
        gethostname(host, sizeof(host));
        host[sizeof(host) - 1] = '\0';
        if (asprintf(&q->consumer, "%s-%d-%06x", host, (int)getpid(),
                     (unsigned)(q->rng & 0xffffff)) < 0)
            abort();
    }
    q->o.prefix = NULL; /* not owned; the keys above carry it */
    q->o.consumer = q->consumer;
    strcpy(q->cursor, "0-0");
    q->poll_ms = o.visibility_ms / 4;
    if (q->poll_ms < 20)
        q->poll_ms = 20;
    if (q->poll_ms > 2000)
        q->poll_ms = 2000;

    s = connect_q(q, err);
    if (s == AN_OK)
        s = create_group(q, err);
    if (s != AN_OK) {
        an_queue_close(q);
        return s;
    }
    *out = q;
    return AN_OK;
}

void an_queue_close(an_queue *q)
{
    if (!q)
        return;
    if (q->c)
        redisFree(q->c);
    free(q->url);
    free(q->stream);
    free(q->delayed);
    free(q->dead);
    free(q->group);
    free(q->consumer);
    free(q);
}

void an_queue_job_free(an_queue_job *job)
{
    if (!job)
        return;
    free(job->id);
    free(job->entry_id);
    free(job->payload);
    free(job->tenant);
    free(job->correlation_id);
    free(job->last_error);
    free(job);
}

/* ---- push ------------------------------------------------------------- */

an_status an_queue_push(an_queue *q, const void *payload, size_t len, const an_queue_meta *meta,
                        char **job_id, an_error *err)
{
    if (job_id)
        *job_id = NULL;
    if (!payload && len > 0)
        return an_error_set(err, AN_INVALID_ARGUMENT, "queue push: payload is NULL");
    const char *argv[11];
    size_t lens[11];
    int n = 0;
#define ARG(s, l) (argv[n] = (s), lens[n] = (l), n++)
    ARG("XADD", 4);
    ARG(q->stream, strlen(q->stream));
    ARG("*", 1);
    ARG("payload", 7);
    ARG(payload ? (const char *)payload : "", len);
    if (meta && meta->job_id) {
        if (!*meta->job_id)
            return an_error_field(err, AN_INVALID_ARGUMENT, "job_id", "job id is empty");
        ARG("id", 2);
        ARG(meta->job_id, strlen(meta->job_id));
    }
    if (meta && meta->tenant) {
        ARG("tenant", 6);
        ARG(meta->tenant, strlen(meta->tenant));
    }
    if (meta && meta->correlation_id) {
        ARG("cid", 3);
        ARG(meta->correlation_id, strlen(meta->correlation_id));
    }
#undef ARG
    an_status s = connect_q(q, err);
    if (s != AN_OK)
        return s;
    redisReply *r;
    s = an_redis_argv(q->c, n, argv, lens, &r, err);
    if (s != AN_OK)
        return s;
    if (r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return an_error_set(err, AN_INTERNAL, "queue push: unexpected XADD reply");
    }
    if (job_id)
        *job_id = xstrdup(meta && meta->job_id ? meta->job_id : r->str);
    freeReplyObject(r);
    return AN_OK;
}

/* ---- take ------------------------------------------------------------- */

static const redisReply *field_of(const redisReply *f, const char *name)
{
    if (!f || f->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < f->elements; i += 2)
        if (f->element[i]->type == REDIS_REPLY_STRING && strcmp(f->element[i]->str, name) == 0 &&
            f->element[i + 1]->type == REDIS_REPLY_STRING)
            return f->element[i + 1];
    return NULL;
}

static char *field_dup(const redisReply *f, const char *name)
{
    const redisReply *v = field_of(f, name);
    return v ? xmemdup(v->str, v->len) : NULL;
}

/* A job from an entry id, its fields and its delivery count. */
static an_queue_job *make_job(const redisReply *id, const redisReply *f, long long deliveries)
{
    an_queue_job *j = calloc(1, sizeof(*j));
    if (!j)
        abort();
    j->entry_id = xmemdup(id->str, id->len);
    j->id = field_dup(f, "id");
    if (!j->id)
        j->id = xstrdup(j->entry_id);
    const redisReply *p = field_of(f, "payload");
    j->payload = p ? xmemdup(p->str, p->len) : xstrdup("");
    j->payload_len = p ? p->len : 0;
    j->tenant = field_dup(f, "tenant");
    j->correlation_id = field_dup(f, "cid");
    j->last_error = field_dup(f, "last_error");
    const redisReply *a = field_of(f, "attempts");
    long long prior = a ? strtoll(a->str, NULL, 10) : 0;
    j->delivery_count = (int)deliveries;
    j->attempt = (int)(prior + deliveries);
    return j;
}

/* Promote due retries and reclaim one stuck job. *next_due_ms: time until
 * the next retry is due, -1 when none. */
static an_status take_stuck(an_queue *q, an_queue_job **out, int64_t *next_due_ms, an_error *err)
{
    char vis[24], maxa[24];
    snprintf(vis, sizeof(vis), "%d", q->o.visibility_ms);
    snprintf(maxa, sizeof(maxa), "%d", q->o.max_attempts);
    const char *args[] = {q->stream,   q->delayed, q->dead, q->group,
                          q->consumer, vis,        maxa,    q->cursor};
    redisReply *r;
    an_status s = an_redis_eval(q->c, &take_script, 3, 8, args, NULL, &r, err);
    if (s != AN_OK)
        return s;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 4 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return an_error_set(err, AN_INTERNAL, "queue take: unexpected script reply");
    }
    snprintf(q->cursor, sizeof(q->cursor), "%s", r->element[0]->str);
    *next_due_ms = r->element[1]->integer;
    if (r->element[3]->integer > 0)
        an_log_ctx(AN_LOG_WARN, NULL, NULL,
                   "queue %s: %lld job(s) dead-lettered after their consumers died or stalled "
                   "on every attempt",
                   q->stream, r->element[3]->integer);
    if (r->elements >= 7)
        *out = make_job(r->element[4], r->element[5], r->element[6]->integer);
    freeReplyObject(r);
    return AN_OK;
}

/* XREADGROUP one new entry, blocking up to wait_ms (0: not at all). */
static an_status take_new(an_queue *q, int64_t wait_ms, an_queue_job **out, an_error *err)
{
    char block[24];
    snprintf(block, sizeof(block), "%lld", (long long)wait_ms);
    /* XREADGROUP GROUP <group> <consumer> COUNT 1 [BLOCK ms] STREAMS <stream> > */
    const char *cmd[11];
    int n = 0;
    cmd[n++] = "XREADGROUP";
    cmd[n++] = "GROUP";
    cmd[n++] = q->group;
    cmd[n++] = q->consumer;
    cmd[n++] = "COUNT";
    cmd[n++] = "1";
    if (wait_ms > 0) { /* BLOCK 0 would wait forever */
        cmd[n++] = "BLOCK";
        cmd[n++] = block;
    }
    cmd[n++] = "STREAMS";
    cmd[n++] = q->stream;
    cmd[n++] = ">";

    if (wait_ms > 0) {
        /* the reply may take the whole block: widen the socket timeout for it */
        int64_t t = wait_ms + q->o.timeout_ms;
        struct timeval tv = {(time_t)(t / 1000), (suseconds_t)(t % 1000) * 1000};
        redisSetTimeout(q->c, tv);
    }
    redisReply *r;
    an_status s = an_redis_argv(q->c, n, cmd, NULL, &r, err);
    if (wait_ms > 0 && q->c && !q->c->err) {
        struct timeval tv = {q->o.timeout_ms / 1000, (q->o.timeout_ms % 1000) * 1000};
        redisSetTimeout(q->c, tv);
    }
    if (s != AN_OK)
        return s;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 1) {
        const redisReply *st = r->element[0]; /* [stream, [[id, fields]]] */
        if (st->type == REDIS_REPLY_ARRAY && st->elements == 2 &&
            st->element[1]->type == REDIS_REPLY_ARRAY && st->element[1]->elements == 1) {
            const redisReply *e = st->element[1]->element[0];
            if (e->type == REDIS_REPLY_ARRAY && e->elements == 2 &&
                e->element[0]->type == REDIS_REPLY_STRING)
                *out = make_job(e->element[0], e->element[1], 1);
        }
    }
    freeReplyObject(r);
    return AN_OK;
}

an_status an_queue_take(an_queue *q, int block_ms, an_queue_job **out, an_error *err)
{
    an_error local; /* NOGROUP is recognised by its message, even when err is NULL */
    if (!err)
        err = &local;
    *out = NULL;
    if (block_ms < 0)
        block_ms = 0;
    int64_t deadline = an_time_mono_ms() + block_ms;
    int regroup = 0;
    for (;;) {
        an_status s = connect_q(q, err);
        if (s != AN_OK)
            return s;
        int64_t next_due = -1;
        s = take_stuck(q, out, &next_due, err);
        if (s == AN_OK && !*out) {
            int64_t wait = deadline - an_time_mono_ms();
            if (wait < 0)
                wait = 0;
            if (next_due >= 0 && next_due < wait)
                wait = next_due;
            if (wait > q->poll_ms)
                wait = q->poll_ms;
            s = take_new(q, wait, out, err);
        }
        if (s != AN_OK && is_nogroup(err) && regroup++ == 0) {
            /* the stream or group vanished (FLUSHDB, a restart without AOF) */
            s = create_group(q, err);
            if (s != AN_OK)
                return s;
            continue;
        }
        if (s != AN_OK || *out || an_time_mono_ms() >= deadline)
            return s;
    }
}

/* ---- ack, extend, fail ------------------------------------------------ */

static an_status not_ours(const an_queue_job *job, const redisReply *r, an_error *err)
{
    if (strcmp(r->element[0]->str, "stolen") == 0 && r->elements > 1)
        return an_error_set(err, AN_FAILED_PRECONDITION,
                            "job %s is no longer ours: consumer %s reclaimed it after the "
                            "visibility timeout",
                            job->id, r->element[1]->str);
    return an_error_set(err, AN_FAILED_PRECONDITION,
                        "job %s is no longer pending (already acked or failed)", job->id);
}

an_status an_queue_ack(an_queue *q, const an_queue_job *job, an_error *err)
{
    an_status s = connect_q(q, err);
    if (s != AN_OK)
        return s;
    const char *args[] = {q->stream, q->group, job->entry_id};
    redisReply *r;
    s = an_redis_eval(q->c, &ack_script, 1, 3, args, NULL, &r, err);
    if (s == AN_OK)
        freeReplyObject(r);
    return s;
}

/* Run a script answering {'ok' | 'gone' | 'stolen', ...}; *reply gets it
 * on AN_OK. */
static an_status owned_call(an_queue *q, const an_redis_script *script, const an_queue_job *job,
                            int nkeys, int nargs, const char *const *args, redisReply **reply,
                            an_error *err)
{
    *reply = NULL;
    an_status s = connect_q(q, err);
    if (s != AN_OK)
        return s;
    redisReply *r;
    s = an_redis_eval(q->c, script, nkeys, nargs, args, NULL, &r, err);
    if (s != AN_OK)
        return s;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 1 ||
        r->element[0]->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return an_error_set(err, AN_INTERNAL, "queue %s: unexpected script reply", script->name);
    }
    const char *what = r->element[0]->str;
    if (strcmp(what, "gone") == 0 || strcmp(what, "stolen") == 0) {
        s = not_ours(job, r, err);
        freeReplyObject(r);
        return s;
    }
    *reply = r;
    return AN_OK;
}

an_status an_queue_extend(an_queue *q, const an_queue_job *job, an_error *err)
{
    const char *args[] = {q->stream, q->group, q->consumer, job->entry_id};
    redisReply *r;
    an_status s = owned_call(q, &extend_script, job, 1, 4, args, &r, err);
    if (s == AN_OK)
        freeReplyObject(r);
    return s;
}

static an_status settle(an_queue *q, const an_queue_job *job, const char *mode, const char *reason,
                        int64_t *retry_in_ms, an_error *err)
{
    char maxa[24], base[24], maxd[24], jit[32], u[32];
    snprintf(maxa, sizeof(maxa), "%d", q->o.max_attempts);
    snprintf(base, sizeof(base), "%d", q->o.backoff_base_ms);
    snprintf(maxd, sizeof(maxd), "%d", q->o.backoff_max_ms);
    snprintf(jit, sizeof(jit), "%.6f", q->o.jitter);
    snprintf(u, sizeof(u), "%.6f", rand01(q));
    const char *args[] = {
        q->stream, q->delayed, q->dead, q->group, q->consumer, job->entry_id, reason ? reason : "",
        maxa,      base,       maxd,    jit,      u,           mode};
    redisReply *r;
    an_status s = owned_call(q, &fail_script, job, 3, 13, args, &r, err);
    if (s != AN_OK)
        return s;
    if (retry_in_ms)
        *retry_in_ms = -1;
    if (strcmp(r->element[0]->str, "retry") == 0 && r->elements > 1 && retry_in_ms)
        *retry_in_ms = r->element[1]->integer;
    freeReplyObject(r);
    return AN_OK;
}

an_status an_queue_fail(an_queue *q, const an_queue_job *job, const char *reason,
                        int64_t *retry_in_ms, an_error *err)
{
    return settle(q, job, "retry", reason, retry_in_ms, err);
}

an_status an_queue_bury(an_queue *q, const an_queue_job *job, const char *reason, an_error *err)
{
    return settle(q, job, "bury", reason, NULL, err);
}

an_status an_queue_release(an_queue *q, const an_queue_job *job, an_error *err)
{
    return settle(q, job, "release", NULL, NULL, err);
}

/* ---- operations ------------------------------------------------------- */

an_status an_queue_requeue_dead(an_queue *q, const char *dead_entry_id, an_error *err)
{
    an_status s = connect_q(q, err);
    if (s != AN_OK)
        return s;
    const char *args[] = {q->stream, q->dead, dead_entry_id};
    redisReply *r;
    s = an_redis_eval(q->c, &requeue_script, 2, 3, args, NULL, &r, err);
    if (s != AN_OK)
        return s;
    int found = r->type == REDIS_REPLY_INTEGER && r->integer == 1;
    freeReplyObject(r);
    return found ? AN_OK
                 : an_error_set(err, AN_NOT_FOUND, "no dead-letter entry %s in %s", dead_entry_id,
                                q->dead);
}

an_status an_queue_prune_consumers(an_queue *q, int64_t idle_ms, int *removed, an_error *err)
{
    if (removed)
        *removed = 0;
    an_status s = connect_q(q, err);
    if (s != AN_OK)
        return s;
    char idle[24];
    snprintf(idle, sizeof(idle), "%lld", (long long)idle_ms);
    const char *args[] = {q->stream, q->group, q->consumer, idle};
    redisReply *r;
    s = an_redis_eval(q->c, &prune_script, 1, 4, args, NULL, &r, err);
    if (s != AN_OK)
        return s;
    if (removed && r->type == REDIS_REPLY_INTEGER)
        *removed = (int)r->integer;
    freeReplyObject(r);
    return AN_OK;
}

an_status an_queue_stats_get(an_queue *q, an_queue_stats *out, an_error *err)
{
    memset(out, 0, sizeof(*out));
    an_status s = connect_q(q, err);
    if (s != AN_OK)
        return s;
    const char *args[] = {q->stream, q->delayed, q->dead, q->group};
    redisReply *r;
    s = an_redis_eval(q->c, &stats_script, 3, 4, args, NULL, &r, err);
    if (s != AN_OK)
        return s;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 4) {
        out->waiting = r->element[0]->integer;
        out->pending = r->element[1]->integer;
        out->delayed = r->element[2]->integer;
        out->dead = r->element[3]->integer;
    }
    freeReplyObject(r);
    return AN_OK;
}
