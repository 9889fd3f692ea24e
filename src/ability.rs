//! What this process may do with namespaces, decided from what it can do, not from its uid.
//!
//! Root in a default Docker/podman container has no CAP_SYS_ADMIN, and root in a pod may hold only
//! the id-changing capabilities: neither can unshare a mount or PID namespace. A process that
//! does hold CAP_SYS_ADMIN may still meet a runtime's seccomp filter or an LSM (Docker's AppArmor
//! profile denies mount) that refuses the calls. So: no effective CAP_SYS_ADMIN → cannot, without
//! trying; with it, under a seccomp filter or a confining LSM → a forked probe makes the same
//! calls in a throw-away namespace and reports the first refusal; otherwise → can.

use std::io::Read;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{MsFlags, mount};
use nix::sched::CloneFlags;
use nix::unistd::ForkResult;
use tracing::debug;

use crate::error::{Error, Result};

/// Why a namespace cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Blocked {
    /// CAP_SYS_ADMIN is not in stockade's effective set.
    NoCapability,
    /// The capability is there, but the runtime's seccomp filter or an LSM refused this call.
    Refused {
        call: &'static str,
        #[serde(serialize_with = "errno_name")]
        errno: Errno,
    },
}

fn errno_name<S: serde::Serializer>(e: &Errno, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{e:?}"))
}

impl Blocked {
    /// What is missing, for messages: "CAP_SYS_ADMIN is not in the effective set".
    pub fn reason(&self) -> String {
        match self {
            Blocked::NoCapability => "stockade's effective capabilities lack CAP_SYS_ADMIN".into(),
            Blocked::Refused { call, errno } => format!(
                "CAP_SYS_ADMIN is effective but {call} was refused ({errno:?}: {}) by the \
                 runtime's seccomp filter or an LSM",
                errno.desc()
            ),
        }
    }

    /// How an operator grants it.
    pub fn remedy(&self) -> &'static str {
        match self {
            Blocked::NoCapability => {
                "grant it with `--cap-add SYS_ADMIN` (docker/podman run) or \
                 securityContext.capabilities.add: [\"SYS_ADMIN\"] (Kubernetes)"
            }
            Blocked::Refused { .. } => {
                "allow unshare and mount in the runtime's filters: `--security-opt \
                 seccomp=<profile allowing them>` (docker/podman run), and with Docker's AppArmor \
                 `--security-opt apparmor=unconfined`"
            }
        }
    }
}

/// The probe's verdict for this start.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ability {
    pub cap_sys_admin: bool,
    /// `None`: a private mount namespace can be created (or was not asked for).
    pub mounts: Option<Blocked>,
    /// `None`: a PID namespace can be created (or was not asked for).
    pub pid_namespace: Option<Blocked>,
    /// stockade is PID 1 (of a container's PID namespace).
    pub pid1: bool,
    /// The container runtime this runs under, when it says so (podman, docker, kubernetes, ...).
    pub runtime: Option<String>,
    /// A seccomp filter was already installed when stockade started (a runtime's).
    pub seccomp_filtered: bool,
    /// The forked probe ran (only under a seccomp filter or a confining LSM, with the capability).
    pub probed: bool,
}

/// What the plan asks for: a mount namespace (with a tmpfs on `mount_target`), a PID namespace.
pub struct Wanted<'a> {
    pub mounts: bool,
    pub mount_target: &'a Path,
    pub pid_namespace: bool,
}

pub fn assess(want: &Wanted) -> Result<Ability> {
    let t0 = std::time::Instant::now();
    let a = assess_inner(want)?;
    debug!(
        micros = t0.elapsed().as_micros() as u64,
        probed = a.probed,
        mounts = ?a.mounts,
        pid_namespace = ?a.pid_namespace,
        "namespaces assessed"
    );
    Ok(a)
}

fn assess_inner(want: &Wanted) -> Result<Ability> {
    let cap_sys_admin = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_ADMIN,
    )
    .unwrap_or(false);
    let seccomp_filtered = seccomp_mode() != 0;
    let mut a = Ability {
        cap_sys_admin,
        mounts: None,
        pid_namespace: None,
        pid1: nix::unistd::getpid().as_raw() == 1,
        runtime: runtime(),
        seccomp_filtered,
        probed: false,
    };
    if !want.mounts && !want.pid_namespace {
        return Ok(a);
    }
    if !cap_sys_admin {
        a.mounts = want.mounts.then_some(Blocked::NoCapability);
        a.pid_namespace = want.pid_namespace.then_some(Blocked::NoCapability);
        return Ok(a);
    }
    if !seccomp_filtered && !lsm_confined() {
        return Ok(a);
    }
    a.probed = true;
    let refused = probe(want)?;
    if let Some((step, errno)) = refused {
        let call = STEPS.get(usize::from(step)).copied().unwrap_or("unshare");
        let b = Blocked::Refused { call, errno };
        // The mount steps come first: a refusal there blocks both (the PID namespace needs its
        // own /proc); a refusal at the PID steps blocks only the PID namespace.
        if step < PID_STEPS {
            a.mounts = want.mounts.then_some(b);
        }
        a.pid_namespace = want.pid_namespace.then_some(b);
    }
    Ok(a)
}

const STEPS: [&str; 6] = [
    "",
    "unshare(CLONE_NEWNS)",
    "mount(MS_REC|MS_PRIVATE)",
    "mount(tmpfs)",
    "unshare(CLONE_NEWPID)",
    "mount(proc)",
];
const PID_STEPS: u8 = 4;

/// Fork; the child makes the calls the server's start will make, in a namespace that dies with
/// it, and writes `[step, errno]` for the first refusal. Returns that refusal.
fn probe(want: &Wanted) -> Result<Option<(u8, Errno)>> {
    let threads = crate::sys::thread_count().map_err(|e| Error::os("/proc/self/task", e))?;
    if threads != 1 {
        return Err(Error::Internal(
            "the namespace probe needs a single-threaded launcher".into(),
        ));
    }
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::os("pipe (namespace probe)", e))?;
    match crate::sys::fork().map_err(|e| Error::os("fork (namespace probe)", e))? {
        ForkResult::Child => {
            drop(r);
            let code = match probe_child(want) {
                Ok(()) => 0,
                Err((step, e)) => {
                    let _ = nix::unistd::write(&w, &[step, e as i32 as u8]);
                    1
                }
            };
            crate::sys::exit_now(code)
        }
        ForkResult::Parent { child } => {
            drop(w);
            let mut buf = Vec::new();
            let _ = std::fs::File::from(r).read_to_end(&mut buf);
            let status = loop {
                match nix::sys::wait::waitpid(child, None) {
                    Err(Errno::EINTR) => continue,
                    other => break other,
                }
            };
            match (buf.as_slice(), status) {
                ([step, errno, ..], _) => Ok(Some((*step, Errno::from_raw(i32::from(*errno))))),
                ([], Ok(nix::sys::wait::WaitStatus::Exited(_, 0))) => Ok(None),
                (_, s) => Err(Error::Internal(format!(
                    "the namespace probe ended without a verdict: {s:?}"
                ))),
            }
        }
    }
}

fn probe_child(want: &Wanted) -> std::result::Result<(), (u8, Errno)> {
    let safe = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(|e| (1, e))?;
    // Private first: nothing the probe mounts may reach the host's namespace.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| (2, e))?;
    if want.mounts {
        mount(
            Some("tmpfs"),
            want.mount_target,
            Some("tmpfs"),
            safe,
            Some("size=4k"),
        )
        .map_err(|e| (3, e))?;
    }
    if !want.pid_namespace {
        return Ok(());
    }
    nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(|e| (4, e))?;
    // A /proc for the new namespace can be mounted only by a process inside it.
    match crate::sys::fork().map_err(|e| (4, e))? {
        ForkResult::Child => {
            let code = match mount(
                Some("proc"),
                "/proc",
                Some("proc"),
                safe,
                Some("hidepid=invisible"),
            ) {
                Ok(()) => 0,
                Err(e) => e as i32,
            };
            crate::sys::exit_now(code)
        }
        ForkResult::Parent { child } => match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Ok(()),
            Ok(nix::sys::wait::WaitStatus::Exited(_, e)) => Err((5, Errno::from_raw(e))),
            Ok(_) => Err((5, Errno::EINTR)),
            Err(e) => Err((5, e)),
        },
    }
}

/// `Seccomp:` of /proc/self/status: 0 none, 1 strict, 2 filter.
fn seccomp_mode() -> u8 {
    // One large read: read_to_string's small first reads make procfs format the file repeatedly.
    let mut buf = vec![0u8; 8192];
    let n = std::fs::File::open("/proc/self/status")
        .and_then(|mut f| f.read(&mut buf))
        .unwrap_or(0);
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .find_map(|l| l.strip_prefix("Seccomp:"))
        .and_then(|v| v.trim().parse().ok())
        // Unreadable: assume a filter, so the probe decides.
        .unwrap_or(2)
}

/// Under an AppArmor profile other than `unconfined`, or SELinux in enforcing mode: the probe
/// decides, since either may deny mount to a process holding CAP_SYS_ADMIN.
fn lsm_confined() -> bool {
    // Kernels before 5.8 have only the shared attr/current (AppArmor profile or SELinux context).
    let label = std::fs::read_to_string("/proc/self/attr/apparmor/current")
        .or_else(|_| std::fs::read_to_string("/proc/self/attr/current"))
        .map(|s| s.trim().trim_end_matches('\0').to_string())
        .unwrap_or_default();
    let labelled = !label.is_empty() && label != "unconfined";
    let selinux = std::fs::read_to_string("/sys/fs/selinux/enforce").is_ok_and(|s| s.trim() == "1");
    labelled || selinux
}

/// The container runtime, from the marks runtimes leave: podman's /run/.containerenv, Kubernetes'
/// service variables, the `container` variable (podman, systemd-nspawn). Not Docker's /.dockerenv:
/// images built with Docker keep it when booted as VMs. Under Docker stockade is PID 1 (`pid1`).
fn runtime() -> Option<String> {
    if Path::new("/run/.containerenv").exists() {
        return Some("podman".into());
    }
    if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() {
        return Some("kubernetes".into());
    }
    std::env::var("container").ok().filter(|v| !v.is_empty())
}

/// The mount covering `path` in /proc/self/mountinfo: (mountpoint, per-mount options such as
/// "rw,nosuid,noexec"). The last entry with the longest mountpoint prefix wins (later mounts
/// stack on earlier ones). `None` when mountinfo is unreadable.
fn covering_mount(path: &Path) -> Option<(String, String)> {
    let info = crate::sys::read_proc("/proc/self/mountinfo").ok()?;
    let path = path.to_string_lossy();
    let mut best: Option<(&str, &str)> = None;
    for line in info.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let (Some(mp), Some(opts)) = (f.get(4).copied(), f.get(5).copied()) else {
            continue;
        };
        let covers = mp == "/"
            || path == mp
            || (path.starts_with(mp) && path.as_bytes().get(mp.len()) == Some(&b'/'));
        if covers && best.is_none_or(|(m, _)| mp.len() >= m.len()) {
            best = Some((mp, opts));
        }
    }
    best.map(|(m, o)| (m.to_string(), o.to_string()))
}

/// Is `path` covered by a mount with this per-mount option ("ro", "noexec")?
pub fn mount_has(path: &Path, flag: &str) -> Option<bool> {
    covering_mount(path).map(|(_, opts)| opts.split(',').any(|o| o == flag))
}

/// Is `path` a mountpoint of its own (a runtime's --tmpfs or volume), not part of its parent?
pub fn mount_is_own(path: &Path) -> bool {
    covering_mount(path).is_some_and(|(mp, _)| Path::new(&mp) == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn covering_mount_takes_the_longest_mountpoint_prefix() {
        let mp = |p: &str| covering_mount(Path::new(p)).map(|(m, _)| m);
        assert_eq!(mp("/proc/self/status").as_deref(), Some("/proc"));
        assert_eq!(mp("/proc").as_deref(), Some("/proc"));
        // A name that merely starts with a mountpoint is not below it.
        assert_ne!(mp("/procx").as_deref(), Some("/proc"));
        assert!(mount_is_own(Path::new("/proc")));
        assert!(!mount_is_own(Path::new("/proc/self")));
        let (_, opts) = covering_mount(Path::new("/proc")).unwrap();
        let first = opts.split(',').next().unwrap();
        assert_eq!(mount_has(Path::new("/proc/self"), first), Some(true));
        assert_eq!(
            mount_has(Path::new("/proc/self"), "no-such-option"),
            Some(false)
        );
    }
}
