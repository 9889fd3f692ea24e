#!/usr/bin/env bash
# 3. seccomp cost per syscall: benches/src/syscost.c (N raw syscalls per op, median of repeats)
# bare vs under stockade with the triton-grade profile (its three filters; also Landlock, uid
# 65534, no caps), ROUNDS alternating rounds, pinned to one core; next to two reference filters
# syscost installs itself: a 1-instruction allow (the fixed cost of seccomp being on, the kernel's
# action cache answering) and a 306-instruction linear filter that loads an argument (the cache
# cannot answer: the BPF runs on every syscall). Writes $RES/seccomp.md.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ROUNDS=$(q 2 6)
ITER=$(q 50000 300000)
out="$RES/seccomp.md"
tmp=$(mktemp -d "$WORK/seccomp.XXXXXX")
bare=(taskset -c "$SERVER_CPU" "$BIN/syscost" "$ITER" 5)
conf=(taskset -c "$SERVER_CPU" "$STOCKADE" --profile "$PROF/triton-grade.toml" -- "$BIN/syscost" "$ITER" 5)
for i in $(seq "$ROUNDS"); do
    log "seccomp: round $i/$ROUNDS"
    "${bare[@]}" > "$tmp/bare.$i" || die "syscost failed bare"
    STOCKADE_LOG=warn "${conf[@]}" > "$tmp/conf.$i" || die "syscost failed under stockade (a syscall refused?)"
    "${bare[@]}" allow1 > "$tmp/allow1.$i" || die "syscost failed (allow1)"
    "${bare[@]}" argload > "$tmp/argload.$i" || die "syscost failed (argload)"
done
# The filters really are in place under stockade: the confined run must report them.
STOCKADE_LOG=warn "$STOCKADE" --profile "$PROF/triton-grade.toml" -- /bin/grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status \
    | tr '\n' ' ' > "$tmp/status"

python3 - "$tmp" "$ROUNDS" > "$out" <<'PY'
import sys, statistics as st, collections
tmp, rounds = sys.argv[1], int(sys.argv[2])
d = {k: collections.defaultdict(list) for k in ("bare", "conf", "allow1", "argload")}
order = []
for k in d:
    for i in range(1, rounds + 1):
        for line in open(f"{tmp}/{k}.{i}"):
            name, med, mn = line.split()
            d[k][name].append(float(med))
            if name not in order: order.append(name)
print("| syscall (one op) | bare ns/op | **stockade triton-grade** (3 filters, 900+ insns) ns/op | delta ns | ratio | 1-insn allow filter: delta ns | uncached 306-insn linear filter: delta ns |")
print("|---|---:|---:|---:|---:|---:|---:|")
for n in order:
    b, c = st.median(d["bare"][n]), st.median(d["conf"][n])
    a1, al = st.median(d["allow1"][n]), st.median(d["argload"][n])
    print(f"| {n} | {b:.1f} | {c:.1f} | {c-b:+.1f} | {c/b:.3f} | {a1-b:+.1f} | {al-b:+.1f} |")
print(f"\nMedians of {rounds} alternating rounds, each the median of 5 timed loops.")
print(f"Confined process: {open(tmp + '/status').read().strip()}")
PY
rm -rf "$tmp"
{
    echo
    echo "Commands: \`${bare[*]}\`, \`${conf[*]}\`, \`${bare[*]} allow1\`, \`${bare[*]} argload\` (\`benches/src/syscost.c\`; the last two install their own filter)."
} >> "$out"
cat "$out"
