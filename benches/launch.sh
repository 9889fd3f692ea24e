#!/usr/bin/env bash
# 1. Launch overhead of /bin/true: bare, stockade (minimal and triton-grade profiles, with and
# without its PID namespace, glibc and static musl), tini, tini-static, dumb-init, catatonit,
# setpriv with a full privilege drop, bwrap. hyperfine -N (no shell), ROUNDS rounds of RUNS runs
# each, rounds interleaved so slow drifts of this noisy machine hit every row alike; the median
# is over all runs pooled. Then the seccomp filter install time (perf trace on stockade's child).
# Writes $RES/launch.md. Usage: benches/launch.sh (see benches/run.sh).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=$(q 1 5)
RUNS=$(q 20 100)
TRACES=$(q 5 40)
PSTAT=$(q 5 50)
out="$RES/launch.md"
T=/bin/true

rows=(
    "bare|$T"
    "catatonit|catatonit -- $T"
    "tini|tini -- $T"
    "tini-static|tini-static -- $T"
    "dumb-init|dumb-init $T"
    "setpriv (uid/gid 65534, no groups, no caps, bounding set empty, no_new_privs)|setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs -- $T"
    "bwrap (ro / , new pid/ipc/uts/net/user/cgroup ns, /dev /proc /tmp)|bwrap --ro-bind / / --dev /dev --proc /proc --tmpfs /tmp --unshare-all --die-with-parent -- $T"
    "stockade --dry-run, triton-grade (parse + plan only, no fork)|$STOCKADE --profile $PROF/triton-grade.toml --dry-run -- $T"
    "stockade minimal (PID namespace: auto = on)|$STOCKADE --profile minimal -- $T"
    "stockade minimal, pid_namespace = never|$STOCKADE --profile $PROF/minimal-nopidns.toml -- $T"
    "**stockade triton-grade** (full confinement + private mounts + PID namespace)|$STOCKADE --profile $PROF/triton-grade.toml -- $T"
    "stockade triton-grade, pid_namespace = never|$STOCKADE --profile $PROF/triton-grade-nopidns.toml -- $T"
    "stockade triton-grade, no [mounts], pid_namespace = never|$STOCKADE --profile $PROF/triton-grade-nomounts-nopidns.toml -- $T"
)
if [ -x "$STOCKADE_MUSL" ]; then
    rows+=(
        "stockade static musl, minimal|$STOCKADE_MUSL --profile minimal -- $T"
        "stockade static musl, triton-grade|$STOCKADE_MUSL --profile $PROF/triton-grade.toml -- $T"
    )
fi

cmds=()
for r in "${rows[@]}"; do cmds+=("${r#*|}"); done
tmp=$(mktemp -d "$WORK/launch.XXXXXX")
# The dry run prints the plan: hyperfine -N discards the output.
for i in $(seq "$ROUNDS"); do
    log "launch: round $i/$ROUNDS (${#cmds[@]} commands x $RUNS runs)"
    hyperfine -N --warmup 10 --runs "$RUNS" --style none --export-json "$tmp/r$i.json" \
        "${cmds[@]}" >/dev/null 2>"$tmp/hyperfine.err" || { cat "$tmp/hyperfine.err" >&2; die "hyperfine failed"; }
done

# Filter install: durations of the three seccomp(SECCOMP_SET_MODE_FILTER) calls in the child,
# and of the other irreversible steps, from perf trace (syscall entry/exit tracepoints).
log "launch: perf trace of $TRACES triton-grade launches"
for i in $(seq "$TRACES"); do
    perf trace -e seccomp,landlock_restrict_self,unshare -- \
        "$STOCKADE" --profile "$PROF/triton-grade.toml" -- $T 2>&1 >/dev/null \
        | awk '/ seccomp\(/ || / landlock_restrict_self\(/ || / unshare\(/ {
                 match($0, /\( *[0-9.]+ ms\)/); d=substr($0, RSTART+1, RLENGTH-5); gsub(/ /, "", d)
                 split($0, parts, "\\): "); split(parts[2], w, " "); name=w[2]; sub(/\(.*/, "", name)
                 if (d == "" || name !~ /^[a-z_0-9]+$/) { bad=1; next }
                 n[name]++; o = o name "#" n[name] " " d "\n" }
               / \[continued\]: / { bad=1 }
               END { if (!bad) printf "%s", o }' >> "$tmp/trace.txt"   # split records: skip launch
done

# Where the time goes: CPU time (task-clock, all processes of the launch), page faults and
# syscalls per launch, from perf stat and strace -c (one row each).
log "launch: perf stat / strace -c per row"
: > "$tmp/cost.txt"
for c in "${cmds[@]}"; do
    # shellcheck disable=SC2086
    perf stat -x, -e task-clock,page-faults -r "$PSTAT" -o "$tmp/ps.txt" -- $c >/dev/null 2>&1 || true
    tc=$(awk -F, '$3 ~ /^task-clock/ {print $1}' "$tmp/ps.txt")
    pf=$(awk -F, '$3 ~ /^page-faults/ {print $1}' "$tmp/ps.txt")
    # shellcheck disable=SC2086
    strace -f -c -q -o "$tmp/sc.txt" -- $c >/dev/null 2>&1 || true
    sc=$(awk '$NF == "total" {print $(NF-1) ~ /^[0-9]+$/ && $(NF-2) ~ /^[0-9]+$/ ? $(NF-2) : $(NF-1)}' "$tmp/sc.txt")
    printf '%s\t%s\t%s\t%s\n' "$c" "${tc:-nan}" "${pf:-nan}" "${sc:-nan}" >> "$tmp/cost.txt"
done

python3 - "$tmp" "$ROUNDS" "${rows[@]}" > "$out" <<'PY'
import json, sys, statistics as st, collections
tmp, rounds, rows = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
times = collections.defaultdict(list)
for i in range(1, rounds + 1):
    for r in json.load(open(f"{tmp}/r{i}.json"))["results"]:
        times[r["command"]] += r["times"]
labels = [r.split("|", 1)[0] for r in rows]
cmds = [r.split("|", 1)[1] for r in rows]
med = {c: st.median(times[c]) * 1e3 for c in cmds}
bare, cata = med[cmds[0]], med[cmds[1]]
cost = {}
for line in open(f"{tmp}/cost.txt"):
    c, tc, pf, sc = line.rstrip("\n").split("\t")
    cost[c] = (tc, pf, sc)
def num(x, fmt):
    try: return fmt % float(x)
    except ValueError: return "?"
print("| launcher | median ms | p90 ms | overhead over bare ms | median / catatonit | overhead / catatonit's | CPU ms | page faults | syscalls |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for l, c in zip(labels, cmds):
    t = sorted(times[c]); p90 = t[int(len(t) * 0.9)] * 1e3
    ov = med[c] - bare
    rel = ov / (cata - bare) if cata - bare > 0.005 else float("nan")
    tc, pf, sc = cost.get(c, ("?", "?", "?"))
    print(f"| {l} | {med[c]:.3f} | {p90:.3f} | {ov:+.3f} | {med[c]/cata:.2f}x | {rel:.1f}x "
          f"| {num(tc, '%.2f')} | {num(pf, '%.0f')} | {num(sc, '%.0f')} |")
print(f"\n{len(times[cmds[0]])} runs per row ({rounds} interleaved rounds of hyperfine -N). "
      "CPU ms: task-clock of all the launch's processes, mean of `perf stat -r` runs; page faults "
      "likewise; syscalls: `strace -f -c` total of one launch.")
print("\nCommands:\n")
for l, c in zip(labels, cmds):
    print(f"- {l}: `{c}`")
d = collections.defaultdict(list)
for line in open(f"{tmp}/trace.txt"):
    f = line.split()
    if len(f) == 2:
        d[f[0]].append(float(f[1]))
print("\nIrreversible steps in stockade's child (triton-grade, perf trace, medians over "
      f"{len(d.get('seccomp#1', []))} launches; perf trace inflates each call a little):\n")
print("| syscall | median ms | max ms |")
print("|---|---:|---:|")
# stockade installs one seccomp program (src/bpf.rs); more rows would mean stacked filters.
filters = sorted(k for k in d if k.startswith("seccomp#"))
for k in sorted(d):
    name = f"seccomp program {k[8:]}" if k in filters else k
    print(f"| {name} | {st.median(d[k]):.3f} | {max(d[k]):.3f} |")
n = min((len(d[k]) for k in filters), default=0)
if n:
    s = [sum(d[k][i] for k in filters) for i in range(n)]
    print(f"| **all seccomp installs ({len(filters)})** | **{st.median(s):.3f}** | {max(s):.3f} |")
PY
rm -rf "$tmp"
cat "$out"
