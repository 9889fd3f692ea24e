#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this). Run as root on Linux with
# Landlock (ABI >= 6) and seccomp: the tests change uids, read other processes' /proc status and
# start the real tritonserver. It installs what it needs first (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

[ "$(id -u)" = 0 ] || { echo "scripts/test.sh: run as root (the tests drop to uid 65534 and read /proc of other uids)" >&2; exit 1; }

say "system packages"
need=()
# podman + runc (Debian's): tests/container.rs runs the image in a real runtime (crun refuses
# hybrid cgroups, so the tests pick runc); uidmap and fuse-overlayfs are podman's recommends that
# a --no-install-recommends image may lack (the tests use the vfs driver and host network).
for pkg in util-linux:setpriv tini:tini dumb-init:dumb-init catatonit:catatonit python3-venv:/usr/lib/python3.11/venv/__init__.py \
           podman:podman runc:runc conmon:conmon file:file; do
  name=${pkg%%:*}; probe=${pkg#*:}
  if [[ $probe == /* ]]; then [ -e "$probe" ] || need+=("$name"); else command -v "$probe" >/dev/null || need+=("$name"); fi
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

say "Triton 2.51 (pip wheel nvidia-pytriton) into ${STOCKADE_TRITON_DIR:=/opt/stockade/triton}"
export STOCKADE_TRITON_DIR
./scripts/install-triton.sh "$STOCKADE_TRITON_DIR"

say "MLServer 1.7.1 (pip, uvloop<0.22) into ${STOCKADE_MLSERVER_DIR:=/opt/stockade/mlserver}"
export STOCKADE_MLSERVER_DIR
./scripts/install-mlserver.sh "$STOCKADE_MLSERVER_DIR"

say "BentoML 1.4.40 (pip) into ${STOCKADE_BENTOML_DIR:=/opt/stockade/bentoml}"
export STOCKADE_BENTOML_DIR
./scripts/install-bentoml.sh "$STOCKADE_BENTOML_DIR"

say "format and lints"
cargo fmt --all -- --check
cargo clippy --all-targets --locked -- -D warnings

say "packaging: static musl binary, .deb, manifests, systemd unit"
./.ci/package.sh

say "fuzz smoke: every fuzz/ target for a few seconds (nightly + cargo-fuzz, docs/FUZZING.md)"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
cargo +nightly fuzz --version >/dev/null 2>&1 || cargo +nightly install cargo-fuzz --locked
./scripts/fuzz.sh "${STOCKADE_FUZZ_SECS:-15}"

say "tests (unit, kernel confinement, bad input, supervision, terminal, egress, containers, real Triton, MLServer and BentoML end to end)"
# `cargo test` also builds the examples: the probe the confinement tests run confined.
# tests/container.rs puts target/x86_64-unknown-linux-musl/release/stockade (package.sh built it
# above; the test rebuilds it if stale) into an image and runs it under podman with private
# storage in a temp dir.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked -- --test-threads="${STOCKADE_TEST_THREADS:-2}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line for the whole run (the last `test result` line is the doc tests' 0).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "cargo-test: %d passed, %d failed\n", p, f }' "$log"
exit "$rc"
