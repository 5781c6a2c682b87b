/*
 * sqlcheck.c - tokenizer, SELECT-grammar walker and tenant binder for SQL
 * templates (see sqlcheck.h for the rules).
 *
 * Three passes over the template:
 *   1. lex(): ClickHouse's lexer rules, stricter where versions differ;
 *      comments are dropped (they only set the "space before" flag).
 *   2. scan(): context-free refusals (forbidden words, the system database,
 *      dangerous functions) and bracket matching with a depth limit.
 *   3. walk_query(): a recursive walk of SELECT structure that finds every
 *      place ClickHouse would read a table, checks it and writes the
 *      rewritten query token by token.
 *
 * Wherever the model of ClickHouse's grammar could be unsure (is this a
 * table or a column? an operator or a function?), the walker refuses
 * rather than guesses.
 */
#include "common/sqlcheck.h"
#include "common/sql.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---------------------------------------------------------------- tokens */

typedef enum tk_type {
    TK_END = 0,
    TK_WORD,     /* bare word: keyword or identifier */
    TK_QIDENT,   /* `quoted` or "quoted" identifier */
    TK_STRING,   /* 'string literal' */
    TK_NUMBER,   /* 1, 1.5, 1e-3, 0x1F */
    TK_OP,       /* + - * / % = == != <> < <= > >= || ? : */
    TK_ARROW,    /* -> */
    TK_LPAREN,   /* ( */
    TK_RPAREN,   /* ) */
    TK_LBRACKET, /* [ */
    TK_RBRACKET, /* ] */
    TK_COMMA,    /* , */
    TK_SEMI,     /* ; */
    TK_DOT,      /* . */
} tk_type;

typedef struct token {
    tk_type type;
    int space;  /* whitespace or a comment before it */
    size_t off; /* token text: sql[off .. off + len) */
    size_t len;
    size_t voff; /* value of names: quoted identifiers without their quotes */
    size_t vlen;
} token;

typedef struct walker {
    const char *sql;
    size_t len;
    token *t;
    size_t n; /* tokens, the last one is TK_END */
    size_t i; /* current token */
    const an_sqlcheck_opts *o;
    an_buf *out;
    an_error *err;
    size_t max_tokens;
    int max_depth;
} walker;

/* ------------------------------------------------------------ word lists */

/* Refused anywhere as a bare word: other statements and clauses that change
 * where output goes or how the server behaves. */
static const char *const forbidden_words[] = {
    "settings", "format",   "into",       "outfile",  "insert",  "alter",    "drop",   "create",
    "attach",   "detach",   "rename",     "optimize", "kill",    "truncate", "grant",  "revoke",
    "set",      "use",      "show",       "describe", "explain", "exists",   "check",  "exchange",
    "undrop",   "backup",   "restore",    "watch",    "move",    "delete",   "update", "intersect",
    "except",   "function", "dictionary", NULL,
};

/* Refused anywhere as a name, bare or quoted: databases a template must
 * never name (the physical tables' databases are added at run time). */
static const char *const forbidden_names[] = {
    "system",
    "information_schema",
    "default",
    NULL,
};

/* Functions that read outside the bound relation, reach the file system or
 * network, reveal server state, or stall the server. Compared lowercased. */
static const char *const denied_functions[] = {
    "url",
    "urlcluster",
    "remote",
    "remotesecure",
    "cluster",
    "clusterallreplicas",
    "input",
    "values",
    "numbers",
    "numbers_mt",
    "zeros",
    "zeros_mt",
    "generaterandom",
    "generateseries",
    "generate_series",
    "generateserialid",
    "primes",
    "dictionary",
    "loop",
    "null",
    "redis",
    "hive",
    "gcs",
    "cosn",
    "oss",
    "demangle",
    "showcertificate",
    "catboostevaluate",
    "modelevaluate",
    "naivebayesclassifier",
    "hostname",
    "fqdn",
    "serveruuid",
    "zookeepersessionuptime",
    "getoskernelversion",
    "tcpport",
    "currentprofiles",
    "enabledprofiles",
    "defaultprofiles",
    "currentroles",
    "enabledroles",
    "defaultroles",
    "hascolumnintable",
    "format",
    "kafka",
    "arrowflight",
    "ytsaurus",
    NULL,
};

static const char *const denied_function_prefixes[] = {
    "dict",         "joinget",  "file",      "s3",        "hdfs",       "azure",      "iceberg",
    "deltalake",    "hudi",     "mysql",     "postgres",  "mongo",      "sqlite",     "jdbc",
    "odbc",         "remote",   "cluster",   "sleep",     "filesystem", "getsetting", "getserver",
    "getmergetree", "getmacro", "getclient", "addressto", "trace",      "executable", "view",
    "merge",        "fuzz",     NULL,
};

/* Words after which a name is an operand, not an alias (used to tell a
 * reference to the tenant column from a definition of that name). */
static const char *const operand_intro_words[] = {
    "select", "distinct", "where", "by",    "and",  "or",    "not",     "when", "then", "else",
    "case",   "having",   "on",    "using", "like", "ilike", "between", "is",   "with", NULL,
};

/* Words that cannot end an operand: after them, "in" is a function call. */
static const char *const expr_start_words[] = {
    "select", "where", "prewhere", "having", "and",      "or",       "not",    "on",    "using",
    "when",   "then",  "else",     "case",   "by",       "distinct", "with",   "as",    "in",
    "like",   "ilike", "between",  "is",     "interval", "limit",    "offset", "array", "join",
    "from",   "all",   "any",      "global", "union",    "exists",   NULL,
};

/* Words that may join a table expression to the next (before JOIN). */
static const char *const join_words[] = {
    "global", "local", "any",  "all",   "asof",  "semi",  "anti",  "inner",
    "left",   "right", "full", "cross", "outer", "paste", "array", NULL,
};

/* Bare words after a table that are not its implicit alias. */
static const char *const table_follow_words[] = {
    "final",     "sample",   "array",    "left",  "right", "inner",  "full",    "cross",  "join",
    "global",    "local",    "any",      "all",   "asof",  "semi",   "anti",    "outer",  "paste",
    "on",        "using",    "prewhere", "where", "group", "with",   "having",  "order",  "limit",
    "offset",    "settings", "format",   "union", "into",  "select", "from",    "window", "qualify",
    "intersect", "except",   "as",       "not",   "like",  "ilike",  "between", "in",     "and",
    "or",        "is",       "natural",  NULL,
};

/* Clause keywords that end FROM and start an expression clause. */
static const char *const clause_words[] = {
    "where", "group", "having", "order", "limit", "offset", "window", "qualify", NULL,
};

/* Functions whose parentheses may hold FROM: EXTRACT(DAY FROM d),
 * SUBSTRING(s FROM 2 FOR 3), TRIM(BOTH ' ' FROM s). */
static const char *const from_functions[] = {"extract", "substring", "trim", NULL};

static int in_list(const char *const *list, const char *s, size_t n)
{
    for (; *list; list++)
        if (strlen(*list) == n && strncasecmp(*list, s, n) == 0)
            return 1;
    return 0;
}

/* -------------------------------------------------------------- helpers */

static const token *tok(const walker *w, size_t k)
{
    return &w->t[k < w->n ? k : w->n - 1];
}

static const char *tval(const walker *w, size_t k)
{
    return w->sql + tok(w, k)->voff;
}

static int is_name(const walker *w, size_t k)
{
    tk_type ty = tok(w, k)->type;
    return ty == TK_WORD || ty == TK_QIDENT;
}

/* Bare word k equals kw (case-insensitive). */
static int word_is(const walker *w, size_t k, const char *kw)
{
    const token *t = tok(w, k);
    return t->type == TK_WORD && t->len == strlen(kw) &&
           strncasecmp(w->sql + t->off, kw, t->len) == 0;
}

static int word_in(const walker *w, size_t k, const char *const *list)
{
    const token *t = tok(w, k);
    return t->type == TK_WORD && in_list(list, w->sql + t->off, t->len);
}

/* Name k (bare or quoted) equals s, case-insensitive. */
static int name_eq_ci(const walker *w, size_t k, const char *s, size_t n)
{
    const token *t = tok(w, k);
    return is_name(w, k) && t->vlen == n && strncasecmp(w->sql + t->voff, s, n) == 0;
}

/* Tokens j and k are names with the same value (case-sensitive, quotes
 * aside: `ts` is ts). */
static int same_name(const walker *w, size_t j, size_t k)
{
    const token *a = tok(w, j), *b = tok(w, k);
    return is_name(w, j) && is_name(w, k) && a->vlen == b->vlen &&
           memcmp(w->sql + a->voff, w->sql + b->voff, a->vlen) == 0;
}

static int after_dot(const walker *w, size_t k)
{
    return k > 0 && w->t[k - 1].type == TK_DOT;
}

/* Token k is the name right after a bare AS (an alias or a CAST type). */
static int after_as(const walker *w, size_t k)
{
    return k > 0 && word_is(w, k - 1, "as") && !after_dot(w, k - 1);
}

/* A bare word used as a keyword: not part of a dotted name, not an alias. */
static int keyword_at(const walker *w, size_t k, const char *kw)
{
    return word_is(w, k, kw) && !after_dot(w, k) && !after_as(w, k);
}

static int is_query_start(const walker *w, size_t k)
{
    return keyword_at(w, k, "select") || keyword_at(w, k, "with");
}

static an_status fail(walker *w, size_t k, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* "sql: <what> (at offset N near "tok")": N is the byte offset of the token. */
static an_status fail(walker *w, size_t k, const char *fmt, ...)
{
    char what[320], near[48];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    const token *t = tok(w, k);
    size_t j = 0;
    for (size_t p = 0; p < t->len && j + 5 < sizeof(near); p++) {
        unsigned char c = (unsigned char)w->sql[t->off + p];
        if (p >= 32) {
            snprintf(near + j, sizeof(near) - j, "...");
            j += 3;
            break;
        }
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\')
            near[j++] = (char)c;
        else
            j += (size_t)snprintf(near + j, sizeof(near) - j, "\\x%02X", c);
    }
    near[j] = '\0';
    if (t->type == TK_END)
        return an_error_field(w->err, AN_INVALID_ARGUMENT, "sql",
                              "sql: %s (at the end, offset %zu)", what, t->off);
    return an_error_field(w->err, AN_INVALID_ARGUMENT, "sql", "sql: %s (at offset %zu near \"%s\")",
                          what, t->off, near);
}

/* Printable copy of name k's value for messages. */
static const char *show(const walker *w, size_t k, char *buf, size_t cap)
{
    const token *t = tok(w, k);
    size_t n = t->vlen < cap - 1 ? t->vlen : cap - 1;
    for (size_t p = 0; p < n; p++) {
        unsigned char c = (unsigned char)w->sql[t->voff + p];
        buf[p] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
    }
    buf[n] = '\0';
    return buf;
}

static void emit(walker *w, size_t k)
{
    const token *t = tok(w, k);
    if (t->space && w->out->len > 0)
        an_buf_addc(w->out, ' ');
    an_buf_add(w->out, w->sql + t->off, t->len);
}

/* Emit token k and move past it. */
static void take(walker *w)
{
    emit(w, w->i);
    w->i++;
}

/* ----------------------------------------------------------------- lexer */

static int is_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static int is_alpha_(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int is_word_char(unsigned char c)
{
    return is_alpha_(c) || is_digit(c);
}

/* A lexing error at byte offset off (no token yet). */
static an_status lex_fail(walker *w, size_t off, const char *what)
{
    return an_error_field(w->err, AN_INVALID_ARGUMENT, "sql", "sql: %s (at offset %zu)", what, off);
}

static an_status push(walker *w, tk_type type, int space, size_t off, size_t len, size_t voff,
                      size_t vlen)
{
    if (w->n >= w->max_tokens)
        return lex_fail(w, off, "too many tokens");
    w->t[w->n++] = (token){type, space, off, len, voff, vlen};
    return AN_OK;
}

/* The previous token ends an operand (ClickHouse: then '.' is a dot). */
static int prev_ends_operand(const walker *w)
{
    if (w->n == 0)
        return 0;
    tk_type ty = w->t[w->n - 1].type;
    return ty == TK_WORD || ty == TK_QIDENT || ty == TK_NUMBER || ty == TK_RPAREN ||
           ty == TK_RBRACKET;
}

/* A number at s[i] as ClickHouse's lexer reads one; returns its end. */
static size_t lex_number(const walker *w, size_t i)
{
    const unsigned char *s = (const unsigned char *)w->sql;
    size_t n = w->len, j = i;
    if (w->n > 0 && w->t[w->n - 1].type == TK_DOT) {
        /* Tuple access x.1.2: only an integer after a dot. */
        while (j < n && is_digit(s[j]))
            j++;
        return j;
    }
    int hex = 0;
    if (s[j] == '0' && j + 2 < n && (s[j + 1] == 'x' || s[j + 1] == 'X')) {
        hex = 1;
        j += 2;
    } else if (s[j] == '0' && j + 2 < n && (s[j + 1] == 'b' || s[j + 1] == 'B')) {
        j += 2;
    } else if (s[j] != '.') {
        j++;
    }
    while (j < n && (hex ? is_hex(s[j]) : is_digit(s[j])))
        j++;
    if (j < n && s[j] == '.') {
        j++;
        while (j < n && (hex ? is_hex(s[j]) : is_digit(s[j])))
            j++;
    }
    if (j < n && (hex ? (s[j] == 'p' || s[j] == 'P') : (s[j] == 'e' || s[j] == 'E'))) {
        size_t k = j + 1;
        if (k < n && (s[k] == '+' || s[k] == '-'))
            k++;
        if (k < n && is_digit(s[k])) {
            while (k < n && is_digit(s[k]))
                k++;
            j = k;
        }
        /* else: the letter stays and is refused below as a malformed number */
    }
    return j;
}

/* Quoted identifier at s[i] (quote q). Only plain content is accepted: no
 * escapes or doubled quotes (ClickHouse and we would have to agree on
 * their decoding), no control bytes, no dots (a quoted "a.b" could pose as
 * a qualified name), valid UTF-8, 1..AN_SQLCHECK_MAX_NAME bytes. */
static an_status lex_quoted_ident(walker *w, size_t i, int space, size_t *end)
{
    const unsigned char *s = (const unsigned char *)w->sql;
    unsigned char q = s[i];
    size_t j = i + 1;
    for (;;) {
        if (j >= w->len)
            return lex_fail(w, i, "quoted identifier is not closed");
        unsigned char c = s[j];
        if (c == q) {
            if (j + 1 < w->len && s[j + 1] == q)
                return lex_fail(w, j, "doubled quotes in a quoted identifier are not allowed");
            break;
        }
        if (c == '\\')
            return lex_fail(w, j, "escapes in a quoted identifier are not allowed");
        if (c < 0x20 || c == 0x7F)
            return lex_fail(w, j, "control character in a quoted identifier");
        if (c == '.')
            return lex_fail(w, j, "a quoted identifier may not contain '.'");
        if (c >= 0x80) {
            size_t l = an_sql_utf8_seq_len(s + j, w->len - j);
            if (!l)
                return lex_fail(w, j, "invalid UTF-8 in a quoted identifier");
            j += l;
            continue;
        }
        j++;
    }
    size_t vlen = j - i - 1;
    if (vlen == 0)
        return lex_fail(w, i, "empty quoted identifier");
    if (vlen > AN_SQLCHECK_MAX_NAME)
        return lex_fail(w, i, "identifier too long");
    *end = j + 1;
    return push(w, TK_QIDENT, space, i, j + 1 - i, i + 1, vlen);
}

static an_status lex(walker *w)
{
    const unsigned char *s = (const unsigned char *)w->sql;
    size_t n = w->len, i = 0;
    int space = 0;
    an_status st;
    while (i < n) {
        unsigned char c = s[i];
        if (is_space(c)) {
            space = 1;
            i++;
            continue;
        }
        if (c == '-' && i + 1 < n && s[i + 1] == '-') { /* -- comment, to end of line */
            while (i < n && s[i] != '\n') {
                if (s[i] == '\0')
                    return lex_fail(w, i, "NUL byte in the template");
                i++;
            }
            space = 1;
            continue;
        }
        if (c == '/' && i + 1 < n && s[i + 1] == '*') { /* block comment */
            size_t j = i + 2;
            for (;;) {
                if (j + 1 >= n)
                    return lex_fail(w, i, "comment is not closed");
                if (s[j] == '*' && s[j + 1] == '/')
                    break;
                /* ClickHouse 18.16 ends a comment at the first */ /* while
                                                                    * current releases nest them:
                                                                    * refuse the ambiguity. */
                if (s[j] == '/' && s[j + 1] == '*')
                    return lex_fail(w, j, "nested comments are not allowed");
                if (s[j] == '\0')
                    return lex_fail(w, j, "NUL byte in the template");
                j++;
            }
            i = j + 2;
            space = 1;
            continue;
        }
        size_t start = i;
        if (c == '\'') { /* string: backslash escapes one byte, '' is a quote */
            size_t j = i + 1;
            for (;;) {
                if (j >= n)
                    return lex_fail(w, i, "string literal is not closed");
                if (s[j] == '\0')
                    return lex_fail(w, j, "NUL byte in a string literal (write \\0)");
                if (s[j] == '\\') {
                    if (j + 1 >= n)
                        return lex_fail(w, i, "string literal is not closed");
                    j += 2;
                    continue;
                }
                if (s[j] == '\'') {
                    if (j + 1 < n && s[j + 1] == '\'') {
                        j += 2;
                        continue;
                    }
                    break;
                }
                j++;
            }
            if ((st = push(w, TK_STRING, space, i, j + 1 - i, i, j + 1 - i)) != AN_OK)
                return st;
            i = j + 1;
        } else if (c == '`' || c == '"') {
            if ((st = lex_quoted_ident(w, i, space, &i)) != AN_OK)
                return st;
        } else if (is_alpha_(c)) {
            size_t j = i + 1;
            while (j < n && is_word_char(s[j]))
                j++;
            if (j - i > AN_SQLCHECK_MAX_NAME)
                return lex_fail(w, i, "identifier too long");
            if ((st = push(w, TK_WORD, space, i, j - i, i, j - i)) != AN_OK)
                return st;
            i = j;
        } else if (is_digit(c) ||
                   (c == '.' && i + 1 < n && is_digit(s[i + 1]) && !prev_ends_operand(w))) {
            size_t j = lex_number(w, i);
            if (j < n && is_word_char(s[j]))
                return lex_fail(w, i, "malformed number (a letter right after digits)");
            if ((st = push(w, TK_NUMBER, space, i, j - i, i, j - i)) != AN_OK)
                return st;
            i = j;
        } else {
            tk_type ty = TK_OP;
            size_t l = 1;
            switch (c) {
            case '(':
                ty = TK_LPAREN;
                break;
            case ')':
                ty = TK_RPAREN;
                break;
            case '[':
                ty = TK_LBRACKET;
                break;
            case ']':
                ty = TK_RBRACKET;
                break;
            case ',':
                ty = TK_COMMA;
                break;
            case ';':
                ty = TK_SEMI;
                break;
            case '.':
                ty = TK_DOT;
                break;
            case '+':
            case '*':
            case '/':
            case '%':
            case '?':
            case ':':
                break;
            case '-':
                if (i + 1 < n && s[i + 1] == '>') {
                    ty = TK_ARROW;
                    l = 2;
                }
                break;
            case '=':
                l = (i + 1 < n && s[i + 1] == '=') ? 2 : 1;
                break;
            case '<':
                l = (i + 1 < n && (s[i + 1] == '=' || s[i + 1] == '>')) ? 2 : 1;
                break;
            case '>':
                l = (i + 1 < n && s[i + 1] == '=') ? 2 : 1;
                break;
            case '!':
                if (!(i + 1 < n && s[i + 1] == '='))
                    return lex_fail(w, i, "'!' is only accepted in '!='");
                l = 2;
                break;
            case '|':
                if (!(i + 1 < n && s[i + 1] == '|'))
                    return lex_fail(w, i, "'|' is only accepted in '||'");
                l = 2;
                break;
            case '#':
                return lex_fail(w, i, "'#' comments are not accepted");
            case '\0':
                return lex_fail(w, i, "NUL byte in the template");
            default: {
                char what[96];
                if (c >= 0x80)
                    snprintf(what, sizeof(what),
                             "byte 0x%02X outside quotes: names and keywords are ASCII, "
                             "and only ASCII spaces separate them",
                             c);
                else if (c < 0x20 || c == 0x7F)
                    snprintf(what, sizeof(what), "control character 0x%02X", c);
                else
                    snprintf(what, sizeof(what), "character '%c' is not accepted", c);
                return lex_fail(w, i, what);
            }
            }
            if ((st = push(w, ty, space, start, l, start, l)) != AN_OK)
                return st;
            i += l;
        }
        space = 0;
    }
    if (w->n >= w->max_tokens + 1)
        return lex_fail(w, n, "too many tokens");
    w->t[w->n++] = (token){TK_END, space, n, 0, n, 0};
    return AN_OK;
}

/* ---------------------------------------------------- context-free scan */

static int function_denied(const char *name, size_t n)
{
    char low[AN_SQLCHECK_MAX_NAME + 1];
    for (size_t i = 0; i < n; i++)
        low[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    low[n] = '\0';
    if (in_list(denied_functions, low, n))
        return 1;
    for (const char *const *p = denied_function_prefixes; *p; p++)
        if (strncmp(low, *p, strlen(*p)) == 0)
            return 1;
    /* in, notIn, globalIn, globalNotIn, nullIn, notNullIn, ..., inIgnoreSet:
     * the function forms of IN read a table named by their 2nd argument. */
    const char *p = low;
    if (strncmp(p, "global", 6) == 0)
        p += 6;
    if (strncmp(p, "not", 3) == 0)
        p += 3;
    if (strncmp(p, "null", 4) == 0)
        p += 4;
    return strcmp(p, "in") == 0 || strcmp(p, "inignoreset") == 0;
}

/* Refusals that need no context, and bracket matching. */
static an_status scan(walker *w)
{
    int depth = 0;
    char stack[AN_SQLCHECK_MAX_DEPTH * 4 + 1];
    char name[64];
    for (size_t k = 0; k < w->n; k++) {
        const token *t = &w->t[k];
        if (t->type == TK_WORD && word_is(w, k, "prewhere"))
            return fail(w, k,
                        "PREWHERE is not allowed: tables are bound to the tenant through "
                        "a subquery, write WHERE");
        if (t->type == TK_WORD && in_list(forbidden_words, w->sql + t->off, t->len))
            return fail(w, k, "%s is not allowed in a template", show(w, k, name, sizeof(name)));
        if (is_name(w, k)) {
            int bad = in_list(forbidden_names, tval(w, k), t->vlen);
            for (const an_sqlcheck_table *tb = w->o->tables; !bad && tb->name; tb++) {
                size_t dl = (size_t)(strchr(tb->physical, '.') - tb->physical);
                bad = name_eq_ci(w, k, tb->physical, dl);
            }
            if (bad)
                return fail(w, k,
                            "the name %s is reserved (a database): templates read only "
                            "their tables, by bare name",
                            show(w, k, name, sizeof(name)));
            /* A function call; bare IN is an operator, checked in the walk. */
            if (tok(w, k + 1)->type == TK_LPAREN && !(t->type == TK_WORD && word_is(w, k, "in")) &&
                function_denied(tval(w, k), t->vlen))
                return fail(w, k, "function %s is not allowed in a template",
                            show(w, k, name, sizeof(name)));
        }
        if (t->type == TK_DOT) {
            /* a.b, t.1, e.*: a dot sits between a name (or a bracket) and a
             * name, a number or *, and the name after it is no keyword, so
             * "x. FROM t" cannot be read two ways. */
            tk_type pv = k > 0 ? w->t[k - 1].type : TK_END, nx = tok(w, k + 1)->type;
            int prev_ok = pv == TK_WORD || pv == TK_QIDENT || pv == TK_RPAREN ||
                          pv == TK_RBRACKET || pv == TK_NUMBER;
            int next_ok = nx == TK_QIDENT || nx == TK_NUMBER ||
                          (nx == TK_WORD && !word_in(w, k + 1, table_follow_words)) ||
                          (nx == TK_OP && w->sql[tok(w, k + 1)->off] == '*');
            if (!prev_ok || !next_ok)
                return fail(w, k, "'.' must join two names, as in e.event_name");
        }
        if (t->type == TK_LPAREN || t->type == TK_LBRACKET) {
            if (depth >= w->max_depth)
                return fail(w, k, "brackets nested deeper than %d", w->max_depth);
            stack[depth++] = t->type == TK_LPAREN ? ')' : ']';
        } else if (t->type == TK_RPAREN || t->type == TK_RBRACKET) {
            char want = t->type == TK_RPAREN ? ')' : ']';
            if (depth == 0 || stack[depth - 1] != want)
                return fail(w, k, "unbalanced '%c'", want);
            depth--;
        }
    }
    if (depth > 0)
        return fail(w, w->n - 1, "unbalanced brackets: %d not closed", depth);
    return AN_OK;
}

/* ------------------------------------------------------------- the walk */

static an_status walk_query(walker *w);
static an_status walk_group(walker *w, int from_ok);
static an_status walk_array(walker *w);

static const an_sqlcheck_table *find_table(const walker *w, size_t k)
{
    const token *t = tok(w, k);
    if (!is_name(w, k))
        return NULL;
    for (const an_sqlcheck_table *tb = w->o->tables; tb->name; tb++)
        if (strlen(tb->name) == t->vlen && memcmp(tb->name, w->sql + t->voff, t->vlen) == 0)
            return tb;
    return NULL;
}

static int is_tenant_column(const walker *w, size_t k)
{
    for (const an_sqlcheck_table *tb = w->o->tables; tb->name; tb++)
        if (name_eq_ci(w, k, tb->tenant_column, strlen(tb->tenant_column)))
            return 1;
    return 0;
}

/* The list of allowed table names, for messages. */
static const char *table_list(const walker *w, char *buf, size_t cap)
{
    size_t j = 0;
    buf[0] = '\0';
    for (const an_sqlcheck_table *tb = w->o->tables; tb->name && j < cap; tb++)
        j += (size_t)snprintf(buf + j, cap - j, "%s%s", j ? ", " : "", tb->name);
    return buf;
}

/* Write the tenant-bound relation for tb: (SELECT * FROM db.t [FINAL]
 * [SAMPLE ...] WHERE db.t.col = 'tenant' [AND (pushed) ...]). The condition
 * names the column fully qualified, so no alias of the outer query can stand
 * in for it; pushed (may be NULL) holds conjuncts copied from the outer
 * WHERE, each already in parentheses (see pushdown()). */
static void emit_bound(walker *w, const an_sqlcheck_table *tb, int final, size_t sample_from,
                       size_t sample_to, const an_buf *pushed)
{
    an_buf *o = w->out;
    if (o->len > 0)
        an_buf_addc(o, ' ');
    an_buf_adds(o, "(SELECT *");
    if (tb->extra_columns && *tb->extra_columns) {
        an_buf_adds(o, ", ");
        an_buf_adds(o, tb->extra_columns);
    }
    an_buf_adds(o, " FROM ");
    an_buf_adds(o, tb->physical);
    if (final)
        an_buf_adds(o, " FINAL");
    if (sample_from < sample_to) {
        an_buf_adds(o, " SAMPLE");
        for (size_t k = sample_from; k < sample_to; k++) {
            an_buf_addc(o, ' ');
            an_buf_add(o, w->sql + w->t[k].off, w->t[k].len);
        }
    }
    if (!w->o->all_tenants) {
        an_buf_adds(o, " WHERE ");
        an_buf_adds(o, tb->physical);
        an_buf_addc(o, '.');
        an_buf_adds(o, tb->tenant_column);
        an_buf_adds(o, " = ");
        an_sql_quote(o, w->o->tenant_id, w->o->tenant_id_len);
    }
    if (pushed && pushed->len > 0) {
        an_buf_adds(o, w->o->all_tenants ? " WHERE " : " AND ");
        an_buf_add(o, pushed->data, pushed->len);
    }
    an_buf_addc(o, ')');
}

/* ------------------------------------------------------------ pushdown
 *
 * The bound subquery hides the template's WHERE from the table: ClickHouse
 * 18.16 does not move outer conditions into a subquery
 * (enable_optimize_predicate_expression is 0 and a readonly user cannot
 * turn it on), so `SELECT .. FROM events WHERE <time range>` would read
 * every row of the tenant. When a bound table is the only table of its
 * FROM and a WHERE follows it directly, the conjuncts of that WHERE that
 * mean the same inside the subquery are copied into it as well; the outer
 * WHERE stays as written, so a copied conjunct is applied twice, which
 * changes nothing for a deterministic condition on the row. A conjunct is
 * copied only when it is made of
 *   - literals, operators, brackets, commas and the words of conditions
 *     (AND OR NOT IN LIKE ILIKE IS BETWEEN CASE WHEN THEN ELSE END);
 *   - IN followed by a parenthesised list of literals only (never a name,
 *     which ClickHouse could read as a table, never a subquery);
 *   - calls of the pure row functions below (no aggregate, no random or
 *     block-dependent function, no lambda);
 *   - names that are not defined anywhere in the query as an alias (AS x,
 *     or x written right after an operand) or lambda parameter - such a
 *     name can only be a column, and the subquery has the same columns -,
 *     bare or qualified by this table's alias (the qualifier is dropped).
 * The WHERE must be an AND list at its top level (no OR, ?:, lambda); a
 * BETWEEN's AND and CASE ... END are kept inside their conjunct. FINAL
 * tables are left alone (a condition below FINAL could pick another copy
 * of a row). Anything else is simply not copied: pushdown is an
 * optimization and never changes what the query returns. */

/* Functions a copied conjunct may call: deterministic, one row at a time.
 * Also every to<Upper>... conversion (toDateTime, toStartOfDay,
 * toFloat64OrNull...). */
static const char *const pushdown_functions[] = {
    "indexOf",      "has",
    "hasAny",       "hasAll",
    "position",     "positionCaseInsensitive",
    "positionUTF8", "ifNull",
    "coalesce",     "isNull",
    "isNotNull",    "length",
    "lengthUTF8",   "empty",
    "notEmpty",     "lower",
    "upper",        "lowerUTF8",
    "upperUTF8",    "like",
    "notLike",      "match",
    "startsWith",   "endsWith",
    "now",          "today",
    "yesterday",    "tuple",
    "array",        "arrayElement",
    "concat",       "substring",
    "if",           "multiIf",
    "abs",          "round",
    "floor",        "ceil",
    "intDiv",       "modulo",
    "plus",         "minus",
    "multiply",     "divide",
    "equals",       "notEquals",
    "less",         "greater",
    "lessOrEquals", "greaterOrEquals",
    "and",          "or",
    "not",          NULL,
};

/* Keywords a copied conjunct may hold besides names and functions. Any
 * other word is taken for a name (INTERVAL and its units too: copied
 * as written, they mean the same). */
static const char *const pushdown_words[] = {
    "and",     "or",   "not",  "in",   "like", "ilike", "is",
    "between", "case", "when", "then", "else", "end",   NULL,
};

static int pushdown_function(const walker *w, size_t k)
{
    const token *t = tok(w, k);
    const char *s = w->sql + t->off;
    if (t->type != TK_WORD)
        return 0;
    if (t->len > 2 && s[0] == 't' && s[1] == 'o' && s[2] >= 'A' && s[2] <= 'Z')
        return 1;
    return in_list(pushdown_functions, s, t->len);
}

/* Does token p end an operand (a literal, a name, a closing bracket), so
 * that what follows is an operator or an alias? */
static int ends_operand(const walker *w, size_t p)
{
    switch (tok(w, p)->type) {
    case TK_NUMBER:
    case TK_STRING:
    case TK_QIDENT:
    case TK_RPAREN:
    case TK_RBRACKET:
        return 1;
    case TK_WORD:
        return after_dot(w, p) || after_as(w, p) || !word_in(w, p, expr_start_words);
    default:
        return 0;
    }
}

/* Is name k's value defined somewhere in the query: after AS, or (implicit)
 * also right after an operand (implicit alias: SELECT expr x) or as a lambda
 * parameter? */
static int name_defined(const walker *w, size_t k, int implicit)
{
    for (size_t j = 0; j + 1 < w->n; j++) { /* the last token is TK_END */
        if (!same_name(w, j, k))
            continue;
        if (after_as(w, j))
            return 1;
        if (!implicit)
            continue;
        if (tok(w, j + 1)->type == TK_ARROW)
            return 1;
        if (j > 0 && !after_dot(w, j) && ends_operand(w, j - 1))
            return 1; /* SELECT expr x, CASE ... END x */
    }
    return 0;
}

/* Tokens [a, b) as one conjunct: may they be copied into the subquery?
 * alias is the token naming the table in the outer query. */
static int pushdown_ok(const walker *w, size_t a, size_t b, size_t alias)
{
    if (b == a + 1 && tok(w, a)->type == TK_NUMBER) /* WHERE 1 AND ...: nothing to gain */
        return 0;
    for (size_t k = a; k < b; k++) {
        const token *t = tok(w, k);
        switch (t->type) {
        case TK_STRING:
        case TK_NUMBER:
        case TK_LPAREN:
        case TK_RPAREN:
        case TK_LBRACKET:
        case TK_RBRACKET:
        case TK_COMMA:
        case TK_OP:
            continue;
        case TK_DOT: /* alias.column: only this table's alias */
            if (k == a || k + 1 >= b || !is_name(w, k + 1) || !same_name(w, k - 1, alias) ||
                (k >= 2 && tok(w, k - 2)->type == TK_DOT) || tok(w, k + 2)->type == TK_DOT ||
                tok(w, k + 2)->type == TK_LPAREN)
                return 0;
            continue;
        case TK_WORD:
        case TK_QIDENT:
            break;
        default: /* ->, ;, the end */
            return 0;
        }
        if (tok(w, k + 1)->type == TK_DOT) /* a qualifier, checked at the dot */
            continue;
        if (t->type == TK_WORD && word_is(w, k, "in")) {
            /* IN (literal, literal, ...) only */
            size_t j = k + 1;
            if (tok(w, j)->type != TK_LPAREN)
                return 0;
            int d = 0;
            for (;; j++) {
                tk_type ty = tok(w, j)->type;
                if (ty == TK_LPAREN || ty == TK_LBRACKET)
                    d++;
                else if (ty == TK_RPAREN || ty == TK_RBRACKET) {
                    if (--d == 0)
                        break;
                } else if (ty != TK_STRING && ty != TK_NUMBER && ty != TK_COMMA &&
                           !(ty == TK_OP && w->sql[tok(w, j)->off] == '-'))
                    return 0;
                if (j >= b)
                    return 0;
            }
            k = j;
            continue;
        }
        if (tok(w, k + 1)->type == TK_LPAREN) {
            if (!pushdown_function(w, k))
                return 0;
            continue;
        }
        if (t->type == TK_WORD && word_in(w, k, pushdown_words))
            continue;
        if (t->type == TK_WORD && (word_in(w, k, expr_start_words) || word_is(w, k, "as") ||
                                   word_in(w, k, table_follow_words)))
            return 0;
        if (find_table(w, k) || name_defined(w, k, 1))
            return 0;
    }
    return 1;
}

/* Copy conjunct [a, b) to out in parentheses, dropping alias qualifiers. */
static void pushdown_emit(const walker *w, size_t a, size_t b, an_buf *out)
{
    if (out->len > 0)
        an_buf_adds(out, " AND ");
    an_buf_addc(out, '(');
    int first = 1, space = 0;
    for (size_t k = a; k < b; k++) {
        if (tok(w, k + 1)->type == TK_DOT && k + 1 < b) { /* alias . : the space goes on */
            space = tok(w, k)->space;
            k++;
            continue;
        }
        const token *t = tok(w, k);
        if ((t->space || space) && !first)
            an_buf_addc(out, ' ');
        an_buf_add(out, w->sql + t->off, t->len);
        first = space = 0;
    }
    an_buf_addc(out, ')');
}

/* w->i is at the WHERE that follows a bound table named by token alias:
 * append the conjuncts that may be copied into its subquery to out. */
static void pushdown(const walker *w, size_t alias, an_buf *out)
{
    size_t mark = out->len;
    size_t start = w->i + 1, k = start;
    int depth = 0, cases = 0, between = 0;
    for (;; k++) {
        const token *t = tok(w, k);
        int top = depth == 0 && cases == 0;
        if (t->type == TK_END || t->type == TK_SEMI || (top && t->type == TK_RPAREN))
            break;
        if (t->type == TK_LPAREN || t->type == TK_LBRACKET) {
            depth++;
            continue;
        }
        if (t->type == TK_RPAREN || t->type == TK_RBRACKET) {
            depth--;
            continue;
        }
        if (depth > 0)
            continue;
        if (t->type == TK_ARROW ||
            (t->type == TK_OP && (w->sql[t->off] == '?' || w->sql[t->off] == ':')))
            goto not_and_list;
        if (t->type != TK_WORD || after_dot(w, k) || after_as(w, k))
            continue;
        if (word_is(w, k, "case")) {
            cases++;
            continue;
        }
        if (word_is(w, k, "end") && cases > 0) {
            cases--;
            continue;
        }
        if (cases > 0)
            continue;
        if (word_in(w, k, clause_words) || word_is(w, k, "union") || word_is(w, k, "with") ||
            word_is(w, k, "settings") || word_is(w, k, "format"))
            break;
        if (word_is(w, k, "or"))
            goto not_and_list;
        if (word_is(w, k, "between")) {
            between++;
            continue;
        }
        if (word_is(w, k, "and")) {
            if (between > 0) {
                between--;
                continue;
            }
            if (k > start && pushdown_ok(w, start, k, alias))
                pushdown_emit(w, start, k, out);
            start = k + 1;
        }
    }
    if (depth == 0 && cases == 0 && k > start && pushdown_ok(w, start, k, alias))
        pushdown_emit(w, start, k, out);
    return;
not_and_list: /* nothing is copied, not even the conjuncts seen so far */
    an_buf_setlen(out, mark);
}

/* A name that defines something (alias, lambda parameter) must not be a
 * tenant column's name: it could stand in for the column in the bound
 * subquery's condition on servers that propagate WITH aliases. */
static an_status check_defined_name(walker *w, size_t k)
{
    char name[64];
    /* A keyword as a name (x AS from) is read as a name by ClickHouse too,
     * but one reading less is one ambiguity less: it must be quoted. */
    if (word_in(w, k, table_follow_words))
        return fail(w, k, "the keyword %s cannot be a name here: quote it, as in `%s`",
                    show(w, k, name, sizeof(name)), name);
    if (is_tenant_column(w, k))
        return fail(w, k, "%s is a tenant column: it cannot be used as an alias or parameter name",
                    show(w, k, name, sizeof(name)));
    return AN_OK;
}

/* SAMPLE ratio: number [/ number]. */
static an_status sample_ratio(walker *w)
{
    if (tok(w, w->i)->type != TK_NUMBER)
        return fail(w, w->i, "SAMPLE expects a number or a ratio like 1/10");
    w->i++;
    if (tok(w, w->i)->type == TK_OP && tok(w, w->i)->len == 1 && w->sql[tok(w, w->i)->off] == '/') {
        if (tok(w, w->i + 1)->type != TK_NUMBER)
            return fail(w, w->i + 1, "SAMPLE expects a number or a ratio like 1/10");
        w->i += 2;
    }
    return AN_OK;
}

/* A table position (after FROM, JOIN, or a comma in FROM): a subquery or a
 * bare allowed name with optional alias, FINAL and SAMPLE. */
static an_status table_expr(walker *w, int sole)
{
    char name[64], list[256];
    size_t k = w->i;
    an_status st;
    if (tok(w, k)->type == TK_LPAREN) {
        if (!is_query_start(w, k + 1))
            return fail(w, k, "expected a table name or (SELECT ...) here");
        take(w);
        if ((st = walk_query(w)) != AN_OK)
            return st;
        if (tok(w, w->i)->type != TK_RPAREN)
            return fail(w, w->i, "only one statement is allowed, and only at the end may ';' be");
        take(w);
        size_t a = w->i;
        if (keyword_at(w, a, "as")) {
            if (!is_name(w, a + 1))
                return fail(w, a + 1, "expected an alias after AS");
            if ((st = check_defined_name(w, a + 1)) != AN_OK)
                return st;
            take(w);
            take(w);
        } else if (tok(w, a)->type == TK_QIDENT ||
                   (tok(w, a)->type == TK_WORD && !word_in(w, a, table_follow_words))) {
            if ((st = check_defined_name(w, a)) != AN_OK)
                return st;
            take(w);
        }
        if (keyword_at(w, w->i, "final") || keyword_at(w, w->i, "sample"))
            return fail(w, w->i, "FINAL and SAMPLE apply to tables, not to subqueries");
        return AN_OK;
    }
    if (!is_name(w, k))
        return fail(w, k, "expected a table name or (SELECT ...) here");
    if (tok(w, k + 1)->type == TK_DOT)
        return fail(w, k, "database-qualified table names are not allowed: use one of %s",
                    table_list(w, list, sizeof(list)));
    if (tok(w, k + 1)->type == TK_LPAREN)
        return fail(w, k, "table functions are not allowed");
    const an_sqlcheck_table *tb = find_table(w, k);
    if (!tb)
        return fail(w, k, "table %s is not allowed: use one of %s", show(w, k, name, sizeof(name)),
                    table_list(w, list, sizeof(list)));
    w->i++;
    size_t alias = k;
    if (keyword_at(w, w->i, "as")) {
        if (!is_name(w, w->i + 1))
            return fail(w, w->i + 1, "expected an alias after AS");
        alias = w->i + 1;
        w->i += 2;
    } else if (tok(w, w->i)->type == TK_QIDENT ||
               (tok(w, w->i)->type == TK_WORD && !word_in(w, w->i, table_follow_words))) {
        alias = w->i++;
    }
    if (alias != k) {
        if ((st = check_defined_name(w, alias)) != AN_OK)
            return st;
        tk_type nx = tok(w, alias + 1)->type;
        if (nx == TK_DOT || nx == TK_LPAREN)
            return fail(w, alias + 1, "unexpected '%c' after a table alias",
                        nx == TK_DOT ? '.' : '(');
    }
    int final = 0;
    if (keyword_at(w, w->i, "final")) {
        final = 1;
        w->i++;
    }
    size_t sample_from = 0, sample_to = 0;
    if (keyword_at(w, w->i, "sample")) {
        sample_from = ++w->i;
        if ((st = sample_ratio(w)) != AN_OK)
            return st;
        if (keyword_at(w, w->i, "offset")) {
            w->i++;
            if ((st = sample_ratio(w)) != AN_OK)
                return st;
        }
        sample_to = w->i;
    }
    an_buf pushed = AN_BUF_INIT;
    if (sole && !final && !w->o->no_pushdown && keyword_at(w, w->i, "where"))
        pushdown(w, alias, &pushed);
    emit_bound(w, tb, final, sample_from, sample_to, &pushed);
    an_buf_free(&pushed);
    an_buf_adds(w->out, " AS ");
    an_buf_add(w->out, w->sql + w->t[alias].off, w->t[alias].len);
    return AN_OK;
}

/* Does a run of join words starting at k end with JOIN? Sets *end to the
 * JOIN token and *array when it is an ARRAY JOIN. */
static int join_start(const walker *w, size_t k, size_t *end, int *array)
{
    *array = 0;
    for (size_t j = k; j < k + 6; j++) {
        if (keyword_at(w, j, "join")) {
            *end = j;
            return 1;
        }
        if (!(word_in(w, j, join_words) && !after_dot(w, j) && !after_as(w, j)))
            return 0;
        /* Only ARRAY right before JOIN makes an ARRAY JOIN; anywhere else
         * the JOIN is taken as a table join (the stricter reading). */
        *array = word_is(w, j, "array");
    }
    return 0;
}

/* The operand before an IN, skipping NOT and GLOBAL: does it end an
 * operand (so IN is the operator, not the function in(...))? */
static int in_is_operator(const walker *w, size_t k)
{
    size_t p = k;
    while (p > 0 && (keyword_at(w, p - 1, "not") || keyword_at(w, p - 1, "global")))
        p--;
    if (p == 0)
        return 0;
    return ends_operand(w, p - 1);
}

/* IN at w->i. ClickHouse reads a table when the right side is a bare name,
 * with or without parentheses: `x IN events`, `x IN (events)`. */
static an_status in_operator(walker *w)
{
    char name[64], list[256];
    size_t k = w->i;
    if (!in_is_operator(w, k))
        return fail(w, k, "in(...) as a function is not allowed: write x IN (...)");
    take(w);
    size_t m = w->i;
    int parens = 0;
    while (tok(w, m)->type == TK_LPAREN) {
        m++;
        parens++;
    }
    if (is_query_start(w, m)) {
        if (parens == 0)
            return fail(w, m, "IN expects (SELECT ...) in parentheses");
        return AN_OK;
    }
    if (parens == 0) {
        if (!is_name(w, m))
            return AN_OK;
        tk_type nx = tok(w, m + 1)->type;
        if (nx == TK_DOT)
            return fail(w, m, "IN with a database-qualified table is not allowed");
        if (nx == TK_LPAREN)
            return AN_OK; /* a function call such as tuple(...): checked as usual */
        const an_sqlcheck_table *tb = find_table(w, m);
        if (!tb)
            return fail(w, m, "IN %s reads a table, and %s is not allowed: use one of %s or a list",
                        show(w, m, name, sizeof(name)), name, table_list(w, list, sizeof(list)));
        emit_bound(w, tb, 0, 0, 0, NULL);
        w->i = m + 1;
        return AN_OK;
    }
    if (is_name(w, m) && tok(w, m + 1)->type == TK_RPAREN)
        return fail(w, m, "IN (%s) reads a table: write IN (SELECT column FROM %s)",
                    show(w, m, name, sizeof(name)), show(w, m, name, sizeof(name)));
    {
        /* A list: no element may be a bare name. In x IN (a, t) a name is a
         * column, but where the server reads in(a, t) as the function form
         * (after SELECT TOP 5, say), t is a table. */
        int d = 0, start = 1;
        for (size_t j = k + 2;; j++) {
            tk_type ty = tok(w, j)->type;
            if (ty == TK_END || (d == 0 && ty == TK_RPAREN))
                break;
            if (d == 0 && start && is_name(w, j)) {
                size_t e = j;
                while (tok(w, e + 1)->type == TK_DOT && is_name(w, e + 2))
                    e += 2;
                tk_type after = tok(w, e + 1)->type;
                int literal = e == j && (word_is(w, j, "null") || word_is(w, j, "true") ||
                                         word_is(w, j, "false"));
                if ((after == TK_COMMA || after == TK_RPAREN || keyword_at(w, e + 1, "as")) &&
                    !literal)
                    return fail(w, j,
                                "a name in an IN list could be read as a table: use literals "
                                "or IN (SELECT ...)");
            }
            start = d == 0 && ty == TK_COMMA;
            if (ty == TK_LPAREN || ty == TK_LBRACKET)
                d++;
            else if (ty == TK_RPAREN || ty == TK_RBRACKET)
                d--;
        }
    }
    return AN_OK;
}

/* A reference to a tenant column is fine after an operator or a keyword
 * that starts an operand; anything else would make it a name. */
static an_status check_tenant_reference(walker *w, size_t k)
{
    char name[64];
    size_t p = k - 1; /* k > 0: a query starts with SELECT or WITH */
    int ok = 0;
    switch (tok(w, p)->type) {
    case TK_DOT:
    case TK_LPAREN:
    case TK_COMMA:
    case TK_LBRACKET:
    case TK_ARROW:
        ok = 1;
        break;
    case TK_OP:
        ok = w->sql[tok(w, p)->off] != '*';
        break;
    case TK_WORD:
        ok = !after_dot(w, p) && !after_as(w, p) && word_in(w, p, operand_intro_words);
        break;
    default:
        break;
    }
    if (!ok)
        return fail(w, k, "%s is a tenant column: it cannot be used as an alias",
                    show(w, k, name, sizeof(name)));
    if (tok(w, k + 1)->type == TK_ARROW)
        return fail(w, k, "%s is a tenant column: it cannot be a lambda parameter",
                    show(w, k, name, sizeof(name)));
    return AN_OK;
}

/* One token of an expression (any clause, any bracket level). Structure
 * words were handled by the caller. */
static an_status expr_token(walker *w, int from_ok)
{
    char name[64], list[256];
    size_t k = w->i;
    const token *t = tok(w, k);
    an_status st;
    switch (t->type) {
    case TK_LPAREN:
        if (is_query_start(w, k + 1)) {
            take(w);
            if ((st = walk_query(w)) != AN_OK)
                return st;
            if (tok(w, w->i)->type != TK_RPAREN)
                return fail(w, w->i,
                            "only one statement is allowed, and only at the end may ';' be");
            take(w);
            return AN_OK;
        }
        return walk_group(w, 0);
    case TK_LBRACKET:
        return walk_array(w);
    case TK_SEMI:
        return fail(w, k, "only one statement is allowed, and only at the end may ';' be");
    case TK_ARROW:
        /* Lambda parameters are definitions: x -> ..., (a, b) -> ... */
        if (k > 0 && w->t[k - 1].type == TK_RPAREN) {
            int d = 0;
            for (size_t j = k - 1; j > 0; j--) {
                if (w->t[j].type == TK_RPAREN)
                    d++;
                else if (w->t[j].type == TK_LPAREN && --d == 0)
                    break;
                else if (is_name(w, j) && (st = check_defined_name(w, j)) != AN_OK)
                    return st;
            }
        } else if (k > 0 && is_name(w, k - 1) && (st = check_defined_name(w, k - 1)) != AN_OK) {
            return st;
        }
        take(w);
        return AN_OK;
    case TK_WORD:
    case TK_QIDENT:
        break;
    default:
        take(w);
        return AN_OK;
    }

    /* A name or keyword. */
    if (after_dot(w, k)) { /* part of a dotted name: e.x, t.1 */
        if (tok(w, k + 1)->type == TK_LPAREN)
            return fail(w, k, "qualified function calls are not allowed");
        take(w);
        return AN_OK;
    }
    if (after_as(w, k)) { /* an alias, or a type in CAST(x AS T) */
        if ((st = check_defined_name(w, k)) != AN_OK)
            return st;
        take(w);
        if (tok(w, w->i)->type == TK_LPAREN) /* Nullable(String), Decimal(9, 2) */
            return walk_group(w, 0);
        return AN_OK;
    }
    if (t->type == TK_WORD) {
        if (word_is(w, k, "in"))
            return in_operator(w);
        if (word_is(w, k, "as")) {
            if (tok(w, k + 1)->type == TK_LPAREN)
                return fail(w, k,
                            "WITH name AS (subquery) is not supported: use a subquery in FROM");
            if (!is_name(w, k + 1))
                return fail(w, k + 1, "expected a name after AS");
            take(w);
            return AN_OK;
        }
        if (word_is(w, k, "from") && from_ok) {
            take(w);
            return AN_OK;
        }
        static const char *const structure[] = {"select", "with",  "from", "join",
                                                "union",  "using", NULL};
        if (word_in(w, k, structure))
            return fail(w, k, "unexpected %s here", show(w, k, name, sizeof(name)));
    }
    if (tok(w, k + 1)->type == TK_LPAREN) { /* a function call (denials in scan()) */
        int fn_from = t->type == TK_WORD && word_in(w, k, from_functions);
        take(w);
        return walk_group(w, fn_from);
    }
    /* A table name as a value: ClickHouse may read it as a table in places
     * this walker does not model. Fine as a qualifier (events.x) or when the
     * template defines an alias of that name (count() AS events). */
    for (const an_sqlcheck_table *tb = w->o->tables; tb->name; tb++)
        if (name_eq_ci(w, k, tb->name, strlen(tb->name)) && tok(w, k + 1)->type != TK_DOT &&
            !name_defined(w, k, 0))
            return fail(w, k, "table %s can only be read after FROM, JOIN or IN (tables: %s)",
                        show(w, k, name, sizeof(name)), table_list(w, list, sizeof(list)));
    if (is_tenant_column(w, k) && (st = check_tenant_reference(w, k)) != AN_OK)
        return st;
    take(w);
    return AN_OK;
}

/* ( ... ) that is not a subquery: arguments, a tuple, a grouping. */
static an_status walk_group(walker *w, int from_ok)
{
    an_status st;
    take(w); /* ( */
    for (;;) {
        size_t k = w->i;
        tk_type ty = tok(w, k)->type;
        if (ty == TK_RPAREN) {
            take(w);
            return AN_OK;
        }
        if (ty == TK_END || ty == TK_RBRACKET) /* cannot happen after scan() */
            return fail(w, k, "unbalanced brackets");
        size_t e;
        int arr;
        if (ty == TK_WORD && !after_dot(w, k) && !after_as(w, k) && join_start(w, k, &e, &arr))
            return fail(w, k, "JOIN is only allowed in FROM");
        if ((st = expr_token(w, from_ok)) != AN_OK)
            return st;
    }
}

/* [ ... ] */
static an_status walk_array(walker *w)
{
    an_status st;
    take(w); /* [ */
    for (;;) {
        tk_type ty = tok(w, w->i)->type;
        if (ty == TK_RBRACKET) {
            take(w);
            return AN_OK;
        }
        if (ty == TK_END || ty == TK_RPAREN)
            return fail(w, w->i, "unbalanced brackets");
        if ((st = expr_token(w, 0)) != AN_OK)
            return st;
    }
}

enum clause { CL_START, CL_WITH, CL_SELECT, CL_FROM, CL_REST };
enum from_state { FS_NONE, FS_TABLE, FS_ON, FS_ARRAY };

/* A query: [WITH ...] SELECT ... [FROM ...] [WHERE ...] ... [UNION ALL
 * query]. Stops before ')' (subquery end), ';' or the end. */
static an_status walk_query(walker *w)
{
    char name[64];
    int cl = CL_START, fs = FS_NONE;
    an_status st;
    for (;;) {
        size_t k = w->i, e;
        int arr;
        tk_type ty = tok(w, k)->type;
        if (ty == TK_END || ty == TK_RPAREN || ty == TK_SEMI)
            break;
        if (ty == TK_WORD && !after_dot(w, k) && !after_as(w, k)) {
            if (word_is(w, k, "select")) {
                if (cl != CL_START && cl != CL_WITH)
                    return fail(w, k, "unexpected SELECT: subqueries go in parentheses");
                cl = CL_SELECT;
                take(w);
                continue;
            }
            if (word_is(w, k, "with")) {
                static const char *const modifiers[] = {"totals", "rollup", "cube",
                                                        "fill",   "ties",   NULL};
                if (cl == CL_START) {
                    cl = CL_WITH;
                    take(w);
                    continue;
                }
                if (word_in(w, k + 1, modifiers)) {
                    take(w);
                    take(w);
                    continue;
                }
                return fail(w, k, "unexpected WITH");
            }
            if (cl == CL_START)
                return fail(w, k, "a query must start with SELECT or WITH");
            if (word_is(w, k, "union")) {
                if (cl == CL_WITH)
                    return fail(w, k, "unexpected UNION");
                if (!keyword_at(w, k + 1, "all") || !is_query_start(w, k + 2))
                    return fail(w, k, "only UNION ALL SELECT ... is allowed");
                take(w);
                take(w);
                cl = CL_START;
                fs = FS_NONE;
                continue;
            }
            if (word_is(w, k, "from")) {
                if (cl != CL_SELECT)
                    return fail(w, k, "unexpected FROM");
                cl = CL_FROM;
                take(w);
                if ((st = table_expr(w, 1)) != AN_OK)
                    return st;
                fs = FS_TABLE;
                continue;
            }
            if (join_start(w, k, &e, &arr)) {
                if (cl != CL_FROM)
                    return fail(w, k, "JOIN is only allowed in FROM");
                while (w->i <= e)
                    take(w);
                if (arr) {
                    fs = FS_ARRAY;
                    continue;
                }
                if ((st = table_expr(w, 0)) != AN_OK)
                    return st;
                fs = FS_TABLE;
                continue;
            }
            if (word_is(w, k, "on")) {
                if (cl != CL_FROM || fs != FS_TABLE)
                    return fail(w, k, "unexpected ON");
                take(w);
                fs = FS_ON;
                continue;
            }
            if (word_is(w, k, "using")) {
                if (cl != CL_FROM || fs != FS_TABLE)
                    return fail(w, k, "unexpected USING");
                take(w);
                if (tok(w, w->i)->type == TK_LPAREN) {
                    if ((st = walk_group(w, 0)) != AN_OK)
                        return st;
                    continue;
                }
                if (!is_name(w, w->i))
                    return fail(w, w->i, "USING expects a column or (columns)");
                /* Unparenthesised, a comma could be read as another table
                 * (a comma join): insist on USING (a, b). */
                if (tok(w, w->i + 1)->type == TK_COMMA)
                    return fail(w, w->i, "write USING (a, b) with parentheses");
                if ((st = expr_token(w, 0)) != AN_OK)
                    return st;
                continue;
            }
            if (word_in(w, k, clause_words)) {
                if (cl == CL_WITH)
                    return fail(w, k, "unexpected %s before SELECT",
                                show(w, k, name, sizeof(name)));
                cl = CL_REST;
                fs = FS_NONE;
                take(w);
                continue;
            }
        }
        if (cl == CL_START)
            return fail(w, k, "a query must start with SELECT or WITH");
        if (cl == CL_FROM) {
            if (ty == TK_COMMA && fs != FS_ARRAY) { /* comma join: another table */
                take(w);
                if ((st = table_expr(w, 0)) != AN_OK)
                    return st;
                fs = FS_TABLE;
                continue;
            }
            if (fs == FS_TABLE)
                return fail(w, k, "unexpected token after a table");
        }
        if ((st = expr_token(w, 0)) != AN_OK)
            return st;
    }
    if (cl == CL_START || cl == CL_WITH)
        return fail(w, w->i, "expected SELECT");
    return AN_OK;
}

/* ------------------------------------------------------------------ API */

/* "`a`, `b`": backquoted names of [A-Za-z0-9_], ", " between them. */
static int extra_columns_valid(const char *s)
{
    for (;;) {
        if (*s++ != '`')
            return 0;
        const char *b = s;
        while (is_word_char((unsigned char)*s))
            s++;
        if (s == b || *s++ != '`')
            return 0;
        if (!*s)
            return 1;
        if (s[0] != ',' || s[1] != ' ')
            return 0;
        s += 2;
    }
}

static an_status check_opts(const an_sqlcheck_opts *o, int need_tenant, an_error *err)
{
    if (!o || !o->tables || !o->tables[0].name)
        return an_error_set(err, AN_INTERNAL, "sqlcheck: no tables given");
    for (const an_sqlcheck_table *tb = o->tables; tb->name; tb++) {
        if (!an_sql_ident_valid(tb->name) || !an_sql_table_name_valid(tb->physical) ||
            !an_sql_ident_valid(tb->tenant_column) ||
            in_list(forbidden_names, tb->name, strlen(tb->name)))
            return an_error_set(
                err, AN_INTERNAL,
                "sqlcheck: bad table entry (name %s, physical %s, tenant column %s)", tb->name,
                tb->physical ? tb->physical : "(null)",
                tb->tenant_column ? tb->tenant_column : "(null)");
        if (tb->extra_columns && !extra_columns_valid(tb->extra_columns))
            return an_error_set(err, AN_INTERNAL, "sqlcheck: bad extra columns of %s", tb->name);
        for (const an_sqlcheck_table *u = o->tables; u != tb; u++)
            if (strcmp(u->name, tb->name) == 0)
                return an_error_set(err, AN_INTERNAL, "sqlcheck: table %s listed twice", tb->name);
    }
    if (need_tenant) {
        int has_tenant = o->tenant_id != NULL;
        if (has_tenant == (int)o->all_tenants)
            return an_error_set(err, AN_INTERNAL,
                                "sqlcheck: give exactly one of tenant_id and all_tenants");
        if (has_tenant && (o->tenant_id_len ? o->tenant_id_len : strlen(o->tenant_id)) == 0)
            return an_error_set(err, AN_INTERNAL, "sqlcheck: empty tenant id");
    }
    return AN_OK;
}

static an_status run(const char *sql, size_t len, const an_sqlcheck_opts *opts, an_buf *out,
                     an_error *err)
{
    walker w = {0};
    w.sql = sql;
    w.len = len;
    w.o = opts;
    w.out = out;
    w.err = err;
    size_t max_bytes = opts->max_bytes ? opts->max_bytes : AN_SQLCHECK_MAX_BYTES;
    w.max_tokens = opts->max_tokens ? opts->max_tokens : AN_SQLCHECK_MAX_TOKENS;
    w.max_depth = opts->max_depth > 0 ? opts->max_depth : AN_SQLCHECK_MAX_DEPTH;
    if (w.max_depth > AN_SQLCHECK_MAX_DEPTH * 4)
        w.max_depth = AN_SQLCHECK_MAX_DEPTH * 4;
    if (!sql && len > 0)
        return an_error_set(err, AN_INTERNAL, "sqlcheck: NULL template");
    if (len > max_bytes)
        return an_error_field(err, AN_INVALID_ARGUMENT, "sql",
                              "sql: template is %zu bytes, the limit is %zu", len, max_bytes);
    w.t = malloc((w.max_tokens + 1) * sizeof(token));
    if (!w.t)
        return an_error_set(err, AN_INTERNAL, "sqlcheck: out of memory");
    an_status st = lex(&w);
    if (st == AN_OK)
        st = scan(&w);
    if (st == AN_OK && !is_query_start(&w, 0))
        st = fail(&w, 0, "a template must be one SELECT (or WITH ... SELECT)");
    if (st == AN_OK)
        st = walk_query(&w);
    if (st == AN_OK) {
        if (tok(&w, w.i)->type == TK_SEMI)
            w.i++;
        if (tok(&w, w.i)->type != TK_END)
            st = fail(&w, w.i, "only one statement is allowed, and only at the end may ';' be");
    }
    free(w.t);
    return st;
}

an_status an_sqlcheck_bind(const char *sql, size_t len, const an_sqlcheck_opts *opts, an_buf *out,
                           an_error *err)
{
    an_status st = check_opts(opts, 1, err);
    if (st != AN_OK)
        return st;
    an_sqlcheck_opts o = *opts;
    if (o.tenant_id && !o.tenant_id_len)
        o.tenant_id_len = strlen(o.tenant_id);
    an_buf tmp = AN_BUF_INIT;
    st = run(sql, len, &o, &tmp, err);
    if (st == AN_OK)
        an_buf_add(out, tmp.data ? tmp.data : "", tmp.len);
    an_buf_free(&tmp);
    return st;
}

an_status an_sqlcheck_check(const char *sql, size_t len, const an_sqlcheck_opts *opts,
                            an_error *err)
{
    an_status st = check_opts(opts, 0, err);
    if (st != AN_OK)
        return st;
    an_sqlcheck_opts o = *opts;
    o.all_tenants = true;
    o.tenant_id = NULL;
    o.tenant_id_len = 0;
    an_buf tmp = AN_BUF_INIT;
    st = run(sql, len, &o, &tmp, err);
    an_buf_free(&tmp);
    return st;
}
