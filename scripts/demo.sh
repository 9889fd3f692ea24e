#!/usr/bin/env bash
# stockade demo: NVIDIA Triton confined by `stockade --profile triton`, end to end.
#
#   sudo scripts/demo.sh            # on a fresh Debian 12 machine (root; Rust >= 1.85 on PATH)
#
# Steps: install Triton (scripts/install-triton.sh, idempotent) -> cargo build --release ->
# copy the demo model (add) to a fresh 0755 directory -> print the plan (--dry-run) -> run
# Triton under stockade on free loopback ports -> wait for ready (bounded) -> one HTTP inference
# + the confined server's credentials from /proc -> SIGTERM -> stockade's exit code.
# Cleans up after itself; exits non-zero if any step fails.
#
# Environment: TRITON_DIR (default /opt/stockade/triton), CARGO_TARGET_DIR (default ./target),
# READY_TIMEOUT (seconds, default 60), STOP_TIMEOUT (seconds, default 70).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TRITON_DIR=${TRITON_DIR:-/opt/stockade/triton}
READY_TIMEOUT=${READY_TIMEOUT:-60}
STOP_TIMEOUT=${STOP_TIMEOUT:-70}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }'; }
die() { printf 'demo: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (stockade drops the server to uid 65534; Triton installs to $TRITON_DIR)"

WORK=""
SPID=""
cleanup() {
  local rc=$?
  if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then
    # Only the stockade we started; it stops the server (and its PID namespace) with it.
    kill -TERM "$SPID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SPID" 2>/dev/null || true
    wait "$SPID" 2>/dev/null || true
  fi
  if [ "$rc" != 0 ] && [ -n "$WORK" ] && [ -s "$WORK/stockade.log" ]; then
    echo "--- last lines of stockade's log ($WORK/stockade.log) ---" >&2
    tail -n 25 "$WORK/stockade.log" >&2 || true
  fi
  [ -n "$WORK" ] && rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "1/7 Triton (scripts/install-triton.sh $TRITON_DIR)"
"$ROOT/scripts/install-triton.sh" "$TRITON_DIR"
# shellcheck disable=SC1091
. "$TRITON_DIR/env.sh"
for v in TRITONSERVER TRITON_BACKENDS TRITON_PYTHON TRITON_PATH; do
  [ -n "${!v:-}" ] || die "$TRITON_DIR/env.sh does not set $v"
done

step "2/7 stockade (cargo build --release)"
command -v cargo >/dev/null || die "cargo not found: install Rust >= 1.85 (https://rustup.rs), then re-run"
(cd "$ROOT" && cargo build --release --bin stockade)
STOCKADE=${CARGO_TARGET_DIR:-$ROOT/target}/release/stockade
[ -x "$STOCKADE" ] || die "no binary at $STOCKADE"

step "3/7 demo model 'add' -> fresh 0755 repository"
WORK=$(mktemp -d /tmp/stockade-demo.XXXXXX)
chmod 0755 "$WORK"
mkdir -m 0755 "$WORK/models"
cp -r "$ROOT/tests/fixtures/triton/models/add" "$WORK/models/"
chmod -R u=rwX,go=rX "$WORK/models"   # root-owned, read-only for the server's uid
find "$WORK/models" | sed "s|^$WORK/||"

free_port() { "$TRITON_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP_PORT=$(free_port)
GRPC_PORT=$(free_port)
CMD=("$TRITONSERVER" "--model-repository=$WORK/models" "--backend-directory=$TRITON_BACKENDS"
     "--http-port=$HTTP_PORT" "--allow-grpc=true" "--grpc-port=$GRPC_PORT")
# The server gets only what the profile passes; PATH must lead to the venv (the python stub).
RUN_ENV=(env -i "PATH=$TRITON_PATH" "STOCKADE_LOG=info")

step "4/7 the plan: stockade --profile triton --dry-run -- tritonserver ..."
"${RUN_ENV[@]}" "$STOCKADE" --profile triton --dry-run -- "${CMD[@]}"

step "5/7 run Triton confined (HTTP 127.0.0.1:$HTTP_PORT, gRPC 127.0.0.1:$GRPC_PORT)"
"${RUN_ENV[@]}" "$STOCKADE" --profile triton -- "${CMD[@]}" >"$WORK/stockade.log" 2>&1 &
SPID=$!
echo "stockade pid $SPID (log: $WORK/stockade.log)"
ready=""
t0=$(date +%s.%N)
deadline=$(( $(date +%s) + READY_TIMEOUT ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  kill -0 "$SPID" 2>/dev/null || { wait "$SPID" && rc=0 || rc=$?; SPID=""; die "stockade exited ($rc) before Triton was ready"; }
  if "$TRITON_PYTHON" "$ROOT/tests/fixtures/triton/client.py" http "127.0.0.1:$HTTP_PORT" GET /v2/health/ready 2>/dev/null | grep -q '^200 '; then
    ready=1; break
  fi
  sleep 0.1
done
[ -n "$ready" ] || die "Triton not ready after ${READY_TIMEOUT}s"
echo "ready after $(elapsed "$t0") s"

# The server: the descendant of stockade running tritonserver (stockade may sit in between as
# PID 1 of a new PID namespace).
server_pid=""
todo=("$SPID")
while [ ${#todo[@]} -gt 0 ]; do
  p=${todo[0]}; todo=("${todo[@]:1}")
  for t in /proc/"$p"/task/*; do
    for c in $(cat "$t/children" 2>/dev/null); do
      todo+=("$c")
      [ "$(readlink -f "/proc/$c/exe" 2>/dev/null)" = "$(readlink -f "$TRITONSERVER")" ] && server_pid=$c
    done
  done
done
[ -n "$server_pid" ] || die "no tritonserver process below stockade $SPID"

step "6/7 inference over HTTP, and the confined server's credentials"
echo "POST /v2/models/add/infer  INPUT0=[1,2,3,4] INPUT1=[10,20,30,40]"
"$TRITON_PYTHON" "$ROOT/tests/fixtures/triton/client.py" http-infer "127.0.0.1:$HTTP_PORT" add \
  || die "inference failed"
echo "/proc/$server_pid/status (tritonserver):"
grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' "/proc/$server_pid/status" | sed 's/^/  /'
grep -qE '^Uid:\s+65534\s+65534\s+65534\s+65534$' "/proc/$server_pid/status" || die "server is not uid 65534"
grep -qE '^CapEff:\s+0+$' "/proc/$server_pid/status" || die "server has effective capabilities"
grep -qE '^NoNewPrivs:\s+1$' "/proc/$server_pid/status" || die "no_new_privs is not set"
grep -qE '^Seccomp:\s+2$' "/proc/$server_pid/status" || die "no seccomp filter"

step "7/7 SIGTERM to stockade"
t0=$(date +%s.%N)
kill -TERM "$SPID"
rc=""
deadline=$(( $(date +%s) + STOP_TIMEOUT ))
while [ "$(date +%s)" -lt "$deadline" ]; do
  if ! kill -0 "$SPID" 2>/dev/null; then
    wait "$SPID" && rc=0 || rc=$?
    break
  fi
  sleep 0.1
done
[ -n "$rc" ] || die "stockade still running ${STOP_TIMEOUT}s after SIGTERM"
SPID=""
echo "stockade exited with code $rc after $(elapsed "$t0") s"
[ "$rc" = 0 ] || die "stockade exit code $rc (expected 0: Triton drained)"
echo
echo "demo: OK"
