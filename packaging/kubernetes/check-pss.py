#!/usr/bin/env python3
"""Checks pod templates against the Kubernetes Pod Security Standard "restricted" (latest, as of
Kubernetes 1.25+): every baseline control plus the restricted ones. It mirrors the rules of the
PodSecurity admission controller, field by field, for the fields a manifest can carry; it is not a
substitute for admission itself but catches a regression before a cluster does.

    check-pss.py FILE.yaml...          print each violation; exit 1 if any
    check-pss.py --self-test FILE.yaml also prove that each rule fires on a mutated copy

Needs PyYAML (installed with kubernetes-validate by .ci/package.sh).
"""
import copy
import sys

import yaml

# Baseline: capabilities a pod may add; restricted allows only NET_BIND_SERVICE.
RESTRICTED_ADD = {"NET_BIND_SERVICE"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}
SAFE_SYSCTLS = {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range",
                "net.ipv4.ip_unprivileged_port_start", "net.ipv4.tcp_syncookies",
                "net.ipv4.ping_group_range", "net.ipv4.ip_local_reserved_ports",
                "net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout",
                "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes"}
SELINUX_TYPES = {None, "", "container_t", "container_init_t", "container_kvm_t",
                 "container_engine_t"}


def pod_specs(doc):
    """(name, pod spec) for every pod template in a workload or Pod document."""
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    name = f"{kind}/{(doc.get('metadata') or {}).get('name')}"
    if kind == "Pod":
        yield name, spec
    elif kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job",
                  "ReplicationController"):
        yield name, (spec.get("template") or {}).get("spec") or {}
    elif kind == "CronJob":
        job = (spec.get("jobTemplate") or {}).get("spec") or {}
        yield name, (job.get("template") or {}).get("spec") or {}


def violations(spec):
    out = []
    psc = spec.get("securityContext") or {}
    containers = [("container", c) for c in spec.get("containers") or []]
    containers += [("initContainer", c) for c in spec.get("initContainers") or []]
    containers += [("ephemeralContainer", c) for c in spec.get("ephemeralContainers") or []]

    # --- baseline ---
    for f in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(f):
            out.append(f"baseline: spec.{f} must be false or unset")
    if (psc.get("windowsOptions") or {}).get("hostProcess"):
        out.append("baseline: hostProcess is forbidden")
    for s in psc.get("sysctls") or []:
        if s.get("name") not in SAFE_SYSCTLS:
            out.append(f"baseline: sysctl {s.get('name')} is not in the safe set")
    for v in spec.get("volumes") or []:
        kinds = [k for k in v if k != "name"]
        if "hostPath" in kinds:
            out.append(f"baseline: volume {v.get('name')} is a hostPath")
        # --- restricted: volume types ---
        for k in kinds:
            if k not in RESTRICTED_VOLUMES:
                out.append(f"restricted: volume {v.get('name')} has type {k}")

    def check_selinux(where, ctx):
        se = ctx.get("seLinuxOptions") or {}
        if se.get("type") not in SELINUX_TYPES:
            out.append(f"baseline: {where} seLinuxOptions.type {se.get('type')}")
        if se.get("user") or se.get("role"):
            out.append(f"baseline: {where} seLinuxOptions.user/role must be unset")

    def check_seccomp(where, ctx, required):
        t = (ctx.get("seccompProfile") or {}).get("type")
        if t == "Unconfined":
            out.append(f"baseline: {where} seccompProfile Unconfined")
        elif required and t not in ("RuntimeDefault", "Localhost"):
            out.append(f"restricted: {where} seccompProfile must be RuntimeDefault or Localhost")

    def check_apparmor(where, ctx):
        t = (ctx.get("appArmorProfile") or {}).get("type")
        if t == "Unconfined":
            out.append(f"baseline: {where} appArmorProfile Unconfined")

    check_selinux("pod", psc)
    check_apparmor("pod", psc)
    pod_seccomp = (psc.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
    check_seccomp("pod", psc, required=False)
    if psc.get("runAsUser") == 0:
        out.append("restricted: pod runAsUser 0")
    pod_nonroot = psc.get("runAsNonRoot") is True
    if psc.get("runAsNonRoot") is False:
        out.append("restricted: pod runAsNonRoot false")

    for kind, c in containers:
        where = f"{kind} {c.get('name')}"
        sc = c.get("securityContext") or {}
        if sc.get("privileged"):
            out.append(f"baseline: {where} privileged")
        if (sc.get("windowsOptions") or {}).get("hostProcess"):
            out.append(f"baseline: {where} hostProcess")
        if sc.get("procMount") not in (None, "Default"):
            out.append(f"baseline: {where} procMount {sc.get('procMount')}")
        for p in c.get("ports") or []:
            if p.get("hostPort"):
                out.append(f"baseline: {where} hostPort {p.get('hostPort')}")
        check_selinux(where, sc)
        check_apparmor(where, sc)
        # --- restricted ---
        if sc.get("allowPrivilegeEscalation") is not False:
            out.append(f"restricted: {where} allowPrivilegeEscalation must be false")
        caps = sc.get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []):
            out.append(f"restricted: {where} capabilities.drop must include ALL")
        for a in caps.get("add") or []:
            if a not in RESTRICTED_ADD:
                out.append(f"restricted: {where} adds capability {a}")
        if sc.get("runAsUser") == 0:
            out.append(f"restricted: {where} runAsUser 0")
        if sc.get("runAsNonRoot") is False or not (pod_nonroot or sc.get("runAsNonRoot") is True):
            out.append(f"restricted: {where} runAsNonRoot must be true (pod or container)")
        c_seccomp = (sc.get("seccompProfile") or {}).get("type")
        check_seccomp(where, sc, required=not pod_seccomp)
        if pod_seccomp and c_seccomp == "Unconfined":
            pass  # already reported by check_seccomp
    if not containers:
        out.append("no containers found")
    return out


def check_docs(docs):
    found, bad = 0, []
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        for name, spec in pod_specs(doc):
            found += 1
            bad += [f"{name}: {v}" for v in violations(spec)]
    return found, bad


# Each mutation must produce at least one violation, or the checker is vacuous.
MUTATIONS = {
    "runAsNonRoot false": lambda s: s["securityContext"].update(runAsNonRoot=False),
    "runAsUser 0": lambda s: s["securityContext"].update(runAsUser=0),
    "no runAsNonRoot anywhere": lambda s: (s["securityContext"].pop("runAsNonRoot", None),
                                           [c.get("securityContext", {}).pop("runAsNonRoot", None)
                                            for c in s["containers"]]),
    "allowPrivilegeEscalation true": lambda s: s["containers"][0]["securityContext"].update(
        allowPrivilegeEscalation=True),
    "capabilities not dropped": lambda s: s["containers"][0]["securityContext"].pop("capabilities"),
    "capability SETUID added": lambda s: s["containers"][0]["securityContext"]["capabilities"]
        .update(add=["SETUID"]),
    "seccomp Unconfined": lambda s: s["containers"][0]["securityContext"].update(
        seccompProfile={"type": "Unconfined"}),
    "no seccomp anywhere": lambda s: (s["securityContext"].pop("seccompProfile", None),
                                      [c.get("securityContext", {}).pop("seccompProfile", None)
                                       for c in s["containers"]]),
    "privileged": lambda s: s["containers"][0]["securityContext"].update(privileged=True),
    "hostPath volume": lambda s: s.setdefault("volumes", []).append(
        {"name": "h", "hostPath": {"path": "/"}}),
    "hostNetwork": lambda s: s.update(hostNetwork=True),
    "hostPort": lambda s: s["containers"][0].setdefault("ports", [{}])[0].update(hostPort=8000),
}


def main(argv):
    self_test = "--self-test" in argv
    files = [a for a in argv if a != "--self-test"]
    if not files:
        print(__doc__)
        return 2
    failed = 0
    for path in files:
        with open(path, encoding="utf-8") as f:
            docs = list(yaml.safe_load_all(f))
        found, bad = check_docs(docs)
        for b in bad:
            print(f"FAIL {path}: {b}")
        if found == 0:
            print(f"FAIL {path}: no pod templates")
            failed += 1
        elif bad:
            failed += 1
        else:
            print(f"ok   {path}: {found} pod template(s) meet Pod Security 'restricted'")
        if self_test and found:
            for what, mutate in MUTATIONS.items():
                mutated = copy.deepcopy(docs)
                for doc in mutated:
                    for _, spec in pod_specs(doc if isinstance(doc, dict) else {}):
                        mutate(spec)
                _, mbad = check_docs(mutated)
                if mbad:
                    print(f"ok   self-test: '{what}' is caught ({mbad[0].split(': ', 1)[1]})")
                else:
                    print(f"FAIL self-test: '{what}' is not caught")
                    failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
