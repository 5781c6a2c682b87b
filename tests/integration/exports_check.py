#!/usr/bin/python3
"""Check an exported file against the rows ClickHouse holds, with readers
that share nothing with the exports service: Python's csv module, its json
module, and openpyxl (Debian's python3-openpyxl) for xlsx.

    exports_check.py FORMAT FILE EXPECTED.json [SHEET_ROWS]
    exports_check.py presign URL SECRET_KEY

The second form recomputes the AWS Signature V4 of a presigned GET URL with
hashlib/hmac (an implementation independent of the service's, since the
s3rver the tests run against parses V4 signatures but does not verify them)
and exits 0 when it matches the URL's X-Amz-Signature.

EXPECTED.json is ClickHouse's FORMAT JSONCompact output of the same query
(column names, types and rows). Prints "ok <rows>" and exits 0 when every
row and column matches; otherwise prints what differs and exits 1.
"""
import csv
import datetime
import json
import re
import sys


def fail(msg):
    print(msg)
    sys.exit(1)


def kind(ch_type):
    t = ch_type
    while t.startswith("Nullable(") or t.startswith("LowCardinality("):
        t = t[t.index("(") + 1:-1]
    if t.startswith("Int") or t.startswith("UInt"):
        return "int"
    if t.startswith("Float") or t.startswith("Decimal"):
        return "float"
    if t.startswith("DateTime"):
        return "datetime"
    if t.startswith("Date"):
        return "date"
    return "string"


def ooxml_unescape(s):
    """ECMA-376 escapes characters XML cannot carry as _xHHHH_ (Excel decodes
    them; openpyxl's read-only reader leaves them as they are)."""
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), s)


def text_of(v):
    return "" if v is None else str(v)


def check_presign(url, secret):
    import hashlib
    import hmac
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    params = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
    got = dict(params)["X-Amz-Signature"]
    rest = [(k, v) for k, v in params if k != "X-Amz-Signature"]
    q = "&".join("%s=%s" % (urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~"))
                 for k, v in sorted(rest))
    creq = "\n".join(["GET", u.path, q, "host:" + u.netloc, "", "host", "UNSIGNED-PAYLOAD"])
    date = dict(params)["X-Amz-Date"]
    scope = dict(params)["X-Amz-Credential"].split("/", 1)[1]
    sts = "\n".join(["AWS4-HMAC-SHA256", date, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in scope.split("/"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    want = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    if want != got:
        fail("signature %s, expected %s" % (got, want))
    print("ok signature")


def main():
    if sys.argv[1] == "presign":
        check_presign(sys.argv[2], sys.argv[3])
        return
    fmt, path, expected_path = sys.argv[1:4]
    sheet_rows = int(sys.argv[4]) if len(sys.argv) > 4 else 1048575
    exp = json.load(open(expected_path, encoding="utf-8"))
    names = [m["name"] for m in exp["meta"]]
    kinds = [kind(m["type"]) for m in exp["meta"]]
    rows = exp["data"]

    if fmt == "csv":
        with open(path, newline="", encoding="utf-8") as f:
            got = list(csv.reader(f, strict=True))
        if got[0] != names:
            fail("header %r != %r" % (got[0], names))
        got = got[1:]
        if len(got) != len(rows):
            fail("%d rows in the file, %d in ClickHouse" % (len(got), len(rows)))
        raw = open(path, "rb").read()
        if b"\r\n" not in raw:
            fail("records are not CRLF-terminated")
        for i, (g, e) in enumerate(zip(got, rows)):
            for c, (gv, ev) in enumerate(zip(g, e)):
                want = text_of(ev)
                if kinds[c] == "string" and want[:1] in ("=", "+", "-", "@", "\t", "\r"):
                    want = "'" + want
                if gv != want:
                    fail("row %d col %s: %r != %r" % (i, names[c], gv, want))
    elif fmt == "json":
        lines = open(path, encoding="utf-8").read().split("\n")
        if lines[-1] != "":
            fail("the file does not end with a newline")
        lines = lines[:-1]
        if len(lines) != len(rows):
            fail("%d lines in the file, %d rows in ClickHouse" % (len(lines), len(rows)))
        for i, (line, e) in enumerate(zip(lines, rows)):
            o = json.loads(line)
            if list(o.keys()) != names:
                fail("row %d keys %r" % (i, list(o.keys())))
            for c, ev in enumerate(e):
                gv = o[names[c]]
                if kinds[c] == "int":
                    ok = gv == int(ev)
                elif kinds[c] == "float":
                    ok = gv == float(ev)
                elif kinds[c] == "datetime":
                    ok = gv == ev.replace(" ", "T") + "Z"
                else:
                    ok = gv == ev
                if not ok:
                    fail("row %d col %s: %r != %r" % (i, names[c], gv, ev))
    elif fmt == "xlsx":
        import openpyxl

        wb = openpyxl.load_workbook(path, read_only=True)
        got = []
        for n, ws in enumerate(wb.worksheets):
            it = ws.iter_rows(values_only=False)
            header = [c.value for c in next(it)]
            if header != names:
                fail("sheet %s header %r" % (ws.title, header))
            sheet = [list(r) for r in it]
            if n < len(wb.worksheets) - 1 and len(sheet) != sheet_rows:
                fail("sheet %s has %d rows, not %d" % (ws.title, len(sheet), sheet_rows))
            got.extend(sheet)
        if len(got) != len(rows):
            fail("%d rows in the workbook, %d in ClickHouse" % (len(got), len(rows)))
        for i, (g, e) in enumerate(zip(got, rows)):
            for c, ev in enumerate(e):
                cell = g[c] if c < len(g) else None
                gv = cell.value if cell is not None else None
                k = kinds[c]
                if k == "int":
                    ok = cell.data_type == "n" and gv == int(ev)
                elif k == "float":
                    ok = cell.data_type == "n" and gv == float(ev)
                elif k == "datetime":
                    ok = cell.is_date and gv == datetime.datetime.strptime(
                        ev, "%Y-%m-%d %H:%M:%S")
                elif k == "date":
                    ok = cell.is_date and gv == datetime.datetime.strptime(ev, "%Y-%m-%d")
                else:
                    ok = ooxml_unescape(gv or "") == ev and (ev == "" or cell.data_type == "s")
                if not ok:
                    fail("row %d col %s: %r (%s) != %r" % (
                        i, names[c], gv, cell.data_type if cell is not None else "-", ev))
    else:
        fail("unknown format " + fmt)
    print("ok %d" % len(rows))


main()
