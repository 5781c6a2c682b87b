#!/usr/bin/env bash
# Static checks of the deployment artefacts (there is no Docker engine and no
# cluster here): the Kubernetes manifests under deploy/k8s and the Dockerfile.
#
#   deploy/validate.sh [--k8s DIR] [--dockerfile FILE]
#
# Kubernetes: every file parses as YAML; the kustomization lists every
# manifest and its files exist; ConfigMap/Secret keys come from the
# generators' env files (secrets.env, or secrets.env.example when the real one
# is absent); each of the seven services has a Deployment with liveness
# (/healthz) and readiness (/readyz) probes on a declared port, requests and
# limits (requests <= limits), a non-root, read-only, capability-free
# securityContext, a termination grace period longer than its preStop hook,
# env taken only from keys that exist, the shared ANALYTICS_* names set, the
# HTTP address on the probed port and trusted-headers mode off; a Service that
# selects its pods on that port; a PodDisruptionBudget that leaves a pod to
# evict. Images are tagged (not latest), named analytics-<service>, listed in
# the kustomization's images.
# Dockerfile: base images tagged and not latest, one runtime stage per
# service with a numeric non-root USER and the matching binary, EXPOSE equal
# to the port of ANALYTICS_HTTP_ADDR and of the manifests, apt lists cleaned,
# no ADD of URLs, a .dockerignore that keeps .git and build/ out.
#
# Prints every problem found and exits 1 when there is one, else 0.
# Needs python3 with PyYAML (Debian: python3-yaml; stack.sh install has it).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
K8S="$HERE/k8s"
DOCKERFILE="$HERE/docker/Dockerfile"
while [ $# -gt 0 ]; do
    case "$1" in
    --k8s) K8S=${2:?}; shift 2 ;;
    --dockerfile) DOCKERFILE=${2:?}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "usage: $0 [--k8s DIR] [--dockerfile FILE]" >&2; exit 2 ;;
    esac
done
python3 -c 'import yaml' 2>/dev/null || {
    echo "validate: python3-yaml is missing (apt-get install python3-yaml)" >&2
    exit 2
}

exec python3 - "$K8S" "$DOCKERFILE" <<'PY'
import os
import re
import sys

import yaml

K8S, DOCKERFILE = sys.argv[1], sys.argv[2]
SERVICES = ["ingest", "metrics", "dashboards", "reports", "exports", "cohorts", "alerts"]
# Names every service shares (DESIGN.md, Operability).
SHARED_ENV = ["ANALYTICS_NATS_URL", "ANALYTICS_CLICKHOUSE_URL", "ANALYTICS_CLICKHOUSE_USER",
              "ANALYTICS_CLICKHOUSE_PASSWORD", "ANALYTICS_REDIS_URL", "ANALYTICS_HTTP_ADDR",
              "ANALYTICS_LOG_LEVEL"]
JWT_ENV = ["ANALYTICS_JWT_SECRET", "ANALYTICS_JWT_PUBLIC_KEY_FILE"]

problems = []


def bad(where, msg):
    problems.append(f"{where}: {msg}")


def rel(path):
    r = os.path.relpath(path)
    return path if r.startswith("..") else r


# ---------------------------------------------------------------- quantities
def cpu(q):
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def mem(q):
    q = str(q)
    for u, f in UNITS.items():
        if q.endswith(u):
            return float(q[: -len(u)]) * f
    return float(q)


# ---------------------------------------------------------------- kubernetes
def load_env_file(path):
    keys = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                bad(rel(path), f"line {n} is not KEY=VALUE")
                continue
            k, v = line.split("=", 1)
            keys[k.strip()] = v
    return keys


def check_k8s():
    kpath = os.path.join(K8S, "kustomization.yaml")
    if not os.path.exists(kpath):
        bad(rel(K8S), "no kustomization.yaml")
        return None
    docs = []  # (file, doc)
    yaml_files = sorted(f for f in os.listdir(K8S) if f.endswith((".yaml", ".yml")))
    for f in yaml_files:
        path = os.path.join(K8S, f)
        try:
            with open(path) as fh:
                for d in yaml.safe_load_all(fh):
                    if d is not None:
                        docs.append((f, d))
        except yaml.YAMLError as e:
            bad(f, f"does not parse as YAML: {str(e).splitlines()[0]}")
    kust = next((d for f, d in docs if f == "kustomization.yaml"), None)
    if not isinstance(kust, dict):
        bad("kustomization.yaml", "empty or not a mapping")
        return None
    resources = kust.get("resources") or []
    for r in resources:
        if not os.path.exists(os.path.join(K8S, r)):
            bad("kustomization.yaml", f"resource {r} does not exist")
    for f in yaml_files:
        if f != "kustomization.yaml" and f not in resources:
            bad("kustomization.yaml", f"{f} is not listed in resources")

    # ConfigMaps and Secrets: generators (env files) and plain manifests.
    data = {"ConfigMap": {}, "Secret": {}}
    for kind, gen in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for g in kust.get(gen) or []:
            keys = {}
            for e in g.get("envs") or []:
                p = os.path.join(K8S, e)
                if not os.path.exists(p) and os.path.exists(p + ".example"):
                    p += ".example"  # the real secrets file is not committed
                if not os.path.exists(p):
                    bad("kustomization.yaml", f"{gen} {g.get('name')}: env file {e} is missing")
                    continue
                keys.update(load_env_file(p))
            for lit in g.get("literals") or []:
                keys[lit.split("=", 1)[0]] = lit.split("=", 1)[1] if "=" in lit else ""
            data[kind][g.get("name")] = keys
    seen = set()
    for f, d in docs:
        if f == "kustomization.yaml":
            continue
        if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind") \
                or not (d.get("metadata") or {}).get("name"):
            bad(f, "a document lacks apiVersion, kind or metadata.name")
            continue
        key = (d["kind"], d["metadata"]["name"])
        if key in seen:
            bad(f, f"{key[0]} {key[1]} is defined twice")
        seen.add(key)
        if d["kind"] in data:
            vals = dict(d.get("data") or {})
            vals.update(d.get("stringData") or {})
            data[d["kind"]][d["metadata"]["name"]] = vals

    images = {i.get("name"): i for i in kust.get("images") or []}
    objs = [(f, d) for f, d in docs if f != "kustomization.yaml" and isinstance(d, dict)]
    deployments = {d["metadata"]["name"]: (f, d) for f, d in objs if d.get("kind") == "Deployment"}
    services = [(f, d) for f, d in objs if d.get("kind") == "Service"]
    pdbs = [(f, d) for f, d in objs if d.get("kind") == "PodDisruptionBudget"]
    jobs = [(f, d) for f, d in objs if d.get("kind") == "Job"]

    used_images = set()
    ports_seen = set()
    for svc in SERVICES:
        name = f"analytics-{svc}"
        if name not in deployments:
            bad(rel(K8S), f"no Deployment {name}")
            continue
        f, d = deployments[name]
        port = check_workload(f, d, svc, data, images, used_images, deployment=True)
        if port is not None:
            ports_seen.add(port)
        labels = ((d.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
        replicas = (d.get("spec") or {}).get("replicas", 1)
        cport = container_ports(d)
        # a Service selecting these pods on the HTTP port
        hits = [s for s in services if selects(s[1]["spec"].get("selector") or {}, labels)]
        if not hits:
            bad(f, f"no Service selects the pods of {name}")
        for sf, s in hits:
            for p in s["spec"].get("ports") or []:
                tp = p.get("targetPort", p.get("port"))
                if tp not in cport and tp not in cport.values():
                    bad(sf, f"Service {s['metadata']['name']} targets port {tp}, not a port of {name}")
        # a PodDisruptionBudget that still lets one pod go
        hits = [p for p in pdbs if selects(((p[1].get("spec") or {}).get("selector") or {}).get("matchLabels") or {}, labels)]
        if not hits:
            bad(f, f"no PodDisruptionBudget selects the pods of {name}")
        for pf, p in hits:
            ma = p["spec"].get("minAvailable")
            if isinstance(ma, int) and ma >= replicas:
                bad(pf, f"PDB {p['metadata']['name']} minAvailable {ma} >= replicas {replicas}: no pod could ever be evicted")
            if ma is None and p["spec"].get("maxUnavailable") in (None, 0, "0%"):
                bad(pf, f"PDB {p['metadata']['name']} allows no disruption")
    for name in deployments:
        if name.replace("analytics-", "", 1) not in SERVICES:
            bad(deployments[name][0], f"Deployment {name} is not one of the seven services")
    for f, j in jobs:
        check_workload(f, j, j["metadata"]["name"].replace("analytics-", "", 1), data, images,
                       used_images, deployment=False)
    for n in images:
        if n not in used_images:
            bad("kustomization.yaml", f"images lists {n}, which no manifest uses")
    return ports_seen


def selects(selector, labels):
    sel = selector.get("matchLabels", selector) if isinstance(selector, dict) else {}
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())


def container_ports(d):
    ports = {}
    for c in pod_spec(d).get("containers") or []:
        for p in c.get("ports") or []:
            ports[p.get("name", str(p.get("containerPort")))] = p.get("containerPort")
    return ports


def pod_spec(d):
    return ((d.get("spec") or {}).get("template") or {}).get("spec") or {}


def check_workload(f, d, svc, data, images, used_images, deployment):
    """Checks one Deployment or Job; returns the HTTP port (Deployments)."""
    kind_name = f"{d['kind']} {d['metadata']['name']}"
    spec = d.get("spec") or {}
    tmpl = spec.get("template") or {}
    labels = (tmpl.get("metadata") or {}).get("labels") or {}
    ps = tmpl.get("spec") or {}
    if deployment:
        ml = (spec.get("selector") or {}).get("matchLabels") or {}
        if not ml or not selects(ml, labels):
            bad(f, f"{kind_name}: selector.matchLabels does not match the pod labels")
    psc = ps.get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True:
        bad(f, f"{kind_name}: pod securityContext.runAsNonRoot is not true")
    if psc.get("runAsUser") == 0:
        bad(f, f"{kind_name}: pod runs as uid 0")
    grace = ps.get("terminationGracePeriodSeconds")
    if deployment and not isinstance(grace, int):
        bad(f, f"{kind_name}: no terminationGracePeriodSeconds (SIGTERM drain time)")
    volumes = {v.get("name") for v in ps.get("volumes") or []}
    containers = ps.get("containers") or []
    if not containers:
        bad(f, f"{kind_name}: no containers")
    http_port = None
    for c in containers:
        where = f"{kind_name} container {c.get('name')}"
        image = c.get("image", "")
        m = re.match(r"^(?:[^/]+/)*([^/:@]+)(?::([^@]+))?(?:@sha256:[0-9a-f]{64})?$", image)
        if not m:
            bad(f, f"{where}: image {image!r} is not a valid reference")
        else:
            iname, tag = m.group(1), m.group(2)
            if not tag and "@sha256:" not in image:
                bad(f, f"{where}: image {image} has no tag")
            if tag == "latest":
                bad(f, f"{where}: image {image} uses the latest tag")
            if iname != f"analytics-{svc}":
                bad(f, f"{where}: image {iname} should be analytics-{svc}")
            used_images.add(iname)
            if iname not in images:
                bad(f, f"{where}: image {iname} is not listed in the kustomization's images")
        # resources
        res = c.get("resources") or {}
        for part in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(part) or {}):
                    bad(f, f"{where}: no resources.{part}.{r}")
        try:
            rq, lm = res.get("requests") or {}, res.get("limits") or {}
            if "cpu" in rq and "cpu" in lm and cpu(rq["cpu"]) > cpu(lm["cpu"]):
                bad(f, f"{where}: cpu request above its limit")
            if "memory" in rq and "memory" in lm and mem(rq["memory"]) > mem(lm["memory"]):
                bad(f, f"{where}: memory request above its limit")
        except ValueError as e:
            bad(f, f"{where}: bad quantity ({e})")
        # security
        sc = c.get("securityContext") or {}
        if sc.get("readOnlyRootFilesystem") is not True:
            bad(f, f"{where}: readOnlyRootFilesystem is not true")
        if sc.get("allowPrivilegeEscalation") is not False:
            bad(f, f"{where}: allowPrivilegeEscalation is not false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            bad(f, f"{where}: capabilities do not drop ALL")
        if sc.get("privileged"):
            bad(f, f"{where}: privileged")
        if sc.get("runAsUser") == 0:
            bad(f, f"{where}: runs as uid 0")
        if sc.get("runAsNonRoot") is False:
            bad(f, f"{where}: runAsNonRoot is false")
        mounts = c.get("volumeMounts") or []
        for vm in mounts:
            if vm.get("name") not in volumes:
                bad(f, f"{where}: mounts volume {vm.get('name')} that the pod does not define")
        if sc.get("readOnlyRootFilesystem") and not any(vm.get("mountPath") == "/tmp" for vm in mounts):
            bad(f, f"{where}: read-only root without a writable /tmp volume")
        # env
        env = {}
        for e in c.get("env") or []:
            n = e.get("name")
            if n in env:
                bad(f, f"{where}: env {n} set twice")
            vf = e.get("valueFrom")
            if vf is None:
                env[n] = e.get("value")
                continue
            for refkind, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                ref = vf.get(refkind)
                if ref is None:
                    continue
                src = data[kind].get(ref.get("name"))
                if src is None:
                    bad(f, f"{where}: env {n} refers to {kind} {ref.get('name')}, which does not exist")
                elif ref.get("key") not in src:
                    bad(f, f"{where}: env {n} refers to key {ref.get('key')}, absent from {kind} {ref.get('name')}")
                else:
                    env[n] = src[ref.get("key")]
                if ref.get("optional"):
                    bad(f, f"{where}: env {n} is optional; a missing key must fail the rollout")
        for ef in c.get("envFrom") or []:
            for refkind, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                ref = ef.get(refkind)
                if ref is None:
                    continue
                src = data[kind].get(ref.get("name"))
                if src is None:
                    bad(f, f"{where}: envFrom {kind} {ref.get('name')} does not exist")
                else:
                    for k, v in src.items():
                        env.setdefault(k, v)
        if deployment:
            for n in SHARED_ENV:
                if n not in env:
                    bad(f, f"{where}: env {n} is not set")
            if not any(n in env for n in JWT_ENV):
                bad(f, f"{where}: neither ANALYTICS_JWT_SECRET nor ANALYTICS_JWT_PUBLIC_KEY_FILE is set")
            th = str(env.get("ANALYTICS_AUTH_TRUSTED_HEADERS", "false")).strip().lower()
            if th not in ("false", "0", "no", "off", ""):
                bad(f, f"{where}: trusted-headers mode is on ({th}); it must be off in the manifests")
            ports = {p.get("name"): p.get("containerPort") for p in c.get("ports") or []}
            addr = str(env.get("ANALYTICS_HTTP_ADDR") or "")
            m = re.match(r"^(.*):(\d+)$", addr)
            if not m:
                bad(f, f"{where}: ANALYTICS_HTTP_ADDR {addr!r} is not host:port")
            else:
                http_port = int(m.group(2))
                if m.group(1) in ("127.0.0.1", "localhost", "::1", "[::1]"):
                    bad(f, f"{where}: ANALYTICS_HTTP_ADDR listens on loopback; probes could not reach it")
                if http_port not in ports.values():
                    bad(f, f"{where}: ANALYTICS_HTTP_ADDR port {http_port} is not a container port")
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                p = c.get(probe)
                if not p:
                    bad(f, f"{where}: no {probe}")
                    continue
                hg = p.get("httpGet") or {}
                if hg.get("path") != path:
                    bad(f, f"{where}: {probe} should GET {path}, not {hg.get('path')}")
                pp = hg.get("port")
                num = ports.get(pp, pp)
                if num not in ports.values():
                    bad(f, f"{where}: {probe} port {pp} is not a container port")
                elif http_port is not None and num != http_port:
                    bad(f, f"{where}: {probe} port {num} is not the ANALYTICS_HTTP_ADDR port {http_port}")
            pre = ((c.get("lifecycle") or {}).get("preStop") or {})
            cmd = (pre.get("exec") or {}).get("command") or []
            pre_s = int(cmd[1]) if len(cmd) == 2 and cmd[0] == "sleep" and str(cmd[1]).isdigit() else 0
            pre_s = max(pre_s, int((pre.get("sleep") or {}).get("seconds") or 0))
            if isinstance(grace, int) and grace <= pre_s + 5:
                bad(f, f"{where}: terminationGracePeriodSeconds {grace} leaves no time to drain after the {pre_s} s preStop")
    return http_port


# ---------------------------------------------------------------- Dockerfile
def check_dockerfile(k8s_ports):
    where = rel(DOCKERFILE)
    if not os.path.exists(DOCKERFILE):
        bad(where, "missing")
        return
    with open(DOCKERFILE) as fh:
        text = fh.read()
    # join continuation lines, drop comments
    logical, cur = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (s.startswith("#") or not s):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        logical.append(cur + s)
        cur = ""
    args = {}
    stages = {}  # name -> list of (instr, rest)
    raw_from = {}  # name -> FROM argument before ARG substitution
    order = []
    stage = None
    for ln in logical:
        instr, _, rest = ln.partition(" ")
        instr = instr.upper()
        if instr == "ARG" and stage is None:
            k, _, v = rest.partition("=")
            args[k.strip()] = v.strip()
            continue
        if instr == "FROM":
            m = re.match(r"^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            if not m:
                bad(where, f"cannot read FROM {rest}")
                continue
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda x: args.get(x.group(1) or x.group(2), x.group(0)), m.group(1))
            stage = m.group(2) or f"#{len(order)}"
            stages[stage] = [("FROM", base)]
            raw_from[stage] = m.group(1)
            order.append(stage)
            if base in stages or base.startswith("$"):
                continue  # a previous stage, or chosen by a build arg
            if True:
                last = base.split("@")[0].split("/")[-1]
                tag = last.split(":", 1)[1] if ":" in last else ""
                if not tag and "@sha256:" not in base:
                    bad(where, f"stage {stage}: base image {base} has no tag")
                if tag == "latest":
                    bad(where, f"stage {stage}: base image {base} uses the latest tag")
            continue
        if stage is None:
            bad(where, f"{instr} before the first FROM")
            continue
        stages[stage].append((instr, rest))
        if instr == "ADD" and re.search(r"https?://", rest):
            bad(where, f"stage {stage}: ADD of a URL (use curl with a checksum)")
        if instr == "RUN" and "apt-get install" in rest:
            if "--no-install-recommends" not in rest:
                bad(where, f"stage {stage}: apt-get install without --no-install-recommends")
            if "rm -rf /var/lib/apt/lists" not in rest:
                bad(where, f"stage {stage}: apt lists not removed in the same RUN")

    def inherited(st, instr):
        """Last value of instr in stage st or the stages it is built FROM."""
        seen = set()
        while st in stages and st not in seen:
            seen.add(st)
            vals = [r for i, r in stages[st] if i == instr]
            if vals:
                return vals[-1]
            st = stages[st][0][1]
        return None

    def env_of(st):
        env, chain, seen = {}, [], set()
        while st in stages and st not in seen:
            seen.add(st)
            chain.append(st)
            st = stages[st][0][1]
        for s in reversed(chain):
            for i, r in stages[s]:
                if i == "ENV":
                    for k, v in re.findall(r"(\w+)=(\"[^\"]*\"|\S+)", r):
                        env[k] = v.strip('"')
        return env

    for svc in SERVICES + ["migrate"]:
        if svc not in stages:
            bad(where, f"no stage {svc}")
            continue
        user = inherited(svc, "USER")
        if not user:
            bad(where, f"stage {svc}: no USER (would run as root)")
        else:
            uid = user.split(":")[0]
            if not uid.isdigit():
                bad(where, f"stage {svc}: USER {user} is not numeric (runAsNonRoot cannot verify a name)")
            elif int(uid) == 0:
                bad(where, f"stage {svc}: USER is root")
        if not inherited(svc, "ENTRYPOINT") and not inherited(svc, "CMD"):
            bad(where, f"stage {svc}: no ENTRYPOINT or CMD")
        if svc == "migrate":
            continue
        copies = [r for i, r in stages[svc] if i == "COPY" and "--from=build" in r]
        if not any(re.search(rf"/out/bin/{svc}\s", r + " ") for r in copies):
            bad(where, f"stage {svc}: does not copy the {svc} binary from the build stage")
        for r in copies:
            for other in SERVICES:
                if other != svc and re.search(rf"/out/(bin|pkgs)/{other}\s", r + " "):
                    bad(where, f"stage {svc}: copies the files of {other}")
        expose = inherited(svc, "EXPOSE")
        addr = env_of(svc).get("ANALYTICS_HTTP_ADDR", "")
        m = re.match(r"^.*:(\d+)$", addr)
        if not m:
            bad(where, f"stage {svc}: ANALYTICS_HTTP_ADDR is not set to host:port")
        elif not expose or m.group(1) not in expose.replace("/tcp", "").split():
            bad(where, f"stage {svc}: EXPOSE {expose} does not match ANALYTICS_HTTP_ADDR {addr}")
        elif k8s_ports and int(m.group(1)) not in k8s_ports:
            bad(where, f"stage {svc}: port {m.group(1)} differs from the manifests' {sorted(k8s_ports)}")
    final = order[-1] if order else None
    if final and not raw_from[final].startswith("$"):
        bad(where, "the last stage should be chosen by the SERVICE build arg (FROM ${SERVICE})")
    if "SERVICE" not in args or args.get("SERVICE") not in SERVICES + ["migrate"]:
        bad(where, "ARG SERVICE must default to one of the services")
    ign = DOCKERFILE + ".dockerignore"
    if not os.path.exists(ign):
        bad(where, f"no {os.path.basename(ign)} next to it")
    else:
        with open(ign) as fh:
            lines = {l.strip().strip("/") for l in fh if l.strip() and not l.startswith("#")}
        for need in (".git", "build"):
            if need not in lines:
                bad(rel(ign), f"does not exclude {need}")
    return len(stages)


ports = check_k8s()
nstages = check_dockerfile(ports or set())
if problems:
    for p in problems:
        print(f"validate: {p}", file=sys.stderr)
    print(f"validate: {len(problems)} problem(s)", file=sys.stderr)
    sys.exit(1)
print(f"validate: ok: {len(SERVICES)} services (Deployment, Service, PodDisruptionBudget), "
      f"migrate Job, kustomization, Dockerfile with {nstages} stages")
PY
