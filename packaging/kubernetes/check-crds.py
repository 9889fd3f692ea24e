#!/usr/bin/env python3
"""Checks the custom-resource manifests (Istio AuthorizationPolicy and IstioOperator, KServe
ServingRuntime), whose CRD schemas cannot be downloaded here, against strict schemas written from
the projects' documented APIs for the fields these manifests use (unknown fields are refused), plus stockade's
own requirements. The ServingRuntimes' containers and volumes are handed on as a Pod, built the
way the ModelMesh controller builds the runtime Deployment (models-dir emptyDir mounted at
/models in every runtime container), so kubernetes-validate and check-pss.py check them.

    check-crds.py pods OUTDIR FILE...          write OUTDIR/<name>.pod.yaml per ServingRuntime
    check-crds.py check [--self-test] FILE...  schemas + stockade requirements (+ mutations)
    check-crds.py authz MLSERVER_PYTHON [--self-test] FILE...
        every model-repository route of the installed MLServer (HTTP routes whose handler is
        ModelRepositoryEndpoints; gRPC methods of the servicers that call the repository handlers),
        derived from the package now, must be denied; the inference routes must not be;
        with the shipped IstioOperator's meshConfig.pathNormalization, no spelling of an HTTP
        repository route (%2F, %5C, //, dot segments, encoded letters), normalized as Istio
        documents it, may reach a repository endpoint of the real MLServer app past the policy
    check-crds.py dryrun STOCKADE REPO_DIR WORKDIR FILE...
        each ServingRuntime's exact stockade argv and env, through the real binary (--dry-run),
        against the real installed Triton / MLServer; the runtime's management port must come out
        on loopback

Needs PyYAML and jsonschema (both installed with kubernetes-validate by .ci/package.sh).
"""
import copy
import shutil
import json
import os
import re
import subprocess
import sys

import jsonschema
import yaml

DNS1123 = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
STRS = {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1}
STRMAP = {"type": "object", "additionalProperties": {"type": "string"}}


def obj(props, required=()):
    return {"type": "object", "properties": props, "required": list(required),
            "additionalProperties": False}


METADATA = obj({"name": {"type": "string", "pattern": DNS1123, "maxLength": 253},
                "namespace": {"type": "string", "pattern": DNS1123},
                "labels": STRMAP, "annotations": STRMAP}, ["name"])

# Istio security.istio.io/v1 AuthorizationPolicy
# (istio.io/latest/docs/reference/config/security/authorization-policy/).
# Path/host values: exact, prefix "x*", suffix "*x" or "*" (Istio's documented matching).
ISTIO_PATH = {"type": "string", "pattern": r"^(\*|\*[^*]+|/[^*]*\*?)$"}
PORT_STR = {"type": "string", "pattern": r"^[0-9]{1,5}$"}
SOURCE = obj({k: STRS for k in (
    "principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals", "namespaces",
    "notNamespaces", "ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks")})
OPERATION = obj({
    "hosts": STRS, "notHosts": STRS,
    "ports": {"type": "array", "items": PORT_STR, "minItems": 1},
    "notPorts": {"type": "array", "items": PORT_STR, "minItems": 1},
    "methods": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": r"^([A-Z]+|\*|/.*)$"}},
    "notMethods": STRS,
    "paths": {"type": "array", "items": ISTIO_PATH, "minItems": 1},
    "notPaths": {"type": "array", "items": ISTIO_PATH, "minItems": 1}})
RULE = obj({
    "from": {"type": "array", "minItems": 1, "items": obj({"source": SOURCE}, ["source"])},
    "to": {"type": "array", "minItems": 1, "items": obj({"operation": OPERATION}, ["operation"])},
    "when": {"type": "array", "minItems": 1,
             "items": obj({"key": {"type": "string", "minLength": 1}, "values": STRS,
                           "notValues": STRS}, ["key"])}})
AUTHZ = obj({
    "apiVersion": {"enum": ["security.istio.io/v1", "security.istio.io/v1beta1"]},
    "kind": {"const": "AuthorizationPolicy"},
    "metadata": METADATA,
    "spec": {**obj({
        "selector": obj({"matchLabels": {**STRMAP, "minProperties": 1}}, ["matchLabels"]),
        "action": {"enum": ["ALLOW", "DENY", "AUDIT", "CUSTOM"]},
        "provider": obj({"name": {"type": "string", "minLength": 1}}, ["name"]),
        "rules": {"type": "array", "items": RULE}}),
        # CUSTOM needs a provider, and only CUSTOM takes one.
        "if": {"properties": {"action": {"const": "CUSTOM"}}, "required": ["action"]},
        "then": {"required": ["provider"]}, "else": {"not": {"required": ["provider"]}}}},
    ["apiVersion", "kind", "metadata", "spec"])

# KServe serving.kserve.io/v1alpha1 ServingRuntime (kserve pkg/apis/serving/v1alpha1,
# servingruntime_types.go), the ModelMesh fields. containers/volumes are Kubernetes types and are
# validated by kubernetes-validate on the derived Pod.
ENDPOINT = {"type": "string", "pattern": r"^(port:[0-9]{1,5}|unix:/[^ ]+)$"}
SERVING_RUNTIME = obj({
    "apiVersion": {"const": "serving.kserve.io/v1alpha1"},
    "kind": {"const": "ServingRuntime"},
    "metadata": METADATA,
    "spec": obj({
        "supportedModelFormats": {"type": "array", "minItems": 1, "items": obj({
            "name": {"type": "string", "minLength": 1}, "version": {"type": "string"},
            "autoSelect": {"type": "boolean"}, "priority": {"type": "integer", "minimum": 1}},
            ["name"])},
        "protocolVersions": {"type": "array", "minItems": 1,
                             "items": {"enum": ["v1", "v2", "grpc-v1", "grpc-v2"]}},
        "multiModel": {"type": "boolean"},
        "disabled": {"type": "boolean"},
        "replicas": {"type": "integer", "minimum": 0},
        "grpcEndpoint": ENDPOINT,
        "grpcDataEndpoint": ENDPOINT,
        "httpDataEndpoint": ENDPOINT,
        "storageHelper": obj({"disabled": {"type": "boolean"}}),
        "builtInAdapter": obj({
            "serverType": {"enum": ["triton", "mlserver", "ovms", "torchserve"]},
            "runtimeManagementPort": {"type": "integer", "minimum": 1, "maximum": 65535},
            "memBufferBytes": {"type": "integer", "minimum": 0},
            "modelLoadingTimeoutMillis": {"type": "integer", "minimum": 0},
            "env": {"type": "array", "items": {"type": "object"}}},
            ["serverType", "runtimeManagementPort"]),
        "containers": {"type": "array", "minItems": 1, "items": {"type": "object"}},
        "volumes": {"type": "array", "items": {"type": "object"}},
        "nodeSelector": STRMAP, "labels": STRMAP, "annotations": STRMAP,
        "affinity": {"type": "object"},
        "tolerations": {"type": "array", "items": {"type": "object"}},
        "imagePullSecrets": {"type": "array", "items": {"type": "object"}}},
        ["supportedModelFormats", "containers"])},
    ["apiVersion", "kind", "metadata", "spec"])

# Istio install.istio.io/v1alpha1 IstioOperator, only spec.meshConfig.pathNormalization
# (istio.io reference "Global Mesh Options", MeshConfig.ProxyPathNormalization).
NORMALIZATIONS = ["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"]
ISTIO_OPERATOR = obj({
    "apiVersion": {"const": "install.istio.io/v1alpha1"},
    "kind": {"const": "IstioOperator"},
    "metadata": METADATA,
    "spec": obj({"meshConfig": obj({"pathNormalization": obj(
        {"normalization": {"enum": NORMALIZATIONS}}, ["normalization"])}, ["pathNormalization"])},
        ["meshConfig"])},
    ["apiVersion", "kind", "metadata", "spec"])

SCHEMAS = {"AuthorizationPolicy": AUTHZ, "ServingRuntime": SERVING_RUNTIME,
           "IstioOperator": ISTIO_OPERATOR}
MODELS_DIR, MODELS_VOLUME = "/models", "models-dir"  # modelmesh-serving controllers/modelmesh
STOCKADE = "/usr/bin/stockade"
EXEC_PRELUDE = re.compile(r'^mkdir -p -m 0777 (/models/_[a-z]+_models) && exec "\$0" "\$@"$')


def load(files):
    return [(f, d) for f in files for d in yaml.safe_load_all(open(f)) if d]


def stockade_argv(c):
    """(model dir the prelude creates, stockade argv) of a runtime container, or raise."""
    cmd = c.get("command") or []
    if cmd[:2] == ["/bin/sh", "-c"] and len(cmd) > 3:
        m = EXEC_PRELUDE.match(cmd[2])
        if not m:
            raise ValueError(f"the shell step must be exactly {EXEC_PRELUDE.pattern!r}")
        made, argv = m.group(1), cmd[3:] + (c.get("args") or [])
    else:
        made, argv = None, cmd + (c.get("args") or [])
    return made, argv


# ------------------------------------------------------------------ requirements
def runtime_problems(doc):
    out = []
    spec = doc.get("spec") or {}
    name = (doc.get("metadata") or {}).get("name")
    adapter = spec.get("builtInAdapter") or {}
    containers = spec.get("containers") or []
    vols = {v.get("name"): v for v in spec.get("volumes") or []}
    if spec.get("multiModel") is not True:
        out.append(f"{name}: multiModel must be true (ModelMesh)")
    if MODELS_VOLUME in vols:
        out.append(f"{name}: volume {MODELS_VOLUME} is the controller's; do not declare it")
    server = next((c for c in containers if c.get("name") == adapter.get("serverType")), None)
    if server is None:
        out.append(f"{name}: no container named after builtInAdapter.serverType "
                   f"{adapter.get('serverType')!r} (the controller looks it up by that name)")
    port = adapter.get("runtimeManagementPort")
    if spec.get("grpcDataEndpoint") != f"port:{port}":
        out.append(f"{name}: grpcDataEndpoint must be port:{port} (the runtime management port)")
    for c in containers:
        w = f"{name}/{c.get('name')}"
        sc = c.get("securityContext") or {}
        caps = sc.get("capabilities") or {}
        for key, want in (("runAsNonRoot", True), ("allowPrivilegeEscalation", False),
                          ("readOnlyRootFilesystem", True), ("privileged", False)):
            if sc.get(key) is not want:
                out.append(f"{w}: securityContext.{key} must be {want}")
        if not isinstance(sc.get("runAsUser"), int) or sc.get("runAsUser") == 0:
            out.append(f"{w}: securityContext.runAsUser must be a non-zero uid (no pod-level "
                       "securityContext in a ServingRuntime)")
        if caps.get("drop") != ["ALL"] or caps.get("add"):
            out.append(f"{w}: capabilities must drop exactly [ALL] and add nothing")
        if (sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            out.append(f"{w}: seccompProfile must be RuntimeDefault")
        if c.get("ports"):
            out.append(f"{w}: no container ports: the runtime listens on loopback only")
        mounts = {m.get("mountPath"): m for m in c.get("volumeMounts") or []}
        if MODELS_DIR in mounts:
            out.append(f"{w}: {MODELS_DIR} is mounted by the controller; do not mount it")
        for path, medium in (("/tmp", None), ("/dev/shm", "Memory")):
            v = vols.get((mounts.get(path) or {}).get("name"))
            if not (v and "emptyDir" in v and (medium is None or v["emptyDir"].get("medium") == medium)):
                out.append(f"{w}: {path} must be an emptyDir" + (f" (medium {medium})" if medium else ""))
        for m in mounts.values():
            v = vols.get(m.get("name")) or {}
            if "configMap" in v and not m.get("readOnly"):
                out.append(f"{w}: the profile ConfigMap must be mounted readOnly")
        try:
            made, argv = stockade_argv(c)
        except ValueError as e:
            out.append(f"{w}: {e}")
            continue
        if argv[:2] != [STOCKADE, "--profile"] or len(argv) < 5 or argv[3] != "--":
            out.append(f"{w}: the process must be `{STOCKADE} --profile P -- SERVER...`")
            continue
        prof = argv[2]
        if prof.startswith("/"):
            if not any(prof.startswith(p + "/") and m.get("readOnly") and "configMap" in vols.get(m["name"], {})
                       for p, m in mounts.items()):
                out.append(f"{w}: profile {prof} must come from a read-only ConfigMap mount")
        # Triton: ModelMesh's adapter loads over loopback gRPC without metadata, which only the
        # built-in triton-modelmesh allows (triton-explicit refuses it, triton has no model
        # control); its restricted-API secrets go to /run/stockade, on a writable emptyDir.
        if c.get("name") == "triton":
            if prof != "triton-modelmesh":
                out.append(f"{w}: Triton under ModelMesh needs --profile triton-modelmesh (the "
                           f"adapter's RepositoryModelLoad carries no header; got {prof!r})")
            run = vols.get((mounts.get("/run") or {}).get("name")) or {}
            if "emptyDir" not in run or mounts["/run"].get("readOnly"):
                out.append(f"{w}: /run must be a writable emptyDir (/run/stockade/*.secret)")
        elif not (prof.startswith("/") or prof == "mlserver"):
            out.append(f"{w}: MLServer needs an mlserver profile (got {prof!r})")
        server_argv = argv[4:]
        repo = next((a.split("=", 1)[1] for a in server_argv if a.startswith("--model-repository=")), None)
        if server_argv[:2] == ["mlserver", "start"] and len(server_argv) == 3:
            repo = server_argv[2]
        if repo is None or not repo.startswith(MODELS_DIR + "/_"):
            out.append(f"{w}: the model repository must be the adapter's directory under {MODELS_DIR}")
        elif made != repo:
            out.append(f"{w}: the shell step must create the repository {repo} (made {made})")
        if any(re.match(r"^--(http|grpc|metrics)-address", a) for a in server_argv):
            out.append(f"{w}: listener addresses come from the profile (loopback), not the args")
        if any(e.get("name") == "MLSERVER_HOST" for e in c.get("env") or []):
            out.append(f"{w}: MLSERVER_HOST comes from the profile (loopback), not the env")
    return out


def check(files, self_test):
    docs = load(files)
    fails = 0
    def report(what, problems):
        nonlocal fails
        for p in problems:
            print(f"FAIL {what}: {p}")
        fails += bool(problems)
        if not problems:
            print(f"ok   {what}")
    for f, d in docs:
        kind = d.get("kind")
        if kind not in SCHEMAS:
            continue
        what = f"{os.path.basename(f)} {kind}/{d['metadata'].get('name')}"
        errs = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}"
                for e in jsonschema.Draft202012Validator(SCHEMAS[kind]).iter_errors(d)]
        report(f"{what}: strict schema", errs)
        if kind == "ServingRuntime":
            report(f"{what}: stockade requirements", runtime_problems(d))
    if self_test:
        fails += self_test_check(docs)
    return fails


def mutations():
    """(description, kind, function mutating a document in place): each must be refused."""
    c0 = lambda d: d["spec"]["containers"][0]
    sc = lambda d: c0(d)["securityContext"]
    return [
        ("unknown top-level spec field (AuthorizationPolicy)", "AuthorizationPolicy",
         lambda d: d["spec"].update(bogus=1)),
        ("unknown operation field", "AuthorizationPolicy",
         lambda d: d["spec"]["rules"][0]["to"][0]["operation"].update(path=["/x"])),
        ("action outside ALLOW/DENY/AUDIT/CUSTOM", "AuthorizationPolicy",
         lambda d: d["spec"].update(action="REJECT")),
        ("CUSTOM without a provider", "AuthorizationPolicy",
         lambda d: d["spec"].update(action="CUSTOM")),
        ("a provider without CUSTOM", "AuthorizationPolicy",
         lambda d: d["spec"].update(provider={"name": "x"})),
        ("a path with an inner wildcard", "AuthorizationPolicy",
         lambda d: d["spec"]["rules"][0]["to"][0]["operation"]["paths"].append("/v2/*/load")),
        ("matchLabels missing", "AuthorizationPolicy", lambda d: d["spec"]["selector"].clear()),
        ("metadata name not DNS-1123", "AuthorizationPolicy", lambda d: d["metadata"].update(name="Bad_Name")),
        ("unknown ServingRuntime spec field", "ServingRuntime", lambda d: d["spec"].update(hostNetwork=True)),
        ("unknown builtInAdapter field", "ServingRuntime", lambda d: d["spec"]["builtInAdapter"].update(port=1)),
        ("unknown serverType", "ServingRuntime", lambda d: d["spec"]["builtInAdapter"].update(serverType="x")),
        ("bad grpcEndpoint", "ServingRuntime", lambda d: d["spec"].update(grpcEndpoint="8085")),
        ("multiModel false", "ServingRuntime", lambda d: d["spec"].update(multiModel=False)),
        ("runAsNonRoot false", "ServingRuntime", lambda d: sc(d).update(runAsNonRoot=False)),
        ("runAsUser 0", "ServingRuntime", lambda d: sc(d).update(runAsUser=0)),
        ("allowPrivilegeEscalation true", "ServingRuntime", lambda d: sc(d).update(allowPrivilegeEscalation=True)),
        ("readOnlyRootFilesystem false", "ServingRuntime", lambda d: sc(d).update(readOnlyRootFilesystem=False)),
        ("privileged true", "ServingRuntime", lambda d: sc(d).update(privileged=True)),
        ("capability added", "ServingRuntime", lambda d: sc(d)["capabilities"].update(add=["NET_RAW"])),
        ("drop not ALL", "ServingRuntime", lambda d: sc(d)["capabilities"].update(drop=["NET_RAW"])),
        ("seccomp Unconfined", "ServingRuntime", lambda d: sc(d).update(seccompProfile={"type": "Unconfined"})),
        ("a container port", "ServingRuntime", lambda d: c0(d).update(ports=[{"containerPort": 8001}])),
        ("stockade not the process", "ServingRuntime",
         lambda d: c0(d).update(command=c0(d)["command"][:3] + ["/usr/bin/env"] + c0(d)["command"][4:])),
        ("a different shell step", "ServingRuntime",
         lambda d: c0(d)["command"].__setitem__(2, c0(d)["command"][2] + "; true")),
        ("no -- before the server", "ServingRuntime", lambda d: c0(d)["command"].pop()),
        ("listener address in args", "ServingRuntime", lambda d: c0(d)["args"].append("--grpc-address=0.0.0.0")),
        ("MLSERVER_HOST in env", "ServingRuntime",
         lambda d: c0(d).setdefault("env", []).append({"name": "MLSERVER_HOST", "value": "0.0.0.0"})),
        ("/tmp not mounted", "ServingRuntime",
         lambda d: c0(d).update(volumeMounts=[m for m in c0(d)["volumeMounts"] if m["mountPath"] != "/tmp"])),
        ("/models mounted by the runtime", "ServingRuntime",
         lambda d: c0(d)["volumeMounts"].append({"name": "tmp", "mountPath": "/models"})),
        ("data endpoint not the management port", "ServingRuntime",
         lambda d: d["spec"].update(grpcDataEndpoint="port:9999")),
        ("adapter serverType names no container", "ServingRuntime",
         lambda d: c0(d).update(name="server")),
        ("unknown meshConfig field", "IstioOperator",
         lambda d: d["spec"]["meshConfig"].update(defaultConfig={})),
        ("normalization not an Istio value", "IstioOperator",
         lambda d: d["spec"]["meshConfig"]["pathNormalization"].update(normalization="DECODE")),
        ("profile triton-explicit (the adapter's loads refused)", "ServingRuntime",
         lambda d: c0(d)["command"].__setitem__(c0(d)["command"].index("--profile") + 1,
                                                "triton-explicit")),
    ]


def self_test_check(docs):
    fails = 0
    for what, kind, mutate in mutations():
        base = next((d for _, d in docs if d.get("kind") == kind), None)
        if base is None:
            print(f"FAIL self-test: no {kind} to mutate")
            fails += 1
            continue
        for _, d in docs:
            if d.get("kind") != kind:
                continue
            m = copy.deepcopy(d)
            try:
                mutate(m)
            except (KeyError, IndexError):
                print(f"FAIL self-test: cannot apply {what!r} to {kind}/{d['metadata']['name']}")
                fails += 1
                continue
            caught = any(True for _ in jsonschema.Draft202012Validator(SCHEMAS[kind]).iter_errors(m))
            if kind == "ServingRuntime":
                caught = caught or bool(runtime_problems(m))
            if not caught:
                print(f"FAIL self-test: {what} not caught in {kind}/{d['metadata']['name']}")
                fails += 1
    if not fails:
        print(f"ok   self-test: all {len(mutations())} mutations caught on every document of their kind")
    return fails


# ------------------------------------------------------------------ derived Pods
def pods(outdir, files):
    for f, d in load(files):
        if d.get("kind") != "ServingRuntime":
            continue
        spec = copy.deepcopy(d["spec"])
        containers = spec["containers"]
        for c in containers:  # as modelmesh-serving's addRuntimeToDeployment does
            c["volumeMounts"] = [{"name": MODELS_VOLUME, "mountPath": MODELS_DIR}] + c.get("volumeMounts", [])
        volumes = spec.get("volumes", []) + [{"name": MODELS_VOLUME, "emptyDir": {"sizeLimit": "1536Mi"}}]
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": d["metadata"]["name"]},
               "spec": {"containers": containers, "volumes": volumes,
                        "automountServiceAccountToken": False}}
        for k in ("nodeSelector", "affinity", "tolerations", "imagePullSecrets"):
            if k in spec:
                pod["spec"][k] = spec[k]
        out = os.path.join(outdir, d["metadata"]["name"] + ".pod.yaml")
        with open(out, "w") as fh:
            yaml.safe_dump(pod, fh, sort_keys=False)
        print(out)
    return 0


# ------------------------------------------------------------------ MLServer repository routes
ROUTES = r'''
import ast, importlib, inspect, json, pkgutil, re, textwrap
import mlserver.grpc
from mlserver.handlers import ModelRepositoryHandlers
from mlserver.settings import Settings
from mlserver.rest.app import create_app
from mlserver.rest.endpoints import ModelRepositoryEndpoints
app = create_app(Settings(), None, None)
http = [(r.path, isinstance(getattr(r.endpoint, "__self__", None), ModelRepositoryEndpoints))
        for r in app.routes if hasattr(r, "endpoint")]
mods = [importlib.import_module("mlserver.grpc." + m.name)
        for m in pkgutil.iter_modules(mlserver.grpc.__path__)]
classes = {c for m in mods for c in vars(m).values() if inspect.isclass(c)}
def repo_attrs(impl):
    """self.<attr> names bound to a ModelRepositoryHandlers argument of __init__."""
    sig = inspect.signature(impl.__init__)
    params = [n for n, p in sig.parameters.items() if p.annotation is ModelRepositoryHandlers]
    src = inspect.getsource(impl.__init__)
    return [a for n in params for a in re.findall(r"self\.(\w+)\s*=\s*" + n + r"\b", src)]
grpc = []
for m in mods:
    if not m.__name__.endswith("_pb2"):
        continue
    for svc in m.DESCRIPTOR.services_by_name.values():
        impls = [c for c in classes if any(b.__name__ == svc.name + "Servicer"
                 and b.__module__.endswith("_pb2_grpc") for b in c.__mro__[1:])]
        assert len(impls) == 1, (svc.full_name, impls)
        attrs = repo_attrs(impls[0])
        assert attrs, ("no ModelRepositoryHandlers in", impls[0])
        # The methods' own source, from the class body (their decorators do not functools.wraps).
        body = {f.name: f for f in ast.parse(textwrap.dedent(inspect.getsource(impls[0]))).body[0].body
                if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
        for meth in svc.methods:
            uses = {n.attr for n in ast.walk(body[meth.name]) if isinstance(n, ast.Attribute)
                    and isinstance(n.value, ast.Name) and n.value.id == "self"}
            grpc.append(("/%s/%s" % (svc.full_name, meth.name), bool(uses & set(attrs))))
print(json.dumps({"http": http, "grpc": grpc}))
'''


# Which route of the installed MLServer's real FastAPI app a request path reaches: uvicorn
# percent-decodes the raw path once (`unquote`) and Starlette routes on the result.
MATCH = r'''
import json, sys
from urllib.parse import unquote
from starlette.routing import Match
from mlserver.settings import Settings
from mlserver.rest.app import create_app
app = create_app(Settings(), None, None)
out = {}
for raw in json.load(sys.stdin):
    scope = {"type": "http", "method": "POST", "path": unquote(raw), "raw_path": raw.encode(),
             "root_path": "", "query_string": b"", "headers": []}
    out[raw] = next((r.path for r in app.routes if hasattr(r, "endpoint")
                     and r.matches(scope)[0] == Match.FULL), None)
print(json.dumps(out))
'''

UNRESERVED = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def remove_dot_segments(path):
    out = []
    for seg in path.split("/")[1:]:
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    tail = "/" if path.endswith(("/.", "/..")) else ""
    return "/" + "/".join(out) + tail


def envoy_path(path, mode):
    """The path Istio's sidecar matches policies against AND forwards to the backend, per Istio's
    "Authorization Policy Normalization" reference: %00 rejected (None); BASE decodes the
    percent-encoded unreserved characters once (no double decoding), turns backslashes into
    slashes and resolves dot segments (RFC 3986); MERGE_SLASHES also merges slashes;
    DECODE_AND_MERGE_SLASHES also decodes %2F and %5C. A model of the documented behaviour, not
    Envoy itself."""
    if re.search(r"%00", path):
        return None
    if mode == "NONE":
        return path
    decode = UNRESERVED | ({"/", "\\"} if mode == "DECODE_AND_MERGE_SLASHES" else set())
    def dec(m):
        c = chr(int(m.group(1), 16))
        return c if c in decode else m.group(0)
    p = re.sub(r"%([0-9A-Fa-f]{2})", dec, path).replace("\\", "/")
    if mode in ("MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"):
        p = re.sub(r"/{2,}", "/", p)
    return remove_dot_segments(p)


def variants(path):
    """Spellings of one request path that a client could send to reach the same route."""
    segs = path.split("/")[1:]
    out = {path}
    for sep in ("%2F", "%2f", "%5C", "%5c", "\\", "//", "/./", "%252F"):
        out.add("/" + sep.join(segs))
        for i in range(1, len(segs)):
            out.add("/" + "/".join(segs[:i]) + sep + "/".join(segs[i:]))
    out.add("/" + "/".join(segs[:-1] + ["".join("%%%02X" % ord(c) for c in segs[-1])]))
    out.add("/x/.." + path)
    out.add("/" + "/".join(segs[:1] + ["%2E", *segs[1:]]))
    return sorted(out)


def istio_match(pattern, path):
    if pattern == "*":
        return True
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    if pattern.startswith("*"):
        return path.endswith(pattern[1:])
    return path == pattern


def instances(route):
    """Concrete request paths for a route template (names with the characters a model may use)."""
    return [re.sub(r"\{[^}]+\}", v, route) for v in ("m", "my-model_1.2", "repository")]


def denied(policy, path):
    rules = policy["spec"].get("rules") or []
    return any(any(istio_match(p, path) for p in t["operation"].get("paths", ["*"]))
               for r in rules for t in r.get("to") or [{"operation": {}}])


def authz(mlpython, files, self_test):
    out = subprocess.run([mlpython, "-c", ROUTES], capture_output=True, text=True, timeout=120,
                         cwd="/")
    if out.returncode:
        print(out.stderr[-2000:])
        print("FAIL cannot list the installed MLServer's routes")
        return 1
    routes = json.loads(out.stdout.strip().splitlines()[-1])
    repo = [r for r, is_repo in routes["http"] + routes["grpc"] if is_repo]
    other = [r for r, is_repo in routes["http"] + routes["grpc"] if not is_repo]
    fails = 0
    policies = [d for _, d in load(files) if d.get("kind") == "AuthorizationPolicy"
                and d["metadata"]["name"].startswith("mlserver")]
    if not policies:
        print("FAIL no mlserver AuthorizationPolicy")
        return 1
    meshes = [d for _, d in load(files) if d.get("kind") == "IstioOperator"]
    if len(meshes) != 1:
        print(f"FAIL expected one IstioOperator (the mesh's path normalization), got {len(meshes)}")
        return 1
    shipped = meshes[0]["spec"]["meshConfig"]["pathNormalization"]["normalization"]
    # Every spelling of every HTTP repository route, through each normalization, to the route
    # the real MLServer app gives the forwarded path.
    http_repo = [r for r, is_repo in routes["http"] if is_repo]
    spellings = sorted({v for r in http_repo for path in instances(r) for v in variants(path)})
    forwarded = {(v, m): envoy_path(v, m) for v in spellings for m in NORMALIZATIONS}
    out = subprocess.run([mlpython, "-c", MATCH], capture_output=True, text=True, timeout=120,
                         cwd="/", input=json.dumps(sorted({f for f in forwarded.values() if f})))
    if out.returncode:
        print(out.stderr[-2000:])
        print("FAIL cannot route paths through the installed MLServer's app")
        return 1
    reaches = json.loads(out.stdout.strip().splitlines()[-1])
    if any(reaches.get(p) not in http_repo for r in http_repo for p in instances(r)):
        print("FAIL the plain repository paths do not route to the repository endpoints")
        return 1

    def bypasses(pol, mode):
        """Spellings that reach a repository endpoint although the policy does not deny them."""
        return [v for v in spellings if (f := forwarded[(v, mode)]) is not None
                and reaches.get(f) in http_repo and not denied(pol, f)]
    if len(repo) < 6 or not other:
        print(f"FAIL implausible route list from the installed MLServer: {routes}")
        return 1
    print(f"     installed MLServer: {len(repo)} model-repository routes {repo}, {len(other)} others")

    def problems(pol):
        p = []
        if pol["spec"].get("action") != "DENY":
            p.append("action must be DENY")
        if any("from" in r or "when" in r for r in pol["spec"].get("rules") or []):
            p.append("the deny must hold for every caller (no from/when conditions)")
        p += [f"{path} (from {r}) not denied" for r in repo for path in instances(r)
              if not denied(pol, path)]
        p += [f"{path} (from {r}) is denied but serves inference"
              for r in other for path in instances(r) if denied(pol, path)]
        p += [f"{v} reaches a repository endpoint past the policy (mesh normalization {mode})"
              for v in bypasses(pol, mode)[:3]]
        return p

    mode = shipped

    for pol in policies:
        p = problems(pol)
        for x in p:
            print(f"FAIL {pol['metadata']['name']}: {x}")
        if not p:
            print(f"ok   {pol['metadata']['name']}: denies every model-repository route of the "
                  "installed MLServer (HTTP and gRPC) and no inference route")
            print(f"ok   {pol['metadata']['name']} + meshConfig.pathNormalization {shipped}: none "
                  f"of {len(spellings)} spellings (%2F, %5C, //, dot segments, encoded letters) "
                  "reaches a repository endpoint of the real MLServer app past the policy")
        fails += bool(p)
        if self_test:
            ops = [t["operation"] for r in pol["spec"]["rules"] for t in r["to"]]
            muts = []
            for i, path in enumerate(ops[0]["paths"]):
                if path == "/v2/repository":
                    continue  # belt and braces: no route is exactly /v2/repository
                m = copy.deepcopy(pol)
                del m["spec"]["rules"][0]["to"][0]["operation"]["paths"][i]
                muts.append((f"without {path}", m))
            m = copy.deepcopy(pol); m["spec"]["action"] = "AUDIT"; muts.append(("action AUDIT", m))
            m = copy.deepcopy(pol); m["spec"]["rules"][0]["to"][0]["operation"]["paths"].append("/v2/*")
            muts.append(("also denying /v2/*", m))
            m = copy.deepcopy(pol); m["spec"]["rules"][0]["from"] = [{"source": {"notPrincipals": ["*"]}}]
            muts.append(("only for unauthenticated callers", m))
            missed = [w for w, m in muts if not problems(m)]
            # Weaker mesh normalizations let an encoded spelling through (the check can fail).
            for weaker in NORMALIZATIONS[:-1]:
                found = bypasses(pol, weaker)
                if found:
                    print(f"ok   self-test: normalization {weaker} lets {found[0]} through")
                else:
                    missed.append(f"under normalization {weaker}")
            for w in missed:
                print(f"FAIL self-test: policy {w} still passes")
            if not missed:
                print(f"ok   self-test: {len(muts)} weakened policies all caught (each path is needed)")
            fails += bool(missed)
    return fails


# ------------------------------------------------------------------ dry runs
TRITON_ENV = os.environ.get("STOCKADE_TRITON_DIR", "/opt/stockade/triton") + "/env.sh"
MLSERVER_BIN = os.environ.get("STOCKADE_MLSERVER_DIR", "/opt/stockade/mlserver") + "/venv/bin"
ROOTLESS = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
            "--bounding-set=-all"]
def dryrun(stockade, repo_dir, workdir, files):
    fails = 0
    triton = dict(l.split("=", 1) for l in subprocess.run(
        ["bash", "-c", '. "$0" && env', TRITON_ENV], capture_output=True,
        text=True, check=True).stdout.splitlines() if "=" in l)
    for f, d in load(files):
        if d.get("kind") != "ServingRuntime":
            continue
        spec = d["spec"]
        port = spec["builtInAdapter"]["runtimeManagementPort"]
        c = next(c for c in spec["containers"] if c["name"] == spec["builtInAdapter"]["serverType"])
        made, argv = stockade_argv(c)
        own = os.path.join(workdir, "stockade")  # reachable by uid 65534 for the rootless run
        if not os.path.exists(own):
            shutil.copy(stockade, own)
            os.chmod(own, 0o755)
        models = os.path.join(workdir, d["metadata"]["name"], made.lstrip("/"))
        os.makedirs(models, exist_ok=True)
        for p in (workdir, os.path.join(workdir, d["metadata"]["name"])):
            os.chmod(p, 0o755)
        os.chmod(models, 0o777)  # what the manifest's `mkdir -m 0777` makes
        argv = [a.replace(made, models) for a in argv]
        argv[0] = own
        env = {"PATH": "/usr/bin:/bin"}
        env.update({e["name"]: e["value"] for e in c.get("env") or []})
        prof = argv[2]
        if prof.startswith("/"):  # the ConfigMap: built from the built-in profile as README says
            builtin = "mlserver" if "mlserver" in prof else "triton"
            text = subprocess.run([stockade, "--print-profile", builtin], capture_output=True,
                                  text=True, check=True).stdout
            gen = os.path.join(repo_dir, "packaging/kubernetes/make-mlserver-modelmesh-profile.sh")
            text = subprocess.run([gen], input=text, capture_output=True, text=True, check=True).stdout
            argv[2] = os.path.join(workdir, os.path.basename(prof))
            with open(argv[2], "w") as fh:
                fh.write(text)
        server = argv[4]
        if server == "tritonserver":
            argv[4] = triton["TRITONSERVER"]
            # The image's Triton lives in /opt/tritonserver; this machine's elsewhere.
            argv.append("--backend-directory=" + triton["TRITON_BACKENDS"])
            want = (f"model-repository API (RepositoryIndex, RepositoryModelLoad, "
                    f"RepositoryModelUnload) open WITHOUT a header on gRPC 127.0.0.1:{port} only")
        elif server == "mlserver":
            env["PATH"] = MLSERVER_BIN + ":/usr/bin:/bin"
            want = f"grpc 127.0.0.1:{port}"
        else:
            print(f"FAIL {d['metadata']['name']}: unknown server {server}")
            fails += 1
            continue
        cmd = argv[:3] + ["--dry-run"] + argv[3:]
        print("+ " + " ".join(f"{k}={v}" for k, v in env.items()) + " " + " ".join(cmd))
        # As root (full id drop) and rootless as in the pod: a non-root uid with no capabilities.
        for mode, pre, ident in (("root", [], "identity     Root:"),
                                 ("rootless", ROOTLESS, "identity     Rootless:")):
            r = subprocess.run(pre + cmd, env=env, capture_output=True, text=True, timeout=60, cwd="/")
            text = r.stdout + r.stderr
            ok = (r.returncode == 0 and want in text and ident in text
                  and "enforceable  yes" in text)
            if ok:
                print(f"ok   {d['metadata']['name']} ({mode}): stockade accepts the manifest's argv; {want!r}")
            else:
                print("\n".join("     | " + l for l in text.splitlines()[-25:]))
                print(f"FAIL {d['metadata']['name']} ({mode}): dry run exit {r.returncode}, wanted {want!r}")
                fails += 1
    return fails


def main(argv):
    if len(argv) > 2 and argv[1] == "pods":
        return pods(argv[2], argv[3:])
    if len(argv) > 2 and argv[1] == "check":
        st = "--self-test" in argv
        return 1 if check([a for a in argv[2:] if a != "--self-test"], st) else 0
    if len(argv) > 3 and argv[1] == "authz":
        st = "--self-test" in argv
        return 1 if authz(argv[2], [a for a in argv[3:] if a != "--self-test"], st) else 0
    if len(argv) > 5 and argv[1] == "dryrun":
        return 1 if dryrun(argv[2], argv[3], argv[4], argv[5:]) else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
