#!/usr/bin/env bash
# 2. Memory of the resident supervisor while the server (`sleep`) sleeps: VmRSS (status), Pss and
# anonymous memory (smaps_rollup) of every supervisor process (stockade in its PID-namespace mode
# is two: the outer relay and the inner PID 1; both counted), next to tini, tini-static,
# catatonit, dumb-init. Then binary sizes. Writes $RES/memory.md.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

out="$RES/memory.md"
SLEEP=/bin/sleep
rows=(
    "catatonit|catatonit -- $SLEEP 30"
    "tini|tini -- $SLEEP 30"
    "tini-static|tini-static -- $SLEEP 30"
    "dumb-init|dumb-init $SLEEP 30"
    "stockade minimal (PID namespace on)|$STOCKADE --profile minimal -- $SLEEP 30"
    "stockade minimal, pid_namespace = never|$STOCKADE --profile $PROF/minimal-nopidns.toml -- $SLEEP 30"
    "**stockade triton-grade** (PID namespace on)|$STOCKADE --profile $PROF/triton-grade.toml -- $SLEEP 30"
    "stockade triton-grade, pid_namespace = never|$STOCKADE --profile $PROF/triton-grade-nopidns.toml -- $SLEEP 30"
)
if [ -x "$STOCKADE_MUSL" ]; then
    rows+=("stockade static musl, triton-grade (PID namespace on)|$STOCKADE_MUSL --profile $PROF/triton-grade.toml -- $SLEEP 30"
           "stockade static musl, triton-grade, pid_namespace = never|$STOCKADE_MUSL --profile $PROF/triton-grade-nopidns.toml -- $SLEEP 30")
fi

kib() { awk -v k="$2" '$1 == k":" {print $2; f=1} END{if(!f) print 0}' "$1"; }
# Every process of the supervisor: the launched pid, and its descendants whose exe is the same
# binary (stockade's inner PID 1). The server (sleep) is not counted.
procs_of() {
    local pid=$1 exe c
    exe=$(readlink "/proc/$pid/exe")
    echo "$pid"
    for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
        [ "$(readlink "/proc/$c/exe" 2>/dev/null)" = "$exe" ] && procs_of "$c"
    done
}

sum_of() {  # sum_of FIELD FILE PIDS...: sum of FIELD (KiB) over the processes
    local field=$1 file=$2 t=0 p; shift 2
    for p in "$@"; do t=$((t + $(kib "/proc/$p/$file" "$field"))); done
    echo "$t"
}
{
    echo "| supervisor (server: sleep) | processes | VmRSS KiB | Pss KiB | Anonymous KiB | Pss_Anon KiB | Pss after page-out KiB | Pss after page-out + 20 signals KiB |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
} > "$out"
for r in "${rows[@]}"; do
    label=${r%%|*}; cmd=${r#*|}
    # shellcheck disable=SC2086
    taskset -c "$SERVER_CPU" $cmd </dev/null >/dev/null 2>&1 &
    pid=$!
    sleep 1
    kill -0 "$pid" 2>/dev/null || die "$label exited early"
    mapfile -t ps < <(procs_of "$pid")
    rss=$(sum_of VmRSS status "${ps[@]}")
    pss=$(sum_of Pss smaps_rollup "${ps[@]}")
    anon=$(sum_of Anonymous smaps_rollup "${ps[@]}")
    pa=$(sum_of Pss_Anon smaps_rollup "${ps[@]}")
    # What the steady state would be if the supervisor dropped its start-up pages: page out the
    # read-only/executable mappings of its own binary, then let it forward 20 signals (SIGWINCH,
    # which sleep ignores) so the pages of the supervision loop fault back in.
    for p in "${ps[@]}"; do "$BIN/pageout" "$p" "$(readlink "/proc/$p/exe")" >/dev/null; done
    sleep 0.2
    pss_po=$(sum_of Pss smaps_rollup "${ps[@]}")
    for _ in $(seq 20); do kill -WINCH "$pid"; sleep 0.02; done
    sleep 0.2
    pss_sig=$(sum_of Pss smaps_rollup "${ps[@]}")
    echo "| $label | ${#ps[@]} | $rss | $pss | $anon | $pa | $pss_po | $pss_sig |" >> "$out"
    kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
done
{
    echo
    echo "Commands (each pinned with \`taskset -c $SERVER_CPU\`, read after 1 s):"
    echo
    for r in "${rows[@]}"; do echo "- ${r%%|*}: \`${r#*|}\`"; done
    echo
    echo "| binary | linkage | size bytes | size KiB |"
    echo "|---|---|---:|---:|"
    for b in "$STOCKADE" "$STOCKADE_MUSL" /usr/bin/catatonit /usr/bin/tini /usr/bin/tini-static /usr/bin/dumb-init /usr/bin/bwrap; do
        [ -x "$b" ] || continue
        kind=dynamic
        file -L "$b" | grep -q 'static' && kind=static
        sz=$(stat -L -c %s "$b")
        echo "| $b | $kind | $sz | $((sz / 1024)) |"
    done
} >> "$out"
cat "$out"
