#!/usr/bin/env bash
# 5. Supervisor (benches/forward-reap.sh): signal-forwarding latency and the time to reap 2000 orphans, stockade next to
# tini, catatonit and dumb-init (benches/src/supbench.c). Writes $RES/forward-reap.md.
#
# Latency: the driver (pinned to CLIENT_CPU) sends SIGUSR1 to the supervisor (pinned with its
# server to SERVER_CPU) and times until the server reports the signal on a pipe (fd 3), one
# signal at a time, N signals; "direct" is the driver signalling the server itself.
# Orphans: the server makes 2000 orphans at once and times until the supervisor has reaped them
# all. Every supervisor runs as PID 1 of a fresh PID namespace (`unshare --pid --fork`), as in a
# container; stockade also in its own modes (own PID namespace; subreaper without one).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N=$(q 200 2000)
REPS=$(q 1 5)
ORPHANS=2000
out="$RES/forward-reap.md"
SB="$BIN/supbench"
S=(taskset -c "$SERVER_CPU")
export STOCKADE_LOG=warn

lat_rows=(
    "direct (no supervisor)|$SB echo"
    "tini|tini -s -- $SB echo"
    "tini-static|tini-static -s -- $SB echo"
    "catatonit|catatonit -- $SB echo"
    "dumb-init|dumb-init $SB echo"
    "**stockade triton-grade** (PID namespace on: outer relay -> inner PID 1 -> server)|$STOCKADE --profile $PROF/triton-grade-fd3.toml -- $SB echo"
    "stockade triton-grade, pid_namespace = never|$STOCKADE --profile $PROF/triton-grade-nopidns-fd3.toml -- $SB echo"
)
orph_rows=(
    "tini (PID 1)|unshare --pid --fork tini -- $SB orphans $ORPHANS"
    "tini-static (PID 1)|unshare --pid --fork tini-static -- $SB orphans $ORPHANS"
    "catatonit (PID 1)|unshare --pid --fork catatonit -- $SB orphans $ORPHANS"
    "dumb-init (PID 1)|unshare --pid --fork dumb-init $SB orphans $ORPHANS"
    "**stockade triton-grade (PID 1)**|unshare --pid --fork $STOCKADE --profile $PROF/triton-grade.toml -- $SB orphans $ORPHANS"
    "stockade triton-grade, its own PID namespace|$STOCKADE --profile $PROF/triton-grade.toml -- $SB orphans $ORPHANS"
    "stockade triton-grade, pid_namespace = never (subreaper)|$STOCKADE --profile $PROF/triton-grade-nopidns.toml -- $SB orphans $ORPHANS"
    "tini -s (subreaper)|tini -s -- $SB orphans $ORPHANS"
)

tmp=$(mktemp -d "$WORK/supervise.XXXXXX")
for rep in $(seq "$REPS"); do
    i=0
    for r in "${lat_rows[@]}"; do
        i=$((i + 1))
        log "supervise: latency $rep/$REPS ${r%%|*}"
        # shellcheck disable=SC2086
        taskset -c "$CLIENT_CPU" "$SB" drive "$N" "${S[@]}" ${r#*|} >> "$tmp/lat.$i" \
            || die "signal latency failed: ${r#*|}"
    done
    i=0
    for r in "${orph_rows[@]}"; do
        i=$((i + 1))
        log "supervise: orphans $rep/$REPS ${r%%|*}"
        # shellcheck disable=SC2086
        timeout 60 "${S[@]}" ${r#*|} </dev/null > "$tmp/o.out" 2>"$tmp/o.err" \
            || { cat "$tmp/o.err" >&2; die "orphans failed: ${r#*|}"; }
        grep '^orphans ' "$tmp/o.out" | awk '{print $3}' >> "$tmp/orph.$i" \
            || die "no result from: ${r#*|}"
    done
done

{
    echo "Signal forwarding (SIGUSR1, $N signals per run, median of $REPS runs' statistics):"
    echo
    echo "| supervisor | median us | p90 us | p99 us | min us | median over direct us |"
    echo "|---|---:|---:|---:|---:|---:|"
    i=0; direct=
    for r in "${lat_rows[@]}"; do
        i=$((i + 1))
        m=$(awk '{print $1}' "$tmp/lat.$i" | median)
        p90=$(awk '{print $2}' "$tmp/lat.$i" | median)
        p99=$(awk '{print $3}' "$tmp/lat.$i" | median)
        mn=$(awk '{print $4}' "$tmp/lat.$i" | median)
        [ -n "$direct" ] || direct=$m
        printf '| %s | %.1f | %.1f | %.1f | %.1f | %+.1f |\n' "${r%%|*}" "$m" "$p90" "$p99" "$mn" "$(echo "$m - $direct" | bc -l)"
    done
    echo
    echo "Reaping $ORPHANS orphans released at once (median of $REPS runs):"
    echo
    echo "| supervisor | median ms | min ms | max ms |"
    echo "|---|---:|---:|---:|"
    i=0
    for r in "${orph_rows[@]}"; do
        i=$((i + 1))
        printf '| %s | %.2f | %.2f | %.2f |\n' "${r%%|*}" "$(median < "$tmp/orph.$i")" \
            "$(sort -g "$tmp/orph.$i" | head -1)" "$(sort -g "$tmp/orph.$i" | tail -1)"
    done
    echo
    echo "Commands (\`benches/src/supbench.c\`; supervisor and server pinned with \`taskset -c $SERVER_CPU\`, driver with \`taskset -c $CLIENT_CPU\`):"
    echo
    for r in "${lat_rows[@]}"; do echo "- latency, ${r%%|*}: \`$SB drive $N taskset -c $SERVER_CPU ${r#*|}\`"; done
    for r in "${orph_rows[@]}"; do echo "- orphans, ${r%%|*}: \`taskset -c $SERVER_CPU ${r#*|}\`"; done
} > "$out"
rm -rf "$tmp"
cat "$out"
