#include "common/ulid.h"
#include "common/crypto.h"
#include "common/timeutil.h"

#include <pthread.h>
#include <string.h>
#include <time.h>

static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/* Process-wide state of an_ulid_new: the last id handed out. */
static pthread_mutex_t gen_lock = PTHREAD_MUTEX_INITIALIZER;
static an_ulid gen_last;
static bool gen_have_last;

static void put_time(an_ulid *id, int64_t ms)
{
    for (int i = 5; i >= 0; i--) {
        id->b[i] = (unsigned char)(ms & 0xff);
        ms >>= 8;
    }
}

int64_t an_ulid_time_ms(const an_ulid *id)
{
    int64_t ms = 0;
    for (int i = 0; i < 6; i++)
        ms = ms << 8 | id->b[i];
    return ms;
}

int an_ulid_compare(const an_ulid *a, const an_ulid *b)
{
    return memcmp(a->b, b->b, sizeof(a->b));
}

static an_status check_ms(int64_t ms, an_error *err)
{
    if (ms < 0 || ms > AN_ULID_MAX_MS)
        return an_error_set(err, AN_INVALID_ARGUMENT, "ulid: timestamp %lld ms outside 0..2^48-1",
                            (long long)ms);
    return AN_OK;
}

an_status an_ulid_min_at(int64_t ms, an_ulid *out, an_error *err)
{
    an_status s = check_ms(ms, err);
    if (s != AN_OK)
        return s;
    memset(out->b, 0, sizeof(out->b));
    put_time(out, ms);
    return AN_OK;
}

an_status an_ulid_next(const an_ulid *prev, int64_t now_ms, an_ulid *out, an_error *err)
{
    an_status s = check_ms(now_ms, err);
    if (s != AN_OK)
        return s;
    if (!prev || now_ms > an_ulid_time_ms(prev)) {
        an_ulid id;
        put_time(&id, now_ms);
        if ((s = an_crypto_random(id.b + 6, 10, err)) != AN_OK)
            return s;
        *out = id;
        return AN_OK;
    }
    /* Same millisecond, or the clock went back: prev + 1 as a 128-bit
     * number, so a full random part carries into the timestamp. */
    an_ulid id = *prev;
    int i = 15;
    for (; i >= 0; i--)
        if (++id.b[i] != 0)
            break;
    if (i < 0)
        return an_error_set(err, AN_RESOURCE_EXHAUSTED, "ulid: id space exhausted");
    *out = id;
    return AN_OK;
}

an_status an_ulid_new(an_ulid *out, an_error *err)
{
    int64_t now = an_time_now_ms();
    pthread_mutex_lock(&gen_lock);
    an_ulid id;
    an_status s = an_ulid_next(gen_have_last ? &gen_last : NULL, now, &id, err);
    if (s == AN_OK) {
        gen_last = id;
        gen_have_last = true;
        *out = id;
    }
    pthread_mutex_unlock(&gen_lock);
    return s;
}

an_status an_ulid_new_str(char out[AN_ULID_STRLEN], an_error *err)
{
    an_ulid id;
    an_status s = an_ulid_new(&id, err);
    if (s == AN_OK)
        an_ulid_format(&id, out);
    else
        out[0] = '\0';
    return s;
}

/* The text is 130 bits (two leading zero bits, then the 128) in 5-bit groups. */
static int bit_at(const an_ulid *id, int i)
{
    if (i < 2)
        return 0;
    i -= 2;
    return (id->b[i / 8] >> (7 - i % 8)) & 1;
}

void an_ulid_format(const an_ulid *id, char out[AN_ULID_STRLEN])
{
    for (int c = 0; c < AN_ULID_LEN; c++) {
        int v = 0;
        for (int k = 0; k < 5; k++)
            v = v << 1 | bit_at(id, c * 5 + k);
        out[c] = alphabet[v];
    }
    out[AN_ULID_LEN] = '\0';
}

static int decode_char(char ch)
{
    if (ch >= 'a' && ch <= 'z')
        ch = (char)(ch - 'a' + 'A');
    const char *p = ch ? strchr(alphabet, ch) : NULL;
    return p ? (int)(p - alphabet) : -1;
}

an_status an_ulid_parse(const char *s, an_ulid *out, an_error *err)
{
    if (!s)
        return an_error_set(err, AN_INVALID_ARGUMENT, "ulid: missing");
    size_t len = strnlen(s, AN_ULID_LEN + 1);
    if (len != AN_ULID_LEN)
        return an_error_set(err, AN_INVALID_ARGUMENT, "ulid: must be %d characters", AN_ULID_LEN);
    an_ulid id;
    memset(&id, 0, sizeof(id));
    for (int c = 0; c < AN_ULID_LEN; c++) {
        int v = decode_char(s[c]);
        if (v < 0)
            return an_error_set(err, AN_INVALID_ARGUMENT, "ulid: invalid character at position %d",
                                c);
        if (c == 0 && v > 7)
            return an_error_set(err, AN_INVALID_ARGUMENT,
                                "ulid: first character must be 0..7 (value exceeds 128 bits)");
        for (int k = 0; k < 5; k++) {
            int i = c * 5 + k - 2; /* position within the 128 bits */
            if (i >= 0 && (v >> (4 - k) & 1))
                id.b[i / 8] |= (unsigned char)(1u << (7 - i % 8));
        }
    }
    *out = id;
    return AN_OK;
}

bool an_ulid_valid(const char *s)
{
    an_ulid id;
    return an_ulid_parse(s, &id, NULL) == AN_OK;
}
