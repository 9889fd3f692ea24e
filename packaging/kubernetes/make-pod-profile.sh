#!/usr/bin/env bash
# Derives the pod profile from the built-in triton profile: identical, except that Triton may also
# listen on 0.0.0.0, i.e. on the pod's own network namespace (its loopback and pod IP), so the
# Service and the kubelet's HTTP probes can reach it. The pod boundary, a NetworkPolicy and the
# Service decide who can connect; the restricted admin APIs still need the generated secret.
#
#   stockade --print-profile triton | make-pod-profile.sh > triton-pod.toml
#   kubectl create configmap stockade-triton-profile --from-file=triton-pod.toml
set -euo pipefail
src=$(cat "${1:-/dev/stdin}")
n=$(grep -c '^allowed_addresses = ' <<<"$src" || true)
[ "$n" = 1 ] || { echo "make-pod-profile: expected one allowed_addresses line, found $n" >&2; exit 1; }
echo "# Derived from the built-in triton profile by packaging/kubernetes/make-pod-profile.sh:"
echo "# only [triton.listen] (0.0.0.0 allowed: the pod's network namespace) and the readiness probe's"
echo "# from_server_flags (off: its URL stays on loopback) differ."
sed -E \
  -e 's/^allowed_addresses = \[(.*)\]$/allowed_addresses = [\1, "0.0.0.0"]/' \
  -e '/^\[triton\.listen\]$/,/^\[/ s/^reason = "(.*)"$/reason = "pod profile: listens inside the pod network namespace, reached through the Service (NetworkPolicy decides who); \1"/' \
  -e '/^\[supervise\.ready\]$/,/^\[/ s/^from_server_flags = true$/from_server_flags = false # pod profile: the probe refuses 0.0.0.0, so it keeps the fixed loopback URL above (Triton on 0.0.0.0:8000 answers on 127.0.0.1:8000)/' \
  <<<"$src"
