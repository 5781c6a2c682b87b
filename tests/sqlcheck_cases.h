/*
 * sqlcheck_cases.h - the SQL templates the sqlcheck tests are about, shared by
 * the unit suite (tests/unit/test_sqlcheck.c: every hostile one is refused
 * for the stated reason, every legitimate one accepted) and the ClickHouse
 * suite (tests/integration/test_sqlcheck_clickhouse.c: the legitimate ones
 * return exactly one tenant's numbers; the hostile ones marked CH_PARSES are
 * accepted by ClickHouse's own parser, so they are real attacks and not
 * syntax errors).
 *
 * Tables in the templates: events, events_hourly (the allowed ones) and
 * other_table, which stands for any other table of the hot-tier database
 * (metric definitions, dashboards, ...).
 */
#ifndef AN_TEST_SQLCHECK_CASES_H
#define AN_TEST_SQLCHECK_CASES_H

#include <stddef.h>

enum {
    CH_NOT_SENT = 0, /* destructive, slow, reaches out, or a lexical trick 18.16 refuses */
    CH_PARSES = 1,   /* ClickHouse 18.16 parses it (it fails later, e.g. unknown table) */
};

typedef struct hostile_case {
    const char *sql;
    size_t len;         /* 0: strlen(sql); set for templates holding a NUL */
    const char *reason; /* the refusal message must contain this */
    int ch;             /* CH_PARSES or CH_NOT_SENT */
    const char *why;    /* what the template tries */
} hostile_case;

#define H(sql, reason, ch, why)                                                                    \
    {                                                                                              \
        sql, 0, reason, ch, why                                                                    \
    }

static const hostile_case hostile_cases[] = {
    /* --- other statements, more than one statement ------------------- */
    H("DROP TABLE events", "DROP is not allowed", CH_NOT_SENT, "drop the events table"),
    H("INSERT INTO events SELECT * FROM events", "INSERT is not allowed", CH_NOT_SENT,
      "write into the events table"),
    H("ALTER TABLE events DELETE WHERE 1", "ALTER is not allowed", CH_NOT_SENT,
      "mutation deleting every event"),
    H("TRUNCATE TABLE events", "TRUNCATE is not allowed", CH_NOT_SENT, "empty the table"),
    H("CREATE TABLE x ENGINE = Memory AS SELECT * FROM events", "CREATE is not allowed",
      CH_NOT_SENT, "copy every tenant's rows into a new table"),
    H("RENAME TABLE events TO events_old", "RENAME is not allowed", CH_NOT_SENT, "rename"),
    H("DETACH TABLE events", "DETACH is not allowed", CH_NOT_SENT, "detach"),
    H("OPTIMIZE TABLE events FINAL", "OPTIMIZE is not allowed", CH_NOT_SENT, "heavy merge"),
    H("KILL QUERY WHERE 1", "KILL is not allowed", CH_NOT_SENT, "kill other tenants' queries"),
    H("SET readonly = 0", "SET is not allowed", CH_NOT_SENT, "lift readonly"),
    H("USE system", "USE is not allowed", CH_NOT_SENT, "switch database"),
    H("SHOW TABLES", "SHOW is not allowed", CH_NOT_SENT, "list tables"),
    H("DESCRIBE TABLE events", "DESCRIBE is not allowed", CH_NOT_SENT, "schema discovery"),
    H("EXISTS TABLE other_table", "EXISTS is not allowed", CH_NOT_SENT, "probe for tables"),
    H("EXPLAIN SELECT 1", "EXPLAIN is not allowed", CH_NOT_SENT, "not a SELECT"),
    H("GRANT SELECT ON *.* TO analytics_reader", "GRANT is not allowed", CH_NOT_SENT,
      "grant rights"),
    H("SELECT 1; SELECT count() FROM other_table", "only one statement", CH_NOT_SENT,
      "second statement after ;"),
    H("SELECT 1;;", "only one statement", CH_NOT_SENT, "empty second statement"),
    H("SELECT 1 -- end\n; SELECT 2", "only one statement", CH_NOT_SENT,
      "second statement hidden after a -- comment"),
    H("SELECT 1 /* ; */ ; SELECT 2", "only one statement", CH_NOT_SENT,
      "second statement after a block comment"),
    H("", "one SELECT", CH_NOT_SENT, "empty template"),
    H("FROM events SELECT count()", "one SELECT", CH_NOT_SENT,
      "FROM-first syntax of newer servers"),

    /* --- tables that are not the caller's ----------------------------- */
    H("SELECT * FROM system.tables", "system is reserved", CH_PARSES, "system database"),
    H("SELECT * FROM SYSTEM.one", "SYSTEM is reserved", CH_PARSES, "system, upper case"),
    H("SELECT * FROM `system`.`tables`", "system is reserved", CH_PARSES, "system, backquoted"),
    H("SELECT * FROM \"system\".\"processes\"", "system is reserved", CH_PARSES,
      "system, double-quoted"),
    H("SELECT * FROM `sys\\x74em`.one", "escapes in a quoted identifier", CH_PARSES,
      "system spelled with an escape inside backquotes"),
    H("SELECT * FROM `system.one`", "may not contain '.'", CH_PARSES,
      "dotted name inside backquotes"),
    H("SELECT * FROM analytics.events", "analytics is reserved", CH_PARSES,
      "the physical table directly, without the tenant condition"),
    H("SELECT * FROM default.events", "default is reserved", CH_PARSES, "default database"),
    H("SELECT * FROM other_db.events", "database-qualified", CH_PARSES, "any other database"),
    H("SELECT * FROM information_schema.tables", "information_schema is reserved", CH_PARSES,
      "information_schema"),
    H("SELECT * FROM INFORMATION_SCHEMA.TABLES", "INFORMATION_SCHEMA is reserved", CH_PARSES,
      "information_schema, upper case"),
    H("SELECT * FROM other_table", "table other_table is not allowed", CH_PARSES,
      "another table of the hot tier"),
    H("SELECT * FROM Events", "table Events is not allowed", CH_PARSES,
      "case variant of an allowed name"),
    H("SELECT * FROM events, other_table", "table other_table is not allowed", CH_PARSES,
      "comma join"),
    H("SELECT * FROM events, system.one", "system is reserved", CH_PARSES,
      "comma join with the system database"),
    H("SELECT * FROM events AS where, other_table", "keyword where cannot be a name", CH_PARSES,
      "keyword as table alias before a comma join"),
    H("SELECT 1 AS from FROM other_table", "keyword from cannot be a name", CH_PARSES,
      "keyword as a column alias right before FROM"),
    H("SELECT * FROM events AS e ALL INNER JOIN other_table USING actor_id",
      "table other_table is not allowed", CH_PARSES, "join another table"),
    H("SELECT * FROM events AS e GLOBAL ANY LEFT JOIN other_table AS o ON e.actor_id = o.x",
      "table other_table is not allowed", CH_PARSES, "global join"),
    H("SELECT * FROM events ARRAY JOIN [1] AS x ALL INNER JOIN other_table USING actor_id",
      "table other_table is not allowed", CH_PARSES, "join after ARRAY JOIN"),
    H("SELECT * FROM events AS a ALL INNER JOIN events AS b ON a.actor_id = b.actor_id, "
      "other_table",
      "table other_table is not allowed", CH_PARSES, "comma join after ON"),
    H("SELECT * FROM events AS a ALL INNER JOIN events AS b USING actor_id, other_table",
      "USING (a, b)", CH_PARSES, "comma after an unparenthesised USING"),
    H("SELECT * FROM events UNION ALL SELECT * FROM other_table",
      "table other_table is not allowed", CH_PARSES, "second SELECT of a UNION"),
    H("SELECT * FROM (SELECT * FROM system.processes)", "system is reserved", CH_PARSES,
      "system table in a FROM subquery"),
    H("SELECT * FROM (events)", "expected a table name or (SELECT", CH_NOT_SENT,
      "parenthesised table name"),
    H("SELECT count() FROM events WHERE 1 IN (SELECT 1 FROM events, other_table)",
      "table other_table is not allowed", CH_PARSES, "comma join inside a subquery"),
    H("WITH (SELECT count() FROM system.tables) AS x SELECT x", "system is reserved", CH_PARSES,
      "scalar subquery in WITH"),
    H("WITH x AS (SELECT * FROM other_table) SELECT * FROM x", "WITH name AS (subquery)",
      CH_NOT_SENT, "CTE of newer servers"),
    H("SELECT (SELECT groupArray(name) FROM system.databases)", "system is reserved", CH_PARSES,
      "scalar subquery in the select list"),
    H("SELECT * FROM events WHERE extract(DAY FROM (SELECT ts FROM other_table)) = 1",
      "table other_table is not allowed", CH_PARSES, "subquery inside EXTRACT(... FROM ...)"),

    /* --- table functions ---------------------------------------------- */
    H("SELECT * FROM numbers(10)", "function numbers is not allowed", CH_PARSES, "table function"),
    H("SELECT * FROM remote('127.0.0.1', system.one)", "function remote is not allowed", CH_PARSES,
      "remote()"),
    H("SELECT * FROM url('http://127.0.0.1:1/', CSV, 'a String')", "function url is not allowed",
      CH_NOT_SENT, "url(): reaches out"),
    H("SELECT * FROM file('passwd', CSV, 'a String')", "function file is not allowed", CH_NOT_SENT,
      "file(): reads the server's files"),
    H("SELECT * FROM mysql('h:3306', 'db', 't', 'u', 'p')", "function mysql is not allowed",
      CH_NOT_SENT, "mysql(): reaches out"),
    H("SELECT * FROM jdbc('jdbc:x', 't')", "function jdbc is not allowed", CH_NOT_SENT, "jdbc()"),
    H("SELECT * FROM merge(currentDatabase(), '^ev')", "function merge is not allowed", CH_PARSES,
      "merge(): every matching table, unbound"),
    H("SELECT * FROM input('a String')", "function input is not allowed", CH_PARSES, "input()"),
    H("SELECT * FROM some_new_function(1)", "table functions are not allowed", CH_PARSES,
      "a table function the deny list does not know"),
    H("SELECT * FROM view(SELECT * FROM other_table)", "function view is not allowed", CH_NOT_SENT,
      "view() of newer servers"),

    /* --- IN reads tables ---------------------------------------------- */
    H("SELECT * FROM events WHERE actor_id IN other_table", "IN other_table reads a table",
      CH_PARSES, "IN with a bare table name"),
    H("SELECT * FROM events WHERE actor_id IN (events)", "IN (events) reads a table", CH_PARSES,
      "IN with a parenthesised table name"),
    H("SELECT * FROM events WHERE actor_id IN ((other_table))", "reads a table", CH_PARSES,
      "IN with a doubly parenthesised table name"),
    H("SELECT * FROM events WHERE actor_id GLOBAL NOT IN other_db.t", "database-qualified",
      CH_PARSES, "GLOBAL NOT IN another database's table"),
    H("SELECT * FROM events WHERE actor_id IN (SELECT name FROM system.users)",
      "system is reserved", CH_PARSES, "IN subquery on a system table"),
    H("SELECT * FROM events WHERE in(actor_id, other_table)", "in(...) as a function", CH_PARSES,
      "function form of IN"),
    H("SELECT * FROM events WHERE NOT in(actor_id, other_table)", "in(...) as a function",
      CH_PARSES, "function form of IN after NOT"),
    H("SELECT * FROM events WHERE `in`(actor_id, other_table)", "function in is not allowed",
      CH_PARSES, "function form of IN, backquoted"),
    H("SELECT * FROM events WHERE globalIn(actor_id, other_table)",
      "function globalIn is not allowed", CH_PARSES, "globalIn()"),
    H("SELECT * FROM events WHERE notIn(actor_id, other_table)", "function notIn is not allowed",
      CH_PARSES, "notIn()"),
    H("SELECT count() FROM events WHERE actor_id IN (event_name, other_table)",
      "a name in an IN list", CH_PARSES, "bare name in an IN list"),
    H("SELECT TOP 1 in(actor_id, other_table) FROM events", "a name in an IN list", CH_NOT_SENT,
      "in(...) after TOP n: an operator here, the function on newer servers"),

    /* --- functions that read outside the bound relation --------------- */
    H("SELECT dictGet('tenants', 'name', toUInt64(1))", "function dictGet is not allowed",
      CH_PARSES, "dictionary lookup"),
    H("SELECT dictGetString('tenants', 'name', toUInt64(1))", "function dictGetString", CH_PARSES,
      "typed dictionary lookup"),
    H("SELECT DICTGETSTRING('tenants', 'name', toUInt64(1))", "function DICTGETSTRING", CH_PARSES,
      "dictionary lookup, upper case"),
    H("SELECT dictHas('tenants', toUInt64(1))", "function dictHas", CH_PARSES, "dictHas"),
    H("SELECT `dictGet`('tenants', 'name', toUInt64(1))", "function dictGet is not allowed",
      CH_PARSES, "dictionary lookup, backquoted name"),
    H("SELECT joinGet('other_table', 'v', 1)", "function joinGet is not allowed", CH_PARSES,
      "joinGet() reads a Join table"),
    H("SELECT hasColumnInTable('system', 'users', 'name')", "function hasColumnInTable", CH_PARSES,
      "schema probing"),
    H("SELECT file('passwd')", "function file is not allowed", CH_PARSES,
      "file() as a scalar function (newer servers)"),
    H("SELECT getSetting('readonly')", "function getSetting is not allowed", CH_PARSES,
      "server settings"),
    H("SELECT hostName()", "function hostName is not allowed", CH_PARSES, "server identity"),
    H("SELECT sleep(3)", "function sleep is not allowed", CH_NOT_SENT, "stall the server"),
    H("SELECT sleepEachRow(1) FROM events", "function sleepEachRow", CH_NOT_SENT,
      "stall the server per row"),
    H("SELECT e.lower('x') FROM events AS e", "qualified function calls", CH_NOT_SENT,
      "dotted function call (a namespace the deny list does not see)"),

    /* --- clauses that change output or settings ----------------------- */
    H("SELECT * FROM events SETTINGS readonly = 0", "SETTINGS is not allowed", CH_PARSES,
      "settings override"),
    H("SELECT * FROM events SETTINGS max_execution_time = 0, max_result_rows = 0",
      "SETTINGS is not allowed", CH_PARSES, "lift the limits"),
    H("SELECT * FROM events FORMAT JSON", "FORMAT is not allowed", CH_PARSES,
      "output format override"),
    H("SELECT * FROM events INTO OUTFILE '/tmp/x'", "INTO is not allowed", CH_PARSES,
      "write a file on the server"),
    H("SELECT 1 AS format", "format is not allowed", CH_PARSES,
      "FORMAT as an alias (refused as a word, however used)"),
    H("SELECT * FROM events PREWHERE 1", "PREWHERE is not allowed", CH_PARSES,
      "PREWHERE, which a bound subquery cannot honour"),
    H("SELECT * FROM events UNION DISTINCT SELECT * FROM events", "only UNION ALL", CH_NOT_SENT,
      "UNION DISTINCT of newer servers"),
    H("SELECT 1 FROM events INTERSECT SELECT 1 FROM events", "INTERSECT is not allowed",
      CH_NOT_SENT, "INTERSECT of newer servers"),

    /* --- comments and lexical tricks ---------------------------------- */
    H("SEL/**/ECT count() FROM events", "one SELECT", CH_NOT_SENT, "a comment splitting a keyword"),
    H("SELECT count() FROM events /* /* */ , other_table -- */", "nested comments", CH_NOT_SENT,
      "nested comment read differently by 18.16 and newer servers"),
    H("SELECT count() FROM events # , other_table", "'#' comments", CH_NOT_SENT,
      "# comment of newer servers"),
    H("SELECT count() FROM events #!, other_table", "'#' comments", CH_NOT_SENT,
      "#! comment of newer servers"),
    H("SELECT count() FROM events /* , other_table", "comment is not closed", CH_NOT_SENT,
      "unterminated comment"),
    H("SELECT 'unterminated FROM other_table", "string literal is not closed", CH_NOT_SENT,
      "unterminated string"),
    H("SELECT count() FROM events WHERE actor_id = 'a\\\\' OR 1 IN (SELECT 1 FROM other_table) "
      "--'",
      "table other_table is not allowed", CH_PARSES,
      "escaped backslash ends the string: what follows is code"),
    H("SELECT count() FROM events WHERE actor_id = 'x'' OR 1 IN (SELECT 1 FROM other_table)",
      "string literal is not closed", CH_NOT_SENT, "doubled quote keeps the string open"),
    H("SELECT count() FROM events\xc2\xa0, other_table", "byte 0xC2 outside quotes", CH_NOT_SENT,
      "no-break space that newer servers treat as a space"),
    H("SELECT count() FROM events WHERE $$x$$ = 'x'", "character '$'", CH_NOT_SENT,
      "heredoc string of newer servers"),
    H("SELECT {tenant:String}", "character '{'", CH_NOT_SENT, "query parameter substitution"),
    H("SELECT * FROM `events``x`", "doubled quotes", CH_PARSES, "doubled backquote"),
    H("SELECT * FROM events WHERE event_name = '--' UNION ALL SELECT * FROM other_table",
      "table other_table is not allowed", CH_PARSES, "-- inside a string hides nothing"),
    H("SELECT * FROM events WHERE event_name = '/*' UNION ALL SELECT * FROM other_table -- */",
      "table other_table is not allowed", CH_PARSES, "/* inside a string hides nothing"),
    H("SELECT\t*\fFROM\vother_table", "table other_table is not allowed", CH_PARSES,
      "tab, form feed and vertical tab as separators"),
    H("sElEcT * fRoM SyStEm.one", "SyStEm is reserved", CH_PARSES, "mixed-case keywords"),
    H("SELECT count() FROM events ARRAY LEFT JOIN other_table USING actor_id",
      "table other_table is not allowed", CH_NOT_SENT,
      "ARRAY not right before JOIN is read as a table join"),
    H("SELECT 1FROM other_table", "malformed number", CH_NOT_SENT, "number glued to a keyword"),
    H("SELECT count() FROM events WHERE \x01 1", "control character", CH_NOT_SENT, "control byte"),
    {"SELECT 1\0; DROP TABLE events", sizeof("SELECT 1\0; DROP TABLE events") - 1, "NUL byte",
     CH_NOT_SENT, "NUL byte hiding a second statement from C string handling"},
    H("SELECT (1", "unbalanced", CH_NOT_SENT, "unclosed parenthesis"),
    H("SELECT 1)", "unbalanced", CH_NOT_SENT, "extra closing parenthesis"),
    H("SELECT [1)", "unbalanced", CH_NOT_SENT, "mismatched brackets"),

    /* --- defeating the tenant condition ------------------------------- */
    H("WITH 'A' AS tenant_id SELECT count() FROM events", "tenant column", CH_PARSES,
      "WITH alias shadowing the tenant column (newer servers propagate it)"),
    H("SELECT 'B' AS tenant_id, count() FROM events", "tenant column", CH_PARSES,
      "select alias shadowing the tenant column"),
    H("SELECT 'B' tenant_id, count() FROM events", "tenant column", CH_PARSES,
      "implicit alias shadowing the tenant column"),
    H("SELECT count() FROM events AS tenant_id", "tenant column", CH_PARSES,
      "table alias named like the tenant column"),
    H("SELECT count() FROM events tenant_id", "tenant column", CH_PARSES,
      "implicit table alias named like the tenant column"),
    H("SELECT count() FROM events AS `tenant_id`", "tenant column", CH_PARSES,
      "backquoted table alias named like the tenant column"),
    H("SELECT count() FROM (SELECT 'B' AS TENANT_ID FROM events)", "tenant column", CH_PARSES,
      "upper-case variant in a subquery"),
    H("SELECT count() FROM events ARRAY JOIN ['A'] AS tenant_id", "tenant column", CH_PARSES,
      "ARRAY JOIN alias named like the tenant column"),
    H("SELECT arrayMap(tenant_id -> 1, [1]) FROM events", "tenant column", CH_PARSES,
      "lambda parameter named like the tenant column"),
    H("SELECT arrayMap((x, tenant_id) -> 1, [1], [2]) FROM events", "tenant column", CH_PARSES,
      "lambda tuple parameter named like the tenant column"),
    H("SELECT count() FROM events WHERE has(events, 1)", "table events can only be read", CH_PARSES,
      "table name as a value"),
    H("SELECT * FROM (SELECT 1) AS tenant_id", "tenant column", CH_PARSES,
      "subquery alias named like the tenant column"),
};

#undef H

typedef struct legit_case {
    const char *sql;
    const char *why;
} legit_case;

/* Accepted templates; the ClickHouse suite checks their numbers per tenant. */
static const legit_case legit_cases[] = {
    {"SELECT toDate(ts) AS day, count() AS n FROM events WHERE event_name = 'enrolled' "
     "GROUP BY day ORDER BY day",
     "count by day"},
    {"SELECT uniqExact(actor_id) AS users FROM events", "unique actors"},
    {"SELECT (SELECT count() FROM events WHERE event_name = 'paid') / "
     "(SELECT count() FROM events WHERE event_name = 'enrolled') AS conversion",
     "ratio of two scalar subqueries"},
    {"SELECT e.actor_id, count() AS n FROM events AS e ALL INNER JOIN (SELECT actor_id FROM "
     "events WHERE event_name = 'paid') AS p USING (actor_id) GROUP BY e.actor_id "
     "ORDER BY e.actor_id",
     "self join through a subquery"},
    {"SELECT k, v, count() AS n FROM events ARRAY JOIN prop_keys AS k, prop_values AS v "
     "GROUP BY k, v ORDER BY k, v",
     "ARRAY JOIN over key/value arrays"},
    {"SELECT 'enrolled' AS kind, count() AS n FROM events WHERE event_name = 'enrolled' "
     "UNION ALL SELECT 'paid', count() FROM events WHERE event_name = 'paid'",
     "UNION ALL"},
    {"SELECT count() FROM events WHERE actor_id IN (SELECT actor_id FROM events WHERE "
     "event_name = 'paid')",
     "IN subquery"},
    {"WITH toDateTime('2024-01-02 00:00:00') AS since SELECT count() FROM events "
     "WHERE ts >= since",
     "WITH expression alias"},
    {"SELECT count() -- every event\nFROM events /* no filter */ ;",
     "comments and a trailing semicolon"},
    {"SELECT count() FROM events WHERE event_name != 'FROM system.tables; DROP TABLE events --'",
     "keywords inside a string"},
    {"SELECT count() AS \"Active users\", countIf(event_name = 'paid') AS `Paid` FROM `events`",
     "quoted aliases and table name"},
    {"SELECT h.hour, sum(h.n) AS n FROM events_hourly AS h GROUP BY h.hour ORDER BY h.hour",
     "the second allowed table"},
    {"SELECT actor_id, max(ts) AS last FROM events GROUP BY actor_id ORDER BY last DESC, "
     "actor_id LIMIT 1 BY actor_id",
     "LIMIT BY"},
    {"SELECT quantileExact(0.5)(toUInt32(ts)) > 0 AS ok, arrayMap(x -> x * 2, [1, 2]) AS d "
     "FROM events",
     "parametric aggregate and a lambda"},
    {"SELECT avg(n) FROM (SELECT actor_id, count() AS n FROM events GROUP BY actor_id)",
     "aggregate over a FROM subquery"},
    {"SELECT event_name, count() AS events FROM events GROUP BY event_name WITH TOTALS "
     "ORDER BY events DESC, event_name",
     "alias named like a table, WITH TOTALS"},
    {"SELECT count() FROM events AS e WHERE toStartOfHour(e.ts) GLOBAL IN (SELECT hour FROM "
     "events_hourly)",
     "GLOBAL IN across the two allowed tables"},
    {"SELECT tenant_id, count() FROM events GROUP BY tenant_id", "the tenant column, read"},
    {"SELECT a.event_name, count() AS n FROM events AS a ALL INNER JOIN events AS b "
     "ON a.actor_id = b.actor_id GROUP BY a.event_name ORDER BY a.event_name",
     "self join with ON"},
    {"SELECT CAST(count() AS String) AS s, substring(min(event_name) FROM 1 FOR 3) AS p "
     "FROM events",
     "CAST and SUBSTRING ... FROM"},
};

#endif
