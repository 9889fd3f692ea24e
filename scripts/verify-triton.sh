#!/usr/bin/env bash
# Smoke-test the installed Triton with the test fixtures, unconfined except for the uid drop:
# start tritonserver as uid 65534 (setpriv), check HTTP + gRPC inference of `add`, every op
# of `probe`, then SIGTERM and require exit 0. Usage: scripts/verify-triton.sh [TRITON_DIR]
# Needs root (setpriv --reuid). Prints "N passed, M failed".
set -euo pipefail
TDIR="${1:-/opt/stockade/triton}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FIX="$HERE/tests/fixtures/triton"
# shellcheck disable=SC1091
. "$TDIR/env.sh"
CLIENT=("$TRITON_PYTHON" "$FIX/client.py")

WORK=$(mktemp -d /tmp/stockade-triton-verify.XXXXXX)
chmod 0755 "$WORK"
cp -r "$FIX/models" "$WORK/models"
chown -R root:root "$WORK/models"
chmod -R u+rwX,go+rX,go-w "$WORK/models"
mkdir "$WORK/scratch" && chown 65534:65534 "$WORK/scratch"     # a place 65534 may write

read -r HP GP MP < <("$TRITON_PYTHON" - <<'PY'
import socket
ss = [socket.socket() for _ in range(3)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])
for s in ss: s.close()
PY
)
URL="http://127.0.0.1:$HP"
pass=0; fail=0; SPID=
cleanup() {
    if [ -n "$SPID" ] && kill -0 "$SPID" 2>/dev/null; then kill -KILL "$SPID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT
check() {  # check NAME EXPECTED_REGEX ACTUAL
    if [[ "$3" =~ $2 ]]; then pass=$((pass+1)); printf 'PASS %-28s %s\n' "$1" "$3"
    else fail=$((fail+1)); printf 'FAIL %-28s got %q, want /%s/\n' "$1" "$3" "$2"; fi
}

t0=$(date +%s.%N)
setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all \
    env -i PATH="$TRITON_PATH" HOME=/nonexistent \
    "$TRITONSERVER" --model-repository="$WORK/models" --backend-directory="$TRITON_BACKENDS" \
    --disable-auto-complete-config \
    --http-address=127.0.0.1 --grpc-address=127.0.0.1 --metrics-address=127.0.0.1 \
    --http-port="$HP" --grpc-port="$GP" --metrics-port="$MP" --allow-metrics=false \
    --model-control-mode=none >"$WORK/server.log" 2>&1 &
SPID=$!
if ready=$("${CLIENT[@]}" wait-ready "$URL" 120); then
    echo "time-to-ready: $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.3f", b-a}') s (client poll: ${ready}s)"
else
    cat "$WORK/server.log"; exit 1
fi

check http-infer '^OK' "$("${CLIENT[@]}" http-infer "$URL" add 2>&1)"
check grpc-infer '^OK' "$("${CLIENT[@]}" grpc-infer "127.0.0.1:$GP" add 2>&1)"
probe() { "${CLIENT[@]}" http-probe "$URL" "$1" "$2" 2>&1; }
S="$WORK/scratch"
check uid              '^uid=65534 gid=65534 groups= nnp=0 seccomp=0 capeff=0000000000000000' "$(probe uid '')"
check write-scratch    '^ok$'           "$(probe write "$S/f")"
check write-etc        '^errno=EACCES$' "$(probe write /etc/stockade-probe)"
check write-repo       '^errno=EACCES$' "$(probe write "$WORK/models/add/x")"
check read-passwd      '^ok$'           "$(probe read /etc/passwd)"
check read-shadow      '^errno=EACCES$' "$(probe read /etc/shadow)"
check mkdir-scratch    '^ok$'           "$(probe mkdir "$S/d")"
check mkdir-root       '^errno=EACCES$' "$(probe mkdir /root/stockade-probe)"
check rename-scratch   '^ok$'           "$(probe rename "$S/f:$S/g")"
check rename-etc       '^errno=EACCES$' "$(probe rename /etc/hostname:/etc/hostname2)"
check unlink-scratch   '^ok$'           "$(probe unlink "$S/g")"
check unlink-etc       '^errno=EACCES$' "$(probe unlink /etc/hostname)"
check exec-true        '^ok$'           "$(probe exec /bin/true)"
check exec-missing     '^errno=ENOENT$' "$(probe exec /nonexistent)"
check exec-noexecbit   '^errno=EACCES$' "$(probe exec /etc/passwd)"
check copy_exec        '^ok$'           "$(probe copy_exec "/bin/true:$S/t")"
check copy_exec-etc    '^error=copy: errno=EACCES$' "$(probe copy_exec /bin/true:/etc/t)"
check bind-0           '^ok$'           "$(probe bind 0)"
check bind-http-port   '^errno=EADDRINUSE$' "$(probe bind "$HP")"
check connect-http     '^ok$'           "$(probe connect "127.0.0.1:$HP")"
check connect-closed   '^errno=ECONNREFUSED$' "$(probe connect 127.0.0.1:1)"
check kill-init        '^errno=EPERM$'  "$(probe kill 1:0)"
check kill-server      '^ok$'           "$(probe kill "$SPID:0")"
check killppid-0       '^errno=EPERM$'  "$(probe killppid 0)"
check ppid             "^stub=[0-9]+ server=$SPID launcher=$$\$" "$(probe ppid '')"
check unknown-op       '^error=unknown op' "$(probe nosuchop x)"
check grpc-probe       '^uid=65534 '    "$("${CLIENT[@]}" grpc-probe "127.0.0.1:$GP" uid '' 2>&1)"
check grpc-index       '^OK .*"add"'    "$("${CLIENT[@]}" grpc-admin "127.0.0.1:$GP" repository-index 2>&1 || true)"
check grpc-load-none   '^ERR UNAVAILABLE' "$("${CLIENT[@]}" grpc-admin "127.0.0.1:$GP" load --value add 2>&1 || true)"
check http-health      '^200 '          "$("${CLIENT[@]}" http "$URL" GET /v2/health/ready 2>&1)"
check http-load-none   '^503 '          "$("${CLIENT[@]}" http "$URL" POST /v2/repository/models/add/load --body '{}' 2>&1)"

t1=$(date +%s.%N)
kill -TERM "$SPID"
rc=0; wait "$SPID" || rc=$?
SPID=
echo "shutdown: $(awk -v a="$t1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.3f", b-a}') s"
check exit-code '^0$' "$rc"
leaks=$(ls -d /tmp/python_env_* /dev/shm/triton_python_backend_shm_region_* 2>/dev/null || true)
check no-leaks '^$' "$leaks"
if [ "$fail" != 0 ] || [ -n "${VERIFY_SHOW_LOG:-}" ]; then echo "--- server log"; cat "$WORK/server.log"; fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
