//! The dry run: the resolved plan as text or JSON. Secrets never appear (argv is redacted by the
//! rewriter, environment values from stockade's own environment are shown by name only).

use serde::Serialize;

use crate::identity::Mode;
use crate::landlock_policy::{FeatureStatus, PathRule};
use crate::plan::{Plan, RlimitPlan};
use crate::profile::SuperviseSection;

#[derive(Serialize)]
struct Caps {
    effective: Vec<String>,
    permitted: Vec<String>,
    inheritable: Vec<String>,
    ambient: Vec<String>,
    bounding: Vec<String>,
    securebits_locked: bool,
}

#[derive(Serialize)]
struct Landlock<'a> {
    kernel_abi: i32,
    abi_pin: u8,
    features: &'a [FeatureStatus],
    rules: &'a [PathRule],
    skipped_optional: Vec<String>,
    bind_tcp: &'a [u16],
    connect_tcp: &'a [u16],
    bind_udp: &'a [u16],
    connect_udp: &'a [u16],
    scopes: Vec<&'static str>,
}

#[derive(Serialize)]
struct Seccomp<'a> {
    default_action: String,
    allowed: &'a [String],
    allowed_if_arguments_match: &'a [String],
    kill_process: &'a [String],
    enosys: &'a [String],
    fixed_rules: &'a [String],
    udp: bool,
    non_native_arch: &'static str,
    x32: &'static str,
    instructions: usize,
}

#[derive(Serialize)]
struct Env {
    set: Vec<String>,
    scrubbed_from_launcher_env: Vec<String>,
}

#[derive(Serialize)]
struct View<'a> {
    profile: &'a str,
    origin: &'a str,
    kind: crate::profile::ServerKind,
    enforceable: bool,
    identity: &'a crate::identity::IdentityPlan,
    capabilities: Caps,
    no_new_privs: bool,
    landlock: Landlock<'a>,
    seccomp: Seccomp<'a>,
    rlimits: &'a [RlimitPlan],
    env: Env,
    exe: String,
    argv: &'a [String],
    cwd: String,
    supervise: &'a SuperviseSection,
    mounts: Option<&'a crate::mounts::MountPlan>,
    /// What this process can do with namespaces, where it runs.
    namespaces: &'a crate::ability::Ability,
    /// Each isolation protection: who provides it (stockade, the container runtime, nobody) and
    /// what the operator must do when nobody does.
    provided_by: Vec<Provision>,
    warnings: &'a [String],
    notes: &'a [String],
    secret_exposure: Option<&'a str>,
}

/// Can this kernel enforce everything the profile asks for, best-effort parts included?
/// (A feature newer than ABI 6 that the profile does not require is opportunistic: reported, but
/// it does not make the dry run fail.)
pub fn fully_enforceable(plan: &Plan) -> bool {
    plan.landlock
        .features
        .iter()
        .all(|f| f.supported || (!f.required && f.abi > crate::landlock_policy::BASELINE_ABI))
}

fn view(plan: &Plan) -> View<'_> {
    let keep = crate::capabilities::names(&plan.keep_caps);
    let root = plan.identity.mode == Mode::Root;
    let bounding = if root || crate::capabilities::has_setpcap() {
        keep.clone()
    } else {
        crate::capabilities::bounding_now()
    };
    let env_set = plan
        .env
        .vars
        .iter()
        .map(|(k, v)| {
            let from_profile = std::env::var(k).map_or(true, |outer| outer != *v);
            if from_profile {
                format!("{k}={v}")
            } else {
                format!("{k} (passed from stockade's environment)")
            }
        })
        .collect();
    View {
        profile: &plan.profile,
        origin: &plan.origin,
        kind: plan.kind,
        enforceable: fully_enforceable(plan),
        identity: &plan.identity,
        capabilities: Caps {
            effective: keep.clone(),
            permitted: keep.clone(),
            inheritable: keep.clone(),
            ambient: keep,
            bounding,
            securebits_locked: root,
        },
        no_new_privs: true,
        landlock: Landlock {
            kernel_abi: plan.landlock.kernel_abi,
            abi_pin: crate::landlock_policy::ABI_PIN as u8,
            features: &plan.landlock.features,
            rules: &plan.landlock.rules,
            skipped_optional: plan
                .landlock
                .skipped_optional
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            bind_tcp: &plan.landlock.bind_tcp,
            connect_tcp: &plan.landlock.connect_tcp,
            bind_udp: &plan.landlock.bind_udp,
            connect_udp: &plan.landlock.connect_udp,
            scopes: plan.landlock.scopes.iter().map(|s| s.name()).collect(),
        },
        seccomp: Seccomp {
            default_action: plan.seccomp.default_action.to_string(),
            allowed: &plan.seccomp.allowed,
            allowed_if_arguments_match: &plan.seccomp.conditional,
            kill_process: &plan.seccomp.killed,
            enosys: &plan.seccomp.enosys,
            fixed_rules: &plan.seccomp.fixed_rules,
            udp: plan.seccomp.allow_udp,
            non_native_arch: "kill_process",
            x32: "kill_process",
            instructions: plan.seccomp.instruction_count(),
        },
        rlimits: &plan.rlimits,
        env: Env {
            set: env_set,
            scrubbed_from_launcher_env: plan.env.scrubbed.clone(),
        },
        exe: plan.exe.display().to_string(),
        argv: &plan.display_argv,
        cwd: plan.cwd.display().to_string(),
        supervise: &plan.supervise,
        mounts: plan.mounts.as_ref(),
        namespaces: &plan.ability,
        provided_by: provisions(plan),
        warnings: &plan.warnings,
        notes: &plan.notes,
        secret_exposure: plan.secret_exposure.as_deref(),
    }
}

#[derive(Serialize)]
struct Provision {
    protection: String,
    by: String,
    /// What the operator does instead, when neither stockade nor the runtime provides it.
    instead: Option<String>,
}

/// Who provides each isolation protection for this start. In a container the runtime already
/// gives a fresh root, /proc and /dev/shm and a PID namespace; what stockade cannot mount itself
/// (no CAP_SYS_ADMIN) the operator asks of the runtime instead.
fn provisions(plan: &Plan) -> Vec<Provision> {
    let a = &plan.ability;
    let in_container = a.runtime.is_some() || a.pid1;
    let runtime = format!(
        "runtime ({})",
        a.runtime
            .as_deref()
            .unwrap_or("container, stockade is PID 1")
    );
    let mut out = Vec::new();
    let mut row = |protection: String, by: String, instead: Option<String>| {
        out.push(Provision {
            protection,
            by,
            instead,
        })
    };
    let applied = plan.mounts.as_ref();
    let requested = plan.mounts_requested.as_ref();
    for (path, mb) in requested.map_or(&[][..], |m| &m.tmpfs[..]) {
        let what = format!("private tmpfs {}", path.display());
        if applied.is_some() {
            row(
                what,
                format!("stockade ({mb} MiB, nosuid nodev noexec)"),
                None,
            );
            continue;
        }
        let own = crate::ability::mount_is_own(path);
        let noexec = crate::ability::mount_has(path, "noexec") == Some(true);
        let by = match (own, noexec, in_container) {
            (true, true, true) => format!("{runtime}: its own noexec mount"),
            (true, false, true) => format!("{runtime}: its own mount, but exec allowed"),
            (true, true, false) => "its own noexec mount, shared with other processes".into(),
            _ => "NOBODY: shared and exec allowed".into(),
        };
        let instead = (!(own && noexec)).then(|| {
            if path == std::path::Path::new("/dev/shm") {
                format!(
                    "--tmpfs /dev/shm:rw,nosuid,nodev,noexec,size={mb}m (docker/podman run; \
                     Kubernetes: an emptyDir with medium Memory)"
                )
            } else {
                format!(
                    "--tmpfs {p}:rw,nosuid,nodev,noexec,size={mb}m (docker/podman run; \
                     Kubernetes: an emptyDir)",
                    p = path.display()
                )
            }
        });
        row(what, by, instead);
    }
    for path in requested.map_or(&[][..], |m| &m.read_only_noexec[..]) {
        let what = format!("read-only noexec {}", path.display());
        if applied.is_some() {
            row(what, "stockade (read-only, noexec bind)".into(), None);
            continue;
        }
        let ro = crate::ability::mount_has(path, "ro") == Some(true);
        let noexec = crate::ability::mount_has(path, "noexec") == Some(true);
        let state = match (ro, noexec) {
            (true, true) => "a read-only noexec mount",
            (true, false) => {
                "a read-only mount, exec allowed (a model's library can be mapped executable)"
            }
            (false, _) => "NOBODY: writable (Landlock still denies the server writes)",
        };
        let by = if in_container && ro {
            format!("{runtime}: {state}")
        } else {
            state.to_string()
        };
        let instead = (!(ro && noexec)).then(|| {
            format!(
                "-v <host dir>:{p}:ro (docker; podman also takes :ro,noexec; Kubernetes: \
                 readOnly: true)",
                p = path.display()
            )
        });
        row(what, by, instead);
    }
    if in_container {
        let ro = crate::ability::mount_has(std::path::Path::new("/"), "ro") == Some(true);
        row(
            "root file system".into(),
            format!(
                "{runtime}: the container's own, {}",
                if ro { "read-only" } else { "writable" }
            ),
            (!ro).then(|| "--read-only (Kubernetes: readOnlyRootFilesystem: true)".into()),
        );
    }
    let proc_by = if applied.is_some_and(|m| m.proc) {
        "stockade (hidepid=invisible, the server's PID namespace)".to_string()
    } else if a.pid1 {
        format!("{runtime}: the container's own /proc (its PID namespace)")
    } else {
        "NOBODY: the server sees the host's /proc".to_string()
    };
    row("fresh /proc".into(), proc_by, None);
    let pid_by = if plan.pid_namespace {
        "stockade (supervisor is PID 1 of a new namespace)".to_string()
    } else if a.pid1 {
        format!("{runtime}: stockade is PID 1 of the container's PID namespace")
    } else if plan.supervise.pid_namespace == crate::profile::PidNamespace::Never {
        "off (supervise.pid_namespace = \"never\")".to_string()
    } else {
        format!(
            "NOBODY: {} (PDEATHSIG and the process group stop the server's tree)",
            a.pid_namespace.map(|b| b.reason()).unwrap_or_default()
        )
    };
    row("PID namespace".into(), pid_by, None);
    out
}

pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(&view(plan)).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

pub fn text(plan: &Plan) -> String {
    use std::fmt::Write;
    let v = view(plan);
    let mut o = String::new();
    let _ = writeln!(o, "profile      {} ({})", v.profile, v.origin);
    let id = v.identity;
    let _ = writeln!(
        o,
        "identity     {:?}: uid {} ({}), gid {} ({}), supplementary groups [{}]",
        id.mode,
        id.uid,
        id.user,
        id.gid,
        id.group,
        id.groups
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let c = &v.capabilities;
    for (name, set) in [
        ("effective", &c.effective),
        ("permitted", &c.permitted),
        ("inheritable", &c.inheritable),
        ("ambient", &c.ambient),
        ("bounding", &c.bounding),
    ] {
        let _ = writeln!(o, "caps         {name:<12}{}", list(set));
    }
    let _ = writeln!(
        o,
        "securebits   {}",
        if c.securebits_locked {
            "noroot, no ambient raise, keep-caps off: all locked"
        } else {
            "unchanged (rootless)"
        }
    );
    let _ = writeln!(o, "no_new_privs yes");
    let l = &v.landlock;
    let _ = writeln!(
        o,
        "landlock     kernel ABI {} ({}), stockade handles up to ABI {}",
        l.kernel_abi,
        crate::sys::kernel_release(),
        l.abi_pin
    );
    for f in l.features {
        let _ = writeln!(
            o,
            "  feature    {:<20} ABI {}  {:<11} {}",
            f.feature.name(),
            f.abi,
            if f.required {
                "required"
            } else {
                "best-effort"
            },
            if f.supported {
                "enforced"
            } else {
                "NOT SUPPORTED by this kernel"
            }
        );
    }
    for r in l.rules {
        let _ = writeln!(
            o,
            "  path       {:<10} {}  [{}]  ({})",
            match r.access {
                crate::landlock_policy::Access3::ReadOnly => "ro",
                crate::landlock_policy::Access3::ReadExec => "rx",
                crate::landlock_policy::Access3::ReadWrite => "rw",
                crate::landlock_policy::Access3::MakeDirs => "dirs",
                crate::landlock_policy::Access3::ConnectUnix => "unix",
            },
            r.path.display(),
            r.rights.join(" "),
            r.origin
        );
    }
    for p in &l.skipped_optional {
        let _ = writeln!(o, "  path       skipped    {p} (optional, absent)");
    }
    let ports = |p: &[u16]| list(&p.iter().map(u16::to_string).collect::<Vec<_>>());
    let _ = writeln!(o, "  tcp bind   {}", ports(l.bind_tcp));
    let _ = writeln!(o, "  tcp connect {}", ports(l.connect_tcp));
    let _ = writeln!(o, "  udp bind   {}", ports(l.bind_udp));
    let _ = writeln!(o, "  udp connect {}", ports(l.connect_udp));
    let _ = writeln!(
        o,
        "  scopes     {}",
        list(&l.scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    );
    let s = &v.seccomp;
    let _ = writeln!(
        o,
        "seccomp      default {}, {} allowed, {} conditional, {} kill, enosys [{}]; other arch and x32: kill (one BPF program, {} instructions)",
        s.default_action,
        s.allowed.len(),
        s.allowed_if_arguments_match.len(),
        s.kill_process.len(),
        s.enosys.join(", "),
        s.instructions
    );
    let _ = writeln!(
        o,
        "  egress     {}",
        if s.udp {
            "TCP and UNIX sockets, UDP allowed (allow_udp)"
        } else {
            "TCP and UNIX sockets only (no UDP, SCTP, MPTCP, raw, netlink)"
        }
    );
    for r in s.fixed_rules {
        let _ = writeln!(o, "  fixed      {r}");
    }
    for r in v.rlimits {
        let _ = writeln!(
            o,
            "rlimit       {} = {}",
            r.name,
            r.value.map_or("unlimited".to_string(), |x| x.to_string())
        );
    }
    let _ = writeln!(o, "env          {}", list(&v.env.set));
    if !v.env.scrubbed_from_launcher_env.is_empty() {
        let _ = writeln!(
            o,
            "env scrubbed {}",
            v.env.scrubbed_from_launcher_env.join(", ")
        );
    }
    let _ = writeln!(o, "cwd          {}", v.cwd);
    let _ = writeln!(o, "exe          {}", v.exe);
    let _ = writeln!(o, "argv         {}", v.argv.join(" "));
    let fresh_proc = |m: &crate::mounts::MountPlan| {
        if m.proc {
            "yes (hidepid=invisible)"
        } else {
            "no"
        }
    };
    let tmpfs = |m: &crate::mounts::MountPlan| -> Vec<String> {
        m.tmpfs
            .iter()
            .map(|(p, mb)| format!("{} ({mb} MiB)", p.display()))
            .collect()
    };
    let paths = |v: &[std::path::PathBuf]| -> Vec<String> {
        v.iter().map(|p| p.display().to_string()).collect()
    };
    match v.mounts {
        Some(m) if m.fresh_root.is_some() => {
            let _ = writeln!(
                o,
                "mounts       fresh root (read-only tmpfs, pivot_root, old root detached): tmpfs [{}], fresh /proc: {}",
                tmpfs(m).join(", "),
                fresh_proc(m)
            );
            for b in m.fresh_root.iter().flat_map(|f| &f.binds) {
                let mut flags = vec![if b.writable { "rw" } else { "ro" }, "nosuid"];
                if !b.exec {
                    flags.push("noexec");
                }
                if !b.device {
                    flags.push("nodev");
                }
                let _ = writeln!(
                    o,
                    "  bind       {}  ({})",
                    b.path.display(),
                    flags.join(",")
                );
            }
            for (l, t) in m.fresh_root.iter().flat_map(|f| &f.symlinks) {
                let _ = writeln!(o, "  symlink    {} -> {}", l.display(), t.display());
            }
            let _ = writeln!(
                o,
                "  only these paths exist for the server: no /run, no host /tmp, no pathname UNIX socket outside them"
            );
        }
        Some(m) => {
            let _ = writeln!(
                o,
                "mounts       private namespace: tmpfs [{}], read-only noexec [{}], writable noexec [{}], fresh /proc: {}",
                tmpfs(m).join(", "),
                paths(&m.read_only_noexec).join(", "),
                paths(&m.writable_noexec).join(", "),
                fresh_proc(m)
            );
            let _ = writeln!(
                o,
                "  residual   the host's filesystem stays in view: pathname UNIX sockets (/run...) are {}",
                if v.landlock.features.iter().any(|f| {
                    f.feature == crate::landlock_policy::Feature::ResolveUnix && f.supported
                }) {
                    "closed by Landlock resolve_unix"
                } else {
                    "reachable (Landlock resolve_unix needs ABI 9; mounts.fresh_root closes them)"
                }
            );
        }
        None => match (plan.mounts_requested.as_ref(), plan.ability.mounts) {
            (Some(r), Some(b)) => {
                let _ = writeln!(
                    o,
                    "mounts       NOT APPLIED ({}): {}; see \"isolation\" below",
                    b.reason(),
                    r.describe()
                );
            }
            _ => {
                let _ = writeln!(
                    o,
                    "mounts       (none: the server shares stockade's mounts; files it writes can be mapped executable, pathname UNIX sockets are {})",
                    if v.landlock.features.iter().any(|f| {
                        f.feature == crate::landlock_policy::Feature::ResolveUnix && f.supported
                    }) {
                        "closed by Landlock resolve_unix"
                    } else {
                        "reachable (Landlock resolve_unix needs ABI 9)"
                    }
                );
            }
        },
    }
    for p in &v.provided_by {
        let _ = writeln!(o, "isolation    {:<28} {}", p.protection, p.by);
        if let Some(i) = &p.instead {
            let _ = writeln!(o, "  instead    {i}");
        }
    }
    let sup = v.supervise;
    let _ = writeln!(
        o,
        "supervise    signals to {:?}, stop grace {}s, pre-stop delay {}s, restart {:?}, pid namespace {:?}{}",
        sup.signal_target,
        sup.stop_grace_secs,
        sup.pre_stop_delay_secs,
        sup.restart.mode,
        sup.pid_namespace,
        if sup.defer_stop_until_ready {
            ", stop held until ready"
        } else {
            ""
        }
    );
    if let Some(r) = &sup.ready {
        let _ = writeln!(
            o,
            "ready        GET {} (every {} ms, up to {} s); READY=1 to NOTIFY_SOCKET after it",
            r.http_get.get_ref().url(),
            r.interval_ms,
            r.timeout_secs
        );
    }
    if let Some(e) = v.secret_exposure {
        let _ = writeln!(o, "secret       {e}");
    }
    for n in v.notes {
        let _ = writeln!(o, "note         {n}");
    }
    for w in v.warnings {
        let _ = writeln!(o, "warning      {w}");
    }
    let _ = writeln!(
        o,
        "enforceable  {}",
        if v.enforceable {
            "yes: every requested protection is supported by this kernel"
        } else {
            "NO: see the features above"
        }
    );
    o
}
