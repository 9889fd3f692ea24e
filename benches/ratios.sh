#!/usr/bin/env bash
# Issue 12's three ratios side by side, in ONE run, for one or two stockade builds ("before" and
# "after") next to catatonit, tini and dumb-init:
#   (a) launch overhead over bare /bin/true (hyperfine -N, all rows interleaved in every round),
#       as a ratio to catatonit's overhead; target: full confinement ≤ catatonit's (≤ 1.0x);
#       also as a ratio to the floor's (benches/src/floor.c: the same kernel steps as
#       `--profile minimal` done by a lean C program), with setpriv and bwrap as references;
#   (b) resident memory while the server (sleep) runs: Pss and Anonymous (smaps_rollup) summed
#       over ALL of stockade's processes (outer relay + PID-1 supervisor in the PID-namespace
#       mode), as ratios to tini and catatonit; targets 512 KiB Pss, 128 KiB anonymous;
#   (c) the static musl binary's size against the 1.2 MiB budget.
#
#   benches/ratios.sh          # this tree's release builds (glibc, and static musl if built)
#   BUILDS="before=/a/stockade before-musl=/a/musl/stockade after=/b/stockade" benches/ratios.sh
#
# Builds are not made here: `cargo build --release --bin stockade` and
# `cargo build --release --target x86_64-unknown-linux-musl --bin stockade` (the default BUILDS
# are "after=" and "after-musl=" those outputs). Each build gets the bench profiles derived from
# its own built-in `triton` profile (benches/lib.sh make_profiles). ROUNDS (default 7)
# interleaved hyperfine rounds of RUNS (default 60) runs per command; MEM_ROUNDS (default 5)
# interleaved memory readings per row. Medians everywhere; the load average is printed at start
# and end.
# Writes $RES/ratios.md.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-$(q 1 7)}
RUNS=${RUNS:-$(q 10 60)}
MEM_ROUNDS=${MEM_ROUNDS:-$(q 1 5)}
if [ -z "${BUILDS:-}" ]; then
    BUILDS="after=$STOCKADE"
    [ -x "$STOCKADE_MUSL" ] && BUILDS="$BUILDS after-musl=$STOCKADE_MUSL"
fi
BUDGET=$((1258291))   # 1.2 MiB, rounded down
out="$RES/ratios.md"
T=/bin/true
SLEEP=/bin/sleep
for c in hyperfine catatonit tini dumb-init python3 taskset setpriv bwrap; do
    command -v "$c" >/dev/null || die "$c is missing"
done
build_helpers

# Profiles per build, from that build's own built-ins (the schema may differ between builds).
builds=()
for b in $BUILDS; do
    name=${b%%=*}; bin=${b#*=}
    [ -x "$bin" ] || die "$name: $bin is not an executable"
    builds+=("$name|$bin")
    STOCKADE=$bin PROF="$WORK/profiles-$name"
    mkdir -p "$PROF"; chmod 0755 "$PROF"
    make_profiles
done
prof_of() { echo "$WORK/profiles-$1"; }

# The floor (benches/src/floor.c, benches/floor.sh): stockade minimal's kernel steps done by a
# lean C program, installing the seccomp program dumped from the first build's confined server.
first_bin=${builds[0]#*|}
dump_bpf "$first_bin" "$WORK/floor-minimal.bpf"
launch_rows=("bare|$T" "catatonit|catatonit -- $T" "tini|tini -- $T" "dumb-init|dumb-init $T"
    "setpriv (uid/gid 65534, no groups, no caps, bounding set empty, no_new_privs)|setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs -- $T"
    "bwrap (ro / , new pid/ipc/uts/net/user/cgroup ns, /dev /proc /tmp)|bwrap --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp --unshare-all --die-with-parent -- $T"
    "floor: same kernel steps as minimal, in C|$BIN/floor --bpf=$WORK/floor-minimal.bpf -- $T")
mem_rows=("catatonit|catatonit -- $SLEEP 60" "tini|tini -- $SLEEP 60" "dumb-init|dumb-init $SLEEP 60")
for b in "${builds[@]}"; do
    name=${b%%|*}; bin=${b#*|}; p=$(prof_of "$name")
    launch_rows+=("stockade $name, minimal|$bin --profile minimal -- $T"
                  "stockade $name, triton-grade|$bin --profile $p/triton-grade.toml -- $T")
    mem_rows+=("stockade $name, minimal|$bin --profile minimal -- $SLEEP 60"
               "stockade $name, triton-grade|$bin --profile $p/triton-grade.toml -- $SLEEP 60")
done

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
tmp=$(mktemp -d "$WORK/ratios.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --- (a) launch ----------------------------------------------------------------------------
cmds=()
for r in "${launch_rows[@]}"; do cmds+=("${r#*|}"); done
for i in $(seq "$ROUNDS"); do
    log "ratios: launch round $i/$ROUNDS (${#cmds[@]} commands x $RUNS runs)"
    hyperfine -N --warmup 5 --runs "$RUNS" --style none --export-json "$tmp/l$i.json" \
        "${cmds[@]}" >/dev/null 2>"$tmp/hyperfine.err" || { cat "$tmp/hyperfine.err" >&2; die "hyperfine failed"; }
done

# --- (b) memory ----------------------------------------------------------------------------
kib() { awk -v k="$2" '$1 == k":" {print $2; f=1} END{if(!f) print 0}' "$1"; }
# The launched pid and its descendants running the same binary (stockade's inner PID 1); the
# server (sleep) is not counted.
procs_of() {
    local pid=$1 exe c
    exe=$(readlink "/proc/$pid/exe")
    echo "$pid"
    for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        [ "$(readlink "/proc/$c/exe" 2>/dev/null)" = "$exe" ] && procs_of "$c"
    done
}
# Is the server (sleep) running below PID yet?
server_runs() {
    local c
    for c in $(cat /proc/"$1"/task/*/children 2>/dev/null); do
        case $(readlink "/proc/$c/exe" 2>/dev/null) in */sleep) return 0 ;; esac
        server_runs "$c" && return 0
    done
    return 1
}
sum_of() {
    local field=$1 t=0 p; shift
    for p in "$@"; do t=$((t + $(kib "/proc/$p/smaps_rollup" "$field"))); done
    echo "$t"
}
: > "$tmp/mem.txt"
for i in $(seq "$MEM_ROUNDS"); do
    log "ratios: memory round $i/$MEM_ROUNDS (${#mem_rows[@]} supervisors)"
    for r in "${mem_rows[@]}"; do
        label=${r%%|*}; cmd=${r#*|}
        # shellcheck disable=SC2086
        taskset -c "$SERVER_CPU" $cmd </dev/null >/dev/null 2>&1 &
        pid=$!
        # Read once the server runs (the supervisor's start-up is over): up to 3 s for the sleep.
        for _ in $(seq 60); do server_runs "$pid" && break; sleep 0.05; done
        # Steady state: stockade gives back its start-up pages 1 s after the server started
        # (RELEASE_AFTER); the PID-namespace relay then execs a fresh image, which gives back its
        # own a second later. Same wait for every row.
        sleep "${MEM_SETTLE:-3}"
        kill -0 "$pid" 2>/dev/null || die "$label exited early"
        mapfile -t ps < <(procs_of "$pid")
        printf '%s\t%s\t%s\t%s\n' "$label" "${#ps[@]}" "$(sum_of Pss "${ps[@]}")" \
            "$(sum_of Anonymous "${ps[@]}")" >> "$tmp/mem.txt"
        kill -TERM "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
done

# --- (c) sizes -----------------------------------------------------------------------------
: > "$tmp/size.txt"
for b in "${builds[@]}" "catatonit|$(command -v catatonit)" "tini-static|$(command -v tini-static || true)"; do
    name=${b%%|*}; bin=${b#*|}
    [ -x "$bin" ] || continue
    printf '%s\t%s\t%s\n' "$name" "$bin" "$(stat -L -c %s "$bin")" >> "$tmp/size.txt"
done

load_end=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$tmp" "$ROUNDS" "$RUNS" "$MEM_ROUNDS" "$BUDGET" "$load_start" "$load_end" \
    "${launch_rows[@]}" > "$out" <<'PY'
import json, os, sys, statistics as st, collections
tmp, rounds, runs, mrounds, budget, l0, l1 = sys.argv[1:8]
rounds, mrounds, budget = int(rounds), int(mrounds), int(budget)
rows = sys.argv[8:]
times = collections.defaultdict(list)
for i in range(1, rounds + 1):
    for r in json.load(open(f"{tmp}/l{i}.json"))["results"]:
        times[r["command"]] += r["times"]
labels = [r.split("|", 1)[0] for r in rows]
cmds = [r.split("|", 1)[1] for r in rows]
med = {c: st.median(times[c]) * 1e3 for c in cmds}
bare, cata = med[cmds[0]], med[cmds[1]]
floor = next(med[c] for l, c in zip(labels, cmds) if l.startswith("floor"))
print(f"Load average (1/5/15 min) at start {l0}, at end {l1}; {len(open('/proc/cpuinfo').read().split('processor')) - 1} CPUs.\n")
print("**(a) Launch overhead over bare `/bin/true`** (medians; target: stockade ≤ 1.0x catatonit's)\n")
print("| launcher | median ms | overhead ms | overhead / catatonit's | overhead / floor's |")
print("|---|---:|---:|---:|---:|")
for l, c in zip(labels, cmds):
    ov = med[c] - bare
    rel = f"{ov / (cata - bare):.2f}x" if cata - bare > 0.005 and c != cmds[0] else "—"
    relf = f"{ov / (floor - bare):.2f}x" if floor - bare > 0.005 and c != cmds[0] else "—"
    print(f"| {l} | {med[c]:.3f} | {ov:+.3f} | {rel} | {relf} |")
print(f"\n{len(times[cmds[0]])} runs per row: {rounds} rounds of `hyperfine -N --warmup 5 --runs {runs}` "
      "over all rows (interleaved), pooled.")
mem = collections.defaultdict(list)
nproc = {}
for line in open(f"{tmp}/mem.txt"):
    l, n, pss, anon = line.rstrip("\n").split("\t")
    mem[l].append((int(pss), int(anon))); nproc[l] = n
def m(l, k): return st.median(x[k] for x in mem[l])
print("\n**(b) Resident memory while the server runs** (smaps_rollup, all of the supervisor's "
      f"processes, medians of {mrounds} readings; targets Pss ≤ 512 KiB, anonymous ≤ 128 KiB)\n")
print("| supervisor | processes | Pss KiB | Anonymous KiB | Pss / tini | Pss / catatonit | Anon / tini | Anon / catatonit | Pss ≤ 512 | Anon ≤ 128 |")
print("|---|---:|---:|---:|---:|---:|---:|---:|:-:|:-:|")
for l in mem:
    p, a = m(l, 0), m(l, 1)
    ok = lambda v, t: "yes" if v <= t else "no"
    print(f"| {l} | {nproc[l]} | {p:.0f} | {a:.0f} | {p / m('tini', 0):.2f}x | {p / m('catatonit', 0):.2f}x "
          f"| {a / m('tini', 1):.2f}x | {a / m('catatonit', 1):.2f}x | {ok(p, 512)} | {ok(a, 128)} |")
print("\n**(c) Binary size** (budget for the static musl build: 1.2 MiB = "
      f"{budget:,} B)\n")
print("| binary | path | bytes | / budget |")
print("|---|---|---:|---:|")
for line in open(f"{tmp}/size.txt"):
    n, path, sz = line.rstrip("\n").split("\t")
    print(f"| {n} | `{path}` | {int(sz):,} | {int(sz) / budget:.2f}x |")
print("\nCommands:\n")
for l, c in zip(labels, cmds):
    print(f"- {l}: `{c}`")
print("- memory: the same with `/bin/sleep 60` instead of `/bin/true`, pinned with `taskset -c`, "
      f"read {os.environ.get('MEM_SETTLE', '3')} s after the sleep started")
PY
cat "$out"
