#!/usr/bin/env bash
# The confinement floor (benches/src/floor.c): what the kernel work of `stockade --profile
# minimal` costs when done by the leanest possible program, and what each step of it costs.
#
#   benches/floor.sh                 # check, then the per-step decomposition
#   ROUNDS=5 RUNS=60 benches/floor.sh
#
# 1. Check that the floor confines like stockade (fails the script otherwise):
#    - the seccomp program is stockade's own: dumped from a stockade-confined sleep with
#      ptrace(PTRACE_SECCOMP_GET_FILTER) (lib.sh dump_bpf), installed by the floor, dumped again
#      from the floor's sleep: the two dumps must be byte-identical;
#    - from outside, /proc/<server>/status of the floor's sleep: Uid 65534 x4, Gid 65534 x4,
#      CapEff/CapPrm/CapBnd/CapAmb 0, NoNewPrivs 1, Seccomp 2, Seccomp_filters 1; its mount
#      table (/proc/<server>/mountinfo: mount point, options, fs type) equals stockade's;
#    - from inside, the same python3 probe under both (bind 8080 allowed, bind 8081 and a write
#      to /proc/self/comm denied by Landlock with EACCES, listing / denied): identical output.
# 2. Decomposition: bare, catatonit, the floor, the floor with each step left out
#    (--skip=STEP), with all left out, and stockade minimal (glibc, static musl, and with
#    pid_namespace = "never"): hyperfine -N, ROUNDS rounds of all rows interleaved, RUNS runs
#    each, medians of the pooled runs; a step's cost is the floor's median minus the median
#    without it. Writes $RES/floor.md.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=${ROUNDS:-$(q 1 5)}
RUNS=${RUNS:-$(q 10 60)}
CPU_RUNS=${CPU_RUNS:-$(q 5 30)}
T=/bin/true
out="$RES/floor.md"
for c in hyperfine catatonit python3 perf; do command -v "$c" >/dev/null || die "$c is missing"; done
build_helpers
make_profiles
FLOOR="$BIN/floor"
BPF="$WORK/floor-minimal.bpf"
tmp=$(mktemp -d "$WORK/floor.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --- 1. check --------------------------------------------------------------------------------
dump_bpf "$STOCKADE" "$BPF"
log "floor: stockade's minimal seccomp program: $(( $(stat -c %s "$BPF") / 8 )) instructions"

# mount point, per-mount options, fs type (ids and the super options' sizes differ per run)
mounts_of() { awk '{for (i = 7; $i != "-"; i++); print $5, $6, $(i+1)}' "/proc/$1/mountinfo" | sort; }

read -r fpid fs < <(start_sleep "$FLOOR" "--bpf=$BPF" --)
[ -n "$fs" ] || { stop_pid "$fpid"; die "no confined sleep under the floor"; }
grep -E '^(Uid|Gid|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):' \
    "/proc/$fs/status" > "$tmp/status"
"$FLOOR" --dump-bpf "$fs" "$tmp/floor.bpf" 2>/dev/null || { stop_pid "$fpid"; die "ptrace of the floor's server"; }
mounts_of "$fs" > "$tmp/mounts.floor"
stop_pid "$fpid"
read -r spid ss < <(start_sleep "$STOCKADE" --profile minimal --)
[ -n "$ss" ] || { stop_pid "$spid"; die "no confined sleep under stockade"; }
mounts_of "$ss" > "$tmp/mounts.stockade"
stop_pid "$spid"
cmp -s "$BPF" "$tmp/floor.bpf" || die "the floor's server runs another seccomp program than stockade's"
awk '
    /^(Uid|Gid):/ { if ($2 != 65534 || $3 != 65534 || $4 != 65534 || $5 != 65534) bad = bad " " $1 }
    /^Cap(Inh|Prm|Eff|Bnd|Amb):/ { if ($2 !~ /^0+$/) bad = bad " " $1 }
    /^NoNewPrivs:/ { if ($2 != 1) bad = bad " " $1 }
    /^Seccomp:/ { if ($2 != 2) bad = bad " " $1 }
    /^Seccomp_filters:/ { if ($2 != 1) bad = bad " " $1 }
    END { if (bad != "") { print "floor server status wrong:" bad; exit 1 } }' "$tmp/status" \
    || { cat "$tmp/status" >&2; die "the floor does not confine"; }
diff "$tmp/mounts.stockade" "$tmp/mounts.floor" >&2 || die "the floor's mount table differs from stockade's"
cat > "$tmp/probe.py" <<'PY'
import os, socket
for port in (8080, 8081):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port)); print("bind", port, "ok")
    except OSError as e:
        print("bind", port, "errno", e.errno)
for what, f in (("write /proc/self/comm", lambda: open("/proc/self/comm", "w").write("x")),
                ("list /", lambda: os.listdir("/")),
                ("read /etc/hostname", lambda: open("/etc/hostname").read())):
    try:
        f(); print(what, "ok")
    except OSError as e:
        print(what, "errno", e.errno)
PY
probe=$(cat "$tmp/probe.py")
( cd / && "$FLOOR" "--bpf=$BPF" -- /usr/bin/python3 -c "$probe" ) > "$tmp/probe.floor" 2>&1 \
    || { cat "$tmp/probe.floor" >&2; die "probe under the floor failed"; }
( cd / && "$STOCKADE" --profile minimal -- /usr/bin/python3 -c "$probe" ) > "$tmp/probe.stockade" 2>&1 \
    || { cat "$tmp/probe.stockade" >&2; die "probe under stockade failed"; }
diff "$tmp/probe.stockade" "$tmp/probe.floor" >&2 || die "the probe sees a different sandbox under the floor"
grep -qx 'bind 8080 ok' "$tmp/probe.floor" && grep -qx 'bind 8081 errno 13' "$tmp/probe.floor" \
    && grep -qx 'write /proc/self/comm errno 13' "$tmp/probe.floor" \
    || { cat "$tmp/probe.floor" >&2; die "no Landlock denial under the floor"; }
log "floor: check passed (same BPF bytes, status, mount table, Landlock denials as stockade)"

# --- 2. decomposition ------------------------------------------------------------------------
F="$FLOOR --bpf=$BPF --"
rows=("bare|$T" "catatonit|catatonit -- $T" "floor (all steps)|$F $T")
for s in pidns supcaps rlimits mounts proc caps ids landlock seccomp; do
    rows+=("floor without $s|$FLOOR --skip=$s --bpf=$BPF -- $T")
done
rows+=("floor without any step (fork, wait, exec)|$FLOOR --skip=all -- $T"
       "stockade minimal|$STOCKADE --profile minimal -- $T"
       "stockade minimal, pid_namespace = never|$STOCKADE --profile $PROF/minimal-nopidns.toml -- $T")
[ -x "$STOCKADE_MUSL" ] && rows+=("stockade static musl, minimal|$STOCKADE_MUSL --profile minimal -- $T")
cmds=()
for r in "${rows[@]}"; do cmds+=("${r#*|}"); done
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for i in $(seq "$ROUNDS"); do
    log "floor: round $i/$ROUNDS (${#cmds[@]} commands x $RUNS runs)"
    hyperfine -N --warmup 5 --runs "$RUNS" --style none --export-json "$tmp/r$i.json" \
        "${cmds[@]}" >/dev/null 2>"$tmp/hyperfine.err" || { cat "$tmp/hyperfine.err" >&2; die "hyperfine failed"; }
    # CPU time of all the launch's processes (steadier than wall time on a loaded machine).
    for k in "${!cmds[@]}"; do
        # shellcheck disable=SC2086
        perf stat -x, -e task-clock -r "$CPU_RUNS" ${cmds[$k]} 2>&1 >/dev/null \
            | awk -F, -v k="$k" '$3 ~ /^task-clock/ {print k, $1}' >> "$tmp/cpu.txt"
    done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
python3 - "$tmp" "$ROUNDS" "$RUNS" "$load_start" "$load_end" "$CPU_RUNS" "${rows[@]}" > "$out" <<'PY'
import json, sys, statistics as st, collections
tmp, rounds, runs, l0, l1, cpuruns = sys.argv[1:7]
rows = [r.split("|", 1) for r in sys.argv[7:]]
times = collections.defaultdict(list)
for i in range(1, int(rounds) + 1):
    for r in json.load(open(f"{tmp}/r{i}.json"))["results"]:
        times[r["command"]] += r["times"]
med = {c: st.median(times[c]) * 1e3 for _, c in rows}
cpus = collections.defaultdict(list)
for line in open(f"{tmp}/cpu.txt"):
    k, v = line.split()
    cpus[rows[int(k)][1]].append(float(v))
cpu = {c: st.median(cpus[c]) for _, c in rows}
q = lambda c, p: st.quantiles(times[c], n=4)[p] * 1e3
bare, cata, floor = med[rows[0][1]], med[rows[1][1]], med[rows[2][1]]
print(f"Load average (1/5/15 min) at start {l0}, at end {l1}.\n")
print("| row | median ms | p25–p75 ms | overhead ms | / catatonit's | / floor's | step cost ms (floor − row) | CPU ms | CPU over bare ms |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
for l, c in rows:
    ov = med[c] - bare
    step = f"{floor - med[c]:+.3f}" if l.startswith("floor without") else ""
    rc = f"{ov / (cata - bare):.2f}x" if c != rows[0][1] else "—"
    rf = f"{ov / (floor - bare):.2f}x" if c != rows[0][1] else "—"
    print(f"| {l} | {med[c]:.3f} | {q(c, 0):.3f}–{q(c, 2):.3f} | {ov:+.3f} | {rc} | {rf} | {step} "
          f"| {cpu[c]:.2f} | {cpu[c] - cpu[rows[0][1]]:+.2f} |")
print(f"\n{len(times[rows[0][1]])} runs per row: {rounds} rounds of `hyperfine -N --warmup 5 --runs {runs}` "
      "over all rows (interleaved), pooled. CPU: task-clock of all the launch's processes, "
      f"`perf stat -e task-clock -r {cpuruns}` per row after each round, median of the rounds' means.\n\nCommands:\n")
for l, c in rows:
    print(f"- {l}: `{c}`")
PY

# --- 3. timeline -----------------------------------------------------------------------------
# The same source built with -DFLOOR_TIMES stamps the end of every step (CLOCK_MONOTONIC, shared
# page); TIMES_RUNS launches per variant, variants alternating, medians of the per-launch
# durations. Wall time inside the launch, so it shows what the kernel steps take and where the
# rest goes (process creation, exec, namespace teardown).
TIMES_RUNS=${TIMES_RUNS:-$(q 20 300)}
gcc -O2 -Wall -Wextra -DFLOOR_TIMES -o "$BIN/floor-times" "$REPO/benches/src/floor.c" || die "cannot build floor-times"
variants=("all steps|" "pid_namespace never (no relay)|--skip=pidns" "no mounts|--skip=mounts")
: > "$tmp/times.txt"
for i in $(seq "$TIMES_RUNS"); do
    for k in "${!variants[@]}"; do
        v=${variants[$k]#*|}
        # shellcheck disable=SC2086
        ( cd / && "$BIN/floor-times" $v "--bpf=$BPF" -- "$T" ) 2>&1 >/dev/null \
            | awk -F'\t' -v k="$k" -v i="$i" '$1 == "floor-time" {print k "\t" i "\t" $2 "\t" $3}' >> "$tmp/times.txt"
    done
done
python3 - "$tmp/times.txt" "$TIMES_RUNS" "${variants[@]}" >> "$out" <<'PY'
import sys, statistics as st, collections
path, n = sys.argv[1:3]
variants = [v.split("|")[0] for v in sys.argv[3:]]
t = collections.defaultdict(dict)   # (variant, run) -> label -> us since start
for line in open(path):
    k, i, label, us = line.rstrip("\n").split("\t")
    t[(int(k), int(i))][label] = float(us)
seq = [("prep (bpf file, Landlock O_PATH opens)", "start", "prep: read the BPF file, open the 10 Landlock paths O_PATH"),
       ("pid1: running", "prep (bpf file, Landlock O_PATH opens)", "unshare(CLONE_NEWPID) + fork, until PID 1 runs"),
       ("server: running", "pid1: running", "PID 1 forks the server, until the server runs"),
       ("server: setpgid, close_range, rlimits", "server: running", "setpgid, close_range, RLIMIT_CORE"),
       ("server: unshare(NEWNS), rslave", "server: setpgid, close_range, rlimits", "unshare(CLONE_NEWNS), / rslave"),
       ("server: open_tree x6", "server: unshare(NEWNS), rslave", "open_tree(CLONE) of the 6 binds"),
       ("server: tmpfs, binds, /proc, symlinks, ro", "server: open_tree x6", "root tmpfs, 6 × mkdir+move_mount+mount_setattr, /proc, symlinks, root ro"),
       ("server: pivot_root", "server: tmpfs, binds, /proc, symlinks, ro", "pivot_root"),
       ("server: umount2(old root, MNT_DETACH)", "server: pivot_root", "umount2(old root, MNT_DETACH)"),
       ("server: securebits, bounding set", "server: umount2(old root, MNT_DETACH)", "securebits, 41 × PR_CAPBSET_DROP"),
       ("server: setgroups, setresgid, setresuid", "server: securebits, bounding set", "setgroups, setresgid, setresuid"),
       ("server: ambient, capset, pdeathsig, nnp", "server: setgroups, setresgid, setresuid", "ambient clear, capset, pdeathsig, no_new_privs"),
       ("server: landlock", "server: ambient, capset, pdeathsig, nnp", "Landlock: ruleset, 12 rules, restrict_self"),
       ("server: seccomp (then execve)", "server: landlock", "seccomp(SET_MODE_FILTER), 400 instructions"),
       ("pid1: server reaped", "server: seccomp (then execve)", "execve + /bin/true + exit (+ mount namespace teardown), until PID 1's wait returns"),
       ("relay: pid1 reaped", "pid1: done", "PID 1 exits (+ PID namespace teardown), until the relay's wait returns"),
       ("END", "start", "**total, first instruction to the launcher's last wait**")]
order = ["start"] + [a for a, _, _ in seq[:-2]] + ["pid1: done", "relay: pid1 reaped"]
def dur(k, a, b):
    xs = []
    for (kk, i), d in t.items():
        if kk != k: continue
        end = d.get("relay: pid1 reaped", d.get("pid1: done")) if a == "END" else d.get(a)
        # A step left out: measure from the last step done before it.
        j = order.index(b)
        while j > 0 and order[j] not in d: j -= 1
        start = 0.0 if j == 0 else d[order[j]]
        if end is not None: xs.append(end - start)
    return f"{st.median(xs):.0f}" if xs else "—"
print(f"\n**Timeline of one launch** (`floor-times`, the same source with -DFLOOR_TIMES; {n} launches per "
      "column, columns alternating; median µs per step)\n")
print("| step | " + " | ".join(variants) + " |")
print("|---|" + "---:|" * len(variants))
for a, b, label in seq:
    print(f"| {label} | " + " | ".join(dur(k, a, b) for k in range(len(variants))) + " |")
PY
cat "$out"
