#!/usr/bin/env bash
# 4. Real Triton, steady state: inference throughput and p50/p99 latency at concurrency 1 and 8,
# bare vs confined, in SHORT ALTERNATING BURSTS against two servers that run side by side.
#
# A server start-up per round (benches/triton.sh) mixes slow machine drift into the comparison;
# here both servers start once (bare: tritonserver with stockade's final argv, as uid 65534 via
# setpriv, no other confinement; confined: `stockade --profile triton`), both pinned to
# SERVER_CPU, and wrk (pinned to CLIENT_CPU, HTTP/1.1 keep-alive, POST /v2/models/add/infer,
# python backend) alternates BURST-second bursts between them, PAIRS pairs per concurrency, the
# order flipped every pair. Reported: medians per mode and the median of the per-pair ratios.
# Writes $RES/triton-bursts.md.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TDIR="${TRITON_DIR:-/opt/stockade/triton}"
[ -r "$TDIR/env.sh" ] || die "no Triton in $TDIR: run scripts/install-triton.sh"
# shellcheck disable=SC1091
. "$TDIR/env.sh"
command -v wrk >/dev/null || die "wrk missing (apt-get install wrk)"
PAIRS=$(q 2 12)
BURST=$(q 1 2)
out="$RES/triton-bursts.md"
tmp=$(mktemp -d "$WORK/triton.XXXXXX")
chmod 0755 "$tmp"
pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
repo() {  # a read-only (for uid 65534) copy of the `add` model
    mkdir -p "$tmp/$1/models"
    cp -r "$REPO/tests/fixtures/triton/models/add" "$tmp/$1/models/"
    chmod -R u+rwX,go+rX,go-w "$tmp/$1"
    echo "$tmp/$1/models"
}
wait_ready() {  # wait_ready PORT PID
    local i
    for i in $(seq 1200); do
        curl -fs -o /dev/null "http://127.0.0.1:$1/v2/health/ready" && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

bp=$(free_port); cp_=$(free_port)
brepo=$(repo bare); crepo=$(repo confined)
ops=(--backend-directory="$TRITON_BACKENDS")
# Bare: the argv stockade would exec (from its dry run), with a fresh secret.
secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
mapfile -t bargv < <(env -i PATH="$TRITON_PATH" "$STOCKADE" --profile triton --dry-run -- \
    "$TRITONSERVER" --model-repository="$brepo" "${ops[@]}" --http-port="$bp" \
    | sed -n 's/^argv  *//p' | tr ' ' '\n' | sed "s/<redacted>/$secret/")
[ "${#bargv[@]}" -gt 5 ] || die "no argv from stockade --dry-run"
taskset -c "$SERVER_CPU" setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
    --bounding-set=-all -- env -i PATH="$TRITON_PATH" HOME=/nonexistent "${bargv[@]}" \
    >"$tmp/bare.log" 2>&1 &
pids+=($!); bpid=$!
wait_ready "$bp" "$bpid" || { tail -20 "$tmp/bare.log" >&2; die "bare Triton not ready"; }
env -i PATH="$TRITON_PATH" STOCKADE_LOG=warn taskset -c "$SERVER_CPU" "$STOCKADE" --profile triton -- \
    "$TRITONSERVER" --model-repository="$crepo" "${ops[@]}" --http-port="$cp_" \
    >"$tmp/confined.log" 2>&1 &
pids+=($!); cpid=$!
wait_ready "$cp_" "$cpid" || { tail -20 "$tmp/confined.log" >&2; die "confined Triton not ready"; }

cat > "$tmp/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs":[{"name":"INPUT0","shape":[4],"datatype":"FP32","data":[1,2,3,4]},{"name":"INPUT1","shape":[4],"datatype":"FP32","data":[10,20,30,40]}],"outputs":[{"name":"OUTPUT0"}]}'
LUA
# One inference each, checked, before any timing.
for p in "$bp" "$cp_"; do
    curl -fs -H 'Content-Type: application/json' --data "$(sed -n "s/^wrk.body = '\(.*\)'$/\1/p" "$tmp/post.lua")" \
        "http://127.0.0.1:$p/v2/models/add/infer" | grep -q '\[11\.0,22\.0,33\.0,44\.0\]' \
        || die "wrong or no inference answer on port $p"
done

burst() {  # burst PORT CONC SECONDS -> "rps p50_ms p99_ms"
    taskset -c "$CLIENT_CPU" wrk -t1 -c"$2" -d"$3"s --latency -s "$tmp/post.lua" \
        "http://127.0.0.1:$1/v2/models/add/infer" > "$tmp/wrk.out" 2>&1 || die "wrk failed"
    ! grep -q 'Non-2xx\|Socket errors' "$tmp/wrk.out" || { cat "$tmp/wrk.out" >&2; die "errors under load on port $1"; }
    awk 'function ms(v) { if (v ~ /us$/) return substr(v, 1, length(v)-2) / 1000;
                         if (v ~ /ms$/) return substr(v, 1, length(v)-2) + 0;
                         if (v ~ /s$/) return substr(v, 1, length(v)-1) * 1000; return v }
         /Requests\/sec:/ {r=$2} $1 == "50%" {p50=ms($2)} $1 == "99%" {p99=ms($2)}
         END {printf "%s %.4f %.4f\n", r, p50, p99}' "$tmp/wrk.out"
}

: > "$tmp/res.txt"
for c in 1 8; do
    log "triton-bursts: concurrency $c, warm-up"
    burst "$bp" "$c" 2 >/dev/null; burst "$cp_" "$c" 2 >/dev/null
    for i in $(seq "$PAIRS"); do
        if [ $((i % 2)) = 1 ]; then order="bare confined"; else order="confined bare"; fi
        for m in $order; do
            if [ "$m" = bare ]; then port=$bp; else port=$cp_; fi
            echo "$c $i $m $(burst "$port" "$c" "$BURST")" >> "$tmp/res.txt"
        done
    done
    log "triton-bursts: concurrency $c done"
done
# Both servers must still be alive and serving: a crash mid-run would invalidate the numbers.
kill -0 "$bpid" && kill -0 "$cpid" || die "a server died during the run"

python3 - "$tmp/res.txt" "$PAIRS" "$BURST" > "$out" <<'PY'
import sys, statistics as st, collections
rows = [l.split() for l in open(sys.argv[1])]
pairs, burst = sys.argv[2], sys.argv[3]
d = collections.defaultdict(dict)
for c, i, m, rps, p50, p99 in rows:
    d[(c, i)][m] = (float(rps), float(p50), float(p99))
print("| concurrency | metric | bare (median) | confined (median) | confined / bare (median of pair ratios) | pair ratios min..max |")
print("|---:|---|---:|---:|---:|---:|")
for c in ("1", "8"):
    keys = sorted((k for k in d if k[0] == c), key=lambda k: int(k[1]))
    for j, name in enumerate(("throughput req/s", "p50 latency ms", "p99 latency ms")):
        b = [d[k]["bare"][j] for k in keys]; f = [d[k]["confined"][j] for k in keys]
        r = [x / y for x, y in zip(f, b)]
        fmt = "%.0f" if j == 0 else "%.3f"
        print(f"| {c} | {name} | {fmt % st.median(b)} | {fmt % st.median(f)} | **{st.median(r):.3f}** | {min(r):.3f}..{max(r):.3f} |")
print(f"\n{pairs} pairs of {burst}-second wrk bursts per concurrency, order flipped every pair, after a 2 s warm-up of each server.")
print("\nPer burst (concurrency, pair, mode, req/s, p50 ms, p99 ms):\n")
print("```")
for r in rows: print(" ".join(r))
print("```")
PY
{
    echo
    echo "Commands: bare \`taskset -c $SERVER_CPU setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all -- env -i PATH=… HOME=/nonexistent <argv printed by stockade --profile triton --dry-run>\`;"
    echo "confined \`taskset -c $SERVER_CPU stockade --profile triton -- tritonserver --model-repository=… --backend-directory=… --http-port=…\`;"
    echo "load \`taskset -c $CLIENT_CPU wrk -t1 -c{1,8} -d${BURST}s --latency -s post.lua http://127.0.0.1:PORT/v2/models/add/infer\` (post.lua: the \`add\` model's JSON request)."
} >> "$out"
cat "$out"
