/*
 * eventgen - realistic, seeded sample traffic of a learning platform: the
 * domain events every service publishes on the firehose (DESIGN.md 3).
 *
 *   eventgen --json N      [options]   print N envelopes, one JSON per line
 *   eventgen --publish N   [options]   publish N events to JetStream (N = 0: until
 *                                      SIGINT/SIGTERM, occurredAt = now), async with
 *                                      bounded pending acks
 *   eventgen --tsv N       [options]   the same N events as TabSeparated rows of
 *                                      analytics.events (hot-tier shape, approximate)
 *
 * Options:
 *   --seed S          generator seed (default 1)
 *   --tenants T       number of tenants, 1..1000 (default 5); volume is skewed
 *                     (tenant k gets about 1/k^1.1 of the traffic)
 *   --end TIME        RFC 3339 end of the occurredAt window (default: now)
 *   --window DUR      occurredAt spread over [end - DUR, end), in event order;
 *                     DUR like 7d, 12h, 30m, 10s, 500ms (default 7d). 0: occurredAt
 *                     is the wall clock when each event is made (live traffic)
 *   --rate R          at most R events/s (default 0: as fast as possible)
 *   --prefix P        subject prefix (default "events"): P.<service>.<type>
 *   --nats URL        NATS server (default $ANALYTICS_NATS_URL, else nats://127.0.0.1:4222)
 *   --max-pending K   publish: unacknowledged publishes in flight (default 8192)
 *   --no-msg-id       publish: no Nats-Msg-Id header (default: the event id)
 *   --lean            publish: same wire protocol, but hand-rolled on core NATS
 *                     (one reply subject, a counter of acks in flight) instead of
 *                     js_PublishAsync; about half the generator's CPU (see below)
 *   --pregenerate     publish: make all N events before the first publish and
 *                     keep them in memory (about 410 bytes each), so the
 *                     publishing loop does nothing but publish; occurredAt is
 *                     then the time each event was made
 *   --wait-signal     publish: after making the events (with --pregenerate),
 *                     wait for SIGUSR1 before the first publish; the
 *                     "eventgen: generated=..." line on stderr says it is ready
 *   --hmac-key K      tsv: key of the actor hash (default $ANALYTICS_INGEST_HMAC_KEY,
 *                     else "eventgen")
 *   --key-id ID       tsv: actor_key_id column (default $ANALYTICS_INGEST_HMAC_KEY_ID, else "k1")
 *   --tier T          tsv: hot (rows of analytics.events, the default) or audit (rows
 *                     of analytics_audit.events: the envelope, its subject, a sequence)
 *   --quiet           no progress lines
 *
 * Determinism: the events depend only on the seed, the tenant count, N, --end
 * and --window (not on the mode or the rate), so `--json N --end T` and
 * `--tsv N --end T` with one seed describe the same events, byte for byte
 * from run to run. N matters because the N events are spread evenly over the
 * window. With --window 0 only the timestamps (and the time part of the ULID
 * ids) follow the clock; everything else stays the same.
 *
 * What the traffic looks like: 34 event types of 9 services (courses, assessments,
 * media, billing, certificates, identity, community, search, notifications) with
 * realistic frequencies; per tenant a pool of users whose activity is
 * zipfian (a few very active users, a long tail), stable per-user details
 * (name, e-mail, phone, city), courses with lessons; `data` objects with
 * nested objects, numbers, booleans and arrays; PII in some payloads (e-mail,
 * phone, name, address, ip, at several depths, e.g. data.user.email and
 * data.billing.address) and PII-looking text inside free-text fields
 * (discussion posts, reviews, feedback). Envelopes are 300-600 bytes.
 *
 * --publish ends with one line on stderr:
 *   eventgen: published=N acked=N duplicates=N errors=N seconds=S events_per_s=R bytes=B cpu_s=C
 * Exit status: 0 when every event was acknowledged, 1 on errors, 2 on bad usage.
 */
#include "common/buf.h"
#include "common/ch.h"
#include "common/crypto.h"
#include "common/timeutil.h"
#include "common/ulid.h"
#include "ingest/tiers.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- random numbers -------------------------------------------------------- */

/* splitmix64: one 64-bit state, fast, good enough for sample data; also the
 * hash that derives stable per-user and per-course details. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rnd(rng *r)
{
    r->s += 0x9e3779b97f4a7c15ULL;
    return mix64(r->s);
}

/* 0 <= x < n */
static uint64_t rnd_below(rng *r, uint64_t n)
{
    return n ? rnd(r) % n : 0;
}

static double rnd_unit(rng *r)
{
    return (double)(rnd(r) >> 11) * 0x1.0p-53;
}

static bool rnd_chance(rng *r, double p)
{
    return rnd_unit(r) < p;
}

/* Zipf-like index in [0, n): P(k) ~ log((k+2)/(k+1)) ~ 1/(k+1). */
static uint64_t rnd_zipf(rng *r, uint64_t n)
{
    uint64_t k = (uint64_t)exp(rnd_unit(r) * log((double)n + 1.0)) - 1;
    return k < n ? k : n - 1;
}

#define PICK(r, arr)  ((arr)[rnd_below((r), sizeof(arr) / sizeof((arr)[0]))])
#define HPICK(h, arr) ((arr)[(h) % (sizeof(arr) / sizeof((arr)[0]))])
#define NELEM(arr)    (sizeof(arr) / sizeof((arr)[0]))

/* ---- pools of realistic values ---------------------------------------------- */

typedef struct first_name {
    const char *display, *ascii;
} first_name;

static const first_name firsts[] = {
    {"Emma", "emma"},   {"Liam", "liam"},         {"Olivia", "olivia"}, {"Noah", "noah"},
    {"Ava", "ava"},     {"Mateo", "mateo"},       {"Sofia", "sofia"},   {"Lukas", "lukas"},
    {"Mia", "mia"},     {"Elias", "elias"},       {"Chloé", "chloe"},   {"José", "jose"},
    {"Zoë", "zoe"},     {"Łukasz", "lukasz"},     {"Søren", "soren"},   {"Aiko", "aiko"},
    {"Priya", "priya"}, {"Mohammed", "mohammed"}, {"Fatima", "fatima"}, {"Chen", "chen"},
    {"Ana", "ana"},     {"Jan", "jan"},           {"Ingrid", "ingrid"}, {"Kwame", "kwame"},
    {"Lucía", "lucia"}, {"Yuki", "yuki"},         {"Oliver", "oliver"}, {"Amelia", "amelia"},
    {"Ethan", "ethan"}, {"Hannah", "hannah"},
};

static const first_name lasts[] = {
    {"Smith", "smith"},         {"García", "garcia"},   {"Müller", "mueller"},
    {"Rossi", "rossi"},         {"Nguyễn", "nguyen"},   {"Kowalski", "kowalski"},
    {"Johansson", "johansson"}, {"Dubois", "dubois"},   {"Okafor", "okafor"},
    {"Tanaka", "tanaka"},       {"Silva", "silva"},     {"Novak", "novak"},
    {"Hansen", "hansen"},       {"Kim", "kim"},         {"Patel", "patel"},
    {"O'Brien", "obrien"},      {"Schmidt", "schmidt"}, {"Jensen", "jensen"},
    {"Fernández", "fernandez"}, {"Cohen", "cohen"},
};

static const char *const mail_domains[] = {"gmail.com", "outlook.com", "yahoo.com",
                                           "proton.me", "icloud.com",  "gmx.de"};

typedef struct place {
    const char *city, *country, *postal, *street, *phone_fmt; /* phone_fmt takes one int */
} place;

/* Fictional phone ranges where countries reserve them (555, 7946 0xxx, ...). */
static const place places[] = {
    {"London", "GB", "SW1A 1AA", "Baker Street", "+44 20 7946 0%03d"},
    {"Manchester", "GB", "M1 1AE", "Deansgate", "+44 161 496 0%03d"},
    {"Paris", "FR", "75001", "Rue de Rivoli", "+33 1 99 00 %04d"},
    {"Berlin", "DE", "10115", "Hauptstraße", "+49 30 1234%04d"},
    {"Milan", "IT", "20121", "Via Roma", "+39 02 5550 %04d"},
    {"Madrid", "ES", "28013", "Calle Mayor", "+34 91 555 %04d"},
    {"Austin", "US", "78701", "Congress Avenue", "+1 512-555-%04d"},
    {"Seattle", "US", "98101", "Pine Street", "(206) 555-%04d"},
    {"Copenhagen", "DK", "2200", "Nørrebrogade", "+45 32 12 %04d"},
    {"Toronto", "CA", "M5V 2T6", "King Street West", "+1 416-555-%04d"},
    {"Warsaw", "PL", "00-001", "Nowy Świat", "+48 22 555 %04d"},
    {"Tokyo", "JP", "100-0001", "Chiyoda 1-1", "+81 3-5555-%04d"},
};

static const char *const topics[] = {
    "Intro to Python",
    "Data Science with R",
    "Machine Learning Basics",
    "Spanish for Beginners",
    "Financial Accounting 101",
    "UX Design Fundamentals",
    "Kubernetes in Practice",
    "Photography Masterclass",
    "Public Speaking",
    "Organic Chemistry",
    "Digital Marketing",
    "Music Theory",
    "Calculus I",
    "Creative Writing",
    "Project Management Essentials",
    "Web Development Bootcamp",
    "SQL for Analysts",
    "Leadership & Teams",
    "German B1",
    "Statistics \"Done Right\"",
};
static const char *const categories[] = {
    "programming", "data",    "languages", "business",
    "design",      "science", "arts",      "personal-development"};
static const char *const levels[] = {"beginner", "intermediate", "advanced"};
static const char *const langs[] = {"en", "en", "en", "de", "fr", "es", "pt", "ja"};
static const char *const devices[] = {"web", "web", "web", "ios", "android"};
static const char *const oses[] = {"Windows 11", "macOS 14",     "iOS 17",
                                   "Android 14", "Ubuntu 22.04", "ChromeOS"};
static const char *const browsers[] = {"Chrome 121", "Firefox 122", "Safari 17", "Edge 121"};
static const char *const user_agents[] = {
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/121.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_2) Safari/17.2",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_2 like Mac OS X) Mobile/15E148",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) Chrome/121.0 Mobile",
    "LearnApp/4.12.0 (iOS 17.2; iPhone15,2)",
};
static const char *const qualities[] = {"360p", "480p", "720p", "720p", "1080p", "1080p", "4k"};
static const char *const card_brands[] = {"visa", "visa", "mastercard", "amex", "discover"};
static const char *const sources[] = {"organic", "search", "email", "referral", "ads", "partner"};
static const char *const search_terms[] = {
    "python",    "excel pivot tables", "machine learning", "spanish",   "certificate",
    "free",      "react hooks",        "public speaking",  "calculus",  "photography",
    "sql joins", "leadership",         "ux portfolio",     "kubernetes"};
static const char *const good_texts[] = {
    "Great explanation of the core concepts, the examples really helped.",
    "Could someone explain the difference between the two approaches in lesson 4?",
    "The quiz question 3 seems to have two correct answers.",
    "Loved the pacing. Looking forward to the advanced module!",
    "Audio is a bit quiet in the second video, otherwise \"perfect\".",
    "Is there a recommended reading list for this week?\nThanks in advance.",
    "Finished the assignment - took me about 3 hours. Worth it.",
    "Ich finde die Übungen sehr hilfreich, danke!",
};
/* Free text with PII inside (%s: an e-mail, a phone number or an IP address). */
static const char *const pii_email_texts[] = {
    "Happy to share my notes, just email me at %s and I'll send them over.",
    "I can't log in anymore, my account email is %s - please help!",
};
static const char *const pii_phone_texts[] = {
    "Anyone in the study group can call or text me on %s after 6pm.",
    "Please call me back at %s about the refund.",
};
static const char *const pii_ip_texts[] = {
    "The video player fails for me, my IP is %s in case you need it for the logs.",
};
static const char *const refund_reasons[] = {"requested_by_customer", "duplicate", "fraudulent",
                                             "course_cancelled"};
static const char *const fail_codes[] = {"card_declined", "insufficient_funds", "expired_card",
                                         "authentication_required"};
static const char *const plans[] = {"basic", "plus", "pro", "team"};
static const char *const templates[] = {"welcome",           "enrollment_confirmation",
                                        "weekly_digest",     "course_reminder",
                                        "certificate_ready", "payment_receipt"};
static const char *const tags[] = {"beginner-friendly", "hands-on", "certificate",
                                   "self-paced",        "live",     "project",
                                   "bestseller",        "new"};

/* ---- tenants ---------------------------------------------------------------- */

typedef struct tenant {
    char id[40];
    const char *currency;
    uint64_t salt;    /* derives this tenant's users and courses */
    uint64_t users;   /* size of the user pool */
    uint64_t courses; /* size of the course catalogue */
    double weight;    /* share of the traffic */
} tenant;

static const struct {
    const char *id, *currency;
} tenant_names[] = {
    {"acme-academy", "USD"},      {"globex-university", "EUR"}, {"initech-learning", "GBP"},
    {"umbrella-training", "EUR"}, {"hooli-campus", "USD"},      {"stark-institute", "USD"},
    {"wayne-school", "GBP"},      {"tyrell-skills", "EUR"},     {"wonka-workshops", "CHF"},
    {"soylent-college", "CAD"},
};

/* ---- event types ------------------------------------------------------------ */

struct gen;
struct event;
typedef void (*data_fn)(struct gen *g, struct event *e);

typedef struct event_type {
    const char *service; /* second subject token */
    const char *type;    /* envelope type, the rest of the subject */
    unsigned weight;     /* relative frequency */
    data_fn data;
} event_type;

typedef struct event {
    char id[AN_ULID_STRLEN];
    const event_type *type;
    const tenant *tenant;
    int64_t occurred_ms;
    char corr[40];
    const char *actor_type;
    char actor_id[40];
    uint64_t user; /* index of the acting (or concerned) user in the tenant's pool */
    an_buf data;   /* the data object as JSON text */
} event;

typedef struct gen {
    rng r;
    tenant *tenants;
    int ntenants;
    int64_t end_ms, window_ms; /* window 0: occurredAt is the wall clock */
    uint64_t type_total;
    char last_corr[40];
} gen;

/* ---- a small JSON writer ---------------------------------------------------- */

typedef struct jw {
    an_buf *b;
    int depth;
    bool comma[12];
} jw;

static void put_i64(an_buf *b, int64_t v)
{
    if (v < 0) {
        an_buf_addc(b, '-');
        an_buf_add_u64(b, (uint64_t)0 - (uint64_t)v, 0);
    } else {
        an_buf_add_u64(b, (uint64_t)v, 0);
    }
}

static void jw_key(jw *w, const char *k)
{
    if (w->comma[w->depth])
        an_buf_addc(w->b, ',');
    w->comma[w->depth] = true;
    if (k) {
        an_buf_addc(w->b, '"');
        an_buf_adds(w->b, k);
        an_buf_add(w->b, "\":", 2);
    }
}

static void jw_open(jw *w, const char *k)
{
    jw_key(w, k);
    an_buf_addc(w->b, '{');
    w->comma[++w->depth] = false;
}

static void jw_close(jw *w)
{
    an_buf_addc(w->b, '}');
    w->depth--;
}

static void jw_aopen(jw *w, const char *k)
{
    jw_key(w, k);
    an_buf_addc(w->b, '[');
    w->comma[++w->depth] = false;
}

static void jw_aclose(jw *w)
{
    an_buf_addc(w->b, ']');
    w->depth--;
}

/* A string that needs escaping (free text, names). */
static void jw_str(jw *w, const char *k, const char *v)
{
    jw_key(w, k);
    an_buf_addc(w->b, '"');
    an_buf_add_json_escaped(w->b, v, strlen(v));
    an_buf_addc(w->b, '"');
}

/* A prefix and a number as one string: "crs_123". */
static void jw_id(jw *w, const char *k, const char *prefix, uint64_t v)
{
    jw_key(w, k);
    an_buf_addc(w->b, '"');
    an_buf_adds(w->b, prefix);
    an_buf_add_u64(w->b, v, 0);
    an_buf_addc(w->b, '"');
}

static void jw_strf(jw *w, const char *k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void jw_strf(jw *w, const char *k, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    jw_str(w, k, tmp);
}

static void jw_int(jw *w, const char *k, int64_t v)
{
    jw_key(w, k);
    put_i64(w->b, v);
}

/* cents as a decimal amount: 4900 -> 49.00 */
static void jw_money(jw *w, const char *k, int64_t cents)
{
    jw_key(w, k);
    put_i64(w->b, cents / 100);
    an_buf_addc(w->b, '.');
    an_buf_addc(w->b, (char)('0' + (cents % 100) / 10));
    an_buf_addc(w->b, (char)('0' + cents % 10));
}

/* thousandths as a decimal: 875 -> 0.875 */
static void jw_milli(jw *w, const char *k, int64_t milli)
{
    jw_key(w, k);
    put_i64(w->b, milli / 1000);
    an_buf_addc(w->b, '.');
    int64_t f = milli % 1000;
    an_buf_addc(w->b, (char)('0' + f / 100));
    an_buf_addc(w->b, (char)('0' + f / 10 % 10));
    an_buf_addc(w->b, (char)('0' + f % 10));
}

static void jw_bool(jw *w, const char *k, bool v)
{
    jw_key(w, k);
    an_buf_adds(w->b, v ? "true" : "false");
}

static void jw_null(jw *w, const char *k)
{
    jw_key(w, k);
    an_buf_adds(w->b, "null");
}

/* ---- stable details of users and courses ------------------------------------ */

static uint64_t user_hash(const tenant *t, uint64_t u)
{
    return mix64(t->salt ^ (u * 0x9e3779b97f4a7c15ULL + 1));
}

static uint64_t user_number(const tenant *t, uint64_t u)
{
    return 100000 + (user_hash(t, u) % 900000) * 10 + u % 10;
}

static void user_id(const tenant *t, uint64_t u, char *out, size_t n)
{
    snprintf(out, n, "usr_%" PRIu64, user_number(t, u));
}

static const place *user_place(const tenant *t, uint64_t u)
{
    return &places[(user_hash(t, u) >> 40) % NELEM(places)];
}

static void user_email(const tenant *t, uint64_t u, char *out, size_t n)
{
    uint64_t h = user_hash(t, u);
    snprintf(out, n, "%s.%s%u@%s", HPICK(h, firsts).ascii, HPICK(h >> 8, lasts).ascii,
             (unsigned)(h >> 20) % 100, HPICK(h >> 28, mail_domains));
}

static void user_name(const tenant *t, uint64_t u, char *out, size_t n)
{
    uint64_t h = user_hash(t, u);
    snprintf(out, n, "%s %s", HPICK(h, firsts).display, HPICK(h >> 8, lasts).display);
}

static void user_phone(const tenant *t, uint64_t u, char *out, size_t n)
{
    const place *p = user_place(t, u);
    snprintf(out, n, p->phone_fmt, (int)((user_hash(t, u) >> 12) % 1000));
}

/* A documentation-range IPv4 (RFC 5737) or IPv6 (RFC 3849) address. */
static void random_ip(rng *r, char *out, size_t n)
{
    static const char *const nets[] = {"203.0.113", "198.51.100", "192.0.2"};
    if (rnd_chance(r, 0.15))
        snprintf(out, n, "2001:db8:%x::%x", (unsigned)rnd_below(r, 0xffff),
                 (unsigned)rnd_below(r, 0xffff) + 1);
    else
        snprintf(out, n, "%s.%u", PICK(r, nets), (unsigned)rnd_below(r, 254) + 1);
}

static uint64_t course_number(const tenant *t, uint64_t c)
{
    return 1000 + (mix64(t->salt ^ (0xc0ffee + c)) % 9000) * 100 + c % 100;
}

static unsigned course_lessons(const tenant *t, uint64_t c)
{
    return 6 + (unsigned)(mix64(t->salt + c * 31) % 30);
}

static int64_t course_price(const tenant *t, uint64_t c)
{
    static const int64_t prices[] = {0, 1900, 2900, 4900, 4900, 9900, 14900, 19900};
    return HPICK(mix64(t->salt + c * 7), prices);
}

static uint64_t pick_course(gen *g, const tenant *t)
{
    return rnd_zipf(&g->r, t->courses);
}

/* ---- data builders, one per event type -------------------------------------- */

#define W(e) jw w_ = {.b = &(e)->data}, *w = &w_

static void course_object(gen *g, jw *w, const tenant *t, uint64_t c)
{
    jw_open(w, "course");
    jw_id(w, "id", "crs_", course_number(t, c));
    jw_str(w, "title", topics[c % NELEM(topics)]);
    jw_str(w, "category", categories[c % NELEM(categories)]);
    jw_str(w, "level", levels[c % 3]);
    jw_str(w, "language", langs[c % NELEM(langs)]);
    jw_money(w, "price", course_price(t, c));
    jw_str(w, "currency", t->currency);
    jw_aopen(w, "tags");
    unsigned ntags = 1 + (unsigned)rnd_below(&g->r, 3);
    for (unsigned i = 0; i < ntags; i++)
        jw_str(w, NULL, tags[(c + i * 3) % NELEM(tags)]);
    jw_aclose(w);
    jw_close(w);
}

static void d_course_created(gen *g, event *e)
{
    W(e);
    uint64_t c = pick_course(g, e->tenant);
    jw_open(w, NULL);
    course_object(g, w, e->tenant, c);
    jw_int(w, "lessonCount", course_lessons(e->tenant, c));
    jw_bool(w, "draft", true);
    jw_str(w, "instructorId", e->actor_id);
    jw_close(w);
}

static void d_course_published(gen *g, event *e)
{
    W(e);
    uint64_t c = pick_course(g, e->tenant);
    jw_open(w, NULL);
    jw_id(w, "courseId", "crs_", course_number(e->tenant, c));
    jw_int(w, "version", 1 + (int64_t)rnd_below(&g->r, 6));
    jw_int(w, "lessonCount", course_lessons(e->tenant, c));
    jw_money(w, "price", course_price(e->tenant, c));
    jw_str(w, "currency", e->tenant->currency);
    jw_aopen(w, "visibility");
    jw_str(w, NULL, "catalog");
    if (rnd_chance(&g->r, 0.4))
        jw_str(w, NULL, "search");
    jw_aclose(w);
    jw_bool(w, "certificateEnabled", rnd_chance(&g->r, 0.7));
    jw_close(w);
}

static void d_course_updated(gen *g, event *e)
{
    static const char *const fields[] = {"title", "description", "price", "syllabus", "cover"};
    W(e);
    uint64_t c = pick_course(g, e->tenant);
    jw_open(w, NULL);
    jw_id(w, "courseId", "crs_", course_number(e->tenant, c));
    jw_aopen(w, "changedFields");
    unsigned n = 1 + (unsigned)rnd_below(&g->r, 3);
    for (unsigned i = 0; i < n; i++)
        jw_str(w, NULL, fields[(c + i) % NELEM(fields)]);
    jw_aclose(w);
    jw_int(w, "version", 2 + (int64_t)rnd_below(&g->r, 10));
    jw_open(w, "editor");
    jw_str(w, "role", "instructor");
    jw_str(w, "tool", rnd_chance(&g->r, 0.8) ? "web-editor" : "api");
    jw_close(w);
    jw_close(w);
}

static void d_course_archived(gen *g, event *e)
{
    W(e);
    uint64_t c = pick_course(g, e->tenant);
    jw_open(w, NULL);
    jw_id(w, "courseId", "crs_", course_number(e->tenant, c));
    jw_str(w, "reason", rnd_chance(&g->r, 0.5) ? "outdated" : "low_enrollment");
    jw_int(w, "activeEnrollments", (int64_t)rnd_below(&g->r, 40));
    jw_bool(w, "notifyLearners", true);
    jw_close(w);
}

static void d_enrollment_created(gen *g, event *e)
{
    W(e);
    uint64_t c = pick_course(g, e->tenant);
    int64_t price = course_price(e->tenant, c);
    jw_open(w, NULL);
    jw_id(w, "enrollmentId", "enr_", rnd_below(&g->r, 100000000));
    jw_id(w, "courseId", "crs_", course_number(e->tenant, c));
    jw_str(w, "source", PICK(&g->r, sources));
    jw_open(w, "pricing");
    jw_money(w, "listPrice", price);
    int64_t discount = rnd_chance(&g->r, 0.3) ? price / 5 : 0;
    jw_money(w, "paid", price - discount);
    jw_str(w, "currency", e->tenant->currency);
    if (discount)
        jw_strf(w, "coupon", "SPRING%02u", (unsigned)rnd_below(&g->r, 30));
    else
        jw_null(w, "coupon");
    jw_close(w);
    jw_bool(w, "trial", price == 0);
    jw_str(w, "cohort", rnd_chance(&g->r, 0.5) ? "self-paced" : "2026-spring");
    jw_close(w);
}

static void d_enrollment_completed(gen *g, event *e)
{
    W(e);
    uint64_t c = pick_course(g, e->tenant);
    int64_t score = 55 + (int64_t)rnd_below(&g->r, 46);
    jw_open(w, NULL);
    jw_id(w, "enrollmentId", "enr_", rnd_below(&g->r, 100000000));
    jw_id(w, "courseId", "crs_", course_number(e->tenant, c));
    jw_int(w, "durationDays", 3 + (int64_t)rnd_below(&g->r, 120));
    jw_open(w, "result");
    jw_int(w, "finalScore", score);
    jw_bool(w, "passed", score >= 60);
    jw_int(w, "lessonsCompleted", course_lessons(e->tenant, c));
    jw_close(w);
    jw_bool(w, "certificateEligible", score >= 60);
    jw_close(w);
}

static void d_enrollment_cancelled(gen *g, event *e)
{
    static const char *const why[] = {"no_time", "too_difficult", "not_as_described", "other"};
    W(e);
    uint64_t c = pick_course(g, e->tenant);
    jw_open(w, NULL);
    jw_id(w, "enrollmentId", "enr_", rnd_below(&g->r, 100000000));
    jw_id(w, "courseId", "crs_", course_number(e->tenant, c));
    jw_str(w, "reason", PICK(&g->r, why));
    jw_int(w, "progressPercent", (int64_t)rnd_below(&g->r, 80));
    jw_bool(w, "refundRequested", rnd_chance(&g->r, 0.3));
    jw_close(w);
}

static void lesson_ref(gen *g, jw *w, const tenant *t, unsigned *idx, unsigned *total)
{
    uint64_t c = pick_course(g, t);
    *total = course_lessons(t, c);
    *idx = 1 + (unsigned)rnd_below(&g->r, *total);
    jw_id(w, "courseId", "crs_", course_number(t, c));
    jw_id(w, "lessonId", "les_", course_number(t, c) * 100 + *idx);
    jw_int(w, "lessonIndex", *idx);
}

static void d_lesson_started(gen *g, event *e)
{
    W(e);
    unsigned idx, total;
    jw_open(w, NULL);
    lesson_ref(g, w, e->tenant, &idx, &total);
    jw_str(w, "kind", rnd_chance(&g->r, 0.7) ? "video" : "reading");
    jw_bool(w, "resumed", rnd_chance(&g->r, 0.35));
    jw_open(w, "client");
    jw_str(w, "device", PICK(&g->r, devices));
    jw_str(w, "os", PICK(&g->r, oses));
    jw_str(w, "appVersion", "4.12.0");
    jw_close(w);
    jw_close(w);
}

static void d_lesson_completed(gen *g, event *e)
{
    W(e);
    unsigned idx, total;
    jw_open(w, NULL);
    lesson_ref(g, w, e->tenant, &idx, &total);
    jw_int(w, "timeSpentSec", 60 + (int64_t)rnd_below(&g->r, 3000));
    jw_open(w, "progress");
    jw_int(w, "completedLessons", idx);
    jw_int(w, "totalLessons", total);
    jw_milli(w, "ratio", (int64_t)idx * 1000 / total);
    jw_close(w);
    jw_bool(w, "offline", rnd_chance(&g->r, 0.05));
    jw_close(w);
}

static void d_quiz_started(gen *g, event *e)
{
    W(e);
    uint64_t c = pick_course(g, e->tenant);
    jw_open(w, NULL);
    jw_id(w, "quizId", "quiz_", course_number(e->tenant, c) * 10 + rnd_below(&g->r, 5));
    jw_id(w, "courseId", "crs_", course_number(e->tenant, c));
    jw_int(w, "attempt", 1 + (int64_t)rnd_below(&g->r, 3));
    jw_int(w, "questionCount", 5 + (int64_t)rnd_below(&g->r, 16));
    jw_int(w, "timeLimitSec", rnd_chance(&g->r, 0.5) ? 1800 : 0);
    jw_close(w);
}

static void d_quiz_submitted(gen *g, event *e)
{
    W(e);
    uint64_t c = pick_course(g, e->tenant);
    unsigned nq = 3 + (unsigned)rnd_below(&g->r, 4);
    jw_open(w, NULL);
    jw_id(w, "quizId", "quiz_", course_number(e->tenant, c) * 10 + rnd_below(&g->r, 5));
    jw_id(w, "courseId", "crs_", course_number(e->tenant, c));
    jw_int(w, "attempt", 1 + (int64_t)rnd_below(&g->r, 3));
    jw_aopen(w, "answers");
    for (unsigned i = 0; i < nq; i++) {
        jw_open(w, NULL);
        jw_int(w, "q", i + 1);
        jw_str(w, "choice", (const char *[]){"a", "b", "c", "d"}[rnd_below(&g->r, 4)]);
        jw_close(w);
    }
    jw_aclose(w);
    jw_int(w, "durationSec", 120 + (int64_t)rnd_below(&g->r, 1500));
    jw_close(w);
}

static void d_quiz_graded(gen *g, event *e)
{
    W(e);
    uint64_t c = pick_course(g, e->tenant);
    int64_t max = 10 + 5 * (int64_t)rnd_below(&g->r, 3);
    int64_t score = (int64_t)rnd_below(&g->r, (uint64_t)max + 1);
    jw_open(w, NULL);
    jw_id(w, "quizId", "quiz_", course_number(e->tenant, c) * 10 + rnd_below(&g->r, 5));
    jw_id(w, "courseId", "crs_", course_number(e->tenant, c));
    char learner[40];
    user_id(e->tenant, e->user, learner, sizeof(learner));
    jw_str(w, "learnerId", learner);
    jw_open(w, "score");
    jw_int(w, "points", score);
    jw_int(w, "max", max);
    jw_milli(w, "ratio", score * 1000 / max);
    jw_close(w);
    jw_bool(w, "passed", score * 10 >= max * 6);
    jw_str(w, "gradedBy", strcmp(e->actor_type, "service") == 0 ? "auto" : "instructor");
    jw_close(w);
}

static void d_assignment_submitted(gen *g, event *e)
{
    static const char *const exts[] = {"pdf", "docx", "zip", "ipynb", "png"};
    W(e);
    uint64_t c = pick_course(g, e->tenant);
    unsigned nf = 1 + (unsigned)rnd_below(&g->r, 2);
    jw_open(w, NULL);
    jw_id(w, "assignmentId", "asg_", course_number(e->tenant, c) * 10 + rnd_below(&g->r, 8));
    jw_id(w, "courseId", "crs_", course_number(e->tenant, c));
    jw_aopen(w, "files");
    for (unsigned i = 0; i < nf; i++) {
        jw_open(w, NULL);
        jw_strf(w, "filename", "submission-%u.%s", i + 1, PICK(&g->r, exts));
        jw_int(w, "bytes", 2000 + (int64_t)rnd_below(&g->r, 5000000));
        jw_close(w);
    }
    jw_aclose(w);
    jw_int(w, "wordCount", (int64_t)rnd_below(&g->r, 4000));
    jw_bool(w, "late", rnd_chance(&g->r, 0.12));
    jw_close(w);
}

static void d_assignment_graded(gen *g, event *e)
{
    W(e);
    uint64_t c = pick_course(g, e->tenant);
    char learner[40];
    user_id(e->tenant, rnd_zipf(&g->r, e->tenant->users), learner, sizeof(learner));
    jw_open(w, NULL);
    jw_id(w, "assignmentId", "asg_", course_number(e->tenant, c) * 10 + rnd_below(&g->r, 8));
    jw_id(w, "courseId", "crs_", course_number(e->tenant, c));
    jw_str(w, "learnerId", learner);
    jw_int(w, "grade", 40 + (int64_t)rnd_below(&g->r, 61));
    jw_str(w, "rubric", rnd_chance(&g->r, 0.5) ? "standard-v2" : "essay-v1");
    jw_bool(w, "feedbackGiven", rnd_chance(&g->r, 0.6));
    jw_close(w);
}

static void video_fields(gen *g, jw *w, const tenant *t, int64_t *dur)
{
    unsigned idx, total;
    lesson_ref(g, w, t, &idx, &total);
    *dur = 120 + (int64_t)rnd_below(&g->r, 2400);
    jw_id(w, "videoId", "vid_", rnd_below(&g->r, 10000000));
    jw_int(w, "durationSec", *dur);
}

static void d_video_played(gen *g, event *e)
{
    W(e);
    int64_t dur;
    jw_open(w, NULL);
    video_fields(g, w, e->tenant, &dur);
    jw_int(w, "positionSec", (int64_t)rnd_below(&g->r, (uint64_t)dur));
    jw_open(w, "player");
    jw_str(w, "quality", PICK(&g->r, qualities));
    jw_milli(w, "playbackRate",
             (int64_t[]){1000, 1000, 1000, 1250, 1500, 2000}[rnd_below(&g->r, 6)]);
    jw_bool(w, "captions", rnd_chance(&g->r, 0.2));
    jw_str(w, "browser", PICK(&g->r, browsers));
    jw_close(w);
    jw_close(w);
}

static void d_video_paused(gen *g, event *e)
{
    W(e);
    int64_t dur;
    jw_open(w, NULL);
    video_fields(g, w, e->tenant, &dur);
    jw_int(w, "positionSec", (int64_t)rnd_below(&g->r, (uint64_t)dur));
    jw_int(w, "watchedSec", (int64_t)rnd_below(&g->r, (uint64_t)dur));
    jw_int(w, "bufferingMs", (int64_t)rnd_below(&g->r, 4000));
    jw_close(w);
}

static void d_video_completed(gen *g, event *e)
{
    W(e);
    int64_t dur;
    jw_open(w, NULL);
    video_fields(g, w, e->tenant, &dur);
    jw_int(w, "watchedSec", dur - (int64_t)rnd_below(&g->r, 30));
    jw_milli(w, "completion", 950 + (int64_t)rnd_below(&g->r, 51));
    jw_str(w, "quality", PICK(&g->r, qualities));
    jw_close(w);
}

static void address_object(jw *w, const char *key, const tenant *t, uint64_t u)
{
    const place *p = user_place(t, u);
    jw_open(w, key);
    jw_strf(w, "line1", "%u %s", (unsigned)(user_hash(t, u) % 200) + 1, p->street);
    jw_str(w, "city", p->city);
    jw_str(w, "postalCode", p->postal);
    jw_str(w, "country", p->country);
    jw_close(w);
}

static void d_payment_succeeded(gen *g, event *e)
{
    W(e);
    uint64_t c = pick_course(g, e->tenant);
    int64_t price = course_price(e->tenant, c);
    if (price == 0)
        price = 2900;
    char buf[96];
    jw_open(w, NULL);
    jw_open(w, "payment");
    jw_id(w, "id", "pay_", rnd_below(&g->r, 1000000000));
    jw_money(w, "amount", price);
    jw_str(w, "currency", e->tenant->currency);
    jw_open(w, "method");
    jw_str(w, "type", "card");
    jw_str(w, "brand", PICK(&g->r, card_brands));
    jw_strf(w, "last4", "%04u", (unsigned)rnd_below(&g->r, 10000));
    jw_close(w);
    jw_close(w);
    jw_id(w, "orderId", "ord_", rnd_below(&g->r, 1000000000));
    jw_aopen(w, "items");
    jw_open(w, NULL);
    jw_id(w, "courseId", "crs_", course_number(e->tenant, c));
    jw_money(w, "price", price);
    jw_close(w);
    jw_aclose(w);
    jw_open(w, "billing");
    user_name(e->tenant, e->user, buf, sizeof(buf));
    jw_str(w, "name", buf);
    user_email(e->tenant, e->user, buf, sizeof(buf));
    jw_str(w, "email", buf);
    address_object(w, "address", e->tenant, e->user);
    jw_close(w);
    jw_close(w);
}

static void d_payment_failed(gen *g, event *e)
{
    W(e);
    jw_open(w, NULL);
    jw_id(w, "paymentId", "pay_", rnd_below(&g->r, 1000000000));
    jw_money(w, "amount", 1900 + 1000 * (int64_t)rnd_below(&g->r, 15));
    jw_str(w, "currency", e->tenant->currency);
    jw_str(w, "failureCode", PICK(&g->r, fail_codes));
    jw_int(w, "attempt", 1 + (int64_t)rnd_below(&g->r, 3));
    jw_bool(w, "willRetry", rnd_chance(&g->r, 0.5));
    char ip[48];
    random_ip(&g->r, ip, sizeof(ip));
    jw_str(w, "ip", ip);
    jw_close(w);
}

static void d_payment_refunded(gen *g, event *e)
{
    W(e);
    char buf[96];
    jw_open(w, NULL);
    jw_id(w, "paymentId", "pay_", rnd_below(&g->r, 1000000000));
    jw_id(w, "refundId", "ref_", rnd_below(&g->r, 1000000000));
    jw_money(w, "amount", 1900 + 1000 * (int64_t)rnd_below(&g->r, 15));
    jw_str(w, "currency", e->tenant->currency);
    jw_str(w, "reason", PICK(&g->r, refund_reasons));
    jw_open(w, "customer");
    user_email(e->tenant, e->user, buf, sizeof(buf));
    jw_str(w, "email", buf);
    user_phone(e->tenant, e->user, buf, sizeof(buf));
    jw_str(w, "phone", buf);
    jw_close(w);
    if (rnd_chance(&g->r, 0.5)) {
        char phone[48], text[256];
        user_phone(e->tenant, e->user, phone, sizeof(phone));
        snprintf(text, sizeof(text), PICK(&g->r, pii_phone_texts), phone);
        jw_str(w, "note", text);
    }
    jw_close(w);
}

static void d_subscription_started(gen *g, event *e)
{
    static const int64_t monthly[] = {900, 1900, 2900, 9900};
    W(e);
    unsigned p = (unsigned)rnd_below(&g->r, NELEM(plans));
    bool yearly = rnd_chance(&g->r, 0.3);
    jw_open(w, NULL);
    jw_id(w, "subscriptionId", "sub_", rnd_below(&g->r, 100000000));
    jw_open(w, "plan");
    jw_str(w, "id", plans[p]);
    jw_str(w, "interval", yearly ? "year" : "month");
    jw_money(w, "amount", yearly ? monthly[p] * 10 : monthly[p]);
    jw_str(w, "currency", e->tenant->currency);
    jw_close(w);
    jw_bool(w, "trial", rnd_chance(&g->r, 0.4));
    jw_int(w, "seats", plans[p][0] == 't' ? 5 + (int64_t)rnd_below(&g->r, 50) : 1);
    jw_close(w);
}

static void d_subscription_cancelled(gen *g, event *e)
{
    W(e);
    jw_open(w, NULL);
    jw_id(w, "subscriptionId", "sub_", rnd_below(&g->r, 100000000));
    jw_str(w, "plan", PICK(&g->r, plans));
    jw_bool(w, "atPeriodEnd", rnd_chance(&g->r, 0.8));
    jw_int(w, "monthsActive", 1 + (int64_t)rnd_below(&g->r, 24));
    if (rnd_chance(&g->r, 0.3)) {
        char mail[96], text[256];
        user_email(e->tenant, e->user, mail, sizeof(mail));
        snprintf(text, sizeof(text), PICK(&g->r, pii_email_texts), mail);
        jw_str(w, "feedback", text);
    } else {
        jw_str(w, "feedback", PICK(&g->r, good_texts));
    }
    jw_close(w);
}

static void d_invoice_issued(gen *g, event *e)
{
    W(e);
    char buf[96];
    unsigned n = 1 + (unsigned)rnd_below(&g->r, 3);
    int64_t total = 0;
    jw_open(w, NULL);
    jw_id(w, "invoiceId", "inv_", rnd_below(&g->r, 1000000000));
    jw_aopen(w, "lines");
    for (unsigned i = 0; i < n; i++) {
        uint64_t c = pick_course(g, e->tenant);
        int64_t p = course_price(e->tenant, c) + 900;
        total += p;
        jw_open(w, NULL);
        jw_id(w, "courseId", "crs_", course_number(e->tenant, c));
        jw_money(w, "amount", p);
        jw_close(w);
    }
    jw_aclose(w);
    jw_money(w, "total", total);
    jw_str(w, "currency", e->tenant->currency);
    user_email(e->tenant, e->user, buf, sizeof(buf));
    jw_str(w, "billingEmail", buf);
    jw_bool(w, "paid", rnd_chance(&g->r, 0.9));
    jw_close(w);
}

static void d_certificate_issued(gen *g, event *e)
{
    W(e);
    char buf[96];
    uint64_t c = pick_course(g, e->tenant);
    uint64_t cert = rnd_below(&g->r, 1000000000);
    jw_open(w, NULL);
    jw_id(w, "certificateId", "cert_", cert);
    jw_id(w, "courseId", "crs_", course_number(e->tenant, c));
    jw_open(w, "recipient");
    user_id(e->tenant, e->user, buf, sizeof(buf));
    jw_str(w, "userId", buf);
    user_name(e->tenant, e->user, buf, sizeof(buf));
    jw_str(w, "name", buf);
    user_email(e->tenant, e->user, buf, sizeof(buf));
    jw_str(w, "email", buf);
    jw_close(w);
    jw_int(w, "grade", 60 + (int64_t)rnd_below(&g->r, 41));
    jw_strf(w, "verifyUrl", "https://%s.example/verify/cert_%" PRIu64, e->tenant->id, cert);
    jw_close(w);
}

static void d_user_signed_up(gen *g, event *e)
{
    static const char *const methods[] = {"email", "email", "google", "apple", "sso"};
    W(e);
    char buf[96];
    jw_open(w, NULL);
    jw_open(w, "user");
    jw_str(w, "id", e->actor_id);
    user_email(e->tenant, e->user, buf, sizeof(buf));
    jw_str(w, "email", buf);
    user_name(e->tenant, e->user, buf, sizeof(buf));
    jw_str(w, "name", buf);
    if (rnd_chance(&g->r, 0.4)) {
        user_phone(e->tenant, e->user, buf, sizeof(buf));
        jw_str(w, "phone", buf);
    }
    jw_str(w, "locale", PICK(&g->r, langs));
    jw_close(w);
    jw_str(w, "method", PICK(&g->r, methods));
    jw_bool(w, "marketingOptIn", rnd_chance(&g->r, 0.35));
    jw_open(w, "referrer");
    jw_str(w, "source", PICK(&g->r, sources));
    jw_strf(w, "campaign", "spring-%02u", (unsigned)rnd_below(&g->r, 12));
    jw_close(w);
    random_ip(&g->r, buf, sizeof(buf));
    jw_str(w, "ip", buf);
    jw_close(w);
}

static void d_user_logged_in(gen *g, event *e)
{
    static const char *const methods[] = {"password", "password", "google", "sso", "magic_link"};
    W(e);
    char buf[96];
    const place *p = user_place(e->tenant, e->user);
    jw_open(w, NULL);
    jw_str(w, "method", PICK(&g->r, methods));
    jw_bool(w, "mfa", rnd_chance(&g->r, 0.25));
    random_ip(&g->r, buf, sizeof(buf));
    jw_str(w, "ip", buf);
    jw_str(w, "userAgent", PICK(&g->r, user_agents));
    jw_open(w, "geo");
    jw_str(w, "country", p->country);
    jw_str(w, "city", p->city);
    jw_close(w);
    jw_int(w, "sessionTtlSec", 86400);
    jw_close(w);
}

static void d_user_profile_updated(gen *g, event *e)
{
    W(e);
    char buf[96];
    jw_open(w, NULL);
    jw_aopen(w, "changedFields");
    jw_str(w, NULL, "phone");
    jw_str(w, NULL, "address");
    if (rnd_chance(&g->r, 0.3))
        jw_str(w, NULL, "avatar");
    jw_aclose(w);
    jw_open(w, "user");
    user_phone(e->tenant, e->user, buf, sizeof(buf));
    jw_str(w, "phone", buf);
    address_object(w, "address", e->tenant, e->user);
    jw_str(w, "timezone", rnd_chance(&g->r, 0.5) ? "Europe/Berlin" : "America/Chicago");
    jw_close(w);
    jw_close(w);
}

static void d_user_password_reset_requested(gen *g, event *e)
{
    W(e);
    char buf[96];
    jw_open(w, NULL);
    user_email(e->tenant, e->user, buf, sizeof(buf));
    jw_str(w, "email", buf);
    random_ip(&g->r, buf, sizeof(buf));
    jw_str(w, "ip", buf);
    jw_str(w, "channel", rnd_chance(&g->r, 0.9) ? "email" : "sms");
    jw_int(w, "expiresInSec", 3600);
    jw_close(w);
}

/* Free text: usually harmless, sometimes with an e-mail, phone or IP inside. */
static void free_text(gen *g, event *e, jw *w, const char *key, double pii)
{
    char text[320], v[96];
    if (!rnd_chance(&g->r, pii)) {
        jw_str(w, key, PICK(&g->r, good_texts));
        return;
    }
    switch (rnd_below(&g->r, 3)) {
    case 0:
        user_email(e->tenant, e->user, v, sizeof(v));
        snprintf(text, sizeof(text), PICK(&g->r, pii_email_texts), v);
        break;
    case 1:
        user_phone(e->tenant, e->user, v, sizeof(v));
        snprintf(text, sizeof(text), PICK(&g->r, pii_phone_texts), v);
        break;
    default:
        random_ip(&g->r, v, sizeof(v));
        snprintf(text, sizeof(text), PICK(&g->r, pii_ip_texts), v);
    }
    jw_str(w, key, text);
}

static void d_discussion_posted(gen *g, event *e)
{
    W(e);
    uint64_t c = pick_course(g, e->tenant);
    jw_open(w, NULL);
    jw_id(w, "threadId", "thr_", rnd_below(&g->r, 10000000));
    jw_id(w, "postId", "post_", rnd_below(&g->r, 1000000000));
    jw_id(w, "courseId", "crs_", course_number(e->tenant, c));
    free_text(g, e, w, "body", 0.25);
    jw_aopen(w, "mentions");
    if (rnd_chance(&g->r, 0.3)) {
        char u[40];
        user_id(e->tenant, rnd_zipf(&g->r, e->tenant->users), u, sizeof(u));
        jw_str(w, NULL, u);
    }
    jw_aclose(w);
    jw_int(w, "attachments", (int64_t)rnd_below(&g->r, 3));
    jw_close(w);
}

static void d_discussion_replied(gen *g, event *e)
{
    W(e);
    jw_open(w, NULL);
    jw_id(w, "threadId", "thr_", rnd_below(&g->r, 10000000));
    jw_id(w, "postId", "post_", rnd_below(&g->r, 1000000000));
    jw_id(w, "inReplyTo", "post_", rnd_below(&g->r, 1000000000));
    free_text(g, e, w, "body", 0.15);
    jw_int(w, "depth", 1 + (int64_t)rnd_below(&g->r, 4));
    jw_bool(w, "byInstructor", rnd_chance(&g->r, 0.1));
    jw_close(w);
}

static void d_review_submitted(gen *g, event *e)
{
    W(e);
    uint64_t c = pick_course(g, e->tenant);
    jw_open(w, NULL);
    jw_id(w, "reviewId", "rev_", rnd_below(&g->r, 100000000));
    jw_id(w, "courseId", "crs_", course_number(e->tenant, c));
    jw_int(w, "rating", 1 + (int64_t)(rnd_zipf(&g->r, 5) == 0 ? 4 : rnd_below(&g->r, 4)));
    free_text(g, e, w, "comment", 0.2);
    jw_bool(w, "verifiedLearner", rnd_chance(&g->r, 0.85));
    jw_close(w);
}

static void d_search_performed(gen *g, event *e)
{
    W(e);
    jw_open(w, NULL);
    jw_str(w, "query", PICK(&g->r, search_terms));
    jw_open(w, "filters");
    if (rnd_chance(&g->r, 0.4))
        jw_str(w, "category", PICK(&g->r, categories));
    jw_str(w, "level", rnd_chance(&g->r, 0.3) ? levels[rnd_below(&g->r, 3)] : "any");
    jw_bool(w, "freeOnly", rnd_chance(&g->r, 0.15));
    jw_close(w);
    jw_int(w, "results", (int64_t)rnd_below(&g->r, 250));
    jw_int(w, "page", 1 + (int64_t)rnd_zipf(&g->r, 5));
    jw_int(w, "latencyMs", 5 + (int64_t)rnd_below(&g->r, 200));
    jw_close(w);
}

static void d_notification_sent(gen *g, event *e)
{
    W(e);
    char buf[96];
    bool email = rnd_chance(&g->r, 0.7);
    jw_open(w, NULL);
    jw_id(w, "notificationId", "ntf_", rnd_below(&g->r, 1000000000));
    jw_str(w, "channel", email ? "email" : "push");
    jw_str(w, "template", PICK(&g->r, templates));
    jw_open(w, "recipient");
    user_id(e->tenant, e->user, buf, sizeof(buf));
    jw_str(w, "userId", buf);
    if (email) {
        user_email(e->tenant, e->user, buf, sizeof(buf));
        jw_str(w, "email", buf);
    }
    jw_close(w);
    jw_bool(w, "delivered", rnd_chance(&g->r, 0.97));
    jw_close(w);
}

/* Who acts: a user of the pool, or a platform service. */
#define U "user"
#define S "service"

static const struct type_def {
    event_type t;
    const char *actor; /* U, S, or a service id prefixed "svc:" */
} type_defs[] = {
    {{"courses", "course.created", 3, d_course_created}, U},
    {{"courses", "course.published", 2, d_course_published}, U},
    {{"courses", "course.updated", 4, d_course_updated}, U},
    {{"courses", "course.archived", 1, d_course_archived}, U},
    {{"courses", "enrollment.created", 40, d_enrollment_created}, U},
    {{"courses", "enrollment.completed", 12, d_enrollment_completed}, U},
    {{"courses", "enrollment.cancelled", 4, d_enrollment_cancelled}, U},
    {{"courses", "lesson.started", 150, d_lesson_started}, U},
    {{"courses", "lesson.completed", 110, d_lesson_completed}, U},
    {{"assessments", "quiz.started", 40, d_quiz_started}, U},
    {{"assessments", "quiz.submitted", 35, d_quiz_submitted}, U},
    {{"assessments", "quiz.graded", 35, d_quiz_graded}, "svc:grader"},
    {{"assessments", "assignment.submitted", 15, d_assignment_submitted}, U},
    {{"assessments", "assignment.graded", 12, d_assignment_graded}, U},
    {{"media", "video.played", 170, d_video_played}, U},
    {{"media", "video.paused", 60, d_video_paused}, U},
    {{"media", "video.completed", 70, d_video_completed}, U},
    {{"billing", "payment.succeeded", 25, d_payment_succeeded}, U},
    {{"billing", "payment.failed", 4, d_payment_failed}, U},
    {{"billing", "payment.refunded", 3, d_payment_refunded}, "svc:billing"},
    {{"billing", "subscription.started", 6, d_subscription_started}, U},
    {{"billing", "subscription.cancelled", 3, d_subscription_cancelled}, U},
    {{"billing", "invoice.issued", 20, d_invoice_issued}, "svc:billing"},
    {{"certificates", "certificate.issued", 8, d_certificate_issued}, "svc:certificates"},
    {{"identity", "user.signed_up", 12, d_user_signed_up}, U},
    {{"identity", "user.logged_in", 90, d_user_logged_in}, U},
    {{"identity", "user.profile_updated", 6, d_user_profile_updated}, U},
    {{"identity", "user.password_reset_requested", 3, d_user_password_reset_requested}, U},
    {{"community", "discussion.posted", 20, d_discussion_posted}, U},
    {{"community", "discussion.replied", 25, d_discussion_replied}, U},
    {{"community", "review.submitted", 8, d_review_submitted}, U},
    {{"search", "search.performed", 60, d_search_performed}, U},
    {{"notifications", "notification.sent", 50, d_notification_sent}, "svc:notifier"},
};
#define NTYPES NELEM(type_defs)

/* ---- the generator ---------------------------------------------------------- */

static void gen_init(gen *g, uint64_t seed, int ntenants, int64_t end_ms, int64_t window_ms)
{
    memset(g, 0, sizeof(*g));
    g->r.s = mix64(seed ^ 0x5eed5eed5eedULL);
    g->ntenants = ntenants;
    g->end_ms = end_ms;
    g->window_ms = window_ms;
    g->tenants = calloc((size_t)ntenants, sizeof(tenant));
    if (!g->tenants)
        abort();
    double total = 0;
    for (int i = 0; i < ntenants; i++)
        total += 1.0 / pow(i + 1, 1.1);
    for (int i = 0; i < ntenants; i++) {
        tenant *t = &g->tenants[i];
        if ((size_t)i < NELEM(tenant_names)) {
            snprintf(t->id, sizeof(t->id), "%s", tenant_names[i].id);
            t->currency = tenant_names[i].currency;
        } else {
            snprintf(t->id, sizeof(t->id), "tenant-%04d", i + 1);
            t->currency = "EUR";
        }
        /* per-tenant details depend on the tenant, not on the seed: a user
         * keeps its id and e-mail across runs */
        t->salt = mix64(0x7e7a7e7aULL + (uint64_t)i);
        t->weight = 1.0 / pow(i + 1, 1.1) / total;
        t->users = 200 + (uint64_t)(60000 * t->weight);
        t->courses = 20 + (uint64_t)(600 * t->weight);
    }
    for (size_t i = 0; i < NTYPES; i++)
        g->type_total += type_defs[i].t.weight;
}

static void gen_free(gen *g)
{
    free(g->tenants);
    g->tenants = NULL;
}

static const tenant *pick_tenant(gen *g)
{
    double u = rnd_unit(&g->r);
    for (int i = 0; i < g->ntenants - 1; i++) {
        u -= g->tenants[i].weight;
        if (u < 0)
            return &g->tenants[i];
    }
    return &g->tenants[g->ntenants - 1];
}

static const struct type_def *pick_type(gen *g)
{
    uint64_t x = rnd_below(&g->r, g->type_total);
    for (size_t i = 0; i < NTYPES; i++) {
        if (x < type_defs[i].t.weight)
            return &type_defs[i];
        x -= type_defs[i].t.weight;
    }
    return &type_defs[NTYPES - 1];
}

static void uuid4(rng *r, char out[40])
{
    static const char hx[] = "0123456789abcdef";
    uint64_t a = rnd(r), b = rnd(r);
    char *p = out;
    for (int i = 0; i < 32; i++) {
        if (i == 8 || i == 12 || i == 16 || i == 20)
            *p++ = '-';
        unsigned nib = (unsigned)((i < 16 ? a >> (4 * i) : b >> (4 * (i - 16))) & 15);
        if (i == 12)
            nib = 4; /* version 4 */
        else if (i == 16)
            nib = 8 | (nib & 3); /* variant 10xx */
        *p++ = hx[nib];
    }
    *p = '\0';
}

/* Event number i (0-based) of a run of n (n = 0: endless). The random
 * sequence consumed per event does not depend on the mode or on n. */
static void gen_event(gen *g, event *e, uint64_t i, uint64_t n)
{
    const tenant *t = pick_tenant(g);
    const struct type_def *td = pick_type(g);
    e->tenant = t;
    e->type = &td->t;

    /* occurredAt: in event order across the window, with jitter */
    double u = rnd_unit(&g->r);
    if (g->window_ms > 0 && n > 0)
        e->occurred_ms = g->end_ms - g->window_ms +
                         (int64_t)(((double)i + u) * (double)g->window_ms / (double)n);
    else
        e->occurred_ms = an_time_now_ms();

    /* ULID: the millisecond, then 80 seeded bits */
    an_ulid id;
    uint64_t ms = (uint64_t)e->occurred_ms, r1 = rnd(&g->r), r2 = rnd(&g->r);
    for (int k = 0; k < 6; k++)
        id.b[k] = (unsigned char)(ms >> (8 * (5 - k)));
    for (int k = 0; k < 8; k++)
        id.b[6 + k] = (unsigned char)(r1 >> (8 * k));
    id.b[14] = (unsigned char)r2;
    id.b[15] = (unsigned char)(r2 >> 8);
    an_ulid_format(&id, e->id);

    /* a quarter of the events continue the previous one's request chain */
    if (g->last_corr[0] && rnd_chance(&g->r, 0.25))
        memcpy(e->corr, g->last_corr, sizeof(e->corr));
    else
        uuid4(&g->r, e->corr);
    memcpy(g->last_corr, e->corr, sizeof(e->corr));

    e->user = rnd_zipf(&g->r, t->users);
    if (strcmp(td->actor, U) == 0) {
        e->actor_type = "user";
        user_id(t, e->user, e->actor_id, sizeof(e->actor_id));
    } else {
        /* quiz.graded: mostly the auto-grader, sometimes an instructor */
        bool by_user = strcmp(td->t.type, "quiz.graded") == 0 && rnd_chance(&g->r, 0.2);
        if (by_user) {
            e->actor_type = "user";
            user_id(t, rnd_zipf(&g->r, 50), e->actor_id, sizeof(e->actor_id));
        } else {
            e->actor_type = "service";
            snprintf(e->actor_id, sizeof(e->actor_id), "%s", td->actor + 4);
        }
    }

    an_buf_reset(&e->data);
    td->t.data(g, e);
}

static void envelope(const event *e, an_buf *out)
{
    char ts[AN_TIME_ISO_LEN];
    an_time_format_iso(e->occurred_ms, ts, NULL);
    an_buf_adds(out, "{\"id\":\"");
    an_buf_adds(out, e->id);
    an_buf_adds(out, "\",\"type\":\"");
    an_buf_adds(out, e->type->type);
    an_buf_adds(out, "\",\"tenantId\":\"");
    an_buf_adds(out, e->tenant->id);
    an_buf_adds(out, "\",\"occurredAt\":\"");
    an_buf_adds(out, ts);
    an_buf_adds(out, "\",\"correlationId\":\"");
    an_buf_adds(out, e->corr);
    an_buf_adds(out, "\",\"actor\":{\"type\":\"");
    an_buf_adds(out, e->actor_type);
    an_buf_adds(out, "\",\"id\":\"");
    an_buf_adds(out, e->actor_id);
    an_buf_adds(out, "\"},\"data\":");
    an_buf_add(out, e->data.data, e->data.len);
    an_buf_addc(out, '}');
}

/* ---- run control ------------------------------------------------------------ */

typedef struct opts {
    enum { MODE_NONE, MODE_JSON, MODE_TSV, MODE_PUBLISH } mode;
    uint64_t n;
    uint64_t seed;
    int tenants;
    int64_t end_ms, window_ms;
    double rate;
    const char *prefix;
    const char *nats_url;
    int64_t max_pending;
    bool msg_id;
    const char *hmac_key, *key_id;
    bool quiet;
    bool lean;
    bool pregenerate, wait_signal; /* --publish */
    const char *tier;              /* --tsv: hot or audit */
} opts;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* Sleep until event i is due under the rate limit. */
static void pace(const opts *o, int64_t t0_ms, uint64_t i)
{
    if (o->rate <= 0)
        return;
    int64_t due = t0_ms + (int64_t)((double)i * 1000.0 / o->rate);
    int64_t now = an_time_mono_ms();
    if (due > now) {
        struct timespec ts = {(due - now) / 1000, ((due - now) % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

static void flush_out(an_buf *b)
{
    if (b->len && fwrite(b->data, 1, b->len, stdout) != b->len) {
        fprintf(stderr, "eventgen: write: %s\n", strerror(errno));
        exit(1);
    }
    an_buf_reset(b);
}

/* ---- --json ----------------------------------------------------------------- */

static int run_json(const opts *o, gen *g)
{
    event e = {0};
    an_buf out = AN_BUF_INIT;
    int64_t t0 = an_time_mono_ms();
    for (uint64_t i = 0; i < o->n && !stop_requested; i++) {
        pace(o, t0, i);
        gen_event(g, &e, i, o->n);
        envelope(&e, &out);
        an_buf_addc(&out, '\n');
        if (out.len > (1u << 20) || o->rate > 0)
            flush_out(&out);
    }
    flush_out(&out);
    fflush(stdout);
    an_buf_free(&out);
    an_buf_free(&e.data);
    return 0;
}

/* ---- --tsv ------------------------------------------------------------------ */

#define MAX_LEAVES 256

typedef struct flat {
    an_buf arena; /* NUL-separated keys and values */
    size_t koff[MAX_LEAVES], voff[MAX_LEAVES];
    size_t klen[MAX_LEAVES], vlen[MAX_LEAVES];
    size_t n;
} flat;

static void flat_leaf(flat *f, const char *path, size_t plen, const char *v, size_t vlen)
{
    if (f->n == MAX_LEAVES)
        return;
    f->koff[f->n] = f->arena.len;
    f->klen[f->n] = plen;
    an_buf_add(&f->arena, path, plen);
    an_buf_addc(&f->arena, '\0');
    f->voff[f->n] = f->arena.len;
    f->vlen[f->n] = vlen;
    an_buf_add(&f->arena, v, vlen);
    an_buf_addc(&f->arena, '\0');
    f->n++;
}

static bool all_scalars(const cJSON *a)
{
    for (const cJSON *c = a->child; c; c = c->next)
        if (cJSON_IsObject(c) || cJSON_IsArray(c))
            return false;
    return true;
}

/* Dotted paths of the leaves; arrays of scalars are one leaf (their JSON),
 * arrays of objects are walked with the index as a path element. */
static void flatten(flat *f, const cJSON *node, char *path, size_t plen)
{
    for (const cJSON *c = node->child; c; c = c->next) {
        char idx[24];
        const char *k = c->string;
        if (!k) {
            size_t i = 0;
            for (const cJSON *s = node->child; s != c; s = s->next)
                i++;
            snprintf(idx, sizeof(idx), "%zu", i);
            k = idx;
        }
        size_t klen = strlen(k), nlen = plen + (plen ? 1 : 0) + klen;
        if (nlen >= 512)
            continue;
        if (plen)
            path[plen] = '.';
        memcpy(path + plen + (plen ? 1 : 0), k, klen);
        path[nlen] = '\0';
        if (cJSON_IsObject(c) || (cJSON_IsArray(c) && !all_scalars(c))) {
            flatten(f, c, path, nlen);
        } else if (cJSON_IsString(c)) {
            flat_leaf(f, path, nlen, c->valuestring, strlen(c->valuestring));
        } else {
            char *txt = cJSON_PrintUnformatted(c);
            flat_leaf(f, path, nlen, txt, strlen(txt));
            cJSON_free(txt);
        }
        path[plen] = '\0';
    }
}

/* One analytics.events row: the data JSON as properties (not scrubbed: only
 * the shape and size matter here), its leaves flattened, the actor hashed. */
static bool add_hot_row(const opts *o, an_ch_batch *b, const event *e, int64_t now_s, flat *f)
{
    char actor[AN_CRYPTO_SHA256_HEX], path[512];
    an_crypto_hmac_sha256_hex(o->hmac_key, strlen(o->hmac_key), e->actor_id, strlen(e->actor_id),
                              actor, NULL);
    cJSON *data = cJSON_ParseWithLength(e->data.data, e->data.len);
    if (!data)
        return false;
    an_buf_reset(&f->arena);
    f->n = 0;
    path[0] = '\0';
    flatten(f, data, path, 0);
    cJSON_Delete(data);
    const char *keys[MAX_LEAVES], *vals[MAX_LEAVES];
    for (size_t k = 0; k < f->n; k++) {
        keys[k] = f->arena.data + f->koff[k];
        vals[k] = f->arena.data + f->voff[k];
    }
    an_ch_batch_add_cstr(b, e->tenant->id);
    an_ch_batch_add_cstr(b, e->id);
    an_ch_batch_add_cstr(b, e->type->type);
    an_ch_batch_add_datetime(b, an_time_floor_div(e->occurred_ms, 1000));
    an_ch_batch_add_uint(b, (uint64_t)an_time_floor_mod(e->occurred_ms, 1000));
    an_ch_batch_add_datetime(b, now_s);
    an_ch_batch_add_cstr(b, e->actor_type);
    an_ch_batch_add_cstr(b, actor);
    an_ch_batch_add_cstr(b, o->key_id);
    an_ch_batch_add_cstr(b, e->corr);
    an_ch_batch_add_str(b, e->data.data, e->data.len);
    an_ch_batch_add_str_array(b, keys, f->klen, f->n);
    an_ch_batch_add_str_array(b, vals, f->vlen, f->n);
    return true;
}

/* The subject event e is published on. */
static void event_subject(const opts *o, const event *e, char *out, size_t n)
{
    snprintf(out, n, "%s.%s.%s", o->prefix, e->type->service, e->type->type);
}

/* One analytics_audit.events row: the envelope as published, its subject. */
static void add_audit_row(const opts *o, an_ch_batch *b, const event *e, int64_t now_s,
                          uint64_t seq, an_buf *tmp)
{
    char subject[256];
    event_subject(o, e, subject, sizeof(subject));
    an_buf_reset(tmp);
    envelope(e, tmp);
    an_ch_batch_add_cstr(b, e->tenant->id);
    an_ch_batch_add_cstr(b, e->id);
    an_ch_batch_add_cstr(b, e->type->type);
    an_ch_batch_add_cstr(b, subject);
    an_ch_batch_add_datetime(b, an_time_floor_div(e->occurred_ms, 1000));
    an_ch_batch_add_uint(b, (uint64_t)an_time_floor_mod(e->occurred_ms, 1000));
    an_ch_batch_add_datetime(b, now_s);
    an_ch_batch_add_uint(b, seq);
    an_ch_batch_add_str(b, tmp->data, tmp->len);
}

static int run_tsv(const opts *o, gen *g)
{
    an_ch_batch *b = NULL;
    an_error err;
    bool audit = strcmp(o->tier, "audit") == 0;
    if (an_ch_batch_new(audit ? "analytics_audit.events" : "analytics.events",
                        audit ? audit_cols : hot_cols, audit ? NELEM(audit_cols) : NELEM(hot_cols),
                        AN_CH_FORMAT_TSV, &b, &err) != AN_OK) {
        fprintf(stderr, "eventgen: %s\n", err.message);
        return 1;
    }
    event e = {0};
    flat f = {0};
    an_buf tmp = AN_BUF_INIT;
    int64_t now_s = an_time_now_ms() / 1000, t0 = an_time_mono_ms();
    for (uint64_t i = 0; i < o->n && !stop_requested; i++) {
        pace(o, t0, i);
        gen_event(g, &e, i, o->n);
        if (audit) {
            add_audit_row(o, b, &e, now_s, i + 1, &tmp);
        } else if (!add_hot_row(o, b, &e, now_s, &f)) {
            fprintf(stderr, "eventgen: bug: event %" PRIu64 " has invalid data JSON: %s\n", i,
                    e.data.data);
            return 1;
        }
        if (an_ch_batch_end_row(b, &err) != AN_OK) {
            fprintf(stderr, "eventgen: bug: row %" PRIu64 ": %s\n", i, err.message);
            return 1;
        }
        if (an_ch_batch_bytes(b) > (1u << 20) || o->rate > 0) {
            size_t len;
            const char *d = an_ch_batch_data(b, &len);
            if (fwrite(d, 1, len, stdout) != len) {
                fprintf(stderr, "eventgen: write: %s\n", strerror(errno));
                return 1;
            }
            an_ch_batch_reset(b);
        }
    }
    size_t len;
    const char *d = an_ch_batch_data(b, &len);
    if (fwrite(d, 1, len, stdout) != len || fflush(stdout) != 0) {
        fprintf(stderr, "eventgen: write: %s\n", strerror(errno));
        return 1;
    }
    an_ch_batch_free(b);
    an_buf_free(&f.arena);
    an_buf_free(&tmp);
    an_buf_free(&e.data);
    return 0;
}

/* ---- --publish -------------------------------------------------------------- */

/* Before destroying a connection: let replies still on their way be
 * delivered and freed (nats.c frees messages on a collector thread that
 * stops with the library) instead of being cut off mid-delivery. */
static void drain(natsConnection *nc)
{
    if (nc && natsConnection_DrainTimeout(nc, 5000) == NATS_OK)
        for (int i = 0; i < 600 && !natsConnection_IsClosed(nc); i++)
            nats_Sleep(10);
}

/* this process's user + system CPU */
/* The last line of --publish, read by bench/ingest.sh. cpu_s: this
 * process's CPU since the first publish (cpu0 is what it had spent before),
 * so a benchmark can tell what the generator took from the machine. */
static void report(uint64_t sent, uint64_t acked, uint64_t dups, uint64_t errors, double secs,
                   uint64_t bytes, double cpu0)
{
    double cpu = an_time_cpu_s() - cpu0;
    fprintf(stderr,
            "eventgen: published=%" PRIu64 " acked=%" PRIu64 " duplicates=%" PRIu64
            " errors=%" PRIu64 " seconds=%.3f events_per_s=%.0f bytes=%" PRIu64 " cpu_s=%.2f\n",
            sent, acked, dups, errors, secs, secs > 0 ? (double)acked / secs : 0.0, bytes, cpu);
}

typedef struct pub_state {
    atomic_uint_fast64_t acked, dups, errors;
    char first_error[256];
    atomic_bool have_error;
} pub_state;

static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    pub_state *st = closure;
    if (pa) {
        atomic_fetch_add(&st->acked, 1);
        if (pa->Duplicate)
            atomic_fetch_add(&st->dups, 1);
    } else if (pae) {
        atomic_fetch_add(&st->errors, 1);
        if (!atomic_exchange(&st->have_error, true)) {
            if (pae->Err == NATS_NO_RESPONDERS)
                snprintf(st->first_error, sizeof(st->first_error),
                         "no JetStream stream captures %s (is ingest running?)",
                         natsMsg_GetSubject(msg));
            else
                snprintf(st->first_error, sizeof(st->first_error), "%s (error code %d) on %s",
                         pae->ErrText ? pae->ErrText : natsStatus_GetText(pae->Err),
                         (int)pae->ErrCode, natsMsg_GetSubject(msg));
        }
    }
    natsMsg_Destroy(msg);
}

/* The publishers' connection (options kept for the caller to destroy). */
static natsStatus connect_nats(const opts *o, natsOptions **nopts, natsConnection **nc)
{
    natsStatus s = natsOptions_Create(nopts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(*nopts, o->nats_url);
    if (s == NATS_OK)
        s = natsOptions_SetName(*nopts, "eventgen");
    if (s == NATS_OK)
        s = natsOptions_SetIOBufSize(*nopts, 256 * 1024);
    if (s == NATS_OK)
        s = natsConnection_Connect(nc, *nopts);
    if (s != NATS_OK)
        fprintf(stderr, "eventgen: connect to %s: %s\n", o->nats_url, natsStatus_GetText(s));
    return s;
}

/* Event i as the body of a message and the subject it goes to. */
static void next_event(const opts *o, gen *g, uint64_t i, event *e, an_buf *body, char *subject,
                       size_t subject_size)
{
    gen_event(g, e, i, o->n);
    an_buf_reset(body);
    envelope(e, body);
    event_subject(o, e, subject, subject_size);
}

/* What the publishers send: event i made on the fly, or, with --pregenerate,
 * every event made before the first publish and kept in one buffer as
 * "subject\0id\0body\0", so the publishing loop only publishes. */
typedef struct source {
    const opts *o;
    gen *g;
    event e;
    an_buf body;
    char subject[256];
    an_buf all;  /* --pregenerate */
    size_t *at;  /* event i starts at all.data + at[i]; at[n] = all.len */
    double cpu0; /* CPU seconds spent before the first publish */
} source;

typedef struct outgoing {
    const char *subject, *id, *body;
    size_t len;
} outgoing;

/* The signals --wait-signal waits for: SIGUSR1 to go, SIGINT or SIGTERM to
 * stop. main blocks them before nats.c starts its threads, so one sent
 * early is kept pending, not lost. */
static void wait_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGUSR1);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
}

/* Make the events up front when asked, then, with --wait-signal, wait:
 * bench/ingest.sh starts its clock and CPU counters, then sends SIGUSR1. */
static void source_init(source *src, const opts *o, gen *g)
{
    *src = (source){.o = o, .g = g, .body = AN_BUF_INIT, .all = AN_BUF_INIT};
    if (o->pregenerate && o->n > 0) {
        int64_t t0 = an_time_mono_ms();
        src->at = malloc((o->n + 1) * sizeof(*src->at));
        if (!src->at)
            abort();
        for (uint64_t i = 0; i < o->n; i++) {
            next_event(o, g, i, &src->e, &src->body, src->subject, sizeof(src->subject));
            src->at[i] = src->all.len;
            an_buf_add(&src->all, src->subject, strlen(src->subject) + 1);
            an_buf_add(&src->all, src->e.id, strlen(src->e.id) + 1);
            an_buf_add(&src->all, src->body.data, src->body.len);
            an_buf_addc(&src->all, '\0');
        }
        src->at[o->n] = src->all.len;
        fprintf(stderr, "eventgen: generated=%" PRIu64 " bytes=%zu seconds=%.3f cpu_s=%.2f\n", o->n,
                src->all.len, (double)(an_time_mono_ms() - t0) / 1000.0, an_time_cpu_s());
    }
    if (o->wait_signal) {
        sigset_t set, stop;
        wait_signals(&set);
        int sig = 0;
        while (sigwait(&set, &sig) != 0)
            ;
        if (sig != SIGUSR1)
            stop_requested = 1;
        /* from here on SIGINT and SIGTERM reach on_signal again */
        wait_signals(&stop);
        sigdelset(&stop, SIGUSR1);
        pthread_sigmask(SIG_UNBLOCK, &stop, NULL);
    }
    src->cpu0 = an_time_cpu_s();
}

static outgoing source_next(source *src, uint64_t i)
{
    if (src->at) {
        const char *subject = src->all.data + src->at[i];
        const char *id = subject + strlen(subject) + 1;
        const char *body = id + strlen(id) + 1;
        return (outgoing){subject, id, body, (size_t)(src->all.data + src->at[i + 1] - body) - 1};
    }
    next_event(src->o, src->g, i, &src->e, &src->body, src->subject, sizeof(src->subject));
    return (outgoing){src->subject, src->e.id, src->body.data, src->body.len};
}

static void source_free(source *src)
{
    an_buf_free(&src->body);
    an_buf_free(&src->e.data);
    an_buf_free(&src->all);
    free(src->at);
}

static int run_publish(const opts *o, gen *g)
{
    natsOptions *nopts = NULL;
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsOptions jo;
    pub_state st = {0};
    int rc = 1;
    natsStatus s = connect_nats(o, &nopts, &nc);
    if (s != NATS_OK)
        goto out;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = o->max_pending;
    jo.PublishAsync.AckHandler = on_ack;
    jo.PublishAsync.AckHandlerClosure = &st;
    jo.PublishAsync.StallWait = 1000;
    if ((s = natsConnection_JetStream(&js, nc, &jo)) != NATS_OK) {
        fprintf(stderr, "eventgen: jetstream: %s\n", natsStatus_GetText(s));
        goto out;
    }

    source src;
    source_init(&src, o, g);
    uint64_t sent = 0, bytes = 0;
    jsPubOptions po;
    jsPubOptions_Init(&po);
    int64_t t0 = an_time_mono_ms(), last_report = t0;
    for (uint64_t i = 0; (o->n == 0 || i < o->n) && !stop_requested; i++) {
        pace(o, t0, i);
        outgoing m = source_next(&src, i);
        po.MsgId = o->msg_id ? m.id : NULL;
        /* js_PublishAsync waits up to StallWait while MaxPending acks are
         * outstanding, then gives NATS_TIMEOUT: wait again, unless acks fail */
        do {
            s = js_PublishAsync(js, m.subject, m.body, (int)m.len, &po);
        } while (s == NATS_TIMEOUT && !stop_requested && atomic_load(&st.errors) == 0);
        if (s != NATS_OK) {
            fprintf(stderr, "eventgen: publish: %s\n", natsStatus_GetText(s));
            break;
        }
        sent++;
        bytes += m.len;
        if (atomic_load(&st.errors) > 0)
            break; /* e.g. no stream captures the subject: do not send the rest in vain */
        if (!o->quiet && (sent & 1023) == 0) {
            int64_t now = an_time_mono_ms();
            if (now - last_report >= 5000) {
                fprintf(stderr, "eventgen: %" PRIu64 " published, %" PRIu64 " acked\n", sent,
                        (uint64_t)atomic_load(&st.acked));
                last_report = now;
            }
        }
    }
    jsPubOptions cpo;
    jsPubOptions_Init(&cpo);
    cpo.MaxWait = 120000;
    natsStatus cs = js_PublishAsyncComplete(js, &cpo);
    double secs = (double)(an_time_mono_ms() - t0) / 1000.0;
    if (cs != NATS_OK) {
        fprintf(stderr, "eventgen: waiting for the acks: %s\n", natsStatus_GetText(cs));
        natsMsgList pending;
        if (js_PublishAsyncGetPendingList(&pending, js) == NATS_OK) {
            fprintf(stderr, "eventgen: %d publishes never acknowledged\n", pending.Count);
            natsMsgList_Destroy(&pending);
        }
    }
    uint64_t acked = atomic_load(&st.acked), errors = atomic_load(&st.errors);
    if (errors)
        fprintf(stderr, "eventgen: %" PRIu64 " publishes failed, first: %s\n", errors,
                st.first_error);
    report(sent, acked, atomic_load(&st.dups), errors, secs, bytes, src.cpu0);
    rc = (s == NATS_OK && cs == NATS_OK && errors == 0 && acked == sent) ? 0 : 1;
    source_free(&src);
out:
    drain(nc);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    natsOptions_Destroy(nopts);
    nats_CloseAndWait(2000); /* threads done: nothing in flight at exit */
    return rc;
}

/* ---- --publish --lean --------------------------------------------------------
 * The same wire protocol as js_PublishAsync (PUB/HPUB with a reply subject,
 * the stream's PubAck JSON back on it) without nats.c's per-message
 * bookkeeping (a hash map entry, timers and a message object per publish):
 * one reply subject, a counter of acks in flight. It costs the generator
 * about half the CPU, which on a small machine is CPU the system under test
 * gets back. Errors are counted, not tied to a message. */

typedef struct lean_state {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_uint_fast64_t inflight, acked, dups, errors;
    atomic_uint_fast64_t want; /* the waiter wakes when inflight <= want */
    atomic_bool waiting;
    char first_error[256];
} lean_state;

static void on_lean_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    lean_state *st = closure;
    const char *d = natsMsg_GetData(msg);
    int n = natsMsg_GetDataLength(msg);
    bool nores = natsMsg_IsNoResponders(msg);
    bool err = nores || n == 0 || (d && memmem(d, (size_t)n, "\"error\"", 7));
    if (err) {
        if (atomic_fetch_add(&st->errors, 1) == 0) {
            if (nores)
                snprintf(st->first_error, sizeof(st->first_error),
                         "no JetStream stream captures the subjects (is ingest running?)");
            else
                snprintf(st->first_error, sizeof(st->first_error), "%.*s", n > 200 ? 200 : n,
                         d ? d : "");
        }
    } else {
        atomic_fetch_add(&st->acked, 1);
        /* {"stream":"S", "seq":7,"duplicate": true} (nats-server 2.9 spacing) */
        const char *dup = memmem(d, (size_t)n, "\"duplicate\"", 11);
        if (dup) {
            dup += 11;
            while (dup < d + n && (*dup == ' ' || *dup == ':'))
                dup++;
            if (d + n - dup >= 4 && memcmp(dup, "true", 4) == 0)
                atomic_fetch_add(&st->dups, 1);
        }
    }
    /* Destroy before counting: natsMsg_Destroy hands the message to nats.c's
     * collector thread, which must still run when it does (after the last
     * count the publisher tears the library down). */
    natsMsg_Destroy(msg);
    uint64_t left = atomic_fetch_sub(&st->inflight, 1) - 1;
    /* wake the publisher only when it waits and enough acks came back, not on
     * every ack: a wake-up per message costs more than the message */
    if (atomic_load(&st->waiting) && left <= atomic_load(&st->want)) {
        pthread_mutex_lock(&st->mu);
        pthread_cond_signal(&st->cv);
        pthread_mutex_unlock(&st->mu);
    }
}

/* Wait until at most `most` publishes are unacknowledged; false when no ack
 * arrived for timeout_ms. */
static bool lean_wait(lean_state *st, uint64_t most, int64_t timeout_ms)
{
    if (atomic_load(&st->inflight) <= most)
        return true;
    bool ok = true;
    pthread_mutex_lock(&st->mu);
    atomic_store(&st->want, most);
    atomic_store(&st->waiting, true);
    uint64_t seen = atomic_load(&st->acked) + atomic_load(&st->errors);
    int64_t deadline = an_time_mono_ms() + timeout_ms;
    while (atomic_load(&st->inflight) > most) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&st->cv, &st->mu, &ts);
        uint64_t now_seen = atomic_load(&st->acked) + atomic_load(&st->errors);
        if (now_seen != seen) {
            seen = now_seen;
            deadline = an_time_mono_ms() + timeout_ms;
        } else if (an_time_mono_ms() > deadline) {
            ok = false;
            break;
        }
    }
    atomic_store(&st->waiting, false);
    pthread_mutex_unlock(&st->mu);
    return ok;
}

static int run_publish_lean(const opts *o, gen *g)
{
    natsOptions *nopts = NULL;
    natsConnection *nc = NULL;
    natsSubscription *sub = NULL;
    natsInbox *inbox = NULL;
    lean_state st = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    char reply_sub[128], reply[128];
    int rc = 1;
    natsStatus s = connect_nats(o, &nopts, &nc);
    if (s != NATS_OK)
        goto out;
    if ((s = natsInbox_Create(&inbox)) != NATS_OK)
        goto out;
    snprintf(reply_sub, sizeof(reply_sub), "%s.*", (const char *)inbox);
    snprintf(reply, sizeof(reply), "%s.a", (const char *)inbox);
    s = natsConnection_Subscribe(&sub, nc, reply_sub, on_lean_reply, &st);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(sub, -1, -1);
    if (s != NATS_OK) {
        fprintf(stderr, "eventgen: subscribe: %s\n", natsStatus_GetText(s));
        goto out;
    }

    source src;
    source_init(&src, o, g);
    uint64_t sent = 0, bytes = 0;
    bool stalled = false;
    int64_t t0 = an_time_mono_ms(), last_report = t0;
    for (uint64_t i = 0; (o->n == 0 || i < o->n) && !stop_requested; i++) {
        pace(o, t0, i);
        outgoing out = source_next(&src, i);
        /* at the limit, wait until half the window is free again */
        if (atomic_load(&st.inflight) >= (uint64_t)o->max_pending &&
            !lean_wait(&st, (uint64_t)o->max_pending / 2, 30000)) {
            stalled = true;
            break;
        }
        if (atomic_load(&st.errors) > 0)
            break; /* e.g. no stream captures the subject: do not send the rest in vain */
        atomic_fetch_add(&st.inflight, 1);
        if (o->msg_id) {
            natsMsg *m = NULL;
            s = natsMsg_Create(&m, out.subject, reply, out.body, (int)out.len);
            if (s == NATS_OK)
                s = natsMsgHeader_Set(m, "Nats-Msg-Id", out.id);
            if (s == NATS_OK)
                s = natsConnection_PublishMsg(nc, m);
            natsMsg_Destroy(m);
        } else {
            s = natsConnection_PublishRequest(nc, out.subject, reply, out.body, (int)out.len);
        }
        if (s != NATS_OK) {
            fprintf(stderr, "eventgen: publish: %s\n", natsStatus_GetText(s));
            break;
        }
        sent++;
        bytes += out.len;
        if (!o->quiet && (sent & 1023) == 0 && an_time_mono_ms() - last_report >= 5000) {
            last_report = an_time_mono_ms();
            fprintf(stderr, "eventgen: %" PRIu64 " published\n", sent);
        }
    }
    if (s == NATS_OK)
        natsConnection_Flush(nc);
    bool complete = !stalled && lean_wait(&st, 0, 60000);
    double secs = (double)(an_time_mono_ms() - t0) / 1000.0;
    uint64_t acked = atomic_load(&st.acked), errors = atomic_load(&st.errors);
    if (!complete)
        fprintf(stderr, "eventgen: %" PRIu64 " publishes never acknowledged\n",
                (uint64_t)atomic_load(&st.inflight));
    if (errors)
        fprintf(stderr, "eventgen: %" PRIu64 " publishes failed, first: %s\n", errors,
                st.first_error);
    report(sent, acked, atomic_load(&st.dups), errors, secs, bytes, src.cpu0);
    rc = (s == NATS_OK && complete && errors == 0 && acked == sent) ? 0 : 1;
    source_free(&src);
out:
    drain(nc);
    natsSubscription_Destroy(sub);
    natsConnection_Destroy(nc);
    natsInbox_Destroy(inbox);
    natsOptions_Destroy(nopts);
    nats_CloseAndWait(2000); /* threads done: nothing in flight at exit */
    return rc;
}

/* ---- main ------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fputs("usage: eventgen (--json N | --tsv N | --publish N) [--seed S] [--tenants T]\n"
          "                [--end RFC3339] [--window DUR] [--rate R] [--prefix P]\n"
          "                [--nats URL] [--max-pending K] [--no-msg-id]\n"
          "                [--hmac-key K] [--key-id ID] [--tier hot|audit] [--lean] [--quiet]\n"
          "                [--pregenerate] [--wait-signal]\n"
          "  DUR: 7d, 12h, 30m, 10s, 500ms; --window 0: occurredAt = now\n"
          "  see the top of bench/eventgen.c for what each does\n",
          f);
}

static bool parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!s || !*s || *s == '-')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

static bool parse_duration(const char *s, int64_t *ms)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0)
        return false;
    double mul;
    if (!*end || strcmp(end, "ms") == 0)
        mul = 1;
    else if (strcmp(end, "s") == 0)
        mul = 1e3;
    else if (strcmp(end, "m") == 0)
        mul = 60e3;
    else if (strcmp(end, "h") == 0)
        mul = 3600e3;
    else if (strcmp(end, "d") == 0)
        mul = 86400e3;
    else
        return false;
    *ms = (int64_t)(v * mul);
    return true;
}

int main(int argc, char **argv)
{
    const char *env_url = getenv("ANALYTICS_NATS_URL");
    const char *env_key = getenv("ANALYTICS_INGEST_HMAC_KEY");
    const char *env_kid = getenv("ANALYTICS_INGEST_HMAC_KEY_ID");
    opts o = {.seed = 1,
              .tenants = 5,
              .end_ms = an_time_now_ms(),
              .window_ms = 7 * AN_TIME_MS_PER_DAY,
              .prefix = "events",
              .nats_url = env_url && *env_url ? env_url : "nats://127.0.0.1:4222",
              .max_pending = 8192,
              .msg_id = true,
              .hmac_key = env_key && *env_key ? env_key : "eventgen",
              .key_id = env_kid && *env_kid ? env_kid : "k1",
              .tier = "hot"};
    static const struct option longopts[] = {{"json", required_argument, 0, 'j'},
                                             {"tsv", required_argument, 0, 't'},
                                             {"publish", required_argument, 0, 'p'},
                                             {"seed", required_argument, 0, 's'},
                                             {"tenants", required_argument, 0, 'T'},
                                             {"end", required_argument, 0, 'e'},
                                             {"window", required_argument, 0, 'w'},
                                             {"rate", required_argument, 0, 'r'},
                                             {"prefix", required_argument, 0, 'P'},
                                             {"nats", required_argument, 0, 'n'},
                                             {"max-pending", required_argument, 0, 'm'},
                                             {"no-msg-id", no_argument, 0, 'I'},
                                             {"hmac-key", required_argument, 0, 'k'},
                                             {"key-id", required_argument, 0, 'K'},
                                             {"quiet", no_argument, 0, 'q'},
                                             {"lean", no_argument, 0, 'L'},
                                             {"pregenerate", no_argument, 0, 'G'},
                                             {"wait-signal", no_argument, 0, 'S'},
                                             {"tier", required_argument, 0, 'W'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
        case 't':
        case 'p':
            if (o.mode != MODE_NONE || !parse_u64(optarg, &o.n)) {
                usage(stderr);
                return 2;
            }
            o.mode = c == 'j' ? MODE_JSON : c == 't' ? MODE_TSV : MODE_PUBLISH;
            break;
        case 's':
            if (!parse_u64(optarg, &o.seed)) {
                fprintf(stderr, "eventgen: --seed: not a number: %s\n", optarg);
                return 2;
            }
            break;
        case 'T':
            if (!parse_u64(optarg, &v) || v < 1 || v > 1000) {
                fprintf(stderr, "eventgen: --tenants: 1..1000\n");
                return 2;
            }
            o.tenants = (int)v;
            break;
        case 'e': {
            an_error err;
            if (an_time_parse(optarg, &o.end_ms, &err) != AN_OK) {
                fprintf(stderr, "eventgen: --end: %s\n", err.message);
                return 2;
            }
            break;
        }
        case 'w':
            if (!parse_duration(optarg, &o.window_ms)) {
                fprintf(stderr, "eventgen: --window: want e.g. 7d, 12h, 30m, 10s, 500ms, 0\n");
                return 2;
            }
            break;
        case 'r': {
            char *end;
            o.rate = strtod(optarg, &end);
            if (*end || o.rate < 0) {
                fprintf(stderr, "eventgen: --rate: events per second, >= 0\n");
                return 2;
            }
            break;
        }
        case 'P':
            o.prefix = optarg;
            break;
        case 'n':
            o.nats_url = optarg;
            break;
        case 'm':
            if (!parse_u64(optarg, &v) || v < 1 || v > 1000000) {
                fprintf(stderr, "eventgen: --max-pending: 1..1000000\n");
                return 2;
            }
            o.max_pending = (int64_t)v;
            break;
        case 'I':
            o.msg_id = false;
            break;
        case 'k':
            o.hmac_key = optarg;
            break;
        case 'K':
            o.key_id = optarg;
            break;
        case 'q':
            o.quiet = true;
            break;
        case 'L':
            o.lean = true;
            break;
        case 'G':
            o.pregenerate = true;
            break;
        case 'S':
            o.wait_signal = true;
            break;
        case 'W':
            if (strcmp(optarg, "hot") != 0 && strcmp(optarg, "audit") != 0) {
                fprintf(stderr, "eventgen: --tier: hot or audit\n");
                return 2;
            }
            o.tier = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (o.mode == MODE_NONE || optind != argc || (o.n == 0 && o.mode != MODE_PUBLISH)) {
        usage(stderr);
        return 2;
    }

    if ((o.pregenerate || o.wait_signal) && o.mode != MODE_PUBLISH) {
        fprintf(stderr, "eventgen: --pregenerate and --wait-signal go with --publish\n");
        return 2;
    }
    if (o.pregenerate && o.n == 0) {
        fprintf(stderr, "eventgen: --pregenerate needs a number of events\n");
        return 2;
    }
    if (o.wait_signal) { /* before nats.c starts threads: they inherit the mask */
        sigset_t set;
        wait_signals(&set);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    gen g;
    gen_init(&g, o.seed, o.tenants, o.end_ms, o.window_ms);
    int rc = o.mode == MODE_JSON  ? run_json(&o, &g)
             : o.mode == MODE_TSV ? run_tsv(&o, &g)
             : o.lean             ? run_publish_lean(&o, &g)
                                  : run_publish(&o, &g);
    gen_free(&g);
    return rc;
}
