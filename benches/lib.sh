# Shared by the benches/*.sh scripts (sourced, not run). Paths, builds, bench profiles, helpers.
# Everything the suite writes goes below $WORK (default /var/tmp/stockade-bench, world-traversable
# so the confined server, uid 65534, can execute the bench programs; not /tmp, which the
# triton-grade profile replaces by a private tmpfs).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${STOCKADE_BENCH_WORK:-/var/tmp/stockade-bench}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$REPO/target}"
STOCKADE="${STOCKADE:-$CARGO_TARGET_DIR/release/stockade}"
STOCKADE_MUSL="${STOCKADE_MUSL:-$CARGO_TARGET_DIR/x86_64-unknown-linux-musl/release/stockade}"
BIN="$WORK/bin"
PROF="$WORK/profiles"
RES="${STOCKADE_BENCH_RESULTS:-$WORK/results}"
# Server side on one core, load generator / driver on the other (2-core machine).
SERVER_CPU="${SERVER_CPU:-1}"
CLIENT_CPU="${CLIENT_CPU:-0}"
# QUICK=1: smoke run (few iterations), for developing the scripts.
QUICK="${QUICK:-0}"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }
q() { if [ "$QUICK" = 1 ]; then echo "$1"; else echo "$2"; fi; }   # q QUICK_VALUE FULL_VALUE

[ "$(id -u)" = 0 ] || die "run as root (uid drop, namespaces, perf trace)"
mkdir -p "$WORK" "$BIN" "$PROF" "$RES"
chmod 0755 "$WORK" "$BIN" "$PROF"

# The C helpers (benches/src/*.c), rebuilt when the source is newer.
build_helpers() {
    local s b
    for s in "$REPO"/benches/src/*.c; do
        b="$BIN/$(basename "$s" .c)"
        if [ ! -x "$b" ] || [ "$s" -nt "$b" ]; then
            gcc -O2 -Wall -Wextra -o "$b" "$s" || die "cannot build $s"
        fi
        chmod 0755 "$b"
    done
}

# Bench profiles, derived from the built-ins so they follow src/ changes:
#   triton-grade.toml   the triton profile's confinement sections ([identity] [capabilities]
#                       [landlock] [seccomp] [rlimits] [env] [mounts] [supervise]), [triton]
#                       tables dropped, server.kind = "generic", no readiness probe ([supervise.ready]
#                       reads Triton's flags; /bin/true and sleep serve no HTTP); the bench programs' directory
#                       added to read_exec.
#   *-fd3.toml          the same with pass_fds = [3] (the supervisor benches' report pipe)
#   *-nopidns.toml      the same with [supervise] pid_namespace = "never"
#   triton-grade-nomounts-nopidns.toml   no [mounts] either (ids, caps, Landlock, seccomp only)
make_profiles() {
    "$STOCKADE" --print-profile triton \
        | awk '/^\[\[?triton/ || /^\[supervise\.ready\]/ {skip=1; next} /^\[/{skip=0} !skip' \
        | sed -e 's/^kind = "triton"/kind = "generic"/' -e '/^defer_stop_until_ready/d' \
              -e "s|^read_exec = \\[|read_exec = [\"$BIN\", |" \
        > "$PROF/triton-grade.toml"
    grep -q "^read_exec = \\[\"$BIN\"" "$PROF/triton-grade.toml" \
        || die "could not add $BIN to read_exec of the triton profile (format changed?)"
    grep -q '^kind = "generic"' "$PROF/triton-grade.toml" || die "server.kind not rewritten"
    "$STOCKADE" --print-profile minimal > "$PROF/minimal.toml"
    local p
    for p in triton-grade minimal; do
        sed 's/^\[supervise\]/[supervise]\npid_namespace = "never"/' "$PROF/$p.toml" \
            > "$PROF/$p-nopidns.toml"
    done
    for p in triton-grade triton-grade-nopidns; do
        sed 's/^\[supervise\]/[supervise]\npass_fds = [3]/' "$PROF/$p.toml" > "$PROF/$p-fd3.toml"
    done
    awk '/^\[mounts\]/{skip=1; next} /^\[/{skip=0} !skip' "$PROF/triton-grade-nopidns.toml" \
        > "$PROF/triton-grade-nomounts-nopidns.toml"
    chmod 0644 "$PROF"/*.toml
    for p in "$PROF"/*.toml; do
        # fd 3 open: the *-fd3 profiles pass it, and the plan refuses a pass_fds entry not open.
        "$STOCKADE" --profile "$p" --dry-run -- /bin/true >/dev/null 3</dev/null \
            || die "profile $p does not validate (stockade --dry-run)"
    done
}

# median of numbers on stdin
median() { sort -g | awk '{a[NR]=$1} END{ if (NR==0) {print "nan"; exit} if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }

# One line of system context for every results file.
context() {
    echo "- host: $(uname -srm), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'))"
    echo "- stockade: $("$STOCKADE" --version 2>/dev/null || echo '?') at $STOCKADE (git $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$REPO" diff --quiet -- src 2>/dev/null || echo ', src modified'))"
    echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# Start CMD (a sleep) in the background from /, wait for the confined sleep below it; prints
# "LAUNCHER_PID SERVER_PID".
start_sleep() {
    local pid s= c g i
    ( cd / && exec "$@" /bin/sleep 30 ) </dev/null >/dev/null 2>&1 &
    pid=$!
    for i in $(seq 100); do
        for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
            for g in "$c" $(cat /proc/"$c"/task/*/children 2>/dev/null); do
                case $(readlink "/proc/$g/exe" 2>/dev/null) in */sleep) s=$g ;; esac
            done
        done
        [ -n "$s" ] && grep -q '^Seccomp:[[:space:]]*2' "/proc/$s/status" 2>/dev/null && break
        s=; sleep 0.05
    done
    echo "$pid $s"
}
# End a launcher from start_sleep by pid: TERM, then KILL (it is not a child of this shell).
stop_pid() {
    local i
    kill -TERM "$1" 2>/dev/null || true
    for i in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# The seccomp program a stockade build installs for `--profile minimal`, written to FILE (raw
# struct sock_filter array): read with ptrace(PTRACE_SECCOMP_GET_FILTER) from a running confined
# server (`floor --dump-bpf`, benches/src/floor.c), so benches/src/floor.c installs the very same
# bytes. dump_bpf STOCKADE FILE [PROFILE]
dump_bpf() {
    local st out=$2 prof=${3:-minimal} pid s
    st=$(readlink -f "$1")
    read -r pid s < <(start_sleep "$st" --profile "$prof" --)
    [ -n "$s" ] || { stop_pid "$pid"; die "dump_bpf: no confined sleep under $st"; }
    "$BIN/floor" --dump-bpf "$s" "$out" 2>/dev/null || { stop_pid "$pid"; die "dump_bpf: ptrace of $s failed"; }
    stop_pid "$pid"
    chmod 0644 "$out"
}
