#!/usr/bin/env bash
# What `stockade learn` costs on the real Triton, next to a normal confined start, in one run:
# time to ready (start → /v2/health/ready answers 200) and inference latency (median and p90 of
# REQUESTS sequential HTTP requests to the demo model `add`), ROUNDS alternating rounds each.
#
#   sudo benches/learn-overhead.sh            # ROUNDS=3 REQUESTS=100
#
# Needs Triton (scripts/install-triton.sh), curl, and a release build (cargo build --release).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=${ROUNDS:-3}
REQUESTS=${REQUESTS:-100}
STOCKADE=${STOCKADE:-${CARGO_TARGET_DIR:-$ROOT/target}/release/stockade}
. /opt/stockade/triton/env.sh
[ -x "$STOCKADE" ] || { echo "no $STOCKADE: cargo build --release" >&2; exit 1; }

WORK=$(mktemp -d /var/tmp/stockade-learn-bench.XXXXXX)
chmod 0755 "$WORK"
trap 'rm -rf "$WORK"' EXIT
mkdir -m 0755 "$WORK/models"
cp -r "$ROOT/tests/fixtures/triton/models/add" "$WORK/models/"
chmod -R u=rwX,go=rX "$WORK/models"
BODY='{"inputs":[{"name":"INPUT0","shape":[4],"datatype":"FP32","data":[1,2,3,4]},{"name":"INPUT1","shape":[4],"datatype":"FP32","data":[10,20,30,40]}]}'
free_port() { "$TRITON_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# one MODE → "ready_s p50_ms p90_ms"
one() {
  local mode=$1 http grpc pid t0 ready="" i
  http=$(free_port); grpc=$(free_port)
  local cmd=("$TRITONSERVER" "--model-repository=$WORK/models" "--backend-directory=$TRITON_BACKENDS"
             "--http-port=$http" "--grpc-port=$grpc")
  t0=$(date +%s.%N)
  if [ "$mode" = learn ]; then
    (cd / && exec env -i PATH="$TRITON_PATH" "$STOCKADE" learn --profile triton -o "$WORK/learned.toml" -- "${cmd[@]}" >"$WORK/$mode.log" 2>&1) &
  else
    (cd / && exec env -i PATH="$TRITON_PATH" "$STOCKADE" --profile triton -- "${cmd[@]}" >"$WORK/$mode.log" 2>&1) &
  fi
  pid=$!
  for i in $(seq 1 3000); do
    if curl -sf -o /dev/null "http://127.0.0.1:$http/v2/health/ready"; then ready=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'); break; fi
    sleep 0.02
  done
  [ -n "$ready" ] || { echo "$mode: not ready" >&2; kill -TERM "$pid"; wait "$pid" || true; return 1; }
  for i in $(seq 1 "$REQUESTS"); do
    curl -sf -o /dev/null -w '%{time_total}\n' -H 'Content-Type: application/json' \
      -d "$BODY" "http://127.0.0.1:$http/v2/models/add/infer"
  done | sort -n | awk -v r="$ready" '{a[NR]=$1} END {printf "%s %.2f %.2f\n", r, a[int(NR*0.5)]*1000, a[int(NR*0.9)]*1000}'
  kill -TERM "$pid"; wait "$pid" || true
}

printf '%-8s %-6s %-10s %-10s %-10s\n' mode round ready_s p50_ms p90_ms
for r in $(seq 1 "$ROUNDS"); do
  for mode in normal learn; do
    read -r ready p50 p90 < <(one "$mode")
    printf '%-8s %-6s %-10s %-10s %-10s\n' "$mode" "$r" "$ready" "$p50" "$p90"
  done
done
echo "# $(date -u +%FT%TZ) $(uname -r) load $(cut -d' ' -f1-3 /proc/loadavg); ROUNDS=$ROUNDS REQUESTS=$REQUESTS; $STOCKADE"
