#!/usr/bin/env bash
# The benchmark suite, in one command (root, Debian 12, Rust installed; about 10 minutes):
#
#   sudo benches/run.sh
#
# 1. installs what it compares against (Debian: tini, dumb-init, catatonit, bubblewrap,
#    hyperfine, wrk, perf, gcc; Triton 2.51 through scripts/install-triton.sh);
# 2. builds stockade (release, glibc; and static musl when that target is installed) and the
#    C helpers in benches/src;
# 3. runs, side by side on this machine:
#      launch.sh          launch overhead of /bin/true, seccomp install time in stockade's child
#      filter-install.sh  seccomp install time by filter layout (today's vs one binary-search filter)
#      memory.sh          resident supervisor memory (VmRSS, Pss, anonymous), binary sizes
#      seccomp.sh         per-syscall cost of the triton filters on hot syscalls
#      forward-reap.sh    signal-forwarding latency, reaping 2000 orphans (next to tini & co)
#      triton-bursts.sh   real Triton: throughput, p50/p99 at concurrency 1 and 8, bare vs
#                         confined side by side, short alternating wrk bursts
#      triton.sh          (if present) real Triton: time to ready, time to exit on SIGTERM,
#                         throughput per server lifetime, bare vs confined, alternating
#      supervise.sh       (if present) the supervision benchmarks of benches/supervise.sh
# 4. writes $RESULTS/summary.md (default /var/tmp/stockade-bench/results) with every table and
#    the command behind it; docs/PERFORMANCE.md is written from such a run.
#
# Environment: CARGO_TARGET_DIR (default ./target), QUICK=1 (smoke run, ~2 minutes),
# SKIP_INSTALL=1 (no apt-get / Triton install), SKIP_TRITON=1, SERVER_CPU / CLIENT_CPU
# (default 1 / 0), STOCKADE_BENCH_MAX_LOAD=L (first wait, up to 20 minutes, until the 1-minute
# load average is below L), STOCKADE_BENCH_WORK (default /var/tmp/stockade-bench).
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
t_start=$(date +%s)

# --- 1. what the suite compares against ------------------------------------------------------
if [ "${SKIP_INSTALL:-0}" != 1 ]; then
    need=()
    for pc in tini:tini tini-static:tini dumb-init:dumb-init catatonit:catatonit bwrap:bubblewrap \
              hyperfine:hyperfine wrk:wrk perf:linux-perf gcc:gcc bc:bc taskset:util-linux \
              setpriv:util-linux python3:python3; do
        command -v "${pc%%:*}" >/dev/null || need+=("${pc#*:}")
    done
    if [ "${#need[@]}" -gt 0 ]; then
        log "apt-get install ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get install -y --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
            apt-get update >/dev/null
            apt-get install -y --no-install-recommends "${need[@]}" >/dev/null
        }
    fi
    if [ "${SKIP_TRITON:-0}" != 1 ]; then
        "$REPO/scripts/install-triton.sh" >/dev/null || die "scripts/install-triton.sh failed"
    fi
fi
for c in tini tini-static dumb-init catatonit bwrap hyperfine perf gcc bc taskset setpriv python3; do
    command -v "$c" >/dev/null || die "$c is missing (run without SKIP_INSTALL=1)"
done

# --- 2. builds ---------------------------------------------------------------------------------
log "cargo build --release (CARGO_TARGET_DIR=$CARGO_TARGET_DIR)"
(cd "$REPO" && cargo build --release --bin stockade) >/dev/null 2>&1 \
    || (cd "$REPO" && cargo build --release --bin stockade) || die "cargo build failed"
if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    log "cargo build --release --target x86_64-unknown-linux-musl"
    (cd "$REPO" && cargo build --release --bin stockade --target x86_64-unknown-linux-musl) >/dev/null 2>&1 \
        || log "musl build failed: static rows skipped"
fi
build_helpers
make_profiles

# --- 3. the benchmarks -----------------------------------------------------------------------
if [ -n "${STOCKADE_BENCH_MAX_LOAD:-}" ]; then
    for _ in $(seq 120); do
        awk -v m="$STOCKADE_BENCH_MAX_LOAD" '{exit !($1 < m)}' /proc/loadavg && break
        log "load average $(cut -d' ' -f1-3 /proc/loadavg), waiting for < $STOCKADE_BENCH_MAX_LOAD"
        sleep 10
    done
fi
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
rm -f "$RES"/*.md "$RES"/*.txt
sections=()
part() {  # part TITLE FILE COMMAND... (bounded by `timeout`)
    local title=$1 file=$2 t0 rc=0; shift 2
    t0=$(date +%s)
    log "=== $title"
    timeout --kill-after=10 "${PART_TIMEOUT:-300}" "$@" > "$RES/$file.log" 2>&1 || rc=$?
    [ "$rc" = 0 ] || { tail -20 "$RES/$file.log" >&2; log "$title FAILED (exit $rc)"; }
    sections+=("$title|$file|$(( $(date +%s) - t0 ))|$rc|$(cut -d' ' -f1-3 /proc/loadavg)")
}
part "1. Launch overhead of /bin/true" launch "$REPO/benches/launch.sh"
part "1b. seccomp filter install time by layout" filter-install "$REPO/benches/filter-install.sh"
part "2. Resident supervisor memory and binary size" memory "$REPO/benches/memory.sh"
part "3. seccomp cost per hot syscall" seccomp "$REPO/benches/seccomp.sh"
if [ "${SKIP_TRITON:-0}" != 1 ]; then
    part "4. Real Triton: throughput and latency in alternating bursts" triton-bursts "$REPO/benches/triton-bursts.sh"
fi
if [ "${SKIP_TRITON:-0}" != 1 ] && [ -x "$REPO/benches/triton.sh" ]; then
    # benches/triton.sh prints its own tables (text): time to ready and to exit on SIGTERM, and
    # load per server lifetime; 5 alternating rounds here.
    part "4b. Real Triton: time to ready, time to exit, per-lifetime load (benches/triton.sh)" triton env STOCKADE="$STOCKADE" \
        SERVER_CPU="$SERVER_CPU" CLIENT_CPU="$CLIENT_CPU" ROUNDS="$(q 1 5)" \
        N1="$(q 300 3000)" N8="$(q 600 6000)" WARMUP="$(q 50 300)" "$REPO/benches/triton.sh"
    cp "$RES/triton.log" "$RES/triton.txt"
fi
# Last: its 2000 orphans spike the load average (briefly runnable), which would mislead the
# "load after" of the parts that follow.
part "5. Supervisor: signal forwarding and reaping 2000 orphans" forward-reap "$REPO/benches/forward-reap.sh"
if [ -x "$REPO/benches/supervise.sh" ]; then
    part "5b. benches/supervise.sh" supervise env STOCKADE="$STOCKADE" "$REPO/benches/supervise.sh"
    cp "$RES/supervise.log" "$RES/supervise.txt"
fi

# --- 4. summary --------------------------------------------------------------------------------
sum="$RES/summary.md"
{
    echo "# stockade benchmark run, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    context | sed "s/^- load average at start: .*/- load average at start of the benchmarks: $load_start/"
    echo "- load average at the end: $(cut -d' ' -f1-3 /proc/loadavg); total $(( $(date +%s) - t_start )) s including builds"
    echo "- command: \`benches/run.sh\`$( [ "$QUICK" = 1 ] && echo ' (QUICK=1 smoke run)')"
    for s in "${sections[@]}"; do
        IFS='|' read -r title file secs rc load <<<"$s"
        echo
        echo "## $title"
        echo
        echo "_\`benches/$file.sh\`, ${secs} s, exit $rc, load average after: ${load}_"
        echo
        if [ -f "$RES/$file.md" ]; then cat "$RES/$file.md"
        else echo '```'; cat "$RES/$file.log"; echo '```'; fi
    done
} > "$sum"
cat "$sum"
log "summary: $sum ($(( $(date +%s) - t_start )) s)"
