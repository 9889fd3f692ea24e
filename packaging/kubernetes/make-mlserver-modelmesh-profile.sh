#!/usr/bin/env bash
# Derives the ModelMesh MLServer profile from the built-in mlserver profile: identical, except that
# [env] also passes the MLServer variables the ServingRuntime sets (modelmesh-mlserver.yaml), which
# is how ModelMesh configures MLServer. The mlserver kind still validates the effective settings
# (loopback host, ports become the bind rules, debug off...); MLSERVER_HOST stays pinned by [env].set.
#
#   stockade --print-profile mlserver | make-mlserver-modelmesh-profile.sh > mlserver-modelmesh.toml
#   kubectl create configmap stockade-mlserver-profile --from-file=mlserver-modelmesh.toml
set -euo pipefail
src=$(cat "${1:-/dev/stdin}")
pass='"MLSERVER_HTTP_PORT", "MLSERVER_GRPC_PORT", "MLSERVER_METRICS_PORT", "MLSERVER_LOAD_MODELS_AT_STARTUP", "MLSERVER_MODEL_NAME", "MLSERVER_GRPC_MAX_MESSAGE_LENGTH"'
n=$(grep -c '^pass = \[' <<<"$src" || true)
[ "$n" = 1 ] || { echo "make-mlserver-modelmesh-profile: expected one pass line, found $n" >&2; exit 1; }
echo "# Derived from the built-in mlserver profile by packaging/kubernetes/make-mlserver-modelmesh-profile.sh:"
echo "# only [env] pass differs (the MLSERVER_* variables of the ModelMesh ServingRuntime)."
sed -E -e "s/^pass = \[(.*)\]\$/pass = [\1, $pass]/" <<<"$src"
