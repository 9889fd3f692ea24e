#!/usr/bin/env bash
# Runs every fuzz target (fuzz/, cargo-fuzz on the nightly toolchain) for a bounded time, one at
# a time at low priority, and prints the executions per target from libFuzzer's final stats.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default 60 s, every target)
#
# The working corpus grows in fuzz/corpus/<target> (not committed); fuzz/seeds/<target> holds
# the committed seeds from the test suites. A crash or property failure stops that target,
# leaves the input in fuzz/artifacts/<target>/ and makes the script exit 1 after the others ran.
# Logs: fuzz/logs/<target>.log. See docs/FUZZING.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(profile triton_argv seccomp_bpf ready)

# -s none: the code under test is safe Rust, the sanitizer would only slow it down 2-3x.
flags=(-O -s none)
nice -n 10 cargo +nightly fuzz build "${flags[@]}"

mkdir -p logs
failed=0
summary=()
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  start=$(date +%s)
  rc=0
  nice -n 10 cargo +nightly fuzz run "${flags[@]}" "$t" "corpus/$t" "seeds/$t" -- \
    -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048 \
    >"logs/$t.log" 2>&1 || rc=$?
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -n1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "logs/$t.log" | tail -n1)
  if [ "$rc" = 0 ]; then
    result=ok
  else
    result="FAILED (exit $rc): $(grep -m1 -E 'panicked at|ERROR: libFuzzer' "logs/$t.log" || true)"
    grep -m1 -A3 'panicked at' "logs/$t.log" >&2 || true
    grep -m1 'Test unit written' "logs/$t.log" >&2 || true
    failed=1
  fi
  summary+=("$(printf '%-12s %12s executions  %7s/s  %5ss  %s' "$t" "${execs:-?}" "${rate:-?}" "$took" "$result")")
  echo "${summary[-1]}"
done

echo
echo "fuzz summary (${secs}s per target):"
printf '  %s\n' "${summary[@]}"
exit "$failed"
