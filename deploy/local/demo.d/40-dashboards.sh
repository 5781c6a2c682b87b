#!/usr/bin/env bash
# Demo step (deploy/local/run.sh runs it after the sample traffic and the
# metrics step): a sample dashboard over the sample metrics, rendered, and
# its charts written as PNG files to a directory it prints.
#
# Tenant: DEMO_TENANT, else the tenant with the most events. Metrics: the
# active ones analytics.metrics.list returns for it; when no metrics service
# answers, the test double of the metrics service (tests/helpers/metrics_double,
# catalog: events, signups, revenue by country/plan) is started as `metrics`
# for this step and said so. Output: DEMO_OUT, else a new directory under
# ${TMPDIR:-/tmp} (kept after run.sh stops the stack).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
BUILD_DIR="${RUN_BUILD_DIR:-build}"
case "$BUILD_DIR" in /*) ;; *) BUILD_DIR="$ROOT/$BUILD_DIR" ;; esac
: "${ANALYTICS_NATS_URL:?needs the stack env}"
: "${ANALYTICS_JWT_SECRET:?needs ANALYTICS_JWT_SECRET (run.sh sets it)}"
OUT=${DEMO_OUT:-$(mktemp -d "${TMPDIR:-/tmp}/analytics-demo-dashboards.XXXXXX")}
mkdir -p "$OUT"

ch_admin() {
    curl -sS --max-time 30 -H "X-ClickHouse-User: $ANALYTICS_CLICKHOUSE_ADMIN_USER" \
        -H "X-ClickHouse-Key: $ANALYTICS_CLICKHOUSE_ADMIN_PASSWORD" --data-binary "$1" "$ANALYTICS_CLICKHOUSE_URL/"
}
TENANT=${DEMO_TENANT:-$(ch_admin "SELECT tenant_id FROM analytics.events WHERE tenant_id != '' GROUP BY tenant_id ORDER BY count() DESC LIMIT 1")}
if [ -z "$TENANT" ]; then
    echo "no events in analytics.events: no sample traffic to show"
    TENANT=demo
fi
echo "tenant $TENANT ($(ch_admin "SELECT count() FROM analytics.events WHERE tenant_id = '$TENANT'") events)"

# The Python step writes the double's pid to $OUT/.double.pid when it starts
# it; the trap reads it there, so the double is stopped even when that step
# fails after starting it.
trap 'if [ -f "$OUT/.double.pid" ]; then kill "$(cat "$OUT/.double.pid")" 2>/dev/null || true; rm -f "$OUT/.double.pid"; fi; true' EXIT

export DEMO_TENANT="$TENANT" DEMO_OUT="$OUT" DEMO_BUILD="$BUILD_DIR"
python3 - <<'PY'
import base64, hashlib, hmac, json, os, socket, subprocess, sys, time, random, string

url = os.environ["ANALYTICS_NATS_URL"].split("//")[-1].split(",")[0]
host, port = url.rsplit(":", 1)
tenant, out = os.environ["DEMO_TENANT"], os.environ["DEMO_OUT"]
secret = os.environ["ANALYTICS_JWT_SECRET"].encode()

def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def token():
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    c = b64(json.dumps({"sub": "demo", "tid": tenant, "roles": ["tenant-admin"],
                        "exp": int(time.time()) + 3600}).encode())
    s = b64(hmac.new(secret, f"{h}.{c}".encode(), hashlib.sha256).digest())
    return f"Bearer {h}.{c}.{s}"
AUTH = token()

class Nats:
    def __init__(self):
        self.s = socket.create_connection((host, int(port)), timeout=30)
        self.f = self.s.makefile("rb")
        self.f.readline()  # INFO
        self.s.sendall(b'CONNECT {"verbose":false,"pedantic":false,"headers":true,"no_responders":true,"protocol":1}\r\nPING\r\n')
        while self.f.readline().strip() != b"PONG": pass
        self.inbox = "_INBOX.demo" + "".join(random.choices(string.ascii_letters, k=12))
        self.s.sendall(f"SUB {self.inbox}.* 1\r\n".encode())
        self.n = 0
    def request(self, subject, body, timeout=30):
        self.n += 1
        reply = f"{self.inbox}.{self.n}"
        hdr = f"NATS/1.0\r\nAuthorization: {AUTH}\r\n\r\n".encode()
        data = json.dumps(body).encode()
        self.s.sendall(f"HPUB {subject} {reply} {len(hdr)} {len(hdr)+len(data)}\r\n".encode() + hdr + data + b"\r\n")
        self.s.settimeout(timeout)
        while True:
            line = self.f.readline()
            if not line: raise RuntimeError("nats closed")
            p = line.split()
            if p[0] == b"PING": self.s.sendall(b"PONG\r\n"); continue
            if p[0] in (b"MSG", b"HMSG"):
                hl = int(p[-2]) if p[0] == b"HMSG" else 0
                total = int(p[-1]); payload = self.f.read(total + 2)[:total]
                if p[1].decode() != reply: continue
                head, payload = payload[:hl], payload[hl:]
                if b"503" in head.split(b"\r\n")[0] and not payload:
                    return {"error": {"code": "no_responders", "message": "nobody listens on " + subject}}
                return json.loads(payload)

nc = Nats()
def call(svc, verb, body):
    return nc.request(f"analytics.{svc}.{verb}", body)

metrics = []
r = call("metrics", "list", {"status": "active"})
if "data" in r:
    d = r["data"]
    items = d if isinstance(d, list) else d.get("metrics") or d.get("items") or []
    for m in items:
        if m.get("status", "active") == "active" and m.get("id"):
            dims = [x if isinstance(x, str) else x.get("name") for x in m.get("dimensions", [])]
            # the real service has no dimension list: any event column or
            # properties.<path> works when the template has {{dimensions}}
            metrics.append({"id": m["id"], "name": m.get("name", m["id"]),
                            "dims": [x for x in dims if x] or ["event_name"]})
elif r["error"]["code"] == "no_responders":
    print("no metrics service answers: starting the metrics test double (tests/helpers/metrics_double) as `metrics` for this demo")
    env = dict(os.environ, ANALYTICS_METRICS_DOUBLE_NAME="metrics", ANALYTICS_HTTP_ADDR="127.0.0.1:0",
               ANALYTICS_LOG_LEVEL="warn")
    p = subprocess.Popen([os.path.join(os.environ["DEMO_BUILD"], "tests/helpers/metrics_double")], env=env,
                         stdout=subprocess.DEVNULL, stderr=open(os.path.join(out, "metrics_double.log"), "w"))
    open(os.path.join(out, ".double.pid"), "w").write(str(p.pid))
    for _ in range(100):
        if "data" in call("metrics", "get", {"id": "signups"}): break
        time.sleep(0.1)
    metrics = [{"id": "events", "name": "events", "dims": ["event_name", "properties.country"]},
               {"id": "signups", "name": "signups", "dims": ["properties.country", "properties.plan"]},
               {"id": "revenue", "name": "revenue", "dims": ["properties.country", "properties.plan"]}]
else:
    print("metrics list failed:", r["error"]); sys.exit(1)
if not metrics and "data" in r:
    # the metrics service runs but has no metric for this tenant (its demo
    # step did not run): define two over the sample traffic
    print("no active metric for", tenant, "- creating two (events, active actors)")
    T = "FROM {{events}} WHERE {{time_range}} AND {{filters}} GROUP BY bucket{{group_by}}"
    for name, expr in (("events", "count()"), ("active actors", "uniq(actor_id)")):
        c = call("metrics", "create", {"name": f"demo {name}", "unit": "count",
                                       "query": "SELECT {{bucket}} AS bucket{{dimensions}}, " + expr + " AS value " + T})
        if "error" in c: print("metric create failed:", c["error"]); sys.exit(1)
        metrics.append({"id": c["data"]["id"], "name": name, "dims": ["event_name"]})
if not metrics:
    print("no active metrics for", tenant, "- nothing to put on a dashboard"); sys.exit(1)

def named(prefix):
    return next((m for m in metrics if m["name"].startswith(prefix) and "rollup" not in m["name"]), None)
count_m, dau_m, rate_m = named("Events"), named("Daily active users"), named("Payment success rate")
def dim(m, i=0): return m["dims"][i:i+1]
if count_m and dau_m and rate_m:
    # the metrics step's metrics: a widget for what each one means. A sum of
    # days suits a count (the big number), not distinct users or a ratio;
    # shares suit a count split by type, not a rate split by its own terms.
    print("widgets: events (big number, share by type), daily active users (line, table), payment success rate (bar)")
    widgets = [
        {"id": "trend", "type": "line", "title": "Daily active users", "metricId": dau_m["id"],
         "timeRange": {"last": "7d"}, "position": {"x": 0, "y": 0, "w": 8, "h": 4}},
        {"id": "total", "type": "bignumber", "title": "Events, last 7 days", "metricId": count_m["id"],
         "position": {"x": 8, "y": 0, "w": 4, "h": 4}},
        {"id": "split", "type": "bar", "title": "Payment success rate per day", "metricId": rate_m["id"],
         "position": {"x": 0, "y": 4, "w": 6, "h": 4}},
        {"id": "share", "type": "pie", "title": "Events by type", "metricId": count_m["id"],
         "dimensions": ["event_name"], "position": {"x": 6, "y": 4, "w": 6, "h": 4}},
        {"id": "rows", "type": "table", "title": "Daily active users per day", "metricId": dau_m["id"],
         "pageSize": 10, "position": {"x": 0, "y": 8, "w": 12, "h": 4}},
        {"id": "about", "type": "text", "body": "# Sample dashboard\nBuilt by deploy/local/demo.d/40-dashboards.sh."},
    ]
else:
    print("metrics used:", ", ".join(f"{m['name']} ({m['id']})" for m in metrics[:3]))
    m0 = metrics[0]; m1 = metrics[1 % len(metrics)]
    widgets = [
        {"id": "trend", "type": "line", "title": f"{m0['name']} per day", "metricId": m0["id"], "dimensions": dim(m0),
         "timeRange": {"last": "7d"}, "position": {"x": 0, "y": 0, "w": 8, "h": 4}},
        {"id": "total", "type": "bignumber", "title": f"{m0['name']}, last 7 days", "metricId": m0["id"],
         "position": {"x": 8, "y": 0, "w": 4, "h": 4}},
        {"id": "split", "type": "bar", "title": f"{m1['name']} per day", "metricId": m1["id"], "dimensions": dim(m1),
         "position": {"x": 0, "y": 4, "w": 6, "h": 4}},
        {"id": "share", "type": "pie", "title": f"{m1['name']} share", "metricId": m1["id"],
         "dimensions": dim(m1) or dim(m0), "position": {"x": 6, "y": 4, "w": 6, "h": 4}},
        {"id": "rows", "type": "table", "title": f"{m0['name']} table", "metricId": m0["id"], "dimensions": dim(m0),
         "pageSize": 10, "position": {"x": 0, "y": 8, "w": 12, "h": 4}},
        {"id": "about", "type": "text", "body": "# Sample dashboard\nBuilt by deploy/local/demo.d/40-dashboards.sh."},
    ]
    if not widgets[3]["dimensions"]: widgets[3]["type"] = "bar"
def create():
    return call("dashboards", "create", {"name": "Sample dashboard", "widgets": widgets,
                                         "accessControl": {"allowedRoles": ["analyst"]}})
r = create()
if "error" in r and r["error"]["code"] == "invalid_argument" and \
        r["error"].get("details", {}).get("field", "").endswith(".dimensions"):
    print("a metric cannot be broken down:", r["error"]["message"], "- using no dimensions")
    for w in widgets:
        if "dimensions" in w: w["dimensions"] = []
        if w["type"] == "pie": w["type"] = "bar"
    r = create()
if "error" in r: print("create failed:", r["error"]); sys.exit(1)
dash = r["data"]; print(f"dashboard {dash['id']} created, version {dash['version']}, {len(dash['widgets'])} widgets")
t0 = time.time(); r = call("dashboards", "render", {"id": dash["id"]}); ms = (time.time() - t0) * 1000
if "error" in r: print("render failed:", r["error"]); sys.exit(1)
print(f"rendered in {ms:.0f} ms:")
for w in r["data"]["widgets"]:
    d = w.get("data")
    if "error" in w: s = "error " + w["error"]["code"] + ": " + w["error"]["message"]
    elif w["type"] in ("line", "bar"): s = f"{len(d['buckets'])} buckets x {len(d['series'])} series"
    elif w["type"] == "pie": s = ", ".join(f"{x['name'] or '(none)'} {x['share']*100:.0f}%" for x in d["slices"][:4]) or "no data"
    elif w["type"] == "bignumber": s = f"value {d['value']:g}, previous {d['previous']:g}, change " + (f"{d['changePct']}%" if d["changePct"] is not None else "n/a (previous is 0)")
    elif w["type"] == "table": s = f"{d['totalRows']} rows, page {d['page']} of size {d['pageSize']}"
    elif w["type"] == "text": s = d["body"].splitlines()[0]
    else: s = json.dumps(d)[:80]
    print(f"  {w['id']:6} {w['type']:9} {s}")
t0 = time.time(); r = call("dashboards", "render", {"id": dash["id"]}); ms = (time.time() - t0) * 1000
print(f"second render: cached={r['data']['cached']} in {ms:.1f} ms")
for w in widgets:
    if w["type"] not in ("line", "bar", "pie", "bignumber"): continue
    r = call("dashboards", "render-widget", {"id": dash["id"], "widgetId": w["id"], "format": "png",
                                             "width": 800, "height": 400})
    if "error" in r or "image" not in r["data"]:
        print(f"  {w['id']}: no picture:", r.get("error") or r["data"].get("error")); continue
    path = os.path.join(out, f"{w['id']}-{w['type']}.png")
    open(path, "wb").write(base64.b64decode(r["data"]["image"]["base64"]))
    print(f"  wrote {path} ({r['data']['image']['bytes']} bytes, 800x400)")
PY
echo "widget pictures: $OUT (open the .png files)"
