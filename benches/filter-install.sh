#!/usr/bin/env bash
# 1b. seccomp filter install time for the triton profile's action map, by layout
# (benches/src/bpfinstall.c): three linear filters like stockade's today vs ONE binary-search
# filter. The syscall sets come from `stockade --dry-run --format json`, so this follows the
# profile. stockade's own install time is measured in benches/launch.sh (perf trace).
# Writes $RES/filter-install.md.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

TRIALS=$(q 50 400)
out="$RES/filter-install.md"
json=$("$STOCKADE" --profile "$PROF/triton-grade.toml" --dry-run --format json -- /bin/true)
# names -> x86_64 numbers through the C library's <sys/syscall.h>
nrs() {
    local names
    names=$(python3 -c 'import json,sys; print("\n".join(json.load(sys.stdin)["seccomp"][sys.argv[1]]))' "$1" <<<"$json")
    # shellcheck disable=SC2001
    sed 's/.*/SYS_&/' <<<"$names" | gcc -E -P -include sys/syscall.h - | grep -E '^[0-9]+$' | paste -sd,
}
allow=$(nrs allowed); kill=$(nrs kill_process); enosys=$(nrs enosys)
[ -n "$allow" ] && [ -n "$kill" ] || die "no syscall numbers from the dry run"
taskset -c "$SERVER_CPU" "$BIN/bpfinstall" "$TRIALS" "$allow" "$kill" "$enosys" > "$WORK/bpfinstall.out" \
    || die "bpfinstall failed"
{
    echo "| layout (same actions as the triton profile) | filters | BPF instructions | install median us | p90 us |"
    echo "|---|---:|---:|---:|---:|"
    while read -r name n ins med p90; do
        case $name in
            linear3) name="three linear filters (stockade's layout, 2 instructions per syscall)" ;;
            tree1) name="**one filter, binary search over syscall-number ranges**" ;;
        esac
        echo "| $name | $n | $ins | $med | $p90 |"
    done < "$WORK/bpfinstall.out"
    echo
    echo "stockade today: $(python3 -c 'import json,sys; d=json.load(sys.stdin)["seccomp"]; print(d["filters"], "filters,", d["instructions"], "instructions (seccompiler)")' <<<"$json")."
    echo "$TRIALS trials, each in a fresh child (no_new_privs, then the timed seccomp() calls, then a functional check)."
    echo
    echo "Command: \`taskset -c $SERVER_CPU $BIN/bpfinstall $TRIALS <allowed> <kill_process> <enosys>\` (numbers from \`stockade --dry-run --format json\`)."
} > "$out"
cat "$out"
