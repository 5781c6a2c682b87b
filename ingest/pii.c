#include "ingest/pii.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- key rules */

#define KEY_MAX 64 /* normalised length of one entry */

typedef struct pii_entry {
    char key[KEY_MAX + 1];
    size_t len;
    bool suffix; /* "*email": any key ending with "email" */
    ingest_pii_action action;
} pii_entry;

struct ingest_pii_rules {
    pii_entry *entries;
    size_t n;
    /* entries by the last character of their key (every match ends with
     * it), so a key is compared with a handful of entries, not all */
    uint16_t *by_last[256];
    uint16_t nby_last[256];
};

/* Lowercase letters and digits survive normalisation; the separators
 * people put inside keys are dropped; other bytes are kept as they are. */
static inline bool dropped(unsigned char c)
{
    return c == '_' || c == '-' || c == '.' || c == ' ';
}

static inline char lower(unsigned char c)
{
    return (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
}

an_status ingest_pii_rules_new(const char *list, ingest_pii_action default_action,
                               ingest_pii_rules **out, an_error *err)
{
    ingest_pii_rules *r = calloc(1, sizeof(*r));
    if (!r)
        abort();
    size_t cap = 8;
    for (const char *p = list ? list : ""; *p; p++)
        cap += *p == ',';
    r->entries = calloc(cap, sizeof(pii_entry));
    if (!r->entries)
        abort();
    const char *p = list ? list : "";
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *colon = memchr(p, ':', (size_t)(end - p));
        const char *kend = colon ? colon : end;
        while (p < kend && *p == ' ')
            p++;
        pii_entry e = {.action = default_action};
        if (p < kend && *p == '*') {
            e.suffix = true;
            p++;
        }
        for (const char *q = p; q < kend; q++) {
            if (dropped((unsigned char)*q))
                continue;
            if (e.len == KEY_MAX) {
                ingest_pii_rules_free(r);
                return an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_INGEST_PII_KEYS",
                                      "PII key \"%.*s\" is longer than %d characters",
                                      (int)(kend - p), p, KEY_MAX);
            }
            e.key[e.len++] = lower((unsigned char)*q);
        }
        if (colon) {
            size_t n = (size_t)(end - colon - 1);
            if (n == 6 && strncmp(colon + 1, "remove", 6) == 0) {
                e.action = INGEST_PII_REMOVE;
            } else if (n == 4 && strncmp(colon + 1, "hash", 4) == 0) {
                e.action = INGEST_PII_HASH;
            } else {
                ingest_pii_rules_free(r);
                return an_error_field(err, AN_INVALID_ARGUMENT, "ANALYTICS_INGEST_PII_KEYS",
                                      "PII key entry \"%.*s\": the action after ':' must be "
                                      "remove or hash",
                                      (int)(end - p), p);
            }
        }
        if (e.len > 0) /* an empty entry ("a,,b", "*") matches nothing */
            r->entries[r->n++] = e;
        p = *end ? end + 1 : end;
    }
    for (size_t i = 0; i < r->n; i++)
        r->nby_last[(unsigned char)r->entries[i].key[r->entries[i].len - 1]]++;
    for (int c = 0; c < 256; c++) {
        if (!r->nby_last[c])
            continue;
        r->by_last[c] = calloc(r->nby_last[c], sizeof(uint16_t));
        if (!r->by_last[c])
            abort();
        r->nby_last[c] = 0;
    }
    for (size_t i = 0; i < r->n; i++) {
        unsigned char c = (unsigned char)r->entries[i].key[r->entries[i].len - 1];
        r->by_last[c][r->nby_last[c]++] = (uint16_t)i;
    }
    *out = r;
    return AN_OK;
}

void ingest_pii_rules_free(ingest_pii_rules *r)
{
    if (!r)
        return;
    for (int c = 0; c < 256; c++)
        free(r->by_last[c]);
    free(r->entries);
    free(r);
}

size_t ingest_pii_rules_count(const ingest_pii_rules *r)
{
    return r->n;
}

ingest_pii_action ingest_pii_key_action(const ingest_pii_rules *r, const char *key, size_t len)
{
    /* Normalise from the end, keeping the last NORM_MAX characters: enough
     * for every exact entry and for the suffix of a suffix entry. */
    enum { NORM_MAX = 256 };
    char buf[NORM_MAX];
    size_t n = 0;
    bool whole = true;
    for (size_t i = len; i-- > 0;) {
        unsigned char c = (unsigned char)key[i];
        if (dropped(c))
            continue;
        if (n == NORM_MAX) {
            whole = false;
            break;
        }
        buf[NORM_MAX - 1 - n++] = lower(c);
    }
    if (n == 0)
        return INGEST_PII_KEEP;
    const char *norm = buf + NORM_MAX - n;
    unsigned char last = (unsigned char)norm[n - 1];
    for (size_t k = 0; k < r->nby_last[last]; k++) {
        const pii_entry *e = &r->entries[r->by_last[last][k]];
        if (e->suffix) {
            if (n >= e->len && memcmp(norm + n - e->len, e->key, e->len) == 0)
                return e->action;
        } else if (whole && n == e->len && memcmp(norm, e->key, n) == 0) {
            return e->action;
        }
    }
    return INGEST_PII_KEEP;
}

/* ---------------------------------------------------------- value masks */

enum {
    C_DIGIT = 1 << 0,
    C_ALPHA = 1 << 1,
    C_HEX = 1 << 2,
    C_LOCAL = 1 << 3,  /* e-mail local part */
    C_DOMAIN = 1 << 4, /* e-mail domain */
    C_TRIGGER = 1 << 5 /* may start something maskable: @ digit : + ( hex */
};

static unsigned char cls[256];

static void init_classes(void)
{
    for (int c = 0; c < 256; c++) {
        unsigned char k = 0;
        if (c >= '0' && c <= '9')
            k |= C_DIGIT | C_HEX | C_LOCAL | C_DOMAIN;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
            k |= C_ALPHA | C_LOCAL | C_DOMAIN;
        if ((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
            k |= C_HEX;
        if (strchr("._%+-", c) && c)
            k |= C_LOCAL;
        if ((c == '.' || c == '-') && c)
            k |= C_DOMAIN;
        if (c == '@' || c == ':' || (c >= '0' && c <= '9'))
            k |= C_TRIGGER;
        cls[c] = k;
    }
}

static inline unsigned char cl(const char *s, size_t i)
{
    return cls[(unsigned char)s[i]];
}

static inline bool word_char(unsigned char c)
{
    return (cls[c] & (C_DIGIT | C_ALPHA)) || c == '_';
}

/* An e-mail address around the '@' at `at`, not reaching before `floor`. */
static bool find_email(const char *s, size_t len, size_t at, size_t floor, size_t *start,
                       size_t *end)
{
    size_t j = at;
    while (j > floor && (cl(s, j - 1) & C_LOCAL))
        j--;
    while (j < at && (s[j] == '.' || s[j] == '-'))
        j++; /* a local part does not start with a dot */
    if (j == at)
        return false;
    size_t k = at + 1;
    while (k < len && (cl(s, k) & C_DOMAIN))
        k++;
    while (k > at + 1 && (s[k - 1] == '.' || s[k - 1] == '-'))
        k--; /* "write to a@b.com." ends the sentence */
    if (k <= at + 1 || s[at + 1] == '.' || s[at + 1] == '-')
        return false;
    /* at least one dot, no empty label, a top-level label of >= 2 letters */
    size_t last_dot = 0;
    for (size_t i = at + 1; i < k; i++) {
        if (s[i] == '.') {
            if (s[i - 1] == '.')
                return false;
            last_dot = i;
        }
    }
    if (!last_dot || k - last_dot - 1 < 2)
        return false;
    for (size_t i = last_dot + 1; i < k; i++)
        if (!(cl(s, i) & C_ALPHA))
            return false;
    *start = j;
    *end = k;
    return true;
}

/* Can a number-like token start at i (nothing word-like glued before it)?
 * After a label and a colon it can: "ip:10.0.0.1", "tel:+15551234567"; the
 * colon of a time or an address ("10:30", "fe80::1") follows a digit. */
static bool token_start(const char *s, size_t i)
{
    if (i == 0)
        return true;
    unsigned char p = (unsigned char)s[i - 1];
    if (p == ':')
        return i >= 2 && (cls[(unsigned char)s[i - 2]] & C_ALPHA);
    return !word_char(p) && p != '.' && p != '-' && p != '+';
}

static bool ipv4_at(const char *s, size_t len, size_t i, size_t *end)
{
    size_t j = i;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (j >= len || s[j] != '.')
                return false;
            j++;
        }
        size_t d = 0;
        unsigned v = 0;
        while (j < len && (cl(s, j) & C_DIGIT) && d < 4) {
            v = v * 10 + (unsigned)(s[j] - '0');
            j++, d++;
        }
        if (d == 0 || d > 3 || v > 255)
            return false;
    }
    if (j < len && (word_char((unsigned char)s[j]) ||
                    (s[j] == '.' && j + 1 < len && (cl(s, j + 1) & C_DIGIT))))
        return false;
    *end = j;
    return true;
}

/* Is s[0..n) an IPv6 address? */
static bool is_ipv6(const char *s, size_t n)
{
    char tmp[46];
    struct in6_addr a;
    if (n >= sizeof(tmp))
        return false;
    memcpy(tmp, s, n);
    tmp[n] = '\0';
    return inet_pton(AF_INET6, tmp, &a) == 1;
}

static bool ipv6_at(const char *s, size_t len, size_t i, size_t *end)
{
    size_t j = i, colons = 0;
    while (j < len && ((cl(s, j) & C_HEX) || s[j] == ':' || s[j] == '.')) {
        colons += s[j] == ':';
        j++;
    }
    while (j > i && s[j - 1] == '.')
        j--;
    if (colons < 2 || (j < len && word_char((unsigned char)s[j])))
        return false;
    if (!is_ipv6(s + i, j - i)) {
        /* "from 2001:db8::1: reset": the address ends before a single colon */
        if (!(j - i >= 2 && s[j - 1] == ':' && s[j - 2] != ':' && is_ipv6(s + i, j - 1 - i)))
            return false;
        j--;
    }
    *end = j;
    return true;
}

/* dddd-dd-dd (or with '.' or '/'): the start of a date, never a phone. */
static bool date_at(const char *s, size_t len, size_t i)
{
    size_t j = i;
    for (int k = 0; k < 4; k++, j++)
        if (j >= len || !(cl(s, j) & C_DIGIT))
            return false;
    if (j >= len || (s[j] != '-' && s[j] != '.' && s[j] != '/'))
        return false;
    return j + 1 < len && (cl(s, j + 1) & C_DIGIT);
}

static bool phone_at(const char *s, size_t len, size_t i, size_t *end)
{
    size_t j = i;
    bool plus = s[j] == '+';
    if (plus)
        j++;
    size_t digits = 0, groups = 0, cur = 0, maxgroup = 0, mingroup = SIZE_MAX, lastgroup = 0,
           seps = 0;
    size_t last_digit = 0;
    while (j < len) {
        char c = s[j];
        if (c >= '0' && c <= '9') {
            digits++, cur++;
            last_digit = j + 1;
        } else if (c == '-' || c == '.' || c == '(' || c == ')' || c == ' ') {
            if (c == ' ' && (j + 1 >= len || !((cl(s, j + 1) & C_DIGIT) || s[j + 1] == '(')))
                break; /* a space that is not followed by more of the number ends it */
            if (cur) {
                groups++;
                maxgroup = cur > maxgroup ? cur : maxgroup;
                mingroup = cur < mingroup ? cur : mingroup;
                cur = 0;
            }
            seps++;
        } else {
            break;
        }
        if (digits > 15)
            return false;
        j++;
    }
    if (cur) {
        groups++;
        maxgroup = cur > maxgroup ? cur : maxgroup;
        mingroup = cur < mingroup ? cur : mingroup;
        lastgroup = cur;
    }
    if (!last_digit || (last_digit < len && word_char((unsigned char)s[last_digit])))
        return false;
    /* a national number with its trunk 0 in pairs: "06 12 34 56 78" */
    bool zero_pairs = (s[i] == '0' || (s[i] == '(' && i + 1 < len && s[i + 1] == '0')) &&
                      groups >= 4 && mingroup >= 2;
    bool yes;
    if (plus)
        yes = digits >= 7;
    else
        yes = digits >= 10 && seps > 0 && groups <= 5 && maxgroup <= 4 &&
              (lastgroup >= 4 || zero_pairs) && !date_at(s, len, i);
    if (yes)
        *end = last_digit;
    return yes;
}

/* Past the token starting at i that matched nothing, so that no match
 * starts in its middle ("id-555-123-4567" stays as it is). */
static size_t skip_token(const char *s, size_t len, size_t i)
{
    size_t j = i + 1;
    while (j < len && (word_char((unsigned char)s[j]) || s[j] == '-' || s[j] == '.' ||
                       s[j] == ':' || s[j] == '(' || s[j] == ')'))
        j++;
    return j;
}

size_t ingest_pii_mask(const char *s, size_t len, an_buf *out)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, init_classes);

    /* Fast path: nothing can match without a digit, '@' or ':'. */
    size_t i = 0;
    while (i < len && !(cl(s, i) & C_TRIGGER))
        i++;
    if (i == len)
        return 0;
    size_t masks = 0, copied = 0;
    i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t start = i, end = 0;
        const char *mask = NULL;
        if (c == '@') {
            if (find_email(s, len, i, copied, &start, &end))
                mask = "[email]";
        } else if (((cls[c] & C_HEX) || c == ':' || c == '+' || c == '(') && token_start(s, i)) {
            if (c != '+' && c != '(' && ipv6_at(s, len, i, &end))
                mask = "[ip]";
            else if ((cls[c] & C_DIGIT) && ipv4_at(s, len, i, &end))
                mask = "[ip]";
            else if ((c == '+' || c == '(' || (cls[c] & C_DIGIT)) && phone_at(s, len, i, &end))
                mask = "[phone]";
            if (!mask) {
                /* Letters may still be an e-mail's local part: only skip
                 * runs that cannot reach an '@' (skip_token stops there). */
                i = skip_token(s, len, i);
                continue;
            }
        }
        if (mask) {
            an_buf_add(out, s + copied, start - copied);
            an_buf_adds(out, mask);
            masks++;
            copied = i = end;
        } else {
            i++;
        }
    }
    if (masks) /* else nothing was appended: s needs no change */
        an_buf_add(out, s + copied, len - copied);
    return masks;
}
