#!/usr/bin/env bash
# Time-to-ready and HTTP inference throughput/latency: Triton under `stockade --profile triton`
# next to bare tritonserver (same final argv, as uid 65534 via setpriv), same machine, one run.
#
#   sudo benches/triton.sh                 # ROUNDS=3 N1=2000 N8=4000 by default
#
# Alternates bare / confined ROUNDS times. The server (and stockade) are pinned to CPU
# $SERVER_CPU, the load generator (python threads, keep-alive HTTP/1.1, model `add`) to
# $CLIENT_CPU. Prints every run, then medians and confined/bare ratios.
#
# Environment: TRITON_DIR (default /opt/stockade/triton), STOCKADE (default
# ${CARGO_TARGET_DIR:-target}/release/stockade, built with `cargo build --release` if missing),
# ROUNDS, N1 (requests at concurrency 1), N8 (requests at concurrency 8), WARMUP,
# SERVER_CPU (default 0), CLIENT_CPU (default 1).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRITON_DIR=${TRITON_DIR:-/opt/stockade/triton}
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
[ -r "$TRITON_DIR/env.sh" ] || { echo "no Triton in $TRITON_DIR: run scripts/install-triton.sh" >&2; exit 1; }
# shellcheck disable=SC1091
. "$TRITON_DIR/env.sh"
if [ -z "${STOCKADE:-}" ]; then
  STOCKADE=${CARGO_TARGET_DIR:-$ROOT/target}/release/stockade
  [ -x "$STOCKADE" ] || (cd "$ROOT" && cargo build --release --bin stockade)
fi
[ "$(nproc)" -ge 2 ] || echo "warning: fewer than 2 CPUs; server and client share a core" >&2

export STOCKADE ROOT TRITONSERVER TRITON_BACKENDS TRITON_PATH
export ROUNDS=${ROUNDS:-3} N1=${N1:-2000} N8=${N8:-4000} WARMUP=${WARMUP:-200}
export SERVER_CPU=${SERVER_CPU:-0} CLIENT_CPU=${CLIENT_CPU:-1}
exec "$TRITON_PYTHON" - <<'PY'
import http.client, json, os, secrets, shutil, signal, socket, statistics, subprocess, sys
import tempfile, threading, time

E = os.environ
STOCKADE, ROOT = E["STOCKADE"], E["ROOT"]
SERVER, BACKENDS, TPATH = E["TRITONSERVER"], E["TRITON_BACKENDS"], E["TRITON_PATH"]
ROUNDS, N1, N8, WARMUP = int(E["ROUNDS"]), int(E["N1"]), int(E["N8"]), int(E["WARMUP"])
SCPU, CCPU = E["SERVER_CPU"], int(E["CLIENT_CPU"])
os.sched_setaffinity(0, {CCPU})

BODY = json.dumps({"inputs": [
    {"name": "INPUT0", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]},
    {"name": "INPUT1", "shape": [4], "datatype": "FP32", "data": [10, 20, 30, 40]}],
    "outputs": [{"name": "OUTPUT0"}]}).encode()
HDRS = {"Content-Type": "application/json"}


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def ready(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/v2/health/ready"); ok = c.getresponse().status == 200; c.close()
        return ok
    except OSError:
        return False


def load(port, n, conc):
    """n requests split over conc keep-alive connections; returns (req/s, p50 ms, p99 ms)."""
    lat, lock, left = [], threading.Lock(), [n]
    errors = []

    def worker():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        while True:
            with lock:
                if left[0] == 0:
                    break
                left[0] -= 1
            t = time.perf_counter()
            c.request("POST", "/v2/models/add/infer", BODY, HDRS)
            r = c.getresponse(); data = r.read()
            mine.append(time.perf_counter() - t)
            if r.status != 200 or b"11.0" not in data:
                errors.append((r.status, data[:200]))
        c.close()
        with lock:
            lat.extend(mine)

    th = [threading.Thread(target=worker) for _ in range(conc)]
    t0 = time.perf_counter()
    for t in th: t.start()
    for t in th: t.join()
    wall = time.perf_counter() - t0
    if errors:
        sys.exit("inference errors: %r" % errors[:3])
    lat.sort()
    return n / wall, lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3


def repo():
    d = tempfile.mkdtemp(prefix="stockade-bench-", dir="/tmp")
    os.chmod(d, 0o755)
    shutil.copytree(os.path.join(ROOT, "tests/fixtures/triton/models/add"), d + "/models/add")
    for dp, dns, fns in os.walk(d):
        for x in dns: os.chmod(os.path.join(dp, x), 0o755)
        for x in fns: os.chmod(os.path.join(dp, x), 0o644)
    os.chmod(d + "/models", 0o755)
    return d


def operator_args(d, hp, gp):
    return [SERVER, "--model-repository=%s/models" % d, "--backend-directory=" + BACKENDS,
            "--http-port=%d" % hp, "--allow-grpc=true", "--grpc-port=%d" % gp]


def final_argv(d, hp, gp):
    """The argv stockade would run (dry run), secrets replaced by a fresh one for bare runs."""
    out = subprocess.run([STOCKADE, "--profile", "triton", "--dry-run", "--"] + operator_args(d, hp, gp),
                         env={"PATH": TPATH}, capture_output=True, text=True, timeout=30)
    if out.returncode != 0:
        sys.exit("dry run failed: " + out.stderr)
    line = next(l for l in out.stdout.splitlines() if l.startswith("argv "))
    sec = secrets.token_hex(32)
    return [a.replace("<redacted>", sec) for a in line.split()[1:]]


def run(mode):
    d, hp, gp = repo(), free_port(), free_port()
    if mode == "bare":
        cmd = ["taskset", "-c", SCPU, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
               "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "env", "-i",
               "PATH=" + TPATH, "HOME=/nonexistent"] + final_argv(d, hp, gp)
    else:
        cmd = ["taskset", "-c", SCPU, STOCKADE, "--profile", "triton", "--"] + operator_args(d, hp, gp)
    log = open(d + ".log", "w")
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={"PATH": TPATH})
    try:
        while not ready(hp):
            if p.poll() is not None:
                sys.exit("%s server exited %s; see %s.log" % (mode, p.returncode, d))
            if time.perf_counter() - t0 > 60:
                sys.exit("%s server not ready after 60 s" % mode)
            time.sleep(0.005)
        ttr = time.perf_counter() - t0
        load(hp, WARMUP, 1)
        r1 = load(hp, N1, 1)
        r8 = load(hp, N8, 8)
        t1 = time.perf_counter()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=70)
        stop = time.perf_counter() - t1
    finally:
        if p.poll() is None:
            p.kill(); p.wait()
        log.close()
    shutil.rmtree(d, ignore_errors=True)
    os.unlink(d + ".log")
    return {"ttr": ttr, "rps1": r1[0], "p50_1": r1[1], "p99_1": r1[2],
            "rps8": r8[0], "p50_8": r8[1], "p99_8": r8[2], "stop": stop, "rc": rc}


print("stockade: %s\nserver CPU %s, client CPU %d; %d rounds; N1=%d N8=%d warmup=%d"
      % (STOCKADE, SCPU, CCPU, ROUNDS, N1, N8, WARMUP))
cols = ["ttr", "rps1", "p50_1", "p99_1", "rps8", "p50_8", "p99_8", "stop"]
hdr = "%-9s %-5s" % ("mode", "round") + "".join("%10s" % c for c in cols) + "  rc"
print(hdr)
res = {"bare": [], "confined": []}
for i in range(ROUNDS):
    for mode in ("bare", "confined") if i % 2 == 0 else ("confined", "bare"):
        r = run(mode)
        res[mode].append(r)
        print("%-9s %-5d" % (mode, i + 1) + "".join("%10.3f" % r[c] for c in cols) + "  %d" % r["rc"],
              flush=True)
print("\nmedians (ttr/stop in s, rps in req/s, latencies in ms)")
print("%-9s" % "" + "".join("%10s" % c for c in cols))
med = {m: {c: statistics.median(x[c] for x in res[m]) for c in cols} for m in res}
for m in ("bare", "confined"):
    print("%-9s" % m + "".join("%10.3f" % med[m][c] for c in cols))
print("%-9s" % "ratio" + "".join("%10.3f" % (med["confined"][c] / med["bare"][c]) for c in cols))
print("(ratio = confined / bare: >1 is slower for ttr/latency/stop, <1 is slower for rps)")
bad = [(m, x["rc"]) for m in res for x in res[m] if x["rc"] != 0]
sys.exit(1 if bad else 0)
PY
