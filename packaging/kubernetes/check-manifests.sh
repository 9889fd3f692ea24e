#!/usr/bin/env bash
# Validates packaging/kubernetes/*.yaml:
#   1. against the Kubernetes OpenAPI schema (kubernetes-validate from PyPI, which ships the
#      schemas, strict mode: unknown fields fail) for the oldest and newest supported versions:
#      the plain Kubernetes manifests, and the Pods the ModelMesh controller would build from the
#      ServingRuntimes (check-crds.py pods);
#   2. against Pod Security "restricted" (check-pss.py, with its self-test);
#   3. stockade's own requirements for the Triton Deployment (read-only root, emptyDirs, probes,
#      grace period above the profile's stop grace, read-only models, pod profile derivation);
#   4. the custom resources (Istio AuthorizationPolicy, KServe ServingRuntime), whose CRD schemas
#      are not available here, against strict schemas of the fields used, plus stockade's
#      requirements, each with a self-test (check-crds.py check);
#   5. the MLServer AuthorizationPolicy against the routes of the installed MLServer
#      (check-crds.py authz), and each ServingRuntime's argv dry-run through the real stockade
#      against the real Triton and MLServer, as root and rootless (check-crds.py dryrun).
#
#   check-manifests.sh [PYTHON]   PYTHON: an interpreter with kubernetes-validate installed
#                                 (default: $STOCKADE_TOOLS/bin/python, see .ci/package.sh)
# Env: STOCKADE_BIN (default $CARGO_TARGET_DIR/debug/stockade, target/ by default),
#      STOCKADE_MLSERVER_DIR (default /opt/stockade/mlserver), STOCKADE_TRITON_DIR (default
#      /opt/stockade/triton), as scripts/test.sh exports them.
#      A missing stockade, MLServer or Triton is a failure, not a skip.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
py=${1:-${STOCKADE_TOOLS:-/opt/stockade-pkg-tools}/bin/python}
kv=$(dirname "$py")/kubernetes-validate
stockade_bin=${STOCKADE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/stockade}
mlpy=${STOCKADE_MLSERVER_DIR:-/opt/stockade/mlserver}/venv/bin/python
status=0
work=$(mktemp -d /var/tmp/stockade-k8s.XXXXXX)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT
# Plain Kubernetes manifests vs custom resources (no schema in kubernetes-validate).
manifests=() crds=()
for f in "$here"/*.yaml; do
    if "$py" -c 'import sys, yaml
sys.exit(0 if all(d["kind"] not in ("AuthorizationPolicy", "ServingRuntime", "IstioOperator")
                  for d in yaml.safe_load_all(open(sys.argv[1])) if d) else 1)' "$f"; then
        manifests+=("$f")
    else
        crds+=("$f")
    fi
done
mkdir -p "$work/pods"
mapfile -t pods < <("$py" "$here/check-crds.py" pods "$work/pods" "${crds[@]}")
[ "${#pods[@]}" -ge 2 ] || { echo "FAIL expected a Pod per ServingRuntime, got ${#pods[@]}"; status=1; }

for k in ${K8S_VERSIONS:-1.30.0 1.37.0}; do
    echo "== kubernetes-validate --strict -k $k"
    "$kv" --strict -k "$k" "${manifests[@]}" "${pods[@]}" || status=1
done

echo "== Pod Security Standard: restricted"
"$py" "$here/check-pss.py" --self-test "${manifests[@]}" || status=1
# The ServingRuntime Pods carry their settings per container (a ServingRuntime has no pod-level
# securityContext), so the self-test's pod-level mutations do not apply to them.
"$py" "$here/check-pss.py" "${pods[@]}" || status=1

echo "== stockade requirements"
"$py" - "$here/triton.yaml" "$repo/profiles/triton.toml" <<'PY' || status=1
import sys, tomllib, yaml
manifest, profile = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(manifest)) if d]
dep = next(d for d in docs if d["kind"] == "Deployment")
svc = next(d for d in docs if d["kind"] == "Service")
pod = dep["spec"]["template"]["spec"]
c = pod["containers"][0]
prof = tomllib.load(open(profile, "rb"))
grace = prof["supervise"]["stop_grace_secs"]
vols = {v["name"]: v for v in pod["volumes"]}
mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
fails = 0
def check(what, cond):
    global fails
    print(("ok   " if cond else "FAIL ") + what)
    fails += 0 if cond else 1
def empty_dir_at(path, medium=None):
    m = mounts.get(path)
    v = vols.get(m["name"]) if m else None
    return bool(v and "emptyDir" in v and not m.get("readOnly")
                and (medium is None or v["emptyDir"].get("medium") == medium))
check("command is stockade with a --profile and a final --",
      c["command"][0] == "/usr/bin/stockade" and "--profile" in c["command"] and c["command"][-1] == "--")
check("server is tritonserver with --model-repository=/models",
      c["args"][0] == "tritonserver" and "--model-repository=/models" in c["args"])
check(f"terminationGracePeriodSeconds {pod['terminationGracePeriodSeconds']} > profile stop_grace_secs {grace}",
      pod["terminationGracePeriodSeconds"] > grace)
check("readOnlyRootFilesystem", c["securityContext"].get("readOnlyRootFilesystem") is True)
check("/tmp is a writable emptyDir", empty_dir_at("/tmp"))
check("/dev/shm is a writable emptyDir with medium Memory", empty_dir_at("/dev/shm", "Memory"))
secret_dir = prof["triton"]["restricted"][0]["generate_secret_file"].rsplit("/", 1)[0]
check(f"the admin secret's directory {secret_dir} is on a writable emptyDir (at it or above it)",
      any(empty_dir_at(p) and (secret_dir == p or secret_dir.startswith(p.rstrip("/") + "/"))
          for p in mounts))
check("the admin secret's directory itself is not an emptyDir (0777: stockade refuses it)",
      not empty_dir_at(secret_dir))
m = mounts.get("/models")
check("/models is mounted read-only from a PVC", bool(m and m.get("readOnly")
      and "persistentVolumeClaim" in vols[m["name"]] and vols[m["name"]]["persistentVolumeClaim"].get("readOnly")))
for probe, path in (("startupProbe", "/v2/health/ready"), ("readinessProbe", "/v2/health/ready"),
                    ("livenessProbe", "/v2/health/live")):
    p = c.get(probe, {}).get("httpGet", {})
    check(f"{probe} GET {path}", p.get("path") == path)
port = next(p for p in c["ports"] if p["name"] == "http")["containerPort"]
check(f"the container port {port} is the profile's http-port default",
      prof["triton"]["defaults"]["http-port"]["value"] == port)
check("the Service selects the pod and targets the http port",
      svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
      and svc["spec"]["ports"][0]["targetPort"] == "http")
addr = next((a.split("=", 1)[1] for a in c["args"] if a.startswith("--http-address=")), None)
check(f"--http-address={addr}: reachable by the Service and probes (not loopback)",
      addr not in (None, "127.0.0.1", "::1"))
sys.exit(1 if fails else 0)
PY

echo "== pod profile derivation"
out=$("$here/make-pod-profile.sh" "$repo/profiles/triton.toml")
if "$py" -c 'import sys, tomllib
p = tomllib.loads(sys.stdin.read())
assert "0.0.0.0" in p["triton"]["listen"]["allowed_addresses"]
ready = p.get("supervise", {}).get("ready")
assert ready is None or (not ready.get("from_server_flags") and "//127.0.0.1:" in ready["http_get"])' <<<"$out"; then
    echo "ok   make-pod-profile.sh yields valid TOML that allows 0.0.0.0, readiness probe on loopback"
else
    echo "FAIL make-pod-profile.sh"; status=1
fi
echo "== custom resources: strict schemas and stockade requirements"
"$py" "$here/check-crds.py" check --self-test "${crds[@]}" || status=1

echo "== MLServer AuthorizationPolicy against the installed MLServer's routes"
if [ -x "$mlpy" ]; then
    "$py" "$here/check-crds.py" authz "$mlpy" --self-test "${crds[@]}" || status=1
else
    echo "FAIL no MLServer at $mlpy (scripts/install-mlserver.sh)"; status=1
fi

echo "== ServingRuntime argv through the real stockade (--dry-run), root and rootless"
if [ ! -x "$stockade_bin" ]; then
    echo "FAIL no stockade binary at $stockade_bin (cargo build, or set STOCKADE_BIN)"; status=1
elif [ ! -f "${STOCKADE_TRITON_DIR:-/opt/stockade/triton}/env.sh" ] || [ ! -x "$mlpy" ]; then
    echo "FAIL Triton (scripts/install-triton.sh) and MLServer (scripts/install-mlserver.sh) must be installed"; status=1
else
    "$py" "$here/check-crds.py" dryrun "$stockade_bin" "$repo" "$work" "${crds[@]}" || status=1
fi
exit $status
